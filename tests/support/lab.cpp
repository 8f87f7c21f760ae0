#include "lab.h"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "eventually.h"

namespace zmesh::test {

std::string source_path(const std::string& relative) { return std::string(ZMESH_SOURCE_DIR) + "/" + relative; }
std::string bin_path(const std::string& name) { return std::string(ZMESH_BIN_DIR) + "/" + name; }

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

Result run_lab(const std::vector<std::string>& args) {
  std::vector<std::string> argv{source_path("scripts/lab")};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

std::string Lab::unique_name() {
  static std::atomic<int> counter{0};
  return "t" + std::to_string(getpid()) + "-" + std::to_string(counter++);
}

Lab::Lab(LabOptions options) : name_(unique_name()) {
  std::vector<std::string> args{"up",     "--name", name_, "--nodes", std::to_string(options.nodes), "--pods",
                                std::to_string(options.pods), "--owner", std::to_string(getpid()), "--bin",
                                ZMESH_BIN_DIR};
  if (!options.mesh) args.push_back("--no-mesh");
  if (!options.policies.empty()) {
    const std::string file = "/tmp/zmesh-policies-" + name_ + ".json";
    std::ofstream(file) << options.policies;
    args.push_back("--policies");
    args.push_back(file);
  }
  for (const auto& pod : options.not_in_config) {
    args.push_back("--not-in-config");
    args.push_back(pod);
  }
  for (const auto& pod : options.permissive) {
    args.push_back("--permissive");
    args.push_back(pod);
  }
  if (options.restart_delay_ms >= 0) {
    args.push_back("--restart-delay-ms");
    args.push_back(std::to_string(options.restart_delay_ms));
  }
  for (const auto& [flag, value] : {std::pair{"--xds-address", &options.xds_address},
                                    std::pair{"--xds-root-cert", &options.xds_root_cert},
                                    std::pair{"--xds-token", &options.xds_token}})
    if (!value->empty()) {
      args.push_back(flag);
      args.push_back(*value);
    }
  for (const auto& arg : options.zmeshd_args) {
    args.push_back("--zmeshd-arg");
    args.push_back(arg);
  }
  auto up = run_lab(args);
  if (!options.policies.empty()) std::remove(("/tmp/zmesh-policies-" + name_ + ".json").c_str());
  if (up.exit_code != 0) throw std::runtime_error("lab up " + name_ + " failed: " + up.err);
  up_ = true;
  topology_ = nlohmann::json::parse(up.out);
}

Lab::~Lab() {
  if (up_) down();
}

Result Lab::down() {
  up_ = false;
  return run_lab({"down", "--name", name_});
}

const nlohmann::json& Lab::pod(const std::string& name) const {
  for (const auto& pod : topology_.at("pods"))
    if (pod.at("name") == name) return pod;
  throw std::out_of_range("lab " + name_ + " has no pod " + name);
}

const nlohmann::json& Lab::node(const std::string& name) const {
  for (const auto& node : topology_.at("nodes"))
    if (node.at("name") == name) return node;
  throw std::out_of_range("lab " + name_ + " has no node " + name);
}

void Lab::restart(const std::string& node_name) {
  auto restarted = run_lab({"restart", "--name", name_, "--node", node_name});
  if (restarted.exit_code != 0) throw std::runtime_error("lab restart " + node_name + " failed: " + restarted.err);
  topology_ = nlohmann::json::parse(restarted.out);
}

bool Lab::await_restart(const std::string& node_name, int crashed_pid) {
  const bool restarted = eventually(
      [&] {
        auto shown = run_lab({"show", "--name", name_});
        if (shown.exit_code != 0) return false;
        auto topology = nlohmann::json::parse(shown.out);
        for (const auto& node : topology.at("nodes")) {
          if (node.at("name") != node_name || node.at("zmeshd").at("pid") == crashed_pid) continue;
          topology_ = std::move(topology);
          return true;
        }
        return false;
      },
      std::chrono::seconds(30), std::chrono::milliseconds(100));
  return restarted && wait_ready(node_name);
}

uint32_t attached_programs(const std::string& cgroup, int attach_type) {
  int fd = open(cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  uint32_t ids[16], count = 16, flags = 0;
  int rc = bpf_prog_query(fd, static_cast<bpf_attach_type>(attach_type), 0, &flags, ids, &count);
  close(fd);
  return rc == 0 ? count : 0;
}

std::string Lab::log(const std::string& node_name) const {
  return read_file(node(node_name).at("zmeshd").at("log").get<std::string>());
}

bool Lab::log_shows(const std::string& node_name, const std::string& needle) const {
  return eventually([&] { return log(node_name).find(needle) != std::string::npos; }, std::chrono::seconds(10),
                    std::chrono::milliseconds(100));
}

Result Lab::zmeshctl(const std::string& node_name, const std::vector<std::string>& args) const {
  std::vector<std::string> argv{bin_path("zmeshctl"), "--socket",
                                node(node_name).at("zmeshd").at("controlSocket").get<std::string>(), "-o", "json"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

std::vector<std::string> Lab::zmeshd_command(const std::string& node_name, const std::vector<std::string>& extra,
                                             const std::string& binary, const std::string& state_dir,
                                             const std::vector<std::string>& without) const {
  std::vector<std::string> argv{source_path("scripts/lab"), "run-zmeshd", "--name", name_, "--node", node_name,
                                "--bin", binary.empty() ? bin_path("zmeshd") : binary};
  if (!state_dir.empty()) argv.insert(argv.end(), {"--state-dir", state_dir});
  for (const auto& option : without) argv.insert(argv.end(), {"--without", option});
  argv.push_back("--");
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

bool Lab::wait_ready(const std::string& node_name, int seconds) const {
  return run_lab({"wait-ready", "--name", name_, "--node", node_name, "--timeout", std::to_string(seconds)}).exit_code == 0;
}

std::vector<std::string> Lab::exec(const std::string& target, const std::vector<std::string>& command,
                                   const std::string& cgroup) const {
  std::vector<std::string> argv{source_path("scripts/lab"), "exec", "--name", name_, "--cgroup", cgroup, target, "--"};
  argv.insert(argv.end(), command.begin(), command.end());
  return argv;
}

}  // namespace zmesh::test
