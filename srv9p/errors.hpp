#pragma once
// The error strings Galaxy's 9P servers send, worded as Plan 9 words them
// (lib9p srv.c, the kernel's Exxx strings in port/error.h). One place, so that the one
// errno table (srv9p/errno.hpp) maps every one of them, for 9P2000.L's Rlerror and for
// the FUSE bridge. Each stays under errmax (128) bytes, Linux's P9_ERRMAX.
//
// In 9P2000 the Linux kernel maps an Rerror's string to an errno only when it equals one
// of net/9p/error.c's strings exactly (p9_errstr2errno: no prefix, no substring; any
// other string is ESERVERFAULT, "Unknown error 526"). So where that table has a Plan 9
// wording (its "errors from fossil, vacfs, and u9fs") of the same condition, ours is
// worded exactly so: marked [linux] below, with the errno the kernel gives. The others
// keep their words and reach Linux programs as errno 526 in 9P2000; a 9P2000.L mount
// gets the errno of srv9p/errno.hpp's table instead.
#include <string_view>

namespace srv9p::err {

inline constexpr std::string_view botch = "9P protocol botch";
inline constexpr std::string_view unknown_fid = "fid unknown or out of range";  // [linux] EBADF
inline constexpr std::string_view fid_in_use = "fid already in use";  // [linux] EBADF
inline constexpr std::string_view dup_tag = "duplicate tag";
inline constexpr std::string_view walk_open = "cannot walk from an open fid";
inline constexpr std::string_view walk_no_dir = "walk in non-directory";
inline constexpr std::string_view too_many_wnames = "too many names in walk";
inline constexpr std::string_view not_found = "file does not exist";  // [linux] ENOENT
inline constexpr std::string_view exists = "file already exists";  // [linux] EEXIST
inline constexpr std::string_view perm = "permission denied";  // [linux] EACCES
inline constexpr std::string_view is_dir = "is a directory";
inline constexpr std::string_view not_dir = "not a directory";  // [linux] ENOTDIR
inline constexpr std::string_view not_open = "fid not open";
inline constexpr std::string_view already_open = "fid already open";
inline constexpr std::string_view bad_offset = "bad offset in directory read";  // [linux] ESPIPE
inline constexpr std::string_view bad_mode = "illegal mode";  // [linux] EINVAL
inline constexpr std::string_view not_empty = "directory is not empty";  // [linux] ENOTEMPTY
inline constexpr std::string_view no_create = "create prohibited";
inline constexpr std::string_view no_remove = "remove prohibited";
inline constexpr std::string_view no_wstat = "wstat prohibited";  // [linux] EPERM
inline constexpr std::string_view bad_name = "bad character in file name";
inline constexpr std::string_view no_auth = "authentication not required";
inline constexpr std::string_view auth_required = "authentication required";
// Authentication (srv9p/auth.hpp, srv9p/munge.hpp). Those with {} are fmt formats.
inline constexpr std::string_view auth_fid = "not allowed on an authentication fid";
inline constexpr std::string_view not_afid = "afid is not an authentication fid";
inline constexpr std::string_view nofid_afid = "afid must not be NOFID";
inline constexpr std::string_view no_credential = "no credential written to the afid";
inline constexpr std::string_view cred_given = "credential already written";
inline constexpr std::string_view afid_other_name = "attach name or aname differs from the afid's";
inline constexpr std::string_view cred_expired = "credential expired";
inline constexpr std::string_view cred_replayed = "credential replayed";
inline constexpr std::string_view cred_rewound = "credential from the future (clocks apart?)";
inline constexpr std::string_view cred_invalid = "credential invalid (not from this cluster's key?)";
inline constexpr std::string_view cred_malformed = "credential malformed: not a MUNGE credential";
inline constexpr std::string_view cred_too_long =
    "credential too long: {} bytes; a MUNGE credential is at most {} bytes";
inline constexpr std::string_view munged_unreachable = "munged unreachable at {}: {}";
inline constexpr std::string_view may_not_attach = "uid {} ({}) may not attach as {}";
inline constexpr std::string_view cred_unbound = "credential not bound to a server address";
inline constexpr std::string_view cred_other_server = "credential was made for {}, not this server ({})";
// The server challenge (srv9p/auth.hpp): the server's refusals, then the client's.
inline constexpr std::string_view cred_no_challenge =
    "credential has no challenge: read the afid's challenge first and put it in the credential";
inline constexpr std::string_view cred_other_challenge = "credential was made for another challenge (replayed or captured?)";
inline constexpr std::string_view no_challenge_given = "server gave no challenge (read of the afid was empty)";
inline constexpr std::string_view bad_challenge = "bad challenge from server: '{}'";
inline constexpr std::string_view bad_uname = "bad attach name: {}";
inline constexpr std::string_view too_many_afids = "too many authentication fids on this connection: limit {}";
inline constexpr std::string_view cred_bytes_held =
    "too many credential bytes pending on this connection: limit {}";
inline constexpr std::string_view uid_no_name = "uid {} has no user name on this host";
inline constexpr std::string_view too_many_fids = "too many fids on this connection: limit {}";
inline constexpr std::string_view too_many_requests =
    "too many outstanding requests on this connection: limit {}";
inline constexpr std::string_view bad_msize = "msize too small";
inline constexpr std::string_view not_version = "first message must be Tversion";
inline constexpr std::string_view no_attach = "fid not attached";
inline constexpr std::string_view interrupted = "interrupted";
inline constexpr std::string_view hungup = "connection closed";
inline constexpr std::string_view io = "i/o error";  // [linux] EIO
inline constexpr std::string_view read_only = "file is read-only";
inline constexpr std::string_view write_only = "file is write-only";
inline constexpr std::string_view bad_ctl = "unknown control message";
inline constexpr std::string_view no_space = "file system is full";  // [linux] ENOSPC
// A Twrite that may take the connection (tree::hands_off) with bytes already behind it:
// the client must wait for its answer before it sends anything more.
inline constexpr std::string_view handoff_trailing = "botch: data sent after a hand-off write before its answer";
inline constexpr std::string_view handoff_refused = "server botch: this connection cannot be handed off";

}  // namespace srv9p::err
