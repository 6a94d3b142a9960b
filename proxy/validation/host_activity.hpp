#pragma once
// When each followed tenant domain last had a request, of any kind: the "safe to remove wkproxy
// for this domain" signal (DNS points at CloudFront and no client has come here for the quiet
// period). Built with each snapshot for the tenants' domains only, so the set of hosts is
// bounded by the configuration, never by what clients send. The data path calls touch() once per
// request: a lookup in a sorted vector and, at most once a second per host, a relaxed store.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wk::validation {

class host_activity {
public:
  using clock = std::chrono::system_clock;

  // For `hosts` (lower-case names); times already known in `previous` are kept, so that a new
  // snapshot does not forget them.
  host_activity(std::vector<std::string> hosts, const host_activity* previous);

  // Any thread: `host` (normalized) had a request at `now`. Hosts not followed are ignored.
  void touch(std::string_view host, clock::time_point now) const noexcept;

  // When `host` last had a request; std::nullopt when never (since the process started).
  [[nodiscard]] std::optional<clock::time_point> last(std::string_view host) const;

  [[nodiscard]] bool empty() const { return hosts_.empty(); }

private:
  std::vector<std::string> hosts_;  // sorted, unique
  // Seconds since the epoch, 0 for never; one per host, in hosts_' order.
  std::unique_ptr<std::atomic<std::int64_t>[]> seen_;
};

}  // namespace wk::validation
