#pragma once
// The authentication options every Galaxy program takes, in one place shared by their
// main()s (galaxy-node, galaxy-sched, galaxy-ramfs, the galaxy tool):
//
//   --auth munge|none     how TCP connections authenticate (default munge)
//   --munge-socket PATH   munged's socket (default: libmunge's, /run/munge/munge.socket.2)
//   --trust USER          daemons only, repeatable: a user that may attach as anyone
//
// Part of srv9p_munge (it links libmunge), not srv9p.
#include <CLI/CLI.hpp>
#include <expected>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "srv9p/daemon.hpp"
#include "srv9p/server.hpp"

namespace srv9p {

struct auth_config {
  std::string mode = "munge";  // --auth: "munge" or "none"
  std::string munge_socket;    // --munge-socket; "" is libmunge's default
  std::vector<std::string> trust;  // --trust: user names or numeric uids

  auth_mode auth() const { return mode == "none" ? auth_mode::none : auth_mode::munge; }
};

// Adds --auth and --munge-socket to app, and --trust when daemon is true.
void add_auth_options(CLI::App& app, auth_config& c, bool daemon);

// For a daemon, before it listens: checks every dial string against the listener policy
// (check_listeners), resolves --trust, and sets opts.auth (a munge_authenticator, or null
// for --auth none) and opts.trusted. Returns the warnings to print at start-up. Errors:
// the policy's refusal, or "--trust NAME: no such user on this host".
std::expected<std::vector<std::string>, std::string> configure_server(const auth_config& c,
                                                                      std::span<const std::string> dials,
                                                                      server_options& opts);

// For a client: a function that returns a fresh MUNGE credential with its argument as
// payload (the server endpoint the client is connected to, srv9p::socket_binding, and
// the afid's challenge: srv9p::credential_payload) each time it is called (for fsclient::client::options::credential), or an empty function for
// --auth none.
std::function<std::expected<std::string, std::string>(std::string_view bind)> credential_source(
    const auth_config& c);

}  // namespace srv9p
