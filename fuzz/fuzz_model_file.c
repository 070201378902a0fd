/* fuzz/fuzz_model_file.c -- the denoiser model loader (clara_denoiser_load)
 * on the raw bytes of an HDF5 file, with a CPU context made once. Seeds:
 * the shipped models (models/ct-denoise.h5) are 330 kB each, so the seeds
 * are small models that tests/nn_testutil.c-like code writes (see
 * fuzz/README.md). */
#include "clara_recon.h"
#include "fuzz_common.h"

static clara_context *ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path;
  clara_denoiser *d = NULL;
  if (!ctx) {
    clara_context_options co;
    clara_context_options_init(&co);
    co.backend = CLARA_BACKEND_CPU;
    co.threads = 1;
    if (clara_context_create(&co, &ctx) != CLARA_OK)
      abort();
  }
  path = fuzz_write_file("model.h5", data, size);
  if (clara_denoiser_load(ctx, path, &d) == CLARA_OK) {
    clara_denoiser_info info;
    if (clara_denoiser_get_info(d, &info) != CLARA_OK)
      abort();
    /* run it once on the smallest image it accepts, if that is small */
    if (info.receptive_field > 0 && info.receptive_field <= 24 &&
        info.parameters < 200000) {
      int n = info.receptive_field;
      float *img = calloc((size_t)n * n, sizeof *img);
      if (img) {
        for (int i = 0; i < n * n; i++)
          img[i] = (float)(i % 7) * 0.1f;
        (void)clara_denoise(d, img, img, n, n, 1);
        free(img);
      }
    }
    clara_denoiser_destroy(d);
  } else if (d) {
    abort(); /* *out is NULL on failure */
  }
  fuzz_check_h5_ids();
  return 0;
}
