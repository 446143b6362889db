#pragma once
// Dial strings, as in Plan 9's dial(2): `tcp!HOST!PORT`, `unix!/path/to/socket`.
// Also accepted: `HOST:PORT`, `[V6ADDR]:PORT`, a bare absolute path (a Unix socket), and
// `net!HOST!PORT` (taken as tcp). `tcp!*!PORT` listens on every address, as announce(2).
#include <cstdint>
#include <expected>
#include <string>
#include <string_view>

namespace srv9p {

struct dial_addr {
  enum class net_kind : std::uint8_t { tcp, unix_socket };
  net_kind net = net_kind::tcp;
  std::string host;        // tcp: a name or a numeric address; "*" means every address
  std::uint16_t port = 0;  // tcp: 0 asks the kernel to choose when listening
  std::string path;        // unix: the socket's file name
};

// Parses a dial string. A missing port takes default_port (so `tcp!host` works).
// Errors name what was wrong and what was expected, e.g.
// "bad dial string 'tcp!h!x': port must be a number 0-65535".
std::expected<dial_addr, std::string> parse_dial(std::string_view s, std::uint16_t default_port = 0);

// The canonical form: "tcp!127.0.0.1!5640" or "unix!/run/galaxy.sock".
std::string to_string(const dial_addr& a);

// True when the address only reaches this machine: a Unix socket, 127.0.0.0/8, ::1 or
// "localhost". Daemons refuse anything else unless a cluster key is configured.
bool is_loopback(const dial_addr& a);

}  // namespace srv9p
