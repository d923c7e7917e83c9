// Lets a host C++ compiler build cpp_ext/kernels.cu unchanged, so tests can run the CUDA kernels' own code on the
// CPU (one thread after another) where there is no GPU. Only the launch model is emulated: blockIdx, threadIdx and
// blockDim are plain globals and the CUDA qualifiers vanish. The header's __CUDA_ARCH__ branches (the cvt
// instructions for half conversions, __fmaf_rn) take their host spelling here, which tests/kernels/test_half.py
// checks against NumPy; everything else (index math, strides, taps, tie-breaks) is the kernels' own.
#pragma once

#include <cmath>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct RtsegEmulatedDim3 {
    unsigned x = 0, y = 0, z = 0;
};
static RtsegEmulatedDim3 blockIdx, threadIdx, blockDim;
