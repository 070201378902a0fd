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
*"RMSE vs /truth"*) ;;
*) echo "FAIL: no RMSE line"; echo "0 passed, 1 failed"; exit 1 ;;
esac

# examples/file_to_png.py: a scan to a PNG, plain and denoised with the
# shipped CT model (CLARA_RECON_MODELS points at models/ in make check).
png_ok() { # FILE [WIDTH HEIGHT]: the signature and the IHDR size
  "$PYTHON" - "$@" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
ok = data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
w, h = struct.unpack(">II", data[16:24]) if ok else (0, 0)
want = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 2 else (w, h)
sys.exit(0 if ok and (w, h) == want and w > 0 else 1)
PY
}
cols=$("$PYTHON" -c "import h5py,sys; print(h5py.File(sys.argv[1])['/ct/projections'].shape[2])" "$dir/scan.h5" 2>/dev/null) || cols=
for extra in "" "--denoise ct"; do
  # shellcheck disable=SC2086
  out=$(PYTHONPATH="$top_srcdir/bindings/python" "$PYTHON" \
    "$top_srcdir/examples/file_to_png.py" "$dir/scan.h5" "$dir/out.png" \
    $extra) || { echo "FAIL: file_to_png.py $extra"; exit 1; }
  echo "$out"
  # shellcheck disable=SC2086
  png_ok "$dir/out.png" $cols $cols || { echo "FAIL: bad PNG"; exit 1; }
  rm -f "$dir/out.png"
done
echo "3 passed, 0 failed"
