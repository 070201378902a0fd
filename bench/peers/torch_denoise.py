#!/usr/bin/env python3
"""PyTorch (CPU or CUDA) running the same denoiser as libclara-recon.

The targets: the CPU backend's clara_denoise must be at least 1.5x faster
than PyTorch on the CPU running the same network with the same number of
threads on a 512 x 512 slice; the CUDA backend must reach at least
PyTorch-with-cuDNN's throughput at batch 1 and 16 in FP32.

`clara-recon-bench denoise` runs this script after timing the library and
prints the ratio; it hands over the model file, the input slices it timed
(raw float32 [batch][size][size]) and its own output, so both run on the
same data and the outputs are compared. The script can also run alone.

What it does:

1. builds the network of a model file (docs/FORMATS.md, "Denoiser model
   file") with h5py: torch.nn.Conv2d(cin, cout, 3, padding=1) per layer,
   followed by ReLU where the layer says "relu", float32, eval mode;
2. wraps it in the file's normalisation and residual exactly as the library
   does: fixed, x_n = (x - input_offset) / input_scale and out = out_n *
   input_scale + input_offset; percentile, p = the value of rank
   round((n - 1) q / 100) of each slice's sorted values (1 if p <= 0),
   x_n = x / p and out = out_n * p; residual, out_n = x_n - net(x_n);
3. torch.set_num_threads(--threads), torch.inference_mode(); times the
   whole call (normalisation included, as the library's clara_denoise)
   on the [batch, 1, size, size] input after --warmup untimed runs, median
   of --repeat runs, in PyTorch's default memory layout (NCHW) and in
   channels_last, and reports the faster of the two as PyTorch's time (on
   the development machine channels_last is 1.7-1.9x faster than NCHW for
   these nets);
   With --device cuda the model and input live on the GPU (cuDNN,
   torch.backends.cudnn.benchmark on, so cuDNN picks its fastest
   algorithms during the warm-ups) and each timed run is what the
   library's host-to-host clara_denoise does: copy the input to the device,
   run, copy the result back, synchronise. --precision fp32 turns TF32 off
   (plain FP32, what the library's FP32 computes), tf32 allows TF32 in cuDNN
   and cuBLAS, fp16 runs the network in half precision (normalisation and
   residual in FP32, as the library's FP16 mode). On the CPU only fp32
   exists.
4. with --ours, compares its output with the library's: the largest
   absolute difference relative to the largest |value| of PyTorch's output,
   and the relative L2 difference.

--write-random PATH --layers L --width C writes a random DnCNN-shaped model
file (1 -> C -> ... -> C -> 1, ReLU on all but the last layer, He-uniform
weights, small biases, fixed normalisation offset 0 and scale 1000 as for CT
in HU, residual) for timing before a trained model exists, and exits.

Prints one line of text, or one JSON object with --json. Exit status: 0,
2 for a usage error, 77 when torch, h5py or numpy is missing.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

SKIP = 77

try:
    import numpy as np
except ImportError:  # pragma: no cover
    print("torch_denoise: SKIP: numpy is not installed")
    sys.exit(SKIP)
try:
    import h5py
except ImportError:  # pragma: no cover
    print("torch_denoise: SKIP: h5py is not installed (pip install h5py)")
    sys.exit(SKIP)
try:
    import torch
except ImportError:  # pragma: no cover
    print("torch_denoise: SKIP: torch is not installed (pip install torch)")
    sys.exit(SKIP)


def write_random(path, layers, width, seed, modality):
    """A random model file following docs/FORMATS.md."""
    rng = np.random.default_rng(seed)
    ch = [1] + [width] * (layers - 1) + [1]
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "clara-recon-denoiser"
        f.attrs["format_version"] = np.int32(1)
        f.attrs["architecture"] = "random-dncnn"
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
        g = f.create_group("layers")
        for k in range(layers):
            cin, cout = ch[k], ch[k + 1]
            a = math.sqrt(6.0 / (9.0 * cin))
            lg = g.create_group(str(k))
            lg.attrs["kind"] = "conv3x3"
            lg.attrs["activation"] = "relu" if k + 1 < layers else "none"
            lg.create_dataset(
                "weight",
                data=rng.uniform(-a, a, (cout, cin, 3, 3)).astype(np.float32))
            lg.create_dataset(
                "bias", data=rng.uniform(-0.05, 0.05, cout).astype(np.float32))
        p = f.create_group("provenance")
        p.attrs["training_data"] = "none: random weights for benchmarking"
        p.attrs["command"] = " ".join(sys.argv)


def text_attr(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0]
        return v.decode() if isinstance(v, bytes) else str(v)
    return str(v)


def num_attr(v):
    return float(np.asarray(v).reshape(-1)[0])


class Denoiser(torch.nn.Module):
    """The model file's network with its normalisation and residual."""

    def __init__(self, path):
        super().__init__()
        with h5py.File(path, "r") as f:
            a = f.attrs
            self.residual = int(num_attr(a["residual"])) == 1
            self.norm = text_attr(a["normalisation"])
            if self.norm == "fixed":
                self.offset = num_attr(a["input_offset"])
                self.scale = num_attr(a["input_scale"])
            else:
                self.q = num_attr(a["input_percentile"])
            n = int(num_attr(a["layers"]))
            mods = []
            self.layers, self.width, self.flops = n, 0, 0.0
            for k in range(n):
                g = f["layers"][str(k)]
                w = np.asarray(g["weight"], dtype=np.float32)
                b = np.asarray(g["bias"], dtype=np.float32)
                conv = torch.nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1)
                with torch.no_grad():
                    conv.weight.copy_(torch.from_numpy(w))
                    conv.bias.copy_(torch.from_numpy(b))
                mods.append(conv)
                if text_attr(g.attrs["activation"]) == "relu":
                    mods.append(torch.nn.ReLU(inplace=True))
                self.width = max(self.width, w.shape[0], w.shape[1])
                self.flops += 2.0 * 9.0 * w.shape[0] * w.shape[1]
        self.net = torch.nn.Sequential(*mods).eval()
        self.dtype = torch.float32

    def half_net(self):
        """Runs the convolutions in FP16 (normalisation stays FP32)."""
        self.net = self.net.half()
        self.dtype = torch.float16
        return self

    def scales(self, x):
        """Per-slice (offset, scale) of the normalisation, [B, 1, 1, 1]."""
        b = x.shape[0]
        if self.norm == "fixed":
            off = torch.full((b, 1, 1, 1), self.offset)
            sc = torch.full((b, 1, 1, 1), self.scale)
            return off, sc
        flat = x.reshape(b, -1)
        n = flat.shape[1]
        rank = int(math.floor((n - 1) * self.q / 100.0 + 0.5))
        p = torch.kthvalue(flat, rank + 1, dim=1).values.double()
        p = torch.where(p > 0, p, torch.ones_like(p))
        return torch.zeros(b, 1, 1, 1), p.reshape(b, 1, 1, 1).float()

    def forward(self, x):
        off, sc = self.scales(x)
        off, sc = off.to(x.device), sc.to(x.device)
        xn = (x - off) / sc
        y = self.net(xn.to(self.dtype)).float()
        if self.residual:
            y = xn - y
        return y * sc + off


def time_runs(fn, warmup, repeat, sync=None):
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        ts.append((time.perf_counter() - t0) * 1e3)
    return ts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="model file (HDF5)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--input", help="raw float32 [batch][size][size] input "
                    "(default: noise of 20 HU on a disc)")
    ap.add_argument("--ours", help="raw float32 output of libclara-recon for "
                    "the same input, to compare with")
    ap.add_argument("--layout", choices=["best", "nchw", "channels_last"],
                    default="best")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--precision", choices=["fp32", "tf32", "fp16"],
                    default="fp32")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--write-random", metavar="PATH")
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--width", type=int, default=48)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--modality", choices=["ct", "mr"], default="ct")
    a = ap.parse_args()

    if a.write_random:
        if a.layers < 1 or a.layers > 64 or a.width < 1 or a.width > 256:
            ap.error("--layers 1..64 and --width 1..256")
        write_random(a.write_random, a.layers, a.width, a.seed, a.modality)
        print(f"torch_denoise: wrote {a.write_random}: {a.layers} layers, "
              f"width {a.width}, random weights (seed {a.seed})")
        return 0
    if not a.model:
        ap.error("--model is required (or --write-random)")
    if a.size < 1 or a.batch < 1 or a.threads < 1 or a.repeat < 1:
        ap.error("--size, --batch, --threads and --repeat must be >= 1")

    if a.device == "cpu" and a.precision != "fp32":
        ap.error("--precision tf32 and fp16 need --device cuda")
    if a.device == "cuda" and not torch.cuda.is_available():
        print("torch_denoise: SKIP: torch sees no CUDA device")
        return SKIP
    torch.set_num_threads(a.threads)
    model = Denoiser(a.model)
    sync = None
    if a.device == "cuda":
        torch.backends.cudnn.benchmark = True
        tf32 = a.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        if a.precision == "fp16":
            model.half_net()
        model = model.to("cuda")
        sync = torch.cuda.synchronize
    shape = (a.batch, 1, a.size, a.size)
    n = a.batch * a.size * a.size
    if a.input:
        x = np.fromfile(a.input, dtype=np.float32)
        if x.size != n:
            ap.error(f"--input holds {x.size} floats, {n} expected")
        x = x.reshape(shape)
    else:
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[:a.size, :a.size] - a.size / 2
        disc = np.where(xx**2 + yy**2 < (0.45 * a.size)**2, 40.0, -1000.0)
        x = (disc + rng.normal(0, 20, (a.batch, a.size, a.size)))
        x = x.astype(np.float32).reshape(shape)
    xt = torch.from_numpy(x)
    if a.device == "cuda":
        xt = xt.pin_memory()

    results = {}
    layouts = ["nchw", "channels_last"] if a.layout == "best" else [a.layout]
    out = None
    with torch.inference_mode():
        for lay in layouts:
            fmt = (torch.channels_last if lay == "channels_last" else
                   torch.contiguous_format)
            m = model.to(memory_format=fmt)
            if a.device == "cuda":
                # Host to host, as clara_denoise: upload, run, download.
                def run(m=m, fmt=fmt):
                    xi = xt.to("cuda", non_blocking=True)
                    return m(xi.contiguous(memory_format=fmt)).cpu()
            else:
                xi = xt.contiguous(memory_format=fmt)

                def run(m=m, xi=xi):
                    return m(xi)
            ts = time_runs(run, a.warmup, a.repeat, sync)
            results[lay] = ts
            if out is None:
                out = run().contiguous().numpy().reshape(-1)
    best = min(results, key=lambda k: statistics.median(results[k]))
    ts = results[best]
    med = statistics.median(ts)
    rep = {
        "peer": "torch",
        "torch_version": torch.__version__,
        "device": (torch.cuda.get_device_name(0) if a.device == "cuda"
                   else "cpu"),
        "precision": a.precision,
        "threads": torch.get_num_threads(),
        "layers": model.layers,
        "max_channels": model.width,
        "size": a.size,
        "batch": a.batch,
        "layout": best,
        "median_ms": med,
        "min_ms": min(ts),
        "max_ms": max(ts),
        "repeat": a.repeat,
        "warmup": a.warmup,
        "layouts": {k: statistics.median(v) for k, v in results.items()},
        "gflops": model.flops * n / (med * 1e-3) / 1e9,
        "max_rel_diff": None,
        "rel_l2": None,
    }
    if a.ours:
        ours = np.fromfile(a.ours, dtype=np.float32)
        if ours.size != n:
            ap.error(f"--ours holds {ours.size} floats, {n} expected")
        ref = out.astype(np.float64)
        d = ours.astype(np.float64) - ref
        rep["max_rel_diff"] = float(np.abs(d).max() / np.abs(ref).max())
        rep["rel_l2"] = float(np.linalg.norm(d) / np.linalg.norm(ref))
    if a.json:
        print(json.dumps(rep))
    else:
        lays = ", ".join(f"{k} {v:.1f} ms" for k, v in rep["layouts"].items())
        where = (f"{rep['device']} {a.precision}" if a.device == "cuda" else
                 f"{rep['threads']} threads")
        print(f"torch {torch.__version__}: {a.batch} x {a.size}^2, "
              f"{model.layers} layers x {model.width}, {where}: median {med:.1f} ms ({best}; {lays}), "
              f"{rep['gflops']:.1f} GFLOP/s")
        if a.ours:
            print(f"  vs ours: max |diff| / max |torch| "
                  f"{rep['max_rel_diff']:.2e}, rel L2 {rep['rel_l2']:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
