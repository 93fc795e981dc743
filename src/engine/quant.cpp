#include "detail/engine_quant.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "crossicl/core/error.h"
#include "detail/engine_profile.h"
#include "detail/engine_scratch.h"
#include "detail/engine_gemv.h"
#include "detail/engine_ops.h"

#define CROSSICL_ISA_BODY "engine/quant_body.inc"
#include "detail/isa_instances.h"

namespace crossicl::detail {
namespace {

// Rows per parallel task: enough elements that a task outweighs the cost of waking a thread.
std::int64_t grain(std::int64_t row_elems) {
  return std::max<std::int64_t>(1, 32768 / std::max<std::int64_t>(1, row_elems));
}

void check_float_matrix(const at::Tensor& x, const char* what) {
  if (x.dim() != 2 || x.scalar_type() != at::kFloat || !x.device().is_cpu())
    throw InvalidArgument(fmt::format("{}: expected a 2-d float32 cpu tensor (got {}-d {} on {})", what, x.dim(),
                                      c10::toString(x.scalar_type()), x.device().str()));
}

// "[2, 95] Char" (shape and dtype), or "undefined", for errors.
std::string describe(const at::Tensor& t) {
  return t.defined() ? fmt::format("[{}] {}", fmt::join(t.sizes(), ", "), c10::toString(t.scalar_type()))
                     : "undefined";
}

// q [n, k] int8 and scale [n] float32 (on `opts`' device; `into`'s when given, checked), rows filled in parallel by
// fill(r0, r1, q, scale).
template <class Fill>
QuantWeight quantize_each_row(std::int64_t n, std::int64_t k, const at::TensorOptions& opts, const QuantWeight* into,
                              const char* what, Isa isa, Fill&& fill) {
  QuantWeight out;
  if (into) {
    out = *into;
    if (!out.q.defined() || !out.scale.defined() || out.q.dim() != 2 || out.q.size(0) != n || out.q.size(1) != k ||
        out.q.scalar_type() != at::kChar || !out.q.is_contiguous() || !out.q.device().is_cpu() ||
        out.scale.numel() != n || out.scale.scalar_type() != at::kFloat || !out.scale.is_contiguous() ||
        !out.scale.device().is_cpu())
      throw InvalidArgument(fmt::format("{}: the output buffers (q {}, scale {}) are not q [{}, {}] int8 and scale "
                                        "[{}] float32, contiguous on the CPU", what, describe(out.q),
                                        describe(out.scale), n, k, n));
  } else {
    out = {at::empty({n, k}, opts.dtype(at::kChar)), at::empty({n}, opts.dtype(at::kFloat))};
  }
  std::int8_t* qp = out.q.data_ptr<std::int8_t>();
  float* sp = out.scale.data_ptr<float>();
  check_isa(isa, "quantize");
  at::parallel_for(0, n, grain(k), [&](std::int64_t r0, std::int64_t r1) { fill(r0, r1, qp, sp); });
  return out;
}

// Whether at::_int_mm has a fast kernel on this CPU: oneDNN's int8 GEMM wants VNNI (AVX-512 or AVX) or AMX.
// Without them it ran SmolLM2's layer shapes at 2-4 GOP/s on an AMD EPYC (Zen 3, AVX2), 10-40x below float32's
// torch.mm there; int8_mm_via_float (from kFloatGemmRows rows) or our matrix-vector kernel, kGemvMaxRows rows at
// a time, takes its place, and the weights are stored as [out, in] rows (preferred_int8_layout), which the
// matrix-vector kernel streams one row at a time. All are exact, so the choice changes the speed, never the result.
bool int_mm_is_fast() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool fast = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") || __builtin_cpu_supports("avxvnni") ||
           __builtin_cpu_supports("amx-int8");
  }();
  return fast;
#else
  return true;
#endif
}

}  // namespace

QuantWeight quantize_rows(const at::Tensor& x_in, Isa isa, const QuantWeight* into) {
  CROSSICL_PROFILE("quantize_rows");
  check_float_matrix(x_in, "quantize_rows");
  const at::Tensor x = x_in.stride(1) == 1 ? x_in : x_in.contiguous();
  const std::int64_t k = x.size(1), stride = x.stride(0);
  const float* xp = x.data_ptr<float>();
  return quantize_each_row(x.size(0), k, x.options(), into, "quantize_rows", isa,
                           [&](std::int64_t r0, std::int64_t r1, std::int8_t* qp, float* sp) {
                             CROSSICL_ISA_CALL(isa, "quantize", quantize_rows_span, xp, stride, k, r0, r1, qp, sp);
                           });
}

at::Tensor dequantize_rows(const QuantWeight& w) { return w.q.to(at::kFloat) * w.scale.unsqueeze(1); }

Int8Layout preferred_int8_layout() { return int_mm_is_fast() ? Int8Layout::Columns : Int8Layout::Rows; }

QuantWeight quantize_linear(const at::Tensor& w, Int8Layout layout) {
  QuantWeight r = quantize_rows(w);
  if (layout == Int8Layout::Columns) r.q = r.q.t().contiguous().t();  // [out, in] view of [in, out] rows
  return r;
}

QuantWeight quantize_rms_norm(const at::Tensor& x_in, const at::Tensor& weight, double eps, Isa isa,
                              const QuantWeight* into) {
  CROSSICL_PROFILE("quantize_rms_norm");
  check_float_matrix(x_in, "quantize_rms_norm");
  const at::Tensor x = x_in.contiguous(), w = weight.contiguous();
  const std::int64_t n = x.size(0), dim = x.size(1);
  if (w.scalar_type() != at::kFloat || w.numel() != dim)
    throw InvalidArgument(fmt::format("quantize_rms_norm: weight of {} float32 expected (got {} {})", dim,
                                      w.numel(), c10::toString(w.scalar_type())));
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  return quantize_each_row(n, dim, x.options(), into, "quantize_rms_norm", isa,
                           [&](std::int64_t r0, std::int64_t r1, std::int8_t* qp, float* sp) {
    thread_local Scratch<float> buf;  // one float row
    CROSSICL_ISA_CALL(isa, "quantize", quantize_rms_norm_span, xp, wp, dim, static_cast<float>(eps), r0, r1,
                      buf.get(dim), qp, sp);
  });
}

QuantWeight quantize_silu_mul(const at::Tensor& gu, Isa isa) {
  CROSSICL_PROFILE("quantize_silu_mul");
  check_float_matrix(gu, "quantize_silu_mul");
  if (!gu.is_contiguous() || gu.size(1) % 2 != 0)
    throw InvalidArgument(fmt::format("quantize_silu_mul: contiguous [n, 2 * hidden] expected (got [{}, {}])",
                                      gu.size(0), gu.size(1)));
  const std::int64_t n = gu.size(0), h = gu.size(1) / 2;
  const float* gp = gu.data_ptr<float>();
  return quantize_each_row(n, h, gu.options(), nullptr, "quantize_silu_mul", isa,
                           [&](std::int64_t r0, std::int64_t r1, std::int8_t* qp, float* sp) {
    thread_local Scratch<float> buf;  // one float row
    CROSSICL_ISA_CALL(isa, "quantize", quantize_silu_mul_span, gp, h, r0, r1, buf.get(h), qp, sp);
  });
}

at::Tensor silu_int8_path(const at::Tensor& x_in, Isa isa) {
  check_float_matrix(x_in, "silu_int8_path");
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = at::empty_like(x);
  check_isa(isa, "quantize");
  CROSSICL_ISA_CALL(isa, "quantize", silu_span, x.data_ptr<float>(), x.numel(), y.data_ptr<float>());
  return y;
}

void int8_mm_via_float(const at::Tensor& xq, const at::Tensor& w, const at::Tensor& out) {
  CROSSICL_PROFILE("int8_mm_via_float");
  if (xq.dim() != 2 || w.dim() != 2 || xq.scalar_type() != at::kChar || w.scalar_type() != at::kChar ||
      xq.size(1) != w.size(1) || out.scalar_type() != at::kInt || !out.is_contiguous() ||
      out.sizes() != at::IntArrayRef{xq.size(0), w.size(0)})
    throw InvalidArgument(fmt::format("int8_mm_via_float: xq [{}] and w [{}] int8 into out [{}] int32 do not fit",
                                      fmt::join(xq.sizes(), ", "), fmt::join(w.sizes(), ", "),
                                      fmt::join(out.sizes(), ", ")));
  // 1,024 products of magnitude <= 128^2 sum to at most 2^24: every partial sum is an exact float32 integer.
  constexpr std::int64_t kExactK = (std::int64_t{1} << 24) / (128 * 128);
  const std::int64_t k = xq.size(1), m = w.size(0);
  const at::Tensor xf = xq.to(at::kFloat);  // [n, k]: the codes, exact
  // [rows, k] codes of w as float32: [out, in] rows widened a panel of up to 4M at a time into a buffer of the
  // calling thread (ATen's to(kFloat) of a whole weight took ~5 % of an int8 prefill); [in, out] rows (CPUs with
  // VNNI, where this path is not taken in the engine) through ATen whole
  const std::int64_t rows = w.stride(1) == 1 ? std::max<std::int64_t>(1, std::min(m, (std::int64_t{4} << 20) / k)) : m;
  thread_local at::Tensor buf;
  at::Tensor wf;
  if (w.stride(1) != 1) {
    wf = w.to(at::kFloat);
  } else if (!buf.defined() || buf.numel() < rows * k) {
    buf = at::empty({rows * k}, xf.options());
  }
  for (std::int64_t r0 = 0; r0 < m; r0 += rows) {
    const std::int64_t mr = std::min(rows, m - r0);
    at::Tensor panel = wf;  // [mr, k]
    if (w.stride(1) == 1) {
      widen_rows(w, r0, mr, buf.data_ptr<float>());
      panel = buf.narrow(0, 0, mr * k).view({mr, k});
    }
    at::Tensor dst = out.narrow(1, r0, mr);  // [n, mr] int32
    for (std::int64_t k0 = 0; k0 < k; k0 += kExactK) {
      const std::int64_t kk = std::min(kExactK, k - k0);
      const at::Tensor part = at::mm(xf.narrow(1, k0, kk), panel.narrow(1, k0, kk).t());  // [n, mr] exact integers
      if (k0 == 0)
        dst.copy_(part);
      else
        dst.add_(part.to(at::kInt));
    }
  }
}

at::Tensor linear_int8(const at::Tensor& x, const QuantWeight& w, Isa isa) {
  check_float_matrix(x, "linear_int8");
  return linear_int8(quantize_rows(x, isa), w, isa);
}

namespace {

void check_linear_int8(const QuantWeight& xq, const QuantWeight& w) {
  if (xq.q.dim() != 2 || xq.q.size(1) != w.q.size(1))
    throw InvalidArgument(fmt::format("linear_int8: input has {} features, the weight {}", xq.q.size(-1), w.q.size(1)));
}

// Rows from which int8_mm_via_float beats the matrix-vector kernel where at::_int_mm is slow: converting the
// weight to float32 costs about as much as 16-32 rows of the kernel.
constexpr std::int64_t kFloatGemmRows = 32;

// Called by each decode thread with the product and the columns [c0, c1) it has just summed.
using ProductDone = std::function<void(const std::int32_t* acc, std::int64_t c0, std::int64_t c1)>;

// The exact int32 product xq W^T [n, out]: decode steps (n <= kGemvMaxRows) through gemv_int8_into into a buffer of
// the calling thread, each thread then calling done on the columns it summed; larger passes through at::_int_mm
// or, where it is slow (int_mm_is_fast), int8_mm_via_float or gemv_int8_into on kGemvMaxRows rows at a time, held
// in `gemm` (done is not called: the caller makes its own pass).
const std::int32_t* int8_product(const QuantWeight& xq, const QuantWeight& w, const ProductDone& done,
                                 at::Tensor& gemm, Isa isa) {
  const std::int64_t n = xq.q.size(0), m = w.q.size(0);
  if (n >= 1 && n <= kGemvMaxRows) {
    thread_local Scratch<std::int32_t> acc;  // [n, out] (no allocation per step)
    std::int32_t* ap = acc.get(n * m);
    gemv_int8_into(xq.q, w.q, ap,
                   done ? GemvDone([&](std::int64_t c0, std::int64_t c1) { done(ap, c0, c1); }) : GemvDone(), isa);
    return ap;
  }
  if (!xq.q.device().is_cpu()) {
    gemm = at::_int_mm(xq.q, w.q.t());  // [n, out] int32, exact
    return gemm.data_ptr<std::int32_t>();
  }
  // On the CPU into a buffer of the calling thread, kept between calls (grown, never shrunk: at most
  // max_batch_tokens x the widest output, 12 MiB for SmolLM2): a fresh [n, out] tensor per call is fresh memory,
  // and its first touch cost as much as the product (a 1,024-token pass: qkv 1.16 ms in the profiler, of which
  // oneDNN's own timing is 0.61 ms; the gap grows with the output's pages).
  thread_local at::Tensor scratch;
  if (!scratch.defined() || scratch.numel() < n * m)
    scratch = at::empty({n * m}, xq.q.options().dtype(at::kInt));
  gemm = scratch.narrow(0, 0, n * m).view({n, m});
  if (int_mm_is_fast()) {
    at::_int_mm_out(gemm, xq.q, w.q.t());  // [n, out] int32, exact
  } else if (n >= kFloatGemmRows) {
    int8_mm_via_float(xq.q, w.q, gemm);
  } else {
    std::int32_t* gp = gemm.data_ptr<std::int32_t>();
    for (std::int64_t r0 = 0; r0 < n; r0 += kGemvMaxRows)
      gemv_int8_into(xq.q.narrow(0, r0, std::min(kGemvMaxRows, n - r0)), w.q, gp + r0 * m, nullptr, isa);
  }
  return gemm.data_ptr<std::int32_t>();
}

// out (+)= xq W^T rescaled: in decode steps each thread rescales the columns it summed; after a GEMM, one pass.
void linear_int8_out(const QuantWeight& xq, const QuantWeight& w, bool add, float* op, Isa isa) {
  CROSSICL_PROFILE("linear_int8");
  const std::int64_t n = xq.q.size(0), m = w.q.size(0);
  const float* xs = xq.scale.data_ptr<float>();
  const float* ws = w.scale.data_ptr<float>();
  check_isa(isa, "rescale");
  at::Tensor gemm;
  const std::int32_t* ap = int8_product(xq, w, [&](const std::int32_t* acc, std::int64_t c0, std::int64_t c1) {
    CROSSICL_ISA_CALL(isa, "rescale", rescale_cols, acc, xs, ws, m, n, c0, c1, add, op);
  }, gemm, isa);
  if (!gemm.defined()) return;  // rescaled by the decode kernel's threads
  at::parallel_for(0, n, grain(m), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r)
      CROSSICL_ISA_CALL(isa, "rescale", rescale_cols, ap + r * m, xs + r, ws, m, 1, 0, m, add, op + r * m);
  });
}

}  // namespace

QuantWeight linear_int8_silu_mul(const QuantWeight& xq, const QuantWeight& w13, Isa isa, const QuantWeight* into) {
  check_linear_int8(xq, w13);
  if (w13.q.size(0) % 2 != 0)
    throw InvalidArgument(fmt::format("linear_int8_silu_mul: the gate/up weight has {} rows, not 2 * hidden",
                                      w13.q.size(0)));
  CROSSICL_PROFILE("linear_int8_silu_mul");
  const std::int64_t n = xq.q.size(0), h = w13.q.size(0) / 2;
  const float* xs = xq.scale.data_ptr<float>();
  const float* ws = w13.scale.data_ptr<float>();
  check_isa(isa, "quantize");
  // decode steps: each thread rescales the columns it summed into `parts`, the gate's through the SiLU
  thread_local Scratch<float> parts_buf;  // [n, 2h] silu(gate) | up
  float* parts = n <= kGemvMaxRows ? parts_buf.get(n * 2 * h) : nullptr;
  at::Tensor gemm;
  const std::int32_t* ap = int8_product(xq, w13, [&](const std::int32_t* acc, std::int64_t c0, std::int64_t c1) {
    CROSSICL_ISA_CALL(isa, "quantize", silu_rescale_cols, acc, xs, ws, h, n, c0, c1, parts);
  }, gemm, isa);  // [n, 2h]; called back on decode steps only
  return quantize_each_row(n, h, xq.scale.options(), into, "linear_int8_silu_mul", isa,
                           [&](std::int64_t r0, std::int64_t r1, std::int8_t* qp, float* sp) {
                             thread_local Scratch<float> buf;  // one float row
                             if (gemm.defined())  // a larger pass: one pass over the product
                               CROSSICL_ISA_CALL(isa, "quantize", quantize_silu_mul_i32_span, ap, xs, ws, h, r0, r1,
                                                 buf.get(h), qp, sp);
                             else
                               CROSSICL_ISA_CALL(isa, "quantize", quantize_mul_span, parts, h, r0, r1, buf.get(h), qp,
                                                 sp);
                           });
}

at::Tensor linear_int8(const QuantWeight& xq, const QuantWeight& w, Isa isa, const at::Tensor* into) {
  check_linear_int8(xq, w);
  const std::int64_t n = xq.q.size(0), m = w.q.size(0);
  if (into && (into->dim() != 2 || into->size(0) != n || into->size(1) != m || into->scalar_type() != at::kFloat ||
               !into->is_contiguous() || !into->device().is_cpu()))
    throw InvalidArgument(fmt::format("linear_int8: the output buffer {} is not a contiguous [{}, {}] float32 CPU "
                                      "tensor", describe(*into), n, m));
  at::Tensor out = into ? *into : at::empty({n, m}, xq.scale.options());  // [n, out]
  linear_int8_out(xq, w, false, out.data_ptr<float>(), isa);
  return out;
}

void linear_int8_add(const QuantWeight& xq, const QuantWeight& w, at::Tensor& residual, Isa isa) {
  check_linear_int8(xq, w);
  check_float_matrix(residual, "linear_int8_add");
  if (!residual.is_contiguous() || residual.size(0) != xq.q.size(0) || residual.size(1) != w.q.size(0))
    throw InvalidArgument(fmt::format("linear_int8_add: residual [{}, {}] is not a contiguous [{}, {}]",
                                      residual.size(0), residual.size(1), xq.q.size(0), w.q.size(0)));
  linear_int8_out(xq, w, true, residual.data_ptr<float>(), isa);
}

at::Tensor embedding_int8(const QuantWeight& table, const at::Tensor& ids) {
  return table.q.index_select(0, ids).to(at::kFloat) * table.scale.index_select(0, ids).unsqueeze(1);
}

}  // namespace crossicl::detail
