#pragma once
// The HTTP(S) client of the AWS APIs (CloudFront, STS, instance metadata, container credentials):
// one request per connection, certificate and name verified (net::expect_peer), every step under
// one deadline, answers capped in size. It runs on the tenant poller's own thread and io_context,
// never on a worker's: the data path does not wait for AWS.

#include "core/asio.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace wk::aws {

// Where an API is: "https://cloudfront.amazonaws.com", "http://169.254.169.254",
// "https://127.0.0.1:8443/prefix".
struct endpoint {
  std::string url;  // as given, for messages
  bool tls = true;
  std::string host;  // DNS name or IP literal (no brackets)
  std::uint16_t port = 443;
  std::string path;  // the URL's path without a trailing '/' ("" for none)
  std::string query;  // the URL's query without '?', as written

  // The Host header: host, with ":port" when it is not the scheme's default.
  [[nodiscard]] std::string host_header() const;
};

// http:// or https:// with a host and optional port, path and query; no user info or fragment.
std::variant<endpoint, std::string> parse_endpoint(std::string_view url);

struct http_request {
  std::string method = "GET";
  std::string target = "/";  // path + "?query", on the wire as given
  std::vector<std::pair<std::string, std::string>> headers;  // Host is added when absent
  std::string body;
};

struct http_response {
  unsigned status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // The first value of header `name` (any case); "" when absent.
  [[nodiscard]] std::string header(std::string_view name) const;
};

class http_client {
public:
  static constexpr std::size_t max_body = 1 << 20;

  // Trust anchors: `ca_bundle` (PEM, as AWS_CA_BUNDLE names it) when not empty, else the system
  // store. The reason when the bundle cannot be loaded.
  static std::variant<std::shared_ptr<http_client>, std::string> make(const std::string& ca_bundle);

  // Sends `req` to `to` and reads the whole answer, all within `timeout`. The reason on failure
  // ("connect to 127.0.0.1:8443: Connection refused", "certificate verification failed: ...",
  // "timed out after 10000 ms reading the answer").
  boost::asio::awaitable<std::variant<http_response, std::string>>
  send(const endpoint& to, http_request req, std::chrono::milliseconds timeout);

private:
  explicit http_client(std::shared_ptr<boost::asio::ssl::context> tls) : tls_(std::move(tls)) {}
  std::shared_ptr<boost::asio::ssl::context> tls_;
};

}  // namespace wk::aws
