// Everything that makes zmeshd read its files again, in one place:
//   SIGHUP and `zmeshctl reload`  the certificate files (a CA rotation when the roots changed),
//                                 then the config, both whatever the other did;
//   the config file changing      the config, when its text changed;
//   the trust bundle or the built-in CA's root changing (a Secret or ConfigMap update)
//                                 the certificates.
// A failure keeps what runs: it is logged where it happened, and reload() rethrows the first
// one for the control socket's caller.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <functional>
#include <memory>
#include <vector>

#include "controller.h"
#include "file_watch.h"
#include "options.h"
#include "zmesh/certificates.h"
#include "zmesh/proxy.h"

namespace zmesh {

// The certificates the options name: at start-up, and again on each reload. Only start-up
// creates a missing built-in CA.
Certificates load_certificates(const DaemonOptions& options, bool at_start);

class Reloader {
 public:
  struct Inputs {
    boost::asio::io_context& io;
    const DaemonOptions& options;
    Controller& controller;
    const MeshState& state;
    Certificates* certificates;          // null without the proxy
    std::function<Proxy*()> proxy;       // null until it runs
  };
  explicit Reloader(Inputs inputs);

  // Arms SIGHUP and the file watches.
  void start();
  // SIGHUP, `zmeshctl reload`: both halves; throws the first failure.
  void reload();

 private:
  void rotate_certificates();
  void on_hangup();

  Inputs in_;
  boost::asio::signal_set hangup_;
  std::unique_ptr<FileWatch> config_watch_;
  std::vector<std::unique_ptr<FileWatch>> certificate_watches_;
};

}  // namespace zmesh
