/* openblas_denoise -- the CPU denoiser against convolutions built on
 * OpenBLAS's SGEMM, the dependency a C library would otherwise take for
 * its 3x3 convolutions. Both run in this one process, on the same model
 * file, input, and number of threads; the report gives the ratio and how
 * far the outputs are apart.
 *
 *   openblas_denoise --model FILE [--size N] [--batch B] [--threads T]
 *                    [--repeat K] [--warmup W] [--json]
 *
 * The model file is read here with the HDF5 C API (docs/FORMATS.md,
 * "Denoiser model file"; "fixed" normalisation only, as the CT models).
 * Activations are kept as zero-bordered NHWC images, [(ny + 2)][(nx + 2)][C],
 * so that no convolution needs bounds checks. Two ways to use SGEMM, both
 * done as well as we know how:
 *
 *   im2col  for a band of R image rows, copy the 3x3 neighbourhoods into a
 *           [R nx][9 Cin] matrix and multiply it by the [9 Cin][Cout]
 *           weights (K = 9 Cin); R is chosen so that the band's matrix
 *           stays within 4 MiB (the memory stays bounded, no 300 MB
 *           matrix for a 512 x 512 image at 32 channels);
 *   shifted for a band of R padded rows, nine SGEMMs with beta = 1, one per
 *           tap, each reading the input in place as a [R (nx + 2)][Cin]
 *           matrix shifted by the tap's offset (no copy at all; K = Cin;
 *           the two border columns of each row are computed and dropped).
 *
 * Bias and ReLU are applied to each band right after its SGEMMs, while it
 * is in cache. OpenBLAS runs the SGEMMs with T threads
 * (openblas_set_num_threads); the rest runs on one. The faster of the two
 * is the peer's time. Built only when ./configure finds OpenBLAS
 * (pkg-config openblas; Debian: libopenblas-dev).
 *
 * Exit status: 0, 1 when something fails, 2 for a usage error, 77 when
 * the model is not a kind this program handles. */
#include "clara_recon.h"

#include <cblas.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROG "openblas_denoise"

typedef struct layer {
  int cin, cout, relu;
  float *w_col; /* [9 cin][cout]: row (tap, ci), tap = kh 3 + kw */
  float *bias;  /* [cout] */
} layer;

typedef struct model {
  int nl, residual, max_c;
  double offset, scale;
  layer *l;
} model;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *t, int n) {
  qsort(t, (size_t)n, sizeof *t, cmp_double);
  return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

/* ---- The model file ------------------------------------------------------ */

static int attr_double(hid_t obj, const char *name, double *v) {
  hid_t a;
  herr_t e;
  if (H5Aexists(obj, name) <= 0)
    return -1;
  a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0)
    return -1;
  e = H5Aread(a, H5T_NATIVE_DOUBLE, v);
  H5Aclose(a);
  return e < 0 ? -1 : 0;
}

static int attr_string(hid_t obj, const char *name, char *buf, size_t len) {
  hid_t a, t, mt;
  int ok = -1;
  if (H5Aexists(obj, name) <= 0)
    return -1;
  a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0)
    return -1;
  t = H5Aget_type(a);
  if (H5Tget_class(t) == H5T_STRING) {
    if (H5Tis_variable_str(t) > 0) {
      char *s = NULL;
      mt = H5Tcopy(H5T_C_S1);
      H5Tset_size(mt, H5T_VARIABLE);
      H5Tset_cset(mt, H5Tget_cset(t));
      if (H5Aread(a, mt, &s) >= 0 && s) {
        snprintf(buf, len, "%s", s);
        ok = 0;
      }
      if (s)
        H5free_memory(s);
      H5Tclose(mt);
    } else {
      size_t n = H5Tget_size(t);
      char *s = calloc(n + 1, 1);
      mt = H5Tcopy(H5T_C_S1);
      H5Tset_size(mt, n + 1);
      H5Tset_cset(mt, H5Tget_cset(t));
      if (s && H5Aread(a, mt, s) >= 0) {
        snprintf(buf, len, "%s", s);
        ok = 0;
      }
      free(s);
      H5Tclose(mt);
    }
  }
  H5Tclose(t);
  H5Aclose(a);
  return ok;
}

static float *read_floats(hid_t g, const char *name, size_t want) {
  hid_t d = H5Dopen2(g, name, H5P_DEFAULT), s;
  float *v = NULL;
  if (d < 0)
    return NULL;
  s = H5Dget_space(d);
  if (s >= 0 && (size_t)H5Sget_simple_extent_npoints(s) == want) {
    v = malloc(want * sizeof *v);
    if (v &&
        H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
      free(v);
      v = NULL;
    }
  }
  if (s >= 0)
    H5Sclose(s);
  H5Dclose(d);
  return v;
}

static void model_free(model *m) {
  for (int k = 0; m->l && k < m->nl; ++k) {
    free(m->l[k].w_col);
    free(m->l[k].bias);
  }
  free(m->l);
  memset(m, 0, sizeof *m);
}

/* Returns 0, 1 for an unreadable file, 77 for a kind not handled here. */
static int model_load(const char *path, model *m) {
  hid_t f, g;
  double v;
  char s[64];
  int ret = 1, prev = 1;
  memset(m, 0, sizeof *m);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors are reported here */
  f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    fprintf(stderr, PROG ": cannot open %s\n", path);
    return 1;
  }
  if (attr_string(f, "normalisation", s, sizeof s) != 0 ||
      strcmp(s, "fixed") != 0) {
    fprintf(stderr, PROG ": %s: only \"fixed\" normalisation is handled\n",
            path);
    H5Fclose(f);
    return 77;
  }
  if (attr_double(f, "layers", &v) != 0 || v < 1 || v > 256 ||
      attr_double(f, "input_offset", &m->offset) != 0 ||
      attr_double(f, "input_scale", &m->scale) != 0)
    goto bad;
  m->nl = (int)v;
  m->residual = attr_double(f, "residual", &v) == 0 && v == 1;
  m->l = calloc((size_t)m->nl, sizeof *m->l);
  if (!m->l)
    goto bad;
  for (int k = 0; k < m->nl; ++k) {
    char name[32];
    layer *L = &m->l[k];
    hid_t d, sp;
    hsize_t dims[4];
    float *w;
    snprintf(name, sizeof name, "layers/%d", k);
    g = H5Gopen2(f, name, H5P_DEFAULT);
    if (g < 0)
      goto bad;
    d = H5Dopen2(g, "weight", H5P_DEFAULT);
    sp = d >= 0 ? H5Dget_space(d) : -1;
    if (sp < 0 || H5Sget_simple_extent_ndims(sp) != 4 ||
        H5Sget_simple_extent_dims(sp, dims, NULL) != 4 || dims[2] != 3 ||
        dims[3] != 3 || (int)dims[1] != prev) {
      if (sp >= 0)
        H5Sclose(sp);
      if (d >= 0)
        H5Dclose(d);
      H5Gclose(g);
      goto bad;
    }
    H5Sclose(sp);
    H5Dclose(d);
    L->cin = (int)dims[1];
    L->cout = (int)dims[0];
    prev = L->cout;
    w = read_floats(g, "weight", (size_t)L->cout * (size_t)L->cin * 9);
    L->bias = read_floats(g, "bias", (size_t)L->cout);
    L->relu = attr_string(g, "activation", s, sizeof s) == 0 &&
              strcmp(s, "relu") == 0;
    H5Gclose(g);
    L->w_col =
        malloc((size_t)9 * (size_t)L->cin * (size_t)L->cout * sizeof(float));
    if (!w || !L->bias || !L->w_col) {
      free(w);
      goto bad;
    }
    /* [co][ci][kh][kw] -> [(kh 3 + kw) cin + ci][co] */
    for (int co = 0; co < L->cout; ++co)
      for (int ci = 0; ci < L->cin; ++ci)
        for (int t = 0; t < 9; ++t)
          L->w_col[((size_t)t * (size_t)L->cin + (size_t)ci) * (size_t)L->cout +
                   (size_t)co] =
              w[((size_t)co * (size_t)L->cin + (size_t)ci) * 9 + (size_t)t];
    free(w);
    if (L->cout > m->max_c)
      m->max_c = L->cout;
  }
  if (prev != 1)
    goto bad;
  H5Fclose(f);
  return 0;
bad:
  fprintf(stderr, PROG ": %s: not a readable denoiser model file\n", path);
  model_free(m);
  H5Fclose(f);
  return ret;
}

/* ---- The SGEMM networks -------------------------------------------------- */

typedef struct work {
  int nx, ny;
  float *a, *b; /* padded NHWC activations, [(ny + 2)][(nx + 2)][max_c] */
  float *col;   /* im2col band, or the shifted band's output */
  size_t col_floats;
} work;

/* Rows per band: the band's matrix within 4 MiB, at least one row. */
static int band_rows(int nx, int k) {
  size_t per_row = (size_t)nx * (size_t)k * sizeof(float);
  size_t r = ((size_t)4 << 20) / (per_row ? per_row : 1);
  return r < 1 ? 1 : r > 64 ? 64 : (int)r;
}

static void bias_relu_store(const float *c, size_t ldc, int npx, const layer *L,
                            float *dst, int cs) {
  for (int p = 0; p < npx; ++p) {
    const float *cr = c + (size_t)p * ldc;
    float *o = dst + (size_t)p * (size_t)cs;
    for (int co = 0; co < L->cout; ++co) {
      float v = cr[co] + L->bias[co];
      o[co] = L->relu && v < 0.0f ? 0.0f : v;
    }
  }
}

/* One layer, im2col by bands. in/out: padded images with channel stride cs. */
static void layer_im2col(const layer *L, const float *in, float *out, int nx,
                         int ny, int cs, float *col) {
  int K = 9 * L->cin, R = band_rows(nx, K);
  size_t pitch = (size_t)(nx + 2) * (size_t)cs;
  for (int y0 = 0; y0 < ny; y0 += R) {
    int r = ny - y0 < R ? ny - y0 : R, M = r * nx;
    for (int y = 0; y < r; ++y)
      for (int x = 0; x < nx; ++x) {
        float *dst = col + ((size_t)y * (size_t)nx + (size_t)x) * (size_t)K;
        for (int kh = 0; kh < 3; ++kh)
          for (int kw = 0; kw < 3; ++kw)
            memcpy(dst + (size_t)(kh * 3 + kw) * (size_t)L->cin,
                   in + (size_t)(y0 + y + kh) * pitch +
                       (size_t)(x + kw) * (size_t)cs,
                   (size_t)L->cin * sizeof(float));
      }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, L->cout, K, 1.0f,
                col, K, L->w_col, L->cout, 0.0f, col + (size_t)M * (size_t)K,
                L->cout);
    for (int y = 0; y < r; ++y)
      bias_relu_store(col + (size_t)M * (size_t)K +
                          (size_t)y * (size_t)nx * (size_t)L->cout,
                      (size_t)L->cout, nx, L,
                      out + (size_t)(y0 + y + 1) * pitch + (size_t)cs, cs);
  }
}

/* One layer, nine shifted SGEMMs per band, reading the input in place. */
static void layer_shifted(const layer *L, const float *in, float *out, int nx,
                          int ny, int cs, float *cbuf) {
  int R = band_rows(nx + 2, L->cout);
  size_t pitch = (size_t)(nx + 2) * (size_t)cs;
  for (int y0 = 0; y0 < ny; y0 += R) {
    int r = ny - y0 < R ? ny - y0 : R;
    /* Band position j = y (nx + 2) + x (y < r, x < nx + 2) is output pixel
     * (y0 + y, x); tap (kh, kw) reads padded pixel (y0 + y + kh, x + kw),
     * which is row j of a [M][Cin] matrix with row stride cs starting at
     * padded (y0 + kh, kw). Positions x = nx, nx + 1 wrap into the next row
     * and are dropped; M stops at the last valid one, so that every read
     * stays inside the padded image. */
    int M = r * (nx + 2) - 2;
    for (int t = 0; t < 9; ++t) {
      int kh = t / 3, kw = t % 3;
      const float *a = in + (size_t)(y0 + kh) * pitch + (size_t)kw * (size_t)cs;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, L->cout, L->cin,
                  1.0f, a, cs,
                  L->w_col + (size_t)t * (size_t)L->cin * (size_t)L->cout,
                  L->cout, t ? 1.0f : 0.0f, cbuf, L->cout);
    }
    /* cbuf row j is padded position j + 1 of the band (row-major over the
     * band's padded rows); pixel (y, x) is j = y (nx + 2) + x. */
    for (int y = 0; y < r; ++y)
      bias_relu_store(cbuf + (size_t)y * (size_t)(nx + 2) * (size_t)L->cout,
                      (size_t)L->cout, nx, L,
                      out + (size_t)(y0 + y + 1) * pitch + (size_t)cs, cs);
  }
}

/* The whole denoiser on one slice; way 0 = im2col, 1 = shifted. */
static void run_net(const model *m, work *w, const float *img, float *res,
                    int way) {
  int nx = w->nx, ny = w->ny, cs = m->max_c;
  size_t pitch = (size_t)(nx + 2) * (size_t)cs;
  float *in = w->a, *out = w->b;
  for (int y = 0; y < ny; ++y)
    for (int x = 0; x < nx; ++x)
      in[(size_t)(y + 1) * pitch + (size_t)(x + 1) * (size_t)cs] =
          (float)(((double)img[(size_t)y * (size_t)nx + (size_t)x] -
                   m->offset) /
                  m->scale);
  for (int k = 0; k < m->nl; ++k) {
    float *t;
    if (way == 0)
      layer_im2col(&m->l[k], in, out, nx, ny, cs, w->col);
    else
      layer_shifted(&m->l[k], in, out, nx, ny, cs, w->col);
    t = in;
    in = out;
    out = t;
  }
  /* 'in' holds the net's output in channel 0; the input is in w->a's
   * channel 0 only if the layer count is even, so recompute x_n. */
  for (int y = 0; y < ny; ++y)
    for (int x = 0; x < nx; ++x) {
      size_t i = (size_t)y * (size_t)nx + (size_t)x;
      double xn = ((double)img[i] - m->offset) / m->scale;
      double o = in[(size_t)(y + 1) * pitch + (size_t)(x + 1) * (size_t)cs];
      res[i] = (float)((m->residual ? xn - o : o) * m->scale + m->offset);
    }
}

/* ---- Main ---------------------------------------------------------------- */

static int usage(FILE *f, int status) {
  fprintf(f, "usage: " PROG " --model FILE [--size N] [--batch B] "
             "[--threads T] [--repeat K] [--warmup W] [--json]\n");
  return status;
}

static int parse_pos(const char *s, int lo, int hi, int *v) {
  char *end;
  long x = strtol(s, &end, 10);
  if (!*s || *end || x < lo || x > hi)
    return -1;
  *v = (int)x;
  return 0;
}

static double rel_l2(const float *a, const float *b, size_t n, double *maxrel) {
  double num = 0, den = 0, mx = 0, mref = 0;
  for (size_t i = 0; i < n; ++i) {
    double d = (double)a[i] - (double)b[i];
    num += d * d;
    den += (double)b[i] * (double)b[i];
    if (fabs(d) > mx)
      mx = fabs(d);
    if (fabs((double)b[i]) > mref)
      mref = fabs((double)b[i]);
  }
  *maxrel = mref > 0 ? mx / mref : mx;
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

int main(int argc, char **argv) {
  const char *path = NULL;
  int size = 512, batch = 1, threads = 2, repeat = 5, warmup = 1, json = 0;
  int ret = 1, rc;
  model m;
  work w = {0};
  clara_context_options o;
  clara_context *ctx = NULL;
  clara_denoiser *d = NULL;
  float *img = NULL, *ours = NULL, *peer[2] = {NULL, NULL};
  double *t = NULL, t_ours, t_peer[2], l2[2], mrel[2];
  size_t n, plane;

  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i];
    if (strcmp(a, "--json") == 0) {
      json = 1;
      continue;
    }
    if (strcmp(a, "--help") == 0)
      return usage(stdout, 0);
    if (i + 1 >= argc)
      return usage(stderr, 2);
    if (strcmp(a, "--model") == 0)
      path = argv[++i];
    else if (strcmp(a, "--size") == 0    ? parse_pos(argv[++i], 3, 8192, &size)
             : strcmp(a, "--batch") == 0 ? parse_pos(argv[++i], 1, 1024, &batch)
             : strcmp(a, "--threads") == 0
                 ? parse_pos(argv[++i], 1, 1024, &threads)
             : strcmp(a, "--repeat") == 0
                 ? parse_pos(argv[++i], 1, 100000, &repeat)
             : strcmp(a, "--warmup") == 0
                 ? parse_pos(argv[++i], 0, 100000, &warmup)
                 : -1) {
      fprintf(stderr, PROG ": bad option or value: %s\n", a);
      return usage(stderr, 2);
    }
  }
  if (!path)
    return usage(stderr, 2);
  if ((rc = model_load(path, &m)) != 0)
    return rc;

  plane = (size_t)size * (size_t)size;
  n = plane * (size_t)batch;
  w.nx = w.ny = size;
  {
    size_t pad = (size_t)(size + 2) * (size_t)(size + 2) * (size_t)m.max_c;
    size_t c1 = 0;
    for (int k = 0; k < m.nl; ++k) {
      int K = 9 * m.l[k].cin, R = band_rows(size, K);
      size_t a = (size_t)R * (size_t)size * (size_t)(K + m.l[k].cout);
      size_t b = (size_t)band_rows(size + 2, m.l[k].cout) * (size_t)(size + 2) *
                 (size_t)m.l[k].cout;
      c1 = a > c1 ? a : c1;
      c1 = b > c1 ? b : c1;
    }
    w.a = calloc(pad, sizeof(float));
    w.b = calloc(pad, sizeof(float));
    w.col = malloc(c1 * sizeof(float));
    w.col_floats = c1;
  }
  img = malloc(n * sizeof *img);
  ours = malloc(n * sizeof *ours);
  peer[0] = malloc(n * sizeof(float));
  peer[1] = malloc(n * sizeof(float));
  t = malloc((size_t)repeat * sizeof *t);
  if (!w.a || !w.b || !w.col || !img || !ours || !peer[0] || !peer[1] || !t) {
    fprintf(stderr, PROG ": out of memory\n");
    goto done;
  }
  /* A head-sized disc of soft tissue in air, 20 HU of noise (a fixed LCG). */
  {
    unsigned long long s = 0x9E3779B97F4A7C15ull;
    for (int z = 0; z < batch; ++z)
      for (int y = 0; y < size; ++y)
        for (int x = 0; x < size; ++x) {
          double dx = x - size / 2.0, dy = y - size / 2.0, u1, u2;
          s = s * 6364136223846793005ull + 1442695040888963407ull;
          u1 = ((double)(s >> 11) + 0.5) / 9007199254740992.0;
          s = s * 6364136223846793005ull + 1442695040888963407ull;
          u2 = ((double)(s >> 11) + 0.5) / 9007199254740992.0;
          img[(size_t)z * plane + (size_t)y * (size_t)size + (size_t)x] =
              (float)((dx * dx + dy * dy < 0.2025 * size * size ? 40.0
                                                                : -1000.0) +
                      20.0 * sqrt(-2.0 * log(u1)) *
                          cos(6.283185307179586 * u2));
        }
  }

  /* The library. */
  clara_context_options_init(&o);
  o.backend = CLARA_BACKEND_CPU;
  o.threads = threads;
  if (clara_context_create(&o, &ctx) != CLARA_OK ||
      clara_denoiser_load(ctx, path, &d) != CLARA_OK) {
    fprintf(stderr, PROG ": %s\n", clara_last_error());
    goto done;
  }
  for (int r = 0; r < warmup + repeat; ++r) {
    double t0 = now_ms();
    if (clara_denoise(d, img, ours, size, size, batch) != CLARA_OK) {
      fprintf(stderr, PROG ": %s\n", clara_last_error());
      goto done;
    }
    if (r >= warmup)
      t[r - warmup] = now_ms() - t0;
  }
  t_ours = median(t, repeat);

  /* OpenBLAS, both ways. */
  openblas_set_num_threads(threads);
  for (int way = 0; way < 2; ++way) {
    for (int r = 0; r < warmup + repeat; ++r) {
      double t0 = now_ms();
      for (int z = 0; z < batch; ++z)
        run_net(&m, &w, img + (size_t)z * plane, peer[way] + (size_t)z * plane,
                way);
      if (r >= warmup)
        t[r - warmup] = now_ms() - t0;
    }
    t_peer[way] = median(t, repeat);
    l2[way] = rel_l2(ours, peer[way], n, &mrel[way]);
  }

  {
    int best = t_peer[1] < t_peer[0];
    double ratio = t_peer[best] / t_ours;
    if (json)
      printf("{\"tool\": \"" PROG "\", \"model\": \"%s\", \"size\": %d, "
             "\"batch\": %d, \"threads\": %d, \"repeat\": %d, "
             "\"openblas\": \"%s\", \"openblas_core\": \"%s\", "
             "\"ours_ms\": %.4f, \"im2col_ms\": %.4f, \"shifted_ms\": %.4f, "
             "\"speedup_vs_openblas\": %.4f, \"im2col_rel_l2\": %.3e, "
             "\"shifted_rel_l2\": %.3e, \"im2col_max_rel_diff\": %.3e, "
             "\"shifted_max_rel_diff\": %.3e}\n",
             path, size, batch, threads, repeat, openblas_get_config(),
             openblas_get_corename(), t_ours, t_peer[0], t_peer[1], ratio,
             l2[0], l2[1], mrel[0], mrel[1]);
    else {
      printf(PROG ": %s, %d x %d x %d, %d threads, medians of %d\n", path,
             batch, size, size, threads, repeat);
      printf("  OpenBLAS %s (core %s)\n", openblas_get_config(),
             openblas_get_corename());
      printf("  libclara-recon: %9.2f ms\n", t_ours);
      printf("  im2col + SGEMM: %9.2f ms (rel L2 to ours %.2e)\n", t_peer[0],
             l2[0]);
      printf("  shifted SGEMM:  %9.2f ms (rel L2 to ours %.2e)\n", t_peer[1],
             l2[1]);
      printf("  ratio:          %.2fx faster than the faster OpenBLAS way\n",
             ratio);
    }
  }
  ret = 0;
done:
  clara_denoiser_destroy(d);
  clara_context_destroy(ctx);
  model_free(&m);
  free(w.a);
  free(w.b);
  free(w.col);
  free(img);
  free(ours);
  free(peer[0]);
  free(peer[1]);
  free(t);
  return ret;
}
