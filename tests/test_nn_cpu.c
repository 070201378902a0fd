/* test_nn_cpu.c -- the CPU denoiser (src/cpu/nn_cpu.c, nn_kernels.c)
 * against the independent double-precision direct convolution of
 * nn_testutil.c: random networks written as model files, loaded with
 * clara_denoiser_load and run with clara_denoise, for odd sizes, images just
 * at the receptive field, several widths and channel chains, threads, slices,
 * in place, both normalisations, and every kernel set (portable, AVX2 and
 * AVX-512) this CPU runs. Also: results identical for any number of threads,
 * cancellation and progress, FP16 refused.
 *
 * Tolerance. Winograd F(4x4, 3x3) in float32 loses more than a direct
 * convolution (its transforms have entries up to 8 and 1/24). Measured
 * here, as the relative L2 difference of the output to the double
 * reference on these random He-initialised nets: 3e-8 (one layer) to
 * 1.2e-6 (10 x 48), typically 4e-7 to 1e-6; both kernel sets alike. For
 * scale: a plain float32 direct convolution (numpy) gives 3e-7 on 8 x 32
 * and 1.2e-6 on 12 x 64 nets. The bound is 1e-5, the accuracy asked of the
 * denoiser (tests/test_nn.c compares with PyTorch at 1e-5), 8x above the
 * worst case measured; each case prints its error. */
#include "clara_recon.h"
#include "nn_testutil.h"

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOL 1e-5

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

static int have_avx512(void) {
#if defined(__x86_64__) && defined(__GNUC__)
  return __builtin_cpu_supports("avx512f");
#else
  return 0;
#endif
}

static int have_avx2(void) {
#if defined(__x86_64__) && defined(__GNUC__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return 0;
#endif
}

/* Which kernels a denoiser loaded now gets (the choice is made at load). */
static void use_kernels(const char *which) {
  setenv("CLARA_RECON_CPU_KERNELS", which, 1);
}

#define NKSETS 3
static const char *kernel_sets[NKSETS] = {"portable", "avx2", "avx512"};

/* Returns 0 when the kernel set cannot run here (and says so). */
static int kernels_available(const char *which) {
  if (strcmp(which, "avx512") == 0 && !have_avx512()) {
    printf("test_nn_cpu: AVX-512 kernels SKIPPED: this CPU lacks AVX-512F\n");
    return 0;
  }
  if (strcmp(which, "avx2") == 0 && !have_avx2()) {
    printf("test_nn_cpu: AVX2 kernels SKIPPED: this CPU lacks AVX2 and FMA\n");
    return 0;
  }
  return 1;
}

/* ---- Images ------------------------------------------------------------- */

static uint64_t rng_state = 0x243F6A8885A308D3ull;

static double urand(void) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}

static double nrand(void) {
  return sqrt(-2.0 * log(urand())) * cos(2.0 * M_PI * urand());
}

/* A noisy CT slice in HU: air, a body ellipse of soft tissue, a bone ring,
 * and Gaussian noise of 20 HU; or (mr) a positive magnitude image. The same
 * arguments give the same images. */
static float *make_images(int nx, int ny, int nslices, int mr) {
  float *a = malloc(sizeof(float) * (size_t)nx * ny * nslices);
  rng_state = 0x243F6A8885A308D3ull ^ ((uint64_t)nx << 32 | (uint64_t)ny << 8 |
                                       (uint64_t)(nslices * 2 + mr));
  for (int z = 0; z < nslices; ++z)
    for (int y = 0; y < ny; ++y)
      for (int x = 0; x < nx; ++x) {
        double u = (x - 0.5 * nx) / (0.45 * nx),
               v = (y - 0.5 * ny) / (0.4 * ny);
        double r2 = u * u + v * v, val;
        if (mr)
          val = (r2 < 1 ? 300.0 + 100.0 * z + 80.0 * sin(0.3 * x) : 5.0) +
                10.0 * fabs(nrand());
        else
          val = (r2 < 1 ? (r2 > 0.7 ? 900.0 : 40.0 + 10.0 * z) : -1000.0) +
                20.0 * nrand();
        a[((size_t)z * ny + y) * nx + x] = (float)val;
      }
  return a;
}

/* ---- Models ------------------------------------------------------------- */

/* A random net with the channel chain ch[0 .. layers] (ch[0] = ch[L] = 1),
 * He-uniform weights, ReLU on all but the last layer. */
static void model_chain(nn_test_model *m, int layers, const int *ch,
                        unsigned seed) {
  uint64_t save = rng_state;
  rng_state = 0x9E3779B97F4A7C15ull * (seed + 1);
  nn_test_model_random(m, layers, 1, seed);
  for (int l = 0; l < layers; ++l) {
    free(m->weight[l]);
    free(m->bias[l]);
  }
  for (int l = 0; l <= layers; ++l)
    m->channels[l] = ch[l];
  for (int l = 0; l < layers; ++l) {
    int cin = ch[l], cout = ch[l + 1];
    size_t nw = (size_t)cout * cin * 9;
    double a = sqrt(6.0 / (9.0 * cin));
    m->weight[l] = malloc(nw * sizeof(float));
    m->bias[l] = malloc((size_t)cout * sizeof(float));
    for (size_t i = 0; i < nw; ++i)
      m->weight[l][i] = (float)((2 * urand() - 1) * a);
    for (int o = 0; o < cout; ++o)
      m->bias[l][o] = (float)((2 * urand() - 1) * 0.05);
  }
  rng_state = save;
}

static clara_denoiser *load_model(clara_context *ctx, const nn_test_model *m) {
  char *path = nn_test_tmpname(".h5");
  clara_denoiser *d = NULL;
  ck_assert_int_eq(nn_test_model_write(m, path), 0);
  ck_assert_msg(clara_denoiser_load(ctx, path, &d) == CLARA_OK, "%s",
                clara_last_error());
  unlink(path);
  free(path);
  return d;
}

/* Runs m on the images with 'threads' threads and the given kernels, in
 * place or not; returns the worst relative L2 error of a slice against the
 * reference, and the output in *result if asked (caller frees). */
static double run_case(const nn_test_model *m, const char *kernels, int nx,
                       int ny, int nslices, int threads, int in_place,
                       float **result) {
  size_t plane = (size_t)nx * ny, n = plane * nslices;
  float *in = make_images(nx, ny, nslices, m->percentile_norm);
  float *ref = malloc(n * sizeof(float));
  float *out = in_place ? in : malloc(n * sizeof(float));
  float *keep = malloc(n * sizeof(float));
  clara_context *ctx = cpu_ctx(threads);
  clara_denoiser *d;
  double worst = 0;
  memcpy(keep, in, n * sizeof(float));
  use_kernels(kernels);
  d = load_model(ctx, m);
  unsetenv("CLARA_RECON_CPU_KERNELS");
  nn_test_reference(m, keep, ref, nx, ny, nslices);
  ck_assert_msg(clara_denoise(d, in, out, nx, ny, nslices) == CLARA_OK, "%s",
                clara_last_error());
  if (!in_place)
    ck_assert_msg(memcmp(in, keep, n * sizeof(float)) == 0,
                  "the input was modified");
  for (int z = 0; z < nslices; ++z) {
    double e = nn_test_rel_l2(out + z * plane, ref + z * plane, plane);
    if (!(e <= worst)) /* NaN too */
      worst = e;
  }
  printf("test_nn_cpu: %-8s %2d layers [%s] %4d x %-4d x %d, %d thread(s)%s: "
         "rel L2 %.2e\n",
         kernels, m->layers, m->percentile_norm ? "pct" : "fix", nx, ny,
         nslices, threads, in_place ? ", in place" : "", worst);
  clara_denoiser_destroy(d);
  clara_context_destroy(ctx);
  if (result) {
    *result = malloc(n * sizeof(float));
    memcpy(*result, out, n * sizeof(float));
  }
  if (!in_place)
    free(out);
  free(in);
  free(ref);
  free(keep);
  return worst;
}

/* ---- Tests -------------------------------------------------------------- */

/* Widths 1, 8, 32 and 48 on sizes with every remainder mod 4, with 1 and 2
 * threads, for both kernel sets. */
START_TEST(matches_reference_widths_and_sizes) {
  static const int widths[] = {1, 8, 32, 48};
  static const int sizes[][2] = {{32, 32}, {37, 29}, {46, 51}, {18, 35}};
  for (int k = 0; k < NKSETS; ++k) {
    if (!kernels_available(kernel_sets[k]))
      continue;
    for (int w = 0; w < 4; ++w) {
      nn_test_model m;
      nn_test_model_random(&m, 4, widths[w], 10u + (unsigned)w);
      for (int s = 0; s < 4; ++s) {
        double e = run_case(&m, kernel_sets[k], sizes[s][0], sizes[s][1], 1,
                            1 + (s & 1), 0, NULL);
        ck_assert_msg(e < TOL, "width %d, %d x %d: rel L2 %g", widths[w],
                      sizes[s][0], sizes[s][1], e);
      }
      nn_test_model_free(&m);
    }
  }
}
END_TEST

/* The realistic shapes: 6 x 32, 10 x 48 and 12 x 64 (DnCNN-like).
 * CLARA_TEST_QUICK=1 (valgrind) keeps the first: the double-precision
 * reference of the others dominates the run time there. */
START_TEST(matches_reference_deep) {
  static const int shapes[][4] = {
      {6, 32, 83, 70}, {10, 48, 64, 61}, {12, 64, 72, 72}};
  const char *quick = getenv("CLARA_TEST_QUICK");
  int nshapes = quick && *quick && strcmp(quick, "0") != 0 ? 1 : 3;
  for (int k = 0; k < NKSETS; ++k) {
    if (!kernels_available(kernel_sets[k]))
      continue;
    for (int i = 0; i < nshapes; ++i) {
      nn_test_model m;
      double e;
      nn_test_model_random(&m, shapes[i][0], shapes[i][1], 20u + (unsigned)i);
      e = run_case(&m, kernel_sets[k], shapes[i][2], shapes[i][3], 1, 2, 0,
                   NULL);
      ck_assert_msg(e < TOL, "%d x %d: rel L2 %g", shapes[i][0], shapes[i][1],
                    e);
      nn_test_model_free(&m);
    }
  }
}
END_TEST

/* Images just at the receptive field (2 L + 1) and one pixel above, in
 * either direction or both. */
START_TEST(tiny_images) {
  for (int k = 0; k < NKSETS; ++k) {
    if (!kernels_available(kernel_sets[k]))
      continue;
    for (int layers = 1; layers <= 7; layers += 3) {
      nn_test_model m;
      int rf = 2 * layers + 1;
      int sizes[][2] = {{rf, rf}, {rf + 1, rf}, {rf, rf + 2}, {rf, 40}};
      nn_test_model_random(&m, layers, 16, 30u + (unsigned)layers);
      for (int s = 0; s < 4; ++s) {
        double e = run_case(&m, kernel_sets[k], sizes[s][0], sizes[s][1], 1, 2,
                            0, NULL);
        ck_assert_msg(e < TOL, "%d layers, %d x %d: rel L2 %g", layers,
                      sizes[s][0], sizes[s][1], e);
      }
      nn_test_model_free(&m);
    }
  }
}
END_TEST

/* Channel chains that are not one width: narrow and wide, counts that are
 * not multiples of 16, a 1- and a 3-channel bottleneck (direct layers in
 * the middle), a linear layer, and a net without the residual. */
START_TEST(channel_chains) {
  static const int chain_a[] = {1, 20, 5, 37, 64, 1};
  static const int chain_b[] = {1, 3, 17, 1, 40, 1};
  static const int chain_c[] = {1, 70, 33, 1};
  const int *chains[] = {chain_a, chain_b, chain_c};
  const int layers[] = {5, 5, 3};
  for (int k = 0; k < NKSETS; ++k) {
    if (!kernels_available(kernel_sets[k]))
      continue;
    for (int i = 0; i < 3; ++i) {
      nn_test_model m;
      double e;
      model_chain(&m, layers[i], chains[i], 40u + (unsigned)i);
      if (i == 1)
        m.relu[2] = 0; /* a linear layer inside */
      if (i == 2)
        m.residual = 0;
      e = run_case(&m, kernel_sets[k], 45, 38, 1, 3, 0, NULL);
      ck_assert_msg(e < TOL, "chain %d: rel L2 %g", i, e);
      nn_test_model_free(&m);
    }
  }
}
END_TEST

/* Several slices at once, in place and not, each with its own percentile
 * (one slice is all <= 0, so p = 1). */
START_TEST(slices_in_place_percentile) {
  /* 3 slices on 2 threads run a slice per worker; on 4 threads, and for
   * slices over 256 x 256 pixels, the workers share each slice. */
  static const int runs[][3] = {{41, 34, 2}, {41, 34, 4}, {260, 257, 2}};
  for (int k = 0; k < NKSETS; ++k) {
    if (!kernels_available(kernel_sets[k]))
      continue;
    for (int pct = 0; pct < 2; ++pct)
      for (int in_place = 0; in_place < 2; ++in_place)
        for (int i = 0; i < 3; ++i) {
          nn_test_model m;
          double e;
          nn_test_model_random(&m, i == 2 ? 3 : 5, i == 2 ? 8 : 24,
                               50u + (unsigned)pct);
          if (pct) {
            m.percentile_norm = 1;
            m.percentile = 99.5;
            m.modality = "mr";
          }
          e = run_case(&m, kernel_sets[k], runs[i][0], runs[i][1], 3,
                       runs[i][2], in_place, NULL);
          ck_assert_msg(e < TOL, "rel L2 %g", e);
          nn_test_model_free(&m);
        }
  }
}
END_TEST

/* Percentile edge cases: a non-positive slice (p = 1), the 100th
 * percentile (the maximum), a percentile that rounds to the middle, and a
 * slice of many equal values. */
START_TEST(percentile_edges) {
  const int nx = 30, ny = 27;
  size_t plane = (size_t)nx * ny;
  const double qs[] = {100.0, 50.0, 0.001};
  for (int iq = 0; iq < 3; ++iq) {
    nn_test_model m;
    clara_context *ctx = cpu_ctx(2);
    clara_denoiser *d;
    float *in = malloc(3 * plane * sizeof(float));
    float *ref = malloc(3 * plane * sizeof(float));
    float *out = malloc(3 * plane * sizeof(float));
    nn_test_model_random(&m, 3, 16, 60);
    m.percentile_norm = 1;
    m.percentile = qs[iq];
    m.modality = "mr";
    for (size_t i = 0; i < plane; ++i) {
      in[i] = (float)(-1.0 - 3.0 * urand());       /* all negative */
      in[plane + i] = (float)(i % 7 == 0 ? 0 : 5); /* many ties */
      in[2 * plane + i] = (float)(100.0 * urand());
    }
    d = load_model(ctx, &m);
    nn_test_reference(&m, in, ref, nx, ny, 3);
    ck_assert_int_eq(clara_denoise(d, in, out, nx, ny, 3), CLARA_OK);
    for (int z = 0; z < 3; ++z) {
      double e = nn_test_rel_l2(out + z * plane, ref + z * plane, plane);
      printf("test_nn_cpu: percentile %g, slice %d: rel L2 %.2e\n", qs[iq], z,
             e);
      ck_assert_msg(e < TOL, "q %g slice %d: rel L2 %g", qs[iq], z, e);
    }
    clara_denoiser_destroy(d);
    clara_context_destroy(ctx);
    nn_test_model_free(&m);
    free(in);
    free(ref);
    free(out);
  }
}
END_TEST

/* Every pixel's arithmetic is independent of the tasks and threads: the
 * results are bit-identical for 1, 2, 3 and 8 threads (8 also splits the
 * rows into column chunks). */
START_TEST(identical_for_any_thread_count) {
  static const int threads[] = {1, 2, 3, 8};
  for (int k = 0; k < NKSETS; ++k) {
    nn_test_model m;
    float *first = NULL;
    if (!kernels_available(kernel_sets[k]))
      continue;
    nn_test_model_random(&m, 4, 32, 70);
    for (int t = 0; t < 4; ++t) {
      float *res;
      run_case(&m, kernel_sets[k], 133, 71, 2, threads[t], 0, &res);
      if (!first)
        first = res;
      else {
        ck_assert_msg(memcmp(first, res, sizeof(float) * 133 * 71 * 2) == 0,
                      "%s: %d threads differ from 1", kernel_sets[k],
                      threads[t]);
        free(res);
      }
    }
    free(first);
    nn_test_model_free(&m);
  }
}
END_TEST

/* The kernel sets really are different code (no two are bit-identical:
 * each reduces the last layer's channels in its own order), and they
 * agree within the tolerance. This is also what shows that
 * CLARA_RECON_CPU_KERNELS picked the set asked for. */
START_TEST(kernel_sets_differ_and_agree) {
  nn_test_model m;
  float *res[NKSETS] = {NULL};
  size_t n = (size_t)57 * 48;
  nn_test_model_random(&m, 5, 32, 80);
  for (int k = 0; k < NKSETS; ++k)
    if (kernels_available(kernel_sets[k]))
      run_case(&m, kernel_sets[k], 57, 48, 1, 2, 0, &res[k]);
  for (int i = 0; i < NKSETS; ++i)
    for (int j = i + 1; j < NKSETS; ++j) {
      if (!res[i] || !res[j])
        continue;
      printf("test_nn_cpu: %s vs %s: rel L2 %.2e\n", kernel_sets[i],
             kernel_sets[j], nn_test_rel_l2(res[i], res[j], n));
      ck_assert_msg(memcmp(res[i], res[j], n * sizeof(float)) != 0,
                    "CLARA_RECON_CPU_KERNELS=%s and %s gave identical results",
                    kernel_sets[i], kernel_sets[j]);
      ck_assert(nn_test_rel_l2(res[i], res[j], n) < TOL);
    }
  for (int k = 0; k < NKSETS; ++k)
    free(res[k]);
  nn_test_model_free(&m);
}
END_TEST

/* ---- Progress and cancellation ------------------------------------------ */

typedef struct progress_log {
  int calls, stop_after, bad_stage;
  double last;
  int decreasing;
} progress_log;

static int on_progress(const char *stage, double fraction, void *user) {
  progress_log *p = user;
  if (strcmp(stage, "denoise") != 0)
    p->bad_stage = 1;
  if (fraction < p->last)
    p->decreasing = 1;
  p->last = fraction;
  return ++p->calls >= p->stop_after;
}

/* Progress and cancellation with 'threads' threads on ns slices of
 * nx x ny: a full run reports "denoise" at least min_calls times, never
 * backwards, up to near 1 (the calling thread reports after its own tasks,
 * so its last report may come just before the end); stopping at the first
 * report, a quarter of the way and the last certain one cancels, after
 * exactly that many reports. */
static void check_progress(int threads, int ns, int nx, int ny, int min_calls) {
  nn_test_model m;
  clara_context_options o;
  clara_context *ctx;
  clara_denoiser *d;
  progress_log log = {0, 1 << 30, 0, 0.0, 0};
  float *in = make_images(nx, ny, ns, 0);
  float *out = malloc(sizeof(float) * nx * ny * ns);
  nn_test_model_random(&m, 6, 16, 90);
  clara_context_options_init(&o);
  o.backend = CLARA_BACKEND_CPU;
  o.threads = threads;
  o.progress = on_progress;
  o.progress_user = &log;
  ck_assert_int_eq(clara_context_create(&o, &ctx), CLARA_OK);
  d = load_model(ctx, &m);
  ck_assert_int_eq(clara_denoise(d, in, out, nx, ny, ns), CLARA_OK);
  printf("test_nn_cpu: progress, %d threads, %d slices of %d x %d: %d "
         "reports, last %.3f\n",
         threads, ns, nx, ny, log.calls, log.last);
  ck_assert_int_ge(log.calls, min_calls);
  ck_assert(!log.bad_stage && !log.decreasing);
  ck_assert_msg(log.last >= 0.5 && log.last <= 1.0, "last fraction %g",
                log.last);
  {
    /* Where to cancel: at the first report, a quarter of the way and the
     * last one. With one thread every run reports as often as the first;
     * with more, only min_calls reports are certain. */
    int n = threads == 1 ? log.calls : min_calls;
    int stops[3] = {1, n / 4 + 1, n};
    for (int k = 0; k < 3; ++k) {
      progress_log cancel = {0, stops[k], 0, 0.0, 0};
      if (k && stops[k] <= stops[k - 1])
        continue;
      o.progress_user = &cancel;
      clara_denoiser_destroy(d);
      clara_context_destroy(ctx);
      ck_assert_int_eq(clara_context_create(&o, &ctx), CLARA_OK);
      d = load_model(ctx, &m);
      ck_assert_int_eq(clara_denoise(d, in, out, nx, ny, ns),
                       CLARA_ERR_CANCELLED);
      MSG_HAS("cancel");
      ck_assert_int_eq(cancel.calls, stops[k]);
    }
  }
  clara_denoiser_destroy(d);
  clara_context_destroy(ctx);
  nn_test_model_free(&m);
  free(in);
  free(out);
}

/* How often the calling thread reports depends on how many tasks it gets,
 * which depends on the scheduler (under valgrind, which runs one thread at
 * a time, the workers took nearly all of them: 2 reports for 2 slices).
 * So the granularity is checked with one thread, where the caller runs
 * every task and reports after each (2 slices of 64 x 64 in bands of 4
 * rows: well over 10), and with several threads what is guaranteed: a
 * report for each parallel loop (one per slice when the workers share each
 * slice; one in all when small slices run one per worker). */
START_TEST(progress_and_cancel) {
  check_progress(1, 2, 64, 64, 10);
  check_progress(3, 2, 64, 64, 2);
  check_progress(2, 16, 96, 96, 1);
}
END_TEST

/* FP16 is refused on the CPU with the reason, and the denoiser still works
 * in FP32 afterwards. */
START_TEST(fp16_refused) {
  nn_test_model m;
  clara_context *ctx = cpu_ctx(1);
  clara_denoiser *d;
  float *in = make_images(20, 20, 1, 0), *out = malloc(sizeof(float) * 400);
  float *ref = malloc(sizeof(float) * 400);
  nn_test_model_random(&m, 3, 8, 95);
  d = load_model(ctx, &m);
  ck_assert_int_eq(clara_denoiser_set_precision(d, CLARA_PRECISION_FP16),
                   CLARA_ERR_UNSUPPORTED);
  MSG_HAS("FP16 is a GPU option; the CPU backend runs FP32");
  MSG_HAS("precision");
  ck_assert_int_eq(clara_denoise(d, in, out, 20, 20, 1), CLARA_OK);
  nn_test_reference(&m, in, ref, 20, 20, 1);
  ck_assert(nn_test_rel_l2(out, ref, 400) < TOL);
  clara_denoiser_destroy(d);
  clara_context_destroy(ctx);
  nn_test_model_free(&m);
  free(in);
  free(out);
  free(ref);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("nn_cpu");
  TCase *t = tcase_create("core");
  tcase_set_timeout(t, 600);
  tcase_add_test(t, matches_reference_widths_and_sizes);
  tcase_add_test(t, matches_reference_deep);
  tcase_add_test(t, tiny_images);
  tcase_add_test(t, channel_chains);
  tcase_add_test(t, slices_in_place_percentile);
  tcase_add_test(t, percentile_edges);
  tcase_add_test(t, identical_for_any_thread_count);
  tcase_add_test(t, kernel_sets_differ_and_agree);
  tcase_add_test(t, progress_and_cancel);
  tcase_add_test(t, fp16_refused);
  suite_add_tcase(s, t);
  return s;
}

int main(void) {
  SRunner *sr;
  int failed;
  printf("test_nn_cpu: AVX-512 kernels %s\n",
         have_avx512() ? "available and tested"
                       : "SKIPPED (this CPU lacks AVX-512F)");
  sr = srunner_create(suite());
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
