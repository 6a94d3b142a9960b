#include "observe/metrics.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace o = wk::observe;

TEST_CASE("histogram buckets, count and sum") {
  o::histogram h;
  h.observe(0.0001);  // first bucket (<= 0.5 ms)
  h.observe(0.0005);  // the bound itself belongs to its bucket
  h.observe(0.003);   // <= 5 ms
  h.observe(60);      // above every bound
  CHECK(h.bucket(0) == 2);
  CHECK(h.bucket(3) == 1);
  CHECK(h.bucket(o::duration_buckets.size()) == 1);
  CHECK(h.count() == 4);
  CHECK(h.sum() == doctest::Approx(60.0036));
}

TEST_CASE("workers are summed, listeners labelled, label values escaped") {
  o::worker_metrics a;
  o::worker_metrics b;
  a.record_request(0, o::route_label::origin, 200, std::chrono::milliseconds(2), 10, 20);
  b.record_request(0, o::route_label::origin, 204, std::chrono::milliseconds(3), 1, 2);
  b.record_request(1, o::route_label::reject, 400, std::chrono::milliseconds(1), 0, 0);
  const o::worker_metrics* workers[] = {&a, &b};
  const std::string labels[] = {"127.0.0.1:80", "weird\"\\\nname"};
  o::scrape_input in;
  in.version = "1.2.3";
  in.revision = "abc";
  in.workers = workers;
  in.listener_labels = labels;
  const auto text = o::prometheus_text(in);
  CHECK(
      text.find(
          "wkproxy_requests_total{listener=\"127.0.0.1:80\",route=\"origin\",code=\"2xx\"} 2\n") !=
      std::string::npos);
  CHECK(text.find("wkproxy_requests_total{listener=\"weird\\\"\\\\\\nname\",route=\"reject\",code="
                  "\"4xx\"} 1\n") != std::string::npos);
  CHECK(text.find("wkproxy_request_duration_seconds_bucket{route=\"origin\",le=\"0.0025\"} 1\n") !=
        std::string::npos);
  CHECK(text.find("wkproxy_request_duration_seconds_bucket{route=\"origin\",le=\"+Inf\"} 2\n") !=
        std::string::npos);
  CHECK(text.find("wkproxy_request_duration_seconds_count{route=\"origin\"} 2\n") !=
        std::string::npos);
  CHECK(text.find("wkproxy_received_bytes_total{route=\"origin\"} 11\n") != std::string::npos);
  CHECK(text.find("wkproxy_build_info{version=\"1.2.3\",revision=\"abc\"} 1\n") !=
        std::string::npos);
  // A listener index past the last label shares the last one instead of writing out of bounds.
  a.record_request(1000, o::route_label::origin, 200, std::chrono::milliseconds(1), 0, 0);
  CHECK(a.requests[o::max_listener_labels - 1][0][2].get() == 1);
}

TEST_CASE("labelled counters: per worker, summed by label values, ordered, never confused") {
  o::worker_metrics a;
  o::worker_metrics b;
  a.validation_requests.add({"example.com", "forward", "200"});
  a.validation_requests.add({"example.com", "forward", "200"}, 2);
  b.validation_requests.add({"example.com", "forward", "200"});
  b.validation_requests.add({"other", "not_found", "404"});
  // Values that would make the same key if simply joined stay apart (length-prefixed keys).
  a.passthrough_connections.add({std::string_view("a\0b", 3), "c"});
  a.passthrough_connections.add({"a", std::string_view("\0bc", 3)});
  const o::worker_metrics* workers[] = {&a, &b};
  o::scrape_input in;
  in.workers = workers;
  const auto text = o::prometheus_text(in);
  const auto first = text.find(
      "wkproxy_validation_requests_total{domain=\"example.com\",action=\"forward\",code=\"200\"} "
      "4\n");
  const auto second = text.find(
      "wkproxy_validation_requests_total{domain=\"other\",action=\"not_found\",code=\"404\"} 1\n");
  CHECK(first != std::string::npos);
  CHECK(second != std::string::npos);
  CHECK(first < second);
  std::size_t sets = 0;
  a.passthrough_connections.for_each([&](const auto& labels, std::uint64_t n) {
    CHECK(n == 1);
    CHECK(labels[0].size() + labels[1].size() == 4);
    ++sets;
  });
  CHECK(sets == 2);
}

TEST_CASE("labelled counters: a reader walking while the writer adds sees whole entries") {
  o::labelled_counters<2> c;
  std::atomic<bool> done{false};
  std::thread reader([&] {
    while (!done.load()) {
      c.for_each([](const std::array<std::string, 2>& labels, std::uint64_t n) {
        CHECK(labels[0].starts_with("name-"));
        CHECK(labels[1] == "x");
        CHECK(n >= 1);
      });
    }
  });
  for (int i = 0; i < 2000; ++i) {
    const auto name = "name-" + std::to_string(i % 500);
    c.add({name, "x"});
  }
  done = true;
  reader.join();
  std::uint64_t total = 0;
  std::size_t sets = 0;
  c.for_each([&](const auto&, std::uint64_t n) {
    total += n;
    ++sets;
  });
  CHECK(sets == 500);
  CHECK(total == 2000);
}

TEST_CASE("every metric family is documented in docs/operations.md") {
  std::ifstream f(std::string(WK_SOURCE_DIR) + "/docs/operations.md");
  std::stringstream s;
  s << f.rdbuf();
  const std::string operations = s.str();
  REQUIRE(!operations.empty());
  const auto text = o::prometheus_text(o::scrape_input{});
  std::istringstream lines(text);
  std::set<std::string> families;
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("# TYPE ")) {
      families.insert(line.substr(7, line.find(' ', 7) - 7));
    }
  }
  CHECK(families.size() >= 18);
  for (const auto& name : families) {
    CAPTURE(name);
    CHECK(operations.find("`" + name + "`") != std::string::npos);
  }
}
