#include "echo.h"

#include <stdexcept>

namespace zmesh::test {

std::unique_ptr<Process> echo_server(const Lab& lab, const std::string& where, int port,
                                     const std::vector<std::string>& extra) {
  std::vector<std::string> command{bin_path("zm-echo"), "serve", "--port", std::to_string(port)};
  command.insert(command.end(), extra.begin(), extra.end());
  auto server = std::make_unique<Process>(lab.exec(where, command));
  if (!server->wait_for("listening")) throw std::runtime_error("zm-echo serve in " + where + " did not start");
  return server;
}

Result echo_send(const Lab& lab, const std::string& from, const std::string& to, int port, int bytes,
                 const std::vector<std::string>& extra) {
  std::vector<std::string> command{bin_path("zm-echo"), "send", "--to", to, "--port", std::to_string(port),
                                   "--bytes", std::to_string(bytes)};
  command.insert(command.end(), extra.begin(), extra.end());
  return run(lab.exec(from, command));
}

}  // namespace zmesh::test
