"""Writes a trained denoiser as a clara-recon model file (docs/FORMATS.md,
"Denoiser model file"): batch norm folded into the convolutions, weights as
float32 [out][in][3][3], biases float32 [out].

As a program it exports a checkpoint written by train.py::

    python3 models/train/export.py CHECKPOINT.pt models/ct-denoise.h5
"""

import argparse
import datetime
import json
import os
import platform
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_net import DnCNN, fold_layers  # noqa: E402

FORMAT = "clara-recon-denoiser"
FORMAT_VERSION = 1


def _attr(obj, key, value):
    """Writes one attribute: str as a string, bool/int as an integer,
    float as float64."""
    if isinstance(value, (bool, np.bool_)):
        obj.attrs[key] = np.int32(int(value))
    elif isinstance(value, (int, np.integer)):
        obj.attrs[key] = np.int64(value)
    elif isinstance(value, (float, np.floating)):
        obj.attrs[key] = np.float64(value)
    elif isinstance(value, str):
        obj.attrs[key] = value
    else:
        obj.attrs[key] = json.dumps(value, sort_keys=True)


def write_model(path, layers, modality, normalisation, *, input_offset=None,
                input_scale=None, input_percentile=None, residual=True,
                units=None, architecture="dncnn", provenance=None):
    """Writes ``layers`` (``[(weight, bias, activation), ...]``, e.g. from
    :func:`torch_net.fold_layers`) to ``path`` (atomically: a temporary
    file in the same directory, then a rename)."""
    import h5py
    if modality not in ("ct", "mr"):
        raise ValueError(f"modality: 'ct' or 'mr' expected, got {modality!r}")
    if not 1 <= len(layers) <= 64:
        raise ValueError("1 to 64 layers expected")
    prev_out = 1
    for k, (w, b, act) in enumerate(layers):
        w = np.asarray(w)
        if w.ndim != 4 or w.shape[2:] != (3, 3) or w.shape[1] != prev_out:
            raise ValueError(f"layer {k}: weight shape {w.shape} does not chain")
        if np.asarray(b).shape != (w.shape[0],):
            raise ValueError(f"layer {k}: bias shape {np.asarray(b).shape}")
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            raise ValueError(f"layer {k}: non-finite weight or bias")
        if act not in ("relu", "none"):
            raise ValueError(f"layer {k}: activation {act!r}")
        if not 1 <= w.shape[0] <= 256:
            raise ValueError(f"layer {k}: {w.shape[0]} channels")
        prev_out = w.shape[0]
    if prev_out != 1:
        raise ValueError("the last layer must have out = 1")

    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = np.int32(FORMAT_VERSION)
            f.attrs["architecture"] = architecture
            f.attrs["modality"] = modality
            f.attrs["residual"] = np.int32(1 if residual else 0)
            f.attrs["normalisation"] = normalisation
            if normalisation == "fixed":
                if not (np.isfinite(input_offset) and np.isfinite(input_scale)
                        and input_scale > 0):
                    raise ValueError("fixed: finite offset, scale > 0 expected")
                f.attrs["input_offset"] = np.float64(input_offset)
                f.attrs["input_scale"] = np.float64(input_scale)
            elif normalisation == "percentile":
                if not 0 < input_percentile <= 100:
                    raise ValueError("input_percentile in (0, 100] expected")
                f.attrs["input_percentile"] = np.float64(input_percentile)
            else:
                raise ValueError(f"normalisation {normalisation!r}")
            if units is not None:
                f.attrs["units"] = units
            f.attrs["layers"] = np.int32(len(layers))
            lg = f.create_group("layers")
            for k, (w, b, act) in enumerate(layers):
                g = lg.create_group(str(k))
                g.attrs["kind"] = "conv3x3"
                g.attrs["activation"] = act
                g.create_dataset("weight", data=np.asarray(w, np.float32))
                g.create_dataset("bias", data=np.asarray(b, np.float32))
            pg = f.create_group("provenance")
            for key, value in (provenance or {}).items():
                _attr(pg, key, value)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def update_provenance(path, values):
    """Adds or replaces attributes of ``/provenance`` in an existing file."""
    import h5py
    with h5py.File(path, "r+") as f:
        pg = f.require_group("provenance")
        for key, value in values.items():
            if key in pg.attrs:
                del pg.attrs[key]
            _attr(pg, key, value)


def software_versions():
    import h5py
    import torch
    return (f"python {platform.python_version()}, torch {torch.__version__}, "
            f"numpy {np.__version__}, h5py {h5py.__version__}")


def export_checkpoint(ckpt_path, out_path):
    """Exports a train.py checkpoint (model state + its recorded setup)."""
    import torch
    ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    a = ck["setup"]
    model = DnCNN(a["layers"], a["channels"], a["batch_norm"])
    model.load_state_dict(ck["state"])
    model.eval()
    layers = fold_layers(model)
    prov = dict(ck["provenance"])
    prov.setdefault("created", datetime.datetime.now(datetime.timezone.utc)
                    .isoformat(timespec="seconds"))
    prov.setdefault("software", software_versions())
    norm = a["normalisation"]
    write_model(out_path, layers, a["modality"], norm["kind"],
                input_offset=norm.get("offset"), input_scale=norm.get("scale"),
                input_percentile=norm.get("percentile"), residual=True,
                units="HU" if a["modality"] == "ct" else None,
                architecture="dncnn",
                provenance=prov)
    return layers


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("output")
    args = ap.parse_args()
    export_checkpoint(args.checkpoint, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
