// store_crasher: the child of store_test's durability test. Not a test by itself.
//
//   store_crasher DBFILE THREADS FIRST_ID
//
// Opens the job store DBFILE and starts THREADS submitter threads that put
// store_jobs::make_job(id) for ids FIRST_ID, FIRST_ID + 1, ... (thread t takes every
// THREADS-th id, from FIRST_ID + t), each keeping up to 4 puts in flight, for ever. The
// moment a put's done_fn reports success, its id is written to stdout as one line with
// one write(2) (atomic on a pipe: fewer than PIPE_BUF bytes), so every line the parent
// reads is an acknowledged, supposedly durable job. The parent kills this process with
// SIGKILL mid-stream and checks the file. Any failure: a line on stderr and exit 2.
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <semaphore>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "sched/store.hpp"
#include "tests/sched/store_jobs.hpp"

namespace {

std::uint64_t number(const char* s) {
  std::uint64_t v = 0;
  std::string_view t(s);
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || p != t.data() + t.size()) {
    std::fprintf(stderr, "store_crasher: '%s' is not a number\n", s);
    std::exit(2);
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: store_crasher DBFILE THREADS FIRST_ID\n");
    return 2;
  }
  auto store = sched::job_store::open(argv[1]);
  if (!store) {
    std::fprintf(stderr, "store_crasher: %s\n", store.error().c_str());
    return 2;
  }
  auto threads = number(argv[2]);
  auto first = number(argv[3]);
  std::vector<std::thread> submitters;
  for (std::uint64_t t = 0; t < threads; t++) {
    submitters.emplace_back([&store, t, threads, first] {
      std::counting_semaphore<4> in_flight(4);
      for (std::uint64_t id = first + t;; id += threads) {
        in_flight.acquire();
        (*store)->put(store_jobs::make_job(id), [id, &in_flight](std::expected<void, std::string> r) {
          if (!r) {
            std::fprintf(stderr, "store_crasher: put %llu: %s\n", static_cast<unsigned long long>(id),
                         r.error().c_str());
            std::_Exit(2);
          }
          std::string line = std::to_string(id) + "\n";
          if (::write(1, line.data(), line.size()) != static_cast<ssize_t>(line.size())) std::_Exit(2);
          in_flight.release();
        });
      }
    });
  }
  for (auto& s : submitters) s.join();  // never: the parent kills us
}
