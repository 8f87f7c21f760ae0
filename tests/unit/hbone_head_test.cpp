// The HBONE request head a peer controls: the CONNECT authority and the RFC 7239 `forwarded`
// header, parsed strictly (the fuzzer runs the same functions on arbitrary bytes); and which
// client address zmeshd may then present to the pod.
#include <gtest/gtest.h>

#include "context.h"
#include "hbone_head.h"

namespace zmesh::hbone {
namespace {

using boost::asio::ip::make_address;

TEST(Forwarded, TheFirstElementsForIsTheClient) {
  struct Case {
    const char* header;
    const char* address;  // nullptr: no address given
  } cases[] = {
      {"for=\"10.244.1.2\"", "10.244.1.2"},
      {"for=10.244.1.2", "10.244.1.2"},
      {"For=\"10.244.1.2:4711\"", "10.244.1.2"},
      {"for=\"[fd00:244:1::2]\"", "fd00:244:1::2"},
      {"for=\"[fd00:244:1::2]:4711\"", "fd00:244:1::2"},
      {"for=\"fd00:244:1::2\"", "fd00:244:1::2"},  // unbracketed: not RFC 7239, but unambiguous
      {"for=\"[::ffff:10.0.0.1]\"", "10.0.0.1"},
      {"proto=https;for=\"10.0.0.1\";by=\"10.0.0.9\"", "10.0.0.1"},
      {"for=10.0.0.1, for=10.0.0.2", "10.0.0.1"},
      {"", nullptr},
      {"for=unknown", nullptr},
      {"for=_hidden", nullptr},
      {"by=10.0.0.1", nullptr},
      {"xfor=\"10.0.0.1\"", nullptr},
      {"proto=http, for=10.0.0.2", nullptr},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.header);
    try {
      const auto got = forwarded_for(c.header);
      if (c.address) {
        ASSERT_TRUE(got.has_value());
        EXPECT_EQ(*got, make_address(c.address));
      } else {
        EXPECT_FALSE(got.has_value()) << got->to_string();
      }
    } catch (const std::invalid_argument& e) {
      ADD_FAILURE() << e.what();
    }
  }
}

TEST(Forwarded, WhatIsNotRfc7239IsRefusedWithWhy) {
  for (const char* bad : {"for=\"10.0.0.1", "for", "for=", "for=10.0.0.1;for=10.0.0.2", "for=not-an-ip",
                          "for=\"[fd00::1\"", "for=\"a\x01\"", "=x", "for=10.0.0.1;;", "for=10.0.0.1 x",
                          "for = 10.0.0.1" /* no space around '=' in RFC 7239 */}) {
    SCOPED_TRACE(bad);
    EXPECT_THROW(forwarded_for(bad), std::invalid_argument);
  }
}

TEST(Authority, IpAndPortOnly) {
  EXPECT_EQ(parse_authority("10.0.0.1:80")->port(), 80);
  EXPECT_EQ(parse_authority("[fd00::1]:8080")->address(), make_address("fd00::1"));
  EXPECT_FALSE(parse_authority("10.0.0.1"));
  EXPECT_FALSE(parse_authority("10.0.0.1:0"));
  EXPECT_FALSE(parse_authority("host:80"));
}

}  // namespace
}  // namespace zmesh::hbone

namespace zmesh {
namespace {

// Which client addresses zmeshd may connect to a pod from (docs/datapath.md, "The client's
// address"): the pod must be able to answer it through its veth, and it must not be the pod's own.
TEST(SourceAddress, OnlyAddressesThePodCanAnswerThroughItsVeth) {
  using tcp = boost::asio::ip::tcp;
  using boost::asio::ip::make_address;
  auto config = std::make_shared<WorkloadConfig>();
  config->name = "app1-n1";
  config->namespace_ = "default";
  config->host_veth = "vpod1";
  const Workload pod(config, SpiffeId{"cluster.local", "default", "app1"}, true);
  const tcp::endpoint v4(make_address("10.244.1.2"), 8080), v6(make_address("fd00:244:1::2"), 8080);
  EXPECT_EQ(proxy::source_not_preservable(make_address("10.244.2.2"), pod, v4), std::nullopt);
  EXPECT_EQ(proxy::source_not_preservable(make_address("::ffff:10.244.2.2"), pod, v4), std::nullopt) << "v4-mapped";
  EXPECT_EQ(proxy::source_not_preservable(make_address("fd00:244:2::2"), pod, v6), std::nullopt);
  EXPECT_EQ(proxy::source_not_preservable(make_address("10.100.0.1"), pod, v4), std::nullopt) << "a node's";
  for (const char* never : {"127.0.0.1", "0.0.0.0", "224.0.0.1", "169.254.169.254", "255.255.255.255"})
    EXPECT_NE(proxy::source_not_preservable(make_address(never), pod, v4), std::nullopt) << never;
  for (const char* never : {"::1", "fe80::1", "ff02::1"})
    EXPECT_NE(proxy::source_not_preservable(make_address(never), pod, v6), std::nullopt) << never;
  EXPECT_NE(proxy::source_not_preservable(make_address("fd00:244:2::2"), pod, v4), std::nullopt) << "families differ";
  const auto itself = proxy::source_not_preservable(make_address("10.244.1.2"), pod, v4);
  ASSERT_TRUE(itself);
  EXPECT_NE(itself->find("the pod itself"), std::string::npos) << *itself;
  config->host_veth.clear();
  const Workload no_veth(config, SpiffeId{"cluster.local", "default", "app1"}, true);
  EXPECT_NE(proxy::source_not_preservable(make_address("10.244.2.2"), no_veth, v4), std::nullopt);
}

}  // namespace
}  // namespace zmesh
