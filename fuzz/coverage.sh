#!/bin/sh
# fuzz/coverage.sh -- line coverage of the parsers reached by a corpus:
# builds a target with fuzz_main.c and clang's source-based coverage (no
# sanitizers), replays the directories given, and prints llvm-cov's report
# for the parser files. Same environment as fuzz.sh (srcdir, builddir,
# FUZZ_LIB_SOURCES, FUZZ_DEP_CFLAGS, FUZZ_DEP_LIBS, FUZZ_CC).
#   fuzz/coverage.sh fuzz_mr_file DIR...
set -eu
t=$1
shift
CC=${FUZZ_CC:-clang}
srcdir=$(cd "${srcdir:-.}" && pwd)
OUT=${builddir:-.}/fuzz/build/cov
mkdir -p "$OUT/obj"
CF="-g -O1 -std=c11 -D_GNU_SOURCE -fprofile-instr-generate -fcoverage-mapping -I$srcdir/include -I$srcdir/src/core -I$srcdir/src/nn -DCLARA_RECON_BUILDING -DCLARA_NO_CLONES -DCLARA_MODELDIR=\"/nonexistent\" ${FUZZ_DEP_CFLAGS:-}"
objs=
for s in ${FUZZ_LIB_SOURCES:-}; do
  case $s in *.c) ;; *) continue ;; esac
  o=$OUT/obj/$(echo "$s" | tr / _ | sed 's/\.c$/.o/')
  objs="$objs $o"
  [ -f "$o" ] && [ "$o" -nt "$srcdir/$s" ] || "$CC" $CF -c "$srcdir/$s" -o "$o"
done
"$CC" $CF -DFUZZ_TARGET_NAME="\"$t\"" -I"$srcdir/fuzz" -I"$srcdir/src/tools" \
  "$srcdir/fuzz/$t.c" "$srcdir/fuzz/fuzz_main.c" $objs \
  ${FUZZ_DEP_LIBS:-} -lpthread -ldl -lm -o "$OUT/$t"
rm -f "$OUT/$t.profraw"
LLVM_PROFILE_FILE="$OUT/$t.profraw" "$OUT/$t" "$@" >/dev/null 2>&1 || true
llvm-profdata merge -sparse "$OUT/$t.profraw" -o "$OUT/$t.profdata"
case $t in
  fuzz_ct_file) files="src/io/ct_file.c src/io/h5read.c" ;;
  fuzz_mr_file | fuzz_mr_struct) files="src/io/mr_file.c src/io/h5read.c" ;;
  fuzz_model_file) files="src/io/model_file.c src/io/h5read.c" ;;
  fuzz_cli) files="src/tools/clara-recon.c" ;;
  *) files= ;;
esac
llvm-cov report "$OUT/$t" -instr-profile="$OUT/$t.profdata" \
  $(for f in $files; do echo "$srcdir/$f"; done)
