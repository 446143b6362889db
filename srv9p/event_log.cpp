// srv9p::event_log (see srv9p/event_log.hpp).
#include "srv9p/event_log.hpp"

#include <algorithm>

#include "srv9p/errors.hpp"

namespace srv9p {

namespace {

// Per-open state: the number of the next line this open will read.
struct cursor : open_state {
  explicit cursor(std::uint64_t n) : next(n) {}
  std::uint64_t next;
};

}  // namespace

void event_log::open(fid& f) { f.aux = std::make_unique<cursor>(first_ + lines_.size()); }

void event_log::post(std::string line) {
  lines_.push_back(std::move(line));
  if (lines_.size() > backlog_) {
    lines_.pop_front();
    ++first_;
  }
  auto waiting = std::move(parked_);
  parked_.clear();
  for (auto& [id, r] : waiting) {
    if (!r.done()) read(r);
  }
}

void event_log::read(request r) {
  auto* c = dynamic_cast<cursor*>(r.fid().aux.get());
  if (c == nullptr) return r.error(err::not_open);
  c->next = std::max(c->next, first_);  // a reader that fell behind skips what was dropped
  std::uint64_t end = first_ + lines_.size();
  if (c->next == end) {
    std::uint64_t id = next_park_++;
    parked_.emplace(id, r);
    r.on_flush([this, id] { parked_.erase(id); });
    return;
  }
  std::uint32_t count = r.get<tread>().count;
  std::string out;
  while (c->next < end) {
    const std::string& line = lines_[c->next - first_];
    if (!out.empty() && out.size() + line.size() + 1 > count) break;
    out += line;
    out += '\n';
    ++c->next;
  }
  if (out.size() > count) out.resize(count);  // one line longer than the read: cut
  r.respond(rread{std::move(out)});
}

}  // namespace srv9p
