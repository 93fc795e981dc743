// torch.profiler scopes over crossicl's own kernels. ATen ops show in the profiler through the dispatcher, but a
// hand-written loop (RMSNorm, RoPE, the matrix-vector products, int8 quantisation) is no ATen op, so without a
// scope its time is unattributed. A scope costs a flag test when no profiler runs.
//
//   at::Tensor gemv(...) { CROSSICL_PROFILE("gemv"); ... }   // shows as "crossicl::gemv"
#pragma once

#include <ATen/record_function.h>

#define CROSSICL_PROFILE(name) RECORD_USER_SCOPE("crossicl::" name)
