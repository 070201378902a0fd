"""Python bindings of libclara-recon, a CT and MRI reconstruction library.

The bindings follow the C API of ``clara_recon.h`` closely, with numpy
arrays in and out:

- :class:`Context` (``clara_context``): the backend (CPU or CUDA), the
  worker threads and an optional progress callback.
- :class:`Geometry` and :class:`Volume`: the scan and the image grid.
- :class:`FBPPlan` (``clara_fbp_plan``): filtered back-projection, FDK for
  cone beams; plan once, execute many times.
- :class:`Projector` (``clara_projector``): the Joseph forward projector and
  its exact adjoint.
- :func:`shepp_logan` / :func:`ellipsoid_phantom` (``clara_phantom``):
  analytic phantoms with exact projections.
- :func:`read_ct`, :func:`write_ct`, :func:`read_image`, :func:`write_image`:
  the HDF5 files of ``docs/FORMATS.md``.
- :func:`fbp`: a one-call reconstruction of a sinogram.
- MRI: :class:`MRGeometry` and :class:`MRPlan` (``clara_mr_plan``):
  Cartesian multi-coil k-space reconstruction (centred FFT, whitening,
  partial Fourier, RSS / adaptive / sensitivity combination);
  :func:`noise_covariance`; :class:`MRFile` (``clara_mr_file``): ISMRMRD
  and fastMRI raw data; :func:`mr_recon`: one call. k-space and complex
  images are complex64 numpy arrays (the library's interleaved float32
  pairs); docs/MRI.md has the conventions.
- AI denoising: :class:`Denoiser` (``clara_denoiser``): a trained CNN
  (the shipped ``"ct"`` and ``"mr"`` models, or a model file) that
  denoises 2-D slices, on its own (:meth:`Denoiser.denoise`,
  :func:`denoise`) or attached to a plan (:meth:`FBPPlan.set_denoiser`,
  :meth:`MRPlan.set_denoiser`).

Conventions (the library's): lengths in mm, angles in radians, arrays in C
order and float32. A volume is ``image[iz][iy][ix]`` and projections are
``proj[view][row][col]``. For a parallel beam at angle ``t`` the rays run
along ``(-sin t, cos t)`` and the point ``(x, y)`` lands on the detector
coordinate ``s = x cos t + y sin t``, where ``x`` grows with ``ix`` and ``y``
with ``iy``. Voxel ``(ix, iy, iz)`` is centred at
``x = (ix - (nx-1)/2) * voxel[0] + center[0]`` (and ``y``, ``z`` likewise);
detector column ``c`` at ``u = (c - (cols-1)/2) * det_spacing[1] +
det_offset[1]``.

scikit-image's ``radon(image, theta_deg)`` is the same transform for an
image whose rows run *downwards* in y, and it rotates about pixel
``(N//2, N//2)`` rather than the grid centre. To reconstruct its sinogram
here: ``projections = sinogram.T``, ``angles = np.deg2rad(theta_deg)``, and
flip the result with ``image[::-1]`` (or negate the angles instead); for an
even ``N`` also pass ``det_offset=-0.5`` and ``center=(-0.5, 0.5, 0)``
(pixel units; ``(-0.5, -0.5, 0)`` with negated angles). With that, the
result matches ``iradon(..., filter_name="ramp")`` to float32 rounding.

Every library failure raises :class:`ClaraError` carrying the status and the
library's message. Arguments the bindings can judge by themselves (array
ranks, shapes, dtypes) raise ``ValueError`` or ``TypeError``.

The shared library is located through the environment variable
``CLARA_RECON_LIB`` (a path) or the dynamic loader; see
:mod:`clara_recon._lib`.
"""

from __future__ import annotations

import ctypes
import enum
import math
import numbers
import operator
import os
import threading
import weakref
from dataclasses import dataclass
from typing import (
    Any,
    Dict,
    Callable,
    Iterable,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import numpy as np

from . import _lib
from ._lib import ClaraError, LibraryNotFoundError

# Report the exceptions under the public package's name.
ClaraError.__module__ = __name__
LibraryNotFoundError.__module__ = __name__

__version__ = "0.1.0"

__all__ = [
    "ClaraError",
    "LibraryNotFoundError",
    "Status",
    "Context",
    "Geometry",
    "Volume",
    "FBPPlan",
    "Projector",
    "Ellipsoid",
    "Phantom",
    "shepp_logan",
    "ellipsoid_phantom",
    "read_ct",
    "write_ct",
    "read_image",
    "write_image",
    "fbp",
    "MRGeometry",
    "MRPlan",
    "MRFile",
    "noise_covariance",
    "mr_recon",
    "mr_phantom_kspace",
    "write_ismrmrd",
    "dicom_ready",
    "dicom_plane_of",
    "Denoiser",
    "DenoiserInfo",
    "denoise",
    "MODALITIES",
    "PRECISIONS",
    "MR_NORMS",
    "MR_COMBINES",
    "MR_PARTIAL_FOURIER",
    "MR_WINDOWS",
    "version",
    "version_number",
    "library_path",
    "WATER_MU",
    "FILTERS",
    "GEOMETRIES",
    "BACKENDS",
]

# Load the library now, so that a missing library is reported at import
# time (LibraryNotFoundError, an ImportError) with what to do about it.
_lib.load()

#: mu of water near 70 keV in 1/mm, the value ``hu=True`` stands for.
WATER_MU = 0.0192
#: Filter names accepted by :class:`FBPPlan` (``"ramp"`` is ``"ram-lak"``).
FILTERS = ("ram-lak", "shepp-logan", "cosine", "hamming", "hann")
#: Geometry kinds accepted by :class:`Geometry`.
GEOMETRIES = ("parallel", "fan-flat", "fan-arc", "cone")
#: Backend names accepted by :class:`Context`.
BACKENDS = ("auto", "cpu", "cuda")

ProgressCallback = Callable[[str, float], Any]
ArrayLike = Any  # anything np.asarray accepts
PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

_INT_MAX = 2**31 - 1
_INT_MIN = -(2**31)


class Status(enum.IntEnum):
    """The library's status codes (``clara_status``)."""

    OK = 0
    ERR_INVALID_ARG = -1
    ERR_OUT_OF_MEMORY = -2
    ERR_UNSUPPORTED = -3
    ERR_NO_DEVICE = -4
    ERR_DEVICE = -5
    ERR_IO = -6
    ERR_FORMAT = -7
    ERR_CANCELLED = -8


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def version() -> str:
    """The version of the loaded library, ``"MAJOR.MINOR.PATCH"``."""
    return _lib.lib().clara_version().decode()


def version_number() -> int:
    """The loaded library's version as ``major*10000 + minor*100 + patch``."""
    return int(_lib.lib().clara_version_number())


def library_path() -> Optional[str]:
    """The path or name the shared library was loaded from."""
    return _lib.library_path()


def _as_float32(x: ArrayLike, ndims: Sequence[int], what: str) -> np.ndarray:
    """Checks rank and dtype of 'x', then returns it as C-order float32."""
    a = np.asarray(x)
    kind = a.dtype.kind
    if kind == "c":
        raise TypeError(
            f"{what}: complex data is not accepted (dtype {a.dtype}); pass "
            f"the real part or the magnitude explicitly"
        )
    if kind not in "fiu":
        raise TypeError(
            f"{what}: a real numeric array is expected, got dtype {a.dtype}"
        )
    if a.ndim not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{what}: {want} array expected, got {a.ndim}-D "
                         f"with shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float32)


def _fptr(a: np.ndarray) -> "ctypes._Pointer[ctypes.c_float]":
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def _c_int(value: Any, what: str) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{what}: an integer is expected, got "
                        f"{type(value).__name__}") from None
    if not _INT_MIN <= v <= _INT_MAX:
        raise ValueError(f"{what}: {v} does not fit in a C int")
    return v


def _real(value: Any, what: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, numbers.Real):
        raise TypeError(f"{what}: a real number is expected, got "
                        f"{type(value).__name__}")
    return float(value)


def _pair(value: Any, what: str, scalar_index: Optional[int] = None
          ) -> Tuple[float, float]:
    """(row, col) from a pair, or from a scalar (both, or only one index)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        v = float(value)
        if scalar_index is None:
            return (v, v)
        out = [0.0, 0.0]
        out[scalar_index] = v
        return (out[0], out[1])
    vals = tuple(value)
    if len(vals) != 2:
        raise ValueError(f"{what}: a (row, col) pair is expected, got "
                         f"{len(vals)} values")
    return (_real(vals[0], f"{what}[0]"), _real(vals[1], f"{what}[1]"))


def _triple(value: Any, what: str) -> Tuple[float, float, float]:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        v = float(value)
        return (v, v, v)
    vals = tuple(value)
    if len(vals) != 3:
        raise ValueError(f"{what}: an (x, y, z) triple is expected, got "
                         f"{len(vals)} values")
    return (_real(vals[0], f"{what}[0]"), _real(vals[1], f"{what}[1]"),
            _real(vals[2], f"{what}[2]"))


def _path(path: PathLike, what: str = "path") -> bytes:
    p = os.fsencode(os.fspath(path))
    if b"\0" in p:
        raise ValueError(f"{what}: embedded NUL character")
    return p


def _parse(function: str, name: Any, what: str) -> int:
    if not isinstance(name, str):
        raise TypeError(f"{what}: a name (str) is expected, got "
                        f"{type(name).__name__}")
    out = ctypes.c_int()
    _lib.call(function, name.encode(), ctypes.byref(out))
    return out.value


def _check_shape(a: np.ndarray, shape: Tuple[int, ...], what: str,
                 squeeze_axis: int) -> np.ndarray:
    """'a' as the 3-D 'shape'; a 2-D 'a' is accepted when
    shape[squeeze_axis] == 1 (that axis left out)."""
    if a.ndim == 2 and shape[squeeze_axis] == 1:
        short = tuple(n for k, n in enumerate(shape) if k != squeeze_axis)
        if a.shape == short:
            return a.reshape(shape)
        raise ValueError(f"{what}: shape {shape} (or {short}) expected, got "
                         f"{a.shape}")
    if a.shape != shape:
        raise ValueError(f"{what}: shape {shape} expected, got {a.shape}")
    return a


_ROWS = 1  # the axis of [views][rows][cols] that a 2-D sinogram leaves out
_Z = 0     # the axis of [nz][ny][nx] that a 2-D image leaves out


# ---------------------------------------------------------------------------
# Geometry and volume
# ---------------------------------------------------------------------------


@dataclass(eq=False, repr=False)
class Geometry:
    """A CT scan geometry (``clara_ct_geometry``).

    Attributes:
        kind: ``"parallel"``, ``"fan-flat"``, ``"fan-arc"`` or ``"cone"``.
        angles: view angles in radians, one per view (stored as a 1-D
            float32 array); any order and spacing.
        rows: detector rows. For parallel and fan beams, ``rows > 1`` is a
            stack of independent sinograms (row ``r`` reconstructs slice
            ``r``, and the volume's ``nz`` must equal ``rows``).
        cols: detector columns.
        det_spacing: ``(row, col)`` pitch in mm at the detector; for fan-arc
            the column pitch is in radians. A scalar means both.
        det_offset: ``(row, col)`` shift of the detector centre, same units
            as ``det_spacing``.
        source_to_iso: source to rotation axis in mm (divergent beams only;
            ``None`` for parallel).
        source_to_detector: source to detector in mm (divergent beams only,
            ``> source_to_iso``).

    ``views`` is ``len(angles)``. The values are checked by the library
    (:meth:`check`, or when a plan is made).
    """

    kind: str
    angles: np.ndarray
    rows: int
    cols: int
    det_spacing: Tuple[float, float] = (1.0, 1.0)
    det_offset: Tuple[float, float] = (0.0, 0.0)
    source_to_iso: Optional[float] = None
    source_to_detector: Optional[float] = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str):
            raise TypeError(f"Geometry.kind: a name (str) is expected, got "
                            f"{type(self.kind).__name__}")
        self.angles = _as_float32(self.angles, (1,), "Geometry.angles")
        self.rows = _c_int(self.rows, "Geometry.rows")
        self.cols = _c_int(self.cols, "Geometry.cols")
        _c_int(self.angles.shape[0], "Geometry.views")
        self.det_spacing = _pair(self.det_spacing, "Geometry.det_spacing")
        self.det_offset = _pair(self.det_offset, "Geometry.det_offset")
        for name in ("source_to_iso", "source_to_detector"):
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, _real(v, f"Geometry.{name}"))

    @property
    def views(self) -> int:
        """The number of views, ``len(angles)``."""
        return int(self.angles.shape[0])

    @property
    def shape(self) -> Tuple[int, int, int]:
        """The projections' shape, ``(views, rows, cols)``."""
        return (self.views, self.rows, self.cols)

    def _to_c(self) -> _lib.CtGeometry:
        g = _lib.CtGeometry()
        g.kind = _parse("clara_geometry_parse", self.kind, "Geometry.kind")
        g.views = self.views
        g.rows = self.rows
        g.cols = self.cols
        g.angles = _fptr(self.angles)  # self.angles outlives the call
        g.det_spacing[0], g.det_spacing[1] = self.det_spacing
        g.det_offset[0], g.det_offset[1] = self.det_offset
        nan = float("nan")
        g.source_to_iso = nan if self.source_to_iso is None else self.source_to_iso
        g.source_to_detector = (nan if self.source_to_detector is None
                                else self.source_to_detector)
        return g

    @classmethod
    def _from_c(cls, g: _lib.CtGeometry, angles: np.ndarray) -> "Geometry":
        kind = _lib.lib().clara_geometry_name(g.kind)
        parallel = g.kind == 0

        def dist(v: float) -> Optional[float]:
            # parallel files may omit the distances (read back as 0)
            if not math.isfinite(v) or (parallel and v == 0.0):
                return None
            return float(v)

        return cls(
            kind=kind.decode() if kind else str(g.kind),
            angles=angles,
            rows=g.rows,
            cols=g.cols,
            det_spacing=(g.det_spacing[0], g.det_spacing[1]),
            det_offset=(g.det_offset[0], g.det_offset[1]),
            source_to_iso=dist(g.source_to_iso),
            source_to_detector=dist(g.source_to_detector),
        )

    def check(self) -> None:
        """Checks the geometry with ``clara_geometry_check``.

        Raises:
            ClaraError: ``ERR_INVALID_ARG`` with the library's message (NaN
                angles, sizes <= 0, ``source_to_detector <= source_to_iso``,
                ...).
        """
        g = self._to_c()
        _lib.call("clara_geometry_check", ctypes.byref(g))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Geometry):
            return NotImplemented
        return (self.kind == other.kind and self.rows == other.rows
                and self.cols == other.cols
                and np.array_equal(self.angles, other.angles)
                and self.det_spacing == other.det_spacing
                and self.det_offset == other.det_offset
                and self.source_to_iso == other.source_to_iso
                and self.source_to_detector == other.source_to_detector)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        a = self.angles
        span = (f"{float(a.min()):.4g}..{float(a.max()):.4g} rad"
                if a.size else "empty")
        s = (f"Geometry(kind={self.kind!r}, views={self.views} ({span}), "
             f"rows={self.rows}, cols={self.cols}, "
             f"det_spacing={self.det_spacing}, det_offset={self.det_offset}")
        if self.source_to_iso is not None or self.source_to_detector is not None:
            s += (f", source_to_iso={self.source_to_iso}, "
                  f"source_to_detector={self.source_to_detector}")
        return s + ")"


@dataclass
class Volume:
    """An image grid (``clara_volume``).

    Voxel ``(ix, iy, iz)`` is centred at ``x = (ix - (nx-1)/2) * voxel[0] +
    center[0]``, and ``y``, ``z`` likewise. Images are ``[nz][ny][nx]``.

    Attributes:
        nx, ny, nz: the sizes.
        voxel: ``(vx, vy, vz)`` in mm; a scalar means all three.
        center: ``(cx, cy, cz)`` in mm.
    """

    nx: int
    ny: int
    nz: int = 1
    voxel: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    center: Tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        self.nx = _c_int(self.nx, "Volume.nx")
        self.ny = _c_int(self.ny, "Volume.ny")
        self.nz = _c_int(self.nz, "Volume.nz")
        self.voxel = _triple(self.voxel, "Volume.voxel")
        self.center = _triple(self.center, "Volume.center")

    @property
    def shape(self) -> Tuple[int, int, int]:
        """The image's shape, ``(nz, ny, nx)``."""
        return (self.nz, self.ny, self.nx)

    def _to_c(self) -> _lib.CVolume:
        v = _lib.CVolume()
        v.nx, v.ny, v.nz = self.nx, self.ny, self.nz
        for i in range(3):
            v.voxel[i] = self.voxel[i]
            v.center[i] = self.center[i]
        return v

    @classmethod
    def _from_c(cls, v: _lib.CVolume) -> "Volume":
        return cls(v.nx, v.ny, v.nz, tuple(v.voxel), tuple(v.center))

    def _alloc(self) -> np.ndarray:
        # Sizes <= 0 are the library's to report: hand it an empty buffer.
        return np.zeros(tuple(max(n, 0) for n in self.shape), np.float32)


def _alloc_projections(geometry: Geometry) -> np.ndarray:
    return np.zeros(tuple(max(n, 0) for n in geometry.shape), np.float32)


# ---------------------------------------------------------------------------
# Objects with a C handle
# ---------------------------------------------------------------------------


class _ContextCore:
    """The C context, shared by a Context and the plans made from it.

    The C context must outlive its plans, so it is reference counted: the
    Context holds one reference and every live plan or projector another;
    clara_context_destroy runs when the last one is released, whatever the
    order in which Python closes or collects them. It also keeps the ctypes
    progress callback alive for as long as the C context can call it.
    """

    def __init__(self) -> None:
        self.handle: Optional[int] = None
        self.refs = 0
        self.lock = threading.Lock()
        self.callback: Any = None  # the ctypes function object
        self.pending = threading.local()  # exception raised by the callback

    def acquire(self) -> int:
        with self.lock:
            if self.handle is None or self.refs <= 0:
                raise ValueError("the Context is closed")
            self.refs += 1
            return self.handle

    def release(self) -> None:
        with self.lock:
            self.refs -= 1
            if self.refs > 0 or self.handle is None:
                return
            h, self.handle = self.handle, None
        _lib.lib().clara_context_destroy(h)
        self.callback = None

    def call(self, function: str, *args: Any) -> None:
        """A library call that may run the progress callback."""
        self.pending.exc = None
        try:
            _lib.call(function, *args)
        except ClaraError as err:
            exc = getattr(self.pending, "exc", None)
            self.pending.exc = None
            if exc is not None:
                raise exc from err
            raise
        # the callback raised but the call had nothing left to cancel:
        # do not swallow the exception
        exc = getattr(self.pending, "exc", None)
        if exc is not None:
            self.pending.exc = None
            raise exc


class _Handle:
    """Owner of one C handle: destroyed exactly once, by close(), the
    context manager, or the garbage collector."""

    _handle: Optional[int] = None
    _core: Optional[_ContextCore] = None
    _destroy: str = ""

    def __init__(self) -> None:
        self._close_lock = threading.Lock()

    def _live(self) -> int:
        h = self._handle
        if h is None:
            raise ValueError(f"{type(self).__name__} is closed")
        return h

    @property
    def closed(self) -> bool:
        """True once the object has been closed."""
        return self._handle is None

    def close(self) -> None:
        """Releases the C object. Safe to call more than once.

        Do not close an object while another thread is using it.
        """
        lock = self.__dict__.get("_close_lock")
        if lock is None:  # __init__ did not get far
            return
        with lock:
            h, self._handle = self._handle, None
            core, self._core = self._core, None
        if h is not None:
            getattr(_lib.lib(), self._destroy)(h)
        if core is not None:
            core.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown; never raise from __del__
            pass


class Context(_Handle):
    """A library context (``clara_context``): backend, threads, progress.

    Args:
        backend: ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or
            ``"cuda"`` (fails with ``ERR_NO_DEVICE`` when no CUDA backend
            can run).
        threads: worker threads, 0 for the online cores.
        progress: optional ``callable(stage: str, fraction: float)``, called
            on the calling thread while plans of this context run; a true
            return value cancels the running call, which then raises
            :class:`ClaraError` ``ERR_CANCELLED``. An exception raised by
            the callback also cancels and is re-raised to the caller.
        device: CUDA device index (ignored by the CPU backend).
        device_memory_limit: bytes a plan may use on the device, 0 for what
            is free when the plan is made; larger volumes run in z slabs.

    Plans and projectors keep the C context alive, so :meth:`close` only
    gives up this object's reference. Usable as a context manager.
    """

    _destroy = "clara_context_destroy"

    def __init__(self, backend: str = "auto", threads: int = 0,
                 progress: Optional[ProgressCallback] = None,
                 device: int = 0, device_memory_limit: int = 0) -> None:
        super().__init__()
        if progress is not None and not callable(progress):
            raise TypeError("progress: a callable(stage, fraction) or None "
                            "is expected")
        L = _lib.lib()
        opts = _lib.ContextOptions()
        L.clara_context_options_init(ctypes.byref(opts))
        opts.backend = _parse("clara_backend_parse", backend, "backend")
        opts.threads = _c_int(threads, "threads")
        opts.device = _c_int(device, "device")
        if not isinstance(device_memory_limit, int) or device_memory_limit < 0:
            raise ValueError("device_memory_limit: a byte count >= 0 is "
                             f"expected, got {device_memory_limit!r}")
        opts.device_memory_limit = device_memory_limit
        core = _ContextCore()
        if progress is not None:
            core_ref = weakref.ref(core)

            def trampoline(stage: Optional[bytes], fraction: float,
                           user: Any) -> int:
                try:
                    name = stage.decode("utf-8", "replace") if stage else ""
                    return 1 if progress(name, float(fraction)) else 0
                except BaseException as e:  # noqa: B036 - re-raised later
                    c = core_ref()
                    if c is not None:
                        c.pending.exc = e
                    return 1

            core.callback = _lib.ProgressFn(trampoline)
            opts.progress = core.callback
        out = ctypes.c_void_p()
        _lib.call("clara_context_create", ctypes.byref(opts),
                  ctypes.byref(out))
        core.handle = out.value
        core.refs = 1
        self._core = core
        self._handle = out.value
        self._progress = progress

    def close(self) -> None:
        """Gives up this object's reference to the C context (it is
        destroyed once no plan or projector uses it). Idempotent."""
        lock = self.__dict__.get("_close_lock")
        if lock is None:
            return
        with lock:
            h, self._handle = self._handle, None
            core, self._core = self._core, None
        if h is not None and core is not None:
            core.release()

    def _acquire(self) -> _ContextCore:
        self._live()
        core = self._core
        if core is None:
            raise ValueError("Context is closed")
        core.acquire()
        return core

    @property
    def backend(self) -> str:
        """The backend actually used: ``"cpu"`` or ``"cuda"``."""
        L = _lib.lib()
        return L.clara_backend_name(L.clara_context_backend(self._live())
                                    ).decode()

    @property
    def threads(self) -> int:
        """The worker threads the context uses."""
        return int(_lib.lib().clara_context_threads(self._live()))

    def __repr__(self) -> str:
        if self.closed:
            return "Context(closed)"
        return f"Context(backend={self.backend!r}, threads={self.threads})"


class FBPPlan(_Handle):
    """Filtered back-projection (FDK for cone beams), ``clara_fbp_plan``.

    All the expensive work happens here; :meth:`execute` only runs. A plan
    may be executed from several threads at once.

    Args:
        ctx: the context.
        geometry: the scan.
        volume: the image grid (for parallel and fan beams ``nz`` must equal
            ``geometry.rows``).
        filter: ``"ram-lak"`` (or ``"ramp"``), ``"shepp-logan"``,
            ``"cosine"``, ``"hamming"`` or ``"hann"``.
        cutoff: filter cutoff in (0, 1], a fraction of Nyquist.
        hu: ``None`` for images in mu (1/mm); a float ``mu_water`` (1/mm)
            for Hounsfield units ``1000 (mu - mu_water) / mu_water``;
            ``True`` for :data:`WATER_MU`.
        allow_truncation: reconstruct even when the detector does not cover
            the volume's inscribed circle.
        fov_mask: set voxels outside the field of view to 0.
        offset_weights: apply redundancy weights for an offset (half-fan)
            detector.

    Raises:
        ClaraError: the library refused the plan (the message names the
            argument).
    """

    _destroy = "clara_fbp_plan_destroy"

    def __init__(self, ctx: Context, geometry: Geometry, volume: Volume,
                 filter: str = "ram-lak", cutoff: float = 1.0,
                 hu: Union[None, bool, float] = None,
                 allow_truncation: bool = False, fov_mask: bool = True,
                 offset_weights: bool = True) -> None:
        super().__init__()
        if not isinstance(ctx, Context):
            raise TypeError("ctx: a Context is expected")
        if not isinstance(geometry, Geometry):
            raise TypeError("geometry: a Geometry is expected")
        if not isinstance(volume, Volume):
            raise TypeError("volume: a Volume is expected")
        L = _lib.lib()
        opts = _lib.FbpOptions()
        L.clara_fbp_options_init(ctypes.byref(opts))
        opts.filter = _parse("clara_filter_parse", filter, "filter")
        opts.cutoff = _real(cutoff, "cutoff")
        if hu is None or hu is False:
            opts.mu_water = 0.0
        elif hu is True:
            opts.mu_water = WATER_MU
        else:
            opts.mu_water = _real(hu, "hu")
        flags = 0
        if allow_truncation:
            flags |= _lib.FBP_ALLOW_TRUNCATION
        if not fov_mask:
            flags |= _lib.FBP_NO_FOV_MASK
        if not offset_weights:
            flags |= _lib.FBP_NO_OFFSET_WEIGHTS
        opts.flags = flags
        g = geometry._to_c()
        v = volume._to_c()
        core = ctx._acquire()
        out = ctypes.c_void_p()
        try:
            core.call("clara_fbp_plan_create", core.handle, ctypes.byref(g),
                      ctypes.byref(v), ctypes.byref(opts), ctypes.byref(out))
        except BaseException:
            core.release()
            raise
        self._core = core
        self._handle = out.value
        self.geometry = Geometry(geometry.kind, geometry.angles.copy(),
                                 geometry.rows, geometry.cols,
                                 geometry.det_spacing, geometry.det_offset,
                                 geometry.source_to_iso,
                                 geometry.source_to_detector)
        self.volume = Volume(volume.nx, volume.ny, volume.nz, volume.voxel,
                             volume.center)
        self.filter = filter
        self._denoiser: Optional["Denoiser"] = None
        info = _lib.FbpInfo()
        _lib.call("clara_fbp_plan_info", self._handle, ctypes.byref(info))
        self._info = {
            "fft_length": int(info.fft_length),
            "scan_range": float(info.scan_range),
            "short_scan": bool(info.short_scan),
            "offset_weighting": bool(info.offset_weighting),
            "fov_radius": float(info.fov_radius),
            "fan_half_angle": float(info.fan_half_angle),
        }

    @property
    def info(self) -> dict:
        """What the plan decided (``clara_fbp_plan_info``): ``fft_length``,
        ``scan_range`` (rad), ``short_scan`` (Parker weights),
        ``offset_weighting``, ``fov_radius`` (mm), ``fan_half_angle``
        (rad)."""
        return dict(self._info)

    def execute(self, projections: ArrayLike) -> np.ndarray:
        """Reconstructs ``projections`` and returns the image.

        Args:
            projections: ``[views][rows][cols]`` (or ``[views][cols]`` when
                ``rows == 1``), any real dtype; converted to float32.

        Returns:
            A new float32 array ``[nz][ny][nx]``.

        Raises:
            ValueError: wrong rank or shape. TypeError: complex or
            non-numeric data. ClaraError: the library failed, e.g.
            ``ERR_CANCELLED`` from the progress callback.
        """
        p = _as_float32(projections, (2, 3), "projections")
        p = _check_shape(p, self.geometry.shape, "projections", _ROWS)
        h = self._live()
        image = np.empty(self.volume.shape, np.float32)
        self._core.call("clara_fbp_execute", h, _fptr(p), _fptr(image))
        return image

    __call__ = execute

    def execute_timed(self, projections: ArrayLike
                      ) -> Tuple[np.ndarray, Dict[str, float]]:
        """:meth:`execute` that also returns the library's own timing
        (``clara_fbp_execute_timed``): a dict with ``total_ms``,
        ``upload_ms``, ``filter_ms``, ``backproject_ms``, ``download_ms``
        (the device stages are 0 on the CPU) and ``slabs``."""
        p = _as_float32(projections, (2, 3), "projections")
        p = _check_shape(p, self.geometry.shape, "projections", _ROWS)
        h = self._live()
        image = np.empty(self.volume.shape, np.float32)
        t = _lib.FbpTiming()
        self._core.call("clara_fbp_execute_timed", h, _fptr(p), _fptr(image),
                        ctypes.byref(t))
        timing = {name: float(getattr(t, name))
                  for name, _ in _lib.FbpTiming._fields_ if name != "slabs"}
        timing["slabs"] = int(t.slabs)
        return image, timing

    def execute_device(self, d_projections: int, d_image: int) -> None:
        """Reconstructs on the GPU (``clara_fbp_execute_device``):
        ``d_projections`` and ``d_image`` are device addresses (e.g.
        CuPy's ``a.data.ptr``) of C-contiguous float32 arrays of the plan's
        projection and image shapes, on the device of the plan's CUDA
        context. Nothing is checked on the Python side: the addresses must
        be valid.

        Raises:
            ClaraError: ``ERR_UNSUPPORTED`` on a CPU context,
                ``ERR_DEVICE``.
        """
        h = self._live()
        self._core.call("clara_fbp_execute_device", h,
                        ctypes.c_void_p(d_projections),
                        ctypes.c_void_p(d_image))

    def filter_response(self) -> np.ndarray:
        """The filter's frequency response as the plan uses it.

        Returns ``fft_length // 2 + 1`` float32 values; bin ``k`` is at
        ``k / fft_length`` cycles per sample, in 1/mm (the ramp is |f| in
        cycles/mm times the window).
        """
        h = self._live()
        n = self._info["fft_length"] // 2 + 1
        out = np.empty(n, np.float32)
        _lib.call("clara_fbp_plan_filter", h, _fptr(out), n)
        return out

    def weight(self, view: int, col: int) -> float:
        """The redundancy weight of column ``col`` in view ``view``
        (Parker / offset-detector weights; the angular interval factor
        excluded)."""
        h = self._live()
        w = ctypes.c_float()
        _lib.call("clara_fbp_plan_weight", h, _c_int(view, "view"),
                  _c_int(col, "col"), ctypes.byref(w))
        return float(w.value)

    def set_denoiser(self, denoiser: Optional["Denoiser"]) -> None:
        """Attaches a denoiser (``clara_fbp_plan_set_denoiser``): from then
        on :meth:`execute` returns denoised images (on the GPU without
        leaving the device). ``None`` detaches.

        The denoiser must be a CT model loaded on this plan's context, and
        the plan must output Hounsfield units (``hu``). The plan keeps a
        reference, so the denoiser may be closed after attaching. Not
        thread-safe against executions of this plan.

        Raises:
            TypeError: not a :class:`Denoiser` (or ``None``).
            ValueError: the plan or the denoiser is closed.
            ClaraError: ``ERR_INVALID_ARG`` with the reason: an MR model,
                another context, a plan in 1/mm, slices smaller than the
                model's receptive field.
        """
        _attach(self, "clara_fbp_plan_set_denoiser", denoiser)

    @property
    def denoiser(self) -> Optional["Denoiser"]:
        """The attached :class:`Denoiser`, or ``None``."""
        return self._denoiser

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"filter={self.filter!r}"
        if self._denoiser is not None and not self.closed:
            state += ", denoised"
        return f"FBPPlan({self.geometry!r} -> {self.volume!r}, {state})"


class Projector(_Handle):
    """The Joseph forward projector and its exact adjoint
    (``clara_projector``): ``<project(x), y> == <x, backproject(y)>`` to
    rounding.

    Args:
        ctx: the context.
        geometry: the scan.
        volume: the image grid.
    """

    _destroy = "clara_projector_destroy"

    def __init__(self, ctx: Context, geometry: Geometry,
                 volume: Volume) -> None:
        super().__init__()
        if not isinstance(ctx, Context):
            raise TypeError("ctx: a Context is expected")
        if not isinstance(geometry, Geometry):
            raise TypeError("geometry: a Geometry is expected")
        if not isinstance(volume, Volume):
            raise TypeError("volume: a Volume is expected")
        g = geometry._to_c()
        v = volume._to_c()
        core = ctx._acquire()
        out = ctypes.c_void_p()
        try:
            core.call("clara_projector_create", core.handle, ctypes.byref(g),
                      ctypes.byref(v), ctypes.byref(out))
        except BaseException:
            core.release()
            raise
        self._core = core
        self._handle = out.value
        self.geometry = Geometry(geometry.kind, geometry.angles.copy(),
                                 geometry.rows, geometry.cols,
                                 geometry.det_spacing, geometry.det_offset,
                                 geometry.source_to_iso,
                                 geometry.source_to_detector)
        self.volume = Volume(volume.nx, volume.ny, volume.nz, volume.voxel,
                             volume.center)

    def project(self, image: ArrayLike) -> np.ndarray:
        """Line integrals of ``image`` (``[nz][ny][nx]``, or ``[ny][nx]``
        when ``nz == 1``): a new float32 array ``[views][rows][cols]``."""
        x = _as_float32(image, (2, 3), "image")
        x = _check_shape(x, self.volume.shape, "image", _Z)
        h = self._live()
        out = np.empty(self.geometry.shape, np.float32)
        self._core.call("clara_project", h, _fptr(x), _fptr(out))
        return out

    def backproject(self, projections: ArrayLike) -> np.ndarray:
        """The adjoint: ``A^T projections`` (``[views][rows][cols]``, or
        ``[views][cols]`` when ``rows == 1``) as a new float32 array
        ``[nz][ny][nx]``."""
        p = _as_float32(projections, (2, 3), "projections")
        p = _check_shape(p, self.geometry.shape, "projections", _ROWS)
        h = self._live()
        out = np.empty(self.volume.shape, np.float32)
        self._core.call("clara_backproject", h, _fptr(p), _fptr(out))
        return out

    def __repr__(self) -> str:
        state = ", closed" if self.closed else ""
        return f"Projector({self.geometry!r} -> {self.volume!r}{state})"


# ---------------------------------------------------------------------------
# Phantoms
# ---------------------------------------------------------------------------


@dataclass
class Ellipsoid:
    """One ellipsoid of a phantom (``clara_ellipsoid``): ``density`` added
    inside; semi-axes ``a, b, c`` and centre ``(x0, y0, z0)`` in mm; ``phi``
    rotates it about z (radians). 2-D phantoms ignore ``c`` and ``z0``."""

    density: float
    a: float
    b: float
    c: float = 1.0
    x0: float = 0.0
    y0: float = 0.0
    z0: float = 0.0
    phi: float = 0.0


class Phantom(_Handle):
    """An analytic phantom (``clara_phantom``); make one with
    :func:`shepp_logan` or :func:`ellipsoid_phantom`."""

    _destroy = "clara_phantom_destroy"

    def __init__(self, _handle: int, ndim: int) -> None:
        super().__init__()
        self._handle = _handle
        self.ndim = ndim

    def rasterize(self, volume: Volume, supersample: int = 2) -> np.ndarray:
        """The phantom sampled on ``volume``: each voxel is the mean of
        ``supersample**ndim`` point samples. Returns float32
        ``[nz][ny][nx]``."""
        if not isinstance(volume, Volume):
            raise TypeError("volume: a Volume is expected")
        h = self._live()
        v = volume._to_c()
        out = volume._alloc()
        _lib.call("clara_phantom_rasterize", h, ctypes.byref(v),
                  _c_int(supersample, "supersample"), _fptr(out))
        return out

    def project(self, geometry: Geometry) -> np.ndarray:
        """Exact line integrals through each detector cell's centre, for
        any geometry: float32 ``[views][rows][cols]``. A 2-D phantom gives
        every row the same sinogram for parallel and fan beams."""
        if not isinstance(geometry, Geometry):
            raise TypeError("geometry: a Geometry is expected")
        h = self._live()
        g = geometry._to_c()
        # let the library judge the geometry before allocating from it
        _lib.call("clara_geometry_check", ctypes.byref(g))
        out = _alloc_projections(geometry)
        _lib.call("clara_phantom_project", h, ctypes.byref(g), _fptr(out))
        return out

    def __repr__(self) -> str:
        return f"Phantom(ndim={self.ndim}{', closed' if self.closed else ''})"


def shepp_logan(ndim: int = 2, radius: float = 1.0,
                scale: float = 1.0) -> Phantom:
    """The modified Shepp-Logan phantom (Toft's contrasts).

    Args:
        ndim: 2 (ellipses, infinite along z) or 3 (ellipsoids).
        radius: the unit square [-1, 1] maps to [-radius, radius] mm.
        scale: densities are multiplied by this (e.g. 0.02 for mu near
            water's, in 1/mm).
    """
    out = ctypes.c_void_p()
    _lib.call("clara_phantom_shepp_logan", _c_int(ndim, "ndim"),
              _real(radius, "radius"), _real(scale, "scale"),
              ctypes.byref(out))
    return Phantom(out.value, int(ndim))


def ellipsoid_phantom(ndim: int,
                      ellipsoids: Union[Iterable[Ellipsoid], ArrayLike]
                      ) -> Phantom:
    """A phantom made of the given ellipsoids.

    Args:
        ndim: 2 or 3.
        ellipsoids: :class:`Ellipsoid` objects, or an ``[n][8]`` array of
            ``(density, a, b, c, x0, y0, z0, phi)`` rows.
    """
    items = list(ellipsoids) if not isinstance(ellipsoids, np.ndarray) \
        else ellipsoids
    if len(items) and all(isinstance(e, Ellipsoid) for e in items):
        rows = [[e.density, e.a, e.b, e.c, e.x0, e.y0, e.z0, e.phi]
                for e in items]
        arr = np.asarray(rows, dtype=np.float64)
    else:
        arr = np.asarray(items)
        if arr.dtype.kind not in "fiu":
            raise TypeError("ellipsoids: Ellipsoid objects or a real [n][8] "
                            f"array expected, got dtype {arr.dtype}")
        if arr.size == 0:
            arr = arr.reshape(0, 8)
        if arr.ndim != 2 or arr.shape[1] != 8:
            raise ValueError("ellipsoids: shape [n][8] expected, got "
                             f"{arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    n = arr.shape[0]
    buf = (_lib.Ellipsoid * max(n, 1))()
    for i in range(n):
        buf[i] = _lib.Ellipsoid(*map(float, arr[i]))
    out = ctypes.c_void_p()
    _lib.call("clara_phantom_create", _c_int(ndim, "ndim"), buf, n,
              ctypes.byref(out))
    return Phantom(out.value, int(ndim))


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def _take(ptr: "ctypes._Pointer[ctypes.c_float]", shape: Tuple[int, ...]
          ) -> np.ndarray:
    """A numpy copy of library-allocated floats (the caller frees them)."""
    n = int(np.prod(shape, dtype=np.int64))
    if n == 0:
        return np.zeros(shape, np.float32)
    view = np.ctypeslib.as_array(ptr, shape=(n,))
    return view.copy().reshape(shape)


def read_ct(path: PathLike) -> Tuple[Geometry, np.ndarray]:
    """Reads a CT input file (``clara_ct_file_read``).

    Returns:
        ``(geometry, projections)``, projections float32
        ``[views][rows][cols]``.

    Raises:
        ClaraError: ``ERR_IO`` (cannot open, not HDF5, truncated) or
            ``ERR_FORMAT`` (missing or mismatched datasets), with the
            library's message.
    """
    L = _lib.lib()
    g = _lib.CtGeometry()
    angles_p = ctypes.POINTER(ctypes.c_float)()
    proj_p = ctypes.POINTER(ctypes.c_float)()
    _lib.call("clara_ct_file_read", _path(path), ctypes.byref(g),
              ctypes.byref(angles_p), ctypes.byref(proj_p))
    try:
        angles = _take(angles_p, (g.views,))
        projections = _take(proj_p, (g.views, g.rows, g.cols))
    finally:
        L.clara_free(ctypes.cast(angles_p, ctypes.c_void_p))
        L.clara_free(ctypes.cast(proj_p, ctypes.c_void_p))
    return Geometry._from_c(g, angles), projections


def write_ct(path: PathLike, geometry: Geometry, projections: ArrayLike,
             truth: Optional[ArrayLike] = None,
             truth_volume: Optional[Volume] = None) -> None:
    """Writes a CT input file (``clara_ct_file_write``), atomically.

    Args:
        path: the file to write (replaced if it exists).
        geometry: the scan.
        projections: ``[views][rows][cols]`` (or ``[views][cols]`` when
            ``rows == 1``).
        truth: optional ground truth ``[nz][ny][nx]`` on ``truth_volume``
            (both or neither).
    """
    if not isinstance(geometry, Geometry):
        raise TypeError("geometry: a Geometry is expected")
    if (truth is None) != (truth_volume is None):
        raise ValueError("truth and truth_volume go together: pass both or "
                         "neither")
    p = _as_float32(projections, (2, 3), "projections")
    if geometry.views > 0 and geometry.rows > 0 and geometry.cols > 0:
        p = _check_shape(p, geometry.shape, "projections", _ROWS)
    g = geometry._to_c()
    vol_p = None
    truth_ptr = None
    t = None
    if truth is not None:
        if not isinstance(truth_volume, Volume):
            raise TypeError("truth_volume: a Volume is expected")
        t = _as_float32(truth, (2, 3), "truth")
        if min(truth_volume.shape) > 0:
            t = _check_shape(t, truth_volume.shape, "truth", _Z)
        v = truth_volume._to_c()
        vol_p = ctypes.byref(v)
        truth_ptr = _fptr(t)
    _lib.call("clara_ct_file_write", _path(path), ctypes.byref(g), _fptr(p),
              vol_p, truth_ptr)


def write_image(path: PathLike, volume: Volume, image: ArrayLike,
                units: str = "1/mm") -> None:
    """Writes an image file (``clara_image_file_write``), atomically.

    Args:
        path: the file to write (replaced if it exists).
        volume: the grid of ``image``.
        image: ``[nz][ny][nx]`` (or ``[ny][nx]`` when ``nz == 1``).
        units: e.g. ``"1/mm"`` or ``"HU"``; ``""`` for none.
    """
    if not isinstance(volume, Volume):
        raise TypeError("volume: a Volume is expected")
    if not isinstance(units, str):
        raise TypeError("units: a str is expected")
    x = _as_float32(image, (2, 3), "image")
    if min(volume.shape) > 0:
        x = _check_shape(x, volume.shape, "image", _Z)
    v = volume._to_c()
    _lib.call("clara_image_file_write", _path(path), ctypes.byref(v),
              _fptr(x), units.encode())


def read_image(path: PathLike, dataset: str = "/image"
               ) -> Tuple[Volume, np.ndarray, str]:
    """Reads an image-layout dataset (``clara_image_file_read``):
    ``"/image"`` of an image file or ``"/truth"`` of a CT input file.

    Returns:
        ``(volume, image, units)``: image float32 ``[nz][ny][nx]``, units
        ``""`` when the file has none.
    """
    L = _lib.lib()
    v = _lib.CVolume()
    img_p = ctypes.POINTER(ctypes.c_float)()
    units = ctypes.create_string_buffer(256)
    _lib.call("clara_image_file_read", _path(path), _path(dataset, "dataset"),
              ctypes.byref(v), ctypes.byref(img_p), units,
              ctypes.sizeof(units))
    try:
        image = _take(img_p, (v.nz, v.ny, v.nx))
    finally:
        L.clara_free(ctypes.cast(img_p, ctypes.c_void_p))
    return (Volume._from_c(v), image,
            units.value.decode("utf-8", "replace"))


# ---------------------------------------------------------------------------
# One-call reconstruction
# ---------------------------------------------------------------------------


def fbp(projections: ArrayLike, angles: ArrayLike,
        geometry: str = "parallel", filter: str = "ram-lak",
        backend: str = "auto", size: Union[None, int, Sequence[int]] = None,
        voxel: Union[None, float, Sequence[float]] = None,
        det_spacing: Union[float, Sequence[float]] = 1.0,
        source_to_iso: Optional[float] = None,
        source_to_detector: Optional[float] = None, cutoff: float = 1.0,
        threads: int = 0, *,
        det_offset: Union[float, Sequence[float]] = 0.0,
        center: Union[float, Sequence[float]] = (0.0, 0.0, 0.0),
        hu: Union[None, bool, float] = None, allow_truncation: bool = False,
        fov_mask: bool = True, offset_weights: bool = True,
        progress: Optional[ProgressCallback] = None) -> np.ndarray:
    """Reconstructs projections in one call (context, plan, execute).

    Args:
        projections: one sinogram ``[views][cols]`` or a stack
            ``[views][rows][cols]``.
        angles: view angles in radians; ``len(angles)`` must equal
            ``projections.shape[0]``.
        geometry: ``"parallel"``, ``"fan-flat"``, ``"fan-arc"`` or
            ``"cone"``.
        filter: see :class:`FBPPlan`.
        backend: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        size: ``nx = ny = size``, or ``(nx, ny)`` or ``(nx, ny, nz)``.
            Default: ``nx = ny = cols``; ``nz = rows``.
        voxel: voxel size in mm, a scalar or ``(vx, vy, vz)``. Default: the
            detector column pitch at the rotation axis (``det_spacing``
            for parallel beams, ``det_spacing * source_to_iso /
            source_to_detector`` for flat detectors, ``source_to_iso *
            det_spacing`` for fan-arc); z likewise from the row pitch.
        det_spacing: detector pitch, a scalar or ``(row, col)``.
        source_to_iso, source_to_detector: distances in mm for divergent
            beams.
        cutoff: filter cutoff in (0, 1].
        threads: worker threads (0: all cores).
        det_offset: detector centre shift, a ``(row, col)`` pair or a scalar
            column offset.
        center: the volume centre ``(cx, cy, cz)`` in mm.
        hu, allow_truncation, fov_mask, offset_weights: see
            :class:`FBPPlan`.
        progress: see :class:`Context`.

    Returns:
        float32 image: ``[ny][nx]`` for a 2-D sinogram, ``[nz][ny][nx]``
        for 3-D projections.

    Raises:
        ValueError: the angle count differs from the view count, or wrong
            ranks/sizes. TypeError: complex or non-numeric data.
        ClaraError: the library refused the geometry or volume.
    """
    p = _as_float32(projections, (2, 3), "projections")
    a = _as_float32(angles, (1,), "angles")
    if a.shape[0] != p.shape[0]:
        raise ValueError(
            f"projections have {p.shape[0]} views (shape[0]) but angles has "
            f"{a.shape[0]} values: the views count differs from the angles "
            f"count")
    flat = p.ndim == 2
    if flat:
        p = p[:, np.newaxis, :]
    views, rows, cols = p.shape
    geom = Geometry(geometry, a, rows, cols, _pair(det_spacing, "det_spacing"),
                    _pair(det_offset, "det_offset", scalar_index=1),
                    source_to_iso, source_to_detector)
    geom.check()  # the library's message before we derive sizes from it

    kind = geom.kind
    du_row, du_col = geom.det_spacing
    if kind == "parallel":
        mag = 1.0
        vx_default = du_col
    else:
        assert geom.source_to_iso is not None
        assert geom.source_to_detector is not None
        mag = geom.source_to_iso / geom.source_to_detector
        vx_default = (geom.source_to_iso * du_col if kind == "fan-arc"
                      else du_col * mag)
    vz_default = du_row * mag if kind == "cone" else du_row

    if size is None:
        nx = ny = cols
        nz = rows
    elif isinstance(size, numbers.Integral):
        nx = ny = int(size)
        nz = rows
    else:
        dims = [int(operator.index(s)) for s in size]
        if len(dims) == 2:
            nx, ny = dims
            nz = rows
        elif len(dims) == 3:
            nx, ny, nz = dims
        else:
            raise ValueError("size: an int, (nx, ny) or (nx, ny, nz) is "
                             f"expected, got {len(dims)} values")
    if voxel is None:
        vox = (vx_default, vx_default, vz_default)
    elif isinstance(voxel, numbers.Real):
        vox = (float(voxel), float(voxel), vz_default)
    else:
        vox = _triple(voxel, "voxel")
    vol = Volume(nx, ny, nz, vox, _triple(center, "center"))

    with Context(backend, threads, progress) as ctx, \
            FBPPlan(ctx, geom, vol, filter=filter, cutoff=cutoff, hu=hu,
                    allow_truncation=allow_truncation, fov_mask=fov_mask,
                    offset_weights=offset_weights) as plan:
        image = plan.execute(p)
    if flat and image.shape[0] == 1:
        return image[0]
    return image


# ---------------------------------------------------------------------------
# MRI: Cartesian multi-coil k-space reconstruction
# ---------------------------------------------------------------------------

#: ``norm`` names of :class:`MRPlan` (index = ``clara_mr_norm``).
MR_NORMS = ("ortho", "none")
#: ``combine`` names of :class:`MRPlan` (index = ``clara_mr_combine``).
MR_COMBINES = ("rss", "adaptive", "sensitivity")
#: ``partial_fourier`` names of :class:`MRPlan` (index =
#: ``clara_mr_partial_fourier``).
MR_PARTIAL_FOURIER = ("zero", "homodyne", "pocs")
#: ``window`` names of :class:`MRPlan` (index = ``clara_mr_window``).
MR_WINDOWS = ("none", "hann", "hamming", "tukey")

_MR_PLAN_API = ("clara_mr_options_init", "clara_mr_plan_create",
                "clara_mr_execute", "clara_mr_plan_destroy")
_MR_FILE_API = ("clara_mr_file_open", "clara_mr_file_close",
                "clara_mr_file_format", "clara_mr_file_count",
                "clara_mr_file_geometry", "clara_mr_file_kspace",
                "clara_mr_file_noise", "clara_mr_file_reference")


def _as_complex64(x: ArrayLike, ndims: Sequence[int], what: str
                  ) -> np.ndarray:
    """Checks rank and dtype of 'x', then returns it as C-order complex64
    (complex128 and clongdouble are rounded to complex64; real data are
    refused rather than silently given a zero imaginary part)."""
    a = np.asarray(x)
    if a.dtype.kind != "c":
        raise TypeError(
            f"{what}: complex data is expected, got dtype {a.dtype}; for "
            f"real data pass x.astype(np.complex64) explicitly"
        )
    if a.ndim not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{what}: {want} array expected, got {a.ndim}-D "
                         f"with shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.complex64)


def _cptr(a: np.ndarray) -> "ctypes._Pointer[ctypes.c_float]":
    """A complex64 array as the library's interleaved float (re, im)."""
    assert a.dtype == np.complex64 and a.flags.c_contiguous
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def _mr_enum(value: Any, names: Tuple[str, ...], what: str) -> int:
    """A name of 'names' -> its index. An int is passed through unchecked,
    so that the library judges it (ClaraError naming opts-><what>)."""
    if isinstance(value, str):
        key = value.strip().lower()
        if key in names:
            return names.index(key)
        raise ValueError(f"{what}: unknown {what} {value!r}; expected one "
                         f"of {', '.join(repr(n) for n in names)}")
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what}: a name (str) is expected, got bool")
    if isinstance(value, numbers.Integral):
        return _c_int(value, what)
    raise TypeError(f"{what}: a name (str) is expected, got "
                    f"{type(value).__name__}")


def mr_phantom_kspace(geometry: "MRGeometry", fov_mm: float,
                      coil_maps: bool = True
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """The 2-D Shepp-Logan phantom's exact k-space as seen by
    ``geometry.coils`` coils (``clara_mr_phantom_kspace``).

    Args:
        geometry: the acquisition (``nz`` must be 1); only the sampled
            ``ky``/``kx`` ranges are filled.
        fov_mm: the field of view along y (the phantom's radius is
            ``fov_mm / 2``).
        coil_maps: smooth complex coil sensitivities (True) or uniform ones.

    Returns:
        ``(kspace, maps)``: complex64 ``geometry.kspace_shape`` and the maps
        ``geometry.maps_shape`` on the recon grid, so that an ORTHO
        reconstruction approximates phantom x map.
    """
    _lib.require("clara_mr_phantom_kspace")
    if not isinstance(geometry, MRGeometry):
        raise TypeError("geometry: an MRGeometry is expected")
    g = geometry._to_c()
    k = np.zeros(geometry.kspace_shape if geometry._positive() else (0,),
                 np.complex64)
    m = np.zeros(geometry.maps_shape if geometry._positive() else (0,),
                 np.complex64)
    _lib.call("clara_mr_phantom_kspace", ctypes.byref(g), float(fov_mm),
              1 if coil_maps else 0, _cptr(k), _cptr(m))
    return k, m


def write_ismrmrd(path: PathLike, geometry: "MRGeometry", kspace: ArrayLike,
                  noise: Optional[ArrayLike] = None) -> None:
    """Writes k-space as an ISMRMRD file (``clara_mr_file_write_ismrmrd``),
    atomically: one acquisition per sampled line, the XML header from the
    geometry, and optional noise scans.

    Args:
        path: the file to write (replaced if it exists).
        geometry: the acquisition.
        kspace: complex ``geometry.kspace_shape``.
        noise: complex ``[coils][samples]`` noise-scan samples, or None.
    """
    _lib.require("clara_mr_file_write_ismrmrd")
    if not isinstance(geometry, MRGeometry):
        raise TypeError("geometry: an MRGeometry is expected")
    k = _as_complex64(kspace, (5,), "kspace")
    if geometry._positive():
        _check_exact(k, geometry.kspace_shape, "kspace")
    g = geometry._to_c()
    if noise is None:
        _lib.call("clara_mr_file_write_ismrmrd", _path(path), ctypes.byref(g),
                  _cptr(k), None, 0)
        return
    n = _as_complex64(noise, (2,), "noise")
    if n.shape[0] != geometry.coils:
        raise ValueError(f"noise: [coils][samples] with {geometry.coils} "
                         f"coils expected, got shape {n.shape}")
    _lib.call("clara_mr_file_write_ismrmrd", _path(path), ctypes.byref(g),
              _cptr(k), _cptr(n), int(n.shape[1]))


def _check_exact(a: np.ndarray, shape: Tuple[int, ...], what: str) -> None:
    if a.shape != shape:
        raise ValueError(f"{what}: shape {shape} expected, got {a.shape}")


@dataclass
class MRGeometry:
    """A Cartesian MR acquisition (``clara_mr_geometry``).

    k-space is ``kspace[slices][coils][nz][ky][kx]`` (kx = readout, the
    fastest axis), complex, with DC at index ``n // 2`` on every axis (the
    centred convention of fastMRI and ISMRMRD). Images are
    ``image[slices][nz][ny][recon_nx]``.

    Attributes:
        coils: receiver coils.
        nx, ny, nz: the encoded matrix: readout, phase encoding, partition
            (``nz = 1`` for 2-D data).
        slices: independent slices (or 3-D volumes) reconstructed by one
            :meth:`MRPlan.execute`.
        recon_nx: readout size after oversampling removal; the centred
            ``recon_nx`` columns are kept (output column ``i`` is image
            column ``i + nx//2 - recon_nx//2``). ``0`` means ``nx``.
        ky_first, ky_last: the sampled phase-encoding lines (inclusive);
            ``ky_last=None`` means ``ny - 1``. Lines outside are treated as
            not acquired (partial Fourier).
        kx_first, kx_last: the sampled readout samples (asymmetric echo);
            ``kx_last=None`` means ``nx - 1``.

    The values are checked by the library when a plan is made.
    """

    coils: int
    nx: int
    ny: int
    nz: int = 1
    slices: int = 1
    recon_nx: int = 0
    ky_first: int = 0
    ky_last: Optional[int] = None
    kx_first: int = 0
    kx_last: Optional[int] = None

    def __post_init__(self) -> None:
        for name in ("coils", "nx", "ny", "nz", "slices", "recon_nx",
                     "ky_first", "kx_first"):
            setattr(self, name, _c_int(getattr(self, name),
                                       f"MRGeometry.{name}"))
        self.ky_last = (self.ny - 1 if self.ky_last is None
                        else _c_int(self.ky_last, "MRGeometry.ky_last"))
        self.kx_last = (self.nx - 1 if self.kx_last is None
                        else _c_int(self.kx_last, "MRGeometry.kx_last"))

    @property
    def out_nx(self) -> int:
        """The image's x size: ``recon_nx``, or ``nx`` when it is 0."""
        return self.recon_nx if self.recon_nx > 0 else self.nx

    @property
    def kspace_shape(self) -> Tuple[int, int, int, int, int]:
        """``(slices, coils, nz, ny, nx)``."""
        return (self.slices, self.coils, self.nz, self.ny, self.nx)

    @property
    def image_shape(self) -> Tuple[int, int, int, int]:
        """``(slices, nz, ny, out_nx)``."""
        return (self.slices, self.nz, self.ny, self.out_nx)

    @property
    def maps_shape(self) -> Tuple[int, int, int, int]:
        """The sensitivity maps' shape, ``(coils, nz, ny, out_nx)``."""
        return (self.coils, self.nz, self.ny, self.out_nx)

    def _to_c(self) -> _lib.MrGeometry:
        g = _lib.MrGeometry()
        for name, _ in _lib.MrGeometry._fields_:
            setattr(g, name, getattr(self, name))
        return g

    @classmethod
    def _from_c(cls, g: _lib.MrGeometry) -> "MRGeometry":
        return cls(**{name: int(getattr(g, name))
                      for name, _ in _lib.MrGeometry._fields_})

    def _positive(self) -> bool:
        return min(self.coils, self.nx, self.ny, self.nz, self.slices) > 0


class MRPlan(_Handle):
    """Cartesian multi-coil MR reconstruction, ``clara_mr_plan``.

    For every slice and coil: noise pre-whitening, apodisation, partial
    Fourier, the centred inverse FFT ``fftshift(ifftn(ifftshift(k)))`` and
    readout oversampling removal; then coil combination (docs/MRI.md).
    All the expensive work happens here; :meth:`execute` only runs, and may
    be called from several threads at once.

    Args:
        ctx: the context.
        geometry: the acquisition (:class:`MRGeometry`).
        norm: ``"ortho"`` (scale ``1/sqrt(nx*ny*nz)``, numpy's
            ``norm="ortho"``, as fastMRI) or ``"none"`` (no scale, the
            ISMRMRD tools; ``sqrt(nx*ny*nz)`` times the ortho image, i.e.
            numpy's ``norm="forward"`` inverse).
        combine: ``"rss"`` (root sum of squares), ``"adaptive"`` (Walsh,
            maps from the data) or ``"sensitivity"`` (the caller's
            ``sensitivities``: ``sum conj(S) c / sum |S|^2``).
        partial_fourier: ``"homodyne"``, ``"pocs"`` or ``"zero"``
            (zero-fill). With symmetric sampling all three are the
            zero-filled reconstruction.
        pocs_iterations: POCS iterations, 1..1000.
        window: apodisation, ``"none"``, ``"hann"``, ``"hamming"`` or
            ``"tukey"``.
        tukey_alpha: the Tukey taper fraction, in (0, 1].
        output_complex: return complex64 images instead of float32
            magnitudes (RSS has no phase: its imaginary part is 0).
        noise_covariance: optional complex ``[coils][coils]`` Hermitian
            positive definite covariance (e.g. from
            :func:`noise_covariance`) to pre-whiten the coils with.
        sensitivities: coil maps for ``combine="sensitivity"`` (and refused
            otherwise): complex ``[coils][nz][ny][out_nx]`` (or
            ``[coils][ny][out_nx]`` when ``nz == 1``), in the coils' own
            (unwhitened) space.

    The enum arguments take the names above; an int is passed to the
    library as the C enum value. The arrays are copied by the plan.

    Raises:
        ValueError: an unknown name, or an array of the wrong shape.
        TypeError: a real array where complex data are expected.
        ClaraError: the library refused the plan (the message names the
            argument, e.g. ``opts->pocs_iterations``).
        NotImplementedError: the loaded library has no MRI API.
    """

    _destroy = "clara_mr_plan_destroy"

    def __init__(self, ctx: Context, geometry: MRGeometry,
                 norm: str = "ortho", combine: str = "rss",
                 partial_fourier: str = "homodyne", pocs_iterations: int = 10,
                 window: str = "none", tukey_alpha: float = 0.5,
                 output_complex: bool = False,
                 noise_covariance: Optional[ArrayLike] = None,
                 sensitivities: Optional[ArrayLike] = None) -> None:
        super().__init__()
        _lib.require(*_MR_PLAN_API)
        if not isinstance(ctx, Context):
            raise TypeError("ctx: a Context is expected")
        if not isinstance(geometry, MRGeometry):
            raise TypeError("geometry: an MRGeometry is expected")
        L = _lib.lib()
        opts = _lib.MrOptions()
        L.clara_mr_options_init(ctypes.byref(opts))
        opts.norm = _mr_enum(norm, MR_NORMS, "norm")
        opts.combine = _mr_enum(combine, MR_COMBINES, "combine")
        opts.partial_fourier = _mr_enum(partial_fourier, MR_PARTIAL_FOURIER,
                                        "partial_fourier")
        opts.pocs_iterations = _c_int(pocs_iterations, "pocs_iterations")
        opts.window = _mr_enum(window, MR_WINDOWS, "window")
        opts.tukey_alpha = _real(tukey_alpha, "tukey_alpha")
        opts.output_complex = 1 if output_complex else 0
        # The arrays must stay alive until plan_create has copied them.
        cov = maps = None
        if noise_covariance is not None:
            cov = _as_complex64(noise_covariance, (2,), "noise_covariance")
            if geometry.coils > 0:
                _check_exact(cov, (geometry.coils, geometry.coils),
                             "noise_covariance")
            opts.noise_covariance = _cptr(cov)
        if sensitivities is not None:
            maps = _as_complex64(sensitivities, (3, 4), "sensitivities")
            if geometry._positive():
                shape = geometry.maps_shape
                if maps.ndim == 3 and shape[1] == 1:
                    _check_exact(maps, (shape[0],) + shape[2:],
                                 "sensitivities")
                    maps = maps.reshape(shape)
                else:
                    _check_exact(maps, shape, "sensitivities")
            opts.sensitivities = _cptr(maps)
        g = geometry._to_c()
        core = ctx._acquire()
        out = ctypes.c_void_p()
        try:
            core.call("clara_mr_plan_create", core.handle, ctypes.byref(g),
                      ctypes.byref(opts), ctypes.byref(out))
        except BaseException:
            core.release()
            raise
        self._core = core
        self._handle = out.value
        self.geometry = MRGeometry._from_c(g)
        self.output_complex = bool(output_complex)
        self._denoiser: Optional["Denoiser"] = None
        self.options = {
            "norm": norm, "combine": combine,
            "partial_fourier": partial_fourier,
            "pocs_iterations": int(pocs_iterations), "window": window,
            "tukey_alpha": float(tukey_alpha),
            "output_complex": bool(output_complex),
            "noise_covariance": noise_covariance is not None,
            "sensitivities": sensitivities is not None,
        }

    def execute(self, kspace: ArrayLike) -> np.ndarray:
        """Reconstructs ``kspace`` and returns the image.

        Args:
            kspace: complex ``[slices][coils][nz][ny][nx]``, or
                ``[coils][ny][nx]`` for one 2-D slice (``slices == nz ==
                1``). complex128 is rounded to complex64. Samples outside
                the geometry's sampled ranges are ignored.

        Returns:
            A new array ``[slices][nz][ny][out_nx]`` (``[ny][out_nx]`` for
            the 3-D form), float32 magnitudes or, with
            ``output_complex=True``, complex64.

        Raises:
            TypeError: real or non-numeric data. ValueError: wrong rank or
            shape. ClaraError: the library failed, e.g. ``ERR_CANCELLED``
            from the progress callback.
        """
        k = _as_complex64(kspace, (3, 5), "kspace")
        geom = self.geometry
        single = k.ndim == 3
        if single:
            if geom.slices != 1 or geom.nz != 1:
                raise ValueError(
                    f"kspace: shape {geom.kspace_shape} expected (the 3-D "
                    f"form [coils][ny][nx] is for slices == nz == 1), got "
                    f"{k.shape}")
            _check_exact(k, (geom.coils, geom.ny, geom.nx), "kspace")
            k = k.reshape(geom.kspace_shape)
        else:
            _check_exact(k, geom.kspace_shape, "kspace")
        h = self._live()
        if self.output_complex:
            image = np.empty(geom.image_shape, np.complex64)
        else:
            image = np.empty(geom.image_shape, np.float32)
        self._core.call("clara_mr_execute", h, _cptr(k),
                        image.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        return image[0, 0] if single else image

    __call__ = execute

    def execute_device(self, d_kspace: int, d_image: int) -> None:
        """Reconstructs on the GPU (``clara_mr_execute_device``):
        ``d_kspace`` and ``d_image`` are device addresses (e.g. CuPy's
        ``a.data.ptr``) of C-contiguous arrays of the plan's k-space
        (complex64) and image (float32, or complex64 with
        ``output_complex=True``) shapes, on the device of the plan's CUDA
        context. Nothing is checked on the Python side: the addresses must
        be valid. An attached denoiser runs on the device too.

        Raises:
            ClaraError: ``ERR_UNSUPPORTED`` on a CPU context or for options
                that run on the CPU (adaptive combination), ``ERR_DEVICE``.
        """
        h = self._live()
        self._core.call("clara_mr_execute_device", h,
                        ctypes.c_void_p(d_kspace), ctypes.c_void_p(d_image))

    def set_denoiser(self, denoiser: Optional["Denoiser"]) -> None:
        """Attaches a denoiser (``clara_mr_plan_set_denoiser``): from then
        on :meth:`execute` returns denoised magnitude images. ``None``
        detaches.

        The denoiser must be an MR model loaded on this plan's context, and
        the plan must output magnitudes (``output_complex=False``). The
        plan keeps a reference, so the denoiser may be closed after
        attaching. Not thread-safe against executions of this plan.

        Raises:
            TypeError: not a :class:`Denoiser` (or ``None``).
            ValueError: the plan or the denoiser is closed.
            ClaraError: ``ERR_INVALID_ARG`` with the reason: a CT model,
                another context, complex output, images smaller than the
                model's receptive field.
        """
        _attach(self, "clara_mr_plan_set_denoiser", denoiser)

    @property
    def denoiser(self) -> Optional["Denoiser"]:
        """The attached :class:`Denoiser`, or ``None``."""
        return self._denoiser

    def __repr__(self) -> str:
        state = "closed" if self.closed else (
            f"combine={self.options['combine']!r}, "
            f"norm={self.options['norm']!r}")
        if self._denoiser is not None and not self.closed:
            state += ", denoised"
        return f"MRPlan({self.geometry!r}, {state})"


def noise_covariance(noise: ArrayLike) -> np.ndarray:
    """The coils' noise covariance (``clara_mr_noise_covariance``).

    ``cov[i][j] = sum_k n_i[k] conj(n_j[k]) / (samples - 1)`` (no mean
    removed; accumulated in double, exactly Hermitian).

    Args:
        noise: complex ``[coils][samples]`` noise-only samples.

    Returns:
        complex64 ``[coils][coils]``, for :class:`MRPlan`'s
        ``noise_covariance``.

    Raises:
        TypeError: real data. ValueError: not 2-D. ClaraError: the library
        refused the sizes (e.g. fewer than 2 samples).
    """
    _lib.require("clara_mr_noise_covariance")
    n = _as_complex64(noise, (2,), "noise")
    coils, samples = n.shape
    out = np.zeros((coils, coils), np.complex64)
    _lib.call("clara_mr_noise_covariance", _cptr(n),
              _c_int(coils, "coils"), _c_int(samples, "samples"),
              out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
    return out


class MRFile(_Handle):
    """An MR raw-data file, ISMRMRD or fastMRI (``clara_mr_file``),
    detected from its content and read whole when opened (layouts and
    axis mapping: docs/MR_FORMATS.md).

    fastMRI stores k-space ``[slices][coils][x][y]`` (readout first); the
    reader transposes it to the library's ``[slices][coils][nz][ky][kx]``,
    and ``/reconstruction_rss`` to ``[slices][y][x]``.

    Args:
        path: the file.

    Attributes:
        format: ``"ismrmrd"`` or ``"fastmri"``.
        count: the number of k-space datasets (contrast x repetition x set;
            1 for fastMRI, 0 for a noise-only ISMRMRD file).

    Usable as a context manager; :meth:`close` is idempotent.

    Raises:
        ClaraError: ``ERR_IO`` (cannot open, not HDF5, truncated),
            ``ERR_FORMAT`` (neither layout, a missing or mistyped field;
            the message names it) or ``ERR_UNSUPPORTED`` (non-Cartesian).
    """

    _destroy = "clara_mr_file_close"

    def __init__(self, path: PathLike) -> None:
        super().__init__()
        _lib.require(*_MR_FILE_API)
        self.path = os.fspath(path)
        out = ctypes.c_void_p()
        _lib.call("clara_mr_file_open", _path(path), ctypes.byref(out))
        self._handle = out.value
        L = _lib.lib()
        fmt = L.clara_mr_file_format(self._handle)
        self.format: str = fmt.decode() if fmt else ""
        self.count: int = int(L.clara_mr_file_count(self._handle))

    def __len__(self) -> int:
        return self.count

    def geometry(self, index: int = 0) -> MRGeometry:
        """The geometry of dataset ``index`` (``0 <= index < count``)."""
        h = self._live()
        g = _lib.MrGeometry()
        _lib.call("clara_mr_file_geometry", h, _c_int(index, "index"),
                  ctypes.byref(g))
        return MRGeometry._from_c(g)

    def kspace(self, index: int = 0) -> np.ndarray:
        """Dataset ``index`` as a new complex64 array
        ``[slices][coils][nz][ny][nx]`` (unacquired samples 0)."""
        geom = self.geometry(index)
        h = self._live()
        out = np.zeros(geom.kspace_shape, np.complex64)
        _lib.call("clara_mr_file_kspace", h, _c_int(index, "index"),
                  out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        return out

    @property
    def noise(self) -> Optional[np.ndarray]:
        """The noise scans as a new complex64 array ``[coils][samples]``,
        or ``None`` when the file has none. A file of noise scans only has
        its noise too: the coil count comes with it."""
        h = self._live()
        coils = ctypes.c_int()
        samples = ctypes.c_int()
        ptr = ctypes.POINTER(ctypes.c_float)()
        _lib.call("clara_mr_file_noise", h, ctypes.byref(coils),
                  ctypes.byref(samples), ctypes.byref(ptr))
        if not ptr or samples.value <= 0:
            return None
        flat = _take(ptr, (coils.value * samples.value * 2,))
        return flat.view(np.complex64).reshape(coils.value, samples.value)

    @property
    def reference(self) -> Optional[np.ndarray]:
        """fastMRI's ``/reconstruction_rss`` as a new float32 array
        ``[slices][y][x]`` (x along the readout), or ``None``."""
        h = self._live()
        s, ny, nx = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        ptr = ctypes.POINTER(ctypes.c_float)()
        _lib.call("clara_mr_file_reference", h, ctypes.byref(s),
                  ctypes.byref(ny), ctypes.byref(nx), ctypes.byref(ptr))
        if not ptr:
            return None
        return _take(ptr, (s.value, ny.value, nx.value))

    def study(self, index: int = 0) -> Dict[str, Any]:
        """What the file's ISMRMRD XML header says about the patient, the
        study, the scanner and the sequence (``clara_mr_file_study``), with
        the fields of view of the encoding that dataset ``index`` comes
        from.

        Returns:
            A dict with the keys of ``struct clara_mr_study``
            (include/clara_recon.h): ``has_header`` (bool), strings
            (``patient_name``, ``study_instance_uid``, ``protocol_name``,
            ...; ``""`` when absent, dates and times as the file has them),
            numbers (``tr_ms``, ``te_ms``, ``field_strength_t``, ...; 0 when
            absent), and the tuples ``encoded_fov_mm``, ``encoded_matrix``,
            ``recon_fov_mm``, ``recon_matrix``.

        Raises:
            ClaraError: ``ERR_INVALID_ARG`` (index out of range).
        """
        _lib.require("clara_mr_file_study")
        h = self._live()
        st = _lib.MrStudy()
        _lib.call("clara_mr_file_study", h, _c_int(index, "index"),
                  ctypes.byref(st))
        out: Dict[str, Any] = {}
        for name, ctype in st._fields_:
            value = getattr(st, name)
            if isinstance(value, bytes):
                value = value.decode("utf-8", errors="replace")
            elif not isinstance(value, (int, float)):
                value = tuple(value)
            out[name] = value
        out["has_header"] = bool(out["has_header"])
        return out

    def __repr__(self) -> str:
        if self.closed:
            return f"MRFile({self.path!r}, closed)"
        return (f"MRFile({self.path!r}, format={self.format!r}, "
                f"count={self.count})")


def mr_recon(kspace: ArrayLike, combine: str = "rss", norm: str = "ortho",
             partial_fourier: str = "homodyne", *, recon_nx: int = 0,
             ky_range: Optional[Tuple[int, int]] = None,
             kx_range: Optional[Tuple[int, int]] = None,
             pocs_iterations: int = 10, window: str = "none",
             tukey_alpha: float = 0.5, output_complex: bool = False,
             noise_covariance: Optional[ArrayLike] = None,
             sensitivities: Optional[ArrayLike] = None,
             backend: str = "auto", threads: int = 0,
             progress: Optional[ProgressCallback] = None) -> np.ndarray:
    """Reconstructs k-space in one call (context, plan, execute).

    Args:
        kspace: complex ``[coils][ny][nx]`` (one 2-D slice) or
            ``[slices][coils][nz][ny][nx]``; DC at index ``n // 2``.
        combine, norm, partial_fourier, pocs_iterations, window,
            tukey_alpha, output_complex, noise_covariance, sensitivities:
            see :class:`MRPlan`.
        recon_nx: readout size after oversampling removal (0 = nx).
        ky_range, kx_range: the sampled ``(first, last)`` lines/samples,
            inclusive; default the whole axis.
        backend, threads, progress: see :class:`Context`.

    Returns:
        ``[ny][out_nx]`` for the 3-D form, else
        ``[slices][nz][ny][out_nx]``; float32 magnitude or complex64.
    """
    k = _as_complex64(kspace, (3, 5), "kspace")
    if k.ndim == 3:
        coils, ny, nx = k.shape
        nz = slices = 1
    else:
        slices, coils, nz, ny, nx = k.shape
    ky = (0, ny - 1) if ky_range is None else tuple(ky_range)
    kx = (0, nx - 1) if kx_range is None else tuple(kx_range)
    if len(ky) != 2 or len(kx) != 2:
        raise ValueError("ky_range, kx_range: (first, last) pairs expected")
    geom = MRGeometry(coils, nx, ny, nz, slices, recon_nx, ky[0], ky[1],
                      kx[0], kx[1])
    with Context(backend, threads, progress) as ctx, \
            MRPlan(ctx, geom, norm=norm, combine=combine,
                   partial_fourier=partial_fourier,
                   pocs_iterations=pocs_iterations, window=window,
                   tukey_alpha=tukey_alpha, output_complex=output_complex,
                   noise_covariance=noise_covariance,
                   sensitivities=sensitivities) as plan:
        return plan.execute(k)


# ---------------------------------------------------------------------------
# AI denoising
# ---------------------------------------------------------------------------

#: Modality names of :class:`DenoiserInfo` (``clara_modality``).
MODALITIES = ("ct", "mr")
#: ``precision`` names of :meth:`Denoiser.set_precision`
#: (index = ``clara_precision``).
PRECISIONS = ("fp32", "fp16")

_DENOISER_API = ("clara_denoiser_load", "clara_denoiser_load_shipped",
                 "clara_denoiser_get_info", "clara_denoiser_set_precision",
                 "clara_denoise", "clara_denoiser_destroy",
                 "clara_modality_name")

ModelLike = Union[str, "os.PathLike[str]", "os.PathLike[bytes]", bytes,
                  "Denoiser"]


@dataclass(frozen=True)
class DenoiserInfo:
    """What a loaded model is (``clara_denoiser_info``).

    Attributes:
        modality: ``"ct"`` (works in Hounsfield units) or ``"mr"``
            (magnitude images of any scale).
        architecture: the name the file gives, e.g. ``"dncnn"``.
        units: the units the model expects, e.g. ``"HU"``, or ``""``.
        layers: the number of 3x3 convolutions.
        max_channels: the widest layer.
        receptive_field: ``2 * layers + 1``: the smallest ``nx`` and ``ny``
            accepted.
        residual: True when the network predicts the noise (the output is
            the input less the prediction).
        parameters: weights and biases.
        flops_per_pixel: floating-point operations (2 per multiply-add) for
            one output pixel.
        training_data: the file's ``/provenance`` ``training_data``, or
            ``""``.
    """

    modality: str
    architecture: str
    units: str
    layers: int
    max_channels: int
    receptive_field: int
    residual: bool
    parameters: int
    flops_per_pixel: float
    training_data: str

    @classmethod
    def _from_c(cls, info: _lib.DenoiserInfo) -> "DenoiserInfo":
        name = _lib.lib().clara_modality_name(info.modality)

        def text(raw: bytes) -> str:
            return raw.decode("utf-8", "replace")

        return cls(
            modality=name.decode() if name else str(info.modality),
            architecture=text(info.architecture),
            units=text(info.units),
            layers=int(info.layers),
            max_channels=int(info.max_channels),
            receptive_field=int(info.receptive_field),
            residual=bool(info.residual),
            parameters=int(info.parameters),
            flops_per_pixel=float(info.flops_per_pixel),
            training_data=text(info.training_data),
        )


class Denoiser(_Handle):
    """A trained CNN that removes noise from 2-D slices (``clara_denoiser``):
    a chain of 3x3 convolutions with ReLUs, read from a model file
    (docs/FORMATS.md, "Denoiser model file") and prepared on a context's
    backend (Winograd convolutions on the CPU; the CUDA plugin on a GPU).

    Args:
        path: the model file.
        ctx: the :class:`Context` to run on; it must be the context of the
            plans the denoiser is attached to. ``None``: a private context
            made from ``backend`` and ``threads``.
        backend, threads: the private context's (see :class:`Context`);
            only without ``ctx``.

    :meth:`load` is the constructor by another name, and :meth:`shipped`
    loads the models that come with the library. :meth:`denoise` may run
    from several threads at once. Usable as a context manager;
    :meth:`close` is idempotent, and plans that the denoiser is attached to
    keep it alive on the C side.

    Attributes:
        path: the model file (for shipped models, ``None``).
        name: ``"ct"`` or ``"mr"`` for a shipped model, else ``None``.
        info: the model's :class:`DenoiserInfo`.
        precision: ``"fp32"`` or ``"fp16"`` (see :meth:`set_precision`).

    Raises:
        ClaraError: ``ERR_IO`` (the file is missing, unreadable, not HDF5,
            truncated; the message says ``cannot open`` for a missing one),
            ``ERR_FORMAT`` (a missing or malformed object, NaN weights),
            ``ERR_UNSUPPORTED`` (another format version).
        ValueError: ``backend`` or ``threads`` given together with ``ctx``.
        NotImplementedError: the loaded library has no denoiser.
    """

    _destroy = "clara_denoiser_destroy"

    def __init__(self, path: PathLike, ctx: Optional[Context] = None, *,
                 backend: str = "auto", threads: int = 0) -> None:
        super().__init__()
        self.path: Optional[str] = os.fsdecode(os.fspath(path))
        self.name: Optional[str] = None
        self._open("clara_denoiser_load", _path(path), ctx, backend, threads)

    @classmethod
    def load(cls, path: PathLike, ctx: Optional[Context] = None, *,
             backend: str = "auto", threads: int = 0) -> "Denoiser":
        """Loads the model file ``path`` (``clara_denoiser_load``); the
        arguments are the constructor's."""
        return cls(path, ctx, backend=backend, threads=threads)

    @classmethod
    def shipped(cls, name: str = "ct", ctx: Optional[Context] = None, *,
                backend: str = "auto", threads: int = 0) -> "Denoiser":
        """Loads a model shipped with the library
        (``clara_denoiser_load_shipped``): ``"ct"`` (ct-denoise.h5) or
        ``"mr"`` (mr-denoise.h5), from the directory in the environment
        variable ``CLARA_RECON_MODELS`` if it is set, else from the
        installed models directory. A failure's message names the path
        tried.

        Raises:
            ClaraError: ``ERR_INVALID_ARG`` for another name; otherwise as
                the constructor.
        """
        if not isinstance(name, str):
            raise TypeError(f"name: 'ct' or 'mr' (str) is expected, got "
                            f"{type(name).__name__}")
        self = cls.__new__(cls)
        _Handle.__init__(self)
        self.path = None
        self.name = name
        self._open("clara_denoiser_load_shipped", name.encode(), ctx,
                   backend, threads)
        return self

    def _open(self, function: str, arg: bytes, ctx: Optional[Context],
              backend: str, threads: int) -> None:
        _lib.require(*_DENOISER_API)
        own: Optional[Context] = None
        if ctx is None:
            own = Context(backend, threads)
            ctx = own
        elif not isinstance(ctx, Context):
            raise TypeError("ctx: a Context (or None) is expected")
        elif backend != "auto" or threads != 0:
            raise ValueError("backend and threads make a private context; "
                             "with ctx, give them to the Context instead")
        try:
            core = ctx._acquire()
            out = ctypes.c_void_p()
            try:
                core.call(function, core.handle, arg, ctypes.byref(out))
            except BaseException:
                core.release()
                raise
        finally:
            if own is not None:
                own.close()  # the denoiser holds its own reference
        self._core = core
        self._handle = out.value
        info = _lib.DenoiserInfo()
        _lib.call("clara_denoiser_get_info", self._handle, ctypes.byref(info))
        self.info: DenoiserInfo = DenoiserInfo._from_c(info)
        self.precision: str = "fp32"

    @property
    def backend(self) -> str:
        """The backend of the denoiser's context: ``"cpu"`` or
        ``"cuda"``."""
        self._live()
        core = self._core
        assert core is not None and core.handle is not None
        L = _lib.lib()
        return L.clara_backend_name(L.clara_context_backend(core.handle)
                                    ).decode()

    def set_precision(self, precision: str) -> None:
        """Selects the arithmetic (``clara_denoiser_set_precision``):
        ``"fp32"`` (the default) or ``"fp16"`` (half-precision storage,
        float accumulation; the CUDA backend only). Rebuilds the backend's
        state, so call it before use, never while another thread runs the
        denoiser. A refusal leaves the denoiser as it was.

        Raises:
            ValueError: an unknown name.
            ClaraError: ``ERR_UNSUPPORTED`` (``"fp16"`` on the CPU).
        """
        value = _mr_enum(precision, PRECISIONS, "precision")
        h = self._live()
        _lib.call("clara_denoiser_set_precision", h, value)
        self.precision = (PRECISIONS[value] if 0 <= value < len(PRECISIONS)
                          else str(value))

    def denoise(self, image: ArrayLike) -> np.ndarray:
        """Denoises one slice ``[ny][nx]`` or a stack ``[nslices][ny][nx]``
        (each slice on its own) and returns a new float32 array of the same
        shape. More leading axes are more slices (e.g. the
        ``[slices][nz][ny][nx]`` of :meth:`MRPlan.execute`).

        Any real dtype and memory order is accepted: the input is converted
        to a C-contiguous float32 array (copied only when it is not one
        already) and never modified.

        Raises:
            TypeError: complex or non-numeric data. ValueError: fewer than
            2 dimensions, or the denoiser is closed.
            ClaraError: ``ERR_INVALID_ARG`` for an empty image, ``nx`` or
            ``ny`` below the receptive field, or a NaN or infinite pixel
            (the message gives its index); ``ERR_CANCELLED`` from the
            context's progress callback.
        """
        a = np.asarray(image)
        x = _as_float32(a, (max(a.ndim, 2),), "image")
        ny, nx = x.shape[-2:]
        ns = int(np.prod(x.shape[:-2], dtype=np.int64))
        h = self._live()
        out = np.empty(x.shape, np.float32)
        core = self._core
        assert core is not None
        core.call("clara_denoise", h, _fptr(x), _fptr(out),
                  _c_int(nx, "nx"), _c_int(ny, "ny"), _c_int(ns, "nslices"))
        return out

    __call__ = denoise

    def denoise_device(self, d_in: int, d_out: int,
                       shape: Sequence[int]) -> None:
        """Denoises images already on the GPU (``clara_denoise_device``):
        ``d_in`` and ``d_out`` are device addresses (e.g. CuPy's
        ``a.data.ptr`` or PyTorch's ``t.data_ptr()``) of C-contiguous
        float32 ``shape`` arrays, ``(ny, nx)`` or ``(nslices, ny, nx)``, on
        the device of the denoiser's CUDA context; ``d_in == d_out``
        denoises in place. Nothing is checked on the Python side beyond
        the shape: the addresses must be valid.

        Raises:
            ClaraError: ``ERR_UNSUPPORTED`` on a CPU context,
                ``ERR_INVALID_ARG`` (sizes, a non-finite pixel),
                ``ERR_DEVICE``.
        """
        dims = tuple(_c_int(n, "shape") for n in shape)
        if len(dims) not in (2, 3):
            raise ValueError(f"shape: (ny, nx) or (nslices, ny, nx) "
                             f"expected, got {tuple(shape)}")
        ns, ny, nx = dims if len(dims) == 3 else (1,) + dims
        h = self._live()
        core = self._core
        assert core is not None
        core.call("clara_denoise_device", h, ctypes.c_void_p(d_in),
                  ctypes.c_void_p(d_out), nx, ny, ns)

    def __repr__(self) -> str:
        what = (f"shipped {self.name!r}" if self.name is not None
                else repr(self.path))
        if self.closed:
            return f"Denoiser({what}, closed)"
        i = self.info
        return (f"Denoiser({what}, modality={i.modality!r}, "
                f"layers={i.layers}, max_channels={i.max_channels}, "
                f"receptive_field={i.receptive_field}, "
                f"precision={self.precision!r})")


def _attach(plan: Any, function: str, denoiser: Optional[Denoiser]) -> None:
    """plan.set_denoiser: checks, calls, keeps a Python reference."""
    _lib.require(function)
    if denoiser is not None and not isinstance(denoiser, Denoiser):
        raise TypeError("denoiser: a Denoiser (or None) is expected, got "
                        f"{type(denoiser).__name__}")
    h = plan._live()
    dh = denoiser._live() if denoiser is not None else None
    _lib.call(function, h, dh)
    # The C plan holds its own reference; this one keeps the Python object
    # (and what it says) around for as long as the plan uses it.
    plan._denoiser = denoiser


def denoise(image: ArrayLike, model: ModelLike = "ct", *,
            backend: str = "auto", threads: int = 0,
            precision: str = "fp32",
            progress: Optional[ProgressCallback] = None) -> np.ndarray:
    """Denoises an image in one call (context, model, denoise).

    Args:
        image: one slice ``[ny][nx]`` or a stack ``[nslices][ny][nx]``
            (or more leading axes, all slices), any real dtype and memory
            order. A CT model wants Hounsfield
            units (e.g. :class:`FBPPlan` with ``hu=True``); an MR model
            magnitude images of any scale.
        model: ``"ct"`` or ``"mr"`` (the shipped models, see
            :meth:`Denoiser.shipped`), the path of a model file (a
            ``str`` other than those two, ``bytes`` or an
            ``os.PathLike``; ``"./ct"`` for a file named ``ct``), or a
            loaded :class:`Denoiser` (then ``backend``, ``threads``,
            ``precision`` and ``progress`` must keep their defaults).
        backend, threads, progress: see :class:`Context`.
        precision: see :meth:`Denoiser.set_precision`.

    Returns:
        A new float32 array of the image's shape.

    Raises:
        As :class:`Denoiser` and :meth:`Denoiser.denoise`.
    """
    if isinstance(model, Denoiser):
        if (backend, threads, precision, progress) != ("auto", 0, "fp32",
                                                       None):
            raise ValueError("backend, threads, precision and progress "
                             "belong to a Denoiser already loaded: set "
                             "them on it (and its Context)")
        return model.denoise(image)
    with Context(backend, threads, progress) as ctx:
        if isinstance(model, str) and model in MODALITIES:
            d = Denoiser.shipped(model, ctx)
        else:
            d = Denoiser(model, ctx)
        with d:
            if precision != "fp32":
                d.set_precision(precision)
            return d.denoise(image)


def dicom_ready(image: ArrayLike,
                modality: str = "CT") -> Tuple[np.ndarray, Dict[str, Any]]:
    """Converts an image to DICOM stored values (``clara_dicom_ready_ct`` /
    ``clara_dicom_ready_scaled``).

    Args:
        image: float array of any shape; HU for ``modality="CT"``, any real
            quantity (e.g. MR magnitude) for ``"MR"``.
        modality: ``"CT"`` (RescaleIntercept -1024, slope 1, soft-tissue
            window) or ``"MR"`` (slope so that the maximum is 32000, window
            from the 1st-99th percentiles).

    Returns:
        ``(stored, scaling)``: an int16 array of the image's shape, and a
        dict with ``slope``, ``intercept``, ``window_center``,
        ``window_width``, ``clipped_low``, ``clipped_high``, ``min``, ``max``
        for the DICOM header (RescaleSlope, RescaleIntercept, WindowCenter,
        WindowWidth).

    Raises:
        ValueError: an unknown modality or an empty image.
        TypeError: complex or non-numeric data.
        ClaraError: NaN (or, for MR, infinity) in the image.
    """
    _lib.require("clara_dicom_ready_ct", "clara_dicom_ready_scaled")
    arr = np.asarray(image)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"image: real numbers are expected, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError("image: is empty")
    if modality not in ("CT", "MR"):
        raise ValueError(f"modality: 'CT' or 'MR' is expected, got {modality!r}")
    src = np.ascontiguousarray(arr, dtype=np.float32)
    stored = np.empty(src.shape, dtype=np.int16)
    sc = _lib.DicomScaling()
    fn = "clara_dicom_ready_ct" if modality == "CT" else "clara_dicom_ready_scaled"
    _lib.call(fn, src.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
              ctypes.c_size_t(src.size),
              stored.ctypes.data_as(ctypes.POINTER(ctypes.c_int16)),
              ctypes.byref(sc))
    return stored, {name: getattr(sc, name) for name, _ in sc._fields_}


def dicom_plane_of(volume: Volume, slice: int = 0) -> Dict[str, Any]:
    """Where slice ``slice`` of ``volume`` lies, in the terms of the DICOM
    Image Plane module (``clara_dicom_plane_of``): the volume's axes taken
    as the patient's (LPS), rows along +x and columns along +y.

    Returns:
        A dict with ``pixel_spacing`` (``(row spacing vy, column spacing
        vx)``, PixelSpacing), ``slice_thickness`` (vz), ``orientation``
        (ImageOrientationPatient, 6 values), ``position``
        (ImagePositionPatient of the first pixel, mm) and
        ``slice_location`` (mm).

    Raises:
        ClaraError: ``ERR_INVALID_ARG`` (sizes, voxel sizes, a centre that
            is not finite, a slice out of range).
    """
    _lib.require("clara_dicom_plane_of")
    if not isinstance(volume, Volume):
        raise TypeError(f"volume: a Volume is expected, got "
                        f"{type(volume).__name__}")
    v = volume._to_c()
    out = _lib.DicomPlane()
    _lib.call("clara_dicom_plane_of", ctypes.byref(v), _c_int(slice, "slice"),
              ctypes.byref(out))
    return {
        "pixel_spacing": tuple(out.pixel_spacing),
        "slice_thickness": out.slice_thickness,
        "orientation": tuple(out.orientation),
        "position": tuple(out.position),
        "slice_location": out.slice_location,
    }
