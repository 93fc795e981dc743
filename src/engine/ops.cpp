#include <algorithm>
#include <cmath>
#include <cstdint>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "crossicl/core/error.h"
#include "detail/engine_gemv.h"
#include "detail/engine_ops.h"
#include "detail/engine_profile.h"

namespace crossicl::detail {

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor xf = x.to(at::kFloat);                  // [..., dim]
  at::Tensor var = xf.pow(2).mean(-1, /*keepdim=*/true);  // [..., 1]
  xf = xf * at::rsqrt(var + eps);                    // [..., dim]
  return weight * xf.to(x.scalar_type());            // [..., dim]
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& w) {
  if (gemv_applies(x, w)) return gemv(x, w);                 // [n, out]: decode steps on the CPU
  if (x.device().is_cpu() && x.scalar_type() == at::kBFloat16 && w.scalar_type() == at::kBFloat16 &&
      x.dim() == 2 && w.dim() == 2 && w.stride(1) == 1 && !bf16_mm_is_fast())
    return linear_bf16_via_float(x, w);                      // [n, out]
  if (x.size(0) == 1) return at::mv(w, x[0]).unsqueeze(0);  // [1, out]
  return at::linear(x, w);                                   // [n, out]
}

void widen_rows(const at::Tensor& w, std::int64_t r0, std::int64_t m, float* dst) {
  if (w.dim() != 2 || w.stride(1) != 1 || !w.device().is_cpu() || r0 < 0 || m < 0 || r0 + m > w.size(0) ||
      (w.scalar_type() != at::kBFloat16 && w.scalar_type() != at::kChar))
    throw InvalidArgument(fmt::format("widen_rows: rows [{}, {}) of a {}-d {} tensor [{}] (bfloat16 or int8 CPU rows "
                                      "with unit column stride expected)", r0, r0 + m, w.dim(),
                                      c10::toString(w.scalar_type()), fmt::join(w.sizes(), ", ")));
  const std::int64_t in = w.size(1), ld = w.stride(0);
  const bool bf16 = w.scalar_type() == at::kBFloat16;
  const auto* bp = bf16 ? reinterpret_cast<const std::uint16_t*>(w.data_ptr<at::BFloat16>()) : nullptr;
  const std::int8_t* qp = bf16 ? nullptr : w.data_ptr<std::int8_t>();
  at::parallel_for(0, m, std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(1, in)),
                   [&](std::int64_t a, std::int64_t b) {
                     for (std::int64_t r = a; r < b; ++r) {
                       float* d = dst + r * in;
                       if (bf16) {  // bfloat16 bits to the high half
                         const std::uint16_t* src = bp + (r0 + r) * ld;
                         auto* du = reinterpret_cast<std::uint32_t*>(d);
                         for (std::int64_t i = 0; i < in; ++i) du[i] = static_cast<std::uint32_t>(src[i]) << 16;
                       } else {
                         const std::int8_t* src = qp + (r0 + r) * ld;
                         for (std::int64_t i = 0; i < in; ++i) d[i] = static_cast<float>(src[i]);
                       }
                     }
                   });
}

bool bf16_mm_is_fast() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool fast = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") || __builtin_cpu_supports("amx-bf16");
  }();
  return fast;
#else
  return true;
#endif
}

at::Tensor linear_bf16_via_float(const at::Tensor& x_in, const at::Tensor& w, std::int64_t panel_floats) {
  CROSSICL_PROFILE("linear_bf16_via_float");
  if (x_in.dim() != 2 || w.dim() != 2 || x_in.scalar_type() != at::kBFloat16 || w.scalar_type() != at::kBFloat16 ||
      x_in.size(1) != w.size(1) || w.stride(1) != 1 || !x_in.device().is_cpu() || !w.device().is_cpu())
    throw InvalidArgument(fmt::format("linear_bf16_via_float: x [{}] and w [{}] are not bfloat16 CPU matrices of one "
                                      "width with w's rows contiguous", fmt::join(x_in.sizes(), ", "),
                                      fmt::join(w.sizes(), ", ")));
  const std::int64_t n = x_in.size(0), in = w.size(1), out = w.size(0);
  const at::Tensor x = x_in.to(at::kFloat);                // [n, in], exact
  at::Tensor y = at::empty({n, out}, x_in.options());      // [n, out] bfloat16
  const std::int64_t rows = std::max<std::int64_t>(1, std::min(out, panel_floats / std::max<std::int64_t>(1, in)));
  thread_local at::Tensor buf;  // a panel of W in float32, kept between calls
  if (!buf.defined() || buf.numel() < rows * in) buf = at::empty({rows * in}, x.options());
  for (std::int64_t r0 = 0; r0 < out; r0 += rows) {
    const std::int64_t m = std::min(rows, out - r0);
    widen_rows(w, r0, m, buf.data_ptr<float>());
    const at::Tensor panel = buf.narrow(0, 0, m * in).view({m, in});  // [m, in] float32
    y.narrow(1, r0, m).copy_(at::mm(x, panel.t()));                    // [n, m], rounded to bfloat16
  }
  return y;
}

at::Tensor rope_inv_freq(const Config& config) {
  const std::int64_t hd = config.head_dim;
  at::Tensor exponent = at::arange(0, hd, 2, at::kLong).to(at::kFloat) / static_cast<double>(hd);  // [hd/2]
  at::Tensor inv_freq = at::pow(config.rope_theta, exponent).reciprocal();                         // [hd/2]
  if (config.rope_scaling.type == "llama3") {
    const RopeScaling& s = config.rope_scaling;
    const double old_len = static_cast<double>(s.original_max_position_embeddings);
    const double low_freq_wavelen = old_len / s.low_freq_factor;
    const double high_freq_wavelen = old_len / s.high_freq_factor;
    at::Tensor wavelen = (2 * M_PI) / inv_freq;  // [hd/2]
    at::Tensor scaled = at::where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq);
    at::Tensor smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    at::Tensor smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
    at::Tensor medium = at::logical_not(wavelen < high_freq_wavelen).logical_and(
        at::logical_not(wavelen > low_freq_wavelen));
    inv_freq = at::where(medium, smoothed, scaled);
  }
  return inv_freq.contiguous();
}

void rope_cos_sin(const at::Tensor& positions, const at::Tensor& inv_freq, at::ScalarType dtype, at::Tensor& cos,
                  at::Tensor& sin) {
  at::Tensor freqs = positions.to(at::kFloat).unsqueeze(1) * inv_freq.unsqueeze(0);  // [n, hd/2]
  at::Tensor s = freqs.sin();                                                         // [n, hd/2]
  cos = at::cat({freqs, freqs}, -1).cos().to(dtype).unsqueeze(1);                     // [n, 1, hd]
  sin = at::cat({s.neg(), s}, -1).to(dtype).unsqueeze(1);  // [n, 1, hd], rotate_half's sign folded in
}

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const std::int64_t n = x.size(0), heads = x.size(1), hd = x.size(2);
  // cat(x2, x1) as one flip of the two halves; times the signed sin it is rotate_half(x) * sin exactly.
  at::Tensor swapped = x.reshape({n, heads, 2, hd / 2}).flip(2).view({n, heads, hd});  // [n, heads, hd]
  return x * cos + swapped * sin;                                                        // [n, heads, hd]
}

at::Tensor interleaved_to_half(const at::Tensor& w, std::int64_t heads, std::int64_t head_dim) {
  const std::int64_t in = w.size(1);
  return w.view({heads, head_dim / 2, 2, in}).transpose(1, 2).reshape({heads * head_dim, in}).contiguous();
}

}  // namespace crossicl::detail
