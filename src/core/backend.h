/* backend.h -- the private backend operations table.
 *
 * Modality code (src/ct/, later src/mr/ and src/nn/) does the geometry, the
 * weights and the filter design once, on the host, and hands the result to a
 * backend through this table. A backend owns the heavy loops: filtering,
 * back-projection and projection. The CPU backend lives in src/cpu/; the
 * CUDA backend is a plugin (src/cuda/) that the registry loads at run time,
 * so that no modality file ever says #ifdef CUDA. */
#ifndef CLARA_BACKEND_H
#define CLARA_BACKEND_H

#include "internal.h"

/* Everything an FBP/FDK execution needs, decided at plan time
 * (src/ct/fbp.c). All arrays are owned by the setup. */
typedef struct clara_fbp_setup {
  clara_geometry_kind kind;
  int views, rows, cols;
  clara_volume vol;
  double rs, rd;            /* source-to-iso, source-to-detector (mm) */
  double du, dv;            /* detector spacings (col, row) */
  double u0, v0;            /* detector coordinate of col 0 / row 0 */
  const double *cos_t;      /* [views] */
  const double *sin_t;      /* [views] */
  int nfft;                 /* padded FFT length */
  const float *filter;      /* [nfft/2+1] real response, 1/nfft and the
                               kernel's 1/tau folded in */
  const float *view_weight; /* [views][cols]: angular interval x redundancy */
  const float *det_weight;  /* [rows][cols]: cosine pre-weight, or NULL */
  double fov_radius;        /* mask radius in mm, or < 0 for no mask */
  double out_scale, out_offset; /* image = out_scale * f + out_offset */
  int gpu_texture;              /* CLARA_FBP_GPU_TEXTURE was asked for */
} clara_fbp_setup;

/* A Joseph projector's description (src/ct/projector.c). */
typedef struct clara_proj_setup {
  clara_geometry_kind kind;
  int views, rows, cols;
  clara_volume vol;
  double rs, rd;
  double du, dv, u0, v0;
  const double *cos_t, *sin_t;
} clara_proj_setup;

/* Everything an MR execution needs, decided at plan time (src/mr/mr.c). */
typedef struct clara_mr_setup {
  clara_mr_geometry g; /* recon_nx resolved (never 0) */
  clara_mr_norm norm;
  clara_mr_combine combine;
  clara_mr_partial_fourier partial_fourier;
  int pocs_iterations;
  int output_complex;
  const float *whiten;   /* [coils][coils] complex: inverse Cholesky factor
                            of the noise covariance, or NULL */
  const float *sens;     /* [coils][nz][ny][recon_nx] complex, or NULL */
  const float *window_x; /* [nx] real apodisation, or NULL */
  const float *window_y; /* [ny] */
  const float *window_z; /* [nz] */
} clara_mr_setup;

/* One 3x3 convolution layer of a denoiser: y[o] = act(bias[o] + sum over
 * i, kh, kw of weight[o][i][kh][kw] x[i][y + kh - 1][x + kw - 1]), with
 * zero padding ("same"), as PyTorch's Conv2d(cin, cout, 3, padding=1). */
typedef struct clara_nn_layer {
  int cin, cout;
  int relu;            /* 1: max(0, .) after the bias; 0: identity */
  const float *weight; /* [cout][cin][3][3] */
  const float *bias;   /* [cout] */
} clara_nn_layer;

typedef enum clara_nn_norm {
  CLARA_NN_NORM_FIXED = 0,     /* x_n = (x - offset) / scale */
  CLARA_NN_NORM_PERCENTILE = 1 /* x_n = x / p per slice (docs/FORMATS.md) */
} clara_nn_norm;

/* A validated network (src/nn/denoiser.c); every array is owned by the
 * denoiser and outlives the backend's state. Layer 0 has cin 1, the last
 * has cout 1, and the channels chain. */
typedef struct clara_nn_setup {
  int n_layers;
  const clara_nn_layer *layers;
  int max_channels;
  int residual; /* out_n = x_n - net(x_n) */
  clara_nn_norm norm;
  double offset, scale; /* FIXED */
  double percentile;    /* PERCENTILE, in (0, 100] */
  clara_precision precision;
} clara_nn_setup;

/* Bumped whenever this table, the setups or clara_host_api change: the
 * core refuses a plugin built against another version. */
#define CLARA_BACKEND_ABI 5

typedef struct clara_backend_ops {
  const char *name;
  /* Per-context state (the CUDA device, its memory limit); may be NULL. */
  clara_status (*context_create)(const clara_context *ctx, void **state);
  void (*context_destroy)(void *state);
  /* Makes the backend's per-plan state (FFT plans, device buffers). */
  clara_status (*fbp_create)(const clara_context *ctx,
                             const clara_fbp_setup *setup, void **state);
  /* Runs one reconstruction from host memory to host memory; thread-safe
   * for distinct 'image'. 'timing' may be NULL. */
  clara_status (*fbp_execute)(const clara_context *ctx,
                              const clara_fbp_setup *setup, const void *state,
                              const float *projections, float *image,
                              clara_fbp_timing *timing);
  /* The same on device pointers; NULL for backends without a device. */
  clara_status (*fbp_execute_device)(const clara_context *ctx,
                                     const clara_fbp_setup *setup,
                                     const void *state,
                                     const float *d_projections, float *d_image,
                                     clara_fbp_timing *timing);
  void (*fbp_destroy)(void *state);
  /* Joseph forward projection and its exact transpose. */
  clara_status (*project)(const clara_context *ctx, const clara_proj_setup *ps,
                          const float *image, float *projections);
  clara_status (*backproject)(const clara_context *ctx,
                              const clara_proj_setup *ps,
                              const float *projections, float *image);
  /* MRI; NULL where a backend has none (the CPU's is used then). */
  clara_status (*mr_create)(const clara_context *ctx,
                            const clara_mr_setup *setup, void **state);
  clara_status (*mr_execute)(const clara_context *ctx,
                             const clara_mr_setup *setup, const void *state,
                             const float *kspace, float *image);
  /* The same with the image written to memory of the context's device, and
   * the k-space read from device memory when kspace_on_device (else from
   * the host); returns when the image is complete. NULL for backends
   * without a device; only for states made by this table's mr_create. */
  clara_status (*mr_execute_device)(const clara_context *ctx,
                                    const clara_mr_setup *setup,
                                    const void *state, const float *kspace,
                                    int kspace_on_device, float *d_image);
  void (*mr_destroy)(void *state);
  /* Denoising. nn_create prepares the weights (and may refuse a precision
   * with CLARA_ERR_UNSUPPORTED). nn_execute runs the whole network with its
   * normalisation on [nslices][ny][nx] host images, in == out allowed,
   * thread-safe for distinct outputs; the core has checked the sizes and
   * that every input pixel is finite. nn_execute_device does the same on
   * device pointers and checks finiteness itself; NULL without a device. */
  clara_status (*nn_create)(const clara_context *ctx, const clara_nn_setup *s,
                            void **state);
  clara_status (*nn_execute)(const clara_context *ctx, const clara_nn_setup *s,
                             const void *state, const float *in, float *out,
                             int nx, int ny, int nslices);
  clara_status (*nn_execute_device)(const clara_context *ctx,
                                    const clara_nn_setup *s, const void *state,
                                    const float *d_in, float *d_out, int nx,
                                    int ny, int nslices);
  void (*nn_destroy)(void *state);
  /* Device memory, for the core to chain device operations (an FBP whose
   * image goes straight into a denoiser) without a trip through the host.
   * NULL for backends without a device. device_alloc counts against the
   * context's device memory limit and fails with a status; the copies are
   * synchronous. */
  clara_status (*device_alloc)(const clara_context *ctx, size_t bytes,
                               void **ptr);
  void (*device_free)(const clara_context *ctx, void *ptr);
  clara_status (*copy_to_device)(const clara_context *ctx, void *dst,
                                 const void *src, size_t bytes);
  clara_status (*copy_to_host)(const clara_context *ctx, void *dst,
                               const void *src, size_t bytes);
} clara_backend_ops;

/* What the core lends a plugin: its error reporting (the thread-local
 * message lives in the core) and the CPU backend, for the operations a
 * plugin leaves to the CPU. */
typedef struct clara_host_api {
  clara_status (*fail)(clara_status status, const char *fmt, ...)
      CLARA_PRINTF(2, 3);
  const clara_backend_ops *cpu;
} clara_host_api;

/* The one symbol a backend plugin exports. Returns its table, or NULL with
 * the reason in 'why' (no device, driver older than the runtime, ABI
 * mismatch). */
typedef const clara_backend_ops *(*clara_plugin_entry_fn)(
    int abi, const clara_host_api *host, char *why, size_t why_len);

struct clara_context_s {
  clara_backend backend; /* resolved: CPU or CUDA */
  int threads;
  clara_progress_fn progress;
  void *progress_user;
  int device;
  size_t device_memory_limit;
  const clara_backend_ops *ops;
  void *backend_state; /* from ops->context_create */
  /* Bytes a plan or call may use on the host; 0 = the physical memory
   * (clara_memory_check in memory.c). Last, so that the members a plugin
   * reads keep their offsets. */
  size_t host_memory_limit;
};

/* The CPU backend's table (src/cpu/). */
extern const clara_backend_ops clara_cpu_ops;

/* Finds the backend for a request (src/core/registry.c): AUTO tries the
 * CUDA plugin quietly and falls back to the CPU; CUDA fails with
 * CLARA_ERR_NO_DEVICE and the reason. */
clara_status clara_backend_resolve(clara_backend want, clara_backend *got,
                                   const clara_backend_ops **ops);

/* Fills a clara_progress for a stage of a context's work. */
void clara_progress_for(const clara_context *ctx, const char *stage,
                        double base, double span, clara_progress *p);

#endif
