// int8 quantisation of the Linear layers (Quantize::Int8, W8A8): rows quantised symmetrically to int8 with one
// float32 scale per row (a weight's output channel, an activation's token), and the int8 x int8 -> int32 product
// (at::_int_mm, oneDNN on the CPU) rescaled to float32. benchmarks/int8_gemm.py compared the candidates.
//
// Exactness: quantising a row is deterministic and independent of every other row, and the int32 accumulation is
// exact (|sum| <= in * 127^2 < 2^31 for in < 133,000), so a row's output depends on that row alone: the int8
// Linear is bit-identical whatever the batch around the row (tests/cpp/engine/test_quant.cpp checks it).
// Error per element: |x - q * scale| <= scale / 2 (up to float rounding of x / scale, a relative 2^-24 of 127).
// The kernels are compiled per instruction-set path (detail/isa.h) with the same bits on each.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "crossicl/core/isa.h"
#include "crossicl/engine/model.h"

namespace crossicl::detail {

/// Quantises each row of `x` (float32, [n, k], any row stride): scale = max|row| / 127 (0 for a zero row),
/// q = round-half-even(x / scale) clamped to [-127, 127] (0 where scale is 0).
QuantWeight quantize_rows(const at::Tensor& x,  // [n, k] float32
                          Isa isa = active_isa());  // -> q [n, k] int8 contiguous, scale [n] float32

/// q * scale per row, float32.
at::Tensor dequantize_rows(const QuantWeight& w);  // -> [n, k] float32

/// Quantises a Linear weight [out, in] per output channel, stored for the int8 GEMM: q is a transposed view of
/// contiguous [in, out] rows.
QuantWeight quantize_linear(const at::Tensor& w);  // [out, in] float32

/// x W^T through int8: x quantised per row (token), the int8 product accumulated in int32, each element rescaled
/// by scale_x[row] * scale_w[col] in float32.
at::Tensor linear_int8(const at::Tensor& x,      // [n, in] float32
                       const QuantWeight& w,     // [out, in]
                       Isa isa = active_isa());  // -> [n, out] float32

/// Rows `ids` of an int8 table, dequantised (the token embeddings of Quantize::Int8).
at::Tensor embedding_int8(const QuantWeight& table,  // [vocab, dim]
                          const at::Tensor& ids);    // [n] int64 -> [n, dim] float32

}  // namespace crossicl::detail
