// A hash map that is cheap to copy and to change one entry of: the mesh state of a large
// cluster (50,000 workloads) is republished per xDS change, and a change of one workload must
// not copy the other 49,999. Entries live in a fixed number of shards, each a sorted vector
// held by shared_ptr; a copy of the map shares every shard, and a write clones only the shard
// it touches (and the shard table, once per copy). A shard (or table) that only this map holds
// is written in place, so filling a fresh map costs what filling a vector does.
//
// Not thread-safe for writes; a map that is no longer written (a published snapshot's) may be
// read from any thread, and copies of it written by another.
#pragma once

#include <algorithm>
#include <array>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

namespace zmesh {

template <typename K, typename V, typename Hash = std::hash<K>>
class SharedMap {
 public:
  using Key = K;
  using Value = V;

  const V* find(const K& key) const {
    if (!table_) return nullptr;
    const auto& shard = (*table_)[shard_of(key)];
    if (!shard) return nullptr;
    auto it = lower(*shard, key);
    return it != shard->end() && it->first == key ? &it->second : nullptr;
  }
  bool contains(const K& key) const { return find(key) != nullptr; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // Inserts or replaces.
  void put(const K& key, V value) {
    Shard& shard = writable(shard_of(key));
    auto it = lower(shard, key);
    if (it != shard.end() && it->first == key) {
      it->second = std::move(value);
    } else {
      shard.insert(it, {key, std::move(value)});
      ++size_;
    }
  }
  // The entry to change in place, or nullptr: its shard is made this map's own first, so a
  // change through it is seen by no other version.
  V* find_mutable(const K& key) {
    if (!find(key)) return nullptr;
    Shard& shard = writable(shard_of(key));
    return &lower(shard, key)->second;
  }
  // Whether there was an entry.
  bool erase(const K& key) {
    if (!find(key)) return false;
    Shard& shard = writable(shard_of(key));
    shard.erase(lower(shard, key));
    --size_;
    return true;
  }

  // Every entry, in no particular order.
  template <typename F>
  void for_each(F&& f) const {
    if (!table_) return;
    for (const auto& shard : *table_)
      if (shard)
        for (const auto& [k, v] : *shard) f(k, v);
  }

  // What differs between two versions of one map, in time proportional to the shards that
  // differ: shards both share are skipped without a look. `changed(key, value)` for entries
  // added or replaced in `to` (by ==), `removed(key, old value)` for those gone.
  template <typename Changed, typename Removed>
  static void diff(const SharedMap& from, const SharedMap& to, Changed&& changed, Removed&& removed) {
    for (size_t i = 0; i < kShards; ++i) {
      const Shard* a = from.table_ ? (*from.table_)[i].get() : nullptr;
      const Shard* b = to.table_ ? (*to.table_)[i].get() : nullptr;
      if (a == b) continue;
      static const Shard none;
      const Shard& old = a ? *a : none;
      const Shard& now = b ? *b : none;
      auto o = old.begin(), n = now.begin();
      while (o != old.end() || n != now.end()) {
        if (n == now.end() || (o != old.end() && o->first < n->first)) {
          removed(o->first, o->second), ++o;
        } else if (o == old.end() || n->first < o->first) {
          changed(n->first, n->second), ++n;
        } else {
          if (!(o->second == n->second)) changed(n->first, n->second);
          ++o, ++n;
        }
      }
    }
  }

 private:
  static constexpr size_t kShards = 1024;
  using Shard = std::vector<std::pair<K, V>>;  // sorted by key
  using Table = std::array<std::shared_ptr<Shard>, kShards>;

  static size_t shard_of(const K& key) { return Hash{}(key) % kShards; }
  static auto lower(const Shard& shard, const K& key) {
    return std::lower_bound(shard.begin(), shard.end(), key, [](const auto& e, const K& k) { return e.first < k; });
  }
  static auto lower(Shard& shard, const K& key) {
    return std::lower_bound(shard.begin(), shard.end(), key, [](const auto& e, const K& k) { return e.first < k; });
  }
  // The shard, made this map's own first: a copy when another version shares it.
  Shard& writable(size_t i) {
    if (!table_) table_ = std::make_shared<Table>();
    else if (table_.use_count() > 1) table_ = std::make_shared<Table>(*table_);
    auto& shard = (*table_)[i];
    if (!shard) shard = std::make_shared<Shard>();
    else if (shard.use_count() > 1) shard = std::make_shared<Shard>(*shard);
    return *shard;
  }

  std::shared_ptr<Table> table_;
  size_t size_ = 0;
};

}  // namespace zmesh
