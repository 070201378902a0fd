/* nn_testutil.h -- denoiser models for the tests: random networks written
 * as model files (docs/FORMATS.md) and an independent double-precision
 * reference of their forward pass (direct convolution, no Winograd). */
#ifndef NN_TESTUTIL_H
#define NN_TESTUTIL_H

#include <stddef.h>

#define NN_TEST_MAX_LAYERS 64

typedef struct nn_test_model {
  int layers;
  int channels[NN_TEST_MAX_LAYERS + 1]; /* channels[0] = channels[L] = 1 */
  int relu[NN_TEST_MAX_LAYERS];
  float *weight[NN_TEST_MAX_LAYERS]; /* [cout][cin][3][3] */
  float *bias[NN_TEST_MAX_LAYERS];   /* [cout] */
  int residual;
  int percentile_norm; /* 0: fixed offset/scale; 1: percentile */
  double offset, scale, percentile;
  const char *modality; /* "ct" or "mr" */
} nn_test_model;

/* A random network of 'layers' layers, 'width' channels inside, ReLU on all
 * but the last, He-scaled weights and small biases, deterministic in
 * 'seed'. Fixed normalisation offset 0, scale 1000 (CT in HU), residual. */
void nn_test_model_random(nn_test_model *m, int layers, int width,
                          unsigned seed);
void nn_test_model_free(nn_test_model *m);

/* Writes m as a version-1 model file; returns 0 on success. */
int nn_test_model_write(const nn_test_model *m, const char *path);

/* The forward pass with normalisation and residual, in double precision,
 * for [nslices][ny][nx] images. */
void nn_test_reference(const nn_test_model *m, const float *in, float *out,
                       int nx, int ny, int nslices);

/* Relative L2 difference ||a - b|| / ||b||, in double. */
double nn_test_rel_l2(const float *a, const float *b, size_t n);

/* A temporary file name in $TMPDIR (or /tmp) ending in 'suffix'; the
 * caller frees it. */
char *nn_test_tmpname(const char *suffix);

#endif
