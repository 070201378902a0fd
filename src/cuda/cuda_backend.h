/* cuda_backend.h -- internals of the CUDA backend plugin (C++ via nvcc).
 *
 * The plugin is loaded by the core at run time (src/core/context.c) and
 * talks to it only through the ops table and clara_host_api (backend.h):
 * it does not link against libclara-recon, and reports errors through the
 * core's clara_fail so that messages land in the caller's thread-local
 * buffer. */
#ifndef CLARA_CUDA_BACKEND_H
#define CLARA_CUDA_BACKEND_H

#include <cuda_runtime.h>
#include <cufft.h>

extern "C" {
#include "backend.h"
}

/* The core's services, set by clara_cuda_plugin_entry. */
extern const clara_host_api *clara_cuda_host;

#define CUDA_FAIL(status, ...) clara_cuda_host->fail((status), __VA_ARGS__)

/* Per-context state: the device and what the plans may use of it. */
struct cuda_ctx {
  int device;
  cudaDeviceProp prop;
  size_t memory_limit; /* 0: what is free at plan time */
};

/* Turns a CUDA or cuFFT failure into a status (CLARA_ERR_OUT_OF_MEMORY for
 * allocation failures, CLARA_ERR_DEVICE otherwise) with the error's name
 * and what was being done. CLARA_OK for success. */
clara_status cuda_status(cudaError_t err, const char *what);
clara_status cufft_status(cufftResult res, const char *what);
const char *cufft_result_name(cufftResult res);

/* Restores the calling thread's current CUDA device on scope exit: the
 * library switches to a plan's device and gives the caller's back. */
class device_guard {
public:
  device_guard() : ok_(cudaGetDevice(&prev_) == cudaSuccess) {
    if (!ok_)
      (void)cudaGetLastError();
  }
  ~device_guard() {
    if (ok_)
      (void)cudaSetDevice(prev_);
  }
  device_guard(const device_guard &) = delete;
  device_guard &operator=(const device_guard &) = delete;

private:
  int prev_ = 0;
  bool ok_;
};

/* cudaMalloc of n bytes (*ptr NULL for n == 0), failing with a status that
 * names the caller 'who', the size and the buffer 'what'. */
clara_status cuda_alloc(void **ptr, size_t n, const char *who,
                        const char *what);

/* The bytes a plan on ctx's (current) device may use: what cudaMemGetInfo
 * reports free less a reserve (free/50, clamped to 64 MiB .. 1 GiB), or the
 * context's device_memory_limit when that is smaller. 'note' receives which
 * of the two it was, for messages. */
clara_status cuda_budget(const clara_context *ctx, size_t *budget, char *note,
                         size_t note_len);

/* Makes ctx's device current on the calling thread. */
clara_status cuda_use_device(const clara_context *ctx);

/* FBP/FDK (fbp_cuda.cu). */
clara_status cuda_fbp_create(const clara_context *ctx,
                             const clara_fbp_setup *setup, void **state);
clara_status cuda_fbp_execute(const clara_context *ctx,
                              const clara_fbp_setup *setup, const void *state,
                              const float *projections, float *image,
                              clara_fbp_timing *timing);
clara_status cuda_fbp_execute_device(const clara_context *ctx,
                                     const clara_fbp_setup *setup,
                                     const void *state,
                                     const float *d_projections, float *d_image,
                                     clara_fbp_timing *timing);
void cuda_fbp_destroy(void *state);

/* MRI (mr_cuda.cu). ADAPTIVE combination and HOMODYNE/POCS on asymmetric
 * sampling are CLARA_ERR_UNSUPPORTED from cuda_mr_create, and the core then
 * runs those plans on the CPU backend (src/mr/mr.c). */
clara_status cuda_mr_create(const clara_context *ctx,
                            const clara_mr_setup *setup, void **state);
clara_status cuda_mr_execute(const clara_context *ctx,
                             const clara_mr_setup *setup, const void *state,
                             const float *kspace, float *image);
clara_status cuda_mr_execute_device(const clara_context *ctx,
                                    const clara_mr_setup *s, const void *state,
                                    const float *kspace, int kspace_on_device,
                                    float *d_image);
void cuda_mr_destroy(void *state);

/* Denoising (nn_cuda.cu): a chain of 3x3 convolutions in FP32 or FP16
 * with the model's normalisation, on host or device images. */
clara_status cuda_nn_create(const clara_context *ctx, const clara_nn_setup *s,
                            void **state);
clara_status cuda_nn_execute(const clara_context *ctx, const clara_nn_setup *s,
                             const void *state, const float *in, float *out,
                             int nx, int ny, int nslices);
clara_status cuda_nn_execute_device(const clara_context *ctx,
                                    const clara_nn_setup *s, const void *state,
                                    const float *d_in, float *d_out, int nx,
                                    int ny, int nslices);
void cuda_nn_destroy(void *state);

/* Device memory of ctx's device for the core (plugin.cu): device_alloc
 * fails with CLARA_ERR_OUT_OF_MEMORY beyond the budget (cuda_budget), and
 * the copies return when the data has arrived. */
clara_status cuda_device_alloc(const clara_context *ctx, size_t bytes,
                               void **ptr);
void cuda_device_free(const clara_context *ctx, void *ptr);
clara_status cuda_copy_to_device(const clara_context *ctx, void *dst,
                                 const void *src, size_t bytes);
clara_status cuda_copy_to_host(const clara_context *ctx, void *dst,
                               const void *src, size_t bytes);

/* CLARA_OK when ptr is memory of CUDA device 'device' (or managed memory),
 * else CLARA_ERR_INVALID_ARG naming the caller 'who' and the argument
 * 'name', and pointing host arrays to the host entry 'host_entry'. */
clara_status cuda_check_device_pointer(const void *ptr, int device,
                                       const char *who, const char *name,
                                       const char *host_entry);

#endif
