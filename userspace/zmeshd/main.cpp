// zmeshd, the node daemon: the composition root. It checks the kernel, builds every
// component from one options struct, applies the mesh config, then serves until
// SIGTERM/SIGINT. Stopping leaves the pinned programs attached on purpose: captured connects
// then fail closed until a new zmeshd adopts them (`--cleanup` removes them).
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <malloc.h>
#include <sys/resource.h>

#include <csignal>
#include <iostream>
#include <map>

#include "zmesh/json.h"
#include "control_server.h"
#include "controller.h"
#include "file_watch.h"
#include "link_watch.h"
#include "self_check.h"
#include "metrics.h"
#include "zmesh/admin.h"
#include "zmesh/certificates.h"
#include "zmesh/config.h"
#include "zmesh/control.h"
#include "zmesh/datapath.h"
#include "zmesh/identity.h"
#include "zmesh/kernel.h"
#include "zmesh/mesh.h"
#include "zmesh/proxy.h"
#include "zmesh/telemetry.h"

namespace {

struct Options {
  bool check_only = false;
  bool cleanup = false;
  std::string log_level = "info";
  std::string config_path;
  std::string node;
  std::string outbound_ip4;
  std::string outbound_ip6;
  std::string sockmap = "off";
  std::string tc_mode = "auto";
  std::string proxy = "on";
  std::string trust_domain = "cluster.local";
  std::string ca_dir;
  std::string cert_dir;
  std::string trust_bundle;
  std::string state_dir = zmesh::control::kDefaultStateDir;
  int64_t cert_ttl_s = 24 * 3600;
  int64_t drain_timeout_ms = 10000;
  zmesh::DatapathOptions datapath;
  zmesh::ProxyOptions proxy_options;
  zmesh::AccessLogOptions access_log;
  std::vector<std::string> pod_cidrs;
  int64_t gc_interval_ms = 30000;
  std::vector<std::string> uplinks;  // deprecated: every interface is hooked
  std::string node_capture = "on";
  std::string probe_cgroup = "auto";
};

// The kubelet's cgroup, whose health probes reach pods directly: --probe-cgroup, or where
// systemd puts the kubelet. None found: probes to STRICT pods are refused, and the log says so.
std::filesystem::path probe_cgroup(const std::string& option) {
  if (option == "none") return {};
  if (option != "auto") {
    if (!std::filesystem::is_directory(option))
      throw zmesh::ConfigError("--probe-cgroup " + option + ": no such cgroup directory");
    return option;
  }
  const auto mount = zmesh::find_mount("cgroup2");
  for (const char* where : {"system.slice/kubelet.service", "kubelet.slice/kubelet.service", "kubelet.service"})
    if (mount && std::filesystem::is_directory(*mount / where)) return *mount / where;
  spdlog::warn("zmeshd: no kubelet cgroup found (--probe-cgroup auto looked under {}/system.slice): kubelet health "
               "probes to STRICT pods will be refused like any plaintext; name it with --probe-cgroup",
               mount ? mount->string() : std::string("(no cgroup v2 mount)"));
  return {};
}

zmesh::DatapathOptions datapath_options(Options& o) {
  zmesh::DatapathOptions d = o.datapath;
  if (!o.outbound_ip4.empty()) d.outbound_ip4 = boost::asio::ip::make_address_v4(o.outbound_ip4);
  if (!o.outbound_ip6.empty()) d.outbound_ip6 = boost::asio::ip::make_address_v6(o.outbound_ip6);
  d.sockmap = o.sockmap == "on";
  d.node_capture = o.node_capture == "on";
  d.probe_cgroup = probe_cgroup(o.probe_cgroup);
  d.tc_mode = o.tc_mode == "tcx" ? zmesh::TcMode::Tcx : o.tc_mode == "clsact" ? zmesh::TcMode::Clsact : zmesh::TcMode::Auto;
  return d;
}

// A node proxy holds two descriptors per proxied connection on one side: the soft limit (often
// 1024) would cap a node at a few hundred connections. Raise it to the hard limit.
void raise_fd_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  const auto before = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) == 0)
    spdlog::info("zmeshd: open file limit raised from {} to {}", before, limit.rlim_cur);
}

// Runs `work` every `interval` until the io_context stops.
boost::asio::awaitable<void> every(std::chrono::milliseconds interval, std::function<void()> work) {
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
  for (;;) {
    timer.expires_after(interval);
    auto [ec] = co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    if (ec) co_return;
    work();
  }
}

// The certificates from the files the flags name: at start-up, and again on each reload (a CA
// rotation when the roots differ). Only start-up creates a missing built-in CA.
zmesh::Certificates load_certificates(const Options& o, bool at_start) {
  const zmesh::TrustBundle extra_roots =
      o.trust_bundle.empty() ? zmesh::TrustBundle() : zmesh::TrustBundle::load(o.trust_bundle);
  if (!o.cert_dir.empty()) {
    if (o.trust_bundle.empty()) throw zmesh::ConfigError("--cert-dir needs --trust-bundle (the external CA's roots)");
    return zmesh::Certificates::from_files(o.cert_dir, extra_roots);
  }
  if (o.ca_dir.empty())
    throw zmesh::ConfigError("the proxy needs certificates: --ca-dir (built-in CA) or --cert-dir (external CA)");
  auto ca = at_start ? zmesh::CertificateAuthority::load_or_create(o.ca_dir, o.trust_domain)
                     : zmesh::CertificateAuthority::load(o.ca_dir);
  return zmesh::Certificates::from_ca(std::move(ca), std::chrono::seconds(o.cert_ttl_s), extra_roots);
}

int serve(Options& o) {
  raise_fd_limit();
  // Signals first: from "ready" on, SIGTERM must find its handler.
  boost::asio::io_context io;
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  std::unique_ptr<zmesh::Proxy> proxy;
  // Readiness answers once the datapath is up: 503 until the config is applied and the proxy
  // listens, 503 again while draining, so a kubelet (or a load balancer) sees each step.
  std::string not_ready = "starting";
  bool draining = false;
  auto drain = [&](const std::string& why) {
    if (draining) return;
    draining = true;
    not_ready = "draining";
    spdlog::info("zmeshd: {}, draining for up to {} ms (redirection stays pinned; --cleanup removes it)", why,
                 o.drain_timeout_ms);
    if (!proxy) return io.stop();
    proxy->drain(std::chrono::milliseconds(o.drain_timeout_ms), [&] { io.stop(); });
  };
  signals.async_wait([&](const boost::system::error_code&, int signal) { drain("signal " + std::to_string(signal)); });
  boost::asio::signal_set hangup(io, SIGHUP);
  zmesh::Telemetry telemetry(o.access_log);

  const zmesh::SelfCheck check = zmesh::run_self_check();
  if (!check.ok()) {
    for (const auto& problem : check.problems) spdlog::error("kernel check: {}", problem);
    return 1;
  }
  const bool with_proxy = o.proxy == "on";
  std::unique_ptr<zmesh::Certificates> certificates;
  if (with_proxy) certificates = std::make_unique<zmesh::Certificates>(load_certificates(o, true));
  const std::filesystem::path state_dir = o.state_dir;
  for (const auto& text : o.pod_cidrs) o.proxy_options.pod_cidrs.push_back(zmesh::parse_ip_block(text, "--pod-cidr"));
  const zmesh::ControllerOptions controller_options{o.node, o.trust_domain, o.config_path,
                                                    state_dir / zmesh::control::kRuntimeName, !o.outbound_ip6.empty()};
  // The config is read and checked before anything on the node changes: a bad file stops here.
  auto initial = zmesh::Controller::load(controller_options);
  auto datapath = zmesh::BpfDatapath::start(datapath_options(o));  // it takes the pin root's lock
  datapath->set_destination_cidrs(o.proxy_options.pod_cidrs);
  const auto any = boost::asio::ip::address_v6::any();
  const zmesh::AdminServer::Handler ready = [&](const zmesh::AdminRequest&) {
    return not_ready.empty() ? zmesh::AdminResponse{200, "text/plain", "ready\n"}
                             : zmesh::AdminResponse{503, "text/plain", "not ready: " + not_ready + "\n"};
  };
  zmesh::AdminServer readiness(io, boost::asio::ip::tcp::endpoint(any, zmesh::AdminServer::kReadinessPort),
                               {{"/healthz/ready", ready}}, zmesh::AdminLimits{.connections = 64, .per_client = 8});
  readiness.start();
  zmesh::MeshState state;
  zmesh::Controller controller(controller_options, *datapath, state, certificates.get());
  // Before anything is applied: a second daemon on this state dir stops here.
  // SIGHUP and `zmeshctl reload`: the certificate files (a CA rotation when the roots changed:
  // every HBONE connection is retired so new streams handshake with the new material), then the
  // config. A failure keeps what runs and is thrown for the caller to report.
  const auto rotate_certificates = [&] {
    if (!certificates) return;
    try {
      std::vector<zmesh::SpiffeId> local;
      if (const auto snapshot = state.current())
        for (const auto* w : snapshot->mesh.local_workloads()) local.push_back(w->identity);
      if (certificates->rotate(load_certificates(o, false), local) && proxy) proxy->retire_connections();
    } catch (const std::exception& e) {
      spdlog::error("certificates: rotation refused, the current certificates stay: {}", e.what());
      throw std::runtime_error(std::string("certificates: ") + e.what());
    }
  };
  // Both halves run whatever the other did; the first failure is what the caller hears.
  const auto reload = [&] {
    std::exception_ptr failure;
    try {
      rotate_certificates();
    } catch (...) {
      failure = std::current_exception();
    }
    try {
      controller.reload_file(true);
    } catch (...) {
      if (!failure) failure = std::current_exception();
    }
    if (failure) std::rethrow_exception(failure);
  };
  zmesh::ControlServer control(io, state_dir / zmesh::control::kSocketName, controller, o.datapath.pin_root, reload);
  controller.start(std::move(initial));
  datapath->commit_start();
  if (with_proxy) {
    zmesh::ProxyOptions proxy_options = o.proxy_options;
    proxy_options.outbound_addresses = {boost::asio::ip::make_address(o.outbound_ip4)};
    if (!o.outbound_ip6.empty()) proxy_options.outbound_addresses.push_back(boost::asio::ip::make_address(o.outbound_ip6));
    proxy = std::make_unique<zmesh::Proxy>(
        zmesh::ProxyInputs{io, *datapath, state, *certificates, telemetry, proxy_options});
    controller.set_proxy(proxy.get());
    proxy->start();
    boost::asio::co_spawn(io, certificates->renew_forever(), boost::asio::detached);
  }
  // Reloads: SIGHUP always re-applies; a file change only when the text changed. A bad file
  // is logged and the running state stays (Controller::reload_file).
  std::function<void()> on_hangup = [&] {
    hangup.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      try {
        reload();
      } catch (const std::exception&) {  // logged where it failed; the running state stays
      }
      on_hangup();
    });
  };
  on_hangup();
  std::unique_ptr<zmesh::FileWatch> watch;
  if (!o.config_path.empty()) {
    watch = std::make_unique<zmesh::FileWatch>(io, o.config_path, [&] {
      try {
        controller.reload_file(false);
      } catch (const std::exception&) {
      }
    });
    watch->start();
  }
  // The trust bundle and the built-in CA's root are watched too (a Secret or ConfigMap update).
  std::vector<std::unique_ptr<zmesh::FileWatch>> certificate_watches;
  for (const std::string& file : {o.trust_bundle, o.ca_dir.empty() ? std::string() : o.ca_dir + "/root-cert.pem"}) {
    if (file.empty() || !certificates) continue;
    certificate_watches.push_back(std::make_unique<zmesh::FileWatch>(io, file, [&] {
      try {
        rotate_certificates();
      } catch (const std::exception&) {  // logged; a half-written file is read again on its next change
      }
    }));
    certificate_watches.back()->start();
  }
  control.start();
  // Every interface of the node gets tc ingress as it appears (a pod's veth, a tunnel).
  zmesh::LinkWatch links(
      io, [&](const std::string& name) { datapath->interface_added(name); },
      [&](const std::string& name) { datapath->interface_removed(name); });
  links.start();
  datapath->rescan_interfaces();  // what appeared between start() and the subscription
  // Runtime pods whose cgroup vanished without a DEL reaching us are dropped on a timer; the
  // interfaces are rescanned with them (netlink may drop events under a burst).
  boost::asio::co_spawn(io, every(std::chrono::milliseconds(o.gc_interval_ms), [&] {
    try {
      controller.drop_vanished_pods();
      datapath->rescan_interfaces();
    } catch (const std::exception& e) {
      spdlog::error("controller: periodic work failed: {}", e.what());
    }
  }), boost::asio::detached);
  // Memory given back: after a burst (10,000 connections closed) glibc keeps the freed heap,
  // and RSS would stay at the peak (151 MiB in bench/run) for the daemon's life. Every 5 s,
  // when more than 8 MiB of the heap is free, it goes back to the kernel.
  boost::asio::co_spawn(io, every(std::chrono::seconds(5), [] {
    if (mallinfo2().fordblks > (8u << 20)) malloc_trim(0);
  }), boost::asio::detached);
  // Metrics and admin last: once readiness says 200, the datapath is attached and
  // certificates are loaded.
  auto metrics = [&] {
    zmesh::DaemonMetrics m;
    if (proxy) m.proxy = proxy->stats();
    m.kernel = datapath->counters();
    if (certificates) {
      m.renewals = certificates->renewals();
      m.rotations = certificates->rotations();
      for (const auto& id : certificates->identities())
        m.certificate_expiry.emplace_back(id.uri(), certificates->certificate(id).not_after);
    }
    return m;
  };
  using zmesh::AdminRequest;
  using zmesh::AdminResponse;
  const std::string text = "text/plain; charset=utf-8";
  // Endpoints that change the daemon answer root (a kubelet's preStop hook) and zmeshd's uid.
  const auto not_root = [&](const char* what) {
    return AdminResponse{403, text, std::string(what) + " changes zmeshd: only root may use it\n"};
  };
  std::vector<std::unique_ptr<zmesh::AdminServer>> admin;
  admin.push_back(std::make_unique<zmesh::AdminServer>(
      io, boost::asio::ip::tcp::endpoint(any, zmesh::AdminServer::kMetricsPort),
      std::map<std::string, zmesh::AdminServer::Handler>{
          {"/metrics", [&](const AdminRequest&) {
             return AdminResponse{200, "text/plain; version=0.0.4; charset=utf-8",
                                  telemetry.prometheus_text() + zmesh::prometheus_text(metrics())};
           }}},
      zmesh::AdminLimits{.connections = 64, .per_client = 8}));
  admin.push_back(std::make_unique<zmesh::AdminServer>(
      io, boost::asio::ip::tcp::endpoint(boost::asio::ip::address_v4::loopback(), zmesh::AdminServer::kAdminPort),
      std::map<std::string, zmesh::AdminServer::Handler>{
          {"/healthz/ready", ready},
          {"/stats", [&](const AdminRequest&) {
             return AdminResponse{200, "application/json", zmesh::json_text(zmesh::stats_json(metrics()), 2) + "\n"};
           }},
          {"/config_dump", [&](const AdminRequest&) {
             const nlohmann::json dump = {{"status", controller.status()},
                                          {"workloads", controller.workloads()},
                                          {"services", controller.services()},
                                          {"policies", controller.policies()},
                                          {"certificates", controller.certificates()}};
             return AdminResponse{200, "application/json", zmesh::json_text(dump, 2) + "\n"};
           }},
          // As Envoy's: GET shows, POST ?level=debug (and/or ?accessLogFormat=json|text) changes.
          {"/logging", [&](const AdminRequest& r) {
             if (!r.query.empty() && r.method != "POST")
               return AdminResponse{405, text, "change the log with POST /logging?level=LEVEL\n"};
             if (!r.query.empty() && !r.privileged) return not_root("/logging");
             if (auto it = r.query.find("level"); it != r.query.end()) {
               const auto level = spdlog::level::from_str(it->second);
               if (level == spdlog::level::off && it->second != "off")
                 return AdminResponse{400, text, "level '" + it->second + "': expected trace, debug, info, warn, error, off\n"};
               spdlog::set_level(level);
               spdlog::info("zmeshd: log level now {}", it->second);
             }
             if (auto it = r.query.find("accessLogFormat"); it != r.query.end()) {
               if (it->second != "json" && it->second != "text")
                 return AdminResponse{400, text, "accessLogFormat '" + it->second + "': expected json or text\n"};
               telemetry.set_access_log_json(it->second == "json");
             }
             for (const auto& [key, value] : r.query)
               if (key != "level" && key != "accessLogFormat")
                 return AdminResponse{400, text, "unknown parameter '" + key + "' (level, accessLogFormat)\n"};
             const nlohmann::json shown = {
                 {"level", spdlog::level::to_string_view(spdlog::get_level()).data()},
                 {"accessLog", telemetry.access_log().target},
                 {"accessLogFormat", telemetry.access_log().json ? "json" : "text"}};
             return AdminResponse{200, "application/json", zmesh::json_text(shown) + "\n"};
           }},
          // POST as Envoy's; GET too, since a kubelet preStop httpGet hook can only GET.
          {"/quitquitquit", [&](const AdminRequest& r) {
             if (r.method != "POST" && r.method != "GET") return AdminResponse{405, text, "use POST\n"};
             if (!r.privileged) return not_root("/quitquitquit");
             boost::asio::post(io, [&] { drain("/quitquitquit"); });
             return AdminResponse{200, text, "draining; exiting when connections end (at most " +
                                                 std::to_string(o.drain_timeout_ms) + " ms)\n"};
           }}},
      zmesh::AdminLimits{.connections = 16, .per_client = 4, .identify_peers = true}));
  for (auto& server : admin) server->start();
  not_ready.clear();
  const auto status = controller.status();
  spdlog::info("zmeshd ready: node {}, {} workloads enrolled, {} policies, {} links pinned under {}, proxy {}, "
               "control socket {}",
               o.node, status["enrolledHere"].get<size_t>(), status["policies"].get<size_t>(),
               datapath->pinned_links().size(), o.datapath.pin_root.string(), o.proxy,
               (state_dir / zmesh::control::kSocketName).string());
  io.run();
  if (proxy) {
    const auto s = proxy->stats();
    spdlog::info("zmeshd: stopped; served {} outbound, {} HBONE, {} plaintext connections; {} TLS handshakes out, {} in",
                 s.outbound_accepted, s.inbound_hbone_accepted, s.inbound_plain_accepted, s.client_handshakes,
                 s.server_handshakes);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"zmeshd: the zmesh node daemon (mTLS, L4 policy and load balancing for the pods of one node)"};
  Options o;
  app.set_version_flag("--version", std::string("zmeshd ") + ZMESH_VERSION);
  app.add_flag("--check", o.check_only, "check the kernel (BTF, bpffs, cgroup v2, BPF programs), print JSON and exit");
  app.add_flag("--cleanup", o.cleanup, "detach and unpin everything under --bpf-root, remove the routing rule, exit");
  app.add_option("--log-level", o.log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app.add_option("--config", o.config_path,
                 "mesh config (JSON: workloads, services, policies; docs/config.md); reloaded when it changes and on SIGHUP")
      ->check(CLI::ExistingFile);
  app.add_option("--state-dir", o.state_dir,
                 "control socket (control.sock, root only) and runtime changes (runtime.json); one per daemon")
      ->capture_default_str();
  app.add_option("--node", o.node, "this node's name: workloads with this node are enrolled here");
  app.add_option("--bpf-root", o.datapath.pin_root, "where maps and links are pinned (one per daemon)")
      ->capture_default_str();
  app.add_option("--outbound-ip", o.outbound_ip4, "IPv4 address pods reach the proxy on (their gateway)")
      ->check(CLI::ValidIPV4);
  app.add_option("--outbound-ip6", o.outbound_ip6, "IPv6 address pods reach the proxy on");
  app.add_option("--uplink", o.uplinks, "deprecated and ignored: every interface of the node gets tc ingress");
  app.add_option("--node-capture", o.node_capture,
                 "capture the node's own connects to its pods and to services, as identity-less sources")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_option("--host-cgroup", o.datapath.host_cgroup,
                 "cgroup whose processes are the node's own (default: the cgroup v2 root)");
  app.add_option("--probe-cgroup", o.probe_cgroup,
                 "the kubelet's cgroup: its health probes reach pods directly (auto: systemd's "
                 "system.slice/kubelet.service; none: no exemption)")
      ->capture_default_str();
  app.add_option("--sockmap", o.sockmap, "same-node short-cut through the sockhash (see docs/datapath.md before turning it on)")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_option("--tc-mode", o.tc_mode, "how tc ingress attaches")
      ->check(CLI::IsMember({"auto", "tcx", "clsact"}))
      ->capture_default_str();
  app.add_option("--proxy", o.proxy, "the node proxy (15001/15006/15008); off = kernel datapath only")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_option("--trust-domain", o.trust_domain, "SPIFFE trust domain of the mesh")->capture_default_str();
  app.add_option("--ca-dir", o.ca_dir, "the built-in CA: root-cert.pem and root-key.pem, created when missing");
  app.add_option("--cert-dir", o.cert_dir,
                 "external CA: workload certificates in DIR/<namespace>/<serviceAccount>/{cert-chain,key}.pem")
      ->excludes("--ca-dir");
  app.add_option("--trust-bundle", o.trust_bundle, "PEM file of trusted roots (required with --cert-dir; "
                 "with --ca-dir, roots trusted besides the CA's own, for rotation)");
  app.add_option("--cert-ttl", o.cert_ttl_s, "lifetime of workload certificates, seconds (renewed at half life)")
      ->check(CLI::Range(int64_t{2}, int64_t{365 * 24 * 3600}))
      ->capture_default_str();
  app.add_option("--drain-timeout-ms", o.drain_timeout_ms, "on SIGTERM, how long open connections may finish")
      ->capture_default_str();
  app.add_option("--pod-cidr", o.pod_cidrs,
                 "a cluster pod CIDR (repeatable): pods in it that the config does not name are reached over "
                 "HBONE, trusting any identity of the trust domain (pods a CNI plugin enrolled on other nodes)");
  app.add_option("--access-log", o.access_log.target,
                 "one line per connection when it ends: - (stdout), off, or a file (appended)")
      ->capture_default_str();
  std::string access_log_format = "json";
  app.add_option("--access-log-format", access_log_format, "json or text (also at run time: POST /logging)")
      ->check(CLI::IsMember({"json", "text"}))
      ->capture_default_str();
  int64_t pool_idle_ms = o.proxy_options.pool_idle_timeout.count();
  app.add_option("--pool-idle-timeout-ms", pool_idle_ms, "close pooled HBONE connections idle this long")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--gc-interval-ms", o.gc_interval_ms,
                 "how often runtime-enrolled pods whose cgroup is gone (no DEL came) are dropped")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  int64_t keepalive_ms = o.proxy_options.hbone_keepalive.count();
  app.add_option("--hbone-keepalive-ms", keepalive_ms,
                 "HBONE connections: a PING after this long without a byte from the peer, closed after twice it")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  int64_t handshake_ms = o.proxy_options.handshake_timeout.count();
  app.add_option("--handshake-timeout-ms", handshake_ms,
                 "a peer that has not finished its TLS handshake (or sent its CONNECT) by then is cut off")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  o.proxy_options.pool_idle_timeout = std::chrono::milliseconds(pool_idle_ms);
  o.proxy_options.handshake_timeout = std::chrono::milliseconds(handshake_ms);
  o.proxy_options.hbone_keepalive = std::chrono::milliseconds(keepalive_ms);
  o.access_log.json = access_log_format == "json";
  // The log goes to stderr; stdout carries only what a command prints for scripts (--check).
  spdlog::set_default_logger(spdlog::stderr_color_mt("zmeshd"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(spdlog::level::from_str(o.log_level));
  if (!o.uplinks.empty())
    spdlog::warn("zmeshd: --uplink is no longer needed and is ignored: every interface of the node gets tc ingress");

  try {
    if (o.check_only) {
      const zmesh::SelfCheck check = zmesh::run_self_check();
      std::cout << zmesh::json_text(check.to_json(), 2) << '\n';
      return check.ok() ? 0 : 1;
    }
    if (o.cleanup) {
      zmesh::BpfDatapath::cleanup(datapath_options(o));
      spdlog::info("zmeshd: removed everything under {}", o.datapath.pin_root.string());
      return 0;
    }
    if (o.outbound_ip4.empty()) {
      spdlog::error("zmeshd: --outbound-ip is required (the address pods reach this node's proxy on)");
      return 2;
    }
    return serve(o);
  } catch (const std::exception& e) {
    spdlog::error("zmeshd: {}", e.what());
    return 1;
  }
}
