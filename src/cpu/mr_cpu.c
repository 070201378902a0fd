/* mr_cpu.c -- Cartesian multi-coil MRI reconstruction on the CPU.
 *
 * Slices are taken in groups. For a group, every (slice, coil) pair is one
 * task: the coil's k-space is whitened across coils (y = W x per sample),
 * copied into a per-worker FFTW buffer in FFT order (the ifftshift is done
 * by the copy: natural index k goes to (k - n/2) mod n), apodised, passed
 * through the partial-Fourier method, inverse transformed (FFTW new-array
 * execute of an in-place plan made at plan time), and written centred
 * (fftshift by the copy again), cropped to recon_nx and scaled into the
 * group's coil images. Then every image row of the group is one task of the
 * coil combination. Each output value is computed by one task in a fixed
 * order, so results do not depend on the thread count.
 *
 * Partial Fourier, along ky and (for an asymmetric echo) kx:
 *  - per axis, with sampled range [f, l] and centre c = n/2, the symmetric
 *    centre is c +- h, h = min(c - f, l - c); the axis is asymmetric when
 *    c - f != l - c. A soft sampling function s(k) is 0 where nothing was
 *    sampled, 1 on the extra (one-sided) part, and across the symmetric
 *    centre rises as 0.5 +- 0.5 sin(pi/2 (k - c)/(h + 1)), so that
 *    s(k) + s(-k) = 1 (Noll's ramp). In 2D the weight is
 *    W(k) = 2 S(k) / (S(k) + S(-k)), S = s_y s_x, which is Noll's weight for
 *    one axis and keeps W(k) + W(-k) = 2 wherever either side was sampled.
 *  - homodyne (Noll, Nishimura & Macovski, IEEE TMI 10:154, 1991): phase
 *    phi from the symmetric centre (Hann-tapered over c +- h), image
 *    Re(e^{-i phi} IFT(W K)) e^{i phi} (the phase is put back so that coils
 *    can still be combined).
 *  - POCS (Haacke, Lindskog & Lin, JMR 92:126, 1991): the same phase, then
 *    pocs_iterations times: image -> |image| e^{i phi} -> k-space -> the
 *    acquired samples restored -> image. The window, if any, is applied to
 *    the completed k-space before the last inverse transform.
 * An axis that is fully sampled or symmetrically truncated needs nothing:
 * without an asymmetric axis all three methods are the zero-filled
 * reconstruction, bit for bit. */
#include "mr_cpu.h"

#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define ADAPT_HALF_XY 3 /* Walsh neighbourhood: 7 x 7 (x 3 in 3D) */
#define ADAPT_HALF_Z 1
#define POWER_ITERATIONS 16 /* from a column of the matrix */
#define POWER_WARM 4        /* from the previous pixel's vector */
#define GROUP_BYTES_MAX ((size_t)512 << 20)

typedef struct cpu_mr {
  fftwf_plan inv, fwd; /* in place over nz x ny x nx (rank 2 when nz = 1) */
  size_t nvox, npix;   /* encoded voxels, reconstructed pixels per coil */
  int cx, cy, cz;      /* n/2 */
  int xoff;            /* crop: image x = recon x + xoff */
  int pf;              /* the method actually run: ZERO without asymmetry */
  int nbuf;            /* FFT buffers a worker needs */
  float scale;         /* 1/sqrt(N) or 1 */
  /* tables in FFT order (k-space centre at index 0) */
  float *win_x, *win_y, *win_z; /* window, or NULL */
  unsigned char *acq_x, *acq_y; /* sampled */
  float *lr_x, *lr_y;           /* low-resolution phase taper */
  float *hd_w;                  /* [ny][nx] homodyne weights */
} cpu_mr;

static pthread_once_t fftw_once = PTHREAD_ONCE_INIT;
static void fftw_init(void) { fftwf_make_planner_thread_safe(); }

/* FFT-order position of natural index k on an axis of n with centre c. */
static int to_fft(int k, int c, int n) {
  int p = k - c;
  return p < 0 ? p + n : p;
}

/* Per-axis partial-Fourier tables in natural order: s (soft sampling, see
 * the top of the file) and lr (low-resolution taper). Returns whether the
 * axis is asymmetric. */
static int axis_tables(int n, int f, int l, double *s, double *lr) {
  int c = n / 2, lo = c - f, hi = l - c, h;
  double sgn;
  if ((f == 0 && l == n - 1) || lo == hi || lo < 0 || hi < 0) {
    for (int k = 0; k < n; k++) {
      s[k] = k >= f && k <= l ? 1.0 : 0.0;
      lr[k] = 1.0;
    }
    return 0;
  }
  h = lo < hi ? lo : hi;
  sgn = hi > lo ? 1.0 : -1.0;
  for (int k = 0; k < n; k++) {
    int d = k - c;
    if (k < f || k > l)
      s[k] = 0.0;
    else if (abs(d) <= h)
      s[k] = 0.5 + 0.5 * sgn * sin(0.5 * M_PI * d / (h + 1.0));
    else
      s[k] = 1.0;
    lr[k] = abs(d) <= h ? 0.5 * (1.0 + cos(M_PI * d / (h + 1.0))) : 0.0;
  }
  return 1;
}

/* A natural-order table of n values into FFT order, as floats. */
static float *fft_order(const double *v, const float *vf, int n) {
  float *o = clara_aligned_alloc((size_t)n * sizeof *o);
  if (!o)
    return NULL;
  for (int k = 0; k < n; k++)
    o[to_fft(k, n / 2, n)] = v ? (float)v[k] : vf[k];
  return o;
}

void clara_cpu_mr_destroy(void *state) {
  cpu_mr *m = state;
  if (!m)
    return;
  if (m->inv)
    fftwf_destroy_plan(m->inv);
  if (m->fwd)
    fftwf_destroy_plan(m->fwd);
  clara_aligned_free(m->win_x);
  clara_aligned_free(m->win_y);
  clara_aligned_free(m->win_z);
  clara_aligned_free(m->acq_x);
  clara_aligned_free(m->acq_y);
  clara_aligned_free(m->lr_x);
  clara_aligned_free(m->lr_y);
  clara_aligned_free(m->hd_w);
  free(m);
}

clara_status clara_cpu_mr_create(const clara_context *ctx,
                                 const clara_mr_setup *s, void **state) {
  static const char who[] = "clara_mr_plan_create";
  const clara_mr_geometry *g = &s->g;
  cpu_mr *m;
  double *sx = NULL, *sy = NULL, *lx = NULL, *ly = NULL;
  fftwf_complex *buf = NULL;
  int asym_x, asym_y, rank, dims[3];
  clara_status st = CLARA_OK;
  (void)ctx;
  pthread_once(&fftw_once, fftw_init);
  *state = NULL;
  m = calloc(1, sizeof *m);
  if (!m)
    return clara_fail(CLARA_ERR_OUT_OF_MEMORY, "%s: cpu state", who);
  m->nvox = (size_t)g->nx * (size_t)g->ny * (size_t)g->nz;
  m->npix = (size_t)g->recon_nx * (size_t)g->ny * (size_t)g->nz;
  m->cx = g->nx / 2;
  m->cy = g->ny / 2;
  m->cz = g->nz / 2;
  m->xoff = g->nx / 2 - g->recon_nx / 2;
  m->scale =
      s->norm == CLARA_MR_NORM_ORTHO ? (float)(1.0 / sqrt((double)m->nvox)) : 1;

  sx = calloc((size_t)g->nx, sizeof *sx);
  lx = calloc((size_t)g->nx, sizeof *lx);
  sy = calloc((size_t)g->ny, sizeof *sy);
  ly = calloc((size_t)g->ny, sizeof *ly);
  m->acq_x = clara_aligned_calloc((size_t)g->nx, 1);
  m->acq_y = clara_aligned_calloc((size_t)g->ny, 1);
  if (!sx || !lx || !sy || !ly || !m->acq_x || !m->acq_y)
    goto oom;
  for (int k = g->kx_first; k <= g->kx_last; k++)
    m->acq_x[to_fft(k, m->cx, g->nx)] = 1;
  for (int k = g->ky_first; k <= g->ky_last; k++)
    m->acq_y[to_fft(k, m->cy, g->ny)] = 1;
  if ((s->window_x && !(m->win_x = fft_order(NULL, s->window_x, g->nx))) ||
      (s->window_y && !(m->win_y = fft_order(NULL, s->window_y, g->ny))) ||
      (s->window_z && !(m->win_z = fft_order(NULL, s->window_z, g->nz))))
    goto oom;

  asym_x = axis_tables(g->nx, g->kx_first, g->kx_last, sx, lx);
  asym_y = axis_tables(g->ny, g->ky_first, g->ky_last, sy, ly);
  m->pf = (asym_x || asym_y) ? (int)s->partial_fourier : CLARA_MR_PF_ZERO;
  m->nbuf = m->pf == CLARA_MR_PF_ZERO       ? 1
            : m->pf == CLARA_MR_PF_HOMODYNE ? 2
                                            : 3;
  if (m->pf != CLARA_MR_PF_ZERO) {
    if (!(m->lr_x = fft_order(lx, NULL, g->nx)) ||
        !(m->lr_y = fft_order(ly, NULL, g->ny)))
      goto oom;
  }
  if (m->pf == CLARA_MR_PF_HOMODYNE) {
    m->hd_w = clara_xcalloc((size_t)g->nx * (size_t)g->ny, sizeof(float), who);
    if (!m->hd_w)
      goto fail_mem;
    for (int ky = 0; ky < g->ny; ky++) {
      int py = ((2 * m->cy - ky) % g->ny + g->ny) % g->ny;
      for (int kx = 0; kx < g->nx; kx++) {
        int px = ((2 * m->cx - kx) % g->nx + g->nx) % g->nx;
        double a = sy[ky] * sx[kx], b = sy[py] * sx[px];
        m->hd_w[(size_t)to_fft(ky, m->cy, g->ny) * g->nx +
                (size_t)to_fft(kx, m->cx, g->nx)] =
            a + b > 0 ? (float)(2.0 * a / (a + b)) : 0.0f;
      }
    }
  }

  rank = g->nz > 1 ? 3 : 2;
  dims[0] = rank == 3 ? g->nz : g->ny;
  dims[1] = rank == 3 ? g->ny : g->nx;
  dims[2] = g->nx;
  buf = fftwf_malloc(sizeof(fftwf_complex) * m->nvox);
  if (!buf)
    goto oom;
  /* FFTW_MEASURE: a plan is made once per protocol, and the measured plan
   * is about 3.6x faster than FFTW_ESTIMATE's for 256 x 256 (bart_mr.py) */
  m->inv = fftwf_plan_dft(rank, dims, buf, buf, FFTW_BACKWARD, FFTW_MEASURE);
  if (m->pf == CLARA_MR_PF_POCS)
    m->fwd = fftwf_plan_dft(rank, dims, buf, buf, FFTW_FORWARD, FFTW_MEASURE);
  fftwf_free(buf);
  if (!m->inv || (m->pf == CLARA_MR_PF_POCS && !m->fwd)) {
    st = clara_fail(CLARA_ERR_UNSUPPORTED,
                    "%s: FFTW could not plan a %d x %d x %d transform", who,
                    g->nz, g->ny, g->nx);
    goto fail;
  }
  free(sx);
  free(sy);
  free(lx);
  free(ly);
  *state = m;
  return CLARA_OK;
oom:
  st = clara_fail(CLARA_ERR_OUT_OF_MEMORY, "%s: cpu tables", who);
  goto fail;
fail_mem:
  st = CLARA_ERR_OUT_OF_MEMORY;
fail:
  free(sx);
  free(sy);
  free(lx);
  free(ly);
  clara_cpu_mr_destroy(m);
  return st;
}

/* ---- Execution ----------------------------------------------------------- */

typedef struct job {
  const clara_mr_setup *s;
  const cpu_mr *m;
  const float *kspace;
  float *image;
  int s0, ns;          /* current group of slices */
  float *coil_img;     /* [ns][coils][npix] complex */
  fftwf_complex **buf; /* per worker: nbuf * nvox */
  float **q;           /* per worker, adaptive: [recon_nx][coils][coils] */
  double **r; /* per worker, adaptive: 2 * coils^2 + 6 * coils doubles */
} job;

/* buf = the whitened, masked k-space of one coil, in FFT order. */
static void load_coil(const job *j, int slice, int coil, fftwf_complex *buf) {
  const clara_mr_setup *s = j->s;
  const clara_mr_geometry *g = &s->g;
  const cpu_mr *m = j->m;
  int nc = g->coils;
  memset(buf, 0, sizeof(fftwf_complex) * m->nvox);
  for (int d = s->whiten ? 0 : coil; d <= coil; d++) {
    float wr = 1, wi = 0;
    const float *src = j->kspace + 2 * ((size_t)slice * nc + d) * m->nvox;
    if (s->whiten) {
      wr = s->whiten[2 * ((size_t)coil * nc + d)];
      wi = s->whiten[2 * ((size_t)coil * nc + d) + 1];
      if (wr == 0 && wi == 0)
        continue;
    }
    for (int kz = 0; kz < g->nz; kz++)
      for (int ky = g->ky_first; ky <= g->ky_last; ky++) {
        const float *row = src + 2 * ((size_t)kz * g->ny + ky) * g->nx;
        fftwf_complex *dst = buf + ((size_t)to_fft(kz, m->cz, g->nz) * g->ny +
                                    (size_t)to_fft(ky, m->cy, g->ny)) *
                                       g->nx;
        for (int kx = g->kx_first; kx <= g->kx_last; kx++) {
          float xr = row[2 * kx], xi = row[2 * kx + 1];
          fftwf_complex *o = dst + to_fft(kx, m->cx, g->nx);
          (*o)[0] += wr * xr - wi * xi;
          (*o)[1] += wr * xi + wi * xr;
        }
      }
  }
}

/* buf *= window (FFT order). */
static void apply_window(const cpu_mr *m, const clara_mr_geometry *g,
                         fftwf_complex *buf) {
  if (!m->win_x)
    return;
  for (int z = 0; z < g->nz; z++)
    for (int y = 0; y < g->ny; y++) {
      float wzy = m->win_z[z] * m->win_y[y];
      fftwf_complex *row = buf + ((size_t)z * g->ny + y) * g->nx;
      for (int x = 0; x < g->nx; x++) {
        float w = wzy * m->win_x[x];
        row[x][0] *= w;
        row[x][1] *= w;
      }
    }
}

/* ph = unit phasors of the low-resolution image of k-space 'k'. */
static void lowres_phase(const cpu_mr *m, const clara_mr_geometry *g,
                         fftwf_complex *k, fftwf_complex *ph) {
  for (int z = 0; z < g->nz; z++)
    for (int y = 0; y < g->ny; y++) {
      size_t o = ((size_t)z * g->ny + y) * g->nx;
      for (int x = 0; x < g->nx; x++) {
        float w = m->lr_y[y] * m->lr_x[x];
        ph[o + x][0] = k[o + x][0] * w;
        ph[o + x][1] = k[o + x][1] * w;
      }
    }
  fftwf_execute_dft(m->inv, ph, ph);
  for (size_t i = 0; i < m->nvox; i++) {
    double a = hypot(ph[i][0], ph[i][1]);
    if (a > 0) {
      ph[i][0] = (float)(ph[i][0] / a);
      ph[i][1] = (float)(ph[i][1] / a);
    } else {
      ph[i][0] = 1;
      ph[i][1] = 0;
    }
  }
}

static void homodyne(const cpu_mr *m, const clara_mr_geometry *g,
                     fftwf_complex *buf, fftwf_complex *ph) {
  lowres_phase(m, g, buf, ph);
  for (int z = 0; z < g->nz; z++)
    for (int y = 0; y < g->ny; y++) {
      fftwf_complex *row = buf + ((size_t)z * g->ny + y) * g->nx;
      const float *w = m->hd_w + (size_t)y * g->nx;
      for (int x = 0; x < g->nx; x++) {
        row[x][0] *= w[x];
        row[x][1] *= w[x];
      }
    }
  fftwf_execute_dft(m->inv, buf, buf);
  for (size_t i = 0; i < m->nvox; i++) {
    /* Re(b conj(p)) p */
    float re = buf[i][0] * ph[i][0] + buf[i][1] * ph[i][1];
    buf[i][0] = re * ph[i][0];
    buf[i][1] = re * ph[i][1];
  }
}

static void pocs(const cpu_mr *m, const clara_mr_geometry *g, int iterations,
                 fftwf_complex *buf, fftwf_complex *ph, fftwf_complex *k0) {
  float inv_n = (float)(1.0 / (double)m->nvox);
  memcpy(k0, buf, sizeof(fftwf_complex) * m->nvox);
  lowres_phase(m, g, buf, ph);
  fftwf_execute_dft(m->inv, buf, buf);
  for (int it = 0; it < iterations; it++) {
    for (size_t i = 0; i < m->nvox; i++) {
      float a = hypotf(buf[i][0], buf[i][1]);
      buf[i][0] = a * ph[i][0];
      buf[i][1] = a * ph[i][1];
    }
    fftwf_execute_dft(m->fwd, buf, buf);
    for (int z = 0; z < g->nz; z++)
      for (int y = 0; y < g->ny; y++) {
        size_t o = ((size_t)z * g->ny + y) * g->nx;
        for (int x = 0; x < g->nx; x++) {
          if (m->acq_y[y] && m->acq_x[x]) {
            buf[o + x][0] = k0[o + x][0];
            buf[o + x][1] = k0[o + x][1];
          } else {
            buf[o + x][0] *= inv_n;
            buf[o + x][1] *= inv_n;
          }
        }
      }
    if (it == iterations - 1)
      apply_window(m, g, buf);
    fftwf_execute_dft(m->inv, buf, buf);
  }
}

/* One (slice, coil) of the group: k-space to the centred, cropped, scaled
 * coil image. */
static clara_status coil_task(void *arg, size_t index, int worker) {
  job *j = arg;
  const clara_mr_setup *s = j->s;
  const clara_mr_geometry *g = &s->g;
  const cpu_mr *m = j->m;
  int nc = g->coils;
  int si = (int)(index / (size_t)nc), coil = (int)(index % (size_t)nc);
  fftwf_complex *buf = j->buf[worker];
  float *dst = j->coil_img + 2 * ((size_t)si * nc + coil) * m->npix;

  load_coil(j, j->s0 + si, coil, buf);
  switch (m->pf) {
  case CLARA_MR_PF_HOMODYNE:
    apply_window(m, g, buf);
    homodyne(m, g, buf, buf + m->nvox);
    break;
  case CLARA_MR_PF_POCS:
    pocs(m, g, s->pocs_iterations, buf, buf + m->nvox, buf + 2 * m->nvox);
    break;
  default:
    apply_window(m, g, buf);
    fftwf_execute_dft(m->inv, buf, buf);
    break;
  }
  /* fftshift, crop, scale */
  for (int z = 0; z < g->nz; z++)
    for (int y = 0; y < g->ny; y++) {
      fftwf_complex *row = buf + ((size_t)to_fft(z, m->cz, g->nz) * g->ny +
                                  (size_t)to_fft(y, m->cy, g->ny)) *
                                     g->nx;
      float *o = dst + 2 * ((size_t)z * g->ny + y) * g->recon_nx;
      for (int x = 0; x < g->recon_nx; x++) {
        fftwf_complex *v = row + to_fft(x + m->xoff, m->cx, g->nx);
        o[2 * x] = (*v)[0] * m->scale;
        o[2 * x + 1] = (*v)[1] * m->scale;
      }
    }
  return CLARA_OK;
}

/* Walsh et al., MRM 43:682 (2000): per pixel the dominant eigenvector v of
 * the coil correlation matrix summed over the neighbourhood, by power
 * iteration; the output is v^H c with |v| = 1 and v[0] real >= 0. */
static void adaptive_row(const job *j, int si, int z, int y, float *out,
                         int worker) {
  const clara_mr_geometry *g = &j->s->g;
  const cpu_mr *m = j->m;
  int nc = g->coils, rnx = g->recon_nx;
  size_t cc = (size_t)nc * (size_t)nc;
  const float *img = j->coil_img + 2 * (size_t)si * nc * m->npix;
  float *q = j->q[worker]; /* [rnx][nc][nc] complex, upper triangle used */
  double *r = j->r[worker], *v = r + 2 * cc, *u = v + 2 * (size_t)nc;
  double *prev = u + 2 * (size_t)nc;
  int have_prev = 0, iterations;
  int hz = g->nz > 1 ? ADAPT_HALF_Z : 0;
  int z0 = z - hz < 0 ? 0 : z - hz, z1 = z + hz >= g->nz ? g->nz - 1 : z + hz;
  int y0 = y - ADAPT_HALF_XY < 0 ? 0 : y - ADAPT_HALF_XY;
  int y1 = y + ADAPT_HALF_XY >= g->ny ? g->ny - 1 : y + ADAPT_HALF_XY;

  memset(q, 0, sizeof(float) * 2 * cc * (size_t)rnx);
  for (int zz = z0; zz <= z1; zz++)
    for (int yy = y0; yy <= y1; yy++) {
      size_t pix0 = ((size_t)zz * g->ny + yy) * rnx;
      for (int x = 0; x < rnx; x++) {
        float *qx = q + 2 * cc * (size_t)x;
        for (int a = 0; a < nc; a++) {
          const float *ca = img + 2 * ((size_t)a * m->npix + pix0 + x);
          for (int b = a; b < nc; b++) {
            const float *cb = img + 2 * ((size_t)b * m->npix + pix0 + x);
            /* ca conj(cb) */
            qx[2 * ((size_t)a * nc + b)] += ca[0] * cb[0] + ca[1] * cb[1];
            qx[2 * ((size_t)a * nc + b) + 1] += ca[1] * cb[0] - ca[0] * cb[1];
          }
        }
      }
    }
  for (int x = 0; x < rnx; x++) {
    int x0 = x - ADAPT_HALF_XY < 0 ? 0 : x - ADAPT_HALF_XY;
    int x1 = x + ADAPT_HALF_XY >= rnx ? rnx - 1 : x + ADAPT_HALF_XY;
    size_t pix = ((size_t)z * g->ny + y) * rnx + x;
    double best = -1, norm, cr = 0, ci = 0, pr, pi;
    int jb = 0;
    memset(r, 0, sizeof(double) * 2 * cc);
    for (int xx = x0; xx <= x1; xx++) {
      const float *qx = q + 2 * cc * (size_t)xx;
      for (int a = 0; a < nc; a++)
        for (int b = a; b < nc; b++) {
          r[2 * ((size_t)a * nc + b)] += qx[2 * ((size_t)a * nc + b)];
          r[2 * ((size_t)a * nc + b) + 1] += qx[2 * ((size_t)a * nc + b) + 1];
        }
    }
    for (int a = 0; a < nc; a++)
      for (int b = 0; b < a; b++) {
        r[2 * ((size_t)a * nc + b)] = r[2 * ((size_t)b * nc + a)];
        r[2 * ((size_t)a * nc + b) + 1] = -r[2 * ((size_t)b * nc + a) + 1];
      }
    if (have_prev) {
      /* the maps are smooth: the neighbour's vector is a close start */
      memcpy(v, prev, sizeof(double) * 2 * (size_t)nc);
      iterations = POWER_WARM;
    } else {
      /* start from the column with the largest diagonal */
      for (int a = 0; a < nc; a++)
        if (r[2 * ((size_t)a * nc + a)] > best) {
          best = r[2 * ((size_t)a * nc + a)];
          jb = a;
        }
      for (int a = 0; a < nc; a++) {
        v[2 * a] = r[2 * ((size_t)a * nc + jb)];
        v[2 * a + 1] = r[2 * ((size_t)a * nc + jb) + 1];
      }
      iterations = POWER_ITERATIONS;
    }
    norm = 0;
    for (int it = 0; it <= iterations; it++) {
      norm = 0;
      for (int a = 0; a < nc; a++)
        norm += v[2 * a] * v[2 * a] + v[2 * a + 1] * v[2 * a + 1];
      norm = sqrt(norm);
      if (!(norm > 0))
        break;
      for (int a = 0; a < 2 * nc; a++)
        v[a] /= norm;
      if (it == iterations)
        break;
      for (int a = 0; a < nc; a++) {
        double sr = 0, sim = 0;
        const double *ra = r + 2 * (size_t)a * nc;
        for (int b = 0; b < nc; b++) {
          sr += ra[2 * b] * v[2 * b] - ra[2 * b + 1] * v[2 * b + 1];
          sim += ra[2 * b] * v[2 * b + 1] + ra[2 * b + 1] * v[2 * b];
        }
        u[2 * a] = sr;
        u[2 * a + 1] = sim;
      }
      memcpy(v, u, sizeof(double) * 2 * (size_t)nc);
    }
    if (!(norm > 0)) {
      have_prev = 0;
      out[2 * x] = out[2 * x + 1] = 0;
      continue;
    }
    memcpy(prev, v, sizeof(double) * 2 * (size_t)nc);
    have_prev = 1;
    /* phase reference: coil 0 */
    pr = v[0];
    pi = v[1];
    {
      double a0 = hypot(pr, pi);
      if (a0 > 0) {
        pr /= a0;
        pi /= a0;
      } else {
        pr = 1;
        pi = 0;
      }
    }
    for (int a = 0; a < nc; a++) {
      /* s = v conj(p); out += conj(s) c */
      double sr = v[2 * a] * pr + v[2 * a + 1] * pi;
      double sim = v[2 * a + 1] * pr - v[2 * a] * pi;
      const float *ca = img + 2 * ((size_t)a * m->npix + pix);
      cr += sr * ca[0] + sim * ca[1];
      ci += sr * ca[1] - sim * ca[0];
    }
    out[2 * x] = (float)cr;
    out[2 * x + 1] = (float)ci;
  }
}

/* One image row of one slice of the group: coil combination. */
static clara_status combine_task(void *arg, size_t index, int worker) {
  job *j = arg;
  const clara_mr_setup *s = j->s;
  const clara_mr_geometry *g = &s->g;
  const cpu_mr *m = j->m;
  int nc = g->coils, rnx = g->recon_nx;
  size_t rows = (size_t)g->nz * (size_t)g->ny;
  int si = (int)(index / rows);
  int z = (int)(index % rows / (size_t)g->ny), y = (int)(index % (size_t)g->ny);
  const float *img = j->coil_img + 2 * (size_t)si * nc * m->npix;
  size_t pix0 = ((size_t)z * g->ny + y) * rnx;
  size_t out0 = (size_t)(j->s0 + si) * m->npix + pix0;
  int cplx = s->output_complex;
  float *out = j->image + (cplx ? 2 : 1) * out0;

  if (s->combine == CLARA_MR_COMBINE_RSS) {
    for (int x = 0; x < rnx; x++) {
      double acc = 0;
      for (int c = 0; c < nc; c++) {
        const float *v = img + 2 * ((size_t)c * m->npix + pix0 + x);
        acc += (double)v[0] * v[0] + (double)v[1] * v[1];
      }
      if (cplx) {
        out[2 * x] = (float)sqrt(acc);
        out[2 * x + 1] = 0;
      } else {
        out[x] = (float)sqrt(acc);
      }
    }
    return CLARA_OK;
  }
  if (s->combine == CLARA_MR_COMBINE_SENSITIVITY) {
    for (int x = 0; x < rnx; x++) {
      double nr = 0, ni = 0, den = 0;
      size_t pix = pix0 + x;
      for (int c = 0; c < nc; c++) {
        const float *v = img + 2 * ((size_t)c * m->npix + pix);
        const float *sm = s->sens + 2 * ((size_t)c * m->npix + pix);
        nr += (double)sm[0] * v[0] + (double)sm[1] * v[1];
        ni += (double)sm[0] * v[1] - (double)sm[1] * v[0];
        den += (double)sm[0] * sm[0] + (double)sm[1] * sm[1];
      }
      if (den > 0) {
        nr /= den;
        ni /= den;
      } else {
        nr = ni = 0;
      }
      if (cplx) {
        out[2 * x] = (float)nr;
        out[2 * x + 1] = (float)ni;
      } else {
        out[x] = (float)hypot(nr, ni);
      }
    }
    return CLARA_OK;
  }
  /* ADAPTIVE: complex into the per-worker row, then out */
  {
    float *row = j->q[worker] + 2 * (size_t)nc * nc * (size_t)rnx;
    adaptive_row(j, si, z, y, row, worker);
    for (int x = 0; x < rnx; x++) {
      if (cplx) {
        out[2 * x] = row[2 * x];
        out[2 * x + 1] = row[2 * x + 1];
      } else {
        out[x] = hypotf(row[2 * x], row[2 * x + 1]);
      }
    }
  }
  return CLARA_OK;
}

clara_status clara_cpu_mr_execute(const clara_context *ctx,
                                  const clara_mr_setup *s, const void *state,
                                  const float *kspace, float *image) {
  static const char who[] = "clara_mr_execute";
  const cpu_mr *m = state;
  const clara_mr_geometry *g = &s->g;
  int nt = ctx->threads > 0 ? ctx->threads : 1;
  int nc = g->coils, group, ngroups;
  size_t per_slice = 2 * sizeof(float) * (size_t)nc * m->npix;
  size_t qfloats =
      2 * (size_t)nc * nc * (size_t)g->recon_nx + 2 * (size_t)g->recon_nx;
  int adaptive = s->combine == CLARA_MR_COMBINE_ADAPTIVE;
  clara_status st = CLARA_OK;
  job j;

  memset(&j, 0, sizeof j);
  j.s = s;
  j.m = m;
  j.kspace = kspace;
  j.image = image;
  /* enough slices to keep the workers busy in the coil stage, within a
   * memory budget for the coil images */
  group = (nt + nc - 1) / nc;
  if (group > g->slices)
    group = g->slices;
  while (group > 1 && (size_t)group * per_slice > GROUP_BYTES_MAX)
    group--;
  if (group < 1)
    group = 1;
  ngroups = (g->slices + group - 1) / group;
  {
    /* no more workers (and per-worker buffers) than either stage's tasks */
    size_t most =
        (size_t)group * (size_t)(nc > g->ny * g->nz ? nc : g->ny * g->nz);
    if ((size_t)nt > most)
      nt = (int)most;
  }

  j.coil_img = clara_xcalloc((size_t)group, per_slice, who);
  j.buf = calloc((size_t)nt, sizeof *j.buf);
  j.q = calloc((size_t)nt, sizeof *j.q);
  j.r = calloc((size_t)nt, sizeof *j.r);
  if (!j.coil_img || !j.buf || !j.q || !j.r) {
    st = clara_fail(CLARA_ERR_OUT_OF_MEMORY, "%s: coil images", who);
    goto done;
  }
  for (int t = 0; t < nt; t++) {
    j.buf[t] = fftwf_malloc(sizeof(fftwf_complex) * m->nvox * (size_t)m->nbuf);
    if (adaptive) {
      j.q[t] = clara_aligned_alloc(sizeof(float) * qfloats);
      j.r[t] = malloc(sizeof(double) * (2 * (size_t)nc * nc + 6 * (size_t)nc));
    }
    if (!j.buf[t] || (adaptive && (!j.q[t] || !j.r[t]))) {
      st = clara_fail(CLARA_ERR_OUT_OF_MEMORY, "%s: per-thread buffers", who);
      goto done;
    }
  }
  for (int gi = 0; gi < ngroups; gi++) {
    clara_progress pr;
    j.s0 = gi * group;
    j.ns = g->slices - j.s0 < group ? g->slices - j.s0 : group;
    clara_progress_for(ctx, "mr", (double)gi / ngroups, 1.0 / ngroups, &pr);
    st = clara_parallel_for(nt, (size_t)j.ns * (size_t)nc, coil_task, &j, &pr);
    if (st != CLARA_OK)
      goto done;
    st = clara_parallel_for(nt, (size_t)j.ns * (size_t)g->nz * (size_t)g->ny,
                            combine_task, &j, NULL);
    if (st != CLARA_OK)
      goto done;
  }
done:
  if (j.buf)
    for (int t = 0; t < nt; t++)
      fftwf_free(j.buf[t]);
  if (j.q)
    for (int t = 0; t < nt; t++)
      clara_aligned_free(j.q[t]);
  if (j.r)
    for (int t = 0; t < nt; t++)
      free(j.r[t]);
  free(j.buf);
  free(j.q);
  free(j.r);
  clara_aligned_free(j.coil_img);
  return st;
}
