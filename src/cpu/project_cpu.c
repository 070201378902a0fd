/* project_cpu.c -- the Joseph projector and its exact transpose on the CPU.
 *
 * Joseph (1982): a ray is sampled once per voxel plane of the axis it
 * crosses fastest (x or y; cone angles stay below 45 degrees so z never
 * is); at each plane the image is interpolated linearly in the other
 * in-plane axis (and in z for cone beams), and the samples are summed times
 * the step length along the ray. The transpose scatters the same weights, so
 * <A x, y> = <x, A^T y> up to rounding. For parallel and fan data with
 * several rows, row r projects slice r. */
#include "cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct ray {
  double s[3]; /* a point of the ray */
  double d[3]; /* unit direction */
} ray;

static void make_ray(const clara_proj_setup *ps, int v, int r, int c, ray *ry) {
  double cs = ps->cos_t[v], sn = ps->sin_t[v];
  double u = ps->u0 + c * ps->du, vv = ps->v0 + r * ps->dv, n;
  memset(ry, 0, sizeof *ry);
  switch (ps->kind) {
  case CLARA_GEOM_PARALLEL:
    ry->s[0] = u * cs;
    ry->s[1] = u * sn;
    ry->d[0] = -sn;
    ry->d[1] = cs;
    break;
  case CLARA_GEOM_FAN_ARC:
    ry->s[0] = ps->rs * sn;
    ry->s[1] = -ps->rs * cs;
    ry->d[0] = -cos(u) * sn + sin(u) * cs;
    ry->d[1] = cos(u) * cs + sin(u) * sn;
    break;
  case CLARA_GEOM_FAN_FLAT:
  case CLARA_GEOM_CONE:
    ry->s[0] = ps->rs * sn;
    ry->s[1] = -ps->rs * cs;
    ry->d[0] = -ps->rd * sn + u * cs;
    ry->d[1] = ps->rd * cs + u * sn;
    ry->d[2] = ps->kind == CLARA_GEOM_CONE ? vv : 0.0;
    break;
  }
  n = sqrt(ry->d[0] * ry->d[0] + ry->d[1] * ry->d[1] + ry->d[2] * ry->d[2]);
  for (int k = 0; k < 3; k++)
    ry->d[k] /= n;
}

/* Narrows [*lo, *hi] to the plane indices i where f = a*i + b lies in
 * (-1, n), the range where an interpolation tap can be inside. */
static void clip(double a, double b, int n, double *lo, double *hi) {
  if (a == 0) {
    if (!(b > -1 && b < n))
      *hi = *lo - 1;
    return;
  }
  {
    double i1 = (-1 - b) / a, i2 = (n - b) / a;
    if (i1 > i2) {
      double t = i1;
      i1 = i2;
      i2 = t;
    }
    if (i1 > *lo)
      *lo = i1;
    if (i2 < *hi)
      *hi = i2;
  }
}

/* Walks one ray. With 'in' set, returns the line integral of 'in'; with
 * 'out' set, adds val * weight into 'out' (the transpose). 'slice' >= 0
 * pins 2D rays to one slice; -1 walks a 3D (cone) ray. */
static double walk(const clara_volume *vol, const ray *ry, int slice,
                   const float *in, float *out, double val) {
  int px = fabs(ry->d[0]) >= fabs(ry->d[1]); /* primary axis is x? */
  int p = px ? 0 : 1, q = px ? 1 : 0;
  int np = px ? vol->nx : vol->ny, nq = px ? vol->ny : vol->nx;
  long sp = px ? 1 : vol->nx, sq = px ? vol->nx : 1;
  long sz = (long)vol->nx * vol->ny;
  double vp = vol->voxel[p], vq = vol->voxel[q], vz = vol->voxel[2];
  double p0 = clara_voxel_coord(0, np, vp, vol->center[p]);
  double q0 = clara_voxel_coord(0, nq, vq, vol->center[q]);
  double z0 = clara_voxel_coord(0, vol->nz, vz, vol->center[2]);
  double dp = ry->d[p];
  double step = vp / fabs(dp);
  /* t(i) = (p0 + i vp - s_p) / dp; fq(i) = (s_q + t d_q - q0) / vq */
  double tq_a = vp / dp, tq_b = (p0 - ry->s[p]) / dp;
  double aq = tq_a * ry->d[q] / vq, bq = (ry->s[q] + tq_b * ry->d[q] - q0) / vq;
  double az = 0, bz = 0, lo = 0, hi = np - 1, acc = 0;
  const int three_d = slice < 0;
  if (three_d) {
    az = tq_a * ry->d[2] / vz;
    bz = (ry->s[2] + tq_b * ry->d[2] - z0) / vz;
  }
  clip(aq, bq, nq, &lo, &hi);
  if (three_d)
    clip(az, bz, vol->nz, &lo, &hi);
  if (hi < lo)
    return 0;
  {
    int i0 = (int)ceil(lo - 1e-9), i1 = (int)floor(hi + 1e-9);
    if (i0 < 0)
      i0 = 0;
    if (i1 > np - 1)
      i1 = np - 1;
    for (int i = i0; i <= i1; i++) {
      double fq = aq * i + bq;
      int jq = (int)floor(fq);
      double wq1 = fq - jq, wq0 = 1 - wq1;
      double wz0 = 1, wz1 = 0;
      int jz = slice;
      if (three_d) {
        double fz = az * i + bz;
        jz = (int)floor(fz);
        wz1 = fz - jz;
        wz0 = 1 - wz1;
      }
      for (int a = 0; a < 2; a++) {
        int zz = jz + a;
        double wz = a ? wz1 : wz0;
        if (zz < 0 || zz >= vol->nz || wz == 0)
          continue;
        for (int b = 0; b < 2; b++) {
          int qq = jq + b;
          double w = wz * (b ? wq1 : wq0);
          long idx;
          if (qq < 0 || qq >= nq || w == 0)
            continue;
          idx = zz * sz + qq * sq + i * sp;
          if (in)
            acc += w * in[idx];
          else
            out[idx] += (float)(val * w * step);
        }
      }
    }
  }
  return acc * step;
}

typedef struct pjob {
  const clara_proj_setup *ps;
  const float *in;
  float *out;
  float **bufs; /* private accumulators of the transpose */
  int nbuf;
} pjob;

static clara_status fwd_task(void *arg, size_t index, int worker) {
  pjob *j = arg;
  const clara_proj_setup *ps = j->ps;
  int v = (int)index;
  (void)worker;
  for (int r = 0; r < ps->rows; r++) {
    float *dst = j->out + ((size_t)v * ps->rows + r) * ps->cols;
    int slice = ps->kind == CLARA_GEOM_CONE ? -1 : r;
    for (int c = 0; c < ps->cols; c++) {
      ray ry;
      make_ray(ps, v, r, c, &ry);
      dst[c] = (float)walk(&ps->vol, &ry, slice, j->in, NULL, 0);
    }
  }
  return CLARA_OK;
}

clara_status clara_cpu_project(const clara_context *ctx,
                               const clara_proj_setup *ps, const float *image,
                               float *projections) {
  pjob j = {ps, image, projections, NULL, 0};
  clara_progress pr;
  clara_progress_for(ctx, "project", 0, 1, &pr);
  return clara_parallel_for(ctx->threads, (size_t)ps->views, fwd_task, &j, &pr);
}

/* Transpose of one detector row over all views (2D data: row r owns slice
 * r, so rows run in parallel without sharing). */
static clara_status adj_row_task(void *arg, size_t index, int worker) {
  pjob *j = arg;
  const clara_proj_setup *ps = j->ps;
  int r = (int)index;
  (void)worker;
  for (int v = 0; v < ps->views; v++) {
    const float *src = j->in + ((size_t)v * ps->rows + r) * ps->cols;
    for (int c = 0; c < ps->cols; c++) {
      ray ry;
      if (src[c] == 0)
        continue;
      make_ray(ps, v, r, c, &ry);
      walk(&ps->vol, &ry, r, NULL, j->out, src[c]);
    }
  }
  return CLARA_OK;
}

/* Transpose of a contiguous share of the views into private buffer
 * 'index'. */
static clara_status adj_views_task(void *arg, size_t index, int worker) {
  pjob *j = arg;
  const clara_proj_setup *ps = j->ps;
  int b = (int)index;
  int v0 = (int)((long)ps->views * b / j->nbuf);
  int v1 = (int)((long)ps->views * (b + 1) / j->nbuf);
  float *acc = j->bufs[b];
  (void)worker;
  for (int v = v0; v < v1; v++)
    for (int r = 0; r < ps->rows; r++) {
      const float *src = j->in + ((size_t)v * ps->rows + r) * ps->cols;
      int slice = ps->kind == CLARA_GEOM_CONE ? -1 : r;
      for (int c = 0; c < ps->cols; c++) {
        ray ry;
        if (src[c] == 0)
          continue;
        make_ray(ps, v, r, c, &ry);
        walk(&ps->vol, &ry, slice, NULL, acc, src[c]);
      }
    }
  return CLARA_OK;
}

static clara_status sum_task(void *arg, size_t index, int worker) {
  pjob *j = arg;
  const clara_volume *vol = &j->ps->vol;
  size_t n = (size_t)vol->nx * vol->ny, off = index * n;
  (void)worker;
  for (size_t k = 0; k < n; k++) {
    float s = 0;
    for (int b = 0; b < j->nbuf; b++)
      s += j->bufs[b][off + k];
    j->out[off + k] = s;
  }
  return CLARA_OK;
}

clara_status clara_cpu_backproject(const clara_context *ctx,
                                   const clara_proj_setup *ps,
                                   const float *projections, float *image) {
  const clara_volume *vol = &ps->vol;
  size_t nvox = (size_t)vol->nx * vol->ny * vol->nz;
  pjob j = {ps, projections, image, NULL, 0};
  clara_status st;
  if (ps->kind != CLARA_GEOM_CONE && ps->rows >= ctx->threads) {
    memset(image, 0, nvox * sizeof(float));
    return clara_parallel_for(ctx->threads, (size_t)ps->rows, adj_row_task, &j,
                              NULL);
  }
  /* Private accumulators, as many as threads allow within 1 GiB. */
  {
    size_t cap = ((size_t)1 << 30) / (nvox * sizeof(float));
    j.nbuf = ctx->threads;
    if ((size_t)j.nbuf > cap)
      j.nbuf = cap > 0 ? (int)cap : 1;
    if (j.nbuf > ps->views)
      j.nbuf = ps->views;
  }
  j.bufs = calloc((size_t)j.nbuf, sizeof *j.bufs);
  if (!j.bufs)
    return clara_fail(CLARA_ERR_OUT_OF_MEMORY, "clara_backproject: buffers");
  for (int b = 0; b < j.nbuf; b++) {
    j.bufs[b] = clara_xcalloc(nvox, sizeof(float), "clara_backproject");
    if (!j.bufs[b]) {
      st = CLARA_ERR_OUT_OF_MEMORY;
      goto done;
    }
  }
  st = clara_parallel_for(ctx->threads, (size_t)j.nbuf, adj_views_task, &j,
                          NULL);
  if (st == CLARA_OK)
    st = clara_parallel_for(ctx->threads, (size_t)vol->nz, sum_task, &j, NULL);
done:
  for (int b = 0; b < j.nbuf; b++)
    clara_aligned_free(j.bufs[b]);
  free(j.bufs);
  return st;
}
