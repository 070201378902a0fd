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

#endif
