/* dicom_export.h -- write a reconstructed volume as a DICOM series.
 *
 * Part of the clara-recon tool, not of the library: built only when
 * configure found DCMTK (HAVE_DCMTK in config.h, src/tools/tools.am). The
 * implementation, dicom_export.cc, is C++ over DCMTK's dcmdata; this
 * interface is plain C and prints nothing, exits never: every function
 * returns a clara_status and, on failure, a one-line message in 'err'
 * (truncated to errlen; err may be NULL when errlen is 0).
 *
 * One call writes one series: one single-frame file per slice of a CT
 * Image Storage (1.2.840.10008.5.1.4.1.1.2) or MR Image Storage
 * (1.2.840.10008.5.1.4.1.1.4) instance, Explicit VR Little Endian, with
 * the Patient, General Study, Patient Study, General Series, Frame of
 * Reference, General Equipment, General Image, Image Plane, Image Pixel,
 * CT Image or MR Image, VOI LUT and SOP Common modules. Values the caller
 * does not know are written empty where DICOM allows it (type 2), never
 * invented; see clara_dicom_series for the few type 1 defaults.
 *
 * Pixels: the whole volume goes through clara_dicom_ready_ct (CT, in HU:
 * slope 1, intercept -1024, RescaleType HU) or clara_dicom_ready_scaled
 * (MR: slope chosen so that nothing clips, intercept 0, RescaleType US),
 * so that every slice of a series shares one rescale and one window.
 * Stored values are int16 (BitsAllocated = BitsStored 16, HighBit 15,
 * PixelRepresentation 1, MONOCHROME2); Rows = ny, Columns = nx, and the
 * file of slice iz holds image[iz][iy][ix] with iy down the rows.
 * Geometry comes from clara_dicom_plane_of (ImagePositionPatient,
 * ImageOrientationPatient [1 0 0 0 1 0], PixelSpacing, SliceThickness,
 * SpacingBetweenSlices when nz > 1, SliceLocation).
 *
 * UIDs: every new UID is UUID-derived, "2.25." followed by the decimal
 * value of a fresh random (version 4) UUID, as DICOM PS3.5 B.2 allows
 * without any registered root. */
#ifndef CLARA_DICOM_EXPORT_H
#define CLARA_DICOM_EXPORT_H

#include "clara_recon.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The longest UID DICOM allows, plus the terminating zero. */
#define CLARA_DICOM_UID_SIZE 65

/* What the caller knows about the patient, study, series and acquisition.
 * Start from clara_dicom_series_init(), which zeroes everything and sets
 * the modality and the type 1 MR defaults; then fill what is known.
 *
 * Every string is UTF-8 (SpecificCharacterSet ISO_IR 192 is written when
 * one is not plain ASCII); NULL or "" means unknown and is written empty
 * (type 2) or left out (type 3). Strings are checked against their
 * DICOM value representation (length, no backslash or control characters;
 * code strings in upper case, digits, space and '_'), and a value that
 * does not fit is an error naming the field, never silently cut. Dates
 * are YYYYMMDD or YYYY-MM-DD (ISMRMRD's xs:date), times HHMMSS[.FFFFFF]
 * or HH:MM:SS[.FFFFFF] (xs:time); both are written in DICOM's form.
 * Numbers <= 0 (or not finite) mean unknown. */
typedef struct clara_dicom_series {
  clara_modality modality; /* CLARA_MODALITY_CT (image in HU) or _MR */

  /* An existing DICOM file (Part 10, with the "DICM" prefix) whose
   * Patient, Patient Study and General Study modules, StudyInstanceUID
   * included, are copied, so that the new series continues that study;
   * then the patient_* and study_* fields below are ignored. Its character
   * set is converted to UTF-8. NULL: none. */
  const char *template_path;

  /* Patient module (type 2) */
  const char *patient_name;       /* PN, e.g. "Doe^Jane" */
  const char *patient_id;         /* LO */
  const char *patient_birth_date; /* DA */
  const char *patient_sex;        /* "M", "F" or "O" */
  const char *patient_age;        /* AS, e.g. "042Y" (type 3) */
  double patient_weight_kg;       /* type 3 */

  /* General Study module */
  const char *study_instance_uid;  /* NULL: a new study */
  const char *study_date;          /* DA (type 2) */
  const char *study_time;          /* TM (type 2) */
  const char *study_id;            /* SH, 16 characters (type 2) */
  const char *accession_number;    /* SH (type 2) */
  const char *referring_physician; /* PN (type 2) */
  const char *study_description;   /* LO (type 3) */

  /* General Series module */
  int series_number;              /* IS (type 2); <= 0: empty */
  const char *series_description; /* LO (type 3) */
  const char *series_date;        /* DA (type 3) */
  const char *series_time;        /* TM (type 3) */
  const char *protocol_name;      /* LO (type 3) */
  const char *body_part;          /* CS, e.g. "HEAD" (type 3) */
  /* Laterality (type 2C): "R" or "L" for a paired body part. NULL: written
   * empty (unknown) when body_part is not given, left out (an unpaired
   * part) when it is. */
  const char *laterality;
  /* PatientPosition (type 2C for CT and MR), e.g. "HFS". Note that
   * clara_dicom_plane_of takes the volume's axes as the patient's (LPS),
   * which is what HFS gives on a scanner whose +z points to the head. */
  const char *patient_position;

  /* Frame of Reference: NULL, a new one. Pass one written before to put
   * several series (say, a plain and a denoised reconstruction of the
   * same scan) in one frame. */
  const char *frame_of_reference_uid;

  /* General Equipment module */
  const char *manufacturer;       /* LO (type 2) */
  const char *manufacturer_model; /* LO (type 3) */
  const char *institution_name;   /* LO (type 3) */
  const char *station_name;       /* SH (type 3) */
  /* SoftwareVersions is always "clara-recon <clara_version()>". */

  /* General Image: ImageType ORIGINAL\PRIMARY\AXIAL for CT, or when
   * 'derived' (e.g. denoised) DERIVED\SECONDARY\AXIAL with this
   * description (DerivationDescription, ST, type 3). MR images get OTHER
   * instead of AXIAL: value 3 is required for MR and AXIAL is not one of
   * its defined terms. */
  int derived;
  const char *derivation_description;

  /* CT Image module */
  double kvp;                     /* KVP (type 2) */
  const char *convolution_kernel; /* SH, e.g. the filter "HANN" (type 3) */

  /* MR Image module. Type 1 values have defaults, set by init:
   * ScanningSequence "RM" (research mode, the code for a sequence DICOM
   * does not name) and SequenceVariant "NONE"; give the real ones when
   * known (e.g. "GR", "SE", "IR", "EP", several separated by '\'). */
  const char *scanning_sequence;   /* CS, type 1 */
  const char *sequence_variant;    /* CS, type 1 */
  const char *scan_options;        /* CS (type 2) */
  const char *mr_acquisition_type; /* "2D" or "3D" (type 2) */
  double echo_time_ms;             /* EchoTime (type 2) */
  double repetition_time_ms;       /* RepetitionTime (type 2C: written) */
  double inversion_time_ms;        /* InversionTime (type 2C, with IR) */
  double flip_angle_deg;           /* FlipAngle (type 3) */
  int echo_train_length;           /* EchoTrainLength (type 2) */
  double magnetic_field_t;         /* MagneticFieldStrength (type 3) */
  const char *imaged_nucleus;      /* SH, e.g. "1H" (type 3) */

  /* VOI LUT: window_width > 0 replaces the default window (CT: 40/400
   * HU; MR: 1st-99th percentile), in rescaled units. DICOM needs a width
   * >= 1: a smaller explicit one is an error, and a smaller default (an MR
   * image whose values are all tiny) leaves the window out, which the
   * report says. */
  double window_center, window_width;
} clara_dicom_series;

/* What a written series got, for the caller to print or reuse. */
typedef struct clara_dicom_report {
  int files;               /* one per slice */
  double slope, intercept; /* RescaleSlope, RescaleIntercept */
  int window_written;      /* 0 when the window was left out */
  double window_center, window_width;
  long long clipped_low, clipped_high; /* CT voxels clamped to int16 */
  float min, max;                      /* the input's extremes */
  char study_instance_uid[CLARA_DICOM_UID_SIZE];
  char series_instance_uid[CLARA_DICOM_UID_SIZE];
  char frame_of_reference_uid[CLARA_DICOM_UID_SIZE];
} clara_dicom_report;

/* Zeroes *s and sets the modality and the MR type 1 defaults. */
void clara_dicom_series_init(clara_dicom_series *s, clara_modality modality);

/* Writes 'image' (vol->nz slices of vol->ny x vol->nx, C order
 * image[iz][iy][ix], in HU for CT) as a new directory 'dir' holding one
 * file per slice, CT00001.dcm or MR00001.dcm and so on in slice order
 * (InstanceNumber = iz + 1).
 *
 * All or nothing: the files go to a new hidden directory beside 'dir' (the
 * same parent, ".NAME.tmp-XXXXXX"), which is renamed to 'dir' once every
 * file is written and synced. 'dir' must not exist, or be an empty
 * directory (which is then replaced). An existing file or non-empty
 * directory, a missing or unwritable parent and any write failure are
 * errors, after which nothing new is left on disk.
 *
 * CT values outside the int16 range under slope 1, intercept -1024
 * ([-33792, 31743] HU) are clamped, not refused: the counts are in
 * report->clipped_low / clipped_high, for the caller to warn about. NaN or
 * infinite voxels are an error naming the first one. 'report' may be NULL.
 *
 * Errors: CLARA_ERR_INVALID_ARG (NULL, sizes, modality, a field that does
 * not fit its VR, non-finite voxels, Rows or Columns over 65535),
 * CLARA_ERR_IO ('dir' exists and is not empty, cannot create or write,
 * template unreadable), CLARA_ERR_FORMAT (the template is not DICOM or has
 * no StudyInstanceUID), CLARA_ERR_UNSUPPORTED (a template character set
 * that this DCMTK cannot convert), CLARA_ERR_OUT_OF_MEMORY. */
clara_status
clara_dicom_write_series(const char *dir, const clara_dicom_series *s,
                         const clara_volume *vol, const float *image,
                         clara_dicom_report *report, char *err, size_t errlen);

/* A new UUID-derived UID ("2.25." and up to 39 digits) in out[0..64].
 * Errors: CLARA_ERR_INVALID_ARG (out NULL), CLARA_ERR_IO (no randomness
 * from the system). */
clara_status clara_dicom_new_uid(char out[CLARA_DICOM_UID_SIZE], char *err,
                                 size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* CLARA_DICOM_EXPORT_H */
