/* model_file.c -- the denoiser model reader (docs/FORMATS.md, "Denoiser
 * model file").
 *
 * Everything the format promises is checked here, before a denoiser
 * exists: the format name and version, every attribute's class and count,
 * every dataset's class, rank and shape, the chain of channel counts, and
 * that no weight or bias is NaN or infinite. The network comes back as one
 * block of parameters plus a layer table (src/nn/nn.h). */
#include "h5util.h"
#include "nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char fn[] = "clara_denoiser_load";

#define FORMAT_NAME "clara-recon-denoiser"
#define FORMAT_VERSION 1

#define fail(status, ...) clara_h5_file_fail((status), fn, path, __VA_ARGS__)

static void copy_text(char *dst, size_t len, const char *src) {
  snprintf(dst, len, "%s", src ? src : "");
}

/* A required string attribute of the root that must be one of 'choices'
 * (NULL-terminated); its index goes to *which. */
static clara_status read_choice(const char *path, hid_t obj,
                                const char *objname, const char *name,
                                const char *const *choices, const char *what,
                                int *which) {
  char *text = NULL;
  clara_status st =
      clara_h5_read_string_attr(fn, path, obj, objname, name, 1, &text);
  if (st != CLARA_OK)
    return st;
  for (int i = 0; choices[i]; ++i)
    if (strcmp(text, choices[i]) == 0) {
      *which = i;
      free(text);
      return CLARA_OK;
    }
  {
    char list[128] = "";
    for (int i = 0; choices[i]; ++i) {
      size_t used = strlen(list);
      snprintf(list + used, sizeof list - used, "%s\"%s\"", i ? ", " : "",
               choices[i]);
    }
    st = fail(CLARA_ERR_FORMAT, "%s: attribute %s: unknown %s \"%.64s\" (%s)",
              objname, name, what, text, list);
  }
  free(text);
  return st;
}

static clara_status read_int(const char *path, hid_t obj, const char *objname,
                             const char *name, const char *expected,
                             long long lo, long long hi, long long *out) {
  int present;
  clara_status st = clara_h5_read_int_attr(fn, path, obj, objname, name,
                                           expected, 1, out, &present);
  if (st != CLARA_OK)
    return st;
  if (*out < lo || *out > hi)
    return fail(CLARA_ERR_FORMAT,
                "%s: attribute %s: %s expected, found %lld", objname, name,
                expected, *out);
  return CLARA_OK;
}

static clara_status read_double(const char *path, hid_t obj,
                                const char *objname, const char *name,
                                const char *expected, double *out) {
  int present;
  return clara_h5_read_double_attr(fn, path, obj, objname, name, 1, expected,
                                   1, out, &present);
}

/* Reads float dataset 'name' (an absolute path) of the expected shape into
 * 'dst'. */
static clara_status read_tensor(const char *path, hid_t fid, const char *name,
                                int rank, const int *want, const char *shape,
                                float *dst) {
  clara_status st;
  hid_t dset = H5I_INVALID_HID;
  int dims[4];
  size_t count = 0;
  float *data = NULL;

  st = clara_h5_open_object(fn, path, fid, name, H5I_DATASET, shape, &dset);
  if (st != CLARA_OK)
    return st;
  st = clara_h5_check_float_dataset(fn, path, name, dset, rank, shape, dims,
                                    &count);
  if (st != CLARA_OK)
    goto done;
  for (int i = 0; i < rank; ++i)
    if (dims[i] != want[i]) {
      char found[64] = "", expect[64] = "";
      for (int k = 0; k < rank; ++k) {
        size_t a = strlen(found), b = strlen(expect);
        snprintf(found + a, sizeof found - a, "[%d]", dims[k]);
        snprintf(expect + b, sizeof expect - b, "[%d]", want[k]);
      }
      st = fail(CLARA_ERR_FORMAT, "%s: shape %s %s expected, found %s", name,
                expect, shape, found);
      goto done;
    }
  st = clara_h5_read_floats(fn, path, name, dset, count, &data);
  if (st != CLARA_OK)
    goto done;
  for (size_t i = 0; i < count; ++i)
    if (!isfinite(data[i])) {
      st = fail(CLARA_ERR_FORMAT, "%s: value %zu is %s; weights must be finite",
                name, i, isnan(data[i]) ? "NaN" : "infinite");
      goto done;
    }
  memcpy(dst, data, count * sizeof(float));
done:
  clara_aligned_free(data);
  clara_h5_close(H5Dclose, &dset, &st, fn, path);
  return st;
}

/* The first pass: every layer's shape, so the parameters can be one block. */
static clara_status read_layer_shape(const char *path, hid_t fid, int k,
                                     int *cin, int *cout, int *relu) {
  static const char *const kinds[] = {"conv3x3", NULL};
  static const char *const acts[] = {"none", "relu", NULL};
  clara_status st;
  hid_t g = H5I_INVALID_HID, dset = H5I_INVALID_HID;
  char gname[32], wname[48];
  int dims[4], which = 0;
  size_t count;

  snprintf(gname, sizeof gname, "/layers/%d", k);
  st = clara_h5_open_object(fn, path, fid, gname, H5I_GROUP,
                            "a group per layer: /layers/0, /layers/1, ...", &g);
  if (st != CLARA_OK)
    return st;
  st = read_choice(path, g, gname, "kind", kinds, "layer kind", &which);
  if (st != CLARA_OK)
    goto done;
  st = read_choice(path, g, gname, "activation", acts, "activation", &which);
  if (st != CLARA_OK)
    goto done;
  *relu = which == 1;
  snprintf(wname, sizeof wname, "%s/weight", gname);
  st = clara_h5_open_object(fn, path, fid, wname, H5I_DATASET,
                            "a float dataset [out][in][3][3]", &dset);
  if (st != CLARA_OK)
    goto done;
  st = clara_h5_check_float_dataset(fn, path, wname, dset, 4,
                                    "[out][in][3][3]", dims, &count);
  if (st != CLARA_OK)
    goto done;
  if (dims[2] != 3 || dims[3] != 3) {
    st = fail(CLARA_ERR_FORMAT,
              "%s: a 3x3 kernel [out][in][3][3] expected, found "
              "[%d][%d][%d][%d]",
              wname, dims[0], dims[1], dims[2], dims[3]);
    goto done;
  }
  if (dims[0] > CLARA_NN_MAX_CHANNELS || dims[1] > CLARA_NN_MAX_CHANNELS) {
    st = fail(CLARA_ERR_FORMAT,
              "%s: at most %d channels are supported, found [%d][%d][3][3]",
              wname, CLARA_NN_MAX_CHANNELS, dims[0], dims[1]);
    goto done;
  }
  *cout = dims[0];
  *cin = dims[1];
done:
  clara_h5_close(H5Dclose, &dset, &st, fn, path);
  clara_h5_close(H5Gclose, &g, &st, fn, path);
  return st;
}

static clara_status read_provenance(const char *path, hid_t fid,
                                    clara_nn_model *m) {
  clara_status st;
  hid_t g = H5I_INVALID_HID;
  char *text = NULL;
  int e = clara_h5_exists(fid, "provenance");
  if (e <= 0)
    return CLARA_OK; /* optional */
  st = clara_h5_open_object(fn, path, fid, "provenance", H5I_GROUP,
                            "a group of attributes", &g);
  if (st != CLARA_OK)
    return st;
  st = clara_h5_read_string_attr(fn, path, g, "/provenance", "training_data",
                                 0, &text);
  if (st == CLARA_OK)
    copy_text(m->training_data, sizeof m->training_data, text);
  free(text);
  clara_h5_close(H5Gclose, &g, &st, fn, path);
  return st;
}

static clara_status read_locked(const char *path, clara_nn_model *m) {
  static const char *const formats[] = {FORMAT_NAME, NULL};
  static const char *const modalities[] = {"ct", "mr", NULL};
  static const char *const norms[] = {"fixed", "percentile", NULL};
  clara_status st;
  hid_t fid = H5I_INVALID_HID, layers_g = H5I_INVALID_HID;
  long long version = 0, nl = 0, residual = 0;
  char *text = NULL;
  int which = 0, *cin = NULL, *cout = NULL, *relu = NULL;
  size_t total = 0;

  st = clara_h5_open_read(fn, path, &fid);
  if (st != CLARA_OK)
    return st;
  st = read_choice(path, fid, "/", "format", formats, "format", &which);
  if (st != CLARA_OK)
    goto done;
  {
    int present;
    st = clara_h5_read_int_attr(fn, path, fid, "/", "format_version",
                                "an integer format version", 1, &version,
                                &present);
    if (st != CLARA_OK)
      goto done;
    if (version != FORMAT_VERSION) {
      st = fail(CLARA_ERR_UNSUPPORTED,
                "format_version %lld is not supported: this build of "
                "libclara-recon %s reads version %d",
                version, clara_version(), FORMAT_VERSION);
      goto done;
    }
  }
  st = clara_h5_read_string_attr(fn, path, fid, "/", "architecture", 1, &text);
  if (st != CLARA_OK)
    goto done;
  copy_text(m->architecture, sizeof m->architecture, text);
  free(text);
  text = NULL;
  st = clara_h5_read_string_attr(fn, path, fid, "/", "units", 0, &text);
  if (st != CLARA_OK)
    goto done;
  copy_text(m->units, sizeof m->units, text);
  free(text);
  text = NULL;
  st = read_choice(path, fid, "/", "modality", modalities, "modality", &which);
  if (st != CLARA_OK)
    goto done;
  m->modality = which == 0 ? CLARA_MODALITY_CT : CLARA_MODALITY_MR;
  st = read_int(path, fid, "/", "residual", "0 or 1", 0, 1, &residual);
  if (st != CLARA_OK)
    goto done;
  m->setup.residual = (int)residual;
  st = read_choice(path, fid, "/", "normalisation", norms, "normalisation",
                   &which);
  if (st != CLARA_OK)
    goto done;
  if (which == 0) {
    m->setup.norm = CLARA_NN_NORM_FIXED;
    st = read_double(path, fid, "/", "input_offset", "a finite float",
                     &m->setup.offset);
    if (st == CLARA_OK)
      st = read_double(path, fid, "/", "input_scale", "a finite float > 0",
                       &m->setup.scale);
    if (st != CLARA_OK)
      goto done;
    if (!isfinite(m->setup.offset) || !isfinite(m->setup.scale) ||
        !(m->setup.scale > 0)) {
      st = fail(CLARA_ERR_FORMAT,
                "/: input_offset must be finite and input_scale finite and "
                "> 0, found %g and %g",
                m->setup.offset, m->setup.scale);
      goto done;
    }
  } else {
    m->setup.norm = CLARA_NN_NORM_PERCENTILE;
    m->setup.scale = 1.0;
    st = read_double(path, fid, "/", "input_percentile", "a float in (0, 100]",
                     &m->setup.percentile);
    if (st != CLARA_OK)
      goto done;
    if (!(m->setup.percentile > 0 && m->setup.percentile <= 100)) {
      st = fail(CLARA_ERR_FORMAT,
                "/: attribute input_percentile: a float in (0, 100] "
                "expected, found %g",
                m->setup.percentile);
      goto done;
    }
  }
  st = read_int(path, fid, "/", "layers", "a layer count in 1..64", 1,
                CLARA_NN_MAX_LAYERS, &nl);
  if (st != CLARA_OK)
    goto done;
  st = clara_h5_open_object(fn, path, fid, "layers", H5I_GROUP,
                            "a group holding the layers", &layers_g);
  if (st != CLARA_OK)
    goto done;

  cin = calloc((size_t)nl, sizeof *cin);
  cout = calloc((size_t)nl, sizeof *cout);
  relu = calloc((size_t)nl, sizeof *relu);
  if (!cin || !cout || !relu) {
    st = fail(CLARA_ERR_OUT_OF_MEMORY, "cannot allocate the layer table");
    goto done;
  }
  for (int k = 0; k < (int)nl; ++k) {
    st = read_layer_shape(path, fid, k, &cin[k], &cout[k], &relu[k]);
    if (st != CLARA_OK)
      goto done;
    if (k == 0 && cin[k] != 1) {
      st = fail(CLARA_ERR_FORMAT,
                "/layers/0/weight: the first layer takes 1 channel (the "
                "image), found [%d][%d][3][3]",
                cout[k], cin[k]);
      goto done;
    }
    if (k > 0 && cin[k] != cout[k - 1]) {
      st = fail(CLARA_ERR_FORMAT,
                "/layers/%d/weight: %d input channels, but layer %d has %d "
                "outputs ([%d][%d][3][3] after [%d][%d][3][3])",
                k, cin[k], k - 1, cout[k - 1], cout[k], cin[k], cout[k - 1],
                cin[k - 1]);
      goto done;
    }
    total += (size_t)cout[k] * (size_t)cin[k] * 9 + (size_t)cout[k];
  }
  if (cout[nl - 1] != 1) {
    st = fail(CLARA_ERR_FORMAT,
              "/layers/%lld/weight: the last layer gives 1 channel (the "
              "image), found [%d][%d][3][3]",
              nl - 1, cout[nl - 1], cin[nl - 1]);
    goto done;
  }

  m->params = clara_aligned_alloc(total * sizeof(float));
  m->layers = calloc((size_t)nl, sizeof *m->layers);
  if (!m->params || !m->layers) {
    st = fail(CLARA_ERR_OUT_OF_MEMORY, "cannot allocate %zu parameters",
              total);
    goto done;
  }
  {
    float *p = m->params;
    for (int k = 0; k < (int)nl; ++k) {
      char name[48];
      int wdims[4] = {cout[k], cin[k], 3, 3}, bdims[1] = {cout[k]};
      clara_nn_layer *L = &m->layers[k];
      L->cin = cin[k];
      L->cout = cout[k];
      L->relu = relu[k];
      float *w = p, *b = p + (size_t)cout[k] * cin[k] * 9;
      p = b + cout[k];
      L->weight = w;
      L->bias = b;
      snprintf(name, sizeof name, "/layers/%d/weight", k);
      st = read_tensor(path, fid, name, 4, wdims, "[out][in][3][3]",
                       w);
      if (st != CLARA_OK)
        goto done;
      snprintf(name, sizeof name, "/layers/%d/bias", k);
      st = read_tensor(path, fid, name, 1, bdims, "[out]", b);
      if (st != CLARA_OK)
        goto done;
      if (L->cout > m->setup.max_channels)
        m->setup.max_channels = L->cout;
      if (L->cin > m->setup.max_channels)
        m->setup.max_channels = L->cin;
    }
  }
  st = read_provenance(path, fid, m);
  if (st != CLARA_OK)
    goto done;
  m->setup.n_layers = (int)nl;
  m->setup.layers = m->layers;
  m->setup.precision = CLARA_PRECISION_FP32;
  m->parameters = (long long)total;
done:
  free(text);
  free(cin);
  free(cout);
  free(relu);
  clara_h5_close(H5Gclose, &layers_g, &st, fn, path);
  clara_h5_close(H5Fclose, &fid, &st, fn, path);
  return st;
}

clara_status clara_nn_model_read(const char *path, clara_nn_model *m) {
  clara_status st;
  memset(m, 0, sizeof *m);
  clara_h5_lock();
  st = read_locked(path, m);
  clara_h5_unlock();
  if (st != CLARA_OK)
    clara_nn_model_free(m);
  return st;
}

void clara_nn_model_free(clara_nn_model *m) {
  if (!m)
    return;
  clara_aligned_free(m->params);
  free(m->layers);
  memset(m, 0, sizeof *m);
}
