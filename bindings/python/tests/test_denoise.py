"""Tests of the denoiser in the Python bindings (Denoiser, denoise,
FBPPlan.set_denoiser, MRPlan.set_denoiser).

Run like the other binding tests:

    CLARA_RECON_LIB=$builddir/src/.libs/libclara-recon.so \
    PYTHONPATH=bindings/python python3 -m pytest -q bindings/python/tests

The models are random networks written with h5py in the layout of
docs/FORMATS.md ("Denoiser model file"). The independent reference is a
direct convolution with zero padding in numpy double precision (the library
runs Winograd F(4x4,3x3) in float32 on the CPU: relative L2 errors of
about 1e-7 to 2e-6, test_nn_cpu.c; the bound here is 1e-5 per slice).
"""

from __future__ import annotations

import gc
import os
import pathlib
import threading
from typing import Dict, List, Optional

import numpy as np
import pytest

import clara_recon as cr
from clara_recon import _lib

h5py = pytest.importorskip("h5py", reason="h5py writes the model files")

if not _lib.has("clara_denoise"):  # pragma: no cover
    pytest.skip("the loaded libclara-recon has no denoiser",
                allow_module_level=True)

TOL = 1e-5


# ---------------------------------------------------------------------------
# Random models and the numpy reference
# ---------------------------------------------------------------------------


def write_model(path, layers: int = 3, width: int = 4, modality: str = "ct",
                seed: int = 0, *, residual: bool = True,
                normalisation: Optional[str] = None, offset: float = -100.0,
                scale: float = 1000.0, percentile: float = 99.0,
                nan: bool = False, bias: float = 0.05) -> Dict:
    """Writes a random model file and returns what the reference needs.

    ReLU on every layer but the last, He-uniform weights, small biases.
    Normalisation "fixed" (offset, scale; units HU) by default for CT,
    "percentile" for MR. 'nan' puts a NaN into the last layer's weights.
    """
    if normalisation is None:
        normalisation = "fixed" if modality == "ct" else "percentile"
    rng = np.random.default_rng(seed)
    ch = [1] + [width] * (layers - 1) + [1]
    weights: List[np.ndarray] = []
    biases: List[np.ndarray] = []
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "clara-recon-denoiser"
        f.attrs["format_version"] = np.int32(1)
        f.attrs["architecture"] = "test-random"
        f.attrs["modality"] = modality
        f.attrs["residual"] = np.int32(1 if residual else 0)
        f.attrs["normalisation"] = normalisation
        if normalisation == "fixed":
            f.attrs["input_offset"] = float(offset)
            f.attrs["input_scale"] = float(scale)
        else:
            f.attrs["input_percentile"] = float(percentile)
        if modality == "ct":
            f.attrs["units"] = "HU"
        f.attrs["layers"] = np.int32(layers)
        for k in range(layers):
            g = f.create_group(f"layers/{k}")
            g.attrs["kind"] = "conv3x3"
            g.attrs["activation"] = "relu" if k + 1 < layers else "none"
            a = np.sqrt(6.0 / (9.0 * ch[k]))
            w = rng.uniform(-a, a, (ch[k + 1], ch[k], 3, 3)).astype(np.float32)
            b = rng.uniform(-bias, bias, ch[k + 1]).astype(np.float32)
            if nan and k + 1 == layers:
                w[0, 0, 1, 1] = np.nan
            g["weight"] = w
            g["bias"] = b
            weights.append(w.astype(np.float64))
            biases.append(b.astype(np.float64))
        f.create_group("provenance").attrs["training_data"] = \
            "random weights (test_denoise.py)"
    return {
        "path": str(path), "weights": weights, "biases": biases,
        "residual": residual, "normalisation": normalisation,
        "offset": offset, "scale": scale, "percentile": percentile,
        "modality": modality, "channels": ch,
    }


def conv3x3(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """PyTorch's Conv2d(cin, cout, 3, padding=1) on x [cin][ny][nx]."""
    cout, cin = w.shape[:2]
    ny, nx = x.shape[1:]
    pad = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    out = np.empty((cout, ny, nx))
    for o in range(cout):
        acc = np.full((ny, nx), b[o])
        for i in range(cin):
            for kh in range(3):
                for kw in range(3):
                    acc += w[o, i, kh, kw] * pad[i, kh:kh + ny, kw:kw + nx]
        out[o] = acc
    return out


def reference(m: Dict, image: np.ndarray) -> np.ndarray:
    """The model applied to every slice of image ([ny][nx], or
    [...][ny][nx]: all leading axes are slices), in double precision."""
    shape = np.shape(image)
    x = np.asarray(image, np.float64).reshape((-1,) + shape[-2:])
    out = np.empty_like(x)
    nl = len(m["weights"])
    for s in range(x.shape[0]):
        if m["normalisation"] == "fixed":
            off, sc = m["offset"], m["scale"]
        else:
            # docs/FORMATS.md: the value at rank round((n-1) q / 100)
            v = np.sort(x[s].ravel())
            p = v[int(round((v.size - 1) * m["percentile"] / 100.0))]
            off, sc = 0.0, (p if p > 0 else 1.0)
        xn = (x[s] - off) / sc
        h = xn[np.newaxis]
        for k, (w, b) in enumerate(zip(m["weights"], m["biases"])):
            h = conv3x3(h, w, b)
            if k + 1 < nl:
                h = np.maximum(h, 0.0)
        y = xn - h[0] if m["residual"] else h[0]
        out[s] = y * sc + off
    return out.reshape(shape)


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    """Every slice within TOL (relative L2) of the reference."""
    assert got.shape == want.shape
    g = got.reshape((-1,) + got.shape[-2:])
    w = want.reshape((-1,) + want.shape[-2:])
    for s in range(g.shape[0]):
        e = rel_l2(g[s], w[s])
        assert e < TOL, f"slice {s}: relative L2 error {e:.3g} >= {TOL}"


def ct_image(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Something like a CT slice in HU: air, water, bone, plus noise."""
    ny, nx = shape[-2:]
    yy, xx = np.mgrid[:ny, :nx]
    body = (((yy - ny / 2) / (0.4 * ny)) ** 2
            + ((xx - nx / 2) / (0.45 * nx)) ** 2 < 1)
    base = np.where(body, 40.0, -1000.0)
    base[(yy - ny // 3) ** 2 + (xx - nx // 2) ** 2 < (nx // 8) ** 2] = 900.0
    return base + 30.0 * rng.standard_normal(shape)


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Dict[str, Dict]:
    d = tmp_path_factory.mktemp("models")
    return {
        "ct": write_model(d / "ct.h5", 3, 4, "ct", seed=1),
        "ct_wide": write_model(d / "ct_wide.h5", 4, 16, "ct", seed=2,
                               bias=0.2),
        "ct_direct": write_model(d / "ct_direct.h5", 3, 8, "ct", seed=3,
                                 residual=False, offset=0.0, scale=500.0),
        "mr": write_model(d / "mr.h5", 3, 6, "mr", seed=4),
        "deep": write_model(d / "deep.h5", 12, 2, "ct", seed=5),
        "nan": write_model(d / "nan.h5", 3, 4, "ct", seed=6, nan=True),
    }


@pytest.fixture(scope="module")
def ctx():
    with cr.Context("cpu", threads=2) as c:
        yield c


def parallel_scan(n: int = 48):
    """A parallel-beam Shepp-Logan scan with an n x n, 1 mm grid."""
    cols = int(1.5 * n)
    geom = cr.Geometry("parallel", np.linspace(0, np.pi, 90, endpoint=False),
                       rows=1, cols=cols, det_spacing=1.0)
    vol = cr.Volume(n, n, 1, voxel=1.0)
    proj = cr.shepp_logan(2, radius=0.45 * n, scale=0.02).project(geom)
    return geom, vol, proj


# ---------------------------------------------------------------------------
# Loading and info
# ---------------------------------------------------------------------------


def test_info(models, ctx):
    m = models["ct_wide"]
    with cr.Denoiser(m["path"], ctx) as d:
        i = d.info
        assert isinstance(i, cr.DenoiserInfo)
        assert i.modality == "ct" and i.units == "HU"
        assert i.architecture == "test-random"
        assert i.layers == 4 and i.max_channels == 16
        assert i.receptive_field == 9
        assert i.residual is True
        ch = m["channels"]
        assert i.parameters == sum(ch[k + 1] * ch[k] * 9 + ch[k + 1]
                                   for k in range(4))
        assert i.flops_per_pixel == pytest.approx(
            sum(2 * 9 * ch[k] * ch[k + 1] for k in range(4)))
        assert i.training_data == "random weights (test_denoise.py)"
        assert d.path == m["path"] and d.name is None
        assert d.precision == "fp32" and d.backend == "cpu"
        assert "receptive_field=9" in repr(d)
    with cr.Denoiser(models["mr"]["path"], ctx) as d:
        assert d.info.modality == "mr" and d.info.units == ""
    with cr.Denoiser(models["ct_direct"]["path"], ctx) as d:
        assert d.info.residual is False


def test_load_forms(models, ctx):
    path = models["ct"]["path"]
    for d in (cr.Denoiser(path, ctx), cr.Denoiser.load(path, ctx),
              cr.Denoiser(pathlib.Path(path), ctx),
              cr.Denoiser(os.fsencode(path), ctx),
              cr.Denoiser(path, backend="cpu", threads=1)):
        with d:
            assert d.info.layers == 3
            assert d.path == path
    with pytest.raises(ValueError, match="backend and threads"):
        cr.Denoiser(path, ctx, backend="cpu")
    with pytest.raises(ValueError, match="backend and threads"):
        cr.Denoiser(path, ctx, threads=3)
    with pytest.raises(TypeError):
        cr.Denoiser(path, "cpu")  # type: ignore[arg-type]


def test_missing_file(tmp_path, ctx):
    missing = tmp_path / "no-such-model.h5"
    with pytest.raises(cr.ClaraError) as ei:
        cr.Denoiser(missing, ctx)
    e = ei.value
    assert e.name == "ERR_IO" and e.status == cr.Status.ERR_IO
    assert "cannot open" in e.message
    assert str(missing) in e.message
    assert e.function == "clara_denoiser_load"


def test_not_a_model(tmp_path, ctx):
    text = tmp_path / "text.h5"
    text.write_text("this is not HDF5\n")
    with pytest.raises(cr.ClaraError) as ei:
        cr.Denoiser(text, ctx)
    assert ei.value.name == "ERR_IO"
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["image"] = np.zeros((4, 4), np.float32)
    with pytest.raises(cr.ClaraError) as ei:
        cr.Denoiser(other, ctx)
    assert ei.value.name == "ERR_FORMAT" and "format" in ei.value.message


def test_nan_weight(models, ctx):
    with pytest.raises(cr.ClaraError) as ei:
        cr.Denoiser(models["nan"]["path"], ctx)
    assert ei.value.name == "ERR_FORMAT" and "NaN" in ei.value.message


def test_unsupported_version(tmp_path, models, ctx):
    path = tmp_path / "v2.h5"
    write_model(path, seed=7)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = np.int32(2)
    with pytest.raises(cr.ClaraError) as ei:
        cr.Denoiser(path, ctx)
    assert ei.value.name == "ERR_UNSUPPORTED"


def test_shipped(tmp_path, models, ctx, monkeypatch):
    monkeypatch.setenv("CLARA_RECON_MODELS", str(tmp_path))
    # nothing there yet: the message names the path tried
    with pytest.raises(cr.ClaraError) as ei:
        cr.Denoiser.shipped("mr", ctx)
    assert ei.value.name == "ERR_IO"
    assert str(tmp_path / "mr-denoise.h5") in ei.value.message
    write_model(tmp_path / "mr-denoise.h5", 3, 6, "mr", seed=4)
    write_model(tmp_path / "ct-denoise.h5", 3, 4, "ct", seed=1)
    rng = np.random.default_rng(0)
    img = ct_image(rng, 24, 30)
    with cr.Denoiser.shipped("ct", ctx) as d:
        assert d.name == "ct" and d.path is None
        assert d.info.modality == "ct"
        assert "shipped 'ct'" in repr(d)
        assert_close(d.denoise(img), reference(models["ct"], img))
    with cr.Denoiser.shipped("mr", backend="cpu") as d:
        assert d.info.modality == "mr"
    assert_close(cr.denoise(img, "ct", backend="cpu"),
                 reference(models["ct"], img))
    with pytest.raises(cr.ClaraError) as ei:
        cr.Denoiser.shipped("pet", ctx)
    assert ei.value.name == "ERR_INVALID_ARG" and "pet" in ei.value.message
    with pytest.raises(TypeError):
        cr.Denoiser.shipped(1, ctx)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Denoising against the reference
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["ct", "ct_wide", "ct_direct"])
def test_denoise_2d(models, ctx, key):
    m = models[key]
    rng = np.random.default_rng(11)
    img = ct_image(rng, 37, 45).astype(np.float32)
    with cr.Denoiser(m["path"], ctx) as d:
        out = d.denoise(img)
    assert out.shape == img.shape and out.dtype == np.float32
    assert out.flags.c_contiguous
    assert_close(out, reference(m, img))
    # the network did something
    assert rel_l2(out, img) > 1e-3


def test_denoise_3d(models, ctx):
    m = models["ct_wide"]
    rng = np.random.default_rng(12)
    stack = np.stack([ct_image(rng, 33, 28) * (1 + 0.5 * s)
                      for s in range(3)]).astype(np.float32)
    with cr.Denoiser(m["path"], ctx) as d:
        out = d.denoise(stack)
        # slice by slice: each slice on its own
        for s in range(3):
            np.testing.assert_allclose(d.denoise(stack[s]), out[s],
                                       rtol=1e-6, atol=1e-3)
    assert out.shape == stack.shape and out.dtype == np.float32
    assert_close(out, reference(m, stack))


def test_denoise_mr_percentile(models, ctx):
    m = models["mr"]
    rng = np.random.default_rng(13)
    # magnitude images of very different scales: the percentile makes the
    # network see the same thing
    base = np.abs(rng.standard_normal((40, 40)) + 3.0)
    stack = np.stack([base * 1e-3, base * 1e4]).astype(np.float32)
    with cr.Denoiser(m["path"], ctx) as d:
        out = d(stack)
    assert_close(out, reference(m, stack))
    assert rel_l2(out[1] / 1e4, out[0] / 1e-3) < TOL
    # a slice whose percentile is <= 0 uses p = 1
    neg = -np.abs(base).astype(np.float32)
    with cr.Denoiser(m["path"], ctx) as d:
        assert_close(d.denoise(neg), reference(m, neg))


def test_receptive_field_is_the_minimum(models, ctx):
    m = models["deep"]  # 12 layers: 25 x 25
    rng = np.random.default_rng(14)
    img = ct_image(rng, 25, 25)
    with cr.Denoiser(m["path"], ctx) as d:
        assert d.info.receptive_field == 25
        assert_close(d.denoise(img), reference(m, img))
        for shape in ((24, 25), (25, 24), (3, 24, 40)):
            with pytest.raises(cr.ClaraError) as ei:
                d.denoise(np.zeros(shape, np.float32))
            assert ei.value.name == "ERR_INVALID_ARG"
            assert "receptive field" in ei.value.message


# ---------------------------------------------------------------------------
# Input conversions
# ---------------------------------------------------------------------------


def test_dtype_and_order(models, ctx):
    m = models["ct"]
    rng = np.random.default_rng(15)
    img64 = ct_image(rng, 2, 30, 26)  # float64, C order
    want = None
    with cr.Denoiser(m["path"], ctx) as d:
        want = d.denoise(np.ascontiguousarray(img64, np.float32))
        before = img64.copy()
        inputs = {
            "float64": img64,
            "fortran": np.asfortranarray(img64.astype(np.float32)),
            "fortran float64": np.asfortranarray(img64),
            "strided": np.ascontiguousarray(
                np.repeat(img64.astype(np.float32), 2, axis=2))[:, :, ::2],
            "big-endian": img64.astype(">f4"),
            "list": img64.astype(np.float32).tolist(),
        }
        for what, x in inputs.items():
            out = d.denoise(x)
            assert out.dtype == np.float32, what
            assert out.shape == (2, 30, 26), what
            assert out.flags.c_contiguous, what
            np.testing.assert_array_equal(out, want, err_msg=what)
        np.testing.assert_array_equal(img64, before)  # input untouched
        # integers are converted too
        ints = np.round(img64).astype(np.int16)
        np.testing.assert_array_equal(
            d.denoise(ints), d.denoise(ints.astype(np.float32)))
        # a float32 C-contiguous input is not written to, and the result is
        # a new array
        x = np.ascontiguousarray(img64, np.float32)
        x_before = x.copy()
        out = d.denoise(x)
        assert not np.shares_memory(out, x)
        np.testing.assert_array_equal(x, x_before)
    assert_close(want, reference(m, np.float32(img64)))


def test_bad_arrays(models, ctx):
    with cr.Denoiser(models["ct"]["path"], ctx) as d:
        with pytest.raises(TypeError, match="complex"):
            d.denoise(np.zeros((16, 16), np.complex64))
        with pytest.raises(TypeError):
            d.denoise(np.array([["a"] * 16] * 16))
        with pytest.raises(ValueError, match="2-D array expected"):
            d.denoise(np.zeros(64, np.float32))
        with pytest.raises(ValueError, match="2-D array expected"):
            d.denoise(np.float32(1.0))
        with pytest.raises(cr.ClaraError) as ei:
            d.denoise(np.zeros((0, 16, 16), np.float32))
        assert ei.value.name == "ERR_INVALID_ARG"


def test_more_leading_axes(models, ctx):
    m = models["ct"]
    rng = np.random.default_rng(22)
    x = ct_image(rng, 2, 3, 20, 24).astype(np.float32)
    with cr.Denoiser(m["path"], ctx) as d:
        out = d.denoise(x)
        assert out.shape == x.shape
        np.testing.assert_array_equal(
            out, d.denoise(x.reshape(6, 20, 24)).reshape(x.shape))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixel(models, ctx, bad):
    img = np.zeros((2, 20, 24), np.float32)
    img[1, 5, 7] = bad
    with cr.Denoiser(models["ct"]["path"], ctx) as d:
        with pytest.raises(cr.ClaraError) as ei:
            d.denoise(img)
    e = ei.value
    assert e.name == "ERR_INVALID_ARG" and e.function == "clara_denoise"
    assert ("NaN" if np.isnan(bad) else "infinite") in e.message
    # named by its index: slice 1, y 5, x 7
    assert str(20 * 24 + 5 * 24 + 7) in e.message
    assert "slice 1, y 5, x 7" in e.message


# ---------------------------------------------------------------------------
# Precision, lifetime, threads
# ---------------------------------------------------------------------------


def test_precision(models, ctx):
    rng = np.random.default_rng(16)
    img = ct_image(rng, 20, 20)
    with cr.Denoiser(models["ct"]["path"], ctx) as d:
        ref = d.denoise(img)
        with pytest.raises(cr.ClaraError) as ei:
            d.set_precision("fp16")  # the CPU runs FP32 only
        assert ei.value.name == "ERR_UNSUPPORTED"
        assert d.precision == "fp32"
        np.testing.assert_array_equal(d.denoise(img), ref)  # unchanged
        d.set_precision("fp32")
        d.set_precision("FP32")
        assert d.precision == "fp32"
        with pytest.raises(ValueError, match="precision"):
            d.set_precision("fp64")
        with pytest.raises(TypeError):
            d.set_precision(None)  # type: ignore[arg-type]
        with pytest.raises(cr.ClaraError) as ei:
            d.set_precision(7)  # type: ignore[arg-type]
        assert ei.value.name == "ERR_INVALID_ARG"
    assert cr.PRECISIONS == ("fp32", "fp16")
    assert cr.MODALITIES == ("ct", "mr")


def test_close_and_lifetime(models):
    rng = np.random.default_rng(17)
    img = ct_image(rng, 20, 20)
    ctx = cr.Context("cpu", threads=1)
    d = cr.Denoiser(models["ct"]["path"], ctx)
    ctx.close()  # the denoiser keeps the C context alive
    ref = d.denoise(img)
    assert_close(ref, reference(models["ct"], img))
    d.close()
    d.close()  # idempotent
    assert d.closed and "closed" in repr(d)
    with pytest.raises(ValueError, match="closed"):
        d.denoise(img)
    with pytest.raises(ValueError, match="closed"):
        d.set_precision("fp32")
    # a closed context cannot load
    with pytest.raises(ValueError, match="closed"):
        cr.Denoiser(models["ct"]["path"], ctx)
    # garbage collection releases a denoiser that was never closed
    for _ in range(3):
        cr.Denoiser(models["ct"]["path"], backend="cpu")
    gc.collect()


def test_threads(models, ctx):
    rng = np.random.default_rng(18)
    imgs = [ct_image(rng, 2, 32, 32).astype(np.float32) for _ in range(4)]
    results: List[Optional[np.ndarray]] = [None] * 4
    errors: List[BaseException] = []
    with cr.Denoiser(models["ct_wide"]["path"], ctx) as d:
        want = [d.denoise(x) for x in imgs]

        def work(i: int) -> None:
            try:
                for _ in range(3):
                    results[i] = d.denoise(imgs[i])
            except BaseException as e:  # pragma: no cover
                errors.append(e)

        ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert not errors
    for got, w in zip(results, want):
        np.testing.assert_array_equal(got, w)


def test_progress_cancel(models):
    rng = np.random.default_rng(19)
    img = ct_image(rng, 4, 32, 32)
    stages: List[str] = []

    def cancel(stage: str, fraction: float) -> bool:
        stages.append(stage)
        return True

    with cr.Context("cpu", threads=1, progress=cancel) as c, \
            cr.Denoiser(models["ct"]["path"], c) as d:
        with pytest.raises(cr.ClaraError) as ei:
            d.denoise(img)
        assert ei.value.name == "ERR_CANCELLED"
        assert stages

    def boom(stage: str, fraction: float) -> bool:
        raise KeyError("from the callback")

    # an exception in the callback cancels and comes back to the caller
    with cr.Context("cpu", threads=1, progress=boom) as c, \
            cr.Denoiser(models["ct"]["path"], c) as d:
        with pytest.raises(KeyError, match="from the callback"):
            d.denoise(img)


def test_device_entry_on_cpu(models, ctx):
    a = np.zeros((16, 16), np.float32)
    with cr.Denoiser(models["ct"]["path"], ctx) as d:
        with pytest.raises(cr.ClaraError) as ei:
            d.denoise_device(a.ctypes.data, a.ctypes.data, a.shape)
        assert ei.value.name == "ERR_UNSUPPORTED"
        with pytest.raises(ValueError):
            d.denoise_device(a.ctypes.data, a.ctypes.data, (256,))


# ---------------------------------------------------------------------------
# The one-call function
# ---------------------------------------------------------------------------


def test_denoise_function(models, ctx):
    m = models["ct"]
    rng = np.random.default_rng(20)
    img = ct_image(rng, 2, 24, 24)
    want = reference(m, img)
    assert_close(cr.denoise(img, m["path"], backend="cpu", threads=1), want)
    assert_close(cr.denoise(img, pathlib.Path(m["path"])), want)
    with cr.Denoiser(m["path"], ctx) as d:
        assert_close(cr.denoise(img, d), want)
        with pytest.raises(ValueError):
            cr.denoise(img, d, backend="cpu")
    with pytest.raises(cr.ClaraError) as ei:
        cr.denoise(img, m["path"], backend="cpu", precision="fp16")
    assert ei.value.name == "ERR_UNSUPPORTED"
    with pytest.raises(cr.ClaraError) as ei:
        cr.denoise(img, os.path.join(os.path.dirname(m["path"]), "none.h5"))
    assert "cannot open" in ei.value.message


# ---------------------------------------------------------------------------
# Attached to plans
# ---------------------------------------------------------------------------


def test_fbp_plan_set_denoiser(models, ctx):
    m = models["ct_wide"]
    geom, vol, proj = parallel_scan(48)
    with cr.FBPPlan(ctx, geom, vol, hu=True) as plan:
        plain = plan.execute(proj)
        assert plan.denoiser is None
        d = cr.Denoiser(m["path"], ctx)
        plan.set_denoiser(d)
        assert plan.denoiser is d and "denoised" in repr(plan)
        expected = d.denoise(plain)
        d.close()  # the plan keeps its own reference
        del d
        gc.collect()
        out = plan.execute(proj)
        assert out.shape == plain.shape and out.dtype == np.float32
        np.testing.assert_allclose(out, expected, rtol=0,
                                   atol=1e-5 * float(np.abs(expected).max()))
        assert_close(out, reference(m, plain))
        assert rel_l2(out, plain) > 1e-3
        plan.set_denoiser(None)  # detach
        assert plan.denoiser is None
        np.testing.assert_array_equal(plan.execute(proj), plain)


def test_fbp_plan_set_denoiser_refusals(models, ctx):
    geom, vol, proj = parallel_scan(48)
    with cr.FBPPlan(ctx, geom, vol, hu=True) as plan, \
            cr.Denoiser(models["mr"]["path"], ctx) as mr:
        # modality mismatch
        with pytest.raises(cr.ClaraError) as ei:
            plan.set_denoiser(mr)
        assert ei.value.name == "ERR_INVALID_ARG"
        assert "the model is for mr" in ei.value.message
        assert plan.denoiser is None
        with pytest.raises(TypeError):
            plan.set_denoiser(models["ct"]["path"])  # type: ignore[arg-type]
    # mu (1/mm) output: CT models work in HU
    with cr.FBPPlan(ctx, geom, vol) as plan, \
            cr.Denoiser(models["ct"]["path"], ctx) as d:
        with pytest.raises(cr.ClaraError) as ei:
            plan.set_denoiser(d)
        assert "mu_water" in ei.value.message
    # another context
    with cr.Context("cpu", threads=1) as other, \
            cr.FBPPlan(ctx, geom, vol, hu=True) as plan, \
            cr.Denoiser(models["ct"]["path"], other) as d:
        with pytest.raises(cr.ClaraError) as ei:
            plan.set_denoiser(d)
        assert "another context" in ei.value.message
    # slices smaller than the receptive field
    small = cr.Volume(20, 20, 1, voxel=2.0)
    with cr.FBPPlan(ctx, geom, small, hu=True) as plan, \
            cr.Denoiser(models["deep"]["path"], ctx) as d:
        with pytest.raises(cr.ClaraError) as ei:
            plan.set_denoiser(d)
        assert "receptive field" in ei.value.message
    # closed objects
    d = cr.Denoiser(models["ct"]["path"], ctx)
    d.close()
    with cr.FBPPlan(ctx, geom, vol, hu=True) as plan:
        with pytest.raises(ValueError, match="closed"):
            plan.set_denoiser(d)
    with pytest.raises(ValueError, match="closed"):
        plan.set_denoiser(None)


def test_mr_plan_set_denoiser(models, ctx):
    m = models["mr"]
    rng = np.random.default_rng(21)
    geom = cr.MRGeometry(coils=3, nx=32, ny=28)
    k = (rng.standard_normal(geom.kspace_shape)
         + 1j * rng.standard_normal(geom.kspace_shape)).astype(np.complex64)
    with cr.MRPlan(ctx, geom) as plan, cr.Denoiser(m["path"], ctx) as d:
        plain = plan.execute(k)
        plan.set_denoiser(d)
        assert plan.denoiser is d and "denoised" in repr(plan)
        out = plan.execute(k)
        assert out.shape == plain.shape and out.dtype == np.float32
        np.testing.assert_allclose(out, d.denoise(plain), rtol=1e-6,
                                   atol=1e-6 * float(np.abs(plain).max()))
        assert_close(out, reference(m, plain))
        plan.set_denoiser(None)
        np.testing.assert_array_equal(plan.execute(k), plain)
    # a CT model, complex output
    with cr.MRPlan(ctx, geom) as plan, \
            cr.Denoiser(models["ct"]["path"], ctx) as ct:
        with pytest.raises(cr.ClaraError) as ei:
            plan.set_denoiser(ct)
        assert "the model is for ct" in ei.value.message
    with cr.MRPlan(ctx, geom, output_complex=True) as plan, \
            cr.Denoiser(m["path"], ctx) as d:
        with pytest.raises(cr.ClaraError) as ei:
            plan.set_denoiser(d)
        assert "complex" in ei.value.message
