/* mr_cpu.h -- the CPU backend's MRI entry points (src/cpu/mr_cpu.c), for
 * the mr_create / mr_execute / mr_destroy entries of clara_cpu_ops. The
 * modality code (src/mr/mr.c) also calls them directly when a backend's
 * table has no MRI entries. */
#ifndef CLARA_MR_CPU_H
#define CLARA_MR_CPU_H

#include "backend.h"

/* Makes the per-plan state: FFTW plans (FFTW_ESTIMATE, in place, on
 * fftwf_malloc'ed buffers) and the k-space tables (shifted windows,
 * sampling masks, homodyne weights, the low-resolution phase filter). */
clara_status clara_cpu_mr_create(const clara_context *ctx,
                                 const clara_mr_setup *setup, void **state);
/* kspace [slices][coils][nz][ny][nx] -> image [slices][nz][ny][recon_nx]
 * (real or complex, per setup->output_complex). Thread-safe for distinct
 * 'image'. */
clara_status clara_cpu_mr_execute(const clara_context *ctx,
                                  const clara_mr_setup *setup,
                                  const void *state, const float *kspace,
                                  float *image);
void clara_cpu_mr_destroy(void *state);

#endif
