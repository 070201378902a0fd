/* projector.c -- the public Joseph projector object. The loops are the
 * backend's (src/cpu/project_cpu.c); this file validates and describes. */
#include "ct.h"

#include <stdlib.h>

struct clara_projector_s {
  const clara_context *ctx;
  clara_proj_setup ps;
  double *cos_t, *sin_t;
};

CLARA_API clara_status clara_projector_create(clara_context *ctx,
                                              const clara_ct_geometry *geom,
                                              const clara_volume *vol,
                                              clara_projector **out) {
  static const char who[] = "clara_projector_create";
  clara_projector *p;
  clara_status st;
  if (!out)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: out is NULL", who);
  *out = NULL;
  if (!ctx)
    return clara_fail(CLARA_ERR_INVALID_ARG, "%s: ctx is NULL", who);
  p = calloc(1, sizeof *p);
  if (!p)
    return clara_fail(CLARA_ERR_OUT_OF_MEMORY, "%s: projector", who);
  st = clara_ct_common_setup(geom, vol, who, &p->ps, &p->cos_t, &p->sin_t);
  if (st == CLARA_OK) {
    /* Host memory (before any large allocation): the image and the
     * projections that clara_project and clara_backproject work on. */
    clara_mem_term t[2] = {
        {"volume", 4.0 * vol->nx * vol->ny * vol->nz},
        {"projections", 4.0 * geom->views * geom->rows * geom->cols}};
    st = clara_memory_check(ctx, who, t, 2);
    if (st != CLARA_OK) {
      clara_aligned_free(p->cos_t);
      clara_aligned_free(p->sin_t);
    }
  }
  if (st != CLARA_OK) {
    free(p);
    return st;
  }
  p->ctx = ctx;
  *out = p;
  return CLARA_OK;
}

CLARA_API clara_status clara_project(const clara_projector *p,
                                     const float *image, float *projections) {
  if (!p || !image || !projections)
    return clara_fail(CLARA_ERR_INVALID_ARG, "clara_project: %s is NULL",
                      !p       ? "proj"
                      : !image ? "image"
                               : "projections");
  return p->ctx->ops->project(p->ctx, &p->ps, image, projections);
}

CLARA_API clara_status clara_backproject(const clara_projector *p,
                                         const float *projections,
                                         float *image) {
  if (!p || !image || !projections)
    return clara_fail(CLARA_ERR_INVALID_ARG, "clara_backproject: %s is NULL",
                      !p             ? "proj"
                      : !projections ? "projections"
                                     : "image");
  return p->ctx->ops->backproject(p->ctx, &p->ps, projections, image);
}

CLARA_API void clara_projector_destroy(clara_projector *p) {
  if (!p)
    return;
  clara_aligned_free(p->cos_t);
  clara_aligned_free(p->sin_t);
  free(p);
}
