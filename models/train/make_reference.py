"""Writes tests/data/denoise_ref.h5: small input/output pairs for the C
denoiser test, made from the exported model files.

    python3 models/train/make_reference.py

For each modality: ``/<m>/input`` float32 [1][ny][nx], a crop of a
held-out test slice (CT: quarter-dose FBP in HU; MR: noisy magnitude), and
``/<m>/output`` float32, the PyTorch output of the exported weights (the
HDF5 file read back, run in float64 with the normalisation of
docs/FORMATS.md; for MR the percentile is computed on the crop itself, as
the library does for the image it is given), cast to float32. Attributes
name the model file and its sha256.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import torch_net  # noqa: E402

CROPS = {  # modality: (slice, y0, x0, ny, nx)
    "ct": (48, 96, 24, 40, 48),
    "mr": (96, 60, 12, 40, 48),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cache-dir", default="/tmp/clara-denoise")
    ap.add_argument("--out", default=os.path.join(common.REPO, "tests", "data",
                                                  "denoise_ref.h5"))
    args = ap.parse_args()
    import h5py
    import torch
    torch.set_num_threads(2)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["description"] = (
            "Reference pairs for the C denoiser: output = PyTorch (float64) "
            "run of the named model file on input, per docs/FORMATS.md, cast "
            "to float32. Made by models/train/make_reference.py.")
        for mod, (z, y0, x0, ny, nx) in CROPS.items():
            model = os.path.join(common.REPO, "models", f"{mod}-denoise.h5")
            data, _ = common.load_data(mod, args.cache_dir)
            assert z in common.split_indices(mod)["test"]
            src = data["quarter"] if mod == "ct" else data["noisy"]
            x = np.ascontiguousarray(src[z, y0:y0 + ny, x0:x0 + nx],
                                     np.float32)[np.newaxis]
            net = torch_net.build_torch(model, torch.float64)
            y = torch_net.denoise(net, x.astype(np.float64)).astype(np.float32)
            g = f.create_group(mod)
            g.create_dataset("input", data=x)
            g.create_dataset("output", data=y)
            g.attrs["model"] = f"models/{mod}-denoise.h5"
            g.attrs["model_sha256"] = common.sha256_file(model)
            g.attrs["source"] = (f"held-out test slice {z}, rows {y0}..{y0 + ny - 1}, "
                                 f"cols {x0}..{x0 + nx - 1}, " +
                                 ("quarter-dose FBP in HU" if mod == "ct"
                                  else "noisy magnitude"))
            off, scale = torch_net.normalisation_of(net[1], x[0])
            g.attrs["normalisation_offset"] = np.float64(off)
            g.attrs["normalisation_scale"] = np.float64(scale)
            g.attrs["computed_in"] = "torch float64"
            print(f"{mod}: input {x.shape} [{x.min():.1f}, {x.max():.1f}], "
                  f"output [{y.min():.1f}, {y.max():.1f}], mean |in-out| "
                  f"{np.abs(x - y).mean():.2f}, scale {scale}")
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
