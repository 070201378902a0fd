/*
 * clara_recon.h -- the public interface of libclara-recon, and its manual.
 *
 * libclara-recon turns raw scanner data into images: CT filtered
 * back-projection (parallel, fan with flat or arc detector, cone-beam FDK),
 * with MRI k-space reconstruction and CNN denoising to follow. One API drives
 * a CPU backend (FFTW + threads + SIMD) and a CUDA backend.
 *
 * Conventions that hold for the whole API
 * ---------------------------------------
 * - Every function that can fail returns a clara_status: CLARA_OK (0) or a
 *   negative code. On failure a message naming the argument and the value
 *   that were wrong is kept per thread; read it with clara_last_error().
 *   Successful calls do not clear it.
 * - Objects are opaque handles with create -> use -> destroy. Every
 *   *_destroy() accepts NULL and does nothing then.
 * - Arrays are C order (last index fastest), float32, owned by the caller
 *   unless a function says otherwise. A volume is image[iz][iy][ix];
 *   projections are proj[view][row][col].
 * - Plans follow FFTW: all expensive work (FFT plans, filter spectra,
 *   weights, trigonometric tables) happens at plan creation; execute only
 *   runs. Creating and destroying plans and contexts is thread-safe.
 *   Executing one plan from several threads at once is safe as long as each
 *   call has its own output buffer.
 * - The library never calls exit() or abort() and never prints: all
 *   reporting goes through statuses, clara_last_error() and the optional
 *   progress callback.
 * - Geometry, units and the file layout are documented in docs/GEOMETRY.md
 *   and docs/FORMATS.md; the short form is repeated here where it matters.
 */
#ifndef CLARA_RECON_H
#define CLARA_RECON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CLARA_API marks the exported symbols; the library is built with
 * -fvisibility=hidden so that nothing else leaks out. */
#if defined(CLARA_RECON_BUILDING) && defined(__GNUC__)
#define CLARA_API __attribute__((visibility("default")))
#else
#define CLARA_API
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                   */
/* ------------------------------------------------------------------------ */

#define CLARA_RECON_VERSION_MAJOR 0
#define CLARA_RECON_VERSION_MINOR 1
#define CLARA_RECON_VERSION_PATCH 0
/* One number for compile-time comparisons: major*10000 + minor*100 + patch. */
#define CLARA_RECON_VERSION_NUMBER                                             \
  (CLARA_RECON_VERSION_MAJOR * 10000 + CLARA_RECON_VERSION_MINOR * 100 +       \
   CLARA_RECON_VERSION_PATCH)

/* The version of the library actually loaded, as "MAJOR.MINOR.PATCH".
 * Compare with CLARA_RECON_VERSION_* to detect a header/library mismatch.
 * The string is static; never free it. */
CLARA_API const char *clara_version(void);
/* The same as clara_version(), as CLARA_RECON_VERSION_NUMBER would be. */
CLARA_API int clara_version_number(void);

/* ------------------------------------------------------------------------ */
/* Status codes and errors                                                   */
/* ------------------------------------------------------------------------ */

/* The status table. Each code keeps its number and meaning forever; new
 * codes are only ever appended. X(name, value, description). */
#define CLARA_STATUS_MAP(X)                                                    \
  X(OK, 0, "success")                                                          \
  X(ERR_INVALID_ARG, -1, "invalid argument")                                   \
  X(ERR_OUT_OF_MEMORY, -2, "out of memory")                                    \
  X(ERR_UNSUPPORTED, -3, "unsupported")                                        \
  X(ERR_NO_DEVICE, -4, "no device")                                            \
  X(ERR_DEVICE, -5, "device error")                                            \
  X(ERR_IO, -6, "input/output error")                                          \
  X(ERR_FORMAT, -7, "malformed or mismatched data")                            \
  X(ERR_CANCELLED, -8, "cancelled")

typedef enum clara_status {
#define CLARA_STATUS_ENUM_(name, value, text) CLARA_##name = value,
  CLARA_STATUS_MAP(CLARA_STATUS_ENUM_)
#undef CLARA_STATUS_ENUM_
} clara_status;

/* The code's name without prefix, e.g. "ERR_INVALID_ARG", or "UNKNOWN" for
 * a value outside the table. Static string. */
CLARA_API const char *clara_status_name(int status);
/* A one-line description of the code, e.g. "invalid argument". */
CLARA_API const char *clara_status_string(int status);

/* The message of the last failure on the calling thread, e.g.
 * "clara_fbp_plan_create: geometry->angles[17]: must be finite, got nan".
 * Empty string if nothing failed yet on this thread. The pointer is
 * valid until the next failing call on the same thread. */
CLARA_API const char *clara_last_error(void);
/* Empties the calling thread's message. */
CLARA_API void clara_clear_error(void);

/* Frees memory that the library allocated for the caller (clara_ct_file_read,
 * clara_image_file_read). NULL is accepted. */
CLARA_API void clara_free(void *ptr);

/* ------------------------------------------------------------------------ */
/* Threads: what may run concurrently                                        */
/* ------------------------------------------------------------------------ */
/*
 * Safe to call from several threads at once:
 * - Executing one plan concurrently, each call with its own output buffer:
 *   clara_fbp_execute (and _timed, _device), clara_mr_execute (and _device),
 *   clara_project / clara_backproject on one projector, clara_denoise (and
 *   _device) on one denoiser. Inputs may be shared; outputs must not be. The
 *   result does not depend on how many calls run at once nor on the
 *   context's thread count: it is the same, bit for bit, as a serial call.
 * - Contexts: one context may be used from many threads, by any number of
 *   plans and denoisers at once. Creating and destroying contexts, plans,
 *   projectors, phantoms and denoisers is thread-safe (FFTW planning is
 *   serialised inside the library), as long as each object is destroyed
 *   once and only after every call that uses it has returned.
 * - Files: clara_ct_file_*, clara_image_file_*, clara_mr_file_*,
 *   clara_denoiser_load* and clara_denoiser_load_shipped may be called from
 *   any thread; their HDF5 work is serialised by one library-wide lock.
 *   Several threads may read the same file; concurrent writes to the same
 *   path are not ordered (the last rename wins).
 * - Errors: the message behind clara_last_error() is thread-local. A
 *   failure on one thread never changes another thread's message.
 * - Progress callbacks are called only on the thread that called the
 *   library function, never on a worker thread and never concurrently for
 *   one call; calls made from different threads each report on their own
 *   thread, so a callback shared by them must be thread-safe itself.
 *
 * Not safe:
 * - Destroying a context, plan, projector or denoiser while another thread
 *   is still using it (executing, or creating a plan or denoiser from the
 *   context). A plan or denoiser must also not outlive its context.
 * - Changing an object while it executes: clara_fbp_plan_set_denoiser,
 *   clara_mr_plan_set_denoiser and clara_denoiser_set_precision must not run
 *   concurrently with an execute on that plan or denoiser (or on a plan the
 *   denoiser is attached to).
 * - Two executes writing into the same (or overlapping) output buffer.
 *
 * The library's HDF5 lock covers only the library's own HDF5 calls. Debian's
 * HDF5 is built without thread safety, so an application that calls HDF5
 * itself (or through another library) from other threads while clara_*
 * file functions run must serialise those calls itself; the library offers
 * no way to take its lock.
 */

/* ------------------------------------------------------------------------ */
/* Context                                                                   */
/* ------------------------------------------------------------------------ */

typedef enum clara_backend {
  /* CUDA when the CUDA plugin loads and a device is present, else CPU. */
  CLARA_BACKEND_AUTO = 0,
  CLARA_BACKEND_CPU = 1,
  /* CUDA or nothing: creation fails with CLARA_ERR_NO_DEVICE and the reason
   * when no CUDA backend can run here. */
  CLARA_BACKEND_CUDA = 2
} clara_backend;

/* Progress callback: 'stage' names the work ("filter+backproject",
 * "project", ...), 'fraction' runs from 0 to 1. Return 0 to go on, nonzero
 * to cancel; the running call then stops at the next chunk boundary and
 * returns CLARA_ERR_CANCELLED. It is called on the thread that called the
 * library function, never concurrently for one call. The contents of an
 * output buffer of a cancelled call are unspecified. */
typedef int (*clara_progress_fn)(const char *stage, double fraction,
                                 void *user);

typedef struct clara_context_options {
  clara_backend backend;      /* default CLARA_BACKEND_AUTO */
  int threads;                /* worker threads; 0 (default) = online cores */
  clara_progress_fn progress; /* optional, default NULL */
  void *progress_user;        /* passed to progress */
  /* CUDA device index (default 0). Out of range is CLARA_ERR_INVALID_ARG
   * for cuda and auto alike. Ignored by the CPU backend. */
  int device;
  /* Bytes a plan may use on the device; 0 (default) = what the device has
   * free when the plan is made. Volumes that do not fit are reconstructed
   * in slabs of z; one that cannot be done at all fails at plan time. */
  size_t device_memory_limit;
  /* Bytes a plan or a call may use in host memory; 0 (default) = the
   * machine's physical memory (sysconf _SC_PHYS_PAGES x _SC_PAGESIZE).
   * Plan creation (FBP, projector, MR), denoiser loading and clara_denoise
   * estimate what they need (the big arrays: volume, projections, k-space,
   * coil images, weights, scratch; the estimate is documented beside each
   * check) before allocating anything, and refuse with
   * CLARA_ERR_OUT_OF_MEMORY when it exceeds this limit, the message giving
   * the need, its parts and the limit, e.g. "clara_fbp_plan_create: needs
   * 12.3 GiB of host memory (volume 8.0 GiB + projections 4.3 GiB), more
   * than the limit of 4.0 GiB (host_memory_limit)". The caller's own
   * buffers count: they must exist for the plan to be used. */
  size_t host_memory_limit;
} clara_context_options;

typedef struct clara_context_s clara_context;

/* Fills *opts with the defaults. Always call it before setting fields, so
 * that fields added in later versions get their defaults. */
CLARA_API void clara_context_options_init(clara_context_options *opts);

/* Creates a context. 'opts' may be NULL for the defaults.
 * Errors: CLARA_ERR_INVALID_ARG (out NULL, threads < 0, unknown backend),
 * CLARA_ERR_NO_DEVICE (backend CUDA and no usable CUDA backend),
 * CLARA_ERR_OUT_OF_MEMORY. On failure *out is set to NULL.
 * A context must outlive the plans made from it. Using one context from
 * several threads is safe. */
CLARA_API clara_status clara_context_create(const clara_context_options *opts,
                                            clara_context **out);
CLARA_API void clara_context_destroy(clara_context *ctx);

/* The backend the context actually runs on (never AUTO). */
CLARA_API clara_backend clara_context_backend(const clara_context *ctx);
/* Worker threads the context uses (resolved from 0 = online cores). */
CLARA_API int clara_context_threads(const clara_context *ctx);
/* "cpu" or "cuda" for a backend value, "auto" for AUTO, NULL otherwise. */
CLARA_API const char *clara_backend_name(clara_backend backend);
/* Parses "auto", "cpu" or "cuda". CLARA_ERR_INVALID_ARG otherwise. */
CLARA_API clara_status clara_backend_parse(const char *name,
                                           clara_backend *out);

/* ------------------------------------------------------------------------ */
/* CT geometry (docs/GEOMETRY.md has the figure)                             */
/* ------------------------------------------------------------------------ */
/*
 * World coordinates are in mm. For a view angle theta:
 *
 * Parallel beam: rays run along (-sin t, cos t); a point (x, y) lands on
 *   detector coordinate s = x cos t + y sin t, so that
 *     p(t, s) = integral f(s (cos t, sin t) + l (-sin t, cos t)) dl,
 *   the classic Radon convention. (scikit-image's radon() draws images
 *   with rows running down, so its sinograms need the mapping given in
 *   docs/GEOMETRY.md.)
 * Divergent beams (fan-flat, fan-arc, cone): the source sits at
 *   source_to_iso * (sin t, -cos t, 0); the detector is perpendicular to the
 *   central ray at source_to_detector from the source, its u axis along
 *   (cos t, sin t, 0) and its v axis along +z. As source_to_iso grows these
 *   geometries become the parallel one.
 *
 * Detector column c sits at u = (c - (cols-1)/2) * det_spacing[1] +
 * det_offset[1]; row r at v = (r - (rows-1)/2) * det_spacing[0] +
 * det_offset[0]. For fan-arc, u is the fan angle in radians (the columns are
 * equally spaced in angle on an arc centred on the source), so
 * det_spacing[1] and det_offset[1] are in radians; every other spacing and
 * offset is in mm at the detector.
 *
 * Projections are line integrals of the linear attenuation coefficient mu
 * (unitless); reconstructed images are mu in 1/mm, or HU when asked.
 *
 * Rows: for CONE the rows are detector rows. For PARALLEL, FAN_FLAT and
 * FAN_ARC, rows > 1 is a batch of independent 2D sinograms (multi-slice):
 * row r lies in the plane z = v_r (its row coordinate above) and
 * reconstructs slice iz = r, so the volume's nz must equal rows; set the
 * volume's z spacing and centre to det_spacing[0] and det_offset[0] for the
 * slices' world z to match.
 */
typedef enum clara_geometry_kind {
  CLARA_GEOM_PARALLEL = 0,
  CLARA_GEOM_FAN_FLAT = 1,
  CLARA_GEOM_FAN_ARC = 2,
  CLARA_GEOM_CONE = 3
} clara_geometry_kind;

typedef struct clara_ct_geometry {
  clara_geometry_kind kind;
  int views; /* number of projections; must equal the length of angles */
  int rows;  /* detector rows (1 for a single 2D sinogram) */
  int cols;  /* detector columns */
  /* View angles in radians, [views], any order, any spacing: each view is
   * weighted by its own angular interval. Copied at plan creation. */
  const float *angles;
  double det_spacing[2];     /* [row, col], > 0 */
  double det_offset[2];      /* [row, col] */
  double source_to_iso;      /* R_s in mm, divergent beams only */
  double source_to_detector; /* R_d in mm, divergent beams only, > R_s */
} clara_ct_geometry;

/* The image grid. Voxel (ix, iy, iz) has its centre at
 *   x = (ix - (nx-1)/2) * voxel[0] + center[0], and y, z likewise. */
typedef struct clara_volume {
  int nx, ny, nz;
  double voxel[3];  /* vx, vy, vz in mm, > 0 */
  double center[3]; /* cx, cy, cz in mm */
} clara_volume;

/* Names used by files and the command line: "parallel", "fan-flat",
 * "fan-arc", "cone". */
CLARA_API const char *clara_geometry_name(clara_geometry_kind kind);
CLARA_API clara_status clara_geometry_parse(const char *name,
                                            clara_geometry_kind *out);

/* Checks a geometry without planning anything: NULL angles, sizes <= 0,
 * NaN/Inf in angles, spacings or distances, R_d <= R_s, and so on. Returns
 * CLARA_OK or the status and message that plan creation would give. */
CLARA_API clara_status clara_geometry_check(const clara_ct_geometry *geom);

/* ------------------------------------------------------------------------ */
/* Filtered back-projection (FBP, and FDK for cone)                          */
/* ------------------------------------------------------------------------ */

/* Apodisation windows applied to the ramp. With nu the frequency as a
 * fraction of Nyquist and c the cutoff, nu' = nu / c and every window is 0
 * for nu' > 1:
 *   RAM_LAK     1
 *   SHEPP_LOGAN sin(pi nu'/2) / (pi nu'/2)
 *   COSINE      cos(pi nu'/2)
 *   HAMMING     0.54 + 0.46 cos(pi nu')
 *   HANN        0.5 + 0.5 cos(pi nu')
 * The ramp itself is Kak & Slaney's band-limited spatial kernel, so the DC
 * response is exact. */
typedef enum clara_filter {
  CLARA_FILTER_RAM_LAK = 0,
  CLARA_FILTER_SHEPP_LOGAN = 1,
  CLARA_FILTER_COSINE = 2,
  CLARA_FILTER_HAMMING = 3,
  CLARA_FILTER_HANN = 4
} clara_filter;

CLARA_API const char *clara_filter_name(clara_filter filter);
/* Parses "ram-lak" (also "ramp"), "shepp-logan", "cosine", "hamming",
 * "hann". */
CLARA_API clara_status clara_filter_parse(const char *name, clara_filter *out);

/* Flags for clara_fbp_options.flags. */
enum {
  /* Reconstruct even when the detector does not cover the volume's
   * inscribed circle (truncated data; expect a cupping artefact). Without
   * this flag such a plan fails with CLARA_ERR_INVALID_ARG. */
  CLARA_FBP_ALLOW_TRUNCATION = 1u << 0,
  /* Keep voxels outside the field of view (docs/GEOMETRY.md)
   * instead of setting them to 0. */
  CLARA_FBP_NO_FOV_MASK = 1u << 1,
  /* Never apply the offset-detector (half-fan) redundancy weights, even for
   * an asymmetric detector. */
  CLARA_FBP_NO_OFFSET_WEIGHTS = 1u << 2,
  /* CUDA backend: interpolate with the texture units (fast; their weights
   * have 8 fractional bits) instead of in software (precise, the default).
   * bench/RESULTS.md gives the error of each mode against the CPU. Ignored
   * by the CPU backend. */
  CLARA_FBP_GPU_TEXTURE = 1u << 3
};

typedef struct clara_fbp_options {
  clara_filter filter; /* default CLARA_FILTER_RAM_LAK */
  double cutoff;       /* (0, 1], fraction of Nyquist; default 1 */
  unsigned flags;      /* CLARA_FBP_* flags, default 0 */
  /* If > 0, the output is in Hounsfield units, 1000 (mu - mu_water) /
   * mu_water, with mu_water in 1/mm (0.0192 is water near 70 keV).
   * Default 0: the output is mu in 1/mm. */
  double mu_water;
} clara_fbp_options;

CLARA_API void clara_fbp_options_init(clara_fbp_options *opts);

typedef struct clara_fbp_plan_s clara_fbp_plan;

/* Plans FBP (or FDK for CONE) from 'geom' onto 'vol'.
 *
 * What the plan decides from the angle list:
 * - each view is weighted by its own angular interval;
 * - a scan covering a full turn (within half a view) gets weight 1/2 per
 *   ray; several turns are normalised by the number of turns;
 * - a shorter divergent scan must cover 180 degrees plus the fan angle and
 *   gets Parker short-scan weights, with the overscan beyond the minimum
 *   used as a wider Parker transition; a parallel scan between 180 and 360
 *   degrees gets the same weights with a zero fan angle;
 * - a detector whose centre ray is off centre by more than 10% of its
 *   half-width (a half-fan or offset detector) gets redundancy weights over
 *   the overlap of the two sides (unless CLARA_FBP_NO_OFFSET_WEIGHTS); this
 *   needs a full turn, and is CLARA_ERR_UNSUPPORTED with a short scan.
 *
 * 'opts' may be NULL for the defaults. 'geom->angles' is copied.
 * Errors: CLARA_ERR_INVALID_ARG for bad geometry, volume or options (see
 * clara_geometry_check), a scan too short for its fan, or a detector that
 * does not cover the volume (unless CLARA_FBP_ALLOW_TRUNCATION);
 * CLARA_ERR_OUT_OF_MEMORY; CLARA_ERR_UNSUPPORTED. *out is NULL on failure. */
CLARA_API clara_status clara_fbp_plan_create(clara_context *ctx,
                                             const clara_ct_geometry *geom,
                                             const clara_volume *vol,
                                             const clara_fbp_options *opts,
                                             clara_fbp_plan **out);

/* Reconstructs 'projections' ([views][rows][cols], host memory) into 'image'
 * ([nz][ny][nx], host memory, overwritten). Safe to call concurrently on one
 * plan with distinct 'image' buffers. Non-finite input values are not
 * checked here (that would cost a pass over the data): they propagate.
 * Errors: CLARA_ERR_INVALID_ARG (NULL), CLARA_ERR_OUT_OF_MEMORY (scratch),
 * CLARA_ERR_CANCELLED (progress callback). */
CLARA_API clara_status clara_fbp_execute(const clara_fbp_plan *plan,
                                         const float *projections,
                                         float *image);

/* As clara_fbp_execute, with both arrays in the memory of the plan's CUDA
 * device (cudaMalloc'd, same layout), so that a GPU pipeline never goes
 * through host memory. The call returns when the image is complete.
 * Errors: CLARA_ERR_UNSUPPORTED on a CPU context; CLARA_ERR_INVALID_ARG for
 * NULL or host pointers; CLARA_ERR_DEVICE with the CUDA error's name. */
CLARA_API clara_status clara_fbp_execute_device(const clara_fbp_plan *plan,
                                                const float *d_projections,
                                                float *d_image);

/* Where an execute spent its time, in milliseconds: device time from CUDA
 * events on the GPU; on the CPU, wall time, with filtering and
 * back-projection (which run interleaved) together in backproject_ms. */
typedef struct clara_fbp_timing {
  double total_ms;       /* the whole call, host to host */
  double upload_ms;      /* host to device copies (0 on the CPU) */
  double filter_ms;      /* weighting and ramp filtering (0 on the CPU) */
  double backproject_ms; /* back-projection */
  double download_ms;    /* device to host copies (0 on the CPU) */
  int slabs;             /* z slabs the volume was split into (1 = none) */
} clara_fbp_timing;

/* clara_fbp_execute that also reports its timing (for benchmarks). */
CLARA_API clara_status clara_fbp_execute_timed(const clara_fbp_plan *plan,
                                               const float *projections,
                                               float *image,
                                               clara_fbp_timing *timing);

CLARA_API void clara_fbp_plan_destroy(clara_fbp_plan *plan);

/* Facts the plan decided, for display and for tests. */
typedef struct clara_fbp_info {
  int fft_length;        /* padded FFT length of the filter */
  double scan_range;     /* radians covered by the angle list */
  int short_scan;        /* 1 when Parker weights are applied */
  int offset_weighting;  /* 1 when offset-detector weights are applied */
  double fov_radius;     /* field-of-view radius in mm (docs/GEOMETRY.md) */
  double fan_half_angle; /* radians, 0 for parallel */
} clara_fbp_info;

CLARA_API clara_status clara_fbp_plan_info(const clara_fbp_plan *plan,
                                           clara_fbp_info *info);

/* The filter's frequency response as the plan uses it: n = fft_length/2+1
 * real values, bin k at k/fft_length cycles per sample, in units of 1/mm
 * (the ramp's value at frequency f is |f| in cycles/mm, times the window).
 * 'response' must hold at least fft_length/2+1 values. */
CLARA_API clara_status clara_fbp_plan_filter(const clara_fbp_plan *plan,
                                             float *response, int n);

/* The redundancy weight the plan gives detector column 'col' in view
 * 'view' (angular-interval factor excluded), for the tests of Parker and
 * offset weighting: redundant ray pairs sum to 1. */
CLARA_API clara_status clara_fbp_plan_weight(const clara_fbp_plan *plan,
                                             int view, int col, float *weight);

/* ------------------------------------------------------------------------ */
/* Forward projector (Joseph) and its exact adjoint                          */
/* ------------------------------------------------------------------------ */

typedef struct clara_projector_s clara_projector;

/* A Joseph projector (linear interpolation along the axis that the ray
 * crosses fastest, one sample per voxel plane) for 'geom' and 'vol'. Its
 * back-projection is the exact transpose, so <A x, y> = <x, A^T y> holds to
 * rounding. 'geom->angles' is copied. */
CLARA_API clara_status clara_projector_create(clara_context *ctx,
                                              const clara_ct_geometry *geom,
                                              const clara_volume *vol,
                                              clara_projector **out);
/* projections[view][row][col] = line integrals of image (overwritten). */
CLARA_API clara_status clara_project(const clara_projector *proj,
                                     const float *image, float *projections);
/* image[iz][iy][ix] = A^T projections (overwritten). */
CLARA_API clara_status clara_backproject(const clara_projector *proj,
                                         const float *projections,
                                         float *image);
CLARA_API void clara_projector_destroy(clara_projector *proj);

/* ------------------------------------------------------------------------ */
/* Analytic phantoms                                                         */
/* ------------------------------------------------------------------------ */

/* One ellipsoid: value 'density' added inside. Semi-axes a, b, c and centre
 * (x0, y0, z0) in mm; 'phi' rotates it about z, in radians. In 2D phantoms
 * c and z0 are ignored: the ellipse extends along z without end. */
typedef struct clara_ellipsoid {
  double density;
  double a, b, c;
  double x0, y0, z0;
  double phi;
} clara_ellipsoid;

typedef struct clara_phantom_s clara_phantom;

/* The modified Shepp-Logan phantom (Toft's higher-contrast densities 1,
 * -0.8, -0.2, -0.2, 0.1 ...), in 2D (ndim = 2, ellipses) or 3D (ndim = 3,
 * the widely circulated modified 3D ellipsoid set, not Kak & Slaney's
 * printed table), scaled so that [-1, 1] maps to [-radius, radius] mm and
 * its densities multiplied by 'scale' (e.g. 0.02 for mu near water's, in
 * 1/mm). The tables are in src/ct/phantom.c. *out is NULL on failure. The
 * phantom functions use all online cores and take no context. */
CLARA_API clara_status clara_phantom_shepp_logan(int ndim, double radius,
                                                 double scale,
                                                 clara_phantom **out);
/* A phantom of the caller's ellipsoids (copied). */
CLARA_API clara_status clara_phantom_create(int ndim, const clara_ellipsoid *e,
                                            int count, clara_phantom **out);
CLARA_API void clara_phantom_destroy(clara_phantom *ph);

/* Rasterises the phantom on 'vol': each voxel gets the mean over
 * supersample^ndim point samples (1 <= supersample <= 64). */
CLARA_API clara_status clara_phantom_rasterize(const clara_phantom *ph,
                                               const clara_volume *vol,
                                               int supersample, float *image);
/* Exact integrals along the whole line through the source (or along the
 * parallel ray) and each detector cell's centre, for any geometry:
 * projections[view][row][col]. For a 2D phantom and a PARALLEL/FAN geometry
 * every row gets the same 2D sinogram; under CONE a 2D phantom's ellipses
 * are endless cylinders crossed by the tilted rays. */
CLARA_API clara_status clara_phantom_project(const clara_phantom *ph,
                                             const clara_ct_geometry *geom,
                                             float *projections);

/* ------------------------------------------------------------------------ */
/* MRI: Cartesian multi-coil k-space reconstruction                          */
/* ------------------------------------------------------------------------ */
/*
 * Complex data are interleaved float32 pairs (re, im), the layout of
 * fftwf_complex and cufftComplex. k-space is
 *   kspace[slice][coil][kz][ky][kx]      (kx = readout, fastest)
 * and images are image[slice][z][y][x] on the reconstruction matrix (x =
 * readout after oversampling removal). The FFT is centred (DC at index
 * n/2 in both k-space and image space, as fastMRI and the ISMRMRD tools
 * store data).
 */

/* FFT normalisation. ORTHO (the default) scales the transform by
 * 1/sqrt(N), as fastMRI and SigPy do, so image and k-space have the same
 * energy. NONE applies no scale, as the ISMRMRD reference tools do: a NONE
 * image is sqrt(N) times the ORTHO one (N = nx * ny * nz). */
typedef enum clara_mr_norm {
  CLARA_MR_NORM_ORTHO = 0,
  CLARA_MR_NORM_NONE = 1
} clara_mr_norm;

typedef enum clara_mr_combine {
  CLARA_MR_COMBINE_RSS = 0,        /* root of the sum of squares */
  CLARA_MR_COMBINE_ADAPTIVE = 1,   /* Walsh et al. 2000, maps from the data */
  CLARA_MR_COMBINE_SENSITIVITY = 2 /* the caller's coil maps (SENSE-style) */
} clara_mr_combine;

typedef enum clara_mr_partial_fourier {
  CLARA_MR_PF_ZERO = 0,     /* zero-fill the missing part */
  CLARA_MR_PF_HOMODYNE = 1, /* homodyne (Noll et al. 1991) */
  CLARA_MR_PF_POCS = 2      /* projection onto convex sets (Haacke 1991) */
} clara_mr_partial_fourier;

typedef enum clara_mr_window {
  CLARA_MR_WINDOW_NONE = 0,
  CLARA_MR_WINDOW_HANN = 1,
  CLARA_MR_WINDOW_HAMMING = 2,
  CLARA_MR_WINDOW_TUKEY = 3 /* flat top, cosine tapers of tukey_alpha */
} clara_mr_window;

/* The acquisition. For 2D data nz = 1. The sampled part of k-space along
 * ky (and kx, for an asymmetric echo) is [first, last]; everything else is
 * treated as not acquired. A full acquisition is [0, n-1] (so a zeroed
 * geometry samples a single line and is refused by homodyne and POCS, which
 * need the centre n/2 sampled). Readout oversampling removal keeps the
 * centred recon_nx columns: output x = image x + nx/2 - recon_nx/2. */
typedef struct clara_mr_geometry {
  int coils;
  int nx, ny, nz;        /* encoded matrix: readout, phase, partition */
  int slices;            /* independent slices (or volumes) in one execute */
  int recon_nx;          /* readout size after oversampling removal (0 = nx) */
  int ky_first, ky_last; /* sampled phase-encoding lines */
  int kx_first, kx_last; /* sampled readout samples */
} clara_mr_geometry;

typedef struct clara_mr_options {
  clara_mr_norm norm;                       /* default ORTHO */
  clara_mr_combine combine;                 /* default RSS */
  clara_mr_partial_fourier partial_fourier; /* default HOMODYNE */
  int pocs_iterations;                      /* default 10 */
  /* Apodisation over the whole encoded axis, centred on n/2, with
   * t = (k - n/2)/(n/2): Hann 0.5 + 0.5 cos(pi t), Hamming 0.54 + 0.46
   * cos(pi t), Tukey flat for |t| <= 1 - alpha and cosine-tapered beyond. */
  clara_mr_window window; /* default NONE */
  double tukey_alpha;     /* (0, 1], default 0.5 */
  /* 0: magnitude (default); 1: complex. RSS has no phase: its complex
   * output is the RSS value with imaginary part 0. */
  int output_complex;
  /* Noise pre-whitening: the coils' noise covariance [coils][coils]
   * (complex, Hermitian positive definite), or NULL for none. */
  const float *noise_covariance;
  /* For COMBINE_SENSITIVITY (and refused otherwise): maps
   * [coils][nz][ny][recon_nx] (complex) in the coils' own (unwhitened)
   * space; with a noise covariance the plan whitens them too, so the result
   * is S^H C^-1 x / (S^H C^-1 S). */
  const float *sensitivities;
} clara_mr_options;

CLARA_API void clara_mr_options_init(clara_mr_options *opts);

typedef struct clara_mr_plan_s clara_mr_plan;

/* Plans the reconstruction. The options' arrays are copied. Errors:
 * CLARA_ERR_INVALID_ARG (sizes, ranges, a covariance that is not positive
 * definite, maps missing for COMBINE_SENSITIVITY), CLARA_ERR_OUT_OF_MEMORY,
 * CLARA_ERR_UNSUPPORTED. */
CLARA_API clara_status clara_mr_plan_create(clara_context *ctx,
                                            const clara_mr_geometry *geom,
                                            const clara_mr_options *opts,
                                            clara_mr_plan **out);
/* kspace [slices][coils][nz][ny][nx] complex -> image [slices][nz][ny]
 * [recon_nx], real (magnitude) or complex. Thread-safe for distinct
 * outputs. */
CLARA_API clara_status clara_mr_execute(const clara_mr_plan *plan,
                                        const float *kspace, float *image);
/* As clara_mr_execute, with both arrays in the memory of the context's CUDA
 * device (cudaMalloc'd, same layout), so that a GPU pipeline never goes
 * through host memory. The call returns when the image is complete.
 * Errors: CLARA_ERR_UNSUPPORTED on a CPU context, and for a plan whose
 * options run on the CPU even on a CUDA context (adaptive combination,
 * homodyne or POCS on an asymmetric axis; the message says which);
 * CLARA_ERR_INVALID_ARG for NULL or host pointers; CLARA_ERR_DEVICE with the
 * CUDA error's name. */
CLARA_API clara_status clara_mr_execute_device(const clara_mr_plan *plan,
                                               const float *d_kspace,
                                               float *d_image);
CLARA_API void clara_mr_plan_destroy(clara_mr_plan *plan);

/* The noise covariance of 'samples' noise samples per coil (noise
 * [coils][samples], complex): cov[i][j] = sum_k n_i[k] conj(n_j[k]) /
 * (samples - 1). 'cov' receives coils*coils complex values. */
CLARA_API clara_status clara_mr_noise_covariance(const float *noise, int coils,
                                                 int samples, float *cov);

/* An MR raw-data file, ISMRMRD (/dataset/data and /dataset/xml) or fastMRI
 * (/kspace, /ismrmrd_header), detected from its content and read whole at
 * open. ISMRMRD acquisitions are placed by kspace_encode_step_1/2, noise
 * scans (flag bit 19) kept apart for pre-whitening, navigator,
 * phase-correction and dummy scans skipped, reversed readouts flipped, and
 * the data split by contrast, repetition and set into separate datasets
 * (slices stay together in one dataset). */
typedef struct clara_mr_file_s clara_mr_file;

/* Errors: CLARA_ERR_INVALID_ARG, CLARA_ERR_IO (cannot open, not HDF5,
 * truncated), CLARA_ERR_FORMAT (neither layout, XML that does not parse, a
 * missing or mistyped field; the message names it), CLARA_ERR_UNSUPPORTED
 * (a non-Cartesian trajectory). *out is NULL on failure. Details of the
 * mapping: docs/MR_FORMATS.md. */
CLARA_API clara_status clara_mr_file_open(const char *path,
                                          clara_mr_file **out);
CLARA_API void clara_mr_file_close(clara_mr_file *file);
/* "ismrmrd" or "fastmri". */
CLARA_API const char *clara_mr_file_format(const clara_mr_file *file);
/* Number of k-space datasets (contrast x repetition x set combinations
 * present; 1 for fastMRI). */
CLARA_API int clara_mr_file_count(const clara_mr_file *file);
/* The geometry of dataset 'index': coils, encoded matrix, slices,
 * recon_nx from the reconstruction space (readout oversampling), and the
 * sampled ky/kx ranges (partial Fourier) from the encoding limits or the
 * data. */
CLARA_API clara_status clara_mr_file_geometry(const clara_mr_file *file,
                                              int index,
                                              clara_mr_geometry *geom);
/* Copies dataset 'index' as kspace[slices][coils][nz][ny][nx] complex
 * (unacquired samples 0) into a buffer of the geometry's size. */
CLARA_API clara_status clara_mr_file_kspace(const clara_mr_file *file,
                                            int index, float *kspace);
/* The noise samples [coils][samples] (complex), owned by the file; *coils
 * is their channel count (known even for a file of noise scans only);
 * *samples is 0 and *noise NULL when the file has no noise scans. */
CLARA_API clara_status clara_mr_file_noise(const clara_mr_file *file,
                                           int *coils, int *samples,
                                           const float **noise);
/* fastMRI's reference reconstruction_rss [slices][y][x] when the file has
 * one (*rss NULL otherwise); owned by the file. */
CLARA_API clara_status clara_mr_file_reference(const clara_mr_file *file,
                                               int *slices, int *ny, int *nx,
                                               const float **rss);

/* What an MR file's ISMRMRD XML header (ISMRMRD's /dataset/xml, fastMRI's
 * /ismrmrd_header) says about the patient, the study, the scanner and the
 * sequence, for a caller that writes DICOM headers or shows them; the
 * element read is named after each field (ISMRMRD schema names, below
 * subjectInformation, studyInformation, measurementInformation,
 * acquisitionSystemInformation, sequenceParameters and encoding).
 *
 * Strings are UTF-8, copied as the file has them with the white space
 * around them removed (dates stay xs:date "YYYY-MM-DD", times xs:time
 * "HH:MM:SS[.ffffff]", possibly with a time zone), and cut at a character
 * boundary when longer than their array; "" when the element is absent.
 * Numbers are 0 when absent, not a number or not finite. These fields are
 * informational: none of them makes clara_mr_file_open fail, and none is
 * checked against DICOM's rules (value lengths, character sets, UID
 * syntax), which is the caller's to do. */
typedef struct clara_mr_study {
  int has_header; /* 1: the file has an XML header (else all is empty) */

  /* subjectInformation */
  char patient_name[256];      /* patientName, e.g. "Doe^Jane" */
  char patient_id[128];        /* patientID */
  char patient_birth_date[32]; /* patientBirthdate (xs:date) */
  char patient_sex[8];         /* patientGender: "M", "F" or "O" */
  double patient_weight_kg;    /* patientWeight_kg */

  /* studyInformation */
  char study_date[32];           /* studyDate (xs:date) */
  char study_time[32];           /* studyTime (xs:time) */
  char study_id[128];            /* studyID */
  char study_instance_uid[128];  /* studyInstanceUID */
  char accession_number[32];     /* accessionNumber (xs:long), as text */
  char referring_physician[256]; /* referringPhysicianName */
  char study_description[256];   /* studyDescription */
  char body_part[64];            /* bodyPartExamined */

  /* measurementInformation */
  char series_date[32];             /* seriesDate (xs:date) */
  char series_time[32];             /* seriesTime (xs:time) */
  char patient_position[16];        /* patientPosition, e.g. "HFS" */
  char protocol_name[256];          /* protocolName */
  char sequence_name[128];          /* sequenceName */
  char series_description[256];     /* seriesDescription */
  char frame_of_reference_uid[128]; /* frameOfReferenceUID */

  /* acquisitionSystemInformation */
  char manufacturer[128];       /* systemVendor */
  char manufacturer_model[128]; /* systemModel */
  char institution_name[256];   /* institutionName */
  char station_name[128];       /* stationName */
  double field_strength_t;      /* systemFieldStrength_T, tesla */

  /* sequenceParameters: the first value of each list */
  double tr_ms;           /* TR, ms */
  double te_ms;           /* TE, ms */
  double ti_ms;           /* TI, ms */
  double flip_angle_deg;  /* flipAngle_deg */
  char sequence_type[64]; /* sequence_type, e.g. "GRE", "TSE" */

  /* The <encoding> that dataset 'index' comes from (for fastMRI, the
   * first). The pixel spacing of an image reconstructed from the encoded
   * matrix is encoded_fov_mm / the dataset's nx, ny, nz (its geometry). */
  double encoded_fov_mm[3]; /* encodedSpace/fieldOfView_mm x, y, z */
  int encoded_matrix[3];    /* encodedSpace/matrixSize x, y, z */
  double recon_fov_mm[3];   /* reconSpace/fieldOfView_mm */
  int recon_matrix[3];      /* reconSpace/matrixSize */
  int echo_train_length;    /* echoTrainLength */
} clara_mr_study;

/* Fills *out from the header of 'file', the encoding part for dataset
 * 'index'. A file without a header (a fastMRI file may have none) gives
 * has_header 0 and everything else empty. Errors: CLARA_ERR_INVALID_ARG
 * (NULL, index out of range). */
CLARA_API clara_status clara_mr_file_study(const clara_mr_file *file, int index,
                                           clara_mr_study *out);

/* Writes kspace[slices][coils][nz][ky][kx] (complex) as an ISMRMRD file
 * that the ISMRMRD library and tools read (and clara_mr_file_open reads
 * back exactly), replacing any file at 'path': /dataset/xml with one
 * encoding (encodedSpace nx x ny x nz, reconSpace recon_nx x ny x nz,
 * fields of view at 1 mm per sample since the geometry carries none,
 * encodingLimits with kspace_encoding_step_1 [ky_first, ky_last] centred
 * on ny/2, receiverChannels = coils) and /dataset/data with ISMRMRD's full
 * AcquisitionHeader. First the noise scans, when 'noise' ([coils]
 * [noise_samples] complex) is not NULL: readouts of up to nx samples with
 * flag 19 (ACQ_IS_NOISE_MEASUREMENT). Then one acquisition per sampled
 * (slice, kz, ky) line, all coils, samples kx_first..kx_last with
 * center_sample = nx/2 - kx_first, version 1, flags FIRST/LAST_IN_
 * ENCODE_STEP1/2 and FIRST/LAST_IN_SLICE where they apply and
 * LAST_IN_MEASUREMENT on the last. Temporary file and rename, as for
 * clara_ct_file_write. Errors: CLARA_ERR_INVALID_ARG (NULL, ranges,
 * sizes beyond ISMRMRD's 16-bit counters or 1024 channels, noise and
 * noise_samples that disagree), CLARA_ERR_UNSUPPORTED (a readout starting
 * at nx/2, which center_sample cannot express), CLARA_ERR_OUT_OF_MEMORY,
 * CLARA_ERR_IO. */
CLARA_API clara_status clara_mr_file_write_ismrmrd(
    const char *path, const clara_mr_geometry *geom, const float *kspace,
    const float *noise, int noise_samples);

/* The 2D modified Shepp-Logan phantom (the table of
 * clara_phantom_shepp_logan, radius fov_mm / 2) in k-space, computed from
 * its exact continuous Fourier transform (each ellipse's is a J1 jinc), as
 * seen by geom->coils receive coils: kspace[slices][coils][1][ny][nx]
 * (complex; every slice the same). The sensitivity maps are sums of
 * low-frequency complex exponentials, so that the k-space of phantom x map
 * is an exact sum of shifted jincs: coil_maps = 1 gives smooth maps (coil
 * c of C faces angle 2 pi c / C: magnitude 0.2 .. 1 across the FOV, a
 * linear phase and an offset 0.7 c rad; src/mr/phantom_mr.c has the
 * formula), coil_maps = 0 uniform ones (S = 1). Sampling is centred: kx =
 * (x - nx/2) / FOV_x, ky = (y - ny/2) / fov_mm, with the readout FOV FOV_x
 * = fov_mm * nx / recon_nx (nx = 2 recon_nx: a doubled readout FOV), and
 * scaled by sqrt(nx ny) / (FOV_x fov_mm) so that the ORTHO reconstruction
 * approximates phantom x map (densities 1, -0.8, ...) at pixel (i, j) of
 * the recon grid, centred on (i - recon_nx/2) fov_mm/recon_nx, (j - ny/2)
 * fov_mm/ny. Only [ky_first, ky_last] x [kx_first, kx_last] is filled, the
 * rest is 0. 'maps' (may be NULL) receives the maps on the recon grid,
 * [coils][1][ny][recon_nx] complex. Uses all online cores. Errors:
 * CLARA_ERR_INVALID_ARG, CLARA_ERR_UNSUPPORTED (nz != 1),
 * CLARA_ERR_OUT_OF_MEMORY. */
CLARA_API clara_status clara_mr_phantom_kspace(const clara_mr_geometry *geom,
                                               double fov_mm, int coil_maps,
                                               float *kspace, float *maps);

/* ------------------------------------------------------------------------ */
/* AI denoising                                                              */
/* ------------------------------------------------------------------------ */

/* A trained CNN that removes noise from reconstructed 2D slices: a chain of
 * 3x3 convolutions with ReLUs (docs/FORMATS.md gives the file format, and
 * models/README.md the shipped models and their measured effect). It runs on
 * the context's backend: on the CPU with Winograd F(4x4,3x3) convolutions,
 * multithreaded; on the GPU in the CUDA plugin. Volumes are denoised slice
 * by slice (each [ny][nx] plane independently). */
typedef struct clara_denoiser_s clara_denoiser;

typedef enum clara_modality {
  CLARA_MODALITY_CT = 1, /* works in Hounsfield units */
  CLARA_MODALITY_MR = 2  /* works on magnitude images of any scale */
} clara_modality;

/* "ct", "mr". */
CLARA_API const char *clara_modality_name(clara_modality modality);

/* Arithmetic of the GPU backend. FP16 stores activations and weights in
 * half precision and accumulates in float; bench/RESULTS.md gives its error
 * against FP32. The CPU backend runs FP32 only. */
typedef enum clara_precision {
  CLARA_PRECISION_FP32 = 0, /* default */
  CLARA_PRECISION_FP16 = 1
} clara_precision;

/* Loads and validates a model file and prepares it on ctx's backend (the
 * CPU transforms the weights for Winograd; the GPU uploads them). The
 * denoiser keeps a pointer to ctx, which must outlive it. Errors:
 * CLARA_ERR_INVALID_ARG (NULL), CLARA_ERR_IO (missing, unreadable, not HDF5,
 * truncated), CLARA_ERR_FORMAT (anything in the file that breaks the
 * format: missing objects, wrong types or shapes, NaN weights),
 * CLARA_ERR_UNSUPPORTED (a format version this build cannot read),
 * CLARA_ERR_OUT_OF_MEMORY. *out is NULL on failure. */
CLARA_API clara_status clara_denoiser_load(clara_context *ctx, const char *path,
                                           clara_denoiser **out);

/* Loads a model shipped with the library by name: "ct" (ct-denoise.h5) or
 * "mr" (mr-denoise.h5), from the directory in the environment variable
 * CLARA_RECON_MODELS if it is set, else from the installed models
 * directory (<prefix>/share/clara-recon/models). The message of a failure
 * names the path tried. Errors as clara_denoiser_load, plus
 * CLARA_ERR_INVALID_ARG for an unknown name. */
CLARA_API clara_status clara_denoiser_load_shipped(clara_context *ctx,
                                                   const char *name,
                                                   clara_denoiser **out);

typedef struct clara_denoiser_info {
  clara_modality modality;
  char architecture[32];   /* from the file, e.g. "dncnn" */
  char units[16];          /* the units it expects, e.g. "HU", or "" */
  int layers;              /* 3x3 convolutions */
  int max_channels;        /* the widest layer */
  int receptive_field;     /* 2 layers + 1: the smallest nx and ny accepted */
  int residual;            /* 1: the net predicts the noise */
  long long parameters;    /* weights and biases */
  double flops_per_pixel;  /* multiply-adds x 2 of one output pixel */
  char training_data[256]; /* /provenance @ training_data, or "" */
} clara_denoiser_info;

CLARA_API clara_status clara_denoiser_get_info(const clara_denoiser *d,
                                               clara_denoiser_info *info);

/* Selects the arithmetic (default FP32). Rebuilds the backend's state, so
 * call it before the denoiser is used, never while another thread runs it.
 * Errors: CLARA_ERR_INVALID_ARG, CLARA_ERR_UNSUPPORTED (FP16 on the CPU). */
CLARA_API clara_status clara_denoiser_set_precision(clara_denoiser *d,
                                                    clara_precision precision);

/* Denoises 'nslices' slices of ny x nx ([nslices][ny][nx], host memory)
 * from 'in' into 'out'; in == out (in place) is allowed, other overlaps are
 * not. Safe to call concurrently on one denoiser with distinct outputs.
 * Errors: CLARA_ERR_INVALID_ARG (NULL, sizes <= 0 or overflowing, nx or ny
 * smaller than the receptive field, a NaN or infinite pixel, named by its
 * index: then 'out' is not written), CLARA_ERR_OUT_OF_MEMORY,
 * CLARA_ERR_CANCELLED (the context's progress callback). */
CLARA_API clara_status clara_denoise(const clara_denoiser *d, const float *in,
                                     float *out, int nx, int ny, int nslices);

/* As clara_denoise on device pointers of the denoiser's CUDA context (the
 * image never leaves the GPU). A non-finite pixel is reported as
 * CLARA_ERR_INVALID_ARG without its index. Errors as clara_denoise, plus
 * CLARA_ERR_UNSUPPORTED on a CPU context and CLARA_ERR_DEVICE. */
CLARA_API clara_status clara_denoise_device(const clara_denoiser *d,
                                            const float *d_in, float *d_out,
                                            int nx, int ny, int nslices);

/* Releases the caller's reference. Plans that the denoiser is attached to
 * keep their own, so it may be destroyed right after being attached. NULL
 * is a no-op. */
CLARA_API void clara_denoiser_destroy(clara_denoiser *d);

/* Attaches a denoiser to a plan (NULL detaches): from then on execute
 * returns denoised images, on the GPU without leaving the device. The plan
 * takes a reference. The denoiser must belong to the plan's context. A CT
 * plan needs a CT model and HU output (mu_water > 0 in its options); an MR
 * plan needs an MR model and magnitude output (output_complex 0).
 * Mismatches are CLARA_ERR_INVALID_ARG with the reason. Not thread-safe
 * against executions of the same plan. */
CLARA_API clara_status clara_fbp_plan_set_denoiser(clara_fbp_plan *plan,
                                                   clara_denoiser *d);
CLARA_API clara_status clara_mr_plan_set_denoiser(clara_mr_plan *plan,
                                                  clara_denoiser *d);

/* ------------------------------------------------------------------------ */
/* DICOM-ready output                                                        */
/* ------------------------------------------------------------------------ */

/* What a vendor needs to fill its own DICOM image headers: 16-bit signed
 * stored pixel values (BitsAllocated 16, BitsStored 16, HighBit 15,
 * PixelRepresentation 1) plus the Modality LUT and a VOI window. The
 * library writes no DICOM itself. For every voxel the rescaled value
 * stored * slope + intercept (RescaleSlope, RescaleIntercept) is the input
 * value up to the quantisation (|error| <= slope / 2 unless clipped);
 * window_center and window_width (WindowCenter, WindowWidth) are in those
 * rescaled units. min and max are the input's extremes (over all voxels,
 * clipped ones included). Rounding is half away from zero. */
typedef struct clara_dicom_scaling {
  double slope, intercept;
  double window_center, window_width;
  long long clipped_low, clipped_high; /* voxels clamped to -32768 / 32767 */
  float min, max;
} clara_dicom_scaling;

/* CT in Hounsfield units -> stored = round(hu + 1024), clamped to the
 * int16 range [-32768, 32767] (RescaleSlope 1, RescaleIntercept -1024, so
 * air -1024 HU is stored 0 and the usual [-1024, 3071] HU is [0, 4095]).
 * Voxels outside [-33792, 31743] HU (infinities included) are clamped and
 * counted in clipped_low / clipped_high. The window is the soft-tissue one,
 * center 40 HU, width 400 HU. A NaN fails with CLARA_ERR_INVALID_ARG naming
 * the first NaN's index, and then neither 'stored' nor 'out' is written.
 * Errors: CLARA_ERR_INVALID_ARG (NULL pointer, n == 0, NaN). */
CLARA_API clara_status clara_dicom_ready_ct(const float *hu, size_t n,
                                            int16_t *stored,
                                            clara_dicom_scaling *out);

/* Any real quantity (MR magnitude, a parameter map, ...) -> stored =
 * round(image / slope) with intercept 0 and slope = M / 32000, M the
 * largest magnitude max(|min|, |max|), so that max maps to 32000 for a
 * non-negative image and nothing is ever clipped (negative values map to
 * [-32000, 0]). An all-zero image gets slope 1. The window spans the 1st to
 * the 99th percentile (nearest rank, taken from a histogram of the stored
 * values, so exact up to the quantisation): center = (p1 + p99) / 2, width
 * = p99 - p1, but at least one stored step (slope). Note that DICOM asks
 * for WindowWidth >= 1: for images whose values are all tiny, a vendor may
 * prefer its own window. A NaN or infinity fails with
 * CLARA_ERR_INVALID_ARG naming its index, and then neither 'stored' nor
 * 'out' is written. Errors: CLARA_ERR_INVALID_ARG (NULL pointer, n == 0,
 * NaN, infinity), CLARA_ERR_OUT_OF_MEMORY (the 512 KiB histogram). */
CLARA_API clara_status clara_dicom_ready_scaled(const float *image, size_t n,
                                                int16_t *stored,
                                                clara_dicom_scaling *out);

/* Where slice 'slice' of a volume lies, in the terms of the DICOM Image
 * Plane module. The volume's axes are taken as the patient's (DICOM LPS:
 * +x towards the patient's left, +y posterior, +z superior), which is what
 * a supine, head-first patient on a scanner whose +z points to the head
 * gives; a vendor that knows another patient position maps the axes
 * itself. Rows run along +x and columns along +y, so the orientation is
 * [1 0 0 0 1 0]; positions are the centre of the slice's first pixel
 * (ix = iy = 0), from the clara_volume convention. */
typedef struct clara_dicom_plane {
  double pixel_spacing[2]; /* PixelSpacing: [row spacing (vy), col (vx)] */
  double slice_thickness;  /* SliceThickness and SpacingBetweenSlices: vz */
  double orientation[6];   /* ImageOrientationPatient */
  double position[3];      /* ImagePositionPatient, mm */
  double slice_location;   /* SliceLocation: the slice's z, mm */
} clara_dicom_plane;

/* Fills *out for slice 'slice' (0 .. nz-1) of 'vol'. Errors:
 * CLARA_ERR_INVALID_ARG (NULL, sizes <= 0, a voxel size that is not finite
 * and > 0, a centre that is not finite, slice out of range). */
CLARA_API clara_status clara_dicom_plane_of(const clara_volume *vol, int slice,
                                            clara_dicom_plane *out);

/* ------------------------------------------------------------------------ */
/* Files (HDF5; layout in docs/FORMATS.md)                                   */
/* ------------------------------------------------------------------------ */

/* A CT input file: group /ct with dataset projections (float32,
 * [views][rows][cols]), dataset angles (float32, [views]) and attributes
 * geometry, det_spacing [row, col], det_offset [row, col], source_to_iso and
 * source_to_detector.
 *
 * det_offset is optional (default [0, 0]); the two distances are optional
 * for parallel data. Float datasets of any width and byte order are
 * converted; integer data where floats belong is refused.
 *
 * Reads 'path'. On success *geom is filled, geom->angles points at
 * *angles_out, and *projections_out holds views*rows*cols floats; free both
 * with clara_free(). Errors: CLARA_ERR_INVALID_ARG (NULL arguments),
 * CLARA_ERR_IO (cannot open, not HDF5, truncated), CLARA_ERR_FORMAT
 * (missing dataset or attribute, wrong dtype or rank, counts that do not
 * agree, a geometry that clara_geometry_check refuses; the message names
 * the dataset and what was expected), CLARA_ERR_OUT_OF_MEMORY. Nothing is
 * allocated and the outputs are untouched on failure.
 *
 * HDF5 is used behind one library-wide lock, and HDF5's own error printing
 * is switched off (for the whole process: it is a global HDF5 setting). */
CLARA_API clara_status clara_ct_file_read(const char *path,
                                          clara_ct_geometry *geom,
                                          float **angles_out,
                                          float **projections_out);

/* Writes a CT input file, replacing any file at 'path'. If 'truth' is not
 * NULL it is stored as /truth ([nz][ny][nx] on 'truth_vol') with
 * attributes voxel_size and center ([z, y, x], mm). The file is written to
 * a temporary name beside 'path' and renamed into place, so a failure
 * leaves no partial file and an existing file intact. Errors:
 * CLARA_ERR_INVALID_ARG (NULL, bad geometry or volume), CLARA_ERR_IO (the
 * message carries the system's reason). */
CLARA_API clara_status clara_ct_file_write(const char *path,
                                           const clara_ct_geometry *geom,
                                           const float *projections,
                                           const clara_volume *truth_vol,
                                           const float *truth);

/* Writes /image (float32, [nz][ny][nx]) with attributes voxel_size
 * [z, y, x] (mm), center [z, y, x] (mm) and units (e.g. "1/mm" or "HU";
 * not NULL, "" for none). Temporary file and rename, as above. Errors:
 * CLARA_ERR_INVALID_ARG, CLARA_ERR_IO. */
CLARA_API clara_status clara_image_file_write(const char *path,
                                              const clara_volume *vol,
                                              const float *image,
                                              const char *units);

/* Reads a dataset written as an image: 'dataset' is "/image" or "/truth".
 * *image_out (free with clara_free) holds nz*ny*nx floats. 'units' (may be
 * NULL) receives up to units_len-1 characters of the units attribute, or ""
 * when there is none; units_len must be > 0 when units is given. Errors:
 * CLARA_ERR_INVALID_ARG, CLARA_ERR_IO, CLARA_ERR_FORMAT,
 * CLARA_ERR_OUT_OF_MEMORY; outputs untouched on failure. */
CLARA_API clara_status clara_image_file_read(const char *path,
                                             const char *dataset,
                                             clara_volume *vol,
                                             float **image_out, char *units,
                                             size_t units_len);

#ifdef __cplusplus
}
#endif

#endif /* CLARA_RECON_H */
