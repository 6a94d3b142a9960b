#pragma once
// A TCP stream with a deadline that costs nothing per operation.
//
// beast::tcp_stream arms a timer for every read and write (a timer-queue insert, a cancel and a
// completion each time): on the request path that was about a tenth of the proxy's work. Here a
// stream only records its deadline; one sweep per io_context, every `deadline_tick`, closes the
// streams whose deadline has passed while an operation was pending. Their operations complete
// with beast::error::timeout, as with beast::tcp_stream (which also closes the socket), so a
// timeout fires between 0 and one tick late: timeouts are configured in whole milliseconds and
// are meant in seconds.
//
// Used on one thread (its io_context's); the sweep keeps an intrusive list of live streams.

#include "net/ring.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/detail/buffer_sequence_adapter.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/recycling_allocator.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/intrusive/list_hook.hpp>

#include <algorithm>
#include <array>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <memory>
#include <type_traits>
#include <utility>

namespace wk::net {

inline constexpr std::chrono::milliseconds deadline_tick{100};

class deadline_service;

class timed_stream {
public:
  using clock = std::chrono::steady_clock;
  using executor_type = boost::asio::any_io_executor;
  using socket_type = boost::asio::ip::tcp::socket;
  using lowest_layer_type = timed_stream;  // for asio::ssl::stream

  explicit timed_stream(socket_type socket);
  explicit timed_stream(const executor_type& ex);
  // Only while no operation is pending (a stream moves into a pooled connection or a TLS
  // stream before it is used).
  timed_stream(timed_stream&& other) noexcept;
  timed_stream& operator=(timed_stream&&) = delete;
  timed_stream(const timed_stream&) = delete;
  timed_stream& operator=(const timed_stream&) = delete;
  ~timed_stream();

  executor_type get_executor() noexcept { return socket_.get_executor(); }
  socket_type& socket() noexcept { return socket_; }
  timed_stream& lowest_layer() noexcept { return *this; }

  // Operations pending now or started later fail with beast::error::timeout once `d` has
  // passed (checked every deadline_tick).
  template <class Rep, class Period> void expires_after(std::chrono::duration<Rep, Period> d) {
    expiry_ = later(d);
    if (answer_on_expiry_) {  // a soft deadline passed (or not): the socket is still open
      answer_on_expiry_ = false;
      timed_out_ = false;
    }
  }
  // Like expires_after, but at the deadline the sweep cancels the pending operations instead of
  // closing the socket. They still complete with beast::error::timeout, and the caller can then
  // answer before it closes: 408 Request Timeout after timeouts.header_read. The next
  // expires_after() gives the answer a deadline of its own.
  template <class Rep, class Period> void answer_after(std::chrono::duration<Rep, Period> d) {
    expiry_ = later(d);
    answer_on_expiry_ = true;
  }
  void expires_never() { expiry_ = clock::time_point::max(); }
  clock::time_point expiry() const noexcept { return expiry_; }
  bool timed_out() const noexcept { return timed_out_; }

  // Asks the sweep to cancel the pending operations once `d` has passed with one pending (they
  // complete with operation_aborted and park_requested() is then true): a keep-alive connection
  // that stays quiet gives back its buffer and coroutine frames and waits parked instead.
  template <class Rep, class Period> void park_after(std::chrono::duration<Rep, Period> d) {
    park_at_ = later(d);
    park_requested_ = false;
  }
  void park_never() { park_at_ = clock::time_point::max(); }
  bool park_requested() const noexcept { return park_requested_; }

  void cancel() {
    cancel_ring_ops();
    boost::system::error_code ec;
    socket_.cancel(ec);
  }
  void close() {
    cancel_ring_ops();
    boost::system::error_code ec;
    socket_.close(ec);
  }
  // Only between operations (none in the ring: the kernel may still hold the descriptor).
  socket_type release_socket() {
    assert(ring_read_ == nullptr && ring_write_ == nullptr);
    return std::move(socket_);
  }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const MutableBuffers& b) {
          started();
          if (ring* rg = ring::current(); rg != nullptr && socket_.is_open()) {
            start_ring<false>(rg, b, completion<decltype(handler)>{this, std::move(handler)});
            return;
          }
          socket_.async_read_some(b, completion<decltype(handler)>{this, std::move(handler)});
        },
        token, buffers);
  }

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const ConstBuffers& b) {
          started();
          if (ring* rg = ring::current(); rg != nullptr && socket_.is_open()) {
            start_ring<true>(rg, b, completion<decltype(handler)>{this, std::move(handler)});
            return;
          }
          socket_.async_write_some(b, completion<decltype(handler)>{this, std::move(handler)});
        },
        token, buffers);
  }

  template <class Token>
  auto async_connect(const boost::asio::ip::tcp::endpoint& ep, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [this](auto handler, const boost::asio::ip::tcp::endpoint& e) {
          started();
          socket_.async_connect(e, completion<decltype(handler)>{this, std::move(handler)});
        },
        token, ep);
  }

  // Waits until the socket is readable (or writable): an idle connection holds no buffer.
  template <class Token> auto async_wait(socket_type::wait_type w, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [this](auto handler, socket_type::wait_type what) {
          started();
          socket_.async_wait(what, completion<decltype(handler)>{this, std::move(handler)});
        },
        token, w);
  }

  // The completion of an operation: counts it done and reports a sweep's close as a timeout.
  // clang-tidy's exception-escape sees its implicit move constructor move `Handler`, which may
  // throw in principle; Asio moves every handler the same way, so wrapping it adds no risk.
  template <class Handler> struct completion {  // NOLINT(bugprone-exception-escape)
    timed_stream* stream;
    Handler handler;

    template <class... Args> void operator()(boost::system::error_code ec, Args&&... args) {
      --stream->pending_;
      if (stream->timed_out_ && (ec == boost::asio::error::operation_aborted ||
                                 ec == boost::asio::error::bad_descriptor)) {
        ec = boost::beast::error::timeout;
      }
      std::move(handler)(ec, std::forward<Args>(args)...);
    }
  };

  // now + d, saturated (a configured duration may be near its type's maximum).
  template <class Rep, class Period>
  static clock::time_point later(std::chrono::duration<Rep, Period> d) {
    const auto now = clock::now();
    const auto room = std::chrono::duration_cast<std::chrono::duration<Rep, Period>>(
        clock::time_point::max() - now);
    return d >= room ? clock::time_point::max()
                     : now + std::chrono::duration_cast<clock::duration>(d);
  }

private:
  // A read or write carried by the worker's ring (net/ring.hpp).
  template <bool Write, class Handler> struct ring_io : ring_op {
    struct cancel_request {
      cancel_request(ring* r, ring_io* o) : rg(r), op(o) {}
      ring* rg;
      ring_io* op;
      void operator()(boost::asio::cancellation_type t) const {
        if ((t &
             (boost::asio::cancellation_type::terminal | boost::asio::cancellation_type::partial |
              boost::asio::cancellation_type::total)) != boost::asio::cancellation_type::none) {
          rg->cancel(op);
        }
      }
    };
    using allocator = typename std::allocator_traits<
        boost::asio::recycling_allocator<void>>::template rebind_alloc<ring_io>;

    ring_io(Handler h, timed_stream* s) : handler(std::move(h)), stream(s) {
      complete = &ring_io::done;
    }

    static void done(ring_op* base, int res) {
      auto* self = static_cast<ring_io*>(base);
      if (res == ring::abandoned) {  // the worker is going away: free, do not run
        self->~ring_io();
        allocator().deallocate(self, 1);
        return;
      }
      timed_stream* s = self->stream;
      (Write ? s->ring_write_ : s->ring_read_) = nullptr;
      boost::system::error_code ec;
      std::size_t n = 0;
      if (res > 0) {
        n = static_cast<std::size_t>(res);
      } else if (res == 0) {
        if (!Write && self->total > 0) {
          ec = boost::asio::error::eof;
        }
      } else if (res == -ECANCELED) {
        ec = boost::asio::error::operation_aborted;
      } else {
        ec.assign(-res, boost::asio::error::get_system_category());
      }
      auto slot = boost::asio::get_associated_cancellation_slot(self->handler);
      if (slot.is_connected()) {
        slot.clear();
      }
      Handler h(std::move(self->handler));
      self->~ring_io();
      allocator().deallocate(self, 1);
      std::move(h)(ec, n);
    }

    Handler handler;
    timed_stream* stream;
    msghdr msg{};
    std::array<iovec, 16> iov{};
    std::size_t total = 0;
  };

  template <bool Write, class Buffers, class Handler>
  void start_ring(ring* rg, const Buffers& b, Handler h) {
    using buffer_t =
        std::conditional_t<Write, boost::asio::const_buffer, boost::asio::mutable_buffer>;
    using op_t = ring_io<Write, Handler>;
    boost::asio::detail::buffer_sequence_adapter<buffer_t, Buffers> bufs(b);
    op_t* op = typename op_t::allocator().allocate(1);
    new (op) op_t(std::move(h), this);
    const std::size_t count = std::min<std::size_t>(bufs.count(), op->iov.size());
    for (std::size_t i = 0; i < count; ++i) {
      op->iov[i] = bufs.buffers()[i];
      op->total += op->iov[i].iov_len;
    }
    auto slot = boost::asio::get_associated_cancellation_slot(op->handler);
    if (slot.is_connected()) {
      slot.template emplace<typename op_t::cancel_request>(rg, op);
    }
    const int fd = socket_.native_handle();
    (Write ? ring_write_ : ring_read_) = op;
    if (op->total == 0) {
      // Completes at once with 0, as under Asio's reactor, but never inline (a no-op through the
      // ring). A zero-length recv would wait for the next byte: asio::ssl::stream issues one
      // for the sole purpose of completing through the executor.
      rg->nop(op);
    } else if (count == 1) {
      if constexpr (Write) {
        rg->send(fd, op->iov[0].iov_base, op->iov[0].iov_len, op);
      } else {
        rg->recv(fd, op->iov[0].iov_base, op->iov[0].iov_len, op);
      }
    } else {
      op->msg.msg_iov = op->iov.data();
      op->msg.msg_iovlen = count;
      if constexpr (Write) {
        rg->sendmsg(fd, &op->msg, op);
      } else {
        rg->recvmsg(fd, &op->msg, op);
      }
    }
  }

  // Cancels the ring's operations on this stream, and submits at once: a request still in the
  // submission queue would otherwise name the descriptor after close() and reach whatever
  // connection gets that number next.
  void cancel_ring_ops() {
    if (ring_read_ == nullptr && ring_write_ == nullptr) {
      return;
    }
    ring* rg = ring::current();
    if (rg == nullptr) {
      return;  // the ring is abandoning its operations (ring::~ring)
    }
    if (ring_read_ != nullptr) {
      rg->cancel(ring_read_);
    }
    if (ring_write_ != nullptr) {
      rg->cancel(ring_write_);
    }
    rg->submit();
  }

  friend class deadline_service;
  void started();  // an operation begins: counted, and the sweep runs while any is pending
  void link();
  void unlink() noexcept;

  socket_type socket_;
  clock::time_point expiry_ = clock::time_point::max();
  clock::time_point park_at_ = clock::time_point::max();
  deadline_service* service_ = nullptr;
  // In the sweep's list while the stream lives (unlinks itself when destroyed).
  boost::intrusive::list_member_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>
      hook_;
  unsigned pending_ = 0;
  // This stream's operations in the ring. Their completions write these back, so a stream
  // outlives them: a coroutine frame that owns one ends only after its operations completed
  // (awaitable operators wait for every branch); at a worker's exit the ring frees them
  // without touching the stream (ring::abandoned).
  ring_op* ring_read_ = nullptr;
  ring_op* ring_write_ = nullptr;
  bool timed_out_ = false;
  bool answer_on_expiry_ = false;  // answer_after(): cancel at the deadline, do not close
  bool park_requested_ = false;
};

}  // namespace wk::net

// Completions keep the executor, allocator and cancellation slot of the handler they wrap.
template <template <typename, typename> class Associator, typename Handler,
          typename DefaultCandidate>
struct boost::asio::associator<Associator, wk::net::timed_stream::completion<Handler>,
                               DefaultCandidate> : Associator<Handler, DefaultCandidate> {
  static typename Associator<Handler, DefaultCandidate>::type
  get(const wk::net::timed_stream::completion<Handler>& h) noexcept {
    return Associator<Handler, DefaultCandidate>::get(h.handler);
  }
  static auto get(const wk::net::timed_stream::completion<Handler>& h,
                  const DefaultCandidate& c) noexcept
      -> decltype(Associator<Handler, DefaultCandidate>::get(h.handler, c)) {
    return Associator<Handler, DefaultCandidate>::get(h.handler, c);
  }
};
