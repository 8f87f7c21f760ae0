// zmeshd's command line: every flag parsed once into typed options (enums, addresses,
// durations, not "on"/"off" strings), with their defaults, for the composition root to read.
#pragma once

#include <spdlog/common.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <variant>
#include <vector>

#include "zmesh/datapath.h"
#include "zmesh/proxy.h"
#include "zmesh/telemetry.h"
#include "istiod.h"

namespace zmesh {

// Where the local identities' certificates come from.
struct CertificateOptions {
  std::filesystem::path ca_dir;        // the built-in CA (root-cert.pem, root-key.pem), created when missing
  std::filesystem::path cert_dir;      // or an external CA's files: DIR/<ns>/<sa>/{cert-chain,key}.pem
  std::filesystem::path trust_bundle;  // roots trusted besides (required with cert_dir)
  std::chrono::seconds ttl{24 * 3600};
};

// istiod (issue 16): workloads, services and policies over delta xDS, certificates from its CA.
// On when --xds-address or --xds-root-cert is given.
struct XdsOptions {
  bool enabled = false;
  xds::IstiodSettings istiod;
  xds::NodeIdentity node;  // POD_NAME, POD_NAMESPACE, INSTANCE_IP; NODE_NAME is --node
};

// The kubelet's cgroup (--probe-cgroup): found where systemd puts it, named, or none.
struct ProbeCgroupChoice {
  enum class Kind { Auto, None, Path } kind = Kind::Auto;
  std::filesystem::path path;
};

struct DaemonOptions {
  enum class Mode { Serve, Check, Cleanup, Hold };
  Mode mode = Mode::Serve;
  spdlog::level::level_enum log_level = spdlog::level::info;
  std::filesystem::path config;  // empty: no file, the control socket only
  std::filesystem::path state_dir;
  std::string node;
  std::string trust_domain = "cluster.local";
  bool proxy = true;  // false: the kernel datapath only
  DatapathOptions datapath;
  ProbeCgroupChoice probe_cgroup;
  ProxyOptions proxy_options;
  CertificateOptions certificates;
  XdsOptions xds;
  AccessLogOptions access_log;
  std::chrono::milliseconds drain_timeout{10000};
  std::chrono::milliseconds gc_interval{30000};
};

// Parses argv. The options, or the exit code when there is nothing to run (--help, --version,
// a bad flag: CLI11 has printed why).
std::variant<DaemonOptions, int> parse_options(int argc, char** argv);

// The probe cgroup's path (empty: none), looking where systemd puts the kubelet for Auto.
std::filesystem::path resolve_probe_cgroup(const ProbeCgroupChoice& choice);

}  // namespace zmesh
