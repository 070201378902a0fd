#!/usr/bin/env python3
"""libclara-recon against scikit-image's iradon: 2D parallel-beam FBP.

The target: CPU parallel-beam FBP of 512 x 512 from 720 views over 180
degrees must be at least 20x faster than scikit-image's iradon on the same
sinogram in the same process, with an equal or lower RMSE against the
phantom.

What the script does, all in one process:

1. the phantom: scikit-image's Shepp-Logan phantom (400 x 400) resized to
   N x N (bilinear);
2. the sinogram: skimage.transform.radon(phantom, theta, circle=True) with
   720 angles evenly spaced over [0, 180) degrees;
3. scikit-image: iradon(sinogram, theta, filter_name="ramp", circle=True,
   interpolation="linear"), timed over --skimage-runs runs (median);
4. libclara-recon (through its Python bindings, or ctypes), on the same
   sinogram: a plan created once and clara_fbp_execute timed over --runs
   runs (median), all cores; the same with one thread (iradon runs on one
   core); and the one-shot cost (context + plan + execute + destroy), which
   is what a caller that reconstructs one image pays;
5. both RMSEs against the phantom inside the circle of radius N/2 - 1
   pixels around the rotation centre, then PASS/FAIL.

Mapping scikit-image's convention onto libclara-recon's (include/
clara_recon.h): both project a point onto s = x cos(t) + y sin(t), but
scikit-image's y axis points *up* the image array (y = N//2 - row; checked
with a single bright pixel: at 90 degrees it lands on bin N//2 + (N//2 - row)),
while the library's image[iy][ix] has y growing with iy. Flipping y is the
same as negating the angle, so the library gets the sinogram transposed to
[views][1][cols] with angles -theta in radians, and its image then comes out
in scikit-image's array order with no flip. (docs/FORMATS.md maps it the
other way round, with the same result: +theta, the grid centred at
(-0.5, +0.5), and the image flipped vertically.)
scikit-image rotates about pixel N//2 and puts detector bin i at
s = i - N//2; for even N that is half a pixel off the array's centre, so the
volume is centred at (-0.5, -0.5) mm and the detector offset by -0.5 mm
(1 pixel = 1 mm). The detector then reaches 0.7 mm less far than the now
off-axis square's inscribed circle on one side, so the plan is told
CLARA_FBP_ALLOW_TRUNCATION; nothing is truncated (the sinogram is zero
there: the phantom stays within 0.46 N of the centre). --check-mapping
reconstructs with the naive centred mapping and the flipped variants too and
prints their RMSEs, to show that the chosen one is right.

The library is called through the project's Python bindings
(bindings/python, `import clara_recon`) when they import; otherwise, or with
--ctypes, through the few ctypes declarations in this script. Point
CLARA_RECON_LIB at the built library:

    CLARA_RECON_LIB=<build>/src/.libs/libclara-recon.so \\
    PYTHONPATH=bindings/python python3 bench/peers/skimage_iradon.py

Exit status: 0 PASS, 1 FAIL, 2 usage error, 77 skipped (scikit-image or the
library missing).
"""

import argparse
import ctypes
import ctypes.util
import os
import statistics
import sys
import time

SKIP = 77

try:
    import numpy as np
except ImportError:  # pragma: no cover
    print("skimage_iradon: SKIP: numpy is not installed")
    sys.exit(SKIP)
try:
    import skimage
    from skimage.data import shepp_logan_phantom
    from skimage.transform import iradon, radon, resize
except ImportError:
    print("skimage_iradon: SKIP: scikit-image is not installed "
          "(pip install scikit-image)")
    sys.exit(SKIP)

SPEEDUP_TARGET = 20.0
RMSE_RTOL = 1e-4

# ---------------------------------------------------------------------------
# The few declarations of include/clara_recon.h that this script needs
# ---------------------------------------------------------------------------

CLARA_GEOM_PARALLEL = 0
CLARA_BACKEND_CPU = 1
CLARA_FILTER_RAM_LAK = 0
CLARA_FBP_ALLOW_TRUNCATION = 1


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


class ContextOptions(ctypes.Structure):
    _fields_ = [
        ("backend", ctypes.c_int),
        ("threads", ctypes.c_int),
        ("progress", ctypes.c_void_p),
        ("progress_user", ctypes.c_void_p),
        ("device", ctypes.c_int),
        ("device_memory_limit", ctypes.c_size_t),
    ]


class FbpOptions(ctypes.Structure):
    _fields_ = [
        ("filter", ctypes.c_int),
        ("cutoff", ctypes.c_double),
        ("flags", ctypes.c_uint),
        ("mu_water", ctypes.c_double),
    ]


def load_library():
    """The library from CLARA_RECON_LIB, else the loader's search path."""
    path = os.environ.get("CLARA_RECON_LIB")
    candidates = [path] if path else [
        ctypes.util.find_library("clara-recon"), "libclara-recon.so.0"]
    errors = []
    for cand in candidates:
        if not cand:
            continue
        try:
            lib = ctypes.CDLL(cand)
            break
        except OSError as e:
            errors.append(str(e))
    else:
        return None, "; ".join(errors) or "not found"
    P = ctypes.c_void_p
    PP = ctypes.POINTER(ctypes.c_void_p)
    FP = ctypes.POINTER(ctypes.c_float)
    decl = {
        "clara_version": (ctypes.c_char_p, []),
        "clara_status_name": (ctypes.c_char_p, [ctypes.c_int]),
        "clara_last_error": (ctypes.c_char_p, []),
        "clara_context_options_init": (None, [ctypes.POINTER(ContextOptions)]),
        "clara_context_create": (ctypes.c_int,
                                 [ctypes.POINTER(ContextOptions), PP]),
        "clara_context_destroy": (None, [P]),
        "clara_context_threads": (ctypes.c_int, [P]),
        "clara_fbp_options_init": (None, [ctypes.POINTER(FbpOptions)]),
        "clara_fbp_plan_create": (ctypes.c_int, [
            P, ctypes.POINTER(CtGeometry), ctypes.POINTER(Volume),
            ctypes.POINTER(FbpOptions), PP]),
        "clara_fbp_execute": (ctypes.c_int, [P, FP, FP]),
        "clara_fbp_plan_destroy": (None, [P]),
    }
    for name, (res, args) in decl.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    return lib, None


class CtypesRecon:
    """A context and a plan for one parallel-beam sinogram, through the
    declarations above."""

    via = "ctypes (built into this script)"

    def __init__(self, lib, cols, angles_rad, n, threads, det_offset=-0.5,
                 center=(-0.5, -0.5)):
        self.lib = lib
        self.ctx = ctypes.c_void_p()
        self.plan = ctypes.c_void_p()
        copts = ContextOptions()
        lib.clara_context_options_init(ctypes.byref(copts))
        copts.backend = CLARA_BACKEND_CPU
        copts.threads = threads
        self.check(lib.clara_context_create(ctypes.byref(copts),
                                            ctypes.byref(self.ctx)),
                   "clara_context_create")
        self.threads = lib.clara_context_threads(self.ctx)
        self.angles = np.ascontiguousarray(angles_rad, dtype=np.float32)
        g = CtGeometry()
        g.kind = CLARA_GEOM_PARALLEL
        g.views, g.rows, g.cols = len(self.angles), 1, cols
        g.angles = self.angles.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        g.det_spacing[0] = g.det_spacing[1] = 1.0
        g.det_offset[0], g.det_offset[1] = 0.0, det_offset
        v = Volume()
        v.nx, v.ny, v.nz = n, n, 1
        for i in range(3):
            v.voxel[i] = 1.0
        v.center[0], v.center[1] = center
        fo = FbpOptions()
        lib.clara_fbp_options_init(ctypes.byref(fo))
        fo.filter = CLARA_FILTER_RAM_LAK
        fo.flags = CLARA_FBP_ALLOW_TRUNCATION
        self.check(lib.clara_fbp_plan_create(self.ctx, ctypes.byref(g),
                                             ctypes.byref(v), ctypes.byref(fo),
                                             ctypes.byref(self.plan)),
                   "clara_fbp_plan_create")
        self.out = np.empty((n, n), dtype=np.float32)

    def check(self, st, what):
        if st != 0:
            name = self.lib.clara_status_name(st).decode()
            msg = self.lib.clara_last_error().decode()
            self.close()
            raise RuntimeError(f"{what}: {name}: {msg}")

    def execute(self, proj):
        """proj: C-contiguous float32 [views][cols]. Returns the [n][n]
        image (a buffer that the next call overwrites)."""
        FP = ctypes.POINTER(ctypes.c_float)
        st = self.lib.clara_fbp_execute(self.plan, proj.ctypes.data_as(FP),
                                        self.out.ctypes.data_as(FP))
        if st != 0:
            self.check(st, "clara_fbp_execute")
        return self.out

    def close(self):
        if self.plan:
            self.lib.clara_fbp_plan_destroy(self.plan)
            self.plan = ctypes.c_void_p()
        if self.ctx:
            self.lib.clara_context_destroy(self.ctx)
            self.ctx = ctypes.c_void_p()


class BindingsRecon:
    """The same through the project's Python bindings (bindings/python)."""

    via = "the Python bindings (import clara_recon)"

    def __init__(self, cr, cols, angles_rad, n, threads, det_offset=-0.5,
                 center=(-0.5, -0.5)):
        self.ctx = cr.Context(backend="cpu", threads=threads)
        self.threads = self.ctx.threads
        g = cr.Geometry("parallel", np.asarray(angles_rad, np.float32),
                        rows=1, cols=cols, det_spacing=(1.0, 1.0),
                        det_offset=(0.0, det_offset))
        v = cr.Volume(n, n, 1, voxel=(1.0, 1.0, 1.0),
                      center=(center[0], center[1], 0.0))
        self.plan = cr.FBPPlan(self.ctx, g, v, filter="ram-lak",
                               allow_truncation=True)

    def execute(self, proj):
        return self.plan.execute(proj)[0]

    def close(self):
        self.plan.close()
        self.ctx.close()


def median_time(fn, runs, warmup=0):
    """Median, min and max of `runs` timed calls after `warmup` untimed
    ones; with warmup > 0, also the time of the very first call."""
    first = None
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        if first is None:
            first = time.perf_counter() - t0
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    if warmup:
        return statistics.median(times), min(times), max(times), first
    return statistics.median(times), min(times), max(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--views", type=int, default=720)
    ap.add_argument("--runs", type=int, default=10,
                    help="timed executes of ours (default 10)")
    ap.add_argument("--skimage-runs", type=int, default=3,
                    help="timed iradon runs (default 3)")
    ap.add_argument("--threads", type=int, default=0,
                    help="our worker threads, 0 = all cores (default)")
    ap.add_argument("--ctypes", action="store_true",
                    help="call the library through this script's own ctypes "
                    "declarations instead of the Python bindings")
    ap.add_argument("--check-mapping", action="store_true",
                    help="also show the RMSE of wrong geometry mappings")
    args = ap.parse_args()
    if args.size < 8 or args.views < 2 or args.runs < 1 or \
            args.skimage_runs < 1 or args.threads < 0:
        ap.error("sizes, views and runs must be positive")

    lib, err = load_library()
    if lib is None:
        print(f"skimage_iradon: SKIP: libclara-recon not loadable ({err}); "
              "set CLARA_RECON_LIB=<build>/src/.libs/libclara-recon.so")
        return SKIP
    make = None
    if not args.ctypes:
        try:
            import clara_recon as cr
            for name in ("Context", "Geometry", "Volume", "FBPPlan"):
                getattr(cr, name)

            def make(*a, **k):
                return BindingsRecon(cr, *a, **k)
            make.via = BindingsRecon.via
        except (ImportError, AttributeError) as e:
            print(f"note: Python bindings not usable ({e}); using ctypes")
    if make is None:
        def make(*a, **k):
            return CtypesRecon(lib, *a, **k)
        make.via = CtypesRecon.via

    n, nv = args.size, args.views
    print(f"libclara-recon {lib.clara_version().decode()} vs scikit-image "
          f"{skimage.__version__} (numpy {np.__version__}), "
          f"{os.cpu_count()} CPUs; library called through {make.via}")

    # -- phantom and sinogram ------------------------------------------------
    phantom = resize(shepp_logan_phantom(), (n, n), order=1,
                     anti_aliasing=False).astype(np.float64)
    theta = np.linspace(0.0, 180.0, nv, endpoint=False)
    t0 = time.perf_counter()
    sino = radon(phantom, theta=theta, circle=True)  # [cols][views]
    print(f"phantom {n}x{n} (skimage Shepp-Logan, resized), sinogram "
          f"{sino.shape[0]} cols x {sino.shape[1]} views over [0, 180) deg "
          f"(radon: {time.perf_counter() - t0:.2f} s)")

    c = n // 2
    yy, xx = np.mgrid[:n, :n]
    inside = (xx - c) ** 2 + (yy - c) ** 2 <= (n / 2 - 1) ** 2

    def rmse(img):
        d = img[inside] - phantom[inside]
        return float(np.sqrt(np.mean(d * d)))

    # -- scikit-image --------------------------------------------------------
    sk_img = None

    def run_sk():
        nonlocal sk_img
        sk_img = iradon(sino, theta=theta, filter_name="ramp", circle=True,
                        interpolation="linear", output_size=n)

    sk_med, sk_min, sk_max = median_time(run_sk, args.skimage_runs)
    sk_rmse = rmse(sk_img)

    # -- libclara-recon ------------------------------------------------------
    proj = np.ascontiguousarray(sino.T, dtype=np.float32)  # [views][cols]
    angles = np.deg2rad(-theta).astype(np.float32)  # see the module doc
    img = None

    def ours(threads):
        nonlocal img
        t0 = time.perf_counter()
        r = make(n, angles, n, threads)
        plan_s = time.perf_counter() - t0
        try:
            def once():
                nonlocal img
                img = r.execute(proj)
            med, lo, hi, first = median_time(once, args.runs, warmup=1)
            return r.threads, plan_s, med, lo, hi, first, img.copy()
        finally:
            r.close()

    # The first plan of the process may pay for one-time set-up (FFTW
    # planning, page faults) that later plans of the same size do not.
    nt, plan_s, our_med, our_min, our_max, first_s, ours_img = \
        ours(args.threads)
    cold_s = plan_s + first_s
    our_rmse = rmse(ours_img.astype(np.float64))
    nt1 = plan1_s = our1_med = None
    if nt != 1:
        nt1, plan1_s, our1_med, _, _, _, img1 = ours(1)
        if not np.array_equal(img1, ours_img):
            print("note: the 1-thread image differs from the "
                  f"{nt}-thread one (max |diff| "
                  f"{np.abs(img1 - ours_img).max():.3g})")

    def one_shot():
        r = make(n, angles, n, args.threads)
        try:
            r.execute(proj)
        finally:
            r.close()

    os_med, os_min, os_max = median_time(one_shot, 3)

    # -- report ---------------------------------------------------------------
    ratio = sk_med / our_med
    ratio_os = sk_med / os_med
    ratio_cold = sk_med / cold_s
    print()
    print(f"scikit-image iradon (ramp, linear, circle): median {sk_med * 1e3:9.1f}"
          f" ms  (min {sk_min * 1e3:.1f}, max {sk_max * 1e3:.1f}; "
          f"{args.skimage_runs} runs, 1 thread)")
    print(f"libclara-recon execute, {nt} threads:        median "
          f"{our_med * 1e3:9.2f} ms  (min {our_min * 1e3:.2f}, max "
          f"{our_max * 1e3:.2f}; {args.runs} runs after 1 warm-up)")
    print(f"libclara-recon plan creation, first in the process: "
          f"{plan_s * 1e3:.1f} ms; first execute "
          f"{first_s * 1e3:.1f} ms")
    if nt1:
        print(f"libclara-recon execute, 1 thread:          median "
              f"{our1_med * 1e3:9.2f} ms  (plan {plan1_s * 1e3:.1f} ms)")
    print(f"libclara-recon one-shot, first in the process (plan + first "
          f"execute): {cold_s * 1e3:.1f} ms")
    print(f"libclara-recon one-shot, later in the process "
          f"(context+plan+execute+destroy): median "
          f"{os_med * 1e3:.1f} ms (min {os_min * 1e3:.1f}, max "
          f"{os_max * 1e3:.1f}; 3 runs)")
    print()
    print(f"speed-up, plan reused (execute only): {ratio:8.1f}x")
    print(f"speed-up, one-shot, first in process: {ratio_cold:8.1f}x")
    print(f"speed-up, one-shot, later in process: {ratio_os:8.1f}x")
    if nt1:
        print(f"speed-up per core (1 thread, execute): "
              f"{sk_med / our1_med:7.1f}x")
    print(f"RMSE vs phantom inside r = {n / 2 - 1:g} px: scikit-image "
          f"{sk_rmse:.7f}, libclara-recon {our_rmse:.7f} "
          f"(phantom range {phantom.min():.2f}..{phantom.max():.2f})")
    print(f"max |ours - skimage| inside: "
          f"{np.abs(ours_img - sk_img)[inside].max():.3g}")

    if args.check_mapping:
        print("\nmapping check (RMSE of ours with other conventions; the "
              "third, flipped, is docs/FORMATS.md's):")
        variants = [
            ("chosen: -theta, centre (-.5, -.5), offset -.5", -1, -0.5,
             (-0.5, -0.5)),
            ("-theta, centre (0, 0), offset 0", -1, 0.0, (0.0, 0.0)),
            ("+theta, centre (-.5, +.5), offset -.5", 1, -0.5, (-0.5, 0.5)),
            ("+theta, centre (-.5, -.5), offset -.5", 1, -0.5, (-0.5, -0.5)),
            ("+theta, centre (0, 0), offset 0", 1, 0.0, (0.0, 0.0)),
        ]
        for name, sign, off, ctr in variants:
            a = np.deg2rad(sign * theta).astype(np.float32)
            r = make(n, a, n, args.threads, det_offset=off, center=ctr)
            try:
                out = r.execute(proj).astype(np.float64)
            finally:
                r.close()
            print(f"  {name:45s} {rmse(out):.5f}")
            print(f"  {'  same, image flipped up-down':45s} "
                  f"{rmse(out[::-1]):.5f}")

    ok_speed = ratio >= SPEEDUP_TARGET
    # "equal or lower": equal within float32 rounding (1e-4 relative), since
    # both run the same textbook algorithm (Kak & Slaney's ramp, linear
    # interpolation) and agree to rounding on the same sinogram
    ok_rmse = our_rmse <= sk_rmse * (1 + RMSE_RTOL)
    print()
    print(f"target: >= {SPEEDUP_TARGET:g}x faster (execute, plan reused): "
          f"{'PASS' if ok_speed else 'FAIL'} ({ratio:.1f}x)")
    print(f"target: >= {SPEEDUP_TARGET:g}x faster (one-shot, first in the "
          f"process): {'PASS' if ratio_cold >= SPEEDUP_TARGET else 'FAIL'} "
          f"({ratio_cold:.1f}x; informative)")
    print(f"target: RMSE <= scikit-image's: {'PASS' if ok_rmse else 'FAIL'} "
          f"({our_rmse:.7f} vs {sk_rmse:.7f}, tolerance {RMSE_RTOL:g} relative)")
    ok = ok_speed and ok_rmse
    print(f"RESULT: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
