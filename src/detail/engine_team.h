// The intra-op threads held for a whole decode step. A decode step of a small model is ~120 products of a few rows
// against a weight matrix, each a parallel region of its own, and between them the calling thread works alone
// (norms, RoPE, the cache, quantisations) while the others wait: 8 % of a bfloat16 step and 17 % of an int8 one
// on the 2-vCPU AMD EPYC (benchmarks/thread_split.py), time in which nothing streams weights, so the step falls
// short of the bandwidth bound by as much. Team::run holds one parallel region for the step: its body runs on the
// calling thread, and the kernels' parallel loops (parallel_for below, gemv's row shares) go to the waiting threads
// as jobs. A job may name the weights of the product after it; a thread that has done its part streams the start
// of its share of them into its cache while it waits, so the bus stays busy while the calling thread works alone.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>

#include <ATen/Parallel.h>

namespace crossicl::detail {

class Team {
 public:
  /// Runs body() on this thread with the other intra-op threads held as a team for its parallel loops; inline when
  /// there is one thread, inside a parallel region, or inside another team. An exception from body() (or from a
  /// job on any thread) is rethrown here once every thread has left.
  static void run(const std::function<void()>& body);

  /// The team whose body runs on this thread, or null.
  static Team* current();

  /// Threads in the team, this one included (>= 1).
  int size() const { return size_; }

  /// fn(t) on every thread of the team (t in [0, size()), this thread as 0); returns when every call has returned.
  /// After its call a thread streams up to a budget of the weights set_next named (the part a thread t of size()
  /// would take first: from next_bytes * t / size()) into its cache until the next job comes.
  void each(const std::function<void(int)>& fn);

  /// The weights of the product after the coming one, for the next each() (a product's caller knows its successor
  /// where the kernel does not).
  void set_next(const void* next, std::int64_t next_bytes) {
    next_ = next;
    next_bytes_ = next_bytes;
  }

 private:
  struct State;
  explicit Team(State* s, int size) : state_(s), size_(size) {}
  State* state_;
  int size_;
  const void* next_ = nullptr;
  std::int64_t next_bytes_ = 0;
};

/// at::parallel_for's contract (f(b, e) over [begin, end) in chunks of at least `grain`), on the current team's
/// threads when there is one.
template <class F>
void parallel_for(std::int64_t begin, std::int64_t end, std::int64_t grain, const F& f) {
  Team* team = Team::current();
  if (!team) {
    at::parallel_for(begin, end, grain, f);
    return;
  }
  const std::int64_t n = end - begin, g = std::max<std::int64_t>(1, grain);
  if (n <= 0) return;
  const std::int64_t parts = std::min<std::int64_t>(team->size(), (n + g - 1) / g);
  if (n <= g || parts <= 1) {
    f(begin, end);
    return;
  }
  const std::int64_t chunk = (n + parts - 1) / parts;
  team->each([&](int t) {
    const std::int64_t b = begin + t * chunk;
    if (b < end) f(b, std::min(end, b + chunk));
  });
}

}  // namespace crossicl::detail
