#include "detail/engine_team.h"

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <thread>
#include <vector>

#include <ATen/Config.h>
#include <ATen/Parallel.h>
#if defined(__x86_64__)
#include <immintrin.h>  // _mm_pause
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

namespace crossicl::detail {
namespace {

thread_local Team* tls_team = nullptr;

// Bytes of the next product's weights a waiting thread streams towards its core: about a core's L2 (512 KB on Zen 3,
// 1-2 MB on recent Intel cores). On the 2-vCPU AMD EPYC, decode steps of SmolLM2-135M against no streaming (paired
// interleaved runs, medians): 256 KB +7 % bfloat16 / +1 % int8, 1 MB +7 % / +4 %, 4 MB +5 % / +4 %.
constexpr std::int64_t kStreamBudget = 1 << 20;
// Bytes streamed between looks at whether a job has come.
constexpr std::int64_t kStreamStep = 4 << 10;
// Spins of a waiting thread before it yields its core at each look: 4K pauses are 0.1-0.5 ms, where a decode
// step's gaps are tens of microseconds; a thread that waits longer (more threads than cores: several engines
// decoding at once) leaves the core to the others.
constexpr int kSpinsBeforeYield = 1 << 12;

void relax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

// Spins until done() holds, yielding the core after kSpinsBeforeYield looks (more threads than cores).
template <class P>
void wait_until(const P& done) {
  for (int spins = 0; !done();)
    if (++spins < kSpinsBeforeYield)
      relax();
    else
      std::this_thread::yield();
}

// One load per cache line of [p, p + bytes), summed so that the loads are not dropped. Not inlined, so that a
// profile tells streaming from waiting (benchmarks/thread_split.py).
__attribute__((noinline)) std::uint64_t stream(const char* p, std::int64_t bytes) {
  std::uint64_t sum = 0;
  for (std::int64_t i = 0; i < bytes; i += 64) sum += *reinterpret_cast<const volatile std::uint8_t*>(p + i);
  return sum;
}

}  // namespace

struct Team::State {
  struct alignas(64) Done {
    std::atomic<std::uint64_t> job{0};  // the last job this thread returned from
  };
  alignas(64) std::atomic<std::uint64_t> job{0};  // the latest job's number (0: none yet)
  const std::function<void(int)>* fn = nullptr;   // the latest job; rewritten only when every thread is done with it
  const char* next = nullptr;                     // its successor's weights, to stream while waiting
  std::int64_t next_bytes = 0;
  alignas(64) std::atomic<bool> ready{false};     // size and done are set: threads may serve
  std::atomic<bool> stop{false};                  // the body has returned: threads leave
  std::unique_ptr<Done[]> done;                   // [size]
  std::atomic<bool> failed{false};
  std::exception_ptr error;  // the first exception of a job or of the body not yet rethrown
  int size = 1;

  void fail() {
    if (!failed.exchange(true)) error = std::current_exception();
  }

  // Thread t (>= 1) of the team until the body returns: each job once, then its successor's weights streamed.
  void serve(int t) {
    std::uint64_t seen = 0;
    const char* p = nullptr;  // where streaming goes on
    std::int64_t left = 0;    // bytes still to stream
    std::uint64_t sink = 0;
    int spins = 0;
    for (;;) {
      const std::uint64_t j = job.load(std::memory_order_acquire);
      if (j != seen) {
        try {
          (*fn)(t);
        } catch (...) {
          fail();
        }
        left = 0;
        if (next && next_bytes > 0) {  // read before the job is marked done, after which it may be rewritten
          const std::int64_t from = next_bytes * t / size / 64 * 64;
          p = next + from;
          left = std::min(kStreamBudget, next_bytes - from);
        }
        seen = j;
        spins = 0;
        done[t].job.store(j, std::memory_order_release);
        continue;
      }
      if (stop.load(std::memory_order_acquire)) break;
      if (left > 0) {
        const std::int64_t step = std::min(kStreamStep, left);
        sink += stream(p, step);
        p += step;
        left -= step;
        continue;
      }
      if (++spins < kSpinsBeforeYield)
        relax();
      else
        std::this_thread::yield();
    }
    static std::atomic<std::uint64_t> keep{0};  // the streamed bytes' sum, so that no load is optimised away
    keep.fetch_add(sink, std::memory_order_relaxed);
  }
};

Team* Team::current() { return tls_team; }

void Team::run(const std::function<void()>& body) {
#if AT_PARALLEL_OPENMP && defined(_OPENMP)
  const std::int64_t threads = at::get_num_threads();
  if (threads < 2 || at::in_parallel_region() || tls_team) {
    body();
    return;
  }
  State s;
  Team team(&s, 1);
  // at::parallel_for(0, threads, 1) gives OpenMP thread i the index i * chunk, chunk = ceil(threads / M) for the
  // region's M threads: those with an index below `threads` take part, all at once.
  at::parallel_for(0, threads, 1, [&](std::int64_t b, std::int64_t) {
    const std::int64_t m = std::max<std::int64_t>(1, std::min<std::int64_t>(omp_get_num_threads(), threads));
    const std::int64_t chunk = (threads + m - 1) / m;
    const int t = static_cast<int>(b / chunk);
    if (t != 0) {
      wait_until([&] { return s.ready.load(std::memory_order_acquire); });
      s.serve(t);
      return;
    }
    s.size = team.size_ = static_cast<int>((threads + chunk - 1) / chunk);
    s.done.reset(new State::Done[static_cast<std::size_t>(s.size)]);
    s.ready.store(true, std::memory_order_release);
    tls_team = &team;
    try {
      body();
    } catch (...) {
      s.fail();
    }
    tls_team = nullptr;
    s.stop.store(true, std::memory_order_release);
  });
  if (s.error) std::rethrow_exception(s.error);
#else
  body();
#endif
}

void Team::each(const std::function<void(int)>& fn) {
  State& s = *state_;
  s.fn = &fn;
  s.next = static_cast<const char*>(next_);
  s.next_bytes = next_bytes_;
  next_ = nullptr;
  next_bytes_ = 0;
  const std::uint64_t j = s.job.load(std::memory_order_relaxed) + 1;
  s.job.store(j, std::memory_order_release);
  std::exception_ptr mine;
  try {
    fn(0);
  } catch (...) {
    mine = std::current_exception();
  }
  for (int t = 1; t < s.size; ++t)  // fn stays alive until every thread has returned from it
    wait_until([&] { return s.done[t].job.load(std::memory_order_acquire) == j; });
  if (mine) std::rethrow_exception(mine);
  if (s.failed.load(std::memory_order_relaxed)) {  // a thread's exception, once
    std::exception_ptr e = s.error;
    s.error = nullptr;
    s.failed.store(false, std::memory_order_relaxed);
    std::rethrow_exception(e);
  }
}

}  // namespace crossicl::detail
