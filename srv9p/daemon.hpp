#pragma once
// What every Galaxy daemon's main() does around its tree: check each listener against the
// authentication it will get (design, "Security"), listen, print "listening on DIAL" per
// listener (scripts and tests read these lines), and serve until SIGINT or SIGTERM.
// The command-line options that choose the authentication are in srv9p/auth_options.hpp.
#include <asio/io_context.hpp>
#include <expected>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "srv9p/server.hpp"

namespace srv9p {

// How TCP listeners authenticate clients (--auth). Unix sockets always use SO_PEERCRED.
enum class auth_mode : std::uint8_t { munge, none };

// Checks every dial string against the listener policy: TCP listeners authenticate with
// MUNGE; --auth none is refused on any address that reaches beyond this machine, and on
// loopback TCP it is allowed but every local user can then attach as anyone. Returns the
// warnings to print at start-up (one per loopback TCP listener without authentication).
// Errors: the dial string's parse error, or "refusing --auth none on DIAL: ...".
std::expected<std::vector<std::string>, std::string> check_listeners(std::span<const std::string> dials,
                                                                     auth_mode mode);

// The login name of the user the daemon runs as (getpwuid), "none" if it has none: the
// default owner of a daemon's tree and of its /ctl.
std::string daemon_user();

// A log function for server_options that writes "PROG: LINE" to standard error.
std::function<void(std::string_view)> stderr_log(std::string_view prog);

// Listens on every dial string, prints "listening on DIAL" (the address bound, so port 0
// shows the chosen port) to standard output and flushes it, then runs io until SIGINT or
// SIGTERM, which stop the server. Returns the exit status: 0, or 1 after printing
// "PROG: ERROR" when a listen fails.
int serve_until_signalled(asio::io_context& io, server& srv, std::span<const std::string> dials,
                          std::string_view prog);

}  // namespace srv9p
