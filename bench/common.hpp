#pragma once
// What every benchmark driver in bench/ shares: wall-clock seconds, the "quiet gate" that
// waits for other tenants' CPU load to fall before a measurement (the rule of
// shared/peers/common.sh bg_load, so that Galaxy and its peers are measured alike), and
// the min / median / max of repeated runs. Header-only; each driver keeps its own output.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace bench {

using steady = std::chrono::steady_clock;

// Seconds since t0.
inline double since(steady::time_point t0) { return std::chrono::duration<double>(steady::now() - t0).count(); }

// Percent of all CPUs busy over one second while this program idles: other tenants'
// load. From /proc/stat's first line (proc(5)): user+nice+system+irq+softirq+steal
// against idle+iowait.
inline int bg_load() {
  auto sample = [] {
    std::ifstream f("/proc/stat");
    std::string cpu;
    std::uint64_t v[8] = {};
    f >> cpu;
    for (auto& x : v) f >> x;
    return std::pair{v[0] + v[1] + v[2] + v[5] + v[6] + v[7], v[3] + v[4]};
  };
  auto [b0, i0] = sample();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  auto [b1, i1] = sample();
  double busy = double(b1 - b0), idle = double(i1 - i0);
  return busy + idle > 0 ? int(100 * busy / (busy + idle) + 0.5) : 0;
}

// Waits until bg_load() is under max_pct percent, or max_wait_s seconds have passed.
struct gate {
  int load_pct = 0;     // the last load seen
  double waited_s = 0;  // how long the gate took
};
inline gate quiet_gate(int max_pct, int max_wait_s) {
  auto t0 = steady::now();
  int load = bg_load();
  while (load >= max_pct && since(t0) < max_wait_s) load = bg_load();
  return {load, since(t0)};
}

struct stats {
  double median = 0, min = 0, max = 0;
};

// Min, median (the mean of the middle two for an even count) and max; v must not be empty.
inline stats summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  return {n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v.front(), v.back()};
}

}  // namespace bench
