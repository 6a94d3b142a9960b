#include "routing/route.hpp"

#include "routing/uri_text.hpp"

#include <algorithm>
#include <cstddef>
#include <optional>

namespace wk::routing {
namespace {

// How a lenient server reads `decoded` (output of canonical_escapes(path, true)): "%2F", "%5C" and
// "\" as
// "/", runs of "/" merged, then dot segments resolved.
std::string slash_lenient_reading(std::string_view decoded) {
  std::string out;
  out.reserve(decoded.size());
  for (std::size_t i = 0; i < decoded.size(); ++i) {
    char c = decoded[i];
    if (c == '%' && i + 2 < decoded.size() &&
        (decoded.substr(i, 3) == "%2F" || decoded.substr(i, 3) == "%5C")) {
      c = '/';
      i += 2;
    } else if (c == '\\') {
      c = '/';
    }
    if (c == '/' && !out.empty() && out.back() == '/') {
      continue;
    }
    out.push_back(c);
  }
  return remove_dot_segments(out);
}

decision reject(decision d, unsigned status, std::string reason) {
  d.kind = route_kind::reject;
  d.status = status;
  d.reason = std::move(reason);
  d.token.clear();
  d.upstream_target.clear();
  return d;
}

// The path and query of an absolute-form target exactly as sent ("/" when the path is empty).
std::string absolute_form_origin_target(const target& t, std::string_view raw) {
  std::string out = t.raw_path;
  if (t.has_query) {
    out.push_back('?');
    out.append(raw.substr(raw.find('?') + 1));
  }
  return out;
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
  std::optional<std::string> header_host;
  if (facts.host_present) {
    header_host = normalize_host(facts.host);
    if (header_host) {
      d.host = *header_host;
    }
  }

  // a. Rejections, in the order a client would want to hear about them.
  if (facts.method == "CONNECT") {
    return reject(std::move(d), 405, "CONNECT is not supported");
  }
  normalize_result normalized = normalize_target(facts.target, facts.method);
  if (normalized.status != target_status::ok) {
    return reject(std::move(d), 400, std::move(normalized.reason));
  }
  const target& t = normalized.value;
  // RFC 9112 section 3.2: a 1.1 request without Host, or with an invalid one, is a 400 even
  // when an absolute-form target makes the header irrelevant.
  if (facts.http11 && !facts.host_present) {
    return reject(std::move(d), 400, "missing Host header");
  }
  if (facts.host_present && !header_host) {
    return reject(std::move(d), 400, "invalid Host header");
  }
  if (t.form == target_form::absolute) {
    // RFC 9112 section 3.2.2: the target's authority replaces Host.
    auto authority_host = normalize_host(t.authority);
    if (!authority_host) {
      return reject(std::move(d), 400, "invalid authority in request target");
    }
    d.host = std::move(*authority_host);
    d.authority = t.authority;
  }

  // b. Targets that a backend could read as inside the prefix area when we do not, or the
  // other way round: rejected, never "fixed".
  const std::string_view prefix = table.prefix;
  const bool in_prefix = t.path.starts_with(prefix);
  if (t.form == target_form::origin || t.form == target_form::absolute) {
    const std::string decoded = canonical_escapes(t.raw_path, true);
    if (!in_prefix && decoded.starts_with(prefix)) {
      return reject(std::move(d), 400, "ambiguous request target");
    }
    if (t.slash_ambiguous && (in_prefix || slash_lenient_reading(decoded).starts_with(prefix))) {
      return reject(std::move(d), 400, "ambiguous request target");
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
      d.token = std::string(remainder);
      d.origin_target = t.form == target_form::absolute
                            ? absolute_form_origin_target(t, facts.target)
                            : std::string(facts.target);
      d.upstream_target = t.path;
      if (t.has_query) {
        d.upstream_target.push_back('?');
        d.upstream_target.append(t.query);
      }
      return d;
    }
  }

  // d. Everything else goes to the origin as sent.
  d.kind = route_kind::origin;
  switch (t.form) {
  case target_form::absolute:
    d.upstream_target = absolute_form_origin_target(t, facts.target);
    break;
  case target_form::origin:
  case target_form::asterisk:
  case target_form::authority:
    d.upstream_target = std::string(facts.target);
    break;
  }
  return d;
}

}  // namespace wk::routing
