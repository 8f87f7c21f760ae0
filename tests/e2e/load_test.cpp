// Load: 10,000 concurrent proxied connections across nodes (app1-n1 -> redis in app1-n2, every
// one carried as an HBONE stream), each verified with a PING/+PONG once all are open and again
// after they were held; then every descriptor and connection the daemons held is given back.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "lab.h"

namespace zmesh::test {
namespace {

using nlohmann::json;

constexpr int kConnections = 10000;

class LoadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
    lab_ = std::make_unique<Lab>(LabOptions{.nodes = 2, .pods = 1, .mesh = true});
  }
  // A daemon's /stats, read from inside its node (the admin port is on the node's loopback).
  json stats(const std::string& node) const {
    auto r = run(lab_->exec(node, {"curl", "-sS", "--max-time", "5", "http://127.0.0.1:15000/stats"}));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? json::parse(r.out) : json::object();
  }
  static uint64_t fds_of(pid_t pid) {
    uint64_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
      ++n;
    return n;
  }
  static uint64_t rss_kib(pid_t pid) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(status, line);)
      if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
    return 0;
  }
  pid_t zmeshd(const std::string& node) const { return lab_->node(node).at("zmeshd").at("pid"); }

  std::unique_ptr<Lab> lab_;
};

TEST_F(LoadTest, TenThousandConnectionsAcrossNodesEachVerifiedAndAllGivenBack) {
  const std::string dir = lab_->topology().at("stateDir");
  Process redis(lab_->exec("app1-n2", {"redis-server", "--port", "6379", "--protected-mode", "no", "--save", "",
                                       "--appendonly", "no", "--maxclients", "12000", "--dir", dir}),
                Process::Stderr::Merge);
  ASSERT_TRUE(redis.wait_for("Ready to accept connections").has_value());
  const uint64_t fds_before[] = {fds_of(zmeshd("node1")), fds_of(zmeshd("node2"))};
  const uint64_t rss_before = rss_kib(zmeshd("node1"));

  const std::string fifo = dir + "/hold.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  Process holder(lab_->exec("app1-n1", {"sh", "-c", "exec \"$0\" hold --ping --to \"$1\" --port 6379 --count \"$2\" < \"$3\"",
                                        bin_path("zm-echo"), lab_->pod("app1-n2").at("ip").get<std::string>(),
                                        std::to_string(kConnections), fifo}),
                 Process::Stderr::Merge);
  std::ofstream release(fifo);  // opens once the holder has; closing it releases the connections
  const auto held = holder.read_line(std::chrono::seconds(120));
  ASSERT_TRUE(held.has_value());
  EXPECT_EQ(json::parse(*held), (json{{"held", kConnections}, {"verified", kConnections}}));

  // While held: both daemons carry every one of them.
  EXPECT_EQ(stats("node1").at("proxy").at("active"), kConnections);
  EXPECT_EQ(stats("node2").at("proxy").at("active"), kConnections);
  EXPECT_GE(fds_of(zmeshd("node1")), fds_before[0] + kConnections);
  const double kib_per_connection =
      static_cast<double>(rss_kib(zmeshd("node1")) - rss_before) / static_cast<double>(kConnections);
  std::cout << "[ figures  ] node1 zmeshd RSS per held connection: " << kib_per_connection << " KiB\n";
  const auto tls = stats("node1").at("proxy").at("clientHandshakes").get<uint64_t>();
  std::cout << "[ figures  ] " << kConnections << " streams on " << tls << " pooled HBONE connections\n";
  EXPECT_LE(tls, static_cast<uint64_t>(kConnections / 500)) << "streams share pooled TLS connections";

  release.close();
  const auto released = holder.read_line(std::chrono::seconds(120));
  ASSERT_TRUE(released.has_value());
  EXPECT_EQ(json::parse(*released), (json{{"released", kConnections}, {"verified", kConnections}}))
      << "every connection still worked after being held";
  EXPECT_EQ(holder.wait(std::chrono::seconds(60)), 0);

  // Given back: no connection, and the descriptors of before, but for the pooled HBONE
  // connections, which stay until they have been idle for a minute.
  bool settled = false;
  for (int i = 0; i < 100 && !settled; ++i) {
    const json s1 = stats("node1"), s2 = stats("node2");
    settled = s1.at("proxy").at("active") == 0 && s2.at("proxy").at("active") == 0 &&
              fds_of(zmeshd("node1")) <= fds_before[0] + s1.at("proxy").at("poolConnections").get<uint64_t>() &&
              fds_of(zmeshd("node2")) <= fds_before[1] + s2.at("proxy").at("servedConnections").get<uint64_t>();
    if (!settled) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(settled) << "node1 fds " << fds_of(zmeshd("node1")) << " (before " << fds_before[0] << "), node2 fds "
                       << fds_of(zmeshd("node2")) << " (before " << fds_before[1] << ")";
}

}  // namespace
}  // namespace zmesh::test
