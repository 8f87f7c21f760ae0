// Packet captures for the tests (see capture.h).
#include "capture.h"

#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include "eventually.h"

namespace zmesh::test {

Capture::Capture(const std::string& netns, const std::string& ifname, std::string pcap)
    : pcap_(std::move(pcap)),
      dumpcap_({"nsenter", "--net=/run/netns/" + netns, "--", "dumpcap", "-q", "-i", ifname, "-w", pcap_},
               Process::Stderr::Merge) {
  // dumpcap says nothing with -q; it writes the file's header once it captures.
  const bool started = eventually([&] {
    std::error_code ec;
    return std::filesystem::file_size(pcap_, ec) > 0 && !ec;
  });
  if (!started) throw std::runtime_error("dumpcap on " + ifname + " in " + netns + " did not start");
}

Capture::~Capture() { stop(); }

size_t Capture::count(const std::string& filter) const {
  const auto got = run({"tshark", "-r", pcap_, "-Y", filter, "-T", "fields", "-e", "frame.number"});
  return static_cast<size_t>(std::count(got.out.begin(), got.out.end(), '\n'));
}

void Capture::stop() {
  if (stopped_) return;
  stopped_ = true;
  dumpcap_.kill(SIGINT);
  dumpcap_.wait();
}

}  // namespace zmesh::test
