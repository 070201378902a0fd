// dicom_export.cc -- a reconstructed volume as a DICOM series, over DCMTK.
//
// The C interface and the choices it makes are documented in
// dicom_export.h. This file is the only one that includes DCMTK; nothing
// here prints, exits or lets a C++ exception out.
#include "dicom_export.h"

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdatset.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcdict.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/oflog/oflog.h"

#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <new>
#include <string>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

namespace {

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

struct Err {
  char *buf;
  size_t len;
};

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
clara_status
fail(const Err &e, clara_status st, const char *fmt, ...) {
  if (e.buf && e.len > 0) {
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(e.buf, e.len, fmt, ap);
    va_end(ap);
  }
  return st;
}

// ---------------------------------------------------------------------------
// Values and their value representations
// ---------------------------------------------------------------------------

bool given(const char *s) { return s && *s; }
bool known(double v) { return std::isfinite(v) && v > 0; }

// Number of characters of well-formed UTF-8, or -1.
long utf8_chars(const char *s) {
  long n = 0;
  const unsigned char *p = reinterpret_cast<const unsigned char *>(s);
  while (*p) {
    int more;
    if (*p < 0x80)
      more = 0;
    else if ((*p & 0xE0) == 0xC0 && *p >= 0xC2)
      more = 1;
    else if ((*p & 0xF0) == 0xE0)
      more = 2;
    else if ((*p & 0xF8) == 0xF0 && *p <= 0xF4)
      more = 3;
    else
      return -1;
    p++;
    for (int i = 0; i < more; i++, p++)
      if ((*p & 0xC0) != 0x80)
        return -1;
    n++;
  }
  return n;
}

bool ascii(const char *s) {
  for (; *s; s++)
    if (static_cast<unsigned char>(*s) >= 0x80)
      return false;
  return true;
}

enum Vr { PN, LO, SH, ST, CS, CS_MULTI };

// Checks a caller's string against its VR. Sets *nonascii when it needs
// ISO_IR 192.
clara_status check_text(const Err &e, const char *field, const char *v, Vr vr,
                        bool *nonascii) {
  if (!given(v))
    return CLARA_OK;
  long chars = utf8_chars(v);
  if (chars < 0)
    return fail(e, CLARA_ERR_INVALID_ARG, "%s: not valid UTF-8: \"%s\"", field,
                v);
  for (const char *p = v; *p; p++) {
    unsigned char c = static_cast<unsigned char>(*p);
    if (c < 0x20 || c == 0x7F)
      return fail(e, CLARA_ERR_INVALID_ARG,
                  "%s: control character 0x%02x in \"%s\"", field, c, v);
    if (c == '\\' && vr != ST && vr != CS_MULTI)
      return fail(e, CLARA_ERR_INVALID_ARG,
                  "%s: a backslash separates DICOM values and may not appear "
                  "in \"%s\"",
                  field, v);
  }
  if (!ascii(v))
    *nonascii = true;
  switch (vr) {
  case PN: {
    // up to 64 characters per component group (alphabetic=ideographic=...)
    long group = 0;
    for (const char *p = v; *p; p++) {
      if (*p == '=') {
        group = 0;
        continue;
      }
      if ((static_cast<unsigned char>(*p) & 0xC0) != 0x80 && ++group > 64)
        return fail(e, CLARA_ERR_INVALID_ARG,
                    "%s: a person name has at most 64 characters per "
                    "component group, got \"%s\"",
                    field, v);
    }
    return CLARA_OK;
  }
  case LO:
  case SH: {
    long max = vr == LO ? 64 : 16;
    if (chars > max)
      return fail(e, CLARA_ERR_INVALID_ARG,
                  "%s: at most %ld characters (DICOM %s), got %ld: \"%s\"",
                  field, max, vr == LO ? "LO" : "SH", chars, v);
    return CLARA_OK;
  }
  case ST:
    if (chars > 1024)
      return fail(e, CLARA_ERR_INVALID_ARG,
                  "%s: at most 1024 characters (DICOM ST), got %ld", field,
                  chars);
    return CLARA_OK;
  case CS:
  case CS_MULTI: {
    int len = 0;
    for (const char *p = v;; p++) {
      if (*p == '\\' || *p == '\0') {
        if (len > 16)
          return fail(e, CLARA_ERR_INVALID_ARG,
                      "%s: a code string value has at most 16 characters, "
                      "got \"%s\"",
                      field, v);
        if (!*p)
          break;
        len = 0;
        continue;
      }
      char c = *p;
      if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ' ' ||
            c == '_'))
        return fail(e, CLARA_ERR_INVALID_ARG,
                    "%s: a code string has only upper-case letters, digits, "
                    "space and '_', got \"%s\"",
                    field, v);
      len++;
    }
    return CLARA_OK;
  }
  }
  return CLARA_OK;
}

bool digits(const char *s, int n) {
  for (int i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9')
      return false;
  return true;
}

// YYYYMMDD or YYYY-MM-DD -> YYYYMMDD; "" stays "".
clara_status norm_date(const Err &e, const char *field, const char *v,
                       std::string *out) {
  out->clear();
  if (!given(v))
    return CLARA_OK;
  char d[9];
  size_t n = std::strlen(v);
  if (n == 8 && digits(v, 8)) {
    std::memcpy(d, v, 8);
  } else if (n == 10 && digits(v, 4) && v[4] == '-' && digits(v + 5, 2) &&
             v[7] == '-' && digits(v + 8, 2)) {
    std::memcpy(d, v, 4);
    std::memcpy(d + 4, v + 5, 2);
    std::memcpy(d + 6, v + 8, 2);
  } else {
    return fail(e, CLARA_ERR_INVALID_ARG,
                "%s: expected a date YYYYMMDD or YYYY-MM-DD, got \"%s\"", field,
                v);
  }
  d[8] = '\0';
  int month = (d[4] - '0') * 10 + (d[5] - '0');
  int day = (d[6] - '0') * 10 + (d[7] - '0');
  if (month < 1 || month > 12 || day < 1 || day > 31)
    return fail(e, CLARA_ERR_INVALID_ARG,
                "%s: month or day out of range in \"%s\"", field, v);
  *out = d;
  return CLARA_OK;
}

// HHMMSS[.F{1,6}] or HH:MM:SS[.F{1,6}], optionally followed by a time zone
// (Z or +-HH:MM, as xs:time allows; DICOM's TM is the local time without
// one, so it is dropped) -> HHMMSS[.F]; "" stays "".
clara_status norm_time(const Err &e, const char *field, const char *v,
                       std::string *out) {
  out->clear();
  if (!given(v))
    return CLARA_OK;
  std::string t;
  const char *p = v;
  bool colons = std::strlen(v) >= 8 && v[2] == ':' && v[5] == ':';
  if (colons && digits(v, 2) && digits(v + 3, 2) && digits(v + 6, 2)) {
    t.assign(v, 2);
    t.append(v + 3, 2);
    t.append(v + 6, 2);
    p = v + 8;
  } else if (std::strlen(v) >= 6 && digits(v, 6)) {
    t.assign(v, 6);
    p = v + 6;
  } else {
    p = nullptr;
  }
  if (p && *p == '.') {
    int f = 0;
    t += '.';
    for (p++; *p >= '0' && *p <= '9'; p++, f++)
      t += *p;
    if (f < 1 || f > 6)
      p = nullptr;
  }
  if (p && *p) {
    if (std::strcmp(p, "Z") == 0 ||
        ((*p == '+' || *p == '-') && std::strlen(p) == 6 && digits(p + 1, 2) &&
         p[3] == ':' && digits(p + 4, 2)))
      p += std::strlen(p);
    else
      p = nullptr;
  }
  if (!p)
    return fail(e, CLARA_ERR_INVALID_ARG,
                "%s: expected a time HHMMSS[.FFFFFF] or HH:MM:SS[.FFFFFF], "
                "got \"%s\"",
                field, v);
  int hh = (t[0] - '0') * 10 + (t[1] - '0');
  int mm = (t[2] - '0') * 10 + (t[3] - '0');
  int ss = (t[4] - '0') * 10 + (t[5] - '0');
  if (hh > 23 || mm > 59 || ss > 60)
    return fail(e, CLARA_ERR_INVALID_ARG, "%s: time out of range: \"%s\"",
                field, v);
  *out = t;
  return CLARA_OK;
}

clara_status check_age(const Err &e, const char *v) {
  if (!given(v))
    return CLARA_OK;
  if (std::strlen(v) != 4 || !digits(v, 3) || !std::strchr("DWMY", v[3]))
    return fail(e, CLARA_ERR_INVALID_ARG,
                "patient_age: expected nnnD, nnnW, nnnM or nnnY (e.g. 042Y), "
                "got \"%s\"",
                v);
  return CLARA_OK;
}

bool valid_uid(const char *u) {
  size_t n = std::strlen(u);
  if (n == 0 || n > 64)
    return false;
  const char *comp = u;
  for (const char *p = u;; p++) {
    if (*p == '.' || *p == '\0') {
      if (p == comp || (*comp == '0' && p - comp > 1))
        return false; // empty component or a leading zero
      if (!*p)
        return true;
      comp = p + 1;
    } else if (*p < '0' || *p > '9') {
      return false;
    }
  }
}

// A decimal string (DS) of at most 16 characters.
std::string ds(double v) {
  char buf[40];
  for (int prec = 15; prec >= 1; prec--) {
    std::snprintf(buf, sizeof buf, "%.*g", prec, v);
    if (std::strlen(buf) <= 16)
      break;
  }
  if (std::strcmp(buf, "-0") == 0)
    return "0";
  return buf;
}

std::string is(long v) { return std::to_string(v); }

// ---------------------------------------------------------------------------
// UIDs
// ---------------------------------------------------------------------------

clara_status new_uid(const Err &e, char out[CLARA_DICOM_UID_SIZE]) {
  unsigned char b[16];
  size_t got = 0;
  while (got < sizeof b) {
    ssize_t r = getrandom(b + got, sizeof b - got, 0);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return fail(e, CLARA_ERR_IO, "no random numbers for a new UID: %s",
                  std::strerror(errno));
    }
    got += static_cast<size_t>(r);
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0F) | 0x40); // version 4
  b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80); // RFC 4122 variant
  // The UUID as a 128-bit big-endian integer, in decimal: repeated division
  // by 10 of four 32-bit limbs. The variant bit makes it nonzero.
  uint32_t limb[4];
  for (int i = 0; i < 4; i++)
    limb[i] = (uint32_t{b[4 * i]} << 24) | (uint32_t{b[4 * i + 1]} << 16) |
              (uint32_t{b[4 * i + 2]} << 8) | uint32_t{b[4 * i + 3]};
  char rev[40];
  int n = 0;
  while (limb[0] | limb[1] | limb[2] | limb[3]) {
    uint64_t rem = 0;
    for (int i = 0; i < 4; i++) {
      uint64_t cur = (rem << 32) | limb[i];
      limb[i] = static_cast<uint32_t>(cur / 10);
      rem = cur % 10;
    }
    rev[n++] = static_cast<char>('0' + rem);
  }
  std::memcpy(out, "2.25.", 5);
  for (int i = 0; i < n; i++)
    out[5 + i] = rev[n - 1 - i];
  out[5 + n] = '\0';
  return CLARA_OK;
}

// ---------------------------------------------------------------------------
// Datasets
// ---------------------------------------------------------------------------

// Collects the first failure of a run of DCMTK calls.
struct Put {
  DcmItem *ds;
  OFCondition first = EC_Normal;
  const char *what = nullptr;

  void str(const DcmTagKey &tag, const char *v, const char *name) {
    OFCondition c = ds->putAndInsertString(DcmTag(tag), v ? v : "");
    if (c.bad() && first.good()) {
      first = c;
      what = name;
    }
  }
  void str(const DcmTagKey &tag, const std::string &v, const char *name) {
    str(tag, v.c_str(), name);
  }
  // type 3: only when given
  void opt(const DcmTagKey &tag, const char *v, const char *name) {
    if (given(v))
      str(tag, v, name);
  }
  void u16(const DcmTagKey &tag, Uint16 v, const char *name) {
    OFCondition c = ds->putAndInsertUint16(DcmTag(tag), v);
    if (c.bad() && first.good()) {
      first = c;
      what = name;
    }
  }
};

const char *const kCtClass = UID_CTImageStorage;
const char *const kMrClass = UID_MRImageStorage;

// Patient, Patient Study and General Study attributes taken from a template.
const DcmTagKey kTemplateTags[] = {
    // Patient
    DCM_PatientName, DCM_PatientID, DCM_IssuerOfPatientID,
    DCM_IssuerOfPatientIDQualifiersSequence, DCM_PatientBirthDate,
    DCM_PatientBirthTime, DCM_PatientSex, DCM_OtherPatientIDsSequence,
    DCM_OtherPatientNames, DCM_EthnicGroup, DCM_PatientComments,
    DCM_PatientSpeciesDescription, DCM_PatientBreedDescription,
    DCM_ResponsiblePerson, DCM_ResponsiblePersonRole,
    DCM_ResponsibleOrganization, DCM_PatientIdentityRemoved,
    DCM_DeidentificationMethod, DCM_ReferencedPatientSequence,
    // Patient Study
    DCM_PatientAge, DCM_PatientSize, DCM_PatientWeight,
    DCM_AdmittingDiagnosesDescription,
    // General Study
    DCM_StudyInstanceUID, DCM_StudyDate, DCM_StudyTime,
    DCM_ReferringPhysicianName, DCM_ReferringPhysicianIdentificationSequence,
    DCM_ConsultingPhysicianName, DCM_StudyID, DCM_AccessionNumber,
    DCM_IssuerOfAccessionNumberSequence, DCM_StudyDescription,
    DCM_PhysiciansOfRecord, DCM_NameOfPhysiciansReadingStudy,
    DCM_ReferencedStudySequence, DCM_ProcedureCodeSequence,
    DCM_ReasonForPerformedProcedureCodeSequence};

bool ascii_charset(const OFString &cs) {
  return cs.empty() || cs == "ISO_IR 6";
}

// Loads the template and copies its Patient and Study attributes into ds.
clara_status copy_template(const Err &e, const char *path, DcmDataset *ds,
                           bool *nonascii) {
  // Readable at all? (an I/O error, not a format error)
  std::FILE *f = std::fopen(path, "rb");
  if (!f)
    return fail(e, CLARA_ERR_IO, "DICOM template %s: %s", path,
                std::strerror(errno));
  std::fclose(f);
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
    return fail(e, CLARA_ERR_IO, "DICOM template %s: is a directory", path);
  DcmFileFormat tf;
  // ERM_fileOnly: only a Part 10 file (128-byte preamble and "DICM"), so that
  // any other file is refused rather than parsed as a bare data set.
  OFCondition c = tf.loadFile(OFFilename(path), EXS_Unknown, EGL_noChange,
                              DCM_MaxReadLength, ERM_fileOnly);
  if (c.bad())
    return fail(e, CLARA_ERR_FORMAT,
                "DICOM template %s: not a DICOM file, or a damaged one (a "
                "Part 10 file starts with a 128-byte preamble and "
                "\"DICM\"): %s",
                path, c.text());
  DcmDataset *td = tf.getDataset();
  OFString uid;
  if (td->findAndGetOFString(DCM_StudyInstanceUID, uid).bad() ||
      !valid_uid(uid.c_str()))
    return fail(e, CLARA_ERR_FORMAT,
                "DICOM template %s: no valid StudyInstanceUID (got \"%s\")",
                path, uid.c_str());
  OFString cs;
  td->findAndGetOFStringArray(DCM_SpecificCharacterSet, cs);
  if (!ascii_charset(cs)) {
    if (cs != "ISO_IR 192") {
      c = tf.convertToUTF8();
      if (c.bad())
        return fail(e, CLARA_ERR_UNSUPPORTED,
                    "DICOM template %s: cannot convert its character set "
                    "\"%s\" to UTF-8: %s",
                    path, cs.c_str(), c.text());
    }
    *nonascii = true;
  }
  for (const DcmTagKey &tag : kTemplateTags) {
    DcmElement *el = nullptr;
    if (td->findAndGetElement(tag, el).good() && el) {
      DcmElement *copy = OFstatic_cast(DcmElement *, el->clone());
      if (!copy)
        return fail(e, CLARA_ERR_OUT_OF_MEMORY, "copying the template");
      c = ds->insert(copy, OFTrue);
      if (c.bad()) {
        delete copy;
        return fail(e, CLARA_ERR_FORMAT, "DICOM template %s: copying %s: %s",
                    path, DcmTag(tag).getTagName(), c.text());
      }
    }
  }
  return CLARA_OK;
}

// ---------------------------------------------------------------------------
// Files and directories
// ---------------------------------------------------------------------------

// 1: dir holds something, 0: empty, -1: error (errno).
int dir_has_entries(const char *dir) {
  DIR *d = opendir(dir);
  if (!d)
    return -1;
  int found = 0;
  errno = 0;
  for (struct dirent *de; (de = readdir(d)) != nullptr;) {
    if (std::strcmp(de->d_name, ".") != 0 &&
        std::strcmp(de->d_name, "..") != 0) {
      found = 1;
      break;
    }
  }
  closedir(d);
  return found;
}

int fsync_path(const char *path, bool dir) {
  int fd = open(path, (dir ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  int r = fsync(fd);
  int saved = errno;
  close(fd);
  errno = saved;
  return r;
}

// The temporary directory and what has been written into it; removed on
// destruction unless committed.
struct Staging {
  std::string dir;
  std::vector<std::string> files;
  bool committed = false;
  ~Staging() {
    if (dir.empty() || committed)
      return;
    for (const std::string &f : files)
      unlink(f.c_str());
    rmdir(dir.c_str());
  }
};

// The local date (DA) and time (TM) now.
void now_strings(std::string *date, std::string *time) {
  std::time_t t = std::time(nullptr);
  struct tm tmv;
  char d[16] = "", h[16] = "";
  if (localtime_r(&t, &tmv)) {
    std::strftime(d, sizeof d, "%Y%m%d", &tmv);
    std::strftime(h, sizeof h, "%H%M%S", &tmv);
  }
  *date = d;
  *time = h;
}

// Checks every string of *s; fills the normalised dates and times.
struct Dates {
  std::string birth, study_date, study_time, series_date, series_time;
};

clara_status check_series(const Err &e, const clara_dicom_series *s, Dates *d,
                          bool *nonascii) {
  struct {
    const char *field, *value;
    Vr vr;
  } text[] = {
      {"patient_name", s->patient_name, PN},
      {"patient_id", s->patient_id, LO},
      {"study_id", s->study_id, SH},
      {"accession_number", s->accession_number, SH},
      {"referring_physician", s->referring_physician, PN},
      {"study_description", s->study_description, LO},
      {"series_description", s->series_description, LO},
      {"protocol_name", s->protocol_name, LO},
      {"body_part", s->body_part, CS},
      {"patient_position", s->patient_position, CS},
      {"manufacturer", s->manufacturer, LO},
      {"manufacturer_model", s->manufacturer_model, LO},
      {"institution_name", s->institution_name, LO},
      {"station_name", s->station_name, SH},
      {"derivation_description", s->derivation_description, ST},
      {"convolution_kernel", s->convolution_kernel, SH},
      {"scanning_sequence", s->scanning_sequence, CS_MULTI},
      {"sequence_variant", s->sequence_variant, CS_MULTI},
      {"scan_options", s->scan_options, CS_MULTI},
      {"imaged_nucleus", s->imaged_nucleus, SH},
  };
  clara_status st;
  for (const auto &t : text)
    if ((st = check_text(e, t.field, t.value, t.vr, nonascii)) != CLARA_OK)
      return st;
  if (given(s->laterality) && std::strcmp(s->laterality, "R") != 0 &&
      std::strcmp(s->laterality, "L") != 0)
    return fail(e, CLARA_ERR_INVALID_ARG,
                "laterality: expected R or L, got \"%s\"", s->laterality);
  if (given(s->patient_sex) && std::strcmp(s->patient_sex, "M") != 0 &&
      std::strcmp(s->patient_sex, "F") != 0 &&
      std::strcmp(s->patient_sex, "O") != 0)
    return fail(e, CLARA_ERR_INVALID_ARG,
                "patient_sex: expected M, F or O, got \"%s\"", s->patient_sex);
  if (given(s->mr_acquisition_type) &&
      std::strcmp(s->mr_acquisition_type, "2D") != 0 &&
      std::strcmp(s->mr_acquisition_type, "3D") != 0)
    return fail(e, CLARA_ERR_INVALID_ARG,
                "mr_acquisition_type: expected 2D or 3D, got \"%s\"",
                s->mr_acquisition_type);
  if ((st = check_age(e, s->patient_age)) != CLARA_OK ||
      (st = norm_date(e, "patient_birth_date", s->patient_birth_date,
                      &d->birth)) != CLARA_OK ||
      (st = norm_date(e, "study_date", s->study_date, &d->study_date)) !=
          CLARA_OK ||
      (st = norm_time(e, "study_time", s->study_time, &d->study_time)) !=
          CLARA_OK ||
      (st = norm_date(e, "series_date", s->series_date, &d->series_date)) !=
          CLARA_OK ||
      (st = norm_time(e, "series_time", s->series_time, &d->series_time)) !=
          CLARA_OK)
    return st;
  if (s->modality == CLARA_MODALITY_MR) {
    if (!given(s->scanning_sequence) || !given(s->sequence_variant))
      return fail(e, CLARA_ERR_INVALID_ARG,
                  "scanning_sequence and sequence_variant are DICOM type 1 "
                  "for MR: give them (clara_dicom_series_init sets RM and "
                  "NONE)");
  }
  if (given(s->study_instance_uid) && !valid_uid(s->study_instance_uid))
    return fail(e, CLARA_ERR_INVALID_ARG,
                "study_instance_uid: not a valid UID: \"%s\"",
                s->study_instance_uid);
  if (given(s->frame_of_reference_uid) && !valid_uid(s->frame_of_reference_uid))
    return fail(e, CLARA_ERR_INVALID_ARG,
                "frame_of_reference_uid: not a valid UID: \"%s\"",
                s->frame_of_reference_uid);
  if (s->window_width > 0 || s->window_center != 0) {
    if (!std::isfinite(s->window_center) || !std::isfinite(s->window_width) ||
        s->window_width < 1)
      return fail(e, CLARA_ERR_INVALID_ARG,
                  "window: center must be finite and width >= 1 (DICOM "
                  "WindowWidth), got center %g width %g",
                  s->window_center, s->window_width);
  }
  return CLARA_OK;
}

clara_status write_series(const Err &e, const char *dir_in,
                          const clara_dicom_series *s, const clara_volume *vol,
                          const float *image, clara_dicom_report *report) {
  if (!dir_in || !*dir_in || !s || !vol || !image)
    return fail(e, CLARA_ERR_INVALID_ARG, "clara_dicom_write_series: %s is %s",
                !dir_in    ? "dir"
                : !*dir_in ? "dir"
                : !s       ? "s"
                : !vol     ? "vol"
                           : "image",
                (dir_in && !*dir_in) ? "empty" : "NULL");
  const bool ct = s->modality == CLARA_MODALITY_CT;
  if (!ct && s->modality != CLARA_MODALITY_MR)
    return fail(e, CLARA_ERR_INVALID_ARG,
                "modality: expected CT (%d) or MR (%d), got %d",
                CLARA_MODALITY_CT, CLARA_MODALITY_MR,
                static_cast<int>(s->modality));
  if (vol->nx <= 0 || vol->ny <= 0 || vol->nz <= 0 || vol->nx > 65535 ||
      vol->ny > 65535)
    return fail(e, CLARA_ERR_INVALID_ARG,
                "volume: nx and ny must be 1..65535 (DICOM Columns and Rows) "
                "and nz > 0, got %d x %d x %d",
                vol->nx, vol->ny, vol->nz);
  const size_t plane = size_t(vol->nx) * size_t(vol->ny);
  const size_t n = plane * size_t(vol->nz);
  for (size_t i = 0; i < n; i++)
    if (!std::isfinite(image[i]))
      return fail(e, CLARA_ERR_INVALID_ARG,
                  "image[%zu] (ix %zu, iy %zu, iz %zu): must be finite for "
                  "DICOM, got %g",
                  i, i % size_t(vol->nx),
                  (i / size_t(vol->nx)) % size_t(vol->ny), i / plane,
                  double(image[i]));

  Dates dates;
  bool nonascii = false;
  clara_status st = check_series(e, s, &dates, &nonascii);
  if (st != CLARA_OK)
    return st;
  std::vector<clara_dicom_plane> planes(size_t(vol->nz));
  for (int z = 0; z < vol->nz; z++)
    if (clara_dicom_plane_of(vol, z, &planes[size_t(z)]) != CLARA_OK)
      return fail(e, CLARA_ERR_INVALID_ARG, "%s", clara_last_error());

  // The output directory: a new one, or an empty one to replace.
  std::string dir(dir_in);
  while (dir.size() > 1 && dir.back() == '/')
    dir.pop_back();
  {
    struct stat sb;
    if (lstat(dir.c_str(), &sb) == 0) {
      if (!S_ISDIR(sb.st_mode))
        return fail(e, CLARA_ERR_IO,
                    "DICOM output %s: exists and is not a directory",
                    dir.c_str());
      int has = dir_has_entries(dir.c_str());
      if (has != 0)
        return fail(e, CLARA_ERR_IO,
                    "DICOM output directory %s: %s; give a new or an empty "
                    "directory",
                    dir.c_str(),
                    has > 0 ? "exists and is not empty" : std::strerror(errno));
    } else if (errno != ENOENT) {
      return fail(e, CLARA_ERR_IO, "DICOM output directory %s: %s", dir.c_str(),
                  std::strerror(errno));
    }
  }
  size_t slash = dir.rfind('/');
  std::string parent = slash == std::string::npos ? "."
                       : slash == 0               ? "/"
                                                  : dir.substr(0, slash);
  std::string base = slash == std::string::npos ? dir : dir.substr(slash + 1);
  if (base.empty() || base == "." || base == "..")
    return fail(e, CLARA_ERR_INVALID_ARG,
                "DICOM output directory \"%s\": name a new directory", dir_in);

  // The pixels: one rescale and one window for the whole series.
  std::vector<int16_t> stored(n);
  clara_dicom_scaling sc;
  if ((ct ? clara_dicom_ready_ct(image, n, stored.data(), &sc)
          : clara_dicom_ready_scaled(image, n, stored.data(), &sc)) != CLARA_OK)
    return fail(e, CLARA_ERR_INVALID_ARG, "%s", clara_last_error());
  bool explicit_window = s->window_width > 0;
  double wc = explicit_window ? s->window_center : sc.window_center;
  double ww = explicit_window ? s->window_width : sc.window_width;
  bool window = ww >= 1;

  // The attributes every file of the series shares.
  char study_uid[CLARA_DICOM_UID_SIZE], series_uid[CLARA_DICOM_UID_SIZE],
      for_uid[CLARA_DICOM_UID_SIZE];
  if ((st = new_uid(e, series_uid)) != CLARA_OK)
    return st;
  if (given(s->frame_of_reference_uid))
    std::snprintf(for_uid, sizeof for_uid, "%s", s->frame_of_reference_uid);
  else if ((st = new_uid(e, for_uid)) != CLARA_OK)
    return st;

  DcmDataset base_ds;
  Put put{&base_ds};
  if (given(s->template_path)) {
    if ((st = copy_template(e, s->template_path, &base_ds, &nonascii)) !=
        CLARA_OK)
      return st;
    OFString u;
    base_ds.findAndGetOFString(DCM_StudyInstanceUID, u);
    std::snprintf(study_uid, sizeof study_uid, "%s", u.c_str());
  } else {
    if (given(s->study_instance_uid))
      std::snprintf(study_uid, sizeof study_uid, "%s", s->study_instance_uid);
    else if ((st = new_uid(e, study_uid)) != CLARA_OK)
      return st;
    // Patient
    put.str(DCM_PatientName, s->patient_name, "PatientName");
    put.str(DCM_PatientID, s->patient_id, "PatientID");
    put.str(DCM_PatientBirthDate, dates.birth, "PatientBirthDate");
    put.str(DCM_PatientSex, s->patient_sex, "PatientSex");
    // Patient Study
    put.opt(DCM_PatientAge, s->patient_age, "PatientAge");
    if (known(s->patient_weight_kg))
      put.str(DCM_PatientWeight, ds(s->patient_weight_kg), "PatientWeight");
    // General Study
    put.str(DCM_StudyInstanceUID, study_uid, "StudyInstanceUID");
    put.str(DCM_StudyDate, dates.study_date, "StudyDate");
    put.str(DCM_StudyTime, dates.study_time, "StudyTime");
    put.str(DCM_ReferringPhysicianName, s->referring_physician,
            "ReferringPhysicianName");
    put.str(DCM_StudyID, s->study_id, "StudyID");
    put.str(DCM_AccessionNumber, s->accession_number, "AccessionNumber");
    put.opt(DCM_StudyDescription, s->study_description, "StudyDescription");
  }
  if (nonascii)
    put.str(DCM_SpecificCharacterSet, "ISO_IR 192", "SpecificCharacterSet");
  else
    base_ds.findAndDeleteElement(DCM_SpecificCharacterSet);

  std::string now_date, now_time;
  now_strings(&now_date, &now_time);
  // SOP Common
  put.str(DCM_SOPClassUID, ct ? kCtClass : kMrClass, "SOPClassUID");
  put.str(DCM_InstanceCreationDate, now_date, "InstanceCreationDate");
  put.str(DCM_InstanceCreationTime, now_time, "InstanceCreationTime");
  // General Series
  put.str(DCM_Modality, ct ? "CT" : "MR", "Modality");
  put.str(DCM_SeriesInstanceUID, series_uid, "SeriesInstanceUID");
  put.str(DCM_SeriesNumber, s->series_number > 0 ? is(s->series_number) : "",
          "SeriesNumber");
  put.opt(DCM_SeriesDescription, s->series_description, "SeriesDescription");
  if (!dates.series_date.empty())
    put.str(DCM_SeriesDate, dates.series_date, "SeriesDate");
  if (!dates.series_time.empty())
    put.str(DCM_SeriesTime, dates.series_time, "SeriesTime");
  put.opt(DCM_ProtocolName, s->protocol_name, "ProtocolName");
  put.opt(DCM_BodyPartExamined, s->body_part, "BodyPartExamined");
  if (given(s->laterality) || !given(s->body_part))
    put.str(DCM_Laterality, s->laterality, "Laterality");
  put.str(DCM_PatientPosition, s->patient_position, "PatientPosition");
  // Frame of Reference
  put.str(DCM_FrameOfReferenceUID, for_uid, "FrameOfReferenceUID");
  put.str(DCM_PositionReferenceIndicator, "", "PositionReferenceIndicator");
  // General Equipment
  put.str(DCM_Manufacturer, s->manufacturer, "Manufacturer");
  put.opt(DCM_ManufacturerModelName, s->manufacturer_model,
          "ManufacturerModelName");
  put.opt(DCM_InstitutionName, s->institution_name, "InstitutionName");
  put.opt(DCM_StationName, s->station_name, "StationName");
  const std::string software = std::string("clara-recon ") + clara_version();
  put.str(DCM_SoftwareVersions, software, "SoftwareVersions");
  // General Image
  std::string image_type =
      s->derived ? "DERIVED\\SECONDARY\\" : "ORIGINAL\\PRIMARY\\";
  image_type += ct ? "AXIAL" : "OTHER";
  put.str(DCM_ImageType, image_type, "ImageType");
  if (s->derived)
    put.opt(DCM_DerivationDescription, s->derivation_description,
            "DerivationDescription");
  put.str(DCM_ContentDate, now_date, "ContentDate");
  put.str(DCM_ContentTime, now_time, "ContentTime");
  // Image Plane (the per-slice part below)
  const clara_dicom_plane &p0 = planes[0];
  put.str(DCM_PixelSpacing,
          ds(p0.pixel_spacing[0]) + "\\" + ds(p0.pixel_spacing[1]),
          "PixelSpacing");
  {
    std::string o;
    for (int i = 0; i < 6; i++)
      o += (i ? "\\" : "") + ds(p0.orientation[i]);
    put.str(DCM_ImageOrientationPatient, o, "ImageOrientationPatient");
  }
  put.str(DCM_SliceThickness, ds(p0.slice_thickness), "SliceThickness");
  if (vol->nz > 1)
    put.str(DCM_SpacingBetweenSlices, ds(p0.slice_thickness),
            "SpacingBetweenSlices");
  // Image Pixel
  put.u16(DCM_SamplesPerPixel, 1, "SamplesPerPixel");
  put.str(DCM_PhotometricInterpretation, "MONOCHROME2",
          "PhotometricInterpretation");
  put.u16(DCM_Rows, Uint16(vol->ny), "Rows");
  put.u16(DCM_Columns, Uint16(vol->nx), "Columns");
  put.u16(DCM_BitsAllocated, 16, "BitsAllocated");
  put.u16(DCM_BitsStored, 16, "BitsStored");
  put.u16(DCM_HighBit, 15, "HighBit");
  put.u16(DCM_PixelRepresentation, 1, "PixelRepresentation");
  // Modality LUT (CT Image module; MR images carry it as vendors do)
  put.str(DCM_RescaleIntercept, ds(sc.intercept), "RescaleIntercept");
  put.str(DCM_RescaleSlope, ds(sc.slope), "RescaleSlope");
  put.str(DCM_RescaleType, ct ? "HU" : "US", "RescaleType");
  if (ct) {
    // CT Image
    put.str(DCM_KVP, known(s->kvp) ? ds(s->kvp) : "", "KVP");
    put.str(DCM_AcquisitionNumber, "", "AcquisitionNumber");
    put.opt(DCM_ConvolutionKernel, s->convolution_kernel, "ConvolutionKernel");
  } else {
    // MR Image
    put.str(DCM_ScanningSequence, s->scanning_sequence, "ScanningSequence");
    put.str(DCM_SequenceVariant, s->sequence_variant, "SequenceVariant");
    put.str(DCM_ScanOptions, s->scan_options, "ScanOptions");
    put.str(DCM_MRAcquisitionType, s->mr_acquisition_type, "MRAcquisitionType");
    put.str(DCM_RepetitionTime,
            known(s->repetition_time_ms) ? ds(s->repetition_time_ms) : "",
            "RepetitionTime");
    put.str(DCM_EchoTime, known(s->echo_time_ms) ? ds(s->echo_time_ms) : "",
            "EchoTime");
    put.str(DCM_EchoTrainLength,
            s->echo_train_length > 0 ? is(s->echo_train_length) : "",
            "EchoTrainLength");
    if (known(s->inversion_time_ms) ||
        std::strstr(s->scanning_sequence, "IR") != nullptr)
      put.str(DCM_InversionTime,
              known(s->inversion_time_ms) ? ds(s->inversion_time_ms) : "",
              "InversionTime");
    if (known(s->flip_angle_deg))
      put.str(DCM_FlipAngle, ds(s->flip_angle_deg), "FlipAngle");
    if (known(s->magnetic_field_t))
      put.str(DCM_MagneticFieldStrength, ds(s->magnetic_field_t),
              "MagneticFieldStrength");
    put.opt(DCM_ImagedNucleus, s->imaged_nucleus, "ImagedNucleus");
  }
  // VOI LUT
  if (window) {
    put.str(DCM_WindowCenter, ds(wc), "WindowCenter");
    put.str(DCM_WindowWidth, ds(ww), "WindowWidth");
    put.str(DCM_WindowCenterWidthExplanation,
            explicit_window ? "USER"
            : ct            ? "SOFT TISSUE"
                            : "PERCENTILES 1 TO 99",
            "WindowCenterWidthExplanation");
  }
  if (put.first.bad())
    return fail(e, CLARA_ERR_OUT_OF_MEMORY, "DICOM attribute %s: %s", put.what,
                put.first.text());

  // Every file into a new directory beside 'dir', then one rename.
  Staging stage;
  {
    std::string tmpl = parent + "/." + base + ".tmp-XXXXXX";
    std::vector<char> t(tmpl.begin(), tmpl.end());
    t.push_back('\0');
    if (!mkdtemp(t.data()))
      return fail(e, CLARA_ERR_IO,
                  "DICOM output directory %s: cannot create a directory in "
                  "%s: %s",
                  dir.c_str(), parent.c_str(), std::strerror(errno));
    stage.dir = t.data();
  }
  for (int z = 0; z < vol->nz; z++) {
    const clara_dicom_plane &pz = planes[size_t(z)];
    char name[32];
    std::snprintf(name, sizeof name, "/%s%05d.dcm", ct ? "CT" : "MR", z + 1);
    std::string path = stage.dir + name;
    char sop_uid[CLARA_DICOM_UID_SIZE];
    if ((st = new_uid(e, sop_uid)) != CLARA_OK)
      return st;
    DcmFileFormat ff(&base_ds);
    DcmDataset *d = ff.getDataset();
    Put pz_put{d};
    pz_put.str(DCM_SOPInstanceUID, sop_uid, "SOPInstanceUID");
    pz_put.str(DCM_InstanceNumber, is(z + 1), "InstanceNumber");
    pz_put.str(DCM_ImagePositionPatient,
               ds(pz.position[0]) + "\\" + ds(pz.position[1]) + "\\" +
                   ds(pz.position[2]),
               "ImagePositionPatient");
    pz_put.str(DCM_SliceLocation, ds(pz.slice_location), "SliceLocation");
    OFCondition c = d->putAndInsertUint16Array(
        DcmTag(DCM_PixelData, EVR_OW),
        reinterpret_cast<const Uint16 *>(stored.data() + plane * size_t(z)),
        static_cast<unsigned long>(plane));
    if (pz_put.first.bad() || c.bad())
      return fail(e, CLARA_ERR_OUT_OF_MEMORY, "DICOM attribute %s: %s",
                  pz_put.first.bad() ? pz_put.what : "PixelData",
                  pz_put.first.bad() ? pz_put.first.text() : c.text());
    stage.files.push_back(path);
    c = ff.saveFile(OFFilename(path.c_str()), EXS_LittleEndianExplicit,
                    EET_ExplicitLength, EGL_recalcGL, EPD_noChange, 0, 0,
                    EWM_fileformat);
    if (c.bad())
      return fail(e, CLARA_ERR_IO, "writing %s: %s", path.c_str(), c.text());
    if (fsync_path(path.c_str(), false) != 0)
      return fail(e, CLARA_ERR_IO, "writing %s: %s", path.c_str(),
                  std::strerror(errno));
  }
  // mkdtemp made the directory 0700; give it the mode mkdir would have.
  mode_t mask = umask(0);
  umask(mask);
  if (chmod(stage.dir.c_str(), 0777 & ~mask) != 0 ||
      fsync_path(stage.dir.c_str(), true) != 0)
    return fail(e, CLARA_ERR_IO, "DICOM output %s: %s", stage.dir.c_str(),
                std::strerror(errno));
  if (rename(stage.dir.c_str(), dir.c_str()) != 0)
    return fail(e, CLARA_ERR_IO,
                "DICOM output directory %s: cannot move the finished series "
                "there: %s",
                dir.c_str(), std::strerror(errno));
  stage.committed = true;
  fsync_path(parent.c_str(), true); // best effort: the rename is done

  if (report) {
    clara_dicom_report r;
    std::memset(&r, 0, sizeof r);
    r.files = vol->nz;
    r.slope = sc.slope;
    r.intercept = sc.intercept;
    r.window_written = window;
    r.window_center = window ? wc : 0;
    r.window_width = window ? ww : 0;
    r.clipped_low = sc.clipped_low;
    r.clipped_high = sc.clipped_high;
    r.min = sc.min;
    r.max = sc.max;
    std::snprintf(r.study_instance_uid, sizeof r.study_instance_uid, "%s",
                  study_uid);
    std::snprintf(r.series_instance_uid, sizeof r.series_instance_uid, "%s",
                  series_uid);
    std::snprintf(r.frame_of_reference_uid, sizeof r.frame_of_reference_uid,
                  "%s", for_uid);
    *report = r;
  }
  return CLARA_OK;
}

// DCMTK logs through oflog to stderr; this module reports only through its
// return values, so that logging is switched off once. The data dictionary
// must be loaded for DCMTK to know the attributes' VRs.
clara_status setup(const Err &e) {
  static bool logging_off = false;
  if (!logging_off) {
    OFLog::configure(OFLogger::OFF_LOG_LEVEL);
    logging_off = true;
  }
  if (!dcmDataDict.isDictionaryLoaded())
    return fail(e, CLARA_ERR_UNSUPPORTED,
                "DCMTK's DICOM data dictionary is not loaded (set "
                "DCMDICTPATH to its dicom.dic)");
  return CLARA_OK;
}

} // namespace

extern "C" void clara_dicom_series_init(clara_dicom_series *s,
                                        clara_modality modality) {
  if (!s)
    return;
  std::memset(s, 0, sizeof *s);
  s->modality = modality;
  s->scanning_sequence = "RM";
  s->sequence_variant = "NONE";
}

extern "C" clara_status
clara_dicom_write_series(const char *dir, const clara_dicom_series *s,
                         const clara_volume *vol, const float *image,
                         clara_dicom_report *report, char *err, size_t errlen) {
  Err e{err, errlen};
  if (err && errlen)
    err[0] = '\0';
  try {
    clara_status st = setup(e);
    if (st != CLARA_OK)
      return st;
    return write_series(e, dir, s, vol, image, report);
  } catch (const std::bad_alloc &) {
    return fail(e, CLARA_ERR_OUT_OF_MEMORY, "out of memory writing DICOM");
  } catch (...) {
    return fail(e, CLARA_ERR_IO, "unexpected C++ exception writing DICOM");
  }
}

extern "C" clara_status clara_dicom_new_uid(char out[CLARA_DICOM_UID_SIZE],
                                            char *err, size_t errlen) {
  Err e{err, errlen};
  if (!out)
    return fail(e, CLARA_ERR_INVALID_ARG, "clara_dicom_new_uid: out is NULL");
  return new_uid(e, out);
}
