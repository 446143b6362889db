#pragma once
// What every Galaxy daemon's main() does around its tree: refuse listeners that are not
// local (design, "Security": loopback and Unix sockets only until cluster keys exist),
// listen, print "listening on DIAL" per listener (scripts and tests read these lines),
// and serve until SIGINT or SIGTERM.
#include <asio/io_context.hpp>
#include <expected>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "srv9p/server.hpp"

namespace srv9p {

// Checks every dial string: it parses and reaches only this machine (is_loopback).
// Errors: the dial string's parse error, or "refusing to listen on DIAL: only loopback
// and Unix sockets are allowed without a cluster key".
std::expected<void, std::string> require_local(std::span<const std::string> dials);

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
