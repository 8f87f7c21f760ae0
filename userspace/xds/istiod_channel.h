// How zmeshd reaches istiod (issue 16): one gRPC channel for both the xDS stream and the CA,
// TLS only (istiod's port 15012: its certificate checked against the mesh root and the host
// name, no client certificate), with the metadata istiod authenticates a node proxy by —
// `authorization: Bearer <projected service-account token, audience istio-ca>` and
// `clusterid`. The token file is read again for every call and stream: projected tokens rotate.
#pragma once

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/status_code_enum.h>

#include <memory>
#include <string>

#include "istiod.h"

namespace zmesh::xds {

// A TLS channel to istiod. Throws IstiodError when the root file cannot be read (the channel
// itself connects lazily, and again after failures).
std::shared_ptr<grpc::Channel> istiod_channel(const IstiodSettings& settings);

// Puts the token and cluster id on a call. Throws IstiodError when the token file is set but
// cannot be read or is empty: a call without it would only be refused.
void authenticate(grpc::ClientContext& context, const IstiodSettings& settings);

// "UNAVAILABLE" for grpc::StatusCode::UNAVAILABLE (grpc++ has no public name for a code; the
// numbers are fixed by the gRPC protocol).
std::string status_code_name(grpc::StatusCode code);

}  // namespace zmesh::xds
