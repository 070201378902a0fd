#!/bin/sh
# run.sh -- runs the CUDA tests against an emulation plugin (README.md).
# Called by `make check-cuda-emu`: PLUGIN MODELS-DIR TEST...; the
# caller's environment (sanitizer options) is passed on, and
# CUDA_EMU_PRELOAD, if set, becomes the tests' LD_PRELOAD (only theirs; one
# path, or several separated by colons).
plugin=$1
models=$2
shift 2
for t in "$@"; do
  echo "== $t against the emulated CUDA runtime"
  if env ${CUDA_EMU_PRELOAD:+LD_PRELOAD="$CUDA_EMU_PRELOAD"} \
    CLARA_RECON_CUDA_PLUGIN="$plugin" CLARA_TEST_CUDA_EMULATION=1 \
    CLARA_RECON_MODELS="$models" "./$t" >"$t-emu.log" 2>&1; then
    tail -1 "$t-emu.log"
    echo "PASS: $t (emulated CUDA)"
  else
    tail -40 "$t-emu.log"
    echo "FAIL: $t (emulated CUDA; the log is $t-emu.log)"
    exit 1
  fi
done
