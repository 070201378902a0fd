#!/bin/sh
# test_dicom.sh -- the DICOM series of clara-recon checked by independent
# readers. tests/test_export --write-series writes a CT series, an MR series
# (derived, as a denoised one is) that continues the CT's study through a
# template, and an MR series of its own; then
#   dciodvfy (dicom3tools) must report no error on any file (its warnings
#            are printed),
#   dcmdump  (DCMTK) must parse every file,
#   pydicom  must read every series back: one study, UIDs, geometry, and,
#            with numpy, the rescaled pixels against the written floats.
# Then the series that the clara-recon tool writes (ct --dicom, mr --dicom)
# are read back with pydicom against the HDF5 images it wrote beside them.
# A check whose tool is missing is skipped (and said so); with none of the
# three, or a test_export built without DCMTK, the test is skipped (77).
set -u

top=${top_builddir:-.}
drv="$top/tests/test_export"
if [ ! -x "$drv" ]; then
  echo "FAIL: $drv not built" >&2
  exit 99
fi
py=${PYTHON:-python3}
[ "$py" = no ] && py=python3

tmp=$(mktemp -d "$top/tests/tmp-dicom-XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT INT TERM
status=0
fail() {
  echo "FAIL: $*" >&2
  status=1
}

"$drv" --write-series "$tmp/ct" ct --raw "$tmp/ct.f32"
rc=$?
if [ $rc -eq 77 ]; then
  echo "SKIP: test_export was built without DCMTK"
  exit 77
fi
[ $rc -eq 0 ] || { echo "FAIL: writing the CT series" >&2; exit 1; }
"$drv" --write-series "$tmp/mr" mr --raw "$tmp/mr.f32" \
  --template "$tmp/ct/CT00001.dcm" || { echo "FAIL: writing the MR series" >&2; exit 1; }
"$drv" --write-series "$tmp/mr2" mr --raw "$tmp/mr2.f32" ||
  { echo "FAIL: writing the second MR series" >&2; exit 1; }
files=$(ls "$tmp"/ct/*.dcm "$tmp"/mr/*.dcm "$tmp"/mr2/*.dcm)
nfiles=$(echo "$files" | wc -l)
[ "$nfiles" -eq 10 ] || fail "expected 10 files, got $nfiles"

checks=0
# ---- dciodvfy ----------------------------------------------------------------
if command -v dciodvfy >/dev/null 2>&1; then
  checks=$((checks + 1))
  shown=
  for f in $files; do
    out=$(dciodvfy "$f" 2>&1)
    errors=$(printf '%s\n' "$out" | grep -E '^Error' || true)
    series=$(basename "$(dirname "$f")")
    # the warnings of the first file of each series (the others repeat them)
    case " $shown " in
      *" $series "*) ;;
      *)
        shown="$shown $series"
        echo "dciodvfy $series/$(basename "$f"):"
        printf '%s\n' "$out" | grep -E '^(Warning|Error)' | sed 's/^/  /'
        ;;
    esac
    if [ -n "$errors" ]; then
      fail "dciodvfy reports errors on $f:"
      printf '%s\n' "$errors" >&2
    fi
  done
  echo "dciodvfy: $nfiles files checked"
else
  echo "SKIP: dciodvfy not found (dicom3tools): IOD checks skipped"
fi

# ---- dcmdump -------------------------------------------------------------------
if command -v dcmdump >/dev/null 2>&1; then
  checks=$((checks + 1))
  for f in $files; do
    if ! out=$(dcmdump -E "$f" 2>&1); then
      fail "dcmdump cannot read $f:"
      printf '%s\n' "$out" | head -20 >&2
      continue
    fi
    if printf '%s\n' "$out" | grep -E '^[EF]: ' >&2; then
      fail "dcmdump reports errors on $f"
    fi
    printf '%s\n' "$out" | grep -E '^W: ' | sed "s|^|dcmdump $f: |"
    printf '%s\n' "$out" | grep -q 'StudyInstanceUID' ||
      fail "dcmdump: no StudyInstanceUID in $f"
  done
  dcmdump -q +P SOPClassUID +P Modality +P ImageType +P PatientName \
    +P RescaleSlope +P WindowCenter +P WindowWidth "$tmp/mr/MR00001.dcm"
  echo "dcmdump: $nfiles files read"
else
  echo "SKIP: dcmdump not found (DCMTK tools): dump checks skipped"
fi

# ---- pydicom -------------------------------------------------------------------
if "$py" -c 'import pydicom' >/dev/null 2>&1; then
  checks=$((checks + 1))
  "$py" - "$tmp" <<'EOF' || fail "pydicom checks"
import math, os, struct, sys
import pydicom
try:
    import numpy as np
except ImportError:
    np = None

tmp = sys.argv[1]
CT, MR = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"

def series(name):
    d = os.path.join(tmp, name)
    ds = [pydicom.dcmread(os.path.join(d, f)) for f in sorted(os.listdir(d))]
    ds.sort(key=lambda x: int(x.InstanceNumber))
    return ds

def check(name, sop_class, modality):
    ds = series(name)
    assert [int(x.InstanceNumber) for x in ds] == list(range(1, len(ds) + 1))
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
                "Rows", "Columns", "RescaleSlope", "RescaleIntercept"):
        assert len({str(getattr(x, key)) for x in ds}) == 1, key
    assert len({x.SOPInstanceUID for x in ds}) == len(ds)
    for x in ds:
        assert x.SOPClassUID == sop_class and x.Modality == modality
        assert x.file_meta.MediaStorageSOPInstanceUID == x.SOPInstanceUID
        assert [float(v) for v in x.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    dz = float(ds[0].SpacingBetweenSlices)
    for a, b in zip(ds, ds[1:]):
        step = float(b.ImagePositionPatient[2]) - float(a.ImagePositionPatient[2])
        assert abs(step - dz) < 1e-6, (step, dz)
        assert abs(float(b.SliceLocation) - float(b.ImagePositionPatient[2])) < 1e-6
    slope, icpt = float(ds[0].RescaleSlope), float(ds[0].RescaleIntercept)
    if np is not None:
        vol = np.stack([x.pixel_array for x in ds]).astype(np.float64)
        assert vol.shape == (len(ds), int(ds[0].Rows), int(ds[0].Columns)), vol.shape
        raw = np.fromfile(os.path.join(tmp, name + ".f32"), dtype="<f4")
        raw = raw.reshape(vol.shape).astype(np.float64)
        err = np.abs(vol * slope + icpt - raw).max()
        assert err <= 0.5 * slope + 1e-6 * np.abs(raw).max(), (name, err, slope)
        detail = "pixels within %.3g of the floats" % err
    else:
        detail = "numpy missing: pixels not compared"
    print("pydicom %s: %d files, %s, slope %g, %s" % (
        name, len(ds), modality, slope, detail))
    return ds

ct = check("ct", CT, "CT")
mr = check("mr", MR, "MR")
mr2 = check("mr2", MR, "MR")
assert ct[0].RescaleType == "HU" and float(ct[0].RescaleIntercept) == -1024
assert mr[0].StudyInstanceUID == ct[0].StudyInstanceUID, "template: same study"
assert str(mr[0].PatientName) == str(ct[0].PatientName) == "Phantom^CT"
assert mr[0].SeriesInstanceUID != ct[0].SeriesInstanceUID
assert mr[0].FrameOfReferenceUID != ct[0].FrameOfReferenceUID
assert mr2[0].StudyInstanceUID != ct[0].StudyInstanceUID, "no template: new study"
assert list(mr[0].ImageType) == ["DERIVED", "SECONDARY", "OTHER"]
assert list(ct[0].ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
EOF
else
  echo "SKIP: pydicom not importable by $py: read-back checks skipped"
fi

# ---- the series of the clara-recon tool ---------------------------------------
# ct --dicom of a cone volume and mr --dicom: the rescaled pixels are the
# HDF5 image's, and the geometry is the image grid's (clara_volume).
tool="$top/src/tools/clara-recon"
if [ ! -x "$tool" ]; then
  echo "SKIP: clara-recon not built: its series are not read back"
elif ! "$py" -c 'import pydicom, numpy, h5py' >/dev/null 2>&1; then
  echo "SKIP: pydicom, numpy or h5py missing: clara-recon's series not read back"
else
  checks=$((checks + 1))
  if "$tool" phantom ct --geometry cone --size 16 --rows 16 --views 60 -q \
      -o "$tmp/cone.h5" &&
    "$tool" ct "$tmp/cone.h5" -o "$tmp/cone-hu.h5" --voxel 14 -q \
      --dicom "$tmp/cli-ct" &&
    "$tool" phantom mr --size 40 --coils 2 -q -o "$tmp/mr.h5" &&
    "$tool" mr "$tmp/mr.h5" -o "$tmp/mr-img.h5" -q --dicom "$tmp/cli-mr"; then
    "$py" - "$tmp" <<'EOF' || fail "pydicom checks of clara-recon's series"
import os, sys
import h5py
import numpy as np
import pydicom

tmp = sys.argv[1]
for name, h5, modality in (("cli-ct", "cone-hu.h5", "CT"),
                           ("cli-mr", "mr-img.h5", "MR")):
    d = os.path.join(tmp, name)
    ds = sorted((pydicom.dcmread(os.path.join(d, f)) for f in os.listdir(d)),
                key=lambda x: int(x.InstanceNumber))
    with h5py.File(os.path.join(tmp, h5), "r") as f:
        img = f["image"][...].astype(np.float64)
        vz, vy, vx = (float(v) for v in f["image"].attrs["voxel_size"])
        cz, cy, cx = (float(v) for v in f["image"].attrs["center"])
    nz, ny, nx = img.shape
    assert len(ds) == nz, (name, len(ds), nz)
    slope, icpt = float(ds[0].RescaleSlope), float(ds[0].RescaleIntercept)
    vol = np.stack([x.pixel_array for x in ds]).astype(np.float64) * slope + icpt
    err = np.abs(vol - img).max()
    assert err <= 0.5 * slope + 1e-6 * np.abs(img).max(), (name, err, slope)
    for k, x in enumerate(ds):
        assert x.Modality == modality
        assert (int(x.Rows), int(x.Columns)) == (ny, nx)
        assert np.allclose([float(v) for v in x.PixelSpacing], [vy, vx])
        want = [(0 - (nx - 1) / 2) * vx + cx, (0 - (ny - 1) / 2) * vy + cy,
                (k - (nz - 1) / 2) * vz + cz]
        got = [float(v) for v in x.ImagePositionPatient]
        assert np.allclose(got, want, atol=1e-4), (name, k, got, want)
    print("pydicom %s: %d files, %s, pixels within %.3g of the HDF5 image, "
          "grid as the image's" % (name, len(ds), modality, err))
EOF
  else
    fail "clara-recon could not write its series"
  fi
fi

if [ $checks -eq 0 ]; then
  echo "SKIP: none of dciodvfy, dcmdump and pydicom is available"
  exit 77
fi
exit $status
