#!/usr/bin/env python3
"""libclara-recon against BART: multi-coil Cartesian 2D inverse FFT + RSS.

The target: the CPU path must be at least 1.5x faster than BART's
`bart fft -i` followed by `bart rss` on the same multi-coil 2D batch
(default 32 slices of 256 x 256 from 8 coils), measured in one run, with a
batch large enough that BART's process start-up is not what is measured.

What the script does:

1. the k-space: one slice of the library's analytic Shepp-Logan phantom
   seen by 8 coils with smooth sensitivity maps (clara_mr_phantom_kspace,
   called through ctypes; no readout oversampling), repeated over the
   slices, plus a little complex Gaussian noise so that the slices differ;
2. the same array written in BART's format (name.cfl: complex64 in
   column-major order; name.hdr: "# Dimensions" and the dimensions). Our
   layout kspace[slices][coils][nz][ny][nx] (C order, nx fastest) is, read
   column-major, exactly BART's [READ, PHS1, PHS2, COIL, MAPS, ...,
   SLICE] = [nx, ny, 1, coils, 1, 1, 1, 1, 1, 1, 1, 1, 1, slices]: BART's
   slice dimension is 13 (SLICE_DIM), so the bytes are written unchanged;
3. BART: `bart fft -i 3 k img` (bitmask 3 = dims 0 and 1; BART's FFT is
   centred, and without -u it is not normalised) then `bart rss 8 img out`
   (bitmask 8 = dim 3, the coils), OMP_NUM_THREADS set (default 2), the
   wall time of both processes together, median of --runs runs; the files
   live in a temporary directory (tmpfs when /dev/shm exists);
4. ours, through the Python bindings: MRPlan(norm="none", combine="rss")
   made once, then execute on the in-memory array (median of --runs), and
   the same including np.fromfile of BART's k.cfl (what BART's first process
   does too);
5. the images compared: BART's out.cfl against ours (relative RMS
   difference; BART's centred, unnormalised inverse FFT equals the
   library's NORM_NONE transform, fftshift(ifft2(ifftshift(k))) * nx * ny);
6. PASS when BART's time / our compute time >= 1.5 and the images agree
   (relative difference <= 1e-4).

    CLARA_RECON_LIB=<build>/src/.libs/libclara-recon.so \\
    PYTHONPATH=bindings/python python3 bench/peers/bart_mr.py

Exit status: 0 PASS, 1 FAIL, 77 skipped (bart, numpy or the library
missing).
"""

import argparse
import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SKIP = 77
TARGET = 1.5

try:
    import numpy as np
except ImportError:  # pragma: no cover
    print("bart_mr: SKIP: numpy is not installed")
    sys.exit(SKIP)

BART = shutil.which("bart")
if BART is None:
    print("bart_mr: SKIP: bart is not installed (Debian package 'bart')")
    sys.exit(SKIP)

try:
    import clara_recon
    from clara_recon import _lib as clara_lib
except Exception as e:  # pragma: no cover
    print(f"bart_mr: SKIP: the clara_recon bindings do not import ({e}); "
          "set PYTHONPATH=bindings/python and CLARA_RECON_LIB")
    sys.exit(SKIP)


def write_cfl(name, array_c_order, dims):
    """Writes a complex64 C-order array whose bytes are BART's column-major
    layout with the given dims."""
    with open(name + ".hdr", "w") as f:
        f.write("# Dimensions\n" + " ".join(str(d) for d in dims) + "\n")
    np.ascontiguousarray(array_c_order, np.complex64).tofile(name + ".cfl")


def read_cfl(name):
    """Returns (flat complex64 data, dims) of name.cfl/.hdr."""
    with open(name + ".hdr") as f:
        lines = [ln for ln in f if not ln.startswith("#")]
    dims = [int(x) for x in lines[0].split()]
    return np.fromfile(name + ".cfl", np.complex64), dims


def phantom_slice(nx, ny, coils):
    """One slice [coils][1][ny][nx] of clara_mr_phantom_kspace (FOV nx mm,
    smooth maps), through ctypes on the library the bindings loaded."""
    lib = clara_lib.load()
    g = clara_lib.MrGeometry()
    g.coils, g.nx, g.ny, g.nz, g.slices, g.recon_nx = coils, nx, ny, 1, 1, nx
    g.ky_first, g.ky_last, g.kx_first, g.kx_last = 0, ny - 1, 0, nx - 1
    k = np.zeros((coils, 1, ny, nx), np.complex64)
    fn = lib.clara_mr_phantom_kspace
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.POINTER(clara_lib.MrGeometry), ctypes.c_double,
                   ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    st = fn(ctypes.byref(g), float(nx), 1, k.ctypes.data, None)
    if st != 0:
        raise RuntimeError(f"clara_mr_phantom_kspace failed: status {st}")
    return k


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256, help="nx = ny")
    ap.add_argument("--coils", type=int, default=8)
    ap.add_argument("--slices", type=int, default=32)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2,
                    help="OMP_NUM_THREADS for BART and our thread count")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    n, c, s = args.size, args.coils, args.slices

    print(f"bart_mr: {s} slices x {c} coils x {n} x {n}, "
          f"{args.threads} threads, median of {args.runs} runs")
    ver = subprocess.run([BART, "version"], capture_output=True, text=True)
    print(f"  bart {ver.stdout.strip()} ({BART}); libclara-recon "
          f"{clara_recon.version()}")

    try:
        one = phantom_slice(n, n, c)
        src = "clara_mr_phantom_kspace"
    except Exception as e:  # pragma: no cover
        print(f"  (phantom through ctypes failed: {e}; random k-space)")
        rng0 = np.random.default_rng(1)
        one = (rng0.standard_normal((c, 1, n, n)) +
               1j * rng0.standard_normal((c, 1, n, n))).astype(np.complex64)
        src = "random"
    rng = np.random.default_rng(0)
    k = np.repeat(one[None], s, axis=0)
    sigma = 1e-3 * float(np.abs(one).max())
    k += (sigma * (rng.standard_normal(k.shape) +
                   1j * rng.standard_normal(k.shape))).astype(np.complex64)
    k = np.ascontiguousarray(k, np.complex64)
    print(f"  k-space: {src} + noise, {k.nbytes / 2**20:.0f} MiB")

    base = args.workdir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    tmp = tempfile.mkdtemp(prefix="bart_mr.", dir=base)
    try:
        kname = os.path.join(tmp, "k")
        iname = os.path.join(tmp, "img")
        oname = os.path.join(tmp, "out")
        dims = [n, n, 1, c] + [1] * 9 + [s]
        write_cfl(kname, k, dims)

        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        bart_times, fft_times = [], []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            subprocess.run([BART, "fft", "-i", "3", kname, iname], env=env,
                           check=True)
            t1 = time.perf_counter()
            subprocess.run([BART, "rss", "8", iname, oname], env=env,
                           check=True)
            t2 = time.perf_counter()
            bart_times.append(t2 - t0)
            fft_times.append(t1 - t0)
        # start-up cost of one bart process on a tiny array
        write_cfl(os.path.join(tmp, "tiny"), np.ones((1, 1, 4, 4)),
                  [4, 4, 1, 1])
        st = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            subprocess.run([BART, "fft", "-i", "3", os.path.join(tmp, "tiny"),
                            os.path.join(tmp, "tiny2")], env=env, check=True)
            st.append(time.perf_counter() - t0)
        bart_out, odims = read_cfl(oname)

        ctx = clara_recon.Context(backend="cpu", threads=args.threads)
        geom = clara_recon.MRGeometry(coils=c, nx=n, ny=n, nz=1, slices=s)
        t0 = time.perf_counter()
        plan = clara_recon.MRPlan(ctx, geom, norm="none", combine="rss")
        plan_s = time.perf_counter() - t0
        ours = plan.execute(k)  # warm-up
        comp, withread = [], []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            ours = plan.execute(k)
            comp.append(time.perf_counter() - t0)
        for _ in range(args.runs):
            t0 = time.perf_counter()
            kr = np.fromfile(kname + ".cfl", np.complex64).reshape(k.shape)
            ours2 = plan.execute(kr)
            withread.append(time.perf_counter() - t0)

        # compare: BART's out is [nx, ny, 1, 1, ..., slices] column-major,
        # i.e. C order [slices][ny][nx], the same as ours [slices][1][ny][nx]
        b = bart_out.reshape(s, n, n)
        o = ours.reshape(s, n, n)
        rel = float(np.linalg.norm(b.real - o) / np.linalg.norm(b.real))
        imag = float(np.abs(b.imag).max())
        rel_t = float(np.linalg.norm(b.real - o.transpose(0, 2, 1)) /
                      np.linalg.norm(b.real))
        same_read = bool(np.array_equal(ours, ours2))
        ref = np.sqrt((np.abs(np.fft.fftshift(np.fft.ifft2(
            np.fft.ifftshift(k[0, :, 0], axes=(-2, -1))), axes=(-2, -1)) *
            (n * n)) ** 2).sum(0))
        rel_np = float(np.linalg.norm(ref - o[0]) / np.linalg.norm(ref))
    finally:
        if args.workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)

    mb, mf, mst = (statistics.median(bart_times), statistics.median(fft_times),
                   statistics.median(st))
    mc, mw = statistics.median(comp), statistics.median(withread)
    print(f"  bart: fft -i 3 + rss 8, median {mb * 1e3:.1f} ms "
          f"(fft {mf * 1e3:.1f} ms, rss {(mb - mf) * 1e3:.1f} ms; min "
          f"{min(bart_times) * 1e3:.1f}, max {max(bart_times) * 1e3:.1f}); "
          f"one bart process on a 4x4 array: {mst * 1e3:.1f} ms")
    print(f"  ours: plan {plan_s * 1e3:.2f} ms; execute median "
          f"{mc * 1e3:.1f} ms (min {min(comp) * 1e3:.1f}, max "
          f"{max(comp) * 1e3:.1f}); np.fromfile(k.cfl) + execute median "
          f"{mw * 1e3:.1f} ms")
    print(f"  agreement: |bart - ours| / |bart| = {rel:.3g} "
          f"(transposed: {rel_t:.3g}); bart imag max {imag:.3g}; "
          f"ours vs numpy centred ifft2 * N + RSS (slice 0): {rel_np:.3g}; "
          f"from-file result identical: {same_read}; bart out dims "
          f"{odims[:4]}...{odims[13] if len(odims) > 13 else ''}")
    r1, r2 = mb / mc, mb / mw
    print(f"  speed-up vs bart: {r1:.2f}x compute only, {r2:.2f}x including "
          f"reading k.cfl (target >= {TARGET}x)")
    ok = r1 >= TARGET and rel <= 1e-4
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
