#pragma once
// Internal to srv9p: the shared state behind a request handle and a fid's path.
// Trees never include this; they see srv9p/tree.hpp only.
#include <asio/any_io_executor.hpp>
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "srv9p/fcall.hpp"
#include "srv9p/tree.hpp"

namespace srv9p::detail {

// One element of a fid's path: the file and the directory it was walked from. Shared
// between fids cloned from each other; immutable. The root's parent is null.
struct path_elem {
  dir file;
  std::shared_ptr<const path_elem> parent;
};

// One outstanding request. Lives as long as any request handle or the session's table
// refers to it; `done` makes every answer after the first (or after a flush) a no-op.
struct pending {
  std::weak_ptr<session> owner;
  asio::any_io_executor ex;
  std::uint16_t tag = notag;
  message t;
  std::shared_ptr<srv9p::fid> fid;  // the fid named; null for Tversion/Tattach/Tflush
  std::uint32_t msize = 0;          // the session's msize when the request arrived
  bool done = false;
  bool holds_input = false;  // a Twrite to a hand-off file: input stops until it is answered
  std::function<void()> flush_hook;
};

// An afid (attach(5)): the names its Tauth gave, the credential written to it so far, and
// where its verification stands. The Twrite that completed the credential is answered
// when the authenticator has spoken; requests naming the afid wait until then.
struct auth_state {
  enum class phase : std::uint8_t { collecting, verifying, verified, refused };
  std::string uname, aname;
  std::string challenge;  // 32 hex digits: the credential's payload must end with it
  std::string credential;
  phase state = phase::collecting;
  std::optional<credential_owner> owner;  // verified
  std::string refusal;                    // refused: why
  std::shared_ptr<pending> completing;    // verifying: the Twrite that completed it
  // Set when nobody will read the answer (hang-up, Tversion): the authenticator may then
  // skip the credential (authenticator::verify).
  std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace srv9p::detail
