/* nn_cpu.c -- the CPU backend's denoiser.
 *
 * Plan (nn_create): each hidden 3x3 layer with at least 4 outputs runs as
 * Winograd F(4x4, 3x3) (nn_kernels.h); its filters are transformed once,
 * U = G g G^T in double, and stored [36][cin][cout] with cout padded to 16
 * for the GEMMs. The first layer (one input channel) and layers with fewer
 * than 4 outputs (the last) are cheap and run as direct convolutions.
 *
 * Execution (nn_execute), per slice: the input is normalised into a
 * zero-bordered copy x_n (so in == out is safe), then the layers run as a
 * wavefront over bands of 4 rows (one row of Winograd tiles) and column
 * chunks. Task (band b, layer l, chunk c) needs bands b - 1 .. b + 1 of
 * layer l - 1 in chunks c - 1 .. c + 1; it is scheduled NN_LAG bands behind
 * layer l - 1, so many bands of different layers are in flight at once and
 * even one 512 x 512 slice keeps every thread busy. Layer l's output lives
 * in a ring of NN_RING bands (channels-last rows), so the scratch is
 * about layers x 20 rows x nx x channels floats (29 MB for 12 layers of 64
 * channels at nx = 512), independent of ny and of the batch size; before a band
 * slot is overwritten, the task waits for the readers of its old band.
 * Tasks are handed out in schedule order by clara_parallel_for and wait
 * only for tasks with smaller indices, which have all been handed out
 * already, so the wait always ends, with any number of threads and after a
 * cancellation. The last layer writes the output with the residual and the
 * inverse normalisation. A batch of small slices (up to 256 x 256 pixels,
 * at least one per thread) runs one whole slice per worker instead, each in
 * its own buffers, because its tasks would be too short to share.
 *
 * Each pixel's arithmetic does not depend on the band, chunk or thread that
 * computes it (tiles sit on a fixed grid, every sum runs in a fixed order),
 * so results are bit-identical for any number of threads. */
#include "cpu.h"
#include "nn_kernels.h"

#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { NN_WINO, NN_DIRECT_CO, NN_DIRECT_CI };

#define NN_BAND 4   /* rows per task: one row of 4x4 tiles */
#define NN_RING 5   /* bands of each layer's output kept */
#define NN_LAG 2    /* bands a layer runs behind the one before it */
#define NN_BLOCK 48 /* tiles per Winograd block (multiple of 24) */
/* Batches of slices up to this many pixels run a slice per worker, if
 * their buffers fit in NN_LANES_BYTES. */
#define NN_SMALL_SLICE (256 * 256)
#define NN_LANES_BYTES (256.0 * 1024 * 1024)

typedef struct nn_plan_layer {
  int kind;
  int cin, cout;
  int csi, cso; /* channel strides of the input and output rows */
  int relu;
  const float *w;    /* U [36][cin][cso], or the direct layouts */
  const float *bias; /* [cso] (or [cout] for _ci), zero-padded */
} nn_plan_layer;

typedef struct nn_cpu_state {
  int n_layers;
  nn_plan_layer *layers;
  const clara_nn_kernels *k;
  int max_cs; /* the widest channel stride of any activation */
  float *params;
} nn_cpu_state;

static int cvec_up(int c) {
  return (c + CLARA_NN_CVEC - 1) / CLARA_NN_CVEC * CLARA_NN_CVEC;
}

/* F(4x4, 3x3) filter transform matrix for the points 0, 1, -1, 2, -2. */
static const double wino_g[6][3] = {{1.0 / 4, 0, 0},
                                    {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                    {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                    {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                    {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                    {0, 0, 1}};

static void pack_layer(const clara_nn_layer *src, const nn_plan_layer *p,
                       float *w, float *bias) {
  int cin = src->cin, cout = src->cout;
  for (int o = 0; o < cout; ++o)
    bias[o] = src->bias[o];
  for (int o = 0; o < cout; ++o)
    for (int i = 0; i < cin; ++i) {
      const float *g = src->weight + ((size_t)o * (size_t)cin + (size_t)i) * 9;
      if (p->kind == NN_WINO) {
        double gg[6][3];
        for (int a = 0; a < 6; ++a)
          for (int k = 0; k < 3; ++k)
            gg[a][k] = wino_g[a][0] * g[k] + wino_g[a][1] * g[3 + k] +
                       wino_g[a][2] * g[6 + k];
        for (int a = 0; a < 6; ++a)
          for (int b = 0; b < 6; ++b) {
            double u = gg[a][0] * wino_g[b][0] + gg[a][1] * wino_g[b][1] +
                       gg[a][2] * wino_g[b][2];
            w[((size_t)(6 * a + b) * (size_t)cin + (size_t)i) * (size_t)p->cso +
              (size_t)o] = (float)u;
          }
      } else if (p->kind == NN_DIRECT_CO) {
        int cpo = cvec_up(cout);
        for (int t = 0; t < 9; ++t)
          w[((size_t)t * (size_t)cin + (size_t)i) * (size_t)cpo + (size_t)o] =
              g[t];
      } else {
        for (int t = 0; t < 9; ++t)
          w[((size_t)o * 9 + (size_t)t) * (size_t)p->csi + (size_t)i] = g[t];
      }
    }
}

clara_status clara_cpu_nn_create(const clara_context *ctx,
                                 const clara_nn_setup *s, void **state) {
  static const char who[] = "clara_denoiser_load";
  nn_cpu_state *st;
  size_t total = 0, *woff = NULL, *boff = NULL;
  int L;
  (void)ctx;
  *state = NULL;
  if (s->precision != CLARA_PRECISION_FP32)
    return clara_fail(CLARA_ERR_UNSUPPORTED,
                      "precision: %s (%d) is refused: FP16 is a GPU option; "
                      "the CPU backend runs FP32",
                      s->precision == CLARA_PRECISION_FP16
                          ? "CLARA_PRECISION_FP16"
                          : "unknown",
                      (int)s->precision);
  L = s->n_layers;
  if (L < 1)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: n_layers: must be >= 1, got %d", who, L);
  st = calloc(1, sizeof *st);
  if (st)
    st->layers = calloc((size_t)L, sizeof *st->layers);
  woff = calloc((size_t)L, sizeof *woff);
  boff = calloc((size_t)L, sizeof *boff);
  if (!st || !st->layers || !woff || !boff)
    goto oom;
  st->n_layers = L;
  st->max_cs = CLARA_NN_CVEC;
  for (int l = 0; l < L; ++l) {
    const clara_nn_layer *src = &s->layers[l];
    nn_plan_layer *p = &st->layers[l];
    size_t nw, nbias;
    p->cin = src->cin;
    p->cout = src->cout;
    p->relu = src->relu != 0;
    p->csi = l == 0 ? 1 : cvec_up(src->cin);
    p->cso = l == L - 1 ? 1 : cvec_up(src->cout);
    if (l == 0) {
      p->kind = NN_DIRECT_CO;
      nw = (size_t)9 * (size_t)p->cin * (size_t)cvec_up(p->cout);
      nbias = (size_t)cvec_up(p->cout);
    } else if (p->cout < 4) {
      p->kind = NN_DIRECT_CI;
      nw = (size_t)p->cout * 9 * (size_t)p->csi;
      nbias = (size_t)p->cout;
    } else {
      p->kind = NN_WINO;
      nw = (size_t)36 * (size_t)p->cin * (size_t)p->cso;
      nbias = (size_t)p->cso;
    }
    if (p->cso > st->max_cs)
      st->max_cs = p->cso;
    /* Each array starts on a 64-byte boundary. */
    woff[l] = total;
    total += (nw + CLARA_NN_CVEC - 1) / CLARA_NN_CVEC * CLARA_NN_CVEC;
    boff[l] = total;
    total += (nbias + CLARA_NN_CVEC - 1) / CLARA_NN_CVEC * CLARA_NN_CVEC;
  }
  st->params = clara_aligned_calloc(total, sizeof(float));
  if (!st->params)
    goto oom;
  for (int l = 0; l < L; ++l) {
    nn_plan_layer *p = &st->layers[l];
    pack_layer(&s->layers[l], p, st->params + woff[l], st->params + boff[l]);
    p->w = st->params + woff[l];
    p->bias = st->params + boff[l];
  }
  st->k = clara_nn_kernels_pick();
  free(woff);
  free(boff);
  *state = st;
  return CLARA_OK;
oom:
  free(woff);
  free(boff);
  clara_cpu_nn_destroy(st);
  return clara_fail(CLARA_ERR_OUT_OF_MEMORY,
                    "%s: cannot allocate the CPU denoiser's weights (%d "
                    "layers, %zu floats)",
                    who, L, total);
}

void clara_cpu_nn_destroy(void *state) {
  nn_cpu_state *st = state;
  if (!st)
    return;
  clara_aligned_free(st->params);
  free(st->layers);
  free(st);
}

/* ---- Percentile -----------------------------------------------------------
 */

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* The value of rank k (0-based) of a[0 .. n): quickselect with a
 * median-of-three pivot, which reorders a; after 64 rounds (an adversarial
 * order) the rest is sorted instead. */
static float select_rank(float *a, size_t n, size_t k) {
  ptrdiff_t lo = 0, hi = (ptrdiff_t)n - 1, kk = (ptrdiff_t)k;
  for (int round = 0; hi > lo; ++round) {
    ptrdiff_t i = lo, j = hi, mid = lo + (hi - lo) / 2;
    float x = a[lo], y = a[mid], z = a[hi], piv;
    if (round == 64) {
      qsort(a + lo, (size_t)(hi - lo + 1), sizeof *a, cmp_float);
      break;
    }
    piv = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
    while (i <= j) {
      while (a[i] < piv)
        ++i;
      while (a[j] > piv)
        --j;
      if (i <= j) {
        float t = a[i];
        a[i] = a[j];
        a[j] = t;
        ++i;
        --j;
      }
    }
    /* Now a[lo .. j] <= piv <= a[i .. hi] and a[j + 1 .. i - 1] == piv. */
    if (kk <= j)
      hi = j;
    else if (kk >= i)
      lo = i;
    else
      break;
  }
  return a[k];
}

/* ---- Execution ----------------------------------------------------------- */

/* The buffers of one slice in flight. */
typedef struct nn_lane {
  float *xn;            /* [ny][wp]: the normalised input, zero-bordered */
  float **ring;         /* [L - 1]: [ring_bands * NN_BAND][wp][cs] */
  float *sel;           /* [ny * nx] for the percentile, or NULL */
  atomic_int *done;     /* [L][nb][nc]: the slice (gen) that finished it */
  void *done_mem;       /* the same, for free() */
  int gen;              /* slices this lane has started */
  float *out;           /* the slice's output */
  double scale, offset; /* out = out_n * scale + offset */
} nn_lane;

typedef struct nn_run {
  const nn_cpu_state *st;
  const clara_nn_setup *s;
  const float *in;
  float *out;
  int nx, ny, ntx, wp, nb, nc, L;
  int ring_bands; /* bands per ring: NN_RING, or nb when fewer */
  size_t plane, ntasks;
  int *chunk;        /* [nc + 1] tile columns where chunks start */
  int *task;         /* [ntasks][3]: band, layer, chunk */
  float *zero;       /* [wp * max_cs] zeros */
  float *scratch;    /* per worker: V, M and one row */
  size_t per_worker; /* floats */
  size_t vxs;        /* xi stride of V and M */
  nn_lane *lanes;    /* one, or one per worker (slices in parallel) */
  int nlanes;
  nn_lane *wave; /* the lane whose slice the workers share */
} nn_run;

static const float *in_row(const nn_run *r, const nn_lane *ln, int l, int y) {
  const nn_plan_layer *p = &r->st->layers[l];
  if (y < 0 || y >= r->ny)
    return r->zero;
  if (l == 0)
    return ln->xn + (size_t)y * (size_t)r->wp;
  return ln->ring[l - 1] + (size_t)(y % (r->ring_bands * NN_BAND)) *
                               (size_t)r->wp * (size_t)p->csi;
}

static float *out_row(const nn_run *r, const nn_lane *ln, int l, int y) {
  const nn_plan_layer *p = &r->st->layers[l];
  return ln->ring[l] + (size_t)(y % (r->ring_bands * NN_BAND)) * (size_t)r->wp *
                           (size_t)p->cso;
}

static void pause_briefly(int spins) {
  if (spins > 64) {
    sched_yield();
    return;
  }
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* Waits until tasks (bands b0 .. b1, layer l, chunks c - 1 .. c + 1) have
 * finished the lane's current slice. */
static void wait_for(const nn_run *r, const nn_lane *ln, int l, int b0, int b1,
                     int c) {
  if (b0 < 0)
    b0 = 0;
  if (b1 > r->nb - 1)
    b1 = r->nb - 1;
  for (int b = b0; b <= b1; ++b)
    for (int cc = c - 1; cc <= c + 1; ++cc) {
      const atomic_int *f;
      int spins = 0;
      if (cc < 0 || cc >= r->nc)
        continue;
      f = &ln->done[((size_t)l * (size_t)r->nb + (size_t)b) * (size_t)r->nc +
                    (size_t)cc];
      while (atomic_load_explicit(f, memory_order_acquire) < ln->gen)
        pause_briefly(++spins);
    }
}

/* Task 'index' of the schedule on the lane's slice. */
static void run_task(const nn_run *r, const nn_lane *ln, size_t index,
                     int worker) {
  int b = r->task[3 * index], l = r->task[3 * index + 1],
      c = r->task[3 * index + 2];
  const nn_plan_layer *p = &r->st->layers[l];
  const clara_nn_kernels *k = r->st->k;
  int y0 = b * NN_BAND, y1 = y0 + NN_BAND < r->ny ? y0 + NN_BAND : r->ny;
  int tx0 = r->chunk[c], tx1 = r->chunk[c + 1];
  int px0 = 4 * tx0, px1 = 4 * tx1 < r->nx ? 4 * tx1 : r->nx;
  int last = l == r->L - 1;
  float *v = r->scratch + (size_t)worker * r->per_worker;
  float *m = v + 36 * r->vxs;
  float *tmp = m + 36 * r->vxs;

  if (l > 0)
    wait_for(r, ln, l - 1, b - 1, b + 1, c);
  if (!last && b >= r->ring_bands) /* readers of the band the slot held */
    wait_for(r, ln, l + 1, b - r->ring_bands - 1, b - r->ring_bands + 1, c);

  if (p->kind == NN_WINO) {
    const float *rows6[6];
    float *rows4[4];
    for (int i = 0; i < 6; ++i)
      rows6[i] = in_row(r, ln, l, y0 - 1 + i);
    for (int i = 0; i < 4; ++i)
      rows4[i] = y0 + i < r->ny ? out_row(r, ln, l, y0 + i) : NULL;
    for (int tx = tx0; tx < tx1; tx += NN_BLOCK) {
      int nt = tx1 - tx < NN_BLOCK ? tx1 - tx : NN_BLOCK;
      k->wino_in(rows6, p->csi, tx, nt, v, r->vxs);
      k->wino_gemm(v, r->vxs, p->csi, p->w, p->cin, m, r->vxs, p->cso, nt);
      k->wino_out(m, r->vxs, rows4, p->cso, tx, nt, r->nx, p->bias, p->relu);
    }
  } else {
    for (int y = y0; y < y1; ++y) {
      const float *rows3[3] = {in_row(r, ln, l, y - 1), in_row(r, ln, l, y),
                               in_row(r, ln, l, y + 1)};
      float *o = last ? tmp : out_row(r, ln, l, y) + p->cso;
      if (p->kind == NN_DIRECT_CO)
        k->direct_co(rows3, p->csi, p->cin, p->w, p->bias, cvec_up(p->cout),
                     p->relu, o, p->cso, px0, px1);
      else
        k->direct_ci(rows3, p->csi, p->w, p->bias, p->cout, p->relu, o, p->cso,
                     px0, px1);
      if (last) {
        const float *xr = ln->xn + (size_t)y * (size_t)r->wp + 1;
        float *dst = ln->out + (size_t)y * (size_t)r->nx;
        for (int x = px0; x < px1; ++x) {
          double on = r->s->residual ? (double)xr[x] - tmp[x] : (double)tmp[x];
          dst[x] = (float)(on * ln->scale + ln->offset);
        }
      }
    }
  }
  atomic_store_explicit(
      &ln->done[((size_t)l * (size_t)r->nb + (size_t)b) * (size_t)r->nc +
                (size_t)c],
      ln->gen, memory_order_release);
}

/* The schedule: step s runs band s - NN_LAG l of every layer l, chunk by
 * chunk. */
static void make_schedule(nn_run *r) {
  size_t n = 0;
  for (int s = 0; n < r->ntasks; ++s)
    for (int l = 0; l < r->L; ++l) {
      int b = s - NN_LAG * l;
      if (b < 0)
        break;
      if (b >= r->nb)
        continue;
      for (int c = 0; c < r->nc; ++c) {
        r->task[3 * n] = b;
        r->task[3 * n + 1] = l;
        r->task[3 * n + 2] = c;
        ++n;
      }
    }
}

/* Starts slice z in a lane: its normalisation (with the percentile of its
 * values if asked) into x_n. */
static void start_slice(const nn_run *r, nn_lane *ln, int z) {
  const clara_nn_setup *s = r->s;
  const float *src = r->in + (size_t)z * r->plane;
  double sc = s->scale, off = s->offset;
  if (s->norm == CLARA_NN_NORM_PERCENTILE) {
    size_t rank =
        (size_t)llround((double)(r->plane - 1) * s->percentile / 100.0);
    float pv;
    memcpy(ln->sel, src, r->plane * sizeof(float));
    pv = select_rank(ln->sel, r->plane, rank);
    sc = pv > 0.0f ? (double)pv : 1.0;
    off = 0.0;
  }
  for (int y = 0; y < r->ny; ++y) {
    float *d = ln->xn + (size_t)y * (size_t)r->wp + 1;
    const float *sr = src + (size_t)y * (size_t)r->nx;
    for (int x = 0; x < r->nx; ++x)
      d[x] = (float)(((double)sr[x] - off) / sc);
  }
  ln->scale = sc;
  ln->offset = off;
  ln->out = r->out + (size_t)z * r->plane;
  ln->gen++;
}

/* Whole slices in parallel: each worker runs the schedule of its slice in
 * order in its own lane (no waiting). */
static clara_status slice_task(void *arg, size_t z, int worker) {
  const nn_run *r = arg;
  nn_lane *ln = &r->lanes[worker];
  start_slice(r, ln, (int)z);
  for (size_t i = 0; i < r->ntasks; ++i)
    run_task(r, ln, i, worker);
  return CLARA_OK;
}

/* One slice, its tasks shared by the workers. */
static clara_status wave_task(void *arg, size_t index, int worker) {
  const nn_run *r = arg;
  run_task(r, r->wave, index, worker);
  return CLARA_OK;
}

/* Allocates a lane; returns 0, or -1 with *bytes the failed size. */
static int lane_alloc(const nn_run *r, nn_lane *ln, size_t *bytes) {
  const nn_cpu_state *st = r->st;
  size_t ring_rows = (size_t)r->ring_bands * NN_BAND;
  *bytes = r->ntasks * sizeof(atomic_int);
  ln->done_mem = calloc(r->ntasks, sizeof(atomic_int));
  ln->ring = calloc((size_t)r->L, sizeof *ln->ring);
  if (!ln->done_mem || !ln->ring)
    return -1;
  ln->done = ln->done_mem;
  for (size_t i = 0; i < r->ntasks; ++i)
    atomic_init(&ln->done[i], 0);
  /* Sizes: ny * wp and ring_rows * wp * 256 fit easily once nx * ny does
   * (the core checked that), since wp <= nx + 5. */
  *bytes = (size_t)r->ny * (size_t)r->wp * sizeof(float);
  ln->xn = clara_aligned_calloc((size_t)r->ny, (size_t)r->wp * sizeof(float));
  if (!ln->xn)
    return -1;
  for (int l = 0; l + 1 < r->L; ++l) {
    size_t row = (size_t)r->wp * (size_t)st->layers[l].cso * sizeof(float);
    *bytes = ring_rows * row;
    ln->ring[l] = clara_aligned_calloc(ring_rows, row);
    if (!ln->ring[l])
      return -1;
  }
  if (r->s->norm == CLARA_NN_NORM_PERCENTILE) {
    *bytes = r->plane * sizeof(float);
    ln->sel = malloc(*bytes);
    if (!ln->sel)
      return -1;
  }
  return 0;
}

static void lane_free(const nn_run *r, nn_lane *ln) {
  free(ln->sel);
  if (ln->ring)
    for (int l = 0; l < r->L; ++l)
      clara_aligned_free(ln->ring[l]);
  free(ln->ring);
  clara_aligned_free(ln->xn);
  free(ln->done_mem);
}

clara_status clara_cpu_nn_execute(const clara_context *ctx,
                                  const clara_nn_setup *s, const void *state,
                                  const float *in, float *out, int nx, int ny,
                                  int nslices) {
  static const char who[] = "clara_denoise";
  const nn_cpu_state *st = state;
  nn_run r;
  clara_status status = CLARA_OK;
  int threads = ctx->threads > 0 ? ctx->threads : 1, by_slice;
  size_t bytes = 0;
  clara_progress prog;

  memset(&r, 0, sizeof r);
  r.st = st;
  r.s = s;
  r.in = in;
  r.out = out;
  r.nx = nx;
  r.ny = ny;
  r.plane = (size_t)nx * (size_t)ny;
  r.L = st->n_layers;
  r.ntx = (nx + 3) / 4;
  r.wp = 4 * r.ntx + 2;
  r.nb = (ny + NN_BAND - 1) / NN_BAND;
  /* Small slices in a batch run whole, one per worker: their tasks are
   * too short to share. Otherwise the workers share each slice, in column
   * chunks too when the layers alone give too few tasks at once. */
  by_slice = threads > 1 && nslices >= threads && r.plane <= NN_SMALL_SLICE;
  if (by_slice) {
    /* ... unless their buffers, one set per worker, would exceed
     * NN_LANES_BYTES. */
    double lane = (double)ny * r.wp;
    for (int l = 0; l + 1 < r.L; ++l)
      lane += (double)NN_RING * NN_BAND * r.wp * st->layers[l].cso;
    by_slice = lane * sizeof(float) * threads <= NN_LANES_BYTES;
  }
  r.nc = by_slice ? 1 : (2 * threads + r.L - 1) / r.L;
  if (r.nc > r.ntx / 8)
    r.nc = r.ntx / 8;
  if (r.nc < 1)
    r.nc = 1;
  r.ntasks = (size_t)r.nb * (size_t)r.L * (size_t)r.nc;
  if (!by_slice && (size_t)threads > r.ntasks)
    threads = (int)r.ntasks;
  r.ring_bands = r.nb < NN_RING ? r.nb : NN_RING;
  /* One cache line more than the block: the 36 planes of a tile then fall
   * into different cache sets (a multiple of 4 KiB would put them all in
   * one and thrash L1 in the transforms). */
  r.vxs = (size_t)NN_BLOCK * (size_t)st->max_cs + CLARA_NN_CVEC;
  r.per_worker = 2 * 36 * r.vxs + (size_t)cvec_up(r.wp);
  r.nlanes = by_slice ? threads : 1;

  bytes = r.ntasks * 3 * sizeof *r.task;
  r.chunk = calloc((size_t)r.nc + 1, sizeof *r.chunk);
  r.task = calloc(r.ntasks * 3, sizeof *r.task);
  r.lanes = calloc((size_t)r.nlanes, sizeof *r.lanes);
  if (!r.chunk || !r.task || !r.lanes)
    goto oom;
  for (int c = 0; c <= r.nc; ++c)
    r.chunk[c] = (int)((long long)c * r.ntx / r.nc);
  make_schedule(&r);
  for (int i = 0; i < r.nlanes; ++i)
    if (lane_alloc(&r, &r.lanes[i], &bytes) != 0)
      goto oom;
  bytes = (size_t)r.wp * (size_t)st->max_cs * sizeof(float);
  r.zero =
      clara_aligned_calloc((size_t)r.wp, (size_t)st->max_cs * sizeof(float));
  if (!r.zero)
    goto oom;
  bytes = r.per_worker * (size_t)threads * sizeof(float);
  r.scratch =
      clara_aligned_calloc((size_t)threads, r.per_worker * sizeof(float));
  if (!r.scratch)
    goto oom;

  if (by_slice) {
    clara_progress_for(ctx, "denoise", 0.0, 1.0, &prog);
    status =
        clara_parallel_for(threads, (size_t)nslices, slice_task, &r, &prog);
  } else {
    r.wave = &r.lanes[0];
    for (int z = 0; z < nslices && status == CLARA_OK; ++z) {
      start_slice(&r, r.wave, z);
      clara_progress_for(ctx, "denoise", (double)z / nslices, 1.0 / nslices,
                         &prog);
      status = clara_parallel_for(threads, r.ntasks, wave_task, &r, &prog);
    }
  }
  goto done;
oom:
  status = clara_fail(CLARA_ERR_OUT_OF_MEMORY,
                      "%s: cannot allocate %zu bytes of scratch for a %d x %d "
                      "slice",
                      who, bytes, nx, ny);
done:
  clara_aligned_free(r.scratch);
  clara_aligned_free(r.zero);
  if (r.lanes)
    for (int i = 0; i < r.nlanes; ++i)
      lane_free(&r, &r.lanes[i]);
  free(r.lanes);
  free(r.task);
  free(r.chunk);
  return status;
}
