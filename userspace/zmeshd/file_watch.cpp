// Directory watch for the config file (see file_watch.h).
#include "file_watch.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace zmesh {

FileWatch::FileWatch(boost::asio::io_context& io, const std::filesystem::path& file, std::function<void()> changed,
                     std::chrono::milliseconds settle)
    : inotify_(io), settle_timer_(io), settle_(settle), changed_(std::move(changed)) {
  const int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) throw std::runtime_error(std::string("inotify_init1: ") + std::strerror(errno));
  inotify_.assign(fd);
  const auto dir = std::filesystem::absolute(file).parent_path();
  if (inotify_add_watch(fd, dir.c_str(),
                        IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MODIFY) < 0)
    throw std::runtime_error("watch " + dir.string() + " for config changes: " + std::strerror(errno));
}

void FileWatch::start() { wait(); }

void FileWatch::wait() {
  inotify_.async_wait(boost::asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
    if (ec) return;
    alignas(inotify_event) char events[4096];
    while (::read(inotify_.native_handle(), events, sizeof events) > 0) {
    }
    settle_timer_.expires_after(settle_);
    settle_timer_.async_wait([this](const boost::system::error_code& e) {
      if (!e) changed_();
    });
    wait();
  });
}

}  // namespace zmesh
