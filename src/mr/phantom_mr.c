/* phantom_mr.c -- the modified Shepp-Logan phantom in k-space, exactly.
 *
 * An ellipse of density A, semi-axes (a, b), centre C and rotation phi has
 * the continuous Fourier transform (F(k) = integral f(r) exp(-2 pi i k.r))
 *   F(k) = A a b exp(-2 pi i k.C) J1(2 pi rho) / rho,
 *   rho = |diag(a, b) R(-phi) k|,
 * the unit disc's J1(2 pi |k|) / |k| stretched onto the ellipse (the limit
 * at rho = 0 is pi). Coil c's sensitivity is a short sum of complex
 * exponentials, S_c(r) = sum_t w_t exp(2 pi i q_t.r), so the k-space of the
 * phantom seen by the coil is the exact sum sum_t w_t F(k - q_t): no FFT and
 * no rasterisation anywhere.
 *
 * The built-in maps (coil_maps = 1), for coil c of C with theta = 2 pi c/C,
 * d = (cos theta, sin theta), e = (-sin theta, cos theta) and L the FOV:
 *   S_c(r) = exp(i 0.7 c) exp(2 pi i (0.3/L) e.r)
 *            (0.6 + 0.4 sin(2 pi d.r / (2 L))),
 * a magnitude that rises from 0.2 to 1 towards the coil's side of the FOV
 * with a gentle linear phase: three exponentials per coil. coil_maps = 0
 * gives S_c = 1 for every coil.
 */
#if !defined(_GNU_SOURCE) && !defined(_XOPEN_SOURCE)
#define _XOPEN_SOURCE 700 /* j1 */
#endif

#include "internal.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

static const char fn[] = "clara_mr_phantom_kspace";

/* The 2D modified Shepp-Logan table of src/ct/phantom.c (Toft's densities):
 * A, a, b, x0, y0, phi (deg), lengths as fractions of the radius. */
static const double sl2d[10][6] = {
    {1.0, 0.69, 0.92, 0.0, 0.0, 0.0},
    {-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0},
    {-0.2, 0.11, 0.31, 0.22, 0.0, -18.0},
    {-0.2, 0.16, 0.41, -0.22, 0.0, 18.0},
    {0.1, 0.21, 0.25, 0.0, 0.35, 0.0},
    {0.1, 0.046, 0.046, 0.0, 0.1, 0.0},
    {0.1, 0.046, 0.046, 0.0, -0.1, 0.0},
    {0.1, 0.046, 0.023, -0.08, -0.605, 0.0},
    {0.1, 0.023, 0.023, 0.0, -0.606, 0.0},
    {0.1, 0.023, 0.046, 0.06, -0.605, 0.0},
};
#define N_ELLIPSES 10
#define MAX_TERMS 3

typedef struct ellipse {
  double aab;    /* A a b */
  double x0, y0; /* centre, mm */
  double c, s;   /* cos phi, sin phi */
  double a, b;   /* semi-axes, mm */
} ellipse;

typedef struct coil_terms {
  int n;
  double wr[MAX_TERMS], wi[MAX_TERMS]; /* weights */
  double qx[MAX_TERMS], qy[MAX_TERMS]; /* frequencies, 1/mm */
} coil_terms;

typedef struct job {
  const clara_mr_geometry *g;
  ellipse e[N_ELLIPSES];
  double dkx, dky; /* k spacing, 1/mm */
  double scale;
  int lines; /* sampled ky lines */
  const coil_terms *terms;
  float *kspace; /* slice 0 */
} job;

/* The sensitivity terms of coil c of 'coils' over a FOV of L mm. */
static void make_terms(int c, int coils, int smooth, double L, coil_terms *t) {
  double theta = 2.0 * M_PI * c / coils;
  double dx = cos(theta), dy = sin(theta);
  double ex = -dy, ey = dx;
  double ph = 0.7 * c, cp = cos(ph), sp = sin(ph);
  double gx = 0.3 / L * ex, gy = 0.3 / L * ey;
  double hx = dx / (2.0 * L), hy = dy / (2.0 * L);
  memset(t, 0, sizeof *t);
  if (!smooth) {
    t->n = 1;
    t->wr[0] = 1.0;
    return;
  }
  /* exp(i ph) [0.6 E(g) - 0.2 i E(g + h) + 0.2 i E(g - h)] */
  t->n = 3;
  t->wr[0] = 0.6 * cp;
  t->wi[0] = 0.6 * sp;
  t->qx[0] = gx;
  t->qy[0] = gy;
  /* -0.2 i exp(i ph) = 0.2 (sin ph - i cos ph) */
  t->wr[1] = 0.2 * sp;
  t->wi[1] = -0.2 * cp;
  t->qx[1] = gx + hx;
  t->qy[1] = gy + hy;
  t->wr[2] = -0.2 * sp;
  t->wi[2] = 0.2 * cp;
  t->qx[2] = gx - hx;
  t->qy[2] = gy - hy;
}

/* J1(2 pi rho) / rho, pi at rho = 0. */
static double jinc(double rho) {
  double x = 2.0 * M_PI * rho;
  if (x < 1e-4)
    return 2.0 * M_PI * (0.5 - x * x / 16.0);
  return j1(x) / rho;
}

/* The phantom's transform at (kx, ky) in 1/mm: *re, *im. */
static void phantom_ft(const ellipse *e, double kx, double ky, double *re,
                       double *im) {
  double sr = 0, si = 0;
  for (int i = 0; i < N_ELLIPSES; i++) {
    double u = e[i].a * (kx * e[i].c + ky * e[i].s);
    double v = e[i].b * (-kx * e[i].s + ky * e[i].c);
    double amp = e[i].aab * jinc(sqrt(u * u + v * v));
    double arg = -2.0 * M_PI * (kx * e[i].x0 + ky * e[i].y0);
    sr += amp * cos(arg);
    si += amp * sin(arg);
  }
  *re = sr;
  *im = si;
}

/* One (coil, ky line) of slice 0. */
static clara_status line_task(void *arg, size_t index, int worker) {
  const job *jb = arg;
  const clara_mr_geometry *g = jb->g;
  int coil = (int)(index / (size_t)jb->lines);
  int y = g->ky_first + (int)(index % (size_t)jb->lines);
  const coil_terms *t = &jb->terms[coil];
  double ky = (y - g->ny / 2) * jb->dky;
  float *row = jb->kspace +
               (((size_t)coil * (size_t)g->ny + (size_t)y) * (size_t)g->nx) * 2;
  (void)worker;
  for (int x = g->kx_first; x <= g->kx_last; x++) {
    double kx = (x - g->nx / 2) * jb->dkx;
    double vr = 0, vi = 0;
    for (int k = 0; k < t->n; k++) {
      double fr, fi;
      phantom_ft(jb->e, kx - t->qx[k], ky - t->qy[k], &fr, &fi);
      vr += t->wr[k] * fr - t->wi[k] * fi;
      vi += t->wr[k] * fi + t->wi[k] * fr;
    }
    row[2 * x] = (float)(vr * jb->scale);
    row[2 * x + 1] = (float)(vi * jb->scale);
  }
  return CLARA_OK;
}

CLARA_API clara_status clara_mr_phantom_kspace(const clara_mr_geometry *geom,
                                               double fov_mm, int coil_maps,
                                               float *kspace, float *maps) {
  const clara_mr_geometry *g = geom;
  coil_terms *terms = NULL;
  job jb;
  clara_status st;
  size_t per_slice, ncoil;
  int rnx;
  double radius, fov_x;

  if (!geom || !kspace)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                      !geom ? "geom" : "kspace");
  if (g->coils < 1)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: geom->coils: must be > 0, got %d", fn, g->coils);
  if (g->nx < 1 || g->ny < 1 || g->nz < 1 || g->slices < 1)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: geom: sizes must be > 0, got nx=%d ny=%d nz=%d "
                      "slices=%d",
                      fn, g->nx, g->ny, g->nz, g->slices);
  if (g->nz != 1)
    return clara_fail(CLARA_ERR_UNSUPPORTED,
                      "%s: geom->nz: the phantom is 2D, so nz must be 1, got "
                      "%d",
                      fn, g->nz);
  if (g->recon_nx < 0 || g->recon_nx > g->nx)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: geom->recon_nx: must be in [0, nx] = [0, %d], got "
                      "%d",
                      fn, g->nx, g->recon_nx);
  if (g->ky_first < 0 || g->ky_last < g->ky_first || g->ky_last >= g->ny)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: geom: [ky_first, ky_last] = [%d, %d] must lie in "
                      "[0, ny-1] = [0, %d] with ky_first <= ky_last",
                      fn, g->ky_first, g->ky_last, g->ny - 1);
  if (g->kx_first < 0 || g->kx_last < g->kx_first || g->kx_last >= g->nx)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: geom: [kx_first, kx_last] = [%d, %d] must lie in "
                      "[0, nx-1] = [0, %d] with kx_first <= kx_last",
                      fn, g->kx_first, g->kx_last, g->nx - 1);
  if (!isfinite(fov_mm) || fov_mm <= 0)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: fov_mm: must be finite and > 0, got %g", fn, fov_mm);
  if (coil_maps != 0 && coil_maps != 1)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: coil_maps: must be 0 (uniform) or 1 (smooth maps), "
                      "got %d",
                      fn, coil_maps);
  if (clara_size_mul3((size_t)g->nx, (size_t)g->ny, (size_t)g->coils,
                      &per_slice) != 0 ||
      clara_size_mul(per_slice, 2 * (size_t)g->slices * sizeof(float),
                     &ncoil) != 0)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: geom: %d slices x %d coils x %d x %d samples "
                      "overflow the address space",
                      fn, g->slices, g->coils, g->ny, g->nx);

  rnx = g->recon_nx > 0 ? g->recon_nx : g->nx;
  radius = 0.5 * fov_mm;
  fov_x = fov_mm * g->nx / rnx; /* the oversampled readout FOV */
  terms = clara_xcalloc((size_t)g->coils, sizeof *terms, "the coil terms");
  if (!terms)
    return clara_fail_context(CLARA_ERR_OUT_OF_MEMORY, fn);
  for (int c = 0; c < g->coils; c++)
    make_terms(c, g->coils, coil_maps, fov_mm, &terms[c]);

  memset(&jb, 0, sizeof jb);
  jb.g = g;
  for (int i = 0; i < N_ELLIPSES; i++) {
    const double *t = sl2d[i];
    double phi = t[5] * (M_PI / 180.0);
    jb.e[i].a = t[1] * radius;
    jb.e[i].b = t[2] * radius;
    jb.e[i].aab = t[0] * jb.e[i].a * jb.e[i].b;
    jb.e[i].x0 = t[3] * radius;
    jb.e[i].y0 = t[4] * radius;
    jb.e[i].c = cos(phi);
    jb.e[i].s = sin(phi);
  }
  jb.dkx = 1.0 / fov_x;
  jb.dky = 1.0 / fov_mm;
  /* ORTHO reconstruction = phantom x map: the DFT sum approximates
   * (N / (FOV_x FOV_y)) f, and ORTHO divides by sqrt(N) */
  jb.scale = sqrt((double)g->nx * g->ny) / (fov_x * fov_mm);
  jb.lines = g->ky_last - g->ky_first + 1;
  jb.terms = terms;
  jb.kspace = kspace;

  memset(kspace, 0, per_slice * 2 * sizeof(float));
  st = clara_parallel_for(clara_online_cpus(),
                          (size_t)g->coils * (size_t)jb.lines, line_task, &jb,
                          NULL);
  if (st != CLARA_OK)
    goto done;
  for (int s = 1; s < g->slices; s++)
    memcpy(kspace + (size_t)s * per_slice * 2, kspace,
           per_slice * 2 * sizeof(float));

  if (maps) {
    double dx = fov_mm / rnx, dy = fov_mm / g->ny;
    for (int c = 0; c < g->coils; c++)
      for (int y = 0; y < g->ny; y++)
        for (int x = 0; x < rnx; x++) {
          const coil_terms *t = &terms[c];
          double px = (x - rnx / 2) * dx, py = (y - g->ny / 2) * dy;
          double vr = 0, vi = 0;
          float *m =
              maps + (((size_t)c * (size_t)g->ny + (size_t)y) * (size_t)rnx +
                      (size_t)x) *
                         2;
          for (int k = 0; k < t->n; k++) {
            double arg = 2.0 * M_PI * (t->qx[k] * px + t->qy[k] * py);
            double er = cos(arg), ei = sin(arg);
            vr += t->wr[k] * er - t->wi[k] * ei;
            vi += t->wr[k] * ei + t->wi[k] * er;
          }
          m[0] = (float)vr;
          m[1] = (float)vi;
        }
  }
done:
  clara_aligned_free(terms);
  return st;
}
