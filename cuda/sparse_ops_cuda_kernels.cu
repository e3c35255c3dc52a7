// CUDA kernels of the sparse_core native extension (fp32, fp64, fp16, bf16; fp32 accumulation
// for the 16-bit types). Only CUDA headers are included: see sparse_ops_cuda.h.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "sparse_ops_common.h"
#include "sparse_ops_cuda.h"

namespace sparse_core {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 65535 * 8;  // grid-stride loops cover the rest

// Loads/stores through the accumulation type. Explicit intrinsics: torch builds .cu files with
// the implicit half/bfloat16 conversions disabled.
template <typename T> struct Num;
template <> struct Num<float> {
  using acc = float;
  __device__ static acc load(float v) { return v; }
  __device__ static float store(acc v) { return v; }
};
template <> struct Num<double> {
  using acc = double;
  __device__ static acc load(double v) { return v; }
  __device__ static double store(acc v) { return v; }
};
template <> struct Num<__half> {
  using acc = float;
  __device__ static acc load(__half v) { return __half2float(v); }
  __device__ static __half store(acc v) { return __float2half_rn(v); }
};
template <> struct Num<__nv_bfloat16> {
  using acc = float;
  __device__ static acc load(__nv_bfloat16 v) { return __bfloat162float(v); }
  __device__ static __nv_bfloat16 store(acc v) { return __float2bfloat16_rn(v); }
};

int blocks_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks));
}

template <typename T>
__global__ void threshold_forward_kernel(const T* __restrict__ w, const typename Num<T>::acc* __restrict__ t,
                                         T* __restrict__ out, int64_t n, int64_t channels, int64_t inner) {
  using N = Num<T>;
  using acc = typename N::acc;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = (i / inner) % channels;
    const acc v = N::load(w[i]);
    out[i] = survives<acc>(v, t[c]) ? w[i] : N::store(acc(0));
  }
}

// The same pass, also counting the kept entries (one atomic add per warp) for the reset rule.
template <typename T>
__global__ void threshold_forward_count_kernel(const T* __restrict__ w, const typename Num<T>::acc* __restrict__ t,
                                               T* __restrict__ out, int64_t n, int64_t channels, int64_t inner,
                                               unsigned long long* __restrict__ kept) {
  using N = Num<T>;
  using acc = typename N::acc;
  unsigned long long local = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = (i / inner) % channels;
    const acc v = N::load(w[i]);
    const bool keep = survives<acc>(v, t[c]);
    local += keep ? 1ull : 0ull;
    out[i] = keep ? w[i] : N::store(acc(0));
  }
  for (int offset = 16; offset > 0; offset >>= 1) local += __shfl_down_sync(0xffffffffu, local, offset);
  if ((threadIdx.x & 31) == 0 && local) atomicAdd(kept, local);
}

// Reset rule, decided on the device (no host sync): when the count says the mask collapsed, t_new = 0 and the
// output is the mask at t = 0, i.e. w itself; otherwise t_new = t and every thread leaves at once.
template <typename T>
__global__ void threshold_reset_kernel(const T* __restrict__ w, const typename Num<T>::acc* __restrict__ t,
                                       T* __restrict__ out, typename Num<T>::acc* __restrict__ t_new, int64_t n,
                                       int64_t channels, const unsigned long long* __restrict__ kept,
                                       double reset_density) {
  using acc = typename Num<T>::acc;
  const bool collapsed = reset_collapsed(static_cast<int64_t>(*kept), n, reset_density);
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  for (int64_t c = first; c < channels; c += stride) t_new[c] = collapsed ? acc(0) : t[c];
  if (!collapsed) return;
  for (int64_t i = first; i < n; i += stride) out[i] = w[i];
}

template <typename acc>
__device__ acc block_sum(acc value, acc* scratch) {
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_down_sync(0xffffffffu, value, offset);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  value = threadIdx.x < (blockDim.x >> 5) ? scratch[lane] : acc(0);
  if (warp == 0)
    for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_down_sync(0xffffffffu, value, offset);
  return value;  // valid in thread 0
}

// One block per channel c: it owns grad_t[c], so the reduction needs no atomics.
template <typename T>
__global__ void threshold_backward_kernel(const T* __restrict__ grad, const T* __restrict__ w,
                                          const typename Num<T>::acc* __restrict__ t, T* __restrict__ grad_w,
                                          typename Num<T>::acc* __restrict__ grad_t, int64_t outer, int64_t channels,
                                          int64_t inner, bool compute_t_grad) {
  using N = Num<T>;
  using acc = typename N::acc;
  __shared__ acc scratch[32];
  const int64_t c = blockIdx.x;
  const acc threshold = t[c];
  const int64_t per_channel = outer * inner;
  acc sum = acc(0);
  for (int64_t j = threadIdx.x; j < per_channel; j += blockDim.x) {
    const int64_t i = ((j / inner) * channels + c) * inner + (j % inner);
    const acc wv = N::load(w[i]);
    const acc gv = N::load(grad[i]);
    grad_w[i] = survives<acc>(wv, threshold) ? grad[i] : N::store(acc(0));
    if (compute_t_grad) sum += gv * wv * long_tailed_grad<acc>((wv < acc(0) ? -wv : wv) - threshold);
  }
  if (!compute_t_grad) return;
  sum = block_sum<acc>(sum, scratch);
  if (threadIdx.x == 0) grad_t[c] = -sum;
}

// One block per output channel o. Shared memory: W2[i] = sum_k w_eff[o,i,k]^2 and the N dcoefs.
template <typename T>
__global__ void modconv_weights_kernel(const T* __restrict__ w, const T* __restrict__ mask,
                                       const T* __restrict__ styles, T* __restrict__ w_out, T* __restrict__ dcoefs,
                                       int64_t batch, int64_t out_channels, int64_t in_channels, int64_t kernel_numel,
                                       bool demodulate, bool fused, double eps) {
  using N = Num<T>;
  using acc = typename N::acc;
  extern __shared__ __align__(16) unsigned char shared_raw[];  // holds double for fp64
  acc* w2 = reinterpret_cast<acc*>(shared_raw);
  acc* demod = w2 + in_channels;
  const int64_t o = blockIdx.x;
  const int64_t row = in_channels * kernel_numel;
  const T* src = w + o * row;
  const T* msk = mask ? mask + o * row : nullptr;
  const bool write_eff = !fused && mask != nullptr;  // nobody reads w_eff = w without a mask: no copy

  // Pass 1: w_eff (written out for the masked shared-weight path) and its squared norms per input channel.
  for (int64_t i = threadIdx.x; i < in_channels; i += blockDim.x) {
    acc sq = acc(0);
    for (int64_t k = 0; k < kernel_numel; ++k) {
      const int64_t j = i * kernel_numel + k;
      const acc v = msk ? N::load(src[j]) * N::load(msk[j]) : N::load(src[j]);
      if (write_eff) w_out[o * row + j] = N::store(v);
      sq += v * v;
    }
    w2[i] = sq;
  }
  __syncthreads();

  // Pass 2: one warp per sample: dcoefs[n,o] = (sum_i W2[i] styles[n,i]^2 + eps)^-1/2.
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int64_t n = warp; n < batch; n += warps) {
    acc d = acc(1);
    if (demodulate) {
      acc sum = acc(0);
      for (int64_t i = lane; i < in_channels; i += 32) {
        const acc s = N::load(styles[n * in_channels + i]);
        sum += w2[i] * s * s;
      }
      for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, offset);
      d = acc(1) / sqrt(__shfl_sync(0xffffffffu, sum, 0) + acc(eps));
    }
    if (lane == 0) {
      demod[n] = d;
      dcoefs[n * out_channels + o] = N::store(d);
    }
  }
  if (!fused) return;
  __syncthreads();

  // Pass 3 (fused path): per-sample weights, written coalesced along (i, k).
  for (int64_t n = 0; n < batch; ++n) {
    T* dst = w_out + (n * out_channels + o) * row;
    const T* st = styles + n * in_channels;
    const acc d = demod[n];
    for (int64_t j = threadIdx.x; j < row; j += blockDim.x) {
      const acc v = msk ? N::load(src[j]) * N::load(msk[j]) : N::load(src[j]);
      dst[j] = N::store(v * N::load(st[j / kernel_numel]) * d);
    }
  }
}

template <typename T>
cudaError_t launch_threshold_forward(const void* w, const void* t, void* out, int64_t outer, int64_t channels,
                                     int64_t inner, cudaStream_t stream) {
  const int64_t n = outer * channels * inner;
  if (n == 0) return cudaSuccess;
  threshold_forward_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(
      static_cast<const T*>(w), static_cast<const typename Num<T>::acc*>(t), static_cast<T*>(out), n, channels, inner);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_threshold_forward_reset(const void* w, const void* t, void* out, void* t_new, void* kept,
                                           int64_t outer, int64_t channels, int64_t inner, double reset_density,
                                           cudaStream_t stream) {
  using acc = typename Num<T>::acc;
  const int64_t n = outer * channels * inner;
  const cudaError_t cleared = cudaMemsetAsync(kept, 0, sizeof(unsigned long long), stream);
  if (cleared != cudaSuccess) return cleared;
  if (n > 0) {
    threshold_forward_count_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(
        static_cast<const T*>(w), static_cast<const acc*>(t), static_cast<T*>(out), n, channels, inner,
        static_cast<unsigned long long*>(kept));
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  threshold_reset_kernel<T><<<blocks_for(n > channels ? n : channels), kThreads, 0, stream>>>(
      static_cast<const T*>(w), static_cast<const acc*>(t), static_cast<T*>(out), static_cast<acc*>(t_new), n,
      channels, static_cast<const unsigned long long*>(kept), reset_density);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_threshold_backward(const void* grad, const void* w, const void* t, void* grad_w, void* grad_t,
                                      int64_t outer, int64_t channels, int64_t inner, bool compute_t_grad,
                                      cudaStream_t stream) {
  if (channels == 0) return cudaSuccess;
  using acc = typename Num<T>::acc;
  threshold_backward_kernel<T><<<static_cast<unsigned>(channels), kThreads, 0, stream>>>(
      static_cast<const T*>(grad), static_cast<const T*>(w), static_cast<const acc*>(t), static_cast<T*>(grad_w),
      static_cast<acc*>(grad_t), outer, channels, inner, compute_t_grad);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_modconv_weights(const void* w, const void* mask, const void* styles, void* w_out, void* dcoefs,
                                   int64_t batch, int64_t out_channels, int64_t in_channels, int64_t kernel_numel,
                                   bool demodulate, bool fused, double eps, cudaStream_t stream) {
  if (out_channels == 0) return cudaSuccess;
  const size_t shared = sizeof(typename Num<T>::acc) * static_cast<size_t>(in_channels + batch);
  modconv_weights_kernel<T><<<static_cast<unsigned>(out_channels), kThreads, shared, stream>>>(
      static_cast<const T*>(w), static_cast<const T*>(mask), static_cast<const T*>(styles), static_cast<T*>(w_out),
      static_cast<T*>(dcoefs), batch, out_channels, in_channels, kernel_numel, demodulate, fused, eps);
  return cudaGetLastError();
}

}  // namespace

#define SC_DISPATCH(dtype, CALL)                              \
  switch (dtype) {                                            \
    case DType::kFloat32: { using T = float; return CALL; }   \
    case DType::kFloat64: { using T = double; return CALL; }  \
    case DType::kFloat16: { using T = __half; return CALL; }  \
    case DType::kBFloat16: { using T = __nv_bfloat16; return CALL; } \
  }                                                           \
  return cudaErrorInvalidValue;

cudaError_t threshold_forward(DType dtype, const void* w, const void* t, void* out, int64_t outer,
                              int64_t channels, int64_t inner, cudaStream_t stream) {
  SC_DISPATCH(dtype, launch_threshold_forward<T>(w, t, out, outer, channels, inner, stream))
}

cudaError_t threshold_forward_reset(DType dtype, const void* w, const void* t, void* out, void* t_new, void* kept,
                                    int64_t outer, int64_t channels, int64_t inner, double reset_density,
                                    cudaStream_t stream) {
  SC_DISPATCH(dtype, launch_threshold_forward_reset<T>(w, t, out, t_new, kept, outer, channels, inner,
                                                       reset_density, stream))
}

cudaError_t threshold_backward(DType dtype, const void* grad, const void* w, const void* t, void* grad_w,
                               void* grad_t, int64_t outer, int64_t channels, int64_t inner,
                               bool compute_t_grad, cudaStream_t stream) {
  SC_DISPATCH(dtype, launch_threshold_backward<T>(grad, w, t, grad_w, grad_t, outer, channels, inner,
                                                  compute_t_grad, stream))
}

cudaError_t modconv_weights(DType dtype, const void* w, const void* mask, const void* styles, void* w_out,
                            void* dcoefs, int64_t batch, int64_t out_channels, int64_t in_channels,
                            int64_t kernel_numel, bool demodulate, bool fused, double eps, cudaStream_t stream) {
  SC_DISPATCH(dtype, launch_modconv_weights<T>(w, mask, styles, w_out, dcoefs, batch, out_channels, in_channels,
                                               kernel_numel, demodulate, fused, eps, stream))
}

int64_t modconv_shared_bytes(DType dtype, int64_t batch, int64_t in_channels) {
  const int64_t acc_bytes = dtype == DType::kFloat64 ? 8 : 4;
  return acc_bytes * (batch + in_channels);
}

}  // namespace cuda
}  // namespace sparse_core
