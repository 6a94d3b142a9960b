// Component tests of the worker's io_uring loop (net/ring.hpp) under timed_stream, over real
// loopback sockets: reads and writes in order, an empty read completing at once, the deadline
// sweep's close and a cancellation slot (awaitable operators) ending a read in flight, a post
// from another thread waking the loop, and operations still in flight when the ring goes away
// freed unrun. The kernel must allow io_uring here: these tests fail, never skip, without it.

#include "loopback_pair.hpp"
#include "net/ring.hpp"
#include "net/timed_stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>

#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <variant>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using std::chrono::milliseconds;
using wk::net::ring;
using wk::net::timed_stream;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

using wk::net::test::connected_pair;

// A worker's io_context (the same concurrency hint), kept alive by a guard as a worker's is:
// operations in the ring do not count as io_context work.
struct loop {
  asio::io_context ioc{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  asio::executor_work_guard<asio::io_context::executor_type> guard = asio::make_work_guard(ioc);
  std::unique_ptr<ring> r;

  // The ring is made on the thread that runs it (IORING_SETUP_SINGLE_ISSUER), as a worker does.
  explicit loop(bool make_ring = true) {
    const std::string refused = ring::probe();
    INFO("io_uring is refused here: ", refused);
    REQUIRE(refused.empty());
    if (make_ring) {
      r = std::make_unique<ring>(ioc);
    }
  }
  void stop() {
    guard.reset();
    ioc.stop();
  }
};

}  // namespace

TEST_CASE("reads and writes go through the ring, an empty read completes at once") {
  loop l;
  auto pair = connected_pair(l.ioc);
  auto& s = pair.first;
  auto& peer = pair.second;
  asio::write(peer, asio::buffer(std::string("hello")));
  bool on_ring = false;
  std::string got;
  boost::system::error_code empty_ec;
  std::size_t empty_n = 99;
  std::string peer_got(6, '\0');
  boost::system::error_code eof_ec;
  asio::co_spawn(
      l.ioc,
      [&]() -> asio::awaitable<void> {
        on_ring = ring::current() == l.r.get();
        std::array<char, 16> buf{};
        auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), nothrow);
        got.assign(buf.data(), ec ? 0 : n);
        // Nothing more is coming: a zero-length recv would wait for a byte, this must not.
        std::tie(empty_ec, empty_n) = co_await s.async_read_some(asio::buffer(buf, 0), nothrow);
        // Two buffers: one sendmsg.
        const std::array<asio::const_buffer, 2> two{asio::buffer("abc", 3), asio::buffer("def", 3)};
        auto [wec, wn] = co_await asio::async_write(s, two, nothrow);
        CHECK_FALSE(wec);
        CHECK(wn == 6);
        asio::read(peer, asio::buffer(peer_got));
        peer.close();
        std::tie(eof_ec, std::ignore) = co_await s.async_read_some(asio::buffer(buf), nothrow);
        l.stop();
      },
      asio::detached);
  l.r->run();
  CHECK(on_ring);
  CHECK(got == "hello");
  CHECK_FALSE(empty_ec);
  CHECK(empty_n == 0);
  CHECK(peer_got == "abcdef");
  CHECK(eof_ec == asio::error::eof);
}

TEST_CASE("the deadline sweep closes a stream with a read in the ring: a timeout") {
  loop l;
  auto pair = connected_pair(l.ioc);  // the peer stays open and silent
  auto& s = pair.first;
  boost::system::error_code ec;
  s.expires_after(milliseconds(150));
  const auto start = std::chrono::steady_clock::now();
  std::chrono::steady_clock::duration took{};
  asio::co_spawn(
      l.ioc,
      [&]() -> asio::awaitable<void> {
        std::array<char, 16> buf{};
        std::tie(ec, std::ignore) = co_await s.async_read_some(asio::buffer(buf), nothrow);
        took = std::chrono::steady_clock::now() - start;
        l.stop();
      },
      asio::detached);
  l.r->run();
  CHECK(ec == boost::beast::error::timeout);
  CHECK(took >= milliseconds(150));
  CHECK(took < milliseconds(150) + wk::net::deadline_tick + milliseconds(300));
  CHECK_FALSE(s.socket().is_open());
}

TEST_CASE("a cancellation slot cancels a read in the ring, which consumed nothing") {
  using namespace asio::experimental::awaitable_operators;
  loop l;
  auto pair = connected_pair(l.ioc);
  auto& s = pair.first;
  auto& peer = pair.second;
  std::size_t winner = 99;
  std::string after;
  asio::co_spawn(
      l.ioc,
      [&]() -> asio::awaitable<void> {
        std::array<char, 16> buf{};
        asio::steady_timer t(l.ioc, milliseconds(50));
        auto r = co_await (s.async_read_some(asio::buffer(buf), asio::use_awaitable) ||
                           t.async_wait(asio::use_awaitable));
        winner = r.index();
        asio::write(peer, asio::buffer(std::string("x")));
        auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), nothrow);
        after.assign(buf.data(), ec ? 0 : n);
        l.stop();
      },
      asio::detached);
  l.r->run();
  CHECK(winner == 1);
  CHECK(after == "x");
}

TEST_CASE("a post from another thread wakes the loop") {
  loop l(false);
  std::atomic<ring*> running{nullptr};
  std::atomic<bool> ran{false};
  std::thread t([&] {
    ring r(l.ioc);
    running = &r;
    r.run();
  });
  while (running.load() == nullptr) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  std::this_thread::sleep_for(milliseconds(50));  // the loop is asleep in io_uring_enter
  asio::post(l.ioc, [&] { ran = true; });
  running.load()->wake();
  for (int i = 0; i < 200 && !ran; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  CHECK(ran);
  asio::post(l.ioc, [&] { l.stop(); });
  running.load()->wake();
  t.join();
}

TEST_CASE("operations in flight when the ring goes away are freed, not run") {
  auto l = std::make_unique<loop>();
  std::weak_ptr<int> watch;
  bool resumed = false;
  {
    auto pair = connected_pair(l->ioc);  // the peer stays open and silent
    auto& s = pair.first;
    auto sentinel = std::make_shared<int>(1);
    watch = sentinel;
    asio::co_spawn(
        l->ioc,
        [&, keep = std::move(sentinel)]() -> asio::awaitable<void> {
          std::array<char, 16> buf{};
          co_await s.async_read_some(asio::buffer(buf), nothrow);  // never completes
          resumed = true;
        },
        asio::detached);
    asio::post(l->ioc, [&] { l->stop(); });
    l->r->run();
    CHECK_FALSE(watch.expired());  // the coroutine waits on the ring
    // The ring cancels the read and frees its handler; Asio posts the unwinding of the
    // coroutine's frames to the (stopped) io_context, whose destructor frees them. A ring that
    // leaked the handler would keep the frame, and the sentinel, alive.
    l->r.reset();
  }
  l.reset();
  CHECK(watch.expired());
  CHECK_FALSE(resumed);
}
