"""Shared pieces of the denoiser training pipeline (data, splits, metrics).

The training data are simulated with libclara-recon itself through its
Python bindings (``clara_recon``): the Joseph projector and FBP for CT, the
Cartesian MR plan for MR. Set ``CLARA_RECON_LIB`` to the built
``libclara-recon.so`` and put ``bindings/python`` on ``PYTHONPATH``.
"""

import gzip
import hashlib
import io
import math
import os
import plistlib
import tarfile

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# ---------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------

CT_SOURCE = "/usr/share/doc/invesalius-examples/examples/Cranium.inv3"
MR_SOURCE = "/usr/share/mricron/templates/ch2.nii.gz"

# CT acquisition (simulated): a clinical-like third-generation fan beam with
# an arc detector, full 360-degree scan.
CT_MU_WATER = 0.0192            # 1/mm
CT_VIEWS = 720                  # over 2 pi
CT_COLS = 640
CT_DET_SPACING = 0.001          # rad per column (arc detector)
CT_SOURCE_TO_ISO = 570.0        # mm
CT_SOURCE_TO_DETECTOR = 1040.0  # mm
CT_I0_FULL = 1.0e5              # photons per ray, full dose
CT_I0_QUARTER = 2.5e4           # photons per ray, quarter dose
CT_ELECTRONIC_SIGMA = 5.0       # Gaussian electronic noise, in photon counts
CT_COUNT_FLOOR = 1.0            # counts are clipped to >= this before log
CT_SEED = 20240601

# MR simulation: single coil, noise per real/imag component = 5% of the
# slice's ground-truth maximum (ortho FFT: same sigma in the image domain).
MR_NOISE_FRACTION = 0.05
MR_SEED = 20240602

# Held-out slabs (contiguous slice ranges, half-open [a, b)), with a gap of
# excluded slices around each so that neighbouring slices do not leak.
SPLITS = {
    "ct": {"n": 106,       # slices 106, 107 are almost empty (above the head)
           "test": (40, 56), "val": (76, 84), "gap": 2},
    "mr": {"n": 172,       # slices >= 172 are empty
           "test": (84, 108), "val": (132, 144), "gap": 3},
}


def split_indices(modality):
    s = SPLITS[modality]
    n, gap = s["n"], s["gap"]
    test = list(range(*s["test"]))
    val = list(range(*s["val"]))
    excluded = set()
    for a, b in (s["test"], s["val"]):
        excluded.update(range(a - gap, b + gap))
    train = [z for z in range(n) if z not in excluded]
    return {"train": train, "val": val, "test": test}


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------

def load_cranium(path=CT_SOURCE):
    """Returns (hu [108][256][256] int16, spacing (dx, dy, dz) mm)."""
    with tarfile.open(path, "r:gz") as tar:
        members = {os.path.basename(m.name): m for m in tar.getmembers()}
        main = plistlib.loads(tar.extractfile(members["main.plist"]).read())
        mat = main["matrix"]
        assert mat["dtype"] == "int16", mat
        raw = tar.extractfile(members[mat["filename"]]).read()
    vol = np.frombuffer(raw, "<i2").reshape(mat["shape"]).copy()
    return vol, tuple(float(s) for s in main["spacing"])


def load_nifti(path=MR_SOURCE):
    """A minimal NIfTI-1 reader: returns (data [nz][ny][nx] float64,
    pixdim (dx, dy, dz))."""
    raw = gzip.open(path, "rb").read()
    hdr = raw[:348]
    endian = "<" if np.frombuffer(hdr[:4], "<i4")[0] == 348 else ">"
    dim = np.frombuffer(hdr[40:56], endian + "i2")
    datatype = int(np.frombuffer(hdr[70:72], endian + "i2")[0])
    pixdim = np.frombuffer(hdr[76:108], endian + "f4")
    vox_offset = int(np.frombuffer(hdr[108:112], endian + "f4")[0])
    slope, inter = np.frombuffer(hdr[112:120], endian + "f4")
    dtypes = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1",
              512: "u2", 768: "u4"}
    dt = np.dtype(endian + dtypes[datatype])
    nx, ny, nz = (int(d) for d in dim[1:4])
    data = np.frombuffer(raw, dt, count=nx * ny * nz, offset=vox_offset)
    data = data.reshape(nz, ny, nx).astype(np.float64)
    if slope != 0 and (slope != 1 or inter != 0):
        data = data * slope + inter
    return data, tuple(float(p) for p in pixdim[1:4])


# ---------------------------------------------------------------------------
# Simulation through the library
# ---------------------------------------------------------------------------

def _clara():
    import clara_recon
    return clara_recon


def ct_geometry_and_volume(spacing):
    cr = _clara()
    angles = np.arange(CT_VIEWS, dtype=np.float64) * (2 * np.pi / CT_VIEWS)
    geom = cr.Geometry("fan-arc", angles.astype(np.float32), rows=1,
                       cols=CT_COLS, det_spacing=(spacing[2], CT_DET_SPACING),
                       det_offset=(0.0, 0.0), source_to_iso=CT_SOURCE_TO_ISO,
                       source_to_detector=CT_SOURCE_TO_DETECTOR)
    vol = cr.Volume(256, 256, 1, (spacing[0], spacing[1], spacing[2]))
    return geom, vol


def hu_to_mu(hu):
    return np.maximum(CT_MU_WATER * (1.0 + np.asarray(hu, np.float64) / 1000.0),
                      0.0)


def ct_add_noise(sino, i0, rng):
    """Poisson photon noise plus Gaussian electronic noise on a line-integral
    sinogram; returns the noisy line integrals (log-transformed)."""
    expected = i0 * np.exp(-np.asarray(sino, np.float64))
    counts = rng.poisson(expected).astype(np.float64)
    counts += rng.normal(0.0, CT_ELECTRONIC_SIGMA, counts.shape)
    counts = np.maximum(counts, CT_COUNT_FLOOR)
    return -np.log(counts / i0)


def simulate_ct(log=print):
    """Returns a dict with float32 [n][256][256] arrays in HU: 'hu' (the
    original image), 'full' (full-dose FBP), 'quarter' (quarter-dose FBP)
    and 'clean' (noise-free FBP), for slices 0..n-1."""
    cr = _clara()
    hu, spacing = load_cranium()
    n = SPLITS["ct"]["n"]
    geom, vol = ct_geometry_and_volume(spacing)
    out = {k: np.zeros((n, 256, 256), np.float32)
           for k in ("hu", "full", "quarter", "clean")}
    with cr.Context("cpu", threads=2) as ctx, \
            cr.Projector(ctx, geom, vol) as proj, \
            cr.FBPPlan(ctx, geom, vol, filter="ram-lak",
                       hu=CT_MU_WATER) as plan:
        log(f"CT: {geom!r}; volume {vol!r}; plan {plan.info}")
        for z in range(n):
            rng = np.random.default_rng([CT_SEED, z])
            sino = proj.project(hu_to_mu(hu[z]).astype(np.float32))
            out["hu"][z] = hu[z]
            out["clean"][z] = plan.execute(sino)[0]
            out["full"][z] = plan.execute(
                ct_add_noise(sino, CT_I0_FULL, rng).astype(np.float32))[0]
            out["quarter"][z] = plan.execute(
                ct_add_noise(sino, CT_I0_QUARTER, rng).astype(np.float32))[0]
    return out, {"spacing": spacing, "geometry": repr(geom)}


def centred_fft2(img):
    """Image -> k-space with DC at n//2 (inverse of the library's
    fftshift(ifftn(ifftshift(k))) with norm="ortho")."""
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(img), norm="ortho"))


def simulate_mr(log=print):
    """Returns a dict with float32 [n][217][181] arrays: 'truth' (library
    reconstruction of the noise-free k-space, magnitude), 'noisy' (library
    reconstruction of the noisy k-space), 'sigma' [n] (noise std per
    component)."""
    cr = _clara()
    vol, pixdim = load_nifti()
    n = SPLITS["mr"]["n"]
    ny, nx = vol.shape[1:]
    geom = cr.MRGeometry(coils=1, nx=nx, ny=ny)
    out = {"truth": np.zeros((n, ny, nx), np.float32),
           "noisy": np.zeros((n, ny, nx), np.float32),
           "sigma": np.zeros(n, np.float64)}
    with cr.Context("cpu", threads=2) as ctx, \
            cr.MRPlan(ctx, geom, norm="ortho", combine="rss") as plan:
        log(f"MR: {plan!r}; pixdim {pixdim}")
        for z in range(n):
            rng = np.random.default_rng([MR_SEED, z])
            k = centred_fft2(vol[z])[np.newaxis]          # [coils=1][ny][nx]
            truth = plan.execute(k)
            sigma = MR_NOISE_FRACTION * float(truth.max())
            noise = rng.normal(0.0, sigma, k.shape + (2,))
            kn = k + (noise[..., 0] + 1j * noise[..., 1])
            out["truth"][z] = truth
            out["noisy"][z] = plan.execute(kn)
            out["sigma"][z] = sigma
    return out, {"pixdim": pixdim}


def load_data(modality, cache_dir, log=print):
    """Simulates (or loads the cached) data set of a modality."""
    import h5py
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, f"{modality}-data.h5")
    if os.path.exists(path):
        with h5py.File(path, "r") as f:
            return {k: f[k][()] for k in f}, dict(f.attrs)
    data, meta = simulate_ct(log) if modality == "ct" else simulate_mr(log)
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        for k, v in data.items():
            f[k] = v
        for k, v in meta.items():
            f.attrs[k] = v
    os.replace(tmp, path)
    return data, meta


# ---------------------------------------------------------------------------
# Normalisation (docs/FORMATS.md, "Denoiser model file")
# ---------------------------------------------------------------------------

def percentile_value(img, q):
    """The value at rank round((n-1) q / 100) of the n sorted values (C
    round(): halves away from zero); p <= 0 gives 1."""
    v = np.sort(np.asarray(img, np.float64).ravel())
    r = (v.size - 1) * float(q) / 100.0
    p = float(v[int(math.floor(r + 0.5))])
    return p if p > 0 else 1.0


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------

CT_CLIP = (-1024.0, 1900.0)
CT_RANGE = 2924.0


def mr_foreground(truth):
    """The head in an MR slice: ground truth > 10% of its maximum, holes
    filled, dilated by 2 pixels (so the background's Rician floor is left
    out of the masked metrics)."""
    from scipy import ndimage
    m = ndimage.binary_fill_holes(truth > 0.1 * truth.max())
    return ndimage.binary_dilation(m, iterations=2)


def metrics(modality, out, ref, mask=None):
    """(PSNR, SSIM) of one slice, per the README's definitions; with a mask,
    PSNR from the MSE inside the mask and SSIM the mean of the SSIM map
    inside it (same data range)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    out = np.asarray(out, np.float64)
    ref = np.asarray(ref, np.float64)
    if modality == "ct":
        out = np.clip(out, *CT_CLIP)
        ref = np.clip(ref, *CT_CLIP)
        rng = CT_RANGE
    else:
        rng = float(ref.max())
    if mask is not None:
        mse = float(np.mean((out[mask] - ref[mask]) ** 2))
        _, smap = structural_similarity(ref, out, data_range=rng, full=True)
        return 10 * np.log10(rng ** 2 / mse), float(smap[mask].mean())
    return (peak_signal_noise_ratio(ref, out, data_range=rng),
            structural_similarity(ref, out, data_range=rng))


def water_mask(hu):
    """Water-like uniform regions for the CT bias check, from the original
    HU image (not from a noisy reconstruction, whose noise would bias the
    selection): pixels whose 5x5 local mean is in [-20, 80] HU and whose
    5x5 local standard deviation is below 40 HU, eroded by a 5x5 square."""
    from scipy import ndimage
    h = np.asarray(hu, np.float64)
    mean = ndimage.uniform_filter(h, 5)
    sd = np.sqrt(np.maximum(ndimage.uniform_filter(h * h, 5) - mean ** 2, 0))
    m = (mean >= -20) & (mean <= 80) & (sd < 40)
    return ndimage.binary_erosion(m, structure=np.ones((5, 5), bool))


def hardware():
    name = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import torch
    return f"{name}, {torch.get_num_threads()} torch threads (CPU)"
