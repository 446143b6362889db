// The spec file's codec (node/spec.hpp).
#include "node/spec.hpp"

#include <fmt/format.h>

#include <optional>

namespace node {

namespace {

std::string escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::optional<std::string> unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); i++) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    if (++i == s.size()) return std::nullopt;
    if (s[i] == '\\') {
      out += '\\';
    } else if (s[i] == 'n') {
      out += '\n';
    } else {
      return std::nullopt;
    }
  }
  return out;
}

std::optional<task_state> state_from_name(std::string_view s) {
  for (auto st : {task_state::new_, task_state::running, task_state::done, task_state::failed, task_state::killed,
                  task_state::lost}) {
    if (state_name(st) == s) return st;
  }
  return std::nullopt;
}

}  // namespace

namespace {

std::size_t words_bytes(const std::vector<std::string>& v) {
  std::size_t n = 0;
  for (const auto& w : v) n += w.size() + 1;
  return n;
}

}  // namespace

std::size_t spec_bytes(const task_spec& s) { return words_bytes(s.argv) + words_bytes(s.env) + s.dir.size() + 1; }

std::expected<void, std::string> check_spec_growth(const task_spec& s, const std::vector<std::string>* replace_argv,
                                                   const std::vector<std::string>& env_added, std::size_t dir_size) {
  if (s.env.size() + env_added.size() > max_env_vars) {
    return std::unexpected(fmt::format("more than {} env variables", max_env_vars));
  }
  std::size_t n = words_bytes(replace_argv != nullptr ? *replace_argv : s.argv) + words_bytes(s.env) +
                  words_bytes(env_added) + dir_size + 1;
  if (n > max_spec_bytes) return std::unexpected(fmt::format("spec longer than {} bytes", max_spec_bytes));
  return {};
}

// A later record: what changes after start (the end of the task). "state=" ends it: a
// record cut short (it cannot be, node/task.cpp says why, but a disk may lie) is ignored whole.
std::string encode_update(const task& t, const task_extra& x) {
  std::string s;
  s.reserve(256);
  auto kv = [&s](std::string_view k, const auto& v) { s += fmt::format("{}={}\n", k, v); };
  kv("end", t.end_unix_ms);
  kv("exit", t.exit_code);
  kv("signal", t.signal);
  kv("error", escape(t.error));
  kv("timedout", t.timed_out ? 1 : 0);
  kv("oom", t.oom_killed ? 1 : 0);
  kv("usertime", t.user_ms);
  kv("systime", t.sys_ms);
  kv("maxrss", t.maxrss_bytes);
  kv("cgroup", escape(x.cgroup));
  kv("state", state_name(t.state));
  return s;
}

// The first record, "format=1" first.
std::string encode_spec(const task& t, const task_extra& x) {
  std::string s;
  s.reserve(512);
  auto kv = [&s](std::string_view k, const auto& v) { s += fmt::format("{}={}\n", k, v); };
  kv("format", 1);
  kv("id", t.id);
  kv("owner", escape(t.owner));
  kv("runuser", escape(t.run_user));
  kv("created", t.created_unix_ms);
  kv("start", t.start_unix_ms);
  kv("pid", t.pid);
  kv("pidstart", x.pid_start);
  kv("dir", escape(t.spec.dir));
  kv("cpu", t.spec.cpu_millis);
  kv("mem", t.spec.mem_bytes);
  kv("time", t.spec.timeout_ms);
  kv("nice", t.spec.nice);
  kv("stdin", t.spec.stdin_pipe ? "pipe" : "null");
  if (!x.mem_limit.empty()) kv("memlimit", x.mem_limit);
  for (const auto& a : t.spec.argv) kv("arg", escape(a));
  for (const auto& e : t.spec.env) kv("env", escape(e));
  s += encode_update(t, x);
  return s;
}

// Errors: what is wrong with the text, for restore()'s log line.
std::expected<void, std::string> decode_spec(std::string_view text, task& t, task_extra& x) {
  // Every record ends with its "state=" line: what follows the last whole one is a record
  // that did not finish, ignored.
  for (std::size_t end = text.size(); end > 0;) {
    std::size_t nl = text.rfind('\n', end - 1);
    if (nl == std::string_view::npos) {
      text = {};
      break;
    }
    std::size_t bol = text.rfind('\n', nl == 0 ? 0 : nl - 1);
    bol = (bol == std::string_view::npos || nl == 0) ? 0 : bol + 1;
    if (text.substr(bol, nl - bol).starts_with("state=")) {
      text = text.substr(0, nl + 1);
      break;
    }
    end = bol;
  }
  bool format_seen = false, id_seen = false;
  std::size_t lineno = 0;
  while (!text.empty()) {
    lineno++;
    auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (line.empty()) continue;
    auto eq = line.find('=');
    if (eq == std::string_view::npos) return std::unexpected(fmt::format("line {}: no '='", lineno));
    std::string_view k = line.substr(0, eq), v = line.substr(eq + 1);
    bool ok = true;
    auto str = [&](std::string& out) {
      auto u = unescape(v);
      if (u) out = std::move(*u);
      ok = u.has_value();
    };
    if (k == "format") {
      ok = v == "1";
      format_seen = true;
    } else if (k == "id") {
      ok = parse_num(v, t.id);
      id_seen = true;
    } else if (k == "owner") {
      str(t.owner);
    } else if (k == "runuser") {
      str(t.run_user);
    } else if (k == "state") {
      auto st = state_from_name(v);
      if (st) t.state = *st;
      ok = st.has_value();
    } else if (k == "created") {
      ok = parse_num(v, t.created_unix_ms);
    } else if (k == "start") {
      ok = parse_num(v, t.start_unix_ms);
    } else if (k == "end") {
      ok = parse_num(v, t.end_unix_ms);
    } else if (k == "pid") {
      ok = parse_num(v, t.pid);
    } else if (k == "pidstart") {
      ok = parse_num(v, x.pid_start);
    } else if (k == "exit") {
      ok = parse_num(v, t.exit_code);
    } else if (k == "signal") {
      ok = parse_num(v, t.signal);
    } else if (k == "error") {
      str(t.error);
    } else if (k == "oom") {
      ok = v == "0" || v == "1";
      t.oom_killed = v == "1";
    } else if (k == "timedout") {
      ok = v == "0" || v == "1";
      t.timed_out = v == "1";
    } else if (k == "usertime") {
      ok = parse_num(v, t.user_ms);
    } else if (k == "systime") {
      ok = parse_num(v, t.sys_ms);
    } else if (k == "maxrss") {
      ok = parse_num(v, t.maxrss_bytes);
    } else if (k == "dir") {
      str(t.spec.dir);
    } else if (k == "cpu") {
      ok = parse_num(v, t.spec.cpu_millis);
    } else if (k == "mem") {
      ok = parse_num(v, t.spec.mem_bytes);
    } else if (k == "time") {
      ok = parse_num(v, t.spec.timeout_ms);
    } else if (k == "nice") {
      ok = parse_num(v, t.spec.nice);
    } else if (k == "stdin") {
      ok = v == "pipe" || v == "null";
      t.spec.stdin_pipe = v == "pipe";
    } else if (k == "memlimit") {
      x.mem_limit = std::string(v);
    } else if (k == "cgroup") {
      str(x.cgroup);
    } else if (k == "arg") {
      str(t.spec.argv.emplace_back());
    } else if (k == "env") {
      str(t.spec.env.emplace_back());
    }  // else: a key of a newer format; ignored
    if (!ok) return std::unexpected(fmt::format("line {}: bad value for '{}'", lineno, k));
  }
  if (!format_seen) return std::unexpected("no format=1 line");
  if (!id_seen) return std::unexpected("no id");
  return {};
}

}  // namespace node
