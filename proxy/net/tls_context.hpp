#pragma once
// TLS client contexts for https upstreams, and the peer identity a TLS client checks (used by
// the upstream connector and by `wkproxy check`, so both verify a server the same way).

#include "config/config.hpp"

#include <boost/asio/ssl/context.hpp>

#include <openssl/types.h>

#include <memory>
#include <string>
#include <string_view>
#include <variant>

namespace wk::net {

// TLS 1.2+ client context: verification on unless the upstream says verify: false; trust
// anchors from ca_file when given, else the system store. Built on the main thread (it reads
// files); shared read-only by all workers. Returns the reason on failure.
std::variant<std::shared_ptr<boost::asio::ssl::context>, std::string>
make_client_context(const config::upstream& u);

// What a TLS client expects of the server, set on one connection before its handshake:
// SNI `sni` (not sent when empty or an IP literal, RFC 6066 section 3) and, when `verify_name`
// is not empty, the host name or IP address the certificate must carry. OpenSSL checks the name
// during the handshake (no partial wildcards such as "a*.example.com"), so a wrong certificate
// fails the handshake itself.
enum class peer_setup { ok, bad_sni, bad_name };
peer_setup expect_peer(SSL* ssl, const std::string& sni, const std::string& verify_name);

// After a failed handshake: "certificate verification failed: <OpenSSL's reason>" when
// verification is what failed, else "".
std::string verify_failure(const SSL* ssl);

}  // namespace wk::net
