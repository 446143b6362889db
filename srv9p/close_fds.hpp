// srv9p/close_fds.hpp: closing every descriptor of a range in a child between fork (or
// clone) and exec, where only async-signal-safe calls may be made (no allocation).
#pragma once

#include <sys/resource.h>
#include <unistd.h>

namespace srv9p {

// Closes descriptors first..last (inclusive; last may be ~0u, "all above first") with
// close_range(2). Where that call fails (it came with Linux 5.9; an older kernel, or an
// emulator that does not know it, answers ENOSYS), each descriptor up to the soft
// RLIMIT_NOFILE is closed in turn: no descriptor can be at or above that limit, which the
// kernel keeps at or below fs.nr_open (about 2^30 at most), and the process has not
// lowered it. Returns false only if neither way could be taken (getrlimit failed); the
// caller should then not exec.
inline bool close_descriptors(unsigned first, unsigned last) {
  if (first > last) return true;
  if (::close_range(first, last, 0) == 0) return true;
  struct rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return false;
  if (rl.rlim_cur == 0) return true;
  unsigned top = rl.rlim_cur - 1 < last ? static_cast<unsigned>(rl.rlim_cur - 1) : last;
  for (unsigned fd = first; fd <= top; fd++) {
    ::close(static_cast<int>(fd));
    if (fd == top) break;  // top may be ~0u
  }
  return true;
}

}  // namespace srv9p
