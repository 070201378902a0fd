#!/usr/bin/env python3
"""libclara-recon's CUDA backend against the ASTRA Toolbox on the same GPU.

Two comparisons, in one process, on the same data:

1. 2D parallel beam, ASTRA's FBP_CUDA: a 512 x 512 image (1 mm pixels) from
   720 views over 180 degrees on 512 detector columns of 1 mm. ASTRA
   reconstructs one slice per call; the library is timed on one slice and on
   a batch of stacked slices (a multi-row parallel geometry, --batch-slices,
   one execute for the whole batch), reported as slices per second.
2. Cone beam, ASTRA's FDK_CUDA, RabbitCT-like sizes: a 512^3 volume from
   496 projections of 1248 x 960 pixels (0.32 mm) over 360 degrees, source
   750 mm from the axis and 1200 mm from the detector, voxels of 0.45 mm so
   that the volume's inscribed circle lies inside the field of view.

The data: the library's analytic Shepp-Logan phantom (Toft's contrasts,
densities x 0.02 for mu near water's, in 1/mm) and its exact line integrals
(clara_phantom_project), made once and handed to both packages; the ground
truth is the phantom rasterised on the grid.

What is timed, each as the median of --runs runs after one warm-up:
- libclara-recon: the plan once (cuFFT plans, device buffers), then
  clara_fbp_execute_timed from host memory to host memory: the wall time
  of the call ("end to end"), and the device times the library measured
  with CUDA events (upload, filter, back-projection, download);
- ASTRA: end to end = creating the projection and volume data objects from
  the same numpy array, creating and running the algorithm, reading the
  volume back and deleting the objects, i.e. what a caller pays per
  reconstruction; and the algorithm's run() alone.
The ratios are ASTRA's time over the library's (> 1: the library is
faster). Both reconstructions are compared with the phantom (RMSE over the
phantom region: in each image row, the voxels from the first to the last
non-zero truth voxel, as clara-recon-bench does; for the cone, only the
slices within 60 mm of the mid-plane, which the detector covers for every
view) and with each other.

Geometry mapping (include/clara_recon.h and ASTRA's create_proj_geom
conventions, checked against ASTRA's astra_geom_2vec):
- parallel: ASTRA's 'parallel' geometry at angle t has rays along
  (sin t, -cos t) and detector pixel i at (i - n/2 + 0.5) * width along
  (cos t, sin t) -- the library's s = x cos t + y sin t with the same
  column centres (the ray direction is reversed, the line is the same). The
  sinogram is passed as is ([views][cols]) with the same angles.
- cone: ASTRA's 'cone' geometry puts the source at R_s (sin t, -cos t, 0),
  the detector centre at (R_d - R_s) (-sin t, cos t, 0), columns along
  (cos t, sin t, 0) and rows along +z: exactly the library's geometry, so
  the angles, pixel sizes and distances are passed unchanged
  (origin-detector distance = R_d - R_s); ASTRA's projection array is
  [rows][views][cols], the library's transposed.
- volumes: both grids are centred on the origin with the same voxel size.
  The library's image[iz][iy][ix] has y growing with iy. ASTRA's 2D volume
  has row 0 at the top (y = maxY - (row + 0.5) * pixel), so its image is
  the library's flipped in y. For its CUDA 3D volumes the expected mapping
  is no flip ([slice][row][col] = [z][y][x] with both growing with the
  index). Because these index conventions are where comparisons usually go
  wrong, the script scores every flip of y and z against the phantom,
  prints them, uses the best, and warns when the best is not the expected
  one.

Usage:

    CLARA_RECON_LIB=<build>/src/.libs/libclara-recon.so \\
        python3 bench/peers/astra_cuda.py [--runs N] [--only 2d|3d]
        [--batch-slices B] [--texture] [--device D] [--quick]

--quick runs small sizes (2D 256^2 from 360 views, cone 128^3 from 124
projections of 312 x 240) to check the set-up in seconds.

Needs numpy, the ASTRA Toolbox with CUDA (pip install astra-toolbox) and a
CUDA GPU. Without ASTRA, without CUDA in ASTRA, or without a usable CUDA
device for the library, the script prints why and exits 0 (skipped).
Exit status: 0 done or skipped, 1 when a library call fails, 2 usage error.
"""

import argparse
import ctypes
import ctypes.util
import os
import statistics
import sys
import time


def skip(msg):
    print(f"astra_cuda: SKIP: {msg}")
    sys.exit(77)


try:
    import numpy as np
except ImportError:
    skip("numpy is not installed (pip install numpy)")
try:
    import astra
except ImportError:
    skip("the ASTRA Toolbox is not installed (pip install astra-toolbox)")
except Exception as e:  # a broken install (missing CUDA libraries, ...)
    skip(f"the ASTRA Toolbox cannot be imported: {e}")

# ---------------------------------------------------------------------------
# The declarations of include/clara_recon.h that this script needs
# ---------------------------------------------------------------------------

CLARA_OK = 0
CLARA_ERR_NO_DEVICE = -4
CLARA_BACKEND_CUDA = 2
CLARA_GEOM_PARALLEL = 0
CLARA_GEOM_CONE = 3
CLARA_FILTER_RAM_LAK = 0
CLARA_FBP_ALLOW_TRUNCATION = 1 << 0
CLARA_FBP_GPU_TEXTURE = 1 << 3

_progress_fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p,
                                ctypes.c_double, ctypes.c_void_p)


class ContextOptions(ctypes.Structure):
    _fields_ = [
        ("backend", ctypes.c_int),
        ("threads", ctypes.c_int),
        ("progress", _progress_fn),
        ("progress_user", ctypes.c_void_p),
        ("device", ctypes.c_int),
        ("device_memory_limit", ctypes.c_size_t),
    ]


class CtGeometry(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int),
        ("views", ctypes.c_int),
        ("rows", ctypes.c_int),
        ("cols", ctypes.c_int),
        ("angles", ctypes.POINTER(ctypes.c_float)),
        ("det_spacing", ctypes.c_double * 2),
        ("det_offset", ctypes.c_double * 2),
        ("source_to_iso", ctypes.c_double),
        ("source_to_detector", ctypes.c_double),
    ]


class Volume(ctypes.Structure):
    _fields_ = [
        ("nx", ctypes.c_int),
        ("ny", ctypes.c_int),
        ("nz", ctypes.c_int),
        ("voxel", ctypes.c_double * 3),
        ("center", ctypes.c_double * 3),
    ]


class FbpOptions(ctypes.Structure):
    _fields_ = [
        ("filter", ctypes.c_int),
        ("cutoff", ctypes.c_double),
        ("flags", ctypes.c_uint),
        ("mu_water", ctypes.c_double),
    ]


class Timing(ctypes.Structure):
    _fields_ = [
        ("total_ms", ctypes.c_double),
        ("upload_ms", ctypes.c_double),
        ("filter_ms", ctypes.c_double),
        ("backproject_ms", ctypes.c_double),
        ("download_ms", ctypes.c_double),
        ("slabs", ctypes.c_int),
    ]


_H = ctypes.c_void_p
_PH = ctypes.POINTER(ctypes.c_void_p)
_PF = ctypes.POINTER(ctypes.c_float)
_PROTOTYPES = {
    "clara_version": (ctypes.c_char_p, []),
    "clara_status_name": (ctypes.c_char_p, [ctypes.c_int]),
    "clara_last_error": (ctypes.c_char_p, []),
    "clara_context_options_init": (None, [ctypes.POINTER(ContextOptions)]),
    "clara_context_create": (ctypes.c_int,
                             [ctypes.POINTER(ContextOptions), _PH]),
    "clara_context_destroy": (None, [_H]),
    "clara_context_backend": (ctypes.c_int, [_H]),
    "clara_fbp_options_init": (None, [ctypes.POINTER(FbpOptions)]),
    "clara_fbp_plan_create": (ctypes.c_int,
                              [_H, ctypes.POINTER(CtGeometry),
                               ctypes.POINTER(Volume),
                               ctypes.POINTER(FbpOptions), _PH]),
    "clara_fbp_execute_timed": (ctypes.c_int,
                                [_H, _PF, _PF, ctypes.POINTER(Timing)]),
    "clara_fbp_plan_destroy": (None, [_H]),
    "clara_phantom_shepp_logan": (ctypes.c_int, [ctypes.c_int,
                                                 ctypes.c_double,
                                                 ctypes.c_double, _PH]),
    "clara_phantom_project": (ctypes.c_int,
                              [_H, ctypes.POINTER(CtGeometry), _PF]),
    "clara_phantom_rasterize": (ctypes.c_int,
                                [_H, ctypes.POINTER(Volume), ctypes.c_int,
                                 _PF]),
    "clara_phantom_destroy": (None, [_H]),
}


class LibraryError(RuntimeError):
    def __init__(self, function, status, message):
        super().__init__(f"{function}: {status}: {message}")
        self.status = status


def load_library():
    """libclara-recon from CLARA_RECON_LIB, else the loader's search path."""
    path = os.environ.get("CLARA_RECON_LIB")
    names = [path] if path else [ctypes.util.find_library("clara-recon"),
                                 "libclara-recon.so.0"]
    errors = []
    for name in names:
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError as e:
            errors.append(str(e))
    else:
        print("astra_cuda: libclara-recon not found; set CLARA_RECON_LIB to "
              "<build>/src/.libs/libclara-recon.so" +
              (f" ({'; '.join(errors)})" if errors else ""), file=sys.stderr)
        sys.exit(2)
    for fname, (res, args) in _PROTOTYPES.items():
        try:
            fn = getattr(lib, fname)
        except AttributeError:
            print(f"astra_cuda: {name} lacks {fname} (an older build?)",
                  file=sys.stderr)
            sys.exit(2)
        fn.restype = res
        fn.argtypes = args
    return lib


LIB = None


def check(function, status):
    if status != CLARA_OK:
        raise LibraryError(function,
                           LIB.clara_status_name(status).decode(),
                           LIB.clara_last_error().decode())


def fptr(a):
    assert a.dtype == np.float32 and a.flags["C_CONTIGUOUS"]
    return a.ctypes.data_as(_PF)


class Scan:
    """A geometry, a volume, the phantom's projections and its truth."""

    def __init__(self, kind, views, rows, cols, du, dv, rs, rd, n, nz, vox,
                 radius, ndim, angle_range, supersample):
        self.angles = np.ascontiguousarray(
            np.arange(views, dtype=np.float64) * angle_range / views,
            dtype=np.float32)
        g = CtGeometry()
        g.kind = kind
        g.views = views
        g.rows = rows
        g.cols = cols
        g.angles = fptr(self.angles)
        g.det_spacing[0] = dv
        g.det_spacing[1] = du
        g.source_to_iso = rs
        g.source_to_detector = rd
        self.geom = g
        v = Volume()
        v.nx = v.ny = n
        v.nz = nz
        v.voxel[0] = v.voxel[1] = v.voxel[2] = vox
        self.vol = v
        self.shape = (nz, n, n)
        ph = ctypes.c_void_p()
        check("clara_phantom_shepp_logan",
              LIB.clara_phantom_shepp_logan(ndim, radius, 0.02,
                                            ctypes.byref(ph)))
        try:
            t0 = time.perf_counter()
            self.proj = np.empty((views, rows, cols), np.float32)
            check("clara_phantom_project",
                  LIB.clara_phantom_project(ph, ctypes.byref(g),
                                            fptr(self.proj)))
            self.truth = np.empty(self.shape, np.float32)
            check("clara_phantom_rasterize",
                  LIB.clara_phantom_rasterize(ph, ctypes.byref(v),
                                              supersample, fptr(self.truth)))
            self.data_s = time.perf_counter() - t0
        finally:
            LIB.clara_phantom_destroy(ph)


def region_mask(truth, vox, zmax_mm=None):
    """Per image row, the voxels from the first to the last non-zero truth
    voxel; for volumes, only slices with |z| <= zmax_mm."""
    nz = truth != 0
    n = truth.shape[-1]
    idx = np.arange(n)
    first = np.where(nz.any(-1), nz.argmax(-1), n)
    last = np.where(nz.any(-1), n - 1 - nz[..., ::-1].argmax(-1), -1)
    m = (idx >= first[..., None]) & (idx <= last[..., None])
    if zmax_mm is not None:
        z = (np.arange(truth.shape[0]) - 0.5 * (truth.shape[0] - 1)) * vox
        m &= (np.abs(z) <= zmax_mm)[:, None, None]
    return m


def rmse(a, b, m):
    d = a[m].astype(np.float64) - b[m]
    return float(np.sqrt(np.mean(d * d)))


def median(xs):
    return statistics.median(xs)


# ---------------------------------------------------------------------------
# libclara-recon
# ---------------------------------------------------------------------------


def clara_run(scan, args, runs, flags=0, label=""):
    """Plans once, executes warm-up + runs times; returns the image and the
    medians."""
    co = ContextOptions()
    LIB.clara_context_options_init(ctypes.byref(co))
    co.backend = CLARA_BACKEND_CUDA
    co.device = args.device
    ctx = ctypes.c_void_p()
    check("clara_context_create",
          LIB.clara_context_create(ctypes.byref(co), ctypes.byref(ctx)))
    plan = ctypes.c_void_p()
    try:
        fo = FbpOptions()
        LIB.clara_fbp_options_init(ctypes.byref(fo))
        fo.filter = CLARA_FILTER_RAM_LAK
        fo.flags = flags | (CLARA_FBP_GPU_TEXTURE if args.texture else 0)
        t0 = time.perf_counter()
        check("clara_fbp_plan_create",
              LIB.clara_fbp_plan_create(ctx, ctypes.byref(scan.geom),
                                        ctypes.byref(scan.vol),
                                        ctypes.byref(fo), ctypes.byref(plan)))
        plan_ms = (time.perf_counter() - t0) * 1e3
        img = np.empty(scan.shape, np.float32)
        wall, tims = [], []
        for k in range(runs + 1):
            t = Timing()
            t0 = time.perf_counter()
            check("clara_fbp_execute_timed",
                  LIB.clara_fbp_execute_timed(plan, fptr(scan.proj),
                                              fptr(img), ctypes.byref(t)))
            dt = (time.perf_counter() - t0) * 1e3
            if k > 0:  # the first run is the warm-up
                wall.append(dt)
                tims.append(t)
        res = {
            "plan_ms": plan_ms,
            "e2e_ms": median(wall),
            "upload_ms": median([t.upload_ms for t in tims]),
            "filter_ms": median([t.filter_ms for t in tims]),
            "backproject_ms": median([t.backproject_ms for t in tims]),
            "download_ms": median([t.download_ms for t in tims]),
            "slabs": tims[-1].slabs,
        }
        print(f"  libclara-recon{label}: plan {plan_ms:.1f} ms; execute end "
              f"to end {res['e2e_ms']:.2f} ms (device: upload "
              f"{res['upload_ms']:.2f}, filter {res['filter_ms']:.2f}, "
              f"back-projection {res['backproject_ms']:.2f}, download "
              f"{res['download_ms']:.2f} ms; {res['slabs']} slab"
              f"{'' if res['slabs'] == 1 else 's'})")
        return img, res
    finally:
        if plan.value:
            LIB.clara_fbp_plan_destroy(plan)
        LIB.clara_context_destroy(ctx)


# ---------------------------------------------------------------------------
# ASTRA
# ---------------------------------------------------------------------------


def astra_run(make_data, alg, runs, get, delete):
    """Runs warm-up + runs reconstructions, each end to end: make the data
    objects, create and run the algorithm, get the volume, delete all.
    Returns the last volume and the median end-to-end and run() times."""
    e2e, run = [], []
    rec = None
    for k in range(runs + 1):
        t0 = time.perf_counter()
        sino_id, rec_id = make_data()
        cfg = astra.astra_dict(alg)
        cfg["ProjectionDataId"] = sino_id
        cfg["ReconstructionDataId"] = rec_id
        if alg == "FBP_CUDA":
            cfg["option"] = {"FilterType": "Ram-Lak"}
        alg_id = astra.algorithm.create(cfg)
        t1 = time.perf_counter()
        astra.algorithm.run(alg_id)
        t2 = time.perf_counter()
        rec = get(rec_id)
        astra.algorithm.delete(alg_id)
        delete(sino_id)
        delete(rec_id)
        t3 = time.perf_counter()
        if k > 0:
            e2e.append((t3 - t0) * 1e3)
            run.append((t2 - t1) * 1e3)
    return rec, median(e2e), median(run)


def best_flip(astra_img, ours_truth, mask, expected, axes):
    """Scores every flip of 'axes' of ASTRA's image against the truth;
    returns the flipped image, its name and the table."""
    import itertools
    table = []
    best = None
    for bits in itertools.product((False, True), repeat=len(axes)):
        img = astra_img
        name = []
        for flip, (ax, axname) in zip(bits, axes):
            if flip:
                img = np.flip(img, ax)
                name.append(f"flip {axname}")
        name = ", ".join(name) or "as is"
        e = rmse(img, ours_truth, mask)
        table.append((name, e))
        if best is None or e < best[1]:
            best = (name, e, img)
    print("  ASTRA orientation vs the phantom (RMSE): " +
          "; ".join(f"{n} {e:.3g}" for n, e in table))
    if best[0] != expected:
        print(f"  WARNING: the best orientation is '{best[0]}', not the "
              f"expected '{expected}': check the mapping in this script")
    return np.ascontiguousarray(best[2]), best[0]


# ---------------------------------------------------------------------------
# The comparisons
# ---------------------------------------------------------------------------


def compare_2d(args):
    n = 256 if args.quick else 512
    views = 360 if args.quick else 720
    print(f"2D parallel FBP: {n} x {n} (1 mm), {views} views over 180 "
          f"degrees, {n} columns of 1 mm, ramp filter")
    scan = Scan(CLARA_GEOM_PARALLEL, views, 1, n, 1.0, 1.0, 0.0, 0.0, n, 1,
                1.0, 0.45 * n, 2, np.pi, 4)
    print(f"  data: analytic projections and truth in {scan.data_s:.1f} s")
    # the columns sit at +-(n-1)/2 and just reach the grid's inscribed
    # circle, which the plan accepts to within a voxel
    ours, r = clara_run(scan, args, args.runs)

    vol_geom = astra.create_vol_geom(n, n)
    proj_geom = astra.create_proj_geom("parallel", 1.0, n,
                                       scan.angles.astype(np.float64))
    sino = np.ascontiguousarray(scan.proj[:, 0, :])

    def make():
        return (astra.data2d.create("-sino", proj_geom, sino),
                astra.data2d.create("-vol", vol_geom, 0.0))

    rec, a_e2e, a_run = astra_run(make, "FBP_CUDA", args.runs,
                                  astra.data2d.get, astra.data2d.delete)
    print(f"  ASTRA FBP_CUDA: end to end {a_e2e:.2f} ms, run() "
          f"{a_run:.2f} ms")
    truth = scan.truth[0]
    mask = region_mask(truth, 1.0)
    rec, _ = best_flip(np.asarray(rec, np.float32), truth, mask, "flip y",
                       [(0, "y"), (1, "x")])
    e_ours = rmse(ours[0], truth, mask)
    e_astra = rmse(rec, truth, mask)
    e_diff = rmse(ours[0], rec, mask)
    print(f"  RMSE vs phantom (1/mm): libclara-recon {e_ours:.4g}, ASTRA "
          f"{e_astra:.4g}; between them {e_diff:.4g}")
    dev = r["upload_ms"] + r["filter_ms"] + r["backproject_ms"] + \
        r["download_ms"]
    print(f"  ratio ASTRA / libclara-recon, one slice end to end: "
          f"{a_e2e / r['e2e_ms']:.2f}x; ASTRA run() / our device time "
          f"(upload + filter + back-projection + download): "
          f"{a_run / dev:.2f}x")

    b = args.batch_slices
    if b > 1:
        batch = Scan.__new__(Scan)
        batch.angles = scan.angles
        g = CtGeometry()
        ctypes.pointer(g)[0] = scan.geom
        g.rows = b
        g.angles = fptr(batch.angles)
        batch.geom = g
        v = Volume()
        ctypes.pointer(v)[0] = scan.vol
        v.nz = b
        batch.vol = v
        batch.shape = (b, n, n)
        # a 2D phantom projects the same sinogram into every row
        batch.proj = np.ascontiguousarray(
            np.broadcast_to(scan.proj, (views, b, n)))
        img, rb = clara_run(batch, args, args.runs,
                            label=f", {b} slices per execute")
        worst = max(rmse(img[k], ours[0], mask) for k in (0, b // 2, b - 1))
        ours_rate = b / (rb["e2e_ms"] * 1e-3)
        astra_rate = 1.0 / (a_e2e * 1e-3)
        print(f"  batched: libclara-recon {ours_rate:.0f} slices/s end to "
              f"end (target >= 1000), ASTRA {astra_rate:.0f} slices/s one "
              f"call per slice: {ours_rate / astra_rate:.1f}x "
              f"(slices match the single-slice image to {worst:.2g})")


def compare_cone(args):
    if args.quick:
        n, views, cols, rows, du = 128, 124, 312, 240, 1.28
    else:
        n, views, cols, rows, du = 512, 496, 1248, 960, 0.32
    rs, rd = 750.0, 1200.0
    vox = 0.45 * 512 / n
    radius = 90.0
    print(f"Cone-beam FDK: {n}^3 ({vox:.3g} mm), {views} projections of "
          f"{cols} x {rows} ({du} mm) over 360 degrees, R_s {rs:.0f} mm, "
          f"R_d {rd:.0f} mm, ramp filter")
    scan = Scan(CLARA_GEOM_CONE, views, rows, cols, du, du, rs, rd, n, n,
                vox, radius, 3, 2 * np.pi, 2)
    print(f"  data: analytic projections ({scan.proj.nbytes / 2**30:.2f} "
          f"GiB) and truth in {scan.data_s:.1f} s")
    ours, r = clara_run(scan, args, args.runs)

    h = 0.5 * n * vox
    vol_geom = astra.create_vol_geom(n, n, n, -h, h, -h, h, -h, h)
    proj_geom = astra.create_proj_geom("cone", du, du, rows, cols,
                                       scan.angles.astype(np.float64), rs,
                                       rd - rs)
    t0 = time.perf_counter()
    sino = np.ascontiguousarray(scan.proj.transpose(1, 0, 2))
    transpose_ms = (time.perf_counter() - t0) * 1e3

    def make():
        return (astra.data3d.create("-sino", proj_geom, sino),
                astra.data3d.create("-vol", vol_geom, 0.0))

    rec, a_e2e, a_run = astra_run(make, "FDK_CUDA", args.runs,
                                  astra.data3d.get, astra.data3d.delete)
    print(f"  ASTRA FDK_CUDA: end to end {a_e2e:.1f} ms (plus "
          f"{transpose_ms:.0f} ms to transpose the projections into its "
          f"layout, not counted), run() {a_run:.1f} ms")
    mask = region_mask(scan.truth, vox, zmax_mm=60.0)
    rec, _ = best_flip(np.asarray(rec, np.float32), scan.truth, mask,
                       "as is", [(0, "z"), (1, "y")])
    e_ours = rmse(ours, scan.truth, mask)
    e_astra = rmse(rec, scan.truth, mask)
    e_diff = rmse(ours, rec, mask)
    print(f"  RMSE vs phantom (1/mm, |z| <= 60 mm): libclara-recon "
          f"{e_ours:.4g}, ASTRA {e_astra:.4g}; between them {e_diff:.4g}")
    dev = r["upload_ms"] + r["filter_ms"] + r["backproject_ms"] + \
        r["download_ms"]
    print(f"  ratio ASTRA / libclara-recon: end to end "
          f"{a_e2e / r['e2e_ms']:.2f}x; ASTRA run() / our device time "
          f"(upload + filter + back-projection + download): "
          f"{a_run / dev:.2f}x")
    gups = n * n * n * views / (r["backproject_ms"] * 1e-3) / 1e9
    print(f"  libclara-recon back-projection rate: {gups:.1f} GUPS")


def main():
    global LIB
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5,
                    help="timed runs of each, after one warm-up (medians)")
    ap.add_argument("--only", choices=("2d", "3d"),
                    help="run one of the two comparisons")
    ap.add_argument("--batch-slices", type=int, default=256,
                    help="slices per execute of the batched 2D run "
                    "(default 256; 1 = none)")
    ap.add_argument("--texture", action="store_true",
                    help="the library's texture interpolation "
                    "(CLARA_FBP_GPU_TEXTURE)")
    ap.add_argument("--device", type=int, default=0,
                    help="CUDA device for both (default 0)")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, to check the set-up")
    args = ap.parse_args()
    if args.runs < 1 or args.batch_slices < 1 or args.device < 0:
        ap.error("--runs and --batch-slices must be >= 1, --device >= 0")

    try:
        if not astra.use_cuda():
            skip("the installed ASTRA Toolbox has no CUDA support or sees "
                 "no GPU")
    except AttributeError:
        pass  # older ASTRA: the algorithms report it below
    LIB = load_library()
    co = ContextOptions()
    LIB.clara_context_options_init(ctypes.byref(co))
    co.backend = CLARA_BACKEND_CUDA
    co.device = args.device
    ctx = ctypes.c_void_p()
    st = LIB.clara_context_create(ctypes.byref(co), ctypes.byref(ctx))
    if st == CLARA_ERR_NO_DEVICE:
        skip("libclara-recon has no usable CUDA device: " +
             LIB.clara_last_error().decode())
    try:
        check("clara_context_create", st)
    except LibraryError as e:
        print(f"astra_cuda: {e}", file=sys.stderr)
        return 1
    LIB.clara_context_destroy(ctx)
    astra.set_gpu_index(args.device)
    print(f"libclara-recon {LIB.clara_version().decode()} (CUDA, "
          f"{'texture' if args.texture else 'precise'} mode) vs ASTRA "
          f"{astra.__version__}, device {args.device}, {args.runs} runs")
    try:
        if args.only in (None, "2d"):
            compare_2d(args)
        if args.only in (None, "3d"):
            compare_cone(args)
    except LibraryError as e:
        print(f"astra_cuda: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
