// galaxy-ramfs: serves the example ramfs tree (srv9p/ramfs.hpp) over 9P2000.
//
//   galaxy-ramfs [--listen DIAL]... [--owner NAME] [--big BYTES] [--max-bytes BYTES]
//
// Prints "listening on DIAL" (the address actually bound) per listener, then serves until
// SIGINT or SIGTERM. Like every Galaxy daemon it listens only on loopback or Unix
// sockets: there is no cluster key yet to guard anything else.
#include <CLI/CLI.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <fmt/format.h>
#include <pwd.h>
#include <unistd.h>

#include <cstdio>

#include "srv9p/dial.hpp"
#include "srv9p/ramfs.hpp"
#include "srv9p/server.hpp"

namespace {

std::string login_name() {
  if (const passwd* pw = ::getpwuid(::getuid()); pw != nullptr) return pw->pw_name;
  return "none";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"galaxy-ramfs: an example 9P2000 file server holding files in memory"};
  std::vector<std::string> listen{"tcp!127.0.0.1!5640"};
  srv9p::ramfs_options opts;
  opts.owner = login_name();
  app.add_option("--listen,-l", listen, "dial string to listen on (repeatable; port 0 picks one)");
  app.add_option("--owner", opts.owner, "uid and gid of the root directory");
  app.add_option("--big", opts.big_bytes, "length in bytes of the synthetic /big file (0: none)");
  app.add_option("--max-bytes", opts.max_bytes, "the most data all files together may hold, in bytes");
  CLI11_PARSE(app, argc, argv);

  for (const auto& d : listen) {
    auto addr = srv9p::parse_dial(d);
    if (!addr) {
      fmt::print(stderr, "galaxy-ramfs: {}\n", addr.error());
      return 2;
    }
    if (!srv9p::is_loopback(*addr)) {
      fmt::print(stderr,
                 "galaxy-ramfs: refusing to listen on {}: only loopback and Unix sockets are allowed "
                 "without a cluster key\n",
                 d);
      return 2;
    }
  }

  asio::io_context io;
  srv9p::ramfs tree(opts);
  srv9p::server srv(io, tree,
                    {.log = [](std::string_view line) { fmt::print(stderr, "galaxy-ramfs: {}\n", line); }});
  for (const auto& d : listen) {
    auto bound = srv.listen(d);
    if (!bound) {
      fmt::print(stderr, "galaxy-ramfs: {}\n", bound.error());
      return 1;
    }
    fmt::print("listening on {}\n", *bound);
  }
  std::fflush(stdout);

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const asio::error_code&, int) {
    srv.stop();
    io.stop();
  });
  io.run();
  return 0;
}
