#pragma once
// Request metrics, one set per worker. Each worker is the only writer of its own set, so a
// counter update is a relaxed load and store (a plain add in machine code: no lock, no locked
// instruction, no shared cache line between workers); the admin listener reads every worker's
// set on the main thread and sums them when Prometheus scrapes. Label values are small fixed
// enums or indexes fixed by the config, so cardinality is bounded by construction.

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace wk::observe {

// A monotonic counter with one writing thread and any number of readers.
class counter {
public:
  void add(std::uint64_t n = 1) {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::uint64_t get() const { return value_.load(std::memory_order_relaxed); }

private:
  std::atomic<std::uint64_t> value_{0};
};

// A value that goes up and down, with one writing thread.
class gauge {
public:
  void add(std::int64_t n) {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void set(std::int64_t v) { value_.store(v, std::memory_order_relaxed); }
  std::int64_t get() const { return value_.load(std::memory_order_relaxed); }

private:
  std::atomic<std::int64_t> value_{0};
};

// Upper bounds (seconds) of the request duration histogram: 0.5 ms to 10 s.
inline constexpr std::array<double, 14> duration_buckets{
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

class histogram {
public:
  void observe(double seconds);
  // Per bucket, not cumulative; the last entry counts values above every bound.
  std::uint64_t bucket(std::size_t i) const { return buckets_[i].get(); }
  std::uint64_t count() const { return count_.get(); }
  double sum() const { return sum_.load(std::memory_order_relaxed); }

private:
  std::array<counter, duration_buckets.size() + 1> buckets_;
  counter count_;
  std::atomic<double> sum_{0};
};

enum class route_label : std::size_t { origin, validation, reject, passthrough, count_ };
inline constexpr std::array<std::string_view, 4> route_names{"origin", "validation", "reject",
                                                             "passthrough"};

// 0 (no response: the client left, or a connection-level failure), then 1xx..5xx.
inline constexpr std::array<std::string_view, 6> code_class_names{"none", "1xx", "2xx",
                                                                  "3xx",  "4xx", "5xx"};
inline std::size_t code_class(unsigned status) {
  return status >= 100 && status < 600 ? status / 100 : 0;
}

enum class upstream_label : std::size_t { origin, cloudfront, acm, passthrough, count_ };
inline constexpr std::array<std::string_view, 4> upstream_names{"origin", "cloudfront", "acm",
                                                                "passthrough"};

// Why an upstream exchange failed: the upstream kinds of core::failure, numbered densely for the
// metric arrays.
enum class upstream_error : std::size_t {
  unresolved,
  refused,
  connect_timeout,
  tls,
  reset,
  bad_response,
  timeout,
  count_
};
inline constexpr std::array<std::string_view, 7> upstream_error_names{
    "unresolved", "refused", "connect_timeout", "tls", "reset", "bad_response", "timeout"};

// Listeners are told apart by an index the server assigns per listen address (the same
// address keeps its index across reloads); beyond the last slot they share it.
inline constexpr std::size_t max_listener_labels = 32;

// Counters keyed by label values known only at run time (validation domains, passthrough
// server names), one set per worker like the rest of worker_metrics: one writing thread, any
// number of readers. The writer finds a label set's counter through an index only it touches
// (one hash lookup of the values, no lock, no allocation once the set was seen); readers walk
// an append-only list whose entries are published (release) after their values are written,
// so a scrape never blocks a worker. Entries live as long as the set: the caller bounds the
// values (configured names, else "other").
template <std::size_t N> class labelled_counters {
public:
  using values = std::array<std::string_view, N>;

  labelled_counters() = default;
  labelled_counters(const labelled_counters&) = delete;
  labelled_counters& operator=(const labelled_counters&) = delete;

  // Writer thread only.
  void add(const values& v, std::uint64_t n = 1) {
    key_.clear();
    for (auto part : v) {
      // Length-prefixed: no two different sets of values make the same key, whatever bytes
      // they hold.
      const auto len = static_cast<std::uint32_t>(part.size());
      key_.append(reinterpret_cast<const char*>(&len), sizeof len);
      key_.append(part);
    }
    if (auto it = index_.find(std::string_view(key_)); it != index_.end()) {
      it->second->count.add(n);
      return;
    }
    auto e = std::make_unique<entry>();
    for (std::size_t i = 0; i < N; ++i) {
      e->labels[i] = std::string(v[i]);
    }
    e->count.add(n);
    entry* raw = e.get();
    index_.emplace(key_, raw);
    entries_.push_back(std::move(e));
    if (last_ == nullptr) {
      first_.store(raw, std::memory_order_release);
    } else {
      last_->next.store(raw, std::memory_order_release);
    }
    last_ = raw;
  }

  // Any thread: f(const std::array<std::string, N>& labels, std::uint64_t count) for every
  // label set seen so far, oldest first.
  template <class F> void for_each(F&& f) const {
    for (const entry* e = first_.load(std::memory_order_acquire); e != nullptr;
         e = e->next.load(std::memory_order_acquire)) {
      f(e->labels, e->count.get());
    }
  }

private:
  struct entry {
    std::array<std::string, N> labels;
    counter count;
    std::atomic<const entry*> next{nullptr};
  };
  struct key_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  std::atomic<const entry*> first_{nullptr};
  // The writer's own: the last entry, every entry (owned), and the index with its key buffer.
  entry* last_ = nullptr;
  std::vector<std::unique_ptr<entry>> entries_;
  std::unordered_map<std::string, entry*, key_hash, std::equal_to<>> index_;
  std::string key_;
};

struct worker_metrics {
  static constexpr std::size_t routes = static_cast<std::size_t>(route_label::count_);
  static constexpr std::size_t upstreams = static_cast<std::size_t>(upstream_label::count_);
  static constexpr std::size_t upstream_errors = static_cast<std::size_t>(upstream_error::count_);

  // requests[listener][route][code class]
  std::array<std::array<std::array<counter, code_class_names.size()>, routes>, max_listener_labels>
      requests;
  std::array<histogram, routes> duration;  // per route
  std::array<counter, routes> bytes_in;    // body bytes from clients (passthrough: all bytes)
  std::array<counter, routes> bytes_out;   // body bytes to clients
  std::array<std::array<counter, upstream_errors>, upstreams> upstream_failures;
  std::array<counter, upstreams> pool_hits;    // a pooled connection was reused
  std::array<counter, upstreams> pool_misses;  // a new connection was opened
  std::array<gauge, upstreams> pool_idle;      // idle pooled connections now
  gauge tunnels;                               // 101 and passthrough tunnels open now
  gauge parked;  // keep-alive connections waiting in the parking lot now
  // Validation requests by domain (configured names, else "other"), action and status code.
  labelled_counters<3> validation_requests;
  // Passthrough connections by listener and SNI (configured names, else "other").
  labelled_counters<2> passthrough_connections;

  void record_request(std::size_t listener, route_label route, unsigned status,
                      std::chrono::steady_clock::duration took, std::uint64_t in,
                      std::uint64_t out) {
    const auto r = static_cast<std::size_t>(route);
    requests[listener < max_listener_labels ? listener : max_listener_labels - 1][r]
            [code_class(status)]
                .add();
    duration[r].observe(std::chrono::duration<double>(took).count());
    bytes_in[r].add(in);
    bytes_out[r].add(out);
  }
};

// Everything one scrape needs besides the process counters (observe/counters.hpp).
struct scrape_input {
  std::string version;
  std::string revision;
  double start_time = 0;  // Unix seconds
  std::span<const worker_metrics* const> workers;
  // Listener label per index (the listen address as written, e.g. "127.0.0.1:8080").
  std::span<const std::string> listener_labels;
  // Open client connections per listener label.
  std::vector<std::pair<std::string, std::size_t>> open_connections;
  double last_reload_time = 0;  // Unix seconds; the start time until a reload happens
  bool last_reload_ok = true;
};

// The Prometheus text exposition format (version 0.0.4) of every metric.
std::string prometheus_text(const scrape_input& in);

// Escapes a label value: backslash, double quote and newline.
std::string escape_label(std::string_view value);

}  // namespace wk::observe
