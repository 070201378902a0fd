"""The last C functions given Python wrappers: timed and device FBP
execution, the analytic MR k-space phantom and the ISMRMRD writer."""
import numpy as np
import pytest

import clara_recon as cr


def _scan():
    angles = np.linspace(0, np.pi, 60, endpoint=False).astype(np.float32)
    g = cr.Geometry("parallel", angles, rows=1, cols=48)
    v = cr.Volume(32, 32, 1, voxel=1.0)
    with cr.shepp_logan(2, radius=14.0, scale=0.02) as ph:
        proj = ph.project(g)
    return g, v, proj


def test_execute_timed_matches_execute():
    g, v, proj = _scan()
    with cr.Context(backend="cpu", threads=1) as ctx, \
            cr.FBPPlan(ctx, g, v) as plan:
        ref = plan.execute(proj)
        img, t = plan.execute_timed(proj)
    np.testing.assert_array_equal(img, ref)
    assert set(t) == {"total_ms", "upload_ms", "filter_ms", "backproject_ms",
                      "download_ms", "slabs"}
    assert t["total_ms"] > 0 and t["upload_ms"] == 0 and t["slabs"] == 1


def test_execute_device_needs_a_device():
    g, v, _ = _scan()
    with cr.Context(backend="cpu") as ctx, cr.FBPPlan(ctx, g, v) as plan:
        with pytest.raises(cr.ClaraError) as e:
            plan.execute_device(0x1000, 0x2000)
    assert "no device memory" in str(e.value)


def test_mr_execute_device_needs_a_device():
    geom = cr.MRGeometry(coils=2, nx=16, ny=16)
    with cr.Context(backend="cpu") as ctx, cr.MRPlan(ctx, geom) as plan:
        with pytest.raises(cr.ClaraError) as e:
            plan.execute_device(0x1000, 0x2000)
    assert e.value.name == "ERR_UNSUPPORTED"
    assert e.value.function == "clara_mr_execute_device"
    assert "no device memory" in e.value.message


def test_phantom_kspace_reconstructs_the_phantom():
    geom = cr.MRGeometry(coils=4, nx=128, ny=64, recon_nx=64)
    k, maps = cr.mr_phantom_kspace(geom, fov_mm=200.0, coil_maps=True)
    assert k.shape == geom.kspace_shape and k.dtype == np.complex64
    assert maps.shape == geom.maps_shape
    with cr.Context(backend="cpu") as ctx, \
            cr.MRPlan(ctx, geom, combine="rss") as plan:
        img = plan.execute(k)[0, 0]
    # RSS of phantom x map = phantom x sqrt(sum |S_c|^2): compare with the
    # maps themselves inside the phantom's brightest region (density 1
    # skull ring is thin, so use the ratio's median over the head).
    rss_maps = np.sqrt((np.abs(maps[:, 0]) ** 2).sum(axis=0))
    head = img > 0.5 * img.max()
    ratio = img[head] / rss_maps[head]
    assert 0.8 < np.median(ratio) < 1.1
    with pytest.raises(cr.ClaraError):
        cr.mr_phantom_kspace(cr.MRGeometry(coils=1, nx=16, ny=16, nz=2), 100.0)


def test_write_ismrmrd_round_trip(tmp_path):
    geom = cr.MRGeometry(coils=2, nx=64, ny=32, recon_nx=32)
    k, _ = cr.mr_phantom_kspace(geom, fov_mm=120.0)
    rng = np.random.default_rng(1)
    noise = (rng.standard_normal((2, 256))
             + 1j * rng.standard_normal((2, 256))).astype(np.complex64)
    path = tmp_path / "raw.h5"
    cr.write_ismrmrd(path, geom, k, noise)
    with cr.MRFile(path) as f:
        assert f.format == "ismrmrd"
        g2 = f.geometry(0)
        k2 = f.kspace(0)
        n2 = f.noise
    assert (g2.coils, g2.nx, g2.ny, g2.recon_nx) == (2, 64, 32, 32)
    np.testing.assert_array_equal(k2, k)
    np.testing.assert_array_equal(n2, noise)
    with pytest.raises(ValueError):
        cr.write_ismrmrd(tmp_path / "bad.h5", geom, k[:, :1])
    with pytest.raises(ValueError):
        cr.write_ismrmrd(tmp_path / "bad.h5", geom, k, noise[:1])
    assert not (tmp_path / "bad.h5").exists()
