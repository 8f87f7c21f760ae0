// The pinned maps' layout and how a new zmeshd takes over maps pinned by one of another
// layout (docs/datapath.md, "Upgrades").
//
// A map's layout is what the kernel knows of it: type, key and value sizes, capacity, flags,
// and its key and value types as BTF describes them, field by field (a field moved or renamed
// keeps the size but not the meaning). A pinned map whose layout differs from this build's is
// set aside (its pin moves to <root>/old/) before this build's programs are loaded, so libbpf
// creates and pins a fresh one instead of refusing to start. The previous daemon's programs
// keep running with the maps they hold until this daemon, having filled its new maps from its
// config, swaps its programs into the pinned links; then the set-aside pins are removed.
#pragma once

#include <bpf/libbpf.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace zmesh::datapath {

struct MapLayout {
  std::string kernel;  // type, sizes, capacity, flags
  std::string types;   // key and value as BTF describes them; empty for a pinned map without BTF
  std::string text() const { return kernel + types; }
  // A pinned map without BTF (libbpf creates the sockhash without) compares by the rest.
  bool same_as_pinned(const MapLayout& pinned) const;
};
// The layout of `object`'s `map` as this build declares it.
MapLayout declared_layout(const bpf_object* object, const bpf_map* map);
// The layout of the map pinned at `pin`; nullopt when there is none.
std::optional<MapLayout> pinned_layout(const std::filesystem::path& pin);

// Sets aside, under root/old/, the pins of `object`'s pinned maps whose layout differs from
// the declared one. Returns their names (with both layouts, for the log).
struct LayoutChange {
  std::string map, pinned, declared;
};
std::vector<LayoutChange> set_aside_changed_maps(const bpf_object* object, const std::filesystem::path& root);
// Removes root/old/ (maps still held by running programs live on until those let go).
void drop_set_aside_maps(const std::filesystem::path& root);

}  // namespace zmesh::datapath
