#pragma once
// The routing decision: validation route (to CloudFront) or origin, or a rejection.
// Pure: takes the facts of one request header, returns a decision. See DESIGN.md section 1.

#include "routing/host_match.hpp"
#include "routing/normalize.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace wk::routing {

enum class route_kind {
  origin,      // pass-through to the customer's server, target forwarded exactly as sent
  validation,  // to the validation action (forward to CloudFront in this version)
  reject       // answer locally with `status`; nothing reaches a backend
};

struct route_table {
  std::string prefix = "/.well-known/pki-validation/";  // starts and ends with '/'
  host_allow_list domains;
  std::vector<std::string> methods{"GET", "HEAD"};  // upper-case
};

struct request_facts {
  std::string_view method;    // as sent (methods are case-sensitive, RFC 9110 9.1)
  std::string_view target;    // request-target as sent
  std::string_view host;      // Host header value ("" when absent)
  bool host_present = false;  // a Host header was sent (exactly one: checked by the caller)
  bool http11 = true;         // HTTP/1.1 (Host is required) or 1.0
  bool has_body = false;      // Content-Length > 0 or chunked
  bool upgrade = false;       // the request asks for a protocol upgrade
};

struct decision {
  route_kind kind = route_kind::origin;
  unsigned status = 0;          // reject only: 400, 405, ...
  std::string reason;           // reject only: short text for the body and log
  std::string host;             // normalized host ("" when none)
  std::string token;            // validation only: the file name under the prefix
  std::string upstream_target;  // validation: canonical path (+ "?query"); origin: as sent
                                // (absolute-form reduced to its path and query)
  std::string authority;        // absolute-form only: replaces Host (RFC 9112 section 3.2.2)
  std::string origin_target;    // validation only: the target the origin gets if the validation
                                // action passes the request on (as sent)

  // Back to a default decision, keeping the strings' capacity (a reused decision must never
  // show an earlier request's host or target).
  void clear() {
    kind = route_kind::origin;
    status = 0;
    reason.clear();
    host.clear();
    token.clear();
    upstream_target.clear();
    authority.clear();
    origin_target.clear();
  }
};

decision route(const route_table& table, const request_facts& facts);

// What route() works in; one per worker (routing never waits, so one request at a time uses
// it). Its strings keep their capacity from request to request.
struct route_scratch {
  normalize_result normalized;
  std::string decoded;
  std::string lenient;
  std::string work;
};

// The same into `d`, whose strings are reused (assigned, never built anew): with a `d` and a
// `scratch` that have served requests before, routing allocates nothing.
void route(const route_table& table, const request_facts& facts, decision& d,
           route_scratch& scratch);

// True for a file name allowed as a token: [A-Za-z0-9._-]+, not "." or "..".
bool is_safe_token(std::string_view segment);

}  // namespace wk::routing
