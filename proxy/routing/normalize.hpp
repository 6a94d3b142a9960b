#pragma once
// Request-target normalization (RFC 3986 section 6.2.2 and 5.2.4), used only to decide where a
// request goes. Pure functions: no I/O, no allocation beyond the returned strings (none with
// the out-parameter forms once their strings have the room).

#include <string>
#include <string_view>

namespace wk::routing {

enum class target_form { origin, absolute, asterisk, authority };

struct target {
  target_form form = target_form::origin;
  std::string authority;  // absolute-form only: "host[:port]" as sent (lower-cased host)
  std::string raw_path;   // the path exactly as sent ("/" for asterisk/authority forms)
  std::string path;       // normalized: unreserved %XX decoded, other %xx upper-cased, dot
                          // segments removed
  std::string query;      // without the '?', hex upper-cased; empty when none
  bool has_query = false;
  // The path also differs once "%2F", "%5C", "\" are read as "/" and "//" runs are merged,
  // the ways some servers read it: such a path could route differently at the origin.
  bool slash_ambiguous = false;
};

enum class target_status {
  ok,
  bad_target,  // invalid characters, invalid percent-encoding, fragment, bad absolute URI (400)
};

struct normalize_result {
  target_status status = target_status::ok;
  std::string reason;  // short, for the 400 body and the log
  target value;
};

// Parses and normalizes a request target. `method` selects which forms are allowed:
// asterisk-form only with OPTIONS, authority-form only with CONNECT.
normalize_result normalize_target(std::string_view raw, std::string_view method);
// The same into `r`, reusing the capacity of its strings; `scratch` holds an intermediate.
void normalize_target(std::string_view raw, std::string_view method, normalize_result& r,
                      std::string& scratch);

// RFC 3986 section 5.2.4 remove_dot_segments on an already-decoded path.
std::string remove_dot_segments(std::string_view path);
// The same into `out` (cleared first; `out` must not overlap `path`).
void remove_dot_segments(std::string_view path, std::string& out);

}  // namespace wk::routing
