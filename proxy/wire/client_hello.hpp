#pragma once
// TLS ClientHello reader for the TLS-passthrough listener: it peeks at the first bytes a client
// sent, without consuming them, to learn the SNI host name and the ALPN protocols (RFC 8446
// section 4.1.2, RFC 6066 section 3, RFC 7301 section 3.1). Pure: no I/O, no OpenSSL; the only
// allocations are the returned strings and, when the hello spans several TLS records, one
// reassembly buffer. Fed with untrusted bytes and fuzzed.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace wk::wire {

enum class hello_status {
  need_more,  // a prefix of what could still be a valid ClientHello: read more and call again
  ok,
  not_tls,    // the first record is not a TLS handshake record (e.g. plaintext HTTP)
  malformed,  // TLS records, but not a well-formed ClientHello
  too_large,  // the ClientHello is longer than `max_hello_bytes`
};

struct client_hello {
  hello_status status = hello_status::need_more;
  std::string sni;                   // server_name host_name, lower-cased, trailing dot removed;
                                     // empty when the extension is absent
  std::vector<std::string> alpn;     // ALPN protocol names in the client's order; empty if absent
  std::uint16_t legacy_version = 0;  // from the handshake body (0x0303 for TLS 1.2 and 1.3)
  std::size_t bytes_needed = 0;      // need_more: a lower bound on the total input size needed
  std::string reason;                // short, for the log, when status is not ok
};

// Parses the ClientHello at the start of `bytes` (everything read from the client so far; bytes
// after the hello are ignored). The hello may be split across several handshake records and the
// input may stop anywhere: a truncated but so-far valid input gives need_more, never malformed.
// `max_hello_bytes` bounds the handshake message body length (too_large beyond it). The result
// holds no references into `bytes`.
client_hello parse_client_hello(std::string_view bytes, std::size_t max_hello_bytes = 16384);

}  // namespace wk::wire
