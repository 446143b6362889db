#pragma once
// The `galaxy` tool's authentication options, given before or after the verb
// (`galaxy --auth none ls /`), and the client options every verb dials with: with
// --auth munge (the default) each attach sends Tauth and, where the server wants it, a
// fresh MUNGE credential; on a Unix socket or an --auth none server it attaches plainly.
// -u NAME stays the name asked for; the server decides whether the caller may use it.
#include "fsclient/client.hpp"

namespace CLI {
class App;
}

namespace ctl {

// Adds --auth munge|none and --munge-socket PATH to app (srv9p/auth_options.hpp).
void add_auth_options(CLI::App& app);

// fsclient options carrying the credential function the options chose.
fsclient::client::options client_options();

}  // namespace ctl
