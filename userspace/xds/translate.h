// istiod's resources (istio.workload.Address, istio.security.Authorization) into zmesh's config
// model. Each goes through the JSON shape the config file and control socket use and the same
// parsers, so that one set of checks guards every source; what istiod says that the file
// cannot (names istiod makes up, a match that sets nothing) is set after them. A resource
// that cannot be read throws ConfigError with the reason: the client NACKs that resource and
// applies the rest.
#pragma once

#include <string>

#include "istiod.h"

namespace google::protobuf {
class Any;
}

namespace zmesh::xds {

// Decodes the resource `name` of type `type_url` from its Any. Checks that the name is the one
// istiod gives that kind (a workload's uid, "<namespace>/<hostname>", "<namespace>/<name>").
Resource decode(const std::string& type_url, const std::string& name, const google::protobuf::Any& any);

}  // namespace zmesh::xds
