#pragma once
// Reads that wait for something to change, kept by a key the tree chooses (a task's wait
// file, a job's stdout, ...), as lib9p servers keep a list of pending Treads. park()
// keeps a request until wake() is called for its key, and drops it by itself when Tflush
// (or a hang-up) cancels it; wake() hands every request parked under the key back to the
// tree, which serves it or parks it again. Everything runs on the server's executor.
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "srv9p/tree.hpp"

namespace srv9p {

class parked_reads {
 public:
  parked_reads() = default;
  parked_reads(const parked_reads&) = delete;  // the flush hooks refer to this object
  parked_reads& operator=(const parked_reads&) = delete;

  // Keeps r under key until wake(key), or until Tflush cancels it.
  void park(std::uint64_t key, request r) {
    std::uint64_t id = next_++;
    parked_.emplace(key, std::make_pair(id, r));
    r.on_flush([this, key, id] {
      auto [lo, hi] = parked_.equal_range(key);
      for (auto it = lo; it != hi; ++it) {
        if (it->second.first == id) {
          parked_.erase(it);
          return;
        }
      }
    });
  }

  // Takes every request parked under key, in the order parked, and calls serve(request)
  // on each one not answered meanwhile; serve may park it again.
  template <class Serve>
  void wake(std::uint64_t key, Serve serve) {
    auto [lo, hi] = parked_.equal_range(key);
    std::vector<request> woken;
    for (auto it = lo; it != hi; ++it) woken.push_back(it->second.second);
    parked_.erase(lo, hi);
    for (auto& r : woken) {
      if (!r.done()) serve(r);
    }
  }

  std::size_t size() const { return parked_.size(); }

 private:
  std::multimap<std::uint64_t, std::pair<std::uint64_t, request>> parked_;  // key → (id, request)
  std::uint64_t next_ = 0;
};

}  // namespace srv9p
