// Unit tests of the TLS-terminating listener's contexts: the pure SNI selection, loading
// certificates made in the test (a test CA, an intermediate and leaves, via the OpenSSL C API),
// and real handshakes over loopback between an Asio server stream and an Asio/OpenSSL client.

#include "net/openssl_ptr.hpp"
#include "net/tls_server.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>

#include <doctest/doctest.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdlib>  // mkdtemp (POSIX)

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using wk::net::select_certificate;
using names_t = std::vector<std::vector<std::string>>;

namespace {

// ---- A small PKI made with the OpenSSL C API ----

using wk::net::pkey_ptr;
using wk::net::x509_ptr;
struct session_free {
  void operator()(SSL_SESSION* s) const { SSL_SESSION_free(s); }
};
using session_ptr = std::unique_ptr<SSL_SESSION, session_free>;

constexpr long day = 24L * 60 * 60;

pkey_ptr make_key() {
  pkey_ptr key(EVP_EC_gen("P-256"));
  REQUIRE(key);
  return key;
}

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  REQUIRE(ext != nullptr);
  REQUIRE(X509_add_ext(cert, ext, -1) == 1);
  X509_EXTENSION_free(ext);
}

struct cert_spec {
  std::string cn;
  std::string san;  // "DNS:a,DNS:b"; empty: no subjectAltName
  bool ca = false;
  long not_before = -day;  // seconds from now
  long not_after = 30 * day;
};

// A certificate for `key`, signed by issuer/issuer_key (self-signed when issuer is null).
x509_ptr make_cert(const cert_spec& spec, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key) {
  static long serial = 1;
  x509_ptr cert(X509_new());
  REQUIRE(cert);
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), spec.not_before);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), spec.not_after);
  REQUIRE(X509_set_pubkey(cert.get(), key) == 1);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(spec.cn.c_str()), -1, -1, 0);
  X509* signer = issuer != nullptr ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  add_ext(cert.get(), signer, NID_subject_key_identifier, "hash");
  if (issuer != nullptr) {
    add_ext(cert.get(), signer, NID_authority_key_identifier, "keyid:always");
  }
  if (spec.ca) {
    add_ext(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(cert.get(), signer, NID_ext_key_usage, "serverAuth");
    if (!spec.san.empty()) {
      add_ext(cert.get(), signer, NID_subject_alt_name, spec.san.c_str());
    }
  }
  REQUIRE(X509_sign(cert.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) > 0);
  return cert;
}

// A temporary directory removed with the object.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "wk_tls_test_XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  [[nodiscard]] std::string file(const std::string& name) const { return (path / name).string(); }
};

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  REQUIRE(out.good());
}

std::string pem_of(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  REQUIRE(PEM_write_bio_X509(bio, cert) == 1);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string text(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  return text;
}

std::string pem_of(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  REQUIRE(PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr) == 1);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string text(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  return text;
}

// root CA -> intermediate -> leaves. Leaf files hold the leaf then the intermediate, so a
// client trusting only the root verifies only if the server sends the chain.
struct pki {
  temp_dir dir;
  pkey_ptr root_key = make_key();
  x509_ptr root = make_cert({"wk test root", "", true}, root_key.get(), nullptr, nullptr);
  pkey_ptr inter_key = make_key();
  x509_ptr inter =
      make_cert({"wk test intermediate", "", true}, inter_key.get(), root.get(), root_key.get());

  struct leaf {
    x509_ptr cert;
    wk::config::certificate files;
  };

  // Writes <name>.pem (leaf + intermediate) and <name>.key.
  leaf make_leaf(const std::string& name, const cert_spec& spec) {
    pkey_ptr key = make_key();
    leaf out{make_cert(spec, key.get(), inter.get(), inter_key.get()), {}};
    out.files.cert_file = dir.file(name + ".pem");
    out.files.key_file = dir.file(name + ".key");
    write_text(out.files.cert_file, pem_of(out.cert.get()) + pem_of(inter.get()));
    write_text(out.files.key_file, pem_of(key.get()));
    return out;
  }
};

std::shared_ptr<const wk::net::server_tls> build_ok(const std::vector<wk::config::certificate>& c,
                                                    std::vector<std::string>& warnings) {
  auto built = wk::net::make_server_tls(c, warnings);
  if (built.index() == 1) {
    FAIL_CHECK(std::get<1>(built));
    return nullptr;
  }
  return std::get<0>(std::move(built));
}

std::string build_error(const std::vector<wk::config::certificate>& c) {
  std::vector<std::string> warnings;
  auto built = wk::net::make_server_tls(c, warnings);
  REQUIRE(built.index() == 1);
  return std::get<1>(built);
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// ---- A loopback handshake: an Asio server stream on the server_tls, a verifying client ----

struct client_options {
  std::string sni;          // empty: no SNI
  std::string verify_host;  // the name the client checks the certificate against
  std::string alpn;         // wire format (length-prefixed names); empty: no ALPN
  bool ocsp = false;        // send status_request
  int max_version = 0;      // 0: TLS 1.3
  std::string ciphers;      // TLS 1.2 cipher list; empty: the default
  bool no_ticket = false;   // no session tickets: TLS 1.2 resumption by session id
  SSL_SESSION* resume = nullptr;
};

struct handshake_result {
  boost::system::error_code server_error;
  boost::system::error_code client_error;
  x509_ptr peer;        // the certificate the client received
  std::string alpn;     // negotiated protocol, empty when none
  std::string staple;   // the OCSP response the client received
  bool reused = false;  // the session was resumed
  session_ptr session;  // for a later resumption
};

handshake_result handshake(const wk::net::server_tls& tls, X509* root, const client_options& o) {
  handshake_result r;
  asio::io_context ioc;
  tcp::acceptor acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));

  ssl::stream<tcp::socket> server(ioc, tls.context());

  ssl::context client_ctx(ssl::context::tls_client);
  X509_STORE_add_cert(SSL_CTX_get_cert_store(client_ctx.native_handle()), root);
  client_ctx.set_verify_mode(ssl::verify_peer);
  if (o.max_version != 0) {
    SSL_CTX_set_max_proto_version(client_ctx.native_handle(), o.max_version);
  }
  if (!o.ciphers.empty()) {
    REQUIRE(SSL_CTX_set_cipher_list(client_ctx.native_handle(), o.ciphers.c_str()) == 1);
  }
  ssl::stream<tcp::socket> client(ioc, client_ctx);
  SSL* c = client.native_handle();
  if (!o.sni.empty()) {
    REQUIRE(SSL_set_tlsext_host_name(c, o.sni.c_str()) == 1);
  }
  if (!o.verify_host.empty()) {
    REQUIRE(X509_VERIFY_PARAM_set1_host(SSL_get0_param(c), o.verify_host.c_str(), 0) == 1);
  }
  if (!o.alpn.empty()) {
    REQUIRE(SSL_set_alpn_protos(c, reinterpret_cast<const unsigned char*>(o.alpn.data()),
                                static_cast<unsigned int>(o.alpn.size())) == 0);
  }
  if (o.ocsp) {
    REQUIRE(SSL_set_tlsext_status_type(c, TLSEXT_STATUSTYPE_ocsp) == 1);
  }
  if (o.no_ticket) {
    SSL_set_options(c, SSL_OP_NO_TICKET);
  }
  if (o.resume != nullptr) {
    REQUIRE(SSL_set_session(c, o.resume) == 1);
  }

  // The server sends one byte after the handshake: in TLS 1.3 the session tickets arrive after
  // the handshake, and reading the byte makes the client process them. Then both sides close
  // with close_notify: OpenSSL forgets the session of a connection freed without it (a
  // possible truncation attack), on the client and in the server's session cache.
  char server_byte = 's';
  char client_byte = 0;
  acceptor.async_accept(server.next_layer(), [&](boost::system::error_code ec) {
    if (ec) {
      r.server_error = ec;
      return;
    }
    server.next_layer().set_option(tcp::no_delay(true));  // no 40 ms delayed-ACK stalls
    server.async_handshake(ssl::stream_base::server, [&](boost::system::error_code hec) {
      r.server_error = hec;
      if (!hec) {
        asio::async_write(server, asio::buffer(&server_byte, 1),
                          [&](boost::system::error_code wec, std::size_t) {
                            if (!wec) {
                              server.async_shutdown([](boost::system::error_code) {});
                            }
                          });
      } else {
        server.next_layer().close();
      }
    });
  });
  client.next_layer().async_connect(acceptor.local_endpoint(), [&](boost::system::error_code ec) {
    if (ec) {
      r.client_error = ec;
      return;
    }
    client.next_layer().set_option(tcp::no_delay(true));
    client.async_handshake(ssl::stream_base::client, [&](boost::system::error_code hec) {
      r.client_error = hec;
      if (hec) {
        client.next_layer().close();
        return;
      }
      asio::async_read(client, asio::buffer(&client_byte, 1),
                       [&](boost::system::error_code rec, std::size_t) {
                         if (rec) {
                           r.client_error = rec;
                           return;
                         }
                         client.async_shutdown([](boost::system::error_code) {});
                       });
    });
  });
  ioc.run_for(std::chrono::seconds(10));
  REQUIRE_MESSAGE(ioc.stopped(), "handshake did not finish in time");

  r.peer.reset(SSL_get1_peer_certificate(c));
  const unsigned char* proto = nullptr;
  unsigned int proto_len = 0;
  SSL_get0_alpn_selected(c, &proto, &proto_len);
  r.alpn.assign(reinterpret_cast<const char*>(proto), proto_len);
  unsigned char* staple = nullptr;
  const long staple_len = SSL_get_tlsext_status_ocsp_resp(c, &staple);
  if (staple != nullptr && staple_len > 0) {
    r.staple.assign(reinterpret_cast<const char*>(staple), static_cast<std::size_t>(staple_len));
  }
  r.reused = SSL_session_reused(c) == 1;
  r.session.reset(SSL_get1_session(c));
  if (!r.client_error) {
    CHECK(client_byte == 's');
  }
  ERR_clear_error();
  return r;
}

std::string alpn_wire(std::initializer_list<std::string> names) {
  std::string wire;
  for (const std::string& name : names) {
    wire += static_cast<char>(name.size());
    wire += name;
  }
  return wire;
}

}  // namespace

// ---- select_certificate ----

TEST_CASE("select_certificate picks by SNI, exact names before wildcards, else the default") {
  const names_t names = {
      {"default.example.test"},
      {"*.example.test", "example.test"},
      {"b.example.test"},
      {"*.deep.example.test"},
  };
  struct row {
    const char* sni;
    std::size_t expected;
  };
  const row rows[] = {
      {"default.example.test", 0},
      {"example.test", 1},
      {"a.example.test", 1},       // wildcard
      {"b.example.test", 2},       // exact wins over the earlier wildcard
      {"x.deep.example.test", 3},  // the longer wildcard; *.example.test covers one label only
      {"y.x.example.test", 0},     // two labels: no wildcard matches
      {"deep.example.test", 1},    // one label before example.test
      {".example.test", 0},        // an empty label is not a label
      {"B.Example.TEST", 2},       // ASCII case-insensitive
      {"", 0},                     // no SNI
      {"other.test", 0},           // no match
      {"example.test.evil", 0},
  };
  for (const row& r : rows) {
    const std::string sni = r.sni;
    CAPTURE(sni);
    CHECK(select_certificate(names, r.sni) == r.expected);
  }
}

TEST_CASE("select_certificate takes the first certificate in config order among equal matches") {
  const names_t names = {{"a.test"}, {"*.dup.test", "dup.test"}, {"dup.test", "*.dup.test"}};
  CHECK(select_certificate(names, "dup.test") == 1);
  CHECK(select_certificate(names, "x.dup.test") == 1);
  CHECK(select_certificate(names, "a.test") == 0);
  CHECK(select_certificate({{}}, "a.test") == 0);
}

// ---- make_server_tls ----

TEST_CASE("make_server_tls loads each certificate with its names in config order") {
  pki p;
  auto a = p.make_leaf("a", {"a.example.test", "DNS:a.example.test,DNS:*.A.example.test"});
  auto b = p.make_leaf("b", {"ignored-cn.example.test", "DNS:b.example.test"});
  auto cn = p.make_leaf("cn", {"CN-Only.Example.Test", ""});
  std::vector<std::string> warnings;
  auto tls = build_ok({a.files, b.files, cn.files}, warnings);
  REQUIRE(tls);
  CHECK(warnings.empty());
  REQUIRE(tls->names().size() == 3);
  CHECK(tls->names()[0] == std::vector<std::string>{"a.example.test", "*.a.example.test"});
  CHECK(tls->names()[1] == std::vector<std::string>{"b.example.test"});  // SAN wins over CN
  CHECK(tls->names()[2] == std::vector<std::string>{"cn-only.example.test"});
  CHECK(&tls->context() == &tls->context(0));
  CHECK(&tls->context(0) != &tls->context(1));
  // The leaf of each context is the configured certificate.
  CHECK(X509_cmp(SSL_CTX_get0_certificate(tls->context(1).native_handle()), b.cert.get()) == 0);
  CHECK(SSL_CTX_get_min_proto_version(tls->context(1).native_handle()) == TLS1_2_VERSION);
}

TEST_CASE("make_server_tls refuses what it cannot serve, naming the file") {
  pki p;
  auto a = p.make_leaf("a", {"a.example.test", "DNS:a.example.test"});
  auto b = p.make_leaf("b", {"b.example.test", "DNS:b.example.test"});

  SUBCASE("a key of another certificate") {
    wk::config::certificate c = a.files;
    c.key_file = b.files.key_file;
    CHECK(build_error({b.files, c}) == b.files.key_file + ": does not match " + a.files.cert_file);
  }
  SUBCASE("a missing certificate file") {
    wk::config::certificate c = a.files;
    c.cert_file = p.dir.file("missing.pem");
    CHECK(build_error({c}) == c.cert_file + ": cannot read file: No such file or directory");
  }
  SUBCASE("a missing key file") {
    wk::config::certificate c = a.files;
    c.key_file = p.dir.file("missing.key");
    CHECK(build_error({c}) == c.key_file + ": cannot read file: No such file or directory");
  }
  SUBCASE("a key file as certificate") {
    wk::config::certificate c = a.files;
    c.cert_file = a.files.key_file;
    CHECK(build_error({c}) == c.cert_file + ": no certificate");
  }
  SUBCASE("a certificate file as key") {
    wk::config::certificate c = a.files;
    c.key_file = a.files.cert_file;
    CHECK(build_error({c}) == c.key_file + ": no private key");
  }
  SUBCASE("a damaged certificate") {
    wk::config::certificate c = a.files;
    c.cert_file = p.dir.file("damaged.pem");
    write_text(c.cert_file, "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n"
                            "-----END CERTIFICATE-----\n");
    CHECK(contains(build_error({c}), c.cert_file + ": bad certificate"));
  }
  SUBCASE("an encrypted key") {
    wk::config::certificate c = a.files;
    c.key_file = p.dir.file("encrypted.key");
    write_text(c.key_file, "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n"
                           "-----END ENCRYPTED PRIVATE KEY-----\n");
    CHECK(build_error({c}) == c.key_file + ": encrypted private keys are not supported");
  }
  SUBCASE("a missing or empty OCSP file") {
    wk::config::certificate c = a.files;
    c.ocsp_file = p.dir.file("missing.der");
    CHECK(build_error({c}) == c.ocsp_file + ": cannot read file: No such file or directory");
    write_text(c.ocsp_file, "");
    CHECK(build_error({c}) == c.ocsp_file + ": empty OCSP response");
  }
  SUBCASE("no certificate at all") {
    CHECK(contains(build_error({}), "at least one certificate"));
  }
}

TEST_CASE("make_server_tls warns about certificates outside their validity period") {
  pki p;
  auto expired =
      p.make_leaf("expired", {"old.example.test", "DNS:old.example.test", false, -10 * day, -day});
  auto future =
      p.make_leaf("future", {"new.example.test", "DNS:new.example.test", false, day, 10 * day});
  std::vector<std::string> warnings;
  auto tls = build_ok({expired.files, future.files}, warnings);
  REQUIRE(tls);
  REQUIRE(warnings.size() == 2);
  CHECK(contains(warnings[0], expired.files.cert_file + ": certificate expired (notAfter "));
  CHECK(contains(warnings[0], "Z)"));  // an ISO 8601 UTC time
  CHECK(contains(warnings[1], future.files.cert_file + ": certificate not yet valid (notBefore "));
}

// ---- Handshakes over loopback ----

namespace {

// The listener's handshake behaviour with clients limited to `version`.
void check_handshakes(int version) {
  pki p;
  auto a = p.make_leaf("a", {"a.example.test", "DNS:a.example.test"});
  auto b = p.make_leaf("b", {"b.example.test", "DNS:b.example.test,DNS:*.b.example.test"});
  const std::string staple = std::string("\x30\x03\x0a\x01", 4) + std::string(1, '\x03') + "+";
  b.files.ocsp_file = p.dir.file("b.ocsp");
  write_text(b.files.ocsp_file, staple);
  std::vector<std::string> warnings;
  auto tls = build_ok({a.files, b.files}, warnings);
  REQUIRE(tls);
  // The test staple is not a well-formed OCSP response (trailing byte): stapled with a warning.
  REQUIRE(warnings.size() == 1);
  CHECK(contains(warnings[0], b.files.ocsp_file + ": not a DER OCSP response"));

  SUBCASE("SNI selects the second certificate; ALPN http/1.1; the staple on request") {
    client_options o;
    o.sni = "b.example.test";
    o.verify_host = "b.example.test";
    o.alpn = alpn_wire({"h2", "http/1.1"});
    o.ocsp = true;
    o.max_version = version;
    auto r = handshake(*tls, p.root.get(), o);
    CHECK_MESSAGE(!r.server_error, r.server_error.message());
    CHECK_MESSAGE(!r.client_error, r.client_error.message());
    REQUIRE(r.peer);
    CHECK(X509_cmp(r.peer.get(), b.cert.get()) == 0);
    CHECK(X509_check_host(r.peer.get(), "b.example.test", 0, 0, nullptr) == 1);
    CHECK(r.alpn == "http/1.1");
    CHECK(r.staple == staple);
  }
  SUBCASE("a wildcard name in upper case selects it too; no staple unless requested") {
    client_options o;
    o.sni = "WWW.B.Example.Test";
    o.verify_host = "www.b.example.test";
    o.max_version = version;
    auto r = handshake(*tls, p.root.get(), o);
    CHECK_MESSAGE(!r.client_error, r.client_error.message());
    REQUIRE(r.peer);
    CHECK(X509_cmp(r.peer.get(), b.cert.get()) == 0);
    CHECK(r.alpn.empty());
    CHECK(r.staple.empty());
  }
  SUBCASE("no SNI or an unknown name gets the default certificate, without a staple") {
    client_options o;
    o.ocsp = true;
    o.max_version = version;
    SUBCASE("no SNI") {}
    SUBCASE("unknown name") {
      o.sni = "unknown.example.test";
    }
    o.verify_host = "a.example.test";
    auto r = handshake(*tls, p.root.get(), o);
    CHECK_MESSAGE(!r.client_error, r.client_error.message());
    REQUIRE(r.peer);
    CHECK(X509_cmp(r.peer.get(), a.cert.get()) == 0);
    CHECK(r.staple.empty());  // the default certificate has no OCSP file
  }
  SUBCASE("ALPN without http/1.1 continues without ALPN") {
    client_options o;
    o.sni = "a.example.test";
    o.verify_host = "a.example.test";
    o.alpn = alpn_wire({"h2", "spdy/3"});
    o.max_version = version;
    auto r = handshake(*tls, p.root.get(), o);
    CHECK_MESSAGE(!r.server_error, r.server_error.message());
    CHECK_MESSAGE(!r.client_error, r.client_error.message());
    CHECK(r.alpn.empty());
  }
  SUBCASE("a second connection resumes the session of the first") {
    client_options o;
    o.sni = "b.example.test";
    o.verify_host = "b.example.test";
    o.max_version = version;
    auto first = handshake(*tls, p.root.get(), o);
    REQUIRE_MESSAGE(!first.client_error, first.client_error.message());
    REQUIRE(first.session);
    CHECK_FALSE(first.reused);
    CHECK(SSL_SESSION_has_ticket(first.session.get()) == 1);  // tickets stay on
    o.resume = first.session.get();
    auto second = handshake(*tls, p.root.get(), o);
    CHECK_MESSAGE(!second.client_error, second.client_error.message());
    CHECK(second.reused);
    CHECK(X509_cmp(second.peer.get(), b.cert.get()) == 0);
  }
  if (version == TLS1_2_VERSION) {
    SUBCASE("without tickets, a second connection resumes from the server's session cache") {
      client_options o;
      o.sni = "b.example.test";
      o.verify_host = "b.example.test";
      o.max_version = version;
      o.no_ticket = true;
      auto first = handshake(*tls, p.root.get(), o);
      REQUIRE_MESSAGE(!first.client_error, first.client_error.message());
      REQUIRE(first.session);
      CHECK_FALSE(SSL_SESSION_has_ticket(first.session.get()));
      o.resume = first.session.get();
      auto second = handshake(*tls, p.root.get(), o);
      CHECK_MESSAGE(!second.client_error, second.client_error.message());
      CHECK(second.reused);
    }
  }
}

}  // namespace

TEST_CASE("over TLS 1.3, a TLS listener serves the certificate SNI selects, ALPN and OCSP") {
  check_handshakes(TLS1_3_VERSION);
}

TEST_CASE("over TLS 1.2, a TLS listener serves the certificate SNI selects, ALPN and OCSP") {
  check_handshakes(TLS1_2_VERSION);
}

TEST_CASE("a TLS listener refuses TLS below 1.2 and TLS 1.2 suites without ECDHE and AEAD") {
  pki p;
  auto a = p.make_leaf("a", {"a.example.test", "DNS:a.example.test"});
  std::vector<std::string> warnings;
  auto tls = build_ok({a.files}, warnings);
  REQUIRE(tls);
  client_options o;
  o.sni = "a.example.test";
  o.verify_host = "a.example.test";
  SUBCASE("TLS 1.1") {
    o.max_version = TLS1_1_VERSION;
    o.ciphers = "DEFAULT:@SECLEVEL=0";  // the client's own policy would refuse TLS 1.1 first
  }
  SUBCASE("CBC suite") {
    o.max_version = TLS1_2_VERSION;
    o.ciphers = "ECDHE-ECDSA-AES128-SHA256";
  }
  SUBCASE("the baseline succeeds") {
    o.max_version = TLS1_2_VERSION;
    o.ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256";
    auto r = handshake(*tls, p.root.get(), o);
    CHECK_MESSAGE(!r.client_error, r.client_error.message());
    return;
  }
  auto r = handshake(*tls, p.root.get(), o);
  CHECK(r.server_error);
  CHECK(r.client_error);
}
