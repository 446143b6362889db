// galaxy-ramfs: serves the example ramfs tree (srv9p/ramfs.hpp) over 9P2000.
//
//   galaxy-ramfs [--listen DIAL]... [--owner NAME] [--big BYTES] [--max-bytes BYTES]
//                [--auth munge|none] [--munge-socket PATH] [--trust USER]...
//
// Prints "listening on DIAL" (the address actually bound) per listener, then serves until
// SIGINT or SIGTERM. Like every Galaxy daemon it authenticates TCP clients with MUNGE
// unless told --auth none (loopback only), and Unix-socket peers by SO_PEERCRED.
#include <CLI/CLI.hpp>
#include <asio/io_context.hpp>
#include <fmt/format.h>
#include <pwd.h>
#include <unistd.h>

#include "ctl/version.hpp"
#include "srv9p/auth_options.hpp"
#include "srv9p/daemon.hpp"
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
  ctl::add_version_flag(app, "galaxy-ramfs");
  std::vector<std::string> listen{"tcp!127.0.0.1!5640"};
  srv9p::ramfs_options opts;
  opts.owner = login_name();
  app.add_option("--listen,-l", listen, "dial string to listen on (repeatable; port 0 picks one)");
  app.add_option("--owner", opts.owner, "uid and gid of the root directory");
  app.add_option("--big", opts.big_bytes, "length in bytes of the synthetic /big file (0: none)");
  app.add_option("--max-bytes", opts.max_bytes, "the most data all files together may hold, in bytes");
  srv9p::auth_config auth;
  srv9p::add_auth_options(app, auth, true);
  CLI11_PARSE(app, argc, argv);

  srv9p::server_options sopts{.log = srv9p::stderr_log("galaxy-ramfs")};
  auto warnings = srv9p::configure_server(auth, listen, sopts);
  if (!warnings) {
    fmt::print(stderr, "galaxy-ramfs: {}\n", warnings.error());
    return 2;
  }
  for (const auto& w : *warnings) fmt::print(stderr, "galaxy-ramfs: {}\n", w);

  asio::io_context io;
  srv9p::ramfs tree(opts);
  srv9p::server srv(io, tree, std::move(sopts));
  return srv9p::serve_until_signalled(io, srv, listen, "galaxy-ramfs");
}
