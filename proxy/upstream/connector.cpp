#include "upstream/connector.hpp"

#include "core/asio.hpp"
#include "core/endpoint.hpp"
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

// Sets SNI and the name the certificate must carry. OpenSSL checks the name during the
// handshake (X509_VERIFY_PARAM), so a wrong certificate fails the handshake itself.
bool prepare_tls(tls_stream& s, const config::upstream& u, std::string& detail) {
  const std::string& name = u.sni.empty() ? u.host : u.sni;
  boost::system::error_code ec;
  (void)asio::ip::make_address(name, ec);
  bool is_ip = !ec;
  SSL* h = s.native_handle();
  if (!is_ip && !u.sni.empty()) {
    if (SSL_set_tlsext_host_name(h, u.sni.c_str()) != 1) {
      detail = "invalid SNI name " + u.sni;
      return false;
    }
  }
  if (u.verify) {
    X509_VERIFY_PARAM* param = SSL_get0_param(h);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())
                   : X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
    if (ok != 1) {
      detail = "cannot verify against name " + name;
      return false;
    }
  }
  return true;
}

std::string tls_error_text(tls_stream& s, const boost::system::error_code& ec) {
  long verify = SSL_get_verify_result(s.native_handle());
  if (verify != X509_V_OK) {
    return std::string("certificate verification failed: ") + X509_verify_cert_error_string(verify);
  }
  return ec.message();
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
