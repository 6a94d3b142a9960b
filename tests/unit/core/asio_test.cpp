#include "core/asio.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <doctest/doctest.h>

#include <chrono>

namespace asio = boost::asio;

TEST_CASE("is_timeout is true for a stream deadline only") {
  CHECK(wk::core::is_timeout(boost::beast::error::timeout));
  CHECK_FALSE(wk::core::is_timeout(asio::error::operation_aborted));
  CHECK_FALSE(wk::core::is_timeout(asio::error::eof));
  CHECK_FALSE(wk::core::is_timeout({}));
}

TEST_CASE("nothrow gives the error code instead of throwing") {
  asio::io_context ioc;
  asio::steady_timer timer(ioc, std::chrono::hours(1));
  boost::system::error_code seen;
  bool done = false;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        auto [ec] = co_await timer.async_wait(wk::core::nothrow);
        seen = ec;
        done = true;
      },
      asio::detached);
  asio::post(ioc, [&] { timer.cancel(); });  // runs once the coroutine waits
  ioc.run();
  CHECK(done);
  CHECK(seen == asio::error::operation_aborted);
}
