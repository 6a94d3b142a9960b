// Heap allocations per request. End to end: a keep-alive client connection served by the
// session (read, parse, route, the upstream pool, send, relay, log) over loopback sockets to
// real backends, 10,000 requests after a warm-up, on both routes. And the per-request
// bookkeeping path alone: what finish() does after every answer (access log line, request
// metrics, and on the validation route the validation event, its JSON line and its labelled
// counter). Once warm, none of it may allocate: this executable replaces the global operator
// new with a counting one, so that a change that adds an allocation per request fails here
// instead of showing up as lost throughput in bench/compare.

#include "config/load.hpp"
#include "net/timed_stream.hpp"
#include "observe/log_file.hpp"
#include "routing/route.hpp"
#include "runtime/runtime.hpp"
#include "session/finish.hpp"
#include "session/handle_request.hpp"
#include "session/serve_requests.hpp"
#include "validation/events.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <variant>

namespace {

std::atomic<std::size_t> allocations{0};
// The stand-ins of the end-to-end test (a backend, a client) run on threads of their own,
// which are not counted: only the proxy's thread is.
thread_local bool counted_thread = true;

void* counted(std::size_t n) {
  if (counted_thread) {
    allocations.fetch_add(1, std::memory_order_relaxed);
  }
  if (void* p = std::malloc(n == 0 ? 1 : n)) {
    return p;
  }
  throw std::bad_alloc();
}

}  // namespace

void* operator new(std::size_t n) {
  return counted(n);
}
void* operator new[](std::size_t n) {
  return counted(n);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}

namespace {

namespace session = wk::session;

std::shared_ptr<const wk::runtime::snapshot> make_runtime(wk::upstream::resolver_registry& dns,
                                                          int origin_port = 8081,
                                                          int cloudfront_port = 8082,
                                                          std::string more = {}) {
  const auto loaded = wk::config::load_string(
      "version: 1\nlisten: [\"127.0.0.1:8080\"]\norigin: http://127.0.0.1:" +
          std::to_string(origin_port) +
          "\ncloudfront: http://127.0.0.1:" + std::to_string(cloudfront_port) +
          "\ndomains: [tenant.example, \"*.wild.example\"]\n" + more,
      "test.yaml", [](std::string_view) { return std::optional<std::string>(); });
  REQUIRE(loaded.cfg);
  std::vector<std::string> warnings;
  auto built = wk::runtime::build_runtime(*loaded.cfg, dns, warnings);
  REQUIRE(std::holds_alternative<std::shared_ptr<const wk::runtime::snapshot>>(built));
  return std::get<std::shared_ptr<const wk::runtime::snapshot>>(built);
}

std::shared_ptr<const wk::observe::log_file> dev_null() {
  auto opened = wk::observe::log_file::open("/dev/null");
  REQUIRE(std::holds_alternative<std::shared_ptr<const wk::observe::log_file>>(opened));
  return std::get<0>(std::move(opened));
}

// Allocations per call of write_access_log over `n` calls, after a warm-up that fills every
// ring, buffer and label set the calls touch.
double allocations_per_request(session::context& w, const session::request_state& st,
                               const session::client_info& conn, int n) {
  const session::fault ok{};
  for (int i = 0; i < 200; ++i) {
    session::write_access_log(w, st, ok, conn);
  }
  w.log.flush();
  const auto before = allocations.load();
  for (int i = 0; i < n; ++i) {
    session::write_access_log(w, st, ok, conn);
  }
  w.log.flush();
  return static_cast<double>(allocations.load() - before) / n;
}

struct bench {
  wk::upstream::resolver_registry dns;
  wk::observe::counters counters;
  wk::validation::event_store events;
  session::context w;
  session::client_info conn;
  session::request_state st;
  // A CA's user agent is longer than a short-string buffer: kept events must reuse capacity.
  std::string user_agent = "Mozilla/5.0 (compatible; Validation-Fetcher/2.1; +https://ca.example)";

  bench() {
    w.runtime = make_runtime(dns);
    w.report.counters = &counters;
    w.report.events = &events;
    conn.peer = "[2001:db8::1234]:50123";
    conn.peer_ip = "2001:db8::1234";
    st.method = "GET";
    st.target = "/.well-known/pki-validation/5D41402ABC4B2A76B9719D911017C592.txt";
    st.user_agent = user_agent;
    st.status = 200;
    st.bytes_out = 100;
  }

  void validation_hit(std::string host) {
    st.decision.kind = wk::routing::route_kind::validation;
    st.decision.host = std::move(host);
    st.decision.token = "5D41402ABC4B2A76B9719D911017C592.txt";
    st.validation_hit = true;
    st.upstream = &w.runtime->cloudfront;
  }
};

}  // namespace

TEST_CASE("a validation request's bookkeeping allocates nothing once warm, log on or off") {
  bench b;
  b.validation_hit("tenant.example");
  SUBCASE("event log and access log off") {
    REQUIRE(b.events.configure({wk::config::event_log::output::off, {}}, 50, {"tenant.example"})
                .empty());
    CHECK(allocations_per_request(b.w, b.st, b.conn, 10'000) == 0.0);
  }
  SUBCASE("event log and JSON access log on") {
    REQUIRE(
        b.events
            .configure({wk::config::event_log::output::file, "/dev/null"}, 50, {"tenant.example"})
            .empty());
    b.w.log.set_destination(dev_null(), wk::config::log_format::json);
    CHECK(allocations_per_request(b.w, b.st, b.conn, 10'000) == 0.0);
  }
  SUBCASE("a host under a pattern (its own bucket, label \"other\")") {
    REQUIRE(b.events.configure({wk::config::event_log::output::off, {}}, 50, {"*.wild.example"})
                .empty());
    b.validation_hit("a.wild.example");
    CHECK(allocations_per_request(b.w, b.st, b.conn, 10'000) == 0.0);
  }
}

TEST_CASE("an origin request's bookkeeping allocates nothing once warm") {
  bench b;
  b.st.decision.kind = wk::routing::route_kind::origin;
  b.st.decision.host = "tenant.example";
  b.st.upstream = &b.w.runtime->origin;
  b.st.target = "/index.html";
  b.w.log.set_destination(dev_null(), wk::config::log_format::combined);
  CHECK(allocations_per_request(b.w, b.st, b.conn, 10'000) == 0.0);
}

TEST_CASE("routing a request allocates nothing once its decision and scratch are warm") {
  wk::upstream::resolver_registry dns;
  const auto rt = make_runtime(dns);
  wk::routing::decision d;
  wk::routing::route_scratch scratch;
  const auto allocations_routing = [&](const wk::routing::request_facts& facts) {
    for (int i = 0; i < 10; ++i) {
      wk::routing::route(rt->routes, facts, d, scratch);
    }
    const auto before = allocations.load();
    for (int i = 0; i < 10'000; ++i) {
      wk::routing::route(rt->routes, facts, d, scratch);
    }
    return allocations.load() - before;
  };
  wk::routing::request_facts facts;
  facts.method = "GET";
  facts.host = "Shop.Tenant-With-A-Long-Name.Example:80";
  facts.host_present = true;
  // Longer than any short-string buffer, with escapes, dot segments and a query.
  facts.target = "/catalogue/2026/%7Esummer/./items/../items/a-rather-long-product-name.html?x=%2f";
  CHECK(allocations_routing(facts) == 0);
  CHECK(d.kind == wk::routing::route_kind::origin);
  CHECK(d.host == "shop.tenant-with-a-long-name.example");
  facts.host = "a.wild.example";
  facts.target = "/.well-known/pki-validation/5D41402ABC4B2A76B9719D911017C592.txt";
  CHECK(allocations_routing(facts) == 0);
  CHECK(d.kind == wk::routing::route_kind::validation);
  CHECK(d.token == "5D41402ABC4B2A76B9719D911017C592.txt");
  facts.target = "/.well-known/pki-validation/%2e%2e/secret";
  CHECK(allocations_routing(facts) == 0);
  CHECK(d.kind == wk::routing::route_kind::reject);
}

// ---- End to end

// A listening socket on a free loopback port (plain POSIX: the stand-ins below use no Asio).
int listen_loopback(unsigned short& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(fd, 16) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  port = ntohs(a.sin_port);
  return fd;
}

// A backend on its own thread: answers every request it reads (bodiless, or with a
// Content-Length body) with the same keep-alive response, connection after connection, until
// destroyed.
class canned_backend {
public:
  explicit canned_backend(std::string response) : response_(std::move(response)) {
    fd_ = listen_loopback(port_);
    thread_ = std::thread([this] { run(); });
  }
  canned_backend(const canned_backend&) = delete;
  canned_backend& operator=(const canned_backend&) = delete;
  ~canned_backend() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  unsigned short port() const { return port_; }
  std::size_t requests() const { return requests_.load(); }

private:
  bool readable(int fd) const {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 20) > 0;
  }
  void run() {
    counted_thread = false;
    while (!stop_) {
      if (!readable(fd_)) {
        continue;
      }
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        continue;
      }
      serve(c);
      ::close(c);
    }
  }
  void serve(int c) {
    std::string in;
    char buf[4096];
    while (!stop_) {
      if (!readable(c)) {
        continue;
      }
      const auto n = ::read(c, buf, sizeof buf);
      if (n <= 0) {
        return;
      }
      in.append(buf, static_cast<std::size_t>(n));
      for (auto end = in.find("\r\n\r\n"); end != std::string::npos; end = in.find("\r\n\r\n")) {
        const auto cl = in.find("Content-Length: ");
        const auto body = cl < end ? std::stoul(in.substr(cl + 16)) : 0;
        if (in.size() < end + 4 + body) {
          break;  // the rest of the body is still on its way
        }
        in.erase(0, end + 4 + body);
        ++requests_;
        if (::write(c, response_.data(), response_.size()) !=
            static_cast<ssize_t>(response_.size())) {
          return;
        }
      }
    }
  }

  std::string response_;
  int fd_ = -1;
  unsigned short port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> requests_{0};
  std::thread thread_;
};

// Sends `request` and reads one whole answer (a Content-Length body) from blocking socket `fd`;
// returns its status, or 0 when the connection failed.
int exchange(int fd, std::string_view request, std::string& in) {
  if (::write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    return 0;
  }
  char buf[4096];
  for (;;) {
    const auto end = in.find("\r\n\r\n");
    if (end != std::string::npos) {
      const auto cl = in.find("Content-Length: ");
      if (cl == std::string::npos || cl > end) {
        return 0;
      }
      const auto length = std::stoul(in.substr(cl + 16));
      if (in.size() >= end + 4 + length) {
        const int status = std::stoi(in.substr(9, 3));
        in.erase(0, end + 4 + length);
        return status;
      }
    }
    const auto n = ::read(fd, buf, sizeof buf);
    if (n <= 0) {
      return 0;
    }
    in.append(buf, static_cast<std::size_t>(n));
  }
}

TEST_CASE("a keep-alive connection's requests allocate nothing once warm, end to end") {
  // What the proxy does per request on both routes, a GET and a small upload to the origin and a
  // validation GET forwarded to CloudFront: the stand-ins are real servers on loopback,
  // reached through the upstream pool.
  canned_backend origin("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 100\r\n"
                        "Server: origin\r\n\r\n" +
                        std::string(100, 'o'));
  canned_backend cloudfront("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 64\r\n"
                            "X-Cache: Miss from cloudfront\r\n\r\n" +
                            std::string(64, 'v'));
  wk::upstream::resolver_registry dns;
  wk::observe::counters counters;
  wk::validation::event_store events;
  REQUIRE(
      events.configure({wk::config::event_log::output::off, {}}, 50, {"tenant.example"}).empty());
  boost::asio::io_context ioc;
  session::context w;
  // One connection carries every request of the test.
  w.runtime = make_runtime(dns, origin.port(), cloudfront.port(),
                           "limits: {max_requests_per_connection: 1000000}\n");
  w.report.counters = &counters;
  w.report.events = &events;
  w.log.set_destination(dev_null(), wk::config::log_format::json);

  // The client connection: accepted here, served by the session's keep-alive loop (parking
  // off: a connection that happens to wait at a deadline tick parks, a cost per idle period,
  // not per request).
  boost::asio::ip::tcp::acceptor acceptor(ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
  const auto proxy_port = acceptor.local_endpoint().port();

  constexpr int warm_up = 2'000;
  constexpr int measured = 10'000;
  std::size_t before = 0;
  std::size_t after = 0;
  int failures = 0;
  std::thread client([&] {
    counted_thread = false;
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(proxy_port);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      failures = -1;
      ioc.stop();
      return;
    }
    const std::string origin_request =
        "GET /catalogue/2026/summer/items/a-rather-long-product-name.html?ref=home HTTP/1.1\r\n"
        "Host: tenant.example\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Test/1.0\r\n"
        "Accept: text/html,application/xhtml+xml\r\nAccept-Encoding: gzip, br\r\n"
        "Cookie: session=0123456789abcdef0123456789abcdef\r\n\r\n";
    const std::string validation_request =
        "GET /.well-known/pki-validation/5D41402ABC4B2A76B9719D911017C592.txt HTTP/1.1\r\n"
        "Host: tenant.example\r\nUser-Agent: Mozilla/5.0 (compatible; Validation-Fetcher/2.1)\r\n"
        "Accept: */*\r\n\r\n";
    const std::string upload = "POST /api/orders HTTP/1.1\r\nHost: tenant.example\r\n"
                               "Content-Type: application/json\r\nContent-Length: 39\r\n\r\n"
                               "{\"order\": 12345, \"items\": [1, 2, 3, 4]}";
    std::string in;
    auto run = [&](int n) {
      for (int i = 0; i < n; ++i) {
        const auto& request =
            i % 2 == 1 ? validation_request : (i % 4 == 0 ? origin_request : upload);
        if (exchange(fd, request, in) != 200) {
          ++failures;
        }
      }
      // The proxy logs and gives back each request's storage after the answer: let it finish.
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    };
    run(warm_up);
    before = allocations.load();
    run(measured);
    after = allocations.load();
    ::close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ioc.stop();
  });

  session::session_handle handle;
  wk::net::timed_stream stream(acceptor.accept());
  handle.stream = &stream;
  session::client_info info;
  // As a PROXY header or an IPv6 client would have it: longer than a short-string buffer.
  info.peer = "[2001:db8:85a3::8a2e:370:7334]:50000";
  info.peer_ip = "2001:db8:85a3::8a2e:370:7334";
  auto one_request = [&](boost::beast::flat_buffer& cbuf, bool last) {
    return session::handle_request(w, stream, cbuf, info, last);
  };
  boost::asio::co_spawn(
      ioc,
      [&]() -> boost::asio::awaitable<void> {
        co_await session::serve_requests(&w, stream, handle, {}, false, one_request);
        boost::system::error_code ignored;
        stream.socket().close(ignored);  // an early end fails the client's requests, not hangs
      },
      boost::asio::detached);
  ioc.run();
  client.join();

  REQUIRE(failures == 0);
  CHECK(origin.requests() == (warm_up + measured) / 2);
  CHECK(cloudfront.requests() == (warm_up + measured) / 2);
  CHECK(handle.served == warm_up + measured);
  MESSAGE("allocations over ", measured, " requests: ", after - before);
  CHECK(static_cast<double>(after - before) / measured == 0.0);
}

TEST_CASE("the replaced operator new counts (else every check above would pass)") {
  const auto before = allocations.load();
  std::string s(1000, 'x');
  const char* volatile data = s.data();
  CHECK(data[999] == 'x');
  CHECK(allocations.load() - before >= 1);
}
