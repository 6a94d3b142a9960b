#pragma once
// One connection to a backend, plain or TLS. Owned by one session while in use, by the
// worker's pool while idle; never shared between threads.

#include "http/response_reader.hpp"
#include "net/timed_stream.hpp"
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <boost/beast/ssl/ssl_stream.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <variant>

namespace wk::upstream {

using tcp_stream = wk::net::timed_stream;
using tls_stream = boost::beast::ssl_stream<wk::net::timed_stream>;

struct connection {
  std::variant<tcp_stream, tls_stream> stream;
  std::shared_ptr<boost::asio::ssl::context> tls_ctx;  // keeps the context alive for `stream`
  boost::beast::flat_buffer buffer;                    // bytes read but not yet parsed
  http::head_storage head;                             // response fields, reused per response
  std::string key;                                     // the target's pool key
  std::chrono::steady_clock::time_point idle_since{};
  std::uint64_t uses = 0;  // requests sent on this connection

  explicit connection(tcp_stream s) : stream(std::in_place_type<tcp_stream>, std::move(s)) {}
  connection(tls_stream s, std::shared_ptr<boost::asio::ssl::context> ctx)
      : stream(std::in_place_type<tls_stream>, std::move(s)), tls_ctx(std::move(ctx)) {}

  bool is_tls() const { return std::holds_alternative<tls_stream>(stream); }
  tcp_stream& lowest() {
    if (auto* t = std::get_if<tls_stream>(&stream)) {
      return t->next_layer();
    }
    return std::get<tcp_stream>(stream);
  }
};

}  // namespace wk::upstream
