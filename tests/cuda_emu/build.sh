#!/bin/sh
# build.sh -- builds the CUDA plugin's sources against the host emulation
# of the CUDA runtime (see README.md). Called by `make check-cuda-emu`
# (tests/cuda_emu/cuda_emu.am), which sets:
#   NVCC CXX DEFS CUDA_CPPFLAGS CUDA_HOME FFTW3F_LIBS srcdir
# Arguments: OUT.so OBJDIR [SANITIZER-FLAGS] (for debugging by hand, e.g.
# '-fsanitize=address -fno-omit-frame-pointer'; the tests then need ASan's
# runtime in LD_PRELOAD, and with it a test that links libhdf5 was seen to
# hang at exit in libp11-kit's destructor here).
set -e
out=$1
obj=$2
san=${3:-}
mkdir -p "$obj"
# nvcc hands each flag to the host compiler separately (-Xcompiler splits
# at commas, so give -fsanitize one sanitizer at a time).
nvsan=
for f in $san; do
  nvsan="$nvsan -Xcompiler $f"
done
nv() {
  # shellcheck disable=SC2086
  $NVCC -std=c++17 -O2 -g -gencode arch=compute_80,code=sm_80 $DEFS \
    -I"$srcdir/include" -I"$srcdir/src/core" -I"$srcdir/src/cuda" \
    -I"$srcdir/tests/cuda_emu" $CUDA_CPPFLAGS -DCLARA_RECON_BUILDING \
    -Xcompiler -fPIC $nvsan "$@"
}
cxx() {
  # shellcheck disable=SC2086
  $CXX -std=c++17 -O2 -g -fPIC $san -I"$CUDA_HOME/include" \
    -I"$srcdir/tests/cuda_emu" "$@"
}
nv -c "$srcdir/tests/cuda_emu/fbp_emu.cu" -o "$obj/fbp_emu.o"
nv -c "$srcdir/tests/cuda_emu/mr_emu.cu" -o "$obj/mr_emu.o"
nv -c "$srcdir/tests/cuda_emu/nn_emu.cu" -o "$obj/nn_emu.o"
nv -c "$srcdir/src/cuda/plugin.cu" -o "$obj/plugin.o"
cxx -c "$srcdir/tests/cuda_emu/runtime.cc" -o "$obj/runtime.o"
cxx -c "$srcdir/tests/cuda_emu/fiber.cc" -o "$obj/fiber.o"
# shellcheck disable=SC2086
$CXX -shared $san -o "$out" "$obj/fbp_emu.o" "$obj/mr_emu.o" "$obj/nn_emu.o" \
  "$obj/plugin.o" "$obj/runtime.o" "$obj/fiber.o" $FFTW3F_LIBS -lpthread \
  -Wl,--no-undefined -Wl,--version-script="$srcdir/src/cuda/plugin.map"
