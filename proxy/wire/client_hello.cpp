#include "wire/client_hello.hpp"

#include "core/ascii.hpp"

#include <bitset>
#include <utility>

namespace wk::wire {
namespace {

constexpr std::uint8_t record_handshake = 0x16;
constexpr std::size_t record_header_size = 5;
constexpr std::size_t max_record_size = 16384;  // 2^14, RFC 8446 section 5.1
constexpr std::size_t handshake_header_size = 4;
constexpr std::uint8_t handshake_client_hello = 1;
constexpr std::uint16_t ext_server_name = 0;
constexpr std::uint16_t ext_alpn = 16;

std::uint8_t byte_at(std::string_view s, std::size_t i) {
  return static_cast<std::uint8_t>(s[i]);
}

std::string hex_byte(std::uint8_t b) {
  constexpr std::string_view digits = "0123456789abcdef";
  return {'0', 'x', digits[b >> 4], digits[b & 0xf]};
}

client_hello fail(hello_status status, std::string reason) {
  client_hello r;
  r.status = status;
  r.reason = std::move(reason);
  return r;
}

client_hello need_more(std::size_t bytes_needed) {
  client_hello r;
  r.bytes_needed = bytes_needed;
  r.reason = "truncated";
  return r;
}

// Bounds-checked reads over a complete handshake body: running out is malformed, not need_more.
class reader {
public:
  explicit reader(std::string_view s) : rest_(s) {}

  [[nodiscard]] bool empty() const { return rest_.empty(); }

  bool u8(std::size_t& v) {
    if (rest_.empty()) {
      return false;
    }
    v = byte_at(rest_, 0);
    rest_.remove_prefix(1);
    return true;
  }

  bool u16(std::size_t& v) {
    if (rest_.size() < 2) {
      return false;
    }
    v = std::size_t{byte_at(rest_, 0)} << 8 | byte_at(rest_, 1);
    rest_.remove_prefix(2);
    return true;
  }

  bool take(std::size_t n, std::string_view& out) {
    if (rest_.size() < n) {
      return false;
    }
    out = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return true;
  }

  // A vector with a one- or two-byte length prefix (RFC 8446 section 3.4).
  bool vec8(std::string_view& out) {
    std::size_t n = 0;
    return u8(n) && take(n, out);
  }
  bool vec16(std::string_view& out) {
    std::size_t n = 0;
    return u16(n) && take(n, out);
  }

private:
  std::string_view rest_;
};

bool host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';  // '_' is not LDH but appears in real names
}

// A plausible DNS name (RFC 1035 section 2.3.4 sizes), lower-cased with any trailing dot
// removed; empty when implausible.
std::string dns_name(std::string_view name) {
  if (name.empty() || name.size() > 255) {
    return {};
  }
  if (name.back() == '.') {
    name.remove_suffix(1);
  }
  std::string out;
  std::size_t label = 0;
  for (const char c : name) {
    if (c == '.') {
      if (label == 0) {
        return {};
      }
      label = 0;
    } else if (!host_char(c) || ++label > 63) {
      return {};
    }
    out.push_back(core::to_lower(c));
  }
  return label == 0 ? std::string{} : out;
}

// RFC 6066 section 3. Entry types other than host_name have no defined layout, so they cannot
// be skipped: they are malformed (as OpenSSL treats them).
bool parse_server_name(std::string_view data, client_hello& r) {
  reader ext(data);
  std::string_view list;
  if (!ext.vec16(list) || !ext.empty() || list.empty()) {
    return false;
  }
  reader entries(list);
  while (!entries.empty()) {
    std::size_t type = 0;
    std::string_view name;
    if (!entries.u8(type) || type != 0 || !entries.vec16(name)) {
      return false;
    }
    std::string host = dns_name(name);
    if (host.empty()) {
      return false;
    }
    if (r.sni.empty()) {
      r.sni = std::move(host);
    }
  }
  return true;
}

// RFC 7301 section 3.1: a non-empty list of non-empty names.
bool parse_alpn(std::string_view data, client_hello& r) {
  reader ext(data);
  std::string_view list;
  if (!ext.vec16(list) || !ext.empty() || list.empty()) {
    return false;
  }
  reader names(list);
  while (!names.empty()) {
    std::string_view name;
    if (!names.vec8(name) || name.empty()) {
      return false;
    }
    r.alpn.emplace_back(name);
  }
  return true;
}

// The ClientHello body once complete (RFC 8446 section 4.1.2; TLS 1.2's is the same shape).
client_hello parse_body(std::string_view body) {
  const auto bad = [](std::string reason) {
    return fail(hello_status::malformed, std::move(reason));
  };
  client_hello r;
  reader in(body);
  std::string_view random;
  std::string_view session_id;
  std::string_view cipher_suites;
  std::string_view compression;
  std::size_t version = 0;
  if (!in.u16(version) || !in.take(32, random)) {
    return bad("short client_hello");
  }
  r.legacy_version = static_cast<std::uint16_t>(version);
  if (!in.vec8(session_id) || session_id.size() > 32) {
    return bad("bad session_id");
  }
  if (!in.vec16(cipher_suites) || cipher_suites.size() < 2 || cipher_suites.size() % 2 != 0) {
    return bad("bad cipher_suites");
  }
  if (!in.vec8(compression) || compression.empty()) {
    return bad("bad compression_methods");
  }
  if (in.empty()) {  // no extensions (allowed before TLS 1.3)
    r.status = hello_status::ok;
    return r;
  }
  std::string_view extensions;
  if (!in.vec16(extensions) || !in.empty()) {
    return bad("extensions length does not match the client_hello");
  }
  std::bitset<65536> seen;  // 8 KiB on the stack: linear duplicate check, no allocation
  reader exts(extensions);
  while (!exts.empty()) {
    std::size_t type = 0;
    std::string_view data;
    if (!exts.u16(type) || !exts.vec16(data)) {
      return bad("extension overruns the extensions block");
    }
    if (seen.test(type)) {
      return bad("duplicate extension " + std::to_string(type));  // RFC 8446 section 4.2
    }
    seen.set(type);
    if (type == ext_server_name && !parse_server_name(data, r)) {
      return bad("bad server_name extension");
    }
    if (type == ext_alpn && !parse_alpn(data, r)) {
      return bad("bad application_layer_protocol_negotiation extension");
    }
  }
  r.status = hello_status::ok;
  return r;
}

}  // namespace

client_hello parse_client_hello(std::string_view bytes, std::size_t max_hello_bytes) {
  std::string joined;        // reassembly buffer, used only when the hello spans several records
  std::string_view hs;       // handshake bytes so far: a view into `bytes` or into `joined`
  std::size_t hs_total = 0;  // header + body length, once the handshake header is in
  std::size_t pos = 0;
  // Handshake bytes still missing: a lower bound while the handshake header is incomplete.
  const auto missing = [&] {
    return hs_total != 0 ? hs_total - hs.size() : handshake_header_size - hs.size();
  };
  for (bool first = true;; first = false) {
    const std::string_view rec = bytes.substr(pos);
    if (!rec.empty() && byte_at(rec, 0) != record_handshake) {
      const std::uint8_t type = byte_at(rec, 0);
      if (!first) {  // RFC 8446 section 5.1: nothing may interleave with a handshake message
        return fail(hello_status::malformed,
                    "record type " + hex_byte(type) + " before the client_hello completed");
      }
      return fail(hello_status::not_tls,
                  type >= 'A' && type <= 'Z'
                      ? "looks like plaintext HTTP"
                      : "record type " + hex_byte(type) + " is not handshake");
    }
    if (rec.size() >= 2 && byte_at(rec, 1) != 3) {
      return fail(first ? hello_status::not_tls : hello_status::malformed,
                  "record version major " + hex_byte(byte_at(rec, 1)) + " is not 0x03");
    }
    if (rec.size() < record_header_size) {
      return need_more(pos + record_header_size + missing());
    }
    const std::size_t len = std::size_t{byte_at(rec, 3)} << 8 | byte_at(rec, 4);
    if (len > max_record_size) {
      return fail(hello_status::malformed, "record length " + std::to_string(len) + " > 16384");
    }
    if (len == 0) {  // RFC 8446 section 5.1: no zero-length handshake fragments
      return fail(hello_status::malformed, "empty handshake record");
    }
    const std::string_view fragment = rec.substr(record_header_size, len);
    pos += record_header_size + fragment.size();
    if (first) {
      hs = fragment;  // the common case: the whole hello in one record, zero-copy
    } else {
      if (joined.empty()) {
        joined.assign(hs);
      }
      joined.append(fragment);
      hs = joined;
    }
    if (hs_total == 0 && hs.size() >= handshake_header_size) {
      if (byte_at(hs, 0) != handshake_client_hello) {
        return fail(hello_status::malformed,
                    "handshake type " + hex_byte(byte_at(hs, 0)) + " is not client_hello");
      }
      const std::size_t body =
          std::size_t{byte_at(hs, 1)} << 16 | std::size_t{byte_at(hs, 2)} << 8 | byte_at(hs, 3);
      if (body > max_hello_bytes) {
        return fail(hello_status::too_large, "client_hello length " + std::to_string(body) + " > " +
                                                 std::to_string(max_hello_bytes));
      }
      hs_total = handshake_header_size + body;
    }
    if (hs_total != 0 && hs.size() >= hs_total) {
      return parse_body(hs.substr(handshake_header_size, hs_total - handshake_header_size));
    }
    if (fragment.size() < len) {  // the record itself is cut short
      const std::size_t in_record = len - fragment.size();
      return need_more(pos + missing() + (missing() > in_record ? record_header_size : 0));
    }
  }
}

}  // namespace wk::wire
