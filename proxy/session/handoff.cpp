#include "session/handoff.hpp"

#include "core/asio.hpp"
#include "observe/log.hpp"

#include <boost/json.hpp>

#include <array>
#include <cerrno>
#include <cstring>

#include <sys/socket.h>
#include <unistd.h>

namespace wk::session {

namespace json = boost::json;

namespace {

constexpr int format_version = 1;
constexpr std::string_view hex_digits = "0123456789abcdef";

std::string hex(const std::array<std::uint8_t, 16>& bytes) {
  std::string out;
  out.reserve(32);
  for (auto b : bytes) {
    out += hex_digits[b >> 4];
    out += hex_digits[b & 15];
  }
  return out;
}

bool unhex(std::string_view text, std::array<std::uint8_t, 16>& out) {
  if (text.size() != 32) {
    return false;
  }
  for (std::size_t i = 0; i < 16; ++i) {
    const auto hi = hex_digits.find(text[2 * i]);
    const auto lo = hex_digits.find(text[2 * i + 1]);
    if (hi == std::string_view::npos || lo == std::string_view::npos) {
      return false;
    }
    out[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return true;
}

std::string_view family_name(wire::pp_family f) {
  switch (f) {
  case wire::pp_family::tcp4:
    return "tcp4";
  case wire::pp_family::tcp6:
    return "tcp6";
  default:
    return "unknown";
  }
}

// Small helpers over a json::object that fail softly.
const json::string* string_at(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v != nullptr ? v->if_string() : nullptr;
}

std::optional<std::uint64_t> number_at(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr) {
    return std::nullopt;
  }
  if (const auto* u = v->if_uint64()) {
    return *u;
  }
  if (const auto* i = v->if_int64(); i != nullptr && *i >= 0) {
    return static_cast<std::uint64_t>(*i);
  }
  return std::nullopt;
}

}  // namespace

std::string encode(const handoff_record& r) {
  json::object pp;
  pp["family"] = family_name(r.info.pp.family);
  pp["src"] = hex(r.info.pp.src);
  pp["dst"] = hex(r.info.pp.dst);
  pp["src_port"] = r.info.pp.src_port;
  pp["dst_port"] = r.info.pp.dst_port;
  json::object o;
  o["v"] = format_version;
  o["listener"] = r.listener;
  o["ordinal"] = r.ordinal;
  o["served"] = r.served;
  o["peer"] = r.info.peer;
  o["peer_ip"] = r.info.peer_ip;
  o["socket_v6"] = r.info.socket_v6;
  o["pp"] = std::move(pp);
  std::string out = json::serialize(o);
  out += '\n';
  out += r.early;
  return out;
}

std::variant<handoff_record, std::string> decode_handoff(std::string_view message) {
  const auto nl = message.find('\n');
  if (nl == std::string_view::npos) {
    return std::string("no header line");
  }
  boost::system::error_code ec;
  auto v = json::parse(message.substr(0, nl), ec);
  if (ec || !v.is_object()) {
    return "header is not a JSON object: " + (ec ? ec.message() : std::string("other value"));
  }
  const auto& o = v.as_object();
  if (number_at(o, "v") != static_cast<std::uint64_t>(format_version)) {
    return std::string("unknown format version");
  }
  handoff_record r;
  const auto* listener = string_at(o, "listener");
  const auto ordinal = number_at(o, "ordinal");
  const auto served = number_at(o, "served");
  const auto* peer = string_at(o, "peer");
  const auto* peer_ip = string_at(o, "peer_ip");
  const auto* v6 = o.if_contains("socket_v6");
  const auto* pp_value = o.if_contains("pp");
  if (listener == nullptr || !ordinal || !served || peer == nullptr || peer_ip == nullptr ||
      v6 == nullptr || !v6->is_bool() || pp_value == nullptr || !pp_value->is_object()) {
    return std::string("a field is missing or of the wrong type");
  }
  const auto& pp = pp_value->as_object();
  const auto* family = string_at(pp, "family");
  const auto* src = string_at(pp, "src");
  const auto* dst = string_at(pp, "dst");
  const auto src_port = number_at(pp, "src_port");
  const auto dst_port = number_at(pp, "dst_port");
  if (family == nullptr || src == nullptr || dst == nullptr || !src_port || !dst_port ||
      *src_port > 65535 || *dst_port > 65535 || !unhex(*src, r.info.pp.src) ||
      !unhex(*dst, r.info.pp.dst)) {
    return std::string("bad client address");
  }
  if (*family == "tcp4") {
    r.info.pp.family = wire::pp_family::tcp4;
  } else if (*family == "tcp6") {
    r.info.pp.family = wire::pp_family::tcp6;
  } else if (*family == "unknown") {
    r.info.pp.family = wire::pp_family::unknown;
  } else {
    return std::string("bad address family");
  }
  r.info.pp.src_port = static_cast<std::uint16_t>(*src_port);
  r.info.pp.dst_port = static_cast<std::uint16_t>(*dst_port);
  r.listener = std::string(*listener);
  r.ordinal = static_cast<std::size_t>(*ordinal);
  r.served = static_cast<std::size_t>(*served);
  r.info.peer = std::string(*peer);
  r.info.peer_ip = std::string(*peer_ip);
  r.info.socket_v6 = v6->as_bool();
  r.early = std::string(message.substr(nl + 1));
  if (r.early.size() > handoff_early_limit) {
    return std::string("early bytes over the limit");
  }
  return r;
}

int send_descriptor(int channel, int fd, std::string_view message) {
  msghdr msg{};
  iovec iov{const_cast<char*>(message.data()), message.size()};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  for (;;) {
    if (::sendmsg(channel, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) {
      return 0;
    }
    if (errno != EINTR) {
      return errno == EWOULDBLOCK ? EAGAIN : errno;
    }
  }
}

std::variant<received, std::nullopt_t, int> receive_descriptor(int channel) {
  // The largest message: the header line (well under 1 KiB) and the early bytes.
  std::string buf(handoff_early_limit + 4096, '\0');
  msghdr msg{};
  iovec iov{buf.data(), buf.size()};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  // Room for more than one descriptor, so that a malformed message cannot leak any: every
  // descriptor received is either returned or closed.
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * 8)> control{};
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  ssize_t n = -1;
  do {
    n = ::recvmsg(channel, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    return errno == EWOULDBLOCK ? EAGAIN : errno;
  }
  received out;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
      continue;
    }
    const auto count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      if (out.fd < 0) {
        out.fd = fd;
      } else {
        ::close(fd);  // one descriptor per message: extra ones are not ours to keep
      }
    }
  }
  if (n == 0 && out.fd < 0) {
    return std::nullopt;  // EOF: a message is never empty
  }
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    buf.clear();  // a cut message is not decoded
  } else {
    buf.resize(static_cast<std::size_t>(n));
  }
  out.message = std::move(buf);
  return out;
}

handoff_sender::handoff_sender(const boost::asio::any_io_executor& ex, int fd) : channel_(ex, fd) {}

handoff_sender::~handoff_sender() = default;

boost::asio::awaitable<bool> handoff_sender::send(int fd, std::string message) {
  while (open_) {
    const int err = send_descriptor(channel_.native_handle(), fd, message);
    if (err == 0) {
      ++sent_;
      co_return true;
    }
    if (err != EAGAIN) {
      open_ = false;
      observe::warn("upgrade: cannot hand a connection to the new process (" +
                    std::string(std::strerror(err)) +
                    "); connections not handed over yet stay here and drain");
      break;
    }
    auto [ec] = co_await channel_.async_wait(boost::asio::posix::stream_descriptor::wait_write,
                                             core::nothrow);
    if (ec) {
      open_ = false;
    }
  }
  co_return false;
}

}  // namespace wk::session
