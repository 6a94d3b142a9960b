#pragma once
// TLS client contexts for https upstreams.

#include "config/config.hpp"

#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <string>
#include <variant>

namespace wk::net {

// TLS 1.2+ client context: verification on unless the upstream says verify: false; trust
// anchors from ca_file when given, else the system store. Built on the main thread (it reads
// files); shared read-only by all workers. Returns the reason on failure.
std::variant<std::shared_ptr<boost::asio::ssl::context>, std::string>
make_client_context(const config::upstream& u);

}  // namespace wk::net
