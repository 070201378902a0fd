/* test_cuda_nn.c -- the CNN denoiser on the CUDA backend.
 *
 * On every machine first: a CUDA context either is made or fails with
 * CLARA_ERR_NO_DEVICE; without a device the test is skipped (exit 77).
 * With a device, random models (tests/nn_testutil.c) written as model
 * files and loaded on a CUDA and on a CPU context:
 * - FP32 against the CPU backend and against the double-precision
 *   reference: relative L2 <= 1e-5 (fixed and percentile normalisation,
 *   residual or not, every kernel shape: 1, 3, 12, 16 and 37 channels,
 *   odd sizes, the smallest image the receptive field allows, batches);
 * - FP16 against the reference: relative L2 <= 2e-3 (see FP16_BOUND);
 * - device pointers (clara_denoise_device) give the host entry's result
 *   bit for bit, out of place and in place;
 * - a NaN or an infinity in the input: CLARA_ERR_INVALID_ARG and the
 *   output untouched, on both entries;
 * - device memory limits: every limit that fits one slice gives the same
 *   result bit for bit, the smaller ones in several batches (counted with
 *   the progress callback); a limit below one slice fails cleanly, and one
 *   below the weights fails at load time;
 * - cancellation from the progress callback, concurrent calls on one
 *   denoiser, and FBP and MR plans with the denoiser attached (host and
 *   device entries: the same result as reconstructing and denoising in
 *   separate calls);
 * - clara_mr_execute_device (which lives here for the device buffers):
 *   bit for bit the host entry's result, magnitude and complex; NULL and
 *   host pointers refused; a plan whose options run on the CPU refused
 *   with the reason.
 *
 * Exit status: 0 passed, 1 failed, 77 skipped. The device buffers come
 * from the CUDA runtime that the plugin loaded (dlopen), as in
 * test_cuda.c, so the test builds and links without CUDA. With
 * CLARA_TEST_CUDA_EMULATION=1 and CLARA_RECON_CUDA_PLUGIN pointing at a
 * plugin that emulates the device on the host, "device memory" is host
 * memory and the checks that need a real CUDA runtime are left out. */
#include "clara_recon.h"
#include "nn_testutil.h"

#include <check.h>
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MSG_HAS(frag)                                                          \
  ck_assert_msg(strstr(clara_last_error(), (frag)) != NULL,                    \
                "message \"%s\" lacks \"%s\"", clara_last_error(), (frag))

/* FP32 on the GPU against the CPU backend and the double reference. */
#define FP32_BOUND 1e-5
/* FP16: weights and inner activations rounded to half (unit roundoff
 * 2^-11 = 4.9e-4) once per layer, accumulation in float. The roundings
 * are independent, so the relative error of the output grows like
 * 4.9e-4 x sqrt(number of roundings on a path) scaled by how much of the
 * output the net contributes (the residual passes x through in float).
 * Measured 2.4e-4 (37 channels, residual) to 1.2e-3 (3 channels, no
 * residual: the output is all net) on these models, printed as the test
 * runs. 2e-3 leaves room and still catches a wrong conversion or layout,
 * which is O(1). */
#define FP16_BOUND 2e-3

static int emulated;

/* ---- Device memory through the CUDA runtime the plugin loaded ---------- */

static struct {
  void *h;
  int (*malloc_)(void **, size_t);
  int (*free_)(void *);
  int (*memcpy_)(void *, const void *, size_t, int);
} rt;

enum { H2D = 1, D2H = 2 }; /* cudaMemcpyHostToDevice, DeviceToHost */

static int load_cudart(void) {
  static const char *const names[] = {"libcudart.so.13", "libcudart.so.12",
                                      "libcudart.so.11.0", "libcudart.so",
                                      "/usr/local/cuda/lib64/libcudart.so"};
  size_t n = sizeof names / sizeof names[0];
  for (size_t i = 0; i < n && !rt.h; i++)
    rt.h = dlopen(names[i], RTLD_NOW | RTLD_NOLOAD);
  for (size_t i = 0; i < n && !rt.h; i++)
    rt.h = dlopen(names[i], RTLD_NOW);
  if (!rt.h) {
    fprintf(stderr, "test_cuda_nn: cannot load the CUDA runtime: %s\n",
            dlerror());
    return -1;
  }
  *(void **)&rt.malloc_ = dlsym(rt.h, "cudaMalloc");
  *(void **)&rt.free_ = dlsym(rt.h, "cudaFree");
  *(void **)&rt.memcpy_ = dlsym(rt.h, "cudaMemcpy");
  if (!rt.malloc_ || !rt.free_ || !rt.memcpy_) {
    fprintf(stderr, "test_cuda_nn: the CUDA runtime lacks a function\n");
    return -1;
  }
  return 0;
}

static float *dev_alloc(size_t n) {
  void *p = NULL;
  if (emulated)
    p = malloc(n * sizeof(float));
  else
    ck_assert_int_eq(rt.malloc_(&p, n * sizeof(float)), 0);
  ck_assert_ptr_nonnull(p);
  return p;
}

static void dev_free(float *p) {
  if (emulated)
    free(p);
  else if (p)
    ck_assert_int_eq(rt.free_(p), 0);
}

static void to_dev(float *d, const float *h, size_t n) {
  if (emulated)
    memcpy(d, h, n * sizeof(float));
  else
    ck_assert_int_eq(rt.memcpy_(d, h, n * sizeof(float), H2D), 0);
}

static void from_dev(float *h, const float *d, size_t n) {
  if (emulated)
    memcpy(h, d, n * sizeof(float));
  else
    ck_assert_int_eq(rt.memcpy_(h, d, n * sizeof(float), D2H), 0);
}

/* ---- Models and images --------------------------------------------------- */

typedef struct tmodel {
  const char *name;
  int layers, width;
  unsigned seed;
  int percentile; /* 0: fixed */
  double q;
  int residual;
  nn_test_model m;
  char *path;
} tmodel;

/* Every conv kernel shape (wide >= 24 channels, mid >= 4, narrow below),
 * partial channel blocks and input chunks, both normalisations, with and
 * without the residual. */
static tmodel models[] = {
    {"w16-fixed", 6, 16, 1, 0, 0, 1, {0}, NULL},
    {"w37-fixed", 4, 37, 2, 0, 0, 1, {0}, NULL},
    {"w3-plain", 5, 3, 3, 0, 0, 0, {0}, NULL},
    {"l1-fixed", 1, 1, 4, 0, 0, 1, {0}, NULL},
    {"w12-p99", 5, 12, 5, 1, 99.0, 1, {0}, NULL},
    {"w8-p100", 3, 8, 6, 1, 100.0, 0, {0}, NULL},
    {"w8-p0.5", 3, 8, 7, 1, 0.5, 1, {0}, NULL},
};
#define NMODELS (sizeof models / sizeof models[0])
enum { M_W16, M_W37, M_W3, M_L1, M_P99, M_P100, M_PLOW };

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static double urand(void) { /* [0, 1) */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (double)(rng_state >> 11) / 9007199254740992.0;
}

/* An image like the model expects: CT in HU for fixed models (air, soft
 * tissue and bone with noise), for percentile models a magnitude image
 * with a zero background whose scale changes by 10x from slice to slice,
 * and for the low percentile a zero-mean one (p <= 0 -> 1). */
static float *make_image(const tmodel *t, int nx, int ny, int ns) {
  size_t n = (size_t)nx * ny * ns;
  float *img = malloc(n * sizeof(float));
  ck_assert_ptr_nonnull(img);
  for (int s = 0; s < ns; s++)
    for (int y = 0; y < ny; y++)
      for (int x = 0; x < nx; x++) {
        double u = (x + 0.5) / nx - 0.5, v = (y + 0.5) / ny - 0.5;
        double r2 = u * u + v * v, val;
        size_t i = ((size_t)s * ny + y) * nx + x;
        if (!t->percentile)
          val = (r2 < 0.2 ? (r2 < 0.02 ? 800.0 : 40.0) : -1000.0) +
                30.0 * (urand() - 0.5) * 2.0;
        else if (t->q < 1.0)
          val = (urand() - 0.5) * 10.0;
        else
          val = r2 < 0.2 ? pow(10.0, s % 4) * (1.0 + u + urand()) : 0.0;
        img[i] = (float)val;
      }
  return img;
}

static clara_context *make_ctx(clara_backend b, size_t limit,
                               clara_progress_fn progress, void *user) {
  clara_context_options o;
  clara_context *ctx = NULL;
  clara_context_options_init(&o);
  o.backend = b;
  o.device_memory_limit = limit;
  o.progress = progress;
  o.progress_user = user;
  ck_assert_msg(clara_context_create(&o, &ctx) == CLARA_OK, "context: %s",
                clara_last_error());
  ck_assert_int_eq(clara_context_backend(ctx), b);
  return ctx;
}

static clara_denoiser *load(clara_context *ctx, const tmodel *t) {
  clara_denoiser *d = NULL;
  ck_assert_msg(clara_denoiser_load(ctx, t->path, &d) == CLARA_OK,
                "load %s: %s", t->name, clara_last_error());
  ck_assert_ptr_nonnull(d);
  return d;
}

static void fill(float *p, size_t n, float v) {
  for (size_t i = 0; i < n; i++)
    p[i] = v;
}

static int same_bits(const float *a, const float *b, size_t n) {
  return memcmp(a, b, n * sizeof(float)) == 0;
}

/* ---- FP32 against the CPU and the reference ---------------------------- */

typedef struct size3 {
  int nx, ny, ns;
} size3;

static void compare_fp32(const tmodel *t, size3 sz) {
  clara_context *cpu = make_ctx(CLARA_BACKEND_CPU, 0, NULL, NULL);
  clara_context *gpu = make_ctx(CLARA_BACKEND_CUDA, 0, NULL, NULL);
  clara_denoiser *dc = load(cpu, t), *dg = load(gpu, t);
  size_t n = (size_t)sz.nx * sz.ny * sz.ns;
  float *in = make_image(t, sz.nx, sz.ny, sz.ns);
  float *ref = malloc(n * sizeof(float)), *oc = malloc(n * sizeof(float));
  float *og = malloc(n * sizeof(float));
  double e_ref, e_cpu, e_cr;
  ck_assert(ref && oc && og);
  nn_test_reference(&t->m, in, ref, sz.nx, sz.ny, sz.ns);
  fill(og, n, NAN);
  ck_assert_msg(clara_denoise(dg, in, og, sz.nx, sz.ny, sz.ns) == CLARA_OK,
                "%s: cuda: %s", t->name, clara_last_error());
  ck_assert_msg(clara_denoise(dc, in, oc, sz.nx, sz.ny, sz.ns) == CLARA_OK,
                "%s: cpu: %s", t->name, clara_last_error());
  e_ref = nn_test_rel_l2(og, ref, n);
  e_cpu = nn_test_rel_l2(og, oc, n);
  e_cr = nn_test_rel_l2(oc, ref, n);
  fprintf(stderr,
          "  fp32 %-10s %3d x %3d x %d  cuda vs reference %.2e, vs cpu "
          "%.2e (cpu vs reference %.2e)\n",
          t->name, sz.nx, sz.ny, sz.ns, e_ref, e_cpu, e_cr);
  ck_assert_msg(e_ref <= FP32_BOUND, "%s: cuda vs reference %.3g", t->name,
                e_ref);
  ck_assert_msg(e_cpu <= FP32_BOUND, "%s: cuda vs cpu %.3g", t->name, e_cpu);
  free(in);
  free(ref);
  free(oc);
  free(og);
  clara_denoiser_destroy(dc);
  clara_denoiser_destroy(dg);
  clara_context_destroy(cpu);
  clara_context_destroy(gpu);
}

START_TEST(fp32_fixed) {
  static const size3 sizes[] = {{33, 29, 3}, {64, 40, 2}, {13, 50, 1}};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    compare_fp32(&models[M_W16], sizes[i]);
  compare_fp32(&models[M_W37], (size3){41, 19, 2});
  compare_fp32(&models[M_W3], (size3){70, 37, 2});
  compare_fp32(&models[M_L1], (size3){3, 3, 4});
  compare_fp32(&models[M_L1], (size3){97, 5, 1});
}
END_TEST

START_TEST(fp32_percentile) {
  compare_fp32(&models[M_P99], (size3){37, 33, 4});
  compare_fp32(&models[M_P100], (size3){31, 20, 3});
  compare_fp32(&models[M_PLOW], (size3){25, 26, 2});
}
END_TEST

/* ---- FP16 ---------------------------------------------------------------- */

START_TEST(fp16) {
  static const struct {
    int model;
    size3 sz;
  } cases[] = {{M_W16, {33, 29, 2}},
               {M_W37, {41, 19, 2}},
               {M_W3, {40, 37, 1}},
               {M_P99, {37, 33, 2}}};
  clara_context *gpu = make_ctx(CLARA_BACKEND_CUDA, 0, NULL, NULL);
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const tmodel *t = &models[cases[c].model];
    size3 sz = cases[c].sz;
    size_t n = (size_t)sz.nx * sz.ny * sz.ns;
    clara_denoiser *d = load(gpu, t);
    float *in = make_image(t, sz.nx, sz.ny, sz.ns);
    float *ref = malloc(n * sizeof(float)), *o32 = malloc(n * sizeof(float));
    float *o16 = malloc(n * sizeof(float));
    double e16, e32;
    ck_assert(ref && o32 && o16);
    nn_test_reference(&t->m, in, ref, sz.nx, sz.ny, sz.ns);
    ck_assert_int_eq(clara_denoise(d, in, o32, sz.nx, sz.ny, sz.ns), CLARA_OK);
    ck_assert_msg(clara_denoiser_set_precision(d, CLARA_PRECISION_FP16) ==
                      CLARA_OK,
                  "%s", clara_last_error());
    fill(o16, n, NAN);
    ck_assert_msg(clara_denoise(d, in, o16, sz.nx, sz.ny, sz.ns) == CLARA_OK,
                  "%s: %s", t->name, clara_last_error());
    e16 = nn_test_rel_l2(o16, ref, n);
    e32 = nn_test_rel_l2(o32, ref, n);
    fprintf(stderr,
            "  fp16 %-10s %3d x %3d x %d  vs reference %.2e (fp32 %.2e)\n",
            t->name, sz.nx, sz.ny, sz.ns, e16, e32);
    ck_assert_msg(e16 <= FP16_BOUND, "%s: fp16 vs reference %.3g", t->name,
                  e16);
    ck_assert_msg(e16 > e32,
                  "%s: fp16 (%.3g) is not less precise than fp32 "
                  "(%.3g): did it run in half at all?",
                  t->name, e16, e32);
    /* and back */
    ck_assert_int_eq(clara_denoiser_set_precision(d, CLARA_PRECISION_FP32),
                     CLARA_OK);
    ck_assert_int_eq(clara_denoise(d, in, o16, sz.nx, sz.ny, sz.ns), CLARA_OK);
    ck_assert(same_bits(o16, o32, n));
    free(in);
    free(ref);
    free(o32);
    free(o16);
    clara_denoiser_destroy(d);
  }
  clara_context_destroy(gpu);
}
END_TEST

/* ---- Device pointers and in place -------------------------------------- */

static void device_case(const tmodel *t, size3 sz, int half) {
  clara_context *gpu = make_ctx(CLARA_BACKEND_CUDA, 0, NULL, NULL);
  clara_denoiser *d = load(gpu, t);
  size_t n = (size_t)sz.nx * sz.ny * sz.ns;
  float *in = make_image(t, sz.nx, sz.ny, sz.ns);
  float *host = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
  float *di = dev_alloc(n), *dout = dev_alloc(n);
  ck_assert(host && got);
  if (half)
    ck_assert_int_eq(clara_denoiser_set_precision(d, CLARA_PRECISION_FP16),
                     CLARA_OK);
  ck_assert_int_eq(clara_denoise(d, in, host, sz.nx, sz.ny, sz.ns), CLARA_OK);

  /* out of place; the input is left as it was */
  to_dev(di, in, n);
  fill(got, n, NAN);
  to_dev(dout, got, n);
  ck_assert_msg(clara_denoise_device(d, di, dout, sz.nx, sz.ny, sz.ns) ==
                    CLARA_OK,
                "%s", clara_last_error());
  from_dev(got, dout, n);
  ck_assert_msg(same_bits(got, host, n),
                "%s%s: device pointers differ from "
                "the host entry (rel L2 %.3g)",
                t->name, half ? " fp16" : "", nn_test_rel_l2(got, host, n));
  from_dev(got, di, n);
  ck_assert(same_bits(got, in, n));

  /* in place, device */
  ck_assert_int_eq(clara_denoise_device(d, di, di, sz.nx, sz.ny, sz.ns),
                   CLARA_OK);
  from_dev(got, di, n);
  ck_assert_msg(same_bits(got, host, n), "%s: in place on the device differs",
                t->name);

  /* in place, host */
  memcpy(got, in, n * sizeof(float));
  ck_assert_int_eq(clara_denoise(d, got, got, sz.nx, sz.ny, sz.ns), CLARA_OK);
  ck_assert_msg(same_bits(got, host, n), "%s: in place on the host differs",
                t->name);
  fprintf(stderr, "  device pointers %-10s%s %d x %d x %d: same bits\n",
          t->name, half ? " fp16" : "", sz.nx, sz.ny, sz.ns);
  dev_free(di);
  dev_free(dout);
  free(in);
  free(host);
  free(got);
  clara_denoiser_destroy(d);
  clara_context_destroy(gpu);
}

START_TEST(device_pointers) {
  device_case(&models[M_W16], (size3){35, 21, 3}, 0);
  device_case(&models[M_P99], (size3){29, 30, 3}, 0);
  device_case(&models[M_W16], (size3){35, 21, 2}, 1);
}
END_TEST

/* ---- Non-finite input ---------------------------------------------------- */

START_TEST(non_finite) {
  const tmodel *t = &models[M_W16];
  const int nx = 20, ny = 17, ns = 3;
  const size_t n = (size_t)nx * ny * ns;
  const float bad[] = {NAN, INFINITY, -INFINITY};
  clara_context *gpu = make_ctx(CLARA_BACKEND_CUDA, 0, NULL, NULL);
  clara_denoiser *d = load(gpu, t);
  float *in = make_image(t, nx, ny, ns), *got = malloc(n * sizeof(float));
  float *sentinel = malloc(n * sizeof(float));
  float *di = dev_alloc(n), *dout = dev_alloc(n);
  ck_assert(got && sentinel);
  for (size_t i = 0; i < n; i++)
    sentinel[i] = (float)i;
  for (int k = 0; k < 3; k++) {
    size_t at = k == 0 ? n - 1 : k == 1 ? 0 : n / 2; /* last slice too */
    float keep = in[at];
    in[at] = bad[k];
    /* device: refused before anything is written, out of place and in
     * place */
    to_dev(di, in, n);
    to_dev(dout, sentinel, n);
    ck_assert_int_eq(clara_denoise_device(d, di, dout, nx, ny, ns),
                     CLARA_ERR_INVALID_ARG);
    MSG_HAS("clara_denoise_device: input has a NaN or infinite pixel");
    from_dev(got, dout, n);
    ck_assert_msg(same_bits(got, sentinel, n), "out was written");
    ck_assert_int_eq(clara_denoise_device(d, di, di, nx, ny, ns),
                     CLARA_ERR_INVALID_ARG);
    from_dev(got, di, n);
    ck_assert_msg(same_bits(got, in, n), "in place: in was written");
    /* host */
    memcpy(got, sentinel, n * sizeof(float));
    ck_assert_int_eq(clara_denoise(d, in, got, nx, ny, ns),
                     CLARA_ERR_INVALID_ARG);
    ck_assert(same_bits(got, sentinel, n));
    in[at] = keep;
  }
  /* and the denoiser still works */
  to_dev(di, in, n);
  ck_assert_int_eq(clara_denoise_device(d, di, dout, nx, ny, ns), CLARA_OK);
  dev_free(di);
  dev_free(dout);
  free(in);
  free(got);
  free(sentinel);
  clara_denoiser_destroy(d);
  clara_context_destroy(gpu);
}
END_TEST

/* ---- Device memory limits ------------------------------------------------ */

typedef struct counter {
  int calls;
  double last;
  int stop_at; /* > 0: return nonzero on this call */
} counter;

static int count_progress(const char *stage, double f, void *user) {
  counter *c = user;
  if (strcmp(stage, "denoise") != 0)
    return 0;
  c->calls++;
  ck_assert_msg(f > c->last && f <= 1.0, "progress %g after %g", f, c->last);
  c->last = f;
  return c->stop_at > 0 && c->calls >= c->stop_at;
}

START_TEST(memory_limit) {
  const tmodel *t = &models[M_W16];
  const int nx = 40, ny = 36, ns = 7;
  const size_t n = (size_t)nx * ny * ns;
  /* the activations of one slice, 16 channels, ping and pong */
  const size_t act = 2 * 16 * sizeof(float) * (size_t)nx * ny;
  clara_context *gpu = make_ctx(CLARA_BACKEND_CUDA, 0, NULL, NULL);
  clara_denoiser *d = load(gpu, t);
  float *in = make_image(t, nx, ny, ns), *ref = malloc(n * sizeof(float));
  float *got = malloc(n * sizeof(float)), *dref = malloc(n * sizeof(float));
  float *di = dev_alloc(n), *dout = dev_alloc(n);
  int most_batches = 0, last_ok = -1, refused = 0;
  ck_assert(ref && got && dref);
  ck_assert_int_eq(clara_denoise(d, in, ref, nx, ny, ns), CLARA_OK);
  to_dev(di, in, n);
  ck_assert_int_eq(clara_denoise_device(d, di, dout, nx, ny, ns), CLARA_OK);
  from_dev(dref, dout, n);
  clara_denoiser_destroy(d);
  clara_context_destroy(gpu);

  /* from 8 slices' worth down, in steps of 0.8 */
  for (double f = 8.0 * (double)act; f > 0.05 * (double)act; f *= 0.8) {
    counter c = {0, 0.0, 0};
    size_t limit = (size_t)f;
    clara_context *g = make_ctx(CLARA_BACKEND_CUDA, limit, count_progress, &c);
    clara_denoiser *dl = NULL;
    clara_status st = clara_denoiser_load(g, t->path, &dl);
    if (st != CLARA_OK) {
      /* only for want of memory for the weights */
      ck_assert_int_eq(st, CLARA_ERR_OUT_OF_MEMORY);
      ck_assert_ptr_null(dl);
      MSG_HAS("device_memory_limit");
      clara_context_destroy(g);
      refused |= 2;
      break;
    }
    fill(got, n, -7.0f);
    st = clara_denoise(dl, in, got, nx, ny, ns);
    if (st == CLARA_OK) {
      ck_assert_msg(same_bits(got, ref, n),
                    "limit %zu: %d batches differ from one (rel L2 %.3g)",
                    limit, c.calls, nn_test_rel_l2(got, ref, n));
      ck_assert_int_ge(c.calls, 1);
      ck_assert_int_le(c.calls, ns);
      ck_assert(c.last == 1.0);
      if (c.calls > most_batches)
        most_batches = c.calls;
      /* the device entry splits the same way */
      c.calls = 0;
      c.last = 0;
      fill(got, n, -7.0f);
      to_dev(dout, got, n);
      ck_assert_msg(clara_denoise_device(dl, di, dout, nx, ny, ns) == CLARA_OK,
                    "limit %zu: %s", limit, clara_last_error());
      from_dev(got, dout, n);
      ck_assert(same_bits(got, dref, n));
      ck_assert_int_ge(c.calls, 1);
      last_ok = c.calls;
    } else {
      /* one slice does not fit: a clean refusal, nothing written */
      ck_assert_int_eq(st, CLARA_ERR_OUT_OF_MEMORY);
      MSG_HAS("clara_denoise: one 40 x 36 slice needs");
      MSG_HAS("device_memory_limit");
      for (size_t i = 0; i < n; i++)
        ck_assert(got[i] == -7.0f);
      to_dev(dout, got, n);
      ck_assert_int_eq(clara_denoise_device(dl, di, dout, nx, ny, ns),
                       CLARA_ERR_OUT_OF_MEMORY);
      from_dev(got, dout, n);
      for (size_t i = 0; i < n; i++)
        ck_assert(got[i] == -7.0f);
      refused |= 1;
    }
    clara_denoiser_destroy(dl);
    clara_context_destroy(g);
  }
  fprintf(stderr,
          "  memory limits: up to %d batches for %d slices, same bits; "
          "smallest limits refused (%s)\n",
          most_batches, ns,
          refused == 3   ? "per slice, then at load"
          : refused == 1 ? "per slice"
                         : "at load");
  ck_assert_msg(most_batches >= 3,
                "no limit split the work into >= 3 "
                "batches (most %d)",
                most_batches);
  ck_assert_int_ge(last_ok, 1);
  ck_assert_msg(refused & 1, "no limit was too small for one slice");
  dev_free(di);
  dev_free(dout);
  free(in);
  free(ref);
  free(got);
  free(dref);
}
END_TEST

/* ---- Cancellation -------------------------------------------------------- */

START_TEST(cancel) {
  const tmodel *t = &models[M_W16];
  const int nx = 40, ny = 36, ns = 6;
  const size_t n = (size_t)nx * ny * ns;
  /* a few slices per batch: ping-pong activations of 16 channels and two
   * more planes per slice, for 2.5 slices, and room for the weights */
  const size_t limit =
      (size_t)(2.5 * 34 * sizeof(float) * nx * ny) + (64u << 10);
  counter c = {0, 0.0, 1};
  clara_context *g = make_ctx(CLARA_BACKEND_CUDA, limit, count_progress, &c);
  clara_denoiser *d = load(g, t);
  float *in = make_image(t, nx, ny, ns), *got = malloc(n * sizeof(float));
  ck_assert_ptr_nonnull(got);
  ck_assert_int_eq(clara_denoise(d, in, got, nx, ny, ns), CLARA_ERR_CANCELLED);
  MSG_HAS("cancel");
  ck_assert_int_eq(c.calls, 1);
  /* the denoiser is usable afterwards */
  c.stop_at = 0;
  c.calls = 0;
  c.last = 0;
  ck_assert_int_eq(clara_denoise(d, in, got, nx, ny, ns), CLARA_OK);
  free(in);
  free(got);
  clara_denoiser_destroy(d);
  clara_context_destroy(g);
}
END_TEST

/* ---- Concurrent calls on one denoiser ---------------------------------- */

typedef struct job {
  const clara_denoiser *d;
  const float *in;
  float *out;
  int nx, ny, ns;
  clara_status st;
} job;

static void *run_job(void *arg) {
  job *j = arg;
  for (int k = 0; k < 3 && j->st == CLARA_OK; k++)
    j->st = clara_denoise(j->d, j->in, j->out, j->nx, j->ny, j->ns);
  return NULL;
}

START_TEST(concurrent) {
  const tmodel *t = &models[M_P99];
  const int nx = 30, ny = 28, ns = 2;
  const size_t n = (size_t)nx * ny * ns;
  clara_context *g = make_ctx(CLARA_BACKEND_CUDA, 0, NULL, NULL);
  clara_denoiser *d = load(g, t);
  float *in = make_image(t, nx, ny, ns), *ref = malloc(n * sizeof(float));
  job jobs[4];
  pthread_t tid[4];
  ck_assert_ptr_nonnull(ref);
  ck_assert_int_eq(clara_denoise(d, in, ref, nx, ny, ns), CLARA_OK);
  for (int i = 0; i < 4; i++) {
    jobs[i] = (job){d, in, malloc(n * sizeof(float)), nx, ny, ns, CLARA_OK};
    ck_assert_ptr_nonnull(jobs[i].out);
    ck_assert_int_eq(pthread_create(&tid[i], NULL, run_job, &jobs[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    ck_assert_int_eq(pthread_join(tid[i], NULL), 0);
    ck_assert_int_eq(jobs[i].st, CLARA_OK);
    ck_assert(same_bits(jobs[i].out, ref, n));
    free(jobs[i].out);
  }
  free(in);
  free(ref);
  clara_denoiser_destroy(d);
  clara_context_destroy(g);
}
END_TEST

/* ---- Errors -------------------------------------------------------------- */

START_TEST(errors) {
  const tmodel *t = &models[M_W16];
  clara_context *g = make_ctx(CLARA_BACKEND_CUDA, 0, NULL, NULL);
  clara_denoiser *d = load(g, t);
  float img[13 * 13];
  float *di = dev_alloc(13 * 13);
  for (int i = 0; i < 13 * 13; i++)
    img[i] = (float)i;
  /* smaller than the receptive field (13 for 6 layers) */
  ck_assert_int_eq(clara_denoise_device(d, di, di, 12, 13, 1),
                   CLARA_ERR_INVALID_ARG);
  ck_assert_int_eq(clara_denoise_device(d, NULL, di, 13, 13, 1),
                   CLARA_ERR_INVALID_ARG);
  if (!emulated) {
    /* host memory handed to the device entry */
    ck_assert_int_eq(clara_denoise_device(d, img, di, 13, 13, 1),
                     CLARA_ERR_INVALID_ARG);
    MSG_HAS("d_in");
    MSG_HAS("host memory");
    ck_assert_int_eq(clara_denoise_device(d, di, img, 13, 13, 1),
                     CLARA_ERR_INVALID_ARG);
    MSG_HAS("d_out");
  }
  to_dev(di, img, 13 * 13);
  ck_assert_int_eq(clara_denoise_device(d, di, di, 13, 13, 1), CLARA_OK);
  dev_free(di);
  clara_denoiser_destroy(d);
  clara_context_destroy(g);
}
END_TEST

/* ---- FBP with the denoiser attached ------------------------------------ */

START_TEST(fbp_attached) {
  const tmodel *t = &models[M_W16];
  const int views = 60, cols = 48, nx = 40, ny = 40;
  clara_context *g = make_ctx(CLARA_BACKEND_CUDA, 0, NULL, NULL);
  clara_denoiser *d = load(g, t);
  float *angles = malloc(views * sizeof(float));
  float *proj = malloc((size_t)views * cols * sizeof(float));
  float *img = malloc((size_t)nx * ny * sizeof(float));
  float *want = malloc((size_t)nx * ny * sizeof(float));
  float *dp = dev_alloc((size_t)views * cols), *dimg = dev_alloc(nx * ny);
  clara_fbp_plan *plain = NULL, *with = NULL;
  clara_fbp_options opt;
  ck_assert(angles && proj && img && want);
  for (int v = 0; v < views; v++)
    angles[v] = (float)(M_PI * v / views);
  for (int i = 0; i < views * cols; i++)
    proj[i] = (float)(urand() * 0.5);
  clara_ct_geometry geo = {.kind = CLARA_GEOM_PARALLEL,
                           .views = views,
                           .rows = 1,
                           .cols = cols,
                           .angles = angles,
                           .det_spacing = {1.0, 1.0}};
  clara_volume vol = {.nx = nx, .ny = ny, .nz = 1, .voxel = {1.0, 1.0, 1.0}};
  clara_fbp_options_init(&opt);
  opt.mu_water = 0.0192;
  ck_assert_msg(clara_fbp_plan_create(g, &geo, &vol, &opt, &plain) == CLARA_OK,
                "%s", clara_last_error());
  ck_assert_int_eq(clara_fbp_plan_create(g, &geo, &vol, &opt, &with), CLARA_OK);
  ck_assert_msg(clara_fbp_plan_set_denoiser(with, d) == CLARA_OK, "%s",
                clara_last_error());
  clara_denoiser_destroy(d); /* the plan holds its own reference */
  ck_assert_int_eq(clara_fbp_execute(plain, proj, want), CLARA_OK);
  {
    clara_denoiser *d2 = load(g, t);
    ck_assert_int_eq(clara_denoise(d2, want, want, nx, ny, 1), CLARA_OK);
    clara_denoiser_destroy(d2);
  }
  ck_assert_msg(clara_fbp_execute(with, proj, img) == CLARA_OK, "%s",
                clara_last_error());
  fprintf(stderr, "  fbp + denoiser: host execute vs separate calls %.2e\n",
          nn_test_rel_l2(img, want, (size_t)nx * ny));
  ck_assert(nn_test_rel_l2(img, want, (size_t)nx * ny) <= 1e-6);
  to_dev(dp, proj, (size_t)views * cols);
  ck_assert_msg(clara_fbp_execute_device(with, dp, dimg) == CLARA_OK, "%s",
                clara_last_error());
  from_dev(img, dimg, (size_t)nx * ny);
  fprintf(stderr, "  fbp + denoiser: device execute vs separate calls %.2e\n",
          nn_test_rel_l2(img, want, (size_t)nx * ny));
  ck_assert(nn_test_rel_l2(img, want, (size_t)nx * ny) <= 1e-6);
  clara_fbp_plan_destroy(plain);
  clara_fbp_plan_destroy(with);
  dev_free(dp);
  dev_free(dimg);
  free(angles);
  free(proj);
  free(img);
  free(want);
  clara_context_destroy(g);
}
END_TEST

/* ---- MR plans on the device --------------------------------------------- */

/* A 2-coil random k-space of 'slices' slices, 24 x 20, full sampling. */
static float *mr_kspace(clara_mr_geometry *g, int slices) {
  size_t n;
  float *k;
  memset(g, 0, sizeof *g);
  g->coils = 2;
  g->nx = 24;
  g->ny = 20;
  g->nz = 1;
  g->slices = slices;
  g->kx_last = g->nx - 1;
  g->ky_last = g->ny - 1;
  n = 2 * (size_t)g->coils * (size_t)g->nx * (size_t)g->ny * (size_t)slices;
  k = malloc(n * sizeof(float));
  ck_assert_ptr_nonnull(k);
  for (size_t i = 0; i < n; i++)
    k[i] = (float)(urand() - 0.5);
  return k;
}

START_TEST(mr_device) {
  const int slices = 3;
  clara_context *g = make_ctx(CLARA_BACKEND_CUDA, 0, NULL, NULL);
  clara_context *c = make_ctx(CLARA_BACKEND_CPU, 0, NULL, NULL);
  clara_mr_geometry geo;
  float *k = mr_kspace(&geo, slices);
  size_t nk = 2 * (size_t)geo.coils * geo.nx * geo.ny * slices;
  size_t npix = (size_t)geo.nx * geo.ny * slices;
  float *dk = dev_alloc(nk), *di = dev_alloc(2 * npix);
  float *host = malloc(2 * npix * sizeof(float));
  float *dev = malloc(2 * npix * sizeof(float));
  float *cpu = malloc(2 * npix * sizeof(float));
  ck_assert(host && dev && cpu);
  to_dev(dk, k, nk);
  for (int cplx = 0; cplx < 2; cplx++) {
    clara_mr_options o;
    clara_mr_plan *pg = NULL, *pc = NULL;
    size_t nout = npix * (cplx ? 2 : 1);
    clara_mr_options_init(&o);
    o.output_complex = cplx;
    ck_assert_msg(clara_mr_plan_create(g, &geo, &o, &pg) == CLARA_OK, "%s",
                  clara_last_error());
    ck_assert_int_eq(clara_mr_plan_create(c, &geo, &o, &pc), CLARA_OK);
    ck_assert_int_eq(clara_mr_execute(pg, k, host), CLARA_OK);
    ck_assert_int_eq(clara_mr_execute(pc, k, cpu), CLARA_OK);
    fill(dev, nout, NAN);
    to_dev(di, dev, nout);
    ck_assert_msg(clara_mr_execute_device(pg, dk, di) == CLARA_OK, "%s",
                  clara_last_error());
    from_dev(dev, di, nout);
    fprintf(stderr,
            "  mr %s: device entry vs host entry %s, vs CPU rel L2 %.2e\n",
            cplx ? "complex" : "magnitude",
            same_bits(dev, host, nout) ? "identical" : "DIFFERENT",
            nn_test_rel_l2(dev, cpu, nout));
    ck_assert(same_bits(dev, host, nout));
    ck_assert(nn_test_rel_l2(dev, cpu, nout) <= FP32_BOUND);
    /* bad arguments */
    ck_assert_int_eq(clara_mr_execute_device(NULL, dk, di),
                     CLARA_ERR_INVALID_ARG);
    ck_assert_int_eq(clara_mr_execute_device(pg, NULL, di),
                     CLARA_ERR_INVALID_ARG);
    MSG_HAS("d_kspace");
    ck_assert_int_eq(clara_mr_execute_device(pg, dk, NULL),
                     CLARA_ERR_INVALID_ARG);
    MSG_HAS("d_image");
    if (!emulated) {
      ck_assert_int_eq(clara_mr_execute_device(pg, k, di),
                       CLARA_ERR_INVALID_ARG);
      MSG_HAS("host memory");
      ck_assert_int_eq(clara_mr_execute_device(pg, dk, host),
                       CLARA_ERR_INVALID_ARG);
      MSG_HAS("d_image");
    }
    /* a CPU context has no device memory */
    ck_assert_int_eq(clara_mr_execute_device(pc, dk, di),
                     CLARA_ERR_UNSUPPORTED);
    MSG_HAS("backend cuda");
    clara_mr_plan_destroy(pg);
    clara_mr_plan_destroy(pc);
  }
  {
    /* adaptive combination runs on the CPU even on a CUDA context */
    clara_mr_options o;
    clara_mr_plan *p = NULL;
    clara_mr_options_init(&o);
    o.combine = CLARA_MR_COMBINE_ADAPTIVE;
    ck_assert_int_eq(clara_mr_plan_create(g, &geo, &o, &p), CLARA_OK);
    ck_assert_int_eq(clara_mr_execute_device(p, dk, di), CLARA_ERR_UNSUPPORTED);
    MSG_HAS("runs on the CPU");
    MSG_HAS("ADAPTIVE");
    clara_mr_plan_destroy(p);
  }
  dev_free(dk);
  dev_free(di);
  free(k);
  free(host);
  free(dev);
  free(cpu);
  clara_context_destroy(g);
  clara_context_destroy(c);
}
END_TEST

START_TEST(mr_attached) {
  const tmodel *t = &models[M_P99];
  const int slices = 2;
  clara_context *g = make_ctx(CLARA_BACKEND_CUDA, 0, NULL, NULL);
  clara_denoiser *d = load(g, t);
  clara_mr_geometry geo;
  float *k = mr_kspace(&geo, slices);
  size_t nk = 2 * (size_t)geo.coils * geo.nx * geo.ny * slices;
  size_t npix = (size_t)geo.nx * geo.ny * slices;
  float *img = malloc(npix * sizeof(float)),
        *want = malloc(npix * sizeof(float));
  float *dk = dev_alloc(nk), *di = dev_alloc(npix);
  clara_mr_plan *plain = NULL, *with = NULL;
  ck_assert(img && want);
  ck_assert_msg(clara_mr_plan_create(g, &geo, NULL, &plain) == CLARA_OK, "%s",
                clara_last_error());
  ck_assert_int_eq(clara_mr_plan_create(g, &geo, NULL, &with), CLARA_OK);
  ck_assert_msg(clara_mr_plan_set_denoiser(with, d) == CLARA_OK, "%s",
                clara_last_error());
  ck_assert_int_eq(clara_mr_execute(plain, k, want), CLARA_OK);
  ck_assert_int_eq(clara_denoise(d, want, want, geo.nx, geo.ny, slices),
                   CLARA_OK);
  clara_denoiser_destroy(d); /* the plan holds its own reference */
  fill(img, npix, NAN);
  ck_assert_msg(clara_mr_execute(with, k, img) == CLARA_OK, "%s",
                clara_last_error());
  fprintf(stderr, "  mr + denoiser: host execute vs separate calls %.2e\n",
          nn_test_rel_l2(img, want, npix));
  ck_assert(nn_test_rel_l2(img, want, npix) <= 1e-6);
  to_dev(dk, k, nk);
  ck_assert_msg(clara_mr_execute_device(with, dk, di) == CLARA_OK, "%s",
                clara_last_error());
  fill(img, npix, NAN);
  from_dev(img, di, npix);
  fprintf(stderr, "  mr + denoiser: device execute vs separate calls %.2e\n",
          nn_test_rel_l2(img, want, npix));
  ck_assert(nn_test_rel_l2(img, want, npix) <= 1e-6);
  clara_mr_plan_destroy(plain);
  clara_mr_plan_destroy(with);
  dev_free(dk);
  dev_free(di);
  free(k);
  free(img);
  free(want);
  clara_context_destroy(g);
}
END_TEST

/* ---- Runner -------------------------------------------------------------- */

static int write_models(void) {
  for (size_t i = 0; i < NMODELS; i++) {
    tmodel *t = &models[i];
    nn_test_model_random(&t->m, t->layers, t->width, t->seed);
    t->m.residual = t->residual;
    if (t->percentile) {
      t->m.percentile_norm = 1;
      t->m.percentile = t->q;
      t->m.modality = "mr";
    } else {
      t->m.offset = -24.0; /* a fixed offset that is not 0 */
      t->m.scale = 700.0;
    }
    t->path = nn_test_tmpname(".h5");
    if (nn_test_model_write(&t->m, t->path) != 0) {
      fprintf(stderr, "test_cuda_nn: cannot write %s\n", t->path);
      return -1;
    }
  }
  return 0;
}

static void remove_models(void) {
  for (size_t i = 0; i < NMODELS; i++) {
    if (models[i].path)
      unlink(models[i].path);
    free(models[i].path);
    models[i].path = NULL;
    nn_test_model_free(&models[i].m);
  }
}

static Suite *device_suite(void) {
  Suite *s = suite_create("cuda-nn");
  TCase *t = tcase_create("device");
  tcase_set_timeout(t, 600);
  tcase_add_test(t, fp32_fixed);
  tcase_add_test(t, fp32_percentile);
  tcase_add_test(t, fp16);
  tcase_add_test(t, device_pointers);
  tcase_add_test(t, non_finite);
  tcase_add_test(t, memory_limit);
  tcase_add_test(t, cancel);
  tcase_add_test(t, concurrent);
  tcase_add_test(t, errors);
  tcase_add_test(t, fbp_attached);
  tcase_add_test(t, mr_device);
  tcase_add_test(t, mr_attached);
  suite_add_tcase(s, t);
  return s;
}

int main(void) {
  SRunner *sr;
  clara_context_options o;
  clara_context *ctx = NULL;
  clara_status st;
  const char *emu = getenv("CLARA_TEST_CUDA_EMULATION");
  int failed;

  emulated = emu && strcmp(emu, "1") == 0;
  clara_context_options_init(&o);
  o.backend = CLARA_BACKEND_CUDA;
  st = clara_context_create(&o, &ctx);
  if (st == CLARA_ERR_NO_DEVICE) {
    fprintf(stderr,
            "test_cuda_nn: no CUDA device, so the device tests are skipped: "
            "%s\n",
            clara_last_error());
    return 77;
  }
  if (st != CLARA_OK) {
    fprintf(stderr, "test_cuda_nn: a CUDA context cannot be made: %s: %s\n",
            clara_status_name(st), clara_last_error());
    return EXIT_FAILURE;
  }
  clara_context_destroy(ctx);
  if (!emulated && load_cudart() != 0)
    return EXIT_FAILURE;
  if (write_models() != 0) {
    remove_models();
    return EXIT_FAILURE;
  }

  /* in this process: CUDA is initialised, and forked children could not
   * use it */
  sr = srunner_create(device_suite());
  srunner_set_fork_status(sr, CK_NOFORK);
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  remove_models();
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
