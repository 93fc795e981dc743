// No include guard: included once per kernel translation unit, after CROSSICL_ISA_BODY is defined
// (see detail/isa.h). CROSSICL_ISA_LEVEL (0 baseline, 1 avx2, 2 avx512) lets a body use a path's intrinsics: GCC
// does not define __AVX2__ and the like inside `#pragma GCC target` regions.
#include "detail/isa.h"

#define CROSSICL_ISA_NS baseline
#define CROSSICL_ISA_LEVEL 0
#include CROSSICL_ISA_BODY
#undef CROSSICL_ISA_LEVEL
#undef CROSSICL_ISA_NS

#if CROSSICL_MULTI_ISA
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define CROSSICL_ISA_NS avx2
#define CROSSICL_ISA_LEVEL 1
#include CROSSICL_ISA_BODY
#undef CROSSICL_ISA_LEVEL
#undef CROSSICL_ISA_NS
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")
#define CROSSICL_ISA_NS avx512
#define CROSSICL_ISA_LEVEL 2
#include CROSSICL_ISA_BODY
#undef CROSSICL_ISA_LEVEL
#undef CROSSICL_ISA_NS
#pragma GCC pop_options
#endif
