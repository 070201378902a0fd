"""Loading of libclara-recon and the ctypes declarations of its C API.

This module mirrors ``include/clara_recon.h``: the structures, the enums and
one prototype (``argtypes`` and ``restype``) for every exported function. It
has no dependency on numpy so that the library can be located and loaded on
its own; the public, numpy-based API lives in :mod:`clara_recon`.

Library discovery, in order:

1. the environment variable ``CLARA_RECON_LIB``: the path of the shared
   library (e.g. ``/usr/local/lib/libclara-recon.so.0``). When it is set it is
   the only candidate, so that a wrong path is reported instead of silently
   loading another copy;
2. ``ctypes.util.find_library("clara-recon")`` (the linker cache);
3. ``libclara-recon.so.0`` through the dynamic loader's search path
   (``LD_LIBRARY_PATH``, the cache, ``/lib``, ``/usr/lib``), then in
   ``/usr/local/lib`` and ``<sys.prefix>/lib``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from typing import Dict, List, Optional

__all__ = [
    "ClaraError",
    "LibraryNotFoundError",
    "lib",
    "load",
    "library_path",
    "check",
    "call",
    "has",
    "require",
]

_ENV = "CLARA_RECON_LIB"
_SONAME = "libclara-recon.so.0"
# The library major.minor these declarations were written against
# (CLARA_RECON_VERSION_NUMBER = major*10000 + minor*100 + patch).
_ABI_MAJOR = 0
_ABI_MINOR = 1


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class LibraryNotFoundError(ImportError):
    """libclara-recon could not be found or loaded.

    Raised when ``import clara_recon`` cannot load the shared library. The
    message lists what was tried; set ``CLARA_RECON_LIB`` to the library's
    path or install the library where the dynamic loader finds it.
    """


class ClaraError(RuntimeError):
    """A libclara-recon function returned a status other than ``CLARA_OK``.

    Attributes:
        status: the numeric status (negative), e.g. ``-1``.
        name: the status name without prefix, e.g. ``"ERR_INVALID_ARG"``
            (from ``clara_status_name``).
        message: the library's message for the failure (from
            ``clara_last_error`` on the failing thread), e.g.
            ``"clara_fbp_plan_create: geometry->views: must be > 0, got 0"``.
        function: the C function that failed, e.g.
            ``"clara_fbp_plan_create"`` (``None`` if unknown).

    ``str(error)`` is ``"<name>: <message>"``.
    """

    def __init__(
        self, status: int, name: str, message: str, function: Optional[str] = None
    ) -> None:
        super().__init__(status, name, message)
        self.status = int(status)
        self.name = str(name)
        self.message = str(message)
        self.function = function

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"ClaraError(status={self.status}, name={self.name!r}, "
            f"message={self.message!r})"
        )

    def __reduce__(self):  # keep pickling (multiprocessing) working
        return (type(self), (self.status, self.name, self.message, self.function))


# ---------------------------------------------------------------------------
# Structures (layout identical to clara_recon.h; C enums are int)
# ---------------------------------------------------------------------------

# int (*clara_progress_fn)(const char *stage, double fraction, void *user)
ProgressFn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_double,
                              ctypes.c_void_p)


class ContextOptions(ctypes.Structure):
    """struct clara_context_options."""

    _fields_ = [
        ("backend", ctypes.c_int),
        ("threads", ctypes.c_int),
        ("progress", ProgressFn),
        ("progress_user", ctypes.c_void_p),
        ("device", ctypes.c_int),
        ("device_memory_limit", ctypes.c_size_t),
    ]


class CtGeometry(ctypes.Structure):
    """struct clara_ct_geometry."""

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


class CVolume(ctypes.Structure):
    """struct clara_volume."""

    _fields_ = [
        ("nx", ctypes.c_int),
        ("ny", ctypes.c_int),
        ("nz", ctypes.c_int),
        ("voxel", ctypes.c_double * 3),
        ("center", ctypes.c_double * 3),
    ]


class FbpOptions(ctypes.Structure):
    """struct clara_fbp_options."""

    _fields_ = [
        ("filter", ctypes.c_int),
        ("cutoff", ctypes.c_double),
        ("flags", ctypes.c_uint),
        ("mu_water", ctypes.c_double),
    ]


class FbpInfo(ctypes.Structure):
    """struct clara_fbp_info."""

    _fields_ = [
        ("fft_length", ctypes.c_int),
        ("scan_range", ctypes.c_double),
        ("short_scan", ctypes.c_int),
        ("offset_weighting", ctypes.c_int),
        ("fov_radius", ctypes.c_double),
        ("fan_half_angle", ctypes.c_double),
    ]


class FbpTiming(ctypes.Structure):
    """struct clara_fbp_timing."""

    _fields_ = [
        ("total_ms", ctypes.c_double),
        ("upload_ms", ctypes.c_double),
        ("filter_ms", ctypes.c_double),
        ("backproject_ms", ctypes.c_double),
        ("download_ms", ctypes.c_double),
        ("slabs", ctypes.c_int),
    ]


class Ellipsoid(ctypes.Structure):
    """struct clara_ellipsoid."""

    _fields_ = [
        ("density", ctypes.c_double),
        ("a", ctypes.c_double),
        ("b", ctypes.c_double),
        ("c", ctypes.c_double),
        ("x0", ctypes.c_double),
        ("y0", ctypes.c_double),
        ("z0", ctypes.c_double),
        ("phi", ctypes.c_double),
    ]


class MrGeometry(ctypes.Structure):
    """struct clara_mr_geometry."""

    _fields_ = [
        ("coils", ctypes.c_int),
        ("nx", ctypes.c_int),
        ("ny", ctypes.c_int),
        ("nz", ctypes.c_int),
        ("slices", ctypes.c_int),
        ("recon_nx", ctypes.c_int),
        ("ky_first", ctypes.c_int),
        ("ky_last", ctypes.c_int),
        ("kx_first", ctypes.c_int),
        ("kx_last", ctypes.c_int),
    ]


class MrOptions(ctypes.Structure):
    """struct clara_mr_options (the two arrays are complex, interleaved
    float32 pairs)."""

    _fields_ = [
        ("norm", ctypes.c_int),
        ("combine", ctypes.c_int),
        ("partial_fourier", ctypes.c_int),
        ("pocs_iterations", ctypes.c_int),
        ("window", ctypes.c_int),
        ("tukey_alpha", ctypes.c_double),
        ("output_complex", ctypes.c_int),
        ("noise_covariance", ctypes.POINTER(ctypes.c_float)),
        ("sensitivities", ctypes.POINTER(ctypes.c_float)),
    ]


# Flags of clara_fbp_options.flags
FBP_ALLOW_TRUNCATION = 1 << 0
FBP_NO_FOV_MASK = 1 << 1
FBP_NO_OFFSET_WEIGHTS = 1 << 2

# Opaque handles are kept as void pointers.
_h = ctypes.c_void_p
_ph = ctypes.POINTER(ctypes.c_void_p)
_st = ctypes.c_int  # clara_status
_pf = ctypes.POINTER(ctypes.c_float)
_ppf = ctypes.POINTER(_pf)
_i = ctypes.c_int
_d = ctypes.c_double
_s = ctypes.c_char_p

# name -> (restype, argtypes)
class DicomScaling(ctypes.Structure):
    """struct clara_dicom_scaling."""

    _fields_ = [
        ("slope", ctypes.c_double),
        ("intercept", ctypes.c_double),
        ("window_center", ctypes.c_double),
        ("window_width", ctypes.c_double),
        ("clipped_low", ctypes.c_longlong),
        ("clipped_high", ctypes.c_longlong),
        ("min", ctypes.c_float),
        ("max", ctypes.c_float),
    ]


class DicomPlane(ctypes.Structure):
    """struct clara_dicom_plane."""

    _fields_ = [
        ("pixel_spacing", ctypes.c_double * 2),
        ("slice_thickness", ctypes.c_double),
        ("orientation", ctypes.c_double * 6),
        ("position", ctypes.c_double * 3),
        ("slice_location", ctypes.c_double),
    ]


class MrStudy(ctypes.Structure):
    """struct clara_mr_study."""

    _fields_ = [
        ("has_header", ctypes.c_int),
        ("patient_name", ctypes.c_char * 256),
        ("patient_id", ctypes.c_char * 128),
        ("patient_birth_date", ctypes.c_char * 32),
        ("patient_sex", ctypes.c_char * 8),
        ("patient_weight_kg", ctypes.c_double),
        ("study_date", ctypes.c_char * 32),
        ("study_time", ctypes.c_char * 32),
        ("study_id", ctypes.c_char * 128),
        ("study_instance_uid", ctypes.c_char * 128),
        ("accession_number", ctypes.c_char * 32),
        ("referring_physician", ctypes.c_char * 256),
        ("study_description", ctypes.c_char * 256),
        ("body_part", ctypes.c_char * 64),
        ("series_date", ctypes.c_char * 32),
        ("series_time", ctypes.c_char * 32),
        ("patient_position", ctypes.c_char * 16),
        ("protocol_name", ctypes.c_char * 256),
        ("sequence_name", ctypes.c_char * 128),
        ("series_description", ctypes.c_char * 256),
        ("frame_of_reference_uid", ctypes.c_char * 128),
        ("manufacturer", ctypes.c_char * 128),
        ("manufacturer_model", ctypes.c_char * 128),
        ("institution_name", ctypes.c_char * 256),
        ("station_name", ctypes.c_char * 128),
        ("field_strength_t", ctypes.c_double),
        ("tr_ms", ctypes.c_double),
        ("te_ms", ctypes.c_double),
        ("ti_ms", ctypes.c_double),
        ("flip_angle_deg", ctypes.c_double),
        ("sequence_type", ctypes.c_char * 64),
        ("encoded_fov_mm", ctypes.c_double * 3),
        ("encoded_matrix", ctypes.c_int * 3),
        ("recon_fov_mm", ctypes.c_double * 3),
        ("recon_matrix", ctypes.c_int * 3),
        ("echo_train_length", ctypes.c_int),
    ]


class DenoiserInfo(ctypes.Structure):
    """struct clara_denoiser_info."""

    _fields_ = [
        ("modality", ctypes.c_int),
        ("architecture", ctypes.c_char * 32),
        ("units", ctypes.c_char * 16),
        ("layers", ctypes.c_int),
        ("max_channels", ctypes.c_int),
        ("receptive_field", ctypes.c_int),
        ("residual", ctypes.c_int),
        ("parameters", ctypes.c_longlong),
        ("flops_per_pixel", ctypes.c_double),
        ("training_data", ctypes.c_char * 256),
    ]


# clara_modality and clara_precision
MODALITY_CT = 1
MODALITY_MR = 2
PRECISION_FP32 = 0
PRECISION_FP16 = 1


_PROTOTYPES: Dict[str, tuple] = {
    # version
    "clara_version": (_s, []),
    "clara_version_number": (_i, []),
    # errors
    "clara_status_name": (_s, [_i]),
    "clara_status_string": (_s, [_i]),
    "clara_last_error": (_s, []),
    "clara_clear_error": (None, []),
    "clara_free": (None, [ctypes.c_void_p]),
    # context
    "clara_context_options_init": (None, [ctypes.POINTER(ContextOptions)]),
    "clara_context_create": (_st, [ctypes.POINTER(ContextOptions), _ph]),
    "clara_context_destroy": (None, [_h]),
    "clara_context_backend": (_i, [_h]),
    "clara_context_threads": (_i, [_h]),
    "clara_backend_name": (_s, [_i]),
    "clara_backend_parse": (_st, [_s, ctypes.POINTER(_i)]),
    # geometry
    "clara_geometry_name": (_s, [_i]),
    "clara_geometry_parse": (_st, [_s, ctypes.POINTER(_i)]),
    "clara_geometry_check": (_st, [ctypes.POINTER(CtGeometry)]),
    # FBP
    "clara_filter_name": (_s, [_i]),
    "clara_filter_parse": (_st, [_s, ctypes.POINTER(_i)]),
    "clara_fbp_options_init": (None, [ctypes.POINTER(FbpOptions)]),
    "clara_fbp_plan_create": (
        _st,
        [_h, ctypes.POINTER(CtGeometry), ctypes.POINTER(CVolume),
         ctypes.POINTER(FbpOptions), _ph],
    ),
    "clara_fbp_execute": (_st, [_h, _pf, _pf]),
    "clara_fbp_execute_timed": (_st, [_h, _pf, _pf,
                                      ctypes.POINTER(FbpTiming)]),
    "clara_fbp_execute_device": (_st, [_h, ctypes.c_void_p, ctypes.c_void_p]),
    "clara_fbp_plan_destroy": (None, [_h]),
    "clara_fbp_plan_info": (_st, [_h, ctypes.POINTER(FbpInfo)]),
    "clara_fbp_plan_filter": (_st, [_h, _pf, _i]),
    "clara_fbp_plan_weight": (_st, [_h, _i, _i, _pf]),
    # projector
    "clara_projector_create": (
        _st, [_h, ctypes.POINTER(CtGeometry), ctypes.POINTER(CVolume), _ph]
    ),
    "clara_project": (_st, [_h, _pf, _pf]),
    "clara_backproject": (_st, [_h, _pf, _pf]),
    "clara_projector_destroy": (None, [_h]),
    # phantoms
    "clara_phantom_shepp_logan": (_st, [_i, _d, _d, _ph]),
    "clara_phantom_create": (_st, [_i, ctypes.POINTER(Ellipsoid), _i, _ph]),
    "clara_phantom_destroy": (None, [_h]),
    "clara_phantom_rasterize": (_st, [_h, ctypes.POINTER(CVolume), _i, _pf]),
    "clara_phantom_project": (_st, [_h, ctypes.POINTER(CtGeometry), _pf]),
    # files
    "clara_ct_file_read": (_st, [_s, ctypes.POINTER(CtGeometry), _ppf, _ppf]),
    "clara_ct_file_write": (
        _st,
        [_s, ctypes.POINTER(CtGeometry), _pf, ctypes.POINTER(CVolume), _pf],
    ),
    "clara_image_file_write": (_st, [_s, ctypes.POINTER(CVolume), _pf, _s]),
    "clara_image_file_read": (
        _st,
        [_s, _s, ctypes.POINTER(CVolume), _ppf, ctypes.c_char_p, ctypes.c_size_t],
    ),
}

# Declared when the library exports them, and not required: an older 0.1
# library without the MRI part or the denoiser still loads for CT work (the
# MRI and denoiser classes then report what is missing, see require()), and
# functions that are being added (writers, phantoms) are picked up as soon
# as the library has them.
_OPTIONAL_PROTOTYPES: Dict[str, tuple] = {
    # MRI
    "clara_mr_options_init": (None, [ctypes.POINTER(MrOptions)]),
    "clara_mr_plan_create": (
        _st,
        [_h, ctypes.POINTER(MrGeometry), ctypes.POINTER(MrOptions), _ph],
    ),
    "clara_mr_execute": (_st, [_h, _pf, _pf]),
    "clara_mr_execute_device": (_st, [_h, ctypes.c_void_p, ctypes.c_void_p]),
    "clara_mr_plan_destroy": (None, [_h]),
    "clara_mr_noise_covariance": (_st, [_pf, _i, _i, _pf]),
    "clara_mr_phantom_kspace": (
        _st, [ctypes.POINTER(MrGeometry), _d, _i, _pf, _pf]),
    "clara_mr_file_write_ismrmrd": (
        _st, [_s, ctypes.POINTER(MrGeometry), _pf, _pf, _i]),
    # MR raw-data files
    "clara_mr_file_open": (_st, [_s, _ph]),
    "clara_mr_file_close": (None, [_h]),
    "clara_mr_file_format": (_s, [_h]),
    "clara_mr_file_count": (_i, [_h]),
    "clara_mr_file_geometry": (_st, [_h, _i, ctypes.POINTER(MrGeometry)]),
    "clara_mr_file_kspace": (_st, [_h, _i, _pf]),
    "clara_mr_file_noise": (_st, [_h, ctypes.POINTER(_i), ctypes.POINTER(_i),
                                  _ppf]),
    "clara_mr_file_reference": (
        _st,
        [_h, ctypes.POINTER(_i), ctypes.POINTER(_i), ctypes.POINTER(_i), _ppf],
    ),
    "clara_mr_file_study": (_st, [_h, _i, ctypes.POINTER(MrStudy)]),
    # DICOM-ready output
    "clara_dicom_plane_of": (
        _st, [ctypes.POINTER(CVolume), _i, ctypes.POINTER(DicomPlane)]),
    "clara_dicom_ready_ct": (
        _st, [_pf, ctypes.c_size_t, ctypes.POINTER(ctypes.c_int16),
              ctypes.POINTER(DicomScaling)]),
    "clara_dicom_ready_scaled": (
        _st, [_pf, ctypes.c_size_t, ctypes.POINTER(ctypes.c_int16),
              ctypes.POINTER(DicomScaling)]),
    # AI denoising
    "clara_modality_name": (_s, [_i]),
    "clara_denoiser_load": (_st, [_h, _s, _ph]),
    "clara_denoiser_load_shipped": (_st, [_h, _s, _ph]),
    "clara_denoiser_get_info": (_st, [_h, ctypes.POINTER(DenoiserInfo)]),
    "clara_denoiser_set_precision": (_st, [_h, _i]),
    "clara_denoise": (_st, [_h, _pf, _pf, _i, _i, _i]),
    # device pointers (CUDA) travel as plain addresses
    "clara_denoise_device": (
        _st, [_h, ctypes.c_void_p, ctypes.c_void_p, _i, _i, _i]),
    "clara_denoiser_destroy": (None, [_h]),
    "clara_fbp_plan_set_denoiser": (_st, [_h, _h]),
    "clara_mr_plan_set_denoiser": (_st, [_h, _h]),
}


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_path: Optional[str] = None


def _candidates() -> List[str]:
    names: List[str] = []
    found = ctypes.util.find_library("clara-recon")
    if found:
        names.append(found)
    names.append(_SONAME)
    for d in ("/usr/local/lib", "/usr/local/lib64",
              os.path.join(sys.prefix, "lib")):
        names.append(os.path.join(d, _SONAME))
    seen = set()
    return [n for n in names if not (n in seen or seen.add(n))]


def _declare(cdll: ctypes.CDLL, where: str) -> None:
    missing = []
    for name, (restype, argtypes) in _PROTOTYPES.items():
        try:
            fn = getattr(cdll, name)
        except AttributeError:
            missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    for name, (restype, argtypes) in _OPTIONAL_PROTOTYPES.items():
        if hasattr(cdll, name):
            fn = getattr(cdll, name)
            fn.restype = restype
            fn.argtypes = argtypes
    if missing:
        raise LibraryNotFoundError(
            f"{where} is not a usable libclara-recon: missing symbol(s) "
            f"{', '.join(missing)}. Set {_ENV} to the path of a matching "
            f"libclara-recon.so (version {_ABI_MAJOR}.{_ABI_MINOR}.x)."
        )
    number = cdll.clara_version_number()
    major, minor = number // 10000, (number // 100) % 100
    if major != _ABI_MAJOR or (major == 0 and minor != _ABI_MINOR):
        raise LibraryNotFoundError(
            f"{where} is libclara-recon {cdll.clara_version().decode()}, but "
            f"these bindings need {_ABI_MAJOR}.{_ABI_MINOR}.x. Set {_ENV} to "
            f"the path of a matching library."
        )


def load() -> ctypes.CDLL:
    """Loads libclara-recon (once) and returns the declared ``ctypes.CDLL``.

    Raises:
        LibraryNotFoundError: the library cannot be found or loaded, or it is
            not a compatible libclara-recon.
    """
    global _lib, _path
    with _lock:
        if _lib is not None:
            return _lib
        env = os.environ.get(_ENV)
        tried: List[str] = []
        if env:
            try:
                cdll = ctypes.CDLL(env)
            except OSError as e:
                raise LibraryNotFoundError(
                    f"cannot load libclara-recon from {_ENV}={env!r}: {e}. "
                    f"Set {_ENV} to the absolute path of the built "
                    f"libclara-recon.so (e.g. <builddir>/src/.libs/"
                    f"libclara-recon.so), or unset it to use an installed "
                    f"library."
                ) from e
            _declare(cdll, f"{_ENV}={env!r}")
            _lib, _path = cdll, env
            return cdll
        for name in _candidates():
            try:
                cdll = ctypes.CDLL(name)
            except OSError as e:
                tried.append(f"{name} ({e})")
                continue
            _declare(cdll, name)
            _lib, _path = cdll, name
            return cdll
        raise LibraryNotFoundError(
            "libclara-recon not found. Install the library (make install, "
            "then ldconfig) or set the environment variable "
            f"{_ENV} to the path of libclara-recon.so. Tried: "
            + "; ".join(tried)
        )


def lib() -> ctypes.CDLL:
    """The loaded library (loading it on first use)."""
    return _lib if _lib is not None else load()


def has(function: str) -> bool:
    """True when the loaded library exports the (optional) 'function'."""
    return hasattr(lib(), function)


def require(*functions: str) -> None:
    """Raises NotImplementedError unless the loaded library exports every
    one of 'functions' (optional parts such as the MRI API)."""
    missing = [f for f in functions if not has(f)]
    if missing:
        raise NotImplementedError(
            f"the loaded libclara-recon ({_path}) does not export "
            f"{', '.join(missing)}: it predates this part of the API. Set "
            f"{_ENV} to a newer build of the library."
        )


def library_path() -> Optional[str]:
    """The name or path the library was loaded from, or None if not loaded."""
    return _path


def _text(p: Optional[bytes]) -> str:
    return p.decode("utf-8", "replace") if p else ""


def error(status: int, function: Optional[str]) -> ClaraError:
    """Builds the ClaraError for 'status' returned by 'function'.

    Must be called on the thread that made the failing call, before any
    other library call, since the message is per-thread.
    """
    L = lib()
    message = _text(L.clara_last_error())
    name = _text(L.clara_status_name(status))
    if not message:
        message = _text(L.clara_status_string(status))
        if function:
            message = f"{function}: {message}"
    return ClaraError(status, name, message, function)


def check(status: int, function: str) -> None:
    """Raises the ClaraError for 'status' unless it is CLARA_OK (0)."""
    if status != 0:
        raise error(status, function)


def call(function: str, *args) -> None:
    """Calls the status-returning C function 'function' with 'args'.

    The thread's message is emptied first, so that the message read after a
    failure is the one this call set (successful calls do not clear it).

    Raises:
        ClaraError: the call returned a status other than CLARA_OK.
    """
    L = lib()
    L.clara_clear_error()
    status = getattr(L, function)(*args)
    if status != 0:
        raise error(status, function)
