#pragma once
// Every way a request can fail, and the one mapping from failure to what the client is told.
// Pure: no I/O. See STYLE.md "Errors".

#include <string_view>

namespace wk::core {

enum class failure {
  none,
  // The client's request (4xx). Nothing reached a backend.
  bad_request,            // unparsable or invalid request: 400
  method_not_allowed,     // CONNECT on a reverse proxy: 405
  header_timeout,         // header not complete within timeouts.header_read: 408
  body_too_large,         // request body over limits.max_body_bytes: 413
  target_too_long,        // request target over limits.target_bytes: 414
  header_too_large,       // header bytes or field count over the limit: 431
  version_not_supported,  // not HTTP/1.0 or 1.1: 505
  not_implemented,        // a transfer coding other than chunked: 501
  // A backend's fault (5xx).
  upstream_unresolved,       // the name did not resolve: 502
  upstream_refused,          // no address accepted the TCP connection: 502
  upstream_connect_timeout,  // connect or TLS handshake took too long: 504
  upstream_tls,              // TLS handshake or certificate verification failed: 502
  upstream_reset,            // the connection closed or reset before a full response header: 502
  upstream_bad_response,     // the response could not be parsed or its framing is invalid: 502
  upstream_timeout,          // no response (or no body progress) within the deadline: 504
  // No answer possible.
  client_gone,           // the client closed or reset its connection: nothing is sent
  client_timeout,        // the client stopped sending a body: nothing more can be sent
  proxy_stopping,        // shutting down: 503
  too_many_connections,  // listener at limits.max_connections: 503
  internal,              // a bug: 500
  count_                 // number of kinds (for counters)
};

// The HTTP status sent for a failure; 0 for failures where nothing can be sent.
unsigned status_for(failure f);

// A short stable name for logs and metrics, e.g. "upstream_timeout".
std::string_view name_of(failure f);

// One short sentence for the reply body, e.g. "the upstream did not answer in time".
std::string_view describe(failure f);

}  // namespace wk::core
