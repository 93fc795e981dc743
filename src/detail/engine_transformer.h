// The LLaMA forward pass that Context::decode runs, read top to bottom: plan_batch checks a Batch against the
// cache and packs it (each sequence's tokens contiguous, no padding); forward embeds the tokens, runs attention
// and feed-forward for each layer and returns the rows asked for. Both follow HF transformers' LlamaModel
// operation by operation (detail/engine_ops.h), with the CPU loops of detail/engine_kernels.h where they apply.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include <ATen/core/Tensor.h>

#include "crossicl/engine/batch.h"
#include "crossicl/engine/context.h"
#include "crossicl/engine/model.h"

namespace crossicl::detail {

/// One sequence's tokens in a planned batch: packed rows [start, start + len), positions p0 .. p0 + len - 1.
struct SeqSpan {
  std::int32_t seq;    // sequence id
  std::int64_t p0;     // first position = the sequence's cached length before this batch
  std::int64_t start;  // first packed row
  std::int64_t len;    // tokens of this sequence in the batch
};

/// A batch checked against the cache and packed: the tokens of each sequence contiguous, sequences in order of
/// first appearance in the batch.
struct BatchPlan {
  std::vector<SeqSpan> seqs;            // one per sequence in the batch
  std::vector<std::int64_t> tokens;     // [n] token ids, packed order
  std::vector<std::int64_t> positions;  // [n] positions, packed order
  std::vector<std::int64_t> out_rows;   // [n_out] packed rows of the entries with output = 1, in batch order
};

/// Where a sequence's keys and values go: one tensor per layer, [n_kv_heads, capacity, head_dim], with room for
/// the span's positions. The forward pass writes positions p0 .. p0 + len - 1 and reads 0 .. p0 + len - 1.
struct SeqKv {
  const std::vector<at::Tensor>* k;  // per layer [n_kv_heads, capacity, head_dim]
  const std::vector<at::Tensor>* v;  // per layer [n_kv_heads, capacity, head_dim]
};

/// Checks `batch` and `options` and packs the batch. `cached_len(seq)` is a sequence's cached length (0 when
/// unknown). Throws InvalidArgument (naming the entry and value) for mismatched vector sizes, an empty batch, a
/// hidden layer outside [0, n_layers], a token id out of range, a negative sequence id, a position that does
/// not continue its sequence or one at or past n_ctx.
BatchPlan plan_batch(const Batch& batch, const DecodeOptions& options, const Config& config, std::int64_t n_ctx,
                     const std::function<std::int64_t(std::int32_t)>& cached_len);

struct ActStats;  // detail/engine_quant.h

/// Runs the planned batch through `model`, writing each sequence's new keys/values into `kv` (one per
/// plan.seqs entry), and returns the logits and hidden states of plan.out_rows. With `stats`, also records the
/// channel maxima of every Linear layer's input (calibration for int8 smoothing).
DecodeOutput forward(const Model& model, const BatchPlan& plan, const std::vector<SeqKv>& kv,
                     const DecodeOptions& options, ActStats* stats = nullptr);

}  // namespace crossicl::detail
