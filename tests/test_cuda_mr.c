/* test_cuda_mr.c -- MRI reconstruction on the CUDA backend against the CPU.
 *
 * On every machine first: a CUDA context either is made or fails with
 * CLARA_ERR_NO_DEVICE (and then backend auto runs MR plans on the CPU).
 * With a device: CPU and CUDA plans on the same random k-space, 2D and 3D,
 * even and odd sizes, readout oversampling crop, RSS and SENSITIVITY,
 * ORTHO and NONE, whitening on and off, windows, magnitude and complex
 * output, asymmetric sampling with zero filling, slice batches forced by a
 * device memory limit: relative L2 difference <= 1e-5. The options that the
 * CUDA backend does not run (ADAPTIVE; HOMODYNE/POCS on asymmetric
 * sampling) are left to the CPU backend: the plans must still be made.
 *
 * Exit status: 0 passed, 1 failed, 77 skipped (no CUDA device, after the
 * host-side check passed). CLARA_RECON_CUDA_PLUGIN may point at an
 * emulating plugin. */
#include "clara_recon.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define FAIL(...)                                                              \
  do {                                                                         \
    fprintf(stderr, "FAIL: " __VA_ARGS__);                                     \
    fputc('\n', stderr);                                                       \
    failures++;                                                                \
  } while (0)

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* [-1, 1) */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

typedef struct mr_case {
  const char *name;
  int coils, nx, ny, nz, slices, recon_nx;
  int ky_first, ky_last, kx_first, kx_last; /* -1: full */
} mr_case;

static double rel_l2(const float *a, const float *b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)a[i] - b[i];
    num += d * d;
    den += (double)a[i] * a[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void geometry(const mr_case *c, clara_mr_geometry *g) {
  memset(g, 0, sizeof *g);
  g->coils = c->coils;
  g->nx = c->nx;
  g->ny = c->ny;
  g->nz = c->nz;
  g->slices = c->slices;
  g->recon_nx = c->recon_nx;
  g->ky_first = c->ky_first < 0 ? 0 : c->ky_first;
  g->ky_last = c->ky_last < 0 ? c->ny - 1 : c->ky_last;
  g->kx_first = c->kx_first < 0 ? 0 : c->kx_first;
  g->kx_last = c->kx_last < 0 ? c->nx - 1 : c->kx_last;
}

/* Runs one configuration on both contexts and compares. */
static void compare(clara_context *cpu, clara_context *gpu, const mr_case *c,
                    const clara_mr_options *o, const float *kspace,
                    const char *what) {
  clara_mr_geometry g;
  clara_mr_plan *pc = NULL, *pg = NULL;
  clara_status st;
  size_t npix, nout;
  float *ic, *ig;
  double e;
  geometry(c, &g);
  npix = (size_t)(c->recon_nx ? c->recon_nx : c->nx) * c->ny * c->nz;
  nout = npix * (size_t)c->slices * (o->output_complex ? 2 : 1);
  ic = calloc(nout, sizeof *ic);
  ig = calloc(nout, sizeof *ig);
  if (!ic || !ig) {
    FAIL("%s %s: out of memory", c->name, what);
    goto done;
  }
  st = clara_mr_plan_create(cpu, &g, o, &pc);
  if (st != CLARA_OK) {
    FAIL("%s %s: CPU plan: %s", c->name, what, clara_last_error());
    goto done;
  }
  st = clara_mr_plan_create(gpu, &g, o, &pg);
  if (st != CLARA_OK) {
    FAIL("%s %s: CUDA plan: %s", c->name, what, clara_last_error());
    goto done;
  }
  if ((st = clara_mr_execute(pc, kspace, ic)) != CLARA_OK) {
    FAIL("%s %s: CPU execute: %s", c->name, what, clara_last_error());
    goto done;
  }
  for (size_t i = 0; i < nout; i++)
    ig[i] = NAN;
  if ((st = clara_mr_execute(pg, kspace, ig)) != CLARA_OK) {
    FAIL("%s %s: CUDA execute: %s", c->name, what, clara_last_error());
    goto done;
  }
  e = rel_l2(ic, ig, nout);
  if (!(e <= 1e-5))
    FAIL("%s %s: relative L2 %.3g > 1e-5", c->name, what, e);
  else
    fprintf(stderr, "  ok %-26s %-44s rel L2 %.2e\n", c->name, what, e);
done:
  clara_mr_plan_destroy(pc);
  clara_mr_plan_destroy(pg);
  free(ic);
  free(ig);
}

static void run_case(clara_context *cpu, clara_context *gpu, const mr_case *c) {
  size_t nvox = (size_t)c->nx * c->ny * c->nz;
  size_t npix = (size_t)(c->recon_nx ? c->recon_nx : c->nx) * c->ny * c->nz;
  size_t nk = 2 * nvox * (size_t)c->coils * c->slices;
  float *k = malloc(nk * sizeof *k);
  float *maps = malloc(2 * npix * c->coils * sizeof *maps);
  float *cov = malloc(2 * (size_t)c->coils * c->coils * sizeof *cov);
  float *a = malloc(2 * (size_t)c->coils * c->coils * sizeof *a);
  int nc = c->coils;
  if (!k || !maps || !cov || !a) {
    FAIL("%s: out of memory", c->name);
    goto done;
  }
  for (size_t i = 0; i < nk; i++)
    k[i] = frand();
  for (size_t i = 0; i < 2 * npix * nc; i++)
    maps[i] = frand();
  /* covariance A A^H + I: Hermitian positive definite */
  for (int i = 0; i < 2 * nc * nc; i++)
    a[i] = 0.5f * frand();
  for (int r = 0; r < nc; r++)
    for (int q = 0; q < nc; q++) {
      double re = r == q ? 1.0 : 0.0, im = 0;
      for (int t = 0; t < nc; t++) {
        double ar = a[2 * (r * nc + t)], ai = a[2 * (r * nc + t) + 1];
        double br = a[2 * (q * nc + t)], bi = a[2 * (q * nc + t) + 1];
        re += ar * br + ai * bi; /* a conj(b) */
        im += ai * br - ar * bi;
      }
      cov[2 * (r * nc + q)] = (float)re;
      cov[2 * (r * nc + q) + 1] = (float)(r == q ? 0.0 : im);
    }
  for (int comb = 0; comb < 2; comb++)
    for (int norm = 0; norm < 2; norm++)
      for (int wh = 0; wh < 2; wh++) {
        clara_mr_options o;
        char what[160];
        int cplx = (comb + norm + wh) & 1;
        int win = (comb ^ wh) ? CLARA_MR_WINDOW_HANN : CLARA_MR_WINDOW_NONE;
        clara_mr_options_init(&o);
        o.combine = comb ? CLARA_MR_COMBINE_SENSITIVITY : CLARA_MR_COMBINE_RSS;
        o.norm = norm ? CLARA_MR_NORM_NONE : CLARA_MR_NORM_ORTHO;
        o.noise_covariance = wh ? cov : NULL;
        o.sensitivities = comb ? maps : NULL;
        o.output_complex = cplx;
        o.window = (clara_mr_window)win;
        o.partial_fourier = CLARA_MR_PF_ZERO;
        snprintf(what, sizeof what, "%s %s %s %s %s", comb ? "SENS" : "RSS",
                 norm ? "none" : "ortho", wh ? "whiten" : "plain",
                 cplx ? "complex" : "magnitude", win ? "hann" : "");
        compare(cpu, gpu, c, &o, k, what);
      }
done:
  free(k);
  free(maps);
  free(cov);
  free(a);
}

static const mr_case cases[] = {
    {"2D even", 4, 32, 24, 1, 3, 0, -1, -1, -1, -1},
    {"2D odd", 3, 33, 25, 1, 2, 0, -1, -1, -1, -1},
    {"2D oversampled crop", 4, 64, 20, 1, 2, 32, -1, -1, -1, -1},
    {"2D odd crop", 2, 35, 21, 1, 1, 17, -1, -1, -1, -1},
    {"2D zero-filled asym", 4, 32, 32, 1, 2, 0, 0, 21, 3, 31},
    {"3D even", 4, 16, 12, 8, 2, 0, -1, -1, -1, -1},
    {"3D odd", 3, 15, 13, 7, 2, 0, -1, -1, -1, -1},
    {"3D crop", 2, 24, 10, 6, 1, 12, 1, 8, -1, -1},
    {"1 coil", 1, 16, 16, 1, 2, 0, -1, -1, -1, -1},
};

/* Slices in batches (and a tail batch) under a device memory limit. */
static void batches(clara_context *cpu) {
  mr_case c = {"batched (limit)", 4, 32, 24, 1, 5, 16, -1, -1, -1, -1};
  size_t nvox = 32 * 24, npix = 16 * 24;
  size_t per_slice = 3 * 8 * 4 * nvox + 8 * npix;
  size_t fixed = 8 * 16 + 4 * (32 + 24 + 1) + 8 * 4 * npix;
  clara_context_options o;
  clara_context *gpu = NULL;
  clara_context_options_init(&o);
  o.backend = CLARA_BACKEND_CUDA;
  o.device_memory_limit = fixed + 2 * per_slice + 64;
  if (clara_context_create(&o, &gpu) != CLARA_OK) {
    FAIL("batched: context: %s", clara_last_error());
    return;
  }
  run_case(cpu, gpu, &c);
  clara_context_destroy(gpu);
  /* too small for one slice */
  {
    clara_mr_geometry g;
    clara_mr_plan *p = NULL;
    clara_status st;
    o.device_memory_limit = 1024;
    if (clara_context_create(&o, &gpu) != CLARA_OK) {
      FAIL("small limit: context: %s", clara_last_error());
      return;
    }
    geometry(&c, &g);
    st = clara_mr_plan_create(gpu, &g, NULL, &p);
    if (st != CLARA_ERR_OUT_OF_MEMORY || p)
      FAIL("a 1 KiB limit: %s (%s), expected CLARA_ERR_OUT_OF_MEMORY",
           clara_status_name(st), clara_last_error());
    else
      fprintf(stderr, "  ok 1 KiB limit: %s\n", clara_last_error());
    clara_mr_plan_destroy(p);
    clara_context_destroy(gpu);
  }
}

static void unsupported(clara_context *gpu) {
  clara_mr_geometry g;
  clara_mr_options o;
  clara_mr_plan *p = NULL;
  clara_status st;
  mr_case asym = {"asym", 2, 32, 32, 1, 1, 0, 0, 21, -1, -1};
  mr_case sym = {"sym", 2, 32, 32, 1, 1, 0, -1, -1, -1, -1};

  geometry(&sym, &g);
  clara_mr_options_init(&o);
  o.combine = CLARA_MR_COMBINE_ADAPTIVE;
  st = clara_mr_plan_create(gpu, &g, &o, &p);
  if (st != CLARA_OK || !p)
    FAIL("ADAPTIVE on a CUDA context (run by the CPU backend): %s (%s)",
         clara_status_name(st), clara_last_error());
  clara_mr_plan_destroy(p);
  p = NULL;

  geometry(&asym, &g);
  for (int m = 0; m < 2; m++) {
    clara_mr_options_init(&o);
    o.partial_fourier = m ? CLARA_MR_PF_POCS : CLARA_MR_PF_HOMODYNE;
    st = clara_mr_plan_create(gpu, &g, &o, &p);
    if (st != CLARA_OK || !p)
      FAIL("%s on asymmetric sampling on a CUDA context (run by the CPU "
           "backend): %s (%s)",
           m ? "POCS" : "HOMODYNE", clara_status_name(st), clara_last_error());
    clara_mr_plan_destroy(p);
    p = NULL;
  }
  /* symmetric sampling: homodyne (the default) is zero filling and runs */
  geometry(&sym, &g);
  st = clara_mr_plan_create(gpu, &g, NULL, &p);
  if (st != CLARA_OK)
    FAIL("default options, full sampling on CUDA: %s (%s)",
         clara_status_name(st), clara_last_error());
  clara_mr_plan_destroy(p);
}

/* Host-side: without a device, a CUDA context is NO_DEVICE and an AUTO
 * context runs MR plans on the CPU. Returns 1 when a device is usable. */
static int host_checks(void) {
  clara_context_options o;
  clara_context *ctx = NULL;
  clara_status st;
  clara_context_options_init(&o);
  o.backend = CLARA_BACKEND_CUDA;
  st = clara_context_create(&o, &ctx);
  if (st == CLARA_OK) {
    clara_context_destroy(ctx);
    return 1;
  }
  if (st != CLARA_ERR_NO_DEVICE || ctx) {
    FAIL("backend cuda: %s (%s), expected CLARA_OK or "
         "CLARA_ERR_NO_DEVICE",
         clara_status_name(st), clara_last_error());
    return 0;
  }
  fprintf(stderr, "  backend cuda: CLARA_ERR_NO_DEVICE: %s\n",
          clara_last_error());
  o.backend = CLARA_BACKEND_AUTO;
  st = clara_context_create(&o, &ctx);
  if (st != CLARA_OK || clara_context_backend(ctx) != CLARA_BACKEND_CPU) {
    FAIL("backend auto without a device: %s", clara_status_name(st));
  } else {
    clara_mr_geometry g;
    clara_mr_plan *p = NULL;
    mr_case c = {"auto", 2, 16, 16, 1, 1, 0, -1, -1, -1, -1};
    float *k = calloc(2 * 16 * 16 * 2, sizeof *k), *img = calloc(256, 4);
    geometry(&c, &g);
    if (!k || !img || clara_mr_plan_create(ctx, &g, NULL, &p) != CLARA_OK ||
        clara_mr_execute(p, k, img) != CLARA_OK)
      FAIL("MR plan on an auto context without a device: %s",
           clara_last_error());
    clara_mr_plan_destroy(p);
    free(k);
    free(img);
  }
  clara_context_destroy(ctx);
  return 0;
}

int main(void) {
  clara_context_options o;
  clara_context *cpu = NULL, *gpu = NULL;
  int have = host_checks();
  if (failures)
    return EXIT_FAILURE;
  if (!have) {
    fprintf(stderr, "test_cuda_mr: the host-side checks passed; no CUDA "
                    "device, so the device tests are skipped\n");
    return 77;
  }
  clara_context_options_init(&o);
  o.backend = CLARA_BACKEND_CPU;
  if (clara_context_create(&o, &cpu) != CLARA_OK) {
    fprintf(stderr, "CPU context: %s\n", clara_last_error());
    return EXIT_FAILURE;
  }
  o.backend = CLARA_BACKEND_CUDA;
  if (clara_context_create(&o, &gpu) != CLARA_OK) {
    fprintf(stderr, "CUDA context: %s\n", clara_last_error());
    return EXIT_FAILURE;
  }
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    run_case(cpu, gpu, &cases[i]);
  batches(cpu);
  unsupported(gpu);
  clara_context_destroy(gpu);
  clara_context_destroy(cpu);
  fprintf(stderr, "test_cuda_mr: %d failure%s\n", failures,
          failures == 1 ? "" : "s");
  return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
