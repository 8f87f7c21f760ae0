// zmeshctl, the operator's CLI. Talks to a zmeshd over its control socket (status, workloads,
// services, policies, certs, maps, enroll/unenroll, policy apply/delete, reload; tables for
// people, `-o json` for scripts), reads a stopped daemon's maps from its pin root
// (`maps --bpf-root`), runs the built-in CA (`ca`), and the lab (`lab ...` runs scripts/lab).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "zmesh/json.h"
#include "zmesh/control.h"
#include "zmesh/maps_json.h"
#include "zmesh/datapath.h"
#include "zmesh/identity.h"

namespace {

using zmesh::json_text;

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

// Reads a file, or stdin for "-".
std::string read_input(const std::string& file) {
  std::stringstream text;
  if (file == "-") {
    text << std::cin.rdbuf();
  } else {
    std::ifstream in(file);
    if (!in) throw std::runtime_error(file + ": cannot read: " + std::strerror(errno));
    text << in.rdbuf();
  }
  return text.str();
}

nlohmann::json parse_json_input(const std::string& file) {
  try {
    return zmesh::parse_json(read_input(file));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error((file == "-" ? std::string("stdin") : file) + ": not valid JSON: " + e.what());
  }
}

std::string cell(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "-";
  if (v.is_array()) {
    std::string out;
    for (const auto& item : v) out += (out.empty() ? "" : ",") + cell(item);
    return out.empty() ? "-" : out;
  }
  return json_text(v);
}

// Rows of objects as aligned columns, for people; `-o json` prints the JSON instead.
void print_table(const nlohmann::json& rows, const std::vector<std::pair<std::string, std::string>>& columns) {
  std::vector<std::vector<std::string>> cells;
  std::vector<size_t> width;
  for (const auto& [title, key] : columns) width.push_back(title.size());
  for (const auto& row : rows) {
    std::vector<std::string> line;
    for (size_t i = 0; i < columns.size(); ++i) {
      line.push_back(row.contains(columns[i].second) ? cell(row[columns[i].second]) : "-");
      width[i] = std::max(width[i], line.back().size());
    }
    cells.push_back(std::move(line));
  }
  auto print = [&](const std::vector<std::string>& line) {
    for (size_t i = 0; i < line.size(); ++i)
      std::cout << line[i] << (i + 1 < line.size() ? std::string(width[i] - line[i].size() + 2, ' ') : "\n");
  };
  std::vector<std::string> titles;
  for (const auto& [title, key] : columns) titles.push_back(title);
  print(titles);
  for (const auto& line : cells) print(line);
}

// Policies and services have nested fields; a few derived columns make the table readable.
nlohmann::json with_summaries(nlohmann::json rows) {
  for (auto& row : rows) {
    if (row.contains("rules")) row["ruleCount"] = row["rules"].size();
    if (row.contains("ports")) {
      std::string ports;
      for (const auto& [from, to] : row["ports"].items()) ports += (ports.empty() ? "" : ",") + from + "->" + json_text(to);
      row["portMap"] = ports;
    }
    if (row.contains("namespace") && row.contains("name"))
      row["key"] = row["namespace"].get<std::string>() + "/" + row["name"].get<std::string>();
  }
  return rows;
}

void print_result(const std::string& command, const nlohmann::json& result, bool json_output) {
  if (json_output) {
    std::cout << json_text(result, 2) << '\n';
    return;
  }
  if (command == "workloads")
    return print_table(with_summaries(result), {{"WORKLOAD", "key"}, {"NODE", "node"}, {"IPS", "workloadIps"},
                                                {"MTLS", "mtlsMode"}, {"PROTOCOL", "protocol"},
                                                {"HERE", "enrolledHere"}, {"SOURCE", "source"},
                                                {"IDENTITY", "identity"}});
  if (command == "services")
    return print_table(with_summaries(result),
                       {{"SERVICE", "key"}, {"VIPS", "vips"}, {"PORTS", "portMap"}, {"ENDPOINTS", "endpoints"}});
  if (command == "policies")
    return print_table(with_summaries(result), {{"POLICY", "key"}, {"ACTION", "action"}, {"RULES", "ruleCount"},
                                                {"KERNEL", "kernelDenyEntries"}, {"SOURCE", "source"}});
  if (command == "certs")
    return print_table(result, {{"IDENTITY", "identity"}, {"SERIAL", "serial"}, {"NOT AFTER", "notAfter"},
                                {"SOURCE", "source"}});
  if (command == "maps") {
    std::cout << "workloads (zm_workloads)\n";
    print_table(result["workloads"], {{"IP", "ip"}, {"MTLS", "mtlsMode"}, {"IFINDEX", "ifindex"}, {"CGROUP", "cgroupId"}});
    std::cout << "\ndestinations (zm_dests)\n";
    print_table(result["destinations"], {{"IP", "ip"}, {"KIND", "kind"}});
    std::cout << "\npod CIDRs (zm_dest_cidrs): " << cell(result["podCidrs"]) << "\n";
    std::cout << "\ndeny rules (zm_l4_deny)\n";
    print_table(result["denyRules"], {{"RULE", "rule"}, {"POLICY", "policy"}, {"SOURCE", "source"},
                                      {"DESTINATION", "destination"}, {"PORT", "port"}, {"PROTOCOL", "protocol"}});
    std::cout << "\ncounters (zm_counters)\n";
    for (const auto& [name, value] : result["counters"].items()) std::cout << "  " << name << " " << value << '\n';
    return;
  }
  // status and the changes answer with the status: key: value lines.
  for (const auto& [key, value] : result.items()) std::cout << key << ": " << cell(value) << '\n';
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
  std::cout << json_text(nlohmann::json{
                   {"identity", id->uri()}, {"serial", cert.serial_hex()}, {"cert", cert_file}, {"key", key_file}})
            << '\n';
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"zmeshctl: inspect and drive zmesh"};
  app.set_version_flag("--version", std::string("zmeshctl ") + ZMESH_VERSION);
  app.require_subcommand(1);
  // Options of zmeshctl itself also after the subcommand, as kubectl users type them
  // (`zmeshctl workloads -o json`); subcommands created below inherit it.
  app.fallthrough();
  std::string socket = std::string(zmesh::control::kDefaultStateDir) + "/" + zmesh::control::kSocketName;
  if (const char* env = std::getenv("ZMESH_SOCKET")) socket = env;
  std::string output = "table";
  app.add_option("--socket", socket, "the daemon's control socket (or $ZMESH_SOCKET)")->capture_default_str();
  app.add_option("-o,--output", output, "table or json")->check(CLI::IsMember({"table", "json"}))->capture_default_str();

  // Commands that are one request to the daemon.
  std::map<CLI::App*, nlohmann::json> requests;
  for (const auto& [name, help] : std::vector<std::pair<std::string, std::string>>{
           {"status", "the daemon's state: generation, counts, last change and last failure"},
           {"workloads", "every workload the daemon knows, with its source (file or runtime)"},
           {"services", "services: VIPs, ports, endpoints"},
           {"policies", "authorization policies, with how many kernel deny entries each produced"},
           {"certs", "the workload certificates this node holds"},
           {"reload", "re-read the config file now (as SIGHUP does); says why when it is rejected"}})
    requests[app.add_subcommand(name, help)] = {{"command", name}};
  std::string pin_root;
  auto* maps = app.add_subcommand("maps", "the kernel maps, decoded (from the daemon, or --bpf-root when it is down)");
  maps->add_option("--bpf-root", pin_root, "read this pin root directly instead of asking the daemon");
  requests[maps] = {{"command", "maps"}};
  std::string file, name;
  auto* enroll = app.add_subcommand("enroll", "add or replace a workload at run time (JSON, the config file's shape)");
  enroll->add_option("-f,--file", file, "workload JSON ('-' = stdin)")->required();
  auto* unenroll = app.add_subcommand("unenroll", "remove a workload enrolled at run time");
  unenroll->add_option("name", name, "NAMESPACE/NAME")->required();
  auto* policy = app.add_subcommand("policy", "authorization policies at run time: apply, delete");
  policy->require_subcommand(1);
  auto* policy_apply = policy->add_subcommand("apply", "add or replace one AuthorizationPolicy (JSON)");
  policy_apply->add_option("-f,--file", file, "policy JSON ('-' = stdin)")->required();
  auto* policy_delete = policy->add_subcommand("delete", "remove a policy applied at run time");
  policy_delete->add_option("name", name, "NAMESPACE/NAME")->required();

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
  lab->fallthrough(false);  // ... not to zmeshctl, whose options are not the script's
  lab->set_help_flag();   // and so does --help: the script documents itself
  CLI11_PARSE(app, argc, argv);

  const bool json_output = output == "json";
  try {
    if (maps->parsed() && !pin_root.empty()) {
      nlohmann::json result = zmesh::maps_json(zmesh::PinnedMaps(pin_root));
      result["pinRoot"] = pin_root;
      print_result("maps", result, json_output);
      return 0;
    }
    for (auto& [command, request] : requests)
      if (command->parsed()) {
        print_result(command->get_name(), zmesh::control::call(socket, request), json_output);
        return 0;
      }
    nlohmann::json request;
    if (enroll->parsed()) request = {{"command", "enroll"}, {"workload", parse_json_input(file)}};
    if (unenroll->parsed()) request = {{"command", "unenroll"}, {"name", name}};
    if (policy_apply->parsed()) request = {{"command", "policy-apply"}, {"policy", parse_json_input(file)}};
    if (policy_delete->parsed()) request = {{"command", "policy-delete"}, {"name", name}};
    if (!request.is_null()) {
      print_result("status", zmesh::control::call(socket, request), json_output);
      return 0;
    }
  } catch (const std::exception& e) {
    std::cerr << "zmeshctl: " << e.what() << '\n';
    return 1;
  }
  if (ca->parsed()) {
    try {
      if (ca_init->parsed()) {
        const auto root = zmesh::CertificateAuthority::load_or_create(ca_dir, trust_domain);
        std::cout << json_text(nlohmann::json{{"trustDomain", root.trust_domain()},
                                              {"cert", ca_dir + "/" + zmesh::CertificateAuthority::kCertFile}})
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
