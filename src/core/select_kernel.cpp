#include "detail/select_kernel.h"

#define CROSSICL_ISA_BODY "core/select_tile.inc"
#include "detail/isa_instances.h"

namespace crossicl::detail {

TileDotFn tile_dot_for(Isa isa) { return CROSSICL_ISA_CALL(isa, "cosine scoring", tile_dot_fn); }

}  // namespace crossicl::detail
