/* fuzz/fuzz_mr_check.h -- opens an MR file and reads everything the API
 * offers; used by fuzz_mr_file.c and fuzz_mr_struct.c. */
#ifndef CLARA_FUZZ_MR_CHECK_H
#define CLARA_FUZZ_MR_CHECK_H

#include "clara_recon.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* k-space buffers above this many floats are not read (the reader's own
 * limits are what is being tested, not the machine's memory) */
#define FUZZ_MR_MAX_FLOATS (16u << 20)

static void fuzz_mr_check(const char *path) {
  clara_mr_file *f = NULL;
  int count;
  clara_status ost = clara_mr_file_open(path, &f);
  if (getenv("CLARA_FUZZ_VERBOSE"))
    fprintf(stderr, "clara_mr_file_open: %s: %s\n", clara_status_name(ost),
            ost == CLARA_OK ? clara_mr_file_format(f) : clara_last_error());
  if (ost != CLARA_OK) {
    if (f)
      abort(); /* *out is NULL on failure */
    return;
  }
  (void)clara_mr_file_format(f);
  count = clara_mr_file_count(f);
  for (int i = 0; i < count; i++) {
    clara_mr_geometry g;
    clara_mr_study st;
    if (clara_mr_file_study(f, i, &st) == CLARA_OK) {
      /* every string is terminated inside its array */
      if (memchr(st.patient_name, 0, sizeof st.patient_name) == NULL ||
          memchr(st.study_date, 0, sizeof st.study_date) == NULL ||
          memchr(st.manufacturer, 0, sizeof st.manufacturer) == NULL ||
          memchr(st.patient_sex, 0, sizeof st.patient_sex) == NULL ||
          memchr(st.sequence_type, 0, sizeof st.sequence_type) == NULL)
        abort();
    }
    if (clara_mr_file_geometry(f, i, &g) == CLARA_OK) {
      double n = 2.0 * g.slices * g.coils * (double)g.nz * g.ny * g.nx;
      if (n > 0 && n <= FUZZ_MR_MAX_FLOATS) {
        float *k = malloc((size_t)n * sizeof *k);
        if (k) {
          (void)clara_mr_file_kspace(f, i, k);
          free(k);
        }
      }
    }
  }
  (void)clara_mr_file_geometry(f, count, NULL);
  {
    int coils = 0, samples = 0;
    const float *noise = NULL;
    if (clara_mr_file_noise(f, &coils, &samples, &noise) == CLARA_OK &&
        samples > 0 && noise) {
      volatile float s = noise[2 * (size_t)coils * samples - 1];
      (void)s;
    }
  }
  {
    int sl = 0, ny = 0, nx = 0;
    const float *rss = NULL;
    if (clara_mr_file_reference(f, &sl, &ny, &nx, &rss) == CLARA_OK && rss) {
      volatile float s = rss[(size_t)sl * ny * nx - 1];
      (void)s;
    }
  }
  clara_mr_file_close(f);
}

#endif
