// The mesh config file: workloads and services, in a shape close to ztunnel's local config
// (`workloads`, `services`) so that Istio users recognise it. Plain data; load_config checks
// it and says where and what is wrong ("workloads[2].workloadIps[0]: 'x' is not an IP
// address").
#pragma once

#include <boost/asio/ip/address.hpp>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace zmesh {

struct WorkloadConfig {
  std::string uid;
  std::string name;
  std::string namespace_;
  std::string service_account;
  std::string node;
  std::vector<boost::asio::ip::address> ips;
  bool mtls_strict = true;  // "mtlsMode": "STRICT" (default) | "PERMISSIVE" (plaintext inbound allowed)
  // Where the workload lives on its node; in Kubernetes the CNI plugin tells (issue 8).
  std::string cgroup;
  std::string host_veth;
};

struct ServiceConfig {
  std::string name;
  std::string namespace_;
  std::string hostname;
  std::vector<boost::asio::ip::address> vips;
};

struct MeshConfig {
  std::vector<WorkloadConfig> workloads;
  std::vector<ServiceConfig> services;
};

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

MeshConfig parse_config(const std::string& json_text);            // throws ConfigError
MeshConfig load_config(const std::filesystem::path& path);        // prefixes the file name

}  // namespace zmesh
