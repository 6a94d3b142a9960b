#include "wire/proxy_protocol.hpp"

#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace wire = wk::wire;

namespace {

using bytes16 = std::array<std::uint8_t, 16>;

const std::string v2_signature("\r\n\r\n\0\r\nQUIT\n", 12);

wire::pp_address tcp4(bytes16 src, std::uint16_t src_port, bytes16 dst, std::uint16_t dst_port) {
  return {wire::pp_family::tcp4, src, dst, src_port, dst_port};
}

wire::pp_address tcp6(bytes16 src, std::uint16_t src_port, bytes16 dst, std::uint16_t dst_port) {
  return {wire::pp_family::tcp6, src, dst, src_port, dst_port};
}

// A v2 header with the given fixed-part bytes, a declared length, and a body as given.
std::string v2_raw(std::uint8_t ver_cmd, std::uint8_t fam, std::size_t length,
                   std::string_view body) {
  std::string out = v2_signature;
  out += static_cast<char>(ver_cmd);
  out += static_cast<char>(fam);
  out += static_cast<char>(length >> 8);
  out += static_cast<char>(length & 0xFF);
  out += body;
  return out;
}

std::string v2_raw(std::uint8_t ver_cmd, std::uint8_t fam, std::string_view body) {
  return v2_raw(ver_cmd, fam, body.size(), body);
}

std::string tlv(std::uint8_t type, std::string_view value) {
  std::string out(1, static_cast<char>(type));
  out += static_cast<char>(value.size() >> 8);
  out += static_cast<char>(value.size() & 0xFF);
  out += value;
  return out;
}

// 192.0.2.1:1234 -> 198.51.100.7:443 as a v2 address block.
const std::string tcp4_block("\xC0\x00\x02\x01\xC6\x33\x64\x07\x04\xD2\x01\xBB", 12);
// 2001:db8::1:1234 -> 2001:db8::2:443 as a v2 address block.
const std::string tcp6_block = std::string("\x20\x01\x0D\xB8", 4) + std::string(11, '\0') + "\x01" +
                               std::string("\x20\x01\x0D\xB8", 4) + std::string(11, '\0') + "\x02" +
                               std::string("\x04\xD2\x01\xBB", 4);

struct good_row {
  const char* name;
  std::string header;
  wire::pp_family family;
  std::string_view src;
  std::string_view dst;
  std::uint16_t src_port;
  std::uint16_t dst_port;
  bool local;
};

std::vector<good_row> good_rows() {
  return {
      {"v1 TCP4 from the spec", "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
       wire::pp_family::tcp4, "192.168.0.1", "192.168.0.11", 56324, 443, false},
      {"v1 TCP6", "PROXY TCP6 2001:db8::1 2001:db8::2 1234 443\r\n", wire::pp_family::tcp6,
       "2001:db8::1", "2001:db8::2", 1234, 443, false},
      {"v1 TCP6 with the longest addresses and ports",
       "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
       "65535 65535\r\n",
       wire::pp_family::tcp6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
       "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, 65535, false},
      {"v1 TCP4 with zero octets and ports", "PROXY TCP4 0.0.0.0 255.255.255.255 0 0\r\n",
       wire::pp_family::tcp4, "0.0.0.0", "255.255.255.255", 0, 0, false},
      {"v1 UNKNOWN", "PROXY UNKNOWN\r\n", wire::pp_family::unknown, "", "", 0, 0, false},
      {"v1 UNKNOWN of the spec's worst-case 107 bytes",
       "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
       "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
       wire::pp_family::unknown, "", "", 0, 0, false},
      {"v2 PROXY TCP4", v2_raw(0x21, 0x11, tcp4_block), wire::pp_family::tcp4, "192.0.2.1",
       "198.51.100.7", 1234, 443, false},
      {"v2 PROXY TCP6", v2_raw(0x21, 0x21, tcp6_block), wire::pp_family::tcp6, "2001:db8::1",
       "2001:db8::2", 1234, 443, false},
      {"v2 PROXY TCP4 with TLVs (ALPN, empty NOOP, authority)",
       v2_raw(0x21, 0x11, tcp4_block + tlv(0x01, "h2") + tlv(0x04, "") + tlv(0x02, "example.com")),
       wire::pp_family::tcp4, "192.0.2.1", "198.51.100.7", 1234, 443, false},
      {"v2 PROXY TCP6 with a NOOP TLV", v2_raw(0x21, 0x21, tcp6_block + tlv(0x04, "pad")),
       wire::pp_family::tcp6, "2001:db8::1", "2001:db8::2", 1234, 443, false},
      {"v2 PROXY UNSPEC skips its body unread", v2_raw(0x21, 0x00, "\x01\xFF"),
       wire::pp_family::unknown, "", "", 0, 0, false},
      {"v2 LOCAL", v2_raw(0x20, 0x00, ""), wire::pp_family::unknown, "", "", 0, 0, true},
      {"v2 LOCAL with a TCP4 block ignores it", v2_raw(0x20, 0x11, tcp4_block),
       wire::pp_family::unknown, "", "", 0, 0, true},
      {"v2 LOCAL accepts UDP and AF_UNIX", v2_raw(0x20, 0x32, std::string(216, 'x')),
       wire::pp_family::unknown, "", "", 0, 0, true},
      {"v2 PROXY TCP4 exactly at the length cap",
       v2_raw(0x21, 0x11, tcp4_block + tlv(0x04, std::string(4096 - 12 - 3, 'x'))),
       wire::pp_family::tcp4, "192.0.2.1", "198.51.100.7", 1234, 443, false},
  };
}

struct bad_row {
  const char* name;
  std::string header;
  wire::pp_status status;
  std::string_view reason;
};

std::vector<bad_row> bad_rows() {
  constexpr auto invalid = wire::pp_status::invalid;
  return {
      {"lowercase proxy is no signature", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
       wire::pp_status::not_proxy, "no PROXY protocol signature"},
      {"lowercase protocol", "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", invalid,
       "v1 protocol is not TCP4, TCP6 or UNKNOWN"},
      {"double space after PROXY", "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", invalid,
       "v1 protocol is not TCP4, TCP6 or UNKNOWN"},
      {"double space between addresses", "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", invalid,
       "v1 fields must be separated by single spaces"},
      {"trailing space", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", invalid,
       "v1 line has too many fields"},
      {"tab separator", "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", invalid,
       "v1 line has too few fields"},
      {"TCP5", "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", invalid,
       "v1 protocol is not TCP4, TCP6 or UNKNOWN"},
      {"UNKNOWN glued to more text", "PROXY UNKNOWNX\r\n", invalid,
       "v1 protocol is not TCP4, TCP6 or UNKNOWN"},
      {"empty protocol", "PROXY \r\n", invalid, "v1 protocol is not TCP4, TCP6 or UNKNOWN"},
      {"too few fields", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", invalid, "v1 line has too few fields"},
      {"too many fields", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", invalid,
       "v1 line has too many fields"},
      {"port 65536", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", invalid,
       "v1 port is not 0..65535 without leading zeros"},
      {"leading-zero port", "PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", invalid,
       "v1 port is not 0..65535 without leading zeros"},
      {"signed port", "PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n", invalid,
       "v1 port is not 0..65535 without leading zeros"},
      {"octet 256", "PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n", invalid,
       "v1 address is not valid for the protocol"},
      {"leading-zero octet", "PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", invalid,
       "v1 address is not valid for the protocol"},
      {"three octets", "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", invalid,
       "v1 address is not valid for the protocol"},
      {"five octets", "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", invalid,
       "v1 address is not valid for the protocol"},
      {"IPv6 in TCP4", "PROXY TCP4 ::1 5.6.7.8 1 2\r\n", invalid,
       "v1 address is not valid for the protocol"},
      {"IPv4 in TCP6", "PROXY TCP6 1.2.3.4 ::1 1 2\r\n", invalid,
       "v1 address is not valid for the protocol"},
      {"IPv6 with a zone", "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", invalid,
       "v1 address is not valid for the protocol"},
      {"IPv6 with a NUL", std::string("PROXY TCP6 ::1\0 ::1 1 2\r\n", 25), invalid,
       "v1 address is not valid for the protocol"},
      {"LF without CR", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", invalid,
       "v1 line ends in LF without CR"},
      {"CR without LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", invalid, "v1 CR not followed by LF"},
      {"no CRLF within 107 bytes", "PROXY UNKNOWN " + std::string(93, 'x'), invalid,
       "v1 line has no CRLF within 107 bytes"},
      {"a 108-byte line", "PROXY UNKNOWN " + std::string(92, 'x') + "\r\n", invalid,
       "v1 line has no CRLF within 107 bytes"},
      {"v2 version nibble 1", v2_raw(0x11, 0x11, tcp4_block), invalid, "v2 version is not 2"},
      {"v2 version nibble 3", v2_raw(0x31, 0x11, tcp4_block), invalid, "v2 version is not 2"},
      {"v2 command 2", v2_raw(0x22, 0x11, tcp4_block), invalid,
       "v2 command is neither LOCAL nor PROXY"},
      {"v2 PROXY over UDP/IPv4", v2_raw(0x21, 0x12, tcp4_block), invalid,
       "v2 family is not TCP over IPv4 or IPv6, or UNSPEC"},
      {"v2 PROXY over AF_UNIX", v2_raw(0x21, 0x31, std::string(216, 'x')), invalid,
       "v2 family is not TCP over IPv4 or IPv6, or UNSPEC"},
      {"v2 length too short for TCP4", v2_raw(0x21, 0x11, tcp4_block.substr(0, 11)), invalid,
       "v2 length is shorter than the address block"},
      {"v2 length too short for TCP6", v2_raw(0x21, 0x21, tcp4_block), invalid,
       "v2 length is shorter than the address block"},
      {"v2 TLV overrunning the header",
       v2_raw(0x21, 0x11, tcp4_block + tlv(0x01, "h2").substr(0, 4)), invalid,
       "v2 TLV overruns the header"},
      {"v2 truncated TLV header", v2_raw(0x21, 0x11, tcp4_block + "\x04\x00"), invalid,
       "v2 TLV header is truncated"},
      {"v2 length over the cap, known from the fixed part alone", v2_raw(0x21, 0x11, 4097, ""),
       invalid, "v2 header is longer than the cap"},
      {"HTTP request", "GET / HTTP/1.1\r\n", wire::pp_status::not_proxy,
       "no PROXY protocol signature"},
      {"TLS record", std::string("\x16\x03\x01\x02\x00\x01", 6), wire::pp_status::not_proxy,
       "no PROXY protocol signature"},
      {"PUT is not PROXY", "PUT / HTTP/1.1\r\n", wire::pp_status::not_proxy,
       "no PROXY protocol signature"},
      {"CRLF CRLF then no NUL", "\r\n\r\nGET", wire::pp_status::not_proxy,
       "no PROXY protocol signature"},
  };
}

}  // namespace

// A suite so that `wire_tests -ts='*proxy*'` selects these cases.
TEST_SUITE_BEGIN("proxy_protocol");

TEST_CASE("valid PROXY headers parse to their addresses and exact length") {
  for (const auto& row : good_rows()) {
    CAPTURE(row.name);
    const auto r = wire::parse_proxy_header(row.header);
    CAPTURE(r.reason);
    REQUIRE(r.status == wire::pp_status::ok);
    CHECK(r.version == (row.header[0] == 'P' ? 1 : 2));
    CHECK(r.length == row.header.size());
    CHECK(r.addr.family == row.family);
    CHECK(r.addr.src_string() == row.src);
    CHECK(r.addr.dst_string() == row.dst);
    CHECK(r.addr.src_port == row.src_port);
    CHECK(r.addr.dst_port == row.dst_port);
    CHECK(r.local == row.local);
  }
}

TEST_CASE("every proper prefix of a valid PROXY header needs more bytes") {
  for (const auto& row : good_rows()) {
    CAPTURE(row.name);
    const std::string_view header = row.header;
    for (std::size_t n = 0; n < header.size(); ++n) {
      CAPTURE(n);
      const auto r = wire::parse_proxy_header(header.substr(0, n));
      CHECK(r.status == wire::pp_status::need_more);
      CHECK(r.length == 0);
    }
  }
}

TEST_CASE("bytes after a PROXY header are left for the application") {
  const std::string payload = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  for (const auto& row : good_rows()) {
    CAPTURE(row.name);
    const auto r = wire::parse_proxy_header(row.header + payload);
    REQUIRE(r.status == wire::pp_status::ok);
    CHECK(r.length == row.header.size());
  }
}

TEST_CASE("malformed or foreign bytes are rejected") {
  for (const auto& row : bad_rows()) {
    CAPTURE(row.name);
    const auto r = wire::parse_proxy_header(row.header);
    CAPTURE(r.reason);
    CHECK(r.status == row.status);
    CHECK(r.reason == row.reason);
    CHECK(r.length == 0);
  }
}

TEST_CASE("the signature is recognized before the header is complete") {
  SUBCASE("empty input needs more") {
    CHECK(wire::parse_proxy_header("").status == wire::pp_status::need_more);
  }
  SUBCASE("a TLS ClientHello is refused from its first byte") {
    CHECK(wire::parse_proxy_header("\x16").status == wire::pp_status::not_proxy);
  }
  SUBCASE("an over-cap v2 length is refused before its body arrives") {
    const auto r = wire::parse_proxy_header(v2_raw(0x21, 0x11, 0xFFFF, tcp4_block));
    CHECK(r.status == wire::pp_status::invalid);
    CHECK(r.version == 2);
  }
}

TEST_CASE("built PROXY headers parse back to the same addresses") {
  const bytes16 v4_src{192, 168, 0, 1};
  const bytes16 v4_dst{192, 168, 0, 11};
  const bytes16 v6_src{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  const bytes16 v6_dst{0xfe, 0x80, 0,    0,    0,    0,    0,    0,
                       0x02, 0x11, 0x22, 0xff, 0xfe, 0x33, 0x44, 0x55};
  const wire::pp_address addresses[] = {
      tcp4(v4_src, 56324, v4_dst, 443),
      tcp4(bytes16{}, 0, bytes16{255, 255, 255, 255}, 65535),
      tcp6(v6_src, 1, v6_dst, 8443),
      tcp6(bytes16{}, 65535, bytes16{}, 0),
      wire::pp_address{},
  };

  SUBCASE("v1 text is canonical") {
    CHECK(wire::build_proxy_v1(addresses[0]) ==
          "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
    CHECK(wire::build_proxy_v1(addresses[2]) ==
          "PROXY TCP6 2001:db8::1 fe80::211:22ff:fe33:4455 1 8443\r\n");
    CHECK(wire::build_proxy_v1(addresses[4]) == "PROXY UNKNOWN\r\n");
  }

  SUBCASE("v1 and v2 round trips") {
    for (const auto& addr : addresses) {
      for (const int version : {1, 2}) {
        CAPTURE(version);
        CAPTURE(addr.src_string());
        const auto header = version == 1 ? wire::build_proxy_v1(addr) : wire::build_proxy_v2(addr);
        const auto r = wire::parse_proxy_header(header);
        REQUIRE(r.status == wire::pp_status::ok);
        CHECK(r.version == version);
        CHECK(r.length == header.size());
        CHECK_FALSE(r.local);
        CHECK(r.addr.family == addr.family);
        CHECK(r.addr.src == addr.src);
        CHECK(r.addr.dst == addr.dst);
        CHECK(r.addr.src_port == addr.src_port);
        CHECK(r.addr.dst_port == addr.dst_port);
      }
    }
  }

  SUBCASE("v2 LOCAL carries no addresses") {
    const auto header = wire::build_proxy_v2(addresses[0], true);
    CHECK(header == v2_raw(0x20, 0x00, ""));
    const auto r = wire::parse_proxy_header(header);
    REQUIRE(r.status == wire::pp_status::ok);
    CHECK(r.local);
    CHECK(r.addr.family == wire::pp_family::unknown);
    CHECK(r.length == 16);
  }

  SUBCASE("v2 bytes match the spec layout") {
    CHECK(wire::build_proxy_v2(tcp4(bytes16{192, 0, 2, 1}, 1234, bytes16{198, 51, 100, 7}, 443)) ==
          v2_raw(0x21, 0x11, tcp4_block));
  }
}

TEST_SUITE_END();
