// Host harness for grsn_sj/cuda/grsn_multi_step.cu: makes the CUDA source plain C++ so g++ can
// compile it and the tests can run every "thread" of a launch on the CPU (see harness.cpp).
#pragma once
#include <math.h>

struct grsn_dim3 {
    unsigned int x, y, z;
};
static grsn_dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
