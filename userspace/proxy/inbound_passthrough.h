// Inbound plaintext (ztunnel's inbound_passthrough.rs): the transparent :15006 listener the tc
// program assigns plaintext connections to this node's pods to. Only a PERMISSIVE pod takes
// them, after policy decides with no identity; a STRICT pod's are refused (tc already drops
// their SYNs; this is the proxy's half of the same rule).
#pragma once

#include "context.h"

namespace zmesh::proxy {

class InboundPassthrough {
 public:
  explicit InboundPassthrough(ProxyContext& context) : ctx_(context) {}
  awaitable<void> serve(tcp::socket client, uint64_t id);

 private:
  ProxyContext& ctx_;
};

}  // namespace zmesh::proxy
