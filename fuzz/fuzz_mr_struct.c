/* fuzz/fuzz_mr_struct.c -- structure-aware fuzzing of the MR reader: the
 * input drives a small generator that writes a well-formed HDF5 file with
 * HDF5's API, so that the mutations land in what the reader interprets
 * (the XML header, the ISMRMRD acquisition headers, fastMRI's shapes and
 * types) instead of in HDF5's own structures, which raw-byte mutation
 * (fuzz_mr_file.c) mostly breaks.
 *
 * Input: byte 0 selects the layout (bit 0).
 *   ISMRMRD (bit 0 clear): bytes 1-2 (little-endian) are the length L of
 *   the XML text that follows (cut at the end of the input); it becomes
 *   /dataset/xml, a [1] variable-length string. /dataset/data is the
 *   acquisitions of a template that clara_mr_file_write_ismrmrd wrote once
 *   (8 noise readouts, then 2 coils x 8 samples x 6 lines, partial ky);
 *   the bytes after the XML are patches of 4 bytes each: acquisition
 *   (byte mod count), offset (16 bits mod the size of head), value. They
 *   set single bytes of the AcquisitionHeader (version, flags, counters,
 *   number_of_samples, active_channels, center_sample, idx.*, ...), with
 *   the traj and data vlen members untouched.
 *   fastMRI (bit 0 set): byte 1 = the rank of /kspace (1..5), bytes 2..6
 *   its dims (each mod 9), byte 7 its type (complex64 {r,i}, complex128,
 *   {real,imag} names, float32, int16 pairs, a 3-member compound), byte 8
 *   bit 0: write /ismrmrd_header, bit 1: /reconstruction_rss (dims from
 *   bytes 9..11, float32 or, with bit 2, float64), bit 3: the header as a
 *   fixed-length string; the rest of the input is the XML text. */
#include "clara_recon.h"
#include "fuzz_common.h"
#include "fuzz_mr_check.h"

#include <hdf5.h>

static uint8_t *tmpl;        /* the template's records, native layout */
static size_t tmpl_n;        /* records */
static size_t rec_size;      /* bytes per record */
static size_t head_off, head_size;
static hid_t rec_type = -1;  /* the native memory type of a record */
static hid_t rec_ftype = -1; /* the file type */

static void make_template(void) {
  char path[1024];
  clara_mr_geometry g;
  float *k, *noise;
  size_t nk;
  hid_t f, d, sp;
  int idx;
  memset(&g, 0, sizeof g);
  g.coils = 2;
  g.nx = 8;
  g.ny = 8;
  g.nz = 1;
  g.slices = 1;
  g.recon_nx = 4;
  g.ky_first = 2;
  g.ky_last = 7;
  g.kx_first = 0;
  g.kx_last = 7;
  nk = 2u * 2 * 8 * 8;
  k = calloc(nk, sizeof *k);
  noise = calloc(2u * 2 * 8, sizeof *noise);
  if (!k || !noise)
    abort();
  for (size_t i = 0; i < nk; i++)
    k[i] = (float)((i * 37) % 11) - 5.0f;
  for (size_t i = 0; i < 2u * 2 * 8; i++)
    noise[i] = (float)(i % 5) * 0.1f;
  fuzz_path(path, sizeof path, "template.h5");
  if (clara_mr_file_write_ismrmrd(path, &g, k, noise, 8) != CLARA_OK) {
    fprintf(stderr, "template: %s\n", clara_last_error());
    abort();
  }
  free(k);
  free(noise);
  f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  d = H5Dopen2(f, "/dataset/data", H5P_DEFAULT);
  rec_ftype = H5Dget_type(d);
  rec_type = H5Tget_native_type(rec_ftype, H5T_DIR_ASCEND);
  sp = H5Dget_space(d);
  tmpl_n = (size_t)H5Sget_simple_extent_npoints(sp);
  rec_size = H5Tget_size(rec_type);
  idx = H5Tget_member_index(rec_type, "head");
  if (f < 0 || d < 0 || idx < 0 || tmpl_n == 0)
    abort();
  head_off = H5Tget_member_offset(rec_type, (unsigned)idx);
  {
    hid_t ht = H5Tget_member_type(rec_type, (unsigned)idx);
    head_size = H5Tget_size(ht);
    H5Tclose(ht);
  }
  tmpl = calloc(tmpl_n, rec_size);
  if (!tmpl || H5Dread(d, rec_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmpl) < 0)
    abort();
  /* the vlen buffers stay allocated (HDF5's): shared by every write */
  H5Sclose(sp);
  H5Dclose(d);
  H5Fclose(f);
  unlink(path);
}

static hid_t vlen_string_type(void) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  return t;
}

static void write_string(hid_t loc, const char *name, const char *s,
                         int rank1, int fixed) {
  hsize_t one = 1;
  hid_t t, sp, d;
  if (fixed) {
    t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(s) + 1);
  } else {
    t = vlen_string_type();
  }
  sp = rank1 ? H5Screate_simple(1, &one, NULL) : H5Screate(H5S_SCALAR);
  d = H5Dcreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (d >= 0)
    (void)H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                   fixed ? (const void *)s : (const void *)&s);
  H5Dclose(d);
  H5Sclose(sp);
  H5Tclose(t);
}

static char *text(const uint8_t *p, size_t n) {
  char *s = malloc(n + 1);
  if (!s)
    abort();
  memcpy(s, p, n);
  s[n] = '\0';
  return s;
}

static void gen_ismrmrd(hid_t f, const uint8_t *data, size_t size) {
  size_t len = 0, pos = 3;
  char *xml;
  uint8_t *recs;
  hid_t g, sp, d;
  hsize_t n = tmpl_n;
  if (size >= 3)
    len = (size_t)data[1] | (size_t)data[2] << 8;
  if (pos > size)
    pos = size;
  if (len > size - pos)
    len = size - pos;
  xml = text(data + pos, len);
  pos += len;
  g = H5Gcreate2(f, "dataset", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  write_string(g, "xml", xml, 1, 0);
  free(xml);
  recs = malloc(tmpl_n * rec_size);
  if (!recs)
    abort();
  memcpy(recs, tmpl, tmpl_n * rec_size);
  for (; pos + 4 <= size; pos += 4) {
    size_t r = data[pos] % tmpl_n;
    size_t off = ((size_t)data[pos + 1] | (size_t)data[pos + 2] << 8) %
                 head_size;
    recs[r * rec_size + head_off + off] = data[pos + 3];
  }
  sp = H5Screate_simple(1, &n, NULL);
  d = H5Dcreate2(g, "data", rec_ftype, sp, H5P_DEFAULT, H5P_DEFAULT,
                 H5P_DEFAULT);
  if (d >= 0)
    (void)H5Dwrite(d, rec_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, recs);
  free(recs);
  H5Dclose(d);
  H5Sclose(sp);
  H5Gclose(g);
}

static hid_t kspace_type(int which) {
  hid_t t;
  switch (which % 6) {
  case 0: /* complex64 as h5py writes it */
  case 1:
    t = H5Tcreate(H5T_COMPOUND, 2 * (which % 6 ? 8 : 4));
    H5Tinsert(t, "r", 0, which % 6 ? H5T_IEEE_F64LE : H5T_IEEE_F32LE);
    H5Tinsert(t, "i", which % 6 ? 8 : 4,
              which % 6 ? H5T_IEEE_F64LE : H5T_IEEE_F32LE);
    return t;
  case 2:
    t = H5Tcreate(H5T_COMPOUND, 8);
    H5Tinsert(t, "real", 0, H5T_IEEE_F32BE);
    H5Tinsert(t, "imag", 4, H5T_IEEE_F32BE);
    return t;
  case 3:
    return H5Tcopy(H5T_IEEE_F32LE);
  case 4:
    t = H5Tcreate(H5T_COMPOUND, 4);
    H5Tinsert(t, "r", 0, H5T_STD_I16LE);
    H5Tinsert(t, "i", 2, H5T_STD_I16LE);
    return t;
  default:
    t = H5Tcreate(H5T_COMPOUND, 12);
    H5Tinsert(t, "r", 0, H5T_IEEE_F32LE);
    H5Tinsert(t, "i", 4, H5T_IEEE_F32LE);
    H5Tinsert(t, "x", 8, H5T_IEEE_F32LE);
    return t;
  }
}

static void write_zeros(hid_t f, const char *name, hid_t t, int rank,
                        const hsize_t *dims) {
  hid_t sp = H5Screate_simple(rank, dims, NULL), d;
  size_t n = H5Tget_size(t);
  uint8_t *buf;
  for (int i = 0; i < rank; i++)
    n *= dims[i];
  buf = calloc(n ? n : 1, 1);
  if (!buf)
    abort();
  for (size_t i = 0; i < n; i++)
    buf[i] = (uint8_t)(i % 3 ? 0 : 0x3f); /* small finite values */
  d = H5Dcreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (d >= 0)
    (void)H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
  free(buf);
  H5Dclose(d);
  H5Sclose(sp);
}

static void gen_fastmri(hid_t f, const uint8_t *data, size_t size) {
  uint8_t b[12] = {0};
  hsize_t dims[5], rd[3];
  int rank;
  hid_t t;
  memcpy(b, data, size < sizeof b ? size : sizeof b);
  rank = 1 + b[1] % 5;
  for (int i = 0; i < 5; i++)
    dims[i] = b[2 + i] % 9;
  t = kspace_type(b[7]);
  write_zeros(f, "kspace", t, rank, dims);
  H5Tclose(t);
  if (b[8] & 1) {
    char *xml = text(data + (size < 12 ? size : 12), size < 12 ? 0 : size - 12);
    write_string(f, "ismrmrd_header", xml, 0, (b[8] & 8) != 0);
    free(xml);
  }
  if (b[8] & 2) {
    for (int i = 0; i < 3; i++)
      rd[i] = b[9 + i] % 9;
    write_zeros(f, "reconstruction_rss", (b[8] & 4) ? H5T_IEEE_F64LE
                                                    : H5T_IEEE_F32LE,
                3, rd);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[1024];
  hid_t f;
  if (size > 65536)
    return 0;
  if (!tmpl) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    make_template();
    fuzz_h5_baseline = H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
  }
  fuzz_path(path, sizeof path, "mr-struct.h5");
  f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0)
    abort();
  if (size == 0 || !(data[0] & 1))
    gen_ismrmrd(f, data, size);
  else
    gen_fastmri(f, data, size);
  if (H5Fclose(f) < 0)
    abort();
  fuzz_mr_check(path);
  fuzz_check_h5_ids();
  return 0;
}
