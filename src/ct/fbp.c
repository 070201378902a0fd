/* fbp.c -- FBP/FDK plans: geometry checks, view weights, redundancy
 * (full scan, Parker short scan, offset detector), the filter spectrum and
 * the field of view. Everything here runs once per plan; the backend runs
 * the loops. Formulas: Kak & Slaney, "Principles of Computerized
 * Tomographic Imaging", ch. 3; Feldkamp, Davis & Kress 1984; Parker 1982;
 * Wesarg et al. 2002; Wang 2002 (see docs/GEOMETRY.md). */
#include "ct.h"
#include "nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct clara_fbp_plan_s {
  const clara_context *ctx;
  clara_fbp_setup setup;
  clara_fbp_info info;
  void *state; /* the backend's */
  /* storage behind the setup's const pointers */
  double *cos_t, *sin_t;
  float *filter, *view_weight, *det_weight;
  float *redundancy; /* [views][cols], for clara_fbp_plan_weight */
  int hu;            /* the output is in HU (mu_water > 0) */
  clara_denoiser *denoiser; /* attached, with a reference held, or NULL */
};

CLARA_API void clara_fbp_options_init(clara_fbp_options *opts) {
  if (!opts)
    return;
  memset(opts, 0, sizeof *opts);
  opts->filter = CLARA_FILTER_RAM_LAK;
  opts->cutoff = 1.0;
}

static const char *const filter_names[] = {"ram-lak", "shepp-logan", "cosine",
                                           "hamming", "hann"};

CLARA_API const char *clara_filter_name(clara_filter filter) {
  if ((int)filter < 0 || (int)filter > CLARA_FILTER_HANN)
    return NULL;
  return filter_names[filter];
}

CLARA_API clara_status clara_filter_parse(const char *name, clara_filter *out) {
  if (!name || !out)
    return clara_fail(CLARA_ERR_INVALID_ARG, "clara_filter_parse: %s is NULL",
                      !name ? "name" : "out");
  if (strcmp(name, "ramp") == 0) {
    *out = CLARA_FILTER_RAM_LAK;
    return CLARA_OK;
  }
  for (int f = 0; f <= CLARA_FILTER_HANN; f++) {
    if (strcmp(name, filter_names[f]) == 0) {
      *out = (clara_filter)f;
      return CLARA_OK;
    }
  }
  return clara_fail(CLARA_ERR_INVALID_ARG,
                    "filter: unknown name \"%s\" (expected ram-lak, "
                    "shepp-logan, cosine, hamming or hann)",
                    name);
}

clara_status clara_volume_check(const clara_volume *vol, const char *who) {
  size_t n;
  if (!vol)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: vol is NULL", who);
  if (vol->nx <= 0 || vol->ny <= 0 || vol->nz <= 0)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: vol: sizes must be > 0, got nx=%d ny=%d nz=%d", who,
                      vol->nx, vol->ny, vol->nz);
  if (clara_size_mul3((size_t)vol->nx, (size_t)vol->ny, (size_t)vol->nz, &n) !=
          0 ||
      n > SIZE_MAX / sizeof(float))
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: vol: %d x %d x %d voxels overflow the address space",
                      who, vol->nx, vol->ny, vol->nz);
  for (int i = 0; i < 3; i++) {
    if (!isfinite(vol->voxel[i]) || vol->voxel[i] <= 0)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: vol->voxel[%d]: must be finite and > 0, got %g",
                        who, i, vol->voxel[i]);
    if (!isfinite(vol->center[i]))
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: vol->center[%d]: must be finite, got %g", who, i,
                        vol->center[i]);
  }
  return CLARA_OK;
}

clara_status clara_ct_common_setup(const clara_ct_geometry *g,
                                   const clara_volume *vol, const char *who,
                                   clara_proj_setup *ps, double **cos_out,
                                   double **sin_out) {
  clara_status st;
  double *c, *s;
  *cos_out = *sin_out = NULL;
  if (!g)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: geom is NULL", who);
  st = clara_geometry_check(g);
  if (st != CLARA_OK)
    return clara_fail_context(st, who);
  st = clara_volume_check(vol, who);
  if (st != CLARA_OK)
    return st;
  if (g->kind != CLARA_GEOM_CONE && vol->nz != g->rows)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: vol->nz: %s data with %d detector rows is a stack "
                      "of %d slices, so nz must be %d, got %d",
                      who, clara_geometry_name(g->kind), g->rows, g->rows,
                      g->rows, vol->nz);
  if (g->kind != CLARA_GEOM_PARALLEL) {
    /* Every voxel must lie strictly inside the source orbit. */
    double hx = 0.5 * vol->nx * vol->voxel[0] + fabs(vol->center[0]);
    double hy = 0.5 * vol->ny * vol->voxel[1] + fabs(vol->center[1]);
    double r = sqrt(hx * hx + hy * hy);
    if (r >= 0.99 * g->source_to_iso)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: vol: the volume reaches %.4g mm from the "
                        "rotation axis, beyond the source orbit "
                        "(source_to_iso %.4g mm)",
                        who, r, g->source_to_iso);
  }
  if (g->kind == CLARA_GEOM_CONE) {
    double vmax =
        0.5 * (g->rows - 1) * g->det_spacing[0] + fabs(g->det_offset[0]);
    if (vmax >= g->source_to_detector)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: geometry: cone half-angle reaches 45 degrees "
                        "(detector rows extend %.4g mm, source_to_detector "
                        "%.4g mm)",
                        who, vmax, g->source_to_detector);
  }
  c = clara_xcalloc((size_t)g->views, sizeof *c, who);
  s = clara_xcalloc((size_t)g->views, sizeof *s, who);
  if (!c || !s) {
    clara_aligned_free(c);
    clara_aligned_free(s);
    return CLARA_ERR_OUT_OF_MEMORY;
  }
  for (int v = 0; v < g->views; v++) {
    c[v] = cos((double)g->angles[v]);
    s[v] = sin((double)g->angles[v]);
  }
  memset(ps, 0, sizeof *ps);
  ps->kind = g->kind;
  ps->views = g->views;
  ps->rows = g->rows;
  ps->cols = g->cols;
  ps->vol = *vol;
  ps->rs = g->source_to_iso;
  ps->rd = g->source_to_detector;
  ps->du = g->det_spacing[1];
  ps->dv = g->det_spacing[0];
  ps->u0 = -0.5 * (g->cols - 1) * g->det_spacing[1] + g->det_offset[1];
  ps->v0 = -0.5 * (g->rows - 1) * g->det_spacing[0] + g->det_offset[0];
  ps->cos_t = c;
  ps->sin_t = s;
  *cos_out = c;
  *sin_out = s;
  return CLARA_OK;
}

/* ---- Angles -------------------------------------------------------------- */

typedef struct {
  int v;
  double a;
} angle_ix;

static int cmp_angle(const void *p, const void *q) {
  const angle_ix *x = p, *y = q;
  return (x->a > y->a) - (x->a < y->a);
}

/* Per-view angular intervals (dtheta), and for a partial scan each view's
 * angle from the scan start (beta). Sets *range to the angle covered and
 * *turns to the number of full turns (0 for a partial scan). */
typedef struct {
  double *dtheta, *beta;
  double range;
  double turns; /* >= 1 for full or multi-turn scans, 0 for partial */
} scan_info;

static clara_status analyse_angles(const float *angles, int n, scan_info *si,
                                   const char *who) {
  const double two_pi = 2.0 * M_PI;
  angle_ix *ix = NULL;
  double amin = INFINITY, amax = -INFINITY;
  clara_status st = CLARA_OK;

  si->dtheta = clara_xcalloc((size_t)n, sizeof(double), who);
  si->beta = clara_xcalloc((size_t)n, sizeof(double), who);
  ix = calloc((size_t)n, sizeof *ix);
  if (!si->dtheta || !si->beta || !ix) {
    st = clara_fail(CLARA_ERR_OUT_OF_MEMORY, "%s: angle tables", who);
    goto done;
  }
  if (n < 2) {
    st = clara_fail(CLARA_ERR_INVALID_ARG,
                    "%s: geometry->views: filtered back-projection needs at "
                    "least 2 views, got %d",
                    who, n);
    goto done;
  }
  for (int v = 0; v < n; v++) {
    amin = fmin(amin, angles[v]);
    amax = fmax(amax, angles[v]);
  }

  if (amax - amin > two_pi * (1.0 + 1e-6) + (amax - amin) / n) {
    /* Several turns: intervals from the sorted raw angles, and every ray
     * normalised by the number of turns (pi / range per line). */
    for (int v = 0; v < n; v++) {
      ix[v].v = v;
      ix[v].a = angles[v];
    }
    qsort(ix, (size_t)n, sizeof *ix, cmp_angle);
    for (int k = 0; k < n; k++) {
      double lo = k > 0 ? ix[k].a - ix[k - 1].a : ix[1].a - ix[0].a;
      double hi = k < n - 1 ? ix[k + 1].a - ix[k].a : ix[k].a - ix[k - 1].a;
      si->dtheta[ix[k].v] = 0.5 * (lo + hi);
    }
    si->range = 0;
    for (int v = 0; v < n; v++)
      si->range += si->dtheta[v];
    si->turns = si->range / two_pi;
    goto done;
  }

  /* At most one turn: work on the circle. The scan starts after the
   * largest gap between neighbouring angles. */
  for (int v = 0; v < n; v++) {
    double m = fmod((double)angles[v], two_pi);
    if (m < 0)
      m += two_pi;
    ix[v].v = v;
    ix[v].a = m;
  }
  qsort(ix, (size_t)n, sizeof *ix, cmp_angle);
  {
    int kgap = n - 1; /* gap after element kgap (wrapping) */
    double gmax = ix[0].a + two_pi - ix[n - 1].a;
    double mean_other;
    for (int k = 0; k < n - 1; k++) {
      double gk = ix[k + 1].a - ix[k].a;
      if (gk > gmax) {
        gmax = gk;
        kgap = k;
      }
    }
    mean_other = (two_pi - gmax) / (n - 1);
    if (gmax <= 1.5 * mean_other) {
      /* A full turn: circular neighbours. */
      for (int k = 0; k < n; k++) {
        double prev =
            k > 0 ? ix[k].a - ix[k - 1].a : ix[0].a + two_pi - ix[n - 1].a;
        double next =
            k < n - 1 ? ix[k + 1].a - ix[k].a : ix[0].a + two_pi - ix[n - 1].a;
        si->dtheta[ix[k].v] = 0.5 * (prev + next);
      }
      si->range = two_pi;
      si->turns = 1.0;
      goto done;
    }
    /* A partial scan: unwrap from the element after the largest gap. */
    {
      int start = (kgap + 1) % n;
      double a0 = ix[start].a;
      double *b = malloc(sizeof *b * (size_t)n);
      int *order = malloc(sizeof *order * (size_t)n);
      if (!b || !order) {
        free(b);
        free(order);
        st = clara_fail(CLARA_ERR_OUT_OF_MEMORY, "%s: angle tables", who);
        goto done;
      }
      for (int k = 0; k < n; k++) {
        int j = (start + k) % n;
        double d = ix[j].a - a0;
        if (d < 0)
          d += two_pi;
        b[k] = d;
        order[k] = ix[j].v;
      }
      for (int k = 0; k < n; k++) {
        double lo = k > 0 ? b[k] - b[k - 1] : b[1] - b[0];
        double hi = k < n - 1 ? b[k + 1] - b[k] : b[k] - b[k - 1];
        si->dtheta[order[k]] = 0.5 * (lo + hi);
      }
      {
        double first = b[1] - b[0], last = b[n - 1] - b[n - 2];
        si->range = b[n - 1] + 0.5 * (first + last);
        for (int k = 0; k < n; k++)
          si->beta[order[k]] = b[k] + 0.5 * first;
      }
      si->turns = 0;
      free(b);
      free(order);
    }
  }
done:
  free(ix);
  if (st != CLARA_OK) {
    clara_aligned_free(si->dtheta);
    clara_aligned_free(si->beta);
    si->dtheta = si->beta = NULL;
  }
  return st;
}

/* Parker weight in this library's convention, where the ray (beta, gamma)
 * meets its conjugate at (beta + pi - 2 gamma, -gamma); delta >= |gamma| is
 * half the overscan beyond pi. */
static double parker(double beta, double gamma, double delta) {
  const double q = M_PI / 4.0;
  if (beta < 0)
    return 0;
  if (beta < 2.0 * (delta + gamma)) {
    double s = sin(q * beta / (delta + gamma));
    return s * s;
  }
  if (beta <= M_PI + 2.0 * gamma)
    return 1.0;
  if (beta <= M_PI + 2.0 * delta) {
    double s = sin(q * (M_PI + 2.0 * delta - beta) / (delta - gamma));
    return s * s;
  }
  return 0;
}

/* ---- Filter -------------------------------------------------------------- */

static int fft_friendly(int n) {
  for (;; n++) {
    int m = n;
    while (m % 2 == 0)
      m /= 2;
    while (m % 3 == 0)
      m /= 3;
    while (m % 5 == 0)
      m /= 5;
    while (m % 7 == 0)
      m /= 7;
    if (m == 1)
      return n;
  }
}

static double window(clara_filter f, double nu) {
  switch (f) {
  case CLARA_FILTER_RAM_LAK:
    return 1.0;
  case CLARA_FILTER_SHEPP_LOGAN:
    return nu == 0 ? 1.0 : sin(M_PI * nu / 2) / (M_PI * nu / 2);
  case CLARA_FILTER_COSINE:
    return cos(M_PI * nu / 2);
  case CLARA_FILTER_HAMMING:
    return 0.54 + 0.46 * cos(M_PI * nu);
  case CLARA_FILTER_HANN:
    return 0.5 + 0.5 * cos(M_PI * nu);
  }
  return 0;
}

/* The ramp's discrete spatial kernel (Kak & Slaney eq. 61 of ch. 3), for
 * lag n in samples: h(0) = 1/4, h(odd) = -1/(pi n)^2, 0 for even n; in
 * units of 1/tau^2, multiplied by tau here and divided by tau^2 -> 1/tau.
 * For an arc detector the kernel at fan-angle lag n*dg carries the factor
 * (n dg / sin(n dg))^2 (Kak & Slaney eq. 118). */
static double ramp_kernel(int n, int arc, double dg) {
  double h;
  if (n == 0)
    return 0.25;
  if (n % 2 == 0)
    return 0;
  h = -1.0 / (M_PI * M_PI * (double)n * (double)n);
  if (arc) {
    double x = n * dg;
    double r = x / sin(x);
    h *= r * r;
  }
  return h;
}

/* Fills filter[k], k = 0..nfft/2, with the real spectrum of the windowed
 * kernel, divided by tau (mm at the isocentre) and by nfft (FFTW's inverse
 * is unnormalised). */
static void design_filter(float *filter, int nfft, int cols, double tau,
                          int arc, double dg, clara_filter win, double cutoff) {
  int half = nfft / 2;
  for (int k = 0; k <= half; k++) {
    double acc = ramp_kernel(0, arc, dg);
    double nu = (double)k / half;     /* fraction of Nyquist */
    for (int n = 1; n < cols; n += 2) /* even lags are 0 */
      acc += 2.0 * ramp_kernel(n, arc, dg) * cos(2.0 * M_PI * k * n / nfft);
    if (nu / cutoff > 1.0)
      acc = 0;
    else
      acc *= window(win, nu / cutoff);
    filter[k] = (float)(acc / tau / nfft);
  }
}

/* ---- Plan ---------------------------------------------------------------- */

static void free_plan(clara_fbp_plan *p) {
  if (!p)
    return;
  if (p->state && p->ctx)
    p->ctx->ops->fbp_destroy(p->state);
  clara_nn_release(p->denoiser);
  clara_aligned_free(p->cos_t);
  clara_aligned_free(p->sin_t);
  clara_aligned_free(p->filter);
  clara_aligned_free(p->view_weight);
  clara_aligned_free(p->det_weight);
  clara_aligned_free(p->redundancy);
  free(p);
}

/* The fan angle (radians) of detector coordinate u, or the parallel
 * coordinate itself for parallel beams. */
static double ray_gamma(clara_geometry_kind k, double u, double rd) {
  switch (k) {
  case CLARA_GEOM_PARALLEL:
    return u;
  case CLARA_GEOM_FAN_ARC:
    return u;
  default:
    return atan(u / rd);
  }
}

CLARA_API clara_status clara_fbp_plan_create(clara_context *ctx,
                                             const clara_ct_geometry *g,
                                             const clara_volume *vol,
                                             const clara_fbp_options *opts,
                                             clara_fbp_plan **out) {
  static const char who[] = "clara_fbp_plan_create";
  clara_fbp_options defaults;
  clara_fbp_plan *p = NULL;
  clara_proj_setup ps;
  scan_info si = {0};
  clara_status st;
  int views, rows, cols;
  double tau, rs, rd, gmin, gmax, fov, fan_half = 0;
  int offset_w = 0, arc, parallel;

  if (!out)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: out is NULL", who);
  *out = NULL;
  if (!ctx)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: ctx is NULL", who);
  if (!opts) {
    clara_fbp_options_init(&defaults);
    opts = &defaults;
  }
  if ((int)opts->filter < 0 || (int)opts->filter > CLARA_FILTER_HANN)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: opts->filter: unknown filter %d", who,
                      (int)opts->filter);
  if (!isfinite(opts->cutoff) || opts->cutoff <= 0 || opts->cutoff > 1)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: opts->cutoff: must be in (0, 1], got %g", who,
                      opts->cutoff);
  if (!isfinite(opts->mu_water) || opts->mu_water < 0)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: opts->mu_water: must be 0 (output mu) or a finite "
                      "positive value in 1/mm, got %g",
                      who, opts->mu_water);
  if (opts->flags &
      ~(unsigned)(CLARA_FBP_ALLOW_TRUNCATION | CLARA_FBP_NO_FOV_MASK |
                  CLARA_FBP_NO_OFFSET_WEIGHTS | CLARA_FBP_GPU_TEXTURE))
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: opts->flags: unknown bits 0x%x", who, opts->flags);

  p = calloc(1, sizeof *p);
  if (!p)
    return clara_fail(CLARA_ERR_OUT_OF_MEMORY, "%s: plan", who);
  st = clara_ct_common_setup(g, vol, who, &ps, &p->cos_t, &p->sin_t);
  if (st != CLARA_OK)
    goto fail;
  /* Host memory, checked once the sizes are valid and before any large
   * allocation: the volume and projections an execute works on (float32),
   * the plan's per-view weights (two views x cols tables, one rows x cols
   * table) and one filtered view row per worker (FFT length ~ 4 cols). */
  {
    clara_mem_term t[4] = {
        {"volume", 4.0 * vol->nx * vol->ny * vol->nz},
        {"projections", 4.0 * g->views * g->rows * g->cols},
        {"weights", 4.0 * g->cols * (2.0 * g->views + g->rows)},
        {"filter scratch", 8.0 * 4.0 * g->cols * ctx->threads}};
    st = clara_memory_check(ctx, who, t, 4);
    if (st != CLARA_OK)
      goto fail;
  }
  views = g->views;
  rows = g->rows;
  cols = g->cols;
  rs = g->source_to_iso;
  rd = g->source_to_detector;
  arc = g->kind == CLARA_GEOM_FAN_ARC;
  parallel = g->kind == CLARA_GEOM_PARALLEL;

  st = analyse_angles(g->angles, views, &si, who);
  if (st != CLARA_OK)
    goto fail;

  /* Fan angles (or parallel coordinates) of the edge columns, and the field
   * of view: the circle that every view sees. */
  gmin = ray_gamma(g->kind, ps.u0, rd);
  gmax = ray_gamma(g->kind, ps.u0 + (cols - 1) * ps.du, rd);
  if (!parallel)
    fan_half = fmax(fabs(gmin), fabs(gmax));
  {
    double half_width = 0.5 * (cols - 1) * ps.du;
    int asym = fabs(g->det_offset[1]) > 0.1 * half_width;
    offset_w = asym && !(opts->flags & CLARA_FBP_NO_OFFSET_WEIGHTS) &&
               gmin < 0 && gmax > 0;
    if (offset_w && si.turns < 1.0) {
      st = clara_fail(CLARA_ERR_UNSUPPORTED,
                      "%s: geometry->det_offset[1]: an offset (half-fan) "
                      "detector needs a full turn, but the angles cover %.1f "
                      "degrees",
                      who, si.range * 180.0 / M_PI);
      goto fail;
    }
    {
      double reach = offset_w ? fmax(-gmin, gmax)
                              : (gmin < 0 && gmax > 0 ? fmin(-gmin, gmax) : 0);
      fov = parallel ? reach : rs * sin(reach);
    }
  }

  /* Scan coverage. */
  if (si.turns < 1.0) {
    double mean = si.range / views;
    double need = M_PI + 2.0 * fan_half;
    if (si.range < need - 0.5 * mean) {
      st = clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: geometry->angles: the views cover %.2f degrees; a "
                      "%s scan needs at least 180 degrees plus the fan angle "
                      "(%.2f degrees)",
                      who, si.range * 180.0 / M_PI,
                      clara_geometry_name(g->kind), need * 180.0 / M_PI);
      goto fail;
    }
  }

  /* Truncation: the field of view must hold the volume's inscribed circle
   * (to a voxel). */
  {
    double rvol = 0.5 * fmin(vol->nx * vol->voxel[0], vol->ny * vol->voxel[1]);
    double off = hypot(vol->center[0], vol->center[1]);
    double tol = fmax(vol->voxel[0], vol->voxel[1]);
    if (fov + tol < rvol + off && !(opts->flags & CLARA_FBP_ALLOW_TRUNCATION)) {
      st = clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: geometry: the detector sees a field of view of "
                      "radius %.4g mm, smaller than the volume's inscribed "
                      "circle (radius %.4g mm at %.4g mm from the axis); "
                      "widen the detector, shrink the volume, or pass "
                      "CLARA_FBP_ALLOW_TRUNCATION",
                      who, fov, rvol, off);
      goto fail;
    }
  }

  /* Filter. tau: the detector spacing at the isocentre. */
  tau = parallel ? ps.du : arc ? rs * ps.du : ps.du * rs / rd;
  {
    int nfft;
    if (cols > (1 << 28)) {
      st = clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: geometry->cols: %d is too "
                      "many columns",
                      who, cols);
      goto fail;
    }
    nfft = fft_friendly(2 * cols);
    p->filter = clara_xcalloc((size_t)nfft / 2 + 1, sizeof(float), who);
    if (!p->filter) {
      st = CLARA_ERR_OUT_OF_MEMORY;
      goto fail;
    }
    design_filter(p->filter, nfft, cols, tau, arc, ps.du, opts->filter,
                  opts->cutoff);
    p->setup.nfft = nfft;
  }

  /* View weights: angular interval x redundancy. */
  p->view_weight =
      clara_xcalloc((size_t)views * (size_t)cols, sizeof(float), who);
  p->redundancy =
      clara_xcalloc((size_t)views * (size_t)cols, sizeof(float), who);
  if (!p->view_weight || !p->redundancy) {
    st = CLARA_ERR_OUT_OF_MEMORY;
    goto fail;
  }
  {
    double delta = 0.5 * (si.range - M_PI);
    int short_scan = si.turns < 1.0 && si.range > M_PI + 0.5 * si.range / views;
    if (short_scan && !parallel && delta < fan_half)
      delta = fan_half; /* within half a view of the minimum */
    if (short_scan && parallel && delta <= 0)
      short_scan = 0;
    for (int v = 0; v < views; v++) {
      for (int c = 0; c < cols; c++) {
        double u = ps.u0 + c * ps.du;
        double gam = parallel ? 0.0 : ray_gamma(g->kind, u, rd);
        double w;
        if (si.turns >= 1.0) {
          if (offset_w) {
            double x = parallel ? u : gam;
            double a = gmax > -gmin ? -gmin : gmax; /* overlap half-width */
            double t = gmax > -gmin ? (x + a) / a : (a - x) / a;
            if (t <= 0)
              w = 0;
            else if (t >= 2)
              w = 1;
            else {
              double s = sin(M_PI / 4 * t);
              w = s * s;
            }
            w /= si.turns;
          } else {
            w = 0.5 / si.turns;
          }
        } else if (short_scan) {
          w = parker(si.beta[v], gam, delta);
        } else {
          w = 1.0; /* a parallel scan of exactly 180 degrees */
        }
        p->redundancy[(size_t)v * cols + c] = (float)w;
        p->view_weight[(size_t)v * cols + c] = (float)(w * si.dtheta[v]);
      }
    }
    p->info.short_scan = short_scan;
  }

  /* Cosine pre-weights. */
  if (!parallel) {
    p->det_weight =
        clara_xcalloc((size_t)rows * (size_t)cols, sizeof(float), who);
    if (!p->det_weight) {
      st = CLARA_ERR_OUT_OF_MEMORY;
      goto fail;
    }
    for (int r = 0; r < rows; r++) {
      double vv = g->kind == CLARA_GEOM_CONE ? ps.v0 + r * ps.dv : 0.0;
      for (int c = 0; c < cols; c++) {
        double u = ps.u0 + c * ps.du;
        double w = arc ? cos(u) : rd / sqrt(rd * rd + u * u + vv * vv);
        p->det_weight[(size_t)r * cols + c] = (float)w;
      }
    }
  }

  p->setup.kind = g->kind;
  p->setup.views = views;
  p->setup.rows = rows;
  p->setup.cols = cols;
  p->setup.vol = *vol;
  p->setup.rs = rs;
  p->setup.rd = rd;
  p->setup.du = ps.du;
  p->setup.dv = ps.dv;
  p->setup.u0 = ps.u0;
  p->setup.v0 = ps.v0;
  p->setup.cos_t = p->cos_t;
  p->setup.sin_t = p->sin_t;
  p->setup.filter = p->filter;
  p->setup.view_weight = p->view_weight;
  p->setup.det_weight = p->det_weight;
  p->setup.fov_radius = (opts->flags & CLARA_FBP_NO_FOV_MASK) ? -1.0 : fov;
  p->hu = opts->mu_water > 0;
  if (opts->mu_water > 0) {
    p->setup.out_scale = 1000.0 / opts->mu_water;
    p->setup.out_offset = -1000.0;
  } else {
    p->setup.out_scale = 1.0;
    p->setup.out_offset = 0.0;
  }

  p->setup.gpu_texture = (opts->flags & CLARA_FBP_GPU_TEXTURE) != 0;

  p->info.fft_length = p->setup.nfft;
  p->info.scan_range = si.range;
  p->info.offset_weighting = offset_w;
  p->info.fov_radius = fov;
  p->info.fan_half_angle = fan_half;

  p->ctx = ctx;
  st = ctx->ops->fbp_create(ctx, &p->setup, &p->state);
  if (st != CLARA_OK)
    goto fail;
  clara_aligned_free(si.dtheta);
  clara_aligned_free(si.beta);
  *out = p;
  return CLARA_OK;

fail:
  clara_aligned_free(si.dtheta);
  clara_aligned_free(si.beta);
  if (p)
    p->state = NULL;
  free_plan(p);
  return st;
}

static clara_status check_exec(const clara_fbp_plan *plan, const void *proj,
                               const void *image, const char *who) {
  if (!plan)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: plan is NULL", who);
  if (!proj)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: projections is NULL", who);
  if (!image)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: image is NULL", who);
  return CLARA_OK;
}

/* Reconstructs and, with a denoiser attached, denoises. On a backend with
 * device memory the projections go up once and the image comes down once:
 * the reconstruction feeds the denoiser on the device. */
static clara_status execute(const clara_fbp_plan *plan, const float *proj,
                            float *image, clara_fbp_timing *timing) {
  const clara_context *ctx = plan->ctx;
  const clara_backend_ops *ops = ctx->ops;
  const clara_volume *v = &plan->setup.vol;
  clara_status st;
  if (!plan->denoiser)
    return ops->fbp_execute(ctx, &plan->setup, plan->state, proj, image,
                            timing);
  if (ops->fbp_execute_device && ops->device_alloc &&
      clara_nn_has_device(plan->denoiser)) {
    size_t pbytes = (size_t)plan->setup.views * (size_t)plan->setup.rows *
                    (size_t)plan->setup.cols * sizeof(float);
    size_t ibytes = (size_t)v->nx * (size_t)v->ny * (size_t)v->nz *
                    sizeof(float);
    void *d_proj = NULL, *d_image = NULL;
    st = ops->device_alloc(ctx, pbytes, &d_proj);
    if (st == CLARA_OK)
      st = ops->device_alloc(ctx, ibytes, &d_image);
    if (st == CLARA_OK)
      st = ops->copy_to_device(ctx, d_proj, proj, pbytes);
    if (st == CLARA_OK)
      st = ops->fbp_execute_device(ctx, &plan->setup, plan->state, d_proj,
                                   d_image, timing);
    if (st == CLARA_OK)
      st = clara_nn_apply_device(plan->denoiser, d_image, v->nx, v->ny, v->nz);
    if (st == CLARA_OK)
      st = ops->copy_to_host(ctx, image, d_image, ibytes);
    if (d_proj)
      ops->device_free(ctx, d_proj);
    if (d_image)
      ops->device_free(ctx, d_image);
    if (st != CLARA_ERR_OUT_OF_MEMORY)
      return st;
    /* Device memory too small for the whole volume and its projections at
     * once: go through the host, where each stage splits its own work. */
    clara_clear_error();
  }
  st = ops->fbp_execute(ctx, &plan->setup, plan->state, proj, image, timing);
  if (st == CLARA_OK)
    st = clara_nn_apply_host(plan->denoiser, image, v->nx, v->ny, v->nz);
  return st;
}

CLARA_API clara_status clara_fbp_execute(const clara_fbp_plan *plan,
                                         const float *projections,
                                         float *image) {
  clara_status st = check_exec(plan, projections, image, "clara_fbp_execute");
  if (st != CLARA_OK)
    return st;
  return execute(plan, projections, image, NULL);
}

CLARA_API clara_status clara_fbp_execute_timed(const clara_fbp_plan *plan,
                                               const float *projections,
                                               float *image,
                                               clara_fbp_timing *timing) {
  clara_status st =
      check_exec(plan, projections, image, "clara_fbp_execute_timed");
  if (st != CLARA_OK)
    return st;
  if (!timing)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "clara_fbp_execute_timed: timing is NULL");
  memset(timing, 0, sizeof *timing);
  return execute(plan, projections, image, timing);
}

CLARA_API clara_status clara_fbp_execute_device(const clara_fbp_plan *plan,
                                                const float *d_projections,
                                                float *d_image) {
  const clara_volume *v;
  clara_status st =
      check_exec(plan, d_projections, d_image, "clara_fbp_execute_device");
  if (st != CLARA_OK)
    return st;
  if (!plan->ctx->ops->fbp_execute_device)
    return clara_fail(CLARA_ERR_UNSUPPORTED,
                      "clara_fbp_execute_device: the plan runs on the %s "
                      "backend, which has no device memory; device pointers "
                      "need a context with backend cuda",
                      plan->ctx->ops->name);
  st = plan->ctx->ops->fbp_execute_device(plan->ctx, &plan->setup, plan->state,
                                          d_projections, d_image, NULL);
  v = &plan->setup.vol;
  if (st == CLARA_OK && plan->denoiser)
    st = clara_nn_apply_device(plan->denoiser, d_image, v->nx, v->ny, v->nz);
  return st;
}

CLARA_API clara_status clara_fbp_plan_set_denoiser(clara_fbp_plan *plan,
                                                   clara_denoiser *d) {
  static const char who[] = "clara_fbp_plan_set_denoiser";
  int rf;
  if (!plan)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: plan is NULL", who);
  if (d) {
    const clara_volume *v = &plan->setup.vol;
    if (clara_nn_modality(d) != CLARA_MODALITY_CT)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: the model is for %s, the plan reconstructs CT; "
                        "load a CT model",
                        who, clara_modality_name(clara_nn_modality(d)));
    if (clara_nn_context(d) != plan->ctx)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: the denoiser was loaded on another context than "
                        "the plan's; load it on the plan's context",
                        who);
    if (!plan->hu)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: CT models work in Hounsfield units, but the plan "
                        "outputs mu (1/mm); create the plan with "
                        "opts->mu_water > 0",
                        who);
    rf = clara_nn_receptive_field(d);
    if (v->nx < rf || v->ny < rf)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: the plan's %d x %d slices are smaller than the "
                        "model's receptive field (%d x %d)",
                        who, v->nx, v->ny, rf, rf);
  }
  clara_nn_release(plan->denoiser);
  plan->denoiser = clara_nn_retain(d);
  return CLARA_OK;
}

CLARA_API void clara_fbp_plan_destroy(clara_fbp_plan *plan) { free_plan(plan); }

CLARA_API clara_status clara_fbp_plan_info(const clara_fbp_plan *plan,
                                           clara_fbp_info *info) {
  if (!plan || !info)
    return clara_fail(CLARA_ERR_INVALID_ARG, "clara_fbp_plan_info: %s is NULL",
                      !plan ? "plan" : "info");
  *info = plan->info;
  return CLARA_OK;
}

CLARA_API clara_status clara_fbp_plan_filter(const clara_fbp_plan *plan,
                                             float *response, int n) {
  int need;
  if (!plan || !response)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "clara_fbp_plan_filter: %s is NULL",
                      !plan ? "plan" : "response");
  need = plan->setup.nfft / 2 + 1;
  if (n < need)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "clara_fbp_plan_filter: n: %d values needed, got %d",
                      need, n);
  for (int k = 0; k < need; k++)
    response[k] = plan->filter[k] * (float)plan->setup.nfft;
  return CLARA_OK;
}

CLARA_API clara_status clara_fbp_plan_weight(const clara_fbp_plan *plan,
                                             int view, int col, float *weight) {
  if (!plan || !weight)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "clara_fbp_plan_weight: %s is NULL",
                      !plan ? "plan" : "weight");
  if (view < 0 || view >= plan->setup.views)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "clara_fbp_plan_weight: view: must be in [0, %d), got %d",
                      plan->setup.views, view);
  if (col < 0 || col >= plan->setup.cols)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "clara_fbp_plan_weight: col: must be in [0, %d), got %d",
                      plan->setup.cols, col);
  *weight = plan->redundancy[(size_t)view * plan->setup.cols + col];
  return CLARA_OK;
}
