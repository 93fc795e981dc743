#include "detail/engine_gemv.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>  // the avx2 and avx512 bodies' intrinsics
#endif

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "crossicl/core/error.h"
#include "detail/engine_profile.h"

#define CROSSICL_ISA_BODY "engine/gemv_body.inc"
#include "detail/isa_instances.h"

namespace crossicl::detail {
namespace {

// Outputs per block of the [in, out] int8 kernel's partition: a multiple of every path's register block.
constexpr std::int64_t kColBlock = 64;

// Output rows per parallel task: enough weight bytes that a task outweighs waking a thread.
std::int64_t row_grain(std::int64_t row_bytes) {
  return std::max<std::int64_t>(4, (std::int64_t{64} << 10) / std::max<std::int64_t>(1, row_bytes));
}

}  // namespace

bool gemv_applies(const at::Tensor& x, const at::Tensor& w) {
  return x.device().is_cpu() && w.device().is_cpu() && x.dim() == 2 && w.dim() == 2 && x.size(0) >= 1 &&
         x.size(0) <= kGemvMaxRows && x.scalar_type() == w.scalar_type() &&
         (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16) && w.stride(1) == 1 &&
         w.size(1) == x.size(1) && w.stride(0) >= w.size(1);
}

namespace {

// dst[r, o0:o1] (+)= y[r, o0:o1] for the n rows, in dst's dtype: float32 as is, bfloat16 rounded to nearest even
// (as y.to(at::kBFloat16)); `add` rounds dst + y once, as dst.add_(y.to(dst's dtype)) does.
void store_rows(const float* y, std::int64_t n, std::int64_t out, std::int64_t o0, std::int64_t o1,
                const at::Tensor& dst, bool add) {
  const std::int64_t ld = dst.stride(0);
  if (dst.scalar_type() == at::kFloat) {
    float* d = dst.data_ptr<float>();
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t o = o0; o < o1; ++o) d[r * ld + o] = add ? d[r * ld + o] + y[r * out + o] : y[r * out + o];
    return;
  }
  at::BFloat16* d = dst.data_ptr<at::BFloat16>();
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t o = o0; o < o1; ++o) {
      const at::BFloat16 v(y[r * out + o]);  // round to nearest even
      d[r * ld + o] = add ? at::BFloat16(static_cast<float>(d[r * ld + o]) + static_cast<float>(v)) : v;
    }
}

void check_gemv(const at::Tensor& x, const at::Tensor& w) {
  if (!gemv_applies(x, w))
    throw InvalidArgument(fmt::format("gemv: x [{}] {} and w [{}] {} do not fit (n <= {}, rows of w contiguous)",
                                      fmt::join(x.sizes(), ", "), c10::toString(x.scalar_type()),
                                      fmt::join(w.sizes(), ", "), c10::toString(w.scalar_type()), kGemvMaxRows));
}

}  // namespace

void gemv_into(const at::Tensor& x_in, const at::Tensor& w, const at::Tensor& dst, bool add, Isa isa) {
  CROSSICL_PROFILE("gemv");
  check_gemv(x_in, w);
  const std::int64_t n = x_in.size(0), in = x_in.size(1), out = w.size(0), ld = w.stride(0);
  if (!dst.defined() || dst.dim() != 2 || dst.size(0) != n || dst.size(1) != out || dst.stride(1) != 1 ||
      dst.scalar_type() != x_in.scalar_type() || !dst.device().is_cpu())
    throw InvalidArgument(fmt::format("gemv: output [{}] {} is not a [{}, {}] {} with contiguous rows",
                                      fmt::join(dst.sizes(), ", "), c10::toString(dst.scalar_type()), n, out,
                                      c10::toString(x_in.scalar_type())));
  check_isa(isa, "gemv");
  thread_local std::vector<float> sums;  // [n, out] float32 sums, reused across calls
  sums.resize(static_cast<std::size_t>(n * out));
  float* yp = sums.data();
  const int m = static_cast<int>(n);
  if (w.scalar_type() == at::kFloat) {
    const at::Tensor x = x_in.contiguous();  // [n, in]
    const float* xp = x.data_ptr<float>();
    const float* wp = w.data_ptr<float>();
    at::parallel_for(0, out, row_grain(in * 4), [&](std::int64_t o0, std::int64_t o1) {
      CROSSICL_ISA_CALL(isa, "gemv", gemv_rows_f32, wp, ld, in, xp, m, o0, o1, yp, out);
      store_rows(yp, n, out, o0, o1, dst, add);
    });
    return;
  }
  // bfloat16: x to float32 (exact) with each whole group of 32 inputs as its even elements then its odd ones (the
  // kernel's pair order), in one pass over at most 4 rows
  thread_local std::vector<float> xr;  // [n, in] float32
  xr.resize(static_cast<std::size_t>(n * in));
  float* rp = xr.data();
  const at::BFloat16* xb = x_in.data_ptr<at::BFloat16>();
  const std::int64_t whole = in / 32 * 32, s0 = x_in.stride(0), s1 = x_in.stride(1);
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t i = 0; i < in; ++i) {
      const std::int64_t j = i % 32;
      rp[r * in + (i < whole ? i - j + (j % 2) * 16 + j / 2 : i)] = static_cast<float>(xb[r * s0 + i * s1]);
    }
  const auto* wp = reinterpret_cast<const std::uint16_t*>(w.data_ptr<at::BFloat16>());
  at::parallel_for(0, out, row_grain(in * 2), [&](std::int64_t o0, std::int64_t o1) {
    CROSSICL_ISA_CALL(isa, "gemv", gemv_rows_bf16, wp, ld, in, rp, m, o0, o1, yp, out);
    store_rows(yp, n, out, o0, o1, dst, add);
  });
}

at::Tensor gemv(const at::Tensor& x, const at::Tensor& w, Isa isa) {
  check_gemv(x, w);
  at::Tensor y = at::empty({x.size(0), w.size(0)}, x.options());  // [n, out] in x's dtype
  gemv_into(x, w, y, false, isa);
  return y;
}

namespace {

void check_gemv_int8(const at::Tensor& xq_in, const at::Tensor& w) {
  if (xq_in.dim() != 2 || w.dim() != 2 || xq_in.scalar_type() != at::kChar || w.scalar_type() != at::kChar ||
      xq_in.size(1) != w.size(1) || xq_in.size(0) < 1 || xq_in.size(0) > kGemvMaxRows ||
      (w.stride(1) != 1 && w.stride(0) != 1))
    throw InvalidArgument(fmt::format("gemv_int8: xq [{}] and w [{}] do not fit (int8, n <= {}, a unit stride)",
                                      fmt::join(xq_in.sizes(), ", "), fmt::join(w.sizes(), ", "), kGemvMaxRows));
}

}  // namespace

void gemv_int8_into(const at::Tensor& xq_in, const at::Tensor& w, std::int32_t* yp, const GemvDone& done, Isa isa) {
  CROSSICL_PROFILE("gemv_int8");
  check_gemv_int8(xq_in, w);
  const at::Tensor xq = xq_in.contiguous();
  const std::int64_t n = xq.size(0), in = xq.size(1), out = w.size(0);
  const int m = static_cast<int>(n);
  const std::int8_t* xp = xq.data_ptr<std::int8_t>();
  const std::int8_t* wp = w.data_ptr<std::int8_t>();
  check_isa(isa, "gemv");
  if (w.stride(1) == 1 && w.stride(0) >= in) {  // [out, in] rows, against x sign-extended to int16 once
    thread_local std::vector<std::int16_t> x16;  // [n, in], reused across calls
    x16.assign(xp, xp + n * in);
    const std::int16_t* x16p = x16.data();
    at::parallel_for(0, out, row_grain(in), [&](std::int64_t o0, std::int64_t o1) {
      CROSSICL_ISA_CALL(isa, "gemv", gemv_rows_i8, wp, w.stride(0), in, x16p, m, o0, o1, yp, out);
      if (done) done(o0, o1);
    });
    return;
  }
  // [in, out] rows (w is their transposed view): the threads split the outputs in blocks of whole cache lines,
  // each block summed in registers while the input rows stream past a few at a time.
  const std::int64_t ld = w.stride(1);
  const std::int64_t blocks = (out + kColBlock - 1) / kColBlock;
  at::parallel_for(0, blocks, std::max<std::int64_t>(1, row_grain(in * kColBlock) / kColBlock),
                   [&](std::int64_t b0, std::int64_t b1) {
                     const std::int64_t o0 = b0 * kColBlock, o1 = std::min(out, b1 * kColBlock);
                     CROSSICL_ISA_CALL(isa, "gemv", gemv_cols_i8, wp, ld, in, xp, m, o0, o1, yp, out);
                     if (done) done(o0, o1);
                   });
}

at::Tensor gemv_int8(const at::Tensor& xq, const at::Tensor& w, Isa isa) {
  check_gemv_int8(xq, w);
  at::Tensor y = at::empty({xq.size(0), w.size(0)}, xq.options().dtype(at::kInt));  // [n, out]
  gemv_int8_into(xq, w, y.data_ptr<std::int32_t>(), nullptr, isa);
  return y;
}

}  // namespace crossicl::detail
