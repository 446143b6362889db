#pragma once
// A job record derived from its id alone, shared by store_test and store_crasher: the
// crasher stores make_job(id) for the ids it is given, and the test, after killing it,
// checks that every stored row is exactly make_job(id) again, so a torn or mixed row
// cannot pass. Fields cover every column with values that are easy to get wrong:
// multi-line text with quotes, non-ASCII, negative numbers, an `after` list.
#include <cstdint>
#include <string>

#include "sched/store.hpp"

namespace store_jobs {

inline sched::job_record make_job(std::uint64_t id) {
  sched::job_record j;
  j.id = id;
  j.owner = "user" + std::to_string(id % 7);
  j.name = id % 3 == 0 ? "" : "job-" + std::to_string(id);
  j.spec = "cpu 500m\nmem 64m\nenv 'K=it''s " + std::to_string(id) + "'\nexec sh -c 'echo " +
           std::to_string(id) + "'\n";
  j.state = static_cast<sched::job_state>(id % 7);
  j.node = id % 2 == 0 ? "n" + std::to_string(id % 5) : "";
  j.task = id * 3;
  j.attempts = static_cast<int>(id % 4);
  j.retries = static_cast<int>(id % 3);
  j.priority = static_cast<int>(id % 11) - 5;
  j.preemptible = id % 2 == 1;
  if (id > 2) j.after = {id - 1, id - 2};
  j.exit = id % 4 == 0 ? "exit " + std::to_string(id % 256) : "";
  j.note = id % 5 == 0 ? "node n2 down — requeued" : "";
  j.submitted_ms = 1'700'000'000'000 + static_cast<std::int64_t>(id);
  j.started_ms = j.submitted_ms + 5;
  j.ended_ms = id % 4 == 0 ? j.started_ms + 100 : 0;
  if (id % 4 == 0) {  // ended: the node's accounting
    j.user_ms = id * 7;
    j.sys_ms = id * 3;
    j.maxrss_bytes = id << 20;
  }
  if (id % 3 == 1) {  // a task of an array
    j.array = id + 1000;
    j.index = static_cast<std::uint32_t>(id % 9);
  }
  return j;
}

}  // namespace store_jobs
