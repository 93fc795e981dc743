// No include guard: included once per kernel translation unit, after CROSSICL_ISA_BODY is defined
// (see detail/isa.h).
#include "detail/isa.h"

#define CROSSICL_ISA_NS baseline
#include CROSSICL_ISA_BODY
#undef CROSSICL_ISA_NS

#if CROSSICL_MULTI_ISA
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define CROSSICL_ISA_NS avx2
#include CROSSICL_ISA_BODY
#undef CROSSICL_ISA_NS
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")
#define CROSSICL_ISA_NS avx512
#include CROSSICL_ISA_BODY
#undef CROSSICL_ISA_NS
#pragma GCC pop_options
#endif
