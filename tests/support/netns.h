// NetnsThread: a thread that lives in another network namespace, running the closures the
// test hands it. Netlink, interface names, sockets and tc attachments act on the netns of the
// calling thread, so a test drives a lab node's datapath through the real C++ API from here.
#pragma once

#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>
#include <queue>
#include <string>
#include <thread>

namespace zmesh::test {

class NetnsThread {
 public:
  // `netns`: a name under /run/netns, or empty for a new private netns (with lo up).
  explicit NetnsThread(const std::string& netns = "");
  ~NetnsThread();
  NetnsThread(const NetnsThread&) = delete;
  NetnsThread& operator=(const NetnsThread&) = delete;

  // Runs f on the thread and returns its result; exceptions propagate to the caller.
  template <typename F>
  auto run(F&& f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(std::forward<F>(f));
    auto result = task.get_future();
    post([&task] { task(); });
    return result.get();
  }

 private:
  void post(std::function<void()> job);
  void loop(const std::string& netns, std::promise<void>& started);

  std::mutex mutex_;
  std::condition_variable ready_;
  std::queue<std::function<void()>> jobs_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace zmesh::test
