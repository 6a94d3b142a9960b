#pragma once
// The byte tunnel: after a protocol switch (101) and for the TLS-passthrough listener, bytes are
// copied both ways as they come, unchanged. One pump serves both:
// - each direction first writes the bytes already read past the protocol header, then carries
//   the stream to its end: with splice(2) through a pipe where both ends are plain TCP sockets
//   (the bytes stay in the kernel), otherwise (a TLS stream, or splice refused) through a
//   buffer;
// - half-close is honoured: end of stream on one side shuts down sending on the other, the
//   opposite direction keeps flowing;
// - a reset or error on either side, the idle timeout (no byte moving either way), or
//   cancellation of the tunnel closes both sockets and ends it. Network errors and
//   cancellation are never thrown.
// The tunnel runs on one thread (its io_context's): its directions share state without locks.

#include "core/asio.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
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
#include <string_view>
#include <type_traits>

namespace wk::net {

struct tunnel_stats {
  std::uint64_t client_to_upstream = 0;  // bytes delivered to the upstream
  std::uint64_t upstream_to_client = 0;  // bytes delivered to the client
};

struct relay_options {
  // The whole tunnel closes after this long with no byte moving in either direction.
  std::chrono::milliseconds idle{60'000};
  // false: always the buffered copy (tests, and a switch for kernels where splice misbehaves).
  bool allow_splice = true;
};

struct relay_result {
  tunnel_stats stats;    // bytes delivered to each destination
  bool spliced = false;  // true when splice() carried the bytes of both directions
};

// The tunnel between two connected TCP sockets (net/splice_tunnel.cpp): splice() where the
// kernel allows, else the buffered copy. `to_upstream_first` (bytes already read from the
// client) reaches the upstream before anything else, `to_client_first` the client; they count
// in the stats. The views and both sockets must stay valid until the relay completes. After a
// normal end both sockets are open but shut down for sending, and the caller closes them. The
// sockets' blocking mode is restored at the end.
//
// splice() into a socket cannot ask for MSG_NOSIGNAL: unless the process ignores SIGPIPE (the
// server does at startup), each such call blocks SIGPIPE in the calling thread for its duration
// and discards the one it raised.
boost::asio::awaitable<relay_result> relay(boost::asio::ip::tcp::socket& client,
                                           std::string_view to_upstream_first,
                                           boost::asio::ip::tcp::socket& upstream,
                                           relay_options opt,
                                           std::string_view to_client_first = {});

namespace detail {

using tunnel_clock = std::chrono::steady_clock;

using core::nothrow;

// How one direction's carrying ended.
enum class pump_end {
  eof,          // `from` ended its stream; everything read has been delivered
  failed,       // a reset, an error, or the tunnel was closed
  unsupported,  // the first splice() was refused: nothing was moved, copy instead
};

struct tunnel_state {
  tunnel_clock::time_point last_activity = tunnel_clock::now();
  int pumps_running = 2;
  bool closed = false;  // an error, the idle timeout or cancellation closed both sockets
};

// The TCP socket under a stream (itself, a timed stream, or a TLS stream's lowest layer).
template <class Stream> decltype(auto) socket_of(Stream& s) {
  auto& lowest = boost::beast::get_lowest_layer(s);
  if constexpr (std::is_same_v<std::remove_cvref_t<decltype(lowest)>,
                               boost::asio::ip::tcp::socket>) {
    return lowest;
  } else {
    return lowest.socket();
  }
}

// A stream that is its own lowest layer and sits on a real TCP socket is a plain TCP stream:
// splice() can move its bytes. (A test stream is its own lowest layer but has no socket.)
template <class Stream>
inline constexpr bool is_plain_stream = std::is_same_v<
    std::remove_cvref_t<decltype(boost::beast::get_lowest_layer(std::declval<Stream&>()))>,
    Stream>&&
    std::is_same_v<decltype(socket_of(std::declval<Stream&>())), boost::asio::ip::tcp::socket&>;

template <class Stream> void shutdown_send(Stream& s) {
  boost::system::error_code ec;
  // For TLS this ends the TCP direction without close_notify: the peer sees the same
  // end-of-stream the other side of the tunnel produced.
  socket_of(s).shutdown(boost::asio::ip::tcp::socket::shutdown_send, ec);
}

template <class A, class B> void close_both(A& a, B& b, tunnel_state& st) {
  boost::system::error_code ec;
  st.closed = true;
  socket_of(a).close(ec);
  socket_of(b).close(ec);
}

// The buffered copy: `from` -> `buf` -> `to` until end of stream or an error; `count` is the
// bytes delivered to `to`.
template <class From, class To>
boost::asio::awaitable<pump_end> copy_loop(From& from, To& to, std::span<char> buf,
                                           tunnel_state& st, std::uint64_t& count) {
  for (;;) {
    auto [rec, rn] =
        co_await from.async_read_some(boost::asio::buffer(buf.data(), buf.size()), nothrow);
    if (rn > 0) {
      st.last_activity = tunnel_clock::now();
      auto [wec, wn] =
          co_await boost::asio::async_write(to, boost::asio::buffer(buf.data(), rn), nothrow);
      count += wn;
      st.last_activity = tunnel_clock::now();
      if (wec) {
        co_return pump_end::failed;
      }
    }
    if (rec == boost::asio::error::eof) {
      co_return pump_end::eof;
    }
    if (rec) {
      co_return pump_end::failed;
    }
  }
}

// One direction of the tunnel: the bytes read ahead (`first`) go first, then `carry()` (which
// returns awaitable<pump_end>: splice or the copy) moves the rest. End of stream half-closes
// `to`; anything else closes both sockets, which wakes the other direction and the watchdog
// with an error.
template <class From, class To, class Carry>
boost::asio::awaitable<void> pump(From& from, To& to, boost::asio::const_buffer first, Carry carry,
                                  tunnel_state& st, std::uint64_t& count,
                                  boost::asio::steady_timer& watchdog) {
  // A cancelled tunnel still ends through close_both(), never by an exception from co_await.
  co_await boost::asio::this_coro::throw_if_cancelled(false);
  pump_end end = pump_end::failed;
  bool first_sent = true;
  if (first.size() > 0) {
    auto [ec, n] = co_await boost::asio::async_write(to, first, nothrow);
    count += n;
    first_sent = !ec;
    if (first_sent) {
      st.last_activity = tunnel_clock::now();
    }
  }
  if (first_sent) {
    end = co_await carry();
  }
  if (end == pump_end::eof) {
    shutdown_send(to);  // half-close: the other direction goes on
  } else if (!st.closed) {
    close_both(from, to, st);
  }
  if (--st.pumps_running == 0) {
    watchdog.cancel();
  }
}

// Closes both sockets after `idle` without a byte moving, or when the tunnel is cancelled (the
// only other way the timer wait fails while a direction still runs).
template <class A, class B>
boost::asio::awaitable<void> idle_watchdog(A& a, B& b, tunnel_state& st,
                                           boost::asio::steady_timer& timer,
                                           std::chrono::milliseconds idle) {
  co_await boost::asio::this_coro::throw_if_cancelled(false);
  while (st.pumps_running > 0) {
    timer.expires_at(st.last_activity + idle);
    auto [ec] = co_await timer.async_wait(nothrow);
    if (st.pumps_running == 0) {
      break;
    }
    if (ec || tunnel_clock::now() >= st.last_activity + idle) {
      if (!st.closed) {
        close_both(a, b, st);
      }
      break;
    }
  }
}

// Both directions and the watchdog, to the end of all three.
template <class Client, class Upstream, class CarryUp, class CarryDown>
boost::asio::awaitable<void>
run_pumps(Client& client, boost::asio::const_buffer client_first, CarryUp carry_up,
          Upstream& upstream, boost::asio::const_buffer upstream_first, CarryDown carry_down,
          tunnel_state& st, tunnel_stats& stats, std::chrono::milliseconds idle) {
  using boost::asio::experimental::awaitable_operators::operator&&;
  boost::asio::steady_timer watchdog(co_await boost::asio::this_coro::executor);
  co_await (pump(client, upstream, client_first, std::move(carry_up), st, stats.client_to_upstream,
                 watchdog) &&
            pump(upstream, client, upstream_first, std::move(carry_down), st,
                 stats.upstream_to_client, watchdog) &&
            idle_watchdog(client, upstream, st, watchdog, idle));
}

inline std::string_view view_of(const boost::beast::flat_buffer& b) {
  const auto data = b.data();
  return {static_cast<const char*>(data.data()), data.size()};
}

}  // namespace detail

// The tunnel of an HTTP upgrade (101) between the client's and the upstream's streams (plain
// TCP or TLS on each side). `client_pending` and `upstream_pending` hold bytes already read
// past the HTTP heads; they go first and are consumed. When both streams are plain TCP the
// bytes move with relay() (splice); otherwise they are copied through `buf_up` and `buf_down`,
// scratch space of the caller (one per direction). Runs to its end; both streams are closed or
// half-closed afterwards.
template <class Client, class Upstream>
boost::asio::awaitable<tunnel_stats>
run_tunnel(Client& client, boost::beast::flat_buffer& client_pending, Upstream& upstream,
           boost::beast::flat_buffer& upstream_pending, std::span<char> buf_up,
           std::span<char> buf_down, std::chrono::milliseconds idle) {
  boost::beast::get_lowest_layer(client).expires_never();
  boost::beast::get_lowest_layer(upstream).expires_never();
  tunnel_stats stats;
  if constexpr (detail::is_plain_stream<Client> && detail::is_plain_stream<Upstream>) {
    relay_options opt;
    opt.idle = idle;
    const auto result =
        co_await relay(detail::socket_of(client), detail::view_of(client_pending),
                       detail::socket_of(upstream), opt, detail::view_of(upstream_pending));
    stats = result.stats;
  } else {
    detail::tunnel_state st;
    co_await detail::run_pumps(
        client, client_pending.data(),
        [&] { return detail::copy_loop(client, upstream, buf_up, st, stats.client_to_upstream); },
        upstream, upstream_pending.data(),
        [&] { return detail::copy_loop(upstream, client, buf_down, st, stats.upstream_to_client); },
        st, stats, idle);
  }
  client_pending.consume(client_pending.size());
  upstream_pending.consume(upstream_pending.size());
  co_return stats;
}

}  // namespace wk::net
