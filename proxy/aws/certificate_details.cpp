#include "aws/certificate_details.hpp"

#include "aws/xml.hpp"
#include "config/upstream_url.hpp"
#include "core/ascii.hpp"

#include <boost/json.hpp>
#include <boost/property_tree/ptree.hpp>

#include <algorithm>
#include <utility>

namespace wk::aws {

namespace json = boost::json;
namespace pt = boost::property_tree;

namespace {

// In messages, the element the paths of the XML helpers start from.
constexpr std::string_view root_doc = "ManagedCertificateDetails";

// ---------------------------------------------------------------------------------------------
// Small text helpers

std::string in_quotes(std::string_view s) {
  return "\"" + std::string(s) + "\"";
}

// ---------------------------------------------------------------------------------------------
// The input, format-independent: what JSON and XML both reduce to before validation.

struct raw_entry {
  std::optional<std::string> domain;
  std::optional<std::string> redirect_from;
  std::optional<std::string> redirect_to;
};

struct raw_details {
  std::optional<std::string> arn;
  std::optional<std::string> status;
  std::optional<std::string> token_host;
  std::optional<std::vector<raw_entry>> entries;  // std::nullopt: no ValidationTokenDetails
};

constexpr std::string_view not_details = "not get-managed-certificate-details output: ";

// ---------------------------------------------------------------------------------------------
// JSON (the AWS CLI's default output)

std::string kind_name(const json::value& v) {
  switch (v.kind()) {
  case json::kind::object:
    return "an object";
  case json::kind::array:
    return "an array";
  case json::kind::string:
    return "a string";
  case json::kind::int64:
  case json::kind::uint64:
  case json::kind::double_:
    return "a number";
  case json::kind::bool_:
    return "a boolean";
  case json::kind::null:
    return "null";
  }
  return "a value";
}

// An optional string member: absent or null is std::nullopt, another type is an error.
std::optional<std::string> json_string(const json::object& o, std::string_view name,
                                       const std::string& path, std::vector<std::string>& errors) {
  const json::value* v = o.if_contains(name);
  if (v == nullptr || v->is_null()) {
    return std::nullopt;
  }
  if (!v->is_string()) {
    errors.push_back(path + ": expected a string, got " + kind_name(*v));
    return std::nullopt;
  }
  const json::string& s = v->get_string();
  return non_empty(std::string_view(s.data(), s.size()));
}

std::optional<raw_details> read_json(std::string_view text, std::vector<std::string>& errors) {
  // Boost.JSON parses without recursion; the limit (its default, made explicit) keeps the
  // answer to absurd input the same as for XML.
  json::parse_options options;
  options.max_depth = max_input_depth;
  json::parser parser(json::storage_ptr(), options);
  boost::system::error_code ec;
  const std::size_t used = parser.write(text.data(), text.size(), ec);
  if (ec == json::error::too_deep) {
    errors.push_back("JSON nested deeper than " + std::to_string(max_input_depth) + " levels (" +
                     position(text, used) + "): refused (certificate details nest 4 deep)");
    return std::nullopt;
  }
  if (ec) {
    errors.push_back("invalid JSON at " + position(text, used) + ": " + ec.message());
    return std::nullopt;
  }
  const json::value root = parser.release();
  const json::object* top = root.if_object();
  if (top == nullptr) {
    errors.push_back(std::string(not_details) + "expected a JSON object, got " + kind_name(root));
    return std::nullopt;
  }
  const json::value* details_value = top->if_contains("ManagedCertificateDetails");
  if (details_value == nullptr) {
    errors.push_back(std::string(not_details) + "no ManagedCertificateDetails");
    return std::nullopt;
  }
  const json::object* details = details_value->if_object();
  if (details == nullptr) {
    errors.push_back("ManagedCertificateDetails: expected an object, got " +
                     kind_name(*details_value));
    return std::nullopt;
  }

  raw_details out;
  out.arn = json_string(*details, "CertificateArn", "CertificateArn", errors);
  out.status = json_string(*details, "CertificateStatus", "CertificateStatus", errors);
  out.token_host = json_string(*details, "ValidationTokenHost", "ValidationTokenHost", errors);
  const json::value* list_value = details->if_contains("ValidationTokenDetails");
  if (list_value == nullptr || list_value->is_null()) {
    return out;
  }
  const json::array* list = list_value->if_array();
  if (list == nullptr) {
    errors.push_back("ValidationTokenDetails: expected an array, got " + kind_name(*list_value));
    return std::nullopt;
  }
  out.entries.emplace();
  for (std::size_t i = 0; i < list->size(); ++i) {
    const std::string path = "ValidationTokenDetails[" + std::to_string(i) + "]";
    const json::value& item = (*list)[i];
    const json::object* entry = item.if_object();
    if (entry == nullptr) {
      errors.push_back(path + ": expected an object, got " + kind_name(item));
      out.entries->emplace_back();  // keeps the indexes of later entries right
      continue;
    }
    raw_entry e;
    e.domain = json_string(*entry, "Domain", path + ".Domain", errors);
    e.redirect_from = json_string(*entry, "RedirectFrom", path + ".RedirectFrom", errors);
    e.redirect_to = json_string(*entry, "RedirectTo", path + ".RedirectTo", errors);
    out.entries->push_back(std::move(e));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// XML (the GetManagedCertificateDetails API response)

std::optional<raw_details> read_xml(std::string_view text, std::vector<std::string>& errors) {
  const auto doc = parse_xml(text, "certificate details nest 6 deep", errors);
  if (!doc) {
    return std::nullopt;
  }
  const root_element root = root_of(*doc);
  const pt::ptree* node = root.node;
  std::string root_name = root.name;
  if (node == nullptr) {
    errors.push_back(std::string(not_details) + "no XML element");
    return std::nullopt;
  }
  if (const auto error = as_error(root)) {
    // What the API answers instead, e.g. AccessDenied or EntityNotFound.
    errors.push_back("AWS returned an error instead of certificate details: " +
                     (error->code.empty() ? std::string("unknown error") : error->code) +
                     (error->message.empty() ? "" : ": " + error->message));
    return std::nullopt;
  }
  // Tolerated roots: the API response, its Result element, or the payload itself.
  if (root_name == "GetManagedCertificateDetailsResponse") {
    if (const pt::ptree* result =
            xml_child(*node, "GetManagedCertificateDetailsResult",
                      "GetManagedCertificateDetailsResponse", errors, root_doc)) {
      node = result;
      root_name = "GetManagedCertificateDetailsResult";
    }
  }
  if (root_name != "ManagedCertificateDetails") {
    if (root_name != "GetManagedCertificateDetailsResult" &&
        root_name != "GetManagedCertificateDetailsResponse") {
      errors.push_back(std::string(not_details) + "root element <" + root_name +
                       ">, expected <ManagedCertificateDetails> or "
                       "<GetManagedCertificateDetailsResult>");
      return std::nullopt;
    }
    node = xml_child(*node, "ManagedCertificateDetails", root_name, errors, root_doc);
    if (node == nullptr) {
      errors.push_back(std::string(not_details) + "no ManagedCertificateDetails");
      return std::nullopt;
    }
  }

  const pt::ptree& details = *node;
  raw_details out;
  out.arn = xml_text(details, "CertificateArn", "", errors, root_doc);
  out.status = xml_text(details, "CertificateStatus", "", errors, root_doc);
  out.token_host = xml_text(details, "ValidationTokenHost", "", errors, root_doc);
  const pt::ptree* list = xml_child(details, "ValidationTokenDetails", "", errors, root_doc);
  if (list == nullptr) {
    return out;
  }
  if (!has_elements(*list) && !core::trim(list->data()).empty()) {
    errors.emplace_back(
        "ValidationTokenDetails: expected <ValidationTokenDetail> elements, got text");
    return std::nullopt;
  }
  out.entries.emplace();
  // Every child element is one entry, whatever its name (<ValidationTokenDetail>, <member>).
  std::size_t i = 0;
  for (const auto& child : *list) {
    if (!is_element(child)) {
      continue;
    }
    const std::string path = "ValidationTokenDetails[" + std::to_string(i++) + "]";
    raw_entry e;
    e.domain = xml_text(child.second, "Domain", path, errors, root_doc);
    e.redirect_from = xml_text(child.second, "RedirectFrom", path, errors, root_doc);
    e.redirect_to = xml_text(child.second, "RedirectTo", path, errors, root_doc);
    out.entries->push_back(std::move(e));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Validation, the same for both formats

void check_status(const raw_details& raw, certificate_details& out) {
  if (!raw.status) {
    out.warnings.emplace_back("no CertificateStatus: cannot tell whether ACM is waiting for these "
                              "tokens");
  } else if (*raw.status == "pending-validation" || *raw.status == "issued") {
    // The tokens are in use: for the first issue, or for renewals.
  } else if (*raw.status == "inactive" || *raw.status == "expired" ||
             *raw.status == "validation-timed-out" || *raw.status == "revoked" ||
             *raw.status == "failed") {
    out.warnings.push_back("certificate status is " + *raw.status +
                           ", not pending-validation or issued: ACM is not waiting for these "
                           "tokens (once the certificate is requested again, import the new ones)");
  } else {
    out.warnings.push_back("unknown certificate status " + in_quotes(*raw.status));
  }
  if (raw.token_host && *raw.token_host == "cloudfront") {
    out.warnings.emplace_back(
        "ValidationTokenHost is cloudfront: the tenant's tokens are served by "
        "CloudFront itself: this proxy is not needed once DNS points to "
        "CloudFront");
  } else if (raw.token_host && *raw.token_host != "self-hosted") {
    out.warnings.push_back("unknown ValidationTokenHost " + in_quotes(*raw.token_host));
  }
}

void check_entry(const raw_entry& e, const std::string& path, std::string_view prefix,
                 certificate_details& out) {
  if (!e.domain) {
    out.errors.push_back(path + ": no Domain");
    return;
  }
  const std::string domain = core::to_lower(*e.domain);
  if (domain.starts_with("*.") || domain == "*") {
    out.warnings.push_back(path + ": skipped " + in_quotes(*e.domain) +
                           ": HTTP validation does not support wildcards (ACM validates them "
                           "by DNS)");
    return;
  }
  if (!config::is_host_name(domain)) {
    out.errors.push_back(path + ".Domain: invalid domain " + in_quotes(*e.domain));
    return;
  }
  if (!e.redirect_from || !e.redirect_to) {
    const char* missing = !e.redirect_from && !e.redirect_to ? "RedirectFrom and RedirectTo"
                          : !e.redirect_from                 ? "RedirectFrom"
                                                             : "RedirectTo";
    out.warnings.push_back(path + ": skipped " + domain + ": no " + missing);
    return;
  }
  bool ok = true;
  const auto from = config::parse_redirect_from(*e.redirect_from, prefix);
  std::string file;
  if (const auto* reason = std::get_if<std::string>(&from)) {
    out.errors.push_back(path + ".RedirectFrom: " + *reason);
    ok = false;
  } else {
    const auto& parts = std::get<config::redirect_from_parts>(from);
    file = parts.file;
    if (parts.domain != domain) {
      out.errors.push_back(path + ".RedirectFrom: the host " + in_quotes(parts.domain) +
                           " is not the Domain " + in_quotes(*e.domain));
      ok = false;
    }
  }
  const auto to = config::parse_redirect_to(*e.redirect_to);
  if (const auto* reason = std::get_if<std::string>(&to)) {
    out.errors.push_back(path + ".RedirectTo: " + *reason);
    ok = false;
  }
  if (!ok) {
    return;
  }
  // Written with their schemes, whether AWS gave them or not (see config::with_default_scheme).
  std::string redirect_from = config::with_default_scheme(*e.redirect_from, "http");
  std::string redirect_to = config::with_default_scheme(*e.redirect_to, "https");
  for (const imported_token& t : out.tokens) {
    const auto other = config::parse_redirect_from(t.redirect_from, prefix);
    if (t.domain == domain && std::get<config::redirect_from_parts>(other).file == file) {
      if (t.redirect_to == redirect_to) {
        out.warnings.push_back(path + ": skipped a duplicate of " + in_quotes(t.redirect_from));
      } else {
        out.errors.push_back(path + ": another entry has the same RedirectFrom " +
                             in_quotes(t.redirect_from) + " with a different RedirectTo");
      }
      return;
    }
  }
  out.tokens.push_back(
      imported_token{domain, std::move(redirect_from), std::move(redirect_to), {}});
}

}  // namespace

std::string count_of(std::size_t n, std::string_view noun) {
  return std::to_string(n) + " " + std::string(noun) + (n == 1 ? "" : "s");
}

certificate_details parse_certificate_details(std::string_view text, std::string_view prefix) {
  certificate_details out;
  std::string_view body = text;
  if (body.starts_with("\xEF\xBB\xBF")) {  // a UTF-8 byte order mark, as some editors write
    body.remove_prefix(3);
  }
  body = core::trim(body);
  std::optional<raw_details> raw;
  if (body.empty()) {
    out.errors.push_back(std::string(not_details) + "the input is empty");
    return out;
  }
  if (body.front() == '{') {
    raw = read_json(body, out.errors);
  } else if (body.front() == '<') {
    raw = read_xml(body, out.errors);
  } else {
    out.errors.push_back(std::string(not_details) +
                         "expected JSON (aws ... --output json) or the API's XML");
  }
  if (!raw) {
    return out;
  }
  out.certificate_arn = raw->arn.value_or("");
  out.status = raw->status.value_or("");
  out.token_host = raw->token_host.value_or("");
  check_status(*raw, out);
  if (!raw->entries) {
    out.errors.emplace_back("no ValidationTokenDetails: nothing to import");
    return out;
  }
  for (std::size_t i = 0; i < raw->entries->size(); ++i) {
    check_entry((*raw->entries)[i], "ValidationTokenDetails[" + std::to_string(i) + "]", prefix,
                out);
  }
  if (out.tokens.empty() && out.errors.empty()) {
    out.errors.push_back(raw->entries->empty()
                             ? std::string("ValidationTokenDetails is empty: nothing to import")
                             : "no importable token among the " +
                                   count_of(raw->entries->size(), "entry") + " given");
  }
  return out;
}

std::vector<std::string> token_domains(const std::vector<imported_token>& tokens) {
  std::vector<std::string> out;
  for (const imported_token& t : tokens) {
    if (std::find(out.begin(), out.end(), t.domain) == out.end()) {
      out.push_back(t.domain);
    }
  }
  return out;
}

void assign_tenant(certificate_details& details, std::string_view tenant_id) {
  details.tenant = tenant_id.empty() ? details.certificate_arn : std::string(tenant_id);
  for (imported_token& t : details.tokens) {
    t.tenant = details.tenant;
  }
}

}  // namespace wk::aws
