/* Host emulation of the parts of the CUDA runtime and cuFFT that the
 * clara CUDA plugin uses. Streams are executed lazily: work queued on a
 * non-blocking stream only runs when the host waits for it (event or
 * stream synchronisation, a device-wide sync) or when another stream that
 * is being run waits for it. Missing waits therefore show up as wrong or
 * NaN results. */
#pragma once
#include <cuda_runtime_api.h>
#include <functional>
#include <string>
void emu_enqueue(cudaStream_t s, std::function<void()> f,
                 const std::string &what);
float emu_tex_fetch(cudaTextureObject_t t, float x, float y, int layer);
void emu_set_error(cudaError_t e);
void emu_count(const std::string &what);
void emu_check(bool ok, const std::string &what);
int emu_dispatch(const void *fn, dim3 g, dim3 b, void **args, cudaStream_t s);
