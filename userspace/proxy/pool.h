// The HBONE connection pool (ztunnel's pool.rs): the mTLS connections this node opened to
// other nodes, keyed by (source identity, destination identity, destination node), each
// carrying many CONNECT streams. A stream goes on the usable connection with the fewest
// streams; a new connection is made only when none is usable, and concurrent callers for one
// key share that connect. Connections idle for pool_idle_timeout are closed, and beyond
// kMaxIdlePerKey idle ones for a key at once (after a burst needed many), the surplus within a
// second: an idle connection still costs some 300 KiB (TLS, nghttp2's frame buffer), as Go's
// http.Transport keeps MaxIdleConnsPerHost = 2.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <vector>

#include "context.h"
#include "zmesh/http2.h"

namespace zmesh::proxy {

class HbonePool {
 public:
  struct Key {
    SpiffeId source, destination;
    std::string node;
    auto operator<=>(const Key&) const = default;
  };

  static constexpr size_t kMaxIdlePerKey = 2;

  explicit HbonePool(ProxyContext& context) : ctx_(context) {}

  // A CONNECT stream to `authority` over a pooled connection to `node_address` (its :15008),
  // with `source_ip` in the `forwarded` header (the destination's policies match addresses, and
  // it sees only this node's). Throws when no connection can be made or no answer comes.
  awaitable<std::shared_ptr<http2::Stream>> open_stream(const Key& key, const tcp::endpoint& node_address,
                                                        const std::string& authority, const std::string& source_ip);
  // Closes idle connections until the proxy drains.
  awaitable<void> reap_idle();

  void drain();          // GOAWAY on every connection: open streams finish, no new ones
  void close();          // now
  size_t retire();       // GOAWAY after a CA rotation; how many
  void count(ProxyStats& stats) const;  // pool_connections, pool_streams

 private:
  struct Pending {
    explicit Pending(const asio::any_io_executor& ex) : done(ex) {}
    Latch done;
  };
  awaitable<std::shared_ptr<http2::Connection>> connect(const Key& key, const tcp::endpoint& target);

  ProxyContext& ctx_;
  bool draining_ = false;
  std::map<Key, std::vector<std::shared_ptr<http2::Connection>>> pool_;
  std::map<Key, std::shared_ptr<Pending>> connecting_;
};

}  // namespace zmesh::proxy
