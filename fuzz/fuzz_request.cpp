// The request path on untrusted bytes: the head scanned and parsed once (scanner +
// request_reader) -> request checks -> normalize + route -> the header a backend receives,
// serialized, then the body as the session reads it. Invariants:
// - the scanner gives the same answer fed in two pieces as in one;
// - the one-pass reader agrees with Beast's own request parser on the same bytes (the reader
//   applies Beast's framing rules without parsing the head again): the same verdict, method,
//   target, version, fields (Beast groups same-named ones; the reader keeps the order
//   received), framing and keep-alive, and the same body bytes and trailer fields from the
//   body parser it starts with a framing-only head;
// - whatever is sent to a backend passes the proxy's own strict checks again, with the routed
//   target, exactly one Host, framing chosen by the proxy, and (validation route) no
//   credentials.

#include "fuzz_check.hpp"
#include "http/header_rules.hpp"
#include "http/request_reader.hpp"
#include "http/upstream_request.hpp"
#include "routing/route.hpp"
#include "wire/request_head.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/http/write.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

namespace bhttp = boost::beast::http;
using namespace wk;  // NOLINT: a fuzz entry point, not library code

namespace {

wire::head_limits head_limits_of(const config::limits& l) {
  return {l.header_bytes, l.target_bytes, l.header_count};
}

const routing::route_table& table() {
  static const routing::route_table t = [] {
    routing::route_table r;
    r.domains = routing::host_allow_list({"example.com", "*.example.org"});
    return r;
  }();
  return t;
}

std::string_view sv(boost::beast::string_view s) {
  return {s.data(), s.size()};
}

// Keep-alive as Beast's message says it, over every Connection field (Beast's looks at the
// first one only; the reader reads them all, as RFC 9110 section 5.3 combines them).
bool keep_alive_of(const bhttp::fields& f, unsigned version) {
  bool close = false;
  bool keep = false;
  for (const auto& x : f) {
    if (x.name() == bhttp::field::connection) {
      for (auto t : bhttp::token_list{x.value()}) {
        close = close || boost::beast::iequals(t, "close");
        keep = keep || boost::beast::iequals(t, "keep-alive");
      }
    }
  }
  return version >= 11 ? !close : keep;
}

struct body_result {
  std::string bytes;
  bool done = false;
  boost::system::error_code ec;
};

// The body as the session's prefetch reads it: into a small window, again and again.
template <class Parser, class Window>
body_result read_body(Parser& p, Window window, std::string_view rest) {
  body_result out;
  std::array<char, 512> buf{};
  while (!p.is_done() && !rest.empty()) {
    window(buf.data(), buf.size());
    boost::system::error_code ec;
    const auto n = p.put(boost::asio::buffer(rest.data(), rest.size()), ec);
    rest.remove_prefix(n);
    out.bytes.append(buf.data(), buf.size() - window(nullptr, 0));
    if (ec == bhttp::error::need_buffer || (ec == bhttp::error::need_more && n > 0)) {
      continue;
    }
    out.ec = ec == bhttp::error::need_more ? boost::system::error_code{} : ec;
    break;
  }
  out.done = p.is_done();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  config::limits limits;
  limits.header_bytes = 4096;
  limits.target_bytes = 1024;
  limits.header_count = 20;
  const std::uint64_t body_limit = 1000;

  http::request_storage storage;
  http::request_reader reader(storage);
  reader.header_limit(static_cast<std::uint32_t>(limits.header_bytes));
  reader.body_limit(body_limit);
  auto whole = reader.scanner(head_limits_of(limits));
  const auto r = whole.scan(in);
  wire::request_head_scanner pieces{head_limits_of(limits)};
  auto split = pieces.scan(in.substr(0, size / 2));
  if (split.status == wire::head_status::incomplete) {
    split = pieces.scan(in);
  }
  FUZZ_CHECK(split.status == r.status);
  if (r.status != wire::head_status::complete) {
    return 0;
  }
  FUZZ_CHECK(r.skip + r.length <= size);
  const auto ec = reader.adopt(in, r);

  // Beast's request parser on the same head: the reader must say what it says.
  bhttp::request_parser<bhttp::buffer_body> beast_parser;
  beast_parser.header_limit(static_cast<std::uint32_t>(limits.header_bytes));
  beast_parser.body_limit(body_limit);
  boost::system::error_code bec;
  const auto head = in.substr(r.skip, r.length);
  const auto used = beast_parser.put(boost::asio::buffer(head.data(), head.size()), bec);
  if (ec != bec) {
    std::fprintf(stderr, "reader: %s, Beast: %s\n", ec.message().c_str(), bec.message().c_str());
  }
  FUZZ_CHECK(ec == bec);
  if (ec) {
    return 0;  // framing refused (400, or 413 over the body limit)
  }
  FUZZ_CHECK(used == head.size() && beast_parser.is_header_done());
  const auto& breq = beast_parser.get();
  FUZZ_CHECK(reader.method() == breq.method());
  FUZZ_CHECK(reader.method_string() == sv(breq.method_string()));
  FUZZ_CHECK(reader.target() == sv(breq.target()));
  FUZZ_CHECK(reader.version() == breq.version());
  FUZZ_CHECK(reader.chunked() == beast_parser.chunked());
  FUZZ_CHECK(reader.content_length() == beast_parser.content_length());
  FUZZ_CHECK(reader.is_done() == beast_parser.is_done());
  FUZZ_CHECK(reader.keep_alive() == keep_alive_of(breq, breq.version()));
  {
    // Beast's container puts a field after the last one of the same name; the reader keeps the
    // order received. The same fields, in Beast's order:
    std::vector<const http::head_field*> grouped;
    for (const auto& f : reader) {
      auto at = grouped.end();
      for (auto g = grouped.begin(); g != grouped.end(); ++g) {
        if (boost::beast::iequals((*g)->name_string(), f.name_string())) {
          at = g + 1;
        }
      }
      grouped.insert(at, &f);
    }
    auto it = grouped.begin();
    for (const auto& f : breq) {
      FUZZ_CHECK(it != grouped.end());
      FUZZ_CHECK((*it)->name() == f.name());
      FUZZ_CHECK((*it)->name_string() == sv(f.name_string()));
      FUZZ_CHECK((*it)->value() == sv(f.value()));
      ++it;
    }
    FUZZ_CHECK(it == grouped.end());
  }

  const auto& req = reader;
  std::string detail;
  if (http::check_request(req, limits, detail) != core::failure::none) {
    return 0;
  }

  const bool has_body = !reader.is_done();
  const auto d = routing::route(table(), http::facts_of(req, has_body));
  if (d.kind == routing::route_kind::reject) {
    FUZZ_CHECK(d.status >= 400 && d.status < 500);
    return 0;
  }
  http::forward_options opt;
  opt.validation_route = d.kind == routing::route_kind::validation;
  opt.client_ip = "192.0.2.1";
  opt.proto = "http";
  opt.authority = d.authority;
  opt.default_host = "origin.internal";
  http::body_framing framing;
  framing.chunked = reader.chunked();
  if (auto cl = reader.content_length(); cl && !framing.chunked) {
    framing.length = *cl;
  }
  const auto fields_in = std::distance(req.begin(), req.end());
  std::string sent;
  http::build_upstream_request(req, d, opt, framing, sent);

  // The body as the session's prefetch reads it, by the reader and by Beast: the same bytes,
  // the same end, the same verdict, and the same trailer fields.
  std::vector<const void*> head_nodes;  // Beast adds trailer fields to the header's list
  for (const auto& f : breq) {
    head_nodes.push_back(&f);
  }
  const auto rest = in.substr(r.skip + r.length);
  const auto mine = read_body(
      reader,
      [&](char* p, std::size_t n) {
        if (p != nullptr) {
          reader.body() = {p, n};
        }
        return reader.body().size;
      },
      rest);
  const auto theirs = read_body(
      beast_parser,
      [&](char* p, std::size_t n) {
        if (p != nullptr) {
          beast_parser.get().body().data = p;
          beast_parser.get().body().size = n;
        }
        return beast_parser.get().body().size;
      },
      rest);
  FUZZ_CHECK(mine.bytes == theirs.bytes);
  FUZZ_CHECK(mine.done == theirs.done);
  FUZZ_CHECK(mine.ec == theirs.ec);
  if (mine.done && reader.chunked()) {
    // Beast puts a trailer field next to a header field of the same name: compared as sets of
    // lines, while they stay under the byte limit (which keeps the first ones in wire order).
    std::vector<std::string> expected;
    std::size_t bytes = 0;
    std::size_t dropped = 0;
    for (const auto& f : breq) {
      if (std::find(head_nodes.begin(), head_nodes.end(), &f) != head_nodes.end()) {
        continue;
      }
      std::string line;
      if (http::append_trailer(line, f.name(), sv(f.name_string()), sv(f.value()),
                               reader[bhttp::field::connection])) {
        bytes += line.size();
        expected.push_back(std::move(line));
      } else {
        ++dropped;
      }
    }
    if (bytes <= http::trailer_bytes_limit) {
      std::vector<std::string> got;
      for (auto t = reader.trailers(); !t.empty();) {
        const auto end = t.find("\r\n");
        FUZZ_CHECK(end != std::string_view::npos);
        got.emplace_back(t.substr(0, end + 2));
        t.remove_prefix(end + 2);
      }
      std::sort(expected.begin(), expected.end());
      std::sort(got.begin(), got.end());
      FUZZ_CHECK(got == expected);
      FUZZ_CHECK(reader.trailers_dropped() == dropped);
    }
  }

  // What a backend receives is a well-formed head by the proxy's own rules.
  config::limits relaxed;
  relaxed.header_bytes = 64 * 1024;
  relaxed.header_count = 64;
  http::request_storage back_storage;
  http::request_reader back(back_storage);
  auto check = back.scanner(head_limits_of(relaxed));
  const auto again = check.scan(sent);
  if (again.status != wire::head_status::complete) {
    std::fprintf(stderr, "sent head rejected (%.*s):\n", static_cast<int>(again.reason.size()),
                 again.reason.data());
    std::fwrite(sent.data(), 1, sent.size(), stderr);
  }
  FUZZ_CHECK(again.status == wire::head_status::complete);
  FUZZ_CHECK(again.skip == 0 && again.length == sent.size());
  FUZZ_CHECK(!back.adopt(sent, again));
  FUZZ_CHECK(http::check_request(back, relaxed, detail) == core::failure::none);
  FUZZ_CHECK(back.method_string() == req.method_string());
  FUZZ_CHECK(back.target() == d.upstream_target);
  FUZZ_CHECK(back.count(bhttp::field::host) == 1);
  // Only what the client sent, plus Host, X-Forwarded-For/-Proto and the framing field.
  FUZZ_CHECK(std::distance(back.begin(), back.end()) <= fields_in + 4);
  FUZZ_CHECK(back.chunked() == framing.chunked);
  FUZZ_CHECK(!(back.chunked() && back.count(bhttp::field::content_length) > 0));
  // Beast reads it the same way.
  bhttp::request_parser<bhttp::empty_body> reparsed;
  boost::system::error_code rec;
  reparsed.put(boost::asio::buffer(sent.data(), sent.size()), rec);
  FUZZ_CHECK(!rec || rec == bhttp::error::need_more);
  FUZZ_CHECK(reparsed.is_header_done());
  FUZZ_CHECK(reparsed.chunked() == framing.chunked);
  if (d.kind == routing::route_kind::validation) {
    FUZZ_CHECK(back.count(bhttp::field::cookie) == 0);
    FUZZ_CHECK(back.count(bhttp::field::authorization) == 0);
    FUZZ_CHECK(routing::is_safe_token(d.token));
  }
  return 0;
}
