#!/bin/sh
# test_bad_inputs.sh -- the command-line cases of the bad-input catalogue
# (tests/bad_inputs/cases.txt, surface "cli"; the api and file cases are run
# by tests/test_bad_inputs).
#
# For each case: the input named in the maker column is made at @IN@ by
# `tests/test_bad_inputs --make MAKER PATH` (C and HDF5, no Python), the
# tool runs with the case's arguments, and the check is that it exits with
# the expected status, that stderr contains the fragment, and that the
# case's output directory is left empty (no target, no *.tmp* sibling).
# Arguments starting with "fsize=N" run under `ulimit -f N` (blocks of 512
# bytes) with SIGXFSZ ignored, so that writes fail with EFBIG: a full disk.
# One line per case; the last is "N passed, M failed".

: "${top_builddir:=.}"
: "${top_srcdir:=.}"
TOOL="$top_builddir/src/tools/clara-recon"
MAKE="$top_builddir/tests/test_bad_inputs"
CASES="${1:-$top_srcdir/tests/bad_inputs/cases.txt}"
for f in "$TOOL" "$MAKE"; do
  if [ ! -x "$f" ]; then
    echo "FAIL: $f is not built"
    exit 1
  fi
done
[ -r "$CASES" ] || { echo "FAIL: cannot read $CASES"; exit 1; }

mkdir -p "$top_builddir/tests" || exit 99
WORK=$(mktemp -d "$top_builddir/tests/tmp-bad-inputs.XXXXXX") || exit 99
trap 'rm -rf "$WORK"' EXIT
trap 'exit 1' HUP INT TERM

# Models shared by the cases: an MR model and a CT model of an unknown
# format version.
"$MAKE" --make model-mr "$WORK/mr-model.h5" &&
  "$MAKE" --make model-version-99 "$WORK/bad-model.h5" || exit 99

passed=0
failed=0
trim() { printf '%s' "$1" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//'; }

while IFS='|' read -r id surface maker want fragment args; do
  id=$(trim "$id")
  case "$id" in '' | '#'*) continue ;; esac
  [ "$(trim "$surface")" = cli ] || continue
  maker=$(trim "$maker")
  want=$(trim "$want")
  fragment=$(trim "$fragment")
  args=$(trim "$args")
  dir="$WORK/$id"
  mkdir -p "$dir/in" "$dir/out" || exit 99
  in="$dir/in/input.h5"
  if [ "$maker" != - ]; then
    if ! "$MAKE" --make "$maker" "$in" >"$dir/make.log" 2>&1; then
      failed=$((failed + 1))
      echo "FAIL $id: cannot make input '$maker': $(cat "$dir/make.log")"
      continue
    fi
  fi
  fsize=
  case "$args" in
  fsize=*)
    fsize=${args%% *}
    fsize=${fsize#fsize=}
    args=${args#* }
    ;;
  esac
  # Placeholders; the arguments hold no spaces of their own, so word
  # splitting of $args is what we want.
  args=$(printf '%s' "$args" | sed -e "s|@IN@|$in|g" -e "s|@OUT@|$dir/out/out.h5|g" \
    -e "s|@MRMODEL@|$WORK/mr-model.h5|g" -e "s|@BADMODEL@|$WORK/bad-model.h5|g")
  # The output placeholder of a missing directory: @OUT@/missing/x.h5.
  args=$(printf '%s' "$args" | sed "s|$dir/out/out.h5/missing|$dir/out/missing|g")
  if [ -n "$fsize" ]; then
    # shellcheck disable=SC2086
    (trap '' XFSZ; ulimit -f "$fsize" && exec "$TOOL" $args) \
      >"$dir/stdout" 2>"$dir/stderr"
    rc=$?
  else
    # shellcheck disable=SC2086
    "$TOOL" $args >"$dir/stdout" 2>"$dir/stderr"
    rc=$?
  fi
  left=$(ls -A "$dir/out")
  wrc=${want#exit }
  if [ "$rc" != "$wrc" ]; then
    failed=$((failed + 1))
    echo "FAIL $id: exit status $rc, expected $wrc"
    sed 's/^/    | /' "$dir/stderr" | head -5
  elif ! grep -F -q -e "$fragment" "$dir/stderr" "$dir/stdout"; then
    failed=$((failed + 1))
    echo "FAIL $id: output lacks '$fragment'"
    sed 's/^/    | /' "$dir/stderr" | head -5
  elif [ -n "$left" ]; then
    failed=$((failed + 1))
    echo "FAIL $id: left in the output directory: $left"
  else
    passed=$((passed + 1))
    echo "PASS $id: exit $rc \"$(head -c 200 "$dir/stderr" | tr '\n' ' ')\""
  fi
done <"$CASES"

echo "$passed passed, $failed failed (cli cases of $CASES)"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
