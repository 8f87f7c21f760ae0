// Routes libbpf's messages (verifier logs, load errors) into zmesh's log.
#pragma once

namespace zmesh::datapath {

// Idempotent and thread-safe; call before the first libbpf call.
void route_libbpf_log();

}  // namespace zmesh::datapath
