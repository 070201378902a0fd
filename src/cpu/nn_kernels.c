/* nn_kernels.c -- the CPU denoiser's convolution kernels (see
 * nn_kernels.h for the layouts and the Winograd scheme).
 *
 * Three sets of Winograd kernels: portable C, written as loops over 16
 * channels that the vectoriser turns into SIMD (compiled for x86-64-v4,
 * x86-64-v3 and baseline and picked at load time, like kernels.c),
 * AVX-512 intrinsics, and AVX2 + FMA intrinsics for x86-64 CPUs without
 * AVX-512 (the same scheme on 8-float vectors; the portable code compiled
 * for x86-64-v3 ran at 1.4x PyTorch there, see bench/RESULTS.md).
 * clara_nn_kernels_pick() chooses at load time. The AVX-512 GEMM keeps a block
 * of NT tiles x NV vectors of 16 output channels in 24 zmm accumulators; each
 * input channel costs NV loads of U, NT broadcasts of V and NT x NV FMAs.
 * Within a block every accumulator sums the input channels in order, so a
 * tile's result does not depend on where in a block it falls. On the
 * development machine (AMD EPYC, family 26) it runs at the FMA peak (about 235
 * GFLOP/s per core with V, U and M in cache) and takes two thirds of the time;
 * the AVX-512 transforms keep each 6x6 patch in registers (unrolled loops) and
 * prefetch the input two tiles ahead, because six row streams arriving
 * from L3 otherwise stalled them (2.5x).
 *
 * The transforms, with the interpolation points 0, 1, -1, 2, -2, infinity:
 *   B^T d: r0 = 4 d0 - 5 d2 + d4        r3 = (d4 - d2) + 2 (d3 - d1)
 *          r1 = (d3 + d4) - 4 (d1 + d2) r4 = (d4 - d2) - 2 (d3 - d1)
 *          r2 = (d4 - d3) + 4 (d1 - d2) r5 = 4 d1 - 5 d3 + d5
 *   A^T m: y0 = m0 + (m1 + m2) + (m3 + m4)
 *          y1 = (m1 - m2) + 2 (m3 - m4)
 *          y2 = (m1 + m2) + 4 (m3 + m4)
 *          y3 = (m1 - m2) + 8 (m3 - m4) + m5
 * applied along x, then along y (index xi = 6 a + b, a along y). */
#include "nn_kernels.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&         \
    !defined(CLARA_NO_CLONES)
#define NN_CLONES                                                              \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define NN_CLONES
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define NN_HAVE_AVX512 1
#else
#define NN_HAVE_AVX512 0
#endif

#define V16 CLARA_NN_CVEC

static int round_up(int n, int m) { return (n + m - 1) / m * m; }

/* ---- Portable Winograd --------------------------------------------------- */

/* B^T along one axis for 16 channels: d[j][l] -> r[a][l] (six rows each,
 * by pointer). */
static inline __attribute__((always_inline)) void
bt6_16(const float *restrict d0, const float *restrict d1,
       const float *restrict d2, const float *restrict d3,
       const float *restrict d4, const float *restrict d5, float *restrict r0,
       float *restrict r1, float *restrict r2, float *restrict r3,
       float *restrict r4, float *restrict r5) {
  for (int l = 0; l < V16; ++l) {
    float e42 = d4[l] - d2[l], e31 = 2.0f * (d3[l] - d1[l]);
    r0[l] = 4.0f * d0[l] - 5.0f * d2[l] + d4[l];
    r1[l] = (d3[l] + d4[l]) - 4.0f * (d1[l] + d2[l]);
    r2[l] = (d4[l] - d3[l]) + 4.0f * (d1[l] - d2[l]);
    r3[l] = e42 + e31;
    r4[l] = e42 - e31;
    r5[l] = 4.0f * d1[l] - 5.0f * d3[l] + d5[l];
  }
}

NN_CLONES
static void wino_in_portable(const float *const rows[6], int cs, int tx0,
                             int nt, float *restrict v, size_t vxs) {
  for (int t = 0; t < nt; ++t) {
    size_t off = (size_t)4 * (size_t)(tx0 + t) * (size_t)cs;
    for (int cb = 0; cb < cs; cb += V16) {
      float w[6][6][V16];
      float *o = v + (size_t)t * (size_t)cs + (size_t)cb;
      for (int i = 0; i < 6; ++i) {
        const float *p = rows[i] + off + cb;
        size_t c = (size_t)cs;
        bt6_16(p, p + c, p + 2 * c, p + 3 * c, p + 4 * c, p + 5 * c, w[i][0],
               w[i][1], w[i][2], w[i][3], w[i][4], w[i][5]);
      }
      for (int b = 0; b < 6; ++b)
        bt6_16(w[0][b], w[1][b], w[2][b], w[3][b], w[4][b], w[5][b],
               o + (size_t)b * vxs, o + (size_t)(6 + b) * vxs,
               o + (size_t)(12 + b) * vxs, o + (size_t)(18 + b) * vxs,
               o + (size_t)(24 + b) * vxs, o + (size_t)(30 + b) * vxs);
    }
  }
}

NN_CLONES
static void wino_gemm_portable(const float *restrict v, size_t vxs, int csi,
                               const float *restrict u, int cin,
                               float *restrict m, size_t mxs, int cso, int nt) {
  int ntr = round_up(nt, 4);
  for (int xi = 0; xi < 36; ++xi) {
    const float *vx = v + (size_t)xi * vxs;
    const float *ux = u + (size_t)xi * (size_t)cin * (size_t)cso;
    float *mx = m + (size_t)xi * mxs;
    for (int t = 0; t < ntr; t += 4)
      for (int cb = 0; cb < cso; cb += V16) {
        /* Four tiles x 16 channels; one loop over the channels, so that
         * the vectoriser works along it for any vector width. */
        float a0[V16] = {0}, a1[V16] = {0}, a2[V16] = {0}, a3[V16] = {0};
        const float *v0 = vx + (size_t)t * (size_t)csi;
        float *m0 = mx + (size_t)t * (size_t)cso + (size_t)cb;
        for (int ci = 0; ci < cin; ++ci) {
          const float *ur = ux + (size_t)ci * (size_t)cso + cb;
          float b0 = v0[ci], b1 = v0[(size_t)csi + (size_t)ci];
          float b2 = v0[2 * (size_t)csi + (size_t)ci];
          float b3 = v0[3 * (size_t)csi + (size_t)ci];
          for (int l = 0; l < V16; ++l) {
            a0[l] += b0 * ur[l];
            a1[l] += b1 * ur[l];
            a2[l] += b2 * ur[l];
            a3[l] += b3 * ur[l];
          }
        }
        for (int l = 0; l < V16; ++l) {
          m0[l] = a0[l];
          m0[(size_t)cso + (size_t)l] = a1[l];
          m0[2 * (size_t)cso + (size_t)l] = a2[l];
          m0[3 * (size_t)cso + (size_t)l] = a3[l];
        }
      }
  }
}

NN_CLONES
static void wino_out_portable(const float *restrict m, size_t mxs,
                              float *const rows[4], int cs, int tx0, int nt,
                              int nx, const float *restrict bias, int relu) {
  for (int t = 0; t < nt; ++t) {
    int x0 = 4 * (tx0 + t);
    int ncol = nx - x0 < 4 ? nx - x0 : 4;
    for (int cb = 0; cb < cs; cb += V16) {
      float w[6][4][V16], y[4][4][V16];
      for (int a = 0; a < 6; ++a) {
        const float *p =
            m + (size_t)t * (size_t)cs + (size_t)cb + (size_t)(6 * a) * mxs;
        for (int l = 0; l < V16; ++l) {
          float m0 = p[l], m1 = p[mxs + l], m2 = p[2 * mxs + l];
          float m3 = p[3 * mxs + l], m4 = p[4 * mxs + l], m5 = p[5 * mxs + l];
          float s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;
          w[a][0][l] = m0 + s12 + s34;
          w[a][1][l] = d12 + 2.0f * d34;
          w[a][2][l] = s12 + 4.0f * s34;
          w[a][3][l] = d12 + 8.0f * d34 + m5;
        }
      }
      for (int c = 0; c < 4; ++c)
        for (int l = 0; l < V16; ++l) {
          float m0 = w[0][c][l], m1 = w[1][c][l], m2 = w[2][c][l];
          float m3 = w[3][c][l], m4 = w[4][c][l], m5 = w[5][c][l];
          float s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;
          float bl = bias[cb + l];
          float y0 = bl + (m0 + s12 + s34), y1 = bl + (d12 + 2.0f * d34);
          float y2 = bl + (s12 + 4.0f * s34), y3 = bl + (d12 + 8.0f * d34 + m5);
          if (relu) {
            y0 = y0 > 0.0f ? y0 : 0.0f;
            y1 = y1 > 0.0f ? y1 : 0.0f;
            y2 = y2 > 0.0f ? y2 : 0.0f;
            y3 = y3 > 0.0f ? y3 : 0.0f;
          }
          y[0][c][l] = y0;
          y[1][c][l] = y1;
          y[2][c][l] = y2;
          y[3][c][l] = y3;
        }
      for (int r = 0; r < 4; ++r) {
        float *o;
        if (!rows[r])
          continue;
        o = rows[r] + (size_t)(x0 + 1) * (size_t)cs + (size_t)cb;
        for (int c = 0; c < ncol; ++c)
          for (int l = 0; l < V16; ++l)
            o[(size_t)c * (size_t)cs + (size_t)l] = y[r][c][l];
      }
    }
  }
}

/* ---- Direct convolution, portable ---------------------------------------- */

NN_CLONES
void clara_nn_direct_co(const float *const rows[3], int csi, int cin,
                        const float *restrict w, const float *restrict bias,
                        int cpo, int relu, float *restrict out, int cso, int x0,
                        int x1) {
  size_t tap = (size_t)cin * (size_t)cpo;
  for (int x = x0; x < x1; ++x)
    for (int cb = 0; cb < cpo && cb < cso; cb += V16) {
      float acc[V16];
      int nl = cso - cb < V16 ? cso - cb : V16;
      for (int l = 0; l < V16; ++l)
        acc[l] = bias[cb + l];
      for (int kh = 0; kh < 3; ++kh)
        for (int kw = 0; kw < 3; ++kw) {
          const float *p = rows[kh] + (size_t)(x + kw) * (size_t)csi;
          const float *wt = w + (size_t)(kh * 3 + kw) * tap + (size_t)cb;
          for (int ci = 0; ci < cin; ++ci) {
            float a = p[ci];
            const float *wr = wt + (size_t)ci * (size_t)cpo;
            for (int l = 0; l < V16; ++l)
              acc[l] += a * wr[l];
          }
        }
      if (relu)
        for (int l = 0; l < V16; ++l)
          acc[l] = acc[l] > 0.0f ? acc[l] : 0.0f;
      for (int l = 0; l < nl; ++l)
        out[(size_t)x * (size_t)cso + (size_t)(cb + l)] = acc[l];
    }
}

NN_CLONES
void clara_nn_direct_ci(const float *const rows[3], int csi,
                        const float *restrict w, const float *restrict bias,
                        int cout, int relu, float *restrict out, int cso,
                        int x0, int x1) {
  for (int x = x0; x < x1; ++x) {
    for (int co = 0; co < cout; ++co) {
      float acc[V16] = {0}, s;
      for (int kh = 0; kh < 3; ++kh)
        for (int kw = 0; kw < 3; ++kw) {
          const float *p = rows[kh] + (size_t)(x + kw) * (size_t)csi;
          const float *wt = w + (size_t)(co * 9 + kh * 3 + kw) * (size_t)csi;
          for (int cb = 0; cb < csi; cb += V16)
            for (int l = 0; l < V16; ++l)
              acc[l] += p[cb + l] * wt[cb + l];
        }
      /* A fixed pairwise order, the same for every pixel. */
      for (int h = V16 / 2; h > 0; h /= 2)
        for (int l = 0; l < h; ++l)
          acc[l] += acc[l + h];
      s = bias[co] + acc[0];
      if (relu && s < 0.0f)
        s = 0.0f;
      out[(size_t)x * (size_t)cso + (size_t)co] = s;
    }
    for (int co = cout; co < cso; ++co)
      out[(size_t)x * (size_t)cso + (size_t)co] = 0.0f;
  }
}

const clara_nn_kernels clara_nn_kernels_portable = {
    "portable",        wino_in_portable,   wino_gemm_portable,
    wino_out_portable, clara_nn_direct_co, clara_nn_direct_ci};

/* ---- AVX-512 kernels ----------------------------------------------------- */

#if NN_HAVE_AVX512

#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,fma")

#define NN_AI static inline __attribute__((always_inline))
/* Prefetch distance in tiles. */
#define NN_PF 2

/* B^T along one axis of six vectors (in place). */
NN_AI void bt6(__m512 d[6]) {
  const __m512 c4 = _mm512_set1_ps(4.0f), c5 = _mm512_set1_ps(-5.0f);
  const __m512 m4 = _mm512_set1_ps(-4.0f), c2 = _mm512_set1_ps(2.0f);
  __m512 e42 = _mm512_sub_ps(d[4], d[2]);
  __m512 e31 = _mm512_mul_ps(c2, _mm512_sub_ps(d[3], d[1]));
  __m512 r0 = _mm512_fmadd_ps(c4, d[0], _mm512_fmadd_ps(c5, d[2], d[4]));
  __m512 r1 =
      _mm512_fmadd_ps(m4, _mm512_add_ps(d[1], d[2]), _mm512_add_ps(d[3], d[4]));
  __m512 r2 =
      _mm512_fmadd_ps(c4, _mm512_sub_ps(d[1], d[2]), _mm512_sub_ps(d[4], d[3]));
  __m512 r5 = _mm512_fmadd_ps(c4, d[1], _mm512_fmadd_ps(c5, d[3], d[5]));
  d[0] = r0;
  d[1] = r1;
  d[2] = r2;
  d[3] = _mm512_add_ps(e42, e31);
  d[4] = _mm512_sub_ps(e42, e31);
  d[5] = r5;
}

/* A^T along one axis: six vectors in, four out. */
NN_AI void at6(const __m512 m[6], __m512 y[4]) {
  __m512 s12 = _mm512_add_ps(m[1], m[2]), d12 = _mm512_sub_ps(m[1], m[2]);
  __m512 s34 = _mm512_add_ps(m[3], m[4]), d34 = _mm512_sub_ps(m[3], m[4]);
  y[0] = _mm512_add_ps(_mm512_add_ps(m[0], s12), s34);
  y[1] = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), d34, d12);
  y[2] = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), s34, s12);
  y[3] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0f), d34, d12), m[5]);
}

/* The loops below are unrolled completely (#pragma GCC unroll), so that
 * the 6x6 patch stays in registers between the two passes instead of
 * going through the stack. */
static void wino_in_avx512(const float *const rows[6], int cs, int tx0, int nt,
                           float *restrict v, size_t vxs) {
  for (int t = 0; t < nt; ++t) {
    size_t off = (size_t)4 * (size_t)(tx0 + t) * (size_t)cs;
    for (int cb = 0; cb < cs; cb += V16) {
      __m512 w[6][6];
      float *o = v + (size_t)t * (size_t)cs + (size_t)cb;
#pragma GCC unroll 6
      for (int i = 0; i < 6; ++i) {
        const float *p = rows[i] + off + cb;
        /* The 4 new pixels of the tile NN_PF tiles ahead (the hardware
         * prefetchers do not follow six row streams well enough). */
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j)
          _mm_prefetch(
              (const char *)(p + (size_t)(4 * NN_PF + 2 + j) * (size_t)cs),
              _MM_HINT_T0);
#pragma GCC unroll 6
        for (int j = 0; j < 6; ++j)
          w[i][j] = _mm512_loadu_ps(p + (size_t)j * (size_t)cs);
        bt6(w[i]);
      }
#pragma GCC unroll 6
      for (int b = 0; b < 6; ++b) {
        __m512 c[6];
#pragma GCC unroll 6
        for (int i = 0; i < 6; ++i)
          c[i] = w[i][b];
        bt6(c);
#pragma GCC unroll 6
        for (int a = 0; a < 6; ++a)
          _mm512_store_ps(o + (size_t)(6 * a + b) * vxs, c[a]);
      }
    }
  }
}

/* M[t][co .. co + 16 NV) for NT tiles: the register-blocked core. The
 * loops over tiles and vectors are unrolled completely, so that the
 * accumulators live in registers. */
NN_AI void gemm_block(const float *restrict v, int csi, const float *restrict u,
                      int cso, int cin, float *restrict m, const int nt_,
                      const int nv) {
  __m512 acc[24];
#pragma GCC unroll 24
  for (int i = 0; i < nt_ * nv; ++i)
    acc[i] = _mm512_setzero_ps();
  for (int ci = 0; ci < cin; ++ci) {
    const float *ur = u + (size_t)ci * (size_t)cso;
    const float *vc = v + ci;
    __m512 uu[4];
#pragma GCC unroll 4
    for (int j = 0; j < nv; ++j)
      uu[j] = _mm512_load_ps(ur + 16 * j);
#pragma GCC unroll 24
    for (int t = 0; t < nt_; ++t) {
      __m512 b = _mm512_set1_ps(vc[(size_t)t * (size_t)csi]);
#pragma GCC unroll 4
      for (int j = 0; j < nv; ++j)
        acc[t * nv + j] = _mm512_fmadd_ps(b, uu[j], acc[t * nv + j]);
    }
  }
#pragma GCC unroll 24
  for (int t = 0; t < nt_; ++t)
#pragma GCC unroll 4
    for (int j = 0; j < nv; ++j)
      _mm512_store_ps(m + (size_t)t * (size_t)cso + 16 * j, acc[t * nv + j]);
}

static void gemm_6x4(const float *v, int csi, const float *u, int cso, int cin,
                     float *m) {
  gemm_block(v, csi, u, cso, cin, m, 6, 4);
}
static void gemm_8x3(const float *v, int csi, const float *u, int cso, int cin,
                     float *m) {
  gemm_block(v, csi, u, cso, cin, m, 8, 3);
}
static void gemm_12x2(const float *v, int csi, const float *u, int cso, int cin,
                      float *m) {
  gemm_block(v, csi, u, cso, cin, m, 12, 2);
}
static void gemm_24x1(const float *v, int csi, const float *u, int cso, int cin,
                      float *m) {
  gemm_block(v, csi, u, cso, cin, m, 24, 1);
}

static void wino_gemm_avx512(const float *restrict v, size_t vxs, int csi,
                             const float *restrict u, int cin,
                             float *restrict m, size_t mxs, int cso, int nt) {
  int nvec = cso / V16;
  for (int xi = 0; xi < 36; ++xi) {
    const float *vx = v + (size_t)xi * vxs;
    const float *ux = u + (size_t)xi * (size_t)cin * (size_t)cso;
    float *mx = m + (size_t)xi * mxs;
    int j = 0;
    for (; nvec - j >= 4; j += 4)
      for (int t = 0; t < nt; t += 6)
        gemm_6x4(vx + (size_t)t * (size_t)csi, csi, ux + 16 * j, cso, cin,
                 mx + (size_t)t * (size_t)cso + 16 * j);
    switch (nvec - j) {
    case 3:
      for (int t = 0; t < nt; t += 8)
        gemm_8x3(vx + (size_t)t * (size_t)csi, csi, ux + 16 * j, cso, cin,
                 mx + (size_t)t * (size_t)cso + 16 * j);
      break;
    case 2:
      for (int t = 0; t < nt; t += 12)
        gemm_12x2(vx + (size_t)t * (size_t)csi, csi, ux + 16 * j, cso, cin,
                  mx + (size_t)t * (size_t)cso + 16 * j);
      break;
    case 1:
      for (int t = 0; t < nt; t += 24)
        gemm_24x1(vx + (size_t)t * (size_t)csi, csi, ux + 16 * j, cso, cin,
                  mx + (size_t)t * (size_t)cso + 16 * j);
      break;
    default:
      break;
    }
  }
}

static void wino_out_avx512(const float *restrict m, size_t mxs,
                            float *const rows[4], int cs, int tx0, int nt,
                            int nx, const float *restrict bias, int relu) {
  const __m512 zero = _mm512_setzero_ps();
  for (int t = 0; t < nt; ++t) {
    int x0 = 4 * (tx0 + t);
    int ncol = nx - x0 < 4 ? nx - x0 : 4;
    for (int cb = 0; cb < cs; cb += V16) {
      const float *p = m + (size_t)t * (size_t)cs + (size_t)cb;
      __m512 w[6][4], bv = _mm512_load_ps(bias + cb);
#pragma GCC unroll 6
      for (int a = 0; a < 6; ++a) {
        __m512 r[6];
#pragma GCC unroll 6
        for (int b = 0; b < 6; ++b)
          r[b] = _mm512_load_ps(p + (size_t)(6 * a + b) * mxs);
        at6(r, w[a]);
      }
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {
        __m512 col[6], y[4];
        if (c >= ncol)
          break;
#pragma GCC unroll 6
        for (int a = 0; a < 6; ++a)
          col[a] = w[a][c];
        at6(col, y);
#pragma GCC unroll 4
        for (int r = 0; r < 4; ++r) {
          __m512 o = _mm512_add_ps(bv, y[r]);
          if (relu)
            o = _mm512_max_ps(o, zero);
          if (rows[r]) {
            float *q = rows[r] + (size_t)(x0 + c + 1) * (size_t)cs + (size_t)cb;
            __builtin_prefetch(q + (size_t)(4 * NN_PF) * (size_t)cs, 1, 3);
            _mm512_storeu_ps(q, o);
          }
        }
      }
    }
  }
}

/* The first layer (one input channel): 16 output channels at a time, their
 * 9 taps held in registers, along the row. */
static void direct_co_avx512(const float *const rows[3], int csi, int cin,
                             const float *restrict w,
                             const float *restrict bias, int cpo, int relu,
                             float *restrict out, int cso, int x0, int x1) {
  const __m512 zero = _mm512_setzero_ps();
  if (cin != 1 || cso != cpo) {
    clara_nn_direct_co(rows, csi, cin, w, bias, cpo, relu, out, cso, x0, x1);
    return;
  }
  for (int cb = 0; cb < cpo; cb += V16) {
    __m512 wk[9], bv = _mm512_load_ps(bias + cb);
#pragma GCC unroll 9
    for (int t = 0; t < 9; ++t)
      wk[t] = _mm512_load_ps(w + (size_t)t * (size_t)cpo + (size_t)cb);
    for (int x = x0; x < x1; ++x) {
      __m512 acc = bv;
#pragma GCC unroll 3
      for (int kh = 0; kh < 3; ++kh) {
        const float *p = rows[kh] + (size_t)x * (size_t)csi;
#pragma GCC unroll 3
        for (int kw = 0; kw < 3; ++kw)
          acc = _mm512_fmadd_ps(_mm512_set1_ps(p[(size_t)kw * (size_t)csi]),
                                wk[kh * 3 + kw], acc);
      }
      if (relu)
        acc = _mm512_max_ps(acc, zero);
      _mm512_store_ps(out + (size_t)x * (size_t)cso + (size_t)cb, acc);
    }
  }
}

/* One pixel's dot products for output channel co (in order of tap and
 * channel block), then a fixed horizontal sum. NP pixels share the weight
 * loads and give independent FMA chains; each pixel's arithmetic is the
 * same whatever NP. */
NN_AI void direct_ci_px(const float *const rows[3], int csi,
                        const float *restrict wc, float bias, int relu,
                        float *restrict out, int cso, int x, const int np) {
  __m512 acc[8];
  float s;
#pragma GCC unroll 8
  for (int k = 0; k < np; ++k)
    acc[k] = _mm512_setzero_ps();
  for (int kh = 0; kh < 3; ++kh)
    for (int kw = 0; kw < 3; ++kw) {
      const float *p = rows[kh] + (size_t)(x + kw) * (size_t)csi;
      const float *wt = wc + (size_t)(kh * 3 + kw) * (size_t)csi;
      for (int cb = 0; cb < csi; cb += V16) {
        __m512 wv = _mm512_load_ps(wt + cb);
#pragma GCC unroll 8
        for (int k = 0; k < np; ++k)
          acc[k] = _mm512_fmadd_ps(
              _mm512_loadu_ps(p + (size_t)k * (size_t)csi + (size_t)cb), wv,
              acc[k]);
      }
    }
#pragma GCC unroll 8
  for (int k = 0; k < np; ++k) {
    s = bias + _mm512_reduce_add_ps(acc[k]);
    if (relu && s < 0.0f)
      s = 0.0f;
    out[(size_t)(x + k) * (size_t)cso] = s;
  }
}

/* Few output channels (the last layer): vectorised over the input
 * channels, 8 pixels at a time. */
static void direct_ci_avx512(const float *const rows[3], int csi,
                             const float *restrict w,
                             const float *restrict bias, int cout, int relu,
                             float *restrict out, int cso, int x0, int x1) {
  for (int co = 0; co < cout; ++co) {
    const float *wc = w + (size_t)co * 9 * (size_t)csi;
    int x = x0;
    for (; x + 8 <= x1; x += 8)
      direct_ci_px(rows, csi, wc, bias[co], relu, out + co, cso, x, 8);
    for (; x < x1; ++x)
      direct_ci_px(rows, csi, wc, bias[co], relu, out + co, cso, x, 1);
  }
  for (int x = x0; x < x1; ++x)
    for (int co = cout; co < cso; ++co)
      out[(size_t)x * (size_t)cso + (size_t)co] = 0.0f;
}

#pragma GCC pop_options

static const clara_nn_kernels avx512_kernels = {
    "avx512",        wino_in_avx512,   wino_gemm_avx512,
    wino_out_avx512, direct_co_avx512, direct_ci_avx512};

const clara_nn_kernels *clara_nn_kernels_avx512(void) {
  return &avx512_kernels;
}

#else

const clara_nn_kernels *clara_nn_kernels_avx512(void) { return NULL; }

#endif

/* ---- AVX2 kernels -------------------------------------------------------- */

/* The same scheme with 8-float vectors, for x86-64 CPUs without AVX-512
 * (AVX2 and FMA: Intel since Haswell, AMD since Zen 1). A 16-channel block
 * is two vectors. With 16 ymm registers the GEMM core is 6 tiles x 16
 * channels (12 accumulators, 2 weight vectors, 1 broadcast). Every output
 * element is summed in the same order, with the same fused operations, as
 * in the AVX-512 kernels. */

#if NN_HAVE_AVX512

#pragma GCC push_options
#pragma GCC target("avx2,fma")

NN_AI void bt6_8(__m256 d[6]) {
  const __m256 c4 = _mm256_set1_ps(4.0f), c5 = _mm256_set1_ps(-5.0f);
  const __m256 m4 = _mm256_set1_ps(-4.0f), c2 = _mm256_set1_ps(2.0f);
  __m256 e42 = _mm256_sub_ps(d[4], d[2]);
  __m256 e31 = _mm256_mul_ps(c2, _mm256_sub_ps(d[3], d[1]));
  __m256 r0 = _mm256_fmadd_ps(c4, d[0], _mm256_fmadd_ps(c5, d[2], d[4]));
  __m256 r1 =
      _mm256_fmadd_ps(m4, _mm256_add_ps(d[1], d[2]), _mm256_add_ps(d[3], d[4]));
  __m256 r2 =
      _mm256_fmadd_ps(c4, _mm256_sub_ps(d[1], d[2]), _mm256_sub_ps(d[4], d[3]));
  __m256 r5 = _mm256_fmadd_ps(c4, d[1], _mm256_fmadd_ps(c5, d[3], d[5]));
  d[0] = r0;
  d[1] = r1;
  d[2] = r2;
  d[3] = _mm256_add_ps(e42, e31);
  d[4] = _mm256_sub_ps(e42, e31);
  d[5] = r5;
}

NN_AI void at6_8(const __m256 m[6], __m256 y[4]) {
  __m256 s12 = _mm256_add_ps(m[1], m[2]), d12 = _mm256_sub_ps(m[1], m[2]);
  __m256 s34 = _mm256_add_ps(m[3], m[4]), d34 = _mm256_sub_ps(m[3], m[4]);
  y[0] = _mm256_add_ps(_mm256_add_ps(m[0], s12), s34);
  y[1] = _mm256_fmadd_ps(_mm256_set1_ps(2.0f), d34, d12);
  y[2] = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), s34, s12);
  y[3] = _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8.0f), d34, d12), m[5]);
}

static void wino_in_avx2(const float *const rows[6], int cs, int tx0, int nt,
                         float *restrict v, size_t vxs) {
  for (int t = 0; t < nt; ++t) {
    size_t off = (size_t)4 * (size_t)(tx0 + t) * (size_t)cs;
    for (int cb = 0; cb < cs; cb += 8) {
      __m256 w[6][6];
      float *o = v + (size_t)t * (size_t)cs + (size_t)cb;
#pragma GCC unroll 6
      for (int i = 0; i < 6; ++i) {
        const float *p = rows[i] + off + cb;
        if ((cb & 15) == 0)
#pragma GCC unroll 4
          for (int j = 0; j < 4; ++j)
            _mm_prefetch(
                (const char *)(p + (size_t)(4 * NN_PF + 2 + j) * (size_t)cs),
                _MM_HINT_T0);
#pragma GCC unroll 6
        for (int j = 0; j < 6; ++j)
          w[i][j] = _mm256_loadu_ps(p + (size_t)j * (size_t)cs);
        bt6_8(w[i]);
      }
#pragma GCC unroll 6
      for (int b = 0; b < 6; ++b) {
        __m256 c[6];
#pragma GCC unroll 6
        for (int i = 0; i < 6; ++i)
          c[i] = w[i][b];
        bt6_8(c);
#pragma GCC unroll 6
        for (int a = 0; a < 6; ++a)
          _mm256_store_ps(o + (size_t)(6 * a + b) * vxs, c[a]);
      }
    }
  }
}

/* M[t][co .. co + 16) for 6 tiles. */
static void gemm_6x2_avx2(const float *restrict v, int csi,
                          const float *restrict u, int cso, int cin,
                          float *restrict m) {
  __m256 acc[12];
#pragma GCC unroll 12
  for (int i = 0; i < 12; ++i)
    acc[i] = _mm256_setzero_ps();
  for (int ci = 0; ci < cin; ++ci) {
    const float *ur = u + (size_t)ci * (size_t)cso;
    const float *vc = v + ci;
    __m256 u0 = _mm256_load_ps(ur), u1 = _mm256_load_ps(ur + 8);
#pragma GCC unroll 6
    for (int t = 0; t < 6; ++t) {
      __m256 b = _mm256_broadcast_ss(vc + (size_t)t * (size_t)csi);
      acc[2 * t] = _mm256_fmadd_ps(b, u0, acc[2 * t]);
      acc[2 * t + 1] = _mm256_fmadd_ps(b, u1, acc[2 * t + 1]);
    }
  }
#pragma GCC unroll 6
  for (int t = 0; t < 6; ++t) {
    _mm256_store_ps(m + (size_t)t * (size_t)cso, acc[2 * t]);
    _mm256_store_ps(m + (size_t)t * (size_t)cso + 8, acc[2 * t + 1]);
  }
}

static void wino_gemm_avx2(const float *restrict v, size_t vxs, int csi,
                           const float *restrict u, int cin, float *restrict m,
                           size_t mxs, int cso, int nt) {
  for (int xi = 0; xi < 36; ++xi) {
    const float *vx = v + (size_t)xi * vxs;
    const float *ux = u + (size_t)xi * (size_t)cin * (size_t)cso;
    float *mx = m + (size_t)xi * mxs;
    /* Tile blocks outermost: the 6 V rows stay in L1 while every block of
     * 16 output channels uses them. */
    for (int t = 0; t < nt; t += 6)
      for (int cb = 0; cb < cso; cb += V16)
        gemm_6x2_avx2(vx + (size_t)t * (size_t)csi, csi, ux + cb, cso, cin,
                      mx + (size_t)t * (size_t)cso + cb);
  }
}

static void wino_out_avx2(const float *restrict m, size_t mxs,
                          float *const rows[4], int cs, int tx0, int nt, int nx,
                          const float *restrict bias, int relu) {
  const __m256 zero = _mm256_setzero_ps();
  for (int t = 0; t < nt; ++t) {
    int x0 = 4 * (tx0 + t);
    int ncol = nx - x0 < 4 ? nx - x0 : 4;
    for (int cb = 0; cb < cs; cb += 8) {
      const float *p = m + (size_t)t * (size_t)cs + (size_t)cb;
      __m256 w[6][4], bv = _mm256_load_ps(bias + cb);
#pragma GCC unroll 6
      for (int a = 0; a < 6; ++a) {
        __m256 r[6];
#pragma GCC unroll 6
        for (int b = 0; b < 6; ++b)
          r[b] = _mm256_load_ps(p + (size_t)(6 * a + b) * mxs);
        at6_8(r, w[a]);
      }
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {
        __m256 col[6], y[4];
        if (c >= ncol)
          break;
#pragma GCC unroll 6
        for (int a = 0; a < 6; ++a)
          col[a] = w[a][c];
        at6_8(col, y);
#pragma GCC unroll 4
        for (int r = 0; r < 4; ++r) {
          __m256 o = _mm256_add_ps(bv, y[r]);
          if (relu)
            o = _mm256_max_ps(o, zero);
          if (rows[r])
            _mm256_storeu_ps(
                rows[r] + (size_t)(x0 + c + 1) * (size_t)cs + (size_t)cb, o);
        }
      }
    }
  }
}

/* The first layer (one input channel): 8 output channels at a time. */
static void direct_co_avx2(const float *const rows[3], int csi, int cin,
                           const float *restrict w, const float *restrict bias,
                           int cpo, int relu, float *restrict out, int cso,
                           int x0, int x1) {
  const __m256 zero = _mm256_setzero_ps();
  if (cin != 1 || cso != cpo) {
    clara_nn_direct_co(rows, csi, cin, w, bias, cpo, relu, out, cso, x0, x1);
    return;
  }
  for (int cb = 0; cb < cpo; cb += 8) {
    __m256 wk[9], bv = _mm256_load_ps(bias + cb);
#pragma GCC unroll 9
    for (int t = 0; t < 9; ++t)
      wk[t] = _mm256_load_ps(w + (size_t)t * (size_t)cpo + (size_t)cb);
    for (int x = x0; x < x1; ++x) {
      __m256 acc = bv;
#pragma GCC unroll 3
      for (int kh = 0; kh < 3; ++kh) {
        const float *p = rows[kh] + (size_t)x * (size_t)csi;
#pragma GCC unroll 3
        for (int kw = 0; kw < 3; ++kw)
          acc =
              _mm256_fmadd_ps(_mm256_broadcast_ss(p + (size_t)kw * (size_t)csi),
                              wk[kh * 3 + kw], acc);
      }
      if (relu)
        acc = _mm256_max_ps(acc, zero);
      _mm256_store_ps(out + (size_t)x * (size_t)cso + (size_t)cb, acc);
    }
  }
}

/* Sum of the 8 lanes in a fixed pairwise order. */
NN_AI float hsum8(__m256 a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

NN_AI void direct_ci_px_avx2(const float *const rows[3], int csi,
                             const float *restrict wc, float bias, int relu,
                             float *restrict out, int cso, int x,
                             const int np) {
  __m256 acc[8];
  float s;
#pragma GCC unroll 8
  for (int k = 0; k < np; ++k)
    acc[k] = _mm256_setzero_ps();
  for (int kh = 0; kh < 3; ++kh)
    for (int kw = 0; kw < 3; ++kw) {
      const float *p = rows[kh] + (size_t)(x + kw) * (size_t)csi;
      const float *wt = wc + (size_t)(kh * 3 + kw) * (size_t)csi;
      for (int cb = 0; cb < csi; cb += 8) {
        __m256 wv = _mm256_load_ps(wt + cb);
#pragma GCC unroll 8
        for (int k = 0; k < np; ++k)
          acc[k] = _mm256_fmadd_ps(
              _mm256_loadu_ps(p + (size_t)k * (size_t)csi + (size_t)cb), wv,
              acc[k]);
      }
    }
#pragma GCC unroll 8
  for (int k = 0; k < np; ++k) {
    s = bias + hsum8(acc[k]);
    if (relu && s < 0.0f)
      s = 0.0f;
    out[(size_t)(x + k) * (size_t)cso] = s;
  }
}

static void direct_ci_avx2(const float *const rows[3], int csi,
                           const float *restrict w, const float *restrict bias,
                           int cout, int relu, float *restrict out, int cso,
                           int x0, int x1) {
  for (int co = 0; co < cout; ++co) {
    const float *wc = w + (size_t)co * 9 * (size_t)csi;
    int x = x0;
    for (; x + 8 <= x1; x += 8)
      direct_ci_px_avx2(rows, csi, wc, bias[co], relu, out + co, cso, x, 8);
    for (; x < x1; ++x)
      direct_ci_px_avx2(rows, csi, wc, bias[co], relu, out + co, cso, x, 1);
  }
  for (int x = x0; x < x1; ++x)
    for (int co = cout; co < cso; ++co)
      out[(size_t)x * (size_t)cso + (size_t)co] = 0.0f;
}

#pragma GCC pop_options

static const clara_nn_kernels avx2_kernels = {"avx2",         wino_in_avx2,
                                              wino_gemm_avx2, wino_out_avx2,
                                              direct_co_avx2, direct_ci_avx2};

const clara_nn_kernels *clara_nn_kernels_avx2(void) { return &avx2_kernels; }

#else

const clara_nn_kernels *clara_nn_kernels_avx2(void) { return NULL; }

#endif

/* ---- Choice -------------------------------------------------------------- */

const clara_nn_kernels *clara_nn_kernels_pick(void) {
  const clara_nn_kernels *best = &clara_nn_kernels_portable;
  const char *want = getenv("CLARA_RECON_CPU_KERNELS");
#if defined(__x86_64__) && defined(__GNUC__)
  const clara_nn_kernels *k512 = NULL, *k2 = NULL;
  if (clara_nn_kernels_avx512() && __builtin_cpu_supports("avx512f"))
    k512 = clara_nn_kernels_avx512();
  if (clara_nn_kernels_avx2() && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("fma"))
    k2 = clara_nn_kernels_avx2();
  best = k512 ? k512 : k2 ? k2 : best;
  if (want && strcmp(want, "avx2") == 0 && k2)
    return k2;
  if (want && strcmp(want, "avx512") == 0 && k512)
    return k512;
#endif
  if (want && strcmp(want, "portable") == 0)
    return &clara_nn_kernels_portable;
  return best;
}
