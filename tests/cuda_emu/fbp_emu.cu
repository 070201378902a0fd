/* The plugin's fbp_cuda.cu, compiled as is, plus a host dispatcher that
 * runs its kernels' per-thread bodies over the launch's grid. */
#include "emu.h"
#include "fbp_cuda.cu"
#include <string>

/* tex_smp's semantics on the host (its members are __device__ only). */
struct tex_host {
  cudaTextureObject_t t;
  int layer0;
  float ra;
  struct colp {
    float u;
  };
  HD colp col(float c) const {
    colp r;
    r.u = c + 0.5f;
    return r;
  }
  HD float lin(int j, const colp &c, int lr) const {
#ifndef __CUDA_ARCH__
    return emu_tex_fetch(t, c.u, (float)lr + 0.5f, layer0 + j);
#else
    return 0;
#endif
  }
  HD float bil(int j, const colp &c, float row) const {
#ifndef __CUDA_ARCH__
    return emu_tex_fetch(t, c.u, (row + 0.5f) - ra, layer0 + j);
#else
    return 0;
#endif
  }
};
static tex_host to_host(const tex_smp &s) {
  tex_host h;
  h.t = s.t;
  h.layer0 = s.layer0;
  h.ra = s.ra;
  return h;
}
static const precise_smp &to_host(const precise_smp &s) { return s; }

template <class T> static T arg(void **a, int i) { return *(T *)a[i]; }

static void check_block(dim3 b, unsigned x, unsigned y, const char *k) {
  emu_check(b.x == x && b.y == y && b.z == 1,
            std::string("block shape of ") + k);
}

template <int KIND, int ZS, class S>
static bool try_bp2d(const void *fn, dim3 g, dim3 b, void **a,
                     cudaStream_t st) {
  if (fn != (const void *)k_bp2d<KIND, ZS, S>)
    return false;
  check_block(b, BP_BX, BP_BY, "k_bp2d");
  float *vol = arg<float *>(a, 0);
  bp_params gp = arg<bp_params>(a, 1);
  S smp = arg<S>(a, 2);
  view_batch vb = arg<view_batch>(a, 3);
  emu_check(sizeof(float *) + sizeof(bp_params) + sizeof(S) +
                    sizeof(view_batch) <=
                4096,
            "parameter block > 4 KiB");
  emu_check((long)g.z * ZS >= gp.nz && ((long)g.z - 1) * ZS < gp.nz,
            "k_bp2d grid z does not match the slab");
  emu_check((long)g.x * BP_BX >= gp.nx && (long)g.y * BP_BY >= gp.ny,
            "k_bp2d grid does not cover the slab");
  emu_count("k_bp2d<" + std::to_string(KIND) + "," + std::to_string(ZS) + "," +
            (sizeof(S) == sizeof(tex_smp) && std::is_same<S, tex_smp>::value
                 ? "tex"
                 : "precise") +
            ">" + (gp.nx % BP_BX || gp.ny % BP_BY ? " partial-xy" : "") +
            (gp.nz % ZS ? " partial-z" : "") +
            (vb.n < BP_VIEWS ? "" : " full-256"));
  emu_enqueue(
      st,
      [=] {
        auto hs = to_host(smp);
        for (unsigned bz = 0; bz < g.z; bz++)
          for (unsigned by = 0; by < g.y; by++)
            for (unsigned bx = 0; bx < g.x; bx++)
              for (unsigned ty = 0; ty < b.y; ty++)
                for (unsigned tx = 0; tx < b.x; tx++)
                  bp2d_thread<KIND, ZS>(vol, gp, hs, vb.cs, vb.n,
                                        (int)(bx * b.x + tx),
                                        (int)(by * b.y + ty), (int)bz);
      },
      "k_bp2d");
  return true;
}

template <class S>
static bool try_bpcone(const void *fn, dim3 g, dim3 b, void **a,
                       cudaStream_t st) {
  if (fn != (const void *)k_bpcone<CONE_ZC, S>)
    return false;
  check_block(b, BP_BX, BP_BY, "k_bpcone");
  float *vol = arg<float *>(a, 0);
  bp_params gp = arg<bp_params>(a, 1);
  S smp = arg<S>(a, 2);
  view_batch vb = arg<view_batch>(a, 3);
  emu_check((long)g.z * CONE_ZC >= gp.nz && ((long)g.z - 1) * CONE_ZC < gp.nz,
            "k_bpcone grid z does not match the slab");
  emu_count(std::string("k_bpcone<") +
            (std::is_same<S, tex_smp>::value ? "tex" : "precise") + ">" +
            (gp.nx % BP_BX || gp.ny % BP_BY ? " partial-xy" : "") +
            (gp.nz % CONE_ZC ? " partial-z" : "") + (gp.ra ? " ra>0" : ""));
  emu_enqueue(
      st,
      [=] {
        auto hs = to_host(smp);
        for (unsigned bz = 0; bz < g.z; bz++)
          for (unsigned by = 0; by < g.y; by++)
            for (unsigned bx = 0; bx < g.x; bx++)
              for (unsigned ty = 0; ty < b.y; ty++)
                for (unsigned tx = 0; tx < b.x; tx++)
                  bpcone_thread<CONE_ZC>(vol, gp, hs, vb.cs, vb.n,
                                         (int)(bx * b.x + tx),
                                         (int)(by * b.y + ty), (int)bz);
      },
      "k_bpcone");
  return true;
}

int emu_dispatch_nn(const void *fn, dim3 g, dim3 b, void **a, cudaStream_t st);
int emu_dispatch_mr(const void *fn, dim3 g, dim3 b, void **a, cudaStream_t st);
int emu_dispatch(const void *fn, dim3 g, dim3 b, void **a, cudaStream_t st) {
  if (emu_dispatch_nn(fn, g, b, a, st))
    return 1;
  if (emu_dispatch_mr(fn, g, b, a, st))
    return 1;
  if (fn == (const void *)k_preweight) {
    float *out = arg<float *>(a, 0);
    const float *src = arg<const float *>(a, 1);
    size_t src_vs = arg<size_t>(a, 2);
    int nr = arg<int>(a, 3), cols = arg<int>(a, 4), nfft = arg<int>(a, 5),
        nv = arg<int>(a, 6), v0 = arg<int>(a, 7), ra = arg<int>(a, 8);
    const float *vw = arg<const float *>(a, 9), *dw = arg<const float *>(a, 10);
    emu_check(g.y == 1 && g.z == 1 && b.x <= LINE_TPB, "k_preweight config");
    emu_count(
        std::string("k_preweight") +
        ((long)g.x > (long)nv * nr ? " (zero lines: partial batch)" : "") +
        (ra ? " ra>0" : ""));
    emu_enqueue(
        st,
        [=] {
          for (unsigned line = 0; line < g.x; line++)
            for (unsigned t = 0; t < b.x; t++)
              preweight_line(out, src, src_vs, nr, cols, nfft, nv, v0, ra, vw,
                             dw, (int)line, (int)t, (int)b.x);
        },
        "k_preweight");
    return 1;
  }
  if (fn == (const void *)k_filter) {
    float2 *spec = arg<float2 *>(a, 0);
    const float *filt = arg<const float *>(a, 1);
    int nspec = arg<int>(a, 2);
    emu_enqueue(
        st,
        [=] {
          for (unsigned line = 0; line < g.x; line++)
            for (unsigned t = 0; t < b.x; t++)
              filter_line(spec, filt, nspec, (int)line, (int)t, (int)b.x);
        },
        "k_filter");
    return 1;
  }
  if (fn == (const void *)k_finish) {
    float *vol = arg<float *>(a, 0);
    int nx = arg<int>(a, 1), ny = arg<int>(a, 2);
    const int2 *mask = arg<const int2 *>(a, 3);
    float scale = arg<float>(a, 4), offset = arg<float>(a, 5);
    emu_enqueue(
        st,
        [=] {
          for (unsigned row = 0; row < g.x; row++)
            for (unsigned t = 0; t < b.x; t++)
              finish_row(vol, nx, ny, mask, scale, offset, (int)row, (int)t,
                         (int)b.x);
        },
        "k_finish");
    return 1;
  }
#define T2(K, Z)                                                               \
  if (try_bp2d<K, Z, precise_smp>(fn, g, b, a, st) ||                          \
      try_bp2d<K, Z, tex_smp>(fn, g, b, a, st))                                \
    return 1;
  T2(0, 1)
  T2(0, 4) T2(0, 8) T2(1, 1) T2(1, 4) T2(1, 8) T2(2, 1) T2(2, 4)
      T2(2, 8) if (try_bpcone<precise_smp>(fn, g, b, a, st) ||
                   try_bpcone<tex_smp>(fn, g, b, a, st)) return 1;
  return 0;
}
