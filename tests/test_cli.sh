#!/bin/sh
# test_cli.sh -- end-to-end tests of the clara-recon command-line tool.
#
# Run by `make check` (which exports top_builddir and top_srcdir); by hand:
#   top_builddir=/path/to/build sh tests/test_cli.sh
# Every check prints PASS or FAIL; the last line is "N passed, M failed" and
# the exit status is 1 when anything failed.

: "${top_builddir:=.}"
TOOL="$top_builddir/src/tools/clara-recon"
if [ ! -x "$TOOL" ]; then
  echo "FAIL: $TOOL is not built"
  echo "0 passed, 1 failed"
  exit 1
fi

mkdir -p "$top_builddir/tests" || exit 99
WORK=$(mktemp -d "$top_builddir/tests/tmp-cli.XXXXXX") || exit 99
trap 'rm -rf "$WORK"' EXIT
trap 'exit 1' HUP INT TERM

passed=0
failed=0
rc=0

pass() {
  passed=$((passed + 1))
  printf 'PASS: %s\n' "$1"
}

fail() {
  failed=$((failed + 1))
  printf 'FAIL: %s\n' "$1"
}

# Shows the captured output of the last run, indented.
show() {
  sed 's/^/    | /' "$WORK/stdout" "$WORK/stderr"
}

# run ARGS...: runs the tool; stdout, stderr and the exit status go to
# $WORK/stdout, $WORK/stderr and $rc.
run() {
  "$TOOL" "$@" >"$WORK/stdout" 2>"$WORK/stderr"
  rc=$?
}

# run_models DIR ARGS...: run with CLARA_RECON_MODELS=DIR (the directory of
# the shipped denoising models).
run_models() {
  models_dir=$1
  shift
  CLARA_RECON_MODELS=$models_dir "$TOOL" "$@" >"$WORK/stdout" 2>"$WORK/stderr"
  rc=$?
}

# expect_rc NAME WANT: the last run exited with WANT.
expect_rc() {
  if [ "$rc" -eq "$2" ]; then
    pass "$1 (exit $2)"
  else
    fail "$1: exit status $rc, expected $2"
    show
  fi
}

# expect_stderr NAME TEXT: the last run's stderr contains TEXT.
expect_stderr() {
  if grep -F -q -e "$2" "$WORK/stderr"; then
    pass "$1 (stderr mentions '$2')"
  else
    fail "$1: stderr does not mention '$2'"
    show
  fi
}

# expect_stdout NAME TEXT: the last run's stdout contains TEXT.
expect_stdout() {
  if grep -F -q -e "$2" "$WORK/stdout"; then
    pass "$1 (stdout has '$2')"
  else
    fail "$1: stdout lacks '$2'"
    show
  fi
}

# expect_file NAME PATH / expect_no_file NAME PATH
expect_file() {
  if [ -s "$2" ]; then
    pass "$1 (wrote $(basename "$2"))"
  else
    fail "$1: $2 was not written"
  fi
}

expect_no_file() {
  if [ -e "$2" ]; then
    fail "$1: $2 exists but should not"
  else
    pass "$1 (no $(basename "$2") left)"
  fi
}

# expect_rmse NAME BOUND: the last run (info --compare) printed
# "rmse VALUE" with 0 < VALUE < BOUND.
expect_rmse() {
  value=$(awk '$1 == "rmse" { print $2 }' "$WORK/stdout")
  if [ -z "$value" ]; then
    fail "$1: no 'rmse' line"
    show
  elif echo "$value" | grep -q '^[0-9.eE+-][0-9.eE+-]*$' &&
    awk -v v="$value" -v b="$2" 'BEGIN { exit !(v + 0 > 0 && v + 0 < b + 0) }'; then
    pass "$1 (rmse $value < $2)"
  else
    fail "$1: rmse $value, expected above 0 and below $2"
  fi
}

echo "clara-recon: $TOOL"
echo "work dir: $WORK"

# ---- Basics -------------------------------------------------------------------
run --version
expect_rc "--version" 0
expect_stdout "--version" "clara-recon 0."
for cmd in phantom ct info demo; do
  run "$cmd" --help
  expect_rc "$cmd --help" 0
  expect_stdout "$cmd --help" "Usage: clara-recon $cmd"
done

# ---- phantom ct -> ct -> info, for each geometry ----------------------------
# The bounds are 1.5x the RMSE measured over the whole grid (64 x 64, 90
# views; cone 32^3 from 32 x 48 detector rows x cols): parallel 6.1e-4,
# fan-flat 9.4e-4, fan-arc 1.22e-3, cone 6.5e-4 (1/mm; the phantom spans
# 0 to 0.02).
for case in parallel:0.0009 fan-flat:0.0014 fan-arc:0.0019 cone:0.001; do
  geom=${case%%:*}
  bound=${case#*:}
  in="$WORK/$geom.h5"
  out="$WORK/$geom-recon.h5"
  if [ "$geom" = cone ]; then
    run phantom ct --geometry "$geom" --size 32 --rows 32 --views 90 -o "$in"
  else
    run phantom ct --geometry "$geom" --size 64 --views 90 -o "$in"
  fi
  expect_rc "phantom ct --geometry $geom" 0
  expect_file "phantom ct --geometry $geom" "$in"

  run ct "$in" -o "$out"
  expect_rc "ct $geom" 0
  expect_file "ct $geom" "$out"
  expect_stdout "ct $geom summary" "wrote $out"

  run info "$in"
  expect_rc "info $geom input" 0
  expect_stdout "info $geom input" "/ct: $geom scan"
  expect_stdout "info $geom input" "/truth:"

  run info "$out"
  expect_rc "info $geom output" 0
  expect_stdout "info $geom output" "/image:"
  expect_stdout "info $geom output" "1/mm"

  run info "$out" --compare "$in"
  expect_rc "info --compare $geom" 0
  expect_rmse "$geom reconstruction vs truth" "$bound"
done

# Quiet mode prints nothing; --hu writes Hounsfield units.
run ct "$WORK/parallel.h5" -o "$WORK/hu.h5" --hu --quiet
expect_rc "ct --hu --quiet" 0
if [ -s "$WORK/stdout" ]; then
  fail "ct --quiet printed to stdout"
  show
else
  pass "ct --quiet prints nothing"
fi
run info "$WORK/hu.h5"
expect_stdout "ct --hu" "units         HU"
# comparing HU with a truth in 1/mm is refused
run info "$WORK/hu.h5" --compare "$WORK/parallel.h5"
expect_rc "info --compare of HU against 1/mm" 1

# A stack of 2D sinograms reconstructs into as many slices.
run phantom ct --geometry fan-flat --size 32 --views 60 --rows 3 -o "$WORK/stack.h5"
expect_rc "phantom ct --rows 3" 0
run ct "$WORK/stack.h5" -o "$WORK/stack-recon.h5" --filter hann --cutoff 0.8 --threads 1
expect_rc "ct of a 3-row stack with --filter hann" 0
run info "$WORK/stack-recon.h5"
expect_stdout "3-row stack" "/image: 32 x 32 x 3 voxels"

# --size / --voxel override the grid.
run ct "$WORK/parallel.h5" -o "$WORK/grid.h5" --size 40 --voxel 2 -q
expect_rc "ct --size 40 --voxel 2" 0
run info "$WORK/grid.h5"
expect_stdout "ct --size 40 --voxel 2" "/image: 40 x 40 x 1 voxels"
expect_stdout "ct --size 40 --voxel 2" "voxel size    2 x 2"

# Noise: reproducible with the seed, and it costs some accuracy.
run phantom ct --geometry parallel --size 64 --views 90 --noise 1e4 --seed 5 -o "$WORK/noisy1.h5"
expect_rc "phantom ct --noise" 0
run phantom ct --geometry parallel --size 64 --views 90 --noise 1e4 --seed 5 -o "$WORK/noisy2.h5"
run ct "$WORK/noisy1.h5" -o "$WORK/noisy-recon.h5" -q
run info "$WORK/noisy-recon.h5" --compare "$WORK/noisy1.h5"
# measured 6.8e-4 (6.1e-4 without noise)
expect_rmse "noisy (I0 1e4) reconstruction vs truth" 0.001
# the projection statistics that info prints stand in for the data
run info "$WORK/noisy1.h5"
grep projections "$WORK/stdout" >"$WORK/info-noisy1"
run info "$WORK/noisy2.h5"
grep projections "$WORK/stdout" >"$WORK/info-noisy2"
if cmp -s "$WORK/info-noisy2" "$WORK/info-noisy1"; then
  pass "--noise with the same --seed gives the same data"
else
  fail "--noise with the same --seed gives different data"
fi
run phantom ct --geometry parallel --size 64 --views 90 --noise 1e4 --seed 6 -o "$WORK/noisy3.h5"
run info "$WORK/noisy3.h5"
grep projections "$WORK/stdout" >"$WORK/info-noisy3"
if cmp -s "$WORK/info-noisy3" "$WORK/info-noisy1"; then
  fail "--noise with another --seed gives the same data"
else
  pass "--noise with another --seed gives other data"
fi

# ---- demo -----------------------------------------------------------------------
mkdir "$WORK/demo"
(cd "$WORK/demo" && "$TOOL" demo >"$WORK/stdout" 2>"$WORK/stderr")
rc=$?
expect_rc "demo in the current directory" 0
expect_stdout "demo" "RMSE vs phantom"
expect_file "demo" "$WORK/demo/demo-ct.h5"
expect_file "demo" "$WORK/demo/demo-recon.h5"
run info "$WORK/demo/demo-recon.h5" --compare "$WORK/demo/demo-ct.h5"
# measured 3.0e-4 over the whole 256 x 256 grid
expect_rmse "demo reconstruction vs truth" 0.00045
run demo -o "$WORK/demo2" --size 32
expect_rc "demo -o DIR --size 32" 0
expect_file "demo -o DIR" "$WORK/demo2/demo-recon.h5"

# ---- Bad input ------------------------------------------------------------------
run ct "$WORK/does-not-exist.h5" -o "$WORK/x.h5"
expect_rc "ct of a nonexistent file" 1
expect_stderr "ct of a nonexistent file" "$WORK/does-not-exist.h5"
expect_no_file "ct of a nonexistent file" "$WORK/x.h5"

echo "this is not HDF5" >"$WORK/text.h5"
run ct "$WORK/text.h5" -o "$WORK/x.h5"
expect_rc "ct of a text file" 1
expect_stderr "ct of a text file" "ERR_IO"
run info "$WORK/text.h5"
expect_rc "info of a text file" 1
: >"$WORK/empty.h5"
run info "$WORK/empty.h5"
expect_rc "info of an empty file" 1
head -c 2000 "$WORK/parallel.h5" >"$WORK/truncated.h5"
run info "$WORK/truncated.h5"
expect_rc "info of a truncated HDF5 file" 1
run info "$WORK/does-not-exist.h5"
expect_rc "info of a nonexistent file" 1

# an image file is HDF5 but not a CT input file
run ct "$WORK/parallel-recon.h5" -o "$WORK/x.h5"
expect_rc "ct of an image file" 1
expect_stderr "ct of an image file" "ERR_FORMAT"
expect_stderr "ct of an image file" "/ct"

run frobnicate
expect_rc "unknown subcommand" 2
expect_stderr "unknown subcommand" "frobnicate"
run
expect_rc "no subcommand" 2
run ct "$WORK/parallel.h5" -o "$WORK/x.h5" --no-such-option
expect_rc "unknown option" 2
expect_stderr "unknown option" "--no-such-option"

run phantom ct --geometry helix --size 16 --views 16 -o "$WORK/x.h5"
expect_rc "unknown geometry" 2
expect_stderr "unknown geometry" "helix"
for bad in -3 abc 99999999999 0 12x ""; do
  run phantom ct --geometry parallel --size "$bad" --views 16 -o "$WORK/x.h5"
  expect_rc "--size '$bad'" 2
done
run ct "$WORK/parallel.h5" -o "$WORK/x.h5" --cutoff 1.5
expect_rc "--cutoff 1.5" 2
run ct "$WORK/parallel.h5" -o "$WORK/x.h5" --size
expect_rc "--size without a value" 2
run phantom ct --geometry parallel --size 16 --views 16
expect_rc "phantom ct without -o" 2
run ct "$WORK/parallel.h5"
expect_rc "ct without -o" 2
run ct -o "$WORK/x.h5"
expect_rc "ct without an input" 2
expect_no_file "usage errors" "$WORK/x.h5"

run ct "$WORK/parallel.h5" -o "$WORK/missing-dir/out.h5"
expect_rc "ct into a missing directory" 1
expect_no_file "ct into a missing directory" "$WORK/missing-dir"
run phantom ct --geometry parallel --size 16 --views 16 -o "$WORK/missing-dir/p.h5"
expect_rc "phantom ct into a missing directory" 1
expect_no_file "phantom ct into a missing directory" "$WORK/missing-dir"

run ct "$WORK/parallel.h5" -o "$WORK/x.h5" --filter bogus-filter
expect_rc "unknown filter" 2
expect_stderr "unknown filter" "bogus-filter"

# a grid wider than the detector sees fails (in the library) unless allowed
run ct "$WORK/parallel.h5" -o "$WORK/x.h5" --size 300 --voxel 1
expect_rc "a grid beyond the field of view" 1
expect_stderr "a grid beyond the field of view" "ERR_INVALID_ARG"
expect_no_file "a grid beyond the field of view" "$WORK/x.h5"
run ct "$WORK/parallel.h5" -o "$WORK/x.h5" --size 300 --voxel 1 --allow-truncation
expect_rc "the same with --allow-truncation" 0

run ct "$WORK/parallel.h5" -o "$WORK/cuda.h5" --backend cuda
if [ "$rc" -eq 0 ]; then
  echo "SKIP: --backend cuda succeeded: this machine has a CUDA device"
else
  expect_rc "--backend cuda without a GPU" 1
  expect_stderr "--backend cuda without a GPU" "NO_DEVICE"
  expect_no_file "--backend cuda without a GPU" "$WORK/cuda.h5"
fi

# ---- MR: phantom mr -> mr ---------------------------------------------------

# value_of KEY FILE: the number after "KEY " in FILE (first match).
value_of() {
  sed -n "s/^$1 \([^ ]*\).*/\1/p" "$2" | head -n 1
}

# compare_rmse IMAGE TRUTH: prints the rmse from 'info --compare'.
compare_rmse() {
  "$TOOL" info "$1" --compare "$2" 2>/dev/null | sed -n 's/^rmse //p'
}

# expect_lt NAME A B: A < B (floating point).
expect_lt() {
  if [ -n "$2" ] && [ -n "$3" ] && awk -v a="$2" -v b="$3" 'BEGIN { exit !(a < b) }'; then
    pass "$1 ($2 < $3)"
  else
    fail "$1: '$2' is not below '$3'"
  fi
}

run phantom mr --size 96 --coils 6 --truth "$WORK/mr-truth.h5" -o "$WORK/mr.h5"
expect_rc "phantom mr" 0
expect_file "phantom mr" "$WORK/mr.h5"
expect_file "phantom mr --truth" "$WORK/mr-truth.h5"
run info "$WORK/mr.h5"
expect_rc "info on an ISMRMRD file" 0
expect_stdout "info on an ISMRMRD file" "MR raw data: ismrmrd, 1 dataset"
expect_stdout "info on an ISMRMRD file" "dataset 0: 6 coils, encoded 192 x 96 x 1 (x y z), recon x 96"
expect_stdout "info on an ISMRMRD file" "noise scans: none"

# measured at 96 x 96, 6 coils: rmse 0.045 (rss and adaptive) against a truth
# that reaches 1.9; the bound leaves room, not a free pass
for comb in rss adaptive; do
  run mr "$WORK/mr.h5" -o "$WORK/mr-$comb.h5" --combine $comb
  expect_rc "mr --combine $comb" 0
  expect_file "mr --combine $comb" "$WORK/mr-$comb.h5"
  expect_stdout "mr --combine $comb" "-> 96 x 96 x 1 ($comb,"
  expect_lt "mr --combine $comb matches the truth" \
    "$(compare_rmse "$WORK/mr-$comb.h5" "$WORK/mr-truth.h5")" 0.06
done

# partial Fourier 0.625: homodyne and POCS beat zero filling
run phantom mr --size 96 --coils 6 --partial-fourier 0.625 -o "$WORK/mr-pf.h5"
expect_rc "phantom mr --partial-fourier 0.625" 0
run info "$WORK/mr-pf.h5"
expect_stdout "partial Fourier lines" "sampled     ky 36..95"
for m in zero homodyne pocs; do
  run mr "$WORK/mr-pf.h5" -o "$WORK/mr-pf-$m.h5" --partial-fourier $m -q
  expect_rc "mr --partial-fourier $m" 0
done
pf_zero=$(compare_rmse "$WORK/mr-pf-zero.h5" "$WORK/mr-truth.h5")
pf_homo=$(compare_rmse "$WORK/mr-pf-homodyne.h5" "$WORK/mr-truth.h5")
pf_pocs=$(compare_rmse "$WORK/mr-pf-pocs.h5" "$WORK/mr-truth.h5")
echo "  partial Fourier 0.625 rmse: zero $pf_zero, homodyne $pf_homo, pocs $pf_pocs"
expect_lt "homodyne beats zero filling" "$pf_homo" "$pf_zero"
expect_lt "POCS beats zero filling" "$pf_pocs" "$pf_zero"

# noise scans -> pre-whitening; --norm none is sqrt(N) x ortho
run phantom mr --size 64 --coils 4 --noise 0.05 --seed 7 -o "$WORK/mr-noise.h5"
expect_rc "phantom mr --noise" 0
run info "$WORK/mr-noise.h5"
expect_stdout "noise scans in the file" "noise scans: 1024 samples per coil"
run mr "$WORK/mr-noise.h5" -o "$WORK/mr-noise-ortho.h5"
expect_rc "mr with noise whitening" 0
expect_stdout "mr with noise whitening" ", whitened;"
run mr "$WORK/mr-noise.h5" -o "$WORK/mr-noise-none.h5" --norm none --window hann --quiet
expect_rc "mr --norm none --window hann" 0
run mr "$WORK/mr-noise.h5" -o "$WORK/mr-noise-none.h5" --norm none --quiet
expect_rc "mr --norm none" 0
"$TOOL" info "$WORK/mr-noise-ortho.h5" >"$WORK/info-ortho" 2>&1
"$TOOL" info "$WORK/mr-noise-none.h5" >"$WORK/info-none" 2>&1
mean_o=$(sed -n 's/.*values.*mean \([^ ,]*\).*/\1/p' "$WORK/info-ortho")
mean_n=$(sed -n 's/.*values.*mean \([^ ,]*\).*/\1/p' "$WORK/info-none")
# N = 128 x 64 encoded samples: sqrt(N) = 90.5097
if [ -n "$mean_o" ] && [ -n "$mean_n" ] &&
  awk -v o="$mean_o" -v n="$mean_n" 'BEGIN { r = n / o / sqrt(128 * 64); exit !(r > 0.9999 && r < 1.0001) }'; then
  pass "--norm none is sqrt(N) x ortho (means $mean_n / $mean_o)"
else
  fail "--norm none vs ortho: means '$mean_n' / '$mean_o', expected a ratio of 90.51"
fi

# a fastMRI-like file made with numpy: reconstruction_rss from np.fft
PY=${PYTHON:-python3}
if [ "$PY" = no ] || ! "$PY" -c 'import h5py, numpy' >/dev/null 2>&1; then
  echo "SKIP: fastMRI reference check: python3 with h5py and numpy not found"
else
  "$PY" - "$WORK/fastmri.h5" <<'PYEOF'
import sys
import h5py
import numpy as np

rng = np.random.default_rng(5)
slices, coils, nx, ny = 2, 4, 64, 48  # [slices][coils][readout x][phase y]
yy, xx = np.meshgrid(np.arange(ny) - ny // 2, np.arange(nx) - nx // 2)
img = np.zeros((slices, coils, nx, ny), np.complex128)
for s in range(slices):
    for c in range(coils):
        obj = ((xx / 20.0) ** 2 + (yy / 16.0) ** 2 < 1) * (1.0 + 0.3 * s)
        ph = np.exp(1j * (0.05 * c * xx + 0.03 * yy))
        img[s, c] = obj * ph * (1 + 0.2 * c) + 0.01 * rng.standard_normal((nx, ny))
ax = (-2, -1)
k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(img, axes=ax), axes=ax, norm="ortho"), axes=ax)
k = k.astype(np.complex64)
rec = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=ax), axes=ax, norm="ortho"), axes=ax)
rss = np.sqrt((np.abs(rec) ** 2).sum(axis=1))
cx, cy = 32, 32
x0, y0 = (nx - cx) // 2, (ny - cy) // 2
rss = rss[:, x0:x0 + cx, y0:y0 + cy].astype(np.float32)
with h5py.File(sys.argv[1], "w") as f:
    f["kspace"] = k
    f["reconstruction_rss"] = rss
PYEOF
  if [ $? -ne 0 ]; then
    fail "writing the fastMRI-like file with numpy"
  else
    run info "$WORK/fastmri.h5"
    expect_rc "info on a fastMRI file" 0
    expect_stdout "info on a fastMRI file" "MR raw data: fastmri, 1 dataset"
    expect_stdout "info on a fastMRI file" "reference: reconstruction_rss, 32 x 32 x 2"
    nmse=$(value_of nmse "$WORK/stdout")
    psnr=$(value_of psnr "$WORK/stdout")
    echo "  fastMRI reference: nmse $nmse, psnr $psnr dB"
    expect_lt "fastMRI: RSS matches reconstruction_rss" "$nmse" 1e-6
    run mr "$WORK/fastmri.h5" -o "$WORK/fastmri-img.h5" --quiet
    expect_rc "mr on a fastMRI file" 0
  fi
fi

# bad MR input
run mr "$WORK/parallel.h5" -o "$WORK/mr-bad.h5"
expect_rc "mr on a CT file" 1
expect_stderr "mr on a CT file" "FORMAT"
expect_no_file "mr on a CT file" "$WORK/mr-bad.h5"
run mr "$WORK/mr.h5" -o "$WORK/mr-bad.h5" --combine bogus
expect_rc "unknown --combine" 2
expect_stderr "unknown --combine" "bogus"
run mr "$WORK/mr.h5" -o "$WORK/mr-bad.h5" --partial-fourier bogus
expect_rc "unknown --partial-fourier" 2
run mr "$WORK/mr.h5" -o "$WORK/mr-bad.h5" --norm bogus
expect_rc "unknown --norm" 2
run mr "$WORK/mr.h5" -o "$WORK/mr-bad.h5" --dataset 9
expect_rc "--dataset out of range" 1
expect_stderr "--dataset out of range" "dataset 9"
expect_no_file "--dataset out of range" "$WORK/mr-bad.h5"
run mr "$WORK/mr.h5" -o "$WORK/mr-bad.h5" --dataset 1x
expect_rc "--dataset not a number" 2
run mr -o "$WORK/mr-bad.h5"
expect_rc "mr without input" 2
run phantom mr --size 32 -o "$WORK/mr-bad.h5"
expect_rc "phantom mr without --coils" 2
run phantom mr --size 32 --coils 2 --partial-fourier 0.3 -o "$WORK/mr-bad.h5"
expect_rc "phantom mr --partial-fourier below 0.5" 2
expect_no_file "bad phantom mr" "$WORK/mr-bad.h5"

# ---- MRI: ISMRMRD round trip against the ISMRMRD reference recon -------------
# ismrmrd_generate_cartesian_shepp_logan writes a 64 x 64, 4-coil scan with
# 2x readout oversampling; ismrmrd_recon_cartesian_2d adds its magnitude RSS
# image (unnormalised FFT, oversampling cropped) as /dataset/cpp/data
# [1][1][1][64][64] (C order: [image][channel][z][y][x]), which equals our
# /image [slices][y][x] with no transpose or flip (the transposed and
# flipped images differ by NRMSE ~0.6..1).
PY=${PYTHON:-python3}
if ! command -v ismrmrd_generate_cartesian_shepp_logan >/dev/null 2>&1 ||
  ! command -v ismrmrd_recon_cartesian_2d >/dev/null 2>&1; then
  echo "SKIP: ISMRMRD round trip: ismrmrd-tools not installed"
elif [ "$PY" = no ] || ! "$PY" -c 'import h5py, numpy' >/dev/null 2>&1; then
  echo "SKIP: ISMRMRD round trip: python3 with h5py and numpy not found"
else
  (cd "$WORK" && ismrmrd_generate_cartesian_shepp_logan -m 64 -c 4 \
    -o ismrmrd-sl.h5 >ismrmrd-gen.log 2>&1 &&
    ismrmrd_recon_cartesian_2d ismrmrd-sl.h5 >ismrmrd-rec.log 2>&1)
  if [ $? -ne 0 ]; then
    fail "ISMRMRD tools: generating or reconstructing the phantom"
  else
    run mr "$WORK/ismrmrd-sl.h5" -o "$WORK/ismrmrd-ours.h5" --norm none \
      --combine rss --quiet
    expect_rc "mr on the ISMRMRD tools' phantom" 0
    nrmse=$("$PY" - "$WORK/ismrmrd-sl.h5" "$WORK/ismrmrd-ours.h5" <<'PYEOF'
import sys
import h5py
import numpy as np
with h5py.File(sys.argv[1], "r") as f:
    ref = f["dataset/cpp/data"][...].astype(np.float64)
with h5py.File(sys.argv[2], "r") as f:
    ours = f["image"][...].astype(np.float64)
ref = ref.reshape(ref.shape[-2:])
ours = ours.reshape(ours.shape[-2:])
print("%.3g" % (np.linalg.norm(ours - ref) / np.linalg.norm(ref)))
PYEOF
    )
    echo "  ISMRMRD reference recon: nrmse $nrmse"
    if [ -n "$nrmse" ] && awk -v v="$nrmse" 'BEGIN { exit !(v + 0 <= 1e-5) }'
    then
      pass "ISMRMRD round trip matches ismrmrd_recon_cartesian_2d (nrmse $nrmse <= 1e-5)"
    else
      fail "ISMRMRD round trip: nrmse '$nrmse', expected <= 1e-5"
    fi
  fi
fi

# ---- MRI: adaptive combine beats RSS at low SNR -------------------------------
# 64 x 64, 8 coils, k-space noise sigma 0.1 (pre-whitened from the noise
# scans, so the images come out in noise units: each is compared with the
# truth after its least-squares scale). SNR = mean of the scaled truth in
# the object / RMS error there. Measured: rss 2.2, adaptive 3.1 (ratio
# ~1.4, seeds 0 and 1); the check asks for a ratio >= 1.2.
if [ "$PY" = no ] || ! "$PY" -c 'import h5py, numpy' >/dev/null 2>&1; then
  echo "SKIP: adaptive vs RSS SNR: python3 with h5py and numpy not found"
else
  run phantom mr --size 64 --coils 8 --noise 0.1 --truth "$WORK/mr-lowsnr-truth.h5" \
    -o "$WORK/mr-lowsnr.h5" --quiet
  expect_rc "phantom mr --noise 0.1" 0
  run mr "$WORK/mr-lowsnr.h5" -o "$WORK/mr-lowsnr-rss.h5" --combine rss --quiet
  expect_rc "mr --combine rss (low SNR)" 0
  run mr "$WORK/mr-lowsnr.h5" -o "$WORK/mr-lowsnr-ad.h5" --combine adaptive --quiet
  expect_rc "mr --combine adaptive (low SNR)" 0
  snrs=$("$PY" - "$WORK/mr-lowsnr-truth.h5" "$WORK/mr-lowsnr-rss.h5" \
    "$WORK/mr-lowsnr-ad.h5" <<'PYEOF'
import sys
import h5py
import numpy as np
def img(path):
    with h5py.File(path, "r") as f:
        a = f["image"][...].astype(np.float64)
    return a.reshape(a.shape[-2:])
t = img(sys.argv[1])
m = t > 0
out = []
for path in sys.argv[2:]:
    x = img(path)
    s = (x * t).sum() / (t * t).sum()
    out.append((s * t[m]).mean() / np.sqrt(((x - s * t)[m] ** 2).mean()))
print("%.4g %.4g" % tuple(out))
PYEOF
  )
  snr_rss=${snrs% *}
  snr_ad=${snrs#* }
  echo "  low-SNR phantom: SNR rss $snr_rss, adaptive $snr_ad"
  if [ -n "$snrs" ] &&
    awk -v a="$snr_ad" -v r="$snr_rss" 'BEGIN { exit !(r + 0 > 0 && a + 0 >= 1.2 * r) }'
  then
    pass "adaptive combine SNR $snr_ad >= 1.2 x RSS SNR $snr_rss"
  else
    fail "adaptive combine SNR '$snr_ad' not >= 1.2 x RSS SNR '$snr_rss'"
  fi
fi

# ---- Denoising: denoise, ct --denoise, mr --denoise, info on a model ---------
for cmd in mr denoise; do
  run "$cmd" --help
  expect_rc "$cmd --help" 0
  expect_stdout "$cmd --help" "Usage: clara-recon $cmd"
done
run ct --help
expect_stdout "ct --help" "--denoise M"
run mr --help
expect_stdout "mr --help" "--denoise M"
run denoise --help
expect_stdout "denoise --help" "--precision P"

# usage errors need no model
run denoise "$WORK/hu.h5" -o "$WORK/dn-x.h5"
expect_rc "denoise without --model" 2
expect_stderr "denoise without --model" "--model"
run denoise -o "$WORK/dn-x.h5" --model ct
expect_rc "denoise without an input" 2
run denoise "$WORK/hu.h5" --model ct
expect_rc "denoise without -o" 2
run denoise "$WORK/hu.h5" -o "$WORK/dn-x.h5" --model ct --precision fp64
expect_rc "denoise --precision fp64" 2
expect_stderr "denoise --precision fp64" "fp64"
run denoise "$WORK/hu.h5" -o "$WORK/dn-x.h5" --model ct --threads -1
expect_rc "denoise --threads -1" 2
run ct "$WORK/parallel.h5" -o "$WORK/dn-x.h5" --denoise ""
expect_rc "ct --denoise ''" 2
expect_no_file "denoise usage errors" "$WORK/dn-x.h5"

# a missing model, a corrupt one, HDF5 that is not a model, and the shipped
# names looked up in $CLARA_RECON_MODELS
run denoise "$WORK/hu.h5" -o "$WORK/dn-x.h5" --model "$WORK/no-such-model.h5"
expect_rc "denoise with a missing model" 1
expect_stderr "denoise with a missing model" "cannot open"
expect_stderr "denoise with a missing model" "$WORK/no-such-model.h5"
expect_no_file "denoise with a missing model" "$WORK/dn-x.h5"
echo "this is not a model" >"$WORK/corrupt-model.h5"
run denoise "$WORK/hu.h5" -o "$WORK/dn-x.h5" --model "$WORK/corrupt-model.h5"
expect_rc "denoise with a corrupt (not HDF5) model" 1
expect_stderr "denoise with a corrupt (not HDF5) model" "ERR_IO"
expect_no_file "denoise with a corrupt model" "$WORK/dn-x.h5"
run denoise "$WORK/hu.h5" -o "$WORK/dn-x.h5" --model "$WORK/parallel.h5"
expect_rc "denoise with a CT scan as the model" 1
expect_stderr "denoise with a CT scan as the model" "ERR_FORMAT"
expect_stderr "denoise with a CT scan as the model" "format"
expect_no_file "denoise with a CT scan as the model" "$WORK/dn-x.h5"
run ct "$WORK/parallel.h5" -o "$WORK/dn-x.h5" --denoise "$WORK/no-such-model.h5"
expect_rc "ct --denoise with a missing model" 1
expect_stderr "ct --denoise with a missing model" "cannot open"
expect_no_file "ct --denoise with a missing model" "$WORK/dn-x.h5"
mkdir "$WORK/no-models"
run_models "$WORK/no-models" denoise "$WORK/hu.h5" -o "$WORK/dn-x.h5" --model ct
expect_rc "denoise --model ct without the shipped model" 1
expect_stderr "denoise --model ct without the shipped model" "$WORK/no-models/ct-denoise.h5"
expect_no_file "denoise --model ct without the shipped model" "$WORK/dn-x.h5"

# write_model PATH LAYERS WIDTH MODALITY SEED [nan]: a random model file
# (docs/FORMATS.md) made with h5py: CT models fixed normalisation (offset 0,
# scale 1000, units HU), MR models the 99th percentile; residual; ReLU on
# all layers but the last. "nan" puts a NaN in the last layer's weights.
write_model() {
  "$PY" - "$@" <<'PYEOF'
import sys
import h5py
import numpy as np

path, layers, width, modality, seed = sys.argv[1:6]
layers, width, seed = int(layers), int(width), int(seed)
rng = np.random.default_rng(seed)
ch = [1] + [width] * (layers - 1) + [1]
with h5py.File(path, "w") as f:
    f.attrs["format"] = "clara-recon-denoiser"
    f.attrs["format_version"] = np.int32(1)
    f.attrs["architecture"] = "test-random"
    f.attrs["modality"] = modality
    f.attrs["residual"] = np.int32(1)
    if modality == "ct":
        f.attrs["normalisation"] = "fixed"
        f.attrs["input_offset"] = 0.0
        f.attrs["input_scale"] = 1000.0
        f.attrs["units"] = "HU"
    else:
        f.attrs["normalisation"] = "percentile"
        f.attrs["input_percentile"] = 99.0
    f.attrs["layers"] = np.int32(layers)
    for k in range(layers):
        g = f.create_group(f"layers/{k}")
        g.attrs["kind"] = "conv3x3"
        g.attrs["activation"] = "relu" if k + 1 < layers else "none"
        a = np.sqrt(6.0 / (9 * ch[k]))
        w = rng.uniform(-a, a, (ch[k + 1], ch[k], 3, 3)).astype(np.float32)
        if len(sys.argv) > 6 and sys.argv[6] == "nan" and k + 1 == layers:
            w[0, 0, 1, 1] = np.nan
        g["weight"] = w
        g["bias"] = rng.uniform(-0.05, 0.05, ch[k + 1]).astype(np.float32)
    f.create_group("provenance").attrs["training_data"] = "random weights (test_cli.sh)"
PYEOF
}

# denoise_error MODEL IN OUT: prints max |OUT - ref| / max |ref|, ref =
# MODEL applied to IN's /image in double precision (direct convolution with
# zero padding), slice by slice.
denoise_error() {
  "$PY" - "$@" <<'PYEOF'
import sys
import h5py
import numpy as np

model, src, dst = sys.argv[1:4]
with h5py.File(model, "r") as f:
    a = f.attrs
    layers = [(f[f"layers/{k}/weight"][...].astype(np.float64),
               f[f"layers/{k}/bias"][...].astype(np.float64),
               f[f"layers/{k}"].attrs["activation"] == "relu")
              for k in range(int(a["layers"]))]
    fixed = a["normalisation"] == "fixed"
    off = float(a["input_offset"]) if fixed else 0.0
    scale = float(a["input_scale"]) if fixed else None
    q = None if fixed else float(a["input_percentile"])
    residual = int(a["residual"]) == 1
with h5py.File(src, "r") as f:
    x = f["image"][...].astype(np.float64)
with h5py.File(dst, "r") as f:
    y = f["image"][...].astype(np.float64)
ref = np.empty_like(x)
for s in range(x.shape[0]):
    img = x[s]
    sc = scale
    if sc is None:
        v = np.sort(img.ravel())
        p = v[int(round((v.size - 1) * q / 100.0))]
        sc = p if p > 0 else 1.0
    xn = (img - off) / sc
    h = xn[np.newaxis]
    ny, nx = img.shape
    for w, b, relu in layers:
        pad = np.pad(h, ((0, 0), (1, 1), (1, 1)))
        out = np.empty((w.shape[0], ny, nx))
        for o in range(w.shape[0]):
            acc = np.full((ny, nx), b[o])
            for i in range(w.shape[1]):
                for kh in range(3):
                    for kw in range(3):
                        acc += w[o, i, kh, kw] * pad[i, kh:kh + ny, kw:kw + nx]
            out[o] = np.maximum(acc, 0) if relu else acc
        h = out
    ref[s] = ((xn - h[0]) if residual else h[0]) * sc + off
print("%.3g" % (np.abs(y - ref).max() / np.abs(ref).max()))
PYEOF
}

# grid_of FILE: the lines of 'info FILE' that describe the grid and units
grid_of() {
  "$TOOL" info "$1" 2>&1 | grep -E '^/image:|voxel size|center|units'
}

if [ "$PY" = no ] || ! "$PY" -c 'import h5py, numpy' >/dev/null 2>&1; then
  echo "SKIP: denoising with random models: python3 with h5py and numpy not found"
elif ! write_model "$WORK/ct-model.h5" 3 4 ct 1 ||
  ! write_model "$WORK/mr-model.h5" 3 4 mr 2 ||
  ! write_model "$WORK/deep-model.h5" 12 2 ct 3 ||
  ! write_model "$WORK/nan-model.h5" 3 4 ct 4 nan; then
  fail "writing random model files with h5py"
else
  # info on a model file
  run info "$WORK/ct-model.h5"
  expect_rc "info on a model file" 0
  expect_stdout "info on a model file" "denoiser model: test-random for ct images"
  expect_stdout "info on a model file" "receptive field 7 x 7"
  expect_stdout "info on a model file" "random weights (test_cli.sh)"
  run info "$WORK/nan-model.h5"
  expect_rc "info on a model with a NaN weight" 1
  expect_stderr "info on a model with a NaN weight" "NaN"
  run info "$WORK/ct-model.h5" --compare "$WORK/parallel.h5"
  expect_rc "info --compare of a model file" 1

  # denoise an HU image; check it against the numpy reference and the grid
  run denoise "$WORK/hu.h5" -o "$WORK/dn-hu.h5" --model "$WORK/ct-model.h5" --backend cpu --threads 2
  expect_rc "denoise with a random CT model" 0
  expect_file "denoise with a random CT model" "$WORK/dn-hu.h5"
  expect_stdout "denoise prints the model" "model: $WORK/ct-model.h5: test-random for ct images in HU, 3 layers of 3x3, up to 4 channels, receptive field 7 x 7"
  expect_stdout "denoise prints the timing" "ms (load "
  expect_stdout "denoise summary" "wrote $WORK/dn-hu.h5"
  grid_of "$WORK/hu.h5" >"$WORK/grid-in"
  grid_of "$WORK/dn-hu.h5" >"$WORK/grid-out"
  if [ -s "$WORK/grid-in" ] && cmp -s "$WORK/grid-in" "$WORK/grid-out"; then
    pass "denoise keeps the grid and the units"
  else
    fail "denoise changed the grid or the units"
    diff "$WORK/grid-in" "$WORK/grid-out" | sed 's/^/    | /'
  fi
  err=$(denoise_error "$WORK/ct-model.h5" "$WORK/hu.h5" "$WORK/dn-hu.h5")
  expect_lt "denoise matches the numpy reference (2D)" "$err" 1e-4

  # a 3-slice stack in HU: every slice denoised on its own
  run ct "$WORK/stack.h5" -o "$WORK/stack-hu.h5" --hu -q
  expect_rc "ct --hu of a 3-row stack" 0
  run denoise "$WORK/stack-hu.h5" -o "$WORK/dn-stack.h5" --model "$WORK/ct-model.h5" -q
  expect_rc "denoise a 3-slice stack" 0
  if [ -s "$WORK/stdout" ]; then
    fail "denoise --quiet printed to stdout"
  else
    pass "denoise --quiet prints nothing"
  fi
  err=$(denoise_error "$WORK/ct-model.h5" "$WORK/stack-hu.h5" "$WORK/dn-stack.h5")
  expect_lt "denoise matches the numpy reference (3 slices)" "$err" 1e-4

  # the shipped names come from $CLARA_RECON_MODELS
  mkdir "$WORK/models"
  cp "$WORK/ct-model.h5" "$WORK/models/ct-denoise.h5"
  run_models "$WORK/models" denoise "$WORK/hu.h5" -o "$WORK/dn-shipped.h5" --model ct
  expect_rc "denoise --model ct from \$CLARA_RECON_MODELS" 0
  expect_stdout "denoise --model ct from \$CLARA_RECON_MODELS" "model: ct (shipped, $WORK/models/ct-denoise.h5)"
  err=$(denoise_error "$WORK/ct-model.h5" "$WORK/hu.h5" "$WORK/dn-shipped.h5")
  expect_lt "--model ct runs \$CLARA_RECON_MODELS/ct-denoise.h5" "$err" 1e-4

  # refusals, each leaving no output behind
  run denoise "$WORK/parallel-recon.h5" -o "$WORK/dn-x.h5" --model "$WORK/ct-model.h5"
  expect_rc "denoise of a 1/mm image with a CT model" 1
  expect_stderr "denoise of a 1/mm image with a CT model" "ct --hu"
  expect_no_file "denoise of a 1/mm image with a CT model" "$WORK/dn-x.h5"
  run denoise "$WORK/hu.h5" -o "$WORK/dn-x.h5" --model "$WORK/mr-model.h5"
  expect_rc "denoise of an HU image with an MR model" 1
  expect_stderr "denoise of an HU image with an MR model" "MR magnitude images"
  expect_no_file "denoise of an HU image with an MR model" "$WORK/dn-x.h5"
  run denoise "$WORK/hu.h5" -o "$WORK/dn-x.h5" --model "$WORK/nan-model.h5"
  expect_rc "denoise with a NaN weight in the model" 1
  expect_stderr "denoise with a NaN weight in the model" "ERR_FORMAT"
  expect_no_file "denoise with a NaN weight in the model" "$WORK/dn-x.h5"
  run denoise "$WORK/hu.h5" -o "$WORK/dn-x.h5" --model "$WORK/ct-model.h5" --precision fp16 --backend cpu
  expect_rc "denoise --precision fp16 on the CPU" 1
  expect_stderr "denoise --precision fp16 on the CPU" "ERR_UNSUPPORTED"
  expect_no_file "denoise --precision fp16 on the CPU" "$WORK/dn-x.h5"
  run denoise "$WORK/hu.h5" -o "$WORK/dn-cuda.h5" --model "$WORK/ct-model.h5" --backend cuda
  if [ "$rc" -eq 0 ]; then
    echo "  denoise --backend cuda ran: this machine has a CUDA device"
    err=$(denoise_error "$WORK/ct-model.h5" "$WORK/hu.h5" "$WORK/dn-cuda.h5")
    expect_lt "denoise --backend cuda matches the numpy reference" "$err" 1e-4
  else
    expect_rc "denoise --backend cuda without a GPU" 1
    expect_stderr "denoise --backend cuda without a GPU" "NO_DEVICE"
    expect_no_file "denoise --backend cuda without a GPU" "$WORK/dn-cuda.h5"
  fi
  run denoise "$WORK/hu.h5" -o "$WORK/dn-x.h5" --model "$WORK/ct-model.h5" --dataset /nothing
  expect_rc "denoise --dataset /nothing" 1
  expect_no_file "denoise --dataset /nothing" "$WORK/dn-x.h5"

  # a NaN pixel
  cp "$WORK/hu.h5" "$WORK/hu-nan.h5"
  "$PY" -c 'import sys, h5py; f = h5py.File(sys.argv[1], "r+"); f["image"][0, 3, 5] = float("nan"); f.close()' "$WORK/hu-nan.h5"
  run denoise "$WORK/hu-nan.h5" -o "$WORK/dn-x.h5" --model "$WORK/ct-model.h5"
  expect_rc "denoise of an image with a NaN pixel" 1
  expect_stderr "denoise of an image with a NaN pixel" "NaN"
  expect_no_file "denoise of an image with a NaN pixel" "$WORK/dn-x.h5"

  # slices smaller than the receptive field (12 layers: 25 x 25)
  run ct "$WORK/parallel.h5" -o "$WORK/small-hu.h5" --size 20 --hu -q
  expect_rc "ct --size 20 --hu" 0
  run denoise "$WORK/small-hu.h5" -o "$WORK/dn-x.h5" --model "$WORK/deep-model.h5"
  expect_rc "denoise of slices below the receptive field" 1
  expect_stderr "denoise of slices below the receptive field" "receptive field"
  expect_no_file "denoise of slices below the receptive field" "$WORK/dn-x.h5"
  run ct "$WORK/parallel.h5" -o "$WORK/dn-x.h5" --size 20 --denoise "$WORK/deep-model.h5"
  expect_rc "ct --denoise below the receptive field" 1
  expect_stderr "ct --denoise below the receptive field" "receptive field"
  expect_no_file "ct --denoise below the receptive field" "$WORK/dn-x.h5"

  # outputs that cannot be written
  run denoise "$WORK/hu.h5" -o "$WORK/missing-dir/dn.h5" --model "$WORK/ct-model.h5"
  expect_rc "denoise into a missing directory" 1
  expect_no_file "denoise into a missing directory" "$WORK/missing-dir"
  run denoise "$WORK/hu.h5" -o "$WORK" --model "$WORK/ct-model.h5"
  expect_rc "denoise onto a directory" 1
  # /proc passes the tool's early check for root, so the library's writer
  # fails after the denoising: still nothing left behind
  if [ -d /proc/self ]; then
    run denoise "$WORK/hu.h5" -o /proc/clara-recon-test-dn.h5 --model "$WORK/ct-model.h5"
    expect_rc "denoise into /proc" 1
    expect_stderr "denoise into /proc" "/proc/clara-recon-test-dn.h5"
    expect_no_file "denoise into /proc" /proc/clara-recon-test-dn.h5
  fi
  if [ "$(id -u)" -eq 0 ]; then
    echo "SKIP: denoise into a read-only directory: root may write anywhere"
  else
    mkdir "$WORK/read-only"
    chmod 555 "$WORK/read-only"
    run denoise "$WORK/hu.h5" -o "$WORK/read-only/dn.h5" --model "$WORK/ct-model.h5"
    expect_rc "denoise into a read-only directory" 1
    expect_stderr "denoise into a read-only directory" "$WORK/read-only"
    expect_no_file "denoise into a read-only directory" "$WORK/read-only/dn.h5"
    run ct "$WORK/parallel.h5" -o "$WORK/read-only/ct.h5" --denoise "$WORK/ct-model.h5"
    expect_rc "ct --denoise into a read-only directory" 1
    expect_no_file "ct --denoise into a read-only directory" "$WORK/read-only/ct.h5"
    chmod 755 "$WORK/read-only"
  fi

  # ct --denoise implies --hu: the same as ct --hu, then denoise
  run ct "$WORK/parallel.h5" -o "$WORK/ct-dn.h5" --denoise "$WORK/ct-model.h5"
  expect_rc "ct --denoise with a random CT model" 0
  expect_stdout "ct --denoise" "model: $WORK/ct-model.h5: test-random for ct images"
  expect_stdout "ct --denoise" "HU, denoised,"
  run info "$WORK/ct-dn.h5"
  expect_stdout "ct --denoise implies --hu" "units         HU"
  err=$(denoise_error "$WORK/ct-model.h5" "$WORK/hu.h5" "$WORK/ct-dn.h5")
  expect_lt "ct --denoise = ct --hu, then denoise" "$err" 1e-4
  run ct "$WORK/parallel.h5" -o "$WORK/dn-x.h5" --denoise "$WORK/mr-model.h5"
  expect_rc "ct --denoise with an MR model" 1
  expect_stderr "ct --denoise with an MR model" "the model is for mr"
  expect_no_file "ct --denoise with an MR model" "$WORK/dn-x.h5"

  # mr --denoise, and denoise of an MR image
  run mr "$WORK/mr.h5" -o "$WORK/mr-dn.h5" --denoise "$WORK/mr-model.h5"
  expect_rc "mr --denoise with a random MR model" 0
  expect_stdout "mr --denoise" ", denoised;"
  err=$(denoise_error "$WORK/mr-model.h5" "$WORK/mr-rss.h5" "$WORK/mr-dn.h5")
  expect_lt "mr --denoise = mr, then the MR model" "$err" 1e-4
  run mr "$WORK/mr.h5" -o "$WORK/dn-x.h5" --denoise "$WORK/ct-model.h5"
  expect_rc "mr --denoise with a CT model" 1
  expect_stderr "mr --denoise with a CT model" "the model is for ct"
  expect_no_file "mr --denoise with a CT model" "$WORK/dn-x.h5"
  run denoise "$WORK/mr-rss.h5" -o "$WORK/dn-mr.h5" --model "$WORK/mr-model.h5"
  expect_rc "denoise an MR image with an MR model" 0
  err=$(denoise_error "$WORK/mr-model.h5" "$WORK/mr-rss.h5" "$WORK/dn-mr.h5")
  expect_lt "denoise (MR, percentile normalisation) matches numpy" "$err" 1e-4
  run denoise "$WORK/mr-rss.h5" -o "$WORK/dn-x.h5" --model "$WORK/ct-model.h5"
  expect_rc "denoise of an MR image with a CT model" 1
  expect_no_file "denoise of an MR image with a CT model" "$WORK/dn-x.h5"
  # an image without units (written by another program): fine for an MR
  # model, refused by a CT model
  "$PY" -c 'import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    d = f.create_dataset("image", data=np.abs(np.random.default_rng(0).normal(1.0, 0.3, (2, 32, 40))).astype(np.float32))
    d.attrs["voxel_size"] = [1.0, 0.5, 0.5]' "$WORK/no-units.h5"
  run denoise "$WORK/no-units.h5" -o "$WORK/dn-no-units.h5" --model "$WORK/mr-model.h5"
  expect_rc "denoise of an image without units with an MR model" 0
  err=$(denoise_error "$WORK/mr-model.h5" "$WORK/no-units.h5" "$WORK/dn-no-units.h5")
  expect_lt "denoise without units matches numpy" "$err" 1e-4
  run denoise "$WORK/no-units.h5" -o "$WORK/dn-x.h5" --model "$WORK/ct-model.h5"
  expect_rc "denoise of an image without units with a CT model" 1
  expect_stderr "denoise of an image without units with a CT model" "has no units"
  expect_no_file "denoise of an image without units with a CT model" "$WORK/dn-x.h5"
fi

# The shipped models (make check points CLARA_RECON_MODELS at the source
# tree's models/; by hand, the models/ beside this script).
: "${CLARA_RECON_MODELS:=$(cd "$(dirname "$0")/.." && pwd)/models}"
export CLARA_RECON_MODELS
if [ ! -f "$CLARA_RECON_MODELS/ct-denoise.h5" ]; then
  echo "SKIP: ct --denoise ct: $CLARA_RECON_MODELS/ct-denoise.h5 does not exist"
else
  run info "$CLARA_RECON_MODELS/ct-denoise.h5"
  expect_rc "info on the shipped CT model" 0
  expect_stdout "info on the shipped CT model" "for ct images"
  run phantom ct --geometry parallel --size 128 --views 180 --noise 2e4 --seed 3 -o "$WORK/noisy128.h5"
  expect_rc "phantom ct --size 128 --noise 2e4" 0
  run ct "$WORK/noisy128.h5" -o "$WORK/noisy128-hu.h5" --hu -q
  expect_rc "ct --hu of a noisy scan" 0
  run ct "$WORK/noisy128.h5" -o "$WORK/noisy128-dn.h5" --denoise ct
  expect_rc "ct --denoise ct (shipped model)" 0
  expect_stdout "ct --denoise ct (shipped model)" "model: ct (shipped, $CLARA_RECON_MODELS/ct-denoise.h5)"
  expect_stdout "ct --denoise ct (shipped model)" "HU, denoised,"
  expect_file "ct --denoise ct (shipped model)" "$WORK/noisy128-dn.h5"
  run denoise "$WORK/noisy128-hu.h5" -o "$WORK/noisy128-dn2.h5" --model ct
  expect_rc "denoise --model ct (shipped model)" 0
  if [ "$PY" != no ] && "$PY" -c 'import h5py, numpy' >/dev/null 2>&1; then
    # for information: the RMSE in HU against the truth (mu_water 0.0192)
    "$PY" - "$WORK/noisy128.h5" "$WORK/noisy128-hu.h5" "$WORK/noisy128-dn.h5" <<'PYEOF'
import sys
import h5py
import numpy as np
with h5py.File(sys.argv[1], "r") as f:
    truth = 1000.0 * (f["truth"][...] - 0.0192) / 0.0192
n = truth.shape[-1]
yy, xx = np.mgrid[:n, :n] - (n - 1) / 2.0
inside = np.hypot(yy, xx) < 0.4 * n
out = []
for path in sys.argv[2:]:
    with h5py.File(path, "r") as f:
        img = f["image"][...]
    out.append(np.sqrt(np.mean((img - truth)[..., inside] ** 2)))
print("  shipped CT model, noisy 128 x 128 phantom: RMSE vs truth %.1f HU "
      "before, %.1f HU after denoising" % tuple(out))
PYEOF
  fi
fi
if [ ! -f "$CLARA_RECON_MODELS/mr-denoise.h5" ]; then
  echo "SKIP: mr --denoise mr: $CLARA_RECON_MODELS/mr-denoise.h5 does not exist"
else
  run mr "$WORK/mr.h5" -o "$WORK/mr-shipped.h5" --denoise mr
  expect_rc "mr --denoise mr (shipped model)" 0
  expect_stdout "mr --denoise mr (shipped model)" ", denoised;"
  expect_file "mr --denoise mr (shipped model)" "$WORK/mr-shipped.h5"
fi

# ---- DICOM series, PNG previews, progress and Ctrl-C -------------------------

# png_size FILE: prints "WIDTH HEIGHT" when FILE starts with the PNG
# signature and an IHDR chunk for 8-bit greyscale, else nothing.
png_size() {
  [ -s "$1" ] || return 0
  sig=$(od -An -tx1 -N16 "$1" | tr -d ' \n')
  [ "$sig" = "89504e470d0a1a0a0000000d49484452" ] || return 0
  set -- $(od -An -tu1 -j16 -N10 "$1")
  [ "$#" -eq 10 ] && [ "$9" -eq 8 ] && [ "${10}" -eq 0 ] || return 0
  echo "$(($1 * 16777216 + $2 * 65536 + $3 * 256 + $4)) $(($5 * 16777216 + $6 * 65536 + $7 * 256 + $8))"
}

# expect_png NAME FILE W H: FILE is a valid 8-bit greyscale PNG of W x H.
expect_png() {
  size=$(png_size "$2")
  if [ "$size" = "$3 $4" ]; then
    pass "$1 (PNG $3 x $4)"
  else
    fail "$1: $2 is not an 8-bit greyscale PNG of $3 x $4 (got '$size')"
  fi
}

# dump_value FILE ATTR: the value of a DICOM attribute, as dcmdump prints
# it between the brackets.
dump_value() {
  dcmdump -q +P "$2" "$1" 2>/dev/null | head -n 1 | sed -n 's/^[^[]*\[\(.*\)\].*/\1/p'
}

# expect_dump NAME FILE ATTR VALUE
expect_dump() {
  got=$(dump_value "$2" "$3")
  if [ "$got" = "$4" ]; then
    pass "$1 ($3 = $4)"
  else
    fail "$1: $3 is '$got', expected '$4'"
  fi
}

# expect_dciodvfy NAME FILE: dciodvfy reports no error on FILE
expect_dciodvfy() {
  errors=$(dciodvfy "$2" 2>&1 | grep -E '^Error' || true)
  if [ -z "$errors" ]; then
    pass "$1 (dciodvfy: no errors)"
  else
    fail "$1: dciodvfy reports errors on $2:"
    printf '%s\n' "$errors" | sed 's/^/    | /'
  fi
}

for cmd in ct mr; do
  run "$cmd" --help
  expect_stdout "$cmd --help" "--dicom DIR"
  expect_stdout "$cmd --help" "--png FILE"
  expect_stdout "$cmd --help" "--window C,W"
done
run ct --help
expect_stdout "ct --help says --dicom implies --hu" "so --dicom implies --hu"
run export-dicom --help
expect_rc "export-dicom --help" 0
expect_stdout "export-dicom --help" "Usage: clara-recon export-dicom"
run denoise --help
expect_stdout "denoise --help" "--png FILE"

# usage errors, before any work
rm -f "$WORK/x.h5"
run ct "$WORK/parallel.h5" -o "$WORK/x.h5" --dicom-template "$WORK/parallel.h5"
expect_rc "--dicom-template without --dicom" 2
run ct "$WORK/parallel.h5" -o "$WORK/x.h5" --png "$WORK/x.png" --window 40
expect_rc "--window without a width" 2
run ct "$WORK/parallel.h5" -o "$WORK/x.h5" --png "$WORK/x.png" --window 40,-5
expect_rc "--window with a negative width" 2
run mr "$WORK/mr.h5" -o "$WORK/x.h5" --window bogus
expect_rc "mr --window bogus" 2
run export-dicom "$WORK/hu.h5"
expect_rc "export-dicom without -o" 2
run export-dicom "$WORK/hu.h5" -o "$WORK/x-dicom" --modality pet
expect_rc "export-dicom --modality pet" 2
expect_no_file "usage errors write nothing" "$WORK/x.h5"
expect_no_file "usage errors write nothing" "$WORK/x-dicom"

# What this build has: DICOM (DCMTK) and PNG (libpng) are optional.
run ct "$WORK/parallel.h5" -o "$WORK/ct-dicom.h5" --dicom "$WORK/ct-dicom"
if grep -q "built without DCMTK" "$WORK/stderr"; then
  have_dicom=0
  expect_rc "--dicom without DCMTK" 1
  expect_no_file "--dicom without DCMTK" "$WORK/ct-dicom.h5"
  echo "SKIP: DICOM checks: clara-recon was built without DCMTK"
else
  have_dicom=1
  expect_rc "ct --dicom" 0
  expect_file "ct --dicom" "$WORK/ct-dicom/CT00001.dcm"
  expect_stdout "ct --dicom" "dicom: $WORK/ct-dicom: 1 file, CT Image Storage"
  run info "$WORK/ct-dicom.h5"
  expect_stdout "ct --dicom implies --hu" "units         HU"
fi
run ct "$WORK/parallel.h5" -o "$WORK/ct-png.h5" --png "$WORK/ct.png"
if grep -q "built without libpng" "$WORK/stderr"; then
  have_png=0
  expect_rc "--png without libpng" 1
  expect_no_file "--png without libpng" "$WORK/ct-png.h5"
  echo "SKIP: PNG checks: clara-recon was built without libpng"
else
  have_png=1
  expect_rc "ct --png" 0
  expect_png "ct --png (1/mm, percentile window)" "$WORK/ct.png" 64 64
fi

if [ "$have_png" -eq 1 ]; then
  run phantom ct --geometry cone --size 24 --rows 24 --views 60 -o "$WORK/cone24.h5" \
    --png "$WORK/cone24-truth.png"
  expect_rc "phantom ct --png" 0
  # 16 of the 24 slices on a 4 x 4 grid
  expect_png "phantom ct --png: a montage of the truth" "$WORK/cone24-truth.png" 96 96
  run ct "$WORK/cone24.h5" -o "$WORK/cone24-hu.h5" --hu --png "$WORK/cone24.png" --window 0,2000
  expect_rc "ct --hu --png --window of a volume" 0
  expect_stdout "ct --png --window" "window 0/2000 HU"
  expect_png "ct --png of a volume" "$WORK/cone24.png" 96 96
  run mr "$WORK/mr.h5" -o "$WORK/mr-png.h5" --png "$WORK/mr.png" --window 0.5,1 --window hann
  expect_rc "mr --png, --window C,W and --window hann" 0
  expect_png "mr --png" "$WORK/mr.png" 96 96
  expect_stdout "mr --window C,W is the display window" "window 0.5/1)"
  expect_stdout "mr --window hann is still the apodisation" "(rss, homodyne, ortho;"
  run denoise "$WORK/hu.h5" -o "$WORK/dn-png.h5" --model "$WORK/ct-model.h5" --png "$WORK/dn.png"
  if [ -f "$WORK/ct-model.h5" ]; then
    expect_rc "denoise --png" 0
    expect_png "denoise --png (HU)" "$WORK/dn.png" 64 64
  fi
  # outputs that cannot be written: nothing is left, the HDF5 file included
  run ct "$WORK/parallel.h5" -o "$WORK/x.h5" --png "$WORK/missing-dir/x.png"
  expect_rc "--png into a missing directory" 1
  expect_no_file "--png into a missing directory" "$WORK/x.h5"
  if [ -d /proc/self ]; then
    run ct "$WORK/parallel.h5" -o "$WORK/x.h5" --png /proc/clara-recon-test.png
    expect_rc "--png into /proc" 1
    expect_stderr "--png into /proc" "removed $WORK/x.h5"
    expect_no_file "--png into /proc: no HDF5 file left" "$WORK/x.h5"
  fi
  # a NaN pixel has no grey level
  if [ -f "$WORK/hu-nan.h5" ]; then
    run denoise "$WORK/hu-nan.h5" -o "$WORK/x.h5" --model "$WORK/mr-model.h5" --png "$WORK/x.png"
    expect_rc "denoise of a NaN image with --png" 1
    expect_no_file "denoise of a NaN image with --png" "$WORK/x.png"
  fi
fi

if [ "$have_dicom" -eq 1 ]; then
  # a cone volume: one file per slice
  run ct "$WORK/cone.h5" -o "$WORK/cone-d.h5" --filter hann --dicom "$WORK/cone-dicom" \
    --series-description "cone test" --series-number 7
  expect_rc "ct --dicom of a cone volume" 0
  nfiles=$(ls "$WORK/cone-dicom" 2>/dev/null | wc -l)
  if [ "$nfiles" -eq 32 ]; then
    pass "ct --dicom of a 32-slice volume: 32 files"
  else
    fail "ct --dicom of a 32-slice volume: $nfiles files"
  fi
  # an MR series from the phantom's ISMRMRD file
  run mr "$WORK/mr.h5" -o "$WORK/mr-d.h5" --dicom "$WORK/mr-dicom"
  expect_rc "mr --dicom" 0
  expect_file "mr --dicom" "$WORK/mr-dicom/MR00001.dcm"
  expect_stdout "mr --dicom" "MR Image Storage, ORIGINAL\\PRIMARY"

  if command -v dciodvfy >/dev/null 2>&1; then
    expect_dciodvfy "CT series written by ct --dicom" "$WORK/ct-dicom/CT00001.dcm"
    expect_dciodvfy "CT volume series, slice 1" "$WORK/cone-dicom/CT00001.dcm"
    expect_dciodvfy "CT volume series, slice 32" "$WORK/cone-dicom/CT00032.dcm"
    expect_dciodvfy "MR series written by mr --dicom" "$WORK/mr-dicom/MR00001.dcm"
  else
    echo "SKIP: dciodvfy not found (dicom3tools): IOD checks of the CLI's series"
  fi
  if command -v dcmdump >/dev/null 2>&1; then
    for f in "$WORK/ct-dicom/CT00001.dcm" "$WORK/cone-dicom/CT00017.dcm" "$WORK/mr-dicom/MR00001.dcm"; do
      if dcmdump -E "$f" >"$WORK/dump" 2>&1 && ! grep -q -E '^[EF]: ' "$WORK/dump"; then
        pass "dcmdump reads $(basename "$(dirname "$f")")/$(basename "$f")"
      else
        fail "dcmdump cannot read $f"
        sed 's/^/    | /' "$WORK/dump" | head -n 10
      fi
    done
    expect_dump "ct series" "$WORK/ct-dicom/CT00001.dcm" Modality CT
    expect_dump "ct series" "$WORK/ct-dicom/CT00001.dcm" ImageType 'ORIGINAL\PRIMARY\AXIAL'
    expect_dump "ct series" "$WORK/ct-dicom/CT00001.dcm" RescaleIntercept -1024
    expect_dump "ct series" "$WORK/ct-dicom/CT00001.dcm" ConvolutionKernel RAM-LAK
    expect_dump "ct series" "$WORK/ct-dicom/CT00001.dcm" SeriesNumber 1
    expect_dump "cone series" "$WORK/cone-dicom/CT00032.dcm" InstanceNumber 32
    expect_dump "cone series" "$WORK/cone-dicom/CT00001.dcm" SeriesDescription "cone test"
    expect_dump "cone series" "$WORK/cone-dicom/CT00001.dcm" SeriesNumber 7
    expect_dump "cone series" "$WORK/cone-dicom/CT00001.dcm" ConvolutionKernel HANN
    expect_dump "mr series" "$WORK/mr-dicom/MR00001.dcm" Modality MR
    expect_dump "mr series" "$WORK/mr-dicom/MR00001.dcm" MRAcquisitionType 2D
    expect_dump "mr series: the phantom's 1 mm pixels" "$WORK/mr-dicom/MR00001.dcm" PixelSpacing '1\1'
  else
    echo "SKIP: dcmdump not found (DCMTK tools): dump checks of the CLI's series"
  fi

  # The patient, study, scanner and sequence from an ISMRMRD XML header,
  # and the voxel size from its field of view (256 x 128 x 5 mm over the
  # 192 x 96 x 1 matrix: 1.333 x 1.333 x 5 mm).
  if [ "$PY" = no ] || ! "$PY" -c 'import h5py' >/dev/null 2>&1; then
    echo "SKIP: MR header to DICOM: python3 with h5py not found"
  else
    cp "$WORK/mr.h5" "$WORK/mr-rich.h5"
    "$PY" - "$WORK/mr-rich.h5" <<'PYEOF'
import re, sys
import h5py
with h5py.File(sys.argv[1], "r+") as f:
    xml = f["dataset/xml"][0]
    xml = xml.decode() if isinstance(xml, bytes) else xml
    info = """<subjectInformation><patientName>Doe^Jane</patientName>
<patientWeight_kg>61.5</patientWeight_kg><patientID>PID-77</patientID>
<patientBirthdate>1980-02-29</patientBirthdate><patientGender>F</patientGender>
</subjectInformation><studyInformation><studyDate>2024-03-05</studyDate>
<studyTime>14:15:16.123456789+01:00</studyTime><studyID>S12</studyID>
<accessionNumber>9876</accessionNumber>
<referringPhysicianName>House^Gregory</referringPhysicianName>
<studyDescription>Head research</studyDescription>
<studyInstanceUID>1.2.826.0.1.3680043.8.498.12345</studyInstanceUID>
<bodyPartExamined>head</bodyPartExamined></studyInformation>
<measurementInformation><patientPosition>HFS</patientPosition>
<protocolName>t2_tse_tra</protocolName><seriesDescription>T2 axial</seriesDescription>
</measurementInformation>"""
    xml = xml.replace("<acquisitionSystemInformation>", info +
        "<acquisitionSystemInformation><systemModel>Phantom 3T</systemModel>"
        "<systemFieldStrength_T>2.89</systemFieldStrength_T>"
        "<institutionName>Test Hospital</institutionName>", 1)
    xml = re.sub(r"(<encodedSpace>.*?<fieldOfView_mm>).*?(</fieldOfView_mm>)",
                 r"\1<x>256</x><y>128</y><z>5</z>\2", xml, count=1, flags=re.S)
    xml = xml.replace("</encoding>", "</encoding><sequenceParameters><TR>4000</TR>"
                      "<TE>98</TE><flipAngle_deg>150</flipAngle_deg>"
                      "<sequence_type>TSE</sequence_type></sequenceParameters>", 1)
    del f["dataset/xml"]
    f.create_dataset("dataset/xml", data=[xml], dtype=h5py.string_dtype())
PYEOF
    run mr "$WORK/mr-rich.h5" -o "$WORK/mr-rich-img.h5" --dicom "$WORK/mr-rich-dicom"
    expect_rc "mr --dicom of a file with a rich XML header" 0
    run info "$WORK/mr-rich-img.h5"
    expect_stdout "mr: the voxel size from the header's field of view" "voxel size    1.33333 x 1.33333 x 5 mm"
    f="$WORK/mr-rich-dicom/MR00001.dcm"
    if command -v dciodvfy >/dev/null 2>&1; then
      expect_dciodvfy "MR series with the header's fields" "$f"
    fi
    if command -v dcmdump >/dev/null 2>&1; then
      expect_dump "MR header" "$f" PatientName 'Doe^Jane'
      expect_dump "MR header" "$f" PatientID PID-77
      expect_dump "MR header" "$f" PatientBirthDate 19800229
      expect_dump "MR header" "$f" PatientSex F
      expect_dump "MR header" "$f" PatientWeight 61.5
      expect_dump "MR header" "$f" StudyDate 20240305
      expect_dump "MR header" "$f" StudyTime 141516.123456
      expect_dump "MR header" "$f" StudyID S12
      expect_dump "MR header" "$f" AccessionNumber 9876
      expect_dump "MR header" "$f" ReferringPhysicianName 'House^Gregory'
      expect_dump "MR header" "$f" StudyInstanceUID 1.2.826.0.1.3680043.8.498.12345
      expect_dump "MR header" "$f" BodyPartExamined HEAD
      expect_dump "MR header" "$f" PatientPosition HFS
      expect_dump "MR header" "$f" ProtocolName t2_tse_tra
      expect_dump "MR header" "$f" SeriesDescription "T2 axial"
      expect_dump "MR header" "$f" Manufacturer libclara-recon
      expect_dump "MR header" "$f" ManufacturerModelName "Phantom 3T"
      expect_dump "MR header" "$f" InstitutionName "Test Hospital"
      expect_dump "MR header" "$f" MagneticFieldStrength 2.89
      expect_dump "MR header" "$f" RepetitionTime 4000
      expect_dump "MR header" "$f" EchoTime 98
      expect_dump "MR header" "$f" FlipAngle 150
      expect_dump "MR header" "$f" ScanningSequence SE
      expect_dump "MR header: pixel spacing from the FOV" "$f" PixelSpacing '1.33333333333333\1.33333333333333'
      expect_dump "MR header: slice thickness from the FOV" "$f" SliceThickness 5
    fi
  fi
  # no field of view in a fastMRI file without a header: 1 mm, with a note
  if [ -f "$WORK/fastmri.h5" ]; then
    run mr "$WORK/fastmri.h5" -o "$WORK/fastmri-d.h5" --dicom "$WORK/fastmri-dicom"
    expect_rc "mr --dicom of a fastMRI file without a header" 0
    expect_stderr "mr --dicom without a field of view" "1 mm voxels"
    nfiles=$(ls "$WORK/fastmri-dicom" 2>/dev/null | wc -l)
    if [ "$nfiles" -eq 2 ]; then
      pass "mr --dicom of 2 slices: 2 files"
    else
      fail "mr --dicom of 2 slices: $nfiles files"
    fi
  fi

  # --dicom-template continues a study; export-dicom
  run ct "$WORK/parallel.h5" -o "$WORK/ct-t.h5" --dicom "$WORK/ct-t-dicom" \
    --dicom-template "$WORK/ct-dicom/CT00001.dcm"
  expect_rc "ct --dicom-template" 0
  run export-dicom "$WORK/mr-rss.h5" -o "$WORK/mr-export" --dicom-template "$WORK/ct-dicom/CT00001.dcm" \
    --derived --series-description "exported"
  expect_rc "export-dicom of an MR image with a template" 0
  expect_stdout "export-dicom of an MR image" "MR Image Storage, DERIVED\\SECONDARY"
  run export-dicom "$WORK/hu.h5" -o "$WORK/hu-export"
  expect_rc "export-dicom of an HU image" 0
  expect_stdout "export-dicom of an HU image" "CT Image Storage, ORIGINAL\\PRIMARY"
  if command -v dcmdump >/dev/null 2>&1; then
    study=$(dump_value "$WORK/ct-dicom/CT00001.dcm" StudyInstanceUID)
    expect_dump "--dicom-template: the same study" "$WORK/ct-t-dicom/CT00001.dcm" StudyInstanceUID "$study"
    expect_dump "export-dicom --dicom-template: the same study" "$WORK/mr-export/MR00001.dcm" StudyInstanceUID "$study"
    expect_dump "export-dicom --derived" "$WORK/mr-export/MR00001.dcm" ImageType 'DERIVED\SECONDARY\OTHER'
    expect_dump "export-dicom --series-description" "$WORK/mr-export/MR00001.dcm" SeriesDescription exported
    if [ "$(dump_value "$WORK/ct-t-dicom/CT00001.dcm" SeriesInstanceUID)" != "$(dump_value "$WORK/ct-dicom/CT00001.dcm" SeriesInstanceUID)" ]; then
      pass "--dicom-template: a new series"
    else
      fail "--dicom-template: the series UID was copied"
    fi
  fi
  if command -v dciodvfy >/dev/null 2>&1; then
    expect_dciodvfy "export-dicom MR series" "$WORK/mr-export/MR00001.dcm"
    expect_dciodvfy "export-dicom CT series" "$WORK/hu-export/CT00001.dcm"
  fi
  run export-dicom "$WORK/parallel-recon.h5" -o "$WORK/x-dicom"
  expect_rc "export-dicom of an image in 1/mm" 1
  expect_stderr "export-dicom of an image in 1/mm" "Hounsfield"
  run export-dicom "$WORK/hu.h5" -o "$WORK/x-dicom" --modality mr
  expect_rc "export-dicom --modality mr of an HU image" 1
  run export-dicom "$WORK/mr-rss.h5" -o "$WORK/x-dicom" --modality ct
  expect_rc "export-dicom --modality ct of an MR image" 1
  expect_no_file "refused exports" "$WORK/x-dicom"

  # an output directory that cannot be written
  echo "a regular file" >"$WORK/regular"
  run ct "$WORK/parallel.h5" -o "$WORK/x.h5" --dicom "$WORK/regular/series"
  expect_rc "--dicom under a regular file" 1
  expect_stderr "--dicom under a regular file" "$WORK/regular"
  expect_no_file "--dicom under a regular file" "$WORK/x.h5"
  run ct "$WORK/parallel.h5" -o "$WORK/x.h5" --dicom "$WORK/regular"
  expect_rc "--dicom onto a regular file" 1
  run ct "$WORK/parallel.h5" -o "$WORK/x.h5" --dicom "$WORK/ct-dicom"
  expect_rc "--dicom into a directory that is not empty" 1
  expect_stderr "--dicom into a directory that is not empty" "not empty"
  expect_no_file "--dicom into a directory that is not empty" "$WORK/x.h5"
  if [ -d /proc/self ]; then
    # /proc passes the early checks for root: the series writer fails after
    # the reconstruction, and the HDF5 file written before goes too
    run ct "$WORK/parallel.h5" -o "$WORK/x.h5" --dicom /proc/clara-recon-test-series
    expect_rc "--dicom into /proc" 1
    expect_stderr "--dicom into /proc" "/proc/clara-recon-test-series"
    expect_no_file "--dicom into /proc: no series" /proc/clara-recon-test-series
    expect_no_file "--dicom into /proc: no HDF5 file left" "$WORK/x.h5"
  fi
  # a template that is not DICOM, or missing
  run ct "$WORK/parallel.h5" -o "$WORK/x.h5" --dicom "$WORK/x-dicom" --dicom-template "$WORK/parallel.h5"
  expect_rc "--dicom-template that is not DICOM" 1
  expect_stderr "--dicom-template that is not DICOM" "not a DICOM file"
  expect_no_file "--dicom-template that is not DICOM" "$WORK/x.h5"
  expect_no_file "--dicom-template that is not DICOM" "$WORK/x-dicom"
  run export-dicom "$WORK/hu.h5" -o "$WORK/x-dicom" --dicom-template "$WORK/no-such.dcm"
  expect_rc "--dicom-template that does not exist" 1
  expect_no_file "--dicom-template that does not exist" "$WORK/x-dicom"

  if [ "$PY" = no ] || ! "$PY" -c 'import h5py, numpy' >/dev/null 2>&1; then
    echo "SKIP: export-dicom of NaN and out-of-range images: python3 with h5py and numpy not found"
  else
    # non-finite pixels: refused, no partial series
    cp "$WORK/hu.h5" "$WORK/hu-nan2.h5"
    "$PY" -c 'import sys, h5py; f = h5py.File(sys.argv[1], "r+"); f["image"][0, 7, 9] = float("nan"); f.close()' "$WORK/hu-nan2.h5"
    run export-dicom "$WORK/hu-nan2.h5" -o "$WORK/x-dicom"
    expect_rc "export-dicom of an image with a NaN" 1
    expect_stderr "export-dicom of an image with a NaN" "finite"
    expect_no_file "export-dicom of an image with a NaN" "$WORK/x-dicom"
    cp "$WORK/hu.h5" "$WORK/hu-inf.h5"
    "$PY" -c 'import sys, h5py; f = h5py.File(sys.argv[1], "r+"); f["image"][0, 1, 2] = float("inf"); f.close()' "$WORK/hu-inf.h5"
    run export-dicom "$WORK/hu-inf.h5" -o "$WORK/x-dicom" --png "$WORK/x.png"
    expect_rc "export-dicom of an image with an infinity" 1
    expect_no_file "export-dicom of an image with an infinity" "$WORK/x-dicom"
    expect_no_file "export-dicom of an image with an infinity: no PNG" "$WORK/x.png"
    leftovers=$(ls -a "$WORK" | grep -F '.x-dicom.tmp' || true)
    if [ -z "$leftovers" ]; then
      pass "refused series leave no staging directory"
    else
      fail "staging directories left: $leftovers"
    fi
    # 40000 HU does not fit: clamped, with a warning
    cp "$WORK/hu.h5" "$WORK/hu-hot.h5"
    "$PY" -c 'import sys, h5py; f = h5py.File(sys.argv[1], "r+"); f["image"][0, 10, 11] = 40000.0; f.close()' "$WORK/hu-hot.h5"
    run export-dicom "$WORK/hu-hot.h5" -o "$WORK/hot-dicom"
    expect_rc "export-dicom of 40000 HU" 0
    expect_stderr "export-dicom of 40000 HU warns" "warning"
    expect_stderr "export-dicom of 40000 HU warns" "0 voxels below -33792 HU and 1 above 31743 HU"
    expect_file "export-dicom of 40000 HU" "$WORK/hot-dicom/CT00001.dcm"
    if "$PY" -c 'import pydicom' >/dev/null 2>&1; then
      v=$("$PY" -c 'import sys, pydicom; d = pydicom.dcmread(sys.argv[1]); print(int(d.pixel_array[10, 11]))' "$WORK/hot-dicom/CT00001.dcm" 2>/dev/null)
      if [ "$v" = 32767 ]; then
        pass "40000 HU is stored as 32767 (31743 HU)"
      else
        fail "40000 HU stored as '$v', expected 32767"
      fi
    fi
  fi

  # derived series of denoised images
  if [ -f "$WORK/ct-model.h5" ] && [ -f "$WORK/mr-model.h5" ]; then
    run ct "$WORK/parallel.h5" -o "$WORK/ct-dn-d.h5" --denoise "$WORK/ct-model.h5" --dicom "$WORK/ct-dn-dicom"
    expect_rc "ct --denoise --dicom" 0
    expect_stdout "ct --denoise --dicom" "CT Image Storage, DERIVED\\SECONDARY"
    run mr "$WORK/mr.h5" -o "$WORK/mr-dn-d.h5" --denoise "$WORK/mr-model.h5" --dicom "$WORK/mr-dn-dicom"
    expect_rc "mr --denoise --dicom" 0
    expect_stdout "mr --denoise --dicom" "MR Image Storage, DERIVED\\SECONDARY"
    if command -v dcmdump >/dev/null 2>&1; then
      expect_dump "ct --denoise --dicom" "$WORK/ct-dn-dicom/CT00001.dcm" ImageType 'DERIVED\SECONDARY\AXIAL'
      expect_dump "ct --denoise --dicom" "$WORK/ct-dn-dicom/CT00001.dcm" SeriesNumber 2
      expect_dump "mr --denoise --dicom" "$WORK/mr-dn-dicom/MR00001.dcm" ImageType 'DERIVED\SECONDARY\OTHER'
    fi
    if command -v dciodvfy >/dev/null 2>&1; then
      expect_dciodvfy "derived CT series" "$WORK/ct-dn-dicom/CT00001.dcm"
      expect_dciodvfy "derived MR series" "$WORK/mr-dn-dicom/MR00001.dcm"
    fi
  fi
fi

# The demo's new outputs (the shipped models from $WORK/models, random ones)
if [ -f "$WORK/models/ct-denoise.h5" ] && [ -f "$WORK/mr-model.h5" ]; then
  cp "$WORK/mr-model.h5" "$WORK/models/mr-denoise.h5"
  run_models "$WORK/models" demo -o "$WORK/demo3" --size 48
  expect_rc "demo with (random) shipped models" 0
  for f in demo-ct.h5 demo-recon.h5 demo-ct-denoised.h5 demo-mr.h5 demo-mr-recon.h5 demo-mr-denoised.h5; do
    expect_file "demo writes $f" "$WORK/demo3/$f"
  done
  expect_stdout "demo says where everything went" "demo: everything is in $WORK/demo3:"
  run info "$WORK/demo3/demo-ct-denoised.h5"
  expect_stdout "demo: the denoised CT image is in HU" "units         HU"
  if [ "$have_dicom" -eq 1 ]; then
    for s in demo-ct-dicom/CT00001.dcm demo-ct-denoised-dicom/CT00001.dcm demo-mr-dicom/MR00001.dcm demo-mr-denoised-dicom/MR00001.dcm; do
      expect_file "demo writes $s" "$WORK/demo3/$s"
      if command -v dciodvfy >/dev/null 2>&1; then
        expect_dciodvfy "demo series $(dirname "$s")" "$WORK/demo3/$s"
      fi
    done
    if command -v dcmdump >/dev/null 2>&1; then
      expect_dump "demo: the denoised series joins the study" "$WORK/demo3/demo-ct-denoised-dicom/CT00001.dcm" \
        StudyInstanceUID "$(dump_value "$WORK/demo3/demo-ct-dicom/CT00001.dcm" StudyInstanceUID)"
    fi
  fi
  if [ "$have_png" -eq 1 ]; then
    for p in demo-ct.png demo-ct-denoised.png demo-mr.png demo-mr-denoised.png; do
      expect_png "demo writes $p" "$WORK/demo3/$p" 48 48
    done
  fi
  # a second run replaces the demo's own outputs
  run_models "$WORK/models" demo -o "$WORK/demo3" --size 48 -q
  expect_rc "demo again into the same directory" 0
  if [ -s "$WORK/stdout" ]; then
    fail "demo -q printed to stdout"
  else
    pass "demo -q prints nothing"
  fi
  # ... but not a directory of someone else's files
  if [ "$have_dicom" -eq 1 ]; then
    echo "not the demo's" >"$WORK/demo3/demo-ct-dicom/notes.txt"
    run_models "$WORK/models" demo -o "$WORK/demo3" --size 48 -q
    expect_rc "demo over a foreign file in its series directory" 1
    expect_file "demo keeps a foreign file" "$WORK/demo3/demo-ct-dicom/notes.txt"
  fi
fi
# the demo without any model: no denoising, a note
mkdir -p "$WORK/empty-models"
run_models "$WORK/empty-models" demo -o "$WORK/demo4" --size 40
expect_rc "demo without the shipped models" 0
expect_stderr "demo without the shipped models" "not denoised"
expect_no_file "demo without the shipped models" "$WORK/demo4/demo-ct-denoised.h5"
expect_file "demo without the shipped models" "$WORK/demo4/demo-mr-recon.h5"
if [ "$have_dicom" -eq 1 ]; then
  expect_file "demo without models: DICOM" "$WORK/demo4/demo-mr-dicom/MR00001.dcm"
fi

# ---- progress bar: on a terminal only ----------------------------------------
if [ -s "$WORK/stderr" ] && grep -q 'filter+backproject' "$WORK/stderr"; then
  fail "a progress bar was drawn although stderr is not a terminal"
else
  pass "no progress bar when stderr is not a terminal"
fi
if command -v script >/dev/null 2>&1 &&
  script -qec true /dev/null >/dev/null 2>&1; then
  script -qec "'$TOOL' ct '$WORK/cone.h5' -o '$WORK/tty.h5' --size 48" /dev/null >"$WORK/tty-out" 2>&1
  if grep -q 'filter+backproject' "$WORK/tty-out" && grep -q '%' "$WORK/tty-out"; then
    pass "a progress bar on a terminal"
  else
    fail "no progress bar on a terminal"
    sed 's/^/    | /' "$WORK/tty-out" | head -n 5
  fi
  # the bar's line is erased before the summary
  if tr '\r' '\n' <"$WORK/tty-out" | grep -q '^.\[Kct: cone'; then
    pass "the progress line is erased at the end"
  else
    fail "the progress line is not erased before the summary"
    od -c "$WORK/tty-out" | tail -n 5 | sed 's/^/    | /'
  fi
  script -qec "'$TOOL' ct '$WORK/cone.h5' -o '$WORK/tty.h5' --size 48 -q" /dev/null >"$WORK/tty-out" 2>&1
  if [ -s "$WORK/tty-out" ]; then
    fail "ct -q on a terminal printed something"
    sed 's/^/    | /' "$WORK/tty-out" | head -n 5
  else
    pass "ct -q on a terminal draws no progress bar"
  fi
else
  echo "SKIP: progress bar on a terminal: script(1) not available"
fi

# ---- Ctrl-C: exit status 130, nothing left behind -----------------------------
# The reconstruction of a cone scan on a large grid, interrupted after a
# second. A shell starts background jobs with SIGINT ignored (which
# clara-recon respects), so the job is started with SIGINT at its default.
if env --default-signal=INT true >/dev/null 2>&1; then
  sigdefault=env
elif [ "$PY" != no ] && "$PY" -c 'import signal' >/dev/null 2>&1; then
  sigdefault=python
else
  sigdefault=
fi
if [ -z "$sigdefault" ]; then
  echo "SKIP: Ctrl-C test: neither env --default-signal nor python3 to undo the shell's SIGINT ignore"
else
  cancel_done=0
  for size in 256 384 512; do
    rm -rf "$WORK/cancel.h5" "$WORK/cancel-dicom" "$WORK/cancel.png"
    set -- ct "$WORK/cone.h5" -o "$WORK/cancel.h5" --size "$size"
    [ "$have_dicom" -eq 1 ] && set -- "$@" --dicom "$WORK/cancel-dicom"
    [ "$have_png" -eq 1 ] && set -- "$@" --png "$WORK/cancel.png"
    if [ "$sigdefault" = env ]; then
      env --default-signal=INT "$TOOL" "$@" >"$WORK/stdout" 2>"$WORK/stderr" &
    else
      "$PY" -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])' "$TOOL" "$@" >"$WORK/stdout" 2>"$WORK/stderr" &
    fi
    pid=$!
    sleep 1
    kill -INT "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
    if [ "$rc" -eq 0 ]; then
      echo "  the --size $size reconstruction ended within a second: a bigger one"
      continue
    fi
    cancel_done=1
    expect_rc "Ctrl-C during ct --size $size" 130
    expect_stderr "Ctrl-C during ct" "cancelled"
    expect_no_file "Ctrl-C during ct: no image" "$WORK/cancel.h5"
    expect_no_file "Ctrl-C during ct: no DICOM series" "$WORK/cancel-dicom"
    expect_no_file "Ctrl-C during ct: no PNG" "$WORK/cancel.png"
    break
  done
  if [ "$cancel_done" -eq 0 ]; then
    echo "SKIP: Ctrl-C test: even the --size 512 reconstruction ended within a second, so the signal came too late to test cancellation"
  fi
fi
rm -rf "$WORK/cancel.h5" "$WORK/cancel-dicom" "$WORK/cancel.png"

# no temporary files left behind by any of the writers
leftovers=$(find "$WORK" -name '*.tmp*' | head -n 5)
if [ -n "$leftovers" ]; then
  fail "temporary files left behind: $leftovers"
else
  pass "no temporary files left behind"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
