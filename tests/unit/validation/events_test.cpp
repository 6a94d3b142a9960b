// The validation-event store keeps a bounded amount whatever hosts the Internet asks for
// (issue 18, finding 1): events go to the bucket of a configured name or pattern, or to one
// shared bucket, and their strings are truncated.

#include "config/load.hpp"
#include "validation/events.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace cfg = wk::config;
using wk::validation::event;
using wk::validation::event_store;

namespace {

cfg::event_log off() {
  cfg::event_log log;
  log.kind = cfg::event_log::output::off;
  return log;
}

event make_event(std::string host, std::string file = "x.txt") {
  event e;
  e.time = std::chrono::system_clock::now();
  e.client = "203.0.113.7:51234";
  e.user_agent = "CA/1.0";
  e.domain = std::move(host);
  e.file = std::move(file);
  e.mode = "redirect";
  e.action = "not_found";
  e.status = 404;
  return e;
}

std::size_t total(const std::map<std::string, std::vector<event>>& snapshot) {
  std::size_t n = 0;
  for (const auto& [bucket, list] : snapshot) {
    n += list.size();
  }
  return n;
}

}  // namespace

TEST_CASE("hosts share the bucket of their configured name, pattern or the other bucket") {
  event_store store;
  REQUIRE(store.configure(off(), 50, {"example.com", "*.wild.example", "token.example"}).empty());
  CHECK(store.bucket_of("example.com") == "example.com");
  CHECK(store.bucket_of("token.example") == "token.example");
  CHECK(store.bucket_of("a.wild.example") == "*.wild.example");
  // "*.suffix" matches exactly one more label, like the allow-list.
  CHECK(store.bucket_of("a.b.wild.example") == event_store::other_bucket);
  CHECK(store.bucket_of("wild.example") == event_store::other_bucket);
  CHECK(store.bucket_of(".wild.example") == event_store::other_bucket);
  CHECK(store.bucket_of("www.example.com") == event_store::other_bucket);
  CHECK(store.bucket_of("other") == event_store::other_bucket);

  SUBCASE("\"*\" takes what no name or more specific pattern has") {
    REQUIRE(store.configure(off(), 50, {"example.com", "*.wild.example", "*"}).empty());
    CHECK(store.bucket_of("a.wild.example") == "*.wild.example");
    CHECK(store.bucket_of("example.com") == "example.com");
    CHECK(store.bucket_of("anything.test") == "*");
    CHECK(store.bucket_of("192.0.2.1") == "*");
  }
}

TEST_CASE("ten thousand hosts under a pattern keep one bucket of events_per_domain events") {
  event_store store;
  REQUIRE(store.configure(off(), 50, {"example.com", "*.wild.example"}).empty());
  const std::string big_ua(16'000, 'u');
  for (int n = 0; n < 10'000; ++n) {
    auto e = make_event("h" + std::to_string(n) + ".wild.example");
    e.user_agent = big_ua;
    store.record(e);
    store.record(make_event("u" + std::to_string(n) + ".unknown.example"));
  }
  store.record(make_event("example.com", "aaa.txt"));
  const auto snap = store.snapshot();
  REQUIRE(snap.size() == 3);
  REQUIRE(snap.contains("*.wild.example"));
  REQUIRE(snap.contains("example.com"));
  REQUIRE(snap.contains(std::string(event_store::other_bucket)));
  const auto& wild = snap.at("*.wild.example");
  REQUIRE(wild.size() == 50);
  // The newest last, each with its real host.
  CHECK(wild.back().domain == "h9999.wild.example");
  CHECK(wild.front().domain == "h9950.wild.example");
  CHECK(wild.back().user_agent.size() == event_store::max_user_agent_bytes);
  CHECK(wild.back().user_agent.capacity() < 2 * event_store::max_user_agent_bytes);
  CHECK(snap.at(std::string(event_store::other_bucket)).size() == 50);
  CHECK(snap.at(std::string(event_store::other_bucket)).back().domain == "u9999.unknown.example");
  CHECK(snap.at("example.com").size() == 1);
}

TEST_CASE("every stored string is truncated to its stated limit") {
  event_store store;
  REQUIRE(store.configure(off(), 5, {"*"}).empty());
  event e = make_event(std::string(1000, 'h') + ".example", std::string(5000, 'f'));
  e.client = std::string(500, 'c');
  e.user_agent = std::string(100'000, '\xff');
  e.mode = std::string(500, 'm');
  e.action = std::string(500, 'a');
  e.upstream = std::string(5000, 'p');
  e.location = "https://validation.example/" + std::string(5000, 'l');
  e.error = std::string(500, 'e');
  store.record(e);
  const auto snap = store.snapshot();
  REQUIRE(snap.at("*").size() == 1);
  const auto& kept = snap.at("*").front();
  CHECK(kept.client.size() == event_store::max_short_bytes);
  CHECK(kept.user_agent.size() == event_store::max_user_agent_bytes);
  CHECK(kept.domain.size() == event_store::max_host_bytes);
  CHECK(kept.file.size() == event_store::max_file_bytes);
  CHECK(kept.mode.size() == event_store::max_short_bytes);
  CHECK(kept.action.size() == event_store::max_short_bytes);
  CHECK(kept.upstream.size() == event_store::max_location_bytes);
  CHECK(kept.location.size() == event_store::max_location_bytes);
  CHECK(kept.location.starts_with("https://validation.example/lll"));
  CHECK(kept.error.size() == event_store::max_short_bytes);
}

TEST_CASE("the number of buckets has a hard cap whatever the configuration names") {
  event_store store;
  std::vector<std::string> names;
  for (std::size_t n = 0; n < event_store::max_buckets + 100; ++n) {
    names.push_back("d" + std::to_string(n) + ".example");
  }
  REQUIRE(store.configure(off(), 2, names).empty());
  for (const auto& name : names) {
    store.record(make_event(name));
    store.record(make_event("x." + name));
  }
  const auto snap = store.snapshot();
  CHECK(snap.size() == event_store::max_buckets);
  CHECK(total(snap) <= event_store::max_buckets * 2);
  // The first max_buckets - 1 names have their own; the rest share the other bucket.
  CHECK(snap.contains(names[event_store::max_buckets - 2]));
  CHECK_FALSE(snap.contains(names[event_store::max_buckets - 1]));
  CHECK(store.bucket_of(names.back()) == event_store::other_bucket);
}

TEST_CASE("a reload drops the buckets of names no longer configured and trims the rest") {
  event_store store;
  REQUIRE(store.configure(off(), 10, {"a.example", "b.example", "*.w.example"}).empty());
  for (int i = 0; i < 10; ++i) {
    store.record(make_event("a.example"));
    store.record(make_event("b.example"));
    store.record(make_event("h" + std::to_string(i) + ".w.example"));
    store.record(make_event("nobody.example"));
  }
  REQUIRE(store.configure(off(), 3, {"a.example", "*.w.example"}).empty());
  const auto snap = store.snapshot();
  CHECK(snap.size() == 3);
  CHECK(snap.at("a.example").size() == 3);
  CHECK(snap.at("*.w.example").size() == 3);
  CHECK(snap.at("*.w.example").back().domain == "h9.w.example");
  CHECK(snap.at(std::string(event_store::other_bucket)).size() == 3);
  CHECK_FALSE(snap.contains("b.example"));
  // b.example's next event is one of the other bucket's now.
  CHECK(store.bucket_of("b.example") == event_store::other_bucket);
}

TEST_CASE("a full bucket keeps its newest events in order across wrap-around and resizes") {
  event_store store;
  REQUIRE(store.configure(off(), 4, {"a.example"}).empty());
  const auto files = [&store] {
    std::vector<std::string> out;
    const auto snap = store.snapshot();
    for (const auto& e : snap.at("a.example")) {
      out.push_back(e.file);
    }
    return out;
  };
  for (int i = 0; i < 7; ++i) {  // wraps once and a half
    store.record(make_event("a.example", std::to_string(i)));
  }
  CHECK(files() == std::vector<std::string>{"3", "4", "5", "6"});
  // Shrinking keeps the newest; growing keeps all and fills up in order from the oldest.
  REQUIRE(store.configure(off(), 2, {"a.example"}).empty());
  CHECK(files() == std::vector<std::string>{"5", "6"});
  store.record(make_event("a.example", "7"));
  CHECK(files() == std::vector<std::string>{"6", "7"});
  REQUIRE(store.configure(off(), 3, {"a.example"}).empty());
  store.record(make_event("a.example", "8"));
  store.record(make_event("a.example", "9"));
  CHECK(files() == std::vector<std::string>{"7", "8", "9"});
  // A slot that held a long string and now holds a short one says only the short one.
  event long_one = make_event("a.example", std::string(100, 'f'));
  long_one.user_agent = std::string(200, 'u');
  store.record(long_one);
  store.record(make_event("a.example", "10"));
  store.record(make_event("a.example", "11"));
  store.record(make_event("a.example", "12"));
  const auto kept = store.snapshot().at("a.example");
  CHECK(kept.front().file == "10");
  CHECK(kept.front().user_agent == "CA/1.0");
}

TEST_CASE("bucket_names: the configured domains, then the token domains not listed") {
  const auto loaded = cfg::load_string(
      "version: 1\n"
      "listen: [\"127.0.0.1:8080\"]\n"
      "origin: http://127.0.0.1:8081\n"
      "cloudfront: http://127.0.0.1:8082\n"
      "domains: [example.com, \"*.shop.example\"]\n"
      "tokens:\n"
      "  - domain: example.com\n"
      "    redirect_from: http://example.com/.well-known/pki-validation/aaa.txt\n"
      "    redirect_to: https://validation.example/aaa.txt\n"
      "  - domain: a.shop.example\n"
      "    redirect_from: http://a.shop.example/.well-known/pki-validation/bbb.txt\n"
      "    redirect_to: https://validation.example/bbb.txt\n",
      "test.yaml", [](std::string_view) { return std::optional<std::string>{}; });
  REQUIRE(loaded.errors.empty());
  REQUIRE(loaded.cfg);
  CHECK(wk::validation::bucket_names(*loaded.cfg) ==
        std::vector<std::string>{"example.com", "*.shop.example", "a.shop.example"});
}
