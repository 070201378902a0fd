/* test_io.c -- HDF5 CT input and image files (src/io/ct_file.c).
 *
 * Every test works in a private directory made with mkdtemp() and removed
 * at the end. Files "from another tool" are built with raw HDF5 calls. */
#include "clara_recon.h"

#include <check.h>
#include <hdf5.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static void tpath(char *buf, size_t n, const char *name) {
  int len = snprintf(buf, n, "%s/%s", tmpdir, name);
  ck_assert(len > 0 && (size_t)len < n);
}

/* Entries of tmpdir whose name holds ".tmp" (leftover temporary files). */
static int count_temp_files(void) {
  DIR *d = opendir(tmpdir);
  struct dirent *e;
  int n = 0;
  ck_assert_ptr_nonnull(d);
  while ((e = readdir(d)) != NULL)
    if (strstr(e->d_name, ".tmp"))
      n++;
  closedir(d);
  return n;
}

static int file_exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

#define ASSERT_STATUS(st, want)                                                \
  ck_assert_msg((st) == (want), "status %s, expected %s; message: \"%s\"",     \
                clara_status_name(st), clara_status_name(want),                \
                clara_last_error())

#define ASSERT_MESSAGE(fragment)                                               \
  ck_assert_msg(strstr(clara_last_error(), (fragment)) != NULL,                \
                "message \"%s\" does not contain \"%s\"", clara_last_error(),  \
                (fragment))

/* ---- test data ---------------------------------------------------------- */

typedef struct ct_data {
  clara_ct_geometry g;
  float *angles;
  float *proj;
  clara_volume vol;
  float *truth;
} ct_data;

static void make_ct(clara_geometry_kind kind, int views, int rows, int cols,
                    ct_data *d) {
  size_t n = (size_t)views * rows * cols;
  memset(d, 0, sizeof *d);
  d->angles = malloc((size_t)views * sizeof(float));
  d->proj = malloc(n * sizeof(float));
  ck_assert(d->angles && d->proj);
  for (int v = 0; v < views; v++) /* irregular on purpose */
    d->angles[v] = (float)(v * 2.0 * M_PI / views + 0.001 * (v % 3));
  for (size_t i = 0; i < n; i++)
    d->proj[i] = sinf(0.37f * (float)i) + 1e-3f * (float)i;
  d->g.kind = kind;
  d->g.views = views;
  d->g.rows = rows;
  d->g.cols = cols;
  d->g.angles = d->angles;
  d->g.det_spacing[0] = 0.8;
  d->g.det_spacing[1] = kind == CLARA_GEOM_FAN_ARC ? 0.0021 : 0.55;
  d->g.det_offset[0] = 0.25;
  d->g.det_offset[1] = kind == CLARA_GEOM_FAN_ARC ? -0.0003 : -0.125;
  if (kind != CLARA_GEOM_PARALLEL) {
    d->g.source_to_iso = 541.5;
    d->g.source_to_detector = 949.25;
  }
  d->vol.nx = 6;
  d->vol.ny = 5;
  d->vol.nz = rows;
  d->vol.voxel[0] = 0.5;
  d->vol.voxel[1] = 0.625;
  d->vol.voxel[2] = 0.75;
  d->vol.center[0] = 1.0;
  d->vol.center[1] = -2.0;
  d->vol.center[2] = 3.5;
  n = (size_t)d->vol.nx * d->vol.ny * d->vol.nz;
  d->truth = malloc(n * sizeof(float));
  ck_assert_ptr_nonnull(d->truth);
  for (size_t i = 0; i < n; i++)
    d->truth[i] = 0.02f * (float)(i % 7) - 0.01f;
}

static void free_ct(ct_data *d) {
  free(d->angles);
  free(d->proj);
  free(d->truth);
}

static float sentinel_value;
#define SENTINEL (&sentinel_value)

/* Reads 'path' expecting failure 'want' whose message holds 'fragment', and
 * checks that no output was touched. */
static void expect_ct_fail(const char *path, clara_status want,
                           const char *fragment) {
  clara_ct_geometry g, g0;
  float *angles = SENTINEL, *proj = SENTINEL;
  clara_status st;
  memset(&g, 0x5a, sizeof g);
  g0 = g;
  st = clara_ct_file_read(path, &g, &angles, &proj);
  ASSERT_STATUS(st, want);
  ASSERT_MESSAGE(fragment);
  ck_assert_msg(memcmp(&g, &g0, sizeof g) == 0, "geom changed on failure");
  ck_assert_ptr_eq(angles, SENTINEL);
  ck_assert_ptr_eq(proj, SENTINEL);
}

/* ---- files from "another tool", built with raw HDF5 --------------------- */

typedef struct foreign_opts {
  const char *geometry; /* NULL: no geometry attribute */
  int fixed_string;     /* geometry as a fixed-length, null-padded string */
  int views, rows, cols;
  int proj_rank; /* 3, or 2 to drop the row axis */
  int proj_int;  /* int32 projections */
  int omit_proj; /* no /ct/projections */
  int angle_count;
  int spacing_count;    /* elements of det_spacing */
  int spacing_string;   /* det_spacing as a string */
  int write_distances;  /* source_to_iso and source_to_detector */
  double source_to_iso; /* float64 scalar */
  float source_to_det;  /* float32 scalar */
} foreign_opts;

static void foreign_defaults(foreign_opts *o) {
  memset(o, 0, sizeof *o);
  o->geometry = "fan-flat";
  o->fixed_string = 1;
  o->views = 8;
  o->rows = 1;
  o->cols = 16;
  o->proj_rank = 3;
  o->angle_count = 8;
  o->spacing_count = 2;
  o->write_distances = 1;
  o->source_to_iso = 600.0;
  o->source_to_det = 1000.0f;
}

static double foreign_angle(int v) { return v * 0.3926990816987241 + 0.1; }
static float foreign_proj(size_t i) { return 0.5f * (float)i - 3.0f; }

static void attr_doubles(hid_t obj, const char *name, hid_t ftype, hid_t mtype,
                         int n, const void *values) {
  hsize_t dim = (hsize_t)n;
  hid_t space = n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, 0);
  hid_t attr;
  ck_assert(space >= 0);
  attr = H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(attr >= 0);
  ck_assert(H5Awrite(attr, mtype, values) >= 0);
  ck_assert(H5Aclose(attr) >= 0);
  ck_assert(H5Sclose(space) >= 0);
}

static void attr_fixed_string(hid_t obj, const char *name, const char *s) {
  hid_t type = H5Tcopy(H5T_C_S1), space, attr;
  ck_assert(type >= 0);
  /* exactly strlen bytes, null-padded: no terminator stored (numpy 'S') */
  ck_assert(H5Tset_size(type, strlen(s)) >= 0);
  ck_assert(H5Tset_strpad(type, H5T_STR_NULLPAD) >= 0);
  space = H5Screate(H5S_SCALAR);
  ck_assert(space >= 0);
  attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(attr >= 0);
  ck_assert(H5Awrite(attr, type, s) >= 0);
  ck_assert(H5Aclose(attr) >= 0);
  ck_assert(H5Sclose(space) >= 0);
  ck_assert(H5Tclose(type) >= 0);
}

static void attr_vlen_string(hid_t obj, const char *name, const char *s) {
  hid_t type = H5Tcopy(H5T_C_S1), space, attr;
  ck_assert(type >= 0);
  ck_assert(H5Tset_size(type, H5T_VARIABLE) >= 0);
  space = H5Screate(H5S_SCALAR);
  ck_assert(space >= 0);
  attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(attr >= 0);
  ck_assert(H5Awrite(attr, type, &s) >= 0);
  ck_assert(H5Aclose(attr) >= 0);
  ck_assert(H5Sclose(space) >= 0);
  ck_assert(H5Tclose(type) >= 0);
}

static void write_foreign(const char *path, const foreign_opts *o) {
  hid_t fid, grp, space, dset;
  size_t n = (size_t)o->views * o->rows * o->cols;
  double spacing[3] = {0.9, 1.1, 1.3};

  fid = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(fid >= 0);
  grp = H5Gcreate2(fid, "/ct", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(grp >= 0);
  if (o->geometry) {
    if (o->fixed_string)
      attr_fixed_string(grp, "geometry", o->geometry);
    else
      attr_vlen_string(grp, "geometry", o->geometry);
  }
  if (o->spacing_string)
    attr_vlen_string(grp, "det_spacing", "0.9 1.1");
  else
    attr_doubles(grp, "det_spacing", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                 o->spacing_count, spacing);
  /* no det_offset: it defaults to [0, 0] */
  if (o->write_distances) {
    attr_doubles(grp, "source_to_iso", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1,
                 &o->source_to_iso);
    attr_doubles(grp, "source_to_detector", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1,
                 &o->source_to_det);
  }

  if (!o->omit_proj) {
    hsize_t dims[3];
    dims[0] = (hsize_t)o->views;
    if (o->proj_rank == 3) {
      dims[1] = (hsize_t)o->rows;
      dims[2] = (hsize_t)o->cols;
    } else {
      dims[1] = (hsize_t)o->rows * (hsize_t)o->cols;
    }
    space = H5Screate_simple(o->proj_rank, dims, NULL);
    ck_assert(space >= 0);
    if (o->proj_int) {
      int *data = malloc(n * sizeof(int));
      ck_assert_ptr_nonnull(data);
      for (size_t i = 0; i < n; i++)
        data[i] = (int)i;
      dset = H5Dcreate2(fid, "/ct/projections", H5T_STD_I32LE, space,
                        H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      ck_assert(dset >= 0);
      ck_assert(H5Dwrite(dset, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                         data) >= 0);
      free(data);
    } else {
      float *data = malloc(n * sizeof(float));
      ck_assert_ptr_nonnull(data);
      for (size_t i = 0; i < n; i++)
        data[i] = foreign_proj(i);
      /* big-endian on disk: the reader must convert */
      dset = H5Dcreate2(fid, "/ct/projections", H5T_IEEE_F32BE, space,
                        H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      ck_assert(dset >= 0);
      ck_assert(H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                         data) >= 0);
      free(data);
    }
    ck_assert(H5Dclose(dset) >= 0);
    ck_assert(H5Sclose(space) >= 0);
  }

  {
    hsize_t dim = (hsize_t)o->angle_count;
    double *angles = malloc((size_t)o->angle_count * sizeof(double));
    ck_assert_ptr_nonnull(angles);
    for (int v = 0; v < o->angle_count; v++)
      angles[v] = foreign_angle(v);
    space = H5Screate_simple(1, &dim, NULL);
    ck_assert(space >= 0);
    dset = H5Dcreate2(fid, "/ct/angles", H5T_IEEE_F64LE, space, H5P_DEFAULT,
                      H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(dset >= 0);
    ck_assert(H5Dwrite(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                       angles) >= 0);
    free(angles);
    ck_assert(H5Dclose(dset) >= 0);
    ck_assert(H5Sclose(space) >= 0);
  }
  ck_assert(H5Gclose(grp) >= 0);
  ck_assert(H5Fclose(fid) >= 0);
}

/* ---- round trips ----------------------------------------------------------
 */

START_TEST(test_roundtrip_ct) {
  static const clara_geometry_kind kinds[4] = {
      CLARA_GEOM_PARALLEL, CLARA_GEOM_FAN_FLAT, CLARA_GEOM_FAN_ARC,
      CLARA_GEOM_CONE};
  clara_geometry_kind kind = kinds[_i];
  int rows = kind == CLARA_GEOM_CONE ? 3 : 2;
  char path[512], name[64], units[16];
  ct_data d;
  clara_ct_geometry g;
  clara_volume vol;
  float *angles = NULL, *proj = NULL, *truth = NULL;
  size_t n;

  make_ct(kind, 12, rows, 7, &d);
  snprintf(name, sizeof name, "rt_%s.h5", clara_geometry_name(kind));
  tpath(path, sizeof path, name);
  ASSERT_STATUS(clara_ct_file_write(path, &d.g, d.proj, &d.vol, d.truth),
                CLARA_OK);
  ck_assert_int_eq(count_temp_files(), 0);

  memset(&g, 0, sizeof g);
  ASSERT_STATUS(clara_ct_file_read(path, &g, &angles, &proj), CLARA_OK);
  ck_assert_int_eq(g.kind, kind);
  ck_assert_int_eq(g.views, 12);
  ck_assert_int_eq(g.rows, rows);
  ck_assert_int_eq(g.cols, 7);
  ck_assert_ptr_eq(g.angles, angles);
  for (int i = 0; i < 2; i++) {
    ck_assert(g.det_spacing[i] == d.g.det_spacing[i]);
    ck_assert(g.det_offset[i] == d.g.det_offset[i]);
  }
  ck_assert(g.source_to_iso == d.g.source_to_iso);
  ck_assert(g.source_to_detector == d.g.source_to_detector);
  ck_assert(memcmp(angles, d.angles, 12 * sizeof(float)) == 0);
  n = (size_t)12 * rows * 7;
  ck_assert(memcmp(proj, d.proj, n * sizeof(float)) == 0);
  ck_assert_int_eq(clara_geometry_check(&g), CLARA_OK);

  strcpy(units, "junk");
  ASSERT_STATUS(
      clara_image_file_read(path, "/truth", &vol, &truth, units, sizeof units),
      CLARA_OK);
  ck_assert_str_eq(units, ""); /* /truth has no units */
  ck_assert_int_eq(vol.nx, d.vol.nx);
  ck_assert_int_eq(vol.ny, d.vol.ny);
  ck_assert_int_eq(vol.nz, d.vol.nz);
  for (int i = 0; i < 3; i++) {
    ck_assert(vol.voxel[i] == d.vol.voxel[i]);
    ck_assert(vol.center[i] == d.vol.center[i]);
  }
  n = (size_t)vol.nx * vol.ny * vol.nz;
  ck_assert(memcmp(truth, d.truth, n * sizeof(float)) == 0);

  clara_free(truth);
  clara_free(proj);
  clara_free(angles);
  free_ct(&d);
}
END_TEST

START_TEST(test_roundtrip_ct_without_truth) {
  char path[512];
  ct_data d;
  clara_ct_geometry g;
  clara_volume vol;
  float *angles = NULL, *proj = NULL, *image = SENTINEL;

  make_ct(CLARA_GEOM_CONE, 5, 4, 3, &d);
  tpath(path, sizeof path, "no_truth.h5");
  /* truth_vol without truth is ignored */
  ASSERT_STATUS(clara_ct_file_write(path, &d.g, d.proj, &d.vol, NULL),
                CLARA_OK);
  ASSERT_STATUS(clara_ct_file_read(path, &g, &angles, &proj), CLARA_OK);
  ck_assert_int_eq(g.rows, 4);
  ASSERT_STATUS(clara_image_file_read(path, "/truth", &vol, &image, NULL, 0),
                CLARA_ERR_FORMAT);
  ASSERT_MESSAGE("/truth: missing");
  ck_assert_ptr_eq(image, SENTINEL);
  clara_free(proj);
  clara_free(angles);
  free_ct(&d);
}
END_TEST

START_TEST(test_roundtrip_image) {
  char path[512], units[32], small[2];
  clara_volume vol, back;
  float *img, *back_img = NULL, *again = NULL;
  size_t n;

  memset(&vol, 0, sizeof vol);
  vol.nx = 5;
  vol.ny = 4;
  vol.nz = 3; /* all different, to catch a swapped axis */
  vol.voxel[0] = 0.5;
  vol.voxel[1] = 0.75;
  vol.voxel[2] = 2.0;
  vol.center[0] = 1.5;
  vol.center[1] = -2.5;
  vol.center[2] = 10.0;
  n = (size_t)vol.nx * vol.ny * vol.nz;
  img = malloc(n * sizeof(float));
  ck_assert_ptr_nonnull(img);
  for (size_t i = 0; i < n; i++)
    img[i] = (float)i * 10.0f - 1000.0f;
  tpath(path, sizeof path, "image.h5");

  /* an existing file is replaced */
  ASSERT_STATUS(clara_image_file_write(path, &vol, img, "1/mm"), CLARA_OK);
  img[0] = 42.0f;
  ASSERT_STATUS(clara_image_file_write(path, &vol, img, "HU"), CLARA_OK);
  ck_assert_int_eq(count_temp_files(), 0);
  {
    /* the usual permissions (0666 less the umask), not a temp file's 0600 */
    mode_t mask = umask(022);
    struct stat sb;
    umask(mask);
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0666 & ~mask);
  }

  ASSERT_STATUS(clara_image_file_read(path, "/image", &back, &back_img, units,
                                      sizeof units),
                CLARA_OK);
  ck_assert_str_eq(units, "HU");
  ck_assert_int_eq(back.nx, 5);
  ck_assert_int_eq(back.ny, 4);
  ck_assert_int_eq(back.nz, 3);
  for (int i = 0; i < 3; i++) {
    ck_assert(back.voxel[i] == vol.voxel[i]);
    ck_assert(back.center[i] == vol.center[i]);
  }
  ck_assert(memcmp(back_img, img, n * sizeof(float)) == 0);

  /* units truncated to units_len - 1; NULL units is allowed */
  ASSERT_STATUS(
      clara_image_file_read(path, "image", &back, &again, small, sizeof small),
      CLARA_OK);
  ck_assert_str_eq(small, "H");
  clara_free(again);
  again = NULL;
  ASSERT_STATUS(clara_image_file_read(path, "/image", &back, &again, NULL, 0),
                CLARA_OK);
  clara_free(again);

  /* the file on disk has the documented layout */
  {
    hid_t fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t dset, space, type, attr;
    hsize_t dims[3];
    double zyx[3];
    ck_assert(fid >= 0);
    dset = H5Dopen2(fid, "/image", H5P_DEFAULT);
    ck_assert(dset >= 0);
    type = H5Dget_type(dset);
    ck_assert(type >= 0);
    ck_assert(H5Tequal(type, H5T_IEEE_F32LE) > 0);
    space = H5Dget_space(dset);
    ck_assert(space >= 0);
    ck_assert_int_eq(H5Sget_simple_extent_dims(space, dims, NULL), 3);
    ck_assert(dims[0] == 3 && dims[1] == 4 && dims[2] == 5);
    attr = H5Aopen(dset, "voxel_size", H5P_DEFAULT);
    ck_assert(attr >= 0);
    ck_assert(H5Aread(attr, H5T_NATIVE_DOUBLE, zyx) >= 0);
    ck_assert(zyx[0] == 2.0 && zyx[1] == 0.75 && zyx[2] == 0.5);
    ck_assert(H5Aclose(attr) >= 0);
    ck_assert(H5Sclose(space) >= 0);
    ck_assert(H5Tclose(type) >= 0);
    ck_assert(H5Dclose(dset) >= 0);
    ck_assert(H5Fclose(fid) >= 0);
  }

  clara_free(back_img);
  free(img);
}
END_TEST

START_TEST(test_foreign_file) {
  char path[512];
  foreign_opts o;
  clara_ct_geometry g;
  float *angles = NULL, *proj = NULL;

  foreign_defaults(&o);
  tpath(path, sizeof path, "foreign.h5");
  write_foreign(path, &o);
  ASSERT_STATUS(clara_ct_file_read(path, &g, &angles, &proj), CLARA_OK);
  ck_assert_int_eq(g.kind, CLARA_GEOM_FAN_FLAT);
  ck_assert_int_eq(g.views, 8);
  ck_assert_int_eq(g.rows, 1);
  ck_assert_int_eq(g.cols, 16);
  ck_assert(g.det_spacing[0] == 0.9 && g.det_spacing[1] == 1.1);
  ck_assert(g.det_offset[0] == 0.0 && g.det_offset[1] == 0.0);
  ck_assert(g.source_to_iso == 600.0);
  ck_assert(g.source_to_detector == 1000.0);
  for (int v = 0; v < 8; v++)
    ck_assert(angles[v] == (float)foreign_angle(v));
  for (size_t i = 0; i < 8 * 16; i++)
    ck_assert(proj[i] == foreign_proj(i));
  clara_free(proj);
  clara_free(angles);

  /* variable-length geometry string; parallel needs no distances */
  foreign_defaults(&o);
  o.geometry = "parallel";
  o.fixed_string = 0;
  o.write_distances = 0;
  write_foreign(path, &o);
  ASSERT_STATUS(clara_ct_file_read(path, &g, &angles, &proj), CLARA_OK);
  ck_assert_int_eq(g.kind, CLARA_GEOM_PARALLEL);
  ck_assert(g.source_to_iso == 0.0 && g.source_to_detector == 0.0);
  clara_free(proj);
  clara_free(angles);
}
END_TEST

/* ---- bad files ------------------------------------------------------------
 */

START_TEST(test_missing_file) {
  char path[512];
  tpath(path, sizeof path, "does-not-exist.h5");
  expect_ct_fail(path, CLARA_ERR_IO, "No such file or directory");
  ASSERT_MESSAGE("does-not-exist.h5");
  ASSERT_MESSAGE("clara_ct_file_read");
}
END_TEST

START_TEST(test_not_hdf5) {
  char path[512];
  FILE *f;
  tpath(path, sizeof path, "text.h5");
  f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  for (int i = 0; i < 200; i++)
    fprintf(f, "this is a plain text file, line %d\n", i);
  ck_assert_int_eq(fclose(f), 0);
  expect_ct_fail(path, CLARA_ERR_IO, "not an HDF5 file");
  /* a directory is not a file */
  expect_ct_fail(tmpdir, CLARA_ERR_IO, "is a directory");
}
END_TEST

START_TEST(test_truncated) {
  char path[512];
  struct stat sb;
  ct_data d;
  make_ct(CLARA_GEOM_PARALLEL, 64, 1, 64, &d);
  tpath(path, sizeof path, "truncated.h5");
  ASSERT_STATUS(clara_ct_file_write(path, &d.g, d.proj, NULL, NULL), CLARA_OK);
  ck_assert_int_eq(stat(path, &sb), 0);
  ck_assert_int_eq(truncate(path, sb.st_size / 2), 0);
  expect_ct_fail(path, CLARA_ERR_IO, "truncated");
  free_ct(&d);
}
END_TEST

/* One malformed file per test: an option changed from the defaults. */
typedef enum bad_kind {
  BAD_NO_PROJECTIONS,
  BAD_NO_GEOMETRY,
  BAD_UNKNOWN_GEOMETRY,
  BAD_INT_PROJECTIONS,
  BAD_RANK2,
  BAD_ANGLE_COUNT,
  BAD_SPACING_3,
  BAD_SPACING_STRING,
  BAD_NAN_SOURCE,
  BAD_NO_DISTANCES,
  BAD_COUNT
} bad_kind;

static const struct {
  clara_status status;
  const char *fragment;
} bad_expect[BAD_COUNT] = {
    [BAD_NO_PROJECTIONS] = {CLARA_ERR_FORMAT, "/ct/projections: missing"},
    [BAD_NO_GEOMETRY] = {CLARA_ERR_FORMAT, "/ct: attribute geometry missing"},
    [BAD_UNKNOWN_GEOMETRY] = {CLARA_ERR_FORMAT, "found \"helical\""},
    [BAD_INT_PROJECTIONS] = {CLARA_ERR_FORMAT,
                             "/ct/projections: float data expected (float32 "
                             "[views][rows][cols]), found type class integer"},
    [BAD_RANK2] = {CLARA_ERR_FORMAT,
                   "/ct/projections: rank 3 expected [views][rows][cols], "
                   "found rank 2"},
    [BAD_ANGLE_COUNT] = {CLARA_ERR_FORMAT,
                         "/ct/angles: 8 values expected (one per view), found "
                         "16"},
    [BAD_SPACING_3] = {CLARA_ERR_FORMAT,
                       "/ct: attribute det_spacing: 2 values expected ([row, "
                       "col]), found 3"},
    [BAD_SPACING_STRING] = {CLARA_ERR_FORMAT,
                            "det_spacing: float expected ([row, col]), found "
                            "type class string"},
    [BAD_NAN_SOURCE] = {CLARA_ERR_FORMAT, "/ct: geometry->source_to_iso"},
    [BAD_NO_DISTANCES] = {CLARA_ERR_FORMAT,
                          "/ct: attribute source_to_iso missing"},
};

START_TEST(test_bad_file) {
  char path[512], name[64];
  foreign_opts o;
  foreign_defaults(&o);
  switch ((bad_kind)_i) {
  case BAD_NO_PROJECTIONS:
    o.omit_proj = 1;
    break;
  case BAD_NO_GEOMETRY:
    o.geometry = NULL;
    break;
  case BAD_UNKNOWN_GEOMETRY:
    o.geometry = "helical";
    break;
  case BAD_INT_PROJECTIONS:
    o.proj_int = 1;
    break;
  case BAD_RANK2:
    o.proj_rank = 2;
    break;
  case BAD_ANGLE_COUNT:
    o.angle_count = 16;
    break;
  case BAD_SPACING_3:
    o.spacing_count = 3;
    break;
  case BAD_SPACING_STRING:
    o.spacing_string = 1;
    break;
  case BAD_NAN_SOURCE:
    o.source_to_iso = NAN;
    break;
  case BAD_NO_DISTANCES:
    o.write_distances = 0;
    break;
  case BAD_COUNT:
    break;
  }
  snprintf(name, sizeof name, "bad%d.h5", _i);
  tpath(path, sizeof path, name);
  write_foreign(path, &o);
  expect_ct_fail(path, bad_expect[_i].status, bad_expect[_i].fragment);
  ASSERT_MESSAGE(path); /* the file is named */
}
END_TEST

START_TEST(test_not_a_ct_file) {
  char path[512];
  clara_volume vol = {2, 2, 1, {1, 1, 1}, {0, 0, 0}};
  float img[4] = {1, 2, 3, 4};
  tpath(path, sizeof path, "just_image.h5");
  ASSERT_STATUS(clara_image_file_write(path, &vol, img, "HU"), CLARA_OK);
  expect_ct_fail(path, CLARA_ERR_FORMAT, "/ct: missing");
}
END_TEST

START_TEST(test_image_read_errors) {
  char path[512], units[8] = "keep";
  clara_volume vol, vol0;
  float *img = SENTINEL;
  ct_data d;
  hid_t fid, space, dset;
  hsize_t dims[3] = {1, 2, 2};
  float data[4] = {0, 1, 2, 3};

  make_ct(CLARA_GEOM_PARALLEL, 4, 1, 4, &d);
  tpath(path, sizeof path, "img_err.h5");
  ASSERT_STATUS(clara_ct_file_write(path, &d.g, d.proj, NULL, NULL), CLARA_OK);
  memset(&vol, 0x33, sizeof vol);
  vol0 = vol;
  ASSERT_STATUS(
      clara_image_file_read(path, "/nope", &vol, &img, units, sizeof units),
      CLARA_ERR_FORMAT);
  ASSERT_MESSAGE("/nope: missing");
  ASSERT_STATUS(
      clara_image_file_read(path, "/ct", &vol, &img, units, sizeof units),
      CLARA_ERR_FORMAT);
  ASSERT_MESSAGE("/ct: expected a float32 dataset [nz][ny][nx], found a "
                 "group");
  ASSERT_STATUS(clara_image_file_read(path, "/ct/angles", &vol, &img, units,
                                      sizeof units),
                CLARA_ERR_FORMAT);
  ASSERT_MESSAGE("/ct/angles: rank 3 expected");

  /* an image without voxel_size */
  fid = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(fid >= 0);
  space = H5Screate_simple(3, dims, NULL);
  ck_assert(space >= 0);
  dset = H5Dcreate2(fid, "/image", H5T_IEEE_F32LE, space, H5P_DEFAULT,
                    H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(dset >= 0);
  ck_assert(H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                     data) >= 0);
  ck_assert(H5Dclose(dset) >= 0);
  ck_assert(H5Sclose(space) >= 0);
  ck_assert(H5Fclose(fid) >= 0);
  ASSERT_STATUS(
      clara_image_file_read(path, "/image", &vol, &img, units, sizeof units),
      CLARA_ERR_FORMAT);
  ASSERT_MESSAGE("/image: attribute voxel_size missing");

  ck_assert(memcmp(&vol, &vol0, sizeof vol) == 0);
  ck_assert_ptr_eq(img, SENTINEL);
  ck_assert_str_eq(units, "keep");
  free_ct(&d);
}
END_TEST

/* ---- arguments ------------------------------------------------------------
 */

START_TEST(test_null_args) {
  char path[512];
  ct_data d;
  clara_ct_geometry g;
  clara_volume vol = {2, 2, 1, {1, 1, 1}, {0, 0, 0}};
  float *a = NULL, *p = NULL, img[4] = {0};
  char units[4];

  make_ct(CLARA_GEOM_FAN_FLAT, 4, 1, 4, &d);
  tpath(path, sizeof path, "null.h5");

  ASSERT_STATUS(clara_ct_file_read(NULL, &g, &a, &p), CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("clara_ct_file_read: path is NULL");
  ASSERT_STATUS(clara_ct_file_read(path, NULL, &a, &p), CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("geom is NULL");
  ASSERT_STATUS(clara_ct_file_read(path, &g, NULL, &p), CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("angles_out is NULL");
  ASSERT_STATUS(clara_ct_file_read(path, &g, &a, NULL), CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("projections_out is NULL");
  ASSERT_STATUS(clara_ct_file_read("", &g, &a, &p), CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("path is empty");

  ASSERT_STATUS(clara_ct_file_write(NULL, &d.g, d.proj, NULL, NULL),
                CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("clara_ct_file_write: path is NULL");
  ASSERT_STATUS(clara_ct_file_write(path, NULL, d.proj, NULL, NULL),
                CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("geom is NULL");
  ASSERT_STATUS(clara_ct_file_write(path, &d.g, NULL, NULL, NULL),
                CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("projections is NULL");
  ASSERT_STATUS(clara_ct_file_write(path, &d.g, d.proj, NULL, d.truth),
                CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("truth_vol is NULL");
  d.g.angles = NULL;
  ASSERT_STATUS(clara_ct_file_write(path, &d.g, d.proj, NULL, NULL),
                CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("clara_ct_file_write: geometry->angles: is NULL");
  d.g.angles = d.angles;

  ASSERT_STATUS(clara_image_file_write(NULL, &vol, img, "HU"),
                CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("clara_image_file_write: path is NULL");
  ASSERT_STATUS(clara_image_file_write(path, NULL, img, "HU"),
                CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("vol is NULL");
  ASSERT_STATUS(clara_image_file_write(path, &vol, NULL, "HU"),
                CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("image is NULL");
  ASSERT_STATUS(clara_image_file_write(path, &vol, img, NULL),
                CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("units is NULL");

  ASSERT_STATUS(clara_image_file_read(NULL, "/image", &vol, &a, NULL, 0),
                CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("clara_image_file_read: path is NULL");
  ASSERT_STATUS(clara_image_file_read(path, NULL, &vol, &a, NULL, 0),
                CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("dataset is NULL");
  ASSERT_STATUS(clara_image_file_read(path, "/image", NULL, &a, NULL, 0),
                CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("vol is NULL");
  ASSERT_STATUS(clara_image_file_read(path, "/image", &vol, NULL, NULL, 0),
                CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("image_out is NULL");
  ASSERT_STATUS(clara_image_file_read(path, "/image", &vol, &a, units, 0),
                CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("units_len");

  ck_assert(!file_exists(path)); /* nothing was created */
  ck_assert_int_eq(count_temp_files(), 0);
  free_ct(&d);
}
END_TEST

/* ---- failing writes -------------------------------------------------------
 */

START_TEST(test_write_missing_directory) {
  char dir[512], path[600];
  ct_data d;
  clara_volume vol = {2, 2, 1, {1, 1, 1}, {0, 0, 0}};
  float img[4] = {0};

  make_ct(CLARA_GEOM_PARALLEL, 4, 1, 4, &d);
  tpath(dir, sizeof dir, "no-such-dir");
  snprintf(path, sizeof path, "%s/out.h5", dir);
  ASSERT_STATUS(clara_ct_file_write(path, &d.g, d.proj, NULL, NULL),
                CLARA_ERR_IO);
  ASSERT_MESSAGE("no-such-dir/out.h5");
  ASSERT_MESSAGE("No such file or directory");
  ASSERT_STATUS(clara_image_file_write(path, &vol, img, "HU"), CLARA_ERR_IO);
  ASSERT_MESSAGE("clara_image_file_write");
  ASSERT_MESSAGE("No such file or directory");
  ck_assert(!file_exists(path));
  ck_assert(!file_exists(dir));
  ck_assert_int_eq(count_temp_files(), 0);
  free_ct(&d);
}
END_TEST

START_TEST(test_write_unwritable_directory) {
  char dir[512], path[600];
  clara_volume vol = {2, 2, 1, {1, 1, 1}, {0, 0, 0}};
  float img[4] = {0};
  tpath(dir, sizeof dir, "read-only");
  ck_assert_int_eq(mkdir(dir, 0555), 0);
  snprintf(path, sizeof path, "%s/out.h5", dir);
  if (access(dir, W_OK) == 0) { /* root ignores permissions */
    ck_assert_int_eq(rmdir(dir), 0);
    return;
  }
  ASSERT_STATUS(clara_image_file_write(path, &vol, img, "HU"), CLARA_ERR_IO);
  ASSERT_MESSAGE("Permission denied");
  ck_assert(!file_exists(path));
  ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* The rename fails after the whole temporary file was written (the target
 * is a directory): nothing may be left behind. */
START_TEST(test_write_fails_at_rename) {
  char path[512];
  struct stat sb;
  ct_data d;
  make_ct(CLARA_GEOM_CONE, 6, 2, 5, &d);
  tpath(path, sizeof path, "is-a-dir.h5");
  ck_assert_int_eq(mkdir(path, 0755), 0);
  ASSERT_STATUS(clara_ct_file_write(path, &d.g, d.proj, &d.vol, d.truth),
                CLARA_ERR_IO);
  ASSERT_MESSAGE("is-a-dir.h5");
  ASSERT_MESSAGE("cannot rename");
  ck_assert_int_eq(count_temp_files(), 0);
  ck_assert_int_eq(stat(path, &sb), 0);
  ck_assert(S_ISDIR(sb.st_mode));
  ck_assert_int_eq(rmdir(path), 0);
  free_ct(&d);
}
END_TEST

START_TEST(test_failed_write_keeps_old_file) {
  char path[512], fresh[512], units[8];
  clara_volume vol = {3, 2, 2, {1, 1, 1}, {0, 0, 0}}, bad, back;
  float img[12], *back_img = NULL;
  ct_data d;

  for (int i = 0; i < 12; i++)
    img[i] = (float)i;
  tpath(path, sizeof path, "keep.h5");
  tpath(fresh, sizeof fresh, "fresh.h5");
  ASSERT_STATUS(clara_image_file_write(path, &vol, img, "HU"), CLARA_OK);

  bad = vol;
  bad.voxel[1] = NAN;
  ASSERT_STATUS(clara_image_file_write(path, &bad, img, "1/mm"),
                CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("vol->voxel[1] (y): must be finite and > 0");
  bad = vol;
  bad.voxel[2] = 0.0;
  ASSERT_STATUS(clara_image_file_write(fresh, &bad, img, "1/mm"),
                CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("vol->voxel[2] (z)");
  bad = vol;
  bad.nz = 0;
  ASSERT_STATUS(clara_image_file_write(path, &bad, img, "1/mm"),
                CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("vol->nz: must be > 0, got 0");
  bad = vol;
  bad.nx = bad.ny = bad.nz = 0x7fffffff;
  ASSERT_STATUS(clara_image_file_write(path, &bad, img, "1/mm"),
                CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("overflow");

  make_ct(CLARA_GEOM_FAN_FLAT, 4, 1, 4, &d);
  d.g.source_to_detector = d.g.source_to_iso; /* invalid geometry */
  ASSERT_STATUS(clara_ct_file_write(path, &d.g, d.proj, NULL, NULL),
                CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("clara_ct_file_write: geometry->source_to_detector");
  d.g.source_to_detector = 1000.0;
  d.vol.voxel[0] = -1.0;
  ASSERT_STATUS(clara_ct_file_write(path, &d.g, d.proj, &d.vol, d.truth),
                CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("truth_vol->voxel[0] (x)");

  ck_assert(!file_exists(fresh));
  ck_assert_int_eq(count_temp_files(), 0);
  ASSERT_STATUS(clara_image_file_read(path, "/image", &back, &back_img, units,
                                      sizeof units),
                CLARA_OK);
  ck_assert_str_eq(units, "HU");
  ck_assert_int_eq(back.nx, 3);
  ck_assert(memcmp(back_img, img, sizeof img) == 0);
  clara_free(back_img);
  free_ct(&d);
}
END_TEST

/* ---- threads --------------------------------------------------------------
 */

typedef struct thread_arg {
  int id;
  int failures;
  char message[256];
} thread_arg;

static void *thread_main(void *p) {
  thread_arg *t = p;
  char path[512], name[64];
  clara_volume vol = {8, 4, 2, {0.5, 0.5, 1.0}, {0, 0, 0}}, back;
  float img[64], *got;
  for (int i = 0; i < 64; i++)
    img[i] = (float)(t->id * 100 + i);
  snprintf(name, sizeof name, "thread%d.h5", t->id);
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  for (int iter = 0; iter < 20; iter++) {
    got = NULL;
    if (clara_image_file_write(path, &vol, img, "HU") != CLARA_OK ||
        clara_image_file_read(path, "/image", &back, &got, NULL, 0) !=
            CLARA_OK) {
      t->failures++;
      snprintf(t->message, sizeof t->message, "%s", clara_last_error());
      continue;
    }
    if (memcmp(got, img, sizeof img) != 0)
      t->failures++;
    clara_free(got);
    /* a failure on this thread keeps its own message */
    if (clara_image_file_read(path, "/missing", &back, &got, NULL, 0) !=
            CLARA_ERR_FORMAT ||
        !strstr(clara_last_error(), name))
      t->failures++;
  }
  return NULL;
}

START_TEST(test_threads) {
  enum { N = 4 };
  pthread_t th[N];
  thread_arg args[N];
  for (int i = 0; i < N; i++) {
    memset(&args[i], 0, sizeof args[i]);
    args[i].id = i;
    ck_assert_int_eq(pthread_create(&th[i], NULL, thread_main, &args[i]), 0);
  }
  for (int i = 0; i < N; i++)
    ck_assert_int_eq(pthread_join(th[i], NULL), 0);
  for (int i = 0; i < N; i++)
    ck_assert_msg(args[i].failures == 0, "thread %d: %d failures (%s)", i,
                  args[i].failures, args[i].message);
  ck_assert_int_eq(count_temp_files(), 0);
}
END_TEST

/* The library never prints, HDF5's error stack included, on any thread: a
 * thread-safe HDF5 keeps its printing switch per thread. */
static void *read_truncated(void *p) {
  clara_ct_geometry g;
  float *a = NULL, *pr = NULL;
  return (void *)(size_t)(clara_ct_file_read(p, &g, &a, &pr) == CLARA_ERR_IO &&
                                  strstr(clara_last_error(), "truncated")
                              ? 0
                              : 1);
}

START_TEST(test_never_prints) {
  char path[512], log[512];
  foreign_opts o;
  struct stat sb;
  int saved, fd;
  foreign_defaults(&o);
  o.views = o.angle_count = 64;
  o.cols = 64;
  tpath(path, sizeof path, "quiet.h5");
  tpath(log, sizeof log, "stderr.log");
  write_foreign(path, &o);
  ck_assert_int_eq(stat(path, &sb), 0);
  ck_assert_int_eq(truncate(path, sb.st_size / 2), 0);

  fflush(stderr);
  saved = dup(2);
  fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ck_assert(saved >= 0 && fd >= 0);
  ck_assert_int_eq(dup2(fd, 2), 2);
  close(fd);
  for (int t = 0; t < 3; t++) { /* a fresh thread each time */
    pthread_t th;
    void *result = (void *)1;
    ck_assert_int_eq(pthread_create(&th, NULL, read_truncated, path), 0);
    ck_assert_int_eq(pthread_join(th, &result), 0);
    ck_assert_msg(result == NULL, "thread %d: wrong status or message", t);
  }
  ck_assert_ptr_null(read_truncated(path));
  fflush(stderr);
  ck_assert_int_eq(dup2(saved, 2), 2);
  close(saved);
  ck_assert_int_eq(stat(log, &sb), 0);
  ck_assert_msg(sb.st_size == 0, "%lld bytes printed to stderr",
                (long long)sb.st_size);
}
END_TEST

/* ---- driver ---------------------------------------------------------------
 */

static Suite *io_suite(void) {
  Suite *s = suite_create("io");
  TCase *tc = tcase_create("files");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, test_roundtrip_ct, 0, 4);
  tcase_add_test(tc, test_roundtrip_ct_without_truth);
  tcase_add_test(tc, test_roundtrip_image);
  tcase_add_test(tc, test_foreign_file);
  tcase_add_test(tc, test_missing_file);
  tcase_add_test(tc, test_not_hdf5);
  tcase_add_test(tc, test_truncated);
  tcase_add_loop_test(tc, test_bad_file, 0, BAD_COUNT);
  tcase_add_test(tc, test_not_a_ct_file);
  tcase_add_test(tc, test_image_read_errors);
  tcase_add_test(tc, test_null_args);
  tcase_add_test(tc, test_write_missing_directory);
  tcase_add_test(tc, test_write_unwritable_directory);
  tcase_add_test(tc, test_write_fails_at_rename);
  tcase_add_test(tc, test_failed_write_keeps_old_file);
  tcase_add_test(tc, test_threads);
  tcase_add_test(tc, test_never_prints);
  suite_add_tcase(s, tc);
  return s;
}

static int remove_entry(const char *path, const struct stat *sb, int flag,
                        struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

int main(void) {
  SRunner *sr;
  int failed;
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/clara_test_io.XXXXXX",
           base && base[0] ? base : "/tmp");
  if (!mkdtemp(tmpdir)) {
    fprintf(stderr, "test_io: mkdtemp(%s): %s\n", tmpdir, strerror(errno));
    return EXIT_FAILURE;
  }
  sr = srunner_create(io_suite());
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  if (nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
    fprintf(stderr, "test_io: cannot remove %s: %s\n", tmpdir, strerror(errno));
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
