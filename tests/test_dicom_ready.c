/* test_dicom_ready.c -- stored values, rescale and window for DICOM. */
#include "clara_recon.h"

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SENTINEL ((int16_t)0x5A5A)

static void fill_sentinel(int16_t *s, size_t n, clara_dicom_scaling *out) {
  for (size_t i = 0; i < n; i++)
    s[i] = SENTINEL;
  memset(out, 0xA5, sizeof *out);
}

static int untouched(const int16_t *s, size_t n,
                     const clara_dicom_scaling *out) {
  clara_dicom_scaling ref;
  memset(&ref, 0xA5, sizeof ref);
  for (size_t i = 0; i < n; i++)
    if (s[i] != SENTINEL)
      return 0;
  return memcmp(out, &ref, sizeof ref) == 0;
}

static int has(const char *needle) {
  return strstr(clara_last_error(), needle) != NULL;
}

START_TEST(ct_known_values) {
  const float hu[] = {-1024.0f,  0.0f,     3071.0f,  40000.0f,
                      -40000.0f, 0.5f,     -1024.5f, -1025.5f,
                      1.4f,      INFINITY, 31743.0f, -33792.0f};
  const int16_t want[] = {0,  1024, 4095, 32767, -32768, 1025,
                          -1, -2,   1025, 32767, 32767,  -32768};
  const size_t n = sizeof hu / sizeof hu[0];
  int16_t s[sizeof hu / sizeof hu[0]];
  clara_dicom_scaling d;
  ck_assert_int_eq(clara_dicom_ready_ct(hu, n, s, &d), CLARA_OK);
  for (size_t i = 0; i < n; i++)
    ck_assert_msg(s[i] == want[i], "hu[%zu] = %g: stored %d, want %d", i,
                  (double)hu[i], s[i], want[i]);
  ck_assert_double_eq(d.slope, 1.0);
  ck_assert_double_eq(d.intercept, -1024.0);
  ck_assert_double_eq(d.window_center, 40.0);
  ck_assert_double_eq(d.window_width, 400.0);
  /* 40000 and +inf above; -40000 below; 31743 / -33792 fit exactly */
  ck_assert_int_eq(d.clipped_high, 2);
  ck_assert_int_eq(d.clipped_low, 1);
  ck_assert_float_eq(d.min, -40000.0f);
  ck_assert(isinf(d.max) && d.max > 0);
}
END_TEST

START_TEST(ct_roundtrip) {
  enum { N = 20000 };
  float *hu = malloc(N * sizeof *hu);
  int16_t *s = malloc(N * sizeof *s);
  clara_dicom_scaling d;
  ck_assert_ptr_nonnull(hu);
  ck_assert_ptr_nonnull(s);
  for (size_t i = 0; i < N; i++)
    hu[i] = -2000.0f + 7000.0f * (float)((i * 7919u) % N) / N + 0.123f;
  ck_assert_int_eq(clara_dicom_ready_ct(hu, N, s, &d), CLARA_OK);
  ck_assert_int_eq(d.clipped_low + d.clipped_high, 0);
  for (size_t i = 0; i < N; i++) {
    double back = s[i] * d.slope + d.intercept;
    ck_assert_msg(fabs(back - hu[i]) <= 0.5 * d.slope, "i %zu: %g vs %g", i,
                  back, (double)hu[i]);
  }
  free(hu);
  free(s);
}
END_TEST

START_TEST(ct_nan_refused) {
  float hu[16];
  int16_t s[16];
  clara_dicom_scaling d;
  for (int i = 0; i < 16; i++)
    hu[i] = (float)i;
  hu[7] = NAN;
  hu[12] = NAN;
  fill_sentinel(s, 16, &d);
  ck_assert_int_eq(clara_dicom_ready_ct(hu, 16, s, &d), CLARA_ERR_INVALID_ARG);
  ck_assert(untouched(s, 16, &d));
  ck_assert_msg(has("clara_dicom_ready_ct") && has("hu[7]"), "%s",
                clara_last_error());
}
END_TEST

START_TEST(scaled_known_values) {
  const float img[] = {0.0f, 8.0f, 4.0f, 2.0f, 1e-4f, 7.99f};
  const size_t n = sizeof img / sizeof img[0];
  int16_t s[sizeof img / sizeof img[0]];
  clara_dicom_scaling d;
  ck_assert_int_eq(clara_dicom_ready_scaled(img, n, s, &d), CLARA_OK);
  ck_assert_double_eq_tol(d.slope, 8.0 / 32000.0, 1e-15);
  ck_assert_double_eq(d.intercept, 0.0);
  ck_assert_int_eq(s[0], 0);
  ck_assert_int_eq(s[1], 32000);
  ck_assert_int_eq(s[2], 16000);
  ck_assert_int_eq(s[3], 8000);
  ck_assert_int_eq(s[4], 0); /* 0.4 of a step */
  ck_assert_int_eq(s[5], 31960);
  ck_assert_int_eq(d.clipped_low + d.clipped_high, 0);
  ck_assert_float_eq(d.min, 0.0f);
  ck_assert_float_eq(d.max, 8.0f);
}
END_TEST

START_TEST(scaled_roundtrip_and_negatives) {
  enum { N = 30001 };
  float *img = malloc(N * sizeof *img);
  int16_t *s = malloc(N * sizeof *s);
  clara_dicom_scaling d;
  ck_assert_ptr_nonnull(img);
  ck_assert_ptr_nonnull(s);
  for (size_t i = 0; i < N; i++)
    img[i] = (float)(-10.0 + 15.0 * (double)((i * 104729u) % N) / (N - 1));
  ck_assert_int_eq(clara_dicom_ready_scaled(img, N, s, &d), CLARA_OK);
  ck_assert_double_eq_tol(d.slope, 10.0 / 32000.0, 1e-12);
  ck_assert_float_eq(d.min, -10.0f);
  ck_assert_float_eq(d.max, 5.0f);
  ck_assert_int_eq(d.clipped_low + d.clipped_high, 0);
  for (size_t i = 0; i < N; i++) {
    double back = s[i] * d.slope + d.intercept;
    ck_assert_msg(fabs(back - img[i]) <= 0.5 * d.slope * (1 + 1e-9),
                  "i %zu: %g vs %g", i, back, (double)img[i]);
    ck_assert(s[i] >= -32000 && s[i] <= 16000);
  }
  free(img);
  free(s);
}
END_TEST

/* 1990 voxels uniform on 0, 0.05, ..., 99.45 plus 10 hot outliers at 1000,
 * shuffled: nearest-rank p1 is the 20th smallest (0.95), p99 the 1980th
 * (98.95); the outliers set the slope but stay out of the window. */
START_TEST(scaled_percentile_window) {
  enum { N = 2000 };
  float img[N];
  int16_t s[N];
  clara_dicom_scaling d;
  double step;
  for (size_t i = 0; i < N; i++) {
    size_t j = (i * 1237u) % N; /* a permutation: gcd(1237, 2000) = 1 */
    img[j] = i < 1990 ? (float)(0.05 * (double)i) : 1000.0f;
  }
  ck_assert_int_eq(clara_dicom_ready_scaled(img, N, s, &d), CLARA_OK);
  step = d.slope;
  ck_assert_double_eq_tol(step, 1000.0 / 32000.0, 1e-12);
  ck_assert_double_eq_tol(d.window_center, 0.5 * (0.95 + 98.95), step);
  ck_assert_double_eq_tol(d.window_width, 98.95 - 0.95, step);
  ck_assert_float_eq(d.max, 1000.0f);
}
END_TEST

START_TEST(scaled_all_zero) {
  float img[9] = {0};
  int16_t s[9];
  clara_dicom_scaling d;
  fill_sentinel(s, 9, &d);
  ck_assert_int_eq(clara_dicom_ready_scaled(img, 9, s, &d), CLARA_OK);
  ck_assert_double_eq(d.slope, 1.0);
  ck_assert_double_eq(d.intercept, 0.0);
  for (int i = 0; i < 9; i++)
    ck_assert_int_eq(s[i], 0);
  ck_assert_double_eq(d.window_center, 0.0);
  ck_assert_double_eq(d.window_width, 1.0);
  ck_assert_float_eq(d.min, 0.0f);
  ck_assert_float_eq(d.max, 0.0f);
}
END_TEST

START_TEST(scaled_nonfinite_refused) {
  float img[10];
  int16_t s[10];
  clara_dicom_scaling d;
  for (int i = 0; i < 10; i++)
    img[i] = (float)i;
  img[3] = NAN;
  fill_sentinel(s, 10, &d);
  ck_assert_int_eq(clara_dicom_ready_scaled(img, 10, s, &d),
                   CLARA_ERR_INVALID_ARG);
  ck_assert(untouched(s, 10, &d));
  ck_assert_msg(has("clara_dicom_ready_scaled") && has("image[3]"), "%s",
                clara_last_error());
  img[3] = 3.0f;
  img[8] = -INFINITY;
  ck_assert_int_eq(clara_dicom_ready_scaled(img, 10, s, &d),
                   CLARA_ERR_INVALID_ARG);
  ck_assert(untouched(s, 10, &d));
  ck_assert_msg(has("image[8]"), "%s", clara_last_error());
}
END_TEST

START_TEST(null_and_empty) {
  float v[2] = {1.0f, 2.0f};
  int16_t s[2] = {SENTINEL, SENTINEL};
  clara_dicom_scaling d;
  ck_assert_int_eq(clara_dicom_ready_ct(NULL, 2, s, &d), CLARA_ERR_INVALID_ARG);
  ck_assert(has("clara_dicom_ready_ct: hu is NULL"));
  ck_assert_int_eq(clara_dicom_ready_ct(v, 2, NULL, &d), CLARA_ERR_INVALID_ARG);
  ck_assert(has("stored is NULL"));
  ck_assert_int_eq(clara_dicom_ready_ct(v, 2, s, NULL), CLARA_ERR_INVALID_ARG);
  ck_assert(has("out is NULL"));
  ck_assert_int_eq(clara_dicom_ready_ct(v, 0, s, &d), CLARA_ERR_INVALID_ARG);
  ck_assert(has("clara_dicom_ready_ct: n: must be > 0, got 0"));
  ck_assert_int_eq(clara_dicom_ready_scaled(NULL, 2, s, &d),
                   CLARA_ERR_INVALID_ARG);
  ck_assert(has("clara_dicom_ready_scaled: image is NULL"));
  ck_assert_int_eq(clara_dicom_ready_scaled(v, 2, NULL, &d),
                   CLARA_ERR_INVALID_ARG);
  ck_assert(has("stored is NULL"));
  ck_assert_int_eq(clara_dicom_ready_scaled(v, 2, s, NULL),
                   CLARA_ERR_INVALID_ARG);
  ck_assert(has("out is NULL"));
  ck_assert_int_eq(clara_dicom_ready_scaled(v, 0, s, &d),
                   CLARA_ERR_INVALID_ARG);
  ck_assert(has("clara_dicom_ready_scaled: n: must be > 0, got 0"));
  ck_assert_int_eq(s[0], SENTINEL);
  ck_assert_int_eq(s[1], SENTINEL);
}
END_TEST

/* Slice positions against the clara_volume convention, worked by hand: 4
 * voxels of 0.5 mm centred on 10 put the first at 10 - 1.5 * 0.5 = 9.25. */
START_TEST(plane_positions) {
  clara_volume v;
  clara_dicom_plane p;
  memset(&v, 0, sizeof v);
  v.nx = 4;
  v.ny = 6;
  v.nz = 3;
  v.voxel[0] = 0.5;
  v.voxel[1] = 0.75;
  v.voxel[2] = 2.0;
  v.center[0] = 10;
  v.center[1] = -3;
  v.center[2] = 100;
  ck_assert_int_eq(clara_dicom_plane_of(&v, 2, &p), CLARA_OK);
  ck_assert_double_eq(p.pixel_spacing[0], 0.75); /* rows: along y */
  ck_assert_double_eq(p.pixel_spacing[1], 0.5);
  ck_assert_double_eq(p.slice_thickness, 2.0);
  ck_assert_double_eq(p.position[0], 9.25);
  ck_assert_double_eq(p.position[1], -3 - 2.5 * 0.75);
  ck_assert_double_eq(p.position[2], 102.0);
  ck_assert_double_eq(p.slice_location, 102.0);
  ck_assert_double_eq(p.orientation[0], 1);
  ck_assert_double_eq(p.orientation[4], 1);
  ck_assert_double_eq(fabs(p.orientation[1]) + fabs(p.orientation[2]) +
                          fabs(p.orientation[3]) + fabs(p.orientation[5]),
                      0);
  ck_assert_int_eq(clara_dicom_plane_of(&v, 0, &p), CLARA_OK);
  ck_assert_double_eq(p.position[2], 98.0);
  ck_assert_int_eq(clara_dicom_plane_of(&v, 3, &p), CLARA_ERR_INVALID_ARG);
  ck_assert(has("slice: must be in 0..2, got 3"));
  ck_assert_int_eq(clara_dicom_plane_of(&v, -1, &p), CLARA_ERR_INVALID_ARG);
  ck_assert_int_eq(clara_dicom_plane_of(NULL, 0, &p), CLARA_ERR_INVALID_ARG);
  ck_assert_int_eq(clara_dicom_plane_of(&v, 0, NULL), CLARA_ERR_INVALID_ARG);
  v.voxel[2] = NAN;
  ck_assert_int_eq(clara_dicom_plane_of(&v, 0, &p), CLARA_ERR_INVALID_ARG);
  ck_assert(has("vol->voxel[2]: must be finite and > 0"));
  v.voxel[2] = 1;
  v.nz = 0;
  ck_assert_int_eq(clara_dicom_plane_of(&v, 0, &p), CLARA_ERR_INVALID_ARG);
}
END_TEST

int main(void) {
  Suite *su = suite_create("dicom_ready");
  TCase *t = tcase_create("dicom_ready");
  SRunner *sr;
  int failed;
  tcase_add_test(t, ct_known_values);
  tcase_add_test(t, ct_roundtrip);
  tcase_add_test(t, ct_nan_refused);
  tcase_add_test(t, scaled_known_values);
  tcase_add_test(t, scaled_roundtrip_and_negatives);
  tcase_add_test(t, scaled_percentile_window);
  tcase_add_test(t, scaled_all_zero);
  tcase_add_test(t, scaled_nonfinite_refused);
  tcase_add_test(t, null_and_empty);
  tcase_add_test(t, plane_positions);
  suite_add_tcase(su, t);
  sr = srunner_create(su);
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
