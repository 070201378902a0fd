/* fuzz/fuzz_main.c -- replays files through a fuzz target's
 * LLVMFuzzerTestOneInput without libFuzzer: the regression tests of `make
 * check` (fuzz/fuzz.am builds one fuzz/replay_* program per target with
 * the normal compiler). Arguments are files or directories (their regular
 * files, not recursively); without arguments, the target's seed corpus
 * and regression corpus, fuzz/corpus/NAME and fuzz/regressions/NAME under
 * $top_srcdir (which `make check` exports) or else FUZZ_SRCDIR. Exit
 * status 0 when every input ran (a crash ends the process, which is the
 * failure; under `make check-asan` the sanitizers make it one). */
#include "fuzz_common.h"

#include <errno.h>

#ifndef FUZZ_TARGET_NAME
#error "FUZZ_TARGET_NAME (e.g. \"fuzz_ct_file\") must be defined"
#endif
#ifndef FUZZ_SRCDIR
#define FUZZ_SRCDIR "."
#endif

/* Under AddressSanitizer (make check-asan): the settings of the fuzz runs
 * (fuzz/fuzz.sh) as defaults. The environment still overrides them. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
  return "allocator_may_return_null=1:max_allocation_size_mb=1024";
}
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
  return "leak:libhdf5\n"; /* fuzz/lsan.supp */
}

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  uint8_t *buf = NULL;
  long n;
  if (!f || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
      fseek(f, 0, SEEK_SET) != 0) {
    fprintf(stderr, "%s: %s\n", path, strerror(errno));
    if (f)
      fclose(f);
    return 1;
  }
  /* a copy of exactly n bytes, so that ASan sees reads past the end */
  buf = malloc(n ? (size_t)n : 1);
  if (!buf || (n && fread(buf, 1, (size_t)n, f) != (size_t)n)) {
    fprintf(stderr, "%s: cannot read\n", path);
    fclose(f);
    free(buf);
    return 1;
  }
  fclose(f);
  (void)LLVMFuzzerTestOneInput(buf, (size_t)n);
  free(buf);
  return 0;
}

int main(int argc, char **argv) {
  int rc = 0, runs = 0, defaulted = 0;
  char dirs[2][2048];
  char *defaults[3];
  if (argc < 2) {
    const char *top = getenv("top_srcdir");
    if (!top || !*top)
      top = FUZZ_SRCDIR;
    snprintf(dirs[0], sizeof dirs[0], "%s/fuzz/corpus/%s", top,
             FUZZ_TARGET_NAME);
    snprintf(dirs[1], sizeof dirs[1], "%s/fuzz/regressions/%s", top,
             FUZZ_TARGET_NAME);
    defaults[0] = argv[0];
    defaults[1] = dirs[0];
    defaults[2] = dirs[1];
    argv = defaults;
    argc = 3;
    defaulted = 1;
  }
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      if (defaulted && errno == ENOENT)
        continue; /* a target without regressions yet */
      fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
      rc = 1;
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      DIR *d = opendir(argv[i]);
      struct dirent *e;
      char p[4096];
      if (!d) {
        rc = 1;
        continue;
      }
      while ((e = readdir(d)) != NULL) {
        struct stat fs;
        if (e->d_name[0] == '.')
          continue;
        snprintf(p, sizeof p, "%s/%s", argv[i], e->d_name);
        if (stat(p, &fs) == 0 && S_ISREG(fs.st_mode)) {
          rc |= run_file(p);
          runs++;
        }
      }
      closedir(d);
    } else {
      rc |= run_file(argv[i]);
      runs++;
    }
  }
  fprintf(stderr, "%s: %d inputs replayed\n", argv[0], runs);
  return rc;
}
