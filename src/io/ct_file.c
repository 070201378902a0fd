/* ct_file.c -- HDF5 files: CT input (/ct), images (/image) and /truth.
 *
 * The layout is documented in docs/FORMATS.md. This is the only file of the
 * library that includes hdf5.h.
 *
 * Rules kept throughout:
 * - Every HDF5 call runs under the library's one HDF5 lock (h5util.h): an HDF5
 *   built without thread safety must never be entered from two threads.
 *   Each public function validates its arguments, locks, calls a *_locked
 *   worker that has a single exit, and unlocks.
 * - HDF5's automatic error printing is switched off (the library never
 *   prints); the innermost HDF5 message is added to IO errors instead.
 * - Every hid_t and herr_t is checked; each worker closes what it opened in
 *   reverse order at its `done:` label and frees whatever it allocated
 *   unless it was handed to the caller on success.
 * - Writes go to a fresh temporary file beside the target, which is renamed
 *   over the target only once it is complete and closed.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* pread, fsync, clock_gettime */
#endif

#include "h5util.h"

#define file_fail clara_h5_file_fail
#define h5_close clara_h5_close
#include "internal.h"

#include <hdf5.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
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


/* ------------------------------------------------------------------------ */
/* Writing helpers                                                           */
/* ------------------------------------------------------------------------ */

static clara_status create_h5(const char *fn, const char *path, const char *tmp,
                              hid_t *out) {
  clara_status status = CLARA_OK;
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  char detail[256];
  if (fapl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
    status = file_fail(CLARA_ERR_IO, fn, path,
                       "cannot set up a file access property list%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  *out = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  if (*out < 0)
    status = file_fail(CLARA_ERR_IO, fn, path, "cannot create HDF5 file %s%s",
                       tmp, clara_h5_detail(detail, sizeof detail));
done:
  h5_close(H5Pclose, &fapl, &status, fn, path);
  return status;
}

/* Writes float64 attribute 'name' of n values (scalar when n == 1). */
static clara_status write_double_attr(const char *fn, const char *path,
                                      hid_t obj, const char *objname,
                                      const char *name, int n,
                                      const double *values) {
  clara_status status = CLARA_OK;
  hid_t space = H5I_INVALID_HID, attr = H5I_INVALID_HID;
  hsize_t dim = (hsize_t)n;
  char detail[256];

  space = n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, NULL);
  if (space < 0) {
    status = file_fail(CLARA_ERR_IO, fn, path,
                       "%s: attribute %s: cannot create its dataspace%s",
                       objname, name, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  attr = H5Acreate2(obj, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT);
  if (attr < 0) {
    status = file_fail(CLARA_ERR_IO, fn, path,
                       "%s: attribute %s: cannot create it%s", objname, name,
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  if (H5Awrite(attr, H5T_NATIVE_DOUBLE, values) < 0)
    status =
        file_fail(CLARA_ERR_IO, fn, path, "%s: attribute %s: writing failed%s",
                  objname, name, clara_h5_detail(detail, sizeof detail));
done:
  h5_close(H5Aclose, &attr, &status, fn, path);
  h5_close(H5Sclose, &space, &status, fn, path);
  return status;
}

/* Writes a scalar variable-length UTF-8 string attribute (what h5py writes
 * for a Python str, and reads back as one). */
static clara_status write_string_attr(const char *fn, const char *path,
                                      hid_t obj, const char *objname,
                                      const char *name, const char *value) {
  clara_status status = CLARA_OK;
  hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID;
  hid_t attr = H5I_INVALID_HID;
  char detail[256];

  type = H5Tcopy(H5T_C_S1);
  if (type < 0 || H5Tset_size(type, H5T_VARIABLE) < 0 ||
      H5Tset_cset(type, H5T_CSET_UTF8) < 0) {
    status = file_fail(CLARA_ERR_IO, fn, path,
                       "%s: attribute %s: cannot set up the string type%s",
                       objname, name, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  space = H5Screate(H5S_SCALAR);
  if (space < 0) {
    status = file_fail(CLARA_ERR_IO, fn, path,
                       "%s: attribute %s: cannot create its dataspace%s",
                       objname, name, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  if (attr < 0) {
    status = file_fail(CLARA_ERR_IO, fn, path,
                       "%s: attribute %s: cannot create it%s", objname, name,
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  if (H5Awrite(attr, type, &value) < 0)
    status =
        file_fail(CLARA_ERR_IO, fn, path, "%s: attribute %s: writing failed%s",
                  objname, name, clara_h5_detail(detail, sizeof detail));
done:
  h5_close(H5Aclose, &attr, &status, fn, path);
  h5_close(H5Sclose, &space, &status, fn, path);
  h5_close(H5Tclose, &type, &status, fn, path);
  return status;
}

/* Writes a contiguous float32 dataset 'name' (absolute) and hands back the
 * open dataset in *out for its attributes (the caller closes it). */
static clara_status write_float_dataset(const char *fn, const char *path,
                                        hid_t fid, const char *name, int rank,
                                        const hsize_t *dims, const float *data,
                                        hid_t *out) {
  clara_status status = CLARA_OK;
  hid_t space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
  hid_t dset = H5I_INVALID_HID;
  char detail[256];

  space = H5Screate_simple(rank, dims, NULL);
  if (space < 0) {
    status =
        file_fail(CLARA_ERR_IO, fn, path, "%s: cannot create its dataspace%s",
                  name, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  /* Plain contiguous storage; no fill pass, since all of it is written. */
  dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (dcpl < 0 || H5Pset_layout(dcpl, H5D_CONTIGUOUS) < 0 ||
      H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0) {
    status = file_fail(CLARA_ERR_IO, fn, path,
                       "%s: cannot set up its creation property list%s", name,
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  dset = H5Dcreate2(fid, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl,
                    H5P_DEFAULT);
  if (dset < 0) {
    status = file_fail(CLARA_ERR_IO, fn, path, "%s: cannot create it%s", name,
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  if (H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) <
      0) {
    status = file_fail(CLARA_ERR_IO, fn, path, "%s: writing failed%s", name,
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  *out = dset;
  dset = H5I_INVALID_HID;
done:
  h5_close(H5Dclose, &dset, &status, fn, path);
  h5_close(H5Pclose, &dcpl, &status, fn, path);
  h5_close(H5Sclose, &space, &status, fn, path);
  return status;
}

/* Writes an image dataset 'name' ([nz][ny][nx]) with voxel_size and center
 * ([z, y, x], mm) and, if units is not NULL, units. */
static clara_status write_volume(const char *fn, const char *path, hid_t fid,
                                 const char *name, const clara_volume *vol,
                                 const float *data, const char *units) {
  clara_status status;
  hid_t dset = H5I_INVALID_HID;
  hsize_t dims[3];
  double voxel_zyx[3], center_zyx[3];

  dims[0] = (hsize_t)vol->nz;
  dims[1] = (hsize_t)vol->ny;
  dims[2] = (hsize_t)vol->nx;
  for (int i = 0; i < 3; i++) {
    voxel_zyx[i] = vol->voxel[2 - i];
    center_zyx[i] = vol->center[2 - i];
  }
  status = write_float_dataset(fn, path, fid, name, 3, dims, data, &dset);
  if (status == CLARA_OK)
    status =
        write_double_attr(fn, path, dset, name, "voxel_size", 3, voxel_zyx);
  if (status == CLARA_OK)
    status = write_double_attr(fn, path, dset, name, "center", 3, center_zyx);
  if (status == CLARA_OK && units)
    status = write_string_attr(fn, path, dset, name, "units", units);
  h5_close(H5Dclose, &dset, &status, fn, path);
  return status;
}

/* Checks a volume given to a writer: sizes, overflow, voxel and centre. */
static clara_status check_volume_arg(const char *fn, const char *arg,
                                     const clara_volume *vol) {
  static const char axis[3] = {'x', 'y', 'z'};
  const int n[3] = {vol->nx, vol->ny, vol->nz};
  size_t count;
  for (int i = 0; i < 3; i++)
    if (n[i] <= 0)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: %s->n%c: must be > 0, got %d", fn, arg, axis[i],
                        n[i]);
  if (clara_size_mul3((size_t)n[0], (size_t)n[1], (size_t)n[2], &count) != 0 ||
      count > SIZE_MAX / sizeof(float))
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: %s: %d x %d x %d voxels overflow the address space",
                      fn, arg, n[0], n[1], n[2]);
  for (int i = 0; i < 3; i++) {
    if (!isfinite(vol->voxel[i]) || vol->voxel[i] <= 0)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: %s->voxel[%d] (%c): must be finite and > 0, got "
                        "%g",
                        fn, arg, i, axis[i], vol->voxel[i]);
    if (!isfinite(vol->center[i]))
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: %s->center[%d] (%c): must be finite, got %g", fn,
                        arg, i, axis[i], vol->center[i]);
  }
  return CLARA_OK;
}

/* ------------------------------------------------------------------------ */
/* CT input files                                                            */
/* ------------------------------------------------------------------------ */

static clara_status ct_read_locked(const char *path, clara_ct_geometry *geom,
                                   float **angles_out, float **proj_out) {
  static const char fn[] = "clara_ct_file_read";
  clara_status status;
  hid_t fid = H5I_INVALID_HID, grp = H5I_INVALID_HID;
  hid_t dproj = H5I_INVALID_HID, dang = H5I_INVALID_HID;
  clara_ct_geometry g;
  float *angles = NULL, *proj = NULL;
  char *kind = NULL;
  int pdims[3], adims[1], present;
  size_t pcount, acount;
  char prefix[512];

  memset(&g, 0, sizeof g);
  status = clara_h5_open_read(fn, path, &fid);
  if (status != CLARA_OK)
    goto done;
  status = clara_h5_open_object(fn, path, fid, "/ct", H5I_GROUP,
                       "the group of a CT input file", &grp);
  if (status != CLARA_OK)
    goto done;

  /* attributes of /ct */
  status = clara_h5_read_string_attr(fn, path, grp, "/ct", "geometry", 1, &kind);
  if (status != CLARA_OK)
    goto done;
  if (clara_geometry_parse(kind, &g.kind) != CLARA_OK) {
    status = file_fail(CLARA_ERR_FORMAT, fn, path,
                       "/ct: attribute geometry: parallel, fan-flat, fan-arc "
                       "or cone expected, found \"%s\"",
                       kind);
    goto done;
  }
  status = clara_h5_read_double_attr(fn, path, grp, "/ct", "det_spacing", 2,
                            "[row, col]", 1, g.det_spacing, &present);
  if (status != CLARA_OK)
    goto done;
  status = clara_h5_read_double_attr(fn, path, grp, "/ct", "det_offset", 2, "[row, col]",
                            0, g.det_offset, &present);
  if (status != CLARA_OK)
    goto done;
  {
    static const char *const names[2] = {"source_to_iso", "source_to_detector"};
    double *fields[2];
    fields[0] = &g.source_to_iso;
    fields[1] = &g.source_to_detector;
    for (int i = 0; i < 2; i++) {
      int divergent = g.kind != CLARA_GEOM_PARALLEL;
      status =
          clara_h5_read_double_attr(fn, path, grp, "/ct", names[i], 1,
                           "a distance in mm", divergent, fields[i], &present);
      if (status != CLARA_OK)
        goto done;
      /* clara_geometry_check looks at these for divergent beams only */
      if (present && !divergent && !isfinite(*fields[i])) {
        status = file_fail(CLARA_ERR_FORMAT, fn, path,
                           "/ct: attribute %s: must be finite, found %g",
                           names[i], *fields[i]);
        goto done;
      }
    }
  }

  /* shapes first, data once everything agrees */
  status = clara_h5_open_object(fn, path, fid, "/ct/projections", H5I_DATASET,
                       "a float32 dataset [views][rows][cols]", &dproj);
  if (status != CLARA_OK)
    goto done;
  status = clara_h5_check_float_dataset(fn, path, "/ct/projections", dproj, 3,
                               "[views][rows][cols]", pdims, &pcount);
  if (status != CLARA_OK)
    goto done;
  status = clara_h5_open_object(fn, path, fid, "/ct/angles", H5I_DATASET,
                       "a float32 dataset [views]", &dang);
  if (status != CLARA_OK)
    goto done;
  status = clara_h5_check_float_dataset(fn, path, "/ct/angles", dang, 1, "[views]",
                               adims, &acount);
  if (status != CLARA_OK)
    goto done;
  if (adims[0] != pdims[0]) {
    status = file_fail(CLARA_ERR_FORMAT, fn, path,
                       "/ct/angles: %d values expected (one per view), found "
                       "%d",
                       pdims[0], adims[0]);
    goto done;
  }
  g.views = pdims[0];
  g.rows = pdims[1];
  g.cols = pdims[2];

  status = clara_h5_read_floats(fn, path, "/ct/angles", dang, acount, &angles);
  if (status != CLARA_OK)
    goto done;
  g.angles = angles;
  if (clara_geometry_check(&g) != CLARA_OK) {
    snprintf(prefix, sizeof prefix, "%s: %s: /ct", fn, path);
    status = clara_fail_context(CLARA_ERR_FORMAT, prefix);
    goto done;
  }
  status = clara_h5_read_floats(fn, path, "/ct/projections", dproj, pcount, &proj);
done:
  h5_close(H5Dclose, &dang, &status, fn, path);
  h5_close(H5Dclose, &dproj, &status, fn, path);
  h5_close(H5Gclose, &grp, &status, fn, path);
  h5_close(H5Fclose, &fid, &status, fn, path);
  if (status == CLARA_OK) { /* outputs only once nothing can fail */
    *geom = g;
    *angles_out = angles;
    *proj_out = proj;
    angles = NULL;
    proj = NULL;
  }
  free(kind);
  clara_aligned_free(proj);
  clara_aligned_free(angles);
  return status;
}

CLARA_API clara_status clara_ct_file_read(const char *path,
                                          clara_ct_geometry *geom,
                                          float **angles_out,
                                          float **projections_out) {
  static const char fn[] = "clara_ct_file_read";
  clara_status status;
  if (!path || !geom || !angles_out || !projections_out)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                      !path         ? "path"
                      : !geom       ? "geom"
                      : !angles_out ? "angles_out"
                                    : "projections_out");
  if (!path[0])
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: path is empty", fn);
  if ((void *)angles_out == (void *)projections_out)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: angles_out and projections_out are the same "
                      "pointer",
                      fn);
  clara_h5_lock();
  status = ct_read_locked(path, geom, angles_out, projections_out);
  clara_h5_unlock();
  return status;
}

static clara_status ct_write_locked(const char *path,
                                    const clara_ct_geometry *geom,
                                    const float *projections,
                                    const clara_volume *truth_vol,
                                    const float *truth) {
  static const char fn[] = "clara_ct_file_write";
  clara_status status;
  hid_t fid = H5I_INVALID_HID, grp = H5I_INVALID_HID;
  hid_t dset = H5I_INVALID_HID;
  hsize_t pdims[3], adims[1];
  char *tmp = NULL;
  char detail[256];
  int divergent = geom->kind != CLARA_GEOM_PARALLEL;
  size_t bytes = ((size_t)geom->views * (size_t)geom->rows *
                      (size_t)geom->cols +
                  (size_t)geom->views) *
                 sizeof(float);

  if (truth && truth_vol)
    bytes += (size_t)truth_vol->nx * (size_t)truth_vol->ny *
             (size_t)truth_vol->nz * sizeof(float);
  status = clara_h5_temp_create(fn, path, clara_h5_file_bytes(bytes), &tmp);
  if (status != CLARA_OK)
    goto done;
  status = create_h5(fn, path, tmp, &fid);
  if (status != CLARA_OK)
    goto done;
  grp = H5Gcreate2(fid, "/ct", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (grp < 0) {
    status = file_fail(CLARA_ERR_IO, fn, path, "/ct: cannot create it%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  status = write_string_attr(fn, path, grp, "/ct", "geometry",
                             clara_geometry_name(geom->kind));
  if (status == CLARA_OK)
    status = write_double_attr(fn, path, grp, "/ct", "det_spacing", 2,
                               geom->det_spacing);
  if (status == CLARA_OK)
    status = write_double_attr(fn, path, grp, "/ct", "det_offset", 2,
                               geom->det_offset);
  /* Parallel beams ignore the distances: keep them only when finite. */
  if (status == CLARA_OK && (divergent || isfinite(geom->source_to_iso)))
    status = write_double_attr(fn, path, grp, "/ct", "source_to_iso", 1,
                               &geom->source_to_iso);
  if (status == CLARA_OK && (divergent || isfinite(geom->source_to_detector)))
    status = write_double_attr(fn, path, grp, "/ct", "source_to_detector", 1,
                               &geom->source_to_detector);
  if (status != CLARA_OK)
    goto done;

  pdims[0] = (hsize_t)geom->views;
  pdims[1] = (hsize_t)geom->rows;
  pdims[2] = (hsize_t)geom->cols;
  status = write_float_dataset(fn, path, fid, "/ct/projections", 3, pdims,
                               projections, &dset);
  if (status != CLARA_OK)
    goto done;
  h5_close(H5Dclose, &dset, &status, fn, path);
  if (status != CLARA_OK)
    goto done;
  adims[0] = (hsize_t)geom->views;
  status = write_float_dataset(fn, path, fid, "/ct/angles", 1, adims,
                               geom->angles, &dset);
  if (status != CLARA_OK)
    goto done;
  h5_close(H5Dclose, &dset, &status, fn, path);
  if (status != CLARA_OK)
    goto done;
  if (truth) {
    status = write_volume(fn, path, fid, "/truth", truth_vol, truth, NULL);
    if (status != CLARA_OK)
      goto done;
  }

  /* close before renaming: H5Fclose is what completes the file */
  h5_close(H5Gclose, &grp, &status, fn, path);
  h5_close(H5Fclose, &fid, &status, fn, path);
  if (status == CLARA_OK)
    status = clara_h5_temp_commit(fn, path, tmp);
done:
  h5_close(H5Dclose, &dset, &status, fn, path);
  h5_close(H5Gclose, &grp, &status, fn, path);
  h5_close(H5Fclose, &fid, &status, fn, path);
  if (tmp && status != CLARA_OK)
    (void)unlink(tmp);
  free(tmp);
  return status;
}

CLARA_API clara_status clara_ct_file_write(const char *path,
                                           const clara_ct_geometry *geom,
                                           const float *projections,
                                           const clara_volume *truth_vol,
                                           const float *truth) {
  static const char fn[] = "clara_ct_file_write";
  clara_status status;
  if (!path || !geom || !projections)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                      !path   ? "path"
                      : !geom ? "geom"
                              : "projections");
  if (!path[0])
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: path is empty", fn);
  if (clara_geometry_check(geom) != CLARA_OK)
    return clara_fail_context(CLARA_ERR_INVALID_ARG, fn);
  if (truth) {
    if (!truth_vol)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: truth_vol is NULL while truth is not", fn);
    status = check_volume_arg(fn, "truth_vol", truth_vol);
    if (status != CLARA_OK)
      return status;
  }
  clara_h5_lock();
  status = ct_write_locked(path, geom, projections, truth_vol, truth);
  clara_h5_unlock();
  return status;
}

/* ------------------------------------------------------------------------ */
/* Image files                                                               */
/* ------------------------------------------------------------------------ */

static clara_status image_write_locked(const char *path,
                                       const clara_volume *vol,
                                       const float *image, const char *units) {
  static const char fn[] = "clara_image_file_write";
  clara_status status;
  hid_t fid = H5I_INVALID_HID;
  char *tmp = NULL;
  size_t bytes = (size_t)vol->nx * (size_t)vol->ny * (size_t)vol->nz *
                 sizeof(float);

  status = clara_h5_temp_create(fn, path, clara_h5_file_bytes(bytes), &tmp);
  if (status != CLARA_OK)
    goto done;
  status = create_h5(fn, path, tmp, &fid);
  if (status != CLARA_OK)
    goto done;
  status = write_volume(fn, path, fid, "/image", vol, image, units);
  if (status != CLARA_OK)
    goto done;
  h5_close(H5Fclose, &fid, &status, fn, path);
  if (status == CLARA_OK)
    status = clara_h5_temp_commit(fn, path, tmp);
done:
  h5_close(H5Fclose, &fid, &status, fn, path);
  if (tmp && status != CLARA_OK)
    (void)unlink(tmp);
  free(tmp);
  return status;
}

CLARA_API clara_status clara_image_file_write(const char *path,
                                              const clara_volume *vol,
                                              const float *image,
                                              const char *units) {
  static const char fn[] = "clara_image_file_write";
  clara_status status;
  if (!path || !vol || !image)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                      !path  ? "path"
                      : !vol ? "vol"
                             : "image");
  if (!units)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: units is NULL (pass \"\" for none)", fn);
  if (!path[0])
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: path is empty", fn);
  status = check_volume_arg(fn, "vol", vol);
  if (status != CLARA_OK)
    return status;
  clara_h5_lock();
  status = image_write_locked(path, vol, image, units);
  clara_h5_unlock();
  return status;
}

static clara_status image_read_locked(const char *path, const char *dataset,
                                      clara_volume *vol, float **image_out,
                                      char *units, size_t units_len) {
  static const char fn[] = "clara_image_file_read";
  clara_status status;
  hid_t fid = H5I_INVALID_HID, dset = H5I_INVALID_HID;
  double voxel[3], center[3] = {0, 0, 0};
  float *data = NULL;
  char *text = NULL;
  int dims[3], present;
  size_t count;

  status = clara_h5_open_read(fn, path, &fid);
  if (status != CLARA_OK)
    goto done;
  status = clara_h5_open_object(fn, path, fid, dataset, H5I_DATASET,
                       "a float32 dataset [nz][ny][nx]", &dset);
  if (status != CLARA_OK)
    goto done;
  status = clara_h5_check_float_dataset(fn, path, dataset, dset, 3, "[nz][ny][nx]", dims,
                               &count);
  if (status != CLARA_OK)
    goto done;
  status = clara_h5_read_double_attr(fn, path, dset, dataset, "voxel_size", 3,
                            "[z, y, x] in mm", 1, voxel, &present);
  if (status != CLARA_OK)
    goto done;
  status = clara_h5_read_double_attr(fn, path, dset, dataset, "center", 3,
                            "[z, y, x] in mm", 0, center, &present);
  if (status != CLARA_OK)
    goto done;
  for (int i = 0; i < 3; i++) {
    if (!isfinite(voxel[i]) || voxel[i] <= 0) {
      status = file_fail(CLARA_ERR_FORMAT, fn, path,
                         "%s: attribute voxel_size: finite values > 0 "
                         "expected, found [%g, %g, %g]",
                         dataset, voxel[0], voxel[1], voxel[2]);
      goto done;
    }
    if (!isfinite(center[i])) {
      status = file_fail(CLARA_ERR_FORMAT, fn, path,
                         "%s: attribute center: finite values expected, "
                         "found [%g, %g, %g]",
                         dataset, center[0], center[1], center[2]);
      goto done;
    }
  }
  status = clara_h5_read_string_attr(fn, path, dset, dataset, "units", 0, &text);
  if (status != CLARA_OK)
    goto done;
  status = clara_h5_read_floats(fn, path, dataset, dset, count, &data);
done:
  h5_close(H5Dclose, &dset, &status, fn, path);
  h5_close(H5Fclose, &fid, &status, fn, path);
  if (status == CLARA_OK) { /* outputs only once nothing can fail */
    vol->nz = dims[0];
    vol->ny = dims[1];
    vol->nx = dims[2];
    for (int i = 0; i < 3; i++) {
      vol->voxel[i] = voxel[2 - i];
      vol->center[i] = center[2 - i];
    }
    if (units) {
      size_t len = text ? strlen(text) : 0;
      if (len > units_len - 1)
        len = units_len - 1;
      if (len)
        memcpy(units, text, len);
      units[len] = '\0';
    }
    *image_out = data;
    data = NULL;
  }
  clara_aligned_free(data);
  free(text);
  return status;
}

CLARA_API clara_status clara_image_file_read(const char *path,
                                             const char *dataset,
                                             clara_volume *vol,
                                             float **image_out, char *units,
                                             size_t units_len) {
  static const char fn[] = "clara_image_file_read";
  clara_status status;
  if (!path || !dataset || !vol || !image_out)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                      !path      ? "path"
                      : !dataset ? "dataset"
                      : !vol     ? "vol"
                                 : "image_out");
  if (!path[0])
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: path is empty", fn);
  if (!dataset[0])
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: dataset is empty (expected e.g. \"/image\" or "
                      "\"/truth\")",
                      fn);
  if (units && units_len == 0)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: units_len: must be > 0 when units is not NULL", fn);
  clara_h5_lock();
  status = image_read_locked(path, dataset, vol, image_out, units, units_len);
  clara_h5_unlock();
  return status;
}
