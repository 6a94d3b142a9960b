#pragma once
// The effective configuration as plain data. Built once by config/load.cpp (the only place that
// knows YAML), validated, then shared read-only between workers as
// std::shared_ptr<const config>. Every field has its default here, so the minimal config of
// DESIGN.md section 4 needs nothing else.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace wk::config {

using duration = std::chrono::milliseconds;

// How X-Forwarded-* headers are produced on the way to a backend.
enum class forwarded_policy {
  off,     // leave whatever the client sent untouched
  append,  // X-Forwarded-For: add the client address to the list; -Proto: set only when absent
  replace  // drop what the client sent and write our own value
};

// One backend: the customer's origin, or the CloudFront routing endpoint.
struct upstream {
  std::string name;         // "origin" or "cloudfront": used in logs and errors
  std::string url;          // as written, for messages
  bool tls = false;         // https:// upstream
  std::string host;         // DNS name or IP literal (no brackets)
  std::uint16_t port = 80;  // 80 for http, 443 for https unless given
  std::string sni;          // TLS server name; defaults to host when it is a DNS name
  bool verify = true;       // verify the upstream certificate chain and name
  std::string ca_file;      // extra trust anchors (PEM); empty: the system store

  // Identity used to share pooled connections: equal keys mean interchangeable connections.
  [[nodiscard]] std::string key() const;
};

struct listener {
  std::string address;  // as written, e.g. "127.0.0.1:8080" or "[::1]:0"
  std::string host;     // IP literal without brackets
  std::uint16_t port = 0;
};

struct validation_route {
  std::string prefix = "/.well-known/pki-validation/";
  std::vector<std::string> domains;  // lower-case; "*.example.com" and "*" allowed
  std::vector<std::string> methods{"GET", "HEAD"};
};

struct timeouts {
  duration connect{5'000};             // TCP connect (+ TLS handshake) to a backend, per address
  duration header_read{10'000};        // from first byte to end of a request header
  duration idle{60'000};               // client keep-alive: waiting for the next request
  duration upstream_response{60'000};  // waiting for a backend's response header / body bytes
  duration upstream_idle{4'000};       // how long an idle pooled backend connection is kept
  duration body_idle{60'000};          // no progress on a request or response body
};

struct limits {
  std::size_t header_bytes = 32 * 1024;            // whole request header (431 beyond)
  std::size_t header_count = 100;                  // number of header fields (431 beyond)
  std::size_t target_bytes = 8 * 1024;             // request target (414 beyond)
  std::size_t max_connections = 10'000;            // open client connections per listener
  std::uint64_t max_body_bytes = 0;                // request body cap (413 beyond); 0 = no cap
  std::size_t max_requests_per_connection = 1000;  // then Connection: close on the last answer
  std::size_t max_pipelined = 32;  // requests answered from one burst before the connection closes
};

struct headers {
  forwarded_policy x_forwarded_for = forwarded_policy::append;
  forwarded_policy x_forwarded_proto = forwarded_policy::append;
};

struct dns {
  duration refresh{30'000};  // re-resolve upstream names this often
};

enum class log_output { stdout_stream, stderr_stream, off };

struct access_log {
  log_output output = log_output::stdout_stream;
};

struct config {
  int version = 1;
  std::string file;  // where it was loaded from (for messages and /config)
  std::vector<listener> listen;
  upstream origin;
  upstream cloudfront;
  // Qualified type names: a member may not reuse the unqualified name of a type it used
  // (GCC "changes meaning", [basic.scope.class]).
  validation_route validation;
  ::wk::config::timeouts timeouts;
  ::wk::config::limits limits;
  ::wk::config::headers headers;
  ::wk::config::dns dns;
  ::wk::config::access_log access_log;
  unsigned workers = 0;  // 0 = one per core
};

}  // namespace wk::config
