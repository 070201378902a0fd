/* plugin.cu -- the CUDA backend plugin's entry point, device checks and
 * per-context state. */
#include "cuda_backend.h"

#include <new>
#include <stdio.h>
#include <string.h>

const clara_host_api *clara_cuda_host;

clara_status cuda_status(cudaError_t err, const char *what) {
  if (err == cudaSuccess)
    return CLARA_OK;
  return CUDA_FAIL(err == cudaErrorMemoryAllocation ? CLARA_ERR_OUT_OF_MEMORY
                                                    : CLARA_ERR_DEVICE,
                   "%s: %s (%s)", what, cudaGetErrorName(err),
                   cudaGetErrorString(err));
}

const char *cufft_result_name(cufftResult res) {
  switch (res) {
  case CUFFT_SUCCESS:
    return "CUFFT_SUCCESS";
  case CUFFT_INVALID_PLAN:
    return "CUFFT_INVALID_PLAN";
  case CUFFT_ALLOC_FAILED:
    return "CUFFT_ALLOC_FAILED";
  case CUFFT_INVALID_TYPE:
    return "CUFFT_INVALID_TYPE";
  case CUFFT_INVALID_VALUE:
    return "CUFFT_INVALID_VALUE";
  case CUFFT_INTERNAL_ERROR:
    return "CUFFT_INTERNAL_ERROR";
  case CUFFT_EXEC_FAILED:
    return "CUFFT_EXEC_FAILED";
  case CUFFT_SETUP_FAILED:
    return "CUFFT_SETUP_FAILED";
  case CUFFT_INVALID_SIZE:
    return "CUFFT_INVALID_SIZE";
  case CUFFT_INVALID_DEVICE:
    return "CUFFT_INVALID_DEVICE";
  case CUFFT_NO_WORKSPACE:
    return "CUFFT_NO_WORKSPACE";
  case CUFFT_NOT_IMPLEMENTED:
    return "CUFFT_NOT_IMPLEMENTED";
  case CUFFT_NOT_SUPPORTED:
    return "CUFFT_NOT_SUPPORTED";
  default:
    return "CUFFT_UNKNOWN_ERROR";
  }
}

clara_status cufft_status(cufftResult res, const char *what) {
  if (res == CUFFT_SUCCESS)
    return CLARA_OK;
  return CUDA_FAIL(
      res == CUFFT_ALLOC_FAILED ? CLARA_ERR_OUT_OF_MEMORY : CLARA_ERR_DEVICE,
      "%s: cuFFT error %s (%d)", what, cufft_result_name(res), (int)res);
}

clara_status cuda_use_device(const clara_context *ctx) {
  const cuda_ctx *c = (const cuda_ctx *)ctx->backend_state;
  return cuda_status(cudaSetDevice(c->device), "cudaSetDevice");
}

clara_status cuda_alloc(void **ptr, size_t n, const char *who,
                        const char *what) {
  char buf[160];
  cudaError_t e;
  *ptr = NULL;
  if (n == 0)
    return CLARA_OK;
  e = cudaMalloc(ptr, n);
  if (e == cudaSuccess)
    return CLARA_OK;
  *ptr = NULL;
  snprintf(buf, sizeof buf, "%s: cudaMalloc of %zu bytes (%s)", who, n, what);
  return cuda_status(e, buf);
}

clara_status cuda_budget(const clara_context *ctx, size_t *budget, char *note,
                         size_t note_len) {
  const cuda_ctx *c = (const cuda_ctx *)ctx->backend_state;
  size_t free_b = 0, total_b = 0, reserve;
  clara_status st =
      cuda_status(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
  if (st != CLARA_OK)
    return st;
  reserve = free_b / 50;
  if (reserve < ((size_t)64 << 20))
    reserve = (size_t)64 << 20;
  if (reserve > ((size_t)1 << 30))
    reserve = (size_t)1 << 30;
  *budget = free_b > reserve ? free_b - reserve : 0;
  if (c->memory_limit && c->memory_limit < *budget) {
    *budget = c->memory_limit;
    snprintf(note, note_len, "device_memory_limit %zu bytes", c->memory_limit);
  } else {
    snprintf(note, note_len,
             "device %d has %zu bytes free of %zu, less %zu kept in reserve",
             c->device, free_b, total_b, reserve);
  }
  return CLARA_OK;
}

clara_status cuda_check_device_pointer(const void *ptr, int device,
                                       const char *who, const char *name,
                                       const char *host_entry) {
  cudaPointerAttributes at;
  cudaError_t e;
  memset(&at, 0, sizeof at);
  e = cudaPointerGetAttributes(&at, ptr);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return CUDA_FAIL(CLARA_ERR_INVALID_ARG,
                     "%s: %s: %p is not memory that CUDA knows (%s)", who, name,
                     ptr, cudaGetErrorName(e));
  }
  switch (at.type) {
  case cudaMemoryTypeDevice:
    if (at.device != device)
      return CUDA_FAIL(CLARA_ERR_INVALID_ARG,
                       "%s: %s: %p is memory of CUDA device %d, but the "
                       "context runs on device %d",
                       who, name, ptr, at.device, device);
    return CLARA_OK;
  case cudaMemoryTypeManaged:
    return CLARA_OK;
  case cudaMemoryTypeHost:
    return CUDA_FAIL(CLARA_ERR_INVALID_ARG,
                     "%s: %s: %p is pinned host memory, not device memory "
                     "(use %s for host arrays)",
                     who, name, ptr, host_entry);
  default:
    return CUDA_FAIL(CLARA_ERR_INVALID_ARG,
                     "%s: %s: %p is host memory, not device memory (use %s "
                     "for host arrays)",
                     who, name, ptr, host_entry);
  }
}

/* ---- Device memory for the core ------------------------------------------ */

clara_status cuda_device_alloc(const clara_context *ctx, size_t bytes,
                               void **ptr) {
  static const char who[] = "cuda_device_alloc";
  size_t budget = 0;
  char note[160];
  clara_status st;
  *ptr = NULL;
  if (!ctx->backend_state)
    return CUDA_FAIL(CLARA_ERR_DEVICE, "%s: the CUDA context has no state",
                     who);
  device_guard guard;
  st = cuda_use_device(ctx);
  if (st != CLARA_OK)
    return st;
  st = cuda_budget(ctx, &budget, note, sizeof note);
  if (st != CLARA_OK)
    return st;
  if (bytes > budget)
    return CUDA_FAIL(CLARA_ERR_OUT_OF_MEMORY,
                     "%s: %zu bytes of device memory asked for, %zu are "
                     "available (%s)",
                     who, bytes, budget, note);
  return cuda_alloc(ptr, bytes, who, "device buffer");
}

void cuda_device_free(const clara_context *ctx, void *ptr) {
  if (!ptr || !ctx->backend_state)
    return;
  device_guard guard;
  if (cuda_use_device(ctx) == CLARA_OK)
    (void)cudaFree(ptr);
  (void)cudaGetLastError();
}

/* A copy on the legacy default stream, waited for: cudaMemcpy alone may
 * return before a copy from pageable memory has reached the device. */
static clara_status copy_sync(const clara_context *ctx, void *dst,
                              const void *src, size_t bytes,
                              cudaMemcpyKind kind, const char *who) {
  char what[128];
  clara_status st;
  if (bytes == 0)
    return CLARA_OK;
  if (!dst || !src)
    return CUDA_FAIL(CLARA_ERR_INVALID_ARG, "%s: %s is NULL", who,
                     !dst ? "dst" : "src");
  if (!ctx->backend_state)
    return CUDA_FAIL(CLARA_ERR_DEVICE, "%s: the CUDA context has no state",
                     who);
  device_guard guard;
  st = cuda_use_device(ctx);
  if (st != CLARA_OK)
    return st;
  snprintf(what, sizeof what, "%s: cudaMemcpyAsync of %zu bytes", who, bytes);
  st = cuda_status(cudaMemcpyAsync(dst, src, bytes, kind, 0), what);
  if (st == CLARA_OK) {
    snprintf(what, sizeof what, "%s: cudaStreamSynchronize", who);
    st = cuda_status(cudaStreamSynchronize(0), what);
  }
  return st;
}

clara_status cuda_copy_to_device(const clara_context *ctx, void *dst,
                                 const void *src, size_t bytes) {
  return copy_sync(ctx, dst, src, bytes, cudaMemcpyHostToDevice,
                   "cuda_copy_to_device");
}

clara_status cuda_copy_to_host(const clara_context *ctx, void *dst,
                               const void *src, size_t bytes) {
  return copy_sync(ctx, dst, src, bytes, cudaMemcpyDeviceToHost,
                   "cuda_copy_to_host");
}

static clara_status cuda_context_create(const clara_context *ctx,
                                        void **state) {
  int count = 0;
  cuda_ctx *c;
  clara_status st;
  *state = NULL;
  st = cuda_status(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  if (st != CLARA_OK)
    return st;
  if (ctx->device >= count)
    return CUDA_FAIL(CLARA_ERR_INVALID_ARG,
                     "clara_context_create: opts->device: device %d out of "
                     "range, this machine has %d CUDA device%s",
                     ctx->device, count, count == 1 ? "" : "s");
  c = new (std::nothrow) cuda_ctx();
  if (!c)
    return CUDA_FAIL(CLARA_ERR_OUT_OF_MEMORY, "clara_context_create: cuda "
                                              "context");
  c->device = ctx->device;
  c->memory_limit = ctx->device_memory_limit;
  /* Only the properties: the calling thread's current device is left as
   * it was; plans switch to (and restore) the device when they run. */
  st = cuda_status(cudaGetDeviceProperties(&c->prop, c->device),
                   "clara_context_create: cudaGetDeviceProperties");
  if (st != CLARA_OK) {
    delete c;
    return st;
  }
  *state = c;
  return CLARA_OK;
}

static void cuda_context_destroy(void *state) {
  delete static_cast<cuda_ctx *>(state);
}

static clara_backend_ops cuda_ops;

/* Reports why the plugin cannot run here, or returns its table. */
extern "C" __attribute__((visibility("default"))) const clara_backend_ops *
clara_cuda_plugin_entry(int abi, const clara_host_api *host, char *why,
                        size_t why_len) {
  int driver = 0, runtime = 0, count = 0;
  cudaError_t err;
  if (abi != CLARA_BACKEND_ABI) {
    snprintf(why, why_len,
             "the CUDA plugin was built for backend ABI %d, the core has %d; "
             "install matching versions",
             CLARA_BACKEND_ABI, abi);
    return NULL;
  }
  if (!host || !host->fail || !host->cpu) {
    snprintf(why, why_len, "the CUDA plugin got no host services");
    return NULL;
  }
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  if (driver == 0) {
    snprintf(why, why_len, "no CUDA driver is installed (runtime %d.%d)",
             runtime / 1000, (runtime % 1000) / 10);
    return NULL;
  }
  if (driver < runtime) {
    snprintf(why, why_len,
             "the CUDA driver (%d.%d) is older than the runtime the plugin "
             "was built with (%d.%d); update the driver",
             driver / 1000, (driver % 1000) / 10, runtime / 1000,
             (runtime % 1000) / 10);
    return NULL;
  }
  err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    snprintf(why, why_len, "no CUDA device: %s",
             err != cudaSuccess ? cudaGetErrorString(err)
                                : "cudaGetDeviceCount found none");
    return NULL;
  }
  clara_cuda_host = host;
  cuda_ops.name = "cuda";
  cuda_ops.context_create = cuda_context_create;
  cuda_ops.context_destroy = cuda_context_destroy;
  cuda_ops.fbp_create = cuda_fbp_create;
  cuda_ops.fbp_execute = cuda_fbp_execute;
  cuda_ops.fbp_execute_device = cuda_fbp_execute_device;
  cuda_ops.fbp_destroy = cuda_fbp_destroy;
  cuda_ops.mr_create = cuda_mr_create;
  cuda_ops.mr_execute = cuda_mr_execute;
  cuda_ops.mr_execute_device = cuda_mr_execute_device;
  cuda_ops.mr_destroy = cuda_mr_destroy;
  cuda_ops.nn_create = cuda_nn_create;
  cuda_ops.nn_execute = cuda_nn_execute;
  cuda_ops.nn_execute_device = cuda_nn_execute_device;
  cuda_ops.nn_destroy = cuda_nn_destroy;
  cuda_ops.device_alloc = cuda_device_alloc;
  cuda_ops.device_free = cuda_device_free;
  cuda_ops.copy_to_device = cuda_copy_to_device;
  cuda_ops.copy_to_host = cuda_copy_to_host;
  /* The Joseph projector runs on the CPU backend for now. */
  cuda_ops.project = host->cpu->project;
  cuda_ops.backproject = host->cpu->backproject;
  return &cuda_ops;
}
