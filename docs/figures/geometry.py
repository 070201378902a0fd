#!/usr/bin/env python3
"""Draws docs/geometry.png, the CT geometry figure of docs/GEOMETRY.md.

    python3 docs/figures/geometry.py            # writes docs/geometry.png
    python3 docs/figures/geometry.py out.png    # writes elsewhere

Every point in the figure is computed from the formulas of the convention
(include/clara_recon.h, "CT geometry"), and the script checks the detector
coordinates it labels against a direct line intersection before drawing, so
the picture cannot drift from the convention silently.

Left:  parallel beam.  Rays along d = (-sin t, cos t); detector axis
       s (= u) along e = (cos t, sin t); s = x cos t + y sin t.
Right: divergent beam in the xy-plane.  Source at R_s (sin t, -cos t);
       flat detector at R_d from the source, perpendicular to the central
       ray, u along e; arc detector (dashed) centred on the source, columns
       equally spaced in fan angle gamma.
"""
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Arc, Circle, FancyArrowPatch  # noqa: E402

THETA_DEG = 30.0
T = np.deg2rad(THETA_DEG)
E = np.array([np.cos(T), np.sin(T)])  # detector u / s axis
D = np.array([-np.sin(T), np.cos(T)])  # ray direction (parallel), central ray

BLUE, RED, GREEN, GREY, ORANGE = "#1f5fbf", "#c0392b", "#1e8449", "#7f8c8d", "#d35400"


def arrow(ax, p, q, color="k", lw=1.4, style="-|>", ms=14, ls="-", z=3):
    ax.add_patch(FancyArrowPatch(tuple(p), tuple(q), arrowstyle=style,
                                 mutation_scale=ms, color=color, lw=lw,
                                 linestyle=ls, zorder=z, shrinkA=0, shrinkB=0))


def dim(ax, p, q, text, color, off, tpos=0.5, fs=13, rot=None):
    """A dimension line between p and q, shifted by 'off' (a 2-vector)."""
    p, q, off = np.asarray(p), np.asarray(q), np.asarray(off)
    a, b = p + off, q + off
    arrow(ax, a, b, color=color, lw=1.1, style="<|-|>", ms=10)
    for r in (p, q):  # extension lines
        ax.plot(*zip(r + 0.15 * off, r + 1.15 * off), color=color, lw=0.7)
    m = a + tpos * (b - a)
    ax.text(m[0], m[1], text, color=color, fontsize=fs, ha="center",
            va="center", rotation=rot, rotation_mode="anchor",
            bbox=dict(fc="white", ec="none", pad=1.0, alpha=0.9), zorder=6)


def angle_arc(ax, centre, r, a0_deg, a1_deg, text, color, fs=14, rt=1.25):
    ax.add_patch(Arc(tuple(centre), 2 * r, 2 * r, theta1=a0_deg,
                     theta2=a1_deg, color=color, lw=1.6, zorder=4))
    am = np.deg2rad(0.5 * (a0_deg + a1_deg))
    ax.text(centre[0] + rt * r * np.cos(am), centre[1] + rt * r * np.sin(am),
            text, color=color, fontsize=fs, ha="center", va="center",
            zorder=6)


def axes_xy(ax, lim, label_z=False):
    arrow(ax, (-lim, 0), (lim, 0), color=GREY, lw=1.0, ms=12)
    arrow(ax, (0, -lim), (0, lim), color=GREY, lw=1.0, ms=12)
    ax.text(lim, -0.15, "x", fontsize=15, color=GREY, ha="right", va="top")
    ax.text(-0.1, lim, "y", fontsize=15, color=GREY, ha="right", va="top")
    if label_z:  # z out of the page at the isocentre
        ax.add_patch(Circle((0, 0), 0.07, fc="white", ec=GREY, lw=1.0,
                            zorder=5))
        ax.plot(0, 0, ".", color=GREY, ms=4, zorder=6)


def line_hit(p0, d0, p1, d1):
    """Intersection of p0 + a d0 with p1 + b d1."""
    a, _ = np.linalg.solve(np.column_stack([d0, -d1]), p1 - p0)
    return p0 + a * d0


def parallel_panel(ax):
    axes_xy(ax, 2.1)
    ax.add_patch(Circle((0, 0), 1.0, fc="#eaf2fb", ec=BLUE, lw=1.0,
                        zorder=1))
    ax.text(-0.45, -0.75, "f(x, y)", color=BLUE, fontsize=12, ha="center")

    l_det = 1.6  # detector line: points s E + l_det D
    offset = -0.40  # det_offset[1]: where the detector's centre column sits
    half = 1.3  # half-width of the drawn detector
    s_lo, s_hi = offset - half, offset + half

    # rays: s E + l D, from behind the object to the detector
    for s in np.linspace(-1.4, 1.4, 8):
        p0, p1 = s * E - 1.75 * D, s * E + l_det * D
        arrow(ax, p0, p1, color="#b7c4d1", lw=0.9, ms=9, z=2)
    p = np.array([-2.75, -2.75])
    arrow(ax, p, p + 0.8 * D, color="#5d6d7e", lw=1.6)
    ax.text(p[0] + 0.05, p[1] + 0.2, "rays along\n(−sin θ, cos θ)",
            fontsize=12, color="#5d6d7e", ha="left", va="bottom")

    # detector and its cells
    a, b = s_lo * E + l_det * D, s_hi * E + l_det * D
    ax.plot(*zip(a, b), color="k", lw=4, solid_capstyle="butt", zorder=4)
    ncell = 13
    for k in range(ncell + 1):
        s = s_lo + k * (s_hi - s_lo) / ncell
        c = s * E + l_det * D
        ax.plot(*zip(c - 0.06 * D, c + 0.06 * D), color="k", lw=0.8)
    ax.text(*(a - 0.12 * E), "c = 0", fontsize=11, ha="right", va="center")
    ax.text(*(b + 0.12 * E), "c = cols−1", fontsize=11, ha="left",
            va="center")
    # s axis (= u, column direction) drawn beside the detector
    q0, q1 = (s_lo + 0.2) * E + (l_det + 0.3) * D, \
        (s_hi + 0.3) * E + (l_det + 0.3) * D
    arrow(ax, q0, q1, color=BLUE, lw=1.8)
    ax.text(*(q1 + 0.12 * E), "s = u, (cos θ, sin θ):\ncolumn index c grows",
            color=BLUE, fontsize=12, ha="left", va="bottom")

    # the s axis through the isocentre (dotted) and theta
    ax.plot(*zip(-2.5 * E, 2.5 * E), ":", color=BLUE, lw=1.0, zorder=2)
    ax.text(*(2.45 * E + np.array([0.0, 0.08])), "s", color=BLUE,
            fontsize=13, ha="center", va="bottom")
    angle_arc(ax, (0, 0), 0.55, 0, THETA_DEG, "θ", ORANGE, rt=1.3)
    angle_arc(ax, (0, 0), 0.42, 90, 90 + THETA_DEG, "θ", ORANGE, fs=12,
              rt=1.4)

    # iso ray lands at s = 0; the detector centre column at s = det_offset
    iso_hit = l_det * D
    ctr = offset * E + l_det * D
    ax.plot(*zip((0, 0), iso_hit), color=GREY, lw=1.0, ls="--", zorder=2)
    ax.plot(*iso_hit, "o", color=GREY, ms=5, zorder=5)
    ax.text(*(iso_hit + 0.1 * D), "s = 0", color=GREY,
            fontsize=10, ha="center", va="bottom")
    ax.plot(*ctr, "s", color=GREEN, ms=7, zorder=5)
    dim(ax, ctr, iso_hit, "det_offset", GREEN, -0.5 * D, fs=11,
        rot=THETA_DEG, tpos=0.5)
    ax.annotate("centre column c = (cols−1)/2\nsits at u = det_offset",
                xy=tuple(ctr), xytext=tuple(ctr + 1.05 * D - 0.9 * E),
                fontsize=11, color=GREEN, ha="center", va="bottom",
                arrowprops=dict(arrowstyle="-", color=GREEN, lw=0.8))

    # a point and where it lands
    P = np.array([0.7, -0.3])
    sP = P @ E
    hit = line_hit(P, D, l_det * D, E)  # geometric intersection
    assert np.allclose(hit, sP * E + l_det * D), "s formula disagrees"
    foot = sP * E  # the same s on the axis through the isocentre
    ax.plot(*zip(P - 0.35 * D, hit), color=RED, lw=2.0, zorder=4)
    ax.plot(*foot, "o", color=RED, ms=4, zorder=6)
    ax.plot(*P, "o", color=RED, ms=7, zorder=6)
    ax.plot(*hit, "o", color=RED, ms=6, zorder=6)
    ax.text(P[0] + 0.1, P[1], "(x, y)", color=RED, fontsize=13,
            va="center")
    ax.text(*(hit + 0.1 * E - 0.1 * D), "s", color=RED, fontsize=13,
            ha="left", va="top", fontweight="bold")
    ax.text(0.0, -3.3, "s = x cos θ + y sin θ\n"
            "p(θ, s) = ∫ f(s (cos θ, sin θ) + l (−sin θ, cos θ)) dl",
            color=RED, fontsize=13, ha="center", va="bottom",
            bbox=dict(fc="white", ec=RED, lw=0.8, pad=4))

    ax.set_xlim(-3.2, 3.2)
    ax.set_ylim(-3.45, 2.95)
    ax.text(0.5, 1.0, f"Parallel beam  (θ = {THETA_DEG:g}°)", fontsize=16,
            transform=ax.transAxes, ha="center", va="top")


def divergent_panel(ax):
    Rs, Rd = 2.2, 3.6
    half_u = 1.4  # flat detector half-width (drawn)
    S = Rs * np.array([np.sin(T), -np.cos(T)])
    assert np.allclose(S, -Rs * D)
    axes_xy(ax, 1.25, label_z=True)
    ax.text(0.05, 0.17, "z", fontsize=12, color=GREY, ha="left",
            va="bottom")
    ax.add_patch(Circle((0, 0), 0.8, fc="#eaf2fb", ec=BLUE, lw=1.0,
                        zorder=1))

    # flat detector: centre S + Rd D, u along E
    C = S + Rd * D
    a, b = C - half_u * E, C + half_u * E
    ax.plot(*zip(a, b), color="k", lw=4, solid_capstyle="butt", zorder=4)
    for q in (a, b):  # fan edges
        ax.plot(*zip(S, q), color="#b7c4d1", lw=1.0, zorder=2)
    # arc detector: S + Rd (cos g D + sin g E), same fan
    gmax = np.arctan2(half_u, Rd)
    g = np.linspace(-gmax, gmax, 100)
    arc = S[None, :] + Rd * (np.cos(g)[:, None] * D + np.sin(g)[:, None] * E)
    ax.plot(arc[:, 0], arc[:, 1], "--", color="k", lw=1.6, zorder=4)
    for gk in np.linspace(-gmax, gmax, 9):  # equal angular steps
        r = np.cos(gk) * D + np.sin(gk) * E
        p = S + Rd * r
        ax.plot(*zip(p - 0.07 * r, p + 0.07 * r), color="k", lw=0.8)
    pl = S + Rd * (np.cos(-gmax) * D + np.sin(-gmax) * E)
    ax.text(*(pl + np.array([0.25, -0.15])),
            "arc detector (fan-arc),\ndashed: columns equally\n"
            "spaced in γ, arc centred\non the source", fontsize=11,
            ha="right", va="top")
    ax.text(*(a - 0.12 * E + 0.1 * D), "flat detector\n(fan-flat, cone)",
            fontsize=11, ha="right", va="bottom")

    # central ray
    ax.plot(*zip(S, C), color=GREY, lw=1.2, ls="--", zorder=2)
    ax.text(*(S + 1.15 * D + 0.06 * E), "central ray", fontsize=10,
            color=GREY, ha="right", va="bottom", rotation=THETA_DEG + 90 - 180,
            rotation_mode="anchor")

    # source
    ax.plot(*S, "*", color=ORANGE, ms=18, zorder=6)
    ax.text(*(S + np.array([0.18, -0.05])),
            "source\n$R_s$ (sin θ, −cos θ)", fontsize=12, color=ORANGE,
            ha="left", va="top")

    # theta: from -y (the source at theta = 0) to the source direction
    angle_arc(ax, (0, 0), 0.5, -90, -90 + THETA_DEG, "θ", ORANGE, rt=1.3)
    ax.plot(*zip((0, 0), (0, -Rs)), ":", color=ORANGE, lw=1.2, zorder=2)
    ax.plot(0, -Rs, "*", color=ORANGE, ms=10, mfc="white", zorder=6)
    ax.text(-0.15, -Rs, "source at θ = 0", fontsize=10, color=ORANGE,
            ha="right", va="center")

    # R_s and R_d dimension lines (beside the central ray, +u side)
    dim(ax, S, (0, 0), "$R_s$", ORANGE, 0.75 * E, fs=13,
        rot=THETA_DEG + 90 - 180)
    dim(ax, S, C, "$R_d$", "k", 1.75 * E, fs=13, rot=THETA_DEG + 90 - 180,
        tpos=0.55)

    # u axis at the detector, v out of the page
    q0, q1 = C + 0.32 * D + 0.1 * E, C + 0.32 * D + 1.2 * E
    arrow(ax, q0, q1, color=BLUE, lw=1.8)
    ax.text(*(q0 + 0.1 * D), "u  (cos θ, sin θ)", color=BLUE, fontsize=13,
            ha="left", va="bottom", rotation=THETA_DEG,
            rotation_mode="anchor")
    ax.add_patch(Circle(tuple(C), 0.08, fc="white", ec=BLUE, lw=1.2,
                        zorder=6))
    ax.plot(*C, ".", color=BLUE, ms=5, zorder=7)
    ax.text(*(C + 0.3 * D - 0.4 * E), "v along +z\n(out of page; cone)",
            color=BLUE, fontsize=11, ha="right", va="bottom")

    # a point, its ray, u on the flat detector, gamma on the arc
    P = np.array([-0.6, 0.05])
    L = Rs - P[0] * np.sin(T) + P[1] * np.cos(T)
    u = (P @ E) * Rd / L
    gam = np.arctan2(P @ E, L)
    hit = line_hit(S, P - S, C, E)  # geometric intersection
    assert np.allclose(hit, C + u * E), "flat u formula disagrees"
    assert np.isclose(L, (P - S) @ D), "L formula disagrees"
    dirP = (P - S) / np.linalg.norm(P - S)
    assert np.isclose(np.arctan2(dirP @ E, dirP @ D), gam), "gamma disagrees"
    ahit = S + Rd * dirP
    ax.plot(*zip(S, hit), color=RED, lw=1.8, zorder=5)
    ax.plot(*P, "o", color=RED, ms=7, zorder=6)
    ax.plot(*hit, "o", color=RED, ms=6, zorder=6)
    ax.plot(*ahit, "o", color=RED, ms=5, mfc="white", zorder=6)
    ax.text(P[0] - 0.08, P[1] - 0.08, "(x, y)", color=RED, fontsize=13,
            ha="right", va="top")
    ax.text(*(hit + 0.12 * E - 0.12 * D), "u", color=RED, fontsize=13,
            fontweight="bold", ha="left", va="top")
    # gamma at the source, from the central ray to the ray through P
    a0 = np.degrees(np.arctan2(D[1], D[0]))
    a1 = np.degrees(np.arctan2(dirP[1], dirP[0]))
    angle_arc(ax, S, 0.95, min(a0, a1), max(a0, a1), "γ", RED, rt=1.2)

    ax.text(0.0, -3.3,
            "L = $R_s$ − x sin θ + y cos θ  (along the central ray)\n"
            "flat: u = (x cos θ + y sin θ) $R_d$ / L,  v = z $R_d$ / L\n"
            "arc:  γ = atan2(x cos θ + y sin θ, L)",
            color=RED, fontsize=13, ha="center", va="bottom",
            bbox=dict(fc="white", ec=RED, lw=0.8, pad=4))

    ax.set_xlim(-3.2, 3.2)
    ax.set_ylim(-3.45, 2.95)
    ax.text(0.5, 1.0, f"Divergent beam, xy-plane  (θ = {THETA_DEG:g}°)",
            fontsize=16, transform=ax.transAxes, ha="center", va="top")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, "..", "geometry.png")
    fig, axs = plt.subplots(1, 2, figsize=(16, 8), dpi=100)
    parallel_panel(axs[0])
    divergent_panel(axs[1])
    for ax in axs:
        ax.set_aspect("equal")
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print("wrote", os.path.normpath(out))


if __name__ == "__main__":
    main()
