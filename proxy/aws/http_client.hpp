#pragma once
// The HTTP(S) client of the AWS APIs (CloudFront, STS, instance metadata, container credentials):
// keep-alive connections reused per endpoint (as the SDKs do: a poll round of 50 tenants is 150
// calls, and a TLS handshake per call cost the proxy's process about 1.4 ms of CPU each),
// certificate and name verified (net::expect_peer), every exchange under one deadline, answers
// capped in size. Not thread-safe: it runs on the tenant poller's own thread and io_context (or a
// CLI command's), never on a worker's, so the data path does not wait for AWS.

#include "core/asio.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>

#include <chrono>
#include <cstdint>
#include <map>
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
  std::string path;   // the URL's path without a trailing '/' ("" for none)
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
  bool keep_alive = false;  // the connection may carry another request
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // The first value of header `name` (any case); "" when absent.
  [[nodiscard]] std::string header(std::string_view name) const;
};

class http_client {
public:
  static constexpr std::size_t max_body = 1 << 20;
  static constexpr std::size_t max_idle_per_endpoint = 8;
  // A kept connection unused this long is closed rather than reused (servers close idle
  // connections after some seconds; AWS's front ends after about 20 s or more).
  static constexpr std::chrono::seconds max_idle{15};

  // Trust anchors: `ca_bundle` (PEM, as AWS_CA_BUNDLE names it) when not empty, else the system
  // store. The reason when the bundle cannot be loaded.
  static std::variant<std::shared_ptr<http_client>, std::string> make(const std::string& ca_bundle);

  // Sends `req` to `to` and reads the whole answer, all within `timeout`, on a kept connection
  // to the same endpoint when there is one (a kept connection that fails is replaced by a new one
  // once: the server may have closed it meanwhile). The reason on failure ("connect to
  // 127.0.0.1:8443: Connection refused", "certificate verification failed: ...", "read the
  // answer of ...: timed out").
  boost::asio::awaitable<std::variant<http_response, std::string>>
  send(const endpoint& to, http_request req, std::chrono::milliseconds timeout);

  // Closes the kept connections. Call it before the io_context they were made on goes away
  // (they hold its timers and sockets).
  void close_idle();

  // Connections made and kept so far (for tests).
  [[nodiscard]] std::size_t connections_made() const { return made_; }

  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;
  ~http_client();

private:
  struct connection;
  explicit http_client(std::shared_ptr<boost::asio::ssl::context> tls);
  boost::asio::awaitable<std::variant<std::unique_ptr<connection>, std::string>>
  connect(const endpoint& to, std::chrono::milliseconds timeout);

  std::shared_ptr<boost::asio::ssl::context> tls_;
  std::map<std::string, std::vector<std::unique_ptr<connection>>> idle_;  // by endpoint
  std::size_t made_ = 0;
};

}  // namespace wk::aws
