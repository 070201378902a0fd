/* mr_write.c -- writing Cartesian k-space as an ISMRMRD file.
 *
 * The file has the layout that the ISMRMRD library (1.x) writes and reads:
 * /dataset/xml, a [1] variable-length string holding the XML header, and
 * /dataset/data, a rank-1 compound of ISMRMRD's full AcquisitionHeader
 * ("head", every member with ISMRMRD's name and width), "traj" (variable
 * length float, empty here) and "data" (variable-length float, the
 * readout as [channel][sample] complex interleaved). docs/MR_FORMATS.md
 * describes what is written.
 *
 * Rules kept throughout (the same as src/io/ct_file.c):
 * - Every HDF5 call runs under the library's one HDF5 lock (h5util.h).
 *   clara_mr_file_write_ismrmrd validates its arguments, builds everything
 *   that needs no HDF5, locks, calls a *_locked worker with a single exit and
 *   unlocks.
 * - Every hid_t and herr_t is checked; the worker closes what it opened in
 *   reverse order at its `done:` label.
 * - The file is written to a fresh temporary file beside the target and
 *   renamed over it only once complete, flushed and closed.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* fsync, clock_gettime */
#endif

#include "h5util.h"
#include "internal.h"

#include <hdf5.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

static const char fn[] = "clara_mr_file_write_ismrmrd";

/* Messages read "clara_mr_file_write_ismrmrd: path: ..."; the helpers are
 * h5util's. */
#define file_fail(status, path, ...)                                           \
  clara_h5_file_fail((status), fn, (path), __VA_ARGS__)
#define h5_close(closer, id, status, path)                                     \
  clara_h5_close((closer), (id), (status), fn, (path))

/* ISMRMRD's limits: 16 x 64 channel mask bits; uint16 counters. */
#define MAX_CHANNELS 1024
#define MAX_U16 65535

/* ISMRMRD flag N (1-based) is bit N-1. */
#define ACQ_FLAG(n) ((uint64_t)1 << ((n)-1))
enum {
  FIRST_IN_ENCODE_STEP1 = 1,
  LAST_IN_ENCODE_STEP1 = 2,
  FIRST_IN_ENCODE_STEP2 = 3,
  LAST_IN_ENCODE_STEP2 = 4,
  FIRST_IN_SLICE = 7,
  LAST_IN_SLICE = 8,
  IS_NOISE_MEASUREMENT = 19,
  LAST_IN_MEASUREMENT = 25
};

/* ISMRMRD's EncodingCounters and AcquisitionHeader, member for member. */
typedef struct w_idx {
  uint16_t kspace_encode_step_1, kspace_encode_step_2, average, slice, contrast,
      phase, repetition, set, segment;
  uint16_t user[8];
} w_idx;

typedef struct w_head {
  uint16_t version;
  uint64_t flags;
  uint32_t measurement_uid, scan_counter, acquisition_time_stamp;
  uint32_t physiology_time_stamp[3];
  uint16_t number_of_samples, available_channels, active_channels;
  uint64_t channel_mask[16];
  uint16_t discard_pre, discard_post, center_sample, encoding_space_ref,
      trajectory_dimensions;
  float sample_time_us;
  float position[3], read_dir[3], phase_dir[3], slice_dir[3],
      patient_table_position[3];
  w_idx idx;
  int32_t user_int[8];
  float user_float[8];
} w_head;

typedef struct w_acq {
  w_head head;
  hvl_t traj;
  hvl_t data;
} w_acq;

/* ------------------------------------------------------------------------ */
/* HDF5 helpers (the same rules as ct_file.c)                                */
/* ------------------------------------------------------------------------ */

/* ISMRMRD's acquisition type, built from the native structs above (as the
 * ISMRMRD library builds it). */
static clara_status make_acq_type(const char *path, hid_t *out) {
  clara_status status = CLARA_OK;
  hid_t idx = H5I_INVALID_HID, head = H5I_INVALID_HID;
  hid_t vl = H5I_INVALID_HID, rec = H5I_INVALID_HID;
  hid_t a_u16_8 = H5I_INVALID_HID, a_u32_3 = H5I_INVALID_HID;
  hid_t a_u64_16 = H5I_INVALID_HID, a_f32_3 = H5I_INVALID_HID;
  hid_t a_i32_8 = H5I_INVALID_HID, a_f32_8 = H5I_INVALID_HID;
  hsize_t d3 = 3, d8 = 8, d16 = 16;
  char detail[256];
  int bad = 0;

  idx = H5Tcreate(H5T_COMPOUND, sizeof(w_idx));
  head = H5Tcreate(H5T_COMPOUND, sizeof(w_head));
  rec = H5Tcreate(H5T_COMPOUND, sizeof(w_acq));
  vl = H5Tvlen_create(H5T_NATIVE_FLOAT);
  a_u16_8 = H5Tarray_create2(H5T_NATIVE_UINT16, 1, &d8);
  a_u32_3 = H5Tarray_create2(H5T_NATIVE_UINT32, 1, &d3);
  a_u64_16 = H5Tarray_create2(H5T_NATIVE_UINT64, 1, &d16);
  a_f32_3 = H5Tarray_create2(H5T_NATIVE_FLOAT, 1, &d3);
  a_i32_8 = H5Tarray_create2(H5T_NATIVE_INT32, 1, &d8);
  a_f32_8 = H5Tarray_create2(H5T_NATIVE_FLOAT, 1, &d8);
  if (idx < 0 || head < 0 || rec < 0 || vl < 0 || a_u16_8 < 0 || a_u32_3 < 0 ||
      a_u64_16 < 0 || a_f32_3 < 0 || a_i32_8 < 0 || a_f32_8 < 0) {
    status = file_fail(CLARA_ERR_IO, path,
                       "cannot create the acquisition datatype%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
#define INS(t, s, m, ty) bad |= H5Tinsert(t, #m, HOFFSET(s, m), ty) < 0
  INS(idx, w_idx, kspace_encode_step_1, H5T_NATIVE_UINT16);
  INS(idx, w_idx, kspace_encode_step_2, H5T_NATIVE_UINT16);
  INS(idx, w_idx, average, H5T_NATIVE_UINT16);
  INS(idx, w_idx, slice, H5T_NATIVE_UINT16);
  INS(idx, w_idx, contrast, H5T_NATIVE_UINT16);
  INS(idx, w_idx, phase, H5T_NATIVE_UINT16);
  INS(idx, w_idx, repetition, H5T_NATIVE_UINT16);
  INS(idx, w_idx, set, H5T_NATIVE_UINT16);
  INS(idx, w_idx, segment, H5T_NATIVE_UINT16);
  INS(idx, w_idx, user, a_u16_8);
  INS(head, w_head, version, H5T_NATIVE_UINT16);
  INS(head, w_head, flags, H5T_NATIVE_UINT64);
  INS(head, w_head, measurement_uid, H5T_NATIVE_UINT32);
  INS(head, w_head, scan_counter, H5T_NATIVE_UINT32);
  INS(head, w_head, acquisition_time_stamp, H5T_NATIVE_UINT32);
  INS(head, w_head, physiology_time_stamp, a_u32_3);
  INS(head, w_head, number_of_samples, H5T_NATIVE_UINT16);
  INS(head, w_head, available_channels, H5T_NATIVE_UINT16);
  INS(head, w_head, active_channels, H5T_NATIVE_UINT16);
  INS(head, w_head, channel_mask, a_u64_16);
  INS(head, w_head, discard_pre, H5T_NATIVE_UINT16);
  INS(head, w_head, discard_post, H5T_NATIVE_UINT16);
  INS(head, w_head, center_sample, H5T_NATIVE_UINT16);
  INS(head, w_head, encoding_space_ref, H5T_NATIVE_UINT16);
  INS(head, w_head, trajectory_dimensions, H5T_NATIVE_UINT16);
  INS(head, w_head, sample_time_us, H5T_NATIVE_FLOAT);
  INS(head, w_head, position, a_f32_3);
  INS(head, w_head, read_dir, a_f32_3);
  INS(head, w_head, phase_dir, a_f32_3);
  INS(head, w_head, slice_dir, a_f32_3);
  INS(head, w_head, patient_table_position, a_f32_3);
  INS(head, w_head, idx, idx);
  INS(head, w_head, user_int, a_i32_8);
  INS(head, w_head, user_float, a_f32_8);
  INS(rec, w_acq, head, head);
  INS(rec, w_acq, traj, vl);
  INS(rec, w_acq, data, vl);
#undef INS
  if (bad) {
    status =
        file_fail(CLARA_ERR_IO, path, "cannot build the acquisition datatype%s",
                  clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  *out = rec;
  rec = H5I_INVALID_HID;
done:
  h5_close(H5Tclose, &a_f32_8, &status, path);
  h5_close(H5Tclose, &a_i32_8, &status, path);
  h5_close(H5Tclose, &a_f32_3, &status, path);
  h5_close(H5Tclose, &a_u64_16, &status, path);
  h5_close(H5Tclose, &a_u32_3, &status, path);
  h5_close(H5Tclose, &a_u16_8, &status, path);
  h5_close(H5Tclose, &vl, &status, path);
  h5_close(H5Tclose, &rec, &status, path);
  h5_close(H5Tclose, &head, &status, path);
  h5_close(H5Tclose, &idx, &status, path);
  return status;
}

/* Writes /dataset/xml (a [1] variable-length string) into group 'grp'. */
static clara_status write_xml(const char *path, hid_t grp, const char *xml) {
  clara_status status = CLARA_OK;
  hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID;
  hid_t dset = H5I_INVALID_HID;
  hsize_t one = 1;
  char detail[256];

  type = H5Tcopy(H5T_C_S1);
  if (type < 0 || H5Tset_size(type, H5T_VARIABLE) < 0 ||
      H5Tset_cset(type, H5T_CSET_ASCII) < 0) {
    status = file_fail(CLARA_ERR_IO, path,
                       "/dataset/xml: cannot make its string type%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  space = H5Screate_simple(1, &one, NULL);
  if (space < 0) {
    status = file_fail(CLARA_ERR_IO, path,
                       "/dataset/xml: cannot create its dataspace%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  dset = H5Dcreate2(grp, "xml", type, space, H5P_DEFAULT, H5P_DEFAULT,
                    H5P_DEFAULT);
  if (dset < 0) {
    status = file_fail(CLARA_ERR_IO, path, "/dataset/xml: cannot create it%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  if (H5Dwrite(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, &xml) < 0)
    status = file_fail(CLARA_ERR_IO, path, "/dataset/xml: writing failed%s",
                       clara_h5_detail(detail, sizeof detail));
done:
  h5_close(H5Dclose, &dset, &status, path);
  h5_close(H5Sclose, &space, &status, path);
  h5_close(H5Tclose, &type, &status, path);
  return status;
}

static clara_status write_locked(const char *path, const char *xml,
                                 const w_acq *acq, size_t count) {
  clara_status status;
  hid_t fapl = H5I_INVALID_HID, fid = H5I_INVALID_HID;
  hid_t grp = H5I_INVALID_HID, type = H5I_INVALID_HID;
  hid_t space = H5I_INVALID_HID, dset = H5I_INVALID_HID;
  hsize_t dim = (hsize_t)count;
  char *tmp = NULL;
  char detail[256];

  {
    size_t bytes = strlen(xml);
    for (size_t i = 0; i < count; ++i)
      bytes += sizeof acq[i].head +
               (acq[i].traj.len + acq[i].data.len) * sizeof(float) + 32;
    status = clara_h5_temp_create(fn, path, clara_h5_file_bytes(bytes),
                                  &tmp);
  }
  if (status != CLARA_OK)
    goto done;
  fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
    status = file_fail(CLARA_ERR_IO, path,
                       "cannot set up a file access property list%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  fid = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  if (fid < 0) {
    status = file_fail(CLARA_ERR_IO, path, "cannot create HDF5 file %s%s", tmp,
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  grp = H5Gcreate2(fid, "/dataset", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (grp < 0) {
    status = file_fail(CLARA_ERR_IO, path, "/dataset: cannot create it%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  status = write_xml(path, grp, xml);
  if (status != CLARA_OK)
    goto done;
  status = make_acq_type(path, &type);
  if (status != CLARA_OK)
    goto done;
  space = H5Screate_simple(1, &dim, NULL);
  if (space < 0) {
    status = file_fail(CLARA_ERR_IO, path,
                       "/dataset/data: cannot create its dataspace%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  dset = H5Dcreate2(grp, "data", type, space, H5P_DEFAULT, H5P_DEFAULT,
                    H5P_DEFAULT);
  if (dset < 0) {
    status = file_fail(CLARA_ERR_IO, path, "/dataset/data: cannot create it%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  if (H5Dwrite(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, acq) < 0) {
    status = file_fail(CLARA_ERR_IO, path,
                       "/dataset/data: writing %zu acquisitions failed%s",
                       count, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  /* close before renaming: H5Fclose is what completes the file */
  h5_close(H5Dclose, &dset, &status, path);
  h5_close(H5Sclose, &space, &status, path);
  h5_close(H5Tclose, &type, &status, path);
  h5_close(H5Gclose, &grp, &status, path);
  h5_close(H5Fclose, &fid, &status, path);
  if (status == CLARA_OK)
    status = clara_h5_temp_commit(fn, path, tmp);
done:
  h5_close(H5Dclose, &dset, &status, path);
  h5_close(H5Sclose, &space, &status, path);
  h5_close(H5Tclose, &type, &status, path);
  h5_close(H5Gclose, &grp, &status, path);
  h5_close(H5Fclose, &fid, &status, path);
  h5_close(H5Pclose, &fapl, &status, path);
  if (tmp && status != CLARA_OK)
    (void)unlink(tmp);
  free(tmp);
  return status;
}

/* ------------------------------------------------------------------------ */
/* The XML header and the acquisitions                                       */
/* ------------------------------------------------------------------------ */

/* The ISMRMRD XML header (1 mm per encoded sample). NULL when out of
 * memory. */
static char *make_xml(const clara_mr_geometry *g) {
  const int rnx = g->recon_nx > 0 ? g->recon_nx : g->nx;
  const size_t cap = 4096;
  char *xml = malloc(cap);
  int len;
  if (!xml)
    return NULL;
  len = snprintf(
      xml, cap,
      "<?xml version=\"1.0\"?>\n"
      "<ismrmrdHeader xmlns=\"http://www.ismrm.org/ISMRMRD\" "
      "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" "
      "xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" "
      "xsi:schemaLocation=\"http://www.ismrm.org/ISMRMRD ismrmrd.xsd\">\n"
      "  <version>1</version>\n"
      "  <acquisitionSystemInformation>\n"
      "    <systemVendor>libclara-recon</systemVendor>\n"
      "    <receiverChannels>%d</receiverChannels>\n"
      "  </acquisitionSystemInformation>\n"
      "  <experimentalConditions>\n"
      "    <H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz>\n"
      "  </experimentalConditions>\n"
      "  <encoding>\n"
      "    <encodedSpace>\n"
      "      <matrixSize><x>%d</x><y>%d</y><z>%d</z></matrixSize>\n"
      "      <fieldOfView_mm><x>%d</x><y>%d</y><z>%d</z></fieldOfView_mm>\n"
      "    </encodedSpace>\n"
      "    <reconSpace>\n"
      "      <matrixSize><x>%d</x><y>%d</y><z>%d</z></matrixSize>\n"
      "      <fieldOfView_mm><x>%d</x><y>%d</y><z>%d</z></fieldOfView_mm>\n"
      "    </reconSpace>\n"
      "    <encodingLimits>\n"
      "      <kspace_encoding_step_1><minimum>%d</minimum><maximum>%d"
      "</maximum><center>%d</center></kspace_encoding_step_1>\n"
      "      <kspace_encoding_step_2><minimum>0</minimum><maximum>%d"
      "</maximum><center>%d</center></kspace_encoding_step_2>\n"
      "      <slice><minimum>0</minimum><maximum>%d</maximum><center>0"
      "</center></slice>\n"
      "      <contrast><minimum>0</minimum><maximum>0</maximum><center>0"
      "</center></contrast>\n"
      "      <repetition><minimum>0</minimum><maximum>0</maximum><center>0"
      "</center></repetition>\n"
      "      <set><minimum>0</minimum><maximum>0</maximum><center>0</center>"
      "</set>\n"
      "    </encodingLimits>\n"
      "    <trajectory>cartesian</trajectory>\n"
      "  </encoding>\n"
      "</ismrmrdHeader>\n",
      g->coils, g->nx, g->ny, g->nz, g->nx, g->ny, g->nz, rnx, g->ny, g->nz,
      rnx, g->ny, g->nz, g->ky_first, g->ky_last, g->ny / 2, g->nz - 1,
      g->nz / 2, g->slices - 1);
  if (len < 0 || (size_t)len >= cap) {
    free(xml);
    return NULL;
  }
  return xml;
}

static void head_init(w_head *h, int coils, uint32_t counter) {
  memset(h, 0, sizeof *h);
  h->version = 1;
  h->measurement_uid = 1;
  h->scan_counter = counter;
  h->available_channels = (uint16_t)coils;
  h->active_channels = (uint16_t)coils;
  for (int c = 0; c < coils; c++)
    h->channel_mask[c / 64] |= (uint64_t)1 << (c % 64);
  h->sample_time_us = 5.0f;
  h->read_dir[0] = 1.0f;
  h->phase_dir[1] = 1.0f;
  h->slice_dir[2] = 1.0f;
}

static clara_status check_args(const char *path, const clara_mr_geometry *g,
                               const float *kspace, const float *noise,
                               int noise_samples) {
  if (!path || !g || !kspace)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                      !path ? "path"
                      : !g  ? "geom"
                            : "kspace");
  if (!path[0])
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: path is empty", fn);
  if (g->coils < 1 || g->coils > MAX_CHANNELS)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: geom->coils: must be in [1, %d] (ISMRMRD's channel "
                      "mask), got %d",
                      fn, MAX_CHANNELS, g->coils);
  if (g->nx < 1 || g->nx > MAX_U16 || g->ny < 1 || g->ny > MAX_U16 + 1 ||
      g->nz < 1 || g->nz > MAX_U16 + 1)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: geom: sizes must be >= 1 and fit ISMRMRD's 16-bit "
                      "counters (nx <= %d, ny and nz <= %d), got nx=%d ny=%d "
                      "nz=%d",
                      fn, MAX_U16, MAX_U16 + 1, g->nx, g->ny, g->nz);
  if (g->slices < 1 || g->slices > MAX_U16 + 1)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: geom->slices: must be in [1, %d], got %d", fn,
                      MAX_U16 + 1, g->slices);
  if (g->recon_nx < 0 || g->recon_nx > g->nx)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: geom->recon_nx: must be in [0, nx] = [0, %d], got "
                      "%d",
                      fn, g->nx, g->recon_nx);
  if (g->ky_first < 0 || g->ky_last < g->ky_first || g->ky_last >= g->ny)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: geom: [ky_first, ky_last] = [%d, %d] must lie in "
                      "[0, ny-1] = [0, %d] with ky_first <= ky_last",
                      fn, g->ky_first, g->ky_last, g->ny - 1);
  if (g->kx_first < 0 || g->kx_last < g->kx_first || g->kx_last >= g->nx)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: geom: [kx_first, kx_last] = [%d, %d] must lie in "
                      "[0, nx-1] = [0, %d] with kx_first <= kx_last",
                      fn, g->kx_first, g->kx_last, g->nx - 1);
  /* ISMRMRD places a readout by center_sample, which cannot say "the
   * first sample is DC" for a readout shorter than nx */
  if (g->kx_first == g->nx / 2 && g->kx_last - g->kx_first + 1 != g->nx)
    return clara_fail(CLARA_ERR_UNSUPPORTED,
                      "%s: geom: a readout starting at the k-space centre "
                      "(kx_first = nx/2 = %d) cannot be described by ISMRMRD's "
                      "center_sample",
                      fn, g->kx_first);
  if (g->kx_first > g->nx / 2)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: geom->kx_first: %d is past the k-space centre nx/2 "
                      "= %d (ISMRMRD's center_sample cannot be negative)",
                      fn, g->kx_first, g->nx / 2);
  if (noise_samples < 0)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: noise_samples: must be >= 0, got %d", fn,
                      noise_samples);
  if (noise && noise_samples == 0)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: noise is given but noise_samples is 0", fn);
  if (!noise && noise_samples > 0)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: noise is NULL but noise_samples is %d", fn,
                      noise_samples);
  return CLARA_OK;
}

CLARA_API clara_status clara_mr_file_write_ismrmrd(
    const char *path, const clara_mr_geometry *geom, const float *kspace,
    const float *noise, int noise_samples) {
  clara_status status;
  const clara_mr_geometry *g = geom;
  char *xml = NULL;
  w_acq *acq = NULL;
  float *buf = NULL;
  size_t lines, nns, count, ns, floats, noise_floats, pos = 0, a = 0;
  int noise_chunk;

  status = check_args(path, geom, kspace, noise, noise_samples);
  if (status != CLARA_OK)
    return status;
  ns = (size_t)(g->kx_last - g->kx_first + 1);
  noise_chunk = g->nx; /* noise readouts as long as an image readout */
  nns = noise ? ((size_t)noise_samples + (size_t)noise_chunk - 1) /
                    (size_t)noise_chunk
              : 0;
  if (clara_size_mul3((size_t)g->slices, (size_t)g->nz,
                      (size_t)(g->ky_last - g->ky_first + 1), &lines) != 0 ||
      clara_size_add(lines, nns, &count) != 0 ||
      clara_size_mul3(lines, ns, (size_t)g->coils * 2, &floats) != 0 ||
      clara_size_mul((size_t)noise_samples, (size_t)g->coils * 2,
                     &noise_floats) != 0 ||
      clara_size_add(floats, noise_floats, &floats) != 0)
    return clara_fail(CLARA_ERR_OUT_OF_MEMORY,
                      "%s: %s: the acquisitions overflow the address space", fn,
                      path);
  xml = make_xml(g);
  acq = clara_xcalloc(count, sizeof *acq, "the acquisition headers");
  buf =
      acq ? clara_xcalloc(floats, sizeof(float), "the acquisition data") : NULL;
  if (!xml) {
    status = clara_fail(CLARA_ERR_OUT_OF_MEMORY,
                        "%s: %s: cannot allocate the XML header", fn, path);
    goto done;
  }
  if (!acq || !buf) {
    status = clara_fail_context(CLARA_ERR_OUT_OF_MEMORY, fn);
    goto done;
  }

  /* noise scans first, [coil][sample] in chunks of nx samples */
  for (size_t k = 0; k < nns; k++) {
    w_acq *q = &acq[a];
    size_t s0 = k * (size_t)noise_chunk;
    size_t n = (size_t)noise_samples - s0;
    if (n > (size_t)noise_chunk)
      n = (size_t)noise_chunk;
    head_init(&q->head, g->coils, (uint32_t)(a + 1));
    q->head.flags = ACQ_FLAG(IS_NOISE_MEASUREMENT);
    q->head.number_of_samples = (uint16_t)n;
    for (int c = 0; c < g->coils; c++)
      memcpy(buf + pos + (size_t)c * n * 2,
             noise + ((size_t)c * (size_t)noise_samples + s0) * 2,
             n * 2 * sizeof(float));
    q->data.p = buf + pos;
    q->data.len = n * (size_t)g->coils * 2;
    pos += q->data.len;
    a++;
  }

  /* image scans: every sampled (slice, kz, ky) line, all coils */
  for (int s = 0; s < g->slices; s++)
    for (int z = 0; z < g->nz; z++)
      for (int y = g->ky_first; y <= g->ky_last; y++) {
        w_acq *q = &acq[a];
        uint64_t flags = 0;
        head_init(&q->head, g->coils, (uint32_t)(a + 1));
        if (y == g->ky_first)
          flags |= ACQ_FLAG(FIRST_IN_ENCODE_STEP1);
        if (y == g->ky_last)
          flags |= ACQ_FLAG(LAST_IN_ENCODE_STEP1);
        if (z == 0)
          flags |= ACQ_FLAG(FIRST_IN_ENCODE_STEP2);
        if (z == g->nz - 1)
          flags |= ACQ_FLAG(LAST_IN_ENCODE_STEP2);
        if (z == 0 && y == g->ky_first)
          flags |= ACQ_FLAG(FIRST_IN_SLICE);
        if (z == g->nz - 1 && y == g->ky_last)
          flags |= ACQ_FLAG(LAST_IN_SLICE);
        if (a + 1 == count)
          flags |= ACQ_FLAG(LAST_IN_MEASUREMENT);
        q->head.flags = flags;
        q->head.number_of_samples = (uint16_t)ns;
        q->head.center_sample = (uint16_t)(g->nx / 2 - g->kx_first);
        q->head.idx.kspace_encode_step_1 = (uint16_t)y;
        q->head.idx.kspace_encode_step_2 = (uint16_t)z;
        q->head.idx.slice = (uint16_t)s;
        q->head.position[2] = (float)s;
        for (int c = 0; c < g->coils; c++) {
          size_t line =
              ((((size_t)s * (size_t)g->coils + (size_t)c) * (size_t)g->nz +
                (size_t)z) *
                   (size_t)g->ny +
               (size_t)y) *
                  (size_t)g->nx +
              (size_t)g->kx_first;
          memcpy(buf + pos + (size_t)c * ns * 2, kspace + line * 2,
                 ns * 2 * sizeof(float));
        }
        q->data.p = buf + pos;
        q->data.len = ns * (size_t)g->coils * 2;
        pos += q->data.len;
        a++;
      }

  clara_h5_lock();
  status = write_locked(path, xml, acq, count);
  clara_h5_unlock();
done:
  free(xml);
  clara_aligned_free(buf);
  clara_aligned_free(acq);
  return status;
}
