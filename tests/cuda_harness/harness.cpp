// Compiled with: g++ -shared -fPIC -I<this dir> -I<grsn_sj/cuda> harness.cpp
// The kernels keep their extern "C" names; grsn_set_thread sets the indices of the next call,
// so a test runs a launch by calling the kernel once per (block, thread).
#include "cuda_host.h"
#include "grsn_multi_step.cu"

extern "C" void grsn_set_thread(unsigned int block, unsigned int thread, unsigned int block_dim) {
    blockIdx.x = block;
    threadIdx.x = thread;
    blockDim.x = block_dim;
}
