"""DICOM-ready conversion through the bindings (clara_dicom_ready_*)."""
import numpy as np
import pytest

import clara_recon as cr


def test_ct_values_and_header():
    hu = np.array([[-1024.0, 0.0], [3071.0, 40000.0]], dtype=np.float32)
    stored, sc = cr.dicom_ready(hu, "CT")
    assert stored.dtype == np.int16 and stored.shape == hu.shape
    assert stored.tolist() == [[0, 1024], [4095, 32767]]
    assert sc["slope"] == 1 and sc["intercept"] == -1024
    assert (sc["window_center"], sc["window_width"]) == (40, 400)
    assert sc["clipped_high"] == 1 and sc["clipped_low"] == 0
    # the rescaled values give back the input where nothing was clipped
    back = stored * sc["slope"] + sc["intercept"]
    assert np.allclose(back.ravel()[:3], hu.ravel()[:3])


def test_mr_scaling_and_window():
    rng = np.random.default_rng(3)
    img = rng.uniform(0.0, 2.0, size=(64, 64)).astype(np.float32)
    stored, sc = cr.dicom_ready(img, "MR")
    assert stored.max() == 32000 and sc["intercept"] == 0
    assert np.max(np.abs(stored * sc["slope"] - img)) <= sc["slope"] / 2 + 1e-7
    lo, hi = np.percentile(img, [1, 99])
    assert abs(sc["window_center"] - (lo + hi) / 2) < 0.02
    assert abs(sc["window_width"] - (hi - lo)) < 0.04


def test_errors():
    with pytest.raises(cr.ClaraError, match=r"\[1\]"):
        cr.dicom_ready(np.array([1.0, np.nan], np.float32), "CT")
    with pytest.raises(ValueError, match="modality"):
        cr.dicom_ready(np.zeros(3), "PET")
    with pytest.raises(TypeError):
        cr.dicom_ready(np.zeros(3, np.complex64))
    with pytest.raises(ValueError):
        cr.dicom_ready(np.zeros(0))


def test_plane_of_volume():
    vol = cr.Volume(4, 3, 5, voxel=(0.5, 0.75, 2.0), center=(1.0, -2.0, 10.0))
    p0 = cr.dicom_plane_of(vol, 0)
    assert p0["pixel_spacing"] == (0.75, 0.5)
    assert p0["slice_thickness"] == 2.0
    assert p0["orientation"] == (1, 0, 0, 0, 1, 0)
    # the centre of voxel (0, 0, iz): (i - (n-1)/2) * v + c
    assert p0["position"] == (1.0 - 1.5 * 0.5, -2.0 - 1.0 * 0.75, 10.0 - 4.0)
    assert p0["slice_location"] == 6.0
    p4 = cr.dicom_plane_of(vol, 4)
    assert p4["position"][2] == 14.0 and p4["slice_location"] == 14.0
    with pytest.raises(cr.ClaraError, match="slice"):
        cr.dicom_plane_of(vol, 5)
    with pytest.raises(cr.ClaraError):
        cr.dicom_plane_of(cr.Volume(4, 3, 1, voxel=(0.0, 1.0, 1.0)))
    with pytest.raises(TypeError):
        cr.dicom_plane_of((4, 3, 1))
