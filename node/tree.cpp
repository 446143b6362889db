// galaxy-node's file tree (see node/tree.hpp and man/man4/galaxy-node.4).
//
// qid.path is (kind << 48 | instance): instance is 0 for the fixed files, the CPU number
// for cpu/N, the task id for task/N and its files, and a number from disk_ for files
// below in/ and out/ (never reused: an entry goes when its task does, and a fid left on it
// then finds nothing, never another task's file). Those are kept as paths below in/ or out/ and resolved anew at each
// access through the runner's open_below (node/safe_fs.hpp: no link is followed, and the
// access is made as the task's user); an open file is served from the descriptor got at
// open or create. Reads that wait are parked under a key (0 for /events, task id * 4
// + 1, 2, 3 for wait, stdout, stderr) and re-served through read() when woken.
#include "node/tree.hpp"

#include "node/spec.hpp"

#include <asio/posix/stream_descriptor.hpp>
#include <asio/write.hpp>
#include <fcntl.h>
#include <malloc.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <csignal>
#include <ctime>
#include <dirent.h>
#include <expected>
#include <filesystem>

#include "ctl/ctlmsg.hpp"
#include "ctl/verbs.hpp"
#include "node/resources.hpp"
#include "node/safe_fs.hpp"
#include "srv9p/errors.hpp"

namespace node {

namespace fs = std::filesystem;
using srv9p::dir;
using srv9p::dirtab_entry;
using srv9p::qid;
using srv9p::request;
namespace err = srv9p::err;

namespace {

enum kind : std::uint16_t {
  k_root = 1, k_status, k_arch, k_cpudir, k_cpu, k_mem, k_labels, k_ctl, k_events, k_taskdir,
  k_clone, k_tdir, k_tctl, k_tstatus, k_twait, k_tstdin, k_tstdout, k_tstderr, k_tin, k_tout,
  k_disk,
};

constexpr dirtab_entry root_tab[] = {
    {"status", k_status, 0444}, {"arch", k_arch, 0444},     {"cpu", k_cpudir, srv9p::dmdir | 0555},
    {"mem", k_mem, 0444},       {"labels", k_labels, 0444}, {"ctl", k_ctl, 0664},
    {"events", k_events, 0444}, {"task", k_taskdir, srv9p::dmdir | 0555},
};
constexpr dirtab_entry clone_entry{"clone", k_clone, 0666};
// A task's files belong to the user who made it; the node's admin is their group.
constexpr dirtab_entry task_tab[] = {
    {"ctl", k_tctl, 0660},       {"status", k_tstatus, 0444},  {"wait", k_twait, 0444},
    {"stdin", k_tstdin, 0220},   {"stdout", k_tstdout, 0440},  {"stderr", k_tstderr, 0440},
    {"in", k_tin, srv9p::dmdir | 0770}, {"out", k_tout, srv9p::dmdir | 0550},
};

std::uint64_t task_key(std::uint64_t id, std::uint16_t k) {
  return id * 4 + (k == k_twait ? 1 : k == k_tstdout ? 2 : 3);
}

// CLOCK_BOOTTIME in milliseconds: monotonic, and counting the time the machine slept
// (the lease's clock: a scheduler counts a suspended node's sleep as silence too).
std::int64_t boot_ms() {
  struct timespec ts{};
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::uint16_t kind_of(const dir& d) { return srv9p::qkind(d.qid.path); }
std::uint64_t inst_of(const dir& d) { return srv9p::qinstance(d.qid.path); }


std::optional<std::uint64_t> to_number(std::string_view s) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

}  // namespace

// Per-open state of ctl files (and clone, which is a task's ctl too).
struct node_tree::ctl_state : srv9p::open_state {
  std::uint64_t task = 0;  // 0 for the node's /ctl
  ctl::line_buffer lines;
};

namespace {
using ctl_open = node_tree::ctl_state;
struct stdin_open : srv9p::open_state {
  std::uint64_t task = 0;
};
// An open file below in/ or out/: the descriptor got at open or create, so that reads
// and writes go to the file that was opened whatever the task renames or links since.
struct disk_open : srv9p::open_state {
  int fd = -1;
  explicit disk_open(int f) : fd(f) {}
  ~disk_open() override {
    if (fd >= 0) ::close(fd);
  }
};

// An errno from file access below in/ or out/, as a 9P error.
std::string disk_error(int e) {
  switch (e) {
    case ENOENT: return std::string(err::not_found);
    case EEXIST: return std::string(err::exists);
    case EACCES:
    case EPERM: return std::string(err::perm);
    case ELOOP: return "symbolic link not followed";
    case ENOTDIR: return std::string(err::not_dir);
    case EISDIR: return std::string(err::is_dir);
    case ENOTEMPTY: return std::string(err::not_empty);
    case ENOSPC:
    case EDQUOT: return std::string(err::no_space);
    case EINVAL: return std::string(err::bad_name);
    default: return std::string(err::io);
  }
}

// Up to count bytes of fd from offset (pread(2)), in a buffer that grows with what is
// there: a Tread's count is up to msize (1 MiB from fsclient), and a buffer of count
// bytes, zero-filled, touched that much memory for a 7-byte stdout, which glibc kept
// after the reply was sent (its mmap threshold rises to the largest block freed), so
// the daemon's memory at rest grew by 1 MiB with the first task (bench/RESULTS.md).
// A short read is the end of the file for now. The buffer is not zero-filled first
// (resize_and_overwrite): pread overwrites it, and on a long read the zeroing cost as
// much as the read (bench/RESULTS.md, "Kernel 9P mounts"). Errors: pread's errno.
std::expected<std::string, int> pread_upto(int fd, std::uint64_t offset, std::uint32_t count) {
  constexpr std::size_t first = 16 * 1024;
  std::string data;
  std::size_t have = 0, want = std::min<std::size_t>(count, first);
  int error = 0;
  for (;;) {
    data.resize_and_overwrite(want, [&](char* p, std::size_t) {
      ssize_t n;
      do {
        n = ::pread(fd, p + have, want - have, static_cast<off_t>(offset + have));
      } while (n < 0 && errno == EINTR);
      if (n < 0) error = errno;
      else have += static_cast<std::size_t>(n);
      return have;  // the bytes read so far are the string; nothing past them is kept
    });
    if (error != 0) return std::unexpected(error);
    if (have < want || want == count) break;
    want = count;
  }
  // The string becomes the Rread's bulk and waits in the connection's queue, which counts
  // its size, not its capacity: a short read into a buffer grown to count would hold up
  // to msize for a few bytes (a client that pipelines Treads and reads no replies took
  // gigabytes of address space so: the attack on this change).
  if (data.capacity() - data.size() > first) data.shrink_to_fit();
  return data;
}

}  // namespace

// stdin of one task: what was written before exec, the number of open writers, and the
// pipe to the process once it runs.
struct node_tree::stdin_state {
  std::string before_exec;
  std::string owner;  // whose stdin_held_ counts before_exec
  int writers = 0;
  std::unique_ptr<asio::posix::stream_descriptor> pipe;
  bool writing = false;
};

node_tree::node_tree(asio::io_context& io, node_options opts)
    : io_(io),
      opts_(std::move(opts)),
      start_unix_s_(static_cast<std::uint32_t>(::time(nullptr))),
      lease_timer_(io),
      trim_timer_(io),
      events_(opts_.event_backlog) {
  if (opts_.cpus == 0) opts_.cpus = static_cast<std::uint32_t>(::sysconf(_SC_NPROCESSORS_ONLN));
  if (opts_.mem_bytes == 0) {
    if (auto m = read_mem()) opts_.mem_bytes = m->total_bytes;
  }
  labels_["arch"] = read_arch().substr(0, read_arch().find(' '));
  for (const auto& [k, v] : opts_.labels) labels_[k] = v;
}

node_tree::~node_tree() = default;

task_runner::hooks node_tree::make_hooks() {
  return task_runner::hooks{
      .started = [this](const task& t) { on_started(t); },
      .finished = [this](const task& t) { on_finished(t); },
      .output = [this](const task& t) { on_output(t); },
      .removed = [this](std::uint64_t id) { forget(id); },
  };
}

// ---- Events and wake-ups ---------------------------------------------------------------

void node_tree::park(std::uint64_t key, request r) { parked_.park(key, std::move(r)); }

void node_tree::wake(std::uint64_t key) {
  parked_.wake(key, [this](const request& r) { read(r); });  // serves it, or parks it again
}

void node_tree::on_started(const task& t) {
  events_.post(fmt::format("start {} {}", t.id, t.pid));
  if (lease_.fenced && leased_tasks_.contains(t.id) && runner_ != nullptr) {
    // Its start was under way when the lease ran out (in/ being prepared): it is fenced too.
    if (task* tt = runner_->find(t.id)) (void)runner_->fence(*tt, fence_why(lease_.fenced_silent_ms));
  }
  auto it = stdin_.find(t.id);
  if (it == stdin_.end() || !t.spec.stdin_pipe || runner_ == nullptr) return;
  auto& st = *it->second;
  int fd = runner_->stdin_fd(t.id);
  if (fd < 0) return;
  st.pipe = std::make_unique<asio::posix::stream_descriptor>(io_, ::dup(fd));
  if (!st.before_exec.empty()) {
    release_held(st);
    st.writing = true;
    auto data = std::make_shared<std::string>(std::move(st.before_exec));
    std::uint64_t id = t.id;
    asio::async_write(*st.pipe, asio::buffer(*data), [this, data, id](const asio::error_code&, std::size_t) {
      auto s = stdin_.find(id);
      if (s == stdin_.end()) return;
      s->second->writing = false;
      if (s->second->writers == 0 && runner_ != nullptr) {
        s->second->pipe.reset();
        runner_->close_stdin(id);
      }
    });
  } else if (st.writers == 0) {
    st.pipe.reset();
    runner_->close_stdin(t.id);
  }
}

void node_tree::on_finished(const task& t) {
  switch (t.state) {
    case task_state::done:
    case task_state::failed:
      if (!t.error.empty()) {
        events_.post(fmt::format("error {} {}", t.id, t.error));
      } else {
        events_.post(fmt::format("exit {} {}", t.id, t.exit_code));
      }
      break;
    case task_state::killed:
      events_.post(fmt::format("signal {} {}{}", t.id, t.signal, t.oom_killed ? " out of memory" : ""));
      break;
    case task_state::lost:
      events_.post(fmt::format("lost {}", t.id));
      break;
    default:
      break;
  }
  if (auto it = stdin_.find(t.id); it != stdin_.end()) it->second->pipe.reset();
  wake(task_key(t.id, k_twait));
  wake(task_key(t.id, k_tstdout));
  wake(task_key(t.id, k_tstderr));
}

void node_tree::on_output(const task& t) {
  wake(task_key(t.id, k_tstdout));
  wake(task_key(t.id, k_tstderr));
}

// ---- Names -----------------------------------------------------------------------------

void node_tree::stamp(dir& d, std::uint32_t unix_s) {
  d.atime = unix_s;
  d.mtime = unix_s;
}

dir node_tree::fixed_dir(const dirtab_entry& e, std::uint64_t instance) const {
  dir d = srv9p::dirtab_dir(e, instance, opts_.admin, opts_.admin);
  stamp(d, start_unix_s_);
  return d;
}

// A task's files change when it is made, when it starts and when it ends: their mtime is
// the latest of those that has happened.
dir node_tree::task_file(std::uint16_t k, const task& t) const {
  // The owner is the task's own (kept in its spec, so a restart keeps it too).
  const std::string& uid = t.owner.empty() ? opts_.admin : t.owner;
  std::int64_t ms = t.end_unix_ms > 0     ? t.end_unix_ms
                    : t.start_unix_ms > 0 ? t.start_unix_ms
                                          : static_cast<std::int64_t>(t.created_unix_ms);
  auto unix_s = static_cast<std::uint32_t>(ms / 1000);
  dir d;
  if (k == k_tdir) {
    d = srv9p::dirtab_dir({"", k_tdir, srv9p::dmdir | 0775}, t.id, uid, opts_.admin);
    d.name = std::to_string(t.id);
  } else {
    for (const auto& e : task_tab) {
      if (e.kind == k) d = srv9p::dirtab_dir(e, t.id, uid, opts_.admin);
    }
  }
  stamp(d, unix_s);
  return d;
}

std::uint64_t node_tree::disk_id(const std::string& rel, std::uint64_t task, bool writable) {
  auto& ids = disk_ids_[task];
  auto [it, added] = ids.emplace(fmt::format("{}/{}", writable ? "in" : "out", rel), next_disk_id_);
  if (added) disk_.emplace(next_disk_id_++, disk_entry{rel, task, writable});
  return it->second;
}

const node_tree::disk_entry* node_tree::disk_at(std::uint64_t id) const {
  auto it = disk_.find(id);
  return it == disk_.end() ? nullptr : &it->second;
}

std::expected<int, int> node_tree::open_disk(std::uint64_t task, bool writable, const std::string& rel, int flags,
                                             mode_t mode) const {
  if (runner_ == nullptr) return std::unexpected(ENOENT);
  return runner_->open_below(task, !writable, rel, flags, mode);
}

std::expected<dir, std::string> node_tree::disk_dir(std::uint64_t id) const {
  const disk_entry* ep = disk_at(id);
  if (ep == nullptr) return std::unexpected(std::string(err::not_found));
  const auto& e = *ep;
  // The file itself, by a descriptor got without following a link (node/safe_fs.hpp): a
  // link the task put there is "file does not exist", not what it points to.
  struct ::stat st{};
  auto fd = open_disk(e.task, e.writable, e.rel, O_PATH | O_NOFOLLOW);
  if (!fd) return std::unexpected(disk_error(fd.error()));
  int r = ::fstat(*fd, &st);
  ::close(*fd);
  if (r != 0 || !(S_ISDIR(st.st_mode) || S_ISREG(st.st_mode))) return std::unexpected(std::string(err::not_found));
  task* t = runner_ != nullptr ? runner_->find(e.task) : nullptr;
  dir d;
  bool is_dir = S_ISDIR(st.st_mode);
  d.qid = qid{static_cast<std::uint8_t>(is_dir ? srv9p::qtdir : srv9p::qtfile),
              static_cast<std::uint32_t>(st.st_mtime), srv9p::qpath(k_disk, id)};
  d.mode = (is_dir ? (srv9p::dmdir | (e.writable ? 0770u : 0550u)) : (e.writable ? 0660u : 0440u));
  d.length = is_dir ? 0 : static_cast<std::uint64_t>(st.st_size);
  d.name = e.rel.substr(e.rel.rfind('/') + 1);  // npos + 1 is 0
  d.uid = t == nullptr || t->owner.empty() ? opts_.admin : t->owner;
  d.gid = opts_.admin;
  d.muid = d.uid;
  d.atime = static_cast<std::uint32_t>(st.st_atime);
  d.mtime = static_cast<std::uint32_t>(st.st_mtime);
  return d;
}

std::expected<node_tree::disk_where_t, std::string> node_tree::disk_where(const dir& d) const {
  std::uint64_t inst = inst_of(d);
  if (kind_of(d) == k_disk) {
    const disk_entry* ep = disk_at(inst);
    if (ep == nullptr) return std::unexpected(std::string(err::not_found));
    const auto& e = *ep;
    if (runner_ == nullptr || runner_->find(e.task) == nullptr) return std::unexpected(std::string(err::not_found));
    return disk_where_t{e.task, e.writable, e.rel};
  }
  if (runner_ == nullptr || runner_->find(inst) == nullptr) return std::unexpected(std::string(err::not_found));
  return disk_where_t{inst, kind_of(d) == k_tin, ""};
}

std::expected<dir, std::string> node_tree::attach(std::string_view, std::string_view aname) {
  if (!aname.empty()) return std::unexpected(std::string(err::not_found));
  dir d = fixed_dir({"/", k_root, srv9p::dmdir | 0555}, 0);
  return d;
}

std::expected<dir, std::string> node_tree::walk1(const dir& parent, std::string_view name, std::string_view) {
  std::uint64_t inst = inst_of(parent);
  switch (kind_of(parent)) {
    case k_root: {
      auto d = srv9p::dirtab_walk(root_tab, name, 0, opts_.admin, opts_.admin);
      if (d) stamp(*d, start_unix_s_);
      return d;
    }
    case k_cpudir: {
      auto n = to_number(name);
      auto ticks = read_cpu_ticks();
      if (!n || !ticks || *n >= ticks->size()) return std::unexpected(std::string(err::not_found));
      dir d = fixed_dir({"", k_cpu, 0444}, *n);
      d.name = std::string(name);
      return d;
    }
    case k_taskdir: {
      if (name == "clone") return fixed_dir(clone_entry, 0);
      auto n = to_number(name);
      task* t = n && runner_ ? runner_->find(*n) : nullptr;
      if (t == nullptr) return std::unexpected(std::string(err::not_found));
      return task_file(k_tdir, *t);
    }
    case k_tdir: {
      task* t = runner_ ? runner_->find(inst) : nullptr;
      if (t == nullptr) return std::unexpected(std::string(err::not_found));
      for (const auto& e : task_tab) {
        if (e.name == name) return task_file(e.kind, *t);
      }
      return std::unexpected(std::string(err::not_found));
    }
    case k_tin:
    case k_tout:
    case k_disk: {
      auto where = disk_where(parent);
      if (!where) return std::unexpected(where.error());
      if (!legal_name(name)) return std::unexpected(std::string(err::bad_name));
      std::string rel = where->rel.empty() ? std::string(name) : where->rel + "/" + std::string(name);
      // disk_dir refuses a link or what is neither file nor directory, so a name is made
      // only for what was there when walked to.
      auto fd = open_disk(where->task, where->writable, rel, O_PATH | O_NOFOLLOW);
      if (!fd) return std::unexpected(disk_error(fd.error()));
      struct ::stat st{};
      int r = ::fstat(*fd, &st);
      ::close(*fd);
      if (r != 0 || !(S_ISDIR(st.st_mode) || S_ISREG(st.st_mode))) return std::unexpected(std::string(err::not_found));
      return disk_dir(disk_id(rel, where->task, where->writable));
    }
    default:
      return std::unexpected(std::string(err::not_found));
  }
}

std::expected<std::vector<dir>, std::string> node_tree::list(const dir& d, std::string_view uname) {
  std::vector<dir> out;
  switch (kind_of(d)) {
    case k_root:
      out = srv9p::dirtab_list(root_tab, 0, opts_.admin, opts_.admin);
      for (auto& e : out) stamp(e, start_unix_s_);
      return out;
    case k_cpudir: {
      auto ticks = read_cpu_ticks();
      if (!ticks) return std::unexpected(ticks.error());
      for (const auto& t : *ticks) {
        dir c = fixed_dir({"", k_cpu, 0444}, static_cast<std::uint64_t>(t.cpu));
        c.name = std::to_string(t.cpu);
        out.push_back(std::move(c));
      }
      return out;
    }
    case k_taskdir:
      out.push_back(fixed_dir(clone_entry, 0));
      if (runner_ != nullptr) {
        for (const auto& [id, t] : runner_->tasks()) out.push_back(task_file(k_tdir, *t));
      }
      return out;
    case k_tdir: {
      task* t = runner_ ? runner_->find(inst_of(d)) : nullptr;
      if (t == nullptr) return std::unexpected(std::string(err::not_found));
      for (const auto& e : task_tab) out.push_back(task_file(e.kind, *t));
      return out;
    }
    case k_tin:
    case k_tout:
    case k_disk: {
      auto where = disk_where(d);
      if (!where) return std::unexpected(where.error());
      auto fd = open_disk(where->task, where->writable, where->rel, O_RDONLY | O_DIRECTORY);
      if (!fd) {
        if (fd.error() == ENOENT && kind_of(d) != k_disk) return out;  // in/ or out/ not made yet
        return std::unexpected(disk_error(fd.error()));
      }
      std::vector<std::string> names;
      if (DIR* dp = ::fdopendir(*fd)) {
        while (struct dirent* e = ::readdir(dp)) {
          if (legal_name(e->d_name)) names.emplace_back(e->d_name);
        }
        ::closedir(dp);
      } else {
        ::close(*fd);
      }
      for (const auto& name : names) {
        auto child = walk1(d, name, uname);  // links and the like are left out
        if (child) out.push_back(std::move(*child));
      }
      return out;
    }
    default:
      return std::unexpected(std::string(err::not_dir));
  }
}

std::expected<dir, std::string> node_tree::stat1(const dir& f) {
  switch (kind_of(f)) {
    case k_tdir:
    case k_tctl: case k_tstatus: case k_twait: case k_tstdin: case k_tstdout: case k_tstderr:
    case k_tin: case k_tout: {
      task* t = runner_ ? runner_->find(inst_of(f)) : nullptr;
      if (t == nullptr) return std::unexpected(std::string(err::not_found));
      return task_file(kind_of(f), *t);
    }
    case k_disk:
      return disk_dir(inst_of(f));
    default:
      return f;
  }
}

// ---- Open, create, remove, clunk ---------------------------------------------------------

void node_tree::open(request r) {
  auto& f = r.fid();
  std::uint64_t inst = inst_of(f.file());
  std::uint8_t mode = r.get<srv9p::topen>().mode;
  switch (kind_of(f.file())) {
    case k_clone: {
      // Plan 9's clone: the open allocates the task; the open file is its ctl.
      if (runner_ == nullptr) return r.error(err::io);
      // The task is the attach name's, and runs as that user (node/task.hpp).
      auto t = runner_->create_task(r.uname());
      if (!t) return r.error(t.error());
      // Made on the session that holds the lease: the scheduler's, fenced with it.
      if (lease_.ms > 0 && f.session_id() == lease_.session) leased_tasks_.insert((*t)->id);
      auto st = std::make_unique<ctl_open>();
      st->task = (*t)->id;
      f.aux = std::move(st);
      break;
    }
    case k_ctl:
      f.aux = std::make_unique<ctl_open>();
      break;
    case k_tctl: {
      auto st = std::make_unique<ctl_open>();
      st->task = inst;
      f.aux = std::move(st);
      break;
    }
    case k_events:
      events_.open(f);
      break;
    case k_tstdin: {
      task* t = runner_ ? runner_->find(inst) : nullptr;
      if (t == nullptr) return r.error(err::not_found);
      auto& st = stdin_[inst];
      if (!st) st = std::make_unique<stdin_state>();
      if (t->state == task_state::new_) {
        if (!t->spec.stdin_pipe) {
          t->spec.stdin_pipe = true;
          if (auto ok = runner_->save(*t); !ok) return r.error(ok.error());
        }
      } else if (t->state != task_state::running || !st->pipe) {
        return r.error(t->finished() ? "task has ended" : "task's stdin is /dev/null: open stdin before exec");
      }
      st->writers++;
      auto o = std::make_unique<stdin_open>();
      o->task = inst;
      f.aux = std::move(o);
      break;
    }
    case k_disk: {
      const disk_entry* ep = disk_at(inst);
      if (ep == nullptr) return r.error(err::not_found);
      const auto& e = *ep;
      if (f.is_dir()) break;  // listed afresh at each read
      int access = mode & 3;
      if (!e.writable && access != srv9p::oread && access != srv9p::oexec) return r.error(err::perm);
      int flags = (access == srv9p::owrite ? O_WRONLY : access == srv9p::ordwr ? O_RDWR : O_RDONLY) | O_NONBLOCK |
                  O_NOCTTY | O_NOFOLLOW;
      if ((mode & srv9p::otrunc) && e.writable) flags |= O_TRUNC;
      auto fd = open_disk(e.task, e.writable, e.rel, flags);
      if (!fd) return r.error(disk_error(fd.error()));
      // O_NONBLOCK: a FIFO the task made must not hold the daemon; only files are served.
      struct ::stat st{};
      if (::fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(*fd);
        return r.error(err::perm);
      }
      f.aux = std::make_unique<disk_open>(*fd);
      break;
    }
    default:
      break;
  }
  auto now = stat1(f.file());
  r.respond(srv9p::ropen{now ? now->qid : f.file().qid, 0});
}

void node_tree::create(request r) {
  const auto& c = r.get<srv9p::tcreate>();
  const dir& parent = r.fid().file();
  const disk_entry* pe = kind_of(parent) == k_disk ? disk_at(inst_of(parent)) : nullptr;
  if (!(kind_of(parent) == k_tin || (pe != nullptr && pe->writable))) {
    return r.error(err::no_create);
  }
  auto where = disk_where(parent);
  if (!where) return r.error(where.error());
  if (!legal_name(c.name)) return r.error(err::bad_name);
  if (kind_of(parent) == k_tin) {
    if (auto in = runner_->make_in_dir(where->task); !in) return r.error(in.error());
  }
  // The new file is made in a directory got without following a link, by the task's user
  // (node/safe_fs.hpp), so it is the user's, and a link in its place is refused.
  auto pfd = open_disk(where->task, true, where->rel, O_PATH | O_DIRECTORY);
  if (!pfd) return r.error(disk_error(pfd.error()));
  int file_fd = -1, e = 0;
  {
    fs_identity_scope as(runner_->identity(where->task));
    if (c.perm & srv9p::dmdir) {
      if (::mkdirat(*pfd, c.name.c_str(), 0700) != 0) e = errno;
    } else {
      file_fd = ::openat(*pfd, c.name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
      if (file_fd < 0) e = errno;
    }
  }
  ::close(*pfd);
  if (e != 0) return r.error(disk_error(e));
  std::string rel = where->rel.empty() ? c.name : where->rel + "/" + c.name;
  auto d = disk_dir(disk_id(rel, where->task, true));
  if (!d) {
    if (file_fd >= 0) ::close(file_fd);
    return r.error(d.error());
  }
  if (file_fd >= 0) r.fid().aux = std::make_unique<disk_open>(file_fd);
  r.respond_create(std::move(*d));
}

void node_tree::remove(request r) {
  const dir& f = r.fid().file();
  std::uint64_t inst = inst_of(f);
  const disk_entry* fe = kind_of(f) == k_disk ? disk_at(inst) : nullptr;
  if (fe != nullptr && fe->writable) {
    // unlinkat(2) in the parent, got without following a link: a link put in the file's
    // place is removed itself, never what it points to.
    const auto& e = *fe;
    auto slash = e.rel.rfind('/');
    std::string parent_rel = slash == std::string::npos ? "" : e.rel.substr(0, slash);
    std::string name = e.rel.substr(slash + 1);  // npos + 1 is 0
    auto pfd = open_disk(e.task, true, parent_rel, O_PATH | O_DIRECTORY);
    if (!pfd) return r.error(disk_error(pfd.error()));
    int err = 0;
    {
      fs_identity_scope as(runner_->identity(e.task));
      struct ::stat st{};
      if (::fstatat(*pfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        err = errno;
      } else if (::unlinkat(*pfd, name.c_str(), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) != 0) {
        err = errno;
      }
    }
    ::close(*pfd);
    if (err != 0) return r.error(disk_error(err));
    return r.respond(srv9p::rremove{});
  }
  if (runner_ == nullptr) return r.error(err::no_remove);
  if (kind_of(f) != k_tdir) {
    // A file of the task (or in/, out/, or what is below out/): it goes with task/N, so a
    // remove of it succeeds without effect when task/N could be removed now (rm -r).
    if (kind_of(f) == k_disk && fe == nullptr) return r.error(err::not_found);
    std::uint64_t id = fe != nullptr ? fe->task : inst;
    switch (kind_of(f)) {
      case k_tctl: case k_tstatus: case k_twait: case k_tstdin: case k_tstdout: case k_tstderr:
      case k_tin: case k_tout: case k_disk:
        break;
      default:
        return r.error(err::no_remove);
    }
    task* t = runner_->find(id);
    if (t == nullptr) return r.error(err::not_found);
    if (t->state == task_state::running) return r.error("task is running");
    if (runner_->starting(id)) return r.error("task is being started");
    return r.respond(srv9p::rremove{});
  }
  // task/N is the ctl command rm, answered once the files are gone.
  auto ok = runner_->remove(inst, [r](std::expected<void, std::string> done) {
    if (!done) return r.error(done.error());
    r.respond(srv9p::rremove{});
  });
  if (!ok) return r.error(ok.error());
  forget(inst);
}

void node_tree::wstat(request r) {
  const dir& f = r.fid().file();
  const dir& want = r.get<srv9p::twstat>().stat;
  dir truncation = srv9p::dont_touch_dir();
  truncation.length = 0;
  truncation.atime = want.atime;  // the times a kernel stamps on a truncation: ignored
  truncation.mtime = want.mtime;
  if (kind_of(f) != k_disk || r.fid().is_dir() || want != truncation) return tree::wstat(std::move(r));
  // srv9p::tree::wstat would answer it without effect (right for ctl files, which
  // take a truncation before their commands): a file the task reads must really be empty.
  const disk_entry* ep = disk_at(inst_of(f));
  if (ep == nullptr) return r.error(err::not_found);
  if (!ep->writable || !permitted(f, r.uname(), 2)) return r.error(err::perm);
  auto fd = open_disk(ep->task, true, ep->rel, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW);
  if (!fd) return r.error(disk_error(fd.error()));
  struct ::stat st{};
  int err = 0;
  if (::fstat(*fd, &st) != 0) {
    err = errno;
  } else if (!S_ISREG(st.st_mode)) {
    err = EPERM;  // only files are served (open's rule)
  } else if (::ftruncate(*fd, 0) != 0) {
    err = errno;
  }
  ::close(*fd);
  if (err == EPERM) return r.error(err::perm);
  if (err != 0) return r.error(disk_error(err));
  r.respond(srv9p::rwstat{});
}

bool node_tree::may_remove(const srv9p::fid& f, const dir& parent) const {
  std::uint64_t id = 0;
  switch (kind_of(f.file())) {
    case k_tdir: case k_tctl: case k_tstatus: case k_twait: case k_tstdin: case k_tstdout: case k_tstderr:
    case k_tin: case k_tout:
      id = inst_of(f.file());
      break;
    case k_disk: {
      const disk_entry* e = disk_at(inst_of(f.file()));
      if (e == nullptr) return false;
      if (e->writable) return tree::may_remove(f, parent);  // in/'s own files: remove(5)'s rule
      id = e->task;
      break;
    }
    default:
      return tree::may_remove(f, parent);
  }
  // The task's owner and the admin: write permission on task/N (0775, owner and admin).
  task* t = runner_ != nullptr ? runner_->find(id) : nullptr;
  return t != nullptr && permitted(task_file(k_tdir, *t), f.uname(), 2);
}

void node_tree::clunk(srv9p::fid& f) {
  if (auto* c = dynamic_cast<ctl_open*>(f.aux.get())) {
    // The last line may come without a newline (echo -n): it ends at the client's Tclunk.
    // Its error, if any, has nobody to go to. At a hang-up it is dropped: a client that
    // died mid-line (a held piece of a longer one) meant nothing by its half.
    std::string rest = c->lines.take_rest();
    if (f.clunked_by_client() && !rest.empty() && rest.find('\0') == std::string::npos) {
      if (c->task == 0) {
        (void)node_ctl(rest, f);
      } else if (task* t = runner_ ? runner_->find(c->task) : nullptr) {
        (void)task_ctl(*t, rest, [](std::expected<void, std::string>) {});
      }
    }
  } else if (auto* s = dynamic_cast<stdin_open*>(f.aux.get())) {
    auto it = stdin_.find(s->task);
    if (it != stdin_.end() && --it->second->writers == 0) {
      task* t = runner_ ? runner_->find(s->task) : nullptr;
      // clunking the last writer closes the task's stdin (EOF) once buffered data is out.
      if (t != nullptr && t->state == task_state::running && !it->second->writing) {
        it->second->pipe.reset();
        runner_->close_stdin(s->task);
      }
    }
  }
}

// ---- Read ------------------------------------------------------------------------------

std::string node_tree::status_text() const {
  std::uint64_t memfree = 0;
  double load = 0;
  if (auto m = read_mem()) memfree = m->available_bytes;
  if (auto l = read_load()) load = *l;
  auto arch = read_arch();
  return fmt::format("name={} arch={} ncpu={} share={} mem={} memfree={} load={:.2f} tasks={} state={} contain={} limits={}\n",
                     ctl::quote(opts_.name), arch.substr(0, arch.find(' ')), opts_.cpus, share_pct_,
                     opts_.mem_bytes, memfree, load, runner_ ? runner_->running() : 0,
                     draining_ ? "draining" : "up", runner_ ? runner_->containment_mode() : "pgroup",
                     runner_ ? runner_->containment_limits() : "none");
}

void node_tree::read(request r) {
  auto& f = r.fid();
  if (f.is_dir()) return read_dir(std::move(r));
  std::uint64_t inst = inst_of(f.file());
  switch (kind_of(f.file())) {
    case k_status:
      renew_lease(f);
      return respond_text(r, status_text());
    case k_arch:
      return respond_text(r, read_arch() + "\n");
    case k_mem: {
      auto m = read_mem();
      if (!m) return r.error(m.error());
      return respond_text(r, format_mem(*m));
    }
    case k_cpu: {
      auto ticks = read_cpu_ticks();
      if (!ticks || inst >= ticks->size()) return r.error(err::not_found);
      return respond_text(r, format_cpu((*ticks)[inst], read_cpu_mhz(static_cast<int>(inst))));
    }
    case k_labels: {
      std::string text;
      for (const auto& [k, v] : labels_) text += k + "=" + v + "\n";
      return respond_text(r, text);
    }
    case k_ctl:
      // The settings, as the commands that would make them.
      return respond_text(r, fmt::format("{}\nshare {}\nnice {}\nmaxtasks {}\nlease {}\n",
                                         draining_ ? "drain" : "undrain", share_pct_,
                                         runner_ ? runner_->default_nice() : 19, runner_ ? runner_->max_tasks() : 0,
                                         lease_.ms));
    case k_events:
      return events_.read(std::move(r));
    case k_clone: {
      auto* c = dynamic_cast<ctl_open*>(f.aux.get());
      if (c == nullptr) return r.error(err::not_open);
      return respond_text(r, fmt::format("{}\n", c->task));
    }
    case k_tctl: {
      task* t = runner_ ? runner_->find(inst) : nullptr;
      if (t == nullptr) return r.error("task removed");
      // The spec, as the ctl commands that would make it.
      std::string text;
      if (!t->spec.dir.empty()) text += "dir " + ctl::quote(t->spec.dir) + "\n";
      for (const auto& e : t->spec.env) text += "env " + ctl::quote(e) + "\n";
      if (t->spec.cpu_millis) text += fmt::format("cpu {}m\n", t->spec.cpu_millis);
      if (t->spec.mem_bytes) text += fmt::format("mem {}\n", t->spec.mem_bytes);
      if (t->spec.timeout_ms) text += fmt::format("time {}\n", t->spec.timeout_ms / 1000.0);
      text += fmt::format("nice {}\n", t->spec.nice);
      if (!t->spec.argv.empty()) text += "exec " + ctl::join(t->spec.argv) + "\n";
      return respond_text(r, text);
    }
    case k_tstatus: {
      task* t = runner_ ? runner_->find(inst) : nullptr;
      if (t == nullptr) return r.error("task removed");
      return respond_text(r, t->status_line() + "\n");
    }
    case k_twait:
      return serve_wait(std::move(r), inst);
    case k_tstdout:
    case k_tstderr:
      return serve_output(std::move(r), inst, kind_of(f.file()) == k_tstderr);
    case k_disk: {
      auto* o = dynamic_cast<disk_open*>(f.aux.get());
      if (o == nullptr) return r.error(err::not_open);
      const auto& m = r.get<srv9p::tread>();
      auto data = pread_upto(o->fd, m.offset, m.count);
      if (!data) return r.error(disk_error(data.error()));
      note_long_reply(data->size());
      return r.respond(srv9p::rread{std::move(*data)});
    }
    default:
      return r.error(err::perm);
  }
}

void node_tree::serve_wait(request r, std::uint64_t id) {
  task* t = runner_ ? runner_->find(id) : nullptr;
  if (t == nullptr) return r.error("task removed");
  if (!t->finished()) return park(task_key(id, k_twait), std::move(r));
  respond_text(r, t->wait_text() + "\n");
}

void node_tree::serve_output(request r, std::uint64_t id, bool is_err) {
  task* t = runner_ ? runner_->find(id) : nullptr;
  if (t == nullptr) return r.error("task removed");
  const auto& m = r.get<srv9p::tread>();
  auto path = is_err ? runner_->stderr_path(id) : runner_->stdout_path(id);
  std::string data;
  if (int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC); fd >= 0) {
    auto got = pread_upto(fd, m.offset, m.count);
    ::close(fd);
    if (!got) return r.error(err::io);
    data = std::move(*got);
  }
  if (data.empty() && !t->finished()) {
    // At the end of the data while the task runs: wait for more output or the end.
    return park(task_key(id, is_err ? k_tstderr : k_tstdout), std::move(r));
  }
  note_long_reply(data.size());
  r.respond(srv9p::rread{std::move(data)});
}

void node_tree::note_long_reply(std::size_t bytes) {
  if (bytes < 256 * 1024) return;
  trim_timer_.expires_after(std::chrono::seconds(2));  // (aborts the wait armed before)
  trim_timer_.async_wait([](asio::error_code ec) {
    if (!ec) ::malloc_trim(0);
  });
}

// ---- Write -----------------------------------------------------------------------------

void node_tree::write(request r) {
  auto& f = r.fid();
  const auto& m = r.get<srv9p::twrite>();
  std::uint64_t inst = inst_of(f.file());
  switch (kind_of(f.file())) {
    case k_ctl:
    case k_clone:
    case k_tctl: {
      auto* c = dynamic_cast<ctl_open*>(f.aux.get());
      if (c == nullptr) return r.error(err::not_open);
      auto lines = std::make_shared<std::vector<std::string>>(ctl_lines(*c, m.data, r.max_write()));
      // A line over the limit is an error for the write that made it too long and for each
      // later write that carried only its rest, and none of those writes' lines runs (bad
      // input changes nothing).
      if (std::string why = c->lines.take_refusal(); !why.empty()) return r.error(why);
      // A NUL would cut an argument short where it meets the C library (argv, paths).
      for (const auto& line : *lines) {
        if (line.find('\0') != std::string::npos) return r.error("NUL in ctl message");
      }
      return run_ctl(std::move(r), c->task, std::move(lines), 0);
    }
    case k_tstdin: {
      task* t = runner_ ? runner_->find(inst) : nullptr;
      if (t == nullptr) return r.error("task removed");
      return write_stdin(std::move(r), *t);
    }
    case k_disk: {
      if (const disk_entry* e = disk_at(inst); e == nullptr || !e->writable) return r.error(err::perm);
      auto* o = dynamic_cast<disk_open*>(f.aux.get());
      if (o == nullptr) return r.error(err::not_open);
      ssize_t n = ::pwrite(o->fd, m.data.data(), m.data.size(), static_cast<off_t>(m.offset));
      if (n < 0) return r.error(disk_error(errno));
      return r.respond(srv9p::rwrite{static_cast<std::uint32_t>(n)});
    }
    default:
      return r.error(err::perm);
  }
}

void node_tree::write_stdin(request r, task& t) {
  auto& st = stdin_[t.id];
  if (!st) st = std::make_unique<stdin_state>();
  const auto& m = r.get<srv9p::twrite>();
  if (t.state == task_state::new_) {
    if (st->before_exec.size() + m.data.size() > opts_.stdin_buffer_bytes) {
      return r.error(fmt::format("stdin holds at most {} before exec", ctl::human_bytes(opts_.stdin_buffer_bytes)));
    }
    auto held = stdin_held_.find(t.owner);
    if ((held == stdin_held_.end() ? 0 : held->second) + m.data.size() > opts_.stdin_buffer_bytes_per_user) {
      return r.error(fmt::format("stdin holds at most {} before exec for all of one user's tasks",
                                 ctl::human_bytes(opts_.stdin_buffer_bytes_per_user)));
    }
    stdin_held_[t.owner] += m.data.size();
    st->owner = t.owner;
    st->before_exec += m.data;
    return r.respond(srv9p::rwrite{static_cast<std::uint32_t>(m.data.size())});
  }
  if (t.state != task_state::running || !st->pipe) return r.error("task has ended");
  // The answer waits until the process has taken the data into its pipe (back-pressure).
  auto data = std::make_shared<std::string>(m.data);
  st->writing = true;
  std::uint64_t id = t.id;
  asio::async_write(*st->pipe, asio::buffer(*data), [this, r, data, id](const asio::error_code& ec, std::size_t n) {
    if (auto s = stdin_.find(id); s != stdin_.end()) s->second->writing = false;
    if (ec) return r.error(ec == asio::error::broken_pipe ? "task closed its stdin" : "task has ended");
    r.respond(srv9p::rwrite{static_cast<std::uint32_t>(n)});
  });
}

std::vector<std::string> node_tree::ctl_lines(ctl_state& c, std::string_view data, std::size_t max_write) {
  return c.lines.feed_write(data, max_write);
}

void node_tree::run_ctl(request r, std::uint64_t task_id, std::shared_ptr<std::vector<std::string>> lines,
                        std::size_t i) {
  for (; i < lines->size(); i++) {
    const std::string& line = (*lines)[i];
    if (task_id == 0) {
      if (auto ok = node_ctl(line, r.fid()); !ok) return r.error(ok.error());
      continue;
    }
    task* t = runner_ ? runner_->find(task_id) : nullptr;
    if (t == nullptr) return r.error("task removed");
    auto now = task_ctl(*t, line, [this, r, task_id, lines, i](std::expected<void, std::string> ok) {
      if (!ok) return r.error(ok.error());
      run_ctl(r, task_id, lines, i + 1);
    });
    if (!now) return;  // the continuation goes on
    if (!*now) return r.error(now->error());
  }
  r.respond(srv9p::rwrite{static_cast<std::uint32_t>(r.get<srv9p::twrite>().data.size())});
}

std::optional<std::expected<void, std::string>> node_tree::task_ctl(task& t, std::string_view line,
                                                                    ctl_done done) {
  auto cmd = ctl::parse(line, ctl::task_verbs);
  if (!cmd) return std::unexpected(cmd.error());
  using v = ctl::task_verb;
  auto verb = static_cast<v>(cmd->verb);
  const auto& a = cmd->args;
  if (runner_->starting(t.id)) return std::unexpected(fmt::format("task {} is being started", t.id));
  if (verb != v::kill && verb != v::rm && t.state != task_state::new_) {
    return std::unexpected(fmt::format("task {} already started: '{}' must come before exec", t.id, cmd->name));
  }
  switch (verb) {
    case v::exec: {
      if (draining_) return std::unexpected(std::string("node is draining: no new tasks"));
      if (auto ok = check_spec_growth(t.spec, &a, {}, t.spec.dir.size()); !ok) {
        return std::unexpected(fmt::format("task {}: {}", t.id, ok.error()));
      }
      t.spec.argv = a;
      // A task with files in in/ is started after the worker has prepared them.
      auto now = runner_->start(t, [this, id = t.id, done](std::expected<void, std::string> ok) {
        if (!ok) {
          if (task* tt = runner_->find(id); tt != nullptr && tt->state == task_state::new_) tt->spec.argv.clear();
        }
        done(std::move(ok));
      });
      if (now && !*now) t.spec.argv.clear();
      return now;
    }
    case v::dir:
      if (a[0].empty() || a[0][0] != '/') {
        return std::unexpected(fmt::format("bad dir '{}': expected an absolute path", a[0]));
      }
      if (auto ok = check_spec_growth(t.spec, nullptr, {}, a[0].size()); !ok) {
        return std::unexpected(fmt::format("task {}: {}", t.id, ok.error()));
      }
      t.spec.dir = a[0];
      break;
    case v::env: {
      std::vector<std::string> add;
      for (const auto& kv : a) {
        auto p = ctl::parse_kv(kv);
        if (!p) return std::unexpected(p.error());
        add.push_back(kv);
      }
      if (auto ok = check_spec_growth(t.spec, nullptr, add, t.spec.dir.size()); !ok) {
        return std::unexpected(fmt::format("task {}: {}", t.id, ok.error()));
      }
      t.spec.env.insert(t.spec.env.end(), add.begin(), add.end());
      break;
    }
    case v::cpu: {
      auto n = ctl::parse_cpu_millis(a[0]);
      if (!n) return std::unexpected(n.error());
      t.spec.cpu_millis = *n;
      break;
    }
    case v::mem: {
      auto n = ctl::parse_bytes(a[0]);
      if (!n) return std::unexpected(n.error());
      t.spec.mem_bytes = *n;
      break;
    }
    case v::time: {
      auto n = ctl::parse_seconds_ms(a[0]);
      if (!n) return std::unexpected(n.error());
      t.spec.timeout_ms = *n;
      break;
    }
    case v::nice: {
      auto n = ctl::parse_int(a[0], 0, 19, "nice");
      if (!n) return std::unexpected(n.error());
      t.spec.nice = static_cast<int>(*n);
      break;
    }
    case v::kill: {
      int sig = SIGKILL;
      if (!a.empty()) {
        auto s = ctl::parse_signal(a[0]);
        if (!s) return std::unexpected(s.error());
        sig = *s;
      }
      return runner_->kill(t, sig);
    }
    case v::rm: {
      // Answered once the files are gone; the task is forgotten at once.
      std::uint64_t id = t.id;
      if (auto ok = runner_->remove(id, std::move(done)); !ok) return ok;
      forget(id);
      return std::nullopt;
    }
  }
  return runner_->save(t);
}

void node_tree::release_held(stdin_state& st) {
  auto it = stdin_held_.find(st.owner);
  if (it == stdin_held_.end()) return;
  it->second -= std::min(it->second, st.before_exec.size());
  if (it->second == 0) stdin_held_.erase(it);
}

void node_tree::forget(std::uint64_t id) {
  if (auto it = stdin_.find(id); it != stdin_.end()) {
    release_held(*it->second);
    stdin_.erase(it);
  }
  if (auto it = disk_ids_.find(id); it != disk_ids_.end()) {
    for (const auto& [rel, n] : it->second) disk_.erase(n);
    disk_ids_.erase(it);
  }
  // Reads parked on a task that never ran (wait, stdout, stderr of a new task removed by
  // rm or by --new-task-timeout) are answered "task removed" instead of waiting forever.
  for (auto k : {k_twait, k_tstdout, k_tstderr}) wake(task_key(id, k));
  leased_tasks_.erase(id);
}

std::expected<void, std::string> node_tree::node_ctl(std::string_view line, const srv9p::fid& f) {
  auto cmd = ctl::parse(line, ctl::node_verbs);
  if (!cmd) return std::unexpected(cmd.error());
  using v = ctl::node_verb;
  const auto& a = cmd->args;
  switch (static_cast<v>(cmd->verb)) {
    case v::drain:
      if (!draining_) events_.post("drain");
      draining_ = true;
      return {};
    case v::undrain:
      if (draining_) events_.post("undrain");
      draining_ = false;
      return {};
    case v::label:
      for (const auto& kv : a) {
        auto p = ctl::parse_kv(kv);
        if (!p) return std::unexpected(p.error());
      }
      for (const auto& kv : a) {
        auto p = ctl::parse_kv(kv);
        if (p->second.empty()) {
          labels_.erase(p->first);
        } else {
          labels_[p->first] = p->second;
        }
      }
      return {};
    case v::share: {
      auto n = ctl::parse_int(a[0], 1, 100, "share");
      if (!n) return std::unexpected(n.error());
      share_pct_ = static_cast<int>(*n);
      return {};
    }
    case v::nice: {
      auto n = ctl::parse_int(a[0], 0, 19, "nice");
      if (!n) return std::unexpected(n.error());
      runner_->set_default_nice(static_cast<int>(*n));
      return {};
    }
    case v::maxtasks: {
      auto n = ctl::parse_int(a[0], 0, 1 << 20, "maxtasks");
      if (!n) return std::unexpected(n.error());
      runner_->set_max_tasks(static_cast<std::size_t>(*n));
      return {};
    }
    case v::kill:
      if (a[0] != "all") return std::unexpected(fmt::format("bad kill '{}': expected 'kill all'", a[0]));
      runner_->kill_all();
      return {};
    case v::lease: {
      // At most a day: a lease is seconds to minutes; a longer one is a typo.
      auto n = ctl::parse_int(a[0], 0, 86'400'000, "lease");
      if (!n) return std::unexpected(n.error());
      set_lease(static_cast<std::uint32_t>(*n), f);
      return {};
    }
  }
  return {};
}

// ---- The lease (fencing; see node/tree.hpp) ------------------------------------------------

void node_tree::set_lease(std::uint32_t ms, const srv9p::fid& f) {
  lease_.ms = ms;
  lease_.session = f.session_id();
  lease_.uname = f.uname();
  lease_.renewed_ms = boot_ms();
  lease_.fenced = false;
  if (ms == 0) {
    lease_timer_.cancel();
    leased_tasks_.clear();  // fencing is off: nobody's tasks are fenced, now or later
    return;
  }
  arm_lease();
}

void node_tree::renew_lease(const srv9p::fid& f) {
  if (lease_.ms == 0 || f.session_id() != lease_.session || f.uname() != lease_.uname) return;
  std::int64_t now = boot_ms();
  // A heartbeat that comes after the lease ran out (the daemon was stopped, or it sat in a
  // buffer) may be one the scheduler has given up on: it renews nothing until the fence
  // is done, or a stopped daemon's copies would outlive their requeue.
  if (!lease_.fenced && now - lease_.renewed_ms >= lease_.ms) fence_now(now - lease_.renewed_ms);
  lease_.renewed_ms = now;
  if (lease_.fenced) {
    // The scheduler speaks again on the same session (it rode out what made us fence).
    lease_.fenced = false;
    if (opts_.log) opts_.log(fmt::format("lease: the scheduler ({}) speaks again; fencing re-armed", lease_.uname));
    arm_lease();
  }
}

void node_tree::arm_lease() {
  // The timer wakes at the lease's end, or within a second: a steady_timer does not count
  // a suspended machine's sleep, CLOCK_BOOTTIME (checked at each wake) does.
  std::int64_t left = lease_.renewed_ms + lease_.ms - boot_ms();
  lease_timer_.expires_after(std::chrono::milliseconds(std::clamp<std::int64_t>(left, 0, 1000)));
  lease_timer_.async_wait([this](const asio::error_code& ec) {
    if (!ec) check_lease();
  });
}

void node_tree::check_lease() {
  if (lease_.ms == 0 || lease_.fenced) return;
  std::int64_t silent = boot_ms() - lease_.renewed_ms;
  if (silent < lease_.ms) return arm_lease();
  fence_now(silent);
}

std::string node_tree::fence_why(std::int64_t silent_ms) const {
  return fmt::format("fenced: no word from the scheduler for {} ms", silent_ms);
}

void node_tree::fence_now(std::int64_t silent_ms) {
  lease_.fenced = true;
  lease_.fenced_silent_ms = silent_ms;
  std::size_t killed = 0;
  if (runner_ != nullptr) {
    for (std::uint64_t id : leased_tasks_) {
      task* t = runner_->find(id);
      if (t != nullptr && t->state == task_state::running && runner_->fence(*t, fence_why(silent_ms))) ++killed;
    }
  }
  events_.post(fmt::format("fence {}", silent_ms));
  if (opts_.log) {
    opts_.log(fmt::format("lease: no word from the scheduler ({}) for {} ms (lease {} ms): fenced, {} task{} killed",
                          lease_.uname, silent_ms, lease_.ms, killed, killed == 1 ? "" : "s"));
  }
}

}  // namespace node
