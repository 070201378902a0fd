/* test_concurrency.c -- the thread-safety contract of clara_recon.h:
 * execute on shared plans from many threads, contexts, plans and denoisers
 * made and destroyed concurrently, file reads and writes from several
 * threads, and thread-local error messages. Every threaded result is
 * compared bit for bit against a serial run. Sizes are small so that the
 * test also runs under valgrind and ThreadSanitizer (tests/reliability.am);
 * CLARA_TEST_QUICK=1 lowers the thread and repeat counts further. */
#include "clara_recon.h"
#include "nn_testutil.h"

#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_THREADS 8

static int quick(void) {
  const char *q = getenv("CLARA_TEST_QUICK");
  return q && *q && strcmp(q, "0") != 0;
}
static int nthreads(void) { return quick() ? 4 : MAX_THREADS; }
static int repeats(void) { return quick() ? 1 : 3; }

static clara_context *cpu_ctx(int threads) {
  clara_context_options o;
  clara_context *ctx = NULL;
  clara_context_options_init(&o);
  o.backend = CLARA_BACKEND_CPU;
  o.threads = threads;
  ck_assert_int_eq(clara_context_create(&o, &ctx), CLARA_OK);
  return ctx;
}

/* ---- The problems: small FBP (parallel, cone), MR, denoiser, projector -- */

#define PAR_VIEWS 60
#define PAR_COLS 64
#define PAR_N 40
#define CONE_VIEWS 48
#define CONE_ROWS 8
#define CONE_COLS 48
#define CONE_N 24
#define CONE_NZ 6
#define MR_N 32
#define MR_COILS 2
#define NN_N 24
#define NN_SLICES 2

typedef struct problem {
  float par_angles[PAR_VIEWS], cone_angles[CONE_VIEWS];
  clara_ct_geometry par, cone;
  clara_volume par_vol, cone_vol;
  float *par_proj, *cone_proj; /* phantom projections */
  float *par_image;            /* rasterised phantom, for the projector */
  clara_mr_geometry mr;
  float *kspace;
  float *nn_in;
  char *model_path;
  /* serial references */
  float *ref_par, *ref_cone, *ref_mr, *ref_nn, *ref_proj;
} problem;

static size_t par_voxels(void) { return (size_t)PAR_N * PAR_N; }
static size_t cone_voxels(void) { return (size_t)CONE_N * CONE_N * CONE_NZ; }
static size_t par_cells(void) { return (size_t)PAR_VIEWS * PAR_COLS; }
static size_t cone_cells(void) {
  return (size_t)CONE_VIEWS * CONE_ROWS * CONE_COLS;
}
static size_t mr_pixels(void) { return (size_t)MR_N * MR_N; }
static size_t nn_pixels(void) { return (size_t)NN_N * NN_N * NN_SLICES; }

/* Also called on worker threads, where check's assertions must not run. */
static float *alloc_floats(size_t n) {
  float *p = malloc(sizeof(float) * n);
  if (!p) {
    fprintf(stderr, "test_concurrency: out of memory\n");
    abort();
  }
  return p;
}

static void problem_init(problem *p) {
  clara_phantom *ph2 = NULL, *ph3 = NULL;
  nn_test_model m;
  memset(p, 0, sizeof *p);
  for (int i = 0; i < PAR_VIEWS; i++)
    p->par_angles[i] = (float)(M_PI * i / PAR_VIEWS);
  for (int i = 0; i < CONE_VIEWS; i++)
    p->cone_angles[i] = (float)(2 * M_PI * i / CONE_VIEWS);

  p->par.kind = CLARA_GEOM_PARALLEL;
  p->par.views = PAR_VIEWS;
  p->par.rows = 1;
  p->par.cols = PAR_COLS;
  p->par.angles = p->par_angles;
  p->par.det_spacing[0] = p->par.det_spacing[1] = 4.0;
  p->par_vol.nx = p->par_vol.ny = PAR_N;
  p->par_vol.nz = 1;
  p->par_vol.voxel[0] = p->par_vol.voxel[1] = 5.0;
  p->par_vol.voxel[2] = 4.0;

  p->cone.kind = CLARA_GEOM_CONE;
  p->cone.views = CONE_VIEWS;
  p->cone.rows = CONE_ROWS;
  p->cone.cols = CONE_COLS;
  p->cone.angles = p->cone_angles;
  p->cone.det_spacing[0] = 10.0;
  p->cone.det_spacing[1] = 10.0;
  p->cone.source_to_iso = 500;
  p->cone.source_to_detector = 900;
  p->cone_vol.nx = p->cone_vol.ny = CONE_N;
  p->cone_vol.nz = CONE_NZ;
  p->cone_vol.voxel[0] = p->cone_vol.voxel[1] = 9.0;
  p->cone_vol.voxel[2] = 5.0;

  ck_assert_int_eq(clara_phantom_shepp_logan(2, 90, 0.02, &ph2), CLARA_OK);
  ck_assert_int_eq(clara_phantom_shepp_logan(3, 90, 0.02, &ph3), CLARA_OK);
  p->par_proj = alloc_floats(par_cells());
  p->cone_proj = alloc_floats(cone_cells());
  p->par_image = alloc_floats(par_voxels());
  ck_assert_int_eq(clara_phantom_project(ph2, &p->par, p->par_proj), CLARA_OK);
  ck_assert_int_eq(clara_phantom_project(ph3, &p->cone, p->cone_proj),
                   CLARA_OK);
  ck_assert_int_eq(clara_phantom_rasterize(ph2, &p->par_vol, 2, p->par_image),
                   CLARA_OK);
  clara_phantom_destroy(ph2);
  clara_phantom_destroy(ph3);

  p->mr.coils = MR_COILS;
  p->mr.nx = p->mr.ny = MR_N;
  p->mr.nz = 1;
  p->mr.slices = 1;
  p->mr.ky_first = p->mr.kx_first = 0;
  p->mr.ky_last = p->mr.kx_last = MR_N - 1;
  p->kspace = alloc_floats(2 * (size_t)MR_COILS * mr_pixels());
  ck_assert_int_eq(clara_mr_phantom_kspace(&p->mr, 240, 1, p->kspace, NULL),
                   CLARA_OK);

  p->nn_in = alloc_floats(nn_pixels());
  for (size_t i = 0; i < nn_pixels(); i++)
    p->nn_in[i] = (float)(200.0 * sin(0.37 * (double)i) + 40.0 * (i % 7));
  nn_test_model_random(&m, 3, 4, 1234);
  p->model_path = nn_test_tmpname(".h5");
  ck_assert_int_eq(nn_test_model_write(&m, p->model_path), 0);
  nn_test_model_free(&m);
}

static void problem_free(problem *p) {
  if (p->model_path)
    unlink(p->model_path);
  free(p->model_path);
  free(p->par_proj);
  free(p->cone_proj);
  free(p->par_image);
  free(p->kspace);
  free(p->nn_in);
  free(p->ref_par);
  free(p->ref_cone);
  free(p->ref_mr);
  free(p->ref_nn);
  free(p->ref_proj);
}

/* Plans on one context, for one problem. */
typedef struct plans {
  clara_fbp_plan *par, *cone;
  clara_mr_plan *mr;
  clara_denoiser *nn;
  clara_projector *proj;
} plans;

static clara_status plans_create(clara_context *ctx, const problem *p,
                                 plans *out) {
  clara_status st;
  memset(out, 0, sizeof *out);
  if ((st = clara_fbp_plan_create(ctx, &p->par, &p->par_vol, NULL,
                                  &out->par)) != CLARA_OK ||
      (st = clara_fbp_plan_create(ctx, &p->cone, &p->cone_vol, NULL,
                                  &out->cone)) != CLARA_OK ||
      (st = clara_mr_plan_create(ctx, &p->mr, NULL, &out->mr)) != CLARA_OK ||
      (st = clara_denoiser_load(ctx, p->model_path, &out->nn)) != CLARA_OK ||
      (st = clara_projector_create(ctx, &p->par, &p->par_vol, &out->proj)) !=
          CLARA_OK)
    return st;
  return CLARA_OK;
}

static void plans_destroy(plans *pl) {
  clara_fbp_plan_destroy(pl->par);
  clara_fbp_plan_destroy(pl->cone);
  clara_mr_plan_destroy(pl->mr);
  clara_denoiser_destroy(pl->nn);
  clara_projector_destroy(pl->proj);
  memset(pl, 0, sizeof *pl);
}

/* Outputs of one run of all five operations. */
typedef struct results {
  float *par, *cone, *mr, *nn, *proj;
} results;

static void results_alloc(results *r) {
  r->par = alloc_floats(par_voxels());
  r->cone = alloc_floats(cone_voxels());
  r->mr = alloc_floats(mr_pixels());
  r->nn = alloc_floats(nn_pixels());
  r->proj = alloc_floats(par_cells());
}

static void results_free(results *r) {
  free(r->par);
  free(r->cone);
  free(r->mr);
  free(r->nn);
  free(r->proj);
  memset(r, 0, sizeof *r);
}

/* Runs the five operations; the first failure's status, its operation
 * named in *what. */
static clara_status run_all(const plans *pl, const problem *p, results *r,
                            const char **what) {
  clara_status st;
  if ((st = clara_fbp_execute(pl->par, p->par_proj, r->par)) != CLARA_OK) {
    *what = "fbp parallel";
    return st;
  }
  if ((st = clara_fbp_execute(pl->cone, p->cone_proj, r->cone)) != CLARA_OK) {
    *what = "fbp cone";
    return st;
  }
  if ((st = clara_mr_execute(pl->mr, p->kspace, r->mr)) != CLARA_OK) {
    *what = "mr";
    return st;
  }
  if ((st = clara_denoise(pl->nn, p->nn_in, r->nn, NN_N, NN_N, NN_SLICES)) !=
      CLARA_OK) {
    *what = "denoise";
    return st;
  }
  if ((st = clara_project(pl->proj, p->par_image, r->proj)) != CLARA_OK) {
    *what = "project";
    return st;
  }
  return CLARA_OK;
}

/* Which output differs from the serial reference, or NULL. */
static const char *results_differ(const results *r, const problem *p) {
  if (memcmp(r->par, p->ref_par, sizeof(float) * par_voxels()) != 0)
    return "fbp parallel";
  if (memcmp(r->cone, p->ref_cone, sizeof(float) * cone_voxels()) != 0)
    return "fbp cone";
  if (memcmp(r->mr, p->ref_mr, sizeof(float) * mr_pixels()) != 0)
    return "mr";
  if (memcmp(r->nn, p->ref_nn, sizeof(float) * nn_pixels()) != 0)
    return "denoise";
  if (memcmp(r->proj, p->ref_proj, sizeof(float) * par_cells()) != 0)
    return "project";
  return NULL;
}

/* The serial references, on a one-thread context. The CPU backend's results
 * do not depend on the number of worker threads (test_fbp checks it for
 * FBP), so every context below must reproduce them bit for bit. */
static void problem_reference(problem *p) {
  clara_context *ctx = cpu_ctx(1);
  plans pl;
  results r;
  const char *what = "";
  ck_assert_int_eq(plans_create(ctx, p, &pl), CLARA_OK);
  results_alloc(&r);
  ck_assert_msg(run_all(&pl, p, &r, &what) == CLARA_OK, "%s: %s", what,
                clara_last_error());
  p->ref_par = r.par;
  p->ref_cone = r.cone;
  p->ref_mr = r.mr;
  p->ref_nn = r.nn;
  p->ref_proj = r.proj;
  plans_destroy(&pl);
  clara_context_destroy(ctx);
}

/* Threads report back through this: check's assertions are not meant to
 * be called off the main thread. */
typedef struct worker {
  pthread_t th;
  int id;
  const problem *p;
  const plans *shared; /* (a), (d): plans shared by all workers */
  pthread_barrier_t *start;
  clara_status st;
  char why[1024];
} worker;

static void worker_fail(worker *w, clara_status st, const char *what) {
  w->st = st == CLARA_OK ? CLARA_ERR_FORMAT : st;
  snprintf(w->why, sizeof w->why, "thread %d: %s: %s", w->id, what,
           st == CLARA_OK ? "differs from the serial result"
                          : clara_last_error());
}

static void join_all(worker *w, int n) {
  for (int t = 0; t < n; t++)
    ck_assert_int_eq(pthread_join(w[t].th, NULL), 0);
  for (int t = 0; t < n; t++)
    ck_assert_msg(w[t].st == CLARA_OK, "%s", w[t].why);
}

/* ---- (a) execute on shared plans, distinct outputs ---------------------- */

static void *shared_exec_thread(void *arg) {
  worker *w = arg;
  results r;
  const char *what = "";
  clara_status st;
  results_alloc(&r);
  pthread_barrier_wait(w->start);
  for (int i = 0; i < repeats() && w->st == CLARA_OK; i++) {
    if ((st = run_all(w->shared, w->p, &r, &what)) != CLARA_OK)
      worker_fail(w, st, what);
    else if ((what = results_differ(&r, w->p)) != NULL)
      worker_fail(w, CLARA_OK, what);
  }
  results_free(&r);
  return NULL;
}

static void run_shared(int ctx_threads) {
  problem p;
  plans pl;
  worker w[MAX_THREADS];
  pthread_barrier_t start;
  int n = nthreads();
  clara_context *ctx;
  problem_init(&p);
  problem_reference(&p);
  ctx = cpu_ctx(ctx_threads);
  ck_assert_int_eq(plans_create(ctx, &p, &pl), CLARA_OK);
  pthread_barrier_init(&start, NULL, (unsigned)n);
  for (int t = 0; t < n; t++) {
    memset(&w[t], 0, sizeof w[t]);
    w[t].id = t;
    w[t].p = &p;
    w[t].shared = &pl;
    w[t].start = &start;
    ck_assert_int_eq(pthread_create(&w[t].th, NULL, shared_exec_thread, &w[t]),
                     0);
  }
  join_all(w, n);
  pthread_barrier_destroy(&start);
  plans_destroy(&pl);
  clara_context_destroy(ctx);
  problem_free(&p);
}

/* Each call runs serially inside (one worker thread per context)... */
START_TEST(shared_plans_single_worker) { run_shared(1); }
END_TEST
/* ...and with the context's own worker pool running under every caller. */
START_TEST(shared_plans_worker_pools) { run_shared(2); }
END_TEST

/* ---- (b) contexts, plans and denoisers made and destroyed concurrently -- */

static void *lifecycle_thread(void *arg) {
  worker *w = arg;
  results r;
  const char *what = "";
  clara_status st;
  results_alloc(&r);
  pthread_barrier_wait(w->start);
  for (int i = 0; i < repeats() && w->st == CLARA_OK; i++) {
    /* 1 or 2 worker threads: the results must not depend on it */
    clara_context_options o;
    clara_context *ctx = NULL;
    plans pl;
    clara_context_options_init(&o);
    o.backend = CLARA_BACKEND_CPU;
    o.threads = 1 + (w->id + i) % 2;
    if ((st = clara_context_create(&o, &ctx)) != CLARA_OK) {
      worker_fail(w, st, "context create");
      break;
    }
    /* every thread loads the same model file at the same time */
    if ((st = plans_create(ctx, w->p, &pl)) != CLARA_OK)
      worker_fail(w, st, "plan create");
    else if ((st = run_all(&pl, w->p, &r, &what)) != CLARA_OK)
      worker_fail(w, st, what);
    else if ((what = results_differ(&r, w->p)) != NULL)
      worker_fail(w, CLARA_OK, what);
    plans_destroy(&pl);
    clara_context_destroy(ctx);
  }
  results_free(&r);
  return NULL;
}

START_TEST(create_destroy_concurrently) {
  problem p;
  worker w[MAX_THREADS];
  pthread_barrier_t start;
  int n = nthreads();
  problem_init(&p);
  problem_reference(&p);
  pthread_barrier_init(&start, NULL, (unsigned)n);
  for (int t = 0; t < n; t++) {
    memset(&w[t], 0, sizeof w[t]);
    w[t].id = t;
    w[t].p = &p;
    w[t].start = &start;
    ck_assert_int_eq(pthread_create(&w[t].th, NULL, lifecycle_thread, &w[t]),
                     0);
  }
  join_all(w, n);
  pthread_barrier_destroy(&start);
  problem_free(&p);
}
END_TEST

/* ---- (c) file reads and writes from several threads ---------------------- */

typedef struct io_worker {
  worker w;
  char ct_path[512], image_path[512];
} io_worker;

static int geom_equal(const clara_ct_geometry *a, const clara_ct_geometry *b) {
  return a->kind == b->kind && a->views == b->views && a->rows == b->rows &&
         a->cols == b->cols &&
         memcmp(a->angles, b->angles, sizeof(float) * (size_t)a->views) == 0 &&
         a->det_spacing[0] == b->det_spacing[0] &&
         a->det_spacing[1] == b->det_spacing[1] &&
         a->det_offset[0] == b->det_offset[0] &&
         a->det_offset[1] == b->det_offset[1] &&
         a->source_to_iso == b->source_to_iso &&
         a->source_to_detector == b->source_to_detector;
}

static void *io_thread(void *arg) {
  io_worker *iw = arg;
  worker *w = &iw->w;
  const problem *p = w->p;
  clara_status st;
  pthread_barrier_wait(w->start);
  for (int i = 0; i < 2 * repeats() && w->st == CLARA_OK; i++) {
    clara_ct_geometry g;
    float *angles = NULL, *proj = NULL, *img = NULL;
    clara_volume vol;
    char units[16];
    /* odd threads write the cone data, even ones the parallel data */
    const clara_ct_geometry *src = w->id % 2 ? &p->cone : &p->par;
    const float *src_proj = w->id % 2 ? p->cone_proj : p->par_proj;
    size_t cells = w->id % 2 ? cone_cells() : par_cells();
    if ((st = clara_ct_file_write(iw->ct_path, src, src_proj, &p->par_vol,
                                  p->par_image)) != CLARA_OK) {
      worker_fail(w, st, "ct write");
      break;
    }
    if ((st = clara_ct_file_read(iw->ct_path, &g, &angles, &proj)) !=
        CLARA_OK) {
      worker_fail(w, st, "ct read");
      break;
    }
    if (!geom_equal(&g, src) ||
        memcmp(proj, src_proj, sizeof(float) * cells) != 0)
      worker_fail(w, CLARA_OK, "ct file round trip");
    clara_free(angles);
    clara_free(proj);
    if (w->st != CLARA_OK)
      break;
    if ((st = clara_image_file_read(iw->ct_path, "/truth", &vol, &img, NULL,
                                    0)) != CLARA_OK) {
      worker_fail(w, st, "truth read");
      break;
    }
    if (vol.nx != PAR_N || vol.ny != PAR_N || vol.nz != 1 ||
        memcmp(img, p->par_image, sizeof(float) * par_voxels()) != 0)
      worker_fail(w, CLARA_OK, "truth round trip");
    clara_free(img);
    img = NULL;
    if (w->st != CLARA_OK)
      break;
    if ((st = clara_image_file_write(iw->image_path, &p->cone_vol, p->ref_cone,
                                     "1/mm")) != CLARA_OK) {
      worker_fail(w, st, "image write");
      break;
    }
    if ((st = clara_image_file_read(iw->image_path, "/image", &vol, &img, units,
                                    sizeof units)) != CLARA_OK) {
      worker_fail(w, st, "image read");
      break;
    }
    if (vol.nx != CONE_N || vol.ny != CONE_N || vol.nz != CONE_NZ ||
        strcmp(units, "1/mm") != 0 ||
        memcmp(img, p->ref_cone, sizeof(float) * cone_voxels()) != 0)
      worker_fail(w, CLARA_OK, "image round trip");
    clara_free(img);
  }
  return NULL;
}

START_TEST(file_io_concurrently) {
  problem p;
  io_worker w[MAX_THREADS];
  worker *plain[MAX_THREADS];
  pthread_barrier_t start;
  int n = nthreads();
  const char *dir = getenv("TMPDIR");
  if (!dir || !*dir)
    dir = "/tmp";
  problem_init(&p);
  problem_reference(&p);
  pthread_barrier_init(&start, NULL, (unsigned)n);
  for (int t = 0; t < n; t++) {
    memset(&w[t], 0, sizeof w[t]);
    w[t].w.id = t;
    w[t].w.p = &p;
    w[t].w.start = &start;
    snprintf(w[t].ct_path, sizeof w[t].ct_path, "%s/clara-conc-%ld-%d-ct.h5",
             dir, (long)getpid(), t);
    snprintf(w[t].image_path, sizeof w[t].image_path,
             "%s/clara-conc-%ld-%d-image.h5", dir, (long)getpid(), t);
    plain[t] = &w[t].w;
    ck_assert_int_eq(pthread_create(&w[t].w.th, NULL, io_thread, &w[t]), 0);
  }
  for (int t = 0; t < n; t++)
    ck_assert_int_eq(pthread_join(plain[t]->th, NULL), 0);
  for (int t = 0; t < n; t++) {
    unlink(w[t].ct_path);
    unlink(w[t].image_path);
  }
  for (int t = 0; t < n; t++)
    ck_assert_msg(plain[t]->st == CLARA_OK, "%s", plain[t]->why);
  pthread_barrier_destroy(&start);
  problem_free(&p);
}
END_TEST

/* ---- (d) error messages are per thread ----------------------------------- */

typedef struct err_shared {
  pthread_mutex_t lock;
  int running; /* workers not yet done */
} err_shared;

typedef struct err_worker {
  worker w;
  err_shared *sh;
} err_worker;

/* Alternates successful executes on the shared plan with failing calls
 * whose messages name this thread's own argument. */
static void *failing_exec_thread(void *arg) {
  err_worker *ew = arg;
  worker *w = &ew->w;
  float *img = alloc_floats(par_voxels());
  pthread_barrier_wait(w->start);
  for (int i = 0; i < 2 * repeats() && w->st == CLARA_OK; i++) {
    clara_status st;
    char want[64];
    clara_clear_error();
    if ((st = clara_fbp_execute(w->shared->par, w->p->par_proj, img)) !=
        CLARA_OK) {
      worker_fail(w, st, "fbp parallel");
      break;
    }
    if (memcmp(img, w->p->ref_par, sizeof(float) * par_voxels()) != 0) {
      worker_fail(w, CLARA_OK, "fbp parallel");
      break;
    }
    /* success leaves the (empty) message alone, whatever others do */
    if (clara_last_error()[0] != '\0') {
      w->st = CLARA_ERR_FORMAT;
      snprintf(w->why, sizeof w->why,
               "thread %d: message after success: \"%s\"", w->id,
               clara_last_error());
      break;
    }
    /* a failure naming this thread's own column count */
    snprintf(want, sizeof want, "%d", -(100 + w->id));
    st = clara_geometry_check(&(clara_ct_geometry){.kind = CLARA_GEOM_PARALLEL,
                                                   .views = w->p->par.views,
                                                   .rows = 1,
                                                   .cols = -(100 + w->id),
                                                   .angles = w->p->par.angles,
                                                   .det_spacing = {4.0, 4.0}});
    if (st == CLARA_OK || strstr(clara_last_error(), want) == NULL) {
      w->st = CLARA_ERR_FORMAT;
      snprintf(w->why, sizeof w->why,
               "thread %d: message \"%s\" lacks its own \"%s\"", w->id,
               clara_last_error(), want);
      break;
    }
  }
  free(img);
  pthread_mutex_lock(&ew->sh->lock);
  ew->sh->running--;
  pthread_mutex_unlock(&ew->sh->lock);
  return NULL;
}

/* Fails once, then only reads its message until the workers are done. */
static void *error_reader_thread(void *arg) {
  err_worker *ew = arg;
  worker *w = &ew->w;
  char mine[512];
  int running = 1;
  clara_context_options o;
  clara_context *ctx = NULL;
  clara_context_options_init(&o);
  o.threads = -7;
  if (clara_context_create(&o, &ctx) == CLARA_OK) {
    clara_context_destroy(ctx);
    w->st = CLARA_ERR_FORMAT;
    snprintf(w->why, sizeof w->why, "reader: threads = -7 accepted");
  }
  snprintf(mine, sizeof mine, "%s", clara_last_error());
  pthread_barrier_wait(w->start);
  while (running && w->st == CLARA_OK) {
    if (strcmp(clara_last_error(), mine) != 0) {
      w->st = CLARA_ERR_FORMAT;
      snprintf(w->why, sizeof w->why, "reader: message changed to \"%s\"",
               clara_last_error());
    }
    pthread_mutex_lock(&ew->sh->lock);
    running = ew->sh->running > 0;
    pthread_mutex_unlock(&ew->sh->lock);
    sched_yield();
  }
  if (w->st == CLARA_OK && strstr(mine, "-7") == NULL) {
    w->st = CLARA_ERR_FORMAT;
    snprintf(w->why, sizeof w->why, "reader: message \"%s\" lacks -7", mine);
  }
  return NULL;
}

START_TEST(errors_are_thread_local) {
  problem p;
  plans pl;
  err_worker w[MAX_THREADS + 1];
  err_shared sh;
  pthread_barrier_t start;
  int n = nthreads();
  clara_context *ctx;
  problem_init(&p);
  problem_reference(&p);
  ctx = cpu_ctx(2);
  ck_assert_int_eq(plans_create(ctx, &p, &pl), CLARA_OK);
  pthread_mutex_init(&sh.lock, NULL);
  sh.running = n;
  pthread_barrier_init(&start, NULL, (unsigned)n + 1);
  /* the main thread's own message survives all of it too */
  clara_clear_error();
  ck_assert_int_eq(clara_fbp_execute(NULL, p.par_proj, NULL),
                   CLARA_ERR_INVALID_ARG);
  {
    char before[512];
    snprintf(before, sizeof before, "%s", clara_last_error());
    ck_assert(before[0] != '\0');
    for (int t = 0; t <= n; t++) {
      memset(&w[t], 0, sizeof w[t]);
      w[t].w.id = t;
      w[t].w.p = &p;
      w[t].w.shared = &pl;
      w[t].w.start = &start;
      w[t].sh = &sh;
      ck_assert_int_eq(
          pthread_create(&w[t].w.th, NULL,
                         t < n ? failing_exec_thread : error_reader_thread,
                         &w[t]),
          0);
    }
    for (int t = 0; t <= n; t++)
      ck_assert_int_eq(pthread_join(w[t].w.th, NULL), 0);
    for (int t = 0; t <= n; t++)
      ck_assert_msg(w[t].w.st == CLARA_OK, "%s", w[t].w.why);
    ck_assert_str_eq(clara_last_error(), before);
  }
  pthread_barrier_destroy(&start);
  pthread_mutex_destroy(&sh.lock);
  plans_destroy(&pl);
  clara_context_destroy(ctx);
  problem_free(&p);
}
END_TEST

int main(void) {
  Suite *s = suite_create("concurrency");
  TCase *t = tcase_create("threads");
  SRunner *sr;
  int failed;
  tcase_set_timeout(t, 600);
  tcase_add_test(t, shared_plans_single_worker);
  tcase_add_test(t, shared_plans_worker_pools);
  tcase_add_test(t, create_destroy_concurrently);
  tcase_add_test(t, file_io_concurrently);
  tcase_add_test(t, errors_are_thread_local);
  suite_add_tcase(s, t);
  sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
