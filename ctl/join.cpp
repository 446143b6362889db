// The join line (ctl/join.hpp): formatting for galaxy-node, parsing for galaxy-sched.
#include "ctl/join.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fmt/format.h>

#include "ctl/ctlmsg.hpp"

namespace ctl {

namespace {

std::unexpected<std::string> bad(std::string_view why) {
  std::string e = "join: ";
  e.append(why.substr(0, max_error - e.size()));
  return std::unexpected(std::move(e));
}

// Text quoted back in an error, cut to keep the error short.
std::string shown(std::string_view s) {
  return s.size() > 40 ? std::string(s.substr(0, 37)) + "..." : std::string(s);
}

template <class T>
bool to_number(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

bool valid_node_name(std::string_view n) {
  if (n.empty() || n.size() > 64 || n == "." || n == "..") return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

std::string format_join(const join_request& r) {
  std::vector<std::string> w{"join",
                             fmt::format("version={}", r.version),
                             "name=" + r.name,
                             "nonce=" + r.nonce,
                             "arch=" + r.arch,
                             fmt::format("ncpu={}", r.ncpu),
                             fmt::format("mem={}", r.mem_bytes)};
  for (const auto& [k, v] : r.labels) w.push_back("label=" + k + "=" + v);
  return join(w) + "\n";
}

std::expected<join_request, std::string> parse_join(std::string_view line) {
  auto words = tokenize(line);
  if (!words) return bad(words.error());
  if (words->empty() || (*words)[0] != "join") return bad("expected 'join' first");
  // The version first: a scheduler must say "not spoken here" to a newer node whatever
  // else its line holds.
  join_request r;
  bool have_version = false;
  for (std::size_t i = 1; i < words->size(); ++i) {
    std::string_view w = (*words)[i];
    if (!w.starts_with("version=")) continue;
    if (have_version) return bad("version= given twice");
    w.remove_prefix(8);
    if (!to_number(w, r.version)) return bad(fmt::format("bad version '{}'", shown(w)));
    have_version = true;
  }
  if (!have_version) return bad("missing version=");
  if (r.version != join_version) return bad(fmt::format("version {} not spoken here ({})", r.version, join_version));
  bool have_name = false, have_nonce = false, have_arch = false, have_ncpu = false, have_mem = false;
  auto once = [](bool& seen, std::string_view key) -> std::expected<void, std::string> {
    if (seen) return bad(fmt::format("{}= given twice", key));
    seen = true;
    return {};
  };
  for (std::size_t i = 1; i < words->size(); ++i) {
    std::string_view w = (*words)[i];
    auto eq = w.find('=');
    if (eq == std::string_view::npos) return bad(fmt::format("unknown word '{}'", shown(w)));
    std::string_view k = w.substr(0, eq), v = w.substr(eq + 1);
    std::expected<void, std::string> ok;
    if (k == "version") {
      continue;
    } else if (k == "name") {
      ok = once(have_name, k);
      if (ok && !valid_node_name(v)) {
        return bad(fmt::format("bad name '{}': expected letters, digits, '-', '_' or '.'", shown(v)));
      }
      r.name = v;
    } else if (k == "nonce") {
      ok = once(have_nonce, k);
      if (ok && (v.size() != join_nonce_hex || !std::all_of(v.begin(), v.end(), [](char c) {
                   return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                 }))) {
        return bad(fmt::format("bad nonce: expected {} lower-case hex digits", join_nonce_hex));
      }
      r.nonce = v;
    } else if (k == "arch") {
      ok = once(have_arch, k);
      if (ok && (v.empty() || v.size() > 32 || !std::all_of(v.begin(), v.end(), [](char c) {
                   return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
                 }))) {
        return bad(fmt::format("bad arch '{}'", shown(v)));
      }
      r.arch = v;
    } else if (k == "ncpu") {
      ok = once(have_ncpu, k);
      if (ok && (!to_number(v, r.ncpu) || r.ncpu == 0 || r.ncpu > 65536)) {
        return bad(fmt::format("bad ncpu '{}': expected 1 to 65536", shown(v)));
      }
    } else if (k == "mem") {
      ok = once(have_mem, k);
      if (ok && !to_number(v, r.mem_bytes)) return bad(fmt::format("bad mem '{}': expected bytes", shown(v)));
    } else if (k == "label") {
      if (r.labels.size() >= join_max_labels) return bad(fmt::format("more than {} labels", join_max_labels));
      auto kv = parse_kv(v);
      if (!kv) return bad(kv.error());
      r.labels.push_back(std::move(*kv));
    } else {
      return bad(fmt::format("unknown word '{}'", shown(w)));
    }
    if (!ok) return std::unexpected(ok.error());
  }
  for (auto [seen, key] : {std::pair{have_name, "name"}, std::pair{have_nonce, "nonce"}, std::pair{have_arch, "arch"},
                           std::pair{have_ncpu, "ncpu"}, std::pair{have_mem, "mem"}}) {
    if (!seen) return bad(fmt::format("missing {}=", key));
  }
  return r;
}

}  // namespace ctl
