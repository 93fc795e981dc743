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

at::Tensor gemv(const at::Tensor& x_in, const at::Tensor& w, Isa isa) {
  CROSSICL_PROFILE("gemv");
  if (!gemv_applies(x_in, w))
    throw InvalidArgument(fmt::format("gemv: x [{}] {} and w [{}] {} do not fit (n <= {}, rows of w contiguous)",
                                      fmt::join(x_in.sizes(), ", "), c10::toString(x_in.scalar_type()),
                                      fmt::join(w.sizes(), ", "), c10::toString(w.scalar_type()), kGemvMaxRows));
  const std::int64_t n = x_in.size(0), in = x_in.size(1), out = w.size(0), ld = w.stride(0);
  at::Tensor y = at::empty({n, out}, x_in.options().dtype(at::kFloat));  // [n, out] float32
  float* yp = y.data_ptr<float>();
  const int m = static_cast<int>(n);
  check_isa(isa, "gemv");
  if (w.scalar_type() == at::kFloat) {
    const at::Tensor x = x_in.contiguous();  // [n, in]
    const float* xp = x.data_ptr<float>();
    const float* wp = w.data_ptr<float>();
    at::parallel_for(0, out, row_grain(in * 4), [&](std::int64_t o0, std::int64_t o1) {
      CROSSICL_ISA_CALL(isa, "gemv", gemv_rows_f32, wp, ld, in, xp, m, o0, o1, yp, out);
    });
    return y;
  }
  // bfloat16: x to float32 (exact) with each whole group of 32 inputs as its even elements then its odd ones (the
  // kernel's pair order), in one pass over at most 4 rows
  const at::Tensor xr = at::empty({n, in}, y.options());  // [n, in] float32
  float* rp = xr.data_ptr<float>();
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
  });
  return y.to(at::kBFloat16);
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
  if (w.stride(1) == 1 && w.stride(0) >= in) {  // [out, in] rows
    at::parallel_for(0, out, row_grain(in), [&](std::int64_t o0, std::int64_t o1) {
      CROSSICL_ISA_CALL(isa, "gemv", gemv_rows_i8, wp, w.stride(0), in, xp, m, o0, o1, yp, out);
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
