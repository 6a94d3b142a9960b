// Component tests of the upstream connector and DNS cells over real loopback sockets.

#include "upstream/connector.hpp"
#include "upstream/pool.hpp"
#include "upstream/resolver.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>

#include <doctest/doctest.h>

#include <memory>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

wk::upstream::target make_target(std::shared_ptr<wk::upstream::dns_cell> cell) {
  wk::upstream::target t;
  t.cfg.name = "origin";
  t.cfg.host = cell->host();
  t.cfg.port = cell->port();
  t.key = "test";
  t.dns = std::move(cell);
  return t;
}

// A port on 127.0.0.1 where nothing listens (bound, then closed).
std::uint16_t dead_port(asio::io_context& ioc) {
  tcp::acceptor a(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  auto port = a.local_endpoint().port();
  a.close();
  return port;
}

wk::upstream::connect_outcome run_connect(asio::io_context& ioc, const wk::upstream::target& t) {
  wk::config::timeouts to;
  to.connect = std::chrono::milliseconds(2000);
  auto fut = asio::co_spawn(ioc, wk::upstream::connect(t, to), asio::use_future);
  ioc.run();
  ioc.restart();
  return fut.get();
}

}  // namespace

TEST_CASE("connect tries each resolved address in turn") {
  asio::io_context ioc;
  tcp::acceptor live(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  auto live_ep = live.local_endpoint();
  tcp::endpoint dead_ep(asio::ip::make_address("127.0.0.1"), dead_port(ioc));

  auto cell = std::make_shared<wk::upstream::dns_cell>("origin.test", live_ep.port());
  CHECK_FALSE(cell->literal());
  CHECK(cell->get()->empty());
  cell->set({dead_ep, live_ep});
  auto outcome = run_connect(ioc, make_target(cell));
  REQUIRE(outcome.conn);
  CHECK(outcome.error == wk::core::failure::none);
  CHECK(outcome.conn->lowest().socket().remote_endpoint() == live_ep);
}

TEST_CASE("connect reports a refusal naming the address when every address refuses") {
  asio::io_context ioc;
  auto port = dead_port(ioc);
  auto cell = std::make_shared<wk::upstream::dns_cell>("127.0.0.1", port);
  CHECK(cell->literal());
  auto outcome = run_connect(ioc, make_target(cell));
  CHECK_FALSE(outcome.conn);
  CHECK(outcome.error == wk::core::failure::upstream_refused);
  CHECK(outcome.detail.find("127.0.0.1:" + std::to_string(port)) != std::string::npos);
}

TEST_CASE("an empty DNS cell is resolved on demand, and a name that does not resolve is a 502") {
  asio::io_context ioc;
  tcp::acceptor live(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  SUBCASE("localhost resolves and connects") {
    auto cell = std::make_shared<wk::upstream::dns_cell>("localhost", live.local_endpoint().port());
    auto outcome = run_connect(ioc, make_target(cell));
    CHECK(outcome.conn);
    CHECK_FALSE(cell->get()->empty());  // the result is kept for the next connection
  }
  SUBCASE("an unresolvable name") {
    auto cell = std::make_shared<wk::upstream::dns_cell>("does-not-exist.invalid", 80);
    auto outcome = run_connect(ioc, make_target(cell));
    CHECK_FALSE(outcome.conn);
    CHECK(outcome.error == wk::core::failure::upstream_unresolved);
  }
}

TEST_CASE("the pool hands back live connections and drops ones the peer closed") {
  asio::io_context ioc;
  tcp::acceptor live(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  auto cell = std::make_shared<wk::upstream::dns_cell>("127.0.0.1", live.local_endpoint().port());
  auto t = make_target(cell);
  wk::upstream::pool pool(8);

  auto first = run_connect(ioc, t);
  REQUIRE(first.conn);
  first.conn->key = "k";
  tcp::socket server_side = live.accept();
  pool.give(std::move(first.conn));
  CHECK(pool.idle_count() == 1);
  auto again = pool.take("k");
  REQUIRE(again);  // the peer is still there
  CHECK(pool.take("k") == nullptr);

  pool.give(std::move(again));
  server_side.close();  // the backend closes its idle connection
  // The FIN reaches our socket almost at once on loopback; poll briefly.
  std::unique_ptr<wk::upstream::connection> taken;
  for (int i = 0; i < 100; ++i) {
    taken = pool.take("k");
    if (!taken) {
      break;
    }
    pool.give(std::move(taken));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK(taken == nullptr);
  CHECK(pool.idle_count() == 0);
}

TEST_CASE("the pool expires connections idle for too long") {
  asio::io_context ioc;
  tcp::acceptor live(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  auto t = make_target(
      std::make_shared<wk::upstream::dns_cell>("127.0.0.1", live.local_endpoint().port()));
  wk::upstream::pool pool;
  auto c = run_connect(ioc, t);
  REQUIRE(c.conn);
  c.conn->key = "k";
  pool.give(std::move(c.conn));
  pool.expire(std::chrono::hours(1));
  CHECK(pool.idle_count() == 1);
  pool.expire(std::chrono::nanoseconds(0));
  CHECK(pool.idle_count() == 0);
}

TEST_CASE("the pool never hands back a connection with bytes waiting, however fresh") {
  asio::io_context ioc;
  tcp::acceptor live(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  auto t = make_target(
      std::make_shared<wk::upstream::dns_cell>("127.0.0.1", live.local_endpoint().port()));
  wk::upstream::pool pool;
  auto c = run_connect(ioc, t);
  REQUIRE(c.conn);
  c.conn->key = "k";
  tcp::socket server_side = live.accept();
  pool.give(std::move(c.conn));
  // A backend out of step sends a response nobody asked for while the connection is pooled.
  const std::string late = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPWNED!";
  asio::write(server_side, asio::buffer(late));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // it has arrived
  CHECK(pool.take("k") == nullptr);
  CHECK(pool.idle_count() == 0);
}
