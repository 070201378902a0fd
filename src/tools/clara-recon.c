/*
 * clara-recon.c -- the command-line tool of libclara-recon.
 *
 *   clara-recon phantom ct --geometry G --size N --views V -o FILE.h5
 *   clara-recon phantom mr --size N --coils C -o FILE.h5 [options]
 *   clara-recon ct IN.h5 -o OUT.h5 [options]       (--denoise ct|PATH)
 *   clara-recon mr IN.h5 -o OUT.h5 [options]       (--denoise mr|PATH)
 *   clara-recon denoise IN.h5 -o OUT.h5 --model ct|mr|PATH [options]
 *   clara-recon info FILE.h5 [--compare TRUTH.h5]
 *   clara-recon export-dicom IN.h5 -o DIR [options]
 *   clara-recon demo [-o DIR] [--size N]
 *
 * ct and mr also write a DICOM series (--dicom DIR, src/tools/
 * dicom_export.h, when built with DCMTK) and every command that writes an
 * image a PNG preview (--png FILE, png_preview.h, with libpng). A progress
 * bar is drawn on stderr when it is a terminal; SIGINT and SIGTERM cancel
 * the library's work through the progress callback, and whatever the run
 * wrote is removed (as it is after any failure): the exit status is then
 * 128 + the signal's number.
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
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "clara_recon.h"
#ifdef HAVE_DCMTK
#include "dicom_export.h"
#endif
#ifdef HAVE_PNG
#include "png_preview.h"
#endif

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
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

/* The signal (SIGINT, SIGTERM) that asked to stop, 0 while none did. */
static volatile sig_atomic_t g_signal = 0;
static void progress_clear(void);

/* ------------------------------------------------------------------------ */
/* Messages                                                                  */
/* ------------------------------------------------------------------------ */

/* A failed library call: "clara-recon: <what>: <status>: <message>". */
static int lib_error(clara_status st, const char *fmt, ...) PRINTF_LIKE(2, 3);
static int lib_error(clara_status st, const char *fmt, ...) {
  va_list ap;
  progress_clear();
  /* a cancellation that Ctrl-C asked for: main says "cancelled" */
  if (st == CLARA_ERR_CANCELLED && g_signal)
    return EXIT_FAILURE;
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
  progress_clear();
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
  progress_clear();
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

/* "clara-recon: warning: ..." (always printed) and "clara-recon: note:
 * ..." (not with --quiet). */
static void warn_msg(const char *fmt, ...) PRINTF_LIKE(1, 2);
static void warn_msg(const char *fmt, ...) {
  va_list ap;
  progress_clear();
  fputs(PROG ": warning: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

static void note_msg(int quiet, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void note_msg(int quiet, const char *fmt, ...) {
  va_list ap;
  if (quiet)
    return;
  progress_clear();
  fputs(PROG ": note: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
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
/* Ctrl-C and the progress bar                                               */
/* ------------------------------------------------------------------------ */

static void on_signal(int sig) { g_signal = sig; }

/* SIGINT (Ctrl-C) and SIGTERM set g_signal; the progress callback then
 * cancels the library's work, and main removes what the run wrote and
 * exits with 128 + the signal's number. SA_RESETHAND: a second Ctrl-C
 * ends the program at once. A signal that is ignored when the program
 * starts (a background job of a non-interactive shell, nohup) stays
 * ignored, as the shell meant. */
static void install_signal_handlers(void) {
  static const int sigs[] = {SIGINT, SIGTERM};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
    struct sigaction old, sa;
    if (sigaction(sigs[i], NULL, &old) != 0 || old.sa_handler == SIG_IGN)
      continue;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | SA_RESETHAND;
    (void)sigaction(sigs[i], &sa, NULL);
  }
}

/* The progress bar: drawn on stderr when it is a terminal and the command
 * was not given --quiet, from the context's progress callback (the stage
 * the library names and its fraction), at most every 100 ms, and erased
 * before anything else is printed. */
enum { PROGRESS_BAR = 30 };
static const double kProgressInterval = 100.0; /* ms between redraws */

static struct {
  int enabled;
  int drawn;   /* a bar is on the terminal's line */
  double last; /* now_ms() of the last redraw */
  int percent; /* the percentage last drawn */
  char stage[40];
} g_progress;

static void progress_setup(int quiet) {
  memset(&g_progress, 0, sizeof g_progress);
  g_progress.enabled = !quiet && isatty(STDERR_FILENO);
}

static void progress_clear(void) {
  if (!g_progress.drawn)
    return;
  fputs("\r\033[K", stderr);
  fflush(stderr);
  g_progress.drawn = 0;
}

static void progress_draw(const char *stage, double fraction) {
  char bar[PROGRESS_BAR + 1];
  double t = now_ms();
  int same = strncmp(stage, g_progress.stage, sizeof g_progress.stage - 1) == 0;
  int percent, fill;
  if (!(fraction >= 0))
    fraction = 0;
  if (fraction > 1)
    fraction = 1;
  percent = (int)(100.0 * fraction);
  if (same && g_progress.drawn &&
      (percent == g_progress.percent ||
       t - g_progress.last < kProgressInterval))
    return;
  fill = (int)(PROGRESS_BAR * fraction + 0.5);
  for (int i = 0; i < PROGRESS_BAR; i++)
    bar[i] = i < fill ? '#' : '.';
  bar[PROGRESS_BAR] = '\0';
  fprintf(stderr, "\r" PROG " %s: %-20.20s [%s] %3d%%\033[K",
          g_cmd ? g_cmd : "", stage, bar, percent);
  fflush(stderr);
  snprintf(g_progress.stage, sizeof g_progress.stage, "%s", stage);
  g_progress.percent = percent;
  g_progress.last = t;
  g_progress.drawn = 1;
}

/* The context's progress callback: nonzero (cancel) once a signal came. */
static int progress_cb(const char *stage, double fraction, void *user) {
  (void)user;
  if (g_signal)
    return 1;
  if (g_progress.enabled)
    progress_draw(stage ? stage : "", fraction);
  return 0;
}

/* Sets the progress callback in a context's options. */
static void use_progress(clara_context_options *co) {
  co->progress = progress_cb;
  co->progress_user = NULL;
}

/* Nonzero once a signal asked to stop: the commands check it between
 * stages and before each write, returning EXIT_FAILURE (main turns that
 * into the signal's status). */
static int interrupted(void) { return g_signal != 0; }

/* ------------------------------------------------------------------------ */
/* What this run wrote                                                       */
/* ------------------------------------------------------------------------ */

/* Every output a command writes is recorded here once it is complete, so
 * that main can remove them all when the command fails or is cancelled
 * afterwards: a run either succeeds or leaves nothing new behind. */
enum { OUT_FILE = 0, OUT_SERIES = 1, OUT_DIR = 2, MAX_OUTPUTS = 32 };

static struct {
  char *path;
  int kind;        /* OUT_FILE, OUT_SERIES (a DICOM directory) or OUT_DIR */
  int dir_existed; /* OUT_SERIES: it replaced an empty directory */
} g_outputs[MAX_OUTPUTS];
static int g_noutputs = 0;

static void output_written(const char *path, int kind, int dir_existed) {
  char *p;
  if (g_noutputs == MAX_OUTPUTS || !(p = strdup(path)))
    return; /* not reachable with the commands below */
  g_outputs[g_noutputs].path = p;
  g_outputs[g_noutputs].kind = kind;
  g_outputs[g_noutputs].dir_existed = dir_existed;
  g_noutputs++;
}

/* Removes the files of a directory that this run created (a DICOM
 * series), then the directory unless it was there before. */
static void remove_series(const char *dir, int keep_dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  if (d) {
    while ((e = readdir(d)) != NULL) {
      char *p;
      size_t n;
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
        continue;
      n = strlen(dir) + strlen(e->d_name) + 2;
      if ((p = malloc(n)) != NULL) {
        snprintf(p, n, "%s/%s", dir, e->d_name);
        (void)unlink(p);
        free(p);
      }
    }
    closedir(d);
  }
  if (!keep_dir)
    (void)rmdir(dir);
}

/* Undoes every recorded output, newest first, saying so when 'tell'. */
static void outputs_remove(int tell) {
  for (int i = g_noutputs - 1; i >= 0; i--) {
    if (tell && g_outputs[i].kind != OUT_DIR)
      fprintf(stderr, PROG ": removed %s, written before the failure\n",
              g_outputs[i].path);
    switch (g_outputs[i].kind) {
    case OUT_FILE:
      (void)unlink(g_outputs[i].path);
      break;
    case OUT_SERIES:
      remove_series(g_outputs[i].path, g_outputs[i].dir_existed);
      break;
    case OUT_DIR:
      (void)rmdir(g_outputs[i].path); /* only when empty */
      break;
    }
  }
}

static void outputs_forget(void) {
  for (int i = 0; i < g_noutputs; i++)
    free(g_outputs[i].path);
  g_noutputs = 0;
}

/* ------------------------------------------------------------------------ */
/* DICOM series and PNG previews (src/tools/dicom_export.h, png_preview.h)    */
/* ------------------------------------------------------------------------ */

/* The export options a command takes. */
typedef struct export_opts {
  const char *dicom;              /* --dicom DIR */
  const char *dicom_opt;          /* its name in messages: NULL, "--dicom" */
  const char *dicom_template;     /* --dicom-template FILE */
  const char *series_description; /* --series-description TEXT */
  int series_number;              /* --series-number N; 0: the default */
  const char *png;                /* --png FILE */
  int have_window;                /* --window C,W */
  double window_center, window_width;
} export_opts;

enum {
  EXPORT_OPTION_BASE = 1000,
  OPT_DICOM = EXPORT_OPTION_BASE,
  OPT_DICOM_TEMPLATE,
  OPT_SERIES_DESCRIPTION,
  OPT_SERIES_NUMBER,
  OPT_PNG,
  OPT_DISPLAY_WINDOW
};

#define DICOM_LONGOPTS                                                         \
  {"dicom", required_argument, NULL, OPT_DICOM},                               \
      {"dicom-template", required_argument, NULL, OPT_DICOM_TEMPLATE},         \
      {"series-description", required_argument, NULL, OPT_SERIES_DESCRIPTION}, \
  {                                                                            \
    "series-number", required_argument, NULL, OPT_SERIES_NUMBER                \
  }
#define PNG_LONGOPTS                                                           \
  {"png", required_argument, NULL, OPT_PNG}, {                                 \
    "window", required_argument, NULL, OPT_DISPLAY_WINDOW                      \
  }

/* Parses "C,W" for --window. */
static int parse_window(const char *opt, const char *text, export_opts *eo) {
  char *end;
  const char *comma = strchr(text, ',');
  double c, w;
  if (!comma)
    return usage_error("%s: '%s' is not C,W (a centre and a width, e.g. "
                       "40,400)",
                       opt, text);
  errno = 0;
  c = strtod(text, &end);
  while (end < comma && isspace((unsigned char)*end))
    end++;
  if (end == text || end != comma || !isfinite(c))
    return usage_error("%s: '%s': the centre is not a finite number", opt,
                       text);
  w = strtod(comma + 1, &end);
  while (*end && isspace((unsigned char)*end))
    end++;
  if (end == comma + 1 || *end || !isfinite(w) || !(w > 0))
    return usage_error("%s: '%s': the width must be a number > 0", opt, text);
  eo->have_window = 1;
  eo->window_center = c;
  eo->window_width = w;
  return 0;
}

/* Handles one of the export options of getopt_long's result c; 1 when c is
 * not one (the caller goes on), else 0 or the usage error's status (as
 * -status, so that 0 stays "handled"). */
static int export_option(int c, const char *arg, export_opts *eo, int *rc) {
  *rc = 0;
  switch (c) {
  case OPT_DICOM:
    if (!*arg)
      *rc = usage_error("--dicom: the directory name is empty");
    eo->dicom = arg;
    return 0;
  case OPT_DICOM_TEMPLATE:
    if (!*arg)
      *rc = usage_error("--dicom-template: the file name is empty");
    eo->dicom_template = arg;
    return 0;
  case OPT_SERIES_DESCRIPTION:
    eo->series_description = arg;
    return 0;
  case OPT_SERIES_NUMBER:
    *rc = parse_int("--series-number", arg, 1, 2147483647, &eo->series_number);
    return 0;
  case OPT_PNG:
    if (!*arg)
      *rc = usage_error("--png: the file name is empty");
    eo->png = arg;
    return 0;
  case OPT_DISPLAY_WINDOW:
    *rc = parse_window("--window", arg, eo);
    return 0;
  default:
    return 1;
  }
}

/* Whether 'path' starts like a DICOM Part 10 file: 128 bytes, "DICM". */
static int check_dicom_template(const char *path) {
  unsigned char head[132];
  struct stat st;
  ssize_t n;
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return fail_msg("--dicom-template %s: %s", path, strerror(errno));
  if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    close(fd);
    return fail_msg("--dicom-template %s: is a directory", path);
  }
  n = read(fd, head, sizeof head);
  close(fd);
  if (n != (ssize_t)sizeof head || memcmp(head + 128, "DICM", 4) != 0)
    return fail_msg("--dicom-template %s: not a DICOM file (no \"DICM\" "
                    "after the 128-byte preamble)",
                    path);
  return 0;
}

/* Checks before any work that a DICOM series can go to 'dir': a new name
 * (or an empty directory) in an existing, writable directory. The
 * writer has the last word; this saves a long computation. */
static int check_dicom_dir(const char *opt, const char *dir) {
  struct stat st;
  char *parent;
  const char *slash;
  size_t len = strlen(dir);
  int rc = 0;
  while (len > 1 && dir[len - 1] == '/')
    len--;
  if (lstat(dir, &st) == 0) {
    DIR *d;
    struct dirent *e;
    int entries = 0;
    if (!S_ISDIR(st.st_mode))
      return fail_msg("%s %s: exists and is not a directory", opt, dir);
    if (!(d = opendir(dir)))
      return fail_msg("%s %s: %s", opt, dir, strerror(errno));
    while ((e = readdir(d)) != NULL)
      if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
        entries++;
    closedir(d);
    if (entries)
      return fail_msg("%s %s: the directory is not empty (give a new or an "
                      "empty directory)",
                      opt, dir);
  } else if (errno != ENOENT) {
    return fail_msg("%s %s: %s", opt, dir, strerror(errno));
  }
  parent = strndup(dir, len);
  if (!parent)
    return fail_msg("out of memory");
  slash = strrchr(parent, '/');
  if (!slash) {
    free(parent);
    parent = strdup(".");
  } else {
    parent[slash == parent ? 1 : (size_t)(slash - parent)] = '\0';
  }
  if (!parent)
    return fail_msg("out of memory");
  if (stat(parent, &st) != 0)
    rc = fail_msg("%s %s: %s: %s", opt, dir, parent, strerror(errno));
  else if (!S_ISDIR(st.st_mode))
    rc = fail_msg("%s %s: %s is not a directory", opt, dir, parent);
  else if (access(parent, W_OK | X_OK) != 0)
    rc = fail_msg("%s %s: %s: %s", opt, dir, parent, strerror(errno));
  free(parent);
  return rc;
}

/* The checks of the export options before any work: the features this
 * build has, the paths, the template. */
static int check_export(const export_opts *eo) {
  int rc;
  if ((eo->dicom_template || eo->series_description || eo->series_number) &&
      !eo->dicom)
    return usage_error("--dicom-template, --series-description and "
                       "--series-number need --dicom DIR");
#ifndef HAVE_DCMTK
  if (eo->dicom)
    return fail_msg("--dicom: this clara-recon was built without DCMTK, so "
                    "it cannot write DICOM (install libdcmtk-dev and run "
                    "configure again)");
#endif
#ifndef HAVE_PNG
  if (eo->png)
    return fail_msg("--png: this clara-recon was built without libpng, so "
                    "it cannot write PNG previews (install libpng-dev and run "
                    "configure again)");
#endif
  if (eo->dicom && (rc = check_dicom_dir(
                        eo->dicom_opt ? eo->dicom_opt : "--dicom", eo->dicom)))
    return rc;
  if (eo->dicom_template && (rc = check_dicom_template(eo->dicom_template)))
    return rc;
  if (eo->png && (rc = check_output_path(eo->png)))
    return rc;
  return 0;
}

/* Writes the PNG preview of 'image' (on 'vol'), in the --window or the
 * default one: CT images in HU the soft-tissue window, anything else
 * (MR, CT in 1/mm) the 1st to 99th percentile. */
static int write_png(const export_opts *eo, const char *path,
                     const clara_volume *vol, const float *image, int hu,
                     int quiet) {
#ifdef HAVE_PNG
  char err[512];
  double c = eo->window_center, w = eo->window_width;
  clara_status st;
  if (interrupted())
    return EXIT_FAILURE;
  if (!eo->have_window) {
    st = clara_png_default_window(hu ? CLARA_MODALITY_CT : CLARA_MODALITY_MR,
                                  image, volume_count(vol), &c, &w, err,
                                  sizeof err);
    if (st != CLARA_OK)
      return fail_msg("the PNG preview's window: %s", err);
    /* an image of one value: any width shows it */
    if (!(w > 0))
      w = 1;
  }
  st = clara_png_write(path, image, vol->nx, vol->ny, vol->nz, c, w, err,
                       sizeof err);
  if (st != CLARA_OK)
    return fail_msg("writing the PNG preview: %s", err);
  output_written(path, OUT_FILE, 0);
  if (!quiet) {
    progress_clear();
    printf("png: %s (%d x %d%s, window %.6g/%.6g%s)\n", path, vol->nx, vol->ny,
           vol->nz > 1 ? ", a montage of slices" : "", c, w, hu ? " HU" : "");
  }
  return 0;
#else
  (void)eo;
  (void)path;
  (void)vol;
  (void)image;
  (void)hu;
  (void)quiet;
  return fail_msg("--png: built without libpng");
#endif
}

#ifdef HAVE_DCMTK
/* Strings for a series, kept until it is written. */
typedef struct str_pool {
  char buf[16384];
  size_t used;
} str_pool;

static const char *pool_add(str_pool *p, const char *s, size_t n) {
  char *out;
  if (n + 1 > sizeof p->buf - p->used)
    return NULL;
  out = p->buf + p->used;
  memcpy(out, s, n);
  out[n] = '\0';
  p->used += n + 1;
  return out;
}

/* Whether s is well-formed UTF-8. */
static int utf8_ok(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    int n = *p < 0x80         ? 0
            : (*p >> 5) == 6  ? 1
            : (*p >> 4) == 14 ? 2
            : (*p >> 3) == 30 ? 3
                              : -1;
    if (n < 0)
      return 0;
    p++;
    for (int i = 0; i < n; i++, p++)
      if ((*p & 0xC0) != 0x80)
        return 0;
  }
  return 1;
}

/* A value from a raw-data header for a DICOM text field of at most 'max'
 * characters (64 for LO and PN, 16 for SH): control characters and
 * backslashes become spaces, and a longer value is cut ('cut', for names
 * and descriptions) or dropped (identifiers, which a cut would falsify),
 * with a warning. NULL when empty or dropped. */
static const char *dicom_text(str_pool *pool, const char *field, const char *v,
                              int max, int cut) {
  char tmp[1024];
  size_t n = 0, end;
  int chars = 0;
  if (!v || !*v)
    return NULL;
  if (!utf8_ok(v)) {
    warn_msg("%s \"%s\" from the raw data is not UTF-8: left out of the "
             "DICOM series",
             field, v);
    return NULL;
  }
  for (const char *p = v; *p && n < sizeof tmp - 1; p++) {
    unsigned char c = (unsigned char)*p;
    tmp[n++] = (char)(c < 0x20 || c == 0x7F || c == '\\' ? ' ' : c);
  }
  tmp[n] = '\0';
  for (end = 0; end < n; end++)
    if (((unsigned char)tmp[end] & 0xC0) != 0x80 && ++chars > max)
      break;
  if (end < n) {
    if (!cut) {
      warn_msg("%s \"%s\" is longer than DICOM's %d characters: left out "
               "of the series",
               field, v, max);
      return NULL;
    }
    warn_msg("%s \"%s\" is cut to DICOM's %d characters", field, v, max);
    n = end;
  }
  while (n > 0 && tmp[n - 1] == ' ')
    n--;
  return n ? pool_add(pool, tmp, n) : NULL;
}

/* A code string (CS: at most 16 of A-Z, 0-9, space and '_'): letters
 * are upper-cased; anything else drops the value with a warning. */
static const char *dicom_code(str_pool *pool, const char *field,
                              const char *v) {
  char tmp[17];
  size_t n = 0;
  if (!v || !*v)
    return NULL;
  for (const char *p = v; *p; p++) {
    char c = (char)toupper((unsigned char)*p);
    if (n == 16 || !((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == ' ' || c == '_')) {
      warn_msg("%s \"%s\" is not a DICOM code string (16 of A-Z, 0-9, "
               "space, _): left out of the series",
               field, v);
      return NULL;
    }
    tmp[n++] = c;
  }
  return pool_add(pool, tmp, n);
}

static int all_digits(const char *s, int n) {
  for (int i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9')
      return 0;
  return 1;
}

/* xs:date (YYYY-MM-DD, maybe with a time zone) or YYYYMMDD -> YYYYMMDD. */
static const char *dicom_date(str_pool *pool, const char *field,
                              const char *v) {
  char d[9];
  size_t n;
  if (!v || !*v)
    return NULL;
  n = strlen(v);
  if (n >= 10 && all_digits(v, 4) && v[4] == '-' && all_digits(v + 5, 2) &&
      v[7] == '-' && all_digits(v + 8, 2) &&
      (n == 10 || v[10] == 'Z' || v[10] == '+' || v[10] == '-')) {
    memcpy(d, v, 4);
    memcpy(d + 4, v + 5, 2);
    memcpy(d + 6, v + 8, 2);
  } else if (n == 8 && all_digits(v, 8)) {
    memcpy(d, v, 8);
  } else {
    warn_msg("%s \"%s\" is not a date: left out of the DICOM series", field, v);
    return NULL;
  }
  {
    int month = (d[4] - '0') * 10 + (d[5] - '0');
    int day = (d[6] - '0') * 10 + (d[7] - '0');
    if (month < 1 || month > 12 || day < 1 || day > 31) {
      warn_msg("%s \"%s\" is not a date: left out of the DICOM series", field,
               v);
      return NULL;
    }
  }
  return pool_add(pool, d, 8);
}

/* xs:time (HH:MM:SS[.f], maybe with a time zone, which DICOM's local TM
 * has no room for) or HHMMSS[.f] -> HHMMSS[.ffffff]. */
static const char *dicom_time(str_pool *pool, const char *field,
                              const char *v) {
  char t[16];
  size_t n = 0;
  const char *p;
  if (!v || !*v)
    return NULL;
  if (strlen(v) >= 8 && all_digits(v, 2) && v[2] == ':' &&
      all_digits(v + 3, 2) && v[5] == ':' && all_digits(v + 6, 2)) {
    memcpy(t, v, 2);
    memcpy(t + 2, v + 3, 2);
    memcpy(t + 4, v + 6, 2);
    p = v + 8;
  } else if (strlen(v) >= 6 && all_digits(v, 6)) {
    memcpy(t, v, 6);
    p = v + 6;
  } else {
    p = NULL;
  }
  if (p) {
    n = 6;
    if (*p == '.' && p[1] >= '0' && p[1] <= '9') {
      t[n++] = '.';
      for (p++; *p >= '0' && *p <= '9'; p++)
        if (n < 13)
          t[n++] = *p; /* at most 6 digits of fraction */
    }
    if (*p && *p != 'Z' && *p != '+' && *p != '-')
      p = NULL;
  }
  if (!p || (t[0] - '0') * 10 + (t[1] - '0') > 23 ||
      (t[2] - '0') * 10 + (t[3] - '0') > 59 ||
      (t[4] - '0') * 10 + (t[5] - '0') > 60) {
    warn_msg("%s \"%s\" is not a time: left out of the DICOM series", field, v);
    return NULL;
  }
  return pool_add(pool, t, n);
}

/* A DICOM UID (digits and dots, no empty component or leading zero, at
 * most 64 characters), or NULL with a warning. */
static const char *dicom_uid(str_pool *pool, const char *field, const char *v) {
  size_t n;
  const char *comp;
  if (!v || !*v)
    return NULL;
  n = strlen(v);
  comp = v;
  for (const char *p = v; n <= 64; p++) {
    if (*p == '.' || *p == '\0') {
      if (p == comp || (*comp == '0' && p - comp > 1))
        break;
      if (!*p)
        return pool_add(pool, v, n);
      comp = p + 1;
    } else if (*p < '0' || *p > '9') {
      break;
    }
  }
  warn_msg("%s \"%s\" is not a DICOM UID: a new one is made", field, v);
  return NULL;
}

/* DICOM's ScanningSequence for an ISMRMRD sequence_type, by the usual
 * vendor names; RM (research mode) when it names none of them. */
static const char *scanning_sequence(const char *type) {
  char up[64];
  size_t n = 0;
  for (; type[n] && n < sizeof up - 1; n++)
    up[n] = (char)toupper((unsigned char)type[n]);
  up[n] = '\0';
  if (!n)
    return "RM";
  if (strstr(up, "EPI"))
    return "EP";
  if (strncmp(up, "IR", 2) == 0 || strstr(up, "FLAIR") || strstr(up, "STIR") ||
      strstr(up, "MPRAGE") || strstr(up, "INVERSION"))
    return "IR";
  if (strstr(up, "GRE") || strstr(up, "FLASH") || strstr(up, "FISP") ||
      strstr(up, "SSFP") || strstr(up, "FFE") || strstr(up, "SPGR") ||
      strstr(up, "GRADIENT") || strstr(up, "VIBE"))
    return "GR";
  if (strstr(up, "SE") || strstr(up, "HASTE") || strstr(up, "RARE") ||
      strstr(up, "SPIN"))
    return "SE";
  return "RM";
}

/* Fills the patient, study, equipment and sequence fields of an MR
 * series from a raw-data file's header (clara_mr_file_study), each
 * checked against DICOM's rules (a value that breaks them is left out,
 * or cut, with a warning). The frame of reference is not taken: the
 * series' positions are the image grid's, not the scanner's. */
static void series_from_study(clara_dicom_series *s, const clara_mr_study *st,
                              int nz, str_pool *pool) {
  if (!st->has_header)
    return;
  s->patient_name = dicom_text(pool, "patientName", st->patient_name, 64, 1);
  s->patient_id = dicom_text(pool, "patientID", st->patient_id, 64, 0);
  s->patient_birth_date =
      dicom_date(pool, "patientBirthdate", st->patient_birth_date);
  if (*st->patient_sex) {
    if (strcmp(st->patient_sex, "M") == 0 ||
        strcmp(st->patient_sex, "F") == 0 || strcmp(st->patient_sex, "O") == 0)
      s->patient_sex = st->patient_sex;
    else
      warn_msg("patientGender \"%s\" is not M, F or O: left out of the "
               "DICOM series",
               st->patient_sex);
  }
  s->patient_weight_kg = st->patient_weight_kg;
  s->study_instance_uid =
      dicom_uid(pool, "studyInstanceUID", st->study_instance_uid);
  s->study_date = dicom_date(pool, "studyDate", st->study_date);
  s->study_time = dicom_time(pool, "studyTime", st->study_time);
  s->study_id = dicom_text(pool, "studyID", st->study_id, 16, 0);
  s->accession_number =
      dicom_text(pool, "accessionNumber", st->accession_number, 16, 0);
  s->referring_physician = dicom_text(pool, "referringPhysicianName",
                                      st->referring_physician, 64, 1);
  s->study_description =
      dicom_text(pool, "studyDescription", st->study_description, 64, 1);
  s->series_date = dicom_date(pool, "seriesDate", st->series_date);
  s->series_time = dicom_time(pool, "seriesTime", st->series_time);
  s->protocol_name = dicom_text(pool, "protocolName", st->protocol_name, 64, 1);
  s->body_part = dicom_code(pool, "bodyPartExamined", st->body_part);
  s->patient_position =
      dicom_code(pool, "patientPosition", st->patient_position);
  s->manufacturer = dicom_text(pool, "systemVendor", st->manufacturer, 64, 1);
  s->manufacturer_model =
      dicom_text(pool, "systemModel", st->manufacturer_model, 64, 1);
  s->institution_name =
      dicom_text(pool, "institutionName", st->institution_name, 64, 1);
  s->station_name = dicom_text(pool, "stationName", st->station_name, 16, 1);
  s->magnetic_field_t = st->field_strength_t;
  s->repetition_time_ms = st->tr_ms;
  s->echo_time_ms = st->te_ms;
  s->inversion_time_ms = st->ti_ms;
  s->flip_angle_deg = st->flip_angle_deg;
  s->echo_train_length = st->echo_train_length;
  s->scanning_sequence = scanning_sequence(st->sequence_type);
  s->mr_acquisition_type = nz > 1 ? "3D" : "2D";
  if (!s->series_description && *st->series_description)
    s->series_description =
        dicom_text(pool, "seriesDescription", st->series_description, 64, 1);
}
#endif /* HAVE_DCMTK */

/* What a command knows for its DICOM series beyond the image. */
typedef struct series_info {
  clara_modality modality;
  const char *description;     /* the default SeriesDescription */
  int derived;                 /* denoised */
  const char *derivation;      /* DerivationDescription */
  const char *kernel;          /* CT: ConvolutionKernel */
  const clara_mr_study *study; /* MR: the raw data's header, or NULL */
  const char *patient_name, *patient_id; /* the demo's phantom */
  const char *study_instance_uid;        /* put several series in one study */
  const char *frame_of_reference_uid;    /* ... and one frame */
  /* out: the UIDs the series got (for the next series of the study) */
  char study_uid_out[80], frame_uid_out[80];
} series_info;

/* Writes 'image' (on 'vol'; CT in HU) as a DICOM series in 'dir', prints
 * what it did (unless quiet) and warns about clipped voxels. */
static int write_dicom(const export_opts *eo, const char *dir,
                       const clara_volume *vol, const float *image,
                       series_info *si, int quiet) {
#ifdef HAVE_DCMTK
  clara_dicom_series s;
  clara_dicom_report rep;
  str_pool *pool;
  char err[1024], derivation[256];
  struct stat sb;
  clara_status st;
  int existed, rc = 0;

  if (interrupted())
    return EXIT_FAILURE;
  pool = calloc(1, sizeof *pool);
  if (!pool)
    return fail_msg("out of memory");
  clara_dicom_series_init(&s, si->modality);
  s.template_path = eo->dicom_template;
  s.series_description = eo->series_description && *eo->series_description
                             ? eo->series_description
                             : NULL;
  if (si->modality == CLARA_MODALITY_MR && si->study)
    series_from_study(&s, si->study, vol->nz, pool);
  if (!s.series_description)
    s.series_description = si->description;
  s.series_number = eo->series_number > 0 ? eo->series_number
                    : si->derived         ? 2
                                          : 1;
  s.derived = si->derived;
  if (si->derived) {
    snprintf(derivation, sizeof derivation, "%s",
             si->derivation ? si->derivation : "derived by clara-recon");
    s.derivation_description = derivation;
  }
  s.convolution_kernel = si->kernel;
  if (si->patient_name)
    s.patient_name = si->patient_name;
  if (si->patient_id)
    s.patient_id = si->patient_id;
  if (si->study_instance_uid)
    s.study_instance_uid = si->study_instance_uid;
  if (si->frame_of_reference_uid)
    s.frame_of_reference_uid = si->frame_of_reference_uid;
  if (eo->have_window) {
    if (eo->window_width >= 1) {
      s.window_center = eo->window_center;
      s.window_width = eo->window_width;
    } else {
      note_msg(quiet,
               "--window %g,%g: DICOM needs a width >= 1, so the "
               "series %s keeps its default window",
               eo->window_center, eo->window_width, dir);
    }
  }
  existed = stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode);
  st = clara_dicom_write_series(dir, &s, vol, image, &rep, err, sizeof err);
  if (st != CLARA_OK) {
    rc = fail_msg("writing the DICOM series: %s: %s", clara_status_name(st),
                  err);
    goto done;
  }
  output_written(dir, OUT_SERIES, existed);
  snprintf(si->study_uid_out, sizeof si->study_uid_out, "%s",
           rep.study_instance_uid);
  snprintf(si->frame_uid_out, sizeof si->frame_uid_out, "%s",
           rep.frame_of_reference_uid);
  if (rep.clipped_low || rep.clipped_high)
    warn_msg("DICOM series %s: %lld voxel%s below -33792 HU and %lld above "
             "31743 HU (the image spans %.6g to %.6g HU) were clamped to the "
             "int16 range of stored values",
             dir, rep.clipped_low, rep.clipped_low == 1 ? "" : "s",
             rep.clipped_high, (double)rep.min, (double)rep.max);
  if (!quiet) {
    progress_clear();
    printf("dicom: %s: %d file%s, %s Image Storage, %s, rescale slope %.6g "
           "intercept %.6g",
           dir, rep.files, rep.files == 1 ? "" : "s",
           si->modality == CLARA_MODALITY_CT ? "CT" : "MR",
           si->derived ? "DERIVED\\SECONDARY" : "ORIGINAL\\PRIMARY", rep.slope,
           rep.intercept);
    if (rep.window_written)
      printf(", window %.6g/%.6g", rep.window_center, rep.window_width);
    printf(", study %s\n", rep.study_instance_uid);
  }
done:
  free(pool);
  return rc;
#else
  (void)eo;
  (void)dir;
  (void)vol;
  (void)image;
  (void)si;
  (void)quiet;
  return fail_msg("--dicom: built without DCMTK");
#endif
}

/* Prints help entries "OPTION  TEXT", TEXT in the column 'col' (the
 * command's own), wrapped at 79 characters. 'entries' holds pairs,
 * NULL-terminated. */
static void help_entries(FILE *f, int col, const char *const *entries) {
  for (int i = 0; entries[i]; i += 2) {
    const char *opt = entries[i], *t = entries[i + 1];
    int at = fprintf(f, "      %s", opt);
    if (at + 2 > col) {
      fputc('\n', f);
      at = 0;
    }
    while (*t) {
      size_t room = (size_t)(79 - col), n = strlen(t);
      if (n > room) {
        n = room;
        while (n > 0 && t[n] != ' ')
          n--;
        if (n == 0)
          n = room;
      }
      fprintf(f, "%*s%.*s\n", col - at, "", (int)n, t);
      at = 0;
      t += n;
      while (*t == ' ')
        t++;
    }
  }
}

/* The help of --dicom and its companions ('what' says what the series
 * holds), and of --png and --window. */
static void export_help(FILE *f, int col, const char *what) {
  const char *const entries[] = {
      "--dicom DIR",
      "also write a DICOM series into DIR (a new or an empty directory), one "
      "file per slice",
      "",
      what,
      "--dicom-template FILE",
      "continue the study of this DICOM file (its patient and study are "
      "copied)",
      "--series-description TEXT",
      "SeriesDescription (default: what was done)",
      "--series-number N",
      "SeriesNumber (default 1, or 2 for a derived series)",
      NULL};
  help_entries(f, col, entries);
}

static void png_help(FILE *f, int col, int dicom) {
  const char *const entries[] = {
      "--png FILE",
      "also write an 8-bit greyscale PNG preview (a montage of up to 16 "
      "slices for a volume)",
      "--window C,W",
      dicom ? "display window of the PNG and the DICOM series: centre,width "
              "(default 40,400 for HU, else the 1st to 99th percentile)"
            : "display window of the PNG: centre,width (default 40,400 for "
              "HU, else the 1st to 99th percentile)",
      NULL};
  help_entries(f, col, entries);
}

static const char kProgressHelp[] =
    "On a terminal a progress bar is drawn on stderr (not with --quiet). "
    "Ctrl-C\n"
    "cancels: the exit status is 130 and nothing written by the run is "
    "left.\n";

/* ------------------------------------------------------------------------ */
/* Denoising models                                                          */
/* ------------------------------------------------------------------------ */

/* Whether a --model / --denoise value names a shipped model ("ct", "mr")
 * rather than a file (write ./ct for a file of that name). */
static int is_shipped_model(const char *model) {
  return strcmp(model, "ct") == 0 || strcmp(model, "mr") == 0;
}

/* Loads the model named on the command line on 'ctx': "ct" and "mr" are
 * the shipped models (from $CLARA_RECON_MODELS, else the installed models
 * directory), anything else is a path. Fills *info. */
static int load_model(clara_context *ctx, const char *model,
                      clara_denoiser **out, clara_denoiser_info *info) {
  clara_status st;
  *out = NULL;
  if (is_shipped_model(model))
    st = clara_denoiser_load_shipped(ctx, model, out);
  else
    st = clara_denoiser_load(ctx, model, out);
  if (st != CLARA_OK) {
    if (is_shipped_model(model))
      return lib_error(st, "loading the shipped %s model", model);
    return lib_error(st, "loading the model %s", model);
  }
  st = clara_denoiser_get_info(*out, info);
  if (st != CLARA_OK) {
    clara_denoiser_destroy(*out);
    *out = NULL;
    return lib_error(st, "reading the facts of the model %s", model);
  }
  return 0;
}

/* "model: ct (shipped, DIR/ct-denoise.h5): dncnn for ct images in HU, 17
 * layers of 3x3, ...". */
static void print_model(const char *model, const clara_denoiser_info *di) {
  const char *dir = getenv("CLARA_RECON_MODELS");
  if (is_shipped_model(model) && dir && *dir)
    printf("model: %s (shipped, %s/%s-denoise.h5)", model, dir, model);
  else if (is_shipped_model(model))
    printf("model: %s (shipped, installed)", model);
  else
    printf("model: %s", model);
  printf(": %s for %s images%s%s, %d layers of 3x3, up to %d channels, "
         "receptive field %d x %d, %s, %lld parameters, %.3g MFLOP/pixel\n",
         di->architecture, clara_modality_name(di->modality),
         *di->units ? " in " : "", di->units, di->layers, di->max_channels,
         di->receptive_field, di->receptive_field,
         di->residual ? "residual" : "direct", di->parameters,
         di->flops_per_pixel * 1e-6);
}

/* The units a model wants its images in: the model's own, or HU for a CT
 * model that names none; "" when any scale will do (MR). */
static const char *model_units(const clara_denoiser_info *di) {
  if (*di->units)
    return di->units;
  return di->modality == CLARA_MODALITY_CT ? "HU" : "";
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
  const char *denoise; /* --denoise: "ct", "mr" or a path; NULL: none */
} recon_opts;

typedef struct recon_result {
  float *image; /* malloc'd, volume_count(vol) floats */
  clara_backend backend;
  int threads;
  double plan_ms, exec_ms; /* plan_ms includes loading the model */
  clara_fbp_info info;
  int denoised;              /* a denoiser was attached */
  clara_denoiser_info model; /* its facts, when denoised */
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
  clara_denoiser *den = NULL;
  float *image = NULL;
  clara_status st;
  double t0, t1, t2;
  int rc = EXIT_FAILURE;

  memset(res, 0, sizeof *res);
  clara_context_options_init(&co);
  co.backend = ro->backend;
  co.threads = ro->threads;
  use_progress(&co);
  st = clara_context_create(&co, &ctx);
  if (st != CLARA_OK) {
    rc = lib_error(st, "starting the %s backend",
                   clara_backend_name(ro->backend));
    goto done;
  }
  t0 = now_ms();
  /* the model first: a wrong name fails before the expensive planning */
  if (ro->denoise && (rc = load_model(ctx, ro->denoise, &den, &res->model)))
    goto done;
  rc = EXIT_FAILURE;
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
  if (den) {
    st = clara_fbp_plan_set_denoiser(plan, den);
    if (st != CLARA_OK) {
      rc = lib_error(st, "attaching the model %s to the reconstruction",
                     ro->denoise);
      goto done;
    }
    res->denoised = 1;
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
  clara_denoiser_destroy(den); /* before its context */
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
          "      --png FILE     also write a PNG preview of the truth (a "
          "montage for cone)\n"
          "      --window C,W   its display window, in 1/mm (default: the "
          "1st to 99th\n"
          "                     percentile)\n"
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
  OPT_DATASET,
  OPT_DENOISE,
  OPT_MODEL,
  OPT_PRECISION
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
      PNG_LONGOPTS,
      {"quiet", no_argument, NULL, 'q'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  export_opts eo;
  scan_spec sp;
  scan sc;
  const char *output = NULL, *geometry = NULL;
  int quiet = 0, c, rc;
  clara_status st;

  if (phantom_kind_is_mr(argc, argv))
    return cmd_phantom_mr(argc, argv);
  memset(&sp, 0, sizeof sp);
  memset(&eo, 0, sizeof eo);
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
      if (!export_option(c, optarg, &eo, &rc)) {
        if (rc)
          return rc;
        break;
      }
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
  if ((rc = check_output_path(output)) || (rc = check_export(&eo)))
    return rc;

  if ((rc = build_scan(&sp, &sc)))
    return rc;
  if (interrupted()) {
    scan_free(&sc);
    return EXIT_FAILURE;
  }
  st = clara_ct_file_write(output, &sc.geom, sc.proj, &sc.truth_vol, sc.truth);
  if (st != CLARA_OK) {
    rc = lib_error(st, "writing %s", output);
  } else {
    output_written(output, OUT_FILE, 0);
    if (!quiet)
      printf("phantom: %s, %d views over %.6g deg, %d x %d detector%s; "
             "truth %d x %d x %d of %.4g mm; wrote %s\n",
             clara_geometry_name(sc.geom.kind), sc.geom.views, sc.range_deg,
             sc.geom.rows, sc.geom.cols,
             sp.noise_i0 > 0 ? ", Poisson noise" : "", sc.truth_vol.nx,
             sc.truth_vol.ny, sc.truth_vol.nz, sc.truth_vol.voxel[0], output);
  }
  if (rc == 0 && eo.png)
    rc = write_png(&eo, eo.png, &sc.truth_vol, sc.truth, 0, quiet);
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
          "      --denoise M       denoise every slice with a CNN: ct (the "
          "shipped CT\n"
          "                        model) or the path of a model file. CT "
          "models work in\n"
          "                        HU, so this implies --hu (give "
          "--hu=MU_WATER for\n"
          "                        another mu_water)\n"
          "      --allow-truncation\n"
          "                        reconstruct even where the detector does "
          "not cover the\n"
          "                        grid (expect cupping)\n",
          kMuWater);
  export_help(f, 24,
              "CT Image Storage in HU (so --dicom implies --hu), "
              "DERIVED\\SECONDARY when denoised");
  png_help(f, 24, 1);
  fprintf(f,
          "  -q, --quiet           print nothing on success but warnings, "
          "draw no progress\n"
          "  -h, --help            this help\n"
          "\n"
          "The grid: the grid of the file's /truth when it has one; "
          "otherwise cols x cols\n"
          "voxels spanning the field of view's diameter (nz = cols for cone, "
          "with the same\n"
          "voxel along z). --size and --voxel keep that grid's extent when "
          "given alone, and\n"
          "together set the grid exactly. Parallel and fan scans always have "
          "nz = rows.\n%s",
          kProgressHelp);
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
      {"denoise", required_argument, NULL, OPT_DENOISE},
      DICOM_LONGOPTS,
      PNG_LONGOPTS,
      {"quiet", no_argument, NULL, 'q'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *output = NULL, *input;
  export_opts eo;
  recon_opts ro;
  recon_result res;
  clara_ct_geometry geom;
  clara_volume vol, truth_vol;
  float *angles = NULL, *proj = NULL, *truth = NULL;
  int size = 0, quiet = 0, have_truth = 0, c, rc;
  double voxel = 0;
  clara_status st;

  memset(&res, 0, sizeof res);
  memset(&ro, 0, sizeof ro);
  memset(&eo, 0, sizeof eo);
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
    case OPT_DENOISE:
      if (!*optarg)
        return usage_error("--denoise: the model is empty (ct, or the path "
                           "of a model file)");
      ro.denoise = optarg;
      break;
    case 'q':
      quiet = 1;
      break;
    case 'h':
      ct_help(stdout);
      return 0;
    default:
      if (!export_option(c, optarg, &eo, &rc)) {
        if (rc)
          return rc;
        break;
      }
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
  if ((rc = check_output_path(output)) || (rc = check_export(&eo)))
    return rc;
  /* CT models and DICOM work in HU: --denoise and --dicom imply --hu with
   * the default mu_water */
  if ((ro.denoise || eo.dicom) && !(ro.fbp.mu_water > 0))
    ro.fbp.mu_water = kMuWater;
  progress_setup(quiet);

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
    warn_msg("ignoring the unreadable /truth of %s (%s); using the default "
             "grid",
             input, clara_last_error());
  }
  if ((rc = choose_grid(&geom, have_truth ? &truth_vol : NULL, size, voxel,
                        &vol)))
    goto done;
  if ((rc = reconstruct(&geom, proj, &vol, &ro, &res)))
    goto done;
  if (interrupted()) {
    rc = EXIT_FAILURE;
    goto done;
  }
  st = clara_image_file_write(output, &vol, res.image,
                              ro.fbp.mu_water > 0 ? "HU" : "1/mm");
  if (st != CLARA_OK) {
    rc = lib_error(st, "writing %s", output);
    goto done;
  }
  output_written(output, OUT_FILE, 0);
  progress_clear();
  if (!quiet) {
    if (res.denoised)
      print_model(ro.denoise, &res.model);
    printf("ct: %s, %d views x %d x %d -> %d x %d x %d voxels of %.4g mm "
           "(%s, %s, %s%s, %d thread%s): %.1f ms (plan %.1f, execute %.1f); "
           "wrote %s\n",
           clara_geometry_name(geom.kind), geom.views, geom.rows, geom.cols,
           vol.nx, vol.ny, vol.nz, vol.voxel[0],
           clara_filter_name(ro.fbp.filter),
           ro.fbp.mu_water > 0 ? "HU" : "1/mm",
           res.denoised ? "denoised, " : "", clara_backend_name(res.backend),
           res.threads, res.threads == 1 ? "" : "s", res.plan_ms + res.exec_ms,
           res.plan_ms, res.exec_ms, output);
  }
  if (eo.dicom) {
    char desc[128], kernel[32], derivation[320];
    series_info si;
    size_t k;
    memset(&si, 0, sizeof si);
    snprintf(kernel, sizeof kernel, "%s", clara_filter_name(ro.fbp.filter));
    for (k = 0; kernel[k]; k++)
      kernel[k] = (char)toupper((unsigned char)kernel[k]);
    snprintf(desc, sizeof desc, "clara-recon %s (%s)%s",
             geom.kind == CLARA_GEOM_CONE ? "FDK" : "FBP",
             clara_filter_name(ro.fbp.filter),
             res.denoised ? ", denoised" : "");
    snprintf(derivation, sizeof derivation,
             "denoised by clara-recon with the CNN model %.256s", ro.denoise);
    si.modality = CLARA_MODALITY_CT;
    si.description = desc;
    si.kernel = kernel;
    si.derived = res.denoised;
    si.derivation = derivation;
    if ((rc = write_dicom(&eo, eo.dicom, &vol, res.image, &si, quiet)))
      goto done;
  }
  if (eo.png && (rc = write_png(&eo, eo.png, &vol, res.image,
                                ro.fbp.mu_water > 0, quiet)))
    goto done;
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
  if (interrupted()) {
    rc = EXIT_FAILURE;
    goto done;
  }
  st = clara_mr_file_write_ismrmrd(output, &g, k, noise,
                                   noise ? MR_NOISE_SAMPLES : 0);
  if (st != CLARA_OK) {
    rc = lib_error(st, "writing %s", output);
    goto done;
  }
  output_written(output, OUT_FILE, 0);
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
    output_written(truth_path, OUT_FILE, 0);
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
        "units a.u.).\n"
        "The voxel size is the XML header's encoded field of view over the "
        "matrix (1 mm\n"
        "without one). Noise scans in the file are used for pre-whitening.\n"
        "\n"
        "  -o, --output FILE          the image file to write\n"
        "      --backend B            auto (default), cpu or cuda\n"
        "      --combine M            rss (default) or adaptive\n"
        "      --partial-fourier M    homodyne (default), pocs or zero\n"
        "      --norm N               ortho (default) or none (x sqrt(N))\n"
        "      --window W             k-space apodisation: none (default), "
        "hann, hamming\n"
        "                             or tukey (C,W: the display window, "
        "below)\n"
        "      --dataset K            the dataset to reconstruct (default "
        "0)\n"
        "      --threads T            worker threads (default 0: all "
        "cores)\n"
        "      --denoise M            denoise every slice with a CNN: mr "
        "(the shipped MR\n"
        "                             model) or the path of a model file\n",
        f);
  export_help(f, 29,
              "MR Image Storage, DERIVED\\SECONDARY when denoised; patient, "
              "study, scanner and sequence from the XML header; the image "
              "axes are taken as the patient's (an axial orientation)");
  png_help(f, 29, 1);
  fprintf(f,
          "  -q, --quiet                print nothing on success but "
          "warnings, draw no\n"
          "                             progress\n"
          "  -h, --help                 this help\n"
          "\n%s",
          kProgressHelp);
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
  double plan_ms, exec_ms;   /* plan_ms includes loading the model */
  int denoised;              /* a denoiser was attached */
  clara_denoiser_info model; /* its facts, when denoised */
} mr_recon;

/* Reconstructs dataset 'index' of 'file' (whitened when it has noise),
 * denoised by the model 'denoise' ("mr" or a path) unless it is NULL. */
static int mr_reconstruct(const clara_mr_file *file, const char *path,
                          int index, clara_backend backend, int threads,
                          const clara_mr_options *base, const char *denoise,
                          mr_recon *out) {
  clara_context_options co;
  clara_context *ctx = NULL;
  clara_mr_plan *plan = NULL;
  clara_denoiser *den = NULL;
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
  use_progress(&co);
  st = clara_context_create(&co, &ctx);
  if (st != CLARA_OK) {
    rc = lib_error(st, "starting the %s backend", clara_backend_name(backend));
    goto done;
  }
  t0 = now_ms();
  if (denoise && (rc = load_model(ctx, denoise, &den, &out->model)))
    goto done;
  rc = EXIT_FAILURE;
  st = clara_mr_plan_create(ctx, g, &o, &plan);
  if (st != CLARA_OK) {
    rc = lib_error(st, "planning the reconstruction of dataset %d", index);
    goto done;
  }
  if (den) {
    st = clara_mr_plan_set_denoiser(plan, den);
    if (st != CLARA_OK) {
      rc = lib_error(st, "attaching the model %s to the reconstruction",
                     denoise);
      goto done;
    }
    out->denoised = 1;
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
  clara_denoiser_destroy(den); /* before its context */
  clara_context_destroy(ctx);
  free(k);
  free(cov);
  free(image);
  return rc;
}

/* The voxel size of an MR image from the raw data's header: the encoded
 * field of view over the dataset's matrix (removing readout oversampling
 * crops the image, which keeps the spacing). Returns 2 when the header
 * gives all three, 1 when only x and y (the slices get 1 mm), 0 when not
 * even those (1 mm voxels). */
static int mr_voxel(const clara_mr_study *st, const clara_mr_geometry *g,
                    double voxel[3]) {
  const double *fov = st->encoded_fov_mm;
  voxel[0] = voxel[1] = voxel[2] = 1.0;
  if (!(fov[0] > 0 && fov[1] > 0))
    return 0;
  voxel[0] = fov[0] / g->nx;
  voxel[1] = fov[1] / g->ny;
  if (!(fov[2] > 0))
    return 1;
  voxel[2] = fov[2] / g->nz;
  return 2;
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
      {"denoise", required_argument, NULL, OPT_DENOISE},
      DICOM_LONGOPTS,
      {"png", required_argument, NULL, OPT_PNG},
      {"quiet", no_argument, NULL, 'q'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *output = NULL, *input, *denoise = NULL;
  clara_backend backend = CLARA_BACKEND_AUTO;
  clara_mr_options o;
  clara_mr_file *file = NULL;
  clara_mr_study study;
  export_opts eo;
  mr_recon r;
  clara_volume vol;
  clara_status st;
  int threads = 0, dataset = 0, quiet = 0, have_fov, c, v, rc;

  memset(&r, 0, sizeof r);
  memset(&eo, 0, sizeof eo);
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
      /* "C,W": the display window; a name: the k-space apodisation */
      if (strchr(optarg, ',')) {
        if ((rc = parse_window("--window", optarg, &eo)))
          return rc;
        break;
      }
      if ((v = pick(optarg, kWindowNames)) < 0)
        return usage_error("--window: unknown window '%s' (none, hann, "
                           "hamming or tukey; or C,W for the display "
                           "window)",
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
    case OPT_DENOISE:
      if (!*optarg)
        return usage_error("--denoise: the model is empty (mr, or the path "
                           "of a model file)");
      denoise = optarg;
      break;
    case 'q':
      quiet = 1;
      break;
    case 'h':
      mr_help(stdout);
      return 0;
    default:
      if (!export_option(c, optarg, &eo, &rc)) {
        if (rc)
          return rc;
        break;
      }
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
  if ((rc = check_output_path(output)) || (rc = check_export(&eo)))
    return rc;
  progress_setup(quiet);

  st = clara_mr_file_open(input, &file);
  if (st != CLARA_OK)
    return lib_error(st, "reading %s", input);
  if ((rc = mr_reconstruct(file, input, dataset, backend, threads, &o, denoise,
                           &r)))
    goto done;
  st = clara_mr_file_study(file, dataset, &study);
  if (st != CLARA_OK) {
    rc = lib_error(st, "reading the header of %s", input);
    goto done;
  }
  vol.nx = r.rnx;
  vol.ny = r.geom.ny;
  vol.nz = r.geom.slices * r.geom.nz;
  have_fov = mr_voxel(&study, &r.geom, vol.voxel);
  vol.center[0] = vol.center[1] = vol.center[2] = 0;
  if (eo.dicom && have_fov < 2)
    note_msg(quiet,
             "%s: the XML header gives no %sfield of view, so the "
             "DICOM series has %s",
             input, have_fov ? "slice thickness (encodedSpace z) in its " : "",
             have_fov ? "1 mm slices" : "1 mm voxels");
  if (interrupted()) {
    rc = EXIT_FAILURE;
    goto done;
  }
  st = clara_image_file_write(output, &vol, r.image, "a.u.");
  if (st != CLARA_OK) {
    rc = lib_error(st, "writing %s", output);
    goto done;
  }
  output_written(output, OUT_FILE, 0);
  progress_clear();
  if (!quiet) {
    if (r.denoised)
      print_model(denoise, &r.model);
    printf("mr: %s dataset %d, %d coil%s, %d x %d x %d k-space (ky %d..%d), "
           "%d slice%s -> %d x %d x %d (%s, %s, %s%s%s; %s, %d thread%s): "
           "%.1f ms (plan %.1f, execute %.1f); wrote %s\n",
           clara_mr_file_format(file), dataset, r.geom.coils,
           r.geom.coils == 1 ? "" : "s", r.geom.nx, r.geom.ny, r.geom.nz,
           r.geom.ky_first, r.geom.ky_last, r.geom.slices,
           r.geom.slices == 1 ? "" : "s", vol.nx, vol.ny, vol.nz,
           kCombineNames[o.combine], kPfNames[o.partial_fourier],
           kNormNames[o.norm], r.noise_samples ? ", whitened" : "",
           r.denoised ? ", denoised" : "", clara_backend_name(r.backend),
           r.threads, r.threads == 1 ? "" : "s", r.plan_ms + r.exec_ms,
           r.plan_ms, r.exec_ms, output);
  }
  if (eo.dicom) {
    char desc[128], derivation[320];
    series_info si;
    memset(&si, 0, sizeof si);
    snprintf(desc, sizeof desc, "clara-recon MR (%s)%s",
             kCombineNames[o.combine], r.denoised ? ", denoised" : "");
    snprintf(derivation, sizeof derivation,
             "denoised by clara-recon with the CNN model %.256s", denoise);
    si.modality = CLARA_MODALITY_MR;
    si.description = desc;
    si.derived = r.denoised;
    si.derivation = derivation;
    si.study = &study;
    if ((rc = write_dicom(&eo, eo.dicom, &vol, r.image, &si, quiet)))
      goto done;
  }
  if (eo.png && (rc = write_png(&eo, eo.png, &vol, r.image, 0, quiet)))
    goto done;
done:
  free(r.image);
  clara_mr_file_close(file);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* clara-recon denoise                                                       */
/* ------------------------------------------------------------------------ */

static void denoise_help(FILE *f) {
  fputs("Usage: " PROG " denoise IN.h5 -o OUT.h5 --model M [OPTIONS]\n"
        "Denoises every z slice of an image file with a trained CNN and "
        "writes the result\n"
        "as an image file on the same grid (sizes, voxel size, centre) "
        "with the same\n"
        "units.\n"
        "\n"
        "  -o, --output FILE    the image file to write\n"
        "  -m, --model M        ct or mr: the shipped models, from the "
        "directory in\n"
        "                       $CLARA_RECON_MODELS, else the installed "
        "one; anything\n"
        "                       else is the path of a model file (./ct for "
        "a file named\n"
        "                       ct)\n"
        "      --backend B      auto (default), cpu or cuda\n"
        "      --threads T      worker threads (default 0: all cores)\n"
        "      --dataset D      the image to read: /image (default) or "
        "/truth\n"
        "      --precision P    fp32 (default) or fp16 (the cuda backend "
        "only)\n",
        f);
  png_help(f, 23, 0);
  fputs("  -q, --quiet          print nothing on success but warnings, draw "
        "no progress\n"
        "  -h, --help           this help\n"
        "\n"
        "A CT model needs an image in Hounsfield units (units HU: '" PROG
        " ct --hu'\n"
        "makes one, and '" PROG " ct --denoise ct' reconstructs and "
        "denoises at once).\n"
        "An MR model takes magnitude images of any scale (not CT images: "
        "HU, 1/mm).\n"
        "Slices must be at least the model's receptive field (2 x layers + 1 "
        "pixels)\n"
        "across in x and y. 'change' is the RMS of output - input.\n",
        f);
  fputs(kProgressHelp, f);
}

static const char *const kPrecisionNames[] = {"fp32", "fp16", NULL};

/* Whether an image's units are the ones the model takes; prints why not. */
static int check_units(const char *input, const char *dataset,
                       const char *units, const char *model,
                       const clara_denoiser_info *di) {
  const char *want = model_units(di);
  const char *mod = clara_modality_name(di->modality);
  const int mu = strcmp(units, "1/mm") == 0;
  if (*want && strcmp(units, want) != 0) {
    /* no units: a CT file's /truth, mu in 1/mm */
    if (di->modality == CLARA_MODALITY_CT && (mu || !*units))
      return fail_msg("%s:%s %s, but the %s model %s works in HU; "
                      "reconstruct in Hounsfield units with '" PROG
                      " ct --hu' (or '" PROG " ct --denoise')",
                      input, dataset, mu ? "is in 1/mm (mu)" : "has no units",
                      mod, model);
    return fail_msg("%s:%s is in %s, but the %s model %s expects %s", input,
                    dataset, *units ? units : "no units", mod, model, want);
  }
  if (di->modality == CLARA_MODALITY_MR && (mu || strcmp(units, "HU") == 0))
    return fail_msg("%s:%s is a CT image (in %s), but the model %s is for MR "
                    "magnitude images; use a CT model",
                    input, dataset, units, model);
  return 0;
}

static int cmd_denoise(int argc, char **argv) {
  static const struct option longopts[] = {
      {"output", required_argument, NULL, 'o'},
      {"model", required_argument, NULL, 'm'},
      {"backend", required_argument, NULL, OPT_BACKEND},
      {"threads", required_argument, NULL, OPT_THREADS},
      {"dataset", required_argument, NULL, OPT_DATASET},
      {"precision", required_argument, NULL, OPT_PRECISION},
      PNG_LONGOPTS,
      {"quiet", no_argument, NULL, 'q'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *output = NULL, *input, *model = NULL, *dataset = "/image";
  export_opts eo;
  clara_backend backend = CLARA_BACKEND_AUTO;
  clara_precision precision = CLARA_PRECISION_FP32;
  clara_context_options co;
  clara_context *ctx = NULL;
  clara_denoiser *den = NULL;
  clara_denoiser_info di;
  clara_volume vol;
  float *image = NULL, *out = NULL;
  char units[32];
  clara_status st;
  double t0, t1, t2, sum2 = 0;
  size_t n;
  int threads = 0, quiet = 0, c, v, rc;

  memset(&eo, 0, sizeof eo);
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":o:m:qh", longopts, NULL)) != -1) {
    switch (c) {
    case 'o':
      output = optarg;
      break;
    case 'm':
      model = optarg;
      break;
    case OPT_BACKEND:
      if (clara_backend_parse(optarg, &backend) != CLARA_OK)
        return usage_error("--backend: %s", clara_last_error());
      break;
    case OPT_THREADS:
      if ((rc = parse_int("--threads", optarg, 0, MAX_THREADS, &threads)))
        return rc;
      break;
    case OPT_DATASET:
      dataset = optarg;
      break;
    case OPT_PRECISION:
      if ((v = pick(optarg, kPrecisionNames)) < 0)
        return usage_error("--precision: unknown precision '%s' (fp32 or "
                           "fp16)",
                           optarg);
      precision = v ? CLARA_PRECISION_FP16 : CLARA_PRECISION_FP32;
      break;
    case 'q':
      quiet = 1;
      break;
    case 'h':
      denoise_help(stdout);
      return 0;
    default:
      if (!export_option(c, optarg, &eo, &rc)) {
        if (rc)
          return rc;
        break;
      }
      return bad_option(c, argv);
    }
  }
  if (optind >= argc)
    return usage_error("the input file is required (" PROG
                       " denoise IN.h5 -o OUT.h5 --model M)");
  if (optind + 1 < argc)
    return usage_error("unexpected argument '%s'", argv[optind + 1]);
  input = argv[optind];
  if (!output || !*output)
    return usage_error("the output file is required (-o OUT.h5)");
  if (!model || !*model)
    return usage_error("the model is required (--model ct, --model mr or "
                       "--model FILE.h5)");
  if (!*dataset)
    return usage_error("--dataset: the name is empty (/image or /truth)");
  if ((rc = check_output_path(output)) || (rc = check_export(&eo)))
    return rc;
  progress_setup(quiet);

  st = clara_image_file_read(input, dataset, &vol, &image, units, sizeof units);
  if (st != CLARA_OK)
    return lib_error(st, "reading %s:%s", input, dataset);
  rc = EXIT_FAILURE;
  clara_context_options_init(&co);
  co.backend = backend;
  co.threads = threads;
  use_progress(&co);
  st = clara_context_create(&co, &ctx);
  if (st != CLARA_OK) {
    rc = lib_error(st, "starting the %s backend", clara_backend_name(backend));
    goto done;
  }
  t0 = now_ms();
  if ((rc = load_model(ctx, model, &den, &di)))
    goto done;
  rc = EXIT_FAILURE;
  if (precision != CLARA_PRECISION_FP32) {
    st = clara_denoiser_set_precision(den, precision);
    if (st != CLARA_OK) {
      rc = lib_error(st, "--precision %s", kPrecisionNames[precision]);
      goto done;
    }
  }
  if ((rc = check_units(input, dataset, units, model, &di)))
    goto done;
  rc = EXIT_FAILURE;
  n = volume_count(&vol);
  out = alloc_floats(n);
  if (!out) {
    rc = fail_msg("out of memory for a %d x %d x %d image", vol.nx, vol.ny,
                  vol.nz);
    goto done;
  }
  t1 = now_ms();
  st = clara_denoise(den, image, out, vol.nx, vol.ny, vol.nz);
  if (st != CLARA_OK) {
    rc = lib_error(st, "denoising %s:%s", input, dataset);
    goto done;
  }
  t2 = now_ms();
  if (interrupted())
    goto done;
  st = clara_image_file_write(output, &vol, out, units);
  if (st != CLARA_OK) {
    rc = lib_error(st, "writing %s", output);
    goto done;
  }
  output_written(output, OUT_FILE, 0);
  progress_clear();
  rc = 0;
  if (!quiet) {
    int nthreads = clara_context_threads(ctx);
    for (size_t i = 0; i < n; i++) {
      double d = (double)out[i] - (double)image[i];
      sum2 += d * d;
    }
    print_model(model, &di);
    printf("denoise: %s:%s, %d x %d x %d voxels of %.4g mm%s%s%s -> change "
           "%.4g%s%s (%s, %s, %d thread%s): %.1f ms (load %.1f, denoise "
           "%.1f); wrote %s\n",
           input, dataset, vol.nx, vol.ny, vol.nz, vol.voxel[0],
           *units ? " (" : "", units, *units ? ")" : "", sqrt(sum2 / (double)n),
           *units ? " " : "", units, kPrecisionNames[precision],
           clara_backend_name(clara_context_backend(ctx)), nthreads,
           nthreads == 1 ? "" : "s", t2 - t0, t1 - t0, t2 - t1, output);
  }
  if (eo.png)
    rc = write_png(&eo, eo.png, &vol, out, strcmp(units, "HU") == 0, quiet);
done:
  clara_free(image);
  free(out);
  clara_denoiser_destroy(den);
  clara_context_destroy(ctx);
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
  if ((rc = mr_reconstruct(file, path, 0, CLARA_BACKEND_CPU, 0, &o, NULL, &r)))
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
        "(/image), MR raw\n"
        "data (ISMRMRD or fastMRI: datasets, geometry, noise scans; for a "
        "fastMRI file\n"
        "with reconstruction_rss, 'nmse' and 'psnr' of an RSS + ortho "
        "reconstruction\n"
        "of dataset 0, centre-cropped, against it) or a denoiser model "
        "(modality, units,\n"
        "layers, channels, receptive field, parameters, training data).\n"
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

/* Describes a denoiser model file. Returns -1 when 'path' is not one (it
 * cannot be read as HDF5, or its root has no "clara-recon-denoiser"
 * format attribute), else the exit status. */
static int model_info(const char *path, int compare) {
  clara_context_options co;
  clara_context *ctx = NULL;
  clara_denoiser *den = NULL;
  clara_denoiser_info di;
  clara_status st;
  int rc;

  clara_context_options_init(&co);
  co.backend = CLARA_BACKEND_CPU;
  co.threads = 1;
  st = clara_context_create(&co, &ctx);
  if (st != CLARA_OK)
    return lib_error(st, "starting the cpu backend");
  st = clara_denoiser_load(ctx, path, &den);
  if (st != CLARA_OK) {
    const char *msg = clara_last_error();
    if (st == CLARA_ERR_IO || strstr(msg, "/: attribute format ") ||
        strstr(msg, "/: attribute format:"))
      rc = -1; /* not a model file: the other readers say what it is */
    else
      rc = lib_error(st, "reading the model %s", path);
  } else if (compare) {
    rc = fail_msg("cannot compare: %s is a denoiser model, not an image", path);
  } else if ((st = clara_denoiser_get_info(den, &di)) != CLARA_OK) {
    rc = lib_error(st, "reading the facts of the model %s", path);
  } else {
    printf("%s\n", path);
    printf("denoiser model: %s for %s images\n", di.architecture,
           clara_modality_name(di.modality));
    printf("  units         %s\n", *di.units ? di.units : "(any scale)");
    printf("  layers        %d (3x3 convolutions), up to %d channels\n",
           di.layers, di.max_channels);
    printf("  receptive field %d x %d pixels (the smallest slice)\n",
           di.receptive_field, di.receptive_field);
    printf("  output        %s\n",
           di.residual ? "residual (input - predicted noise)" : "direct");
    printf("  parameters    %lld\n", di.parameters);
    printf("  cost          %.6g MFLOP per pixel\n", di.flops_per_pixel * 1e-6);
    printf("  training data %s\n",
           *di.training_data ? di.training_data : "(not recorded)");
    rc = 0;
  }
  clara_denoiser_destroy(den);
  clara_context_destroy(ctx);
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
  if ((rc = model_info(path, compare != NULL)) >= 0)
    return rc;
  rc = 0;
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
/* clara-recon export-dicom                                                  */
/* ------------------------------------------------------------------------ */

static void export_dicom_help(FILE *f) {
  fputs("Usage: " PROG " export-dicom IN.h5 -o DIR [OPTIONS]\n"
        "Writes an image file (from ct, mr or denoise) as a DICOM series in "
        "DIR, a new\n"
        "or an empty directory: one single-frame file per z slice, CT Image "
        "Storage for\n"
        "an image in HU and MR Image Storage otherwise, on the file's grid "
        "(voxel size\n"
        "and centre; the image axes are taken as the patient's).\n"
        "\n"
        "  -o, --output DIR          the directory to write\n"
        "      --modality M          ct (the image must be in HU) or mr "
        "(default: ct for\n"
        "                            units HU, mr for any other units but "
        "1/mm)\n"
        "      --dataset D           the image to read: /image (default) or "
        "/truth\n"
        "      --derived             ImageType DERIVED\\SECONDARY (e.g. a "
        "denoised image)\n"
        "      --dicom-template FILE\n"
        "                            continue the study of this DICOM file "
        "(its patient\n"
        "                            and study are copied)\n"
        "      --series-description TEXT\n"
        "                            SeriesDescription (default: \"clara-recon "
        "export\")\n"
        "      --series-number N     SeriesNumber (default 1, or 2 when "
        "derived)\n",
        f);
  png_help(f, 28, 1);
  fputs("  -q, --quiet               print nothing on success but warnings\n"
        "  -h, --help                this help\n"
        "\n"
        "CT values outside [-33792, 31743] HU do not fit DICOM's 16-bit "
        "stored values:\n"
        "they are clamped, with a warning. NaN or infinite voxels are "
        "refused.\n",
        f);
}

enum { OPT_MODALITY = 2000, OPT_DERIVED };

static int cmd_export_dicom(int argc, char **argv) {
  static const struct option longopts[] = {
      {"output", required_argument, NULL, 'o'},
      {"modality", required_argument, NULL, OPT_MODALITY},
      {"dataset", required_argument, NULL, OPT_DATASET},
      {"derived", no_argument, NULL, OPT_DERIVED},
      {"dicom-template", required_argument, NULL, OPT_DICOM_TEMPLATE},
      {"series-description", required_argument, NULL, OPT_SERIES_DESCRIPTION},
      {"series-number", required_argument, NULL, OPT_SERIES_NUMBER},
      PNG_LONGOPTS,
      {"quiet", no_argument, NULL, 'q'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  static const char *const kModalityNames[] = {"ct", "mr", NULL};
  const char *input, *dataset = "/image";
  export_opts eo;
  series_info si;
  clara_volume vol;
  float *image = NULL;
  char units[32];
  clara_status st;
  int modality = -1, derived = 0, quiet = 0, c, rc;

  memset(&eo, 0, sizeof eo);
  memset(&si, 0, sizeof si);
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":o:qh", longopts, NULL)) != -1) {
    switch (c) {
    case 'o':
      if (!*optarg)
        return usage_error("-o: the directory name is empty");
      eo.dicom = optarg;
      eo.dicom_opt = "-o";
      break;
    case OPT_MODALITY:
      if ((modality = pick(optarg, kModalityNames)) < 0)
        return usage_error("--modality: unknown modality '%s' (ct or mr)",
                           optarg);
      break;
    case OPT_DATASET:
      dataset = optarg;
      break;
    case OPT_DERIVED:
      derived = 1;
      break;
    case 'q':
      quiet = 1;
      break;
    case 'h':
      export_dicom_help(stdout);
      return 0;
    default:
      if (!export_option(c, optarg, &eo, &rc)) {
        if (rc)
          return rc;
        break;
      }
      return bad_option(c, argv);
    }
  }
  if (optind >= argc)
    return usage_error("the input file is required (" PROG
                       " export-dicom IN.h5 -o DIR)");
  if (optind + 1 < argc)
    return usage_error("unexpected argument '%s'", argv[optind + 1]);
  input = argv[optind];
  if (!eo.dicom)
    return usage_error("the output directory is required (-o DIR)");
  if (!*dataset)
    return usage_error("--dataset: the name is empty (/image or /truth)");
  if ((rc = check_export(&eo)))
    return rc;

  st = clara_image_file_read(input, dataset, &vol, &image, units, sizeof units);
  if (st != CLARA_OK)
    return lib_error(st, "reading %s:%s", input, dataset);
  rc = EXIT_FAILURE;
  if (strcmp(units, "1/mm") == 0 || (!*units && modality != 1)) {
    /* a CT reconstruction in mu, or a CT file's /truth (no units) */
    rc = fail_msg("%s:%s is %s: a CT series needs Hounsfield units "
                  "(reconstruct with '" PROG " ct --hu'), and an MR series "
                  "takes magnitude images%s",
                  input, dataset, *units ? "in 1/mm (mu)" : "without units",
                  *units ? "" : " (give --modality mr if it is one)");
    goto done;
  }
  if (modality < 0)
    modality = strcmp(units, "HU") == 0 ? 0 : 1;
  if (modality == 0 && strcmp(units, "HU") != 0) {
    rc = fail_msg("%s:%s is in %s, but a CT series needs Hounsfield units "
                  "(HU)",
                  input, dataset, units);
    goto done;
  }
  if (modality == 1 && strcmp(units, "HU") == 0) {
    rc = fail_msg("%s:%s is a CT image in HU, not an MR image: leave out "
                  "--modality mr (or give --modality ct)",
                  input, dataset);
    goto done;
  }
  si.modality = modality == 0 ? CLARA_MODALITY_CT : CLARA_MODALITY_MR;
  si.description = "clara-recon export";
  si.derived = derived;
  si.derivation = "derived image, exported by clara-recon";
  if ((rc = write_dicom(&eo, eo.dicom, &vol, image, &si, quiet)))
    goto done;
  if (eo.png &&
      (rc = write_png(&eo, eo.png, &vol, image, modality == 0, quiet)))
    goto done;
done:
  clara_free(image);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* clara-recon demo                                                          */
/* ------------------------------------------------------------------------ */

static void demo_help(FILE *f) {
  fprintf(f,
          "Usage: " PROG " demo [-o DIR] [--size N] [--backend B] "
          "[--threads T] [-q]\n"
          "Runs the whole pipeline on simulated data and writes everything "
          "into DIR.\n"
          "CT: a 2D parallel-beam scan of the Shepp-Logan phantom (N x N, "
          "360 views over\n"
          "180 degrees), reconstructed with FBP (its RMSE inside the phantom "
          "printed),\n"
          "then denoised with the shipped CT model:\n"
          "  demo-ct.h5              the scan: projections and truth\n"
          "  demo-recon.h5           the FBP reconstruction, mu in 1/mm\n"
          "  demo-ct-denoised.h5     denoised, in HU\n"
          "  demo-ct-dicom/          the FBP as a DICOM CT series (HU)\n"
          "  demo-ct-denoised-dicom/ the denoised one, DERIVED, same study\n"
          "  demo-ct.png, demo-ct-denoised.png   previews (window -800,400 "
          "HU)\n"
          "MR: the phantom's exact k-space seen by 4 coils (N x N, 2x "
          "readout\n"
          "oversampling, a little noise), reconstructed (RSS), then denoised "
          "with the\n"
          "shipped MR model:\n"
          "  demo-mr.h5              the raw data (ISMRMRD)\n"
          "  demo-mr-recon.h5, demo-mr-denoised.h5\n"
          "  demo-mr-dicom/, demo-mr-denoised-dicom/   DICOM MR series\n"
          "  demo-mr.png, demo-mr-denoised.png\n"
          "Denoising is left out, with a note, when a shipped model is not "
          "found (see\n"
          "$CLARA_RECON_MODELS) or N is below its receptive field; DICOM "
          "and PNG when this\n"
          "build has no DCMTK or libpng. The demo's own outputs from an "
          "earlier run are\n"
          "replaced.\n"
          "\n"
          "  -o, --output DIR  where to write (default: the current "
          "directory; created\n"
          "                    if missing)\n"
          "  -n, --size N      grid size (default 256)\n"
          "      --backend B   auto (default), cpu or cuda\n"
          "      --threads T   worker threads (default 0: all cores)\n"
          "  -q, --quiet       print nothing on success but warnings, draw no "
          "progress\n"
          "  -h, --help        this help\n"
          "\n%s",
          kProgressHelp);
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

/* The demo's settings and the paths of what it wrote, for the summary. */
typedef struct demo_run {
  const char *dir;
  int size;
  clara_backend backend;
  int threads;
  int quiet;
  char *written[24];
  const char *what[24];
  int nwritten;
} demo_run;

/* DIR/name, recorded for the summary (the caller frees nothing). */
static char *demo_path(demo_run *d, const char *name, const char *what) {
  char *p = join_path(d->dir, name);
  if (p && d->nwritten < (int)(sizeof d->written / sizeof d->written[0])) {
    d->written[d->nwritten] = p;
    d->what[d->nwritten] = what;
    d->nwritten++;
  } else if (p) {
    free(p);
    p = NULL;
  }
  if (!p)
    fail_msg("out of memory");
  return p;
}

static int all_digits5(const char *s) {
  for (int i = 0; i < 5; i++)
    if (s[i] < '0' || s[i] > '9')
      return 0;
  return 1;
}

/* Makes room for a series the demo writes again: an earlier run's series
 * (files CT00001.dcm, MR00001.dcm, ... only) is emptied; anything else
 * there is not the demo's and stops it. */
static int demo_clear_series(const char *dir) {
  DIR *d;
  struct dirent *e;
  struct stat st;
  int foreign = 0;
  if (lstat(dir, &st) != 0)
    return errno == ENOENT ? 0 : fail_msg("%s: %s", dir, strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return fail_msg("%s exists and is not a directory: remove it or choose "
                    "another -o",
                    dir);
  if (!(d = opendir(dir)))
    return fail_msg("%s: %s", dir, strerror(errno));
  while ((e = readdir(d)) != NULL) {
    const char *n = e->d_name;
    if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
      continue;
    if (strlen(n) != 11 ||
        (strncmp(n, "CT", 2) != 0 && strncmp(n, "MR", 2) != 0) ||
        !all_digits5(n + 2) || strcmp(n + 7, ".dcm") != 0)
      foreign = 1;
  }
  closedir(d);
  if (foreign)
    return fail_msg("%s holds files that are not an earlier demo's DICOM "
                    "series: remove it or choose another -o",
                    dir);
  remove_series(dir, 1);
  return 0;
}

/* Denoises 'image' with the shipped model 'name' into *out (malloc'd).
 * *out stays NULL, with a note, when the model is not found or the
 * slices are smaller than its receptive field. */
static int demo_denoise(demo_run *d, const char *name, const clara_volume *vol,
                        const float *image, float **out, double *ms) {
  clara_context_options co;
  clara_context *ctx = NULL;
  clara_denoiser *den = NULL;
  clara_denoiser_info di;
  clara_status st;
  float *res = NULL;
  double t0;
  int rc = 0;

  *out = NULL;
  clara_context_options_init(&co);
  co.backend = d->backend;
  co.threads = d->threads;
  use_progress(&co);
  st = clara_context_create(&co, &ctx);
  if (st != CLARA_OK)
    return lib_error(st, "starting the %s backend",
                     clara_backend_name(d->backend));
  t0 = now_ms();
  st = clara_denoiser_load_shipped(ctx, name, &den);
  if (st == CLARA_ERR_IO) {
    note_msg(d->quiet,
             "demo: no shipped %s model (%s): the %s images are "
             "not denoised",
             name, clara_last_error(), name);
    goto done;
  }
  if (st != CLARA_OK) {
    rc = lib_error(st, "loading the shipped %s model", name);
    goto done;
  }
  if ((st = clara_denoiser_get_info(den, &di)) != CLARA_OK) {
    rc = lib_error(st, "reading the facts of the shipped %s model", name);
    goto done;
  }
  if (vol->nx < di.receptive_field || vol->ny < di.receptive_field) {
    note_msg(d->quiet,
             "demo: %d x %d slices are smaller than the %s "
             "model's receptive field (%d): not denoised",
             vol->nx, vol->ny, name, di.receptive_field);
    goto done;
  }
  if (!(res = alloc_floats(volume_count(vol)))) {
    rc = fail_msg("out of memory");
    goto done;
  }
  st = clara_denoise(den, image, res, vol->nx, vol->ny, vol->nz);
  if (st != CLARA_OK) {
    rc = lib_error(st, "denoising with the shipped %s model", name);
    goto done;
  }
  *ms = now_ms() - t0;
  *out = res;
  res = NULL;
done:
  free(res);
  clara_denoiser_destroy(den);
  clara_context_destroy(ctx);
  return rc;
}

/* Writes a plain and (when there is one) a denoised image of the demo as
 * DICOM series of one study and one frame of reference, and as PNG. */
static int demo_exports(demo_run *d, const char *stem, clara_modality mod,
                        const clara_volume *vol, const float *plain,
                        const float *denoised, const export_opts *eo) {
  static const char *const what_dicom[2][2] = {
      {"DICOM CT series of the reconstruction",
       "DICOM CT series of the denoised image (DERIVED)"},
      {"DICOM MR series of the reconstruction",
       "DICOM MR series of the denoised image (DERIVED)"}};
  static const char *const what_png[2] = {"PNG of the reconstruction",
                                          "PNG of the denoised image"};
  const int m = mod == CLARA_MODALITY_CT ? 0 : 1;
  series_info si;
  char name[64], derivation[128];
  int rc;
#ifdef HAVE_DCMTK
  const int dicom = 1;
#else
  const int dicom = 0;
#endif
#ifdef HAVE_PNG
  const int png = 1;
#else
  const int png = 0;
#endif
  memset(&si, 0, sizeof si);
  si.modality = mod;
  si.patient_name = "Phantom^Shepp-Logan";
  si.patient_id = "CLARA-DEMO";
  for (int k = 0; k < 2; k++) {
    const float *img = k ? denoised : plain;
    char *path;
    if (!img)
      continue;
    if (dicom) {
      snprintf(name, sizeof name, "%s%s-dicom", stem, k ? "-denoised" : "");
      if (!(path = demo_path(d, name, what_dicom[m][k])))
        return EXIT_FAILURE;
      if ((rc = demo_clear_series(path)))
        return rc;
      si.description =
          m == 0
              ? (k ? "clara-recon FBP, denoised" : "clara-recon FBP (ram-lak)")
              : (k ? "clara-recon MR (rss), denoised" : "clara-recon MR (rss)");
      si.derived = k;
      snprintf(derivation, sizeof derivation,
               "denoised by clara-recon with the shipped %s model",
               m == 0 ? "CT" : "MR");
      si.derivation = derivation;
      if ((rc = write_dicom(eo, path, vol, img, &si, d->quiet)))
        return rc;
      /* the denoised series joins the plain one's study and frame */
      si.study_instance_uid = si.study_uid_out;
      si.frame_of_reference_uid = si.frame_uid_out;
    }
    if (png) {
      snprintf(name, sizeof name, "%s%s.png", stem, k ? "-denoised" : "");
      if (!(path = demo_path(d, name, what_png[k])))
        return EXIT_FAILURE;
      if ((rc = write_png(eo, path, vol, img, m == 0, d->quiet)))
        return rc;
    }
  }
  return 0;
}

/* The CT half: simulate, reconstruct, score, denoise, export. */
static int demo_ct(demo_run *d) {
  scan_spec sp;
  scan sc;
  recon_opts ro;
  recon_result res;
  export_opts eo;
  clara_status st;
  float *hu = NULL, *den = NULL;
  char *ct_path, *recon_path, *den_path;
  double rmse = 0, den_ms = 0;
  size_t n;
  stats ts;
  int rc;

  memset(&sp, 0, sizeof sp);
  memset(&sc, 0, sizeof sc);
  memset(&res, 0, sizeof res);
  memset(&ro, 0, sizeof ro);
  memset(&eo, 0, sizeof eo);
  sp.kind = CLARA_GEOM_PARALLEL;
  sp.size = d->size;
  sp.views = 360;
  sp.range_deg = 180;
  ro.backend = d->backend;
  ro.threads = d->threads;
  clara_fbp_options_init(&ro.fbp);
  /* the phantom's inside spans about -900 to -690 HU, its skull 40 HU */
  eo.have_window = 1;
  eo.window_center = -800;
  eo.window_width = 400;
  if (!(ct_path = demo_path(d, "demo-ct.h5", "CT scan: projections, truth")) ||
      !(recon_path = demo_path(d, "demo-recon.h5", "FBP reconstruction, 1/mm")))
    return EXIT_FAILURE;
  if ((rc = check_output_path(ct_path)))
    return rc;
  if ((rc = build_scan(&sp, &sc)))
    goto done;
  if ((rc = reconstruct(&sc.geom, sc.proj, &sc.truth_vol, &ro, &res)))
    goto done;
  if (interrupted()) {
    rc = EXIT_FAILURE;
    goto done;
  }
  st = clara_ct_file_write(ct_path, &sc.geom, sc.proj, &sc.truth_vol, sc.truth);
  if (st != CLARA_OK) {
    rc = lib_error(st, "writing %s", ct_path);
    goto done;
  }
  output_written(ct_path, OUT_FILE, 0);
  st = clara_image_file_write(recon_path, &sc.truth_vol, res.image, "1/mm");
  if (st != CLARA_OK) {
    rc = lib_error(st, "writing %s", recon_path);
    goto done;
  }
  output_written(recon_path, OUT_FILE, 0);
  if ((rc = phantom_rmse(&sc.truth_vol, res.image, sc.truth, &rmse)))
    goto done;
  ts = compute_stats(sc.truth, volume_count(&sc.truth_vol));
  if (!d->quiet) {
    progress_clear();
    printf("demo: parallel %dx%d from %d views in %.0f ms (%s); RMSE vs "
           "phantom %.3g /mm (%.1f%% of the phantom's range); wrote %s and "
           "%s\n",
           sp.size, sp.size, sp.views, res.plan_ms + res.exec_ms,
           clara_backend_name(res.backend), rmse,
           ts.max > ts.min ? 100.0 * rmse / (ts.max - ts.min) : 0.0, ct_path,
           recon_path);
  }

  /* Hounsfield units for the model and DICOM */
  n = volume_count(&sc.truth_vol);
  if (!(hu = alloc_floats(n))) {
    rc = fail_msg("out of memory");
    goto done;
  }
  for (size_t i = 0; i < n; i++)
    hu[i] = (float)(1000.0 * ((double)res.image[i] - kMuWater) / kMuWater);
  if ((rc = demo_denoise(d, "ct", &sc.truth_vol, hu, &den, &den_ms)))
    goto done;
  if (den) {
    if (!(den_path = demo_path(d, "demo-ct-denoised.h5",
                               "denoised (shipped CT model), HU"))) {
      rc = EXIT_FAILURE;
      goto done;
    }
    if (interrupted()) {
      rc = EXIT_FAILURE;
      goto done;
    }
    st = clara_image_file_write(den_path, &sc.truth_vol, den, "HU");
    if (st != CLARA_OK) {
      rc = lib_error(st, "writing %s", den_path);
      goto done;
    }
    output_written(den_path, OUT_FILE, 0);
    if (!d->quiet) {
      double sum2 = 0;
      for (size_t i = 0; i < n; i++)
        sum2 += ((double)den[i] - hu[i]) * ((double)den[i] - hu[i]);
      progress_clear();
      printf("demo: ct denoised with the shipped model in %.0f ms (change "
             "%.3g HU RMS); wrote %s\n",
             den_ms, sqrt(sum2 / (double)n), den_path);
    }
  }
  rc = demo_exports(d, "demo-ct", CLARA_MODALITY_CT, &sc.truth_vol, hu, den,
                    &eo);
done:
  free(hu);
  free(den);
  free(res.image);
  scan_free(&sc);
  return rc;
}

/* The MR half: k-space of the phantom, reconstruct, denoise, export. */
static int demo_mr(demo_run *d) {
  const int coils = 4, n = d->size;
  const double sigma = 0.02; /* k-space noise: the image is about 1 */
  clara_mr_geometry g;
  clara_mr_options o;
  clara_mr_file *file = NULL;
  clara_volume vol;
  export_opts eo;
  mr_recon r;
  clara_status st;
  uint64_t state = 1;
  float *k = NULL, *den = NULL;
  char *raw_path, *recon_path, *den_path;
  double den_ms = 0;
  int rc = EXIT_FAILURE;

  memset(&r, 0, sizeof r);
  memset(&eo, 0, sizeof eo);
  if (n < 2)
    return 0; /* no MR phantom below 2 x 2 */
  memset(&g, 0, sizeof g);
  g.coils = coils;
  g.nx = 2 * n;
  g.ny = n;
  g.nz = 1;
  g.slices = 1;
  g.recon_nx = n;
  g.ky_last = n - 1;
  g.kx_last = g.nx - 1;
  if (!(raw_path = demo_path(d, "demo-mr.h5", "MR raw data (ISMRMRD)")) ||
      !(recon_path =
            demo_path(d, "demo-mr-recon.h5", "MR reconstruction (RSS)")))
    return EXIT_FAILURE;
  if (!(k = alloc_floats(2 * count3(coils, g.ny, g.nx)))) {
    rc = fail_msg("out of memory for the MR phantom");
    goto done;
  }
  st = clara_mr_phantom_kspace(&g, (double)n, 1, k, NULL);
  if (st != CLARA_OK) {
    rc = lib_error(st, "computing the MR phantom's k-space");
    goto done;
  }
  coupled_noise(&state, coils, (size_t)g.ny * g.nx, sigma, k,
                (size_t)g.ny * g.nx, 1);
  if (interrupted())
    goto done;
  st = clara_mr_file_write_ismrmrd(raw_path, &g, k, NULL, 0);
  if (st != CLARA_OK) {
    rc = lib_error(st, "writing %s", raw_path);
    goto done;
  }
  output_written(raw_path, OUT_FILE, 0);
  st = clara_mr_file_open(raw_path, &file);
  if (st != CLARA_OK) {
    rc = lib_error(st, "reading %s", raw_path);
    goto done;
  }
  clara_mr_options_init(&o);
  if ((rc = mr_reconstruct(file, raw_path, 0, d->backend, d->threads, &o, NULL,
                           &r)))
    goto done;
  vol.nx = r.rnx;
  vol.ny = r.geom.ny;
  vol.nz = r.geom.slices * r.geom.nz;
  vol.voxel[0] = vol.voxel[1] = vol.voxel[2] = 1.0; /* FOV n mm */
  vol.center[0] = vol.center[1] = vol.center[2] = 0;
  rc = EXIT_FAILURE;
  if (interrupted())
    goto done;
  st = clara_image_file_write(recon_path, &vol, r.image, "a.u.");
  if (st != CLARA_OK) {
    rc = lib_error(st, "writing %s", recon_path);
    goto done;
  }
  output_written(recon_path, OUT_FILE, 0);
  if (!d->quiet) {
    progress_clear();
    printf("demo: mr %dx%d, %d coils, in %.0f ms (%s); wrote %s and %s\n", n, n,
           coils, r.plan_ms + r.exec_ms, clara_backend_name(r.backend),
           raw_path, recon_path);
  }
  if ((rc = demo_denoise(d, "mr", &vol, r.image, &den, &den_ms)))
    goto done;
  if (den) {
    rc = EXIT_FAILURE;
    if (!(den_path = demo_path(d, "demo-mr-denoised.h5",
                               "denoised (shipped MR model)")))
      goto done;
    if (interrupted())
      goto done;
    st = clara_image_file_write(den_path, &vol, den, "a.u.");
    if (st != CLARA_OK) {
      rc = lib_error(st, "writing %s", den_path);
      goto done;
    }
    output_written(den_path, OUT_FILE, 0);
    if (!d->quiet) {
      progress_clear();
      printf("demo: mr denoised with the shipped model in %.0f ms; wrote %s\n",
             den_ms, den_path);
    }
  }
  rc = demo_exports(d, "demo-mr", CLARA_MODALITY_MR, &vol, r.image, den, &eo);
done:
  clara_mr_file_close(file);
  free(k);
  free(den);
  free(r.image);
  return rc;
}

static int cmd_demo(int argc, char **argv) {
  static const struct option longopts[] = {
      {"output", required_argument, NULL, 'o'},
      {"size", required_argument, NULL, 'n'},
      {"backend", required_argument, NULL, OPT_BACKEND},
      {"threads", required_argument, NULL, OPT_THREADS},
      {"quiet", no_argument, NULL, 'q'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  demo_run d;
  struct stat sb;
  int c, rc;

  memset(&d, 0, sizeof d);
  d.dir = ".";
  d.size = 256;
  d.backend = CLARA_BACKEND_AUTO;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":o:n:qh", longopts, NULL)) != -1) {
    switch (c) {
    case 'o':
      d.dir = optarg;
      break;
    case 'n':
      if ((rc = parse_int("--size", optarg, 1, MAX_SIZE, &d.size)))
        return rc;
      break;
    case OPT_BACKEND:
      if (clara_backend_parse(optarg, &d.backend) != CLARA_OK)
        return usage_error("--backend: %s", clara_last_error());
      break;
    case OPT_THREADS:
      if ((rc = parse_int("--threads", optarg, 0, MAX_THREADS, &d.threads)))
        return rc;
      break;
    case 'q':
      d.quiet = 1;
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
  if (!*d.dir)
    return usage_error("-o: the directory name is empty");
  progress_setup(d.quiet);
#ifndef HAVE_DCMTK
  note_msg(d.quiet, "demo: built without DCMTK: no DICOM series");
#endif
#ifndef HAVE_PNG
  note_msg(d.quiet, "demo: built without libpng: no PNG previews");
#endif
  if (stat(d.dir, &sb) != 0) {
    if (mkdir(d.dir, 0777) != 0)
      return fail_msg("cannot create the directory %s: %s", d.dir,
                      strerror(errno));
    output_written(d.dir, OUT_DIR, 0);
  }
  rc = demo_ct(&d);
  if (rc == 0)
    rc = demo_mr(&d);
  if (rc == 0 && !d.quiet && !interrupted()) {
    printf("demo: everything is in %s:\n", d.dir);
    for (int i = 0; i < d.nwritten; i++) {
      const char *base = strrchr(d.written[i], '/');
      char name[64];
      base = base ? base + 1 : d.written[i];
      snprintf(name, sizeof name, "%s%s", base,
               strncmp(d.what[i], "DICOM", 5) == 0 ? "/" : "");
      printf("  %-26s %s\n", name, d.what[i]);
    }
  }
  for (int i = 0; i < d.nwritten; i++)
    free(d.written[i]);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* main                                                                      */
/* ------------------------------------------------------------------------ */

static void main_help(FILE *f) {
  fputs("Usage: " PROG " COMMAND [OPTIONS]\n"
        "CT and MR reconstruction and denoising with libclara-recon.\n"
        "\n"
        "Commands:\n"
        "  phantom ct  write a simulated CT scan of the Shepp-Logan phantom\n"
        "  phantom mr  write simulated multi-coil MR k-space (ISMRMRD)\n"
        "  ct          reconstruct a CT input file (filtered "
        "back-projection)\n"
        "  mr          reconstruct MR k-space (ISMRMRD or fastMRI)\n"
        "  denoise     denoise an image file with a trained CNN (CT or MR)\n"
        "  export-dicom  write an image file as a DICOM series\n"
        "  info        describe a CT input, image, MR raw-data or model "
        "file, or compare\n"
        "  demo        simulate, reconstruct, denoise and export a CT and an "
        "MR scan\n"
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
  int writes; /* writes outputs: Ctrl-C cancels, failures clean up */
} command;

static const command commands[] = {
    {"phantom", cmd_phantom, phantom_help, 1},
    {"ct", cmd_ct, ct_help, 1},
    {"mr", cmd_mr, mr_help, 1},
    {"denoise", cmd_denoise, denoise_help, 1},
    {"export-dicom", cmd_export_dicom, export_dicom_help, 1},
    {"info", cmd_info, info_help, 0},
    {"demo", cmd_demo, demo_help, 1},
};

static const command *find_command(const char *name) {
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(name, commands[i].name) == 0)
      return &commands[i];
  return NULL;
}

/* The shipped models are installed with the library; a tool run from its
 * build tree (the README's first command) has not been installed yet, so
 * when neither $CLARA_RECON_MODELS nor the installed directory provides
 * them, point the library at the source tree's models/. */
static void models_fallback(void) {
#if defined(CLARA_INSTALLED_MODELS) && defined(CLARA_SOURCE_MODELS)
  const char *env = getenv("CLARA_RECON_MODELS");
  if (env && *env)
    return;
  if (access(CLARA_INSTALLED_MODELS "/ct-denoise.h5", R_OK) == 0)
    return;
  if (access(CLARA_SOURCE_MODELS "/ct-denoise.h5", R_OK) == 0)
    (void)setenv("CLARA_RECON_MODELS", CLARA_SOURCE_MODELS, 0);
#endif
}

int main(int argc, char **argv) {
  const command *cmd;
  int rc;
  models_fallback();
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
  if (!cmd->writes)
    return cmd->run(argc - 1, argv + 1);
  install_signal_handlers();
  rc = cmd->run(argc - 1, argv + 1);
  progress_clear();
  fflush(stdout);
  if (g_signal) {
    /* cancelled, however far the command got: nothing it wrote stays */
    outputs_remove(0);
    outputs_forget();
    fprintf(stderr, PROG " %s: cancelled\n", cmd->name);
    return 128 + g_signal;
  }
  if (rc != 0)
    outputs_remove(1);
  outputs_forget();
  return rc;
}
