#include "net/ring.hpp"

#include <boost/asio/detail/call_stack.hpp>
#include <boost/asio/detail/epoll_reactor.hpp>
#include <boost/asio/detail/scheduler.hpp>
#include <boost/asio/detail/scheduler_thread_info.hpp>
#include <boost/asio/detail/thread_context.hpp>
#include <boost/version.hpp>

#include <fcntl.h>
#include <liburing.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <system_error>

// Asio runs inside the ring's loop through three of its internals, pinned to the Boost version
// they were read from:
// - the reactor's epoll descriptor, which the ring polls: Asio's sockets, acceptors and timers
//   (a timerfd) all wake the loop through it;
// - a thread context of the scheduler's own kind on the call stack while completions run, so
//   that a handler dispatched to the worker's executor runs inline and handler memory is
//   recycled, as inside io_context::run();
// - the handlers such completions post, which land on that context's private queue and are run
//   here without a trip through the reactor.
static_assert(BOOST_VERSION == 108100, "net/ring.cpp reads Asio 1.81's internals: check them");

namespace wk::net {

namespace asio = boost::asio;

namespace {

thread_local ring* current_ring = nullptr;

// The C++ rule that explicit instantiations may name private members gives the reactor's
// descriptor without changing Asio.
int asio::detail::epoll_reactor::*epoll_fd_member = nullptr;
template <int asio::detail::epoll_reactor::*M> struct expose_epoll_fd { static const bool done; };
template <int asio::detail::epoll_reactor::*M>
const bool expose_epoll_fd<M>::done = (epoll_fd_member = M, true);
template struct expose_epoll_fd<&asio::detail::epoll_reactor::epoll_fd_>;

constexpr std::uint64_t tag_cancel = 1;  // user_data of requests with no op (ops are aligned)
constexpr std::uint64_t tag_epoll = 2;
constexpr std::uint64_t tag_wake = 3;

// SINGLE_ISSUER | DEFER_TASKRUN: completions are produced only inside this thread's
// io_uring_enter, never by interrupting it (bench/results/io-uring-direct-2026-12-07.md).
io_uring_params ring_params() {
  io_uring_params p{};
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
  p.cq_entries = 16384;
  return p;
}
constexpr unsigned sq_entries = 1024;

}  // namespace

struct ring::asio_hooks {
  explicit asio_hooks(asio::io_context& ioc)
      : sched(asio::use_service<asio::detail::scheduler>(ioc)) {
    info.private_outstanding_work = 0;
  }
  asio::detail::scheduler& sched;
  asio::detail::scheduler_thread_info info;
};

ring::ring(asio::io_context& ioc) : ioc_(ioc), ring_(std::make_unique<io_uring>()), r_(*ring_) {
  io_uring_params p = ring_params();
  if (const int e = io_uring_queue_init_params(sq_entries, &r_, &p); e < 0) {
    throw std::system_error(-e, std::generic_category(), "io_uring_setup");
  }
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    const int e = errno;
    io_uring_queue_exit(&r_);
    throw std::system_error(e, std::generic_category(), "eventfd");
  }
  auto& reactor = asio::use_service<asio::detail::epoll_reactor>(ioc_);
  epoll_fd_ = reactor.*epoll_fd_member;
  if (epoll_fd_ < 0 || ::fcntl(epoll_fd_, F_GETFD) < 0) {
    ::close(wake_fd_);
    io_uring_queue_exit(&r_);
    throw std::system_error(EBADF, std::generic_category(), "Asio's epoll descriptor");
  }
  asio_ = std::make_unique<asio_hooks>(ioc_);
}

std::string ring::probe() {
  io_uring r{};
  io_uring_params p = ring_params();
  if (const int e = io_uring_queue_init_params(sq_entries, &r, &p); e < 0) {
    return std::string("io_uring_setup: ") + std::strerror(-e);
  }
  io_uring_queue_exit(&r);
  return {};
}

ring::~ring() {
  // Every operation still in flight is cancelled and waited for (a second at most), so that no
  // buffer is freed while the kernel may write into it and every handler is freed.
  if (in_flight_ > 0) {
    io_uring_sqe* s = sqe();
    io_uring_prep_cancel64(s, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data64(s, tag_cancel);
    __kernel_timespec limit{.tv_sec = 1, .tv_nsec = 0};
    while (in_flight_ > 0) {
      io_uring_cqe* cqe = nullptr;
      if (io_uring_submit_and_wait_timeout(&r_, &cqe, 1, &limit, nullptr) < 0) {
        break;  // what did not complete in time is left to the process's exit
      }
      unsigned head = 0;
      unsigned seen = 0;
      io_uring_for_each_cqe(&r_, head, cqe) {
        ++seen;
        const auto data = io_uring_cqe_get_data64(cqe);
        if (data > tag_wake) {
          --in_flight_;
          auto* op = static_cast<ring_op*>(io_uring_cqe_get_data(cqe));
          op->complete(op, abandoned);
        }
      }
      io_uring_cq_advance(&r_, seen);
    }
  }
  io_uring_queue_exit(&r_);
  ::close(wake_fd_);
}

ring* ring::current() noexcept {
  return current_ring;
}

void ring::wake() noexcept {
  const std::uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
}

io_uring_sqe* ring::sqe() {
  io_uring_sqe* s = io_uring_get_sqe(&r_);
  while (s == nullptr) {  // the submission queue is full: submit what is there
    io_uring_submit(&r_);
    s = io_uring_get_sqe(&r_);
  }
  return s;
}

void ring::recv(int fd, void* data, std::size_t size, ring_op* op) {
  io_uring_sqe* s = sqe();
  io_uring_prep_recv(s, fd, data, size, 0);
  io_uring_sqe_set_data(s, op);
  ++in_flight_;
}

void ring::send(int fd, const void* data, std::size_t size, ring_op* op) {
  io_uring_sqe* s = sqe();
  io_uring_prep_send(s, fd, data, size, MSG_NOSIGNAL);
  io_uring_sqe_set_data(s, op);
  ++in_flight_;
}

void ring::recvmsg(int fd, msghdr* msg, ring_op* op) {
  io_uring_sqe* s = sqe();
  io_uring_prep_recvmsg(s, fd, msg, 0);
  io_uring_sqe_set_data(s, op);
  ++in_flight_;
}

void ring::sendmsg(int fd, const msghdr* msg, ring_op* op) {
  io_uring_sqe* s = sqe();
  io_uring_prep_sendmsg(s, fd, msg, MSG_NOSIGNAL);
  io_uring_sqe_set_data(s, op);
  ++in_flight_;
}

void ring::nop(ring_op* op) {
  io_uring_sqe* s = sqe();
  io_uring_prep_nop(s);
  io_uring_sqe_set_data(s, op);
  ++in_flight_;
}

void ring::cancel(ring_op* op) {
  io_uring_sqe* s = sqe();
  io_uring_prep_cancel(s, op, 0);
  io_uring_sqe_set_data64(s, tag_cancel);
}

void ring::submit() {
  if (io_uring_sq_ready(&r_) > 0) {
    io_uring_submit(&r_);
  }
}

void ring::arm_polls() {
  if (!epoll_armed_) {
    io_uring_sqe* s = sqe();
    io_uring_prep_poll_add(s, epoll_fd_, POLLIN);
    io_uring_sqe_set_data64(s, tag_epoll);
    epoll_armed_ = true;
  }
  if (!wake_armed_) {
    io_uring_sqe* s = sqe();
    io_uring_prep_poll_add(s, wake_fd_, POLLIN);
    io_uring_sqe_set_data64(s, tag_wake);
    wake_armed_ = true;
  }
}

void ring::run() {
  current_ring = this;
  struct reset {
    ~reset() { current_ring = nullptr; }
  } on_exit;
  for (;;) {
    if (asio_ready_) {
      asio_ready_ = false;
      ioc_.poll();
    }
    if (ioc_.stopped()) {
      return;
    }
    arm_polls();
    if (const int e = io_uring_submit_and_wait(&r_, 1);
        e < 0 && e != -EINTR && e != -EAGAIN && e != -EBUSY) {
      throw std::system_error(-e, std::generic_category(), "io_uring_enter");
    }
    reap();
  }
}

// Runs the completions that have arrived, then what they posted, inside a scheduler context.
void ring::reap() {
  auto& a = *asio_;
  {
    asio::detail::call_stack<asio::detail::thread_context, asio::detail::thread_info_base>::context
        ctx(&a.sched, a.info);
    unsigned head = 0;
    unsigned seen = 0;
    io_uring_cqe* cqe = nullptr;
    // A completion may submit new requests but never reap: the batch stays valid.
    io_uring_for_each_cqe(&r_, head, cqe) {
      ++seen;
      const auto data = io_uring_cqe_get_data64(cqe);
      const int res = cqe->res;
      if (data == tag_epoll) {
        epoll_armed_ = false;
        asio_ready_ = true;
      } else if (data == tag_wake) {
        wake_armed_ = false;
        asio_ready_ = true;
        std::uint64_t n = 0;
        (void)!::read(wake_fd_, &n, sizeof n);
      } else if (data != tag_cancel) {
        --in_flight_;
        auto* op = static_cast<ring_op*>(io_uring_cqe_get_data(cqe));
        op->complete(op, res);
      }
    }
    io_uring_cq_advance(&r_, seen);
    // What the completions posted (to this thread's private queue: the worker's scheduler is
    // single-threaded), and what those post in turn.
    const boost::system::error_code ok;
    while (auto* o = a.info.private_op_queue.front()) {
      a.info.private_op_queue.pop();
      --a.info.private_outstanding_work;
      o->complete(&a.sched, ok, 0);
      a.info.rethrow_pending_exception();
    }
  }
  if (a.info.private_outstanding_work != 0) {
    // Work counted on this thread that did not run here (none is expected): hand the count
    // back to the scheduler so that io_context's work accounting stays exact.
    for (; a.info.private_outstanding_work > 0; --a.info.private_outstanding_work) {
      a.sched.work_started();
    }
    for (; a.info.private_outstanding_work < 0; ++a.info.private_outstanding_work) {
      a.sched.work_finished();
    }
  }
}

}  // namespace wk::net
