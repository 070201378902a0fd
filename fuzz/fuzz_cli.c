/* fuzz/fuzz_cli.c -- the option parsing and argument validation of the
 * command-line tool clara-recon, without its work.
 *
 * src/tools/clara-recon.c is compiled into this file with its main renamed
 * clara_recon_tool_main, and the input is its command line: arguments
 * separated by newlines (or NUL bytes), argv[0] supplied. Every subcommand
 * is reachable (phantom ct/mr, ct, mr, denoise, export-dicom, info, demo,
 * help, --version), with every option, so getopt_long, the number parsers,
 * the range checks and the cross-option checks all run.
 *
 * Why no real work is done:
 *  - access() and mkdir() of the tool are redirected (macros, this file
 *    only): a write-permission check (W_OK) fails with EACCES and no
 *    directory is created, so check_output_path() -- which every writing
 *    command calls after its options are parsed and validated and before
 *    any computation -- refuses the output, and demo stops at its first
 *    output. No file is ever written.
 *  - The process works in an empty scratch directory, and an argument
 *    that could name an existing file outside it (an absolute path that
 *    exists, after "=" or "-X" too, or any "..") makes the input
 *    uninteresting (returns at once). So every input file that a command
 *    reads is missing, and the read fails at open; /dev/stdin, /dev/zero
 *    and the like are never opened.
 *  - CLARA_RECON_MODELS points at a missing directory: --model ct/mr fails
 *    at once instead of loading 330 kB models.
 * What is therefore not covered: the tool's behaviour once its inputs are
 * read (that is the library's readers, fuzzed by the other targets). */
#include "fuzz_common.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <sys/types.h>

static int fuzz_access(const char *path, int mode) {
  if (mode & W_OK) {
    errno = EACCES;
    return -1;
  }
  return access(path, mode);
}

static int fuzz_mkdir(const char *path, mode_t mode) {
  (void)path;
  (void)mode;
  errno = EACCES;
  return -1;
}

/* the tool's optional modules stay out (this file is built without them) */
#undef HAVE_CONFIG_H
int clara_recon_tool_main(int argc, char **argv);
#define main clara_recon_tool_main
#define access fuzz_access
#define mkdir fuzz_mkdir
#include "../src/tools/clara-recon.c"
#undef main
#undef access
#undef mkdir

enum { FUZZ_MAX_ARGS = 32, FUZZ_MAX_INPUT = 4096 };

/* 1 when 'arg' could name an existing file outside the scratch directory:
 * an absolute path (the argument, or what follows "=" or a short option
 * letter) that exists, or any "..". Absent absolute paths are harmless
 * (nothing is written, and a read fails at open) and stay, so that
 * "--dataset /image" is kept. */
static int escapes(const char *arg) {
  const char *p = NULL;
  if (strstr(arg, ".."))
    return 1;
  if (arg[0] == '/')
    p = arg;
  else if (arg[0] == '-' && arg[1] && arg[1] != '-' && arg[2] == '/')
    p = arg + 2;
  else if ((p = strstr(arg, "=/")) != NULL)
    p++;
  return p && access(p, F_OK) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  char buf[FUZZ_MAX_INPUT + 1];
  char *argv[FUZZ_MAX_ARGS + 2];
  int argc = 0;
  if (!ready) {
    char models[600];
    int fd;
    if (chdir(fuzz_dir()) != 0)
      abort();
    snprintf(models, sizeof models, "%s/no-models", fuzz_dir());
    setenv("CLARA_RECON_MODELS", models, 1);
    /* help texts are long: stdout to /dev/null (stderr stays, for the
     * sanitizers' reports; libFuzzer's -close_fd_mask=2 hides it) */
    fd = open("/dev/null", O_WRONLY);
    if (fd >= 0) {
      fflush(stdout);
      dup2(fd, STDOUT_FILENO);
      close(fd);
    }
    ready = 1;
  }
  if (size > FUZZ_MAX_INPUT)
    return 0;
  memcpy(buf, data, size);
  buf[size] = '\0';
  static char argv0[] = "clara-recon";
  argv[argc++] = argv0;
  for (size_t i = 0, start = 0; i <= size; i++) {
    if (i == size || buf[i] == '\n' || buf[i] == '\0') {
      buf[i] = '\0';
      if (argc == FUZZ_MAX_ARGS + 1)
        return 0;
      if (escapes(buf + start))
        return 0;
      argv[argc++] = buf + start;
      start = i + 1;
    }
  }
  /* a trailing newline does not add an empty argument */
  if (argc > 1 && size > 0 && data[size - 1] == '\n')
    argc--;
  argv[argc] = NULL;
  /* the tool's global state, as a fresh process has it */
  optind = 0; /* glibc: full reinitialisation of getopt */
  opterr = 1;
  g_cmd = NULL;
  g_signal = 0;
  (void)clara_recon_tool_main(argc, argv);
  /* a run must leave the scratch directory empty */
  {
    DIR *d = opendir(".");
    struct dirent *e;
    if (d) {
      while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
          fprintf(stderr, "fuzz_cli: the run left '%s' behind\n", e->d_name);
          abort();
        }
      closedir(d);
    }
  }
  return 0;
}
