// zm-echo in the lab: a server in a pod or node, and a sender that checks every byte.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "lab.h"

namespace zmesh::test {

// Starts `zm-echo serve` in `where` and waits until it listens.
std::unique_ptr<Process> echo_server(const Lab& lab, const std::string& where, int port,
                                     const std::vector<std::string>& extra = {});

// Runs `zm-echo send` from `from` to `to`:`port` with `bytes` bytes; exit 0 = all echoed back.
Result echo_send(const Lab& lab, const std::string& from, const std::string& to, int port, int bytes = 1 << 20,
                 const std::vector<std::string>& extra = {});

}  // namespace zmesh::test
