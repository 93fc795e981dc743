#include "crossicl/core/isa.h"

#include <array>
#include <cstdlib>
#include <optional>
#include <string_view>

#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/enum_names.h"
#include "detail/isa.h"

namespace crossicl {

namespace {

// Names of Isa's values, in their order.
constexpr std::array<std::string_view, 3> kIsaNames = {"baseline", "avx2", "avx512"};

std::string isa_names() { return detail::name_list(kIsaNames, "", ", ", " or "); }  // "baseline, avx2 or avx512"

}  // namespace

const char* isa_name(Isa isa) { return detail::enum_name(kIsaNames, isa).data(); }  // names are literals

Isa isa_from_name(const std::string& name) {
  if (auto isa = detail::enum_from_name<Isa>(kIsaNames, name)) return *isa;
  throw InvalidArgument(fmt::format("unknown instruction-set path '{}' (expected {})", name, isa_names()));
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
  static const std::optional<Isa> chosen =
      env.empty() ? std::optional<Isa>(cpu_isa()) : detail::enum_from_name<Isa>(kIsaNames, env);
  if (!chosen)
    throw InvalidArgument(fmt::format("CROSSICL_ISA='{}' is not a kernel path (expected {})", env, isa_names()));
  check_isa(*chosen, "CROSSICL_ISA");
  return *chosen;
}

}  // namespace crossicl
