// zmeshctl, the operator's CLI. At this stage: `zmeshctl maps` (the kernel maps of a daemon,
// decoded) and `zmeshctl lab ...`, which runs scripts/lab (the mesh of namespaces on this
// machine) from the source tree or install.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <iostream>
#include <vector>

#include "zmesh/datapath.h"
#include "zmesh/identity.h"

namespace {

// The lab script: $ZMESH_LAB, else <source>/scripts/lab next to build/bin, else the install.
std::filesystem::path lab_script() {
  if (const char* env = std::getenv("ZMESH_LAB")) return env;
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  for (auto candidate : {self.parent_path() / "../../scripts/lab", self.parent_path() / "../share/zmesh/lab"}) {
    if (std::filesystem::exists(candidate, ec)) return candidate.lexically_normal();
  }
  return ZMESH_SOURCE_DIR "/scripts/lab";
}

int show_maps(const std::string& pin_root) {
  zmesh::PinnedMaps maps(pin_root);
  nlohmann::json counters = nlohmann::json::object();
  for (const auto& [name, value] : zmesh::named_counters(maps.counters())) counters[name] = value;
  auto strings = [](const std::vector<zmesh::IpAddress>& ips) {
    std::vector<std::string> out;
    for (const auto& ip : ips) out.push_back(ip.to_string());
    return out;
  };
  nlohmann::json out = {{"pinRoot", pin_root},
                        {"counters", counters},
                        {"workloads", strings(maps.workload_ips())},
                        {"destinations", strings(maps.destinations())},
                        {"denyRules", maps.deny_rule_count()}};
  std::cout << out.dump(2) << '\n';
  return 0;
}

// `zmeshctl ca issue`: a workload certificate from a CA directory, for a client outside the
// mesh that must speak HBONE (tests, a debugging session), or an expired one to test refusal.
int issue_certificate(const std::string& dir, const std::string& uri, int64_t ttl, const std::string& cert_file,
                      const std::string& key_file) {
  auto id = zmesh::SpiffeId::parse(uri);
  if (!id) throw zmesh::IdentityError("'" + uri + "' is not spiffe://<trust-domain>/ns/<ns>/sa/<sa>");
  const auto ca = zmesh::CertificateAuthority::load(dir);
  const auto now = std::chrono::system_clock::now();
  const auto cert = ttl > 0 ? ca.issue(*id, std::chrono::seconds(ttl))
                            : ca.issue(*id, now - std::chrono::hours(2), now + std::chrono::seconds(ttl) - std::chrono::hours(1));
  zmesh::write_pem_files(cert, cert_file, key_file);
  std::cout << nlohmann::json{{"identity", id->uri()}, {"serial", cert.serial_hex()}, {"cert", cert_file},
                              {"key", key_file}}.dump()
            << '\n';
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"zmeshctl: inspect and drive zmesh"};
  app.set_version_flag("--version", std::string("zmeshctl ") + ZMESH_VERSION);
  app.require_subcommand(1);
  std::string pin_root = zmesh::DatapathOptions::kDefaultPinRoot;
  auto* maps = app.add_subcommand("maps", "the kernel maps of a zmeshd, decoded, as JSON");
  maps->add_option("--bpf-root", pin_root, "the daemon's pin root")->capture_default_str();
  auto* ca = app.add_subcommand("ca", "the built-in CA: init a root, issue a workload certificate");
  ca->require_subcommand(1);
  std::string ca_dir, trust_domain = "cluster.local", spiffe_id, cert_file, key_file;
  int64_t ttl = 3600;
  auto* ca_init = ca->add_subcommand("init", "create root-cert.pem and root-key.pem in --dir (kept if present)");
  ca_init->add_option("--dir", ca_dir)->required();
  ca_init->add_option("--trust-domain", trust_domain)->capture_default_str();
  auto* ca_issue = ca->add_subcommand("issue", "issue a workload certificate from the CA in --dir");
  ca_issue->add_option("--dir", ca_dir)->required();
  ca_issue->add_option("--id", spiffe_id, "spiffe://<td>/ns/<ns>/sa/<sa>")->required();
  ca_issue->add_option("--cert", cert_file)->required();
  ca_issue->add_option("--key", key_file)->required();
  ca_issue->add_option("--ttl", ttl, "seconds; 0 or less issues one that expired an hour ago")->capture_default_str();
  auto* lab = app.add_subcommand("lab", "the lab mesh of namespaces: up, down, exec, show, list, gc");
  lab->prefix_command();  // everything after `lab` goes to the script untouched
  lab->set_help_flag();   // and so does --help: the script documents itself
  CLI11_PARSE(app, argc, argv);

  if (maps->parsed()) {
    try {
      return show_maps(pin_root);
    } catch (const std::exception& e) {
      std::cerr << "zmeshctl: " << e.what() << '\n';
      return 1;
    }
  }
  if (ca->parsed()) {
    try {
      if (ca_init->parsed()) {
        const auto root = zmesh::CertificateAuthority::load_or_create(ca_dir, trust_domain);
        std::cout << nlohmann::json{{"trustDomain", root.trust_domain()},
                                    {"cert", ca_dir + "/" + zmesh::CertificateAuthority::kCertFile}}.dump()
                  << '\n';
        return 0;
      }
      return issue_certificate(ca_dir, spiffe_id, ttl, cert_file, key_file);
    } catch (const std::exception& e) {
      std::cerr << "zmeshctl: " << e.what() << '\n';
      return 1;
    }
  }
  if (lab->parsed()) {
    const auto script = lab_script();
    std::vector<std::string> args{script.string()};
    for (const auto& arg : lab->remaining()) args.push_back(arg);
    std::vector<char*> argv_out;
    for (auto& arg : args) argv_out.push_back(arg.data());
    argv_out.push_back(nullptr);
    execv(argv_out[0], argv_out.data());
    std::cerr << "zmeshctl: cannot run " << script << ": " << std::strerror(errno) << '\n';
    return 1;
  }
  return 0;
}
