#pragma once
// Upstream name resolution. Each upstream host:port has one dns_cell holding its current
// addresses; the main thread re-resolves every cell on an interval (CloudFront's addresses
// change), workers read the current list lock-free when they open a connection, and resolve
// on demand when a cell is still empty.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace wk::upstream {

using endpoints = std::vector<boost::asio::ip::tcp::endpoint>;

class dns_cell {
public:
  dns_cell(std::string host, std::uint16_t port);

  const std::string& host() const { return host_; }
  std::uint16_t port() const { return port_; }
  // IP literals never need resolving: their cell is filled at construction.
  bool literal() const { return literal_; }

  // The current addresses (possibly empty, never null). Safe from any thread.
  std::shared_ptr<const endpoints> get() const { return addresses_.load(); }
  void set(endpoints eps) { addresses_.store(std::make_shared<const endpoints>(std::move(eps))); }

  // Resolves now on the calling coroutine's executor, stores and returns the result; an error
  // leaves the previous addresses in place and returns an empty list plus the reason.
  boost::asio::awaitable<std::shared_ptr<const endpoints>> resolve(std::string& error);

private:
  std::string host_;
  std::uint16_t port_;
  bool literal_ = false;
  std::atomic<std::shared_ptr<const endpoints>> addresses_;
};

// Owns the cells (one per host:port) across config reloads, and the refresh loop.
// Used from the main thread only.
class resolver_registry {
public:
  std::shared_ptr<dns_cell> cell_for(const std::string& host, std::uint16_t port);

  // Forgets cells that no config uses any more.
  void prune();

  // Starts the periodic refresh on `ioc` (the main thread's context).
  void start(boost::asio::io_context& ioc, std::chrono::milliseconds interval);
  void set_interval(std::chrono::milliseconds interval) { interval_ = interval; }

private:
  static boost::asio::awaitable<void> refresh_loop(resolver_registry* self);

  std::map<std::string, std::shared_ptr<dns_cell>> cells_;
  std::chrono::milliseconds interval_{30'000};
};

}  // namespace wk::upstream
