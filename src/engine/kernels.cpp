#include "detail/engine_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "crossicl/core/error.h"
#include "detail/engine_profile.h"
#include "detail/engine_team.h"

#define CROSSICL_ISA_BODY "engine/kernels_body.inc"
#include "detail/isa_instances.h"

namespace crossicl::detail {

namespace {
void check_gate_up(const at::Tensor& gu) {
  if (!cpu_kernels(gu) || gu.dim() != 2 || !gu.is_contiguous() || gu.size(1) % 2 != 0)
    throw InvalidArgument(fmt::format("silu_mul: contiguous [n, 2 * hidden] float32/bfloat16 expected (got {}-d {})",
                                      gu.dim(), c10::toString(gu.scalar_type())));
}
}  // namespace

bool cpu_kernels(const at::Tensor& x) {
  return x.device().is_cpu() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16);
}

at::Tensor rms_norm_cpu(const at::Tensor& x_in, const at::Tensor& weight, double eps, Isa isa) {
  const at::Tensor x = x_in.contiguous();
  at::Tensor out = at::empty_like(x);  // [n, dim]
  rms_norm_cpu_into(x, weight, eps, out, isa);
  return out;
}

void rms_norm_cpu_into(const at::Tensor& x, const at::Tensor& weight, double eps, const at::Tensor& out, Isa isa) {
  CROSSICL_PROFILE("rms_norm");
  if (!cpu_kernels(x) || x.dim() != 2 || !x.is_contiguous() || weight.scalar_type() != x.scalar_type() ||
      weight.numel() != x.size(1) || !weight.is_contiguous() || out.sizes() != x.sizes() || !out.is_contiguous() ||
      out.scalar_type() != x.scalar_type() || !out.device().is_cpu())
    throw InvalidArgument(fmt::format("rms_norm: x [{}] {}, weight [{}] {} and out [{}] {} are not contiguous "
                                      "float32/bfloat16 [n, dim], [dim] and [n, dim] of one dtype",
                                      fmt::join(x.sizes(), ", "), c10::toString(x.scalar_type()),
                                      fmt::join(weight.sizes(), ", "), c10::toString(weight.scalar_type()),
                                      fmt::join(out.sizes(), ", "), c10::toString(out.scalar_type())));
  CROSSICL_ISA_CALL(isa, "rms_norm", rms_norm_cpu, x, weight, eps, out);
}

at::Tensor silu_mul_cpu(at::Tensor gu, Isa isa) {
  check_gate_up(gu);
  at::Tensor out = at::empty({gu.size(0), gu.size(1) / 2}, gu.options());  // [n, hidden]
  silu_mul_cpu_into(gu, gu.narrow(1, 0, gu.size(1) / 2), out, isa);
  return out;
}

void silu_mul_cpu_into(const at::Tensor& gu, at::Tensor gate, const at::Tensor& out, Isa isa) {
  CROSSICL_PROFILE("silu_mul");
  check_gate_up(gu);
  const std::int64_t n = gu.size(0), h = gu.size(1) / 2;
  if (gate.data_ptr() != gu.data_ptr() || gate.dim() != 2 || gate.size(0) != n || gate.size(1) != h ||
      gate.strides() != gu.strides() || out.dim() != 2 || out.size(0) != n || out.size(1) != h ||
      !out.is_contiguous() || out.scalar_type() != gu.scalar_type() || !out.device().is_cpu())
    throw InvalidArgument(fmt::format("silu_mul: gate [{}] is not the first half of gu [{}], or out [{}] {} is not a "
                                      "contiguous [{}, {}] {}", fmt::join(gate.sizes(), ", "),
                                      fmt::join(gu.sizes(), ", "), fmt::join(out.sizes(), ", "),
                                      c10::toString(out.scalar_type()), n, h, c10::toString(gu.scalar_type())));
  at::silu_(gate);  // ATen's vectorised SiLU in place (a std::exp loop does not vectorise)
  CROSSICL_ISA_CALL(isa, "silu_mul", silu_mul_cpu, gu, out);
}

void rope_qk_cpu(at::Tensor& qkv, std::int64_t heads, const at::Tensor& cos, const at::Tensor& sin, Isa isa) {
  CROSSICL_PROFILE("rope");
  CROSSICL_ISA_CALL(isa, "rope", rope_qk_cpu, qkv, heads, cos, sin);
}

void attend_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, std::int64_t p0, double scale,
                at::Tensor& out, Isa isa) {
  AttendSpan span;
  span.len = q.size(0);
  span.p0 = p0;
  span.k = &k;
  span.v = &v;
  attend_cpu(q, std::vector<AttendSpan>{span}, scale, out, isa);
}

void attend_cpu(const at::Tensor& q, const std::vector<AttendSpan>& spans, double scale, at::Tensor& out, Isa isa) {
  CROSSICL_PROFILE("attend");
  CROSSICL_ISA_CALL(isa, "attention", attend_cpu, q, spans, scale, out);
}

namespace {
void check_logits_rows(const at::Tensor& logits, const char* what) {
  if (!logits.device().is_cpu() || logits.scalar_type() != at::kFloat || logits.dim() != 2 || logits.stride(1) != 1 ||
      logits.size(1) == 0)
    throw InvalidArgument(fmt::format("{}: [n, vocab] float32 CPU rows expected (got {}-d {}{})", what, logits.dim(),
                                      c10::toString(logits.scalar_type()),
                                      logits.dim() == 2 ? fmt::format(", vocab {}", logits.size(1)) : ""));
}
}  // namespace

void token_logprobs_cpu(const at::Tensor& logits, const std::int32_t* targets, float* logprob, bool* greedy, Isa isa) {
  CROSSICL_PROFILE("token_logprobs");
  check_logits_rows(logits, "token_logprobs");
  for (std::int64_t r = 0; r < logits.size(0); ++r)
    if (targets[r] < 0 || targets[r] >= logits.size(1))
      throw InvalidArgument(fmt::format("token_logprobs: target {} of row {} is outside the vocabulary [0, {})",
                                        targets[r], r, logits.size(1)));
  CROSSICL_ISA_CALL(isa, "token_logprobs", token_logprobs_cpu, logits, targets, logprob, greedy, nullptr);
}

void greedy_tokens_cpu(const at::Tensor& logits, std::int32_t* ids, float* logprob, Isa isa) {
  CROSSICL_PROFILE("greedy_tokens");
  check_logits_rows(logits, "greedy_tokens");
  CROSSICL_ISA_CALL(isa, "token_logprobs", token_logprobs_cpu, logits, nullptr, logprob, nullptr, ids);
}

}  // namespace crossicl::detail
