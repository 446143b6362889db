// no_close_range PROGRAM [ARG...]: runs PROGRAM with close_range(2) failing ENOSYS, as it
// does on a kernel before Linux 5.9 or under an emulator that does not know the call. A
// seccomp filter (inherited by every child) answers close_range with ENOSYS and lets
// every other call through. Used by tests/node/e2e_test.cpp to check that galaxy-node's
// tasks inherit no descriptor of the daemon even then. Exits 127 if the filter cannot be
// installed or PROGRAM cannot be executed.
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: no_close_range PROGRAM [ARG...]\n");
    return 127;
  }
  sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_close_range, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
    std::perror("no_close_range: seccomp");
    return 127;
  }
  ::execv(argv[1], argv + 1);
  std::perror("no_close_range: exec");
  return 127;
}
