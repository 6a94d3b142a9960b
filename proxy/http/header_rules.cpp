#include "http/header_rules.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/rfc7230.hpp>

#include <array>
#include <string>

namespace wk::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return beast::iequals(a, b);
}

// Names listed in every Connection field of `in` (RFC 9110 section 7.6.1).
bool named_in_connection(const bhttp::fields& in, std::string_view name) {
  auto range = in.equal_range(bhttp::field::connection);
  for (auto it = range.first; it != range.second; ++it) {
    for (auto token : bhttp::token_list{it->value()}) {
      if (iequals(token, name)) {
        return true;
      }
    }
  }
  return false;
}

bool allowed_on_validation_route(std::string_view name) {
  static constexpr std::array<std::string_view, 8> allowed{
      "Host",          "User-Agent",        "Accept",       "Accept-Encoding", "Accept-Language",
      "If-None-Match", "If-Modified-Since", "Cache-Control"};
  for (auto a : allowed) {
    if (iequals(a, name)) {
      return true;
    }
  }
  return false;
}

bool skipped(const bhttp::fields& in, std::string_view name) {
  return is_hop_by_hop(name) || named_in_connection(in, name);
}

}  // namespace

bool is_hop_by_hop(std::string_view name) {
  static constexpr std::array<std::string_view, 11> hop{"Connection",
                                                        "Keep-Alive",
                                                        "Proxy-Connection",
                                                        "TE",
                                                        "Transfer-Encoding",
                                                        "Upgrade",
                                                        "Trailer",
                                                        "Content-Length",
                                                        "Expect",
                                                        "Proxy-Authenticate",
                                                        "Proxy-Authorization"};
  for (auto h : hop) {
    if (iequals(h, name)) {
      return true;
    }
  }
  return false;
}

void build_upstream_request_fields(const bhttp::fields& in, bhttp::fields& out,
                                   const forward_options& opt) {
  using config::forwarded_policy;
  std::string xff;
  bool has_xfp = false;
  bool host_done = false;
  for (const auto& f : in) {
    auto name = f.name_string();
    if (skipped(in, name)) {
      continue;
    }
    if (f.name() == bhttp::field::host) {
      if (!host_done) {
        out.insert(bhttp::field::host,
                   opt.authority.empty() ? std::string_view(f.value()) : opt.authority);
        host_done = true;
      }
      continue;
    }
    if (iequals(name, "X-Forwarded-For")) {
      if (opt.x_forwarded_for == forwarded_policy::append) {
        xff += xff.empty() ? "" : ", ";
        xff += f.value();
      } else if (opt.x_forwarded_for == forwarded_policy::off && !opt.validation_route) {
        out.insert(f.name(), name, f.value());
      }
      continue;
    }
    if (iequals(name, "X-Forwarded-Proto")) {
      has_xfp = true;
      if (opt.x_forwarded_proto != forwarded_policy::replace && !opt.validation_route) {
        out.insert(f.name(), name, f.value());
      }
      continue;
    }
    if (opt.validation_route && !allowed_on_validation_route(name)) {
      continue;
    }
    out.insert(f.name(), name, f.value());
  }
  if (!host_done) {
    auto host = opt.authority.empty() ? opt.default_host : opt.authority;
    if (!host.empty()) {
      out.insert(bhttp::field::host, host);
    }
  }
  if (!opt.upgrade.empty()) {
    out.insert(bhttp::field::upgrade, opt.upgrade);
    out.insert(bhttp::field::connection, "upgrade");
  }
  if (opt.x_forwarded_for != forwarded_policy::off && !opt.client_ip.empty()) {
    xff += xff.empty() ? "" : ", ";
    xff += opt.client_ip;
    out.insert("X-Forwarded-For", xff);
  }
  bool set_proto =
      opt.x_forwarded_proto == forwarded_policy::replace ||
      (opt.x_forwarded_proto == forwarded_policy::append && (!has_xfp || opt.validation_route));
  if (set_proto && !opt.proto.empty()) {
    out.insert("X-Forwarded-Proto", opt.proto);
  }
}

void build_downstream_response_fields(const bhttp::fields& in, bhttp::fields& out, bool switching) {
  for (const auto& f : in) {
    auto name = f.name_string();
    if (switching && f.name() == bhttp::field::upgrade) {
      out.insert(f.name(), name, f.value());
      continue;
    }
    if (skipped(in, name)) {
      continue;
    }
    out.insert(f.name(), name, f.value());
  }
  if (switching) {
    out.insert(bhttp::field::connection, "upgrade");
  }
}

}  // namespace wk::http
