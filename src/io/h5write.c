/* h5write.c -- what every file writer of the library shares (h5util.h): a
 * fresh temporary file beside the target, checked for room before HDF5
 * writes a byte, and its atomic commit. Callers hold the HDF5 lock. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* posix_fallocate, fsync, clock_gettime */
#endif

#include "h5util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

static uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* Whether 'bytes' fit in the file: posix_fallocate allocates them (it
 * fails with ENOSPC on a full disk and EFBIG past RLIMIT_FSIZE), then the
 * file is emptied again for HDF5. This matters because HDF5 (1.10) cannot
 * recover from a write that fails while it flushes a file: the close fails,
 * the file stays half-open inside HDF5, and HDF5's exit handler crashes the
 * process. A disk that fills up between this check and the write, through
 * another process, still reaches that path. */
static int check_room(int fd, size_t bytes) {
  int err;
  if (bytes == 0)
    return 0;
  err = posix_fallocate(fd, 0, (off_t)bytes);
  if (err == EINVAL || err == EOPNOTSUPP)
    err = 0; /* a file system that cannot tell: let the write find out */
  if (ftruncate(fd, 0) != 0 && err == 0)
    err = errno;
  return err;
}

clara_status clara_h5_temp_create(const char *fn, const char *path,
                                  size_t bytes, char **tmp_out) {
  static const char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  static uint64_t counter; /* under the HDF5 lock */
  size_t len = strlen(path);
  struct timespec ts;
  char *tmp;
  int err = 0;

  tmp = malloc(len + sizeof ".tmpXXXXXX");
  if (!tmp)
    return clara_h5_file_fail(CLARA_ERR_OUT_OF_MEMORY, fn, path,
                              "cannot allocate the temporary file name");
  memcpy(tmp, path, len);
  memcpy(tmp + len, ".tmp", 4);
  (void)clock_gettime(CLOCK_REALTIME, &ts);
  for (int attempt = 0; attempt < 100; attempt++) {
    uint64_t r = mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
                       ((uint64_t)getpid() << 40) ^ (++counter * 7919u) ^
                       (uint64_t)(uintptr_t)tmp);
    int fd;
    for (size_t i = 0; i < 6; i++) {
      tmp[len + 4 + i] = alphabet[r % (sizeof alphabet - 1)];
      r /= sizeof alphabet - 1;
    }
    tmp[len + 10] = '\0';
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) {
      err = check_room(fd, bytes);
      (void)close(fd);
      if (err != 0) {
        (void)unlink(tmp);
        free(tmp);
        return clara_h5_file_fail(
            CLARA_ERR_IO, fn, path,
            "no room for the file's %.1f MiB there: %s", bytes / 1048576.0,
            strerror(err));
      }
      *tmp_out = tmp;
      return CLARA_OK;
    }
    err = errno;
    if (err != EEXIST)
      break;
  }
  free(tmp);
  return clara_h5_file_fail(CLARA_ERR_IO, fn, path,
                            "cannot create a file there: %s", strerror(err));
}

clara_status clara_h5_temp_commit(const char *fn, const char *path,
                                  const char *tmp) {
  int fd = open(tmp, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fsync(fd) != 0) {
    int err = errno;
    if (fd >= 0)
      (void)close(fd);
    return clara_h5_file_fail(CLARA_ERR_IO, fn, path, "cannot flush %s: %s",
                              tmp, strerror(err));
  }
  (void)close(fd);
  if (rename(tmp, path) != 0)
    return clara_h5_file_fail(CLARA_ERR_IO, fn, path,
                              "cannot rename the finished %s into place: %s",
                              tmp, strerror(errno));
  return CLARA_OK;
}

size_t clara_h5_file_bytes(size_t data_bytes) {
  /* HDF5's own metadata (superblock, object headers, attributes, B-trees,
   * global heap collections) is a few KiB for the library's files; 64 KiB
   * plus 1/64 of the data leaves room to spare. */
  size_t extra = data_bytes / 64 + ((size_t)64 << 10);
  return data_bytes > SIZE_MAX - extra ? SIZE_MAX : data_bytes + extra;
}
