#pragma once
// Process-wide event counters: every failure kind (by core::failure value) and every limit
// hit. Relaxed atomics bumped on the error paths of any worker; read by the exit summary
// and the metrics exporter. Not on the hot path of a successful request.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string_view>

namespace wk::observe {

enum class limit_event : std::size_t {
  connections,              // a connection refused at limits.max_connections
  requests_per_connection,  // a connection closed at limits.max_requests_per_connection
  pipelined,                // a connection closed at limits.max_pipelined
  idle_evicted,  // an idle keep-alive connection closed to let a new one in at max_connections
  count_
};

// Things that end a connection before any request exists (no access-log line of their own).
enum class connection_event : std::size_t {
  tls_handshake_failed,  // a TLS-terminating listener's handshake failed
  proxy_untrusted,       // a PROXY-protocol listener refused a source outside its ranges
  proxy_invalid,         // a malformed PROXY header, or none within timeouts.header_read
  passthrough_not_tls,   // passthrough: the first bytes are not a TLS ClientHello
  passthrough_no_sni,    // passthrough: a ClientHello without SNI refused (on_no_sni: reject)
  passthrough_timeout,   // passthrough: no complete ClientHello within timeouts.header_read
  passthrough_upstream,  // passthrough: the upstream could not be reached
  count_
};

inline constexpr std::string_view connection_event_names[] = {
    "tls_handshake_failed", "proxy_untrusted",     "proxy_invalid",       "passthrough_not_tls",
    "passthrough_no_sni",   "passthrough_timeout", "passthrough_upstream"};
static_assert(std::size(connection_event_names) ==
              static_cast<std::size_t>(connection_event::count_));

struct counters {
  static constexpr std::size_t max_failure_kinds = 32;
  std::array<std::atomic<std::uint64_t>, max_failure_kinds> failures{};
  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(limit_event::count_)> limits{};
  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(connection_event::count_)>
      connections{};
  std::atomic<std::uint64_t> reloads{0};          // configs published by SIGHUP
  std::atomic<std::uint64_t> reload_failures{0};  // SIGHUP configs refused (old one kept)
  std::atomic<std::uint64_t> upgrades_failed{0};  // SIGUSR2 successors that never got ready
  std::atomic<std::uint64_t> accept_errors{0};    // failed accept() calls (EMFILE, ENFILE...)
  // Binary upgrade: client connections handed to the new process, and taken over from the old.
  std::atomic<std::uint64_t> connections_handed_off{0};
  std::atomic<std::uint64_t> connections_taken_over{0};

  void count_failure(std::size_t kind) {
    if (kind < failures.size()) {
      failures[kind].fetch_add(1, std::memory_order_relaxed);
    }
  }
  void count(limit_event e) {
    limits[static_cast<std::size_t>(e)].fetch_add(1, std::memory_order_relaxed);
  }
  void count(connection_event e) {
    connections[static_cast<std::size_t>(e)].fetch_add(1, std::memory_order_relaxed);
  }
};

// The one instance of the process.
counters& process_counters();

}  // namespace wk::observe
