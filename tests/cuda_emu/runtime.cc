/* runtime.cc -- a host emulation of the parts of the CUDA runtime and of
 * cuFFT that the CUDA plugin (src/cuda) uses, so that the plugin's own
 * code -- its host logic and, through the dispatchers in *_emu.cu, the
 * per-thread bodies of its kernels -- runs and is tested on a machine
 * without a GPU (`make check-cuda-emu`, README.md).
 *
 * What it checks on the way (each failure is an "EMU VIOLATION" and makes
 * the process exit with status 1):
 * - memory: device and pinned allocations are filled with NaN, so that
 *   reading what was never written shows; copies, memsets and FFTs must
 *   stay inside their allocation; frees must match their allocator;
 * - streams: work queued on a stream runs only when the host waits for
 *   it (stream or event synchronisation, cudaFree, a legacy-stream call)
 *   or when a stream being run waits for it, so a missing wait gives
 *   wrong or NaN results instead of passing by luck; streams must be
 *   non-blocking; events must be complete before their times are read;
 * - launches: grid and block limits, known kernels only;
 * - cuFFT: plan types, strides and embeddings as the plugin makes them,
 *   a stream set before execution, work areas present; the transforms
 *   are FFTW's, and a C2R input is clobbered afterwards as cuFFT may;
 * - textures: layered float arrays with linear filtering, the hardware's
 *   9-bit (1.8 fixed point) interpolation weights, border or clamp.
 *
 * EMU_STATS=1 prints how often each operation ran, EMU_VERBOSE=1 every
 * queued operation as it runs, EMU_ABORT=1 aborts at the first violation,
 * EMU_FREE_BYTES sets what cudaMemGetInfo reports free, EMU_EAGER=1 runs
 * work as soon as it is queued. The host-stub entry points
 * (__cudaPushCallConfiguration, __cudaLaunchKernel, ...) are those nvcc
 * 13 generates; another nvcc may need them adapted. */
#include "emu.h"
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <cufft.h>
#include <fftw3.h>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <unistd.h>
#include <vector>

/* ---------------- bookkeeping ---------------- */
static std::recursive_mutex M;
static std::map<std::string, long> counts;
static int verbose = getenv("EMU_VERBOSE") != nullptr;
static long violations = 0;

void emu_check(bool ok, const std::string &what) {
  if (ok)
    return;
  std::lock_guard<std::recursive_mutex> l(M);
  violations++;
  fprintf(stderr, "EMU VIOLATION: %s\n", what.c_str());
  if (getenv("EMU_ABORT"))
    abort();
}
void emu_count(const std::string &w) {
  std::lock_guard<std::recursive_mutex> l(M);
  counts[w]++;
}

static void report() {
  if (getenv("EMU_STATS")) {
    fprintf(stderr, "=== emu stats ===\n");
    for (auto &kv : counts)
      fprintf(stderr, "  %8ld  %s\n", kv.second, kv.first.c_str());
  }
  if (violations) {
    fprintf(stderr, "=== EMU: %ld violations ===\n", violations);
    fflush(NULL);
    _exit(1); /* whatever the test itself decided */
  }
}
static struct Reporter {
  ~Reporter() { report(); }
} reporter;

static thread_local cudaError_t last_err = cudaSuccess;
void emu_set_error(cudaError_t e) {
  if (last_err == cudaSuccess)
    last_err = e;
}

static double now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* ---------------- memory ---------------- */
struct Alloc {
  size_t n;
  int kind;
}; /* 1 device, 2 pinned */
static std::map<const char *, Alloc> allocs;

static void fill_nan(void *p, size_t n) {
  float nanv = std::nanf("");
  float *f = (float *)p;
  for (size_t i = 0; i < n / 4; i++)
    f[i] = nanv;
}
static bool range_ok(const void *p, size_t n, int kind_mask, const char *what) {
  /* host memory not from the mock (the caller's pageable memory, or the
   * test's emulated "device" memory) is not checked */
  std::lock_guard<std::recursive_mutex> l(M);
  auto it = allocs.upper_bound((const char *)p);
  if (it == allocs.begin())
    return true;
  --it;
  const char *b = it->first;
  if ((const char *)p >= b + it->second.n)
    return true;
  bool ok = (const char *)p + n <= b + it->second.n;
  emu_check(ok,
            std::string(what) + ": range runs past the end of its allocation");
  (void)kind_mask;
  return ok;
}

/* ---------------- streams and events ---------------- */
struct Stamp {
  bool done = false;
  double t = 0;
};
struct Op {
  int kind; /* 0 fn, 1 record, 2 wait */
  std::function<void()> fn;
  std::shared_ptr<Stamp> stamp;
  struct Stream *ws;
  size_t wpos;
  std::string what;
};
struct Stream {
  std::vector<Op> ops;
  size_t executed = 0;
  bool alive = true;
};
struct Event {
  Stream *s = nullptr;
  size_t pos = 0;
  std::shared_ptr<Stamp> stamp;
  bool timing = true;
};
static std::set<Stream *> streams;
static bool is_legacy(cudaStream_t s) {
  return s == 0 || s == cudaStreamLegacy || s == cudaStreamPerThread;
}

static void run_until(Stream *s, size_t pos) { /* runs ops [executed, pos] */
  std::lock_guard<std::recursive_mutex> l(M);
  while (s->executed <= pos && s->executed < s->ops.size()) {
    Op &op = s->ops[s->executed];
    if (op.kind == 2)
      run_until(op.ws, op.wpos);
    else if (op.kind == 1) {
      op.stamp->done = true;
      op.stamp->t = now_ms();
    } else {
      if (verbose)
        fprintf(stderr, "emu run %p: %s\n", (void *)s, op.what.c_str());
      op.fn();
    }
    op.fn = nullptr;
    s->executed++;
  }
}
static void run_all() {
  std::lock_guard<std::recursive_mutex> l(M);
  for (Stream *s : streams)
    if (!s->ops.empty())
      run_until(s, s->ops.size() - 1);
}
void emu_enqueue(cudaStream_t st, std::function<void()> f,
                 const std::string &what) {
  std::lock_guard<std::recursive_mutex> l(M);
  if (is_legacy(st)) {
    emu_count("op on legacy/default stream: " + what);
    run_all(); /* conservative: finish every stream's work first */
    f();
    return;
  }
  Stream *s = (Stream *)st;
  emu_check(streams.count(s) && s->alive,
            "enqueue on an unknown or destroyed stream: " + what);
  Op op;
  op.kind = 0;
  op.fn = std::move(f);
  op.what = what;
  s->ops.push_back(std::move(op));
  if (getenv("EMU_EAGER"))
    run_until(s, s->ops.size() - 1);
}

extern "C" {
cudaError_t cudaGetLastError(void) {
  cudaError_t e = last_err;
  last_err = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return last_err; }
const char *cudaGetErrorName(cudaError_t e) {
  static char b[64];
  snprintf(b, sizeof b, "cudaError_%d", (int)e);
  return e == cudaSuccess ? "cudaSuccess" : b;
}
const char *cudaGetErrorString(cudaError_t e) {
  return e == cudaSuccess ? "no error" : "emulated error";
}
cudaError_t cudaDriverGetVersion(int *v) {
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int *v) {
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceCount(int *c) {
  *c = 1;
  return cudaSuccess;
}
static thread_local int cur_dev = 0;
cudaError_t cudaGetDevice(int *d) {
  *d = cur_dev;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) {
  if (d != 0)
    return cudaErrorInvalidDevice;
  cur_dev = d;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
  if (d != 0)
    return cudaErrorInvalidDevice;
  memset(p, 0, sizeof *p);
  strcpy(p->name, "emulated");
  p->totalGlobalMem = (size_t)8 << 30;
  p->maxTexture2DLayered[0] = 32768;
  p->maxTexture2DLayered[1] = 32768;
  p->maxTexture2DLayered[2] = 2048;
  p->major = 9;
  p->minor = 0;
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *f, size_t *t) {
  const char *e = getenv("EMU_FREE_BYTES");
  *f = e ? strtoull(e, nullptr, 10) : ((size_t)4 << 30);
  *t = (size_t)8 << 30;
  return cudaSuccess;
}
cudaError_t cudaMalloc(void **p, size_t n) {
  std::lock_guard<std::recursive_mutex> l(M);
  *p = malloc(n ? n : 1);
  if (!*p)
    return cudaErrorMemoryAllocation;
  fill_nan(*p, n);
  allocs[(const char *)*p] = {n, 1};
  emu_count("cudaMalloc");
  return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
  std::lock_guard<std::recursive_mutex> l(M);
  run_all(); /* cudaFree synchronises the device */
  if (!p)
    return cudaSuccess;
  auto it = allocs.find((const char *)p);
  emu_check(it != allocs.end() && it->second.kind == 1,
            "cudaFree of a pointer that cudaMalloc did not return");
  if (it != allocs.end())
    allocs.erase(it);
  free(p);
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void **p, size_t n) {
  std::lock_guard<std::recursive_mutex> l(M);
  run_all();
  *p = malloc(n ? n : 1);
  if (!*p)
    return cudaErrorMemoryAllocation;
  fill_nan(*p, n);
  allocs[(const char *)*p] = {n, 2};
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void *p) {
  std::lock_guard<std::recursive_mutex> l(M);
  run_all();
  auto it = allocs.find((const char *)p);
  emu_check(it != allocs.end() && it->second.kind == 2,
            "cudaFreeHost of a pointer that cudaMallocHost did not return");
  if (it != allocs.end())
    allocs.erase(it);
  free(p);
  return cudaSuccess;
}
static int kind_of(const void *p) {
  std::lock_guard<std::recursive_mutex> l(M);
  auto it = allocs.upper_bound((const char *)p);
  if (it == allocs.begin())
    return 0;
  --it;
  if ((const char *)p < it->first + it->second.n)
    return it->second.kind;
  return 0;
}
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *a, const void *p) {
  memset(a, 0, sizeof *a);
  int k = kind_of(p);
  if (k == 2) {
    a->type = cudaMemoryTypeHost;
    a->device = 0;
  } else if (!p) {
    a->type = cudaMemoryTypeUnregistered;
  } else {
    a->type = cudaMemoryTypeDevice;
    a->device = 0;
  } /* the test's emulated device memory is host memory */
  a->devicePointer = (void *)p;
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind k) {
  std::lock_guard<std::recursive_mutex> l(M);
  run_all(); /* legacy stream */
  (void)k;
  range_ok(d, n, 3, "cudaMemcpy dst");
  range_ok(s, n, 3, "cudaMemcpy src");
  memcpy(d, s, n);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind k,
                            cudaStream_t st) {
  range_ok(d, n, 3, "cudaMemcpyAsync dst");
  range_ok(s, n, 3, "cudaMemcpyAsync src");
  if (k == cudaMemcpyHostToDevice && kind_of(s) != 2)
    emu_count("cudaMemcpyAsync H2D from pageable memory (staged)");
  if (k == cudaMemcpyDeviceToHost && kind_of(d) != 2)
    emu_count("cudaMemcpyAsync D2H into pageable memory");
  emu_count(k == cudaMemcpyHostToDevice   ? "memcpy H2D"
            : k == cudaMemcpyDeviceToHost ? "memcpy D2H"
                                          : "memcpy other");
  emu_enqueue(
      st, [=] { memcpy(d, s, n); }, "cudaMemcpyAsync");
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t st) {
  range_ok(d, n, 1, "cudaMemsetAsync");
  emu_enqueue(
      st, [=] { memset(d, v, n); }, "cudaMemsetAsync");
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *p, unsigned f) {
  std::lock_guard<std::recursive_mutex> l(M);
  emu_check(f == cudaStreamNonBlocking,
            "stream created without cudaStreamNonBlocking");
  Stream *s = new Stream;
  streams.insert(s);
  *p = (cudaStream_t)s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t st) {
  std::lock_guard<std::recursive_mutex> l(M);
  if (is_legacy(st)) {
    run_all();
    return cudaSuccess;
  }
  Stream *s = (Stream *)st;
  if (!s->ops.empty())
    run_until(s, s->ops.size() - 1);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t st) {
  std::lock_guard<std::recursive_mutex> l(M);
  Stream *s = (Stream *)st;
  if (!s->ops.empty())
    run_until(s, s->ops.size() - 1); /* work completes */
  s->alive = false; /* keep the object: events may still refer to it */
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) {
  *e = (cudaEvent_t) new Event;
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned f) {
  Event *ev = new Event;
  ev->timing = !(f & cudaEventDisableTiming);
  *e = (cudaEvent_t)ev;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  (void)e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t st) {
  std::lock_guard<std::recursive_mutex> l(M);
  Event *ev = (Event *)e;
  ev->stamp = std::make_shared<Stamp>();
  if (is_legacy(st)) {
    run_all();
    ev->s = nullptr;
    ev->stamp->done = true;
    ev->stamp->t = now_ms();
    return cudaSuccess;
  }
  Stream *s = (Stream *)st;
  Op op;
  op.kind = 1;
  op.stamp = ev->stamp;
  op.what = "record";
  s->ops.push_back(op);
  ev->s = s;
  ev->pos = s->ops.size() - 1;
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t st, cudaEvent_t e, unsigned f) {
  std::lock_guard<std::recursive_mutex> l(M);
  (void)f;
  Event *ev = (Event *)e;
  if (!ev->s)
    return cudaSuccess; /* never recorded or recorded on the legacy stream
                           (done) */
  emu_check(!is_legacy(st), "wait on the legacy stream");
  Stream *s = (Stream *)st;
  Op op;
  op.kind = 2;
  op.ws = ev->s;
  op.wpos = ev->pos;
  op.what = "wait";
  s->ops.push_back(op);
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  std::lock_guard<std::recursive_mutex> l(M);
  Event *ev = (Event *)e;
  if (ev->s)
    run_until(ev->s, ev->pos);
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
  std::lock_guard<std::recursive_mutex> l(M);
  Event *ea = (Event *)a, *eb = (Event *)b;
  emu_check(ea->timing && eb->timing,
            "elapsed time of an event without timing");
  if (!ea->stamp || !eb->stamp) {
    emu_check(false, "elapsed time of an event never recorded");
    return cudaErrorInvalidResourceHandle;
  }
  if (!ea->stamp->done || !eb->stamp->done) {
    emu_check(false, "cudaEventElapsedTime on an event not yet completed "
                     "(cudaErrorNotReady)");
    return cudaErrorNotReady;
  }
  *ms = (float)(eb->stamp->t - ea->stamp->t);
  if (*ms <= 0)
    *ms = 1e-6f;
  return cudaSuccess;
}

/* ---------------- arrays and textures ---------------- */
struct EmuArray {
  size_t w, h, d;
  float *data;
};
struct EmuTex {
  EmuArray *a;
  cudaTextureDesc td;
};
cudaChannelFormatDesc cudaCreateChannelDesc(int x, int y, int z, int w,
                                            cudaChannelFormatKind f) {
  cudaChannelFormatDesc c;
  c.x = x;
  c.y = y;
  c.z = z;
  c.w = w;
  c.f = f;
  return c;
}
cudaError_t cudaMalloc3DArray(cudaArray_t *arr, const cudaChannelFormatDesc *cd,
                              cudaExtent e, unsigned flags) {
  std::lock_guard<std::recursive_mutex> l(M);
  run_all();
  emu_check(cd->x == 32 && cd->f == cudaChannelFormatKindFloat, "array format");
  emu_check(flags == cudaArrayLayered, "array flags");
  emu_check(e.width <= 32768 && e.height <= 32768 && e.depth <= 2048 &&
                e.width && e.depth,
            "layered array extent limits");
  EmuArray *a =
      new EmuArray{e.width, e.height ? e.height : 1, e.depth, nullptr};
  a->data = (float *)malloc(a->w * a->h * a->d * 4);
  fill_nan(a->data, a->w * a->h * a->d * 4);
  *arr = (cudaArray_t)a;
  return cudaSuccess;
}
cudaError_t cudaFreeArray(cudaArray_t arr) {
  std::lock_guard<std::recursive_mutex> l(M);
  run_all();
  EmuArray *a = (EmuArray *)arr;
  free(a->data);
  delete a;
  return cudaSuccess;
}
cudaError_t cudaMemcpy3DAsync(const cudaMemcpy3DParms *p, cudaStream_t st) {
  cudaMemcpy3DParms c = *p;
  emu_check(c.dstArray && !c.srcArray && c.srcPtr.ptr,
            "3D copy: expected pitched pointer to array");
  EmuArray *a = (EmuArray *)c.dstArray;
  emu_check(c.extent.width <= a->w && c.extent.height <= a->h &&
                c.extent.depth <= a->d,
            "3D copy extent exceeds the array");
  emu_check(c.srcPtr.xsize >= c.extent.width &&
                c.srcPtr.pitch >= c.extent.width * 4 &&
                c.srcPtr.ysize >= c.extent.height,
            "3D copy: source pitch/xsize/ysize");
  emu_check(c.srcPos.x == 0 && c.srcPos.y == 0 && c.srcPos.z == 0 &&
                c.dstPos.x == 0 && c.dstPos.y == 0 && c.dstPos.z == 0,
            "3D copy positions");
  range_ok(c.srcPtr.ptr,
           c.srcPtr.pitch * c.srcPtr.ysize * (c.extent.depth - 1) +
               c.srcPtr.pitch * (c.extent.height - 1) + c.extent.width * 4,
           1, "3D copy source");
  emu_count("cudaMemcpy3DAsync (texture)");
  emu_enqueue(
      st,
      [=] {
        for (size_t z = 0; z < c.extent.depth; z++)
          for (size_t y = 0; y < c.extent.height; y++)
            memcpy(a->data + (z * a->h + y) * a->w,
                   (const char *)c.srcPtr.ptr +
                       (z * c.srcPtr.ysize + y) * c.srcPtr.pitch,
                   c.extent.width * 4);
      },
      "cudaMemcpy3DAsync");
  return cudaSuccess;
}
cudaError_t cudaCreateTextureObject(cudaTextureObject_t *t,
                                    const cudaResourceDesc *rd,
                                    const cudaTextureDesc *td,
                                    const cudaResourceViewDesc *vd) {
  emu_check(rd->resType == cudaResourceTypeArray && vd == nullptr,
            "texture resource");
  emu_check(td->filterMode == cudaFilterModeLinear &&
                td->readMode == cudaReadModeElementType &&
                !td->normalizedCoords,
            "texture desc");
  EmuTex *x = new EmuTex{(EmuArray *)rd->res.array.array, *td};
  *t = (cudaTextureObject_t)x;
  return cudaSuccess;
}
cudaError_t cudaDestroyTextureObject(cudaTextureObject_t t) {
  delete (EmuTex *)t;
  return cudaSuccess;
}

} /* extern C */
static float texel(const EmuTex *x, long i, long j, int layer) {
  const EmuArray *a = x->a;
  for (int d = 0; d < 2; d++) {
    long &k = d == 0 ? i : j;
    long n = d == 0 ? (long)a->w : (long)a->h;
    if (k < 0 || k >= n) {
      if (x->td.addressMode[d] == cudaAddressModeBorder)
        return 0.0f;
      k = k < 0 ? 0 : n - 1; /* clamp */
    }
  }
  return a->data[((size_t)layer * a->h + (size_t)j) * a->w + (size_t)i];
}
/* tex2DLayered with linear filtering: weights in 1.8 fixed point. */
float emu_tex_fetch(cudaTextureObject_t t, float x, float y, int layer) {
  const EmuTex *tx = (const EmuTex *)t;
  emu_check(layer >= 0 && (size_t)layer < tx->a->d,
            "texture layer out of range");
  if (layer < 0)
    layer = 0;
  if ((size_t)layer >= tx->a->d)
    layer = (int)tx->a->d - 1;
  float xb = x - 0.5f, yb = y - 0.5f;
  float fx = floorf(xb), fy = floorf(yb);
  float ax = (getenv("EMU_TEX_TRUNC") ? floorf((xb - fx) * 256.0f)
                                      : roundf((xb - fx) * 256.0f)) /
             256.0f,
        ay = (getenv("EMU_TEX_TRUNC") ? floorf((yb - fy) * 256.0f)
                                      : roundf((yb - fy) * 256.0f)) /
             256.0f;
  long i = (long)fx, j = (long)fy;
  float t00 = texel(tx, i, j, layer), t10 = texel(tx, i + 1, j, layer);
  float t01 = texel(tx, i, j + 1, layer), t11 = texel(tx, i + 1, j + 1, layer);
  return (1 - ax) * (1 - ay) * t00 + ax * (1 - ay) * t10 + (1 - ax) * ay * t01 +
         ax * ay * t11;
}

extern "C" {
/* ---------------- launches ---------------- */
struct Cfg {
  dim3 g, b;
  size_t sh;
  cudaStream_t s;
};
static thread_local std::vector<Cfg> cfgs;
unsigned __cudaPushCallConfiguration(dim3 g, dim3 b, size_t sh,
                                     struct CUstream_st *s) {
  cfgs.push_back({g, b, sh, (cudaStream_t)s});
  return 0;
}
cudaError_t __cudaPopCallConfiguration(dim3 *g, dim3 *b, size_t *sh, void *s) {
  Cfg c = cfgs.back();
  cfgs.pop_back();
  *g = c.g;
  *b = c.b;
  *sh = c.sh;
  *(cudaStream_t *)s = c.s;
  return cudaSuccess;
}
cudaError_t __cudaGetKernel(cudaKernel_t *k, const void *f) {
  *k = (cudaKernel_t)f;
  return cudaSuccess;
}
cudaError_t __cudaLaunchKernel(cudaKernel_t k, dim3 g, dim3 b, void **args,
                               size_t sh, cudaStream_t s) {
  (void)sh;
  bool ok = g.x >= 1 && g.y >= 1 && g.z >= 1 && g.x <= 2147483647u &&
            g.y <= 65535 && g.z <= 65535 && (size_t)b.x * b.y * b.z <= 1024 &&
            b.x * b.y * b.z >= 1;
  if (!ok) {
    emu_check(false, "launch configuration out of range");
    emu_set_error(cudaErrorInvalidConfiguration);
    return cudaErrorInvalidConfiguration;
  }
  if (!emu_dispatch((const void *)k, g, b, args, s)) {
    emu_check(false, "unknown kernel");
    emu_set_error(cudaErrorInvalidDeviceFunction);
    return cudaErrorInvalidDeviceFunction;
  }
  return cudaSuccess;
}
cudaError_t __cudaLaunchKernel_ptsz(cudaKernel_t k, dim3 g, dim3 b, void **a,
                                    size_t sh, cudaStream_t s) {
  return __cudaLaunchKernel(k, g, b, a, sh, s);
}
static char fatdummy;
void **__cudaRegisterFatBinary(void *) {
  static void *h = &fatdummy;
  return &h;
}
void __cudaRegisterFatBinaryEnd(void **) {}
void __cudaUnregisterFatBinary(void **) {}
void __cudaRegisterFunction(void **, const char *, char *, const char *, int,
                            uint3 *, uint3 *, dim3 *, dim3 *, int *) {}

/* ---------------- cuFFT ---------------- */
struct FftPlan {
  bool made = false, autoalloc = true;
  long long n = 0, idist = 0, odist = 0, batch = 0;
  cufftType type;
  void *work = nullptr;
  size_t worksize = 0;
  cudaStream_t st = 0;
  fftwf_plan p = nullptr;
  int rank = 1;
  int dims[3] = {0, 0, 0};
};
static std::vector<FftPlan *> plans;
static std::mutex fftw_mu;
cufftResult cufftCreate(cufftHandle *h) {
  std::lock_guard<std::recursive_mutex> l(M);
  plans.push_back(new FftPlan);
  *h = (cufftHandle)(plans.size() - 1);
  return CUFFT_SUCCESS;
}
cufftResult cufftSetAutoAllocation(cufftHandle h, int a) {
  plans[h]->autoalloc = a != 0;
  emu_check(!plans[h]->made, "cufftSetAutoAllocation after the plan was made");
  return CUFFT_SUCCESS;
}
cufftResult cufftMakePlanMany64(cufftHandle h, int rank, long long *n,
                                long long *inembed, long long istride,
                                long long idist, long long *onembed,
                                long long ostride, long long odist,
                                cufftType type, long long batch, size_t *ws) {
  FftPlan *p = plans[h];
  if (type == CUFFT_C2C) {
    long long tot = 1;
    emu_check(rank >= 1 && rank <= 3 && istride == 1 && ostride == 1,
              "C2C rank/stride");
    for (int i = 0; i < rank; i++) {
      p->dims[i] = (int)n[i];
      tot *= n[i];
      if (inembed)
        emu_check(inembed[i] == n[i], "C2C inembed");
      if (onembed)
        emu_check(onembed[i] == n[i], "C2C onembed");
    }
    emu_check(idist >= tot && odist >= tot, "C2C dist");
    p->rank = rank;
    p->n = tot;
    p->idist = idist;
    p->odist = odist;
    p->type = type;
    p->batch = batch;
    p->made = true;
    p->worksize = (size_t)batch * (size_t)tot * 8 / 2 + 512;
    *ws = p->worksize;
    return CUFFT_SUCCESS;
  }
  emu_check(rank == 1 && istride == 1 && ostride == 1, "fft rank/stride");
  if (type == CUFFT_R2C)
    emu_check(inembed[0] >= n[0] && onembed[0] >= n[0] / 2 + 1,
              "fft R2C embed");
  else
    emu_check(inembed[0] >= n[0] / 2 + 1 && onembed[0] >= n[0],
              "fft C2R embed");
  p->n = n[0];
  p->idist = idist;
  p->odist = odist;
  p->type = type;
  p->batch = batch;
  p->made = true;
  p->worksize =
      (size_t)batch * (size_t)n[0] * 4 + (type == CUFFT_R2C ? 0 : 256);
  *ws = p->worksize;
  {
    std::lock_guard<std::mutex> l(fftw_mu);
    int nn = (int)n[0];
    if (type == CUFFT_R2C) {
      float *in = fftwf_alloc_real(nn);
      fftwf_complex *out = fftwf_alloc_complex(nn / 2 + 1);
      p->p = fftwf_plan_dft_r2c_1d(nn, in, out, FFTW_ESTIMATE | FFTW_UNALIGNED);
      fftwf_free(in);
      fftwf_free(out);
    } else {
      float *out = fftwf_alloc_real(nn);
      fftwf_complex *in = fftwf_alloc_complex(nn / 2 + 1);
      p->p = fftwf_plan_dft_c2r_1d(nn, in, out, FFTW_ESTIMATE | FFTW_UNALIGNED);
      fftwf_free(in);
      fftwf_free(out);
    }
  }
  return CUFFT_SUCCESS;
}
cufftResult cufftSetWorkArea(cufftHandle h, void *w) {
  plans[h]->work = w;
  return CUFFT_SUCCESS;
}
cufftResult cufftSetStream(cufftHandle h, cudaStream_t s) {
  plans[h]->st = s;
  return CUFFT_SUCCESS;
}
cufftResult cufftDestroy(cufftHandle h) {
  std::lock_guard<std::mutex> l(fftw_mu);
  if (plans[h]->p)
    fftwf_destroy_plan(plans[h]->p);
  plans[h]->p = nullptr;
  return CUFFT_SUCCESS;
}
static cufftResult exec(cufftHandle h, void *in, void *out, cufftType t) {
  FftPlan *p = plans[h];
  emu_check(p->made && p->type == t, "fft exec type");
  emu_check(p->autoalloc || p->worksize == 0 || p->work,
            "fft exec without a work area");
  emu_check(p->st != 0,
            "fft exec on the default stream (cufftSetStream missing)");
  size_t isz = t == CUFFT_R2C ? 4 : 8, osz = t == CUFFT_R2C ? 8 : 4;
  long long nin = t == CUFFT_R2C ? p->n : p->n / 2 + 1,
            nout = t == CUFFT_R2C ? p->n / 2 + 1 : p->n;
  range_ok(in, ((p->batch - 1) * p->idist + nin) * isz, 1, "fft input");
  range_ok(out, ((p->batch - 1) * p->odist + nout) * osz, 1, "fft output");
  emu_count(t == CUFFT_R2C ? "cufftExecR2C" : "cufftExecC2R");
  FftPlan pc = *p;
  void *work = p->work;
  size_t wsz = p->worksize;
  emu_enqueue(
      p->st,
      [=] {
        if (work)
          fill_nan(work, wsz); /* the work area is scratch */
        for (long long b = 0; b < pc.batch; b++) {
          if (t == CUFFT_R2C)
            fftwf_execute_dft_r2c(pc.p, (float *)in + b * pc.idist,
                                  (fftwf_complex *)out + b * pc.odist);
          else {
            fftwf_execute_dft_c2r(pc.p, (fftwf_complex *)in + b * pc.idist,
                                  (float *)out + b * pc.odist);
          }
        }
        if (t == CUFFT_C2R)
          fill_nan(in, (size_t)(((pc.batch - 1) * pc.idist + pc.n / 2 + 1) *
                                8)); /* C2R may overwrite its input */
      },
      t == CUFFT_R2C ? "R2C" : "C2R");
  return CUFFT_SUCCESS;
}
cufftResult cufftExecC2C(cufftHandle h, cufftComplex *in, cufftComplex *out,
                         int dir) {
  FftPlan *p = plans[h];
  emu_check(p->made && p->type == CUFFT_C2C, "fft exec type (C2C)");
  emu_check(p->autoalloc || p->worksize == 0 || p->work,
            "fft exec without a work area");
  emu_check(p->st != 0,
            "fft exec on the default stream (cufftSetStream missing)");
  range_ok(in, ((p->batch - 1) * p->idist + p->n) * 8, 1, "fft input");
  range_ok(out, ((p->batch - 1) * p->odist + p->n) * 8, 1, "fft output");
  emu_count(dir == CUFFT_INVERSE ? "cufftExecC2C inverse"
                                 : "cufftExecC2C forward");
  FftPlan pc = *p;
  void *work = p->work;
  size_t wsz = p->worksize;
  emu_enqueue(
      p->st,
      [=] {
        if (work)
          fill_nan(work, wsz);
        fftwf_plan fp;
        {
          std::lock_guard<std::mutex> l(fftw_mu);
          fp = fftwf_plan_dft(
              pc.rank, pc.dims, (fftwf_complex *)in, (fftwf_complex *)out,
              dir == CUFFT_INVERSE ? FFTW_BACKWARD : FFTW_FORWARD,
              FFTW_ESTIMATE | FFTW_UNALIGNED);
        }
        for (long long b = 0; b < pc.batch; b++)
          fftwf_execute_dft(fp, (fftwf_complex *)in + b * pc.idist,
                            (fftwf_complex *)out + b * pc.odist);
        std::lock_guard<std::mutex> l(fftw_mu);
        fftwf_destroy_plan(fp);
      },
      "C2C");
  return CUFFT_SUCCESS;
}
cufftResult cufftExecR2C(cufftHandle h, cufftReal *i, cufftComplex *o) {
  return exec(h, i, o, CUFFT_R2C);
}
cufftResult cufftExecC2R(cufftHandle h, cufftComplex *i, cufftReal *o) {
  return exec(h, i, o, CUFFT_C2R);
}
}
