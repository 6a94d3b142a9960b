#pragma once
// What happens to an accepted connection before HTTP: it is counted against its listener and
// its worker, a PROXY protocol header is read when the listener trusts its source, and the
// listener's mode (as of the current runtime snapshot) picks plain HTTP, TLS termination or
// TLS passthrough.

#include "app/worker_state.hpp"
#include "net/listener.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <memory>

namespace wk::app {

// Starts serving one accepted connection (from `peer`, as accept reported it) and returns at
// once: it is served on the socket's executor until it closes. A plain-HTTP listener without
// PROXY protocol starts the session directly; the other modes continue in a coroutine of their
// own. Never throws for network errors.
void start_client(worker_state* w, boost::asio::ip::tcp::socket socket,
                  const boost::asio::ip::tcp::endpoint& peer,
                  std::shared_ptr<net::listener_slot> slot);

}  // namespace wk::app
