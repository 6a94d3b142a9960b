#pragma once
// An upstream as the data path sees it: its config, its DNS cell and its TLS context.
// Part of the immutable runtime snapshot (runtime/runtime.hpp).

#include "config/config.hpp"
#include "upstream/resolver.hpp"

#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <string>

namespace wk::upstream {

struct target {
  config::upstream cfg;
  std::string key;                                 // cfg.key(): pool identity
  std::shared_ptr<dns_cell> dns;                   // never null
  std::shared_ptr<boost::asio::ssl::context> tls;  // null for http upstreams
};

}  // namespace wk::upstream
