#pragma once
// TLS passthrough (DESIGN.md section 2): the client's ClientHello is read, never answered, for
// its SNI (and ALPN, for the log); the upstream is chosen by SNI; then the bytes, the hello
// first, are relayed unchanged both ways (splice(2) where the kernel allows). wkproxy holds no
// key and cannot change what the client and the origin negotiate.

#include "app/worker_state.hpp"
#include "runtime/runtime.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <memory>
#include <string>

namespace wk::app {

// Serves one passthrough connection. `early` holds bytes already read (after a PROXY
// header); `rt` keeps `listener` alive. One access-log line per connection (route
// "passthrough", host = the SNI).
boost::asio::awaitable<void> serve_passthrough(worker_state* w, boost::asio::ip::tcp::socket socket,
                                               session::client_info info, std::string early,
                                               std::shared_ptr<const runtime::snapshot> rt,
                                               const runtime::listener_runtime* listener);

}  // namespace wk::app
