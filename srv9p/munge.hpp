#pragma once
// MUNGE for Galaxy's 9P servers and clients (design, "Security"; as diod's
// libdiod/diod_auth.c and Slurm's auth/munge do it): the authenticator a server verifies
// afid credentials with, and the credential a client writes to its afid.
//
// Library srv9p_munge, apart from srv9p, so that only the programs that need it link
// libmunge. munge_decode and munge_encode block while they talk to munged over its Unix
// socket: the authenticator runs them on one worker thread of its own, started at the
// first credential, and reports on that thread.
//
// A credential's payload is its binding and its afid's challenge (srv9p/auth.hpp): the
// server endpoint the client reached and the 32 hex digits a Tread of the afid returned,
// "galaxy-9p tcp!ADDR!PORT HEX32", so that a credential captured by an impostor is worth
// nothing elsewhere, nor at the same address later. On a joined connection (galaxy-node --join) the scheduler is
// the client of a connection the node made, and addresses mean nothing behind NAT: there
// the binding is "galaxy-9p join!NONCE" (join_binding), NONCE being the 16 random bytes,
// in hex, that the node wrote in its join line over its own authenticated attach. The
// node's session on the turned connection refuses any credential bound otherwise.
#include <condition_variable>
#include <deque>
#include <expected>
#include <mutex>
#include <string>
#include <thread>

#include "srv9p/auth.hpp"

namespace srv9p {

// The largest credential an afid accepts, bytes. A MUNGE credential without payload is
// about 100 bytes of base64; 4096 leaves room for a realm and a long origin.
inline constexpr std::size_t munge_max_credential_bytes = 4096;

class munge_authenticator final : public authenticator {
 public:
  // socket: munged's socket; "" for libmunge's default (MUNGE_OPT_SOCKET left unset).
  explicit munge_authenticator(std::string socket = "");
  ~munge_authenticator() override;  // joins the worker; queued credentials are refused
  munge_authenticator(const munge_authenticator&) = delete;
  munge_authenticator& operator=(const munge_authenticator&) = delete;

  // "MUNGE:" base64 ":", with any trailing white space (munge(1) ends with a newline).
  bool complete(std::string_view credential) const override;
  // munge_decode on the worker thread; the payload comes back as bound_to. A credential
  // still queued when cancelled is set is answered err::hungup without decoding, so that
  // a flood from connections already gone costs munged nothing. Errors
  // (srv9p/errors.hpp): credential expired, replayed, from the future, invalid (another
  // key), malformed, or munged unreachable at PATH: WHY.
  void verify(std::string credential, std::shared_ptr<const std::atomic<bool>> cancelled,
              std::function<void(verified)> done) override;
  std::size_t max_bytes() const override { return munge_max_credential_bytes; }

 private:
  void run();

  std::string socket_;
  std::mutex mu_;
  std::condition_variable cv_;
  struct queued {
    std::string credential;
    std::shared_ptr<const std::atomic<bool>> cancelled;
    std::function<void(verified)> done;
  };
  std::deque<queued> queue_;
  bool stopping_ = false;
  std::thread worker_;
};

// How long a client's credential stays good, seconds (MUNGE_OPT_TTL; munged's default is
// 300). It bounds how long a credential captured by an impostor could be presented at
// the endpoint it is bound to, should the real server come back there (the afid's
// challenge refuses it there too, srv9p/auth.hpp); it must exceed
// the clock difference between hosts.
inline constexpr int munge_credential_ttl_s = 60;

// A fresh credential for the calling process's uid and gid, from munged at socket ("":
// libmunge's default), with payload bind (credential_payload: the server endpoint the
// client is connected to, socket_binding(fd, true), and the afid's challenge); blocks
// while munged answers. MUNGE rejects a
// credential decoded twice, so every attach needs its own. Errors: "munged unreachable
// at PATH: WHY", or "munge: WHY".
std::expected<std::string, std::string> munge_credential(const std::string& socket, std::string_view bind);

}  // namespace srv9p
