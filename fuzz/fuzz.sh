#!/bin/sh
# fuzz/fuzz.sh -- builds the libFuzzer targets and runs each for a bounded
# time (`make fuzz`, fuzz/fuzz.am; fuzz/README.md). Environment:
#   FUZZ_CC        the compiler (default clang; needs -fsanitize=fuzzer)
#   FUZZ_SECONDS   seconds per target (default 60)
#   FUZZ_SEED      libFuzzer's -seed (default 1)
#   FUZZ_TARGETS   the targets to run (default all)
#   FUZZ_LIB_SOURCES  the library's sources, relative to srcdir (.c kept)
#   FUZZ_DEP_CFLAGS / FUZZ_DEP_LIBS  HDF5, libxml2, FFTW flags and libs
#   srcdir, builddir  the source tree and where to build (builddir/fuzz/build)
# Exit status: 0 when every target ran without a crash (or when clang with
# libFuzzer is missing: then it says so and skips), 1 otherwise.
set -u
srcdir=${srcdir:-.}
builddir=${builddir:-.}
CC=${FUZZ_CC:-clang}
SECONDS_EACH=${FUZZ_SECONDS:-60}
SEED=${FUZZ_SEED:-1}
TARGETS=${FUZZ_TARGETS:-"fuzz_ct_file fuzz_mr_file fuzz_mr_struct fuzz_model_file fuzz_cli"}
OUT=$builddir/fuzz/build
NICE="nice -n 10"
command -v nice >/dev/null 2>&1 || NICE=

srcdir=$(cd "$srcdir" && pwd) || exit 1
mkdir -p "$OUT/obj" || exit 1
OUT=$(cd "$OUT" && pwd)

# ---- Is there a compiler with libFuzzer? ----------------------------------
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$OUT/probe.c"
if ! command -v "$CC" >/dev/null 2>&1 ||
   ! "$CC" -fsanitize=fuzzer,address,undefined "$OUT/probe.c" \
       -o "$OUT/probe" >"$OUT/probe.log" 2>&1; then
  echo "fuzz: SKIPPED: '$CC' cannot build a libFuzzer target with" \
       "-fsanitize=fuzzer,address,undefined (install clang with libFuzzer," \
       "or set FUZZ_CC); see $OUT/probe.log"
  exit 0
fi

# ---- The library, instrumented ---------------------------------------------
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CFLAGS_F="-g -O1 -std=c11 -D_GNU_SOURCE $SAN -I$srcdir/include -I$srcdir/src/core -I$srcdir/src/nn -DCLARA_RECON_BUILDING -DCLARA_NO_CLONES -DCLARA_MODELDIR=\"/nonexistent\" ${FUZZ_DEP_CFLAGS:-}"
LIBS_F="${FUZZ_DEP_LIBS:-} -lpthread -ldl -lm"
objs=
for s in ${FUZZ_LIB_SOURCES:-}; do
  case $s in *.c) ;; *) continue ;; esac
  o=$OUT/obj/$(echo "$s" | tr / _ | sed 's/\.c$/.o/')
  objs="$objs $o"
  if [ ! -f "$o" ] || [ "$srcdir/$s" -nt "$o" ]; then
    echo "  CC (fuzz) $s"
    $NICE "$CC" $CFLAGS_F -fsanitize=fuzzer-no-link -c "$srcdir/$s" -o "$o" ||
      exit 1
  fi
done
[ -n "$objs" ] || { echo "fuzz: FUZZ_LIB_SOURCES is empty"; exit 1; }
rm -f "$OUT/libclara-fuzz.a"
ar rcs "$OUT/libclara-fuzz.a" $objs || exit 1

# ---- The targets -----------------------------------------------------------
for t in $TARGETS; do
  echo "  CCLD (fuzz) $t"
  $NICE "$CC" $CFLAGS_F -fsanitize=fuzzer -I"$srcdir/fuzz" -I"$srcdir/src/tools" \
    "$srcdir/fuzz/$t.c" "$OUT/libclara-fuzz.a" $LIBS_F -o "$OUT/$t" || exit 1
done

# ---- Runs --------------------------------------------------------------------
# -fork=1 with -ignore_timeouts/-ignore_ooms/-ignore_crashes: libhdf5 (not
# instrumented; Debian's 1.10) has hangs, huge allocations and memory
# errors of its own on some corrupt files (fuzz/README.md). Every artifact
# is kept; each (crash, leak, timeout, out-of-memory) is then replayed and
# classified (triage below): one that involves libclara-recon's code fails
# the run, one that happens wholly inside libhdf5 is reported as such.
ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=1:max_allocation_size_mb=1024:detect_leaks=1}
LSAN_OPTIONS="suppressions=$srcdir/fuzz/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS
# the targets' scratch directories (fuzz_common.h) in one directory of this
# run, removed at the end: a job killed by a crash or a timeout leaves its
# own behind
CLARA_FUZZ_TMP=$(mktemp -d /dev/shm/clara-fuzz-run.XXXXXX 2>/dev/null) ||
  CLARA_FUZZ_TMP=$(mktemp -d "${TMPDIR:-/tmp}/clara-fuzz-run.XXXXXX") || exit 1
export CLARA_FUZZ_TMP
trap 'rm -rf "$CLARA_FUZZ_TMP"' EXIT
# triage TARGET ARTIFACT: prints "library", "hdf5" or "unreproduced"
# (the input alone runs clean: state left by earlier inputs). HDF5-internal:
# the first frame of the report's first stack that is in libhdf5 or in the
# source tree (libc and sanitizer frames skipped) is libhdf5's, and no
# other stack of the report (where the memory was allocated or freed) has a
# frame in the library's sources.
# Anything else (a frame of src/ first, UBSan in our code, our abort(),
# LeakSanitizer on our allocations, memory that our code allocated) is the
# library's.
triage() {
  if (cd "$OUT" && "./$1" -timeout=5 -rss_limit_mb=2560 "$2") >"$2.txt" 2>&1
  then
    echo "unreproduced"
    return
  fi
  awk -v src="$srcdir/" '
    /^ *#[0-9]+ / {
      if (!seen_first_stack) in_first = 1
      if (in_first && !decided) {
        # frames of libc and the sanitizer runtime do not decide
        if (index($0, "libhdf5")) { first = "hdf5"; decided = 1 }
        # our sources, not the fuzzer binary (which may sit under srcdir
        # in an in-tree build, and whose libFuzzer frames decide nothing)
        else if (index($0, src "src/") || index($0, src "fuzz/fuzz_")) {
          first = "library"; decided = 1
        }
      } else if (!in_first && index($0, src "src/")) other_src = 1
      next
    }
    { if (in_first) { in_first = 0; seen_first_stack = 1 } }
    END {
      if (first == "hdf5" && !other_src) print "hdf5"; else print "library"
    }' "$2.txt"
}

status=0
summary=$OUT/summary.txt
: >"$summary"
for t in $TARGETS; do
  work=$OUT/corpus/$t
  art=$OUT/artifacts/$t
  mkdir -p "$work" "$art"
  extra="-max_len=65536"
  [ "$t" = fuzz_cli ] && extra="-max_len=4096 -close_fd_mask=2"
  echo "fuzz: $t for ${SECONDS_EACH}s (seed $SEED; log $OUT/$t.log)"
  (cd "$OUT" && $NICE "./$t" -seed="$SEED" -max_total_time="$SECONDS_EACH" \
     -timeout=5 -rss_limit_mb=2560 -fork=1 -ignore_timeouts=1 \
     -ignore_ooms=1 -ignore_crashes=1 -print_final_stats=1 $extra -artifact_prefix="$art/" \
     "$work" "$srcdir/fuzz/corpus/$t") >"$OUT/$t.log" 2>&1
  rc=$?
  last=$(grep -E '^#[0-9]+: cov: ' "$OUT/$t.log" | tail -n 1)
  crashes=0
  hdf5=0
  for a in "$art"/crash-* "$art"/leak-* "$art"/timeout-* "$art"/oom-*; do
    case $a in *.txt | *'*'*) continue ;; esac
    [ -f "$a" ] || continue
    kind=$(triage "$t" "$a")
    if [ "$kind" = hdf5 ]; then
      hdf5=$((hdf5 + 1))
      echo "fuzz: $t: inside libhdf5: $a (report: $a.txt)"
    elif [ "$kind" = unreproduced ]; then
      hdf5=$((hdf5 + 1))
      echo "fuzz: $t: did not reproduce alone (counted with libhdf5's): $a"
    else
      crashes=$((crashes + 1))
      echo "fuzz: $t: LIBRARY PROBLEM: $a (report: $a.txt)"
    fi
  done
  line="$t: exit $rc; ${last:-no stats}; artifacts in our code $crashes, inside libhdf5 $hdf5"
  echo "fuzz: $line"
  echo "$line" >>"$summary"
  # with -ignore_crashes, libFuzzer exits nonzero after any crash: the
  # triage decides; a nonzero exit without any artifact is a failure
  if [ "$crashes" -ne 0 ] ||
     { [ $rc -ne 0 ] && [ "$hdf5" -eq 0 ]; }; then
    status=1
    echo "fuzz: $t FAILED: see $OUT/$t.log and $art/"
    tail -n 40 "$OUT/$t.log"
  fi
done
echo "fuzz: summary in $summary"
exit $status
