/* png_preview.h -- 8-bit greyscale PNG previews of images and volumes.
 *
 * Part of the clara-recon tool, not of the library: built only when
 * configure found libpng (HAVE_PNG in config.h, src/tools/tools.am). Plain
 * C; nothing prints or exits: every function returns a clara_status and,
 * on failure, a one-line message in 'err' (truncated to errlen; err may be
 * NULL when errlen is 0). */
#ifndef CLARA_PNG_PREVIEW_H
#define CLARA_PNG_PREVIEW_H

#include "clara_recon.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* At most this many slices of a volume go into a montage. */
#define CLARA_PNG_MAX_TILES 16

/* Writes 'image' (nz slices of ny x nx, C order image[iz][iy][ix]) as an
 * 8-bit greyscale PNG at 'path'.
 *
 * Grey levels: the window [center - width/2, center + width/2] maps
 * linearly onto 0..255, rounded, and values outside it are clamped (so
 * +-infinity are white and black); with 'center' and 'width' in the
 * image's units (HU for CT; for DICOM-style windows use the same numbers
 * as WindowCenter / WindowWidth).
 *
 * Layout: image row iy is PNG row iy and ix runs left to right, as a DICOM
 * viewer shows the exported series. A single slice (nz == 1) is the whole
 * picture. A volume becomes a montage of min(nz, CLARA_PNG_MAX_TILES)
 * slices chosen evenly, first and last included (slice round(k (nz-1) /
 * (t-1)) for tile k of t), laid out row by row on a grid of
 * ceil(sqrt(t)) columns and as many rows as needed, with no gap; unused
 * tiles are black. The PNG's Comment text names the window and the slices.
 *
 * The file appears whole or not at all: it is written to a temporary
 * file beside 'path' and renamed over it (an existing file is replaced).
 *
 * Errors: CLARA_ERR_INVALID_ARG (NULL path or image, nx, ny or nz < 1, a
 * montage wider or taller than 1000000 pixels, a center that is not finite
 * or a width that is not finite and > 0, a NaN voxel), CLARA_ERR_IO (the
 * directory does not exist or is not writable, a write fails),
 * CLARA_ERR_OUT_OF_MEMORY. */
clara_status clara_png_write(const char *path, const float *image, int nx,
                             int ny, int nz, double center, double width,
                             char *err, size_t errlen);

/* A default display window: CT (image in HU): the soft-tissue window,
 * center 40, width 400 (the image is not read); MR or anything else: the
 * 1st to the 99th percentile of the n values, as clara_dicom_ready_scaled
 * computes it (so the PNG and the DICOM series agree). Errors:
 * CLARA_ERR_INVALID_ARG (NULL, n == 0, an unknown modality, non-finite
 * MR values), CLARA_ERR_OUT_OF_MEMORY. */
clara_status clara_png_default_window(clara_modality modality,
                                      const float *image, size_t n,
                                      double *center, double *width, char *err,
                                      size_t errlen);

/* Parses a --window argument "C,W" (two numbers, e.g. "40,400" or
 * "-600,1500"; spaces around them are allowed) into *center and *width.
 * Errors: CLARA_ERR_INVALID_ARG (not two numbers, a center that is not
 * finite, a width that is not finite and > 0). */
clara_status clara_png_parse_window(const char *text, double *center,
                                    double *width, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* CLARA_PNG_PREVIEW_H */
