"""Tests of the Python bindings of libclara-recon.

Run with CLARA_RECON_LIB pointing at the built library, e.g.

    CLARA_RECON_LIB=$builddir/src/.libs/libclara-recon.so \
    PYTHONPATH=bindings/python python3 -m pytest -q bindings/python/tests

The independent reference is scikit-image's radon()/iradon(). Its parallel
beam convention differs from the library's; the mapping, established from
skimage's source and checked here with an off-centre point
(test_skimage_convention_point), is:

  skimage radon(image, theta_deg) of an N x N image rotates about pixel
  (N//2, N//2) and puts that axis on detector bin N//2. With X = col - N//2
  and Y = row - N//2 (rows going down), bin = N//2 + X cos t - Y sin t.
  The library has s = x cos t + y sin t with y growing with iy. So:

    projections = sinogram.T                  ([views][cols])
    angles      = np.deg2rad(theta_deg)
    our image   = np.flipud(skimage image)    (y = -Y; or, equivalently,
                                                keep the image and negate
                                                the angles)
    and, for even N only, the half-pixel shift between N//2 and (N-1)/2:
    Volume.center = (-0.5, +0.5) pixels and det_offset[col] = -0.5 pixel
    (with the flip; (-0.5, -0.5) with negated angles). Odd N needs none.

  radon() sums over pixels, i.e. line integrals for 1 mm pixels: voxel 1,
  det_spacing 1.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import clara_recon as cr

try:  # the independent reference; the other tests run without it
    from skimage.data import shepp_logan_phantom
    from skimage.transform import iradon, radon, rescale
    HAVE_SKIMAGE = True
except ImportError:  # pragma: no cover
    HAVE_SKIMAGE = False

needs_skimage = pytest.mark.skipif(not HAVE_SKIMAGE,
                                   reason="scikit-image is not installed")


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def disc_mask(n: int, margin: float = 2.0) -> np.ndarray:
    """Pixels inside the inscribed circle (less a margin), for RMSEs."""
    c = (n - 1) / 2.0
    yy, xx = np.mgrid[:n, :n]
    return np.hypot(yy - c, xx - c) < n / 2.0 - margin


def rmse(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    d = np.asarray(a, np.float64)[mask] - np.asarray(b, np.float64)[mask]
    return float(np.sqrt(np.mean(d * d)))


def ours_from_skimage(sino: np.ndarray, theta_deg: np.ndarray, n: int,
                      **kw) -> np.ndarray:
    """Our FBP of a skimage sinogram [cols][views], returned in skimage's
    image frame (rows going down), with the mapping of the module doc."""
    h = 0.5 if n % 2 == 0 else 0.0
    img = cr.fbp(sino.T, np.deg2rad(theta_deg), size=n, voxel=1.0,
                 det_spacing=1.0, det_offset=-h, center=(-h, h, 0.0),
                 # radon(circle=True) data are zero outside the circle, and
                 # the last half pixel of the circle is outside the
                 # detector's reach: nothing is truncated in fact.
                 allow_truncation=True, backend="cpu", **kw)
    return img[::-1]


@pytest.fixture(scope="module")
def ctx():
    with cr.Context("cpu", threads=2) as c:
        yield c


@pytest.fixture(scope="module")
def sk_case():
    """The skimage Shepp-Logan phantom at 200 x 200, its radon() sinogram
    over 180 views and iradon()'s ramp reconstruction."""
    image = rescale(shepp_logan_phantom(), 0.5)  # 200 x 200, 0..1
    n = image.shape[0]
    theta = np.linspace(0.0, 180.0, 180, endpoint=False)
    sino = radon(image, theta=theta, circle=True)
    ref = iradon(sino, theta=theta, output_size=n, filter_name="ramp",
                 circle=True)
    return image, theta, sino, ref


# ---------------------------------------------------------------------------
# Against scikit-image
# ---------------------------------------------------------------------------


@needs_skimage
@pytest.mark.parametrize("n", [65, 64])
def test_skimage_convention_point(ctx, n):
    """radon() of an off-centre point lands where the mapping says, and our
    projector with that mapping puts it in the same place.

    The point is a small Gaussian blob (sigma 1.5 pixels) so that the
    centroid of each projection measures its position to a small fraction
    of a pixel whatever the interpolation of either projector."""
    row, col = 14.0, 40.0
    yy, xx = np.mgrid[:n, :n]
    img = np.exp(-((yy - row) ** 2 + (xx - col) ** 2) / (2 * 1.5 ** 2))
    c = n // 2
    img[(yy - c) ** 2 + (xx - c) ** 2 > (c - 1) ** 2] = 0.0  # radon(circle)
    theta = np.array([0.0, 30.0, 60.0, 90.0, 135.0, 200.0, 300.0])
    t = np.deg2rad(theta)
    sino = radon(img, theta=theta, circle=True)  # [cols][views]
    bins = np.arange(n)
    sk_pos = (sino * bins[:, None]).sum(0) / sino.sum(0)

    # the mapping, in closed form: bin = N//2 + X cos t - Y sin t
    expected = c + (col - c) * np.cos(t) - (row - c) * np.sin(t)
    np.testing.assert_allclose(sk_pos, expected, atol=0.02)

    h = 0.5 if n % 2 == 0 else 0.0
    for image, angles, center in (
            (img[::-1], t, (-h, h, 0.0)),   # flip the rows ...
            (img, -t, (-h, -h, 0.0))):      # ... or negate the angles
        geom = cr.Geometry("parallel", angles, 1, n, det_offset=(0.0, -h))
        with cr.Projector(ctx, geom, cr.Volume(n, n, 1, 1.0, center)) as p:
            proj = p.project(image)[:, 0, :]
        pos = (proj * bins).sum(1) / proj.sum(1)
        np.testing.assert_allclose(pos, expected, atol=0.02)

    # the library's convention on the same array, unflipped, is the mirror
    # image: s = X cos t + Y sin t
    geom = cr.Geometry("parallel", t, 1, n, det_offset=(0.0, -h))
    with cr.Projector(ctx, geom, cr.Volume(n, n, 1, 1.0, (-h, -h, 0))) as p:
        proj = p.project(img)[:, 0, :]
    pos = (proj * bins).sum(1) / proj.sum(1)
    mirrored = c + (col - c) * np.cos(t) + (row - c) * np.sin(t)
    np.testing.assert_allclose(pos, mirrored, atol=0.02)
    assert np.max(np.abs(mirrored - expected)) > 10


@needs_skimage
def test_fbp_vs_skimage_iradon(sk_case):
    image, theta, sino, ref = sk_case
    n = image.shape[0]
    ours = ours_from_skimage(sino, theta, n)
    assert ours.shape == (n, n) and ours.dtype == np.float32
    m = disc_mask(n)
    e_ours = rmse(ours, image, m)
    e_sk = rmse(ref, image, m)
    print(f"RMSE vs phantom inside the circle: ours {e_ours:.6f}, "
          f"iradon {e_sk:.6f}")
    # Same Kak-Slaney ramp, same linear interpolation: the two agree to
    # float32 rounding; allow that rounding in the comparison.
    assert e_ours <= e_sk * (1.0 + 1e-3)
    assert e_ours < 0.035  # measured 0.0290 (phantom range 0..1)
    # and they are the same image, which pins the convention mapping down
    assert rmse(ours, ref, m) < 1e-3
    assert np.max(np.abs(ours - ref)[disc_mask(n, 3.0)]) < 1e-3


@needs_skimage
def test_fbp_vs_skimage_wrong_mappings_are_worse(sk_case):
    """Without the flip (or, for even N, without the half-pixel shift) the
    result is clearly wrong: the mapping above is not a matter of taste."""
    image, theta, sino, _ = sk_case
    n = image.shape[0]
    m = disc_mask(n)
    good = rmse(ours_from_skimage(sino, theta, n), image, m)
    no_flip = cr.fbp(sino.T, np.deg2rad(theta), det_offset=-0.5,
                     center=(-0.5, 0.5, 0), allow_truncation=True,
                     backend="cpu")
    no_shift = cr.fbp(sino.T, np.deg2rad(theta), allow_truncation=True,
                      backend="cpu")[::-1]
    assert rmse(no_flip, image, m) > 3 * good
    assert rmse(no_shift, image, m) > 2 * good


@needs_skimage
@pytest.mark.parametrize("ours_name,sk_name", [("shepp-logan", "shepp-logan"),
                                               ("cosine", "cosine")])
def test_fbp_windows_vs_skimage(sk_case, ours_name, sk_name):
    image, theta, sino, _ = sk_case
    n = image.shape[0]
    ref = iradon(sino, theta=theta, output_size=n, filter_name=sk_name,
                 circle=True)
    ours = ours_from_skimage(sino, theta, n, filter=ours_name)
    m = disc_mask(n)
    assert rmse(ours, image, m) <= rmse(ref, image, m) * (1.0 + 1e-3)
    assert rmse(ours, ref, m) < 1e-3


@needs_skimage
def test_fbp_odd_size_needs_no_shift():
    image = np.pad(rescale(shepp_logan_phantom(), 0.5), ((0, 1), (0, 1)))
    n = image.shape[0]  # 201
    theta = np.linspace(0.0, 180.0, 180, endpoint=False)
    sino = radon(image, theta=theta, circle=True)
    ours = cr.fbp(sino.T, np.deg2rad(theta), backend="cpu")[::-1]
    ref = iradon(sino, theta=theta, output_size=n, filter_name="ramp",
                 circle=True)
    m = disc_mask(n)
    assert rmse(ours, image, m) <= rmse(ref, image, m) * (1.0 + 1e-3)
    assert rmse(ours, image, m) < 0.035  # measured 0.0289


# ---------------------------------------------------------------------------
# Our phantom, projector and FBP
# ---------------------------------------------------------------------------


def test_phantom_projection_fbp_parallel(ctx):
    n = 128
    angles = np.linspace(0.0, np.pi, 180, endpoint=False)
    geom = cr.Geometry("parallel", angles, 1, n)
    vol = cr.Volume(n, n, 1)
    ph = cr.shepp_logan(2, radius=0.45 * n, scale=1.0)
    truth = ph.rasterize(vol, supersample=4)
    proj = ph.project(geom)
    assert proj.shape == (180, 1, n) and proj.dtype == np.float32
    with cr.FBPPlan(ctx, geom, vol) as plan:
        rec = plan.execute(proj)
        assert rec.shape == (1, n, n) and rec.dtype == np.float32
        # 2-D input is accepted when rows == 1
        np.testing.assert_array_equal(plan.execute(proj[:, 0, :]), rec)
    e = rmse(rec[0], truth[0], disc_mask(n))
    assert e < 0.035, e  # measured 0.0287 (phantom range 0..1)


def test_phantom_projection_fbp_fan_and_cone(ctx):
    ph2 = cr.shepp_logan(2, radius=43.0, scale=1.0)
    full = np.linspace(0.0, 2 * np.pi, 360, endpoint=False)
    geom = cr.Geometry("fan-flat", full, 1, 200, det_spacing=1.0,
                       source_to_iso=300.0, source_to_detector=600.0)
    vol = cr.Volume(96, 96, 1)
    with cr.FBPPlan(ctx, geom, vol) as plan:
        info = plan.info
        assert info["fft_length"] >= 2 * 200
        assert info["fan_half_angle"] > 0 and not info["short_scan"]
        assert abs(info["scan_range"] - 2 * np.pi) < 1e-3
        rec = plan.execute(ph2.project(geom))
    e = rmse(rec[0], ph2.rasterize(vol, 4)[0], disc_mask(96))
    assert e < 0.035, e  # measured 0.0280

    ph3 = cr.shepp_logan(3, radius=21.0, scale=1.0)
    angles = np.linspace(0.0, 2 * np.pi, 180, endpoint=False)
    geom = cr.Geometry("cone", angles, 64, 96, det_spacing=1.0,
                       source_to_iso=200.0, source_to_detector=400.0)
    vol = cr.Volume(48, 48, 48)
    with cr.FBPPlan(ctx, geom, vol) as plan:
        rec = plan.execute(ph3.project(geom))
    truth = ph3.rasterize(vol, 2)
    m = disc_mask(48)
    e = float(np.sqrt(np.mean([(rec[k] - truth[k])[m] ** 2
                               for k in range(4, 44)])))
    assert e < 0.055, e  # measured 0.040 (slices 4..43, inside the circle)


def test_fbp_convenience_shapes_and_hu():
    n = 64
    angles = np.linspace(0.0, np.pi, 120, endpoint=False)
    water = cr.ellipsoid_phantom(2, [cr.Ellipsoid(cr.WATER_MU, 20.0, 20.0)])
    sino = water.project(cr.Geometry("parallel", angles, 1, n))[:, 0, :]
    img = cr.fbp(sino, angles)
    assert img.shape == (n, n) and img.dtype == np.float32
    assert abs(float(img[n // 2, n // 2]) - cr.WATER_MU) < 0.02 * cr.WATER_MU
    hu = cr.fbp(sino, angles, hu=True)
    assert abs(float(hu[n // 2, n // 2])) < 20.0           # water: 0 HU
    assert abs(float(hu[n // 2, 4]) + 1000.0) < 20.0       # air: -1000 HU
    # a stack of 3 sinograms gives 3 slices
    stack = np.stack([sino, 2 * sino, 3 * sino], axis=1)  # [views][3][cols]
    vol3 = cr.fbp(stack, angles, size=(48, 40))
    assert vol3.shape == (3, 40, 48)
    np.testing.assert_allclose(vol3[2], 3 * vol3[0], rtol=1e-4,
                               atol=1e-6)


def test_plan_filter_response_and_weights(ctx):
    angles = np.linspace(0.0, np.pi, 90, endpoint=False)
    geom = cr.Geometry("parallel", angles, 1, 100, det_spacing=0.5)
    with cr.FBPPlan(ctx, geom, cr.Volume(100, 100, 1, 0.5)) as plan:
        n = plan.info["fft_length"]
        resp = plan.filter_response()
        assert resp.shape == (n // 2 + 1,) and resp.dtype == np.float32
        # ramp: |f| in cycles/mm, 1 cycle/mm at Nyquist for 0.5 mm pixels
        assert abs(float(resp[-1]) - 1.0) < 0.02
        assert float(resp[0]) < 0.01
        assert 0.0 < plan.weight(0, 0) <= 1.0
        with pytest.raises(cr.ClaraError, match="view") as ei:
            plan.weight(90, 0)
        assert ei.value.name == "ERR_INVALID_ARG"
    with cr.FBPPlan(ctx, geom, cr.Volume(100, 100, 1, 0.5),
                    filter="hann", cutoff=0.5) as plan:
        resp = plan.filter_response()
        assert float(resp[-1]) == 0.0  # beyond the cutoff


@pytest.mark.parametrize("kind", ["parallel", "cone"])
def test_projector_adjoint(ctx, kind):
    rng = np.random.default_rng(1234)
    if kind == "parallel":
        geom = cr.Geometry("parallel", np.linspace(0, np.pi, 40,
                                                   endpoint=False),
                           1, 50, det_spacing=0.8)
        vol = cr.Volume(40, 36, 1, (0.9, 1.0, 1.0), (1.5, -2.0, 0.0))
    else:
        geom = cr.Geometry("cone", np.linspace(0, 2 * np.pi, 30,
                                               endpoint=False),
                           24, 40, det_spacing=(1.2, 1.1),
                           det_offset=(0.5, -1.0), source_to_iso=120.0,
                           source_to_detector=240.0)
        vol = cr.Volume(24, 20, 16, 1.0, (0.5, 0.0, -1.0))
    with cr.Projector(ctx, geom, vol) as A:
        x = rng.standard_normal(vol.shape).astype(np.float32)
        y = rng.standard_normal(geom.shape).astype(np.float32)
        ax = A.project(x)
        aty = A.backproject(y)
        assert ax.shape == geom.shape and aty.shape == vol.shape
        lhs = float(np.dot(ax.ravel().astype(np.float64),
                           y.ravel().astype(np.float64)))
        rhs = float(np.dot(x.ravel().astype(np.float64),
                           aty.ravel().astype(np.float64)))
        scale = (np.linalg.norm(ax.astype(np.float64))
                 * np.linalg.norm(y.astype(np.float64)))
        assert abs(lhs - rhs) <= 1e-4 * max(abs(lhs), scale * 1e-2), \
            (lhs, rhs)
        assert np.abs(ax).max() > 0


def test_projector_matches_phantom_projection(ctx):
    """Joseph projections of the rasterised phantom against the phantom's
    exact line integrals."""
    n = 96
    geom = cr.Geometry("parallel", np.linspace(0, np.pi, 60, endpoint=False),
                       1, n)
    vol = cr.Volume(n, n, 1)
    cases = (
        # one rotated, off-centre ellipse: measured 0.0106
        (cr.ellipsoid_phantom(2, [cr.Ellipsoid(1.0, 30.0, 20.0, 1.0, 5.0,
                                               -3.0, 0.0, 0.3)]), 0.02),
        # Shepp-Logan, thin high-contrast skull: measured 0.042
        (cr.shepp_logan(2, radius=40.0, scale=1.0), 0.06),
    )
    with cr.Projector(ctx, geom, vol) as A:
        for ph, bound in cases:
            discrete = A.project(ph.rasterize(vol, 4))
            exact = ph.project(geom)
            rel = np.linalg.norm(discrete - exact) / np.linalg.norm(exact)
            assert rel < bound, rel


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def test_bad_geometry_raises_library_message(ctx):
    angles = np.linspace(0, np.pi, 10, endpoint=False)
    with pytest.raises(cr.ClaraError) as ei:
        cr.FBPPlan(ctx, cr.Geometry("parallel", angles, 1, 0),
                   cr.Volume(8, 8, 1))
    e = ei.value
    assert isinstance(e, RuntimeError)
    assert e.status == cr.Status.ERR_INVALID_ARG == -1
    assert e.name == "ERR_INVALID_ARG"
    assert e.function == "clara_fbp_plan_create"
    assert "geometry->cols" in e.message
    assert str(e) == ("ERR_INVALID_ARG: clara_fbp_plan_create: "
                      "geometry->cols: must be > 0, got 0")

    with pytest.raises(cr.ClaraError, match=r"geometry->views: must be > 0"):
        cr.FBPPlan(ctx, cr.Geometry("parallel", [], 1, 8), cr.Volume(8, 8, 1))

    fan = cr.Geometry("fan-flat", angles, 1, 64, source_to_iso=500.0,
                      source_to_detector=400.0)
    with pytest.raises(cr.ClaraError, match="source_to_detector"):
        fan.check()
    with pytest.raises(cr.ClaraError, match="source_to_iso"):
        cr.Geometry("cone", angles, 4, 64).check()   # distances missing
    bad = angles.copy()
    bad[3] = np.nan
    with pytest.raises(cr.ClaraError, match=r"angles\[3\]"):
        cr.Projector(ctx, cr.Geometry("parallel", bad, 1, 8),
                     cr.Volume(8, 8, 1))
    with pytest.raises(cr.ClaraError, match="vol->nz"):
        cr.Projector(ctx, cr.Geometry("parallel", angles, 2, 8),
                     cr.Volume(8, 8, 1))
    with pytest.raises(cr.ClaraError, match="geometry") as ei:
        cr.Geometry("spiral", angles, 1, 8).check()
    assert ei.value.name == "ERR_INVALID_ARG"
    with pytest.raises(cr.ClaraError, match="filter"):
        cr.FBPPlan(ctx, cr.Geometry("parallel", angles, 1, 8),
                   cr.Volume(8, 8, 1), filter="bogus")
    with pytest.raises(cr.ClaraError, match="cutoff"):
        cr.FBPPlan(ctx, cr.Geometry("parallel", angles, 1, 8),
                   cr.Volume(8, 8, 1), cutoff=1.5)
    with pytest.raises(cr.ClaraError, match="field of view"):
        cr.FBPPlan(ctx, cr.Geometry("parallel", angles, 1, 8),
                   cr.Volume(32, 32, 1))
    with pytest.raises(cr.ClaraError, match="backend"):
        cr.Context("gpu")
    with pytest.raises(cr.ClaraError, match="ndim"):
        cr.shepp_logan(4)


def test_angles_count_must_match_views():
    sino = np.zeros((180, 64), np.float32)
    with pytest.raises(ValueError, match=r"180.*179"):
        cr.fbp(sino, np.linspace(0, np.pi, 179, endpoint=False))


def test_wrong_ndim_and_shape(ctx):
    angles = np.linspace(0, np.pi, 20, endpoint=False)
    with pytest.raises(ValueError, match="projections"):
        cr.fbp(np.zeros(64), angles)
    with pytest.raises(ValueError, match="projections"):
        cr.fbp(np.zeros((20, 2, 3, 64)), angles)
    with pytest.raises(ValueError, match="angles"):
        cr.fbp(np.zeros((20, 64)), angles.reshape(4, 5))
    geom = cr.Geometry("parallel", angles, 1, 16)
    with cr.Projector(ctx, geom, cr.Volume(16, 16, 1)) as p:
        with pytest.raises(ValueError, match="image"):
            p.project(np.zeros(16))
        with pytest.raises(ValueError, match="image"):
            p.project(np.zeros((16, 15)))
        with pytest.raises(ValueError, match="projections"):
            p.backproject(np.zeros((19, 1, 16)))
    with pytest.raises(ValueError, match="angles"):
        cr.Geometry("parallel", np.zeros((2, 3)), 1, 16)


def test_complex_and_non_numeric_input_rejected(ctx):
    angles = np.linspace(0, np.pi, 20, endpoint=False)
    with pytest.raises(TypeError, match="complex"):
        cr.fbp(np.zeros((20, 16), np.complex64), angles)
    with pytest.raises(TypeError, match="complex"):
        cr.fbp(np.zeros((20, 16)), angles.astype(complex))
    with pytest.raises(TypeError):
        cr.fbp(np.full((20, 16), "a"), angles)
    with pytest.raises(TypeError):
        cr.fbp(np.zeros((20, 16), bool), angles)
    geom = cr.Geometry("parallel", angles, 1, 16)
    with cr.Projector(ctx, geom, cr.Volume(16, 16, 1)) as p:
        with pytest.raises(TypeError, match="complex"):
            p.project(np.zeros((16, 16), complex))
        # other real dtypes and non-contiguous views are converted
        img = np.arange(16 * 32, dtype=np.int64).reshape(16, 32)[:, ::2]
        np.testing.assert_allclose(p.project(img),
                                   p.project(img.astype(np.float32)))


def test_progress_callback_and_cancel():
    angles = np.linspace(0, np.pi, 90, endpoint=False)
    sino = np.ones((90, 3, 48), np.float32)
    geom = cr.Geometry("parallel", angles, 3, 48)
    vol = cr.Volume(48, 48, 3)
    seen = []

    def record(stage, fraction):
        seen.append((stage, fraction))
        return False

    with cr.Context("cpu", threads=2, progress=record) as c, \
            cr.FBPPlan(c, geom, vol) as plan:
        plan.execute(sino)
    assert seen, "the progress callback was never called"
    assert all(isinstance(s, str) and s for s, _ in seen)
    assert all(0.0 <= f <= 1.0 for _, f in seen)

    with cr.Context("cpu", progress=lambda s, f: True) as c, \
            cr.FBPPlan(c, geom, vol) as plan:
        with pytest.raises(cr.ClaraError) as ei:
            plan.execute(sino)
        assert ei.value.name == "ERR_CANCELLED"
        assert ei.value.status == cr.Status.ERR_CANCELLED

    # the same through fbp(), and an exception in the callback propagates
    with pytest.raises(cr.ClaraError, match="ERR_CANCELLED"):
        cr.fbp(sino, angles, progress=lambda s, f: 1)

    class Stop(Exception):
        pass

    def boom(stage, fraction):
        raise Stop(stage)

    with pytest.raises(Stop):
        cr.fbp(sino, angles, progress=boom)


def test_file_round_trip(tmp_path):
    angles = np.linspace(0, 2 * np.pi, 36, endpoint=False).astype(np.float32)
    geom = cr.Geometry("cone", angles, 4, 10, det_spacing=(1.5, 1.25),
                       det_offset=(0.25, -0.5), source_to_iso=100.0,
                       source_to_detector=180.0)
    rng = np.random.default_rng(7)
    proj = rng.random(geom.shape, dtype=np.float32)
    tvol = cr.Volume(5, 6, 3, (0.5, 0.75, 1.0), (1.0, -2.0, 0.5))
    truth = rng.random(tvol.shape, dtype=np.float32)
    path = tmp_path / "scan.h5"
    cr.write_ct(path, geom, proj, truth=truth, truth_volume=tvol)
    g2, p2 = cr.read_ct(str(path))
    assert g2 == geom
    np.testing.assert_array_equal(p2, proj)
    v2, t2, units = cr.read_image(path, "/truth")
    assert v2 == tvol and units == ""
    np.testing.assert_array_equal(t2, truth)

    # parallel, 2-D sinogram, no distances
    pg = cr.Geometry("parallel", angles[:18], 1, 10)
    cr.write_ct(tmp_path / "par.h5", pg, proj[:18, 0, :])
    g3, p3 = cr.read_ct(tmp_path / "par.h5")
    assert g3 == pg and g3.source_to_iso is None
    np.testing.assert_array_equal(p3[:, 0, :], proj[:18, 0, :])

    img_path = tmp_path / "image.h5"
    cr.write_image(img_path, tvol, truth, units="HU")
    v4, t4, u4 = cr.read_image(img_path)
    assert v4 == tvol and u4 == "HU"
    np.testing.assert_array_equal(t4, truth)

    with pytest.raises(ValueError, match="truth"):
        cr.write_ct(tmp_path / "x.h5", geom, proj, truth=truth)
    with pytest.raises(ValueError, match="projections"):
        cr.write_ct(tmp_path / "x.h5", geom, proj[:, :2])
    with pytest.raises(cr.ClaraError) as ei:
        cr.write_ct(tmp_path / "no-such-dir" / "x.h5", geom, proj)
    assert ei.value.name == "ERR_IO"
    with pytest.raises(cr.ClaraError) as ei:
        cr.read_image(img_path, "/nothing")
    assert ei.value.name == "ERR_FORMAT"


def test_missing_file_raises_io_error(tmp_path):
    missing = tmp_path / "does-not-exist.h5"
    with pytest.raises(cr.ClaraError) as ei:
        cr.read_ct(missing)
    assert ei.value.name == "ERR_IO"
    assert ei.value.status == cr.Status.ERR_IO
    assert "does-not-exist.h5" in str(ei.value)
    assert str(ei.value).startswith("ERR_IO: clara_ct_file_read")
    not_hdf5 = tmp_path / "text.h5"
    not_hdf5.write_text("not HDF5\n")
    with pytest.raises(cr.ClaraError, match="ERR_IO"):
        cr.read_image(not_hdf5)


def test_library_missing_gives_clear_error(tmp_path):
    env = dict(os.environ)
    env["CLARA_RECON_LIB"] = str(tmp_path / "nowhere" / "libclara-recon.so")
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(cr.__file__)))
    env["PYTHONPATH"] = pkg + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", "import clara_recon"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "LibraryNotFoundError" in r.stderr
    assert "CLARA_RECON_LIB" in r.stderr
    assert "nowhere" in r.stderr
    assert issubclass(cr.LibraryNotFoundError, ImportError)


# ---------------------------------------------------------------------------
# Object lifetimes, threads, misc
# ---------------------------------------------------------------------------


def test_close_is_idempotent_and_plans_outlive_context():
    angles = np.linspace(0, np.pi, 30, endpoint=False)
    geom = cr.Geometry("parallel", angles, 1, 32)
    vol = cr.Volume(32, 32, 1)
    sino = np.ones(geom.shape, np.float32)
    c = cr.Context("cpu", progress=lambda s, f: False)
    plan = cr.FBPPlan(c, geom, vol)
    proj = cr.Projector(c, geom, vol)
    c.close()
    c.close()
    assert c.closed
    with pytest.raises(ValueError, match="closed"):
        cr.FBPPlan(c, geom, vol)
    # the C context lives on until its plans are gone
    before = plan.execute(sino)
    del c
    gc.collect()
    np.testing.assert_array_equal(plan.execute(sino), before)
    proj.project(np.zeros(vol.shape, np.float32))
    plan.close()
    plan.close()
    with pytest.raises(ValueError, match="closed"):
        plan.execute(sino)
    del proj  # collected: destroys the projector, then the context
    gc.collect()

    ph = cr.shepp_logan()
    with ph:
        pass
    assert ph.closed
    with pytest.raises(ValueError, match="closed"):
        ph.rasterize(vol)


def test_concurrent_execute(ctx):
    angles = np.linspace(0, np.pi, 60, endpoint=False)
    geom = cr.Geometry("parallel", angles, 1, 64)
    vol = cr.Volume(64, 64, 1)
    ph = cr.shepp_logan(2, radius=28.0)
    sino = ph.project(geom)
    with cr.FBPPlan(ctx, geom, vol) as plan:
        ref = plan.execute(sino)
        results = [None] * 4

        def work(i):
            results[i] = plan.execute(sino)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for r in results:
        np.testing.assert_array_equal(r, ref)


def test_misc_api(ctx):
    n = cr.version_number()
    assert cr.version() == f"{n // 10000}.{n // 100 % 100}.{n % 100}"
    assert n // 100 == 1  # the 0.1 ABI these bindings declare
    assert ctx.backend == "cpu" and ctx.threads == 2
    g = cr.Geometry("parallel", [0.0, 1.0], 1, 4, det_spacing=0.5)
    assert g.views == 2 and g.shape == (2, 1, 4)
    assert g.det_spacing == (0.5, 0.5) and g.angles.dtype == np.float32
    assert cr.Volume(3, 4, 5, 2.0).voxel == (2.0, 2.0, 2.0)
    assert cr.Volume(3, 4, 5).shape == (5, 4, 3)
    with pytest.raises(ValueError, match="C int"):
        cr.Volume(2**31, 1, 1)
    try:
        c = cr.Context("cuda")
    except cr.ClaraError as e:
        assert e.name == "ERR_NO_DEVICE"
    else:
        assert c.backend == "cuda"
        c.close()
