#pragma once
// Opening a new backend connection: each resolved address in turn, each with the connect
// deadline, then the TLS handshake (SNI, certificate and name verification) for https.

#include "config/config.hpp"
#include "core/failure.hpp"
#include "upstream/connection.hpp"
#include "upstream/target.hpp"

#include <boost/asio/awaitable.hpp>

#include <memory>
#include <string>
#include <string_view>

namespace wk::upstream {

struct connect_outcome {
  std::unique_ptr<connection> conn;  // set on success
  core::failure error = core::failure::none;
  std::string detail;  // e.g. "127.0.0.1:8081: Connection refused"
};

// Runs on the calling coroutine's executor (the worker's). Never throws for network errors.
// `preface` (a PROXY protocol header) is written right after the TCP connect, before any TLS
// handshake; a failure to write it counts as a refused connection.
boost::asio::awaitable<connect_outcome> connect(const target& t, const config::timeouts& to,
                                                std::string_view preface = {});

}  // namespace wk::upstream
