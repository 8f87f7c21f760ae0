// zmeshd's HTTP routes (see admin_routes.h).
#include "admin_routes.h"

#include <spdlog/spdlog.h>

#include "zmesh/json.h"

namespace zmesh {
namespace {

const std::string kText = "text/plain; charset=utf-8";

// Endpoints that change the daemon answer root (a kubelet's preStop hook) and zmeshd's uid.
AdminResponse not_root(const char* what) {
  return {403, kText, std::string(what) + " changes zmeshd: only root may use it\n"};
}

AdminServer::Handler ready(const AdminInputs& in) {
  return [&not_ready = in.not_ready](const AdminRequest&) {
    return not_ready.empty() ? AdminResponse{200, "text/plain", "ready\n"}
                             : AdminResponse{503, "text/plain", "not ready: " + not_ready + "\n"};
  };
}

// As Envoy's: GET shows, POST ?level=debug (and/or ?accessLogFormat=json|text) changes.
AdminResponse logging(Telemetry& telemetry, const AdminRequest& r) {
  if (!r.query.empty() && r.method != "POST") return {405, kText, "change the log with POST /logging?level=LEVEL\n"};
  if (!r.query.empty() && !r.privileged) return not_root("/logging");
  for (const auto& [key, value] : r.query)
    if (key != "level" && key != "accessLogFormat")
      return {400, kText, "unknown parameter '" + key + "' (level, accessLogFormat)\n"};
  if (auto it = r.query.find("level"); it != r.query.end()) {
    const auto level = spdlog::level::from_str(it->second);
    if (level == spdlog::level::off && it->second != "off")
      return {400, kText, "level '" + it->second + "': expected trace, debug, info, warn, error, off\n"};
    spdlog::set_level(level);
    spdlog::info("zmeshd: log level now {}", it->second);
  }
  if (auto it = r.query.find("accessLogFormat"); it != r.query.end()) {
    if (it->second != "json" && it->second != "text")
      return {400, kText, "accessLogFormat '" + it->second + "': expected json or text\n"};
    telemetry.set_access_log_json(it->second == "json");
  }
  const nlohmann::json shown = {{"level", spdlog::level::to_string_view(spdlog::get_level()).data()},
                                {"accessLog", telemetry.access_log().target},
                                {"accessLogFormat", telemetry.access_log().json ? "json" : "text"}};
  return {200, "application/json", json_text(shown) + "\n"};
}

}  // namespace

Routes readiness_routes(const AdminInputs& in) { return {{"/healthz/ready", ready(in)}}; }

Routes metrics_routes(const AdminInputs& in) {
  return {{"/metrics", [&in](const AdminRequest&) {
             return AdminResponse{200, "text/plain; version=0.0.4; charset=utf-8",
                                  in.telemetry.prometheus_text() + prometheus_text(in.metrics())};
           }}};
}

Routes admin_routes(const AdminInputs& in) {
  return {
      {"/healthz/ready", ready(in)},
      {"/stats",
       [&in](const AdminRequest&) {
         return AdminResponse{200, "application/json", json_text(stats_json(in.metrics()), 2) + "\n"};
       }},
      {"/config_dump",
       [&in](const AdminRequest&) {
         const nlohmann::json dump = {{"status", in.controller.status()},
                                      {"workloads", in.controller.workloads()},
                                      {"services", in.controller.services()},
                                      {"policies", in.controller.policies()},
                                      {"certificates", in.controller.certificates()}};
         return AdminResponse{200, "application/json", json_text(dump, 2) + "\n"};
       }},
      {"/logging", [&in](const AdminRequest& r) { return logging(in.telemetry, r); }},
      // POST as Envoy's; GET too, since a kubelet preStop httpGet hook can only GET.
      {"/quitquitquit", [&in](const AdminRequest& r) {
         if (r.method != "POST" && r.method != "GET") return AdminResponse{405, kText, "use POST\n"};
         if (!r.privileged) return not_root("/quitquitquit");
         in.drain("/quitquitquit");
         return AdminResponse{200, kText, "draining; exiting when connections end (at most " +
                                              std::to_string(in.drain_timeout.count()) + " ms)\n"};
       }}};
}

}  // namespace zmesh
