#include "net/tls_server.hpp"

#include "net/openssl_ptr.hpp"

#include "core/ascii.hpp"
#include "core/host_pattern.hpp"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstdio>
#include <exception>
#include <optional>
#include <system_error>
#include <utility>

namespace wk::net {

namespace ssl = boost::asio::ssl;

namespace {

// TLS 1.2 suites: Mozilla's "intermediate" profile without its DHE suites (ECDHE only, AEAD
// only). TLS 1.3 suites are OpenSSL's defaults, which are all AEAD.
// https://wiki.mozilla.org/Security/Server_Side_TLS#Intermediate_compatibility_.28recommended.29
constexpr const char* tls12_ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                      "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                      "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// The same session id context on every context of a listener: after an SNI switch the
// connection carries the selected context's value (SSL_set_SSL_CTX copies it), and a session
// only resumes when the value it was created under matches, so one value keeps resumption
// working whichever certificate served the first connection.
constexpr std::string_view session_id_context = "wkproxy";

// Certificate, key and OCSP files are a few KB; the cap keeps a mistaken path (a log file,
// /dev/zero) from being read without end.
constexpr std::size_t max_file_bytes = std::size_t{1} << 20;

// The earliest queued OpenSSL error (usually the cause; later ones wrap it) as text, and the
// queue cleared so that it does not leak into the next check.
std::string openssl_reason() {
  const unsigned long e = ERR_peek_error();
  std::string text = "unknown OpenSSL error";
  if (e != 0) {
    if (const char* reason = ERR_reason_error_string(e); reason != nullptr) {
      text = reason;
    } else {
      char buffer[256];
      ERR_error_string_n(e, buffer, sizeof buffer);
      text = buffer;
    }
  }
  ERR_clear_error();
  return text;
}

// True when the queued PEM error only says no (more) PEM block of the wanted type was found.
bool pem_not_found() {
  const unsigned long e = ERR_peek_last_error();
  return ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
}

// Never prompt on the terminal for a passphrase (OpenSSL's default without a callback).
int no_passphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*userdata*/) {
  return -1;
}

// Reads all of `path` into `bytes`; the reason on failure.
std::optional<std::string> read_file(const std::string& path, std::string& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return path + ": cannot read file: " + std::generic_category().message(errno);
  }
  bytes.clear();
  char buffer[4096];
  std::size_t n = 0;
  while (bytes.size() <= max_file_bytes && (n = std::fread(buffer, 1, sizeof buffer, f)) > 0) {
    bytes.append(buffer, n);
  }
  const bool failed = std::ferror(f) != 0;
  const int read_errno = errno;
  std::fclose(f);
  if (failed) {
    return path + ": cannot read file: " + std::generic_category().message(read_errno);
  }
  if (bytes.size() > max_file_bytes) {
    return path + ": larger than 1 MiB, not a certificate, key or OCSP file";
  }
  return std::nullopt;
}

bio_ptr memory_bio(const std::string& bytes) {
  // read_file caps sizes far below INT_MAX, so the length fits.
  return bio_ptr(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
}

// ---- Handshake callbacks: called from OpenSSL's C code, so they must not throw. ----

// RFC 7301 section 3.2 would have the server refuse a client whose protocols it does not
// speak; continuing without ALPN instead lets such a client fall back to HTTP/1.1 or decide
// itself (SSL_TLSEXT_ERR_NOACK).
int select_alpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* outlen,
                const unsigned char* in, unsigned int inlen, void* /*arg*/) noexcept {
  constexpr std::string_view wanted = "http/1.1";
  unsigned int i = 0;
  while (i < inlen) {
    const unsigned int len = in[i];
    if (len == 0 || len > inlen - i - 1) {
      break;  // malformed list (OpenSSL checks it first; this only avoids reading past it)
    }
    if (std::string_view(reinterpret_cast<const char*>(in + i + 1), len) == wanted) {
      *out = in + i + 1;  // may point into `in`: OpenSSL copies the selection
      *outlen = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

// The protocol policy, identical on every context of a listener: SSL_set_SSL_CTX (the SNI
// switch) swaps only the certificate, the session id context and the callbacks looked up
// through the context (ALPN, OCSP status); versions, options and ciphers stay those the
// connection copied from the default context.
std::optional<std::string> apply_policy(SSL_CTX* ctx) {
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
    return "cannot set the minimum TLS version: " + openssl_reason();
  }
  // Renegotiation only brings attacks (client-initiated renegotiation DoS, RFC 5746 issues)
  // and TLS 1.3 has none; compression enables CRIME.
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_set_cipher_list(ctx, tls12_ciphers) != 1) {
    return "cannot set the TLS 1.2 ciphers: " + openssl_reason();
  }
  // Sessions are cached and resumed through the default context (OpenSSL keeps using the
  // context an SSL was created from for the cache and the ticket keys); tickets stay on.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  if (SSL_CTX_set_session_id_context(
          ctx, reinterpret_cast<const unsigned char*>(session_id_context.data()),
          static_cast<unsigned int>(session_id_context.size())) != 1) {
    return "cannot set the session id context: " + openssl_reason();
  }
  SSL_CTX_set_alpn_select_cb(ctx, select_alpn, nullptr);
  return std::nullopt;
}

// Installs the leaf and its intermediates from PEM text: the leaf first, then the chain, as
// SSL_CTX_use_certificate_chain_file does (the text was read by read_file so that a missing
// file is reported with its errno rather than an OpenSSL BIO error).
std::optional<std::string> use_chain(SSL_CTX* ctx, const std::string& pem,
                                     const std::string& path) {
  bio_ptr bio = memory_bio(pem);
  if (!bio) {
    return path + ": " + openssl_reason();
  }
  x509_ptr leaf(PEM_read_bio_X509_AUX(bio.get(), nullptr, no_passphrase, nullptr));
  if (!leaf) {
    if (pem_not_found()) {
      ERR_clear_error();
      return path + ": no certificate";
    }
    return path + ": bad certificate: " + openssl_reason();
  }
  if (SSL_CTX_use_certificate(ctx, leaf.get()) != 1) {
    return path + ": cannot use the certificate: " + openssl_reason();
  }
  for (;;) {
    x509_ptr ca(PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr));
    if (!ca) {
      break;
    }
    if (SSL_CTX_add0_chain_cert(ctx, ca.get()) != 1) {
      return path + ": cannot use a chain certificate: " + openssl_reason();
    }
    (void)ca.release();  // the context owns it now (add0)
  }
  // The loop ends at end of text ("no start line"); anything else is a damaged block.
  if (!pem_not_found()) {
    return path + ": bad certificate in the chain: " + openssl_reason();
  }
  ERR_clear_error();
  return std::nullopt;
}

std::optional<std::string> use_key(SSL_CTX* ctx, const std::string& pem,
                                   const config::certificate& c) {
  // A passphrase would have to be typed at every start; fail with a clear reason instead.
  if (pem.find("-----BEGIN ENCRYPTED PRIVATE KEY-----") != std::string::npos ||
      pem.find("Proc-Type: 4,ENCRYPTED") != std::string::npos) {
    return c.key_file + ": encrypted private keys are not supported";
  }
  bio_ptr bio = memory_bio(pem);
  if (!bio) {
    return c.key_file + ": " + openssl_reason();
  }
  pkey_ptr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
  if (!key) {
    if (pem.find("PRIVATE KEY-----") == std::string::npos) {
      ERR_clear_error();
      return c.key_file + ": no private key";
    }
    return c.key_file + ": bad private key: " + openssl_reason();
  }
  // Checked before SSL_CTX_use_PrivateKey, which rejects a mismatched key of the same type
  // with a bare "key values mismatch" and accepts one of another type (a different slot).
  const X509* leaf = SSL_CTX_get0_certificate(ctx);
  if (leaf == nullptr || X509_check_private_key(leaf, key.get()) != 1) {
    ERR_clear_error();
    return c.key_file + ": does not match " + c.cert_file;
  }
  if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1) {
    return c.key_file + ": cannot use the private key: " + openssl_reason();
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    return c.key_file + ": does not match " + c.cert_file;
  }
  return std::nullopt;
}

void add_name(std::vector<std::string>& names, std::string_view name) {
  // An embedded NUL is a forged name ("good.com\0.evil.com"); such an entry never matches.
  if (name.empty() || name.find('\0') != std::string_view::npos) {
    return;
  }
  std::string lowered = core::to_lower(name);
  if (std::find(names.begin(), names.end(), lowered) == names.end()) {
    names.push_back(std::move(lowered));
  }
}

std::string_view asn1_text(const ASN1_STRING* s) {
  return {reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
          static_cast<std::size_t>(ASN1_STRING_length(s))};
}

// subjectAltName DNS entries; only without any, the subject common names (RFC 6125 section
// 6.4.4: clients ignore the CN when DNS SANs are present, so selecting by it would be wrong).
std::vector<std::string> certificate_names(const X509* leaf) {
  std::vector<std::string> names;
  general_names_ptr sans(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(leaf, NID_subject_alt_name, nullptr, nullptr)));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans.get()); ++i) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(sans.get(), i);
      if (name->type == GEN_DNS) {
        add_name(names, asn1_text(name->d.dNSName));
      }
    }
  }
  if (!names.empty()) {
    return names;
  }
  const X509_NAME* subject = X509_get_subject_name(leaf);
  for (int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1); i >= 0;
       i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) {
    unsigned char* utf8 = nullptr;
    const int n =
        ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
    if (n >= 0) {
      add_name(names, {reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(n)});
    }
    OPENSSL_free(utf8);
  }
  ERR_clear_error();  // a missing SAN extension or an odd CN string is not an error here
  return names;
}

std::string time_text(const ASN1_TIME* t) {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  if (!bio || ASN1_TIME_print_ex(bio.get(), t, ASN1_DTFLGS_ISO8601) != 1) {
    ERR_clear_error();
    return "?";
  }
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return {data, static_cast<std::size_t>(n)};
}

// Clients refuse such a certificate, but the listener still starts: a renewal may be on its
// way, and the other certificates keep working.
void check_validity(const X509* leaf, const std::string& path, std::vector<std::string>& warnings) {
  if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0) {
    warnings.push_back(path + ": certificate expired (notAfter " +
                       time_text(X509_get0_notAfter(leaf)) + ")");
  } else if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0) {
    warnings.push_back(path + ": certificate not yet valid (notBefore " +
                       time_text(X509_get0_notBefore(leaf)) + ")");
  }
}

// The staple is sent as is; a file that is not a successful OCSP response is worth a warning
// (strict clients reject the handshake over a bad staple) but not a refusal to start.
void check_ocsp(const std::string& der, const std::string& path,
                std::vector<std::string>& warnings) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  ocsp_response_ptr response(d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size())));
  ERR_clear_error();
  if (!response || p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    warnings.push_back(path + ": not a DER OCSP response; stapled as is");
  } else if (OCSP_response_status(response.get()) != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
    warnings.push_back(path + ": OCSP response status is " +
                       OCSP_response_status_str(OCSP_response_status(response.get())) +
                       "; stapled as is");
  }
}

// OpenSSL calls this only when the client sent status_request; `arg` is the certificate's
// DER response owned by the server_tls. The SSL takes ownership of an OPENSSL_malloc'd copy.
int staple_ocsp(SSL* ssl, void* arg) noexcept {
  const auto* der = static_cast<const std::string*>(arg);
  void* copy = OPENSSL_memdup(der->data(), der->size());
  if (copy == nullptr) {
    return SSL_TLSEXT_ERR_NOACK;  // out of memory: the handshake goes on without a staple
  }
  SSL_set_tlsext_status_ocsp_resp(ssl, static_cast<unsigned char*>(copy),
                                  static_cast<long>(der->size()));
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace

std::size_t select_certificate(const std::vector<std::vector<std::string>>& names,
                               std::string_view sni) {
  if (sni.empty()) {
    return 0;
  }
  std::optional<std::size_t> wildcard;
  for (std::size_t i = 0; i < names.size(); ++i) {
    for (const std::string& name : names[i]) {
      if (!core::is_wildcard(name)) {
        if (core::iequals(name, sni)) {
          return i;
        }
      } else if (!wildcard && core::wildcard_matches_ignoring_case(name, sni)) {
        wildcard = i;
      }
    }
  }
  return wildcard.value_or(0);
}

ssl::context& server_tls::context(std::size_t index) const {
  assert(index < contexts_.size());  // documented precondition; the SNI callback passes
                                     // select_certificate's result, always < names_.size()
  return *contexts_[index];
}

namespace {

// The SNI callback, installed on the default context only (OpenSSL calls it through the
// context the connection was created from). `arg` is the server_tls, alive as long as the
// connection (see server_tls).
int on_servername(SSL* ssl, int* alert, void* arg) noexcept {
  const char* raw = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (raw == nullptr) {
    return SSL_TLSEXT_ERR_NOACK;  // no SNI: the default certificate, nothing to acknowledge
  }
  std::string_view sni(raw);
  if (!sni.empty() && sni.back() == '.') {
    sni.remove_suffix(1);  // as the passthrough listener normalizes it (client_hello.hpp)
  }
  const auto* self = static_cast<const server_tls*>(arg);
  SSL_CTX* selected = self->context(select_certificate(self->names(), sni)).native_handle();
  if (selected != SSL_get_SSL_CTX(ssl) && SSL_set_SSL_CTX(ssl, selected) == nullptr) {
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  return SSL_TLSEXT_ERR_OK;
}

// One certificate's context, names and staple, or the reason it cannot be used.
struct loaded_certificate {
  std::unique_ptr<ssl::context> ctx;
  std::vector<std::string> names;
  std::string ocsp;
};

std::variant<loaded_certificate, std::string> load_certificate(const config::certificate& c,
                                                               std::vector<std::string>& warnings) {
  loaded_certificate out;
  out.ctx = std::make_unique<ssl::context>(ssl::context::tls_server);  // throws only on ENOMEM
  SSL_CTX* ctx = out.ctx->native_handle();
  if (auto error = apply_policy(ctx)) {
    return *error;
  }

  std::string pem;
  if (auto error = read_file(c.cert_file, pem)) {
    return *error;
  }
  if (auto error = use_chain(ctx, pem, c.cert_file)) {
    return *error;
  }
  if (auto error = read_file(c.key_file, pem)) {
    return *error;
  }
  if (auto error = use_key(ctx, pem, c)) {
    return *error;
  }

  const X509* leaf = SSL_CTX_get0_certificate(ctx);
  out.names = certificate_names(leaf);
  if (out.names.empty()) {
    warnings.push_back(c.cert_file + ": no DNS name or common name; served only as the default");
  }
  check_validity(leaf, c.cert_file, warnings);

  if (!c.ocsp_file.empty()) {
    if (auto error = read_file(c.ocsp_file, out.ocsp)) {
      return *error;
    }
    if (out.ocsp.empty()) {
      return c.ocsp_file + ": empty OCSP response";
    }
    check_ocsp(out.ocsp, c.ocsp_file, warnings);
  }
  return out;
}

}  // namespace

std::variant<std::shared_ptr<const server_tls>, std::string>
make_server_tls(const std::vector<config::certificate>& certs, std::vector<std::string>& warnings) {
  if (certs.empty()) {
    return std::string("a TLS listener needs at least one certificate");
  }
  try {
    ERR_clear_error();  // start from an empty queue: reasons are read from it
    // Private constructor: make_shared cannot reach it.
    std::shared_ptr<server_tls> self(new server_tls());  // NOLINT(modernize-make-shared)
    for (const config::certificate& c : certs) {
      auto loaded = load_certificate(c, warnings);
      if (loaded.index() == 1) {
        return std::get<1>(std::move(loaded));
      }
      auto& l = std::get<0>(loaded);
      self->contexts_.push_back(std::move(l.ctx));
      self->names_.push_back(std::move(l.names));
      self->ocsp_.push_back(std::move(l.ocsp));
    }
    // Callback arguments point into `self`, whose vectors no longer change from here on.
    SSL_CTX* default_ctx = self->contexts_.front()->native_handle();
    SSL_CTX_set_tlsext_servername_callback(default_ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(default_ctx, self.get());
    for (std::size_t i = 0; i < self->contexts_.size(); ++i) {
      if (!self->ocsp_[i].empty()) {
        SSL_CTX* ctx = self->contexts_[i]->native_handle();
        SSL_CTX_set_tlsext_status_cb(ctx, staple_ocsp);
        SSL_CTX_set_tlsext_status_arg(ctx, &self->ocsp_[i]);
      }
    }
    return std::shared_ptr<const server_tls>(std::move(self));
  } catch (const std::exception& e) {
    // ssl::context's constructor throws when OpenSSL cannot allocate; std::bad_alloc likewise.
    ERR_clear_error();
    return std::string("cannot build the TLS contexts: ") + e.what();
  }
}

}  // namespace wk::net
