// galaxy-sched's link to one node (see sched/node_link.hpp).
//
// Threads: none of its own. The connection is an io-mode fsclient on the scheduler's
// io_context, so the dial, the attach and every reply callback run on the io_context's
// thread; callbacks post their work (rather than doing it in place) because a send on a
// closed connection calls its callback at once, inside the caller.
#include "sched/node_link.hpp"

#include <asio/post.hpp>
#include <fmt/format.h>

#include <charconv>
#include <optional>

#include "ctl/ctlmsg.hpp"
#include "srv9p/errors.hpp"

namespace sched {

std::expected<void, std::string> parse_node_status(std::string_view line, node_info& info) {
  auto words = ctl::tokenize(line);
  if (!words) return std::unexpected(words.error());
  bool have_cpu = false, have_mem = false;
  for (const auto& w : *words) {
    auto eq = w.find('=');
    if (eq == std::string::npos) continue;
    std::string_view k(w.data(), eq), v(w.data() + eq + 1, w.size() - eq - 1);
    if (k == "arch") {
      info.arch = v;
    } else if (k == "ncpu") {
      if (auto n = ctl::parse_u64(v)) info.ncpu = static_cast<std::uint32_t>(*n), have_cpu = true;
    } else if (k == "share") {
      if (auto n = ctl::parse_u64(v)) info.share_pct = static_cast<std::uint32_t>(*n);
    } else if (k == "mem") {
      if (auto n = ctl::parse_u64(v)) info.mem_bytes = *n, have_mem = true;
    } else if (k == "memfree") {
      if (auto n = ctl::parse_u64(v)) info.memfree_bytes = *n;
    } else if (k == "state") {
      info.draining = v == "draining";
    }
  }
  if (!have_cpu || !have_mem) {
    return std::unexpected(fmt::format("bad node status '{}': expected ncpu= and mem=", line.substr(0, 60)));
  }
  return {};
}

void node_conn::root(const std::string& uname, root_callback got) {
  if (auto it = roots_.find(uname); it != roots_.end()) return got(attach_prefix{it->second, 0}, {});
  if (auto w = authenticating_.find(uname); w != authenticating_.end()) {
    w->second.push_back(std::move(got));
    return;
  }
  if (!client_->server_authenticates()) {
    std::uint32_t fid = client_->alloc_fid();
    roots_.emplace(uname, fid);
    std::vector<srv9p::message> prefix;
    prefix.emplace_back(srv9p::tattach{fid, srv9p::nofid, uname, ""});
    return got(attach_prefix{fid, 1}, std::move(prefix));
  }
  // Tauth and the challenge's Tread in one write; the credential waits for the challenge.
  std::uint32_t afid = client_->alloc_fid();
  authenticating_[uname].push_back(std::move(got));
  struct first {
    fsclient::client::reply auth, challenge;
    int left = 2;
  };
  auto st = std::make_shared<first>();
  // Holds the connection until both replies are in (a close answers them at once).
  auto both = [self = shared_from_this(), st, uname, afid] {
    auto waiting = std::move(self->authenticating_[uname]);
    self->authenticating_.erase(uname);
    auto refuse = [&](const std::string& why) {
      for (auto& w : waiting) w(std::unexpected(why), {});
    };
    if (!st->auth) {
      self->client_->release_fid(afid);
      return refuse(st->auth.error());
    }
    auto cred = self->client_->credential_for(std::move(st->challenge));
    if (!cred) {
      self->client_->send(srv9p::tclunk{afid}, [self, afid](fsclient::client::reply) { self->client_->release_fid(afid); });
      return refuse(cred.error());
    }
    std::uint32_t fid = self->client_->alloc_fid();
    self->roots_.emplace(uname, fid);
    std::vector<srv9p::message> prefix;
    prefix.emplace_back(srv9p::twrite{afid, 0, std::move(*cred)});
    prefix.emplace_back(srv9p::tattach{fid, afid, uname, ""});
    prefix.emplace_back(srv9p::tclunk{afid});
    waiting.front()(attach_prefix{fid, 3, afid}, std::move(prefix));
    for (std::size_t i = 1; i < waiting.size(); ++i) waiting[i](attach_prefix{fid, 0}, {});
  };
  std::vector<std::pair<srv9p::message, fsclient::client::callback>> b;
  b.emplace_back(srv9p::tauth{afid, uname, ""}, [st, both](fsclient::client::reply r) {
    st->auth = std::move(r);
    if (--st->left == 0) both();
  });
  b.emplace_back(srv9p::tread{afid, 0, fsclient::client::challenge_read_bytes}, [st, both](fsclient::client::reply r) {
    st->challenge = std::move(r);
    if (--st->left == 0) both();
  });
  client_->send_batch(std::move(b));
}

node_link::node_link(asio::io_context& io, std::string name, std::string dial, link_options opts, hooks h)
    : io_(io), name_(std::move(name)), dial_(std::move(dial)), opts_(std::move(opts)), hooks_(std::move(h)),
      timer_(io) {}

node_link::node_link(asio::io_context& io, std::string name, std::unique_ptr<fsclient::client> c, link_options opts,
                     hooks h)
    : io_(io), name_(std::move(name)), opts_(std::move(opts)), hooks_(std::move(h)), timer_(io),
      joined_client_(std::move(c)), joined_(true) {}

node_link::~node_link() {
  stopped_ = true;
  if (conn_) conn_->client().close();
  if (attaching_) attaching_->client().close();
}

void node_link::start() {
  if (!joined_) return dial_async();
  if (!joined_client_) return mark_down("not joined since the scheduler started");
  attach_async(std::move(joined_client_));
}

void node_link::stop() {
  stopped_ = true;
  timer_.cancel();
  up_ = false;
  if (conn_) conn_->client().close();
  conn_.reset();
  if (attaching_) attaching_->client().close();
  attaching_.reset();
}

void node_link::dial_async() {
  if (dialing_ || stopped_) return;
  dialing_ = true;
  fsclient::client::options copts;
  copts.version_timeout_ms = opts_.dial_timeout_ms;
  copts.credential = opts_.credential;
  copts.keepalive_s = opts_.keepalive_s;
  copts.max_queue_bytes = opts_.max_queue_bytes;
  copts.log = opts_.log;
  fsclient::client::async_dial(io_, dial_, std::move(copts),
                               [weak = weak_from_this()](fsclient::result<std::unique_ptr<fsclient::client>> c) {
                                 auto self = weak.lock();
                                 if (!self || self->stopped_) return;
                                 if (!c) {
                                   self->dialing_ = false;
                                   return self->mark_down(c.error());
                                 }
                                 self->attach_async(std::move(*c));
                               });
}

// Attaches as the scheduler on c and opens the files the link keeps open: Tattach (after
// Tauth and the credential, when the node authenticates), then one write of three Twalk
// and Topen pairs.
void node_link::attach_async(std::unique_ptr<fsclient::client> c) {
  dialing_ = true;
  auto conn = std::make_shared<node_conn>(std::move(c));
  attaching_ = conn;
  std::weak_ptr<node_link> weak = weak_from_this();
  auto failed = [weak, conn](std::string why) {
    // Posted: a callback may run inside the send that failed at once.
    auto self = weak.lock();
    if (!self) return;
    asio::post(self->io_, [weak, conn, why = std::move(why)]() mutable {
      auto self = weak.lock();
      if (!self || self->stopped_ || self->attaching_ != conn) return;
      self->attaching_.reset();
      self->dialing_ = false;
      conn->client().close();
      self->mark_down(std::move(why));
    });
  };
  // This attach also learns whether the node authenticates (server_authenticates()).
  conn->client().async_attach(opts_.uname, "", [weak, conn, failed](fsclient::result<std::uint32_t> root) {
    if (!root) return failed("attach: " + root.error());
    auto self = weak.lock();
    if (!self || self->stopped_) return;
    conn->set_root(self->opts_.uname, *root);
    struct state {
      std::vector<fsclient::client::reply> rs = std::vector<fsclient::client::reply>(6);
      std::size_t left = 6;
      std::uint32_t fids[3] = {};
    };
    auto st = std::make_shared<state>();
    static constexpr const char* files[3] = {"status", "labels", "events"};
    std::vector<std::pair<srv9p::message, fsclient::client::callback>> b;
    for (int i = 0; i < 3; ++i) st->fids[i] = conn->client().alloc_fid();
    for (std::size_t k = 0; k < 6; ++k) {
      std::size_t i = k / 2;
      srv9p::message m = k % 2 == 0 ? srv9p::message(srv9p::twalk{*root, st->fids[i], {files[i]}})
                                    : srv9p::message(srv9p::topen{st->fids[i], srv9p::oread});
      b.emplace_back(std::move(m), [weak, conn, st, failed, k](fsclient::client::reply r) {
        st->rs[k] = std::move(r);
        if (--st->left > 0) return;
        for (std::size_t j = 0; j < 6; ++j) {
          if (!st->rs[j]) return failed(fmt::format("{}: {}", files[j / 2], st->rs[j].error()));
        }
        auto self = weak.lock();
        if (!self) return;
        asio::post(self->io_, [weak, conn, st] {
          auto self = weak.lock();
          if (!self || self->stopped_ || self->attaching_ != conn) return;
          self->attaching_.reset();
          self->dialing_ = false;
          self->connected(opened{conn, st->fids[0], st->fids[1], st->fids[2]});
        });
      });
    }
    conn->client().send_batch(std::move(b));
  });
}

void node_link::connected(opened o) {
  conn_ = std::move(o.conn);
  ++generation_;
  status_fid_ = o.status_fid;
  labels_fid_ = o.labels_fid;
  events_fid_ = o.events_fid;
  events_partial_.clear();
  heartbeat_pending_ = false;
  read_events();
  heartbeat();
}

// Fencing depends on these rules (sched/reconcile.cpp, "Fencing"; node/tree.hpp): one
// heartbeat in flight at a time, the node marked down only when the one in flight, sent
// at S, is still unanswered at S + down_after_ms (checked at each tick, so at or after
// it); the up hook (which gives the lease) only after a heartbeat was answered; and the
// heartbeat's /status read made through the root attached as opts_.uname on this
// connection, the session and attach name on which node_up writes `lease` (batch() with
// the same uname uses the same root), since only those reads renew it.
void node_link::heartbeat() {
  if (stopped_ || !conn_) return;
  auto now = std::chrono::steady_clock::now();
  if (heartbeat_pending_) {
    auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(now - heartbeat_sent_).count();
    if (waited >= opts_.down_after_ms) return mark_down(fmt::format("no answer for {} ms", waited));
  } else if (!conn_->connected()) {
    return mark_down("connection closed");
  } else {
    heartbeat_pending_ = true;
    heartbeat_sent_ = now;
    std::uint64_t gen = generation_;
    auto replies = std::make_shared<std::vector<fsclient::client::reply>>(2);
    auto count = std::make_shared<std::atomic<int>>(2);
    auto done = [io = &io_, weak = weak_from_this(), gen, replies]() {
      asio::post(*io, [weak, gen, replies] {
        auto held = weak.lock();
        if (!held || held->stopped_) return;
        node_link& self = *held;
        if (gen != self.generation_) return;
        self.heartbeat_pending_ = false;
        for (auto& r : *replies) {
          if (!r) return self.mark_down(r.error());
        }
        node_info info = self.info_;
        auto status = std::get<srv9p::rread>(*(*replies)[0]).data;
        if (auto ok = parse_node_status(status, info); !ok) return self.mark_down(ok.error());
        info.labels.clear();
        std::string_view labels = std::get<srv9p::rread>(*(*replies)[1]).data;
        while (!labels.empty()) {
          auto nl = labels.find('\n');
          std::string_view line = labels.substr(0, nl);
          if (auto kv = ctl::parse_kv(line)) info.labels.push_back(*kv);
          labels = nl == std::string_view::npos ? std::string_view{} : labels.substr(nl + 1);
        }
        bool reshaped = !info.same_shape(self.info_);
        self.info_ = std::move(info);
        if (self.up_ && reshaped && self.hooks_.info) self.hooks_.info();
        if (!self.up_) {
          self.up_ = true;
          self.reported_down_ = false;
          if (self.hooks_.up) self.hooks_.up();
        }
      });
    };
    std::vector<std::pair<srv9p::message, fsclient::client::callback>> b;
    for (int i = 0; i < 2; ++i) {
      b.emplace_back(srv9p::tread{i == 0 ? status_fid_ : labels_fid_, 0, 8192},
                     [replies, count, done, i](fsclient::client::reply r) {
                       (*replies)[i] = std::move(r);
                       if (--*count == 0) done();
                     });
    }
    conn_->client().send_batch(std::move(b));
  }
  timer_.expires_after(std::chrono::milliseconds(opts_.heartbeat_ms));
  timer_.async_wait([weak = weak_from_this()](const asio::error_code& ec) {
    auto self = weak.lock();
    if (!ec && self && !self->stopped_) self->heartbeat();
  });
}

void node_link::read_events() {
  if (!conn_) return;
  std::uint64_t gen = generation_;
  conn_->client().send(srv9p::tread{events_fid_, 0, 8192}, [io = &io_, weak = weak_from_this(), gen](fsclient::client::reply r) {
    asio::post(*io, [weak, gen, r = std::move(r)] {
      auto held = weak.lock();
      if (!held || held->stopped_) return;
      node_link& self = *held;
      if (gen != self.generation_) return;
      if (!r) return self.mark_down(r.error());
      self.events_partial_ += std::get<srv9p::rread>(*r).data;
      std::size_t start = 0;
      for (auto nl = self.events_partial_.find('\n'); nl != std::string::npos;
           nl = self.events_partial_.find('\n', start)) {
        std::string line = self.events_partial_.substr(start, nl - start);
        start = nl + 1;
        if (self.hooks_.event) self.hooks_.event(std::move(line));
        if (gen != self.generation_ || self.stopped_) return;  // the hook took the node down
      }
      self.events_partial_.erase(0, start);
      self.read_events();
    });
  });
}

void node_link::mark_down(std::string why) {
  if (stopped_) return;
  ++generation_;
  bool was_up = up_;
  up_ = false;
  heartbeat_pending_ = false;
  if (conn_) {
    // A hang-up's callers all say "connection closed"; the client knows why it closed
    // (a reset, the outbound queue over its bound).
    if (why == srv9p::err::hungup) {
      if (auto r = conn_->client().hangup_reason(); !r.empty()) why = std::move(r);
    }
    conn_->client().close();
  }
  conn_.reset();
  if ((was_up || !reported_down_) && hooks_.down) {
    reported_down_ = true;
    hooks_.down(std::move(why), heartbeat_sent_ + std::chrono::milliseconds(opts_.down_after_ms));
  }
  timer_.cancel();
  if (joined_ || stopped_) return;  // a joined node comes back by joining again
  timer_.expires_after(std::chrono::milliseconds(opts_.reconnect_ms));
  timer_.async_wait([weak = weak_from_this()](const asio::error_code& ec) {
    auto self = weak.lock();
    if (!ec && self && !self->stopped_ && !self->conn_) self->dial_async();
  });
}

void node_link::batch(const std::string& uname, builder build, std::function<void(replies)> done) {
  auto conn = this->conn();
  if (!conn || !conn->connected()) {
    replies r;
    r.push_back(std::unexpected(fmt::format("node {} is down", name_)));
    asio::post(io_, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
    return;
  }
  conn->root(uname, [io = &io_, conn, uname, build = std::move(build), done = std::move(done)](
                        fsclient::result<node_conn::attach_prefix> prefix, std::vector<srv9p::message> msgs) mutable {
    send_batch(*io, conn, uname, prefix, std::move(msgs), build, std::move(done));
  });
}

void node_link::send_batch(asio::io_context& io, const std::shared_ptr<node_conn>& conn, const std::string& uname,
                           const fsclient::result<node_conn::attach_prefix>& prefix, std::vector<srv9p::message> msgs,
                           const builder& build, std::function<void(replies)> done) {
  if (!prefix) {
    replies r;
    r.push_back(std::unexpected("attach: " + prefix.error()));
    asio::post(io, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
    return;
  }
  std::size_t attach_added = prefix->count;
  auto body = build(*conn, prefix->root);
  // Fids the batch clunks or removes go back to the pool once the replies are in.
  std::vector<std::uint32_t> released;
  if (prefix->afid != srv9p::nofid) released.push_back(prefix->afid);
  for (const auto& m : body) {
    if (auto* c = std::get_if<srv9p::tclunk>(&m)) released.push_back(c->fid);
    if (auto* r = std::get_if<srv9p::tremove>(&m)) released.push_back(r->fid);
  }
  msgs.insert(msgs.end(), std::make_move_iterator(body.begin()), std::make_move_iterator(body.end()));
  auto out = std::make_shared<replies>(msgs.size());
  auto count = std::make_shared<std::atomic<std::size_t>>(msgs.size());
  auto finish = [io = &io, out, attach_added, done = std::move(done), conn, uname, released]() mutable {
    for (auto f : released) conn->client().release_fid(f);
    if (attach_added > 0) {
      // The attach went first: a refused attach must not leave a dead root behind, and
      // the caller sees only the replies to its own messages. The first error among
      // Twrite and Tattach says why (the afid's Tclunk adds nothing).
      std::size_t said = attach_added == 1 ? 0 : 1;  // the Tattach's reply
      for (std::size_t i = 0; i < said; ++i) {
        if (!(*out)[i]) {
          said = i;
          break;
        }
      }
      fsclient::client::reply attach = std::move((*out)[said]);
      if (!attach) asio::post(*io, [conn, uname] { conn->forget_root(uname); });
      out->erase(out->begin(), out->begin() + static_cast<std::ptrdiff_t>(attach_added));
      if (!attach) {
        // Every request of the batch used the root the attach did not make, so each one's
        // own error ("unknown fid") is the attach's refusal, which the caller should see.
        for (auto& r : *out) r = std::unexpected("attach: " + attach.error());
      }
    }
    asio::post(*io, [done = std::move(done), out]() mutable { done(std::move(*out)); });
  };
  auto shared_finish = std::make_shared<decltype(finish)>(std::move(finish));
  std::vector<std::pair<srv9p::message, fsclient::client::callback>> b;
  b.reserve(msgs.size());
  for (std::size_t i = 0; i < msgs.size(); ++i) {
    b.emplace_back(std::move(msgs[i]), [out, count, shared_finish, i](fsclient::client::reply r) {
      (*out)[i] = std::move(r);
      if (--*count == 0) (*shared_finish)();
    });
  }
  conn->client().send_batch(std::move(b));
}

}  // namespace sched
