/* test_bad_inputs.c -- the bad-input catalogue (tests/bad_inputs/cases.txt)
 * for the C API and the files.
 *
 * Every line of cases.txt whose surface is "api" or "file" names a maker
 * below; the maker builds its inputs at run time (with the library's writers
 * and HDF5, no Python) in a fresh directory, makes one call, and returns its
 * status. The runner asserts the expected status, that clara_last_error()
 * contains the expected fragment, and that the case's output directory is
 * empty afterwards (no target, no *.tmp* sibling). One line per case:
 * "PASS id" or "FAIL id: why"; the exit status is 1 when any case failed.
 *
 *   test_bad_inputs [CASES.txt]        run the api and file cases
 *   test_bad_inputs --make NAME PATH   write input NAME at PATH (for
 *                                      test_bad_inputs.sh, the CLI cases)
 */
#include "clara_recon.h"
#include "nn_testutil.h"

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- Inputs ---------------------------------------------------------------
 * The directories of the running case: inputs in 'in', outputs in 'out'. */
static char in_dir[1024], out_dir[1024];

static void in_path(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", in_dir, name);
}
static void out_path(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", out_dir, name);
}

static clara_context *cpu_ctx(size_t host_limit) {
  clara_context_options o;
  clara_context *ctx = NULL;
  clara_context_options_init(&o);
  o.backend = CLARA_BACKEND_CPU;
  o.threads = 2;
  o.host_memory_limit = host_limit;
  if (clara_context_create(&o, &ctx) != CLARA_OK) {
    fprintf(stderr, "cannot create a context: %s\n", clara_last_error());
    exit(99);
  }
  return ctx;
}

/* A small parallel scan: 64 views of 48 columns, a 32 x 32 volume. */
static float angles64[64];
static void small_ct(clara_ct_geometry *g, clara_volume *v) {
  for (int i = 0; i < 64; i++)
    angles64[i] = (float)(i * M_PI / 64);
  memset(g, 0, sizeof *g);
  g->kind = CLARA_GEOM_PARALLEL;
  g->views = 64;
  g->rows = 1;
  g->cols = 48;
  g->angles = angles64;
  g->det_spacing[0] = g->det_spacing[1] = 1;
  memset(v, 0, sizeof *v);
  v->nx = v->ny = 32;
  v->nz = 1;
  v->voxel[0] = v->voxel[1] = v->voxel[2] = 1;
}

static float *zeros(size_t n) {
  float *p = calloc(n ? n : 1, sizeof *p);
  if (!p)
    exit(99);
  return p;
}

/* A valid CT file at 'path' (the small scan, projections 0.01). */
static int write_ct(const char *path) {
  clara_ct_geometry g;
  clara_volume v;
  float *p;
  int rc;
  small_ct(&g, &v);
  p = zeros(64 * 48);
  for (int i = 0; i < 64 * 48; i++)
    p[i] = 0.01f;
  rc = clara_ct_file_write(path, &g, p, NULL, NULL);
  free(p);
  return rc;
}

static void truncate_file(const char *path, double keep) {
  struct stat st;
  if (stat(path, &st) != 0 || truncate(path, (off_t)(st.st_size * keep)) != 0)
    exit(99);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f)
    exit(99);
  fputs(text, f);
  fclose(f);
}

/* An HDF5 CT file written by hand, with one thing wrong. */
enum ct_flaw { CT_INT_PROJ, CT_RANK2, CT_ANGLE_COUNT, CT_NAN_ANGLE };
static void write_ct_flawed(const char *path, enum ct_flaw flaw) {
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t g = H5Gcreate2(f, "/ct", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  hsize_t pd[3] = {8, 1, 16}, ad = flaw == CT_ANGLE_COUNT ? 7 : 8, two = 2;
  float proj[8 * 16] = {0}, ang[8];
  int iproj[8 * 16] = {0};
  double sp[2] = {1, 1};
  hid_t s, d, a, t;
  for (int i = 0; i < 8; i++)
    ang[i] = (float)(i * M_PI / 8);
  if (flaw == CT_NAN_ANGLE)
    ang[3] = NAN;
  t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, 8);
  s = H5Screate(H5S_SCALAR);
  a = H5Acreate2(g, "geometry", t, s, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, t, "parallel");
  H5Aclose(a);
  H5Sclose(s);
  H5Tclose(t);
  s = H5Screate_simple(1, &two, NULL);
  a = H5Acreate2(g, "det_spacing", H5T_IEEE_F64LE, s, H5P_DEFAULT,
                 H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_DOUBLE, sp);
  H5Aclose(a);
  H5Sclose(s);
  if (flaw == CT_RANK2) {
    hsize_t d2[2] = {8, 16};
    s = H5Screate_simple(2, d2, NULL);
  } else {
    s = H5Screate_simple(3, pd, NULL);
  }
  if (flaw == CT_INT_PROJ) {
    d = H5Dcreate2(f, "/ct/projections", H5T_STD_I32LE, s, H5P_DEFAULT,
                   H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, iproj);
  } else {
    d = H5Dcreate2(f, "/ct/projections", H5T_IEEE_F32LE, s, H5P_DEFAULT,
                   H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, proj);
  }
  H5Dclose(d);
  H5Sclose(s);
  s = H5Screate_simple(1, &ad, NULL);
  d = H5Dcreate2(f, "/ct/angles", H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT,
                 H5P_DEFAULT);
  H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, ang);
  H5Dclose(d);
  H5Sclose(s);
  H5Gclose(g);
  H5Fclose(f);
}

/* A small ISMRMRD file (4 coils, 32 x 32). */
static clara_mr_geometry small_mr(void) {
  clara_mr_geometry g;
  memset(&g, 0, sizeof g);
  g.coils = 4;
  g.nx = g.ny = 32;
  g.nz = 1;
  g.slices = 1;
  g.recon_nx = 32;
  g.ky_last = 31;
  g.kx_last = 31;
  return g;
}

static int write_mr(const char *path) {
  clara_mr_geometry g = small_mr();
  float *k = zeros(2 * 4 * 32 * 32);
  int rc;
  clara_mr_phantom_kspace(&g, 200, 1, k, NULL);
  rc = clara_mr_file_write_ismrmrd(path, &g, k, NULL, 0);
  free(k);
  return rc;
}

/* Replaces the vlen-string dataset 'name' of an HDF5 file. */
static void replace_string(const char *path, const char *name,
                           const char *text) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT), t, s, d;
  if (f < 0)
    exit(99);
  H5Ldelete(f, name, H5P_DEFAULT);
  t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  s = H5Screate(H5S_SCALAR);
  d = H5Dcreate2(f, name, t, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, &text);
  H5Dclose(d);
  H5Sclose(s);
  H5Tclose(t);
  H5Fclose(f);
}

/* A small model file: 3 layers of 8 channels, modality "ct" or "mr". */
static int write_model(const char *path, const char *modality) {
  nn_test_model m;
  int rc;
  nn_test_model_random(&m, 3, 8, 7);
  m.modality = modality;
  rc = nn_test_model_write(&m, path);
  nn_test_model_free(&m);
  return rc;
}

static void set_int_attr(const char *path, const char *name, int value) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT), a;
  if (f < 0)
    exit(99);
  a = H5Aopen(f, name, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_INT, &value);
  H5Aclose(a);
  H5Fclose(f);
}

/* Replaces /layers/1/weight with 'rank' dims of 'dims' filled with 'fill'. */
static void replace_weight(const char *path, int rank, const hsize_t *dims,
                           float fill) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT), s, d;
  size_t n = 1;
  float *w;
  for (int i = 0; i < rank; i++)
    n *= dims[i];
  w = zeros(n);
  for (size_t i = 0; i < n; i++)
    w[i] = i == 5 ? fill : 0.01f;
  H5Ldelete(f, "/layers/1/weight", H5P_DEFAULT);
  s = H5Screate_simple(rank, dims, NULL);
  d = H5Dcreate2(f, "/layers/1/weight", H5T_IEEE_F32LE, s, H5P_DEFAULT,
                 H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w);
  H5Dclose(d);
  H5Sclose(s);
  H5Fclose(f);
  free(w);
}

/* Makes the input NAME at PATH: the makers shared with the CLI cases.
 * Returns 0, or -1 for an unknown name. */
static int make_input(const char *name, const char *path) {
  if (strcmp(name, "ct") == 0)
    return write_ct(path) == CLARA_OK ? 0 : 99;
  if (strcmp(name, "ct-truncated") == 0) {
    if (write_ct(path) != CLARA_OK)
      return 99;
    truncate_file(path, 0.5);
  } else if (strcmp(name, "empty") == 0) {
    write_text(path, "");
  } else if (strcmp(name, "text") == 0) {
    write_text(path, "this is not HDF5\n");
  } else if (strcmp(name, "ct-int-projections") == 0) {
    write_ct_flawed(path, CT_INT_PROJ);
  } else if (strcmp(name, "ct-rank2") == 0) {
    write_ct_flawed(path, CT_RANK2);
  } else if (strcmp(name, "ct-angle-count") == 0) {
    write_ct_flawed(path, CT_ANGLE_COUNT);
  } else if (strcmp(name, "ct-nan-angle") == 0) {
    write_ct_flawed(path, CT_NAN_ANGLE);
  } else if (strcmp(name, "mr") == 0) {
    return write_mr(path) == CLARA_OK ? 0 : 99;
  } else if (strcmp(name, "mr-bad-xml") == 0) {
    if (write_mr(path) != CLARA_OK)
      return 99;
    replace_string(path, "/dataset/xml", "<ismrmrdHeader><encoding>");
  } else if (strcmp(name, "mr-truncated") == 0) {
    if (write_mr(path) != CLARA_OK)
      return 99;
    truncate_file(path, 0.6);
  } else if (strcmp(name, "h5-unrelated") == 0) {
    replace_string(path, "/hello", "world"); /* needs the file first */
  } else if (strcmp(name, "model-ct") == 0 || strcmp(name, "model-mr") == 0) {
    return write_model(path, name + 6) == 0 ? 0 : 99;
  } else if (strcmp(name, "model-version-99") == 0) {
    if (write_model(path, "ct") != 0)
      return 99;
    set_int_attr(path, "format_version", 99);
  } else if (strcmp(name, "model-wrong-shape") == 0) {
    hsize_t dims[4] = {8, 8, 5, 5};
    if (write_model(path, "ct") != 0)
      return 99;
    replace_weight(path, 4, dims, 0.01f);
  } else if (strcmp(name, "model-wrong-rank") == 0) {
    hsize_t dims[2] = {8, 72};
    if (write_model(path, "ct") != 0)
      return 99;
    replace_weight(path, 2, dims, 0.01f);
  } else if (strcmp(name, "model-nan-weight") == 0) {
    hsize_t dims[4] = {8, 8, 3, 3};
    if (write_model(path, "ct") != 0)
      return 99;
    replace_weight(path, 4, dims, NAN);
  } else {
    return -1;
  }
  return 0;
}

/* h5-unrelated needs an existing file for replace_string. */
static void make_unrelated(const char *path) {
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  H5Fclose(f);
  replace_string(path, "/hello", "world");
}

static const char *make_in(const char *name) {
  static char path[1200];
  in_path(path, sizeof path, name);
  strcat(path, ".h5");
  if (strcmp(name, "h5-unrelated") == 0)
    make_unrelated(path);
  else if (make_input(name, path) != 0) {
    fprintf(stderr, "cannot make input %s: %s\n", name, clara_last_error());
    exit(99);
  }
  return path;
}

/* ---- Full disk -----------------------------------------------------------
 * Runs fn in a child whose file size limit is 'bytes' (RLIMIT_FSIZE), with
 * SIGXFSZ ignored so that write() fails with EFBIG; the child sends back its
 * status and message through a pipe. */
typedef clara_status (*writer_fn)(const char *path);

static char full_disk_msg[1024]; /* the child's clara_last_error() */

static clara_status in_full_disk(writer_fn fn, const char *path,
                                 rlim_t bytes) {
  int fd[2], wst;
  pid_t pid;
  char msg[1024] = {0};
  int st = 99;
  ssize_t n;
  if (pipe(fd) != 0)
    exit(99);
  fflush(NULL);
  pid = fork();
  if (pid < 0)
    exit(99);
  if (pid == 0) {
    struct rlimit rl = {bytes, bytes};
    clara_status s;
    close(fd[0]);
    signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
      _exit(98);
    s = fn(path);
    snprintf(msg, sizeof msg, "%s", clara_last_error());
    if (write(fd[1], &s, sizeof s) != (ssize_t)sizeof s ||
        write(fd[1], msg, strlen(msg) + 1) < 0)
      _exit(97);
    /* exit(), not _exit(): HDF5's atexit handler must survive the failed
     * write too (a process that hit a full disk must still end cleanly). */
    exit(0);
  }
  close(fd[1]);
  if (read(fd[0], &st, sizeof st) != (ssize_t)sizeof st)
    st = 99;
  n = read(fd[0], msg, sizeof msg - 1);
  msg[n > 0 ? n : 0] = '\0';
  close(fd[0]);
  waitpid(pid, &wst, 0);
  if (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0) {
    snprintf(full_disk_msg, sizeof full_disk_msg,
             "the writing process %s %d after the call returned %s (%.700s)",
             WIFSIGNALED(wst) ? "was killed by signal" : "exited with",
             WIFSIGNALED(wst) ? WTERMSIG(wst) : WEXITSTATUS(wst),
             clara_status_name(st), msg);
    return (clara_status)99;
  }
  /* The child's message, for the runner (no public setter exists). */
  snprintf(full_disk_msg, sizeof full_disk_msg, "%s", msg);
  return (clara_status)st;
}

static clara_status write_big_ct(const char *path) {
  clara_ct_geometry g;
  clara_volume v;
  float *p, *big;
  clara_status st;
  small_ct(&g, &v);
  g.rows = 64; /* 64 x 64 x 48 floats = 768 KiB */
  p = zeros(64 * 64 * 48);
  big = p;
  st = clara_ct_file_write(path, &g, p, NULL, NULL);
  free(big);
  return st;
}

static clara_status write_big_image(const char *path) {
  clara_volume v = {128, 128, 16, {1, 1, 1}, {0, 0, 0}};
  float *img = zeros(128 * 128 * 16);
  clara_status st = clara_image_file_write(path, &v, img, "HU");
  free(img);
  return st;
}

static clara_status write_big_mr(const char *path) {
  clara_mr_geometry g = small_mr();
  float *k;
  clara_status st;
  g.coils = 16;
  g.nx = g.ny = g.recon_nx = 64;
  g.ky_last = g.kx_last = 63;
  k = zeros(2 * 16 * 64 * 64);
  st = clara_mr_file_write_ismrmrd(path, &g, k, NULL, 0);
  free(k);
  return st;
}

/* ---- Cancellation ---------------------------------------------------------
 * The progress callback cancels at its first call ("first"), at the first
 * fraction >= 0.5 ("middle") or at the first fraction >= 0.9 after at least
 * one earlier call ("last": the final chunk). */
typedef struct cancel_at {
  int mode; /* 0 first, 1 middle, 2 last */
  int calls;
} cancel_at;

static int cancel_cb(const char *stage, double fraction, void *user) {
  cancel_at *c = user;
  (void)stage;
  c->calls++;
  switch (c->mode) {
  case 0:
    return 1;
  case 1:
    return fraction >= 0.5;
  default:
    return fraction >= 0.9 && c->calls > 1;
  }
}

static clara_context *cancel_ctx(cancel_at *c, int mode) {
  clara_context_options o;
  clara_context *ctx = NULL;
  c->mode = mode;
  c->calls = 0;
  clara_context_options_init(&o);
  o.backend = CLARA_BACKEND_CPU;
  /* One thread: only the calling thread reports progress (after each
   * chunk it finishes), so with more the fractions seen would vary. */
  o.threads = 1;
  o.progress = cancel_cb;
  o.progress_user = c;
  if (clara_context_create(&o, &ctx) != CLARA_OK)
    exit(99);
  return ctx;
}

static clara_status cancel_fbp(int mode) {
  cancel_at c;
  clara_context *ctx = cancel_ctx(&c, mode);
  clara_ct_geometry g;
  clara_volume v;
  clara_fbp_plan *plan = NULL;
  float *p, *img;
  clara_status st;
  small_ct(&g, &v);
  g.rows = 16; /* 16 independent slices: 16 chunks to report */
  v.nz = 16;
  p = zeros(64 * 16 * 48);
  img = zeros(32 * 32 * 16);
  st = clara_fbp_plan_create(ctx, &g, &v, NULL, &plan);
  if (st == CLARA_OK)
    st = clara_fbp_execute(plan, p, img);
  clara_fbp_plan_destroy(plan);
  clara_context_destroy(ctx);
  free(p);
  free(img);
  return st;
}

static clara_status cancel_mr(int mode) {
  cancel_at c;
  clara_context *ctx = cancel_ctx(&c, mode);
  clara_mr_geometry g = small_mr();
  clara_mr_plan *plan = NULL;
  float *k, *img;
  clara_status st;
  g.slices = 8;
  k = zeros(2 * 8 * 4 * 32 * 32);
  img = zeros(8 * 32 * 32);
  st = clara_mr_plan_create(ctx, &g, NULL, &plan);
  if (st == CLARA_OK)
    st = clara_mr_execute(plan, k, img);
  clara_mr_plan_destroy(plan);
  clara_context_destroy(ctx);
  free(k);
  free(img);
  return st;
}

static clara_status cancel_denoise(int mode) {
  cancel_at c;
  clara_context *ctx = cancel_ctx(&c, mode);
  clara_denoiser *d = NULL;
  float *img;
  clara_status st;
  const char *model = make_in("model-ct");
  img = zeros(8 * 64 * 64);
  st = clara_denoiser_load(ctx, model, &d);
  if (st == CLARA_OK)
    st = clara_denoise(d, img, img, 64, 64, 8);
  clara_denoiser_destroy(d);
  clara_context_destroy(ctx);
  free(img);
  return st;
}

/* ---- The cases -------------------------------------------------------------
 * Each returns the status of the call under test; the message is read by
 * the runner from clara_last_error() (or full_disk_msg). */
typedef clara_status (*case_fn)(void);

static int msg_from_child;

static clara_status c_ctx_out_null(void) {
  return clara_context_create(NULL, NULL);
}
static clara_status c_ctx_threads_negative(void) {
  clara_context_options o;
  clara_context *ctx;
  clara_context_options_init(&o);
  o.threads = -3;
  return clara_context_create(&o, &ctx);
}
static clara_status c_ctx_backend_unknown(void) {
  clara_context_options o;
  clara_context *ctx;
  clara_context_options_init(&o);
  o.backend = (clara_backend)7;
  return clara_context_create(&o, &ctx);
}

/* FBP plan creation with one thing changed by 'tweak'. */
static clara_status fbp_with(void (*tweak)(clara_ct_geometry *,
                                           clara_volume *,
                                           clara_fbp_options *),
                             size_t limit) {
  clara_context *ctx = cpu_ctx(limit);
  clara_ct_geometry g;
  clara_volume v;
  clara_fbp_options o;
  clara_fbp_plan *plan = NULL;
  clara_status st;
  small_ct(&g, &v);
  clara_fbp_options_init(&o);
  if (tweak)
    tweak(&g, &v, &o);
  st = clara_fbp_plan_create(ctx, &g, &v, &o, &plan);
  if (st != CLARA_OK && plan)
    st = (clara_status)99; /* *out must be NULL on failure */
  clara_fbp_plan_destroy(plan);
  clara_context_destroy(ctx);
  return st;
}
static void t_geom_null(clara_ct_geometry *g, clara_volume *v,
                        clara_fbp_options *o) {
  (void)v, (void)o;
  g->angles = NULL;
}
static void t_views_zero(clara_ct_geometry *g, clara_volume *v,
                         clara_fbp_options *o) {
  (void)v, (void)o;
  g->views = 0;
}
static void t_cols_negative(clara_ct_geometry *g, clara_volume *v,
                            clara_fbp_options *o) {
  (void)v, (void)o;
  g->cols = -48;
}
static void t_nx_zero(clara_ct_geometry *g, clara_volume *v,
                      clara_fbp_options *o) {
  (void)g, (void)o;
  v->nx = 0;
}
static void t_det_overflow(clara_ct_geometry *g, clara_volume *v,
                           clara_fbp_options *o) {
  (void)v, (void)o;
  g->views = g->rows = g->cols = 1 << 30;
}
static float nan_angles[64], inf_angles[64];
static void t_angle_nan(clara_ct_geometry *g, clara_volume *v,
                        clara_fbp_options *o) {
  (void)v, (void)o;
  memcpy(nan_angles, g->angles, sizeof nan_angles);
  nan_angles[17] = NAN;
  g->angles = nan_angles;
}
static void t_angle_inf(clara_ct_geometry *g, clara_volume *v,
                        clara_fbp_options *o) {
  (void)v, (void)o;
  memcpy(inf_angles, g->angles, sizeof inf_angles);
  inf_angles[3] = INFINITY;
  g->angles = inf_angles;
}
static void t_spacing_nan(clara_ct_geometry *g, clara_volume *v,
                          clara_fbp_options *o) {
  (void)v, (void)o;
  g->det_spacing[1] = NAN;
}
static void t_voxel_inf(clara_ct_geometry *g, clara_volume *v,
                        clara_fbp_options *o) {
  (void)g, (void)o;
  v->voxel[0] = INFINITY;
}
static void t_cutoff_nan(clara_ct_geometry *g, clara_volume *v,
                         clara_fbp_options *o) {
  (void)g, (void)v;
  o->cutoff = NAN;
}
static void t_huge_volume(clara_ct_geometry *g, clara_volume *v,
                          clara_fbp_options *o) {
  g->kind = CLARA_GEOM_CONE; /* a cone beam takes any nz */
  g->rows = 64;
  g->source_to_iso = 500;
  g->source_to_detector = 1000;
  v->nx = v->ny = v->nz = 100000; /* 3.6 PiB of float32 */
  v->voxel[0] = v->voxel[1] = v->voxel[2] = 0.001; /* 100 mm across */
  o->flags |= CLARA_FBP_ALLOW_TRUNCATION;
}
static void t_big_volume(clara_ct_geometry *g, clara_volume *v,
                         clara_fbp_options *o) {
  (void)g, (void)o;
  v->nx = v->ny = 256;
  v->nz = 1;
  v->voxel[0] = v->voxel[1] = 40.0 / 256;
}

static clara_status c_fbp_angles_null(void) { return fbp_with(t_geom_null, 0); }
static clara_status c_fbp_views_zero(void) { return fbp_with(t_views_zero, 0); }
static clara_status c_fbp_cols_negative(void) {
  return fbp_with(t_cols_negative, 0);
}
static clara_status c_fbp_volume_nx_zero(void) {
  return fbp_with(t_nx_zero, 0);
}
static clara_status c_fbp_size_overflow(void) {
  return fbp_with(t_det_overflow, 0);
}
static clara_status c_fbp_angle_nan(void) { return fbp_with(t_angle_nan, 0); }
static clara_status c_fbp_angle_inf(void) { return fbp_with(t_angle_inf, 0); }
static clara_status c_fbp_spacing_nan(void) {
  return fbp_with(t_spacing_nan, 0);
}
static clara_status c_fbp_voxel_inf(void) { return fbp_with(t_voxel_inf, 0); }
static clara_status c_fbp_cutoff_nan(void) { return fbp_with(t_cutoff_nan, 0); }
static clara_status c_mem_fbp_huge_volume(void) {
  return fbp_with(t_huge_volume, 0);
}
static clara_status c_mem_fbp_small_limit(void) {
  return fbp_with(t_big_volume, 64 * 1024);
}
static clara_status c_mem_fbp_roomy_limit(void) {
  return fbp_with(t_big_volume, (size_t)1 << 30);
}
static clara_status c_fbp_ctx_null(void) {
  clara_ct_geometry g;
  clara_volume v;
  clara_fbp_plan *plan;
  small_ct(&g, &v);
  return clara_fbp_plan_create(NULL, &g, &v, NULL, &plan);
}
static clara_status c_fbp_execute_null(void) {
  clara_context *ctx = cpu_ctx(0);
  clara_ct_geometry g;
  clara_volume v;
  clara_fbp_plan *plan = NULL;
  float img[32 * 32];
  clara_status st;
  small_ct(&g, &v);
  st = clara_fbp_plan_create(ctx, &g, &v, NULL, &plan);
  if (st == CLARA_OK)
    st = clara_fbp_execute(plan, NULL, img);
  clara_fbp_plan_destroy(plan);
  clara_context_destroy(ctx);
  return st;
}
static clara_status c_mem_projector_small_limit(void) {
  clara_context *ctx = cpu_ctx(8 * 1024);
  clara_ct_geometry g;
  clara_volume v;
  clara_projector *p = NULL;
  clara_status st;
  small_ct(&g, &v);
  st = clara_projector_create(ctx, &g, &v, &p);
  clara_projector_destroy(p);
  clara_context_destroy(ctx);
  return st;
}

static clara_status mr_with(clara_mr_geometry g, const float *cov,
                            size_t limit) {
  clara_context *ctx = cpu_ctx(limit);
  clara_mr_options o;
  clara_mr_plan *plan = NULL;
  clara_status st;
  clara_mr_options_init(&o);
  o.noise_covariance = cov;
  st = clara_mr_plan_create(ctx, &g, &o, &plan);
  clara_mr_plan_destroy(plan);
  clara_context_destroy(ctx);
  return st;
}
static clara_status c_mr_nx_zero(void) {
  clara_mr_geometry g = small_mr();
  g.nx = 0;
  return mr_with(g, NULL, 0);
}
static clara_status c_mr_coils_negative(void) {
  clara_mr_geometry g = small_mr();
  g.coils = -1;
  return mr_with(g, NULL, 0);
}
static clara_status c_mr_size_overflow(void) {
  clara_mr_geometry g = small_mr();
  g.coils = g.nx = g.ny = g.nz = g.slices = 65536;
  g.recon_nx = 65536;
  g.ky_last = g.kx_last = 65535;
  return mr_with(g, NULL, 0);
}
static clara_status c_mr_covariance_nan(void) {
  clara_mr_geometry g = small_mr();
  float cov[2 * 16] = {0};
  for (int i = 0; i < 4; i++)
    cov[2 * (i * 4 + i)] = 1;
  cov[2 * 5] = NAN;
  return mr_with(g, cov, 0);
}
static clara_status c_mem_mr_small_limit(void) {
  return mr_with(small_mr(), NULL, 32 * 1024);
}
static clara_status c_mem_mr_roomy_limit(void) {
  return mr_with(small_mr(), NULL, (size_t)1 << 30);
}

static clara_status denoise_with(const char *model, int nx, int ny, int ns,
                                 float bad, size_t limit) {
  clara_context *ctx = cpu_ctx(limit);
  clara_denoiser *d = NULL;
  size_t n = (size_t)64 * 64 * 2;
  float *img = zeros(n);
  clara_status st;
  if (!isnan(bad) || bad != 0)
    img[100] = bad;
  st = clara_denoiser_load(ctx, make_in(model), &d);
  if (st == CLARA_OK)
    st = clara_denoise(d, img, img, nx, ny, ns);
  clara_denoiser_destroy(d);
  clara_context_destroy(ctx);
  free(img);
  return st;
}
static clara_status c_denoise_nan(void) {
  return denoise_with("model-ct", 64, 64, 2, NAN, 0);
}
static clara_status c_denoise_inf(void) {
  return denoise_with("model-ct", 64, 64, 2, -INFINITY, 0);
}
static clara_status c_denoise_zero_slices(void) {
  return denoise_with("model-ct", 64, 64, 0, 0, 0);
}
static clara_status c_denoise_negative_nx(void) {
  return denoise_with("model-ct", -64, 64, 1, 0, 0);
}
static clara_status c_denoise_size_overflow(void) {
  return denoise_with("model-ct", 1 << 30, 1 << 30, 1 << 30, 0, 0);
}
static clara_status c_denoise_too_small(void) {
  return denoise_with("model-ct", 6, 64, 1, 0, 0);
}
static clara_status c_mem_denoise_small_limit(void) {
  /* The model fits (about 12 KiB), the 2 x 64 x 64 call does not. */
  return denoise_with("model-ct", 64, 64, 2, 0, 40 * 1024);
}
static clara_status c_mem_model_small_limit(void) {
  return denoise_with("model-ct", 64, 64, 2, 0, 1024);
}
static clara_status c_denoise_null(void) {
  float img[64] = {0};
  return clara_denoise(NULL, img, img, 8, 8, 1);
}
static clara_status c_dicom_ready_zero(void) {
  float hu[1] = {0};
  int16_t s[1];
  clara_dicom_scaling sc;
  return clara_dicom_ready_ct(hu, 0, s, &sc);
}
static clara_status c_dicom_ready_nan(void) {
  float hu[4] = {0, 1, NAN, 3};
  int16_t s[4];
  clara_dicom_scaling sc;
  return clara_dicom_ready_ct(hu, 4, s, &sc);
}

/* Files. */
static clara_status read_ct(const char *path) {
  clara_ct_geometry g;
  float *a = NULL, *p = NULL;
  clara_status st = clara_ct_file_read(path, &g, &a, &p);
  if (st != CLARA_OK && (a || p))
    st = (clara_status)99;
  clara_free(a);
  clara_free(p);
  return st;
}
static clara_status c_ct_read_null_path(void) {
  clara_ct_geometry g;
  float *a, *p;
  return clara_ct_file_read(NULL, &g, &a, &p);
}
static clara_status c_ct_read_missing(void) {
  char path[1200];
  in_path(path, sizeof path, "does-not-exist.h5");
  return read_ct(path);
}
static clara_status c_ct_read_empty(void) { return read_ct(make_in("empty")); }
static clara_status c_ct_read_text(void) { return read_ct(make_in("text")); }
static clara_status c_ct_read_truncated(void) {
  return read_ct(make_in("ct-truncated"));
}
static clara_status c_ct_read_int_projections(void) {
  return read_ct(make_in("ct-int-projections"));
}
static clara_status c_ct_read_rank2(void) {
  return read_ct(make_in("ct-rank2"));
}
static clara_status c_ct_read_angle_count(void) {
  return read_ct(make_in("ct-angle-count"));
}
static clara_status c_ct_read_nan_angle(void) {
  return read_ct(make_in("ct-nan-angle"));
}
static clara_status c_ct_read_mr_file(void) { return read_ct(make_in("mr")); }
static clara_status c_image_read_ct_file(void) {
  clara_volume v;
  float *img = NULL;
  clara_status st =
      clara_image_file_read(make_in("ct"), "/image", &v, &img, NULL, 0);
  clara_free(img);
  return st;
}
static clara_status mr_open(const char *path) {
  clara_mr_file *f = NULL;
  clara_status st = clara_mr_file_open(path, &f);
  if (st != CLARA_OK && f)
    st = (clara_status)99;
  clara_mr_file_close(f);
  return st;
}
static clara_status c_mr_open_bad_xml(void) {
  return mr_open(make_in("mr-bad-xml"));
}
static clara_status c_mr_open_truncated(void) {
  return mr_open(make_in("mr-truncated"));
}
static clara_status c_mr_open_unrelated(void) {
  return mr_open(make_in("h5-unrelated"));
}
static clara_status c_mr_open_ct_file(void) { return mr_open(make_in("ct")); }
static clara_status load_model(const char *name) {
  clara_context *ctx = cpu_ctx(0);
  clara_denoiser *d = NULL;
  clara_status st = clara_denoiser_load(ctx, make_in(name), &d);
  if (st != CLARA_OK && d)
    st = (clara_status)99;
  clara_denoiser_destroy(d);
  clara_context_destroy(ctx);
  return st;
}
static clara_status c_model_version_99(void) {
  return load_model("model-version-99");
}
static clara_status c_model_wrong_shape(void) {
  return load_model("model-wrong-shape");
}
static clara_status c_model_wrong_rank(void) {
  return load_model("model-wrong-rank");
}
static clara_status c_model_nan_weight(void) {
  return load_model("model-nan-weight");
}
static clara_status c_model_not_hdf5(void) { return load_model("text"); }
static clara_status c_model_mr_on_fbp(void) {
  clara_context *ctx = cpu_ctx(0);
  clara_ct_geometry g;
  clara_volume v;
  clara_fbp_options o;
  clara_fbp_plan *plan = NULL;
  clara_denoiser *d = NULL;
  clara_status st;
  small_ct(&g, &v);
  clara_fbp_options_init(&o);
  o.mu_water = 0.0192;
  st = clara_fbp_plan_create(ctx, &g, &v, &o, &plan);
  if (st == CLARA_OK)
    st = clara_denoiser_load(ctx, make_in("model-mr"), &d);
  if (st == CLARA_OK)
    st = clara_fbp_plan_set_denoiser(plan, d);
  clara_denoiser_destroy(d);
  clara_fbp_plan_destroy(plan);
  clara_context_destroy(ctx);
  return st;
}
static clara_status c_model_ct_on_mr(void) {
  clara_context *ctx = cpu_ctx(0);
  clara_mr_geometry g = small_mr();
  clara_mr_plan *plan = NULL;
  clara_denoiser *d = NULL;
  clara_status st = clara_mr_plan_create(ctx, &g, NULL, &plan);
  if (st == CLARA_OK)
    st = clara_denoiser_load(ctx, make_in("model-ct"), &d);
  if (st == CLARA_OK)
    st = clara_mr_plan_set_denoiser(plan, d);
  clara_denoiser_destroy(d);
  clara_mr_plan_destroy(plan);
  clara_context_destroy(ctx);
  return st;
}
static clara_status c_ct_write_no_dir(void) {
  char path[1200];
  out_path(path, sizeof path, "missing-dir/x.h5");
  return write_big_ct(path);
}
static clara_status c_ct_write_unwritable(void) {
  /* Not even root may create files in /proc. */
  return write_big_ct("/proc/clara-bad-inputs.h5");
}
static clara_status c_image_write_units_null(void) {
  char path[1200];
  clara_volume v = {8, 8, 1, {1, 1, 1}, {0, 0, 0}};
  float img[64] = {0};
  out_path(path, sizeof path, "img.h5");
  return clara_image_file_write(path, &v, img, NULL);
}
static clara_status c_image_write_nz_negative(void) {
  char path[1200];
  clara_volume v = {8, 8, -1, {1, 1, 1}, {0, 0, 0}};
  float img[64] = {0};
  out_path(path, sizeof path, "img.h5");
  return clara_image_file_write(path, &v, img, "HU");
}
static clara_status c_ct_write_full_disk(void) {
  char path[1200];
  out_path(path, sizeof path, "full.h5");
  msg_from_child = 1;
  return in_full_disk(write_big_ct, path, 64 * 1024);
}
static clara_status c_image_write_full_disk(void) {
  char path[1200];
  out_path(path, sizeof path, "full.h5");
  msg_from_child = 1;
  return in_full_disk(write_big_image, path, 64 * 1024);
}
static clara_status c_mr_write_full_disk(void) {
  char path[1200];
  out_path(path, sizeof path, "full.h5");
  msg_from_child = 1;
  return in_full_disk(write_big_mr, path, 64 * 1024);
}
static clara_status c_mr_write_ranges(void) {
  char path[1200];
  clara_mr_geometry g = small_mr();
  float k[2 * 4 * 32 * 32];
  g.ky_last = 40; /* beyond ny */
  out_path(path, sizeof path, "mr.h5");
  return clara_mr_file_write_ismrmrd(path, &g, k, NULL, 0);
}

static clara_status c_cancel_fbp_first(void) { return cancel_fbp(0); }
static clara_status c_cancel_fbp_middle(void) { return cancel_fbp(1); }
static clara_status c_cancel_fbp_last(void) { return cancel_fbp(2); }
static clara_status c_cancel_mr_first(void) { return cancel_mr(0); }
static clara_status c_cancel_mr_middle(void) { return cancel_mr(1); }
static clara_status c_cancel_mr_last(void) { return cancel_mr(2); }
static clara_status c_cancel_denoise_first(void) { return cancel_denoise(0); }
static clara_status c_cancel_denoise_middle(void) { return cancel_denoise(1); }
static clara_status c_cancel_denoise_last(void) { return cancel_denoise(2); }

#define CASE(name) {#name, c_##name}
static const struct {
  const char *name;
  case_fn fn;
} makers[] = {
    CASE(ctx_out_null), CASE(ctx_threads_negative), CASE(ctx_backend_unknown),
    CASE(fbp_ctx_null), CASE(fbp_angles_null), CASE(fbp_views_zero),
    CASE(fbp_cols_negative), CASE(fbp_volume_nx_zero),
    CASE(fbp_size_overflow), CASE(fbp_angle_nan), CASE(fbp_angle_inf),
    CASE(fbp_spacing_nan), CASE(fbp_voxel_inf), CASE(fbp_cutoff_nan),
    CASE(fbp_execute_null), CASE(mem_fbp_huge_volume),
    CASE(mem_fbp_small_limit), CASE(mem_fbp_roomy_limit),
    CASE(mem_projector_small_limit), CASE(mr_nx_zero),
    CASE(mr_coils_negative), CASE(mr_size_overflow), CASE(mr_covariance_nan),
    CASE(mem_mr_small_limit), CASE(mem_mr_roomy_limit), CASE(denoise_nan),
    CASE(denoise_inf), CASE(denoise_zero_slices), CASE(denoise_negative_nx),
    CASE(denoise_size_overflow), CASE(denoise_too_small), CASE(denoise_null),
    CASE(mem_denoise_small_limit), CASE(mem_model_small_limit),
    CASE(dicom_ready_zero), CASE(dicom_ready_nan), CASE(ct_read_null_path),
    CASE(ct_read_missing), CASE(ct_read_empty), CASE(ct_read_text),
    CASE(ct_read_truncated), CASE(ct_read_int_projections),
    CASE(ct_read_rank2), CASE(ct_read_angle_count), CASE(ct_read_nan_angle),
    CASE(ct_read_mr_file), CASE(image_read_ct_file), CASE(mr_open_bad_xml),
    CASE(mr_open_truncated), CASE(mr_open_unrelated), CASE(mr_open_ct_file),
    CASE(model_version_99), CASE(model_wrong_shape), CASE(model_wrong_rank),
    CASE(model_nan_weight), CASE(model_not_hdf5), CASE(model_mr_on_fbp),
    CASE(model_ct_on_mr), CASE(ct_write_no_dir), CASE(ct_write_unwritable),
    CASE(image_write_units_null), CASE(image_write_nz_negative),
    CASE(ct_write_full_disk), CASE(image_write_full_disk),
    CASE(mr_write_full_disk), CASE(mr_write_ranges), CASE(cancel_fbp_first),
    CASE(cancel_fbp_middle), CASE(cancel_fbp_last), CASE(cancel_mr_first),
    CASE(cancel_mr_middle), CASE(cancel_mr_last), CASE(cancel_denoise_first),
    CASE(cancel_denoise_middle), CASE(cancel_denoise_last),
};

/* ---- The runner ----------------------------------------------------------- */

static char *trim(char *s) {
  char *e;
  while (*s == ' ' || *s == '\t')
    s++;
  e = s + strlen(s);
  while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' ||
                   e[-1] == '\r'))
    *--e = '\0';
  return s;
}

/* Splits 'line' at '|' into at most max fields; returns their count. */
static int split(char *line, char **f, int max) {
  int n = 0;
  char *s = line;
  while (n < max) {
    char *bar = strchr(s, '|');
    if (bar)
      *bar = '\0';
    f[n++] = trim(s);
    if (!bar)
      break;
    s = bar + 1;
  }
  return n;
}

/* Empties and removes a directory tree (one level of subdirectories). */
static void remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char p[1200];
  if (!d)
    return;
  while ((e = readdir(d))) {
    struct stat st;
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
      remove_tree(p);
    else
      unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

/* The entries left in 'dir' (names, comma-separated, in 'left'). */
static int leftovers(const char *dir, char *left, size_t len) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int n = 0;
  left[0] = '\0';
  if (!d)
    return 0;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    if (n++)
      strncat(left, ", ", len - strlen(left) - 1);
    strncat(left, e->d_name, len - strlen(left) - 1);
  }
  closedir(d);
  return n;
}

static int status_of(const char *name, int *out) {
  for (int s = 0; s >= -20; s--)
    if (strcmp(name, clara_status_name(s)) == 0) {
      *out = s;
      return 0;
    }
  return -1;
}

int main(int argc, char **argv) {
  char default_cases[1024], line[2048], root[512];
  const char *cases, *tmp = getenv("TMPDIR");
  const char *srcdir = getenv("top_srcdir");
  FILE *f;
  char *text = NULL;
  const char *cursor;
  int passed = 0, failed = 0, lineno = 0;
  size_t used_count = 0;
  int used[sizeof makers / sizeof makers[0]] = {0};

  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  if (argc == 4 && strcmp(argv[1], "--make") == 0) {
    int rc;
    if (strcmp(argv[2], "h5-unrelated") == 0) {
      make_unrelated(argv[3]);
      return 0;
    }
    rc = make_input(argv[2], argv[3]);
    if (rc < 0)
      fprintf(stderr, "test_bad_inputs: unknown input '%s'\n", argv[2]);
    return rc < 0 ? 2 : rc;
  }
  snprintf(default_cases, sizeof default_cases,
           "%s/tests/bad_inputs/cases.txt", srcdir ? srcdir : ".");
  cases = argc > 1 ? argv[1] : default_cases;
  f = fopen(cases, "r");
  if (!f) {
    printf("FAIL: cannot open %s: %s\n", cases, strerror(errno));
    return 1;
  }
  /* The whole list is read before any case runs: the cases fork, and a
   * child's exit() would move the shared file offset of an open stream. */
  {
    size_t cap = 1 << 16, len = 0, got;
    text = malloc(cap);
    while (text && (got = fread(text + len, 1, cap - len - 1, f)) > 0) {
      len += got;
      if (len + 1 == cap) {
        char *bigger = realloc(text, cap *= 2);
        if (!bigger) {
          free(text);
          text = NULL;
        }
        text = bigger;
      }
    }
    fclose(f);
    if (!text) {
      printf("FAIL: cannot read %s\n", cases);
      return 1;
    }
    text[len] = '\0';
    cursor = text;
  }
  snprintf(root, sizeof root, "%s/clara-bad-inputs.XXXXXX",
           tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 99;
  }
  while (*cursor) {
    {
      const char *eol = strchr(cursor, '\n');
      size_t n_line = eol ? (size_t)(eol - cursor) : strlen(cursor);
      if (n_line >= sizeof line)
        n_line = sizeof line - 1;
      memcpy(line, cursor, n_line);
      line[n_line] = '\0';
      cursor = eol ? eol + 1 : cursor + strlen(cursor);
    }
    char *fld[6], *s = trim(line), left[1024], msg[1024];
    int n, want, got;
    size_t k;
    lineno++;
    if (!*s || *s == '#')
      continue;
    n = split(s, fld, 6);
    if (n < 5) {
      printf("FAIL: %s:%d: expected id | surface | maker | status | "
             "fragment\n",
             cases, lineno);
      failed++;
      continue;
    }
    if (strcmp(fld[1], "api") != 0 && strcmp(fld[1], "file") != 0)
      continue; /* cli: tests/test_bad_inputs.sh */
    for (k = 0; k < sizeof makers / sizeof makers[0]; k++)
      if (strcmp(makers[k].name, fld[2]) == 0)
        break;
    if (k == sizeof makers / sizeof makers[0]) {
      printf("FAIL %s: no maker '%s' in test_bad_inputs.c\n", fld[0], fld[2]);
      failed++;
      continue;
    }
    if (status_of(fld[3], &want) != 0) {
      printf("FAIL %s: unknown status '%s'\n", fld[0], fld[3]);
      failed++;
      continue;
    }
    if (!used[k]++)
      used_count++;
    snprintf(in_dir, sizeof in_dir, "%s/%s-in", root, fld[0]);
    snprintf(out_dir, sizeof out_dir, "%s/%s-out", root, fld[0]);
    if (mkdir(in_dir, 0700) != 0 || mkdir(out_dir, 0700) != 0) {
      perror(in_dir);
      return 99;
    }
    clara_clear_error();
    msg_from_child = 0;
    full_disk_msg[0] = '\0';
    got = makers[k].fn();
    snprintf(msg, sizeof msg, "%s",
             msg_from_child ? full_disk_msg : clara_last_error());
    for (char *c = msg; *c; c++) /* HDF5's messages may span lines */
      if (*c == '\n')
        *c = ' ';
    if (got != want) {
      printf("FAIL %s: status %s (%d), expected %s; message: %s\n", fld[0],
             got == 99 ? "99 (setup, or *out set on failure)"
                       : clara_status_name(got),
             got, fld[3], msg);
      failed++;
    } else if (strcmp(fld[4], "-") != 0 && !strstr(msg, fld[4])) {
      printf("FAIL %s: message lacks '%s': %s\n", fld[0], fld[4], msg);
      failed++;
    } else if (leftovers(out_dir, left, sizeof left) > 0) {
      printf("FAIL %s: left in the output directory: %s\n", fld[0], left);
      failed++;
    } else {
      printf("PASS %s: %s \"%s\"\n", fld[0], fld[3], msg);
      passed++;
    }
    remove_tree(in_dir);
    remove_tree(out_dir);
  }
  free(text);
  remove_tree(root);
  for (size_t k = 0; k < sizeof makers / sizeof makers[0]; k++)
    if (!used[k]) {
      printf("FAIL: maker %s is listed in no case of %s\n", makers[k].name,
             cases);
      failed++;
    }
  printf("%d passed, %d failed (api and file cases of %s)\n", passed, failed,
         cases);
  return failed ? 1 : 0;
}
