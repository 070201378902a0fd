#!/bin/sh
# Runs examples/recon_file.py on a scan made by the command-line tool (the C
# example, examples/fbp_slices, is a test program of its own).
: "${top_builddir:=.}" "${top_srcdir:=.}" "${PYTHON:=python3}"
"$PYTHON" -c "import numpy" 2>/dev/null || {
  echo "test_examples: numpy is missing"
  exit 77
}
dir=$(mktemp -d "${top_builddir}/tests/tmp-examples.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
"$top_builddir/src/tools/clara-recon" phantom ct --geometry fan-flat \
  --size 64 --views 180 -o "$dir/scan.h5" >/dev/null || exit 1
out=$(PYTHONPATH="$top_srcdir/bindings/python" "$PYTHON" \
  "$top_srcdir/examples/recon_file.py" "$dir/scan.h5" "$dir/recon.h5") || exit 1
echo "$out"
[ -f "$dir/recon.h5" ] || { echo "FAIL: no recon.h5"; exit 1; }
case "$out" in
*"RMSE vs /truth"*) echo "1 passed, 0 failed" ;;
*) echo "FAIL: no RMSE line"; echo "0 passed, 1 failed"; exit 1 ;;
esac
