#include "upstream/connector.hpp"

#include "core/asio.hpp"
#include "core/endpoint.hpp"
#include "net/tls_context.hpp"
#include "observe/log.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace wk::upstream {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

// Sets SNI and the name the certificate must carry (net::expect_peer).
bool prepare_tls(tls_stream& s, const config::upstream& u, std::string& detail) {
  const std::string& name = u.sni.empty() ? u.host : u.sni;
  switch (net::expect_peer(s.native_handle(), u.sni, u.verify ? name : std::string())) {
  case net::peer_setup::ok:
    return true;
  case net::peer_setup::bad_sni:
    detail = "invalid SNI name " + u.sni;
    return false;
  case net::peer_setup::bad_name:
    detail = "cannot verify against name " + name;
    return false;
  }
  return false;
}

std::string tls_error_text(tls_stream& s, const boost::system::error_code& ec) {
  std::string verify = net::verify_failure(s.native_handle());
  return verify.empty() ? ec.message() : verify;
}

}  // namespace

asio::awaitable<connect_outcome> connect(const target& t, const config::timeouts& to,
                                         std::string_view preface) {
  connect_outcome out;
  auto addresses = t.dns->get();
  if (addresses->empty()) {
    std::string error;
    addresses = co_await t.dns->resolve(error);
    if (addresses->empty()) {
      out.error = core::failure::upstream_unresolved;
      out.detail = error;
      co_return out;
    }
  }
  auto exec = co_await asio::this_coro::executor;
  for (const auto& ep : *addresses) {
    tcp_stream stream(exec);
    stream.expires_after(to.connect);
    auto [ec] = co_await stream.async_connect(ep, core::nothrow);
    if (ec) {
      out.error = ec == beast::error::timeout ? core::failure::upstream_connect_timeout
                                              : core::failure::upstream_refused;
      out.detail = t.cfg.name + " " + core::endpoint_text(ep) + ": " + ec.message();
      if (observe::enabled(observe::level::debug)) {
        observe::debug("upstream: connect to " + out.detail);
      }
      continue;  // the next address may answer
    }
    stream.socket().set_option(tcp::no_delay(true), ec);
    if (!preface.empty()) {
      auto [wec, wn] = co_await asio::async_write(
          stream, asio::buffer(preface.data(), preface.size()), core::nothrow);
      if (wec) {
        out.error = wec == beast::error::timeout ? core::failure::upstream_connect_timeout
                                                 : core::failure::upstream_refused;
        out.detail =
            t.cfg.name + " " + core::endpoint_text(ep) + ": sending PROXY header: " + wec.message();
        continue;
      }
    }
    if (!t.tls) {
      if (observe::enabled(observe::level::debug)) {
        observe::debug("upstream: connected to " + t.cfg.name + " " + core::endpoint_text(ep));
      }
      stream.expires_never();
      out.conn = std::make_unique<connection>(std::move(stream));
      out.error = core::failure::none;
      out.detail.clear();
      co_return out;
    }
    tls_stream tls(std::move(stream), *t.tls);
    if (!prepare_tls(tls, t.cfg, out.detail)) {
      out.error = core::failure::upstream_tls;
      co_return out;
    }
    tls.next_layer().expires_after(to.connect);
    auto [hec] = co_await tls.async_handshake(ssl::stream_base::client, core::nothrow);
    if (hec) {
      out.error = hec == beast::error::timeout ? core::failure::upstream_connect_timeout
                                               : core::failure::upstream_tls;
      out.detail = t.cfg.name + " " + core::endpoint_text(ep) + ": " + tls_error_text(tls, hec);
      // A handshake failure is about the server, not this address: do not try the others
      // unless it was a timeout.
      if (out.error == core::failure::upstream_tls) {
        co_return out;
      }
      continue;
    }
    tls.next_layer().expires_never();
    if (observe::enabled(observe::level::debug)) {
      const char* version = SSL_get_version(tls.native_handle());
      observe::debug("upstream: connected to " + t.cfg.name + " " + core::endpoint_text(ep) + " (" +
                     (version != nullptr ? version : "TLS") + ")");
    }
    out.conn = std::make_unique<connection>(std::move(tls), t.tls);
    out.error = core::failure::none;
    out.detail.clear();
    co_return out;
  }
  co_return out;
}

}  // namespace wk::upstream
