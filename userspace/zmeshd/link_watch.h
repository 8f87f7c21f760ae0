// Calls back as network interfaces appear in and leave this netns (rtnetlink RTMGRP_LINK), so
// that every interface of the node carries tc ingress: pod veths, tunnel devices, a NIC added
// later. An interface seen before the callback ran is still guarded by the pods' doors
// (tc egress), so a late hook fails closed, never open.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <functional>
#include <string>

namespace zmesh {

class LinkWatch {
 public:
  using Callback = std::function<void(const std::string& ifname)>;
  // Subscribes now (a link created after this call is reported); reports once started.
  LinkWatch(boost::asio::io_context& io, Callback added, Callback removed);
  void start();

 private:
  void wait();
  void read_all();
  boost::asio::posix::stream_descriptor socket_;
  Callback added_, removed_;
};

}  // namespace zmesh
