// galaxy-node --join (node/join.hpp): the client half of the join, and the loop that
// joins, serves, and joins again.
#include "node/join.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <asio/post.hpp>
#include <chrono>
#include <cstring>
#include <fmt/format.h>
#include <memory>
#include <random>

#include "srv9p/auth.hpp"
#include "srv9p/dial.hpp"
#include "srv9p/fcall.hpp"

namespace node {

namespace {

using namespace std::chrono;
constexpr std::uint16_t sched_default_port = 5641;
// The exchange is a few short messages: a small msize is plenty, and bounds what a
// hostile listener can make us read.
constexpr std::uint32_t join_msize = 8192;

std::unexpected<std::string> fail(std::string s) { return std::unexpected(std::move(s)); }

// A socket closed at scope end unless released.
struct fd_guard {
  int fd = -1;
  ~fd_guard() {
    if (fd >= 0) ::close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

// Waits until fd is ready for events or the deadline passes. Errors: timeout, poll's.
std::expected<void, std::string> wait_fd(int fd, short events, steady_clock::time_point deadline) {
  for (;;) {
    auto left = duration_cast<milliseconds>(deadline - steady_clock::now()).count();
    if (left <= 0) return fail("timed out");
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(std::strerror(errno));
    if (n > 0) return {};
  }
}

// Connects to one address within the deadline; returns a blocking socket.
std::expected<int, std::string> connect_to(const ::sockaddr* sa, ::socklen_t len, int family,
                                           steady_clock::time_point deadline) {
  fd_guard s{::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)};
  if (s.fd < 0) return fail(std::strerror(errno));
  if (::connect(s.fd, sa, len) != 0) {
    if (errno != EINPROGRESS) return fail(std::strerror(errno));
    if (auto ok = wait_fd(s.fd, POLLOUT, deadline); !ok) return fail("connect " + ok.error());
    int err = 0;
    ::socklen_t elen = sizeof err;
    ::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &elen);
    if (err != 0) return fail(std::strerror(err));
  }
  int fl = ::fcntl(s.fd, F_GETFL);
  ::fcntl(s.fd, F_SETFL, fl & ~O_NONBLOCK);
  return s.release();
}

std::expected<int, std::string> dial(const std::string& addr, steady_clock::time_point deadline) {
  auto a = srv9p::parse_dial(addr, sched_default_port);
  if (!a) return fail(a.error());
  if (a->net == srv9p::dial_addr::net_kind::unix_socket) {
    ::sockaddr_un un{};
    un.sun_family = AF_UNIX;
    if (a->path.size() >= sizeof un.sun_path) return fail("socket path too long");
    std::memcpy(un.sun_path, a->path.data(), a->path.size());
    return connect_to(reinterpret_cast<::sockaddr*>(&un), sizeof un, AF_UNIX, deadline);
  }
  if (a->host == "*") return fail("'*' names no host");
  ::addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  ::addrinfo* res = nullptr;
  int rc = ::getaddrinfo(a->host.c_str(), std::to_string(a->port).c_str(), &hints, &res);
  if (rc != 0) return fail(fmt::format("cannot resolve '{}': {}", a->host, ::gai_strerror(rc)));
  std::unique_ptr<::addrinfo, decltype(&::freeaddrinfo)> list(res, ::freeaddrinfo);
  std::string last = "no address";
  for (auto* ai = res; ai != nullptr; ai = ai->ai_next) {
    auto fd = connect_to(ai->ai_addr, ai->ai_addrlen, ai->ai_family, deadline);
    if (fd) {
      int one = 1;
      ::setsockopt(*fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return fd;
    }
    last = fd.error();
  }
  return fail(last);
}

// One T-message out, its reply in, read exactly: size[4], then size-4 bytes.
class exchange {
 public:
  exchange(int fd, std::uint32_t timeout_ms) : fd_(fd), timeout_(milliseconds(timeout_ms)) {}

  std::expected<srv9p::message, std::string> rpc(srv9p::message t) {
    std::uint16_t tag = std::holds_alternative<srv9p::tversion>(t) ? srv9p::notag : next_tag_++;
    auto out = srv9p::encode(srv9p::fcall{tag, std::move(t)});
    const std::uint8_t* p = out.data();
    std::size_t n = out.size();
    while (n > 0) {
      ssize_t w = ::send(fd_, p, n, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return fail(std::strerror(errno));
      p += w;
      n -= static_cast<std::size_t>(w);
    }
    auto deadline = steady_clock::now() + timeout_;
    std::vector<std::uint8_t> msg(4);
    if (auto ok = read_exactly(msg.data(), 4, deadline); !ok) return fail(ok.error());
    std::uint32_t size = srv9p::peek_size(msg);
    if (size < srv9p::header_size || size > join_msize) return fail(fmt::format("bad reply size {}", size));
    msg.resize(size);
    if (auto ok = read_exactly(msg.data() + 4, size - 4, deadline); !ok) return fail(ok.error());
    auto f = srv9p::decode(msg);
    if (!f) return fail("bad reply: " + f.error());
    if (f->tag != tag) return fail(fmt::format("reply with tag {} to tag {}", f->tag, tag));
    if (auto* e = std::get_if<srv9p::rerror>(&f->msg)) return fail(e->ename);
    return std::move(f->msg);
  }

 private:
  std::expected<void, std::string> read_exactly(std::uint8_t* p, std::size_t n, steady_clock::time_point deadline) {
    while (n > 0) {
      if (auto ok = wait_fd(fd_, POLLIN, deadline); !ok) {
        return fail(fmt::format("no answer from the scheduler within {} ms", timeout_.count()));
      }
      ssize_t r = ::recv(fd_, p, n, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return fail(std::strerror(errno));
      if (r == 0) return fail("connection closed");
      p += r;
      n -= static_cast<std::size_t>(r);
    }
    return {};
  }

  int fd_;
  milliseconds timeout_;
  std::uint16_t next_tag_ = 1;
};

template <class R>
std::expected<R, std::string> expect(std::expected<srv9p::message, std::string> r, std::string_view what) {
  if (!r) return fail(std::move(r.error()));
  if (auto* p = std::get_if<R>(&*r)) return std::move(*p);
  return fail(fmt::format("{} answered by {}", what, srv9p::type_name(srv9p::type_of(*r))));
}

}  // namespace

std::string make_nonce() {
  unsigned char bytes[ctl::join_nonce_hex / 2];
  std::size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) std::abort();  // getrandom(2) cannot fail with these arguments once the pool is ready
    got += static_cast<std::size_t>(n);
  }
  std::string hex;
  for (unsigned char b : bytes) hex += fmt::format("{:02x}", b);
  return hex;
}

std::expected<int, std::string> join_once(const join_options& opts, const std::string& nonce,
                                          std::atomic<int>* current_fd) {
  auto deadline = steady_clock::now() + milliseconds(opts.timeout_ms);
  auto fd = dial(opts.dial, deadline);
  if (!fd) return fail(fmt::format("dial {}: {}", opts.dial, fd.error()));
  fd_guard s{*fd};
  if (current_fd != nullptr) current_fd->store(s.fd);
  struct clear_current {
    std::atomic<int>* p;
    ~clear_current() {
      if (p != nullptr) p->store(-1);
    }
  } clear{current_fd};
  exchange x(s.fd, opts.timeout_ms);

  auto v = expect<srv9p::rversion>(x.rpc(srv9p::tversion{join_msize, std::string(srv9p::version_9p2000)}), "Tversion");
  if (!v) return fail(v.error());
  if (v->version != srv9p::version_9p2000) return fail(fmt::format("scheduler speaks '{}', not 9P2000", v->version));
  constexpr std::uint32_t root = 0, afid = 1, join_fid = 2;
  std::uint32_t attach_afid = srv9p::nofid;
  if (opts.credential) {
    auto bind = srv9p::socket_binding(s.fd, true);
    if (!bind) return fail(bind.error());
    auto a = x.rpc(srv9p::tauth{afid, opts.uname, ""});
    if (a) {
      if (!std::holds_alternative<srv9p::rauth>(*a)) return fail("Tauth answered by something else");
      // The credential carries the afid's challenge (srv9p/auth.hpp), so that one written
      // to a squatter on the scheduler's port is worth nothing at the real scheduler.
      auto r = expect<srv9p::rread>(x.rpc(srv9p::tread{afid, 0, 64}), "Tread of the afid's challenge");
      if (!r) return fail(r.error());
      auto challenge = srv9p::parse_challenge(r->data);
      if (!challenge) return fail(challenge.error());
      auto cred = opts.credential(srv9p::credential_payload(*bind, *challenge));
      if (!cred) return fail(cred.error());
      auto w = expect<srv9p::rwrite>(x.rpc(srv9p::twrite{afid, 0, std::move(*cred)}), "Twrite");
      if (!w) return fail(w.error());
      attach_afid = afid;
    }
    // An Rerror to Tauth: the scheduler does not authenticate; Tattach says if it minds.
  }
  auto at = expect<srv9p::rattach>(x.rpc(srv9p::tattach{root, attach_afid, opts.uname, ""}), "Tattach");
  if (!at) return fail(at.error());
  if (attach_afid != srv9p::nofid) {
    if (auto c = expect<srv9p::rclunk>(x.rpc(srv9p::tclunk{afid}), "Tclunk"); !c) return fail(c.error());
  }
  auto w = expect<srv9p::rwalk>(x.rpc(srv9p::twalk{root, join_fid, {"join"}}), "Twalk");
  if (!w) return fail(w.error());
  if (w->qids.size() != 1) return fail("the scheduler has no /join");
  if (auto o = expect<srv9p::ropen>(x.rpc(srv9p::topen{join_fid, srv9p::owrite}), "Topen"); !o) return fail(o.error());
  ctl::join_request who = opts.who;
  who.nonce = nonce;
  std::string line = ctl::format_join(who);
  auto wr = expect<srv9p::rwrite>(x.rpc(srv9p::twrite{join_fid, 0, line}), "Twrite");
  if (!wr) return fail(wr.error());
  if (wr->count != line.size()) return fail(fmt::format("the scheduler took {} of {} bytes", wr->count, line.size()));

  int one = 1;
  ::setsockopt(s.fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  ::sockaddr_storage ss{};
  ::socklen_t len = sizeof ss;
  if (::getsockname(s.fd, reinterpret_cast<::sockaddr*>(&ss), &len) == 0 && ss.ss_family != AF_UNIX) {
    ::setsockopt(s.fd, IPPROTO_TCP, TCP_KEEPIDLE, &opts.keepalive_idle_s, sizeof(int));
    ::setsockopt(s.fd, IPPROTO_TCP, TCP_KEEPINTVL, &opts.keepalive_interval_s, sizeof(int));
    ::setsockopt(s.fd, IPPROTO_TCP, TCP_KEEPCNT, &opts.keepalive_count, sizeof(int));
  }
  return s.release();
}

joiner::joiner(asio::io_context& io, srv9p::server& srv, join_options opts)
    : io_(io), srv_(srv), opts_(std::move(opts)) {}

joiner::~joiner() { stop(); }

void joiner::log(std::string_view line) const {
  if (opts_.log) opts_.log(line);
}

void joiner::start() {
  thread_ = std::thread([this] { run(); });
}

void joiner::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  if (int fd = current_fd_.load(); fd >= 0) ::shutdown(fd, SHUT_RDWR);
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool joiner::sleep_ms(std::uint32_t ms) {
  std::unique_lock lock(mu_);
  return !cv_.wait_for(lock, milliseconds(ms), [this] { return stopping_; });
}

void joiner::run() {
  std::mt19937_64 rng(std::random_device{}());
  std::uint32_t step = opts_.retry_ms;
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    std::string nonce = make_nonce();
    auto began = steady_clock::now();
    auto fd = join_once(opts_, nonce, &current_fd_);
    if (fd) {
      log(fmt::format("joined {} as {}", opts_.dial, opts_.who.name));
      // Served on the io_context until either side hangs up; this thread waits for that.
      auto ended = std::make_shared<bool>(false);
      srv9p::peer_info peer{.uid = std::nullopt, .binding = srv9p::join_binding(nonce)};
      asio::post(io_, [this, fd = *fd, peer, ended] {
        auto done = [this, ended] {
          {
            std::lock_guard lock(mu_);
            *ended = true;
          }
          cv_.notify_all();
        };
        if (auto ok = srv_.adopt(fd, peer, done); !ok) {
          log(ok.error());
          done();
        }
      });
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || *ended; });
        if (stopping_) return;
      }
      log(fmt::format("connection to {} closed", opts_.dial));
      if (steady_clock::now() - began >= milliseconds(opts_.stable_ms)) step = opts_.retry_ms;
    }
    // Jittered exponential backoff: a wait drawn from 50% to 150% of the step, so that
    // nodes cut off together do not all come back in the same instant.
    std::uniform_real_distribution<double> jitter(0.5, 1.5);
    auto wait = static_cast<std::uint32_t>(step * jitter(rng));
    if (!fd) log(fmt::format("join {}: {}; again in {:.1f} s", opts_.dial, fd.error(), wait / 1000.0));
    if (!sleep_ms(wait)) return;
    step = std::min(opts_.retry_max_ms, step * 2);
  }
}

}  // namespace node
