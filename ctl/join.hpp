#pragma once
// The join line: what a node writes to the scheduler's /join file to say who it is
// before the connection turns around (galaxy-node --join; man/man4/galaxy.4, "join").
//
//   join version=1 name=NAME nonce=HEX arch=ARCH ncpu=N mem=BYTES [label=K=V]...
//
// One line, in the ctl language of ctl/ctlmsg.hpp (words separated by blanks, '...'
// quoting, so a label's value may hold blanks): the verb `join`, then key=value words in
// any order, each key once except label. version is the join protocol's (join_version);
// a scheduler answers a version it does not speak before it looks at anything else.
// nonce is 16 random bytes in lower-case hex: the binding of the credentials the
// scheduler presents on the turned connection (srv9p::join_binding). ncpu and mem are
// what the node advertises (its /status says the same; the scheduler's heartbeats read
// that). Every error starts "join: " and is under ctl::max_error bytes.
#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ctl {

inline constexpr unsigned join_version = 1;
inline constexpr std::size_t join_nonce_hex = 32;  // 16 bytes
inline constexpr std::size_t join_max_labels = 64;

struct join_request {
  unsigned version = join_version;
  std::string name;   // the node's name (letters, digits, '-', '_', '.'; at most 64)
  std::string nonce;  // join_nonce_hex lower-case hex digits
  std::string arch;   // "amd64", "arm64" (letters, digits, '-', '_'; at most 32)
  std::uint32_t ncpu = 0;
  std::uint64_t mem_bytes = 0;
  std::vector<std::pair<std::string, std::string>> labels;
};

// The line for r, newline included, every word quoted as needed.
std::string format_join(const join_request& r);

// Parses one join line (a trailing newline is allowed). Errors: "join: version 2 not
// spoken here (1)", "join: expected 'join' first", "join: missing name=", "join: bad
// name 'a/b': expected letters, digits, '-', '_' or '.'", "join: bad nonce: expected 32
// hex digits", "join: bad ncpu '0'", "join: unknown word 'x=1'", "join: name= given
// twice", "join: more than 64 labels", and the tokenizer's and parse_kv's errors.
std::expected<join_request, std::string> parse_join(std::string_view line);

// Whether name is a node name: 1 to 64 letters, digits, '-', '_' or '.', and not "." or "..".
bool valid_node_name(std::string_view name);

}  // namespace ctl
