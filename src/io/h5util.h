/* h5util.h -- what every HDF5 reader and writer of the library shares (not
 * installed): the one process-wide lock and the error helpers.
 *
 * An HDF5 built without thread safety must never be entered from two
 * threads at once, so every file reader and writer brackets its HDF5 work
 * with clara_h5_lock() / clara_h5_unlock(). clara_h5_lock() also switches
 * HDF5's automatic error printing off: once for the process and, for a
 * thread-safe HDF5 (which keeps that setting per thread), again for the
 * calling thread on every lock. The lock is not recursive. */
#ifndef CLARA_H5UTIL_H
#define CLARA_H5UTIL_H

#include "internal.h"

#include <hdf5.h>

void clara_h5_lock(void);
void clara_h5_unlock(void);

/* The innermost message of HDF5's error stack as " (HDF5: ...)", or "",
 * written into text[len]; clears the stack. Call it right after the failing
 * HDF5 call: every API call clears the stack. */
const char *clara_h5_detail(char *text, size_t len);

/* clara_fail with the message "fn: path: <formatted>". */
clara_status clara_h5_file_fail(clara_status status, const char *fn,
                                const char *path, const char *fmt, ...)
    CLARA_PRINTF(4, 5);

/* Closes *id with 'closer' if it is open and marks it closed. A failing
 * close is an IO error ("fn: path: closing an HDF5 object failed") unless
 * an earlier failure is already recorded in *status. */
void clara_h5_close(herr_t (*closer)(hid_t), hid_t *id, clara_status *status,
                    const char *fn, const char *path);

/* "integer", "float", "string", ... for messages. */
const char *clara_h5_class_name(H5T_class_t c);

/* ---- Writing (src/io/h5write.c); callers hold the lock ----------------- */

/* Creates an empty new file "<path>.tmpXXXXXX" beside 'path' (O_EXCL, mode
 * 0666 less the umask) and returns its malloc'ed name, after checking that
 * 'bytes' fit there (disk space, RLIMIT_FSIZE): a full disk is refused with
 * CLARA_ERR_IO before HDF5 writes anything. */
clara_status clara_h5_temp_create(const char *fn, const char *path,
                                  size_t bytes, char **tmp_out);

/* fsyncs the finished temporary file and renames it to 'path'. */
clara_status clara_h5_temp_commit(const char *fn, const char *path,
                                  const char *tmp);

/* The room to ask for a file holding 'data_bytes' of datasets. */
size_t clara_h5_file_bytes(size_t data_bytes);

/* ---- Checked reading (src/io/h5read.c); callers hold the lock ---------- */

/* Longest fixed-length string attribute accepted. */
#define MAX_STRING_ATTR 4096

/* "a group", "a dataset", ... for messages. */
const char *clara_h5_kind_name(H5I_type_t t);

/* Opens 'path' read-only as HDF5. Tells "cannot open" (with errno), "not an
 * HDF5 file" (no signature at 0, 512, 1024, ...) and "damaged or
 * truncated" (signature present, HDF5 refuses it) apart (CLARA_ERR_IO). */
clara_status clara_h5_open_read(const char *fn, const char *path, hid_t *out);

/* Whether object 'name' exists below 'loc', each parent checked first:
 * 1, 0, or -1 on error. */
int clara_h5_exists(hid_t loc, const char *name);

/* Opens object 'name' and insists that it is of kind 'want' (H5I_GROUP,
 * H5I_DATASET); 'expected' describes it for messages. Missing or of another
 * kind: CLARA_ERR_FORMAT. */
clara_status clara_h5_open_object(const char *fn, const char *path, hid_t fid,
                                  const char *name, H5I_type_t want,
                                  const char *expected, hid_t *out);

/* Checks that 'dset' holds float data of rank 'rank' (1..4), each dimension
 * in 1..INT_MAX (into dims_out) and the float32 copy addressable (element
 * count into *count_out). 'shape' describes it, e.g. "[views][cols]". */
clara_status clara_h5_check_float_dataset(const char *fn, const char *path,
                                          const char *name, hid_t dset,
                                          int rank, const char *shape,
                                          int *dims_out, size_t *count_out);

/* Reads all of 'dset' as float32 into a clara_aligned_alloc buffer. */
clara_status clara_h5_read_floats(const char *fn, const char *path,
                                  const char *name, hid_t dset, size_t count,
                                  float **out);

/* Opens attribute 'attr' of 'obj' (objname in messages). Absent: FORMAT
 * naming 'expected' when 'required', else CLARA_OK with *out invalid. */
clara_status clara_h5_open_attr(const char *fn, const char *path, hid_t obj,
                                const char *objname, const char *attr,
                                int required, const char *expected, hid_t *out);

/* Checks an open attribute's class and that it holds exactly n values
 * (scalar or rank 1); returns its type in *type_out for the caller to
 * close. */
clara_status clara_h5_check_attr(const char *fn, const char *path, hid_t attr,
                                 const char *objname, const char *name,
                                 H5T_class_t want, int n, const char *expected,
                                 hid_t *type_out);

/* Float attribute of n (1..3) values as doubles; *present says whether it
 * was there (absent is an error only when 'required'). */
clara_status clara_h5_read_double_attr(const char *fn, const char *path,
                                       hid_t obj, const char *objname,
                                       const char *name, int n,
                                       const char *expected, int required,
                                       double *out, int *present);

/* Integer attribute of one value. */
clara_status clara_h5_read_int_attr(const char *fn, const char *path, hid_t obj,
                                    const char *objname, const char *name,
                                    const char *expected, int required,
                                    long long *out, int *present);

/* One string (variable or fixed length) into a malloc'ed copy (*out; free()
 * it); absent and not required: CLARA_OK with *out NULL. */
clara_status clara_h5_read_string_attr(const char *fn, const char *path,
                                       hid_t obj, const char *objname,
                                       const char *name, int required,
                                       char **out);

#endif
