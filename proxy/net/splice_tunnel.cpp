// The splice(2) fast path of the tunnel pump (net/tunnel.hpp) between two plain TCP sockets:
// bytes go through a pipe per direction, so they stay in the kernel and the relay holds no
// buffers. Where splice() is not available (no pipe descriptors left, a kernel or sandbox that
// refuses it) the same pump copies through a 16 KiB buffer per direction instead.

#include "net/tunnel.hpp"

#include <boost/asio/buffer.hpp>

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <memory>

#include <fcntl.h>
#include <unistd.h>

namespace wk::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;

namespace {

using core::nothrow;

// The buffered copy's scratch space per direction, as in the HTTP upgrade tunnel.
constexpr std::size_t copy_buffer_size = std::size_t{16} * 1024;

// What one splice() from a socket asks for: the default pipe capacity (16 pages); the kernel
// stops earlier when the pipe is full.
constexpr std::size_t splice_chunk = std::size_t{64} * 1024;

constexpr unsigned splice_flags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;

// The two descriptors of one pipe, closed with it.
class pipe_fds {
public:
  pipe_fds() = default;
  pipe_fds(const pipe_fds&) = delete;
  pipe_fds& operator=(const pipe_fds&) = delete;
  ~pipe_fds() {
    if (read_ >= 0) {
      ::close(read_);
      ::close(write_);
    }
  }

  // False when the process is out of descriptors (EMFILE, ENFILE).
  bool open() {
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
      return false;
    }
    read_ = fds[0];
    write_ = fds[1];
    return true;
  }
  [[nodiscard]] int read_end() const { return read_; }
  [[nodiscard]] int write_end() const { return write_; }

private:
  int read_ = -1;
  int write_ = -1;
};

// splice() needs the socket itself non-blocking (SPLICE_F_NONBLOCK only covers the pipe); the
// caller's mode comes back when the relay ends.
class non_blocking_scope {
public:
  explicit non_blocking_scope(tcp::socket& s) : socket_(s), was_(s.native_non_blocking()) {}
  non_blocking_scope(const non_blocking_scope&) = delete;
  non_blocking_scope& operator=(const non_blocking_scope&) = delete;
  ~non_blocking_scope() {
    boost::system::error_code ec;
    if (set_ && !was_ && socket_.is_open()) {
      socket_.native_non_blocking(false, ec);
    }
  }

  bool enable() {
    boost::system::error_code ec;
    socket_.native_non_blocking(true, ec);
    set_ = !ec;
    return set_;
  }

private:
  tcp::socket& socket_;
  bool was_;
  bool set_ = false;
};

using detail::pump_end;
using detail::tunnel_state;

// What the splice path adds to the pump's shared state.
struct splice_state {
  bool guard_sigpipe = false;  // SIGPIPE is not ignored: block it around splice() into a socket
  bool fell_back = false;      // a direction found splice() unsupported and copied instead
};

// One direction of the relay; `count` is the bytes delivered to `to`.
struct direction {
  tcp::socket& from;
  tcp::socket& to;
  std::uint64_t& count;
};

bool sigpipe_ignored() {
  struct sigaction current {};
  return ::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_IGN;
}

// splice() from a pipe into a socket. Unlike send(), splice() has no MSG_NOSIGNAL: a peer that
// is gone raises SIGPIPE in the calling thread along with EPIPE. With `guard` the signal is
// blocked for the call and the one raised is taken off the pending set before unblocking.
ssize_t splice_to_socket(int pipe_read, int socket, std::size_t len, bool guard) {
  if (!guard) {
    return ::splice(pipe_read, nullptr, socket, nullptr, len, splice_flags);
  }
  sigset_t pipe_only;
  sigset_t old;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  auto n = ::splice(pipe_read, nullptr, socket, nullptr, len, splice_flags);
  int err = errno;
  if (n < 0 && err == EPIPE) {
    timespec no_wait{};
    while (sigtimedwait(&pipe_only, nullptr, &no_wait) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = err;
  return n;
}

// Moves bytes from -> pipe -> to until end of stream or an error. Nothing more is read while
// the pipe holds bytes: at most one pipe's worth is in flight, a slow destination slows the
// source down, and end of stream is only seen with an empty pipe (all delivered), so the
// half-close that follows never cuts bytes off.
asio::awaitable<pump_end> splice_loop(direction d, const pipe_fds& pipe, tunnel_state& st,
                                      const splice_state& sp) {
  std::size_t in_pipe = 0;
  bool untried = true;  // no splice() from the socket has been accepted yet
  for (;;) {
    if (!d.from.is_open() || !d.to.is_open()) {
      co_return pump_end::failed;  // closed by the other direction or the watchdog
    }
    if (in_pipe == 0) {
      auto n = ::splice(d.from.native_handle(), nullptr, pipe.write_end(), nullptr, splice_chunk,
                        splice_flags);
      int err = errno;
      if (n < 0 && untried && (err == EINVAL || err == ENOSYS)) {
        co_return pump_end::unsupported;
      }
      untried = false;
      if (n > 0) {
        in_pipe = static_cast<std::size_t>(n);
        st.last_activity = steady::now();
      } else if (n == 0) {
        co_return pump_end::eof;
      } else if (err == EAGAIN) {
        auto [ec] = co_await d.from.async_wait(tcp::socket::wait_read, nothrow);
        if (ec) {
          co_return pump_end::failed;
        }
      } else if (err != EINTR) {
        co_return pump_end::failed;
      }
      continue;
    }
    auto n = splice_to_socket(pipe.read_end(), d.to.native_handle(), in_pipe, sp.guard_sigpipe);
    int err = errno;
    if (n > 0) {
      in_pipe -= static_cast<std::size_t>(n);
      d.count += static_cast<std::uint64_t>(n);
      st.last_activity = steady::now();
    } else if (n < 0 && err == EAGAIN) {
      auto [ec] = co_await d.to.async_wait(tcp::socket::wait_write, nothrow);
      if (ec) {
        co_return pump_end::failed;
      }
    } else if (n == 0 || err != EINTR) {
      co_return pump_end::failed;  // 0 cannot happen with bytes in the pipe; don't spin on it
    }
  }
}

// Carries one direction to its end: splice() when the pipe is there and the kernel takes it,
// else the pump's buffered copy through a 16 KiB buffer, allocated only when that path runs.
asio::awaitable<pump_end> carry(direction d, const pipe_fds* pipe, tunnel_state& st,
                                splice_state& sp) {
  if (pipe != nullptr) {
    auto end = co_await splice_loop(d, *pipe, st, sp);
    if (end != pump_end::unsupported) {
      co_return end;
    }
    sp.fell_back = true;
  }
  auto buf = std::make_unique_for_overwrite<char[]>(copy_buffer_size);
  co_return co_await detail::copy_loop(d.from, d.to, std::span<char>(buf.get(), copy_buffer_size),
                                       st, d.count);
}

}  // namespace

asio::awaitable<relay_result> relay(tcp::socket& client, std::string_view to_upstream_first,
                                    tcp::socket& upstream, relay_options opt,
                                    std::string_view to_client_first) {
  relay_result result;
  tunnel_state st;
  splice_state sp;
  sp.guard_sigpipe = !sigpipe_ignored();
  pipe_fds up_pipe;
  pipe_fds down_pipe;
  non_blocking_scope client_mode(client);
  non_blocking_scope upstream_mode(upstream);
  // Out of descriptors for the pipes is no reason to refuse the connection: copy instead.
  const bool splicing = opt.allow_splice && up_pipe.open() && down_pipe.open() &&
                        client_mode.enable() && upstream_mode.enable();

  direction to_upstream{client, upstream, result.stats.client_to_upstream};
  direction to_client{upstream, client, result.stats.upstream_to_client};
  co_await detail::run_pumps(
      client, asio::buffer(to_upstream_first),
      [&] { return carry(to_upstream, splicing ? &up_pipe : nullptr, st, sp); }, upstream,
      asio::buffer(to_client_first),
      [&] { return carry(to_client, splicing ? &down_pipe : nullptr, st, sp); }, st, result.stats,
      opt.idle);
  result.spliced = splicing && !sp.fell_back;
  co_return result;
}

}  // namespace wk::net
