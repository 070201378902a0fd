/* cpu.h -- the CPU backend's internal entry points. */
#ifndef CLARA_CPU_H
#define CLARA_CPU_H

#include "backend.h"

clara_status clara_cpu_project(const clara_context *ctx,
                               const clara_proj_setup *ps, const float *image,
                               float *projections);
clara_status clara_cpu_backproject(const clara_context *ctx,
                                   const clara_proj_setup *ps,
                                   const float *projections, float *image);

/* Denoising (src/cpu/nn_cpu.c). */
clara_status clara_cpu_nn_create(const clara_context *ctx,
                                 const clara_nn_setup *s, void **state);
clara_status clara_cpu_nn_execute(const clara_context *ctx,
                                  const clara_nn_setup *s, const void *state,
                                  const float *in, float *out, int nx, int ny,
                                  int nslices);
void clara_cpu_nn_destroy(void *state);

#endif
