/* memory.c -- checked size arithmetic and aligned allocation. */
#include "backend.h" /* the context, for host_memory_limit */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLARA_ALIGN 64

int clara_size_mul(size_t a, size_t b, size_t *out) {
  if (a != 0 && b > SIZE_MAX / a)
    return -1;
  *out = a * b;
  return 0;
}

int clara_size_mul3(size_t a, size_t b, size_t c, size_t *out) {
  size_t ab;
  if (clara_size_mul(a, b, &ab) != 0)
    return -1;
  return clara_size_mul(ab, c, out);
}

int clara_size_add(size_t a, size_t b, size_t *out) {
  if (b > SIZE_MAX - a)
    return -1;
  *out = a + b;
  return 0;
}

void *clara_aligned_alloc(size_t n) {
  void *p = NULL;
  if (n == 0)
    return NULL;
  if (posix_memalign(&p, CLARA_ALIGN, n) != 0)
    return NULL;
  return p;
}

void *clara_aligned_calloc(size_t count, size_t size) {
  size_t n;
  void *p;
  if (clara_size_mul(count, size, &n) != 0)
    return NULL;
  p = clara_aligned_alloc(n);
  if (p)
    memset(p, 0, n);
  return p;
}

void clara_aligned_free(void *p) { free(p); }

CLARA_API void clara_free(void *ptr) { clara_aligned_free(ptr); }

void *clara_xcalloc(size_t count, size_t size, const char *what) {
  size_t n;
  void *p;
  if (clara_size_mul(count, size, &n) != 0) {
    clara_fail(CLARA_ERR_INVALID_ARG,
               "%s: size overflows: %zu elements of %zu bytes", what, count,
               size);
    return NULL;
  }
  p = clara_aligned_calloc(count, size);
  if (!p && n > 0)
    clara_fail(CLARA_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes", what,
               n);
  return p;
}

int clara_online_cpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1)
    return 1;
  if (n > 1024)
    return 1024;
  return (int)n;
}

/* ---- Host memory limits -------------------------------------------------- */

double clara_host_memory_limit(const clara_context *ctx, int *configured) {
  long pages, page;
  *configured = 0;
  if (ctx && ctx->host_memory_limit > 0) {
    *configured = 1;
    return (double)ctx->host_memory_limit;
  }
  pages = sysconf(_SC_PHYS_PAGES);
  page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0)
    return 0;
  return (double)pages * (double)page;
}

void clara_format_bytes(double bytes, char *buf, size_t len) {
  static const char *const unit[] = {"B",   "KiB", "MiB", "GiB",
                                     "TiB", "PiB", "EiB"};
  int u = 0;
  if (!(bytes >= 0))
    bytes = 0;
  while (bytes >= 1024 && u < 6) {
    bytes /= 1024;
    u++;
  }
  if (u == 0)
    snprintf(buf, len, "%.0f B", bytes);
  else
    snprintf(buf, len, "%.1f %s", bytes, unit[u]);
}

clara_status clara_memory_check(const clara_context *ctx, const char *who,
                                const clara_mem_term *terms, int n) {
  double need = 0, limit;
  int configured;
  char parts[512], num[32], lim[32];
  size_t used = 0;
  for (int i = 0; i < n; i++)
    if (terms[i].bytes > 0)
      need += terms[i].bytes;
  limit = clara_host_memory_limit(ctx, &configured);
  /* Nothing known about the machine: only what no address space can hold
   * is refused. */
  if (limit <= 0)
    limit = (double)SIZE_MAX;
  if (need <= limit && need <= (double)SIZE_MAX)
    return CLARA_OK;
  parts[0] = '\0';
  for (int i = 0; i < n && used + 1 < sizeof parts; i++) {
    int w;
    if (!(terms[i].bytes > 0))
      continue;
    clara_format_bytes(terms[i].bytes, num, sizeof num);
    w = snprintf(parts + used, sizeof parts - used, "%s%s %s",
                 used ? " + " : "", terms[i].what, num);
    if (w < 0)
      break;
    used += (size_t)w < sizeof parts - used ? (size_t)w
                                             : sizeof parts - used - 1;
  }
  clara_format_bytes(need, num, sizeof num);
  clara_format_bytes(limit, lim, sizeof lim);
  if (configured)
    return clara_fail(CLARA_ERR_OUT_OF_MEMORY,
                      "%s: needs %s of host memory (%s), more than the limit "
                      "of %s (host_memory_limit)",
                      who, num, parts, lim);
  return clara_fail(CLARA_ERR_OUT_OF_MEMORY,
                    "%s: needs %s of host memory (%s), more than this "
                    "machine's %s",
                    who, num, parts, lim);
}
