#include "upstream/resolver.hpp"

#include "core/asio.hpp"
#include "observe/log.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>

namespace wk::upstream {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

dns_cell::dns_cell(std::string host, std::uint16_t port) : host_(std::move(host)), port_(port) {
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host_, ec);
  literal_ = !ec;
  if (literal_) {
    addresses_.store(std::make_shared<const endpoints>(endpoints{tcp::endpoint(addr, port_)}));
  } else {
    addresses_.store(std::make_shared<const endpoints>());
  }
}

asio::awaitable<std::shared_ptr<const endpoints>> dns_cell::resolve(std::string& error) {
  if (literal_) {
    co_return get();
  }
  tcp::resolver resolver(co_await asio::this_coro::executor);
  auto [ec, results] = co_await resolver.async_resolve(host_, std::to_string(port_), core::nothrow);
  if (ec) {
    error = "cannot resolve " + host_ + ": " + ec.message();
    co_return std::make_shared<const endpoints>();
  }
  endpoints eps;
  for (const auto& r : results) {
    eps.push_back(r.endpoint());
  }
  if (eps.empty()) {
    error = "no addresses for " + host_;
    co_return std::make_shared<const endpoints>();
  }
  set(eps);
  co_return get();
}

std::shared_ptr<dns_cell> resolver_registry::cell_for(const std::string& host, std::uint16_t port) {
  auto key = host + ":" + std::to_string(port);
  auto& cell = cells_[key];
  if (!cell) {
    cell = std::make_shared<dns_cell>(host, port);
  }
  return cell;
}

void resolver_registry::prune() {
  std::erase_if(cells_, [](const auto& kv) { return kv.second.use_count() == 1; });
}

void resolver_registry::start(asio::io_context& ioc, std::chrono::milliseconds interval) {
  interval_ = interval;
  asio::co_spawn(ioc, refresh_loop(this), observe::log_exception{"dns refresh"});
}

asio::awaitable<void> resolver_registry::refresh_loop(resolver_registry* self) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    // Resolve first, then wait: names are known before the first request needs them.
    auto cells = self->cells_;  // copy: a reload may change the map while we wait
    for (auto& [key, cell] : cells) {
      if (cell->literal()) {
        continue;
      }
      std::string error;
      auto eps = co_await cell->resolve(error);
      if (!error.empty()) {
        observe::warn("dns: " + error + " (keeping " + std::to_string(cell->get()->size()) +
                      " previous addresses)");
      }
    }
    timer.expires_after(self->interval_);
    auto [ec] = co_await timer.async_wait(core::nothrow);
    if (ec) {
      co_return;
    }
  }
}

}  // namespace wk::upstream
