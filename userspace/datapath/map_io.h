// Reading and writing the pinned maps by fd, with errors that name the map and the entry.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "fd.h"

namespace zmesh::datapath {

// Throws DatapathError naming the path when the map is not pinned there.
UniqueFd open_pinned_map(const std::filesystem::path& pin_root, const char* name);
// Keys of a map, as raw bytes.
std::vector<std::string> map_keys(int fd, size_t key_size);
// A map's capacity as the kernel has it (max_entries, from bpf/zmesh_maps.h).
uint32_t capacity_of(int fd);
// Inserts or replaces one entry. Throws DatapathError with `what` and `map`, and the
// capacity when the map is full.
void update(int fd, const void* key, const void* value, const char* map, const std::string& what);
// Removes every entry whose key (as map_keys() gives it) `keep` refuses.
void delete_unless(int fd, size_t key_size, const std::function<bool(const std::string& key)>& keep);

inline std::string bytes_of(const void* data, size_t size) { return {static_cast<const char*>(data), size}; }

}  // namespace zmesh::datapath
