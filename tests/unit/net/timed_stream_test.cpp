// Component tests of timed_stream over real loopback sockets: deadlines fire as timeouts
// within one sweep tick, a stream with no deadline waits, parking cancels a quiet wait, and an
// io_context with no pending operation runs out of work (the sweep does not keep it alive).

#include "loopback_pair.hpp"
#include "net/timed_stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>

#include <doctest/doctest.h>

#include <array>
#include <chrono>
#include <utility>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;
using wk::net::timed_stream;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

using wk::net::test::connected_pair;

struct read_result {
  boost::system::error_code ec;
  std::size_t n = 0;
  milliseconds took{};
};

}  // namespace

TEST_CASE("a read past its deadline fails with a timeout and closes the stream") {
  asio::io_context ioc;
  auto [s, peer] = connected_pair(ioc);
  read_result r;
  s.expires_after(milliseconds(150));
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        std::array<char, 16> buf{};
        const auto start = steady::now();
        auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), nothrow);
        r = {ec, n, std::chrono::duration_cast<milliseconds>(steady::now() - start)};
      },
      asio::detached);
  ioc.run();  // returns: nothing pending once the read has failed
  CHECK(r.ec == boost::beast::error::timeout);
  CHECK(s.timed_out());
  CHECK(r.took >= milliseconds(150));
  CHECK(r.took < milliseconds(150) + wk::net::deadline_tick + milliseconds(200));
  CHECK_FALSE(s.socket().is_open());
}

TEST_CASE("a read with no deadline, or a later one, waits for its data") {
  asio::io_context ioc;
  auto [s, peer] = connected_pair(ioc);
  SUBCASE("never") {
    s.expires_never();
  }
  SUBCASE("later") {
    s.expires_after(std::chrono::seconds(30));
  }
  read_result r;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        std::array<char, 16> buf{};
        auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), nothrow);
        r = {ec, n, {}};
      },
      asio::detached);
  asio::steady_timer later(ioc, milliseconds(3 * wk::net::deadline_tick.count()));
  later.async_wait([&](boost::system::error_code) { asio::write(peer, asio::buffer("hi", 2)); });
  ioc.run();
  CHECK_FALSE(r.ec);
  CHECK(r.n == 2);
  CHECK_FALSE(s.timed_out());
}

TEST_CASE("a quiet wait is cancelled for parking, not timed out, and data after it is intact") {
  asio::io_context ioc;
  auto [s, peer] = connected_pair(ioc);
  s.expires_after(std::chrono::seconds(30));
  s.park_after(milliseconds(100));
  read_result first;
  read_result second;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        std::array<char, 16> buf{};
        auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), nothrow);
        first = {ec, n, {}};
        CHECK(s.park_requested());
        s.park_never();
        // Parked: a readiness wait, then the bytes are all there.
        asio::write(peer, asio::buffer("abc", 3));
        auto [wec] = co_await s.async_wait(tcp::socket::wait_read, nothrow);
        CHECK_FALSE(wec);
        auto [ec2, n2] = co_await s.async_read_some(asio::buffer(buf), nothrow);
        second = {ec2, n2, {}};
      },
      asio::detached);
  ioc.run();
  CHECK(first.ec == asio::error::operation_aborted);
  CHECK(first.n == 0);
  CHECK_FALSE(second.ec);
  CHECK(second.n == 3);
  CHECK_FALSE(s.timed_out());
}

TEST_CASE("answer_after: the read times out but the stream stays open for an answer") {
  asio::io_context ioc;
  auto [s, peer] = connected_pair(ioc);
  read_result r;
  boost::system::error_code wec;
  s.answer_after(milliseconds(150));
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        std::array<char, 16> buf{};
        const auto start = steady::now();
        auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), nothrow);
        r = {ec, n, std::chrono::duration_cast<milliseconds>(steady::now() - start)};
        // The answer gets a deadline of its own, and goes out.
        s.expires_after(milliseconds(1000));
        auto [ec2, n2] =
            co_await asio::async_write(s, asio::buffer("HTTP/1.1 408\r\n", 14), nothrow);
        wec = ec2;
        (void)n2;
      },
      asio::detached);
  ioc.run();
  CHECK(r.ec == boost::beast::error::timeout);
  CHECK(r.took >= milliseconds(150));
  CHECK(r.took < milliseconds(150) + 3 * wk::net::deadline_tick);
  CHECK(!wec);
  CHECK(s.socket().is_open());
  std::array<char, 32> got{};
  const auto n = peer.read_some(asio::buffer(got));
  CHECK(std::string_view(got.data(), n) == "HTTP/1.1 408\r\n");
}
