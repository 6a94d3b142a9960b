#pragma once
// The request-side checks the framing rules leave, and the request header a backend receives.
// Pure functions over a parsed request head (request_reader.hpp; no I/O): the session and the
// request-path fuzzer (fuzz/fuzz_request.cpp) call the same code.

#include "config/config.hpp"
#include "core/failure.hpp"
#include "http/header_rules.hpp"
#include "http/request_reader.hpp"
#include "routing/route.hpp"

#include <cstdint>
#include <optional>
#include <string>

namespace wk::http {

// RFC 9112 checks on a parsed request header: version 1.0 or 1.1, target length, field
// count, a single Host, Transfer-Encoding exactly "chunked" (never on HTTP/1.0). Returns the
// failure (and a short `detail`) or failure::none.
core::failure check_request(const request_reader& req, const config::limits& limits,
                            std::string& detail);

// The request asks for a protocol switch in any way (Upgrade field or "upgrade" in Connection).
bool asks_upgrade(const request_reader& f);

// An upgrade a proxy can pass on: an Upgrade field and "upgrade" in Connection (RFC 9110 7.8).
bool wants_upgrade(const request_reader& f);

// What routing needs to know of a checked request header. Views into `req`.
routing::request_facts facts_of(const request_reader& req, bool has_body);

// How the body is framed towards the backend: chosen by the proxy, never copied.
struct body_framing {
  bool chunked = false;
  std::optional<std::uint64_t> length;  // Content-Length when not chunked; none: no body
};

// Writes the request head a backend receives into `out` (cleared first; its capacity is
// reused): the request line with the target from the routing decision, fields by `opt`,
// framing from `framing`, and the blank line.
void build_upstream_request(const request_reader& req, const routing::decision& decision,
                            const forward_options& opt, body_framing framing, std::string& out);

}  // namespace wk::http
