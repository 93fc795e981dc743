#include "detail/engine_gemv.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <type_traits>
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
#include "detail/engine_scratch.h"
#include "detail/engine_team.h"

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

// Chunks per thread of a product's rows in parallel_rows: a thread's share is decided to within one chunk.
constexpr std::int64_t kChunksPerThread = 16;

// fn(o0, o1) over the rows [0, rows), a contiguous share per thread, which it runs from its front in chunks of
// whole 4-row blocks (at least row_grain(row_bytes) rows each); a thread that is done takes chunks from the back of
// the others' shares. So each thread streams one run of rows, as a fixed split does, and a slower thread hands its
// last chunks to a faster one. With a fixed half per thread the vCPUs of a 2-vCPU AMD EPYC VM streamed their halves
// at speeds up to 12 % apart, and one thread or the other waited at the join for 6-10 % of a bfloat16 decode step;
// with the shares, 2-3 % (perf, SmolLM2-135M). Inside a decode step's team (detail/engine_team.h) the team's
// threads take the shares, thread t share t as at::parallel_for would give it.
template <class F>
void parallel_rows(std::int64_t rows, std::int64_t row_bytes, const F& fn) {
  Team* team = Team::current();
  const std::int64_t threads =
      team ? team->size() : at::in_parallel_region() ? 1 : std::max(1, at::get_num_threads());
  const std::int64_t even = (rows + threads * kChunksPerThread - 1) / (threads * kChunksPerThread);
  const std::int64_t chunk = (std::max(row_grain(row_bytes), even) + 3) / 4 * 4;
  const std::int64_t chunks = (rows + chunk - 1) / chunk;
  const std::int64_t parts = std::min(threads, chunks);
  if (parts == 1) {
    fn(0, rows);
    return;
  }
  // share t: chunks [front, back) packed as front << 32 | back, claimed by compare-and-swap; a cache line each, so
  // that a thread's claims on its own share stay in its cache
  struct alignas(64) Share {
    std::atomic<std::uint64_t> v;
  };
  std::vector<Share> share(static_cast<std::size_t>(parts));
  for (std::int64_t t = 0; t < parts; ++t)
    share[t].v.store(static_cast<std::uint64_t>(chunks * t / parts) << 32 |
                         static_cast<std::uint64_t>(chunks * (t + 1) / parts),
                     std::memory_order_relaxed);
  auto claim = [&](std::int64_t t, bool front) -> std::int64_t {  // a chunk of share t, or -1 when it is empty
    std::uint64_t v = share[t].v.load(std::memory_order_relaxed);
    for (;;) {
      const std::uint64_t f = v >> 32, b = v & 0xFFFFFFFFu;
      if (f >= b) return -1;
      const std::uint64_t next = front ? (f + 1) << 32 | b : f << 32 | (b - 1);
      if (share[t].v.compare_exchange_weak(v, next, std::memory_order_relaxed))
        return static_cast<std::int64_t>(front ? f : b - 1);
    }
  };
  auto work = [&](std::int64_t t) {  // own share from the front, then the others' from the back
    for (std::int64_t k = 0; k < parts; ++k) {
      const std::int64_t owner = (t + k) % parts;
      for (std::int64_t c; (c = claim(owner, k == 0 && t < parts)) >= 0;)
        fn(c * chunk, std::min(rows, (c + 1) * chunk));
    }
  };
  if (team) {
    team->each([&](int t) { work(t); });
    return;
  }
  at::parallel_for(0, parts, 1, [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t) work(t);
  });
}

}  // namespace

bool gemv_applies(const at::Tensor& x, const at::Tensor& w) {
  return x.device().is_cpu() && w.device().is_cpu() && x.dim() == 2 && w.dim() == 2 && x.size(0) >= 1 &&
         x.size(0) <= kGemvMaxRows && x.scalar_type() == w.scalar_type() &&
         (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16) && w.stride(1) == 1 &&
         w.size(1) == x.size(1) && w.stride(0) >= w.size(1);
}

namespace {

// Where each thread stores its rows of a product: dst's first element and row stride, as the float32 or bfloat16
// (bits) pointer of its dtype, taken once per call (data_ptr checks the dtype each time: per chunk it was 0.6 % of a
// bfloat16 decode step).
struct Dst {
  float* f32 = nullptr;
  std::uint16_t* bf16 = nullptr;
  std::int64_t ld = 0;
  explicit Dst(const at::Tensor& dst) : ld(dst.stride(0)) {
    if (dst.scalar_type() == at::kFloat)
      f32 = dst.data_ptr<float>();
    else
      bf16 = reinterpret_cast<std::uint16_t*>(dst.data_ptr<at::BFloat16>());
  }
};

// dst[r, o0:o1] (+)= y[r, o0:o1] for the n rows, in dst's dtype (store_sums_f32 and store_sums_bf16 of
// gemv_body.inc): float32 as is, bfloat16 rounded to nearest even (as y.to(at::kBFloat16)); `add` rounds dst + y
// once, as dst.add_(y.to(dst's dtype)) does.
void store_rows(Isa isa, const float* y, std::int64_t n, std::int64_t out, std::int64_t o0, std::int64_t o1,
                const Dst& dst, bool add) {
  const int m = static_cast<int>(n);
  if (dst.f32)
    CROSSICL_ISA_CALL(isa, "gemv", store_sums_f32, y, m, out, o0, o1, dst.f32, dst.ld, add);
  else
    CROSSICL_ISA_CALL(isa, "gemv", store_sums_bf16, y, m, out, o0, o1, dst.bf16, dst.ld, add);
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
  const Dst d(dst);
  thread_local Scratch<float> sums;  // [n, out] float32 sums
  float* yp = sums.get(n * out);
  const int m = static_cast<int>(n);
  if (w.scalar_type() == at::kFloat) {
    const at::Tensor x = x_in.contiguous();  // [n, in]
    const float* xp = x.data_ptr<float>();
    const float* wp = w.data_ptr<float>();
    parallel_rows(out, in * 4, [&](std::int64_t o0, std::int64_t o1) {
      CROSSICL_ISA_CALL(isa, "gemv", gemv_rows_f32, wp, ld, in, xp, m, o0, o1, yp, out);
      store_rows(isa, yp, n, out, o0, o1, d, add);
    });
    return;
  }
  // bfloat16: x to float32 (exact) with each whole group of 32 inputs as its even elements then its odd ones (the
  // kernel's pair order), in one pass over at most 4 rows
  thread_local Scratch<float> xr;  // [n, in] float32
  float* rp = xr.get(n * in);
  const at::BFloat16* xb = x_in.data_ptr<at::BFloat16>();
  const std::int64_t s0 = x_in.stride(0), s1 = x_in.stride(1);
  for (std::int64_t r = 0; r < n; ++r) {
    const at::BFloat16* xs = xb + r * s0;
    float* o = rp + r * in;
    std::int64_t i = 0;
    for (; i + 32 <= in; i += 32)
      for (std::int64_t j = 0; j < 16; ++j) {
        o[i + j] = static_cast<float>(xs[(i + 2 * j) * s1]);
        o[i + 16 + j] = static_cast<float>(xs[(i + 2 * j + 1) * s1]);
      }
    for (; i < in; ++i) o[i] = static_cast<float>(xs[i * s1]);
  }
  const auto* wp = reinterpret_cast<const std::uint16_t*>(w.data_ptr<at::BFloat16>());
  parallel_rows(out, in * 2, [&](std::int64_t o0, std::int64_t o1) {
    CROSSICL_ISA_CALL(isa, "gemv", gemv_rows_bf16, wp, ld, in, rp, m, o0, o1, yp, out);
    store_rows(isa, yp, n, out, o0, o1, d, add);
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
    thread_local Scratch<std::int16_t> x16;  // [n, in]
    std::int16_t* x16p = x16.get(n * in);
    std::copy(xp, xp + n * in, x16p);
    parallel_rows(out, in, [&](std::int64_t o0, std::int64_t o1) {
      CROSSICL_ISA_CALL(isa, "gemv", gemv_rows_i8, wp, w.stride(0), in, x16p, m, o0, o1, yp, out);
      if (done) done(o0, o1);
    });
    return;
  }
  // [in, out] rows (w is their transposed view): the threads split the outputs in blocks of whole cache lines,
  // each block summed in registers while the input rows stream past a few at a time.
  const std::int64_t ld = w.stride(1);
  const std::int64_t blocks = (out + kColBlock - 1) / kColBlock;
  detail::parallel_for(0, blocks, std::max<std::int64_t>(1, row_grain(in * kColBlock) / kColBlock),
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
