#include "validation/host_activity.hpp"

#include <algorithm>

namespace wk::validation {

host_activity::host_activity(std::vector<std::string> hosts, const host_activity* previous)
    : hosts_(std::move(hosts)) {
  std::sort(hosts_.begin(), hosts_.end());
  hosts_.erase(std::unique(hosts_.begin(), hosts_.end()), hosts_.end());
  seen_ = std::make_unique<std::atomic<std::int64_t>[]>(hosts_.size());
  for (std::size_t i = 0; i < hosts_.size(); ++i) {
    std::int64_t t = 0;
    if (previous != nullptr) {
      if (const auto at = previous->last(hosts_[i])) {
        t = std::chrono::duration_cast<std::chrono::seconds>(at->time_since_epoch()).count();
      }
    }
    seen_[i].store(t, std::memory_order_relaxed);
  }
}

void host_activity::touch(std::string_view host, clock::time_point now) const noexcept {
  const auto it = std::lower_bound(hosts_.begin(), hosts_.end(), host,
                                   [](const std::string& a, std::string_view b) { return a < b; });
  if (it == hosts_.end() || *it != host) {
    return;
  }
  auto& cell = seen_[static_cast<std::size_t>(it - hosts_.begin())];
  const std::int64_t s =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  // Written at most once a second per host: workers do not fight over the cache line.
  if (cell.load(std::memory_order_relaxed) != s) {
    cell.store(s, std::memory_order_relaxed);
  }
}

std::optional<host_activity::clock::time_point> host_activity::last(std::string_view host) const {
  const auto it = std::lower_bound(hosts_.begin(), hosts_.end(), host,
                                   [](const std::string& a, std::string_view b) { return a < b; });
  if (it == hosts_.end() || *it != host) {
    return std::nullopt;
  }
  const std::int64_t s =
      seen_[static_cast<std::size_t>(it - hosts_.begin())].load(std::memory_order_relaxed);
  if (s == 0) {
    return std::nullopt;
  }
  return clock::time_point(std::chrono::seconds(s));
}

}  // namespace wk::validation
