// Component tests of the worker state over loopback sockets: make_room closes the oldest idle
// keep-alive connection of the full listener (a parked one first), begin_stop closes nothing,
// close_idle every idle one.

#include "app/worker_state.hpp"
#include "session/keepalive.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <doctest/doctest.h>

#include <array>
#include <memory>
#include <utility>
#include <vector>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
namespace session = wk::session;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

std::pair<tcp::socket, tcp::socket> socket_pair(asio::io_context& ioc) {
  tcp::acceptor acc(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket a(ioc);
  a.connect(acc.local_endpoint());
  tcp::socket b = acc.accept();
  return {std::move(a), std::move(b)};
}

// A session waiting between requests: its handle in the worker's list and a pending read that
// records how it ended.
struct waiting_session {
  wk::net::timed_stream stream;
  tcp::socket peer;
  session::session_handle handle;
  bool done = false;
  boost::system::error_code ec;

  waiting_session(asio::io_context& ioc, wk::app::worker_state& w,
                  const wk::net::listener_slot* slot, std::size_t served)
      : waiting_session(socket_pair(ioc)) {
    handle.stream = &stream;
    handle.idle = true;
    handle.served = served;
    handle.slot = slot;
    w.sessions.push_front(handle);
    asio::co_spawn(
        ioc,
        [this]() -> asio::awaitable<void> {
          std::array<char, 16> buf{};
          auto [e, n] = co_await stream.async_read_some(asio::buffer(buf), nothrow);
          ec = e;
          done = true;
        },
        asio::detached);
  }

private:
  explicit waiting_session(std::pair<tcp::socket, tcp::socket> p)
      : stream(std::move(p.first)), peer(std::move(p.second)) {}
};

// Runs what is ready now (completions of cancelled reads) without waiting for more.
void settle(asio::io_context& ioc) {
  for (int i = 0; i < 5; ++i) {
    ioc.poll();
  }
  ioc.restart();
}

// Parks the first socket of a fresh pair as an answered keep-alive connection of `slot`;
// returns the peer socket.
tcp::socket park_one(asio::io_context& ioc, wk::app::worker_state& w,
                     const std::shared_ptr<wk::net::listener_slot>& slot) {
  auto [a, b] = socket_pair(ioc);
  if (!w.lot) {
    w.lot = std::make_unique<wk::net::parking_lot>(ioc.get_executor(),
                                                   [](std::unique_ptr<wk::net::parked>) {});
  }
  slot->active.fetch_add(1);
  session::connection_count count(&w, slot);
  session::client_info info;
  info.slot = slot.get();
  const int fd = a.release();
  std::unique_ptr<wk::net::parked> p = std::make_unique<session::parked_connection>(
      std::move(count), std::move(info), fd, 1,
      std::chrono::steady_clock::now() + std::chrono::hours(1));
  REQUIRE(w.lot->park(p));
  return std::move(b);
}

bool peer_closed(tcp::socket& s) {
  s.non_blocking(true);
  std::array<char, 4> buf{};
  boost::system::error_code ec;
  s.read_some(asio::buffer(buf), ec);
  return ec == asio::error::eof;
}

}  // namespace

TEST_CASE("make_room closes a parked connection of the full listener first") {
  asio::io_context ioc;
  wk::app::worker_state w;
  auto slot = std::make_shared<wk::net::listener_slot>();
  auto other = std::make_shared<wk::net::listener_slot>();
  auto peer_other = park_one(ioc, w, other);
  auto peer_slot = park_one(ioc, w, slot);
  waiting_session live(ioc, w, slot.get(), 1);
  settle(ioc);
  CHECK(w.parked_count() == 2);
  CHECK(w.active.load() == 2);

  REQUIRE(w.make_room(slot.get()));
  CHECK(w.parked_count() == 1);
  CHECK(w.active.load() == 1);
  CHECK(peer_closed(peer_slot));
  CHECK_FALSE(peer_closed(peer_other));
  settle(ioc);
  CHECK_FALSE(live.done);  // the parked one went first
}

TEST_CASE("make_room closes the oldest idle session of that listener, once") {
  asio::io_context ioc;
  wk::app::worker_state w;
  auto slot = std::make_shared<wk::net::listener_slot>();
  auto other = std::make_shared<wk::net::listener_slot>();
  waiting_session oldest(ioc, w, slot.get(), 3);
  waiting_session fresh(ioc, w, slot.get(), 0);  // no request yet: never chosen
  waiting_session elsewhere(ioc, w, other.get(), 5);
  waiting_session newest(ioc, w, slot.get(), 1);
  settle(ioc);

  REQUIRE(w.make_room(slot.get()));
  settle(ioc);
  CHECK(oldest.done);
  CHECK(oldest.ec == asio::error::operation_aborted);
  CHECK_FALSE(newest.done);
  CHECK_FALSE(fresh.done);
  CHECK_FALSE(elsewhere.done);

  REQUIRE(w.make_room(slot.get()));  // the oldest was chosen once: now the next one
  settle(ioc);
  CHECK(newest.done);
  CHECK_FALSE(w.make_room(slot.get()));  // only the fresh one is left
  ioc.stop();
}

TEST_CASE("begin_stop closes no connection, close_idle every idle one") {
  asio::io_context ioc;
  wk::app::worker_state w;
  auto slot = std::make_shared<wk::net::listener_slot>();
  auto parked_peer = park_one(ioc, w, slot);
  waiting_session answered(ioc, w, slot.get(), 2);
  waiting_session fresh(ioc, w, slot.get(), 0);
  auto sending_peer = park_one(ioc, w, slot);
  settle(ioc);
  asio::write(sending_peer, asio::buffer("GET", 3));  // its client is sending right now

  // An idle connection's client may be sending its next request at this very moment: the drain
  // keeps every connection until that request (answered with Connection: close).
  w.begin_stop();
  CHECK(w.stopping);
  CHECK(w.parked_count() == 2);
  CHECK_FALSE(peer_closed(parked_peer));
  CHECK_FALSE(peer_closed(sending_peer));
  CHECK(w.active.load() == 2);  // the parked ones (the waiting sessions are not counted here)
  settle(ioc);
  CHECK_FALSE(answered.done);
  CHECK_FALSE(fresh.done);

  w.close_idle();
  CHECK(w.parked_count() == 0);
  CHECK(peer_closed(parked_peer));
  settle(ioc);
  CHECK(answered.done);
  CHECK(fresh.done);
  ioc.stop();
}

TEST_CASE("a recycled routing decision comes back empty, with its strings' capacity") {
  // A request that fails before it is routed (a malformed head, a timeout) is logged with the
  // decision it was given: it must not carry the previous request's host or target.
  session::context w;
  auto d = w.take_decision();
  d.kind = wk::routing::route_kind::validation;
  d.status = 400;
  d.host = "previous-request.tenant.example";
  d.upstream_target = "/.well-known/pki-validation/previous-token-file-name.txt";
  d.token = "previous-token-file-name.txt";
  d.reason = "earlier";
  const auto capacity = d.host.capacity();
  w.give_decision(std::move(d));
  const auto again = w.take_decision();
  CHECK(again.kind == wk::routing::route_kind::origin);
  CHECK(again.status == 0);
  CHECK(again.host.empty());
  CHECK(again.upstream_target.empty());
  CHECK(again.token.empty());
  CHECK(again.reason.empty());
  CHECK(again.host.capacity() == capacity);
}

TEST_CASE("a recycled head string comes back empty with its capacity; long ones are not kept") {
  // The request head for the backend, the answer's head and the target are built in these:
  // the next request must not see the previous one's bytes, and must not allocate again.
  session::context w;
  auto s = w.take_string();
  s.assign(600, 'h');  // more than a short-string buffer, like a real head
  const auto capacity = s.capacity();
  const auto* storage = s.data();
  w.give_string(std::move(s));
  const auto again = w.take_string();
  CHECK(again.empty());
  CHECK(again.capacity() == capacity);
  CHECK(again.data() == storage);

  auto big = w.take_string();
  big.assign(64 * 1024, 'x');  // an unusually long head does not stay in the worker
  w.give_string(std::move(big));
  CHECK(w.free_strings.empty());
  CHECK(w.take_string().capacity() < 64 * 1024);
}
