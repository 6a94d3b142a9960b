#include "net/tls_context.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

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

}  // namespace wk::net
