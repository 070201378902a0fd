/* clara-recon-bench -- times filtered back-projection (FBP, and FDK for the
 * cone beam) on an analytic Shepp-Logan scan or on a CT input file, and
 * checks the result against the ground truth so that a fast but wrong
 * reconstruction shows.
 *
 *   clara-recon-bench fbp [options]        (--help lists them)
 *   clara-recon-bench mr [options]         (MRI; mr --help)
 *   clara-recon-bench denoise --model F    (CNN denoising; denoise --help)
 *
 * What is timed: plan creation once, then W warm-up executes and K timed
 * executes of the same plan into the same image buffer, each with
 * clock_gettime(CLOCK_MONOTONIC). Generating or reading the data, the
 * ground truth and the error measure are outside every timer.
 *
 * The generated scan (voxel 1 mm by default, N x N grid, N x N x N for the
 * cone): the Shepp-Logan phantom of radius 0.45 N mm, densities as in Toft's
 * modified table (scale 1), exact line integrals through the centres of the
 * detector cells. The detector covers the grid's inscribed circle with a 5%
 * margin (parallel: by default N columns of one voxel, exactly the inscribed
 * circle, as scikit-image's radon(circle=True) does); divergent beams put the
 * source at 2 N mm from the axis and the detector at 4 N mm from the source.
 * Cone detector rows cover the whole height of the grid inside that circle.
 *
 * The error measure: the root mean square difference to the rasterised
 * phantom (4 x 4 samples per pixel in 2D, 2 x 2 x 2 per voxel in 3D) over
 * the phantom region, defined as the voxels of each image row from the first
 * to the last non-zero truth voxel (for the Shepp-Logan phantom: the inside
 * of its outer ellipse). With --input, the truth is the file's /truth
 * dataset if it has one; otherwise no error is reported.
 *
 * CUDA (--backend cuda, or auto when it resolves to CUDA): every execute is
 * clara_fbp_execute_timed, and the report adds the medians of the device
 * times the library measured with CUDA events (upload, filter,
 * back-projection, download), the back-projection kernel rate
 * (nx ny nz views / back-projection time), the library's own host-to-host
 * time and the number of z slabs. --batch-slices N reconstructs N stacked
 * 2D slices (a multi-row geometry) with each execute and reports slices per
 * second end to end.
 *
 * Exit status: 0 on success, 1 when the library fails (the message names
 * the status and the library's explanation), 2 for a bad command line.
 */
#include <clara_recon.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#define PROG "clara-recon-bench"

/* Fraction by which the detector of a generated scan overreaches the grid's
 * inscribed circle (divergent beams). */
#define FOV_MARGIN 1.05
/* Phantom radius as a fraction of the grid's edge. */
#define PHANTOM_FRACTION 0.45

typedef struct options {
  clara_geometry_kind kind;
  int kind_set;
  int size;              /* 0: default */
  int views, rows, cols; /* 0: default */
  double voxel;          /* mm */
  int voxel_set;
  clara_backend backend;
  int threads;
  int repeat, warmup;
  clara_filter filter;
  int json;
  int texture;                /* --texture: CLARA_FBP_GPU_TEXTURE */
  size_t device_memory_limit; /* --device-memory-limit, 0 = none */
  int batch_slices;           /* --batch-slices N, 0 = not given */
  const char *input;
  const char *save;
  const char *write_input;
} options;

/* Everything one run owns; freed by run_free(). */
typedef struct run {
  clara_ct_geometry geom;
  clara_volume vol;
  float *angles; /* ours (generated), or the file's (clara_free) */
  float *proj;   /* ours (generated), or the file's (clara_free) */
  int from_file; /* angles and proj belong to the library */
  float *truth;  /* NULL when there is none; malloc or clara_free */
  int truth_from_file;
  float *image;
  double *times;             /* repeat execute times, ms */
  clara_fbp_timing *timings; /* repeat library timings (CUDA) */
  clara_context *ctx;
  clara_fbp_plan *plan;
  clara_phantom *phantom;
} run;

/* ---- Messages ------------------------------------------------------------ */

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: " PROG " fbp [options]\n"
      "       " PROG " mr [options]    (" PROG " mr --help)\n"
      "       " PROG " denoise --model FILE [options]  (denoise --help)\n"
      "\n"
      "Times FBP/FDK reconstruction of an analytic Shepp-Logan scan (or of a\n"
      "CT input file) and reports the error against the phantom.\n"
      "\n"
      "options:\n"
      "  --geometry G     parallel, fan-flat, fan-arc or cone (default "
      "parallel)\n"
      "  --size N         N x N grid (N x N x N for cone) of 1 mm voxels\n"
      "                   (default 512 for 2D, 256 for cone)\n"
      "  --views V        views (default 720 for 2D, 360 for cone); 180\n"
      "                   degrees for parallel, 360 for the others\n"
      "  --rows R         detector rows (cone, default = cols) or stacked 2D\n"
      "                   slices (default 1)\n"
      "  --cols C         detector columns (default N for parallel, "
      "ceil(1.25 N)\n"
      "                   for the others)\n"
      "  --voxel MM       voxel size in mm (default 1)\n"
      "  --backend B      auto, cpu or cuda (default auto)\n"
      "  --threads T      worker threads, 0 = all online cores (default 0)\n"
      "  --repeat K       timed executes (default 5)\n"
      "  --warmup W       untimed executes before them (default 1)\n"
      "  --filter F       ram-lak (ramp), shepp-logan, cosine, hamming, hann\n"
      "                   (default ram-lak)\n"
      "  --batch-slices N reconstruct N stacked 2D slices per execute (a\n"
      "                   multi-row 2D geometry) and report slices per "
      "second\n"
      "  --texture        CUDA: interpolate with the texture units\n"
      "  --device-memory-limit BYTES  CUDA: device memory a plan may use\n"
      "                   (suffix k, M or G for KiB, MiB, GiB); smaller "
      "volumes\n"
      "                   are split into z slabs\n"
      "  --input FILE     reconstruct this CT input file (HDF5) instead; its\n"
      "                   /truth, if any, sets the grid and the reference\n"
      "  --save FILE      write the reconstruction as an image file (HDF5)\n"
      "  --write-input FILE  write the generated scan, with its /truth, as a\n"
      "                   CT input file (HDF5)\n"
      "  --json           print one JSON object instead of text\n"
      "  --help, --version\n");
}

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static int
usage_error(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, PROG ": ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
  usage(stderr);
  return 2;
}

/* Reports a library failure; returns the exit status 1. */
static int lib_error(const char *what, clara_status st) {
  fprintf(stderr, PROG ": %s failed: %s: %s\n", what, clara_status_name(st),
          clara_last_error());
  return 1;
}

/* ---- Command line -------------------------------------------------------- */

static int parse_int(const char *s, long lo, long hi, int *out) {
  char *end;
  long v;
  errno = 0;
  v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
    return -1;
  *out = (int)v;
  return 0;
}

/* A byte count with an optional k, M or G (binary) suffix; > 0. */
static int parse_bytes(const char *s, size_t *out) {
  char *end;
  unsigned long long v, mul = 1;
  if (*s < '0' || *s > '9')
    return -1;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno != 0 || end == s || v == 0)
    return -1;
  if (*end == 'k' || *end == 'K')
    mul = 1ull << 10;
  else if (*end == 'm' || *end == 'M')
    mul = 1ull << 20;
  else if (*end == 'g' || *end == 'G')
    mul = 1ull << 30;
  if (mul != 1)
    end++;
  if (*end != '\0' || v > (unsigned long long)SIZE_MAX / mul)
    return -1;
  *out = (size_t)(v * mul);
  return 0;
}

static int parse_double(const char *s, double *out) {
  char *end;
  double v;
  errno = 0;
  v = strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v <= 0)
    return -1;
  *out = v;
  return 0;
}

/* Parses argv; returns -1 to go on, or an exit status. */
static int parse_args(int argc, char **argv, options *o) {
  memset(o, 0, sizeof *o);
  o->kind = CLARA_GEOM_PARALLEL;
  o->voxel = 1.0;
  o->backend = CLARA_BACKEND_AUTO;
  o->repeat = 5;
  o->warmup = 1;
  o->filter = CLARA_FILTER_RAM_LAK;

  if (argc < 2)
    return usage_error("a command is required");
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf(PROG " %s\n", clara_version());
    return 0;
  }
  if (strcmp(argv[1], "fbp") != 0)
    return usage_error("unknown command \"%s\"", argv[1]);

  for (int i = 2; i < argc; i++) {
    const char *arg = argv[i];
    const char *val = NULL;
    char name[32];
    const char *eq;
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      usage(stdout);
      return 0;
    }
    if (strcmp(arg, "--version") == 0) {
      printf(PROG " %s\n", clara_version());
      return 0;
    }
    if (strcmp(arg, "--json") == 0) {
      o->json = 1;
      continue;
    }
    if (strcmp(arg, "--texture") == 0) {
      o->texture = 1;
      continue;
    }
    if (strncmp(arg, "--", 2) != 0)
      return usage_error("unexpected argument \"%s\"", arg);
    /* --name value or --name=value */
    eq = strchr(arg, '=');
    if (eq) {
      size_t n = (size_t)(eq - arg);
      if (n >= sizeof name)
        return usage_error("unknown option \"%s\"", arg);
      memcpy(name, arg, n);
      name[n] = '\0';
      val = eq + 1;
    } else {
      if (strlen(arg) >= sizeof name)
        return usage_error("unknown option \"%s\"", arg);
      strcpy(name, arg);
    }

#define NEED_VALUE()                                                           \
  do {                                                                         \
    if (!val) {                                                                \
      if (i + 1 >= argc)                                                       \
        return usage_error("option %s needs a value", name);                   \
      val = argv[++i];                                                         \
    }                                                                          \
  } while (0)
#define INT_OPT(opt, field, lo, hi)                                            \
  if (strcmp(name, opt) == 0) {                                                \
    NEED_VALUE();                                                              \
    if (parse_int(val, lo, hi, &o->field) != 0)                                \
      return usage_error("%s: invalid value \"%s\"", name, val);               \
    continue;                                                                  \
  }

    INT_OPT("--size", size, 1, 1 << 16)
    INT_OPT("--views", views, 2, 1 << 24)
    INT_OPT("--rows", rows, 1, 1 << 16)
    INT_OPT("--cols", cols, 2, 1 << 20)
    INT_OPT("--threads", threads, 0, 4096)
    INT_OPT("--repeat", repeat, 1, 1000000)
    INT_OPT("--warmup", warmup, 0, 1000000)
    INT_OPT("--batch-slices", batch_slices, 1, 1 << 16)
#undef INT_OPT

    if (strcmp(name, "--geometry") == 0) {
      NEED_VALUE();
      if (clara_geometry_parse(val, &o->kind) != CLARA_OK)
        return usage_error("%s: unknown geometry \"%s\" (expected parallel, "
                           "fan-flat, fan-arc or cone)",
                           name, val);
      o->kind_set = 1;
    } else if (strcmp(name, "--backend") == 0) {
      NEED_VALUE();
      if (clara_backend_parse(val, &o->backend) != CLARA_OK)
        return usage_error("%s: unknown backend \"%s\" (expected auto, cpu "
                           "or cuda)",
                           name, val);
    } else if (strcmp(name, "--filter") == 0) {
      NEED_VALUE();
      if (clara_filter_parse(val, &o->filter) != CLARA_OK)
        return usage_error("%s: unknown filter \"%s\" (expected ram-lak, "
                           "shepp-logan, cosine, hamming or hann)",
                           name, val);
    } else if (strcmp(name, "--voxel") == 0) {
      NEED_VALUE();
      if (parse_double(val, &o->voxel) != 0)
        return usage_error("%s: invalid value \"%s\" (a size in mm > 0)", name,
                           val);
      o->voxel_set = 1;
    } else if (strcmp(name, "--device-memory-limit") == 0) {
      NEED_VALUE();
      if (parse_bytes(val, &o->device_memory_limit) != 0)
        return usage_error("%s: invalid value \"%s\" (bytes > 0, optionally "
                           "with a k, M or G suffix)",
                           name, val);
    } else if (strcmp(name, "--input") == 0) {
      NEED_VALUE();
      o->input = val;
    } else if (strcmp(name, "--save") == 0) {
      NEED_VALUE();
      o->save = val;
    } else if (strcmp(name, "--write-input") == 0) {
      NEED_VALUE();
      o->write_input = val;
    } else {
      return usage_error("unknown option \"%s\"", name);
    }
#undef NEED_VALUE
  }
  if (o->input && o->write_input)
    return usage_error("--write-input writes a generated scan; it cannot be "
                       "used with --input");
  if (o->batch_slices) {
    if (o->kind == CLARA_GEOM_CONE)
      return usage_error("--batch-slices stacks 2D slices; it cannot be used "
                         "with --geometry cone");
    if (o->input)
      return usage_error("--batch-slices makes a generated scan; it cannot "
                         "be used with --input");
    if (o->rows && o->rows != o->batch_slices)
      return usage_error("--rows %d and --batch-slices %d disagree (both set "
                         "the number of stacked slices)",
                         o->rows, o->batch_slices);
  }
  return -1;
}

/* ---- Helpers ------------------------------------------------------------- */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* n1 * n2 * n3 floats, or NULL (with a message) when that does not fit. */
static float *alloc_floats(size_t n1, size_t n2, size_t n3, const char *what) {
  float *p;
  if (n1 == 0 || n2 == 0 || n3 == 0 || n2 > SIZE_MAX / n1 ||
      n3 > SIZE_MAX / (n1 * n2) || n1 * n2 * n3 > SIZE_MAX / sizeof(float)) {
    fprintf(stderr, PROG ": %s: %zu x %zu x %zu floats is too large\n", what,
            n1, n2, n3);
    return NULL;
  }
  p = malloc(n1 * n2 * n3 * sizeof(float));
  if (!p)
    fprintf(stderr, PROG ": %s: cannot allocate %.1f MiB\n", what,
            (double)(n1 * n2 * n3 * sizeof(float)) / (1024.0 * 1024.0));
  return p;
}

static size_t volume_voxels(const clara_volume *v) {
  return (size_t)v->nx * (size_t)v->ny * (size_t)v->nz;
}

/* RMSE over the phantom region: in each image row, the voxels from the
 * first to the last non-zero truth voxel. *count gets the region's size. */
static double region_rmse(const clara_volume *vol, const float *image,
                          const float *truth, size_t *count) {
  double sum = 0;
  size_t n = 0;
  size_t nrows = (size_t)vol->ny * (size_t)vol->nz;
  for (size_t r = 0; r < nrows; r++) {
    const float *t = truth + r * (size_t)vol->nx;
    const float *x = image + r * (size_t)vol->nx;
    int first = -1, last = -1;
    for (int i = 0; i < vol->nx; i++) {
      if (t[i] != 0.0f) {
        if (first < 0)
          first = i;
        last = i;
      }
    }
    for (int i = first; first >= 0 && i <= last; i++) {
      double d = (double)x[i] - (double)t[i];
      sum += d * d;
      n++;
    }
  }
  *count = n;
  return n ? sqrt(sum / (double)n) : NAN;
}

static void json_string(const char *s) {
  putchar('"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      printf("\\%c", *p);
    else if (*p < 0x20)
      printf("\\u%04x", *p);
    else
      putchar(*p);
  }
  putchar('"');
}

static void json_number(double v) {
  if (isfinite(v))
    printf("%.6g", v);
  else
    printf("null");
}

/* ---- The generated scan -------------------------------------------------- */

/* Fills r->geom, r->vol and r->angles for a generated scan. Returns 0, or
 * an exit status after a message. */
static int make_geometry(const options *o, run *r) {
  clara_ct_geometry *g = &r->geom;
  clara_volume *v = &r->vol;
  int cone = o->kind == CLARA_GEOM_CONE;
  int n = o->size ? o->size : cone ? 256 : 512;
  double vox = o->voxel;
  double range = o->kind == CLARA_GEOM_PARALLEL ? M_PI : 2.0 * M_PI;

  memset(g, 0, sizeof *g);
  memset(v, 0, sizeof *v);
  g->kind = o->kind;
  g->views = o->views ? o->views : cone ? 360 : 720;
  if (o->kind == CLARA_GEOM_PARALLEL)
    g->cols = o->cols ? o->cols : n;
  else
    g->cols = o->cols ? o->cols : (int)ceil(1.25 * n);
  g->rows = o->rows           ? o->rows
            : o->batch_slices ? o->batch_slices
            : cone            ? g->cols
                              : 1;

  v->nx = v->ny = n;
  v->nz = cone ? n : g->rows;
  v->voxel[0] = v->voxel[1] = v->voxel[2] = vox;

  r->angles = malloc(sizeof *r->angles * (size_t)g->views);
  if (!r->angles) {
    fprintf(stderr, PROG ": cannot allocate %d angles\n", g->views);
    return 1;
  }
  for (int k = 0; k < g->views; k++)
    r->angles[k] = (float)(range * k / g->views);
  g->angles = r->angles;

  if (o->kind == CLARA_GEOM_PARALLEL) {
    /* N columns of one voxel (scikit-image's radon(circle=True) layout,
     * which the plan accepts to within a voxel); otherwise the columns
     * span the grid's width from centre to centre */
    g->det_spacing[1] = g->cols == n ? vox : n * vox / (g->cols - 1);
    g->det_spacing[0] = vox;
  } else {
    double rs = 2.0 * n * vox, rd = 2.0 * rs;
    double rc = 0.5 * n * vox * FOV_MARGIN; /* radius to cover */
    double gam = asin(rc / rs);             /* its half fan angle */
    g->source_to_iso = rs;
    g->source_to_detector = rd;
    if (o->kind == CLARA_GEOM_FAN_ARC)
      g->det_spacing[1] = 2.0 * gam / (g->cols - 1);
    else
      g->det_spacing[1] = 2.0 * rd * tan(gam) / (g->cols - 1);
    if (cone) {
      /* the top and bottom of the grid, seen from the nearest point of the
       * covered circle */
      double vmax = 0.5 * n * vox * rd / (rs - rc);
      g->det_spacing[0] = g->rows > 1 ? 2.0 * vmax / (g->rows - 1) : vox;
    } else {
      g->det_spacing[0] = vox;
    }
  }
  return 0;
}

/* Makes the phantom, its projections and its rasterised truth. */
static int make_data(run *r) {
  int ndim = r->geom.kind == CLARA_GEOM_CONE ? 3 : 2;
  double radius = PHANTOM_FRACTION * r->vol.nx * r->vol.voxel[0];
  clara_status st;

  st = clara_phantom_shepp_logan(ndim, radius, 1.0, &r->phantom);
  if (st != CLARA_OK)
    return lib_error("clara_phantom_shepp_logan", st);
  r->proj = alloc_floats((size_t)r->geom.views, (size_t)r->geom.rows,
                         (size_t)r->geom.cols, "projections");
  r->truth = alloc_floats((size_t)r->vol.nz, (size_t)r->vol.ny,
                          (size_t)r->vol.nx, "truth");
  if (!r->proj || !r->truth)
    return 1;
  st = clara_phantom_project(r->phantom, &r->geom, r->proj);
  if (st != CLARA_OK)
    return lib_error("clara_phantom_project", st);
  st =
      clara_phantom_rasterize(r->phantom, &r->vol, ndim == 2 ? 4 : 2, r->truth);
  if (st != CLARA_OK)
    return lib_error("clara_phantom_rasterize", st);
  return 0;
}

/* ---- A CT input file ----------------------------------------------------- */

static int check_matches(const char *opt, int given, int found,
                         const char *path) {
  if (given && given != found) {
    fprintf(stderr, PROG ": %s %d given, but %s has %d\n", opt, given, path,
            found);
    return 1;
  }
  return 0;
}

static int read_input(const options *o, run *r) {
  clara_status st;
  clara_volume tv;
  float *truth = NULL;
  int cone;

  st = clara_ct_file_read(o->input, &r->geom, &r->angles, &r->proj);
  if (st != CLARA_OK)
    return lib_error("clara_ct_file_read", st);
  r->from_file = 1;
  if (o->kind_set && o->kind != r->geom.kind) {
    fprintf(stderr, PROG ": --geometry %s given, but %s is %s\n",
            clara_geometry_name(o->kind), o->input,
            clara_geometry_name(r->geom.kind));
    return 1;
  }
  if (check_matches("--views", o->views, r->geom.views, o->input) ||
      check_matches("--rows", o->rows, r->geom.rows, o->input) ||
      check_matches("--cols", o->cols, r->geom.cols, o->input))
    return 1;
  cone = r->geom.kind == CLARA_GEOM_CONE;

  st = clara_image_file_read(o->input, "/truth", &tv, &truth, NULL, 0);
  if (st == CLARA_OK) {
    r->truth = truth;
    r->truth_from_file = 1;
    if (o->size &&
        (o->size != tv.nx || o->size != tv.ny || (cone && o->size != tv.nz))) {
      fprintf(stderr,
              PROG ": --size %d given, but the /truth of %s is %d x %d x %d\n",
              o->size, o->input, tv.nx, tv.ny, tv.nz);
      return 1;
    }
    if (o->voxel_set && o->voxel != tv.voxel[0]) {
      fprintf(stderr, PROG ": --voxel %g given, but the /truth of %s has %g\n",
              o->voxel, o->input, tv.voxel[0]);
      return 1;
    }
    r->vol = tv;
  } else if (st == CLARA_ERR_FORMAT) {
    /* no usable ground truth: reconstruct on the grid from the options */
    if (!o->json)
      fprintf(stderr, PROG ": note: no ground truth in %s (%s); no RMSE\n",
              o->input, clara_last_error());
    memset(&r->vol, 0, sizeof r->vol);
    r->vol.nx = r->vol.ny = o->size ? o->size : cone ? 256 : 512;
    r->vol.nz = cone ? r->vol.nx : r->geom.rows;
    r->vol.voxel[0] = r->vol.voxel[1] = r->vol.voxel[2] = o->voxel;
  } else {
    return lib_error("clara_image_file_read (/truth)", st);
  }
  if (!cone && r->vol.nz != r->geom.rows) {
    fprintf(
        stderr, PROG ": %s: the /truth has %d slices but the %s data %d rows\n",
        o->input, r->vol.nz, clara_geometry_name(r->geom.kind), r->geom.rows);
    return 1;
  }
  return 0;
}

/* ---- Main ---------------------------------------------------------------- */

static void run_free(run *r) {
  clara_fbp_plan_destroy(r->plan);
  clara_context_destroy(r->ctx);
  clara_phantom_destroy(r->phantom);
  if (r->from_file) {
    clara_free(r->angles);
    clara_free(r->proj);
  } else {
    free(r->angles);
    free(r->proj);
  }
  if (r->truth_from_file)
    clara_free(r->truth);
  else
    free(r->truth);
  free(r->image);
  free(r->times);
  free(r->timings);
}

/* The median of n values (sorted in place). */
static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Medians of the library's per-run timings (CUDA). */
typedef struct gpu_times {
  double total_ms, upload_ms, filter_ms, backproject_ms, download_ms;
  double bp_gups;
  int slabs;
} gpu_times;

static void gpu_medians(const run *r, int n, gpu_times *g) {
  double *v = r->times + n; /* the sorted half of times[] is free again */
  size_t updates = volume_voxels(&r->vol) * (size_t)r->geom.views;
#define MED(field)                                                             \
  do {                                                                         \
    for (int k = 0; k < n; k++)                                                \
      v[k] = r->timings[k].field;                                              \
    g->field = median(v, n);                                                   \
  } while (0)
  MED(total_ms);
  MED(upload_ms);
  MED(filter_ms);
  MED(backproject_ms);
  MED(download_ms);
#undef MED
  g->slabs = r->timings[n - 1].slabs;
  g->bp_gups = g->backproject_ms > 0
                   ? (double)updates / (g->backproject_ms * 1e-3) / 1e9
                   : NAN;
}

static int bench(const options *o, run *r) {
  clara_context_options copts;
  clara_fbp_options fopts;
  clara_status st;
  double t0, data_ms, plan_ms, cold_ms = NAN, med, tmin, tmax, gups;
  double rmse = NAN, slices_per_s = NAN;
  size_t region = 0;
  double *sorted;
  int ret, cuda;
  gpu_times gt;

  t0 = now_ms();
  if (o->input)
    ret = read_input(o, r);
  else if ((ret = make_geometry(o, r)) == 0)
    ret = make_data(r);
  if (ret != 0)
    return ret;
  data_ms = now_ms() - t0;

  if (o->write_input) {
    st = clara_ct_file_write(o->write_input, &r->geom, r->proj, &r->vol,
                             r->truth);
    if (st != CLARA_OK)
      return lib_error("clara_ct_file_write", st);
  }

  clara_context_options_init(&copts);
  copts.backend = o->backend;
  copts.threads = o->threads;
  copts.device_memory_limit = o->device_memory_limit;
  st = clara_context_create(&copts, &r->ctx);
  if (st != CLARA_OK)
    return lib_error("clara_context_create", st);
  cuda = clara_context_backend(r->ctx) == CLARA_BACKEND_CUDA;
  memset(&gt, 0, sizeof gt);

  r->image = alloc_floats((size_t)r->vol.nz, (size_t)r->vol.ny,
                          (size_t)r->vol.nx, "image");
  r->times = malloc(sizeof *r->times * (size_t)o->repeat * 2);
  r->timings = calloc((size_t)o->repeat, sizeof *r->timings);
  if (!r->image || !r->times || !r->timings)
    return 1;

  clara_fbp_options_init(&fopts);
  fopts.filter = o->filter;
  if (o->texture)
    fopts.flags |= CLARA_FBP_GPU_TEXTURE;
  t0 = now_ms();
  st = clara_fbp_plan_create(r->ctx, &r->geom, &r->vol, &fopts, &r->plan);
  plan_ms = now_ms() - t0;
  if (st != CLARA_OK)
    return lib_error("clara_fbp_plan_create", st);

  for (int k = 0; k < o->warmup + o->repeat; k++) {
    double dt;
    clara_fbp_timing tm;
    t0 = now_ms();
    if (cuda)
      st = clara_fbp_execute_timed(r->plan, r->proj, r->image, &tm);
    else
      st = clara_fbp_execute(r->plan, r->proj, r->image);
    dt = now_ms() - t0;
    if (st != CLARA_OK)
      return lib_error(cuda ? "clara_fbp_execute_timed" : "clara_fbp_execute",
                       st);
    if (cuda && k >= o->warmup)
      r->timings[k - o->warmup] = tm;
    if (k == 0)
      cold_ms = dt;
    if (k >= o->warmup)
      r->times[k - o->warmup] = dt;
  }
  sorted = r->times + o->repeat;
  memcpy(sorted, r->times, sizeof *sorted * (size_t)o->repeat);
  qsort(sorted, (size_t)o->repeat, sizeof *sorted, cmp_double);
  med = o->repeat % 2
            ? sorted[o->repeat / 2]
            : 0.5 * (sorted[o->repeat / 2 - 1] + sorted[o->repeat / 2]);
  tmin = sorted[0];
  tmax = sorted[o->repeat - 1];
  gups = (double)volume_voxels(&r->vol) * (double)r->geom.views / (med * 1e-3) /
         1e9;
  if (cuda)
    gpu_medians(r, o->repeat, &gt);
  if (o->batch_slices)
    slices_per_s = (double)r->vol.nz / (med * 1e-3);

  if (r->truth)
    rmse = region_rmse(&r->vol, r->image, r->truth, &region);

  if (o->save) {
    st = clara_image_file_write(o->save, &r->vol, r->image, "1/mm");
    if (st != CLARA_OK)
      return lib_error("clara_image_file_write", st);
  }

  if (o->json) {
    printf("{\"tool\": \"" PROG "\", \"version\": ");
    json_string(clara_version());
    printf(", \"geometry\": ");
    json_string(clara_geometry_name(r->geom.kind));
    printf(", \"nx\": %d, \"ny\": %d, \"nz\": %d, \"voxel_mm\": ", r->vol.nx,
           r->vol.ny, r->vol.nz);
    json_number(r->vol.voxel[0]);
    printf(", \"views\": %d, \"rows\": %d, \"cols\": %d, \"backend\": ",
           r->geom.views, r->geom.rows, r->geom.cols);
    json_string(clara_backend_name(clara_context_backend(r->ctx)));
    printf(", \"threads\": %d, \"filter\": ", clara_context_threads(r->ctx));
    json_string(clara_filter_name(o->filter));
    printf(", \"input\": ");
    if (o->input)
      json_string(o->input);
    else
      printf("null");
    printf(", \"data_ms\": ");
    json_number(data_ms);
    printf(", \"plan_ms\": ");
    json_number(plan_ms);
    printf(", \"cold_ms\": ");
    json_number(cold_ms);
    printf(", \"median_ms\": ");
    json_number(med);
    printf(", \"min_ms\": ");
    json_number(tmin);
    printf(", \"max_ms\": ");
    json_number(tmax);
    printf(", \"repeat\": %d, \"warmup\": %d, \"gups\": ", o->repeat,
           o->warmup);
    json_number(gups);
    printf(", \"rmse\": ");
    json_number(rmse);
    printf(", \"rmse_voxels\": %zu", region);
    if (cuda) {
      printf(", \"texture\": %s, \"device_memory_limit\": %zu",
             o->texture ? "true" : "false", o->device_memory_limit);
      printf(", \"total_ms\": ");
      json_number(gt.total_ms);
      printf(", \"upload_ms\": ");
      json_number(gt.upload_ms);
      printf(", \"filter_ms\": ");
      json_number(gt.filter_ms);
      printf(", \"backproject_ms\": ");
      json_number(gt.backproject_ms);
      printf(", \"download_ms\": ");
      json_number(gt.download_ms);
      printf(", \"slabs\": %d, \"bp_gups\": ", gt.slabs);
      json_number(gt.bp_gups);
    }
    if (o->batch_slices) {
      printf(", \"batch_slices\": %d, \"slices_per_s\": ", o->batch_slices);
      json_number(slices_per_s);
    }
    printf("}\n");
  } else {
    printf(PROG " %s: fbp %s, volume %d x %d x %d (voxel %g mm), %d views "
                "x %d rows x %d cols\n",
           clara_version(), clara_geometry_name(r->geom.kind), r->vol.nx,
           r->vol.ny, r->vol.nz, r->vol.voxel[0], r->geom.views, r->geom.rows,
           r->geom.cols);
    printf("  backend %s, threads %d, filter %s\n",
           clara_backend_name(clara_context_backend(r->ctx)),
           clara_context_threads(r->ctx), clara_filter_name(o->filter));
    if (o->input)
      printf("  data:     %s (read in %.1f ms)\n", o->input, data_ms);
    else
      printf("  data:     analytic Shepp-Logan (made in %.1f ms)\n", data_ms);
    printf("  plan:     %.2f ms\n", plan_ms);
    printf("  execute:  median %.2f ms, min %.2f ms, max %.2f ms (%d runs "
           "after %d warm-up; first run %.2f ms)\n",
           med, tmin, tmax, o->repeat, o->warmup, cold_ms);
    printf("  rate:     %.3f GUPS (voxel updates per second / 1e9)\n", gups);
    if (cuda) {
      printf("  cuda:     %s mode, end to end (host to host) median %.2f ms: "
             "upload %.2f, filter %.2f, back-projection %.2f, download %.2f "
             "ms (device time, medians); %d slab%s\n",
             o->texture ? "texture" : "precise", gt.total_ms, gt.upload_ms,
             gt.filter_ms, gt.backproject_ms, gt.download_ms, gt.slabs,
             gt.slabs == 1 ? "" : "s");
      printf("  bp rate:  %.3f GUPS (back-projection kernels only)\n",
             gt.bp_gups);
    }
    if (o->batch_slices)
      printf("  slices:   %d per execute, %.1f slices/s end to end\n",
             o->batch_slices, slices_per_s);
    if (r->truth)
      printf("  rmse:     %.6g over %zu voxels of the phantom region\n", rmse,
             region);
    else
      printf("  rmse:     n/a (no ground truth)\n");
  }
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, PROG ": error writing the output: %s\n", strerror(errno));
    return 1;
  }
  return 0;
}

/* ---- The MR subcommand --------------------------------------------------- */

/* clara-recon-bench mr: times clara_mr_execute on a multi-coil Cartesian 2D
 * batch, the k-space of clara_mr_phantom_kspace (smooth coil maps, FOV
 * 256 mm, every slice the same) or of an MR file (ISMRMRD or fastMRI,
 * dataset 0). Plan creation is timed once, then W warm-up and K timed
 * executes of the same plan into the same buffer. No error against a
 * reference is computed; the report gives the image mean, so that a fast
 * but wrong reconstruction is visible (the phantom at 256 x 256, 8 coils,
 * RSS, ortho: about 0.2337). */

typedef struct mr_options {
  int nx, ny; /* --size NX,NY: recon matrix (readout, phase) */
  int fastmri;
  int coils, slices;
  clara_mr_combine combine;
  clara_mr_norm norm;
  clara_backend backend;
  int threads, repeat, warmup, json;
  const char *input;
} mr_options;

static void mr_usage(FILE *f) {
  fprintf(
      f, "usage: " PROG " mr [options]\n"
         "\n"
         "Times multi-coil Cartesian MR reconstruction (inverse FFT and coil\n"
         "combination) of a batch of 2D slices.\n"
         "\n"
         "options:\n"
         "  --size NX,NY     matrix, readout x phase (default 256,256; no\n"
         "                   readout oversampling)\n"
         "  --fastmri        fastMRI knee size: 640 readout (recon 320) x 368\n"
         "                   phase, 15 coils, 16 slices\n"
         "  --coils C        receive coils (default 8)\n"
         "  --slices S       slices per execute (default 32)\n"
         "  --combine M      rss (default) or adaptive\n"
         "  --norm N         ortho (default) or none\n"
         "  --backend B      auto, cpu or cuda (default auto)\n"
         "  --threads T      worker threads, 0 = all online cores (default 0)\n"
         "  --repeat K       timed executes (default 5)\n"
         "  --warmup W       untimed executes before them (default 1)\n"
         "  --input FILE     reconstruct dataset 0 of this ISMRMRD or fastMRI\n"
         "                   file instead\n"
         "  --json           print one JSON object instead of text\n"
         "  --help\n");
}

static int mr_usage_error(const char *msg, const char *arg) {
  fprintf(stderr, PROG " mr: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
  mr_usage(stderr);
  return 2;
}

static int mr_parse_args(int argc, char **argv, mr_options *o) {
  memset(o, 0, sizeof *o);
  o->coils = 8;
  o->slices = 32;
  o->combine = CLARA_MR_COMBINE_RSS;
  o->norm = CLARA_MR_NORM_ORTHO;
  o->backend = CLARA_BACKEND_AUTO;
  o->repeat = 5;
  o->warmup = 1;
  int coils_set = 0, slices_set = 0;
  for (int i = 2; i < argc; i++) {
    const char *name = argv[i];
    const char *val = NULL;
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
      mr_usage(stdout);
      return 0;
    }
    if (strcmp(name, "--json") == 0) {
      o->json = 1;
      continue;
    }
    if (strcmp(name, "--fastmri") == 0) {
      o->fastmri = 1;
      continue;
    }
    if (strncmp(name, "--", 2) != 0)
      return mr_usage_error("unexpected argument", name);
    if (i + 1 >= argc)
      return mr_usage_error("option needs a value", name);
    val = argv[++i];
    if (strcmp(name, "--size") == 0) {
      char buf[64], *comma;
      if (strlen(val) >= sizeof buf)
        return mr_usage_error("invalid --size", val);
      strcpy(buf, val);
      comma = strchr(buf, ',');
      if (comma)
        *comma = '\0';
      if (parse_int(buf, 2, 1 << 15, &o->nx) != 0 ||
          parse_int(comma ? comma + 1 : buf, 2, 1 << 15, &o->ny) != 0)
        return mr_usage_error("invalid --size (NX,NY or N)", val);
    } else if (strcmp(name, "--coils") == 0) {
      if (parse_int(val, 1, 1024, &o->coils) != 0)
        return mr_usage_error("invalid --coils", val);
      coils_set = 1;
    } else if (strcmp(name, "--slices") == 0) {
      if (parse_int(val, 1, 1 << 16, &o->slices) != 0)
        return mr_usage_error("invalid --slices", val);
      slices_set = 1;
    } else if (strcmp(name, "--threads") == 0) {
      if (parse_int(val, 0, 4096, &o->threads) != 0)
        return mr_usage_error("invalid --threads", val);
    } else if (strcmp(name, "--repeat") == 0) {
      if (parse_int(val, 1, 1000000, &o->repeat) != 0)
        return mr_usage_error("invalid --repeat", val);
    } else if (strcmp(name, "--warmup") == 0) {
      if (parse_int(val, 0, 1000000, &o->warmup) != 0)
        return mr_usage_error("invalid --warmup", val);
    } else if (strcmp(name, "--combine") == 0) {
      if (strcmp(val, "rss") == 0)
        o->combine = CLARA_MR_COMBINE_RSS;
      else if (strcmp(val, "adaptive") == 0)
        o->combine = CLARA_MR_COMBINE_ADAPTIVE;
      else
        return mr_usage_error("unknown --combine (rss or adaptive)", val);
    } else if (strcmp(name, "--norm") == 0) {
      if (strcmp(val, "ortho") == 0)
        o->norm = CLARA_MR_NORM_ORTHO;
      else if (strcmp(val, "none") == 0)
        o->norm = CLARA_MR_NORM_NONE;
      else
        return mr_usage_error("unknown --norm (ortho or none)", val);
    } else if (strcmp(name, "--backend") == 0) {
      if (clara_backend_parse(val, &o->backend) != CLARA_OK)
        return mr_usage_error("unknown --backend (auto, cpu or cuda)", val);
    } else if (strcmp(name, "--input") == 0) {
      o->input = val;
    } else {
      return mr_usage_error("unknown option", name);
    }
  }
  if (o->fastmri && o->nx)
    return mr_usage_error("--fastmri and --size exclude each other", NULL);
  if (o->input && (o->fastmri || o->nx || coils_set || slices_set))
    return mr_usage_error("--input takes its sizes from the file", NULL);
  if (o->fastmri) {
    if (!coils_set)
      o->coils = 15;
    if (!slices_set)
      o->slices = 16;
  }
  return -1;
}

static int mr_bench(const mr_options *o) {
  clara_mr_geometry g;
  clara_mr_options mo;
  clara_context_options copts;
  clara_context *ctx = NULL;
  clara_mr_plan *plan = NULL;
  clara_mr_file *file = NULL;
  float *k = NULL, *img = NULL;
  double *times = NULL;
  double t0, data_ms, plan_ms, cold_ms = NAN, med, tmin, tmax, sps, mean = 0;
  size_t nk, ni;
  clara_status st;
  int ret = 1;

  memset(&g, 0, sizeof g);
  t0 = now_ms();
  if (o->input) {
    st = clara_mr_file_open(o->input, &file);
    if (st != CLARA_OK) {
      ret = lib_error("clara_mr_file_open", st);
      goto done;
    }
    st = clara_mr_file_geometry(file, 0, &g);
    if (st != CLARA_OK) {
      ret = lib_error("clara_mr_file_geometry", st);
      goto done;
    }
  } else {
    g.coils = o->coils;
    g.nx = o->fastmri ? 640 : o->nx ? o->nx : 256;
    g.ny = o->fastmri ? 368 : o->ny ? o->ny : 256;
    g.nz = 1;
    g.slices = o->slices;
    g.recon_nx = o->fastmri ? 320 : g.nx;
    g.ky_first = g.kx_first = 0;
    g.ky_last = g.ny - 1;
    g.kx_last = g.nx - 1;
  }
  if (g.recon_nx == 0)
    g.recon_nx = g.nx;
  nk = (size_t)g.slices * (size_t)g.coils * (size_t)g.nz * (size_t)g.ny *
       (size_t)g.nx * 2;
  ni = (size_t)g.slices * (size_t)g.nz * (size_t)g.ny * (size_t)g.recon_nx;
  k = alloc_floats(nk, 1, 1, "k-space");
  img = alloc_floats(ni, 1, 1, "image");
  times = malloc(sizeof *times * (size_t)o->repeat);
  if (!k || !img || !times)
    goto done;
  if (file)
    st = clara_mr_file_kspace(file, 0, k);
  else
    st = clara_mr_phantom_kspace(&g, 256.0, 1, k, NULL);
  if (st != CLARA_OK) {
    ret = lib_error(file ? "clara_mr_file_kspace" : "clara_mr_phantom_kspace",
                    st);
    goto done;
  }
  data_ms = now_ms() - t0;

  clara_context_options_init(&copts);
  copts.backend = o->backend;
  copts.threads = o->threads;
  st = clara_context_create(&copts, &ctx);
  if (st != CLARA_OK) {
    ret = lib_error("clara_context_create", st);
    goto done;
  }
  clara_mr_options_init(&mo);
  mo.combine = o->combine;
  mo.norm = o->norm;
  t0 = now_ms();
  st = clara_mr_plan_create(ctx, &g, &mo, &plan);
  plan_ms = now_ms() - t0;
  if (st != CLARA_OK) {
    ret = lib_error("clara_mr_plan_create", st);
    goto done;
  }
  for (int r = 0; r < o->warmup + o->repeat; r++) {
    double dt;
    t0 = now_ms();
    st = clara_mr_execute(plan, k, img);
    dt = now_ms() - t0;
    if (st != CLARA_OK) {
      ret = lib_error("clara_mr_execute", st);
      goto done;
    }
    if (r == 0)
      cold_ms = dt;
    if (r >= o->warmup)
      times[r - o->warmup] = dt;
  }
  qsort(times, (size_t)o->repeat, sizeof *times, cmp_double);
  med = o->repeat % 2 ? times[o->repeat / 2]
                      : 0.5 * (times[o->repeat / 2 - 1] + times[o->repeat / 2]);
  tmin = times[0];
  tmax = times[o->repeat - 1];
  sps = (double)g.slices / (med * 1e-3);
  for (size_t i = 0; i < ni; i++)
    mean += img[i];
  mean /= (double)ni;

  if (o->json) {
    printf("{\"tool\": \"" PROG "\", \"version\": ");
    json_string(clara_version());
    printf(", \"mode\": \"mr\", \"nx\": %d, \"ny\": %d, \"nz\": %d, "
           "\"recon_nx\": %d, \"coils\": %d, \"slices\": %d, \"combine\": "
           "\"%s\", \"norm\": \"%s\", \"backend\": ",
           g.nx, g.ny, g.nz, g.recon_nx, g.coils, g.slices,
           o->combine == CLARA_MR_COMBINE_RSS ? "rss" : "adaptive",
           o->norm == CLARA_MR_NORM_ORTHO ? "ortho" : "none");
    json_string(clara_backend_name(clara_context_backend(ctx)));
    printf(", \"threads\": %d, \"input\": ", clara_context_threads(ctx));
    if (o->input)
      json_string(o->input);
    else
      printf("null");
    printf(", \"data_ms\": ");
    json_number(data_ms);
    printf(", \"plan_ms\": ");
    json_number(plan_ms);
    printf(", \"cold_ms\": ");
    json_number(cold_ms);
    printf(", \"median_ms\": ");
    json_number(med);
    printf(", \"min_ms\": ");
    json_number(tmin);
    printf(", \"max_ms\": ");
    json_number(tmax);
    printf(", \"repeat\": %d, \"warmup\": %d, \"slices_per_s\": ", o->repeat,
           o->warmup);
    json_number(sps);
    printf(", \"image_mean\": ");
    json_number(mean);
    printf("}\n");
  } else {
    printf(PROG " %s: mr %s, %d slices x %d coils, matrix %d x %d x %d "
                "(recon %d), norm %s\n",
           clara_version(),
           o->combine == CLARA_MR_COMBINE_RSS ? "rss" : "adaptive", g.slices,
           g.coils, g.nx, g.ny, g.nz, g.recon_nx,
           o->norm == CLARA_MR_NORM_ORTHO ? "ortho" : "none");
    printf("  backend %s, threads %d\n",
           clara_backend_name(clara_context_backend(ctx)),
           clara_context_threads(ctx));
    if (o->input)
      printf("  data:     %s (%s, read in %.1f ms)\n", o->input,
             clara_mr_file_format(file), data_ms);
    else
      printf("  data:     analytic Shepp-Logan k-space (made in %.1f ms)\n",
             data_ms);
    printf("  plan:     %.2f ms\n", plan_ms);
    printf("  execute:  median %.2f ms, min %.2f ms, max %.2f ms (%d runs "
           "after %d warm-up; first run %.2f ms)\n",
           med, tmin, tmax, o->repeat, o->warmup, cold_ms);
    printf("  rate:     %.1f slices/s\n", sps);
    printf("  image:    mean %.6g\n", mean);
  }
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, PROG ": error writing the output: %s\n", strerror(errno));
    goto done;
  }
  ret = 0;
done:
  clara_mr_plan_destroy(plan);
  clara_context_destroy(ctx);
  clara_mr_file_close(file);
  free(k);
  free(img);
  free(times);
  return ret;
}

/* ---- The denoise subcommand ---------------------------------------------- */

/* clara-recon-bench denoise: times clara_denoise on a batch of noisy CT-like
 * slices (a body ellipse of 40 HU with bone and lungs in air, Gaussian noise
 * of 20 HU; the same every run), then runs the PyTorch peer
 * (bench/peers/torch_denoise.py) on the same model file, input and thread
 * count, and prints both times and their ratio. The model file is loaded
 * once (timed separately), then W warm-up and K timed calls of
 * clara_denoise on the same buffers. GFLOP/s counts the multiply-adds of a
 * direct convolution (clara_denoiser_info.flops_per_pixel), whatever
 * algorithm ran. Before a trained model exists, make a random one with
 * python3 bench/peers/torch_denoise.py --write-random m.h5 --layers L
 * --width C. */

typedef struct dn_options {
  const char *model;
  int size, batch;
  clara_backend backend;
  int threads, repeat, warmup, json;
  int fp16;
  const char *peer_precision; /* NULL: the same as ours */
  const char *peer;           /* NULL: look for it */
  int no_peer;
} dn_options;

static void dn_usage(FILE *f) {
  fprintf(
      f,
      "usage: " PROG " denoise --model FILE [options]\n"
      "\n"
      "Times clara_denoise on noisy CT-like slices and compares with PyTorch\n"
      "(bench/peers/torch_denoise.py) on the same model, input and threads.\n"
      "\n"
      "options:\n"
      "  --model FILE     denoiser model file (HDF5, docs/FORMATS.md); for a\n"
      "                   random one: python3 bench/peers/torch_denoise.py\n"
      "                   --write-random FILE --layers L --width C\n"
      "  --size N         N x N slices (default 512)\n"
      "  --batch B        slices per call (default 1)\n"
      "  --backend B      auto, cpu or cuda (default auto)\n"
      "  --precision P    fp32 (default) or fp16 (GPU only)\n"
      "  --threads T      worker threads, 0 = all online cores (default 0);\n"
      "                   the peer gets the same number\n"
      "  --repeat K       timed calls (default 5)\n"
      "  --warmup W       untimed calls before them (default 1)\n"
      "  --peer FILE      the peer script (default: $CLARA_RECON_PEERS/\n"
      "                   torch_denoise.py, else bench/peers/ beside this\n"
      "                   program or below the current directory)\n"
      "  --peer-precision P  the peer's precision on a GPU: fp32 (TF32 off),\n"
      "                   tf32 or fp16 (default: the same as --precision)\n"
      "  --no-peer        time the library only\n"
      "  --json           print one JSON object instead of text\n"
      "  --help\n"
      "\n"
      "On a CUDA context the peer runs on the GPU too (cuDNN), host to host\n"
      "as clara_denoise: upload, run, download, synchronise.\n");
}

static int dn_usage_error(const char *msg, const char *arg) {
  fprintf(stderr, PROG " denoise: %s%s%s\n", msg, arg ? ": " : "",
          arg ? arg : "");
  dn_usage(stderr);
  return 2;
}

static int dn_parse_args(int argc, char **argv, dn_options *o) {
  memset(o, 0, sizeof *o);
  o->size = 512;
  o->batch = 1;
  o->backend = CLARA_BACKEND_AUTO;
  o->repeat = 5;
  o->warmup = 1;
  for (int i = 2; i < argc; i++) {
    const char *name = argv[i], *val;
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
      dn_usage(stdout);
      return 0;
    }
    if (strcmp(name, "--json") == 0) {
      o->json = 1;
      continue;
    }
    if (strcmp(name, "--no-peer") == 0) {
      o->no_peer = 1;
      continue;
    }
    if (strncmp(name, "--", 2) != 0)
      return dn_usage_error("unexpected argument", name);
    if (i + 1 >= argc)
      return dn_usage_error("option needs a value", name);
    val = argv[++i];
    if (strcmp(name, "--model") == 0) {
      o->model = val;
    } else if (strcmp(name, "--peer") == 0) {
      o->peer = val;
    } else if (strcmp(name, "--size") == 0) {
      if (parse_int(val, 1, 1 << 15, &o->size) != 0)
        return dn_usage_error("invalid --size", val);
    } else if (strcmp(name, "--batch") == 0) {
      if (parse_int(val, 1, 1 << 16, &o->batch) != 0)
        return dn_usage_error("invalid --batch", val);
    } else if (strcmp(name, "--threads") == 0) {
      if (parse_int(val, 0, 4096, &o->threads) != 0)
        return dn_usage_error("invalid --threads", val);
    } else if (strcmp(name, "--repeat") == 0) {
      if (parse_int(val, 1, 1000000, &o->repeat) != 0)
        return dn_usage_error("invalid --repeat", val);
    } else if (strcmp(name, "--warmup") == 0) {
      if (parse_int(val, 0, 1000000, &o->warmup) != 0)
        return dn_usage_error("invalid --warmup", val);
    } else if (strcmp(name, "--backend") == 0) {
      if (clara_backend_parse(val, &o->backend) != CLARA_OK)
        return dn_usage_error("unknown --backend (auto, cpu or cuda)", val);
    } else if (strcmp(name, "--precision") == 0) {
      if (strcmp(val, "fp32") == 0)
        o->fp16 = 0;
      else if (strcmp(val, "fp16") == 0)
        o->fp16 = 1;
      else
        return dn_usage_error("unknown --precision (fp32 or fp16)", val);
    } else if (strcmp(name, "--peer-precision") == 0) {
      if (strcmp(val, "fp32") != 0 && strcmp(val, "tf32") != 0 &&
          strcmp(val, "fp16") != 0)
        return dn_usage_error("unknown --peer-precision (fp32, tf32 or fp16)",
                              val);
      o->peer_precision = val;
    } else {
      return dn_usage_error("unknown option", name);
    }
  }
  if (!o->model)
    return dn_usage_error("--model FILE is required", NULL);
  return -1;
}

/* Noisy CT-like slices in HU (deterministic). */
static void dn_make_input(float *x, int n, int batch) {
  uint64_t s = 0x2545F4914F6CDD1Dull;
  for (int z = 0; z < batch; z++)
    for (int iy = 0; iy < n; iy++)
      for (int ix = 0; ix < n; ix++) {
        double u = (ix - 0.5 * n) / (0.42 * n), v = (iy - 0.5 * n) / (0.32 * n);
        double lu = (fabs(u) - 0.45) / 0.3, lv = v / 0.55;
        double r1, r2, hu;
        if (u * u + v * v >= 1.0)
          hu = -1000.0;
        else if (u * u + v * v > 0.85)
          hu = 60.0; /* skin and muscle */
        else if (lu * lu + lv * lv < 1.0)
          hu = -850.0; /* lungs */
        else if (u * u / 0.01 + (v + 0.6) * (v + 0.6) / 0.02 < 1.0)
          hu = 900.0; /* spine */
        else
          hu = 40.0;
        /* Box-Muller on a 64-bit LCG */
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        r1 = ((double)(s >> 11) + 0.5) / 9007199254740992.0;
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        r2 = ((double)(s >> 11) + 0.5) / 9007199254740992.0;
        hu += 20.0 * sqrt(-2.0 * log(r1)) * cos(2.0 * M_PI * r2);
        x[((size_t)z * n + iy) * n + ix] = (float)hu;
      }
}

static int file_exists(const char *p) {
  FILE *f = fopen(p, "r");
  if (!f)
    return 0;
  fclose(f);
  return 1;
}

/* Finds the peer script: --peer, $CLARA_RECON_PEERS, peers/ beside argv[0]
 * or beside its directory (an in-tree build), ./bench/peers. */
static int dn_find_peer(const dn_options *o, const char *argv0, char *buf,
                        size_t len) {
  const char *env = getenv("CLARA_RECON_PEERS");
  const char *slash = strrchr(argv0, '/');
  if (o->peer) {
    snprintf(buf, len, "%s", o->peer);
    return file_exists(buf);
  }
  if (env && *env) {
    snprintf(buf, len, "%s/torch_denoise.py", env);
    if (file_exists(buf))
      return 1;
  }
  if (slash) {
    snprintf(buf, len, "%.*s/peers/torch_denoise.py", (int)(slash - argv0),
             argv0);
    if (file_exists(buf))
      return 1;
    /* libtool runs the real program from .libs/ */
    snprintf(buf, len, "%.*s/../peers/torch_denoise.py", (int)(slash - argv0),
             argv0);
    if (file_exists(buf))
      return 1;
  }
  snprintf(buf, len, "bench/peers/torch_denoise.py");
  return file_exists(buf);
}

static int dn_write_raw(const char *path, const float *x, size_t n) {
  FILE *f = fopen(path, "wb");
  int ok = f && fwrite(x, sizeof *x, n, f) == n;
  if (f && fclose(f) != 0)
    ok = 0;
  return ok ? 0 : -1;
}

/* Reads a number after "key": in a one-line JSON object; NAN if absent. */
static double json_get(const char *js, const char *key) {
  char pat[64];
  const char *p;
  snprintf(pat, sizeof pat, "\"%s\": ", key);
  p = strstr(js, pat);
  if (!p)
    return NAN;
  p += strlen(pat);
  if (strncmp(p, "null", 4) == 0)
    return NAN;
  return strtod(p, NULL);
}

/* Quotes s for a POSIX shell. */
static void shell_quote(char *dst, size_t len, const char *s) {
  size_t k = 0;
  if (len < 3)
    return;
  dst[k++] = '\'';
  for (; *s && k + 6 < len; s++) {
    if (*s == '\'') {
      memcpy(dst + k, "'\\''", 4);
      k += 4;
    } else {
      dst[k++] = *s;
    }
  }
  dst[k++] = '\'';
  dst[k] = '\0';
}

/* The peer's precision on a GPU: --peer-precision, else ours. */
static const char *dn_peer_precision(const dn_options *o) {
  return o->peer_precision ? o->peer_precision : o->fp16 ? "fp16" : "fp32";
}

/* Runs the peer; fills 'line' with its JSON. Returns its exit status, or
 * -1 when it could not run. */
static int dn_run_peer(const char *peer, const dn_options *o, int threads,
                       int cuda, const char *in_path, const char *ours_path,
                       char *line, size_t len) {
  char cmd[8192], qp[1200], qm[1200], qi[1200], qo[1200];
  FILE *p;
  int st;
  shell_quote(qp, sizeof qp, peer);
  shell_quote(qm, sizeof qm, o->model);
  shell_quote(qi, sizeof qi, in_path);
  shell_quote(qo, sizeof qo, ours_path);
  snprintf(cmd, sizeof cmd,
           "python3 %s --model %s --size %d --batch %d --threads %d "
           "--repeat %d --warmup %d --input %s --ours %s --device %s "
           "--precision %s --json",
           qp, qm, o->size, o->batch, threads, o->repeat,
           o->warmup > 2 ? o->warmup : 2, qi, qo, cuda ? "cuda" : "cpu",
           cuda ? dn_peer_precision(o) : "fp32");
  p = popen(cmd, "r");
  if (!p)
    return -1;
  line[0] = '\0';
  {
    char buf[4096];
    while (fgets(buf, sizeof buf, p))
      if (buf[0] == '{')
        snprintf(line, len, "%s", buf);
      else if (!o->json)
        fputs(buf, stdout); /* a SKIP message or a warning */
  }
  st = pclose(p);
  if (st == -1)
    return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int dn_bench(const dn_options *o, const char *argv0) {
  clara_context_options copts;
  clara_context *ctx = NULL;
  clara_denoiser *d = NULL;
  clara_denoiser_info info;
  float *in = NULL, *out = NULL;
  double *times = NULL, t0, load_ms, cold_ms = NAN, med, tmin, tmax, mps,
         gflops;
  double peer_ms = NAN, ratio = NAN, peer_diff = NAN, peer_l2 = NAN;
  size_t n = (size_t)o->size * (size_t)o->size * (size_t)o->batch;
  char peer[4096], line[8192] = "", in_path[64] = "", out_path[64] = "";
  int peer_status = -2, threads, ret = 1;
  clara_status st;

  in =
      alloc_floats((size_t)o->batch, (size_t)o->size, (size_t)o->size, "input");
  out = alloc_floats((size_t)o->batch, (size_t)o->size, (size_t)o->size,
                     "output");
  times = malloc(sizeof *times * (size_t)o->repeat);
  if (!in || !out || !times)
    goto done;
  dn_make_input(in, o->size, o->batch);

  clara_context_options_init(&copts);
  copts.backend = o->backend;
  copts.threads = o->threads;
  st = clara_context_create(&copts, &ctx);
  if (st != CLARA_OK) {
    ret = lib_error("clara_context_create", st);
    goto done;
  }
  threads = clara_context_threads(ctx);
  t0 = now_ms();
  st = clara_denoiser_load(ctx, o->model, &d);
  if (st == CLARA_OK && o->fp16)
    st = clara_denoiser_set_precision(d, CLARA_PRECISION_FP16);
  load_ms = now_ms() - t0;
  if (st != CLARA_OK) {
    ret = lib_error("clara_denoiser_load", st);
    goto done;
  }
  clara_denoiser_get_info(d, &info);
  for (int r = 0; r < o->warmup + o->repeat; r++) {
    double dt;
    t0 = now_ms();
    st = clara_denoise(d, in, out, o->size, o->size, o->batch);
    dt = now_ms() - t0;
    if (st != CLARA_OK) {
      ret = lib_error("clara_denoise", st);
      goto done;
    }
    if (r == 0)
      cold_ms = dt;
    if (r >= o->warmup)
      times[r - o->warmup] = dt;
  }
  qsort(times, (size_t)o->repeat, sizeof *times, cmp_double);
  med = o->repeat % 2 ? times[o->repeat / 2]
                      : 0.5 * (times[o->repeat / 2 - 1] + times[o->repeat / 2]);
  tmin = times[0];
  tmax = times[o->repeat - 1];
  mps = (double)n / (med * 1e-3) / 1e6;
  gflops = info.flops_per_pixel * (double)n / (med * 1e-3) / 1e9;

  if (!o->no_peer) {
    if (!dn_find_peer(o, argv0, peer, sizeof peer)) {
      peer_status = -1;
      if (!o->json)
        fprintf(stderr,
                PROG ": note: bench/peers/torch_denoise.py not found "
                     "(--peer FILE or CLARA_RECON_PEERS); no comparison\n");
    } else {
      const char *tmp = getenv("TMPDIR");
      int fd1, fd2;
      if (!tmp || !*tmp || strlen(tmp) > 40)
        tmp = "/tmp";
      snprintf(in_path, sizeof in_path, "%s/clara-dn-in-XXXXXX", tmp);
      snprintf(out_path, sizeof out_path, "%s/clara-dn-out-XXXXXX", tmp);
      fd1 = mkstemp(in_path);
      fd2 = mkstemp(out_path);
      if (fd1 >= 0)
        close(fd1);
      if (fd2 >= 0)
        close(fd2);
      if (fd1 < 0 || fd2 < 0 || dn_write_raw(in_path, in, n) != 0 ||
          dn_write_raw(out_path, out, n) != 0) {
        fprintf(stderr, PROG ": cannot write the peer's input in %s: %s\n", tmp,
                strerror(errno));
        goto done;
      }
      peer_status = dn_run_peer(
          peer, o, threads, clara_context_backend(ctx) == CLARA_BACKEND_CUDA,
          in_path, out_path, line, sizeof line);
      if (peer_status == 0 && line[0]) {
        peer_ms = json_get(line, "median_ms");
        peer_diff = json_get(line, "max_rel_diff");
        peer_l2 = json_get(line, "rel_l2");
        ratio = peer_ms / med;
      }
    }
  }

  if (o->json) {
    printf("{\"tool\": \"" PROG "\", \"version\": ");
    json_string(clara_version());
    printf(", \"mode\": \"denoise\", \"model\": ");
    json_string(o->model);
    printf(", \"architecture\": ");
    json_string(info.architecture);
    printf(", \"layers\": %d, \"max_channels\": %d, \"parameters\": %lld, "
           "\"flops_per_pixel\": ",
           info.layers, info.max_channels, info.parameters);
    json_number(info.flops_per_pixel);
    printf(", \"size\": %d, \"batch\": %d, \"backend\": ", o->size, o->batch);
    json_string(clara_backend_name(clara_context_backend(ctx)));
    printf(", \"precision\": \"%s\", \"threads\": %d, \"load_ms\": ",
           o->fp16 ? "fp16" : "fp32", threads);
    json_number(load_ms);
    printf(", \"cold_ms\": ");
    json_number(cold_ms);
    printf(", \"median_ms\": ");
    json_number(med);
    printf(", \"min_ms\": ");
    json_number(tmin);
    printf(", \"max_ms\": ");
    json_number(tmax);
    printf(", \"repeat\": %d, \"warmup\": %d, \"megapixels_per_s\": ",
           o->repeat, o->warmup);
    json_number(mps);
    printf(", \"gflops\": ");
    json_number(gflops);
    printf(", \"peer\": ");
    if (line[0]) {
      size_t k = strlen(line);
      while (k && (line[k - 1] == '\n' || line[k - 1] == '\r'))
        line[--k] = '\0';
      fputs(line, stdout);
    } else {
      printf("null");
    }
    printf(", \"peer_status\": %d, \"speedup_vs_peer\": ", peer_status);
    json_number(ratio);
    printf("}\n");
  } else {
    printf(PROG " %s: denoise %s (%s, %d layers, up to %d channels, %.0f "
                "flop/pixel), %d x %d x %d\n",
           clara_version(), o->model, info.architecture, info.layers,
           info.max_channels, info.flops_per_pixel, o->batch, o->size, o->size);
    printf("  backend %s, threads %d, precision %s\n",
           clara_backend_name(clara_context_backend(ctx)), threads,
           o->fp16 ? "fp16" : "fp32");
    printf("  load:     %.2f ms\n", load_ms);
    printf("  execute:  median %.2f ms, min %.2f ms, max %.2f ms (%d runs "
           "after %d warm-up; first run %.2f ms)\n",
           med, tmin, tmax, o->repeat, o->warmup, cold_ms);
    printf("  rate:     %.2f megapixels/s, %.1f GFLOP/s (direct-convolution "
           "count)\n",
           mps, gflops);
    if (peer_status == 0 && isfinite(peer_ms)) {
      if (clara_context_backend(ctx) == CLARA_BACKEND_CUDA)
        printf("  torch:    median %.2f ms, same model and input on the GPU, "
               "%s (%s)\n",
               peer_ms, dn_peer_precision(o), peer);
      else
        printf("  torch:    median %.2f ms, same model, input and threads "
               "(%s)\n",
               peer_ms, peer);
      printf("  ratio:    %.2fx faster than PyTorch; outputs: max |diff| / "
             "max |torch| %.2e, rel L2 %.2e\n",
             ratio, peer_diff, peer_l2);
    } else if (peer_status == 77) {
      printf("  torch:    skipped (the peer lacks its modules or, on a GPU, a "
             "device)\n");
    } else if (peer_status != -2 && peer_status != -1) {
      printf("  torch:    the peer failed (exit status %d)\n", peer_status);
    }
  }
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, PROG ": error writing the output: %s\n", strerror(errno));
    goto done;
  }
  ret = peer_status > 0 && peer_status != 77 ? 1 : 0;
done:
  if (in_path[0])
    unlink(in_path);
  if (out_path[0])
    unlink(out_path);
  clara_denoiser_destroy(d);
  clara_context_destroy(ctx);
  free(in);
  free(out);
  free(times);
  return ret;
}

int main(int argc, char **argv) {
  options o;
  run r;
  int ret;
  if (argc >= 2 && strcmp(argv[1], "denoise") == 0) {
    dn_options dn;
    ret = dn_parse_args(argc, argv, &dn);
    return ret >= 0 ? ret : dn_bench(&dn, argv[0]);
  }
  if (argc >= 2 && strcmp(argv[1], "mr") == 0) {
    mr_options mo;
    ret = mr_parse_args(argc, argv, &mo);
    return ret >= 0 ? ret : mr_bench(&mo);
  }
  ret = parse_args(argc, argv, &o);
  if (ret >= 0)
    return ret;
  memset(&r, 0, sizeof r);
  ret = bench(&o, &r);
  run_free(&r);
  return ret;
}
