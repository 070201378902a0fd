/*
 * test_mr_phantom.c -- clara_mr_phantom_kspace and clara_mr_file_write_ismrmrd.
 *
 * - The analytic k-space against a brute-force DFT of the rasterised
 *   phantom x maps (the maps from the library on a fine grid): the
 *   difference is the rasterisation error, so it must be small and shrink
 *   as the raster gets finer.
 * - The ORTHO SENSITIVITY reconstruction of the phantom k-space with the
 *   library's maps gives back the phantom (up to Gibbs ringing).
 * - Writing and reading back an ISMRMRD file is exact (k-space, geometry,
 *   noise), in 2D with partial Fourier and oversampling and in 3D.
 * - When ismrmrd_recon_cartesian_2d (Debian package ismrmrd-tools) is on
 *   PATH, it reconstructs our file; its image equals ours (NONE + RSS).
 * - Bad arguments.
 */
#include "clara_recon.h"

#include <check.h>
#include <hdf5.h>

#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];
static const char recon_tool[] = "ismrmrd_recon_cartesian_2d";

#define ASSERT_STATUS(st, want)                                                \
  ck_assert_msg((st) == (want), "status %s, expected %s; message: \"%s\"",     \
                clara_status_name(st), clara_status_name(want),                \
                clara_last_error())

static void tpath(char *buf, size_t n, const char *name) {
  int len = snprintf(buf, n, "%s/%s", tmpdir, name);
  ck_assert(len > 0 && (size_t)len < n);
}

static size_t kfloats(const clara_mr_geometry *g) {
  return (size_t)g->slices * g->coils * g->nz * g->ny * g->nx * 2;
}

static float *xalloc(size_t n) {
  float *p = calloc(n, sizeof(float));
  ck_assert_ptr_nonnull(p);
  return p;
}

static void full_geom(clara_mr_geometry *g, int coils, int nx, int ny,
                      int recon_nx) {
  memset(g, 0, sizeof *g);
  g->coils = coils;
  g->nx = nx;
  g->ny = ny;
  g->nz = 1;
  g->slices = 1;
  g->recon_nx = recon_nx;
  g->ky_last = ny - 1;
  g->kx_last = nx - 1;
}

/* ---- analytic k-space vs a brute-force DFT ------------------------------ */

/* Relative L2 difference between the library's k-space and the DFT of the
 * phantom x maps rasterised on an (R*16)^2 grid over the FOV. */
static double dft_error(int R) {
  enum { C = 3, NX = 32, NY = 16, RNX = 16 };
  const double fov = 100.0;
  const int nf = 16 * R;
  const double h = fov / nf;
  const double fov_x = fov * NX / RNX;
  const double scale = sqrt((double)NX * NY) / (fov_x * fov);
  clara_mr_geometry g, gf;
  clara_volume vol;
  clara_phantom *ph = NULL;
  float *k = xalloc((size_t)C * NY * NX * 2);
  float *raster = xalloc((size_t)nf * nf);
  float *maps = xalloc((size_t)C * nf * nf * 2);
  float *kf = xalloc((size_t)C * nf * nf * 2);
  double *gre = calloc((size_t)nf * NX, sizeof(double));
  double *gim = calloc((size_t)nf * NX, sizeof(double));
  double num = 0, den = 0;

  ck_assert(gre && gim);
  full_geom(&g, C, NX, NY, RNX);
  ASSERT_STATUS(clara_mr_phantom_kspace(&g, fov, 1, k, NULL), CLARA_OK);
  /* the maps on the fine grid: a geometry whose recon grid is nf x nf over
   * the same FOV (one line of k-space to keep it cheap) */
  full_geom(&gf, C, nf, nf, nf);
  gf.ky_first = gf.ky_last = nf / 2;
  ASSERT_STATUS(clara_mr_phantom_kspace(&gf, fov, 1, kf, maps), CLARA_OK);
  /* the phantom on the same points: centre (i - nf/2) h */
  ASSERT_STATUS(clara_phantom_shepp_logan(2, fov / 2, 1.0, &ph), CLARA_OK);
  vol.nx = vol.ny = nf;
  vol.nz = 1;
  vol.voxel[0] = vol.voxel[1] = vol.voxel[2] = h;
  vol.center[0] = vol.center[1] = -0.5 * h;
  vol.center[2] = 0;
  ASSERT_STATUS(clara_phantom_rasterize(ph, &vol, 4, raster), CLARA_OK);
  clara_phantom_destroy(ph);

  for (int c = 0; c < C; c++) {
    const float *m = maps + (size_t)c * nf * nf * 2;
    /* rows first: G[py][kx] = sum_px f S exp(-2 pi i kx px) */
    for (int y = 0; y < nf; y++)
      for (int kx = 0; kx < NX; kx++) {
        double sr = 0, si = 0, fx = (kx - NX / 2) / fov_x;
        for (int x = 0; x < nf; x++) {
          double f = raster[(size_t)y * nf + x];
          const float *s = m + ((size_t)y * nf + x) * 2;
          double a = -2 * M_PI * fx * (x - nf / 2) * h;
          double er = cos(a), ei = sin(a);
          double vr = f * s[0], vi = f * s[1];
          sr += vr * er - vi * ei;
          si += vr * ei + vi * er;
        }
        gre[(size_t)y * NX + kx] = sr;
        gim[(size_t)y * NX + kx] = si;
      }
    for (int ky = 0; ky < NY; ky++)
      for (int kx = 0; kx < NX; kx++) {
        double sr = 0, si = 0, fy = (ky - NY / 2) / fov;
        const float *v = k + (((size_t)c * NY + ky) * NX + kx) * 2;
        for (int y = 0; y < nf; y++) {
          double a = -2 * M_PI * fy * (y - nf / 2) * h;
          double er = cos(a), ei = sin(a);
          double vr = gre[(size_t)y * NX + kx], vi = gim[(size_t)y * NX + kx];
          sr += vr * er - vi * ei;
          si += vr * ei + vi * er;
        }
        sr *= scale * h * h;
        si *= scale * h * h;
        num += (v[0] - sr) * (v[0] - sr) + (v[1] - si) * (v[1] - si);
        den += (double)v[0] * v[0] + (double)v[1] * v[1];
      }
  }
  free(k);
  free(raster);
  free(maps);
  free(kf);
  free(gre);
  free(gim);
  return sqrt(num / den);
}

START_TEST(test_kspace_vs_dft) {
  double e4 = dft_error(4), e16 = dft_error(16);
  fprintf(stderr,
          "test_mr_phantom: analytic vs DFT of the raster: %.3g "
          "(4x), %.3g (16x)\n",
          e4, e16);
  ck_assert_msg(e4 < 0.04, "4x raster: relative error %g", e4);
  ck_assert_msg(e16 < 0.004, "16x raster: relative error %g", e16);
  ck_assert_msg(e16 < 0.2 * e4, "no convergence: %g (4x) vs %g (16x)", e4, e16);
}
END_TEST

/* Only the sampled range is filled; the rest is 0; slices repeat. */
START_TEST(test_kspace_ranges) {
  clara_mr_geometry g;
  float *k;
  full_geom(&g, 2, 16, 12, 8);
  g.slices = 2;
  g.ky_first = 4;
  g.kx_first = 2;
  g.kx_last = 13;
  k = xalloc(kfloats(&g));
  ASSERT_STATUS(clara_mr_phantom_kspace(&g, 200, 1, k, NULL), CLARA_OK);
  for (int s = 0; s < 2; s++)
    for (int c = 0; c < 2; c++)
      for (int y = 0; y < 12; y++)
        for (int x = 0; x < 16; x++) {
          const float *v = k + ((((size_t)s * 2 + c) * 12 + y) * 16 + x) * 2;
          const float *v0 = k + ((((size_t)c) * 12 + y) * 16 + x) * 2;
          int in = y >= 4 && x >= 2 && x <= 13;
          if (!in)
            ck_assert(v[0] == 0 && v[1] == 0);
          else
            ck_assert(v[0] == v0[0] && v[1] == v0[1]);
        }
  /* DC of coil 0 is nonzero */
  ck_assert(fabsf(k[((size_t)6 * 16 + 8) * 2]) > 0);
  free(k);
}
END_TEST

/* SENSITIVITY combination with the library's maps gives the phantom. */
START_TEST(test_sense_recovers_phantom) {
  enum { C = 4, N = 128 };
  const double fov = 200;
  clara_mr_geometry g;
  clara_mr_options o;
  clara_context *ctx = NULL;
  clara_mr_plan *plan = NULL;
  clara_phantom *ph = NULL;
  clara_volume vol;
  float *k, *maps, *img, *truth;
  double num = 0, den = 0, uniform_err = 0;

  full_geom(&g, C, 2 * N, N, N);
  k = xalloc(kfloats(&g));
  maps = xalloc((size_t)C * N * N * 2);
  img = xalloc((size_t)N * N);
  truth = xalloc((size_t)N * N);
  ASSERT_STATUS(clara_mr_phantom_kspace(&g, fov, 1, k, maps), CLARA_OK);
  ASSERT_STATUS(clara_context_create(NULL, &ctx), CLARA_OK);
  clara_mr_options_init(&o);
  o.combine = CLARA_MR_COMBINE_SENSITIVITY;
  o.sensitivities = maps;
  ASSERT_STATUS(clara_mr_plan_create(ctx, &g, &o, &plan), CLARA_OK);
  ASSERT_STATUS(clara_mr_execute(plan, k, img), CLARA_OK);
  clara_mr_plan_destroy(plan);

  ASSERT_STATUS(clara_phantom_shepp_logan(2, fov / 2, 1.0, &ph), CLARA_OK);
  vol.nx = vol.ny = N;
  vol.nz = 1;
  vol.voxel[0] = vol.voxel[1] = vol.voxel[2] = fov / N;
  vol.center[0] = vol.center[1] = -0.5 * fov / N;
  vol.center[2] = 0;
  ASSERT_STATUS(clara_phantom_rasterize(ph, &vol, 4, truth), CLARA_OK);
  clara_phantom_destroy(ph);
  for (int i = 0; i < N * N; i++) {
    num += (img[i] - fabsf(truth[i])) * (img[i] - fabsf(truth[i]));
    den += (double)truth[i] * truth[i];
  }
  fprintf(stderr,
          "test_mr_phantom: SENSITIVITY recon vs raster, 128x128: relative "
          "RMSE %.3g\n",
          sqrt(num / den));
  ck_assert_msg(sqrt(num / den) < 0.12, "relative RMSE %g", sqrt(num / den));

  /* uniform maps: every coil is the phantom itself */
  full_geom(&g, 1, N, N, N);
  ASSERT_STATUS(clara_mr_phantom_kspace(&g, fov, 0, k, maps), CLARA_OK);
  for (int i = 0; i < N * N; i++)
    ck_assert(maps[2 * i] == 1.0f && maps[2 * i + 1] == 0.0f);
  clara_mr_options_init(&o);
  ASSERT_STATUS(clara_mr_plan_create(ctx, &g, &o, &plan), CLARA_OK);
  ASSERT_STATUS(clara_mr_execute(plan, k, img), CLARA_OK);
  clara_mr_plan_destroy(plan);
  num = 0;
  for (int i = 0; i < N * N; i++)
    num += (img[i] - fabsf(truth[i])) * (img[i] - fabsf(truth[i]));
  uniform_err = sqrt(num / den);
  ck_assert_msg(uniform_err < 0.15, "uniform maps: relative RMSE %g",
                uniform_err);
  clara_context_destroy(ctx);
  free(k);
  free(maps);
  free(img);
  free(truth);
}
END_TEST

/* ---- write / read round trip -------------------------------------------- */

static void round_trip(const clara_mr_geometry *g, int noise_samples) {
  char path[512];
  clara_mr_file *f = NULL;
  clara_mr_geometry r;
  float *k = xalloc(kfloats(g)), *back = xalloc(kfloats(g));
  float *noise = NULL;
  const float *rn = NULL;
  int rs = -1, rc = -1;
  size_t n = kfloats(g);

  /* distinct values on the sampled range, zeros elsewhere */
  for (int s = 0; s < g->slices; s++)
    for (int c = 0; c < g->coils; c++)
      for (int z = 0; z < g->nz; z++)
        for (int y = g->ky_first; y <= g->ky_last; y++)
          for (int x = g->kx_first; x <= g->kx_last; x++) {
            size_t i = (((((size_t)s * g->coils + c) * g->nz + z) * g->ny + y) *
                            g->nx +
                        x);
            k[2 * i] = (float)i * 0.25f + 1.0f;
            k[2 * i + 1] = -(float)i * 0.5f - 0.125f;
          }
  if (noise_samples) {
    noise = xalloc((size_t)g->coils * noise_samples * 2);
    for (size_t i = 0; i < (size_t)g->coils * noise_samples * 2; i++)
      noise[i] = (float)sin((double)i * 1.7) * 3.0f;
  }
  tpath(path, sizeof path, "roundtrip.h5");
  ASSERT_STATUS(clara_mr_file_write_ismrmrd(path, g, k, noise, noise_samples),
                CLARA_OK);
  ASSERT_STATUS(clara_mr_file_open(path, &f), CLARA_OK);
  ck_assert_str_eq(clara_mr_file_format(f), "ismrmrd");
  ck_assert_int_eq(clara_mr_file_count(f), 1);
  ASSERT_STATUS(clara_mr_file_geometry(f, 0, &r), CLARA_OK);
  ck_assert_int_eq(r.coils, g->coils);
  ck_assert_int_eq(r.nx, g->nx);
  ck_assert_int_eq(r.ny, g->ny);
  ck_assert_int_eq(r.nz, g->nz);
  ck_assert_int_eq(r.slices, g->slices);
  ck_assert_int_eq(r.recon_nx, g->recon_nx ? g->recon_nx : g->nx);
  ck_assert_int_eq(r.ky_first, g->ky_first);
  ck_assert_int_eq(r.ky_last, g->ky_last);
  ck_assert_int_eq(r.kx_first, g->kx_first);
  ck_assert_int_eq(r.kx_last, g->kx_last);
  ASSERT_STATUS(clara_mr_file_kspace(f, 0, back), CLARA_OK);
  ck_assert(memcmp(k, back, n * sizeof(float)) == 0);
  ASSERT_STATUS(clara_mr_file_noise(f, &rc, &rs, &rn), CLARA_OK);
  ck_assert_int_eq(rs, noise_samples);
  ck_assert_int_eq(rc, noise_samples ? g->coils : 0);
  if (noise_samples)
    ck_assert(memcmp(rn, noise,
                     (size_t)g->coils * noise_samples * 2 * sizeof(float)) ==
              0);
  else
    ck_assert_ptr_null(rn);
  clara_mr_file_close(f);
  ck_assert_int_eq(access(path, F_OK), 0);
  free(k);
  free(back);
  free(noise);
}

START_TEST(test_round_trip_2d) {
  clara_mr_geometry g;
  full_geom(&g, 3, 24, 16, 12);
  g.slices = 2;
  g.ky_first = 6; /* partial Fourier */
  g.kx_first = 4; /* asymmetric echo */
  round_trip(&g, 50);
  round_trip(&g, 0);
}
END_TEST

START_TEST(test_round_trip_3d) {
  clara_mr_geometry g;
  full_geom(&g, 2, 8, 6, 0);
  g.nz = 4;
  g.ky_last = 4;
  round_trip(&g, 8);
}
END_TEST

/* ---- the ISMRMRD reference tool reads our file -------------------------- */

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

START_TEST(test_ismrmrd_tool_reads_ours) {
  enum { C = 4, N = 32 };
  char path[512], cmd[1200];
  clara_mr_geometry g;
  clara_mr_options o;
  clara_context *ctx = NULL;
  clara_mr_plan *plan = NULL;
  float *k, *ours, *theirs;
  hid_t fid, d, sp;
  hsize_t dims[5];
  double num = 0, den = 0;

  full_geom(&g, C, 2 * N, N, N);
  k = xalloc(kfloats(&g));
  ours = xalloc((size_t)N * N);
  theirs = xalloc((size_t)N * N);
  ASSERT_STATUS(clara_mr_phantom_kspace(&g, 240, 1, k, NULL), CLARA_OK);
  tpath(path, sizeof path, "for_tool.h5");
  ASSERT_STATUS(clara_mr_file_write_ismrmrd(path, &g, k, NULL, 0), CLARA_OK);
  snprintf(cmd, sizeof cmd, "%s '%s' >/dev/null 2>&1", recon_tool, path);
  ck_assert_msg(system(cmd) == 0, "%s failed", cmd);

  fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  ck_assert(fid >= 0);
  d = H5Dopen2(fid, "/dataset/cpp/data", H5P_DEFAULT);
  ck_assert_msg(d >= 0, "the tool wrote no /dataset/cpp/data");
  sp = H5Dget_space(d);
  ck_assert_int_eq(H5Sget_simple_extent_ndims(sp), 5);
  H5Sget_simple_extent_dims(sp, dims, NULL);
  ck_assert(dims[0] == 1 && dims[1] == 1 && dims[2] == 1 && dims[3] == N &&
            dims[4] == N);
  ck_assert(
      H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, theirs) >= 0);
  H5Sclose(sp);
  H5Dclose(d);
  H5Fclose(fid);

  ASSERT_STATUS(clara_context_create(NULL, &ctx), CLARA_OK);
  clara_mr_options_init(&o);
  o.norm = CLARA_MR_NORM_NONE;
  ASSERT_STATUS(clara_mr_plan_create(ctx, &g, &o, &plan), CLARA_OK);
  ASSERT_STATUS(clara_mr_execute(plan, k, ours), CLARA_OK);
  clara_mr_plan_destroy(plan);
  clara_context_destroy(ctx);
  for (int i = 0; i < N * N; i++) {
    num += (ours[i] - theirs[i]) * (ours[i] - theirs[i]);
    den += (double)ours[i] * ours[i];
  }
  fprintf(stderr,
          "test_mr_phantom: %s on our file vs clara NONE+RSS: relative "
          "difference %.3g\n",
          recon_tool, sqrt(num / den));
  ck_assert_msg(sqrt(num / den) < 1e-4, "relative difference %g",
                sqrt(num / den));
  free(k);
  free(ours);
  free(theirs);
}
END_TEST

/* ---- bad arguments ------------------------------------------------------- */

START_TEST(test_bad_args) {
  clara_mr_geometry g;
  float k[2 * 4 * 4 * 2], noise[8];
  char path[512];
  tpath(path, sizeof path, "bad.h5");
  full_geom(&g, 2, 4, 4, 0);
  ASSERT_STATUS(clara_mr_phantom_kspace(NULL, 100, 1, k, NULL),
                CLARA_ERR_INVALID_ARG);
  ASSERT_STATUS(clara_mr_phantom_kspace(&g, 100, 1, NULL, NULL),
                CLARA_ERR_INVALID_ARG);
  ASSERT_STATUS(clara_mr_phantom_kspace(&g, 0, 1, k, NULL),
                CLARA_ERR_INVALID_ARG);
  ASSERT_STATUS(clara_mr_phantom_kspace(&g, NAN, 1, k, NULL),
                CLARA_ERR_INVALID_ARG);
  ASSERT_STATUS(clara_mr_phantom_kspace(&g, 100, 2, k, NULL),
                CLARA_ERR_INVALID_ARG);
  g.nz = 2;
  ASSERT_STATUS(clara_mr_phantom_kspace(&g, 100, 1, k, NULL),
                CLARA_ERR_UNSUPPORTED);
  g.nz = 1;
  g.ky_last = 4;
  ASSERT_STATUS(clara_mr_phantom_kspace(&g, 100, 1, k, NULL),
                CLARA_ERR_INVALID_ARG);
  ASSERT_STATUS(clara_mr_file_write_ismrmrd(path, &g, k, NULL, 0),
                CLARA_ERR_INVALID_ARG);
  ck_assert(strstr(clara_last_error(), "ky_last") ||
            strstr(clara_last_error(), "ky_first"));
  g.ky_last = 3;
  memset(k, 0, sizeof k);
  ASSERT_STATUS(clara_mr_file_write_ismrmrd(NULL, &g, k, NULL, 0),
                CLARA_ERR_INVALID_ARG);
  ASSERT_STATUS(clara_mr_file_write_ismrmrd("", &g, k, NULL, 0),
                CLARA_ERR_INVALID_ARG);
  ASSERT_STATUS(clara_mr_file_write_ismrmrd(path, &g, NULL, NULL, 0),
                CLARA_ERR_INVALID_ARG);
  ASSERT_STATUS(clara_mr_file_write_ismrmrd(path, &g, k, noise, 0),
                CLARA_ERR_INVALID_ARG);
  ASSERT_STATUS(clara_mr_file_write_ismrmrd(path, &g, k, NULL, 2),
                CLARA_ERR_INVALID_ARG);
  g.kx_first = 3; /* past the centre nx/2 = 2 */
  ASSERT_STATUS(clara_mr_file_write_ismrmrd(path, &g, k, NULL, 0),
                CLARA_ERR_INVALID_ARG);
  ck_assert_int_ne(access(path, F_OK), 0);
  g.kx_first = 0;
  ASSERT_STATUS(
      clara_mr_file_write_ismrmrd("/nonexistent-dir/x.h5", &g, k, NULL, 0),
      CLARA_ERR_IO);
  ck_assert(strstr(clara_last_error(), "clara_mr_file_write_ismrmrd: ") !=
            NULL);
}
END_TEST

static Suite *mr_phantom_suite(int have_tool) {
  Suite *s = suite_create("mr_phantom");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_kspace_vs_dft);
  tcase_add_test(tc, test_kspace_ranges);
  tcase_add_test(tc, test_sense_recovers_phantom);
  tcase_add_test(tc, test_round_trip_2d);
  tcase_add_test(tc, test_round_trip_3d);
  tcase_add_test(tc, test_bad_args);
  if (have_tool)
    tcase_add_test(tc, test_ismrmrd_tool_reads_ours);
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
  int failed, have_tool = tool_on_path(recon_tool);
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/clara_test_mr_phantom.XXXXXX",
           base && base[0] ? base : "/tmp");
  if (!mkdtemp(tmpdir)) {
    fprintf(stderr, "test_mr_phantom: mkdtemp(%s): %s\n", tmpdir,
            strerror(errno));
    return EXIT_FAILURE;
  }
  if (!have_tool)
    fprintf(stderr,
            "test_mr_phantom: SKIP 1 test: %s not found on PATH (Debian "
            "package ismrmrd-tools)\n",
            recon_tool);
  sr = srunner_create(mr_phantom_suite(have_tool));
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  if (nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
    fprintf(stderr, "test_mr_phantom: cannot remove %s: %s\n", tmpdir,
            strerror(errno));
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
