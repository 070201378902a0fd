/*
 * clara-recon.c -- the command-line tool of libclara-recon.
 *
 *   clara-recon phantom ct --geometry G --size N --views V -o FILE.h5
 *   clara-recon phantom mr --size N --coils C -o FILE.h5 [options]
 *   clara-recon ct IN.h5 -o OUT.h5 [options]
 *   clara-recon mr IN.h5 -o OUT.h5 [options]
 *   clara-recon info FILE.h5 [--compare TRUTH.h5]
 *   clara-recon demo [-o DIR] [--size N]
 *
 * Only the public API of clara_recon.h is used. Exit status: 0 on success,
 * 1 when the library (or the system) reports a failure, 2 for a usage error.
 *
 * Simulated scans ("phantom ct", "demo") use the modified Shepp-Logan
 * phantom of radius 100 mm, densities times 0.02 (mu in 1/mm), on a grid of
 * 230 mm across. Divergent beams have the source 500 mm from the axis and
 * the detector 1000 mm from the source (magnification 2); by default the
 * detector spans +-125 mm at the isocentre with ceil(1.5 N) columns.
 *
 * Noise (--noise I0): each ray's count is drawn from Poisson(I0 exp(-p)) and
 * turned back into -ln(count / I0), a count of 0 being clamped to 1. The
 * generator is splitmix64; Poisson deviates use Knuth's multiplication
 * method for means below 10 and Hormann's transformed rejection (PTRS, W.
 * Hormann, "The transformed rejection method for generating Poisson random
 * variables", Insurance: Mathematics and Economics 12 (1993) 39-45) above:
 * both are exact, and a given --seed always gives the same data.
 */
#include "clara_recon.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROG "clara-recon"

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

enum { EXIT_USAGE = 2 };

static const double kPi = 3.14159265358979323846;

/* The simulated scanner and phantom (see the top of the file). */
static const double kPhantomRadius = 100.0; /* mm */
static const double kPhantomScale = 0.02;   /* density -> mu in 1/mm */
static const double kGridExtent = 230.0;    /* mm across the truth grid */
static const double kDetectorHalf = 125.0;  /* mm at the isocentre */
static const double kSourceToIso = 500.0;   /* mm */
static const double kSourceToDet = 1000.0;  /* mm */
static const double kMuWater = 0.0192;      /* 1/mm, for --hu alone */
static const int kTruthSupersample = 3;

/* Limits for the numbers on the command line. */
#define MAX_SIZE 65536
#define MAX_VIEWS 1000000
#define MAX_ROWS 65536
#define MAX_COLS 1048576
#define MAX_THREADS 4096

/* The subcommand being run, for messages ("ct", "info", ...). */
static const char *g_cmd = NULL;

/* ------------------------------------------------------------------------ */
/* Messages                                                                  */
/* ------------------------------------------------------------------------ */

/* A failed library call: "clara-recon: <what>: <status>: <message>". */
static int lib_error(clara_status st, const char *fmt, ...) PRINTF_LIKE(2, 3);
static int lib_error(clara_status st, const char *fmt, ...) {
  va_list ap;
  fputs(PROG ": ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, ": %s: %s\n", clara_status_name(st), clara_last_error());
  return EXIT_FAILURE;
}

/* Any other failure (system, data): "clara-recon: <message>". */
static int fail_msg(const char *fmt, ...) PRINTF_LIKE(1, 2);
static int fail_msg(const char *fmt, ...) {
  va_list ap;
  fputs(PROG ": ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return EXIT_FAILURE;
}

/* A usage error: the message and a hint, exit status 2. */
static int usage_error(const char *fmt, ...) PRINTF_LIKE(1, 2);
static int usage_error(const char *fmt, ...) {
  va_list ap;
  if (g_cmd)
    fprintf(stderr, PROG " %s: ", g_cmd);
  else
    fputs(PROG ": ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  if (g_cmd)
    fprintf(stderr, "Try '" PROG " %s --help'.\n", g_cmd);
  else
    fputs("Try '" PROG " --help'.\n", stderr);
  return EXIT_USAGE;
}

/* getopt_long returned '?' (unknown option) or ':' (missing value). */
static int bad_option(int c, char **argv) {
  const char *text = optind > 0 ? argv[optind - 1] : "?";
  if (c == ':')
    return usage_error("option '%s' needs a value", text);
  if (optopt > 0 && optopt < 128 && strncmp(text, "--", 2) != 0)
    return usage_error("unknown option '-%c'", optopt);
  if (strncmp(text, "--", 2) == 0 && strchr(text, '='))
    return usage_error("unknown option, or an option that takes no value: "
                       "'%s'",
                       text);
  return usage_error("unknown option '%s'", text);
}

/* ------------------------------------------------------------------------ */
/* Numbers                                                                   */
/* ------------------------------------------------------------------------ */

static int parse_int(const char *opt, const char *s, long lo, long hi,
                     int *out) {
  char *end;
  long v;
  if (!*s || isspace((unsigned char)*s))
    return usage_error("%s: '%s' is not an integer", opt, s);
  errno = 0;
  v = strtol(s, &end, 10);
  if (end == s || *end)
    return usage_error("%s: '%s' is not an integer", opt, s);
  if (errno == ERANGE || v < lo || v > hi)
    return usage_error("%s: %s is out of range (%ld to %ld)", opt, s, lo, hi);
  *out = (int)v;
  return 0;
}

/* A finite number in (lo, hi] when lo_open, else [lo, hi]. */
static int parse_double(const char *opt, const char *s, double lo, double hi,
                        int lo_open, double *out) {
  char *end;
  double v;
  if (!*s || isspace((unsigned char)*s))
    return usage_error("%s: '%s' is not a number", opt, s);
  errno = 0;
  v = strtod(s, &end);
  if (end == s || *end || !isfinite(v))
    return usage_error("%s: '%s' is not a finite number", opt, s);
  if ((lo_open ? v <= lo : v < lo) || v > hi || errno == ERANGE)
    return usage_error("%s: %s is out of range (must be %s %g and <= %g)", opt,
                       s, lo_open ? ">" : ">=", lo, hi);
  *out = v;
  return 0;
}

static int parse_u64(const char *opt, const char *s, uint64_t *out) {
  char *end;
  unsigned long long v;
  if (!isdigit((unsigned char)*s))
    return usage_error("%s: '%s' is not a non-negative integer", opt, s);
  errno = 0;
  v = strtoull(s, &end, 10);
  if (*end)
    return usage_error("%s: '%s' is not a non-negative integer", opt, s);
  if (errno == ERANGE)
    return usage_error("%s: %s is out of range", opt, s);
  *out = (uint64_t)v;
  return 0;
}

/* Whether s is a whole number that --hu can take as its value. */
static int looks_like_number(const char *s) {
  char *end;
  double v;
  if (!s || !*s || isspace((unsigned char)*s))
    return 0;
  v = strtod(s, &end);
  return end != s && !*end && isfinite(v);
}

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* a*b*c floats, or 0 when that overflows the address space. */
static size_t count3(int a, int b, int c) {
  size_t n = (size_t)a;
  if (a <= 0 || b <= 0 || c <= 0)
    return 0;
  if (n > SIZE_MAX / (size_t)b)
    return 0;
  n *= (size_t)b;
  if (n > SIZE_MAX / (size_t)c)
    return 0;
  n *= (size_t)c;
  if (n > SIZE_MAX / sizeof(float))
    return 0;
  return n;
}

static float *alloc_floats(size_t n) {
  if (n == 0 || n > SIZE_MAX / sizeof(float))
    return NULL;
  return malloc(n * sizeof(float));
}

static size_t volume_count(const clara_volume *v) {
  return count3(v->nx, v->ny, v->nz);
}

/* Checks before any work that 'path' can be created: its directory exists
 * and is writable, and the path itself is not a directory. The library's
 * writer has the last word; this only saves a long computation. */
static int check_output_path(const char *path) {
  struct stat st;
  const char *slash = strrchr(path, '/');
  char *dir;
  int rc = 0;
  if (slash && slash[1] == '\0')
    return fail_msg("cannot write %s: it names a directory", path);
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
    return fail_msg("cannot write %s: it is a directory", path);
  if (!slash)
    dir = strdup(".");
  else
    dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
  if (!dir)
    return fail_msg("out of memory");
  if (stat(dir, &st) != 0)
    rc = fail_msg("cannot write %s: %s: %s", path, dir, strerror(errno));
  else if (!S_ISDIR(st.st_mode))
    rc = fail_msg("cannot write %s: %s is not a directory", path, dir);
  else if (access(dir, W_OK | X_OK) != 0)
    rc = fail_msg("cannot write %s: %s: %s", path, dir, strerror(errno));
  free(dir);
  return rc;
}

/* Whether a library message says that 'object' is absent from the file (as
 * opposed to present but malformed). */
static int says_missing(const char *msg, const char *object) {
  char needle[64];
  snprintf(needle, sizeof needle, "%s: missing (", object);
  return strstr(msg, needle) != NULL;
}

typedef struct stats {
  double min, max, mean;
  size_t nonfinite;
} stats;

static stats compute_stats(const float *a, size_t n) {
  stats s = {0, 0, 0, 0};
  double sum = 0;
  size_t finite = 0;
  for (size_t i = 0; i < n; i++) {
    double v = a[i];
    if (!isfinite(v)) {
      s.nonfinite++;
      continue;
    }
    if (finite == 0 || v < s.min)
      s.min = v;
    if (finite == 0 || v > s.max)
      s.max = v;
    sum += v;
    finite++;
  }
  s.mean = finite ? sum / (double)finite : 0;
  return s;
}

/* ------------------------------------------------------------------------ */
/* Random numbers                                                            */
/* ------------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* Uniform in the open interval (0, 1). */
static double uniform01(uint64_t *state) {
  return ((double)(splitmix64(state) >> 11) + 0.5) * 0x1.0p-53;
}

/* A Poisson deviate of mean 'lam' (as a double: means can be huge). */
static double poisson(uint64_t *state, double lam) {
  if (!(lam > 0))
    return 0;
  if (lam < 10) { /* Knuth */
    double limit = exp(-lam), p = 1;
    double k = -1;
    do {
      k += 1;
      p *= uniform01(state);
    } while (p > limit);
    return k;
  }
  { /* Hormann's PTRS */
    double slam = sqrt(lam), loglam = log(lam);
    double b = 0.931 + 2.53 * slam;
    double a = -0.059 + 0.02483 * b;
    double invalpha = 1.1239 + 1.1328 / (b - 3.4);
    double vr = 0.9277 - 3.6224 / (b - 2);
    for (;;) {
      double u = uniform01(state) - 0.5;
      double v = uniform01(state);
      double us = 0.5 - fabs(u);
      double k = floor((2 * a / us + b) * u + lam + 0.43);
      if (us >= 0.07 && v <= vr)
        return k;
      if (k < 0 || (us < 0.013 && v > us))
        continue;
      if (log(v) + log(invalpha) - log(a / (us * us) + b) <=
          -lam + k * loglam - lgamma(k + 1))
        return k;
    }
  }
}

static void add_poisson_noise(float *proj, size_t n, double i0, uint64_t seed) {
  uint64_t state = seed;
  double log_i0 = log(i0);
  for (size_t i = 0; i < n; i++) {
    double count = poisson(&state, i0 * exp(-(double)proj[i]));
    if (count < 1)
      count = 1;
    proj[i] = (float)(log_i0 - log(count));
  }
}

/* ------------------------------------------------------------------------ */
/* Simulated scans                                                           */
/* ------------------------------------------------------------------------ */

typedef struct scan_spec {
  clara_geometry_kind kind;
  int size;         /* N: the truth grid is N x N (x N for cone) */
  int views;        /* number of views */
  int rows;         /* 0: N for cone, 1 otherwise */
  int cols;         /* 0: ceil(1.5 N) */
  double range_deg; /* 0: 180 for parallel, 360 otherwise */
  double noise_i0;  /* photons per ray; 0: no noise */
  uint64_t seed;
} scan_spec;

/* A scan in memory; all arrays from malloc. */
typedef struct scan {
  clara_ct_geometry geom;
  float *angles;
  float *proj;
  clara_volume truth_vol;
  float *truth;
  double range_deg; /* the angles cover [0, range_deg) */
} scan;

static void scan_free(scan *s) {
  free(s->angles);
  free(s->proj);
  free(s->truth);
  s->angles = s->proj = s->truth = NULL;
}

/* Exact projections of the Shepp-Logan phantom and its rasterised truth. */
static int build_scan(const scan_spec *sp, scan *out) {
  const int n = sp->size;
  const int cone = sp->kind == CLARA_GEOM_CONE;
  const double voxel = kGridExtent / n;
  const double mag = kSourceToDet / kSourceToIso;
  clara_ct_geometry *g = &out->geom;
  clara_volume *tv = &out->truth_vol;
  clara_phantom *ph = NULL;
  clara_status st;
  double range;
  size_t nproj, ntruth;
  int rc = EXIT_FAILURE;

  memset(out, 0, sizeof *out);
  g->kind = sp->kind;
  g->views = sp->views;
  g->cols = sp->cols > 0 ? sp->cols : (3 * n + 1) / 2;
  g->rows = sp->rows > 0 ? sp->rows : (cone ? n : 1);
  g->det_offset[0] = g->det_offset[1] = 0;
  switch (sp->kind) {
  case CLARA_GEOM_PARALLEL:
    g->det_spacing[0] = voxel;
    g->det_spacing[1] = 2 * kDetectorHalf / g->cols;
    g->source_to_iso = g->source_to_detector = NAN; /* not written */
    break;
  case CLARA_GEOM_FAN_ARC:
    g->det_spacing[0] = voxel * mag;
    g->det_spacing[1] = 2 * asin(kDetectorHalf / kSourceToIso) / g->cols;
    g->source_to_iso = kSourceToIso;
    g->source_to_detector = kSourceToDet;
    break;
  case CLARA_GEOM_FAN_FLAT:
  case CLARA_GEOM_CONE:
    /* cone: the rows span the grid's height, magnified to the detector */
    g->det_spacing[0] = cone ? kGridExtent * mag / g->rows : voxel * mag;
    g->det_spacing[1] = 2 * kDetectorHalf * mag / g->cols;
    g->source_to_iso = kSourceToIso;
    g->source_to_detector = kSourceToDet;
    break;
  }
  out->range_deg = sp->range_deg > 0                 ? sp->range_deg
                   : sp->kind == CLARA_GEOM_PARALLEL ? 180.0
                                                     : 360.0;
  range = out->range_deg * kPi / 180.0;

  tv->nx = tv->ny = n;
  tv->nz = cone ? n : g->rows;
  tv->voxel[0] = tv->voxel[1] = tv->voxel[2] = voxel;
  tv->center[0] = tv->center[1] = tv->center[2] = 0;

  nproj = count3(g->views, g->rows, g->cols);
  ntruth = volume_count(tv);
  out->angles = alloc_floats((size_t)g->views);
  out->proj = alloc_floats(nproj);
  out->truth = alloc_floats(ntruth);
  if (!out->angles || !out->proj || !out->truth) {
    rc = fail_msg("out of memory for %d views x %d rows x %d cols and a "
                  "%d x %d x %d truth",
                  g->views, g->rows, g->cols, tv->nx, tv->ny, tv->nz);
    goto done;
  }
  for (int v = 0; v < g->views; v++)
    out->angles[v] = (float)(range * v / g->views);
  g->angles = out->angles;

  st = clara_phantom_shepp_logan(cone ? 3 : 2, kPhantomRadius, kPhantomScale,
                                 &ph);
  if (st != CLARA_OK) {
    rc = lib_error(st, "creating the Shepp-Logan phantom");
    goto done;
  }
  st = clara_phantom_project(ph, g, out->proj);
  if (st != CLARA_OK) {
    rc = lib_error(st, "projecting the phantom");
    goto done;
  }
  if (sp->noise_i0 > 0)
    add_poisson_noise(out->proj, nproj, sp->noise_i0, sp->seed);
  st = clara_phantom_rasterize(ph, tv, kTruthSupersample, out->truth);
  if (st != CLARA_OK) {
    rc = lib_error(st, "rasterising the phantom");
    goto done;
  }
  rc = 0;
done:
  clara_phantom_destroy(ph);
  if (rc != 0)
    scan_free(out);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Reconstruction                                                            */
/* ------------------------------------------------------------------------ */

typedef struct recon_opts {
  clara_backend backend;
  int threads;
  clara_fbp_options fbp;
} recon_opts;

typedef struct recon_result {
  float *image; /* malloc'd, volume_count(vol) floats */
  clara_backend backend;
  int threads;
  double plan_ms, exec_ms;
  clara_fbp_info info;
} recon_result;

/* The radius of the circle every view sees, as the library computes it for
 * a scan without short-scan restrictions; 0 when the detector misses the
 * rotation axis. */
static double fov_radius(const clara_ct_geometry *g) {
  double du = g->det_spacing[1], off = g->det_offset[1];
  double half = 0.5 * (g->cols - 1) * du;
  double lo = off - half, hi = off + half, reach = 0;
  if (lo < 0 && hi > 0)
    reach = fabs(off) > 0.1 * half ? fmax(-lo, hi) : fmin(-lo, hi);
  switch (g->kind) {
  case CLARA_GEOM_PARALLEL:
    return reach;
  case CLARA_GEOM_FAN_ARC:
    return g->source_to_iso * sin(reach);
  case CLARA_GEOM_FAN_FLAT:
  case CLARA_GEOM_CONE:
    return g->source_to_iso * sin(atan(reach / g->source_to_detector));
  }
  return 0;
}

static int reconstruct(const clara_ct_geometry *g, const float *proj,
                       const clara_volume *vol, const recon_opts *ro,
                       recon_result *res) {
  clara_context_options co;
  clara_context *ctx = NULL;
  clara_fbp_plan *plan = NULL;
  float *image = NULL;
  clara_status st;
  double t0, t1, t2;
  int rc = EXIT_FAILURE;

  memset(res, 0, sizeof *res);
  clara_context_options_init(&co);
  co.backend = ro->backend;
  co.threads = ro->threads;
  st = clara_context_create(&co, &ctx);
  if (st != CLARA_OK) {
    rc = lib_error(st, "starting the %s backend",
                   clara_backend_name(ro->backend));
    goto done;
  }
  t0 = now_ms();
  st = clara_fbp_plan_create(ctx, g, vol, &ro->fbp, &plan);
  if (st != CLARA_OK) {
    double rvol = 0.5 * fmin(vol->nx * vol->voxel[0], vol->ny * vol->voxel[1]) +
                  hypot(vol->center[0], vol->center[1]);
    rc = lib_error(st, "planning the reconstruction");
    if (!(ro->fbp.flags & CLARA_FBP_ALLOW_TRUNCATION) &&
        rvol > fov_radius(g) + fmax(vol->voxel[0], vol->voxel[1]))
      fprintf(stderr, PROG ": hint: choose a smaller grid with --size and "
                           "--voxel, or pass --allow-truncation\n");
    goto done;
  }
  t1 = now_ms();
  image = alloc_floats(volume_count(vol));
  if (!image) {
    rc = fail_msg("out of memory for a %d x %d x %d image", vol->nx, vol->ny,
                  vol->nz);
    goto done;
  }
  st = clara_fbp_execute(plan, proj, image);
  if (st != CLARA_OK) {
    rc = lib_error(st, "reconstructing");
    goto done;
  }
  t2 = now_ms();
  st = clara_fbp_plan_info(plan, &res->info);
  if (st != CLARA_OK) {
    rc = lib_error(st, "reading the plan's facts");
    goto done;
  }
  res->image = image;
  image = NULL;
  res->backend = clara_context_backend(ctx);
  res->threads = clara_context_threads(ctx);
  res->plan_ms = t1 - t0;
  res->exec_ms = t2 - t1;
  rc = 0;
done:
  free(image);
  clara_fbp_plan_destroy(plan);
  clara_context_destroy(ctx);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* clara-recon phantom ct                                                    */
/* ------------------------------------------------------------------------ */

static void phantom_help(FILE *f) {
  fprintf(f,
          "Usage: " PROG " phantom ct --geometry G --size N --views V "
          "-o FILE.h5\n"
          "                           [OPTIONS]\n"
          "Writes a CT input file with exact projections of the modified "
          "Shepp-Logan\n"
          "phantom (radius 100 mm, mu = 0.02 x density in 1/mm; 3D for cone) "
          "and /truth,\n"
          "the phantom on an N x N grid (x N for cone; nz = rows otherwise) "
          "of 230/N mm\n"
          "voxels.\n"
          "\n"
          "  -g, --geometry G   parallel, fan-flat, fan-arc or cone\n"
          "  -n, --size N       truth grid size (1..%d)\n"
          "      --views V      number of views, uniform from 0 degrees\n"
          "      --range DEG    angles covered (default 180 for parallel, "
          "360 otherwise)\n"
          "      --rows R       detector rows (default N for cone, else 1: a "
          "stack of\n"
          "                     R identical 2D sinograms)\n"
          "      --cols C       detector columns (default ceil(1.5 N)); the "
          "detector\n"
          "                     always spans +-125 mm at the isocentre\n"
          "      --noise I0     Poisson noise: I0 photons per ray, the count "
          "drawn from\n"
          "                     Poisson(I0 exp(-p)) and clamped to >= 1\n"
          "      --seed S       noise seed (default 0; same seed, same data)\n"
          "  -o, --output FILE  the file to write\n"
          "  -q, --quiet        print nothing on success\n"
          "  -h, --help         this help\n"
          "Divergent beams: source 500 mm from the axis, detector 1000 mm "
          "from the source.\n"
          "'" PROG " phantom mr --help' describes the MR phantom.\n",
          MAX_SIZE);
}

enum {
  OPT_VIEWS = 256,
  OPT_RANGE,
  OPT_ROWS,
  OPT_COLS,
  OPT_NOISE,
  OPT_SEED,
  OPT_BACKEND,
  OPT_FILTER,
  OPT_CUTOFF,
  OPT_VOXEL,
  OPT_HU,
  OPT_THREADS,
  OPT_ALLOW_TRUNCATION,
  OPT_COMPARE,
  OPT_COILS,
  OPT_OVERSAMPLING,
  OPT_PARTIAL_FOURIER,
  OPT_TRUTH,
  OPT_COMBINE,
  OPT_NORM,
  OPT_WINDOW,
  OPT_DATASET
};

static int cmd_phantom_mr(int argc, char **argv);

/* Whether the phantom command asks for the MR phantom: the word "mr" where
 * a kind can stand (not as the value of an option). */
static int phantom_kind_is_mr(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *prev = argv[i - 1];
    if (strcmp(argv[i], "--") == 0)
      return i + 1 < argc && strcmp(argv[i + 1], "mr") == 0;
    if (strcmp(argv[i], "mr") != 0)
      continue;
    if (i == 1 || prev[0] != '-' || strchr(prev, '=') ||
        strcmp(prev, "-q") == 0 || strcmp(prev, "--quiet") == 0 ||
        strcmp(prev, "-h") == 0 || strcmp(prev, "--help") == 0)
      return 1;
  }
  return 0;
}

static int cmd_phantom(int argc, char **argv) {
  static const struct option longopts[] = {
      {"geometry", required_argument, NULL, 'g'},
      {"size", required_argument, NULL, 'n'},
      {"views", required_argument, NULL, OPT_VIEWS},
      {"range", required_argument, NULL, OPT_RANGE},
      {"rows", required_argument, NULL, OPT_ROWS},
      {"cols", required_argument, NULL, OPT_COLS},
      {"noise", required_argument, NULL, OPT_NOISE},
      {"seed", required_argument, NULL, OPT_SEED},
      {"output", required_argument, NULL, 'o'},
      {"quiet", no_argument, NULL, 'q'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  scan_spec sp;
  scan sc;
  const char *output = NULL, *geometry = NULL;
  int quiet = 0, c, rc;
  clara_status st;

  if (phantom_kind_is_mr(argc, argv))
    return cmd_phantom_mr(argc, argv);
  memset(&sp, 0, sizeof sp);
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":g:n:o:qh", longopts, NULL)) != -1) {
    switch (c) {
    case 'g':
      geometry = optarg;
      break;
    case 'n':
      if ((rc = parse_int("--size", optarg, 1, MAX_SIZE, &sp.size)))
        return rc;
      break;
    case OPT_VIEWS:
      if ((rc = parse_int("--views", optarg, 1, MAX_VIEWS, &sp.views)))
        return rc;
      break;
    case OPT_RANGE:
      if ((rc = parse_double("--range", optarg, 0, 3600, 1, &sp.range_deg)))
        return rc;
      break;
    case OPT_ROWS:
      if ((rc = parse_int("--rows", optarg, 1, MAX_ROWS, &sp.rows)))
        return rc;
      break;
    case OPT_COLS:
      if ((rc = parse_int("--cols", optarg, 1, MAX_COLS, &sp.cols)))
        return rc;
      break;
    case OPT_NOISE:
      if ((rc = parse_double("--noise", optarg, 0, 1e15, 1, &sp.noise_i0)))
        return rc;
      break;
    case OPT_SEED:
      if ((rc = parse_u64("--seed", optarg, &sp.seed)))
        return rc;
      break;
    case 'o':
      output = optarg;
      break;
    case 'q':
      quiet = 1;
      break;
    case 'h':
      phantom_help(stdout);
      return 0;
    default:
      return bad_option(c, argv);
    }
  }
  if (optind >= argc)
    return usage_error("what kind of phantom? ('phantom ct' or 'phantom mr')");
  if (strcmp(argv[optind], "ct") != 0)
    return usage_error("unknown phantom kind '%s' ('ct' or 'mr')",
                       argv[optind]);
  if (optind + 1 < argc)
    return usage_error("unexpected argument '%s'", argv[optind + 1]);
  if (!geometry)
    return usage_error("--geometry is required");
  st = clara_geometry_parse(geometry, &sp.kind);
  if (st != CLARA_OK)
    return usage_error("--geometry: %s", clara_last_error());
  if (sp.size == 0)
    return usage_error("--size is required");
  if (sp.views == 0)
    return usage_error("--views is required");
  if (!output || !*output)
    return usage_error("the output file is required (-o FILE.h5)");
  if ((rc = check_output_path(output)))
    return rc;

  if ((rc = build_scan(&sp, &sc)))
    return rc;
  st = clara_ct_file_write(output, &sc.geom, sc.proj, &sc.truth_vol, sc.truth);
  if (st != CLARA_OK) {
    rc = lib_error(st, "writing %s", output);
  } else if (!quiet) {
    printf("phantom: %s, %d views over %.6g deg, %d x %d detector%s; truth "
           "%d x %d x %d of %.4g mm; wrote %s\n",
           clara_geometry_name(sc.geom.kind), sc.geom.views, sc.range_deg,
           sc.geom.rows, sc.geom.cols, sp.noise_i0 > 0 ? ", Poisson noise" : "",
           sc.truth_vol.nx, sc.truth_vol.ny, sc.truth_vol.nz,
           sc.truth_vol.voxel[0], output);
  }
  scan_free(&sc);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* clara-recon ct                                                            */
/* ------------------------------------------------------------------------ */

static void ct_help(FILE *f) {
  fprintf(f,
          "Usage: " PROG " ct IN.h5 -o OUT.h5 [OPTIONS]\n"
          "Reconstructs a CT input file with filtered back-projection (FDK "
          "for cone) and\n"
          "writes the volume as /image.\n"
          "\n"
          "  -o, --output FILE     the image file to write\n"
          "      --backend B       auto (default), cpu or cuda\n"
          "      --filter F        ram-lak (default; also ramp), "
          "shepp-logan, cosine,\n"
          "                        hamming or hann\n"
          "      --cutoff C        filter cutoff in (0, 1] x Nyquist "
          "(default 1)\n"
          "      --size N          N x N voxels (x N for cone)\n"
          "      --voxel MM        voxel size in mm\n"
          "      --hu[=MU_WATER]   output Hounsfield units (mu_water "
          "default %g /mm)\n"
          "      --threads T       worker threads (default 0: all cores)\n"
          "      --allow-truncation\n"
          "                        reconstruct even where the detector does "
          "not cover the\n"
          "                        grid (expect cupping)\n"
          "  -q, --quiet           print nothing on success\n"
          "  -h, --help            this help\n"
          "\n"
          "The grid: the grid of the file's /truth when it has one; "
          "otherwise cols x cols\n"
          "voxels spanning the field of view's diameter (nz = cols for cone, "
          "with the same\n"
          "voxel along z). --size and --voxel keep that grid's extent when "
          "given alone, and\n"
          "together set the grid exactly. Parallel and fan scans always have "
          "nz = rows.\n",
          kMuWater);
}

/* The grid to reconstruct on: 'base' (the file's truth grid) or the field
 * of view, then --size / --voxel. */
static int choose_grid(const clara_ct_geometry *g, const clara_volume *base,
                       int size, double voxel, clara_volume *out) {
  const int cone = g->kind == CLARA_GEOM_CONE;
  clara_volume v;
  if (base) {
    v = *base;
  } else if (size > 0 && voxel > 0) {
    v.nx = v.ny = v.nz = size;
    v.voxel[0] = v.voxel[1] = v.voxel[2] = voxel;
  } else {
    double fov = fov_radius(g);
    if (!(fov > 0))
      return fail_msg("the detector does not see the rotation axis, so there "
                      "is no default grid; give --size and --voxel");
    v.nx = v.ny = v.nz = g->cols;
    v.voxel[0] = v.voxel[1] = v.voxel[2] = 2 * fov / g->cols;
  }
  if (!base)
    v.center[0] = v.center[1] = v.center[2] = 0;
  if (size > 0) {
    int *n[3] = {&v.nx, &v.ny, &v.nz};
    for (int i = 0; i < (cone ? 3 : 2); i++) {
      double extent = *n[i] * v.voxel[i];
      *n[i] = size;
      v.voxel[i] = voxel > 0 ? voxel : extent / size;
    }
    if (!cone && voxel > 0)
      v.voxel[2] = voxel;
  } else if (voxel > 0) {
    int *n[3] = {&v.nx, &v.ny, &v.nz};
    for (int i = 0; i < 3; i++) {
      if (i < 2 || cone) {
        double count = round(*n[i] * v.voxel[i] / voxel);
        if (count > MAX_SIZE)
          return usage_error("--voxel %g: the grid would have %.0f voxels "
                             "across (at most %d)",
                             voxel, count, MAX_SIZE);
        *n[i] = count < 1 ? 1 : (int)count;
      }
      v.voxel[i] = voxel;
    }
  }
  if (!cone)
    v.nz = g->rows;
  *out = v;
  return 0;
}

static int cmd_ct(int argc, char **argv) {
  static const struct option longopts[] = {
      {"output", required_argument, NULL, 'o'},
      {"backend", required_argument, NULL, OPT_BACKEND},
      {"filter", required_argument, NULL, OPT_FILTER},
      {"cutoff", required_argument, NULL, OPT_CUTOFF},
      {"size", required_argument, NULL, 'n'},
      {"voxel", required_argument, NULL, OPT_VOXEL},
      {"hu", optional_argument, NULL, OPT_HU},
      {"threads", required_argument, NULL, OPT_THREADS},
      {"allow-truncation", no_argument, NULL, OPT_ALLOW_TRUNCATION},
      {"quiet", no_argument, NULL, 'q'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *output = NULL, *input;
  recon_opts ro;
  recon_result res;
  clara_ct_geometry geom;
  clara_volume vol, truth_vol;
  float *angles = NULL, *proj = NULL, *truth = NULL;
  int size = 0, quiet = 0, have_truth = 0, c, rc;
  double voxel = 0;
  clara_status st;

  memset(&res, 0, sizeof res);
  ro.backend = CLARA_BACKEND_AUTO;
  ro.threads = 0;
  clara_fbp_options_init(&ro.fbp);
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":o:n:qh", longopts, NULL)) != -1) {
    switch (c) {
    case 'o':
      output = optarg;
      break;
    case OPT_BACKEND:
      if (clara_backend_parse(optarg, &ro.backend) != CLARA_OK)
        return usage_error("--backend: %s", clara_last_error());
      break;
    case OPT_FILTER:
      if (clara_filter_parse(optarg, &ro.fbp.filter) != CLARA_OK)
        return usage_error("--filter: %s", clara_last_error());
      break;
    case OPT_CUTOFF:
      if ((rc = parse_double("--cutoff", optarg, 0, 1, 1, &ro.fbp.cutoff)))
        return rc;
      break;
    case 'n':
      if ((rc = parse_int("--size", optarg, 1, MAX_SIZE, &size)))
        return rc;
      break;
    case OPT_VOXEL:
      if ((rc = parse_double("--voxel", optarg, 0, 1e6, 1, &voxel)))
        return rc;
      break;
    case OPT_HU:
      ro.fbp.mu_water = kMuWater;
      /* "--hu 0.02" as well as "--hu=0.02" */
      if (!optarg && optind < argc && looks_like_number(argv[optind]))
        optarg = argv[optind++];
      if (optarg &&
          (rc = parse_double("--hu", optarg, 0, 10, 1, &ro.fbp.mu_water)))
        return rc;
      break;
    case OPT_THREADS:
      if ((rc = parse_int("--threads", optarg, 0, MAX_THREADS, &ro.threads)))
        return rc;
      break;
    case OPT_ALLOW_TRUNCATION:
      ro.fbp.flags |= CLARA_FBP_ALLOW_TRUNCATION;
      break;
    case 'q':
      quiet = 1;
      break;
    case 'h':
      ct_help(stdout);
      return 0;
    default:
      return bad_option(c, argv);
    }
  }
  if (optind >= argc)
    return usage_error("the input file is required (" PROG
                       " ct IN.h5 -o OUT.h5)");
  if (optind + 1 < argc)
    return usage_error("unexpected argument '%s'", argv[optind + 1]);
  input = argv[optind];
  if (!output || !*output)
    return usage_error("the output file is required (-o OUT.h5)");
  if ((rc = check_output_path(output)))
    return rc;

  st = clara_ct_file_read(input, &geom, &angles, &proj);
  if (st != CLARA_OK)
    return lib_error(st, "reading %s", input);
  st = clara_image_file_read(input, "/truth", &truth_vol, &truth, NULL, 0);
  if (st == CLARA_OK) {
    have_truth = 1;
    clara_free(truth); /* only its grid is needed */
  } else if (st != CLARA_ERR_FORMAT) {
    rc = lib_error(st, "reading /truth of %s", input);
    goto done;
  } else if (!quiet && !says_missing(clara_last_error(), "/truth")) {
    fprintf(stderr,
            PROG ": warning: ignoring the unreadable /truth of %s (%s); "
                 "using the default grid\n",
            input, clara_last_error());
  }
  if ((rc = choose_grid(&geom, have_truth ? &truth_vol : NULL, size, voxel,
                        &vol)))
    goto done;
  if ((rc = reconstruct(&geom, proj, &vol, &ro, &res)))
    goto done;
  st = clara_image_file_write(output, &vol, res.image,
                              ro.fbp.mu_water > 0 ? "HU" : "1/mm");
  if (st != CLARA_OK) {
    rc = lib_error(st, "writing %s", output);
    goto done;
  }
  if (!quiet)
    printf("ct: %s, %d views x %d x %d -> %d x %d x %d voxels of %.4g mm "
           "(%s, %s, %d thread%s): %.1f ms (plan %.1f, execute %.1f); "
           "wrote %s\n",
           clara_geometry_name(geom.kind), geom.views, geom.rows, geom.cols,
           vol.nx, vol.ny, vol.nz, vol.voxel[0],
           clara_filter_name(ro.fbp.filter), clara_backend_name(res.backend),
           res.threads, res.threads == 1 ? "" : "s", res.plan_ms + res.exec_ms,
           res.plan_ms, res.exec_ms, output);
done:
  free(res.image);
  clara_free(angles);
  clara_free(proj);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* clara-recon phantom mr                                                    */
/* ------------------------------------------------------------------------ */

/* Noise scans written by "phantom mr --noise": samples per coil. */
#define MR_NOISE_SAMPLES 1024
/* Coupling of each coil's noise with the previous coil's. */
static const double kMrNoiseCoupling = 0.3;

static void phantom_mr_help(FILE *f) {
  fprintf(f,
          "Usage: " PROG " phantom mr --size N --coils C -o FILE.h5 "
          "[OPTIONS]\n"
          "Writes an ISMRMRD file with the exact k-space of the 2D modified "
          "Shepp-Logan\n"
          "phantom (radius N/2 mm: the FOV is N mm, 1 mm pixels) seen by C "
          "coils with\n"
          "smooth sensitivity maps, on an (oversampling x N) x N Cartesian "
          "grid.\n"
          "\n"
          "  -n, --size N              recon grid N x N (2..%d)\n"
          "      --coils C             receive coils (1..1024)\n"
          "      --oversampling R      readout oversampling 1..4 (default "
          "2)\n"
          "      --noise SIGMA         complex Gaussian k-space noise, "
          "SIGMA per real and\n"
          "                            imaginary part (default 0: none); "
          "also writes %d\n"
          "                            noise samples per coil; neighbouring "
          "coils'\n"
          "                            noise is correlated (coupling %.1f)\n"
          "      --partial-fourier F   acquire only the last fraction F of "
          "the ky lines\n"
          "                            (0.5..1, default 1)\n"
          "      --seed S              noise seed (default 0)\n"
          "      --truth FILE          also write the truth as FILE's /image "
          "(N x N x 1):\n"
          "                            the RSS of phantom x maps, |f| "
          "sqrt(sum |S_c|^2),\n"
          "                            which an RSS or adaptive "
          "reconstruction estimates\n"
          "  -o, --output FILE         the ISMRMRD file to write\n"
          "  -q, --quiet               print nothing on success\n"
          "  -h, --help                this help\n",
          MAX_SIZE, MR_NOISE_SAMPLES, kMrNoiseCoupling);
}

/* A standard normal deviate (Box-Muller). */
static double gauss01(uint64_t *state) {
  double u = uniform01(state), v = uniform01(state);
  return sqrt(-2.0 * log(u)) * cos(2.0 * kPi * v);
}

/* n complex samples per coil of coupled Gaussian noise, n_0 = sigma z_0 and
 * n_c = sigma (z_c + a z_{c-1}) / sqrt(1 + a^2) for c > 0, written (or
 * added, when 'add') to out[c * coil_stride + i], i < n (complex units). */
static void coupled_noise(uint64_t *state, int coils, size_t n, double sigma,
                          float *out, size_t coil_stride, int add) {
  double a = kMrNoiseCoupling, norm = 1.0 / sqrt(1.0 + a * a);
  for (size_t i = 0; i < n; i++) {
    double prev_re = 0, prev_im = 0;
    for (int c = 0; c < coils; c++) {
      double zr = gauss01(state), zi = gauss01(state);
      double re = c ? (zr + a * prev_re) * norm : zr;
      double im = c ? (zi + a * prev_im) * norm : zi;
      float *o = out + ((size_t)c * coil_stride + i) * 2;
      if (add) {
        o[0] += (float)(sigma * re);
        o[1] += (float)(sigma * im);
      } else {
        o[0] = (float)(sigma * re);
        o[1] = (float)(sigma * im);
      }
      prev_re = zr;
      prev_im = zi;
    }
  }
}

static int cmd_phantom_mr(int argc, char **argv) {
  static const struct option longopts[] = {
      {"size", required_argument, NULL, 'n'},
      {"coils", required_argument, NULL, OPT_COILS},
      {"oversampling", required_argument, NULL, OPT_OVERSAMPLING},
      {"noise", required_argument, NULL, OPT_NOISE},
      {"partial-fourier", required_argument, NULL, OPT_PARTIAL_FOURIER},
      {"seed", required_argument, NULL, OPT_SEED},
      {"truth", required_argument, NULL, OPT_TRUTH},
      {"output", required_argument, NULL, 'o'},
      {"quiet", no_argument, NULL, 'q'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *output = NULL, *truth_path = NULL;
  int size = 0, coils = 0, os = 2, quiet = 0, c, rc = 0;
  double sigma = 0, pf = 1.0;
  uint64_t seed = 0;
  clara_mr_geometry g;
  clara_volume tv;
  clara_phantom *ph = NULL;
  float *k = NULL, *maps = NULL, *noise = NULL, *truth = NULL;
  size_t nk;
  clara_status st;

  opterr = 0;
  while ((c = getopt_long(argc, argv, ":n:o:qh", longopts, NULL)) != -1) {
    switch (c) {
    case 'n':
      if ((rc = parse_int("--size", optarg, 2, MAX_SIZE, &size)))
        return rc;
      break;
    case OPT_COILS:
      if ((rc = parse_int("--coils", optarg, 1, 1024, &coils)))
        return rc;
      break;
    case OPT_OVERSAMPLING:
      if ((rc = parse_int("--oversampling", optarg, 1, 4, &os)))
        return rc;
      break;
    case OPT_NOISE:
      if ((rc = parse_double("--noise", optarg, 0, 1e30, 0, &sigma)))
        return rc;
      break;
    case OPT_PARTIAL_FOURIER:
      if ((rc = parse_double("--partial-fourier", optarg, 0.5, 1, 0, &pf)))
        return rc;
      break;
    case OPT_SEED:
      if ((rc = parse_u64("--seed", optarg, &seed)))
        return rc;
      break;
    case OPT_TRUTH:
      truth_path = optarg;
      break;
    case 'o':
      output = optarg;
      break;
    case 'q':
      quiet = 1;
      break;
    case 'h':
      phantom_mr_help(stdout);
      return 0;
    default:
      return bad_option(c, argv);
    }
  }
  /* the kind word "mr" is the one positional argument */
  if (optind >= argc || strcmp(argv[optind], "mr") != 0)
    return usage_error("what kind of phantom? ('phantom ct' or 'phantom mr')");
  if (optind + 1 < argc)
    return usage_error("unexpected argument '%s'", argv[optind + 1]);
  if (size == 0)
    return usage_error("--size is required");
  if (coils == 0)
    return usage_error("--coils is required");
  if ((double)size * os > 65535)
    return usage_error("--size %d x --oversampling %d: the readout would "
                       "have more than 65535 samples",
                       size, os);
  if (!output || !*output)
    return usage_error("the output file is required (-o FILE.h5)");
  if (truth_path && !*truth_path)
    return usage_error("--truth: the file name is empty");
  if ((rc = check_output_path(output)))
    return rc;
  if (truth_path && (rc = check_output_path(truth_path)))
    return rc;

  memset(&g, 0, sizeof g);
  g.coils = coils;
  g.nx = os * size;
  g.ny = size;
  g.nz = 1;
  g.slices = 1;
  g.recon_nx = size;
  g.ky_first = size - (int)lround(pf * size);
  if (g.ky_first > size / 2)
    g.ky_first = size / 2;
  g.ky_last = size - 1;
  g.kx_first = 0;
  g.kx_last = g.nx - 1;
  nk = count3(coils, g.ny, g.nx);
  k = alloc_floats(2 * nk);
  maps = truth_path ? alloc_floats(2 * count3(coils, size, size)) : NULL;
  if (!k || (truth_path && !maps)) {
    rc = fail_msg("out of memory for %d coils x %d x %d k-space samples", coils,
                  g.ny, g.nx);
    goto done;
  }
  st = clara_mr_phantom_kspace(&g, (double)size, 1, k, maps);
  if (st != CLARA_OK) {
    rc = lib_error(st, "computing the phantom's k-space");
    goto done;
  }
  if (sigma > 0) {
    uint64_t state = seed;
    noise = alloc_floats(2 * (size_t)coils * MR_NOISE_SAMPLES);
    if (!noise) {
      rc = fail_msg("out of memory");
      goto done;
    }
    coupled_noise(&state, coils, MR_NOISE_SAMPLES, sigma, noise,
                  MR_NOISE_SAMPLES, 0);
    /* k-space noise on the acquired lines only */
    for (int y = g.ky_first; y <= g.ky_last; y++)
      coupled_noise(&state, coils, (size_t)g.nx, sigma,
                    k + (size_t)y * g.nx * 2, (size_t)g.ny * g.nx, 1);
  }
  st = clara_mr_file_write_ismrmrd(output, &g, k, noise,
                                   noise ? MR_NOISE_SAMPLES : 0);
  if (st != CLARA_OK) {
    rc = lib_error(st, "writing %s", output);
    goto done;
  }
  if (truth_path) {
    size_t n = count3(size, size, 1);
    tv.nx = tv.ny = size;
    tv.nz = 1;
    tv.voxel[0] = tv.voxel[1] = tv.voxel[2] = 1.0;
    tv.center[0] = tv.center[1] = tv.center[2] = 0;
    truth = alloc_floats(n);
    if (!truth) {
      rc = fail_msg("out of memory");
      goto done;
    }
    st = clara_phantom_shepp_logan(2, 0.5 * size, 1.0, &ph);
    if (st == CLARA_OK) {
      /* MR pixel i sits at (i - N/2) mm, the CT grid's at (i - (N-1)/2) mm
       * plus its centre */
      clara_volume rv = tv;
      rv.center[0] = rv.center[1] = (size - 1) / 2.0 - size / 2;
      st = clara_phantom_rasterize(ph, &rv, kTruthSupersample, truth);
    }
    if (st != CLARA_OK) {
      rc = lib_error(st, "rasterising the truth");
      goto done;
    }
    for (size_t i = 0; i < n; i++) {
      double s2 = 0;
      for (int cc = 0; cc < coils; cc++) {
        const float *m = maps + ((size_t)cc * n + i) * 2;
        s2 += (double)m[0] * m[0] + (double)m[1] * m[1];
      }
      truth[i] = (float)(fabs((double)truth[i]) * sqrt(s2));
    }
    st = clara_image_file_write(truth_path, &tv, truth, "a.u.");
    if (st != CLARA_OK) {
      rc = lib_error(st, "writing %s", truth_path);
      goto done;
    }
  }
  if (!quiet)
    printf("phantom: mr, %d coils, %d x %d k-space (recon %d x %d, FOV %d "
           "mm), ky %d..%d%s; wrote %s%s%s\n",
           coils, g.nx, g.ny, size, size, size, g.ky_first, g.ky_last,
           sigma > 0 ? ", noise" : "", output, truth_path ? " and " : "",
           truth_path ? truth_path : "");
done:
  clara_phantom_destroy(ph);
  free(k);
  free(maps);
  free(noise);
  free(truth);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* clara-recon mr                                                            */
/* ------------------------------------------------------------------------ */

static void mr_help(FILE *f) {
  fputs("Usage: " PROG " mr IN.h5 -o OUT.h5 [OPTIONS]\n"
        "Reconstructs Cartesian k-space from an ISMRMRD or fastMRI file "
        "(detected from\n"
        "its content) and writes the magnitude as /image ([slices][ny][x], "
        "1 mm voxels,\n"
        "units a.u.). Noise scans in the file are used for pre-whitening.\n"
        "\n"
        "  -o, --output FILE          the image file to write\n"
        "      --backend B            auto (default), cpu or cuda\n"
        "      --combine M            rss (default) or adaptive\n"
        "      --partial-fourier M    homodyne (default), pocs or zero\n"
        "      --norm N               ortho (default) or none (x sqrt(N))\n"
        "      --window W             none (default), hann, hamming or "
        "tukey\n"
        "      --dataset K            the dataset to reconstruct (default "
        "0)\n"
        "      --threads T            worker threads (default 0: all "
        "cores)\n"
        "  -q, --quiet                print nothing on success\n"
        "  -h, --help                 this help\n",
        f);
}

/* Parses NAME against 'names' (NULL-terminated); -1 when unknown. */
static int pick(const char *name, const char *const *names) {
  for (int i = 0; names[i]; i++)
    if (strcmp(name, names[i]) == 0)
      return i;
  return -1;
}

static const char *const kCombineNames[] = {"rss", "adaptive", NULL};
static const char *const kPfNames[] = {"zero", "homodyne", "pocs", NULL};
static const char *const kNormNames[] = {"ortho", "none", NULL};
static const char *const kWindowNames[] = {"none", "hann", "hamming", "tukey",
                                           NULL};

typedef struct mr_recon {
  clara_mr_geometry geom;
  int rnx;
  float *image; /* [slices * nz][ny][rnx], malloc'd */
  int noise_samples;
  clara_backend backend;
  int threads;
  double plan_ms, exec_ms;
} mr_recon;

/* Reconstructs dataset 'index' of 'file' (whitened when it has noise). */
static int mr_reconstruct(const clara_mr_file *file, const char *path,
                          int index, clara_backend backend, int threads,
                          const clara_mr_options *base, mr_recon *out) {
  clara_context_options co;
  clara_context *ctx = NULL;
  clara_mr_plan *plan = NULL;
  clara_mr_options o = *base;
  clara_mr_geometry *g = &out->geom;
  const float *noise = NULL;
  float *k = NULL, *cov = NULL, *image = NULL;
  size_t nk, ni;
  clara_status st;
  double t0, t1, t2;
  int noise_coils = 0;
  int rc = EXIT_FAILURE, count = clara_mr_file_count(file);

  if (index >= count)
    return fail_msg("dataset %d does not exist: %s has %d dataset%s "
                    "(0..%d)",
                    index, path, count, count == 1 ? "" : "s", count - 1);
  st = clara_mr_file_geometry(file, index, g);
  if (st != CLARA_OK)
    return lib_error(st, "reading dataset %d of %s", index, path);
  out->rnx = g->recon_nx > 0 ? g->recon_nx : g->nx;
  nk = count3(g->slices * g->coils, g->nz * g->ny, g->nx);
  ni = count3(g->slices * g->nz, g->ny, out->rnx);
  k = alloc_floats(2 * nk);
  image = alloc_floats(ni);
  if (!k || !image || nk > SIZE_MAX / 2) {
    rc = fail_msg("out of memory for dataset %d (%d slices x %d coils x %d "
                  "x %d x %d)",
                  index, g->slices, g->coils, g->nz, g->ny, g->nx);
    goto done;
  }
  st = clara_mr_file_kspace(file, index, k);
  if (st != CLARA_OK) {
    rc = lib_error(st, "reading dataset %d of %s", index, path);
    goto done;
  }
  st = clara_mr_file_noise(file, &noise_coils, &out->noise_samples, &noise);
  if (st != CLARA_OK) {
    rc = lib_error(st, "reading the noise scans of %s", path);
    goto done;
  }
  if (out->noise_samples >= 2 && noise_coils != g->coils) {
    rc = fail_msg("%s: the noise scans have %d coils, dataset %d has %d", path,
                  noise_coils, index, g->coils);
    goto done;
  }
  if (out->noise_samples >= 2) {
    cov = alloc_floats(2 * (size_t)g->coils * g->coils);
    if (!cov) {
      rc = fail_msg("out of memory");
      goto done;
    }
    st = clara_mr_noise_covariance(noise, g->coils, out->noise_samples, cov);
    if (st != CLARA_OK) {
      rc = lib_error(st, "estimating the noise covariance");
      goto done;
    }
    o.noise_covariance = cov;
  } else {
    out->noise_samples = 0;
  }
  clara_context_options_init(&co);
  co.backend = backend;
  co.threads = threads;
  st = clara_context_create(&co, &ctx);
  if (st != CLARA_OK) {
    rc = lib_error(st, "starting the %s backend", clara_backend_name(backend));
    goto done;
  }
  t0 = now_ms();
  st = clara_mr_plan_create(ctx, g, &o, &plan);
  if (st != CLARA_OK) {
    rc = lib_error(st, "planning the reconstruction of dataset %d", index);
    goto done;
  }
  t1 = now_ms();
  st = clara_mr_execute(plan, k, image);
  if (st != CLARA_OK) {
    rc = lib_error(st, "reconstructing dataset %d", index);
    goto done;
  }
  t2 = now_ms();
  out->image = image;
  image = NULL;
  out->backend = clara_context_backend(ctx);
  out->threads = clara_context_threads(ctx);
  out->plan_ms = t1 - t0;
  out->exec_ms = t2 - t1;
  rc = 0;
done:
  clara_mr_plan_destroy(plan);
  clara_context_destroy(ctx);
  free(k);
  free(cov);
  free(image);
  return rc;
}

static int cmd_mr(int argc, char **argv) {
  static const struct option longopts[] = {
      {"output", required_argument, NULL, 'o'},
      {"backend", required_argument, NULL, OPT_BACKEND},
      {"combine", required_argument, NULL, OPT_COMBINE},
      {"partial-fourier", required_argument, NULL, OPT_PARTIAL_FOURIER},
      {"norm", required_argument, NULL, OPT_NORM},
      {"window", required_argument, NULL, OPT_WINDOW},
      {"dataset", required_argument, NULL, OPT_DATASET},
      {"threads", required_argument, NULL, OPT_THREADS},
      {"quiet", no_argument, NULL, 'q'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *output = NULL, *input;
  clara_backend backend = CLARA_BACKEND_AUTO;
  clara_mr_options o;
  clara_mr_file *file = NULL;
  mr_recon r;
  clara_volume vol;
  clara_status st;
  int threads = 0, dataset = 0, quiet = 0, c, v, rc;

  memset(&r, 0, sizeof r);
  clara_mr_options_init(&o);
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":o:qh", longopts, NULL)) != -1) {
    switch (c) {
    case 'o':
      output = optarg;
      break;
    case OPT_BACKEND:
      if (clara_backend_parse(optarg, &backend) != CLARA_OK)
        return usage_error("--backend: %s", clara_last_error());
      break;
    case OPT_COMBINE:
      if ((v = pick(optarg, kCombineNames)) < 0)
        return usage_error("--combine: unknown method '%s' (rss or "
                           "adaptive)",
                           optarg);
      o.combine = (clara_mr_combine)v;
      break;
    case OPT_PARTIAL_FOURIER:
      if ((v = pick(optarg, kPfNames)) < 0)
        return usage_error("--partial-fourier: unknown method '%s' (zero, "
                           "homodyne or pocs)",
                           optarg);
      o.partial_fourier = (clara_mr_partial_fourier)v;
      break;
    case OPT_NORM:
      if ((v = pick(optarg, kNormNames)) < 0)
        return usage_error("--norm: unknown normalisation '%s' (ortho or "
                           "none)",
                           optarg);
      o.norm = (clara_mr_norm)v;
      break;
    case OPT_WINDOW:
      if ((v = pick(optarg, kWindowNames)) < 0)
        return usage_error("--window: unknown window '%s' (none, hann, "
                           "hamming or tukey)",
                           optarg);
      o.window = (clara_mr_window)v;
      break;
    case OPT_DATASET:
      if ((rc = parse_int("--dataset", optarg, 0, 1000000, &dataset)))
        return rc;
      break;
    case OPT_THREADS:
      if ((rc = parse_int("--threads", optarg, 0, MAX_THREADS, &threads)))
        return rc;
      break;
    case 'q':
      quiet = 1;
      break;
    case 'h':
      mr_help(stdout);
      return 0;
    default:
      return bad_option(c, argv);
    }
  }
  if (optind >= argc)
    return usage_error("the input file is required (" PROG
                       " mr IN.h5 -o OUT.h5)");
  if (optind + 1 < argc)
    return usage_error("unexpected argument '%s'", argv[optind + 1]);
  input = argv[optind];
  if (!output || !*output)
    return usage_error("the output file is required (-o OUT.h5)");
  if ((rc = check_output_path(output)))
    return rc;

  st = clara_mr_file_open(input, &file);
  if (st != CLARA_OK)
    return lib_error(st, "reading %s", input);
  if ((rc = mr_reconstruct(file, input, dataset, backend, threads, &o, &r)))
    goto done;
  vol.nx = r.rnx;
  vol.ny = r.geom.ny;
  vol.nz = r.geom.slices * r.geom.nz;
  vol.voxel[0] = vol.voxel[1] = vol.voxel[2] = 1.0; /* no FOV from the reader */
  vol.center[0] = vol.center[1] = vol.center[2] = 0;
  st = clara_image_file_write(output, &vol, r.image, "a.u.");
  if (st != CLARA_OK) {
    rc = lib_error(st, "writing %s", output);
    goto done;
  }
  if (!quiet)
    printf("mr: %s dataset %d, %d coil%s, %d x %d x %d k-space (ky %d..%d), "
           "%d slice%s -> %d x %d x %d (%s, %s, %s%s; %s, %d thread%s): "
           "%.1f ms (plan %.1f, execute %.1f); wrote %s\n",
           clara_mr_file_format(file), dataset, r.geom.coils,
           r.geom.coils == 1 ? "" : "s", r.geom.nx, r.geom.ny, r.geom.nz,
           r.geom.ky_first, r.geom.ky_last, r.geom.slices,
           r.geom.slices == 1 ? "" : "s", vol.nx, vol.ny, vol.nz,
           kCombineNames[o.combine], kPfNames[o.partial_fourier],
           kNormNames[o.norm], r.noise_samples ? ", whitened" : "",
           clara_backend_name(r.backend), r.threads, r.threads == 1 ? "" : "s",
           r.plan_ms + r.exec_ms, r.plan_ms, r.exec_ms, output);
done:
  free(r.image);
  clara_mr_file_close(file);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* clara-recon info on MR raw data                                           */
/* ------------------------------------------------------------------------ */

/* fastMRI: RSS + ORTHO (zero-filled) of dataset 0, centre-cropped to the
 * reference's size, against reconstruction_rss. */
static int mr_compare_reference(const clara_mr_file *file, const char *path) {
  const float *ref;
  int rs, ry, rx, rc;
  clara_mr_options o;
  mr_recon r;
  clara_status st;
  double err2 = 0, ref2 = 0, peak = 0;
  size_t n = 0;

  st = clara_mr_file_reference(file, &rs, &ry, &rx, &ref);
  if (st != CLARA_OK)
    return lib_error(st, "reading the reference of %s", path);
  if (!ref)
    return 0;
  printf("reference: reconstruction_rss, %d x %d x %d (x x y x slices)\n", rx,
         ry, rs);
  memset(&r, 0, sizeof r);
  clara_mr_options_init(&o);
  o.combine = CLARA_MR_COMBINE_RSS;
  o.norm = CLARA_MR_NORM_ORTHO;
  o.partial_fourier = CLARA_MR_PF_ZERO;
  if ((rc = mr_reconstruct(file, path, 0, CLARA_BACKEND_CPU, 0, &o, &r)))
    return rc;
  if (r.geom.nz != 1 || rs != r.geom.slices || ry > r.geom.ny || rx > r.rnx) {
    free(r.image);
    return fail_msg("cannot compare with reconstruction_rss: the "
                    "reconstruction is %d x %d x %d, the reference %d x %d x "
                    "%d",
                    r.rnx, r.geom.ny, r.geom.slices * r.geom.nz, rx, ry, rs);
  }
  {
    /* fastMRI's center_crop: from = (size - crop) / 2 */
    int y0 = (r.geom.ny - ry) / 2, x0 = (r.rnx - rx) / 2;
    for (int s = 0; s < rs; s++)
      for (int y = 0; y < ry; y++)
        for (int x = 0; x < rx; x++) {
          double a = r.image[((size_t)s * r.geom.ny + (size_t)(y + y0)) *
                                 (size_t)r.rnx +
                             (size_t)(x + x0)];
          double b = ref[((size_t)s * ry + y) * (size_t)rx + x];
          err2 += (a - b) * (a - b);
          ref2 += b * b;
          if (b > peak)
            peak = b;
          n++;
        }
  }
  free(r.image);
  printf("compare: clara rss (ortho, zero-filled) vs reconstruction_rss, "
         "%zu pixels\n",
         n);
  printf("nmse %.6g\n", ref2 > 0 ? err2 / ref2 : (err2 > 0 ? INFINITY : 0));
  if (err2 > 0 && n > 0)
    printf("psnr %.6g dB\n", 10 * log10(peak * peak / (err2 / (double)n)));
  else
    printf("psnr inf dB\n");
  return 0;
}

static int mr_info(const clara_mr_file *file, const char *path) {
  int count = clara_mr_file_count(file), samples = 0, noise_coils = 0;
  const float *noise = NULL;
  clara_status st;

  printf("%s\n", path);
  printf("MR raw data: %s, %d dataset%s\n", clara_mr_file_format(file), count,
         count == 1 ? "" : "s");
  for (int i = 0; i < count; i++) {
    clara_mr_geometry g;
    st = clara_mr_file_geometry(file, i, &g);
    if (st != CLARA_OK)
      return lib_error(st, "reading dataset %d of %s", i, path);
    printf("dataset %d: %d coil%s, encoded %d x %d x %d (x y z), recon x "
           "%d, %d slice%s\n",
           i, g.coils, g.coils == 1 ? "" : "s", g.nx, g.ny, g.nz,
           g.recon_nx > 0 ? g.recon_nx : g.nx, g.slices,
           g.slices == 1 ? "" : "s");
    printf("  sampled     ky %d..%d, kx %d..%d%s\n", g.ky_first, g.ky_last,
           g.kx_first, g.kx_last,
           g.ky_first > 0 || g.ky_last < g.ny - 1 || g.kx_first > 0 ||
                   g.kx_last < g.nx - 1
               ? " (partial)"
               : "");
  }
  st = clara_mr_file_noise(file, &noise_coils, &samples, &noise);
  if (st != CLARA_OK)
    return lib_error(st, "reading the noise scans of %s", path);
  if (samples > 0)
    printf("noise scans: %d samples per coil, %d coil%s\n", samples,
           noise_coils, noise_coils == 1 ? "" : "s");
  else
    printf("noise scans: none\n");
  fflush(stdout);
  return mr_compare_reference(file, path);
}

/* ------------------------------------------------------------------------ */
/* clara-recon info                                                          */
/* ------------------------------------------------------------------------ */

static void info_help(FILE *f) {
  fputs("Usage: " PROG " info FILE.h5 [--compare TRUTH.h5]\n"
        "Describes a CT input file (/ct and /truth), an image file "
        "(/image) or MR raw\n"
        "data (ISMRMRD or fastMRI: datasets, geometry, noise scans; for a "
        "fastMRI file\n"
        "with reconstruction_rss, 'nmse' and 'psnr' of an RSS + ortho "
        "reconstruction\n"
        "of dataset 0, centre-cropped, against it).\n"
        "\n"
        "      --compare TRUTH.h5  compare FILE's /image with TRUTH's /truth "
        "(or its\n"
        "                          /image when it has no /truth) over the "
        "whole grid;\n"
        "                          prints 'rmse VALUE', 'max_abs_error VALUE' "
        "and\n"
        "                          'bias VALUE' (mean of image - truth)\n"
        "  -h, --help              this help\n",
        f);
}

static void print_image(const char *name, const clara_volume *v,
                        const float *img, const char *units) {
  stats s = compute_stats(img, volume_count(v));
  printf("%s: %d x %d x %d voxels (nx x ny x nz)\n", name, v->nx, v->ny, v->nz);
  printf("  voxel size    %.6g x %.6g x %.6g mm\n", v->voxel[0], v->voxel[1],
         v->voxel[2]);
  printf("  center        %.6g, %.6g, %.6g mm\n", v->center[0], v->center[1],
         v->center[2]);
  printf("  units         %s\n", *units ? units : "(none)");
  printf("  values        min %.6g, max %.6g, mean %.6g\n", s.min, s.max,
         s.mean);
  if (s.nonfinite)
    printf("  non-finite    %zu voxels\n", s.nonfinite);
}

static void print_ct(const clara_ct_geometry *g, const float *proj) {
  const int arc = g->kind == CLARA_GEOM_FAN_ARC;
  const double deg = 180.0 / kPi;
  double amin = g->angles[0], amax = g->angles[0];
  stats s = compute_stats(proj, count3(g->views, g->rows, g->cols));
  for (int v = 1; v < g->views; v++) {
    amin = fmin(amin, g->angles[v]);
    amax = fmax(amax, g->angles[v]);
  }
  printf("/ct: %s scan\n", clara_geometry_name(g->kind));
  printf("  views         %d\n", g->views);
  printf("  angles        %.6g to %.6g deg", amin * deg, amax * deg);
  if (g->views > 1)
    printf(" (mean step %.6g deg)", (amax - amin) * deg / (g->views - 1));
  printf("\n");
  printf("  rows x cols   %d x %d\n", g->rows, g->cols);
  if (arc)
    printf("  det_spacing   row %.6g mm, col %.6g rad (%.6g deg)\n",
           g->det_spacing[0], g->det_spacing[1], g->det_spacing[1] * deg);
  else
    printf("  det_spacing   row %.6g mm, col %.6g mm\n", g->det_spacing[0],
           g->det_spacing[1]);
  printf("  det_offset    row %.6g mm, col %.6g %s\n", g->det_offset[0],
         g->det_offset[1], arc ? "rad" : "mm");
  if (g->kind != CLARA_GEOM_PARALLEL) {
    printf("  source_to_iso       %.6g mm\n", g->source_to_iso);
    printf("  source_to_detector  %.6g mm\n", g->source_to_detector);
  }
  printf("  field of view radius %.6g mm\n", fov_radius(g));
  printf("  projections   min %.6g, max %.6g, mean %.6g\n", s.min, s.max,
         s.mean);
  if (s.nonfinite)
    printf("  non-finite    %zu values\n", s.nonfinite);
}

/* Compares 'img' (FILE's /image) with the truth in 'ref_path'. */
static int compare_with(const clara_volume *v, const float *img,
                        const char *units, const char *ref_path) {
  clara_volume rv;
  float *ref = NULL;
  char ref_units[32];
  const char *dataset = "/truth";
  clara_status st;
  double sum2 = 0, sum = 0, maxabs = 0;
  size_t n;
  int rc = 0;

  st = clara_image_file_read(ref_path, dataset, &rv, &ref, ref_units,
                             sizeof ref_units);
  if (st == CLARA_ERR_FORMAT && says_missing(clara_last_error(), dataset)) {
    dataset = "/image";
    st = clara_image_file_read(ref_path, dataset, &rv, &ref, ref_units,
                               sizeof ref_units);
  }
  if (st != CLARA_OK)
    return lib_error(st, "reading the reference %s", ref_path);
  if (rv.nx != v->nx || rv.ny != v->ny || rv.nz != v->nz) {
    rc = fail_msg("cannot compare: the image is %d x %d x %d but %s:%s is "
                  "%d x %d x %d",
                  v->nx, v->ny, v->nz, ref_path, dataset, rv.nx, rv.ny, rv.nz);
    goto done;
  }
  for (int i = 0; i < 3; i++) {
    if (fabs(rv.voxel[i] - v->voxel[i]) > 1e-6 * v->voxel[i] ||
        fabs(rv.center[i] - v->center[i]) > 1e-6 * v->voxel[i]) {
      rc = fail_msg("cannot compare: the grids have the same size but "
                    "different voxel sizes or centres");
      goto done;
    }
  }
  /* no units (a CT file's /truth has none) counts as mu in 1/mm */
  if (!*units)
    units = "1/mm";
  if (!*ref_units)
    snprintf(ref_units, sizeof ref_units, "1/mm");
  if (strcmp(units, ref_units) != 0) {
    rc = fail_msg("cannot compare: the image is in %s but %s:%s is in %s",
                  units, ref_path, dataset, ref_units);
    goto done;
  }
  n = volume_count(v);
  for (size_t i = 0; i < n; i++) {
    double d = (double)img[i] - (double)ref[i];
    sum += d;
    sum2 += d * d;
    if (!(fabs(d) <= maxabs))
      maxabs = fabs(d);
  }
  printf("compare: /image vs %s:%s, %zu voxels\n", ref_path, dataset, n);
  printf("rmse %.6g\n", sqrt(sum2 / (double)n));
  printf("max_abs_error %.6g\n", maxabs);
  printf("bias %.6g\n", sum / (double)n);
done:
  clara_free(ref);
  return rc;
}

static int cmd_info(int argc, char **argv) {
  static const struct option longopts[] = {
      {"compare", required_argument, NULL, OPT_COMPARE},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  static const char *const parts[] = {"/ct", "/truth", "/image"};
  const char *path, *compare = NULL;
  char messages[3][1024];
  clara_status status[3];
  clara_ct_geometry geom;
  float *angles = NULL, *proj = NULL, *img[2] = {NULL, NULL};
  clara_volume vol[2];
  char units[2][32];
  int c, rc = 0, found = 0;

  opterr = 0;
  while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    switch (c) {
    case OPT_COMPARE:
      compare = optarg;
      break;
    case 'h':
      info_help(stdout);
      return 0;
    default:
      return bad_option(c, argv);
    }
  }
  if (optind >= argc)
    return usage_error("the file is required (" PROG " info FILE.h5)");
  if (optind + 1 < argc)
    return usage_error("unexpected argument '%s'", argv[optind + 1]);
  path = argv[optind];

  {
    clara_mr_file *mr = NULL;
    if (clara_mr_file_open(path, &mr) == CLARA_OK) {
      if (compare) {
        clara_mr_file_close(mr);
        return fail_msg("cannot compare: %s is MR raw data, not an image",
                        path);
      }
      rc = mr_info(mr, path);
      clara_mr_file_close(mr);
      return rc;
    }
  }
  status[0] = clara_ct_file_read(path, &geom, &angles, &proj);
  if (status[0] != CLARA_OK && status[0] != CLARA_ERR_FORMAT)
    return lib_error(status[0], "reading %s", path); /* not HDF5, ... */
  snprintf(messages[0], sizeof messages[0], "%s", clara_last_error());
  for (int i = 0; i < 2; i++) {
    status[i + 1] = clara_image_file_read(path, parts[i + 1], &vol[i], &img[i],
                                          units[i], sizeof units[i]);
    snprintf(messages[i + 1], sizeof messages[i + 1], "%s", clara_last_error());
  }

  for (int i = 0; i < 3; i++)
    found += status[i] == CLARA_OK;
  if (found)
    printf("%s\n", path);
  if (status[0] == CLARA_OK)
    print_ct(&geom, proj);
  for (int i = 0; i < 2; i++)
    if (status[i + 1] == CLARA_OK)
      print_image(parts[i + 1], &vol[i], img[i], units[i]);
  fflush(stdout);

  /* Report the parts that are there but cannot be read, or everything when
   * nothing could be read. */
  for (int i = 0; i < 3; i++) {
    if (status[i] == CLARA_OK)
      continue;
    if (found && status[i] == CLARA_ERR_FORMAT &&
        says_missing(messages[i], parts[i]))
      continue;
    fprintf(stderr, PROG ": reading %s of %s: %s: %s\n", parts[i], path,
            clara_status_name(status[i]), messages[i]);
    rc = EXIT_FAILURE;
  }
  if (!found)
    fprintf(stderr, PROG ": %s holds neither a CT scan nor an image\n", path);

  if (compare && rc == 0) {
    if (status[2] != CLARA_OK)
      rc = fail_msg("cannot compare: %s has no /image", path);
    else
      rc = compare_with(&vol[1], img[1], units[1], compare);
  }
  clara_free(angles);
  clara_free(proj);
  clara_free(img[0]);
  clara_free(img[1]);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* clara-recon demo                                                          */
/* ------------------------------------------------------------------------ */

static void demo_help(FILE *f) {
  fprintf(f,
          "Usage: " PROG " demo [-o DIR] [--size N] [--backend B] "
          "[--threads T]\n"
          "Simulates a 2D parallel-beam scan of the Shepp-Logan phantom (N x "
          "N, 360 views\n"
          "over 180 degrees), reconstructs it, writes DIR/demo-ct.h5 "
          "(projections and\n"
          "truth) and DIR/demo-recon.h5, and prints the RMSE inside the "
          "phantom.\n"
          "\n"
          "  -o, --output DIR  where to write (default: the current "
          "directory; created\n"
          "                    if missing)\n"
          "  -n, --size N      grid size (default 256)\n"
          "      --backend B   auto (default), cpu or cuda\n"
          "      --threads T   worker threads (default 0: all cores)\n"
          "  -h, --help        this help\n");
}

static char *join_path(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = malloc(a + b + 2);
  if (p)
    snprintf(p, a + b + 2, "%s%s%s", dir, a && dir[a - 1] == '/' ? "" : "/",
             name);
  return p;
}

/* RMSE of 'img' against 'truth' inside the phantom's outer ellipse. */
static int phantom_rmse(const clara_volume *vol, const float *img,
                        const float *truth, double *rmse) {
  const clara_ellipsoid outer = {1.0,
                                 0.69 * kPhantomRadius,
                                 0.92 * kPhantomRadius,
                                 kPhantomRadius,
                                 0,
                                 0,
                                 0,
                                 0};
  clara_phantom *ph = NULL;
  float *mask = alloc_floats(volume_count(vol));
  clara_status st;
  double sum2 = 0;
  size_t inside = 0, n = volume_count(vol);
  int rc = 0;

  if (!mask)
    return fail_msg("out of memory");
  st = clara_phantom_create(2, &outer, 1, &ph);
  if (st == CLARA_OK)
    st = clara_phantom_rasterize(ph, vol, 1, mask);
  if (st != CLARA_OK) {
    rc = lib_error(st, "rasterising the phantom's outline");
  } else {
    for (size_t i = 0; i < n; i++) {
      if (mask[i] > 0.5f) {
        double d = (double)img[i] - (double)truth[i];
        sum2 += d * d;
        inside++;
      }
    }
    *rmse = inside ? sqrt(sum2 / (double)inside) : 0;
  }
  clara_phantom_destroy(ph);
  free(mask);
  return rc;
}

static int cmd_demo(int argc, char **argv) {
  static const struct option longopts[] = {
      {"output", required_argument, NULL, 'o'},
      {"size", required_argument, NULL, 'n'},
      {"backend", required_argument, NULL, OPT_BACKEND},
      {"threads", required_argument, NULL, OPT_THREADS},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *dir = ".";
  char *ct_path = NULL, *recon_path = NULL;
  scan_spec sp;
  scan sc;
  recon_opts ro;
  recon_result res;
  clara_status st;
  struct stat sb;
  double rmse = 0;
  stats ts;
  int c, rc;

  memset(&sp, 0, sizeof sp);
  memset(&sc, 0, sizeof sc);
  memset(&res, 0, sizeof res);
  sp.kind = CLARA_GEOM_PARALLEL;
  sp.size = 256;
  sp.views = 360;
  sp.range_deg = 180;
  ro.backend = CLARA_BACKEND_AUTO;
  ro.threads = 0;
  clara_fbp_options_init(&ro.fbp);
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":o:n:h", longopts, NULL)) != -1) {
    switch (c) {
    case 'o':
      dir = optarg;
      break;
    case 'n':
      if ((rc = parse_int("--size", optarg, 1, MAX_SIZE, &sp.size)))
        return rc;
      break;
    case OPT_BACKEND:
      if (clara_backend_parse(optarg, &ro.backend) != CLARA_OK)
        return usage_error("--backend: %s", clara_last_error());
      break;
    case OPT_THREADS:
      if ((rc = parse_int("--threads", optarg, 0, MAX_THREADS, &ro.threads)))
        return rc;
      break;
    case 'h':
      demo_help(stdout);
      return 0;
    default:
      return bad_option(c, argv);
    }
  }
  if (optind < argc)
    return usage_error("unexpected argument '%s'", argv[optind]);
  if (!*dir)
    return usage_error("-o: the directory name is empty");
  if (stat(dir, &sb) != 0 && mkdir(dir, 0777) != 0)
    return fail_msg("cannot create the directory %s: %s", dir, strerror(errno));
  ct_path = join_path(dir, "demo-ct.h5");
  recon_path = join_path(dir, "demo-recon.h5");
  if (!ct_path || !recon_path) {
    rc = fail_msg("out of memory");
    goto done;
  }
  if ((rc = check_output_path(ct_path)))
    goto done;

  if ((rc = build_scan(&sp, &sc)))
    goto done;
  if ((rc = reconstruct(&sc.geom, sc.proj, &sc.truth_vol, &ro, &res)))
    goto done;
  st = clara_ct_file_write(ct_path, &sc.geom, sc.proj, &sc.truth_vol, sc.truth);
  if (st != CLARA_OK) {
    rc = lib_error(st, "writing %s", ct_path);
    goto done;
  }
  st = clara_image_file_write(recon_path, &sc.truth_vol, res.image, "1/mm");
  if (st != CLARA_OK) {
    rc = lib_error(st, "writing %s", recon_path);
    goto done;
  }
  if ((rc = phantom_rmse(&sc.truth_vol, res.image, sc.truth, &rmse)))
    goto done;
  ts = compute_stats(sc.truth, volume_count(&sc.truth_vol));
  printf("demo: parallel %dx%d from %d views in %.0f ms (%s); RMSE vs "
         "phantom %.3g /mm (%.1f%% of the phantom's range); wrote %s and "
         "%s\n",
         sp.size, sp.size, sp.views, res.plan_ms + res.exec_ms,
         clara_backend_name(res.backend), rmse,
         ts.max > ts.min ? 100.0 * rmse / (ts.max - ts.min) : 0.0, ct_path,
         recon_path);
done:
  free(res.image);
  scan_free(&sc);
  free(ct_path);
  free(recon_path);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* main                                                                      */
/* ------------------------------------------------------------------------ */

static void main_help(FILE *f) {
  fputs("Usage: " PROG " COMMAND [OPTIONS]\n"
        "CT reconstruction with libclara-recon.\n"
        "\n"
        "Commands:\n"
        "  phantom ct  write a simulated CT scan of the Shepp-Logan phantom\n"
        "  phantom mr  write simulated multi-coil MR k-space (ISMRMRD)\n"
        "  ct          reconstruct a CT input file (filtered "
        "back-projection)\n"
        "  mr          reconstruct MR k-space (ISMRMRD or fastMRI)\n"
        "  info        describe a CT input, image or MR raw-data file, or "
        "compare\n"
        "  demo        simulate, reconstruct and score a 2D scan\n"
        "\n"
        "  -h, --help     this help ('" PROG " COMMAND --help' for a "
        "command)\n"
        "  -V, --version  the tool's and the library's versions\n"
        "\n"
        "Exit status: 0 success, 1 failure, 2 usage error.\n",
        f);
}

typedef struct command {
  const char *name;
  int (*run)(int argc, char **argv);
  void (*help)(FILE *f);
} command;

static const command commands[] = {
    {"phantom", cmd_phantom, phantom_help},
    {"ct", cmd_ct, ct_help},
    {"mr", cmd_mr, mr_help},
    {"info", cmd_info, info_help},
    {"demo", cmd_demo, demo_help},
};

static const command *find_command(const char *name) {
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(name, commands[i].name) == 0)
      return &commands[i];
  return NULL;
}

int main(int argc, char **argv) {
  const command *cmd;
  if (argc < 2) {
    main_help(stderr);
    return EXIT_USAGE;
  }
  if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
    printf(PROG " %d.%d.%d (library %s)\n", CLARA_RECON_VERSION_MAJOR,
           CLARA_RECON_VERSION_MINOR, CLARA_RECON_VERSION_PATCH,
           clara_version());
    return 0;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    main_help(stdout);
    return 0;
  }
  if (strcmp(argv[1], "help") == 0) {
    if (argc < 3) {
      main_help(stdout);
      return 0;
    }
    cmd = find_command(argv[2]);
    if (!cmd)
      return usage_error("unknown command '%s'", argv[2]);
    cmd->help(stdout);
    return 0;
  }
  cmd = find_command(argv[1]);
  if (!cmd) {
    if (argv[1][0] == '-')
      return usage_error("unknown option '%s'", argv[1]);
    return usage_error("unknown command '%s'", argv[1]);
  }
  g_cmd = cmd->name;
  return cmd->run(argc - 1, argv + 1);
}
