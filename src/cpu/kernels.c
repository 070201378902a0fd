/* kernels.c -- CPU back-projection inner loops, written for the
 * auto-vectoriser: no branches in the loop bodies, restrict pointers,
 * clamped indices instead of bounds checks. `make vec-report` prints what
 * GCC vectorised. Each kernel is cloned for AVX-512, AVX2 and baseline
 * x86-64 and picked at load time. */
#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&         \
    !defined(CLARA_NO_CLONES)
#define CLARA_CLONES                                                           \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLARA_CLONES
#endif

static inline float clampf(float x, float hi) {
  x = x < 0.0f ? 0.0f : x;
  return x > hi ? hi : x;
}

CLARA_CLONES
void kern_bp_row_parallel(float *restrict out, const float *restrict line,
                          int nx, float a, float b, float cmax) {
  for (int ix = 0; ix < nx; ix++) {
    float c = clampf(a * (float)ix + b, cmax);
    int i0 = (int)c;
    float f = c - (float)i0;
    out[ix] += line[i0] + f * (line[i0 + 1] - line[i0]);
  }
}

CLARA_CLONES
void kern_bp_row_fan_flat(float *restrict out, const float *restrict line,
                          int nx, float at, float bt, float al, float bl,
                          float k, float c0, float rs2, float cmax) {
  for (int ix = 0; ix < nx; ix++) {
    float t = at * (float)ix + bt;
    float inv = 1.0f / (al * (float)ix + bl);
    float c = clampf(t * k * inv + c0, cmax);
    int i0 = (int)c;
    float f = c - (float)i0;
    out[ix] += rs2 * inv * inv * (line[i0] + f * (line[i0 + 1] - line[i0]));
  }
}

/* atan for any finite z, to about 2e-7 rad: fold |z| > 1 with
 * atan(z) = pi/2 - atan(1/z), then |x| > tan(pi/8) with
 * atan(x) = pi/4 + atan((x-1)/(x+1)), leaving |y| <= tan(pi/8) for a Taylor
 * series to y^15 (truncation below 2e-8). Branch-free for vectorising. */
static inline float atan_approx(float z) {
  float az = z < 0.0f ? -z : z;
  int big = az > 1.0f;
  float x = big ? 1.0f / az : az;
  int mid = x > 0.41421356f;
  float y = mid ? (x - 1.0f) / (x + 1.0f) : x;
  float y2 = y * y;
  float p = -1.0f / 15.0f;
  p = p * y2 + 1.0f / 13.0f;
  p = p * y2 - 1.0f / 11.0f;
  p = p * y2 + 1.0f / 9.0f;
  p = p * y2 - 1.0f / 7.0f;
  p = p * y2 + 1.0f / 5.0f;
  p = p * y2 - 1.0f / 3.0f;
  p = p * y2 + 1.0f;
  float r = y * p + (mid ? 0.78539816f : 0.0f);
  r = big ? 1.57079633f - r : r;
  return z < 0.0f ? -r : r;
}

float kern_atan(float z) { return atan_approx(z); }

CLARA_CLONES
void kern_bp_row_fan_arc(float *restrict out, const float *restrict line,
                         int nx, float at, float bt, float al, float bl,
                         float k, float c0, float rs2, float cmax) {
  for (int ix = 0; ix < nx; ix++) {
    float t = at * (float)ix + bt;
    float l = al * (float)ix + bl;
    float c = clampf(atan_approx(t / l) * k + c0, cmax);
    int i0 = (int)c;
    float f = c - (float)i0;
    out[ix] +=
        rs2 / (t * t + l * l) * (line[i0] + f * (line[i0 + 1] - line[i0]));
  }
}

CLARA_CLONES
void kern_bp_rows_cone(float *restrict out, long zstride, int nzb,
                       const float *restrict proj, int w, int nx, float at,
                       float bt, float al, float bl, float ku, float cu0,
                       float kv, float rv0, float z0, float dz, float rs2,
                       float cmax, float rmax, int *restrict col,
                       float *restrict scratch) {
  float *restrict fu = scratch;
  float *restrict wt = scratch + nx;
  float *restrict kl = scratch + 2 * nx;
  /* What does not depend on z: the column, its fraction, the weight and
   * kv / L, once per voxel column for all nzb slices. */
  for (int ix = 0; ix < nx; ix++) {
    float t = at * (float)ix + bt;
    float inv = 1.0f / (al * (float)ix + bl);
    float c = clampf(t * ku * inv + cu0, cmax);
    int i0 = (int)c;
    col[ix] = i0;
    fu[ix] = c - (float)i0;
    wt[ix] = rs2 * inv * inv;
    kl[ix] = kv * inv;
  }
  for (int iz = 0; iz < nzb; iz++) {
    float z = z0 + (float)iz * dz;
    float *restrict o = out + (long)iz * zstride;
    for (int ix = 0; ix < nx; ix++) {
      float r = clampf(z * kl[ix] + rv0, rmax);
      int r0 = (int)r;
      float fv = r - (float)r0;
      int k = r0 * w + col[ix];
      float top = proj[k] + fu[ix] * (proj[k + 1] - proj[k]);
      float bot = proj[k + w] + fu[ix] * (proj[k + w + 1] - proj[k + w]);
      o[ix] += wt[ix] * (top + fv * (bot - top));
    }
  }
}
