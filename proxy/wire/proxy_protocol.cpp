#include "wire/proxy_protocol.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <optional>

namespace wk::wire {
namespace {

constexpr std::string_view v1_prefix = "PROXY ";
constexpr std::string_view v2_signature("\r\n\r\n\0\r\nQUIT\n", 12);
constexpr std::size_t v2_fixed_length = 16;  // signature, ver_cmd, fam, 16-bit length

pp_result with_status(pp_status status, int version, std::string reason = {}) {
  pp_result r;
  r.status = status;
  r.version = version;
  r.reason = std::move(reason);
  return r;
}

pp_result fail(int version, std::string reason) {
  return with_status(pp_status::invalid, version, std::move(reason));
}

// True when `bytes` and `prefix` agree over their common length.
bool agrees(std::string_view bytes, std::string_view prefix) {
  const auto n = std::min(bytes.size(), prefix.size());
  return bytes.substr(0, n) == prefix.substr(0, n);
}

std::uint8_t byte_at(std::string_view s, std::size_t i) {
  return static_cast<std::uint8_t>(s[i]);
}

// Size of the v2 address block: two addresses and two ports.
std::size_t block_size(pp_family family) {
  switch (family) {
  case pp_family::tcp4:
    return 4 + 4 + 2 + 2;
  case pp_family::tcp6:
    return 16 + 16 + 2 + 2;
  case pp_family::unknown:
    break;
  }
  return 0;
}

// Unsigned decimal without sign or leading zeros ("0" itself is fine), at most `max`.
std::optional<std::uint32_t> parse_decimal(std::string_view s, std::uint32_t max) {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) {
    return std::nullopt;
  }
  std::uint32_t value = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    value = value * 10 + static_cast<std::uint32_t>(c - '0');
  }
  if (value > max) {
    return std::nullopt;
  }
  return value;
}

// Strict dotted quad: four decimal octets 0..255 without leading zeros ("010" reads as octal to
// some parsers), independent of what the C library tolerates.
bool parse_ipv4(std::string_view s, std::array<std::uint8_t, 16>& out) {
  out = {};
  for (std::size_t i = 0; i < 4; ++i) {
    const auto end = i < 3 ? s.find('.') : s.size();
    if (end == std::string_view::npos) {
      return false;
    }
    const auto octet = parse_decimal(s.substr(0, end), 255);
    if (!octet) {
      return false;
    }
    out[i] = static_cast<std::uint8_t>(*octet);
    s = i < 3 ? s.substr(end + 1) : s;
  }
  return true;
}

bool parse_ipv6(std::string_view s, std::array<std::uint8_t, 16>& out) {
  char text[INET6_ADDRSTRLEN] = {};
  // inet_pton stops at a NUL, so "::1\0junk" would otherwise pass as "::1".
  if (s.empty() || s.size() >= sizeof text || s.find('\0') != std::string_view::npos) {
    return false;
  }
  std::memcpy(text, s.data(), s.size());
  return inet_pton(AF_INET6, text, out.data()) == 1;
}

pp_result parse_v1(std::string_view bytes) {
  // Find the CR within the first 107 bytes; a bare LF or an overlong line is invalid at once.
  const std::size_t limit = std::min(bytes.size(), pp_v1_max_length);
  std::size_t cr = 0;
  for (;; ++cr) {
    if (cr == limit) {
      return bytes.size() >= pp_v1_max_length ? fail(1, "v1 line has no CRLF within 107 bytes")
                                              : with_status(pp_status::need_more, 1);
    }
    if (bytes[cr] == '\n') {
      return fail(1, "v1 line ends in LF without CR");
    }
    if (bytes[cr] == '\r') {
      break;
    }
  }
  if (cr + 1 == pp_v1_max_length) {
    return fail(1, "v1 line has no CRLF within 107 bytes");
  }
  if (cr + 1 == bytes.size()) {
    return with_status(pp_status::need_more, 1);
  }
  if (bytes[cr + 1] != '\n') {
    return fail(1, "v1 CR not followed by LF");
  }

  pp_result r = with_status(pp_status::ok, 1);
  r.length = cr + 2;
  // The caller checked the "PROXY " prefix, and no CR can precede it.
  const std::string_view line = bytes.substr(v1_prefix.size(), cr - v1_prefix.size());
  const auto protocol = line.substr(0, line.find(' '));
  if (protocol == "UNKNOWN") {
    return r;  // spec section 2.1: the rest of an UNKNOWN line is ignored
  }
  if (protocol == "TCP4") {
    r.addr.family = pp_family::tcp4;
  } else if (protocol == "TCP6") {
    r.addr.family = pp_family::tcp6;
  } else {
    return fail(1, "v1 protocol is not TCP4, TCP6 or UNKNOWN");
  }

  // Exactly five fields separated by single spaces: an empty field is a doubled or edge space.
  std::array<std::string_view, 5> fields;
  std::size_t n = 0;
  for (std::size_t pos = 0;; ++n) {
    if (n == fields.size()) {
      return fail(1, "v1 line has too many fields");
    }
    const auto space = line.find(' ', pos);
    fields[n] = line.substr(pos, space == std::string_view::npos ? space : space - pos);
    if (fields[n].empty()) {
      return fail(1, "v1 fields must be separated by single spaces");
    }
    if (space == std::string_view::npos) {
      break;
    }
    pos = space + 1;
  }
  if (n + 1 != fields.size()) {
    return fail(1, "v1 line has too few fields");
  }
  const auto parse_ip = r.addr.family == pp_family::tcp4 ? parse_ipv4 : parse_ipv6;
  if (!parse_ip(fields[1], r.addr.src) || !parse_ip(fields[2], r.addr.dst)) {
    return fail(1, "v1 address is not valid for the protocol");
  }
  const auto src_port = parse_decimal(fields[3], 65535);
  const auto dst_port = parse_decimal(fields[4], 65535);
  if (!src_port || !dst_port) {
    return fail(1, "v1 port is not 0..65535 without leading zeros");
  }
  r.addr.src_port = static_cast<std::uint16_t>(*src_port);
  r.addr.dst_port = static_cast<std::uint16_t>(*dst_port);
  return r;
}

pp_result parse_v2(std::string_view bytes) {
  if (bytes.size() < v2_fixed_length) {
    return with_status(pp_status::need_more, 2);
  }
  const auto ver_cmd = byte_at(bytes, 12);
  const auto fam = byte_at(bytes, 13);
  const std::size_t total =
      v2_fixed_length + (std::size_t{byte_at(bytes, 14)} << 8 | byte_at(bytes, 15));
  if ((ver_cmd >> 4) != 2) {
    return fail(2, "v2 version is not 2");
  }
  const auto command = ver_cmd & 0x0F;
  if (command != 0 && command != 1) {
    return fail(2, "v2 command is neither LOCAL nor PROXY");
  }
  if (total > pp_v2_max_length) {
    return fail(2, "v2 header is longer than the cap");
  }

  pp_result r = with_status(pp_status::ok, 2);
  r.local = command == 0;
  // LOCAL: the receiver discards the whole block, whatever the family (spec section 2.2).
  if (!r.local) {
    switch (fam) {
    case 0x00:  // UNSPEC: no addresses, the rest is skipped unread
      break;
    case 0x11:
      r.addr.family = pp_family::tcp4;
      break;
    case 0x21:
      r.addr.family = pp_family::tcp6;
      break;
    default:
      return fail(2, "v2 family is not TCP over IPv4 or IPv6, or UNSPEC");
    }
  }
  const std::size_t block = block_size(r.addr.family);
  if (total - v2_fixed_length < block) {
    return fail(2, "v2 length is shorter than the address block");
  }
  if (bytes.size() < total) {
    return with_status(pp_status::need_more, 2);
  }

  if (block != 0) {
    const std::size_t a = (block - 4) / 2;  // bytes per address
    std::memcpy(r.addr.src.data(), bytes.data() + v2_fixed_length, a);
    std::memcpy(r.addr.dst.data(), bytes.data() + v2_fixed_length + a, a);
    const std::size_t ports = v2_fixed_length + 2 * a;
    r.addr.src_port =
        static_cast<std::uint16_t>(byte_at(bytes, ports) << 8 | byte_at(bytes, ports + 1));
    r.addr.dst_port =
        static_cast<std::uint16_t>(byte_at(bytes, ports + 2) << 8 | byte_at(bytes, ports + 3));
    // TLVs fill the rest exactly: type (1), length (2), value.
    for (std::size_t pos = v2_fixed_length + block; pos < total;) {
      if (total - pos < 3) {
        return fail(2, "v2 TLV header is truncated");
      }
      const std::size_t value = std::size_t{byte_at(bytes, pos + 1)} << 8 | byte_at(bytes, pos + 2);
      if (value > total - pos - 3) {
        return fail(2, "v2 TLV overruns the header");
      }
      pos += 3 + value;
    }
  }
  r.length = total;
  return r;
}

void append_u16(std::string& out, std::uint16_t v) {
  out += static_cast<char>(v >> 8);
  out += static_cast<char>(v & 0xFF);
}

}  // namespace

std::string to_string(pp_family family, const std::array<std::uint8_t, 16>& address) {
  char text[INET6_ADDRSTRLEN] = {};
  const int af = family == pp_family::tcp4 ? AF_INET : AF_INET6;
  if (family == pp_family::unknown || inet_ntop(af, address.data(), text, sizeof text) == nullptr) {
    return {};
  }
  return text;
}

std::string pp_address::src_string() const {
  return to_string(family, src);
}
std::string pp_address::dst_string() const {
  return to_string(family, dst);
}

pp_result parse_proxy_header(std::string_view bytes) {
  if (agrees(bytes, v1_prefix)) {
    return bytes.size() < v1_prefix.size() ? with_status(pp_status::need_more, 0) : parse_v1(bytes);
  }
  if (agrees(bytes, v2_signature)) {
    return bytes.size() < v2_signature.size() ? with_status(pp_status::need_more, 0)
                                              : parse_v2(bytes);
  }
  return with_status(pp_status::not_proxy, 0, "no PROXY protocol signature");
}

std::string build_proxy_v1(const pp_address& addr) {
  if (addr.family == pp_family::unknown) {
    return "PROXY UNKNOWN\r\n";
  }
  std::string out = addr.family == pp_family::tcp4 ? "PROXY TCP4 " : "PROXY TCP6 ";
  out += addr.src_string();
  out += ' ';
  out += addr.dst_string();
  out += ' ';
  out += std::to_string(addr.src_port);
  out += ' ';
  out += std::to_string(addr.dst_port);
  out += "\r\n";
  return out;
}

std::string build_proxy_v2(const pp_address& addr, bool local) {
  const pp_family family = local ? pp_family::unknown : addr.family;
  const std::size_t block = block_size(family);
  std::string out(v2_signature);
  out.reserve(v2_fixed_length + block);
  out += static_cast<char>(local ? 0x20 : 0x21);
  out += static_cast<char>(family == pp_family::tcp4   ? 0x11
                           : family == pp_family::tcp6 ? 0x21
                                                       : 0x00);
  append_u16(out, static_cast<std::uint16_t>(block));
  if (block != 0) {
    const std::size_t a = (block - 4) / 2;
    out.append(reinterpret_cast<const char*>(addr.src.data()), a);
    out.append(reinterpret_cast<const char*>(addr.dst.data()), a);
    append_u16(out, addr.src_port);
    append_u16(out, addr.dst_port);
  }
  return out;
}

}  // namespace wk::wire
