#pragma once
// PROXY protocol versions 1 and 2 (HAProxy,
// https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt): read the header a trusted load
// balancer puts before the client's bytes, and build the one we send to an upstream. Pure functions
// over bytes: no I/O, no sockets, no Asio.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace wk::wire {

// Longest v1 line, CRLF included (spec section 2.1: the worst case "PROXY UNKNOWN" line).
inline constexpr std::size_t pp_v1_max_length = 107;
// Longest v2 header we accept: the 16-byte fixed part plus up to 4096 bytes of addresses and
// TLVs. The spec allows 16 + 65535; no load balancer sends that much, and a cap bounds the buffer
// a listener must keep before it can hand the connection on.
inline constexpr std::size_t pp_v2_max_length = 16 + 4096;

enum class pp_status {
  need_more,  // a valid prefix so far: read more bytes and parse again from the start
  ok,         // a complete, valid header of `length` bytes
  invalid,    // starts like a PROXY header but breaks the spec: close the connection
  not_proxy,  // the first bytes cannot start a v1 or v2 header
};

enum class pp_family {
  unknown,  // v1 UNKNOWN, v2 UNSPEC, or a v2 LOCAL command: use the connection's own endpoints
  tcp4,
  tcp6,
};

struct pp_address {
  pp_family family = pp_family::unknown;
  std::array<std::uint8_t, 16> src{};  // network order; tcp4 uses the first 4 bytes
  std::array<std::uint8_t, 16> dst{};
  std::uint16_t src_port = 0;
  std::uint16_t dst_port = 0;

  std::string src_string() const;  // "192.168.0.1", "2001:db8::1"; empty when unknown
  std::string dst_string() const;
};

struct pp_result {
  pp_status status = pp_status::need_more;
  int version = 0;         // 1 or 2 once the signature is recognized, else 0
  std::size_t length = 0;  // when ok: the exact header size to consume; later bytes are payload
  pp_address addr;         // when ok
  bool local = false;      // v2 LOCAL command (health check from the balancer itself)
  std::string reason;      // short, for the log, when invalid or not_proxy
};

// Text form of an address of `family` ("" for unknown): dotted quad or RFC 5952 IPv6.
std::string to_string(pp_family family, const std::array<std::uint8_t, 16>& address);

// Parses a PROXY header at the start of `bytes` (everything read from the connection so far).
// Never reads past `bytes`, never consumes beyond the header. v1 TCP4/TCP6 lines must be strictly
// canonical (single spaces, no leading zeros, CRLF); v2 accepts LOCAL with any family, and PROXY
// with TCP over IPv4/IPv6 or UNSPEC; v2 TLVs are checked for bounds and otherwise skipped.
pp_result parse_proxy_header(std::string_view bytes);

// "PROXY TCP4 src dst sport dport\r\n", or "PROXY UNKNOWN\r\n" for an unknown family.
std::string build_proxy_v1(const pp_address& addr);

// Binary v2 header without TLVs: PROXY with the address block of `addr.family` (UNSPEC and no
// addresses when unknown), or LOCAL with UNSPEC and no addresses when `local`.
std::string build_proxy_v2(const pp_address& addr, bool local = false);

}  // namespace wk::wire
