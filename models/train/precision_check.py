"""The shipped denoisers' FP32 and FP16 results on the CUDA backend against
the CPU backend's FP32, on held-out slices, through the library's Python
bindings.

    CLARA_RECON_CUDA_PLUGIN=... python3 models/train/precision_check.py \
        --modality ct --slices 40-55

For each slice set: the largest and the root-mean-square difference to the
CPU output (CT in HU; MR relative to the largest output value), the
relative L2 difference, and the mean PSNR (common.metrics: CT against the
full-dose FBP, MR against the noise-free image) of each output. The CUDA
context is whatever the plugin provides: a GPU, or the host emulation of
tests/cuda_emu (`make check-cuda-emu` builds
tests/cuda_emu/libclara-cuda-emu.so), which runs the plugin's own kernel
code with the same half-precision arithmetic. The data come from
common.load_data (the cached simulation, or a new one).
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def parse_slices(text):
    out = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modality", choices=("ct", "mr"), required=True)
    ap.add_argument("--slices", required=True,
                    help="e.g. 40-55 or 86,92,98,104")
    ap.add_argument("--cache-dir", default="/tmp/clara-denoise")
    a = ap.parse_args()

    cr = common._clara()
    data, _ = common.load_data(a.modality, a.cache_dir)
    zs = parse_slices(a.slices)
    if a.modality == "ct":
        x, ref = data["quarter"][zs], data["full"][zs]
    else:
        x, ref = data["noisy"][zs], data["truth"][zs]
    x = np.ascontiguousarray(x, np.float32)

    outs = {}
    with cr.Context(backend="cpu") as cpu, cr.Context(backend="cuda") as gpu:
        for name, ctx, prec in (("CPU fp32", cpu, "fp32"),
                                ("CUDA fp32", gpu, "fp32"),
                                ("CUDA fp16", gpu, "fp16")):
            d = cr.Denoiser.shipped(a.modality, ctx)
            d.set_precision(prec)
            t0 = time.time()
            outs[name] = d.denoise(x).astype(np.float64)
            d.close()
            print(f"{name}: {time.time() - t0:.1f} s", flush=True)

    base = outs["CPU fp32"]
    scale = 1.0 if a.modality == "ct" else float(np.abs(base).max())
    unit = "HU" if a.modality == "ct" else "of the maximum"
    for name, o in outs.items():
        d = o - base
        psnr = np.mean([common.metrics(a.modality, o[i], ref[i])[0]
                        for i in range(len(zs))])
        print(f"{name:9s} vs CPU fp32: max {np.abs(d).max() / scale:.3g} "
              f"{unit}, rms {np.sqrt(np.mean(d * d)) / scale:.3g} {unit}, "
              f"rel L2 {np.linalg.norm(d) / np.linalg.norm(base):.2e}; "
              f"PSNR {psnr:.3f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
