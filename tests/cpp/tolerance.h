// Float tolerances of the C++ tests, derived from floating-point rounding instead of tuned to one machine
// (tests/python/tolerance.py is the same for pytest; keep the two in step).
//
// Why: float32 GEMMs of different shapes (batching, a cached prefix instead of a computed one) and the kernels
// MKL / oneDNN / ATen pick per CPU (AVX2, AVX-512, AMX) sum in different orders, so one model gives results that
// differ in the last bits; a fixed absolute tolerance (1e-5) fails by chance on large values.
//
// The bound (Higham, Accuracy and Stability of Numerical Algorithms, 3.1): with unit roundoff u, a length-n dot
// product computed in any order has |fl(a.b) - a.b| <= gamma_n * sum |a_i b_i|, gamma_n = n u / (1 - n u);
// u = 2^-24 (float32), 2^-53 (float64), 2^-8 (bfloat16). A chain of steps adds their relative errors (first
// order), so L layers whose longest reduction is n give at most about L * gamma_n, measured against the
// magnitude of the values produced. Every comparison is therefore
//     |actual - desired| <= rel * |desired| + rel * scale,   scale = max |desired| unless given,
// a relative term plus an absolute term that scales with the values compared (never a fixed 1e-5).
//
// An engine output (model_rel): per layer n = max(dim, hidden_dim, tokens) + 40 (projections reduce over dim, the
// FFN down-projection over hidden_dim, attention over the tokens so far; a float32 RoPE angle pos * inv_freq is off
// by up to pos * u, covered by tokens too; + 40 counts the element-wise steps in units of u: two RMSNorms ~8 u each,
// RoPE ~7 u, softmax ~7 u, SiLU-gate ~8 u, two residual adds; vectorised exp/rsqrt/sin are 1-2 ulp and differ per
// ISA). Hidden states and KV: n_layers * gamma_n; logits: + gamma_(dim + 8) (final norm + LM head); log-probs:
// + gamma_(vocab + 8) (log-softmax's sum of exponentials). A log-prob is a logit minus a logsumexp, so its absolute
// error scales with the logits: compare log-probs with scale = max |logits| when they are at hand, else with the
// largest |log-prob| of the whole call.
//
// The bound is worst case (every rounding at its largest, all one way); real differences grow like sqrt(n) u and
// are 10-1000x smaller, so it is used for the difference of two float32 results as is, not doubled. It still
// catches real bugs: stories260K log-probs get 9.8e-5 relative; a wrong KV block or position moves them by
// 0.1-10. Comparisons exact by design (token ids, the cosine selector's bit-identical blocking) stay exact.
//
// Tensor overloads exist when ATen is included before this header.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace crossicl::test::tol {

constexpr double kU = 1.0 / 16777216.0;             // float32 unit roundoff 2^-24
constexpr double kU64 = 1.0 / 9007199254740992.0;   // float64 2^-53
constexpr double kUBf16 = 1.0 / 256.0;              // bfloat16 2^-8

/// Higham's gamma_n = n u / (1 - n u): relative error bound of a length-n float sum or dot product.
inline double gamma(double n, double u = kU) {
  n = std::max(n, 1.0);
  if (n * u >= 1) throw std::invalid_argument("gamma_n undefined: n * u >= 1");
  return n * u / (1 - n * u);
}

/// `depth` chained float32 reductions of length <= n.
inline double f32_rel(double n, double depth = 1) { return depth * gamma(n, kU); }
/// The same for float64.
inline double f64_rel(double n, double depth = 1) { return depth * gamma(n, kU64); }

/// The sizes of a model that set its rounding (named as in crossicl::Config).
struct Dims {
  std::int64_t dim, hidden_dim, n_layers, vocab_size;
};
/// stories260K.bin's llama2.c header: dim 64, hidden 172, 5 layers, vocab 512 (also golden.json "config").
constexpr Dims kStories260K{64, 172, 5, 512};

enum class Output { Hidden, Logits, LogProbs };

// Element-wise float32 steps per layer, per final norm and per log-softmax, in units of u (see above).
constexpr int kLayerElementwise = 40;
constexpr int kNormElementwise = 8;
constexpr int kSoftmaxElementwise = 8;

/// Relative float32 bound of an engine output; `config` is a crossicl::Config or Dims, `tokens` the longest
/// sequence attended over.
template <class C>
double model_rel(const C& config, std::int64_t tokens = 0, Output out = Output::Hidden) {
  const auto n = std::max<std::int64_t>({config.dim, config.hidden_dim, tokens}) + kLayerElementwise;
  double rel = f32_rel(static_cast<double>(n), static_cast<double>(config.n_layers));
  if (out != Output::Hidden) rel += gamma(static_cast<double>(config.dim + kNormElementwise));
  if (out == Output::LogProbs) rel += gamma(static_cast<double>(config.vocab_size + kSoftmaxElementwise));
  return rel;
}

// bfloat16 activations are rounded at about 15 points per layer (RMSNorm out, fused qkv, RoPE, attention out,
// o-proj, residual, RMSNorm, gate/up, SiLU*up, down, residual, and the bf16 weights of the 4 products) and 3 in the
// head (final norm, LM-head weights, logits); GEMMs accumulate in float32 (negligible next to 2^-8).
constexpr int kBf16RoundingsPerLayer = 15;
constexpr int kBf16HeadRoundings = 3;

/// Relative bound of bfloat16 logits against exact arithmetic: one u_bf16 per rounding point.
template <class C>
double bf16_rel(const C& config) {
  return static_cast<double>(config.n_layers * kBf16RoundingsPerLayer + kBf16HeadRoundings) * kUBf16;
}

/// Catch's Approx with epsilon = rel (relative to |desired|) and margin = rel * scale (scale: |desired| if < 0).
inline Catch::Detail::Approx approx(double desired, double rel, double scale = -1) {
  if (scale < 0) scale = std::fabs(desired);
  return Catch::Detail::Approx(desired).epsilon(rel).margin(rel * scale);
}

/// Outcome of an element-wise comparison: true when every |a - d| <= rel |d| + rel * scale; prints the worst.
struct Closeness {
  bool ok = true;
  std::string message;
  explicit operator bool() const { return ok; }
  friend std::ostream& operator<<(std::ostream& os, const Closeness& c) { return os << c.message; }
};

/// actual and desired: equally long ranges of numbers; scale: max |desired| if < 0.
template <class A, class D>
Closeness close(const A& actual, const D& desired, double rel, double scale = -1) {
  std::vector<double> a(std::begin(actual), std::end(actual)), d(std::begin(desired), std::end(desired));
  Closeness c;
  std::ostringstream os;
  if (a.size() != d.size()) {
    c.ok = false;
    os << "sizes differ: " << a.size() << " vs " << d.size();
    c.message = os.str();
    return c;
  }
  if (scale < 0) {
    scale = 0;
    for (double x : d) scale = std::max(scale, std::fabs(x));
  }
  double worst_excess = -1;
  std::size_t worst = 0, bad = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double err = std::fabs(a[i] - d[i]), allowed = rel * std::fabs(d[i]) + rel * scale;
    const bool fine = err <= allowed;  // NaN fails
    if (!fine) ++bad;
    const double excess = std::isnan(err) ? INFINITY : err / std::max(allowed, 1e-300);
    if (excess > worst_excess) worst_excess = excess, worst = i;
  }
  c.ok = bad == 0;
  os.precision(9);
  os << (c.ok ? "close" : "NOT close") << ": " << bad << " of " << a.size() << " beyond rel " << rel
     << " (scale " << scale << ")";
  if (!a.empty())
    os << "; worst [" << worst << "] " << a[worst] << " vs " << d[worst] << ", |diff| "
       << std::fabs(a[worst] - d[worst]) << " = " << worst_excess << " x allowed";
  c.message = os.str();
  return c;
}

#ifdef TORCH_CHECK  // ATen / c10 included before this header
inline std::vector<double> values(const at::Tensor& t) {
  const at::Tensor c = t.detach().to(at::kDouble).contiguous().cpu();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

inline Closeness close(const at::Tensor& actual, const at::Tensor& desired, double rel, double scale = -1) {
  if (!actual.sizes().equals(desired.sizes())) {
    Closeness c;
    c.ok = false;
    std::ostringstream os;
    os << "shapes differ: " << actual.sizes() << " vs " << desired.sizes();
    c.message = os.str();
    return c;
  }
  return close(values(actual), values(desired), rel, scale);
}

/// max |t|: the scale of a tensor's values.
inline double max_abs(const at::Tensor& t) { return t.detach().abs().max().to(at::kDouble).item<double>(); }
#endif

}  // namespace crossicl::test::tol
