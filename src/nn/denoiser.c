/* denoiser.c -- the public denoiser API: loading (through src/io), the
 * checks every call makes before a backend runs, reference counting for
 * plans that hold a denoiser, and the glue that runs one on a plan's
 * output. The network itself runs in the backend (src/cpu/nn_cpu.c,
 * src/cuda/nn_cuda.cu). */
#include "nn.h"

#include <math.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef CLARA_MODELDIR
#define CLARA_MODELDIR "/usr/local/share/clara-recon/models"
#endif

struct clara_denoiser_s {
  const clara_context *ctx;
  const clara_backend_ops *ops; /* the context's, or the CPU's */
  clara_nn_model model;
  void *state; /* the backend's */
  atomic_int refs;
};

CLARA_API const char *clara_modality_name(clara_modality modality) {
  switch (modality) {
  case CLARA_MODALITY_CT:
    return "ct";
  case CLARA_MODALITY_MR:
    return "mr";
  }
  return "unknown";
}

static void free_denoiser(clara_denoiser *d) {
  if (d->state)
    d->ops->nn_destroy(d->state);
  clara_nn_model_free(&d->model);
  free(d);
}

CLARA_API clara_status clara_denoiser_load(clara_context *ctx,
                                           const char *path,
                                           clara_denoiser **out) {
  static const char who[] = "clara_denoiser_load";
  clara_denoiser *d;
  clara_status st;
  if (out)
    *out = NULL;
  if (!ctx || !path || !out)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: %s is NULL", who,
                      !ctx ? "ctx" : !path ? "path" : "out");
  if (!*path)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: path is empty", who);
  d = calloc(1, sizeof *d);
  if (!d)
    return clara_fail(CLARA_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes",
                      who, sizeof *d);
  d->ctx = ctx;
  /* A backend without a denoiser of its own leaves it to the CPU. */
  d->ops = ctx->ops->nn_create ? ctx->ops : &clara_cpu_ops;
  atomic_init(&d->refs, 1);
  st = clara_nn_model_read(path, &d->model);
  if (st == CLARA_OK) {
    /* Host memory before the backend prepares the weights: the file's
     * weights and the CPU's Winograd copy (6x6 per 3x3 kernel, 4x). */
    clara_mem_term t[2] = {
        {"weights", 4.0 * (double)d->model.parameters},
        {"transformed weights", 16.0 * (double)d->model.parameters}};
    st = clara_memory_check(ctx, who, t, 2);
  }
  if (st == CLARA_OK)
    st = d->ops->nn_create(ctx, &d->model.setup, &d->state);
  if (st != CLARA_OK) {
    d->state = NULL;
    free_denoiser(d);
    return st;
  }
  *out = d;
  return CLARA_OK;
}

CLARA_API clara_status clara_denoiser_load_shipped(clara_context *ctx,
                                                   const char *name,
                                                   clara_denoiser **out) {
  static const char who[] = "clara_denoiser_load_shipped";
  const char *dir = getenv("CLARA_RECON_MODELS");
  char path[4096];
  if (out)
    *out = NULL;
  if (!ctx || !name || !out)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: %s is NULL", who,
                      !ctx ? "ctx" : !name ? "name" : "out");
  if (strcmp(name, "ct") != 0 && strcmp(name, "mr") != 0)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: name: \"ct\" or \"mr\" expected, got \"%.64s\"",
                      who, name);
  if (!dir || !*dir)
    dir = CLARA_MODELDIR;
  if ((size_t)snprintf(path, sizeof path, "%s/%s-denoise.h5", dir, name) >=
      sizeof path)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: the models directory path is too long (%zu bytes)",
                      who, strlen(dir));
  return clara_denoiser_load(ctx, path, out);
}

static int receptive_field(const clara_denoiser *d) {
  return 2 * d->model.setup.n_layers + 1;
}

CLARA_API clara_status clara_denoiser_get_info(const clara_denoiser *d,
                                               clara_denoiser_info *info) {
  double flops = 0;
  if (!d || !info)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "clara_denoiser_get_info: %s is NULL", !d ? "d" : "info");
  memset(info, 0, sizeof *info);
  info->modality = d->model.modality;
  memcpy(info->architecture, d->model.architecture,
         sizeof info->architecture);
  memcpy(info->units, d->model.units, sizeof info->units);
  memcpy(info->training_data, d->model.training_data,
         sizeof info->training_data);
  info->layers = d->model.setup.n_layers;
  info->max_channels = d->model.setup.max_channels;
  info->receptive_field = receptive_field(d);
  info->residual = d->model.setup.residual;
  info->parameters = d->model.parameters;
  for (int k = 0; k < d->model.setup.n_layers; ++k)
    flops += 2.0 * 9.0 * d->model.layers[k].cin * d->model.layers[k].cout;
  info->flops_per_pixel = flops;
  return CLARA_OK;
}

CLARA_API clara_status clara_denoiser_set_precision(clara_denoiser *d,
                                                    clara_precision precision) {
  static const char who[] = "clara_denoiser_set_precision";
  clara_nn_setup s;
  void *state = NULL;
  clara_status st;
  if (!d)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: d is NULL", who);
  if (precision != CLARA_PRECISION_FP32 && precision != CLARA_PRECISION_FP16)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: precision: CLARA_PRECISION_FP32 (0) or "
                      "CLARA_PRECISION_FP16 (1) expected, got %d",
                      who, (int)precision);
  if (precision == d->model.setup.precision)
    return CLARA_OK;
  /* The new state is made first, so a refusal leaves the denoiser as it
   * was. */
  s = d->model.setup;
  s.precision = precision;
  st = d->ops->nn_create(d->ctx, &s, &state);
  if (st != CLARA_OK)
    return clara_fail_context(st, who);
  if (d->state)
    d->ops->nn_destroy(d->state);
  d->state = state;
  d->model.setup.precision = precision;
  return CLARA_OK;
}

/* The checks shared by both entry points; *count gets nx * ny * nslices. */
static clara_status check_call(const char *who, const clara_denoiser *d,
                               const void *in, const void *out, int nx, int ny,
                               int nslices, size_t *count) {
  int rf;
  if (!d || !in || !out)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: %s is NULL", who,
                      !d ? "d" : !in ? "in" : "out");
  if (nx <= 0 || ny <= 0 || nslices <= 0)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: nx, ny and nslices must be > 0, got %d, %d and %d",
                      who, nx, ny, nslices);
  rf = receptive_field(d);
  if (nx < rf || ny < rf)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: a %d x %d image is smaller than the model's "
                      "receptive field (%d x %d pixels, %d layers of 3x3)",
                      who, nx, ny, rf, rf, d->model.setup.n_layers);
  if (clara_size_mul3((size_t)nx, (size_t)ny, (size_t)nslices, count) != 0 ||
      *count > SIZE_MAX / sizeof(float))
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: %d x %d x %d pixels overflow the address space", who,
                      nx, ny, nslices);
  {
    uintptr_t a = (uintptr_t)in, b = (uintptr_t)out;
    size_t bytes = *count * sizeof(float);
    if (a != b && a < b + bytes && b < a + bytes)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: in and out overlap without being equal; "
                        "denoise in place (in == out) or into a separate "
                        "buffer",
                        who);
  }
  return CLARA_OK;
}

CLARA_API clara_status clara_denoise(const clara_denoiser *d, const float *in,
                                     float *out, int nx, int ny, int nslices) {
  static const char who[] = "clara_denoise";
  size_t count;
  clara_status st = check_call(who, d, in, out, nx, ny, nslices, &count);
  if (st != CLARA_OK)
    return st;
  /* Host memory before any allocation: the input and output images (one
   * when in place) and the CPU's scratch: a ring of NN_RING x NN_BAND
   * (5 x 4) rows of every layer's channels plus a normalised slice (at
   * most 256 MiB more when slices run in parallel), and per worker two
   * Winograd blocks of 36 x 48 tiles x the widest layer. */
  {
    const clara_nn_setup *s = &d->model.setup;
    double ring = 4.0 * ((double)nx + 8) *
                  (20.0 * s->max_channels * s->n_layers + ny);
    clara_mem_term t[2] = {
        {"images", (in == out ? 4.0 : 8.0) * (double)count},
        {"scratch", ring + 4.0 * d->ctx->threads * 2 * 36 * 48.0 *
                               s->max_channels}};
    if ((st = clara_memory_check(d->ctx, who, t, 2)) != CLARA_OK)
      return st;
  }
  for (size_t i = 0; i < count; ++i)
    if (!isfinite(in[i])) {
      size_t plane = (size_t)nx * (size_t)ny;
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: in[%zu] (slice %zu, y %zu, x %zu) is %s; the "
                        "input must be finite",
                        who, i, i / plane, (i % plane) / (size_t)nx,
                        i % (size_t)nx, isnan(in[i]) ? "NaN" : "infinite");
    }
  return d->ops->nn_execute(d->ctx, &d->model.setup, d->state, in, out, nx, ny,
                            nslices);
}

CLARA_API clara_status clara_denoise_device(const clara_denoiser *d,
                                            const float *d_in, float *d_out,
                                            int nx, int ny, int nslices) {
  static const char who[] = "clara_denoise_device";
  size_t count;
  clara_status st = check_call(who, d, d_in, d_out, nx, ny, nslices, &count);
  if (st != CLARA_OK)
    return st;
  if (!d->ops->nn_execute_device)
    return clara_fail(CLARA_ERR_UNSUPPORTED,
                      "%s: the denoiser runs on the %s backend, which has no "
                      "device memory; device pointers need a context with "
                      "backend cuda",
                      who, d->ops->name);
  return d->ops->nn_execute_device(d->ctx, &d->model.setup, d->state, d_in,
                                   d_out, nx, ny, nslices);
}

clara_denoiser *clara_nn_retain(clara_denoiser *d) {
  if (d)
    atomic_fetch_add_explicit(&d->refs, 1, memory_order_relaxed);
  return d;
}

void clara_nn_release(clara_denoiser *d) {
  if (d && atomic_fetch_sub_explicit(&d->refs, 1, memory_order_acq_rel) == 1)
    free_denoiser(d);
}

CLARA_API void clara_denoiser_destroy(clara_denoiser *d) {
  clara_nn_release(d);
}

clara_modality clara_nn_modality(const clara_denoiser *d) {
  return d->model.modality;
}

const clara_context *clara_nn_context(const clara_denoiser *d) {
  return d->ctx;
}

int clara_nn_receptive_field(const clara_denoiser *d) {
  return receptive_field(d);
}

int clara_nn_has_device(const clara_denoiser *d) {
  return d->ops->nn_execute_device != NULL;
}

clara_status clara_nn_apply_host(const clara_denoiser *d, float *image, int nx,
                                 int ny, int nslices) {
  return clara_denoise(d, image, image, nx, ny, nslices);
}

clara_status clara_nn_apply_device(const clara_denoiser *d, float *d_image,
                                   int nx, int ny, int nslices) {
  return clara_denoise_device(d, d_image, d_image, nx, ny, nslices);
}
