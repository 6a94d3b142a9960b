#include "observe/metrics.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>
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
