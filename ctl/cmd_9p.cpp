// The `galaxy` tool's 9P verbs (ctl/cmd_9p.hpp), after plan9port's 9p(1).
//
// Every verb takes the same connection options (-a DIAL or --state DIR, -u UNAME,
// --aname A; the cluster is found by cluster::find), dials,
// attaches, and works on paths relative to the attached root. Errors print as
// "galaxy: PATH: <the server's error string>" and make the exit status 1; a verb given
// several paths goes on with the next after a failure, as Plan 9's cat and rm do.
//
// The verbs use the client's primitives (walk, open, read) rather than its whole-file
// helpers, so that cat prints each piece as it arrives and so that a walk's error can be
// told apart from the server's answer to open or read.
#include "ctl/cmd_9p.hpp"

#include <pwd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fmt/core.h>
#include <memory>
#include <string>
#include <vector>

#include "ctl/auth.hpp"
#include "ctl/cluster.hpp"
#include "fsclient/client.hpp"
#include "srv9p/errors.hpp"
#include "srv9p/fcall.hpp"

namespace ctl {
namespace {

using fsclient::client;

struct conn_options {
  std::string addr;
  std::string state;  // --state: a galaxy up state directory
  std::string uname;
  std::string aname;
};

// An attached connection.
struct conn {
  std::unique_ptr<client> c;
  std::uint32_t root = srv9p::nofid;
};

void complain(std::string_view path, std::string_view text) {
  fmt::print(stderr, "galaxy: {}: {}\n", path, text);
}

// client::walk() names the missing element ("'a/b': file does not exist"); the verbs
// print the user's whole path instead, so keep only the server's text.
std::string_view server_text(std::string_view e) {
  if (e.starts_with('\'')) {
    if (auto k = e.find("': "); k != std::string_view::npos) return e.substr(k + 3);
  }
  return e;
}

std::unique_ptr<conn> connect(const conn_options& o) {
  // -a, --state, $GALAXY_ADDR, $GALAXY_STATE, galaxy up's default: cluster::find.
  auto where = cluster::find({.addr = o.addr, .mount = {}, .state = o.state});
  if (!where) {
    fmt::print(stderr, "galaxy: {}\n", where.error());
    return nullptr;
  }
  const std::string& addr = where->addr;
  auto c = client::dial(addr, client_options());
  if (!c) {
    fmt::print(stderr, "galaxy: {}\n", cluster::not_answering(*where, c.error()));
    return nullptr;
  }
  auto root = (*c)->attach(o.uname.empty() ? login_name() : o.uname, o.aname);
  if (!root) {
    fmt::print(stderr, "galaxy: attach {}: {}\n", addr, root.error());
    return nullptr;
  }
  auto k = std::make_unique<conn>();
  k->c = std::move(*c);
  k->root = *root;
  return k;
}

// Walks to path; on failure prints the error and returns nofid.
std::uint32_t walk_to(conn& k, std::string_view path) {
  auto f = k.c->walk(k.root, path);
  if (!f) {
    complain(path, server_text(f.error()));
    return srv9p::nofid;
  }
  return *f;
}

bool write_stdout(std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(STDOUT_FILENO, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Plan 9's mode string: "d-rwxr-xr-x", "--rw-r--r--", "a-rw-rw-rw-" (append only),
// "-lrw-------" (exclusive use).
std::string mode_string(std::uint32_t m) {
  std::string s(11, '-');
  if (m & srv9p::dmdir) {
    s[0] = 'd';
  } else if (m & srv9p::dmappend) {
    s[0] = 'a';
  } else if (m & srv9p::dmauth) {
    s[0] = 'A';
  }
  if (m & srv9p::dmexcl) s[1] = 'l';
  static constexpr char rwx[] = "rwx";
  for (int i = 0; i < 9; i++) {
    if (m & (1u << (8 - i))) s[2 + i] = rwx[i % 3];
  }
  return s;
}

// Plan 9 ls -l's time: "Jan  5 10:07" within six months, else "Jan  5  2023".
std::string ls_time(std::uint32_t t) {
  std::time_t tt = t;
  std::tm tm{};
  ::localtime_r(&tt, &tm);
  char buf[32];
  std::time_t now = std::time(nullptr);
  const char* fmt = (now - tt) < 6L * 30 * 24 * 3600 && tt <= now + 3600 ? "%b %e %H:%M" : "%b %e  %Y";
  std::strftime(buf, sizeof buf, fmt, &tm);
  return buf;
}

// Reads a directory open on fid to its end.
fsclient::result<std::vector<srv9p::dir>> read_dir(client& c, std::uint32_t fid) {
  std::vector<srv9p::dir> out;
  std::uint64_t offset = 0;
  for (;;) {
    auto r = c.read(fid, offset, c.iounit());
    if (!r) return std::unexpected(std::move(r.error()));
    if (r->empty()) return out;
    offset += r->size();
    auto ds = srv9p::decode_dirs(std::span(reinterpret_cast<const std::uint8_t*>(r->data()), r->size()));
    if (!ds) return std::unexpected(std::string(srv9p::err::botch) + ": " + ds.error());
    for (auto& d : *ds) out.push_back(std::move(d));
  }
}

// ---- The verbs; each returns the exit status -------------------------------------------

int do_ls(conn& k, const std::string& path, bool long_form) {
  auto f = walk_to(k, path);
  if (f == srv9p::nofid) return 1;
  auto st = k.c->stat(f);
  if (!st) {
    complain(path, st.error());
    (void)k.c->clunk(f);
    return 1;
  }
  std::vector<srv9p::dir> entries;
  if (st->mode & srv9p::dmdir) {
    if (auto o = k.c->open(f, srv9p::oread); !o) {
      complain(path, o.error());
      (void)k.c->clunk(f);
      return 1;
    }
    auto ds = read_dir(*k.c, f);
    if (!ds) {
      complain(path, ds.error());
      (void)k.c->clunk(f);
      return 1;
    }
    entries = std::move(*ds);
  } else {
    entries.push_back(std::move(*st));  // ls of a file lists the file, as ls(1) does
  }
  (void)k.c->clunk(f);
  std::ranges::sort(entries, {}, &srv9p::dir::name);
  std::string out;
  if (!long_form) {
    for (const auto& d : entries) out += d.name + "\n";
  } else {
    std::size_t wu = 0, wg = 0, wl = 0;
    for (const auto& d : entries) {
      wu = std::max(wu, d.uid.size());
      wg = std::max(wg, d.gid.size());
      wl = std::max(wl, std::to_string(d.length).size());
    }
    for (const auto& d : entries) {
      out += fmt::format("{} {:<{}} {:<{}} {:>{}} {} {}\n", mode_string(d.mode), d.uid, wu, d.gid, wg,
                         d.length, wl, ls_time(d.mtime), d.name);
    }
  }
  return write_stdout(out) ? 0 : 1;
}

int do_cat(conn& k, const std::string& path) {
  auto f = walk_to(k, path);
  if (f == srv9p::nofid) return 1;
  if (auto o = k.c->open(f, srv9p::oread); !o) {
    complain(path, o.error());
    (void)k.c->clunk(f);
    return 1;
  }
  // Print each piece as it arrives: a blocking read (events, a running task's output)
  // shows its data as the server produces it.
  std::uint64_t offset = 0;
  int status = 0;
  for (;;) {
    auto r = k.c->read(f, offset, k.c->iounit());
    if (!r) {
      complain(path, r.error());
      status = 1;
      break;
    }
    if (r->empty()) break;
    offset += r->size();
    if (!write_stdout(*r)) {
      status = 1;
      break;
    }
  }
  (void)k.c->clunk(f);
  return status;
}

int do_write(conn& k, const std::string& path) {
  auto f = k.c->walk(k.root, path);
  std::uint32_t fid = srv9p::nofid;
  if (f) {
    fid = *f;
    if (auto o = k.c->open(fid, srv9p::owrite | srv9p::otrunc); !o) {
      complain(path, o.error());
      (void)k.c->clunk(fid);
      return 1;
    }
  } else {
    // Like the shell's '>': a file that does not exist yet is created, if its directory
    // does. When that fails too, the walk's error is the one that explains it.
    auto names = fsclient::split_path(path);
    if (names.empty() || server_text(f.error()) != srv9p::err::not_found) {
      complain(path, server_text(f.error()));
      return 1;
    }
    std::string parent;
    for (std::size_t i = 0; i + 1 < names.size(); i++) parent += names[i] + "/";
    auto d = k.c->walk(k.root, parent);
    if (!d) {
      complain(path, server_text(f.error()));
      return 1;
    }
    if (auto c = k.c->create(*d, names.back(), 0664, srv9p::owrite); !c) {
      complain(path, c.error());
      (void)k.c->clunk(*d);
      return 1;
    }
    fid = *d;
  }
  // Each read of standard input becomes one write at the next offset, so a ctl file
  // gets one command per write when the input comes line by line from a pipe.
  std::vector<char> buf(k.c->iounit());
  std::uint64_t offset = 0;
  int status = 0;
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      complain("standard input", std::strerror(errno));
      status = 1;
      break;
    }
    if (n == 0) break;
    auto w = k.c->write(fid, offset, std::string_view(buf.data(), static_cast<std::size_t>(n)));
    if (!w) {
      complain(path, w.error());
      status = 1;
      break;
    }
    if (*w < static_cast<std::size_t>(n)) {
      complain(path, fmt::format("short write: {} of {} bytes", *w, n));
      status = 1;
      break;
    }
    offset += static_cast<std::size_t>(n);
  }
  // After an error the fid is not clunked: the connection ends with the program, and a
  // ctl file drops a line left unfinished at a hang-up, where a Tclunk would run the half
  // that was sent (galaxy-node(4), galaxy(4)).
  if (status != 0) return status;
  if (auto c = k.c->clunk(fid); !c) {
    complain(path, c.error());
    status = 1;
  }
  return status;
}

int do_stat(conn& k, const std::string& path) {
  auto f = walk_to(k, path);
  if (f == srv9p::nofid) return 1;
  auto st = k.c->stat(f);
  (void)k.c->clunk(f);
  if (!st) {
    complain(path, st.error());
    return 1;
  }
  // The dir in fcall's text form (name= uid= gid= muid= mode= length= qid= ...), which
  // quotes what needs quoting; drop the message's own "Rstat tag=N".
  std::string line = srv9p::to_string(srv9p::fcall{0, srv9p::rstat{*st}});
  if (auto p = line.find(" name="); p != std::string::npos) line.erase(0, p + 1);
  return write_stdout(line + "\n") ? 0 : 1;
}

int do_rm(conn& k, const std::string& path) {
  auto f = walk_to(k, path);
  if (f == srv9p::nofid) return 1;
  if (auto r = k.c->remove(f); !r) {
    complain(path, r.error());
    return 1;
  }
  return 0;
}

int do_mkdir(conn& k, const std::string& path) {
  auto names = fsclient::split_path(path);
  if (names.empty()) {
    complain(path, srv9p::err::exists);
    return 1;
  }
  std::string parent;
  for (std::size_t i = 0; i + 1 < names.size(); i++) parent += names[i] + "/";
  auto d = walk_to(k, parent);
  if (d == srv9p::nofid) return 1;
  auto c = k.c->create(d, names.back(), srv9p::dmdir | 0775, srv9p::oread);
  (void)k.c->clunk(d);  // the fid is the new directory now, or still the parent
  if (!c) {
    complain(path, c.error());
    return 1;
  }
  return 0;
}

// The state of the command line: one set of options per verb, filled by CLI11.
struct verbs {
  conn_options conn;
  bool long_form = false;
  std::vector<std::string> paths;
  std::string path;
};

CLI::App* add_verb(CLI::App& app, verbs& v, const char* name, const char* help) {
  auto* sub = app.add_subcommand(name, help);
  sub->add_option("-a,--addr", v.conn.addr,
                  "the server's dial string (default: $GALAXY_ADDR, $GALAXY_STATE's cluster, the cluster galaxy up "
                  "started, else tcp!127.0.0.1!5641)");
  sub->add_option("--state", v.conn.state, "use the cluster that galaxy up --state DIR started");
  sub->add_option("-u,--uname", v.conn.uname, "the user name to attach as (default: $USER)");
  sub->add_option("--aname", v.conn.aname, "the tree to attach to (default: the server's main tree)");
  return sub;
}

// Runs fn on each path with one connection; the status is 1 if any failed.
template <class F>
int each_path(const verbs& v, const std::vector<std::string>& paths, F fn) {
  auto k = connect(v.conn);
  if (!k) return 1;
  int status = 0;
  for (const auto& p : paths) status |= fn(*k, p);
  return status;
}

}  // namespace

std::string login_name() {
  if (const char* u = std::getenv("USER"); u != nullptr && *u != '\0') return u;
  if (const char* l = ::getlogin(); l != nullptr && *l != '\0') return l;
  if (const passwd* pw = ::getpwuid(::getuid()); pw != nullptr) return pw->pw_name;
  return "none";
}

void add_9p_commands(CLI::App& app, int& status) {
  // The option storage lives as long as the callbacks that share it, which app keeps.
  auto v = std::make_shared<verbs>();
  int* st = &status;

  auto* ls = add_verb(app, *v, "ls", "list a directory (one name per line), or name a file");
  ls->add_flag("-l", v->long_form, "long form: mode, owner, group, length, time, name");
  ls->add_option("path", v->path, "the directory or file (default: the root)");
  ls->callback([v, st] {
    *st = each_path(*v, {v->path}, [&](conn& k, const std::string& p) { return do_ls(k, p, v->long_form); });
  });

  auto* cat = add_verb(app, *v, "cat", "print files, each piece as it arrives");
  cat->add_option("path", v->paths, "the files")->required();
  cat->callback([v, st] { *st = each_path(*v, v->paths, do_cat); });

  auto* write = add_verb(app, *v, "write", "write standard input to a file, creating it if needed");
  write->add_option("path", v->path, "the file")->required();
  write->callback([v, st] { *st = each_path(*v, {v->path}, do_write); });

  auto* stat = add_verb(app, *v, "stat", "print a file's directory entry");
  stat->add_option("path", v->paths, "the files")->required();
  stat->callback([v, st] { *st = each_path(*v, v->paths, do_stat); });

  auto* rm = add_verb(app, *v, "rm", "remove files or empty directories");
  rm->add_option("path", v->paths, "the files")->required();
  rm->callback([v, st] { *st = each_path(*v, v->paths, do_rm); });

  auto* mkdir = add_verb(app, *v, "mkdir", "make directories (mode 0775)");
  mkdir->add_option("path", v->paths, "the directories")->required();
  mkdir->callback([v, st] { *st = each_path(*v, v->paths, do_mkdir); });
}

}  // namespace ctl
