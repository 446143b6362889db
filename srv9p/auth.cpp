// srv9p/auth.hpp: the attach rule and the NSS look-ups it needs.
#include "srv9p/auth.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/random.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

#include <algorithm>
#include <fmt/format.h>
#include <vector>

#include "srv9p/errors.hpp"
#include "srv9p/nss.hpp"

namespace srv9p {

std::string_view proof_name(proof p) {
  switch (p) {
    case proof::none: return "none";
    case proof::peercred: return "peercred";
    case proof::munge: return "munge";
  }
  return "none";
}

// Through srv9p/nss.hpp: in a helper process when the program asked for one (galaxy-node).
// A look-up that fails (NSS or the helper) finds nobody, as a failing getpwnam_r did.
std::optional<uid_t> local_uid(std::string_view uname) {
  auto a = account_by_name(uname);
  if (!a || !*a) return std::nullopt;
  return (*a)->uid;
}

std::optional<std::string> local_name(uid_t uid) {
  auto a = account_by_uid(uid);
  if (!a || !*a) return std::nullopt;
  return std::move((*a)->name);
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

std::expected<std::string, std::string> make_challenge() {
  unsigned char bytes[challenge_hex_chars / 2];
  std::size_t got = 0;
  while (got < sizeof bytes) {
    ::ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::unexpected(fmt::format("getrandom: {}", std::strerror(errno)));
    got += static_cast<std::size_t>(n);
  }
  std::string hex;
  hex.reserve(challenge_hex_chars);
  for (unsigned char b : bytes) hex += fmt::format("{:02x}", b);
  return hex;
}

std::string challenge_text(std::string_view challenge) {
  return fmt::format("{}{}\n", challenge_word, challenge);
}

namespace {

bool is_challenge(std::string_view s) {
  return s.size() == challenge_hex_chars &&
         std::ranges::all_of(s, [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

}  // namespace

std::expected<std::string, std::string> parse_challenge(std::string_view text) {
  if (text.empty()) return std::unexpected(std::string(err::no_challenge_given));
  std::string_view c = text;
  if (c.starts_with(challenge_word) && c.ends_with('\n')) {
    c.remove_prefix(challenge_word.size());
    c.remove_suffix(1);
    if (is_challenge(c)) return std::string(c);
  }
  std::string shown;
  for (char ch : text.substr(0, 48)) shown += (ch >= 0x20 && ch < 0x7f) ? ch : '?';
  return std::unexpected(fmt::format(fmt::runtime(err::bad_challenge), shown));
}

std::string credential_payload(std::string_view binding, std::string_view challenge) {
  return fmt::format("{} {}", binding, challenge);
}

std::optional<std::string> credential_refusal(std::string_view bound_to, std::string_view ours,
                                              std::string_view challenge) {
  std::string_view bind = bound_to, theirs;
  // The challenge is the last word; the binding before it may hold spaces (a Unix path).
  if (auto sp = bound_to.rfind(' '); sp != std::string_view::npos && sp >= binding_prefix.size() &&
                                     is_challenge(bound_to.substr(sp + 1))) {
    bind = bound_to.substr(0, sp);
    theirs = bound_to.substr(sp + 1);
  }
  if (auto why = binding_refusal(bind, ours)) return why;
  if (theirs.empty()) return std::string(err::cred_no_challenge);
  if (theirs != challenge) return std::string(err::cred_other_challenge);
  return std::nullopt;
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
