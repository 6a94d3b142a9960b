#pragma once
// The byte relay of the TLS-passthrough listener: once the ClientHello has chosen an upstream,
// bytes go both ways between two plain TCP sockets without being looked at. On Linux they move
// with splice() through a pipe per direction, so they stay in the kernel and the relay holds no
// buffers; where splice() is not available (no pipe descriptors left, a kernel or sandbox that
// refuses it) the same relay copies through two 16 KiB buffers instead.

#include "net/tunnel.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <string_view>

namespace wk::net {

struct relay_options {
  // The whole relay closes after this long with no byte moving in either direction.
  std::chrono::milliseconds idle{60'000};
  // false: always the buffered copy (tests, and a switch for kernels where splice misbehaves).
  bool allow_splice = true;
};

struct relay_result {
  tunnel_stats stats;    // bytes delivered to each destination
  bool spliced = false;  // true when splice() carried the bytes of both directions
};

// Relays bytes both ways between two connected TCP sockets until both directions have ended.
// `to_upstream_first` are bytes already read from the client (the ClientHello, possibly more);
// they reach the upstream before anything else and count in `client_to_upstream`. The view
// and both sockets must stay valid until the relay completes, and the relay runs on one thread
// (the worker's io_context): its two directions share state without locks.
//
// Half-close is honoured: end of stream from one side shuts down sending on the other, and
// the opposite direction keeps flowing. A reset or error on either side, the idle timeout, or
// cancellation of the relay closes both sockets and ends it; after a normal end both sockets
// are open but shut down for sending, and the caller closes them. Network errors and
// cancellation are never thrown. The sockets' blocking mode is restored at the end.
//
// splice() into a socket cannot ask for MSG_NOSIGNAL: unless the process ignores SIGPIPE (the
// server does at startup), each such call blocks SIGPIPE in the calling thread for its duration
// and discards the one it raised.
boost::asio::awaitable<relay_result> relay(boost::asio::ip::tcp::socket& client,
                                           std::string_view to_upstream_first,
                                           boost::asio::ip::tcp::socket& upstream,
                                           relay_options opt);

}  // namespace wk::net
