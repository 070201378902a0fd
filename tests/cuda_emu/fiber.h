/* Runs a block's threads as coroutines so that __syncthreads (nn_sync ->
 * NN_HOST_BARRIER) works on the host: each thread runs until it reaches a
 * barrier or ends; a round ends when every thread has done so. Threads
 * that end while others wait at a barrier are a violation (divergent
 * barrier). */
#pragma once
#include <functional>
void emu_run_block(int nthreads, const std::function<void(int)> &body);
void emu_barrier(void);
