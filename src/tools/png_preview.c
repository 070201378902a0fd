/* png_preview.c -- 8-bit greyscale PNG previews (see png_preview.h). */
#include "png_preview.h"

#include <png.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_SIDE 1000000 /* libpng's default limit on width and height */
#define CT_CENTER 40.0
#define CT_WIDTH 400.0

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static clara_status
fail(char *err, size_t errlen, clara_status st, const char *fmt, ...) {
  if (err && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return st;
}

/* What the write needs, shared with libpng's error callback. */
typedef struct png_job {
  FILE *fp;
  const float *image;
  int nx, ny, nz;
  int tiles, cols, rows;
  int slice[CLARA_PNG_MAX_TILES];
  size_t width, height;
  double win_center, win_width;
  double lo; /* grey = (v - lo) * 255 / win_width, clamped to 0..255 */
  unsigned char *row;
  char comment[512];
  char msg[256]; /* libpng's error */
} png_job;

static void on_error(png_structp png, png_const_charp msg) {
  png_job *job = png_get_error_ptr(png);
  snprintf(job->msg, sizeof job->msg, "%s", msg);
  png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg; /* previews do not report libpng's warnings */
}

static unsigned char grey(const png_job *job, float v) {
  /* multiplied before dividing, so that the window's middle is exactly
   * 127.5 and rounds to 128 */
  double y = ((double)v - job->lo) * 255.0 / job->win_width;
  if (!(y > 0.0)) /* below the window, or -inf */
    return 0;
  if (y >= 255.0)
    return 255;
  return (unsigned char)(y + 0.5);
}

static void fill_row(const png_job *job, size_t r) {
  size_t tr = r / (size_t)job->ny, iy = r % (size_t)job->ny;
  for (int tc = 0; tc < job->cols; tc++) {
    int k = (int)tr * job->cols + tc;
    unsigned char *out = job->row + (size_t)tc * (size_t)job->nx;
    if (k >= job->tiles) {
      memset(out, 0, (size_t)job->nx);
      continue;
    }
    const float *in =
        job->image +
        ((size_t)job->slice[k] * (size_t)job->ny + iy) * (size_t)job->nx;
    for (int ix = 0; ix < job->nx; ix++)
      out[ix] = grey(job, in[ix]);
  }
}

/* Runs libpng; the only function with setjmp, and it changes no local
 * after it. 0 on success, -1 with job->msg on failure. */
static int encode(png_structp png, png_infop info, png_job *job) {
  if (setjmp(png_jmpbuf(png)))
    return -1;
  png_init_io(png, job->fp);
  png_set_IHDR(png, info, (png_uint_32)job->width, (png_uint_32)job->height, 8,
               PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  {
    char software[] = "Software", name[] = "clara-recon", comment[] = "Comment";
    png_text text[2];
    memset(text, 0, sizeof text);
    text[0].compression = PNG_TEXT_COMPRESSION_NONE;
    text[0].key = software;
    text[0].text = name;
    text[1].compression = PNG_TEXT_COMPRESSION_NONE;
    text[1].key = comment;
    text[1].text = job->comment;
    png_set_text(png, info, text, 2);
  }
  png_write_info(png, info);
  for (size_t r = 0; r < job->height; r++) {
    fill_row(job, r);
    png_write_row(png, job->row);
  }
  png_write_end(png, info);
  return 0;
}

/* Chooses the slices and the grid; checks the size. */
static clara_status plan_montage(png_job *job, char *err, size_t errlen) {
  int t = job->nz < CLARA_PNG_MAX_TILES ? job->nz : CLARA_PNG_MAX_TILES;
  int cols = 1;
  size_t len;
  while (cols * cols < t)
    cols++;
  job->tiles = t;
  job->cols = cols;
  job->rows = (t + cols - 1) / cols;
  for (int k = 0; k < t; k++)
    job->slice[k] =
        t == 1 ? 0
               : (int)(((long long)k * (job->nz - 1) + (t - 1) / 2) / (t - 1));
  job->width = (size_t)cols * (size_t)job->nx;
  job->height = (size_t)job->rows * (size_t)job->ny;
  if (job->width > MAX_SIDE || job->height > MAX_SIDE)
    return fail(err, errlen, CLARA_ERR_INVALID_ARG,
                "PNG preview: %zu x %zu pixels (%d x %d tiles of %d x %d): "
                "at most %d per side",
                job->width, job->height, cols, job->rows, job->nx, job->ny,
                MAX_SIDE);
  len = (size_t)snprintf(job->comment, sizeof job->comment,
                         "clara-recon preview: window center %g width %g; ",
                         job->win_center, job->win_width);
  if (job->nz == 1) {
    snprintf(job->comment + len, sizeof job->comment - len, "one slice");
  } else {
    len += (size_t)snprintf(job->comment + len, sizeof job->comment - len,
                            "slices");
    for (int k = 0; k < t && len < sizeof job->comment; k++)
      len += (size_t)snprintf(job->comment + len, sizeof job->comment - len,
                              "%s%d", k ? "," : " ", job->slice[k]);
    if (len < sizeof job->comment)
      snprintf(job->comment + len, sizeof job->comment - len,
               " of 0..%d, %d x %d tiles", job->nz - 1, cols, job->rows);
  }
  return CLARA_OK;
}

clara_status clara_png_write(const char *path, const float *image, int nx,
                             int ny, int nz, double center, double width,
                             char *err, size_t errlen) {
  png_job job;
  png_structp png = NULL;
  png_infop info = NULL;
  char *tmp = NULL;
  int fd = -1;
  clara_status st = CLARA_OK;
  size_t n;
  mode_t mask;
  struct stat sb;

  if (err && errlen)
    err[0] = '\0';
  if (!path || !*path || !image)
    return fail(err, errlen, CLARA_ERR_INVALID_ARG, "PNG preview: %s is %s",
                !image ? "image" : "path", !path || !image ? "NULL" : "empty");
  if (nx < 1 || ny < 1 || nz < 1)
    return fail(err, errlen, CLARA_ERR_INVALID_ARG,
                "PNG preview: nx, ny and nz must be >= 1, got %d, %d and %d",
                nx, ny, nz);
  if (!isfinite(center) || !isfinite(width) || !(width > 0))
    return fail(err, errlen, CLARA_ERR_INVALID_ARG,
                "PNG preview: window: center must be finite and width finite "
                "and > 0, got center %g width %g",
                center, width);
  memset(&job, 0, sizeof job);
  job.image = image;
  job.nx = nx;
  job.ny = ny;
  job.nz = nz;
  job.win_center = center;
  job.win_width = width;
  job.lo = center - 0.5 * width;
  if ((st = plan_montage(&job, err, errlen)) != CLARA_OK)
    return st;
  /* Only the slices shown are read. */
  n = (size_t)nx * (size_t)ny;
  for (int k = 0; k < job.tiles; k++) {
    const float *sl = image + (size_t)job.slice[k] * n;
    for (size_t i = 0; i < n; i++)
      if (isnan(sl[i]))
        return fail(err, errlen, CLARA_ERR_INVALID_ARG,
                    "PNG preview: image (ix %zu, iy %zu, iz %d) is NaN",
                    i % (size_t)nx, i / (size_t)nx, job.slice[k]);
  }
  if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
    return fail(err, errlen, CLARA_ERR_IO, "PNG preview %s: is a directory",
                path);

  job.row = malloc(job.width);
  tmp = malloc(strlen(path) + sizeof ".tmp-XXXXXX");
  if (!job.row || !tmp) {
    st = fail(err, errlen, CLARA_ERR_OUT_OF_MEMORY,
              "PNG preview: out of memory");
    goto done;
  }
  strcpy(tmp, path);
  strcat(tmp, ".tmp-XXXXXX");
  fd = mkstemp(tmp);
  if (fd < 0) {
    st = fail(err, errlen, CLARA_ERR_IO, "PNG preview %s: %s", path,
              strerror(errno));
    free(tmp);
    tmp = NULL; /* nothing to remove */
    goto done;
  }
  mask = umask(0); /* mkstemp made it 0600; give it the mode fopen would */
  umask(mask);
  if (fchmod(fd, 0666 & ~mask) != 0 || !(job.fp = fdopen(fd, "wb"))) {
    st = fail(err, errlen, CLARA_ERR_IO, "PNG preview %s: %s", tmp,
              strerror(errno));
    close(fd);
    goto done;
  }
  png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &job, on_error,
                                on_warning);
  info = png ? png_create_info_struct(png) : NULL;
  if (!info) {
    st = fail(err, errlen, CLARA_ERR_OUT_OF_MEMORY,
              "PNG preview: out of memory");
    goto done;
  }
  if (encode(png, info, &job) != 0) {
    st = fail(err, errlen, CLARA_ERR_IO, "PNG preview %s: %s", path, job.msg);
    goto done;
  }
  if (fflush(job.fp) != 0 || fsync(fileno(job.fp)) != 0) {
    st = fail(err, errlen, CLARA_ERR_IO, "PNG preview %s: %s", path,
              strerror(errno));
    goto done;
  }
  {
    FILE *fp = job.fp;
    job.fp = NULL;
    if (fclose(fp) != 0) {
      st = fail(err, errlen, CLARA_ERR_IO, "PNG preview %s: %s", path,
                strerror(errno));
      goto done;
    }
  }
  if (rename(tmp, path) != 0) {
    st = fail(err, errlen, CLARA_ERR_IO, "PNG preview %s: %s", path,
              strerror(errno));
    goto done;
  }
  free(tmp);
  tmp = NULL; /* renamed: nothing to remove */

done:
  if (png)
    png_destroy_write_struct(&png, info ? &info : NULL);
  if (job.fp)
    fclose(job.fp);
  if (tmp) {
    unlink(tmp);
    free(tmp);
  }
  free(job.row);
  return st;
}

clara_status clara_png_default_window(clara_modality modality,
                                      const float *image, size_t n,
                                      double *center, double *width, char *err,
                                      size_t errlen) {
  clara_dicom_scaling sc;
  int16_t *stored;
  clara_status st;
  if (err && errlen)
    err[0] = '\0';
  if (!center || !width)
    return fail(err, errlen, CLARA_ERR_INVALID_ARG,
                "PNG default window: %s is NULL", !center ? "center" : "width");
  if (modality == CLARA_MODALITY_CT) {
    *center = CT_CENTER;
    *width = CT_WIDTH;
    return CLARA_OK;
  }
  if (modality != CLARA_MODALITY_MR)
    return fail(err, errlen, CLARA_ERR_INVALID_ARG,
                "PNG default window: modality: expected CT (%d) or MR (%d), "
                "got %d",
                CLARA_MODALITY_CT, CLARA_MODALITY_MR, (int)modality);
  if (!image || n == 0)
    return fail(err, errlen, CLARA_ERR_INVALID_ARG, "PNG default window: %s",
                !image ? "image is NULL" : "n is 0");
  stored = malloc(n * sizeof *stored);
  if (!stored)
    return fail(err, errlen, CLARA_ERR_OUT_OF_MEMORY,
                "PNG default window: out of memory");
  st = clara_dicom_ready_scaled(image, n, stored, &sc);
  free(stored);
  if (st != CLARA_OK)
    return fail(err, errlen, st, "PNG default window: %s", clara_last_error());
  *center = sc.window_center;
  *width = sc.window_width;
  return CLARA_OK;
}

clara_status clara_png_parse_window(const char *text, double *center,
                                    double *width, char *err, size_t errlen) {
  const char *p = text;
  char *end;
  double c, w;
  if (err && errlen)
    err[0] = '\0';
  if (!text || !center || !width)
    return fail(err, errlen, CLARA_ERR_INVALID_ARG, "--window: %s is NULL",
                !text     ? "text"
                : !center ? "center"
                          : "width");
  c = strtod(p, &end);
  if (end == p)
    goto bad;
  for (p = end; *p == ' '; p++)
    ;
  if (*p++ != ',')
    goto bad;
  w = strtod(p, &end);
  if (end == p)
    goto bad;
  for (p = end; *p == ' '; p++)
    ;
  if (*p)
    goto bad;
  if (!isfinite(c) || !isfinite(w) || !(w > 0))
    return fail(err, errlen, CLARA_ERR_INVALID_ARG,
                "--window %s: the center must be finite and the width finite "
                "and > 0",
                text);
  *center = c;
  *width = w;
  return CLARA_OK;
bad:
  return fail(err, errlen, CLARA_ERR_INVALID_ARG,
              "--window: expected CENTER,WIDTH (e.g. 40,400), got \"%s\"",
              text);
}
