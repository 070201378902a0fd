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
  /* With a progress callback, workers wake the calling thread after each
   * index, so that it reports (and can cancel) while they run even when it
   * has no index of its own left. */
  int watch;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int active; /* workers still running, under mu */
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

static void wake(loop *lp, int leaving) {
  if (!lp->watch)
    return;
  pthread_mutex_lock(&lp->mu);
  if (leaving)
    lp->active--;
  pthread_cond_broadcast(&lp->cv);
  pthread_mutex_unlock(&lp->mu);
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
    wake(lp, 0);
  }
  wake(lp, 1);
  return NULL;
}

/* Reports 'done' of the loop's n indices; nonzero when the callback
 * cancels (recorded as the loop's failure). */
static int report(loop *lp, const clara_progress *progress, size_t done) {
  double f = progress->base + progress->span * (double)done / (double)lp->n;
  if (f > 1.0)
    f = 1.0;
  if (!progress->fn(progress->stage, f, progress->user))
    return 0;
  record(lp, clara_fail(CLARA_ERR_CANCELLED,
                        "%s: cancelled by the progress callback at %.0f%%",
                        progress->stage, 100.0 * f));
  return 1;
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
  lp.watch = 0;
  lp.active = 0;

  if (nt > 1) {
    tids = malloc(sizeof *tids * (size_t)nt);
    ws = malloc(sizeof *ws * (size_t)nt);
    if (!tids || !ws) {
      nt = 1; /* run serially rather than fail */
    }
  }
  if (nt > 1 && progress && progress->fn) {
    if (pthread_mutex_init(&lp.mu, NULL) == 0) {
      if (pthread_cond_init(&lp.cv, NULL) == 0)
        lp.watch = 1;
      else
        pthread_mutex_destroy(&lp.mu);
    }
  }
  for (int t = 1; t < nt; t++) {
    ws[t].lp = &lp;
    ws[t].id = t;
    if (lp.watch) {
      pthread_mutex_lock(&lp.mu);
      lp.active++;
      pthread_mutex_unlock(&lp.mu);
    }
    if (pthread_create(&tids[t], NULL, run_worker, &ws[t]) != 0) {
      if (lp.watch) {
        pthread_mutex_lock(&lp.mu);
        lp.active--;
        pthread_mutex_unlock(&lp.mu);
      }
      break; /* fewer workers is still correct */
    }
    started = t;
  }

  /* The calling thread is worker 0 and the only one to report progress:
   * after each index it finishes, then, when none is left for it, each time
   * the workers finish more, and once at the end if it never reported. */
  {
    size_t reported = 0;
    int said = 0;
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
        reported = atomic_load(&lp.done);
        said = 1;
        if (report(&lp, progress, reported))
          break;
      }
    }
    if (lp.watch) {
      pthread_mutex_lock(&lp.mu);
      while (lp.active > 0) {
        size_t d = atomic_load(&lp.done);
        if (d != reported && !atomic_load(&lp.stop)) {
          pthread_mutex_unlock(&lp.mu);
          reported = d;
          said = 1;
          (void)report(&lp, progress, d);
          pthread_mutex_lock(&lp.mu);
          continue;
        }
        pthread_cond_wait(&lp.cv, &lp.mu);
      }
      pthread_mutex_unlock(&lp.mu);
    }
    for (int t = 1; t <= started; t++)
      pthread_join(tids[t], NULL);
    started = 0;
    if (progress && progress->fn && !atomic_load(&lp.stop) &&
        (!said || reported != lp.n))
      (void)report(&lp, progress, atomic_load(&lp.done));
  }
  if (lp.watch) {
    pthread_cond_destroy(&lp.cv);
    pthread_mutex_destroy(&lp.mu);
  }
  for (int t = 1; t <= started; t++)
    pthread_join(tids[t], NULL);
  free(tids);
  free(ws);
  if (atomic_load(&lp.status) != CLARA_OK)
    return clara_fail((clara_status)atomic_load(&lp.status), "%s", lp.message);
  return CLARA_OK;
}
