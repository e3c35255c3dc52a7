// Torch bindings of the CUDA kernels (compiled by the host compiler; the kernels live in
// sparse_ops_cuda_kernels.cu behind the plain launchers of sparse_ops_cuda.h).
// Operators are registered under SPARSE_CORE_NS with the CUDA dispatch key.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "sparse_ops_checks.h"
#include "sparse_ops_cuda.h"

#ifndef SPARSE_CORE_NS
#error "SPARSE_CORE_NS must be defined by the loader (sparse_core/ops/build.py)"
#endif

namespace sparse_core {
namespace {

using at::Tensor;

cuda::DType kernel_dtype(const Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return cuda::DType::kFloat32;
    case at::kDouble: return cuda::DType::kFloat64;
    case at::kHalf: return cuda::DType::kFloat16;
    case at::kBFloat16: return cuda::DType::kBFloat16;
    default: TORCH_CHECK(false, "sparse_core CUDA kernels support fp32, fp64, fp16 and bf16, got ", t.scalar_type());
  }
  return cuda::DType::kFloat32;  // unreachable
}

void check_cuda(const Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor for the CUDA kernels, got ", t.device());
}

void check_launch(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, "sparse_core CUDA kernel ", what, " failed: ", cudaGetErrorString(err));
}

Tensor threshold_forward_cuda(const Tensor& w, const Tensor& t, int64_t channel_dim) {
  check_cuda(w, "w");
  const ChannelLayout L = channel_layout(w, channel_dim);
  check_thresholds(w, t, L);
  const c10::cuda::CUDAGuard guard(w.device());
  const Tensor wc = w.contiguous();
  const Tensor tc = t.to(accumulate_type(wc.scalar_type())).contiguous();
  Tensor out = at::empty(wc.sizes(), wc.options());
  check_launch(cuda::threshold_forward(kernel_dtype(wc), wc.const_data_ptr(), tc.const_data_ptr(), out.mutable_data_ptr(),
                                       L.outer, L.channels, L.inner, c10::cuda::getCurrentCUDAStream()),
               "threshold_forward");
  return out;
}

std::tuple<Tensor, Tensor> threshold_forward_reset_cuda(const Tensor& w, const Tensor& t, int64_t channel_dim,
                                                        double reset_density) {
  check_cuda(w, "w");
  const ChannelLayout L = channel_layout(w, channel_dim);
  check_thresholds(w, t, L);
  const c10::cuda::CUDAGuard guard(w.device());
  const Tensor wc = w.contiguous();
  const Tensor tc = t.to(accumulate_type(wc.scalar_type())).contiguous();
  Tensor out = at::empty(wc.sizes(), wc.options());
  Tensor t_new = at::empty_like(tc);
  Tensor kept = at::empty({1}, wc.options().dtype(at::kLong));
  check_launch(cuda::threshold_forward_reset(kernel_dtype(wc), wc.const_data_ptr(), tc.const_data_ptr(),
                                             out.mutable_data_ptr(), t_new.mutable_data_ptr(), kept.mutable_data_ptr(),
                                             L.outer, L.channels, L.inner, reset_density,
                                             c10::cuda::getCurrentCUDAStream()),
               "threshold_forward_reset");
  return {out, t_new.to(t.scalar_type())};
}

std::tuple<Tensor, Tensor> threshold_backward_cuda(const Tensor& grad, const Tensor& w, const Tensor& t,
                                                   int64_t channel_dim, bool compute_t_grad) {
  check_cuda(w, "w");
  check_same_shape_and_type(grad, "grad", w, "w");
  const ChannelLayout L = channel_layout(w, channel_dim);
  check_thresholds(w, t, L);
  const c10::cuda::CUDAGuard guard(w.device());
  const Tensor wc = w.contiguous(), gc = grad.contiguous();
  const at::ScalarType acc = accumulate_type(wc.scalar_type());
  const Tensor tc = t.to(acc).contiguous();
  Tensor grad_w = at::empty(wc.sizes(), wc.options());
  Tensor grad_t = at::zeros({L.channels}, wc.options().dtype(acc));
  check_launch(cuda::threshold_backward(kernel_dtype(wc), gc.const_data_ptr(), wc.const_data_ptr(), tc.const_data_ptr(),
                                        grad_w.mutable_data_ptr(), grad_t.mutable_data_ptr(), L.outer, L.channels,
                                        L.inner, compute_t_grad, c10::cuda::getCurrentCUDAStream()),
               "threshold_backward");
  return {grad_w, grad_t.to(t.scalar_type())};
}

std::tuple<Tensor, Tensor> modconv_weights_cuda(const Tensor& w, const c10::optional<Tensor>& mask,
                                                const Tensor& styles, bool demodulate, bool fused, double eps) {
  check_cuda(w, "w");
  const ModconvShape S = check_modconv(w, mask, styles);
  const bool has_mask = mask.has_value() && mask->defined();
  const c10::cuda::CUDAGuard guard(w.device());
  const cuda::DType dtype = kernel_dtype(w);
  // Default per-block shared memory without opting in to more: 48 KiB.
  const int64_t shared = cuda::modconv_shared_bytes(dtype, S.batch, S.in_channels);
  TORCH_CHECK(shared <= 48 * 1024, "modconv_weights: batch + in_channels = ", S.batch + S.in_channels,
              " needs ", shared, " bytes of shared memory (limit 49152); use the reference path");
  const Tensor wc = w.contiguous(), sc = styles.contiguous();
  const Tensor mc = has_mask ? mask->contiguous() : Tensor();
  // Non-fused without a mask the caller convolves with w itself: no w_eff copy is written (empty output).
  Tensor out = fused ? at::empty({S.batch, S.out_channels, S.in_channels, w.size(2), w.size(3)}, wc.options())
                     : at::empty(has_mask ? wc.sizes() : at::IntArrayRef{0}, wc.options());
  Tensor dcoefs = at::empty({S.batch, S.out_channels}, wc.options());
  check_launch(cuda::modconv_weights(dtype, wc.const_data_ptr(), has_mask ? mc.const_data_ptr() : nullptr,
                                     sc.const_data_ptr(), out.numel() ? out.mutable_data_ptr() : nullptr, dcoefs.mutable_data_ptr(), S.batch,
                                     S.out_channels, S.in_channels, S.kernel_numel, demodulate, fused, eps,
                                     c10::cuda::getCurrentCUDAStream()),
               "modconv_weights");
  return {out, dcoefs};
}

}  // namespace
}  // namespace sparse_core

SC_DEFINE_SCHEMAS(SPARSE_CORE_NS)

SC_LIBRARY_IMPL(SPARSE_CORE_NS, CUDA, m) {
  m.impl("threshold_forward", &sparse_core::threshold_forward_cuda);
  m.impl("threshold_forward_reset", &sparse_core::threshold_forward_reset_cuda);
  m.impl("threshold_backward", &sparse_core::threshold_backward_cuda);
  m.impl("modconv_weights", &sparse_core::modconv_weights_cuda);
}
