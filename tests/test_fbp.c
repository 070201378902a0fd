/* test_fbp.c -- FBP/FDK against analytic phantoms, the filter, the
 * redundancy weights, and every bad input of the plan API. */
#include "clara_recon.h"

#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MSG_HAS(frag)                                                          \
  ck_assert_msg(strstr(clara_last_error(), (frag)) != NULL,                    \
                "message \"%s\" lacks \"%s\"", clara_last_error(), (frag))

static clara_context *cpu_ctx(int threads) {
  clara_context_options o;
  clara_context *ctx = NULL;
  clara_context_options_init(&o);
  o.backend = CLARA_BACKEND_CPU;
  o.threads = threads;
  ck_assert_int_eq(clara_context_create(&o, &ctx), CLARA_OK);
  return ctx;
}

static float *uniform_angles(int n, double start, double range) {
  float *a = malloc(sizeof *a * (size_t)n);
  for (int i = 0; i < n; i++)
    a[i] = (float)(start + range * i / n);
  return a;
}

/* The test setup: phantom of radius 100 mm (values 0.02 * Shepp-Logan) on
 * a 128 x 128 grid of 1.8 mm voxels (230 mm field). */
#define PH_RADIUS 100.0
#define PH_SCALE 0.02

typedef struct {
  double rmse;      /* relative to PH_SCALE, inside 0.9 * radius */
  double flat_mean; /* mean in a flat region, relative to the truth there */
} score;

/* Reconstructs the analytic projections of 'ph' and scores against its
 * rasterisation. Region: pixels within 0.85 radius of the centre; the flat
 * region is a disc of radius 8 mm at (0, -30) mm inside the brain. */
static score recon_score(const clara_ct_geometry *g, const clara_volume *vol,
                         const clara_phantom *ph, const clara_fbp_options *o) {
  clara_context *ctx = cpu_ctx(0);
  clara_fbp_plan *plan = NULL;
  size_t np = (size_t)g->views * g->rows * g->cols;
  size_t nv = (size_t)vol->nx * vol->ny * vol->nz;
  float *proj = malloc(np * sizeof(float));
  float *img = malloc(nv * sizeof(float));
  float *truth = malloc(nv * sizeof(float));
  double se = 0, n = 0, fr = 0, ft = 0;
  score s;
  ck_assert_int_eq(clara_phantom_project(ph, g, proj), CLARA_OK);
  ck_assert_int_eq(clara_phantom_rasterize(ph, vol, 4, truth), CLARA_OK);
  ck_assert_msg(clara_fbp_plan_create(ctx, g, vol, o, &plan) == CLARA_OK,
                "plan: %s", clara_last_error());
  ck_assert_int_eq(clara_fbp_execute(plan, proj, img), CLARA_OK);
  for (int iz = 0; iz < vol->nz; iz++) {
    double z = (iz - 0.5 * (vol->nz - 1)) * vol->voxel[2] + vol->center[2];
    if (fabs(z) > 0.25 * PH_RADIUS)
      continue; /* cone: score the slices near the mid-plane */
    for (int iy = 0; iy < vol->ny; iy++)
      for (int ix = 0; ix < vol->nx; ix++) {
        double x = (ix - 0.5 * (vol->nx - 1)) * vol->voxel[0];
        double y = (iy - 0.5 * (vol->ny - 1)) * vol->voxel[1];
        size_t k = ((size_t)iz * vol->ny + iy) * vol->nx + ix;
        double d = img[k] - truth[k];
        if (x * x + y * y < 0.85 * 0.85 * PH_RADIUS * PH_RADIUS) {
          se += d * d;
          n++;
        }
        if (x * x + (y + 30) * (y + 30) < 64) {
          fr += img[k];
          ft += truth[k];
        }
      }
  }
  s.rmse = sqrt(se / n) / PH_SCALE;
  s.flat_mean = fr / ft;
  clara_fbp_plan_destroy(plan);
  clara_context_destroy(ctx);
  free(proj);
  free(img);
  free(truth);
  return s;
}

static clara_ct_geometry make_geom(clara_geometry_kind kind, int views,
                                   int rows, int cols, float *angles) {
  clara_ct_geometry g;
  memset(&g, 0, sizeof g);
  g.kind = kind;
  g.views = views;
  g.rows = rows;
  g.cols = cols;
  g.angles = angles;
  g.source_to_iso = 500;
  g.source_to_detector = 900;
  /* cover +-125 mm at the isocentre */
  switch (kind) {
  case CLARA_GEOM_PARALLEL:
    g.det_spacing[1] = 250.0 / cols;
    break;
  case CLARA_GEOM_FAN_ARC:
    g.det_spacing[1] = 2 * asin(125.0 / 500) / cols;
    break;
  default:
    g.det_spacing[1] = 250.0 / cols * 900 / 500;
  }
  g.det_spacing[0] = kind == CLARA_GEOM_CONE ? 1.8 * 900 / 500 : 1.0;
  return g;
}

static clara_volume make_vol(int n, int nz) {
  clara_volume v;
  memset(&v, 0, sizeof v);
  v.nx = v.ny = n;
  v.nz = nz;
  v.voxel[0] = v.voxel[1] = v.voxel[2] = 230.0 / n;
  return v;
}

static void check_geometry(clara_geometry_kind kind, int views, double range,
                           double max_rmse) {
  int cone = kind == CLARA_GEOM_CONE;
  float *a = uniform_angles(views, 0.3, range);
  clara_ct_geometry g = make_geom(kind, views, cone ? 64 : 1, 256, a);
  /* CLARA_TEST_QUICK=1 (valgrind): cone reconstructs only the 16 central
   * slices (same positions, same detector), so the central 16 of the
   * slices scored in full are scored. */
  const char *quick = getenv("CLARA_TEST_QUICK");
  int cone_nz = quick && *quick && strcmp(quick, "0") != 0 ? 16 : 64;
  clara_volume vol = make_vol(128, cone ? cone_nz : 1);
  clara_phantom *ph = NULL;
  clara_fbp_options o;
  score s;
  clara_fbp_options_init(&o);
  o.filter = CLARA_FILTER_HANN;
  ck_assert_int_eq(
      clara_phantom_shepp_logan(cone ? 3 : 2, PH_RADIUS, PH_SCALE, &ph),
      CLARA_OK);
  s = recon_score(&g, &vol, ph, &o);
  fprintf(stderr, "%-9s views %d range %.0f deg: rmse %.4f flat %.4f\n",
          clara_geometry_name(kind), views, range * 180 / M_PI, s.rmse,
          s.flat_mean);
  ck_assert_msg(s.rmse < max_rmse, "%s: rmse %g >= %g",
                clara_geometry_name(kind), s.rmse, max_rmse);
  ck_assert_msg(fabs(s.flat_mean - 1) < 0.02, "%s: flat region mean %g",
                clara_geometry_name(kind), s.flat_mean);
  clara_phantom_destroy(ph);
  free(a);
}

START_TEST(parallel_half) {
  check_geometry(CLARA_GEOM_PARALLEL, 360, M_PI, 0.035);
}
END_TEST
START_TEST(parallel_full) {
  check_geometry(CLARA_GEOM_PARALLEL, 360, 2 * M_PI, 0.035);
}
END_TEST
START_TEST(parallel_overscan) {
  check_geometry(CLARA_GEOM_PARALLEL, 300, 1.4 * M_PI, 0.035);
}
END_TEST
START_TEST(fan_flat_full) {
  check_geometry(CLARA_GEOM_FAN_FLAT, 360, 2 * M_PI, 0.035);
}
END_TEST
START_TEST(fan_arc_full) {
  check_geometry(CLARA_GEOM_FAN_ARC, 360, 2 * M_PI, 0.035);
}
END_TEST
START_TEST(fan_flat_short) {
  /* 180 + fan (2 asin(125/500) = 28.96 deg) + a little */
  check_geometry(CLARA_GEOM_FAN_FLAT, 300, (180 + 30) * M_PI / 180, 0.035);
}
END_TEST
START_TEST(fan_arc_short) {
  check_geometry(CLARA_GEOM_FAN_ARC, 300, (180 + 30) * M_PI / 180, 0.035);
}
END_TEST
START_TEST(fan_flat_overscan) {
  check_geometry(CLARA_GEOM_FAN_FLAT, 300, 1.5 * M_PI, 0.035);
}
END_TEST
START_TEST(cone_full) { check_geometry(CLARA_GEOM_CONE, 360, 2 * M_PI, 0.035); }
END_TEST
START_TEST(cone_short) {
  check_geometry(CLARA_GEOM_CONE, 300, (180 + 30) * M_PI / 180, 0.035);
}
END_TEST

/* Views at irregular angles are weighted by their own intervals. */
START_TEST(irregular_angles) {
  int views = 360;
  float *a = malloc(sizeof *a * views);
  clara_ct_geometry g;
  clara_volume vol = make_vol(128, 1);
  clara_phantom *ph = NULL;
  clara_fbp_options o;
  score s;
  srand(7);
  for (int i = 0; i < views; i++) /* dense in one half, sparse in the other */
    a[i] =
        (float)(i < 240 ? M_PI * i / 240.0 : M_PI + M_PI * (i - 240) / 120.0);
  g = make_geom(CLARA_GEOM_FAN_FLAT, views, 1, 256, a);
  clara_fbp_options_init(&o);
  o.filter = CLARA_FILTER_HANN;
  ck_assert_int_eq(clara_phantom_shepp_logan(2, PH_RADIUS, PH_SCALE, &ph),
                   CLARA_OK);
  s = recon_score(&g, &vol, ph, &o);
  fprintf(stderr, "irregular: rmse %.4f flat %.4f\n", s.rmse, s.flat_mean);
  ck_assert_double_lt(s.rmse, 0.035);
  ck_assert_double_lt(fabs(s.flat_mean - 1), 0.02);
  clara_phantom_destroy(ph);
  free(a);
}
END_TEST

/* A half-fan detector: shifted by a third of its width, full turn. */
START_TEST(offset_detector) {
  int views = 360;
  float *a = uniform_angles(views, 0, 2 * M_PI);
  clara_ct_geometry g = make_geom(CLARA_GEOM_FAN_FLAT, views, 1, 192, a);
  clara_volume vol = make_vol(128, 1);
  clara_phantom *ph = NULL;
  clara_fbp_options o;
  clara_fbp_plan *plan = NULL;
  clara_context *ctx = cpu_ctx(0);
  clara_fbp_info info;
  score s;
  g.det_offset[1] = 0.7 * 192 * g.det_spacing[1] * 0.5; /* 70% of half */
  clara_fbp_options_init(&o);
  o.filter = CLARA_FILTER_HANN;
  ck_assert_int_eq(clara_fbp_plan_create(ctx, &g, &vol, &o, &plan), CLARA_OK);
  ck_assert_int_eq(clara_fbp_plan_info(plan, &info), CLARA_OK);
  ck_assert_int_eq(info.offset_weighting, 1);
  clara_fbp_plan_destroy(plan);
  ck_assert_int_eq(clara_phantom_shepp_logan(2, PH_RADIUS, PH_SCALE, &ph),
                   CLARA_OK);
  s = recon_score(&g, &vol, ph, &o);
  fprintf(stderr, "offset detector: rmse %.4f flat %.4f\n", s.rmse,
          s.flat_mean);
  ck_assert_double_lt(s.rmse,
                      0.065); /* truncated short side: see GEOMETRY.md */
  ck_assert_double_lt(fabs(s.flat_mean - 1), 0.02);
  /* Without the weights the overlap is counted twice: visibly wrong. */
  o.flags = CLARA_FBP_NO_OFFSET_WEIGHTS | CLARA_FBP_ALLOW_TRUNCATION;
  s = recon_score(&g, &vol, ph, &o);
  fprintf(stderr, "offset detector, unweighted: rmse %.4f\n", s.rmse);
  ck_assert_double_gt(s.rmse, 0.1);
  clara_phantom_destroy(ph);
  clara_context_destroy(ctx);
  free(a);
}
END_TEST

/* Redundant ray pairs of a Parker short scan sum to 1. Arc detector with
 * dgamma = 1 degree and views every 2 degrees, so that the conjugate of
 * (view v, col c) -- beta + 180 - 2 gamma, -gamma -- is a sample too. */
static void parker_pairs(int views) {
  int cols = 41, cm = 20, m = 90; /* pi = m * dbeta */
  double du = M_PI / 180.0;
  float *a = uniform_angles(views, 0.1, views * 2 * du);
  clara_ct_geometry g = make_geom(CLARA_GEOM_FAN_ARC, views, 1, cols, a);
  clara_volume vol = make_vol(64, 1);
  clara_context *ctx = cpu_ctx(1);
  clara_fbp_plan *plan = NULL;
  clara_fbp_info info;
  int pairs = 0, singles = 0;
  g.det_spacing[1] = du;
  vol.voxel[0] = vol.voxel[1] = 2.5; /* 160 mm < FOV 2 * 500 sin(20 deg) */
  ck_assert_msg(clara_fbp_plan_create(ctx, &g, &vol, NULL, &plan) == CLARA_OK,
                "%s", clara_last_error());
  ck_assert_int_eq(clara_fbp_plan_info(plan, &info), CLARA_OK);
  ck_assert_int_eq(info.short_scan, 1);
  for (int v = 0; v < views; v++)
    for (int c = 0; c < cols; c++) {
      int v2 = v + m - (c - cm), c2 = 2 * cm - c;
      int v3 = v - m - (c - cm); /* or the conjugate lies before */
      float w, w2;
      ck_assert_int_eq(clara_fbp_plan_weight(plan, v, c, &w), CLARA_OK);
      ck_assert(w >= 0 && w <= 1);
      if (v2 >= 0 && v2 < views) {
        ck_assert_int_eq(clara_fbp_plan_weight(plan, v2, c2, &w2), CLARA_OK);
        ck_assert_msg(fabs(w + w2 - 1) < 1e-5, "v %d c %d: %g + %g", v, c, w,
                      w2);
        pairs++;
      } else if (v3 < 0 || v3 >= views) {
        /* measured once: must carry full weight */
        ck_assert_msg(fabs(w - 1) < 1e-5, "single ray v %d c %d: %g", v, c, w);
        singles++;
      }
    }
  ck_assert_int_gt(pairs, 100);
  (void)singles;
  clara_fbp_plan_destroy(plan);
  clara_context_destroy(ctx);
  free(a);
}

START_TEST(parker_minimal) { parker_pairs(110); } /* 220 deg = 180 + 2*20 */
END_TEST
START_TEST(parker_overscan) { parker_pairs(140); } /* 280 deg */
END_TEST

/* Offset weights: column c and its mirror (-u) sum to the full-scan share. */
START_TEST(offset_weights_sum) {
  int views = 90, cols = 41;
  float *a = uniform_angles(views, 0, 2 * M_PI);
  clara_ct_geometry g = make_geom(CLARA_GEOM_PARALLEL, views, 1, cols, a);
  clara_volume vol = make_vol(16, 1);
  clara_context *ctx = cpu_ctx(1);
  clara_fbp_plan *plan = NULL;
  clara_fbp_options o;
  g.det_spacing[1] = 1.0;
  g.det_offset[1] = 10.0; /* u0 = -10: column c mirrors to 20 - c */
  vol.voxel[0] = vol.voxel[1] = 1.0;
  clara_fbp_options_init(&o);
  ck_assert_msg(clara_fbp_plan_create(ctx, &g, &vol, &o, &plan) == CLARA_OK,
                "%s", clara_last_error());
  for (int c = 0; c <= 20; c++) {
    float w1, w2;
    ck_assert_int_eq(clara_fbp_plan_weight(plan, 5, c, &w1), CLARA_OK);
    ck_assert_int_eq(clara_fbp_plan_weight(plan, 5, 20 - c, &w2), CLARA_OK);
    ck_assert_msg(fabs(w1 + w2 - 1) < 1e-6, "c %d: %g + %g", c, w1, w2);
  }
  for (int c = 21; c < cols; c++) {
    float w;
    ck_assert_int_eq(clara_fbp_plan_weight(plan, 5, c, &w), CLARA_OK);
    ck_assert_float_eq_tol(w, 1.0f, 1e-6f);
  }
  clara_fbp_plan_destroy(plan);
  clara_context_destroy(ctx);
  free(a);
}
END_TEST

/* The filter: DC equals the discrete kernel's sum, computed here
 * independently; the ramp reaches 1/(2 tau) at Nyquist; windows vanish
 * where they should; the response is 0 beyond the cutoff. */
START_TEST(filter_response) {
  int views = 180, cols = 100;
  float *a = uniform_angles(views, 0, M_PI);
  clara_ct_geometry g = make_geom(CLARA_GEOM_PARALLEL, views, 1, cols, a);
  clara_volume vol = make_vol(64, 1);
  clara_context *ctx = cpu_ctx(1);
  clara_fbp_options o;
  clara_fbp_plan *plan = NULL;
  clara_fbp_info info;
  float *r;
  double tau, dc = 0.25;
  g.det_spacing[1] = 2.5;
  tau = g.det_spacing[1];
  vol.voxel[0] = vol.voxel[1] = 3.5;
  for (int n = 1; n < cols; n += 2)
    dc -= 2.0 / (M_PI * M_PI * n * n);
  clara_fbp_options_init(&o);
  ck_assert_int_eq(clara_fbp_plan_create(ctx, &g, &vol, &o, &plan), CLARA_OK);
  ck_assert_int_eq(clara_fbp_plan_info(plan, &info), CLARA_OK);
  ck_assert_int_ge(info.fft_length, 2 * cols);
  r = malloc(sizeof *r * (size_t)(info.fft_length / 2 + 1));
  ck_assert_int_eq(clara_fbp_plan_filter(plan, r, 2), CLARA_ERR_INVALID_ARG);
  ck_assert_int_eq(clara_fbp_plan_filter(plan, r, info.fft_length / 2 + 1),
                   CLARA_OK);
  ck_assert_msg(fabs(r[0] - dc / tau) < 1e-6 / tau, "DC %g vs %g", r[0],
                dc / tau);
  ck_assert(r[0] > 0); /* the spatial-domain ramp keeps the DC term */
  ck_assert_msg(fabs(r[info.fft_length / 2] * tau - 0.5) < 0.01, "Nyquist %g",
                r[info.fft_length / 2] * tau);
  for (int k = 1; k <= info.fft_length / 2; k++)
    ck_assert_msg(r[k] > r[k - 1], "ramp not increasing at %d", k);
  clara_fbp_plan_destroy(plan);

  o.filter = CLARA_FILTER_HANN;
  ck_assert_int_eq(clara_fbp_plan_create(ctx, &g, &vol, &o, &plan), CLARA_OK);
  ck_assert_int_eq(clara_fbp_plan_filter(plan, r, info.fft_length / 2 + 1),
                   CLARA_OK);
  ck_assert(fabs(r[info.fft_length / 2]) < 1e-6);
  ck_assert(fabs(r[0] - dc / tau) < 1e-6 / tau);
  clara_fbp_plan_destroy(plan);

  o.filter = CLARA_FILTER_SHEPP_LOGAN;
  o.cutoff = 0.5;
  ck_assert_int_eq(clara_fbp_plan_create(ctx, &g, &vol, &o, &plan), CLARA_OK);
  ck_assert_int_eq(clara_fbp_plan_filter(plan, r, info.fft_length / 2 + 1),
                   CLARA_OK);
  for (int k = info.fft_length / 4 + 1; k <= info.fft_length / 2; k++)
    ck_assert_msg(r[k] == 0, "above cutoff at %d: %g", k, r[k]);
  ck_assert(r[info.fft_length / 8] > 0);
  clara_fbp_plan_destroy(plan);
  free(r);
  clara_context_destroy(ctx);
  free(a);
}
END_TEST

/* A centred disc reconstructs mirror-symmetric, and to its density. */
START_TEST(symmetry_and_level) {
  int views = 180, cols = 128;
  float *a = uniform_angles(views, 0, M_PI);
  clara_ct_geometry g = make_geom(CLARA_GEOM_PARALLEL, views, 1, cols, a);
  clara_volume vol = make_vol(96, 1);
  clara_ellipsoid e = {0.02, 80, 80, 80, 0, 0, 0, 0};
  clara_phantom *ph = NULL;
  clara_context *ctx = cpu_ctx(0);
  clara_fbp_plan *plan = NULL;
  float *proj = malloc(sizeof(float) * views * cols);
  float *img = malloc(sizeof(float) * 96 * 96);
  double mean = 0;
  int n = 0;
  ck_assert_int_eq(clara_phantom_create(2, &e, 1, &ph), CLARA_OK);
  ck_assert_int_eq(clara_phantom_project(ph, &g, proj), CLARA_OK);
  ck_assert_int_eq(clara_fbp_plan_create(ctx, &g, &vol, NULL, &plan), CLARA_OK);
  ck_assert_int_eq(clara_fbp_execute(plan, proj, img), CLARA_OK);
  for (int iy = 0; iy < 96; iy++)
    for (int ix = 0; ix < 96; ix++) {
      float p = img[iy * 96 + ix], q = img[iy * 96 + 95 - ix],
            t = img[(95 - iy) * 96 + ix];
      ck_assert_msg(fabs(p - q) < 1e-4 * 0.02 && fabs(p - t) < 1e-4 * 0.02,
                    "asymmetric at %d,%d: %g %g %g", ix, iy, p, q, t);
      if (hypot(ix - 47.5, iy - 47.5) < 20) {
        mean += p;
        n++;
      }
    }
  mean /= n;
  ck_assert_msg(fabs(mean / 0.02 - 1) < 0.005, "disc level %g", mean / 0.02);
  clara_fbp_plan_destroy(plan);
  clara_phantom_destroy(ph);
  clara_context_destroy(ctx);
  free(proj);
  free(img);
  free(a);
}
END_TEST

/* Multi-slice data: a stack of rows reconstructs slice by slice, each
 * exactly as the same sinogram alone would. */
START_TEST(multi_slice) {
  int views = 120, cols = 128, rows = 3;
  float *a = uniform_angles(views, 0, 2 * M_PI);
  clara_ct_geometry g1 = make_geom(CLARA_GEOM_FAN_ARC, views, 1, cols, a);
  clara_ct_geometry g3 = make_geom(CLARA_GEOM_FAN_ARC, views, rows, cols, a);
  clara_volume v1 = make_vol(64, 1), v3 = make_vol(64, rows);
  clara_context *ctx = cpu_ctx(2);
  clara_fbp_plan *p1 = NULL, *p3 = NULL;
  size_t line = (size_t)cols, slice = 64 * 64;
  float *stack = malloc(sizeof(float) * views * rows * cols);
  float *single = malloc(sizeof(float) * views * cols);
  float *img3 = malloc(sizeof(float) * slice * rows);
  float *img1 = malloc(sizeof(float) * slice);
  srand(3);
  for (size_t i = 0; i < (size_t)views * rows * cols; i++)
    stack[i] = (float)rand() / RAND_MAX;
  ck_assert_int_eq(clara_fbp_plan_create(ctx, &g1, &v1, NULL, &p1), CLARA_OK);
  ck_assert_int_eq(clara_fbp_plan_create(ctx, &g3, &v3, NULL, &p3), CLARA_OK);
  ck_assert_int_eq(clara_fbp_execute(p3, stack, img3), CLARA_OK);
  for (int r = 0; r < rows; r++) {
    for (int v = 0; v < views; v++)
      memcpy(single + v * line, stack + ((size_t)v * rows + r) * line,
             line * sizeof(float));
    ck_assert_int_eq(clara_fbp_execute(p1, single, img1), CLARA_OK);
    ck_assert_msg(memcmp(img1, img3 + r * slice, slice * sizeof(float)) == 0,
                  "slice %d differs from its single-row reconstruction", r);
  }
  clara_fbp_plan_destroy(p1);
  clara_fbp_plan_destroy(p3);
  clara_context_destroy(ctx);
  free(stack);
  free(single);
  free(img3);
  free(img1);
  free(a);
}
END_TEST

/* Hounsfield output: a water disc reads 0 HU, air outside -1000 HU. */
START_TEST(hounsfield) {
  int views = 180, cols = 128;
  float *a = uniform_angles(views, 0, M_PI);
  clara_ct_geometry g = make_geom(CLARA_GEOM_PARALLEL, views, 1, cols, a);
  clara_volume vol = make_vol(96, 1);
  clara_ellipsoid e = {0.0192, 60, 60, 60, 0, 0, 0, 0};
  clara_phantom *ph = NULL;
  clara_context *ctx = cpu_ctx(0);
  clara_fbp_plan *plan = NULL;
  clara_fbp_options o;
  float *proj = malloc(sizeof(float) * views * cols);
  float *img = malloc(sizeof(float) * 96 * 96);
  clara_fbp_options_init(&o);
  o.mu_water = 0.0192;
  o.filter = CLARA_FILTER_HAMMING;
  ck_assert_int_eq(clara_phantom_create(2, &e, 1, &ph), CLARA_OK);
  ck_assert_int_eq(clara_phantom_project(ph, &g, proj), CLARA_OK);
  ck_assert_int_eq(clara_fbp_plan_create(ctx, &g, &vol, &o, &plan), CLARA_OK);
  ck_assert_int_eq(clara_fbp_execute(plan, proj, img), CLARA_OK);
  ck_assert_msg(fabs(img[48 * 96 + 48]) < 15, "water %g HU", img[48 * 96 + 48]);
  ck_assert_msg(fabs(img[48 * 96 + 2] + 1000) < 15, "air %g HU",
                img[48 * 96 + 2]);
  clara_fbp_plan_destroy(plan);
  clara_phantom_destroy(ph);
  clara_context_destroy(ctx);
  free(proj);
  free(img);
  free(a);
}
END_TEST

/* Results do not depend on the thread count, and concurrent executes on
 * one plan give the serial answer bit for bit. */
typedef struct {
  const clara_fbp_plan *plan;
  const float *proj;
  float *img;
  clara_status st;
} exec_arg;

static void *exec_thread(void *p) {
  exec_arg *e = p;
  e->st = clara_fbp_execute(e->plan, e->proj, e->img);
  return NULL;
}

START_TEST(deterministic_and_concurrent) {
  int views = 120, cols = 96, rows = 24, n = 48;
  float *a = uniform_angles(views, 0, 2 * M_PI);
  clara_ct_geometry g = make_geom(CLARA_GEOM_CONE, views, rows, cols, a);
  clara_volume vol = make_vol(n, 20);
  clara_phantom *ph = NULL;
  clara_context *c1 = cpu_ctx(1), *c3 = cpu_ctx(3);
  clara_fbp_plan *p1 = NULL, *p3 = NULL;
  size_t nv = (size_t)n * n * 20;
  float *proj = malloc(sizeof(float) * views * rows * cols);
  float *ref = malloc(sizeof(float) * nv);
  pthread_t th[4];
  exec_arg args[4];
  g.det_spacing[1] = 250.0 / cols * 900 / 500;
  g.det_spacing[0] = 250.0 / cols * 900 / 500;
  ck_assert_int_eq(clara_phantom_shepp_logan(3, 100, 0.02, &ph), CLARA_OK);
  ck_assert_int_eq(clara_phantom_project(ph, &g, proj), CLARA_OK);
  ck_assert_int_eq(clara_fbp_plan_create(c1, &g, &vol, NULL, &p1), CLARA_OK);
  ck_assert_int_eq(clara_fbp_plan_create(c3, &g, &vol, NULL, &p3), CLARA_OK);
  ck_assert_int_eq(clara_fbp_execute(p1, proj, ref), CLARA_OK);
  for (int t = 0; t < 4; t++) {
    args[t].plan = p3;
    args[t].proj = proj;
    args[t].img = malloc(sizeof(float) * nv);
    pthread_create(&th[t], NULL, exec_thread, &args[t]);
  }
  for (int t = 0; t < 4; t++) {
    pthread_join(th[t], NULL);
    ck_assert_int_eq(args[t].st, CLARA_OK);
    ck_assert_msg(memcmp(args[t].img, ref, sizeof(float) * nv) == 0,
                  "thread %d differs from the serial result", t);
    free(args[t].img);
  }
  clara_fbp_plan_destroy(p1);
  clara_fbp_plan_destroy(p3);
  clara_context_destroy(c1);
  clara_context_destroy(c3);
  clara_phantom_destroy(ph);
  free(proj);
  free(ref);
  free(a);
}
END_TEST

static int cancel_at_half(const char *stage, double f, void *user) {
  int *calls = user;
  (*calls)++;
  ck_assert_ptr_nonnull(stage);
  ck_assert(f >= 0 && f <= 1);
  return f >= 0.5;
}

START_TEST(progress_and_cancel) {
  int views = 90, calls = 0;
  float *a = uniform_angles(views, 0, M_PI);
  clara_ct_geometry g = make_geom(CLARA_GEOM_PARALLEL, views, 1, 64, a);
  clara_volume vol = make_vol(48, 1);
  clara_context_options co;
  clara_context *ctx = NULL;
  clara_fbp_plan *plan = NULL;
  float *proj = calloc((size_t)views * 64, sizeof(float));
  float *img = malloc(sizeof(float) * 48 * 48);
  clara_context_options_init(&co);
  co.backend = CLARA_BACKEND_CPU;
  co.threads = 1;
  co.progress = cancel_at_half;
  co.progress_user = &calls;
  ck_assert_int_eq(clara_context_create(&co, &ctx), CLARA_OK);
  ck_assert_int_eq(clara_fbp_plan_create(ctx, &g, &vol, NULL, &plan), CLARA_OK);
  ck_assert_int_eq(clara_fbp_execute(plan, proj, img), CLARA_ERR_CANCELLED);
  MSG_HAS("cancelled");
  ck_assert_int_gt(calls, 1);
  clara_fbp_plan_destroy(plan);
  clara_context_destroy(ctx);
  free(proj);
  free(img);
  free(a);
}
END_TEST

/* The AVX-512 kernels (chosen at plan time where the CPU has them) against
 * the portable ones (forced by CLARA_RECON_CPU_KERNELS=portable when the
 * plan is made), on random data, so that a wrong lane cannot hide inside a
 * phantom's RMSE bound. Where the CPU has no AVX-512 both plans run the
 * portable kernels and agree exactly. Includes a volume larger than the
 * detector's reach (clamped windows) and widths that are not multiples of
 * 16 (scalar tails). */
static void kernels_agree(clara_geometry_kind kind, int n, double voxel) {
  int cone = kind == CLARA_GEOM_CONE;
  int views = 97, rows = cone ? 24 : 3, cols = 83;
  float *a = uniform_angles(views, 0.1, 2 * M_PI);
  clara_ct_geometry g = make_geom(kind, views, rows, cols, a);
  clara_volume vol = make_vol(n, cone ? 21 : rows);
  clara_context *ctx = cpu_ctx(2);
  clara_fbp_plan *fast = NULL, *port = NULL;
  clara_fbp_options o;
  size_t np = (size_t)views * rows * cols, nv = (size_t)n * n * vol.nz;
  float *proj = malloc(np * sizeof(float));
  float *i1 = malloc(nv * sizeof(float)), *i2 = malloc(nv * sizeof(float));
  double num = 0, den = 0;
  if (cone)
    g.det_spacing[0] = 2.0;
  vol.voxel[0] = vol.voxel[1] = voxel;
  srand(5);
  for (size_t i = 0; i < np; i++)
    proj[i] = (float)rand() / RAND_MAX;
  clara_fbp_options_init(&o);
  o.flags = CLARA_FBP_ALLOW_TRUNCATION | CLARA_FBP_NO_FOV_MASK;
  unsetenv("CLARA_RECON_CPU_KERNELS");
  ck_assert_int_eq(clara_fbp_plan_create(ctx, &g, &vol, &o, &fast), CLARA_OK);
  setenv("CLARA_RECON_CPU_KERNELS", "portable", 1);
  ck_assert_int_eq(clara_fbp_plan_create(ctx, &g, &vol, &o, &port), CLARA_OK);
  unsetenv("CLARA_RECON_CPU_KERNELS");
  ck_assert_int_eq(clara_fbp_execute(fast, proj, i1), CLARA_OK);
  ck_assert_int_eq(clara_fbp_execute(port, proj, i2), CLARA_OK);
  for (size_t i = 0; i < nv; i++) {
    num += ((double)i1[i] - i2[i]) * ((double)i1[i] - i2[i]);
    den += (double)i2[i] * i2[i];
  }
  fprintf(stderr, "%-9s %dx%d voxel %.2f: AVX-512 vs portable rel L2 %.2e\n",
          clara_geometry_name(kind), n, n, voxel, sqrt(num / den));
  ck_assert_msg(den > 0, "empty reconstruction");
  ck_assert_msg(sqrt(num / den) < 1e-5, "%s: kernels differ, rel L2 %g",
                clara_geometry_name(kind), sqrt(num / den));
  clara_fbp_plan_destroy(fast);
  clara_fbp_plan_destroy(port);
  clara_context_destroy(ctx);
  free(proj);
  free(i1);
  free(i2);
  free(a);
}

START_TEST(avx512_matches_portable) {
  const clara_geometry_kind kinds[] = {CLARA_GEOM_PARALLEL, CLARA_GEOM_FAN_FLAT,
                                       CLARA_GEOM_FAN_ARC, CLARA_GEOM_CONE};
  for (int k = 0; k < 4; k++) {
    kernels_agree(kinds[k], 53, 230.0 / 53);       /* tails, fits */
    kernels_agree(kinds[k], 64, 1.3 * 230.0 / 64); /* beyond the detector */
    kernels_agree(kinds[k], 40, 0.4); /* fine voxels: narrow windows */
  }
}
END_TEST

/* ---- Bad input ------------------------------------------------------------
 */

START_TEST(bad_inputs) {
  int views = 90;
  float *a = uniform_angles(views, 0, 2 * M_PI);
  clara_ct_geometry g0 = make_geom(CLARA_GEOM_FAN_FLAT, views, 1, 128, a), g;
  clara_volume v0 = make_vol(64, 1), v;
  clara_context *ctx = cpu_ctx(1);
  clara_fbp_plan *plan = (clara_fbp_plan *)&g; /* must be reset to NULL */
  clara_fbp_options o;
  float img[4], proj[4];

#define EXPECT(st, frag)                                                       \
  do {                                                                         \
    ck_assert_int_eq(clara_fbp_plan_create(ctx, &g, &v, &o, &plan), (st));     \
    ck_assert_ptr_null(plan);                                                  \
    MSG_HAS(frag);                                                             \
    g = g0;                                                                    \
    v = v0;                                                                    \
    clara_fbp_options_init(&o);                                                \
  } while (0)

  g = g0;
  v = v0;
  clara_fbp_options_init(&o);
  ck_assert_int_eq(clara_fbp_plan_create(NULL, &g, &v, &o, &plan),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("ctx");
  ck_assert_int_eq(clara_fbp_plan_create(ctx, NULL, &v, &o, &plan),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("geom");
  ck_assert_int_eq(clara_fbp_plan_create(ctx, &g, NULL, &o, &plan),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("vol");
  ck_assert_int_eq(clara_fbp_plan_create(ctx, &g, &v, &o, NULL),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("out");

  g.views = 0;
  EXPECT(CLARA_ERR_INVALID_ARG, "views");
  g.views = -5;
  EXPECT(CLARA_ERR_INVALID_ARG, "got -5");
  g.cols = 0;
  EXPECT(CLARA_ERR_INVALID_ARG, "cols");
  g.rows = -1;
  EXPECT(CLARA_ERR_INVALID_ARG, "rows");
  g.views = 1 << 30;
  g.rows = 1 << 30;
  g.cols = 1 << 30;
  EXPECT(CLARA_ERR_INVALID_ARG, "overflow");
  g.angles = NULL;
  EXPECT(CLARA_ERR_INVALID_ARG, "angles");
  {
    float bad[90];
    memcpy(bad, a, sizeof bad);
    bad[17] = NAN;
    g.angles = bad;
    EXPECT(CLARA_ERR_INVALID_ARG, "angles[17]");
    bad[17] = INFINITY;
    g.angles = bad;
    EXPECT(CLARA_ERR_INVALID_ARG, "angles[17]");
  }
  g.source_to_iso = NAN;
  EXPECT(CLARA_ERR_INVALID_ARG, "source_to_iso");
  g.source_to_detector = 400; /* < source_to_iso */
  EXPECT(CLARA_ERR_INVALID_ARG, "source_to_detector");
  g.det_spacing[1] = -1;
  EXPECT(CLARA_ERR_INVALID_ARG, "det_spacing[1]");
  g.det_offset[0] = INFINITY;
  EXPECT(CLARA_ERR_INVALID_ARG, "det_offset[0]");
  g.kind = (clara_geometry_kind)9;
  EXPECT(CLARA_ERR_INVALID_ARG, "kind");
  v.nx = 0;
  EXPECT(CLARA_ERR_INVALID_ARG, "nx=0");
  v.voxel[1] = NAN;
  EXPECT(CLARA_ERR_INVALID_ARG, "voxel[1]");
  v.nz = 3; /* fan data with 1 row is one slice */
  EXPECT(CLARA_ERR_INVALID_ARG, "nz");
  v.voxel[0] = v.voxel[1] = 12; /* corners 543 mm out: beyond the orbit */
  EXPECT(CLARA_ERR_INVALID_ARG, "source orbit");
  v.voxel[0] = v.voxel[1] = 4.5; /* 288 mm > 250 mm field of view */
  EXPECT(CLARA_ERR_INVALID_ARG, "field of view");
  o.cutoff = 0;
  EXPECT(CLARA_ERR_INVALID_ARG, "cutoff");
  o.cutoff = NAN;
  EXPECT(CLARA_ERR_INVALID_ARG, "cutoff");
  o.filter = (clara_filter)42;
  EXPECT(CLARA_ERR_INVALID_ARG, "filter");
  o.flags = 1u << 20;
  EXPECT(CLARA_ERR_INVALID_ARG, "flags");
  o.mu_water = -1;
  EXPECT(CLARA_ERR_INVALID_ARG, "mu_water");
  {
    float short_a[90];
    for (int i = 0; i < 90; i++)
      short_a[i] = (float)(i * M_PI / 90); /* 180 deg < 180 + fan */
    g.angles = short_a;
    EXPECT(CLARA_ERR_INVALID_ARG, "180 degrees plus the fan angle");
    g.angles = short_a;
    g.det_offset[1] = 40; /* half-fan detector needs a full turn */
    EXPECT(CLARA_ERR_UNSUPPORTED, "full turn");
  }
  g.views = 1;
  EXPECT(CLARA_ERR_INVALID_ARG, "at least 2 views");

  /* Truncation is allowed on request. */
  v.voxel[0] = v.voxel[1] = 4.5;
  o.flags = CLARA_FBP_ALLOW_TRUNCATION;
  ck_assert_int_eq(clara_fbp_plan_create(ctx, &g, &v, &o, &plan), CLARA_OK);
  ck_assert_int_eq(clara_fbp_execute(NULL, proj, img), CLARA_ERR_INVALID_ARG);
  MSG_HAS("plan");
  ck_assert_int_eq(clara_fbp_execute(plan, NULL, img), CLARA_ERR_INVALID_ARG);
  MSG_HAS("projections");
  ck_assert_int_eq(clara_fbp_execute(plan, proj, NULL), CLARA_ERR_INVALID_ARG);
  MSG_HAS("image");
  clara_fbp_plan_destroy(plan);
  clara_fbp_plan_destroy(NULL);
  clara_context_destroy(ctx);
  free(a);
#undef EXPECT
}
END_TEST

/* The device entry points on a CPU context, the timed execute, and the
 * GPU-only flag (accepted, no effect on the CPU). */
START_TEST(device_and_timing_on_cpu) {
  int views = 60;
  float *a = uniform_angles(views, 0, M_PI);
  clara_ct_geometry g = make_geom(CLARA_GEOM_PARALLEL, views, 1, 64, a);
  clara_volume vol = make_vol(48, 1);
  clara_context *ctx = cpu_ctx(2);
  clara_fbp_plan *p = NULL, *pt = NULL;
  clara_fbp_options o;
  clara_fbp_timing t;
  float *proj = malloc(sizeof(float) * views * 64);
  float *i1 = malloc(sizeof(float) * 48 * 48),
        *i2 = malloc(sizeof(float) * 48 * 48);
  for (int i = 0; i < views * 64; i++)
    proj[i] = (float)(i % 7);
  clara_fbp_options_init(&o);
  ck_assert_int_eq(clara_fbp_plan_create(ctx, &g, &vol, &o, &p), CLARA_OK);
  o.flags = CLARA_FBP_GPU_TEXTURE;
  ck_assert_int_eq(clara_fbp_plan_create(ctx, &g, &vol, &o, &pt), CLARA_OK);
  ck_assert_int_eq(clara_fbp_execute_device(p, proj, i1),
                   CLARA_ERR_UNSUPPORTED);
  MSG_HAS("cpu backend");
  ck_assert_int_eq(clara_fbp_execute_device(p, NULL, i1),
                   CLARA_ERR_INVALID_ARG);
  ck_assert_int_eq(clara_fbp_execute_timed(p, proj, i1, NULL),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("timing");
  ck_assert_int_eq(clara_fbp_execute_timed(p, proj, i1, &t), CLARA_OK);
  ck_assert(t.total_ms > 0 && t.backproject_ms > 0);
  ck_assert_int_eq(t.slabs, 1);
  ck_assert(t.upload_ms == 0 && t.download_ms == 0);
  ck_assert_int_eq(clara_fbp_execute(pt, proj, i2), CLARA_OK);
  ck_assert(memcmp(i1, i2, sizeof(float) * 48 * 48) == 0);
  clara_fbp_plan_destroy(p);
  clara_fbp_plan_destroy(pt);
  clara_context_destroy(ctx);
  free(proj);
  free(i1);
  free(i2);
  free(a);
}
END_TEST

START_TEST(names_and_parsing) {
  clara_filter f;
  clara_geometry_kind k;
  ck_assert_int_eq(clara_filter_parse("hann", &f), CLARA_OK);
  ck_assert_int_eq(f, CLARA_FILTER_HANN);
  ck_assert_int_eq(clara_filter_parse("ramp", &f), CLARA_OK);
  ck_assert_int_eq(f, CLARA_FILTER_RAM_LAK);
  ck_assert_int_eq(clara_filter_parse("gauss", &f), CLARA_ERR_INVALID_ARG);
  MSG_HAS("gauss");
  ck_assert_int_eq(clara_filter_parse(NULL, &f), CLARA_ERR_INVALID_ARG);
  for (int i = 0; i <= CLARA_FILTER_HANN; i++) {
    ck_assert_int_eq(clara_filter_parse(clara_filter_name((clara_filter)i), &f),
                     CLARA_OK);
    ck_assert_int_eq(f, i);
  }
  ck_assert_ptr_null(clara_filter_name((clara_filter)99));
  for (int i = 0; i <= CLARA_GEOM_CONE; i++) {
    ck_assert_int_eq(
        clara_geometry_parse(clara_geometry_name((clara_geometry_kind)i), &k),
        CLARA_OK);
    ck_assert_int_eq(k, i);
  }
  ck_assert_int_eq(clara_geometry_parse("helical", &k), CLARA_ERR_INVALID_ARG);
  MSG_HAS("helical");
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("fbp");
  TCase *t = tcase_create("phantoms");
  tcase_set_timeout(t, 600);
  tcase_add_test(t, parallel_half);
  tcase_add_test(t, parallel_full);
  tcase_add_test(t, parallel_overscan);
  tcase_add_test(t, fan_flat_full);
  tcase_add_test(t, fan_arc_full);
  tcase_add_test(t, fan_flat_short);
  tcase_add_test(t, fan_arc_short);
  tcase_add_test(t, fan_flat_overscan);
  tcase_add_test(t, cone_full);
  tcase_add_test(t, cone_short);
  tcase_add_test(t, irregular_angles);
  tcase_add_test(t, offset_detector);
  tcase_add_test(t, symmetry_and_level);
  tcase_add_test(t, hounsfield);
  tcase_add_test(t, multi_slice);
  tcase_add_test(t, avx512_matches_portable);
  suite_add_tcase(s, t);
  t = tcase_create("weights");
  tcase_add_test(t, parker_minimal);
  tcase_add_test(t, parker_overscan);
  tcase_add_test(t, offset_weights_sum);
  tcase_add_test(t, filter_response);
  suite_add_tcase(s, t);
  t = tcase_create("api");
  tcase_set_timeout(t, 600);
  tcase_add_test(t, deterministic_and_concurrent);
  tcase_add_test(t, progress_and_cancel);
  tcase_add_test(t, bad_inputs);
  tcase_add_test(t, names_and_parsing);
  tcase_add_test(t, device_and_timing_on_cpu);
  suite_add_tcase(s, t);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(suite());
  int failed;
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
