/* mr_cuda.cu compiled as is, plus a host dispatcher of its kernels. */
#include "emu.h"
#include "mr_cuda.cu"
template <class T> static T marg(void **a, int i) { return *(T *)a[i]; }
int emu_dispatch_mr(const void *fn, dim3 g, dim3 b, void **a, cudaStream_t st) {
  if (fn == (const void *)k_mr_load) {
    mr_params P = marg<mr_params>(a, 0);
    const float2 *raw = marg<const float2 *>(a, 1);
    float2 *buf = marg<float2 *>(a, 2);
    const float2 *W = marg<const float2 *>(a, 3);
    const float *win = marg<const float *>(a, 4);
    size_t n = marg<size_t>(a, 5);
    emu_check(g.y == 1 && g.z == 1 && b.y == 1 && b.z == 1, "k_mr_load config");
    emu_count(std::string("k_mr_load") + (W ? " whiten" : "") +
              (win ? " window" : ""));
    emu_enqueue(
        st,
        [=] {
          size_t stride = (size_t)g.x * b.x;
          for (size_t t = 0; t < stride; t++)
            mr_load_thread(P, raw, buf, W, win, n, t, stride);
        },
        "k_mr_load");
    return 1;
  }
  if (fn == (const void *)k_mr_combine) {
    mr_params P = marg<mr_params>(a, 0);
    const float2 *buf = marg<const float2 *>(a, 1);
    const float2 *sens = marg<const float2 *>(a, 2);
    float *out = marg<float *>(a, 3);
    size_t n = marg<size_t>(a, 4);
    emu_check(g.y == 1 && g.z == 1 && b.y == 1 && b.z == 1,
              "k_mr_combine config");
    emu_count(std::string("k_mr_combine") + (sens ? " sens" : " rss") +
              (P.cplx ? " complex" : ""));
    emu_enqueue(
        st,
        [=] {
          size_t stride = (size_t)g.x * b.x;
          for (size_t t = 0; t < stride; t++)
            mr_combine_thread(P, buf, sens, out, n, t, stride);
        },
        "k_mr_combine");
    return 1;
  }
  return 0;
}
