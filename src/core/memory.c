/* memory.c -- checked size arithmetic and aligned allocation. */
#include "internal.h"

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
