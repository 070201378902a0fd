#!/bin/sh
# The FBP tests again with the portable (auto-vectorised) kernels, so that
# both kernel sets are checked on machines that pick the AVX-512 ones.
CLARA_RECON_CPU_KERNELS=portable exec "${top_builddir:-.}/tests/test_fbp"
