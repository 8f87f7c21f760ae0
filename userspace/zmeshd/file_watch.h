// Calls back when a file may have changed: inotify on its *directory*, since editors replace
// a file by rename and Kubernetes swaps a ConfigMap's `..data` symlink, neither of which a
// watch on the file itself would see. Events are coalesced for `settle` so a burst of writes
// gives one call; the callback compares contents itself.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <filesystem>
#include <functional>

namespace zmesh {

class FileWatch {
 public:
  FileWatch(boost::asio::io_context& io, const std::filesystem::path& file, std::function<void()> changed,
            std::chrono::milliseconds settle = std::chrono::milliseconds(100));
  void start();

 private:
  void wait();
  boost::asio::posix::stream_descriptor inotify_;
  boost::asio::steady_timer settle_timer_;
  std::chrono::milliseconds settle_;
  std::function<void()> changed_;
};

}  // namespace zmesh
