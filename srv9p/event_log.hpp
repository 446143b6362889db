#pragma once
// A log of event lines that readers follow: the /events file of ramfs, galaxy-node and
// (later) galaxy-sched. Each open has its own cursor, starting at the end of the log, so
// a reader sees what happens after it opened. A read returns whole lines after the
// cursor, or is parked until the next post(); Tflush cancels a parked read. Readers that
// fall more than `backlog` lines behind skip what was dropped.
#include <cstdint>
#include <deque>
#include <map>
#include <string>

#include "srv9p/tree.hpp"

namespace srv9p {

class event_log {
 public:
  explicit event_log(std::size_t backlog) : backlog_(backlog) {}

  // At Topen of the events file: gives f a cursor at the end of the log (in f.aux).
  void open(fid& f);
  // Appends one line (without its newline) and answers every parked read.
  void post(std::string line);
  // At Tread of the events file (opened with open()): answers with the lines after the
  // fid's cursor, as many whole lines as fit in count, or parks the read until post().
  // Errors: err::not_open for a fid that was not opened with open().
  void read(request r);

  std::size_t parked() const { return parked_.size(); }

 private:
  std::size_t backlog_;
  std::deque<std::string> lines_;
  std::uint64_t first_ = 0;  // the number of lines_.front()
  std::map<std::uint64_t, request> parked_;
  std::uint64_t next_park_ = 0;
};

}  // namespace srv9p
