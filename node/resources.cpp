// The node's resource files (node/resources.hpp): parsers over the texts of /proc/stat,
// /proc/meminfo, /proc/loadavg and /proc/cpuinfo (formats in proc(5)), readers that feed
// them the live files, and the formatters for cpu/N and mem.
//
// Parsers take whole file texts and never throw (std::from_chars); a reader's errors
// name the file and give strerror's text. Files in /proc report a size of 0, so they are
// read with read(2) until end of file rather than by their size.
#include "node/resources.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <optional>
#include <sys/utsname.h>
#include <unistd.h>

namespace node {
namespace {

// Calls f(line) for each line of text, without its newline.
template <typename F>
void each_line(std::string_view text, F f) {
  while (!text.empty()) {
    std::size_t nl = text.find('\n');
    f(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    std::size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

template <typename T>
std::optional<T> number(std::string_view s) {
  T v{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// A decimal as the kernel prints one in /proc ("2999.998", "0.52"): digits, then
// optionally '.' and digits; nothing else (no sign, exponent, inf or nan). Not
// from_chars: its double overload is the one piece of libstdc++ that brings libm into
// galaxy-node (CMakeLists.txt, --as-needed). Up to 15 digits in all the result is
// correctly rounded (one division of two exact doubles), as from_chars's would be.
std::optional<double> decimal(std::string_view s) {
  std::size_t dot = s.find('.');
  std::string_view whole = s.substr(0, dot), frac = dot == std::string_view::npos ? "" : s.substr(dot + 1);
  if (whole.empty() || (dot != std::string_view::npos && frac.empty()) || frac.size() > 18) return std::nullopt;
  auto w = number<std::uint64_t>(whole);
  auto f = frac.empty() ? std::optional<std::uint64_t>(0) : number<std::uint64_t>(frac);
  if (!w || !f) return std::nullopt;  // from_chars takes no sign for unsigned types
  double scale = 1;
  for (std::size_t i = 0; i < frac.size(); i++) scale *= 10;  // exact up to 10^22
  if (whole.size() + frac.size() <= 15) return (static_cast<double>(*w) * scale + static_cast<double>(*f)) / scale;
  return static_cast<double>(*w) + static_cast<double>(*f) / scale;
}

// Lines quoted in errors are cut: /proc/stat's intr line runs to kilobytes.
std::string excerpt(std::string_view line) {
  constexpr std::size_t max = 40;
  return line.size() <= max ? std::string(line) : std::string(line.substr(0, max)) + "...";
}

}  // namespace

std::expected<std::string, std::string> read_small_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::unexpected(path + ": " + std::strerror(errno));
  std::string text;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return std::unexpected(path + ": " + std::strerror(e));
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return text;
}

std::expected<std::vector<cpu_ticks>, std::string> parse_proc_stat(std::string_view text) {
  // proc(5): "cpuN user nice system idle iowait irq softirq steal guest guest_nice", in
  // USER_HZ ticks. Kernels before 2.6 give only the first four, before 2.6.11 no steal;
  // missing columns are 0. Offline CPUs have no line, so N may skip.
  std::vector<cpu_ticks> cpus;
  std::string bad;
  each_line(text, [&](std::string_view line) {
    if (!bad.empty() || !line.starts_with("cpu") || line.size() < 4 || line[3] < '0' || line[3] > '9') return;
    auto f = fields(line);
    auto n = number<int>(f[0].substr(3));
    if (!n || f.size() < 5) {
      bad = excerpt(line);
      return;
    }
    cpu_ticks t;
    t.cpu = *n;
    std::uint64_t* cols[] = {&t.user, &t.nice, &t.system, &t.idle, &t.iowait, &t.irq, &t.softirq, &t.steal};
    for (std::size_t i = 0; i < std::size(cols) && i + 1 < f.size(); ++i) {
      auto v = number<std::uint64_t>(f[i + 1]);
      if (!v) {
        bad = excerpt(line);
        return;
      }
      *cols[i] = *v;
    }
    cpus.push_back(t);
  });
  if (!bad.empty()) return std::unexpected("/proc/stat: bad line '" + bad + "'");
  if (cpus.empty()) return std::unexpected(std::string("/proc/stat: no cpuN lines"));
  std::stable_sort(cpus.begin(), cpus.end(), [](const cpu_ticks& a, const cpu_ticks& b) { return a.cpu < b.cpu; });
  return cpus;
}

std::expected<mem_info, std::string> parse_meminfo(std::string_view text) {
  // proc(5): "MemTotal:       16318480 kB". Values with "kB" are KiB; a few (HugePages_*)
  // have no unit and are counts, which this does not need.
  std::map<std::string_view, std::uint64_t, std::less<>> kib;
  std::string bad;
  each_line(text, [&](std::string_view line) {
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || !bad.empty()) return;
    std::string_view key = line.substr(0, colon);
    if (key != "MemTotal" && key != "MemFree" && key != "MemAvailable" && key != "Buffers" && key != "Cached") return;
    auto f = fields(line.substr(colon + 1));
    auto v = f.empty() ? std::nullopt : number<std::uint64_t>(f[0]);
    if (!v || f.size() != 2 || f[1] != "kB" || *v > (UINT64_MAX >> 10)) {
      bad = excerpt(line);
      return;
    }
    kib[key] = *v;
  });
  if (!bad.empty()) return std::unexpected("/proc/meminfo: bad line '" + bad + "'");
  for (std::string_view need : {"MemTotal", "MemFree"}) {
    if (!kib.contains(need)) return std::unexpected("/proc/meminfo: no " + std::string(need));
  }
  mem_info m;
  m.total_bytes = kib["MemTotal"] << 10;
  m.free_bytes = kib["MemFree"] << 10;
  if (auto a = kib.find("MemAvailable"); a != kib.end()) {
    m.available_bytes = a->second << 10;
  } else {
    // Kernels before 3.14 have no MemAvailable; free plus the page cache is what
    // free(1) estimated then, capped at the total.
    m.available_bytes = std::min(m.total_bytes, (kib["MemFree"] + kib["Buffers"] + kib["Cached"]) << 10);
  }
  return m;
}

std::expected<double, std::string> parse_loadavg(std::string_view text) {
  // proc(5): "0.52 0.58 0.59 1/389 12345": 1, 5 and 15 minute averages first.
  auto f = fields(trim(text.substr(0, text.find('\n'))));
  auto v = f.empty() ? std::nullopt : decimal(f[0]);
  if (!v || !std::isfinite(*v) || *v < 0) {
    return std::unexpected("/proc/loadavg: bad text '" + excerpt(trim(text.substr(0, text.find('\n')))) + "'");
  }
  return *v;
}

std::uint32_t parse_cpuinfo_mhz(std::string_view text, int cpu) {
  // "processor : N" opens CPU N's block; x86 gives "cpu MHz : 2596.138" in it. ARM
  // kernels give no frequency here at all.
  int current = -1;
  std::uint32_t mhz = 0;
  each_line(text, [&](std::string_view line) {
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || mhz != 0) return;
    std::string_view key = trim(line.substr(0, colon));
    std::string_view value = trim(line.substr(colon + 1));
    if (key == "processor") {
      current = number<int>(value).value_or(-1);
    } else if (key == "cpu MHz" && current == cpu) {
      auto v = decimal(value);
      // Rounded half up, as lround(3) does for these positive values, without it: lround
      // was galaxy-node's only use of libm, which costs 0.3 MiB of RSS once mapped.
      if (v && std::isfinite(*v) && *v >= 0.5 && *v < 4e9) mhz = static_cast<std::uint32_t>(*v + 0.5);
    }
  });
  return mhz;
}

std::string arch_name(std::string_view m) {
  std::string_view arch = m;
  if (m == "x86_64" || m == "amd64") {
    arch = "amd64";
  } else if (m == "aarch64" || m == "arm64") {
    arch = "arm64";
  } else if (m.starts_with("arm")) {
    arch = "arm";  // armv6l (Pi Zero), armv7l, armv8l (32-bit userland on a 64-bit CPU)
  } else if (m.size() == 4 && m[0] == 'i' && m[1] >= '3' && m[1] <= '6' && m.substr(2) == "86") {
    arch = "386";
  } else if (m.empty()) {
    arch = "unknown";
  }
  return std::string(arch) + " linux";
}

std::expected<std::vector<cpu_ticks>, std::string> read_cpu_ticks() {
  auto text = read_small_file("/proc/stat");
  if (!text) return std::unexpected(text.error());
  return parse_proc_stat(*text);
}

std::expected<mem_info, std::string> read_mem() {
  auto text = read_small_file("/proc/meminfo");
  if (!text) return std::unexpected(text.error());
  return parse_meminfo(*text);
}

std::expected<double, std::string> read_load() {
  auto text = read_small_file("/proc/loadavg");
  if (!text) return std::unexpected(text.error());
  return parse_loadavg(*text);
}

std::string read_arch() {
  struct utsname u {};
  if (::uname(&u) != 0) return arch_name("");
  return arch_name(u.machine);
}

std::uint32_t read_cpu_mhz(int cpu) {
  if (cpu < 0) return 0;
  // cpufreq's scaling_cur_freq is in kHz (Documentation/admin-guide/pm/cpufreq.rst).
  std::string sys = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/cpufreq/scaling_cur_freq";
  if (auto text = read_small_file(sys)) {
    if (auto khz = number<std::uint64_t>(trim(text->substr(0, text->find('\n')))); khz && *khz > 0) {
      return static_cast<std::uint32_t>(std::min<std::uint64_t>((*khz + 500) / 1000, UINT32_MAX));
    }
  }
  auto info = read_small_file("/proc/cpuinfo");
  return info ? parse_cpuinfo_mhz(*info, cpu) : 0;
}

std::string format_cpu(const cpu_ticks& t, std::uint32_t mhz) {
  return "user " + std::to_string(t.user) + " nice " + std::to_string(t.nice) + " system " +
         std::to_string(t.system) + " idle " + std::to_string(t.idle) + " iowait " + std::to_string(t.iowait) +
         " mhz " + std::to_string(mhz) + "\n";
}

std::string format_mem(const mem_info& m) {
  return "total " + std::to_string(m.total_bytes) + " free " + std::to_string(m.free_bytes) + " available " +
         std::to_string(m.available_bytes) + "\n";
}

}  // namespace node
