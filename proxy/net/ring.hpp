#pragma once
// A worker's io_uring, driving the worker's thread: the ring is the event loop and Asio runs
// inside it (net/ring.cpp says how). timed_stream's reads and writes go through it as plain
// recv/send (or recvmsg/sendmsg for several buffers), submitted in one io_uring_enter per loop
// with the wait for the next completions.

#include <boost/asio/io_context.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <sys/socket.h>

struct io_uring;
struct io_uring_sqe;

namespace wk::net {

// An operation in flight. `complete` runs once, when the operation's own completion arrives
// (with the byte count or -errno), and owns the operation from then on. With ring::abandoned
// (the ring is going away with the worker) it frees the operation and its handler, unrun, as
// io_context's destructor does with the handlers it holds.
struct ring_op {
  void (*complete)(ring_op* self, int res) = nullptr;
};

class ring {
public:
  // Throws std::system_error when the kernel refuses io_uring (seccomp, io_uring_disabled).
  explicit ring(boost::asio::io_context& ioc);
  // Cancels what is still in flight and abandons it (see ring_op).
  ~ring();

  static constexpr int abandoned = -0x7fffffff;
  ring(const ring&) = delete;
  ring& operator=(const ring&) = delete;

  // "" when this process may use io_uring as the workers do (a ring is set up and torn down),
  // else why not: seccomp (Docker's and containerd's default profiles, systemd's
  // SystemCallFilter) and kernel.io_uring_disabled refuse io_uring_setup.
  static std::string probe();

  // This thread's ring while run() runs on it, else nullptr.
  static ring* current() noexcept;

  // Runs the loop until the io_context is stopped.
  void run();

  // From any thread, after posting to the io_context: the loop runs Asio's ready handlers.
  void wake() noexcept;

  void recv(int fd, void* data, std::size_t size, ring_op* op);
  void send(int fd, const void* data, std::size_t size, ring_op* op);
  void recvmsg(int fd, msghdr* msg, ring_op* op);
  void sendmsg(int fd, const msghdr* msg, ring_op* op);
  void nop(ring_op* op);  // completes with 0 at the next wait
  // Asks the kernel to cancel `op`; it still completes (-ECANCELED, or its result if it won).
  void cancel(ring_op* op);
  // Submits what is queued now instead of at the next wait.
  void submit();

private:
  io_uring_sqe* sqe();
  void arm_polls();
  void reap();
  void run_asio();

  struct asio_hooks;
  boost::asio::io_context& ioc_;
  std::unique_ptr<asio_hooks> asio_;
  std::unique_ptr<io_uring> ring_;
  io_uring& r_;
  int wake_fd_ = -1;
  int epoll_fd_ = -1;  // Asio's reactor
  bool epoll_armed_ = false;
  bool wake_armed_ = false;
  std::size_t in_flight_ = 0;  // ring_ops submitted and not completed
  bool asio_ready_ = true;     // Asio's reactor or a cross-thread post has something
};

}  // namespace wk::net
