#include "enrollment.h"

#include <spdlog/spdlog.h>

#include "zmesh/datapath_error.h"

namespace zmesh {

WorkloadAttachment attachment(const WorkloadConfig& workload) {
  return {workload.namespace_ + "/" + workload.name, workload.cgroup, workload.host_veth, workload.ips,
          workload.mtls_strict};
}

size_t apply_config(Datapath& datapath, const MeshConfig& config, const std::string& node) {
  size_t enrolled = 0;
  for (const auto& workload : config.workloads) {
    for (const auto& ip : workload.ips) datapath.add_destination(ip, DestinationKind::Workload);
    if (workload.node != node) continue;
    if (workload.cgroup.empty())
      throw ConfigError("workload " + workload.namespace_ + "/" + workload.name + " is on node " + node +
                        " but has no cgroup: zmesh cannot capture its connections");
    datapath.enroll(attachment(workload));
    spdlog::info("enrolled {}/{} ({} IPs, cgroup {})", workload.namespace_, workload.name, workload.ips.size(),
                 workload.cgroup);
    ++enrolled;
  }
  for (const auto& service : config.services)
    for (const auto& vip : service.vips) datapath.add_destination(vip, DestinationKind::Service);
  return enrolled;
}

}  // namespace zmesh
