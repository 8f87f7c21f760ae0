// The pinned maps' names as C++ identifiers (map::zm_dests is "zm_dests"), from the one list
// in bpf/zmesh_maps.h: a name not on it does not compile here, and tests/bpf checks that the
// programs pin exactly the maps on it.
#pragma once

#include "zmesh_maps.h"

namespace zmesh::datapath::map {

#define ZM_MAP_NAME(name) inline constexpr const char name[] = #name;
ZM_PINNED_MAPS(ZM_MAP_NAME)
#undef ZM_MAP_NAME

inline constexpr const char* kAll[] = {
#define ZM_MAP_NAME_ENTRY(name) name,
    ZM_PINNED_MAPS(ZM_MAP_NAME_ENTRY)
#undef ZM_MAP_NAME_ENTRY
};

}  // namespace zmesh::datapath::map
