#include "detail/engine_gemv.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

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
  const at::Tensor x = x_in.to(at::kFloat).contiguous();  // [n, in] float32 (a copy of at most 4 rows)
  const std::int64_t n = x.size(0), in = x.size(1), out = w.size(0), ld = w.stride(0);
  at::Tensor y = at::empty({n, out}, x.options());  // [n, out] float32
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const int m = static_cast<int>(n);
  check_isa(isa, "gemv");
  if (w.scalar_type() == at::kFloat) {
    const float* wp = w.data_ptr<float>();
    at::parallel_for(0, out, row_grain(in * 4), [&](std::int64_t o0, std::int64_t o1) {
      CROSSICL_ISA_CALL(isa, "gemv", gemv_rows_f32, wp, ld, in, xp, m, o0, o1, yp, out);
    });
  } else {
    const auto* wp = reinterpret_cast<const std::uint16_t*>(w.data_ptr<at::BFloat16>());
    at::parallel_for(0, out, row_grain(in * 2), [&](std::int64_t o0, std::int64_t o1) {
      CROSSICL_ISA_CALL(isa, "gemv", gemv_rows_bf16, wp, ld, in, xp, m, o0, o1, yp, out);
    });
  }
  return y.to(x_in.scalar_type());
}

at::Tensor gemv_int8(const at::Tensor& xq_in, const at::Tensor& w, Isa isa) {
  CROSSICL_PROFILE("gemv_int8");
  if (xq_in.dim() != 2 || w.dim() != 2 || xq_in.scalar_type() != at::kChar || w.scalar_type() != at::kChar ||
      xq_in.size(1) != w.size(1) || xq_in.size(0) < 1 || xq_in.size(0) > kGemvMaxRows ||
      (w.stride(1) != 1 && w.stride(0) != 1))
    throw InvalidArgument(fmt::format("gemv_int8: xq [{}] and w [{}] do not fit (int8, n <= {}, a unit stride)",
                                      fmt::join(xq_in.sizes(), ", "), fmt::join(w.sizes(), ", "), kGemvMaxRows));
  const at::Tensor xq = xq_in.contiguous();
  const std::int64_t n = xq.size(0), in = xq.size(1), out = w.size(0);
  const int m = static_cast<int>(n);
  const std::int8_t* xp = xq.data_ptr<std::int8_t>();
  const std::int8_t* wp = w.data_ptr<std::int8_t>();
  check_isa(isa, "gemv");
  if (w.stride(1) == 1 && w.stride(0) >= in) {  // [out, in] rows
    at::Tensor y = at::empty({n, out}, xq.options().dtype(at::kInt));
    std::int32_t* yp = y.data_ptr<std::int32_t>();
    at::parallel_for(0, out, row_grain(in), [&](std::int64_t o0, std::int64_t o1) {
      CROSSICL_ISA_CALL(isa, "gemv", gemv_rows_i8, wp, w.stride(0), in, xp, m, o0, o1, yp, out);
    });
    return y;
  }
  // [in, out] rows (w is their transposed view): the threads split the input rows, each into its own buffer.
  const std::int64_t ld = w.stride(1);
  const std::int64_t chunks =
      std::max<std::int64_t>(1, std::min<std::int64_t>(at::get_num_threads(), in * out / (std::int64_t{64} << 10)));
  at::Tensor part = at::zeros({chunks, n, out}, xq.options().dtype(at::kInt));  // [chunks, n, out]
  std::int32_t* pp = part.data_ptr<std::int32_t>();
  at::parallel_for(0, chunks, 1, [&](std::int64_t c0, std::int64_t c1) {
    for (std::int64_t c = c0; c < c1; ++c) {
      const std::int64_t i0 = in * c / chunks, i1 = in * (c + 1) / chunks;
      CROSSICL_ISA_CALL(isa, "gemv", gemv_cols_i8, wp, ld, out, xp, m, in, i0, i1, pp + c * n * out);
    }
  });
  return chunks == 1 ? part[0] : part.sum(0, /*keepdim=*/false, at::kInt);  // exact: int32 sums in any order
}

}  // namespace crossicl::detail
