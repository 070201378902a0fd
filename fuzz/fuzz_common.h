/* fuzz/fuzz_common.h -- shared by the fuzz targets (see fuzz/README.md).
 *
 * The HDF5 readers take a path, so each input is written to a file of a
 * per-process scratch directory (the same name every time) and the reader
 * is called on it. The directory is under $CLARA_FUZZ_TMP, else /dev/shm
 * (a tmpfs) when writable, else $TMPDIR, else /tmp, and is removed at
 * exit. */
#ifndef CLARA_FUZZ_COMMON_H
#define CLARA_FUZZ_COMMON_H

#include <dirent.h>
#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_dir_path[512];

static inline void fuzz_dir_remove(void) {
  DIR *d = opendir(fuzz_dir_path);
  struct dirent *e;
  char p[1024];
  if (!d)
    return;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    snprintf(p, sizeof p, "%s/%s", fuzz_dir_path, e->d_name);
    (void)unlink(p);
  }
  closedir(d);
  (void)rmdir(fuzz_dir_path);
}

/* The scratch directory, created on first use; NULL if it cannot be. */
static inline const char *fuzz_dir(void) {
  if (!fuzz_dir_path[0]) {
    const char *base = getenv("CLARA_FUZZ_TMP");
    if (!base || !*base)
      base = access("/dev/shm", W_OK | X_OK) == 0 ? "/dev/shm" : NULL;
    if (!base)
      base = getenv("TMPDIR");
    if (!base || !*base)
      base = "/tmp";
    snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/clara-fuzz-%ld", base,
             (long)getpid());
    if (mkdir(fuzz_dir_path, 0700) != 0) {
      perror(fuzz_dir_path);
      abort();
    }
    atexit(fuzz_dir_remove);
  }
  return fuzz_dir_path;
}

/* dir/name, in a static buffer per call site's 'buf'. */
static inline const char *fuzz_path(char *buf, size_t len, const char *name) {
  snprintf(buf, len, "%s/%s", fuzz_dir(), name);
  return buf;
}

/* Writes data to dir/name; returns the path (static) or aborts. */
static inline const char *fuzz_write_file(const char *name, const uint8_t *data,
                                   size_t size) {
  static char path[1024];
  FILE *f;
  fuzz_path(path, sizeof path, name);
  f = fopen(path, "wb");
  if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
    perror(path);
    abort();
  }
  return path;
}

/* HDF5 objects that the target itself keeps open between inputs (the
 * datatypes of fuzz_mr_struct's template). */
static ssize_t fuzz_h5_baseline;

/* Aborts when an HDF5 object of a file (the file, a group, a dataset, an
 * attribute, a datatype got from one) is still open: every reader must
 * close what it opened, on every path. Called after each input. */
static inline void fuzz_check_h5_ids(void) {
  ssize_t n = H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
  if (n != fuzz_h5_baseline) {
    fprintf(stderr,
            "fuzz: %ld HDF5 objects left open (files %ld, datasets %ld, "
            "groups %ld, types %ld, attributes %ld)\n",
            (long)n, (long)H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_FILE),
            (long)H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_DATASET),
            (long)H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_GROUP),
            (long)H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_DATATYPE),
            (long)H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ATTR));
    abort();
  }
}

#endif
