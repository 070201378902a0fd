#!/usr/bin/env python3
"""From a CT input file to a PNG, with the Python bindings.

    PYTHONPATH=bindings/python python3 examples/file_to_png.py scan.h5 out.png \\
        [--denoise ct|PATH] [--window C,W]

Reconstructs the file's scan in Hounsfield units (FBP, Hann window),
optionally denoises it with a model (``ct`` is the one shipped in models/),
and writes the middle slice as an 8-bit grey PNG with the given window
(default 40,400: soft tissue). Make a scan with `clara-recon phantom ct
--size 128 --views 360 -o scan.h5`.

The PNG encoder below is the format's minimum (one IDAT chunk, no filter)
so that the example needs nothing beyond numpy.
"""
import argparse
import struct
import sys
import zlib

import numpy as np

import clara_recon as cr

MU_WATER = 0.0192  # 1/mm, water near 70 keV


def write_png(path: str, grey: np.ndarray) -> None:
    """Writes a 2-D uint8 array as an 8-bit greyscale PNG."""
    h, w = grey.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return (struct.pack(">I", len(data)) + body
                + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF))

    rows = b"".join(b"\x00" + grey[y].tobytes() for y in range(h))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(rows, 6)))
        f.write(chunk(b"IEND", b""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scan")
    ap.add_argument("png")
    ap.add_argument("--denoise", metavar="MODEL",
                    help="'ct' for the shipped CT model, or a model file")
    ap.add_argument("--window", default="40,400", metavar="C,W")
    args = ap.parse_args()
    try:
        center, width = (float(v) for v in args.window.split(","))
    except ValueError:
        ap.error(f"--window: 'C,W' expected, got {args.window!r}")
    if not width > 0:
        ap.error("--window: the width must be > 0")

    try:
        geometry, projections = cr.read_ct(args.scan)
        n = geometry.cols
        volume = cr.Volume(n, n, geometry.rows if geometry.kind != "cone" else n)
        with cr.Context() as ctx, cr.FBPPlan(ctx, geometry, volume,
                                             filter="hann",
                                             hu=MU_WATER) as plan:
            if args.denoise:
                model = args.denoise
                denoiser = (cr.Denoiser.shipped(model, ctx) if model in ("ct", "mr")
                            else cr.Denoiser(model, ctx))
                plan.set_denoiser(denoiser)
            image = plan.execute(projections)
    except cr.ClaraError as e:  # carries the library's message
        print(f"file_to_png: {e}", file=sys.stderr)
        return 1

    image = np.asarray(image).reshape(-1, volume.ny, volume.nx)
    middle = image[image.shape[0] // 2]
    lo = center - width / 2
    grey = np.clip((middle - lo) / width * 255.0 + 0.5, 0, 255).astype(np.uint8)
    write_png(args.png, grey)
    print(f"file_to_png: {args.scan} -> {args.png}, slice {image.shape[0] // 2} "
          f"of {image.shape[0]}, {volume.nx} x {volume.ny}, window {center:g},{width:g}"
          + (f", denoised with {args.denoise}" if args.denoise else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
