/* mr.c -- Cartesian multi-coil MRI plans: geometry and option checks, the
 * noise pre-whitening matrix (Cholesky factor of the coils' noise
 * covariance, inverted), the apodisation windows, and the hand-over to a
 * backend. Everything here runs once per plan; the backend runs the loops
 * (src/cpu/mr_cpu.c). Conventions and algorithms: docs/MRI.md.
 *
 * Windows are defined over the whole encoded axis and centred on the
 * k-space centre c = n/2 (integer division), whatever part of the axis was
 * sampled: with t = (k - c) / (n/2),
 *   Hann     w = 0.5 (1 + cos(pi t))
 *   Hamming  w = 0.54 + 0.46 cos(pi t)
 *   Tukey    w = 1 for |t| <= 1 - a, else 0.5 (1 + cos(pi (|t| - 1 + a) / a))
 * so w(c) = 1, and for even n the first sample (t = -1) gets the window's
 * edge value (0 for Hann and Tukey, 0.08 for Hamming). */
#include "backend.h"
#include "nn.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef clara_status (*mr_create_fn)(const clara_context *,
                                     const clara_mr_setup *, void **);
typedef clara_status (*mr_execute_fn)(const clara_context *,
                                      const clara_mr_setup *, const void *,
                                      const float *, float *);
typedef void (*mr_destroy_fn)(void *);

struct clara_mr_plan_s {
  const clara_context *ctx;
  clara_mr_setup setup;
  void *state; /* the backend's */
  mr_execute_fn execute;
  mr_destroy_fn destroy;
  /* The state is the context's device backend's (mr_execute_device works);
   * else why the plan runs on the CPU, for the messages. */
  int on_device;
  char cpu_reason[192];
  /* storage behind the setup's const pointers */
  float *whiten, *sens, *window_x, *window_y, *window_z;
  clara_denoiser *denoiser; /* attached, with a reference held, or NULL */
};

static const char who[] = "clara_mr_plan_create";

CLARA_API void clara_mr_options_init(clara_mr_options *opts) {
  if (!opts)
    return;
  memset(opts, 0, sizeof *opts);
  opts->norm = CLARA_MR_NORM_ORTHO;
  opts->combine = CLARA_MR_COMBINE_RSS;
  opts->partial_fourier = CLARA_MR_PF_HOMODYNE;
  opts->pocs_iterations = 10;
  opts->window = CLARA_MR_WINDOW_NONE;
  opts->tukey_alpha = 0.5;
  opts->output_complex = 0;
  opts->noise_covariance = NULL;
  opts->sensitivities = NULL;
}

/* ---- Validation ---------------------------------------------------------- */

static clara_status check_range(const char *name, int v, const char *lo_name,
                                int lo, const char *hi_name, int hi) {
  if (v < lo || v > hi)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: geom->%s: must be in [%s, %s] = [%d, %d], got %d",
                      who, name, lo_name, hi_name, lo, hi, v);
  return CLARA_OK;
}

static clara_status check_geometry(const clara_mr_geometry *g,
                                   clara_mr_partial_fourier pf) {
  clara_status st;
  size_t n;
  if (g->coils <= 0)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: geom->coils: must be > 0, got %d", who, g->coils);
  if (g->nx <= 0 || g->ny <= 0 || g->nz <= 0)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: geom: sizes must be > 0, got nx=%d ny=%d nz=%d", who,
                      g->nx, g->ny, g->nz);
  if (g->slices <= 0)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: geom->slices: must be > 0, got %d", who, g->slices);
  /* the whole k-space buffer, in bytes, must be addressable */
  if (clara_size_mul3((size_t)g->nx, (size_t)g->ny, (size_t)g->nz, &n) != 0 ||
      clara_size_mul(n, (size_t)g->coils, &n) != 0 ||
      clara_size_mul(n, (size_t)g->slices, &n) != 0 ||
      clara_size_mul(n, 2 * sizeof(float), &n) != 0)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: geom: %d slices x %d coils x %d x %d x %d complex "
                      "samples overflow the address space",
                      who, g->slices, g->coils, g->nz, g->ny, g->nx);
  if ((double)g->nx * g->ny * g->nz > (double)INT_MAX)
    return clara_fail(CLARA_ERR_UNSUPPORTED,
                      "%s: geom: an encoded volume of %d x %d x %d samples is "
                      "too large for one FFT (2^31 samples)",
                      who, g->nz, g->ny, g->nx);
  if (g->recon_nx < 0 || g->recon_nx > g->nx)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: geom->recon_nx: must be in [0, nx] = [0, %d] (0 = "
                      "nx), got %d",
                      who, g->nx, g->recon_nx);
  if ((st = check_range("ky_first", g->ky_first, "0", 0, "ny-1", g->ny - 1)) ||
      (st = check_range("ky_last", g->ky_last, "ky_first", g->ky_first, "ny-1",
                        g->ny - 1)) ||
      (st = check_range("kx_first", g->kx_first, "0", 0, "nx-1", g->nx - 1)) ||
      (st = check_range("kx_last", g->kx_last, "kx_first", g->kx_first, "nx-1",
                        g->nx - 1)))
    return st;
  if (pf != CLARA_MR_PF_ZERO) {
    /* homodyne and POCS take the phase from the symmetric centre */
    if (g->ny / 2 < g->ky_first || g->ny / 2 > g->ky_last)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: geom: the sampled lines [ky_first, ky_last] = "
                        "[%d, %d] must contain the k-space centre ny/2 = %d "
                        "for %s partial Fourier",
                        who, g->ky_first, g->ky_last, g->ny / 2,
                        pf == CLARA_MR_PF_POCS ? "POCS" : "homodyne");
    if (g->nx / 2 < g->kx_first || g->nx / 2 > g->kx_last)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: geom: the sampled readout [kx_first, kx_last] = "
                        "[%d, %d] must contain the k-space centre nx/2 = %d "
                        "for %s partial Fourier",
                        who, g->kx_first, g->kx_last, g->nx / 2,
                        pf == CLARA_MR_PF_POCS ? "POCS" : "homodyne");
  }
  return CLARA_OK;
}

static clara_status check_options(const clara_mr_options *o) {
  if ((int)o->norm < CLARA_MR_NORM_ORTHO || (int)o->norm > CLARA_MR_NORM_NONE)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: opts->norm: unknown normalisation %d (expected 0 "
                      "ortho or 1 none)",
                      who, (int)o->norm);
  if ((int)o->combine < CLARA_MR_COMBINE_RSS ||
      (int)o->combine > CLARA_MR_COMBINE_SENSITIVITY)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: opts->combine: unknown coil combination %d "
                      "(expected 0 rss, 1 adaptive or 2 sensitivity)",
                      who, (int)o->combine);
  if ((int)o->partial_fourier < CLARA_MR_PF_ZERO ||
      (int)o->partial_fourier > CLARA_MR_PF_POCS)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: opts->partial_fourier: unknown method %d (expected "
                      "0 zero, 1 homodyne or 2 pocs)",
                      who, (int)o->partial_fourier);
  if (o->partial_fourier == CLARA_MR_PF_POCS &&
      (o->pocs_iterations < 1 || o->pocs_iterations > 1000))
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: opts->pocs_iterations: must be in [1, 1000], got %d",
                      who, o->pocs_iterations);
  if ((int)o->window < CLARA_MR_WINDOW_NONE ||
      (int)o->window > CLARA_MR_WINDOW_TUKEY)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: opts->window: unknown window %d (expected 0 none, "
                      "1 hann, 2 hamming or 3 tukey)",
                      who, (int)o->window);
  if (o->window == CLARA_MR_WINDOW_TUKEY &&
      !(isfinite(o->tukey_alpha) && o->tukey_alpha > 0 && o->tukey_alpha <= 1))
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: opts->tukey_alpha: must be in (0, 1], got %g", who,
                      o->tukey_alpha);
  if (o->output_complex != 0 && o->output_complex != 1)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: opts->output_complex: must be 0 (magnitude) or 1 "
                      "(complex), got %d",
                      who, o->output_complex);
  if (o->combine == CLARA_MR_COMBINE_SENSITIVITY && !o->sensitivities)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: opts->sensitivities: is NULL, but "
                      "CLARA_MR_COMBINE_SENSITIVITY needs the coil maps",
                      who);
  if (o->combine != CLARA_MR_COMBINE_SENSITIVITY && o->sensitivities)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: opts->sensitivities: maps are only used with "
                      "CLARA_MR_COMBINE_SENSITIVITY (combine is %d); pass NULL",
                      who, (int)o->combine);
  return CLARA_OK;
}

/* ---- Noise pre-whitening ---------------------------------------------------
 * cov = L L^H (Cholesky, in double, on the Hermitian part of the input);
 * W = L^{-1} is lower triangular and y = W x has cov(y) = W cov W^H = I.
 * W is stored [coils][coils] complex (row = output coil). */
static clara_status make_whitener(const float *cov, int nc, float **out) {
  size_t n2 = (size_t)nc * (size_t)nc;
  double *a = NULL, *l = NULL, *w = NULL; /* complex pairs */
  float *res = NULL;
  clara_status st = CLARA_OK;
  *out = NULL;
  for (size_t k = 0; k < 2 * n2; k++)
    if (!isfinite(cov[k]))
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: opts->noise_covariance[%zu][%zu]: must be "
                        "finite, got %g%+gi",
                        who, k / 2 / (size_t)nc, k / 2 % (size_t)nc,
                        (double)cov[k / 2 * 2], (double)cov[k / 2 * 2 + 1]);
  for (int i = 0; i < nc; i++) {
    double dii = cov[2 * ((size_t)i * nc + i)];
    double di_im = cov[2 * ((size_t)i * nc + i) + 1];
    if (!(dii > 0) || fabs(di_im) > 1e-5 * dii)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: opts->noise_covariance[%d][%d]: a coil's noise "
                        "variance must be real and > 0, got %g%+gi",
                        who, i, i, dii, di_im);
  }
  for (int i = 0; i < nc; i++)
    for (int j = 0; j < i; j++) {
      const float *p = cov + 2 * ((size_t)i * nc + j);
      const float *q = cov + 2 * ((size_t)j * nc + i);
      double tol = 1e-5 * sqrt((double)cov[2 * ((size_t)i * nc + i)] *
                               (double)cov[2 * ((size_t)j * nc + j)]);
      if (fabs((double)p[0] - q[0]) > tol || fabs((double)p[1] + q[1]) > tol)
        return clara_fail(CLARA_ERR_INVALID_ARG,
                          "%s: opts->noise_covariance: not Hermitian: "
                          "[%d][%d] = %g%+gi but [%d][%d] = %g%+gi",
                          who, i, j, (double)p[0], (double)p[1], j, i,
                          (double)q[0], (double)q[1]);
    }
  a = calloc(2 * n2, sizeof *a);
  l = calloc(2 * n2, sizeof *l);
  w = calloc(2 * n2, sizeof *w);
  res = clara_xcalloc(2 * n2, sizeof *res, who);
  if (!a || !l || !w || !res) {
    st = clara_fail(CLARA_ERR_OUT_OF_MEMORY, "%s: noise whitening of %d coils",
                    who, nc);
    goto done;
  }
  /* Hermitian part, lower triangle */
  for (int i = 0; i < nc; i++)
    for (int j = 0; j <= i; j++) {
      const float *p = cov + 2 * ((size_t)i * nc + j);
      const float *q = cov + 2 * ((size_t)j * nc + i);
      a[2 * ((size_t)i * nc + j)] = 0.5 * ((double)p[0] + q[0]);
      a[2 * ((size_t)i * nc + j) + 1] =
          i == j ? 0.0 : 0.5 * ((double)p[1] - q[1]);
    }
#define RE(m, i, j) (m)[2 * ((size_t)(i) * (size_t)nc + (size_t)(j))]
#define IM(m, i, j) (m)[2 * ((size_t)(i) * (size_t)nc + (size_t)(j)) + 1]
  for (int j = 0; j < nc; j++) {
    double d = RE(a, j, j), ljj;
    for (int k = 0; k < j; k++)
      d -= RE(l, j, k) * RE(l, j, k) + IM(l, j, k) * IM(l, j, k);
    if (!(d > 1e-10 * RE(a, j, j))) {
      st = clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: opts->noise_covariance: not positive definite "
                      "(Cholesky pivot %d is %g, the variance there %g)",
                      who, j, d, RE(a, j, j));
      goto done;
    }
    ljj = sqrt(d);
    RE(l, j, j) = ljj;
    for (int i = j + 1; i < nc; i++) {
      /* L_ij = (A_ij - sum_k L_ik conj(L_jk)) / L_jj */
      double re = RE(a, i, j), im = IM(a, i, j);
      for (int k = 0; k < j; k++) {
        re -= RE(l, i, k) * RE(l, j, k) + IM(l, i, k) * IM(l, j, k);
        im -= IM(l, i, k) * RE(l, j, k) - RE(l, i, k) * IM(l, j, k);
      }
      RE(l, i, j) = re / ljj;
      IM(l, i, j) = im / ljj;
    }
  }
  /* W = L^{-1}: forward substitution, column by column */
  for (int j = 0; j < nc; j++) {
    RE(w, j, j) = 1.0 / RE(l, j, j);
    for (int i = j + 1; i < nc; i++) {
      double re = 0, im = 0;
      for (int k = j; k < i; k++) {
        re += RE(l, i, k) * RE(w, k, j) - IM(l, i, k) * IM(w, k, j);
        im += RE(l, i, k) * IM(w, k, j) + IM(l, i, k) * RE(w, k, j);
      }
      RE(w, i, j) = -re / RE(l, i, i);
      IM(w, i, j) = -im / RE(l, i, i);
    }
  }
#undef RE
#undef IM
  for (size_t k = 0; k < 2 * n2; k++)
    res[k] = (float)w[k];
  *out = res;
  res = NULL;
done:
  free(a);
  free(l);
  free(w);
  clara_aligned_free(res);
  return st;
}

/* Copies the coil maps, checking them, and whitens them when a whitener is
 * given (the whitened coil images are W S rho, so the maps must be W S). */
static clara_status copy_maps(const float *maps, const clara_mr_geometry *g,
                              const float *whiten, float **out) {
  size_t npix = (size_t)g->nz * (size_t)g->ny * (size_t)g->recon_nx;
  size_t total, nc = (size_t)g->coils;
  float *s;
  *out = NULL;
  if (clara_size_mul(npix, nc, &total) != 0 ||
      total > SIZE_MAX / (2 * sizeof(float)))
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: opts->sensitivities: %d coils x %zu pixels "
                      "overflow the address space",
                      who, g->coils, npix);
  for (size_t k = 0; k < 2 * total; k++)
    if (!isfinite(maps[k]))
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: opts->sensitivities: coil %zu pixel %zu: must be "
                        "finite, got %g%+gi",
                        who, k / 2 / npix, k / 2 % npix,
                        (double)maps[k / 2 * 2], (double)maps[k / 2 * 2 + 1]);
  s = clara_xcalloc(2 * total, sizeof *s, who);
  if (!s)
    return CLARA_ERR_OUT_OF_MEMORY;
  if (!whiten) {
    memcpy(s, maps, 2 * total * sizeof *s);
  } else {
    for (size_t c = 0; c < nc; c++)
      for (size_t d = 0; d <= c; d++) {
        double wr = whiten[2 * (c * nc + d)], wi = whiten[2 * (c * nc + d) + 1];
        const float *src = maps + 2 * d * npix;
        float *dst = s + 2 * c * npix;
        for (size_t p = 0; p < npix; p++) {
          double re = src[2 * p], im = src[2 * p + 1];
          dst[2 * p] += (float)(wr * re - wi * im);
          dst[2 * p + 1] += (float)(wr * im + wi * re);
        }
      }
  }
  *out = s;
  return CLARA_OK;
}

/* The apodisation window over an encoded axis of n samples, centred on
 * n/2 (see the top of the file); NULL for CLARA_MR_WINDOW_NONE. */
static clara_status make_window(clara_mr_window kind, double alpha, int n,
                                float **out) {
  float *w;
  int c = n / 2;
  double half = 0.5 * n;
  *out = NULL;
  if (kind == CLARA_MR_WINDOW_NONE)
    return CLARA_OK;
  w = clara_xcalloc((size_t)n, sizeof *w, who);
  if (!w)
    return CLARA_ERR_OUT_OF_MEMORY;
  for (int k = 0; k < n; k++) {
    double t = (k - c) / half, v = 1.0;
    switch (kind) {
    case CLARA_MR_WINDOW_HANN:
      v = 0.5 * (1.0 + cos(M_PI * t));
      break;
    case CLARA_MR_WINDOW_HAMMING:
      v = 0.54 + 0.46 * cos(M_PI * t);
      break;
    case CLARA_MR_WINDOW_TUKEY:
      if (fabs(t) > 1.0 - alpha)
        v = 0.5 * (1.0 + cos(M_PI * (fabs(t) - 1.0 + alpha) / alpha));
      break;
    case CLARA_MR_WINDOW_NONE:
      break;
    }
    w[k] = (float)v;
  }
  *out = w;
  return CLARA_OK;
}

/* ---- Plans --------------------------------------------------------------- */

static void free_plan_storage(clara_mr_plan *p) {
  clara_aligned_free(p->whiten);
  clara_aligned_free(p->sens);
  clara_aligned_free(p->window_x);
  clara_aligned_free(p->window_y);
  clara_aligned_free(p->window_z);
}

CLARA_API clara_status clara_mr_plan_create(clara_context *ctx,
                                            const clara_mr_geometry *geom,
                                            const clara_mr_options *opts,
                                            clara_mr_plan **out) {
  clara_mr_options defaults;
  clara_mr_plan *p;
  clara_mr_setup *s;
  clara_status st;
  mr_create_fn create;
  if (!out)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: out is NULL", who);
  *out = NULL;
  if (!ctx)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: ctx is NULL", who);
  if (!geom)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: geom is NULL", who);
  if (!opts) {
    clara_mr_options_init(&defaults);
    opts = &defaults;
  }
  if ((st = check_options(opts)) != CLARA_OK ||
      (st = check_geometry(geom, opts->partial_fourier)) != CLARA_OK)
    return st;
  /* Host memory, before any allocation: the k-space and image of an
   * execute (complex float32), one slice of coil images being transformed
   * (complex, per worker up to the coil count) and the sensitivity maps. */
  {
    const clara_mr_geometry *g = geom;
    double rnx = g->recon_nx > 0 ? g->recon_nx : g->nx;
    double vox = (double)g->nz * g->ny;
    int workers = ctx->threads < g->coils ? ctx->threads : g->coils;
    clara_mem_term t[4] = {
        {"k-space", 8.0 * g->slices * g->coils * vox * g->nx},
        {"image", (opts->output_complex ? 8.0 : 4.0) * g->slices * vox * rnx},
        {"coil images",
         8.0 * g->coils * vox * g->nx + 8.0 * workers * vox * g->nx},
        {"coil maps", opts->combine == CLARA_MR_COMBINE_SENSITIVITY ||
                              opts->combine == CLARA_MR_COMBINE_ADAPTIVE
                          ? 8.0 * g->coils * vox * rnx
                          : 0}};
    if ((st = clara_memory_check(ctx, who, t, 4)) != CLARA_OK)
      return st;
  }

  p = calloc(1, sizeof *p);
  if (!p)
    return clara_fail(CLARA_ERR_OUT_OF_MEMORY, "%s: the plan", who);
  p->ctx = ctx;
  s = &p->setup;
  s->g = *geom;
  if (s->g.recon_nx == 0)
    s->g.recon_nx = s->g.nx;
  s->norm = opts->norm;
  s->combine = opts->combine;
  s->partial_fourier = opts->partial_fourier;
  s->pocs_iterations =
      opts->partial_fourier == CLARA_MR_PF_POCS ? opts->pocs_iterations : 0;
  s->output_complex = opts->output_complex;

  if (opts->noise_covariance) {
    st = make_whitener(opts->noise_covariance, geom->coils, &p->whiten);
    if (st != CLARA_OK)
      goto fail;
  }
  if (opts->combine == CLARA_MR_COMBINE_SENSITIVITY) {
    st = copy_maps(opts->sensitivities, &s->g, p->whiten, &p->sens);
    if (st != CLARA_OK)
      goto fail;
  }
  if ((st = make_window(opts->window, opts->tukey_alpha, geom->nx,
                        &p->window_x)) != CLARA_OK ||
      (st = make_window(opts->window, opts->tukey_alpha, geom->ny,
                        &p->window_y)) != CLARA_OK ||
      (st = make_window(opts->window, opts->tukey_alpha, geom->nz,
                        &p->window_z)) != CLARA_OK)
    goto fail;
  s->whiten = p->whiten;
  s->sens = p->sens;
  s->window_x = p->window_x;
  s->window_y = p->window_y;
  s->window_z = p->window_z;

  /* A backend without MRI entries, or one that answers UNSUPPORTED for
   * these options (the CUDA backend has no adaptive combination or
   * homodyne/POCS yet), leaves the work to the CPU backend. */
  st = CLARA_ERR_UNSUPPORTED;
  if (ctx->ops && ctx->ops->mr_create && ctx->ops->mr_execute &&
      ctx->ops != &clara_cpu_ops) {
    create = ctx->ops->mr_create;
    p->execute = ctx->ops->mr_execute;
    p->destroy = ctx->ops->mr_destroy;
    st = create(ctx, s, &p->state);
    p->on_device = st == CLARA_OK && ctx->ops->mr_execute_device != NULL;
    if (st == CLARA_ERR_UNSUPPORTED)
      snprintf(p->cpu_reason, sizeof p->cpu_reason, "%s", clara_last_error());
  }
  if (st == CLARA_ERR_UNSUPPORTED) {
    clara_clear_error();
    create = clara_cpu_ops.mr_create;
    p->execute = clara_cpu_ops.mr_execute;
    p->destroy = clara_cpu_ops.mr_destroy;
    p->state = NULL;
    st = create(ctx, s, &p->state);
  }
  if (st != CLARA_OK)
    goto fail;
  *out = p;
  return CLARA_OK;
fail:
  free_plan_storage(p);
  free(p);
  return st;
}

static clara_status check_exec(const clara_mr_plan *plan, const float *kspace,
                               const float *image, const char *fn,
                               const char *kname, const char *iname) {
  if (!plan)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: plan is NULL", fn);
  if (!kspace)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: %s is NULL", fn, kname);
  if (!image)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: %s is NULL", fn, iname);
  return CLARA_OK;
}

/* Reconstructs into host memory and, with a denoiser attached, denoises.
 * When the plan runs on a device and the denoiser can too, the image is
 * denoised there and comes down once. */
static clara_status execute(const clara_mr_plan *plan, const float *kspace,
                            float *image) {
  const clara_context *ctx = plan->ctx;
  const clara_backend_ops *ops = ctx->ops;
  const clara_mr_geometry *g = &plan->setup.g;
  int nimg = g->slices * g->nz;
  clara_status st;
  if (plan->denoiser && plan->on_device && ops->device_alloc &&
      clara_nn_has_device(plan->denoiser)) {
    /* A denoiser is only attached to magnitude output. */
    size_t ibytes =
        (size_t)g->recon_nx * (size_t)g->ny * (size_t)nimg * sizeof(float);
    void *d_image = NULL;
    st = ops->device_alloc(ctx, ibytes, &d_image);
    if (st == CLARA_OK)
      st = ops->mr_execute_device(ctx, &plan->setup, plan->state, kspace, 0,
                                  d_image);
    if (st == CLARA_OK)
      st = clara_nn_apply_device(plan->denoiser, d_image, g->recon_nx, g->ny,
                                 nimg);
    if (st == CLARA_OK)
      st = ops->copy_to_host(ctx, image, d_image, ibytes);
    if (d_image)
      ops->device_free(ctx, d_image);
    if (st != CLARA_ERR_OUT_OF_MEMORY)
      return st;
    /* No room on the device for the image next to the plan's buffers: go
     * through the host, where the denoiser splits its own work. */
    clara_clear_error();
  }
  st = plan->execute(ctx, &plan->setup, plan->state, kspace, image);
  if (st == CLARA_OK && plan->denoiser)
    st = clara_nn_apply_host(plan->denoiser, image, g->recon_nx, g->ny, nimg);
  return st;
}

CLARA_API clara_status clara_mr_execute(const clara_mr_plan *plan,
                                        const float *kspace, float *image) {
  clara_status st =
      check_exec(plan, kspace, image, "clara_mr_execute", "kspace", "image");
  if (st != CLARA_OK)
    return st;
  return execute(plan, kspace, image);
}

CLARA_API clara_status clara_mr_execute_device(const clara_mr_plan *plan,
                                               const float *d_kspace,
                                               float *d_image) {
  static const char fn[] = "clara_mr_execute_device";
  const clara_mr_geometry *g;
  clara_status st =
      check_exec(plan, d_kspace, d_image, fn, "d_kspace", "d_image");
  if (st != CLARA_OK)
    return st;
  if (!plan->ctx->ops->mr_execute_device)
    return clara_fail(CLARA_ERR_UNSUPPORTED,
                      "%s: the plan runs on the %s backend, which has no "
                      "device memory; device pointers need a context with "
                      "backend cuda",
                      fn, plan->ctx->ops->name);
  if (!plan->on_device)
    return clara_fail(CLARA_ERR_UNSUPPORTED,
                      "%s: this plan runs on the CPU (%s); use "
                      "clara_mr_execute",
                      fn,
                      plan->cpu_reason[0]
                          ? plan->cpu_reason
                          : "its options are not on the device");
  st = plan->ctx->ops->mr_execute_device(plan->ctx, &plan->setup, plan->state,
                                         d_kspace, 1, d_image);
  g = &plan->setup.g;
  if (st == CLARA_OK && plan->denoiser)
    st = clara_nn_apply_device(plan->denoiser, d_image, g->recon_nx, g->ny,
                               g->slices * g->nz);
  return st;
}

CLARA_API clara_status clara_mr_plan_set_denoiser(clara_mr_plan *plan,
                                                  clara_denoiser *d) {
  static const char fn[] = "clara_mr_plan_set_denoiser";
  if (!plan)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: plan is NULL", fn);
  if (d) {
    const clara_mr_geometry *g = &plan->setup.g;
    int rf = clara_nn_receptive_field(d);
    if (clara_nn_modality(d) != CLARA_MODALITY_MR)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: the model is for %s, the plan reconstructs MR; "
                        "load an MR model",
                        fn, clara_modality_name(clara_nn_modality(d)));
    if (clara_nn_context(d) != plan->ctx)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: the denoiser was loaded on another context than "
                        "the plan's; load it on the plan's context",
                        fn);
    if (plan->setup.output_complex)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: MR models denoise magnitude images, but the plan "
                        "outputs complex ones (opts->output_complex = 1)",
                        fn);
    if (g->recon_nx < rf || g->ny < rf)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: the plan's %d x %d images are smaller than the "
                        "model's receptive field (%d x %d)",
                        fn, g->recon_nx, g->ny, rf, rf);
  }
  clara_nn_release(plan->denoiser);
  plan->denoiser = clara_nn_retain(d);
  return CLARA_OK;
}

CLARA_API void clara_mr_plan_destroy(clara_mr_plan *plan) {
  if (!plan)
    return;
  if (plan->destroy)
    plan->destroy(plan->state);
  clara_nn_release(plan->denoiser);
  free_plan_storage(plan);
  free(plan);
}

CLARA_API clara_status clara_mr_noise_covariance(const float *noise, int coils,
                                                 int samples, float *cov) {
  static const char fn[] = "clara_mr_noise_covariance";
  size_t nc, ns, n;
  if (!noise || !cov)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                      !noise ? "noise" : "cov");
  if (coils <= 0)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: coils: must be > 0, got %d",
                      fn, coils);
  if (samples < 2)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: samples: must be >= 2 (the estimate divides by "
                      "samples - 1), got %d",
                      fn, samples);
  nc = (size_t)coils;
  ns = (size_t)samples;
  if (clara_size_mul3(nc, ns, 2 * sizeof(float), &n) != 0 ||
      clara_size_mul3(nc, nc, 2 * sizeof(float), &n) != 0)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: %d coils x %d samples overflow the address space",
                      fn, coils, samples);
  for (size_t i = 0; i < nc; i++) {
    const float *a = noise + 2 * i * ns;
    for (size_t j = 0; j <= i; j++) {
      const float *b = noise + 2 * j * ns;
      double re = 0, im = 0;
      /* a conj(b) */
      for (size_t k = 0; k < ns; k++) {
        double ar = a[2 * k], ai = a[2 * k + 1];
        double br = b[2 * k], bi = b[2 * k + 1];
        re += ar * br + ai * bi;
        im += ai * br - ar * bi;
      }
      re /= (double)(ns - 1);
      im /= (double)(ns - 1);
      if (i == j)
        im = 0; /* exactly real: a |a|^2 sum */
      cov[2 * (i * nc + j)] = (float)re;
      cov[2 * (i * nc + j) + 1] = (float)im;
      cov[2 * (j * nc + i)] = (float)re;
      cov[2 * (j * nc + i) + 1] = (float)-im;
    }
  }
  return CLARA_OK;
}
