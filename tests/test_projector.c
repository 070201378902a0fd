/* test_projector.c -- the Joseph projector: adjoint identity, agreement
 * with exact line integrals of an analytic phantom, and bad input. */
#include "clara_recon.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static clara_context *cpu_ctx(void) {
  clara_context_options o;
  clara_context *ctx = NULL;
  clara_context_options_init(&o);
  o.backend = CLARA_BACKEND_CPU;
  ck_assert_int_eq(clara_context_create(&o, &ctx), CLARA_OK);
  return ctx;
}

static void setup(clara_geometry_kind kind, int n, int views,
                  clara_ct_geometry *g, clara_volume *v, float **angles) {
  int cone = kind == CLARA_GEOM_CONE;
  *angles = malloc(sizeof(float) * views);
  for (int i = 0; i < views; i++)
    (*angles)[i] = (float)(0.2 + 2 * M_PI * i / views);
  memset(g, 0, sizeof *g);
  memset(v, 0, sizeof *v);
  g->kind = kind;
  g->views = views;
  g->cols = (int)(1.5 * n);
  g->rows = cone ? n : 2; /* two independent slices for 2D geometries */
  g->angles = *angles;
  g->source_to_iso = 400;
  g->source_to_detector = 700;
  g->det_spacing[1] = kind == CLARA_GEOM_PARALLEL ? 250.0 / g->cols
                      : kind == CLARA_GEOM_FAN_ARC
                          ? 2 * asin(125.0 / 400) / g->cols
                          : 250.0 / g->cols * 700 / 400;
  g->det_spacing[0] = cone ? 200.0 / n * 700 / 400 : 1;
  g->det_offset[1] = 0.37 * g->det_spacing[1]; /* off-grid on purpose */
  v->nx = v->ny = n;
  v->nz = cone ? n : 2;
  v->voxel[0] = v->voxel[1] = 200.0 / n;
  v->voxel[2] = 200.0 / n;
  v->center[0] = 3.0; /* off-centre volume */
}

static double frand(void) { return rand() / (double)RAND_MAX - 0.5; }

static void adjoint(clara_geometry_kind kind) {
  clara_ct_geometry g;
  clara_volume v;
  float *a;
  clara_context *ctx = cpu_ctx();
  clara_projector *p = NULL;
  size_t nvox, nproj;
  float *x, *y, *ax, *aty;
  double lhs = 0, rhs = 0;
  setup(kind, kind == CLARA_GEOM_CONE ? 24 : 40, 30, &g, &v, &a);
  nvox = (size_t)v.nx * v.ny * v.nz;
  nproj = (size_t)g.views * g.rows * g.cols;
  x = malloc(nvox * sizeof *x);
  aty = malloc(nvox * sizeof *aty);
  y = malloc(nproj * sizeof *y);
  ax = malloc(nproj * sizeof *ax);
  srand(11);
  for (size_t i = 0; i < nvox; i++)
    x[i] = (float)frand();
  for (size_t i = 0; i < nproj; i++)
    y[i] = (float)frand();
  ck_assert_int_eq(clara_projector_create(ctx, &g, &v, &p), CLARA_OK);
  ck_assert_int_eq(clara_project(p, x, ax), CLARA_OK);
  ck_assert_int_eq(clara_backproject(p, y, aty), CLARA_OK);
  for (size_t i = 0; i < nproj; i++)
    lhs += (double)ax[i] * y[i];
  for (size_t i = 0; i < nvox; i++)
    rhs += (double)x[i] * aty[i];
  ck_assert_msg(fabs(lhs - rhs) <= 1e-5 * fabs(lhs),
                "%s: <Ax,y> = %.9g, <x,A^T y> = %.9g",
                clara_geometry_name(kind), lhs, rhs);
  /* and not trivially: the projection is not zero */
  ck_assert(fabs(lhs) > 1e-3);
  clara_projector_destroy(p);
  clara_context_destroy(ctx);
  free(x);
  free(y);
  free(ax);
  free(aty);
  free(a);
}

START_TEST(adjoint_parallel) { adjoint(CLARA_GEOM_PARALLEL); }
END_TEST
START_TEST(adjoint_fan_flat) { adjoint(CLARA_GEOM_FAN_FLAT); }
END_TEST
START_TEST(adjoint_fan_arc) { adjoint(CLARA_GEOM_FAN_ARC); }
END_TEST
START_TEST(adjoint_cone) { adjoint(CLARA_GEOM_CONE); }
END_TEST

/* Joseph projections of the rasterised phantom approach the exact line
 * integrals of the analytic one. */
static void versus_analytic(clara_geometry_kind kind) {
  int cone = kind == CLARA_GEOM_CONE;
  clara_ct_geometry g;
  clara_volume v;
  float *a;
  clara_context *ctx = cpu_ctx();
  clara_projector *p = NULL;
  clara_phantom *ph = NULL;
  size_t nvox, nproj;
  float *img, *pj, *exact;
  double num = 0, den = 0;
  setup(kind, cone ? 96 : 224, 24, &g, &v, &a);
  v.center[0] = 0;
  nvox = (size_t)v.nx * v.ny * v.nz;
  nproj = (size_t)g.views * g.rows * g.cols;
  img = malloc(nvox * sizeof *img);
  pj = malloc(nproj * sizeof *pj);
  exact = malloc(nproj * sizeof *exact);
  ck_assert_int_eq(clara_phantom_shepp_logan(cone ? 3 : 2, 90, 0.02, &ph),
                   CLARA_OK);
  ck_assert_int_eq(clara_phantom_rasterize(ph, &v, 3, img), CLARA_OK);
  ck_assert_int_eq(clara_phantom_project(ph, &g, exact), CLARA_OK);
  ck_assert_int_eq(clara_projector_create(ctx, &g, &v, &p), CLARA_OK);
  ck_assert_int_eq(clara_project(p, img, pj), CLARA_OK);
  for (size_t i = 0; i < nproj; i++) {
    num += ((double)pj[i] - exact[i]) * ((double)pj[i] - exact[i]);
    den += (double)exact[i] * exact[i];
  }
  /* measured 0.018 (2D, 224^2) and 0.059 (cone, 96^3): the rasterised
   * phantom's staircase edges, halving as the grid doubles */
  fprintf(stderr, "%s: relative L2 %.4f\n", clara_geometry_name(kind),
          sqrt(num / den));
  ck_assert_msg(sqrt(num / den) < (cone ? 0.075 : 0.025), "%s: relative L2 %g",
                clara_geometry_name(kind), sqrt(num / den));
  clara_projector_destroy(p);
  clara_phantom_destroy(ph);
  clara_context_destroy(ctx);
  free(img);
  free(pj);
  free(exact);
  free(a);
}

START_TEST(analytic_parallel) { versus_analytic(CLARA_GEOM_PARALLEL); }
END_TEST
START_TEST(analytic_fan_flat) { versus_analytic(CLARA_GEOM_FAN_FLAT); }
END_TEST
START_TEST(analytic_fan_arc) { versus_analytic(CLARA_GEOM_FAN_ARC); }
END_TEST
START_TEST(analytic_cone) { versus_analytic(CLARA_GEOM_CONE); }
END_TEST

START_TEST(bad_inputs) {
  clara_ct_geometry g;
  clara_volume v;
  float *a;
  float buf[8];
  clara_context *ctx = cpu_ctx();
  clara_projector *p = (clara_projector *)1;
  setup(CLARA_GEOM_PARALLEL, 16, 8, &g, &v, &a);
  ck_assert_int_eq(clara_projector_create(NULL, &g, &v, &p),
                   CLARA_ERR_INVALID_ARG);
  ck_assert_ptr_null(p);
  ck_assert_int_eq(clara_projector_create(ctx, NULL, &v, &p),
                   CLARA_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(clara_last_error(), "geom"));
  v.nz = 5; /* 2 rows of parallel data are 2 slices */
  ck_assert_int_eq(clara_projector_create(ctx, &g, &v, &p),
                   CLARA_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(clara_last_error(), "nz"));
  v.nz = 2;
  g.det_spacing[0] = 0;
  ck_assert_int_eq(clara_projector_create(ctx, &g, &v, &p),
                   CLARA_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(clara_last_error(), "det_spacing[0]"));
  g.det_spacing[0] = 1;
  ck_assert_int_eq(clara_projector_create(ctx, &g, &v, &p), CLARA_OK);
  ck_assert_int_eq(clara_project(p, NULL, buf), CLARA_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(clara_last_error(), "image"));
  ck_assert_int_eq(clara_backproject(p, NULL, buf), CLARA_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(clara_last_error(), "projections"));
  clara_projector_destroy(p);
  clara_projector_destroy(NULL);
  clara_context_destroy(ctx);
  free(a);
}
END_TEST

int main(void) {
  Suite *s = suite_create("projector");
  TCase *t = tcase_create("projector");
  SRunner *sr;
  int failed;
  tcase_set_timeout(t, 600);
  tcase_add_test(t, adjoint_parallel);
  tcase_add_test(t, adjoint_fan_flat);
  tcase_add_test(t, adjoint_fan_arc);
  tcase_add_test(t, adjoint_cone);
  tcase_add_test(t, analytic_parallel);
  tcase_add_test(t, analytic_fan_flat);
  tcase_add_test(t, analytic_fan_arc);
  tcase_add_test(t, analytic_cone);
  tcase_add_test(t, bad_inputs);
  suite_add_tcase(s, t);
  sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
