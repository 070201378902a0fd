/* test_nn.c -- the denoiser API: the model loader against every way a file
 * can break the format, the checks of clara_denoise, attaching denoisers to
 * FBP and MR plans, and the shipped models against PyTorch's output for the
 * same weights (tests/data/denoise_ref.h5, made by models/train). The
 * convolution kernels themselves are tested in test_nn_cpu.c. */
#include "clara_recon.h"
#include "nn_testutil.h"

#include <check.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MSG_HAS(frag)                                                          \
  ck_assert_msg(strstr(clara_last_error(), (frag)) != NULL,                    \
                "message \"%s\" lacks \"%s\"", clara_last_error(), (frag))

static clara_context *cpu_ctx(int threads) {
  clara_context_options o;
  clara_context *ctx = NULL;
  clara_context_options_init(&o);
  o.backend = CLARA_BACKEND_CPU;
  o.threads = threads;
  ck_assert_int_eq(clara_context_create(&o, &ctx), CLARA_OK);
  return ctx;
}

static const char *srcdir(void) {
  const char *s = getenv("top_srcdir");
  return s && *s ? s : ".";
}

/* A valid model file of 'layers' x 'width'; the caller frees the name. */
static char *valid_model(int layers, int width, const char *modality) {
  nn_test_model m;
  char *path = nn_test_tmpname(".h5");
  nn_test_model_random(&m, layers, width, 7);
  m.modality = modality;
  ck_assert_int_eq(nn_test_model_write(&m, path), 0);
  nn_test_model_free(&m);
  return path;
}

/* ---- Ways to break a file ---------------------------------------------- */

static void set_int_attr(const char *path, const char *obj, const char *name,
                         long long v) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t o = H5Oopen(f, obj, H5P_DEFAULT), sp = H5Screate(H5S_SCALAR), a;
  ck_assert(f >= 0 && o >= 0);
  if (H5Aexists(o, name) > 0)
    H5Adelete(o, name);
  a = H5Acreate2(o, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(a >= 0 && H5Awrite(a, H5T_NATIVE_LLONG, &v) >= 0);
  H5Aclose(a);
  H5Sclose(sp);
  H5Oclose(o);
  H5Fclose(f);
}

static void set_double_attr(const char *path, const char *obj,
                            const char *name, double v) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t o = H5Oopen(f, obj, H5P_DEFAULT), sp = H5Screate(H5S_SCALAR), a;
  ck_assert(f >= 0 && o >= 0);
  if (H5Aexists(o, name) > 0)
    H5Adelete(o, name);
  a = H5Acreate2(o, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(a >= 0 && H5Awrite(a, H5T_NATIVE_DOUBLE, &v) >= 0);
  H5Aclose(a);
  H5Sclose(sp);
  H5Oclose(o);
  H5Fclose(f);
}

static void set_str_attr(const char *path, const char *obj, const char *name,
                         const char *v) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t o = H5Oopen(f, obj, H5P_DEFAULT), sp = H5Screate(H5S_SCALAR), a;
  hid_t t = H5Tcopy(H5T_C_S1);
  ck_assert(f >= 0 && o >= 0);
  H5Tset_size(t, H5T_VARIABLE);
  if (H5Aexists(o, name) > 0)
    H5Adelete(o, name);
  a = H5Acreate2(o, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(a >= 0 && H5Awrite(a, t, &v) >= 0);
  H5Aclose(a);
  H5Tclose(t);
  H5Sclose(sp);
  H5Oclose(o);
  H5Fclose(f);
}

static void delete_attr(const char *path, const char *obj, const char *name) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  ck_assert(f >= 0);
  ck_assert(H5Adelete_by_name(f, obj, name, H5P_DEFAULT) >= 0);
  H5Fclose(f);
}

static void delete_link(const char *path, const char *name) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  ck_assert(f >= 0);
  ck_assert(H5Ldelete(f, name, H5P_DEFAULT) >= 0);
  H5Fclose(f);
}

/* Replaces dataset 'name' by one of 'type' and shape dims[rank], filled
 * with 'fill' (as double, converted by HDF5). */
static void replace_dataset(const char *path, const char *name, hid_t type,
                            int rank, const hsize_t *dims, double fill) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT), sp, d;
  size_t n = 1;
  double *buf;
  ck_assert(f >= 0);
  if (H5Lexists(f, name, H5P_DEFAULT) > 0)
    H5Ldelete(f, name, H5P_DEFAULT);
  for (int i = 0; i < rank; ++i)
    n *= dims[i];
  buf = malloc(n * sizeof *buf);
  for (size_t i = 0; i < n; ++i)
    buf[i] = fill;
  sp = H5Screate_simple(rank, dims, NULL);
  d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert(d >= 0);
  ck_assert(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                     buf) >= 0);
  free(buf);
  H5Dclose(d);
  H5Sclose(sp);
  H5Fclose(f);
}

/* Sets one weight of a layer to 'v' (NaN, Inf). */
static void poison_weight(const char *path, const char *name, float v) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT), sp = H5Dget_space(d), ms;
  hsize_t start[4] = {0, 0, 1, 2}, zero[1] = {0}, one[4] = {1, 1, 1, 1};
  int rank = H5Sget_simple_extent_ndims(sp);
  ck_assert(d >= 0);
  H5Sselect_hyperslab(sp, H5S_SELECT_SET, rank == 4 ? start : zero, NULL,
                      one, NULL);
  ms = H5Screate_simple(1, one, NULL);
  ck_assert(H5Dwrite(d, H5T_NATIVE_FLOAT, ms, sp, H5P_DEFAULT, &v) >= 0);
  H5Sclose(ms);
  H5Sclose(sp);
  H5Dclose(d);
  H5Fclose(f);
}

static void expect_load_fail(const char *path, clara_status want,
                             const char *fragment) {
  clara_context *ctx = cpu_ctx(1);
  clara_denoiser *d = (clara_denoiser *)&d; /* must be reset to NULL */
  clara_status st = clara_denoiser_load(ctx, path, &d);
  ck_assert_msg(st == want, "%s: status %s expected, got %s (%s)", path,
                clara_status_name(want), clara_status_name(st),
                clara_last_error());
  ck_assert_ptr_null(d);
  MSG_HAS("clara_denoiser_load");
  MSG_HAS(fragment);
  clara_context_destroy(ctx);
}

START_TEST(load_and_info) {
  char *path = valid_model(5, 12, "ct");
  clara_context *ctx = cpu_ctx(1);
  clara_denoiser *d = NULL;
  clara_denoiser_info info;
  ck_assert_int_eq(clara_denoiser_load(ctx, path, &d), CLARA_OK);
  ck_assert_int_eq(clara_denoiser_get_info(d, &info), CLARA_OK);
  ck_assert_int_eq(info.modality, CLARA_MODALITY_CT);
  ck_assert_str_eq(info.architecture, "test-random");
  ck_assert_int_eq(info.layers, 5);
  ck_assert_int_eq(info.max_channels, 12);
  ck_assert_int_eq(info.receptive_field, 11);
  ck_assert_int_eq(info.residual, 1);
  /* 1->12, 3 x 12->12, 12->1: weights 9 (12 + 3*144 + 12), biases 12*4+1. */
  ck_assert_int_eq(info.parameters, 9 * (12 + 3 * 144 + 12) + 12 * 4 + 1);
  ck_assert_double_eq_tol(info.flops_per_pixel, 18.0 * (12 + 3 * 144 + 12),
                          1e-9);
  ck_assert_str_eq(clara_modality_name(CLARA_MODALITY_MR), "mr");
  ck_assert_int_eq(clara_denoiser_get_info(NULL, &info),
                   CLARA_ERR_INVALID_ARG);
  ck_assert_int_eq(clara_denoiser_get_info(d, NULL), CLARA_ERR_INVALID_ARG);
  /* The CPU runs FP32 only, and a refusal leaves the denoiser usable. */
  ck_assert_int_eq(clara_denoiser_set_precision(d, CLARA_PRECISION_FP16),
                   CLARA_ERR_UNSUPPORTED);
  MSG_HAS("FP16");
  ck_assert_int_eq(clara_denoiser_set_precision(d, (clara_precision)7),
                   CLARA_ERR_INVALID_ARG);
  ck_assert_int_eq(clara_denoiser_set_precision(d, CLARA_PRECISION_FP32),
                   CLARA_OK);
  {
    float img[16 * 16], out[16 * 16];
    for (int i = 0; i < 256; ++i)
      img[i] = (float)(i % 17) * 10.0f;
    ck_assert_int_eq(clara_denoise(d, img, out, 16, 16, 1), CLARA_OK);
  }
  clara_denoiser_destroy(d);
  clara_denoiser_destroy(NULL);
  clara_context_destroy(ctx);
  unlink(path);
  free(path);
}
END_TEST

START_TEST(load_bad_arguments) {
  clara_context *ctx = cpu_ctx(1);
  clara_denoiser *d = NULL;
  char *path = valid_model(3, 4, "ct");
  ck_assert_int_eq(clara_denoiser_load(NULL, path, &d), CLARA_ERR_INVALID_ARG);
  MSG_HAS("ctx is NULL");
  ck_assert_int_eq(clara_denoiser_load(ctx, NULL, &d), CLARA_ERR_INVALID_ARG);
  MSG_HAS("path is NULL");
  ck_assert_int_eq(clara_denoiser_load(ctx, path, NULL),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("out is NULL");
  ck_assert_int_eq(clara_denoiser_load(ctx, "", &d), CLARA_ERR_INVALID_ARG);
  MSG_HAS("path is empty");
  clara_context_destroy(ctx);
  unlink(path);
  free(path);
}
END_TEST

START_TEST(load_bad_files) {
  char *path;
  FILE *f;
  hsize_t w44[4] = {4, 4, 3, 3}, w4[1] = {4};

  expect_load_fail("/nonexistent/dir/model.h5", CLARA_ERR_IO, "cannot open");

  path = nn_test_tmpname(".h5");
  f = fopen(path, "w");
  fputs("this is not HDF5\n", f);
  fclose(f);
  expect_load_fail(path, CLARA_ERR_IO, "not an HDF5 file");
  unlink(path);
  free(path);

  /* Truncated: the first half of a valid file. */
  path = valid_model(3, 4, "ct");
  {
    FILE *in = fopen(path, "rb");
    long size;
    char *buf;
    fseek(in, 0, SEEK_END);
    size = ftell(in);
    rewind(in);
    buf = malloc((size_t)size);
    ck_assert_int_eq(fread(buf, 1, (size_t)size, in), (size_t)size);
    fclose(in);
    in = fopen(path, "wb");
    fwrite(buf, 1, (size_t)size / 2, in);
    fclose(in);
    free(buf);
  }
  expect_load_fail(path, CLARA_ERR_IO, "truncated or damaged");
  unlink(path);
  free(path);

  /* Every required attribute, missing. */
  {
    static const char *const required[] = {
        "format", "format_version", "architecture", "modality",
        "residual", "normalisation", "input_offset", "input_scale",
        "layers"};
    for (size_t i = 0; i < sizeof required / sizeof *required; ++i) {
      path = valid_model(3, 4, "ct");
      delete_attr(path, "/", required[i]);
      expect_load_fail(path, CLARA_ERR_FORMAT, required[i]);
      MSG_HAS("missing");
      unlink(path);
      free(path);
    }
  }

#define CASE(mutation, status, fragment)                                       \
  do {                                                                         \
    path = valid_model(3, 4, "ct");                                            \
    mutation;                                                                  \
    expect_load_fail(path, status, fragment);                                  \
    unlink(path);                                                              \
    free(path);                                                                \
  } while (0)

  CASE(set_str_attr(path, "/", "format", "pytorch-state-dict"),
       CLARA_ERR_FORMAT, "unknown format \"pytorch-state-dict\"");
  CASE(set_int_attr(path, "/", "format_version", 2), CLARA_ERR_UNSUPPORTED,
       "format_version 2 is not supported");
  CASE(set_double_attr(path, "/", "format_version", 1.0), CLARA_ERR_FORMAT,
       "format_version: integer expected");
  CASE(set_str_attr(path, "/", "modality", "pet"), CLARA_ERR_FORMAT,
       "unknown modality \"pet\"");
  CASE(set_int_attr(path, "/", "residual", 2), CLARA_ERR_FORMAT,
       "residual: 0 or 1 expected, found 2");
  CASE(set_str_attr(path, "/", "normalisation", "zscore"), CLARA_ERR_FORMAT,
       "unknown normalisation \"zscore\"");
  CASE(set_double_attr(path, "/", "input_scale", 0.0), CLARA_ERR_FORMAT,
       "input_scale finite and > 0");
  CASE(set_double_attr(path, "/", "input_offset", NAN), CLARA_ERR_FORMAT,
       "input_offset must be finite");
  CASE(set_int_attr(path, "/", "input_scale", 1000), CLARA_ERR_FORMAT,
       "store it as a float");
  CASE((set_str_attr(path, "/", "normalisation", "percentile"),
        set_double_attr(path, "/", "input_percentile", 150.0)),
       CLARA_ERR_FORMAT, "input_percentile: a float in (0, 100]");
  CASE(set_str_attr(path, "/", "normalisation", "percentile"),
       CLARA_ERR_FORMAT, "input_percentile missing");
  CASE(set_int_attr(path, "/", "layers", 0), CLARA_ERR_FORMAT,
       "a layer count in 1..64 expected, found 0");
  CASE(set_int_attr(path, "/", "layers", 65), CLARA_ERR_FORMAT,
       "found 65");
  CASE(set_int_attr(path, "/", "layers", 4), CLARA_ERR_FORMAT,
       "/layers/3: missing");
  CASE(delete_link(path, "/layers"), CLARA_ERR_FORMAT, "layers: missing");
  CASE(delete_link(path, "/layers/1/bias"), CLARA_ERR_FORMAT,
       "/layers/1/bias: missing");
  CASE(delete_link(path, "/layers/2/weight"), CLARA_ERR_FORMAT,
       "/layers/2/weight: missing");
  CASE(set_str_attr(path, "/layers/1", "kind", "conv5x5"), CLARA_ERR_FORMAT,
       "unknown layer kind \"conv5x5\"");
  CASE(set_str_attr(path, "/layers/0", "activation", "gelu"),
       CLARA_ERR_FORMAT, "unknown activation \"gelu\"");
  CASE(delete_attr(path, "/layers/0", "activation"), CLARA_ERR_FORMAT,
       "activation missing");
  /* Wrong dtype: integer weights. */
  CASE(replace_dataset(path, "/layers/1/weight", H5T_STD_I32LE, 4, w44, 0),
       CLARA_ERR_FORMAT, "float data expected");
  /* Wrong rank and shapes. */
  {
    hsize_t r3[3] = {4, 4, 9}, k5[4] = {4, 4, 5, 5}, w45[4] = {4, 5, 3, 3};
    hsize_t w21[4] = {4, 2, 3, 3}, b5[1] = {5};
    CASE(replace_dataset(path, "/layers/1/weight", H5T_IEEE_F32LE, 3, r3, 0),
         CLARA_ERR_FORMAT, "rank 4 expected");
    CASE(replace_dataset(path, "/layers/1/weight", H5T_IEEE_F32LE, 4, k5, 0),
         CLARA_ERR_FORMAT, "a 3x3 kernel");
    CASE(replace_dataset(path, "/layers/1/weight", H5T_IEEE_F32LE, 4, w45, 0),
         CLARA_ERR_FORMAT, "5 input channels, but layer 0 has 4 outputs");
    CASE(replace_dataset(path, "/layers/0/weight", H5T_IEEE_F32LE, 4, w21, 0),
         CLARA_ERR_FORMAT, "the first layer takes 1 channel");
    CASE(replace_dataset(path, "/layers/2/weight", H5T_IEEE_F32LE, 4, w44, 0),
         CLARA_ERR_FORMAT, "the last layer gives 1 channel");
    CASE(replace_dataset(path, "/layers/1/bias", H5T_IEEE_F32LE, 1, b5, 0),
         CLARA_ERR_FORMAT, "shape [4] [out] expected, found [5]");
  }
  /* float64 weights are converted, not refused. */
  path = valid_model(3, 4, "ct");
  replace_dataset(path, "/layers/1/weight", H5T_IEEE_F64BE, 4, w44, 0.01);
  replace_dataset(path, "/layers/1/bias", H5T_IEEE_F64LE, 1, w4, 0.0);
  {
    clara_context *ctx = cpu_ctx(1);
    clara_denoiser *d = NULL;
    ck_assert_int_eq(clara_denoiser_load(ctx, path, &d), CLARA_OK);
    clara_denoiser_destroy(d);
    clara_context_destroy(ctx);
  }
  unlink(path);
  free(path);
  /* NaN and infinite weights. */
  CASE(poison_weight(path, "/layers/1/weight", NAN), CLARA_ERR_FORMAT,
       "/layers/1/weight: value 5 is NaN");
  CASE(poison_weight(path, "/layers/2/bias", INFINITY), CLARA_ERR_FORMAT,
       "/layers/2/bias: value 0 is infinite");
#undef CASE
}
END_TEST

START_TEST(denoise_bad_inputs) {
  char *path = valid_model(3, 4, "ct");
  clara_context *ctx = cpu_ctx(1);
  clara_denoiser *d = NULL;
  float *img = calloc(32 * 32 * 2, sizeof(float));
  float *out = malloc(32 * 32 * 2 * sizeof(float));
  ck_assert_int_eq(clara_denoiser_load(ctx, path, &d), CLARA_OK);

  ck_assert_int_eq(clara_denoise(NULL, img, out, 32, 32, 1),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("d is NULL");
  ck_assert_int_eq(clara_denoise(d, NULL, out, 32, 32, 1),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("in is NULL");
  ck_assert_int_eq(clara_denoise(d, img, NULL, 32, 32, 1),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("out is NULL");
  ck_assert_int_eq(clara_denoise(d, img, out, 0, 32, 1),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("must be > 0, got 0, 32 and 1");
  ck_assert_int_eq(clara_denoise(d, img, out, 32, -3, 1),
                   CLARA_ERR_INVALID_ARG);
  ck_assert_int_eq(clara_denoise(d, img, out, 32, 32, 0),
                   CLARA_ERR_INVALID_ARG);
  /* Three layers see 7 x 7 pixels. */
  ck_assert_int_eq(clara_denoise(d, img, out, 6, 32, 1),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("smaller than the model's receptive field (7 x 7");
  ck_assert_int_eq(clara_denoise(d, img, out, 7, 7, 1), CLARA_OK);
  ck_assert_int_eq(clara_denoise(d, img, out, 1 << 30, 1 << 30, 1 << 30),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("overflow");
  ck_assert_int_eq(clara_denoise(d, img, img + 5, 32, 32, 1),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("overlap");
  /* Non-finite pixels: refused by index, and out is not written. */
  for (int i = 0; i < 32 * 32 * 2; ++i)
    out[i] = -7.0f;
  img[32 * 32 + 3 * 32 + 5] = NAN;
  ck_assert_int_eq(clara_denoise(d, img, out, 32, 32, 2),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("in[1125] (slice 1, y 3, x 5) is NaN");
  img[32 * 32 + 3 * 32 + 5] = -INFINITY;
  ck_assert_int_eq(clara_denoise(d, img, out, 32, 32, 2),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("is infinite");
  for (int i = 0; i < 32 * 32 * 2; ++i)
    ck_assert_float_eq(out[i], -7.0f);
  /* No device memory on the CPU. */
  img[32 * 32 + 3 * 32 + 5] = 0;
  ck_assert_int_eq(clara_denoise_device(d, img, out, 32, 32, 1),
                   CLARA_ERR_UNSUPPORTED);
  MSG_HAS("no device memory");
  clara_denoiser_destroy(d);
  clara_context_destroy(ctx);
  free(img);
  free(out);
  unlink(path);
  free(path);
}
END_TEST

/* A small parallel-beam scan of the Shepp-Logan phantom. */
static void ct_setup(clara_ct_geometry *g, clara_volume *v, float **proj,
                     float *angles) {
  clara_phantom *ph = NULL;
  memset(g, 0, sizeof *g);
  memset(v, 0, sizeof *v);
  g->kind = CLARA_GEOM_PARALLEL;
  g->views = 90;
  g->rows = 1;
  g->cols = 64;
  g->det_spacing[0] = 1.0;
  g->det_spacing[1] = 1.0;
  for (int i = 0; i < g->views; ++i)
    angles[i] = (float)(M_PI * i / g->views);
  g->angles = angles;
  v->nx = v->ny = 48;
  v->nz = 1;
  v->voxel[0] = v->voxel[1] = v->voxel[2] = 1.0;
  *proj = malloc(sizeof(float) * 90 * 64);
  ck_assert_int_eq(clara_phantom_shepp_logan(2, 20.0, 0.02, &ph), CLARA_OK);
  ck_assert_int_eq(clara_phantom_project(ph, g, *proj), CLARA_OK);
  clara_phantom_destroy(ph);
}

START_TEST(fbp_attach) {
  clara_context *ctx = cpu_ctx(2), *other = cpu_ctx(1);
  char *ct = valid_model(4, 8, "ct"), *mr = valid_model(4, 8, "mr");
  clara_denoiser *dct = NULL, *dmr = NULL, *dother = NULL;
  clara_fbp_plan *plan = NULL, *mu_plan = NULL;
  clara_fbp_options o;
  clara_ct_geometry g;
  clara_volume v;
  float angles[90], *proj, a[48 * 48], b[48 * 48];
  ct_setup(&g, &v, &proj, angles);
  clara_fbp_options_init(&o);
  o.mu_water = 0.0192;
  ck_assert_int_eq(clara_fbp_plan_create(ctx, &g, &v, &o, &plan), CLARA_OK);
  o.mu_water = 0;
  ck_assert_int_eq(clara_fbp_plan_create(ctx, &g, &v, &o, &mu_plan),
                   CLARA_OK);
  ck_assert_int_eq(clara_denoiser_load(ctx, ct, &dct), CLARA_OK);
  ck_assert_int_eq(clara_denoiser_load(ctx, mr, &dmr), CLARA_OK);
  ck_assert_int_eq(clara_denoiser_load(other, ct, &dother), CLARA_OK);

  ck_assert_int_eq(clara_fbp_plan_set_denoiser(NULL, dct),
                   CLARA_ERR_INVALID_ARG);
  ck_assert_int_eq(clara_fbp_plan_set_denoiser(plan, dmr),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("the model is for mr, the plan reconstructs CT");
  ck_assert_int_eq(clara_fbp_plan_set_denoiser(mu_plan, dct),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("mu_water > 0");
  ck_assert_int_eq(clara_fbp_plan_set_denoiser(plan, dother),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("another context");

  /* Attached: execute = FBP, then the denoiser. The plan holds its own
   * reference, so the caller's may go at once. */
  ck_assert_int_eq(clara_fbp_execute(plan, proj, a), CLARA_OK);
  ck_assert_int_eq(clara_denoise(dct, a, a, 48, 48, 1), CLARA_OK);
  ck_assert_int_eq(clara_fbp_plan_set_denoiser(plan, dct), CLARA_OK);
  clara_denoiser_destroy(dct);
  ck_assert_int_eq(clara_fbp_execute(plan, proj, b), CLARA_OK);
  ck_assert_mem_eq(a, b, sizeof a);
  {
    clara_fbp_timing t;
    ck_assert_int_eq(clara_fbp_execute_timed(plan, proj, b, &t), CLARA_OK);
    ck_assert_mem_eq(a, b, sizeof a);
  }
  /* Detached: plain FBP again. */
  ck_assert_int_eq(clara_fbp_plan_set_denoiser(plan, NULL), CLARA_OK);
  ck_assert_int_eq(clara_fbp_execute(plan, proj, b), CLARA_OK);
  ck_assert(memcmp(a, b, sizeof a) != 0);

  clara_fbp_plan_destroy(plan);
  clara_fbp_plan_destroy(mu_plan);
  clara_denoiser_destroy(dmr);
  clara_denoiser_destroy(dother);
  clara_context_destroy(ctx);
  clara_context_destroy(other);
  free(proj);
  unlink(ct);
  unlink(mr);
  free(ct);
  free(mr);
}
END_TEST

START_TEST(mr_attach) {
  clara_context *ctx = cpu_ctx(2);
  char *ct = valid_model(3, 6, "ct"), *mr = NULL;
  clara_denoiser *dct = NULL, *dmr = NULL;
  clara_mr_plan *plan = NULL, *cplx = NULL;
  clara_mr_geometry g;
  clara_mr_options o;
  float *k, *a, *b;
  size_t n_img;
  {
    nn_test_model m;
    mr = nn_test_tmpname(".h5");
    nn_test_model_random(&m, 3, 6, 11);
    m.modality = "mr";
    m.percentile_norm = 1;
    m.percentile = 99.0;
    ck_assert_int_eq(nn_test_model_write(&m, mr), 0);
    nn_test_model_free(&m);
  }
  memset(&g, 0, sizeof g);
  g.coils = 2;
  g.nx = 40;
  g.ny = 32;
  g.nz = 1;
  g.slices = 2;
  g.ky_last = g.ny - 1;
  g.kx_last = g.nx - 1;
  k = malloc(sizeof(float) * 2 * 2 * 2 * 40 * 32);
  ck_assert_int_eq(clara_mr_phantom_kspace(&g, 200.0, 1, k, NULL), CLARA_OK);
  n_img = (size_t)2 * 32 * 40;
  a = malloc(n_img * sizeof(float));
  b = malloc(n_img * sizeof(float));
  clara_mr_options_init(&o);
  ck_assert_int_eq(clara_mr_plan_create(ctx, &g, &o, &plan), CLARA_OK);
  o.output_complex = 1;
  ck_assert_int_eq(clara_mr_plan_create(ctx, &g, &o, &cplx), CLARA_OK);
  ck_assert_int_eq(clara_denoiser_load(ctx, ct, &dct), CLARA_OK);
  ck_assert_int_eq(clara_denoiser_load(ctx, mr, &dmr), CLARA_OK);

  ck_assert_int_eq(clara_mr_plan_set_denoiser(plan, dct),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("the model is for ct, the plan reconstructs MR");
  ck_assert_int_eq(clara_mr_plan_set_denoiser(cplx, dmr),
                   CLARA_ERR_INVALID_ARG);
  MSG_HAS("output_complex");

  ck_assert_int_eq(clara_mr_execute(plan, k, a), CLARA_OK);
  ck_assert_int_eq(clara_denoise(dmr, a, a, 40, 32, 2), CLARA_OK);
  ck_assert_int_eq(clara_mr_plan_set_denoiser(plan, dmr), CLARA_OK);
  clara_denoiser_destroy(dmr);
  ck_assert_int_eq(clara_mr_execute(plan, k, b), CLARA_OK);
  ck_assert_mem_eq(a, b, n_img * sizeof(float));

  clara_mr_plan_destroy(plan);
  clara_mr_plan_destroy(cplx);
  clara_denoiser_destroy(dct);
  clara_context_destroy(ctx);
  free(k);
  free(a);
  free(b);
  unlink(ct);
  unlink(mr);
  free(ct);
  free(mr);
}
END_TEST

/* ---- The shipped models against PyTorch ---------------------------------- */

static float *read_ref(hid_t f, const char *name, hsize_t dims[3]) {
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT), sp;
  float *buf;
  ck_assert_msg(d >= 0, "denoise_ref.h5: %s missing", name);
  sp = H5Dget_space(d);
  ck_assert_int_eq(H5Sget_simple_extent_ndims(sp), 3);
  H5Sget_simple_extent_dims(sp, dims, NULL);
  buf = malloc(sizeof(float) * dims[0] * dims[1] * dims[2]);
  ck_assert(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >=
            0);
  H5Sclose(sp);
  H5Dclose(d);
  return buf;
}

static void check_reference(const char *group, const char *model_file,
                             clara_modality modality) {
  char ref[4096], model[4096], name[64];
  clara_context *ctx = cpu_ctx(2);
  clara_denoiser *d = NULL;
  clara_denoiser_info info;
  hsize_t di[3], dout[3];
  float *in, *want, *got;
  size_t n;
  double err, maxrel = 0, scale = 0;
  hid_t f;
  snprintf(ref, sizeof ref, "%s/tests/data/denoise_ref.h5", srcdir());
  snprintf(model, sizeof model, "%s/models/%s", srcdir(), model_file);
  ck_assert_int_eq(clara_denoiser_load(ctx, model, &d), CLARA_OK);
  ck_assert_int_eq(clara_denoiser_get_info(d, &info), CLARA_OK);
  ck_assert_int_eq(info.modality, modality);
  f = H5Fopen(ref, H5F_ACC_RDONLY, H5P_DEFAULT);
  ck_assert_msg(f >= 0, "%s cannot be opened", ref);
  snprintf(name, sizeof name, "/%s/input", group);
  in = read_ref(f, name, di);
  snprintf(name, sizeof name, "/%s/output", group);
  want = read_ref(f, name, dout);
  H5Fclose(f);
  ck_assert(di[0] == dout[0] && di[1] == dout[1] && di[2] == dout[2]);
  n = di[0] * di[1] * di[2];
  got = malloc(n * sizeof(float));
  ck_assert_int_eq(clara_denoise(d, in, got, (int)di[2], (int)di[1],
                                 (int)di[0]),
                   CLARA_OK);
  err = nn_test_rel_l2(got, want, n);
  for (size_t i = 0; i < n; ++i)
    if (fabs(want[i]) > scale)
      scale = fabs(want[i]);
  for (size_t i = 0; i < n; ++i) {
    double r = fabs((double)got[i] - want[i]) / scale;
    if (r > maxrel)
      maxrel = r;
  }
  printf("%s: %s vs PyTorch (float64): rel L2 %.2e, max |diff| / max %.2e "
         "over %zu pixels\n",
         group, model_file, err, maxrel, n);
  ck_assert_msg(err <= 1e-5, "%s: relative L2 error %.3e > 1e-5", group, err);
  ck_assert_msg(maxrel <= 1e-5, "%s: max error %.3e of the peak > 1e-5", group,
                maxrel);
  free(in);
  free(want);
  free(got);
  clara_denoiser_destroy(d);
  clara_context_destroy(ctx);
}

START_TEST(shipped_ct_matches_pytorch) {
  check_reference("ct", "ct-denoise.h5", CLARA_MODALITY_CT);
}
END_TEST

START_TEST(shipped_mr_matches_pytorch) {
  check_reference("mr", "mr-denoise.h5", CLARA_MODALITY_MR);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("nn");
  TCase *t = tcase_create("denoiser");
  tcase_set_timeout(t, 600);
  tcase_add_test(t, load_and_info);
  tcase_add_test(t, load_bad_arguments);
  tcase_add_test(t, load_bad_files);
  tcase_add_test(t, denoise_bad_inputs);
  tcase_add_test(t, fbp_attach);
  tcase_add_test(t, mr_attach);
  tcase_add_test(t, shipped_ct_matches_pytorch);
  tcase_add_test(t, shipped_mr_matches_pytorch);
  suite_add_tcase(s, t);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(suite());
  int failed;
  (void)H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
