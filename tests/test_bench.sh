#!/bin/sh
# test_bench.sh -- the benchmark tool bench/clara-recon-bench runs, checks
# its arguments and reports what it measured: every mode at a small size,
# its JSON read back with Python, the accuracy figures it prints checked
# against bounds (FBP error against the phantom; the denoiser's output
# against PyTorch's when the peer's modules are installed), and its usage
# errors. No timing is judged here: timings belong in bench/RESULTS.md.
#
# Run by `make check` (which exports top_builddir, top_srcdir and PYTHON);
# by hand: top_builddir=/path/to/build top_srcdir=. sh tests/test_bench.sh

: "${top_builddir:=.}"
: "${top_srcdir:=.}"
: "${PYTHON:=python3}"
BENCH="$top_builddir/bench/clara-recon-bench"
if [ ! -x "$BENCH" ]; then
  echo "FAIL: $BENCH is not built"
  exit 1
fi
# PYTHON=no (the sanitizer build) still leaves python3 to read the reports.
"$PYTHON" -c 'import json' 2>/dev/null || PYTHON=python3
if ! "$PYTHON" -c 'import json' 2>/dev/null; then
  echo "SKIP: no Python ($PYTHON) to read the JSON reports"
  exit 77
fi

mkdir -p "$top_builddir/tests" || exit 99
WORK=$(mktemp -d "$top_builddir/tests/tmp-bench.XXXXXX") || exit 99
trap 'rm -rf "$WORK"' EXIT
trap 'exit 1' HUP INT TERM

passed=0
failed=0
pass() {
  passed=$((passed + 1))
  printf 'PASS: %s\n' "$1"
}
fail() {
  failed=$((failed + 1))
  printf 'FAIL: %s\n' "$1"
  sed 's/^/    | /' "$WORK/stdout" "$WORK/stderr"
}

# run NAME EXPECTED-STATUS ARGS...: runs the tool, output in $WORK.
run() {
  name=$1
  want=$2
  shift 2
  "$BENCH" "$@" >"$WORK/stdout" 2>"$WORK/stderr"
  got=$?
  if [ "$got" -ne "$want" ]; then
    fail "$name: exit status $got, expected $want"
    return 1
  fi
  return 0
}

# check NAME PYTHON-EXPRESSION: the expression, over the JSON object 'r'
# printed by the last run, must be true.
check() {
  if "$PYTHON" - "$WORK/stdout" "$2" <<'EOF' >"$WORK/check" 2>&1; then
import json, math, sys
r = json.load(open(sys.argv[1]))
ok = eval(sys.argv[2], {"math": math}, {"r": r})
print(json.dumps(r))
sys.exit(0 if ok else 1)
EOF
    pass "$1"
  else
    cat "$WORK/check" >>"$WORK/stderr"
    fail "$1: not true: $2"
  fi
}

export CLARA_RECON_MODELS="$top_srcdir/models"
export CLARA_RECON_PEERS="$top_srcdir/bench/peers"
MODEL="$top_srcdir/models/ct-denoise.h5"

# ---- FBP and FDK --------------------------------------------------------
for g in parallel fan-flat fan-arc; do
  if run "fbp $g" 0 fbp --geometry "$g" --size 64 --views 120 --repeat 1 \
    --threads 2 --json; then
    check "fbp $g: JSON report, error against the phantom < 0.06" \
      "r['geometry'] == '$g' and r['nx'] == 64 and r['repeat'] == 1 and \
       r['median_ms'] > 0 and 0 < r['rmse'] < 0.06 and r['rmse_voxels'] > 0"
  fi
done
if run "fdk" 0 fbp --geometry cone --size 32 --views 90 --repeat 1 --json; then
  check "fdk: JSON report, error against the phantom < 0.1" \
    "r['geometry'] == 'cone' and r['nz'] == 32 and 0 < r['rmse'] < 0.1"
fi
if run "fbp text report" 0 fbp --size 48 --views 60 --repeat 2; then
  if grep -q "median" "$WORK/stdout"; then
    pass "fbp text report names the median"
  else
    fail "fbp text report names the median"
  fi
fi

# ---- MRI ----------------------------------------------------------------
if run "mr" 0 mr --size 48,40 --coils 3 --slices 2 --repeat 1 --json; then
  check "mr: JSON report" \
    "r['mode'] == 'mr' and r['nx'] == 48 and r['coils'] == 3 and \
     r['slices'] == 2 and r['slices_per_s'] > 0 and r['image_mean'] > 0"
fi

# ---- Denoising ----------------------------------------------------------
if run "denoise --no-peer" 0 denoise --model "$MODEL" --size 64 --batch 2 \
  --repeat 1 --threads 2 --no-peer --json; then
  check "denoise: JSON report of the shipped CT model" \
    "r['mode'] == 'denoise' and r['layers'] == 10 and r['batch'] == 2 and \
     r['backend'] == 'cpu' and r['precision'] == 'fp32' and \
     r['median_ms'] > 0 and r['peer'] is None"
fi
for k in portable avx2 avx512; do
  # Every kernel set this CPU runs (others fall back to the best one).
  if CLARA_RECON_CPU_KERNELS=$k run "denoise $k kernels" 0 denoise \
    --model "$MODEL" --size 40 --repeat 1 --no-peer --json; then
    check "denoise $k kernels: JSON report" "r['median_ms'] > 0"
  fi
done

if "$PYTHON" -c 'import torch, h5py, numpy' 2>/dev/null; then
  if run "denoise with the PyTorch peer" 0 denoise --model "$MODEL" \
    --size 64 --repeat 1 --threads 2 --json; then
    check "denoise: output matches PyTorch's (rel L2 < 1e-5)" \
      "r['peer_status'] == 0 and r['peer']['threads'] == 2 and \
       r['peer']['device'] == 'cpu' and r['peer']['rel_l2'] < 1e-5 and \
       r['peer']['max_rel_diff'] < 1e-4 and r['speedup_vs_peer'] > 0"
  fi
else
  if run "denoise, peer without torch" 0 denoise --model "$MODEL" --size 32 \
    --repeat 1 --json; then
    check "denoise: the peer reports its missing modules (77)" \
      "r['peer_status'] == 77 and r['speedup_vs_peer'] is None"
  fi
  echo "SKIP: the comparison with PyTorch (torch, h5py or numpy missing)"
fi

# The SGEMM-based convolutions of bench/openblas_denoise (built when
# ./configure finds OpenBLAS) are an independent implementation of the
# same network: the two must agree.
OB="$top_builddir/bench/openblas_denoise"
if [ -x "$OB" ]; then
  if "$OB" --model "$MODEL" --size 37 --batch 2 --threads 2 --repeat 1 \
    --json >"$WORK/stdout" 2>"$WORK/stderr"; then
    check "openblas_denoise: both SGEMM ways agree with the library (rel L2 < 1e-5)" \
      "r['im2col_rel_l2'] < 1e-5 and r['shifted_rel_l2'] < 1e-5 and \
       r['im2col_max_rel_diff'] < 1e-4 and r['shifted_max_rel_diff'] < 1e-4 \
       and r['ours_ms'] > 0"
  else
    fail "openblas_denoise ran"
  fi
  if "$OB" --model "$top_srcdir/models/mr-denoise.h5" --size 32 \
    >"$WORK/stdout" 2>"$WORK/stderr"; then
    fail "openblas_denoise refuses the percentile-normalised MR model"
  elif [ $? -eq 77 ] && grep -q "fixed" "$WORK/stderr"; then
    pass "openblas_denoise refuses the percentile-normalised MR model (77)"
  else
    fail "openblas_denoise refuses the percentile-normalised MR model (77)"
  fi
else
  echo "SKIP: bench/openblas_denoise is not built (OpenBLAS not found)"
fi

# ---- Bad arguments ------------------------------------------------------
run "fbp --size 0" 2 fbp --size 0 && pass "fbp --size 0 is a usage error"
run "fbp --geometry helix" 2 fbp --geometry helix &&
  pass "fbp unknown geometry is a usage error"
run "mr --coils -1" 2 mr --coils -1 && pass "mr --coils -1 is a usage error"
run "denoise without --model" 2 denoise --size 64 &&
  pass "denoise without --model is a usage error"
run "denoise --precision fp8" 2 denoise --model "$MODEL" --precision fp8 &&
  pass "denoise unknown precision is a usage error"
run "denoise --peer-precision bf16" 2 denoise --model "$MODEL" \
  --peer-precision bf16 && pass "denoise unknown peer precision is a usage error"
if run "denoise missing model" 1 denoise --model "$WORK/none.h5" --no-peer; then
  if grep -q "none.h5" "$WORK/stderr"; then
    pass "denoise: a missing model file is named in the error"
  else
    fail "denoise: a missing model file is named in the error"
  fi
fi
if run "denoise fp16 on the CPU" 1 denoise --model "$MODEL" --backend cpu \
  --precision fp16 --no-peer; then
  if grep -q "FP16\|fp16" "$WORK/stderr"; then
    pass "denoise: FP16 on the CPU is refused with the reason"
  else
    fail "denoise: FP16 on the CPU is refused with the reason"
  fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
