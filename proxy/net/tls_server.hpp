#pragma once
// The server side of a TLS-terminating listener: one OpenSSL context per configured
// certificate, the certificate chosen by SNI during the handshake, ALPN http/1.1, session
// resumption and OCSP stapling.

#include "config/config.hpp"

#include <boost/asio/ssl/context.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace wk::net {

// Which certificate serves `sni` (lower-case by contract; compared ASCII case-insensitively
// anyway; may be empty). names[i] holds the DNS names of certificate i: exact names, or
// "*.suffix" wildcards matching exactly one more non-empty label ("*.example.com" matches
// "a.example.com", not "example.com" nor "a.b.example.com"). An exact match on any certificate
// wins over a wildcard match; among equal matches the first certificate in config order wins.
// No match, or an empty sni: 0, the default certificate. Pure.
std::size_t select_certificate(const std::vector<std::vector<std::string>>& names,
                               std::string_view sni);

// The TLS contexts of one TLS-terminating listener. Immutable after make_server_tls; shared by
// all worker threads as shared_ptr<const server_tls> (an SSL_CTX may create SSL objects from
// several threads at once).
//
// Lifetime: the handshake callbacks installed on the contexts point at this object (SNI) and at
// the OCSP bytes it owns. A connection's SSL object keeps its SSL_CTX alive but not this
// object, so whoever creates a stream with context() must keep the shared_ptr<const server_tls>
// for as long as that stream (the connection) lives. Not copyable or movable, for the same
// reason.
//
// Resumption: session tickets (the default, and how TLS 1.3 resumes) need nothing from the
// connection code. TLS 1.2 clients that resume by session id hit the default context's session
// cache, and OpenSSL drops a cached session when its SSL is freed without having sent
// close_notify (a possible truncation), so connections should end with an SSL shutdown.
class server_tls {
public:
  server_tls(const server_tls&) = delete;
  server_tls& operator=(const server_tls&) = delete;
  server_tls(server_tls&&) = delete;
  server_tls& operator=(server_tls&&) = delete;
  ~server_tls() = default;

  // The context to create streams with: the default (first) certificate's. During the
  // handshake its SNI callback moves the connection to the selected certificate's context.
  // Non-const because Asio's ssl::stream takes a mutable context; the caller must not change
  // its settings.
  [[nodiscard]] boost::asio::ssl::context& context() const { return context(0); }

  // The context of certificate `index` (config order). Precondition: index < names().size().
  [[nodiscard]] boost::asio::ssl::context& context(std::size_t index) const;

  // Per certificate, in config order: its DNS names (subjectAltName DNS entries, lower-cased,
  // else the subject common name).
  [[nodiscard]] const std::vector<std::vector<std::string>>& names() const { return names_; }

private:
  server_tls() = default;

  friend std::variant<std::shared_ptr<const server_tls>, std::string>
  make_server_tls(const std::vector<config::certificate>& certs,
                  std::vector<std::string>& warnings);

  std::vector<std::unique_ptr<boost::asio::ssl::context>> contexts_;
  std::vector<std::vector<std::string>> names_;
  std::vector<std::string> ocsp_;  // per certificate: DER OCSP response to staple, or empty
};

// Builds the contexts of a TLS-terminating listener from `certs` (config order; the first is
// the default). Reads every certificate chain, private key and optional OCSP response, so it
// runs on the main thread, never on a worker; nothing is read afterwards. On failure returns
// a reason naming the file, e.g. "/path/site.key: does not match /path/site.pem" or
// "/path/site.pem: no certificate". Non-fatal findings (a certificate expired or not yet
// valid, a certificate without names, an OCSP file that is not an OCSP response) are appended
// to `warnings`. Never throws.
std::variant<std::shared_ptr<const server_tls>, std::string>
make_server_tls(const std::vector<config::certificate>& certs, std::vector<std::string>& warnings);

}  // namespace wk::net
