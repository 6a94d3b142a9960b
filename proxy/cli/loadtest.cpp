// Why this file is over 600 lines: it is `wkproxy loadtest` whole: the pure parts declared in
// loadtest.hpp (arguments, percentiles, aggregation, both output formats) and the event loop
// with its keep-alive and fresh-connection clients and the scheduled shell commands, which
// share the per-request record and nothing else in the project.

#include "cli/loadtest.hpp"

#include "cli_help.hpp"

#include "cli/host_port.hpp"
#include "config/duration.hpp"
#include "core/asio.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fcntl.h>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <tuple>
#include <unistd.h>

extern char** environ;

namespace wk::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;

namespace {

// The text lives in docs/wkproxy.1.md, with the man page.
constexpr std::string_view loadtest_usage = wk::cli::help_loadtest;

constexpr unsigned max_loops = 10'000;

std::optional<unsigned> parse_count(std::string_view text) {
  unsigned value = 0;
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || value > max_loops) {
    return std::nullopt;
  }
  return value;
}

// Header values and request targets go on the wire as given: visible ASCII only, so an
// argument cannot smuggle a CR LF into the request.
bool visible_ascii(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c > 0x20 && c < 0x7f;
  });
}

// An RFC 9110 token: the characters a header field name may have.
bool header_name(std::string_view s) {
  constexpr std::string_view specials = "!#$%&'*+-.^_`|~";
  return !s.empty() && std::all_of(s.begin(), s.end(), [&](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return std::isalnum(c) != 0 || specials.find(ch) != std::string_view::npos;
  });
}

// Fields the load generator writes itself, or that would change the framing.
bool reserved_header(std::string_view s) {
  for (std::string_view r : {"host", "connection", "content-length", "transfer-encoding"}) {
    if (s.size() == r.size() && std::equal(s.begin(), s.end(), r.begin(), [](char x, char y) {
          return std::tolower(static_cast<unsigned char>(x)) == y;
        })) {
      return true;
    }
  }
  return false;
}

std::string seconds_text(micros d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3fs", static_cast<double>(d.count()) / 1e6);
  return buf;
}

std::string ms_text(micros d) {
  char buf[32];
  const double ms = static_cast<double>(d.count()) / 1e3;
  std::snprintf(buf, sizeof buf, ms < 100 ? "%.3fms" : "%.1fms", ms);
  return buf;
}

std::string duration_text(config::duration d) {
  return d.count() % 1000 == 0 ? std::to_string(d.count() / 1000) + "s"
                               : std::to_string(d.count()) + "ms";
}

std::string pad_left(const std::string& s, std::size_t width) {
  return s.size() >= width ? s : std::string(width - s.size(), ' ') + s;
}

std::string pad_right(const std::string& s, std::size_t width) {
  return s.size() >= width ? s : s + std::string(width - s.size(), ' ');
}

json::object summary_json(const load_summary& s) {
  json::object o;
  o["sent"] = s.sent;
  o["ok"] = s.ok;
  o["non_2xx"] = s.non_2xx;
  o["connect_errors"] = s.connect_errors;
  o["resets"] = s.resets;
  o["timeouts"] = s.timeouts;
  o["mixed"] = s.mixed;
  o["retried"] = s.retried;
  o["reconnects"] = s.reconnects;
  o["failed"] = s.failed();
  json::object latency;
  latency["p50"] = s.p50.count();
  latency["p99"] = s.p99.count();
  latency["max"] = s.max.count();
  o["latency_us"] = std::move(latency);
  return o;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Arguments

std::variant<load_event, std::string> parse_event(std::string_view text) {
  const std::size_t colon = text.find(':');
  if (colon == std::string_view::npos) {
    return "expected AT:SHELLCMD, e.g. 2s:'kill -HUP 1234', got \"" + std::string(text) + "\"";
  }
  const auto at = config::parse_duration(text.substr(0, colon));
  if (!at) {
    return "invalid time \"" + std::string(text.substr(0, colon)) +
           "\" (expected e.g. 500ms, 2s, 1.5)";
  }
  load_event e;
  e.at = *at;
  e.command = std::string(text.substr(colon + 1));
  if (e.command.find_first_not_of(" \t") == std::string::npos) {
    return "empty command in \"" + std::string(text) + "\"";
  }
  return e;
}

loadtest_args parse_loadtest_args(std::span<const std::string_view> args) {
  loadtest_args out;
  loadtest_options o;
  bool host_given = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view a = args[i];
    if (a == "-h" || a == "--help") {
      out.help = true;
      return out;
    }
    if (a == "--json") {
      o.json = true;
      continue;
    }
    static constexpr std::string_view with_value[] = {
        "--target", "--host",  "--path",   "--duration", "--keepalive",
        "--fresh",  "--event", "--window", "--timeout",  "--request-id"};
    if (std::find(std::begin(with_value), std::end(with_value), a) == std::end(with_value)) {
      out.error = "unknown argument " + std::string(a);
      return out;
    }
    if (i + 1 >= args.size()) {
      out.error = std::string(a) + " needs a value";
      return out;
    }
    const std::string_view v = args[++i];
    const std::string name(a);
    if (a == "--target") {
      auto hp = parse_host_port(v);
      if (auto* reason = std::get_if<std::string>(&hp)) {
        out.error = "--target: " + *reason;
        return out;
      }
      auto& parsed = std::get<host_port>(hp);
      o.target = std::string(v);
      o.host = parsed.host;
      o.port = parsed.port;
    } else if (a == "--host") {
      if (!visible_ascii(v)) {
        out.error = "--host: expected a host name without spaces or control characters";
        return out;
      }
      o.host_header = std::string(v);
      host_given = true;
    } else if (a == "--path") {
      if (!visible_ascii(v) || v.front() != '/') {
        out.error = "--path: expected an origin-form target starting with /, without spaces";
        return out;
      }
      o.path = std::string(v);
    } else if (a == "--request-id") {
      if (!header_name(v) || reserved_header(v)) {
        out.error = "--request-id: expected a header field name such as X-Request-Id (not Host, "
                    "Connection, Content-Length or Transfer-Encoding), got \"" +
                    std::string(v) + "\"";
        return out;
      }
      o.request_id = std::string(v);
    } else if (a == "--keepalive" || a == "--fresh") {
      const auto n = parse_count(v);
      if (!n) {
        out.error = name + ": expected a number of connections from 0 to " +
                    std::to_string(max_loops) + ", got \"" + std::string(v) + "\"";
        return out;
      }
      (a == "--keepalive" ? o.keepalive : o.fresh) = *n;
    } else if (a == "--event") {
      auto e = parse_event(v);
      if (auto* reason = std::get_if<std::string>(&e)) {
        out.error = "--event: " + *reason;
        return out;
      }
      o.events.push_back(std::get<load_event>(std::move(e)));
    } else {  // --duration, --window, --timeout
      const auto d = config::parse_duration(v);
      if (!d || d->count() <= 0) {
        out.error =
            name + ": invalid duration \"" + std::string(v) + "\" (expected e.g. 500ms, 10s, 1m)";
        return out;
      }
      (a == "--duration" ? o.duration : a == "--window" ? o.window : o.timeout) = *d;
    }
  }
  if (o.target.empty()) {
    out.error = "no target (--target HOST:PORT)";
    return out;
  }
  if (o.request_id.empty() && o.path.find(id_placeholder) != std::string::npos) {
    out.error = "--path: " + std::string(id_placeholder) + " needs --request-id";
    return out;
  }
  if (o.keepalive + o.fresh == 0) {
    out.error = "no load: --keepalive and --fresh are both 0";
    return out;
  }
  for (const load_event& e : o.events) {
    if (e.at >= o.duration) {
      out.error = "--event at " + duration_text(e.at) + " is not within --duration " +
                  duration_text(o.duration);
      return out;
    }
  }
  if (!host_given) {
    o.host_header = o.target;
  }
  std::stable_sort(o.events.begin(), o.events.end(),
                   [](const load_event& x, const load_event& y) { return x.at < y.at; });
  out.options = std::move(o);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Aggregation

std::string_view outcome_name(outcome o) {
  switch (o) {
  case outcome::ok:
    return "ok";
  case outcome::non_2xx:
    return "non-2xx";
  case outcome::connect_error:
    return "connect error";
  case outcome::reset:
    return "reset";
  case outcome::timeout:
    return "timeout";
  case outcome::mixed:
    return "mixed";
  }
  return "?";
}

bool failed(outcome o) {
  return o != outcome::ok;
}

std::string request_target(std::string_view path, std::string_view id) {
  std::string out;
  for (;;) {
    const auto at = path.find(id_placeholder);
    if (at == std::string_view::npos) {
      out.append(path);
      return out;
    }
    out.append(path.substr(0, at));
    out.append(id);
    path.remove_prefix(at + id_placeholder.size());
  }
}

std::string request_id_value(std::string_view run, unsigned loop, std::uint64_t seq) {
  return std::string(run) + "-" + std::to_string(loop) + "-" + std::to_string(seq);
}

outcome check_echo(outcome what, std::span<const std::string_view> echoed, std::string_view sent) {
  if (what != outcome::ok && what != outcome::non_2xx) {
    return what;
  }
  for (std::string_view v : echoed) {
    if (v != sent) {
      return outcome::mixed;
    }
  }
  if (echoed.empty() && what == outcome::ok) {
    return outcome::mixed;
  }
  return what;
}

micros percentile(std::span<const micros> sorted, double q) {
  if (sorted.empty()) {
    return micros{0};
  }
  q = std::clamp(q, 0.0, 1.0);
  const auto n = static_cast<double>(sorted.size());
  auto rank = static_cast<std::size_t>(std::ceil(q * n));
  rank = std::clamp<std::size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

load_summary summarize(std::span<const request_record> records, micros from, micros to) {
  load_summary s;
  std::vector<micros> latencies;
  for (const request_record& r : records) {
    if (r.start < from || r.start >= to) {
      continue;
    }
    ++s.sent;
    s.retried += r.retried ? 1 : 0;
    s.reconnects += r.reconnected ? 1 : 0;
    switch (r.what) {
    case outcome::ok:
      ++s.ok;
      latencies.push_back(r.latency);
      break;
    case outcome::non_2xx:
      ++s.non_2xx;
      latencies.push_back(r.latency);
      break;
    case outcome::connect_error:
      ++s.connect_errors;
      break;
    case outcome::reset:
      ++s.resets;
      break;
    case outcome::timeout:
      ++s.timeouts;
      break;
    case outcome::mixed:
      ++s.mixed;
      break;
    }
  }
  std::sort(latencies.begin(), latencies.end());
  s.p50 = percentile(latencies, 0.50);
  s.p99 = percentile(latencies, 0.99);
  s.max = latencies.empty() ? micros{0} : latencies.back();
  return s;
}

void aggregate(load_report& report, std::span<const request_record> records) {
  report.total = summarize(records);
  const micros window = report.window;
  for (event_result& e : report.events) {
    if (e.started) {
      e.window = summarize(records, *e.started, *e.started + window);
    }
  }
}

double requests_per_second(const load_report& report) {
  if (report.elapsed.count() <= 0) {
    return 0;
  }
  return static_cast<double>(report.total.sent) * 1e6 / static_cast<double>(report.elapsed.count());
}

std::string format_text(const load_report& r) {
  std::string out = "wkproxy loadtest: GET " + r.path + " to " + r.target +
                    " (Host: " + r.host_header + "), " + std::to_string(r.keepalive) +
                    " keep-alive + " + std::to_string(r.fresh) + " fresh-connection loops, " +
                    seconds_text(r.elapsed) + ", " +
                    std::to_string(std::llround(requests_per_second(r))) + " requests/s\n";
  if (!r.request_id.empty()) {
    out += "each request carried a unique " + r.request_id + " that its answer had to echo\n";
  }
  out += "\n";
  struct column {
    std::string title;
    std::size_t width;
  };
  const std::vector<column> columns = {
      {"window", 16}, {"sent", 9},    {"ok", 9},    {"non-2xx", 8}, {"connect", 8},
      {"reset", 6},   {"timeout", 8}, {"mixed", 6}, {"retried", 8}, {"reconn", 7},
      {"p50", 10},    {"p99", 10},    {"max", 10}};
  auto row = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (std::size_t i = 0; i < cells.size(); ++i) {
      line += i == 0 ? pad_right(cells[i], columns[i].width)
                     : " " + pad_left(cells[i], columns[i].width);
    }
    while (!line.empty() && line.back() == ' ') {
      line.pop_back();
    }
    return line + "\n";
  };
  auto summary_row = [&](std::string label, const load_summary& s) {
    return row({std::move(label), std::to_string(s.sent), std::to_string(s.ok),
                std::to_string(s.non_2xx), std::to_string(s.connect_errors),
                std::to_string(s.resets), std::to_string(s.timeouts), std::to_string(s.mixed),
                std::to_string(s.retried), std::to_string(s.reconnects), ms_text(s.p50),
                ms_text(s.p99), ms_text(s.max)});
  };
  std::vector<std::string> titles;
  titles.reserve(columns.size());
  for (const column& c : columns) {
    titles.push_back(c.title);
  }
  out += row(titles);
  out += summary_row("whole run", r.total);
  for (std::size_t i = 0; i < r.events.size(); ++i) {
    const event_result& e = r.events[i];
    const std::string label = "event " + std::to_string(i + 1) + " +" + duration_text(r.window);
    if (e.started) {
      out += summary_row(label, e.window);
    } else {
      out += row({label, "-"});
    }
  }
  if (!r.events.empty()) {
    out += "\nevents (each window: requests started within " + duration_text(r.window) +
           " after the command started):\n";
    for (std::size_t i = 0; i < r.events.size(); ++i) {
      const event_result& e = r.events[i];
      std::string line = "  " + std::to_string(i + 1) + ". at " + duration_text(e.event.at) + ": ";
      if (!e.error.empty()) {
        line += "not run: " + e.error;
      } else if (!e.started) {
        line += "not run";
      } else if (!e.finished) {
        line += "started " + seconds_text(*e.started) + ", still running at the end";
      } else {
        line += "started " + seconds_text(*e.started) + ", exit " + std::to_string(e.exit_code) +
                " after " + ms_text(*e.finished - *e.started);
      }
      out += line + ": " + e.event.command + "\n";
    }
  }
  if (!r.errors.empty()) {
    out += "\nfailures by cause:\n";
    for (const auto& [what, count] : r.errors) {
      out += "  " + pad_left(std::to_string(count), 8) + "  " + what + "\n";
    }
  }
  const std::uint64_t bad = r.total.failed();
  out += "\n";
  if (bad == 0) {
    out += "PASS: " + std::to_string(r.total.sent) + " requests, none failed";
    if (r.total.retried != 0) {
      out += " (" + std::to_string(r.total.retried) + " retried on a new connection)";
    }
    out += "\n";
  } else {
    out += "FAIL: " + std::to_string(bad) + " of " + std::to_string(r.total.sent) +
           " requests failed\n";
  }
  return out;
}

std::string format_json(const load_report& r) {
  json::object doc;
  doc["target"] = r.target;
  doc["host"] = r.host_header;
  doc["path"] = r.path;
  doc["request_id"] = r.request_id.empty() ? json::value(nullptr) : json::value(r.request_id);
  doc["keepalive"] = r.keepalive;
  doc["fresh"] = r.fresh;
  doc["window_ms"] = r.window.count();
  doc["elapsed_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(r.elapsed).count();
  doc["requests_per_second"] = std::llround(requests_per_second(r));
  doc["total"] = summary_json(r.total);
  json::array events;
  for (const event_result& e : r.events) {
    json::object o;
    o["at_ms"] = e.event.at.count();
    o["command"] = e.event.command;
    using std::chrono::duration_cast;
    using std::chrono::milliseconds;
    o["started_ms"] = e.started ? json::value(duration_cast<milliseconds>(*e.started).count())
                                : json::value(nullptr);
    o["finished_ms"] = e.finished ? json::value(duration_cast<milliseconds>(*e.finished).count())
                                  : json::value(nullptr);
    o["exit_code"] = e.finished ? json::value(e.exit_code) : json::value(nullptr);
    o["error"] = e.error;
    o["window"] = summary_json(e.window);
    events.push_back(std::move(o));
  }
  doc["events"] = std::move(events);
  json::array errors;
  for (const auto& [what, count] : r.errors) {
    json::object o;
    o["error"] = what;
    o["count"] = count;
    errors.push_back(std::move(o));
  }
  doc["errors"] = std::move(errors);
  doc["pass"] = r.total.failed() == 0;
  return json::serialize(doc) + "\n";
}

int exit_code(const load_report& report) {
  return report.total.failed() == 0 ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// The load. One thread, one io_context: every loop is a coroutine that starts its next request
// as soon as the previous one ended (closed loop), until --duration has passed; requests in
// flight then finish (or time out). Events are coroutines too, and their commands are child
// processes polled with waitpid, so nothing the commands do can pause the load.

namespace {

using clock = std::chrono::steady_clock;

constexpr auto connect_error_pause = std::chrono::milliseconds(10);
constexpr auto child_poll = std::chrono::milliseconds(5);
constexpr int max_interim = 8;

struct run_state {
  loadtest_options opt;
  std::vector<tcp::endpoint> endpoints;
  std::string keepalive_request;  // the header fields after the request line, no final CRLF
  std::string close_request;
  std::string run_id;                       // --request-id: the first part of every id
  std::vector<std::string> mixed_examples;  // the first few, for stderr
  clock::time_point t0;
  clock::time_point end;
  std::vector<request_record> records;
  std::map<std::string, std::uint64_t> errors;
  std::vector<event_result> events;
  bool internal_error = false;

  [[nodiscard]] micros since_start(clock::time_point t) const {
    return std::chrono::duration_cast<micros>(t - t0);
  }
};

// The outcome of one attempt at a request on one connection.
struct attempt {
  outcome what = outcome::reset;
  unsigned status = 0;
  bool keep_alive = false;          // the connection can carry the next request
  bool got_bytes = false;           // some response bytes arrived (a retry would not be safe)
  std::string error;                // the failure cause, for the report
  std::vector<std::string> echoed;  // --request-id: the values of that field in the answer
};

void close_stream(beast::tcp_stream& stream) {
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream.socket().close(ignored);
}

// True when an idle keep-alive connection can no longer be used: the server closed it (EOF or
// RST pending) or sent something unsolicited (e.g. a 408 before closing). Checked without
// blocking before each reuse, like a browser's "is the socket still connected and idle".
bool closed_while_idle(tcp::socket& socket) {
  char c = 0;
  const auto n = ::recv(socket.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n >= 0) {
    return true;
  }
  return errno != EAGAIN && errno != EWOULDBLOCK;
}

// Connects to the first endpoint that accepts before `deadline`. Returns the failure cause.
asio::awaitable<std::optional<std::string>> connect(beast::tcp_stream& stream,
                                                    const std::vector<tcp::endpoint>& endpoints,
                                                    clock::time_point deadline) {
  std::string last;
  for (const tcp::endpoint& ep : endpoints) {
    boost::system::error_code ignored;
    stream.socket().close(ignored);  // the next address may be of the other family
    stream.expires_at(deadline);
    auto [ec] = co_await stream.async_connect(ep, core::nothrow);
    if (!ec) {
      stream.socket().set_option(tcp::no_delay(true), ignored);
      co_return std::nullopt;
    }
    last = core::is_timeout(ec) ? "connect: no connection within --timeout"
                                : "connect: " + ec.message();
  }
  co_return last;
}

// Writes the request and reads the complete response (1xx interim answers skipped, the body
// read into `scratch` and dropped), all before `deadline`.
asio::awaitable<attempt> exchange(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                                  std::span<char> scratch, std::string_view request,
                                  std::string_view id_field, clock::time_point deadline) {
  attempt out;
  stream.expires_at(deadline);
  auto [wec, written] = co_await asio::async_write(stream, asio::buffer(request), core::nothrow);
  (void)written;
  if (wec) {
    if (core::is_timeout(wec)) {
      out.what = outcome::timeout;
      out.error = "timeout: request not written within --timeout";
      co_return out;
    }
    boost::system::error_code ignored;
    out.got_bytes = buffer.size() != 0 || stream.socket().available(ignored) != 0;
    out.what = outcome::reset;
    out.error = "write: " + wec.message();
    co_return out;
  }
  for (int interim = 0; interim <= max_interim; ++interim) {
    bhttp::response_parser<bhttp::buffer_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    parser.header_limit(64 * 1024);
    boost::system::error_code ec;
    stream.expires_at(deadline);
    std::tie(ec, std::ignore) =
        co_await bhttp::async_read_header(stream, buffer, parser, core::nothrow);
    while (!ec && !parser.is_done()) {
      parser.get().body().data = scratch.data();
      parser.get().body().size = scratch.size();
      stream.expires_at(deadline);
      std::tie(ec, std::ignore) = co_await bhttp::async_read(stream, buffer, parser, core::nothrow);
      if (ec == bhttp::error::need_buffer) {
        ec = {};  // scratch is full: drop it and read on
      }
    }
    if (ec) {
      out.got_bytes = out.got_bytes || parser.got_some() || buffer.size() != 0;
      if (core::is_timeout(ec)) {
        out.what = outcome::timeout;
        out.error = "timeout: no complete response within --timeout";
      } else {
        out.what = outcome::reset;
        out.error = (out.got_bytes ? "read (response incomplete): " : "read (no response): ") +
                    ec.message();
      }
      co_return out;
    }
    out.got_bytes = true;
    const unsigned status = parser.get().result_int();
    if (status >= 100 && status < 200 && status != 101) {
      continue;
    }
    if (!id_field.empty()) {
      auto range = parser.get().equal_range(id_field);
      for (auto it = range.first; it != range.second; ++it) {
        out.echoed.emplace_back(it->value());
      }
    }
    out.status = status;
    out.what = status >= 200 && status < 300 ? outcome::ok : outcome::non_2xx;
    out.keep_alive = parser.keep_alive() && status != 101;
    if (out.what == outcome::non_2xx) {
      out.error = "status " + std::to_string(status);
    }
    co_return out;
  }
  out.what = outcome::reset;
  out.error = "read: more than " + std::to_string(max_interim) + " interim responses";
  co_return out;
}

// One loop: back-to-back requests on a kept-alive connection (fresh == false) or on a new
// connection each (fresh == true, with Connection: close), until the end of the load.
asio::awaitable<void> request_loop(std::shared_ptr<run_state> s, bool fresh, unsigned index) {
  auto exec = co_await asio::this_coro::executor;
  const std::string_view head = fresh ? s->close_request : s->keepalive_request;
  const std::string_view id_field = s->opt.request_id;
  std::string request;
  std::string id;
  std::uint64_t seq = 0;
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;
  std::vector<char> scratch(std::size_t{16} * 1024);
  bool reused = false;        // the open connection already carried a complete exchange
  bool closed_clean = false;  // the last connection ended cleanly between requests
  asio::steady_timer pause(exec);
  auto drop = [&] {
    if (stream) {
      close_stream(*stream);
      stream.reset();
    }
    buffer.clear();
    reused = false;
  };
  while (clock::now() < s->end) {
    request_record rec;
    const auto begin = clock::now();
    const auto deadline = begin + s->opt.timeout;
    rec.start = s->since_start(begin);
    request.assign("GET ");
    if (!id_field.empty()) {
      id = request_id_value(s->run_id, index, seq++);
      request.append(request_target(s->opt.path, id));
    } else {
      request.append(s->opt.path);
    }
    request.append(" HTTP/1.1\r\n");
    request.append(head);
    if (!id_field.empty()) {
      request.append(id_field);
      request.append(": ");
      request.append(id);
      request.append("\r\n");
    }
    request.append("\r\n");
    if (stream && reused && closed_while_idle(stream->socket())) {
      drop();
      closed_clean = true;
    }
    attempt a;
    for (int tries = 0;; ++tries) {
      if (!stream) {
        rec.reconnected = rec.reconnected || (!fresh && closed_clean && tries == 0);
        closed_clean = false;
        stream.emplace(exec);
        if (auto problem = co_await connect(*stream, s->endpoints, deadline)) {
          a = attempt{};
          a.what = outcome::connect_error;
          a.error = std::move(*problem);
          drop();
          break;
        }
      }
      a = co_await exchange(*stream, buffer, scratch, request, id_field, deadline);
      // RFC 9110 section 9.2.2: an idempotent request on a reused connection that the server
      // closed before answering anything may be sent again, once, on a new connection.
      const bool stale = a.what == outcome::reset && reused && !a.got_bytes;
      if (stale && tries == 0) {
        rec.retried = true;
        drop();
        continue;
      }
      break;
    }
    rec.latency = std::chrono::duration_cast<micros>(clock::now() - begin);
    if (!id_field.empty()) {
      const std::vector<std::string_view> echoed(a.echoed.begin(), a.echoed.end());
      if (check_echo(a.what, echoed, id) == outcome::mixed) {
        std::string got;
        for (std::string_view v : echoed) {
          got += (got.empty() ? "" : ", ") + std::string(v);
        }
        if (s->mixed_examples.size() < 5) {
          s->mixed_examples.push_back("sent " + id + ", status " + std::to_string(a.status) +
                                      ", echoed " + (got.empty() ? "nothing" : got));
        }
        a.error = echoed.empty() ? "mixed: a 2xx answer without " + s->opt.request_id
                                 : "mixed: " + s->opt.request_id + " of another request";
        a.what = outcome::mixed;
        a.keep_alive = false;  // whatever this connection carries next cannot be trusted
      }
    }
    rec.what = a.what;
    rec.status = a.status;
    s->records.push_back(rec);
    if (failed(a.what)) {
      ++s->errors[a.error];
    }
    const bool answered = a.what == outcome::ok || a.what == outcome::non_2xx;
    // A mixed answer leaves the connection out of step: closed like a failure.
    if (answered && a.keep_alive && !fresh) {
      reused = true;
    } else {
      drop();
      closed_clean = answered;  // Connection: close after a complete answer is not an error
    }
    if (a.what == outcome::connect_error) {
      // Nothing listens (a restart): retry soon, without spinning on instant refusals.
      pause.expires_after(connect_error_pause);
      auto [ignored] = co_await pause.async_wait(core::nothrow);
      (void)ignored;
    }
  }
  drop();
}

// Starts `/bin/sh -c command` with stdin from /dev/null and stdout sent to our stderr (so that
// --json output stays a clean document). Returns the pid, or the reason it could not start.
std::variant<pid_t, std::string> start_shell(const std::string& command) {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, 2, 1);
  // We ignore SIGPIPE; the command must not inherit that.
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  std::string sh = "/bin/sh";
  std::string dash_c = "-c";
  std::string cmd = command;
  char* argv[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, "/bin/sh", &actions, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return std::string("cannot start /bin/sh: ") + std::strerror(rc);
  }
  return pid;
}

// Waits for the event's time, starts its command and polls for its exit, giving up once the
// load is over and --timeout more has passed (the command is then reported as still running).
asio::awaitable<void> event_runner(std::shared_ptr<run_state> s, std::size_t index) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  timer.expires_at(s->t0 + s->events[index].event.at);
  auto [ignored] = co_await timer.async_wait(core::nothrow);
  (void)ignored;
  const auto started = clock::now();
  auto spawned = start_shell(s->events[index].event.command);
  if (auto* reason = std::get_if<std::string>(&spawned)) {
    s->events[index].error = std::move(*reason);
    co_return;
  }
  s->events[index].started = s->since_start(started);
  const pid_t pid = std::get<pid_t>(spawned);
  const auto give_up = s->end + s->opt.timeout;
  for (;;) {
    int status = 0;
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid || (done < 0 && errno != EINTR)) {
      event_result& e = s->events[index];
      e.finished = s->since_start(clock::now());
      e.exit_code = done < 0              ? -1
                    : WIFEXITED(status)   ? WEXITSTATUS(status)
                    : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                          : -1;
      co_return;
    }
    if (clock::now() >= give_up) {
      co_return;
    }
    timer.expires_after(child_poll);
    auto [ec] = co_await timer.async_wait(core::nothrow);
    (void)ec;
  }
}

std::string build_request(const loadtest_options& o, bool close) {
  std::string r = "Host: " + o.host_header + "\r\nUser-Agent: wkproxy-loadtest\r\nAccept: */*\r\n";
  if (close) {
    r += "Connection: close\r\n";
  }
  return r;  // the request line, the id field (--request-id) and the final CRLF: per request
}

// Completion handler of the spawned coroutines: an exception is a bug or resource exhaustion
// (network failures are values), so it is printed and fails the run.
struct report_exception {
  std::shared_ptr<run_state> s;
  std::string_view what;
  void operator()(const std::exception_ptr& e) const {
    if (!e) {
      return;
    }
    s->internal_error = true;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      std::cerr << "wkproxy loadtest: internal error in " << what << ": " << x.what() << '\n';
    } catch (...) {
      std::cerr << "wkproxy loadtest: internal error in " << what << '\n';
    }
  }
};

}  // namespace

int run_loadtest(int argc, char** argv) {
  std::vector<std::string_view> args(argv, argv + argc);
  const loadtest_args parsed = parse_loadtest_args(args);
  if (parsed.help) {
    std::cout << loadtest_usage;
    return 0;
  }
  if (!parsed.options) {
    std::cerr << "wkproxy loadtest: " << parsed.error << "\n" << loadtest_usage;
    return 2;
  }
  // Writes to a connection the server reset must be errors, not a signal that ends the run.
  std::signal(SIGPIPE, SIG_IGN);

  auto s = std::make_shared<run_state>();
  s->opt = *parsed.options;
  asio::io_context ioc(1);
  {
    tcp::resolver resolver(ioc);
    boost::system::error_code ec;
    const auto results = resolver.resolve(s->opt.host, std::to_string(s->opt.port), ec);
    if (ec || results.empty()) {
      std::cerr << "wkproxy loadtest: cannot resolve " << s->opt.host << ": "
                << (ec ? ec.message() : "no address") << '\n';
      return 1;
    }
    for (const auto& r : results) {
      s->endpoints.push_back(r.endpoint());
    }
  }
  s->keepalive_request = build_request(s->opt, false);
  s->close_request = build_request(s->opt, true);
  if (!s->opt.request_id.empty()) {
    std::random_device random;
    char run[32];
    std::snprintf(run, sizeof run, "%d-%08x", static_cast<int>(::getpid()), random());
    s->run_id = run;
  }
  for (const load_event& e : s->opt.events) {
    event_result r;
    r.event = e;
    s->events.push_back(std::move(r));
  }
  s->records.reserve(1 << 20);
  s->t0 = clock::now();
  s->end = s->t0 + s->opt.duration;
  for (unsigned i = 0; i < s->opt.keepalive; ++i) {
    asio::co_spawn(ioc, request_loop(s, false, i), report_exception{s, "a keep-alive loop"});
  }
  for (unsigned i = 0; i < s->opt.fresh; ++i) {
    asio::co_spawn(ioc, request_loop(s, true, s->opt.keepalive + i),
                   report_exception{s, "a fresh-connection loop"});
  }
  for (std::size_t i = 0; i < s->events.size(); ++i) {
    asio::co_spawn(ioc, event_runner(s, i), report_exception{s, "an event"});
  }
  ioc.run();

  load_report report;
  report.target = s->opt.target;
  report.host_header = s->opt.host_header;
  report.path = s->opt.path;
  report.request_id = s->opt.request_id;
  report.keepalive = s->opt.keepalive;
  report.fresh = s->opt.fresh;
  report.window = s->opt.window;
  report.events = s->events;
  for (const request_record& r : s->records) {
    report.elapsed = std::max(report.elapsed, r.start + r.latency);
  }
  report.errors.assign(s->errors.begin(), s->errors.end());
  std::stable_sort(report.errors.begin(), report.errors.end(),
                   [](const auto& x, const auto& y) { return x.second > y.second; });
  aggregate(report, s->records);
  for (const std::string& m : s->mixed_examples) {
    std::cerr << "wkproxy loadtest: mixed answer: " << m << '\n';
  }
  std::cout << (s->opt.json ? format_json(report) : format_text(report));
  std::cout.flush();
  if (s->internal_error) {
    return 1;
  }
  return exit_code(report);
}

}  // namespace wk::cli
