/* The plugin's nn_cuda.cu, compiled as is, with barriers mapped to the
 * coroutine scheduler, plus a dispatcher for its kernels. */
#include "fiber.h"
#define NN_HOST_BARRIER() emu_barrier()
#include "emu.h"
#include "nn_cuda.cu"
#include <string>
#include <vector>

template <class T> static T arg(void **a, int i) { return *(T *)a[i]; }

template <class C, class T, class TO>
static bool try_conv(const void *fn, dim3 g, dim3 b, void **a, cudaStream_t st,
                     const char *name) {
  if (fn != (const void *)k_conv<C, T, TO>)
    return false;
  emu_check(b.x == 32 && (int)b.y == C::TY && (int)b.z == C::CG,
            "k_conv block shape");
  conv_params P = arg<conv_params>(a, 0);
  int tiles_y = (P.ny + C::TH - 1) / C::TH;
  emu_check(P.tiles_x == (P.nx + 31) / 32, "k_conv tiles_x");
  emu_check((long)g.x == (long)P.tiles_x * tiles_y, "k_conv grid.x != tiles");
  emu_check((long)g.z * C::CO_B >= P.cout && ((long)g.z - 1) * C::CO_B < P.cout,
            "k_conv grid.z vs cout");
  emu_check(P.npix == (size_t)P.nx * P.ny, "k_conv npix");
  emu_count(std::string("k_conv<") + name + ">" +
            (P.nx % 32 ? " partial-x" : "") +
            (P.ny % C::TH ? " partial-y" : "") +
            (P.cout % C::CO_B ? " partial-co" : "") +
            (P.cin % C::CI_C ? " partial-ci" : "") + (P.relu ? " relu" : ""));
  emu_enqueue(
      st,
      [=] {
        std::vector<unsigned char> s_in(C::S_IN * sizeof(T));
        std::vector<float> s_w(C::S_W);
        for (unsigned bz = 0; bz < g.z; bz++)
          for (unsigned by = 0; by < g.y; by++)
            for (unsigned bx = 0; bx < g.x; bx++) {
              memset(s_in.data(), 0xff,
                     s_in.size()); /* NaN in float and half */
              memset(s_w.data(), 0xff, s_w.size() * sizeof(float));
              emu_run_block(32 * C::TY * C::CG, [&](int t) {
                int tx = t % 32, ty = (t / 32) % C::TY, tc = t / (32 * C::TY);
                conv_block<C, T, TO>(P, (T *)s_in.data(), s_w.data(), (int)bx,
                                     (int)by, (int)bz, tx, ty, tc);
              });
            }
      },
      "k_conv");
  return true;
}

int emu_dispatch_nn(const void *fn, dim3 g, dim3 b, void **a, cudaStream_t st) {
  if (try_conv<cfg_wide, float, float>(fn, g, b, a, st, "wide,f32") ||
      try_conv<cfg_mid, float, float>(fn, g, b, a, st, "mid,f32") ||
      try_conv<cfg_narrow, float, float>(fn, g, b, a, st, "narrow,f32") ||
      try_conv<cfg_wide, __half, __half>(fn, g, b, a, st, "wide,f16") ||
      try_conv<cfg_mid, __half, __half>(fn, g, b, a, st, "mid,f16") ||
      try_conv<cfg_narrow, __half, __half>(fn, g, b, a, st, "narrow,f16") ||
      try_conv<cfg_narrow, __half, float>(fn, g, b, a, st, "narrow,f16->f32"))
    return 1;
  if (fn == (const void *)k_normalise<float> ||
      fn == (const void *)k_normalise<__half>) {
    bool h = fn == (const void *)k_normalise<__half>;
    ew_params P = arg<ew_params>(a, 0);
    emu_check(g.y == 1 && g.z == 1 && b.y == 1 && b.z == 1,
              "k_normalise shape");
    emu_count(std::string("k_normalise") + (h ? "<half>" : "<float>") +
              (P.scale ? " percentile" : " fixed"));
    emu_enqueue(
        st,
        [=] {
          size_t stride = (size_t)g.x * b.x;
          for (size_t t = 0; t < stride; t++)
            if (h)
              normalise_thread<__half>(P, t, stride);
            else
              normalise_thread<float>(P, t, stride);
        },
        "k_normalise");
    return 1;
  }
  if (fn == (const void *)k_finish) {
    ew_params P = arg<ew_params>(a, 0);
    emu_count(std::string("k_finish") + (P.residual ? " residual" : "") +
              (P.in == P.out ? " in-place" : ""));
    emu_enqueue(
        st,
        [=] {
          size_t stride = (size_t)g.x * b.x;
          for (size_t t = 0; t < stride; t++)
            finish_thread(P, t, stride);
        },
        "k_finish");
    return 1;
  }
  if (fn == (const void *)k_finite) {
    const float *in = arg<const float *>(a, 0);
    size_t n = arg<size_t>(a, 1);
    int *flag = arg<int *>(a, 2);
    emu_count("k_finite");
    emu_enqueue(
        st,
        [=] {
          size_t stride = (size_t)g.x * b.x;
          for (size_t t = 0; t < stride; t++)
            finite_thread(in, n, flag, t, stride);
        },
        "k_finite");
    return 1;
  }
  if (fn == (const void *)k_percentile) {
    const float *in = arg<const float *>(a, 0);
    float *scale = arg<float *>(a, 1);
    size_t npix = arg<size_t>(a, 2);
    unsigned rank = arg<unsigned>(a, 3);
    emu_check(b.x == NN_SELECT_TPB && b.y == 1 && b.z == 1 && g.y == 1 &&
                  g.z == 1,
              "k_percentile shape");
    emu_check(rank < npix, "k_percentile rank");
    emu_count("k_percentile");
    emu_enqueue(
        st,
        [=] {
          unsigned hist[256], sel[2];
          for (unsigned bx = 0; bx < g.x; bx++) {
            memset(hist, 0xff, sizeof hist);
            memset(sel, 0xff, sizeof sel);
            emu_run_block((int)b.x, [&](int t) {
              percentile_block(in, scale, npix, rank, hist, sel, (int)bx, t);
            });
          }
        },
        "k_percentile");
    return 1;
  }
  return 0;
}
