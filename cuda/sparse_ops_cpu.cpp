// CPU kernels of the sparse_core native extension (fp32 and fp64).
//
// Registered as torch operators in the namespace SPARSE_CORE_NS (chosen by the loader from the
// source hash, so that two builds can never collide in one process). Only ATen and torch/library.h
// are included: torch/extension.h (pybind) triples the compile time and is not needed.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <cmath>
#include <vector>

#include "sparse_ops_checks.h"
#include "sparse_ops_common.h"

#ifndef SPARSE_CORE_NS
#error "SPARSE_CORE_NS must be defined by the loader (sparse_core/ops/build.py)"
#endif

namespace sparse_core {
namespace {

using at::Tensor;

// Elements per parallel task: large enough that thread start-up stays negligible.
constexpr int64_t kGrainElements = 1 << 15;

int64_t rows_per_task(int64_t row_length) { return std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, row_length)); }

void check_cpu(const Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor for the CPU kernels, got ", t.device());
}

// out = w * step(|w| - t[c]) with c the index along channel_dim; returns how many entries the mask keeps.
int64_t threshold_forward_into(const Tensor& wc, const Tensor& t, const ChannelLayout& L, Tensor& out) {
  std::atomic<int64_t> kept{0};
  AT_DISPATCH_FLOATING_TYPES(wc.scalar_type(), "threshold_forward_cpu", [&] {
    using acc_t = scalar_t;  // fp32 / fp64 on the CPU: no narrower type to widen
    const Tensor tc = t.to(wc.scalar_type()).contiguous();
    const scalar_t* pw = wc.const_data_ptr<scalar_t>();
    const acc_t* pt = tc.const_data_ptr<acc_t>();
    scalar_t* po = out.mutable_data_ptr<scalar_t>();
    const int64_t rows = L.outer * L.channels;
    at::parallel_for(0, rows, rows_per_task(L.inner), [&](int64_t begin, int64_t end) {
      int64_t local = 0;
      for (int64_t r = begin; r < end; ++r) {
        const acc_t threshold = pt[r % L.channels];
        const scalar_t* src = pw + r * L.inner;
        scalar_t* dst = po + r * L.inner;
        for (int64_t j = 0; j < L.inner; ++j) {
          const bool keep = survives<acc_t>(src[j], threshold);
          local += keep;
          dst[j] = keep ? src[j] : scalar_t(0);
        }
      }
      kept += local;
    });
  });
  return kept.load();
}

Tensor threshold_forward_cpu(const Tensor& w, const Tensor& t, int64_t channel_dim) {
  check_cpu(w, "w");
  const ChannelLayout L = channel_layout(w, channel_dim);
  check_thresholds(w, t, L);
  const Tensor wc = w.contiguous();
  Tensor out = at::empty(wc.sizes(), wc.options());
  threshold_forward_into(wc, t, L, out);
  return out;
}

// The forward with RG-GAN's reset rule in the same pass: when the mask keeps <= reset_density of the entries,
// every threshold of the weight becomes 0 (returned as t_new) and the output is the mask at t = 0, i.e. w.
std::tuple<Tensor, Tensor> threshold_forward_reset_cpu(const Tensor& w, const Tensor& t, int64_t channel_dim,
                                                       double reset_density) {
  check_cpu(w, "w");
  const ChannelLayout L = channel_layout(w, channel_dim);
  check_thresholds(w, t, L);
  const Tensor wc = w.contiguous();
  Tensor out = at::empty(wc.sizes(), wc.options());
  const int64_t kept = threshold_forward_into(wc, t, L, out);
  if (reset_collapsed(kept, wc.numel(), reset_density)) {
    out.copy_(wc);
    return {out, at::zeros_like(t)};
  }
  return {out, t.clone()};
}

// One pass: grad_w = g * M and grad_t[c] = -sum_{outer, inner} g * w * s'(|w| - t[c]).
std::tuple<Tensor, Tensor> threshold_backward_cpu(const Tensor& grad, const Tensor& w, const Tensor& t,
                                                  int64_t channel_dim, bool compute_t_grad) {
  check_cpu(w, "w");
  check_same_shape_and_type(grad, "grad", w, "w");
  const ChannelLayout L = channel_layout(w, channel_dim);
  check_thresholds(w, t, L);
  const Tensor wc = w.contiguous();
  const Tensor gc = grad.contiguous();
  Tensor grad_w = at::empty(wc.sizes(), wc.options());
  Tensor grad_t = at::zeros({L.channels}, t.options().dtype(wc.scalar_type()));
  AT_DISPATCH_FLOATING_TYPES(wc.scalar_type(), "threshold_backward_cpu", [&] {
    // Per-channel sums are accumulated in double: a channel can hold 512*512*9 products.
    const Tensor tc = t.to(wc.scalar_type()).contiguous();
    const scalar_t* pw = wc.const_data_ptr<scalar_t>();
    const scalar_t* pg = gc.const_data_ptr<scalar_t>();
    const scalar_t* pt = tc.const_data_ptr<scalar_t>();
    scalar_t* pgw = grad_w.mutable_data_ptr<scalar_t>();
    scalar_t* pgt = grad_t.mutable_data_ptr<scalar_t>();
    const int64_t row_work = L.outer * L.inner;
    // Parallel over channels so that every channel's sum is owned by one task (no races).
    at::parallel_for(0, L.channels, rows_per_task(row_work), [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        const scalar_t threshold = pt[c];
        double sum = 0.0;
        for (int64_t o = 0; o < L.outer; ++o) {
          const int64_t base = (o * L.channels + c) * L.inner;
          for (int64_t j = 0; j < L.inner; ++j) {
            const scalar_t wv = pw[base + j];
            const scalar_t gv = pg[base + j];
            pgw[base + j] = survives<scalar_t>(wv, threshold) ? gv : scalar_t(0);
            if (compute_t_grad) {
              const scalar_t x = (wv < scalar_t(0) ? -wv : wv) - threshold;
              sum += static_cast<double>(gv * wv * long_tailed_grad<scalar_t>(x));
            }
          }
        }
        pgt[c] = static_cast<scalar_t>(-sum);
      }
    });
  });
  return {grad_w, grad_t.to(t.scalar_type())};
}

// StyleGAN2 modulated-conv weight preparation in one pass over the weights.
//   w_eff = w * mask;  dcoefs[n,o] = (sum_i W2[o,i] * styles[n,i]^2 + eps)^-1/2 with
//   W2[o,i] = sum_k w_eff[o,i,k]^2 (demodulate), else 1.
// Returns (w_eff, dcoefs) for the non-fused path, (per-sample weights [N,O,I,kh,kw], dcoefs) when fused.
std::tuple<Tensor, Tensor> modconv_weights_cpu(const Tensor& w, const c10::optional<Tensor>& mask,
                                               const Tensor& styles, bool demodulate, bool fused, double eps) {
  check_cpu(w, "w");
  const ModconvShape S = check_modconv(w, mask, styles);
  const bool has_mask = mask.has_value() && mask->defined();
  const Tensor wc = w.contiguous();
  const Tensor mc = has_mask ? mask->contiguous() : Tensor();
  const Tensor sc = styles.contiguous();
  const int64_t row = S.in_channels * S.kernel_numel;  // one output channel's weights
  // w_eff is written out only where the caller uses it (non-fused with a mask); otherwise the output is empty.
  const bool write_eff = !fused && has_mask;
  Tensor w_eff = at::empty(write_eff ? wc.sizes() : at::IntArrayRef{0}, wc.options());
  Tensor dcoefs = at::empty({S.batch, S.out_channels}, wc.options());
  Tensor per_sample;
  if (fused) per_sample = at::empty({S.batch, S.out_channels, S.in_channels, w.size(2), w.size(3)}, wc.options());
  AT_DISPATCH_FLOATING_TYPES(wc.scalar_type(), "modconv_weights_cpu", [&] {
    const scalar_t* pw = wc.const_data_ptr<scalar_t>();
    const scalar_t* pm = has_mask ? mc.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* ps = sc.const_data_ptr<scalar_t>();
    scalar_t* pe = write_eff ? w_eff.mutable_data_ptr<scalar_t>() : nullptr;
    scalar_t* pd = dcoefs.mutable_data_ptr<scalar_t>();
    scalar_t* pp = fused ? per_sample.mutable_data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, S.out_channels, rows_per_task(row * std::max<int64_t>(1, S.batch)), [&](int64_t begin, int64_t end) {
      std::vector<double> w2(S.in_channels);
      for (int64_t o = begin; o < end; ++o) {
        const scalar_t* src = pw + o * row;
        const scalar_t* msk = pm ? pm + o * row : nullptr;
        scalar_t* eff = pe ? pe + o * row : nullptr;
        for (int64_t i = 0; i < S.in_channels; ++i) {
          double sq = 0.0;
          for (int64_t k = 0; k < S.kernel_numel; ++k) {
            const int64_t j = i * S.kernel_numel + k;
            const scalar_t v = msk ? src[j] * msk[j] : src[j];
            if (eff) eff[j] = v;
            sq += static_cast<double>(v) * static_cast<double>(v);
          }
          w2[i] = sq;
        }
        for (int64_t n = 0; n < S.batch; ++n) {
          scalar_t d = scalar_t(1);
          if (demodulate) {
            double sum = 0.0;
            const scalar_t* st = ps + n * S.in_channels;
            for (int64_t i = 0; i < S.in_channels; ++i) sum += w2[i] * static_cast<double>(st[i]) * static_cast<double>(st[i]);
            d = static_cast<scalar_t>(1.0 / std::sqrt(sum + eps));
          }
          pd[n * S.out_channels + o] = d;
          if (fused) {
            const scalar_t* st = ps + n * S.in_channels;
            scalar_t* dst = pp + (n * S.out_channels + o) * row;
            for (int64_t i = 0; i < S.in_channels; ++i) {
              for (int64_t k = 0; k < S.kernel_numel; ++k) {
                const int64_t j = i * S.kernel_numel + k;
                const scalar_t v = msk ? src[j] * msk[j] : src[j];
                dst[j] = v * st[i] * d;  // same association as the reference: (w_eff * s) * d
              }
            }
          }
        }
      }
    });
  });
  return {fused ? per_sample : w_eff, dcoefs};
}

}  // namespace
}  // namespace sparse_core

SC_DEFINE_SCHEMAS(SPARSE_CORE_NS)

SC_LIBRARY_IMPL(SPARSE_CORE_NS, CPU, m) {
  m.impl("threshold_forward", &sparse_core::threshold_forward_cpu);
  m.impl("threshold_forward_reset", &sparse_core::threshold_forward_reset_cpu);
  m.impl("threshold_backward", &sparse_core::threshold_backward_cpu);
  m.impl("modconv_weights", &sparse_core::modconv_weights_cpu);
}
