/* phantom.c -- analytic ellipse/ellipsoid phantoms: rasterisation and exact
 * line integrals for every CT geometry.
 *
 * An ellipsoid with semi-axes (a, b, c), centre C and rotation phi about +z
 * holds the points p with |M (p - C)| <= 1, where
 *   M = diag(1/a, 1/b, 1/c) R(-phi)
 * maps it onto the unit sphere. A 2D phantom uses only the x and y rows of
 * M: its ellipses are elliptic cylinders without end along z. A line
 * o + t d meets the ellipsoid where |o' + t d'|^2 <= 1 with o' = M (o - C)
 * and d' = M d; with A = d'.d' and q the point of the primed line nearest
 * the origin, the chord in units of t is 2 sqrt((1 - |q|^2) / A).
 */
#include "internal.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* One ellipsoid, prepared for the two uses. */
typedef struct ellipsoid_prep {
  double density;
  double x0, y0, z0;
  double m00, m01, m10, m11; /* x and y rows of M */
  double ic;                 /* 1/c (3D only) */
  double rxy;                /* max(a, b): radius of a disc holding it in xy */
  double hy, hz;             /* half extents of its bounding box in y, z */
} ellipsoid_prep;

struct clara_phantom_s {
  int ndim;
  int count;
  ellipsoid_prep *e;
};

/* ------------------------------------------------------------------------ */
/* Shepp-Logan tables                                                        */
/* ------------------------------------------------------------------------ */
/*
 * Geometry of the ten ellipses: L. A. Shepp and B. F. Logan, "The Fourier
 * reconstruction of a head section", IEEE Trans. Nucl. Sci. NS-21 (1974)
 * 21-43. Densities: the higher-contrast "modified" values 1, -0.8, -0.2,
 * -0.2 and 0.1 (x6) of P. Toft, "The Radon Transform: Theory and
 * Implementation", PhD thesis, Technical University of Denmark (1996),
 * replacing the original 2, -0.98, -0.02, -0.02 and 0.01 (x6).
 * 3D: the ellipsoid extension of the same table. A. C. Kak and M. Slaney,
 * "Principles of Computerized Tomographic Imaging", IEEE Press (1988),
 * chapter 3, give a 3D head phantom of ellipsoids; the c and z0 values below
 * are the widely distributed "modified Shepp-Logan" 3D set, which keeps the
 * 2D x0, y0, a, b and phi unchanged. Kak and Slaney's printed table differs
 * in c and z0 (e.g. c = 0.9 and 0.88 for the two outer ellipsoids).
 * Units: lengths and centres as fractions of the phantom radius, phi in
 * degrees, counter-clockwise about +z.
 */
/* A, a, b, x0, y0, phi */
static const double shepp_logan_2d[10][6] = {
    {1.0, 0.69, 0.92, 0.0, 0.0, 0.0},
    {-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0},
    {-0.2, 0.11, 0.31, 0.22, 0.0, -18.0},
    {-0.2, 0.16, 0.41, -0.22, 0.0, 18.0},
    {0.1, 0.21, 0.25, 0.0, 0.35, 0.0},
    {0.1, 0.046, 0.046, 0.0, 0.1, 0.0},
    {0.1, 0.046, 0.046, 0.0, -0.1, 0.0},
    {0.1, 0.046, 0.023, -0.08, -0.605, 0.0},
    {0.1, 0.023, 0.023, 0.0, -0.606, 0.0},
    {0.1, 0.023, 0.046, 0.06, -0.605, 0.0},
};
/* A, a, b, c, x0, y0, z0, phi */
static const double shepp_logan_3d[10][8] = {
    {1.0, 0.69, 0.92, 0.81, 0.0, 0.0, 0.0, 0.0},
    {-0.8, 0.6624, 0.874, 0.78, 0.0, -0.0184, 0.0, 0.0},
    {-0.2, 0.11, 0.31, 0.22, 0.22, 0.0, 0.0, -18.0},
    {-0.2, 0.16, 0.41, 0.28, -0.22, 0.0, 0.0, 18.0},
    {0.1, 0.21, 0.25, 0.41, 0.0, 0.35, -0.15, 0.0},
    {0.1, 0.046, 0.046, 0.05, 0.0, 0.1, 0.25, 0.0},
    {0.1, 0.046, 0.046, 0.05, 0.0, -0.1, 0.25, 0.0},
    {0.1, 0.046, 0.023, 0.05, -0.08, -0.605, 0.0, 0.0},
    {0.1, 0.023, 0.023, 0.02, 0.0, -0.606, 0.0, 0.0},
    {0.1, 0.023, 0.046, 0.02, 0.06, -0.605, 0.0, 0.0},
};

/* ------------------------------------------------------------------------ */
/* Creation                                                                  */
/* ------------------------------------------------------------------------ */

static clara_status check_ellipsoid(const char *fn, int ndim,
                                    const clara_ellipsoid *e, int i) {
  const char *name[3] = {"a", "b", "c"};
  double axis[3] = {e->a, e->b, e->c};
  double centre[3] = {e->x0, e->y0, e->z0};
  const char *cname[3] = {"x0", "y0", "z0"};
  if (!isfinite(e->density))
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: e[%d].density: must be finite, got %g", fn, i,
                      e->density);
  for (int k = 0; k < ndim; k++) {
    if (!isfinite(axis[k]) || axis[k] <= 0)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: e[%d].%s: semi-axis must be finite and > 0, "
                        "got %g",
                        fn, i, name[k], axis[k]);
    if (!isfinite(centre[k]))
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "%s: e[%d].%s: must be finite, got %g", fn, i, cname[k],
                        centre[k]);
  }
  if (!isfinite(e->phi))
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: e[%d].phi: must be finite, got %g", fn, i, e->phi);
  return CLARA_OK;
}

static void prepare(int ndim, const clara_ellipsoid *e, ellipsoid_prep *p) {
  double cp = cos(e->phi), sp = sin(e->phi);
  p->density = e->density;
  p->x0 = e->x0;
  p->y0 = e->y0;
  p->z0 = ndim == 3 ? e->z0 : 0.0;
  /* M = diag(1/a, 1/b) R(-phi), R(-phi) = [cos sin; -sin cos] */
  p->m00 = cp / e->a;
  p->m01 = sp / e->a;
  p->m10 = -sp / e->b;
  p->m11 = cp / e->b;
  p->ic = ndim == 3 ? 1.0 / e->c : 0.0;
  p->rxy = e->a > e->b ? e->a : e->b;
  /* the bounding box of the rotated ellipse, widened by a hair so that
   * rounding never drops a sample on its edge (x needs none: rows are cut
   * exactly) */
  p->hy = sqrt(e->a * e->a * sp * sp + e->b * e->b * cp * cp) * (1 + 1e-12);
  p->hz = ndim == 3 ? e->c * (1 + 1e-12) : (double)INFINITY;
}

static clara_status build(const char *fn, int ndim, const clara_ellipsoid *e,
                          int count, clara_phantom **out) {
  clara_phantom *ph;
  clara_status st;
  for (int i = 0; i < count; i++)
    if ((st = check_ellipsoid(fn, ndim, &e[i], i)) != CLARA_OK)
      return st;
  ph = clara_xcalloc(1, sizeof *ph, fn);
  if (!ph)
    return CLARA_ERR_OUT_OF_MEMORY;
  ph->e = clara_xcalloc((size_t)count, sizeof *ph->e, fn);
  if (!ph->e) {
    clara_aligned_free(ph);
    return CLARA_ERR_OUT_OF_MEMORY;
  }
  ph->ndim = ndim;
  ph->count = count;
  for (int i = 0; i < count; i++)
    prepare(ndim, &e[i], &ph->e[i]);
  *out = ph;
  return CLARA_OK;
}

CLARA_API clara_status clara_phantom_shepp_logan(int ndim, double radius,
                                                 double scale,
                                                 clara_phantom **out) {
  static const char fn[] = "clara_phantom_shepp_logan";
  clara_ellipsoid e[10];
  if (!out)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: out: is NULL", fn);
  *out = NULL;
  if (ndim != 2 && ndim != 3)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: ndim: must be 2 or 3, got %d",
                      fn, ndim);
  if (!isfinite(radius) || radius <= 0)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: radius: must be finite and > 0, got %g", fn, radius);
  if (!isfinite(scale))
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: scale: must be finite, got %g", fn, scale);
  for (int i = 0; i < 10; i++) {
    memset(&e[i], 0, sizeof e[i]);
    if (ndim == 2) {
      const double *t = shepp_logan_2d[i];
      e[i].density = t[0] * scale;
      e[i].a = t[1] * radius;
      e[i].b = t[2] * radius;
      e[i].x0 = t[3] * radius;
      e[i].y0 = t[4] * radius;
      e[i].phi = t[5] * (M_PI / 180.0);
    } else {
      const double *t = shepp_logan_3d[i];
      e[i].density = t[0] * scale;
      e[i].a = t[1] * radius;
      e[i].b = t[2] * radius;
      e[i].c = t[3] * radius;
      e[i].x0 = t[4] * radius;
      e[i].y0 = t[5] * radius;
      e[i].z0 = t[6] * radius;
      e[i].phi = t[7] * (M_PI / 180.0);
    }
  }
  /* a radius so small that a semi-axis underflows to 0 is caught here */
  return build(fn, ndim, e, 10, out);
}

CLARA_API clara_status clara_phantom_create(int ndim, const clara_ellipsoid *e,
                                            int count, clara_phantom **out) {
  static const char fn[] = "clara_phantom_create";
  if (!out)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: out: is NULL", fn);
  *out = NULL;
  if (ndim != 2 && ndim != 3)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: ndim: must be 2 or 3, got %d",
                      fn, ndim);
  if (!e)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: e: is NULL", fn);
  if (count <= 0)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: count: must be > 0, got %d",
                      fn, count);
  return build(fn, ndim, e, count, out);
}

CLARA_API void clara_phantom_destroy(clara_phantom *ph) {
  if (!ph)
    return;
  clara_aligned_free(ph->e);
  clara_aligned_free(ph);
}

/* ------------------------------------------------------------------------ */
/* Rasterisation                                                             */
/* ------------------------------------------------------------------------ */
/*
 * A voxel's samples sit on the sub-grid (k + 1/2)/S of the voxel along each
 * axis, so along x the samples of a whole row are x_j = cx + vx ((j + 1/2)/S
 * - nx/2), j = 0 .. nx*S - 1 (voxel ix holds j = ix*S .. ix*S + S-1). For
 * one sub-row (fixed y, z) each ellipsoid covers the exact interval
 * [x1, x2] of x, hence a contiguous run of j: its two end voxels get their
 * partial counts directly, the voxels between get S samples each through a
 * difference array. A row then costs O(S^(ndim-1) * ellipsoids + nx)
 * instead of O(S^ndim * nx * ellipsoids).
 */

typedef struct raster_job {
  const clara_phantom *ph;
  const clara_volume *vol;
  int S;
  float *image;
  double *scratch; /* per worker: acc[nx], diff[nx] */
  int *lists;      /* per worker: count ellipsoid indices */
} raster_job;

/* sample coordinate k (0..S-1) inside voxel i */
static double sub_coord(int i, int k, int S, int n, double vox, double centre) {
  return clara_voxel_coord(i, n, vox, centre) + ((k + 0.5) / S - 0.5) * vox;
}

static clara_status raster_row(void *arg, size_t index, int worker) {
  const raster_job *job = arg;
  const clara_phantom *ph = job->ph;
  const clara_volume *vol = job->vol;
  const int nx = vol->nx, ny = vol->ny, S = job->S;
  const int iy = (int)(index % (size_t)ny), iz = (int)(index / (size_t)ny);
  const int nsz = ph->ndim == 3 ? S : 1;
  const int64_t nj = (int64_t)nx * S;
  double *acc = job->scratch + (size_t)worker * 2 * (size_t)nx;
  double *diff = acc + nx;
  int *list = job->lists + (size_t)worker * (size_t)ph->count;
  int nlist = 0;
  double yc = clara_voxel_coord(iy, ny, vol->voxel[1], vol->center[1]);
  double zc = clara_voxel_coord(iz, vol->nz, vol->voxel[2], vol->center[2]);
  double hvy = 0.5 * vol->voxel[1], hvz = 0.5 * vol->voxel[2];
  double norm = 1.0 / ((double)S * S * nsz);
  float *out = job->image + index * (size_t)nx;
  double run = 0;

  /* the ellipsoids whose bounding boxes reach this row */
  for (int e = 0; e < ph->count; e++) {
    const ellipsoid_prep *p = &ph->e[e];
    if (fabs(p->y0 - yc) > p->hy + hvy)
      continue;
    if (ph->ndim == 3 && fabs(p->z0 - zc) > p->hz + hvz)
      continue;
    list[nlist++] = e;
  }
  memset(acc, 0, sizeof *acc * (size_t)nx);
  memset(diff, 0, sizeof *diff * (size_t)nx);

  for (int kz = 0; kz < nsz && nlist > 0; kz++) {
    double z = ph->ndim == 3 ? sub_coord(iz, kz, S, vol->nz, vol->voxel[2],
                                         vol->center[2])
                             : 0.0;
    for (int ky = 0; ky < S; ky++) {
      double y = sub_coord(iy, ky, S, ny, vol->voxel[1], vol->center[1]);
      for (int l = 0; l < nlist; l++) {
        const ellipsoid_prep *p = &ph->e[list[l]];
        double dy = y - p->y0, dz = ph->ndim == 3 ? (z - p->z0) * p->ic : 0.0;
        /* the line (x0 + t, y, z): o' = M (0, dy, dz), d' = M (1, 0, 0) */
        double ox = p->m01 * dy, oy = p->m11 * dy;
        double A = p->m00 * p->m00 + p->m10 * p->m10;
        double k = (ox * p->m00 + oy * p->m10) / A;
        double qx = ox - k * p->m00, qy = oy - k * p->m10;
        double m2 = qx * qx + qy * qy + dz * dz, half, x1, x2, j1, j2;
        int64_t jlo, jhi, ilo, ihi;
        if (m2 > 1.0)
          continue;
        half = sqrt((1.0 - m2) / A);
        x1 = p->x0 - k - half;
        x2 = p->x0 - k + half;
        /* sample index as a real number: x_j = x  <=>  j = jr(x) */
        j1 = ((x1 - vol->center[0]) / vol->voxel[0] + 0.5 * nx) * S - 0.5;
        j2 = ((x2 - vol->center[0]) / vol->voxel[0] + 0.5 * nx) * S - 0.5;
        if (!(j2 >= 0) || !(j1 <= (double)(nj - 1)))
          continue;
        jlo = j1 <= 0 ? 0 : (int64_t)ceil(j1);
        jhi = j2 >= (double)(nj - 1) ? nj - 1 : (int64_t)floor(j2);
        if (jlo > jhi)
          continue;
        ilo = jlo / S;
        ihi = jhi / S;
        if (ilo == ihi) {
          acc[ilo] += p->density * (double)(jhi - jlo + 1);
        } else {
          acc[ilo] += p->density * (double)((ilo + 1) * S - jlo);
          acc[ihi] += p->density * (double)(jhi - ihi * S + 1);
          if (ihi > ilo + 1) {
            diff[ilo + 1] += p->density * S;
            diff[ihi] -= p->density * S;
          }
        }
      }
    }
  }
  for (int ix = 0; ix < nx; ix++) {
    run += diff[ix];
    out[ix] = (float)((acc[ix] + run) * norm);
  }
  return CLARA_OK;
}

CLARA_API clara_status clara_phantom_rasterize(const clara_phantom *ph,
                                               const clara_volume *vol,
                                               int supersample, float *image) {
  static const char fn[] = "clara_phantom_rasterize";
  static const char *const axis[3] = {"x", "y", "z"};
  size_t voxels, slice, rows, per_worker;
  int threads;
  raster_job job;
  clara_status st;

  if (!ph)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: ph: is NULL", fn);
  if (!vol)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: vol: is NULL", fn);
  if (!image)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: image: is NULL", fn);
  if (supersample < 1 || supersample > 64)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: supersample: must be in [1, 64], got %d", fn,
                      supersample);
  {
    const int n[3] = {vol->nx, vol->ny, vol->nz};
    for (int i = 0; i < 3; i++) {
      if (n[i] <= 0)
        return clara_fail(CLARA_ERR_INVALID_ARG,
                          "%s: vol->n%s: must be > 0, got %d", fn, axis[i],
                          n[i]);
    }
    for (int i = 0; i < 3; i++) {
      if (!isfinite(vol->voxel[i]) || vol->voxel[i] <= 0)
        return clara_fail(CLARA_ERR_INVALID_ARG,
                          "%s: vol->voxel[%d] (%s): must be finite and > 0, "
                          "got %g",
                          fn, i, axis[i], vol->voxel[i]);
      if (!isfinite(vol->center[i]))
        return clara_fail(CLARA_ERR_INVALID_ARG,
                          "%s: vol->center[%d] (%s): must be finite, got %g",
                          fn, i, axis[i], vol->center[i]);
    }
  }
  if (clara_size_mul3((size_t)vol->nx, (size_t)vol->ny, (size_t)vol->nz,
                      &voxels) != 0 ||
      voxels > SIZE_MAX / sizeof(float))
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: vol: %d x %d x %d voxels overflow the address "
                      "space",
                      fn, vol->nx, vol->ny, vol->nz);

  threads = clara_online_cpus();
  slice = (size_t)vol->nx * (size_t)vol->ny; /* <= voxels, no overflow */
  /* a 2D phantom is the same in every slice: rasterise slice 0, copy it */
  rows = ph->ndim == 2 ? (size_t)vol->ny : voxels / (size_t)vol->nx;
  if ((size_t)threads > rows)
    threads = (int)rows;
  if (clara_size_mul(2, (size_t)vol->nx, &per_worker) != 0)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: vol->nx: %d is too large", fn,
                      vol->nx);

  job.ph = ph;
  job.vol = vol;
  job.S = supersample;
  job.image = image;
  job.scratch = NULL;
  job.lists = NULL;
  if (clara_size_mul((size_t)threads, per_worker, &per_worker) != 0)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: vol->nx: %d is too large", fn,
                      vol->nx);
  job.scratch = clara_xcalloc(per_worker, sizeof(double), fn);
  if (!job.scratch)
    return CLARA_ERR_OUT_OF_MEMORY;
  job.lists =
      clara_xcalloc((size_t)threads * (size_t)ph->count, sizeof(int), fn);
  if (!job.lists) {
    clara_aligned_free(job.scratch);
    return CLARA_ERR_OUT_OF_MEMORY;
  }
  st = clara_parallel_for(threads, rows, raster_row, &job, NULL);
  clara_aligned_free(job.scratch);
  clara_aligned_free(job.lists);
  if (st != CLARA_OK)
    return st;
  if (ph->ndim == 2)
    for (int iz = 1; iz < vol->nz; iz++)
      memcpy(image + (size_t)iz * slice, image, slice * sizeof(float));
  return CLARA_OK;
}

/* ------------------------------------------------------------------------ */
/* Projection                                                                */
/* ------------------------------------------------------------------------ */

/* Length of the line o + t d (d a unit vector) inside one ellipsoid. */
static double chord(const ellipsoid_prep *p, int ndim, const double o[3],
                    const double d[3]) {
  double px = o[0] - p->x0, py = o[1] - p->y0;
  double ox = p->m00 * px + p->m01 * py, oy = p->m10 * px + p->m11 * py;
  double dx = p->m00 * d[0] + p->m01 * d[1], dy = p->m10 * d[0] + p->m11 * d[1];
  double oz = 0, dz = 0, A, k, qx, qy, qz, m2;
  if (ndim == 3) {
    oz = (o[2] - p->z0) * p->ic;
    dz = d[2] * p->ic;
  }
  A = dx * dx + dy * dy + dz * dz;
  if (!(A > 0))
    return 0; /* a 2D cylinder seen along its axis: no such ray here */
  k = (ox * dx + oy * dy + oz * dz) / A;
  qx = ox - k * dx;
  qy = oy - k * dy;
  qz = oz - k * dz;
  m2 = qx * qx + qy * qy + qz * qz;
  if (m2 >= 1.0)
    return 0;
  return 2.0 * sqrt((1.0 - m2) / A);
}

typedef struct project_job {
  const clara_phantom *ph;
  const clara_ct_geometry *g;
  float *proj;
  double *acc; /* per worker: cols */
  int *range;  /* per worker: count x {col lo, col hi, row lo, row hi} */
  int *list;   /* per worker: count */
} project_job;

static double det_u(const clara_ct_geometry *g, int c) {
  return (c - 0.5 * (g->cols - 1)) * g->det_spacing[1] + g->det_offset[1];
}

static double det_v(const clara_ct_geometry *g, int r) {
  return (r - 0.5 * (g->rows - 1)) * g->det_spacing[0] + g->det_offset[0];
}

/* [lo, hi] in detector coordinate x (spacing sp, offset off, n cells) to a
 * conservative index range, clamped to [0, n-1]; empty when lo > hi. */
static void index_range(double lo, double hi, double sp, double off, int n,
                        int *ilo, int *ihi) {
  double a = (lo - off) / sp + 0.5 * (n - 1) - 1.0;
  double b = (hi - off) / sp + 0.5 * (n - 1) + 1.0;
  if (!(a <= b) || b < 0 || a > n - 1) {
    *ilo = 1;
    *ihi = 0;
    return;
  }
  *ilo = a <= 0 ? 0 : (int)floor(a);
  *ihi = b >= n - 1 ? n - 1 : (int)ceil(b);
}

/* min and max of num/den over num in [n0, n1], den in [d0, d1], d0 > 0 */
static void ratio_range(double n0, double n1, double d0, double d1, double *lo,
                        double *hi) {
  double r[4] = {n0 / d0, n0 / d1, n1 / d0, n1 / d1};
  *lo = *hi = r[0];
  for (int i = 1; i < 4; i++) {
    if (r[i] < *lo)
      *lo = r[i];
    if (r[i] > *hi)
      *hi = r[i];
  }
}

/* Which detector cells of a view can see ellipsoid p: a box around it in
 * (s, w, z), s along the u axis and w the depth from the source along the
 * central ray, mapped to (u, v). Conservative; everything when unsure. */
static void cull(const clara_ct_geometry *g, int ndim, const ellipsoid_prep *p,
                 double ct, double st, int out[4]) {
  double sc = p->x0 * ct + p->y0 * st;
  double r = p->rxy, ulo, uhi;
  int divergent = g->kind != CLARA_GEOM_PARALLEL;
  double w0 = 0, w1 = 0;
  out[0] = 0;
  out[1] = g->cols - 1;
  out[2] = 0;
  out[3] = g->rows - 1;
  if (divergent) {
    double wc = g->source_to_iso - p->x0 * st + p->y0 * ct;
    w0 = wc - r;
    w1 = wc + r;
    if (!(w0 > 1e-9 * g->source_to_iso))
      return; /* it reaches the source's plane: no culling */
  }
  if (!divergent) {
    ulo = sc - r;
    uhi = sc + r;
  } else {
    ratio_range(sc - r, sc + r, w0, w1, &ulo, &uhi);
    if (g->kind == CLARA_GEOM_FAN_ARC) {
      ulo = atan(ulo);
      uhi = atan(uhi);
    } else {
      ulo *= g->source_to_detector;
      uhi *= g->source_to_detector;
    }
  }
  index_range(ulo, uhi, g->det_spacing[1], g->det_offset[1], g->cols, &out[0],
              &out[1]);
  if (ndim == 3) {
    double zlo = p->z0 - p->hz, zhi = p->z0 + p->hz, vlo = zlo, vhi = zhi;
    if (g->kind == CLARA_GEOM_CONE) {
      ratio_range(zlo, zhi, w0, w1, &vlo, &vhi);
      vlo *= g->source_to_detector;
      vhi *= g->source_to_detector;
    }
    index_range(vlo, vhi, g->det_spacing[0], g->det_offset[0], g->rows, &out[2],
                &out[3]);
  }
}

/* The ray of cell (u, v) in a view: a point o on it and its unit
 * direction d. For divergent rays o is moved to the point of the line
 * nearest the z axis, which keeps the chord arithmetic well conditioned. */
static void make_ray(const clara_ct_geometry *g, double ct, double st, double u,
                     double v, double o[3], double d[3]) {
  double sx, sy, sz, n, t;
  switch (g->kind) {
  case CLARA_GEOM_PARALLEL:
    o[0] = u * ct;
    o[1] = u * st;
    o[2] = v;
    d[0] = -st;
    d[1] = ct;
    d[2] = 0;
    return;
  case CLARA_GEOM_FAN_ARC: {
    double cg = cos(u), sg = sin(u);
    d[0] = -st * cg + ct * sg;
    d[1] = ct * cg + st * sg;
    d[2] = 0;
    sz = v;
    break;
  }
  case CLARA_GEOM_FAN_FLAT:
    d[0] = -st * g->source_to_detector + ct * u;
    d[1] = ct * g->source_to_detector + st * u;
    d[2] = 0;
    sz = v;
    break;
  default: /* CONE */
    d[0] = -st * g->source_to_detector + ct * u;
    d[1] = ct * g->source_to_detector + st * u;
    d[2] = v;
    sz = 0;
    break;
  }
  n = sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
  d[0] /= n;
  d[1] /= n;
  d[2] /= n;
  sx = g->source_to_iso * st;
  sy = -g->source_to_iso * ct;
  /* move along the ray to where its xy part is nearest the origin */
  t = -(sx * d[0] + sy * d[1]) / (d[0] * d[0] + d[1] * d[1]);
  o[0] = sx + t * d[0];
  o[1] = sy + t * d[1];
  o[2] = sz + t * d[2];
}

static clara_status project_view(void *arg, size_t index, int worker) {
  const project_job *job = arg;
  const clara_phantom *ph = job->ph;
  const clara_ct_geometry *g = job->g;
  const int cols = g->cols, rows = g->rows, ne = ph->count;
  double *acc = job->acc + (size_t)worker * (size_t)cols;
  int *range = job->range + (size_t)worker * 4 * (size_t)ne;
  int *list = job->list + (size_t)worker * (size_t)ne;
  double t = (double)g->angles[index], ct = cos(t), st = sin(t);
  float *view = job->proj + index * (size_t)rows * (size_t)cols;
  /* a 2D phantom in a geometry without cone divergence: all rows alike */
  int same_rows = ph->ndim == 2 && g->kind != CLARA_GEOM_CONE;
  int nrows = same_rows ? 1 : rows;

  for (int e = 0; e < ne; e++)
    cull(g, ph->ndim, &ph->e[e], ct, st, &range[4 * e]);
  for (int r = 0; r < nrows; r++) {
    double v = det_v(g, r);
    float *out = view + (size_t)r * (size_t)cols;
    int nlist = 0, clo = cols, chi = -1;
    for (int e = 0; e < ne; e++) {
      const int *rg = &range[4 * e];
      if (rg[0] > rg[1] || r < rg[2] || r > rg[3])
        continue;
      list[nlist++] = e;
      if (rg[0] < clo)
        clo = rg[0];
      if (rg[1] > chi)
        chi = rg[1];
    }
    memset(acc, 0, sizeof *acc * (size_t)cols);
    for (int c = clo; c <= chi; c++) {
      double o[3], d[3], sum = 0;
      make_ray(g, ct, st, det_u(g, c), v, o, d);
      for (int l = 0; l < nlist; l++) {
        const int *rg = &range[4 * list[l]];
        if (c < rg[0] || c > rg[1])
          continue;
        sum += ph->e[list[l]].density * chord(&ph->e[list[l]], ph->ndim, o, d);
      }
      acc[c] = sum;
    }
    for (int c = 0; c < cols; c++)
      out[c] = (float)acc[c];
  }
  for (int r = 1; r < rows && same_rows; r++)
    memcpy(view + (size_t)r * (size_t)cols, view, sizeof *view * (size_t)cols);
  return CLARA_OK;
}

CLARA_API clara_status clara_phantom_project(const clara_phantom *ph,
                                             const clara_ct_geometry *geom,
                                             float *projections) {
  static const char fn[] = "clara_phantom_project";
  project_job job;
  clara_status st;
  size_t n;
  int threads;

  if (!ph)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: ph: is NULL", fn);
  if (!geom)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: geom: is NULL", fn);
  if (!projections)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: projections: is NULL", fn);
  if ((st = clara_geometry_check(geom)) != CLARA_OK)
    return clara_fail_context(st, fn);

  threads = clara_online_cpus();
  if (threads > geom->views)
    threads = geom->views;
  job.ph = ph;
  job.g = geom;
  job.proj = projections;
  /* cols, 4*count and count are small next to what geometry_check and
   * build() already allowed, so only the per-thread products can overflow */
  if (clara_size_mul((size_t)threads, (size_t)geom->cols, &n) != 0)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: geom->cols: %d is too large",
                      fn, geom->cols);
  job.acc = clara_xcalloc(n, sizeof(double), fn);
  job.range =
      clara_xcalloc((size_t)threads * 4, (size_t)ph->count * sizeof(int), fn);
  job.list =
      clara_xcalloc((size_t)threads, (size_t)ph->count * sizeof(int), fn);
  if (!job.acc || !job.range || !job.list) {
    clara_aligned_free(job.acc);
    clara_aligned_free(job.range);
    clara_aligned_free(job.list);
    return CLARA_ERR_OUT_OF_MEMORY;
  }
  st = clara_parallel_for(threads, (size_t)geom->views, project_view, &job,
                          NULL);
  clara_aligned_free(job.acc);
  clara_aligned_free(job.range);
  clara_aligned_free(job.list);
  return st;
}
