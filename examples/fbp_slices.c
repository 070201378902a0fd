/* fbp_slices.c -- plan once, reconstruct many slices.
 *
 * A scanner reconstructs every slice of a protocol with the same geometry:
 * the plan (FFT plans, filter, weights) is made once, and execute runs per
 * slice, here on several threads at once, each with its own output buffer.
 * The slices are simulated from the analytic Shepp-Logan phantom.
 *
 *   cc fbp_slices.c $(pkg-config --cflags --libs clara-recon) -lpthread
 *   ./a.out [slices]
 */
#include <clara_recon.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define N 256     /* image size */
#define VIEWS 360 /* over 180 degrees */
#define COLS 256

typedef struct {
  const clara_fbp_plan *plan;
  const float *sinogram;
  float *image;
  clara_status status;
  char message[256];
} job;

static void *run(void *arg) {
  job *j = arg;
  j->status = clara_fbp_execute(j->plan, j->sinogram, j->image);
  if (j->status != CLARA_OK) /* the message is per thread: copy it here */
    snprintf(j->message, sizeof j->message, "%s", clara_last_error());
  return NULL;
}

static int fail(const char *what) {
  fprintf(stderr, "fbp_slices: %s: %s\n", what, clara_last_error());
  return 1;
}

int main(int argc, char **argv) {
  int slices = argc > 1 ? atoi(argv[1]) : 8;
  float angles[VIEWS];
  clara_ct_geometry g = {.kind = CLARA_GEOM_PARALLEL,
                         .views = VIEWS,
                         .rows = 1,
                         .cols = COLS,
                         .angles = angles,
                         .det_spacing = {1.0, 1.0}};
  clara_volume vol = {.nx = N, .ny = N, .nz = 1, .voxel = {1.0, 1.0, 1.0}};
  clara_context *ctx = NULL;
  clara_fbp_plan *plan = NULL;
  clara_phantom *ph = NULL;
  clara_fbp_options opt;
  float *sino, *images, *truth;
  pthread_t *threads;
  job *jobs;
  double se = 0;
  int rc = 0;

  if (slices < 1 || slices > 64) {
    fprintf(stderr, "usage: fbp_slices [slices 1..64]\n");
    return 2;
  }
  for (int v = 0; v < VIEWS; v++)
    angles[v] = (float)(M_PI * v / VIEWS);
  sino = malloc(sizeof(float) * VIEWS * COLS);
  images = malloc(sizeof(float) * N * N * (size_t)slices);
  truth = malloc(sizeof(float) * N * N);
  threads = malloc(sizeof *threads * (size_t)slices);
  jobs = malloc(sizeof *jobs * (size_t)slices);
  if (!sino || !images || !truth || !threads || !jobs)
    return 1;

  /* One slice of data (every slice the same here), and its truth. */
  if (clara_phantom_shepp_logan(2, 100.0, 0.02, &ph) != CLARA_OK ||
      clara_phantom_project(ph, &g, sino) != CLARA_OK ||
      clara_phantom_rasterize(ph, &vol, 4, truth) != CLARA_OK)
    return fail("phantom");

  /* Plan once. */
  clara_fbp_options_init(&opt);
  opt.filter = CLARA_FILTER_HANN;
  if (clara_context_create(NULL, &ctx) != CLARA_OK)
    return fail("context");
  if (clara_fbp_plan_create(ctx, &g, &vol, &opt, &plan) != CLARA_OK)
    return fail("plan");

  /* Execute per slice, concurrently: safe on one plan with distinct
   * outputs. */
  for (int s = 0; s < slices; s++) {
    jobs[s] = (job){plan, sino, images + (size_t)s * N * N, CLARA_OK, ""};
    pthread_create(&threads[s], NULL, run, &jobs[s]);
  }
  for (int s = 0; s < slices; s++) {
    pthread_join(threads[s], NULL);
    if (jobs[s].status != CLARA_OK) {
      fprintf(stderr, "slice %d: %s\n", s, jobs[s].message);
      rc = 1;
    }
  }

  for (int i = 0; i < N * N; i++) {
    double d = images[(size_t)(slices - 1) * N * N + i] - truth[i];
    se += d * d;
  }
  printf("fbp_slices: %d slices of %dx%d from %d views with %s on %s; RMSE "
         "of the last vs the phantom %.2e /mm\n",
         slices, N, N, VIEWS, clara_filter_name(opt.filter),
         clara_backend_name(clara_context_backend(ctx)), sqrt(se / (N * N)));
  if (sqrt(se / (N * N)) > 2e-3) /* the phantom spans 0..0.02 /mm */
    rc = 1;

  clara_fbp_plan_destroy(plan);
  clara_context_destroy(ctx);
  clara_phantom_destroy(ph);
  free(sino);
  free(images);
  free(truth);
  free(threads);
  free(jobs);
  return rc;
}
