// The inheritance of listening sockets (app/upgrade): what WKPROXY_LISTEN_FDS names is checked
// against the config, never trusted. Real sockets on loopback (127.0.0.1 and 127.0.0.2), a real
// regular file, and the real environment variables read by inherited_sockets.

#include "app/upgrade.hpp"
#include "config/upstream_url.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <variant>

using wk::app::handed_socket;
using wk::app::handoff_value;
using wk::app::inherited_sockets;

namespace {

int listening_socket(const char* ip, std::uint16_t port = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  REQUIRE(::inet_pton(AF_INET, ip, &a.sin_addr) == 1);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(fd, 4) == 0);
  return fd;
}

std::uint16_t port_of(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  return ntohs(a.sin_port);
}

wk::config::listener listener(const std::string& address) {
  auto parsed = wk::config::parse_listen_address(address);
  REQUIRE(std::holds_alternative<wk::config::listener>(parsed));
  return std::get<wk::config::listener>(parsed);
}

bool is_open(int fd) {
  return ::fcntl(fd, F_GETFD) != -1;
}

// inherited_sockets as a process started with WKPROXY_LISTEN_FDS=`value` sees them.
inherited_sockets inherit(const std::string& value) {
  ::setenv("WKPROXY_LISTEN_FDS", value.c_str(), 1);
  auto out = inherited_sockets::from_environment();
  CHECK(std::getenv("WKPROXY_LISTEN_FDS") == nullptr);  // not passed on to anything later
  return out;
}

std::string entry(const std::string& key, int fd) {
  return key + "=" + std::to_string(fd);
}

std::string error_of(const std::variant<int, std::string>& taken) {
  REQUIRE(std::holds_alternative<std::string>(taken));
  return std::get<std::string>(taken);
}

int fd_of(const std::variant<int, std::string>& taken) {
  REQUIRE(std::holds_alternative<int>(taken));
  return std::get<int>(taken);
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A regular file, open for the test's lifetime.
struct temp_file {
  std::FILE* f = std::tmpfile();
  int fd() const { return ::fileno(f); }
  ~temp_file() { std::fclose(f); }
};

}  // namespace

TEST_CASE("an inherited socket bound to the configured address and port is taken") {
  const int fd = listening_socket("127.0.0.1");
  const auto address = "127.0.0.1:" + std::to_string(port_of(fd));
  auto in = inherit(entry(address, fd));
  CHECK(in.warnings().empty());
  CHECK(fd_of(in.take(listener(address))) == fd);
  CHECK(fd_of(in.take(listener(address))) == -1);  // each descriptor is handed out once
  in.close_unused();
  CHECK(is_open(fd));  // taken: the listener owns it now
  ::close(fd);
}

TEST_CASE("a socket listening on another address or port is refused, naming both") {
  SUBCASE("another address: 127.0.0.2 for a 127.0.0.1 listener") {
    const int fd = listening_socket("127.0.0.2");
    const auto port = std::to_string(port_of(fd));
    auto in = inherit(entry("127.0.0.1:" + port, fd));
    const auto e = error_of(in.take(listener("127.0.0.1:" + port)));
    CHECK(contains(e, "127.0.0.1:" + port + ": inherited descriptor " + std::to_string(fd)));
    CHECK(contains(e, "WKPROXY_LISTEN_FDS"));
    CHECK(contains(e, "listens on 127.0.0.2:" + port + ", not on 127.0.0.1:" + port));
    ::close(fd);
  }
  SUBCASE("another port") {
    const int fd = listening_socket("127.0.0.1");
    const int other = listening_socket("127.0.0.1");
    const auto configured = "127.0.0.1:" + std::to_string(port_of(other));
    auto in = inherit(entry(configured, fd));
    const auto e = error_of(in.take(listener(configured)));
    CHECK(contains(e, "listens on 127.0.0.1:" + std::to_string(port_of(fd))));
    CHECK(contains(e, "not on " + configured));
    ::close(fd);
    ::close(other);
  }
  SUBCASE("port 0 in the config: any port, but still the configured address") {
    const int right = listening_socket("127.0.0.1");
    const int wrong = listening_socket("127.0.0.2");
    auto in = inherit(entry("127.0.0.1:0", right) + ";" + entry("127.0.0.1:0", wrong));
    CHECK(fd_of(in.take(listener("127.0.0.1:0"))) == right);
    CHECK(contains(error_of(in.take(listener("127.0.0.1:0"))), "listens on 127.0.0.2:"));
    ::close(right);
    ::close(wrong);
  }
}

TEST_CASE("listeners with the same address text get the entries in order") {
  const int first = listening_socket("127.0.0.1");
  const int second = listening_socket("127.0.0.1");
  const int third = listening_socket("127.0.0.1");
  auto in = inherit(entry("127.0.0.1:0", first) + ";" + entry("127.0.0.1:0", second) + ";" +
                    entry("127.0.0.1:0", third));
  CHECK(fd_of(in.take(listener("127.0.0.1:0"))) == first);
  CHECK(fd_of(in.take(listener("127.0.0.1:0"))) == second);
  CHECK(fd_of(in.take(listener("127.0.0.1:0"))) == third);
  for (int fd : {first, second, third}) {
    ::close(fd);
  }
}

TEST_CASE("the admin entry and public entries never stand in for each other") {
  const int pub = listening_socket("127.0.0.1");
  const int admin = listening_socket("127.0.0.1");
  const auto pub_address = "127.0.0.1:" + std::to_string(port_of(pub));
  const auto admin_address = "127.0.0.1:" + std::to_string(port_of(admin));
  SUBCASE("each goes to its own kind of listener") {
    auto in = inherit(handoff_value({{pub_address, pub}}, handed_socket{admin_address, admin}));
    CHECK(in.warnings().empty());
    CHECK(fd_of(in.take(listener(admin_address))) == -1);  // a public listener, same text
    CHECK(fd_of(in.take_admin(listener(pub_address))) == -1);
    CHECK(fd_of(in.take_admin(listener(admin_address))) == admin);
    CHECK(fd_of(in.take(listener(pub_address))) == pub);
  }
  SUBCASE("the admin socket must be bound where admin.listen says") {
    auto in = inherit(handoff_value({}, handed_socket{admin_address, pub}));
    const auto e = error_of(in.take_admin(listener(admin_address)));
    CHECK(contains(e, admin_address + ": inherited descriptor " + std::to_string(pub)));
    CHECK(contains(e, "listens on " + pub_address));
  }
  ::close(pub);
  ::close(admin);
}

TEST_CASE("an entry naming a regular file is ignored with a warning and never closed") {
  temp_file used;    // named for a listener of the config
  temp_file unused;  // named for an address no listener has
  const int sock = listening_socket("127.0.0.1");
  auto in = inherit(entry("127.0.0.1:0", used.fd()) + ";" + entry("127.0.0.1:1", unused.fd()) +
                    ";" + entry("127.0.0.1:2", sock));
  REQUIRE(in.warnings().size() == 2);
  CHECK(contains(in.warnings()[0], "descriptor " + std::to_string(used.fd())));
  CHECK(contains(in.warnings()[0], "not a listening TCP socket; ignored (left open)"));
  CHECK(contains(in.warnings()[1], "descriptor " + std::to_string(unused.fd())));
  CHECK(fd_of(in.take(listener("127.0.0.1:0"))) == -1);  // bind instead
  in.close_unused();
  CHECK(is_open(used.fd()));
  CHECK(is_open(unused.fd()));
  CHECK_FALSE(is_open(sock));  // a verified listening socket nobody took is closed
}

TEST_CASE("garbage, a descriptor named twice and a dup of a taken socket are not used") {
  const int fd = listening_socket("127.0.0.1");
  const int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  const auto address = "127.0.0.1:" + std::to_string(port_of(fd));
  auto in = inherit("nonsense;=999999;" + address + "=x;" + address + "=2;" + entry(address, fd) +
                    ";" + entry("127.0.0.1:0", fd) + ";;" + entry("127.0.0.1:0", dup));
  CHECK(in.warnings().size() == 5);
  CHECK(contains(in.warnings()[4], "named twice"));
  CHECK(fd_of(in.take(listener(address))) == fd);
  CHECK(contains(error_of(in.take(listener("127.0.0.1:0"))),
                 "like inherited descriptor " + std::to_string(fd)));
  ::close(fd);
  ::close(dup);
}

TEST_CASE("WKPROXY_READY_FD must be a pipe") {
  temp_file file;
  ::setenv("WKPROXY_READY_FD", std::to_string(file.fd()).c_str(), 1);
  auto in = inherited_sockets::from_environment();
  REQUIRE(in.warnings().size() == 1);
  CHECK(contains(in.warnings()[0], "not a pipe"));
  in.signal_ready();
  CHECK(is_open(file.fd()));
  CHECK(::lseek(file.fd(), 0, SEEK_END) == 0);  // nothing written to it

  int p[2];
  REQUIRE(::pipe(p) == 0);
  ::setenv("WKPROXY_READY_FD", std::to_string(p[1]).c_str(), 1);
  auto ready = inherited_sockets::from_environment();
  CHECK(ready.warnings().empty());
  ready.signal_ready();
  char buf[16] = {};
  CHECK(::read(p[0], buf, sizeof buf) == 6);
  CHECK(std::string(buf) == "ready\n");
  CHECK_FALSE(is_open(p[1]));  // closed once written: the parent then sees EOF after it
  ::close(p[0]);
}

TEST_CASE("systemd's descriptors: only listening TCP sockets are used or closed") {
  // Socket activation always starts at descriptor 3. Everything of this test is opened above
  // 100 first, and whatever the test runner has at 3 and 4 is put back afterwards.
  const auto high = [](int fd) {
    const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 100);
    ::close(fd);
    return moved;
  };
  temp_file tmp;  // before the descriptors are saved: it may be one of them
  const int saved3 = ::fcntl(3, F_DUPFD_CLOEXEC, 100);
  const int saved4 = ::fcntl(4, F_DUPFD_CLOEXEC, 100);
  const int sock = high(listening_socket("127.0.0.1"));
  const int file = ::fcntl(tmp.fd(), F_DUPFD_CLOEXEC, 100);
  const auto address = "127.0.0.1:" + std::to_string(port_of(sock));
  REQUIRE(::dup2(sock, 3) == 3);
  REQUIRE(::dup2(file, 4) == 4);
  ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
  ::setenv("LISTEN_FDS", "2", 1);
  auto in = inherited_sockets::from_environment();
  REQUIRE(in.warnings().size() == 1);
  CHECK(contains(in.warnings()[0], "LISTEN_FDS: descriptor 4 is not a listening TCP socket"));
  SUBCASE("the admin listener takes one only on its exact port") {
    CHECK(fd_of(in.take_admin(listener("127.0.0.1:0"))) == -1);
    CHECK(fd_of(in.take_admin(listener(address))) == 3);
  }
  SUBCASE("a public listener with port 0 takes any port of its address") {
    CHECK(fd_of(in.take(listener("127.0.0.2:0"))) == -1);
    CHECK(fd_of(in.take(listener("127.0.0.1:0"))) == 3);
  }
  SUBCASE("unused: the socket is closed, the file is not") {
    in.close_unused();
    CHECK_FALSE(is_open(3));
    CHECK(is_open(4));
  }
  for (auto [saved, fd] : {std::pair{saved3, 3}, std::pair{saved4, 4}}) {
    if (saved >= 0) {
      ::dup2(saved, fd);
      ::close(saved);
    } else {
      ::close(fd);
    }
  }
  ::close(sock);
  ::close(file);
}
