// Pinned map layouts (see layout.h).
#include "layout.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <unistd.h>


#include "fd.h"
#include "zmesh/datapath_error.h"

namespace zmesh::datapath {
namespace fs = std::filesystem;
namespace {

struct BtfFree {
  void operator()(btf* b) const { btf__free(b); }
};

// A type as BTF has it, names of members and their bit offsets included, qualifiers and
// typedefs looked through; bounded, since a type graph from the kernel is not ours.
std::string describe(const btf* b, uint32_t id, int depth = 0) {
  if (!b || id == 0) return "void";
  if (depth > 8) return "...";
  const btf_type* t = btf__type_by_id(b, id);
  if (!t) return "?";
  switch (btf_kind(t)) {
    case BTF_KIND_INT: return "int" + std::to_string(t->size * 8);
    case BTF_KIND_ENUM: return "enum" + std::to_string(t->size * 8);
    case BTF_KIND_PTR: return "ptr";
    case BTF_KIND_TYPEDEF:
    case BTF_KIND_VOLATILE:
    case BTF_KIND_CONST:
    case BTF_KIND_RESTRICT: return describe(b, t->type, depth);
    case BTF_KIND_ARRAY: {
      const struct btf_array* a = btf_array(t);
      return "[" + std::to_string(a->nelems) + "]" + describe(b, a->type, depth + 1);
    }
    case BTF_KIND_STRUCT:
    case BTF_KIND_UNION: {
      std::string out = btf_kind(t) == BTF_KIND_STRUCT ? "{" : "union{";
      const btf_member* m = btf_members(t);
      for (int i = 0; i < btf_vlen(t); ++i, ++m) {
        const char* name = btf__name_by_offset(b, m->name_off);
        out += std::string(name ? name : "") + "@" + std::to_string(btf_member_bit_offset(t, static_cast<uint32_t>(i))) +
               ":" + describe(b, m->type, depth + 1) + ";";
      }
      return out + "}";
    }
    default: return "kind" + std::to_string(btf_kind(t));
  }
}

// What the kernel keeps of every map, then (for maps the kernel holds BTF for: not the
// sockhash, which libbpf creates without) its key and value types.
std::string layout(uint32_t type, uint32_t key_size, uint32_t value_size, uint32_t max_entries, uint32_t flags) {
  return "type=" + std::to_string(type) + " key=" + std::to_string(key_size) + " value=" + std::to_string(value_size) +
         " max=" + std::to_string(max_entries) + " flags=" + std::to_string(flags);
}
std::string types(const btf* b, uint32_t key_id, uint32_t value_id) {
  return " key_type=" + describe(b, key_id) + " value_type=" + describe(b, value_id);
}

}  // namespace

MapLayout declared_layout(const bpf_object* object, const bpf_map* map) {
  return {layout(bpf_map__type(map), bpf_map__key_size(map), bpf_map__value_size(map), bpf_map__max_entries(map),
                 bpf_map__map_flags(map)),
          types(bpf_object__btf(object), bpf_map__btf_key_type_id(map), bpf_map__btf_value_type_id(map))};
}

std::optional<MapLayout> pinned_layout(const fs::path& pin) {
  UniqueFd fd(bpf_obj_get(pin.c_str()));
  if (!fd) return std::nullopt;
  bpf_map_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0)
    throw DatapathError("read the layout of pinned map " + pin.string(), errno);
  MapLayout out{layout(info.type, info.key_size, info.value_size, info.max_entries, info.map_flags), ""};
  if (info.btf_id && info.btf_value_type_id) {
    // The kernel hands out a map's BTF only to CAP_SYS_ADMIN; without it every pinned map would
    // look changed and be replaced on each restart.
    std::unique_ptr<btf, BtfFree> b(btf__load_from_kernel_by_id(info.btf_id));
    if (!b) throw DatapathError("read the types (BTF) of pinned map " + pin.string() + ", to tell whether its layout changed", errno);
    out.types = types(b.get(), info.btf_key_type_id, info.btf_value_type_id);
  }
  return out;
}

bool MapLayout::same_as_pinned(const MapLayout& pinned) const {
  return kernel == pinned.kernel && (pinned.types.empty() || types == pinned.types);
}

std::vector<LayoutChange> set_aside_changed_maps(const bpf_object* object, const fs::path& root) {
  std::vector<LayoutChange> changed;
  const bpf_map* map = nullptr;
  bpf_object__for_each_map(map, object) {
    if (!bpf_map__pin_path(map)) continue;  // not pinned: private to the object (rodata)
    const fs::path pin = bpf_map__pin_path(map);
    const auto pinned = pinned_layout(pin);
    if (!pinned) continue;
    const MapLayout declared = declared_layout(object, map);
    if (declared.same_as_pinned(*pinned)) continue;
    std::error_code ec;
    fs::create_directories(root / "old", ec);
    fs::remove(root / "old" / pin.filename(), ec);  // from an upgrade that did not finish
    if (::rename(pin.c_str(), (root / "old" / pin.filename()).c_str()) != 0)
      throw DatapathError("set aside pinned map " + pin.string() + " (it has another layout)", errno);
    changed.push_back({bpf_map__name(map), pinned->text(), declared.text()});
  }
  return changed;
}

void drop_set_aside_maps(const fs::path& root) {
  std::error_code ec;
  fs::remove_all(root / "old", ec);
}

}  // namespace zmesh::datapath
