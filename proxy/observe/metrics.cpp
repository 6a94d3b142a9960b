#include "observe/metrics.hpp"

#include "core/failure.hpp"
#include "observe/counters.hpp"

#include <charconv>
#include <cmath>

namespace wk::observe {

void histogram::observe(double seconds) {
  std::size_t i = 0;
  while (i < duration_buckets.size() && seconds > duration_buckets[i]) {
    ++i;
  }
  buckets_[i].add();
  count_.add();
  sum_.store(sum_.load(std::memory_order_relaxed) + seconds, std::memory_order_relaxed);
}

std::string escape_label(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

// One worker-set of labelled counters summed over every worker, ordered by label values.
template <std::size_t N>
std::map<std::array<std::string, N>, std::uint64_t>
merged(std::span<const worker_metrics* const> workers,
       labelled_counters<N> worker_metrics::*which) {
  std::map<std::array<std::string, N>, std::uint64_t> out;
  for (const auto* w : workers) {
    (w->*which).for_each(
        [&out](const std::array<std::string, N>& labels, std::uint64_t n) { out[labels] += n; });
  }
  return out;
}

std::string number(double v) {
  if (std::isinf(v)) {
    return v > 0 ? "+Inf" : "-Inf";
  }
  char buf[64];
  // The shortest text that reads back as the same double: "0.0005", not "0.00050000000000000001".
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

// Writes families in the text format: HELP and TYPE once, then the samples.
class exposition {
public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }

  void sample(std::string_view name,
              std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
              std::string_view value) {
    std::vector<std::pair<std::string, std::string>> l;
    for (const auto& [k, v] : labels) {
      l.emplace_back(k, v);
    }
    sample(name, l, value);
  }

  void sample(std::string_view name, const std::vector<std::pair<std::string, std::string>>& labels,
              std::string_view value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      bool first = true;
      for (const auto& [k, v] : labels) {
        out_ += first ? "" : ",";
        out_ += k;
        out_ += "=\"";
        out_ += escape_label(v);
        out_ += '"';
        first = false;
      }
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }

  std::string take() { return std::move(out_); }

private:
  std::string out_;
};

template <class F> std::uint64_t sum_workers(const scrape_input& in, F&& f) {
  std::uint64_t total = 0;
  for (const auto* w : in.workers) {
    total += f(*w);
  }
  return total;
}

template <class F> std::int64_t sum_gauges(const scrape_input& in, F&& f) {
  std::int64_t total = 0;
  for (const auto* w : in.workers) {
    total += f(*w);
  }
  return total;
}

void requests(exposition& e, const scrape_input& in) {
  e.family("wkproxy_requests_total", "counter",
           "Requests answered, by listener, route and status class (passthrough: connections).");
  for (std::size_t l = 0; l < in.listener_labels.size() && l < max_listener_labels; ++l) {
    for (std::size_t r = 0; r < worker_metrics::routes; ++r) {
      for (std::size_t c = 0; c < code_class_names.size(); ++c) {
        const auto n =
            sum_workers(in, [&](const worker_metrics& w) { return w.requests[l][r][c].get(); });
        if (n == 0) {
          continue;  // a series appears once it has happened; keeps the output small
        }
        e.sample("wkproxy_requests_total",
                 {{"listener", in.listener_labels[l]},
                  {"route", route_names[r]},
                  {"code", code_class_names[c]}},
                 std::to_string(n));
      }
    }
  }
  e.family("wkproxy_request_duration_seconds", "histogram",
           "Time from the first byte of a request to the end of its answer, by route.");
  for (std::size_t r = 0; r < worker_metrics::routes; ++r) {
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b <= duration_buckets.size(); ++b) {
      cumulative +=
          sum_workers(in, [&](const worker_metrics& w) { return w.duration[r].bucket(b); });
      const std::string le =
          b < duration_buckets.size() ? number(duration_buckets[b]) : std::string("+Inf");
      e.sample("wkproxy_request_duration_seconds_bucket", {{"route", route_names[r]}, {"le", le}},
               std::to_string(cumulative));
    }
    double sum = 0;
    for (const auto* w : in.workers) {
      sum += w->duration[r].sum();
    }
    e.sample("wkproxy_request_duration_seconds_sum", {{"route", route_names[r]}}, number(sum));
    e.sample("wkproxy_request_duration_seconds_count", {{"route", route_names[r]}},
             std::to_string(cumulative));
  }
  e.family("wkproxy_received_bytes_total", "counter",
           "Body bytes received from clients (passthrough: every byte), by route.");
  for (std::size_t r = 0; r < worker_metrics::routes; ++r) {
    e.sample("wkproxy_received_bytes_total", {{"route", route_names[r]}},
             std::to_string(
                 sum_workers(in, [&](const worker_metrics& w) { return w.bytes_in[r].get(); })));
  }
  e.family("wkproxy_sent_bytes_total", "counter",
           "Body bytes sent to clients (passthrough: every byte), by route.");
  for (std::size_t r = 0; r < worker_metrics::routes; ++r) {
    e.sample("wkproxy_sent_bytes_total", {{"route", route_names[r]}},
             std::to_string(
                 sum_workers(in, [&](const worker_metrics& w) { return w.bytes_out[r].get(); })));
  }
}

void upstreams(exposition& e, const scrape_input& in) {
  e.family("wkproxy_upstream_failures_total", "counter",
           "Failed upstream connections or exchanges, by upstream and reason.");
  for (std::size_t u = 0; u < worker_metrics::upstreams; ++u) {
    for (std::size_t k = 0; k < worker_metrics::upstream_errors; ++k) {
      e.sample("wkproxy_upstream_failures_total",
               {{"upstream", upstream_names[u]}, {"error", upstream_error_names[k]}},
               std::to_string(sum_workers(
                   in, [&](const worker_metrics& w) { return w.upstream_failures[u][k].get(); })));
    }
  }
  e.family("wkproxy_upstream_pool_hits_total", "counter",
           "Requests sent on a reused (pooled) upstream connection.");
  for (std::size_t u = 0; u < worker_metrics::upstreams; ++u) {
    e.sample("wkproxy_upstream_pool_hits_total", {{"upstream", upstream_names[u]}},
             std::to_string(
                 sum_workers(in, [&](const worker_metrics& w) { return w.pool_hits[u].get(); })));
  }
  e.family("wkproxy_upstream_pool_misses_total", "counter",
           "Upstream connections opened because no pooled one was available.");
  for (std::size_t u = 0; u < worker_metrics::upstreams; ++u) {
    e.sample("wkproxy_upstream_pool_misses_total", {{"upstream", upstream_names[u]}},
             std::to_string(
                 sum_workers(in, [&](const worker_metrics& w) { return w.pool_misses[u].get(); })));
  }
  e.family("wkproxy_upstream_pool_idle_connections", "gauge",
           "Idle upstream connections kept for reuse.");
  for (std::size_t u = 0; u < worker_metrics::upstreams; ++u) {
    e.sample("wkproxy_upstream_pool_idle_connections", {{"upstream", upstream_names[u]}},
             std::to_string(
                 sum_gauges(in, [&](const worker_metrics& w) { return w.pool_idle[u].get(); })));
  }
}

void process(exposition& e, const scrape_input& in) {
  e.family("wkproxy_downstream_connections", "gauge", "Open client connections, by listener.");
  for (const auto& [listener, n] : in.open_connections) {
    e.sample("wkproxy_downstream_connections", {{"listener", listener}}, std::to_string(n));
  }
  e.family("wkproxy_tunnels", "gauge", "Open byte tunnels (101 upgrades and passthrough).");
  e.sample("wkproxy_tunnels", {},
           std::to_string(sum_gauges(in, [](const worker_metrics& w) { return w.tunnels.get(); })));
  e.family("wkproxy_parked_connections", "gauge",
           "Quiet keep-alive client connections parked (no buffer, no coroutine) right now.");
  e.sample("wkproxy_parked_connections", {},
           std::to_string(sum_gauges(in, [](const worker_metrics& w) { return w.parked.get(); })));

  const auto& c = process_counters();
  e.family("wkproxy_request_failures_total", "counter",
           "Requests that failed, by kind (also in the access log's error field).");
  for (std::size_t i = 1; i < static_cast<std::size_t>(core::failure::count_); ++i) {
    e.sample("wkproxy_request_failures_total",
             {{"kind", core::name_of(static_cast<core::failure>(i))}},
             std::to_string(c.failures[i].load(std::memory_order_relaxed)));
  }
  static constexpr std::string_view limit_names[] = {"connections", "requests_per_connection",
                                                     "pipelined", "idle_evicted"};
  e.family("wkproxy_limit_hits_total", "counter", "Connections ended by a configured limit.");
  for (std::size_t i = 0; i < c.limits.size(); ++i) {
    e.sample("wkproxy_limit_hits_total", {{"limit", limit_names[i]}},
             std::to_string(c.limits[i].load(std::memory_order_relaxed)));
  }
  e.family("wkproxy_accept_errors_total", "counter",
           "Failed accepts on the client and admin listeners (e.g. out of descriptors), each "
           "followed by a backoff.");
  e.sample("wkproxy_accept_errors_total", {},
           std::to_string(c.accept_errors.load(std::memory_order_relaxed)));
  e.family("wkproxy_connection_failures_total", "counter",
           "Connections ended before any request: TLS, PROXY protocol and passthrough failures.");
  for (std::size_t i = 0; i < c.connections.size(); ++i) {
    e.sample("wkproxy_connection_failures_total", {{"event", connection_event_names[i]}},
             std::to_string(c.connections[i].load(std::memory_order_relaxed)));
  }
  e.family("wkproxy_config_reloads_total", "counter", "Configuration reloads (SIGHUP), by result.");
  e.sample("wkproxy_config_reloads_total", {{"result", "ok"}},
           std::to_string(c.reloads.load(std::memory_order_relaxed)));
  e.sample("wkproxy_config_reloads_total", {{"result", "failed"}},
           std::to_string(c.reload_failures.load(std::memory_order_relaxed)));
  e.family("wkproxy_config_last_reload_timestamp_seconds", "gauge",
           "When the configuration was last loaded or a reload last tried (Unix time).");
  e.sample("wkproxy_config_last_reload_timestamp_seconds", {}, number(in.last_reload_time));
  e.family("wkproxy_config_last_reload_successful", "gauge",
           "1 when the last reload was applied, 0 when it was refused.");
  e.sample("wkproxy_config_last_reload_successful", {}, in.last_reload_ok ? "1" : "0");
  e.family("wkproxy_upgrades_failed_total", "counter",
           "Binary upgrades (SIGUSR2) whose new process never got ready.");
  e.sample("wkproxy_upgrades_failed_total", {},
           std::to_string(c.upgrades_failed.load(std::memory_order_relaxed)));
  e.family("wkproxy_upgrade_connections_total", "counter",
           "Client connections moved by binary upgrades: sent to the new process (handed_off) "
           "or received from the old one (taken_over).");
  e.sample("wkproxy_upgrade_connections_total", {{"direction", "handed_off"}},
           std::to_string(c.connections_handed_off.load(std::memory_order_relaxed)));
  e.sample("wkproxy_upgrade_connections_total", {{"direction", "taken_over"}},
           std::to_string(c.connections_taken_over.load(std::memory_order_relaxed)));

  e.family("wkproxy_validation_requests_total", "counter",
           "Requests on the validation route, by tenant domain (configured names only, else "
           "\"other\"), action and status code.");
  for (const auto& [labels, n] : merged(in.workers, &worker_metrics::validation_requests)) {
    e.sample("wkproxy_validation_requests_total",
             {{"domain", labels[0]}, {"action", labels[1]}, {"code", labels[2]}},
             std::to_string(n));
  }
  e.family("wkproxy_passthrough_connections_total", "counter",
           "TLS passthrough connections, by listener and SNI (configured names only, else "
           "\"other\").");
  for (const auto& [labels, n] : merged(in.workers, &worker_metrics::passthrough_connections)) {
    e.sample("wkproxy_passthrough_connections_total", {{"listener", labels[0]}, {"sni", labels[1]}},
             std::to_string(n));
  }
  e.family("wkproxy_build_info", "gauge", "Version and source revision of this binary.");
  e.sample("wkproxy_build_info", {{"version", in.version}, {"revision", in.revision}}, "1");
  e.family("process_start_time_seconds", "gauge", "Start time of the process (Unix time).");
  e.sample("process_start_time_seconds", {}, number(in.start_time));
}

}  // namespace

std::string prometheus_text(const scrape_input& in) {
  exposition e;
  requests(e, in);
  upstreams(e, in);
  process(e, in);
  return e.take();
}

}  // namespace wk::observe
