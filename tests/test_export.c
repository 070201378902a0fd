/* test_export.c -- the clara-recon tool's DICOM export and PNG previews.
 *
 * Links src/tools/dicom_export.cc and src/tools/png_preview.c directly
 * (src/tools/tools.am) and skips the half whose dependency configure left
 * out. The DICOM files are read back with a small reader of our own
 * (Explicit VR Little Endian, what the writer produces), not with DCMTK,
 * so that the writer is checked by independent code; test_dicom.sh adds
 * dciodvfy, dcmdump and pydicom.
 *
 *   test_export                         the unit tests
 *   test_export --write-series DIR ct|mr [--template FILE] [--raw FILE]
 *                                       writes a sample series for
 *                                       test_dicom.sh (exit 77: no DCMTK)
 */
#include "config.h"

#include "clara_recon.h"
#ifdef HAVE_DCMTK
#include "dicom_export.h"
#endif
#ifdef HAVE_PNG
#include "png_preview.h"
#include <png.h>
#endif

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(HAVE_DCMTK) || defined(HAVE_PNG)
/* ------------------------------------------------------------------------ */
/* Scratch directories                                                       */
/* ------------------------------------------------------------------------ */

/* A new empty directory under $top_builddir/tests (make check) or ".". */
static void scratch(char *out, size_t n) {
  const char *top = getenv("top_builddir");
  if (top && *top)
    snprintf(out, n, "%s/tests/tmp-export-XXXXXX", top);
  else
    snprintf(out, n, "./tmp-export-XXXXXX");
  ck_assert_msg(mkdtemp(out) != NULL, "mkdtemp %s: %s", out, strerror(errno));
}

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void rm_rf(const char *path) {
  nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Number of entries of a directory (-1 if it cannot be opened). */
static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  if (!d)
    return -1;
  for (struct dirent *de; (de = readdir(d)) != NULL;)
    if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
      n++;
  closedir(d);
  return n;
}

static int exists(const char *path) {
  struct stat sb;
  return lstat(path, &sb) == 0;
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
  fputs(text, f);
  fclose(f);
}
#endif

#ifdef HAVE_DCMTK
/* ------------------------------------------------------------------------ */
/* A small reader of Explicit VR Little Endian Part 10 files                 */
/* ------------------------------------------------------------------------ */

typedef struct dcm {
  unsigned char *buf;
  size_t len;
} dcm;

static void dcm_load(const char *path, dcm *d) {
  FILE *f = fopen(path, "rb");
  long n;
  ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  ck_assert(n > 132);
  d->len = (size_t)n;
  d->buf = malloc(d->len);
  ck_assert(d->buf != NULL);
  ck_assert(fread(d->buf, 1, d->len, f) == d->len);
  fclose(f);
  ck_assert_msg(memcmp(d->buf + 128, "DICM", 4) == 0, "%s: no DICM", path);
}

static void dcm_free(dcm *d) {
  free(d->buf);
  d->buf = NULL;
}

static unsigned rd16(const unsigned char *p) {
  return (unsigned)p[0] | ((unsigned)p[1] << 8);
}

static uint32_t rd32(const unsigned char *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
         ((uint32_t)p[3] << 24);
}

static int long_vr(const unsigned char *vr) {
  static const char *const l[] = {"OB", "OW", "OF", "SQ", "UT", "UN", "UC",
                                  "UR", "OD", "OL", "OV", "SV", "UV"};
  for (size_t i = 0; i < sizeof l / sizeof l[0]; i++)
    if (vr[0] == l[i][0] && vr[1] == l[i][1])
      return 1;
  return 0;
}

/* The top-level element (g,e): its value and length; 0 when absent. */
static int dcm_find(const dcm *d, unsigned g, unsigned e,
                    const unsigned char **val, uint32_t *len) {
  size_t p = 132;
  while (p + 8 <= d->len) {
    unsigned tg = rd16(d->buf + p), te = rd16(d->buf + p + 2);
    uint32_t l;
    size_t h;
    if (long_vr(d->buf + p + 4)) {
      ck_assert(p + 12 <= d->len);
      l = rd32(d->buf + p + 8);
      h = 12;
    } else {
      l = rd16(d->buf + p + 6);
      h = 8;
    }
    ck_assert_msg(l != 0xFFFFFFFFu, "(%04x,%04x): undefined length", tg, te);
    ck_assert_msg(p + h + l <= d->len, "(%04x,%04x): past the end", tg, te);
    if (tg == g && te == e) {
      *val = d->buf + p + h;
      *len = l;
      return 1;
    }
    if (tg > g || (tg == g && te > e))
      return 0; /* elements are sorted */
    p += h + l;
  }
  return 0;
}

/* The string value of (g,e) without its padding; 0 when absent. */
static int dcm_str(const dcm *d, unsigned g, unsigned e, char *out, size_t n) {
  const unsigned char *v;
  uint32_t l;
  if (!dcm_find(d, g, e, &v, &l))
    return 0;
  ck_assert(l < n);
  memcpy(out, v, l);
  while (l > 0 && (out[l - 1] == ' ' || out[l - 1] == '\0'))
    l--;
  out[l] = '\0';
  return 1;
}

static unsigned dcm_us(const dcm *d, unsigned g, unsigned e) {
  const unsigned char *v;
  uint32_t l;
  ck_assert_msg(dcm_find(d, g, e, &v, &l), "(%04x,%04x) missing", g, e);
  ck_assert_int_eq(l, 2);
  return rd16(v);
}

static int dcm_has(const dcm *d, unsigned g, unsigned e) {
  const unsigned char *v;
  uint32_t l;
  return dcm_find(d, g, e, &v, &l);
}

#define ASSERT_TAG(d, g, e, want)                                              \
  do {                                                                         \
    char v_[1100];                                                             \
    ck_assert_msg(dcm_str((d), (g), (e), v_, sizeof v_),                       \
                  "(%04x,%04x) missing", (unsigned)(g), (unsigned)(e));        \
    ck_assert_msg(strcmp(v_, (want)) == 0,                                     \
                  "(%04x,%04x) = \"%s\", want \"%s\"", (unsigned)(g),          \
                  (unsigned)(e), v_, (want));                                  \
  } while (0)

static double dcm_ds(const dcm *d, unsigned g, unsigned e, int index) {
  char v[256], *p = v, *end;
  double x = 0;
  ck_assert_msg(dcm_str(d, g, e, v, sizeof v), "(%04x,%04x) missing", g, e);
  for (int i = 0; i <= index; i++) {
    x = strtod(p, &end);
    ck_assert_msg(end != p, "(%04x,%04x) = \"%s\": value %d", g, e, v, index);
    p = end + (*end == '\\');
  }
  return x;
}

/* A DICOM UID: digits and dots, components without leading zeros. */
static int uid_ok(const char *u) {
  size_t n = strlen(u);
  const char *c = u;
  if (n == 0 || n > 64)
    return 0;
  for (const char *p = u;; p++) {
    if (*p == '.' || !*p) {
      if (p == c || (*c == '0' && p - c > 1))
        return 0;
      if (!*p)
        return 1;
      c = p + 1;
    } else if (*p < '0' || *p > '9') {
      return 0;
    }
  }
}

/* ------------------------------------------------------------------------ */
/* DICOM series                                                              */
/* ------------------------------------------------------------------------ */

static const clara_volume vol3 = {
    .nx = 8, .ny = 6, .nz = 3, .voxel = {0.5, 0.75, 2.0}, .center = {1, -2, 3}};

static float *ct_volume(const clara_volume *v) {
  size_t n = (size_t)v->nx * (size_t)v->ny * (size_t)v->nz;
  float *hu = malloc(n * sizeof *hu);
  ck_assert(hu != NULL);
  for (size_t i = 0; i < n; i++)
    hu[i] = -1000.0f + (float)(i * 37 % 3000) + 0.25f;
  return hu;
}

static void ct_fields(clara_dicom_series *s) {
  clara_dicom_series_init(s, CLARA_MODALITY_CT);
  s->patient_name = "Doe^Jane";
  s->patient_id = "P-0001";
  s->patient_birth_date = "1970-12-31";
  s->patient_sex = "F";
  s->study_date = "2024-01-31";
  s->study_time = "12:34:56.5";
  s->study_id = "S7";
  s->accession_number = "A42";
  s->series_number = 3;
  s->series_description = "FBP Hann";
  s->patient_position = "HFS";
}

START_TEST(ct_series) {
  char dir[512], out[600], path[700];
  clara_dicom_series s;
  clara_dicom_report rep;
  char err[512];
  float *hu = ct_volume(&vol3);
  char sop[3][80];
  scratch(dir, sizeof dir);
  snprintf(out, sizeof out, "%s/series", dir);
  ct_fields(&s);
  ck_assert_int_eq(
      clara_dicom_write_series(out, &s, &vol3, hu, &rep, err, sizeof err),
      CLARA_OK);
  ck_assert_str_eq(err, "");
  ck_assert_int_eq(rep.files, 3);
  ck_assert_double_eq(rep.slope, 1.0);
  ck_assert_double_eq(rep.intercept, -1024.0);
  ck_assert_int_eq(rep.window_written, 1);
  ck_assert_double_eq(rep.window_center, 40.0);
  ck_assert_double_eq(rep.window_width, 400.0);
  ck_assert_int_eq(rep.clipped_low + rep.clipped_high, 0);
  ck_assert(uid_ok(rep.study_instance_uid));
  ck_assert(strncmp(rep.series_instance_uid, "2.25.", 5) == 0);
  ck_assert(uid_ok(rep.frame_of_reference_uid));
  /* the series and nothing else; no staging directory left */
  ck_assert_int_eq(count_entries(out), 3);
  ck_assert_int_eq(count_entries(dir), 1);
  for (int z = 0; z < 3; z++) {
    dcm d;
    clara_dicom_plane pl;
    char want[32];
    const unsigned char *px;
    uint32_t len;
    snprintf(path, sizeof path, "%s/CT%05d.dcm", out, z + 1);
    dcm_load(path, &d);
    ck_assert(clara_dicom_plane_of(&vol3, z, &pl) == CLARA_OK);
    ASSERT_TAG(&d, 0x0002, 0x0010, "1.2.840.10008.1.2.1");
    ASSERT_TAG(&d, 0x0008, 0x0016, "1.2.840.10008.5.1.4.1.1.2");
    ASSERT_TAG(&d, 0x0008, 0x0060, "CT");
    ASSERT_TAG(&d, 0x0008, 0x0008, "ORIGINAL\\PRIMARY\\AXIAL");
    ck_assert(!dcm_has(&d, 0x0008, 0x0005)); /* plain ASCII */
    ASSERT_TAG(&d, 0x0010, 0x0010, "Doe^Jane");
    ASSERT_TAG(&d, 0x0010, 0x0020, "P-0001");
    ASSERT_TAG(&d, 0x0010, 0x0030, "19701231");
    ASSERT_TAG(&d, 0x0010, 0x0040, "F");
    ASSERT_TAG(&d, 0x0008, 0x0020, "20240131");
    ASSERT_TAG(&d, 0x0008, 0x0030, "123456.5");
    ASSERT_TAG(&d, 0x0020, 0x0010, "S7");
    ASSERT_TAG(&d, 0x0008, 0x0050, "A42");
    ASSERT_TAG(&d, 0x0008, 0x0090, ""); /* type 2, unknown: empty */
    ASSERT_TAG(&d, 0x0008, 0x0070, "");
    ASSERT_TAG(&d, 0x0018, 0x0060, ""); /* KVP unknown */
    ASSERT_TAG(&d, 0x0020, 0x0012, ""); /* AcquisitionNumber */
    ASSERT_TAG(&d, 0x0018, 0x5100, "HFS");
    ASSERT_TAG(&d, 0x0020, 0x0060, ""); /* laterality unknown */
    ASSERT_TAG(&d, 0x0020, 0x0011, "3");
    ASSERT_TAG(&d, 0x0008, 0x103E, "FBP Hann");
    ASSERT_TAG(&d, 0x0020, 0x000D, rep.study_instance_uid);
    ASSERT_TAG(&d, 0x0020, 0x000E, rep.series_instance_uid);
    ASSERT_TAG(&d, 0x0020, 0x0052, rep.frame_of_reference_uid);
    ck_assert(dcm_str(&d, 0x0008, 0x0018, sop[z], sizeof sop[z]));
    ck_assert(uid_ok(sop[z]));
    ASSERT_TAG(&d, 0x0002, 0x0003, sop[z]);
    snprintf(want, sizeof want, "%d", z + 1);
    ASSERT_TAG(&d, 0x0020, 0x0013, want);
    ASSERT_TAG(&d, 0x0028, 0x1054, "HU");
    ck_assert_double_eq(dcm_ds(&d, 0x0028, 0x1053, 0), 1.0);
    ck_assert_double_eq(dcm_ds(&d, 0x0028, 0x1052, 0), -1024.0);
    ck_assert_double_eq(dcm_ds(&d, 0x0028, 0x1050, 0), 40.0);
    ck_assert_double_eq(dcm_ds(&d, 0x0028, 0x1051, 0), 400.0);
    ASSERT_TAG(&d, 0x0020, 0x0037, "1\\0\\0\\0\\1\\0");
    for (int i = 0; i < 3; i++)
      ck_assert_double_eq_tol(dcm_ds(&d, 0x0020, 0x0032, i), pl.position[i],
                              1e-9);
    ck_assert_double_eq_tol(dcm_ds(&d, 0x0020, 0x1041, 0), pl.slice_location,
                            1e-9);
    ck_assert_double_eq(dcm_ds(&d, 0x0028, 0x0030, 0), 0.75); /* rows: vy */
    ck_assert_double_eq(dcm_ds(&d, 0x0028, 0x0030, 1), 0.5);
    ck_assert_double_eq(dcm_ds(&d, 0x0018, 0x0050, 0), 2.0);
    ck_assert_double_eq(dcm_ds(&d, 0x0018, 0x0088, 0), 2.0);
    ck_assert_uint_eq(dcm_us(&d, 0x0028, 0x0010), 6); /* Rows = ny */
    ck_assert_uint_eq(dcm_us(&d, 0x0028, 0x0011), 8); /* Columns = nx */
    ck_assert_uint_eq(dcm_us(&d, 0x0028, 0x0100), 16);
    ck_assert_uint_eq(dcm_us(&d, 0x0028, 0x0101), 16);
    ck_assert_uint_eq(dcm_us(&d, 0x0028, 0x0102), 15);
    ck_assert_uint_eq(dcm_us(&d, 0x0028, 0x0103), 1);
    ASSERT_TAG(&d, 0x0028, 0x0004, "MONOCHROME2");
    ck_assert(dcm_find(&d, 0x7FE0, 0x0010, &px, &len));
    ck_assert_uint_eq(len, 8 * 6 * 2);
    for (int i = 0; i < 8 * 6; i++) {
      int stored = (int16_t)rd16(px + 2 * i);
      double v = hu[(size_t)z * 48 + (size_t)i];
      ck_assert_msg(fabs(stored - 1024.0 - v) <= 0.5, "z %d i %d: %d vs %g", z,
                    i, stored, v);
    }
    dcm_free(&d);
  }
  ck_assert_str_ne(sop[0], sop[1]);
  ck_assert_str_ne(sop[1], sop[2]);
  rm_rf(dir);
  free(hu);
}
END_TEST

START_TEST(ct_clipping_is_reported) {
  char dir[512], out[600];
  clara_dicom_series s;
  clara_dicom_report rep;
  clara_volume v = {.nx = 2, .ny = 2, .nz = 1, .voxel = {1, 1, 1}};
  const float hu[4] = {40000.0f, -40000.0f, 0.0f, 31743.0f};
  scratch(dir, sizeof dir);
  snprintf(out, sizeof out, "%s/clip", dir);
  clara_dicom_series_init(&s, CLARA_MODALITY_CT);
  ck_assert_int_eq(clara_dicom_write_series(out, &s, &v, hu, &rep, NULL, 0),
                   CLARA_OK);
  ck_assert_int_eq(rep.clipped_high, 1);
  ck_assert_int_eq(rep.clipped_low, 1);
  ck_assert_float_eq(rep.max, 40000.0f);
  ck_assert_int_eq(count_entries(out), 1);
  rm_rf(dir);
}
END_TEST

START_TEST(non_finite_voxels_fail) {
  char dir[512], out[600], err[512];
  clara_dicom_series s;
  float *hu = ct_volume(&vol3);
  scratch(dir, sizeof dir);
  snprintf(out, sizeof out, "%s/bad", dir);
  clara_dicom_series_init(&s, CLARA_MODALITY_CT);
  hu[8 * 6 + 8 + 3] = NAN; /* ix 3, iy 1, iz 1 */
  ck_assert_int_eq(
      clara_dicom_write_series(out, &s, &vol3, hu, NULL, err, sizeof err),
      CLARA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(err, "ix 3, iy 1, iz 1") != NULL, "%s", err);
  hu[8 * 6 + 8 + 3] = INFINITY; /* CT would clip it: refused here */
  s.modality = CLARA_MODALITY_CT;
  ck_assert_int_eq(
      clara_dicom_write_series(out, &s, &vol3, hu, NULL, err, sizeof err),
      CLARA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(err, "finite") != NULL, "%s", err);
  clara_dicom_series_init(&s, CLARA_MODALITY_MR);
  hu[0] = -INFINITY;
  ck_assert_int_eq(
      clara_dicom_write_series(out, &s, &vol3, hu, NULL, err, sizeof err),
      CLARA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(err, "image[0]") != NULL, "%s", err);
  ck_assert_int_eq(count_entries(dir), 0);
  rm_rf(dir);
  free(hu);
}
END_TEST

START_TEST(output_directory_rules) {
  char dir[512], out[600], file[700], err[512];
  clara_dicom_series s;
  float *hu = ct_volume(&vol3);
  scratch(dir, sizeof dir);
  clara_dicom_series_init(&s, CLARA_MODALITY_CT);
  /* an existing empty directory is replaced, a trailing slash is fine */
  snprintf(out, sizeof out, "%s/empty", dir);
  ck_assert_int_eq(mkdir(out, 0755), 0);
  snprintf(out, sizeof out, "%s/empty/", dir);
  ck_assert_int_eq(
      clara_dicom_write_series(out, &s, &vol3, hu, NULL, err, sizeof err),
      CLARA_OK);
  snprintf(out, sizeof out, "%s/empty", dir);
  ck_assert_int_eq(count_entries(out), 3);
  /* a non-empty one is refused and left alone */
  ck_assert_int_eq(
      clara_dicom_write_series(out, &s, &vol3, hu, NULL, err, sizeof err),
      CLARA_ERR_IO);
  ck_assert_msg(strstr(err, "not empty") != NULL, "%s", err);
  ck_assert_int_eq(count_entries(out), 3);
  /* a file is refused */
  snprintf(file, sizeof file, "%s/file", dir);
  write_text(file, "x");
  ck_assert_int_eq(
      clara_dicom_write_series(file, &s, &vol3, hu, NULL, err, sizeof err),
      CLARA_ERR_IO);
  ck_assert_msg(strstr(err, "not a directory") != NULL, "%s", err);
  /* a missing parent, and a parent that is a file */
  snprintf(out, sizeof out, "%s/no/such/dir", dir);
  ck_assert_int_eq(
      clara_dicom_write_series(out, &s, &vol3, hu, NULL, err, sizeof err),
      CLARA_ERR_IO);
  ck_assert_msg(strstr(err, "cannot create") != NULL, "%s", err);
  snprintf(out, sizeof out, "%s/file/dir", dir);
  ck_assert_int_eq(
      clara_dicom_write_series(out, &s, &vol3, hu, NULL, err, sizeof err),
      CLARA_ERR_IO);
  /* an unwritable parent: /proc for root, a read-only directory otherwise */
  if (geteuid() == 0) {
    ck_assert_int_eq(clara_dicom_write_series("/proc/clara-test-series", &s,
                                              &vol3, hu, NULL, err, sizeof err),
                     CLARA_ERR_IO);
    ck_assert(!exists("/proc/clara-test-series"));
  } else {
    char ro[600];
    snprintf(ro, sizeof ro, "%s/ro", dir);
    ck_assert_int_eq(mkdir(ro, 0555), 0);
    snprintf(out, sizeof out, "%s/ro/series", dir);
    ck_assert_int_eq(
        clara_dicom_write_series(out, &s, &vol3, hu, NULL, err, sizeof err),
        CLARA_ERR_IO);
    ck_assert_msg(strstr(err, "cannot create") != NULL, "%s", err);
    ck_assert_int_eq(count_entries(ro), 0);
    chmod(ro, 0755);
  }
  ck_assert_msg(strstr(err, "DICOM output") != NULL, "%s", err);
  /* nothing else appeared: empty/, file (and ro/) */
  ck_assert_int_eq(count_entries(dir), geteuid() == 0 ? 2 : 3);
  rm_rf(dir);
  free(hu);
}
END_TEST

START_TEST(mr_series) {
  char dir[512], out[600], path[700];
  clara_dicom_series s;
  clara_dicom_report rep;
  clara_volume v = {.nx = 5, .ny = 4, .nz = 2, .voxel = {1, 1, 3}};
  float img[40];
  dcm d;
  const unsigned char *px;
  uint32_t len;
  for (int i = 0; i < 40; i++)
    img[i] = 25.0f * (float)i + 0.3f;
  scratch(dir, sizeof dir);
  snprintf(out, sizeof out, "%s/mr", dir);
  clara_dicom_series_init(&s, CLARA_MODALITY_MR);
  s.echo_time_ms = 2.5;
  s.repetition_time_ms = 300;
  s.echo_train_length = 1;
  s.mr_acquisition_type = "2D";
  s.scanning_sequence = "GR";
  s.sequence_variant = "SP\\OSP";
  s.magnetic_field_t = 3;
  s.imaged_nucleus = "1H";
  s.derived = 1;
  s.derivation_description = "denoised: dncnn mr model";
  ck_assert_int_eq(clara_dicom_write_series(out, &s, &v, img, &rep, NULL, 0),
                   CLARA_OK);
  ck_assert_double_eq_tol(rep.slope, 975.3 / 32000.0, 1e-6);
  ck_assert_double_eq(rep.intercept, 0.0);
  ck_assert_int_eq(rep.window_written, 1);
  snprintf(path, sizeof path, "%s/MR00002.dcm", out);
  dcm_load(path, &d);
  ASSERT_TAG(&d, 0x0008, 0x0016, "1.2.840.10008.5.1.4.1.1.4");
  ASSERT_TAG(&d, 0x0008, 0x0060, "MR");
  ASSERT_TAG(&d, 0x0008, 0x0008, "DERIVED\\SECONDARY\\OTHER");
  ASSERT_TAG(&d, 0x0008, 0x2111, "denoised: dncnn mr model");
  ASSERT_TAG(&d, 0x0018, 0x0020, "GR");
  ASSERT_TAG(&d, 0x0018, 0x0021, "SP\\OSP");
  ASSERT_TAG(&d, 0x0018, 0x0022, "");
  ASSERT_TAG(&d, 0x0018, 0x0023, "2D");
  ASSERT_TAG(&d, 0x0018, 0x0080, "300");
  ASSERT_TAG(&d, 0x0018, 0x0081, "2.5");
  ASSERT_TAG(&d, 0x0018, 0x0091, "1");
  ASSERT_TAG(&d, 0x0018, 0x0087, "3");
  ASSERT_TAG(&d, 0x0018, 0x0085, "1H");
  ASSERT_TAG(&d, 0x0028, 0x1054, "US");
  ASSERT_TAG(&d, 0x0010, 0x0010, ""); /* unknown patient: empty */
  ASSERT_TAG(&d, 0x0018, 0x5100, "");
  ck_assert(!dcm_has(&d, 0x0018, 0x0082)); /* no IR: no InversionTime */
  ck_assert(!dcm_has(&d, 0x0018, 0x0060)); /* no KVP for MR */
  ASSERT_TAG(&d, 0x0020, 0x0060, "");      /* Laterality unknown */
  ck_assert_double_eq_tol(dcm_ds(&d, 0x0028, 0x1053, 0), rep.slope,
                          1e-12 + rep.slope * 1e-12);
  ck_assert_double_eq_tol(dcm_ds(&d, 0x0028, 0x1050, 0), rep.window_center,
                          1e-9 * rep.window_center);
  ASSERT_TAG(&d, 0x0020, 0x0013, "2");
  ck_assert(dcm_find(&d, 0x7FE0, 0x0010, &px, &len));
  ck_assert_uint_eq(len, 40);
  for (int i = 0; i < 20; i++) {
    double back = (int16_t)rd16(px + 2 * i) * dcm_ds(&d, 0x0028, 0x1053, 0);
    ck_assert_msg(fabs(back - img[20 + i]) <= 0.51 * rep.slope, "%d: %g vs %g",
                  i, back, (double)img[20 + i]);
  }
  dcm_free(&d);
  rm_rf(dir);
}
END_TEST

START_TEST(mr_tiny_values_leave_the_window_out) {
  char dir[512], out[600], path[700], err[256];
  clara_dicom_series s;
  clara_dicom_report rep;
  clara_volume v = {.nx = 4, .ny = 4, .nz = 1, .voxel = {1, 1, 1}};
  float img[16];
  dcm d;
  for (int i = 0; i < 16; i++)
    img[i] = 1e-5f * (float)i;
  scratch(dir, sizeof dir);
  snprintf(out, sizeof out, "%s/mr", dir);
  clara_dicom_series_init(&s, CLARA_MODALITY_MR);
  ck_assert_int_eq(clara_dicom_write_series(out, &s, &v, img, &rep, NULL, 0),
                   CLARA_OK);
  ck_assert_int_eq(rep.window_written, 0);
  snprintf(path, sizeof path, "%s/MR00001.dcm", out);
  dcm_load(path, &d);
  ck_assert(!dcm_has(&d, 0x0028, 0x1050));
  ck_assert(!dcm_has(&d, 0x0028, 0x1051));
  ck_assert(dcm_ds(&d, 0x0028, 0x1053, 0) > 0);
  dcm_free(&d);
  /* an explicit window is used as given; below 1 it is refused */
  snprintf(out, sizeof out, "%s/mr2", dir);
  s.window_center = 5;
  s.window_width = 0.5;
  ck_assert_int_eq(
      clara_dicom_write_series(out, &s, &v, img, &rep, err, sizeof err),
      CLARA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(err, "width >= 1") != NULL, "%s", err);
  s.window_width = 10;
  ck_assert_int_eq(clara_dicom_write_series(out, &s, &v, img, &rep, NULL, 0),
                   CLARA_OK);
  ck_assert_int_eq(rep.window_written, 1);
  snprintf(path, sizeof path, "%s/MR00001.dcm", out);
  dcm_load(path, &d);
  ASSERT_TAG(&d, 0x0028, 0x1050, "5");
  ASSERT_TAG(&d, 0x0028, 0x1051, "10");
  ASSERT_TAG(&d, 0x0028, 0x1055, "USER");
  dcm_free(&d);
  rm_rf(dir);
}
END_TEST

START_TEST(utf8_names_set_the_character_set) {
  char dir[512], out[600], path[700];
  clara_dicom_series s;
  clara_volume v = {.nx = 2, .ny = 2, .nz = 1, .voxel = {1, 1, 1}};
  const float hu[4] = {0};
  dcm d;
  scratch(dir, sizeof dir);
  snprintf(out, sizeof out, "%s/u", dir);
  clara_dicom_series_init(&s, CLARA_MODALITY_CT);
  s.patient_name = "M\xc3\xbcller^J\xc3\xbcrgen";
  ck_assert_int_eq(clara_dicom_write_series(out, &s, &v, hu, NULL, NULL, 0),
                   CLARA_OK);
  snprintf(path, sizeof path, "%s/CT00001.dcm", out);
  dcm_load(path, &d);
  ASSERT_TAG(&d, 0x0008, 0x0005, "ISO_IR 192");
  ASSERT_TAG(&d, 0x0010, 0x0010, "M\xc3\xbcller^J\xc3\xbcrgen");
  dcm_free(&d);
  rm_rf(dir);
}
END_TEST

/* Each bad field is refused with its name, before anything is written. */
START_TEST(fields_are_checked) {
  static const struct {
    const char *field, *value;
  } bad[] = {
      {"patient_birth_date", "1/2/1990"},
      {"patient_birth_date", "19901350"},
      {"study_time", "25:00:00"},
      {"study_time", "12:00"},
      {"study_id", "a study id longer than 16"},
      {"patient_name", "Doe\\Jane"},
      {"patient_name", "Doe\nJane"},
      {"patient_sex", "X"},
      {"patient_position", "hfs"},
      {"patient_id", "\xff\xfe"},
      {"study_instance_uid", "1.02.3"},
      {"patient_age", "42"},
      {"mr_acquisition_type", "4D"},
      {"laterality", "X"},
  };
  char dir[512], out[600], err[512];
  float *hu = ct_volume(&vol3);
  scratch(dir, sizeof dir);
  snprintf(out, sizeof out, "%s/x", dir);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    clara_dicom_series s;
    clara_dicom_series_init(&s, CLARA_MODALITY_CT);
    if (!strcmp(bad[i].field, "patient_birth_date"))
      s.patient_birth_date = bad[i].value;
    else if (!strcmp(bad[i].field, "study_time"))
      s.study_time = bad[i].value;
    else if (!strcmp(bad[i].field, "study_id"))
      s.study_id = bad[i].value;
    else if (!strcmp(bad[i].field, "patient_name"))
      s.patient_name = bad[i].value;
    else if (!strcmp(bad[i].field, "patient_sex"))
      s.patient_sex = bad[i].value;
    else if (!strcmp(bad[i].field, "patient_position"))
      s.patient_position = bad[i].value;
    else if (!strcmp(bad[i].field, "patient_id"))
      s.patient_id = bad[i].value;
    else if (!strcmp(bad[i].field, "study_instance_uid"))
      s.study_instance_uid = bad[i].value;
    else if (!strcmp(bad[i].field, "patient_age"))
      s.patient_age = bad[i].value;
    else if (!strcmp(bad[i].field, "mr_acquisition_type"))
      s.mr_acquisition_type = bad[i].value;
    else if (!strcmp(bad[i].field, "laterality"))
      s.laterality = bad[i].value;
    ck_assert_int_eq(
        clara_dicom_write_series(out, &s, &vol3, hu, NULL, err, sizeof err),
        CLARA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(err, bad[i].field) != NULL, "%s=\"%s\": %s",
                  bad[i].field, bad[i].value, err);
  }
  ck_assert_int_eq(count_entries(dir), 0);
  rm_rf(dir);
  free(hu);
}
END_TEST

START_TEST(bad_arguments) {
  char err[256];
  clara_dicom_series s;
  clara_volume v = vol3;
  float *hu = ct_volume(&vol3);
  clara_dicom_series_init(&s, CLARA_MODALITY_CT);
  ck_assert_int_eq(
      clara_dicom_write_series(NULL, &s, &v, hu, NULL, err, sizeof err),
      CLARA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(err, "dir") != NULL, "%s", err);
  ck_assert_int_eq(clara_dicom_write_series("x", NULL, &v, hu, NULL, NULL, 0),
                   CLARA_ERR_INVALID_ARG);
  ck_assert_int_eq(clara_dicom_write_series("x", &s, NULL, hu, NULL, NULL, 0),
                   CLARA_ERR_INVALID_ARG);
  ck_assert_int_eq(clara_dicom_write_series("x", &s, &v, NULL, NULL, NULL, 0),
                   CLARA_ERR_INVALID_ARG);
  s.modality = (clara_modality)0;
  ck_assert_int_eq(
      clara_dicom_write_series("x", &s, &v, hu, NULL, err, sizeof err),
      CLARA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(err, "modality") != NULL, "%s", err);
  s.modality = CLARA_MODALITY_CT;
  v.nx = 70000;
  ck_assert_int_eq(
      clara_dicom_write_series("x", &s, &v, hu, NULL, err, sizeof err),
      CLARA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(err, "65535") != NULL, "%s", err);
  v = vol3;
  v.voxel[2] = 0;
  ck_assert_int_eq(
      clara_dicom_write_series("x", &s, &v, hu, NULL, err, sizeof err),
      CLARA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(err, "voxel") != NULL, "%s", err);
  ck_assert(!exists("x"));
  free(hu);
}
END_TEST

START_TEST(uids_are_uuid_derived) {
  enum { N = 2000 };
  static char uid[N][CLARA_DICOM_UID_SIZE];
  for (int i = 0; i < N; i++) {
    ck_assert_int_eq(clara_dicom_new_uid(uid[i], NULL, 0), CLARA_OK);
    ck_assert_msg(uid_ok(uid[i]), "%s", uid[i]);
    ck_assert(strncmp(uid[i], "2.25.", 5) == 0);
    ck_assert(strlen(uid[i]) <= 44);
  }
  for (int i = 0; i < N; i++)
    for (int j = i + 1; j < N; j++)
      ck_assert_str_ne(uid[i], uid[j]);
  ck_assert_int_eq(clara_dicom_new_uid(NULL, NULL, 0), CLARA_ERR_INVALID_ARG);
}
END_TEST

/* A minimal Part 10 file in ISO 8859-1 (ISO_IR 100), as another vendor
 * could have written it, built byte by byte. */
static void put_el(FILE *f, unsigned g, unsigned e, const char *vr,
                   const char *val, size_t len, size_t *count) {
  unsigned char h[12];
  int pad = (int)(len & 1);
  size_t l = len + (size_t)pad, hl;
  h[0] = (unsigned char)(g & 0xff);
  h[1] = (unsigned char)(g >> 8);
  h[2] = (unsigned char)(e & 0xff);
  h[3] = (unsigned char)(e >> 8);
  h[4] = (unsigned char)vr[0];
  h[5] = (unsigned char)vr[1];
  if (!strcmp(vr, "OB")) {
    h[6] = h[7] = 0;
    h[8] = (unsigned char)(l & 0xff);
    h[9] = (unsigned char)((l >> 8) & 0xff);
    h[10] = h[11] = 0;
    hl = 12;
  } else {
    h[6] = (unsigned char)(l & 0xff);
    h[7] = (unsigned char)((l >> 8) & 0xff);
    hl = 8;
  }
  if (f) {
    fwrite(h, 1, hl, f);
    fwrite(val, 1, len, f);
    if (pad)
      fputc(!strcmp(vr, "UI") || !strcmp(vr, "OB") ? 0 : ' ', f);
  }
  *count += hl + l;
}

static void write_latin1_template(const char *path) {
  static const char cls[] = "1.2.840.10008.5.1.4.1.1.7", inst[] = "1.2.3.4.6",
                    ts[] = "1.2.840.10008.1.2.1";
  static const char ver[2] = {0, 1};
  static const char name[] = "M\xfcller^J\xfcrgen";
  unsigned char glen[4];
  size_t n = 0;
  FILE *f = fopen(path, "wb");
  ck_assert(f != NULL);
  for (int i = 0; i < 128; i++)
    fputc(0, f);
  fputs("DICM", f);
  /* the meta group's length first */
  put_el(NULL, 2, 1, "OB", ver, 2, &n);
  put_el(NULL, 2, 2, "UI", cls, strlen(cls), &n);
  put_el(NULL, 2, 3, "UI", inst, strlen(inst), &n);
  put_el(NULL, 2, 0x10, "UI", ts, strlen(ts), &n);
  for (int i = 0; i < 4; i++)
    glen[i] = (unsigned char)((n >> (8 * i)) & 0xff);
  put_el(f, 2, 0, "UL", (const char *)glen, 4, &n);
  put_el(f, 2, 1, "OB", ver, 2, &n);
  put_el(f, 2, 2, "UI", cls, strlen(cls), &n);
  put_el(f, 2, 3, "UI", inst, strlen(inst), &n);
  put_el(f, 2, 0x10, "UI", ts, strlen(ts), &n);
  put_el(f, 8, 5, "CS", "ISO_IR 100", 10, &n);
  put_el(f, 8, 0x16, "UI", cls, strlen(cls), &n);
  put_el(f, 8, 0x18, "UI", inst, strlen(inst), &n);
  put_el(f, 8, 0x20, "DA", "20230102", 8, &n);
  put_el(f, 8, 0x60, "CS", "OT", 2, &n);
  put_el(f, 0x10, 0x10, "PN", name, strlen(name), &n);
  put_el(f, 0x10, 0x20, "LO", "LAT1", 4, &n);
  put_el(f, 0x20, 0x0D, "UI", "1.2.3.4.5", 9, &n);
  fclose(f);
}

START_TEST(template_continues_a_study) {
  char dir[512], ct[600], mr[600], tmpl[700], path[700], lat[700], err[512];
  char ct_study[80], ct_for[80];
  clara_dicom_series s;
  clara_dicom_report rep;
  clara_volume v = {.nx = 3, .ny = 2, .nz = 2, .voxel = {1, 1, 1}};
  float img[12] = {0};
  dcm d;
  scratch(dir, sizeof dir);
  snprintf(ct, sizeof ct, "%s/ct", dir);
  snprintf(mr, sizeof mr, "%s/mr", dir);
  ct_fields(&s);
  ck_assert_int_eq(clara_dicom_write_series(ct, &s, &v, img, &rep, NULL, 0),
                   CLARA_OK);
  snprintf(ct_study, sizeof ct_study, "%s", rep.study_instance_uid);
  snprintf(ct_for, sizeof ct_for, "%s", rep.frame_of_reference_uid);
  snprintf(tmpl, sizeof tmpl, "%s/CT00001.dcm", ct);
  /* the template's patient and study win over the struct's */
  clara_dicom_series_init(&s, CLARA_MODALITY_MR);
  s.template_path = tmpl;
  s.patient_name = "Other^Person";
  s.study_instance_uid = "1.2.3";
  ck_assert_int_eq(clara_dicom_write_series(mr, &s, &v, img, &rep, NULL, 0),
                   CLARA_OK);
  ck_assert_str_eq(rep.study_instance_uid, ct_study);
  ck_assert_str_ne(rep.frame_of_reference_uid, ct_for);
  snprintf(path, sizeof path, "%s/MR00002.dcm", mr);
  dcm_load(path, &d);
  ASSERT_TAG(&d, 0x0020, 0x000D, ct_study);
  ASSERT_TAG(&d, 0x0010, 0x0010, "Doe^Jane");
  ASSERT_TAG(&d, 0x0010, 0x0030, "19701231");
  ASSERT_TAG(&d, 0x0008, 0x0020, "20240131");
  ASSERT_TAG(&d, 0x0020, 0x0010, "S7");
  ASSERT_TAG(&d, 0x0008, 0x0060, "MR");
  dcm_free(&d);
  /* a frame of reference can be shared on purpose */
  rm_rf(mr);
  s.frame_of_reference_uid = ct_for;
  ck_assert_int_eq(clara_dicom_write_series(mr, &s, &v, img, &rep, NULL, 0),
                   CLARA_OK);
  ck_assert_str_eq(rep.frame_of_reference_uid, ct_for);
  rm_rf(mr);
  /* another character set is converted to UTF-8 */
  snprintf(lat, sizeof lat, "%s/latin1.dcm", dir);
  write_latin1_template(lat);
  s.template_path = lat;
  ck_assert_int_eq(
      clara_dicom_write_series(mr, &s, &v, img, &rep, err, sizeof err),
      CLARA_OK);
  ck_assert_str_eq(rep.study_instance_uid, "1.2.3.4.5");
  snprintf(path, sizeof path, "%s/MR00001.dcm", mr);
  dcm_load(path, &d);
  ASSERT_TAG(&d, 0x0008, 0x0005, "ISO_IR 192");
  ASSERT_TAG(&d, 0x0010, 0x0010, "M\xc3\xbcller^J\xc3\xbcrgen");
  ASSERT_TAG(&d, 0x0010, 0x0020, "LAT1");
  ASSERT_TAG(&d, 0x0008, 0x0020, "20230102");
  ASSERT_TAG(&d, 0x0020, 0x000D, "1.2.3.4.5");
  ASSERT_TAG(&d, 0x0008, 0x0060, "MR");
  dcm_free(&d);
  rm_rf(dir);
}
END_TEST

START_TEST(template_errors) {
  char dir[512], out[600], txt[700], err[512];
  clara_dicom_series s;
  clara_volume v = {.nx = 2, .ny = 2, .nz = 1, .voxel = {1, 1, 1}};
  const float img[4] = {0};
  scratch(dir, sizeof dir);
  snprintf(out, sizeof out, "%s/s", dir);
  snprintf(txt, sizeof txt, "%s/notes.txt", dir);
  write_text(txt, "this is not DICOM, although it is long enough to hold a "
                  "preamble of 128 bytes and the four letters that follow "
                  "it in a Part 10 file ....................................");
  clara_dicom_series_init(&s, CLARA_MODALITY_CT);
  s.template_path = txt;
  ck_assert_int_eq(
      clara_dicom_write_series(out, &s, &v, img, NULL, err, sizeof err),
      CLARA_ERR_FORMAT);
  ck_assert_msg(strstr(err, "not a DICOM file") && strstr(err, "notes.txt"),
                "%s", err);
  write_text(txt, "tiny");
  ck_assert_int_eq(
      clara_dicom_write_series(out, &s, &v, img, NULL, err, sizeof err),
      CLARA_ERR_FORMAT);
  s.template_path = "/no/such/template.dcm";
  ck_assert_int_eq(
      clara_dicom_write_series(out, &s, &v, img, NULL, err, sizeof err),
      CLARA_ERR_IO);
  ck_assert_msg(strstr(err, "/no/such/template.dcm") != NULL, "%s", err);
  s.template_path = dir;
  ck_assert_int_eq(
      clara_dicom_write_series(out, &s, &v, img, NULL, err, sizeof err),
      CLARA_ERR_IO);
  ck_assert_int_eq(count_entries(dir), 1); /* only notes.txt */
  rm_rf(dir);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* The driver of test_dicom.sh                                               */
/* ------------------------------------------------------------------------ */

static int write_sample(const char *dir, const char *modality, const char *tmpl,
                        const char *raw) {
  int ct = !strcmp(modality, "ct");
  clara_volume v = ct ? (clara_volume){.nx = 64,
                                       .ny = 48,
                                       .nz = 4,
                                       .voxel = {0.8, 0.7, 2.5},
                                       .center = {10, -20, 30}}
                      : (clara_volume){.nx = 48,
                                       .ny = 64,
                                       .nz = 3,
                                       .voxel = {1.25, 1.25, 4},
                                       .center = {0, 0, -12}};
  size_t n = (size_t)v.nx * (size_t)v.ny * (size_t)v.nz;
  float *img = malloc(n * sizeof *img);
  clara_dicom_series s;
  clara_dicom_report rep;
  char err[1024];
  clara_status st;
  if (!img)
    return 1;
  for (int z = 0; z < v.nz; z++)
    for (int y = 0; y < v.ny; y++)
      for (int x = 0; x < v.nx; x++) {
        double dx = (x - v.nx / 2.0) / (0.4 * v.nx),
               dy = (y - v.ny / 2.0) / (0.35 * v.ny), r2 = dx * dx + dy * dy;
        double val =
            ct ? (r2 < 1 ? 20.0 * z + 0.25 * x : -1000.0) +
                     (r2 < 0.05 ? 1200.0 : 0.0)
               : (r2 < 1 ? 400.0 + 300.0 * dx + 10.0 * z : 3.0) + 0.01 * x;
        img[((size_t)z * (size_t)v.ny + (size_t)y) * (size_t)v.nx + (size_t)x] =
            (float)val;
      }
  clara_dicom_series_init(&s, ct ? CLARA_MODALITY_CT : CLARA_MODALITY_MR);
  s.template_path = tmpl;
  s.patient_name = ct ? "Phantom^CT" : "Phantom^MR";
  s.patient_id = "CLARA-0001";
  s.patient_birth_date = "1970-01-01";
  s.patient_sex = "O";
  s.patient_age = "054Y";
  s.study_date = "2024-02-29";
  s.study_time = "08:15:00";
  s.study_id = "1";
  s.accession_number = "ACC1";
  s.referring_physician = "Who^Doctor";
  s.study_description = "clara-recon test study";
  s.series_number = ct ? 2 : 3;
  s.series_description = ct ? "FBP Hann" : "Cartesian RSS, denoised";
  s.patient_position = "HFS";
  s.manufacturer = "clara-recon test";
  s.institution_name = "Test Institution";
  if (ct) {
    s.kvp = 120;
    s.convolution_kernel = "HANN";
  } else {
    s.derived = 1;
    s.derivation_description = "denoised with the shipped mr model";
    s.body_part = "HEAD"; /* unpaired: no Laterality */
    s.scanning_sequence = "GR";
    s.sequence_variant = "SP";
    s.mr_acquisition_type = "2D";
    s.echo_time_ms = 3.1;
    s.repetition_time_ms = 250;
    s.echo_train_length = 1;
    s.flip_angle_deg = 15;
    s.magnetic_field_t = 3;
    s.imaged_nucleus = "1H";
  }
  st = clara_dicom_write_series(dir, &s, &v, img, &rep, err, sizeof err);
  if (st != CLARA_OK) {
    fprintf(stderr, "test_export: %s: %s\n", clara_status_name(st), err);
    free(img);
    return 1;
  }
  printf("%s: %d files, slope %g, intercept %g, window %g/%g%s, study %s\n",
         dir, rep.files, rep.slope, rep.intercept, rep.window_center,
         rep.window_width, rep.window_written ? "" : " (not written)",
         rep.study_instance_uid);
  if (raw) {
    FILE *f = fopen(raw, "wb");
    if (!f || fwrite(img, sizeof *img, n, f) != n || fclose(f) != 0) {
      fprintf(stderr, "test_export: %s: %s\n", raw, strerror(errno));
      free(img);
      return 1;
    }
  }
  free(img);
  return 0;
}
#endif /* HAVE_DCMTK */

#ifdef HAVE_PNG
/* ------------------------------------------------------------------------ */
/* PNG previews                                                              */
/* ------------------------------------------------------------------------ */

/* Reads a PNG as 8-bit grey; returns malloc'd pixels. */
static unsigned char *read_png(const char *path, unsigned *w, unsigned *h) {
  png_image im;
  unsigned char *px;
  memset(&im, 0, sizeof im);
  im.version = PNG_IMAGE_VERSION;
  ck_assert_msg(png_image_begin_read_from_file(&im, path), "%s: %s", path,
                im.message);
  ck_assert_int_eq(im.format, PNG_FORMAT_GRAY);
  px = malloc(PNG_IMAGE_SIZE(im));
  ck_assert(px != NULL);
  ck_assert_msg(png_image_finish_read(&im, NULL, px, 0, NULL), "%s",
                im.message);
  *w = im.width;
  *h = im.height;
  return px;
}

START_TEST(png_window_levels) {
  char dir[512], path[600];
  const float v[8] = {-160.0f, 40.0f,  240.0f,   -1000.0f,
                      3000.0f, 140.0f, INFINITY, -INFINITY};
  const unsigned char want[8] = {0, 128, 255, 0, 255, 191, 255, 0};
  unsigned w, h;
  unsigned char *px;
  scratch(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/one.png", dir);
  ck_assert_int_eq(clara_png_write(path, v, 4, 2, 1, 40, 400, NULL, 0),
                   CLARA_OK);
  px = read_png(path, &w, &h);
  ck_assert_uint_eq(w, 4);
  ck_assert_uint_eq(h, 2);
  for (int i = 0; i < 8; i++)
    ck_assert_msg(px[i] == want[i], "%d: %g -> %d, want %d", i, (double)v[i],
                  px[i], want[i]);
  free(px);
  ck_assert_int_eq(count_entries(dir), 1); /* no temporary left */
  rm_rf(dir);
}
END_TEST

/* Tile k of a montage shows slice s: every pixel of slice s is s * 10. */
static float *slice_numbers(int nx, int ny, int nz) {
  float *img = malloc((size_t)nx * (size_t)ny * (size_t)nz * sizeof *img);
  ck_assert(img != NULL);
  for (size_t i = 0; i < (size_t)nx * (size_t)ny * (size_t)nz; i++)
    img[i] = 10.0f * (float)(i / ((size_t)nx * (size_t)ny));
  return img;
}

START_TEST(png_montage) {
  char dir[512], path[600];
  unsigned w, h;
  unsigned char *px;
  float *img = slice_numbers(4, 3, 5);
  scratch(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/m.png", dir);
  /* window 0..255: grey = value */
  ck_assert_int_eq(clara_png_write(path, img, 4, 3, 5, 127.5, 255, NULL, 0),
                   CLARA_OK);
  px = read_png(path, &w, &h);
  ck_assert_uint_eq(w, 3 * 4); /* 5 tiles: 3 columns, 2 rows */
  ck_assert_uint_eq(h, 2 * 3);
  for (unsigned r = 0; r < h; r++)
    for (unsigned c = 0; c < w; c++) {
      unsigned k = (r / 3) * 3 + c / 4;
      unsigned want = k < 5 ? 10 * k : 0;
      ck_assert_msg(px[r * w + c] == want, "(%u,%u): %d, want %u", r, c,
                    px[r * w + c], want);
    }
  free(px);
  free(img);
  /* 40 slices: 16 of them, evenly, first and last, on 4 x 4 */
  img = slice_numbers(2, 2, 40);
  ck_assert_int_eq(clara_png_write(path, img, 2, 2, 40, 127.5, 255, NULL, 0),
                   CLARA_OK);
  px = read_png(path, &w, &h);
  ck_assert_uint_eq(w, 8);
  ck_assert_uint_eq(h, 8);
  for (unsigned k = 0; k < 16; k++) {
    unsigned s = (k * 39 + 7) / 15;
    unsigned r = (k / 4) * 2, c = (k % 4) * 2;
    unsigned want = 10 * s < 255 ? 10 * s : 255;
    ck_assert_msg(px[r * w + c] == want, "tile %u: %d, want slice %u", k,
                  px[r * w + c], s);
  }
  ck_assert_int_eq(px[0], 0);
  ck_assert_int_eq(px[7 * w + 7], 255); /* slice 39: 390 clamps */
  free(px);
  free(img);
  ck_assert_int_eq(count_entries(dir), 1);
  rm_rf(dir);
}
END_TEST

START_TEST(png_errors) {
  char dir[512], path[600], err[512];
  float img[4] = {0, 1, 2, 3};
  scratch(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/p.png", dir);
  ck_assert_int_eq(clara_png_write(NULL, img, 2, 2, 1, 0, 1, err, sizeof err),
                   CLARA_ERR_INVALID_ARG);
  ck_assert_int_eq(clara_png_write(path, NULL, 2, 2, 1, 0, 1, err, sizeof err),
                   CLARA_ERR_INVALID_ARG);
  ck_assert_int_eq(clara_png_write(path, img, 0, 2, 1, 0, 1, err, sizeof err),
                   CLARA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(err, "nx") != NULL, "%s", err);
  ck_assert_int_eq(clara_png_write(path, img, 2, 2, 1, 0, 0, err, sizeof err),
                   CLARA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(err, "width") != NULL, "%s", err);
  ck_assert_int_eq(
      clara_png_write(path, img, 2, 2, 1, NAN, 10, err, sizeof err),
      CLARA_ERR_INVALID_ARG);
  ck_assert_int_eq(
      clara_png_write(path, img, 2, 2, 1, 0, INFINITY, err, sizeof err),
      CLARA_ERR_INVALID_ARG);
  ck_assert_int_eq(
      clara_png_write(path, img, 2000000, 1, 1, 0, 1, err, sizeof err),
      CLARA_ERR_INVALID_ARG);
  img[3] = NAN;
  ck_assert_int_eq(clara_png_write(path, img, 2, 2, 1, 0, 1, err, sizeof err),
                   CLARA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(err, "ix 1, iy 1") != NULL, "%s", err);
  img[3] = 3;
  ck_assert_int_eq(count_entries(dir), 0);
  /* a missing directory, a directory as the path */
  snprintf(path, sizeof path, "%s/no/p.png", dir);
  ck_assert_int_eq(clara_png_write(path, img, 2, 2, 1, 0, 1, err, sizeof err),
                   CLARA_ERR_IO);
  ck_assert_msg(strstr(err, "no/p.png") != NULL, "%s", err);
  ck_assert_int_eq(clara_png_write(dir, img, 2, 2, 1, 0, 1, err, sizeof err),
                   CLARA_ERR_IO);
  ck_assert_msg(strstr(err, "directory") != NULL, "%s", err);
  if (geteuid() == 0) {
    ck_assert_int_eq(clara_png_write("/proc/clara-test.png", img, 2, 2, 1, 0, 1,
                                     err, sizeof err),
                     CLARA_ERR_IO);
  } else {
    char ro[600];
    snprintf(ro, sizeof ro, "%s/ro", dir);
    ck_assert_int_eq(mkdir(ro, 0555), 0);
    snprintf(path, sizeof path, "%s/ro/p.png", dir);
    ck_assert_int_eq(clara_png_write(path, img, 2, 2, 1, 0, 1, err, sizeof err),
                     CLARA_ERR_IO);
    ck_assert_int_eq(count_entries(ro), 0);
    rmdir(ro);
  }
  ck_assert_int_eq(count_entries(dir), 0);
  /* an existing file is replaced whole */
  snprintf(path, sizeof path, "%s/p.png", dir);
  write_text(path, "old");
  ck_assert_int_eq(clara_png_write(path, img, 2, 2, 1, 1.5, 3, NULL, 0),
                   CLARA_OK);
  {
    unsigned w, h;
    unsigned char *px = read_png(path, &w, &h);
    ck_assert_uint_eq(w * h, 4);
    free(px);
  }
  ck_assert_int_eq(count_entries(dir), 1);
  rm_rf(dir);
}
END_TEST

START_TEST(png_windows) {
  double c, w;
  char err[256];
  float ramp[1000];
  ck_assert_int_eq(
      clara_png_default_window(CLARA_MODALITY_CT, NULL, 0, &c, &w, NULL, 0),
      CLARA_OK);
  ck_assert_double_eq(c, 40);
  ck_assert_double_eq(w, 400);
  for (int i = 0; i < 1000; i++)
    ramp[i] = (float)i;
  ck_assert_int_eq(
      clara_png_default_window(CLARA_MODALITY_MR, ramp, 1000, &c, &w, NULL, 0),
      CLARA_OK);
  /* nearest-rank p1 = 9, p99 = 989, up to the quantisation (999 / 32000) */
  ck_assert_double_eq_tol(c, 499.0, 0.05);
  ck_assert_double_eq_tol(w, 980.0, 0.05);
  ramp[500] = NAN;
  ck_assert_int_eq(clara_png_default_window(CLARA_MODALITY_MR, ramp, 1000, &c,
                                            &w, err, sizeof err),
                   CLARA_ERR_INVALID_ARG);
  ck_assert_msg(strstr(err, "500") != NULL, "%s", err);
  ck_assert_int_eq(clara_png_default_window((clara_modality)7, ramp, 1000, &c,
                                            &w, err, sizeof err),
                   CLARA_ERR_INVALID_ARG);
  ck_assert_int_eq(clara_png_parse_window("40,400", &c, &w, NULL, 0), CLARA_OK);
  ck_assert_double_eq(c, 40);
  ck_assert_double_eq(w, 400);
  ck_assert_int_eq(clara_png_parse_window(" -600 , 1500 ", &c, &w, NULL, 0),
                   CLARA_OK);
  ck_assert_double_eq(c, -600);
  ck_assert_double_eq(w, 1500);
  ck_assert_int_eq(clara_png_parse_window("0.5,1e-3", &c, &w, NULL, 0),
                   CLARA_OK);
  static const char *const bad[] = {"40",    "40,",    ",400", "40;400",
                                    "40,0",  "40,-1",  "a,b",  "40,400x",
                                    "nan,1", "40,inf", "",     "40,400,1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ck_assert_msg(clara_png_parse_window(bad[i], &c, &w, err, sizeof err) ==
                      CLARA_ERR_INVALID_ARG,
                  "\"%s\" accepted", bad[i]);
    ck_assert_msg(strstr(err, "--window") != NULL, "%s", err);
  }
}
END_TEST
#endif /* HAVE_PNG */

int main(int argc, char **argv) {
  Suite *su;
  SRunner *sr;
  int failed;
  if (argc > 1 && !strcmp(argv[1], "--write-series")) {
#ifdef HAVE_DCMTK
    const char *tmpl = NULL, *raw = NULL;
    if (argc < 4 || (strcmp(argv[3], "ct") && strcmp(argv[3], "mr"))) {
      fprintf(stderr,
              "usage: %s --write-series DIR ct|mr [--template FILE] "
              "[--raw FILE]\n",
              argv[0]);
      return 2;
    }
    for (int i = 4; i + 1 < argc; i += 2) {
      if (!strcmp(argv[i], "--template"))
        tmpl = argv[i + 1];
      else if (!strcmp(argv[i], "--raw"))
        raw = argv[i + 1];
    }
    return write_sample(argv[2], argv[3], tmpl, raw);
#else
    fprintf(stderr, "test_export: built without DCMTK\n");
    return 77;
#endif
  }
#if !defined(HAVE_DCMTK) && !defined(HAVE_PNG)
  puts("test_export: built without DCMTK and libpng: nothing to test");
  return 77;
#else
  su = suite_create("export");
#endif
#ifdef HAVE_DCMTK
  {
    TCase *tc = tcase_create("dicom");
    tcase_add_test(tc, ct_series);
    tcase_add_test(tc, ct_clipping_is_reported);
    tcase_add_test(tc, non_finite_voxels_fail);
    tcase_add_test(tc, output_directory_rules);
    tcase_add_test(tc, mr_series);
    tcase_add_test(tc, mr_tiny_values_leave_the_window_out);
    tcase_add_test(tc, utf8_names_set_the_character_set);
    tcase_add_test(tc, fields_are_checked);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, uids_are_uuid_derived);
    tcase_add_test(tc, template_continues_a_study);
    tcase_add_test(tc, template_errors);
    suite_add_tcase(su, tc);
  }
#else
  puts("test_export: built without DCMTK: DICOM tests skipped");
#endif
#ifdef HAVE_PNG
  {
    TCase *tc = tcase_create("png");
    tcase_add_test(tc, png_window_levels);
    tcase_add_test(tc, png_montage);
    tcase_add_test(tc, png_errors);
    tcase_add_test(tc, png_windows);
    suite_add_tcase(su, tc);
  }
#else
  puts("test_export: built without libpng: PNG tests skipped");
#endif
  sr = srunner_create(su);
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
