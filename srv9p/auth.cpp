// srv9p/auth.hpp: the attach rule and the NSS look-ups it needs.
#include "srv9p/auth.hpp"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <fmt/format.h>
#include <vector>

#include "srv9p/errors.hpp"

namespace srv9p {

std::string_view proof_name(proof p) {
  switch (p) {
    case proof::none: return "none";
    case proof::peercred: return "peercred";
    case proof::munge: return "munge";
  }
  return "none";
}

namespace {

// getpw*_r wants a buffer; sysconf's size is a hint that may be -1 or too small.
template <class Lookup>
std::optional<passwd> lookup_pw(std::vector<char>& buf, Lookup lookup) {
  long hint = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  buf.resize(hint > 0 ? static_cast<std::size_t>(hint) : 4096);
  for (;;) {
    passwd pw{};
    passwd* out = nullptr;
    int rc = lookup(&pw, buf.data(), buf.size(), &out);
    if (rc == ERANGE && buf.size() < (1u << 20)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    if (rc != 0 || out == nullptr) return std::nullopt;
    return pw;
  }
}

}  // namespace

std::optional<uid_t> local_uid(std::string_view uname) {
  std::string name(uname);
  std::vector<char> buf;
  auto pw = lookup_pw(buf, [&](passwd* p, char* b, std::size_t n, passwd** out) {
    return ::getpwnam_r(name.c_str(), p, b, n, out);
  });
  if (!pw) return std::nullopt;
  return pw->pw_uid;
}

std::optional<std::string> local_name(uid_t uid) {
  std::vector<char> buf;
  auto pw = lookup_pw(buf, [&](passwd* p, char* b, std::size_t n, passwd** out) {
    return ::getpwuid_r(uid, p, b, n, out);
  });
  if (!pw) return std::nullopt;
  return std::string(pw->pw_name);
}

std::expected<identity, std::string> authorize(uid_t uid, std::string_view uname, proof how,
                                               std::span<const uid_t> trusted) {
  identity who;
  who.how = how;
  if (uname.empty()) {
    auto name = local_name(uid);
    if (!name) return std::unexpected(fmt::format(fmt::runtime(err::uid_no_name), uid));
    who.uname = std::move(*name);
    who.uid = uid;
    return who;
  }
  who.uname = std::string(uname);
  who.uid = local_uid(uname);
  bool speaks_for_others =
      uid == 0 || uid == ::getuid() || std::ranges::find(trusted, uid) != trusted.end();
  if (speaks_for_others || (who.uid && *who.uid == uid)) return who;
  auto name = local_name(uid);
  // The name asked for is cut so that the error stays under errmax.
  return std::unexpected(
      fmt::format(fmt::runtime(err::may_not_attach), uid, name ? *name : "?", uname.substr(0, 40)));
}

}  // namespace srv9p
