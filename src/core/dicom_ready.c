/* dicom_ready.c -- 16-bit stored values, rescale and window for DICOM. */
#include "internal.h"

#include <math.h>
#include <stdint.h>

#define CT_INTERCEPT (-1024.0)
#define CT_WINDOW_CENTER 40.0
#define CT_WINDOW_WIDTH 400.0
#define SCALED_MAX 32000.0
#define HIST_BINS 65536 /* one per int16 value */

static clara_status check_args(const char *who, const char *name,
                               const void *in, size_t n, const void *stored,
                               const void *out) {
  if (!in)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: %s is NULL", who, name);
  if (!stored)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: stored is NULL", who);
  if (!out)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: out is NULL", who);
  if (n == 0)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: n: must be > 0, got 0", who);
  return CLARA_OK;
}

/* Rounds half away from zero and clamps to int16; *clip is -1, 0 or 1. */
static int16_t to_int16(double v, int *clip) {
  double r = round(v); /* C's round(): halfway cases away from zero */
  if (r < (double)INT16_MIN) {
    *clip = -1;
    return INT16_MIN;
  }
  if (r > (double)INT16_MAX) {
    *clip = 1;
    return INT16_MAX;
  }
  *clip = 0;
  return (int16_t)r;
}

clara_status clara_dicom_ready_ct(const float *hu, size_t n, int16_t *stored,
                                  clara_dicom_scaling *out) {
  static const char who[] = "clara_dicom_ready_ct";
  clara_dicom_scaling s = {0};
  float lo, hi;
  clara_status st = check_args(who, "hu", hu, n, stored, out);
  if (st != CLARA_OK)
    return st;
  /* Everything is checked before anything is written. */
  lo = hi = hu[0];
  for (size_t i = 0; i < n; i++) {
    float v = hu[i];
    if (isnan(v))
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: hu[%zu]: must not be NaN, got %g", who, i,
                        (double)v);
    if (v < lo)
      lo = v;
    if (v > hi)
      hi = v;
  }
  for (size_t i = 0; i < n; i++) {
    int clip;
    stored[i] = to_int16((double)hu[i] - CT_INTERCEPT, &clip);
    if (clip < 0)
      s.clipped_low++;
    else if (clip > 0)
      s.clipped_high++;
  }
  s.slope = 1.0;
  s.intercept = CT_INTERCEPT;
  s.window_center = CT_WINDOW_CENTER;
  s.window_width = CT_WINDOW_WIDTH;
  s.min = lo;
  s.max = hi;
  *out = s;
  return CLARA_OK;
}

/* The stored value of nearest rank k (1-based) in the histogram. */
static int hist_rank(const size_t *hist, size_t k) {
  size_t seen = 0;
  for (int b = 0; b < HIST_BINS; b++) {
    seen += hist[b];
    if (seen >= k)
      return b + INT16_MIN;
  }
  return INT16_MAX; /* not reached: k <= n */
}

/* Nearest-rank percentile: the ceil(p n)-th smallest, at least the first. */
static size_t nearest_rank(double p, size_t n) {
  double k = ceil(p * (double)n);
  return k < 1.0 ? 1 : (size_t)k;
}

clara_status clara_dicom_ready_scaled(const float *image, size_t n,
                                      int16_t *stored,
                                      clara_dicom_scaling *out) {
  static const char who[] = "clara_dicom_ready_scaled";
  clara_dicom_scaling s = {0};
  float lo, hi;
  double m, slope, p1, p99;
  size_t *hist;
  clara_status st = check_args(who, "image", image, n, stored, out);
  if (st != CLARA_OK)
    return st;
  lo = hi = image[0];
  for (size_t i = 0; i < n; i++) {
    float v = image[i];
    if (!isfinite(v))
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: image[%zu]: must be finite, got %g", who, i,
                        (double)v);
    if (v < lo)
      lo = v;
    if (v > hi)
      hi = v;
  }
  hist = clara_xcalloc(HIST_BINS, sizeof *hist, "clara_dicom_ready_scaled");
  if (!hist)
    return CLARA_ERR_OUT_OF_MEMORY;
  m = fmax(fabs((double)lo), fabs((double)hi));
  slope = m > 0.0 ? m / SCALED_MAX : 1.0;
  for (size_t i = 0; i < n; i++) {
    int clip; /* |image / slope| <= 32000.5: never clipped */
    int16_t q = to_int16((double)image[i] / slope, &clip);
    stored[i] = q;
    hist[(int)q - INT16_MIN]++;
  }
  p1 = slope * hist_rank(hist, nearest_rank(0.01, n));
  p99 = slope * hist_rank(hist, nearest_rank(0.99, n));
  clara_aligned_free(hist);
  s.slope = slope;
  s.intercept = 0.0;
  s.window_center = 0.5 * (p1 + p99);
  s.window_width = fmax(p99 - p1, slope);
  s.min = lo;
  s.max = hi;
  *out = s;
  return CLARA_OK;
}

CLARA_API clara_status clara_dicom_plane_of(const clara_volume *vol,
                                            int slice, clara_dicom_plane *out) {
  static const char who[] = "clara_dicom_plane_of";
  clara_dicom_plane p;
  if (!vol || !out)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: %s is NULL", who,
                      !vol ? "vol" : "out");
  if (vol->nx <= 0 || vol->ny <= 0 || vol->nz <= 0)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: vol->nx, ny and nz must be > 0, got %d, %d and %d",
                      who, vol->nx, vol->ny, vol->nz);
  for (int i = 0; i < 3; ++i) {
    if (!isfinite(vol->voxel[i]) || !(vol->voxel[i] > 0))
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: vol->voxel[%d]: must be finite and > 0, got %g",
                        who, i, vol->voxel[i]);
    if (!isfinite(vol->center[i]))
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: vol->center[%d]: must be finite, got %g", who, i,
                        vol->center[i]);
  }
  if (slice < 0 || slice >= vol->nz)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: slice: must be in 0..%d, got %d", who, vol->nz - 1,
                      slice);
  p.pixel_spacing[0] = vol->voxel[1];
  p.pixel_spacing[1] = vol->voxel[0];
  p.slice_thickness = vol->voxel[2];
  p.orientation[0] = 1;
  p.orientation[1] = 0;
  p.orientation[2] = 0;
  p.orientation[3] = 0;
  p.orientation[4] = 1;
  p.orientation[5] = 0;
  p.position[0] = clara_voxel_coord(0, vol->nx, vol->voxel[0], vol->center[0]);
  p.position[1] = clara_voxel_coord(0, vol->ny, vol->voxel[1], vol->center[1]);
  p.position[2] =
      clara_voxel_coord(slice, vol->nz, vol->voxel[2], vol->center[2]);
  p.slice_location = p.position[2];
  *out = p;
  return CLARA_OK;
}
