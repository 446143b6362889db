// srv9p/munge.hpp: munge_decode on a worker thread, munge_encode for clients, and the
// mapping from munge_err_t to the error strings of srv9p/errors.hpp.
#include "srv9p/munge.hpp"

#include <munge.h>

#include <cstdlib>
#include <fmt/format.h>

#include "srv9p/errors.hpp"

namespace srv9p {

namespace {

// A munge context for socket, freed at scope end.
struct munge_context {
  munge_ctx_t ctx = munge_ctx_create();
  explicit munge_context(const std::string& socket) {
    if (ctx != nullptr && !socket.empty()) munge_ctx_set(ctx, MUNGE_OPT_SOCKET, socket.c_str());
  }
  ~munge_context() {
    if (ctx != nullptr) munge_ctx_destroy(ctx);
  }
  munge_context(const munge_context&) = delete;
  munge_context& operator=(const munge_context&) = delete;

  std::string socket_path() const {
    char* path = nullptr;
    if (munge_ctx_get(ctx, MUNGE_OPT_SOCKET, &path) != EMUNGE_SUCCESS || path == nullptr) return "?";
    return path;
  }
  // What went wrong, as the refusal a client reads.
  std::string error(munge_err_t e) const {
    const char* why = munge_ctx_strerror(ctx);
    std::string text = why != nullptr ? why : munge_strerror(e);
    switch (e) {
      case EMUNGE_SOCKET:
      case EMUNGE_TIMEOUT: {
        // libmunge says 'Failed to access "PATH": WHY (Did you start munged?)': keep WHY,
        // so that the reply stays under 128 bytes with the path said once.
        std::string_view why_only = text;
        if (auto q = why_only.find("\": "); q != std::string_view::npos) why_only.remove_prefix(q + 3);
        return fmt::format(fmt::runtime(err::munged_unreachable), socket_path(), why_only);
      }
      case EMUNGE_CRED_EXPIRED: return std::string(err::cred_expired);
      case EMUNGE_CRED_REPLAYED: return std::string(err::cred_replayed);
      case EMUNGE_CRED_REWOUND: return std::string(err::cred_rewound);
      case EMUNGE_CRED_INVALID:
      case EMUNGE_CRED_UNAUTHORIZED:
      case EMUNGE_BAD_CIPHER:
      case EMUNGE_BAD_MAC:
      case EMUNGE_BAD_REALM:
        return std::string(err::cred_invalid);
      case EMUNGE_BAD_CRED:
      case EMUNGE_BAD_VERSION:
      case EMUNGE_BAD_ZIP:
      case EMUNGE_BAD_LENGTH:
      case EMUNGE_BAD_ARG:
        return std::string(err::cred_malformed);
      default:
        return "munge: " + text;
    }
  }
};

constexpr std::string_view munge_prefix = "MUNGE:";

std::string_view trim_right(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

munge_authenticator::munge_authenticator(std::string socket) : socket_(std::move(socket)) {}

munge_authenticator::~munge_authenticator() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

bool munge_authenticator::complete(std::string_view credential) const {
  auto c = trim_right(credential);
  // A credential that cannot become one is complete too: verify() refuses it at once.
  if (!c.starts_with(munge_prefix.substr(0, std::min(c.size(), munge_prefix.size())))) return true;
  return c.size() > munge_prefix.size() && c.back() == ':';
}

void munge_authenticator::verify(std::string credential, std::shared_ptr<const std::atomic<bool>> cancelled,
                                 std::function<void(verified)> done) {
  if (!trim_right(credential).starts_with(munge_prefix)) {
    done(std::unexpected(std::string(err::cred_malformed)));
    return;
  }
  {
    std::lock_guard lock(mu_);
    queue_.push_back(queued{std::move(credential), std::move(cancelled), std::move(done)});
    if (!worker_.joinable()) worker_ = std::thread([this] { run(); });
  }
  cv_.notify_one();
}

void munge_authenticator::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) break;
    auto [credential, cancelled, done] = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    if (cancelled && cancelled->load()) {
      done(std::unexpected(std::string(err::hungup)));
      lock.lock();
      continue;
    }
    std::string text(trim_right(credential));
    munge_context m(socket_);
    verified result;
    if (m.ctx == nullptr) {
      result = std::unexpected(std::string("munge: out of memory"));
    } else {
      uid_t uid = 0;
      gid_t gid = 0;
      void* payload = nullptr;
      int len = 0;
      munge_err_t e = munge_decode(text.c_str(), m.ctx, &payload, &len, &uid, &gid);
      std::string bound_to;
      if (e == EMUNGE_SUCCESS && payload != nullptr && len > 0) {
        bound_to.assign(static_cast<const char*>(payload), static_cast<std::size_t>(len));
      }
      std::free(payload);  // allocated for some errors too (munge.h)
      if (e == EMUNGE_SUCCESS) {
        result = credential_owner{uid, gid, std::move(bound_to)};
      } else {
        result = std::unexpected(m.error(e));
      }
    }
    done(std::move(result));
    lock.lock();
  }
  // Shutting down: nobody will use what is still queued, but every done runs once.
  auto rest = std::move(queue_);
  lock.unlock();
  for (auto& q : rest) q.done(std::unexpected(std::string(err::hungup)));
}

std::expected<std::string, std::string> munge_credential(const std::string& socket, std::string_view bind) {
  munge_context m(socket);
  if (m.ctx == nullptr) return std::unexpected(std::string("munge: out of memory"));
  munge_ctx_set(m.ctx, MUNGE_OPT_TTL, munge_credential_ttl_s);
  char* cred = nullptr;
  munge_err_t e = munge_encode(&cred, m.ctx, bind.data(), static_cast<int>(bind.size()));
  if (e != EMUNGE_SUCCESS) {
    std::free(cred);
    return std::unexpected(m.error(e));
  }
  std::string out(cred);
  std::free(cred);
  return out;
}

}  // namespace srv9p
