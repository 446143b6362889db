#pragma once
// One table from 9P error strings to Linux errnos, for 9P2000.L's Rlerror (the server
// answers with errno_of(its string)) and for the FUSE bridge (fsclient::errno_of turns a
// server's Rerror into the errno a program sees). It covers every string of
// srv9p/errors.hpp, the trees' own strings, the ctl parser's, and the Plan 9 kernel's,
// lib9p's and Linux net/9p/error.c's wordings of the same conditions.
//
// Matching: an exact match wins; then the first table phrase found inside the text
// (servers add context: "'a/b': file does not exist", "uid 5 (bob) may not attach as
// root"); the formats of errors.hpp are matched by their text before the first "{}".
// Text no entry matches is EIO.
#include <span>
#include <string_view>

namespace srv9p {

struct errno_entry {
  std::string_view text;
  int code;
};

// The table itself, for the man page's list and for tests.
std::span<const errno_entry> errno_table();

// The errno for ename; *known, when given, says whether an entry matched (else EIO).
int errno_of(std::string_view ename, bool* known = nullptr);

}  // namespace srv9p
