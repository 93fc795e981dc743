#include "crossicl/core/isa.h"

#include <cstdlib>
#include <mutex>

#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/isa.h"

namespace crossicl {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    case Isa::baseline: break;
  }
  return "baseline";
}

Isa isa_from_name(const std::string& name) {
  for (Isa isa : {Isa::baseline, Isa::avx2, Isa::avx512})
    if (name == isa_name(isa)) return isa;
  throw InvalidArgument(fmt::format("unknown instruction-set path '{}' (expected baseline, avx2 or avx512)", name));
}

Isa cpu_isa() {
  // Read once: every kernel call checks its path against it.
  static const Isa best = [] {
#if CROSSICL_MULTI_ISA
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      return Isa::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#endif
    return Isa::baseline;
  }();
  return best;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (int i = 0; i <= static_cast<int>(cpu_isa()); ++i) out.push_back(static_cast<Isa>(i));
  return out;
}

void check_isa(Isa isa, const char* what) {
  if (static_cast<int>(isa) > static_cast<int>(cpu_isa()))
    throw InvalidArgument(fmt::format("{}: the {} kernel path needs a CPU feature this machine or build lacks "
                                      "(best available: {})", what, isa_name(isa), isa_name(cpu_isa())));
}

Isa active_isa() {
  // Parsed once; a bad value is reported on every call rather than silently replaced.
  static const std::string env = [] {
    const char* v = std::getenv("CROSSICL_ISA");
    return std::string(v ? v : "");
  }();
  static const Isa chosen = [] {
    if (env.empty()) return cpu_isa();
    try {
      return isa_from_name(env);
    } catch (const InvalidArgument&) {
      return static_cast<Isa>(-1);
    }
  }();
  if (static_cast<int>(chosen) < 0)
    throw InvalidArgument(fmt::format("CROSSICL_ISA='{}' is not a kernel path (expected baseline, avx2 or avx512)", env));
  check_isa(chosen, "CROSSICL_ISA");
  return chosen;
}

}  // namespace crossicl
