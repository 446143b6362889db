#pragma once
// The node's resource files, read live from the kernel: /proc/stat (CPU ticks),
// /proc/meminfo, /proc/loadavg, cpufreq in /sys, and uname(2). Each parser takes the
// text of its /proc file so that tests can feed it fixtures; each formatter returns the
// exact text of a file in the node's tree (man/man4/galaxy-node.4).
#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

namespace node {

// One CPU's cumulative ticks (USER_HZ, normally 1/100 s) from a "cpuN ..." line.
struct cpu_ticks {
  int cpu = 0;
  std::uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
};
// The per-CPU lines of /proc/stat (not the aggregate "cpu" line), in CPU order; proc(5).
// Offline CPUs have no line. Columns a kernel does not give are 0. Errors:
// "/proc/stat: no cpuN lines", "/proc/stat: bad line 'cpu0 x'".
std::expected<std::vector<cpu_ticks>, std::string> parse_proc_stat(std::string_view text);

struct mem_info {
  std::uint64_t total_bytes = 0, free_bytes = 0, available_bytes = 0;
};
// MemTotal, MemFree, MemAvailable from /proc/meminfo (kB there, bytes here); proc(5).
// Without MemAvailable (kernels before 3.14) available is MemFree + Buffers + Cached.
// Errors: "/proc/meminfo: no MemTotal", "/proc/meminfo: bad line '...'".
std::expected<mem_info, std::string> parse_meminfo(std::string_view text);

// The 1-minute load average from /proc/loadavg; proc(5). Error: "/proc/loadavg: bad text '...'".
std::expected<double, std::string> parse_loadavg(std::string_view text);

// The "cpu MHz" of CPU cpu (its "processor" block) in /proc/cpuinfo, rounded; 0 when
// the text has none (ARM kernels never give one).
std::uint32_t parse_cpuinfo_mhz(std::string_view text, int cpu);

// "amd64 linux", "arm64 linux", "arm linux", "386 linux", Plan 9 style names from
// uname's machine field (x86_64 → amd64, aarch64 → arm64, armv6l/armv7l → arm, i686 →
// 386, others as the kernel says: "riscv64 linux"; an empty field is "unknown linux").
std::string arch_name(std::string_view uname_machine);

// The whole of a small file (/proc, /sys, the spool's spec files), read with read(2) so
// that /proc files of length 0 read fully. Errors: "PATH: No such file or directory".
std::expected<std::string, std::string> read_small_file(const std::string& path);

// Reads the files above from the running system. Errors name the file.
std::expected<std::vector<cpu_ticks>, std::string> read_cpu_ticks();
std::expected<mem_info, std::string> read_mem();
std::expected<double, std::string> read_load();
std::string read_arch();
// Current frequency of a CPU in MHz from cpufreq, or /proc/cpuinfo's "cpu MHz"; 0 if
// the machine tells neither (common in VMs).
std::uint32_t read_cpu_mhz(int cpu);

// File texts, each ending in a newline:
//   cpu/N:  "user 1234 nice 0 system 567 idle 89012 iowait 34 mhz 2400"   (ticks)
//   mem:    "total 25165824000 free 1234 available 5678"                (bytes)
std::string format_cpu(const cpu_ticks& t, std::uint32_t mhz);
std::string format_mem(const mem_info& m);

}  // namespace node
