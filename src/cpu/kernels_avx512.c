/* kernels_avx512.c -- AVX-512 versions of the 2D back-projection rows.
 *
 * The portable kernels (kernels.c) read line[i0] and line[i0 + 1] for every
 * pixel, which the compiler turns into gathers. Along an image row the
 * detector coordinate moves monotonically and by at most about one column
 * per pixel, so the 16 lanes of a vector read from a window of at most 32
 * consecutive samples: two aligned-free loads and two in-register permutes
 * (vpermt2ps) replace the two 16-lane gathers. Rows whose window is wider
 * (voxels much coarser than the detector) fall back to hardware gathers.
 *
 * The window start comes from the first and last lane, computed in scalar,
 * with one column of margin on each side against rounding differences; the
 * span test keeps every permute index within [0, 31]. Lines carry
 * CLARA_LINE_TAIL zero samples after the data so the window never reads
 * past them. Chosen at plan time when the CPU has AVX-512F (see
 * fbp_cpu.c). */
#include "kernels.h"

#if CLARA_HAVE_AVX512_KERNELS

#include <immintrin.h>

#pragma GCC target("avx512f,avx512dq,fma")

static inline float clamp1(float x, float hi) {
  x = x < 0.0f ? 0.0f : x;
  return x > hi ? hi : x;
}

/* Linear interpolation of 16 clamped coordinates c (first lane cf, last
 * lane cl, a monotonic run) in a padded line. */
static inline __m512 lerp16(const float *restrict line, __m512 c, float cf,
                            float cl) {
  __m512i i0 = _mm512_cvttps_epi32(c);
  __m512 f = _mm512_sub_ps(c, _mm512_cvtepi32_ps(i0));
  float lo = cf < cl ? cf : cl, hi = cf < cl ? cl : cf;
  int base = (int)lo - 1;
  __m512 v0, v1;
  if (base < 0)
    base = 0;
  if ((int)hi + 2 - base <= 31) {
    __m512i idx = _mm512_sub_epi32(i0, _mm512_set1_epi32(base));
    __m512 w0 = _mm512_loadu_ps(line + base);
    __m512 w1 = _mm512_loadu_ps(line + base + 16);
    v0 = _mm512_permutex2var_ps(w0, idx, w1);
    v1 = _mm512_permutex2var_ps(w0, _mm512_add_epi32(idx, _mm512_set1_epi32(1)),
                                w1);
  } else {
    v0 = _mm512_i32gather_ps(i0, line, 4);
    v1 = _mm512_i32gather_ps(_mm512_add_epi32(i0, _mm512_set1_epi32(1)), line,
                             4);
  }
  return _mm512_fmadd_ps(f, _mm512_sub_ps(v1, v0), v0);
}

static inline __m512 clamp16(__m512 c, float cmax) {
  return _mm512_min_ps(_mm512_max_ps(c, _mm512_setzero_ps()),
                       _mm512_set1_ps(cmax));
}

static inline __m512 lanes(int ix) {
  return _mm512_add_ps(
      _mm512_set1_ps((float)ix),
      _mm512_set_ps(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0));
}

void kern_bp_row_parallel_avx512(float *restrict out,
                                 const float *restrict line, int nx, float a,
                                 float b, float cmax) {
  int ix = 0;
  for (; ix + 16 <= nx; ix += 16) {
    __m512 c = clamp16(
        _mm512_fmadd_ps(_mm512_set1_ps(a), lanes(ix), _mm512_set1_ps(b)), cmax);
    float cf = clamp1(a * (float)ix + b, cmax);
    float cl = clamp1(a * (float)(ix + 15) + b, cmax);
    __m512 o = _mm512_loadu_ps(out + ix);
    _mm512_storeu_ps(out + ix, _mm512_add_ps(o, lerp16(line, c, cf, cl)));
  }
  if (ix < nx)
    kern_bp_row_parallel(out + ix, line, nx - ix, a, a * (float)ix + b, cmax);
}

void kern_bp_row_fan_flat_avx512(float *restrict out,
                                 const float *restrict line, int nx, float at,
                                 float bt, float al, float bl, float k,
                                 float c0, float rs2, float cmax) {
  int ix = 0;
  for (; ix + 16 <= nx; ix += 16) {
    __m512 x = lanes(ix);
    __m512 t = _mm512_fmadd_ps(_mm512_set1_ps(at), x, _mm512_set1_ps(bt));
    __m512 inv = _mm512_div_ps(
        _mm512_set1_ps(1.0f),
        _mm512_fmadd_ps(_mm512_set1_ps(al), x, _mm512_set1_ps(bl)));
    __m512 c = clamp16(_mm512_fmadd_ps(_mm512_mul_ps(t, _mm512_set1_ps(k)), inv,
                                       _mm512_set1_ps(c0)),
                       cmax);
    float cf =
        clamp1((at * (float)ix + bt) * k / (al * (float)ix + bl) + c0, cmax);
    float cl = clamp1(
        (at * (float)(ix + 15) + bt) * k / (al * (float)(ix + 15) + bl) + c0,
        cmax);
    __m512 w = _mm512_mul_ps(_mm512_set1_ps(rs2), _mm512_mul_ps(inv, inv));
    __m512 o = _mm512_loadu_ps(out + ix);
    _mm512_storeu_ps(out + ix, _mm512_fmadd_ps(w, lerp16(line, c, cf, cl), o));
  }
  if (ix < nx)
    kern_bp_row_fan_flat(out + ix, line, nx - ix, at, at * (float)ix + bt, al,
                         al * (float)ix + bl, k, c0, rs2, cmax);
}

/* The atan of kernels.c, on 16 lanes. */
static inline __m512 atan16(__m512 z) {
  const __m512 one = _mm512_set1_ps(1.0f);
  __m512 az = _mm512_abs_ps(z);
  __mmask16 big = _mm512_cmp_ps_mask(az, one, _CMP_GT_OQ);
  __m512 x = _mm512_mask_div_ps(az, big, one, az);
  __mmask16 mid =
      _mm512_cmp_ps_mask(x, _mm512_set1_ps(0.41421356f), _CMP_GT_OQ);
  __m512 y =
      _mm512_mask_div_ps(x, mid, _mm512_sub_ps(x, one), _mm512_add_ps(x, one));
  __m512 y2 = _mm512_mul_ps(y, y);
  __m512 p = _mm512_set1_ps(-1.0f / 15.0f);
  p = _mm512_fmadd_ps(p, y2, _mm512_set1_ps(1.0f / 13.0f));
  p = _mm512_fmadd_ps(p, y2, _mm512_set1_ps(-1.0f / 11.0f));
  p = _mm512_fmadd_ps(p, y2, _mm512_set1_ps(1.0f / 9.0f));
  p = _mm512_fmadd_ps(p, y2, _mm512_set1_ps(-1.0f / 7.0f));
  p = _mm512_fmadd_ps(p, y2, _mm512_set1_ps(1.0f / 5.0f));
  p = _mm512_fmadd_ps(p, y2, _mm512_set1_ps(-1.0f / 3.0f));
  p = _mm512_fmadd_ps(p, y2, one);
  __m512 r = _mm512_mul_ps(y, p);
  r = _mm512_mask_add_ps(r, mid, r, _mm512_set1_ps(0.78539816f));
  r = _mm512_mask_sub_ps(r, big, _mm512_set1_ps(1.57079633f), r);
  /* copy the sign of z */
  return _mm512_castsi512_ps(
      _mm512_or_si512(_mm512_castps_si512(r),
                      _mm512_and_si512(_mm512_castps_si512(z),
                                       _mm512_set1_epi32((int)0x80000000u))));
}

void kern_bp_row_fan_arc_avx512(float *restrict out, const float *restrict line,
                                int nx, float at, float bt, float al, float bl,
                                float k, float c0, float rs2, float cmax) {
  int ix = 0;
  for (; ix + 16 <= nx; ix += 16) {
    __m512 x = lanes(ix);
    __m512 t = _mm512_fmadd_ps(_mm512_set1_ps(at), x, _mm512_set1_ps(bt));
    __m512 l = _mm512_fmadd_ps(_mm512_set1_ps(al), x, _mm512_set1_ps(bl));
    __m512 c = clamp16(_mm512_fmadd_ps(atan16(_mm512_div_ps(t, l)),
                                       _mm512_set1_ps(k), _mm512_set1_ps(c0)),
                       cmax);
    /* first and last lanes, in scalar; atanf is monotonic like atan16 */
    float tf = at * (float)ix + bt, lf = al * (float)ix + bl;
    float tl = at * (float)(ix + 15) + bt, ll = al * (float)(ix + 15) + bl;
    float cf = clamp1(kern_atan(tf / lf) * k + c0, cmax);
    float cl = clamp1(kern_atan(tl / ll) * k + c0, cmax);
    __m512 w = _mm512_div_ps(_mm512_set1_ps(rs2),
                             _mm512_fmadd_ps(t, t, _mm512_mul_ps(l, l)));
    __m512 o = _mm512_loadu_ps(out + ix);
    _mm512_storeu_ps(out + ix, _mm512_fmadd_ps(w, lerp16(line, c, cf, cl), o));
  }
  if (ix < nx)
    kern_bp_row_fan_arc(out + ix, line, nx - ix, at, at * (float)ix + bt, al,
                        al * (float)ix + bl, k, c0, rs2, cmax);
}

/* Cone beam, vectorised along z: the 16 lanes are 16 slices of one voxel
 * column (x, y), which share the detector column, its fraction, the weight
 * and 1/L; only the detector row moves, linearly in z. With the filtered
 * view stored column-major ('pt', column c + 1 at pt + (c + 1) * ht, rows
 * padded like the lines), the 16 rows of a column lie in a window of 32
 * samples: four loads and four permutes per 16 voxel updates. acc[ix][16]
 * accumulates the slices of voxel ix of the tile. */
void kern_bp_cone_z16_avx512(float *restrict acc, const float *restrict pt,
                             int ht, int nx, float at, float bt, float al,
                             float bl, float ku, float cu0, float kv, float rv0,
                             float z0, float dz, float rs2, float cmax,
                             float rmax) {
  const __m512 zl = _mm512_fmadd_ps(
      _mm512_set1_ps(dz),
      _mm512_set_ps(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
      _mm512_set1_ps(z0));
  const __m512i one = _mm512_set1_epi32(1);
  const float zlast = z0 + 15.0f * dz;
  for (int ix = 0; ix < nx; ix++) {
    float t = at * (float)ix + bt;
    float inv = 1.0f / (al * (float)ix + bl);
    float c = clamp1(t * ku * inv + cu0, cmax);
    int i0 = (int)c;
    float fu = c - (float)i0;
    float kl = kv * inv;
    __m512 r = clamp16(
        _mm512_fmadd_ps(zl, _mm512_set1_ps(kl), _mm512_set1_ps(rv0)), rmax);
    __m512i r0 = _mm512_cvttps_epi32(r);
    __m512 fv = _mm512_sub_ps(r, _mm512_cvtepi32_ps(r0));
    float rf = clamp1(z0 * kl + rv0, rmax), rl = clamp1(zlast * kl + rv0, rmax);
    float lo = rf < rl ? rf : rl, hi = rf < rl ? rl : rf;
    int base = (int)lo - 1;
    const float *c0 = pt + (long)i0 * ht, *c1 = c0 + ht;
    __m512 t0, b0, t1, b1;
    if (base < 0)
      base = 0;
    if ((int)hi + 2 - base <= 31) {
      __m512i idx = _mm512_sub_epi32(r0, _mm512_set1_epi32(base));
      __m512i idx1 = _mm512_add_epi32(idx, one);
      __m512 a0 = _mm512_loadu_ps(c0 + base),
             a1 = _mm512_loadu_ps(c0 + base + 16);
      __m512 e0 = _mm512_loadu_ps(c1 + base),
             e1 = _mm512_loadu_ps(c1 + base + 16);
      t0 = _mm512_permutex2var_ps(a0, idx, a1);
      b0 = _mm512_permutex2var_ps(a0, idx1, a1);
      t1 = _mm512_permutex2var_ps(e0, idx, e1);
      b1 = _mm512_permutex2var_ps(e0, idx1, e1);
    } else {
      __m512i r1 = _mm512_add_epi32(r0, one);
      t0 = _mm512_i32gather_ps(r0, c0, 4);
      b0 = _mm512_i32gather_ps(r1, c0, 4);
      t1 = _mm512_i32gather_ps(r0, c1, 4);
      b1 = _mm512_i32gather_ps(r1, c1, 4);
    }
    {
      __m512 vfu = _mm512_set1_ps(fu);
      __m512 top = _mm512_fmadd_ps(vfu, _mm512_sub_ps(t1, t0), t0);
      __m512 bot = _mm512_fmadd_ps(vfu, _mm512_sub_ps(b1, b0), b0);
      __m512 val = _mm512_fmadd_ps(fv, _mm512_sub_ps(bot, top), top);
      __m512 a = _mm512_loadu_ps(acc + 16 * ix);
      _mm512_storeu_ps(
          acc + 16 * ix,
          _mm512_fmadd_ps(_mm512_set1_ps(rs2 * inv * inv), val, a));
    }
  }
}

#else
/* Keeps the translation unit non-empty where AVX-512 kernels are not built. */
typedef int clara_no_avx512_kernels;
#endif
