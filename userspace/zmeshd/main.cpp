// zmeshd, the node daemon: the composition root. It reads its options, checks the kernel and
// its config before it changes anything on the node, builds every component from them, and
// serves until SIGTERM/SIGINT or /quitquitquit. Stopping leaves the pinned programs attached on
// purpose: captured connects then fail closed until a new zmeshd adopts them (`--cleanup`
// removes them).
#include <malloc.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <csignal>
#include <future>
#include <iostream>

#include "admin_routes.h"
#include "control_server.h"
#include "controller.h"
#include "istiod.h"
#include "link_watch.h"
#include "options.h"
#include "reloader.h"
#include "self_check.h"
#include "zmesh/control.h"
#include "zmesh/json.h"

#ifdef ZMESH_JEMALLOC
#include <jemalloc/jemalloc.h>

// jemalloc reads this at its start: a background thread purges freed pages after a second
// (dirty), and gives them straight back to the kernel (no "muzzy" stage), so RSS comes down
// after a burst without a call on the event loop.
extern "C" {
extern const char* malloc_conf;
const char* malloc_conf = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0";
}
#endif

namespace {

namespace asio = boost::asio;
using zmesh::DaemonOptions;

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

// Runs `work` every `interval` until the io_context stops; a failure is logged, not fatal.
asio::awaitable<void> every(std::chrono::milliseconds interval, const char* what, std::function<void()> work) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    timer.expires_after(interval);
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    try {
      work();
    } catch (const std::exception& e) {
      spdlog::error("zmeshd: {} failed: {}", what, e.what());
    }
  }
}

// Runs `work` on the io_context's thread and waits for its result: the xDS client's thread
// hands the controller (single-threaded) its changes this way. A stopped io_context answers.
std::string on_io_thread(asio::io_context& io, std::function<std::string()> work) {
  auto result = std::make_shared<std::promise<std::string>>();
  auto done = result->get_future();
  asio::post(io, [result, work = std::move(work)] {
    try {
      result->set_value(work());
    } catch (const std::exception& e) {
      result->set_value(e.what());
    }
  });
  while (done.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready)
    if (io.stopped()) return "zmeshd is stopping";
  return done.get();
}

zmesh::XdsMetrics xds_metrics(const zmesh::xds::Feed& client) {
  zmesh::XdsMetrics m{client.connected(), client.connects(), zmesh::xds::istiod().ca_failures(), {}};
  for (const auto& [name, type] : {std::pair{"Address", zmesh::xds::kAddressType},
                                   std::pair{"Authorization", zmesh::xds::kAuthorizationType}}) {
    const auto& s = client.stats(type);
    m.types.push_back({name, s.received, s.applied, s.nacked, s.resources, s.last_update_unix});
  }
  return m;
}

int serve(const DaemonOptions& o) {
  raise_fd_limit();
  asio::io_context io;
  // Readiness says why not until the end of start-up, and again while draining.
  std::string not_ready = "starting";

  // 1. Nothing changes on the node before the kernel, the certificates and the config pass.
  const zmesh::SelfCheck check = zmesh::run_self_check(o.datapath.pin_root);
  if (!check.ok()) {
    for (const auto& problem : check.problems) spdlog::error("kernel check: {}", problem);
    return 1;
  }
  // istiod's client is a module of its own (istiod.h), loaded only when istiod feeds zmeshd.
  if (o.xds.enabled) zmesh::xds::istiod();
  std::unique_ptr<zmesh::Certificates> certificates;
  if (o.proxy) certificates = std::make_unique<zmesh::Certificates>(zmesh::load_certificates(o, true));
  const zmesh::ControllerOptions controller_options{o.node, o.trust_domain, o.config,
                                                    o.state_dir / zmesh::control::kRuntimeName,
                                                    o.datapath.outbound_ip6.has_value(), o.proxy_options.pod_cidrs};
  auto initial = zmesh::Controller::load(controller_options);

  // 2. The datapath (it takes the pin root's lock), then readiness, so a kubelet sees each step.
  zmesh::DatapathOptions datapath_options = o.datapath;
  datapath_options.probe_cgroup = zmesh::resolve_probe_cgroup(o.probe_cgroup);
  auto datapath = zmesh::BpfDatapath::start(datapath_options);
  datapath->set_destination_cidrs(o.proxy_options.pod_cidrs);
  zmesh::Telemetry telemetry(o.access_log);
  std::unique_ptr<zmesh::Proxy> proxy;
  std::unique_ptr<zmesh::xds::Feed> xds_client;
  auto metrics = [&] {
    zmesh::DaemonMetrics m;
    if (proxy) {
      m.proxy = proxy->stats();
      m.workers = proxy->worker_stats();
    }
    m.kernel = datapath->counters();
    if (xds_client) m.xds = xds_metrics(*xds_client);
    if (certificates) {
      m.renewals = certificates->renewals();
      m.rotations = certificates->rotations();
      for (const auto& id : certificates->identities())
        m.certificate_expiry.emplace_back(id.uri(), certificates->certificate(id).not_after);
    }
    return m;
  };
  bool draining = false;
  auto drain = [&](const std::string& why) {
    if (std::exchange(draining, true)) return;
    not_ready = "draining";
    spdlog::info("zmeshd: {}, draining for up to {} ms (redirection stays pinned; --cleanup removes it)", why,
                 o.drain_timeout.count());
    if (!proxy) return io.stop();
    proxy->drain(o.drain_timeout, [&] { io.stop(); });
  };
  zmesh::MeshState state;
  // The proxy's worker threads read the state: they stop before it goes, however serve() ends.
  struct StopProxyFirst {
    std::unique_ptr<zmesh::Proxy>& proxy;
    ~StopProxyFirst() { proxy.reset(); }
  } stop_proxy_first{proxy};
  zmesh::Controller controller(controller_options, *datapath, state, certificates.get());
  const zmesh::AdminInputs admin_inputs{not_ready, metrics, telemetry, controller,
                                        [&](const std::string& why) { asio::post(io, [&, why] { drain(why); }); },
                                        o.drain_timeout};
  const auto any = asio::ip::address_v6::any();
  zmesh::AdminServer readiness(io, {any, zmesh::AdminServer::kReadinessPort}, zmesh::readiness_routes(admin_inputs));
  readiness.start();

  // 3. The mesh state: the control socket (a second daemon on this state dir stops here), the
  // config applied (the kernel maps filled), then this daemon's programs into every hook.
  zmesh::Reloader reloader({io, o, controller, state, certificates.get(), [&] { return proxy.get(); }});
  zmesh::ControlServer control(io, o.state_dir / zmesh::control::kSocketName, controller, o.datapath.pin_root,
                               [&] { reloader.reload(); });
  controller.start(std::move(initial));
  datapath->commit_start();

  // 4. The proxy, and what keeps the state current.
  if (o.proxy) {
    zmesh::ProxyOptions proxy_options = o.proxy_options;
    proxy_options.outbound_addresses = {o.datapath.outbound_ip4};
    proxy_options.splice = !o.datapath.sockmap;
    if (o.datapath.outbound_ip6) proxy_options.outbound_addresses.push_back(*o.datapath.outbound_ip6);
    proxy = std::make_unique<zmesh::Proxy>(zmesh::ProxyInputs{io, *datapath, state, *certificates, telemetry, proxy_options,
                                                              o.datapath.fast_path ? datapath.get() : nullptr});
    controller.set_proxy(proxy.get());
    proxy->start();
    asio::co_spawn(io, certificates->renew_forever(), asio::detached);
  }
  // istiod's feed: its own thread, each change carried to this one and applied by the
  // controller. Readiness waits for the first response of each type (and with it, the local
  // pods' certificates); after that zmeshd serves what it has whenever istiod is away.
  if (o.xds.enabled) {
    xds_client = zmesh::xds::istiod().feed(o.xds.istiod, o.xds.node, [&](zmesh::xds::Delta delta) {
      auto change = std::make_shared<zmesh::xds::Delta>(std::move(delta));
      return on_io_thread(io, [&controller, change] { return controller.apply_xds(std::move(*change)); });
    });
    controller.set_xds_status([&] {
      auto j = zmesh::xds_json(xds_metrics(*xds_client));
      j["address"] = o.xds.istiod.address;
      j["lastError"] = xds_client->last_error();
      return j;
    });
    xds_client->start();
    asio::co_spawn(io, every(std::chrono::milliseconds(100), "xDS readiness", [&] {
      if (not_ready.starts_with("waiting for istiod") && xds_client->synced()) {
        not_ready.clear();
        spdlog::info("zmeshd: ready: the first Address and Authorization responses from {} are in force", o.xds.istiod.address);
      }
    }), asio::detached);
  }
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int signal) { drain("signal " + std::to_string(signal)); });
  reloader.start();
  control.start();
  // Every interface of the node gets tc ingress as it appears (a pod's veth, a tunnel).
  zmesh::LinkWatch links(
      io, [&](const std::string& name) { datapath->interface_added(name); },
      [&](const std::string& name) { datapath->interface_removed(name); });
  links.start();
  datapath->rescan_interfaces();  // what appeared between start() and the subscription
  // Runtime pods whose cgroup vanished without a DEL reaching us are dropped on a timer; the
  // interfaces are rescanned with them (netlink may drop events under a burst).
  asio::co_spawn(io, every(o.gc_interval, "periodic pod and interface check", [&] {
    controller.drop_vanished_pods();
    datapath->rescan_interfaces();
  }), asio::detached);
  // Memory given back after a burst (issue 18). jemalloc purges freed pages itself (its
  // background thread, after a second), but each thread's cache keeps what that thread freed
  // last until it allocates again: an idle worker held 3 MiB of freed objects, and the 7 MiB of
  // pages under them, after 10,000 connections closed. Every second each worker hands its
  // cache back (a busy worker's cache refills at once; jemalloc trims it as often anyway).
  // glibc (the sanitizer builds) keeps the freed heap: every 5 s, when more than 8 MiB of it is
  // free, it goes back to the kernel.
#ifdef ZMESH_JEMALLOC
  asio::co_spawn(io, every(std::chrono::seconds(1), "allocator cache flush", [&] {
    const std::function<void()> flush = [] { mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0); };
    if (proxy) proxy->post_to_each_worker(flush);  // worker 0 is this thread
    else flush();
  }), asio::detached);
#else
  asio::co_spawn(io, every(std::chrono::seconds(5), "heap trim", [] {
    if (mallinfo2().fordblks > (8u << 20)) malloc_trim(0);
  }), asio::detached);
#endif

  // 5. Metrics and admin last: once readiness says 200, all of the above is in place.
  zmesh::AdminServer metrics_server(io, {any, zmesh::AdminServer::kMetricsPort}, zmesh::metrics_routes(admin_inputs));
  zmesh::AdminServer admin(io, {asio::ip::address_v4::loopback(), zmesh::AdminServer::kAdminPort},
                           zmesh::admin_routes(admin_inputs),
                           {.connections = 16, .per_client = 4, .identify_peers = true});
  metrics_server.start();
  admin.start();
  not_ready = xds_client && !xds_client->synced() ? "waiting for istiod " + o.xds.istiod.address : "";
  const auto status = controller.status();
  spdlog::info("zmeshd ready: node {}, {} workloads enrolled, {} policies, {} links pinned under {}, proxy {}, "
               "control socket {}",
               o.node, status["enrolledHere"].get<size_t>(), status["policies"].get<size_t>(),
               datapath->pinned_links().size(), o.datapath.pin_root.string(), o.proxy ? "on" : "off",
               (o.state_dir / zmesh::control::kSocketName).string());
  io.run();
  if (xds_client) xds_client->stop();
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
  auto parsed = zmesh::parse_options(argc, argv);
  if (const int* exit_code = std::get_if<int>(&parsed)) return *exit_code;
  const DaemonOptions& o = std::get<DaemonOptions>(parsed);
  // The log goes to stderr; stdout carries only what a command prints for scripts (--check).
  spdlog::set_default_logger(spdlog::stderr_color_mt("zmeshd"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(o.log_level);
  try {
    switch (o.mode) {
      case DaemonOptions::Mode::Check: {
        const zmesh::SelfCheck check = zmesh::run_self_check(o.datapath.pin_root);
        std::cout << zmesh::json_text(check.to_json(), 2) << '\n';
        return check.ok() ? 0 : 1;
      }
      case DaemonOptions::Mode::Cleanup:
        zmesh::BpfDatapath::cleanup(o.datapath);
        spdlog::info("zmeshd: removed everything under {}", o.datapath.pin_root.string());
        return 0;
      case DaemonOptions::Mode::Hold: {
        // Nothing of zmesh runs: the pod stays Ready so that `helm upgrade --wait` knows every
        // node's cleanup (its init containers) is done (helm/zmesh/README.md, "Uninstall").
        sigset_t stop;
        sigemptyset(&stop);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGINT);
        sigprocmask(SIG_BLOCK, &stop, nullptr);
        spdlog::info("zmeshd: holding (zmesh is not running on this node); SIGTERM ends it");
        int signal = 0;
        sigwait(&stop, &signal);
        return 0;
      }
      case DaemonOptions::Mode::Serve: return serve(o);
    }
  } catch (const std::exception& e) {
    spdlog::error("zmeshd: {}", e.what());
    return 1;
  }
  return 1;
}
