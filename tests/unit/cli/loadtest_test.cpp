// The pure parts of `wkproxy loadtest`: arguments, percentiles, the per-window aggregation and
// the two report formats. The load itself is covered by tests/integration/test_zero_downtime.py.

#include "cli/loadtest.hpp"

#include <doctest/doctest.h>

#include <boost/json/parse.hpp>

#include <string>
#include <vector>

namespace app = wk::cli;
using app::micros;
using app::outcome;

namespace {

app::loadtest_args parse(std::vector<std::string_view> args) {
  return app::parse_loadtest_args(args);
}

app::loadtest_options options(std::vector<std::string_view> args) {
  auto parsed = parse(std::move(args));
  REQUIRE_MESSAGE(parsed.options.has_value(), parsed.error);
  return *parsed.options;
}

std::string error_of(std::vector<std::string_view> args) {
  auto parsed = parse(std::move(args));
  REQUIRE_FALSE(parsed.options.has_value());
  REQUIRE_FALSE(parsed.help);
  return parsed.error;
}

app::request_record rec(std::int64_t start_ms, std::int64_t latency_us, outcome what = outcome::ok,
                        bool retried = false) {
  app::request_record r;
  r.start = micros(start_ms * 1000);
  r.latency = micros(latency_us);
  r.what = what;
  r.status = what == outcome::ok ? 200 : what == outcome::non_2xx ? 502 : 0;
  r.retried = retried;
  return r;
}

}  // namespace

TEST_CASE("loadtest arguments default to 10 s of 8 keep-alive and 2 fresh-connection loops") {
  const auto o = options({"--target", "127.0.0.1:8080"});
  CHECK(o.host == "127.0.0.1");
  CHECK(o.port == 8080);
  CHECK(o.target == "127.0.0.1:8080");
  CHECK(o.host_header == "127.0.0.1:8080");
  CHECK(o.path == "/");
  CHECK(o.duration.count() == 10'000);
  CHECK(o.keepalive == 8);
  CHECK(o.fresh == 2);
  CHECK(o.window.count() == 1'000);
  CHECK(o.timeout.count() == 5'000);
  CHECK_FALSE(o.json);
  CHECK(o.events.empty());
  CHECK(o.request_id.empty());
}

TEST_CASE("every loadtest option is parsed, and events are sorted by time") {
  const auto o = options({"--target",     "[::1]:9000",
                          "--host",       "tenant.example",
                          "--path",       "/a?b=c",
                          "--duration",   "8s",
                          "--keepalive",  "3",
                          "--fresh",      "0",
                          "--event",      "5s:kill -HUP 42",
                          "--event",      "1500ms:echo a:b",
                          "--window",     "500ms",
                          "--timeout",    "2",
                          "--request-id", "X-Loadtest-Id",
                          "--json"});
  CHECK(o.host == "::1");
  CHECK(o.port == 9000);
  CHECK(o.host_header == "tenant.example");
  CHECK(o.path == "/a?b=c");
  CHECK(o.duration.count() == 8'000);
  CHECK(o.keepalive == 3);
  CHECK(o.fresh == 0);
  CHECK(o.window.count() == 500);
  CHECK(o.timeout.count() == 2'000);
  CHECK(o.request_id == "X-Loadtest-Id");
  CHECK(o.json);
  REQUIRE(o.events.size() == 2);
  CHECK(o.events[0].at.count() == 1'500);
  CHECK(o.events[0].command == "echo a:b");  // only the first colon separates
  CHECK(o.events[1].at.count() == 5'000);
  CHECK(o.events[1].command == "kill -HUP 42");
}

TEST_CASE("help is recognised anywhere") {
  CHECK(parse({"--target", "x:1", "-h"}).help);
  CHECK(parse({"--help"}).help);
}

TEST_CASE("bad loadtest arguments are refused with a reason") {
  struct row {
    std::vector<std::string_view> args;
    const char* reason;
  };
  const std::vector<row> rows = {
      {{}, "no target"},
      {{"--duration", "5s"}, "no target"},
      {{"--target", "localhost"}, "--target"},
      {{"--target", "127.0.0.1:0"}, "invalid port"},
      {{"--target", "::1:80"}, "brackets"},
      {{"--target"}, "needs a value"},
      {{"--target", "h:1", "--bogus"}, "unknown argument --bogus"},
      {{"--target", "h:1", "--duration", "0s"}, "--duration: invalid duration"},
      {{"--target", "h:1", "--duration", "ten"}, "--duration: invalid duration"},
      {{"--target", "h:1", "--timeout", "-1s"}, "--timeout: invalid duration"},
      {{"--target", "h:1", "--keepalive", "x"}, "--keepalive: expected a number"},
      {{"--target", "h:1", "--fresh", "-1"}, "--fresh: expected a number"},
      {{"--target", "h:1", "--keepalive", "0", "--fresh", "0"}, "no load"},
      {{"--target", "h:1", "--path", "a"}, "--path"},
      {{"--target", "h:1", "--path", "/a b"}, "--path"},
      {{"--target", "h:1", "--host", "a\r\nX: y"}, "--host"},
      {{"--target", "h:1", "--event", "kill"}, "AT:SHELLCMD"},
      {{"--target", "h:1", "--event", "soon:kill"}, "invalid time"},
      {{"--target", "h:1", "--event", "2s:  "}, "empty command"},
      {{"--target", "h:1", "--duration", "5s", "--event", "5s:true"}, "not within --duration"},
      {{"--target", "h:1", "--request-id"}, "needs a value"},
      {{"--target", "h:1", "--path", "/t/{id}"}, "{id} needs --request-id"},
      {{"--target", "h:1", "--request-id", "X Id"}, "--request-id: expected a header field name"},
      {{"--target", "h:1", "--request-id", "X-Id:"}, "--request-id"},
      {{"--target", "h:1", "--request-id", "X-Id\r\nHost: a"}, "--request-id"},
      {{"--target", "h:1", "--request-id", "host"}, "--request-id"},
      {{"--target", "h:1", "--request-id", "Content-Length"}, "--request-id"},
      {{"--target", "h:1", "--request-id", "connection"}, "--request-id"},
      {{"--target", "h:1", "--request-id", "Transfer-Encoding"}, "--request-id"},
  };
  for (const row& r : rows) {
    std::string joined;
    for (auto a : r.args) {
      joined += std::string(a) + " ";
    }
    CAPTURE(joined);
    CHECK(error_of(r.args).find(r.reason) != std::string::npos);
  }
}

TEST_CASE("an event is a duration, a colon and a shell command") {
  auto e = app::parse_event("2.5:kill -USR2 $(cat /run/x.pid)");
  REQUIRE(std::holds_alternative<app::load_event>(e));
  CHECK(std::get<app::load_event>(e).at.count() == 2'500);
  CHECK(std::get<app::load_event>(e).command == "kill -USR2 $(cat /run/x.pid)");
  CHECK(std::holds_alternative<std::string>(app::parse_event(":true")));
}

TEST_CASE("percentiles use the nearest rank") {
  const std::vector<micros> none;
  CHECK(app::percentile(none, 0.5) == micros(0));
  const std::vector<micros> one = {micros(7)};
  CHECK(app::percentile(one, 0.0) == micros(7));
  CHECK(app::percentile(one, 0.99) == micros(7));
  std::vector<micros> hundred;
  for (int i = 1; i <= 100; ++i) {
    hundred.emplace_back(i);
  }
  CHECK(app::percentile(hundred, 0.50) == micros(50));
  CHECK(app::percentile(hundred, 0.99) == micros(99));
  CHECK(app::percentile(hundred, 1.0) == micros(100));
  CHECK(app::percentile(hundred, 0.0) == micros(1));
  const std::vector<micros> four = {micros(1), micros(2), micros(3), micros(4)};
  CHECK(app::percentile(four, 0.5) == micros(2));
  CHECK(app::percentile(four, 0.51) == micros(3));
  CHECK(app::percentile(four, 0.99) == micros(4));
}

TEST_CASE("a summary counts every outcome and takes latency only from answered requests") {
  std::vector<app::request_record> records = {
      rec(0, 100),
      rec(1, 300),
      rec(2, 200, outcome::ok, true),
      rec(3, 5'000, outcome::non_2xx),
      rec(4, 9'000'000, outcome::timeout),
      rec(5, 10, outcome::connect_error),
      rec(6, 50, outcome::reset),
      rec(7, 60, outcome::mixed),
  };
  records[1].reconnected = true;
  const auto s = app::summarize(records);
  CHECK(s.sent == 8);
  CHECK(s.ok == 3);
  CHECK(s.non_2xx == 1);
  CHECK(s.timeouts == 1);
  CHECK(s.connect_errors == 1);
  CHECK(s.resets == 1);
  CHECK(s.mixed == 1);
  CHECK(s.retried == 1);
  CHECK(s.reconnects == 1);
  CHECK(s.failed() == 5);
  CHECK(s.p50 == micros(200));
  CHECK(s.p99 == micros(5'000));
  CHECK(s.max == micros(5'000));  // the timeout's 9 s is not a latency
}

TEST_CASE("one mixed answer fails the run") {
  app::load_report report;
  std::vector<app::request_record> records(100, rec(0, 100));
  app::aggregate(report, records);
  CHECK(app::exit_code(report) == 0);
  records.push_back(rec(1, 100, outcome::mixed));
  app::aggregate(report, records);
  CHECK(report.total.mixed == 1);
  CHECK(report.total.failed() == 1);
  CHECK(app::exit_code(report) == 1);
  CHECK(app::format_text(report).find("FAIL: 1 of 101 requests failed") != std::string::npos);
}

TEST_CASE("request ids are unique per run, loop and sequence number") {
  CHECK(app::request_id_value("4242-0badf00d", 3, 17) == "4242-0badf00d-3-17");
  CHECK(app::request_id_value("r", 1, 23) != app::request_id_value("r", 12, 3));
  CHECK(app::request_id_value("r", 0, 0) != app::request_id_value("s", 0, 0));
}

TEST_CASE("{id} in the path is replaced by the request's id") {
  CHECK(app::request_target("/.well-known/pki-validation/{id}.txt", "r-0-1") ==
        "/.well-known/pki-validation/r-0-1.txt");
  CHECK(app::request_target("/{id}/x?id={id}", "a") == "/a/x?id=a");
  CHECK(app::request_target("/plain", "a") == "/plain");
  CHECK(app::request_target("/{i}{id", "a") == "/{i}{id");
  const auto o = options({"--target", "h:1", "--path", "/t/{id}", "--request-id", "X-Id"});
  CHECK(o.path == "/t/{id}");
}

TEST_CASE("an answer is mixed when it echoes another request's id, or a 2xx echoes none") {
  using views = std::vector<std::string_view>;
  const std::string_view sent = "r-1-7";
  // Its own id: the outcome stands, whatever the status.
  CHECK(app::check_echo(outcome::ok, views{"r-1-7"}, sent) == outcome::ok);
  CHECK(app::check_echo(outcome::non_2xx, views{"r-1-7"}, sent) == outcome::non_2xx);
  // Another request's answer (the previous one on this connection, a neighbour's).
  CHECK(app::check_echo(outcome::ok, views{"r-1-6"}, sent) == outcome::mixed);
  CHECK(app::check_echo(outcome::non_2xx, views{"r-2-7"}, sent) == outcome::mixed);
  // Duplicated field: one wrong value is enough.
  CHECK(app::check_echo(outcome::ok, views{"r-1-7", "r-1-6"}, sent) == outcome::mixed);
  CHECK(app::check_echo(outcome::ok, views{"r-1-7", "r-1-7"}, sent) == outcome::ok);
  // No id: a 2xx cannot be shown to be ours; the proxy's own 502 carries none.
  CHECK(app::check_echo(outcome::ok, views{}, sent) == outcome::mixed);
  CHECK(app::check_echo(outcome::non_2xx, views{}, sent) == outcome::non_2xx);
  // Prefixes and case are not the same id.
  CHECK(app::check_echo(outcome::ok, views{"r-1-70"}, sent) == outcome::mixed);
  CHECK(app::check_echo(outcome::ok, views{"R-1-7"}, sent) == outcome::mixed);
  // Failures without a complete response are left alone.
  for (auto o : {outcome::reset, outcome::timeout, outcome::connect_error}) {
    CHECK(app::check_echo(o, views{"x"}, sent) == o);
    CHECK(app::check_echo(o, views{}, sent) == o);
  }
  CHECK(app::outcome_name(outcome::mixed) == "mixed");
  CHECK(app::failed(outcome::mixed));
}

TEST_CASE("a window holds the requests that started in it, end excluded") {
  std::vector<app::request_record> records;
  for (int ms = 0; ms < 3000; ms += 100) {
    records.push_back(rec(ms, 1000 + ms));
  }
  records.push_back(rec(1500, 10, outcome::reset));
  const auto s = app::summarize(records, micros(1'000'000), micros(2'000'000));
  CHECK(s.sent == 11);  // 1000, 1100 ... 1900 and the reset
  CHECK(s.ok == 10);
  CHECK(s.resets == 1);
  CHECK(s.max == micros(2900));
  CHECK(app::summarize(records, micros(5'000'000), micros(6'000'000)).sent == 0);
}

TEST_CASE("aggregation fills the whole run and each started event's window") {
  std::vector<app::request_record> records;
  for (int ms = 0; ms < 4000; ms += 10) {
    records.push_back(rec(ms, 500));
  }
  records.push_back(rec(2100, 40, outcome::connect_error));
  app::load_report report;
  report.window = wk::config::duration(1'000);
  app::event_result started;
  started.event = {wk::config::duration(2'000), "kill -HUP 1"};
  started.started = micros(2'000'500);
  started.finished = micros(2'003'000);
  started.exit_code = 0;
  app::event_result never;
  never.event = {wk::config::duration(3'000), "nope"};
  never.error = "cannot start /bin/sh";
  report.events = {started, never};
  app::aggregate(report, records);
  CHECK(report.total.sent == 401);
  CHECK(report.total.connect_errors == 1);
  CHECK(report.events[0].window.sent == 101);  // 2010 .. 3000 ms, and the connect error
  CHECK(report.events[0].window.connect_errors == 1);
  CHECK(report.events[1].window.sent == 0);
  CHECK(app::exit_code(report) == 1);
}

namespace {

app::load_report sample_report(bool failing, bool mixed = false) {
  app::load_report r;
  r.target = "127.0.0.1:8080";
  r.host_header = "tenant.example";
  r.path = "/";
  r.keepalive = 8;
  r.fresh = 2;
  r.window = wk::config::duration(1'000);
  r.elapsed = micros(2'000'000);
  std::vector<app::request_record> records;
  for (int ms = 0; ms < 2000; ms += 1) {
    records.push_back(rec(ms, 250, outcome::ok, ms == 1200));
  }
  if (failing) {
    records.push_back(rec(1300, 20, outcome::connect_error));
    r.errors = {{"connect: Connection refused", 1}};
  }
  if (mixed) {
    r.request_id = "X-Loadtest-Id";
    records.push_back(rec(1400, 20, outcome::mixed));
    records.push_back(rec(1401, 20, outcome::mixed));
    r.errors.emplace_back("mixed: X-Loadtest-Id of another request", 2);
  }
  app::event_result e;
  e.event = {wk::config::duration(1'000), "kill -HUP 4242"};
  e.started = micros(1'000'200);
  e.finished = micros(1'004'200);
  e.exit_code = 0;
  app::event_result running;
  running.event = {wk::config::duration(1'500), "sleep 100"};
  running.started = micros(1'500'100);
  r.events = {e, running};
  app::aggregate(r, records);
  return r;
}

}  // namespace

TEST_CASE("the text report has a row per window, the events, the causes and a verdict") {
  SUBCASE("passing") {
    const auto r = sample_report(false);
    const std::string text = app::format_text(r);
    CAPTURE(text);
    CHECK(text.find("GET / to 127.0.0.1:8080 (Host: tenant.example)") != std::string::npos);
    CHECK(text.find("1000 requests/s") != std::string::npos);
    CHECK(text.find("whole run") != std::string::npos);
    CHECK(text.find("event 1 +1s") != std::string::npos);
    CHECK(text.find("event 2 +1s") != std::string::npos);
    CHECK(text.find("0.250ms") != std::string::npos);
    CHECK(text.find("exit 0 after 4.000ms: kill -HUP 4242") != std::string::npos);
    CHECK(text.find("still running at the end: sleep 100") != std::string::npos);
    CHECK(text.find("failures by cause") == std::string::npos);
    CHECK(text.find("PASS: 2000 requests, none failed (1 retried on a new connection)") !=
          std::string::npos);
    CHECK(app::exit_code(r) == 0);
  }
  SUBCASE("failing") {
    const auto r = sample_report(true);
    const std::string text = app::format_text(r);
    CAPTURE(text);
    CHECK(text.find("failures by cause") != std::string::npos);
    CHECK(text.find("       1  connect: Connection refused") != std::string::npos);
    CHECK(text.find("FAIL: 1 of 2001 requests failed") != std::string::npos);
    CHECK(text.find("unique") == std::string::npos);  // no ids sent
    CHECK(app::exit_code(r) == 1);
  }
  SUBCASE("mixed answers have their column") {
    const auto r = sample_report(false, true);
    const std::string text = app::format_text(r);
    CAPTURE(text);
    CHECK(text.find("each request carried a unique X-Loadtest-Id that its answer had to echo") !=
          std::string::npos);
    CHECK(text.find(" mixed ") != std::string::npos);
    CHECK(text.find("       2  mixed: X-Loadtest-Id of another request") != std::string::npos);
    CHECK(text.find("FAIL: 2 of 2002 requests failed") != std::string::npos);
    CHECK(app::exit_code(r) == 1);
  }
}

TEST_CASE("the JSON report carries the same numbers, integers only") {
  const auto r = sample_report(true);
  const auto doc = boost::json::parse(app::format_json(r)).as_object();
  CHECK(doc.at("target").as_string() == "127.0.0.1:8080");
  CHECK(doc.at("host").as_string() == "tenant.example");
  CHECK(doc.at("keepalive").as_int64() == 8);
  CHECK(doc.at("fresh").as_int64() == 2);
  CHECK(doc.at("window_ms").as_int64() == 1000);
  CHECK(doc.at("elapsed_ms").as_int64() == 2000);
  CHECK(doc.at("requests_per_second").as_int64() == 1001);
  const auto& total = doc.at("total").as_object();
  CHECK(total.at("sent").to_number<std::uint64_t>() == 2001);
  CHECK(total.at("ok").to_number<std::uint64_t>() == 2000);
  CHECK(total.at("connect_errors").to_number<std::uint64_t>() == 1);
  CHECK(total.at("mixed").to_number<std::uint64_t>() == 0);
  CHECK(doc.at("request_id").is_null());
  CHECK(total.at("retried").to_number<std::uint64_t>() == 1);
  CHECK(total.at("failed").to_number<std::uint64_t>() == 1);
  CHECK(total.at("latency_us").at("p50").as_int64() == 250);
  const auto& events = doc.at("events").as_array();
  REQUIRE(events.size() == 2);
  const auto& e = events[0].as_object();
  CHECK(e.at("at_ms").as_int64() == 1000);
  CHECK(e.at("command").as_string() == "kill -HUP 4242");
  CHECK(e.at("started_ms").as_int64() == 1000);
  CHECK(e.at("finished_ms").as_int64() == 1004);
  CHECK(e.at("exit_code").as_int64() == 0);
  CHECK(e.at("window").at("sent").to_number<std::uint64_t>() == 1000);  // 1001 .. 1999 ms + 1
  CHECK(e.at("window").at("connect_errors").to_number<std::uint64_t>() == 1);
  CHECK(events[1].at("finished_ms").is_null());
  CHECK(events[1].at("exit_code").is_null());
  const auto& errors = doc.at("errors").as_array();
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].at("error").as_string() == "connect: Connection refused");
  CHECK(errors[0].at("count").to_number<std::uint64_t>() == 1);
  CHECK(doc.at("pass").as_bool() == false);

  const auto m = boost::json::parse(app::format_json(sample_report(false, true))).as_object();
  CHECK(m.at("request_id").as_string() == "X-Loadtest-Id");
  CHECK(m.at("total").at("mixed").to_number<std::uint64_t>() == 2);
  CHECK(m.at("total").at("failed").to_number<std::uint64_t>() == 2);
  CHECK(m.at("pass").as_bool() == false);
}
