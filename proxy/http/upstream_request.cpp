#include "http/upstream_request.hpp"

#include "wire/request_head.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/rfc7230.hpp>

#include <charconv>
#include <string_view>
#include <vector>

namespace wk::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

core::failure check_request(const request_reader& req, const config::limits& limits,
                            std::string& detail) {
  if (req.version() != 11 && req.version() != 10) {
    detail = "only HTTP/1.0 and HTTP/1.1 are served";
    return core::failure::version_not_supported;
  }
  if (req.target().size() > limits.target_bytes) {
    return core::failure::target_too_long;
  }
  std::size_t fields = 0;
  std::size_t hosts = 0;
  std::vector<std::string_view> codings;  // Transfer-Encoding values (no allocation when none)
  for (const auto& f : req) {
    ++fields;
    if (f.name() == bhttp::field::host) {
      ++hosts;
    } else if (f.name() == bhttp::field::transfer_encoding) {
      codings.push_back(f.value());
    }
  }
  if (fields > limits.header_count) {
    detail = "more than " + std::to_string(limits.header_count) + " header fields";
    return core::failure::header_too_large;
  }
  if (hosts > 1) {
    detail = "more than one Host header";
    return core::failure::bad_request;
  }
  if (!codings.empty()) {
    if (req.version() == 10) {
      detail = "Transfer-Encoding in an HTTP/1.0 request";
      return core::failure::bad_request;
    }
    switch (wire::check_transfer_encoding(codings)) {
    case wire::coding_verdict::chunked:
      break;
    case wire::coding_verdict::malformed:
      detail = "invalid Transfer-Encoding";
      return core::failure::bad_request;
    case wire::coding_verdict::unsupported:
      detail = "only the chunked transfer coding is supported";
      return core::failure::not_implemented;
    }
  }
  return core::failure::none;
}

namespace {

bool connection_has_upgrade(const request_reader& f) {
  for (auto token : bhttp::token_list{f[bhttp::field::connection]}) {
    if (beast::iequals(token, "upgrade")) {
      return true;
    }
  }
  return false;
}

}  // namespace

bool asks_upgrade(const request_reader& f) {
  return f.count(bhttp::field::upgrade) > 0 || connection_has_upgrade(f);
}

bool wants_upgrade(const request_reader& f) {
  return f.count(bhttp::field::upgrade) > 0 && connection_has_upgrade(f);
}

routing::request_facts facts_of(const request_reader& req, bool has_body) {
  routing::request_facts facts;
  facts.method = req.method_string();
  facts.target = req.target();
  facts.host_present = req.count(bhttp::field::host) == 1;
  facts.host = req[bhttp::field::host];
  facts.http11 = req.version() == 11;
  facts.has_body = has_body;
  facts.upgrade = asks_upgrade(req);
  return facts;
}

void build_upstream_request(const request_reader& req, const routing::decision& decision,
                            const forward_options& opt, body_framing framing, std::string& out) {
  out.clear();
  out.append(req.method_string()).append(" ", 1);
  out.append(decision.upstream_target).append(" HTTP/1.1\r\n");
  head_writer fields(out);
  build_upstream_request_fields(req, fields, opt);
  if (framing.chunked) {
    out.append("Transfer-Encoding: chunked\r\n");
  } else if (framing.length) {
    char digits[24];
    const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, *framing.length);
    out.append("Content-Length: ").append(digits, end).append("\r\n");
  }
  out.append("\r\n");
}

}  // namespace wk::http
