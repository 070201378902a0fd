/* mr_file.c -- MR raw-data files: ISMRMRD (/dataset/data, /dataset/xml) and
 * fastMRI (/kspace, /ismrmrd_header, /reconstruction_rss).
 *
 * What is read and how it maps onto clara_mr_geometry is documented in
 * docs/MR_FORMATS.md. The whole file is read at clara_mr_file_open(); the
 * clara_mr_file is immutable afterwards, so its accessors may be called from
 * several threads at once.
 *
 * Rules kept throughout (the same as src/io/ct_file.c):
 * - Every HDF5 call runs under the library's one HDF5 mutex (h5util.h),
 *   which this file defines. clara_mr_file_open validates its arguments,
 *   locks, calls a *_locked worker and unlocks.
 * - Nothing is printed: HDF5's automatic error printing is off, libxml2
 *   parses with NOERROR/NOWARNING and, for the duration of each parse, with
 *   silent generic and structured error handlers on the calling thread.
 * - Every hid_t and herr_t is checked; each worker closes what it opened in
 *   reverse order at its `done:` label and frees whatever it allocated
 *   unless it was handed over on success.
 * - IO errors (cannot open, not HDF5, truncated, a read that fails) are
 *   CLARA_ERR_IO; a file that is HDF5 but not laid out as expected is
 *   CLARA_ERR_FORMAT, naming the dataset or field, what was expected and
 *   what was found.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* pread */
#endif

#include "h5util.h"
#include "internal.h"

#include <hdf5.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlversion.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

/* Longest XML header accepted (ISMRMRD headers are a few kB). */
#define MAX_XML_BYTES ((size_t)64 << 20)
/* Most <encoding> elements read from one ISMRMRD header. */
#define MAX_ENCODINGS 16
/* Largest matrix size accepted from the XML. */
#define MAX_MATRIX 65536

/* ISMRMRD acquisition flags: flag N (1-based, as ISMRMRD numbers them) is
 * bit N-1 of the uint64 head.flags. */
#define ACQ_FLAG(n) ((uint64_t)1 << ((n)-1))
#define ACQ_IS_NOISE_MEASUREMENT ACQ_FLAG(19)
#define ACQ_IS_PARALLEL_CALIBRATION ACQ_FLAG(20)
#define ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING ACQ_FLAG(21)
#define ACQ_IS_REVERSE ACQ_FLAG(22)
#define ACQ_IS_NAVIGATION_DATA ACQ_FLAG(23)
#define ACQ_IS_PHASECORR_DATA ACQ_FLAG(24)
#define ACQ_IS_HPFEEDBACK_DATA ACQ_FLAG(26)
#define ACQ_IS_DUMMYSCAN_DATA ACQ_FLAG(27)
#define ACQ_IS_RTFEEDBACK_DATA ACQ_FLAG(28)
#define ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA ACQ_FLAG(29)
#define ACQ_IS_PHASE_STABILIZATION_REFERENCE ACQ_FLAG(30)
#define ACQ_IS_PHASE_STABILIZATION ACQ_FLAG(31)

/* Scans that carry no image k-space and are skipped. */
#define ACQ_SKIP_MASK                                                          \
  (ACQ_IS_NAVIGATION_DATA | ACQ_IS_PHASECORR_DATA | ACQ_IS_HPFEEDBACK_DATA |   \
   ACQ_IS_DUMMYSCAN_DATA | ACQ_IS_RTFEEDBACK_DATA |                            \
   ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA |                                     \
   ACQ_IS_PHASE_STABILIZATION_REFERENCE | ACQ_IS_PHASE_STABILIZATION)

/* ------------------------------------------------------------------------ */
/* Types                                                                     */
/* ------------------------------------------------------------------------ */

enum { FORMAT_ISMRMRD = 0, FORMAT_FASTMRI = 1 };

typedef struct mr_set {
  clara_mr_geometry geom;
  int encoding, contrast, repetition, set; /* ISMRMRD labels */
  float *kspace;                           /* [slices][coils][nz][ny][nx]x2 */
  size_t floats;                           /* length of kspace */
} mr_set;

struct clara_mr_file_s {
  int format;
  int count;
  mr_set *sets;
  int coils;
  int noise_samples;
  float *noise; /* [coils][noise_samples] complex, or NULL */
  int ref_slices, ref_ny, ref_nx;
  float *ref;   /* [ref_slices][ref_ny][ref_nx], or NULL */
  int accel[2]; /* parallelImaging acceleration factors (1 when absent) */
  /* clara_mr_file_study: the header's file-wide facts (encoding part
   * empty) and each encoding's (study.has_header 0: no header) */
  clara_mr_study study;
  int encodings;
  double enc_fov[MAX_ENCODINGS][3], recon_fov[MAX_ENCODINGS][3];
  int enc_matrix[MAX_ENCODINGS][3], recon_matrix[MAX_ENCODINGS][3];
  int echo_train[MAX_ENCODINGS];
};

/* One <kspace_encoding_step_1> style limit of <encodingLimits>. */
typedef struct xml_limit {
  int present;
  long minimum, maximum, center;
} xml_limit;

typedef struct mr_encoding {
  int enc[3];   /* encodedSpace/matrixSize x, y, z */
  int recon[3]; /* reconSpace/matrixSize x, y, z (0 when absent) */
  xml_limit e1, e2, slice, contrast, repetition, set;
  int accel[2];  /* parallelImaging/accelerationFactor, 1 when absent */
  int separate;  /* calibrationMode separate or external */
  int offset[2]; /* ky, kz shift from encodingLimits centres */
  /* informational (clara_mr_file_study): 0 when absent or not a number */
  double enc_fov[3], recon_fov[3]; /* fieldOfView_mm x, y, z */
  int echo_train;                  /* echoTrainLength */
} mr_encoding;

typedef struct mr_header {
  int count;
  mr_encoding enc[MAX_ENCODINGS];
  int receiver_channels; /* 0 when absent */
  clara_mr_study study;  /* the file-wide part of clara_mr_file_study */
} mr_header;

/* The memory layout of an ISMRMRD acquisition, with only the members used;
 * HDF5 converts compound members by name, so the file's other members are
 * left out and each of these may have any integer type in the file. */
typedef struct acq_idx {
  uint16_t kspace_encode_step_1, kspace_encode_step_2, average, slice, contrast,
      phase, repetition, set;
} acq_idx;

typedef struct acq_head {
  uint64_t flags;
  uint16_t version, number_of_samples, active_channels, discard_pre,
      discard_post, center_sample, encoding_space_ref;
  acq_idx idx;
} acq_head;

typedef struct acq_rec {
  acq_head head;
  hvl_t data; /* float32 [channels][samples] interleaved complex */
} acq_rec;

/* ------------------------------------------------------------------------ */
/* HDF5 helpers (the same rules as ct_file.c)                                */
/* ------------------------------------------------------------------------ */

static const char fn_open[] = "clara_mr_file_open";

/* Messages read "clara_mr_file_open: path: ..."; the helpers are h5util's. */
#define file_fail(status, path, ...)                                           \
  clara_h5_file_fail((status), fn_open, (path), __VA_ARGS__)
#define h5_close(closer, id, status, path)                                     \
  clara_h5_close((closer), (id), (status), fn_open, (path))

static const char *id_type_name(H5I_type_t t) {
  switch (t) {
  case H5I_GROUP:
    return "a group";
  case H5I_DATASET:
    return "a dataset";
  case H5I_DATATYPE:
    return "a named datatype";
  default:
    return "another kind of object";
  }
}

static const unsigned char h5_signature[8] = {0x89, 'H',  'D',  'F',
                                              '\r', '\n', 0x1a, '\n'};

/* Opens 'path' read-only as HDF5, telling "cannot open" (errno), "not an
 * HDF5 file" and "damaged or truncated" apart. */
static clara_status open_for_read(const char *path, hid_t *out) {
  clara_status status = CLARA_OK;
  hid_t fapl = H5I_INVALID_HID, fid = H5I_INVALID_HID;
  struct stat sb;
  unsigned char sig[8];
  char detail[256];
  int fd, found = 0;
  off_t off;

  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return file_fail(CLARA_ERR_IO, path, "cannot open: %s", strerror(errno));
  if (fstat(fd, &sb) != 0) {
    int err = errno;
    (void)close(fd);
    return file_fail(CLARA_ERR_IO, path, "cannot stat: %s", strerror(err));
  }
  if (!S_ISREG(sb.st_mode)) {
    (void)close(fd);
    return file_fail(CLARA_ERR_IO, path, "cannot open: %s",
                     S_ISDIR(sb.st_mode) ? "is a directory"
                                         : "not a regular file");
  }
  /* The superblock sits at 0 or after a user block of 512, 1024, ... */
  for (off = 0; off <= sb.st_size - 8; off = off == 0 ? 512 : off * 2) {
    if (pread(fd, sig, sizeof sig, off) == (ssize_t)sizeof sig &&
        memcmp(sig, h5_signature, sizeof sig) == 0) {
      found = 1;
      break;
    }
    if (off > sb.st_size / 2)
      break;
  }
  (void)close(fd);
  if (!found)
    return file_fail(CLARA_ERR_IO, path,
                     "not an HDF5 file (no HDF5 signature in its %lld bytes)",
                     (long long)sb.st_size);

  fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0) {
    status = file_fail(CLARA_ERR_IO, path,
                       "cannot create a file access property list%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  if (H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
    status = file_fail(CLARA_ERR_IO, path, "cannot set the file close degree%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  fid = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  if (fid < 0) {
    status = file_fail(CLARA_ERR_IO, path,
                       "cannot open as HDF5: truncated or damaged file%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  *out = fid;
  fid = H5I_INVALID_HID;
done:
  h5_close(H5Fclose, &fid, &status, path);
  h5_close(H5Pclose, &fapl, &status, path);
  return status;
}

/* Whether the object 'name' exists, checking each parent first so that a
 * missing parent reads as "absent" rather than an error. 1, 0, or -1. */
static int object_exists(hid_t loc, const char *name) {
  size_t len = strlen(name);
  char *prefix;
  int result = 1;
  if (len == 0)
    return 0;
  prefix = malloc(len + 1);
  if (!prefix)
    return -1;
  for (size_t i = 1; i <= len && result > 0; i++) {
    if (i < len && name[i] != '/')
      continue;
    if (name[i - 1] == '/')
      continue;
    memcpy(prefix, name, i);
    prefix[i] = '\0';
    htri_t e = H5Lexists(loc, prefix, H5P_DEFAULT);
    result = e < 0 ? -1 : e > 0 ? 1 : 0;
  }
  free(prefix);
  return result;
}

/* Opens dataset 'name' (which the caller knows exists or wants required).
 * 'expected' describes it for the messages. */
static clara_status open_dataset(const char *path, hid_t fid, const char *name,
                                 const char *expected, hid_t *out) {
  char detail[256];
  hid_t obj;
  H5I_type_t t;
  int e = object_exists(fid, name);
  if (e < 0)
    return file_fail(CLARA_ERR_IO, path, "%s: cannot look it up%s", name,
                     clara_h5_detail(detail, sizeof detail));
  if (e == 0)
    return file_fail(CLARA_ERR_FORMAT, path, "%s: missing (expected %s)", name,
                     expected);
  obj = H5Oopen(fid, name, H5P_DEFAULT);
  if (obj < 0)
    return file_fail(CLARA_ERR_IO, path, "%s: cannot open%s", name,
                     clara_h5_detail(detail, sizeof detail));
  t = H5Iget_type(obj);
  if (t != H5I_DATASET) {
    clara_status status =
        file_fail(CLARA_ERR_FORMAT, path, "%s: expected %s, found %s", name,
                  expected, id_type_name(t));
    h5_close(H5Oclose, &obj, &status, path);
    return status;
  }
  *out = obj;
  return CLARA_OK;
}

/* The shape of a dataset: rank 1..4, each dimension 1..INT_MAX. A scalar
 * dataspace reads as rank 0. */
static clara_status dataset_shape(const char *path, const char *name,
                                  hid_t dset, const char *expected, int *rank,
                                  hsize_t dims[4]) {
  clara_status status = CLARA_OK;
  hid_t space = H5I_INVALID_HID;
  H5S_class_t scls;
  char detail[256];
  int nd;

  space = H5Dget_space(dset);
  if (space < 0) {
    status = file_fail(CLARA_ERR_IO, path, "%s: cannot get its dataspace%s",
                       name, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  scls = H5Sget_simple_extent_type(space);
  if (scls == H5S_NO_CLASS) {
    status = file_fail(CLARA_ERR_IO, path, "%s: cannot get its extent%s", name,
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  if (scls == H5S_NULL) {
    status = file_fail(CLARA_ERR_FORMAT, path,
                       "%s: %s expected, found an empty (null) dataspace", name,
                       expected);
    goto done;
  }
  nd = H5Sget_simple_extent_ndims(space);
  if (nd < 0) {
    status = file_fail(CLARA_ERR_IO, path, "%s: cannot get its rank%s", name,
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  if (nd > 4) {
    status = file_fail(CLARA_ERR_FORMAT, path, "%s: %s expected, found rank %d",
                       name, expected, nd);
    goto done;
  }
  if (nd > 0 && H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
    status = file_fail(CLARA_ERR_IO, path, "%s: cannot get its shape%s", name,
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  for (int i = 0; i < nd; i++)
    if (dims[i] == 0 || dims[i] > (hsize_t)INT_MAX) {
      status =
          file_fail(CLARA_ERR_FORMAT, path,
                    "%s: %s expected, dimension %d is %llu (must be in "
                    "1..%d)",
                    name, expected, i, (unsigned long long)dims[i], INT_MAX);
      goto done;
    }
  *rank = nd;
done:
  h5_close(H5Sclose, &space, &status, path);
  return status;
}

/* Reads a string dataset holding one string (scalar or [1]; variable or
 * fixed length) into a malloc'ed, NUL-terminated copy. */
static clara_status read_string_dataset(const char *path, hid_t dset,
                                        const char *name, char **out,
                                        size_t *len_out) {
  clara_status status = CLARA_OK;
  hid_t type = H5I_INVALID_HID, mem = H5I_INVALID_HID;
  hsize_t dims[4];
  H5T_class_t cls;
  H5T_cset_t cset;
  char detail[256];
  char *text = NULL;
  size_t len = 0;
  htri_t vl;
  int rank;

  type = H5Dget_type(dset);
  if (type < 0) {
    status = file_fail(CLARA_ERR_IO, path, "%s: cannot get its datatype%s",
                       name, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  cls = H5Tget_class(type);
  if (cls == H5T_NO_CLASS) {
    status = file_fail(CLARA_ERR_IO, path, "%s: cannot get its type class%s",
                       name, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  if (cls != H5T_STRING) {
    status = file_fail(CLARA_ERR_FORMAT, path,
                       "%s: a string (the XML header) expected, found type "
                       "class %s",
                       name, clara_h5_class_name(cls));
    goto done;
  }
  status = dataset_shape(path, name, dset, "one string", &rank, dims);
  if (status != CLARA_OK)
    goto done;
  if (rank > 1 || (rank == 1 && dims[0] != 1)) {
    status = file_fail(CLARA_ERR_FORMAT, path,
                       "%s: one string expected (scalar or [1]), found rank "
                       "%d with %llu elements",
                       name, rank, (unsigned long long)dims[0]);
    goto done;
  }
  cset = H5Tget_cset(type);
  vl = H5Tis_variable_str(type);
  mem = H5Tcopy(H5T_C_S1);
  /* HDF5 converts no character sets: read in the file's own. */
  if (cset < 0 || vl < 0 || mem < 0 || H5Tset_cset(mem, cset) < 0) {
    status =
        file_fail(CLARA_ERR_IO, path, "%s: cannot set up the string type%s",
                  name, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  if (vl > 0) {
    char *vs = NULL;
    if (H5Tset_size(mem, H5T_VARIABLE) < 0 ||
        H5Dread(dset, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, &vs) < 0) {
      status = file_fail(CLARA_ERR_IO, path, "%s: reading failed%s", name,
                         clara_h5_detail(detail, sizeof detail));
      goto done;
    }
    len = vs ? strlen(vs) : 0;
    if (len <= MAX_XML_BYTES) {
      text = malloc(len + 1);
      if (text) {
        if (len)
          memcpy(text, vs, len);
        text[len] = '\0';
      }
    }
    if (vs && H5free_memory(vs) < 0) {
      status = file_fail(CLARA_ERR_IO, path, "%s: cannot free HDF5's copy%s",
                         name, clara_h5_detail(detail, sizeof detail));
      goto done;
    }
    if (len > MAX_XML_BYTES) {
      status = file_fail(CLARA_ERR_FORMAT, path,
                         "%s: a string of at most %zu bytes expected, found "
                         "%zu",
                         name, MAX_XML_BYTES, len);
      goto done;
    }
  } else {
    size_t size = H5Tget_size(type);
    if (size == 0) {
      status = file_fail(CLARA_ERR_IO, path, "%s: cannot get the string size%s",
                         name, clara_h5_detail(detail, sizeof detail));
      goto done;
    }
    if (size > MAX_XML_BYTES) {
      status = file_fail(CLARA_ERR_FORMAT, path,
                         "%s: a string of at most %zu bytes expected, found "
                         "%zu",
                         name, MAX_XML_BYTES, size);
      goto done;
    }
    text = malloc(size + 1);
    if (text) {
      if (H5Tset_size(mem, size + 1) < 0 ||
          H5Tset_strpad(mem, H5T_STR_NULLTERM) < 0 ||
          H5Dread(dset, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, text) < 0) {
        status = file_fail(CLARA_ERR_IO, path, "%s: reading failed%s", name,
                           clara_h5_detail(detail, sizeof detail));
        goto done;
      }
      text[size] = '\0';
      len = strlen(text);
    }
  }
  if (!text) {
    status =
        file_fail(CLARA_ERR_OUT_OF_MEMORY, path,
                  "%s: cannot allocate %zu bytes for its copy", name, len + 1);
    goto done;
  }
  *out = text;
  *len_out = len;
  text = NULL;
done:
  free(text);
  h5_close(H5Tclose, &mem, &status, path);
  h5_close(H5Tclose, &type, &status, path);
  return status;
}

/* Allocates count floats, zeroed, 64-byte aligned, naming 'what' on
 * failure. */
static clara_status alloc_floats(const char *path, const char *what,
                                 size_t count, float **out) {
  size_t bytes;
  if (clara_size_mul(count, sizeof(float), &bytes) != 0)
    return file_fail(CLARA_ERR_OUT_OF_MEMORY, path,
                     "%s: %zu floats overflow the address space", what, count);
  *out = clara_aligned_calloc(count ? count : 1, sizeof(float));
  if (!*out)
    return file_fail(CLARA_ERR_OUT_OF_MEMORY, path,
                     "%s: cannot allocate %zu bytes", what, bytes);
  return CLARA_OK;
}

/* ------------------------------------------------------------------------ */
/* XML (libxml2)                                                             */
/* ------------------------------------------------------------------------ */

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;
static void xml_init_once(void) { xmlInitParser(); }

typedef struct xml_err {
  char text[200];
  int line;
  int have;
} xml_err;

static void xml_silent_generic(void *ctx, const char *msg, ...) {
  (void)ctx;
  (void)msg;
}

#if LIBXML_VERSION >= 21200
static void xml_silent_structured(void *user, const xmlError *err) {
#else
static void xml_silent_structured(void *user, xmlErrorPtr err) {
#endif
  xml_err *e = user;
  if (!e || e->have || !err || err->level < XML_ERR_ERROR)
    return;
  snprintf(e->text, sizeof e->text, "%s", err->message ? err->message : "");
  /* libxml2's messages end with a newline */
  for (size_t n = strlen(e->text);
       n > 0 && (e->text[n - 1] == '\n' || e->text[n - 1] == '\r');)
    e->text[--n] = '\0';
  e->line = err->line;
  e->have = 1;
}

/* Parses 'text' without network access, entity expansion or printing. */
static clara_status xml_parse(const char *path, const char *name,
                              const char *text, size_t len, xmlDocPtr *out) {
  xmlGenericErrorFunc old_generic;
  xmlStructuredErrorFunc old_structured;
  void *old_generic_ctx, *old_structured_ctx;
  xml_err err;
  xmlDocPtr doc;

  if (len > (size_t)INT_MAX)
    return file_fail(CLARA_ERR_FORMAT, path, "%s: XML of %zu bytes is too long",
                     name, len);
  (void)pthread_once(&xml_once, xml_init_once);
  memset(&err, 0, sizeof err);
  /* These handlers are per thread in libxml2: set them for this parse only
   * and give the caller's back. */
  old_generic = xmlGenericError;
  old_generic_ctx = xmlGenericErrorContext;
  old_structured = xmlStructuredError;
  old_structured_ctx = xmlStructuredErrorContext;
  xmlSetGenericErrorFunc(NULL, xml_silent_generic);
  xmlSetStructuredErrorFunc(&err, xml_silent_structured);
  doc =
      xmlReadMemory(text, (int)len, NULL, NULL,
                    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
  xmlSetStructuredErrorFunc(old_structured_ctx, old_structured);
  xmlSetGenericErrorFunc(old_generic_ctx, old_generic);
  if (!doc)
    return file_fail(CLARA_ERR_FORMAT, path,
                     "%s: the XML header does not parse: %s (line %d)", name,
                     err.have ? err.text : "unknown error", err.line);
  *out = doc;
  return CLARA_OK;
}

static int xml_is(const xmlNode *n, const char *name) {
  return n && n->type == XML_ELEMENT_NODE && n->name &&
         strcmp((const char *)n->name, name) == 0;
}

/* The first element child of 'parent' with local name 'name', or NULL. */
static xmlNode *xml_child(const xmlNode *parent, const char *name) {
  if (!parent)
    return NULL;
  for (xmlNode *c = parent->children; c; c = c->next)
    if (xml_is(c, name))
      return c;
  return NULL;
}

/* Follows a '/'-separated path of element names below 'node'. */
static xmlNode *xml_find(xmlNode *node, const char *rel) {
  char part[64];
  xmlNode *cur = node;
  while (cur && *rel) {
    size_t n = strcspn(rel, "/");
    if (n == 0 || n >= sizeof part)
      return NULL;
    memcpy(part, rel, n);
    part[n] = '\0';
    cur = xml_child(cur, part);
    rel += n;
    if (*rel == '/')
      rel++;
  }
  return cur;
}

/* Reads the integer content of element 'rel' below 'base' ('where' names
 * base in messages). Absent: CLARA_OK with *present 0 (a FORMAT error when
 * 'required'). Present: must be an integer in [lo, hi]. */
static clara_status xml_int(const char *path, const char *dsname, xmlNode *base,
                            const char *where, const char *rel, int required,
                            long lo, long hi, long *out, int *present) {
  xmlNode *node = xml_find(base, rel);
  xmlChar *content;
  const char *s;
  char *end;
  long v;
  int ok;

  *present = 0;
  if (!node)
    return required ? file_fail(CLARA_ERR_FORMAT, path,
                                "%s: %s/%s: missing (expected an integer in "
                                "%ld..%ld)",
                                dsname, where, rel, lo, hi)
                    : CLARA_OK;
  content = xmlNodeGetContent(node);
  if (!content)
    return file_fail(CLARA_ERR_OUT_OF_MEMORY, path,
                     "%s: %s/%s: cannot copy its content", dsname, where, rel);
  s = (const char *)content;
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
    s++;
  errno = 0;
  v = strtol(s, &end, 10);
  ok = end != s && errno == 0;
  while (ok && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
    end++;
  ok = ok && *end == '\0' && v >= lo && v <= hi;
  if (!ok) {
    clara_status st =
        file_fail(CLARA_ERR_FORMAT, path,
                  "%s: %s/%s: an integer in %ld..%ld expected, "
                  "found \"%.40s\"",
                  dsname, where, rel, lo, hi, (const char *)content);
    xmlFree(content);
    return st;
  }
  xmlFree(content);
  *out = v;
  *present = 1;
  return CLARA_OK;
}

/* Reads a matrixSize element (x, y, z) below 'base'. */
static clara_status xml_matrix(const char *path, const char *dsname,
                               xmlNode *base, const char *where, int required,
                               int m[3], int *present) {
  static const char *const axes[3] = {"matrixSize/x", "matrixSize/y",
                                      "matrixSize/z"};
  long v;
  int p;
  *present = 0;
  if (!xml_child(base, "matrixSize"))
    return required ? file_fail(CLARA_ERR_FORMAT, path,
                                "%s: %s/matrixSize: missing (expected x, y, "
                                "z)",
                                dsname, where)
                    : CLARA_OK;
  for (int i = 0; i < 3; i++) {
    /* z may be left out for 2D data */
    clara_status st = xml_int(path, dsname, base, where, axes[i], i < 2, 1,
                              MAX_MATRIX, &v, &p);
    if (st != CLARA_OK)
      return st;
    m[i] = p ? (int)v : 1;
  }
  *present = 1;
  return CLARA_OK;
}

/* Reads one limit (minimum, maximum, center) of <encodingLimits>. */
static clara_status xml_limit_read(const char *path, const char *dsname,
                                   xmlNode *limits, const char *where,
                                   const char *name, xml_limit *out) {
  xmlNode *node = xml_child(limits, name);
  char w[160];
  long v[3];
  int p[3];
  static const char *const parts[3] = {"minimum", "maximum", "center"};
  memset(out, 0, sizeof *out);
  if (!node)
    return CLARA_OK;
  snprintf(w, sizeof w, "%s/%s", where, name);
  for (int i = 0; i < 3; i++) {
    clara_status st =
        xml_int(path, dsname, node, w, parts[i], 1, 0, 65535, &v[i], &p[i]);
    if (st != CLARA_OK)
      return st;
  }
  if (v[0] > v[1])
    return file_fail(CLARA_ERR_FORMAT, path,
                     "%s: %s: minimum %ld is greater than maximum %ld", dsname,
                     w, v[0], v[1]);
  out->present = 1;
  out->minimum = v[0];
  out->maximum = v[1];
  out->center = v[2];
  return CLARA_OK;
}

/* Informational values (clara_mr_file_study) never fail the open: absent,
 * empty or malformed elements read as "" or 0. */

/* The text of element 'rel' below 'base', without the white space around
 * it, in out[size] (size > 0), cut at a UTF-8 character boundary when
 * longer; "" when absent (or when libxml2 cannot copy it). */
static void xml_text(xmlNode *base, const char *rel, char *out, size_t size) {
  xmlNode *node = xml_find(base, rel);
  xmlChar *content;
  const char *s;
  size_t n;
  out[0] = '\0';
  if (!node || !(content = xmlNodeGetContent(node)))
    return;
  s = (const char *)content;
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
    s++;
  n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' ||
                   s[n - 1] == '\r'))
    n--;
  if (n > size - 1) {
    n = size - 1;
    /* back to the start of a character: never half of a UTF-8 sequence */
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
      n--;
  }
  memcpy(out, s, n);
  out[n] = '\0';
  xmlFree(content);
}

/* The number in element 'rel' below 'base'; 0 when absent, not a number
 * (with nothing but white space around it) or not finite. */
static double xml_real(xmlNode *base, const char *rel) {
  char text[64], *end;
  double v;
  xml_text(base, rel, text, sizeof text);
  if (!text[0])
    return 0;
  errno = 0;
  v = strtod(text, &end);
  if (end == text || *end || errno == ERANGE || !isfinite(v))
    return 0;
  return v;
}

/* The file-wide part of clara_mr_study from the header's root. */
static void parse_study(xmlNode *root, clara_mr_study *st) {
  xmlNode *n;
  memset(st, 0, sizeof *st);
  st->has_header = 1;
#define TEXT(field, rel) xml_text(n, rel, st->field, sizeof st->field)
  n = xml_child(root, "subjectInformation");
  TEXT(patient_name, "patientName");
  TEXT(patient_id, "patientID");
  TEXT(patient_birth_date, "patientBirthdate");
  TEXT(patient_sex, "patientGender");
  st->patient_weight_kg = xml_real(n, "patientWeight_kg");
  n = xml_child(root, "studyInformation");
  TEXT(study_date, "studyDate");
  TEXT(study_time, "studyTime");
  TEXT(study_id, "studyID");
  TEXT(study_instance_uid, "studyInstanceUID");
  TEXT(accession_number, "accessionNumber");
  TEXT(referring_physician, "referringPhysicianName");
  TEXT(study_description, "studyDescription");
  TEXT(body_part, "bodyPartExamined");
  n = xml_child(root, "measurementInformation");
  TEXT(series_date, "seriesDate");
  TEXT(series_time, "seriesTime");
  TEXT(patient_position, "patientPosition");
  TEXT(protocol_name, "protocolName");
  TEXT(sequence_name, "sequenceName");
  TEXT(series_description, "seriesDescription");
  TEXT(frame_of_reference_uid, "frameOfReferenceUID");
  n = xml_child(root, "acquisitionSystemInformation");
  TEXT(manufacturer, "systemVendor");
  TEXT(manufacturer_model, "systemModel");
  TEXT(institution_name, "institutionName");
  TEXT(station_name, "stationName");
  st->field_strength_t = xml_real(n, "systemFieldStrength_T");
  n = xml_child(root, "sequenceParameters");
  /* xml_find takes the first element of each name: the first of a list */
  st->tr_ms = xml_real(n, "TR");
  st->te_ms = xml_real(n, "TE");
  st->ti_ms = xml_real(n, "TI");
  st->flip_angle_deg = xml_real(n, "flipAngle_deg");
  TEXT(sequence_type, "sequence_type");
#undef TEXT
}

/* An encoding's fields of view and echo train length. */
static void parse_encoding_facts(xmlNode *enc, mr_encoding *e) {
  static const char *const ax[3] = {"fieldOfView_mm/x", "fieldOfView_mm/y",
                                    "fieldOfView_mm/z"};
  xmlNode *es = xml_child(enc, "encodedSpace");
  xmlNode *rs = xml_child(enc, "reconSpace");
  for (int i = 0; i < 3; i++) {
    e->enc_fov[i] = xml_real(es, ax[i]);
    e->recon_fov[i] = xml_real(rs, ax[i]);
    if (e->enc_fov[i] < 0)
      e->enc_fov[i] = 0;
    if (e->recon_fov[i] < 0)
      e->recon_fov[i] = 0;
  }
  {
    double etl = xml_real(enc, "echoTrainLength");
    e->echo_train = etl >= 1 && etl <= INT_MAX ? (int)etl : 0;
  }
}

/* The shift that moves a limit's centre to n/2, when the limit gives one
 * that is consistent with a matrix of n; else 0. */
static int center_offset(const xml_limit *l, int n) {
  long off;
  if (!l->present || l->center == 0)
    return 0;
  off = (long)(n / 2) - l->center;
  if (off == 0 || l->minimum + off < 0 || l->maximum + off > (long)n - 1)
    return 0;
  return (int)off;
}

/* Parses the ISMRMRD header: every <encoding> (up to MAX_ENCODINGS) and
 * the receiver channel count. 'fastmri' reads only the matrices. */
static clara_status parse_header(const char *path, const char *dsname,
                                 const char *text, size_t len, int fastmri,
                                 mr_header *h) {
  clara_status status;
  xmlDocPtr doc = NULL;
  xmlNode *root, *node;
  long v;
  int p;

  memset(h, 0, sizeof *h);
  status = xml_parse(path, dsname, text, len, &doc);
  if (status != CLARA_OK)
    return status;
  root = xmlDocGetRootElement(doc);
  if (!xml_is(root, "ismrmrdHeader")) {
    status =
        file_fail(CLARA_ERR_FORMAT, path,
                  "%s: root element ismrmrdHeader expected, found %s", dsname,
                  root && root->name ? (const char *)root->name : "none");
    goto done;
  }
  if (!fastmri) {
    status = xml_int(path, dsname, root, "ismrmrdHeader",
                     "acquisitionSystemInformation/receiverChannels", 0, 1,
                     65535, &v, &p);
    if (status != CLARA_OK)
      goto done;
    h->receiver_channels = p ? (int)v : 0;
  }
  parse_study(root, &h->study);
  for (node = root->children; node; node = node->next) {
    mr_encoding *e;
    xmlNode *space, *limits, *pi;
    char where[64];
    if (!xml_is(node, "encoding"))
      continue;
    if (h->count == MAX_ENCODINGS) {
      status = file_fail(CLARA_ERR_FORMAT, path,
                         "%s: at most %d <encoding> elements supported", dsname,
                         MAX_ENCODINGS);
      goto done;
    }
    e = &h->enc[h->count];
    snprintf(where, sizeof where, "encoding[%d]", h->count);
    h->count++;
    e->accel[0] = e->accel[1] = 1;

    space = xml_child(node, "encodedSpace");
    if (!space) {
      status = file_fail(CLARA_ERR_FORMAT, path,
                         "%s: %s/encodedSpace: missing (expected the encoded "
                         "matrix size)",
                         dsname, where);
      goto done;
    }
    {
      char w[96];
      snprintf(w, sizeof w, "%s/encodedSpace", where);
      status = xml_matrix(path, dsname, space, w, 1, e->enc, &p);
      if (status != CLARA_OK)
        goto done;
    }
    space = xml_child(node, "reconSpace");
    if (space) {
      char w[96];
      snprintf(w, sizeof w, "%s/reconSpace", where);
      status = xml_matrix(path, dsname, space, w, 0, e->recon, &p);
      if (status != CLARA_OK)
        goto done;
    }
    parse_encoding_facts(node, e);
    if (fastmri)
      continue;

    {
      xmlNode *traj = xml_child(node, "trajectory");
      if (traj) {
        xmlChar *c = xmlNodeGetContent(traj);
        int cart;
        if (!c) {
          status = file_fail(CLARA_ERR_OUT_OF_MEMORY, path,
                             "%s: %s/trajectory: cannot copy its content",
                             dsname, where);
          goto done;
        }
        cart = strcmp((const char *)c, "cartesian") == 0 ||
               strcmp((const char *)c, "epi") == 0;
        if (!cart)
          status = file_fail(CLARA_ERR_UNSUPPORTED, path,
                             "%s: %s/trajectory: cartesian (or epi) expected, "
                             "found \"%.40s\"",
                             dsname, where, (const char *)c);
        xmlFree(c);
        if (status != CLARA_OK)
          goto done;
      }
    }
    limits = xml_child(node, "encodingLimits");
    if (limits) {
      char w[96];
      snprintf(w, sizeof w, "%s/encodingLimits", where);
      if ((status = xml_limit_read(path, dsname, limits, w,
                                   "kspace_encoding_step_1", &e->e1)) !=
              CLARA_OK ||
          (status = xml_limit_read(path, dsname, limits, w,
                                   "kspace_encoding_step_2", &e->e2)) !=
              CLARA_OK ||
          (status = xml_limit_read(path, dsname, limits, w, "slice",
                                   &e->slice)) != CLARA_OK ||
          (status = xml_limit_read(path, dsname, limits, w, "contrast",
                                   &e->contrast)) != CLARA_OK ||
          (status = xml_limit_read(path, dsname, limits, w, "repetition",
                                   &e->repetition)) != CLARA_OK ||
          (status = xml_limit_read(path, dsname, limits, w, "set", &e->set)) !=
              CLARA_OK)
        goto done;
    }
    e->offset[0] = center_offset(&e->e1, e->enc[1]);
    e->offset[1] = center_offset(&e->e2, e->enc[2]);
    pi = xml_child(node, "parallelImaging");
    if (pi) {
      char w[96];
      xmlNode *mode = xml_child(pi, "calibrationMode");
      snprintf(w, sizeof w, "%s/parallelImaging", where);
      status = xml_int(path, dsname, pi, w,
                       "accelerationFactor/kspace_encoding_step_1", 0, 1, 1024,
                       &v, &p);
      if (status != CLARA_OK)
        goto done;
      if (p)
        e->accel[0] = (int)v;
      status = xml_int(path, dsname, pi, w,
                       "accelerationFactor/kspace_encoding_step_2", 0, 1, 1024,
                       &v, &p);
      if (status != CLARA_OK)
        goto done;
      if (p)
        e->accel[1] = (int)v;
      if (mode) {
        xmlChar *c = xmlNodeGetContent(mode);
        if (!c) {
          status = file_fail(CLARA_ERR_OUT_OF_MEMORY, path,
                             "%s: %s/calibrationMode: cannot copy its content",
                             dsname, w);
          goto done;
        }
        e->separate = strcmp((const char *)c, "separate") == 0 ||
                      strcmp((const char *)c, "external") == 0;
        xmlFree(c);
      }
    }
  }
  if (h->count == 0)
    status = file_fail(CLARA_ERR_FORMAT, path,
                       "%s: no <encoding> element (expected at least one with "
                       "encodedSpace/matrixSize)",
                       dsname);
done:
  xmlFreeDoc(doc);
  return status;
}

/* ------------------------------------------------------------------------ */
/* ISMRMRD                                                                   */
/* ------------------------------------------------------------------------ */

/* Checks that compound 'type' has member 'name' of class 'want' (or
 * H5T_NO_CLASS for any); hands back its type in *sub when sub is given. */
static clara_status check_member(const char *path, hid_t type,
                                 const char *prefix, const char *name,
                                 H5T_class_t want, const char *expected,
                                 hid_t *sub) {
  char detail[256];
  int idx = H5Tget_member_index(type, name);
  H5T_class_t cls;
  if (idx < 0) {
    (void)H5Eclear2(H5E_DEFAULT);
    return file_fail(CLARA_ERR_FORMAT, path,
                     "/dataset/data: member %s%s missing (expected %s)", prefix,
                     name, expected);
  }
  cls = H5Tget_member_class(type, (unsigned)idx);
  if (cls == H5T_NO_CLASS)
    return file_fail(CLARA_ERR_IO, path,
                     "/dataset/data: member %s%s: cannot get its class%s",
                     prefix, name, clara_h5_detail(detail, sizeof detail));
  if (want != H5T_NO_CLASS && cls != want)
    return file_fail(CLARA_ERR_FORMAT, path,
                     "/dataset/data: member %s%s: %s expected, found type "
                     "class %s",
                     prefix, name, expected, clara_h5_class_name(cls));
  if (sub) {
    *sub = H5Tget_member_type(type, (unsigned)idx);
    if (*sub < 0)
      return file_fail(CLARA_ERR_IO, path,
                       "/dataset/data: member %s%s: cannot get its type%s",
                       prefix, name, clara_h5_detail(detail, sizeof detail));
  }
  return CLARA_OK;
}

/* Checks the file's acquisition type: head (with the fields we read) and
 * data (variable-length float). */
static clara_status check_acq_type(const char *path, hid_t ftype) {
  static const char *const head_fields[] = {
      "version",     "flags",        "number_of_samples", "active_channels",
      "discard_pre", "discard_post", "center_sample",     "encoding_space_ref"};
  static const char *const idx_fields[] = {"kspace_encode_step_1",
                                           "kspace_encode_step_2",
                                           "average",
                                           "slice",
                                           "contrast",
                                           "phase",
                                           "repetition",
                                           "set"};
  clara_status status = CLARA_OK;
  hid_t head = H5I_INVALID_HID, idx = H5I_INVALID_HID;
  hid_t data = H5I_INVALID_HID, base = H5I_INVALID_HID;
  H5T_class_t cls;
  char detail[256];

  cls = H5Tget_class(ftype);
  if (cls == H5T_NO_CLASS) {
    status = file_fail(CLARA_ERR_IO, path,
                       "/dataset/data: cannot get its type class%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  if (cls != H5T_COMPOUND) {
    status = file_fail(CLARA_ERR_FORMAT, path,
                       "/dataset/data: a compound of head, traj and data "
                       "expected (ISMRMRD acquisitions), found type class %s",
                       clara_h5_class_name(cls));
    goto done;
  }
  status = check_member(path, ftype, "", "head", H5T_COMPOUND,
                        "the AcquisitionHeader compound", &head);
  if (status != CLARA_OK)
    goto done;
  for (size_t i = 0; i < sizeof head_fields / sizeof *head_fields; i++) {
    status = check_member(path, head, "head.", head_fields[i], H5T_INTEGER,
                          "an integer", NULL);
    if (status != CLARA_OK)
      goto done;
  }
  status = check_member(path, head, "head.", "idx", H5T_COMPOUND,
                        "the EncodingCounters compound", &idx);
  if (status != CLARA_OK)
    goto done;
  for (size_t i = 0; i < sizeof idx_fields / sizeof *idx_fields; i++) {
    status = check_member(path, idx, "head.idx.", idx_fields[i], H5T_INTEGER,
                          "an integer", NULL);
    if (status != CLARA_OK)
      goto done;
  }
  status = check_member(path, ftype, "", "data", H5T_VLEN,
                        "variable-length float32 (interleaved complex)", &data);
  if (status != CLARA_OK)
    goto done;
  base = H5Tget_super(data);
  if (base < 0) {
    status = file_fail(CLARA_ERR_IO, path,
                       "/dataset/data: member data: cannot get its base "
                       "type%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  cls = H5Tget_class(base);
  if (cls != H5T_FLOAT) {
    status = file_fail(CLARA_ERR_FORMAT, path,
                       "/dataset/data: member data: variable-length float32 "
                       "expected, found variable-length %s",
                       clara_h5_class_name(cls));
    goto done;
  }
done:
  h5_close(H5Tclose, &base, &status, path);
  h5_close(H5Tclose, &data, &status, path);
  h5_close(H5Tclose, &idx, &status, path);
  h5_close(H5Tclose, &head, &status, path);
  return status;
}

/* Builds the memory type of acq_rec. */
static clara_status make_acq_memtype(const char *path, hid_t *out) {
  clara_status status = CLARA_OK;
  hid_t idx = H5I_INVALID_HID, head = H5I_INVALID_HID;
  hid_t vl = H5I_INVALID_HID, rec = H5I_INVALID_HID;
  char detail[256];
  int bad = 0;

  idx = H5Tcreate(H5T_COMPOUND, sizeof(acq_idx));
  head = H5Tcreate(H5T_COMPOUND, sizeof(acq_head));
  vl = H5Tvlen_create(H5T_NATIVE_FLOAT);
  rec = H5Tcreate(H5T_COMPOUND, sizeof(acq_rec));
  if (idx < 0 || head < 0 || vl < 0 || rec < 0) {
    bad = 1;
    goto check;
  }
#define INS(t, s, m, ty) bad |= H5Tinsert(t, #m, HOFFSET(s, m), ty) < 0
  INS(idx, acq_idx, kspace_encode_step_1, H5T_NATIVE_UINT16);
  INS(idx, acq_idx, kspace_encode_step_2, H5T_NATIVE_UINT16);
  INS(idx, acq_idx, average, H5T_NATIVE_UINT16);
  INS(idx, acq_idx, slice, H5T_NATIVE_UINT16);
  INS(idx, acq_idx, contrast, H5T_NATIVE_UINT16);
  INS(idx, acq_idx, phase, H5T_NATIVE_UINT16);
  INS(idx, acq_idx, repetition, H5T_NATIVE_UINT16);
  INS(idx, acq_idx, set, H5T_NATIVE_UINT16);
  INS(head, acq_head, flags, H5T_NATIVE_UINT64);
  INS(head, acq_head, version, H5T_NATIVE_UINT16);
  INS(head, acq_head, number_of_samples, H5T_NATIVE_UINT16);
  INS(head, acq_head, active_channels, H5T_NATIVE_UINT16);
  INS(head, acq_head, discard_pre, H5T_NATIVE_UINT16);
  INS(head, acq_head, discard_post, H5T_NATIVE_UINT16);
  INS(head, acq_head, center_sample, H5T_NATIVE_UINT16);
  INS(head, acq_head, encoding_space_ref, H5T_NATIVE_UINT16);
  INS(head, acq_head, idx, idx);
  INS(rec, acq_rec, head, head);
  INS(rec, acq_rec, data, vl);
#undef INS
check:
  if (bad) {
    status = file_fail(CLARA_ERR_IO, path,
                       "cannot build the acquisition memory type%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  *out = rec;
  rec = H5I_INVALID_HID;
done:
  h5_close(H5Tclose, &rec, &status, path);
  h5_close(H5Tclose, &vl, &status, path);
  h5_close(H5Tclose, &head, &status, path);
  h5_close(H5Tclose, &idx, &status, path);
  return status;
}

/* What pass 1 learns about one acquisition. */
typedef struct acq_plan {
  int role;   /* ROLE_* */
  int set;    /* index into the dataset list (images) */
  int ky, kz; /* placed lines */
  int kx0;    /* kx of the first kept sample */
  int kept;   /* samples kept (number_of_samples less the discards) */
} acq_plan;

enum { ROLE_SKIP = 0, ROLE_NOISE = 1, ROLE_IMAGE = 2 };

/* A dataset being gathered. */
typedef struct set_build {
  int encoding, contrast, repetition, set;
  int ky_min, ky_max, kx_min, kx_max;
} set_build;

static int set_cmp(const set_build *a, const set_build *b) {
  if (a->encoding != b->encoding)
    return a->encoding < b->encoding ? -1 : 1;
  if (a->contrast != b->contrast)
    return a->contrast < b->contrast ? -1 : 1;
  if (a->repetition != b->repetition)
    return a->repetition < b->repetition ? -1 : 1;
  if (a->set != b->set)
    return a->set < b->set ? -1 : 1;
  return 0;
}

/* Checks an index against its encodingLimits maximum. */
static clara_status check_label(const char *path, size_t acq, const char *name,
                                int value, const xml_limit *l, int enc) {
  if (l->present && (value < l->minimum || value > l->maximum))
    return file_fail(CLARA_ERR_FORMAT, path,
                     "/dataset/data: acquisition %zu: head.idx.%s: %ld..%ld "
                     "expected (encoding[%d]/encodingLimits), found %d",
                     acq, name, l->minimum, l->maximum, enc, value);
  return CLARA_OK;
}

/* Pass 1 for an image acquisition: validates it and finds its place. */
static clara_status plan_image(const char *path, size_t i, const acq_rec *a,
                               const mr_header *h, acq_plan *p) {
  const acq_head *hd = &a->head;
  const mr_encoding *e;
  int ns = hd->number_of_samples, nx, ny, nz, off, ky, kz;
  clara_status st;

  if (hd->encoding_space_ref >= h->count)
    return file_fail(CLARA_ERR_FORMAT, path,
                     "/dataset/data: acquisition %zu: head.encoding_space_ref: "
                     "0..%d expected (the XML has %d <encoding>), found %d",
                     i, h->count - 1, h->count, hd->encoding_space_ref);
  e = &h->enc[hd->encoding_space_ref];
  nx = e->enc[0];
  ny = e->enc[1];
  nz = e->enc[2];
  if (hd->discard_pre + hd->discard_post >= ns)
    return file_fail(CLARA_ERR_FORMAT, path,
                     "/dataset/data: acquisition %zu: head.discard_pre %d + "
                     "discard_post %d leave none of its %d samples",
                     i, hd->discard_pre, hd->discard_post, ns);
  /* Sample s of the readout sits at kx = nx/2 - center_sample + s. */
  if (hd->center_sample > 0)
    off = nx / 2 - hd->center_sample;
  else if (ns == nx)
    off = 0;
  else
    return file_fail(CLARA_ERR_FORMAT, path,
                     "/dataset/data: acquisition %zu: head.center_sample: 0 "
                     "(not given) with number_of_samples %d for an encoded x "
                     "of %d: cannot place the readout",
                     i, ns, nx);
  p->kx0 = off + hd->discard_pre;
  p->kept = ns - hd->discard_pre - hd->discard_post;
  if (p->kx0 < 0 || p->kx0 + p->kept > nx)
    return file_fail(CLARA_ERR_FORMAT, path,
                     "/dataset/data: acquisition %zu: head.number_of_samples "
                     "%d (discard_pre %d, discard_post %d, center_sample %d) "
                     "lands at kx %d..%d, outside the encoded matrix x 0..%d",
                     i, ns, hd->discard_pre, hd->discard_post,
                     hd->center_sample, p->kx0, p->kx0 + p->kept - 1, nx - 1);
  ky = hd->idx.kspace_encode_step_1 + e->offset[0];
  kz = hd->idx.kspace_encode_step_2 + e->offset[1];
  if (ky < 0 || ky >= ny)
    return file_fail(CLARA_ERR_FORMAT, path,
                     "/dataset/data: acquisition %zu: "
                     "head.idx.kspace_encode_step_1: %d (+ centre shift %d) "
                     "outside the encoded matrix y 0..%d",
                     i, hd->idx.kspace_encode_step_1, e->offset[0], ny - 1);
  if (kz < 0 || kz >= nz)
    return file_fail(CLARA_ERR_FORMAT, path,
                     "/dataset/data: acquisition %zu: "
                     "head.idx.kspace_encode_step_2: %d (+ centre shift %d) "
                     "outside the encoded matrix z 0..%d",
                     i, hd->idx.kspace_encode_step_2, e->offset[1], nz - 1);
  if ((st = check_label(path, i, "slice", hd->idx.slice, &e->slice,
                        hd->encoding_space_ref)) != CLARA_OK ||
      (st = check_label(path, i, "contrast", hd->idx.contrast, &e->contrast,
                        hd->encoding_space_ref)) != CLARA_OK ||
      (st = check_label(path, i, "repetition", hd->idx.repetition,
                        &e->repetition, hd->encoding_space_ref)) != CLARA_OK ||
      (st = check_label(path, i, "set", hd->idx.set, &e->set,
                        hd->encoding_space_ref)) != CLARA_OK)
    return st;
  p->ky = ky;
  p->kz = kz;
  return CLARA_OK;
}

static void free_sets(mr_set *sets, int count) {
  if (!sets)
    return;
  for (int i = 0; i < count; i++)
    clara_aligned_free(sets[i].kspace);
  free(sets);
}

/* Builds the file's datasets and noise from the acquisitions. */
static clara_status assemble(const char *path, const mr_header *h,
                             const acq_rec *acq, size_t n,
                             clara_mr_file *file) {
  clara_status status = CLARA_OK;
  acq_plan *plan = NULL;
  set_build *builds = NULL;
  mr_set *sets = NULL;
  uint32_t **counts = NULL;
  float *noise = NULL;
  int nsets = 0, cap = 0, last = -1, coils = 0;
  size_t coils_from = 0, noise_total = 0, images = 0;
  int max_slice[MAX_ENCODINGS];

  for (int k = 0; k < MAX_ENCODINGS; k++)
    max_slice[k] = -1;
  plan = calloc(n ? n : 1, sizeof *plan);
  if (!plan) {
    status = file_fail(CLARA_ERR_OUT_OF_MEMORY, path,
                       "/dataset/data: cannot allocate the plan of %zu "
                       "acquisitions",
                       n);
    goto done;
  }

  /* Pass 1: classify and validate every acquisition. */
  for (size_t i = 0; i < n; i++) {
    const acq_head *hd = &acq[i].head;
    acq_plan *p = &plan[i];
    size_t want;
    int ch = hd->active_channels, ns = hd->number_of_samples;

    if (hd->flags & ACQ_IS_NOISE_MEASUREMENT)
      p->role = ROLE_NOISE;
    else if (hd->flags & ACQ_SKIP_MASK)
      p->role = ROLE_SKIP;
    else if ((hd->flags & ACQ_IS_PARALLEL_CALIBRATION) &&
             !(hd->flags & ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING) &&
             hd->encoding_space_ref < h->count &&
             h->enc[hd->encoding_space_ref].separate)
      p->role = ROLE_SKIP; /* a separate reference scan */
    else
      p->role = ROLE_IMAGE;
    if (p->role == ROLE_SKIP)
      continue;

    if (ch < 1 || ns < 1) {
      status = file_fail(CLARA_ERR_FORMAT, path,
                         "/dataset/data: acquisition %zu: head.%s: >= 1 "
                         "expected, found 0",
                         i, ch < 1 ? "active_channels" : "number_of_samples");
      goto done;
    }
    if (coils == 0) {
      coils = ch;
      coils_from = i;
    } else if (ch != coils) {
      status =
          file_fail(CLARA_ERR_FORMAT, path,
                    "/dataset/data: acquisition %zu: head.active_channels: "
                    "%d expected (as in acquisition %zu), found %d",
                    i, coils, coils_from, ch);
      goto done;
    }
    want = (size_t)2 * (size_t)ns * (size_t)ch;
    if (acq[i].data.len != want) {
      status = file_fail(CLARA_ERR_FORMAT, path,
                         "/dataset/data: acquisition %zu: data: 2 x "
                         "number_of_samples %d x active_channels %d = %zu "
                         "floats expected, found %zu",
                         i, ns, ch, want, acq[i].data.len);
      goto done;
    }
    if (p->role == ROLE_NOISE) {
      noise_total += (size_t)ns;
      continue;
    }

    status = plan_image(path, i, &acq[i], h, p);
    if (status != CLARA_OK)
      goto done;
    images++;
    {
      set_build key;
      int found = -1;
      key.encoding = hd->encoding_space_ref;
      key.contrast = hd->idx.contrast;
      key.repetition = hd->idx.repetition;
      key.set = hd->idx.set;
      if (last >= 0 && set_cmp(&builds[last], &key) == 0)
        found = last;
      for (int k = 0; found < 0 && k < nsets; k++)
        if (set_cmp(&builds[k], &key) == 0)
          found = k;
      if (found < 0) {
        if (nsets == cap) {
          int ncap = cap ? cap * 2 : 8;
          set_build *nb = realloc(builds, (size_t)ncap * sizeof *nb);
          if (!nb) {
            status =
                file_fail(CLARA_ERR_OUT_OF_MEMORY, path,
                          "/dataset/data: cannot allocate %d datasets", ncap);
            goto done;
          }
          builds = nb;
          cap = ncap;
        }
        key.ky_min = key.kx_min = INT_MAX;
        key.ky_max = key.kx_max = -1;
        builds[nsets] = key;
        found = nsets++;
      }
      last = found;
      p->set = found;
      {
        set_build *b = &builds[found];
        if (p->ky < b->ky_min)
          b->ky_min = p->ky;
        if (p->ky > b->ky_max)
          b->ky_max = p->ky;
        if (p->kx0 < b->kx_min)
          b->kx_min = p->kx0;
        if (p->kx0 + p->kept - 1 > b->kx_max)
          b->kx_max = p->kx0 + p->kept - 1;
      }
      if (hd->idx.slice > max_slice[key.encoding])
        max_slice[key.encoding] = hd->idx.slice;
    }
  }
  if (images == 0 && noise_total == 0) {
    status =
        file_fail(CLARA_ERR_FORMAT, path,
                  "/dataset/data: no image or noise acquisitions among its "
                  "%zu (all skipped or empty)",
                  n);
    goto done;
  }
  if (h->receiver_channels > 0 && coils != h->receiver_channels) {
    status = file_fail(CLARA_ERR_FORMAT, path,
                       "/dataset/xml: acquisitionSystemInformation/"
                       "receiverChannels: %d, but the acquisitions have "
                       "active_channels %d",
                       h->receiver_channels, coils);
    goto done;
  }
  if (noise_total > (size_t)INT_MAX) {
    status = file_fail(CLARA_ERR_FORMAT, path,
                       "/dataset/data: %zu noise samples per coil exceed %d",
                       noise_total, INT_MAX);
    goto done;
  }

  /* Allocate the datasets (sorted by encoding, contrast, repetition, set)
   * and their line counts. */
  if (nsets > 0) {
    /* insertion sort of the builds; few datasets, usually in order */
    for (int a = 1; a < nsets; a++)
      for (int b = a; b > 0 && set_cmp(&builds[b - 1], &builds[b]) > 0; b--) {
        set_build t = builds[b];
        builds[b] = builds[b - 1];
        builds[b - 1] = t;
      }
    sets = calloc((size_t)nsets, sizeof *sets);
    counts = calloc((size_t)nsets, sizeof *counts);
    if (!sets || !counts) {
      status = file_fail(CLARA_ERR_OUT_OF_MEMORY, path,
                         "cannot allocate %d datasets", nsets);
      goto done;
    }
    for (int k = 0; k < nsets; k++) {
      const set_build *b = &builds[k];
      const mr_encoding *e = &h->enc[b->encoding];
      clara_mr_geometry *g = &sets[k].geom;
      size_t lines, floats;
      g->coils = coils;
      g->nx = e->enc[0];
      g->ny = e->enc[1];
      g->nz = e->enc[2];
      g->slices = max_slice[b->encoding] + 1;
      /* no interpolation: a larger reconstruction space reads as nx */
      g->recon_nx =
          e->recon[0] > 0 && e->recon[0] < g->nx ? e->recon[0] : g->nx;
      g->ky_first = b->ky_min;
      g->ky_last = b->ky_max;
      g->kx_first = b->kx_min;
      g->kx_last = b->kx_max;
      sets[k].encoding = b->encoding;
      sets[k].contrast = b->contrast;
      sets[k].repetition = b->repetition;
      sets[k].set = b->set;
      if (clara_size_mul3((size_t)g->slices, (size_t)g->nz, (size_t)g->ny,
                          &lines) != 0 ||
          clara_size_mul3(lines, (size_t)coils, (size_t)g->nx * 2, &floats) !=
              0) {
        status = file_fail(CLARA_ERR_OUT_OF_MEMORY, path,
                           "dataset %d: %d slices x %d coils x %d x %d x %d "
                           "overflow the address space",
                           k, g->slices, coils, g->nz, g->ny, g->nx);
        goto done;
      }
      status = alloc_floats(path, "k-space", floats, &sets[k].kspace);
      if (status != CLARA_OK)
        goto done;
      sets[k].floats = floats;
      counts[k] = calloc(lines, sizeof **counts);
      if (!counts[k]) {
        status =
            file_fail(CLARA_ERR_OUT_OF_MEMORY, path,
                      "dataset %d: cannot allocate %zu line counts", k, lines);
        goto done;
      }
    }
    /* the plans' set indices refer to the unsorted order: remap */
    for (size_t i = 0; i < n; i++) {
      if (plan[i].role != ROLE_IMAGE)
        continue;
      {
        set_build key;
        const acq_head *hd = &acq[i].head;
        int lo = 0, hi = nsets - 1;
        key.encoding = hd->encoding_space_ref;
        key.contrast = hd->idx.contrast;
        key.repetition = hd->idx.repetition;
        key.set = hd->idx.set;
        while (lo < hi) {
          int mid = (lo + hi) / 2;
          if (set_cmp(&builds[mid], &key) < 0)
            lo = mid + 1;
          else
            hi = mid;
        }
        plan[i].set = lo;
      }
    }
  }
  if (noise_total > 0) {
    size_t floats;
    if (clara_size_mul3(noise_total, (size_t)coils, 2, &floats) != 0) {
      status = file_fail(CLARA_ERR_OUT_OF_MEMORY, path,
                         "noise: %zu samples x %d coils overflow the address "
                         "space",
                         noise_total, coils);
      goto done;
    }
    status = alloc_floats(path, "noise", floats, &noise);
    if (status != CLARA_OK)
      goto done;
  }

  /* Pass 2: copy the samples. */
  {
    size_t noise_at = 0;
    for (size_t i = 0; i < n; i++) {
      const acq_head *hd = &acq[i].head;
      const float *src = acq[i].data.p;
      const acq_plan *p = &plan[i];
      int ns = hd->number_of_samples;
      int rev = (hd->flags & ACQ_IS_REVERSE) != 0;
      if (p->role == ROLE_NOISE) {
        for (int c = 0; c < coils; c++)
          memcpy(noise + ((size_t)c * noise_total + noise_at) * 2,
                 src + (size_t)c * ns * 2, (size_t)ns * 2 * sizeof(float));
        noise_at += (size_t)ns;
      } else if (p->role == ROLE_IMAGE) {
        mr_set *s = &sets[p->set];
        const clara_mr_geometry *g = &s->geom;
        size_t line =
            ((size_t)hd->idx.slice * g->nz + (size_t)p->kz) * (size_t)g->ny +
            (size_t)p->ky;
        counts[p->set][line]++;
        for (int c = 0; c < coils; c++) {
          float *dst = s->kspace +
                       ((((size_t)hd->idx.slice * coils + (size_t)c) * g->nz +
                         (size_t)p->kz) *
                            g->ny +
                        (size_t)p->ky) *
                           g->nx * 2;
          const float *in = src + (size_t)c * ns * 2;
          for (int j = 0; j < p->kept; j++) {
            /* sample index in the readout as acquired; a reversed readout
             * runs backwards */
            int sidx = hd->discard_pre + j;
            if (rev)
              sidx = ns - 1 - sidx;
            dst[(size_t)(p->kx0 + j) * 2] += in[(size_t)sidx * 2];
            dst[(size_t)(p->kx0 + j) * 2 + 1] += in[(size_t)sidx * 2 + 1];
          }
        }
      }
    }
  }
  /* Lines acquired more than once (averages) are averaged. */
  for (int k = 0; k < nsets; k++) {
    const clara_mr_geometry *g = &sets[k].geom;
    size_t lines = (size_t)g->slices * g->nz * g->ny;
    for (size_t l = 0; l < lines; l++) {
      uint32_t cnt = counts[k][l];
      size_t sl = l / ((size_t)g->nz * g->ny),
             rest = l % ((size_t)g->nz * g->ny);
      if (cnt <= 1)
        continue;
      for (int c = 0; c < coils; c++) {
        float *dst = sets[k].kspace +
                     (((size_t)sl * coils + (size_t)c) * g->nz * g->ny + rest) *
                         g->nx * 2;
        for (int x = 0; x < g->nx * 2; x++)
          dst[x] /= (float)cnt;
      }
    }
  }

  file->count = nsets;
  file->sets = sets;
  file->coils = coils;
  file->noise = noise;
  file->noise_samples = (int)noise_total;
  file->accel[0] = h->enc[0].accel[0];
  file->accel[1] = h->enc[0].accel[1];
  sets = NULL;
  noise = NULL;
done:
  if (counts)
    for (int k = 0; k < nsets; k++)
      free(counts[k]);
  free(counts);
  clara_aligned_free(noise);
  free_sets(sets, nsets);
  free(builds);
  free(plan);
  return status;
}

/* Keeps what clara_mr_file_study reports from a parsed header. */
static void keep_header_facts(clara_mr_file *file, const mr_header *h) {
  file->study = h->study;
  file->encodings = h->count;
  for (int k = 0; k < h->count; k++) {
    const mr_encoding *e = &h->enc[k];
    for (int i = 0; i < 3; i++) {
      file->enc_fov[k][i] = e->enc_fov[i];
      file->recon_fov[k][i] = e->recon_fov[i];
      file->enc_matrix[k][i] = e->enc[i];
      file->recon_matrix[k][i] = e->recon[i];
    }
    file->echo_train[k] = e->echo_train;
  }
}

static clara_status read_ismrmrd(const char *path, hid_t fid,
                                 clara_mr_file *file) {
  clara_status status;
  hid_t dxml = H5I_INVALID_HID, dset = H5I_INVALID_HID;
  hid_t ftype = H5I_INVALID_HID, mtype = H5I_INVALID_HID;
  hid_t space = H5I_INVALID_HID;
  acq_rec *acq = NULL;
  mr_header *h = NULL;
  char *xml = NULL;
  size_t xml_len = 0, n = 0;
  hsize_t dims[4];
  char detail[256];
  int rank, read_done = 0;

  h = malloc(sizeof *h);
  if (!h) {
    status =
        file_fail(CLARA_ERR_OUT_OF_MEMORY, path, "cannot allocate the header");
    goto done;
  }
  status = open_dataset(path, fid, "/dataset/xml",
                        "the ISMRMRD XML header, a string dataset", &dxml);
  if (status != CLARA_OK)
    goto done;
  status = read_string_dataset(path, dxml, "/dataset/xml", &xml, &xml_len);
  if (status != CLARA_OK)
    goto done;
  status = parse_header(path, "/dataset/xml", xml, xml_len, 0, h);
  if (status != CLARA_OK)
    goto done;

  status = open_dataset(path, fid, "/dataset/data",
                        "the ISMRMRD acquisitions, a compound dataset", &dset);
  if (status != CLARA_OK)
    goto done;
  ftype = H5Dget_type(dset);
  if (ftype < 0) {
    status = file_fail(CLARA_ERR_IO, path,
                       "/dataset/data: cannot get its datatype%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  status = check_acq_type(path, ftype);
  if (status != CLARA_OK)
    goto done;
  status = dataset_shape(path, "/dataset/data", dset, "rank 1 [acquisitions]",
                         &rank, dims);
  if (status != CLARA_OK)
    goto done;
  if (rank != 1) {
    status = file_fail(CLARA_ERR_FORMAT, path,
                       "/dataset/data: rank 1 [acquisitions] expected, found "
                       "rank %d",
                       rank);
    goto done;
  }
  n = (size_t)dims[0];
  status = make_acq_memtype(path, &mtype);
  if (status != CLARA_OK)
    goto done;
  space = H5Dget_space(dset);
  if (space < 0) {
    status = file_fail(CLARA_ERR_IO, path,
                       "/dataset/data: cannot get its dataspace%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  acq = calloc(n, sizeof *acq); /* zeroed: safe to reclaim after a failure */
  if (!acq) {
    status = file_fail(CLARA_ERR_OUT_OF_MEMORY, path,
                       "/dataset/data: cannot allocate %zu acquisition "
                       "headers",
                       n);
    goto done;
  }
  read_done = 1;
  if (H5Dread(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, acq) < 0) {
    status = file_fail(CLARA_ERR_IO, path,
                       "/dataset/data: reading %zu acquisitions failed%s", n,
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  status = assemble(path, h, acq, n, file);
  if (status == CLARA_OK)
    keep_header_facts(file, h);
done:
  if (read_done) {
#if H5_VERSION_GE(1, 12, 0)
    herr_t r = H5Treclaim(mtype, space, H5P_DEFAULT, acq);
#else
    herr_t r = H5Dvlen_reclaim(mtype, space, H5P_DEFAULT, acq);
#endif
    if (r < 0 && status == CLARA_OK)
      status = file_fail(CLARA_ERR_IO, path,
                         "/dataset/data: freeing HDF5's copies failed%s",
                         clara_h5_detail(detail, sizeof detail));
  }
  free(acq);
  h5_close(H5Sclose, &space, &status, path);
  h5_close(H5Tclose, &mtype, &status, path);
  h5_close(H5Tclose, &ftype, &status, path);
  h5_close(H5Dclose, &dset, &status, path);
  h5_close(H5Dclose, &dxml, &status, path);
  free(xml);
  free(h);
  return status;
}

/* ------------------------------------------------------------------------ */
/* fastMRI                                                                   */
/* ------------------------------------------------------------------------ */

/* Checks that /kspace's type is a complex compound: two float members named
 * r and i (h5py) or real and imag. Hands back the names. */
static clara_status check_complex_type(const char *path, hid_t type,
                                       const char **re, const char **im) {
  static const char *const names[2][2] = {{"r", "i"}, {"real", "imag"}};
  char detail[256];
  H5T_class_t cls = H5Tget_class(type);
  int nm;
  if (cls == H5T_NO_CLASS)
    return file_fail(CLARA_ERR_IO, path, "/kspace: cannot get its type class%s",
                     clara_h5_detail(detail, sizeof detail));
  if (cls != H5T_COMPOUND)
    return file_fail(CLARA_ERR_FORMAT, path,
                     "/kspace: complex64 expected (a compound of float32 r "
                     "and i, as h5py writes it), found type class %s",
                     clara_h5_class_name(cls));
  nm = H5Tget_nmembers(type);
  if (nm < 0)
    return file_fail(CLARA_ERR_IO, path, "/kspace: cannot count its members%s",
                     clara_h5_detail(detail, sizeof detail));
  for (int k = 0; k < 2; k++) {
    int ir = H5Tget_member_index(type, names[k][0]);
    int ii = H5Tget_member_index(type, names[k][1]);
    (void)H5Eclear2(H5E_DEFAULT);
    if (nm != 2 || ir < 0 || ii < 0)
      continue;
    if (H5Tget_member_class(type, (unsigned)ir) != H5T_FLOAT ||
        H5Tget_member_class(type, (unsigned)ii) != H5T_FLOAT)
      return file_fail(CLARA_ERR_FORMAT, path,
                       "/kspace: complex64 expected, found a compound whose "
                       "members %s and %s are not both floats",
                       names[k][0], names[k][1]);
    *re = names[k][0];
    *im = names[k][1];
    return CLARA_OK;
  }
  return file_fail(CLARA_ERR_FORMAT, path,
                   "/kspace: complex64 expected (a compound of exactly two "
                   "floats r and i), found a compound of %d members",
                   nm);
}

/* Reads the optional /ismrmrd_header (a string dataset) into *h; *have says
 * whether it was there. */
static clara_status fastmri_header(const char *path, hid_t fid, mr_header *h,
                                   int *have) {
  clara_status status;
  hid_t d = H5I_INVALID_HID;
  char *xml = NULL;
  size_t len = 0;
  char detail[256];
  int e = object_exists(fid, "/ismrmrd_header");

  *have = 0;
  if (e < 0)
    return file_fail(CLARA_ERR_IO, path, "/ismrmrd_header: cannot look it up%s",
                     clara_h5_detail(detail, sizeof detail));
  if (e == 0)
    return CLARA_OK;
  status = open_dataset(path, fid, "/ismrmrd_header",
                        "the ISMRMRD XML header, a string dataset", &d);
  if (status == CLARA_OK)
    status = read_string_dataset(path, d, "/ismrmrd_header", &xml, &len);
  if (status == CLARA_OK)
    status = parse_header(path, "/ismrmrd_header", xml, len, 1, h);
  if (status == CLARA_OK)
    *have = 1;
  h5_close(H5Dclose, &d, &status, path);
  free(xml);
  return status;
}

/* Reads the optional /reconstruction_rss [slices][x][y] (fastMRI layout,
 * transposed to [slices][y][x]) or [slices][y][x]. */
static clara_status fastmri_reference(const char *path, hid_t fid, int slices,
                                      int transpose, clara_mr_file *file) {
  static const char name[] = "/reconstruction_rss";
  clara_status status = CLARA_OK;
  hid_t d = H5I_INVALID_HID, type = H5I_INVALID_HID;
  float *buf = NULL, *ref = NULL;
  hsize_t dims[4];
  H5T_class_t cls;
  char detail[256];
  size_t count;
  int rank, e = object_exists(fid, name);

  if (e < 0)
    return file_fail(CLARA_ERR_IO, path, "%s: cannot look it up%s", name,
                     clara_h5_detail(detail, sizeof detail));
  if (e == 0)
    return CLARA_OK;
  status =
      open_dataset(path, fid, name, "a float32 dataset [slices][y][x]", &d);
  if (status != CLARA_OK)
    goto done;
  type = H5Dget_type(d);
  if (type < 0) {
    status = file_fail(CLARA_ERR_IO, path, "%s: cannot get its datatype%s",
                       name, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  cls = H5Tget_class(type);
  if (cls != H5T_FLOAT) {
    status = file_fail(CLARA_ERR_FORMAT, path,
                       "%s: float32 [slices][y][x] expected, found type class "
                       "%s",
                       name, clara_h5_class_name(cls));
    goto done;
  }
  status = dataset_shape(path, name, d, "rank 3 [slices][y][x]", &rank, dims);
  if (status != CLARA_OK)
    goto done;
  if (rank != 3) {
    status = file_fail(CLARA_ERR_FORMAT, path,
                       "%s: rank 3 [slices][y][x] expected, found rank %d",
                       name, rank);
    goto done;
  }
  if (dims[0] != (hsize_t)slices) {
    status = file_fail(CLARA_ERR_FORMAT, path,
                       "%s: %d slices expected (as in /kspace), found %llu",
                       name, slices, (unsigned long long)dims[0]);
    goto done;
  }
  if (clara_size_mul3((size_t)dims[0], (size_t)dims[1], (size_t)dims[2],
                      &count) != 0) {
    status = file_fail(CLARA_ERR_OUT_OF_MEMORY, path,
                       "%s: its size overflows the address space", name);
    goto done;
  }
  status = alloc_floats(path, name, count, &buf);
  if (status != CLARA_OK)
    goto done;
  if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
    status = file_fail(CLARA_ERR_IO, path, "%s: reading %zu values failed%s",
                       name, count, clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  if (transpose) {
    size_t a = (size_t)dims[1], b = (size_t)dims[2];
    status = alloc_floats(path, name, count, &ref);
    if (status != CLARA_OK)
      goto done;
    for (size_t s = 0; s < (size_t)dims[0]; s++)
      for (size_t i = 0; i < a; i++)
        for (size_t j = 0; j < b; j++)
          ref[(s * b + j) * a + i] = buf[(s * a + i) * b + j];
    file->ref_ny = (int)b;
    file->ref_nx = (int)a;
  } else {
    ref = buf;
    buf = NULL;
    file->ref_ny = (int)dims[1];
    file->ref_nx = (int)dims[2];
  }
  file->ref_slices = (int)dims[0];
  file->ref = ref;
  ref = NULL;
done:
  clara_aligned_free(ref);
  clara_aligned_free(buf);
  h5_close(H5Tclose, &type, &status, path);
  h5_close(H5Dclose, &d, &status, path);
  return status;
}

static clara_status read_fastmri(const char *path, hid_t fid,
                                 clara_mr_file *file) {
  clara_status status;
  hid_t dset = H5I_INVALID_HID, ftype = H5I_INVALID_HID;
  hid_t mtype = H5I_INVALID_HID, fspace = H5I_INVALID_HID;
  hid_t mspace = H5I_INVALID_HID;
  mr_set *set = NULL;
  float *tmp = NULL;
  mr_header *h = NULL;
  const char *re = NULL, *im = NULL;
  hsize_t dims[4], start[4] = {0, 0, 0, 0}, cnt[4];
  char detail[256];
  int rank, have_header = 0, transpose = 1, slices, coils, a, b;
  size_t plane, floats;

  h = malloc(sizeof *h);
  set = calloc(1, sizeof *set);
  if (!h || !set) {
    status =
        file_fail(CLARA_ERR_OUT_OF_MEMORY, path, "cannot allocate the dataset");
    goto done;
  }
  status =
      open_dataset(path, fid, "/kspace",
                   "complex64 [slices][coils][x][y] or [slices][x][y]", &dset);
  if (status != CLARA_OK)
    goto done;
  ftype = H5Dget_type(dset);
  if (ftype < 0) {
    status = file_fail(CLARA_ERR_IO, path, "/kspace: cannot get its datatype%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  status = check_complex_type(path, ftype, &re, &im);
  if (status != CLARA_OK)
    goto done;
  status = dataset_shape(path, "/kspace", dset,
                         "rank 4 [slices][coils][x][y] or rank 3 "
                         "[slices][x][y]",
                         &rank, dims);
  if (status != CLARA_OK)
    goto done;
  if (rank != 3 && rank != 4) {
    status = file_fail(CLARA_ERR_FORMAT, path,
                       "/kspace: rank 4 [slices][coils][x][y] or rank 3 "
                       "[slices][x][y] expected, found rank %d",
                       rank);
    goto done;
  }
  slices = (int)dims[0];
  coils = rank == 4 ? (int)dims[1] : 1;
  a = (int)dims[rank - 2]; /* fastMRI: readout (x) */
  b = (int)dims[rank - 1]; /* fastMRI: phase encoding (y) */

  status = fastmri_header(path, fid, h, &have_header);
  if (status != CLARA_OK)
    goto done;
  if (have_header)
    keep_header_facts(file, h);
  /* fastMRI stores [x][y] (readout slower). A header whose encoded matrix
   * matches [y][x] and not [x][y] says the file is already [y][x]. */
  if (have_header) {
    const int *m = h->enc[0].enc;
    if (!(m[0] == a && m[1] == b) && m[0] == b && m[1] == a)
      transpose = 0;
  }
  {
    clara_mr_geometry *g = &set->geom;
    g->coils = coils;
    g->nx = transpose ? a : b;
    g->ny = transpose ? b : a;
    g->nz = 1;
    g->slices = slices;
    g->recon_nx = g->nx;
    if (have_header && h->enc[0].recon[0] > 0 && h->enc[0].recon[0] < g->nx)
      g->recon_nx = h->enc[0].recon[0];
    g->kx_first = 0;
    g->kx_last = g->nx - 1;
  }
  if (clara_size_mul((size_t)a, (size_t)b, &plane) != 0 ||
      clara_size_mul3(plane, (size_t)slices * (size_t)coils, 2, &floats) != 0) {
    status = file_fail(CLARA_ERR_OUT_OF_MEMORY, path,
                       "/kspace: its size overflows the address space");
    goto done;
  }
  status = alloc_floats(path, "/kspace", floats, &set->kspace);
  if (status != CLARA_OK)
    goto done;
  set->floats = floats;
  if (transpose) {
    status = alloc_floats(path, "/kspace", plane * (size_t)coils * 2, &tmp);
    if (status != CLARA_OK)
      goto done;
  }

  mtype = H5Tcreate(H5T_COMPOUND, 2 * sizeof(float));
  if (mtype < 0 || H5Tinsert(mtype, re, 0, H5T_NATIVE_FLOAT) < 0 ||
      H5Tinsert(mtype, im, sizeof(float), H5T_NATIVE_FLOAT) < 0) {
    status = file_fail(CLARA_ERR_IO, path,
                       "/kspace: cannot build the complex memory type%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  fspace = H5Dget_space(dset);
  for (int i = 0; i < rank; i++)
    cnt[i] = dims[i];
  cnt[0] = 1;
  mspace = H5Screate_simple(rank, cnt, NULL);
  if (fspace < 0 || mspace < 0) {
    status =
        file_fail(CLARA_ERR_IO, path, "/kspace: cannot set up its dataspaces%s",
                  clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  /* one slice at a time, so that the transpose needs one slice of room */
  for (int s = 0; s < slices; s++) {
    float *dst = set->kspace + (size_t)s * coils * plane * 2;
    start[0] = (hsize_t)s;
    if (H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, cnt, NULL) <
            0 ||
        H5Dread(dset, mtype, mspace, fspace, H5P_DEFAULT,
                transpose ? tmp : dst) < 0) {
      status =
          file_fail(CLARA_ERR_IO, path, "/kspace: reading slice %d failed%s", s,
                    clara_h5_detail(detail, sizeof detail));
      goto done;
    }
    if (transpose)
      for (size_t c = 0; c < (size_t)coils; c++)
        for (size_t x = 0; x < (size_t)a; x++)
          for (size_t y = 0; y < (size_t)b; y++) {
            const float *in = tmp + ((c * a + x) * b + y) * 2;
            float *out = dst + ((c * b + y) * a + x) * 2;
            out[0] = in[0];
            out[1] = in[1];
          }
  }
  /* Leading and trailing ky lines that are zero in every slice and coil are
   * zero padding, not data. */
  {
    clara_mr_geometry *g = &set->geom;
    int first = -1, last = -1;
    size_t line = (size_t)g->nx * 2;
    for (int y = 0; y < g->ny; y++) {
      int any = 0;
      for (size_t sc = 0; sc < (size_t)slices * coils && !any; sc++) {
        const float *p = set->kspace + (sc * g->ny + (size_t)y) * line;
        for (size_t x = 0; x < line; x++)
          if (p[x] != 0.0f) {
            any = 1;
            break;
          }
      }
      if (any) {
        if (first < 0)
          first = y;
        last = y;
      }
    }
    g->ky_first = first < 0 ? 0 : first;
    g->ky_last = first < 0 ? g->ny - 1 : last;
  }
  status = fastmri_reference(path, fid, slices, transpose, file);
  if (status != CLARA_OK)
    goto done;
  file->count = 1;
  file->sets = set;
  file->coils = coils;
  file->accel[0] = file->accel[1] = 1;
  set = NULL;
done:
  h5_close(H5Sclose, &mspace, &status, path);
  h5_close(H5Sclose, &fspace, &status, path);
  h5_close(H5Tclose, &mtype, &status, path);
  h5_close(H5Tclose, &ftype, &status, path);
  h5_close(H5Dclose, &dset, &status, path);
  clara_aligned_free(tmp);
  free_sets(set, 1);
  free(h);
  return status;
}

/* ------------------------------------------------------------------------ */
/* Public functions                                                          */
/* ------------------------------------------------------------------------ */

static void file_free(clara_mr_file *file) {
  if (!file)
    return;
  free_sets(file->sets, file->count);
  clara_aligned_free(file->noise);
  clara_aligned_free(file->ref);
  free(file);
}

static clara_status open_locked(const char *path, clara_mr_file *file) {
  clara_status status;
  hid_t fid = H5I_INVALID_HID;
  char detail[256];
  int has_data, has_kspace;

  status = open_for_read(path, &fid);
  if (status != CLARA_OK)
    goto done;
  has_data = object_exists(fid, "/dataset/data");
  has_kspace = has_data > 0 ? 0 : object_exists(fid, "/kspace");
  if (has_data < 0 || has_kspace < 0) {
    status = file_fail(CLARA_ERR_IO, path, "cannot look up its contents%s",
                       clara_h5_detail(detail, sizeof detail));
    goto done;
  }
  if (has_data) {
    file->format = FORMAT_ISMRMRD;
    status = read_ismrmrd(path, fid, file);
  } else if (has_kspace) {
    file->format = FORMAT_FASTMRI;
    status = read_fastmri(path, fid, file);
  } else {
    status = file_fail(CLARA_ERR_FORMAT, path,
                       "neither an ISMRMRD (/dataset/data) nor a fastMRI "
                       "(/kspace) file");
  }
done:
  h5_close(H5Fclose, &fid, &status, path);
  return status;
}

CLARA_API clara_status clara_mr_file_open(const char *path,
                                          clara_mr_file **out) {
  clara_status status;
  clara_mr_file *file;
  if (out)
    *out = NULL;
  if (!path || !out)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: %s is NULL", fn_open,
                      !path ? "path" : "out");
  if (!path[0])
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: path is empty", fn_open);
  file = calloc(1, sizeof *file);
  if (!file)
    return clara_fail(CLARA_ERR_OUT_OF_MEMORY,
                      "%s: %s: cannot allocate the file object", fn_open, path);
  clara_h5_lock();
  status = open_locked(path, file);
  clara_h5_unlock();
  if (status != CLARA_OK) {
    file_free(file);
    return status;
  }
  *out = file;
  return CLARA_OK;
}

CLARA_API void clara_mr_file_close(clara_mr_file *file) { file_free(file); }

CLARA_API const char *clara_mr_file_format(const clara_mr_file *file) {
  if (!file)
    return NULL;
  return file->format == FORMAT_FASTMRI ? "fastmri" : "ismrmrd";
}

CLARA_API int clara_mr_file_count(const clara_mr_file *file) {
  return file ? file->count : 0;
}

static clara_status check_index(const char *fn, const clara_mr_file *file,
                                int index) {
  if (!file)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: file is NULL", fn);
  if (index < 0 || index >= file->count)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "%s: index: must be in 0..%d (the file has %d k-space "
                      "dataset%s), got %d",
                      fn, file->count - 1, file->count,
                      file->count == 1 ? "" : "s", index);
  return CLARA_OK;
}

CLARA_API clara_status clara_mr_file_geometry(const clara_mr_file *file,
                                              int index,
                                              clara_mr_geometry *geom) {
  static const char fn[] = "clara_mr_file_geometry";
  clara_status status = check_index(fn, file, index);
  if (status != CLARA_OK)
    return status;
  if (!geom)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: geom is NULL", fn);
  *geom = file->sets[index].geom;
  return CLARA_OK;
}

CLARA_API clara_status clara_mr_file_kspace(const clara_mr_file *file,
                                            int index, float *kspace) {
  static const char fn[] = "clara_mr_file_kspace";
  clara_status status = check_index(fn, file, index);
  if (status != CLARA_OK)
    return status;
  if (!kspace)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: kspace is NULL", fn);
  memcpy(kspace, file->sets[index].kspace,
         file->sets[index].floats * sizeof(float));
  return CLARA_OK;
}

CLARA_API clara_status clara_mr_file_noise(const clara_mr_file *file,
                                           int *coils, int *samples,
                                           const float **noise) {
  static const char fn[] = "clara_mr_file_noise";
  if (!file || !coils || !samples || !noise)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                      !file      ? "file"
                      : !coils   ? "coils"
                      : !samples ? "samples"
                                 : "noise");
  *coils = file->noise ? file->coils : 0;
  *samples = file->noise ? file->noise_samples : 0;
  *noise = file->noise;
  return CLARA_OK;
}

CLARA_API clara_status clara_mr_file_reference(const clara_mr_file *file,
                                               int *slices, int *ny, int *nx,
                                               const float **rss) {
  static const char fn[] = "clara_mr_file_reference";
  if (!file || !slices || !ny || !nx || !rss)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                      !file     ? "file"
                      : !slices ? "slices"
                      : !ny     ? "ny"
                      : !nx     ? "nx"
                                : "rss");
  *rss = file->ref;
  *slices = file->ref ? file->ref_slices : 0;
  *ny = file->ref ? file->ref_ny : 0;
  *nx = file->ref ? file->ref_nx : 0;
  return CLARA_OK;
}

CLARA_API clara_status clara_mr_file_study(const clara_mr_file *file, int index,
                                           clara_mr_study *out) {
  static const char fn[] = "clara_mr_file_study";
  clara_status status = check_index(fn, file, index);
  int k;
  if (status != CLARA_OK)
    return status;
  if (!out)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: out is NULL", fn);
  *out = file->study;
  k = file->sets[index].encoding;
  if (!file->study.has_header || k < 0 || k >= file->encodings)
    return CLARA_OK;
  for (int i = 0; i < 3; i++) {
    out->encoded_fov_mm[i] = file->enc_fov[k][i];
    out->recon_fov_mm[i] = file->recon_fov[k][i];
    out->encoded_matrix[i] = file->enc_matrix[k][i];
    out->recon_matrix[i] = file->recon_matrix[k][i];
  }
  out->echo_train_length = file->echo_train[k];
  return CLARA_OK;
}
