// What zmeshd serves on its three HTTP ports (zmesh/admin.h has the servers):
//   :15021 readiness, :15020 metrics (Istio's and zmesh's), 127.0.0.1:15000 admin (stats,
//   config dump, logging, quitquitquit; the last two for root only).
#pragma once

#include <functional>
#include <map>
#include <string>

#include "controller.h"
#include "metrics.h"
#include "zmesh/admin.h"
#include "zmesh/telemetry.h"

namespace zmesh {

// The daemon's state as the routes need it; every member outlives the servers.
struct AdminInputs {
  const std::string& not_ready;  // empty when ready, else why not ("starting", "draining")
  std::function<DaemonMetrics()> metrics;
  Telemetry& telemetry;
  const Controller& controller;
  std::function<void(const std::string& why)> drain;  // posted: runs after the reply
  std::chrono::milliseconds drain_timeout;
};

using Routes = std::map<std::string, AdminServer::Handler>;
Routes readiness_routes(const AdminInputs& in);
Routes metrics_routes(const AdminInputs& in);
Routes admin_routes(const AdminInputs& in);

}  // namespace zmesh
