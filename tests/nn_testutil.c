/* nn_testutil.c -- see nn_testutil.h. */
#include "nn_testutil.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static double rnd(unsigned long long *s) {
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(*s >> 11) / 9007199254740992.0; /* [0, 1) */
}

void nn_test_model_random(nn_test_model *m, int layers, int width,
                          unsigned seed) {
  unsigned long long s = 0x9e3779b97f4a7c15ULL ^ seed;
  memset(m, 0, sizeof *m);
  m->layers = layers;
  for (int l = 0; l <= layers; ++l)
    m->channels[l] = (l == 0 || l == layers) ? 1 : width;
  for (int l = 0; l < layers; ++l) {
    int cin = m->channels[l], cout = m->channels[l + 1];
    size_t nw = (size_t)cout * cin * 9;
    double a = sqrt(6.0 / (9.0 * cin)); /* He-uniform */
    m->relu[l] = l + 1 < layers;
    m->weight[l] = malloc(nw * sizeof(float));
    m->bias[l] = malloc((size_t)cout * sizeof(float));
    for (size_t i = 0; i < nw; ++i)
      m->weight[l][i] = (float)((2 * rnd(&s) - 1) * a);
    for (int o = 0; o < cout; ++o)
      m->bias[l][o] = (float)((2 * rnd(&s) - 1) * 0.05);
  }
  m->residual = 1;
  m->percentile_norm = 0;
  m->offset = 0.0;
  m->scale = 1000.0;
  m->percentile = 99.0;
  m->modality = "ct";
}

void nn_test_model_free(nn_test_model *m) {
  for (int l = 0; l < m->layers; ++l) {
    free(m->weight[l]);
    free(m->bias[l]);
  }
  memset(m, 0, sizeof *m);
}

static int put_str(hid_t loc, const char *name, const char *value) {
  hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR), a;
  int rc = -1;
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  if (a >= 0 && H5Awrite(a, t, &value) >= 0)
    rc = 0;
  if (a >= 0)
    H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
  return rc;
}

static int put_num(hid_t loc, const char *name, hid_t type, const void *v) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(loc, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
  int rc = (a >= 0 && H5Awrite(a, type, v) >= 0) ? 0 : -1;
  if (a >= 0)
    H5Aclose(a);
  H5Sclose(sp);
  return rc;
}

static int put_data(hid_t loc, const char *name, int rank,
                    const hsize_t *dims, const float *v) {
  hid_t sp = H5Screate_simple(rank, dims, NULL);
  hid_t d = H5Dcreate2(loc, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT,
                       H5P_DEFAULT, H5P_DEFAULT);
  int rc = (d >= 0 && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL,
                               H5P_DEFAULT, v) >= 0)
               ? 0
               : -1;
  if (d >= 0)
    H5Dclose(d);
  H5Sclose(sp);
  return rc;
}

int nn_test_model_write(const nn_test_model *m, const char *path) {
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), g;
  int rc = 0, version = 1, layers = m->layers, residual = m->residual;
  if (f < 0)
    return -1;
  rc |= put_str(f, "format", "clara-recon-denoiser");
  rc |= put_num(f, "format_version", H5T_NATIVE_INT, &version);
  rc |= put_str(f, "architecture", "test-random");
  rc |= put_str(f, "modality", m->modality);
  rc |= put_num(f, "residual", H5T_NATIVE_INT, &residual);
  if (m->percentile_norm) {
    rc |= put_str(f, "normalisation", "percentile");
    rc |= put_num(f, "input_percentile", H5T_NATIVE_DOUBLE, &m->percentile);
  } else {
    rc |= put_str(f, "normalisation", "fixed");
    rc |= put_num(f, "input_offset", H5T_NATIVE_DOUBLE, &m->offset);
    rc |= put_num(f, "input_scale", H5T_NATIVE_DOUBLE, &m->scale);
  }
  rc |= put_num(f, "layers", H5T_NATIVE_INT, &layers);
  g = H5Gcreate2(f, "layers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  for (int l = 0; l < m->layers && g >= 0; ++l) {
    char name[16];
    hsize_t wd[4] = {(hsize_t)m->channels[l + 1], (hsize_t)m->channels[l], 3,
                     3};
    hsize_t bd[1] = {(hsize_t)m->channels[l + 1]};
    hid_t lg;
    snprintf(name, sizeof name, "%d", l);
    lg = H5Gcreate2(g, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (lg < 0) {
      rc = -1;
      break;
    }
    rc |= put_str(lg, "kind", "conv3x3");
    rc |= put_str(lg, "activation", m->relu[l] ? "relu" : "none");
    rc |= put_data(lg, "weight", 4, wd, m->weight[l]);
    rc |= put_data(lg, "bias", 1, bd, m->bias[l]);
    H5Gclose(lg);
  }
  if (g < 0)
    rc = -1;
  else
    H5Gclose(g);
  if (H5Fclose(f) < 0)
    rc = -1;
  return rc ? -1 : 0;
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

void nn_test_reference(const nn_test_model *m, const float *in, float *out,
                       int nx, int ny, int nslices) {
  size_t n = (size_t)nx * ny;
  int wmax = 1;
  for (int l = 0; l <= m->layers; ++l)
    if (m->channels[l] > wmax)
      wmax = m->channels[l];
  double *a = malloc(n * wmax * sizeof(double));
  double *b = malloc(n * wmax * sizeof(double));
  double *x0 = malloc(n * sizeof(double));
  float *sorted = malloc(n * sizeof(float));
  for (int s = 0; s < nslices; ++s) {
    const float *src = in + s * n;
    double off = m->offset, sc = m->scale;
    if (m->percentile_norm) {
      memcpy(sorted, src, n * sizeof(float));
      qsort(sorted, n, sizeof(float), cmp_float);
      size_t rank = (size_t)llround((double)(n - 1) * m->percentile / 100.0);
      off = 0.0;
      sc = sorted[rank] > 0 ? sorted[rank] : 1.0;
    }
    for (size_t i = 0; i < n; ++i)
      x0[i] = a[i] = (src[i] - off) / sc;
    for (int l = 0; l < m->layers; ++l) {
      int cin = m->channels[l], cout = m->channels[l + 1];
      for (int o = 0; o < cout; ++o)
        for (int y = 0; y < ny; ++y)
          for (int x = 0; x < nx; ++x) {
            double acc = m->bias[l][o];
            for (int i = 0; i < cin; ++i) {
              const float *w = m->weight[l] + ((size_t)o * cin + i) * 9;
              const double *src_i = a + (size_t)i * n;
              for (int kh = 0; kh < 3; ++kh) {
                int yy = y + kh - 1;
                if (yy < 0 || yy >= ny)
                  continue;
                for (int kw = 0; kw < 3; ++kw) {
                  int xx = x + kw - 1;
                  if (xx < 0 || xx >= nx)
                    continue;
                  acc += w[kh * 3 + kw] * src_i[(size_t)yy * nx + xx];
                }
              }
            }
            if (m->relu[l] && acc < 0)
              acc = 0;
            b[(size_t)o * n + (size_t)y * nx + x] = acc;
          }
      double *t = a;
      a = b;
      b = t;
    }
    for (size_t i = 0; i < n; ++i) {
      double v = m->residual ? x0[i] - a[i] : a[i];
      out[s * n + i] = (float)(v * sc + off);
    }
  }
  free(a);
  free(b);
  free(x0);
  free(sorted);
}

double nn_test_rel_l2(const float *a, const float *b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    double d = (double)a[i] - b[i];
    num += d * d;
    den += (double)b[i] * b[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

char *nn_test_tmpname(const char *suffix) {
  const char *dir = getenv("TMPDIR");
  static unsigned counter;
  size_t len;
  char *p;
  if (!dir || !*dir)
    dir = "/tmp";
  len = strlen(dir) + strlen(suffix) + 64;
  p = malloc(len);
  snprintf(p, len, "%s/clara-nn-%ld-%u%s", dir, (long)getpid(), counter++,
           suffix);
  return p;
}
