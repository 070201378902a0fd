/* fuzz/fuzz_ct_file.c -- the CT input and image file readers
 * (clara_ct_file_read, clara_image_file_read of /image and /truth) on the
 * raw bytes of an HDF5 file. Seeds: files that `clara-recon phantom ct`
 * and `clara-recon ct` write (fuzz/corpus/fuzz_ct_file). */
#include "clara_recon.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const sets[] = {"/image", "/truth"};
  const char *path = fuzz_write_file("ct.h5", data, size);
  clara_ct_geometry geom;
  float *angles = NULL, *proj = NULL;
  if (clara_ct_file_read(path, &geom, &angles, &proj) == CLARA_OK) {
    /* touch the outputs: the sizes must be what the geometry says */
    size_t n = (size_t)geom.views * (size_t)geom.rows * (size_t)geom.cols;
    volatile float s = 0;
    s += angles[geom.views - 1];
    s += proj[n - 1];
    (void)s;
    clara_free(angles);
    clara_free(proj);
  }
  for (size_t i = 0; i < 2; i++) {
    clara_volume vol;
    float *img = NULL;
    char units[16];
    if (clara_image_file_read(path, sets[i], &vol, &img, units,
                              sizeof units) == CLARA_OK) {
      volatile float s = img[(size_t)vol.nx * vol.ny * vol.nz - 1];
      (void)s;
      if (strlen(units) >= sizeof units)
        abort();
      clara_free(img);
    }
  }
  fuzz_check_h5_ids();
  return 0;
}
