/* fbp_cuda.cu -- CUDA FBP/FDK. In this revision the plugin loads, checks the
 * driver and devices and manages contexts, but has no FBP kernels yet: plans
 * on a CUDA context answer CLARA_ERR_UNSUPPORTED. */
#include "cuda_backend.h"

clara_status cuda_fbp_create(const clara_context *, const clara_fbp_setup *,
                             void **state) {
  *state = NULL;
  return CUDA_FAIL(CLARA_ERR_UNSUPPORTED,
                   "clara_fbp_plan_create: this build's CUDA backend has no "
                   "FBP yet; use a cpu context");
}

clara_status cuda_fbp_execute(const clara_context *, const clara_fbp_setup *,
                              const void *, const float *, float *,
                              clara_fbp_timing *) {
  return CUDA_FAIL(CLARA_ERR_UNSUPPORTED, "clara_fbp_execute: no CUDA FBP");
}

clara_status cuda_fbp_execute_device(const clara_context *,
                                     const clara_fbp_setup *, const void *,
                                     const float *, float *,
                                     clara_fbp_timing *) {
  return CUDA_FAIL(CLARA_ERR_UNSUPPORTED,
                   "clara_fbp_execute_device: no CUDA FBP");
}

void cuda_fbp_destroy(void *) {}
