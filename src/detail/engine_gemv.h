// Matrix-vector products for decode steps (a few rows of activations against a whole weight matrix): float32 and
// bfloat16 weights as [out, in] rows, int8 weights (Quantize::Int8) as [out, in] or [in, out] rows. ATen's
// addmv/linear goes through MKL's sgemv, whose speed depends on the CPU vendor; these stream each weight byte
// once for all the rows, a few output rows per block (gemv_body.inc says how many per path), with threads
// splitting the output rows. int8 weights stored as [in, out] rows (the GEMM's layout) go by blocks of a cache
// line of outputs, summed in registers over the input rows two at a time (pmaddwd on the avx2 and avx512 paths).
// Compiled per instruction-set path (detail/isa.h) with -ffp-contract=off and a fixed summation order: the same
// bits on every path. float sums differ from ATen's by rounding only (tests/cpp/engine/test_gemv.cpp); int8 sums
// are exact, so the int8 result is bit-identical to at::_int_mm's.
#pragma once

#include <cstdint>
#include <functional>

#include <ATen/core/Tensor.h>

#include "crossicl/core/isa.h"
#include "crossicl/engine/model.h"

namespace crossicl::detail {

/// Most activation rows a matrix-vector product takes; more go to the GEMM.
constexpr std::int64_t kGemvMaxRows = 4;

/// Whether gemv() takes x W^T: CPU tensors, x [n, in] with 1 <= n <= kGemvMaxRows, float32 or bfloat16 like w,
/// w [out, in] with unit column stride.
bool gemv_applies(const at::Tensor& x, const at::Tensor& w);

/// x W^T, summed in float32 and rounded once to x's dtype.
at::Tensor gemv(const at::Tensor& x,       // [n, in] float32 or bfloat16
                const at::Tensor& w,       // [out, in] same dtype, unit column stride
                Isa isa = active_isa());   // -> [n, out]

/// The same into dst (written, or added to when `add`: each element rounds once, as dst.add_(gemv(x, w)) would),
/// by each thread on the rows it summed: a block's output projection added to the residual stream without a
/// tensor of its own.
void gemv_into(const at::Tensor& x,    // [n, in] float32 or bfloat16
               const at::Tensor& w,    // [out, in] same dtype, unit column stride
               const at::Tensor& dst,  // [n, out] x's dtype, unit column stride
               bool add, Isa isa = active_isa());

/// The exact int32 product of int8 rows xq [n, in] (n <= kGemvMaxRows) and an int8 weight w [out, in], stored as
/// [out, in] rows or as a transposed view of [in, out] rows: what at::_int_mm(xq, w.t()) returns.
at::Tensor gemv_int8(const at::Tensor& xq,     // [n, in] int8 contiguous
                     const at::Tensor& w,      // [out, in] int8, unit stride in one of its dimensions
                     Isa isa = active_isa());  // -> [n, out] int32

/// The output columns [o0, o1) of y [n, out], just summed, on the thread that summed them.
using GemvDone = std::function<void(std::int64_t o0, std::int64_t o1)>;

/// gemv_int8 into y (row stride out) with an epilogue: each thread calls done(o0, o1) on the columns it summed, while
/// they are in its cache, so a rescale needs no pass of its own (linear_int8).
void gemv_int8_into(const at::Tensor& xq,  // [n, in] int8 contiguous
                    const at::Tensor& w,   // [out, in] int8, unit stride in one of its dimensions
                    std::int32_t* y,       // [n, out] written
                    const GemvDone& done, Isa isa = active_isa());

}  // namespace crossicl::detail
