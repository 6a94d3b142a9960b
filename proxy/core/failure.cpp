#include "core/failure.hpp"

namespace wk::core {

namespace {

struct failure_info {
  unsigned status;
  std::string_view name;
  std::string_view text;
};

constexpr failure_info info(failure f) {
  switch (f) {
  case failure::none:
    return {0, "", ""};
  case failure::bad_request:
    return {400, "bad_request", "malformed request"};
  case failure::method_not_allowed:
    return {405, "method_not_allowed", "method not allowed"};
  case failure::header_timeout:
    return {408, "header_timeout", "request header not received in time"};
  case failure::body_too_large:
    return {413, "body_too_large", "request body too large"};
  case failure::target_too_long:
    return {414, "target_too_long", "request target too long"};
  case failure::header_too_large:
    return {431, "header_too_large", "request header fields too large"};
  case failure::version_not_supported:
    return {505, "version_not_supported", "HTTP version not supported"};
  case failure::not_implemented:
    return {501, "not_implemented", "transfer coding not implemented"};
  case failure::upstream_unresolved:
    return {502, "upstream_unresolved", "upstream name did not resolve"};
  case failure::upstream_refused:
    return {502, "upstream_refused", "upstream refused the connection"};
  case failure::upstream_connect_timeout:
    return {504, "upstream_connect_timeout", "upstream connection timed out"};
  case failure::upstream_tls:
    return {502, "upstream_tls", "upstream TLS handshake failed"};
  case failure::upstream_reset:
    return {502, "upstream_reset", "upstream closed the connection"};
  case failure::upstream_bad_response:
    return {502, "upstream_bad_response", "upstream sent an invalid response"};
  case failure::upstream_timeout:
    return {504, "upstream_timeout", "upstream did not answer in time"};
  case failure::client_gone:
    return {0, "client_gone", "client closed the connection"};
  case failure::client_timeout:
    return {0, "client_timeout", "client stopped sending"};
  case failure::proxy_stopping:
    return {503, "proxy_stopping", "proxy is shutting down"};
  case failure::too_many_connections:
    return {503, "too_many_connections", "too many connections"};
  case failure::internal:
  case failure::count_:
    return {500, "internal", "internal proxy error"};
  }
  return {500, "internal", "internal proxy error"};
}

}  // namespace

unsigned status_for(failure f) {
  return info(f).status;
}
std::string_view name_of(failure f) {
  return info(f).name;
}
std::string_view describe(failure f) {
  return info(f).text;
}

}  // namespace wk::core
