#include "app/connection.hpp"

#include "app/passthrough.hpp"
#include "core/asio.hpp"
#include "core/endpoint.hpp"
#include "net/timed_stream.hpp"
#include "observe/counters.hpp"
#include "observe/log.hpp"
#include "session/keepalive.hpp"
#include "wire/proxy_protocol.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace wk::app {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

namespace {

using core::nothrow;

void copy_address(const asio::ip::address& a, wire::pp_family& family,
                  std::array<std::uint8_t, 16>& out) {
  if (a.is_v4()) {
    const auto b = a.to_v4().to_bytes();
    std::copy(b.begin(), b.end(), out.begin());
    family = wire::pp_family::tcp4;
  } else {
    const auto b = a.to_v6().to_bytes();
    std::copy(b.begin(), b.end(), out.begin());
    family = wire::pp_family::tcp6;
  }
}

// The connection as the socket sees it: client = the TCP peer.
session::client_info info_from(const tcp::endpoint& remote, const tcp::endpoint& local) {
  session::client_info info;
  info.peer_ip = core::address_text(remote.address());
  info.peer = core::host_port_text(info.peer_ip, remote.port());
  info.socket_v6 = local.address().is_v6();
  wire::pp_family local_family = wire::pp_family::unknown;
  copy_address(remote.address(), info.pp.family, info.pp.src);
  copy_address(local.address(), local_family, info.pp.dst);
  if (local_family != info.pp.family) {
    info.pp.family = wire::pp_family::unknown;  // cannot happen on one TCP connection
  }
  info.pp.src_port = remote.port();
  info.pp.dst_port = local.port();
  return info;
}

bool trusted(const std::vector<config::cidr>& ranges, const asio::ip::address& a) {
  std::array<std::uint8_t, 16> bytes{};
  std::size_t size = 4;
  if (a.is_v4()) {
    const auto b = a.to_v4().to_bytes();
    std::copy(b.begin(), b.end(), bytes.begin());
  } else {
    const auto b = a.to_v6().to_bytes();
    std::copy(b.begin(), b.end(), bytes.begin());
    size = 16;
  }
  return std::any_of(ranges.begin(), ranges.end(),
                     [&](const config::cidr& r) { return r.contains(bytes.data(), size); });
}

// Reads the PROXY header a trusted balancer sends first, within the header deadline. On
// success `info` describes the client it carries (unless it carries none: LOCAL or UNKNOWN)
// and `early` holds the bytes after the header. Returns false when the connection must close.
asio::awaitable<bool> read_proxy_header(net::timed_stream& s, session::client_info& info,
                                        std::string& early, std::chrono::milliseconds deadline,
                                        observe::counters& counters) {
  s.expires_after(deadline);
  std::string buf;
  for (;;) {
    const auto r = wire::parse_proxy_header(buf);
    if (r.status == wire::pp_status::ok) {
      if (!r.local && r.addr.family != wire::pp_family::unknown) {
        info.pp = r.addr;
        info.peer_ip = r.addr.src_string();
        info.peer = core::host_port_text(info.peer_ip, r.addr.src_port);
      }
      early = buf.substr(r.length);
      s.expires_never();
      co_return true;
    }
    if (r.status != wire::pp_status::need_more) {
      counters.count(observe::connection_event::proxy_invalid);
      observe::warn_limited("PROXY header from " + info.peer + " refused: " + r.reason);
      co_return false;
    }
    char chunk[512];
    // Never more than the longest header: the bytes after it belong to the next layer, and
    // reading little keeps them few.
    const auto want = std::min(sizeof chunk, wire::pp_v2_max_length + 1 - buf.size());
    auto [ec, n] = co_await s.async_read_some(asio::buffer(chunk, want), nothrow);
    if (ec) {
      if (!buf.empty() || ec == beast::error::timeout) {
        counters.count(observe::connection_event::proxy_invalid);
        observe::warn_limited(
            "PROXY header from " + info.peer + ": " +
            (ec == beast::error::timeout ? std::string("none in time") : ec.message()));
      }
      co_return false;
    }
    buf.append(chunk, n);
  }
}

}  // namespace

namespace {

// The rest of a connection that needs to wait before its mode's server takes it (a PROXY
// header first), or whose server is a coroutine itself (TLS termination, passthrough).
asio::awaitable<void> serve_client(worker_state* w, session::connection_count count,
                                   tcp::socket socket, session::client_info info,
                                   tcp::endpoint peer, std::shared_ptr<const runtime::snapshot> rt,
                                   const runtime::listener_runtime* listener) {
  std::string early;
  const auto& cfg = *listener->cfg;
  const auto& slot = count.slot;
  if (!cfg.accept_proxy_from.empty()) {
    if (!trusted(cfg.accept_proxy_from, peer.address())) {
      w->report.counters->count(observe::connection_event::proxy_untrusted);
      observe::warn_limited("connection from " + info.peer + " on " + slot->name +
                            " refused: not in accept_proxy_from");
      boost::system::error_code ec;
      socket.close(ec);
      co_return;
    }
    net::timed_stream stream(std::move(socket));
    if (!co_await read_proxy_header(stream, info, early, rt->cfg->timeouts.header_read,
                                    *w->report.counters)) {
      stream.close();
      co_return;
    }
    socket = stream.release_socket();
  }
  switch (cfg.mode) {
  case config::listener_mode::http:
    // Lives on by itself from here (parked between requests): this frame ends now.
    session::serve_connection(std::move(count), std::move(socket), std::move(info),
                              std::move(early));
    break;
  case config::listener_mode::tls:
    co_await session::serve_tls_connection(w, std::move(socket), std::move(info), std::move(early),
                                           listener->tls);
    break;
  case config::listener_mode::passthrough:
    co_await serve_passthrough(w, std::move(socket), std::move(info), std::move(early), rt,
                               listener);
    break;
  }
}

}  // namespace

void start_client(worker_state* w, tcp::socket socket, const tcp::endpoint& peer,
                  std::shared_ptr<net::listener_slot> slot) {
  session::connection_count count(w, std::move(slot));
  const auto& counted = *count.slot;
  const runtime::listener_runtime* listener = w->runtime->listener_for(counted);
  boost::system::error_code ec;
  // Only a wildcard listener needs to ask which of its addresses the client reached.
  const auto local =
      counted.bound.address().is_unspecified() ? socket.local_endpoint(ec) : counted.bound;
  if (listener == nullptr || ec) {
    return;  // the listener was removed by a reload, or the client already left
  }
  // TCP_NODELAY came with the socket: accepted connections inherit it from the listener.
  auto info = info_from(peer, local);
  info.listener_index = counted.metrics_index;
  info.slot = &counted;
  const auto& cfg = *listener->cfg;
  if (cfg.mode == config::listener_mode::http && cfg.accept_proxy_from.empty()) {
    // The common case starts its session at once, without a coroutine frame of its own.
    session::serve_connection(std::move(count), std::move(socket), std::move(info), {});
    return;
  }
  auto exec = socket.get_executor();
  asio::co_spawn(exec,
                 serve_client(w, std::move(count), std::move(socket), std::move(info), peer,
                              w->runtime, listener),
                 observe::log_exception{"session"});
}

}  // namespace wk::app
