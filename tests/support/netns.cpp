#include "netns.h"

#include "zmesh/kernel.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

namespace zmesh::test {
namespace {

void enter(const std::string& netns) {
  if (netns.empty()) {
    if (unshare(CLONE_NEWNET) != 0) throw std::runtime_error(std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno));
    if (!bring_up_loopback()) throw std::runtime_error("cannot set lo up in the new netns");
    return;
  }
  const std::string path = "/run/netns/" + netns;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("open " + path + ": " + std::strerror(errno));
  const int rc = setns(fd, CLONE_NEWNET);
  close(fd);
  if (rc != 0) throw std::runtime_error("setns " + path + ": " + std::strerror(errno));
}

}  // namespace

NetnsThread::NetnsThread(const std::string& netns) {
  std::promise<void> started;
  auto done = started.get_future();
  thread_ = std::thread([this, netns, &started] { loop(netns, started); });
  try {
    done.get();
  } catch (...) {
    thread_.join();
    throw;
  }
}

NetnsThread::~NetnsThread() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  ready_.notify_one();
  thread_.join();
}

void NetnsThread::post(std::function<void()> job) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push(std::move(job));
  }
  ready_.notify_one();
}

void NetnsThread::loop(const std::string& netns, std::promise<void>& started) {
  try {
    enter(netns);
  } catch (...) {
    started.set_exception(std::current_exception());
    return;
  }
  started.set_value();
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mutex_);
      ready_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop();
    }
    job();
  }
}

}  // namespace zmesh::test
