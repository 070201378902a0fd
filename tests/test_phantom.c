/* test_phantom.c -- analytic phantoms against independent references:
 * closed-form projections of discs and ellipses, brute-force numerical line
 * integrals along divergent rays, the fan/parallel ray identity, point
 * sampling of the rasteriser, and the argument checks. */
#include "clara_recon.h"

#include <check.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ------------------------------------------------------------------------ */
/* Independent references                                                    */
/* ------------------------------------------------------------------------ */

/* The modified Shepp-Logan tables as the manual defines them, in unit
 * coordinates (A, a, b, [c,] x0, y0, [z0,] phi in degrees). */
static const double sl2[10][6] = {
    {1, .69, .92, 0, 0, 0},        {-.8, .6624, .874, 0, -.0184, 0},
    {-.2, .11, .31, .22, 0, -18},  {-.2, .16, .41, -.22, 0, 18},
    {.1, .21, .25, 0, .35, 0},     {.1, .046, .046, 0, .1, 0},
    {.1, .046, .046, 0, -.1, 0},   {.1, .046, .023, -.08, -.605, 0},
    {.1, .023, .023, 0, -.606, 0}, {.1, .023, .046, .06, -.605, 0}};
static const double sl3[10][8] = {{1, .69, .92, .81, 0, 0, 0, 0},
                                  {-.8, .6624, .874, .78, 0, -.0184, 0, 0},
                                  {-.2, .11, .31, .22, .22, 0, 0, -18},
                                  {-.2, .16, .41, .28, -.22, 0, 0, 18},
                                  {.1, .21, .25, .41, 0, .35, -.15, 0},
                                  {.1, .046, .046, .05, 0, .1, .25, 0},
                                  {.1, .046, .046, .05, 0, -.1, .25, 0},
                                  {.1, .046, .023, .05, -.08, -.605, 0, 0},
                                  {.1, .023, .023, .02, 0, -.606, 0, 0},
                                  {.1, .023, .046, .02, .06, -.605, 0, 0}};

static void sl_table(int ndim, double radius, double scale,
                     clara_ellipsoid e[10]) {
  for (int i = 0; i < 10; i++) {
    memset(&e[i], 0, sizeof e[i]);
    if (ndim == 2) {
      e[i].density = sl2[i][0] * scale;
      e[i].a = sl2[i][1] * radius;
      e[i].b = sl2[i][2] * radius;
      e[i].x0 = sl2[i][3] * radius;
      e[i].y0 = sl2[i][4] * radius;
      e[i].phi = sl2[i][5] * M_PI / 180;
    } else {
      e[i].density = sl3[i][0] * scale;
      e[i].a = sl3[i][1] * radius;
      e[i].b = sl3[i][2] * radius;
      e[i].c = sl3[i][3] * radius;
      e[i].x0 = sl3[i][4] * radius;
      e[i].y0 = sl3[i][5] * radius;
      e[i].z0 = sl3[i][6] * radius;
      e[i].phi = sl3[i][7] * M_PI / 180;
    }
  }
}

/* The phantom's value at a point, straight from the definition: p is inside
 * iff q = R(-phi)(p - c) has (qx/a)^2 + (qy/b)^2 (+ (qz/c)^2) <= 1. */
static double value_at(const clara_ellipsoid *e, int n, int ndim, double x,
                       double y, double z) {
  double f = 0;
  for (int i = 0; i < n; i++) {
    double dx = x - e[i].x0, dy = y - e[i].y0;
    double qx = cos(e[i].phi) * dx + sin(e[i].phi) * dy;
    double qy = -sin(e[i].phi) * dx + cos(e[i].phi) * dy;
    double s = (qx / e[i].a) * (qx / e[i].a) + (qy / e[i].b) * (qy / e[i].b);
    if (ndim == 3)
      s += ((z - e[i].z0) / e[i].c) * ((z - e[i].z0) / e[i].c);
    if (s <= 1)
      f += e[i].density;
  }
  return f;
}

/* A faster form of value_at for the brute-force integrals (cos/sin once). */
typedef struct fast_e {
  double d, x0, y0, z0, c00, c01, c10, c11, ic;
} fast_e;

static void make_fast(const clara_ellipsoid *e, int n, int ndim, fast_e *f) {
  for (int i = 0; i < n; i++) {
    double c = cos(e[i].phi), s = sin(e[i].phi);
    f[i].d = e[i].density;
    f[i].x0 = e[i].x0;
    f[i].y0 = e[i].y0;
    f[i].z0 = e[i].z0;
    f[i].c00 = c / e[i].a;
    f[i].c01 = s / e[i].a;
    f[i].c10 = -s / e[i].b;
    f[i].c11 = c / e[i].b;
    f[i].ic = ndim == 3 ? 1 / e[i].c : 0;
  }
}

static double fast_value(const fast_e *f, int n, double x, double y, double z) {
  double v = 0;
  for (int i = 0; i < n; i++) {
    double dx = x - f[i].x0, dy = y - f[i].y0, dz = (z - f[i].z0) * f[i].ic;
    double qx = f[i].c00 * dx + f[i].c01 * dy;
    double qy = f[i].c10 * dx + f[i].c11 * dy;
    if (qx * qx + qy * qy + dz * dz <= 1)
      v += f[i].d;
  }
  return v;
}

/* The ray of detector cell (view, row, col), written out from the manual:
 * a point P0 and a unit direction D. */
static void ray_of(const clara_ct_geometry *g, int view, int row, int col,
                   double P0[3], double D[3]) {
  double t = g->angles[view], ct = cos(t), st = sin(t);
  double u = (col - (g->cols - 1) / 2.0) * g->det_spacing[1] + g->det_offset[1];
  double v = (row - (g->rows - 1) / 2.0) * g->det_spacing[0] + g->det_offset[0];
  double Rs = g->source_to_iso, Rd = g->source_to_detector;
  double S[3], P[3], n;
  if (g->kind == CLARA_GEOM_PARALLEL) {
    P0[0] = u * ct;
    P0[1] = u * st;
    P0[2] = v;
    D[0] = -st;
    D[1] = ct;
    D[2] = 0;
    return;
  }
  S[0] = Rs * st;
  S[1] = -Rs * ct;
  S[2] = g->kind == CLARA_GEOM_CONE ? 0 : v;
  if (g->kind == CLARA_GEOM_FAN_ARC) {
    P[0] = S[0] + Rd * (cos(u) * -st + sin(u) * ct);
    P[1] = S[1] + Rd * (cos(u) * ct + sin(u) * st);
    P[2] = S[2];
  } else {
    P[0] = S[0] - Rd * st + u * ct;
    P[1] = S[1] + Rd * ct + u * st;
    P[2] = S[2] + (g->kind == CLARA_GEOM_CONE ? v : 0);
  }
  for (int k = 0; k < 3; k++) {
    P0[k] = S[k];
    D[k] = P[k] - S[k];
  }
  n = sqrt(D[0] * D[0] + D[1] * D[1] + D[2] * D[2]);
  for (int k = 0; k < 3; k++)
    D[k] /= n;
}

/* Midpoint-rule integral of the phantom along P0 + l D, step h, over the
 * part of the line within 'bound' of the z axis (2D) or the origin (3D). */
static double brute_integral(const fast_e *f, int n, int ndim,
                             const double P0[3], const double D[3],
                             double bound, double h) {
  double a, b, c, disc, l0, l1, sum = 0;
  long steps;
  if (ndim == 2) {
    a = D[0] * D[0] + D[1] * D[1];
    b = P0[0] * D[0] + P0[1] * D[1];
    c = P0[0] * P0[0] + P0[1] * P0[1] - bound * bound;
  } else {
    a = D[0] * D[0] + D[1] * D[1] + D[2] * D[2];
    b = P0[0] * D[0] + P0[1] * D[1] + P0[2] * D[2];
    c = P0[0] * P0[0] + P0[1] * P0[1] + P0[2] * P0[2] - bound * bound;
  }
  disc = b * b - a * c;
  if (disc <= 0)
    return 0;
  l0 = (-b - sqrt(disc)) / a;
  l1 = (-b + sqrt(disc)) / a;
  steps = (long)ceil((l1 - l0) / h);
  for (long i = 0; i < steps; i++) {
    double l = l0 + (i + 0.5) * h;
    sum +=
        fast_value(f, n, P0[0] + l * D[0], P0[1] + l * D[1], P0[2] + l * D[2]);
  }
  return sum * h;
}

/* Kak & Slaney's closed form for the parallel projection of an ellipse. */
static double ellipse_projection(double rho, double a, double b, double x0,
                                 double y0, double phi, double t, double s) {
  double c = cos(t - phi), sn = sin(t - phi);
  double a2 = a * a * c * c + b * b * sn * sn;
  double sp = s - (x0 * cos(t) + y0 * sin(t));
  if (sp * sp >= a2)
    return 0;
  return 2 * rho * a * b * sqrt(a2 - sp * sp) / a2;
}

static clara_ct_geometry geometry(clara_geometry_kind kind, int views, int rows,
                                  int cols, const float *angles) {
  clara_ct_geometry g;
  memset(&g, 0, sizeof g);
  g.kind = kind;
  g.views = views;
  g.rows = rows;
  g.cols = cols;
  g.angles = angles;
  g.det_spacing[0] = g.det_spacing[1] = 1;
  g.source_to_iso = 500;
  g.source_to_detector = 1000;
  return g;
}

static float *project(const clara_phantom *ph, const clara_ct_geometry *g) {
  float *p =
      malloc(sizeof *p * (size_t)g->views * (size_t)g->rows * (size_t)g->cols);
  clara_status st;
  ck_assert_ptr_nonnull(p);
  st = clara_phantom_project(ph, g, p);
  ck_assert_msg(st == CLARA_OK, "project: %s", clara_last_error());
  return p;
}

static double detector_u(const clara_ct_geometry *g, int c) {
  return (c - (g->cols - 1) / 2.0) * g->det_spacing[1] + g->det_offset[1];
}

static double detector_v(const clara_ct_geometry *g, int r) {
  return (r - (g->rows - 1) / 2.0) * g->det_spacing[0] + g->det_offset[0];
}

/* ------------------------------------------------------------------------ */
/* Parallel projections against closed forms                                 */
/* ------------------------------------------------------------------------ */

START_TEST(test_disc_parallel) {
  const double rho = 0.7, r = 30;
  const float angles[] = {0.0f, 0.4f, 1.9f, 3.7f};
  clara_ellipsoid e = {rho, r, r, 0, 0, 0, 0, 0};
  clara_phantom *ph = NULL;
  clara_ct_geometry g = geometry(CLARA_GEOM_PARALLEL, 4, 2, 121, angles);
  float *p;
  int inside = 0, outside = 0;
  g.det_spacing[1] = 0.55;
  g.det_offset[1] = 0.137;
  ck_assert_int_eq(clara_phantom_create(2, &e, 1, &ph), CLARA_OK);
  p = project(ph, &g);
  for (int v = 0; v < g.views; v++)
    for (int row = 0; row < g.rows; row++)
      for (int c = 0; c < g.cols; c++) {
        double s = detector_u(&g, c);
        double ref = fabs(s) < r ? 2 * rho * sqrt(r * r - s * s) : 0;
        double got = p[((size_t)v * g.rows + row) * g.cols + c];
        if (ref == 0) {
          ck_assert_msg(got == 0, "outside the disc s=%g: got %g", s, got);
          outside++;
        } else {
          ck_assert_msg(fabs(got - ref) <= 1e-5 * ref,
                        "view %d col %d s=%g: got %.9g, want %.9g", v, c, s,
                        got, ref);
          inside++;
        }
      }
  ck_assert_int_gt(inside, 100);
  ck_assert_int_gt(outside, 10);
  free(p);
  clara_phantom_destroy(ph);
}
END_TEST

START_TEST(test_ellipse_parallel) {
  /* off-centre, rotated, plus a second overlapping negative one */
  clara_ellipsoid e[2] = {{0.9, 40, 15, 0, 12, -7, 0, 0.6},
                          {-0.3, 6, 11, 0, 20, -2, 0, -1.1}};
  float angles[37];
  clara_phantom *ph = NULL;
  clara_ct_geometry g;
  float *p;
  double maxref = 0;
  for (int i = 0; i < 37; i++) /* non-uniform, over a full turn */
    angles[i] = (float)(2 * M_PI * i / 37.0 + 0.05 * sin(3.0 * i));
  g = geometry(CLARA_GEOM_PARALLEL, 37, 1, 201, angles);
  g.det_spacing[1] = 0.5;
  g.det_offset[1] = -0.31;
  ck_assert_int_eq(clara_phantom_create(2, e, 2, &ph), CLARA_OK);
  p = project(ph, &g);
  for (int v = 0; v < g.views; v++)
    for (int c = 0; c < g.cols; c++) {
      double t = angles[v], s = detector_u(&g, c), ref = 0;
      for (int k = 0; k < 2; k++)
        ref += ellipse_projection(e[k].density, e[k].a, e[k].b, e[k].x0,
                                  e[k].y0, e[k].phi, t, s);
      if (fabs(ref) > maxref)
        maxref = fabs(ref);
      ck_assert_msg(fabs(p[(size_t)v * g.cols + c] - ref) <=
                        1e-5 * fabs(ref) + 1e-6,
                    "view %d col %d: got %.9g, want %.9g", v, c,
                    p[(size_t)v * g.cols + c], ref);
    }
  ck_assert(maxref > 10);
  free(p);
  clara_phantom_destroy(ph);
}
END_TEST

/* A 3D ellipsoid under parallel rows: row v sees the slice z = v, an
 * ellipse with both semi-axes shrunk by sqrt(1 - ((v - z0)/c)^2). */
START_TEST(test_ellipsoid_parallel_rows) {
  clara_ellipsoid e = {1.3, 25, 12, 9, -4, 6, 2.5, 0.9};
  const float angles[] = {0.2f, 1.1f, 2.5f};
  clara_phantom *ph = NULL;
  clara_ct_geometry g = geometry(CLARA_GEOM_PARALLEL, 3, 9, 81, angles);
  float *p;
  g.det_spacing[0] = 2.5;
  g.det_offset[0] = 1.1;
  g.det_spacing[1] = 0.7;
  ck_assert_int_eq(clara_phantom_create(3, &e, 1, &ph), CLARA_OK);
  p = project(ph, &g);
  for (int v = 0; v < g.views; v++)
    for (int r = 0; r < g.rows; r++) {
      double z = (detector_v(&g, r) - e.z0) / e.c;
      double k = z * z < 1 ? sqrt(1 - z * z) : 0;
      for (int c = 0; c < g.cols; c++) {
        double ref =
            k > 0 ? ellipse_projection(e.density, k * e.a, k * e.b, e.x0, e.y0,
                                       e.phi, angles[v], detector_u(&g, c))
                  : 0;
        double got = p[((size_t)v * g.rows + r) * g.cols + c];
        ck_assert_msg(fabs(got - ref) <= 1e-5 * fabs(ref) + 1e-6,
                      "view %d row %d col %d: got %.9g, want %.9g", v, r, c,
                      got, ref);
      }
    }
  free(p);
  clara_phantom_destroy(ph);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Divergent rays against brute-force integration                            */
/* ------------------------------------------------------------------------ */

static void check_brute(int ndim, clara_ct_geometry *g, int stride) {
  const double radius = 50, h = 1e-3;
  clara_ellipsoid e[10];
  fast_e f[10];
  clara_phantom *ph = NULL;
  float *p;
  int checked = 0, nonzero = 0;
  size_t cells = (size_t)g->views * g->rows * g->cols;
  sl_table(ndim, radius, 1.0, e);
  make_fast(e, 10, ndim, f);
  ck_assert_int_eq(clara_phantom_create(ndim, e, 10, &ph), CLARA_OK);
  p = project(ph, g);
  for (size_t i = 0; i < cells; i += (size_t)stride) {
    int v = (int)(i / ((size_t)g->rows * g->cols));
    int r = (int)(i / (size_t)g->cols % (size_t)g->rows);
    int c = (int)(i % (size_t)g->cols);
    double P0[3], D[3], ref, got = p[i];
    ray_of(g, v, r, c, P0, D);
    ref = brute_integral(f, 10, ndim, P0, D, 0.93 * radius, h);
    ck_assert_msg(fabs(got - ref) <= 1e-3 * fmax(fabs(ref), 2.0),
                  "%s ndim %d view %d row %d col %d: got %.7g, brute force "
                  "%.7g",
                  clara_geometry_name(g->kind), ndim, v, r, c, got, ref);
    checked++;
    nonzero += fabs(ref) > 1;
  }
  ck_assert_int_ge(checked, 20);
  ck_assert_int_ge(nonzero, checked / 2);
  free(p);
  clara_phantom_destroy(ph);
}

START_TEST(test_fan_flat_brute) {
  const float angles[] = {0.1f, 2.9f, 4.0f};
  clara_ct_geometry g = geometry(CLARA_GEOM_FAN_FLAT, 3, 3, 15, angles);
  g.source_to_iso = 150;
  g.source_to_detector = 260;
  g.det_spacing[0] = 7; /* slices at z = -5.5, 1.5, 8.5 */
  g.det_offset[0] = 1.5;
  g.det_spacing[1] = 10.3;
  g.det_offset[1] = 2.9;
  check_brute(3, &g, 4);
}
END_TEST

START_TEST(test_fan_arc_brute) {
  const float angles[] = {0.7f, 1.9f, 5.3f};
  clara_ct_geometry g = geometry(CLARA_GEOM_FAN_ARC, 3, 3, 15, angles);
  g.source_to_iso = 150;
  g.source_to_detector = 260;
  g.det_spacing[0] = 9;
  g.det_offset[0] = -2;
  g.det_spacing[1] = 0.043;
  g.det_offset[1] = -0.021;
  check_brute(3, &g, 4);
}
END_TEST

START_TEST(test_cone_brute) {
  const float angles[] = {0.3f, 2.2f, 3.9f};
  clara_ct_geometry g = geometry(CLARA_GEOM_CONE, 3, 7, 11, angles);
  g.source_to_iso = 150;
  g.source_to_detector = 260;
  g.det_spacing[0] = 12;
  g.det_offset[0] = -3;
  g.det_spacing[1] = 13;
  g.det_offset[1] = 4.5;
  check_brute(3, &g, 5);
}
END_TEST

/* A 2D phantom (endless cylinders) under a cone: chords along 3D rays. */
START_TEST(test_cone_2d_brute) {
  const float angles[] = {1.2f, 4.4f};
  clara_ct_geometry g = geometry(CLARA_GEOM_CONE, 2, 5, 11, angles);
  g.source_to_iso = 150;
  g.source_to_detector = 260;
  g.det_spacing[0] = 40;
  g.det_spacing[1] = 13;
  g.det_offset[1] = -1.5;
  check_brute(2, &g, 3);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Fan <-> parallel                                                          */
/* ------------------------------------------------------------------------ */
/*
 * Source S = R_s (sin t, -cos t); the FAN_ARC ray of fan angle g runs along
 * cos g (-sin t, cos t) + sin g (cos t, sin t) = (-sin(t-g), cos(t-g)): the
 * direction of the parallel view at angle t - g. Its parallel coordinate is
 * s = S . (cos(t-g), sin(t-g)) = R_s sin(t - (t-g)) = R_s sin g. So
 *   p_fan_arc(t, g) = p_parallel(t - g, R_s sin g),
 * and a FAN_FLAT cell at u is the arc ray with g = atan(u / R_d).
 * Angles and fan angles are dyadic, so t - g is exact in float.
 */
static void fan_parallel_case(int ndim) {
  const float angles[] = {0.3125f, 2.0f, 4.375f};
  const double Rs = 200, Rd = 350;
  clara_phantom *ph = NULL;
  clara_ct_geometry fan = geometry(CLARA_GEOM_FAN_ARC, 3, 2, 21, angles);
  float *pf;
  double maxval = 0, maxwrong = 0;
  ck_assert_int_eq(clara_phantom_shepp_logan(ndim, 80, 1.0, &ph), CLARA_OK);
  fan.source_to_iso = Rs;
  fan.source_to_detector = Rd;
  fan.det_spacing[0] = 8; /* rows at z = -3 and 5 */
  fan.det_offset[0] = 1;
  fan.det_spacing[1] = 1.0 / 32;
  fan.det_offset[1] = 1.0 / 128;
  pf = project(ph, &fan);
  for (int c = 0; c < fan.cols; c++) {
    double gam = detector_u(&fan, c);
    float th[3], thw[3];
    clara_ct_geometry par = geometry(CLARA_GEOM_PARALLEL, 3, 2, 1, th);
    clara_ct_geometry wrong = geometry(CLARA_GEOM_PARALLEL, 3, 2, 1, thw);
    clara_ct_geometry flat = geometry(CLARA_GEOM_FAN_FLAT, 3, 2, 1, angles);
    float *pp, *pw, *pl;
    for (int v = 0; v < 3; v++) {
      th[v] = (float)(angles[v] - gam);
      ck_assert((double)th[v] == angles[v] - gam);
      thw[v] = (float)(angles[v] + gam);
    }
    par.det_spacing[0] = wrong.det_spacing[0] = flat.det_spacing[0] = 8;
    par.det_offset[0] = wrong.det_offset[0] = flat.det_offset[0] = 1;
    par.det_offset[1] = wrong.det_offset[1] = Rs * sin(gam);
    flat.source_to_iso = Rs;
    flat.source_to_detector = Rd;
    flat.det_offset[1] = Rd * tan(gam);
    pp = project(ph, &par);
    pw = project(ph, &wrong);
    pl = project(ph, &flat);
    for (int v = 0; v < 3; v++)
      for (int r = 0; r < 2; r++) {
        double a = pf[((size_t)v * 2 + r) * fan.cols + c];
        double b = pp[v * 2 + r], w = pw[v * 2 + r], fl = pl[v * 2 + r];
        ck_assert_msg(fabs(a - b) <= 1e-5 * fabs(b) + 1e-5,
                      "ndim %d view %d row %d gamma %g: fan-arc %.9g, "
                      "parallel(t-gamma, Rs sin gamma) %.9g",
                      ndim, v, r, gam, a, b);
        ck_assert_msg(fabs(fl - b) <= 1e-5 * fabs(b) + 1e-5,
                      "ndim %d view %d row %d gamma %g: fan-flat %.9g, "
                      "parallel %.9g",
                      ndim, v, r, gam, fl, b);
        maxval = fmax(maxval, fabs(b));
        maxwrong = fmax(maxwrong, fabs(a - w));
      }
    free(pp);
    free(pw);
    free(pl);
  }
  /* the test can tell the right relation from its mirror image */
  ck_assert(maxval > 10);
  ck_assert_msg(maxwrong > 0.05 * maxval, "t+gamma matched too: %g", maxwrong);
  free(pf);
  clara_phantom_destroy(ph);
}

START_TEST(test_fan_parallel_2d) { fan_parallel_case(2); }
END_TEST

START_TEST(test_fan_parallel_3d) { fan_parallel_case(3); }
END_TEST

/* Spheres (3D) and circular cylinders (2D) have a chord in closed form for
 * any line: 2 sqrt(r^2 - dist^2), with dist the distance from the centre
 * (for a cylinder, measured in xy and divided by the xy part of the unit
 * direction). Every cell of dense detectors in all four geometries, so
 * that no cell near an object's shadow is skipped. */
static void spheres_case(int ndim, clara_geometry_kind kind) {
  clara_ellipsoid e[3] = {{0.8, 20, 20, 20, 10, -5, 4, 0.3},
                          {-0.3, 7, 7, 7, -15, 12, -9, 1.0},
                          {1.5, 3, 3, 3, 5, 25, 14, 0.0}};
  const float angles[] = {0.25f, 1.6f, 3.3f, 5.1f};
  clara_phantom *ph = NULL;
  clara_ct_geometry g = geometry(kind, 4, 61, 73, angles);
  float *p;
  int hits = 0;
  g.source_to_iso = 120;
  g.source_to_detector = 200;
  g.det_spacing[0] = 0.9;
  g.det_offset[0] = 3.3;
  g.det_spacing[1] = kind == CLARA_GEOM_FAN_ARC ? 0.0102 : 0.95;
  g.det_offset[1] = kind == CLARA_GEOM_FAN_ARC ? 0.013 : -1.7;
  ck_assert_int_eq(clara_phantom_create(ndim, e, 3, &ph), CLARA_OK);
  p = project(ph, &g);
  for (int v = 0; v < g.views; v++)
    for (int r = 0; r < g.rows; r++)
      for (int c = 0; c < g.cols; c++) {
        double P0[3], D[3], ref = 0, got;
        ray_of(&g, v, r, c, P0, D);
        for (int k = 0; k < 3; k++) {
          double w[3] = {P0[0] - e[k].x0, P0[1] - e[k].y0,
                         ndim == 3 ? P0[2] - e[k].z0 : 0};
          double dd[3] = {D[0], D[1], ndim == 3 ? D[2] : 0};
          double n2 = dd[0] * dd[0] + dd[1] * dd[1] + dd[2] * dd[2];
          double proj = (w[0] * dd[0] + w[1] * dd[1] + w[2] * dd[2]) / n2;
          double d2 = 0;
          for (int i = 0; i < 3; i++)
            d2 += (w[i] - proj * dd[i]) * (w[i] - proj * dd[i]);
          if (d2 < e[k].a * e[k].a)
            ref += e[k].density * 2 * sqrt(e[k].a * e[k].a - d2) / sqrt(n2);
        }
        got = p[((size_t)v * g.rows + r) * g.cols + c];
        ck_assert_msg(fabs(got - ref) <= 1e-5 * fabs(ref) + 2e-5,
                      "%s ndim %d view %d row %d col %d: got %.9g, want %.9g",
                      clara_geometry_name(kind), ndim, v, r, c, got, ref);
        hits += ref != 0;
      }
  ck_assert_int_gt(hits, g.views * g.rows * g.cols / 20);
  free(p);
  clara_phantom_destroy(ph);
}

START_TEST(test_spheres_all_geometries) {
  for (int ndim = 2; ndim <= 3; ndim++)
    for (int k = CLARA_GEOM_PARALLEL; k <= CLARA_GEOM_CONE; k++)
      spheres_case(ndim, (clara_geometry_kind)k);
}
END_TEST

/* 2D phantom in a PARALLEL / FAN geometry: every row the same sinogram. */
START_TEST(test_rows_identical_2d) {
  const float angles[] = {0.5f, 2.5f};
  clara_phantom *ph = NULL;
  clara_ct_geometry g = geometry(CLARA_GEOM_FAN_FLAT, 2, 4, 33, angles);
  float *p;
  g.det_spacing[1] = 5;
  g.det_spacing[0] = 3;
  ck_assert_int_eq(clara_phantom_shepp_logan(2, 90, 0.02, &ph), CLARA_OK);
  p = project(ph, &g);
  for (int v = 0; v < 2; v++)
    for (int r = 1; r < 4; r++)
      ck_assert(memcmp(p + ((size_t)v * 4 + r) * 33, p + (size_t)v * 4 * 33,
                       33 * sizeof(float)) == 0);
  free(p);
  clara_phantom_destroy(ph);
}
END_TEST

/* clara_phantom_shepp_logan agrees with the manual's table, for both
 * dimensions, in projections and in a rasterised slice. */
START_TEST(test_shepp_logan_table) {
  const float angles[] = {0.0f, 0.9f, 2.1f};
  for (int ndim = 2; ndim <= 3; ndim++) {
    clara_ellipsoid e[10];
    clara_phantom *a = NULL, *b = NULL;
    clara_ct_geometry g = geometry(CLARA_GEOM_CONE, 3, 9, 41, angles);
    clara_volume vol = {32, 30, 5, {6.1, 6.3, 9.7}, {0.5, -1, 2}};
    float *pa, *pb, *ia, *ib;
    size_t n = (size_t)vol.nx * vol.ny * vol.nz;
    g.det_spacing[0] = 20;
    g.det_spacing[1] = 9;
    sl_table(ndim, 95, 0.019, e);
    ck_assert_int_eq(clara_phantom_shepp_logan(ndim, 95, 0.019, &a), CLARA_OK);
    ck_assert_int_eq(clara_phantom_create(ndim, e, 10, &b), CLARA_OK);
    pa = project(a, &g);
    pb = project(b, &g);
    for (int i = 0; i < 3 * 9 * 41; i++)
      ck_assert_msg(fabs(pa[i] - pb[i]) <= 1e-6 * fabs(pb[i]) + 1e-7,
                    "ndim %d cell %d: %g vs %g", ndim, i, pa[i], pb[i]);
    ia = malloc(n * sizeof *ia);
    ib = malloc(n * sizeof *ib);
    ck_assert(ia && ib);
    ck_assert_int_eq(clara_phantom_rasterize(a, &vol, 2, ia), CLARA_OK);
    ck_assert_int_eq(clara_phantom_rasterize(b, &vol, 2, ib), CLARA_OK);
    for (size_t i = 0; i < n; i++)
      ck_assert(fabs(ia[i] - ib[i]) <= 1e-7);
    free(pa);
    free(pb);
    free(ia);
    free(ib);
    clara_phantom_destroy(a);
    clara_phantom_destroy(b);
  }
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Rasterisation                                                             */
/* ------------------------------------------------------------------------ */

/* The value of a one-voxel volume centred on (x, y, z): a point sample. */
static double sample_point(const clara_phantom *ph, double x, double y,
                           double z) {
  clara_volume vol = {1, 1, 1, {1e-3, 1e-3, 1e-3}, {x, y, z}};
  float v = -999;
  ck_assert_int_eq(clara_phantom_rasterize(ph, &vol, 1, &v), CLARA_OK);
  return v;
}

START_TEST(test_shepp_logan_values) {
  const double R = 100, s = 0.02;
  clara_phantom *p2 = NULL, *p3 = NULL;
  ck_assert_int_eq(clara_phantom_shepp_logan(2, R, s, &p2), CLARA_OK);
  ck_assert_int_eq(clara_phantom_shepp_logan(3, R, s, &p3), CLARA_OK);
  /* centre: skull 1 + brain -0.8 */
  ck_assert_double_eq_tol(sample_point(p2, 0, 0, 0), 0.2 * s, 1e-7);
  ck_assert_double_eq_tol(sample_point(p2, 0, 0, 1234), 0.2 * s, 1e-7);
  ck_assert_double_eq_tol(sample_point(p3, 0, 0, 0), 0.2 * s, 1e-7);
  /* centres of the two dark ellipses: 0.2 - 0.2 */
  ck_assert_double_eq_tol(sample_point(p2, 22, 0, 0), 0, 1e-7);
  ck_assert_double_eq_tol(sample_point(p2, -22, 0, 0), 0, 1e-7);
  ck_assert_double_eq_tol(sample_point(p3, 22, 0, 0), 0, 1e-7);
  /* the orientation of ellipse 3 (phi = -18 deg, counter-clockwise): the
   * point 0.25 along its long axis, (0.22 + 0.25 sin 18, 0.25 cos 18), is
   * inside it; its mirror about x = 0.22 is outside it but inside
   * ellipse 5 (0.2 + 0.1) */
  {
    double dx = 0.25 * sin(18 * M_PI / 180), dy = 0.25 * cos(18 * M_PI / 180);
    ck_assert_double_eq_tol(sample_point(p2, R * (0.22 + dx), R * dy, 0), 0,
                            1e-7);
    ck_assert_double_eq_tol(sample_point(p2, R * (0.22 - dx), R * dy, 0),
                            0.3 * s, 1e-7);
  }
  /* ellipse 5 (0.2 + 0.1), the skull rim alone (1), outside (0) */
  ck_assert_double_eq_tol(sample_point(p2, 0, 35, 0), 0.3 * s, 1e-7);
  ck_assert_double_eq_tol(sample_point(p2, 0, 90, 0), 1.0 * s, 1e-7);
  ck_assert_double_eq_tol(sample_point(p2, 95, 0, 0), 0, 1e-12);
  /* 3D: the rim at the top (c = 0.81 vs 0.78), ellipse 6 at z = 0.25 */
  ck_assert_double_eq_tol(sample_point(p3, 0, 0, 79), 1.0 * s, 1e-7);
  ck_assert_double_eq_tol(sample_point(p3, 0, 10, 25), 0.3 * s, 1e-7);
  ck_assert_double_eq_tol(sample_point(p3, 0, 0, 85), 0, 1e-12);
  clara_phantom_destroy(p2);
  clara_phantom_destroy(p3);
}
END_TEST

static const clara_ellipsoid raster_e[3] = {{1.0, 40, 25, 30, 3, -4, 2, 0.4},
                                            {-0.5, 10, 18, 12, -9, 5, -6, -0.9},
                                            {0.75, 7, 4, 5, 20, 8, 10, 2.0}};

/* Every voxel against the definition: the mean of S^ndim point samples at
 * the sub-grid (k + 1/2)/S of the voxel. */
static void raster_vs_points(int ndim, const clara_volume *vol, int S) {
  clara_phantom *ph = NULL;
  size_t n = (size_t)vol->nx * vol->ny * vol->nz;
  float *img = malloc(n * sizeof *img);
  int nsz = ndim == 3 ? S : 1, mismatches = 0;
  ck_assert_ptr_nonnull(img);
  ck_assert_int_eq(clara_phantom_create(ndim, raster_e, 3, &ph), CLARA_OK);
  ck_assert_int_eq(clara_phantom_rasterize(ph, vol, S, img), CLARA_OK);
  for (int iz = 0; iz < vol->nz; iz++)
    for (int iy = 0; iy < vol->ny; iy++)
      for (int ix = 0; ix < vol->nx; ix++) {
        double x0 = (ix - (vol->nx - 1) / 2.0) * vol->voxel[0] + vol->center[0];
        double y0 = (iy - (vol->ny - 1) / 2.0) * vol->voxel[1] + vol->center[1];
        double z0 = (iz - (vol->nz - 1) / 2.0) * vol->voxel[2] + vol->center[2];
        double sum = 0, got;
        for (int kz = 0; kz < nsz; kz++)
          for (int ky = 0; ky < S; ky++)
            for (int kx = 0; kx < S; kx++) {
              double x = x0 + ((kx + 0.5) / S - 0.5) * vol->voxel[0];
              double y = y0 + ((ky + 0.5) / S - 0.5) * vol->voxel[1];
              double z = z0 + ((kz + 0.5) / S - 0.5) * vol->voxel[2];
              sum += value_at(raster_e, 3, ndim, x, y, z);
            }
        sum /= (double)S * S * nsz;
        got = img[((size_t)iz * vol->ny + iy) * vol->nx + ix];
        if (fabs(got - sum) > 1e-6) {
          mismatches++;
          ck_assert_msg(0, "ndim %d voxel (%d,%d,%d): got %.9g, want %.9g",
                        ndim, ix, iy, iz, got, sum);
        }
      }
  ck_assert_int_eq(mismatches, 0);
  free(img);
  clara_phantom_destroy(ph);
}

START_TEST(test_raster_points_2d) {
  clara_volume vol = {47, 39, 3, {1.7, 1.3, 2.0}, {0.4, -0.9, 5}};
  raster_vs_points(2, &vol, 3);
  raster_vs_points(2, &vol, 1);
}
END_TEST

START_TEST(test_raster_points_3d) {
  clara_volume vol = {41, 35, 29, {2.1, 1.9, 2.3}, {-0.6, 1.1, 0.7}};
  raster_vs_points(3, &vol, 2);
  raster_vs_points(3, &vol, 1);
}
END_TEST

/* The integral of the image approaches sum(density * area or volume). */
START_TEST(test_raster_mass) {
  double exact2 = 0, exact3 = 0;
  clara_phantom *p2 = NULL, *p3 = NULL;
  clara_volume v2 = {240, 220, 2, {0.5, 0.55, 1}, {1.3, -0.7, 0}};
  clara_volume v3 = {100, 90, 90, {1.1, 1.2, 1.05}, {0.2, 0.3, -0.4}};
  size_t n2 = (size_t)v2.nx * v2.ny * v2.nz, n3 = (size_t)v3.nx * v3.ny * v3.nz;
  float *a = malloc(n2 * sizeof *a), *b = malloc(n2 * sizeof *b);
  float *c = malloc(n3 * sizeof *c);
  double sa = 0, sb = 0, sc = 0, l1 = 0;
  ck_assert(a && b && c);
  for (int i = 0; i < 3; i++) {
    exact2 += raster_e[i].density * M_PI * raster_e[i].a * raster_e[i].b;
    exact3 += raster_e[i].density * 4.0 / 3.0 * M_PI * raster_e[i].a *
              raster_e[i].b * raster_e[i].c;
  }
  ck_assert_int_eq(clara_phantom_create(2, raster_e, 3, &p2), CLARA_OK);
  ck_assert_int_eq(clara_phantom_create(3, raster_e, 3, &p3), CLARA_OK);
  ck_assert_int_eq(clara_phantom_rasterize(p2, &v2, 4, a), CLARA_OK);
  ck_assert_int_eq(clara_phantom_rasterize(p2, &v2, 8, b), CLARA_OK);
  ck_assert_int_eq(clara_phantom_rasterize(p3, &v3, 3, c), CLARA_OK);
  for (size_t i = 0; i < n2 / 2; i++) { /* slice 0 */
    sa += a[i];
    sb += b[i];
    l1 += fabs(a[i] - b[i]);
    /* slice 1 of a 2D phantom is the same */
    ck_assert(a[i] == a[i + n2 / 2]);
  }
  for (size_t i = 0; i < n3; i++)
    sc += c[i];
  sa *= v2.voxel[0] * v2.voxel[1];
  sb *= v2.voxel[0] * v2.voxel[1];
  l1 *= v2.voxel[0] * v2.voxel[1];
  sc *= v3.voxel[0] * v3.voxel[1] * v3.voxel[2];
  ck_assert_msg(fabs(sa - exact2) < 1e-3 * fabs(exact2), "S=4: %g vs %g", sa,
                exact2);
  ck_assert_msg(fabs(sb - exact2) < 5e-4 * fabs(exact2), "S=8: %g vs %g", sb,
                exact2);
  /* S=4 and S=8 differ only in a band of boundary voxels */
  ck_assert_msg(l1 < 0.02 * fabs(exact2), "S=4 vs S=8 L1 %g", l1);
  ck_assert_msg(fabs(sc - exact3) < 2e-3 * fabs(exact3), "3D: %g vs %g", sc,
                exact3);
  free(a);
  free(b);
  free(c);
  clara_phantom_destroy(p2);
  clara_phantom_destroy(p3);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Argument checks                                                           */
/* ------------------------------------------------------------------------ */

#define EXPECT_FAIL(call, status, needle)                                      \
  do {                                                                         \
    clara_clear_error();                                                       \
    clara_status st_ = (call);                                                 \
    ck_assert_msg(st_ == (status), "%s: status %d, want %d (%s)", #call,       \
                  (int)st_, (int)(status), clara_last_error());                \
    ck_assert_msg(strstr(clara_last_error(), (needle)) != NULL,                \
                  "%s: message \"%s\" lacks \"%s\"", #call,                    \
                  clara_last_error(), (needle));                               \
  } while (0)

START_TEST(test_bad_create) {
  clara_phantom *ph = (clara_phantom *)&ph; /* must be reset to NULL */
  clara_ellipsoid e[2] = {{1, 10, 10, 10, 0, 0, 0, 0},
                          {1, 5, 5, 5, 1, 1, 1, 0}};
  EXPECT_FAIL(clara_phantom_shepp_logan(2, 1, 1, NULL), CLARA_ERR_INVALID_ARG,
              "out");
  EXPECT_FAIL(clara_phantom_shepp_logan(1, 1, 1, &ph), CLARA_ERR_INVALID_ARG,
              "ndim");
  ck_assert_ptr_null(ph);
  EXPECT_FAIL(clara_phantom_shepp_logan(4, 1, 1, &ph), CLARA_ERR_INVALID_ARG,
              "ndim");
  EXPECT_FAIL(clara_phantom_shepp_logan(2, 0, 1, &ph), CLARA_ERR_INVALID_ARG,
              "radius");
  EXPECT_FAIL(clara_phantom_shepp_logan(2, -3, 1, &ph), CLARA_ERR_INVALID_ARG,
              "radius");
  EXPECT_FAIL(clara_phantom_shepp_logan(3, NAN, 1, &ph), CLARA_ERR_INVALID_ARG,
              "radius");
  EXPECT_FAIL(clara_phantom_shepp_logan(3, INFINITY, 1, &ph),
              CLARA_ERR_INVALID_ARG, "radius");
  EXPECT_FAIL(clara_phantom_shepp_logan(2, 1, NAN, &ph), CLARA_ERR_INVALID_ARG,
              "scale");
  EXPECT_FAIL(clara_phantom_shepp_logan(2, 1, -INFINITY, &ph),
              CLARA_ERR_INVALID_ARG, "scale");
  ck_assert_ptr_null(ph);

  EXPECT_FAIL(clara_phantom_create(2, e, 2, NULL), CLARA_ERR_INVALID_ARG,
              "out");
  ph = (clara_phantom *)&ph;
  EXPECT_FAIL(clara_phantom_create(0, e, 2, &ph), CLARA_ERR_INVALID_ARG,
              "ndim");
  ck_assert_ptr_null(ph);
  EXPECT_FAIL(clara_phantom_create(2, NULL, 2, &ph), CLARA_ERR_INVALID_ARG,
              "e: is NULL");
  EXPECT_FAIL(clara_phantom_create(2, e, 0, &ph), CLARA_ERR_INVALID_ARG,
              "count");
  EXPECT_FAIL(clara_phantom_create(2, e, -5, &ph), CLARA_ERR_INVALID_ARG,
              "count");
  e[1].a = 0;
  EXPECT_FAIL(clara_phantom_create(2, e, 2, &ph), CLARA_ERR_INVALID_ARG,
              "e[1].a");
  e[1].a = -2;
  EXPECT_FAIL(clara_phantom_create(3, e, 2, &ph), CLARA_ERR_INVALID_ARG,
              "e[1].a");
  e[1].a = 5;
  e[0].b = NAN;
  EXPECT_FAIL(clara_phantom_create(2, e, 2, &ph), CLARA_ERR_INVALID_ARG,
              "e[0].b");
  e[0].b = INFINITY;
  EXPECT_FAIL(clara_phantom_create(2, e, 2, &ph), CLARA_ERR_INVALID_ARG,
              "e[0].b");
  e[0].b = 10;
  e[1].c = 0; /* ignored in 2D, wrong in 3D */
  ck_assert_int_eq(clara_phantom_create(2, e, 2, &ph), CLARA_OK);
  clara_phantom_destroy(ph);
  EXPECT_FAIL(clara_phantom_create(3, e, 2, &ph), CLARA_ERR_INVALID_ARG,
              "e[1].c");
  ck_assert_ptr_null(ph);
  e[1].c = 5;
  e[1].z0 = NAN; /* ignored in 2D too */
  ck_assert_int_eq(clara_phantom_create(2, e, 2, &ph), CLARA_OK);
  clara_phantom_destroy(ph);
  EXPECT_FAIL(clara_phantom_create(3, e, 2, &ph), CLARA_ERR_INVALID_ARG,
              "e[1].z0");
  e[1].z0 = 1;
  e[0].x0 = INFINITY;
  EXPECT_FAIL(clara_phantom_create(2, e, 2, &ph), CLARA_ERR_INVALID_ARG,
              "e[0].x0");
  e[0].x0 = 0;
  e[0].y0 = NAN;
  EXPECT_FAIL(clara_phantom_create(2, e, 2, &ph), CLARA_ERR_INVALID_ARG,
              "e[0].y0");
  e[0].y0 = 0;
  e[1].density = NAN;
  EXPECT_FAIL(clara_phantom_create(2, e, 2, &ph), CLARA_ERR_INVALID_ARG,
              "e[1].density");
  e[1].density = 1;
  e[1].phi = INFINITY;
  EXPECT_FAIL(clara_phantom_create(2, e, 2, &ph), CLARA_ERR_INVALID_ARG,
              "e[1].phi");
  e[1].phi = 0;
  ck_assert_int_eq(clara_phantom_create(3, e, 2, &ph), CLARA_OK);
  clara_phantom_destroy(ph);
  clara_phantom_destroy(NULL);
}
END_TEST

START_TEST(test_bad_rasterize) {
  clara_phantom *ph = NULL;
  clara_volume good = {4, 3, 2, {1, 1, 1}, {0, 0, 0}}, v;
  float img[24];
  ck_assert_int_eq(clara_phantom_shepp_logan(3, 10, 1, &ph), CLARA_OK);
  EXPECT_FAIL(clara_phantom_rasterize(NULL, &good, 1, img),
              CLARA_ERR_INVALID_ARG, "ph");
  EXPECT_FAIL(clara_phantom_rasterize(ph, NULL, 1, img), CLARA_ERR_INVALID_ARG,
              "vol");
  EXPECT_FAIL(clara_phantom_rasterize(ph, &good, 1, NULL),
              CLARA_ERR_INVALID_ARG, "image");
  EXPECT_FAIL(clara_phantom_rasterize(ph, &good, 0, img), CLARA_ERR_INVALID_ARG,
              "supersample");
  EXPECT_FAIL(clara_phantom_rasterize(ph, &good, -1, img),
              CLARA_ERR_INVALID_ARG, "supersample");
  EXPECT_FAIL(clara_phantom_rasterize(ph, &good, 65, img),
              CLARA_ERR_INVALID_ARG, "supersample");
  v = good;
  v.nx = 0;
  EXPECT_FAIL(clara_phantom_rasterize(ph, &v, 1, img), CLARA_ERR_INVALID_ARG,
              "vol->nx");
  ck_assert_str_eq(clara_last_error(),
                   "clara_phantom_rasterize: vol->nx: must be > 0, got 0");
  v = good;
  v.ny = -3;
  EXPECT_FAIL(clara_phantom_rasterize(ph, &v, 1, img), CLARA_ERR_INVALID_ARG,
              "vol->ny");
  v = good;
  v.nz = 0;
  EXPECT_FAIL(clara_phantom_rasterize(ph, &v, 1, img), CLARA_ERR_INVALID_ARG,
              "vol->nz");
  v = good;
  v.nx = v.ny = v.nz = INT_MAX;
  EXPECT_FAIL(clara_phantom_rasterize(ph, &v, 1, img), CLARA_ERR_INVALID_ARG,
              "overflow");
  v = good;
  v.voxel[0] = 0;
  EXPECT_FAIL(clara_phantom_rasterize(ph, &v, 1, img), CLARA_ERR_INVALID_ARG,
              "vol->voxel[0]");
  v = good;
  v.voxel[1] = -1;
  EXPECT_FAIL(clara_phantom_rasterize(ph, &v, 1, img), CLARA_ERR_INVALID_ARG,
              "vol->voxel[1]");
  v = good;
  v.voxel[2] = NAN;
  EXPECT_FAIL(clara_phantom_rasterize(ph, &v, 1, img), CLARA_ERR_INVALID_ARG,
              "vol->voxel[2]");
  v = good;
  v.center[1] = INFINITY;
  EXPECT_FAIL(clara_phantom_rasterize(ph, &v, 1, img), CLARA_ERR_INVALID_ARG,
              "vol->center[1]");
  v = good;
  v.center[2] = NAN;
  EXPECT_FAIL(clara_phantom_rasterize(ph, &v, 1, img), CLARA_ERR_INVALID_ARG,
              "vol->center[2]");
  ck_assert_int_eq(clara_phantom_rasterize(ph, &good, 64, img), CLARA_OK);
  clara_phantom_destroy(ph);
}
END_TEST

START_TEST(test_bad_project) {
  clara_phantom *ph = NULL;
  const float angles[] = {0.0f, 1.0f};
  const float bad_angles[] = {0.0f, NAN};
  clara_ct_geometry good = geometry(CLARA_GEOM_CONE, 2, 2, 3, angles), g;
  float out[12];
  ck_assert_int_eq(clara_phantom_shepp_logan(2, 10, 1, &ph), CLARA_OK);
  EXPECT_FAIL(clara_phantom_project(NULL, &good, out), CLARA_ERR_INVALID_ARG,
              "ph");
  EXPECT_FAIL(clara_phantom_project(ph, NULL, out), CLARA_ERR_INVALID_ARG,
              "geom");
  EXPECT_FAIL(clara_phantom_project(ph, &good, NULL), CLARA_ERR_INVALID_ARG,
              "projections");
  /* geometry errors: the status and message of clara_geometry_check */
  g = good;
  g.views = 0;
  EXPECT_FAIL(clara_phantom_project(ph, &g, out), clara_geometry_check(&g),
              "views");
  ck_assert_int_eq(clara_geometry_check(&g), CLARA_ERR_INVALID_ARG);
  g = good;
  g.cols = -1;
  EXPECT_FAIL(clara_phantom_project(ph, &g, out), CLARA_ERR_INVALID_ARG,
              "cols");
  g = good;
  g.angles = NULL;
  EXPECT_FAIL(clara_phantom_project(ph, &g, out), CLARA_ERR_INVALID_ARG,
              "angles");
  g = good;
  g.angles = bad_angles;
  EXPECT_FAIL(clara_phantom_project(ph, &g, out), CLARA_ERR_INVALID_ARG,
              "angles[1]");
  g = good;
  g.det_spacing[1] = 0;
  EXPECT_FAIL(clara_phantom_project(ph, &g, out), CLARA_ERR_INVALID_ARG,
              "det_spacing");
  g = good;
  g.source_to_detector = g.source_to_iso;
  EXPECT_FAIL(clara_phantom_project(ph, &g, out), CLARA_ERR_INVALID_ARG,
              "source_to_detector");
  g = good;
  g.kind = (clara_geometry_kind)7;
  EXPECT_FAIL(clara_phantom_project(ph, &g, out), CLARA_ERR_INVALID_ARG,
              "kind");
  g = good;
  g.kind = CLARA_GEOM_FAN_ARC;
  g.det_spacing[1] = 1.0; /* radians: 3 columns reach 1 rad, fine */
  ck_assert_int_eq(clara_phantom_project(ph, &g, out), CLARA_OK);
  g.det_spacing[1] = 2.0; /* reach 2 rad: past pi/2 */
  EXPECT_FAIL(clara_phantom_project(ph, &g, out), CLARA_ERR_INVALID_ARG, "fan");
  ck_assert_int_eq(clara_phantom_project(ph, &good, out), CLARA_OK);
  clara_phantom_destroy(ph);
}
END_TEST

static Suite *phantom_suite(void) {
  Suite *s = suite_create("phantom");
  TCase *proj = tcase_create("project");
  TCase *rast = tcase_create("rasterize");
  TCase *args = tcase_create("arguments");
  tcase_set_timeout(proj, 600);
  tcase_set_timeout(rast, 600);
  tcase_add_test(proj, test_disc_parallel);
  tcase_add_test(proj, test_ellipse_parallel);
  tcase_add_test(proj, test_ellipsoid_parallel_rows);
  tcase_add_test(proj, test_fan_flat_brute);
  tcase_add_test(proj, test_fan_arc_brute);
  tcase_add_test(proj, test_cone_brute);
  tcase_add_test(proj, test_cone_2d_brute);
  tcase_add_test(proj, test_fan_parallel_2d);
  tcase_add_test(proj, test_fan_parallel_3d);
  tcase_add_test(proj, test_spheres_all_geometries);
  tcase_add_test(proj, test_rows_identical_2d);
  tcase_add_test(proj, test_shepp_logan_table);
  tcase_add_test(rast, test_shepp_logan_values);
  tcase_add_test(rast, test_raster_points_2d);
  tcase_add_test(rast, test_raster_points_3d);
  tcase_add_test(rast, test_raster_mass);
  tcase_add_test(args, test_bad_create);
  tcase_add_test(args, test_bad_rasterize);
  tcase_add_test(args, test_bad_project);
  suite_add_tcase(s, proj);
  suite_add_tcase(s, rast);
  suite_add_tcase(s, args);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(phantom_suite());
  int failed;
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
