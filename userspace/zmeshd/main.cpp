// zmeshd, the node daemon: the composition root. It checks the kernel, builds every
// component, then serves until SIGTERM/SIGINT. At this stage of the project the components
// are the kernel self-check only; the datapath and the proxy plug in here.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <iostream>

#include "self_check.h"

int main(int argc, char** argv) {
  CLI::App app{"zmeshd: the zmesh node daemon (mTLS, L4 policy and load balancing for the pods of one node)"};
  bool check_only = false;
  std::string log_level = "info";
  app.set_version_flag("--version", std::string("zmeshd ") + ZMESH_VERSION);
  app.add_flag("--check", check_only, "check the kernel (BTF, bpffs, cgroup v2, BPF programs), print JSON and exit");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::from_str(log_level));

  const zmesh::SelfCheck check = zmesh::run_self_check();
  if (check_only) {
    std::cout << check.to_json().dump(2) << '\n';
    return check.ok() ? 0 : 1;
  }
  if (!check.ok()) {
    for (const auto& problem : check.problems) spdlog::error("kernel check: {}", problem);
    return 1;
  }
  spdlog::info("zmeshd {}: kernel {} checked (bpffs {}, cgroup2 {})", ZMESH_VERSION, check.facts.release,
               check.facts.bpffs->string(), check.facts.cgroup2->string());

  boost::asio::io_context io;
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int signal) {
    spdlog::info("zmeshd: signal {}, stopping", signal);
    io.stop();
  });
  io.run();
  return 0;
}
