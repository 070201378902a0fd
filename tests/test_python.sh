#!/bin/sh
# test_python.sh -- runs the pytest suite of the Python bindings
# (bindings/python/tests) against the library just built.
#
# make check exports PYTHON, top_srcdir, top_builddir and CLARA_RECON_LIB
# (the absolute path of the built libclara-recon.so). Exit status: 77
# (skipped) when Python, numpy or pytest is missing, else pytest's own
# status (0 passed, nonzero failed).

: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=.}"
if [ -z "${PYTHON:-}" ] || [ "$PYTHON" = no ] || [ "$PYTHON" = : ]; then
  PYTHON=python3
fi

if ! "$PYTHON" -c 'import numpy, pytest' >/dev/null 2>&1; then
  echo "test_python.sh: $PYTHON lacks numpy or pytest; skipping" >&2
  exit 77
fi

if [ -z "${CLARA_RECON_LIB:-}" ]; then
  CLARA_RECON_LIB=$top_builddir/src/.libs/libclara-recon.so
fi
if [ ! -f "$CLARA_RECON_LIB" ]; then
  echo "test_python.sh: library not found: CLARA_RECON_LIB=$CLARA_RECON_LIB" >&2
  exit 1
fi
export CLARA_RECON_LIB

PYTHONPATH=$top_srcdir/bindings/python${PYTHONPATH:+:$PYTHONPATH}
export PYTHONPATH
# The source tree may be read-only (make distcheck): no bytecode, no cache.
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE

"$PYTHON" -m pytest -q -p no:cacheprovider "$top_srcdir/bindings/python/tests"
exit $?
