#include "cli/demo.hpp"

#include "cli_help.hpp"

#include "app/server.hpp"
#include "cli/check.hpp"
#include "core/asio.hpp"
#include "net/openssl_ptr.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/json/parse.hpp>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>
#include <unistd.h>

namespace wk::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;

namespace {

constexpr std::string_view domain = "shop.example.com";
constexpr std::string_view account = "123456789012";
constexpr std::string_view prefix = "/.well-known/pki-validation/";

// ---------------------------------------------------------------------------------------------
// A throwaway PKI with OpenSSL

using net::pkey_ptr;
using net::x509_ptr;

bool add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) {
    return false;
  }
  const bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

x509_ptr make_cert(EVP_PKEY* key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key,
                   bool ca, const std::string& san, long serial) {
  x509_ptr cert(X509_new());
  if (!cert) {
    return nullptr;
  }
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24L * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509* parent = issuer != nullptr ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(parent));
  bool ok = true;
  if (ca) {
    ok = add_ext(cert.get(), parent, NID_basic_constraints, "critical,CA:TRUE") &&
         add_ext(cert.get(), parent, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    ok = add_ext(cert.get(), parent, NID_basic_constraints, "critical,CA:FALSE") &&
         add_ext(cert.get(), parent, NID_key_usage, "critical,digitalSignature") &&
         add_ext(cert.get(), parent, NID_ext_key_usage, "serverAuth") &&
         add_ext(cert.get(), parent, NID_subject_alt_name, san.c_str());
  }
  if (!ok || X509_sign(cert.get(), issuer_key, EVP_sha256()) == 0) {
    return nullptr;
  }
  return cert;
}

std::string random_hex(std::size_t bytes) {
  std::string raw(bytes, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes));
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The stand-ins: tiny HTTP/1.1 servers, one request per connection

using handler =
    std::function<bhttp::response<bhttp::string_body>(const bhttp::request<bhttp::string_body>&)>;

template <class Stream> asio::awaitable<void> answer(Stream& stream, const handler& h) {
  beast::flat_buffer buffer;
  bhttp::request<bhttp::string_body> req;
  auto [rec, rn] = co_await bhttp::async_read(stream, buffer, req, core::nothrow);
  (void)rn;
  if (rec) {
    co_return;
  }
  auto res = h(req);
  res.version(11);
  res.keep_alive(false);
  res.prepare_payload();
  auto [wec, wn] = co_await bhttp::async_write(stream, res, core::nothrow);
  (void)wec;
  (void)wn;
}

asio::awaitable<void> serve_one(tcp::socket socket, std::shared_ptr<asio::ssl::context> tls,
                                std::shared_ptr<const handler> h) {
  beast::tcp_stream tcp_stream(std::move(socket));
  tcp_stream.expires_after(std::chrono::seconds(10));
  if (!tls) {
    co_await answer(tcp_stream, *h);
    boost::system::error_code ignored;
    tcp_stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    co_return;
  }
  beast::ssl_stream<beast::tcp_stream> stream(std::move(tcp_stream), *tls);
  auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::server, core::nothrow);
  if (hec) {
    co_return;
  }
  co_await answer(stream, *h);
  (void)co_await stream.async_shutdown(core::nothrow);
}

asio::awaitable<void> serve(tcp::acceptor& acceptor, std::shared_ptr<asio::ssl::context> tls,
                            std::shared_ptr<const handler> h) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(core::nothrow);
    if (ec) {
      if (ec == asio::error::operation_aborted) {
        co_return;
      }
      continue;
    }
    asio::co_spawn(acceptor.get_executor(), serve_one(std::move(socket), tls, h), asio::detached);
  }
}

bhttp::response<bhttp::string_body> text_reply(unsigned status, std::string_view who,
                                               std::string body) {
  bhttp::response<bhttp::string_body> res;
  res.result(status);
  res.set(bhttp::field::content_type, "text/plain; charset=utf-8");
  res.set("X-Served-By", who);
  res.body() = std::move(body);
  return res;
}

struct stand_ins {
  asio::io_context ioc{1};
  tcp::acceptor origin{ioc, {asio::ip::make_address("127.0.0.1"), 0}};
  tcp::acceptor cloudfront{ioc, {asio::ip::make_address("127.0.0.1"), 0}};
  tcp::acceptor acm{ioc, {asio::ip::make_address("127.0.0.1"), 0}};
  std::thread thread;

  std::uint16_t port(const tcp::acceptor& a) const { return a.local_endpoint().port(); }

  void stop() {
    asio::post(ioc, [this] {
      boost::system::error_code ignored;
      origin.close(ignored);
      cloudfront.close(ignored);
      acm.close(ignored);
      ioc.stop();
    });
    if (thread.joinable()) {
      thread.join();
    }
  }
};

// ---------------------------------------------------------------------------------------------
// A plain HTTP GET, for the demo's own tour

struct seen {
  unsigned status = 0;
  std::string served_by;
  std::string location;
  std::string body;
  std::string error;
};

seen get(std::uint16_t port, std::string_view host, std::string_view target) {
  seen out;
  try {
    asio::io_context ioc;
    beast::tcp_stream stream(ioc);
    stream.expires_after(std::chrono::seconds(10));
    stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    bhttp::request<bhttp::empty_body> req(bhttp::verb::get, target, 11);
    req.set(bhttp::field::host, host);
    req.set(bhttp::field::user_agent, "wkproxy-demo");
    req.set(bhttp::field::connection, "close");
    bhttp::write(stream, req);
    beast::flat_buffer buffer;
    bhttp::response<bhttp::string_body> res;
    bhttp::read(stream, buffer, res);
    out.status = res.result_int();
    out.served_by = std::string(res["X-Served-By"]);
    out.location = std::string(res[bhttp::field::location]);
    out.body = res.body();
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  return out;
}

// The ports file the proxy writes once it listens: {"listen": [...], "admin": "..."}.
std::optional<std::pair<std::uint16_t, std::uint16_t>> read_ports(const std::string& path) {
  std::ifstream f(path);
  if (!f) {
    return std::nullopt;
  }
  std::stringstream s;
  s << f.rdbuf();
  boost::system::error_code ec;
  const auto doc = boost::json::parse(s.str(), ec);
  if (ec || !doc.is_object()) {
    return std::nullopt;
  }
  const auto port_of = [](std::string_view text) -> std::uint16_t {
    const auto colon = text.rfind(':');
    return colon == std::string_view::npos
               ? 0
               : static_cast<std::uint16_t>(std::stoul(std::string(text.substr(colon + 1))));
  };
  const auto* listen = doc.as_object().if_contains("listen");
  const auto* admin = doc.as_object().if_contains("admin");
  if (listen == nullptr || !listen->is_array() || listen->as_array().empty() || admin == nullptr ||
      !admin->is_string()) {
    return std::nullopt;
  }
  return std::pair{port_of(listen->as_array()[0].as_string()), port_of(admin->as_string())};
}

bool port_free(std::uint16_t port) {
  asio::io_context ioc;
  tcp::acceptor a(ioc);
  boost::system::error_code ec;
  a.open(tcp::v4(), ec);
  a.set_option(asio::socket_base::reuse_address(true), ec);
  a.bind({asio::ip::make_address("127.0.0.1"), port}, ec);
  return !ec;
}

std::string describe(const seen& s) {
  if (!s.error.empty()) {
    return "failed: " + s.error;
  }
  std::string out =
      std::to_string(s.status) + " from " + (s.served_by.empty() ? std::string("?") : s.served_by);
  if (!s.location.empty()) {
    out += ", Location: " + s.location;
  }
  return out;
}

}  // namespace

std::string make_demo_pki(const std::string& dir, const std::string& name) {
  pkey_ptr ca_key(EVP_EC_gen("P-256"));
  pkey_ptr key(EVP_EC_gen("P-256"));
  if (!ca_key || !key) {
    return "cannot make EC keys";
  }
  auto ca =
      make_cert(ca_key.get(), "wkproxy demo CA (throwaway)", nullptr, ca_key.get(), true, "", 1);
  if (!ca) {
    return "cannot make the CA certificate";
  }
  auto leaf =
      make_cert(key.get(), name, ca.get(), ca_key.get(), false, "DNS:" + name + ",IP:127.0.0.1", 2);
  if (!leaf) {
    return "cannot make the server certificate";
  }
  const auto write = [&](const std::string& file, const std::function<int(FILE*)>& out) {
    FILE* f = std::fopen((dir + "/" + file).c_str(), "w");
    if (f == nullptr) {
      return false;
    }
    const bool ok = out(f) == 1;
    return std::fclose(f) == 0 && ok;
  };
  if (!write("ca.pem", [&](FILE* f) { return PEM_write_X509(f, ca.get()); }) ||
      !write("server.pem", [&](FILE* f) { return PEM_write_X509(f, leaf.get()); }) ||
      !write("server.key", [&](FILE* f) {
        return PEM_write_PrivateKey(f, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
      })) {
    return "cannot write the certificates to " + dir;
  }
  return {};
}

int run_demo(int argc, char** argv, const std::string& version, const std::string& revision) {
  bool once = false;
  std::uint16_t wanted = 8080;
  for (int i = 0; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--once") {
      once = true;
    } else if (a == "--port" && i + 1 < argc) {
      try {
        const unsigned long p = std::stoul(argv[++i]);
        if (p > 65535) {
          throw std::out_of_range("port");
        }
        wanted = static_cast<std::uint16_t>(p);
      } catch (const std::exception&) {
        std::cerr << "wkproxy: --port needs a number 0-65535\n" << help_demo;
        return 2;
      }
    } else if (a == "-h" || a == "--help") {
      std::cout << help_demo;
      return 0;
    } else {
      std::cerr << "wkproxy: unknown argument " << a << "\n" << help_demo;
      return 2;
    }
  }
  // Everything the demo writes goes into one temporary directory, removed at the end.
  char tmpl[] = "/tmp/wkproxy-demo-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    std::cerr << "wkproxy demo: cannot make a temporary directory\n";
    return 1;
  }
  const std::string dir = tmpl;
  struct cleanup {
    std::string dir;
    ~cleanup() {
      std::error_code ignored;
      fs::remove_all(dir, ignored);
    }
  } remove_dir{dir};
  if (auto problem = make_demo_pki(dir, "localhost"); !problem.empty()) {
    std::cerr << "wkproxy demo: " << problem << "\n";
    return 1;
  }

  const std::string file = random_hex(16) + ".txt";
  const std::string content = random_hex(32) + "\ndemo.acm-validations.aws\n";
  stand_ins s;
  const std::uint16_t acm_port = s.port(s.acm);
  const std::string redirect_to = "https://localhost:" + std::to_string(acm_port) + "/" +
                                  std::string(account) + std::string(prefix) + file;
  auto tls = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  tls->use_certificate_chain_file(dir + "/server.pem");
  tls->use_private_key_file(dir + "/server.key", asio::ssl::context::pem);

  auto origin = std::make_shared<const handler>([](const auto& req) {
    return text_reply(200, "origin",
                      "Hello from the origin, the customer's existing server: you asked for " +
                          std::string(req.target()) + " on " +
                          std::string(req[bhttp::field::host]) + "\n");
  });
  // CloudFront answers a tenant's token request with a redirect to ACM's copy (RedirectTo).
  auto cloudfront = std::make_shared<const handler>([&](const auto& req) {
    if (req.target() == std::string(prefix) + file) {
      auto res = text_reply(301, "cloudfront", "");
      res.set(bhttp::field::location, redirect_to);
      return res;
    }
    return text_reply(404, "cloudfront", "CloudFront stand-in: not a validation token\n");
  });
  auto acm = std::make_shared<const handler>([&](const auto& req) {
    if (req.target() == "/" + std::string(account) + std::string(prefix) + file) {
      return text_reply(200, "acm", content);
    }
    return text_reply(404, "acm", "ACM stand-in: no such token\n");
  });
  asio::co_spawn(s.ioc, serve(s.origin, nullptr, origin), asio::detached);
  asio::co_spawn(s.ioc, serve(s.cloudfront, nullptr, cloudfront), asio::detached);
  asio::co_spawn(s.ioc, serve(s.acm, tls, acm), asio::detached);
  s.thread = std::thread([&s] { s.ioc.run(); });

  if (wanted != 0 && !port_free(wanted)) {
    std::cerr << "wkproxy demo: 127.0.0.1:" << wanted << " is in use; taking a free port\n";
    wanted = 0;
  }
  const std::string config = dir + "/wkproxy.yaml";
  {
    std::ofstream f(config);
    f << "# Generated by wkproxy demo: the origin, CloudFront and ACM are stand-ins on loopback.\n"
      << "version: 1\n"
      << "listen: [\"127.0.0.1:" << wanted << "\"]\n"
      << "origin: http://127.0.0.1:" << s.port(s.origin) << "\n"
      << "cloudfront: http://127.0.0.1:" << s.port(s.cloudfront) << "\n"
      << "domains: [" << domain << "]\n"
      << "admin: {listen: \"127.0.0.1:0\"}\n"
      << "access_log: off\n"
      << "validation: {event_log: off}\n"
      << "workers: 1\n"
      << "tokens:\n"
      << "  - tenant: demo\n"
      << "    domain: " << domain << "\n"
      << "    redirect_from: \"http://" << domain << prefix << file << "\"\n"
      << "    redirect_to: \"" << redirect_to << "\"\n";
  }

  app::server_options opt;
  opt.config_path = config;
  opt.ports_file = dir + "/ports.json";
  opt.exe = "/proc/self/exe";
  opt.args = {"wkproxy", "-c", config};
  opt.version = version;
  opt.revision = revision;

  int check_status = 1;
  std::thread tour([&] {
    std::optional<std::pair<std::uint16_t, std::uint16_t>> ports;
    for (int i = 0; i < 300 && !(ports = read_ports(opt.ports_file)); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!ports) {
      return;  // the proxy did not start: run_server has said why and returned
    }
    const auto [port, admin] = *ports;
    const std::string p = std::to_string(port);
    const std::string token = std::string(prefix) + file;
    std::cout << "\nwkproxy demo: the validation split, on loopback, nothing to set up\n\n"
              << "  proxy       http://127.0.0.1:" << p << "  (wkproxy, generated config)\n"
              << "  origin      http://127.0.0.1:" << s.port(s.origin)
              << "  (stands in for the customer's existing server)\n"
              << "  CloudFront  http://127.0.0.1:" << s.port(s.cloudfront)
              << "  (stand-in: answers the token with a redirect to ACM)\n"
              << "  ACM         https://localhost:" << acm_port
              << "  (stand-in validation host, throwaway CA)\n"
              << "  status      http://127.0.0.1:" << admin << "/status\n\n";
    const auto page = get(port, domain, "/");
    const auto via_cf = get(port, domain, token);
    const auto other = get(port, domain, std::string(prefix) + "not-a-token.txt");
    std::cout << "What the proxy did with three requests for Host: " << domain << ":\n"
              << "  GET /                                   -> " << describe(page) << "\n"
              << "  GET " << token << " -> " << describe(via_cf) << "\n"
              << "  GET " << prefix << "not-a-token.txt  -> " << describe(other) << "\n\n"
              << "The CA's view, by wkproxy check (RedirectFrom through the proxy, redirects "
                 "followed, body compared with RedirectTo):\n"
              << std::flush;
    const std::string ca = dir + "/ca.pem";
    std::vector<std::string> args = {"-c",        config, "--via",   "127.0.0.1:" + p,
                                     "--ca-file", ca,     "--allow", "localhost"};
    std::vector<char*> argv_check;
    for (auto& a : args) {
      argv_check.push_back(a.data());
    }
    check_status = run_check(static_cast<int>(argv_check.size()), argv_check.data());
    if (once) {
      std::cout << std::flush;
      ::kill(::getpid(), SIGTERM);
      return;
    }
    std::cout << "\nTry it yourself:\n"
              << "  curl -H 'Host: " << domain << "' http://127.0.0.1:" << p << "/\n"
              << "  curl -i -H 'Host: " << domain << "' http://127.0.0.1:" << p << token << "\n"
              << "  curl -H 'Host: " << domain << "' http://127.0.0.1:" << p << prefix
              << "not-a-token.txt\n"
              << "  open http://127.0.0.1:" << admin << "/status\n"
              << "\nServing until Ctrl-C. For a real domain, see README.md (quick start).\n"
              << std::flush;
  });
  const int served = app::run_server(opt);
  tour.join();
  s.stop();
  if (served != 0) {
    return served;
  }
  return check_status;
}

}  // namespace wk::cli
