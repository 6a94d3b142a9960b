#include "routing/route.hpp"

#include "routing/uri_text.hpp"

#include <algorithm>
#include <cstddef>
#include <optional>

namespace wk::routing {
namespace {

// How a lenient server reads `decoded` (output of canonical_escapes(path, true)): "%2F", "%5C" and
// "\" as "/", runs of "/" merged, then dot segments resolved. Into `out`, with `work`.
void slash_lenient_reading(std::string_view decoded, std::string& work, std::string& out) {
  work.clear();
  work.reserve(decoded.size());
  for (std::size_t i = 0; i < decoded.size(); ++i) {
    char c = decoded[i];
    if (c == '%' && i + 2 < decoded.size() &&
        (decoded.substr(i, 3) == "%2F" || decoded.substr(i, 3) == "%5C")) {
      c = '/';
      i += 2;
    } else if (c == '\\') {
      c = '/';
    }
    if (c == '/' && !work.empty() && work.back() == '/') {
      continue;
    }
    work.push_back(c);
  }
  remove_dot_segments(work, out);
}

void reject(decision& d, unsigned status, std::string_view reason) {
  d.kind = route_kind::reject;
  d.status = status;
  d.reason.assign(reason);
  d.token.clear();
  d.upstream_target.clear();
}

// The path and query of an absolute-form target exactly as sent ("/" when the path is empty).
void absolute_form_origin_target(const target& t, std::string_view raw, std::string& out) {
  out.assign(t.raw_path);
  if (t.has_query) {
    out.push_back('?');
    out.append(raw.substr(raw.find('?') + 1));
  }
}

}  // namespace

bool is_safe_token(std::string_view segment) {
  if (segment.empty() || segment == "." || segment == "..") {
    return false;
  }
  return std::all_of(segment.begin(), segment.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

decision route(const route_table& table, const request_facts& facts) {
  decision d;
  route_scratch scratch;
  route(table, facts, d, scratch);
  return d;
}

void route(const route_table& table, const request_facts& facts, decision& d,
           route_scratch& scratch) {
  d.clear();
  bool host_valid = false;
  if (facts.host_present) {
    host_valid = normalize_host(facts.host, d.host);
    if (!host_valid) {
      d.host.clear();
    }
  }

  // a. Rejections, in the order a client would want to hear about them.
  if (facts.method == "CONNECT") {
    reject(d, 405, "CONNECT is not supported");
    return;
  }
  normalize_result& normalized = scratch.normalized;
  normalize_target(facts.target, facts.method, normalized, scratch.work);
  if (normalized.status != target_status::ok) {
    reject(d, 400, normalized.reason);
    return;
  }
  const target& t = normalized.value;
  // RFC 9112 section 3.2: a 1.1 request without Host, or with an invalid one, is a 400 even
  // when an absolute-form target makes the header irrelevant.
  if (facts.http11 && !facts.host_present) {
    reject(d, 400, "missing Host header");
    return;
  }
  if (facts.host_present && !host_valid) {
    reject(d, 400, "invalid Host header");
    return;
  }
  if (t.form == target_form::absolute) {
    // RFC 9112 section 3.2.2: the target's authority replaces Host.
    if (!normalize_host(t.authority, scratch.work)) {
      reject(d, 400, "invalid authority in request target");
      return;
    }
    d.host.assign(scratch.work);
    d.authority.assign(t.authority);
  }

  // b. Targets that a backend could read as inside the prefix area when we do not, or the
  // other way round: rejected, never "fixed".
  const std::string_view prefix = table.prefix;
  const bool in_prefix = t.path.starts_with(prefix);
  if (t.form == target_form::origin || t.form == target_form::absolute) {
    std::string& decoded = scratch.decoded;
    decoded.clear();
    append_canonical_escapes(t.raw_path, true, decoded);
    if (!in_prefix && decoded.starts_with(prefix)) {
      reject(d, 400, "ambiguous request target");
      return;
    }
    if (t.slash_ambiguous) {
      slash_lenient_reading(decoded, scratch.work, scratch.lenient);
      if (in_prefix || scratch.lenient.starts_with(prefix)) {
        reject(d, 400, "ambiguous request target");
        return;
      }
    }
  }

  // c. The validation route: every condition must hold.
  if (in_prefix) {
    const std::string_view remainder = std::string_view(t.path).substr(prefix.size());
    const bool method_allowed =
        std::find(table.methods.begin(), table.methods.end(), facts.method) != table.methods.end();
    if (is_safe_token(remainder) && method_allowed && table.domains.allows(d.host) &&
        !facts.has_body && !facts.upgrade) {
      d.kind = route_kind::validation;
      d.token.assign(remainder);
      if (t.form == target_form::absolute) {
        absolute_form_origin_target(t, facts.target, d.origin_target);
      } else {
        d.origin_target.assign(facts.target);
      }
      d.upstream_target.assign(t.path);
      if (t.has_query) {
        d.upstream_target.push_back('?');
        d.upstream_target.append(t.query);
      }
      return;
    }
  }

  // d. Everything else goes to the origin as sent.
  d.kind = route_kind::origin;
  switch (t.form) {
  case target_form::absolute:
    absolute_form_origin_target(t, facts.target, d.upstream_target);
    break;
  case target_form::origin:
  case target_form::asterisk:
  case target_form::authority:
    d.upstream_target.assign(facts.target);
    break;
  }
}

}  // namespace wk::routing
