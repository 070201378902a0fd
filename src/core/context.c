/* context.c -- version, contexts and the backend registry. */
#include "backend.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLARA_STR_(x) #x
#define CLARA_STR(x) CLARA_STR_(x)

CLARA_API const char *clara_version(void) {
  return CLARA_STR(CLARA_RECON_VERSION_MAJOR) "." CLARA_STR(
      CLARA_RECON_VERSION_MINOR) "." CLARA_STR(CLARA_RECON_VERSION_PATCH);
}

CLARA_API int clara_version_number(void) { return CLARA_RECON_VERSION_NUMBER; }

/* ---- The CUDA plugin ------------------------------------------------------
 * The plugin (libclara-recon-cuda.so) exports clara_cuda_plugin_entry (see
 * clara_plugin_entry_fn in backend.h), which returns its table or NULL
 * with the reason (no device, driver too old, ...). It is looked for at
 * $CLARA_RECON_CUDA_PLUGIN, then beside this library, then on the loader's
 * path. The result is decided once per process. */
static pthread_once_t plugin_once = PTHREAD_ONCE_INIT;
static const clara_backend_ops *plugin_ops;
static char plugin_why[512];

static void *open_plugin(char *why, size_t len) {
  const char *env = getenv("CLARA_RECON_CUDA_PLUGIN");
  const char *name = "libclara-recon-cuda.so";
  void *h;
  Dl_info info;
  if (env && *env) {
    h = dlopen(env, RTLD_NOW | RTLD_LOCAL);
    if (!h)
      snprintf(why, len, "CLARA_RECON_CUDA_PLUGIN=%s: %s", env, dlerror());
    return h;
  }
  if (dladdr((const void *)plugin_why, &info) && info.dli_fname) {
    char path[4096];
    const char *slash = strrchr(info.dli_fname, '/');
    if (slash) {
      int n = snprintf(path, sizeof path, "%.*s/%s",
                       (int)(slash - info.dli_fname), info.dli_fname, name);
      if (n > 0 && (size_t)n < sizeof path) {
        h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (h)
          return h;
      }
    }
  }
  h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (!h)
    snprintf(why, len, "the CUDA plugin %s could not be loaded: %s", name,
             dlerror());
  return h;
}

static const clara_host_api host_api = {clara_fail, &clara_cpu_ops};

static void load_plugin(void) {
  void *h = open_plugin(plugin_why, sizeof plugin_why);
  clara_plugin_entry_fn entry;
  if (!h)
    return;
  *(void **)&entry = dlsym(h, "clara_cuda_plugin_entry");
  if (!entry) {
    snprintf(plugin_why, sizeof plugin_why,
             "the CUDA plugin has no clara_cuda_plugin_entry: %s", dlerror());
    dlclose(h);
    return;
  }
  /* A plugin that cannot run stays loaded all the same: the decision is
   * made once per process, and unloading it would also unload the C++ and
   * CUDA runtimes it pulled in, losing their start-up allocations. */
  plugin_ops =
      entry(CLARA_BACKEND_ABI, &host_api, plugin_why, sizeof plugin_why);
}

clara_status clara_backend_resolve(clara_backend want, clara_backend *got,
                                   const clara_backend_ops **ops) {
  if (want == CLARA_BACKEND_CPU) {
    *got = CLARA_BACKEND_CPU;
    *ops = &clara_cpu_ops;
    return CLARA_OK;
  }
  pthread_once(&plugin_once, load_plugin);
  if (plugin_ops) {
    *got = CLARA_BACKEND_CUDA;
    *ops = plugin_ops;
    return CLARA_OK;
  }
  if (want == CLARA_BACKEND_CUDA)
    return clara_fail(CLARA_ERR_NO_DEVICE,
                      "clara_context_create: backend cuda: %s",
                      plugin_why[0] ? plugin_why : "no CUDA backend");
  *got = CLARA_BACKEND_CPU;
  *ops = &clara_cpu_ops;
  return CLARA_OK;
}

/* ---- Contexts ------------------------------------------------------------ */

CLARA_API void clara_context_options_init(clara_context_options *opts) {
  if (!opts)
    return;
  memset(opts, 0, sizeof *opts);
  opts->backend = CLARA_BACKEND_AUTO;
  opts->threads = 0;
  opts->host_memory_limit = 0; /* the machine's physical memory */
}

CLARA_API clara_status clara_context_create(const clara_context_options *opts,
                                            clara_context **out) {
  clara_context_options defaults;
  clara_context *ctx;
  clara_status st;
  if (!out)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "clara_context_create: out is NULL");
  *out = NULL;
  if (!opts) {
    clara_context_options_init(&defaults);
    opts = &defaults;
  }
  if ((int)opts->backend < CLARA_BACKEND_AUTO ||
      (int)opts->backend > CLARA_BACKEND_CUDA)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "clara_context_create: opts->backend: unknown backend %d "
                      "(expected 0 auto, 1 cpu or 2 cuda)",
                      (int)opts->backend);
  if (opts->device < 0)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "clara_context_create: opts->device: must be >= 0, got "
                      "%d",
                      opts->device);
  if (opts->threads < 0 || opts->threads > 4096)
    return clara_fail(CLARA_ERR_INVALID_ARG,
                      "clara_context_create: opts->threads: must be 0 (all "
                      "cores) to 4096, got %d",
                      opts->threads);
  ctx = calloc(1, sizeof *ctx);
  if (!ctx)
    return clara_fail(CLARA_ERR_OUT_OF_MEMORY,
                      "clara_context_create: cannot allocate the context");
  st = clara_backend_resolve(opts->backend, &ctx->backend, &ctx->ops);
  if (st != CLARA_OK) {
    free(ctx);
    return st;
  }
  ctx->threads = opts->threads > 0 ? opts->threads : clara_online_cpus();
  ctx->progress = opts->progress;
  ctx->progress_user = opts->progress_user;
  ctx->device = opts->device;
  ctx->device_memory_limit = opts->device_memory_limit;
  ctx->host_memory_limit = opts->host_memory_limit;
  if (ctx->ops->context_create) {
    st = ctx->ops->context_create(ctx, &ctx->backend_state);
    if (st != CLARA_OK) {
      free(ctx);
      return st;
    }
  }
  *out = ctx;
  return CLARA_OK;
}

CLARA_API void clara_context_destroy(clara_context *ctx) {
  if (!ctx)
    return;
  if (ctx->ops->context_destroy)
    ctx->ops->context_destroy(ctx->backend_state);
  free(ctx);
}

CLARA_API clara_backend clara_context_backend(const clara_context *ctx) {
  return ctx ? ctx->backend : CLARA_BACKEND_CPU;
}

CLARA_API int clara_context_threads(const clara_context *ctx) {
  return ctx ? ctx->threads : 0;
}

CLARA_API const char *clara_backend_name(clara_backend backend) {
  switch (backend) {
  case CLARA_BACKEND_AUTO:
    return "auto";
  case CLARA_BACKEND_CPU:
    return "cpu";
  case CLARA_BACKEND_CUDA:
    return "cuda";
  }
  return NULL;
}

CLARA_API clara_status clara_backend_parse(const char *name,
                                           clara_backend *out) {
  if (!name || !out)
    return clara_fail(CLARA_ERR_INVALID_ARG, "clara_backend_parse: %s is NULL",
                      !name ? "name" : "out");
  for (int b = CLARA_BACKEND_AUTO; b <= CLARA_BACKEND_CUDA; b++) {
    if (strcmp(name, clara_backend_name((clara_backend)b)) == 0) {
      *out = (clara_backend)b;
      return CLARA_OK;
    }
  }
  return clara_fail(CLARA_ERR_INVALID_ARG,
                    "backend: unknown name \"%s\" (expected auto, cpu or cuda)",
                    name);
}

void clara_progress_for(const clara_context *ctx, const char *stage,
                        double base, double span, clara_progress *p) {
  p->fn = ctx->progress;
  p->user = ctx->progress_user;
  p->stage = stage;
  p->base = base;
  p->span = span;
}
