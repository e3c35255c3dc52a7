// Math shared by the CPU (C++) and CUDA kernels of the sparse_core native extension.
// This header must stay free of ATen includes: the .cu file includes it and is compiled by nvcc
// without the (slow to parse) torch headers.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SC_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define SC_HOST_DEVICE inline
#endif

namespace sparse_core {

// RG-GAN long-tailed straight-through estimator: the surrogate derivative of step(x).
//   s'(x) = 2 - 4|x|  for |x| <= 0.4,   0.4 for 0.4 < |x| <= 1,   0 otherwise.
// The constants are converted to acc_t first so that float kernels compare against the same
// float32-rounded 0.4 as the PyTorch reference does.
template <typename acc_t>
SC_HOST_DEVICE acc_t long_tailed_grad(acc_t x) {
  const acc_t ax = x < acc_t(0) ? -x : x;
  if (ax <= acc_t(0.4)) return acc_t(2) - acc_t(4) * ax;
  if (ax <= acc_t(1)) return acc_t(0.4);
  return acc_t(0);
}

// A weight survives its channel's threshold t when |w| - t > 0 (strictly).
template <typename acc_t>
SC_HOST_DEVICE bool survives(acc_t w, acc_t t) {
  const acc_t aw = w < acc_t(0) ? -w : w;
  return aw - t > acc_t(0);
}

// RG-GAN's reset rule: the thresholds of a weight go to 0 when its mask keeps <= reset_density of the entries.
// Evaluated as PyTorch evaluates the reference `keep.sum() <= reset_density * keep.numel()` (an int64 tensor
// against a Python float: both sides in float32), so both paths decide alike also for counts above 2^24.
SC_HOST_DEVICE bool reset_collapsed(int64_t kept, int64_t numel, double reset_density) {
  return static_cast<float>(kept) <= static_cast<float>(reset_density * static_cast<double>(numel));
}

}  // namespace sparse_core
