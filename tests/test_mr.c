/* test_mr.c -- Cartesian MRI reconstruction against independent references:
 * a double-precision centred DFT written here, exact linear-algebra
 * identities for the noise whitening, synthetic coil maps, and the
 * full-data reconstruction for partial Fourier. */
#include "clara_recon.h"

#include <check.h>
#include <complex.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MSG_HAS(frag)                                                          \
  ck_assert_msg(strstr(clara_last_error(), (frag)) != NULL,                    \
                "message \"%s\" lacks \"%s\"", clara_last_error(), (frag))

typedef double complex cplx;

static clara_context *cpu_ctx(int threads) {
  clara_context_options o;
  clara_context *ctx = NULL;
  clara_context_options_init(&o);
  o.backend = CLARA_BACKEND_CPU;
  o.threads = threads;
  ck_assert_int_eq(clara_context_create(&o, &ctx), CLARA_OK);
  return ctx;
}

/* ---- Random numbers (deterministic) -------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static double urand(void) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}

/* A circular complex Gaussian of variance 1 (E|z|^2 = 1). */
static cplx crandn(void) {
  double u = urand(), v = urand();
  double r = sqrt(-log(u));
  return r * cos(2 * M_PI * v) + I * r * sin(2 * M_PI * v);
}

/* ---- The reference centred DFT --------------------------------------------
 * Along an axis of n with centre c = n/2:
 *   out[m] = sum_j a[j] exp(sign 2 pi i (m - c)(j - c) / n),
 * sign -1 from image to k-space, +1 back; applied separably over
 * [nz][ny][nx]. No scale. */
static void dft_axis(cplx *a, int count, int n, size_t stride, size_t inner,
                     int sign) {
  cplx *tw = malloc(sizeof *tw * (size_t)n * n);
  cplx *tmp = malloc(sizeof *tmp * (size_t)n);
  int c = n / 2;
  for (int m = 0; m < n; m++)
    for (int j = 0; j < n; j++)
      tw[(size_t)m * n + j] =
          cexp(sign * 2.0 * M_PI * I * (double)(m - c) * (j - c) / n);
  for (int o = 0; o < count; o++)
    for (size_t in = 0; in < inner; in++) {
      cplx *base = a + (size_t)o * n * stride + in;
      for (int m = 0; m < n; m++) {
        cplx s = 0;
        for (int j = 0; j < n; j++)
          s += tw[(size_t)m * n + j] * base[(size_t)j * stride];
        tmp[m] = s;
      }
      for (int m = 0; m < n; m++)
        base[(size_t)m * stride] = tmp[m];
    }
  free(tw);
  free(tmp);
}

static void dft3(cplx *a, int nz, int ny, int nx, int sign) {
  dft_axis(a, nz * ny, nx, 1, 1, sign);
  dft_axis(a, nz, ny, (size_t)nx, (size_t)nx, sign);
  dft_axis(a, 1, nz, (size_t)nx * ny, (size_t)nx * ny, sign);
}

/* Image -> orthonormal centred k-space, written as interleaved floats. */
static void to_kspace(const cplx *img, int nz, int ny, int nx, float *k) {
  size_t n = (size_t)nz * ny * nx;
  cplx *t = malloc(sizeof *t * n);
  memcpy(t, img, sizeof *t * n);
  dft3(t, nz, ny, nx, -1);
  for (size_t i = 0; i < n; i++) {
    t[i] /= sqrt((double)n);
    k[2 * i] = (float)creal(t[i]);
    k[2 * i + 1] = (float)cimag(t[i]);
  }
  free(t);
}

static clara_mr_geometry full_geom(int coils, int nx, int ny, int nz,
                                   int slices) {
  clara_mr_geometry g;
  memset(&g, 0, sizeof g);
  g.coils = coils;
  g.nx = nx;
  g.ny = ny;
  g.nz = nz;
  g.slices = slices;
  g.ky_last = ny - 1;
  g.kx_last = nx - 1;
  return g;
}

static float *ones_maps(int coils, size_t npix) {
  float *s = calloc(2 * (size_t)coils * npix, sizeof *s);
  for (size_t i = 0; i < (size_t)coils * npix; i++)
    s[2 * i] = 1;
  return s;
}

static clara_mr_plan *make_plan(clara_context *ctx, const clara_mr_geometry *g,
                                const clara_mr_options *o) {
  clara_mr_plan *p = NULL;
  clara_status st = clara_mr_plan_create(ctx, g, o, &p);
  ck_assert_msg(st == CLARA_OK, "plan: %s", clara_last_error());
  return p;
}

static void run(const clara_mr_plan *p, const float *k, float *img) {
  clara_status st = clara_mr_execute(p, k, img);
  ck_assert_msg(st == CLARA_OK, "execute: %s", clara_last_error());
}

/* ---- FFT convention ------------------------------------------------------ */

static void check_fft(int nx, int ny, int nz, int threads) {
  size_t n = (size_t)nx * ny * nz;
  cplx *x = malloc(sizeof *x * n);
  float *k = malloc(sizeof *k * 2 * n);
  float *out = malloc(sizeof *out * 2 * n);
  float *maps = ones_maps(1, n);
  clara_context *ctx = cpu_ctx(threads);
  clara_mr_geometry g = full_geom(1, nx, ny, nz, 1);
  clara_mr_options o;
  clara_mr_plan *p;
  double err = 0, err_none = 0, err_ad = 0;

  for (size_t i = 0; i < n; i++)
    x[i] = crandn();
  to_kspace(x, nz, ny, nx, k);

  clara_mr_options_init(&o);
  o.combine = CLARA_MR_COMBINE_SENSITIVITY;
  o.sensitivities = maps;
  o.output_complex = 1;
  p = make_plan(ctx, &g, &o);
  run(p, k, out);
  clara_mr_plan_destroy(p);
  for (size_t i = 0; i < n; i++)
    err = fmax(err, cabs(out[2 * i] + I * out[2 * i + 1] - x[i]));

  o.norm = CLARA_MR_NORM_NONE;
  p = make_plan(ctx, &g, &o);
  run(p, k, out);
  clara_mr_plan_destroy(p);
  for (size_t i = 0; i < n; i++)
    err_none = fmax(err_none, cabs(out[2 * i] + I * out[2 * i + 1] -
                                   sqrt((double)n) * x[i]) /
                                  sqrt((double)n));

  /* one coil: the adaptive combination is the coil image itself */
  clara_mr_options_init(&o);
  o.combine = CLARA_MR_COMBINE_ADAPTIVE;
  o.output_complex = 1;
  p = make_plan(ctx, &g, &o);
  run(p, k, out);
  clara_mr_plan_destroy(p);
  for (size_t i = 0; i < n; i++)
    err_ad = fmax(err_ad, cabs(out[2 * i] + I * out[2 * i + 1] - x[i]));

  printf("fft %dx%dx%d: max err ortho %.2e none/sqrt(N) %.2e adaptive "
         "%.2e\n",
         nx, ny, nz, err, err_none, err_ad);
  ck_assert_msg(err < 1e-5, "ortho %dx%dx%d: %g", nx, ny, nz, err);
  ck_assert_msg(err_none < 1e-5, "none %dx%dx%d: %g", nx, ny, nz, err_none);
  ck_assert_msg(err_ad < 1e-5, "adaptive %dx%dx%d: %g", nx, ny, nz, err_ad);
  clara_context_destroy(ctx);
  free(x);
  free(k);
  free(out);
  free(maps);
}

START_TEST(fft_convention) {
  check_fft(12, 10, 1, 2);
  check_fft(10, 12, 1, 1);
  check_fft(9, 7, 1, 3);
  check_fft(12, 10, 4, 4);
  check_fft(9, 7, 3, 2);
  check_fft(1, 5, 1, 1);
}
END_TEST

/* A single k-space sample at the centre is a flat image of value
 * K / sqrt(N): the DC sits at n/2. */
START_TEST(dc_at_half) {
  int nx = 8, ny = 7;
  float k[2 * 56] = {0}, out[56];
  clara_context *ctx = cpu_ctx(1);
  clara_mr_geometry g = full_geom(1, nx, ny, 1, 1);
  clara_mr_plan *p = make_plan(ctx, &g, NULL);
  k[2 * ((ny / 2) * nx + nx / 2)] = 3.0f;
  run(p, k, out);
  for (int i = 0; i < nx * ny; i++)
    ck_assert_double_eq_tol(out[i], 3.0 / sqrt(56.0), 1e-6);
  clara_mr_plan_destroy(p);
  clara_context_destroy(ctx);
}
END_TEST

/* ---- RSS and readout oversampling ---------------------------------------- */

START_TEST(rss_matches_reference) {
  int nc = 4, nx = 10, ny = 12, nz = 3, slices = 2;
  size_t n = (size_t)nx * ny * nz;
  cplx *x = malloc(sizeof *x * n * nc * slices);
  float *k = malloc(sizeof *k * 2 * n * nc * slices);
  float *mag = malloc(sizeof *mag * n * slices);
  float *mag1 = malloc(sizeof *mag1 * n * slices);
  float *cpx = malloc(sizeof *cpx * 2 * n * slices);
  clara_context *ctx = cpu_ctx(3), *ctx1 = cpu_ctx(1);
  clara_mr_geometry g = full_geom(nc, nx, ny, nz, slices);
  clara_mr_options o;
  clara_mr_plan *p;
  double err = 0;
  for (size_t i = 0; i < n * nc * slices; i++)
    x[i] = crandn();
  for (int s = 0; s < slices * nc; s++)
    to_kspace(x + (size_t)s * n, nz, ny, nx, k + 2 * (size_t)s * n);
  clara_mr_options_init(&o);
  p = make_plan(ctx, &g, &o);
  run(p, k, mag);
  clara_mr_plan_destroy(p);
  p = make_plan(ctx1, &g, &o);
  run(p, k, mag1);
  clara_mr_plan_destroy(p);
  o.output_complex = 1;
  p = make_plan(ctx, &g, &o);
  run(p, k, cpx);
  clara_mr_plan_destroy(p);
  for (int s = 0; s < slices; s++)
    for (size_t i = 0; i < n; i++) {
      double r = 0;
      for (int c = 0; c < nc; c++) {
        double a = cabs(x[((size_t)s * nc + c) * n + i]);
        r += a * a;
      }
      r = sqrt(r);
      err = fmax(err, fabs(mag[(size_t)s * n + i] - r));
      ck_assert_float_eq(cpx[2 * ((size_t)s * n + i)], mag[(size_t)s * n + i]);
      ck_assert_float_eq(cpx[2 * ((size_t)s * n + i) + 1], 0.0f);
    }
  printf("rss: max err %.2e\n", err);
  ck_assert_msg(err < 1e-5, "rss err %g", err);
  ck_assert_msg(memcmp(mag, mag1, sizeof *mag * n * slices) == 0,
                "results depend on the thread count");
  clara_context_destroy(ctx);
  clara_context_destroy(ctx1);
  free(x);
  free(k);
  free(mag);
  free(mag1);
  free(cpx);
}
END_TEST

static void check_crop(int nx, int rnx, int ny) {
  size_t n = (size_t)nx * ny, nr = (size_t)rnx * ny;
  cplx *x = malloc(sizeof *x * n);
  float *k = malloc(sizeof *k * 2 * n);
  float *out = malloc(sizeof *out * 2 * nr);
  float *maps = ones_maps(1, nr);
  clara_context *ctx = cpu_ctx(2);
  clara_mr_geometry g = full_geom(1, nx, ny, 1, 1);
  clara_mr_options o;
  clara_mr_plan *p;
  int off = nx / 2 - rnx / 2;
  double err = 0;
  for (size_t i = 0; i < n; i++)
    x[i] = crandn();
  to_kspace(x, 1, ny, nx, k);
  g.recon_nx = rnx;
  clara_mr_options_init(&o);
  o.combine = CLARA_MR_COMBINE_SENSITIVITY;
  o.sensitivities = maps;
  o.output_complex = 1;
  p = make_plan(ctx, &g, &o);
  run(p, k, out);
  for (int y = 0; y < ny; y++)
    for (int i = 0; i < rnx; i++) {
      cplx v = out[2 * ((size_t)y * rnx + i)] +
               I * out[2 * ((size_t)y * rnx + i) + 1];
      err = fmax(err, cabs(v - x[(size_t)y * nx + i + off]));
    }
  printf("crop nx %d -> %d: max err %.2e\n", nx, rnx, err);
  ck_assert_msg(err < 1e-5, "crop %d -> %d: %g", nx, rnx, err);
  clara_mr_plan_destroy(p);
  clara_context_destroy(ctx);
  free(x);
  free(k);
  free(out);
  free(maps);
}

START_TEST(readout_crop) {
  check_crop(16, 8, 6); /* the centred half: x 4..11 */
  check_crop(15, 7, 5);
  check_crop(16, 7, 4);
  check_crop(15, 8, 4);
  check_crop(12, 12, 3);
}
END_TEST

/* ---- Noise whitening ------------------------------------------------------
 */

#define NC 4

/* A strongly correlated noise model: cov = A A^H. */
static void noise_model(cplx a[NC][NC]) {
  static const double re[NC][NC] = {{1.0, 0, 0, 0},
                                    {0.8, 0.7, 0, 0},
                                    {0.3, -0.5, 1.5, 0},
                                    {0.6, 0.2, 0.4, 0.5}};
  static const double im[NC][NC] = {
      {0, 0, 0, 0}, {0.3, 0, 0, 0}, {-0.2, 0.4, 0, 0}, {0.1, -0.3, 0.2, 0}};
  for (int i = 0; i < NC; i++)
    for (int j = 0; j < NC; j++)
      a[i][j] = re[i][j] + I * im[i][j];
}

static void correlated_noise(cplx a[NC][NC], size_t count, size_t stride,
                             float *out) {
  /* out[c * stride + s] for s < count */
  for (size_t s = 0; s < count; s++) {
    cplx z[NC], v;
    for (int c = 0; c < NC; c++)
      z[c] = crandn();
    for (int c = 0; c < NC; c++) {
      v = 0;
      for (int d = 0; d < NC; d++)
        v += a[c][d] * z[d];
      out[2 * ((size_t)c * stride + s)] = (float)creal(v);
      out[2 * ((size_t)c * stride + s) + 1] = (float)cimag(v);
    }
  }
}

/* Inverse of a Hermitian matrix (Gauss-Jordan with pivoting), in double. */
static void invert(cplx m[NC][NC], cplx inv[NC][NC]) {
  cplx a[NC][2 * NC];
  for (int i = 0; i < NC; i++)
    for (int j = 0; j < 2 * NC; j++)
      a[i][j] = j < NC ? m[i][j] : (j - NC == i);
  for (int c = 0; c < NC; c++) {
    int piv = c;
    for (int r = c + 1; r < NC; r++)
      if (cabs(a[r][c]) > cabs(a[piv][c]))
        piv = r;
    for (int j = 0; j < 2 * NC; j++) {
      cplx t = a[c][j];
      a[c][j] = a[piv][j];
      a[piv][j] = t;
    }
    {
      cplx d = a[c][c];
      for (int j = 0; j < 2 * NC; j++)
        a[c][j] /= d;
    }
    for (int r = 0; r < NC; r++) {
      cplx f = a[r][c];
      if (r == c)
        continue;
      for (int j = 0; j < 2 * NC; j++)
        a[r][j] -= f * a[c][j];
    }
  }
  for (int i = 0; i < NC; i++)
    for (int j = 0; j < NC; j++)
      inv[i][j] = a[i][j + NC];
}

START_TEST(noise_covariance_estimate) {
  enum { S = 40000 };
  cplx a[NC][NC], truth[NC][NC];
  float *noise = malloc(sizeof *noise * 2 * NC * S);
  float cov[2 * NC * NC];
  double worst = 0, worst_exact = 0;
  noise_model(a);
  correlated_noise(a, S, S, noise);
  ck_assert_int_eq(clara_mr_noise_covariance(noise, NC, S, cov), CLARA_OK);
  for (int i = 0; i < NC; i++)
    for (int j = 0; j < NC; j++) {
      cplx t = 0, direct = 0,
           got = cov[2 * (i * NC + j)] + I * cov[2 * (i * NC + j) + 1];
      for (int k = 0; k < NC; k++)
        t += a[i][k] * conj(a[j][k]);
      truth[i][j] = t;
      for (int s = 0; s < S; s++)
        direct += (noise[2 * (i * S + s)] + I * noise[2 * (i * S + s) + 1]) *
                  conj(noise[2 * (j * S + s)] + I * noise[2 * (j * S + s) + 1]);
      direct /= S - 1;
      worst_exact = fmax(worst_exact, cabs(got - direct));
      worst = fmax(worst, cabs(got - truth[i][j]));
    }
  printf("noise covariance: vs formula %.2e, vs truth %.3f\n", worst_exact,
         worst);
  ck_assert_msg(worst_exact < 1e-5, "covariance formula: %g", worst_exact);
  ck_assert_msg(worst < 0.05, "covariance vs truth: %g", worst);
  /* Hermitian, real diagonal */
  for (int i = 0; i < NC; i++) {
    ck_assert_float_eq(cov[2 * (i * NC + i) + 1], 0.0f);
    for (int j = 0; j < NC; j++) {
      ck_assert_float_eq(cov[2 * (i * NC + j)], cov[2 * (j * NC + i)]);
      ck_assert_float_eq(cov[2 * (i * NC + j) + 1], -cov[2 * (j * NC + i) + 1]);
    }
  }
  free(noise);
}
END_TEST

/* Exact: for k-space that is one sample with coil vector v, the whitened
 * RSS image is flat with value |W v| / sqrt(N), and |W v|^2 = v^H C^-1 v
 * for every W with W C W^H = I. Testing enough v pins C^-1 down. */
START_TEST(whitening_exact) {
  enum { S = 5000 };
  int nx = 8, ny = 6;
  size_t n = (size_t)nx * ny;
  cplx a[NC][NC], cm[NC][NC], ci[NC][NC];
  float *noise = malloc(sizeof *noise * 2 * NC * S);
  float cov[2 * NC * NC];
  float *k = calloc(2 * n * NC, sizeof *k);
  float *out = malloc(sizeof *out * n);
  clara_context *ctx = cpu_ctx(2);
  clara_mr_geometry g = full_geom(NC, nx, ny, 1, 1);
  clara_mr_options o;
  clara_mr_plan *p;
  double worst = 0;
  noise_model(a);
  correlated_noise(a, S, S, noise);
  ck_assert_int_eq(clara_mr_noise_covariance(noise, NC, S, cov), CLARA_OK);
  for (int i = 0; i < NC; i++)
    for (int j = 0; j < NC; j++)
      cm[i][j] = cov[2 * (i * NC + j)] + I * cov[2 * (i * NC + j) + 1];
  invert(cm, ci);
  clara_mr_options_init(&o);
  o.noise_covariance = cov;
  p = make_plan(ctx, &g, &o);
  for (int trial = 0; trial < 2 * NC + 6; trial++) {
    cplx v[NC];
    double want = 0;
    for (int c = 0; c < NC; c++)
      v[c] = trial < NC ? (c == trial)
             : trial < 2 * NC
                 ? (c == trial - NC) + I * (c == (trial - NC + 1) % NC)
                 : crandn();
    memset(k, 0, sizeof *k * 2 * n * NC);
    for (int c = 0; c < NC; c++) {
      size_t at = (size_t)c * n + (size_t)(ny / 2) * nx + nx / 2;
      k[2 * at] = (float)creal(v[c]);
      k[2 * at + 1] = (float)cimag(v[c]);
    }
    for (int i = 0; i < NC; i++)
      for (int j = 0; j < NC; j++)
        want += creal(conj(v[i]) * ci[i][j] * v[j]);
    run(p, k, out);
    for (size_t i = 0; i < n; i++) {
      double got = (double)out[i] * out[i] * (double)n;
      worst = fmax(worst, fabs(got - want) / want);
    }
  }
  printf("whitening exact: worst relative error of v^H C^-1 v %.2e\n", worst);
  ck_assert_msg(worst < 1e-4, "whitening: %g", worst);
  clara_mr_plan_destroy(p);
  clara_context_destroy(ctx);
  free(noise);
  free(k);
  free(out);
}
END_TEST

/* Statistical: correlated noise in k-space. Whitened RSS^2 has mean
 * 'coils'; the SENSITIVITY combination with whitening is the SNR-optimal
 * one, of noise variance 1 / (S^H C^-1 S), and without whitening
 * (S^H C S) / (S^H S)^2. A noiseless S rho is returned as rho either way. */
START_TEST(whitening_statistics) {
  enum { S = 40000 };
  int nx = 32, ny = 32, slices = 16;
  size_t n = (size_t)nx * ny, total = n * slices;
  cplx a[NC][NC], cm[NC][NC], ci[NC][NC], sv[NC];
  float *noise = malloc(sizeof *noise * 2 * NC * S);
  float cov[2 * NC * NC];
  float *k = malloc(sizeof *k * 2 * n * NC * slices);
  float *out = malloc(sizeof *out * 2 * total);
  float *maps = malloc(sizeof *maps * 2 * n * NC);
  clara_context *ctx = cpu_ctx(4);
  clara_mr_geometry g = full_geom(NC, nx, ny, 1, slices);
  clara_mr_options o;
  clara_mr_plan *p;
  double m2, want_w = 0, want_u = 0, shs = 0, shcs = 0;

  noise_model(a);
  correlated_noise(a, S, S, noise);
  ck_assert_int_eq(clara_mr_noise_covariance(noise, NC, S, cov), CLARA_OK);
  for (int i = 0; i < NC; i++)
    for (int j = 0; j < NC; j++) {
      cm[i][j] = 0;
      for (int q = 0; q < NC; q++)
        cm[i][j] += a[i][q] * conj(a[j][q]); /* the true covariance */
    }
  invert(cm, ci);
  /* k-space noise, per slice [coil][ny][nx] */
  {
    float *tmp = malloc(sizeof *tmp * 2 * n * NC);
    for (int s = 0; s < slices; s++) {
      correlated_noise(a, n, n, tmp);
      memcpy(k + 2 * (size_t)s * NC * n, tmp, sizeof *tmp * 2 * n * NC);
    }
    free(tmp);
  }
  /* RSS^2 of whitened noise */
  clara_mr_options_init(&o);
  o.noise_covariance = cov;
  p = make_plan(ctx, &g, &o);
  run(p, k, out);
  clara_mr_plan_destroy(p);
  m2 = 0;
  for (size_t i = 0; i < total; i++)
    m2 += (double)out[i] * out[i];
  m2 /= (double)total;
  printf("whitened RSS^2 mean %.4f (want %d)\n", m2, NC);
  ck_assert_msg(fabs(m2 - NC) < 0.04 * NC, "RSS^2 %g", m2);

  /* SENSITIVITY with a constant map */
  for (int c = 0; c < NC; c++) {
    sv[c] = crandn();
    for (size_t i = 0; i < n; i++) {
      maps[2 * ((size_t)c * n + i)] = (float)creal(sv[c]);
      maps[2 * ((size_t)c * n + i) + 1] = (float)cimag(sv[c]);
    }
  }
  for (int i = 0; i < NC; i++) {
    shs += creal(conj(sv[i]) * sv[i]);
    for (int j = 0; j < NC; j++) {
      want_w += creal(conj(sv[i]) * ci[i][j] * sv[j]);
      shcs += creal(conj(sv[i]) * cm[i][j] * sv[j]);
    }
  }
  want_w = 1.0 / want_w;
  want_u = shcs / (shs * shs);
  /* the test can tell the two apart */
  ck_assert_msg(want_u > 1.3 * want_w, "weak test: %g vs %g", want_u, want_w);
  clara_mr_options_init(&o);
  o.combine = CLARA_MR_COMBINE_SENSITIVITY;
  o.sensitivities = maps;
  o.output_complex = 1;
  for (int whiten = 0; whiten <= 1; whiten++) {
    double want = whiten ? want_w : want_u;
    o.noise_covariance = whiten ? cov : NULL;
    p = make_plan(ctx, &g, &o);
    run(p, k, out);
    m2 = 0;
    for (size_t i = 0; i < total; i++)
      m2 += (double)out[2 * i] * out[2 * i] +
            (double)out[2 * i + 1] * out[2 * i + 1];
    m2 /= (double)total;
    printf("sensitivity combine, whitening %d: noise variance %.4f (want "
           "%.4f)\n",
           whiten, m2, want);
    ck_assert_msg(fabs(m2 - want) < 0.05 * want, "variance %g want %g", m2,
                  want);
    /* noiseless: S rho -> rho */
    {
      cplx *rho = malloc(sizeof *rho * n), *ci_img = malloc(sizeof *ci_img * n);
      float *kk = malloc(sizeof *kk * 2 * n * NC);
      double err = 0;
      for (size_t i = 0; i < n; i++)
        rho[i] = crandn();
      for (int c = 0; c < NC; c++) {
        for (size_t i = 0; i < n; i++)
          ci_img[i] = sv[c] * rho[i];
        to_kspace(ci_img, 1, ny, nx, kk + 2 * (size_t)c * n);
      }
      {
        clara_mr_geometry g1 = g;
        clara_mr_plan *p1;
        g1.slices = 1;
        p1 = make_plan(ctx, &g1, &o);
        run(p1, kk, out);
        clara_mr_plan_destroy(p1);
      }
      for (size_t i = 0; i < n; i++)
        err = fmax(err, cabs(out[2 * i] + I * out[2 * i + 1] - rho[i]));
      ck_assert_msg(err < 1e-4, "S rho -> rho (whiten %d): %g", whiten, err);
      free(rho);
      free(ci_img);
      free(kk);
    }
    clara_mr_plan_destroy(p);
  }
  clara_context_destroy(ctx);
  free(noise);
  free(k);
  free(out);
  free(maps);
}
END_TEST

START_TEST(covariance_refused) {
  clara_context *ctx = cpu_ctx(1);
  clara_mr_geometry g = full_geom(2, 8, 8, 1, 1);
  clara_mr_options o;
  clara_mr_plan *p = (clara_mr_plan *)&o;
  float notpd[8] = {1, 0, 2, 0, 2, 0, 1, 0};
  float nan_cov[8] = {1, 0, NAN, 0, 0, 0, 1, 0};
  float nonherm[8] = {1, 0, 0.5f, 0.2f, 0.5f, 0.2f, 1, 0};
  float negdiag[8] = {-1, 0, 0, 0, 0, 0, 1, 0};
  float good[8] = {1, 0, 0.5f, 0.2f, 0.5f, -0.2f, 1, 0};
  clara_mr_options_init(&o);
  o.noise_covariance = notpd;
  ck_assert_int_eq(clara_mr_plan_create(ctx, &g, &o, &p),
                   CLARA_ERR_INVALID_ARG);
  ck_assert_ptr_null(p);
  MSG_HAS("not positive definite");
  MSG_HAS("pivot 1");
  o.noise_covariance = nan_cov;
  ck_assert_int_eq(clara_mr_plan_create(ctx, &g, &o, &p),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("noise_covariance[0][1]");
  MSG_HAS("nan");
  o.noise_covariance = nonherm;
  ck_assert_int_eq(clara_mr_plan_create(ctx, &g, &o, &p),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("not Hermitian");
  o.noise_covariance = negdiag;
  ck_assert_int_eq(clara_mr_plan_create(ctx, &g, &o, &p),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("noise_covariance[0][0]");
  o.noise_covariance = good;
  ck_assert_int_eq(clara_mr_plan_create(ctx, &g, &o, &p), CLARA_OK);
  clara_mr_plan_destroy(p);
  clara_context_destroy(ctx);
}
END_TEST

/* ---- Coil combination ------------------------------------------------------
 */

/* Eight smooth maps (Gaussian magnitude around the object, linear phase),
 * normalised so that sum_c |S_c|^2 = 1 everywhere. 'slope' is the
 * largest phase gradient in radians per pixel. */
static void make_maps(int nc, int nx, int ny, int nz, double slope, cplx *s) {
  size_t n = (size_t)nx * ny * nz;
  for (int c = 0; c < nc; c++) {
    double ang = 2 * M_PI * c / nc;
    double cxp = 0.5 * nx + 0.7 * nx * cos(ang),
           cyp = 0.5 * ny + 0.7 * ny * sin(ang);
    double gx = slope * cos(3.0 * c), gy = slope * sin(2.0 * c + 1);
    for (int z = 0; z < nz; z++)
      for (int y = 0; y < ny; y++)
        for (int x = 0; x < nx; x++) {
          double dx = x - cxp, dy = y - cyp;
          double mag =
              exp(-(dx * dx + dy * dy) / (2.0 * 0.45 * nx * 0.45 * nx));
          s[(size_t)c * n + ((size_t)z * ny + y) * nx + x] =
              mag * cexp(I * (gx * x + gy * y + 0.5 * c + 0.05 * z));
        }
  }
  for (size_t i = 0; i < n; i++) {
    double t = 0;
    for (int c = 0; c < nc; c++)
      t += pow(cabs(s[(size_t)c * n + i]), 2);
    t = sqrt(t);
    for (int c = 0; c < nc; c++)
      s[(size_t)c * n + i] /= t;
  }
}

/* A disc of radius 0.35 nx with a smooth magnitude and phase. */
static cplx object_at(int x, int y, int nx, int ny) {
  double dx = x - 0.5 * nx, dy = y - 0.5 * ny, r = sqrt(dx * dx + dy * dy);
  if (r > 0.35 * nx)
    return 0;
  return (1.0 + 0.4 * cos(0.15 * dx) * sin(0.1 * dy + 0.3)) *
         cexp(I * (0.6 + 0.03 * dx - 0.02 * dy));
}

static void check_combine(int nx, int ny, int nz) {
  int nc = 8;
  size_t n = (size_t)nx * ny * nz;
  cplx *s = malloc(sizeof *s * n * nc), *rho = malloc(sizeof *rho * n);
  cplx *ci = malloc(sizeof *ci * n);
  float *k = malloc(sizeof *k * 2 * n * nc),
        *maps = malloc(sizeof *maps * 2 * n * nc);
  float *out = malloc(sizeof *out * 2 * n), *mag = malloc(sizeof *mag * n);
  clara_context *ctx = cpu_ctx(4);
  clara_mr_geometry g = full_geom(nc, nx, ny, nz, 1);
  clara_mr_options o;
  clara_mr_plan *p;
  double err_sens = 0, err_mag = 0, err_ph = 0;
  make_maps(nc, nx, ny, nz, 0.04, s);
  for (int z = 0; z < nz; z++)
    for (int y = 0; y < ny; y++)
      for (int x = 0; x < nx; x++)
        rho[((size_t)z * ny + y) * nx + x] = object_at(x, y, nx, ny);
  for (int c = 0; c < nc; c++) {
    for (size_t i = 0; i < n; i++) {
      ci[i] = s[(size_t)c * n + i] * rho[i];
      maps[2 * ((size_t)c * n + i)] = (float)creal(s[(size_t)c * n + i]);
      maps[2 * ((size_t)c * n + i) + 1] = (float)cimag(s[(size_t)c * n + i]);
    }
    to_kspace(ci, nz, ny, nx, k + 2 * (size_t)c * n);
  }
  clara_mr_options_init(&o);
  o.combine = CLARA_MR_COMBINE_SENSITIVITY;
  o.sensitivities = maps;
  o.output_complex = 1;
  p = make_plan(ctx, &g, &o);
  run(p, k, out);
  clara_mr_plan_destroy(p);
  for (size_t i = 0; i < n; i++)
    err_sens = fmax(err_sens, cabs(out[2 * i] + I * out[2 * i + 1] - rho[i]));

  clara_mr_options_init(&o);
  o.combine = CLARA_MR_COMBINE_ADAPTIVE;
  p = make_plan(ctx, &g, &o);
  run(p, k, mag);
  clara_mr_plan_destroy(p);
  o.output_complex = 1;
  p = make_plan(ctx, &g, &o);
  run(p, k, out);
  clara_mr_plan_destroy(p);
  for (int z = 0; z < nz; z++)
    for (int y = 0; y < ny; y++)
      for (int x = 0; x < nx; x++) {
        size_t i = ((size_t)z * ny + y) * nx + x;
        double dx = x - 0.5 * nx, dy = y - 0.5 * ny;
        cplx want;
        if (sqrt(dx * dx + dy * dy) > 0.35 * nx - 4)
          continue; /* the interior of the object */
        err_mag = fmax(err_mag, fabs(mag[i] - cabs(rho[i])) / cabs(rho[i]));
        /* the phase is the object's plus coil 0's */
        want = rho[i] * s[i] / cabs(s[i]);
        err_ph = fmax(err_ph, cabs(out[2 * i] + I * out[2 * i + 1] - want) /
                                  cabs(rho[i]));
      }
  printf("combine %dx%dx%d: sensitivity max err %.2e, adaptive magnitude "
         "%.2e, complex %.2e (relative)\n",
         nx, ny, nz, err_sens, err_mag, err_ph);
  ck_assert_msg(err_sens < 1e-4, "sensitivity: %g", err_sens);
  ck_assert_msg(err_mag < 0.03, "adaptive magnitude: %g", err_mag);
  /* the eigenvector is the maps averaged over the 7 x 7 neighbourhood
   * (weighted by |rho|^2), so its coil-0 phase lags the pixel's by up to
   * (0.04 rad/pixel) x (a pixel or so of weighted centroid offset) */
  ck_assert_msg(err_ph < 0.05, "adaptive complex: %g", err_ph);
  clara_context_destroy(ctx);
  free(s);
  free(rho);
  free(ci);
  free(k);
  free(maps);
  free(out);
  free(mag);
}

START_TEST(coil_combination) {
  check_combine(64, 64, 1);
  check_combine(32, 28, 4);
}
END_TEST

/* ---- Partial Fourier -------------------------------------------------------
 */

typedef struct {
  double zero, homodyne, pocs;
} pf_err;

/* Relative RMS error of the magnitude against |object| for the three
 * methods, 'nc' coils with smooth maps and RSS. */
static pf_err pf_errors(int nc, int nx, int ny, int kx_first, int kx_last,
                        int ky_first, int ky_last, int full_identical) {
  size_t n = (size_t)nx * ny;
  cplx *s = malloc(sizeof *s * n * nc), *rho = malloc(sizeof *rho * n);
  cplx *ci = malloc(sizeof *ci * n);
  float *k = malloc(sizeof *k * 2 * n * nc);
  float *out[3], *full;
  clara_context *ctx = cpu_ctx(4);
  clara_mr_geometry g = full_geom(nc, nx, ny, 1, 1);
  clara_mr_options o;
  pf_err e;
  double *ep[3] = {&e.zero, &e.homodyne, &e.pocs}, norm = 0;
  make_maps(nc, nx, ny, 1, 0.005, s);
  /* A real, positive object with sharp features (an ellipse holding a
   * checkerboard), smoothed once by [1 2 1]/4 along x and y (cyclically)
   * so that it has no energy at the Nyquist frequency, which no
   * partial-Fourier method can recover from one side, then given a smooth
   * phase. */
  {
    double *m = calloc(n, sizeof *m), *t = calloc(n, sizeof *t);
    for (int y = 0; y < ny; y++)
      for (int x = 0; x < nx; x++) {
        double dx = x - 0.5 * nx, dy = y - 0.5 * ny;
        int in = dx * dx / (0.36 * 0.36 * nx * nx) +
                     dy * dy / (0.42 * 0.42 * ny * ny) <
                 1;
        m[(size_t)y * nx + x] =
            in ? 1.0 + 0.5 * ((int)(floor(x / 6.0) + floor(y / 5.0)) & 1) : 0.0;
      }
    for (int y = 0; y < ny; y++)
      for (int x = 0; x < nx; x++)
        t[(size_t)y * nx + x] = 0.25 * m[(size_t)y * nx + (x + nx - 1) % nx] +
                                0.5 * m[(size_t)y * nx + x] +
                                0.25 * m[(size_t)y * nx + (x + 1) % nx];
    for (int y = 0; y < ny; y++)
      for (int x = 0; x < nx; x++) {
        double dx = x - 0.5 * nx, dy = y - 0.5 * ny;
        double v = 0.25 * t[(size_t)((y + ny - 1) % ny) * nx + x] +
                   0.5 * t[(size_t)y * nx + x] +
                   0.25 * t[(size_t)((y + 1) % ny) * nx + x];
        rho[(size_t)y * nx + x] =
            v * cexp(I * (0.7 + 0.8 * dx / nx - 0.8 * dy * dy / (ny * ny)));
      }
    free(m);
    free(t);
  }
  for (size_t i = 0; i < n; i++)
    norm += pow(cabs(rho[i]), 2);
  for (int c = 0; c < nc; c++) {
    for (size_t i = 0; i < n; i++)
      ci[i] = s[(size_t)c * n + i] * rho[i];
    to_kspace(ci, 1, ny, nx, k + 2 * (size_t)c * n);
  }
  full = malloc(sizeof *full * n);
  for (int m = 0; m < 3; m++)
    out[m] = malloc(sizeof *out[m] * n);
  clara_mr_options_init(&o);
  o.partial_fourier = CLARA_MR_PF_ZERO;
  {
    clara_mr_plan *p = make_plan(ctx, &g, &o);
    run(p, k, full);
    clara_mr_plan_destroy(p);
  }
  g.kx_first = kx_first;
  g.kx_last = kx_last;
  g.ky_first = ky_first;
  g.ky_last = ky_last;
  for (int m = 0; m < 3; m++) {
    clara_mr_plan *p;
    double se = 0;
    o.partial_fourier = (clara_mr_partial_fourier)m;
    o.pocs_iterations = 20;
    p = make_plan(ctx, &g, &o);
    run(p, k, out[m]);
    clara_mr_plan_destroy(p);
    for (size_t i = 0; i < n; i++)
      se += pow(out[m][i] - full[i], 2);
    *ep[m] = sqrt(se / norm);
  }
  if (full_identical) {
    ck_assert(memcmp(out[0], out[1], sizeof(float) * n) == 0);
    ck_assert(memcmp(out[0], out[2], sizeof(float) * n) == 0);
  }
  printf("partial Fourier %d coils kx [%d, %d] ky [%d, %d] of %dx%d: zero "
         "%.4f homodyne %.4f pocs %.4f\n",
         nc, kx_first, kx_last, ky_first, ky_last, nx, ny, e.zero, e.homodyne,
         e.pocs);
  for (int m = 0; m < 3; m++)
    free(out[m]);
  free(full);
  free(s);
  free(rho);
  free(ci);
  free(k);
  clara_context_destroy(ctx);
  return e;
}

START_TEST(partial_fourier) {
  pf_err e;
  /* 5/8 of ky, missing the start */
  e = pf_errors(1, 64, 64, 0, 63, 24, 63, 0);
  ck_assert(e.homodyne < 0.4 * e.zero && e.pocs < 0.2 * e.zero);
  /* missing the end, odd size, several coils */
  e = pf_errors(4, 48, 63, 0, 47, 0, 39, 0);
  ck_assert(e.homodyne < 0.4 * e.zero && e.pocs < 0.2 * e.zero);
  /* asymmetric echo and partial ky together: the corner where neither k
   * nor -k was sampled is lost to homodyne (POCS estimates it) */
  e = pf_errors(1, 64, 64, 20, 63, 0, 43, 0);
  ck_assert(e.homodyne < 0.65 * e.zero && e.pocs < 0.3 * e.zero);
  /* full sampling: the three are one reconstruction */
  e = pf_errors(2, 32, 30, 0, 31, 0, 29, 1);
  ck_assert(e.zero == 0);
  /* symmetric truncation: nothing to recover, all equal zero-filling */
  e = pf_errors(1, 32, 32, 0, 31, 4, 28, 1);
}
END_TEST

/* ---- Windows ---------------------------------------------------------------
 */

static double window_ref(clara_mr_window w, double alpha, int k, int n) {
  double t = (k - n / 2) / (0.5 * n);
  switch (w) {
  case CLARA_MR_WINDOW_HANN:
    return 0.5 * (1 + cos(M_PI * t));
  case CLARA_MR_WINDOW_HAMMING:
    return 0.54 + 0.46 * cos(M_PI * t);
  case CLARA_MR_WINDOW_TUKEY:
    return fabs(t) <= 1 - alpha
               ? 1.0
               : 0.5 * (1 + cos(M_PI * (fabs(t) - 1 + alpha) / alpha));
  default:
    return 1.0;
  }
}

/* The weight the plan gives sample (kz, ky, kx): the flat image of one
 * sample, times sqrt(N). */
static double measured_weight(const clara_mr_plan *p, int nx, int ny, int nz,
                              int kx, int ky, int kz) {
  size_t n = (size_t)nx * ny * nz;
  float *k = calloc(2 * n, sizeof *k), *out = malloc(sizeof *out * n);
  double w;
  k[2 * (((size_t)kz * ny + ky) * nx + kx)] = 1;
  run(p, k, out);
  w = out[n / 3] * sqrt((double)n);
  for (size_t i = 0; i < n; i++)
    ck_assert_double_eq_tol(out[i] * sqrt((double)n), w, 1e-5);
  free(k);
  free(out);
  return w;
}

START_TEST(windows) {
  int nx = 8, ny = 6, nz = 5;
  clara_context *ctx = cpu_ctx(2);
  clara_mr_geometry g = full_geom(1, nx, ny, nz, 1);
  clara_mr_geometry g2 = full_geom(1, 16, 15, 1, 1);
  clara_mr_options o;
  clara_mr_plan *p;
  static const clara_mr_window kinds[] = {
      CLARA_MR_WINDOW_NONE, CLARA_MR_WINDOW_HANN, CLARA_MR_WINDOW_HAMMING,
      CLARA_MR_WINDOW_TUKEY};
  double worst = 0;
  clara_mr_options_init(&o);
  for (int wi = 0; wi < 4; wi++) {
    o.window = kinds[wi];
    o.tukey_alpha = 0.6;
    p = make_plan(ctx, &g, &o);
    for (int kz = 0; kz < nz; kz++)
      for (int ky = 0; ky < ny; ky++)
        for (int kx = 0; kx < nx; kx += 3) {
          double want = window_ref(kinds[wi], 0.6, kx, nx) *
                        window_ref(kinds[wi], 0.6, ky, ny) *
                        window_ref(kinds[wi], 0.6, kz, nz);
          double got = measured_weight(p, nx, ny, nz, kx, ky, kz);
          worst = fmax(worst, fabs(got - want));
        }
    clara_mr_plan_destroy(p);
  }
  printf("windows: worst weight error %.2e\n", worst);
  ck_assert_msg(worst < 1e-5, "window weights: %g", worst);

  /* Hann on 16 x 15: 1 at the centre, 0 at the first (even) sample, small
   * at the ends of the odd axis */
  o.window = CLARA_MR_WINDOW_HANN;
  p = make_plan(ctx, &g2, &o);
  ck_assert_double_eq_tol(measured_weight(p, 16, 15, 1, 8, 7, 0), 1.0, 1e-5);
  ck_assert_double_eq_tol(measured_weight(p, 16, 15, 1, 0, 7, 0), 0.0, 1e-6);
  ck_assert_double_lt(measured_weight(p, 16, 15, 1, 8, 0, 0), 0.02);
  ck_assert_double_lt(measured_weight(p, 16, 15, 1, 8, 14, 0), 0.02);
  ck_assert_double_lt(measured_weight(p, 16, 15, 1, 15, 7, 0), 0.04);
  clara_mr_plan_destroy(p);
  /* Tukey with a small alpha: flat top everywhere but the very edge */
  o.window = CLARA_MR_WINDOW_TUKEY;
  o.tukey_alpha = 0.01;
  p = make_plan(ctx, &g2, &o);
  for (int kx = 1; kx < 16; kx++)
    ck_assert_double_eq_tol(measured_weight(p, 16, 15, 1, kx, 7, 0), 1.0, 1e-5);
  for (int ky = 0; ky < 15; ky++)
    ck_assert_double_eq_tol(measured_weight(p, 16, 15, 1, 8, ky, 0), 1.0, 1e-5);
  clara_mr_plan_destroy(p);
  /* Tukey with alpha 1 is Hann */
  o.tukey_alpha = 1.0;
  p = make_plan(ctx, &g2, &o);
  for (int ky = 0; ky < 15; ky++)
    ck_assert_double_eq_tol(measured_weight(p, 16, 15, 1, 8, ky, 0),
                            window_ref(CLARA_MR_WINDOW_HANN, 0, ky, 15), 1e-5);
  clara_mr_plan_destroy(p);
  clara_context_destroy(ctx);
}
END_TEST

/* Every method, every thread count: the same bits. */
START_TEST(thread_independent) {
  int nc = 3, nx = 20, ny = 18, nz = 2, slices = 3;
  size_t nk = (size_t)nx * ny * nz * nc * slices,
         ni = (size_t)nx * ny * nz * slices;
  float *k = malloc(sizeof *k * 2 * nk), *a = malloc(sizeof *a * 2 * ni),
        *b = malloc(sizeof *b * 2 * ni);
  float cov[2 * 9] = {2, 0,    0.5f, 0.1f, 0, 0,    0.5f, -0.1f, 1,
                      0, 0.2f, 0,    0,    0, 0.2f, 0,    1.5f,  0};
  clara_context *c1 = cpu_ctx(1), *c3 = cpu_ctx(3);
  clara_mr_geometry g = full_geom(nc, nx, ny, nz, slices);
  clara_mr_options o;
  for (size_t i = 0; i < 2 * nk; i++)
    k[i] = (float)(urand() - 0.5);
  g.ky_first = 5;
  g.kx_first = 3;
  g.recon_nx = 13;
  for (int comb = 0; comb < 2; comb++)
    for (int pf = 0; pf < 3; pf++) {
      clara_mr_plan *p1, *p3;
      clara_mr_options_init(&o);
      o.combine = (clara_mr_combine)comb;
      o.partial_fourier = (clara_mr_partial_fourier)pf;
      o.window = CLARA_MR_WINDOW_HAMMING;
      o.noise_covariance = cov;
      o.output_complex = 1;
      p1 = make_plan(c1, &g, &o);
      p3 = make_plan(c3, &g, &o);
      run(p1, k, a);
      run(p3, k, b);
      ck_assert_msg(
          memcmp(a, b, sizeof *a * 2 * (size_t)g.recon_nx * ny * nz * slices) ==
              0,
          "combine %d pf %d differs with threads", comb, pf);
      clara_mr_plan_destroy(p1);
      clara_mr_plan_destroy(p3);
    }
  clara_context_destroy(c1);
  clara_context_destroy(c3);
  free(k);
  free(a);
  free(b);
}
END_TEST

/* ---- Progress and cancellation ---------------------------------------------
 */

static int calls;
static int cancel_cb(const char *stage, double f, void *user) {
  (void)stage;
  (void)f;
  (void)user;
  return ++calls >= 2;
}

START_TEST(cancel) {
  clara_context_options co;
  clara_context *ctx = NULL;
  clara_mr_geometry g = full_geom(2, 16, 16, 1, 8);
  clara_mr_plan *p;
  float *k = calloc(2 * 16 * 16 * 2 * 8, sizeof *k);
  float *out = malloc(sizeof *out * 16 * 16 * 8);
  clara_context_options_init(&co);
  co.backend = CLARA_BACKEND_CPU;
  co.threads = 1;
  co.progress = cancel_cb;
  ck_assert_int_eq(clara_context_create(&co, &ctx), CLARA_OK);
  p = make_plan(ctx, &g, NULL);
  calls = 0;
  ck_assert_int_eq(clara_mr_execute(p, k, out), CLARA_ERR_CANCELLED);
  MSG_HAS("cancelled");
  clara_mr_plan_destroy(p);
  clara_context_destroy(ctx);
  free(k);
  free(out);
}
END_TEST

/* ---- Bad inputs ------------------------------------------------------------
 */

static void expect_bad(clara_context *ctx, const clara_mr_geometry *g,
                       const clara_mr_options *o, clara_status want,
                       const char *frag) {
  clara_mr_plan *p = (clara_mr_plan *)ctx; /* not NULL: must be cleared */
  clara_status st = clara_mr_plan_create(ctx, g, o, &p);
  ck_assert_msg(st == want, "status %d, want %d (%s)", st, want,
                clara_last_error());
  ck_assert_ptr_null(p);
  MSG_HAS(frag);
  MSG_HAS("clara_mr_plan_create");
}

START_TEST(bad_inputs) {
  clara_context *ctx = cpu_ctx(1);
  clara_mr_geometry g0 = full_geom(2, 16, 12, 1, 1), g;
  clara_mr_options o0, o;
  clara_mr_plan *p = NULL;
  float maps[2 * 2 * 16 * 12] = {0};
  float cov[8] = {1, 0, 0, 0, 0, 0, 1, 0};
  float k[2 * 2 * 16 * 12] = {0}, out[16 * 12];
  clara_mr_options_init(&o0);
  ck_assert_int_eq(o0.norm, CLARA_MR_NORM_ORTHO);
  ck_assert_int_eq(o0.combine, CLARA_MR_COMBINE_RSS);
  ck_assert_int_eq(o0.partial_fourier, CLARA_MR_PF_HOMODYNE);
  ck_assert_int_eq(o0.pocs_iterations, 10);
  ck_assert_int_eq(o0.window, CLARA_MR_WINDOW_NONE);
  ck_assert_double_eq(o0.tukey_alpha, 0.5);
  ck_assert_int_eq(o0.output_complex, 0);
  ck_assert_ptr_null(o0.noise_covariance);
  ck_assert_ptr_null(o0.sensitivities);
  clara_mr_options_init(NULL);

  /* NULLs */
  ck_assert_int_eq(clara_mr_plan_create(ctx, &g0, &o0, NULL),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("out is NULL");
  expect_bad(NULL, &g0, &o0, CLARA_ERR_INVALID_ARG, "ctx is NULL");
  expect_bad(ctx, NULL, &o0, CLARA_ERR_INVALID_ARG, "geom is NULL");

  /* sizes */
  g = g0;
  g.coils = 0;
  expect_bad(ctx, &g, &o0, CLARA_ERR_INVALID_ARG,
             "geom->coils: must be > 0, got 0");
  g.coils = -3;
  expect_bad(ctx, &g, &o0, CLARA_ERR_INVALID_ARG, "got -3");
  g = g0;
  g.nx = 0;
  expect_bad(ctx, &g, &o0, CLARA_ERR_INVALID_ARG, "nx=0");
  g = g0;
  g.ny = -1;
  expect_bad(ctx, &g, &o0, CLARA_ERR_INVALID_ARG, "ny=-1");
  g = g0;
  g.nz = 0;
  expect_bad(ctx, &g, &o0, CLARA_ERR_INVALID_ARG, "nz=0");
  g = g0;
  g.slices = 0;
  expect_bad(ctx, &g, &o0, CLARA_ERR_INVALID_ARG, "geom->slices");
  g = full_geom(65536, 65536, 65536, 65536, 65536);
  expect_bad(ctx, &g, &o0, CLARA_ERR_INVALID_ARG, "overflow");
  g = full_geom(1, 4096, 4096, 4096, 1);
  expect_bad(ctx, &g, &o0, CLARA_ERR_UNSUPPORTED, "too large");

  /* ranges */
  g = full_geom(1, 256, 256, 1, 1);
  g.ky_last = 300;
  expect_bad(ctx, &g, &o0, CLARA_ERR_INVALID_ARG,
             "geom->ky_last: must be in [ky_first, ny-1] = [0, 255], got 300");
  g = g0;
  g.ky_first = -1;
  expect_bad(ctx, &g, &o0, CLARA_ERR_INVALID_ARG, "geom->ky_first");
  g = g0;
  g.ky_first = 8;
  g.ky_last = 7;
  expect_bad(ctx, &g, &o0, CLARA_ERR_INVALID_ARG, "geom->ky_last");
  g = g0;
  g.kx_last = 16;
  expect_bad(ctx, &g, &o0, CLARA_ERR_INVALID_ARG, "geom->kx_last");
  g = g0;
  g.kx_first = 20;
  expect_bad(ctx, &g, &o0, CLARA_ERR_INVALID_ARG, "geom->kx_first");
  g = g0;
  g.recon_nx = 17;
  expect_bad(ctx, &g, &o0, CLARA_ERR_INVALID_ARG,
             "geom->recon_nx: must be in [0, nx] = [0, 16] (0 = nx), got 17");
  g.recon_nx = -2;
  expect_bad(ctx, &g, &o0, CLARA_ERR_INVALID_ARG, "geom->recon_nx");
  /* homodyne needs the centre; zero-filling does not */
  g = g0;
  g.ky_first = 7;
  expect_bad(ctx, &g, &o0, CLARA_ERR_INVALID_ARG, "k-space centre ny/2 = 6");
  g = g0;
  g.kx_last = 5;
  o = o0;
  o.partial_fourier = CLARA_MR_PF_POCS;
  expect_bad(ctx, &g, &o, CLARA_ERR_INVALID_ARG, "nx/2 = 8 for POCS");
  o.partial_fourier = CLARA_MR_PF_ZERO;
  ck_assert_int_eq(clara_mr_plan_create(ctx, &g, &o, &p), CLARA_OK);
  clara_mr_plan_destroy(p);

  /* options */
  o = o0;
  o.norm = (clara_mr_norm)2;
  expect_bad(ctx, &g0, &o, CLARA_ERR_INVALID_ARG, "opts->norm");
  o = o0;
  o.combine = (clara_mr_combine)-1;
  expect_bad(ctx, &g0, &o, CLARA_ERR_INVALID_ARG, "opts->combine");
  o = o0;
  o.partial_fourier = (clara_mr_partial_fourier)3;
  expect_bad(ctx, &g0, &o, CLARA_ERR_INVALID_ARG, "opts->partial_fourier");
  o = o0;
  o.window = (clara_mr_window)4;
  expect_bad(ctx, &g0, &o, CLARA_ERR_INVALID_ARG, "opts->window");
  o = o0;
  o.window = CLARA_MR_WINDOW_TUKEY;
  o.tukey_alpha = 0;
  expect_bad(ctx, &g0, &o, CLARA_ERR_INVALID_ARG, "opts->tukey_alpha");
  o.tukey_alpha = 1.5;
  expect_bad(ctx, &g0, &o, CLARA_ERR_INVALID_ARG, "got 1.5");
  o.tukey_alpha = NAN;
  expect_bad(ctx, &g0, &o, CLARA_ERR_INVALID_ARG, "opts->tukey_alpha");
  o = o0;
  o.partial_fourier = CLARA_MR_PF_POCS;
  o.pocs_iterations = 0;
  expect_bad(ctx, &g0, &o, CLARA_ERR_INVALID_ARG, "opts->pocs_iterations");
  o.pocs_iterations = 1001;
  expect_bad(ctx, &g0, &o, CLARA_ERR_INVALID_ARG, "got 1001");
  o = o0;
  o.output_complex = 2;
  expect_bad(ctx, &g0, &o, CLARA_ERR_INVALID_ARG, "opts->output_complex");
  o = o0;
  o.combine = CLARA_MR_COMBINE_SENSITIVITY;
  expect_bad(ctx, &g0, &o, CLARA_ERR_INVALID_ARG, "opts->sensitivities");
  o = o0;
  o.sensitivities = maps;
  expect_bad(ctx, &g0, &o, CLARA_ERR_INVALID_ARG, "only used with");
  o.combine = CLARA_MR_COMBINE_SENSITIVITY;
  maps[77] = INFINITY;
  expect_bad(ctx, &g0, &o, CLARA_ERR_INVALID_ARG, "must be finite");
  maps[77] = 0;
  o.noise_covariance = cov;
  ck_assert_int_eq(clara_mr_plan_create(ctx, &g0, &o, &p), CLARA_OK);

  /* execute */
  ck_assert_int_eq(clara_mr_execute(NULL, k, out), CLARA_ERR_INVALID_ARG);
  MSG_HAS("plan is NULL");
  ck_assert_int_eq(clara_mr_execute(p, NULL, out), CLARA_ERR_INVALID_ARG);
  MSG_HAS("kspace is NULL");
  ck_assert_int_eq(clara_mr_execute(p, k, NULL), CLARA_ERR_INVALID_ARG);
  MSG_HAS("image is NULL");
  ck_assert_int_eq(clara_mr_execute(p, k, out), CLARA_OK);
  /* device pointers: none on a CPU context (the device cases are in
   * test_cuda_nn.c) */
  ck_assert_int_eq(clara_mr_execute_device(NULL, k, out),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("clara_mr_execute_device: plan is NULL");
  ck_assert_int_eq(clara_mr_execute_device(p, NULL, out),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("d_kspace is NULL");
  ck_assert_int_eq(clara_mr_execute_device(p, k, NULL), CLARA_ERR_INVALID_ARG);
  MSG_HAS("d_image is NULL");
  ck_assert_int_eq(clara_mr_execute_device(p, k, out), CLARA_ERR_UNSUPPORTED);
  MSG_HAS("the plan runs on the cpu backend, which has no device memory");
  clara_mr_plan_destroy(p);
  clara_mr_plan_destroy(NULL);

  /* noise covariance */
  ck_assert_int_eq(clara_mr_noise_covariance(NULL, 2, 10, cov),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("noise is NULL");
  ck_assert_int_eq(clara_mr_noise_covariance(k, 2, 10, NULL),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("cov is NULL");
  ck_assert_int_eq(clara_mr_noise_covariance(k, 0, 10, cov),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("coils: must be > 0, got 0");
  ck_assert_int_eq(clara_mr_noise_covariance(k, 2, 1, cov),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("samples: must be >= 2");
  clara_context_destroy(ctx);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("mr");
  TCase *t = tcase_create("core");
  tcase_set_timeout(t, 300);
  tcase_add_test(t, fft_convention);
  tcase_add_test(t, dc_at_half);
  tcase_add_test(t, rss_matches_reference);
  tcase_add_test(t, readout_crop);
  tcase_add_test(t, noise_covariance_estimate);
  tcase_add_test(t, whitening_exact);
  tcase_add_test(t, whitening_statistics);
  tcase_add_test(t, covariance_refused);
  tcase_add_test(t, coil_combination);
  tcase_add_test(t, partial_fourier);
  tcase_add_test(t, windows);
  tcase_add_test(t, thread_independent);
  tcase_add_test(t, cancel);
  tcase_add_test(t, bad_inputs);
  suite_add_tcase(s, t);
  return s;
}

int main(void) {
  SRunner *sr;
  setvbuf(stdout, NULL, _IONBF, 0);
  sr = srunner_create(suite());
  int failed;
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
