// Component tests of the tunnel pump (net/tunnel.hpp) over real loopback sockets. The
// passthrough relay: every case runs once with splice() and once with the buffered copy. The
// upgrade tunnel (run_tunnel): plain streams take the relay, layered streams (as TLS) the
// buffered copy; both end both directions on a reset and on cancellation.

#include "net/timed_stream.hpp"
#include "net/tunnel.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <doctest/doctest.h>

#include <array>
#include <chrono>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

// Every case ends well within this; a relay that hangs fails its case instead of the suite.
constexpr auto deadline = std::chrono::seconds(2);

constexpr std::size_t mib = std::size_t{1024} * 1024;

// Deterministic bytes with a period (251) that divides no buffer or pipe size, so a lost,
// doubled or reordered chunk shows.
std::string pattern(std::size_t size, unsigned seed) {
  std::string s(size, '\0');
  for (std::size_t i = 0; i < size; ++i) {
    s[i] = static_cast<char>((i * 7 + seed) % 251);
  }
  return s;
}

void connect_pair(tcp::socket& a, tcp::socket& b) {
  tcp::acceptor acceptor(a.get_executor(), tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  a.connect(acceptor.local_endpoint());
  acceptor.accept(b);
}

// Test coroutines throw only on a failed assertion; run() passes that on.
void spawn(asio::io_context& ioc, asio::awaitable<void> work) {
  asio::co_spawn(ioc, std::move(work), [](const std::exception_ptr& e) {
    if (e) {
      std::rethrow_exception(e);
    }
  });
}

// client_peer <-> [client  relay  upstream] <-> upstream_peer, all on 127.0.0.1.
struct loopback_relay {
  asio::io_context ioc;
  tcp::socket client_peer{ioc};
  tcp::socket client{ioc};
  tcp::socket upstream{ioc};
  tcp::socket upstream_peer{ioc};
  std::optional<wk::net::relay_result> result;
  steady::time_point started;
  steady::time_point ended;

  loopback_relay() {
    connect_pair(client_peer, client);
    connect_pair(upstream, upstream_peer);
  }

  // `first` must outlive run(). The relay may throw nothing, not even when cancelled.
  void start(std::string_view first, wk::net::relay_options opt,
             asio::cancellation_slot cancel = {}) {
    started = steady::now();
    asio::co_spawn(ioc, wk::net::relay(client, first, upstream, opt),
                   asio::bind_cancellation_slot(
                       cancel, [this](const std::exception_ptr& e, wk::net::relay_result r) {
                         CHECK_FALSE(e);
                         result = r;
                         ended = steady::now();
                       }));
  }

  // Until the relay and the peers are done, or the deadline.
  void run() { ioc.run_for(deadline); }

  [[nodiscard]] milliseconds relay_time() const {
    return std::chrono::duration_cast<milliseconds>(ended - started);
  }
};

struct received {
  std::string data;
  boost::system::error_code end;  // how the stream ended: eof, or a reset
};

// Buffers live on the heap: a coroutine frame over 1 KiB trips GCC 12's false
// -Wmismatched-new-delete on Asio's frame allocator at -O2.
asio::awaitable<void> read_all(tcp::socket& s, received& out) {
  std::vector<char> buf(std::size_t{32} * 1024);
  for (;;) {
    auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), nothrow);
    out.data.append(buf.data(), n);
    if (ec) {
      out.end = ec;
      co_return;
    }
  }
}

// Writes `data` (ignoring a failure: the tests look at what arrived), then half-closes.
asio::awaitable<void> write_all(tcp::socket& s, std::string data, bool then_shutdown) {
  co_await asio::async_write(s, asio::buffer(data), nothrow);
  if (then_shutdown) {
    boost::system::error_code ec;
    s.shutdown(tcp::socket::shutdown_send, ec);
  }
}

// A server that answers only once the request has ended.
asio::awaitable<void> reply_after_eof(tcp::socket& s, received& request, std::string reply) {
  co_await read_all(s, request);
  co_await write_all(s, std::move(reply), true);
}

// Waits for the first bytes, then resets the connection (SO_LINGER 0 close). With
// `half_close_first` it has ended its own stream before: a reset in CLOSE_WAIT makes the
// relay's next write fail with EPIPE, which splice() also raises as SIGPIPE.
asio::awaitable<void> read_then_reset(tcp::socket& s, bool half_close_first) {
  boost::system::error_code ec;
  if (half_close_first) {
    s.shutdown(tcp::socket::shutdown_send, ec);
  }
  std::array<char, 64> buf{};
  co_await s.async_read_some(asio::buffer(buf), nothrow);
  s.set_option(tcp::socket::linger(true, 0), ec);
  s.close(ec);
}

// One byte every `gap`, `count` times, without ending the stream.
asio::awaitable<void> trickle(tcp::socket& s, int count, milliseconds gap) {
  asio::steady_timer timer(s.get_executor());
  for (int i = 0; i < count; ++i) {
    timer.expires_after(gap);
    co_await timer.async_wait(nothrow);
    co_await asio::async_write(s, asio::buffer("x", 1), nothrow);
  }
}

// Makes every new descriptor fail with EMFILE while it lives; `open_fd` is any open descriptor.
class descriptor_limit {
public:
  explicit descriptor_limit(int open_fd) {
    ::getrlimit(RLIMIT_NOFILE, &saved_);
    int lowest_free = ::dup(open_fd);
    ::close(lowest_free);
    rlimit tight = saved_;
    tight.rlim_cur = static_cast<rlim_t>(lowest_free);
    ::setrlimit(RLIMIT_NOFILE, &tight);
  }
  descriptor_limit(const descriptor_limit&) = delete;
  descriptor_limit& operator=(const descriptor_limit&) = delete;
  ~descriptor_limit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }

private:
  rlimit saved_{};
};

}  // namespace

TEST_SUITE("splice_tunnel") {

  TEST_CASE("8 MiB each way arrive byte-exact and counted while both directions run at once") {
    wk::net::relay_options opt;
    SUBCASE("spliced") {}
    SUBCASE("buffered copy") {
      opt.allow_splice = false;
    }
    loopback_relay r;
    const auto up = pattern(8 * mib, 1);
    const auto down = pattern(8 * mib, 2);
    const std::size_t hello = 517;  // read ahead by the listener
    received at_upstream;
    received at_client;
    r.start(std::string_view(up).substr(0, hello), opt);
    spawn(r.ioc, write_all(r.client_peer, up.substr(hello), true));
    spawn(r.ioc, read_all(r.upstream_peer, at_upstream));
    spawn(r.ioc, write_all(r.upstream_peer, down, true));
    spawn(r.ioc, read_all(r.client_peer, at_client));
    r.run();

    REQUIRE(r.result);
    CHECK(r.result->spliced == opt.allow_splice);
    CHECK(r.result->stats.client_to_upstream == up.size());
    CHECK(r.result->stats.upstream_to_client == down.size());
    CHECK(at_upstream.end == asio::error::eof);
    CHECK(at_client.end == asio::error::eof);
    CHECK(at_upstream.data.size() == up.size());
    CHECK(at_client.data.size() == down.size());
    CHECK((at_upstream.data == up));  // not decomposed: no 8 MiB strings in a failure message
    CHECK((at_client.data == down));
  }

  TEST_CASE("bytes read ahead reach the upstream before anything the client sends later") {
    wk::net::relay_options opt;
    SUBCASE("spliced") {}
    SUBCASE("buffered copy") {
      opt.allow_splice = false;
    }
    loopback_relay r;
    // Larger than one write on loopback, so the relay is still writing it when it could
    // already read the client's next bytes, which wait in its socket from the start.
    const auto hello = pattern(2 * mib, 3);
    const std::string later = "application data";
    asio::write(r.client_peer, asio::buffer(later));
    r.client_peer.shutdown(tcp::socket::shutdown_send);
    r.upstream_peer.shutdown(tcp::socket::shutdown_send);
    received at_upstream;
    received at_client;
    r.start(hello, opt);
    spawn(r.ioc, read_all(r.upstream_peer, at_upstream));
    spawn(r.ioc, read_all(r.client_peer, at_client));
    r.run();

    REQUIRE(r.result);
    CHECK(r.result->stats.client_to_upstream == hello.size() + later.size());
    CHECK(r.result->stats.upstream_to_client == 0);
    CHECK(at_upstream.data.size() == hello.size() + later.size());
    CHECK((at_upstream.data == hello + later));
    CHECK(at_client.data.empty());
    CHECK(at_client.end == asio::error::eof);
  }

  TEST_CASE("half-close: the upstream sees the client's end of stream and can still reply") {
    wk::net::relay_options opt;
    SUBCASE("spliced") {}
    SUBCASE("buffered copy") {
      opt.allow_splice = false;
    }
    loopback_relay r;
    received request;
    received reply;
    r.start("", opt);
    spawn(r.ioc, write_all(r.client_peer, "GET", true));
    spawn(r.ioc, reply_after_eof(r.upstream_peer, request, "reply after end of request"));
    spawn(r.ioc, read_all(r.client_peer, reply));
    r.run();

    REQUIRE(r.result);
    CHECK(request.data == "GET");
    CHECK(request.end == asio::error::eof);
    CHECK(reply.data == "reply after end of request");
    CHECK(reply.end == asio::error::eof);
    CHECK(r.result->stats.client_to_upstream == 3);
    CHECK(r.result->stats.upstream_to_client == 26);
  }

  TEST_CASE("a reset on one side ends the relay and closes the other side") {
    wk::net::relay_options opt;
    opt.idle = std::chrono::seconds(30);  // far past the deadline: only the reset can end it
    SUBCASE("spliced") {}
    SUBCASE("buffered copy") {
      opt.allow_splice = false;
    }
    for (bool client_resets : {true, false}) {
      for (bool half_closed_first : {false, true}) {
        CAPTURE(client_resets);
        CAPTURE(half_closed_first);
        loopback_relay r;
        auto& resetting = client_resets ? r.client_peer : r.upstream_peer;
        auto& other = client_resets ? r.upstream_peer : r.client_peer;
        received at_other;
        r.start("", opt);
        // The other side keeps sending, so the relay is mid-write towards the reset socket too.
        spawn(r.ioc, write_all(other, pattern(4 * mib, 4), false));
        spawn(r.ioc, read_all(other, at_other));
        spawn(r.ioc, read_then_reset(resetting, half_closed_first));
        r.run();

        REQUIRE(r.result);
        CHECK_FALSE(r.client.is_open());
        CHECK_FALSE(r.upstream.is_open());
        const bool closed =
            at_other.end == asio::error::eof || at_other.end == asio::error::connection_reset;
        CHECK(closed);
      }
    }
  }

  TEST_CASE("the relay closes both sides after the idle time with no byte moving") {
    wk::net::relay_options opt;
    opt.idle = milliseconds(150);
    SUBCASE("spliced") {}
    SUBCASE("buffered copy") {
      opt.allow_splice = false;
    }
    for (bool trickling : {false, true}) {
      CAPTURE(trickling);
      loopback_relay r;
      received at_client;
      received at_upstream;
      r.start("", opt);
      spawn(r.ioc, read_all(r.client_peer, at_client));
      spawn(r.ioc, read_all(r.upstream_peer, at_upstream));
      if (trickling) {  // bytes every 50 ms keep it open for 200 ms, then it goes quiet
        spawn(r.ioc, trickle(r.client_peer, 4, milliseconds(50)));
      }
      r.run();

      REQUIRE(r.result);
      const auto quiet_from = trickling ? milliseconds(200) : milliseconds(0);
      CHECK(r.relay_time() >= quiet_from + opt.idle);
      CHECK(r.relay_time() < quiet_from + opt.idle + milliseconds(500));
      CHECK(at_upstream.data == (trickling ? "xxxx" : ""));
      CHECK(at_client.end == asio::error::eof);
      CHECK(at_upstream.end == asio::error::eof);
    }
  }

  TEST_CASE("cancelling the relay closes both sockets and throws nothing") {
    wk::net::relay_options opt;
    SUBCASE("spliced") {}
    SUBCASE("buffered copy") {
      opt.allow_splice = false;
    }
    loopback_relay r;
    asio::cancellation_signal cancel;
    received at_client;
    received at_upstream;
    r.start("", opt, cancel.slot());
    spawn(r.ioc, read_all(r.client_peer, at_client));
    spawn(r.ioc, read_all(r.upstream_peer, at_upstream));
    asio::steady_timer later(r.ioc, milliseconds(50));
    later.async_wait(
        [&cancel](boost::system::error_code) { cancel.emit(asio::cancellation_type::terminal); });
    r.run();

    REQUIRE(r.result);
    CHECK(r.relay_time() < opt.idle);
    CHECK_FALSE(r.client.is_open());
    CHECK_FALSE(r.upstream.is_open());
    CHECK(at_client.end == asio::error::eof);
    CHECK(at_upstream.end == asio::error::eof);
  }

  TEST_CASE("without descriptors left for the pipes the relay copies instead") {
    loopback_relay r;
    received request;
    received reply;
    std::optional<descriptor_limit> limit;
    limit.emplace(r.client.native_handle());
    r.start("hello", wk::net::relay_options{});
    spawn(r.ioc, write_all(r.client_peer, " world", true));
    spawn(r.ioc, reply_after_eof(r.upstream_peer, request, "ok"));
    spawn(r.ioc, read_all(r.client_peer, reply));
    r.run();
    limit.reset();

    REQUIRE(r.result);
    CHECK_FALSE(r.result->spliced);
    CHECK(request.data == "hello world");
    CHECK(reply.data == "ok");
  }

}  // TEST_SUITE

namespace {

// A stream over a timed_stream that is not its lowest layer, as a TLS stream is: run_tunnel
// copies through buffers for it.
struct layered_stream {
  wk::net::timed_stream& next;

  using executor_type = asio::any_io_executor;
  executor_type get_executor() { return next.get_executor(); }
  wk::net::timed_stream& next_layer() { return next; }

  template <class Buffers, class Token> auto async_read_some(const Buffers& b, Token&& token) {
    return next.async_read_some(b, std::forward<Token>(token));
  }
  template <class Buffers, class Token> auto async_write_some(const Buffers& b, Token&& token) {
    return next.async_write_some(b, std::forward<Token>(token));
  }
};

static_assert(wk::net::detail::is_plain_stream<wk::net::timed_stream>);
static_assert(!wk::net::detail::is_plain_stream<layered_stream>);

// client_peer <-> [client  run_tunnel  upstream] <-> upstream_peer, all on 127.0.0.1, the
// proxy's side as timed streams (as in a session).
struct loopback_tunnel {
  asio::io_context ioc;
  tcp::socket client_peer{ioc};
  tcp::socket upstream_peer{ioc};
  std::optional<wk::net::timed_stream> client;
  std::optional<wk::net::timed_stream> upstream;
  std::optional<layered_stream> layered_client;
  std::optional<layered_stream> layered_upstream;
  boost::beast::flat_buffer client_pending;
  boost::beast::flat_buffer upstream_pending;
  std::vector<char> buf_up = std::vector<char>(std::size_t{16} * 1024);
  std::vector<char> buf_down = std::vector<char>(std::size_t{16} * 1024);
  std::optional<wk::net::tunnel_stats> stats;

  loopback_tunnel() {
    tcp::socket c(ioc);
    tcp::socket u(ioc);
    connect_pair(client_peer, c);
    connect_pair(u, upstream_peer);
    client.emplace(std::move(c));
    upstream.emplace(std::move(u));
    layered_client.emplace(layered_stream{*client});
    layered_upstream.emplace(layered_stream{*upstream});
  }

  void pending(std::string_view to_upstream, std::string_view to_client) {
    asio::buffer_copy(client_pending.prepare(to_upstream.size()), asio::buffer(to_upstream));
    client_pending.commit(to_upstream.size());
    asio::buffer_copy(upstream_pending.prepare(to_client.size()), asio::buffer(to_client));
    upstream_pending.commit(to_client.size());
  }

  void start(bool layered, milliseconds idle, asio::cancellation_slot cancel = {}) {
    auto done = asio::bind_cancellation_slot(
        cancel, [this](const std::exception_ptr& e, wk::net::tunnel_stats s) {
          CHECK_FALSE(e);
          stats = s;
        });
    const std::span<char> up(buf_up);
    const std::span<char> down(buf_down);
    if (layered) {
      asio::co_spawn(ioc,
                     wk::net::run_tunnel(*layered_client, client_pending, *layered_upstream,
                                         upstream_pending, up, down, idle),
                     std::move(done));
    } else {
      asio::co_spawn(
          ioc,
          wk::net::run_tunnel(*client, client_pending, *upstream, upstream_pending, up, down, idle),
          std::move(done));
    }
  }

  void run() { ioc.run_for(deadline); }
};

}  // namespace

TEST_SUITE("tunnel") {

  TEST_CASE("run_tunnel sends the bytes read ahead first, both ways, and honours half-close") {
    bool layered = false;
    SUBCASE("plain streams: the relay") {}
    SUBCASE("layered streams: the buffered copy") {
      layered = true;
    }
    loopback_tunnel t;
    t.pending("ahead-up ", "ahead-down ");
    received request;
    received reply;
    t.start(layered, std::chrono::seconds(30));
    spawn(t.ioc, write_all(t.client_peer, "GET", true));
    spawn(t.ioc, reply_after_eof(t.upstream_peer, request, "reply"));
    spawn(t.ioc, read_all(t.client_peer, reply));
    t.run();

    REQUIRE(t.stats);
    CHECK(request.data == "ahead-up GET");
    CHECK(request.end == asio::error::eof);
    CHECK(reply.data == "ahead-down reply");
    CHECK(reply.end == asio::error::eof);
    CHECK(t.stats->client_to_upstream == 12);
    CHECK(t.stats->upstream_to_client == 16);
    CHECK(t.client_pending.size() == 0);
    CHECK(t.upstream_pending.size() == 0);
  }

  TEST_CASE("run_tunnel: a reset on one side ends both directions") {
    bool layered = false;
    SUBCASE("plain streams: the relay") {}
    SUBCASE("layered streams: the buffered copy") {
      layered = true;
    }
    for (bool client_resets : {true, false}) {
      CAPTURE(client_resets);
      loopback_tunnel t;
      auto& resetting = client_resets ? t.client_peer : t.upstream_peer;
      auto& other = client_resets ? t.upstream_peer : t.client_peer;
      received at_other;
      t.start(layered, std::chrono::seconds(30));  // only the reset can end it in time
      spawn(t.ioc, write_all(other, pattern(4 * mib, 5), false));
      spawn(t.ioc, read_all(other, at_other));
      spawn(t.ioc, read_then_reset(resetting, false));
      t.run();

      REQUIRE(t.stats);
      CHECK_FALSE(t.client->socket().is_open());
      CHECK_FALSE(t.upstream->socket().is_open());
      const bool closed =
          at_other.end == asio::error::eof || at_other.end == asio::error::connection_reset;
      CHECK(closed);
    }
  }

  TEST_CASE("run_tunnel: cancellation ends both directions and throws nothing") {
    bool layered = false;
    SUBCASE("plain streams: the relay") {}
    SUBCASE("layered streams: the buffered copy") {
      layered = true;
    }
    loopback_tunnel t;
    asio::cancellation_signal cancel;
    received at_client;
    received at_upstream;
    t.start(layered, std::chrono::seconds(30), cancel.slot());
    spawn(t.ioc, read_all(t.client_peer, at_client));
    spawn(t.ioc, read_all(t.upstream_peer, at_upstream));
    asio::steady_timer later(t.ioc, milliseconds(50));
    later.async_wait(
        [&cancel](boost::system::error_code) { cancel.emit(asio::cancellation_type::terminal); });
    t.run();

    REQUIRE(t.stats);
    CHECK_FALSE(t.client->socket().is_open());
    CHECK_FALSE(t.upstream->socket().is_open());
    CHECK(at_client.end == asio::error::eof);
    CHECK(at_upstream.end == asio::error::eof);
  }

}  // TEST_SUITE
