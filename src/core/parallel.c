/* parallel.c -- a dynamic parallel-for on POSIX threads.
 *
 * Threads are started per call: the loops it runs (filtering, back-
 * projection, projection) last milliseconds to seconds, so the ~20 us of a
 * thread start is noise, and nothing is shared between concurrent calls,
 * which keeps concurrent execute() calls on one plan independent. */
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct loop {
  clara_task_fn fn;
  void *arg;
  size_t n;
  atomic_size_t next;
  atomic_int stop;   /* set on failure or cancellation */
  atomic_int status; /* first failure */
  atomic_size_t done;
  char message[1024]; /* the first failure's message, from whichever thread */
} loop;

typedef struct worker {
  loop *lp;
  int id;
} worker;

/* Keeps the first failure and its message: the message lives in the
 * failing thread's storage, and the caller must see it on its own thread. */
static void record(loop *lp, clara_status st) {
  int expected = CLARA_OK;
  if (atomic_compare_exchange_strong(&lp->status, &expected, (int)st))
    snprintf(lp->message, sizeof lp->message, "%s", clara_last_error());
  atomic_store(&lp->stop, 1);
}

static void *run_worker(void *p) {
  worker *w = p;
  loop *lp = w->lp;
  for (;;) {
    size_t i;
    clara_status st;
    if (atomic_load(&lp->stop))
      break;
    i = atomic_fetch_add(&lp->next, 1);
    if (i >= lp->n)
      break;
    st = lp->fn(lp->arg, i, w->id);
    atomic_fetch_add(&lp->done, 1);
    if (st != CLARA_OK) {
      record(lp, st);
      break;
    }
  }
  return NULL;
}

clara_status clara_parallel_for(int threads, size_t n, clara_task_fn fn,
                                void *arg, const clara_progress *progress) {
  loop lp;
  pthread_t *tids = NULL;
  worker *ws = NULL;
  int started = 0;
  int nt = threads < 1 ? 1 : threads;

  if (n == 0)
    return CLARA_OK;
  if ((size_t)nt > n)
    nt = (int)n;
  lp.fn = fn;
  lp.arg = arg;
  lp.n = n;
  atomic_init(&lp.next, 0);
  atomic_init(&lp.stop, 0);
  atomic_init(&lp.status, CLARA_OK);
  atomic_init(&lp.done, 0);

  if (nt > 1) {
    tids = malloc(sizeof *tids * (size_t)nt);
    ws = malloc(sizeof *ws * (size_t)nt);
    if (!tids || !ws) {
      nt = 1; /* run serially rather than fail */
    }
  }
  for (int t = 1; t < nt; t++) {
    ws[t].lp = &lp;
    ws[t].id = t;
    if (pthread_create(&tids[t], NULL, run_worker, &ws[t]) != 0)
      break; /* fewer workers is still correct */
    started = t;
  }

  /* The calling thread is worker 0 and the only one to report progress. */
  for (;;) {
    size_t i;
    clara_status st;
    if (atomic_load(&lp.stop))
      break;
    i = atomic_fetch_add(&lp.next, 1);
    if (i >= lp.n)
      break;
    st = fn(arg, i, 0);
    atomic_fetch_add(&lp.done, 1);
    if (st != CLARA_OK) {
      record(&lp, st);
      break;
    }
    if (progress && progress->fn) {
      double f = progress->base +
                 progress->span * (double)atomic_load(&lp.done) / (double)n;
      if (progress->fn(progress->stage, f > 1.0 ? 1.0 : f, progress->user)) {
        record(&lp, clara_fail(CLARA_ERR_CANCELLED,
                               "%s: cancelled by the progress callback at "
                               "%.0f%%",
                               progress->stage, 100.0 * f));
        break;
      }
    }
  }
  for (int t = 1; t <= started; t++)
    pthread_join(tids[t], NULL);
  free(tids);
  free(ws);
  if (atomic_load(&lp.status) != CLARA_OK)
    return clara_fail((clara_status)atomic_load(&lp.status), "%s", lp.message);
  return CLARA_OK;
}
