#pragma once
// A byte tunnel between two streams after a protocol switch (101): bytes are copied both ways
// as they come, half-close is honoured (end of stream on one side shuts down writing on the
// other, the opposite direction keeps flowing), and the whole tunnel closes after `idle` with
// no bytes in either direction. Header-only because it is a template over the two stream types
// (plain TCP or TLS on each side).

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>

#include <chrono>
#include <cstdint>
#include <span>

namespace wk::net {

struct tunnel_stats {
  std::uint64_t client_to_upstream = 0;
  std::uint64_t upstream_to_client = 0;
};

namespace detail {

struct tunnel_state {
  std::chrono::steady_clock::time_point last_activity = std::chrono::steady_clock::now();
  int pumps_running = 2;
  bool closed = false;
};

template <class Stream> void shutdown_send(Stream& s) {
  boost::system::error_code ec;
  // For TLS this ends the TCP direction without close_notify: the peer sees the same
  // end-of-stream the other side of the tunnel produced.
  boost::beast::get_lowest_layer(s).socket().shutdown(boost::asio::ip::tcp::socket::shutdown_send,
                                                      ec);
}

template <class Stream> void close_stream(Stream& s) {
  boost::system::error_code ec;
  boost::beast::get_lowest_layer(s).socket().close(ec);
}

// Copies `from` -> `to` until end of stream or an error. `pending` holds bytes already read
// from `from` (past the HTTP header) that go first.
template <class From, class To>
boost::asio::awaitable<void> pump(From& from, To& to, boost::beast::flat_buffer& pending,
                                  std::span<char> buf, tunnel_state& st, std::uint64_t& count,
                                  boost::asio::steady_timer& watchdog) {
  constexpr auto nothrow = boost::asio::as_tuple(boost::asio::use_awaitable);
  bool failed = false;
  if (pending.size() > 0) {
    auto [ec, n] = co_await boost::asio::async_write(to, pending.data(), nothrow);
    count += n;
    pending.consume(pending.size());
    failed = static_cast<bool>(ec);
  }
  while (!failed) {
    auto [rec, rn] =
        co_await from.async_read_some(boost::asio::buffer(buf.data(), buf.size()), nothrow);
    if (rn > 0) {
      st.last_activity = std::chrono::steady_clock::now();
      auto [wec, wn] =
          co_await boost::asio::async_write(to, boost::asio::buffer(buf.data(), rn), nothrow);
      count += wn;
      if (wec) {
        failed = true;
        break;
      }
    }
    if (rec == boost::asio::error::eof) {
      shutdown_send(to);  // half-close: the other direction goes on
      break;
    }
    if (rec) {
      failed = true;
    }
  }
  if (failed && !st.closed) {
    // A reset or write error ends the whole tunnel: the other pump wakes up with an error.
    st.closed = true;
    close_stream(from);
    close_stream(to);
  }
  if (--st.pumps_running == 0) {
    watchdog.cancel();
  }
}

template <class A, class B>
boost::asio::awaitable<void> idle_watchdog(A& a, B& b, tunnel_state& st,
                                           boost::asio::steady_timer& timer,
                                           std::chrono::milliseconds idle) {
  constexpr auto nothrow = boost::asio::as_tuple(boost::asio::use_awaitable);
  while (st.pumps_running > 0) {
    timer.expires_at(st.last_activity + idle);
    auto [ec] = co_await timer.async_wait(nothrow);
    if (st.pumps_running == 0) {
      break;
    }
    if (!ec && std::chrono::steady_clock::now() >= st.last_activity + idle) {
      st.closed = true;
      close_stream(a);
      close_stream(b);
      break;
    }
  }
}

}  // namespace detail

// Runs the tunnel to its end; both streams are closed or half-closed afterwards. The buffers
// are scratch space of the caller (one per direction).
template <class Client, class Upstream>
boost::asio::awaitable<tunnel_stats>
run_tunnel(Client& client, boost::beast::flat_buffer& client_pending, Upstream& upstream,
           boost::beast::flat_buffer& upstream_pending, std::span<char> buf_up,
           std::span<char> buf_down, std::chrono::milliseconds idle) {
  using boost::asio::experimental::awaitable_operators::operator&&;
  boost::beast::get_lowest_layer(client).expires_never();
  boost::beast::get_lowest_layer(upstream).expires_never();
  detail::tunnel_state st;
  tunnel_stats stats;
  boost::asio::steady_timer watchdog(co_await boost::asio::this_coro::executor);
  co_await (detail::pump(client, upstream, client_pending, buf_up, st, stats.client_to_upstream,
                         watchdog) &&
            detail::pump(upstream, client, upstream_pending, buf_down, st, stats.upstream_to_client,
                         watchdog) &&
            detail::idle_watchdog(client, upstream, st, watchdog, idle));
  co_return stats;
}

}  // namespace wk::net
