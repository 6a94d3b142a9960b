#include "routing/normalize.hpp"

#include "core/ascii.hpp"
#include "routing/host_match.hpp"
#include "routing/uri_text.hpp"

#include <cstddef>
#include <optional>

namespace wk::routing {
namespace {

// True when every '%' starts a "%" HEXDIG HEXDIG triplet (RFC 3986 section 2.1).
bool valid_percent_encoding(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      continue;
    }
    if (i + 2 >= s.size() || hex_value(s[i + 1]) < 0 || hex_value(s[i + 2]) < 0) {
      return false;
    }
    i += 2;
  }
  return true;
}

bool has_triplet(std::string_view s, std::string_view upper_triplet) {
  for (std::size_t pos = s.find('%'); pos != std::string_view::npos; pos = s.find('%', pos + 1)) {
    if (core::iequals(s.substr(pos, 3), upper_triplet)) {
      return true;
    }
  }
  return false;
}

// Paths that servers decoding "%2F"/"%5C", accepting "\" as a separator, or merging "//" would
// split into different segments than we do.
bool has_ambiguous_slash(std::string_view raw_path) {
  return raw_path.find('\\') != std::string_view::npos ||
         raw_path.find("//") != std::string_view::npos || has_triplet(raw_path, "%2F") ||
         has_triplet(raw_path, "%5C");
}

void fail(normalize_result& r, std::string_view reason) {
  r.status = target_status::bad_target;
  r.reason.assign(reason);
}

// Fills path, query and the flags of `r.value` from "path[?query]" (path may be empty: "/").
void set_path_and_query(normalize_result& r, std::string_view path_and_query,
                        std::string& scratch) {
  target& t = r.value;
  const auto q = path_and_query.find('?');
  std::string_view raw_path = path_and_query.substr(0, q);
  if (q != std::string_view::npos) {
    t.has_query = true;
    append_canonical_escapes(path_and_query.substr(q + 1), false, t.query);
  }
  t.raw_path.assign(raw_path.empty() ? std::string_view("/") : raw_path);
  scratch.clear();
  append_canonical_escapes(t.raw_path, true, scratch);
  remove_dot_segments(scratch, t.path);
  t.slash_ambiguous = has_ambiguous_slash(t.raw_path);
}

// "host:port" with a port (RFC 9112 section 3.2.3).
bool has_port(std::string_view authority) {
  const auto close = authority.rfind(']');
  const auto colon = authority.rfind(':');
  return colon != std::string_view::npos && (close == std::string_view::npos || colon > close);
}

}  // namespace

normalize_result normalize_target(std::string_view raw, std::string_view method) {
  normalize_result r;
  std::string scratch;
  normalize_target(raw, method, r, scratch);
  return r;
}

void normalize_target(std::string_view raw, std::string_view method, normalize_result& r,
                      std::string& scratch) {
  target& t = r.value;
  r.status = target_status::ok;
  r.reason.clear();
  t.form = target_form::origin;
  t.authority.clear();
  t.raw_path.clear();
  t.path.clear();
  t.query.clear();
  t.has_query = false;
  t.slash_ambiguous = false;
  for (const char c : raw) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u == 0x7F) {
      fail(r, "invalid character in request target");
      return;
    }
    if (c == '#') {
      fail(r, "fragment in request target");
      return;
    }
  }
  if (raw.empty()) {
    fail(r, "empty request target");
    return;
  }

  if (method == "CONNECT") {
    // RFC 9112 section 3.2.3: CONNECT takes authority-form only.
    if (!has_port(raw) || !normalize_host(raw)) {
      fail(r, "invalid authority-form target");
      return;
    }
    t.form = target_form::authority;
    t.authority = core::to_lower(raw);
    t.raw_path = "/";
    t.path = "/";
    return;
  }

  if (raw == "*") {
    if (method != "OPTIONS") {
      fail(r, "asterisk-form target is only allowed with OPTIONS");
      return;
    }
    t.form = target_form::asterisk;
    t.raw_path = "/";
    t.path = "/";
    return;
  }

  std::string_view path_and_query;
  if (raw.front() == '/') {
    t.form = target_form::origin;
    path_and_query = raw;
  } else {
    // absolute-form (RFC 9112 section 3.2.2), http and https only.
    const auto sep = raw.find("://");
    if (sep == std::string_view::npos || !(core::iequals(raw.substr(0, sep), "http") ||
                                           core::iequals(raw.substr(0, sep), "https"))) {
      fail(r, "invalid request target");
      return;
    }
    const std::string_view rest = raw.substr(sep + 3);
    const auto end = rest.find_first_of("/?");
    const std::string_view authority = rest.substr(0, end);
    if (authority.find('@') != std::string_view::npos) {
      fail(r, "userinfo in request target");
      return;
    }
    if (authority.empty() || !normalize_host(authority)) {
      fail(r, "invalid authority in request target");
      return;
    }
    t.form = target_form::absolute;
    t.authority = core::to_lower(authority);
    path_and_query = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
  }

  if (!valid_percent_encoding(path_and_query)) {
    fail(r, "invalid percent-encoding");
    return;
  }
  set_path_and_query(r, path_and_query, scratch);
}

std::string remove_dot_segments(std::string_view path) {
  std::string out;
  remove_dot_segments(path, out);
  return out;
}

void remove_dot_segments(std::string_view path, std::string& out) {
  // Index-based form of the RFC's input buffer: linear time, no re-copying of the input.
  out.clear();
  out.reserve(path.size());
  const auto pop_segment = [&out] {
    const auto slash = out.rfind('/');
    out.erase(slash == std::string::npos ? 0 : slash);
  };
  std::string_view in = path;
  while (!in.empty()) {
    if (in.starts_with("../")) {  // A
      in.remove_prefix(3);
    } else if (in.starts_with("./")) {  // A; NOLINT(bugprone-branch-clone): one branch per step
      in.remove_prefix(2);
    } else if (in.starts_with("/./")) {  // B: "/./" -> "/"
      in.remove_prefix(2);
    } else if (in == "/.") {  // B: "/." -> "/"
      in = "/";
    } else if (in.starts_with("/../")) {  // C: "/../" -> "/", drop the last output segment
      in.remove_prefix(3);
      pop_segment();
    } else if (in == "/..") {  // C
      in = "/";
      pop_segment();
    } else if (in == "." || in == "..") {  // D
      in = {};
    } else {  // E: move the first segment, with its leading "/", to the output
      const auto next = in.find('/', 1);
      const auto n = next == std::string_view::npos ? in.size() : next;
      out.append(in.substr(0, n));
      in.remove_prefix(n);
    }
  }
}

}  // namespace wk::routing
