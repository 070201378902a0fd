/* ct.h -- CT modality internals shared by the FBP plan and the projector. */
#ifndef CLARA_CT_H
#define CLARA_CT_H

#include "backend.h"

/* Validates a volume description; 'who' prefixes the message. */
clara_status clara_volume_check(const clara_volume *vol, const char *who);

/* Validates the geometry and volume together (rows vs nz for multi-slice
 * data, the volume inside the source orbit, cone angle below 45 degrees),
 * then fills the parts of a projector setup that FBP shares: kind, sizes,
 * distances, detector coordinates and the cos/sin tables, allocated into
 * *cos_out / *sin_out (free with clara_aligned_free). */
clara_status clara_ct_common_setup(const clara_ct_geometry *g,
                                   const clara_volume *vol, const char *who,
                                   clara_proj_setup *ps, double **cos_out,
                                   double **sin_out);

#endif
