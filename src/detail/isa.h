// Compiling a kernel body once per instruction-set path. A translation unit includes its headers, defines
// CROSSICL_ISA_BODY as the quoted name of a file whose definitions use the namespace name CROSSICL_ISA_NS, and
// includes detail/isa_instances.h: the body is then compiled as namespace `baseline` with the file's flags and,
// with GCC on x86-64, as `avx2` and `avx512` inside `#pragma GCC target` regions. The pragmas apply only to the
// body's own functions (templates and lambdas included), never to inline functions of headers included before,
// so no out-of-line copy of a shared inline function is compiled with instructions the CPU may lack.
// isa_call picks the namespace for a path at run time.
#pragma once

#include "crossicl/core/isa.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CROSSICL_MULTI_ISA 1
#else
#define CROSSICL_MULTI_ISA 0
#endif

#if CROSSICL_MULTI_ISA
/// Calls ns::fn(args...) for the namespace of `isa` (avx512, avx2 or baseline); checks the CPU supports it.
#define CROSSICL_ISA_CALL(isa, what, fn, ...)                                                       \
  (::crossicl::check_isa((isa), (what)),                                                           \
   (isa) == ::crossicl::Isa::avx512 ? avx512::fn(__VA_ARGS__)                                     \
   : (isa) == ::crossicl::Isa::avx2 ? avx2::fn(__VA_ARGS__)                                       \
                                    : baseline::fn(__VA_ARGS__))
#else
#define CROSSICL_ISA_CALL(isa, what, fn, ...) (::crossicl::check_isa((isa), (what)), baseline::fn(__VA_ARGS__))
#endif
