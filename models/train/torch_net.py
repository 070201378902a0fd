"""PyTorch side of the clara-recon denoiser models.

- :class:`DnCNN`: the trainable net (Conv3x3 + ReLU, (L-2) x [Conv3x3 + BN +
  ReLU], Conv3x3), predicting the noise (residual learning).
- :func:`fold_layers`: the net as plain conv layers with batch norm folded
  in (what ``export.py`` writes).
- :func:`read_model` / :func:`build_torch`: read one of our HDF5 model files
  (docs/FORMATS.md, "Denoiser model file") and build an equivalent
  ``torch.nn.Sequential`` of ``Conv2d(in, out, 3, padding=1)`` and ReLUs.
- :func:`denoise`: apply a model file to an image exactly as the docs define
  it (normalisation, residual, mapping back), by default in float64.

Usable without the rest of the pipeline, e.g. by a benchmark::

    from torch_net import denoise
    out = denoise("models/ct-denoise.h5", image_hu)   # [ny][nx] or [nz][ny][nx]
"""

import math

import numpy as np
import torch
import torch.nn as nn


class DnCNN(nn.Module):
    """DnCNN-style residual net; ``forward`` returns the noise estimate."""

    def __init__(self, layers=10, channels=32, batch_norm=True):
        super().__init__()
        if layers < 2:
            raise ValueError("layers >= 2 expected")
        self.layers_n = layers
        self.channels = channels
        self.batch_norm = batch_norm
        mods = [nn.Conv2d(1, channels, 3, padding=1, bias=True),
                nn.ReLU(inplace=True)]
        for _ in range(layers - 2):
            mods.append(nn.Conv2d(channels, channels, 3, padding=1,
                                  bias=not batch_norm))
            if batch_norm:
                mods.append(nn.BatchNorm2d(channels))
            mods.append(nn.ReLU(inplace=True))
        mods.append(nn.Conv2d(channels, 1, 3, padding=1, bias=True))
        self.body = nn.Sequential(*mods)

    def forward(self, x):
        return self.body(x)


def fold_layers(model):
    """Returns ``[(weight [out][in][3][3], bias [out], activation), ...]``
    as float64 numpy arrays, with every BatchNorm (eval statistics) folded
    into the convolution before it."""
    mods = list(model.body if isinstance(model, DnCNN) else model)
    layers = []
    i = 0
    while i < len(mods):
        conv = mods[i]
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"unexpected module {conv!r} at {i}")
        assert conv.kernel_size == (3, 3) and conv.padding == (1, 1)
        assert conv.stride == (1, 1) and conv.dilation == (1, 1)
        assert conv.groups == 1
        w = conv.weight.detach().double().cpu().numpy().copy()
        b = (conv.bias.detach().double().cpu().numpy().copy()
             if conv.bias is not None else np.zeros(w.shape[0]))
        i += 1
        if i < len(mods) and isinstance(mods[i], nn.BatchNorm2d):
            bn = mods[i]
            g = (bn.weight.detach().double().cpu().numpy()
                 if bn.affine else np.ones(w.shape[0]))
            beta = (bn.bias.detach().double().cpu().numpy()
                    if bn.affine else np.zeros(w.shape[0]))
            mean = bn.running_mean.detach().double().cpu().numpy()
            var = bn.running_var.detach().double().cpu().numpy()
            s = g / np.sqrt(var + bn.eps)
            w = w * s[:, None, None, None]
            b = (b - mean) * s + beta
            i += 1
        act = "none"
        if i < len(mods) and isinstance(mods[i], nn.ReLU):
            act = "relu"
            i += 1
        layers.append((w, b, act))
    return layers


def _decode(v):
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray) and v.shape == ():
        return _decode(v[()])
    if isinstance(v, np.generic):
        return v.item()
    return v


def read_model(path):
    """Reads a model file. Returns ``(meta, layers)``: ``meta`` holds the
    root attributes (plus ``provenance``, a dict), ``layers`` a list of
    ``(weight float32 [out][in][3][3], bias float32 [out], activation)``."""
    import h5py
    with h5py.File(path, "r") as f:
        meta = {k: _decode(v) for k, v in f.attrs.items()}
        if meta.get("format") != "clara-recon-denoiser":
            raise ValueError(f"{path}: not a clara-recon denoiser file")
        if int(meta.get("format_version", -1)) != 1:
            raise ValueError(f"{path}: format_version "
                             f"{meta.get('format_version')} is not 1")
        n = int(meta["layers"])
        layers = []
        for k in range(n):
            g = f["layers"][str(k)]
            if _decode(g.attrs["kind"]) != "conv3x3":
                raise ValueError(f"{path}: /layers/{k}: unknown kind")
            act = _decode(g.attrs["activation"])
            if act not in ("relu", "none"):
                raise ValueError(f"{path}: /layers/{k}: unknown activation")
            w = np.asarray(g["weight"][()], np.float32)
            b = np.asarray(g["bias"][()], np.float32)
            if w.ndim != 4 or w.shape[2:] != (3, 3) or b.shape != (w.shape[0],):
                raise ValueError(f"{path}: /layers/{k}: bad shapes "
                                 f"{w.shape} {b.shape}")
            if layers and layers[-1][0].shape[0] != w.shape[1]:
                raise ValueError(f"{path}: /layers/{k}: channels do not chain")
            layers.append((w, b, act))
        if layers[0][0].shape[1] != 1 or layers[-1][0].shape[0] != 1:
            raise ValueError(f"{path}: first in / last out must be 1")
        meta["provenance"] = ({k: _decode(v) for k, v in
                               f["provenance"].attrs.items()}
                              if "provenance" in f else {})
    return meta, layers


def layers_to_torch(layers, dtype=torch.float64):
    """A ``torch.nn.Sequential`` of ``Conv2d(in, out, 3, padding=1)`` (+ ReLU)
    with the given weights, in ``dtype``, in eval mode."""
    mods = []
    for w, b, act in layers:
        conv = nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1, bias=True)
        with torch.no_grad():
            conv.weight.copy_(torch.as_tensor(np.asarray(w), dtype=torch.float64))
            conv.bias.copy_(torch.as_tensor(np.asarray(b), dtype=torch.float64))
        mods.append(conv)
        if act == "relu":
            mods.append(nn.ReLU())
    return nn.Sequential(*mods).to(dtype).eval()


def build_torch(path, dtype=torch.float64):
    """Reads ``path`` and returns ``(net, meta)``; ``net`` maps a normalised
    ``[N][1][ny][nx]`` tensor to the raw net output (the noise estimate when
    ``meta["residual"] == 1``)."""
    meta, layers = read_model(path)
    return layers_to_torch(layers, dtype), meta


def percentile_value(img, q):
    """docs/FORMATS.md: the value at rank round((n-1) q / 100) of the n
    sorted values (round half away from zero); p <= 0 -> 1."""
    v = np.sort(np.asarray(img, np.float64).ravel())
    r = (v.size - 1) * float(q) / 100.0
    p = float(v[int(math.floor(r + 0.5))])
    return p if p > 0 else 1.0


def normalisation_of(meta, image_slice):
    """(offset, scale) such that x_n = (x - offset) / scale for one slice."""
    if meta["normalisation"] == "fixed":
        return float(meta["input_offset"]), float(meta["input_scale"])
    if meta["normalisation"] == "percentile":
        return 0.0, percentile_value(image_slice, float(meta["input_percentile"]))
    raise ValueError(f"unknown normalisation {meta['normalisation']!r}")


@torch.no_grad()
def denoise(model, image, dtype=torch.float64):
    """Applies a model (a path, or ``(net, meta)`` from :func:`build_torch`)
    to ``image`` (``[ny][nx]`` or ``[nz][ny][nx]``, each slice on its own).
    Returns a float64 numpy array of the same shape."""
    net, meta = build_torch(model, dtype) if isinstance(model, str) else model
    x = np.asarray(image)
    flat = x.ndim == 2
    if flat:
        x = x[np.newaxis]
    out = np.empty(x.shape, np.float64)
    for z in range(x.shape[0]):
        xs = np.asarray(x[z], np.float64)
        off, scale = normalisation_of(meta, x[z])
        xn = torch.as_tensor((xs - off) / scale, dtype=dtype)[None, None]
        y = net(xn)
        yn = xn - y if int(meta["residual"]) == 1 else y
        out[z] = yn[0, 0].double().cpu().numpy() * scale + off
    return out[0] if flat else out
