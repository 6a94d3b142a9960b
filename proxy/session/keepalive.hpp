#pragma once
// Phase 5: the connection. Request after request on one client connection (the keep-alive
// loop), a quiet plain-HTTP connection parked in the worker's parking lot between requests,
// and the TLS handshake of a TLS-terminating listener.

#include "net/parking_lot.hpp"
#include "net/tls_server.hpp"
#include "session/context.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <memory>
#include <string>

namespace wk::session {

// A parked connection: what it needs to be served again, and nothing else (about 300 bytes;
// its socket is out of Asio's reactor, watched by the lot's own epoll set).
struct parked_connection : net::parked {
  connection_count count;
  client_info info;
  std::size_t served = 0;

  parked_connection(connection_count c, client_info i, int descriptor, std::size_t n,
                    clock::time_point until)
      : parked(descriptor, until), count(std::move(c)), info(std::move(i)), served(n) {}
  ~parked_connection() override;  // the descriptor closes before the connection is uncounted
};

// Bytes of a request already waiting in the socket (MSG_PEEK: nothing is consumed).
bool input_pending(int fd);

// Serves one plain-HTTP client connection until it closes; returns at once. `early` holds
// bytes already read from it (after a PROXY header). While requests come, a coroutine serves
// them; a keep-alive connection quiet for a moment is parked: it keeps only its socket, its
// client_info and a readiness wait (no buffer, no coroutine frame) until the next request
// arrives or timeouts.idle passes. The context outlives the connection (the worker destroys its
// io_context, and with it every session, before its state). Never throws for network or
// protocol errors.
// `served`: requests already answered on it (a connection handed over by the process this one
// replaces: its idle deadline is timeouts.idle, not header_read, and the per-connection request
// limit counts on).
void serve_connection(connection_count count, boost::asio::ip::tcp::socket socket, client_info info,
                      std::string early, std::size_t served = 0);

// Binary upgrade: hands every parked connection to the new process (w->handoff), each served
// here after all if that fails.
void hand_off_parked(context* w, const boost::asio::any_io_executor& ex);

// The same over TLS: the handshake with `tls`'s certificates (chosen by SNI) within
// timeouts.header_read, then HTTP as above. A failed handshake is counted and logged (rate
// limited), never more. `tls` is kept alive for the connection's life.
boost::asio::awaitable<void> serve_tls_connection(context* w, boost::asio::ip::tcp::socket socket,
                                                  client_info info, std::string early,
                                                  std::shared_ptr<const net::server_tls> tls);

}  // namespace wk::session
