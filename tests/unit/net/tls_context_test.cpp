// net::expect_peer: what a TLS client asks of the server before the handshake (SNI, the name or
// address the certificate must carry), shared by the upstream connector and `wkproxy check`.

#include "net/tls_context.hpp"

#include <doctest/doctest.h>

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <memory>
#include <string>

namespace {

struct ssl_deleter {
  void operator()(SSL* s) const { SSL_free(s); }
};

std::unique_ptr<SSL, ssl_deleter> client_ssl() {
  static auto* ctx = SSL_CTX_new(TLS_client_method());
  return std::unique_ptr<SSL, ssl_deleter>(SSL_new(ctx));
}

std::string servername(SSL* s) {
  const char* name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
  return name ? name : "";
}

std::string verified_host(SSL* s) {
  const char* host = X509_VERIFY_PARAM_get0_host(SSL_get0_param(s), 0);
  return host ? host : "";
}

}  // namespace

TEST_CASE("a host name is sent as SNI and is the name the certificate must carry") {
  auto s = client_ssl();
  CHECK(wk::net::expect_peer(s.get(), "tenant.example.com", "tenant.example.com") ==
        wk::net::peer_setup::ok);
  CHECK(servername(s.get()) == "tenant.example.com");
  CHECK(verified_host(s.get()) == "tenant.example.com");
  CHECK((X509_VERIFY_PARAM_get_hostflags(SSL_get0_param(s.get())) &
         X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS) != 0);
}

TEST_CASE("an IP literal is never sent as SNI; the certificate must carry that address") {
  for (const std::string ip : {"127.0.0.1", "::1"}) {
    auto s = client_ssl();
    CHECK(wk::net::expect_peer(s.get(), ip, ip) == wk::net::peer_setup::ok);
    CHECK(servername(s.get()).empty());
    CHECK(verified_host(s.get()).empty());  // checked as an address, not as a name
  }
}

TEST_CASE("no verify name: SNI only, nothing to check") {
  auto s = client_ssl();
  CHECK(wk::net::expect_peer(s.get(), "a.example.com", "") == wk::net::peer_setup::ok);
  CHECK(servername(s.get()) == "a.example.com");
  CHECK(verified_host(s.get()).empty());
}

TEST_CASE("empty SNI: none sent, the name is still verified") {
  auto s = client_ssl();
  CHECK(wk::net::expect_peer(s.get(), "", "origin.internal") == wk::net::peer_setup::ok);
  CHECK(servername(s.get()).empty());
  CHECK(verified_host(s.get()) == "origin.internal");
}

TEST_CASE("a name OpenSSL refuses is reported, not ignored") {
  auto s = client_ssl();
  // A name longer than a DNS name may be (255 bytes) is refused as SNI.
  const std::string too_long(300, 'a');
  CHECK(wk::net::expect_peer(s.get(), too_long, "") == wk::net::peer_setup::bad_sni);
}

TEST_CASE("verify_failure is empty before any verification ran") {
  auto s = client_ssl();
  CHECK(wk::net::verify_failure(s.get()).empty());
}
