// Heap allocations on the per-request bookkeeping path: what finish() does after every answer
// (access log line, request metrics, and on the validation route the validation event, its
// JSON line and its labelled counter). Once warm, none of it may allocate: this executable
// replaces the global operator new with a counting one, so that a change that adds an
// allocation per request fails here instead of showing up as lost throughput in bench/compare.

#include "config/load.hpp"
#include "observe/log_file.hpp"
#include "routing/route.hpp"
#include "runtime/runtime.hpp"
#include "session/finish.hpp"
#include "validation/events.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <optional>
#include <string>
#include <variant>

namespace {

std::atomic<std::size_t> allocations{0};

void* counted(std::size_t n) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) {
    return p;
  }
  throw std::bad_alloc();
}

}  // namespace

void* operator new(std::size_t n) {
  return counted(n);
}
void* operator new[](std::size_t n) {
  return counted(n);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}

namespace {

namespace session = wk::session;

std::shared_ptr<const wk::runtime::snapshot> make_runtime(wk::upstream::resolver_registry& dns) {
  const auto loaded = wk::config::load_string(
      R"(version: 1
listen: ["127.0.0.1:8080"]
origin: http://127.0.0.1:8081
cloudfront: http://127.0.0.1:8082
domains: [tenant.example, "*.wild.example"]
)",
      "test.yaml", [](std::string_view) { return std::optional<std::string>(); });
  REQUIRE(loaded.cfg);
  std::vector<std::string> warnings;
  auto built = wk::runtime::build_runtime(*loaded.cfg, dns, warnings);
  REQUIRE(std::holds_alternative<std::shared_ptr<const wk::runtime::snapshot>>(built));
  return std::get<std::shared_ptr<const wk::runtime::snapshot>>(built);
}

std::shared_ptr<const wk::observe::log_file> dev_null() {
  auto opened = wk::observe::log_file::open("/dev/null");
  REQUIRE(std::holds_alternative<std::shared_ptr<const wk::observe::log_file>>(opened));
  return std::get<0>(std::move(opened));
}

// Allocations per call of write_access_log over `n` calls, after a warm-up that fills every
// ring, buffer and label set the calls touch.
double allocations_per_request(session::context& w, const session::request_state& st,
                               const session::client_info& conn, int n) {
  const session::fault ok{};
  for (int i = 0; i < 200; ++i) {
    session::write_access_log(w, st, ok, conn);
  }
  w.log.flush();
  const auto before = allocations.load();
  for (int i = 0; i < n; ++i) {
    session::write_access_log(w, st, ok, conn);
  }
  w.log.flush();
  return static_cast<double>(allocations.load() - before) / n;
}

struct bench {
  wk::upstream::resolver_registry dns;
  wk::observe::counters counters;
  wk::validation::event_store events;
  session::context w;
  session::client_info conn;
  session::request_state st;
  // A CA's user agent is longer than a short-string buffer: kept events must reuse capacity.
  std::string user_agent = "Mozilla/5.0 (compatible; Validation-Fetcher/2.1; +https://ca.example)";

  bench() {
    w.runtime = make_runtime(dns);
    w.report.counters = &counters;
    w.report.events = &events;
    conn.peer = "[2001:db8::1234]:50123";
    conn.peer_ip = "2001:db8::1234";
    st.method = "GET";
    st.target = "/.well-known/pki-validation/5D41402ABC4B2A76B9719D911017C592.txt";
    st.user_agent = user_agent;
    st.status = 200;
    st.bytes_out = 100;
  }

  void validation_hit(std::string host) {
    st.decision.kind = wk::routing::route_kind::validation;
    st.decision.host = std::move(host);
    st.decision.token = "5D41402ABC4B2A76B9719D911017C592.txt";
    st.validation_hit = true;
    st.upstream = &w.runtime->cloudfront;
  }
};

}  // namespace

TEST_CASE("a validation request's bookkeeping allocates nothing once warm, log on or off") {
  bench b;
  b.validation_hit("tenant.example");
  SUBCASE("event log and access log off") {
    REQUIRE(b.events.configure({wk::config::event_log::output::off, {}}, 50, {"tenant.example"})
                .empty());
    CHECK(allocations_per_request(b.w, b.st, b.conn, 10'000) == 0.0);
  }
  SUBCASE("event log and JSON access log on") {
    REQUIRE(
        b.events
            .configure({wk::config::event_log::output::file, "/dev/null"}, 50, {"tenant.example"})
            .empty());
    b.w.log.set_destination(dev_null(), wk::config::log_format::json);
    CHECK(allocations_per_request(b.w, b.st, b.conn, 10'000) == 0.0);
  }
  SUBCASE("a host under a pattern (its own bucket, label \"other\")") {
    REQUIRE(b.events.configure({wk::config::event_log::output::off, {}}, 50, {"*.wild.example"})
                .empty());
    b.validation_hit("a.wild.example");
    CHECK(allocations_per_request(b.w, b.st, b.conn, 10'000) == 0.0);
  }
}

TEST_CASE("an origin request's bookkeeping allocates nothing once warm") {
  bench b;
  b.st.decision.kind = wk::routing::route_kind::origin;
  b.st.decision.host = "tenant.example";
  b.st.upstream = &b.w.runtime->origin;
  b.st.target = "/index.html";
  b.w.log.set_destination(dev_null(), wk::config::log_format::combined);
  CHECK(allocations_per_request(b.w, b.st, b.conn, 10'000) == 0.0);
}

TEST_CASE("routing a request allocates nothing once its decision and scratch are warm") {
  wk::upstream::resolver_registry dns;
  const auto rt = make_runtime(dns);
  wk::routing::decision d;
  wk::routing::route_scratch scratch;
  const auto allocations_routing = [&](const wk::routing::request_facts& facts) {
    for (int i = 0; i < 10; ++i) {
      wk::routing::route(rt->routes, facts, d, scratch);
    }
    const auto before = allocations.load();
    for (int i = 0; i < 10'000; ++i) {
      wk::routing::route(rt->routes, facts, d, scratch);
    }
    return allocations.load() - before;
  };
  wk::routing::request_facts facts;
  facts.method = "GET";
  facts.host = "Shop.Tenant-With-A-Long-Name.Example:80";
  facts.host_present = true;
  // Longer than any short-string buffer, with escapes, dot segments and a query.
  facts.target = "/catalogue/2026/%7Esummer/./items/../items/a-rather-long-product-name.html?x=%2f";
  CHECK(allocations_routing(facts) == 0);
  CHECK(d.kind == wk::routing::route_kind::origin);
  CHECK(d.host == "shop.tenant-with-a-long-name.example");
  facts.host = "a.wild.example";
  facts.target = "/.well-known/pki-validation/5D41402ABC4B2A76B9719D911017C592.txt";
  CHECK(allocations_routing(facts) == 0);
  CHECK(d.kind == wk::routing::route_kind::validation);
  CHECK(d.token == "5D41402ABC4B2A76B9719D911017C592.txt");
  facts.target = "/.well-known/pki-validation/%2e%2e/secret";
  CHECK(allocations_routing(facts) == 0);
  CHECK(d.kind == wk::routing::route_kind::reject);
}

TEST_CASE("the replaced operator new counts (else every check above would pass)") {
  const auto before = allocations.load();
  std::string s(1000, 'x');
  const char* volatile data = s.data();
  CHECK(data[999] == 'x');
  CHECK(allocations.load() - before >= 1);
}
