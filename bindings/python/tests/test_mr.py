"""Tests of the MRI part of the Python bindings (MRPlan, MRFile, ...).

Run like the other binding tests:

    CLARA_RECON_LIB=$builddir/src/.libs/libclara-recon.so \
    PYTHONPATH=bindings/python python3 -m pytest -q bindings/python/tests

The independent reference is numpy's FFT. docs/MRI.md defines the
reconstruction as image = fftshift(IDFT(ifftshift(kspace))) on every axis,
with DC at index n // 2 (odd sizes included) and the scale s = 1/sqrt(N)
for norm "ortho" (numpy's norm="ortho") and s = 1 for norm "none" (numpy's
inverse with norm="forward", which applies no scale on the inverse; numpy's
default "backward" would divide by N and is *not* the library's "none").
"""

from __future__ import annotations

import numpy as np
import pytest

import clara_recon as cr

try:
    import h5py
    HAVE_H5PY = True
except ImportError:  # pragma: no cover
    HAVE_H5PY = False

needs_h5py = pytest.mark.skipif(not HAVE_H5PY, reason="h5py is not installed")

AXES2 = (-2, -1)


# ---------------------------------------------------------------------------
# numpy references
# ---------------------------------------------------------------------------


def np_kspace(img: np.ndarray, axes=AXES2) -> np.ndarray:
    """Centred forward FFT, ortho: image -> k-space with DC at n // 2."""
    return np.fft.fftshift(
        np.fft.fftn(np.fft.ifftshift(img, axes=axes), axes=axes, norm="ortho"),
        axes=axes)


def np_image(k: np.ndarray, axes=AXES2, norm: str = "ortho") -> np.ndarray:
    """Centred inverse FFT; norm "ortho" or "forward" (no inverse scale)."""
    return np.fft.fftshift(
        np.fft.ifftn(np.fft.ifftshift(k, axes=axes), axes=axes, norm=norm),
        axes=axes)


def crandn(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


@pytest.fixture(scope="module")
def ctx():
    with cr.Context("cpu", threads=2) as c:
        yield c


def recon(ctx, k: np.ndarray, **kw) -> np.ndarray:
    """One 2-D slice [coils][ny][nx] through an MRPlan."""
    coils, ny, nx = k.shape
    geom_kw = {n: kw.pop(n) for n in ("recon_nx", "ky_first", "ky_last",
                                      "kx_first", "kx_last") if n in kw}
    geom = cr.MRGeometry(coils, nx, ny, **geom_kw)
    with cr.MRPlan(ctx, geom, **kw) as plan:
        return plan.execute(k)


# ---------------------------------------------------------------------------
# The centred FFT and its normalisation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ny,nx", [(16, 16), (15, 13), (12, 17)])
def test_centred_fft_ortho_inverts_numpy(ctx, ny, nx):
    rng = np.random.default_rng(ny * 100 + nx)
    img = crandn(rng, ny, nx)
    k = np_kspace(img)[np.newaxis]  # one coil
    out = recon(ctx, k, combine="sensitivity", output_complex=True,
                sensitivities=np.ones((1, ny, nx), np.complex64))
    assert out.dtype == np.complex64 and out.shape == (ny, nx)
    np.testing.assert_allclose(out, img, rtol=0, atol=1e-5)
    # the check has teeth: the uncentred convention is off by a phase ramp
    # (odd sizes) or a sign pattern (even sizes)
    wrong = np.fft.ifft2(np.fft.ifftshift(k[0]), norm="ortho")
    assert np.max(np.abs(wrong - img)) > 0.1


@pytest.mark.parametrize("ny,nx", [(16, 16), (15, 13)])
def test_norm_none_is_unscaled_inverse(ctx, ny, nx):
    rng = np.random.default_rng(7 + nx)
    k = crandn(rng, 1, ny, nx).astype(np.complex64)
    maps = np.ones((1, ny, nx), np.complex64)
    ortho = recon(ctx, k, combine="sensitivity", sensitivities=maps,
                  output_complex=True)
    none = recon(ctx, k, combine="sensitivity", sensitivities=maps,
                 output_complex=True, norm="none")
    ref = np_image(k[0], norm="forward")  # sum over k, no scale
    np.testing.assert_allclose(none, ref, rtol=0, atol=2e-5 * np.sqrt(nx * ny))
    np.testing.assert_allclose(none, np.sqrt(nx * ny) * ortho, rtol=1e-5,
                               atol=1e-4)
    # numpy's default "backward" inverse (1/N) is a different thing
    backward = np_image(k[0], norm="backward")
    assert np.max(np.abs(none - backward)) > 1.0


def test_3d_multislice_and_readout_crop(ctx):
    rng = np.random.default_rng(3)
    slices, coils, nz, ny, nx, rnx = 2, 3, 5, 6, 10, 5
    k = crandn(rng, slices, coils, nz, ny, nx)  # complex128: converted
    geom = cr.MRGeometry(coils, nx, ny, nz, slices, recon_nx=rnx)
    assert geom.ky_last == ny - 1 and geom.kx_last == nx - 1
    with cr.MRPlan(ctx, geom) as plan:
        out = plan.execute(k)
    assert out.dtype == np.float32 and out.shape == (slices, nz, ny, rnx)
    full = np_image(k, axes=(-3, -2, -1))
    rss = np.sqrt(np.sum(np.abs(full) ** 2, axis=1))
    x0 = nx // 2 - rnx // 2
    np.testing.assert_allclose(out, rss[..., x0:x0 + rnx], rtol=1e-4,
                               atol=1e-5)


def test_rss_matches_numpy(ctx):
    rng = np.random.default_rng(11)
    k = crandn(rng, 4, 20, 18).astype(np.complex64)
    out = cr.mr_recon(k, threads=2)
    ref = np.sqrt(np.sum(np.abs(np_image(k)) ** 2, axis=0))
    assert out.shape == (20, 18) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    # complex RSS: the value in the real part, imaginary part 0
    c = recon(ctx, k, output_complex=True)
    np.testing.assert_allclose(c.real, ref, rtol=1e-5, atol=1e-6)
    assert np.all(c.imag == 0)


# ---------------------------------------------------------------------------
# Coil combination, noise
# ---------------------------------------------------------------------------


def test_sensitivity_maps_recover_object(ctx):
    rng = np.random.default_rng(5)
    coils, ny, nx = 4, 24, 20
    yy, xx = np.mgrid[:ny, :nx] / np.array([ny, nx])[:, None, None]
    maps = np.stack([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2))
                     * np.exp(1j * (c + 2 * xx - yy))
                     for c, (cy, cx) in enumerate([(0, 0), (0, 1), (1, 0),
                                                    (1, 1)])])
    obj = crandn(rng, ny, nx)
    k = np_kspace(maps * obj)
    out = recon(ctx, k.astype(np.complex64), combine="sensitivity",
                sensitivities=maps, output_complex=True)
    np.testing.assert_allclose(out, obj, rtol=0, atol=1e-4)
    # with a noise covariance the combination is still exact for S * obj
    cov = (np.eye(coils) + 0.3 * np.ones((coils, coils))).astype(np.complex64)
    out_w = recon(ctx, k, combine="sensitivity", sensitivities=maps,
                  noise_covariance=cov, output_complex=True)
    np.testing.assert_allclose(out_w, obj, rtol=0, atol=2e-4)
    mag = recon(ctx, k, combine="sensitivity", sensitivities=maps)
    np.testing.assert_allclose(mag, np.abs(obj), rtol=0, atol=1e-4)


def test_noise_covariance_matches_numpy():
    rng = np.random.default_rng(2)
    coils, samples = 5, 3000
    mix = crandn(rng, coils, coils) * 0.3 + np.eye(coils)
    noise = (mix @ crandn(rng, coils, samples)).astype(np.complex64)
    cov = cr.noise_covariance(noise)
    n = noise.astype(np.complex128)
    ref = n @ n.conj().T / (samples - 1)  # sum n_i conj(n_j) / (S - 1)
    assert cov.dtype == np.complex64 and cov.shape == (coils, coils)
    np.testing.assert_allclose(cov, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(cov, cov.conj().T)  # exactly Hermitian
    # not np.cov (which removes the mean): a noise with an offset tells
    assert not np.allclose(cr.noise_covariance(noise + 1), np.cov(n + 1),
                           atol=1e-2)


def test_whitening_makes_rss_of_noise_unit_variance(ctx):
    rng = np.random.default_rng(9)
    coils, ny, nx = 3, 32, 32
    mix = np.array([[2, 0, 0], [1, 1.5, 0], [0.4j, 0.6, 1.4]])
    cal = mix @ crandn(rng, coils, 4000) / np.sqrt(2)
    cov = cr.noise_covariance(cal)
    k = np.einsum("ij,jyx->iyx", mix, crandn(rng, coils, ny, nx)) / np.sqrt(2)
    white = recon(ctx, k, noise_covariance=cov)
    plain = recon(ctx, k)
    # E|RSS|^2 = coils after whitening (ortho keeps the noise variance)
    assert abs(np.mean(white.astype(np.float64) ** 2) - coils) < 0.15 * coils
    assert np.mean(plain.astype(np.float64) ** 2) > 2 * coils  # unwhitened


# ---------------------------------------------------------------------------
# Partial Fourier
# ---------------------------------------------------------------------------


def test_partial_fourier_beats_zero_fill(ctx):
    ny = nx = 64
    yy, xx = (np.mgrid[:ny, :nx] - ny / 2) / (ny / 2)
    r2 = xx ** 2 + (yy / 0.8) ** 2
    mag = 1.0 / (1.0 + np.exp((np.sqrt(r2) - 0.7) / 0.03))  # smooth disc
    mag = mag * (1 + 0.3 * np.cos(3 * xx))
    phase = 0.6 * xx + 0.4 * yy ** 2  # smooth
    k = np_kspace(mag * np.exp(1j * phase))[np.newaxis].astype(np.complex64)
    full = recon(ctx, k)
    ky_first = ny // 2 - 8  # 5/8 + a bit of the lines
    partial = k.copy()
    partial[:, :ky_first] = 0
    errs = {}
    for pf in ("zero", "homodyne", "pocs"):
        out = recon(ctx, partial, partial_fourier=pf, ky_first=ky_first,
                    pocs_iterations=20)
        errs[pf] = np.linalg.norm(out - full) / np.linalg.norm(full)
    assert errs["homodyne"] < 0.8 * errs["zero"], errs
    assert errs["pocs"] < 0.3 * errs["zero"], errs
    # samples outside the sampled range are ignored, whatever they hold
    out = recon(ctx, k, partial_fourier="zero", ky_first=ky_first)
    ref = recon(ctx, partial, partial_fourier="zero", ky_first=ky_first)
    np.testing.assert_array_equal(out, ref)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def test_bad_arrays(ctx):
    geom = cr.MRGeometry(2, 8, 6)
    with cr.MRPlan(ctx, geom) as plan:
        with pytest.raises(TypeError, match="complex"):
            plan.execute(np.zeros((2, 6, 8), np.float32))
        with pytest.raises(TypeError):
            plan.execute(np.array([["a"]]))
        with pytest.raises(ValueError, match=r"shape \(2, 6, 8\)"):
            plan.execute(np.zeros((2, 8, 6), np.complex64))
        with pytest.raises(ValueError, match="3-D or 5-D"):
            plan.execute(np.zeros((6, 8), np.complex64))
        with pytest.raises(ValueError, match="shape"):
            plan.execute(np.zeros((1, 2, 1, 6, 9), np.complex64))
        # complex128 and non-contiguous input are converted explicitly
        k = crandn(np.random.default_rng(0), 2, 8, 12)[:, :6, ::-1][:, :, :8]
        np.testing.assert_allclose(plan.execute(k),
                                   plan.execute(k.astype(np.complex64)),
                                   rtol=0, atol=0)
    with pytest.raises(TypeError, match="noise"):
        cr.noise_covariance(np.ones((2, 10)))
    with pytest.raises(ValueError, match="noise"):
        cr.noise_covariance(np.ones(10, np.complex64))
    with pytest.raises(ValueError, match="noise_covariance"):
        cr.MRPlan(ctx, geom, noise_covariance=np.eye(3, dtype=np.complex64))
    with pytest.raises(TypeError, match="sensitivities"):
        cr.MRPlan(ctx, geom, combine="sensitivity",
                  sensitivities=np.ones((2, 6, 8)))
    with pytest.raises(ValueError, match="sensitivities"):
        cr.MRPlan(ctx, geom, combine="sensitivity",
                  sensitivities=np.ones((2, 6, 7), np.complex64))


def test_bad_options_name_the_argument(ctx):
    geom = cr.MRGeometry(2, 8, 6)
    for arg in ("norm", "combine", "partial_fourier", "window"):
        with pytest.raises(ValueError, match=arg):
            cr.MRPlan(ctx, geom, **{arg: "bogus"})
    # an int goes to the library, whose message names the field
    with pytest.raises(cr.ClaraError) as e:
        cr.MRPlan(ctx, geom, combine=7)
    assert e.value.name == "ERR_INVALID_ARG"
    assert "opts->combine" in e.value.message
    with pytest.raises(cr.ClaraError, match="opts->window"):
        cr.MRPlan(ctx, geom, window=-1)
    with pytest.raises(cr.ClaraError, match="opts->pocs_iterations"):
        cr.MRPlan(ctx, geom, partial_fourier="pocs", pocs_iterations=0)
    with pytest.raises(cr.ClaraError, match="opts->tukey_alpha"):
        cr.MRPlan(ctx, geom, window="tukey", tukey_alpha=1.5)
    with pytest.raises(cr.ClaraError, match="opts->sensitivities"):
        cr.MRPlan(ctx, geom, combine="sensitivity")
    with pytest.raises(cr.ClaraError, match="opts->sensitivities"):
        cr.MRPlan(ctx, geom, sensitivities=np.ones((2, 6, 8), np.complex64))
    with pytest.raises(cr.ClaraError, match="geom->coils"):
        cr.MRPlan(ctx, cr.MRGeometry(0, 8, 6))
    with pytest.raises(cr.ClaraError, match="ky_first"):
        cr.MRPlan(ctx, cr.MRGeometry(2, 8, 6, ky_first=4))  # centre 3 missing
    with pytest.raises(cr.ClaraError, match="not positive definite"):
        cr.MRPlan(ctx, geom, noise_covariance=np.ones((2, 2), np.complex64))


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


@needs_h5py
def test_fastmri_file(ctx, tmp_path):
    rng = np.random.default_rng(4)
    slices, coils, nx, ny = 2, 3, 12, 10  # nx = readout, ny = phase
    # fastMRI order [slices][coils][x][y]; two zero-padded phase lines
    k_file = crandn(rng, slices, coils, nx, ny).astype(np.complex64)
    k_file[..., :2] = 0
    ours = np.ascontiguousarray(k_file.transpose(0, 1, 3, 2))  # [..][y][x]
    rss_yx = np.sqrt(np.sum(np.abs(np_image(ours)) ** 2, axis=1))
    path = tmp_path / "knee.h5"
    with h5py.File(path, "w") as f:
        f["kspace"] = k_file
        f["reconstruction_rss"] = rss_yx.transpose(0, 2, 1).astype(np.float32)

    with cr.MRFile(path) as mf:
        assert mf.format == "fastmri" and mf.count == 1 and len(mf) == 1
        g = mf.geometry(0)
        assert g == cr.MRGeometry(coils=coils, nx=nx, ny=ny, nz=1,
                                  slices=slices, recon_nx=nx, ky_first=2,
                                  ky_last=ny - 1, kx_first=0, kx_last=nx - 1)
        k = mf.kspace(0)
        assert k.dtype == np.complex64 and k.shape == (slices, coils, 1, ny, nx)
        np.testing.assert_array_equal(k[:, :, 0], ours)
        assert mf.noise is None
        ref = mf.reference
        assert ref.dtype == np.float32 and ref.shape == (slices, ny, nx)
        np.testing.assert_allclose(ref, rss_yx, rtol=1e-6)
        with pytest.raises(cr.ClaraError, match="index"):
            mf.geometry(1)
        with cr.MRPlan(ctx, g, partial_fourier="zero") as plan:
            img = plan.execute(k)
        np.testing.assert_allclose(img[:, 0], ref, rtol=1e-4, atol=1e-6)
    assert mf.closed
    mf.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        mf.kspace(0)


_STUDY_XML = """<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
<subjectInformation><patientName> Doe^Jane </patientName>
<patientID>P7</patientID><patientBirthdate>1980-02-29</patientBirthdate>
<patientGender>F</patientGender><patientWeight_kg>61.5</patientWeight_kg>
</subjectInformation>
<studyInformation><studyDate>2024-01-02</studyDate>
<studyTime>08:09:10</studyTime><accessionNumber>42</accessionNumber>
</studyInformation>
<acquisitionSystemInformation><systemVendor>ACME</systemVendor>
<systemFieldStrength_T>1.5</systemFieldStrength_T>
</acquisitionSystemInformation>
<experimentalConditions><H1resonanceFrequency_Hz>63600000</H1resonanceFrequency_Hz>
</experimentalConditions>
<encoding><encodedSpace><matrixSize><x>12</x><y>10</y><z>1</z></matrixSize>
<fieldOfView_mm><x>240</x><y>200</y><z>5</z></fieldOfView_mm></encodedSpace>
<reconSpace><matrixSize><x>6</x><y>10</y><z>1</z></matrixSize>
<fieldOfView_mm><x>120</x><y>200</y><z>5</z></fieldOfView_mm></reconSpace>
<trajectory>cartesian</trajectory></encoding>
<sequenceParameters><TR>2000</TR><TE>90</TE><TE>100</TE>
<sequence_type>TSE</sequence_type></sequenceParameters>
</ismrmrdHeader>
"""


@needs_h5py
def test_mr_file_study(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "study.h5"
    with h5py.File(path, "w") as f:
        f["kspace"] = crandn(rng, 1, 2, 12, 10).astype(np.complex64)
        f["ismrmrd_header"] = _STUDY_XML
    with cr.MRFile(path) as mf:
        st = mf.study()
        assert st["has_header"] is True
        assert st["patient_name"] == "Doe^Jane"
        assert st["patient_id"] == "P7" and st["patient_sex"] == "F"
        assert st["patient_birth_date"] == "1980-02-29"
        assert st["patient_weight_kg"] == 61.5
        assert (st["study_date"], st["study_time"]) == ("2024-01-02", "08:09:10")
        assert st["accession_number"] == "42" and st["study_id"] == ""
        assert st["manufacturer"] == "ACME" and st["field_strength_t"] == 1.5
        assert (st["tr_ms"], st["te_ms"], st["ti_ms"]) == (2000, 90, 0)
        assert st["sequence_type"] == "TSE"
        assert st["encoded_fov_mm"] == (240, 200, 5)
        assert st["encoded_matrix"] == (12, 10, 1)
        assert st["recon_fov_mm"] == (120, 200, 5)
        assert st["recon_matrix"] == (6, 10, 1)
        with pytest.raises(cr.ClaraError, match="index"):
            mf.study(1)
    bare = tmp_path / "bare.h5"
    with h5py.File(bare, "w") as f:
        f["kspace"] = crandn(rng, 1, 2, 12, 10).astype(np.complex64)
    with cr.MRFile(bare) as mf:
        st = mf.study(0)
        assert st["has_header"] is False and st["patient_name"] == ""
        assert st["encoded_fov_mm"] == (0, 0, 0)


def test_mr_file_errors(tmp_path):
    with pytest.raises(cr.ClaraError) as e:
        cr.MRFile(tmp_path / "missing.h5")
    assert e.value.name == "ERR_IO" and "missing.h5" in e.value.message
    bad = tmp_path / "not.h5"
    bad.write_bytes(b"not an HDF5 file at all")
    with pytest.raises(cr.ClaraError, match="not.h5"):
        cr.MRFile(bad)


def test_optional_api_is_reported_not_fatal(ctx):
    # the MRI functions are optional symbols: present in this build ...
    assert cr._lib.has("clara_mr_plan_create")
    # ... and a missing one gives a clear error at use, not at import
    with pytest.raises(NotImplementedError, match="clara_no_such_function"):
        cr._lib.require("clara_no_such_function")
    # mr_recon with a sampled range equals the plan with that geometry
    k = crandn(np.random.default_rng(1), 2, 16, 12).astype(np.complex64)
    a = cr.mr_recon(k, partial_fourier="pocs", ky_range=(5, 15), threads=2)
    b = recon(ctx, k, partial_fourier="pocs", ky_first=5, ky_last=15)
    np.testing.assert_array_equal(a, b)
