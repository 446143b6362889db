// galaxy mount / galaxy umount (ctl/cmd_mount.hpp).
//
// The mount outlives its connection: when the server hangs up (a scheduler restarted),
// the bridge redials the same dial string and attaches as the same user again, with
// backoff, for as long as it is mounted (fsclient/fuse_bridge.hpp); files open then fail
// with EIO, and everything else works again once the server is back.
//
// A mount made by root with -o allow_other is per-user (fsclient/fuse_bridge.hpp): every
// other local user's requests go out on attaches of their own login name, so nobody gets
// root's rights through it. Any other mount is its mounting user's alone, as FUSE keeps
// everyone else out.
//
// The fork comes before anything starts a thread (the client's reader, libfuse's
// workers), so the background child is a whole process, not half of one. Once backgrounded
// the bridge reports to syslog (daemon facility, ident "galaxy-mount"): its standard
// streams are /dev/null, so that whoever ran `galaxy mount` sees end of file on them.
//
// Sanitizers: forking before any thread exists is also what keeps ASan/LSan sound here
// (the child runs the leak check at its own exit). A backgrounded child's reports would
// go to /dev/null with its stderr; run it with ASAN_OPTIONS=log_path=FILE to keep them
// (tests/fsclient/fuse_test.cpp does, and checks that no report appears), or use -f.
#include "ctl/cmd_mount.hpp"

#include <asio/io_context.hpp>
#include <fcntl.h>
#include <netdb.h>
#include <pwd.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fmt/core.h>
#include <memory>
#include <string>
#include <vector>

#include "ctl/auth.hpp"
#include "ctl/cluster.hpp"
#include "ctl/cmd_9p.hpp"
#include "fsclient/client.hpp"
#include "fsclient/fuse_bridge.hpp"
#include "srv9p/auth.hpp"
#include "srv9p/dial.hpp"

namespace ctl {
namespace {

struct mount_args {
  std::string addr;
  std::string mountpoint;
  // mount's words: [DIAL] MOUNTPOINT. Without DIAL the server is found as every verb finds
  // it (cluster::find: -a, --state, $GALAXY_ADDR, $GALAXY_STATE, galaxy up's default).
  std::vector<std::string> words;
  std::string addr_opt;  // -a
  std::string state;     // --state
  std::string uname;
  std::string aname;
  std::uint32_t msize = srv9p::max_msize;
  std::vector<std::string> options;
  double attr_timeout_s = 1.0;
  bool attr_timeout_given = false;  // else a per-user mount caches nothing (see below)
  bool foreground = false;
  bool debug = false;
  bool lazy = false;  // umount -z
  bool kernel = false;  // --kernel: the kernel's 9P client on a connection attached here
};

// Where a failure before serving goes: to the parent through the pipe when there is
// one, else to standard error. Returns the exit status, 1.
int fail(int report_fd, const std::string& why) {
  std::string line = "galaxy: mount: " + why + "\n";
  if (report_fd >= 0) {
    (void)!::write(report_fd, line.data(), line.size());
  } else {
    std::fputs(line.c_str(), stderr);
  }
  return 1;
}

// Whether the -o options ask for allow_other (each -o may hold several, comma-separated).
bool allows_others(const std::vector<std::string>& options) {
  for (const auto& o : options) {
    std::string_view rest = o;
    for (;;) {
      auto comma = rest.find(',');
      if (rest.substr(0, comma) == "allow_other") return true;
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return false;
}

// Dials, attaches, mounts and serves until unmounted. report_fd >= 0: the background
// child, which writes "mounted\n" or its error there, then detaches from the terminal.
int mount_and_serve(const mount_args& a, int report_fd) {
  fsclient::client::options copts = client_options();
  copts.msize = a.msize;
  const std::string uname = a.uname.empty() ? login_name() : a.uname;
  auto c = fsclient::client::dial(a.addr, copts);
  if (!c) return fail(report_fd, c.error());
  auto root = (*c)->attach(uname, a.aname);
  if (!root) return fail(report_fd, "attach " + a.addr + ": " + root.error());

  fsclient::fuse_options fo;
  fo.mountpoint = a.mountpoint;
  fo.mount_options = a.options;
  fo.fsname = a.addr;
  fo.attr_timeout_s = a.attr_timeout_s;
  fo.debug = a.debug;
  // Root letting others in: each user acts as themself (issue 12), never as root or as
  // -u's name, which stay the mounting user's own.
  fo.per_user = ::geteuid() == 0 && allows_others(a.options);
  fo.aname = a.aname;
  // A lost connection (the scheduler restarted) is dialled and attached again, as here:
  // same address, options and name, and a fresh credential.
  fo.redial = [addr = a.addr, copts, uname, aname = a.aname]()
      -> fsclient::result<std::pair<std::unique_ptr<fsclient::client>, std::uint32_t>> {
    auto nc = fsclient::client::dial(addr, copts);
    if (!nc) return std::unexpected(nc.error());
    auto nroot = (*nc)->attach(uname, aname);
    if (!nroot) return std::unexpected("attach " + addr + ": " + nroot.error());
    return std::pair{std::move(*nc), *nroot};
  };
  // The kernel answers a cached lookup or stat without asking the bridge, for whoever
  // asks: on a per-user mount one user's cache would show another the names and
  // attributes behind a directory they may not search. So by default it caches nothing
  // there, and every lookup is walked with the caller's own fid.
  if (fo.per_user && !a.attr_timeout_given) fo.attr_timeout_s = 0;
  if (report_fd >= 0) {
    ::openlog("galaxy-mount", LOG_PID, LOG_DAEMON);
    fo.log = [](std::string_view m) { ::syslog(LOG_WARNING, "%.*s", static_cast<int>(m.size()), m.data()); };
  }
  auto b = fsclient::fuse_bridge::mount(std::move(*c), *root, fo);
  if (!b) return fail(report_fd, b.error());

  if (report_fd >= 0) {
    int nul = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nul >= 0) {
      ::dup2(nul, 0);
      ::dup2(nul, 1);
      ::dup2(nul, 2);
      ::close(nul);
    }
    (void)!::chdir("/");
    (void)!::write(report_fd, "mounted\n", 8);
    ::close(report_fd);
  }
  int r = (*b)->serve();
  b->reset();
  return r == 0 ? 0 : 1;
}

// A connected stream socket to a dial string (TCP: each address of the host in turn),
// blocking, close-on-exec. Errors: the dial string's, or the last connect's.
std::expected<int, std::string> connect_dial(const std::string& dial) {
  auto addr = srv9p::parse_dial(dial, 5640);
  if (!addr) return std::unexpected(addr.error());
  if (addr->net == srv9p::dial_addr::net_kind::unix_socket) {
    ::sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (addr->path.size() >= sizeof sa.sun_path) return std::unexpected(dial + ": path too long");
    std::memcpy(sa.sun_path, addr->path.c_str(), addr->path.size() + 1);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::connect(fd, reinterpret_cast<::sockaddr*>(&sa), sizeof sa) != 0) {
      std::string why = fmt::format("dial {}: {}", dial, std::strerror(errno));
      if (fd >= 0) ::close(fd);
      return std::unexpected(why);
    }
    return fd;
  }
  ::addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  ::addrinfo* res = nullptr;
  if (int e = ::getaddrinfo(addr->host.c_str(), std::to_string(addr->port).c_str(), &hints, &res); e != 0) {
    return std::unexpected(fmt::format("dial {}: {}", dial, ::gai_strerror(e)));
  }
  std::string why = "no address";
  int fd = -1;
  for (auto* ai = res; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd >= 0 && ::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      why = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(res);
  if (fd < 0) return std::unexpected(fmt::format("dial {}: {}", dial, why));
  return fd;
}

// galaxy mount --kernel, as diod's mount.diod: Tversion, Tauth (MUNGE) and Tattach here,
// in user space, with fsclient; the root fid clunked; then mount(2) of type 9p with
// trans=fd on the same socket. The kernel sends its own Tversion (ending that session)
// and a Tattach without afid for the same uname, which the server takes because the
// connection proved that name (srv9p/server.cpp, attach_now). A single-user mount
// (access=UID of the name): other local users are kept out by the kernel. Needs root
// (mount(2)). Returns the exit status.
int mount_kernel(const mount_args& a) {
  if (::geteuid() != 0) {
    fmt::print(stderr, "galaxy: mount: --kernel needs root (mount(2) of type 9p)\n");
    return 1;
  }
  const std::string uname = a.uname.empty() ? login_name() : a.uname;
  const ::passwd* pw = ::getpwnam(uname.c_str());
  if (pw == nullptr) {
    fmt::print(stderr, "galaxy: mount: --kernel: '{}' is not a user of this machine (the mount is that user's alone)\n", uname);
    return 1;
  }
  uid_t access_uid = pw->pw_uid;
  gid_t access_gid = pw->pw_gid;
  auto fd = connect_dial(a.addr);
  if (!fd) {
    fmt::print(stderr, "galaxy: mount: {}\n", fd.error());
    return 1;
  }
  // The kernel's copy: the client's own descriptor is left to it (and never shut down).
  int kfd = ::fcntl(*fd, F_DUPFD_CLOEXEC, 3);
  auto binding = srv9p::socket_binding(*fd, true);
  if (kfd < 0 || !binding) {
    fmt::print(stderr, "galaxy: mount: {}\n", binding ? std::strerror(errno) : binding.error());
    return 1;
  }
  fsclient::client::options copts = client_options();
  copts.msize = a.msize;
  asio::io_context io;
  std::unique_ptr<fsclient::client> cl;
  std::string why;
  fsclient::client::adopt(io, *fd, *binding, copts, [&](fsclient::result<std::unique_ptr<fsclient::client>> c) {
    if (!c) {
      why = c.error();
      return io.stop();
    }
    cl = std::move(*c);
    cl->async_attach(uname, a.aname, [&](const fsclient::result<std::uint32_t>& root) {
      if (!root.has_value()) {
        why = "attach " + a.addr + ": " + root.error();
        return io.stop();
      }
      const std::uint32_t rootfid = *root;
      // Nothing is outstanding once Rclunk is in: no byte the kernel's Tversion brings
      // back can be read here: io stops, and a read made meanwhile finds nothing yet.
      cl->send(srv9p::tclunk{rootfid}, [&](fsclient::client::reply) { io.stop(); });
    });
  });
  io.run();
  if (!cl || !why.empty()) {
    fmt::print(stderr, "galaxy: mount: {}\n", why.empty() ? "no connection" : why);
    return 1;
  }
  // 9P2000.L: the kernel's Tattach carries n_uname = access's uid, which the server
  // turns into a name with its own user database (srv9p resolve_n_uname) and which
  // must then be the name proven here (attach_now), or the mount is refused: a uid that
  // names another user on the server's machine gets no further. Rgetattr gives numeric
  // owners. dfltuid and dfltgid serve a server that answers 9P2000 (or -o version=9p2000,
  // which comes later and so wins): 9P2000 has no numeric owners, the kernel shows every
  // file as dfltuid:dfltgid and checks modes against them, so on this one user's mount
  // they are that user's (the server still checks by name).
  std::string opts = fmt::format(
      "trans=fd,rfdno={0},wfdno={0},version=9p2000.L,msize={1},uname={2},access={3},dfltuid={3},dfltgid={4},cache=none",
      kfd, cl->msize(), uname, access_uid, access_gid);
  if (!a.aname.empty()) opts += ",aname=" + a.aname;
  for (const auto& o : a.options) opts += "," + o;
  // The kernel wants the descriptors non-blocking (as mount.diod sets them).
  ::fcntl(kfd, F_SETFL, ::fcntl(kfd, F_GETFL) | O_NONBLOCK);
  if (::mount(a.addr.c_str(), a.mountpoint.c_str(), "9p", 0, opts.c_str()) != 0) {
    int e = errno;
    fmt::print(stderr, "galaxy: mount: mount -t 9p -o {} {} {}: {}{}\n", opts, a.addr, a.mountpoint, std::strerror(e),
               e == ENODEV ? " (no 9p module: modprobe 9p 9pnet_fd)" : "");
    return 1;
  }
  // Done: the kernel holds the connection. No destructor may run now: the client's would
  // shut the shared socket down under the kernel.
  std::fflush(nullptr);
  std::_Exit(0);
}

int run_mount(mount_args a) {
  if (a.words.size() == 2) {
    if (!a.addr_opt.empty() || !a.state.empty()) {
      fmt::print(stderr, "galaxy: mount: give the server as DIAL, -a or --state, not two of them\n");
      return 1;
    }
    a.addr = a.words[0];
    a.mountpoint = a.words[1];
  } else {
    auto where = cluster::find({.addr = a.addr_opt, .mount = {}, .state = a.state});
    if (!where) {
      fmt::print(stderr, "galaxy: mount: {}\n", where.error());
      return 1;
    }
    a.addr = where->addr;
    a.mountpoint = a.words.at(0);
  }
  std::error_code ec;
  auto abs = std::filesystem::absolute(a.mountpoint, ec);
  if (ec || !std::filesystem::is_directory(abs, ec)) {
    fmt::print(stderr, "galaxy: mount: {}: not a directory\n", a.mountpoint);
    return 1;
  }
  a.mountpoint = abs.lexically_normal().string();
  if (a.mountpoint.size() > 1 && a.mountpoint.back() == '/') a.mountpoint.pop_back();
  if (a.attr_timeout_s < 0) {
    fmt::print(stderr, "galaxy: mount: --attr-timeout {}: expected seconds >= 0\n", a.attr_timeout_s);
    return 1;
  }
  if (a.kernel) return mount_kernel(a);
  if (a.foreground || a.debug) return mount_and_serve(a, -1);

  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) {
    fmt::print(stderr, "galaxy: mount: pipe: {}\n", std::strerror(errno));
    return 1;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = ::fork();
  if (pid < 0) {
    fmt::print(stderr, "galaxy: mount: fork: {}\n", std::strerror(errno));
    return 1;
  }
  if (pid == 0) {
    ::close(p[0]);
    ::setsid();  // no controlling terminal: the shell's Ctrl-C and hang-up are not ours
    return mount_and_serve(a, p[1]);
  }
  ::close(p[1]);
  std::string said;
  char buf[512];
  for (;;) {
    ssize_t n = ::read(p[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    said.append(buf, static_cast<std::size_t>(n));
  }
  ::close(p[0]);
  if (said == "mounted\n") return 0;
  // The child failed (and exits) or died without a word: reap it and say so.
  int st = 0;
  ::waitpid(pid, &st, 0);
  if (said.empty()) said = "galaxy: mount: the mounting process died before the mount was up\n";
  std::fputs(said.c_str(), stderr);
  return 1;
}

}  // namespace

void add_mount_commands(CLI::App& app, int& status) {
  auto a = std::make_shared<mount_args>();
  int* st = &status;

  auto* m = app.add_subcommand("mount", "mount a Galaxy tree on a directory with FUSE");
  m->add_option("dial_mountpoint", a->words,
                "[DIAL] MOUNTPOINT: the server's dial string (tcp!host!port, unix!path; without it the cluster "
                "is found as every verb finds it) and an existing directory")
      ->required()
      ->expected(1, 2);
  m->add_option("-a,--addr", a->addr_opt, "the server's dial string, as DIAL");
  m->add_option("--state", a->state, "mount the cluster that galaxy up --state DIR started");
  m->add_option("-u,--uname", a->uname, "user name to attach as (default: $USER); with root's -o allow_other, only root's own");
  m->add_option("--aname", a->aname, "the server's tree to attach (default: its main tree)");
  m->add_option("--msize", a->msize, "largest 9P message to negotiate, bytes (default 1 MiB + 24)");
  m->add_option("-o", a->options, "mount option passed to FUSE (allow_other, ro, ...); repeatable")
      ->allow_extra_args(false);
  auto* attr_timeout = m->add_option("--attr-timeout", a->attr_timeout_s,
                                     "seconds the kernel may cache attributes and names "
                                     "(default 1, or 0 on root's per-user allow_other mount; 0: never)");
  m->add_flag("--kernel", a->kernel,
              "attach here (MUNGE), then give the connection to the kernel's 9P client "
              "(mount -t 9p -o trans=fd,version=9p2000.L; root only; -o adds 9p mount "
              "options, and -o version=9p2000 the legacy dialect)");
  m->add_flag("-f,--foreground", a->foreground, "stay in the foreground, reporting to standard error");
  m->add_flag("-d,--debug", a->debug, "trace every FUSE request on standard error (implies -f)");
  m->callback([a, st, attr_timeout] {
    a->attr_timeout_given = attr_timeout->count() > 0;
    *st = run_mount(*a);
  });

  auto* u = app.add_subcommand("umount", "unmount a galaxy mount");
  u->add_option("mountpoint", a->mountpoint, "where it is mounted")->required();
  u->add_flag("-z,--lazy", a->lazy, "detach now even if files are open (MNT_DETACH)");
  u->callback([a, st] {
    auto r = fsclient::fuse_unmount(a->mountpoint, a->lazy);
    if (!r) {
      fmt::print(stderr, "galaxy: umount: {}\n", r.error());
      *st = 1;
    } else {
      *st = 0;
    }
  });
}

}  // namespace ctl
