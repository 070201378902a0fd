/* kernels.h -- the CPU back-projection inner loops (src/cpu/kernels.c).
 *
 * Each kernel accumulates one filtered view into one image row (or, for the
 * cone beam, into the same row of several slices). Filtered lines are
 * padded: data column c sits at index c + 1 of a line of width
 * cols + 1 + CLARA_LINE_TAIL, with zeros at 0 and from cols + 1 on, so that
 * clamping the column coordinate to [0, cols + 1] makes every out-of-detector
 * sample read zero without a branch. Cone views also get a zero row above
 * and two below. The kernels are plain C loops written for the
 * vectoriser and compiled for several instruction sets (target_clones). */
#ifndef CLARA_CPU_KERNELS_H
#define CLARA_CPU_KERNELS_H

#include "internal.h"

/* Zero samples after a filtered line's data: the clamp reaches column
 * cols + 1 (padded index) and the AVX-512 window reads 32 samples from
 * there. A padded line holds 1 + cols + CLARA_LINE_TAIL floats. */
#define CLARA_LINE_TAIL 35

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLARA_HAVE_AVX512_KERNELS 1
#else
#define CLARA_HAVE_AVX512_KERNELS 0
#endif

/* Parallel beam: column coordinate c = a*ix + b (padded units). */
CLARA_HIDDEN void kern_bp_row_parallel(float *restrict out,
                                       const float *restrict line, int nx,
                                       float a, float b, float cmax);

/* Flat fan: t = at*ix + bt, L = al*ix + bl; c = t * k / L + c0 with
 * k = R_d/du; weight (R_s / L)^2 = rs2 / L^2. */
CLARA_HIDDEN void kern_bp_row_fan_flat(float *restrict out,
                                       const float *restrict line, int nx,
                                       float at, float bt, float al, float bl,
                                       float k, float c0, float rs2,
                                       float cmax);

/* Arc fan: gamma = atan(t / L); c = gamma * k + c0 with k = 1/dgamma;
 * weight rs2 / (t^2 + L^2). */
CLARA_HIDDEN void kern_bp_row_fan_arc(float *restrict out,
                                      const float *restrict line, int nx,
                                      float at, float bt, float al, float bl,
                                      float k, float c0, float rs2, float cmax);

/* Cone beam, one view into nzb rows (slices z0.. of stride 'zstride' floats
 * in 'out'): for voxel ix, t and L as for the flat fan, column
 * c = t*ku/L + cu0, row r = z*kv/L + rv0 with z = z0 + iz*dz; bilinear
 * interpolation in the padded view 'proj' (width w, cmax/rmax the clamp
 * limits); weight rs2 / L^2. 'col' holds nx ints and 'scratch' 3*nx floats. */
CLARA_HIDDEN void kern_bp_rows_cone(float *restrict out, long zstride, int nzb,
                                    const float *restrict proj, int w, int nx,
                                    float at, float bt, float al, float bl,
                                    float ku, float cu0, float kv, float rv0,
                                    float z0, float dz, float rs2, float cmax,
                                    float rmax, int *restrict col,
                                    float *restrict scratch);

/* The atan approximation the arc kernels use (max error about 2e-7 rad). */
CLARA_HIDDEN float kern_atan(float z);

#if CLARA_HAVE_AVX512_KERNELS
/* AVX-512 versions (kernels_avx512.c); same arguments and results to
 * rounding. Only call them when the CPU has AVX-512F. */
CLARA_HIDDEN void kern_bp_row_parallel_avx512(float *restrict out,
                                              const float *restrict line,
                                              int nx, float a, float b,
                                              float cmax);
CLARA_HIDDEN void kern_bp_row_fan_flat_avx512(float *restrict out,
                                              const float *restrict line,
                                              int nx, float at, float bt,
                                              float al, float bl, float k,
                                              float c0, float rs2, float cmax);
CLARA_HIDDEN void kern_bp_row_fan_arc_avx512(float *restrict out,
                                             const float *restrict line, int nx,
                                             float at, float bt, float al,
                                             float bl, float k, float c0,
                                             float rs2, float cmax);
/* Cone beam along z (see kernels_avx512.c): 'pt' is one filtered view
 * stored column-major with column stride 'ht'; acc holds nx x 16 floats. */
CLARA_HIDDEN void
kern_bp_cone_z16_avx512(float *restrict acc, const float *restrict pt, int ht,
                        int nx, float at, float bt, float al, float bl,
                        float ku, float cu0, float kv, float rv0, float z0,
                        float dz, float rs2, float cmax, float rmax);
#endif

#endif
