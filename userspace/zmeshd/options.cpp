// zmeshd's command line (see options.h).
#include "options.h"

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <map>
#include <sched.h>

#include "zmesh/config.h"
#include "zmesh/control.h"
#include "zmesh/kernel.h"

namespace zmesh {
namespace {

// A word on the command line to a typed value (a bool or an enum); the help shows the words
// (type_name) and a wrong one is named with the choices.
template <typename T>
CLI::Validator words(std::map<std::string, T> map) {
  std::string names;
  for (const auto& [word, value] : map) names += (names.empty() ? "" : ", ") + word;
  return CLI::Validator(
      [map = std::move(map), names](std::string& text) -> std::string {
        const auto it = map.find(text);
        if (it == map.end()) return "'" + text + "' is not one of " + names;
        text = std::to_string(static_cast<long>(it->second));
        return {};
      },
      "");
}
const std::map<std::string, bool> kOnOff{{"on", true}, {"off", false}};

}  // namespace

std::variant<DaemonOptions, int> parse_options(int argc, char** argv) {
  CLI::App app{"zmeshd: the zmesh node daemon (mTLS, L4 policy and load balancing for the pods of one node)"};
  DaemonOptions o;
  o.state_dir = control::kDefaultStateDir;
  app.set_version_flag("--version", std::string("zmeshd ") + ZMESH_VERSION);
  bool check = false, cleanup = false, hold = false;
  app.add_flag("--check", check, "check the kernel (BTF, bpffs, cgroup v2, BPF programs), print JSON and exit");
  app.add_flag("--cleanup", cleanup, "detach and unpin everything under --bpf-root, remove the routing rule, exit");
  app.add_flag("--hold", hold,
               "do nothing until SIGTERM: the chart's cleanup mode keeps each node's pod up once zmesh is removed");
  app.add_option("--log-level", o.log_level, "trace, debug, info, warn, error")
      ->transform(words(std::map<std::string, spdlog::level::level_enum>{
          {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug}, {"info", spdlog::level::info},
          {"warn", spdlog::level::warn}, {"error", spdlog::level::err}}))
      ->type_name("LEVEL")
      ->default_str("info");
  app.add_option("--config", o.config,
                 "mesh config (JSON: workloads, services, policies; docs/config.md); reloaded when it changes and on SIGHUP")
      ->check(CLI::ExistingFile);
  app.add_option("--state-dir", o.state_dir,
                 "control socket (control.sock, root only) and runtime changes (runtime.json); one per daemon")
      ->capture_default_str();
  app.add_option("--node", o.node, "this node's name: workloads with this node are enrolled here");
  app.add_option("--bpf-root", o.datapath.pin_root, "where maps and links are pinned (one per daemon)")
      ->capture_default_str();
  std::string outbound_ip4, outbound_ip6;
  app.add_option("--outbound-ip", outbound_ip4, "IPv4 address pods reach the proxy on (their gateway)")
      ->check(CLI::ValidIPV4);
  app.add_option("--outbound-ip6", outbound_ip6, "IPv6 address pods reach the proxy on");
  std::vector<std::string> uplinks;
  app.add_option("--uplink", uplinks, "deprecated and ignored: every interface of the node gets tc ingress");
  app.add_option("--node-capture", o.datapath.node_capture,
                 "capture the node's own connects to its pods and to services, as identity-less sources (on|off)")
      ->transform(words(kOnOff))->type_name("on|off")
      ->default_str("on");
  app.add_option("--host-cgroup", o.datapath.host_cgroup,
                 "cgroup whose processes are the node's own (default: the cgroup v2 root)");
  std::string probe = "auto";
  app.add_option("--probe-cgroup", probe,
                 "the kubelet's cgroup: its health probes reach pods directly (auto: systemd's "
                 "system.slice/kubelet.service; none: no exemption)")
      ->capture_default_str();
  app.add_option("--sockmap", o.datapath.sockmap,
                 "same-node short-cut through the sockhash, on|off (see docs/datapath.md before turning it on)")
      ->transform(words(kOnOff))->type_name("on|off")
      ->default_str("off");
  app.add_option("--fast-path", o.datapath.fast_path,
                 "same-node fast path: a pod's connect to a pod of this node that the proxy allowed before goes "
                 "pod to pod until anything changes, on|off (docs/datapath.md)")
      ->transform(words(kOnOff))->type_name("on|off")
      ->default_str("on");
  app.add_option("--tc-mode", o.datapath.tc_mode, "how tc programs attach: auto, tcx, clsact")
      ->transform(words(std::map<std::string, TcMode>{{"auto", TcMode::Auto}, {"tcx", TcMode::Tcx}, {"clsact", TcMode::Clsact}}))
      ->type_name("auto|tcx|clsact")
      ->default_str("auto");
  app.add_option("--proxy", o.proxy, "the node proxy (15001/15006/15008), on|off: off = kernel datapath only")
      ->transform(words(kOnOff))->type_name("on|off")
      ->default_str("on");
  // Cores, up to 4: past that a node's proxy traffic is rarely CPU-bound on one node proxy, and
  // each worker keeps its own HBONE pool (more connections to every other node).
  // The CPUs this process may run on (its cpuset and affinity), not the machine's.
  cpu_set_t allowed;
  const size_t cpus = sched_getaffinity(0, sizeof allowed, &allowed) == 0 ? CPU_COUNT(&allowed) : 1;
  o.proxy_options.workers = std::clamp<size_t>(cpus, 1, 4);
  app.add_option("--workers", o.proxy_options.workers,
                 "proxy event loops, each on its own thread; connections are spread across them (default: the "
                 "CPUs zmeshd may run on, at most 4)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--preserve-source", o.proxy_options.preserve_source,
                 "connect to a pod from its client's own address, as ztunnel does (on|off; off: the node's "
                 "gateway address, docs/datapath.md)")
      ->transform(words(kOnOff))->type_name("on|off")
      ->default_str("on");
  app.add_option("--trust-domain", o.trust_domain, "SPIFFE trust domain of the mesh")->capture_default_str();
  app.add_option("--ca-dir", o.certificates.ca_dir, "the built-in CA: root-cert.pem and root-key.pem, created when missing");
  app.add_option("--cert-dir", o.certificates.cert_dir,
                 "external CA: workload certificates in DIR/<namespace>/<serviceAccount>/{cert-chain,key}.pem")
      ->excludes("--ca-dir");
  app.add_option("--trust-bundle", o.certificates.trust_bundle,
                 "PEM file of trusted roots (required with --cert-dir; with --ca-dir, roots trusted besides the CA's "
                 "own, for rotation)");
  auto* xds_address = app.add_option("--xds-address", o.xds.istiod.address,
                                     "istiod's xDS and CA address, host:port (xDS is on with this or --xds-root-cert)")
                          ->capture_default_str();
  auto* xds_root = app.add_option("--xds-root-cert", o.xds.istiod.root_cert,
                                  "the mesh root istiod's certificate is checked against (and workload chains)")
                       ->capture_default_str();
  app.add_option("--xds-token", o.xds.istiod.token,
                 "the projected service-account token (audience istio-ca), read again for every call");
  app.add_option("--xds-server-name", o.xds.istiod.server_name,
                 "the name istiod's certificate must carry (default: the host of --xds-address)");
  app.add_option("--cluster-id", o.xds.istiod.cluster_id, "this cluster's id, as istiod knows it")->capture_default_str();
  app.add_option("--pod-name", o.xds.node.pod_name, "this zmeshd pod's name, for istiod's Node (env POD_NAME)")
      ->envname("POD_NAME");
  app.add_option("--pod-namespace", o.xds.node.pod_namespace, "this zmeshd pod's namespace (env POD_NAMESPACE)")
      ->envname("POD_NAMESPACE")
      ->capture_default_str();
  app.add_option("--instance-ip", o.xds.node.instance_ip, "this node's IP, for istiod's Node (env INSTANCE_IP)")
      ->envname("INSTANCE_IP")
      ->capture_default_str();
  int64_t ttl_s = o.certificates.ttl.count();
  app.add_option("--cert-ttl", ttl_s, "lifetime of workload certificates, seconds (renewed at half life)")
      ->check(CLI::Range(int64_t{2}, int64_t{365 * 24 * 3600}))
      ->capture_default_str();
  int64_t drain_ms = o.drain_timeout.count();
  app.add_option("--drain-timeout-ms", drain_ms, "on SIGTERM, how long open connections may finish")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  std::vector<std::string> pod_cidrs;
  app.add_option("--pod-cidr", pod_cidrs,
                 "a cluster pod CIDR (repeatable): pods in it that the config does not name are reached over "
                 "HBONE, trusting any identity of the trust domain (pods a CNI plugin enrolled on other nodes)");
  app.add_option("--access-log", o.access_log.target,
                 "one line per connection when it ends: - (stdout), off, or a file (appended)")
      ->capture_default_str();
  app.add_option("--access-log-format", o.access_log.json, "json or text (also at run time: POST /logging)")
      ->transform(words(std::map<std::string, bool>{{"json", true}, {"text", false}}))
      ->type_name("json|text")
      ->default_str("json");
  auto milliseconds = [&](const char* flag, std::chrono::milliseconds& value, const char* help) {
    auto* option = app.add_option_function<int64_t>(
        flag, [&value](int64_t ms) { value = std::chrono::milliseconds(ms); }, help);
    option->check(CLI::PositiveNumber)->default_str(std::to_string(value.count()));
  };
  milliseconds("--pool-idle-timeout-ms", o.proxy_options.pool_idle_timeout,
               "close pooled HBONE connections idle this long");
  milliseconds("--gc-interval-ms", o.gc_interval,
               "how often runtime-enrolled pods whose cgroup is gone (no DEL came) are dropped");
  milliseconds("--hbone-keepalive-ms", o.proxy_options.hbone_keepalive,
               "HBONE connections: a PING after this long without a byte from the peer, closed after twice it");
  milliseconds("--handshake-timeout-ms", o.proxy_options.handshake_timeout,
               "a peer that has not finished its TLS handshake (or sent its CONNECT) by then is cut off");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  o.xds.enabled = xds_address->count() > 0 || xds_root->count() > 0;
  o.xds.node.node_name = o.node;
  if (o.xds.enabled && (!o.certificates.ca_dir.empty() || !o.certificates.cert_dir.empty()))
    std::cerr << "zmeshd: with xDS the certificates still come from " << (o.certificates.ca_dir.empty() ? "--cert-dir" : "--ca-dir")
              << ", not from istiod's CA\n";
  o.mode = check     ? DaemonOptions::Mode::Check
           : cleanup ? DaemonOptions::Mode::Cleanup
           : hold    ? DaemonOptions::Mode::Hold
                     : DaemonOptions::Mode::Serve;
  o.certificates.ttl = std::chrono::seconds(ttl_s);
  o.drain_timeout = std::chrono::milliseconds(drain_ms);
  if (!outbound_ip4.empty()) o.datapath.outbound_ip4 = boost::asio::ip::make_address_v4(outbound_ip4);
  if (!outbound_ip6.empty()) {
    boost::system::error_code ec;
    o.datapath.outbound_ip6 = boost::asio::ip::make_address_v6(outbound_ip6, ec);
    if (ec) {
      std::cerr << "--outbound-ip6: '" << outbound_ip6 << "' is not an IPv6 address\n";
      return 2;
    }
  }
  for (const auto& text : pod_cidrs) {
    try {
      o.proxy_options.pod_cidrs.push_back(parse_ip_block(text, "--pod-cidr"));
    } catch (const ConfigError& e) {
      std::cerr << e.what() << '\n';
      return 2;
    }
  }
  o.probe_cgroup = probe == "auto"   ? ProbeCgroupChoice{}
                   : probe == "none" ? ProbeCgroupChoice{ProbeCgroupChoice::Kind::None, {}}
                                     : ProbeCgroupChoice{ProbeCgroupChoice::Kind::Path, probe};
  if (!uplinks.empty())
    std::cerr << "zmeshd: --uplink is no longer needed and is ignored: every interface of the node gets tc ingress\n";
  if (o.mode == DaemonOptions::Mode::Serve && o.datapath.outbound_ip4.is_unspecified()) {
    std::cerr << "zmeshd: --outbound-ip is required (the address pods reach this node's proxy on)\n";
    return 2;
  }
  return o;
}

std::filesystem::path resolve_probe_cgroup(const ProbeCgroupChoice& choice) {
  switch (choice.kind) {
    case ProbeCgroupChoice::Kind::None: return {};
    case ProbeCgroupChoice::Kind::Path:
      if (!std::filesystem::is_directory(choice.path))
        throw ConfigError("--probe-cgroup " + choice.path.string() + ": no such cgroup directory");
      return choice.path;
    case ProbeCgroupChoice::Kind::Auto: break;
  }
  const auto mount = find_mount("cgroup2");
  for (const char* where : {"system.slice/kubelet.service", "kubelet.slice/kubelet.service", "kubelet.service"})
    if (mount && std::filesystem::is_directory(*mount / where)) return *mount / where;
  spdlog::warn("zmeshd: no kubelet cgroup found (--probe-cgroup auto looked under {}/system.slice): kubelet health "
               "probes to STRICT pods will be refused like any plaintext; name it with --probe-cgroup",
               mount ? mount->string() : std::string("(no cgroup v2 mount)"));
  return {};
}

}  // namespace zmesh
