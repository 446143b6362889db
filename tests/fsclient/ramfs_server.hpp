#pragma once
// Test fixtures for the client: the example ramfs served either by a real galaxy-ramfs
// process (ramfs_process) or by an srv9p::server running on an io_context in a thread of
// this process (ramfs_inproc), which lets a test look at the server's state (connections,
// parked reads) from its executor.
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <future>
#include <string>
#include <thread>

#include "srv9p/ramfs.hpp"
#include "srv9p/server.hpp"
#include "tests/testutil.hpp"

namespace fsclient_test {

inline const std::string ramfs_binary = GALAXY_BINARY_DIR "/galaxy-ramfs";

// galaxy-ramfs listening on TCP port 0 and on a Unix socket in a temporary directory.
struct ramfs_process {
  testutil::temp_dir dir;
  testutil::daemon_handle d;
  std::string tcp, unix_sock;

  // Empty on success, else why it did not start.
  std::string start(std::uint64_t big_bytes = 0) {
    std::vector<std::string> argv{ramfs_binary, "--listen", "tcp!127.0.0.1!0", "--listen",
                                  "unix!" + dir.file("9p.sock")};
    if (big_bytes > 0) {
      argv.push_back("--big");
      argv.push_back(std::to_string(big_bytes));
    }
    auto r = testutil::start_daemon(argv, 2);
    if (!r) return r.error();
    d = std::move(*r);
    tcp = d.dials[0];
    unix_sock = d.dials[1];
    return {};
  }
};

// The same tree served in this process.
class ramfs_inproc {
 public:
  explicit ramfs_inproc(srv9p::ramfs_options ropts = {}, srv9p::server_options sopts = {})
      : tree_(std::move(ropts)), srv_(io_, tree_, std::move(sopts)), guard_(io_.get_executor()) {}
  ~ramfs_inproc() { stop(); }

  // Listens on a dial string before or after start(); returns the bound address.
  std::expected<std::string, std::string> listen(std::string_view dial) {
    if (!thread_.joinable()) return srv_.listen(dial);
    return on_io([&] { return srv_.listen(dial); });
  }
  void start() {
    thread_ = std::thread([this] { io_.run(); });
  }
  void stop() {
    if (!thread_.joinable()) return;
    asio::post(io_, [this] {
      srv_.stop();
      guard_.reset();
    });
    thread_.join();
  }

  // Runs f on the server's executor and returns its result.
  template <class F>
  auto on_io(F f) -> decltype(f()) {
    std::promise<decltype(f())> p;
    auto fut = p.get_future();
    asio::post(io_, [&] { p.set_value(f()); });
    return fut.get();
  }

  std::size_t connections() { return on_io([this] { return srv_.connections(); }); }
  std::size_t parked_readers() { return on_io([this] { return tree_.parked_readers(); }); }

 private:
  asio::io_context io_;
  srv9p::ramfs tree_;
  srv9p::server srv_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::thread thread_;
};

}  // namespace fsclient_test
