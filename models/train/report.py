"""Prints the held-out metrics tables of models/README.md from the
results-*.json files that evaluate.py writes.

    python3 models/train/report.py
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = {"input": "noisy input", "gaussian": "Gaussian filter",
         "tv": "TV (Chambolle)", "nlm": "non-local means",
         "net": "**CNN (this model)**",
         "ceiling": "(noise-free FBP: the ceiling, not a denoiser)"}


def params(m, tuned):
    if m not in tuned:
        return ""
    return ", ".join(f"{k} {v}" for k, v in tuned[m].items())


def table(res, ref, title):
    mt = res["metrics"][ref]
    base = mt["input"]["psnr"]
    print(f"\n{title}\n")
    print("| method | tuned parameters | PSNR (dB) | gain vs input (dB) | "
          "SSIM | worst-slice PSNR (dB) |")
    print("|---|---|---|---|---|---|")
    for m in ("input", "gaussian", "tv", "nlm", "net", "ceiling"):
        if m not in mt or (ref == "clean_fbp" and m == "ceiling"):
            continue
        v = mt[m]
        print(f"| {NAMES[m]} | {params(m, res['tuned'])} | {v['psnr']:.2f} | "
              f"{v['psnr'] - base:+.2f} | {v['ssim']:.4f} | "
              f"{v['psnr_min']:.2f} |")


def main():
    for mod in ("ct", "mr"):
        path = os.path.join(HERE, f"results-{mod}.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            res = json.load(f)
        t = res["test_slices"]
        sl = f"slices {t[0]}-{t[-1]} ({len(t)} slices)"
        if mod == "ct":
            table(res, "target", f"CT, held-out {sl}, against the full-dose "
                  "FBP (primary)")
            table(res, "original", f"CT, held-out {sl}, against the original "
                  "HU image")
            table(res, "clean_fbp", f"CT, held-out {sl}, against the "
                  "noise-free FBP")
            b = res["bias"]
            print(f"\nCT bias in water-like regions ({b['mask']}; "
                  f"{sum(b['pixels_per_slice'])} pixels over {len(t)} slices)\n")
            print("| method | mean shift vs full-dose FBP (HU) | worst slice "
                  "(HU) | mean shift vs noise-free FBP (HU) |")
            print("|---|---|---|---|")
            for m in ("input", "gaussian", "tv", "nlm", "net"):
                v, c = b["vs_target"][m], b["vs_clean_fbp"][m]
                print(f"| {NAMES[m]} | {v['mean']:+.2f} | "
                      f"{v['max_abs_slice']:.2f} | {c['mean']:+.2f} |")
        else:
            table(res, "target", f"MR, held-out {sl}, against the noise-free "
                  "reconstruction (primary)")
            if "foreground" in res["metrics"]:
                table(res, "foreground", f"MR, held-out {sl}, head only "
                      "(common.mr_foreground), same data range")
        s = res["summary"]
        print(f"\nsummary: CNN {s['net_minus_input_db']:+.2f} dB over the "
              f"input, {s['net_minus_best_classical_db']:+.2f} dB over the "
              f"best classical ({s['best_classical']}); SSIM "
              f"{s['ssim_input']:.4f} -> {s['ssim_net']:.4f}")


if __name__ == "__main__":
    main()
