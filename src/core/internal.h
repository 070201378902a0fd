/* internal.h -- helpers shared by every part of the library (not installed). */
#ifndef CLARA_INTERNAL_H
#define CLARA_INTERNAL_H

#include "clara_recon.h"

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define CLARA_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define CLARA_HIDDEN __attribute__((visibility("hidden")))
#else
#define CLARA_PRINTF(f, a)
#define CLARA_HIDDEN
#endif

/* Records a printf-style message as the calling thread's last error and
 * returns 'status', so that failures read `return clara_fail(...)`. The
 * message should name the function, the argument and the value, e.g.
 * clara_fail(CLARA_ERR_INVALID_ARG, "clara_fbp_plan_create: vol->nx: must be
 * > 0, got %d", nx). */
clara_status clara_fail(clara_status status, const char *fmt, ...)
    CLARA_PRINTF(2, 3);

/* Prefixes the current thread message with "prefix: " (for adding context
 * to an error raised deeper down). Returns status. */
clara_status clara_fail_context(clara_status status, const char *prefix);

/* Overflow-checked size arithmetic: return 0 and set *out, or return -1 when
 * the result does not fit in size_t. */
int clara_size_mul(size_t a, size_t b, size_t *out);
int clara_size_mul3(size_t a, size_t b, size_t c, size_t *out);
int clara_size_add(size_t a, size_t b, size_t *out);

/* 64-byte aligned allocation (for SIMD and FFTW). NULL for n == 0 or on
 * failure; clara_aligned_free(NULL) is a no-op. Memory from clara_aligned_*
 * must be released with clara_aligned_free, and is what clara_free expects
 * for buffers handed to callers. */
void *clara_aligned_alloc(size_t n);
void *clara_aligned_calloc(size_t count, size_t size);
void clara_aligned_free(void *p);

/* Allocates count*size bytes (aligned, zeroed) or records
 * CLARA_ERR_OUT_OF_MEMORY naming 'what' and the byte count (or the overflow)
 * and returns NULL. */
void *clara_xcalloc(size_t count, size_t size, const char *what);

/* The world coordinate (mm) of voxel index i along an axis of n voxels of
 * size vox centred on ctr: (i - (n-1)/2) vox + ctr, the convention of
 * clara_volume. */
static inline double clara_voxel_coord(int i, int n, double vox, double ctr) {
  return (i - 0.5 * (n - 1)) * vox + ctr;
}

/* The number of online processors (>= 1). */
int clara_online_cpus(void);

/* ---- Work sharing --------------------------------------------------------
 * clara_parallel_for runs fn(arg, i, worker) for every i in [0, n) on up to
 * 'threads' threads (the caller is worker 0), handing out indices
 * dynamically in order. If 'progress' is given, only the calling thread
 * reports through it: after each index it finishes, then, once no index is
 * left for it, whenever the other threads finish more, and at least once
 * per loop; a nonzero return cancels: no new index is started, and
 * CLARA_ERR_CANCELLED is returned once all running ones end. fn returns CLARA_OK or a status; the first failure stops the
 * loop the same way and is returned. */
typedef clara_status (*clara_task_fn)(void *arg, size_t index, int worker);

typedef struct clara_progress {
  clara_progress_fn fn; /* may be NULL */
  void *user;
  const char *stage;
  double base; /* fraction reported at index 0 */
  double span; /* fraction added over the whole loop */
} clara_progress;

clara_status clara_parallel_for(int threads, size_t n, clara_task_fn fn,
                                void *arg, const clara_progress *progress);

/* ---- Host memory limits ----------------------------------------------------
 * Plan creation and other large calls estimate the host memory they will
 * need (the big arrays only) before allocating anything, and refuse with
 * CLARA_ERR_OUT_OF_MEMORY when it exceeds the context's host_memory_limit
 * (or, when that is 0, the machine's physical memory). A term of the
 * estimate is a name and a byte count; counts are doubles so that products
 * of sizes never overflow (they are estimates, exact up to 2^53 bytes). */
typedef struct clara_mem_term {
  const char *what; /* e.g. "volume", "projections" */
  double bytes;
} clara_mem_term;

/* The limit that applies to 'ctx' in bytes: its host_memory_limit, or the
 * physical memory when that is 0 (ctx may be NULL). *configured is set to 1
 * when it is the context's limit. Returns 0 when neither is known. */
double clara_host_memory_limit(const clara_context *ctx, int *configured);

/* Sums the n terms and, when the sum exceeds the limit (or SIZE_MAX), fails
 * with CLARA_ERR_OUT_OF_MEMORY and "who: needs 12.3 GiB of host memory
 * (volume 8.0 GiB + projections 4.3 GiB), more than the limit of 4.0 GiB
 * (host_memory_limit)" or "... more than this machine's 31.2 GiB". Terms of
 * 0 bytes are left out of the message. Returns CLARA_OK otherwise. */
clara_status clara_memory_check(const clara_context *ctx, const char *who,
                                const clara_mem_term *terms, int n);

/* Formats a byte count as "12.3 GiB" (B, KiB, MiB, GiB, TiB, PiB, EiB). */
void clara_format_bytes(double bytes, char *buf, size_t len);

#endif
