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

#endif
