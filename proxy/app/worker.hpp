#pragma once
// A worker: one thread, one io_context, its own acceptors (dups of the shared listening
// sockets), its own upstream pool and access-log buffer. A connection accepted here stays here
// for life, so the data path needs no locks.

#include "app/worker_state.hpp"
#include "net/listener.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace wk::net {
class ring;
}

namespace wk::app {

class worker {
public:
  // `access_file`: where access-log lines go (nullptr: access_log off), in rt's format.
  // `use_ring`: the thread's loop is an io_uring (net/ring.hpp), else Asio's epoll reactor.
  worker(unsigned index, std::shared_ptr<const runtime::snapshot> rt,
         std::shared_ptr<const observe::log_file> access_file, bool use_ring = false);
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;
  // Stops the thread and joins it. A worker whose thread cannot be stopped or joined must not
  // be destroyed while that thread may still use it: std::terminate is the right outcome.
  ~worker();  // NOLINT(bugprone-exception-escape)

  // Starts accepting on every listener and runs the thread. Called once, from the main thread.
  void start(const std::vector<std::unique_ptr<net::listener_socket>>& listeners);

  // Makes `rt` the snapshot for new requests and `access_file` the access log's destination
  // (both posted to the worker's thread in one step, so no line is written in the new format
  // to the old file or the other way round).
  void publish(std::shared_ptr<const runtime::snapshot> rt,
               std::shared_ptr<const observe::log_file> access_file);

  // Switches the access log to `file` (a reopened file: SIGUSR1). Posted: the worker writes
  // what it has buffered to the file it had, then lets go of it (the last holder closes it).
  void reopen_access_log(std::shared_ptr<const observe::log_file> file);

  // Starts accepting on a listener opened by a reload (from the main thread).
  void add_listener(const net::listener_socket& l);

  // Stops accepting on a listener a reload removed; its connections finish on their own.
  void remove_listener(const std::shared_ptr<net::listener_slot>& slot);

  // Stops accepting. Open connections stay: each is answered once more (Connection: close)
  // when its next request comes, or closes at its own idle deadline. With `handoff` (a
  // descriptor of the channel to the process replacing this one, owned from now on; -1 for
  // none), plain-HTTP connections go to that process instead, idle ones at once and busy ones
  // after their current answer (session/handoff.hpp).
  void begin_stop(int handoff = -1);

  // Serves a connection handed over by the process this one replaces (from the main thread;
  // posted): `fd` is a connected TCP socket of `slot`'s listener, owned from now on.
  void adopt(int fd, std::shared_ptr<net::listener_slot> slot, session::client_info info,
             std::size_t served, std::string early);

  // Closes the connections waiting between requests (the drain timed out).
  void close_idle();

  // Open client connections (read from the main thread while draining).
  std::size_t active() const { return state_.active.load(std::memory_order_relaxed); }

  // This worker's metrics (written by its thread, read by the admin listener).
  const observe::worker_metrics& metrics() const { return state_.metrics; }

  // Stops the thread (abandoning whatever still runs) and joins it.
  void stop_and_join();

private:
  void spawn_accept(boost::asio::ip::tcp::acceptor* acceptor,
                    std::shared_ptr<net::listener_slot> slot);
  void spawn_housekeeping();
  // Every cross-thread entry point posts through here: under the ring's loop (net/ring.hpp)
  // a post from another thread must also wake the loop.
  template <class F> void post(F&& f) {
    boost::asio::post(ioc_, std::forward<F>(f));
    wake();
  }
  void wake();
  std::atomic<net::ring*> ring_{nullptr};

  unsigned index_;
  bool use_ring_;
  // Declared first: destroyed last, after every session frame. No per-descriptor locking in
  // the reactor (the scheduler keeps its lock for the posts above): every I/O object of this
  // worker is opened before its thread starts or used on that thread alone, so each
  // cross-thread entry point here must post, never touch a socket, acceptor or timer itself.
  boost::asio::io_context ioc_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  worker_state state_;
  struct acceptor_entry {
    std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor;
    std::shared_ptr<net::listener_slot> slot;
  };
  // Opens this worker's acceptor for `l` (a dup of its descriptor) and starts accepting.
  void open_acceptor(const net::listener_socket& l);
  std::vector<acceptor_entry> acceptors_;  // touched on the worker's thread once it runs
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::thread thread_;
};

}  // namespace wk::app
