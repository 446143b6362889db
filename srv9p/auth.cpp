// srv9p/auth.hpp: the attach rule and the NSS look-ups it needs.
#include "srv9p/auth.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

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

std::expected<std::string, std::string> socket_binding(int fd, bool peer) {
  ::sockaddr_storage ss{};
  ::socklen_t len = sizeof ss;
  auto* sa = reinterpret_cast<::sockaddr*>(&ss);
  if ((peer ? ::getpeername(fd, sa, &len) : ::getsockname(fd, sa, &len)) != 0) {
    return std::unexpected(fmt::format("{}: {}", peer ? "getpeername" : "getsockname", std::strerror(errno)));
  }
  char text[INET6_ADDRSTRLEN] = {};
  switch (ss.ss_family) {
    case AF_INET: {
      const auto& in = reinterpret_cast<const ::sockaddr_in&>(ss);
      ::inet_ntop(AF_INET, &in.sin_addr, text, sizeof text);
      return fmt::format("{}tcp!{}!{}", binding_prefix, text, ntohs(in.sin_port));
    }
    case AF_INET6: {
      // A dual-stack listener sees an IPv4 client as ::ffff:a.b.c.d, while that client
      // sees a.b.c.d: both write the IPv4 form, so that they agree.
      const auto& in6 = reinterpret_cast<const ::sockaddr_in6&>(ss);
      if (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) {
        ::inet_ntop(AF_INET, &in6.sin6_addr.s6_addr[12], text, sizeof text);
      } else {
        ::inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text);
      }
      return fmt::format("{}tcp!{}!{}", binding_prefix, text, ntohs(in6.sin6_port));
    }
    case AF_UNIX: {
      const auto& un = reinterpret_cast<const ::sockaddr_un&>(ss);
      std::size_t n = len > offsetof(::sockaddr_un, sun_path) ? len - offsetof(::sockaddr_un, sun_path) : 0;
      std::string_view path(un.sun_path, ::strnlen(un.sun_path, n));
      return fmt::format("{}unix!{}", binding_prefix, path);
    }
    default:
      return std::unexpected(std::string("not a TCP or Unix socket"));
  }
}

std::string join_binding(std::string_view nonce) {
  return fmt::format("{}join!{}", binding_prefix, nonce);
}

std::optional<std::string> binding_refusal(std::string_view bound_to, std::string_view ours) {
  if (!bound_to.starts_with(binding_prefix)) return std::string(err::cred_unbound);
  if (bound_to == ours) return std::nullopt;
  auto shown = [](std::string_view b) {
    if (b.starts_with(binding_prefix)) b.remove_prefix(binding_prefix.size());
    return b.empty() ? std::string_view("no socket") : b.substr(0, 48);
  };
  return fmt::format(fmt::runtime(err::cred_other_server), shown(bound_to), shown(ours));
}

std::expected<void, std::string> check_uname(std::string_view uname) {
  auto bad = [](std::string_view why) {
    return std::unexpected(fmt::format(fmt::runtime(err::bad_uname), why));
  };
  if (uname.size() > max_uname_bytes) {
    return bad(fmt::format("{} bytes; at most {}", uname.size(), max_uname_bytes));
  }
  for (unsigned char c : uname) {
    if (c == '\0') return bad("contains NUL");
    if (c == '/') return bad("contains '/'");
    if (c < 0x20 || c == 0x7f) return bad(fmt::format("contains control character 0x{:02x}", c));
  }
  return {};
}

std::expected<identity, std::string> authorize(uid_t uid, std::string_view uname, proof how,
                                               std::span<const uid_t> trusted) {
  if (auto ok = check_uname(uname); !ok) return std::unexpected(ok.error());
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
