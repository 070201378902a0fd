#!/usr/bin/env python3
"""Reconstruct a CT input file (docs/FORMATS.md) with the Python bindings.

    PYTHONPATH=bindings/python python3 examples/recon_file.py scan.h5 recon.h5

Make a scan with `clara-recon phantom ct --geometry fan-flat --size 128
--views 360 -o scan.h5`. The image grid comes from the file's /truth when it
has one, else a square grid filling the detector's field of view.
"""
import sys

import numpy as np

import clara_recon as cr


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, dst = sys.argv[1], sys.argv[2]
    try:
        geometry, projections = cr.read_ct(src)
        try:
            volume, truth, _ = cr.read_image(src, "/truth")
        except cr.ClaraError:
            volume, truth = None, None
        if volume is None:
            n = geometry.cols
            volume = cr.Volume(n, n, geometry.rows if geometry.kind != "cone" else n)
        with cr.Context() as ctx, cr.FBPPlan(ctx, geometry, volume,
                                             filter="hann") as plan:
            image = plan.execute(projections)
        cr.write_image(dst, volume, image, "1/mm")
    except cr.ClaraError as e:  # carries the library's message
        print(f"recon_file: {e}", file=sys.stderr)
        return 1
    line = f"recon_file: {src} -> {dst}, image {image.shape}"
    if truth is not None:
        line += f", RMSE vs /truth {np.sqrt(np.mean((image - truth) ** 2)):.3g} /mm"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
