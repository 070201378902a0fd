/* fbp_cuda.cu -- FBP/FDK on a CUDA device: cuFFT filtering and voxel-driven
 * back-projection, the twin of src/cpu/fbp_cpu.c.
 *
 * Design
 * ------
 * Plan (cuda_fbp_create). Everything is decided and allocated once:
 * - The memory budget is what cudaMemGetInfo reports free, less a reserve
 *   for the driver and cuFFT's plan data, capped by the context's
 *   device_memory_limit. choose_layout() then picks the largest z slab whose
 *   volume, plus the buffers for at least one view, plus the plan's tables
 *   fit; a volume that fits gets one slab. A slab of one slice that does
 *   not fit fails with CLARA_ERR_OUT_OF_MEMORY and the byte counts.
 * - Each slab only needs a window of detector rows: the slab's slices for
 *   the 2D geometries (row r is slice r), and for the cone the rows that the
 *   rays through the slab can reach (bounded with the nearest and farthest
 *   voxel distances from the source, two rows of margin). Every slab uses a
 *   window of the same height (the largest needed), placed inside the
 *   detector so that it holds the slab's rows; so the FFT batch and the
 *   texture array have one shape for all slabs.
 * - Views are processed in batches of up to 256 (fewer when the window is
 *   tall: 128 MiB of pinned staging per batch buffer, at least four batches
 *   when the projections exceed 64 MiB, and whatever the budget allows).
 *   The cuFFT R2C and C2R plans (length nfft, batch = views x window rows)
 *   share one work area and run on the plan's compute stream.
 * - Device copies of the filter spectrum, view weights and cosine weights,
 *   the field-of-view mask as an [ix_first, ix_last] range per image row
 *   (computed on the host in double exactly as the CPU does), two raw
 *   projection buffers, one line buffer (weighted lines in, filtered lines
 *   out), one spectrum buffer, the slab volume, and in texture mode a
 *   layered cudaArray (cols x window rows x batch views) with a texture
 *   object (linear filtering, border addressing: zero off the detector).
 *   Two pinned host staging buffers carry uploads and downloads.
 * Per-view geometry. The (cos, sin) of the views of one back-projection
 * launch travel in the kernel's parameter block (a __grid_constant__ struct
 * of up to 256 float2): parameters live in the constant bank of that launch,
 * so warps read them with uniform constant-cache broadcasts, and -- unlike a
 * module-wide __constant__ array -- concurrent plans and executes cannot
 * overwrite each other's values.
 * Execute (host memory). Two streams: "copy" for uploads, "compute" for the
 * rest. For each slab, the volume is zeroed; then for each view batch b the
 * calling thread copies the batch's window rows into pinned staging buffer
 * b%2, the copy stream uploads them into device buffer b%2, and the compute
 * stream waits for that upload (event), weights and zero-pads the lines,
 * runs R2C, multiplies by the filter, runs C2R (and in texture mode copies
 * the lines into the array), and back-projects the batch into the slab.
 * Before batch b reuses buffer set b%2 the host waits for batch b-2's
 * back-projection, so the upload and host copy of batch b overlap the
 * filtering and back-projection of batch b-1. After the last batch the
 * slab is scaled, offset and masked, and downloaded through the staging
 * buffers in chunks (D2H of chunk k overlapping the host copy of chunk k-1).
 * Execute (device memory). The same pipeline without staging and uploads:
 * the weighting kernel reads the caller's projections, the slabs are
 * back-projected straight into the caller's image, and the call returns
 * after the compute stream has finished. The compute stream first waits
 * for the work already queued on the legacy default stream and on the
 * calling thread's per-thread default stream, so projections that the
 * caller filled with cudaMemcpy or on stream 0 are complete when read.
 * Kernels.
 * - Back-projection is voxel-driven: a thread owns one (ix, iy) and several
 *   slices (1, 4 or 8 for the 2D geometries, where all slices share the
 *   detector column and weight and only the row differs; 8 for the cone,
 *   where the column, the weight and 1/L are shared and the row changes
 *   linearly with z), sums the launch's views in registers and adds the
 *   sums to the volume once.
 * - Precise mode (default): linear (2D) or bilinear (cone) interpolation in
 *   float from global memory through the read-only path, written as the CPU
 *   kernels write it (a + f (b - a), rows of the top and bottom lines, zero
 *   outside the detector, the same atan approximation for the arc).
 * - Texture mode (CLARA_FBP_GPU_TEXTURE): tex2DLayered at texel centres
 *   (+0.5), hardware linear filtering (8-bit weights).
 * - The per-thread bodies are __host__ __device__ functions that the
 *   kernels call with their block and thread indices; host code that
 *   includes this file can run them in loops (that is how the kernels were
 *   checked against the CPU backend on a machine without a GPU).
 * Thread safety. A plan owns one set of device buffers, streams and cuFFT
 * plans, so an execute holds the plan's mutex from start to end: concurrent
 * executes on one plan serialise (each still writes its own output);
 * different plans run concurrently on their own streams. The progress
 * callback runs between batches with the mutex held, so it must not
 * execute the same plan. The caller's current device is restored on
 * return.
 * Errors. Every CUDA and cuFFT call is checked and becomes a status naming
 * the call; kernel launches are checked with cudaGetLastError. On any
 * failure the streams are drained before the mutex is released, so that no
 * copy touches a staging buffer or the caller's memory after the return.
 */
#include "cuda_backend.h"

#include <limits.h>
#include <math.h>
#include <new>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- Tunables ------------------------------------------------------------ */

#define BP_VIEWS 256 /* views per back-projection launch (parameter block) */
#define BP_BX 32     /* back-projection block: 32 x 8 voxels */
#define BP_BY 8
#define CONE_ZC 8    /* cone: slices per thread */
#define LINE_TPB 256 /* threads per block of the line kernels */
/* Pinned staging per upload buffer, at most. */
#define STAGE_BYTES ((size_t)128 << 20)
/* Projections larger than this are split into at least four batches so
 * that uploads overlap computation. */
#define SPLIT_BYTES ((size_t)64 << 20)
/* Download chunk when the upload staging is smaller. */
#define DL_BYTES ((size_t)64 << 20)

#define HD __host__ __device__ __forceinline__

/* Read-only loads through the non-coherent path on the device; the host
 * compiler sees plain loads and no unroll pragma. */
#ifdef __CUDA_ARCH__
#define RO(p) __ldg(p)
#define UNROLL _Pragma("unroll")
#else
#define RO(p) (*(p))
#define UNROLL
#endif

/* ---- Shared data --------------------------------------------------------- */

/* The (cos, sin) of the views of one back-projection launch. */
struct view_batch {
  int n;
  float2 cs[BP_VIEWS];
};

/* What a back-projection launch needs besides the views. */
struct bp_params {
  int nx, ny;       /* volume size in x and y */
  int iz0, nz;      /* the slab: first (global) slice and slice count */
  int ra, nr;       /* detector row window: first row and height */
  int cols;         /* detector columns */
  float x0, y0, z0; /* world coordinate of voxel index 0 along each axis */
  float vx, vy, vz;
  float rs, rs2; /* R_s and R_s^2 */
  float ku, cu0; /* column = {t, t/L, atan(t/L)} * ku + cu0 */
  float kv, rv0; /* cone: detector row = z / L * kv + rv0 */
};

/* One z slab: global slices [iz0, iz0 + nz), detector rows [ra, ra + nr). */
struct fbp_slab {
  int iz0, nz, ra;
};

/* What choose_layout() decided. */
struct fbp_layout {
  int nr;       /* detector rows per view in the window */
  int nvb;      /* views per batch */
  int nbatches; /* batches per slab */
  int slab_nz;  /* slices per slab (the last may have fewer) */
  int nslabs;
  size_t lines; /* nvb * nr: lines per FFT batch */
  size_t fixed_bytes, vol_bytes, view_bytes, total_bytes, budget;
};

/* ---- Per-thread bodies (host and device) --------------------------------- */

/* The CPU kernels' atan (src/cpu/kernels.c), operation for operation. */
HD float atan_cl(float z) {
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

/* Line 'line' of the FFT batch: line = j * nr + lr holds window row lr of
 * the batch's view j (global view v0 + j), weighted by the view weights and
 * the cosine weights and zero-padded to nfft; lines beyond the batch's nv
 * views are zeroed. 'src' points at window row 0 of view j = 0, views
 * src_vs floats apart, rows cols floats apart. */
HD void preweight_line(float *out, const float *src, size_t src_vs, int nr,
                       int cols, int nfft, int nv, int v0, int ra,
                       const float *vw, const float *dw, int line, int tid,
                       int nth) {
  float *o = out + (size_t)line * (size_t)nfft;
  int j = line / nr, lr = line % nr;
  if (j >= nv) {
    for (int c = tid; c < nfft; c += nth)
      o[c] = 0.0f;
    return;
  }
  const float *in = src + (size_t)j * src_vs + (size_t)lr * (size_t)cols;
  const float *w1 = vw + (size_t)(v0 + j) * (size_t)cols;
  const float *w2 = dw ? dw + (size_t)(ra + lr) * (size_t)cols : NULL;
  for (int c = tid; c < nfft; c += nth) {
    float v = 0.0f;
    if (c < cols) {
      v = RO(in + c) * RO(w1 + c);
      if (w2)
        v = v * RO(w2 + c);
    }
    o[c] = v;
  }
}

/* Multiplies one spectrum line by the real filter response. */
HD void filter_line(float2 *spec, const float *filt, int nspec, int line,
                    int tid, int nth) {
  float2 *sp = spec + (size_t)line * (size_t)nspec;
  for (int k = tid; k < nspec; k += nth) {
    float f = RO(filt + k);
    float2 z = sp[k];
    z.x *= f;
    z.y *= f;
    sp[k] = z;
  }
}

HD float scale_offset(float v, float scale, float offset) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(__fmul_rn(v, scale), offset); /* no FMA, as on the CPU */
#else
  return v * scale + offset;
#endif
}

/* Scale, offset and field-of-view mask of one image row of a slab: row =
 * local slice * ny + iy; mask[iy] = first and last ix inside. */
HD void finish_row(float *vol, int nx, int ny, const int2 *mask, float scale,
                   float offset, int row, int tid, int nth) {
  int iy = row % ny;
  int2 m = mask[iy];
  float *o = vol + (size_t)row * (size_t)nx;
  for (int ix = tid; ix < nx; ix += nth)
    o[ix] =
        (ix >= m.x && ix <= m.y) ? scale_offset(o[ix], scale, offset) : offset;
}

/* Interpolation from the filtered lines in global memory: view j of the
 * launch starts at p + j * vs, window row lr at + lr * ls; zero outside
 * the detector columns and the window rows. The window holds detector rows
 * [ra, ra + nr). */
struct precise_smp {
  const float *p;
  size_t ls, vs;
  int cols, nr, ra;
  struct colp {
    int i0;
    float f;
    bool ok0, ok1;
  };
  HD colp col(float c) const {
    colp r;
    /* any coordinate outside [-1, cols] reads zero: clamp before the int
     * conversion (NaN becomes -2) */
    c = fminf(fmaxf(c, -2.0f), (float)cols + 1.0f);
    float fl = floorf(c);
    r.i0 = (int)fl;
    r.f = c - fl;
    r.ok0 = (unsigned)r.i0 < (unsigned)cols;
    r.ok1 = (unsigned)(r.i0 + 1) < (unsigned)cols;
    return r;
  }
  /* 2D: row lr exactly (0 <= lr < nr). */
  HD float lin(int j, const colp &c, int lr) const {
    const float *line = p + (size_t)j * vs + (size_t)lr * ls;
    float a = c.ok0 ? RO(line + c.i0) : 0.0f;
    float b = c.ok1 ? RO(line + c.i0 + 1) : 0.0f;
    return a + c.f * (b - a);
  }
  /* Cone: bilinear at detector row coordinate 'row'. The window offset is
   * taken off after the floor, so the weights do not depend on the slab. */
  HD float bil(int j, const colp &c, float row) const {
    row = fminf(fmaxf(row, (float)ra - 2.0f), (float)(ra + nr) + 1.0f);
    float fl = floorf(row);
    int r0 = (int)fl - ra;
    float fv = row - fl;
    bool okr0 = (unsigned)r0 < (unsigned)nr;
    bool okr1 = (unsigned)(r0 + 1) < (unsigned)nr;
    const float *view = p + (size_t)j * vs;
    float a00 = 0.0f, a01 = 0.0f, a10 = 0.0f, a11 = 0.0f;
    if (okr0) {
      const float *l0 = view + (size_t)r0 * ls;
      a00 = c.ok0 ? RO(l0 + c.i0) : 0.0f;
      a01 = c.ok1 ? RO(l0 + c.i0 + 1) : 0.0f;
    }
    if (okr1) {
      const float *l1 = view + (size_t)(r0 + 1) * ls;
      a10 = c.ok0 ? RO(l1 + c.i0) : 0.0f;
      a11 = c.ok1 ? RO(l1 + c.i0 + 1) : 0.0f;
    }
    float top = a00 + c.f * (a01 - a00);
    float bot = a10 + c.f * (a11 - a10);
    return top + fv * (bot - top);
  }
};

/* Interpolation by the texture units: layer0 + j is the launch's view j;
 * the array's rows are detector rows [ra, ra + nr). */
struct tex_smp {
  cudaTextureObject_t t;
  int layer0;
  float ra;
  struct colp {
    float u;
  };
  __device__ __forceinline__ colp col(float c) const {
    colp r;
    r.u = c + 0.5f;
    return r;
  }
  __device__ __forceinline__ float lin(int j, const colp &c, int lr) const {
    return tex2DLayered<float>(t, c.u, (float)lr + 0.5f, layer0 + j);
  }
  __device__ __forceinline__ float bil(int j, const colp &c, float row) const {
    /* the texel-centre shift first, then the window offset: ra is an
     * integer not above row + 0.5 for every row the slab reaches, so the
     * subtraction is exact and the coordinate does not depend on the slab */
    return tex2DLayered<float>(t, c.u, (row + 0.5f) - ra, layer0 + j);
  }
};

/* 2D geometries: voxel (ix, iy) of ZS slices from slab slice bz * ZS on,
 * all n views of the launch. KIND is a clara_geometry_kind. */
template <int KIND, int ZS, class S>
HD void bp2d_thread(float *vol, const bp_params &g, const S &smp,
                    const float2 *cs, int n, int ix, int iy, int bz) {
  if (ix >= g.nx || iy >= g.ny)
    return;
  int izl0 = bz * ZS;
  int nzs = g.nz - izl0 < ZS ? g.nz - izl0 : ZS;
  float x = (float)ix * g.vx + g.x0;
  float y = (float)iy * g.vy + g.y0;
  int lr0 = g.iz0 + izl0 - g.ra; /* window row of the first slice */
  float acc[ZS];
  UNROLL
  for (int k = 0; k < ZS; k++)
    acc[k] = 0.0f;
  for (int j = 0; j < n; j++) {
    float c = cs[j].x, s = cs[j].y;
    float t = x * c + y * s;
    float colc, w;
    if (KIND == CLARA_GEOM_PARALLEL) {
      colc = t * g.ku + g.cu0;
      w = 1.0f;
    } else if (KIND == CLARA_GEOM_FAN_FLAT) {
      float inv = 1.0f / (g.rs - x * s + y * c);
      colc = t * g.ku * inv + g.cu0;
      w = g.rs2 * inv * inv;
    } else {
      float l = g.rs - x * s + y * c;
      colc = atan_cl(t / l) * g.ku + g.cu0;
      w = g.rs2 / (t * t + l * l);
    }
    typename S::colp cp = smp.col(colc);
    UNROLL
    for (int k = 0; k < ZS; k++)
      if (ZS == 1 || k < nzs)
        acc[k] += w * smp.lin(j, cp, lr0 + k);
  }
  UNROLL
  for (int k = 0; k < ZS; k++)
    if (ZS == 1 || k < nzs)
      vol[((size_t)(izl0 + k) * (size_t)g.ny + (size_t)iy) * (size_t)g.nx +
          (size_t)ix] += acc[k];
}

/* Cone beam: voxel (ix, iy) of ZC slices from slab slice bz * ZC on. */
template <int ZC, class S>
HD void bpcone_thread(float *vol, const bp_params &g, const S &smp,
                      const float2 *cs, int n, int ix, int iy, int bz) {
  if (ix >= g.nx || iy >= g.ny)
    return;
  int izl0 = bz * ZC;
  int nzs = g.nz - izl0 < ZC ? g.nz - izl0 : ZC;
  float x = (float)ix * g.vx + g.x0;
  float y = (float)iy * g.vy + g.y0;
  float z[ZC], acc[ZC];
  UNROLL
  for (int k = 0; k < ZC; k++) {
    z[k] = (float)(g.iz0 + izl0 + k) * g.vz + g.z0;
    acc[k] = 0.0f;
  }
  for (int j = 0; j < n; j++) {
    float c = cs[j].x, s = cs[j].y;
    float t = x * c + y * s;
    float inv = 1.0f / (g.rs - x * s + y * c);
    float colc = t * g.ku * inv + g.cu0;
    float w = g.rs2 * inv * inv;
    float kl = g.kv * inv;
    typename S::colp cp = smp.col(colc);
    UNROLL
    for (int k = 0; k < ZC; k++)
      if (k < nzs)
        acc[k] += w * smp.bil(j, cp, z[k] * kl + g.rv0);
  }
  UNROLL
  for (int k = 0; k < ZC; k++)
    if (k < nzs)
      vol[((size_t)(izl0 + k) * (size_t)g.ny + (size_t)iy) * (size_t)g.nx +
          (size_t)ix] += acc[k];
}

/* ---- Kernels ------------------------------------------------------------- */

__global__ void __launch_bounds__(LINE_TPB)
    k_preweight(float *out, const float *__restrict__ src, size_t src_vs,
                int nr, int cols, int nfft, int nv, int v0, int ra,
                const float *__restrict__ vw, const float *__restrict__ dw) {
  preweight_line(out, src, src_vs, nr, cols, nfft, nv, v0, ra, vw, dw,
                 (int)blockIdx.x, (int)threadIdx.x, (int)blockDim.x);
}

__global__ void __launch_bounds__(LINE_TPB)
    k_filter(float2 *spec, const float *__restrict__ filt, int nspec) {
  filter_line(spec, filt, nspec, (int)blockIdx.x, (int)threadIdx.x,
              (int)blockDim.x);
}

__global__ void __launch_bounds__(LINE_TPB)
    k_finish(float *vol, int nx, int ny, const int2 *__restrict__ mask,
             float scale, float offset) {
  finish_row(vol, nx, ny, mask, scale, offset, (int)blockIdx.x,
             (int)threadIdx.x, (int)blockDim.x);
}

template <int KIND, int ZS, class S>
__global__ void __launch_bounds__(BP_BX *BP_BY)
    k_bp2d(float *vol, const __grid_constant__ bp_params g,
           const __grid_constant__ S smp,
           const __grid_constant__ view_batch vb) {
  bp2d_thread<KIND, ZS, S>(
      vol, g, smp, vb.cs, vb.n, (int)(blockIdx.x * blockDim.x + threadIdx.x),
      (int)(blockIdx.y * blockDim.y + threadIdx.y), (int)blockIdx.z);
}

template <int ZC, class S>
__global__ void __launch_bounds__(BP_BX *BP_BY)
    k_bpcone(float *vol, const __grid_constant__ bp_params g,
             const __grid_constant__ S smp,
             const __grid_constant__ view_batch vb) {
  bpcone_thread<ZC, S>(
      vol, g, smp, vb.cs, vb.n, (int)(blockIdx.x * blockDim.x + threadIdx.x),
      (int)(blockIdx.y * blockDim.y + threadIdx.y), (int)blockIdx.z);
}

/* ---- Host-side planning (no CUDA calls) ---------------------------------- */

static double world_coord(int i, int n, double vox, double ctr) {
  return (i - 0.5 * (n - 1)) * vox + ctr;
}

/* Slices per thread of the 2D kernels for a slab of nz slices. */
static int zs_for(int nz) { return nz >= 64 ? 8 : nz >= 2 ? 4 : 1; }

/* The detector rows [*lo, *hi] that slab [iz0, iz0 + nz) reads, clamped to
 * the detector; *hi < *lo when it reads none. */
static void needed_rows(const clara_fbp_setup *s, int iz0, int nz, int *lo,
                        int *hi) {
  if (s->kind != CLARA_GEOM_CONE) {
    *lo = iz0;
    *hi = iz0 + nz - 1;
    return;
  }
  const clara_volume *v = &s->vol;
  double xa = world_coord(0, v->nx, v->voxel[0], v->center[0]);
  double xb = world_coord(v->nx - 1, v->nx, v->voxel[0], v->center[0]);
  double ya = world_coord(0, v->ny, v->voxel[1], v->center[1]);
  double yb = world_coord(v->ny - 1, v->ny, v->voxel[1], v->center[1]);
  double rxy = fmax(fmax(hypot(xa, ya), hypot(xa, yb)),
                    fmax(hypot(xb, ya), hypot(xb, yb)));
  double lmin = s->rs - rxy, lmax = s->rs + rxy;
  double za = world_coord(iz0, v->nz, v->voxel[2], v->center[2]);
  double zb = world_coord(iz0 + nz - 1, v->nz, v->voxel[2], v->center[2]);
  double vmin, vmax, rlo, rhi;
  if (!(lmin > 0)) { /* cannot happen for a valid plan: take every row */
    *lo = 0;
    *hi = s->rows - 1;
    return;
  }
  /* v = z R_d / L is monotonic in z and in 1/L: the extremes are corners */
  vmin = fmin(fmin(za * s->rd / lmin, za * s->rd / lmax),
              fmin(zb * s->rd / lmin, zb * s->rd / lmax));
  vmax = fmax(fmax(za * s->rd / lmin, za * s->rd / lmax),
              fmax(zb * s->rd / lmin, zb * s->rd / lmax));
  rlo = floor((vmin - s->v0) / s->dv) - 2.0;
  rhi = ceil((vmax - s->v0) / s->dv) + 2.0;
  if (!(rhi >= 0.0) || !(rlo <= (double)(s->rows - 1))) {
    *lo = 0;
    *hi = -1;
    return;
  }
  *lo = rlo < 0.0 ? 0 : (int)rlo;
  *hi = rhi > (double)(s->rows - 1) ? s->rows - 1 : (int)rhi;
}

static size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

/* Chooses slabs, the row window and the view batch for 'budget' bytes of
 * device memory. tex_w/h/layers are the device's layered-texture limits
 * (0 when texture mode is off). On success *slabs_out (free()) holds
 * L->nslabs slabs. */
static clara_status choose_layout(const clara_fbp_setup *s, size_t budget,
                                  int tex_w, int tex_h, int tex_layers,
                                  const char *budget_note, fbp_layout *L,
                                  fbp_slab **slabs_out) {
  static const char who[] = "clara_fbp_plan_create";
  const clara_volume *v = &s->vol;
  int tex = tex_w > 0;
  size_t cols = (size_t)s->cols, nfft = (size_t)s->nfft;
  size_t nspec = nfft / 2 + 1;
  size_t slice = (size_t)v->nx * (size_t)v->ny;
  size_t fixed = nspec * sizeof(float) +
                 (size_t)s->views * cols * sizeof(float) +
                 (s->det_weight ? (size_t)s->rows * cols * sizeof(float) : 0) +
                 (size_t)v->ny * sizeof(int2);
  /* per view and window row: two raw buffers, the line, the spectrum, an
   * equal share of cuFFT work area, and the texture array */
  size_t per_row = 2 * cols * sizeof(float) + nfft * sizeof(float) +
                   2 * nspec * sizeof(float2) +
                   (tex ? cols * sizeof(float) : 0);
  size_t need_min = 0;
  int prev = 0;
  fbp_slab *slabs;

  *slabs_out = NULL;
  memset(L, 0, sizeof *L);
  if (tex && s->cols > tex_w)
    return CUDA_FAIL(CLARA_ERR_UNSUPPORTED,
                     "%s: CLARA_FBP_GPU_TEXTURE: %d detector columns exceed "
                     "the device's layered texture width (%d); use the "
                     "precise mode",
                     who, s->cols, tex_w);
  if ((v->ny + BP_BY - 1) / BP_BY > 65535)
    return CUDA_FAIL(CLARA_ERR_UNSUPPORTED,
                     "%s: vol->ny: %d rows are too many for the CUDA "
                     "back-projector (at most %d)",
                     who, v->ny, 65535 * BP_BY);
  for (int S = 1; S <= v->nz; S++) {
    int snz = (int)ceil_div((size_t)v->nz, (size_t)S);
    int nslabs, nr = 1;
    size_t vol_bytes, view_bytes, need;
    if (snz == prev)
      continue;
    prev = snz;
    /* grid z and the finish kernel's grid x must stay in range */
    if (snz > 65535 || (size_t)snz * (size_t)v->ny > (size_t)INT_MAX)
      continue;
    nslabs = (int)ceil_div((size_t)v->nz, (size_t)snz);
    if (s->kind != CLARA_GEOM_CONE)
      nr = snz; /* row r is slice r */
    else
      for (int k = 0; k < nslabs; k++) {
        int iz0 = k * snz, nz = v->nz - iz0 < snz ? v->nz - iz0 : snz, lo, hi;
        needed_rows(s, iz0, nz, &lo, &hi);
        if (hi - lo + 1 > nr)
          nr = hi - lo + 1;
      }
    if (tex && nr > tex_h)
      continue;
    if ((size_t)nr * nfft > (size_t)INT_MAX)
      continue; /* one view's lines must be addressable by the kernels */
    vol_bytes = (size_t)snz * slice * sizeof(float);
    view_bytes = (size_t)nr * per_row;
    need = fixed + vol_bytes + view_bytes;
    need_min = need;
    if (need <= budget) {
      size_t nvb = (budget - fixed - vol_bytes) / view_bytes;
      size_t stage_views = STAGE_BYTES / ((size_t)nr * cols * sizeof(float));
      size_t lines_max = (size_t)INT_MAX / (size_t)nr;
      if (nvb > (size_t)s->views)
        nvb = (size_t)s->views;
      if (nvb > BP_VIEWS)
        nvb = BP_VIEWS;
      if (nvb > stage_views)
        nvb = stage_views;
      if ((size_t)s->views * (size_t)nr * cols * sizeof(float) > SPLIT_BYTES &&
          nvb > ceil_div((size_t)s->views, 4))
        nvb = ceil_div((size_t)s->views, 4);
      if (tex && nvb > (size_t)tex_layers)
        nvb = (size_t)tex_layers;
      if (nvb > lines_max)
        nvb = lines_max;
      if (nvb < 1)
        nvb = 1;
      /* even batches */
      L->nbatches = (int)ceil_div((size_t)s->views, nvb);
      nvb = ceil_div((size_t)s->views, (size_t)L->nbatches);
      L->nvb = (int)nvb;
      L->nr = nr;
      L->slab_nz = snz;
      L->nslabs = nslabs;
      L->lines = nvb * (size_t)nr;
      L->fixed_bytes = fixed;
      L->vol_bytes = vol_bytes;
      L->view_bytes = view_bytes;
      L->total_bytes = fixed + vol_bytes + nvb * view_bytes;
      L->budget = budget;
      slabs = (fbp_slab *)calloc((size_t)nslabs, sizeof *slabs);
      if (!slabs)
        return CUDA_FAIL(CLARA_ERR_OUT_OF_MEMORY, "%s: slab table", who);
      for (int k = 0; k < nslabs; k++) {
        int lo, hi, ra;
        slabs[k].iz0 = k * snz;
        slabs[k].nz = v->nz - slabs[k].iz0 < snz ? v->nz - slabs[k].iz0 : snz;
        needed_rows(s, slabs[k].iz0, slabs[k].nz, &lo, &hi);
        ra = hi < lo ? 0 : lo;
        if (ra > s->rows - nr)
          ra = s->rows - nr;
        slabs[k].ra = ra;
      }
      *slabs_out = slabs;
      return CLARA_OK;
    }
  }
  if (need_min == 0)
    return CUDA_FAIL(CLARA_ERR_UNSUPPORTED,
                     "%s: no slab layout of the %d x %d x %d volume suits the "
                     "CUDA back-projector%s",
                     who, v->nx, v->ny, v->nz,
                     tex ? " in texture mode (detector window taller than "
                           "the device's layered texture height)"
                         : "");
  return CUDA_FAIL(CLARA_ERR_OUT_OF_MEMORY,
                   "%s: the CUDA reconstruction needs at least %zu bytes of "
                   "device memory (a slab of one %d x %d slice, the buffers "
                   "of one view and the plan's tables), but only %zu bytes "
                   "are available (%s)",
                   who, need_min, v->nx, v->ny, budget, budget_note);
}

/* The launch parameters of a slab. */
static bp_params make_bp_params(const clara_fbp_setup *s, const fbp_slab *sl,
                                int nr) {
  const clara_volume *v = &s->vol;
  bp_params g;
  memset(&g, 0, sizeof g);
  g.nx = v->nx;
  g.ny = v->ny;
  g.iz0 = sl->iz0;
  g.nz = sl->nz;
  g.ra = sl->ra;
  g.nr = nr;
  g.cols = s->cols;
  g.x0 = (float)world_coord(0, v->nx, v->voxel[0], v->center[0]);
  g.y0 = (float)world_coord(0, v->ny, v->voxel[1], v->center[1]);
  g.z0 = (float)world_coord(0, v->nz, v->voxel[2], v->center[2]);
  g.vx = (float)v->voxel[0];
  g.vy = (float)v->voxel[1];
  g.vz = (float)v->voxel[2];
  g.rs = (float)s->rs;
  g.rs2 = (float)(s->rs * s->rs);
  switch (s->kind) {
  case CLARA_GEOM_PARALLEL:
  case CLARA_GEOM_FAN_ARC:
    g.ku = (float)(1.0 / s->du);
    break;
  default:
    g.ku = (float)(s->rd / s->du);
  }
  g.cu0 = (float)(-s->u0 / s->du);
  if (s->kind == CLARA_GEOM_CONE) {
    g.kv = (float)(s->rd / s->dv);
    g.rv0 = (float)(-s->v0 / s->dv);
  }
  return g;
}

static void fill_view_batch(view_batch *vb, const float2 *cs, int v0, int n) {
  vb->n = n;
  memcpy(vb->cs, cs + v0, sizeof(float2) * (size_t)n);
  if (n < BP_VIEWS) /* defined bytes in the whole parameter block */
    memset(vb->cs + n, 0, sizeof(float2) * (size_t)(BP_VIEWS - n));
}

/* Per image row, the first and last ix inside the field of view, decided
 * in double exactly as the CPU backend decides it. */
static void make_mask(const clara_fbp_setup *s, int2 *mask) {
  const clara_volume *v = &s->vol;
  double r2 = s->fov_radius * s->fov_radius;
  for (int iy = 0; iy < v->ny; iy++) {
    double y = world_coord(iy, v->ny, v->voxel[1], v->center[1]);
    int first = v->nx, last = -1;
    if (s->fov_radius < 0) {
      first = 0;
      last = v->nx - 1;
    } else {
      for (int ix = 0; ix < v->nx; ix++) {
        double x = world_coord(ix, v->nx, v->voxel[0], v->center[0]);
        if (!(x * x + y * y > r2)) {
          if (first > ix)
            first = ix;
          last = ix;
        }
      }
    }
    mask[iy] = make_int2(first, last);
  }
}

/* ---- The plan ------------------------------------------------------------ */

struct cuda_fbp {
  int device;
  pthread_mutex_t mu;
  int mu_ok;
  int tex;
  fbp_layout L;
  fbp_slab *slabs; /* [L.nslabs] */
  float2 *h_cs;    /* [views] (cos, sin) */
  size_t stage_floats;
  float *d_filter, *d_vw, *d_dw;
  int2 *d_mask;
  float *d_vol;      /* one slab */
  float *d_raw[2];   /* uploaded projections, [nvb][nr][cols] */
  float *d_line;     /* [lines][nfft] */
  float2 *d_spec;    /* [lines][nfft/2+1] */
  void *d_work;      /* cuFFT work area */
  float *h_stage[2]; /* pinned */
  cudaArray_t arr;
  cudaTextureObject_t tex_obj;
  int have_tex_obj;
  cufftHandle r2c, c2r;
  int have_r2c, have_c2r;
  cudaStream_t s_copy, s_comp;
  /* per buffer set: upload start/end, filter start/end, back-projection
   * end; per download buffer: start/end; slab extras; dependencies */
  cudaEvent_t up_a[2], up_b[2], f_a[2], f_b[2], bp_b[2];
  cudaEvent_t dl_a[2], dl_b[2];
  cudaEvent_t x_a, x_b, y_a, y_b;
  cudaEvent_t dep[2];
};

void cuda_fbp_destroy(void *state) {
  cuda_fbp *p = (cuda_fbp *)state;
  if (!p)
    return;
  device_guard guard;
  /* The plan's device may not be current on this thread. Errors are
   * ignored: destroy cannot fail, and after a device fault the frees
   * report it again. */
  (void)cudaSetDevice(p->device);
  if (p->s_comp)
    (void)cudaStreamSynchronize(p->s_comp);
  if (p->s_copy)
    (void)cudaStreamSynchronize(p->s_copy);
  if (p->have_r2c)
    (void)cufftDestroy(p->r2c);
  if (p->have_c2r)
    (void)cufftDestroy(p->c2r);
  if (p->have_tex_obj)
    (void)cudaDestroyTextureObject(p->tex_obj);
  if (p->arr)
    (void)cudaFreeArray(p->arr);
  (void)cudaFree(p->d_work);
  (void)cudaFree(p->d_spec);
  (void)cudaFree(p->d_line);
  for (int i = 0; i < 2; i++) {
    (void)cudaFree(p->d_raw[i]);
    if (p->h_stage[i])
      (void)cudaFreeHost(p->h_stage[i]);
  }
  (void)cudaFree(p->d_vol);
  (void)cudaFree(p->d_mask);
  (void)cudaFree(p->d_dw);
  (void)cudaFree(p->d_vw);
  (void)cudaFree(p->d_filter);
  {
    cudaEvent_t *evs[] = {p->up_a, p->up_b, p->f_a,  p->f_b,
                          p->bp_b, p->dl_a, p->dl_b, p->dep};
    for (size_t k = 0; k < sizeof evs / sizeof evs[0]; k++)
      for (int i = 0; i < 2; i++)
        if (evs[k][i])
          (void)cudaEventDestroy(evs[k][i]);
    cudaEvent_t singles[] = {p->x_a, p->x_b, p->y_a, p->y_b};
    for (size_t k = 0; k < sizeof singles / sizeof singles[0]; k++)
      if (singles[k])
        (void)cudaEventDestroy(singles[k]);
  }
  if (p->s_comp)
    (void)cudaStreamDestroy(p->s_comp);
  if (p->s_copy)
    (void)cudaStreamDestroy(p->s_copy);
  (void)cudaGetLastError(); /* leave no error behind on this thread */
  if (p->mu_ok)
    pthread_mutex_destroy(&p->mu);
  free(p->slabs);
  free(p->h_cs);
  delete p;
}

/* cudaMalloc for this plan's buffers (cuda_alloc, named for the caller). */
static clara_status fbp_alloc(void **ptr, size_t n, const char *what) {
  return cuda_alloc(ptr, n, "clara_fbp_plan_create", what);
}

/* Allocates a device copy of n bytes of host data and queues the upload on
 * 'st', the stream whose kernels read it. (A plain cudaMemcpy from pageable
 * memory may return before its DMA has landed, and it is ordered only with
 * the legacy stream and blocking streams, not with the plan's non-blocking
 * ones.) */
static clara_status dev_copy(void **ptr, const void *src, size_t n,
                             cudaStream_t st, const char *what) {
  clara_status s = fbp_alloc(ptr, n, what);
  if (s != CLARA_OK || n == 0)
    return s;
  return cuda_status(cudaMemcpyAsync(*ptr, src, n, cudaMemcpyHostToDevice, st),
                     "clara_fbp_plan_create: cudaMemcpyAsync (plan tables)");
}

#define PLAN_CK(call, what)                                                    \
  do {                                                                         \
    st = cuda_status((call), "clara_fbp_plan_create: " what);                  \
    if (st != CLARA_OK)                                                        \
      goto fail;                                                               \
  } while (0)
#define PLAN_FFT(call, what)                                                   \
  do {                                                                         \
    st = cufft_status((call), "clara_fbp_plan_create: " what);                 \
    if (st != CLARA_OK)                                                        \
      goto fail;                                                               \
  } while (0)
#define PLAN_ST(expr)                                                          \
  do {                                                                         \
    st = (expr);                                                               \
    if (st != CLARA_OK)                                                        \
      goto fail;                                                               \
  } while (0)

clara_status cuda_fbp_create(const clara_context *ctx, const clara_fbp_setup *s,
                             void **state) {
  static const char who[] = "clara_fbp_plan_create";
  const cuda_ctx *c = (const cuda_ctx *)ctx->backend_state;
  cuda_fbp *p = NULL;
  clara_status st;
  size_t budget;
  size_t cols, nfft, nspec, slice, bytes, work1 = 0, work2 = 0;
  char note[160];
  int2 *mask = NULL;
  long long n1[1], emb_real[1], emb_spec[1];

  *state = NULL;
  if (!c)
    return CUDA_FAIL(CLARA_ERR_DEVICE, "%s: the CUDA context has no state",
                     who);
  device_guard guard;
  st = cuda_use_device(ctx);
  if (st != CLARA_OK)
    return st;
  p = new (std::nothrow) cuda_fbp();
  if (!p)
    return CUDA_FAIL(CLARA_ERR_OUT_OF_MEMORY, "%s: CUDA plan state", who);
  p->device = c->device;
  if (pthread_mutex_init(&p->mu, NULL) != 0) {
    delete p;
    return CUDA_FAIL(CLARA_ERR_OUT_OF_MEMORY, "%s: plan mutex", who);
  }
  p->mu_ok = 1;
  p->tex = s->gpu_texture != 0;
  cols = (size_t)s->cols;
  nfft = (size_t)s->nfft;
  nspec = nfft / 2 + 1;
  slice = (size_t)s->vol.nx * (size_t)s->vol.ny;

  /* The budget. */
  PLAN_ST(cuda_budget(ctx, &budget, note, sizeof note));
  PLAN_ST(choose_layout(s, budget, p->tex ? c->prop.maxTexture2DLayered[0] : 0,
                        p->tex ? c->prop.maxTexture2DLayered[1] : 0,
                        p->tex ? c->prop.maxTexture2DLayered[2] : 0, note,
                        &p->L, &p->slabs));

  /* Host tables. */
  p->h_cs = (float2 *)malloc(sizeof(float2) * (size_t)s->views);
  mask = (int2 *)malloc(sizeof(int2) * (size_t)s->vol.ny);
  if (!p->h_cs || !mask) {
    st = CUDA_FAIL(CLARA_ERR_OUT_OF_MEMORY, "%s: CUDA plan tables", who);
    goto fail;
  }
  for (int v = 0; v < s->views; v++)
    p->h_cs[v] = make_float2((float)s->cos_t[v], (float)s->sin_t[v]);
  make_mask(s, mask);

  /* Streams and events. */
  PLAN_CK(cudaStreamCreateWithFlags(&p->s_copy, cudaStreamNonBlocking),
          "cudaStreamCreateWithFlags");
  PLAN_CK(cudaStreamCreateWithFlags(&p->s_comp, cudaStreamNonBlocking),
          "cudaStreamCreateWithFlags");
  for (int i = 0; i < 2; i++) {
    PLAN_CK(cudaEventCreate(&p->up_a[i]), "cudaEventCreate");
    PLAN_CK(cudaEventCreate(&p->up_b[i]), "cudaEventCreate");
    PLAN_CK(cudaEventCreate(&p->f_a[i]), "cudaEventCreate");
    PLAN_CK(cudaEventCreate(&p->f_b[i]), "cudaEventCreate");
    PLAN_CK(cudaEventCreate(&p->bp_b[i]), "cudaEventCreate");
    PLAN_CK(cudaEventCreate(&p->dl_a[i]), "cudaEventCreate");
    PLAN_CK(cudaEventCreate(&p->dl_b[i]), "cudaEventCreate");
    PLAN_CK(cudaEventCreateWithFlags(&p->dep[i], cudaEventDisableTiming),
            "cudaEventCreateWithFlags");
  }
  PLAN_CK(cudaEventCreate(&p->x_a), "cudaEventCreate");
  PLAN_CK(cudaEventCreate(&p->x_b), "cudaEventCreate");
  PLAN_CK(cudaEventCreate(&p->y_a), "cudaEventCreate");
  PLAN_CK(cudaEventCreate(&p->y_b), "cudaEventCreate");

  /* Plan tables on the device, uploaded on the compute stream that reads
   * them (it is synchronised before the plan is returned). */
  PLAN_ST(dev_copy((void **)&p->d_filter, s->filter, nspec * sizeof(float),
                   p->s_comp, "filter"));
  PLAN_ST(dev_copy((void **)&p->d_vw, s->view_weight,
                   (size_t)s->views * cols * sizeof(float), p->s_comp,
                   "view weights"));
  if (s->det_weight)
    PLAN_ST(dev_copy((void **)&p->d_dw, s->det_weight,
                     (size_t)s->rows * cols * sizeof(float), p->s_comp,
                     "detector weights"));
  PLAN_ST(dev_copy((void **)&p->d_mask, mask, (size_t)s->vol.ny * sizeof(int2),
                   p->s_comp, "field-of-view mask"));

  /* Work buffers. */
  PLAN_ST(fbp_alloc((void **)&p->d_vol,
                    (size_t)p->L.slab_nz * slice * sizeof(float),
                    "volume slab"));
  bytes = (size_t)p->L.nvb * (size_t)p->L.nr * cols * sizeof(float);
  for (int i = 0; i < 2; i++)
    PLAN_ST(fbp_alloc((void **)&p->d_raw[i], bytes, "projection batch"));
  PLAN_ST(fbp_alloc((void **)&p->d_line, p->L.lines * nfft * sizeof(float),
                    "filter lines"));
  PLAN_ST(fbp_alloc((void **)&p->d_spec, p->L.lines * nspec * sizeof(float2),
                    "filter spectra"));

  /* cuFFT: one work area for both plans (they run one after the other on
   * the compute stream). */
  n1[0] = (long long)nfft;
  emb_real[0] = (long long)nfft;  /* explicit layouts: line b of the real */
  emb_spec[0] = (long long)nspec; /* and spectrum buffers at b * length */
  PLAN_FFT(cufftCreate(&p->r2c), "cufftCreate");
  p->have_r2c = 1;
  PLAN_FFT(cufftCreate(&p->c2r), "cufftCreate");
  p->have_c2r = 1;
  PLAN_FFT(cufftSetAutoAllocation(p->r2c, 0), "cufftSetAutoAllocation");
  PLAN_FFT(cufftSetAutoAllocation(p->c2r, 0), "cufftSetAutoAllocation");
  PLAN_FFT(cufftMakePlanMany64(p->r2c, 1, n1, emb_real, 1, (long long)nfft,
                               emb_spec, 1, (long long)nspec, CUFFT_R2C,
                               (long long)p->L.lines, &work1),
           "cufftMakePlanMany64 (R2C)");
  PLAN_FFT(cufftMakePlanMany64(p->c2r, 1, n1, emb_spec, 1, (long long)nspec,
                               emb_real, 1, (long long)nfft, CUFFT_C2R,
                               (long long)p->L.lines, &work2),
           "cufftMakePlanMany64 (C2R)");
  PLAN_ST(
      fbp_alloc(&p->d_work, work1 > work2 ? work1 : work2, "cuFFT work area"));
  if (p->d_work) {
    PLAN_FFT(cufftSetWorkArea(p->r2c, p->d_work), "cufftSetWorkArea");
    PLAN_FFT(cufftSetWorkArea(p->c2r, p->d_work), "cufftSetWorkArea");
  }
  PLAN_FFT(cufftSetStream(p->r2c, p->s_comp), "cufftSetStream");
  PLAN_FFT(cufftSetStream(p->c2r, p->s_comp), "cufftSetStream");

  /* Texture mode: a layered array of one batch and its texture object. */
  if (p->tex) {
    cudaChannelFormatDesc cd = cudaCreateChannelDesc<float>();
    cudaResourceDesc rd;
    cudaTextureDesc td;
    PLAN_CK(cudaMalloc3DArray(
                &p->arr, &cd,
                make_cudaExtent(cols, (size_t)p->L.nr, (size_t)p->L.nvb),
                cudaArrayLayered),
            "cudaMalloc3DArray (texture)");
    memset(&rd, 0, sizeof rd);
    rd.resType = cudaResourceTypeArray;
    rd.res.array.array = p->arr;
    memset(&td, 0, sizeof td);
    td.addressMode[0] = cudaAddressModeBorder; /* border colour 0 */
    td.addressMode[1] = cudaAddressModeBorder;
    td.addressMode[2] = cudaAddressModeBorder;
    td.filterMode = cudaFilterModeLinear;
    td.readMode = cudaReadModeElementType;
    td.normalizedCoords = 0;
    PLAN_CK(cudaCreateTextureObject(&p->tex_obj, &rd, &td, NULL),
            "cudaCreateTextureObject");
    p->have_tex_obj = 1;
  }

  /* Pinned staging: one batch of window rows, or a download chunk. */
  p->stage_floats = (size_t)p->L.nvb * (size_t)p->L.nr * cols;
  {
    size_t slab_floats = (size_t)p->L.slab_nz * slice;
    size_t dl = DL_BYTES / sizeof(float);
    if (dl > slab_floats)
      dl = slab_floats;
    if (p->stage_floats < dl)
      p->stage_floats = dl;
  }
  for (int i = 0; i < 2; i++)
    PLAN_CK(cudaMallocHost((void **)&p->h_stage[i],
                           p->stage_floats * sizeof(float)),
            "cudaMallocHost (staging)");

  PLAN_CK(cudaStreamSynchronize(p->s_comp), "cudaStreamSynchronize (plan "
                                            "tables)");
  free(mask);
  *state = p;
  return CLARA_OK;

fail:
  cuda_fbp_destroy(p); /* drains the streams before 'mask' goes */
  free(mask);
  return st;
}

#undef PLAN_CK
#undef PLAN_FFT
#undef PLAN_ST

/* ---- Execution ----------------------------------------------------------- */

/* One execute's arguments, timers and the state of the buffer sets. */
struct exec_run {
  const clara_context *ctx;
  const clara_fbp_setup *s;
  cuda_fbp *p;
  const float *h_proj; /* host path */
  float *h_img;
  const float *d_proj; /* device path */
  float *d_img;
  const char *who;
  int timed;
  double up_ms, filt_ms, bp_ms, dl_ms;
  int pending[2];    /* set i holds a batch not yet waited for */
  int pending_up[2]; /* ... with an upload */
  long counter;      /* batches queued */
};

static clara_status run_cuda(const exec_run *r, cudaError_t e,
                             const char *call) {
  char buf[200];
  if (e == cudaSuccess)
    return CLARA_OK;
  snprintf(buf, sizeof buf, "%s: %s", r->who, call);
  return cuda_status(e, buf);
}

static clara_status run_fft(const exec_run *r, cufftResult e,
                            const char *call) {
  char buf[200];
  if (e == CUFFT_SUCCESS)
    return CLARA_OK;
  snprintf(buf, sizeof buf, "%s: %s", r->who, call);
  return cufft_status(e, buf);
}

#define RUN_CK(call, what)                                                     \
  do {                                                                         \
    clara_status st_ = run_cuda(r, (call), what);                              \
    if (st_ != CLARA_OK)                                                       \
      return st_;                                                              \
  } while (0)
#define RUN_FFT(call, what)                                                    \
  do {                                                                         \
    clara_status st_ = run_fft(r, (call), what);                               \
    if (st_ != CLARA_OK)                                                       \
      return st_;                                                              \
  } while (0)

/* Adds the elapsed time between two completed events to *acc. */
static clara_status add_elapsed(const exec_run *r, cudaEvent_t a, cudaEvent_t b,
                                double *acc) {
  float ms = 0.0f;
  RUN_CK(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
  *acc += ms;
  return CLARA_OK;
}

/* Waits for the batch held by buffer set i (its back-projection, hence its
 * upload and its reads of set i's buffers, are done) and books its time. */
static clara_status settle(exec_run *r, int i) {
  cuda_fbp *p = r->p;
  clara_status st;
  if (!r->pending[i])
    return CLARA_OK;
  RUN_CK(cudaEventSynchronize(p->bp_b[i]), "cudaEventSynchronize");
  r->pending[i] = 0;
  if (!r->timed)
    return CLARA_OK;
  if (r->pending_up[i]) {
    st = add_elapsed(r, p->up_a[i], p->up_b[i], &r->up_ms);
    if (st != CLARA_OK)
      return st;
  }
  st = add_elapsed(r, p->f_a[i], p->f_b[i], &r->filt_ms);
  if (st == CLARA_OK)
    st = add_elapsed(r, p->f_b[i], p->bp_b[i], &r->bp_ms);
  return st;
}

template <int KIND, int ZS, class S>
static void launch_2d(dim3 grid, cudaStream_t st, float *vol,
                      const bp_params &g, const S &smp, const view_batch &vb) {
  k_bp2d<KIND, ZS, S><<<grid, dim3(BP_BX, BP_BY), 0, st>>>(vol, g, smp, vb);
}

template <int KIND, class S>
static void launch_2d_zs(int zs, cudaStream_t st, float *vol,
                         const bp_params &g, const S &smp,
                         const view_batch &vb) {
  dim3 grid((unsigned)((g.nx + BP_BX - 1) / BP_BX),
            (unsigned)((g.ny + BP_BY - 1) / BP_BY),
            (unsigned)((g.nz + zs - 1) / zs));
  if (zs == 1)
    launch_2d<KIND, 1, S>(grid, st, vol, g, smp, vb);
  else if (zs == 4)
    launch_2d<KIND, 4, S>(grid, st, vol, g, smp, vb);
  else
    launch_2d<KIND, 8, S>(grid, st, vol, g, smp, vb);
}

template <class S>
static void launch_bp(clara_geometry_kind kind, cudaStream_t st, float *vol,
                      const bp_params &g, const S &smp, const view_batch &vb) {
  int zs = zs_for(g.nz);
  switch (kind) {
  case CLARA_GEOM_PARALLEL:
    launch_2d_zs<CLARA_GEOM_PARALLEL, S>(zs, st, vol, g, smp, vb);
    break;
  case CLARA_GEOM_FAN_FLAT:
    launch_2d_zs<CLARA_GEOM_FAN_FLAT, S>(zs, st, vol, g, smp, vb);
    break;
  case CLARA_GEOM_FAN_ARC:
    launch_2d_zs<CLARA_GEOM_FAN_ARC, S>(zs, st, vol, g, smp, vb);
    break;
  default: {
    dim3 grid((unsigned)((g.nx + BP_BX - 1) / BP_BX),
              (unsigned)((g.ny + BP_BY - 1) / BP_BY),
              (unsigned)((g.nz + CONE_ZC - 1) / CONE_ZC));
    k_bpcone<CONE_ZC, S><<<grid, dim3(BP_BX, BP_BY), 0, st>>>(vol, g, smp, vb);
  }
  }
}

/* Weights, filters and back-projects views [v0, v0 + nv) of slab 'sl' into
 * 'vol', on the compute stream; 'src' is window row 0 of view v0, views
 * src_vs floats apart. */
static clara_status filter_backproject(exec_run *r, const fbp_slab *sl,
                                       const bp_params &g, float *vol,
                                       const float *src, size_t src_vs, int v0,
                                       int nv, int i) {
  cuda_fbp *p = r->p;
  const clara_fbp_setup *s = r->s;
  const fbp_layout *L = &p->L;
  cudaStream_t cs = p->s_comp;
  int nspec = s->nfft / 2 + 1;

  RUN_CK(cudaEventRecord(p->f_a[i], cs), "cudaEventRecord");
  k_preweight<<<(unsigned)L->lines, LINE_TPB, 0, cs>>>(
      p->d_line, src, src_vs, L->nr, s->cols, s->nfft, nv, v0, sl->ra, p->d_vw,
      p->d_dw);
  RUN_CK(cudaGetLastError(), "weighting kernel launch");
  RUN_FFT(cufftExecR2C(p->r2c, p->d_line, (cufftComplex *)p->d_spec),
          "cufftExecR2C");
  k_filter<<<(unsigned)L->lines, LINE_TPB, 0, cs>>>(p->d_spec, p->d_filter,
                                                    nspec);
  RUN_CK(cudaGetLastError(), "filter kernel launch");
  RUN_FFT(cufftExecC2R(p->c2r, (cufftComplex *)p->d_spec, p->d_line),
          "cufftExecC2R");
  if (p->tex) {
    cudaMemcpy3DParms cp;
    memset(&cp, 0, sizeof cp);
    cp.srcPtr = make_cudaPitchedPtr(p->d_line, (size_t)s->nfft * sizeof(float),
                                    (size_t)s->cols, (size_t)L->nr);
    cp.dstArray = p->arr;
    cp.extent = make_cudaExtent((size_t)s->cols, (size_t)L->nr, (size_t)nv);
    cp.kind = cudaMemcpyDeviceToDevice;
    RUN_CK(cudaMemcpy3DAsync(&cp, cs), "cudaMemcpy3DAsync (texture array)");
  }
  RUN_CK(cudaEventRecord(p->f_b[i], cs), "cudaEventRecord");
  for (int sub = 0; sub < nv; sub += BP_VIEWS) {
    int n = nv - sub < BP_VIEWS ? nv - sub : BP_VIEWS;
    view_batch vb;
    fill_view_batch(&vb, p->h_cs, v0 + sub, n);
    if (p->tex) {
      tex_smp ts;
      ts.t = p->tex_obj;
      ts.layer0 = sub;
      ts.ra = (float)sl->ra;
      launch_bp(s->kind, cs, vol, g, ts, vb);
    } else {
      precise_smp ps;
      ps.ls = (size_t)s->nfft;
      ps.vs = (size_t)L->nr * ps.ls;
      ps.p = p->d_line + (size_t)sub * ps.vs;
      ps.cols = s->cols;
      ps.nr = L->nr;
      ps.ra = sl->ra;
      launch_bp(s->kind, cs, vol, g, ps, vb);
    }
    RUN_CK(cudaGetLastError(), "back-projection kernel launch");
  }
  RUN_CK(cudaEventRecord(p->bp_b[i], cs), "cudaEventRecord");
  return CLARA_OK;
}

/* Downloads slab 'sl' from the plan's volume into the caller's image
 * through the two staging buffers. */
static clara_status download(exec_run *r, const fbp_slab *sl) {
  cuda_fbp *p = r->p;
  size_t slice = (size_t)r->s->vol.nx * (size_t)r->s->vol.ny;
  size_t total = (size_t)sl->nz * slice, chunk = p->stage_floats;
  size_t nchunks = ceil_div(total, chunk);
  float *dst = r->h_img + (size_t)sl->iz0 * slice;
  cudaStream_t cs = p->s_comp;

  for (size_t k = 0; k < nchunks + 2; k++) {
    /* drain chunk k - 2 from buffer (k & 1) before reusing it */
    if (k >= 2) {
      size_t kk = k - 2, off = kk * chunk;
      size_t n = total - off < chunk ? total - off : chunk;
      int j = (int)(kk & 1);
      RUN_CK(cudaEventSynchronize(p->dl_b[j]), "cudaEventSynchronize");
      if (r->timed) {
        clara_status st = add_elapsed(r, p->dl_a[j], p->dl_b[j], &r->dl_ms);
        if (st != CLARA_OK)
          return st;
      }
      memcpy(dst + off, p->h_stage[j], n * sizeof(float));
    }
    if (k < nchunks) {
      size_t off = k * chunk;
      size_t n = total - off < chunk ? total - off : chunk;
      int j = (int)(k & 1);
      RUN_CK(cudaEventRecord(p->dl_a[j], cs), "cudaEventRecord");
      RUN_CK(cudaMemcpyAsync(p->h_stage[j], p->d_vol + off, n * sizeof(float),
                             cudaMemcpyDeviceToHost, cs),
             "cudaMemcpyAsync (image)");
      RUN_CK(cudaEventRecord(p->dl_b[j], cs), "cudaEventRecord");
    }
  }
  return CLARA_OK;
}

static clara_status run_pipeline(exec_run *r) {
  cuda_fbp *p = r->p;
  const clara_fbp_setup *s = r->s;
  const fbp_layout *L = &p->L;
  int device_path = r->d_proj != NULL;
  size_t slice = (size_t)s->vol.nx * (size_t)s->vol.ny;
  size_t cols = (size_t)s->cols;
  long steps = (long)L->nslabs * L->nbatches, step = 0;
  cudaStream_t cs = p->s_comp;
  clara_status st;

  if (device_path) {
    /* read the caller's projections after the caller's own work */
    RUN_CK(cudaEventRecord(p->dep[0], cudaStreamLegacy), "cudaEventRecord");
    RUN_CK(cudaStreamWaitEvent(cs, p->dep[0], 0), "cudaStreamWaitEvent");
    RUN_CK(cudaEventRecord(p->dep[1], cudaStreamPerThread), "cudaEventRecord");
    RUN_CK(cudaStreamWaitEvent(cs, p->dep[1], 0), "cudaStreamWaitEvent");
  }
  for (int k = 0; k < L->nslabs; k++) {
    const fbp_slab *sl = &p->slabs[k];
    bp_params g = make_bp_params(s, sl, L->nr);
    float *vol = device_path ? r->d_img + (size_t)sl->iz0 * slice : p->d_vol;
    size_t nvox = (size_t)sl->nz * slice;

    RUN_CK(cudaEventRecord(p->x_a, cs), "cudaEventRecord");
    RUN_CK(cudaMemsetAsync(vol, 0, nvox * sizeof(float), cs),
           "cudaMemsetAsync (volume)");
    RUN_CK(cudaEventRecord(p->x_b, cs), "cudaEventRecord");
    for (int b = 0; b < L->nbatches; b++) {
      int v0 = b * L->nvb;
      int nv = s->views - v0 < L->nvb ? s->views - v0 : L->nvb;
      int i = (int)(r->counter & 1);
      const float *src;
      size_t src_vs;
      st = settle(r, i);
      if (st != CLARA_OK)
        return st;
      if (!device_path) {
        float *stage = p->h_stage[i];
        size_t view_floats = (size_t)L->nr * cols;
        size_t bytes = (size_t)nv * view_floats * sizeof(float);
        const float *first =
            r->h_proj + ((size_t)v0 * (size_t)s->rows + (size_t)sl->ra) * cols;
        if (L->nr == s->rows)
          memcpy(stage, first, bytes); /* whole views: one block */
        else
          for (int j = 0; j < nv; j++)
            memcpy(stage + (size_t)j * view_floats,
                   first + (size_t)j * (size_t)s->rows * cols,
                   view_floats * sizeof(float));
        RUN_CK(cudaEventRecord(p->up_a[i], p->s_copy), "cudaEventRecord");
        RUN_CK(cudaMemcpyAsync(p->d_raw[i], stage, bytes,
                               cudaMemcpyHostToDevice, p->s_copy),
               "cudaMemcpyAsync (projections)");
        RUN_CK(cudaEventRecord(p->up_b[i], p->s_copy), "cudaEventRecord");
        RUN_CK(cudaStreamWaitEvent(cs, p->up_b[i], 0), "cudaStreamWaitEvent");
        src = p->d_raw[i];
        src_vs = view_floats;
      } else {
        src =
            r->d_proj + ((size_t)v0 * (size_t)s->rows + (size_t)sl->ra) * cols;
        src_vs = (size_t)s->rows * cols;
      }
      st = filter_backproject(r, sl, g, vol, src, src_vs, v0, nv, i);
      if (st != CLARA_OK)
        return st;
      r->pending[i] = 1;
      r->pending_up[i] = !device_path;
      r->counter++;
      step++;
      if (r->ctx->progress) {
        double f = (double)step / (double)steps;
        if (r->ctx->progress("filter+backproject", f, r->ctx->progress_user))
          return CUDA_FAIL(CLARA_ERR_CANCELLED,
                           "%s: filter+backproject: cancelled by the progress "
                           "callback at %.0f%%",
                           r->who, 100.0 * f);
      }
    }
    RUN_CK(cudaEventRecord(p->y_a, cs), "cudaEventRecord");
    k_finish<<<(unsigned)((size_t)sl->nz * (size_t)s->vol.ny), LINE_TPB, 0,
               cs>>>(vol, s->vol.nx, s->vol.ny, p->d_mask, (float)s->out_scale,
                     (float)s->out_offset);
    RUN_CK(cudaGetLastError(), "finishing kernel launch");
    RUN_CK(cudaEventRecord(p->y_b, cs), "cudaEventRecord");
    /* the oldest pending set first, then the newer one */
    st = settle(r, (int)(r->counter & 1));
    if (st == CLARA_OK)
      st = settle(r, (int)((r->counter + 1) & 1));
    if (st != CLARA_OK)
      return st;
    RUN_CK(cudaEventSynchronize(p->y_b), "cudaEventSynchronize");
    if (r->timed) {
      st = add_elapsed(r, p->x_a, p->x_b, &r->bp_ms);
      if (st == CLARA_OK)
        st = add_elapsed(r, p->y_a, p->y_b, &r->bp_ms);
      if (st != CLARA_OK)
        return st;
    }
    if (!device_path) {
      st = download(r, sl);
      if (st != CLARA_OK)
        return st;
    }
  }
  return CLARA_OK;
}

#undef RUN_CK
#undef RUN_FFT

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static clara_status execute(const clara_context *ctx, const clara_fbp_setup *s,
                            const void *state, const float *h_proj,
                            float *h_img, const float *d_proj, float *d_img,
                            clara_fbp_timing *timing, const char *who) {
  double t0 = now_ms();
  cuda_fbp *p = (cuda_fbp *)state; /* the mutex and the buffers change */
  exec_run r;
  clara_status st;

  if (!p)
    return CUDA_FAIL(CLARA_ERR_INVALID_ARG, "%s: the plan has no CUDA state",
                     who);
  memset(&r, 0, sizeof r);
  r.ctx = ctx;
  r.s = s;
  r.p = p;
  r.h_proj = h_proj;
  r.h_img = h_img;
  r.d_proj = d_proj;
  r.d_img = d_img;
  r.who = who;
  r.timed = timing != NULL;

  if (pthread_mutex_lock(&p->mu) != 0)
    return CUDA_FAIL(CLARA_ERR_DEVICE, "%s: cannot lock the plan", who);
  {
    device_guard guard;
    st = cuda_status(cudaSetDevice(p->device), who);
    if (st == CLARA_OK) {
      (void)cudaGetLastError(); /* an earlier, unrelated launch error */
      st = run_pipeline(&r);
      if (st != CLARA_OK) {
        /* nothing may still run on the plan's buffers or the caller's memory
         * after the return */
        (void)cudaStreamSynchronize(p->s_copy);
        (void)cudaStreamSynchronize(p->s_comp);
      }
    }
  }
  pthread_mutex_unlock(&p->mu);
  if (st == CLARA_OK && timing) {
    timing->upload_ms = r.up_ms;
    timing->filter_ms = r.filt_ms;
    timing->backproject_ms = r.bp_ms;
    timing->download_ms = r.dl_ms;
    timing->slabs = p->L.nslabs;
    timing->total_ms = now_ms() - t0;
  }
  return st;
}

clara_status cuda_fbp_execute(const clara_context *ctx,
                              const clara_fbp_setup *setup, const void *state,
                              const float *projections, float *image,
                              clara_fbp_timing *timing) {
  return execute(ctx, setup, state, projections, image, NULL, NULL, timing,
                 "clara_fbp_execute");
}

clara_status cuda_fbp_execute_device(const clara_context *ctx,
                                     const clara_fbp_setup *setup,
                                     const void *state,
                                     const float *d_projections, float *d_image,
                                     clara_fbp_timing *timing) {
  static const char who[] = "clara_fbp_execute_device";
  const cuda_fbp *p = (const cuda_fbp *)state;
  clara_status st;
  if (!p)
    return CUDA_FAIL(CLARA_ERR_INVALID_ARG, "%s: the plan has no CUDA state",
                     who);
  st = cuda_check_device_pointer(d_projections, p->device, who, "d_projections",
                                 "clara_fbp_execute");
  if (st == CLARA_OK)
    st = cuda_check_device_pointer(d_image, p->device, who, "d_image",
                                   "clara_fbp_execute");
  if (st != CLARA_OK)
    return st;
  return execute(ctx, setup, state, NULL, NULL, d_projections, d_image, timing,
                 who);
}
