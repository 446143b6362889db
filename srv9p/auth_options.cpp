// srv9p/auth_options.hpp: the authentication options and what they make.
#include "srv9p/auth_options.hpp"

#include <charconv>
#include <fmt/format.h>

#include "srv9p/munge.hpp"

namespace srv9p {

void add_auth_options(CLI::App& app, auth_config& c, bool daemon) {
  app.add_option("--auth", c.mode,
                 "how TCP clients authenticate: munge (default) or none (loopback only; every local user "
                 "can then attach as anyone)")
      ->check(CLI::IsMember({"munge", "none"}));
  app.add_option("--munge-socket", c.munge_socket, "munged's socket (default: libmunge's)");
  if (daemon) {
    app.add_option("--trust", c.trust,
                   "a user (name or uid) that may attach as anyone, as a scheduler does for job owners "
                   "(repeatable; root and the daemon's own user always may)");
  }
}

std::expected<std::vector<std::string>, std::string> configure_server(const auth_config& c,
                                                                      std::span<const std::string> dials,
                                                                      server_options& opts) {
  auto warnings = check_listeners(dials, c.auth());
  if (!warnings) return std::unexpected(warnings.error());
  for (const auto& name : c.trust) {
    uid_t uid = 0;
    auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), uid);
    if (ec == std::errc() && end == name.data() + name.size() && !name.empty()) {
      opts.trusted.push_back(uid);
      continue;
    }
    auto u = local_uid(name);
    if (!u) return std::unexpected(fmt::format("--trust {}: no such user on this host", name));
    opts.trusted.push_back(*u);
  }
  if (c.auth() == auth_mode::munge) {
    opts.auth = std::make_shared<munge_authenticator>(c.munge_socket);
  } else {
    opts.auth = nullptr;
  }
  return warnings;
}

std::function<std::expected<std::string, std::string>(std::string_view bind)> credential_source(
    const auth_config& c) {
  if (c.auth() == auth_mode::none) return {};
  return [socket = c.munge_socket](std::string_view bind) { return munge_credential(socket, bind); };
}

}  // namespace srv9p
