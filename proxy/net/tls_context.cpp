#include "net/tls_context.hpp"

#include <boost/asio/ip/address.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

namespace wk::net {

namespace ssl = boost::asio::ssl;

std::variant<std::shared_ptr<ssl::context>, std::string>
make_client_context(const config::upstream& u) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression);
  boost::system::error_code ec;
  if (u.verify) {
    ctx->set_verify_mode(ssl::verify_peer, ec);
    if (!u.ca_file.empty()) {
      ctx->load_verify_file(u.ca_file, ec);
      if (ec) {
        return u.name + ": cannot load ca_file " + u.ca_file + ": " + ec.message();
      }
    } else {
      ctx->set_default_verify_paths(ec);
      if (ec) {
        return u.name + ": cannot load the system CA store: " + ec.message();
      }
    }
  } else {
    ctx->set_verify_mode(ssl::verify_none, ec);
  }
  return ctx;
}

peer_setup expect_peer(SSL* ssl, const std::string& sni, const std::string& verify_name) {
  const auto is_ip = [](const std::string& name) {
    boost::system::error_code ec;
    (void)boost::asio::ip::make_address(name, ec);
    return !ec;
  };
  if (!sni.empty() && !is_ip(sni) && SSL_set_tlsext_host_name(ssl, sni.c_str()) != 1) {
    return peer_setup::bad_sni;
  }
  if (!verify_name.empty()) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    const int ok = is_ip(verify_name) ? X509_VERIFY_PARAM_set1_ip_asc(param, verify_name.c_str())
                                      : X509_VERIFY_PARAM_set1_host(param, verify_name.c_str(),
                                                                    verify_name.size());
    if (ok != 1) {
      return peer_setup::bad_name;
    }
  }
  return peer_setup::ok;
}

std::string verify_failure(const SSL* ssl) {
  const long verify = SSL_get_verify_result(ssl);
  if (verify == X509_V_OK) {
    return {};
  }
  return std::string("certificate verification failed: ") + X509_verify_cert_error_string(verify);
}

}  // namespace wk::net
