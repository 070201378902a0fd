#include "fiber.h"
#include "emu.h"
#include <cstdlib>
#include <string>
#include <ucontext.h>
#include <vector>

namespace {
struct Fiber {
  ucontext_t ctx;
  bool done = false, at_barrier = false;
  char *stack = nullptr;
};
thread_local ucontext_t sched;
thread_local std::vector<Fiber> *fibers;
thread_local int cur = -1;
thread_local const std::function<void(int)> *cur_body;
const size_t STACK = 256 << 10;
thread_local std::vector<char *> stacks;

void trampoline() {
  int me = cur;
  (*cur_body)(me);
  (*fibers)[me].done = true;
  /* uc_link returns to the scheduler */
}
} // namespace

void emu_barrier(void) {
  emu_check(cur >= 0, "barrier outside a block");
  Fiber &f = (*fibers)[cur];
  f.at_barrier = true;
  swapcontext(&f.ctx, &sched);
}

void emu_run_block(int n, const std::function<void(int)> &body) {
  std::vector<Fiber> fs(n);
  while ((int)stacks.size() < n)
    stacks.push_back((char *)malloc(STACK));
  fibers = &fs;
  cur_body = &body;
  for (int i = 0; i < n; i++) {
    getcontext(&fs[i].ctx);
    fs[i].ctx.uc_stack.ss_sp = stacks[i];
    fs[i].ctx.uc_stack.ss_size = STACK;
    fs[i].ctx.uc_link = &sched;
    makecontext(&fs[i].ctx, (void (*)())trampoline, 0);
  }
  for (;;) {
    int done = 0, waiting = 0;
    for (int i = 0; i < n; i++) {
      if (fs[i].done)
        continue;
      fs[i].at_barrier = false;
      cur = i;
      swapcontext(&sched, &fs[i].ctx);
      cur = -1;
    }
    for (int i = 0; i < n; i++) {
      done += fs[i].done;
      waiting += fs[i].at_barrier && !fs[i].done;
    }
    if (done == n)
      break;
    if (done > 0) {
      emu_check(false, "divergent barrier: " + std::to_string(done) +
                           " threads ended while " + std::to_string(waiting) +
                           " wait");
      /* let the waiting ones go on */
    }
  }
  fibers = nullptr;
}
