/* h5util.c -- the library's HDF5 lock and error helpers (h5util.h). */
#include "h5util.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

static pthread_mutex_t h5_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t h5_once = PTHREAD_ONCE_INIT;
static int h5_threadsafe; /* written once, under h5_once */

static void h5_init_once(void) {
  hbool_t ts = 0;
  (void)H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  if (H5is_library_threadsafe(&ts) >= 0 && ts)
    h5_threadsafe = 1;
}

void clara_h5_lock(void) {
  (void)pthread_mutex_lock(&h5_mutex);
  (void)pthread_once(&h5_once, h5_init_once);
  /* A thread-safe HDF5 keeps the error-printing setting per thread, so the
   * one-time call above only covered the first thread that came here. */
  if (h5_threadsafe)
    (void)H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void clara_h5_unlock(void) { (void)pthread_mutex_unlock(&h5_mutex); }

typedef struct detail_buf {
  char *text;
  size_t len;
} detail_buf;

static herr_t detail_walk(unsigned n, const H5E_error2_t *err, void *data) {
  detail_buf *d = data;
  if (n == 0 && err && err->desc && err->desc[0])
    snprintf(d->text, d->len, " (HDF5: %s)", err->desc);
  return 0;
}

const char *clara_h5_detail(char *text, size_t len) {
  detail_buf d;
  d.text = text;
  d.len = len;
  text[0] = '\0';
  (void)H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, detail_walk, &d);
  (void)H5Eclear2(H5E_DEFAULT);
  return text;
}

clara_status clara_h5_file_fail(clara_status status, const char *fn,
                                const char *path, const char *fmt, ...) {
  char text[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  return clara_fail(status, "%s: %s: %s", fn, path, text);
}

void clara_h5_close(herr_t (*closer)(hid_t), hid_t *id, clara_status *status,
                    const char *fn, const char *path) {
  char detail[256];
  if (*id < 0)
    return;
  if (closer(*id) < 0 && *status == CLARA_OK)
    *status = clara_h5_file_fail(CLARA_ERR_IO, fn, path,
                                 "closing an HDF5 object failed%s",
                                 clara_h5_detail(detail, sizeof detail));
  *id = H5I_INVALID_HID;
}

const char *clara_h5_class_name(H5T_class_t c) {
  switch (c) {
  case H5T_INTEGER:
    return "integer";
  case H5T_FLOAT:
    return "float";
  case H5T_TIME:
    return "time";
  case H5T_STRING:
    return "string";
  case H5T_BITFIELD:
    return "bitfield";
  case H5T_OPAQUE:
    return "opaque";
  case H5T_COMPOUND:
    return "compound";
  case H5T_REFERENCE:
    return "reference";
  case H5T_ENUM:
    return "enum";
  case H5T_VLEN:
    return "variable-length";
  case H5T_ARRAY:
    return "array";
  default:
    return "unknown";
  }
}
