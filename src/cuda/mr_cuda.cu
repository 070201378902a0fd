/* mr_cuda.cu -- Cartesian multi-coil MRI reconstruction on a CUDA device,
 * the twin of src/cpu/mr_cpu.c (same results to float rounding).
 *
 * Slices are taken in batches of 'spb' (as many as the memory budget
 * allows). For a batch:
 *  1. its k-space [ns][coils][nz][ny][nx] is copied into pinned staging and
 *     uploaded to d_raw on the plan's stream;
 *  2. k_mr_load writes every (slice, coil) volume in FFT order into d_buf:
 *     per output position p, the natural index k = (p + n/2) mod n is read
 *     (zero outside the sampled kx/ky range), whitened across coils
 *     (y = W x, W lower triangular, as the CPU) and apodised. The centring
 *     (ifftshift) is done by this explicit index shift for every size, even
 *     or odd, which is exactly the CPU's copy -- no (-1)^(i+j+k) modulation;
 *  3. one batched in-place C2C inverse transform (cufftMakePlanMany64,
 *     rank 2 or 3, batch = ns * coils);
 *  4. k_mr_combine, per output pixel: the fftshift, the crop to recon_nx
 *     and the 1/sqrt(N) scale by the same index shift, then RSS or the
 *     sensitivity combination (in double, as the CPU), magnitude or
 *     complex;
 *  5. download through pinned staging into the caller's image.
 *
 * cuda_mr_execute_device does the same with the image written straight to
 * device memory (step 5 left out: k_mr_combine writes the caller's array)
 * and, when the k-space is in device memory too, step 1 left out
 * (k_mr_load reads the caller's array). That is clara_mr_execute_device,
 * and the path by which an MR plan feeds an attached denoiser on the
 * device.
 *
 * Not on the device (cuda_mr_create returns CLARA_ERR_UNSUPPORTED, naming
 * the option): CLARA_MR_COMBINE_ADAPTIVE, and the HOMODYNE and POCS
 * partial-Fourier methods when an axis is really asymmetric (without an
 * asymmetric axis they are the zero-filled reconstruction, which runs
 * here).
 *
 * An execute holds the plan's mutex from start to end (the buffers are the
 * plan's), switches to the plan's device and restores the caller's. */
#include "cuda_backend.h"

#include <math.h>
#include <new>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MR_HD __host__ __device__ __forceinline__
#define MR_TPB 256
#define MR_MAX_BLOCKS 65535u

/* What the kernels need, by value. */
struct mr_params {
  int nx, ny, nz, rnx, nc;
  int cx, cy, cz, xoff;
  int kx0, kx1, ky0, ky1;
  size_t nvox, npix;
  float scale;
  int combine; /* clara_mr_combine: RSS or SENSITIVITY */
  int cplx;    /* complex output */
};

/* FFT-order position of natural index k (mr_cpu.c's to_fft). */
MR_HD int mr_to_fft(int k, int c, int n) {
  int p = k - c;
  return p < 0 ? p + n : p;
}

/* Natural index of FFT-order position p (the inverse of mr_to_fft). */
MR_HD int mr_from_fft(int p, int c, int n) {
  int k = p + c;
  return k >= n ? k - n : k;
}

/* Per-thread body of k_mr_load: buf[i] for i = tid, tid + stride, ... < n
 * (n = ns * coils * nvox). win: [nx] [ny] [nz] in FFT order, or NULL. */
MR_HD void mr_load_thread(const mr_params P, const float2 *raw, float2 *buf,
                          const float2 *W, const float *win, size_t n,
                          size_t tid, size_t stride) {
  for (size_t i = tid; i < n; i += stride) {
    size_t v = i % P.nvox, sc = i / P.nvox;
    int coil = (int)(sc % (size_t)P.nc);
    size_t sl = sc / (size_t)P.nc;
    int px = (int)(v % (size_t)P.nx);
    int py = (int)(v / (size_t)P.nx % (size_t)P.ny);
    int pz = (int)(v / ((size_t)P.nx * (size_t)P.ny));
    int kx = mr_from_fft(px, P.cx, P.nx), ky = mr_from_fft(py, P.cy, P.ny);
    int kz = mr_from_fft(pz, P.cz, P.nz);
    float ar = 0.0f, ai = 0.0f;
    if (kx >= P.kx0 && kx <= P.kx1 && ky >= P.ky0 && ky <= P.ky1) {
      size_t off = ((size_t)kz * P.ny + (size_t)ky) * P.nx + (size_t)kx;
      if (W) {
        for (int d = 0; d <= coil; d++) {
          float2 w = W[(size_t)coil * P.nc + d];
          float2 x;
          if (w.x == 0.0f && w.y == 0.0f)
            continue;
          x = raw[(sl * P.nc + (size_t)d) * P.nvox + off];
          ar += w.x * x.x - w.y * x.y;
          ai += w.x * x.y + w.y * x.x;
        }
      } else {
        float2 x = raw[(sl * P.nc + (size_t)coil) * P.nvox + off];
        ar = x.x;
        ai = x.y;
      }
    }
    if (win) {
      float w = win[P.nx + P.ny + pz] * win[P.nx + py];
      w = w * win[px];
      ar *= w;
      ai *= w;
    }
    buf[i] = make_float2(ar, ai);
  }
}

/* Per-thread body of k_mr_combine: output pixels i < n = ns * npix of the
 * batch; out is [ns][npix] real or complex. sens: [coils][npix], or NULL. */
MR_HD void mr_combine_thread(const mr_params P, const float2 *buf,
                             const float2 *sens, float *out, size_t n,
                             size_t tid, size_t stride) {
  for (size_t i = tid; i < n; i += stride) {
    size_t pix = i % P.npix, sl = i / P.npix;
    int x = (int)(pix % (size_t)P.rnx);
    int y = (int)(pix / (size_t)P.rnx % (size_t)P.ny);
    int z = (int)(pix / ((size_t)P.rnx * (size_t)P.ny));
    size_t off = ((size_t)mr_to_fft(z, P.cz, P.nz) * P.ny +
                  (size_t)mr_to_fft(y, P.cy, P.ny)) *
                     P.nx +
                 (size_t)mr_to_fft(x + P.xoff, P.cx, P.nx);
    const float2 *b = buf + sl * P.nc * P.nvox + off;
    if (P.combine == CLARA_MR_COMBINE_SENSITIVITY) {
      double nr = 0, ni = 0, den = 0;
      for (int c = 0; c < P.nc; c++) {
        float2 v = b[(size_t)c * P.nvox];
        float vr = v.x * P.scale, vi = v.y * P.scale;
        float2 sm = sens[(size_t)c * P.npix + pix];
        nr += (double)sm.x * vr + (double)sm.y * vi;
        ni += (double)sm.x * vi - (double)sm.y * vr;
        den += (double)sm.x * sm.x + (double)sm.y * sm.y;
      }
      if (den > 0) {
        nr /= den;
        ni /= den;
      } else {
        nr = ni = 0;
      }
      if (P.cplx) {
        out[2 * i] = (float)nr;
        out[2 * i + 1] = (float)ni;
      } else {
        out[i] = (float)hypot(nr, ni);
      }
    } else {
      double acc = 0;
      for (int c = 0; c < P.nc; c++) {
        float2 v = b[(size_t)c * P.nvox];
        float vr = v.x * P.scale, vi = v.y * P.scale;
        acc += (double)vr * vr + (double)vi * vi;
      }
      if (P.cplx) {
        out[2 * i] = (float)sqrt(acc);
        out[2 * i + 1] = 0.0f;
      } else {
        out[i] = (float)sqrt(acc);
      }
    }
  }
}

__global__ void k_mr_load(const mr_params P, const float2 *raw, float2 *buf,
                          const float2 *W, const float *win, size_t n) {
  mr_load_thread(P, raw, buf, W, win, n,
                 (size_t)blockIdx.x * blockDim.x + threadIdx.x,
                 (size_t)gridDim.x * blockDim.x);
}

__global__ void k_mr_combine(const mr_params P, const float2 *buf,
                             const float2 *sens, float *out, size_t n) {
  mr_combine_thread(P, buf, sens, out, n,
                    (size_t)blockIdx.x * blockDim.x + threadIdx.x,
                    (size_t)gridDim.x * blockDim.x);
}

static unsigned mr_blocks(size_t n) {
  size_t b = (n + MR_TPB - 1) / MR_TPB;
  if (b < 1)
    b = 1;
  return b > MR_MAX_BLOCKS ? MR_MAX_BLOCKS : (unsigned)b;
}

/* ---- The plan ------------------------------------------------------------ */

namespace {

struct cuda_mr {
  int device;
  pthread_mutex_t mu;
  int mu_ok;
  mr_params P;
  int spb;            /* slices per batch */
  int tail;           /* slices % spb (0: none) */
  cufftHandle fft[2]; /* [0]: spb * coils transforms, [1]: tail * coils */
  int have_fft[2];
  void *d_work;
  float2 *d_raw, *d_buf, *d_whiten, *d_sens;
  float *d_win, *d_out;
  float *h_in, *h_out;          /* pinned staging */
  size_t in_floats, out_floats; /* per batch */
  cudaStream_t s;
};

} // namespace

void cuda_mr_destroy(void *state) {
  cuda_mr *p = (cuda_mr *)state;
  if (!p)
    return;
  device_guard guard;
  (void)cudaSetDevice(p->device);
  if (p->s)
    (void)cudaStreamSynchronize(p->s);
  for (int i = 0; i < 2; i++)
    if (p->have_fft[i])
      (void)cufftDestroy(p->fft[i]);
  (void)cudaFree(p->d_work);
  (void)cudaFree(p->d_raw);
  (void)cudaFree(p->d_buf);
  (void)cudaFree(p->d_whiten);
  (void)cudaFree(p->d_sens);
  (void)cudaFree(p->d_win);
  (void)cudaFree(p->d_out);
  if (p->h_in)
    (void)cudaFreeHost(p->h_in);
  if (p->h_out)
    (void)cudaFreeHost(p->h_out);
  if (p->s)
    (void)cudaStreamDestroy(p->s);
  (void)cudaGetLastError();
  if (p->mu_ok)
    pthread_mutex_destroy(&p->mu);
  delete p;
}

/* Whether an axis of n with sampled range [f, l] is asymmetric about n/2
 * (mr_cpu.c's axis_tables). */
static int mr_asymmetric(int n, int f, int l) {
  int c = n / 2, lo = c - f, hi = l - c;
  return !((f == 0 && l == n - 1) || lo == hi || lo < 0 || hi < 0);
}

static clara_status mr_alloc(void **ptr, size_t n, const char *what) {
  return cuda_alloc(ptr, n, "clara_mr_plan_create", what);
}

#define MR_CK(call, what)                                                      \
  do {                                                                         \
    st = cuda_status((call), "clara_mr_plan_create: " what);                   \
    if (st != CLARA_OK)                                                        \
      goto fail;                                                               \
  } while (0)
#define MR_FFT(call, what)                                                     \
  do {                                                                         \
    st = cufft_status((call), "clara_mr_plan_create: " what);                  \
    if (st != CLARA_OK)                                                        \
      goto fail;                                                               \
  } while (0)
#define MR_ST(expr)                                                            \
  do {                                                                         \
    st = (expr);                                                               \
    if (st != CLARA_OK)                                                        \
      goto fail;                                                               \
  } while (0)

/* Makes a batched in-place inverse C2C plan of 'batch' volumes with a
 * caller-managed work area; returns its size in *ws. */
static clara_status mr_make_fft(const clara_mr_geometry *g, long long batch,
                                cufftHandle *h, int *have, size_t *ws) {
  clara_status st;
  long long n[3];
  int rank = g->nz > 1 ? 3 : 2;
  if (rank == 3) {
    n[0] = g->nz;
    n[1] = g->ny;
    n[2] = g->nx;
  } else {
    n[0] = g->ny;
    n[1] = g->nx;
  }
  long long dist = (long long)g->nx * g->ny * g->nz;
  st = cufft_status(cufftCreate(h), "clara_mr_plan_create: cufftCreate");
  if (st != CLARA_OK)
    return st;
  *have = 1;
  st = cufft_status(cufftSetAutoAllocation(*h, 0),
                    "clara_mr_plan_create: cufftSetAutoAllocation");
  if (st != CLARA_OK)
    return st;
  return cufft_status(cufftMakePlanMany64(*h, rank, n, n, 1, dist, n, 1, dist,
                                          CUFFT_C2C, batch, ws),
                      "clara_mr_plan_create: cufftMakePlanMany64 (C2C)");
}

clara_status cuda_mr_create(const clara_context *ctx, const clara_mr_setup *s,
                            void **state) {
  static const char who[] = "clara_mr_plan_create";
  const cuda_ctx *c = (const cuda_ctx *)ctx->backend_state;
  const clara_mr_geometry *g = &s->g;
  cuda_mr *p = NULL;
  clara_status st;
  size_t budget, fixed, per_slice;
  size_t ws[2] = {0, 0}, work;
  int asym;
  char note[160];
  float *win = NULL;

  *state = NULL;
  if (!c)
    return CUDA_FAIL(CLARA_ERR_DEVICE, "%s: the CUDA context has no state",
                     who);
  if (s->combine == CLARA_MR_COMBINE_ADAPTIVE)
    return CUDA_FAIL(CLARA_ERR_UNSUPPORTED,
                     "%s: opts->combine: CLARA_MR_COMBINE_ADAPTIVE is not "
                     "implemented on the CUDA backend; use RSS or "
                     "SENSITIVITY, or a CPU context",
                     who);
  asym = mr_asymmetric(g->nx, g->kx_first, g->kx_last) ||
         mr_asymmetric(g->ny, g->ky_first, g->ky_last);
  if (asym && s->partial_fourier != CLARA_MR_PF_ZERO)
    return CUDA_FAIL(
        CLARA_ERR_UNSUPPORTED,
        "%s: opts->partial_fourier: %s on asymmetric (partial Fourier) "
        "sampling is not implemented on the CUDA backend; use "
        "CLARA_MR_PF_ZERO, or a CPU context",
        who,
        s->partial_fourier == CLARA_MR_PF_HOMODYNE ? "CLARA_MR_PF_HOMODYNE"
                                                   : "CLARA_MR_PF_POCS");
  if (s->combine != CLARA_MR_COMBINE_RSS &&
      s->combine != CLARA_MR_COMBINE_SENSITIVITY)
    return CUDA_FAIL(CLARA_ERR_UNSUPPORTED, "%s: opts->combine: %d", who,
                     (int)s->combine);
  if (s->combine == CLARA_MR_COMBINE_SENSITIVITY && !s->sens)
    return CUDA_FAIL(CLARA_ERR_INVALID_ARG, "%s: no coil maps", who);

  device_guard guard;
  st = cuda_use_device(ctx);
  if (st != CLARA_OK)
    return st;
  p = new (std::nothrow) cuda_mr();
  if (!p)
    return CUDA_FAIL(CLARA_ERR_OUT_OF_MEMORY, "%s: CUDA plan state", who);
  p->device = c->device;
  if (pthread_mutex_init(&p->mu, NULL) != 0) {
    delete p;
    return CUDA_FAIL(CLARA_ERR_OUT_OF_MEMORY, "%s: plan mutex", who);
  }
  p->mu_ok = 1;

  p->P.nx = g->nx;
  p->P.ny = g->ny;
  p->P.nz = g->nz;
  p->P.rnx = g->recon_nx;
  p->P.nc = g->coils;
  p->P.cx = g->nx / 2;
  p->P.cy = g->ny / 2;
  p->P.cz = g->nz / 2;
  p->P.xoff = g->nx / 2 - g->recon_nx / 2;
  p->P.kx0 = g->kx_first;
  p->P.kx1 = g->kx_last;
  p->P.ky0 = g->ky_first;
  p->P.ky1 = g->ky_last;
  p->P.nvox = (size_t)g->nx * (size_t)g->ny * (size_t)g->nz;
  p->P.npix = (size_t)g->recon_nx * (size_t)g->ny * (size_t)g->nz;
  p->P.scale = s->norm == CLARA_MR_NORM_ORTHO
                   ? (float)(1.0 / sqrt((double)p->P.nvox))
                   : 1.0f;
  p->P.combine = (int)s->combine;
  p->P.cplx = s->output_complex != 0;

  /* The budget: what is free less a reserve, or the context's limit. */
  st = cuda_budget(ctx, &budget, note, sizeof note);
  if (st != CLARA_OK)
    goto fail;
  fixed = sizeof(float2) * (size_t)g->coils * (size_t)g->coils +
          sizeof(float) * (size_t)(g->nx + g->ny + g->nz) +
          (s->combine == CLARA_MR_COMBINE_SENSITIVITY
               ? sizeof(float2) * (size_t)g->coils * p->P.npix
               : 0);
  /* raw k-space + FFT buffer + cuFFT work (at most one buffer's worth,
   * checked below) + output, per slice */
  per_slice = 3 * sizeof(float2) * (size_t)g->coils * p->P.nvox +
              (p->P.cplx ? 2 : 1) * sizeof(float) * p->P.npix;
  if (budget <= fixed || (budget - fixed) / per_slice < 1) {
    st = CUDA_FAIL(CLARA_ERR_OUT_OF_MEMORY,
                   "%s: one slice of %d coils x %d x %d x %d needs %zu bytes "
                   "of device memory, %zu are available (%s)",
                   who, g->coils, g->nz, g->ny, g->nx, per_slice + fixed,
                   budget, note);
    goto fail;
  }
  {
    size_t most = (budget - fixed) / per_slice;
    p->spb = most >= (size_t)g->slices ? g->slices : (int)most;
  }
  p->tail = g->slices % p->spb;

  MR_CK(cudaStreamCreateWithFlags(&p->s, cudaStreamNonBlocking),
        "cudaStreamCreateWithFlags");
  MR_ST(mr_make_fft(g, (long long)p->spb * g->coils, &p->fft[0],
                    &p->have_fft[0], &ws[0]));
  if (p->tail)
    MR_ST(mr_make_fft(g, (long long)p->tail * g->coils, &p->fft[1],
                      &p->have_fft[1], &ws[1]));
  work = ws[0] > ws[1] ? ws[0] : ws[1];
  if (work > sizeof(float2) * (size_t)g->coils * p->P.nvox * (size_t)p->spb &&
      fixed +
              (per_slice - sizeof(float2) * (size_t)g->coils * p->P.nvox) *
                  (size_t)p->spb +
              work >
          budget) {
    st = CUDA_FAIL(CLARA_ERR_OUT_OF_MEMORY,
                   "%s: cuFFT needs a %zu-byte work area for %d slices, more "
                   "than the budget allows (%s)",
                   who, work, p->spb, note);
    goto fail;
  }
  MR_ST(mr_alloc(&p->d_work, work, "cuFFT work area"));
  for (int i = 0; i < 2; i++)
    if (p->have_fft[i]) {
      MR_FFT(cufftSetWorkArea(p->fft[i], p->d_work), "cufftSetWorkArea");
      MR_FFT(cufftSetStream(p->fft[i], p->s), "cufftSetStream");
    }

  p->in_floats = 2 * (size_t)p->spb * (size_t)g->coils * p->P.nvox;
  p->out_floats = (p->P.cplx ? 2 : 1) * (size_t)p->spb * p->P.npix;
  MR_ST(mr_alloc((void **)&p->d_raw, sizeof(float) * p->in_floats, "k-space"));
  MR_ST(mr_alloc((void **)&p->d_buf, sizeof(float) * p->in_floats,
                 "coil images"));
  MR_ST(mr_alloc((void **)&p->d_out, sizeof(float) * p->out_floats, "image"));
  MR_CK(cudaMallocHost((void **)&p->h_in, sizeof(float) * p->in_floats),
        "cudaMallocHost (k-space staging)");
  MR_CK(cudaMallocHost((void **)&p->h_out, sizeof(float) * p->out_floats),
        "cudaMallocHost (image staging)");

  /* Tables, uploaded once on the plan's stream from pinned memory. */
  if (s->whiten) {
    size_t n = sizeof(float2) * (size_t)g->coils * (size_t)g->coils;
    MR_ST(mr_alloc((void **)&p->d_whiten, n, "whitening matrix"));
    MR_CK(cudaMemcpyAsync(p->d_whiten, s->whiten, n, cudaMemcpyHostToDevice,
                          p->s),
          "cudaMemcpyAsync (whitening matrix)");
  }
  if (s->combine == CLARA_MR_COMBINE_SENSITIVITY) {
    size_t n = sizeof(float2) * (size_t)g->coils * p->P.npix;
    MR_ST(mr_alloc((void **)&p->d_sens, n, "coil maps"));
    MR_CK(cudaMemcpyAsync(p->d_sens, s->sens, n, cudaMemcpyHostToDevice, p->s),
          "cudaMemcpyAsync (coil maps)");
  }
  if (s->window_x) {
    size_t nw = (size_t)(g->nx + g->ny + g->nz);
    win = (float *)malloc(sizeof(float) * nw);
    if (!win) {
      st = CUDA_FAIL(CLARA_ERR_OUT_OF_MEMORY, "%s: window tables", who);
      goto fail;
    }
    /* FFT order, as the CPU's; a missing y or z window is 1 */
    for (int k = 0; k < g->nx; k++)
      win[mr_to_fft(k, p->P.cx, g->nx)] = s->window_x[k];
    for (int k = 0; k < g->ny; k++)
      win[g->nx + mr_to_fft(k, p->P.cy, g->ny)] =
          s->window_y ? s->window_y[k] : 1.0f;
    for (int k = 0; k < g->nz; k++)
      win[g->nx + g->ny + mr_to_fft(k, p->P.cz, g->nz)] =
          s->window_z ? s->window_z[k] : 1.0f;
    MR_ST(mr_alloc((void **)&p->d_win, sizeof(float) * nw, "windows"));
    MR_CK(cudaMemcpyAsync(p->d_win, win, sizeof(float) * nw,
                          cudaMemcpyHostToDevice, p->s),
          "cudaMemcpyAsync (windows)");
  }
  /* the sources are the setup's and this function's: wait for the DMA */
  MR_CK(cudaStreamSynchronize(p->s), "cudaStreamSynchronize (plan tables)");
  free(win);
  *state = p;
  return CLARA_OK;
fail:
  free(win);
  cuda_mr_destroy(p);
  return st;
}

#undef MR_CK
#undef MR_FFT
#undef MR_ST

#define RUN_CK(call, what)                                                     \
  do {                                                                         \
    st = cuda_status((call), "clara_mr_execute: " what);                       \
    if (st != CLARA_OK)                                                        \
      return st;                                                               \
  } while (0)

/* kspace: host, or device memory when kspace_dev; the image goes to the
 * host array 'image', or to the device array 'd_image' when that is not
 * NULL. */
static clara_status mr_run(const clara_context *ctx, const clara_mr_setup *s,
                           cuda_mr *p, const float *kspace, int kspace_dev,
                           float *image, float *d_image) {
  const clara_mr_geometry *g = &s->g;
  const mr_params &P = p->P;
  size_t slice_in = 2 * (size_t)g->coils * P.nvox;
  size_t slice_out = (P.cplx ? 2 : 1) * P.npix;
  clara_status st;
  int nb = (g->slices + p->spb - 1) / p->spb;
  for (int b = 0; b < nb; b++) {
    int s0 = b * p->spb;
    int ns = g->slices - s0 < p->spb ? g->slices - s0 : p->spb;
    size_t nin = (size_t)ns * slice_in, nout = (size_t)ns * slice_out;
    size_t nload = (size_t)ns * g->coils * P.nvox;
    size_t ncomb = (size_t)ns * P.npix;
    cufftHandle h = ns == p->spb ? p->fft[0] : p->fft[1];
    const float2 *raw = p->d_raw;
    float *out = d_image ? d_image + (size_t)s0 * slice_out : p->d_out;

    if (kspace_dev) {
      raw = (const float2 *)(kspace + (size_t)s0 * slice_in);
    } else {
      memcpy(p->h_in, kspace + (size_t)s0 * slice_in, sizeof(float) * nin);
      RUN_CK(cudaMemcpyAsync(p->d_raw, p->h_in, sizeof(float) * nin,
                             cudaMemcpyHostToDevice, p->s),
             "cudaMemcpyAsync (k-space)");
    }
    k_mr_load<<<mr_blocks(nload), MR_TPB, 0, p->s>>>(
        P, raw, p->d_buf, p->d_whiten, p->d_win, nload);
    RUN_CK(cudaGetLastError(), "k_mr_load launch");
    st = cufft_status(cufftExecC2C(h, (cufftComplex *)p->d_buf,
                                   (cufftComplex *)p->d_buf, CUFFT_INVERSE),
                      "clara_mr_execute: cufftExecC2C");
    if (st != CLARA_OK)
      return st;
    k_mr_combine<<<mr_blocks(ncomb), MR_TPB, 0, p->s>>>(P, p->d_buf, p->d_sens,
                                                        out, ncomb);
    RUN_CK(cudaGetLastError(), "k_mr_combine launch");
    if (!d_image)
      RUN_CK(cudaMemcpyAsync(p->h_out, p->d_out, sizeof(float) * nout,
                             cudaMemcpyDeviceToHost, p->s),
             "cudaMemcpyAsync (image)");
    /* Also before the next batch refills the pinned k-space staging, and
     * so that the progress callback reports finished work. */
    RUN_CK(cudaStreamSynchronize(p->s), "cudaStreamSynchronize");
    if (!d_image)
      memcpy(image + (size_t)s0 * slice_out, p->h_out, sizeof(float) * nout);
    if (ctx->progress) {
      double f = (double)(b + 1) / (double)nb;
      if (ctx->progress("mr", f, ctx->progress_user))
        return CUDA_FAIL(CLARA_ERR_CANCELLED,
                         "clara_mr_execute: mr: cancelled by the progress "
                         "callback at %.0f%%",
                         100.0 * f);
    }
  }
  return CLARA_OK;
}

#undef RUN_CK

/* Runs mr_run under the plan's mutex on the plan's device. */
static clara_status mr_locked(const clara_context *ctx, const clara_mr_setup *s,
                              const void *state, const float *kspace,
                              int kspace_dev, float *image, float *d_image,
                              const char *who) {
  cuda_mr *p = (cuda_mr *)state; /* the mutex and the buffers change */
  clara_status st;
  if (!p)
    return CUDA_FAIL(CLARA_ERR_INVALID_ARG, "%s: the plan has no CUDA state",
                     who);
  if (pthread_mutex_lock(&p->mu) != 0)
    return CUDA_FAIL(CLARA_ERR_DEVICE, "%s: cannot lock the plan", who);
  {
    device_guard guard;
    st = cuda_status(cudaSetDevice(p->device), who);
    if (st == CLARA_OK && d_image) {
      if (kspace_dev)
        st = cuda_check_device_pointer(kspace, p->device, who, "d_kspace",
                                       "clara_mr_execute");
      if (st == CLARA_OK)
        st = cuda_check_device_pointer(d_image, p->device, who, "d_image",
                                       "clara_mr_execute");
    }
    if (st == CLARA_OK) {
      (void)cudaGetLastError();
      st = mr_run(ctx, s, p, kspace, kspace_dev, image, d_image);
      if (st != CLARA_OK)
        (void)cudaStreamSynchronize(p->s);
    }
  }
  pthread_mutex_unlock(&p->mu);
  return st;
}

clara_status cuda_mr_execute(const clara_context *ctx, const clara_mr_setup *s,
                             const void *state, const float *kspace,
                             float *image) {
  return mr_locked(ctx, s, state, kspace, 0, image, NULL, "clara_mr_execute");
}

clara_status cuda_mr_execute_device(const clara_context *ctx,
                                    const clara_mr_setup *s, const void *state,
                                    const float *kspace, int kspace_on_device,
                                    float *d_image) {
  return mr_locked(ctx, s, state, kspace, kspace_on_device, NULL, d_image,
                   kspace_on_device ? "clara_mr_execute_device"
                                    : "clara_mr_execute");
}
