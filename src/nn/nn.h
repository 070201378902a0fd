/* nn.h -- the denoiser's private parts (not installed): the model file
 * reader (src/io/model_file.c, the only place that speaks HDF5) and the
 * validated network it returns, which src/nn/denoiser.c hands to a
 * backend. */
#ifndef CLARA_NN_H
#define CLARA_NN_H

#include "backend.h"

#define CLARA_NN_MAX_LAYERS 64
#define CLARA_NN_MAX_CHANNELS 256

typedef struct clara_nn_model {
  clara_nn_setup setup;  /* setup.layers points into 'layers' */
  clara_nn_layer *layers; /* [setup.n_layers] */
  float *params;          /* every weight and bias, one block */
  clara_modality modality;
  char architecture[32];
  char units[16];
  char training_data[256];
  long long parameters;
} clara_nn_model;

/* Reads and validates a model file (docs/FORMATS.md). On failure *m is
 * left zeroed and the message names the path and the object. */
clara_status clara_nn_model_read(const char *path, clara_nn_model *m);
void clara_nn_model_free(clara_nn_model *m);

/* Runs a denoiser attached to a plan on images the plan just made, on host
 * or device memory of the plan's context ([nslices][ny][nx], in place). */
clara_status clara_nn_apply_host(const clara_denoiser *d, float *image,
                                 int nx, int ny, int nslices);
clara_status clara_nn_apply_device(const clara_denoiser *d, float *d_image,
                                   int nx, int ny, int nslices);
clara_modality clara_nn_modality(const clara_denoiser *d);
int clara_nn_receptive_field(const clara_denoiser *d);
/* Whether the denoiser runs on device memory (nn_execute_device). */
int clara_nn_has_device(const clara_denoiser *d);
const clara_context *clara_nn_context(const clara_denoiser *d);
/* Reference counting for plans that hold a denoiser. */
clara_denoiser *clara_nn_retain(clara_denoiser *d);
void clara_nn_release(clara_denoiser *d);

#endif
