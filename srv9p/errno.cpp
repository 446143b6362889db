// The errno table of srv9p/errno.hpp. Order matters for the second pass (a phrase found
// inside the text): longer, more specific phrases come before shorter ones they contain.
#include "srv9p/errno.hpp"

#include <cerrno>
#include <string>

#include "srv9p/errors.hpp"

namespace srv9p {
namespace {

// The part of a fmt format before its first "{}": what every message made from it
// starts with.
constexpr std::string_view stem(std::string_view format) { return format.substr(0, format.find("{}")); }

constexpr errno_entry table[] = {
    // srv9p/errors.hpp: the file system's errors.
    {err::not_found, ENOENT},
    {err::perm, EACCES},
    {err::exists, EEXIST},
    {err::is_dir, EISDIR},
    {err::not_dir, ENOTDIR},
    {err::walk_no_dir, ENOTDIR},
    {err::not_empty, ENOTEMPTY},
    {err::no_create, EPERM},
    {err::no_remove, EPERM},
    {err::no_wstat, EPERM},
    {err::bad_name, EINVAL},
    {err::read_only, EACCES},
    {err::write_only, EACCES},
    {err::bad_mode, EINVAL},
    {err::bad_offset, EINVAL},
    {err::bad_ctl, EINVAL},
    {err::no_space, ENOSPC},
    {err::io, EIO},
    {err::interrupted, EINTR},
    {err::hungup, EIO},  // the request's connection went (a FUSE mount redials)
    // The protocol's: a client that breaks the rules.
    {err::unknown_fid, EBADF},
    {err::not_open, EBADF},
    {err::already_open, EBUSY},
    {err::walk_open, EBUSY},
    {err::fid_in_use, EBUSY},
    {err::dup_tag, EPROTO},
    {err::too_many_wnames, E2BIG},
    {err::bad_msize, EINVAL},
    {err::not_version, EPROTO},
    {err::no_attach, EBADF},
    {err::handoff_trailing, EPROTO},
    {err::handoff_refused, EPROTO},
    {stem(err::too_many_fids), EMFILE},
    {stem(err::too_many_requests), EAGAIN},
    // Authentication.
    // Tauth on a server that needs none: attach without an afid. ENOENT as diod's server
    // answers it (libnpfs np_auth) and as diod's client takes it (libnpclient npc_auth:
    // Rlerror ENOENT or 0 is "auth not required"; any other errno fails the mount).
    {err::no_auth, ENOENT},
    {err::auth_required, EACCES},
    {err::auth_fid, EBADF},
    {err::not_afid, EBADF},
    {err::nofid_afid, EBADF},
    {err::no_credential, EACCES},
    {err::cred_given, EBUSY},
    {err::afid_other_name, EACCES},
    {err::cred_expired, EACCES},
    {err::cred_replayed, EACCES},
    {err::cred_rewound, EACCES},
    {err::cred_invalid, EACCES},
    {err::cred_malformed, EACCES},
    {err::cred_unbound, EACCES},
    {stem(err::cred_too_long), EMSGSIZE},
    {stem(err::munged_unreachable), EHOSTUNREACH},
    {stem(err::cred_other_server), EACCES},
    {stem(err::bad_uname), EINVAL},
    {stem(err::too_many_afids), EMFILE},
    {stem(err::cred_bytes_held), EAGAIN},
    // Formats that start with a number: matched by their middle.
    {" may not attach as ", EPERM},            // err::may_not_attach
    {" has no user name on this host", EINVAL},  // err::uid_no_name
    // Malformed messages ("botch: ..."): an unknown type is an operation we lack.
    {"botch: unknown message type", EOPNOTSUPP},
    {err::botch, EPROTO},
    {"server botch", EIO},
    {"botch", EPROTO},
    // The trees (node/tree.cpp, sched/tree.cpp, srv9p/ramfs.cpp) and ctl/.
    {"task removed", ENOENT},
    {"job removed", ENOENT},
    {"task has ended", EPIPE},
    {"NUL in ctl message", EINVAL},
    {"cannot change directory bit", EPERM},
    {"join: expected", EINVAL},
    {"unknown command", EINVAL},
    {"bad # args", EINVAL},
    {"bad argument", EINVAL},
    // Other wordings of the same conditions: the Plan 9 kernel's and lib9p's
    // (sys/src/9/port/error.h, lib9p/srv.c) and Linux net/9p/error.c's.
    {"file exists", EEXIST},
    {"file is a directory", EISDIR},
    {"file not found", ENOENT},
    {"no such file or directory", ENOENT},
    {"directory not empty", ENOTEMPTY},
    {"create in non-directory", ENOTDIR},
    {"mounted directory forbids creation", EPERM},
    {"read-only file system", EROFS},
    {"file system full", ENOSPC},
    {"no space left on device", ENOSPC},
    {"file name too long", ENAMETOOLONG},
    {"device or object already in use", EBUSY},
    {"file in use", EBUSY},
    {"exclusive lock", EBUSY},
    {"i/o on hungup channel", ENOTCONN},
    {"read or write too large", EFBIG},
    {"bad arg in system call", EINVAL},
    {"unknown fid", EBADF},
    {"fid in use", EBUSY},
    {"bad open mode", EINVAL},
    {"Operation not permitted", EPERM},
    {"Permission denied", EACCES},
    {"No such file or directory", ENOENT},
    {"Operation not supported", EOPNOTSUPP},
    // fsclient's own (fsclient/client.cpp).
    {"message too large for msize", EFBIG},
    {"too many requests in flight", EAGAIN},
};

}  // namespace

std::span<const errno_entry> errno_table() { return table; }

int errno_of(std::string_view ename, bool* known) {
  if (known != nullptr) *known = true;
  for (const auto& e : table) {
    if (ename == e.text) return e.code;
  }
  for (const auto& e : table) {
    if (!e.text.empty() && ename.find(e.text) != std::string_view::npos) return e.code;
  }
  if (known != nullptr) *known = false;
  return EIO;
}

}  // namespace srv9p
