#include "wire/client_hello.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

extern char** environ;  // NOLINT: POSIX, for posix_spawnp

namespace wire = wk::wire;
using wire::hello_status;

namespace {

// ---- Building ClientHello bytes by hand (RFC 8446 section 4.1.2) ----

std::string be8(std::size_t v) {
  return std::string(1, static_cast<char>(v & 0xff));  // NOLINT(modernize-return-braced-init-list)
}
std::string be16(std::size_t v) {
  return be8(v >> 8) + be8(v);
}
std::string be24(std::size_t v) {
  return be8(v >> 16) + be16(v & 0xffff);
}
std::string vec8(std::string_view s) {
  return be8(s.size()) + std::string(s);
}
std::string vec16(std::string_view s) {
  return be16(s.size()) + std::string(s);
}
std::string ext(std::size_t type, std::string_view data) {
  return be16(type) + vec16(data);
}
std::string host_entry(std::string_view host) {
  return be8(0) + vec16(host);
}
std::string sni_ext(std::string_view host) {
  return ext(0, vec16(host_entry(host)));
}

std::string alpn_ext(std::initializer_list<std::string_view> names) {
  std::string list;
  for (const auto name : names) {
    list += vec8(name);
  }
  return ext(16, vec16(list));
}

struct hello_parts {
  std::string version = be16(0x0303);
  std::string random = std::string(32, 'r');
  std::string session_id = vec8(std::string(32, 's'));
  std::string cipher_suites = vec16("\x13\x01\x13\x02");
  std::string compression = vec8(std::string(1, '\0'));
  std::string extensions;  // the encoded block with its length prefix; empty: none
};

std::string body(const hello_parts& p) {
  return p.version + p.random + p.session_id + p.cipher_suites + p.compression + p.extensions;
}

std::string handshake(std::string_view hello_body, std::size_t type = 1) {
  return be8(type) + be24(hello_body.size()) + std::string(hello_body);
}

// Handshake records of at most `chunk` payload bytes each.
std::string records(std::string_view hs, std::size_t chunk = 16384) {
  std::string out;
  for (std::size_t i = 0; i < hs.size(); i += chunk) {
    const auto piece = hs.substr(i, chunk);
    out += "\x16\x03\x01" + be16(piece.size()) + std::string(piece);
  }
  return out;
}

std::string hello_with(const hello_parts& p) {
  return records(handshake(body(p)));
}

std::string hello_with_extensions(std::string_view exts) {
  hello_parts p;
  p.extensions = vec16(exts);
  return hello_with(p);
}

std::string minimal_hello() {
  return hello_with_extensions(sni_ext("example.com") + alpn_ext({"h2", "http/1.1"}));
}

// The handshake bytes carried by a run of complete records (test input, trusted).
std::string handshake_of(std::string_view recs) {
  std::string hs;
  while (recs.size() >= 5) {
    const std::size_t len =
        std::size_t{static_cast<std::uint8_t>(recs[3])} << 8 | static_cast<std::uint8_t>(recs[4]);
    hs += recs.substr(5, len);
    recs.remove_prefix(std::min(recs.size(), 5 + len));
  }
  return hs;
}

// The same handshake bytes re-split into records whose sizes cycle through `sizes`.
std::string resplit(std::string_view recs, const std::vector<std::size_t>& sizes) {
  const std::string hs = handshake_of(recs);
  std::string out;
  std::size_t i = 0;
  for (std::size_t k = 0; i < hs.size(); ++k) {
    const auto piece = std::string_view(hs).substr(i, sizes[k % sizes.size()]);
    out += std::string(recs.substr(0, 3)) + be16(piece.size()) + std::string(piece);
    i += piece.size();
  }
  return out;
}

// ---- Capturing real ClientHellos from openssl and curl over loopback ----

struct fd_guard {
  int fd = -1;
  explicit fd_guard(int f) : fd(f) {}
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  ~fd_guard() {
    if (fd >= 0) {
      ::close(fd);
    }
  }
};

// Always killed and reaped, whichever way the test leaves.
struct child_guard {
  pid_t pid = -1;
  child_guard() = default;
  child_guard(const child_guard&) = delete;
  child_guard& operator=(const child_guard&) = delete;
  bool exited() {
    int st = 0;
    if (pid > 0 && ::waitpid(pid, &st, WNOHANG) == pid) {
      pid = -1;
    }
    return pid <= 0;
  }
  ~child_guard() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      int st = 0;
      while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
      }
    }
  }
};

struct capture {
  std::string bytes;
  wire::client_hello hello;
  std::string error;
};

// Listens on 127.0.0.1:0, runs `args` ("{port}" replaced by the bound port) with stdio on
// /dev/null, and reads what the client sends until it parses as a whole hello or 5 s pass.
capture capture_hello(std::vector<std::string> args) {
  using clock = std::chrono::steady_clock;
  capture out;
  fd_guard listener{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t addr_len = sizeof addr;
  auto* sa = reinterpret_cast<sockaddr*>(&addr);
  if (listener.fd < 0 || ::bind(listener.fd, sa, sizeof addr) != 0 ||
      ::listen(listener.fd, 1) != 0 || ::getsockname(listener.fd, sa, &addr_len) != 0) {
    out.error = "cannot listen on loopback";
    return out;
  }
  const std::string port = std::to_string(ntohs(addr.sin_port));
  for (auto& arg : args) {
    for (auto at = arg.find("{port}"); at != std::string::npos; at = arg.find("{port}")) {
      arg.replace(at, 6, port);
    }
  }
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& arg : args) {
    argv.push_back(arg.data());
  }
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  ::posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  ::posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  child_guard child;
  const int spawned = ::posix_spawnp(&child.pid, argv[0], &actions, nullptr, argv.data(), environ);
  ::posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) {
    child.pid = -1;
    out.error = "cannot run " + args[0];
    return out;
  }

  const auto deadline = clock::now() + std::chrono::seconds(5);
  const auto wait_readable = [&](int fd) {
    while (clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 50) > 0) {
        return true;
      }
      if (child.exited()) {  // it may still have left bytes or a connection behind
        return ::poll(&p, 1, 0) > 0;
      }
    }
    return false;
  };
  if (!wait_readable(listener.fd)) {
    out.error = args[0] + " did not connect";
    return out;
  }
  fd_guard conn{::accept4(listener.fd, nullptr, nullptr, SOCK_CLOEXEC)};
  char buf[4096];
  while (conn.fd >= 0 && wait_readable(conn.fd)) {
    const ssize_t n = ::read(conn.fd, buf, sizeof buf);
    if (n <= 0) {
      break;
    }
    out.bytes.append(buf, static_cast<std::size_t>(n));
    out.hello = wire::parse_client_hello(out.bytes);
    if (out.hello.status != hello_status::need_more) {
      return out;
    }
  }
  out.error =
      "no complete hello from " + args[0] + " (" + std::to_string(out.bytes.size()) + " bytes)";
  return out;
}

capture openssl_capture(std::initializer_list<std::string> extra) {
  std::vector<std::string> args{"openssl", "s_client", "-connect", "127.0.0.1:{port}"};
  args.insert(args.end(), extra);
  return capture_hello(std::move(args));
}

// One openssl hello, captured once and shared by the tests that take it apart.
const std::string& captured_hello() {
  static const std::string bytes =
      openssl_capture({"-servername", "example.com", "-alpn", "h2,http/1.1"}).bytes;
  return bytes;
}

void put16(std::string& s, std::size_t at, std::size_t v) {
  s.replace(at, 2, be16(v));
}

std::size_t get16(std::string_view s, std::size_t at) {
  return std::size_t{static_cast<std::uint8_t>(s[at])} << 8 | static_cast<std::uint8_t>(s[at + 1]);
}

struct bytes_row {
  std::string_view name;
  std::string input;
  hello_status status;
  std::string_view reason;  // a substring of the reason; empty: not checked
};

void check_rows(const std::vector<bytes_row>& rows) {
  for (const auto& row : rows) {
    CAPTURE(row.name);
    const auto r = wire::parse_client_hello(row.input);
    CHECK(r.status == row.status);
    CHECK(r.reason.find(row.reason) != std::string::npos);
  }
}

}  // namespace

TEST_SUITE("client_hello") {

  TEST_CASE("real ClientHellos captured from openssl and curl carry their SNI and ALPN") {
    SUBCASE("openssl s_client with -servername and -alpn") {
      const auto c = openssl_capture({"-servername", "example.com", "-alpn", "h2,http/1.1"});
      REQUIRE_MESSAGE(c.error.empty(), c.error);
      REQUIRE(c.hello.status == hello_status::ok);
      CHECK(c.hello.sni == "example.com");
      CHECK(c.hello.alpn == std::vector<std::string>{"h2", "http/1.1"});
      CHECK(c.hello.legacy_version == 0x0303);
    }
    SUBCASE("openssl s_client restricted to TLS 1.2") {
      const auto c = openssl_capture({"-servername", "example.com", "-tls1_2"});
      REQUIRE_MESSAGE(c.error.empty(), c.error);
      REQUIRE(c.hello.status == hello_status::ok);
      CHECK(c.hello.sni == "example.com");
      CHECK(c.hello.alpn.empty());
      CHECK(c.hello.legacy_version == 0x0303);
    }
    SUBCASE("openssl s_client to an IP address sends no SNI") {
      const auto c = openssl_capture({"-alpn", "http/1.1"});
      REQUIRE_MESSAGE(c.error.empty(), c.error);
      REQUIRE(c.hello.status == hello_status::ok);
      CHECK(c.hello.sni.empty());
      CHECK(c.hello.alpn == std::vector<std::string>{"http/1.1"});
    }
    SUBCASE("curl") {
      const auto c =
          capture_hello({"curl", "-sk", "--max-time", "3", "https://www.example.test:{port}/",
                         "--resolve", "www.example.test:{port}:127.0.0.1"});
      REQUIRE_MESSAGE(c.error.empty(), c.error);
      REQUIRE(c.hello.status == hello_status::ok);
      CHECK(c.hello.sni == "www.example.test");
      CHECK(std::find(c.hello.alpn.begin(), c.hello.alpn.end(), "http/1.1") != c.hello.alpn.end());
    }
  }

  TEST_CASE("every strict prefix of a captured hello needs more, with a sound lower bound") {
    const std::string& full = captured_hello();
    REQUIRE(!full.empty());
    const std::vector<std::string> inputs{full, resplit(full, {1}), resplit(full, {3, 1, 7})};
    for (const auto& input : inputs) {
      CAPTURE(input.size());
      for (std::size_t n = 0; n < input.size(); ++n) {
        CAPTURE(n);
        const auto r = wire::parse_client_hello(std::string_view(input).substr(0, n));
        REQUIRE(r.status == hello_status::need_more);
        CHECK(r.bytes_needed > n);
        CHECK(r.bytes_needed <= input.size());
      }
      CHECK(wire::parse_client_hello(input).status == hello_status::ok);
    }
  }

  TEST_CASE("a captured hello re-split into small records parses the same") {
    const std::string& full = captured_hello();
    REQUIRE(!full.empty());
    const std::vector<std::vector<std::size_t>> splits{
        {1}, {2}, {3}, {4}, {5}, {7}, {100}, {1, 2, 3, 5, 8, 13}, {16384}};
    for (const auto& sizes : splits) {
      CAPTURE(sizes.front());
      const auto r = wire::parse_client_hello(resplit(full, sizes));
      REQUIRE(r.status == hello_status::ok);
      CHECK(r.sni == "example.com");
      CHECK(r.alpn == std::vector<std::string>{"h2", "http/1.1"});
    }
  }

  TEST_CASE("a corrupted captured hello is rejected") {
    const std::string& full = captured_hello();
    REQUIRE(!full.empty());
    // Layout around the host name: ext type 0 (2), ext len (2), list len (2), type 0 (1), len (2).
    const std::size_t host = full.find("example.com");
    REQUIRE(host != std::string::npos);
    REQUIRE(host >= 9);
    REQUIRE(get16(full, host - 9) == 0);
    REQUIRE(get16(full, host - 2) == 11);
    REQUIRE(host + 11 + 4 <= full.size());  // another extension follows the server_name one
    REQUIRE(handshake_of(full).size() == full.size() - 5);  // one record
    const std::size_t hs_len = full.size() - 9;
    const auto with = [&](auto mutate) {
      std::string s = full;
      mutate(s);
      return s;
    };
    std::string interleaved = resplit(full, {50});
    interleaved.insert(
        55, std::string("\x15\x03\x03\x00\x02\x02\x28", 7));  // an alert after the first record
    std::string second_not_handshake = resplit(full, {50});
    second_not_handshake[55] = '\x17';

    check_rows({
        {"application data record type", with([](std::string& s) { s[0] = '\x17'; }),
         hello_status::not_tls, "record type 0x17 is not handshake"},
        {"plaintext HTTP", "GET / HTTP/1.1\r\n", hello_status::not_tls, "HTTP"},
        {"record version major 2", with([](std::string& s) { s[1] = '\x02'; }),
         hello_status::not_tls, "version"},
        {"handshake type server_hello", with([](std::string& s) { s[5] = '\x02'; }),
         hello_status::malformed, "handshake type 0x02"},
        {"extension length overflowing", with([&](std::string& s) { put16(s, host - 7, 0xffff); }),
         hello_status::malformed, "overruns"},
        {"server_name list longer than the extension",
         with([&](std::string& s) { put16(s, host - 5, get16(s, host - 5) + 1); }),
         hello_status::malformed, "server_name"},
        {"server_name list shorter than the extension",
         with([&](std::string& s) { put16(s, host - 5, get16(s, host - 5) - 1); }),
         hello_status::malformed, "server_name"},
        {"host name with an invalid character", with([&](std::string& s) { s[host + 3] = '!'; }),
         hello_status::malformed, "server_name"},
        {"record length above 2^14", with([](std::string& s) { put16(s, 3, 16385); }),
         hello_status::malformed, "record length 16385"},
        {"duplicate extension", with([&](std::string& s) { put16(s, host + 11, 0); }),
         hello_status::malformed, "duplicate extension 0"},
        {"alert record before the hello completes", interleaved, hello_status::malformed,
         "record type 0x15"},
        {"application data record before the hello completes", second_not_handshake,
         hello_status::malformed, "record type 0x17"},
    });
    CHECK(wire::parse_client_hello(full, hs_len).status == hello_status::ok);
    const auto big = wire::parse_client_hello(full, hs_len - 1);
    CHECK(big.status == hello_status::too_large);
    CHECK(big.reason ==
          "client_hello length " + std::to_string(hs_len) + " > " + std::to_string(hs_len - 1));
  }

  TEST_CASE("a hand-built hello parses field by field") {
    SUBCASE("SNI, ALPN and version") {
      hello_parts p;
      p.version = be16(0x0301);
      p.extensions = vec16(sni_ext("Example.COM.") + ext(0xff01, be8(0)) + alpn_ext({"h2"}));
      const auto r = wire::parse_client_hello(hello_with(p));
      REQUIRE(r.status == hello_status::ok);
      CHECK(r.sni == "example.com");
      CHECK(r.alpn == std::vector<std::string>{"h2"});
      CHECK(r.legacy_version == 0x0301);
      CHECK(r.reason.empty());
    }
    SUBCASE("no extensions at all, or an empty block") {
      hello_parts p;
      for (const auto& block : {std::string{}, vec16("")}) {
        p.extensions = block;
        const auto r = wire::parse_client_hello(hello_with(p));
        REQUIRE(r.status == hello_status::ok);
        CHECK(r.sni.empty());
        CHECK(r.alpn.empty());
      }
    }
    SUBCASE("the first of several host names wins") {
      const auto r = wire::parse_client_hello(hello_with_extensions(
          ext(0, vec16(host_entry("first.example") + host_entry("second.example")))));
      REQUIRE(r.status == hello_status::ok);
      CHECK(r.sni == "first.example");
    }
    SUBCASE("bytes after the hello are ignored") {
      const auto r = wire::parse_client_hello(minimal_hello() + "\x17\x03\x03\xff\xff trailing");
      REQUIRE(r.status == hello_status::ok);
      CHECK(r.sni == "example.com");
    }
    SUBCASE("the hello may end inside a longer, still incomplete record") {
      const std::string hs = handshake_of(minimal_hello()) + std::string("\x0f\x00\x01", 3);
      const auto r = wire::parse_client_hello(records(hs).substr(0, 5 + hs.size() - 2));
      REQUIRE(r.status == hello_status::ok);
      CHECK(r.alpn.size() == 2);
    }
    SUBCASE("a hello larger than one record spans two") {
      const std::string input =
          hello_with_extensions(sni_ext("big.example") + ext(21, std::string(20000, '\0')));
      CHECK(input.size() > 16384 + 5);
      CHECK(wire::parse_client_hello(input).status == hello_status::too_large);
      const auto r = wire::parse_client_hello(input, 65536);
      REQUIRE(r.status == hello_status::ok);
      CHECK(r.sni == "big.example");
    }
  }

  TEST_CASE("record framing of the first bytes") {
    SUBCASE("empty and partial headers need more") {
      for (const std::string_view s : {std::string_view{}, std::string_view("\x16", 1),
                                       std::string_view("\x16\x03\x01\x00", 4)}) {
        const auto r = wire::parse_client_hello(s);
        CHECK(r.status == hello_status::need_more);
        CHECK(r.bytes_needed == 9);  // a record header and a handshake header
      }
    }
    SUBCASE("the body length is known once the handshake header is in") {
      const std::string hello = minimal_hello();
      const auto r = wire::parse_client_hello(std::string_view(hello).substr(0, 9));
      CHECK(r.status == hello_status::need_more);
      CHECK(r.bytes_needed == hello.size());
    }
    SUBCASE("too_large is known from the handshake header alone") {
      const std::string head = std::string("\x16\x03\x01\x40\x00\x01", 6) + be24(16385);
      CHECK(wire::parse_client_hello(head).status == hello_status::too_large);
      CHECK(wire::parse_client_hello(head, 16385).status == hello_status::need_more);
    }
    check_rows({
        {"one byte of plaintext", "G", hello_status::not_tls, "plaintext HTTP"},
        {"SSLv2-style header", std::string("\x80\x2e\x01\x00\x02", 5), hello_status::not_tls,
         "0x80"},
        {"version major 2 in the first record", "\x16\x02", hello_status::not_tls, "0x02"},
        {"zero-length record", std::string("\x16\x03\x01\x00\x00", 5), hello_status::malformed,
         "empty"},
        {"zero-length record after the first",
         records(handshake_of(minimal_hello()).substr(0, 10)) +
             std::string("\x16\x03\x01\x00\x00", 5),
         hello_status::malformed, "empty"},
        {"version major 4 in a later record",
         records(handshake_of(minimal_hello()), 10).replace(16, 1, "\x04"), hello_status::malformed,
         "version major 0x04"},
    });
  }

  TEST_CASE("malformed hand-built hellos are rejected") {
    const auto body_with = [](auto mutate) {
      hello_parts p;
      p.extensions = vec16(sni_ext("example.com"));
      mutate(p);
      return hello_with(p);
    };
    check_rows({
        {"handshake type 2", records(handshake(body(hello_parts{}), 2)), hello_status::malformed,
         "handshake type 0x02"},
        {"body shorter than the random", records(handshake("\x03\x03" + std::string(10, 'r'))),
         hello_status::malformed, "short"},
        {"33-byte session_id",
         body_with([](hello_parts& p) { p.session_id = vec8(std::string(33, 's')); }),
         hello_status::malformed, "session_id"},
        {"session_id overruns the body",
         records(handshake("\x03\x03" + std::string(32, 'r') + be8(32))), hello_status::malformed,
         "session_id"},
        {"odd cipher_suites length",
         body_with([](hello_parts& p) { p.cipher_suites = vec16("abc"); }), hello_status::malformed,
         "cipher_suites"},
        {"no cipher_suites", body_with([](hello_parts& p) { p.cipher_suites = vec16(""); }),
         hello_status::malformed, "cipher_suites"},
        {"no compression_methods", body_with([](hello_parts& p) { p.compression = vec8(""); }),
         hello_status::malformed, "compression"},
        {"extensions block longer than the body",
         body_with([](hello_parts& p) { p.extensions = be16(11) + sni_ext("a"); }),
         hello_status::malformed, "extensions length"},
        {"extensions block shorter than the body",
         body_with([](hello_parts& p) { p.extensions = vec16(sni_ext("a")) + "x"; }),
         hello_status::malformed, "extensions length"},
        {"one byte where the extensions block starts",
         body_with([](hello_parts& p) { p.extensions = "x"; }), hello_status::malformed,
         "extensions length"},
        {"extension data overruns the block", hello_with_extensions(be16(23) + be16(5) + "ab"),
         hello_status::malformed, "overruns"},
        {"extension header cut short", hello_with_extensions(be16(23) + be8(0)),
         hello_status::malformed, "overruns"},
        {"duplicate unknown extension", hello_with_extensions(ext(0x4469, "") + ext(0x4469, "")),
         hello_status::malformed, "duplicate extension 17513"},
        {"empty server_name extension", hello_with_extensions(ext(0, "")), hello_status::malformed,
         "server_name"},
        {"empty server_name list", hello_with_extensions(ext(0, vec16(""))),
         hello_status::malformed, "server_name"},
        {"server_name entry of type 1", hello_with_extensions(ext(0, vec16(be8(1) + vec16("a")))),
         hello_status::malformed, "server_name"},
        {"host name overruns the list",
         hello_with_extensions(ext(0, vec16(be8(0) + be16(9) + "a"))), hello_status::malformed,
         "server_name"},
        {"empty ALPN extension", hello_with_extensions(ext(16, "")), hello_status::malformed,
         "application_layer"},
        {"empty ALPN list", hello_with_extensions(ext(16, vec16(""))), hello_status::malformed,
         "application_layer"},
        {"empty ALPN name", hello_with_extensions(alpn_ext({"h2", ""})), hello_status::malformed,
         "application_layer"},
        {"ALPN name overruns the list", hello_with_extensions(ext(16, vec16("\x05h2"))),
         hello_status::malformed, "application_layer"},
        {"ALPN list shorter than the extension",
         hello_with_extensions(ext(16, vec16(vec8("h2")) + "x")), hello_status::malformed,
         "application_layer"},
    });
  }

  TEST_CASE("host names must be plausible DNS names") {
    struct host_row {
      std::string host;
      std::string expected;  // empty: malformed
    };
    const std::vector<host_row> rows{
        {"example.com", "example.com"},
        {"WWW.Example.COM", "www.example.com"},
        {"example.com.", "example.com"},
        {"_acme-challenge.example.com", "_acme-challenge.example.com"},
        {"localhost", "localhost"},
        {"192.0.2.1", "192.0.2.1"},
        {std::string(63, 'a') + ".com", std::string(63, 'a') + ".com"},
        {"", ""},
        {".", ""},
        {"..", ""},
        {".example.com", ""},
        {"a..b", ""},
        {"example.com..", ""},
        {"exa mple.com", ""},
        {"ex/ample.com", ""},
        {"example.com:443", ""},
        {std::string("exa\0mple", 8), ""},
        {"b\xc3\xbc"
         "cher.example",
         ""},
        {std::string(64, 'a') + ".com", ""},
    };
    for (const auto& row : rows) {
      CAPTURE(row.host);
      const auto r = wire::parse_client_hello(hello_with_extensions(sni_ext(row.host)));
      if (row.expected.empty()) {
        CHECK(r.status == hello_status::malformed);
      } else {
        REQUIRE(r.status == hello_status::ok);
        CHECK(r.sni == row.expected);
      }
    }
    SUBCASE("255 bytes in 63-byte labels is the limit; 256 is too long") {
      const std::string label(63, 'a');
      const std::string name255 = label + "." + label + "." + label + "." + std::string(63, 'b');
      REQUIRE(name255.size() == 255);
      CHECK(wire::parse_client_hello(hello_with_extensions(sni_ext(name255))).sni == name255);
      CHECK(wire::parse_client_hello(hello_with_extensions(sni_ext(name255 + "."))).status ==
            hello_status::malformed);
    }
  }

}  // TEST_SUITE("client_hello")
