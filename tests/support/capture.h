// Capture: a packet capture (dumpcap) on one interface of a namespace the test made, read back
// with tshark, for the tests that show what did or did not cross a link.
#pragma once

#include <string>

#include "process.h"

namespace zmesh::test {

class Capture {
 public:
  // Starts dumpcap on `ifname` inside the netns `netns` (a name under /run/netns), writing
  // `pcap`; returns once it captures. Throws when it does not start.
  Capture(const std::string& netns, const std::string& ifname, std::string pcap);
  ~Capture();
  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;

  // How many captured packets match `filter` (Wireshark's display-filter syntax).
  size_t count(const std::string& filter) const;
  // Stops dumpcap and waits for it. dumpcap takes the kernel's packets in blocks and drops the
  // block it has not taken yet when it stops: stop once a packet sent last shows in count().
  void stop();
  const std::string& path() const { return pcap_; }

 private:
  std::string pcap_;
  Process dumpcap_;
  bool stopped_ = false;
};

}  // namespace zmesh::test
