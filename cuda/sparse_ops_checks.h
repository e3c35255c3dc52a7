// Argument checks and shape helpers shared by the CPU and CUDA bindings (ATen side only).
#pragma once

#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

namespace sparse_core {

// A weight seen as [outer, C, inner] around its channel dimension (one threshold per C).
struct ChannelLayout {
  int64_t outer;
  int64_t channels;
  int64_t inner;
};

inline ChannelLayout channel_layout(const at::Tensor& w, int64_t channel_dim) {
  TORCH_CHECK(w.dim() >= 1, "w must have at least one dimension");
  TORCH_CHECK(channel_dim >= 0 && channel_dim < w.dim(), "channel_dim=", channel_dim,
              " is out of range for a weight with ", w.dim(), " dimensions");
  ChannelLayout layout{1, w.size(channel_dim), 1};
  for (int64_t d = 0; d < channel_dim; ++d) layout.outer *= w.size(d);
  for (int64_t d = channel_dim + 1; d < w.dim(); ++d) layout.inner *= w.size(d);
  return layout;
}

inline void check_same_shape_and_type(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                                      const char* b_name) {
  TORCH_CHECK(a.sizes() == b.sizes(), a_name, " and ", b_name, " must have the same shape, got ", a.sizes(),
              " and ", b.sizes());
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), a_name, " and ", b_name, " must have the same dtype, got ",
              a.scalar_type(), " and ", b.scalar_type());
  TORCH_CHECK(a.device() == b.device(), a_name, " and ", b_name, " must be on the same device");
}

inline void check_thresholds(const at::Tensor& w, const at::Tensor& t, const ChannelLayout& layout) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == layout.channels, "t must have shape (", layout.channels,
              ",), got ", t.sizes());
  TORCH_CHECK(t.is_floating_point(), "t must be floating point, got ", t.scalar_type());
  TORCH_CHECK(t.device() == w.device(), "t and w must be on the same device");
}

// Accumulation dtype: double for double weights, float for everything else (fp16/bf16/fp32).
inline at::ScalarType accumulate_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

struct ModconvShape {
  int64_t batch;
  int64_t out_channels;
  int64_t in_channels;
  int64_t kernel_numel;
};

inline ModconvShape check_modconv(const at::Tensor& w, const c10::optional<at::Tensor>& mask,
                                  const at::Tensor& styles) {
  TORCH_CHECK(w.dim() == 4, "modconv: w must be [out, in, kh, kw], got ", w.sizes());
  TORCH_CHECK(styles.dim() == 2 && styles.size(1) == w.size(1), "modconv: styles must be [N, ", w.size(1),
              "], got ", styles.sizes());
  TORCH_CHECK(styles.scalar_type() == w.scalar_type(), "modconv: styles and w must have the same dtype, got ",
              styles.scalar_type(), " and ", w.scalar_type());
  TORCH_CHECK(styles.device() == w.device(), "modconv: styles and w must be on the same device");
  if (mask.has_value() && mask->defined()) check_same_shape_and_type(w, "w", *mask, "mask");
  return ModconvShape{styles.size(0), w.size(0), w.size(1), w.size(2) * w.size(3)};
}

}  // namespace sparse_core

// The op schemas, shared by the CPU and the CUDA build (each build is its own library namespace).
// The namespace comes from a macro, so expand it before TORCH_LIBRARY pastes tokens.
#define SC_LIBRARY(ns, m) TORCH_LIBRARY(ns, m)
#define SC_LIBRARY_IMPL(ns, key, m) TORCH_LIBRARY_IMPL(ns, key, m)
#define SC_DEFINE_SCHEMAS(ns)                                                                              \
  SC_LIBRARY(ns, m) {                                                                                      \
    m.def("threshold_forward(Tensor w, Tensor t, int channel_dim) -> Tensor");                             \
    m.def("threshold_forward_reset(Tensor w, Tensor t, int channel_dim, float reset_density) "            \
          "-> (Tensor, Tensor)");                                                                          \
    m.def("threshold_backward(Tensor grad, Tensor w, Tensor t, int channel_dim, bool compute_t_grad) "     \
          "-> (Tensor, Tensor)");                                                                          \
    m.def("modconv_weights(Tensor w, Tensor? mask, Tensor styles, bool demodulate, bool fused, float eps) " \
          "-> (Tensor, Tensor)");                                                                          \
  }
