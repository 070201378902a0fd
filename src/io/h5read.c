/* h5read.c -- the checked HDF5 reading helpers every reader of the library
 * shares (h5util.h): opening a file with a clear diagnosis, objects of an
 * expected kind, float datasets of an expected rank, attributes of an
 * expected class and count. Each returns a status with a message
 * "fn: path: object: what was expected, what was found". Callers hold the
 * HDF5 lock. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* pread */
#endif

#include "h5util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

#define file_fail clara_h5_file_fail
#define h5_close clara_h5_close

/* ------------------------------------------------------------------------ */
/* Object kinds, for messages                                                */
/* ------------------------------------------------------------------------ */

const char *clara_h5_kind_name(H5I_type_t t) {
  switch (t) {
  case H5I_GROUP:
    return "a group";
  case H5I_DATASET:
    return "a dataset";
  case H5I_DATATYPE:
    return "a named datatype";
  default:
    return "another kind of object";
  }
}

/* ------------------------------------------------------------------------ */
/* Reading helpers                                                           */
/* ------------------------------------------------------------------------ */

static const unsigned char h5_signature[8] = {0x89, 'H',  'D',  'F',
                                              '\r', '\n', 0x1a, '\n'};

/* Opens 'path' read-only as HDF5. Tells "cannot open" (with errno), "not an
 * HDF5 file" (no signature at 0, 512, 1024, ...) and "damaged or
 * truncated" (signature present, HDF5 refuses it) apart. */
clara_status clara_h5_open_read(const char *fn, const char *path,
                                  hid_t *out) {
  clara_status status = CLARA_OK;
  hid_t fapl = H5I_INVALID_HID, fid = H5I_INVALID_HID;
  struct stat sb;
  unsigned char sig[8];
  char detail[256];
  int fd, found = 0;
  off_t off;

  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return file_fail(CLARA_ERR_IO, fn, path, "cannot open: %s",
                     strerror(errno));
  if (fstat(fd, &sb) != 0) {
    int err = errno;
    (void)close(fd);
    return file_fail(CLARA_ERR_IO, fn, path, "cannot stat: %s", strerror(err));
  }
  if (!S_ISREG(sb.st_mode)) {
    (void)close(fd);
    return file_fail(CLARA_ERR_IO, fn, path, "cannot open: %s",
                     S_ISDIR(sb.st_mode) ? "is a directory"
                                         : "not a regular file");
  }
  /* The superblock sits at 0 or after a user block of 512, 1024, ... */
  for (off = 0; off <= sb.st_size - 8; off = off == 0 ? 512 : off * 2) {
    if (pread(fd, sig, sizeof sig, off) == (ssize_t)sizeof sig &&
        memcmp(sig, h5_signature, sizeof sig) == 0) {
      found = 1;
      break;
    }
    if (off > sb.st_size / 2)
      break;
  }
  (void)close(fd);
  if (!found)
    return file_fail(CLARA_ERR_IO, fn, path,
                     "not an HDF5 file (no HDF5 signature in its %lld bytes)",
                     (long long)sb.st_size);

  fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0) {
    status = file_fail(CLARA_ERR_IO, fn, path,
                       "cannot create a file access property list%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  if (H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
    status =
        file_fail(CLARA_ERR_IO, fn, path, "cannot set the file close degree%s",
                  clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  fid = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  if (fid < 0) {
    status = file_fail(CLARA_ERR_IO, fn, path,
                       "cannot open as HDF5: truncated or damaged file%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  *out = fid;
  fid = H5I_INVALID_HID;
done:
  h5_close(H5Fclose, &fid, &status, fn, path);
  h5_close(H5Pclose, &fapl, &status, fn, path);
  return status;
}

/* Whether the object 'name' exists, checking each parent first so that a
 * missing parent reads as "absent" rather than an error. 1, 0, or -1. */
int clara_h5_exists(hid_t loc, const char *name) {
  size_t len = strlen(name);
  char *prefix;
  int result = 1;
  if (len == 0)
    return 0;
  prefix = malloc(len + 1);
  if (!prefix)
    return -1;
  for (size_t i = 1; i <= len && result > 0; i++) {
    if (i < len && name[i] != '/')
      continue;
    if (name[i - 1] == '/')
      continue; /* "//" or a trailing '/' */
    memcpy(prefix, name, i);
    prefix[i] = '\0';
    htri_t e = H5Lexists(loc, prefix, H5P_DEFAULT);
    result = e < 0 ? -1 : e > 0 ? 1 : 0;
  }
  free(prefix);
  return result;
}

/* Opens object 'name' and insists that it is of type 'want'. 'expected'
 * describes it for the messages, e.g. "a float32 dataset [views]". */
clara_status clara_h5_open_object(const char *fn, const char *path, hid_t fid,
                                const char *name, H5I_type_t want,
                                const char *expected, hid_t *out) {
  char detail[256];
  hid_t obj;
  H5I_type_t t;
  int e = clara_h5_exists(fid, name);
  if (e < 0)
    return file_fail(CLARA_ERR_IO, fn, path, "%s: cannot look it up%s", name,
                     clara_h5_detail(detail, sizeof detail));
  if (e == 0)
    return file_fail(CLARA_ERR_FORMAT, fn, path, "%s: missing (expected %s)",
                     name, expected);
  obj = H5Oopen(fid, name, H5P_DEFAULT);
  if (obj < 0)
    return file_fail(CLARA_ERR_IO, fn, path, "%s: cannot open%s", name,
                     clara_h5_detail(detail, sizeof detail));
  t = H5Iget_type(obj);
  if (t != want) {
    clara_status status =
        file_fail(CLARA_ERR_FORMAT, fn, path, "%s: expected %s, found %s", name,
                  expected, clara_h5_kind_name(t));
    h5_close(H5Oclose, &obj, &status, fn, path);
    return status;
  }
  *out = obj;
  return CLARA_OK;
}

/* Checks that 'dset' holds floating-point data of rank 'rank' (1..4) whose
 * dimensions are each in 1..INT_MAX and whose float32 copy fits in memory.
 * 'shape' describes the expected shape, e.g. "[views][rows][cols]". */
clara_status clara_h5_check_float_dataset(const char *fn, const char *path,
                                        const char *name, hid_t dset, int rank,
                                        const char *shape, int *dims_out,
                                        size_t *count_out) {
  clara_status status = CLARA_OK;
  hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID;
  hsize_t dims[4];
  H5T_class_t cls;
  H5S_class_t scls;
  char detail[256];
  size_t count = 1;
  int nd;

  type = H5Dget_type(dset);
  if (type < 0) {
    status = file_fail(CLARA_ERR_IO, fn, path, "%s: cannot get its datatype%s",
                       name, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  cls = H5Tget_class(type);
  if (cls == H5T_NO_CLASS) {
    status =
        file_fail(CLARA_ERR_IO, fn, path, "%s: cannot get its type class%s",
                  name, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  if (cls != H5T_FLOAT) {
    status = file_fail(CLARA_ERR_FORMAT, fn, path,
                       "%s: float data expected (float32 %s), found type "
                       "class %s",
                       name, shape, clara_h5_class_name(cls));
    goto done;
  }
  space = H5Dget_space(dset);
  if (space < 0) {
    status = file_fail(CLARA_ERR_IO, fn, path, "%s: cannot get its dataspace%s",
                       name, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  scls = H5Sget_simple_extent_type(space);
  if (scls == H5S_NO_CLASS) {
    status = file_fail(CLARA_ERR_IO, fn, path, "%s: cannot get its extent%s",
                       name, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  if (scls == H5S_NULL) {
    status = file_fail(CLARA_ERR_FORMAT, fn, path,
                       "%s: rank %d expected %s, found an empty (null) "
                       "dataspace",
                       name, rank, shape);
    goto done;
  }
  nd = H5Sget_simple_extent_ndims(space);
  if (nd < 0) {
    status = file_fail(CLARA_ERR_IO, fn, path, "%s: cannot get its rank%s",
                       name, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  if (nd != rank) {
    status = file_fail(CLARA_ERR_FORMAT, fn, path,
                       "%s: rank %d expected %s, found rank %d", name, rank,
                       shape, nd);
    goto done;
  }
  if (H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
    status = file_fail(CLARA_ERR_IO, fn, path, "%s: cannot get its shape%s",
                       name, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  for (int i = 0; i < rank; i++) {
    if (dims[i] == 0 || dims[i] > (hsize_t)INT_MAX) {
      status = file_fail(CLARA_ERR_FORMAT, fn, path,
                         "%s: dimension %d of %s must be in 1..%d, found %llu",
                         name, i, shape, INT_MAX, (unsigned long long)dims[i]);
      goto done;
    }
    dims_out[i] = (int)dims[i];
    if (clara_size_mul(count, (size_t)dims[i], &count) != 0 ||
        count > SIZE_MAX / sizeof(float)) {
      status =
          file_fail(CLARA_ERR_OUT_OF_MEMORY, fn, path,
                    "%s: its %s elements do not fit in memory", name, shape);
      goto done;
    }
  }
  *count_out = count;
done:
  h5_close(H5Sclose, &space, &status, fn, path);
  h5_close(H5Tclose, &type, &status, fn, path);
  return status;
}

/* Reads the whole of 'dset' as float32 (HDF5 converts other float types)
 * into a buffer for clara_free. */
clara_status clara_h5_read_floats(const char *fn, const char *path,
                                    const char *name, hid_t dset, size_t count,
                                    float **out) {
  char detail[256];
  float *buf = clara_aligned_alloc(count * sizeof(float));
  if (!buf)
    return file_fail(CLARA_ERR_OUT_OF_MEMORY, fn, path,
                     "%s: cannot allocate %zu bytes", name,
                     count * sizeof(float));
  if (H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
    clara_aligned_free(buf);
    return file_fail(CLARA_ERR_IO, fn, path, "%s: reading %zu values failed%s",
                     name, count, clara_h5_detail(detail, sizeof detail));
  }
  *out = buf;
  return CLARA_OK;
}

/* Opens attribute 'attr' of 'obj' (named 'objname' in messages). Absent:
 * CLARA_ERR_FORMAT naming 'expected' when 'required', else CLARA_OK with
 * *out left invalid. */
clara_status clara_h5_open_attr(const char *fn, const char *path, hid_t obj,
                              const char *objname, const char *attr,
                              int required, const char *expected, hid_t *out) {
  char detail[256];
  htri_t e = H5Aexists(obj, attr);
  *out = H5I_INVALID_HID;
  if (e < 0)
    return file_fail(CLARA_ERR_IO, fn, path,
                     "%s: cannot look up attribute %s%s", objname, attr,
                     clara_h5_detail(detail, sizeof detail));
  if (e == 0)
    return required ? file_fail(CLARA_ERR_FORMAT, fn, path,
                                "%s: attribute %s missing (expected %s)",
                                objname, attr, expected)
                    : CLARA_OK;
  *out = H5Aopen(obj, attr, H5P_DEFAULT);
  if (*out < 0)
    return file_fail(CLARA_ERR_IO, fn, path, "%s: cannot open attribute %s%s",
                     objname, attr, clara_h5_detail(detail, sizeof detail));
  return CLARA_OK;
}

/* Checks an open attribute's type class and that it holds exactly 'n'
 * elements (scalar or rank 1). */
clara_status clara_h5_check_attr(const char *fn, const char *path, hid_t attr,
                               const char *objname, const char *name,
                               H5T_class_t want, int n, const char *expected,
                               hid_t *type_out) {
  clara_status status = CLARA_OK;
  hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID;
  H5T_class_t cls;
  hssize_t npoints;
  char detail[256];
  int nd;

  type = H5Aget_type(attr);
  if (type < 0) {
    status = file_fail(CLARA_ERR_IO, fn, path,
                       "%s: attribute %s: cannot get its datatype%s", objname,
                       name, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  cls = H5Tget_class(type);
  if (cls == H5T_NO_CLASS) {
    status = file_fail(CLARA_ERR_IO, fn, path,
                       "%s: attribute %s: cannot get its type class%s", objname,
                       name, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  if (cls != want) {
    status = file_fail(CLARA_ERR_FORMAT, fn, path,
                       "%s: attribute %s: %s expected (%s), found type class "
                       "%s%s",
                       objname, name, clara_h5_class_name(want), expected,
                       clara_h5_class_name(cls),
                       want == H5T_FLOAT && cls == H5T_INTEGER
                           ? " (store it as a float: 500.0, not 500)"
                           : "");
    goto done;
  }
  space = H5Aget_space(attr);
  if (space < 0) {
    status = file_fail(CLARA_ERR_IO, fn, path,
                       "%s: attribute %s: cannot get its dataspace%s", objname,
                       name, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  nd = H5Sget_simple_extent_ndims(space);
  npoints = H5Sget_simple_extent_npoints(space);
  if (nd < 0 || npoints < 0) {
    status = file_fail(CLARA_ERR_IO, fn, path,
                       "%s: attribute %s: cannot get its shape%s", objname,
                       name, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  if (nd > 1) {
    status = file_fail(CLARA_ERR_FORMAT, fn, path,
                       "%s: attribute %s: a scalar or rank-1 attribute "
                       "expected (%s), found rank %d",
                       objname, name, expected, nd);
    goto done;
  }
  if (npoints != (hssize_t)n) {
    status = file_fail(CLARA_ERR_FORMAT, fn, path,
                       "%s: attribute %s: %d value%s expected (%s), found %lld",
                       objname, name, n, n == 1 ? "" : "s", expected,
                       (long long)npoints);
    goto done;
  }
  *type_out = type;
  type = H5I_INVALID_HID;
done:
  h5_close(H5Sclose, &space, &status, fn, path);
  h5_close(H5Tclose, &type, &status, fn, path);
  return status;
}

/* Reads float attribute 'name' of 'obj' holding exactly n (1..3) values as
 * doubles. *present says whether it was there (absent is an error only when
 * 'required'); 'out' is written only when present. */
clara_status clara_h5_read_double_attr(const char *fn, const char *path,
                                     hid_t obj, const char *objname,
                                     const char *name, int n,
                                     const char *expected, int required,
                                     double *out, int *present) {
  clara_status status;
  hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID;
  double values[3];
  char detail[256];

  *present = 0;
  status = clara_h5_open_attr(fn, path, obj, objname, name, required, expected, &attr);
  if (status != CLARA_OK || attr < 0)
    goto done;
  status =
      clara_h5_check_attr(fn, path, attr, objname, name, H5T_FLOAT, n, expected, &type);
  if (status != CLARA_OK)
    goto done;
  if (H5Aread(attr, H5T_NATIVE_DOUBLE, values) < 0) {
    status =
        file_fail(CLARA_ERR_IO, fn, path, "%s: attribute %s: reading failed%s",
                  objname, name, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  memcpy(out, values, (size_t)n * sizeof *out);
  *present = 1;
done:
  h5_close(H5Tclose, &type, &status, fn, path);
  h5_close(H5Aclose, &attr, &status, fn, path);
  return status;
}

/* Reads string attribute 'name' (variable- or fixed-length, one string)
 * into a malloc'ed string (*out; free() it). Absent and not required:
 * CLARA_OK with *out NULL. */
clara_status clara_h5_read_string_attr(const char *fn, const char *path,
                                     hid_t obj, const char *objname,
                                     const char *name, int required,
                                     char **out) {
  clara_status status;
  hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID;
  hid_t mem = H5I_INVALID_HID;
  H5T_cset_t cset;
  char detail[256];
  char *text = NULL;
  htri_t vl;

  *out = NULL;
  status = clara_h5_open_attr(fn, path, obj, objname, name, required, "a string", &attr);
  if (status != CLARA_OK || attr < 0)
    goto done;
  status = clara_h5_check_attr(fn, path, attr, objname, name, H5T_STRING, 1,
                      "one string", &type);
  if (status != CLARA_OK)
    goto done;
  cset = H5Tget_cset(type);
  vl = H5Tis_variable_str(type);
  mem = H5Tcopy(H5T_C_S1);
  /* HDF5 converts no character sets: read in the file's own. */
  if (cset < 0 || vl < 0 || mem < 0 || H5Tset_cset(mem, cset) < 0) {
    status = file_fail(CLARA_ERR_IO, fn, path,
                       "%s: attribute %s: cannot set up the string type%s",
                       objname, name, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  if (vl > 0) {
    char *vs = NULL;
    if (H5Tset_size(mem, H5T_VARIABLE) < 0 || H5Aread(attr, mem, &vs) < 0) {
      status = file_fail(CLARA_ERR_IO, fn, path,
                         "%s: attribute %s: reading failed%s", objname, name,
                         clara_h5_detail(detail, sizeof detail));
      goto done;
    }
    size_t len = vs ? strlen(vs) : 0;
    text = malloc(len + 1);
    if (text) {
      if (len)
        memcpy(text, vs, len);
      text[len] = '\0';
    }
    if (vs && H5free_memory(vs) < 0 && text) {
      status = file_fail(CLARA_ERR_IO, fn, path,
                         "%s: attribute %s: cannot free HDF5's copy%s", objname,
                         name, clara_h5_detail(detail, sizeof detail));
      goto done;
    }
  } else {
    size_t size = H5Tget_size(type);
    if (size == 0) {
      status = file_fail(CLARA_ERR_IO, fn, path,
                         "%s: attribute %s: cannot get the string size%s",
                         objname, name, clara_h5_detail(detail, sizeof detail));
      goto done;
    }
    if (size > MAX_STRING_ATTR) {
      status = file_fail(CLARA_ERR_FORMAT, fn, path,
                         "%s: attribute %s: a string of at most %d bytes "
                         "expected, found %zu",
                         objname, name, MAX_STRING_ATTR, size);
      goto done;
    }
    text = malloc(size + 1);
    if (text) {
      if (H5Tset_size(mem, size + 1) < 0 ||
          H5Tset_strpad(mem, H5T_STR_NULLTERM) < 0 ||
          H5Aread(attr, mem, text) < 0) {
        status = file_fail(CLARA_ERR_IO, fn, path,
                           "%s: attribute %s: reading failed%s", objname, name,
                           clara_h5_detail(detail, sizeof detail));
        goto done;
      }
      text[size] = '\0';
      if (H5Tget_strpad(type) == H5T_STR_SPACEPAD) {
        size_t len = strlen(text);
        while (len > 0 && text[len - 1] == ' ')
          text[--len] = '\0';
      }
    }
  }
  if (!text) {
    status =
        file_fail(CLARA_ERR_OUT_OF_MEMORY, fn, path,
                  "%s: attribute %s: cannot allocate its copy", objname, name);
    goto done;
  }
  *out = text;
  text = NULL;
done:
  free(text);
  h5_close(H5Tclose, &mem, &status, fn, path);
  h5_close(H5Tclose, &type, &status, fn, path);
  h5_close(H5Aclose, &attr, &status, fn, path);
  return status;
}

/* Reads integer attribute 'name' (one value) of 'obj' as a long long. */
clara_status clara_h5_read_int_attr(const char *fn, const char *path, hid_t obj,
                                    const char *objname, const char *name,
                                    const char *expected, int required,
                                    long long *out, int *present) {
  clara_status status;
  hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID;
  long long value;
  char detail[256];

  *present = 0;
  status = clara_h5_open_attr(fn, path, obj, objname, name, required, expected,
                              &attr);
  if (status != CLARA_OK || attr < 0)
    goto done;
  status = clara_h5_check_attr(fn, path, attr, objname, name, H5T_INTEGER, 1,
                               expected, &type);
  if (status != CLARA_OK)
    goto done;
  if (H5Aread(attr, H5T_NATIVE_LLONG, &value) < 0) {
    status =
        file_fail(CLARA_ERR_IO, fn, path, "%s: attribute %s: reading failed%s",
                  objname, name, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  *out = value;
  *present = 1;
done:
  h5_close(H5Tclose, &type, &status, fn, path);
  h5_close(H5Aclose, &attr, &status, fn, path);
  return status;
}
