/* fuzz/fuzz_mr_file.c -- the MR raw-data reader (ISMRMRD: XML header and
 * acquisition compound; fastMRI) on the raw bytes of an HDF5 file:
 * clara_mr_file_open, then for every dataset its geometry, k-space, noise,
 * reference and study. Seeds: `clara-recon phantom mr` files and small
 * fastMRI files (fuzz/corpus/fuzz_mr_file). fuzz_mr_struct.c mutates the
 * same reader's input through the HDF5 API instead. */
#include "clara_recon.h"
#include "fuzz_common.h"
#include "fuzz_mr_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_write_file("mr.h5", data, size);
  fuzz_mr_check(path);
  fuzz_check_h5_ids();
  return 0;
}
