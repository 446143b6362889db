// Dial strings: every accepted shape, the canonical form, the errors' wording, and which
// addresses count as loopback (the rule daemons use to refuse open listeners).
#include "srv9p/dial.hpp"

#include <gtest/gtest.h>

namespace {

using srv9p::dial_addr;
using srv9p::parse_dial;

dial_addr must(std::string_view s, std::uint16_t def = 0) {
  auto a = parse_dial(s, def);
  EXPECT_TRUE(a.has_value()) << s << ": " << a.error();
  return a.value_or(dial_addr{});
}

std::string error_of(std::string_view s) {
  auto a = parse_dial(s);
  EXPECT_FALSE(a.has_value()) << s << " parsed";
  return a ? std::string() : a.error();
}

TEST(Dial, PlanNineTcp) {
  auto a = must("tcp!example.org!5640");
  EXPECT_EQ(a.net, dial_addr::net_kind::tcp);
  EXPECT_EQ(a.host, "example.org");
  EXPECT_EQ(a.port, 5640);
  EXPECT_EQ(to_string(a), "tcp!example.org!5640");
}

TEST(Dial, NetIsTcp) {
  auto a = must("net!10.0.0.1!564");
  EXPECT_EQ(a.net, dial_addr::net_kind::tcp);
  EXPECT_EQ(to_string(a), "tcp!10.0.0.1!564");
}

TEST(Dial, StarListensEverywhere) {
  auto a = must("tcp!*!5641");
  EXPECT_EQ(a.host, "*");
  EXPECT_EQ(a.port, 5641);
  EXPECT_FALSE(is_loopback(a));
}

TEST(Dial, MissingPortTakesDefault) {
  EXPECT_EQ(must("tcp!host", 5640).port, 5640);
  EXPECT_EQ(must("host", 5641).port, 5641);
  EXPECT_EQ(must("[::1]", 564).port, 564);
  EXPECT_EQ(must("tcp!host").port, 0);
}

TEST(Dial, PortZero) { EXPECT_EQ(must("tcp!127.0.0.1!0").port, 0); }

TEST(Dial, HostColonPort) {
  auto a = must("localhost:5640");
  EXPECT_EQ(a.net, dial_addr::net_kind::tcp);
  EXPECT_EQ(a.host, "localhost");
  EXPECT_EQ(a.port, 5640);
  EXPECT_EQ(to_string(a), "tcp!localhost!5640");
}

TEST(Dial, BracketedV6) {
  auto a = must("[::1]:5640");
  EXPECT_EQ(a.host, "::1");
  EXPECT_EQ(a.port, 5640);
  EXPECT_EQ(to_string(a), "tcp!::1!5640");
  // The canonical form parses back to the same address.
  auto b = must(to_string(a));
  EXPECT_EQ(b.host, "::1");
  EXPECT_EQ(b.port, 5640);
}

TEST(Dial, BareV6TakesDefaultPort) {
  auto a = must("fe80::1", 9);
  EXPECT_EQ(a.host, "fe80::1");
  EXPECT_EQ(a.port, 9);
}

TEST(Dial, UnixForms) {
  auto a = must("unix!/run/galaxy.sock");
  EXPECT_EQ(a.net, dial_addr::net_kind::unix_socket);
  EXPECT_EQ(a.path, "/run/galaxy.sock");
  EXPECT_EQ(to_string(a), "unix!/run/galaxy.sock");
  auto b = must("/tmp/x/9p.sock");
  EXPECT_EQ(b.net, dial_addr::net_kind::unix_socket);
  EXPECT_EQ(b.path, "/tmp/x/9p.sock");
  EXPECT_EQ(to_string(b), "unix!/tmp/x/9p.sock");
}

TEST(Dial, Errors) {
  EXPECT_EQ(error_of("tcp!h!x"), "bad dial string 'tcp!h!x': port must be a number 0-65535");
  EXPECT_EQ(error_of("tcp!h!65536"), "bad dial string 'tcp!h!65536': port must be a number 0-65535");
  EXPECT_EQ(error_of("h:-1"), "bad dial string 'h:-1': port must be a number 0-65535");
  EXPECT_EQ(error_of("h:"), "bad dial string 'h:': port must be a number 0-65535");
  EXPECT_EQ(error_of(""), "bad dial string '': empty; expected tcp!HOST!PORT or unix!/PATH");
  EXPECT_EQ(error_of("udp!h!53"),
            "bad dial string 'udp!h!53': unknown network 'udp'; expected tcp, unix or net");
  EXPECT_EQ(error_of("tcp!!564"), "bad dial string 'tcp!!564': host is empty");
  EXPECT_EQ(error_of(":564"), "bad dial string ':564': host is empty");
  EXPECT_EQ(error_of("unix!"), "bad dial string 'unix!': socket path is empty");
  EXPECT_EQ(error_of("tcp!h!1!2"), "bad dial string 'tcp!h!1!2': too many '!'; expected tcp!HOST!PORT");
  EXPECT_EQ(error_of("[::1:564"), "bad dial string '[::1:564': missing ']' after an IPv6 address");
  EXPECT_EQ(error_of("[::1]564"), "bad dial string '[::1]564': expected ':PORT' after ']'");
  EXPECT_EQ(error_of("a b:1"), "bad dial string 'a b:1': host has a character no host name has");
}

TEST(Dial, Loopback) {
  EXPECT_TRUE(is_loopback(must("unix!/tmp/s")));
  EXPECT_TRUE(is_loopback(must("tcp!127.0.0.1!1")));
  EXPECT_TRUE(is_loopback(must("tcp!127.8.9.10!1")));
  EXPECT_TRUE(is_loopback(must("[::1]:1")));
  EXPECT_TRUE(is_loopback(must("localhost:1")));
  EXPECT_TRUE(is_loopback(must("LocalHost:1")));
  EXPECT_TRUE(is_loopback(must("[::ffff:127.0.0.1]:1")));
  EXPECT_FALSE(is_loopback(must("tcp!128.0.0.1!1")));
  EXPECT_FALSE(is_loopback(must("tcp!0.0.0.0!1")));
  EXPECT_FALSE(is_loopback(must("[::]:1")));
  EXPECT_FALSE(is_loopback(must("tcp!example.org!1")));
  EXPECT_FALSE(is_loopback(must("tcp!localhost.example.org!1")));
}

}  // namespace
