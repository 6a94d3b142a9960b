#pragma once
// Per-worker pool of idle backend connections (keep-alive). Touched only by its worker's
// thread: no locks. Most recently used first, so the warmest connection is reused and the
// cold ones age out.

#include "upstream/connection.hpp"

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace wk::upstream {

class pool {
public:
  // Under `peek_after` of idle time a backend has practically never closed a connection it
  // kept open (keep-alive timeouts are seconds), so take() skips its check, a system call on
  // every request under load; the rare close in that window is caught by the session's retry
  // of a request that failed on a reused connection before any exchange.
  explicit pool(std::size_t max_idle_per_key = 512,
                std::chrono::steady_clock::duration peek_after = std::chrono::seconds(1))
      : max_idle_per_key_(max_idle_per_key), peek_after_(peek_after) {}

  // An idle connection for `key` that is still open (the peer has not closed it and sent
  // nothing unasked; checked for connections idle for peek_after or more), or null.
  // Connections found dead are dropped.
  std::unique_ptr<connection> take(const std::string& key);

  // Returns a connection after a complete exchange. Dropped when the key's list is full.
  void give(std::unique_ptr<connection> c);

  // Closes connections idle for longer than `max_idle`, and all connections whose key is not
  // in `keep` when `keep` is given (after a reload changed an upstream).
  void expire(std::chrono::steady_clock::duration max_idle);
  void retain_only(const std::vector<std::string>& keep);
  void clear() { idle_.clear(); }

  std::size_t idle_count() const;
  // Idle connections per key (keys may carry a "|client=" suffix, see session.cpp).
  template <class F> void for_each_key(F&& f) const {
    for (const auto& [key, list] : idle_) {
      f(key, list.size());
    }
  }

private:
  std::size_t max_idle_per_key_;
  std::chrono::steady_clock::duration peek_after_;
  std::unordered_map<std::string, std::vector<std::unique_ptr<connection>>> idle_;
};

}  // namespace wk::upstream
