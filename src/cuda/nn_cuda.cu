/* nn_cuda.cu -- the CUDA backend's denoiser: a chain of 3x3 convolutions
 * (bias, optional ReLU) with the model's normalisation and residual, the
 * twin of src/cpu/nn_cpu.c (docs/FORMATS.md, "Denoiser model file").
 *
 * Convolution kernel (k_conv). A direct 3x3 convolution, one launch per
 * layer for a batch of slices. A block computes a tile of TW x TH output
 * pixels (TW = 32) for CO_B output channels of one slice; its threads are
 * 32 (x) x TY (row groups) x CG (channel groups), and each thread keeps
 * RPT consecutive rows of one column for CO_PT channels in registers
 * (RPT x CO_PT accumulators). The input channels are taken in chunks of
 * CI_C: the block stages the chunk's (TH + 2) x (TW + 2) input patch, zero
 * outside the image (PyTorch's Conv2d(padding=1)), and the chunk's weights
 * for its CO_B channels in shared memory; then each thread reads its
 * (RPT + 2) x 3 input window once per channel and reuses it for CO_PT
 * output channels, and every weight it reads for RPT rows. The 32 threads
 * of a warp share the row group and the channel group, so their input
 * reads are consecutive and their weight reads are broadcasts. Bias and
 * ReLU are applied when the accumulators are stored. Three shapes, chosen
 * per layer by its output channels: wide (CO_PT 8 x CG 4 = 32 channels,
 * tile 32 x 8), mid (4 x 2 = 8 channels, tile 32 x 16) and narrow (1
 * channel, tile 32 x 32, for the last layer). The weights are rearranged
 * at load time to [channel block][cin][3][3][CO_B], zero-padded past cout,
 * so that a chunk's weights are one contiguous run.
 *
 * Precision. FP32: float everywhere, fmaf accumulation. FP16
 * (CLARA_PRECISION_FP16): weights and activations are stored in half
 * (round to nearest), products are accumulated in float, the bias stays
 * float; the last layer writes its output in float, and the residual and
 * the mapping back use the float normalised input, so the only half
 * roundings are the stored weights and the inner activations. A weight
 * that does not fit half (|w| > 65504) refuses FP16 at load time. Half
 * activations can still overflow on inputs far outside the model's
 * normalised range; that shows as non-finite output.
 *
 * One execute, per batch of slices (as many as the device memory budget
 * allows, see nn_plan):
 *  1. percentile normalisation only: k_percentile, one block per slice, a
 *     radix select (four 8-bit passes of a shared histogram over the
 *     order-preserving integer keys of the floats) of the value at rank
 *     round((n - 1) q / 100), exactly the element a sort would put there;
 *     p <= 0 becomes 1;
 *  2. k_normalise: x_n = (x - offset) / scale (FIXED) or x / p (PERCENTILE)
 *     into the first activation buffer;
 *  3. k_conv per layer, ping-pong between two activation buffers, the last
 *     layer into a float buffer;
 *  4. k_finish: out = (x_n - net) * scale + offset (residual; net * scale +
 *     offset otherwise), x_n recomputed from the input as in step 2, so
 *     in == out works: each element is read before it is written, by the
 *     same thread.
 * The device entry first checks the whole input for NaN and infinities
 * (k_finite, one flag) and refuses it before writing anything. The host
 * entry copies each batch in (pageable copies on the call's stream), runs
 * it in place on the device and copies it out.
 *
 * Threads. The state (weights on the device) is read-only after
 * nn_create; every execute makes its own stream and scratch, so
 * concurrent executes on one denoiser are independent. Executes are
 * synchronous: the device entry orders its stream after the work already
 * queued on the legacy default stream (the caller's copies) and returns
 * when the output is complete. The caller's current device is restored.
 *
 * The kernels' bodies are __host__ __device__ functions called with their
 * block and thread indices; barriers go through nn_sync(), which on the
 * host calls NN_HOST_BARRIER() when the includer defines it. That is how
 * these kernels were run against the CPU on a machine without a GPU (an
 * emulator that runs a block's threads as coroutines). */
#include "cuda_backend.h"

#include <cuda_fp16.h>
#include <limits.h>
#include <math.h>
#include <new>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NN_HD __host__ __device__ __forceinline__

/* the host compiler (emulation) sees no unroll pragma */
#ifdef __CUDA_ARCH__
#define NN_UNROLL _Pragma("unroll")
#else
#define NN_UNROLL
#endif

#define NN_MAX_LAYERS 64 /* docs/FORMATS.md: 1 to 64 layers */

#define NN_TPB 256             /* threads of the element-wise kernels */
#define NN_MAX_BLOCKS 4096u    /* grid-stride kernels: blocks at most */
#define NN_SELECT_TPB 256      /* k_percentile: threads per slice */
#define NN_ALIGN ((size_t)256) /* scratch sub-buffers start aligned */
/* Activation elements (channels x pixels x slices) of one buffer per
 * batch, at most: large enough to fill a GPU many times over (4 slices of
 * 512 x 512 x 64), small enough not to take a device for one call. */
#define NN_BATCH_ELEMS ((size_t)1 << 26)

/* ---- Device helpers ------------------------------------------------------ */

NN_HD void nn_sync(void) {
#ifdef __CUDA_ARCH__
  __syncthreads();
#elif defined(NN_HOST_BARRIER)
  NN_HOST_BARRIER();
#endif
}

NN_HD unsigned nn_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  unsigned u;
  memcpy(&u, &f, sizeof u);
  return u;
#endif
}

NN_HD float nn_from_bits(unsigned u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
#endif
}

/* Adds to a shared counter (on the host, the emulator's threads take
 * turns, so a plain add is atomic there). */
NN_HD void nn_shared_add(unsigned *p, unsigned v) {
#ifdef __CUDA_ARCH__
  atomicAdd(p, v);
#else
  *p += v;
#endif
}

NN_HD float nn_f(float v) { return v; }
NN_HD float nn_f(__half v) { return __half2float(v); }

template <class T> NN_HD T nn_to(float v);
template <> NN_HD float nn_to<float>(float v) { return v; }
template <> NN_HD __half nn_to<__half>(float v) { return __float2half_rn(v); }

/* Order-preserving map of a finite float to an unsigned key (negative
 * values reversed below the positive ones), and back. */
NN_HD unsigned nn_key(float f) {
  unsigned u = nn_bits(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
NN_HD float nn_unkey(unsigned k) {
  return nn_from_bits((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

/* ---- Convolution --------------------------------------------------------- */

template <int CO_PT_, int CG_, int TY_, int RPT_> struct conv_cfg {
  static constexpr int CO_PT = CO_PT_; /* output channels per thread */
  static constexpr int CG = CG_;       /* channel groups per block */
  static constexpr int TY = TY_;       /* row groups per block */
  static constexpr int RPT = RPT_;     /* rows per thread */
  static constexpr int TW = 32, TH = TY * RPT, CO_B = CO_PT * CG, CI_C = 8;
  static constexpr int THREADS = 32 * TY * CG;
  static constexpr int IN_W = TW + 2, IN_H = TH + 2;
  static constexpr int S_IN = CI_C * IN_H * IN_W; /* staged inputs */
  static constexpr int S_W = CI_C * 9 * CO_B;     /* staged weights */
};
typedef conv_cfg<8, 4, 2, 4> cfg_wide;   /* 32 channels, tile 32 x 8 */
typedef conv_cfg<4, 2, 4, 4> cfg_mid;    /* 8 channels, tile 32 x 16 */
typedef conv_cfg<1, 1, 8, 4> cfg_narrow; /* 1 channel, tile 32 x 32 */

enum { NN_CFG_WIDE = 0, NN_CFG_MID = 1, NN_CFG_NARROW = 2 };

/* One layer's launch, by value. Grid: x = tile (tiles_x per tile row),
 * y = slice of the batch, z = output channel block. */
struct conv_params {
  const void *in; /* T [slices][cin][ny][nx] */
  void *out;      /* TO [slices][cout][ny][nx] */
  const void *w;  /* T [cout blocks][cin][9][CO_B] */
  const float *b; /* [cout blocks * CO_B] */
  int nx, ny, cin, cout, relu, tiles_x;
  size_t npix;
};

template <class C, class T, class TO>
NN_HD void conv_block(const conv_params &P, T *s_in, float *s_w, int tile,
                      int slice, int cob, int tx, int ty, int tc) {
  const int tid = (tc * C::TY + ty) * 32 + tx;
  const int x0 = (tile % P.tiles_x) * C::TW;
  const int y0 = (tile / P.tiles_x) * C::TH;
  const T *in = (const T *)P.in + (size_t)slice * (size_t)P.cin * P.npix;
  const T *wb = (const T *)P.w + (size_t)cob * (size_t)P.cin * 9 * C::CO_B;
  float acc[C::CO_PT][C::RPT];
  NN_UNROLL
  for (int co = 0; co < C::CO_PT; co++) {
    NN_UNROLL
    for (int r = 0; r < C::RPT; r++)
      acc[co][r] = 0.0f;
  }

  for (int c0 = 0; c0 < P.cin; c0 += C::CI_C) {
    const int nci = P.cin - c0 < C::CI_C ? P.cin - c0 : C::CI_C;
    /* the chunk's input patch, zero outside the image */
    for (int i = tid; i < nci * C::IN_H * C::IN_W; i += C::THREADS) {
      int c = i / (C::IN_H * C::IN_W);
      int r = i / C::IN_W - c * C::IN_H, q = i % C::IN_W;
      int gy = y0 + r - 1, gx = x0 + q - 1;
      T v = nn_to<T>(0.0f);
      if (gy >= 0 && gy < P.ny && gx >= 0 && gx < P.nx)
        v = in[(size_t)(c0 + c) * P.npix + (size_t)gy * (size_t)P.nx +
               (size_t)gx];
      s_in[i] = v;
    }
    /* its weights: one contiguous run */
    {
      const T *wc = wb + (size_t)c0 * 9 * C::CO_B;
      for (int i = tid; i < nci * 9 * C::CO_B; i += C::THREADS)
        s_w[i] = nn_f(wc[i]);
    }
    nn_sync();
    for (int c = 0; c < nci; c++) {
      float v[C::RPT + 2][3];
      const T *sp = s_in + (c * C::IN_H + ty * C::RPT) * C::IN_W + tx;
      const float *wp = s_w + c * 9 * C::CO_B + tc * C::CO_PT;
      NN_UNROLL
      for (int r = 0; r < C::RPT + 2; r++) {
        NN_UNROLL
        for (int k = 0; k < 3; k++)
          v[r][k] = nn_f(sp[r * C::IN_W + k]);
      }
      NN_UNROLL
      for (int kh = 0; kh < 3; kh++) {
        NN_UNROLL
        for (int kw = 0; kw < 3; kw++) {
          float w[C::CO_PT];
          NN_UNROLL
          for (int co = 0; co < C::CO_PT; co++)
            w[co] = wp[(kh * 3 + kw) * C::CO_B + co];
          NN_UNROLL
          for (int co = 0; co < C::CO_PT; co++) {
            NN_UNROLL
            for (int r = 0; r < C::RPT; r++)
              acc[co][r] = fmaf(w[co], v[r + kh][kw], acc[co][r]);
          }
        }
      }
    }
    nn_sync(); /* before the next chunk overwrites the patch */
  }

  {
    const int x = x0 + tx;
    TO *out = (TO *)P.out + (size_t)slice * (size_t)P.cout * P.npix;
    NN_UNROLL
    for (int co = 0; co < C::CO_PT; co++) {
      const int o = cob * C::CO_B + tc * C::CO_PT + co;
      if (o >= P.cout || x >= P.nx)
        continue;
      const float b = P.b[o];
      NN_UNROLL
      for (int r = 0; r < C::RPT; r++) {
        const int y = y0 + ty * C::RPT + r;
        if (y < P.ny) {
          float s = acc[co][r] + b;
          if (P.relu && s < 0.0f)
            s = 0.0f;
          out[(size_t)o * P.npix + (size_t)y * (size_t)P.nx + (size_t)x] =
              nn_to<TO>(s);
        }
      }
    }
  }
}

template <class C, class T, class TO>
__global__ void __launch_bounds__(C::THREADS) k_conv(const conv_params P) {
  __shared__ __align__(16) unsigned char s_in[C::S_IN * sizeof(T)];
  __shared__ __align__(16) float s_w[C::S_W];
  conv_block<C, T, TO>(P, (T *)s_in, s_w, (int)blockIdx.x, (int)blockIdx.y,
                       (int)blockIdx.z, (int)threadIdx.x, (int)threadIdx.y,
                       (int)threadIdx.z);
}

/* ---- Normalisation, finish, finiteness, percentile ---------------------- */

/* Element-wise launches: i = tid, tid + stride, ... < n over [ns][npix]. */
struct ew_params {
  const float *in;      /* the caller's slices of the batch */
  void *act;            /* k_normalise: T [ns][npix] */
  const float *net;     /* k_finish: [ns][npix] */
  float *out;           /* k_finish: the caller's slices of the batch */
  const float *scale;   /* [ns] per-slice p (PERCENTILE), or NULL */
  float offset, fscale; /* FIXED */
  int residual;
  size_t npix, n;
};

NN_HD void ew_norm(const ew_params &P, size_t i, float *off, float *sc) {
  if (P.scale) {
    *off = 0.0f;
    *sc = P.scale[i / P.npix];
  } else {
    *off = P.offset;
    *sc = P.fscale;
  }
}

template <class T>
NN_HD void normalise_thread(const ew_params &P, size_t tid, size_t stride) {
  for (size_t i = tid; i < P.n; i += stride) {
    float off, sc;
    ew_norm(P, i, &off, &sc);
    ((T *)P.act)[i] = nn_to<T>((P.in[i] - off) / sc);
  }
}

NN_HD void finish_thread(const ew_params &P, size_t tid, size_t stride) {
  for (size_t i = tid; i < P.n; i += stride) {
    float off, sc, v;
    ew_norm(P, i, &off, &sc);
    v = P.net[i];
    if (P.residual)
      v = (P.in[i] - off) / sc - v;
    P.out[i] = v * sc + off;
  }
}

NN_HD void finite_thread(const float *in, size_t n, int *flag, size_t tid,
                         size_t stride) {
  int bad = 0;
  for (size_t i = tid; i < n; i += stride)
    bad |= (nn_bits(in[i]) & 0x7f800000u) == 0x7f800000u;
  if (bad)
    *flag = 1; /* every writer writes 1 */
}

/* The value at 'rank' of the slice's sorted values, by radix select: four
 * passes, each histogramming the next 8 bits of the keys that match the
 * bits chosen so far. hist: 256 shared counters; sel: 2 shared words. */
NN_HD void percentile_block(const float *in, float *scale, size_t npix,
                            unsigned rank, unsigned *hist, unsigned *sel,
                            int slice, int tid) {
  const float *x = in + (size_t)slice * npix;
  unsigned prefix = 0, mask = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = tid; b < 256; b += NN_SELECT_TPB)
      hist[b] = 0;
    nn_sync();
    for (size_t i = (size_t)tid; i < npix; i += NN_SELECT_TPB) {
      unsigned k = nn_key(x[i]);
      if ((k & mask) == prefix)
        nn_shared_add(&hist[(k >> shift) & 255u], 1u);
    }
    nn_sync();
    if (tid == 0) {
      unsigned r = shift == 24 ? rank : sel[1], cum = 0;
      int b = 0;
      while (b < 255 && r >= cum + hist[b])
        cum += hist[b++];
      sel[0] = (unsigned)b;
      sel[1] = r - cum;
    }
    nn_sync();
    prefix |= sel[0] << shift;
    mask |= 255u << shift;
    nn_sync(); /* sel and hist are rewritten by the next pass */
  }
  if (tid == 0) {
    float p = nn_unkey(prefix);
    scale[slice] = p > 0.0f ? p : 1.0f;
  }
}

template <class T> __global__ void k_normalise(const ew_params P) {
  normalise_thread<T>(P, (size_t)blockIdx.x * blockDim.x + threadIdx.x,
                      (size_t)gridDim.x * blockDim.x);
}

__global__ void k_finish(const ew_params P) {
  finish_thread(P, (size_t)blockIdx.x * blockDim.x + threadIdx.x,
                (size_t)gridDim.x * blockDim.x);
}

__global__ void k_finite(const float *in, size_t n, int *flag) {
  finite_thread(in, n, flag, (size_t)blockIdx.x * blockDim.x + threadIdx.x,
                (size_t)gridDim.x * blockDim.x);
}

__global__ void __launch_bounds__(NN_SELECT_TPB)
    k_percentile(const float *in, float *scale, size_t npix, unsigned rank) {
  __shared__ unsigned hist[256];
  __shared__ unsigned sel[2];
  percentile_block(in, scale, npix, rank, hist, sel, (int)blockIdx.x,
                   (int)threadIdx.x);
}

static unsigned nn_blocks(size_t n) {
  size_t b = (n + NN_TPB - 1) / NN_TPB;
  if (b < 1)
    b = 1;
  return b > NN_MAX_BLOCKS ? NN_MAX_BLOCKS : (unsigned)b;
}

/* ---- State --------------------------------------------------------------- */

namespace {

struct nn_layer_dev {
  int cin, cout, relu, cfg, nco; /* nco: output channel blocks */
  size_t w_off, b_off;           /* elements into the weight / bias blocks */
};

struct cuda_nn {
  int device;
  int half; /* FP16 */
  int n_layers, max_ch;
  nn_layer_dev L[NN_MAX_LAYERS];
  void *d_w;  /* every layer's weights, float or half */
  float *d_b; /* every layer's biases, padded to the channel block */
  size_t param_bytes;
};

} // namespace

static int cfg_of(int cout) {
  return cout >= 24 ? NN_CFG_WIDE : cout >= 4 ? NN_CFG_MID : NN_CFG_NARROW;
}

static int cfg_cob(int cfg) {
  return cfg == NN_CFG_WIDE  ? cfg_wide::CO_B
         : cfg == NN_CFG_MID ? cfg_mid::CO_B
                             : cfg_narrow::CO_B;
}

static int cfg_th(int cfg) {
  return cfg == NN_CFG_WIDE  ? cfg_wide::TH
         : cfg == NN_CFG_MID ? cfg_mid::TH
                             : cfg_narrow::TH;
}

void cuda_nn_destroy(void *state) {
  cuda_nn *p = (cuda_nn *)state;
  if (!p)
    return;
  {
    device_guard guard;
    if (cudaSetDevice(p->device) == cudaSuccess) {
      (void)cudaFree(p->d_w);
      (void)cudaFree(p->d_b);
    }
    (void)cudaGetLastError();
  }
  delete p;
}

clara_status cuda_nn_create(const clara_context *ctx, const clara_nn_setup *s,
                            void **state) {
  static const char who[] = "clara_denoiser_load";
  const cuda_ctx *c = (const cuda_ctx *)ctx->backend_state;
  cuda_nn *p = NULL;
  void *h_w = NULL;
  float *h_b = NULL;
  size_t nw = 0, nb = 0, esz, budget;
  char note[160];
  clara_status st;

  *state = NULL;
  if (!c)
    return CUDA_FAIL(CLARA_ERR_DEVICE, "%s: the CUDA context has no state",
                     who);
  if (s->precision != CLARA_PRECISION_FP32 &&
      s->precision != CLARA_PRECISION_FP16)
    return CUDA_FAIL(CLARA_ERR_UNSUPPORTED,
                     "%s: precision %d is not one the CUDA backend runs "
                     "(CLARA_PRECISION_FP32 or CLARA_PRECISION_FP16)",
                     who, (int)s->precision);
  if (s->n_layers < 1 || s->n_layers > NN_MAX_LAYERS || !s->layers)
    return CUDA_FAIL(CLARA_ERR_INVALID_ARG,
                     "%s: %d layers; the CUDA backend runs 1 to %d", who,
                     s->n_layers, NN_MAX_LAYERS);
  if (s->norm != CLARA_NN_NORM_FIXED && s->norm != CLARA_NN_NORM_PERCENTILE)
    return CUDA_FAIL(CLARA_ERR_INVALID_ARG, "%s: normalisation %d", who,
                     (int)s->norm);
  p = new (std::nothrow) cuda_nn();
  if (!p)
    return CUDA_FAIL(CLARA_ERR_OUT_OF_MEMORY, "%s: CUDA denoiser state", who);
  p->device = c->device;
  p->half = s->precision == CLARA_PRECISION_FP16;
  p->n_layers = s->n_layers;
  p->max_ch = 1;
  esz = p->half ? sizeof(__half) : sizeof(float);

  /* layout: per layer [cout blocks][cin][9][CO_B], biases [cout blocks *
   * CO_B], zero past cout */
  for (int l = 0; l < s->n_layers; l++) {
    const clara_nn_layer *ly = &s->layers[l];
    nn_layer_dev *d = &p->L[l];
    int cob;
    if (ly->cin < 1 || ly->cin > 256 || ly->cout < 1 || ly->cout > 256 ||
        (l == 0 && ly->cin != 1) ||
        (l > 0 && ly->cin != s->layers[l - 1].cout) ||
        (l == s->n_layers - 1 && ly->cout != 1) || !ly->weight || !ly->bias) {
      st = CUDA_FAIL(CLARA_ERR_INVALID_ARG,
                     "%s: layer %d: %d -> %d channels do not chain (1 in, 1 "
                     "out, 1 to 256 inside)",
                     who, l, ly->cin, ly->cout);
      goto fail;
    }
    d->cin = ly->cin;
    d->cout = ly->cout;
    d->relu = ly->relu != 0;
    d->cfg = cfg_of(ly->cout);
    cob = cfg_cob(d->cfg);
    d->nco = (ly->cout + cob - 1) / cob;
    d->w_off = nw;
    d->b_off = nb;
    nw += (size_t)d->nco * (size_t)d->cin * 9 * (size_t)cob;
    nb += (size_t)d->nco * (size_t)cob;
    if (ly->cout > p->max_ch)
      p->max_ch = ly->cout;
  }
  p->param_bytes = nw * esz + nb * sizeof(float);

  {
    device_guard guard;
    st = cuda_use_device(ctx);
    if (st != CLARA_OK)
      goto fail;
    st = cuda_budget(ctx, &budget, note, sizeof note);
    if (st != CLARA_OK)
      goto fail;
    if (p->param_bytes > budget) {
      st = CUDA_FAIL(CLARA_ERR_OUT_OF_MEMORY,
                     "%s: the weights need %zu bytes of device memory, %zu "
                     "are available (%s)",
                     who, p->param_bytes, budget, note);
      goto fail;
    }
    h_w = calloc(nw, esz);
    h_b = (float *)calloc(nb, sizeof(float));
    if (!h_w || !h_b) {
      st = CUDA_FAIL(CLARA_ERR_OUT_OF_MEMORY,
                     "%s: %zu bytes of host memory for the weights", who,
                     p->param_bytes);
      goto fail;
    }
    for (int l = 0; l < s->n_layers; l++) {
      const clara_nn_layer *ly = &s->layers[l];
      const nn_layer_dev *d = &p->L[l];
      const int cob = cfg_cob(d->cfg);
      for (int o = 0; o < d->cout; o++) {
        h_b[d->b_off + (size_t)o] = ly->bias[o];
        for (int i = 0; i < d->cin; i++)
          for (int k = 0; k < 9; k++) {
            float w = ly->weight[((size_t)o * (size_t)d->cin + (size_t)i) * 9 +
                                 (size_t)k];
            size_t at = d->w_off +
                        (((size_t)(o / cob) * (size_t)d->cin + (size_t)i) * 9 +
                         (size_t)k) *
                            (size_t)cob +
                        (size_t)(o % cob);
            if (p->half) {
              if (!(fabsf(w) <= 65504.0f)) {
                st = CUDA_FAIL(CLARA_ERR_UNSUPPORTED,
                               "%s: CLARA_PRECISION_FP16: layer %d weight "
                               "[%d][%d][%d][%d] = %g does not fit half "
                               "precision (|w| <= 65504); use FP32",
                               who, l, o, i, k / 3, k % 3, (double)w);
                goto fail;
              }
              ((__half *)h_w)[at] = __float2half_rn(w);
            } else {
              ((float *)h_w)[at] = w;
            }
          }
      }
    }
    st = cuda_alloc(&p->d_w, nw * esz, who, "denoiser weights");
    if (st != CLARA_OK)
      goto fail;
    st = cuda_alloc((void **)&p->d_b, nb * sizeof(float), who,
                    "denoiser biases");
    if (st != CLARA_OK)
      goto fail;
    st = cuda_status(cudaMemcpy(p->d_w, h_w, nw * esz, cudaMemcpyHostToDevice),
                     "clara_denoiser_load: cudaMemcpy (weights)");
    if (st != CLARA_OK)
      goto fail;
    st = cuda_status(
        cudaMemcpy(p->d_b, h_b, nb * sizeof(float), cudaMemcpyHostToDevice),
        "clara_denoiser_load: cudaMemcpy (biases)");
    if (st != CLARA_OK)
      goto fail;
    /* cudaMemcpy from pageable memory may return before the DMA is done;
     * the staging buffers are freed next */
    st = cuda_status(cudaStreamSynchronize(0),
                     "clara_denoiser_load: cudaStreamSynchronize");
    if (st != CLARA_OK)
      goto fail;
  }
  free(h_w);
  free(h_b);
  *state = p;
  return CLARA_OK;
fail:
  free(h_w);
  free(h_b);
  cuda_nn_destroy(p);
  return st;
}

/* ---- Execution ----------------------------------------------------------- */

static size_t nn_round(size_t n) {
  return (n + NN_ALIGN - 1) & ~(NN_ALIGN - 1);
}

namespace {

/* One call's scratch, carved from one allocation, and its stream. */
struct nn_run {
  const clara_context *ctx;
  const clara_nn_setup *s;
  const cuda_nn *p;
  const char *who;
  int nx, ny, nslices;
  size_t npix;
  int host;      /* in/out are host memory */
  int batch;     /* slices per batch */
  unsigned rank; /* PERCENTILE */
  void *scratch;
  void *act[2]; /* T [batch][max_ch][npix] */
  float *net;   /* [batch][npix] */
  float *io;    /* host entry: [batch][npix] */
  float *scale; /* [batch] */
  int *flag;
  cudaStream_t st;
  cudaEvent_t ready;
};

} // namespace

#define RUN_CK(call, what)                                                     \
  do {                                                                         \
    st = cuda_status((call), what);                                            \
    if (st != CLARA_OK)                                                        \
      return st;                                                               \
  } while (0)

/* Sizes the batch from the budget and allocates the scratch. */
static clara_status nn_plan(nn_run *r) {
  const cuda_nn *p = r->p;
  const size_t esz = p->half ? sizeof(__half) : sizeof(float);
  size_t budget, act, per, fixed, most, cap;
  char note[160], buf[200];
  clara_status st;

  st = cuda_budget(r->ctx, &budget, note, sizeof note);
  if (st != CLARA_OK)
    return st;
  /* the weights count against a device_memory_limit */
  budget = budget > p->param_bytes ? budget - p->param_bytes : 0;
  if (__builtin_mul_overflow(r->npix, (size_t)p->max_ch * esz, &act) ||
      __builtin_mul_overflow(r->npix, sizeof(float) * (r->host ? 2 : 1),
                             &per) ||
      __builtin_add_overflow(per, 2 * act + sizeof(float), &per))
    return CUDA_FAIL(CLARA_ERR_OUT_OF_MEMORY,
                     "%s: a %d x %d slice with %d channels overflows the "
                     "address space",
                     r->who, r->nx, r->ny, p->max_ch);
  fixed = 6 * NN_ALIGN;
  if (budget < fixed || (budget - fixed) / per < 1)
    return CUDA_FAIL(CLARA_ERR_OUT_OF_MEMORY,
                     "%s: one %d x %d slice needs %zu bytes of device memory "
                     "(%d channels), %zu are available besides the %zu bytes "
                     "of weights (%s)",
                     r->who, r->nx, r->ny, per + fixed, p->max_ch, budget,
                     p->param_bytes, note);
  most = (budget - fixed) / per;
  cap = NN_BATCH_ELEMS / ((size_t)p->max_ch * r->npix);
  if (cap < 1)
    cap = 1;
  if (cap > 65535) /* grid.y */
    cap = 65535;
  if (most > cap)
    most = cap;
  r->batch = most >= (size_t)r->nslices ? r->nslices : (int)most;

  {
    size_t b = (size_t)r->batch;
    size_t a = nn_round(b * act), n = nn_round(b * r->npix * sizeof(float));
    size_t total =
        2 * a + n + (r->host ? n : 0) + nn_round(b * sizeof(float)) + NN_ALIGN;
    char *base;
    snprintf(buf, sizeof buf, "scratch for %d slice%s of %d x %d", r->batch,
             r->batch == 1 ? "" : "s", r->nx, r->ny);
    st = cuda_alloc(&r->scratch, total, r->who, buf);
    if (st != CLARA_OK)
      return st;
    base = (char *)r->scratch;
    r->act[0] = base;
    r->act[1] = base + a;
    r->net = (float *)(base + 2 * a);
    base += 2 * a + n;
    if (r->host) {
      r->io = (float *)base;
      base += n;
    }
    r->scale = (float *)base;
    base += nn_round(b * sizeof(float));
    r->flag = (int *)base;
  }
  return CLARA_OK;
}

template <class C, class T, class TO>
static void launch_conv(const conv_params &P, int nco, int tiles, int ns,
                        cudaStream_t s) {
  dim3 grid((unsigned)tiles, (unsigned)ns, (unsigned)nco);
  dim3 block(32, C::TY, C::CG);
  k_conv<C, T, TO><<<grid, block, 0, s>>>(P);
}

/* The network on 'ns' slices: src (device) -> dst (device), may alias. */
static clara_status nn_batch(nn_run *r, const float *src, float *dst, int ns) {
  const cuda_nn *p = r->p;
  const clara_nn_setup *s = r->s;
  clara_status st;
  ew_params E;
  size_t n = (size_t)ns * r->npix;
  char what[96];

  memset(&E, 0, sizeof E);
  E.in = src;
  E.out = dst;
  E.act = r->act[0];
  E.net = r->net;
  E.npix = r->npix;
  E.n = n;
  E.residual = s->residual != 0;
  if (s->norm == CLARA_NN_NORM_PERCENTILE) {
    E.scale = r->scale;
    k_percentile<<<(unsigned)ns, NN_SELECT_TPB, 0, r->st>>>(src, r->scale,
                                                            r->npix, r->rank);
    snprintf(what, sizeof what, "%s: k_percentile launch", r->who);
    RUN_CK(cudaGetLastError(), what);
  } else {
    E.offset = (float)s->offset;
    E.fscale = (float)s->scale;
  }
  if (p->half)
    k_normalise<__half><<<nn_blocks(n), NN_TPB, 0, r->st>>>(E);
  else
    k_normalise<float><<<nn_blocks(n), NN_TPB, 0, r->st>>>(E);
  snprintf(what, sizeof what, "%s: k_normalise launch", r->who);
  RUN_CK(cudaGetLastError(), what);

  for (int l = 0; l < p->n_layers; l++) {
    const nn_layer_dev *d = &p->L[l];
    const int last = l == p->n_layers - 1;
    const size_t tx = ((size_t)r->nx + 31) / 32;
    const size_t ty =
        ((size_t)r->ny + (size_t)cfg_th(d->cfg) - 1) / (size_t)cfg_th(d->cfg);
    conv_params P;
    if (tx * ty > (size_t)INT_MAX)
      return CUDA_FAIL(CLARA_ERR_UNSUPPORTED,
                       "%s: a %d x %d image has more tiles than one launch "
                       "takes",
                       r->who, r->nx, r->ny);
    P.in = r->act[l & 1];
    P.out = last ? (void *)r->net : r->act[(l + 1) & 1];
    P.w = (const char *)p->d_w +
          d->w_off * (p->half ? sizeof(__half) : sizeof(float));
    P.b = p->d_b + d->b_off;
    P.nx = r->nx;
    P.ny = r->ny;
    P.cin = d->cin;
    P.cout = d->cout;
    P.relu = d->relu;
    P.tiles_x = (int)tx;
    P.npix = r->npix;
    const int tiles = (int)(tx * ty);
    if (!p->half) {
      if (d->cfg == NN_CFG_WIDE)
        launch_conv<cfg_wide, float, float>(P, d->nco, tiles, ns, r->st);
      else if (d->cfg == NN_CFG_MID)
        launch_conv<cfg_mid, float, float>(P, d->nco, tiles, ns, r->st);
      else
        launch_conv<cfg_narrow, float, float>(P, d->nco, tiles, ns, r->st);
    } else if (last) { /* cout 1: narrow, float output */
      launch_conv<cfg_narrow, __half, float>(P, d->nco, tiles, ns, r->st);
    } else {
      if (d->cfg == NN_CFG_WIDE)
        launch_conv<cfg_wide, __half, __half>(P, d->nco, tiles, ns, r->st);
      else if (d->cfg == NN_CFG_MID)
        launch_conv<cfg_mid, __half, __half>(P, d->nco, tiles, ns, r->st);
      else
        launch_conv<cfg_narrow, __half, __half>(P, d->nco, tiles, ns, r->st);
    }
    snprintf(what, sizeof what, "%s: k_conv launch (layer %d)", r->who, l);
    RUN_CK(cudaGetLastError(), what);
  }

  k_finish<<<nn_blocks(n), NN_TPB, 0, r->st>>>(E);
  snprintf(what, sizeof what, "%s: k_finish launch", r->who);
  RUN_CK(cudaGetLastError(), what);
  return CLARA_OK;
}

/* Everything after the scratch exists; the caller cleans up. */
static clara_status nn_go(nn_run *r, const float *in, float *out) {
  const size_t slice_b = r->npix * sizeof(float);
  const int nb = (r->nslices + r->batch - 1) / r->batch;
  clara_status st;
  char what[128];

  if (!r->host) {
    /* after the caller's work on the legacy default stream (its copies) */
    snprintf(what, sizeof what, "%s: cudaEventRecord", r->who);
    RUN_CK(cudaEventRecord(r->ready, 0), what);
    snprintf(what, sizeof what, "%s: cudaStreamWaitEvent", r->who);
    RUN_CK(cudaStreamWaitEvent(r->st, r->ready, 0), what);
    /* the whole input is checked before anything is written */
    {
      size_t n = (size_t)r->nslices * r->npix;
      int flag = 0;
      snprintf(what, sizeof what, "%s: cudaMemsetAsync (flag)", r->who);
      RUN_CK(cudaMemsetAsync(r->flag, 0, sizeof(int), r->st), what);
      k_finite<<<nn_blocks(n), NN_TPB, 0, r->st>>>(in, n, r->flag);
      snprintf(what, sizeof what, "%s: k_finite launch", r->who);
      RUN_CK(cudaGetLastError(), what);
      snprintf(what, sizeof what, "%s: cudaMemcpyAsync (flag)", r->who);
      RUN_CK(cudaMemcpyAsync(&flag, r->flag, sizeof(int),
                             cudaMemcpyDeviceToHost, r->st),
             what);
      snprintf(what, sizeof what, "%s: cudaStreamSynchronize", r->who);
      RUN_CK(cudaStreamSynchronize(r->st), what);
      if (flag)
        return CUDA_FAIL(CLARA_ERR_INVALID_ARG,
                         "%s: input has a NaN or infinite pixel", r->who);
    }
  }

  for (int b = 0; b < nb; b++) {
    const int s0 = b * r->batch;
    const int ns = r->nslices - s0 < r->batch ? r->nslices - s0 : r->batch;
    const size_t off = (size_t)s0 * r->npix, bytes = (size_t)ns * slice_b;
    if (r->host) {
      snprintf(what, sizeof what, "%s: cudaMemcpyAsync (input, %zu bytes)",
               r->who, bytes);
      RUN_CK(cudaMemcpyAsync(r->io, in + off, bytes, cudaMemcpyHostToDevice,
                             r->st),
             what);
      st = nn_batch(r, r->io, r->io, ns);
      if (st != CLARA_OK)
        return st;
      snprintf(what, sizeof what, "%s: cudaMemcpyAsync (output, %zu bytes)",
               r->who, bytes);
      RUN_CK(cudaMemcpyAsync(out + off, r->io, bytes, cudaMemcpyDeviceToHost,
                             r->st),
             what);
    } else {
      st = nn_batch(r, in + off, out + off, ns);
      if (st != CLARA_OK)
        return st;
    }
    snprintf(what, sizeof what, "%s: cudaStreamSynchronize", r->who);
    RUN_CK(cudaStreamSynchronize(r->st), what);
    if (r->ctx->progress) {
      double f = (double)(b + 1) / (double)nb;
      if (r->ctx->progress("denoise", f, r->ctx->progress_user))
        return CUDA_FAIL(CLARA_ERR_CANCELLED,
                         "%s: denoise: cancelled by the progress callback at "
                         "%.0f%%",
                         r->who, 100.0 * f);
    }
  }
  return CLARA_OK;
}

#undef RUN_CK

static clara_status nn_execute(const clara_context *ctx,
                               const clara_nn_setup *s, const void *state,
                               const float *in, float *out, int nx, int ny,
                               int nslices, int host, const char *who) {
  const cuda_nn *p = (const cuda_nn *)state;
  nn_run r;
  clara_status st;

  if (!p)
    return CUDA_FAIL(CLARA_ERR_INVALID_ARG,
                     "%s: the denoiser has no CUDA state", who);
  if (nx <= 0 || ny <= 0 || nslices <= 0)
    return CUDA_FAIL(CLARA_ERR_INVALID_ARG,
                     "%s: nx, ny and nslices must be > 0, got %d, %d and %d",
                     who, nx, ny, nslices);
  memset(&r, 0, sizeof r);
  r.ctx = ctx;
  r.s = s;
  r.p = p;
  r.who = who;
  r.nx = nx;
  r.ny = ny;
  r.nslices = nslices;
  r.npix = (size_t)nx * (size_t)ny;
  r.host = host;
  if (s->norm == CLARA_NN_NORM_PERCENTILE) {
    double q = s->percentile < 0     ? 0
               : s->percentile > 100 ? 100
                                     : s->percentile;
    long long k = llround((double)(r.npix - 1) * q / 100.0);
    if (r.npix > (size_t)UINT_MAX)
      return CUDA_FAIL(CLARA_ERR_UNSUPPORTED,
                       "%s: percentile normalisation of a %d x %d slice "
                       "(more than %u pixels) is not implemented on the CUDA "
                       "backend",
                       who, nx, ny, UINT_MAX);
    if (k < 0)
      k = 0;
    if ((size_t)k > r.npix - 1)
      k = (long long)(r.npix - 1);
    r.rank = (unsigned)k;
  }

  device_guard guard;
  st = cuda_status(cudaSetDevice(p->device), who);
  if (st != CLARA_OK)
    return st;
  (void)cudaGetLastError(); /* an earlier, unrelated launch error */
  st = nn_plan(&r);
  if (st == CLARA_OK) {
    char what[96];
    snprintf(what, sizeof what, "%s: cudaStreamCreateWithFlags", who);
    st = cuda_status(cudaStreamCreateWithFlags(&r.st, cudaStreamNonBlocking),
                     what);
    if (st != CLARA_OK)
      r.st = NULL;
  }
  if (st == CLARA_OK && !host) {
    char what[96];
    snprintf(what, sizeof what, "%s: cudaEventCreateWithFlags", who);
    st = cuda_status(cudaEventCreateWithFlags(&r.ready, cudaEventDisableTiming),
                     what);
    if (st != CLARA_OK)
      r.ready = NULL;
  }
  if (st == CLARA_OK)
    st = nn_go(&r, in, out);
  /* nothing may still run on the scratch or the caller's memory after the
   * return */
  if (r.st) {
    (void)cudaStreamSynchronize(r.st);
    (void)cudaStreamDestroy(r.st);
  }
  if (r.ready)
    (void)cudaEventDestroy(r.ready);
  (void)cudaFree(r.scratch);
  if (st != CLARA_OK)
    (void)cudaGetLastError();
  return st;
}

clara_status cuda_nn_execute(const clara_context *ctx, const clara_nn_setup *s,
                             const void *state, const float *in, float *out,
                             int nx, int ny, int nslices) {
  return nn_execute(ctx, s, state, in, out, nx, ny, nslices, 1,
                    "clara_denoise");
}

clara_status cuda_nn_execute_device(const clara_context *ctx,
                                    const clara_nn_setup *s, const void *state,
                                    const float *d_in, float *d_out, int nx,
                                    int ny, int nslices) {
  static const char who[] = "clara_denoise_device";
  const cuda_nn *p = (const cuda_nn *)state;
  clara_status st;
  if (!p)
    return CUDA_FAIL(CLARA_ERR_INVALID_ARG,
                     "%s: the denoiser has no CUDA state", who);
  st = cuda_check_device_pointer(d_in, p->device, who, "d_in", "clara_denoise");
  if (st == CLARA_OK)
    st = cuda_check_device_pointer(d_out, p->device, who, "d_out",
                                   "clara_denoise");
  if (st != CLARA_OK)
    return st;
  return nn_execute(ctx, s, state, d_in, d_out, nx, ny, nslices, 0, who);
}
