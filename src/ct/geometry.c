/* geometry.c -- CT geometry names and validation. */
#include "internal.h"

#include <math.h>
#include <string.h>

static const char *const geometry_names[] = {"parallel", "fan-flat", "fan-arc",
                                             "cone"};

CLARA_API const char *clara_geometry_name(clara_geometry_kind kind) {
  if ((int)kind < 0 || (int)kind > CLARA_GEOM_CONE)
    return NULL;
  return geometry_names[kind];
}

CLARA_API clara_status clara_geometry_parse(const char *name,
                                            clara_geometry_kind *out) {
  if (!name || !out)
    return clara_fail(CLARA_ERR_INVALID_ARG, "clara_geometry_parse: %s is NULL",
                      !name ? "name" : "out");
  for (int k = 0; k <= CLARA_GEOM_CONE; k++) {
    if (strcmp(name, geometry_names[k]) == 0) {
      *out = (clara_geometry_kind)k;
      return CLARA_OK;
    }
  }
  return clara_fail(CLARA_ERR_INVALID_ARG,
                    "geometry: unknown name \"%s\" (expected parallel, "
                    "fan-flat, fan-arc or cone)",
                    name);
}

CLARA_API clara_status clara_geometry_check(const clara_ct_geometry *g) {
  size_t cells;
  if (!g)
    return clara_fail(CLARA_ERR_INVALID_ARG, "geometry: is NULL");
  if ((int)g->kind < 0 || (int)g->kind > CLARA_GEOM_CONE)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "geometry->kind: unknown geometry %d", (int)g->kind);
  if (g->views <= 0)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "geometry->views: must be > 0, got %d", g->views);
  if (g->rows <= 0)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "geometry->rows: must be > 0, got %d", g->rows);
  if (g->cols <= 0)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "geometry->cols: must be > 0, got %d", g->cols);
  if (clara_size_mul3((size_t)g->views, (size_t)g->rows, (size_t)g->cols,
                      &cells) != 0 ||
      cells > SIZE_MAX / sizeof(float))
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "geometry: %d views x %d rows x %d cols overflows the "
                      "address space",
                      g->views, g->rows, g->cols);
  if (!g->angles)
    return clara_fail(CLARA_ERR_INVALID_ARG, "geometry->angles: is NULL");
  for (int v = 0; v < g->views; v++)
    if (!isfinite(g->angles[v]))
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "geometry->angles[%d]: must be finite, got %g", v,
                        (double)g->angles[v]);
  for (int i = 0; i < 2; i++) {
    const char *axis = i == 0 ? "row" : "col";
    if (!isfinite(g->det_spacing[i]) || g->det_spacing[i] <= 0)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "geometry->det_spacing[%d] (%s): must be finite and "
                        "> 0, got %g",
                        i, axis, g->det_spacing[i]);
    if (!isfinite(g->det_offset[i]))
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "geometry->det_offset[%d] (%s): must be finite, got %g",
                        i, axis, g->det_offset[i]);
  }
  if (g->kind != CLARA_GEOM_PARALLEL) {
    if (!isfinite(g->source_to_iso) || g->source_to_iso <= 0)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "geometry->source_to_iso: must be finite and > 0 for "
                        "%s, got %g",
                        geometry_names[g->kind], g->source_to_iso);
    if (!isfinite(g->source_to_detector) ||
        g->source_to_detector <= g->source_to_iso)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "geometry->source_to_detector: must be finite and > "
                        "source_to_iso (%g), got %g",
                        g->source_to_iso, g->source_to_detector);
  }
  if (g->kind == CLARA_GEOM_FAN_ARC) {
    /* the columns must stay within a half turn of the central ray */
    double half = 0.5 * (g->cols - 1) * g->det_spacing[1];
    double edge = fabs(g->det_offset[1]) + half;
    if (edge >= 0.5 * M_PI)
      return clara_fail(CLARA_ERR_INVALID_ARG,
                        "geometry->det_spacing[1]: fan-arc columns reach %g "
                        "rad from the central ray; the spacing is in radians "
                        "and the fan must stay below pi/2",
                        edge);
  }
  return CLARA_OK;
}
