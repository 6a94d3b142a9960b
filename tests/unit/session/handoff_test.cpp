// The connection hand-over of a binary upgrade (session/handoff.hpp): the message that travels
// with each descriptor, and descriptors really passed over a Unix SOCK_SEQPACKET pair.

#include "session/handoff.hpp"

#include <doctest/doctest.h>

#include <cerrno>
#include <string>
#include <variant>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace session = wk::session;

namespace {

session::handoff_record sample() {
  session::handoff_record r;
  r.listener = "0.0.0.0:8080";
  r.ordinal = 2;
  r.served = 17;
  r.info.peer = "[2001:db8::7]:40000";
  r.info.peer_ip = "2001:db8::7";
  r.info.socket_v6 = true;
  r.info.pp.family = wk::wire::pp_family::tcp6;
  for (std::size_t i = 0; i < 16; ++i) {
    r.info.pp.src[i] = static_cast<std::uint8_t>(i * 17);
    r.info.pp.dst[i] = static_cast<std::uint8_t>(255 - i);
  }
  r.info.pp.src_port = 40000;
  r.info.pp.dst_port = 443;
  r.early = std::string("GET / HTTP/1.1\r\nHost: a\r\n\r\n\n\0tail", 33);
  return r;
}

struct channel_pair {
  int fds[2] = {-1, -1};
  channel_pair() { REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) == 0); }
  ~channel_pair() {
    for (int fd : fds) {
      if (fd >= 0) {
        ::close(fd);
      }
    }
  }
};

}  // namespace

TEST_CASE("a hand-over record survives encoding, early bytes included") {
  const auto r = sample();
  auto decoded = session::decode_handoff(session::encode(r));
  REQUIRE(std::holds_alternative<session::handoff_record>(decoded));
  const auto& d = std::get<session::handoff_record>(decoded);
  CHECK(d.listener == r.listener);
  CHECK(d.ordinal == r.ordinal);
  CHECK(d.served == r.served);
  CHECK(d.info.peer == r.info.peer);
  CHECK(d.info.peer_ip == r.info.peer_ip);
  CHECK(d.info.socket_v6);
  CHECK(d.info.pp.family == wk::wire::pp_family::tcp6);
  CHECK(d.info.pp.src == r.info.pp.src);
  CHECK(d.info.pp.dst == r.info.pp.dst);
  CHECK(d.info.pp.src_port == 40000);
  CHECK(d.info.pp.dst_port == 443);
  CHECK(d.early == r.early);
  CHECK(d.info.slot == nullptr);  // local to each process: never carried
}

TEST_CASE("malformed hand-over messages are refused with a reason") {
  auto refused = [](const std::string& m) {
    return std::holds_alternative<std::string>(session::decode_handoff(m));
  };
  CHECK(refused(""));
  CHECK(refused("{\"v\":1}"));  // no newline
  CHECK(refused("not json\n"));
  CHECK(refused("[1,2]\n"));
  auto text = session::encode(sample());
  const auto header = text.substr(0, text.find('\n'));
  auto with = [&](const std::string& from, const std::string& to) {
    auto h = header;
    const auto at = h.find(from);
    REQUIRE(at != std::string::npos);
    h.replace(at, from.size(), to);
    return h + "\n";
  };
  CHECK(refused(with("\"v\":1", "\"v\":2")));
  CHECK(refused(with("\"served\":17", "\"served\":-1")));
  CHECK(refused(with("\"listener\":", "\"other\":")));
  CHECK(refused(with("\"src_port\":40000", "\"src_port\":70000")));
  CHECK(refused(with("\"family\":\"tcp6\"", "\"family\":\"unix\"")));
  CHECK(refused(with("\"socket_v6\":true", "\"socket_v6\":1")));
  CHECK(refused(with("\"src\":\"00", "\"src\":\"zz")));
  CHECK(refused(header + "\n" + std::string(session::handoff_early_limit + 1, 'x')));
  CHECK_FALSE(refused(header + "\n" + std::string(session::handoff_early_limit, 'x')));
}

TEST_CASE("a descriptor goes over the channel with its message, and EOF is seen") {
  channel_pair ch;
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  const std::string message = session::encode(sample());
  REQUIRE(session::send_descriptor(ch.fds[0], pipe_fds[1], message) == 0);
  ::close(pipe_fds[1]);  // the receiver holds the write end now

  auto got = session::receive_descriptor(ch.fds[1]);
  REQUIRE(std::holds_alternative<session::received>(got));
  auto& r = std::get<session::received>(got);
  CHECK(r.message == message);
  REQUIRE(r.fd >= 0);
  CHECK((::fcntl(r.fd, F_GETFD) & FD_CLOEXEC) != 0);
  // The same pipe: what is written through the received descriptor comes out of the read end.
  REQUIRE(::write(r.fd, "ok", 2) == 2);
  char buf[4] = {};
  CHECK(::read(pipe_fds[0], buf, sizeof buf) == 2);
  CHECK(std::string(buf, 2) == "ok");
  ::close(r.fd);
  ::close(pipe_fds[0]);

  auto empty = session::receive_descriptor(ch.fds[1]);
  REQUIRE(std::holds_alternative<int>(empty));
  CHECK(std::get<int>(empty) == EAGAIN);

  ::close(ch.fds[0]);
  ch.fds[0] = -1;
  CHECK(std::holds_alternative<std::nullopt_t>(session::receive_descriptor(ch.fds[1])));
}

TEST_CASE("sending to a channel whose other end is gone fails, and the descriptor stays ours") {
  channel_pair ch;
  ::close(ch.fds[1]);
  ch.fds[1] = -1;
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  const int err = session::send_descriptor(ch.fds[0], pipe_fds[1], "x\n");
  CHECK(err != 0);
  CHECK(err != EAGAIN);
  CHECK(::fcntl(pipe_fds[1], F_GETFD) >= 0);
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}
