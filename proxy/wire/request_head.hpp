#pragma once
// Strict checks of a request's raw head bytes (RFC 9112 sections 2-5) before Beast parses them,
// and of the framing fields after. Beast accepts a few things a proxy in front of unknown
// servers must not (obs-fold, odd Transfer-Encoding lists, bare LF inside chunk framing that it
// waits on): these functions make every such case a clear 4xx before anything reaches a
// backend. Pure: no I/O, fed with untrusted bytes (fuzzed, see fuzz/).

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace wk::wire {

enum class head_status {
  incomplete,       // no final empty line yet: read more
  complete,         // a well-formed head: `skip` + `length` bytes
  invalid,          // 400
  bad_version,      // HTTP/x.y other than 1.0 and 1.1: 505
  target_too_long,  // request line over the target limit: 414
  too_large,        // head bytes or field count over the limit: 431
};

struct head_limits {
  std::size_t header_bytes = 32 * 1024;  // the whole head, request line included
  std::size_t target_bytes = 8 * 1024;
  std::size_t field_count = 100;
};

// Where the parts of a scanned head are, as offsets into the bytes given to scan() (the leading
// empty lines included), so that the head is parsed once: the scanner checks each line and
// notes its parts; the caller reads them from those bytes (http/request_reader.hpp).
struct field_span {
  std::uint32_t name_at = 0;
  std::uint32_t name_size = 0;
  std::uint32_t value_at = 0;  // without the whitespace around the value
  std::uint32_t value_size = 0;
};

struct head_layout {
  std::uint32_t method_at = 0;
  std::uint32_t method_size = 0;
  std::uint32_t target_at = 0;
  std::uint32_t target_size = 0;
  unsigned version = 0;            // 10 or 11
  std::vector<field_span> fields;  // in order; its capacity is reused
};

struct head_scan {
  head_status status = head_status::incomplete;
  std::size_t skip = 0;     // leading empty lines (CRLF) to drop before the request line
  std::size_t length = 0;   // when complete: head bytes after `skip`, final CRLF included
  std::string_view reason;  // static text when not complete or incomplete
};

// Scans the bytes received so far for one request head. Call again with the same bytes plus
// whatever arrived since (the prefix must not change): complete lines are checked once, so the
// total work stays linear. Rules (each one a 400 unless noted):
// - at most a few empty lines (CRLF) before the request line are ignored (RFC 9112 section 2.2);
// - every line ends in CRLF: a bare LF or a CR not followed by LF is rejected;
// - request line = method SP target SP "HTTP/" DIGIT "." DIGIT, single spaces, method a token,
//   target visible ASCII only; another version -> bad_version; a long target -> target_too_long;
// - field line = token ":" value: no whitespace before the colon, no obs-fold (a line starting
//   with SP or HTAB), value of HTAB, SP, VCHAR and obs-text only (no NUL or other controls);
// - more than limits.field_count fields or limits.header_bytes bytes -> too_large.
class request_head_scanner {
public:
  explicit request_head_scanner(head_limits limits) : limits_(limits) {}
  // The same, noting the parts of each line checked in `layout` (cleared here). Once scan()
  // says complete, `layout` describes the whole head; offsets count from the start of the bytes.
  request_head_scanner(head_limits limits, head_layout& layout)
      : limits_(limits), layout_(&layout) {
    layout.fields.clear();
  }

  head_scan scan(std::string_view bytes);

private:
  head_limits limits_;
  head_layout* layout_ = nullptr;
  std::size_t skip_ = 0;       // empty lines seen before the request line
  std::size_t next_ = 0;       // offset of the first line not yet checked
  std::size_t fields_ = 0;     // field lines checked so far
  bool request_line_ = false;  // the request line was checked
};

enum class coding_verdict {
  chunked,      // exactly one coding, "chunked" (any case)
  malformed,    // bad list syntax, parameters, chunked repeated or not last: 400
  unsupported,  // a well-formed list naming another coding: 501
};

// Checks the values of every Transfer-Encoding field of a request, in order, read as one list.
// A proxy that does not decode transfer codings can only frame `chunked` itself (RFC 9112
// section 6.1); anything else is refused rather than passed on with ambiguous framing.
coding_verdict check_transfer_encoding(const std::vector<std::string_view>& values);

// True when `s` can be sent as a field value as is: HTAB, SP, VCHAR, obs-text; no CR, LF, NUL or
// other controls (no response splitting through a value built from config or input).
bool is_safe_field_value(std::string_view s);

}  // namespace wk::wire
