#!/usr/bin/env python3
"""libclara-recon against plastimatch: CPU cone-beam FDK.

The target: CPU FDK of 256^3 from 360 views of 384 x 384 must be at least
2x faster than `plastimatch fdk` on the same data.

What the script does:

1. makes the scan once with the bench tool: the analytic 3D Shepp-Logan
   phantom on a 256^3 grid of 1 mm voxels, 360 views over 360 degrees on a
   384 x 384 flat detector (source 512 mm from the axis, detector 1024 mm
   from the source), written as a CT input file with its /truth
   (`clara-recon-bench fbp --geometry cone ... --write-input scan.h5`);
2. writes the same projections in plastimatch's input format: a directory of
   PFM images (`Pf`, `<cols> <rows>`, `-1`, then little-endian float32, row 0
   first) each with a projection-matrix file of the same name ending in .txt
   (see "The plastimatch geometry" below);
3. times `plastimatch fdk -A cpu -f ramp -r "256 256 256" -z "256 256 256"`
   (OMP_NUM_THREADS = all cores; its CPU back-projector is OpenMP-parallel)
   end to end from the files, and keeps the filter and back-projection times
   that plastimatch prints itself (its compute time without file I/O);
4. times libclara-recon on the same file with the bench tool: the plan once
   and the execute (compute only, median of --runs), and separately the whole
   process end to end from the file (read, plan, execute, write the volume),
   like plastimatch's;
5. compares the two reconstructions with each other and with the phantom
   (plastimatch's output is in its own uncalibrated "HU"; it is mapped back
   and matched to the phantom with a least-squares scale and offset before
   its RMSE is taken), and prints the ratios and PASS/FAIL for >= 2x.

The plastimatch geometry (its proj_image / fdk sources, flavour "c", the
default): for a voxel at world position X (mm), plastimatch computes
p = M [X, 1] with the 3 x 4 matrix M of the .txt file, and reads the filtered
image at column ic[0] + p0/p2 and row ic[1] + p1/p2 (nearest pixel, pixel i
centred at i); the voxel gets (1/p2)^2 sad^2/sid^2 times that value. With
the library's convention (include/clara_recon.h: source at
R_s (sin t, -cos t, 0), detector u axis (cos t, sin t, 0), v axis +z) the
rows of M are

    (cos t / du, sin t / du, 0, 0)
    (0, 0, 1 / dv, 0)
    (-sin t / R_d, cos t / R_d, 0, R_s / R_d)

so that p2 = L / R_d with L the depth of the voxel along the central ray,
p0/p2 = u / du and p1/p2 = v / dv, and the weight is (R_s / L)^2 as in FDK;
ic = ((cols-1)/2 - offset_u/du, (rows-1)/2 - offset_v/dv); sad = R_s,
sid = R_d; nrm = (sin t, -cos t, 0) (used by the other flavours only). The
volume of `-r 256 256 256 -z 256 256 256` has 1 mm voxels centred like the
library's, written x fastest as the library's [z][y][x].

Usage:

    python3 bench/peers/plastimatch_fdk.py --build <build dir>

Exit status: 0 PASS, 1 FAIL, 2 usage error, 77 skipped (plastimatch, numpy,
h5py or the bench tool missing).
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SKIP = 77
SPEEDUP_TARGET = 2.0


def skip(msg):
    print(f"plastimatch_fdk: SKIP: {msg}")
    sys.exit(SKIP)


try:
    import numpy as np
except ImportError:
    skip("numpy is not installed")
try:
    import h5py
except ImportError:
    skip("h5py is not installed (pip install h5py)")


def run(cmd, env=None, capture=True):
    """Runs cmd; returns (wall seconds, stdout). Raises on failure."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.stderr.write(p.stdout or "")
        sys.stderr.write(p.stderr or "")
        raise RuntimeError(f"{' '.join(cmd)}: exit status {p.returncode}")
    return dt, p.stdout


def write_plastimatch_dir(scan, out):
    """Writes scan.h5's projections as plastimatch PFM + matrix files."""
    with h5py.File(scan, "r") as f:
        ct = f["ct"]
        if ct.attrs["geometry"] != "cone":
            raise RuntimeError(f"{scan}: not a cone-beam scan")
        proj = ct["projections"]
        angles = ct["angles"][...].astype(np.float64)
        dv, du = (float(x) for x in ct.attrs["det_spacing"])
        ov, ou = (float(x) for x in ct.attrs["det_offset"])
        rs = float(ct.attrs["source_to_iso"])
        rd = float(ct.attrs["source_to_detector"])
        views, rows, cols = proj.shape
        os.makedirs(out, exist_ok=True)
        ic0 = (cols - 1) / 2 - ou / du
        ic1 = (rows - 1) / 2 - ov / dv
        for k in range(views):
            c, s = np.cos(angles[k]), np.sin(angles[k])
            m = [[c / du, s / du, 0.0, 0.0],
                 [0.0, 0.0, 1.0 / dv, 0.0],
                 [-s / rd, c / rd, 0.0, rs / rd]]
            base = os.path.join(out, f"img_{k:04d}")
            with open(base + ".pfm", "wb") as fp:
                fp.write(f"Pf\n{cols} {rows}\n-1\n".encode())
                fp.write(np.ascontiguousarray(proj[k], dtype="<f4").tobytes())
            with open(base + ".txt", "w") as fp:
                fp.write(f"{ic0:.10e} {ic1:.10e}\n")
                for row in m:
                    fp.write(" ".join(f"{v:.10e}" for v in row) + "\n")
                fp.write(f"{rs:.10e}\n{rd:.10e}\n")
                fp.write(f"{s:.10e} {-c:.10e} 0.0\n")
    return views, rows, cols


def read_mha(path):
    """A MetaImage (.mha, uncompressed float) as a [z][y][x] array."""
    with open(path, "rb") as fp:
        data = fp.read()
    key = b"ElementDataFile = LOCAL\n"
    i = data.index(key) + len(key)
    hdr = dict(line.split(" = ", 1)
               for line in data[:i].decode().strip().split("\n"))
    if hdr.get("ElementType") != "MET_FLOAT" or \
            hdr.get("CompressedData", "False") == "True":
        raise RuntimeError(f"{path}: uncompressed MET_FLOAT expected")
    dims = [int(x) for x in hdr["DimSize"].split()]
    return np.frombuffer(data[i:], dtype="<f4").reshape(dims[::-1]), hdr


def phantom_region(truth):
    """Per image row, the voxels from the first to the last non-zero truth
    voxel (the bench tool's RMSE region)."""
    nz = truth != 0
    n = truth.shape[-1]
    idx = np.arange(n)
    first = np.where(nz.any(-1), nz.argmax(-1), n)
    last = np.where(nz.any(-1), n - 1 - nz[..., ::-1].argmax(-1), -1)
    return (idx >= first[..., None]) & (idx <= last[..., None])


def fit(x, t):
    """Least-squares a, b with a x + b ~ t; returns a, b, rmse."""
    A = np.stack([x, np.ones_like(x)], axis=1)
    (a, b), *_ = np.linalg.lstsq(A, t, rcond=None)
    return a, b, float(np.sqrt(np.mean((a * x + b - t) ** 2)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.environ.get("top_builddir", "."),
                    help="the libclara-recon build directory (default: "
                    "$top_builddir or .)")
    ap.add_argument("--bench", help="the clara-recon-bench program "
                    "(default: <build>/bench/clara-recon-bench)")
    ap.add_argument("--plastimatch", default=shutil.which("plastimatch"),
                    help="the plastimatch program (default: from PATH)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--views", type=int, default=360)
    ap.add_argument("--det", type=int, default=384,
                    help="detector rows and columns (default 384)")
    ap.add_argument("--runs", type=int, default=3,
                    help="timed runs of each (default 3; medians)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="threads for both (default: all cores)")
    ap.add_argument("--workdir", help="where the files go (default: a new "
                    "temporary directory, removed at the end)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory")
    args = ap.parse_args()
    if min(args.size, args.views, args.det, args.runs, args.threads) < 1:
        ap.error("sizes, views, runs and threads must be positive")

    if not args.plastimatch or not os.access(args.plastimatch, os.X_OK):
        skip("plastimatch is not installed (Debian: apt install plastimatch)")
    bench = args.bench or os.path.join(args.build, "bench",
                                       "clara-recon-bench")
    if not os.access(bench, os.X_OK):
        skip(f"{bench} not found; pass --build <build dir> or --bench")

    work = args.workdir or tempfile.mkdtemp(prefix="clara-pm-")
    os.makedirs(work, exist_ok=True)
    try:
        return compare(args, bench, work)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
        elif args.keep:
            print(f"files kept in {work}")


def compare(args, bench, work):
    n, nv, nd, nt = args.size, args.views, args.det, args.threads
    scan = os.path.join(work, "scan.h5")
    pmdir = os.path.join(work, "plastimatch-proj")
    pm_out = os.path.join(work, "plastimatch.mha")
    our_out = os.path.join(work, "clara.h5")
    env = dict(os.environ, OMP_NUM_THREADS=str(nt))

    _, ver = run([args.plastimatch, "--version"])
    print(f"plastimatch: {ver.strip()} ({args.plastimatch})")
    _, ver = run([bench, "--version"])
    print(f"libclara-recon: {ver.strip()} ({bench})")
    print(f"{os.cpu_count()} CPUs; {nt} threads for both; work dir {work}")

    # -- the data, once --------------------------------------------------------
    geo = ["--geometry", "cone", "--size", str(n), "--views", str(nv),
           "--rows", str(nd), "--cols", str(nd), "--threads", str(nt)]
    dt, _ = run([bench, "fbp", *geo, "--repeat", "1", "--warmup", "0",
                 "--write-input", scan])
    print(f"scan: {n}^3 grid, {nv} views of {nd} x {nd}, made and written in "
          f"{dt:.1f} s ({os.path.getsize(scan) / 2**20:.0f} MiB)")
    t0 = time.perf_counter()
    write_plastimatch_dir(scan, pmdir)
    print(f"plastimatch input: {nv} PFM + matrix files written in "
          f"{time.perf_counter() - t0:.1f} s")

    # -- plastimatch -------------------------------------------------------------
    pm_cmd = [args.plastimatch, "fdk", "-I", pmdir, "-O", pm_out,
              "-A", "cpu", "-f", "ramp", "-r", f"{n} {n} {n}",
              "-z", f"{n} {n} {n}"]
    print(f"\n$ OMP_NUM_THREADS={nt} {' '.join(pm_cmd)}")
    pm_wall, pm_comp, pm_io = [], [], []
    for i in range(args.runs):
        dt, out = run(pm_cmd, env=env)

        def grab(name):
            m = re.search(rf"^{name} = ([0-9.eE+-]+)$", out, re.M)
            return float(m.group(1)) if m else float("nan")

        filt, bp, io = (grab("Filter time"), grab("Backprojection time"),
                        grab(r"I/O time \(total\)"))
        pm_wall.append(dt)
        pm_comp.append(filt + bp)
        pm_io.append(io)
        print(f"  run {i + 1}: wall {dt:.2f} s; its own timers: filter "
              f"{filt:.2f} s + back-projection {bp:.2f} s = {filt + bp:.2f} "
              f"s, image I/O {io:.2f} s")

    # -- libclara-recon ------------------------------------------------------------
    ours_cmd = [bench, "fbp", "--input", scan, "--threads", str(nt),
                "--repeat", str(args.runs), "--warmup", "1", "--json"]
    print(f"\n$ {' '.join(ours_cmd)}")
    _, out = run(ours_cmd)
    res = json.loads(out)
    print(f"  plan {res['plan_ms']:.1f} ms; execute median "
          f"{res['median_ms']:.1f} ms (min {res['min_ms']:.1f}, max "
          f"{res['max_ms']:.1f}; first {res['cold_ms']:.1f}); "
          f"{res['gups']:.3f} GUPS; RMSE {res['rmse']:.5f}; backend "
          f"{res['backend']}, {res['threads']} threads")
    e2e_cmd = [bench, "fbp", "--input", scan, "--threads", str(nt),
               "--repeat", "1", "--warmup", "0", "--save", our_out]
    print(f"$ {' '.join(e2e_cmd)}   (end to end, {args.runs} runs)")
    our_wall = []
    for i in range(args.runs):
        dt, _ = run(e2e_cmd)
        our_wall.append(dt)
        print(f"  run {i + 1}: wall {dt:.2f} s")

    # -- agreement -------------------------------------------------------------------
    with h5py.File(scan, "r") as f:
        truth = f["truth"][...].astype(np.float64)
    with h5py.File(our_out, "r") as f:
        ours = f["image"][...].astype(np.float64)
    pm_hu, _ = read_mha(pm_out)
    # plastimatch's convert_to_hu: hu = 1000 (v / 40 - 0.167) / 0.167
    pm = 40.0 * 0.167 * (pm_hu.astype(np.float64) / 1000.0 + 1.0)
    reg = phantom_region(truth)
    mid = n // 2
    t, o, p = truth[reg], ours[reg], pm[reg]
    a, b, pm_rmse = fit(p, t)
    _, _, our_rmse_fit = fit(o, t)
    our_rmse = float(np.sqrt(np.mean((o - t) ** 2)))
    ma, mb, pm_mid = fit(pm[mid][reg[mid]], truth[mid][reg[mid]])
    our_mid = float(np.sqrt(np.mean((ours[mid][reg[mid]] -
                                     truth[mid][reg[mid]]) ** 2)))
    print(f"\nagreement inside the phantom ({reg.sum()} voxels):")
    print(f"  correlation plastimatch vs libclara-recon: "
          f"{np.corrcoef(p, o)[0, 1]:.4f}")
    print(f"  correlation with the phantom: libclara-recon "
          f"{np.corrcoef(o, t)[0, 1]:.4f}, plastimatch "
          f"{np.corrcoef(p, t)[0, 1]:.4f}")
    print(f"  RMSE vs phantom: libclara-recon {our_rmse:.5f} as is "
          f"({our_rmse_fit:.5f} after a scale/offset fit); plastimatch "
          f"{pm_rmse:.5f} after its best scale/offset fit "
          f"(x {a:.4g} {b:+.4g})")
    print(f"  central slice z = {mid}: RMSE libclara-recon {our_mid:.5f}, "
          f"plastimatch {pm_mid:.5f} (fitted)")
    print(f"  (phantom values 0..{truth.max():g}; plastimatch interpolates "
          f"the nearest detector pixel, the library bilinearly)")

    # -- verdict ---------------------------------------------------------------------
    pm_c, pm_w = statistics.median(pm_comp), statistics.median(pm_wall)
    our_c, our_w = res["median_ms"] / 1e3, statistics.median(our_wall)
    our_cp = our_c + res["plan_ms"] / 1e3
    r_c, r_cp, r_w = pm_c / our_c, pm_c / our_cp, pm_w / our_w
    print(f"\ncompute only (plastimatch: filter + back-projection by its own "
          f"timers; ours: execute):")
    print(f"  plastimatch {pm_c:.2f} s, libclara-recon {our_c:.2f} s "
          f"-> {r_c:.2f}x   (with our plan creation: {our_cp:.2f} s -> "
          f"{r_cp:.2f}x)")
    print(f"end to end from files (process wall time, read + reconstruct + "
          f"write):")
    print(f"  plastimatch {pm_w:.2f} s, libclara-recon {our_w:.2f} s "
          f"-> {r_w:.2f}x")
    ok_c = r_cp >= SPEEDUP_TARGET
    ok_w = r_w >= SPEEDUP_TARGET
    print(f"\ntarget: >= {SPEEDUP_TARGET:g}x faster, compute incl. plan: "
          f"{'PASS' if ok_c else 'FAIL'} ({r_cp:.2f}x)")
    print(f"target: >= {SPEEDUP_TARGET:g}x faster, end to end from files: "
          f"{'PASS' if ok_w else 'FAIL'} ({r_w:.2f}x)")
    ok = ok_c and ok_w
    print(f"RESULT: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
