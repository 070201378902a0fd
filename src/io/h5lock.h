/* h5lock.h -- the one process-wide lock that every HDF5 call in the library
 * runs under (not installed).
 *
 * An HDF5 built without thread safety must never be entered from two
 * threads at once, so every file reader and writer of the library brackets
 * its HDF5 work with clara_h5_lock() / clara_h5_unlock(). clara_h5_lock()
 * also switches HDF5's automatic error printing off: once for the process
 * and, for a thread-safe HDF5 (which keeps that setting per thread), again
 * for the calling thread on every lock. The lock is not recursive. */
#ifndef CLARA_H5LOCK_H
#define CLARA_H5LOCK_H

void clara_h5_lock(void);
void clara_h5_unlock(void);

#endif
