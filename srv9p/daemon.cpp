// srv9p/daemon.hpp: the start-up and shutdown every Galaxy daemon shares.
#include "srv9p/daemon.hpp"

#include <unistd.h>

#include <asio/signal_set.hpp>
#include <fmt/format.h>

#include <csignal>
#include <cstdio>

#include "srv9p/dial.hpp"
#include "srv9p/nss.hpp"

namespace srv9p {

std::expected<std::vector<std::string>, std::string> check_listeners(std::span<const std::string> dials,
                                                                     auth_mode mode) {
  std::vector<std::string> warnings;
  for (const auto& d : dials) {
    auto addr = parse_dial(d);
    if (!addr) return std::unexpected(addr.error());
    if (addr->net == dial_addr::net_kind::unix_socket || mode == auth_mode::munge) continue;
    if (!is_loopback(*addr)) {
      return std::unexpected(fmt::format(
          "refusing --auth none on {}: it reaches other machines, whose users could attach as anyone "
          "(use --auth munge, or a Unix socket)",
          d));
    }
    warnings.push_back(fmt::format(
        "warning: {} has no authentication (--auth none): every local user can attach as anyone", d));
  }
  return warnings;
}

std::function<void(std::string_view)> stderr_log(std::string_view prog) {
  return [prog = std::string(prog)](std::string_view line) { fmt::print(stderr, "{}: {}\n", prog, line); };
}

int serve_until_signalled(asio::io_context& io, server& srv, std::span<const std::string> dials,
                          std::string_view prog) {
  for (const auto& d : dials) {
    auto bound = srv.listen(d);
    if (!bound) {
      fmt::print(stderr, "{}: {}\n", prog, bound.error());
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

std::string daemon_user() {
  if (auto a = account_by_uid(::getuid()); a && *a) return std::move((*a)->name);
  return "none";
}

}  // namespace srv9p
