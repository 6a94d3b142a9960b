#include "config/upstream_url.hpp"

#include "core/ascii.hpp"
#include "core/endpoint.hpp"

#include <boost/url.hpp>

#include <algorithm>
#include <cstdint>
#include <optional>

namespace wk::config {

namespace urls = boost::urls;
using core::parse_port;

namespace {

bool is_safe_file(std::string_view s) {
  if (s.empty() || s == "." || s == "..") {
    return false;
  }
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || core::is_digit(c) ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

}  // namespace

// "10.0.0.256" is a broken IPv4 address, not a name to look up: the last label must not be all
// digits.
bool is_host_name(std::string_view name) {
  if (name.empty() || name.size() > 253) {
    return false;
  }
  bool last_all_digits = false;
  std::size_t start = 0;
  while (start <= name.size()) {
    std::size_t end = name.find('.', start);
    if (end == std::string_view::npos) {
      end = name.size();
    }
    const std::string_view label = name.substr(start, end - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    last_all_digits = true;
    for (char c : label) {
      const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
      if (!alpha && !core::is_digit(c) && c != '-' && c != '_') {
        return false;
      }
      last_all_digits = last_all_digits && core::is_digit(c);
    }
    start = end + 1;
  }
  return !last_all_digits;
}

std::variant<upstream, std::string> parse_upstream_url(std::string_view url) {
  if (url.empty()) {
    return std::string("URL is empty");
  }
  const auto parsed = urls::parse_uri(urls::string_view(url.data(), url.size()));
  if (!parsed) {
    return "invalid URL \"" + std::string(url) +
           "\" (expected http://HOST[:PORT] or https://HOST[:PORT])";
  }
  const urls::url_view& u = *parsed;

  upstream out;
  out.url = std::string(url);
  if (u.scheme_id() == urls::scheme::http) {
    out.tls = false;
    out.port = 80;
  } else if (u.scheme_id() == urls::scheme::https) {
    out.tls = true;
    out.port = 443;
  } else {
    return std::string("scheme must be http or https");
  }
  if (!u.has_authority() || u.encoded_host().empty()) {
    return std::string("a host is required");
  }
  if (u.has_userinfo()) {
    return std::string("user info (\"user@\") is not allowed");
  }
  if (u.has_query()) {
    return std::string("a query (\"?...\") is not allowed");
  }
  if (u.has_fragment()) {
    return std::string("a fragment (\"#...\") is not allowed");
  }
  if (!u.encoded_path().empty() && u.encoded_path() != "/") {
    return std::string("a path is not allowed (only \"/\")");
  }

  bool dns_name = false;
  switch (u.host_type()) {
  case urls::host_type::ipv4:
    out.host = u.host_ipv4_address().to_string();
    break;
  case urls::host_type::ipv6:
    out.host = u.host_ipv6_address().to_string();
    break;
  case urls::host_type::name: {
    const urls::pct_string_view encoded = u.encoded_host_name();
    const std::string_view raw(encoded.data(), encoded.size());
    if (!is_host_name(raw)) {
      return "invalid host \"" + std::string(raw) + "\"";
    }
    out.host += core::to_lower(raw);
    dns_name = true;
    break;
  }
  default:
    return std::string("a host is required");
  }

  if (u.has_port()) {
    const urls::string_view port_text = u.port();
    const auto port = parse_port(std::string_view(port_text.data(), port_text.size()));
    if (!port || *port == 0) {
      return "invalid port \"" + std::string(port_text.data(), port_text.size()) +
             "\" (expected 1-65535)";
    }
    out.port = *port;
  }
  if (out.tls && dns_name) {
    out.sni = out.host;  // RFC 6066 section 3: SNI carries DNS names only, never IP literals
  }
  return out;
}

std::variant<upstream, std::string> parse_tcp_address(std::string_view text) {
  const std::string expected = "expected HOST:PORT (a DNS name, IPv4 or [IPv6], and a port)";
  const std::size_t colon = text.rfind(':');
  const std::size_t bracket = text.rfind(']');
  if (colon == std::string_view::npos || colon + 1 == text.size() ||
      (bracket != std::string_view::npos && bracket > colon)) {
    return expected + ", got \"" + std::string(text) + "\"";
  }
  // The URL parser already knows every host form; a TCP address is its authority.
  auto parsed = parse_upstream_url("http://" + std::string(text));
  if (auto* reason = std::get_if<std::string>(&parsed)) {
    if (reason->starts_with("invalid URL") || reason->starts_with("a ")) {
      return expected + ", got \"" + std::string(text) + "\"";
    }
    return *reason;
  }
  auto& out = std::get<upstream>(parsed);
  out.url = std::string(text);
  return out;
}

std::variant<cidr, std::string> parse_cidr(std::string_view text) {
  cidr out;
  out.text = std::string(text);
  std::string_view address = text;
  std::optional<unsigned> prefix;
  if (const std::size_t slash = text.find('/'); slash != std::string_view::npos) {
    address = text.substr(0, slash);
    const std::string_view bits = text.substr(slash + 1);
    if (bits.empty() || bits.size() > 3 || !std::all_of(bits.begin(), bits.end(), core::is_digit)) {
      return "invalid prefix length \"" + std::string(bits) + "\"";
    }
    prefix = static_cast<unsigned>(std::stoul(std::string(bits)));
  }
  const urls::string_view in(address.data(), address.size());
  if (const auto v4 = urls::parse_ipv4_address(in)) {
    const auto b = v4->to_bytes();
    std::copy(b.begin(), b.end(), out.bytes.begin());
    out.prefix = prefix.value_or(32);
    if (out.prefix > 32) {
      return std::string("an IPv4 prefix length is at most 32");
    }
  } else if (const auto v6 = urls::parse_ipv6_address(in)) {
    const auto b = v6->to_bytes();
    std::copy(b.begin(), b.end(), out.bytes.begin());
    out.v6 = true;
    out.prefix = prefix.value_or(128);
    if (out.prefix > 128) {
      return std::string("an IPv6 prefix length is at most 128");
    }
  } else {
    return "expected an IP address or range like 10.0.0.0/8, got \"" + std::string(text) + "\"";
  }
  // "10.1.2.3/8" is a typo for a host or for 10.0.0.0/8; refusing it avoids trusting too much.
  for (unsigned bit = out.prefix; bit < (out.v6 ? 128U : 32U); ++bit) {
    if ((out.bytes[bit / 8] >> (7 - bit % 8)) & 1U) {
      return "address bits beyond the prefix length must be zero in \"" + std::string(text) + "\"";
    }
  }
  return out;
}

std::variant<listener, std::string> parse_listen_address(std::string_view text) {
  listener out;
  out.address = std::string(text);
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return std::string("expected \"[IPv6]:PORT\"");
    }
    const std::string_view host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
    const auto v6 = urls::parse_ipv6_address(urls::string_view(host.data(), host.size()));
    if (!v6) {
      return "invalid IPv6 address \"" + std::string(host) + "\"";
    }
    out.host = v6->to_string();  // canonical text, so equal addresses compare equal
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return std::string("expected \"IP:PORT\" (the port is required)");
    }
    std::string_view host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return std::string("an IPv6 address must be in brackets, e.g. \"[::1]:8080\"");
    }
    if (host.empty()) {
      host = "0.0.0.0";  // ":80" listens on every IPv4 address
    }
    const auto v4 = urls::parse_ipv4_address(urls::string_view(host.data(), host.size()));
    if (!v4) {
      return "host must be an IP address, got \"" + std::string(host) + "\"";
    }
    out.host = v4->to_string();
  }
  const auto port = parse_port(port_text);
  if (!port) {
    return "invalid port \"" + std::string(port_text) + "\" (expected 0-65535)";
  }
  out.port = *port;
  return out;
}

std::string with_default_scheme(std::string_view url, std::string_view scheme) {
  // A scheme is ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 section 3.1).
  const auto end = url.find("://");
  const bool has_scheme =
      end != std::string_view::npos && end > 0 && core::is_alpha(url[0]) &&
      std::all_of(url.begin(), url.begin() + static_cast<std::ptrdiff_t>(end), [](char c) {
        return core::is_alpha(c) || core::is_digit(c) || c == '+' || c == '-' || c == '.';
      });
  if (has_scheme) {
    return std::string(url);
  }
  std::string out;
  out.reserve(scheme.size() + 3 + url.size());
  out.append(scheme).append("://").append(url);
  return out;
}

std::variant<redirect_from_parts, std::string> parse_redirect_from(std::string_view given,
                                                                   std::string_view prefix) {
  const std::string url = with_default_scheme(given, "http");
  const auto parsed = urls::parse_uri(urls::string_view(url.data(), url.size()));
  if (!parsed) {
    return "invalid URL \"" + std::string(given) + "\"";
  }
  const urls::url_view& u = *parsed;
  if (u.scheme_id() != urls::scheme::http) {
    return std::string("must start with http:// (the CA fetches it over plain HTTP)");
  }
  if (u.has_userinfo() || u.has_port() || u.has_query() || u.has_fragment()) {
    return std::string("must be http://DOMAIN/PATH without user info, port, query or fragment");
  }
  if (u.host_type() != urls::host_type::name) {
    return std::string("the host must be a domain name");
  }
  const urls::pct_string_view encoded = u.encoded_host_name();
  const std::string_view host(encoded.data(), encoded.size());
  if (!is_host_name(host)) {
    return "invalid domain \"" + std::string(host) + "\"";
  }
  const urls::pct_string_view path_view = u.encoded_path();
  const std::string_view path(path_view.data(), path_view.size());
  if (!path.starts_with(prefix)) {
    return "the path must start with " + std::string(prefix);
  }
  const std::string_view file = path.substr(prefix.size());
  if (!is_safe_file(file)) {
    return "the file name must be one segment of letters, digits, '.', '_' or '-', got \"" +
           std::string(file) + "\"";
  }
  return redirect_from_parts{core::to_lower(host), std::string(file)};
}

std::variant<redirect_to_parts, std::string> parse_redirect_to(std::string_view given) {
  const std::string url = with_default_scheme(given, "https");
  const auto parsed = urls::parse_uri(urls::string_view(url.data(), url.size()));
  if (!parsed) {
    return "invalid URL \"" + std::string(given) + "\"";
  }
  const urls::url_view& u = *parsed;
  if (u.scheme_id() != urls::scheme::https) {
    return std::string("must start with https://");
  }
  if (u.has_userinfo() || u.has_fragment()) {
    return std::string("user info and fragments are not allowed");
  }
  if (u.host_type() != urls::host_type::name) {
    return std::string("the host must be a domain name");
  }
  const urls::pct_string_view encoded = u.encoded_host_name();
  const std::string_view host(encoded.data(), encoded.size());
  if (!is_host_name(host)) {
    return "invalid host \"" + std::string(host) + "\"";
  }
  redirect_to_parts out;
  out.host = core::to_lower(host);
  if (u.has_port()) {
    const urls::string_view port_text = u.port();
    const auto port = parse_port(std::string_view(port_text.data(), port_text.size()));
    if (!port || *port == 0) {
      return std::string("invalid port");
    }
    out.port = *port;
  }
  const urls::pct_string_view path = u.encoded_path();
  if (path.empty() || path == "/") {
    return std::string("a path to the token file is required");
  }
  out.target = std::string(path.data(), path.size());
  if (u.has_query()) {
    const urls::pct_string_view q = u.encoded_query();
    out.target += "?" + std::string(q.data(), q.size());
  }
  return out;
}

}  // namespace wk::config
