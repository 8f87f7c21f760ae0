// Lab: the shared end-to-end fixture. Brings up a mesh of namespaces with scripts/lab under
// a name no other run uses, exposes its topology, and takes it down when destroyed (also when
// the test fails). A test process that dies is cleaned up by `lab gc` (ctest's cleanup
// fixture), since every lab records its owner pid.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "process.h"

namespace zmesh::test {

// Paths of the tree under test, from the build.
std::string source_path(const std::string& relative);  // <source>/relative
std::string bin_path(const std::string& name);          // <build>/bin/name
// A whole file's text ("" if it cannot be read).
std::string read_file(const std::string& path);

struct LabOptions {
  int nodes = 2;
  int pods = 2;
  bool mesh = false;                      // start zmeshd on every node (lab up's default)
  std::vector<std::string> zmeshd_args{};  // more arguments for each zmeshd
  std::vector<std::string> permissive{};   // pods that accept plaintext (others: STRICT)
  std::string policies{};                  // JSON list of AuthorizationPolicy for the mesh config
  std::vector<std::string> not_in_config{};  // pods left out of the mesh config (enrolled at run time)
  // xDS mode (lab up --xds-address ...): every zmeshd fed by that server, pods enrolled without
  // a service account, no mesh config; empty: the config file.
  std::string xds_address{}, xds_root_cert{}, xds_token{};
  int restart_delay_ms = -1;  // lab up --restart-delay-ms (a crashed zmeshd comes back after it; 0 = never; -1 = lab's default)
};

// How many programs are attached to a cgroup for one attach type (BPF_PROG_QUERY).
uint32_t attached_programs(const std::string& cgroup, int attach_type);

class Lab {
 public:
  explicit Lab(LabOptions options = {});
  ~Lab();
  Lab(const Lab&) = delete;
  Lab& operator=(const Lab&) = delete;

  const std::string& name() const { return name_; }
  const nlohmann::json& topology() const { return topology_; }
  const nlohmann::json& pod(const std::string& name) const;
  const nlohmann::json& node(const std::string& name) const;

  // argv that runs `command` inside a pod's (or node's) netns and cgroup. On a node, `cgroup`
  // picks which: "host" (its ordinary processes), "kubelet" (health probes), "zmeshd".
  std::vector<std::string> exec(const std::string& target, const std::vector<std::string>& command,
                                const std::string& cgroup = "host") const;
  // A node's zmeshd log, and a bounded wait (10 s) for `needle` to appear in it.
  std::string log(const std::string& node) const;
  bool log_shows(const std::string& node, const std::string& needle) const;
  // argv that runs a zmeshd for `node` as `lab up` does (`lab run-zmeshd`): `binary` (default
  // the build's zmeshd), `state_dir` (default the lab's for that node), then `extra` (an
  // option among them replaces the lab's); the lab's options named in `without` are left out.
  std::vector<std::string> zmeshd_command(const std::string& node, const std::vector<std::string>& extra = {},
                                          const std::string& binary = "", const std::string& state_dir = "",
                                          const std::vector<std::string>& without = {}) const;
  // Whether `node`'s zmeshd answers 200 on :15021/healthz/ready within `seconds`.
  bool wait_ready(const std::string& node, int seconds = 20) const;

  // `zmeshctl --socket <node's control socket> -o json ARGS...`
  Result zmeshctl(const std::string& node, const std::vector<std::string>& args) const;

  // `lab restart --node NODE`: that node's zmeshd stopped and started again (new pid in topology()).
  void restart(const std::string& node);

  // After a crash: waits (30 s at most) until the lab's supervisor has started a new zmeshd on
  // the node (topology() then has its pid) and it is ready. False if none came.
  bool await_restart(const std::string& node, int crashed_pid);

  // Takes the lab down now (the destructor then does nothing).
  Result down();

  // A lab name unique to this process and call.
  static std::string unique_name();

 private:
  std::string name_;
  nlohmann::json topology_;
  bool up_ = false;
};

Result run_lab(const std::vector<std::string>& args);  // runs scripts/lab with args

}  // namespace zmesh::test
