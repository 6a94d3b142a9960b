#pragma once
// The effective configuration as plain data. Built once by config/load.cpp (the only place that
// knows YAML), validated, then shared read-only between workers as
// std::shared_ptr<const config>. Every field has its default here, so the minimal config of
// DESIGN.md section 4 needs nothing else.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wk::config {

using duration = std::chrono::milliseconds;

// How X-Forwarded-* headers are produced on the way to a backend.
enum class forwarded_policy {
  off,     // leave whatever the client sent untouched
  append,  // X-Forwarded-For: add the client address to the list; -Proto: set only when absent
  replace  // drop what the client sent and write our own value
};

// A PROXY protocol header sent at the start of each new connection to a backend, so that it
// still sees the client's address (HAProxy's proxy-protocol.txt).
enum class proxy_protocol { off, v1, v2 };

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
  proxy_protocol send_proxy_protocol = proxy_protocol::off;

  // Identity used to share pooled connections: equal keys mean interchangeable connections.
  [[nodiscard]] std::string key() const;
};

// An address range: "10.0.0.0/8", "2001:db8::/32", or one address ("127.0.0.1" = /32).
struct cidr {
  std::string text;                      // as written
  bool v6 = false;                       // IPv6 range (an IPv4-mapped client matches v4 ranges)
  std::array<std::uint8_t, 16> bytes{};  // network order; IPv4 uses the first 4
  unsigned prefix = 0;                   // bits that must match

  // `address` in network order: 4 bytes (IPv4) or 16 (IPv6, IPv4-mapped ones count as IPv4).
  [[nodiscard]] bool contains(const std::uint8_t* address, std::size_t size) const;
};

// What a listener does with the bytes of a connection.
enum class listener_mode {
  http,         // plain HTTP: the routing of DESIGN.md section 1
  tls,          // TLS termination with our certificates, then the same HTTP routing
  passthrough,  // TLS passthrough: the ClientHello is read for SNI, then bytes are relayed
};

// A certificate of a TLS-terminating listener. Its names (subjectAltName DNS entries, else the
// common name) select it by SNI; the first certificate is the default.
struct certificate {
  std::string cert_file;  // PEM: the leaf first, then intermediates
  std::string key_file;   // PEM private key
  std::string ocsp_file;  // optional: a DER OCSP response to staple
};

// A passthrough route: a ClientHello whose SNI matches `pattern` goes to `target`.
struct sni_route {
  std::string pattern;  // lower-case "name" or "*.suffix" (exactly one more label)
  struct upstream target;
};

// "http", "tls" or "passthrough", as written in the config.
std::string_view name_of(listener_mode m);

struct listener {
  std::string address;  // as written, e.g. "127.0.0.1:8080" or "[::1]:0"
  std::string host;     // IP literal without brackets
  std::uint16_t port = 0;
  listener_mode mode = listener_mode::http;
  // Non-empty: every connection must start with a PROXY v1/v2 header and come from one of
  // these ranges (others are closed); the carried client address is used for X-Forwarded-For
  // and logs.
  std::vector<cidr> accept_proxy_from;
  std::vector<certificate> certificates;  // tls only
  // passthrough only: where connections go (a TCP host:port; default: the origin's host, port
  // 443), per-SNI routes, and whether a ClientHello without SNI is refused.
  struct upstream passthrough;
  std::vector<sni_route> sni_routes;
  bool reject_without_sni = false;
};

// How a validation request is answered (DESIGN.md section 1).
enum class validation_mode {
  forward,      // reverse-proxy to the CloudFront routing endpoint, Host kept
  redirect,     // answer 301/302/307/308 with Location = the token's RedirectTo URL
  fetch,        // reverse-proxy to the token's RedirectTo URL (HTTPS, verified)
  static_files  // serve the token file from validation.static_dir or inline content
};

// What happens to a file under the prefix that is not a known token of its domain.
enum class unknown_token_action {
  origin,    // pass it to the origin, untouched (other CAs use the same folder)
  not_found  // answer 404 locally
};

// A domain whose validation mode differs from validation.mode.
struct domain_mode {
  std::string pattern;  // as in domains: a name, "*.suffix" or "*"
  validation_mode mode = validation_mode::forward;
};

// One ACM HTTP validation token: RedirectFrom must return RedirectTo's content.
struct token {
  std::string domain;         // lower-case host of redirect_from
  std::string tenant;         // whose token (tokens import records it); empty when not given
  std::string file;           // file name under the prefix, e.g. "abc123.txt"
  std::string redirect_from;  // http://<domain>/.well-known/pki-validation/<file>
  std::string redirect_to;    // https://validation.<region>.acm-validations.aws/...
  std::string to_host;        // host of redirect_to (lower-case)
  std::uint16_t to_port = 443;
  std::string to_target;     // path (+ "?query") of redirect_to
  bool has_content = false;  // inline content given (static mode)
  std::string content;
};

// Where validation events go (besides the in-memory history).
struct event_log {
  enum class output { stdout_stream, stderr_stream, off, file } kind = output::stderr_stream;
  std::string path;  // output::file only (absolute, or relative to the config file)
};

struct validation_route {
  std::string prefix = "/.well-known/pki-validation/";
  std::vector<std::string> domains;  // lower-case; "*.example.com" and "*" allowed
  std::vector<std::string> methods{"GET", "HEAD"};
  validation_mode mode = validation_mode::forward;  // default for every domain
  std::vector<domain_mode> modes;                   // per-domain overrides, in order
  unsigned redirect_status = 301;                   // 301, 302, 307 or 308
  unknown_token_action unknown_token = unknown_token_action::origin;
  std::string static_dir;     // static mode: <dir>/<domain>/<file>, then <dir>/<file>
  std::string fetch_ca_file;  // fetch mode: extra trust anchors (PEM); empty: system store
  ::wk::config::event_log events;
  std::size_t events_per_domain = 50;  // kept in memory for the status page
};

struct timeouts {
  duration connect{5'000};             // TCP connect (+ TLS handshake) to a backend, per address
  duration header_read{10'000};        // from first byte to end of a request header
  duration idle{60'000};               // client keep-alive: waiting for the next request
  duration upstream_response{60'000};  // waiting for a backend's response header / body bytes
  duration upstream_idle{4'000};       // how long an idle pooled backend connection is kept
  duration body_idle{60'000};          // no progress on a request or response body
  duration tunnel_idle{600'000};       // upgraded (101) and passthrough tunnels: no byte either way
};

struct limits {
  std::size_t header_bytes = 32 * 1024;            // whole request header (431 beyond)
  std::size_t header_count = 100;                  // number of header fields (431 beyond)
  std::size_t target_bytes = 8 * 1024;             // request target (414 beyond)
  std::size_t max_connections = 10'000;            // open client connections per listener
  std::uint64_t max_body_bytes = 0;                // request body cap (413 beyond); 0 = no cap
  std::size_t max_requests_per_connection = 1000;  // then Connection: close on the last answer
  // Requests answered from one burst before the connection closes; 0 (the default): no cap, every
  // pipelined request is answered up to max_requests_per_connection. wkproxy never reads ahead
  // of the request it answers, so a burst costs no memory beyond the read buffer; a count cap
  // only cut clients off (a 50-request pipeline was answered 32 times, then closed).
  std::size_t max_pipelined = 0;
};

struct headers {
  forwarded_policy x_forwarded_for = forwarded_policy::append;
  forwarded_policy x_forwarded_proto = forwarded_policy::append;
};

struct dns {
  duration refresh{30'000};  // re-resolve upstream names this often
};

// Graceful stop and binary upgrade.
struct shutdown {
  duration accept_grace{0};          // keep accepting after SIGTERM (load balancers notice)
  duration drain_timeout{30'000};    // then wait this long for busy connections
  duration upgrade_timeout{30'000};  // a new binary must be ready within this (SIGUSR2)
};

// The admin listener: health, readiness, metrics, status page, effective config. Off unless
// the config has an `admin` section.
struct admin {
  bool enabled = false;
  std::string address = "127.0.0.1:9901";  // as written
  std::string host = "127.0.0.1";
  std::uint16_t port = 9901;
  std::string token;  // bearer token for everything but /healthz and /readyz; "" = none
};

enum class log_output { stdout_stream, stderr_stream, off, file };

// How an access-log line is written.
enum class log_format {
  json,     // one JSON object per line, every field named (the default)
  combined  // Apache/nginx "combined": what existing log tooling (GoAccess, awstats...) reads
};

struct access_log {
  log_output output = log_output::stdout_stream;
  std::string path;  // log_output::file only: absolute, or relative to the config file
  log_format format = log_format::json;

  bool operator==(const access_log&) const = default;
};

// The least severe message the diagnostic log (stderr) keeps.
enum class log_level { debug, info, warn, error };

// automatic: io_uring where the kernel allows it, else epoll; io_uring: refuse to start without.
enum class io_engine { automatic, io_uring, epoll };
std::string_view name_of(io_engine e);
// The engine named `text` (auto, io_uring or epoll), or nullopt: for `io` and WKPROXY_IO.
std::optional<io_engine> io_engine_named(std::string_view text);

// The CloudFront API client (aws:): the distribution tenants to follow. Credentials and endpoints
// come from the environment, as for the AWS SDKs (docs/tenants.md).
struct aws_api {
  bool enabled = false;              // an aws: section was given
  std::vector<std::string> tenants;  // distribution tenant ids, names or ARNs
  duration poll_interval{60'000};    // each tenant is read this often
  duration request_timeout{10'000};  // one API call, connection included
  // "Safe to remove wkproxy for this domain": DNS valid and no request for the host this long.
  duration quiet_period{3'600'000};
  std::string profile;  // the shared-files profile (default: AWS_PROFILE, else "default")
  static constexpr std::size_t max_tenants = 1000;
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
  std::vector<token> tokens;  // imported from AWS (wkproxy tokens import), tokens_dir's included
  std::string tokens_dir;     // one file per tenant, read with the config (resolved path)
  ::wk::config::timeouts timeouts;
  ::wk::config::limits limits;
  ::wk::config::headers headers;
  ::wk::config::dns dns;
  ::wk::config::shutdown shutdown;
  ::wk::config::access_log access_log;
  ::wk::config::admin admin;
  ::wk::config::aws_api aws;
  ::wk::config::log_level log_level = ::wk::config::log_level::info;
  unsigned workers = 0;  // 0 = one per core
  // How workers wait for and carry socket I/O (docs/configuration.md#io). Read at start only.
  io_engine io = io_engine::automatic;
  // Where the serving process writes its pid ("" = nowhere); resolved against the config's
  // directory. Read at start only (like workers).
  std::string pid_file;
};

}  // namespace wk::config
