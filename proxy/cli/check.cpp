// Why this file is over 600 lines: it is `wkproxy check` whole. About 700 lines are the pure
// steps declared in check.hpp (arguments, URLs and the redirect policy, failure reasons, the
// table and JSON output), each a short function unit-tested without sockets; the rest are the
// blocking network steps and run_check(). Splitting them would only move the shared private
// helpers (host text, durations, printable bytes) into a header of their own.

#include "cli/check.hpp"

#include "cli_help.hpp"

#include "config/duration.hpp"
#include "config/load.hpp"
#include "core/ascii.hpp"
#include "core/asio.hpp"
#include "core/endpoint.hpp"
#include "net/tls_context.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>
#include <boost/url/url_view.hpp>

#include <netdb.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <exception>
#include <future>
#include <iostream>
#include <memory>
#include <thread>

namespace wk::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
namespace urls = boost::urls;
namespace json = boost::json;
using tcp = asio::ip::tcp;

namespace {

// The text lives in docs/wkproxy.1.md, with the man page.
constexpr std::string_view check_usage = wk::cli::help_check;

// A CLI tool, not a mirror: validation files are a few dozen bytes.
constexpr std::size_t max_body = std::size_t{1024} * 1024;
constexpr std::string_view user_agent = "wkproxy-check (like the ACM validator)";

// Bytes from the network, made safe for a terminal and for JSON: control characters and
// non-ASCII bytes become '?' (a cut UTF-8 sequence would make the output invalid).
std::string printable(std::string_view s, std::size_t max) {
  std::string out;
  for (char ch : s) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(ch);
    out += (c < 0x20 || c >= 0x7f) ? '?' : ch;
  }
  return out;
}

std::string seconds_text(config::duration d) {
  const auto ms = d.count();
  if (ms % 1000 == 0) {
    return std::to_string(ms / 1000) + "s";
  }
  return std::to_string(ms) + "ms";
}

// The parts of a parsed URL the checker uses; the URL must be absolute http(s) with a host.
std::variant<fetch_url, std::string> from_url(const urls::url_view_base& u) {
  fetch_url out;
  if (u.scheme_id() == urls::scheme::https) {
    out.https = true;
    out.port = 443;
  } else if (u.scheme_id() != urls::scheme::http) {
    return "scheme must be http or https, got \"" + printable(u.scheme(), 40) + "\"";
  }
  if (u.has_userinfo()) {
    return std::string("user info in URLs is not allowed");
  }
  switch (u.host_type()) {
  case urls::host_type::name: {
    const auto h = u.encoded_host();
    if (h.empty()) {
      return std::string("the URL has no host");
    }
    if (h.find('%') != urls::string_view::npos) {
      return "unsupported percent-encoded host \"" + printable(h, 80) + "\"";
    }
    out.host = core::to_lower(std::string_view(h.data(), h.size()));
    break;
  }
  case urls::host_type::ipv4:
    out.host = u.host_ipv4_address().to_string();
    break;
  case urls::host_type::ipv6:
    out.host = u.host_ipv6_address().to_string();
    break;
  default:
    return std::string("the URL has no usable host");
  }
  if (u.has_port() && !u.port().empty()) {
    const auto p = u.port();
    const auto port = core::parse_port(std::string_view(p.data(), p.size()));
    if (!port || *port == 0) {
      return "invalid port \"" + printable(p, 20) + "\"";
    }
    out.port = *port;
  }
  const auto path = u.encoded_path();
  out.target = path.empty() ? "/" : std::string(path.data(), path.size());
  if (u.has_query()) {
    const auto q = u.encoded_query();
    out.target += "?" + std::string(q.data(), q.size());
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Arguments

parsed_args parse_check_args(std::span<const std::string_view> args) {
  parsed_args out;
  check_options o;
  bool via = false;
  bool dns = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view a = args[i];
    const auto value = [&]() -> std::optional<std::string_view> {
      if (i + 1 >= args.size()) {
        return std::nullopt;
      }
      return args[++i];
    };
    if (a == "-h" || a == "--help") {
      out.help = true;
      return out;
    }
    if (a == "--json") {
      o.json = true;
    } else if (a == "--same-host") {
      o.redirects.same_host_only = true;
    } else if (a == "--dns") {
      dns = true;
      o.mode = first_hop::dns;
    } else if (a == "-c" || a == "--config" || a == "--via" || a == "--ca-file" ||
               a == "--timeout" || a == "--allow") {
      const auto v = value();
      if (!v) {
        out.error = std::string(a) + " needs a value";
        return out;
      }
      if (a == "--via") {
        auto hp = parse_host_port(*v);
        if (auto* reason = std::get_if<std::string>(&hp)) {
          out.error = "--via: " + *reason;
          return out;
        }
        o.via = std::get<host_port>(std::move(hp));
        o.mode = first_hop::via;
        via = true;
      } else if (a == "--timeout") {
        const auto d = config::parse_duration(*v);
        if (!d || d->count() <= 0) {
          out.error = "--timeout: invalid duration \"" + std::string(*v) +
                      "\" (expected e.g. 500ms, 10s, 1m)";
          return out;
        }
        o.timeout = *d;
      } else if (a == "--ca-file") {
        o.ca_file = std::string(*v);
      } else if (a == "--allow") {
        auto host = parse_allowed_host(*v);
        if (host.index() == 1) {
          out.error = "--allow: " + std::get<1>(host);
          return out;
        }
        o.redirects.allowed.push_back(std::get<0>(std::move(host)));
      } else {
        o.config_path = std::string(*v);
      }
    } else {
      out.error = "unknown argument " + std::string(a);
      return out;
    }
  }
  if (via && dns) {
    out.error = "--via and --dns cannot be used together";
    return out;
  }
  if (o.redirects.same_host_only && !o.redirects.allowed.empty()) {
    out.error = "--same-host and --allow cannot be used together";
    return out;
  }
  if (o.config_path.empty()) {
    out.error = "no configuration file (-c FILE)";
    return out;
  }
  out.options = std::move(o);
  return out;
}

std::variant<host_port, std::string> listener_target(const std::vector<config::listener>& listen) {
  // The CA speaks plain HTTP, without a PROXY header.
  const auto plain = std::find_if(listen.begin(), listen.end(), [](const config::listener& l) {
    return l.mode == config::listener_mode::http && l.accept_proxy_from.empty();
  });
  if (plain == listen.end()) {
    return std::string(
        "the config has no plain-HTTP listener without accept_proxy_from; pass --via HOST:PORT");
  }
  const config::listener& l = *plain;
  if (l.port == 0) {
    return "the first plain-HTTP listener (" + l.address +
           ") uses port 0, so its port is only known to the running proxy; pass --via HOST:PORT "
           "(the port from --ports-file)";
  }
  host_port out{l.host, l.port};
  if (out.host == "0.0.0.0") {
    out.host = "127.0.0.1";  // listening on every address includes loopback
  } else if (out.host == "::") {
    out.host = "::1";
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// URLs and the hop policy

std::string fetch_url::authority() const {
  const std::uint16_t default_port = https ? 443 : 80;
  return port == default_port ? core::host_text(host) : core::host_port_text(host, port);
}

std::string fetch_url::text() const {
  return (https ? "https://" : "http://") + authority() + target;
}

std::variant<fetch_url, std::string> parse_fetch_url(std::string_view url) {
  const auto parsed = urls::parse_uri(urls::string_view(url.data(), url.size()));
  if (!parsed) {
    return "invalid URL \"" + printable(url, 200) + "\"";
  }
  return from_url(*parsed);
}

std::variant<fetch_url, std::string> resolve_location(const fetch_url& base,
                                                      std::string_view location) {
  const std::string quoted = "\"" + printable(location, 200) + "\"";
  const auto ref = urls::parse_uri_reference(urls::string_view(location.data(), location.size()));
  if (!ref) {
    return "invalid Location " + quoted;
  }
  const std::string base_text = base.text();  // the url_view below points into it
  const auto base_url = urls::parse_uri(base_text);
  if (!base_url) {
    return "invalid URL " + base_text;
  }
  urls::url dest;
  if (const auto r = urls::resolve(*base_url, *ref, dest); !r) {
    return "cannot resolve Location " + quoted + " against " + base_text;
  }
  auto out = from_url(dest);
  if (auto* reason = std::get_if<std::string>(&out)) {
    return "redirect to " + quoted + ": " + *reason;
  }
  return out;
}

namespace {

// "Example.COM." -> "example.com": hosts as compared by the redirect policy.
std::string comparable_host(std::string_view host) {
  if (host.ends_with('.')) {
    host.remove_suffix(1);
  }
  return core::to_lower(host);
}

bool same_host(std::string_view a, std::string_view b) {
  const std::string x = comparable_host(a);
  const std::string y = comparable_host(b);
  boost::system::error_code ecx;
  boost::system::error_code ecy;
  const auto ax = asio::ip::make_address(x, ecx);
  const auto ay = asio::ip::make_address(y, ecy);
  if (!ecx && !ecy) {
    return ax == ay;  // "::1" and "0:0::1" are one address
  }
  return x == y;
}

}  // namespace

bool is_acm_validation_host(std::string_view host) {
  constexpr std::string_view zone = ".acm-validations.aws";
  const std::string h = comparable_host(host);
  return h.size() > zone.size() && h.ends_with(zone) && h[h.size() - zone.size() - 1] != '.';
}

std::variant<std::string, std::string> parse_allowed_host(std::string_view text) {
  using result = std::variant<std::string, std::string>;
  const std::string expected =
      "expected a host name or IP address (no scheme, port or path), got \"" + printable(text, 80) +
      "\"";
  std::string_view host = text;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    boost::system::error_code ec;
    const auto a = asio::ip::make_address_v6(std::string(host), ec);
    if (ec) {
      return result(std::in_place_index<1>, expected);
    }
    return result(std::in_place_index<0>, a.to_string());
  }
  boost::system::error_code ec;
  const auto a = asio::ip::make_address(std::string(host), ec);
  if (!ec) {
    return result(std::in_place_index<0>, a.to_string());
  }
  const bool name = !host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
    return core::is_alpha(c) || core::is_digit(c) || c == '.' || c == '-' || c == '_';
  });
  if (!name || host.front() == '.') {
    return result(std::in_place_index<1>, expected);
  }
  return result(std::in_place_index<0>, core::to_lower(host));
}

std::optional<std::string> redirect_refusal(const redirect_policy& policy, std::string_view home,
                                            const fetch_url& next) {
  if (same_host(next.host, home)) {
    return std::nullopt;
  }
  const std::string refused = "refused to follow the redirect to " + next.text() + ": ";
  if (policy.same_host_only) {
    return refused + "--same-host follows redirects only to " + std::string(home);
  }
  if (next.https && is_acm_validation_host(next.host)) {
    return std::nullopt;
  }
  for (const std::string& allowed : policy.allowed) {
    if (same_host(next.host, allowed)) {
      return std::nullopt;
    }
  }
  const std::string others =
      policy.allowed.empty() ? " itself and ACM validation hosts (https://*.acm-validations.aws)"
                             : " itself, ACM validation hosts (https://*.acm-validations.aws) "
                               "and the --allow hosts";
  return refused + "only " + std::string(home) + others + " are followed; pass --allow " +
         next.host + " to follow it";
}

bool is_followed_redirect(unsigned status) {
  return status == 301 || status == 302 || status == 307 || status == 308;
}

hop_decision next_hop(const std::vector<hop>& chain, const fetch_url& current, unsigned status,
                      const std::optional<std::string>& location,
                      const redirect_policy& redirects) {
  hop_decision d;
  if (!is_followed_redirect(status) || !location) {
    return d;
  }
  d.what = hop_decision::kind::fail;
  auto next = resolve_location(current, *location);
  if (auto* reason = std::get_if<std::string>(&next)) {
    d.reason = std::move(*reason);
    return d;
  }
  d.next = std::get<fetch_url>(std::move(next));
  // The domain is the host of RedirectFrom, the chain's first URL (always one of ours).
  std::string home = current.host;
  if (!chain.empty()) {
    if (const auto first = parse_fetch_url(chain.front().url); first.index() == 0) {
      home = std::get<0>(first).host;
    }
  }
  if (auto refusal = redirect_refusal(redirects, home, d.next)) {
    d.reason = std::move(*refusal);
    return d;
  }
  const std::string next_text = d.next.text();
  for (const hop& h : chain) {
    if (h.url == next_text) {
      d.reason = "redirect loop: " + current.text() + " redirects to " + next_text +
                 ", which was already requested";
      return d;
    }
  }
  // chain.size() - 1 redirects were followed to get here; this one would be number chain.size().
  if (chain.size() > max_redirects) {
    d.reason = "too many redirects: more than " + std::to_string(max_redirects) +
               " (next: " + next_text + ")";
    return d;
  }
  d.what = hop_decision::kind::follow;
  return d;
}

std::string chain_text(const std::vector<hop>& chain) {
  std::string out;
  for (const hop& h : chain) {
    if (!out.empty()) {
      out += " -> ";
    }
    out += h.status ? std::to_string(*h.status) : std::string("no answer");
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Reasons

std::string body_first_line(std::string_view body, std::size_t max) {
  const std::string low =
      core::to_lower(body.substr(0, std::min<std::size_t>(body.size(), std::size_t{64} * 1024)));
  const auto open = low.find("<title>");
  if (open != std::string::npos) {
    const auto close = low.find("</title>", open);
    if (close != std::string::npos) {
      std::string title;
      for (char c : body.substr(open + 7, close - open - 7)) {
        const bool space = c == ' ' || c == '\t' || c == '\r' || c == '\n';
        if (space && (title.empty() || title.back() == ' ')) {
          continue;
        }
        title += space ? ' ' : c;
      }
      while (!title.empty() && title.back() == ' ') {
        title.pop_back();
      }
      if (!title.empty()) {
        return printable(title, max);
      }
    }
  }
  std::size_t pos = 0;
  while (pos < body.size()) {
    std::size_t end = body.find('\n', pos);
    if (end == std::string_view::npos) {
      end = body.size();
    }
    std::string_view line = body.substr(pos, end - pos);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
      line.remove_suffix(1);
    }
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) {
      line.remove_prefix(1);
    }
    if (!line.empty()) {
      return printable(line, max);
    }
    pos = end + 1;
  }
  return {};
}

std::optional<std::string> body_mismatch(std::string_view got, std::string_view expected) {
  if (got == expected) {
    return std::nullopt;
  }
  const auto diff = std::mismatch(got.begin(), got.end(), expected.begin(), expected.end());
  const auto offset = static_cast<std::size_t>(diff.first - got.begin());
  std::string out = "body differs from RedirectTo: got " + std::to_string(got.size()) +
                    " bytes, expected " + std::to_string(expected.size()) +
                    ", first difference at offset " + std::to_string(offset);
  if (got.empty()) {
    out += " (got an empty body)";
  } else {
    out += " (got starts \"" + printable(got, 40) + "\")";
  }
  return out;
}

std::string status_failure(unsigned status, std::string_view phrase, std::string_view body) {
  std::string text(bhttp::obsolete_reason(bhttp::int_to_status(status)));
  if (text == "<unknown-status>" || text.empty()) {
    text = printable(phrase, 60);
  }
  std::string out = std::to_string(status);
  if (!text.empty()) {
    out += " " + text;
  }
  const std::string line = body_first_line(body);
  if (status == 421) {
    // CloudFront answers 421 when the Host is not served under the certificate of the SNI it
    // was reached with (another account's or connection group's name).
    return out + ": CloudFront refused the Host for this SNI; use plain http:// for cloudfront";
  }
  if (is_followed_redirect(status)) {
    return out + " without a Location header";
  }
  if (status >= 300 && status < 400) {
    return out + ": a CA follows only 301, 302, 307 and 308";
  }
  if (!line.empty()) {
    out += ": " + line;
  }
  if (line.starts_with("wkproxy:")) {
    return out;  // the proxy's own reply says precisely what happened
  }
  if (status == 400) {
    out += " (Host rejected? the server did not accept the request for this domain; CloudFront "
           "answers 400/403 when no distribution tenant serves the Host)";
  } else if (status == 403) {
    out += " (Host rejected? CloudFront answers 403 when no distribution tenant serves this "
           "domain yet)";
  } else if (status == 404) {
    out += " (no validation file there: is the token still pending, and did the request reach "
           "CloudFront rather than the origin?)";
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Output

std::string format_table(const std::vector<token_result>& results) {
  struct row {
    std::string cells[5];
  };
  std::vector<row> rows;
  rows.push_back({{"RESULT", "DOMAIN", "FILE", "CHAIN", "DETAIL"}});
  std::size_t passed = 0;
  for (const token_result& r : results) {
    passed += r.pass ? 1 : 0;
    std::string detail = r.reason;
    if (!r.addresses.empty()) {
      std::string dns = "DNS: ";
      for (std::size_t i = 0; i < r.addresses.size(); ++i) {
        dns += i ? ", " : "";
        dns += r.addresses[i];
      }
      if (!detail.empty()) {
        detail += "; ";
      }
      detail += dns;
    }
    rows.push_back({{r.pass ? "PASS" : "FAIL", r.domain, r.file, chain_text(r.chain), detail}});
  }
  std::size_t width[4] = {};
  for (const row& r : rows) {
    for (std::size_t c = 0; c < 4; ++c) {
      width[c] = std::max(width[c], r.cells[c].size());
    }
  }
  std::string out;
  for (const row& r : rows) {
    std::string line;
    for (std::size_t c = 0; c < 4; ++c) {
      line += r.cells[c];
      line.append(width[c] - r.cells[c].size() + 2, ' ');
    }
    line += r.cells[4];
    while (!line.empty() && line.back() == ' ') {
      line.pop_back();
    }
    out += line + "\n";
  }
  if (passed != results.size()) {
    out += "What each reason means and what to do: docs/onboarding.md, \"3. Troubleshooting\"\n";
  }
  out +=
      std::to_string(passed) + " passed, " + std::to_string(results.size() - passed) + " failed\n";
  return out;
}

std::string format_json(const std::vector<token_result>& results) {
  json::array list;
  std::int64_t passed = 0;
  for (const token_result& r : results) {
    passed += r.pass ? 1 : 0;
    json::array chain;
    for (const hop& h : r.chain) {
      json::object o;
      o["url"] = h.url;
      if (h.status) {
        o["status"] = *h.status;
      } else {
        o["status"] = nullptr;
      }
      chain.push_back(std::move(o));
    }
    json::object o;
    o["domain"] = r.domain;
    o["file"] = r.file;
    o["redirect_from"] = r.redirect_from;
    o["redirect_to"] = r.redirect_to;
    o["pass"] = r.pass;
    o["chain"] = std::move(chain);
    o["reason"] = r.reason;
    if (!r.addresses.empty()) {
      json::array a;
      for (const auto& addr : r.addresses) {
        a.emplace_back(addr);
      }
      o["addresses"] = std::move(a);
    }
    list.push_back(std::move(o));
  }
  json::object doc;
  doc["results"] = std::move(list);
  doc["passed"] = passed;
  doc["failed"] = static_cast<std::int64_t>(results.size()) - passed;
  return json::serialize(doc) + "\n";
}

// ---------------------------------------------------------------------------------------------
// The network steps. A CLI run is one sequence of requests, so each step runs to completion
// before the next: every request is one small coroutine on its own io_context, bounded by the
// --timeout on each of connect, TLS handshake, write and read.

namespace {

using endpoints = std::vector<tcp::endpoint>;

// The addresses of host:port. IP literals need no lookup. getaddrinfo cannot be cancelled, so a
// name lookup runs on its own thread and is abandoned (left to finish) when the deadline passes.
std::variant<endpoints, std::string> resolve(const std::string& host, std::uint16_t port,
                                             config::duration timeout) {
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (!ec) {
    return endpoints{tcp::endpoint(address, port)};
  }
  using lookup = std::variant<endpoints, std::string>;
  auto promise = std::make_shared<std::promise<lookup>>();
  auto future = promise->get_future();
  std::thread([promise, host, port] {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* list = nullptr;
    const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &list);
    if (rc != 0) {
      promise->set_value("DNS lookup for " + host + " failed: " + ::gai_strerror(rc));
      return;
    }
    endpoints out;
    for (const addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
      if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) {
        continue;
      }
      tcp::endpoint ep;
      std::memcpy(ep.data(), ai->ai_addr, ai->ai_addrlen);
      ep.resize(ai->ai_addrlen);
      if (std::find(out.begin(), out.end(), ep) == out.end()) {
        out.push_back(ep);
      }
    }
    ::freeaddrinfo(list);
    if (out.empty()) {
      promise->set_value("DNS lookup for " + host + " returned no IPv4 or IPv6 address");
    } else {
      promise->set_value(std::move(out));
    }
  }).detach();
  if (future.wait_for(timeout) != std::future_status::ready) {
    return "DNS lookup for " + host + " timed out after " + seconds_text(timeout);
  }
  return future.get();
}

// One request and its response.
struct exchange {
  std::optional<unsigned> status;  // none: no complete response (see error)
  std::string phrase;
  std::optional<std::string> location;
  std::string body;
  std::string error;
};

// What one request needs besides the URL. `where` names the peer in messages ("127.0.0.1:8080");
// `refused_hint` is appended when nothing listens there.
struct request_plan {
  fetch_url url;
  endpoints addresses;
  std::string where;
  std::string refused_hint;
  std::shared_ptr<ssl::context> tls;
  config::duration timeout{10'000};
};

// Sends the GET and reads the response (1xx interim answers skipped) on a connected stream.
template <class Stream>
asio::awaitable<exchange> send_and_read(Stream& stream, beast::tcp_stream& lowest,
                                        const request_plan& plan) {
  exchange out;
  const std::string peer = plan.url.https ? plan.url.authority() : plan.where;
  bhttp::request<bhttp::empty_body> req{bhttp::verb::get, plan.url.target, 11};
  req.set(bhttp::field::host, plan.url.authority());
  req.set(bhttp::field::user_agent, user_agent);
  req.set(bhttp::field::accept, "*/*");
  req.set(bhttp::field::connection, "close");
  lowest.expires_after(plan.timeout);
  auto [wec, written] = co_await bhttp::async_write(stream, req, core::nothrow);
  (void)written;
  if (wec) {
    out.error =
        core::is_timeout(wec)
            ? "sending the request to " + peer + " timed out after " + seconds_text(plan.timeout)
            : "sending the request to " + peer + " failed: " + wec.message();
    co_return out;
  }
  beast::flat_buffer buffer;
  for (int interim = 0; interim < 8; ++interim) {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(max_body);
    lowest.expires_after(plan.timeout);
    auto [ec, n] = co_await bhttp::async_read(stream, buffer, parser, core::nothrow);
    (void)n;
    if (ec && !(ec == ssl::error::stream_truncated && parser.is_done())) {
      if (core::is_timeout(ec)) {
        out.error = "no answer from " + peer + " within " + seconds_text(plan.timeout);
      } else if (ec == bhttp::error::body_limit) {
        out.error = peer + " sent a body larger than " + std::to_string(max_body) + " bytes";
      } else if (!parser.got_some() &&
                 (ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
                  ec == asio::error::connection_reset || ec == ssl::error::stream_truncated)) {
        out.error = peer + " closed the connection without answering";
      } else if (ec.category() == bhttp::make_error_code(bhttp::error::bad_version).category()) {
        out.error = peer + " sent an invalid HTTP response: " + ec.message();
      } else {
        out.error = "reading the response from " + peer + " failed: " + ec.message();
      }
      co_return out;
    }
    auto& res = parser.get();
    const unsigned status = res.result_int();
    if (status >= 100 && status < 200) {
      continue;
    }
    out.status = status;
    out.phrase = std::string(res.reason());
    if (const auto it = res.find(bhttp::field::location); it != res.end()) {
      out.location = std::string(it->value());
    }
    out.body = std::move(res.body());
    co_return out;
  }
  out.error = peer + " sent too many 1xx interim responses";
  co_return out;
}

asio::awaitable<exchange> run_request(request_plan plan) {
  exchange out;
  auto exec = co_await asio::this_coro::executor;
  beast::tcp_stream stream(exec);
  bool connected = false;
  std::size_t refused = 0;
  std::size_t timeouts = 0;
  std::string last_error;
  for (const tcp::endpoint& ep : plan.addresses) {
    boost::system::error_code ignored;
    stream.socket().close(ignored);  // the next address may be of the other family
    stream.expires_after(plan.timeout);
    auto [ec] = co_await stream.async_connect(ep, core::nothrow);
    if (!ec) {
      connected = true;
      break;
    }
    refused += ec == asio::error::connection_refused ? 1 : 0;
    timeouts += core::is_timeout(ec) ? 1 : 0;
    last_error = core::endpoint_text(ep) + ": " + ec.message();
  }
  if (!connected) {
    std::string tried;
    if (plan.addresses.size() > 1 || plan.where != core::endpoint_text(plan.addresses.front())) {
      for (const auto& ep : plan.addresses) {
        tried += (tried.empty() ? " (" : ", ") + core::endpoint_text(ep);
      }
      tried += ")";
    }
    if (refused == plan.addresses.size()) {
      out.error = "nothing is listening on " + plan.where + tried + ": connection refused";
      out.error += plan.refused_hint;
    } else if (timeouts == plan.addresses.size()) {
      out.error = "timeout: no connection to " + plan.where + tried + " within " +
                  seconds_text(plan.timeout);
    } else {
      out.error = "cannot connect to " + plan.where + ": " + last_error;
    }
    co_return out;
  }
  stream.expires_never();
  if (!plan.url.https) {
    out = co_await send_and_read(stream, stream, plan);
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.socket().close(ignored);
    co_return out;
  }
  beast::ssl_stream<beast::tcp_stream> tls(std::move(stream), *plan.tls);
  const std::string peer = plan.url.authority();
  // SNI and the certificate's name, exactly as the proxy's own upstream connections check them.
  if (net::expect_peer(tls.native_handle(), plan.url.host, plan.url.host) != net::peer_setup::ok) {
    out.error = "cannot set up TLS for the name " + plan.url.host;
    co_return out;
  }
  tls.next_layer().expires_after(plan.timeout);
  auto [hec] = co_await tls.async_handshake(ssl::stream_base::client, core::nothrow);
  if (hec) {
    const std::string verify = net::verify_failure(tls.native_handle());
    if (core::is_timeout(hec)) {
      out.error = "TLS handshake with " + peer + " timed out after " + seconds_text(plan.timeout);
    } else if (!verify.empty()) {
      out.error = "TLS with " + peer + ": " + verify + " (name " + plan.url.host + ")";
    } else {
      out.error = "TLS handshake with " + peer + " failed: " + hec.message();
    }
    co_return out;
  }
  out = co_await send_and_read(tls, tls.next_layer(), plan);
  // No TLS shutdown: the request said Connection: close and the answer is complete, so waiting
  // for the peer's close_notify would only add a way to hang.
  boost::system::error_code ignored;
  tls.next_layer().socket().close(ignored);
  co_return out;
}

// Runs one request to completion on a fresh io_context (the CLI does nothing else meanwhile).
exchange perform(request_plan plan) {
  asio::io_context ioc;
  exchange out;
  std::exception_ptr failure;
  asio::co_spawn(ioc, run_request(std::move(plan)), [&](std::exception_ptr e, exchange x) {
    failure = std::move(e);
    out = std::move(x);
  });
  ioc.run();
  if (failure) {
    std::rethrow_exception(failure);
  }
  return out;
}

struct run_context {
  check_options opt;
  host_port first;  // where the first request goes (listener / via modes)
  std::shared_ptr<ssl::context> tls;
};

// Resolves and fetches one URL. `connect_to` overrides where the connection goes (the proxy);
// `addresses` receives what a name resolved to.
exchange fetch(const run_context& ctx, const fetch_url& url, const host_port* connect_to,
               std::vector<std::string>* addresses) {
  request_plan plan;
  plan.url = url;
  plan.tls = ctx.tls;
  plan.timeout = ctx.opt.timeout;
  const std::string& host = connect_to ? connect_to->host : url.host;
  const std::uint16_t port = connect_to ? connect_to->port : url.port;
  plan.where = connect_to ? connect_to->text() : core::host_port_text(url.host, port);
  if (connect_to && ctx.opt.mode == first_hop::listener) {
    plan.refused_hint = " (is wkproxy running with this config? or pass --via HOST:PORT)";
  }
  auto resolved = resolve(host, port, ctx.opt.timeout);
  if (auto* reason = std::get_if<std::string>(&resolved)) {
    exchange out;
    out.error = std::move(*reason);
    return out;
  }
  plan.addresses = std::get<endpoints>(std::move(resolved));
  if (addresses) {
    for (const auto& ep : plan.addresses) {
      addresses->push_back(ep.address().to_string());
    }
  }
  return perform(std::move(plan));
}

token_result check_token(const run_context& ctx, const config::token& t) {
  token_result r;
  r.domain = t.domain;
  r.file = t.file;
  r.redirect_from = t.redirect_from;
  r.redirect_to = t.redirect_to;
  auto from = parse_fetch_url(t.redirect_from);
  if (auto* reason = std::get_if<std::string>(&from)) {
    r.reason = "redirect_from: " + *reason;
    return r;
  }
  fetch_url current = std::get<fetch_url>(std::move(from));
  std::string final_body;
  for (;;) {
    const bool first = r.chain.empty();
    const bool through_proxy = first && ctx.opt.mode != first_hop::dns;
    const bool record_dns = first && ctx.opt.mode == first_hop::dns;
    exchange ex = fetch(ctx, current, through_proxy ? &ctx.first : nullptr,
                        record_dns ? &r.addresses : nullptr);
    r.chain.push_back({current.text(), ex.status});
    if (!ex.status) {
      r.reason = std::move(ex.error);
      return r;
    }
    auto d = next_hop(r.chain, current, *ex.status, ex.location, ctx.opt.redirects);
    if (d.what == hop_decision::kind::fail) {
      r.reason = std::move(d.reason);
      return r;
    }
    if (d.what == hop_decision::kind::follow) {
      current = std::move(d.next);
      continue;
    }
    if (*ex.status != 200) {
      r.reason = status_failure(*ex.status, ex.phrase, ex.body);
      if (r.chain.size() > 1) {
        r.reason += " (at " + current.text() + ")";
      }
      return r;
    }
    final_body = std::move(ex.body);
    break;
  }
  fetch_url to;
  to.https = true;
  to.host = t.to_host;
  to.port = t.to_port;
  to.target = t.to_target;
  exchange expected = fetch(ctx, to, nullptr, nullptr);
  if (!expected.status) {
    r.reason = "RedirectTo fetch failed: " + expected.error;
    return r;
  }
  if (*expected.status != 200) {
    r.reason = "RedirectTo fetch failed: " +
               status_failure(*expected.status, expected.phrase, expected.body);
    return r;
  }
  if (auto mismatch = body_mismatch(final_body, expected.body)) {
    r.reason = std::move(*mismatch);
    if (r.chain.size() == 1 && ctx.opt.mode != first_hop::dns) {
      r.reason += "; if that is the origin's answer, the proxy did not take the validation "
                  "route: is " +
                  t.domain + " in the running proxy's domains: list?";
    } else if (r.chain.size() == 1) {
      r.reason += "; does " + t.domain + " point at the proxy?";
    }
    return r;
  }
  r.pass = true;
  return r;
}

// Where redirects go, for the headline: "to the domain and ACM validation hosts".
std::string followed_text(const redirect_policy& p) {
  if (p.same_host_only) {
    return "to the domain only (--same-host)";
  }
  if (p.allowed.empty()) {
    return "to the domain and ACM validation hosts";
  }
  std::string hosts;
  for (const std::string& h : p.allowed) {
    hosts += (hosts.empty() ? "" : " ") + h;
  }
  return "to the domain, ACM validation hosts and the --allow hosts (" + hosts + ")";
}

std::variant<std::shared_ptr<ssl::context>, std::string> make_tls(const std::string& ca_file) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression);
  boost::system::error_code ec;
  ctx->set_verify_mode(ssl::verify_peer, ec);
  ctx->set_default_verify_paths(ec);
  if (ec && ca_file.empty()) {
    return "cannot load the system CA store: " + ec.message();
  }
  if (!ca_file.empty()) {
    ctx->load_verify_file(ca_file, ec);
    if (ec) {
      return "cannot load --ca-file " + ca_file + ": " + ec.message();
    }
  }
  return ctx;
}

}  // namespace

int run_check(int argc, char** argv) {
  std::vector<std::string_view> args(argv, argv + argc);
  const parsed_args parsed = parse_check_args(args);
  if (parsed.help) {
    std::cout << check_usage;
    return 0;
  }
  if (!parsed.options) {
    std::cerr << "wkproxy check: " << parsed.error << "\n" << check_usage;
    return 2;
  }
  run_context ctx;
  ctx.opt = *parsed.options;
  auto loaded = config::load_file(ctx.opt.config_path, config::process_env());
  if (!loaded.errors.empty()) {
    for (const auto& e : loaded.errors) {
      std::cerr << e.to_string() << '\n';
    }
    return 1;
  }
  const config::config& cfg = *loaded.cfg;
  if (cfg.tokens.empty()) {
    std::cerr << "wkproxy check: nothing to check: no tokens in config; run wkproxy tokens "
                 "import\n";
    return 1;
  }
  std::string through;
  if (ctx.opt.mode == first_hop::via) {
    ctx.first = ctx.opt.via;
    through = "through " + ctx.first.text();
  } else if (ctx.opt.mode == first_hop::listener) {
    auto target = listener_target(cfg.listen);
    if (auto* reason = std::get_if<std::string>(&target)) {
      std::cerr << "wkproxy check: " << *reason << '\n';
      return 2;
    }
    ctx.first = std::get<host_port>(target);
    through = "through the listener " + ctx.first.text();
  } else {
    through = "to each domain's DNS addresses, port 80";
  }
  auto tls = make_tls(ctx.opt.ca_file);
  if (auto* reason = std::get_if<std::string>(&tls)) {
    std::cerr << "wkproxy check: " << *reason << '\n';
    return 1;
  }
  ctx.tls = std::get<std::shared_ptr<ssl::context>>(tls);

  std::vector<token_result> results;
  results.reserve(cfg.tokens.size());
  try {
    for (const config::token& t : cfg.tokens) {
      results.push_back(check_token(ctx, t));
    }
  } catch (const std::exception& e) {
    // Network failures are values; this is only resource exhaustion or a bug.
    std::cerr << "wkproxy check: internal error: " << e.what() << '\n';
    return 1;
  }
  if (ctx.opt.json) {
    std::cout << format_json(results);
  } else {
    std::cout << "checking " << results.size() << (results.size() == 1 ? " token" : " tokens")
              << " like the CA: RedirectFrom " << through << ", redirects followed "
              << followed_text(ctx.opt.redirects) << ", body compared with RedirectTo\n"
              << format_table(results);
  }
  std::cout.flush();
  const bool all_pass =
      std::all_of(results.begin(), results.end(), [](const token_result& r) { return r.pass; });
  return all_pass ? 0 : 1;
}

}  // namespace wk::cli
