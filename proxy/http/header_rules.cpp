#include "http/header_rules.hpp"

#include "core/ascii.hpp"
#include "http/request_reader.hpp"
#include "http/response_reader.hpp"

#include <boost/beast/http/rfc7230.hpp>

#include <array>
#include <string>
#include <vector>

namespace wk::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

namespace {

// The names listed in the Connection fields of a message (RFC 9110 section 7.6.1), collected
// once per message; most messages list none or one ("keep-alive", "close").
class connection_names {
public:
  template <class In> explicit connection_names(const In& in) {
    for (const auto& f : in) {
      if (f.name() != bhttp::field::connection) {
        continue;
      }
      for (auto token : bhttp::token_list{f.value()}) {
        const std::string_view t(token.data(), token.size());
        if (count_ < inline_names.size()) {
          inline_names[count_++] = t;
        } else {
          more_.push_back(t);
        }
      }
    }
  }
  bool contains(std::string_view name) const {
    for (std::size_t i = 0; i < count_; ++i) {
      if (core::iequals(inline_names[i], name)) {
        return true;
      }
    }
    for (auto t : more_) {
      if (core::iequals(t, name)) {
        return true;
      }
    }
    return false;
  }

private:
  std::array<std::string_view, 4> inline_names{};
  std::size_t count_ = 0;
  std::vector<std::string_view> more_;  // allocates only past four names
};

template <class Field> bool skipped(const connection_names& named, const Field& f) {
  return is_hop_by_hop(f.name()) || named.contains(f.name_string());
}

// A request's Connection field may name only fields the client itself added for this hop.
// Host is never one: "Connection: Host" would make the origin or CloudFront see the upstream's
// configured name instead of the customer's. (Framing fields are hop-by-hop anyway and chosen
// by the proxy; X-Forwarded-* under `replace` are the proxy's own and added after the copy.)
template <class Field> bool skipped_in_request(const connection_names& named, const Field& f) {
  if (f.name() == bhttp::field::host) {
    return false;
  }
  return skipped(named, f);
}

}  // namespace

bool is_hop_by_hop(bhttp::field f) {
  switch (f) {
  case bhttp::field::connection:
  case bhttp::field::keep_alive:
  case bhttp::field::proxy_connection:
  case bhttp::field::te:
  case bhttp::field::transfer_encoding:
  case bhttp::field::upgrade:
  case bhttp::field::trailer:
  case bhttp::field::content_length:
  case bhttp::field::expect:
  case bhttp::field::proxy_authenticate:
  case bhttp::field::proxy_authorization:
    return true;
  default:
    return false;
  }
}

namespace {

bool allowed_on_validation_route(std::string_view name) {
  static constexpr std::array<std::string_view, 8> allowed{
      "Host",          "User-Agent",        "Accept",       "Accept-Encoding", "Accept-Language",
      "If-None-Match", "If-Modified-Since", "Cache-Control"};
  for (auto a : allowed) {
    if (core::iequals(a, name)) {
      return true;
    }
  }
  return false;
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
    if (core::iequals(h, name)) {
      return true;
    }
  }
  return false;
}

bool trailer_allowed(bhttp::field f, std::string_view name, std::string_view connection) {
  if (is_hop_by_hop(f)) {
    return false;
  }
  switch (f) {
  case bhttp::field::host:
  case bhttp::field::authorization:
  case bhttp::field::www_authenticate:
  case bhttp::field::authentication_info:
  case bhttp::field::proxy_authentication_info:
  case bhttp::field::cookie:
  case bhttp::field::cookie2:
  case bhttp::field::set_cookie:
  case bhttp::field::set_cookie2:
  case bhttp::field::cache_control:
  case bhttp::field::pragma:
  case bhttp::field::max_forwards:
  case bhttp::field::range:
  case bhttp::field::if_match:
  case bhttp::field::if_none_match:
  case bhttp::field::if_modified_since:
  case bhttp::field::if_unmodified_since:
  case bhttp::field::if_range:
  case bhttp::field::age:
  case bhttp::field::date:
  case bhttp::field::expires:
  case bhttp::field::location:
  case bhttp::field::retry_after:
  case bhttp::field::vary:
  case bhttp::field::content_type:
  case bhttp::field::content_encoding:
  case bhttp::field::content_range:
  case bhttp::field::content_location:
  case bhttp::field::content_language:
  case bhttp::field::forwarded:
  case bhttp::field::via:
    return false;
  default:
    break;
  }
  if (name.size() >= 12 && core::iequals(name.substr(0, 12), "X-Forwarded-")) {
    return false;
  }
  if (core::iequals(name, "X-Real-IP")) {
    return false;
  }
  for (auto token : bhttp::token_list{connection}) {
    if (core::iequals(std::string_view(token.data(), token.size()), name)) {
      return false;
    }
  }
  return true;
}

bool append_trailer(std::string& out, bhttp::field f, std::string_view name, std::string_view value,
                    std::string_view connection) {
  if (!trailer_allowed(f, name, connection) ||
      out.size() + name.size() + value.size() + 4 > trailer_bytes_limit) {
    return false;
  }
  out.append(name).append(": ", 2).append(value).append("\r\n", 2);
  return true;
}

template <class In, class Out>
void build_upstream_request_fields(const In& in, Out& out, const forward_options& opt) {
  using config::forwarded_policy;
  const connection_names named(in);
  // The X-Forwarded-For value being built: per thread, its capacity kept (a long IPv6 client
  // address would otherwise allocate on every request).
  thread_local std::string xff;
  xff.clear();
  bool has_xfp = false;
  bool host_done = false;
  for (const auto& f : in) {
    auto name = f.name_string();
    if (skipped_in_request(named, f)) {
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
    if (core::iequals(name, "X-Forwarded-For")) {
      if (opt.x_forwarded_for == forwarded_policy::append) {
        xff += xff.empty() ? "" : ", ";
        xff += f.value();
      } else if (opt.x_forwarded_for == forwarded_policy::off && !opt.validation_route) {
        out.insert(f.name(), name, f.value());
      }
      continue;
    }
    if (core::iequals(name, "X-Forwarded-Proto")) {
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

template <class In, class Out>
void build_downstream_response_fields(const In& in, Out& out, bool switching) {
  const connection_names named(in);
  for (const auto& f : in) {
    auto name = f.name_string();
    if (switching && f.name() == bhttp::field::upgrade) {
      out.insert(f.name(), name, f.value());
      continue;
    }
    if (skipped(named, f)) {
      continue;
    }
    out.insert(f.name(), name, f.value());
  }
  if (switching) {
    out.insert(bhttp::field::connection, "upgrade");
  }
}

template void build_upstream_request_fields(const bhttp::fields&, bhttp::fields&,
                                            const forward_options&);
template void build_upstream_request_fields(const bhttp::fields&, head_writer&,
                                            const forward_options&);
template void build_upstream_request_fields(const request_reader&, head_writer&,
                                            const forward_options&);
template void build_downstream_response_fields(const bhttp::fields&, bhttp::fields&, bool);
template void build_downstream_response_fields(const bhttp::fields&, head_writer&, bool);
template void build_downstream_response_fields(const response_reader&, bhttp::fields&, bool);
template void build_downstream_response_fields(const response_reader&, head_writer&, bool);

}  // namespace wk::http
