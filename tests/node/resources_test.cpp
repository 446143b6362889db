// The node's resource files: the /proc parsers over fixture texts taken from real
// machines (an x86 server, a Raspberry Pi 4 running 64-bit Raspberry Pi OS, old and odd
// kernels), the arch names, the exact texts of cpu/N and mem, and the readers against
// the machine the tests run on.
#include "node/resources.hpp"

#include <gtest/gtest.h>

#include <sys/utsname.h>
#include <unistd.h>

namespace {

// An 8-thread x86 server, kernel 6.1: ten columns per CPU.
constexpr std::string_view x86_stat =
    "cpu  4705 356 584 3699176 23 0 28 0 0 0\n"
    "cpu0 1393 280 167 462083 5 0 14 0 0 0\n"
    "cpu1 1028 10 73 462554 3 0 2 0 0 0\n"
    "cpu2 340 16 61 462961 2 0 6 0 0 0\n"
    "cpu3 412 9 58 462877 1 0 1 0 0 0\n"
    "cpu4 501 11 55 462830 4 0 2 0 0 0\n"
    "cpu5 389 12 57 462937 3 0 1 0 0 0\n"
    "cpu6 330 9 53 462983 2 0 1 0 0 0\n"
    "cpu7 312 9 60 461951 3 0 1 7 0 0\n"
    "intr 1462898 33 9 0 0 0 0 0 0 1 0 0 0 156 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
    "ctxt 4193716\n"
    "btime 1700000000\n"
    "processes 26442\n"
    "procs_running 1\n"
    "procs_blocked 0\n"
    "softirq 2024837 2 272106 3 5463 94210 0 68 807654 0 845331\n";

// A Raspberry Pi 4 (arm64, 4 Cortex-A72 cores), Raspberry Pi OS bookworm.
constexpr std::string_view pi_stat =
    "cpu  125386 0 44753 11398416 6817 0 1474 0 0 0\n"
    "cpu0 31541 0 12296 2842346 1795 0 1142 0 0 0\n"
    "cpu1 31006 0 10754 2852483 1694 0 112 0 0 0\n"
    "cpu2 31428 0 10854 2851934 1655 0 110 0 0 0\n"
    "cpu3 31411 0 10849 2851653 1673 0 110 0 0 0\n"
    "intr 38447215 0 8955963 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
    "ctxt 63251827\n"
    "btime 1712040123\n"
    "processes 98231\n"
    "procs_running 2\n"
    "procs_blocked 0\n"
    "softirq 15512083 1245 2958112 41 312871 0 0 1103823 5498230 842 5636919\n";

constexpr std::string_view pi_meminfo =
    "MemTotal:        3884308 kB\n"
    "MemFree:         2653196 kB\n"
    "MemAvailable:    3338480 kB\n"
    "Buffers:           58596 kB\n"
    "Cached:           696000 kB\n"
    "SwapCached:            0 kB\n"
    "Active:           489620 kB\n"
    "Inactive:         514312 kB\n"
    "SwapTotal:        102396 kB\n"
    "SwapFree:         102396 kB\n"
    "Shmem:             23172 kB\n"
    "HugePages_Total:       0\n"
    "HugePages_Free:        0\n"
    "Hugepagesize:       2048 kB\n"
    "CmaTotal:         524288 kB\n"
    "CmaFree:          510740 kB\n";

constexpr std::string_view pi_cpuinfo =
    "processor\t: 0\n"
    "BogoMIPS\t: 108.00\n"
    "Features\t: fp asimd evtstrm crc32 cpuid\n"
    "CPU implementer\t: 0x41\n"
    "CPU architecture: 8\n"
    "CPU variant\t: 0x0\n"
    "CPU part\t: 0xd08\n"
    "CPU revision\t: 3\n"
    "\n"
    "processor\t: 1\n"
    "BogoMIPS\t: 108.00\n"
    "Features\t: fp asimd evtstrm crc32 cpuid\n"
    "\n"
    "Revision\t: c03114\n"
    "Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n";

constexpr std::string_view x86_cpuinfo =
    "processor\t: 0\n"
    "vendor_id\t: GenuineIntel\n"
    "model name\t: Intel(R) Xeon(R) CPU E5-2690 v4 @ 2.60GHz\n"
    "cpu MHz\t\t: 2596.138\n"
    "cache size\t: 35840 KB\n"
    "\n"
    "processor\t: 1\n"
    "vendor_id\t: GenuineIntel\n"
    "cpu MHz\t\t: 1199.501\n"
    "\n";

TEST(ProcStat, X86Server) {
  auto cpus = node::parse_proc_stat(x86_stat);
  ASSERT_TRUE(cpus.has_value()) << cpus.error();
  ASSERT_EQ(cpus->size(), 8u);  // the aggregate "cpu" line is not a CPU
  const auto& c0 = (*cpus)[0];
  EXPECT_EQ(c0.cpu, 0);
  EXPECT_EQ(c0.user, 1393u);
  EXPECT_EQ(c0.nice, 280u);
  EXPECT_EQ(c0.system, 167u);
  EXPECT_EQ(c0.idle, 462083u);
  EXPECT_EQ(c0.iowait, 5u);
  EXPECT_EQ(c0.irq, 0u);
  EXPECT_EQ(c0.softirq, 14u);
  EXPECT_EQ(c0.steal, 0u);
  EXPECT_EQ((*cpus)[7].cpu, 7);
  EXPECT_EQ((*cpus)[7].steal, 7u);
}

TEST(ProcStat, RaspberryPi) {
  auto cpus = node::parse_proc_stat(pi_stat);
  ASSERT_TRUE(cpus.has_value()) << cpus.error();
  ASSERT_EQ(cpus->size(), 4u);
  EXPECT_EQ((*cpus)[3].cpu, 3);
  EXPECT_EQ((*cpus)[3].user, 31411u);
  EXPECT_EQ((*cpus)[3].idle, 2851653u);
  EXPECT_EQ((*cpus)[3].iowait, 1673u);
}

TEST(ProcStat, OldKernelAndOfflineCpu) {
  // Linux 2.4 gave four columns; CPU 1 is offline, so it has no line.
  auto cpus = node::parse_proc_stat("cpu  30 0 20 1000\ncpu0 10 0 5 500\ncpu2 20 0 15 500\npage 1 2\n");
  ASSERT_TRUE(cpus.has_value()) << cpus.error();
  ASSERT_EQ(cpus->size(), 2u);
  EXPECT_EQ((*cpus)[1].cpu, 2);
  EXPECT_EQ((*cpus)[1].system, 15u);
  EXPECT_EQ((*cpus)[1].iowait, 0u);
}

TEST(ProcStat, CpuOrderAndNoTrailingNewline) {
  auto cpus = node::parse_proc_stat("cpu1 1 2 3 4\ncpu0 5 6 7 8");
  ASSERT_TRUE(cpus.has_value()) << cpus.error();
  ASSERT_EQ(cpus->size(), 2u);
  EXPECT_EQ((*cpus)[0].cpu, 0);
  EXPECT_EQ((*cpus)[0].user, 5u);
}

TEST(ProcStat, Errors) {
  EXPECT_EQ(node::parse_proc_stat("").error(), "/proc/stat: no cpuN lines");
  EXPECT_EQ(node::parse_proc_stat("cpu  1 2 3 4\nintr 5\n").error(), "/proc/stat: no cpuN lines");
  EXPECT_EQ(node::parse_proc_stat("cpu0 1 x 3 4\n").error(), "/proc/stat: bad line 'cpu0 1 x 3 4'");
  EXPECT_EQ(node::parse_proc_stat("cpu0 1 2 3\n").error(), "/proc/stat: bad line 'cpu0 1 2 3'");
  EXPECT_EQ(node::parse_proc_stat("cpu0x 1 2 3 4\n").error(), "/proc/stat: bad line 'cpu0x 1 2 3 4'");
}

TEST(Meminfo, RaspberryPi) {
  auto m = node::parse_meminfo(pi_meminfo);
  ASSERT_TRUE(m.has_value()) << m.error();
  EXPECT_EQ(m->total_bytes, 3884308ull * 1024);
  EXPECT_EQ(m->free_bytes, 2653196ull * 1024);
  EXPECT_EQ(m->available_bytes, 3338480ull * 1024);
}

TEST(Meminfo, BigServer) {
  auto m = node::parse_meminfo("MemTotal:       24576000 kB\nMemFree:        20569196 kB\n"
                               "MemAvailable:   23025796 kB\nBuffers:          123456 kB\n");
  ASSERT_TRUE(m.has_value()) << m.error();
  EXPECT_EQ(m->total_bytes, 25165824000u);
  EXPECT_EQ(m->available_bytes, 23025796ull * 1024);
}

TEST(Meminfo, BeforeMemAvailable) {
  // Linux before 3.14: available is estimated as free + buffers + page cache.
  auto m = node::parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 200 kB\n");
  ASSERT_TRUE(m.has_value()) << m.error();
  EXPECT_EQ(m->available_bytes, 350u * 1024);
}

TEST(Meminfo, Errors) {
  EXPECT_EQ(node::parse_meminfo("MemFree: 100 kB\n").error(), "/proc/meminfo: no MemTotal");
  EXPECT_EQ(node::parse_meminfo("MemTotal: 1000 kB\n").error(), "/proc/meminfo: no MemFree");
  EXPECT_EQ(node::parse_meminfo("MemTotal: lots kB\nMemFree: 1 kB\n").error(),
            "/proc/meminfo: bad line 'MemTotal: lots kB'");
  EXPECT_FALSE(node::parse_meminfo("MemTotal: 99999999999999999999 kB\nMemFree: 1 kB\n").has_value());
}

TEST(Loadavg, OneMinute) {
  EXPECT_EQ(node::parse_loadavg("0.52 0.58 0.59 1/389 12345\n"), 0.52);
  EXPECT_EQ(node::parse_loadavg("12.00 8.31 4.02 9/1203 99812\n"), 12.0);
  EXPECT_EQ(node::parse_loadavg("0.00 0.00 0.00 1/71 1"), 0.0);
  EXPECT_EQ(node::parse_loadavg("").error(), "/proc/loadavg: bad text ''");
  EXPECT_EQ(node::parse_loadavg("high\n").error(), "/proc/loadavg: bad text 'high'");
  EXPECT_FALSE(node::parse_loadavg("-1 0 0 1/1 1\n").has_value());
  // Only what the kernel prints: digits, then '.' and digits (no from_chars: libm).
  EXPECT_EQ(node::parse_loadavg("7 0 0 1/1 1\n"), 7.0);
  EXPECT_EQ(node::parse_loadavg("0.1 0 0 1/1 1\n"), 0.1);  // correctly rounded, as from_chars gives it
  EXPECT_EQ(node::parse_loadavg("123.456 0 0 1/1 1\n"), 123.456);
  for (const char* bad : {"1e3", "inf", "nan", ".5", "5.", "+1.0", "1.2.3", "0x10", "1.-2"}) {
    EXPECT_FALSE(node::parse_loadavg(std::string(bad) + " 0 0 1/1 1\n").has_value()) << bad;
  }
}

TEST(Cpuinfo, Mhz) {
  EXPECT_EQ(node::parse_cpuinfo_mhz(x86_cpuinfo, 0), 2596u);
  EXPECT_EQ(node::parse_cpuinfo_mhz(x86_cpuinfo, 1), 1200u);
  EXPECT_EQ(node::parse_cpuinfo_mhz(x86_cpuinfo, 2), 0u);
  EXPECT_EQ(node::parse_cpuinfo_mhz(pi_cpuinfo, 0), 0u);  // ARM kernels give no MHz
  EXPECT_EQ(node::parse_cpuinfo_mhz("", 0), 0u);
  // Rounded half up, as lround did.
  EXPECT_EQ(node::parse_cpuinfo_mhz("processor\t: 0\ncpu MHz\t\t: 2999.5\n", 0), 3000u);
  EXPECT_EQ(node::parse_cpuinfo_mhz("processor\t: 0\ncpu MHz\t\t: 2999.499\n", 0), 2999u);
  EXPECT_EQ(node::parse_cpuinfo_mhz("processor\t: 0\ncpu MHz\t\t: 1e3\n", 0), 0u);
}

TEST(Arch, PlanNineNames) {
  EXPECT_EQ(node::arch_name("x86_64"), "amd64 linux");
  EXPECT_EQ(node::arch_name("aarch64"), "arm64 linux");
  EXPECT_EQ(node::arch_name("armv7l"), "arm linux");
  EXPECT_EQ(node::arch_name("armv6l"), "arm linux");  // Pi Zero, Pi 1
  EXPECT_EQ(node::arch_name("i686"), "386 linux");
  EXPECT_EQ(node::arch_name("i386"), "386 linux");
  EXPECT_EQ(node::arch_name("riscv64"), "riscv64 linux");
  EXPECT_EQ(node::arch_name("ppc64le"), "ppc64le linux");
  EXPECT_EQ(node::arch_name(""), "unknown linux");
}

TEST(Format, CpuFile) {
  auto cpus = node::parse_proc_stat(pi_stat);
  ASSERT_TRUE(cpus.has_value());
  EXPECT_EQ(node::format_cpu((*cpus)[0], 1800), "user 31541 nice 0 system 12296 idle 2842346 iowait 1795 mhz 1800\n");
  node::cpu_ticks t;
  t.user = 1234;
  t.system = 567;
  t.idle = 89012;
  t.iowait = 34;
  EXPECT_EQ(node::format_cpu(t, 2400), "user 1234 nice 0 system 567 idle 89012 iowait 34 mhz 2400\n");
  EXPECT_EQ(node::format_cpu(node::cpu_ticks{}, 0), "user 0 nice 0 system 0 idle 0 iowait 0 mhz 0\n");
}

TEST(Format, MemFile) {
  node::mem_info m{.total_bytes = 25165824000, .free_bytes = 1234, .available_bytes = 5678};
  EXPECT_EQ(node::format_mem(m), "total 25165824000 free 1234 available 5678\n");
}

// ---- The machine the tests run on ------------------------------------------------------

TEST(Live, CpuTicks) {
  auto cpus = node::read_cpu_ticks();
  ASSERT_TRUE(cpus.has_value()) << cpus.error();
  EXPECT_EQ(static_cast<long>(cpus->size()), ::sysconf(_SC_NPROCESSORS_ONLN));
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < cpus->size(); ++i) {
    const auto& c = (*cpus)[i];
    if (i > 0) {
      EXPECT_GT(c.cpu, (*cpus)[i - 1].cpu);
    }
    total += c.user + c.nice + c.system + c.idle + c.iowait + c.irq + c.softirq + c.steal;
  }
  EXPECT_GT(total, 0u);  // the machine has been up for some ticks
}

TEST(Live, Memory) {
  auto m = node::read_mem();
  ASSERT_TRUE(m.has_value()) << m.error();
  EXPECT_GT(m->total_bytes, 0u);
  EXPECT_LE(m->free_bytes, m->total_bytes);
  EXPECT_LE(m->available_bytes, m->total_bytes);
  EXPECT_GT(m->available_bytes, 0u);
  EXPECT_EQ(m->total_bytes % 1024, 0u);
}

TEST(Live, LoadArchMhz) {
  auto load = node::read_load();
  ASSERT_TRUE(load.has_value()) << load.error();
  EXPECT_GE(*load, 0.0);

  struct utsname u {};
  ASSERT_EQ(::uname(&u), 0);
  EXPECT_EQ(node::read_arch(), node::arch_name(u.machine));
  EXPECT_TRUE(node::read_arch().ends_with(" linux"));

  // Many VMs and every ARM board without cpufreq tell no frequency; it must be sane if told.
  EXPECT_LT(node::read_cpu_mhz(0), 100000u);
  EXPECT_EQ(node::read_cpu_mhz(-1), 0u);
  EXPECT_EQ(node::read_cpu_mhz(1 << 20), 0u);
}

}  // namespace
