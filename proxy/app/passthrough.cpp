#include "app/passthrough.hpp"

#include "core/asio.hpp"
#include "net/timed_stream.hpp"
#include "net/tunnel.hpp"
#include "observe/counters.hpp"
#include "observe/log.hpp"
#include "observe/metrics.hpp"
#include "session/finish.hpp"
#include "upstream/connector.hpp"
#include "wire/client_hello.hpp"
#include "wire/proxy_protocol.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>

#include <algorithm>
#include <chrono>

namespace wk::app {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;

namespace {

using core::nothrow;

// A ClientHello body is at most 16 KiB here (parse_client_hello's default); with record
// headers, a few more bytes. Anything longer is refused as too_large by the parser.
constexpr std::size_t max_hello_input = 16384 + 1024;

struct passthrough_state {
  steady::time_point start = steady::now();
  std::chrono::system_clock::time_point wall = std::chrono::system_clock::now();
  std::string sni;
  std::string alpn;  // the client's first ALPN protocol, for the log
  const upstream::target* target = nullptr;
  net::tunnel_stats bytes;
  std::string_view error;
};

// The SNI as a metrics label: only names the config knows (a route or a tenant domain), so a
// scanner cannot create time series at will.
std::string_view sni_label(const runtime::snapshot& rt, const runtime::listener_runtime& l,
                           std::string_view sni) {
  if (sni.empty()) {
    return "none";
  }
  const bool known = std::any_of(l.sni_routes.begin(), l.sni_routes.end(),
                                 [&](const runtime::sni_target& r) { return r.pattern == sni; }) ||
                     rt.routes.domains.lists(sni);
  return known ? sni : std::string_view("other");
}

void write_log(worker_state* w, const passthrough_state& st, const session::client_info& info) {
  observe::access_record r;
  r.time = st.wall;
  r.client = info.peer;
  r.host = st.sni;
  r.method = "";
  r.target = st.alpn;
  r.route = "passthrough";
  r.upstream = st.target != nullptr ? std::string_view(st.target->cfg.name) : std::string_view();
  r.bytes_in = st.bytes.client_to_upstream;
  r.bytes_out = st.bytes.upstream_to_client;
  r.duration_ms = std::chrono::duration<double, std::milli>(steady::now() - st.start).count();
  r.error = st.error;
  w->log.write(r);
  w->metrics.record_request(info.listener_index, observe::route_label::passthrough, 0,
                            steady::now() - st.start, r.bytes_in, r.bytes_out);
}

// Reads until `buf` holds a whole ClientHello (possibly over several records and reads).
asio::awaitable<wire::client_hello> read_hello(net::timed_stream& s, std::string& buf,
                                               std::chrono::milliseconds deadline,
                                               bool& timed_out) {
  s.expires_after(deadline);
  for (;;) {
    auto hello = wire::parse_client_hello(buf);
    if (hello.status != wire::hello_status::need_more) {
      s.expires_never();
      co_return hello;
    }
    if (buf.size() >= max_hello_input) {
      hello.status = wire::hello_status::too_large;
      hello.reason = "ClientHello too large";
      co_return hello;
    }
    const std::size_t want = std::min<std::size_t>(max_hello_input - buf.size(), 8192);
    const auto old = buf.size();
    buf.resize(old + want);
    auto [ec, n] = co_await s.async_read_some(asio::buffer(buf.data() + old, want), nothrow);
    buf.resize(old + n);
    if (ec) {
      timed_out = ec == beast::error::timeout;
      hello.reason = timed_out ? "no complete ClientHello in time" : ec.message();
      co_return hello;
    }
  }
}

}  // namespace

asio::awaitable<void> serve_passthrough(worker_state* w, tcp::socket socket,
                                        session::client_info info, std::string early,
                                        std::shared_ptr<const runtime::snapshot> rt,
                                        const runtime::listener_runtime* listener) {
  passthrough_state st;
  const auto& timeouts = rt->cfg->timeouts;
  net::timed_stream client(std::move(socket));
  bool timed_out = false;
  const auto hello = co_await read_hello(client, early, timeouts.header_read, timed_out);
  if (hello.status != wire::hello_status::ok) {
    if (hello.status == wire::hello_status::need_more && early.empty() && !timed_out) {
      co_return;  // closed before sending anything: a TCP health check
    }
    const bool late = hello.status == wire::hello_status::need_more;
    w->report.counters->count(late ? observe::connection_event::passthrough_timeout
                                   : observe::connection_event::passthrough_not_tls);
    st.error = late ? "client_hello_timeout" : "not_tls";
    observe::warn_limited("passthrough from " + info.peer + " closed: " + hello.reason);
    write_log(w, st, info);
    co_return;  // never forwarded: garbage is not TLS
  }
  st.sni = hello.sni;
  if (!hello.alpn.empty()) {
    st.alpn = hello.alpn.front();
  }
  if (st.sni.empty() && listener->cfg->reject_without_sni) {
    w->report.counters->count(observe::connection_event::passthrough_no_sni);
    st.error = "no_sni";
    write_log(w, st, info);
    co_return;
  }
  st.target = &listener->passthrough_for(st.sni);
  w->metrics.passthrough_connections.add(
      {listener->cfg->address, sni_label(*rt, *listener, st.sni)});
  std::string preface;
  if (st.target->cfg.send_proxy_protocol == config::proxy_protocol::v1) {
    preface = wire::build_proxy_v1(info.pp);
  } else if (st.target->cfg.send_proxy_protocol == config::proxy_protocol::v2) {
    preface = wire::build_proxy_v2(info.pp);
  }
  auto outcome = co_await upstream::connect(*st.target, timeouts, preface);
  constexpr auto pass = static_cast<std::size_t>(observe::upstream_label::passthrough);
  w->metrics.pool_misses[pass].add();
  if (!outcome.conn) {
    w->report.counters->count(observe::connection_event::passthrough_upstream);
    observe::warn_limited("passthrough from " + info.peer + " (SNI \"" + st.sni +
                          "\"): " + outcome.detail);
    st.error = core::name_of(outcome.error);
    session::count_upstream_failure(w, observe::upstream_label::passthrough, outcome.error);
    write_log(w, st, info);
    co_return;
  }
  auto up = std::get<upstream::tcp_stream>(std::move(outcome.conn->stream)).release_socket();
  auto down = client.release_socket();
  net::relay_options opt;
  opt.idle = timeouts.tunnel_idle;
  w->metrics.tunnels.add(1);
  const auto result = co_await net::relay(down, early, up, opt);
  w->metrics.tunnels.add(-1);
  st.bytes = result.stats;
  write_log(w, st, info);
  boost::system::error_code ec;
  down.close(ec);
  up.close(ec);
}

}  // namespace wk::app
