/* h5lock.c -- the library's one HDF5 lock (see h5lock.h). */
#include "h5lock.h"

#include <hdf5.h>
#include <pthread.h>

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
