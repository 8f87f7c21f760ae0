// The shipped binaries as a user runs them.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "lab.h"

namespace zmesh::test {
namespace {

TEST(Zmeshd, CheckReportsAKernelThatRunsOurPrograms) {
  if (geteuid() != 0) GTEST_SKIP() << "loading BPF programs needs root";
  auto check = run({bin_path("zmeshd"), "--check"});
  ASSERT_EQ(check.exit_code, 0) << check.out << check.err;
  auto report = nlohmann::json::parse(check.out);
  EXPECT_TRUE(report.at("ok").get<bool>());
  EXPECT_TRUE(report.at("btf").get<bool>());
  EXPECT_TRUE(report.at("problems").empty());
  EXPECT_TRUE(report.at("cgroup2").is_string());
}

TEST(Zmeshd, RejectsBadFlagsWithAMessage) {
  auto bad = run({bin_path("zmeshd"), "--log-level", "loud"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("--log-level"), std::string::npos) << bad.err;
  auto version = run({bin_path("zmeshd"), "--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.out.rfind("zmeshd ", 0), 0u) << version.out;
}

TEST(Zmeshd, SaysWhatIsMissingOrWrongBeforeTouchingTheKernel) {
  auto no_ip = run({bin_path("zmeshd")});
  EXPECT_EQ(no_ip.exit_code, 2);
  EXPECT_NE(no_ip.err.find("--outbound-ip is required"), std::string::npos) << no_ip.err;
  auto bad_ip = run({bin_path("zmeshd"), "--outbound-ip", "10.0.0.300"});
  EXPECT_NE(bad_ip.exit_code, 0);
  EXPECT_NE(bad_ip.err.find("--outbound-ip"), std::string::npos) << bad_ip.err;
  auto no_file = run({bin_path("zmeshd"), "--outbound-ip", "10.0.0.1", "--config", "/nonexistent/mesh.json"});
  EXPECT_NE(no_file.exit_code, 0);
  EXPECT_NE(no_file.err.find("/nonexistent/mesh.json"), std::string::npos) << no_file.err;
}

// zmesh-cni is copied onto every host's CNI bin dir and run by the container runtime: it needs
// the control socket's client and nothing of the kernel datapath (no libbpf).
TEST(ZmeshCni, LinksNoBpfLibrary) {
  auto ldd = run({"ldd", bin_path("zmesh-cni")});
  ASSERT_EQ(ldd.exit_code, 0) << ldd.err;
  EXPECT_EQ(ldd.out.find("libbpf"), std::string::npos) << ldd.out;
  EXPECT_EQ(ldd.out.find("libelf"), std::string::npos) << ldd.out;
}

// gRPC, protobuf and abseil (some fifty libraries, ~6 MiB resident) are istiod's client's, in
// the module zmeshd loads only when istiod feeds it (userspace/xds/istiod.h).
TEST(Zmeshd, LinksNoGrpcLibraryItsIstiodModuleDoes) {
  auto zmeshd = run({"ldd", bin_path("zmeshd")});
  ASSERT_EQ(zmeshd.exit_code, 0) << zmeshd.err;
  for (const char* library : {"libgrpc", "libprotobuf", "libabsl", "libre2"})
    EXPECT_EQ(zmeshd.out.find(library), std::string::npos) << zmeshd.out;
  auto module = run({"ldd", (std::filesystem::path(bin_path("zmeshd")).parent_path().parent_path() /
                             "lib/zmesh/zmesh-istiod.so").string()});
  ASSERT_EQ(module.exit_code, 0) << module.err;
  EXPECT_NE(module.out.find("libgrpc++"), std::string::npos) << module.out;
  EXPECT_EQ(module.out.find("not found"), std::string::npos) << module.out;
}

TEST(Zmeshctl, LabPassesThroughToTheLabScript) {
  if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
  const std::string name = Lab::unique_name();
  auto up = run({bin_path("zmeshctl"), "lab", "up", "--name", name, "--nodes", "1", "--pods", "1", "--no-mesh"});
  ASSERT_EQ(up.exit_code, 0) << up.err;
  EXPECT_EQ(nlohmann::json::parse(up.out).at("name"), name);
  auto down = run({bin_path("zmeshctl"), "lab", "down", "--name", name});
  EXPECT_EQ(down.exit_code, 0) << down.err;
  auto help = run({bin_path("zmeshctl"), "lab", "--help"});
  EXPECT_NE(help.out.find("usage: lab up"), std::string::npos) << help.out;
}

}  // namespace
}  // namespace zmesh::test
