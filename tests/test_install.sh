#!/bin/sh
# test_install.sh -- the installed library as a user gets it: `make install`
# into a staging directory, `pip install ./bindings/python` against it, and
# then Python finds the installed library without CLARA_RECON_LIB (through
# the loader path), loads the installed shipped models, and reports a
# missing library clearly.
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=.}"
if [ -z "${PYTHON:-}" ] || [ "$PYTHON" = no ] || [ "$PYTHON" = : ]; then
  PYTHON=python3
fi
"$PYTHON" -c 'import numpy, setuptools' >/dev/null 2>&1 || {
  echo "test_install: $PYTHON lacks numpy or setuptools; skipping"
  exit 77
}
"$PYTHON" -m pip --version >/dev/null 2>&1 || {
  echo "test_install: pip is missing; skipping"
  exit 77
}
top_builddir=$(cd "$top_builddir" && pwd)
dir=$(mktemp -d "$top_builddir/tests/tmp-install.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok: $1"; }
bad() { fail=$((fail + 1)); echo "FAIL: $1"; }

env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL ${MAKE:-make} -s -C "$top_builddir" install \
  DESTDIR="$dir/root" \
  >"$dir/install.log" 2>&1 || { cat "$dir/install.log"; exit 1; }
libdir=$(find "$dir/root" -name 'libclara-recon.so.0' -print | head -n 1)
models=$(find "$dir/root" -name 'ct-denoise.h5' -print | head -n 1)
[ -n "$libdir" ] && ok "the library is installed" || bad "no installed library"
[ -n "$models" ] && ok "the models are installed" || bad "no installed models"
[ -n "$(find "$dir/root" -name clara_recon.h)" ] && ok "the header is installed" ||
  bad "no installed header"
libdir=$(dirname "$libdir")

# The package from a copy (the source tree may be read-only), without
# network access: the local setuptools builds it.
cp -R "$top_srcdir/bindings/python" "$dir/pysrc"
chmod -R u+w "$dir/pysrc"
"$PYTHON" -m pip install -q --no-deps --no-build-isolation --no-index \
  --disable-pip-version-check --target "$dir/site" "$dir/pysrc" \
  >"$dir/pip.log" 2>&1 && ok "pip install ./bindings/python" ||
  { cat "$dir/pip.log"; bad "pip install"; }

out=$(cd "$dir" && env -u CLARA_RECON_LIB PYTHONPATH="$dir/site" \
  LD_LIBRARY_PATH="$libdir" CLARA_RECON_MODELS="$(dirname "$models")" \
  "$PYTHON" -c '
import numpy as np, clara_recon as cr
print("version", cr.version())
img = np.full((32, 32), 40.0, dtype=np.float32)
with cr.Denoiser.shipped("ct") as d:
    out = d.denoise(img)
print("denoised", out.shape, out.dtype, d.info.modality)
' 2>&1)
case "$out" in
*"denoised (32, 32) float32 ct"*) ok "installed library and models from Python" ;;
*) echo "$out"; bad "installed library and models from Python" ;;
esac

out=$(cd "$dir" && env CLARA_RECON_LIB="$dir/nonexistent.so" \
  PYTHONPATH="$dir/site" "$PYTHON" -c 'import clara_recon as cr; cr.version()' 2>&1)
case "$out" in
*nonexistent.so*) ok "a missing library is named in the error" ;;
*) echo "$out"; bad "a missing library is named in the error" ;;
esac

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
