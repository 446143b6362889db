// Dial strings (srv9p/dial.hpp): parsing, the canonical form, and the loopback test.
//
// parse_dial() looks at the string's shape in this order: a bare absolute path is a Unix
// socket; anything with '!' is Plan 9's net!host!port (or unix!path); anything else is
// HOST:PORT, [V6ADDR]:PORT, or a lone host or unbracketed IPv6 address that takes the
// default port. Every error quotes the whole string and says what was expected.
#include "srv9p/dial.hpp"

#include <algorithm>
#include <asio/ip/address.hpp>
#include <cctype>
#include <charconv>
#include <optional>
#include <string>

namespace srv9p {
namespace {

std::unexpected<std::string> bad(std::string_view s, std::string_view why) {
  std::string e = "bad dial string '";
  e.append(s);
  e.append("': ");
  e.append(why);
  return std::unexpected(std::move(e));
}

std::expected<std::uint16_t, std::string> parse_port(std::string_view whole, std::string_view p) {
  unsigned v = 0;
  auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
  if (p.empty() || ec != std::errc{} || end != p.data() + p.size() || v > 65535) {
    return bad(whole, "port must be a number 0-65535");
  }
  return static_cast<std::uint16_t>(v);
}

// A host is a name, a numeric address, or "*". It must not be empty and must not hold
// characters that no host name or address has.
std::expected<std::string, std::string> check_host(std::string_view whole, std::string_view h) {
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (h.empty()) return bad(whole, "host is empty");
  for (char c : h) {
    auto u = static_cast<unsigned char>(c);
    if (std::isspace(u) || c == '/' || c == '[' || c == ']' || c == '!' || u < 0x20) {
      return bad(whole, "host has a character no host name has");
    }
  }
  return std::string(h);
}

std::expected<dial_addr, std::string> unix_addr(std::string_view whole, std::string_view path) {
  if (path.empty()) return bad(whole, "socket path is empty");
  dial_addr a;
  a.net = dial_addr::net_kind::unix_socket;
  a.path = std::string(path);
  return a;
}

std::expected<dial_addr, std::string> tcp_addr(std::string_view whole, std::string_view host,
                                               std::optional<std::string_view> port,
                                               std::uint16_t default_port) {
  auto h = check_host(whole, host);
  if (!h) return std::unexpected(h.error());
  dial_addr a;
  a.net = dial_addr::net_kind::tcp;
  a.host = std::move(*h);
  a.port = default_port;
  if (port) {
    auto p = parse_port(whole, *port);
    if (!p) return std::unexpected(p.error());
    a.port = *p;
  }
  return a;
}

// Plan 9 form: net!host[!port] or unix!path.
std::expected<dial_addr, std::string> parse_bang(std::string_view s, std::uint16_t default_port) {
  auto b1 = s.find('!');
  std::string_view net = s.substr(0, b1);
  std::string_view rest = s.substr(b1 + 1);
  if (net == "unix") return unix_addr(s, rest);
  if (net != "tcp" && net != "net") {
    return bad(s, "unknown network '" + std::string(net) + "'; expected tcp, unix or net");
  }
  auto b2 = rest.find('!');
  if (b2 == std::string_view::npos) return tcp_addr(s, rest, std::nullopt, default_port);
  std::string_view host = rest.substr(0, b2);
  std::string_view port = rest.substr(b2 + 1);
  if (port.find('!') != std::string_view::npos) {
    return bad(s, "too many '!'; expected tcp!HOST!PORT");
  }
  return tcp_addr(s, host, port, default_port);
}

// HOST:PORT, [V6]:PORT, [V6], HOST, or a bare IPv6 address (two or more colons).
std::expected<dial_addr, std::string> parse_colon(std::string_view s, std::uint16_t default_port) {
  if (s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos) return bad(s, "missing ']' after an IPv6 address");
    std::string_view host = s.substr(1, close - 1);
    std::string_view after = s.substr(close + 1);
    if (after.empty()) return tcp_addr(s, host, std::nullopt, default_port);
    if (after.front() != ':') return bad(s, "expected ':PORT' after ']'");
    return tcp_addr(s, host, after.substr(1), default_port);
  }
  auto colons = std::count(s.begin(), s.end(), ':');
  if (colons == 0) return tcp_addr(s, s, std::nullopt, default_port);
  if (colons > 1) return tcp_addr(s, s, std::nullopt, default_port);  // bare IPv6 address
  auto c = s.find(':');
  return tcp_addr(s, s.substr(0, c), s.substr(c + 1), default_port);
}

}  // namespace

std::expected<dial_addr, std::string> parse_dial(std::string_view s, std::uint16_t default_port) {
  if (s.empty()) return bad(s, "empty; expected tcp!HOST!PORT or unix!/PATH");
  if (s.front() == '/') return unix_addr(s, s);
  if (s.find('!') != std::string_view::npos) return parse_bang(s, default_port);
  return parse_colon(s, default_port);
}

std::string to_string(const dial_addr& a) {
  if (a.net == dial_addr::net_kind::unix_socket) return "unix!" + a.path;
  return "tcp!" + a.host + "!" + std::to_string(a.port);
}

bool is_loopback(const dial_addr& a) {
  if (a.net == dial_addr::net_kind::unix_socket) return true;
  std::string h = a.host;
  std::ranges::transform(h, h.begin(), [](unsigned char c) { return std::tolower(c); });
  if (h == "localhost" || h == "localhost.") return true;
  asio::error_code ec;
  auto addr = asio::ip::make_address(h, ec);
  if (ec) return false;  // another name: we do not resolve it, so it is not known to be local
  if (addr.is_v4()) return addr.to_v4().is_loopback();
  auto v6 = addr.to_v6();
  if (v6.is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, v6).is_loopback();
  return v6.is_loopback();
}

}  // namespace srv9p
