#pragma once
// Who is asking: the one identity value a session makes when a client attaches, and the
// interface through which the session verifies credentials (design, "Security").
//
// An identity is made in one place, session::do_attach (srv9p/server.cpp), from what the
// connection proves: nothing (an --auth none listener), the Unix-socket peer's uid
// (SO_PEERCRED), or a MUNGE credential written to the afid of a Tauth. The rule, as diod
// (libdiod/diod_auth.c) and Slurm's auth/munge apply it: the proven uid must be the attach
// name's uid on this host, or a uid trusted to speak for others (root, the daemon's own
// uid, and those the daemon was given with --trust).
//
// A credential is bound to the connection it is made for (channel binding): its payload
// names the server endpoint as the client sees it ("galaxy-9p tcp!10.0.0.5!5641",
// socket_binding(fd, peer)), and the session refuses it unless that is the local end of
// the connection it arrived on as the server sees it (socket_binding(fd, local)). A
// credential written to an impostor (a fake server on a port the client dials) is then
// worth nothing at any other endpoint. Consequence: a server reached through address
// translation (NAT, a forwarded port, a proxy) refuses every credential, because the
// client sees another address than the server; dial it at the address it sees.
//
// A joined connection (galaxy-node --join: the node dials the scheduler and then serves
// its own tree on that connection) is bound to the join instead of an address, because a
// node behind NAT sees another address than the scheduler: the node puts a fresh random
// nonce in its join line, written on the node's own authenticated attach, and its session
// on the turned connection accepts only credentials bound to join_binding(NONCE), which
// the scheduler alone learnt from that line.
//
// A credential is also bound to the one afid it was made for (a server challenge): on
// Tauth the session gives the afid 16 fresh random bytes (getrandom(2)), which a Tread of
// the afid returns as the text "challenge HEX32\n" (32 lower-case hex digits and a
// newline, 43 bytes; a read at an offset returns the rest of that text, at the end
// nothing). The client puts it after the binding, one space between:
// "galaxy-9p tcp!10.0.0.5!5641 HEX32" (credential_payload), and the session refuses a
// credential whose challenge is not its afid's, or that has none. Without it, a local
// user who binds the server's port while the server is down (a restart) keeps the
// credential a client writes to it, which is bound to the right address, and presents
// it to the real server once that is back, within the credential's lifetime. With it,
// such a credential names a challenge no afid of the real server ever gave. Cost: the
// client reads the challenge before it can make its credential; fsclient sends Tauth and
// that Tread in one write, so a blocking attach still takes two round trips.
//
// The session knows no credential format: an authenticator verifies one. The MUNGE one
// lives in srv9p/munge.hpp (library srv9p_munge), so that srv9p itself links no libmunge.
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <expected>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace srv9p {

// How an identity was proven.
enum class proof : std::uint8_t {
  none,      // believed: a listener started with --auth none, or an in-process session
  peercred,  // the kernel's word for a Unix-socket peer (SO_PEERCRED)
  munge,     // a MUNGE credential verified by munged
};
std::string_view proof_name(proof p);  // "none", "peercred", "munge"

struct identity {
  std::string uname;            // the attach name, proven as `how` says
  std::optional<uid_t> uid;     // uname's uid on this host, when it is a local user
  proof how = proof::none;
};

// What a verified credential proves.
struct credential_owner {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string bound_to;  // the credential's payload: a socket_binding(), or "" if none
};

// What the transport says about the peer of a connection (srv9p/server.hpp).
struct peer_info {
  std::optional<uid_t> uid;  // a Unix-socket peer's uid (SO_PEERCRED)
  // What a credential written on this connection must be bound to: for an accepted TCP
  // connection the server's own end (srv9p::socket_binding(fd, false)); for a connection
  // a node made by joining a scheduler and then serves (server::adopt), the join's
  // binding, join_binding(NONCE). A credential bound elsewhere is refused. Empty for
  // in-process sessions, which then refuse every credential.
  std::string binding;
};

// The binding prefix of every credential a Galaxy client makes.
inline constexpr std::string_view binding_prefix = "galaxy-9p ";

// The binding of the credentials a scheduler presents on a connection that a node made
// by joining it with nonce (hex, from the node's join line): "galaxy-9p join!NONCE".
std::string join_binding(std::string_view nonce);

// One end of a connected socket as a credential's binding: "galaxy-9p tcp!ADDR!PORT"
// (IPv4-mapped IPv6 addresses written as IPv4) or "galaxy-9p unix!PATH". peer: the
// other end (getpeername: a client names its server), else this end (getsockname: a
// server names itself). Errors: the system call's text, or "not a TCP or Unix socket".
std::expected<std::string, std::string> socket_binding(int fd, bool peer);

// Why a verified credential does not fit this connection, or nothing if it does: its
// payload must be `ours` (the server's socket_binding of the connection). Errors:
// "credential not bound to a server address", "credential was made for tcp!A!P, not
// this server (tcp!B!Q)".
std::optional<std::string> binding_refusal(std::string_view bound_to, std::string_view ours);

// The server challenge of an afid (see above): 16 random bytes from getrandom(2), as 32
// lower-case hex digits. Errors: getrandom's text.
inline constexpr std::size_t challenge_hex_chars = 32;
std::expected<std::string, std::string> make_challenge();

// What a Tread of an afid returns: "challenge HEX32\n".
inline constexpr std::string_view challenge_word = "challenge ";
std::string challenge_text(std::string_view challenge);

// The challenge in the text a client read from its afid (challenge_text's). Errors:
// "server gave no challenge (read of the afid was empty)", "bad challenge from server:
// 'TEXT'".
std::expected<std::string, std::string> parse_challenge(std::string_view text);

// A credential's payload for a server reached at binding (socket_binding(fd, true), or a
// join_binding) that gave challenge: "BINDING CHALLENGE".
std::string credential_payload(std::string_view binding, std::string_view challenge);

// Why a verified credential's payload (bound_to) does not fit this afid, or nothing if
// it does: it must be credential_payload(ours, challenge). Errors: binding_refusal's,
// err::cred_no_challenge (none after the binding), err::cred_other_challenge (another
// afid's, or one an impostor chose).
std::optional<std::string> credential_refusal(std::string_view bound_to, std::string_view ours,
                                              std::string_view challenge);

// Checks a name a client asks to attach as, where the identity is made: not longer than
// max_uname_bytes, and no NUL, '/', or control characters (a name is resolved through
// NSS as a C string and shown in listings and logs). Empty is allowed (the proven uid's
// own name). Error: "bad attach name: WHY".
inline constexpr std::size_t max_uname_bytes = 64;
std::expected<void, std::string> check_uname(std::string_view uname);

class authenticator {
 public:
  using verified = std::expected<credential_owner, std::string>;
  virtual ~authenticator() = default;

  // Whether the bytes written to an afid so far form a whole credential, so that
  // verification can start (a client may split its credential over several Twrites).
  virtual bool complete(std::string_view credential) const = 0;

  // Verifies one credential. Calls done exactly once, from any thread, with the uid, gid
  // and payload it proves or the reason it is refused (a string of srv9p/errors.hpp,
  // under 128 bytes). Must not block the caller: a verifier that blocks does it on its
  // own thread. cancelled is set by the session when nobody waits for the answer any
  // more (hang-up, Tversion): a verifier that has not started may then answer at once
  // with err::hungup instead of asking munged.
  virtual void verify(std::string credential, std::shared_ptr<const std::atomic<bool>> cancelled,
                      std::function<void(verified)> done) = 0;

  // The most bytes a credential may have; an afid written beyond it is refused.
  virtual std::size_t max_bytes() const = 0;
};

// The attach rule: a peer proven to be `uid` may attach as `uname` if uname's uid on
// this host (getpwnam_r) is uid, or if uid is trusted (root, the daemon's own uid, or one
// of `trusted`). An empty uname means uid's own user name. Returns the identity with the
// uname resolved and uname's local uid. Errors: "uid 1001 (bob) may not attach as alice",
// "uid 1001 has no user name on this host" (empty uname).
std::expected<identity, std::string> authorize(uid_t uid, std::string_view uname, proof how,
                                               std::span<const uid_t> trusted);

// uname's uid on this host (getpwnam_r), or nothing if no such user.
std::optional<uid_t> local_uid(std::string_view uname);
// uid's user name on this host (getpwuid_r), or nothing.
std::optional<std::string> local_name(uid_t uid);

}  // namespace srv9p
