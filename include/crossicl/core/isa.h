// Instruction-set paths of crossicl's hot CPU kernels (cosine top-k scoring, the engine's RMSNorm, RoPE, SiLU-gate
// and short-query attention). Installed builds target plain x86-64; each hot kernel is compiled again for
// AVX2+FMA and for AVX-512, and the path is chosen at run time from cpuid. The environment variable
// CROSSICL_ISA (baseline, avx2, avx512) forces a lower path, e.g. to compare paths or rule one out.
//
// Every path gives the same bits: the kernels are compiled without multiply-add contraction and sum in the order
// written, so the wider vectors change the speed, not the rounding.
#pragma once

#include <string>
#include <vector>

namespace crossicl {

/// A kernel path, lowest first.
enum class Isa : int {
  baseline = 0,  // x86-64 (SSE2); the only path on other architectures and compilers
  avx2 = 1,      // AVX2 + FMA
  avx512 = 2,    // AVX-512 F, BW, VL and DQ (with AVX2 + FMA)
};

/// "baseline", "avx2" or "avx512".
const char* isa_name(Isa isa);

/// Parses a name of isa_name; throws InvalidArgument listing the accepted names.
Isa isa_from_name(const std::string& name);

/// The best path this CPU and this build support.
Isa cpu_isa();

/// The paths this CPU and this build support, lowest first.
std::vector<Isa> supported_isas();

/// The path the kernels take: CROSSICL_ISA when set (read once, on first use), else cpu_isa(). Throws
/// InvalidArgument when CROSSICL_ISA names an unknown path or one this CPU lacks.
Isa active_isa();

/// Throws InvalidArgument unless this CPU and build support `isa` (`what` names the caller in the message).
void check_isa(Isa isa, const char* what);

}  // namespace crossicl
