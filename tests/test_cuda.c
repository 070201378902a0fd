/* test_cuda.c -- the CUDA backend.
 *
 * First, on every machine, the plugin loading paths that need no GPU, each
 * in a child process (the plugin is looked for once per process): a
 * missing plugin file, a file that is not a shared library, and a shared
 * library without the entry point make backend cuda fail with
 * CLARA_ERR_NO_DEVICE and the reason, and backend auto fall back to the
 * CPU. Then, when a CUDA device is usable, the CUDA backend against the CPU
 * backend on analytic Shepp-Logan scans for every geometry and filter, in
 * precise and texture mode; device pointers; z slabs forced by a memory
 * limit; the error paths; timing; cancellation; concurrent executes.
 *
 * Exit status: 0 when everything passed, 1 on a failure, 77 (skipped) when
 * no CUDA device is usable -- only after the host-side checks passed.
 *
 * The device buffers come from the CUDA runtime that the plugin loaded
 * (dlopen), so the test builds and links without CUDA. With
 * CLARA_TEST_CUDA_EMULATION=1 and CLARA_RECON_CUDA_PLUGIN pointing at a
 * plugin that emulates the device on the host, "device memory" is host
 * memory and the checks that need a real CUDA runtime are left out. */
#include "clara_recon.h"

#include <check.h>
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MSG_HAS(frag)                                                          \
  ck_assert_msg(strstr(clara_last_error(), (frag)) != NULL,                    \
                "message \"%s\" lacks \"%s\"", clara_last_error(), (frag))

/* ---- Host-side checks: the plugin paths ------------------------------------
 */

/* In a child process with CLARA_RECON_CUDA_PLUGIN=plugin: backend cuda must
 * fail with CLARA_ERR_NO_DEVICE and a message holding 'frag1' and one of
 * 'frag2' / 'frag3' (either may be NULL), and backend auto must give a CPU
 * context. Returns the child's exit status (0 = as expected). */
static int child_plugin_check(const char *plugin, const char *frag1,
                              const char *frag2, const char *frag3) {
  clara_context_options o;
  clara_context *ctx = NULL;
  clara_status st;
  const char *msg;
  int bad = 0;
  if (setenv("CLARA_RECON_CUDA_PLUGIN", plugin, 1) != 0)
    return 2;
  clara_context_options_init(&o);
  o.backend = CLARA_BACKEND_CUDA;
  st = clara_context_create(&o, &ctx);
  msg = clara_last_error();
  fprintf(stderr, "  plugin %s\n    backend cuda: %s: %s\n", plugin,
          clara_status_name(st), msg);
  if (st != CLARA_ERR_NO_DEVICE || ctx != NULL) {
    fprintf(stderr, "    FAIL: expected ERR_NO_DEVICE and no context\n");
    bad = 1;
  }
  if (frag1 && !strstr(msg, frag1)) {
    fprintf(stderr, "    FAIL: the message lacks \"%s\"\n", frag1);
    bad = 1;
  }
  if ((frag2 || frag3) && !(frag2 && strstr(msg, frag2)) &&
      !(frag3 && strstr(msg, frag3))) {
    fprintf(stderr, "    FAIL: the message lacks \"%s\"%s%s%s\n",
            frag2 ? frag2 : "", frag3 ? " or \"" : "", frag3 ? frag3 : "",
            frag3 ? "\"" : "");
    bad = 1;
  }
  clara_context_destroy(ctx);
  ctx = NULL;
  o.backend = CLARA_BACKEND_AUTO;
  st = clara_context_create(&o, &ctx);
  fprintf(stderr, "    backend auto: %s, runs on %s\n", clara_status_name(st),
          ctx ? clara_backend_name(clara_context_backend(ctx)) : "-");
  if (st != CLARA_OK || !ctx ||
      clara_context_backend(ctx) != CLARA_BACKEND_CPU) {
    fprintf(stderr, "    FAIL: backend auto did not fall back to the CPU\n");
    bad = 1;
  }
  clara_context_destroy(ctx);
  return bad;
}

static void expect_plugin_failure(const char *plugin, const char *frag1,
                                  const char *frag2, const char *frag3) {
  pid_t pid, w;
  int status = 0;
  fflush(stdout);
  fflush(stderr);
  pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0)
    _exit(child_plugin_check(plugin, frag1, frag2, frag3));
  do
    w = waitpid(pid, &status, 0);
  while (w < 0);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "CLARA_RECON_CUDA_PLUGIN=%s: unexpected result (see above)",
                plugin);
}

START_TEST(plugin_missing) {
  const char *path = "/nonexistent-clara-dir/libclara-recon-cuda.so";
  expect_plugin_failure(path, path, "No such file", NULL);
}
END_TEST

START_TEST(plugin_not_a_library) {
  const char *dir = getenv("top_builddir");
  char path[4096];
  FILE *f;
  int fd;
  snprintf(path, sizeof path, "%s/tests/tmp-cuda-not-a-library-XXXXXX",
           dir && *dir ? dir : ".");
  fd = mkstemp(path);
  if (fd < 0) { /* no tests/ directory here: use /tmp */
    snprintf(path, sizeof path, "/tmp/clara-cuda-not-a-library-XXXXXX");
    fd = mkstemp(path);
  }
  ck_assert_int_ge(fd, 0);
  f = fdopen(fd, "w");
  ck_assert_ptr_nonnull(f);
  for (int i = 0; i < 64; i++)
    fprintf(f, "This text file is not a shared library (line %d).\n", i);
  ck_assert_int_eq(fclose(f), 0);
  {
    char frag[4200];
    snprintf(frag, sizeof frag, "CLARA_RECON_CUDA_PLUGIN=%s: ", path);
    /* glibc's dlerror: "invalid ELF header" (or "file too short") */
    expect_plugin_failure(path, frag, "ELF", "too short");
  }
  unlink(path);
}
END_TEST

START_TEST(plugin_without_entry) {
  const char *lib = getenv("CLARA_RECON_LIB");
  const char *dir = getenv("top_builddir");
  char path[4096];
  if (lib && *lib)
    snprintf(path, sizeof path, "%s", lib);
  else
    snprintf(path, sizeof path, "%s/src/.libs/libclara-recon.so",
             dir && *dir ? dir : ".");
  ck_assert_msg(access(path, R_OK) == 0,
                "%s: the core library is needed as a shared library without "
                "the plugin entry (set CLARA_RECON_LIB)",
                path);
  expect_plugin_failure(path, "clara_cuda_plugin_entry", NULL, NULL);
}
END_TEST

static Suite *host_suite(void) {
  Suite *s = suite_create("cuda-host");
  TCase *t = tcase_create("plugin");
  tcase_add_test(t, plugin_missing);
  tcase_add_test(t, plugin_not_a_library);
  tcase_add_test(t, plugin_without_entry);
  suite_add_tcase(s, t);
  return s;
}

/* ---- Device memory through the plugin's CUDA runtime ----------------------
 */

static int emulated; /* CLARA_TEST_CUDA_EMULATION=1 */

static struct {
  void *h;
  int (*malloc_)(void **, size_t);
  int (*free_)(void *);
  int (*memcpy_)(void *, const void *, size_t, int);
  int (*malloc_host)(void **, size_t);
  int (*free_host)(void *);
} rt;

enum { H2D = 1, D2H = 2 }; /* cudaMemcpyHostToDevice, DeviceToHost */

/* The CUDA runtime the plugin loaded (call after a CUDA context exists).
 * Returns 0, or -1 with a message. */
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
    fprintf(stderr, "test_cuda: cannot load the CUDA runtime: %s\n", dlerror());
    return -1;
  }
  *(void **)&rt.malloc_ = dlsym(rt.h, "cudaMalloc");
  *(void **)&rt.free_ = dlsym(rt.h, "cudaFree");
  *(void **)&rt.memcpy_ = dlsym(rt.h, "cudaMemcpy");
  *(void **)&rt.malloc_host = dlsym(rt.h, "cudaMallocHost");
  *(void **)&rt.free_host = dlsym(rt.h, "cudaFreeHost");
  if (!rt.malloc_ || !rt.free_ || !rt.memcpy_ || !rt.malloc_host ||
      !rt.free_host) {
    fprintf(stderr, "test_cuda: the CUDA runtime lacks a function\n");
    return -1;
  }
  return 0;
}

static void *dev_alloc(size_t bytes) {
  void *p = NULL;
  if (emulated)
    p = malloc(bytes);
  else
    ck_assert_int_eq(rt.malloc_(&p, bytes), 0);
  ck_assert_ptr_nonnull(p);
  return p;
}

static void dev_free(void *p) {
  if (emulated)
    free(p);
  else if (p)
    ck_assert_int_eq(rt.free_(p), 0);
}

static void to_dev(void *d, const void *h, size_t bytes) {
  if (emulated)
    memcpy(d, h, bytes);
  else
    ck_assert_int_eq(rt.memcpy_(d, h, bytes, H2D), 0);
}

static void from_dev(void *h, const void *d, size_t bytes) {
  if (emulated)
    memcpy(h, d, bytes);
  else
    ck_assert_int_eq(rt.memcpy_(h, d, bytes, D2H), 0);
}

/* ---- Scans ---------------------------------------------------------------
 */

#define PH_RADIUS 100.0
#define PH_SCALE 0.02

static clara_context *make_ctx(clara_backend b, size_t limit) {
  clara_context_options o;
  clara_context *ctx = NULL;
  clara_context_options_init(&o);
  o.backend = b;
  o.device_memory_limit = limit;
  ck_assert_msg(clara_context_create(&o, &ctx) == CLARA_OK, "context: %s",
                clara_last_error());
  ck_assert_int_eq(clara_context_backend(ctx), b);
  return ctx;
}

/* One test scan: geometry, volume, analytic projections. */
typedef struct {
  const char *name;
  clara_ct_geometry g;
  clara_volume vol;
  float *angles;
  float *proj;
  size_t nproj, nvox;
} scan;

enum {
  SC_PARALLEL,
  SC_PARALLEL_STACK,
  SC_FAN_FLAT,
  SC_FAN_ARC,
  SC_FAN_OFFSET,
  SC_CONE,
  SC_CONE_SHORT,
  SC_CONE_OFFSET,
  SC_COUNT
};

static void make_scan(int which, scan *sc) {
  clara_ct_geometry *g = &sc->g;
  clara_volume *v = &sc->vol;
  clara_phantom *ph = NULL;
  int views = 180, cone = 0, n = 128;
  double start = 0.3, range = 2 * M_PI;
  memset(sc, 0, sizeof *sc);
  g->rows = 1;
  g->cols = 192;
  g->source_to_iso = 500;
  g->source_to_detector = 900;
  g->det_spacing[0] = 1.0;
  switch (which) {
  case SC_PARALLEL:
    sc->name = "parallel";
    g->kind = CLARA_GEOM_PARALLEL;
    range = M_PI;
    break;
  case SC_PARALLEL_STACK:
    /* 70 slices: the 8-slice kernel with a partial last block */
    sc->name = "parallel-stack";
    g->kind = CLARA_GEOM_PARALLEL;
    range = M_PI;
    views = 90;
    g->rows = 70;
    g->cols = 96;
    n = 64;
    break;
  case SC_FAN_FLAT:
    sc->name = "fan-flat";
    g->kind = CLARA_GEOM_FAN_FLAT;
    break;
  case SC_FAN_ARC:
    sc->name = "fan-arc";
    g->kind = CLARA_GEOM_FAN_ARC;
    break;
  case SC_FAN_OFFSET:
    sc->name = "fan-flat-offset";
    g->kind = CLARA_GEOM_FAN_FLAT;
    start = 0;
    break;
  case SC_CONE:
    sc->name = "cone";
    g->kind = CLARA_GEOM_CONE;
    cone = 1;
    break;
  case SC_CONE_SHORT:
    sc->name = "cone-short";
    g->kind = CLARA_GEOM_CONE;
    cone = 1;
    range = (180.0 + 30.0) * M_PI / 180.0; /* 180 + fan (28.96) + a bit */
    views = 100;
    break;
  default:
    sc->name = "cone-offset";
    g->kind = CLARA_GEOM_CONE;
    cone = 1;
    start = 0;
    break;
  }
  if (cone) {
    views = which == SC_CONE_SHORT ? 100 : 120;
    n = 64;
    g->rows = 80;
    g->cols = 96;
  }
  g->views = views;
  sc->angles = malloc(sizeof(float) * (size_t)views);
  ck_assert_ptr_nonnull(sc->angles);
  for (int i = 0; i < views; i++)
    sc->angles[i] = (float)(start + range * i / views);
  g->angles = sc->angles;
  /* the detector covers +-125 mm at the isocentre */
  switch (g->kind) {
  case CLARA_GEOM_PARALLEL:
    g->det_spacing[1] = 250.0 / g->cols;
    break;
  case CLARA_GEOM_FAN_ARC:
    g->det_spacing[1] = 2 * asin(125.0 / 500) / g->cols;
    break;
  default:
    g->det_spacing[1] = 250.0 / g->cols * 900 / 500;
  }
  v->nx = v->ny = n;
  v->nz = cone ? n : g->rows;
  v->voxel[0] = v->voxel[1] = 230.0 / n;
  v->voxel[2] = cone ? 230.0 / n : g->det_spacing[0];
  if (cone) /* 3.6 mm at the isocentre per row: 288 mm of rows */
    g->det_spacing[0] = v->voxel[2] * 900 / 500;
  if (which == SC_FAN_OFFSET) /* a half-fan detector: 70% of its half */
    g->det_offset[1] = 0.7 * g->cols * g->det_spacing[1] * 0.5;
  if (which == SC_CONE_OFFSET) {
    g->det_offset[1] = 0.6 * g->cols * g->det_spacing[1] * 0.5;
    g->det_offset[0] = 1.3 * g->det_spacing[0]; /* off the row grid too */
  }
  sc->nproj = (size_t)views * (size_t)g->rows * (size_t)g->cols;
  sc->nvox = (size_t)v->nx * (size_t)v->ny * (size_t)v->nz;
  sc->proj = malloc(sizeof(float) * sc->nproj);
  ck_assert_ptr_nonnull(sc->proj);
  ck_assert_int_eq(
      clara_phantom_shepp_logan(cone ? 3 : 2, PH_RADIUS, PH_SCALE, &ph),
      CLARA_OK);
  ck_assert_int_eq(clara_phantom_project(ph, g, sc->proj), CLARA_OK);
  clara_phantom_destroy(ph);
}

static void free_scan(scan *sc) {
  free(sc->angles);
  free(sc->proj);
}

static double rel_l2(const float *x, const float *ref, size_t n) {
  double d = 0, r = 0;
  for (size_t i = 0; i < n; i++) {
    double e = (double)x[i] - (double)ref[i];
    d += e * e;
    r += (double)ref[i] * (double)ref[i];
  }
  return r > 0 ? sqrt(d / r) : sqrt(d);
}

/* Plans 'sc' on ctx with options o and reconstructs into a new image. */
static float *recon(clara_context *ctx, const scan *sc,
                    const clara_fbp_options *o, clara_fbp_timing *t) {
  clara_fbp_plan *plan = NULL;
  float *img = malloc(sizeof(float) * sc->nvox);
  clara_status st;
  ck_assert_ptr_nonnull(img);
  st = clara_fbp_plan_create(ctx, &sc->g, &sc->vol, o, &plan);
  ck_assert_msg(st == CLARA_OK, "%s: plan: %s", sc->name, clara_last_error());
  if (t)
    st = clara_fbp_execute_timed(plan, sc->proj, img, t);
  else
    st = clara_fbp_execute(plan, sc->proj, img);
  ck_assert_msg(st == CLARA_OK, "%s: execute: %s", sc->name,
                clara_last_error());
  clara_fbp_plan_destroy(plan);
  return img;
}

/* ---- Device tests ----------------------------------------------------------
 */

/* Every geometry and filter: CUDA (precise and texture) against the CPU. */
static void compare_with_cpu(int which) {
  clara_context *cpu = make_ctx(CLARA_BACKEND_CPU, 0);
  clara_context *gpu = make_ctx(CLARA_BACKEND_CUDA, 0);
  scan sc;
  make_scan(which, &sc);
  for (int f = 0; f <= CLARA_FILTER_HANN; f++) {
    clara_fbp_options o;
    float *ref, *pre, *tex;
    double ep, et;
    clara_fbp_options_init(&o);
    o.filter = (clara_filter)f;
    if (f == CLARA_FILTER_HAMMING)
      o.cutoff = 0.8;
    ref = recon(cpu, &sc, &o, NULL);
    pre = recon(gpu, &sc, &o, NULL);
    o.flags = CLARA_FBP_GPU_TEXTURE;
    tex = recon(gpu, &sc, &o, NULL);
    ep = rel_l2(pre, ref, sc.nvox);
    et = rel_l2(tex, ref, sc.nvox);
    fprintf(stderr,
            "cuda vs cpu: %-16s %-12s relative L2: precise %.3e, texture "
            "%.3e\n",
            sc.name, clara_filter_name((clara_filter)f), ep, et);
    ck_assert_msg(ep <= 1e-5, "%s %s: precise relative L2 %g > 1e-5", sc.name,
                  clara_filter_name((clara_filter)f), ep);
    ck_assert_msg(et <= 2e-3, "%s %s: texture relative L2 %g > 2e-3", sc.name,
                  clara_filter_name((clara_filter)f), et);
    free(ref);
    free(pre);
    free(tex);
  }
  free_scan(&sc);
  clara_context_destroy(cpu);
  clara_context_destroy(gpu);
}

START_TEST(vs_cpu) { compare_with_cpu(_i); }
END_TEST

/* Hounsfield output and no field-of-view mask: the finishing pass. */
START_TEST(vs_cpu_hu_and_no_mask) {
  clara_context *cpu = make_ctx(CLARA_BACKEND_CPU, 0);
  clara_context *gpu = make_ctx(CLARA_BACKEND_CUDA, 0);
  scan sc;
  clara_fbp_options o;
  float *ref, *img;
  double e;
  make_scan(SC_FAN_ARC, &sc);
  clara_fbp_options_init(&o);
  o.filter = CLARA_FILTER_SHEPP_LOGAN;
  o.mu_water = 0.0192;
  ref = recon(cpu, &sc, &o, NULL);
  img = recon(gpu, &sc, &o, NULL);
  e = rel_l2(img, ref, sc.nvox);
  fprintf(stderr, "cuda vs cpu: fan-arc, HU: relative L2 %.3e\n", e);
  ck_assert_double_le(e, 1e-5);
  /* the mask matters: without it the corners are not -1000 */
  free(ref);
  free(img);
  o.mu_water = 0;
  o.flags = CLARA_FBP_NO_FOV_MASK;
  ref = recon(cpu, &sc, &o, NULL);
  img = recon(gpu, &sc, &o, NULL);
  e = rel_l2(img, ref, sc.nvox);
  fprintf(stderr, "cuda vs cpu: fan-arc, no mask: relative L2 %.3e\n", e);
  ck_assert_double_le(e, 1e-5);
  ck_assert(ref[0] != 0.0f); /* a corner, outside the circle */
  free(ref);
  free(img);
  free_scan(&sc);
  clara_context_destroy(cpu);
  clara_context_destroy(gpu);
}
END_TEST

/* clara_fbp_execute_device on the same plan gives the host execute's
 * image. */
static void device_equals_host(clara_context *gpu, const scan *sc,
                               const clara_fbp_options *o) {
  clara_fbp_plan *plan = NULL;
  float *ref = malloc(sizeof(float) * sc->nvox);
  float *img = malloc(sizeof(float) * sc->nvox);
  void *dp = dev_alloc(sizeof(float) * sc->nproj);
  void *di = dev_alloc(sizeof(float) * sc->nvox);
  double e;
  ck_assert(ref && img);
  ck_assert_msg(clara_fbp_plan_create(gpu, &sc->g, &sc->vol, o, &plan) ==
                    CLARA_OK,
                "%s", clara_last_error());
  ck_assert_int_eq(clara_fbp_execute(plan, sc->proj, ref), CLARA_OK);
  to_dev(dp, sc->proj, sizeof(float) * sc->nproj);
  ck_assert_msg(clara_fbp_execute_device(plan, dp, di) == CLARA_OK, "%s",
                clara_last_error());
  from_dev(img, di, sizeof(float) * sc->nvox);
  e = rel_l2(img, ref, sc->nvox);
  fprintf(
      stderr, "device pointers vs host: %-16s%s relative L2 %.3e%s\n", sc->name,
      o && (o->flags & CLARA_FBP_GPU_TEXTURE) ? " (texture)" : "", e,
      memcmp(img, ref, sizeof(float) * sc->nvox) == 0 ? " (identical)" : "");
  ck_assert_double_le(e, 1e-7);
  clara_fbp_plan_destroy(plan);
  dev_free(dp);
  dev_free(di);
  free(ref);
  free(img);
}

START_TEST(device_pointers) {
  clara_context *gpu = make_ctx(CLARA_BACKEND_CUDA, 0);
  clara_fbp_options o;
  int cases[] = {SC_PARALLEL, SC_PARALLEL_STACK, SC_FAN_ARC, SC_CONE_OFFSET};
  clara_fbp_options_init(&o);
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    scan sc;
    make_scan(cases[k], &sc);
    o.flags = 0;
    device_equals_host(gpu, &sc, &o);
    o.flags = CLARA_FBP_GPU_TEXTURE;
    device_equals_host(gpu, &sc, &o);
    free_scan(&sc);
  }
  clara_context_destroy(gpu);
}
END_TEST

/* A memory limit that forces >= 3 z slabs gives the unlimited result. */
static void slabs_match(int which, unsigned flags) {
  clara_context *gpu = make_ctx(CLARA_BACKEND_CUDA, 0);
  clara_fbp_options o;
  clara_fbp_timing t;
  scan sc;
  float *ref, *img = NULL;
  size_t vol_bytes;
  size_t limit;
  int slabs = 0;
  make_scan(which, &sc);
  clara_fbp_options_init(&o);
  o.flags = flags;
  ref = recon(gpu, &sc, &o, &t);
  ck_assert_int_eq(t.slabs, 1);
  vol_bytes = sizeof(float) * sc.nvox;
  /* shrink the limit until the plan needs three slabs (or cannot be made) */
  for (limit = 2 * vol_bytes; limit > 4096; limit = limit / 10 * 8) {
    clara_context *lc = make_ctx(CLARA_BACKEND_CUDA, limit);
    clara_fbp_plan *plan = NULL;
    clara_status st = clara_fbp_plan_create(lc, &sc.g, &sc.vol, &o, &plan);
    if (st == CLARA_ERR_OUT_OF_MEMORY) {
      MSG_HAS("bytes");
      clara_context_destroy(lc);
      break;
    }
    ck_assert_msg(st == CLARA_OK, "%s", clara_last_error());
    if (!img)
      img = malloc(sizeof(float) * sc.nvox);
    ck_assert_ptr_nonnull(img);
    ck_assert_int_eq(clara_fbp_execute_timed(plan, sc.proj, img, &t), CLARA_OK);
    slabs = t.slabs;
    if (slabs >= 3) {
      double e = rel_l2(img, ref, sc.nvox);
      fprintf(stderr,
              "slabs: %-16s%s limit %zu bytes -> %d slabs, relative L2 to "
              "one slab %.3e%s\n",
              sc.name, flags ? " (texture)" : "", limit, slabs, e,
              memcmp(img, ref, sizeof(float) * sc.nvox) == 0 ? " (identical)"
                                                             : "");
      ck_assert_double_le(e, 1e-6);
      /* the device path splits the same way */
      {
        void *dp = dev_alloc(sizeof(float) * sc.nproj);
        void *di = dev_alloc(sizeof(float) * sc.nvox);
        float *img2 = malloc(sizeof(float) * sc.nvox);
        ck_assert_ptr_nonnull(img2);
        to_dev(dp, sc.proj, sizeof(float) * sc.nproj);
        ck_assert_msg(clara_fbp_execute_device(plan, dp, di) == CLARA_OK, "%s",
                      clara_last_error());
        from_dev(img2, di, sizeof(float) * sc.nvox);
        ck_assert_double_le(rel_l2(img2, img, sc.nvox), 1e-7);
        free(img2);
        dev_free(dp);
        dev_free(di);
      }
      clara_fbp_plan_destroy(plan);
      clara_context_destroy(lc);
      break;
    }
    clara_fbp_plan_destroy(plan);
    clara_context_destroy(lc);
  }
  ck_assert_msg(slabs >= 3, "%s: no memory limit gave 3 slabs (last %d)",
                sc.name, slabs);
  free(ref);
  free(img);
  free_scan(&sc);
  clara_context_destroy(gpu);
}

START_TEST(slabs_cone) { slabs_match(SC_CONE_OFFSET, 0); }
END_TEST
START_TEST(slabs_cone_texture) {
  slabs_match(SC_CONE_OFFSET, CLARA_FBP_GPU_TEXTURE);
}
END_TEST
START_TEST(slabs_stack) { slabs_match(SC_PARALLEL_STACK, 0); }
END_TEST

START_TEST(errors) {
  clara_context_options co;
  clara_context *ctx = NULL, *gpu, *cpu;
  clara_fbp_plan *plan = (clara_fbp_plan *)&co;
  clara_ct_geometry g;
  clara_volume v;
  float *a;
  scan sc;

  /* device index out of range, for cuda and auto */
  clara_context_options_init(&co);
  co.backend = CLARA_BACKEND_CUDA;
  co.device = 1 << 20;
  ck_assert_int_eq(clara_context_create(&co, &ctx), CLARA_ERR_INVALID_ARG);
  ck_assert_ptr_null(ctx);
  MSG_HAS("device");
  co.backend = CLARA_BACKEND_AUTO;
  ck_assert_int_eq(clara_context_create(&co, &ctx), CLARA_ERR_INVALID_ARG);
  ck_assert_ptr_null(ctx);

  /* a CPU plan has no device entry */
  make_scan(SC_PARALLEL, &sc);
  cpu = make_ctx(CLARA_BACKEND_CPU, 0);
  ck_assert_int_eq(clara_fbp_plan_create(cpu, &sc.g, &sc.vol, NULL, &plan),
                   CLARA_OK);
  ck_assert_int_eq(clara_fbp_execute_device(plan, sc.proj, sc.proj),
                   CLARA_ERR_UNSUPPORTED);
  clara_fbp_plan_destroy(plan);
  clara_context_destroy(cpu);

  /* host pointers are refused, naming the argument */
  gpu = make_ctx(CLARA_BACKEND_CUDA, 0);
  ck_assert_int_eq(clara_fbp_plan_create(gpu, &sc.g, &sc.vol, NULL, &plan),
                   CLARA_OK);
  ck_assert_int_eq(clara_fbp_execute_device(plan, NULL, sc.proj),
                   CLARA_ERR_INVALID_ARG);
  if (!emulated) {
    float *img = malloc(sizeof(float) * sc.nvox);
    void *dp = dev_alloc(sizeof(float) * sc.nproj);
    void *di = dev_alloc(sizeof(float) * sc.nvox);
    void *pinned = NULL;
    ck_assert_ptr_nonnull(img);
    ck_assert_int_eq(clara_fbp_execute_device(plan, sc.proj, di),
                     CLARA_ERR_INVALID_ARG);
    MSG_HAS("d_projections");
    ck_assert_int_eq(clara_fbp_execute_device(plan, dp, img),
                     CLARA_ERR_INVALID_ARG);
    MSG_HAS("d_image");
    ck_assert_int_eq(rt.malloc_host(&pinned, sizeof(float) * sc.nvox), 0);
    ck_assert_int_eq(clara_fbp_execute_device(plan, dp, pinned),
                     CLARA_ERR_INVALID_ARG);
    MSG_HAS("d_image");
    MSG_HAS("pinned");
    /* and the plan still works */
    to_dev(dp, sc.proj, sizeof(float) * sc.nproj);
    ck_assert_int_eq(clara_fbp_execute_device(plan, dp, di), CLARA_OK);
    ck_assert_int_eq(rt.free_host(pinned), 0);
    dev_free(dp);
    dev_free(di);
    free(img);
  }
  clara_fbp_plan_destroy(plan);
  free_scan(&sc);
  clara_context_destroy(gpu);

  /* a 256^3 cone that cannot fit in 1 MiB fails at plan time */
  a = malloc(sizeof(float) * 360);
  ck_assert_ptr_nonnull(a);
  for (int i = 0; i < 360; i++)
    a[i] = (float)(2 * M_PI * i / 360);
  memset(&g, 0, sizeof g);
  g.kind = CLARA_GEOM_CONE;
  g.views = 360;
  g.rows = 320;
  g.cols = 320;
  g.angles = a;
  g.source_to_iso = 512;
  g.source_to_detector = 1024;
  g.det_spacing[0] = g.det_spacing[1] = 2.0;
  memset(&v, 0, sizeof v);
  v.nx = v.ny = v.nz = 256;
  v.voxel[0] = v.voxel[1] = v.voxel[2] = 1.0;
  gpu = make_ctx(CLARA_BACKEND_CUDA, (size_t)1 << 20);
  plan = (clara_fbp_plan *)&co;
  ck_assert_int_eq(clara_fbp_plan_create(gpu, &g, &v, NULL, &plan),
                   CLARA_ERR_OUT_OF_MEMORY);
  ck_assert_ptr_null(plan);
  MSG_HAS("bytes");
  fprintf(stderr, "1 MiB limit, 256^3 cone: %s\n", clara_last_error());
  clara_context_destroy(gpu);
  free(a);
}
END_TEST

START_TEST(timing) {
  clara_context *gpu = make_ctx(CLARA_BACKEND_CUDA, 0);
  clara_fbp_timing t;
  scan sc;
  float *img;
  make_scan(SC_CONE, &sc);
  memset(&t, 0xff, sizeof t);
  img = recon(gpu, &sc, NULL, &t);
  fprintf(stderr,
          "timing (cone 64^3, 120 views): total %.3f ms, upload %.3f, filter "
          "%.3f, back-projection %.3f, download %.3f, slabs %d\n",
          t.total_ms, t.upload_ms, t.filter_ms, t.backproject_ms, t.download_ms,
          t.slabs);
  ck_assert(t.total_ms > 0);
  ck_assert(t.upload_ms > 0);
  ck_assert(t.filter_ms > 0);
  ck_assert(t.backproject_ms > 0);
  ck_assert(t.download_ms > 0);
  ck_assert(t.total_ms >= t.backproject_ms);
  ck_assert_int_eq(t.slabs, 1);
  free(img);
  free_scan(&sc);
  clara_context_destroy(gpu);
}
END_TEST

static int cancel_at_half(const char *stage, double f, void *user) {
  int *calls = user;
  (*calls)++;
  ck_assert_ptr_nonnull(stage);
  ck_assert(f >= 0 && f <= 1);
  return f >= 0.5;
}

START_TEST(cancel) {
  clara_context_options co;
  clara_context *ctx = NULL;
  clara_fbp_plan *plan = NULL;
  scan sc;
  int calls = 0;
  float *img;
  make_scan(SC_PARALLEL, &sc);
  img = malloc(sizeof(float) * sc.nvox);
  ck_assert_ptr_nonnull(img);
  clara_context_options_init(&co);
  co.backend = CLARA_BACKEND_CUDA;
  co.progress = cancel_at_half;
  co.progress_user = &calls;
  ck_assert_int_eq(clara_context_create(&co, &ctx), CLARA_OK);
  ck_assert_int_eq(clara_fbp_plan_create(ctx, &sc.g, &sc.vol, NULL, &plan),
                   CLARA_OK);
  ck_assert_int_eq(clara_fbp_execute(plan, sc.proj, img), CLARA_ERR_CANCELLED);
  MSG_HAS("cancelled");
  ck_assert_int_ge(calls, 1);
  clara_fbp_plan_destroy(plan);
  clara_context_destroy(ctx);
  free(img);
  free_scan(&sc);
}
END_TEST

typedef struct {
  const clara_fbp_plan *plan;
  const float *proj;
  float *img;
  clara_status st;
} exec_job;

static void *exec_thread(void *arg) {
  exec_job *j = arg;
  for (int k = 0; k < 3 && j->st == CLARA_OK; k++)
    j->st = clara_fbp_execute(j->plan, j->proj, j->img);
  return NULL;
}

/* One plan, four threads, distinct outputs: every image equals the
 * single-threaded one. */
START_TEST(concurrent) {
  clara_context *gpu = make_ctx(CLARA_BACKEND_CUDA, 0);
  clara_fbp_plan *plan = NULL;
  scan sc;
  float *ref;
  exec_job jobs[4];
  pthread_t tid[4];
  make_scan(SC_CONE, &sc);
  ref = malloc(sizeof(float) * sc.nvox);
  ck_assert_ptr_nonnull(ref);
  ck_assert_int_eq(clara_fbp_plan_create(gpu, &sc.g, &sc.vol, NULL, &plan),
                   CLARA_OK);
  ck_assert_int_eq(clara_fbp_execute(plan, sc.proj, ref), CLARA_OK);
  for (int i = 0; i < 4; i++) {
    jobs[i].plan = plan;
    jobs[i].proj = sc.proj;
    jobs[i].img = malloc(sizeof(float) * sc.nvox);
    jobs[i].st = CLARA_OK;
    ck_assert_ptr_nonnull(jobs[i].img);
    ck_assert_int_eq(pthread_create(&tid[i], NULL, exec_thread, &jobs[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    ck_assert_int_eq(pthread_join(tid[i], NULL), 0);
    ck_assert_int_eq(jobs[i].st, CLARA_OK);
    ck_assert(memcmp(jobs[i].img, ref, sizeof(float) * sc.nvox) == 0);
    free(jobs[i].img);
  }
  clara_fbp_plan_destroy(plan);
  free(ref);
  free_scan(&sc);
  clara_context_destroy(gpu);
}
END_TEST

/* ---- Coverage of the kernel variants: small custom scans --------------------
 */

/* A scan with a detector covering +-125 mm at the isocentre (cols columns),
 * 'views' views from 'start' over 'range' radians, and an nx x ny x nz
 * volume 200 mm wide in x (square voxels, vz = the row pitch at the
 * isocentre for the cone) centred at 0. The caller may change the volume
 * (voxel, center) before custom_project. */
static void custom_init(scan *sc, const char *name, clara_geometry_kind kind,
                        int views, double start, double range, int rows,
                        int cols, int nx, int ny, int nz) {
  clara_ct_geometry *g = &sc->g;
  clara_volume *v = &sc->vol;
  memset(sc, 0, sizeof *sc);
  sc->name = name;
  g->kind = kind;
  g->views = views;
  g->rows = rows;
  g->cols = cols;
  g->source_to_iso = 500;
  g->source_to_detector = 900;
  sc->angles = malloc(sizeof(float) * (size_t)views);
  ck_assert_ptr_nonnull(sc->angles);
  for (int i = 0; i < views; i++)
    sc->angles[i] = (float)(start + range * i / views);
  g->angles = sc->angles;
  switch (kind) {
  case CLARA_GEOM_PARALLEL:
    g->det_spacing[1] = 250.0 / cols;
    break;
  case CLARA_GEOM_FAN_ARC:
    g->det_spacing[1] = 2 * asin(125.0 / 500) / cols;
    break;
  default:
    g->det_spacing[1] = 250.0 / cols * 900 / 500;
  }
  v->nx = nx;
  v->ny = ny;
  v->nz = nz;
  v->voxel[0] = v->voxel[1] = v->voxel[2] = 200.0 / nx;
  g->det_spacing[0] =
      kind == CLARA_GEOM_CONE ? v->voxel[2] * 900 / 500 : v->voxel[2];
}

/* The analytic projections of the Shepp-Logan phantom for sc's geometry. */
static void custom_project(scan *sc) {
  clara_phantom *ph = NULL;
  int cone = sc->g.kind == CLARA_GEOM_CONE;
  sc->nproj = (size_t)sc->g.views * (size_t)sc->g.rows * (size_t)sc->g.cols;
  sc->nvox = (size_t)sc->vol.nx * (size_t)sc->vol.ny * (size_t)sc->vol.nz;
  sc->proj = malloc(sizeof(float) * sc->nproj);
  ck_assert_ptr_nonnull(sc->proj);
  ck_assert_int_eq(
      clara_phantom_shepp_logan(cone ? 3 : 2, PH_RADIUS, PH_SCALE, &ph),
      CLARA_OK);
  ck_assert_int_eq(clara_phantom_project(ph, &sc->g, sc->proj), CLARA_OK);
  clara_phantom_destroy(ph);
}

/* Reconstructs 'sc' on a CUDA context with device memory limit 'limit'
 * (0: none), returning the image and the slab count in *slabs. */
static float *recon_limited(const scan *sc, const clara_fbp_options *o,
                            size_t limit, int *slabs) {
  clara_context *gpu = make_ctx(CLARA_BACKEND_CUDA, limit);
  clara_fbp_timing t;
  float *img = recon(gpu, sc, o, &t);
  *slabs = t.slabs;
  clara_context_destroy(gpu);
  return img;
}

/* The largest device memory limit (from twice the volume down, in steps of
 * 20%) at which 'sc' with options 'o' is split into at least 'want' z
 * slabs; 0 when none is. */
static size_t limit_for_slabs(const scan *sc, const clara_fbp_options *o,
                              int want) {
  size_t vol_bytes = sizeof(float) * sc->nvox;
  for (size_t limit = 2 * vol_bytes; limit > 4096; limit = limit / 10 * 8) {
    clara_context *lc = make_ctx(CLARA_BACKEND_CUDA, limit);
    clara_fbp_plan *plan = NULL;
    clara_fbp_timing t;
    float *img;
    clara_status st = clara_fbp_plan_create(lc, &sc->g, &sc->vol, o, &plan);
    if (st == CLARA_ERR_OUT_OF_MEMORY) {
      clara_context_destroy(lc);
      return 0;
    }
    ck_assert_msg(st == CLARA_OK, "%s: %s", sc->name, clara_last_error());
    img = malloc(sizeof(float) * sc->nvox);
    ck_assert_ptr_nonnull(img);
    ck_assert_int_eq(clara_fbp_execute_timed(plan, sc->proj, img, &t),
                     CLARA_OK);
    free(img);
    clara_fbp_plan_destroy(plan);
    clara_context_destroy(lc);
    if (t.slabs >= want)
      return limit;
  }
  return 0;
}

/* 'sc' with options 'o' on the CPU against CUDA precise and texture, within
 * the bounds of compare_with_cpu; with min_slabs > 1, under device memory
 * limits that split the volume into at least that many z slabs (so the
 * detector row window starts past row 0). */
static void custom_vs_cpu(const scan *sc, const clara_fbp_options *o,
                          int min_slabs) {
  clara_context *cpu = make_ctx(CLARA_BACKEND_CPU, 0);
  clara_fbp_options op = *o, ot = *o;
  size_t lp = 0, lt = 0;
  float *ref, *pre, *tex;
  int sp, st;
  double ep, et;
  op.flags &= ~(unsigned)CLARA_FBP_GPU_TEXTURE;
  ot.flags |= CLARA_FBP_GPU_TEXTURE;
  if (min_slabs > 1) {
    lp = limit_for_slabs(sc, &op, min_slabs);
    lt = limit_for_slabs(sc, &ot, min_slabs);
    ck_assert_msg(lp && lt, "%s: no memory limit gave %d slabs", sc->name,
                  min_slabs);
  }
  ref = recon(cpu, sc, o, NULL);
  pre = recon_limited(sc, &op, lp, &sp);
  tex = recon_limited(sc, &ot, lt, &st);
  ep = rel_l2(pre, ref, sc->nvox);
  et = rel_l2(tex, ref, sc->nvox);
  fprintf(stderr,
          "cuda vs cpu: %-26s %3d x %3d x %3d, %3d views, slabs %d/%d: "
          "relative L2: precise %.3e, texture %.3e\n",
          sc->name, sc->vol.nx, sc->vol.ny, sc->vol.nz, sc->g.views, sp, st, ep,
          et);
  ck_assert_int_ge(sp, min_slabs);
  ck_assert_int_ge(st, min_slabs);
  ck_assert_msg(ep <= 1e-5, "%s: precise relative L2 %g > 1e-5", sc->name, ep);
  ck_assert_msg(et <= 2e-3, "%s: texture relative L2 %g > 2e-3", sc->name, et);
  free(ref);
  free(pre);
  free(tex);
  clara_context_destroy(cpu);
}

/* Fan-flat and fan-arc stacks: 6 rows (4 slices per thread, a partial last
 * block of slices) and 67 rows (8 slices per thread, partial), the latter
 * also in >= 2 slabs, where the weighting kernel reads the cosine weights
 * of a row window that does not start at row 0 (in 2D every row has the
 * same weights, so this checks the indexing stays in range, not the row). */
START_TEST(fan_stacks) {
  static const clara_geometry_kind kinds[] = {CLARA_GEOM_FAN_FLAT,
                                              CLARA_GEOM_FAN_ARC};
  static const char *const names[][2] = {
      {"fan-flat-stack-6", "fan-flat-stack-67"},
      {"fan-arc-stack-6", "fan-arc-stack-67"}};
  clara_fbp_options o;
  clara_fbp_options_init(&o);
  for (int k = 0; k < 2; k++)
    for (int r = 0; r < 2; r++) {
      int rows = r ? 67 : 6;
      scan sc;
      custom_init(&sc, names[k][r], kinds[k], 60, 0.2, 2 * M_PI, rows, 64, 32,
                  32, rows);
      custom_project(&sc);
      custom_vs_cpu(&sc, &o, 1);
      if (r)
        custom_vs_cpu(&sc, &o, 2);
      free_scan(&sc);
    }
}
END_TEST

/* Parallel stack of 5 rows: the 4-slice kernel, in texture mode too. */
START_TEST(parallel_stack_4) {
  clara_fbp_options o;
  scan sc;
  clara_fbp_options_init(&o);
  o.filter = CLARA_FILTER_SHEPP_LOGAN;
  custom_init(&sc, "parallel-stack-5", CLARA_GEOM_PARALLEL, 60, 0.1, M_PI, 5,
              64, 32, 32, 5);
  custom_project(&sc);
  custom_vs_cpu(&sc, &o, 1);
  free_scan(&sc);
}
END_TEST

/* Volumes that are not multiples of the 32 x 8 block: 45 x 37, 2D and
 * cone. */
START_TEST(odd_sizes) {
  clara_fbp_options o;
  scan sc;
  clara_fbp_options_init(&o);
  custom_init(&sc, "parallel-45x37", CLARA_GEOM_PARALLEL, 72, 0.3, M_PI, 1, 64,
              45, 37, 1);
  custom_project(&sc);
  custom_vs_cpu(&sc, &o, 1);
  free_scan(&sc);
  custom_init(&sc, "fan-arc-45x37", CLARA_GEOM_FAN_ARC, 72, 0.3, 2 * M_PI, 1,
              64, 45, 37, 1);
  custom_project(&sc);
  custom_vs_cpu(&sc, &o, 1);
  free_scan(&sc);
  custom_init(&sc, "cone-45x37x13", CLARA_GEOM_CONE, 72, 0.3, 2 * M_PI, 20, 64,
              45, 37, 13);
  custom_project(&sc);
  custom_vs_cpu(&sc, &o, 1);
  free_scan(&sc);
}
END_TEST

/* 301 views: two batches of 151 and 150 views, the last one partial (its
 * spare lines zeroed); 256 views: one full 256-view launch. */
START_TEST(view_batches) {
  static const int views[] = {301, 256};
  static const char *const names[] = {"parallel-301-views",
                                      "parallel-256-views", "cone-301-views",
                                      "cone-256-views"};
  clara_fbp_options o;
  clara_fbp_options_init(&o);
  for (int k = 0; k < 2; k++) {
    scan sc;
    custom_init(&sc, names[k], CLARA_GEOM_PARALLEL, views[k], 0.1, M_PI, 1, 64,
                32, 32, 1);
    custom_project(&sc);
    custom_vs_cpu(&sc, &o, 1);
    free_scan(&sc);
    custom_init(&sc, names[2 + k], CLARA_GEOM_CONE, views[k], 0.1, 2 * M_PI, 12,
                48, 24, 24, 8);
    custom_project(&sc);
    custom_vs_cpu(&sc, &o, 1);
    free_scan(&sc);
  }
}
END_TEST

/* 2D short scans (Parker weights): fan-flat and fan-arc over 180 degrees
 * plus the fan (28.96 degrees) plus 6, parallel over 240 degrees. */
START_TEST(short_scans_2d) {
  static const clara_geometry_kind kinds[] = {
      CLARA_GEOM_FAN_FLAT, CLARA_GEOM_FAN_ARC, CLARA_GEOM_PARALLEL};
  static const char *const names[] = {"fan-flat-short", "fan-arc-short",
                                      "parallel-short-240"};
  static const double deg[] = {215.0, 215.0, 240.0};
  clara_fbp_options o;
  clara_fbp_options_init(&o);
  for (int k = 0; k < 3; k++) {
    clara_context *cpu = make_ctx(CLARA_BACKEND_CPU, 0);
    clara_fbp_plan *plan = NULL;
    clara_fbp_info info;
    scan sc;
    custom_init(&sc, names[k], kinds[k], 90, 0.7, deg[k] * M_PI / 180, 1, 64,
                32, 32, 1);
    custom_project(&sc);
    ck_assert_int_eq(clara_fbp_plan_create(cpu, &sc.g, &sc.vol, &o, &plan),
                     CLARA_OK);
    ck_assert_int_eq(clara_fbp_plan_info(plan, &info), CLARA_OK);
    ck_assert_int_eq(info.short_scan, 1);
    clara_fbp_plan_destroy(plan);
    clara_context_destroy(cpu);
    custom_vs_cpu(&sc, &o, 1);
    free_scan(&sc);
  }
}
END_TEST

/* Hounsfield output in texture mode (2D and cone), and the cone without the
 * field-of-view mask. */
START_TEST(hu_texture_and_cone_no_mask) {
  clara_fbp_options o;
  scan sc;
  clara_fbp_options_init(&o);
  o.mu_water = 0.0192;
  custom_init(&sc, "fan-flat-hu", CLARA_GEOM_FAN_FLAT, 60, 0.2, 2 * M_PI, 1, 64,
              32, 32, 1);
  custom_project(&sc);
  custom_vs_cpu(&sc, &o, 1);
  free_scan(&sc);
  custom_init(&sc, "cone-hu", CLARA_GEOM_CONE, 60, 0.2, 2 * M_PI, 20, 48, 24,
              24, 16);
  custom_project(&sc);
  custom_vs_cpu(&sc, &o, 1);
  o.mu_water = 0;
  o.flags = CLARA_FBP_NO_FOV_MASK;
  sc.name = "cone-no-mask";
  custom_vs_cpu(&sc, &o, 1);
  free_scan(&sc);
}
END_TEST

/* Off-centre, anisotropic volumes: vx != vy (!= vz for the cone), centre
 * away from the isocentre, in 2D (fan-flat stack, parallel) and cone (in
 * >= 2 slabs too). */
START_TEST(off_centre_anisotropic) {
  clara_fbp_options o;
  scan sc;
  clara_fbp_options_init(&o);
  custom_init(&sc, "fan-flat-stack-off-centre", CLARA_GEOM_FAN_FLAT, 60, 0.2,
              2 * M_PI, 6, 64, 36, 28, 6);
  sc.vol.voxel[0] = 4.1;
  sc.vol.voxel[1] = 5.3;
  sc.vol.center[0] = 11.5;
  sc.vol.center[1] = -7.25;
  custom_project(&sc);
  custom_vs_cpu(&sc, &o, 1);
  free_scan(&sc);
  custom_init(&sc, "parallel-off-centre", CLARA_GEOM_PARALLEL, 60, 0.2, M_PI, 1,
              64, 36, 28, 1);
  sc.vol.voxel[0] = 4.1;
  sc.vol.voxel[1] = 5.3;
  sc.vol.center[0] = -9.0;
  sc.vol.center[1] = 13.0;
  custom_project(&sc);
  custom_vs_cpu(&sc, &o, 1);
  free_scan(&sc);
  custom_init(&sc, "cone-off-centre", CLARA_GEOM_CONE, 60, 0.2, 2 * M_PI, 24,
              64, 36, 28, 18);
  sc.vol.voxel[0] = 4.1;
  sc.vol.voxel[1] = 5.3;
  sc.vol.voxel[2] = 5.0;
  sc.vol.center[0] = 11.5;
  sc.vol.center[1] = -7.25;
  sc.vol.center[2] = 6.0;
  sc.g.det_spacing[0] = 4.1 * 900 / 500;
  custom_project(&sc);
  custom_vs_cpu(&sc, &o, 1);
  custom_vs_cpu(&sc, &o, 3);
  free_scan(&sc);
}
END_TEST

static Suite *device_suite(void) {
  Suite *s = suite_create("cuda-device");
  TCase *t = tcase_create("accuracy");
  tcase_set_timeout(t, 900);
  tcase_add_loop_test(t, vs_cpu, 0, SC_COUNT);
  tcase_add_test(t, vs_cpu_hu_and_no_mask);
  suite_add_tcase(s, t);
  t = tcase_create("kernel-variants");
  tcase_set_timeout(t, 900);
  tcase_add_test(t, fan_stacks);
  tcase_add_test(t, parallel_stack_4);
  tcase_add_test(t, odd_sizes);
  tcase_add_test(t, view_batches);
  tcase_add_test(t, short_scans_2d);
  tcase_add_test(t, hu_texture_and_cone_no_mask);
  tcase_add_test(t, off_centre_anisotropic);
  suite_add_tcase(s, t);
  t = tcase_create("api");
  tcase_set_timeout(t, 900);
  tcase_add_test(t, device_pointers);
  tcase_add_test(t, slabs_cone);
  tcase_add_test(t, slabs_cone_texture);
  tcase_add_test(t, slabs_stack);
  tcase_add_test(t, errors);
  tcase_add_test(t, timing);
  tcase_add_test(t, cancel);
  tcase_add_test(t, concurrent);
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

  /* The plugin paths first, in child processes, before this process
   * touches CUDA (CUDA does not survive fork). */
  sr = srunner_create(host_suite());
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  if (failed)
    return EXIT_FAILURE;

  emulated = emu && strcmp(emu, "1") == 0;
  clara_context_options_init(&o);
  o.backend = CLARA_BACKEND_CUDA;
  st = clara_context_create(&o, &ctx);
  if (st == CLARA_ERR_NO_DEVICE) {
    fprintf(stderr,
            "test_cuda: the host-side checks passed; no CUDA device, so the "
            "device tests are skipped: %s\n",
            clara_last_error());
    return 77;
  }
  if (st != CLARA_OK) {
    fprintf(stderr, "test_cuda: a CUDA context cannot be made: %s: %s\n",
            clara_status_name(st), clara_last_error());
    return EXIT_FAILURE;
  }
  clara_context_destroy(ctx);
  if (!emulated && load_cudart() != 0)
    return EXIT_FAILURE;

  /* In this process: CUDA is initialised now, and forked children could
   * not use it. */
  sr = srunner_create(device_suite());
  srunner_set_fork_status(sr, CK_NOFORK);
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
