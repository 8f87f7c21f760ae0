// Load: 10,000 concurrent proxied connections across nodes (app1-n1 -> redis in app1-n2, every
// one carried as an HBONE stream), each verified with a PING/+PONG once all are open and again
// after they were held; then every descriptor and connection the daemons held is given back.
// Soak: rounds of mixed traffic for a while, sampling both daemons' RSS and descriptors.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "echo.h"
#include "lab.h"
#include "metrics.h"
#include "eventually.h"

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
  json stats(const std::string& node) const { return test::stats(*lab_, node); }
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
  std::unique_ptr<Process> redis() const {
    auto server = std::make_unique<Process>(
        lab_->exec("app1-n2", {"redis-server", "--port", "6379", "--protected-mode", "no", "--save", "", "--appendonly",
                               "no", "--maxclients", "12000", "--dir", lab_->topology().at("stateDir")}),
        Process::Stderr::Merge);
    EXPECT_TRUE(server->wait_for("Ready to accept connections").has_value());
    return server;
  }

  std::unique_ptr<Lab> lab_;
};

TEST_F(LoadTest, TenThousandConnectionsAcrossNodesEachVerifiedAndAllGivenBack) {
  const std::string dir = lab_->topology().at("stateDir");
  auto server = redis();
  const uint64_t fds_before[] = {fds_of(zmeshd("node1")), fds_of(zmeshd("node2"))};
  const uint64_t rss_before = rss_kib(zmeshd("node1"));
  [[maybe_unused]] const uint64_t heap_before = stats("node1").at("heap").at("allocatedBytes");  // not with sanitizers
  // Fed by its config, zmeshd has not mapped istiod's client (gRPC, protobuf: ~6 MiB resident).
  const std::string maps = read_file("/proc/" + std::to_string(zmeshd("node1")) + "/maps");
  ASSERT_FALSE(maps.empty());
  for (const char* library : {"zmesh-istiod.so", "libgrpc", "libprotobuf", "libabsl"})
    EXPECT_EQ(maps.find(library), std::string::npos) << library << " is mapped";

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
  const uint64_t rss_held = rss_kib(zmeshd("node1"));  // what the burst took
  const double kib_per_connection = static_cast<double>(rss_held - rss_before) / static_cast<double>(kConnections);
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
  const bool settled = eventually([&] {
    const json s1 = stats("node1"), s2 = stats("node2");
    return s1.at("proxy").at("active") == 0 && s2.at("proxy").at("active") == 0 &&
           fds_of(zmeshd("node1")) <= fds_before[0] + s1.at("proxy").at("poolConnections").get<uint64_t>() &&
           fds_of(zmeshd("node2")) <= fds_before[1] + s2.at("proxy").at("servedConnections").get<uint64_t>();
  });
  EXPECT_TRUE(settled) << "node1 fds " << fds_of(zmeshd("node1")) << " (before " << fds_before[0] << "), node2 fds "
                       << fds_of(zmeshd("node2")) << " (before " << fds_before[1] << ")";
  // The pool keeps at most two idle connections per key (one key per worker here): the ten or
  // more the burst needed do not wait out the idle minute.
  const size_t workers = stats("node1").at("workers").size();
  EXPECT_TRUE(eventually([&] { return stats("node1").at("proxy").at("poolConnections").get<size_t>() <= 2 * workers; }))
      << stats("node1").at("proxy").dump();
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)  // their quarantine keeps memory
  // And the memory: zmeshd hands the freed heap back (every 5 s when over 8 MiB is free). Not
  // all of it: pages still holding a live allocation stay (glibc cannot move them), so the
  // check is that most of what the burst took is gone. (Measured against the RSS while held:
  // once released, a trim may already have run on a busy machine.)
  const uint64_t rss_released = rss_kib(zmeshd("node1"));
  const uint64_t goal = rss_before + (rss_held - rss_before) / 2;
  uint64_t rss_after = rss_released;
  eventually(
      [&] {
        rss_after = rss_kib(zmeshd("node1"));
        return rss_after <= goal;
      },
      std::chrono::seconds(15), std::chrono::milliseconds(100));
  std::cout << "[ figures  ] node1 zmeshd RSS " << rss_before << " KiB before, " << rss_held << " KiB held, "
            << rss_released << " KiB once released, " << rss_after << " KiB 15 s later at most\n";
  EXPECT_LE(rss_after, goal) << "zmeshd kept the memory of 10,000 closed connections";
  // What zmeshd still holds, by the allocator's count: the burst took about 140 MiB. What may
  // stay is Asio's record of each socket it ever had (168 bytes each, kept for reuse), and the
  // pooled connections, each of whose buffers shrink back once it is quiet; before they did, and
  // before the surplus idle connections were closed, 11-13 MiB stayed.
  uint64_t heap_after = 0;
  eventually(
      [&] {
        heap_after = stats("node1").at("heap").at("allocatedBytes");
        return heap_after <= heap_before + (8 << 20);
      },
      std::chrono::seconds(15), std::chrono::milliseconds(200));
  std::cout << "[ figures  ] node1 zmeshd heap allocated " << (heap_before >> 10) << " KiB before, " << (heap_after >> 10)
            << " KiB after\n";
  EXPECT_LE(heap_after, heap_before + (8 << 20)) << "zmeshd still holds memory of 10,000 closed connections";
#endif
}

// Rounds of traffic for ZMESH_SOAK_SECONDS (20 in `make test`; `make soak` runs longer): 300
// connections opened, PINGed and closed at once, 2,000 redis requests on 20 fresh connections,
// and 8 transfers of 256 KiB with every byte checked, all across the nodes. After each round,
// once both daemons are idle, their RSS and descriptors are sampled. Descriptors must come back
// to exactly the idle count (the pooled HBONE connections aside); RSS must stop growing once
// the allocator has its working set: the last third of the run may not exceed the peak of the
// first two thirds by more than 1 MiB per proxy worker (a leak of a few hundred bytes per
// connection would).
TEST_F(LoadTest, SoakKeepsRssAndDescriptorsFlat) {
  const char* env = std::getenv("ZMESH_SOAK_SECONDS");
  const int seconds = env ? std::max(5, std::atoi(env)) : 20;
  auto server = redis();
  const std::string to = lab_->pod("app1-n2").at("ip");
  auto echo = echo_server(*lab_, "app1-n2", 8080, {"--connections", "1000000"});
  const pid_t daemons[] = {zmeshd("node1"), zmeshd("node2")};
  const uint64_t idle_fds[] = {fds_of(daemons[0]), fds_of(daemons[1])};
  struct Sample {
    double at_s;
    uint64_t rss_kib[2], fds[2];
  };
  std::vector<Sample> samples;
  const auto start = std::chrono::steady_clock::now();
  uint64_t connections = 0;
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(seconds)) {
    auto held = run(lab_->exec("app1-n1", {"sh", "-c", "exec \"$0\" hold --ping --to \"$1\" --port 6379 --count 300 </dev/null",
                                           bin_path("zm-echo"), to}));
    ASSERT_EQ(held.exit_code, 0) << held.out << held.err;
    EXPECT_NE(held.out.find("{\"released\":300,\"verified\":300}"), std::string::npos) << held.out;
    auto bench = run(lab_->exec("app1-n1", {"redis-benchmark", "-h", to, "-n", "2000", "-c", "20", "-d", "512", "-t",
                                            "set,get", "-q"}));
    ASSERT_EQ(bench.exit_code, 0) << bench.out << bench.err;
    for (int i = 0; i < 8; ++i) {
      auto sent = echo_send(*lab_, "app1-n1", to, 8080, 256 << 10);
      ASSERT_EQ(sent.exit_code, 0) << sent.err;
      ASSERT_TRUE(json::parse(sent.out).at("match").get<bool>()) << sent.out;
      // The server's line for it, read here: unread, its pipe fills after ~700 connections and
      // the server blocks in printf before it closes the next one (which once looked like a
      // lost end of stream).
      auto served = echo->read_line(std::chrono::seconds(10));
      ASSERT_TRUE(served.has_value()) << "the echo server said nothing";
      EXPECT_EQ(json::parse(*served).at("bytes"), 256 << 10) << *served;
    }
    connections += 300 + 40 + 8;
    // Idle again: no connection carried, only the pooled HBONE connections besides the idle fds.
    const bool idle = eventually([&] {
      const json s1 = stats("node1"), s2 = stats("node2");
      return s1.at("proxy").at("active") == 0 && s2.at("proxy").at("active") == 0 &&
             fds_of(daemons[0]) == idle_fds[0] + s1.at("proxy").at("poolConnections").get<uint64_t>() &&
             fds_of(daemons[1]) == idle_fds[1] + s2.at("proxy").at("servedConnections").get<uint64_t>();
    });
    ASSERT_TRUE(idle) << "after round " << samples.size() + 1 << ": node1 fds " << fds_of(daemons[0]) << " (idle "
                      << idle_fds[0] << "), node2 fds " << fds_of(daemons[1]) << " (idle " << idle_fds[1] << ")";
    samples.push_back({std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                       {rss_kib(daemons[0]), rss_kib(daemons[1])},
                       {fds_of(daemons[0]), fds_of(daemons[1])}});
  }
  ASSERT_GE(samples.size(), 3u) << "too few rounds to judge";
  std::cout << "[ figures  ] soak " << seconds << " s, " << samples.size() << " rounds, " << connections
            << " connections; per round: t(s) node1 RSS KiB/fds, node2 RSS KiB/fds\n";
  for (const auto& s : samples)
    std::cout << "[ figures  ]   " << s.at_s << " " << s.rss_kib[0] << "/" << s.fds[0] << " " << s.rss_kib[1] << "/"
              << s.fds[1] << "\n";
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // The sanitizers' quarantine and shadow memory grow RSS by design: only descriptors count here.
  GTEST_SKIP() << "RSS is not judged in a sanitizer build (descriptors were: flat)";
#endif
  // 1 MiB per proxy worker: each worker thread allocates from a jemalloc arena of its own, and
  // each arena keeps up to a second of freed pages (dirty_decay_ms) when a sample is taken.
  const size_t cut = samples.size() * 2 / 3;
  for (int d = 0; d < 2; ++d) {
    const uint64_t margin_kib = 1024 * stats(d ? "node2" : "node1").at("workers").size();
    uint64_t early = 0, late = 0;
    for (size_t i = 0; i < samples.size(); ++i) (i < cut ? early : late) = std::max(i < cut ? early : late, samples[i].rss_kib[d]);
    EXPECT_LE(late, early + margin_kib) << "node" << d + 1 << " zmeshd RSS kept growing: peak " << early
                                        << " KiB in the first two thirds, " << late << " KiB after (margin "
                                        << margin_kib << " KiB)";
  }
}

}  // namespace
}  // namespace zmesh::test
