/* fbp_cpu.c -- FBP/FDK on the CPU: FFTW filtering and voxel-driven
 * back-projection on threads.
 *
 * Execution streams the views in groups sized to stay in cache: a group is
 * pre-weighted and ramp-filtered (FFTW, new-array execute on per-worker
 * buffers), then every worker back-projects the group into its own rows of
 * the image. Each voxel is only ever touched by one worker per group and
 * sums the views in their order, so results do not depend on the number of
 * threads or on scheduling. */
#include "cpu.h"
#include "kernels.h"
#include "mr_cpu.h"

#include <fftw3.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LINE_BATCH 8 /* lines per FFTW call */
#define ZBLOCK 16    /* cone: slices per back-projection task */
#define XTILE 64     /* cone: voxels along x per inner sweep */

typedef struct cpu_fbp {
  fftwf_plan r2c, c2r;
  int nfft, nspec; /* nfft real in, nfft/2+1 complex out */
  int w;           /* padded line width: cols + 1 + CLARA_LINE_TAIL */
  int h;           /* rows per view: rows, plus 3 zero rows for cone */
  int r0;          /* row of the first data line in a view (1 for cone) */
  int group;       /* views per group */
  /* cone with AVX-512: views are also stored column-major (column c + 1 at
   * c_pad * ht, rows padded like lines) for the z-vectorised kernel */
  int cone_z16;
  int ht; /* column height: 1 + rows + CLARA_LINE_TAIL, rounded to 16 */
  /* 2D row kernels, chosen for this CPU at plan time */
  void (*bp_parallel)(float *restrict, const float *restrict, int, float, float,
                      float);
  void (*bp_fan_flat)(float *restrict, const float *restrict, int, float, float,
                      float, float, float, float, float, float);
  void (*bp_fan_arc)(float *restrict, const float *restrict, int, float, float,
                     float, float, float, float, float, float);
} cpu_fbp;

static pthread_once_t fftw_once = PTHREAD_ONCE_INIT;
static void fftw_init(void) { fftwf_make_planner_thread_safe(); }

static clara_status cpu_fbp_create(const clara_context *ctx,
                                   const clara_fbp_setup *s, void **state) {
  cpu_fbp *f;
  float *in = NULL;
  fftwf_complex *out = NULL;
  size_t view_floats;
  (void)ctx;
  pthread_once(&fftw_once, fftw_init);
  *state = NULL;
  f = calloc(1, sizeof *f);
  if (!f)
    return clara_fail(CLARA_ERR_OUT_OF_MEMORY, "clara_fbp_plan_create: cpu "
                                               "state");
  f->nfft = s->nfft;
  f->nspec = s->nfft / 2 + 1;
  f->w = s->cols + 1 + CLARA_LINE_TAIL;
  f->r0 = s->kind == CLARA_GEOM_CONE ? 1 : 0;
  f->h = s->kind == CLARA_GEOM_CONE ? s->rows + 3 : s->rows;
  f->bp_parallel = kern_bp_row_parallel;
  f->bp_fan_flat = kern_bp_row_fan_flat;
  f->bp_fan_arc = kern_bp_row_fan_arc;
#if CLARA_HAVE_AVX512_KERNELS
  /* CLARA_RECON_CPU_KERNELS=portable keeps the portable kernels (tests
   * run both). */
  {
    const char *k = getenv("CLARA_RECON_CPU_KERNELS");
    if (__builtin_cpu_supports("avx512f") &&
        !(k && strcmp(k, "portable") == 0)) {
      f->bp_parallel = kern_bp_row_parallel_avx512;
      f->bp_fan_flat = kern_bp_row_fan_flat_avx512;
      f->bp_fan_arc = kern_bp_row_fan_arc_avx512;
      f->cone_z16 = s->kind == CLARA_GEOM_CONE;
    }
  }
#endif
  if ((double)f->w * (double)f->h >= (double)INT_MAX) {
    free(f);
    return clara_fail(CLARA_ERR_UNSUPPORTED,
                      "clara_fbp_plan_create: a view of %d x %d cells is too "
                      "large for the CPU back-projector (2^31 cells)",
                      s->rows, s->cols);
  }
  f->ht = (1 + s->rows + CLARA_LINE_TAIL + 15) / 16 * 16;
  if (f->cone_z16 && (double)(s->cols + 3) * f->ht >= (double)INT_MAX)
    f->cone_z16 = 0;
  view_floats = f->cone_z16 ? (size_t)(s->cols + 3) * (size_t)f->ht
                            : (size_t)f->w * (size_t)f->h;
  /* About 8 MiB of filtered views per group: they stay in the last-level
   * cache while every worker sweeps them. */
  f->group = (int)((8u << 20) / (view_floats * sizeof(float)));
  if (f->group < 1)
    f->group = 1;
  if (f->group > s->views)
    f->group = s->views;

  in = fftwf_malloc(sizeof(float) * (size_t)f->nfft * LINE_BATCH);
  out = fftwf_malloc(sizeof(fftwf_complex) * (size_t)f->nspec * LINE_BATCH);
  if (!in || !out) {
    fftwf_free(in);
    fftwf_free(out);
    free(f);
    return clara_fail(CLARA_ERR_OUT_OF_MEMORY,
                      "clara_fbp_plan_create: FFT planning buffers");
  }
  {
    int n[1] = {f->nfft};
    f->r2c = fftwf_plan_many_dft_r2c(1, n, LINE_BATCH, in, NULL, 1, f->nfft,
                                     out, NULL, 1, f->nspec, FFTW_ESTIMATE);
    f->c2r = fftwf_plan_many_dft_c2r(1, n, LINE_BATCH, out, NULL, 1, f->nspec,
                                     in, NULL, 1, f->nfft, FFTW_ESTIMATE);
  }
  fftwf_free(in);
  fftwf_free(out);
  if (!f->r2c || !f->c2r) {
    if (f->r2c)
      fftwf_destroy_plan(f->r2c);
    if (f->c2r)
      fftwf_destroy_plan(f->c2r);
    free(f);
    return clara_fail(CLARA_ERR_UNSUPPORTED,
                      "clara_fbp_plan_create: FFTW could not plan a length-%d "
                      "transform",
                      s->nfft);
  }
  *state = f;
  return CLARA_OK;
}

static void cpu_fbp_destroy(void *state) {
  cpu_fbp *f = state;
  if (!f)
    return;
  fftwf_destroy_plan(f->r2c);
  fftwf_destroy_plan(f->c2r);
  free(f);
}

/* ---- Execution ----------------------------------------------------------- */

typedef struct job {
  const clara_fbp_setup *s;
  const cpu_fbp *f;
  const float *proj;
  float *image;
  float *filtered; /* group * h * w */
  int v0, nv;      /* current group */
  /* per-worker FFT buffers and cone scratch */
  float **in;
  fftwf_complex **spec;
  float **scratch;
  int **iscratch;
} job;

/* Filters LINE_BATCH lines (view, row) of the current group. */
static clara_status filter_task(void *arg, size_t index, int worker) {
  job *j = arg;
  const clara_fbp_setup *s = j->s;
  const cpu_fbp *f = j->f;
  int rows = s->rows, cols = s->cols;
  size_t nlines = (size_t)j->nv * (size_t)rows;
  size_t first = index * LINE_BATCH;
  float *in = j->in[worker];
  fftwf_complex *spec = j->spec[worker];
  int n = (int)(nlines - first < LINE_BATCH ? nlines - first : LINE_BATCH);

  memset(in, 0, sizeof(float) * (size_t)f->nfft * LINE_BATCH);
  for (int b = 0; b < n; b++) {
    size_t line = first + (size_t)b;
    int gv = (int)(line / (size_t)rows), r = (int)(line % (size_t)rows);
    int v = j->v0 + gv;
    const float *src = j->proj + ((size_t)v * rows + r) * cols;
    const float *vw = s->view_weight + (size_t)v * cols;
    const float *dw = s->det_weight ? s->det_weight + (size_t)r * cols : NULL;
    float *dst = in + (size_t)b * f->nfft;
    if (dw)
      for (int c = 0; c < cols; c++)
        dst[c] = src[c] * vw[c] * dw[c];
    else
      for (int c = 0; c < cols; c++)
        dst[c] = src[c] * vw[c];
  }
  fftwf_execute_dft_r2c(f->r2c, in, spec);
  for (int b = 0; b < n; b++) {
    fftwf_complex *sp = spec + (size_t)b * f->nspec;
    for (int k = 0; k < f->nspec; k++) {
      sp[k][0] *= s->filter[k];
      sp[k][1] *= s->filter[k];
    }
  }
  fftwf_execute_dft_c2r(f->c2r, spec, in);
  for (int b = 0; b < n; b++) {
    size_t line = first + (size_t)b;
    int gv = (int)(line / (size_t)rows), r = (int)(line % (size_t)rows);
    const float *src = in + (size_t)b * f->nfft;
    if (f->cone_z16) {
      float *dst = j->filtered + (size_t)gv * (size_t)(cols + 3) * f->ht +
                   (size_t)f->ht + (size_t)r + 1;
      for (int c = 0; c < cols; c++)
        dst[(size_t)c * f->ht] = src[c];
    } else {
      float *dst =
          j->filtered + ((size_t)gv * f->h + (size_t)(r + f->r0)) * f->w;
      memcpy(dst + 1, src, sizeof(float) * (size_t)cols);
    }
  }
  return CLARA_OK;
}

/* Back-projects the group into image row iy of slice iz (2D geometries). */
static clara_status bp2d_task(void *arg, size_t index, int worker) {
  job *j = arg;
  const clara_fbp_setup *s = j->s;
  const cpu_fbp *f = j->f;
  const clara_volume *vol = &s->vol;
  int iz = (int)(index / (size_t)vol->ny), iy = (int)(index % (size_t)vol->ny);
  float *out = j->image + ((size_t)iz * vol->ny + iy) * vol->nx;
  double x0 = clara_voxel_coord(0, vol->nx, vol->voxel[0], vol->center[0]);
  double y = clara_voxel_coord(iy, vol->ny, vol->voxel[1], vol->center[1]);
  double vx = vol->voxel[0];
  float cmax = (float)(s->cols + 1);
  (void)worker;
  for (int gv = 0; gv < j->nv; gv++) {
    int v = j->v0 + gv;
    double c = s->cos_t[v], sn = s->sin_t[v];
    const float *line = j->filtered + ((size_t)gv * f->h + (size_t)iz) * f->w;
    /* t = x cos + y sin along the row; L = R_s - x sin + y cos */
    double at = vx * c, bt = x0 * c + y * sn;
    if (s->kind == CLARA_GEOM_PARALLEL) {
      /* padded column = (t - u0)/du + 1 */
      f->bp_parallel(out, line, vol->nx, (float)(at / s->du),
                     (float)((bt - s->u0) / s->du + 1.0), cmax);
    } else {
      double al = -vx * sn, bl = s->rs - x0 * sn + y * c;
      if (s->kind == CLARA_GEOM_FAN_FLAT)
        f->bp_fan_flat(out, line, vol->nx, (float)at, (float)bt, (float)al,
                       (float)bl, (float)(s->rd / s->du),
                       (float)(1.0 - s->u0 / s->du), (float)(s->rs * s->rs),
                       cmax);
      else
        f->bp_fan_arc(out, line, vol->nx, (float)at, (float)bt, (float)al,
                      (float)bl, (float)(1.0 / s->du),
                      (float)(1.0 - s->u0 / s->du), (float)(s->rs * s->rs),
                      cmax);
    }
  }
  return CLARA_OK;
}

/* Back-projects the group into row iy of a block of ZBLOCK slices (cone). */
static clara_status bp3d_task(void *arg, size_t index, int worker) {
  job *j = arg;
  const clara_fbp_setup *s = j->s;
  const cpu_fbp *f = j->f;
  const clara_volume *vol = &s->vol;
  /* y runs fastest, so consecutive tasks reuse the same band of detector
   * rows of the group's views from cache */
  int iy = (int)(index % (size_t)vol->ny);
  int zb = (int)(index / (size_t)vol->ny);
  int iz0 = zb * ZBLOCK;
  int nzb = vol->nz - iz0 < ZBLOCK ? vol->nz - iz0 : ZBLOCK;
  size_t slice = (size_t)vol->nx * vol->ny;
  float *out = j->image + (size_t)iz0 * slice + (size_t)iy * vol->nx;
  double x0 = clara_voxel_coord(0, vol->nx, vol->voxel[0], vol->center[0]);
  double y = clara_voxel_coord(iy, vol->ny, vol->voxel[1], vol->center[1]);
  double z0 = clara_voxel_coord(iz0, vol->nz, vol->voxel[2], vol->center[2]);
  double vx = vol->voxel[0];
  float cmax = (float)(s->cols + 1), rmax = (float)(s->rows + 1);
#if CLARA_HAVE_AVX512_KERNELS
  if (f->cone_z16) {
    /* acc[ix][16]: the tile's slices, summed over the group, then added to
     * the image once */
    float *acc = j->scratch[worker];
    size_t view_floats = (size_t)(s->cols + 3) * f->ht;
    for (int ix0 = 0; ix0 < vol->nx; ix0 += XTILE) {
      int nxt = vol->nx - ix0 < XTILE ? vol->nx - ix0 : XTILE;
      double xt = x0 + ix0 * vx;
      memset(acc, 0, sizeof(float) * 16 * (size_t)nxt);
      for (int gv = 0; gv < j->nv; gv++) {
        int v = j->v0 + gv;
        double c = s->cos_t[v], sn = s->sin_t[v];
        kern_bp_cone_z16_avx512(
            acc, j->filtered + (size_t)gv * view_floats, f->ht, nxt,
            (float)(vx * c), (float)(xt * c + y * sn), (float)(-vx * sn),
            (float)(s->rs - xt * sn + y * c), (float)(s->rd / s->du),
            (float)(1.0 - s->u0 / s->du), (float)(s->rd / s->dv),
            (float)(1.0 - s->v0 / s->dv), (float)z0, (float)vol->voxel[2],
            (float)(s->rs * s->rs), cmax, rmax);
      }
      for (int iz = 0; iz < nzb; iz++)
        for (int ix = 0; ix < nxt; ix++)
          out[(size_t)iz * slice + (size_t)(ix0 + ix)] += acc[16 * ix + iz];
    }
    return CLARA_OK;
  }
#endif
  /* Tiles of XTILE voxels along x keep each view's footprint (a band of
   * rows times the tile's columns) in L1 across the slices of the block. */
  for (int ix0 = 0; ix0 < vol->nx; ix0 += XTILE) {
    int nxt = vol->nx - ix0 < XTILE ? vol->nx - ix0 : XTILE;
    double xt = x0 + ix0 * vx;
    for (int gv = 0; gv < j->nv; gv++) {
      int v = j->v0 + gv;
      double c = s->cos_t[v], sn = s->sin_t[v];
      const float *view = j->filtered + (size_t)gv * f->h * f->w;
      double at = vx * c, bt = xt * c + y * sn;
      double al = -vx * sn, bl = s->rs - xt * sn + y * c;
      kern_bp_rows_cone(out + ix0, (long)slice, nzb, view, f->w, nxt, (float)at,
                        (float)bt, (float)al, (float)bl, (float)(s->rd / s->du),
                        (float)(1.0 - s->u0 / s->du), (float)(s->rd / s->dv),
                        (float)(1.0 - s->v0 / s->dv), (float)z0,
                        (float)vol->voxel[2], (float)(s->rs * s->rs), cmax,
                        rmax, j->iscratch[worker], j->scratch[worker]);
    }
  }
  return CLARA_OK;
}

/* Scale, offset (HU) and the field-of-view mask, one slice row at a time. */
static clara_status finish_task(void *arg, size_t index, int worker) {
  job *j = arg;
  const clara_fbp_setup *s = j->s;
  const clara_volume *vol = &s->vol;
  int iy = (int)(index % (size_t)vol->ny);
  float *out = j->image + index * (size_t)vol->nx;
  double y = clara_voxel_coord(iy, vol->ny, vol->voxel[1], vol->center[1]);
  float scale = (float)s->out_scale, offset = (float)s->out_offset;
  double r2 = s->fov_radius * s->fov_radius;
  (void)worker;
  for (int ix = 0; ix < vol->nx; ix++) {
    double x = clara_voxel_coord(ix, vol->nx, vol->voxel[0], vol->center[0]);
    if (s->fov_radius >= 0 && x * x + y * y > r2)
      out[ix] = offset;
    else
      out[ix] = out[ix] * scale + offset;
  }
  return CLARA_OK;
}

static clara_status zero_task(void *arg, size_t index, int worker) {
  job *j = arg;
  size_t slice = (size_t)j->s->vol.nx * j->s->vol.ny;
  (void)worker;
  memset(j->image + index * slice, 0, slice * sizeof(float));
  return CLARA_OK;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static clara_status cpu_fbp_execute(const clara_context *ctx,
                                    const clara_fbp_setup *s, const void *state,
                                    const float *proj, float *image,
                                    clara_fbp_timing *timing) {
  double t0 = timing ? now_ms() : 0;
  const cpu_fbp *f = state;
  const clara_volume *vol = &s->vol;
  int nt = ctx->threads;
  job j;
  clara_status st = CLARA_OK;
  int ngroups = (s->views + f->group - 1) / f->group;
  size_t scratch_floats =
      3 * (size_t)vol->nx > 16 * XTILE ? 3 * (size_t)vol->nx : 16 * XTILE;
  static const char who[] = "clara_fbp_execute";

  memset(&j, 0, sizeof j);
  j.s = s;
  j.f = f;
  j.proj = proj;
  j.image = image;
  j.filtered = f->cone_z16
                   ? clara_xcalloc((size_t)f->group * (size_t)(s->cols + 3),
                                   (size_t)f->ht * sizeof(float), who)
                   : clara_xcalloc((size_t)f->group * f->h,
                                   (size_t)f->w * sizeof(float), who);
  j.in = calloc((size_t)nt, sizeof *j.in);
  j.spec = calloc((size_t)nt, sizeof *j.spec);
  j.scratch = calloc((size_t)nt, sizeof *j.scratch);
  j.iscratch = calloc((size_t)nt, sizeof *j.iscratch);
  if (!j.filtered || !j.in || !j.spec || !j.scratch || !j.iscratch) {
    st = clara_fail(CLARA_ERR_OUT_OF_MEMORY, "%s: scratch buffers", who);
    goto done;
  }
  for (int t = 0; t < nt; t++) {
    j.in[t] = fftwf_malloc(sizeof(float) * (size_t)f->nfft * LINE_BATCH);
    j.spec[t] =
        fftwf_malloc(sizeof(fftwf_complex) * (size_t)f->nspec * LINE_BATCH);
    j.scratch[t] = clara_aligned_alloc(scratch_floats * sizeof(float));
    j.iscratch[t] = clara_aligned_alloc((size_t)vol->nx * sizeof(int));
    if (!j.in[t] || !j.spec[t] || !j.scratch[t] || !j.iscratch[t]) {
      st = clara_fail(CLARA_ERR_OUT_OF_MEMORY, "%s: per-thread buffers", who);
      goto done;
    }
  }

  st = clara_parallel_for(nt, (size_t)vol->nz, zero_task, &j, NULL);
  if (st != CLARA_OK)
    goto done;
  for (int g = 0; g < ngroups; g++) {
    clara_progress pr;
    size_t nlines, ntasks;
    j.v0 = g * f->group;
    j.nv = s->views - j.v0 < f->group ? s->views - j.v0 : f->group;
    nlines = (size_t)j.nv * (size_t)s->rows;
    st = clara_parallel_for(nt, (nlines + LINE_BATCH - 1) / LINE_BATCH,
                            filter_task, &j, NULL);
    if (st != CLARA_OK)
      goto done;
    clara_progress_for(ctx, "filter+backproject", (double)g / ngroups,
                       1.0 / ngroups, &pr);
    if (s->kind == CLARA_GEOM_CONE) {
      ntasks = (size_t)vol->ny * (size_t)((vol->nz + ZBLOCK - 1) / ZBLOCK);
      st = clara_parallel_for(nt, ntasks, bp3d_task, &j, &pr);
    } else {
      ntasks = (size_t)vol->ny * (size_t)vol->nz;
      st = clara_parallel_for(nt, ntasks, bp2d_task, &j, &pr);
    }
    if (st != CLARA_OK)
      goto done;
  }
  st = clara_parallel_for(nt, (size_t)vol->nz * (size_t)vol->ny, finish_task,
                          &j, NULL);
  if (timing && st == CLARA_OK) {
    timing->total_ms = timing->backproject_ms = now_ms() - t0;
    timing->slabs = 1;
  }
done:
  if (j.in)
    for (int t = 0; t < nt; t++)
      fftwf_free(j.in[t]);
  if (j.spec)
    for (int t = 0; t < nt; t++)
      fftwf_free(j.spec[t]);
  if (j.scratch)
    for (int t = 0; t < nt; t++)
      clara_aligned_free(j.scratch[t]);
  if (j.iscratch)
    for (int t = 0; t < nt; t++)
      clara_aligned_free(j.iscratch[t]);
  free(j.iscratch);
  free(j.in);
  free(j.spec);
  free(j.scratch);
  clara_aligned_free(j.filtered);
  return st;
}

const clara_backend_ops clara_cpu_ops = {
    .name = "cpu",
    .fbp_create = cpu_fbp_create,
    .fbp_execute = cpu_fbp_execute,
    .fbp_destroy = cpu_fbp_destroy,
    .project = clara_cpu_project,
    .backproject = clara_cpu_backproject,
    .mr_create = clara_cpu_mr_create,
    .mr_execute = clara_cpu_mr_execute,
    .mr_destroy = clara_cpu_mr_destroy,
    .nn_create = clara_cpu_nn_create,
    .nn_execute = clara_cpu_nn_execute,
    .nn_destroy = clara_cpu_nn_destroy,
};
