"""Held-out evaluation of an exported denoiser against the noisy input and
classical denoisers tuned on training slices (grid search).

    python3 models/train/evaluate.py --modality ct --model models/ct-denoise.h5 \
        --json models/train/results-ct.json --update-model

Metrics (skimage.metrics), per held-out test slice, then averaged:
- CT: HU clipped to [-1024, 1900], data_range 2924; against the full-dose
  FBP (primary: what the net learns) and against the original HU image.
- MR: data_range = the slice's ground-truth maximum; against the
  reconstruction of the noise-free k-space.
The classical denoisers work on the same normalised image as the net
(CT: (HU - offset) / scale; MR: divided by the slice's percentile), so
their tuned parameters are in those units. The net is run from the
exported HDF5 file (torch_net.denoise, float64).
CT bias: mean of (output - target) over water-like uniform regions
(common.water_mask of the original HU image).
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import torch_net  # noqa: E402


def classical(name, x, p):
    from scipy import ndimage
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle
    if name == "gaussian":
        return ndimage.gaussian_filter(x, p["sigma"], mode="nearest")
    if name == "tv":
        return denoise_tv_chambolle(x, weight=p["weight"])
    if name == "nlm":
        return denoise_nl_means(x, patch_size=p["patch_size"],
                                patch_distance=p["patch_distance"], h=p["h"],
                                fast_mode=True)
    raise ValueError(name)


GRIDS = {
    "gaussian": [{"sigma": s} for s in (0.25, 0.35, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0,
                                        2.5, 3.0)],
    "tv": [{"weight": w} for w in (0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08,
                                   0.1, 0.13, 0.16, 0.2)],
    "nlm": [{"patch_size": ps, "patch_distance": 6, "h": h}
            for ps in (5, 7)
            for h in (0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.12, 0.15)],
}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--modality", choices=("ct", "mr"), required=True)
    ap.add_argument("--model", help="the exported model file (HDF5)")
    ap.add_argument("--tune-only", action="store_true",
                    help="only run the grid search and cache its result in "
                         "CACHE_DIR/tuned-MODALITY.json (no model needed; "
                         "normalisation: CT fixed -1000/1000, MR 99th "
                         "percentile, the models' settings)")
    ap.add_argument("--cache-dir", default="/tmp/clara-denoise")
    ap.add_argument("--json", help="results file to write")
    ap.add_argument("--tune-slices", type=int, default=8,
                    help="training slices (evenly spaced) for the grid search")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--update-model", action="store_true",
                    help="write heldout_* attributes into /provenance")
    args = ap.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    mod = args.modality
    data, _ = common.load_data(mod, args.cache_dir)
    splits = common.split_indices(mod)
    if args.tune_only:
        net = None
        meta = ({"normalisation": "fixed", "input_offset": -1000.0,
                 "input_scale": 1000.0} if mod == "ct" else
                {"normalisation": "percentile", "input_percentile": 99.0})
    else:
        net = torch_net.build_torch(args.model)
        meta = net[1]
    if mod == "ct":
        noisy, target = data["quarter"], data["full"]
    else:
        noisy, target = data["noisy"], data["truth"]

    def norm(z):
        return torch_net.normalisation_of(meta, noisy[z])

    # --- grid search on training slices --------------------------------
    tr = splits["train"]
    tune = [tr[i] for i in np.linspace(0, len(tr) - 1, args.tune_slices)
            .round().astype(int)]
    tuned, tuning = {}, {}
    t0 = time.time()
    cache = os.path.join(args.cache_dir, f"tuned-{mod}.json")
    key = {k: meta[k] for k in ("normalisation", "input_offset",
                                "input_scale", "input_percentile")
           if k in meta}
    key.update(tune=tune)
    key = json.loads(json.dumps(key))
    if os.path.exists(cache):
        with open(cache) as f:
            c = json.load(f)
        if c["key"] == key:
            for name, grid in json.loads(json.dumps(GRIDS)).items():
                if c.get("grids", {}).get(name) == grid:
                    tuned[name] = c["tuned"][name]
                    tuning[name] = c["tuning"][name]
                    print(f"{name}: grid search result from {cache}: "
                          f"{tuned[name]}")
    for name, grid in GRIDS.items():
        if name in tuned:
            continue
        scores = []
        for p in grid:
            s = []
            for z in tune:
                off, sc = norm(z)
                xn = (noisy[z].astype(np.float64) - off) / sc
                out = classical(name, xn, p) * sc + off
                s.append(common.metrics(mod, out, target[z])[0])
            scores.append(float(np.mean(s)))
        k = int(np.argmax(scores))
        tuned[name] = grid[k]
        tuning[name] = [{"params": g, "train_psnr": sc}
                        for g, sc in zip(grid, scores)]
        print(f"{name}: best {grid[k]} (training PSNR {scores[k]:.2f} dB; "
              f"edge of grid: {k in (0, len(grid) - 1)})", flush=True)
    print(f"grid search {time.time() - t0:.0f} s", flush=True)
    with open(cache, "w") as f:
        json.dump({"key": key, "grids": GRIDS, "tuned": tuned,
                   "tuning": tuning}, f, indent=1)
    if args.tune_only:
        return

    # --- held-out test slab ---------------------------------------------
    methods = ["input", "gaussian", "tv", "nlm", "net"]
    if mod == "ct":
        # not a denoiser: the noise-free FBP, i.e. the best any denoiser
        # can do against the (noisy) full-dose target
        methods.append("ceiling")
    refs = {"target": target}
    if mod == "ct":
        refs["original"] = data["hu"]
        refs["clean_fbp"] = data["clean"]
    per = {r: {m: [] for m in methods} for r in refs}
    if mod == "mr":
        # the head only (see common.mr_foreground): no Rician background
        per["foreground"] = {m: [] for m in methods}
    bias = {m: [] for m in methods}
    bias_clean = {m: [] for m in methods}
    bias_w = []
    t0 = time.time()
    for z in splits["test"]:
        off, sc = norm(z)
        xn = (noisy[z].astype(np.float64) - off) / sc
        outs = {"input": noisy[z].astype(np.float64),
                "net": torch_net.denoise(net, noisy[z])}
        if mod == "ct":
            outs["ceiling"] = data["clean"][z].astype(np.float64)
        for name in ("gaussian", "tv", "nlm"):
            outs[name] = classical(name, xn, tuned[name]) * sc + off
        for r, ref in refs.items():
            for m in methods:
                if r == "clean_fbp" and m == "ceiling":
                    continue
                per[r][m].append(common.metrics(mod, outs[m], ref[z]))
        if mod == "mr":
            fg = common.mr_foreground(target[z])
            for m in methods:
                per["foreground"][m].append(
                    common.metrics(mod, outs[m], target[z], mask=fg))
        if mod == "ct":
            w = common.water_mask(data["hu"][z])
            bias_w.append(int(w.sum()))
            for m in methods:
                bias[m].append(float((outs[m] - target[z])[w].mean()))
                bias_clean[m].append(float((outs[m] - data["clean"][z])[w].mean()))
    print(f"test slab {time.time() - t0:.0f} s", flush=True)

    res = {"modality": mod, "model": os.path.relpath(args.model, common.REPO),
           "model_sha256": common.sha256_file(args.model),
           "test_slices": splits["test"], "tune_slices": tune,
           "tuned": tuned, "tuning": tuning, "metrics": {}}
    for r in per:
        res["metrics"][r] = {}
        for m in methods:
            if not per[r][m]:
                continue
            a = np.array(per[r][m])
            res["metrics"][r][m] = {"psnr": float(a[:, 0].mean()),
                                    "ssim": float(a[:, 1].mean()),
                                    "psnr_min": float(a[:, 0].min()),
                                    "per_slice_psnr": [float(v) for v in a[:, 0]]}
    if mod == "ct":
        wsum = np.array(bias_w, np.float64)
        res["bias"] = {
            "mask": "original HU: 5x5 local mean in [-20, 80] HU, 5x5 local "
                    "sd < 40 HU, eroded 5x5",
            "pixels_per_slice": bias_w,
            "vs_target": {m: {"mean": float(np.sum(np.array(bias[m]) * wsum) / wsum.sum()),
                              "max_abs_slice": float(np.max(np.abs(bias[m]))),
                              "per_slice": bias[m]} for m in methods},
            "vs_clean_fbp": {m: {"mean": float(np.sum(np.array(bias_clean[m]) * wsum) / wsum.sum()),
                                 "max_abs_slice": float(np.max(np.abs(bias_clean[m])))}
                             for m in methods},
        }
    mt = res["metrics"]["target"]
    best_cl = max(("gaussian", "tv", "nlm"), key=lambda m: mt[m]["psnr"])
    res["summary"] = {
        "net_minus_input_db": mt["net"]["psnr"] - mt["input"]["psnr"],
        "best_classical": best_cl,
        "net_minus_best_classical_db": mt["net"]["psnr"] - mt[best_cl]["psnr"],
        "ssim_input": mt["input"]["ssim"], "ssim_net": mt["net"]["ssim"],
    }
    with open(args.json, "w") as f:
        json.dump(res, f, indent=1)

    for r in per:
        print(f"against {r}:")
        for m in res["metrics"][r]:
            v = res["metrics"][r][m]
            extra = ""
            if m in tuned:
                extra = " " + json.dumps(tuned[m])
            print(f"  {m:9s} PSNR {v['psnr']:6.2f} dB  SSIM {v['ssim']:.4f}{extra}")
    print("summary:", json.dumps(res["summary"]))
    if mod == "ct":
        print("bias vs target (HU):", {m: round(v["mean"], 2) for m, v in
                                       res["bias"]["vs_target"].items()},
              "max |slice| net", round(res["bias"]["vs_target"]["net"]["max_abs_slice"], 2))

    if args.update_model:
        import export
        s = res["summary"]
        prov = {
            "heldout_slices": common_ranges(splits["test"]),
            "heldout_reference": ("full-dose FBP (HU clipped to [-1024, 1900], "
                                  "data_range 2924)" if mod == "ct" else
                                  "noise-free reconstruction (data_range = "
                                  "slice maximum)"),
            "heldout_psnr_input": mt["input"]["psnr"],
            "heldout_psnr_net": mt["net"]["psnr"],
            "heldout_ssim_input": mt["input"]["ssim"],
            "heldout_ssim_net": mt["net"]["ssim"],
            "heldout_best_classical": f"{best_cl} {json.dumps(tuned[best_cl])}",
            "heldout_psnr_best_classical": mt[best_cl]["psnr"],
            "heldout_ssim_best_classical": mt[best_cl]["ssim"],
            "heldout_gain_db": s["net_minus_input_db"],
            "heldout_gain_over_classical_db": s["net_minus_best_classical_db"],
        }
        if mod == "ct":
            mo = res["metrics"]["original"]
            prov["heldout_psnr_input_vs_original"] = mo["input"]["psnr"]
            prov["heldout_psnr_net_vs_original"] = mo["net"]["psnr"]
            prov["heldout_psnr_ceiling_noise_free_fbp"] = mt["ceiling"]["psnr"]
            prov["heldout_bias_hu"] = res["bias"]["vs_target"]["net"]["mean"]
            prov["heldout_bias_hu_max_slice"] = \
                res["bias"]["vs_target"]["net"]["max_abs_slice"]
        export.update_provenance(args.model, prov)
        res["model_sha256_after_update"] = common.sha256_file(args.model)
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
        print(f"updated /provenance of {args.model}")


def common_ranges(idx):
    import train
    return train._ranges(list(idx))


if __name__ == "__main__":
    main()
