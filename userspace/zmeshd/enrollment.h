// Applies the mesh config to the datapath: enrolls this node's workloads, and makes every
// workload IP and service VIP in the mesh a captured destination.
#pragma once

#include <string>

#include "zmesh/config.h"
#include "zmesh/datapath.h"

namespace zmesh {

WorkloadAttachment attachment(const WorkloadConfig& workload);

// Returns how many workloads were enrolled here. A local workload without a cgroup is an error:
// without it its connects cannot be captured.
size_t apply_config(Datapath& datapath, const MeshConfig& config, const std::string& node);

}  // namespace zmesh
