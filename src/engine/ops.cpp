#include <cmath>

#include <ATen/ATen.h>

#include "detail/engine_gemv.h"
#include "detail/engine_ops.h"

namespace crossicl::detail {

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor xf = x.to(at::kFloat);                  // [..., dim]
  at::Tensor var = xf.pow(2).mean(-1, /*keepdim=*/true);  // [..., 1]
  xf = xf * at::rsqrt(var + eps);                    // [..., dim]
  return weight * xf.to(x.scalar_type());            // [..., dim]
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& w) {
  if (gemv_applies(x, w)) return gemv(x, w);                 // [n, out]: decode steps on the CPU
  if (x.size(0) == 1) return at::mv(w, x[0]).unsqueeze(0);  // [1, out]
  return at::linear(x, w);                                   // [n, out]
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
