// The accept loops' pacing after a failed accept (net::accept_backoff), and what an accepted
// connection is born with (net::accept_connection) on a listener from net::open_listener. That
// the loops back off under a real descriptor shortage is
// tests/integration/test_faults_under_load.py.

#include "net/listener.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <doctest/doctest.h>

#include <chrono>
#include <fcntl.h>
#include <string>

using std::chrono::milliseconds;
using wk::net::accept_backoff;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

TEST_CASE("accept failures wait 10 ms, doubling up to 1 s") {
  accept_backoff b;
  CHECK_FALSE(b.in_episode());
  CHECK(b.failed() == milliseconds(10));
  CHECK(b.in_episode());
  CHECK(b.failed() == milliseconds(20));
  CHECK(b.failed() == milliseconds(40));
  CHECK(b.failed() == milliseconds(80));
  CHECK(b.failed() == milliseconds(160));
  CHECK(b.failed() == milliseconds(320));
  CHECK(b.failed() == milliseconds(640));
  CHECK(b.failed() == milliseconds(1'000));
  for (int i = 0; i < 100; ++i) {
    CHECK(b.failed() == milliseconds(1'000));  // never longer, never a busy loop
  }
}

TEST_CASE("a success ends the episode, reports its failures and resets the pace") {
  accept_backoff b;
  CHECK(b.succeeded() == 0);  // no episode: nothing to report
  b.failed();
  b.failed();
  b.failed();
  CHECK(b.succeeded() == 3);
  CHECK_FALSE(b.in_episode());
  CHECK(b.succeeded() == 0);
  CHECK(b.failed() == milliseconds(10));  // a new episode starts from the shortest wait
}

TEST_CASE("no wait is zero, and the longest is at most a second") {
  static_assert(accept_backoff::shortest > milliseconds(0));
  static_assert(accept_backoff::longest <= milliseconds(1'000));
  accept_backoff b;
  milliseconds total{0};
  for (int i = 0; i < 12; ++i) {
    total += b.failed();
  }
  // 10+20+...+640 = 1270 ms, then 5 x 1 s: about 7 accepts a second at worst.
  CHECK(total == milliseconds(1'270 + 5'000));
}

namespace {

std::unique_ptr<wk::net::listener_socket> loopback_listener(asio::io_context& ioc) {
  wk::config::listener l;
  l.address = "127.0.0.1:0";
  l.host = "127.0.0.1";
  auto opened = wk::net::open_listener(ioc, l, 100);
  REQUIRE(std::holds_alternative<std::unique_ptr<wk::net::listener_socket>>(opened));
  auto ls = std::move(std::get<std::unique_ptr<wk::net::listener_socket>>(opened));
  ls->acceptor.native_non_blocking(true);
  return ls;
}

}  // namespace

TEST_CASE("an empty listen queue is would_block, not a wait") {
  asio::io_context ioc;
  auto ls = loopback_listener(ioc);
  tcp::endpoint peer;
  boost::system::error_code ec;
  auto s = wk::net::accept_connection(ls->acceptor, ioc.get_executor(), peer, ec);
  CHECK(ec == asio::error::would_block);
  CHECK_FALSE(s.is_open());
}

TEST_CASE("an accepted connection is non-blocking, close-on-exec, TCP_NODELAY, and serves") {
  asio::io_context ioc;
  auto ls = loopback_listener(ioc);
  tcp::socket client(ioc);
  client.connect(ls->bound);
  tcp::endpoint peer;
  boost::system::error_code ec;
  tcp::socket s(ioc);
  for (int i = 0; i < 1000 && !s.is_open(); ++i) {  // the handshake completes in the kernel
    s = wk::net::accept_connection(ls->acceptor, ioc.get_executor(), peer, ec);
  }
  REQUIRE_FALSE(ec);
  CHECK(peer == client.local_endpoint());

  const int fd = s.native_handle();
  CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
  CHECK((::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
  tcp::no_delay nodelay;
  s.get_option(nodelay);
  CHECK(nodelay.value());          // inherited from the listener: no setsockopt per connection
  CHECK(s.native_non_blocking());  // Asio knows: no ioctl at the first operation

  // Asynchronous reads wait for data that is not there yet, then get it; writes go through.
  std::string got(5, '\0');
  bool read_done = false;
  asio::async_read(s, asio::buffer(got), [&](boost::system::error_code e, std::size_t n) {
    CHECK_FALSE(e);
    CHECK(n == 5);
    read_done = true;
  });
  ioc.poll();
  CHECK_FALSE(read_done);
  asio::write(client, asio::buffer(std::string("hello")));
  ioc.run_for(std::chrono::seconds(5));
  CHECK(read_done);
  CHECK(got == "hello");
  asio::write(s, asio::buffer(std::string("world")));
  std::string back(5, '\0');
  asio::read(client, asio::buffer(back));
  CHECK(back == "world");

  // Closing it (no epoll_ctl DEL: the kernel drops the registration with the last reference)
  // leaves the reactor working for the next connection.
  s.close();
  tcp::socket client2(ioc);
  client2.connect(ls->bound);
  tcp::socket s2(ioc);
  for (int i = 0; i < 1000 && !s2.is_open(); ++i) {
    s2 = wk::net::accept_connection(ls->acceptor, ioc.get_executor(), peer, ec);
  }
  REQUIRE(s2.is_open());
  std::string got2(2, '\0');
  bool second_done = false;
  asio::async_read(s2, asio::buffer(got2),
                   [&](boost::system::error_code e, std::size_t) { second_done = !e; });
  asio::write(client2, asio::buffer(std::string("ok")));
  ioc.restart();
  ioc.run_for(std::chrono::seconds(5));
  CHECK(second_done);
  CHECK(got2 == "ok");
}
