// Component tests of the upstream pool over real loopback socket pairs: a connection given back
// is taken again (most recent first) only for its own key, never when bytes or an end-of-stream
// are waiting on it, idle ones expire oldest first, and each key holds at most its capacity.

#include "upstream/pool.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <map>
#include <memory>
#include <poll.h>
#include <string>
#include <utility>
#include <vector>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using wk::upstream::connection;
using wk::upstream::pool;

namespace {

// A connection to a loopback "backend" and that backend's end of the socket pair.
struct pair {
  std::unique_ptr<connection> conn;
  tcp::socket backend;
};

class loopback {
public:
  loopback() : acceptor_(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {}

  pair connect(const std::string& key) {
    tcp::socket client(ioc_);
    client.connect(acceptor_.local_endpoint());
    tcp::socket backend = acceptor_.accept();
    auto c = std::make_unique<connection>(wk::upstream::tcp_stream(std::move(client)));
    c->key = key;
    return {std::move(c), std::move(backend)};
  }

private:
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
};

// Waits (up to two seconds) until `fd` is readable or its peer hung up: what the backend sent
// has arrived, so the pool's check sees it.
bool wait_readable(int fd) {
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  return ::poll(&p, 1, 2000) == 1;
}

// True when the backend's end sees the proxy's end closed within two seconds: EOF, or a reset
// when the proxy's end closed with bytes unread.
bool closed_by_pool(tcp::socket& backend) {
  if (!wait_readable(backend.native_handle())) {
    return false;
  }
  char b = 0;
  boost::system::error_code ec;
  backend.read_some(asio::buffer(&b, 1), ec);
  return ec == asio::error::eof || ec == asio::error::connection_reset;
}

}  // namespace

TEST_CASE("a connection given back is taken again, the most recently given first") {
  loopback net;
  pool p;
  auto a = net.connect("k");
  auto b = net.connect("k");
  const connection* first = a.conn.get();
  const connection* second = b.conn.get();

  CHECK(p.take("k") == nullptr);
  p.give(std::move(a.conn));
  p.give(std::move(b.conn));
  CHECK(p.idle_count() == 2);

  auto warm = p.take("k");
  CHECK(warm.get() == second);
  auto cold = p.take("k");
  CHECK(cold.get() == first);
  CHECK(p.take("k") == nullptr);
  CHECK(p.idle_count() == 0);

  // The connection taken is the live one: what is written on it reaches the backend.
  const std::string ping = "ping";
  asio::write(warm->lowest().socket(), asio::buffer(ping));
  std::string got(ping.size(), '\0');
  asio::read(b.backend, asio::buffer(got));
  CHECK(got == ping);
}

TEST_CASE("a connection with bytes waiting is never reused") {
  loopback net;
  pool p;

  SUBCASE("late bytes from the backend while it sat in the pool") {
    auto a = net.connect("k");
    const int fd = a.conn->lowest().socket().native_handle();
    p.give(std::move(a.conn));
    // A backend out of step sends a response nobody asked for while the connection is pooled.
    asio::write(a.backend, asio::buffer(std::string("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n"
                                                    "PWNED!")));
    REQUIRE(wait_readable(fd));
    CHECK(p.take("k") == nullptr);
    CHECK(p.idle_count() == 0);
    CHECK(closed_by_pool(a.backend));  // dropped means closed, not leaked
  }

  SUBCASE("bytes already read into the connection's buffer but not parsed") {
    auto a = net.connect("k");
    auto tail = a.conn->buffer.prepare(5);
    asio::buffer_copy(tail, asio::buffer("extra", 5));
    a.conn->buffer.commit(5);
    p.give(std::move(a.conn));
    CHECK(p.take("k") == nullptr);
    CHECK(closed_by_pool(a.backend));
  }

  SUBCASE("the backend closed its end while the connection sat in the pool") {
    auto a = net.connect("k");
    const int fd = a.conn->lowest().socket().native_handle();
    p.give(std::move(a.conn));
    a.backend.close();
    REQUIRE(wait_readable(fd));
    CHECK(p.take("k") == nullptr);
  }

  SUBCASE("a dirty connection is dropped and the clean one behind it is taken") {
    auto clean = net.connect("k");
    auto dirty = net.connect("k");
    const connection* clean_ptr = clean.conn.get();
    const int fd = dirty.conn->lowest().socket().native_handle();
    p.give(std::move(clean.conn));
    p.give(std::move(dirty.conn));  // the most recent: looked at first
    asio::write(dirty.backend, asio::buffer(std::string("x")));
    REQUIRE(wait_readable(fd));
    auto got = p.take("k");
    CHECK(got.get() == clean_ptr);
    CHECK(p.idle_count() == 0);
  }
}

TEST_CASE("idle connections expire oldest first") {
  loopback net;
  pool p;
  auto old_one = net.connect("k");
  auto new_one = net.connect("k");
  connection* old_ptr = old_one.conn.get();
  const connection* new_ptr = new_one.conn.get();
  p.give(std::move(old_one.conn));
  p.give(std::move(new_one.conn));
  // give() stamps the time; age the first one by hand instead of sleeping.
  old_ptr->idle_since -= std::chrono::hours(2);

  p.expire(std::chrono::hours(3));
  CHECK(p.idle_count() == 2);
  p.expire(std::chrono::hours(1));
  CHECK(p.idle_count() == 1);
  CHECK(closed_by_pool(old_one.backend));
  auto left = p.take("k");
  CHECK(left.get() == new_ptr);

  p.give(std::move(left));
  p.expire(std::chrono::nanoseconds(0));
  CHECK(p.idle_count() == 0);
}

TEST_CASE("each key has its own connections") {
  loopback net;
  pool p;
  auto a = net.connect("origin|http://a:80");
  auto b = net.connect("cloudfront|https://b:443");
  const connection* a_ptr = a.conn.get();
  const connection* b_ptr = b.conn.get();
  p.give(std::move(a.conn));
  p.give(std::move(b.conn));

  std::map<std::string, std::size_t> per_key;
  p.for_each_key([&](const std::string& key, std::size_t n) { per_key[key] = n; });
  CHECK(per_key == std::map<std::string, std::size_t>{{"origin|http://a:80", 1},
                                                      {"cloudfront|https://b:443", 1}});

  CHECK(p.take("origin|http://a:80|client=1") == nullptr);
  CHECK(p.take("other") == nullptr);
  auto got_b = p.take("cloudfront|https://b:443");
  CHECK(got_b.get() == b_ptr);
  CHECK(p.take("cloudfront|https://b:443") == nullptr);
  CHECK(p.idle_count() == 1);

  SUBCASE("retain_only drops the keys a reload removed") {
    p.give(std::move(got_b));
    p.retain_only({"cloudfront|https://b:443"});
    CHECK(p.idle_count() == 1);
    CHECK(p.take("origin|http://a:80") == nullptr);
    CHECK(closed_by_pool(a.backend));
    CHECK(p.take("cloudfront|https://b:443").get() == b_ptr);
  }
  SUBCASE("clear drops everything") {
    p.clear();
    CHECK(p.idle_count() == 0);
    CHECK(closed_by_pool(a.backend));
  }
  SUBCASE("the other key is still there") {
    CHECK(p.take("origin|http://a:80").get() == a_ptr);
  }
}

TEST_CASE("each key holds at most its capacity; the surplus is closed") {
  loopback net;
  pool p(2);
  std::vector<pair> pairs;
  for (int i = 0; i < 3; ++i) {
    pairs.push_back(net.connect("a"));
  }
  const connection* kept_first = pairs[0].conn.get();
  const connection* kept_second = pairs[1].conn.get();
  for (auto& pr : pairs) {
    p.give(std::move(pr.conn));
  }
  CHECK(p.idle_count() == 2);
  CHECK(closed_by_pool(pairs[2].backend));  // the third found the list full

  // The limit is per key: another key still has room for two.
  auto b1 = net.connect("b");
  auto b2 = net.connect("b");
  p.give(std::move(b1.conn));
  p.give(std::move(b2.conn));
  CHECK(p.idle_count() == 4);

  CHECK(p.take("a").get() == kept_second);
  CHECK(p.take("a").get() == kept_first);
  CHECK(p.take("a") == nullptr);
}
