// ctl/auth.hpp: one auth_config for the whole command line.
#include "ctl/auth.hpp"

#include "srv9p/auth_options.hpp"

namespace ctl {

namespace {

srv9p::auth_config& config() {
  static srv9p::auth_config c;
  return c;
}

}  // namespace

void add_auth_options(CLI::App& app) { srv9p::add_auth_options(app, config(), false); }

fsclient::client::options client_options() {
  fsclient::client::options o;
  o.credential = srv9p::credential_source(config());
  return o;
}

}  // namespace ctl
