/* test_mr_file.c -- MR raw-data files (src/io/mr_file.c): ISMRMRD and
 * fastMRI.
 *
 * Every test works in a private directory made with mkdtemp() and removed at
 * the end. ISMRMRD and fastMRI files "from another tool" are built with raw
 * HDF5 calls; when ismrmrd_generate_cartesian_shepp_logan (Debian package
 * ismrmrd-tools) is on the PATH, files it makes are read back too, and those
 * tests are left out with a note on stderr when it is not. */
#include "clara_recon.h"

#include <check.h>
#include <hdf5.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];
static const char shepp_tool[] = "ismrmrd_generate_cartesian_shepp_logan";

static void tpath(char *buf, size_t n, const char *name) {
  int len = snprintf(buf, n, "%s/%s", tmpdir, name);
  ck_assert(len > 0 && (size_t)len < n);
}

#define ASSERT_STATUS(st, want)                                                \
  ck_assert_msg((st) == (want), "status %s, expected %s; message: \"%s\"",     \
                clara_status_name(st), clara_status_name(want),                \
                clara_last_error())

#define ASSERT_MESSAGE(fragment)                                               \
  ck_assert_msg(strstr(clara_last_error(), (fragment)) != NULL,                \
                "message \"%s\" does not contain \"%s\"", clara_last_error(),  \
                (fragment))

/* Opens 'path' expecting failure 'want' whose message holds every fragment
 * (NULL-terminated list). */
static void expect_open_fails(const char *path, clara_status want, ...) {
  clara_mr_file *f = (clara_mr_file *)1;
  clara_status st = clara_mr_file_open(path, &f);
  va_list ap;
  const char *frag;
  ASSERT_STATUS(st, want);
  ck_assert_ptr_null(f);
  ASSERT_MESSAGE("clara_mr_file_open: ");
  ASSERT_MESSAGE(path);
  va_start(ap, want);
  while ((frag = va_arg(ap, const char *)) != NULL)
    ASSERT_MESSAGE(frag);
  va_end(ap);
}

static size_t geom_floats(const clara_mr_geometry *g) {
  return (size_t)g->slices * g->coils * g->nz * g->ny * g->nx * 2;
}

/* A k-space sample of 'k' (complex index into [slice][coil][kz][ky][kx]). */
static const float *ks_at(const float *k, const clara_mr_geometry *g, int s,
                          int c, int z, int y, int x) {
  return k +
         (((((size_t)s * g->coils + c) * g->nz + z) * g->ny + y) * g->nx + x) *
             2;
}

/* ---- hand-built ISMRMRD files --------------------------------------------
 * The file's acquisition type has the members of ISMRMRD's that matter here
 * plus a few the reader must ignore (measurement_uid, available_channels,
 * segment, traj). */

typedef struct t_idx {
  uint16_t kspace_encode_step_1, kspace_encode_step_2, average, slice, contrast,
      phase, repetition, set, segment;
} t_idx;

typedef struct t_head {
  uint16_t version;
  uint64_t flags;
  uint32_t measurement_uid;
  uint16_t number_of_samples, available_channels, active_channels;
  uint16_t discard_pre, discard_post, center_sample, encoding_space_ref,
      trajectory_dimensions;
  float sample_time_us;
  t_idx idx;
} t_head;

typedef struct t_acq {
  t_head head;
  hvl_t traj;
  hvl_t data;
} t_acq;

#define FLAG(n) ((uint64_t)1 << ((n)-1))
#define F_NOISE FLAG(19)
#define F_REVERSE FLAG(22)
#define F_NAV FLAG(23)
#define F_PHASECORR FLAG(24)
#define F_DUMMY FLAG(27)

/* The value stored for coil c, sample s of acquisition 'tag' (re, im). */
static float val_re(int tag, int c, int s) {
  return (float)(tag * 1000 + c * 100 + s + 1);
}
static float val_im(int tag, int c, int s) {
  return -(float)(tag * 1000 + c * 100 + s + 1) * 0.5f;
}

/* Fills acquisition a with ns samples x ch channels of tag's values. */
static void acq_set(t_acq *a, int tag, uint64_t flags, int ns, int ch,
                    int center, int ky) {
  float *d = malloc((size_t)ns * ch * 2 * sizeof(float));
  ck_assert_ptr_nonnull(d);
  memset(a, 0, sizeof *a);
  a->head.version = 1;
  a->head.flags = flags;
  a->head.measurement_uid = 77;
  a->head.number_of_samples = (uint16_t)ns;
  a->head.available_channels = (uint16_t)ch;
  a->head.active_channels = (uint16_t)ch;
  a->head.center_sample = (uint16_t)center;
  a->head.sample_time_us = 5.0f;
  a->head.idx.kspace_encode_step_1 = (uint16_t)ky;
  a->head.idx.segment = 3;
  for (int c = 0; c < ch; c++)
    for (int s = 0; s < ns; s++) {
      d[((size_t)c * ns + s) * 2] = val_re(tag, c, s);
      d[((size_t)c * ns + s) * 2 + 1] = val_im(tag, c, s);
    }
  a->data.len = (size_t)ns * ch * 2;
  a->data.p = d;
}

static void acqs_free(t_acq *a, int n) {
  for (int i = 0; i < n; i++)
    free(a[i].data.p);
}

/* An ISMRMRD XML header. limit_y < 0 leaves encodingLimits out. */
static void make_xml(char *buf, size_t n, int ex, int ey, int ez, int rx,
                     int channels, int limit_y_max, int limit_y_center) {
  char chan[128] = "", limits[512] = "";
  if (channels > 0)
    snprintf(chan, sizeof chan,
             "<acquisitionSystemInformation><receiverChannels>%d"
             "</receiverChannels></acquisitionSystemInformation>",
             channels);
  if (limit_y_max >= 0)
    snprintf(limits, sizeof limits,
             "<encodingLimits><kspace_encoding_step_1><minimum>0</minimum>"
             "<maximum>%d</maximum><center>%d</center>"
             "</kspace_encoding_step_1></encodingLimits>",
             limit_y_max, limit_y_center);
  snprintf(buf, n,
           "<?xml version=\"1.0\"?>\n"
           "<ismrmrdHeader xmlns=\"http://www.ismrm.org/ISMRMRD\">%s"
           "<encoding><encodedSpace><matrixSize><x>%d</x><y>%d</y><z>%d</z>"
           "</matrixSize></encodedSpace><reconSpace><matrixSize><x>%d</x>"
           "<y>%d</y><z>%d</z></matrixSize></reconSpace>%s"
           "<trajectory>cartesian</trajectory></encoding></ismrmrdHeader>\n",
           chan, ex, ey, ez, rx, ey, ez, limits);
}

/* Writes a scalar-or-[1] variable-length string dataset. */
static void write_vlstring(hid_t loc, const char *name, const char *text,
                           int rank1) {
  hid_t t = H5Tcopy(H5T_C_S1);
  hsize_t one = 1;
  hid_t sp = rank1 ? H5Screate_simple(1, &one, NULL) : H5Screate(H5S_SCALAR);
  hid_t d;
  ck_assert(t >= 0 && sp >= 0);
  ck_assert(H5Tset_size(t, H5T_VARIABLE) >= 0);
  d = H5Dcreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(d >= 0);
  ck_assert(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, &text) >= 0);
  H5Dclose(d);
  H5Sclose(sp);
  H5Tclose(t);
}

/* Writes a fixed-length string dataset (scalar). */
static void write_fixstring(hid_t loc, const char *name, const char *text) {
  hid_t t = H5Tcopy(H5T_C_S1);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t d;
  ck_assert(H5Tset_size(t, strlen(text)) >= 0);
  ck_assert(H5Tset_strpad(t, H5T_STR_NULLPAD) >= 0);
  d = H5Dcreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(d >= 0);
  ck_assert(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, text) >= 0);
  H5Dclose(d);
  H5Sclose(sp);
  H5Tclose(t);
}

static hid_t acq_type(void) {
  hid_t idx = H5Tcreate(H5T_COMPOUND, sizeof(t_idx));
  hid_t head = H5Tcreate(H5T_COMPOUND, sizeof(t_head));
  hid_t vl = H5Tvlen_create(H5T_NATIVE_FLOAT);
  hid_t rec = H5Tcreate(H5T_COMPOUND, sizeof(t_acq));
  int bad = 0;
#define INS(t, s, m, ty) bad |= H5Tinsert(t, #m, HOFFSET(s, m), ty) < 0
  INS(idx, t_idx, kspace_encode_step_1, H5T_NATIVE_UINT16);
  INS(idx, t_idx, kspace_encode_step_2, H5T_NATIVE_UINT16);
  INS(idx, t_idx, average, H5T_NATIVE_UINT16);
  INS(idx, t_idx, slice, H5T_NATIVE_UINT16);
  INS(idx, t_idx, contrast, H5T_NATIVE_UINT16);
  INS(idx, t_idx, phase, H5T_NATIVE_UINT16);
  INS(idx, t_idx, repetition, H5T_NATIVE_UINT16);
  INS(idx, t_idx, set, H5T_NATIVE_UINT16);
  INS(idx, t_idx, segment, H5T_NATIVE_UINT16);
  INS(head, t_head, version, H5T_NATIVE_UINT16);
  INS(head, t_head, flags, H5T_NATIVE_UINT64);
  INS(head, t_head, measurement_uid, H5T_NATIVE_UINT32);
  INS(head, t_head, number_of_samples, H5T_NATIVE_UINT16);
  INS(head, t_head, available_channels, H5T_NATIVE_UINT16);
  INS(head, t_head, active_channels, H5T_NATIVE_UINT16);
  INS(head, t_head, discard_pre, H5T_NATIVE_UINT16);
  INS(head, t_head, discard_post, H5T_NATIVE_UINT16);
  INS(head, t_head, center_sample, H5T_NATIVE_UINT16);
  INS(head, t_head, encoding_space_ref, H5T_NATIVE_UINT16);
  INS(head, t_head, trajectory_dimensions, H5T_NATIVE_UINT16);
  INS(head, t_head, sample_time_us, H5T_NATIVE_FLOAT);
  INS(head, t_head, idx, idx);
  INS(rec, t_acq, head, head);
  INS(rec, t_acq, traj, vl);
  INS(rec, t_acq, data, vl);
#undef INS
  ck_assert(!bad);
  H5Tclose(idx);
  H5Tclose(head);
  H5Tclose(vl);
  return rec;
}

/* Writes an ISMRMRD file: /dataset/xml (unless xml is NULL) and
 * /dataset/data with the n acquisitions. */
static void write_ismrmrd(const char *path, const char *xml, const t_acq *acq,
                          int n) {
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t g, t, sp, d;
  hsize_t dim = (hsize_t)n;
  ck_assert(f >= 0);
  g = H5Gcreate2(f, "/dataset", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(g >= 0);
  if (xml)
    write_vlstring(g, "xml", xml, 1);
  t = acq_type();
  sp = H5Screate_simple(1, &dim, NULL);
  d = H5Dcreate2(g, "data", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(d >= 0);
  ck_assert(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, acq) >= 0);
  H5Dclose(d);
  H5Sclose(sp);
  H5Tclose(t);
  H5Gclose(g);
  ck_assert(H5Fclose(f) >= 0);
}

static clara_mr_file *open_ok(const char *path) {
  clara_mr_file *f = NULL;
  clara_status st = clara_mr_file_open(path, &f);
  ASSERT_STATUS(st, CLARA_OK);
  ck_assert_ptr_nonnull(f);
  return f;
}

static float *kspace_of(const clara_mr_file *f, int index,
                        clara_mr_geometry *g) {
  float *k;
  ASSERT_STATUS(clara_mr_file_geometry(f, index, g), CLARA_OK);
  k = malloc(geom_floats(g) * sizeof(float));
  ck_assert_ptr_nonnull(k);
  ASSERT_STATUS(clara_mr_file_kspace(f, index, k), CLARA_OK);
  return k;
}

/* Checks that line (s, z, y) of every coil holds acquisition tag's samples
 * (kx0 + j <- sample first + j, or reversed), scaled by 'scale', and zeros
 * elsewhere on the line. */
static void check_line(const float *k, const clara_mr_geometry *g, int s, int z,
                       int y, int tag, int ns, int kx0, int first, int kept,
                       int reversed) {
  for (int c = 0; c < g->coils; c++)
    for (int x = 0; x < g->nx; x++) {
      const float *v = ks_at(k, g, s, c, z, y, x);
      float re = 0, im = 0;
      if (x >= kx0 && x < kx0 + kept) {
        int smp = first + (x - kx0);
        if (reversed)
          smp = ns - 1 - smp;
        re = val_re(tag, c, smp);
        im = val_im(tag, c, smp);
      }
      ck_assert_msg(v[0] == re && v[1] == im,
                    "slice %d coil %d kz %d ky %d kx %d: (%g, %g), expected "
                    "(%g, %g)",
                    s, c, z, y, x, v[0], v[1], re, im);
    }
}

static void check_zero_line(const float *k, const clara_mr_geometry *g, int s,
                            int z, int y) {
  for (int c = 0; c < g->coils; c++)
    for (int x = 0; x < g->nx; x++) {
      const float *v = ks_at(k, g, s, c, z, y, x);
      ck_assert_msg(v[0] == 0 && v[1] == 0,
                    "slice %d coil %d ky %d kx %d: (%g, %g), expected 0", s, c,
                    y, x, v[0], v[1]);
    }
}

/* ---- ISMRMRD routing ----------------------------------------------------- */

enum { NX = 8, NY = 6, CH = 2 };

START_TEST(test_ismrmrd_routing) {
  char path[512], xml[2048];
  t_acq a[32];
  int n = 0, tag = 1;
  clara_mr_file *f;
  clara_mr_geometry g;
  float *k;
  int samples, ncoils;
  const float *noise;

  make_xml(xml, sizeof xml, NX, NY, 1, NX / 2, CH, NY - 1, NY / 2);
  /* two noise scans of 8 and 5 samples */
  acq_set(&a[n++], 90, F_NOISE, NX, CH, 0, 0);
  acq_set(&a[n++], 91, F_NOISE, 5, CH, 0, 0);
  /* scans to skip; their huge tags would show if placed */
  acq_set(&a[n++], 50, F_NAV, NX, CH, NX / 2, 0);
  acq_set(&a[n++], 51, F_DUMMY, NX, CH, NX / 2, 1);
  acq_set(&a[n++], 52, F_PHASECORR, NX, CH, NX / 2, 2);
  /* contrast 0, repetition 0: every line, line 3 reversed */
  for (int y = 0; y < NY; y++)
    acq_set(&a[n++], tag++, y == 3 ? F_REVERSE : 0, NX, CH, NX / 2, y);
  /* contrast 1, repetition 0: lines 1..4 */
  for (int y = 1; y <= 4; y++) {
    acq_set(&a[n], tag++, 0, NX, CH, NX / 2, y);
    a[n++].head.idx.contrast = 1;
  }
  /* contrast 0, repetition 1: lines 0..5, line 2 twice (two averages) */
  for (int y = 0; y < NY; y++) {
    acq_set(&a[n], tag++, 0, NX, CH, NX / 2, y);
    a[n++].head.idx.repetition = 1;
  }
  acq_set(&a[n], 40, 0, NX, CH, NX / 2, 2);
  a[n].head.idx.repetition = 1;
  a[n++].head.idx.average = 1;
  tpath(path, sizeof path, "routing.h5");
  write_ismrmrd(path, xml, a, n);
  acqs_free(a, n);

  f = open_ok(path);
  ck_assert_str_eq(clara_mr_file_format(f), "ismrmrd");
  ck_assert_int_eq(clara_mr_file_count(f), 3);

  /* noise: [coils][8 + 5] */
  ASSERT_STATUS(clara_mr_file_noise(f, &ncoils, &samples, &noise), CLARA_OK);
  ck_assert_int_eq(ncoils, CH);
  ck_assert_int_eq(samples, 13);
  ck_assert_ptr_nonnull(noise);
  for (int c = 0; c < CH; c++)
    for (int s = 0; s < 13; s++) {
      int t = s < 8 ? 90 : 91, smp = s < 8 ? s : s - 8;
      ck_assert_float_eq(noise[((size_t)c * 13 + s) * 2], val_re(t, c, smp));
      ck_assert_float_eq(noise[((size_t)c * 13 + s) * 2 + 1],
                         val_im(t, c, smp));
    }

  /* dataset 0: contrast 0, repetition 0 */
  k = kspace_of(f, 0, &g);
  ck_assert_int_eq(g.coils, CH);
  ck_assert_int_eq(g.nx, NX);
  ck_assert_int_eq(g.ny, NY);
  ck_assert_int_eq(g.nz, 1);
  ck_assert_int_eq(g.slices, 1);
  ck_assert_int_eq(g.recon_nx, NX / 2);
  ck_assert_int_eq(g.ky_first, 0);
  ck_assert_int_eq(g.ky_last, NY - 1);
  ck_assert_int_eq(g.kx_first, 0);
  ck_assert_int_eq(g.kx_last, NX - 1);
  for (int y = 0; y < NY; y++)
    check_line(k, &g, 0, 0, y, 1 + y, NX, 0, 0, NX, y == 3);
  free(k);

  /* dataset 1: contrast 0, repetition 1, line 2 the mean of two */
  k = kspace_of(f, 1, &g);
  ck_assert_int_eq(g.ky_first, 0);
  ck_assert_int_eq(g.ky_last, NY - 1);
  for (int y = 0; y < NY; y++) {
    if (y == 2)
      continue;
    check_line(k, &g, 0, 0, y, 11 + y, NX, 0, 0, NX, 0);
  }
  for (int c = 0; c < CH; c++)
    for (int x = 0; x < NX; x++) {
      const float *v = ks_at(k, &g, 0, c, 0, 2, x);
      ck_assert_float_eq_tol(v[0], 0.5f * (val_re(13, c, x) + val_re(40, c, x)),
                             1e-3f);
      ck_assert_float_eq_tol(v[1], 0.5f * (val_im(13, c, x) + val_im(40, c, x)),
                             1e-3f);
    }
  free(k);

  /* dataset 2: contrast 1, lines 1..4 only */
  k = kspace_of(f, 2, &g);
  ck_assert_int_eq(g.ky_first, 1);
  ck_assert_int_eq(g.ky_last, 4);
  check_zero_line(k, &g, 0, 0, 0);
  check_zero_line(k, &g, 0, 0, 5);
  for (int y = 1; y <= 4; y++)
    check_line(k, &g, 0, 0, y, 7 + (y - 1), NX, 0, 0, NX, 0);
  free(k);

  /* index checks */
  ASSERT_STATUS(clara_mr_file_geometry(f, 3, &g), CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("index");
  ASSERT_STATUS(clara_mr_file_geometry(f, -1, &g), CLARA_ERR_INVALID_ARG);
  {
    int sl = 9, ny = 9, nx = 9;
    const float *rss = (const float *)1;
    ASSERT_STATUS(clara_mr_file_reference(f, &sl, &ny, &nx, &rss), CLARA_OK);
    ck_assert_ptr_null(rss);
    ck_assert_int_eq(sl, 0);
  }
  clara_mr_file_close(f);
}
END_TEST

/* Asymmetric echo with discards, several slices, a 3D encoding and the
 * encodingLimits centre shift. */
START_TEST(test_ismrmrd_asymmetric_3d) {
  char path[512], xml[2048];
  t_acq a[64];
  int n = 0;
  clara_mr_file *f;
  clara_mr_geometry g;
  float *k;
  enum { X = 16, Y = 8, Z = 2, NS = 12, CENTER = 4, PRE = 1, POST = 2 };

  /* encoded 16 x 8 x 2; encode steps 0..5 with centre 2 (6 lines of 8,
   * partial Fourier): they shift by 8/2 - 2 = 2 to ky 2..7 */
  make_xml(xml, sizeof xml, X, Y, Z, X / 2, 0, 5, 2);
  for (int s = 0; s < 2; s++)
    for (int z = 0; z < Z; z++)
      for (int y = 0; y < 6; y++) {
        acq_set(&a[n], 100 + n, 0, NS, 1, CENTER, y);
        a[n].head.discard_pre = PRE;
        a[n].head.discard_post = POST;
        a[n].head.idx.kspace_encode_step_2 = (uint16_t)z;
        a[n].head.idx.slice = (uint16_t)s;
        n++;
      }
  tpath(path, sizeof path, "asym.h5");
  write_ismrmrd(path, xml, a, n);
  acqs_free(a, n);

  f = open_ok(path);
  ck_assert_int_eq(clara_mr_file_count(f), 1);
  k = kspace_of(f, 0, &g);
  ck_assert_int_eq(g.coils, 1);
  ck_assert_int_eq(g.nx, X);
  ck_assert_int_eq(g.ny, Y);
  ck_assert_int_eq(g.nz, Z);
  ck_assert_int_eq(g.slices, 2);
  ck_assert_int_eq(g.recon_nx, X / 2);
  ck_assert_int_eq(g.ky_first, 2);
  ck_assert_int_eq(g.ky_last, 7);
  /* sample s sits at kx = X/2 - CENTER + s; kept samples PRE..NS-POST-1 */
  ck_assert_int_eq(g.kx_first, X / 2 - CENTER + PRE);
  ck_assert_int_eq(g.kx_last, X / 2 - CENTER + NS - POST - 1);
  n = 0;
  for (int s = 0; s < 2; s++)
    for (int z = 0; z < Z; z++) {
      check_zero_line(k, &g, s, z, 0);
      check_zero_line(k, &g, s, z, 1);
      for (int y = 0; y < 6; y++, n++)
        check_line(k, &g, s, z, y + 2, 100 + n, NS, X / 2 - CENTER + PRE, PRE,
                   NS - PRE - POST, 0);
    }
  free(k);
  {
    int samples = 5, ncoils = -1;
    const float *noise = (const float *)1;
    ASSERT_STATUS(clara_mr_file_noise(f, &ncoils, &samples, &noise), CLARA_OK);
    ck_assert_int_eq(samples, 0);
    ck_assert_ptr_null(noise);
  }
  clara_mr_file_close(f);
}
END_TEST

/* The XML as a fixed-length scalar string, and a header without limits. */
START_TEST(test_ismrmrd_fixed_string_xml) {
  char path[512], xml[2048];
  t_acq a[NY];
  hid_t fid, g, t, sp, d;
  hsize_t dim = NY;
  clara_mr_file *f;
  clara_mr_geometry geo;
  float *k;

  make_xml(xml, sizeof xml, NX, NY, 1, NX, 0, -1, 0);
  for (int y = 0; y < NY; y++)
    acq_set(&a[y], 200 + y, 0, NX, 1, NX / 2, y);
  tpath(path, sizeof path, "fixed.h5");
  fid = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  g = H5Gcreate2(fid, "/dataset", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  write_fixstring(g, "xml", xml);
  t = acq_type();
  sp = H5Screate_simple(1, &dim, NULL);
  d = H5Dcreate2(g, "data", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(d >= 0);
  ck_assert(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, a) >= 0);
  H5Dclose(d);
  H5Sclose(sp);
  H5Tclose(t);
  H5Gclose(g);
  H5Fclose(fid);
  acqs_free(a, NY);

  f = open_ok(path);
  k = kspace_of(f, 0, &geo);
  ck_assert_int_eq(geo.recon_nx, NX);
  for (int y = 0; y < NY; y++)
    check_line(k, &geo, 0, 0, y, 200 + y, NX, 0, 0, NX, 0);
  free(k);
  clara_mr_file_close(f);
}
END_TEST

/* ---- ISMRMRD errors ------------------------------------------------------ */

enum {
  BAD_KY,
  BAD_KZ,
  BAD_CHANNELS,
  BAD_DATA_LEN,
  BAD_SAMPLES,
  BAD_RECEIVERS,
  BAD_XML,
  BAD_XML_ROOT,
  BAD_XML_MATRIX,
  BAD_XML_MISSING,
  BAD_ENC_REF,
  BAD_COUNT
};

START_TEST(test_ismrmrd_bad) {
  char path[512], xml[2048], name[64];
  t_acq a[8];
  const char *frag1 = NULL, *frag2 = NULL;
  int n = 4;
  clara_status want = CLARA_ERR_FORMAT;

  make_xml(xml, sizeof xml, NX, NY, 1, NX / 2, CH, -1, 0);
  for (int i = 0; i < n; i++)
    acq_set(&a[i], i + 1, 0, NX, CH, NX / 2, i);
  switch (_i) {
  case BAD_KY:
    a[3].head.idx.kspace_encode_step_1 = NY;
    frag1 = "acquisition 3";
    frag2 = "kspace_encode_step_1";
    break;
  case BAD_KZ:
    a[2].head.idx.kspace_encode_step_2 = 1;
    frag1 = "acquisition 2";
    frag2 = "kspace_encode_step_2";
    break;
  case BAD_CHANNELS:
    free(a[2].data.p);
    acq_set(&a[2], 9, 0, NX, CH + 1, NX / 2, 2);
    frag1 = "acquisition 2";
    frag2 = "active_channels";
    break;
  case BAD_DATA_LEN:
    a[1].data.len -= 2;
    frag1 = "acquisition 1";
    frag2 = "floats expected";
    break;
  case BAD_SAMPLES: /* more samples than the encoded matrix holds */
    free(a[0].data.p);
    acq_set(&a[0], 9, 0, 2 * NX, CH, NX, 0);
    frag1 = "acquisition 0";
    frag2 = "number_of_samples";
    break;
  case BAD_RECEIVERS:
    make_xml(xml, sizeof xml, NX, NY, 1, NX / 2, CH + 2, -1, 0);
    frag1 = "receiverChannels";
    frag2 = "active_channels 2";
    break;
  case BAD_XML:
    snprintf(xml, sizeof xml, "<ismrmrdHeader><encoding>oops</ismrmrdHeader");
    frag1 = "/dataset/xml";
    frag2 = "does not parse";
    break;
  case BAD_XML_ROOT:
    snprintf(xml, sizeof xml, "<?xml version=\"1.0\"?><other/>");
    frag1 = "/dataset/xml";
    frag2 = "ismrmrdHeader";
    break;
  case BAD_XML_MATRIX:
    make_xml(xml, sizeof xml, NX, NY, 1, NX / 2, CH, -1, 0);
    {
      char *p = strstr(xml, "<y>6</y>");
      ck_assert_ptr_nonnull(p);
      memcpy(p, "<y>x</y>", 8);
    }
    frag1 = "encodedSpace/matrixSize/y";
    frag2 = "found \"x\"";
    break;
  case BAD_XML_MISSING:
    frag1 = "/dataset/xml";
    frag2 = "missing";
    break;
  case BAD_ENC_REF:
    a[1].head.encoding_space_ref = 1;
    frag1 = "acquisition 1";
    frag2 = "encoding_space_ref";
    break;
  default:
    ck_abort();
  }
  snprintf(name, sizeof name, "bad%d.h5", _i);
  tpath(path, sizeof path, name);
  write_ismrmrd(path, _i == BAD_XML_MISSING ? NULL : xml, a, n);
  acqs_free(a, n);
  expect_open_fails(path, want, frag1, frag2, (const char *)NULL);
}
END_TEST

/* /dataset/data of the wrong type: plain floats, and a head without flags. */
START_TEST(test_ismrmrd_wrong_dtype) {
  char path[512], xml[2048];
  hid_t f, g, sp, d, head, rec;
  hsize_t dim = 4;
  float vals[4] = {1, 2, 3, 4};
  struct {
    struct {
      uint16_t version;
    } head;
  } recs[4];

  make_xml(xml, sizeof xml, NX, NY, 1, NX / 2, 0, -1, 0);
  tpath(path, sizeof path, "dtype_float.h5");
  f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  g = H5Gcreate2(f, "/dataset", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  write_vlstring(g, "xml", xml, 0);
  sp = H5Screate_simple(1, &dim, NULL);
  d = H5Dcreate2(g, "data", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                 H5P_DEFAULT);
  ck_assert(d >= 0);
  ck_assert(
      H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, vals) >= 0);
  H5Dclose(d);
  H5Sclose(sp);
  H5Gclose(g);
  H5Fclose(f);
  expect_open_fails(path, CLARA_ERR_FORMAT, "/dataset/data", "compound",
                    "found type class float", (const char *)NULL);

  memset(recs, 0, sizeof recs);
  tpath(path, sizeof path, "dtype_head.h5");
  f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  g = H5Gcreate2(f, "/dataset", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  write_vlstring(g, "xml", xml, 1);
  head = H5Tcreate(H5T_COMPOUND, sizeof recs[0].head);
  ck_assert(H5Tinsert(head, "version", 0, H5T_NATIVE_UINT16) >= 0);
  rec = H5Tcreate(H5T_COMPOUND, sizeof recs[0]);
  ck_assert(H5Tinsert(rec, "head", 0, head) >= 0);
  sp = H5Screate_simple(1, &dim, NULL);
  d = H5Dcreate2(g, "data", rec, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(d >= 0);
  ck_assert(H5Dwrite(d, rec, H5S_ALL, H5S_ALL, H5P_DEFAULT, recs) >= 0);
  H5Dclose(d);
  H5Sclose(sp);
  H5Tclose(rec);
  H5Tclose(head);
  H5Gclose(g);
  H5Fclose(f);
  expect_open_fails(path, CLARA_ERR_FORMAT, "/dataset/data",
                    "member head.flags missing", (const char *)NULL);
}
END_TEST

START_TEST(test_truncated_and_foreign) {
  char path[512], xml[2048];
  t_acq a[NY];
  struct stat sb;
  FILE *fp;
  hid_t f, d, sp;
  hsize_t dim = 3;
  float vals[3] = {0, 0, 0};

  /* an ISMRMRD file cut in half: IO */
  make_xml(xml, sizeof xml, NX, NY, 1, NX / 2, 0, -1, 0);
  for (int y = 0; y < NY; y++)
    acq_set(&a[y], y + 1, 0, NX, CH, NX / 2, y);
  tpath(path, sizeof path, "truncated.h5");
  write_ismrmrd(path, xml, a, NY);
  acqs_free(a, NY);
  ck_assert_int_eq(stat(path, &sb), 0);
  ck_assert_int_eq(truncate(path, sb.st_size / 2), 0);
  expect_open_fails(path, CLARA_ERR_IO, "truncated", (const char *)NULL);

  /* a text file: IO */
  tpath(path, sizeof path, "notes.txt");
  fp = fopen(path, "w");
  ck_assert_ptr_nonnull(fp);
  fputs("this is not HDF5\n", fp);
  fclose(fp);
  expect_open_fails(path, CLARA_ERR_IO, "not an HDF5 file", (const char *)NULL);

  /* no such file: IO */
  tpath(path, sizeof path, "absent.h5");
  expect_open_fails(path, CLARA_ERR_IO, "cannot open", (const char *)NULL);

  /* HDF5, but neither layout: FORMAT */
  tpath(path, sizeof path, "other.h5");
  f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  sp = H5Screate_simple(1, &dim, NULL);
  d = H5Dcreate2(f, "/image", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                 H5P_DEFAULT);
  ck_assert(
      H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, vals) >= 0);
  H5Dclose(d);
  H5Sclose(sp);
  H5Fclose(f);
  expect_open_fails(path, CLARA_ERR_FORMAT, "neither an ISMRMRD",
                    "(/dataset/data)", "fastMRI (/kspace)", (const char *)NULL);
}
END_TEST

/* ---- fastMRI ------------------------------------------------------------- */

typedef struct t_cplx {
  float r, i;
} t_cplx;

/* Writes /kspace (complex64 as h5py does: compound r, i) of the given rank
 * and dims, with values v(index); lines y in [zero_lo, zero_hi) and the
 * last 'zero_tail' lines of the last axis are zero. */
static void write_fastmri_kspace(hid_t f, int rank, const hsize_t *dims,
                                 int zero_head, int zero_tail) {
  hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(t_cplx));
  hid_t sp, d;
  size_t n = 1, last = (size_t)dims[rank - 1];
  t_cplx *buf;
  for (int i = 0; i < rank; i++)
    n *= (size_t)dims[i];
  buf = malloc(n * sizeof *buf);
  ck_assert_ptr_nonnull(buf);
  for (size_t i = 0; i < n; i++) {
    size_t y = i % last;
    int zero = (int)y < zero_head || (int)y >= (int)last - zero_tail;
    buf[i].r = zero ? 0.0f : (float)i + 0.25f;
    buf[i].i = zero ? 0.0f : -(float)i * 2.0f;
  }
  ck_assert(H5Tinsert(t, "r", HOFFSET(t_cplx, r), H5T_NATIVE_FLOAT) >= 0);
  ck_assert(H5Tinsert(t, "i", HOFFSET(t_cplx, i), H5T_NATIVE_FLOAT) >= 0);
  sp = H5Screate_simple(rank, dims, NULL);
  d = H5Dcreate2(f, "/kspace", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(d >= 0);
  ck_assert(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
  H5Dclose(d);
  H5Sclose(sp);
  H5Tclose(t);
  free(buf);
}

START_TEST(test_fastmri_multicoil) {
  /* fastMRI layout: [slices][coils][x = readout][y = phase encoding] */
  enum { S = 2, C = 4, X = 24, Y = 16, RX = 12, RY = 10 };
  const hsize_t dims[4] = {S, C, X, Y};
  const hsize_t rdims[3] = {S, RX, RY};
  char path[512], xml[2048];
  float rss[S * RX * RY];
  clara_mr_file *f;
  clara_mr_geometry g;
  const float *ref;
  float *k;
  int sl, ny, nx;
  hid_t fid, sp, d;

  tpath(path, sizeof path, "fastmri.h5");
  fid = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(fid >= 0);
  /* lines y = 0, 1 and 15 are zero padding */
  write_fastmri_kspace(fid, 4, dims, 2, 1);
  make_xml(xml, sizeof xml, X, Y, 1, RX, 0, -1, 0);
  write_vlstring(fid, "ismrmrd_header", xml, 0);
  for (int i = 0; i < S * RX * RY; i++)
    rss[i] = (float)i * 0.5f;
  sp = H5Screate_simple(3, rdims, NULL);
  d = H5Dcreate2(fid, "/reconstruction_rss", H5T_IEEE_F32LE, sp, H5P_DEFAULT,
                 H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, rss) >=
            0);
  H5Dclose(d);
  H5Sclose(sp);
  H5Fclose(fid);

  f = open_ok(path);
  ck_assert_str_eq(clara_mr_file_format(f), "fastmri");
  ck_assert_int_eq(clara_mr_file_count(f), 1);
  k = kspace_of(f, 0, &g);
  ck_assert_int_eq(g.coils, C);
  ck_assert_int_eq(g.nx, X);
  ck_assert_int_eq(g.ny, Y);
  ck_assert_int_eq(g.nz, 1);
  ck_assert_int_eq(g.slices, S);
  ck_assert_int_eq(g.recon_nx, RX);
  ck_assert_int_eq(g.ky_first, 2);
  ck_assert_int_eq(g.ky_last, Y - 2);
  ck_assert_int_eq(g.kx_first, 0);
  ck_assert_int_eq(g.kx_last, X - 1);
  /* kspace[s][c][0][y][x] == file[s][c][x][y], exactly */
  for (int s = 0; s < S; s++)
    for (int c = 0; c < C; c++)
      for (int y = 0; y < Y; y++)
        for (int x = 0; x < X; x++) {
          size_t i = (((size_t)s * C + c) * X + x) * Y + y;
          int zero = y < 2 || y >= Y - 1;
          const float *v = ks_at(k, &g, s, c, 0, y, x);
          ck_assert_msg(v[0] == (zero ? 0.0f : (float)i + 0.25f) &&
                            v[1] == (zero ? 0.0f : -(float)i * 2.0f),
                        "s %d c %d y %d x %d: (%g, %g)", s, c, y, x, v[0],
                        v[1]);
        }
  free(k);
  /* reference [slices][y][x] from the file's [slices][x][y] */
  ASSERT_STATUS(clara_mr_file_reference(f, &sl, &ny, &nx, &ref), CLARA_OK);
  ck_assert_ptr_nonnull(ref);
  ck_assert_int_eq(sl, S);
  ck_assert_int_eq(ny, RY);
  ck_assert_int_eq(nx, RX);
  for (int s = 0; s < S; s++)
    for (int x = 0; x < RX; x++)
      for (int y = 0; y < RY; y++)
        ck_assert_float_eq(ref[((size_t)s * RY + y) * RX + x],
                           rss[((size_t)s * RX + x) * RY + y]);
  {
    int samples = 3, ncoils = -1;
    const float *noise = (const float *)1;
    ASSERT_STATUS(clara_mr_file_noise(f, &ncoils, &samples, &noise), CLARA_OK);
    ck_assert_int_eq(samples, 0);
    ck_assert_ptr_null(noise);
  }
  clara_mr_file_close(f);
}
END_TEST

/* Single-coil [slices][x][y] without a header; and a file whose header says
 * it is stored [y][x] already. */
START_TEST(test_fastmri_singlecoil) {
  enum { S = 3, X = 8, Y = 6 };
  const hsize_t dims[3] = {S, X, Y};
  char path[512], xml[2048];
  clara_mr_file *f;
  clara_mr_geometry g;
  float *k;
  hid_t fid;

  tpath(path, sizeof path, "single.h5");
  fid = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  write_fastmri_kspace(fid, 3, dims, 0, 0);
  H5Fclose(fid);
  f = open_ok(path);
  k = kspace_of(f, 0, &g);
  ck_assert_int_eq(g.coils, 1);
  ck_assert_int_eq(g.nx, X);
  ck_assert_int_eq(g.ny, Y);
  ck_assert_int_eq(g.slices, S);
  ck_assert_int_eq(g.recon_nx, X);
  ck_assert_int_eq(g.ky_first, 0);
  ck_assert_int_eq(g.ky_last, Y - 1);
  for (int s = 0; s < S; s++)
    for (int y = 0; y < Y; y++)
      for (int x = 0; x < X; x++) {
        size_t i = ((size_t)s * X + x) * Y + y;
        ck_assert_float_eq(ks_at(k, &g, s, 0, 0, y, x)[0], (float)i + 0.25f);
      }
  free(k);
  {
    int sl = 1, ny = 1, nx = 1;
    const float *ref = (const float *)1;
    ASSERT_STATUS(clara_mr_file_reference(f, &sl, &ny, &nx, &ref), CLARA_OK);
    ck_assert_ptr_null(ref);
    ck_assert_int_eq(sl + ny + nx, 0);
  }
  clara_mr_file_close(f);

  /* stored [y][x]: the header's encoded x matches the last axis */
  tpath(path, sizeof path, "single_yx.h5");
  fid = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  write_fastmri_kspace(fid, 3, dims, 0, 0);
  make_xml(xml, sizeof xml, Y, X, 1, Y / 2, 0, -1, 0);
  write_vlstring(fid, "ismrmrd_header", xml, 0);
  H5Fclose(fid);
  f = open_ok(path);
  k = kspace_of(f, 0, &g);
  ck_assert_int_eq(g.nx, Y);
  ck_assert_int_eq(g.ny, X);
  ck_assert_int_eq(g.recon_nx, Y / 2);
  for (size_t i = 0; i < (size_t)S * X * Y; i++)
    ck_assert_float_eq(k[2 * i], (float)i + 0.25f);
  free(k);
  clara_mr_file_close(f);
}
END_TEST

START_TEST(test_fastmri_bad) {
  char path[512], xml[2048];
  hsize_t dims[4] = {2, 3, 4, 5};
  hid_t fid, sp, d;
  float *vals = calloc(2 * 3 * 4 * 5 * 2, sizeof(float));
  ck_assert_ptr_nonnull(vals);

  /* float32 instead of complex */
  tpath(path, sizeof path, "fm_float.h5");
  fid = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  sp = H5Screate_simple(4, dims, NULL);
  d = H5Dcreate2(fid, "/kspace", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                 H5P_DEFAULT);
  ck_assert(
      H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, vals) >= 0);
  H5Dclose(d);
  H5Sclose(sp);
  H5Fclose(fid);
  expect_open_fails(path, CLARA_ERR_FORMAT, "/kspace", "complex64",
                    "found type class float", (const char *)NULL);

  /* rank 2 */
  tpath(path, sizeof path, "fm_rank.h5");
  fid = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  write_fastmri_kspace(fid, 2, dims + 2, 0, 0);
  H5Fclose(fid);
  expect_open_fails(path, CLARA_ERR_FORMAT, "/kspace", "found rank 2",
                    (const char *)NULL);

  /* reference with the wrong slice count */
  tpath(path, sizeof path, "fm_ref.h5");
  fid = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  write_fastmri_kspace(fid, 4, dims, 0, 0);
  {
    hsize_t rd[3] = {3, 2, 2};
    sp = H5Screate_simple(3, rd, NULL);
    d = H5Dcreate2(fid, "/reconstruction_rss", H5T_IEEE_F32LE, sp, H5P_DEFAULT,
                   H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                       vals) >= 0);
    H5Dclose(d);
    H5Sclose(sp);
  }
  H5Fclose(fid);
  expect_open_fails(path, CLARA_ERR_FORMAT, "/reconstruction_rss",
                    "2 slices expected", "found 3", (const char *)NULL);

  /* a header that does not parse */
  tpath(path, sizeof path, "fm_xml.h5");
  fid = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  write_fastmri_kspace(fid, 4, dims, 0, 0);
  snprintf(xml, sizeof xml, "<ismrmrdHeader><encoding>");
  write_vlstring(fid, "ismrmrd_header", xml, 0);
  H5Fclose(fid);
  expect_open_fails(path, CLARA_ERR_FORMAT, "/ismrmrd_header", "does not parse",
                    (const char *)NULL);
  free(vals);
}
END_TEST

/* ---- arguments, printing ------------------------------------------------- */

START_TEST(test_null_args) {
  clara_mr_file *f = (clara_mr_file *)1;
  clara_mr_geometry g;
  int a, b, c;
  const float *p;
  ASSERT_STATUS(clara_mr_file_open(NULL, &f), CLARA_ERR_INVALID_ARG);
  ck_assert_ptr_null(f);
  ASSERT_MESSAGE("path");
  ASSERT_STATUS(clara_mr_file_open("x.h5", NULL), CLARA_ERR_INVALID_ARG);
  ASSERT_STATUS(clara_mr_file_open("", &f), CLARA_ERR_INVALID_ARG);
  ASSERT_STATUS(clara_mr_file_geometry(NULL, 0, &g), CLARA_ERR_INVALID_ARG);
  ASSERT_STATUS(clara_mr_file_kspace(NULL, 0, NULL), CLARA_ERR_INVALID_ARG);
  ASSERT_STATUS(clara_mr_file_noise(NULL, &a, &b, &p), CLARA_ERR_INVALID_ARG);
  ASSERT_STATUS(clara_mr_file_reference(NULL, &a, &b, &c, &p),
                CLARA_ERR_INVALID_ARG);
  ck_assert_int_eq(clara_mr_file_count(NULL), 0);
  ck_assert_ptr_null(clara_mr_file_format(NULL));
  clara_mr_file_close(NULL);
}
END_TEST

START_TEST(test_never_prints) {
  char bad_xml[512], trunc[512], log[512], xml[2048];
  t_acq a[NY];
  struct stat sb;
  int saved, fd;

  snprintf(xml, sizeof xml, "<ismrmrdHeader><<<");
  for (int y = 0; y < NY; y++)
    acq_set(&a[y], y + 1, 0, NX, CH, NX / 2, y);
  tpath(bad_xml, sizeof bad_xml, "quiet_xml.h5");
  write_ismrmrd(bad_xml, xml, a, NY);
  make_xml(xml, sizeof xml, NX, NY, 1, NX / 2, 0, -1, 0);
  tpath(trunc, sizeof trunc, "quiet_trunc.h5");
  write_ismrmrd(trunc, xml, a, NY);
  acqs_free(a, NY);
  ck_assert_int_eq(stat(trunc, &sb), 0);
  ck_assert_int_eq(truncate(trunc, sb.st_size / 2), 0);
  tpath(log, sizeof log, "stderr.log");

  fflush(stderr);
  saved = dup(2);
  fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ck_assert(saved >= 0 && fd >= 0);
  ck_assert_int_eq(dup2(fd, 2), 2);
  close(fd);
  {
    clara_mr_file *f;
    clara_status s1 = clara_mr_file_open(bad_xml, &f);
    clara_status s2 = clara_mr_file_open(trunc, &f);
    fflush(stderr);
    ck_assert_int_eq(dup2(saved, 2), 2);
    close(saved);
    ASSERT_STATUS(s1, CLARA_ERR_FORMAT);
    ASSERT_STATUS(s2, CLARA_ERR_IO);
  }
  ck_assert_int_eq(stat(log, &sb), 0);
  ck_assert_msg(sb.st_size == 0, "%lld bytes printed to stderr",
                (long long)sb.st_size);
}
END_TEST

/* Several threads opening files at once (HDF5 and libxml2 behind the
 * library's lock and per-call handlers); each gets the same result. */
typedef struct thread_arg {
  const char *good, *bad;
  int ok;
} thread_arg;

static void *thread_main(void *p) {
  thread_arg *t = p;
  t->ok = 1;
  for (int i = 0; i < 8; i++) {
    clara_mr_file *f = NULL;
    clara_mr_geometry g;
    if (clara_mr_file_open(t->good, &f) != CLARA_OK ||
        clara_mr_file_count(f) != 1 ||
        clara_mr_file_geometry(f, 0, &g) != CLARA_OK || g.ny != NY ||
        g.nx != NX)
      t->ok = 0;
    clara_mr_file_close(f);
    if (clara_mr_file_open(t->bad, &f) != CLARA_ERR_FORMAT || f != NULL ||
        !strstr(clara_last_error(), "does not parse"))
      t->ok = 0;
  }
  return NULL;
}

START_TEST(test_threads) {
  char good[512], bad[512], xml[2048];
  t_acq a[NY];
  pthread_t th[4];
  thread_arg args[4];

  for (int y = 0; y < NY; y++)
    acq_set(&a[y], y + 1, 0, NX, CH, NX / 2, y);
  make_xml(xml, sizeof xml, NX, NY, 1, NX / 2, CH, -1, 0);
  tpath(good, sizeof good, "thread_good.h5");
  write_ismrmrd(good, xml, a, NY);
  tpath(bad, sizeof bad, "thread_bad.h5");
  write_ismrmrd(bad, "<ismrmrdHeader>", a, NY);
  acqs_free(a, NY);
  for (int i = 0; i < 4; i++) {
    args[i].good = good;
    args[i].bad = bad;
    ck_assert_int_eq(pthread_create(&th[i], NULL, thread_main, &args[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    ck_assert_msg(args[i].ok, "thread %d got a wrong result", i);
  }
}
END_TEST

/* ---- files from ismrmrd_generate_cartesian_shepp_logan ------------------- */

static int tool_on_path(const char *tool) {
  const char *path = getenv("PATH");
  char buf[1024];
  while (path && *path) {
    size_t n = strcspn(path, ":");
    if (n > 0 && n < sizeof buf - strlen(tool) - 2) {
      memcpy(buf, path, n);
      buf[n] = '/';
      strcpy(buf + n + 1, tool);
      if (access(buf, X_OK) == 0)
        return 1;
    }
    path += n;
    if (*path == ':')
      path++;
  }
  return 0;
}

static void run_shepp(const char *out, const char *args) {
  char cmd[1024];
  int len = snprintf(cmd, sizeof cmd, "%s %s -o '%s' >/dev/null 2>&1",
                     shepp_tool, args, out);
  ck_assert(len > 0 && (size_t)len < sizeof cmd);
  ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
}

/* Energy of line ky summed over coils (slice 0, kz 0). */
static double line_energy(const float *k, const clara_mr_geometry *g, int y) {
  double e = 0;
  for (int c = 0; c < g->coils; c++)
    for (int x = 0; x < g->nx; x++) {
      const float *v = ks_at(k, g, 0, c, 0, y, x);
      e += (double)v[0] * v[0] + (double)v[1] * v[1];
    }
  return e;
}

START_TEST(test_shepp_logan_full) {
  enum { M = 32, C = 4, OS = 2, REPS = 2 };
  char path[512];
  clara_mr_file *f;
  clara_mr_geometry g;
  int samples, ncoils;
  const float *noise;

  tpath(path, sizeof path, "shepp.h5");
  run_shepp(path, "-m 32 -c 4 -O 2 -r 2 -n 0.05 -C");
  f = open_ok(path);
  ck_assert_str_eq(clara_mr_file_format(f), "ismrmrd");
  ck_assert_int_eq(clara_mr_file_count(f), REPS);
  ASSERT_STATUS(clara_mr_file_noise(f, &ncoils, &samples, &noise), CLARA_OK);
  ck_assert_ptr_nonnull(noise);
  ck_assert_int_gt(samples, 0);
  ck_assert_int_eq(samples % (M * OS), 0); /* whole readouts */
  for (int r = 0; r < REPS; r++) {
    float *k = kspace_of(f, r, &g);
    double centre = line_energy(k, &g, M / 2);
    ck_assert_int_eq(g.coils, C);
    ck_assert_int_eq(g.nx, M * OS);
    ck_assert_int_eq(g.ny, M);
    ck_assert_int_eq(g.nz, 1);
    ck_assert_int_eq(g.slices, 1);
    ck_assert_int_eq(g.recon_nx, M);
    ck_assert_int_eq(g.ky_first, 0);
    ck_assert_int_eq(g.ky_last, M - 1);
    ck_assert_int_eq(g.kx_first, 0);
    ck_assert_int_eq(g.kx_last, M * OS - 1);
    for (int y = 0; y < M; y++) {
      double e = line_energy(k, &g, y);
      ck_assert_msg(e > 0, "repetition %d: ky %d is empty", r, y);
      ck_assert_msg(y == M / 2 || e < centre,
                    "repetition %d: ky %d has energy %g >= the centre "
                    "line's %g",
                    r, y, e, centre);
    }
    /* along the readout, the peak is at kx = nx/2 too */
    {
      double best = -1;
      int at = -1;
      for (int x = 0; x < g.nx; x++) {
        double e = 0;
        for (int c = 0; c < g.coils; c++) {
          const float *v = ks_at(k, &g, 0, c, 0, M / 2, x);
          e += (double)v[0] * v[0] + (double)v[1] * v[1];
        }
        if (e > best) {
          best = e;
          at = x;
        }
      }
      ck_assert_int_eq(at, g.nx / 2);
    }
    free(k);
  }
  clara_mr_file_close(f);
}
END_TEST

START_TEST(test_shepp_logan_accelerated) {
  enum { M = 32, R = 2, W = 8 };
  char path[512];
  clara_mr_file *f;
  clara_mr_geometry g;
  int samples, count, ncoils;
  const float *noise;

  tpath(path, sizeof path, "shepp_accel.h5");
  run_shepp(path, "-m 32 -c 2 -O 2 -r 1 -a 2 -w 8 -n 0.05");
  f = open_ok(path);
  /* the tool cycles the sampling pattern over 'acceleration' repetitions */
  count = clara_mr_file_count(f);
  ck_assert_int_eq(count, R);
  ASSERT_STATUS(clara_mr_file_noise(f, &ncoils, &samples, &noise), CLARA_OK);
  ck_assert_int_eq(samples, 0);
  ck_assert_ptr_null(noise);
  for (int r = 0; r < count; r++) {
    float *k = kspace_of(f, r, &g);
    ck_assert_int_eq(g.coils, 2);
    ck_assert_int_eq(g.nx, 2 * M);
    ck_assert_int_eq(g.recon_nx, M);
    for (int y = 0; y < M; y++) {
      int sampled = y % R == r % R || (y >= M / 2 - W / 2 && y < M / 2 + W / 2);
      double e = line_energy(k, &g, y);
      ck_assert_msg(sampled ? e > 0 : e == 0,
                    "repetition %d: ky %d has energy %g, expected %s", r, y, e,
                    sampled ? "> 0" : "0");
    }
    ck_assert_int_eq(g.ky_first, r % R);
    ck_assert_int_eq(g.ky_last, M - R + r % R);
    free(k);
  }
  clara_mr_file_close(f);
}
END_TEST

/* ---- patient, study and acquisition facts (clara_mr_file_study) --------- */

/* A full ISMRMRD header: every element clara_mr_study reads, with white
 * space to trim, a UTF-8 name, a list of TEs (the first counts), a number
 * that is not one, and two encodings of different fields of view. */
static const char study_xml[] =
    "<?xml version=\"1.0\"?>\n"
    "<ismrmrdHeader xmlns=\"http://www.ismrm.org/ISMRMRD\">"
    "<subjectInformation>"
    "<patientName>  M\xc3\xbcller^J\xc3\xb6rg \n</patientName>"
    "<patientWeight_kg>heavy</patientWeight_kg>"
    "<patientID>PID-0042</patientID>"
    "<patientBirthdate>1970-01-31</patientBirthdate>"
    "<patientGender>M</patientGender>"
    "</subjectInformation>"
    "<studyInformation>"
    "<studyDate>2024-03-05</studyDate><studyTime>14:15:16.5</studyTime>"
    "<studyID>ST7</studyID><accessionNumber>123456789012</accessionNumber>"
    "<referringPhysicianName>House^Gregory</referringPhysicianName>"
    "<studyDescription>Knee research</studyDescription>"
    "<studyInstanceUID>1.2.826.0.1.3680043.8.498.1</studyInstanceUID>"
    "<bodyPartExamined>KNEE</bodyPartExamined>"
    "</studyInformation>"
    "<measurementInformation><measurementID>m1</measurementID>"
    "<seriesDate>2024-03-05</seriesDate><seriesTime>14:20:00</seriesTime>"
    "<patientPosition>FFS</patientPosition>"
    "<protocolName>t1_tse_cor</protocolName>"
    "<sequenceName>*tse2d1_5</sequenceName>"
    "<seriesDescription>T1 coronal</seriesDescription>"
    "<frameOfReferenceUID>1.2.826.0.1.3680043.8.498.2</frameOfReferenceUID>"
    "</measurementInformation>"
    "<acquisitionSystemInformation><systemVendor>ACME</systemVendor>"
    "<systemModel>Magnet 3000</systemModel>"
    "<systemFieldStrength_T>2.89362</systemFieldStrength_T>"
    "<receiverChannels>2</receiverChannels>"
    "<institutionName>St. Elsewhere</institutionName>"
    "<stationName>MR1</stationName></acquisitionSystemInformation>"
    "<experimentalConditions><H1resonanceFrequency_Hz>123200000"
    "</H1resonanceFrequency_Hz></experimentalConditions>"
    "<encoding><encodedSpace><matrixSize><x>8</x><y>6</y><z>1</z>"
    "</matrixSize><fieldOfView_mm><x>240</x><y>180</y><z>3.5</z>"
    "</fieldOfView_mm></encodedSpace>"
    "<reconSpace><matrixSize><x>4</x><y>6</y><z>1</z></matrixSize>"
    "<fieldOfView_mm><x>120</x><y>180</y><z>3</z></fieldOfView_mm>"
    "</reconSpace><trajectory>cartesian</trajectory>"
    "<echoTrainLength>5</echoTrainLength></encoding>"
    "<encoding><encodedSpace><matrixSize><x>8</x><y>6</y><z>1</z>"
    "</matrixSize><fieldOfView_mm><x>100</x><y>60</y><z>2</z>"
    "</fieldOfView_mm></encodedSpace>"
    "<reconSpace><matrixSize><x>8</x><y>6</y><z>1</z></matrixSize>"
    "<fieldOfView_mm><x>100</x><y>60</y><z>2</z></fieldOfView_mm>"
    "</reconSpace><trajectory>cartesian</trajectory></encoding>"
    "<sequenceParameters><TR>500</TR><TE>12.5</TE><TE>40</TE><TI>inf</TI>"
    "<flipAngle_deg>150</flipAngle_deg><sequence_type>TSE</sequence_type>"
    "</sequenceParameters>"
    "</ismrmrdHeader>\n";

START_TEST(test_ismrmrd_study) {
  char path[512], xml[8192];
  t_acq a[2 * NY];
  int n = 0;
  clara_mr_file *f;
  clara_mr_study st;
  clara_mr_geometry g;

  /* dataset 0 from encoding 0, dataset 1 from encoding 1 */
  for (int y = 0; y < NY; y++)
    acq_set(&a[n++], 1 + y, 0, NX, CH, NX / 2, y);
  for (int y = 0; y < NY; y++) {
    acq_set(&a[n], 20 + y, 0, NX, CH, NX / 2, y);
    a[n++].head.encoding_space_ref = 1;
  }
  tpath(path, sizeof path, "study.h5");
  write_ismrmrd(path, study_xml, a, n);
  acqs_free(a, n);
  f = open_ok(path);
  ck_assert_int_eq(clara_mr_file_count(f), 2);
  memset(&st, 0x55, sizeof st);
  ASSERT_STATUS(clara_mr_file_study(f, 0, &st), CLARA_OK);
  ck_assert_int_eq(st.has_header, 1);
  ck_assert_str_eq(st.patient_name, "M\xc3\xbcller^J\xc3\xb6rg");
  ck_assert_str_eq(st.patient_id, "PID-0042");
  ck_assert_str_eq(st.patient_birth_date, "1970-01-31");
  ck_assert_str_eq(st.patient_sex, "M");
  ck_assert(st.patient_weight_kg == 0); /* "heavy" is not a number */
  ck_assert_str_eq(st.study_date, "2024-03-05");
  ck_assert_str_eq(st.study_time, "14:15:16.5");
  ck_assert_str_eq(st.study_id, "ST7");
  ck_assert_str_eq(st.accession_number, "123456789012");
  ck_assert_str_eq(st.referring_physician, "House^Gregory");
  ck_assert_str_eq(st.study_description, "Knee research");
  ck_assert_str_eq(st.study_instance_uid, "1.2.826.0.1.3680043.8.498.1");
  ck_assert_str_eq(st.body_part, "KNEE");
  ck_assert_str_eq(st.series_date, "2024-03-05");
  ck_assert_str_eq(st.series_time, "14:20:00");
  ck_assert_str_eq(st.patient_position, "FFS");
  ck_assert_str_eq(st.protocol_name, "t1_tse_cor");
  ck_assert_str_eq(st.sequence_name, "*tse2d1_5");
  ck_assert_str_eq(st.series_description, "T1 coronal");
  ck_assert_str_eq(st.frame_of_reference_uid, "1.2.826.0.1.3680043.8.498.2");
  ck_assert_str_eq(st.manufacturer, "ACME");
  ck_assert_str_eq(st.manufacturer_model, "Magnet 3000");
  ck_assert_str_eq(st.institution_name, "St. Elsewhere");
  ck_assert_str_eq(st.station_name, "MR1");
  ck_assert_double_eq_tol(st.field_strength_t, 2.89362, 1e-12);
  ck_assert(st.tr_ms == 500);
  ck_assert(st.te_ms == 12.5); /* the first of the list */
  ck_assert(st.ti_ms == 0);    /* "inf" is not finite */
  ck_assert(st.flip_angle_deg == 150);
  ck_assert_str_eq(st.sequence_type, "TSE");
  ck_assert(st.encoded_fov_mm[0] == 240 && st.encoded_fov_mm[1] == 180 &&
            st.encoded_fov_mm[2] == 3.5);
  ck_assert(st.encoded_matrix[0] == 8 && st.encoded_matrix[1] == 6 &&
            st.encoded_matrix[2] == 1);
  ck_assert(st.recon_fov_mm[0] == 120 && st.recon_fov_mm[1] == 180 &&
            st.recon_fov_mm[2] == 3);
  ck_assert(st.recon_matrix[0] == 4 && st.recon_matrix[1] == 6 &&
            st.recon_matrix[2] == 1);
  ck_assert_int_eq(st.echo_train_length, 5);
  /* dataset 1: the same file-wide facts, encoding 1's fields of view */
  ASSERT_STATUS(clara_mr_file_geometry(f, 1, &g), CLARA_OK);
  ASSERT_STATUS(clara_mr_file_study(f, 1, &st), CLARA_OK);
  ck_assert_str_eq(st.patient_id, "PID-0042");
  ck_assert(st.encoded_fov_mm[0] == 100 && st.encoded_fov_mm[1] == 60 &&
            st.encoded_fov_mm[2] == 2);
  ck_assert_int_eq(st.echo_train_length, 0);
  /* arguments */
  ASSERT_STATUS(clara_mr_file_study(f, 2, &st), CLARA_ERR_INVALID_ARG);
  ASSERT_MESSAGE("clara_mr_file_study: index");
  ASSERT_STATUS(clara_mr_file_study(f, 0, NULL), CLARA_ERR_INVALID_ARG);
  ASSERT_STATUS(clara_mr_file_study(NULL, 0, &st), CLARA_ERR_INVALID_ARG);
  clara_mr_file_close(f);

  /* a header with none of these elements: all empty; a value longer than
   * its array is cut before a whole character (patient_name holds 255
   * bytes: 127 two-byte characters) */
  {
    char name[2 * 200 + 1];
    for (int i = 0; i < 200; i++)
      memcpy(name + 2 * i, "\xc3\xa9", 2);
    name[400] = '\0';
    make_xml(xml, sizeof xml, NX, NY, 1, NX, CH, -1, 0);
    tpath(path, sizeof path, "study_bare.h5");
    n = 0;
    for (int y = 0; y < NY; y++)
      acq_set(&a[n++], 1 + y, 0, NX, CH, NX / 2, y);
    write_ismrmrd(path, xml, a, n);
    f = open_ok(path);
    ASSERT_STATUS(clara_mr_file_study(f, 0, &st), CLARA_OK);
    ck_assert_int_eq(st.has_header, 1);
    ck_assert_str_eq(st.patient_name, "");
    ck_assert_str_eq(st.study_instance_uid, "");
    ck_assert_str_eq(st.sequence_type, "");
    ck_assert(st.tr_ms == 0 && st.field_strength_t == 0);
    ck_assert(st.encoded_fov_mm[0] == 0 && st.recon_fov_mm[2] == 0);
    ck_assert_int_eq(st.encoded_matrix[0], NX);
    clara_mr_file_close(f);

    snprintf(xml, sizeof xml,
             "<ismrmrdHeader><subjectInformation><patientName>%s"
             "</patientName></subjectInformation><encoding><encodedSpace>"
             "<matrixSize><x>%d</x><y>%d</y><z>1</z></matrixSize>"
             "</encodedSpace></encoding></ismrmrdHeader>",
             name, NX, NY);
    tpath(path, sizeof path, "study_long.h5");
    write_ismrmrd(path, xml, a, n);
    acqs_free(a, n);
    f = open_ok(path);
    ASSERT_STATUS(clara_mr_file_study(f, 0, &st), CLARA_OK);
    ck_assert_uint_eq(strlen(st.patient_name), 254);
    ck_assert(memcmp(st.patient_name, name, 254) == 0);
    clara_mr_file_close(f);
  }
}
END_TEST

/* fastMRI: the facts of /ismrmrd_header, or has_header 0 without one. */
START_TEST(test_fastmri_study) {
  enum { S = 1, X = 8, Y = 6 };
  const hsize_t dims[3] = {S, X, Y};
  char path[512];
  clara_mr_file *f;
  clara_mr_study st;
  hid_t fid;

  tpath(path, sizeof path, "fastmri_study.h5");
  fid = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  write_fastmri_kspace(fid, 3, dims, 0, 0);
  write_vlstring(fid, "ismrmrd_header", study_xml, 0);
  H5Fclose(fid);
  f = open_ok(path);
  ASSERT_STATUS(clara_mr_file_study(f, 0, &st), CLARA_OK);
  ck_assert_int_eq(st.has_header, 1);
  ck_assert_str_eq(st.patient_id, "PID-0042");
  ck_assert_str_eq(st.manufacturer, "ACME");
  ck_assert(st.te_ms == 12.5);
  ck_assert(st.encoded_fov_mm[0] == 240 && st.encoded_fov_mm[2] == 3.5);
  clara_mr_file_close(f);

  tpath(path, sizeof path, "fastmri_noheader.h5");
  fid = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  write_fastmri_kspace(fid, 3, dims, 0, 0);
  H5Fclose(fid);
  f = open_ok(path);
  memset(&st, 0x55, sizeof st);
  ASSERT_STATUS(clara_mr_file_study(f, 0, &st), CLARA_OK);
  ck_assert_int_eq(st.has_header, 0);
  ck_assert_str_eq(st.patient_name, "");
  ck_assert(st.encoded_fov_mm[0] == 0 && st.tr_ms == 0);
  clara_mr_file_close(f);
}
END_TEST

/* ---- driver -------------------------------------------------------------- */

static Suite *mr_file_suite(int have_tool) {
  Suite *s = suite_create("mr_file");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_ismrmrd_routing);
  tcase_add_test(tc, test_ismrmrd_asymmetric_3d);
  tcase_add_test(tc, test_ismrmrd_fixed_string_xml);
  tcase_add_loop_test(tc, test_ismrmrd_bad, 0, BAD_COUNT);
  tcase_add_test(tc, test_ismrmrd_wrong_dtype);
  tcase_add_test(tc, test_truncated_and_foreign);
  tcase_add_test(tc, test_fastmri_multicoil);
  tcase_add_test(tc, test_fastmri_singlecoil);
  tcase_add_test(tc, test_fastmri_bad);
  tcase_add_test(tc, test_ismrmrd_study);
  tcase_add_test(tc, test_fastmri_study);
  tcase_add_test(tc, test_null_args);
  tcase_add_test(tc, test_never_prints);
  tcase_add_test(tc, test_threads);
  if (have_tool) {
    tcase_add_test(tc, test_shepp_logan_full);
    tcase_add_test(tc, test_shepp_logan_accelerated);
  }
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
  int failed, have_tool = tool_on_path(shepp_tool);
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/clara_test_mr_file.XXXXXX",
           base && base[0] ? base : "/tmp");
  if (!mkdtemp(tmpdir)) {
    fprintf(stderr, "test_mr_file: mkdtemp(%s): %s\n", tmpdir, strerror(errno));
    return EXIT_FAILURE;
  }
  if (!have_tool)
    fprintf(stderr,
            "test_mr_file: SKIP 2 tests: %s not found on PATH (Debian "
            "package ismrmrd-tools)\n",
            shepp_tool);
  sr = srunner_create(mr_file_suite(have_tool));
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  if (nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
    fprintf(stderr, "test_mr_file: cannot remove %s: %s\n", tmpdir,
            strerror(errno));
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
