"""Trains a DnCNN-style denoiser for libclara-recon on data simulated with
the library itself (see common.py and models/README.md).

    python3 models/train/train.py --modality ct --out /tmp/clara-denoise/ct.pt
    python3 models/train/train.py --modality mr --out /tmp/clara-denoise/mr.pt

CT: quarter-dose FBP (HU) -> full-dose FBP (HU), "fixed" normalisation
x_n = (HU - input_offset) / input_scale. MR: noisy magnitude -> noise-free
magnitude, "percentile" normalisation (each slice divided by the value at
rank round((n-1) q / 100) of its sorted values, computed on the noisy
input). The net predicts the noise: loss = MSE(net(x_n), x_n - y_n).
Training uses random patches of the training slices only; the validation
slab picks the best checkpoint, the test slab is left for evaluate.py.
"""

import argparse
import datetime
import os
import shlex
import sys
import time

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from torch_net import DnCNN  # noqa: E402


def log(*a):
    print(*a, flush=True)


def prepare(modality, data, args):
    """Returns the normalised input/target slices of every split and the
    normalisation record."""
    splits = common.split_indices(modality)
    if modality == "ct":
        x, y = data["quarter"], data["full"]
        norm = {"kind": "fixed", "offset": args.ct_offset,
                "scale": args.ct_scale}
        xs = (x.astype(np.float64) - args.ct_offset) / args.ct_scale
        ys = (y.astype(np.float64) - args.ct_offset) / args.ct_scale
        body = data["full"] > -500.0
    else:
        x, y = data["noisy"], data["truth"]
        norm = {"kind": "percentile", "percentile": args.mr_percentile}
        p = np.array([common.percentile_value(x[z], args.mr_percentile)
                      for z in range(x.shape[0])])
        xs = x.astype(np.float64) / p[:, None, None]
        ys = y.astype(np.float64) / p[:, None, None]
        body = data["truth"] > 0.1 * data["truth"].max(axis=(1, 2),
                                                          keepdims=True)
    out = {}
    for name, idx in splits.items():
        out[name] = (xs[idx].astype(np.float32), ys[idx].astype(np.float32),
                     body[idx])
    return out, norm, splits


class PatchSampler:
    def __init__(self, x, y, body, patch, rng, body_fraction=0.9):
        self.x, self.y, self.patch, self.rng = x, y, patch, rng
        n, ny, nx = x.shape
        h = patch // 2
        self.centres = []
        for z in range(n):
            m = np.zeros((ny, nx), bool)
            m[h:ny - patch + h + 1, h:nx - patch + h + 1] = True
            c = np.argwhere(body[z] & m)
            self.centres.append(c)
        self.body_fraction = body_fraction

    def batch(self, size):
        n, ny, nx = self.x.shape
        P, h = self.patch, self.patch // 2
        bx = np.empty((size, 1, P, P), np.float32)
        by = np.empty((size, 1, P, P), np.float32)
        for i in range(size):
            z = self.rng.integers(n)
            c = self.centres[z]
            if len(c) and self.rng.random() < self.body_fraction:
                cy, cx = c[self.rng.integers(len(c))]
                y0, x0 = cy - h, cx - h
            else:
                y0 = self.rng.integers(ny - P + 1)
                x0 = self.rng.integers(nx - P + 1)
            a = self.x[z, y0:y0 + P, x0:x0 + P]
            b = self.y[z, y0:y0 + P, x0:x0 + P]
            k = self.rng.integers(8)           # dihedral augmentation
            if k & 4:
                a, b = a.T, b.T
            a, b = np.rot90(a, k & 3), np.rot90(b, k & 3)
            bx[i, 0], by[i, 0] = a, b
        return torch.from_numpy(bx), torch.from_numpy(by)


@torch.no_grad()
def validate(model, x, y):
    model.eval()
    se = 0.0
    for z in range(x.shape[0]):
        xt = torch.from_numpy(x[z])[None, None]
        out = xt - model(xt)
        se += float(((out - torch.from_numpy(y[z])[None, None]) ** 2).mean())
    model.train()
    return se / x.shape[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--modality", choices=("ct", "mr"), required=True)
    ap.add_argument("--out", required=True, help="checkpoint (.pt) to write")
    ap.add_argument("--cache-dir", default="/tmp/clara-denoise",
                    help="where the simulated data set is cached")
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--patch", type=int, default=48)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--iters", type=int, default=6000)
    ap.add_argument("--iters-per-epoch", type=int, default=500,
                    help="iterations between validations ('epoch')")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-final", type=float, default=1e-5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-minutes", type=float, default=0,
                    help="stop early after this wall time (0: never)")
    ap.add_argument("--ct-offset", type=float, default=-1000.0)
    ap.add_argument("--ct-scale", type=float, default=1000.0)
    ap.add_argument("--mr-percentile", type=float, default=99.0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    t0 = time.time()
    data, meta = common.load_data(args.modality, args.cache_dir, log)
    log(f"data ready in {time.time() - t0:.1f} s")
    sets, norm, splits = prepare(args.modality, data, args)
    xt, yt, bt = sets["train"]
    xv, yv, _ = sets["val"]
    log(f"train slices {len(splits['train'])}, val {splits['val'][0]}.."
        f"{splits['val'][-1]}, test {splits['test'][0]}..{splits['test'][-1]}")

    model = DnCNN(args.layers, args.channels, batch_norm=True)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=args.iters, eta_min=args.lr_final)
    sampler = PatchSampler(xt, yt, bt, args.patch, rng)
    lossf = nn.MSELoss()

    noisy_val = float(np.mean([(xv[z] - yv[z]).astype(np.float64).var() +
                               (xv[z] - yv[z]).astype(np.float64).mean() ** 2
                               for z in range(len(xv))]))
    log(f"val MSE of the input itself (normalised): {noisy_val:.3e}")

    t_train = time.time()
    best = (float("inf"), None, 0)
    run_loss, iters_done, history = 0.0, 0, []
    model.train()
    for it in range(1, args.iters + 1):
        bx, by = sampler.batch(args.batch)
        bx = bx.to(memory_format=torch.channels_last)
        by = by.to(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(bx), bx - by)
        loss.backward()
        opt.step()
        sched.step()
        run_loss += loss.item()
        iters_done = it
        elapsed = time.time() - t_train
        stop = args.max_minutes and elapsed > 60 * args.max_minutes
        if it % args.iters_per_epoch == 0 or it == args.iters or stop:
            v = validate(model, xv, yv)
            ep = it / args.iters_per_epoch
            history.append((it, run_loss / args.iters_per_epoch, v))
            log(f"it {it:6d} ({ep:.1f} ep) {elapsed:7.1f} s lr "
                f"{sched.get_last_lr()[0]:.2e} train {run_loss / args.iters_per_epoch:.3e} "
                f"val {v:.3e} ({10 * np.log10(noisy_val / v):+.2f} dB vs input)")
            run_loss = 0.0
            if v < best[0]:
                best = (v, {k: t.detach().clone()
                            for k, t in model.state_dict().items()}, it)
        if stop:
            log(f"stopping early at {elapsed:.0f} s (--max-minutes)")
            break
    train_seconds = time.time() - t_train
    log(f"trained {iters_done} iterations in {train_seconds:.0f} s; best val "
        f"at it {best[2]}")

    patches = iters_done * args.batch
    npix = xt.size
    epochs = patches * args.patch ** 2 / npix
    if args.modality == "ct":
        training_data = (
            f"Cranium.inv3 (Debian invesalius-examples, ProMED CT 0051, "
            f"108x256x256 int16 HU, {meta['spacing'][0]:.4f} mm pixels, "
            f"{meta['spacing'][2]} mm slices); training slices "
            f"{_ranges(splits['train'])}; validation slab "
            f"{_ranges(splits['val'])}; held-out test slab "
            f"{_ranges(splits['test'])}. HU -> mu (mu_water "
            f"{common.CT_MU_WATER}/mm, clipped >= 0), libclara-recon Joseph "
            f"projector, fan-arc {common.CT_VIEWS} views/360 deg, "
            f"{common.CT_COLS} cols x {common.CT_DET_SPACING} rad, R "
            f"{common.CT_SOURCE_TO_ISO}/{common.CT_SOURCE_TO_DETECTOR} mm; "
            f"libclara-recon FBP ram-lak in HU; input quarter-dose FBP, "
            f"target full-dose FBP")
        noise = (f"Poisson I0 {common.CT_I0_QUARTER:g} (input) and "
                 f"{common.CT_I0_FULL:g} (target) photons/ray + Gaussian "
                 f"electronic noise sigma {common.CT_ELECTRONIC_SIGMA:g} "
                 f"counts; counts clipped >= {common.CT_COUNT_FLOOR:g} "
                 f"before the log")
    else:
        training_data = (
            f"ch2.nii.gz (Debian mricron-data, T1 template, 181x217x181, "
            f"1 mm); axial slices; training slices "
            f"{_ranges(splits['train'])}; validation slab "
            f"{_ranges(splits['val'])}; held-out test slab "
            f"{_ranges(splits['test'])}. Centred ortho FFT -> single-coil "
            f"k-space, reconstructed with libclara-recon MRPlan (ortho, "
            f"rss, magnitude); target: reconstruction of the noise-free "
            f"k-space")
        noise = (f"complex Gaussian k-space noise, sigma per real/imag "
                 f"component = {common.MR_NOISE_FRACTION:g} x the slice's "
                 f"ground-truth maximum (= image-domain sigma, ortho FFT)")
    prov = {
        "training_data": training_data,
        "noise": noise,
        "epochs": float(round(epochs, 2)),
        "iterations": int(iters_done),
        "best_iteration": int(best[2]),
        "epoch_definition": (f"patches x patch area / training pixels; "
                             f"{args.batch} patches of {args.patch}x"
                             f"{args.patch} per iteration"),
        "optimiser": (f"Adam lr {args.lr:g} cosine to {args.lr_final:g}, "
                      f"MSE on the residual, batch norm during training "
                      f"(folded at export), dihedral augmentation"),
        "command": "python3 models/train/train.py " + " ".join(
            shlex.quote(a) for a in sys.argv[1:]),
        "hardware": common.hardware(),
        "train_seconds": float(round(train_seconds, 1)),
        "created": datetime.datetime.now(datetime.timezone.utc)
        .isoformat(timespec="seconds"),
        "seed": int(args.seed),
        "val_history": " ".join(f"{i}:{v:.4e}" for i, _, v in history),
    }
    setup = {"modality": args.modality, "layers": args.layers,
             "channels": args.channels, "batch_norm": True,
             "normalisation": norm}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save({"state": best[1], "setup": setup, "provenance": prov},
               args.out)
    log(f"wrote {args.out}")


def _ranges(idx):
    idx = sorted(idx)
    out, a = [], idx[0]
    for p, q in zip(idx, idx[1:] + [None]):
        if q != p + 1:
            out.append(f"{a}-{p}" if a != p else f"{a}")
            a = q
    return ",".join(out)


if __name__ == "__main__":
    main()
