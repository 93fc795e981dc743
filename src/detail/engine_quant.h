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

#include <array>
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "crossicl/core/isa.h"
#include "crossicl/engine/model.h"

namespace crossicl::detail {

/// Quantises each row of `x` (float32, [n, k], any row stride): scale = max|row| / 127 (0 for a zero row),
/// q = round-half-even(x / scale) clamped to [-127, 127] (0 where scale is 0).
/// `into` (here and below): buffers to write instead of new tensors (a decode step's, kept for all its layers):
/// q [n, k] int8 and scale [n] float32, contiguous on the CPU, else InvalidArgument naming their shapes.
QuantWeight quantize_rows(const at::Tensor& x,  // [n, k] float32
                          Isa isa = active_isa(),  // -> q [n, k] int8 contiguous, scale [n] float32
                          const QuantWeight* into = nullptr);

/// q * scale per row, float32.
at::Tensor dequantize_rows(const QuantWeight& w);  // -> [n, k] float32

/// How quantize_linear stores a weight's int8 codes. Products are exact in both, so the layout changes the speed,
/// never the result.
enum class Int8Layout {
  Columns,  // a transposed view of contiguous [in, out] rows: at::_int_mm's layout
  Rows,     // contiguous [out, in] rows: one sequential stream per output row in the decode kernel
};

/// The layout for this CPU: Columns where at::_int_mm has a fast kernel (VNNI or AMX), Rows elsewhere, where
/// larger products go through float32 GEMMs (int8_mm_via_float), which take either layout at the same speed.
Int8Layout preferred_int8_layout();

/// Quantises a Linear weight [out, in] per output channel (quantize_rows), its codes stored in `layout`.
QuantWeight quantize_linear(const at::Tensor& w,  // [out, in] float32
                            Int8Layout layout = preferred_int8_layout());

/// The exact int32 product xq w^T of int8 codes in [-128, 127], computed with float32 GEMMs (at::mm): the codes as
/// floats, the inner dimension in slices of at most 1,024, so that every partial sum of a slice is an integer of
/// magnitude at most 2^24 and exact in float32 whatever the GEMM's order; the slices are added in int32. For CPUs
/// where at::_int_mm is slow (no VNNI or AMX): it runs at float32's GEMM speed.
void int8_mm_via_float(const at::Tensor& xq,   // [n, k] int8
                       const at::Tensor& w,    // [out, k] int8, any strides
                       const at::Tensor& out);  // [n, out] int32 contiguous, written

/// x W^T through int8: x quantised per row (token), the int8 product accumulated in int32, each element rescaled
/// by scale_x[row] * scale_w[col] in float32.
at::Tensor linear_int8(const at::Tensor& x,      // [n, in] float32
                       const QuantWeight& w,     // [out, in]
                       Isa isa = active_isa());  // -> [n, out] float32

/// The same product from an input already quantised per row (quantize_rows, quantize_rms_norm,
/// quantize_silu_mul).
at::Tensor linear_int8(const QuantWeight& xq,    // q [n, in] int8, scale [n]
                       const QuantWeight& w,     // [out, in]
                       Isa isa = active_isa(),   // -> [n, out] float32
                       const at::Tensor* into = nullptr);  // [n, out] float32 contiguous to write, or null

/// residual += the same product, in place (the sum rounds as residual.add_(linear_int8(xq, w)) does): a block's
/// output projection added to the residual stream without a tensor of its own.
void linear_int8_add(const QuantWeight& xq,    // q [n, in] int8, scale [n]
                     const QuantWeight& w,     // [out, in]
                     at::Tensor& residual,     // [n, out] float32 contiguous, updated
                     Isa isa = active_isa());

/// RMSNorm quantised per row in one pass: the rows of weight * (x / sqrt(mean(x^2) + eps)) as rms_norm_cpu
/// computes them in float32 (the same bits), through quantize_rows, without storing the float rows.
QuantWeight quantize_rms_norm(const at::Tensor& x,       // [n, dim] float32
                              const at::Tensor& weight,  // [dim] float32
                              double eps,
                              Isa isa = active_isa(),  // -> q [n, dim] int8, scale [n]
                              const QuantWeight* into = nullptr);

/// The SwiGLU input of the down projection quantised per row: the rows of silu(gate) * up (silu_int8_path's
/// SiLU) through quantize_rows without storing them.
QuantWeight quantize_silu_mul(const at::Tensor& gu,     // [n, 2 * hidden] float32 contiguous (gate, up)
                              Isa isa = active_isa());  // -> q [n, hidden] int8, scale [n]

/// The same from x through the int8 gate/up projection, without its float output: the int32 product's rows are
/// rescaled (as linear_int8 does), passed through SiLU-gate and quantised in one pass per row, so
/// linear_int8_silu_mul(xq, w13) equals quantize_silu_mul(linear_int8(xq, w13)) bit for bit.
QuantWeight linear_int8_silu_mul(const QuantWeight& xq,    // q [n, in] int8, scale [n]
                                 const QuantWeight& w13,   // [2 * hidden, in] (gate rows, then up rows)
                                 Isa isa = active_isa(),   // -> q [n, hidden] int8, scale [n]
                                 const QuantWeight* into = nullptr);

/// The SiLU of the int8 path, x / (1 + e^-x) with a vectorised Cephes expf: within a few float32 ulps of the exact
/// value (tests/cpp/engine/test_quant.cpp), the same bits on every instruction-set path (ATen's silu differs by
/// path and release). Replaces ATen's in-place pass over the gate half.
at::Tensor silu_int8_path(const at::Tensor& x,      // [n, k] float32
                          Isa isa = active_isa());  // -> [n, k]

/// Rows `ids` of an int8 table, dequantised (the token embeddings of Quantize::Int8).
at::Tensor embedding_int8(const QuantWeight& table,  // [vocab, dim]
                          const at::Tensor& ids);    // [n] int64 -> [n, dim] float32

/// The inputs of a block's Linear layers, in LayerWeights' fused order.
enum ActSlot : int { kSlotQkv = 0, kSlotO = 1, kSlotGateUp = 2, kSlotDown = 3, kSlots = 4 };

/// Per input channel, the largest |activation| entering each Linear layer of each block over the tokens of a
/// float forward pass (forward(..., stats)): what smoothing (smooth_layers) migrates into the weights.
struct ActStats {
  std::vector<std::array<at::Tensor, kSlots>> amax;  // [n_layers][slot] float32 [in] (undefined until observed)

  /// amax[layer][slot] = max(amax[layer][slot], max over rows of |x|).
  void observe(std::int64_t layer, ActSlot slot, const at::Tensor& x);  // x [n, in]
};

/// Runs `model` (float32, not quantised) over each token sequence and gathers the Linear inputs' channel maxima.
/// Sequences longer than the model's max_seq_len are cut to it; ids are checked like any batch's.
ActStats calibrate(const Model& model, const std::vector<std::vector<std::int32_t>>& sequences);

/// SmoothQuant (Xiao et al., 2023) on float32 blocks: for each Linear input channel j, with a_j the calibrated
/// max |x_j| and w_j the max |W[:, j]| over the layer's rows, s_j = a_j^alpha / w_j^(1 - alpha); the input is
/// divided by s_j where it is produced and W's column j multiplied by it, so the float function is unchanged and
/// the per-token int8 quantisation of the input sees smaller outlier channels. The divisions are folded into the
/// RMSNorm weights (qkv, gate/up), the up-projection rows (down) and the value rows (output projection; one
/// factor per key-value channel, shared by the query heads of a group). Channels never seen (a_j = 0) or with
/// an all-zero column keep s_j = 1. New tensors replace the smoothed ones (memory-mapped weights are never
/// written), and the part views (wq .. w3) are remade on the new fused tensors.
void smooth_layers(std::vector<LayerWeights>& layers, const Config& config, const ActStats& stats, double alpha);

}  // namespace crossicl::detail
