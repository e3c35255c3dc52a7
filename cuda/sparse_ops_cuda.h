// Launchers of the CUDA kernels, callable from plain C++ (raw pointers + stream).
// Keeping ATen out of the .cu file makes nvcc's work small: it compiles only the kernels.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace sparse_core {
namespace cuda {

enum class DType { kFloat32, kFloat64, kFloat16, kBFloat16 };

// out = w * step(|w| - t[c]); w seen as [outer, channels, inner]; t holds accumulation-type values
// (double for kFloat64, float otherwise).
cudaError_t threshold_forward(DType dtype, const void* w, const void* t, void* out, int64_t outer,
                              int64_t channels, int64_t inner, cudaStream_t stream);

// The forward plus RG-GAN's reset rule, decided on the device: counts the kept entries into *kept (one
// unsigned long long of device memory, cleared here); if reset_collapsed(kept, n, reset_density) then
// t_new = 0 and out = w, else t_new = t. t and t_new hold accumulation-type values.
cudaError_t threshold_forward_reset(DType dtype, const void* w, const void* t, void* out, void* t_new, void* kept,
                                    int64_t outer, int64_t channels, int64_t inner, double reset_density,
                                    cudaStream_t stream);

// grad_w = grad * M and (if compute_t_grad) grad_t[c] = -sum grad * w * s'(|w| - t[c]) in one pass.
// grad_t is in the accumulation type.
cudaError_t threshold_backward(DType dtype, const void* grad, const void* w, const void* t, void* grad_w,
                               void* grad_t, int64_t outer, int64_t channels, int64_t inner,
                               bool compute_t_grad, cudaStream_t stream);

// One pass over the weights of each output channel: dcoefs [N, O] and, when fused, per-sample weights
// [N, O, I, K] into w_out; non-fused with a mask, w_eff = w * mask [O, I, K] into w_out; non-fused without a
// mask nothing is written to w_out (it may be null).
cudaError_t modconv_weights(DType dtype, const void* w, const void* mask, const void* styles, void* w_out,
                            void* dcoefs, int64_t batch, int64_t out_channels, int64_t in_channels,
                            int64_t kernel_numel, bool demodulate, bool fused, double eps, cudaStream_t stream);

// Bytes of dynamic shared memory modconv_weights needs (it must not exceed the device limit).
int64_t modconv_shared_bytes(DType dtype, int64_t batch, int64_t in_channels);

}  // namespace cuda
}  // namespace sparse_core
