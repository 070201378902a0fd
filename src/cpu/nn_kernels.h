/* nn_kernels.h -- the CPU denoiser's convolution kernels
 * (src/cpu/nn_kernels.c), driven by src/cpu/nn_cpu.c.
 *
 * Activations are stored channels-last: an image row is [wp][cs] floats,
 * pixel x at (x + 1) * cs, so that pixel -1 (the left zero padding) is at
 * index 0 and the row pointer handed to a kernel is the row's start. cs,
 * the channel stride, is the channel count rounded up to a multiple of
 * CLARA_NN_CVEC (the channels beyond the real ones hold zeros), or 1 for
 * the network's input image. Rows outside the image are a shared row of
 * zeros, and the columns after the last pixel are zeros too, so no kernel
 * tests a border.
 *
 * Winograd F(4x4, 3x3) (Lavin & Gray 2016, interpolation points 0, 1, -1,
 * 2, -2 and infinity): an output tile of 4x4 pixels comes from a 6x6 input
 * patch d, Y = A^T [ sum_i (G g_i G^T) . (B^T d_i B) ] A, so a layer is an
 * input transform (B^T d B per tile and channel), 36 independent GEMMs
 * M[xi] = V[xi] U[xi] (tiles x cin times cin x cout), and an output
 * transform (A^T M A, plus bias and ReLU). Tile tx covers pixels
 * 4 tx .. 4 tx + 3 of its rows, so tiles sit on a fixed grid and every
 * pixel's arithmetic is the same whichever task computes it. */
#ifndef CLARA_NN_KERNELS_H
#define CLARA_NN_KERNELS_H

#include "internal.h"

/* Channel padding unit: one AVX-512 vector of floats. */
#define CLARA_NN_CVEC 16
/* The GEMMs may read and write up to this many tiles past 'nt', rounded
 * up: scratch buffers hold a multiple of it. */
#define CLARA_NN_TILE_ROUND 24

/* The Winograd kernels of one instruction set. Layouts:
 *   V: [36][tile][cs_in]  (xi stride vxs floats)
 *   U: [36][cin][cs_out]  (xi stride cin * cs_out)
 *   M: [36][tile][cs_out] (xi stride mxs floats)
 * All of them 64-byte aligned, strides multiples of CLARA_NN_CVEC. */
typedef struct clara_nn_kernels {
  const char *name; /* "avx512", "avx2" or "portable" */
  /* V for tiles tx0 .. tx0 + nt - 1 of the tile row whose 6 input rows
   * (pixel rows 4 ty - 1 .. 4 ty + 4) are 'rows'; every one of the cs
   * channels. */
  void (*wino_in)(const float *const rows[6], int cs, int tx0, int nt,
                  float *restrict v, size_t vxs);
  /* M = V U for nt tiles (computed for nt rounded up to
   * CLARA_NN_TILE_ROUND, so V must hold that many finite rows), summing
   * over the cin real input channels in order. */
  void (*wino_gemm)(const float *restrict v, size_t vxs, int csi,
                    const float *restrict u, int cin, float *restrict m,
                    size_t mxs, int cso, int nt);
  /* Y = A^T M A + bias, ReLU if asked, into the output rows (NULL for rows
   * past the image), pixels x < nx only; all cs channels (bias [cs],
   * zero-padded). */
  void (*wino_out)(const float *restrict m, size_t mxs, float *const rows[4],
                   int cs, int tx0, int nt, int nx, const float *restrict bias,
                   int relu);
  /* The direct convolutions below (same arguments). */
  void (*direct_co)(const float *const rows[3], int csi, int cin,
                    const float *restrict w, const float *restrict bias,
                    int cpo, int relu, float *restrict out, int cso, int x0,
                    int x1);
  void (*direct_ci)(const float *const rows[3], int csi,
                    const float *restrict w, const float *restrict bias,
                    int cout, int relu, float *restrict out, int cso, int x0,
                    int x1);
} clara_nn_kernels;

CLARA_HIDDEN extern const clara_nn_kernels clara_nn_kernels_portable;
/* NULL where this build has no AVX-512 kernels; check the CPU first. */
CLARA_HIDDEN const clara_nn_kernels *clara_nn_kernels_avx512(void);
/* AVX2 + FMA; NULL where this build has none; check the CPU first. */
CLARA_HIDDEN const clara_nn_kernels *clara_nn_kernels_avx2(void);
/* The kernels a denoiser loaded now uses: the widest set this CPU runs,
 * or the one CLARA_RECON_CPU_KERNELS names (portable, avx2 or avx512) if
 * this CPU runs it. */
CLARA_HIDDEN const clara_nn_kernels *clara_nn_kernels_pick(void);

/* Direct 3x3 convolution of pixels x0 .. x1 - 1 of one row, for the layers
 * where Winograd does not pay (one input or output channel): 'rows' are
 * the input rows y - 1, y, y + 1 (cs_in csi), 'out' points at pixel 0 of
 * the output row and gets channels 0 .. cso - 1 of each pixel (stride
 * cso); channels from cout on are written as zeros.
 *
 * _co vectorises over the output channels: w is [9][cin][cpo] (tap
 * kh * 3 + kw, cpo = cout rounded up to CLARA_NN_CVEC, zero-padded), bias
 * [cpo]; cso <= cpo. */
CLARA_HIDDEN void clara_nn_direct_co(const float *const rows[3], int csi,
                                     int cin, const float *restrict w,
                                     const float *restrict bias, int cpo,
                                     int relu, float *restrict out, int cso,
                                     int x0, int x1);
/* _ci vectorises over the input channels (csi a multiple of
 * CLARA_NN_CVEC): w is [cout][9][csi], zero-padded, bias [cout]. */
CLARA_HIDDEN void clara_nn_direct_ci(const float *const rows[3], int csi,
                                     const float *restrict w,
                                     const float *restrict bias, int cout,
                                     int relu, float *restrict out, int cso,
                                     int x0, int x1);

#endif
