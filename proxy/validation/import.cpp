#include "validation/import.hpp"

#include "cli_help.hpp"

#include "config/env_subst.hpp"
#include "config/upstream_url.hpp"
#include "routing/host_match.hpp"

#include <boost/json.hpp>
#include <boost/property_tree/ptree.hpp>
#include <boost/property_tree/xml_parser.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>
#include <utility>

namespace wk::validation {

namespace json = boost::json;
namespace pt = boost::property_tree;
namespace fs = std::filesystem;

namespace {

// ---------------------------------------------------------------------------------------------
// Small text helpers

char lower_char(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), lower_char);
  return out;
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && is_space(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

std::string in_quotes(std::string_view s) {
  return "\"" + std::string(s) + "\"";
}

std::string join(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (const std::string& s : items) {
    if (!out.empty()) {
      out += separator;
    }
    out += s;
  }
  return out;
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

// Empty values count as absent: AWS leaves fields out rather than sending them empty.
std::optional<std::string> non_empty(std::string_view s) {
  if (s.empty()) {
    return std::nullopt;
  }
  return std::string(s);
}

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

// 1-based line and column of byte `offset` in `text`.
std::string position(std::string_view text, std::size_t offset) {
  offset = std::min(offset, text.size());
  std::size_t line = 1;
  std::size_t column = 1;
  for (std::size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
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

// The element name without a namespace prefix ("ns:Domain" -> "Domain").
std::string_view local_name(std::string_view name) {
  const auto colon = name.find(':');
  return colon == std::string_view::npos ? name : name.substr(colon + 1);
}

// property_tree keeps attributes and comments as children named "<xmlattr>", "<xmlcomment>".
bool is_element(const pt::ptree::value_type& child) {
  return !child.first.starts_with("<xml");
}

// The only child element called `name`; nullptr when absent. More than one is an error.
// `parent_path` names the parent in messages ("" for ManagedCertificateDetails itself).
const pt::ptree* xml_child(const pt::ptree& parent, std::string_view name,
                           const std::string& parent_path, std::vector<std::string>& errors) {
  const pt::ptree* found = nullptr;
  for (const auto& child : parent) {
    if (is_element(child) && local_name(child.first) == name) {
      if (found != nullptr) {
        errors.push_back(
            (parent_path.empty() ? std::string("ManagedCertificateDetails") : parent_path) +
            ": more than one <" + std::string(name) + ">");
        return found;
      }
      found = &child.second;
    }
  }
  return found;
}

bool has_elements(const pt::ptree& node) {
  return std::any_of(node.begin(), node.end(), is_element);
}

// The text of an optional child element; an element with element children is an error.
std::optional<std::string> xml_text(const pt::ptree& parent, std::string_view name,
                                    const std::string& parent_path,
                                    std::vector<std::string>& errors) {
  const pt::ptree* node = xml_child(parent, name, parent_path, errors);
  if (node == nullptr) {
    return std::nullopt;
  }
  if (has_elements(*node)) {
    errors.push_back((parent_path.empty() ? "" : parent_path + ".") + std::string(name) +
                     ": expected text, got elements");
    return std::nullopt;
  }
  return non_empty(trim(node->data()));
}

std::optional<raw_details> read_xml(std::string_view text, std::vector<std::string>& errors) {
  // Before the parser, which recurses once per level (see xml_too_deep).
  if (const auto at = xml_too_deep(text, max_input_depth)) {
    errors.push_back("XML nested deeper than " + std::to_string(max_input_depth) + " elements (" +
                     position(text, *at) +
                     "): refused before parsing (certificate details nest 6 deep)");
    return std::nullopt;
  }
  pt::ptree doc;
  try {
    std::istringstream in{std::string(text)};
    pt::read_xml(in, doc, pt::xml_parser::no_comments);
  } catch (const pt::xml_parser_error& e) {
    errors.push_back("invalid XML at line " + std::to_string(e.line()) + ": " + e.message());
    return std::nullopt;
  }
  const pt::ptree* node = nullptr;
  std::string root_name;
  for (const auto& child : doc) {
    if (is_element(child)) {
      node = &child.second;
      root_name = local_name(child.first);
      break;
    }
  }
  if (node == nullptr) {
    errors.push_back(std::string(not_details) + "no XML element");
    return std::nullopt;
  }
  if (root_name == "ErrorResponse") {
    // What the API answers instead, e.g. AccessDenied or EntityNotFound.
    std::vector<std::string> ignored;
    const pt::ptree* error = xml_child(*node, "Error", "", ignored);
    const pt::ptree& from = error != nullptr ? *error : *node;
    const auto code = xml_text(from, "Code", "", ignored);
    const auto message = xml_text(from, "Message", "", ignored);
    errors.push_back("AWS returned an error instead of certificate details: " +
                     code.value_or("unknown error") + (message ? ": " + *message : ""));
    return std::nullopt;
  }
  // Tolerated roots: the API response, its Result element, or the payload itself.
  if (root_name == "GetManagedCertificateDetailsResponse") {
    if (const pt::ptree* result = xml_child(*node, "GetManagedCertificateDetailsResult",
                                            "GetManagedCertificateDetailsResponse", errors)) {
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
    node = xml_child(*node, "ManagedCertificateDetails", root_name, errors);
    if (node == nullptr) {
      errors.push_back(std::string(not_details) + "no ManagedCertificateDetails");
      return std::nullopt;
    }
  }

  const pt::ptree& details = *node;
  raw_details out;
  out.arn = xml_text(details, "CertificateArn", "", errors);
  out.status = xml_text(details, "CertificateStatus", "", errors);
  out.token_host = xml_text(details, "ValidationTokenHost", "", errors);
  const pt::ptree* list = xml_child(details, "ValidationTokenDetails", "", errors);
  if (list == nullptr) {
    return out;
  }
  if (!has_elements(*list) && !trim(list->data()).empty()) {
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
    e.domain = xml_text(child.second, "Domain", path, errors);
    e.redirect_from = xml_text(child.second, "RedirectFrom", path, errors);
    e.redirect_to = xml_text(child.second, "RedirectTo", path, errors);
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
  const std::string domain = lower(*e.domain);
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
  for (const imported_token& t : out.tokens) {
    const auto other = config::parse_redirect_from(t.redirect_from, prefix);
    if (t.domain == domain && std::get<config::redirect_from_parts>(other).file == file) {
      if (t.redirect_to == *e.redirect_to) {
        out.warnings.push_back(path + ": skipped a duplicate of " + in_quotes(t.redirect_from));
      } else {
        out.errors.push_back(path + ": another entry has the same RedirectFrom " +
                             in_quotes(t.redirect_from) + " with a different RedirectTo");
      }
      return;
    }
  }
  out.tokens.push_back(imported_token{domain, *e.redirect_from, *e.redirect_to});
}

// ---------------------------------------------------------------------------------------------
// YAML output

// A double-quoted YAML scalar. "$" is doubled because the loader substitutes ${VAR} in values.
std::string yaml_quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
    } else if (c == '$') {
      out += '$';
    }
    out += c;
  }
  out += '"';
  return out;
}

std::string tokens_block(const std::vector<imported_token>& tokens, std::string_view eol) {
  std::string out = "tokens:";
  out += eol;
  for (const imported_token& t : tokens) {
    out += "  - domain: " + t.domain;
    out += eol;
    out += "    redirect_from: " + yaml_quoted(t.redirect_from);
    out += eol;
    out += "    redirect_to: " + yaml_quoted(t.redirect_to);
    out += eol;
  }
  return out;
}

std::string count_of(std::size_t n, std::string_view noun) {
  return std::to_string(n) + " " + std::string(noun) + (n == 1 ? "" : "s");
}

// ---------------------------------------------------------------------------------------------
// Config text surgery. YAML is not parsed here (config/ is the only place that knows YAML): the
// edits are line-based, limited to shapes that are unambiguous, and the result is validated by
// the real loader before anything is written.

struct line {
  std::size_t begin = 0;  // offset of the first character
  std::size_t end = 0;    // offset of the line break ("\r\n" or "\n") or of the end of text
  std::size_t next = 0;   // offset of the next line
};

std::vector<line> split_lines(std::string_view text) {
  std::vector<line> lines;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t nl = text.find('\n', pos);
    line l;
    l.begin = pos;
    if (nl == std::string_view::npos) {
      l.end = text.size();
      l.next = text.size();
    } else {
      l.end = (nl > pos && text[nl - 1] == '\r') ? nl - 1 : nl;
      l.next = nl + 1;
    }
    lines.push_back(l);
    pos = l.next;
  }
  return lines;
}

std::size_t indent_of(std::string_view s) {
  std::size_t n = 0;
  while (n < s.size() && s[n] == ' ') {
    ++n;
  }
  return n;
}

bool blank_or_comment(std::string_view s) {
  const std::string_view t = trim(s);
  return t.empty() || t.front() == '#';
}

// After `key:` at column `indent`: the rest of the line, or std::nullopt when the line is not
// that key.
std::optional<std::string_view> key_rest(std::string_view s, std::size_t indent,
                                         std::string_view key) {
  if (indent_of(s) != indent) {
    return std::nullopt;
  }
  s.remove_prefix(indent);
  if (!s.starts_with(key) || s.size() <= key.size() || s[key.size()] != ':') {
    return std::nullopt;
  }
  s.remove_prefix(key.size() + 1);
  if (!s.empty() && s.front() != ' ' && s.front() != '\t') {
    return std::nullopt;
  }
  return s;
}

// The text of a value after `key:`, without a trailing comment (only for plain single-line
// values; a '#' inside quotes is not expected in the values looked at here).
std::string_view value_part(std::string_view rest) {
  rest = trim(rest);
  if (rest.starts_with("#")) {
    return {};
  }
  const auto hash = rest.find(" #");
  return trim(rest.substr(0, hash));
}

// One past the last line of the value of the key on line `key` (at column `indent`): more
// indented lines, sequence items at the same column ("key:\n- a"), and blank and comment lines
// between them. Blank and comment lines at the end are left out: they usually introduce what
// follows.
std::size_t value_end(std::string_view text, const std::vector<line>& lines, std::size_t key,
                      std::size_t indent) {
  std::size_t last = key;
  for (std::size_t i = key + 1; i < lines.size(); ++i) {
    const std::string_view s = text.substr(lines[i].begin, lines[i].end - lines[i].begin);
    if (blank_or_comment(s)) {
      continue;
    }
    const std::size_t n = indent_of(s);
    const std::string_view body = s.substr(n);
    const bool item = body == "-" || body.starts_with("- ");
    // A multi-line flow collection may close at the key's column.
    const bool closing = body.starts_with("]") || body.starts_with("}");
    if (n > indent || (n == indent && (item || closing))) {
      last = i;
      continue;
    }
    break;
  }
  return last + 1;
}

std::optional<std::size_t> find_key(std::string_view text, const std::vector<line>& lines,
                                    std::size_t from, std::size_t to, std::size_t indent,
                                    std::string_view key) {
  for (std::size_t i = from; i < to; ++i) {
    if (key_rest(text.substr(lines[i].begin, lines[i].end - lines[i].begin), indent, key)) {
      return i;
    }
  }
  return std::nullopt;
}

// A plain or quoted scalar as written in a list; std::nullopt when it is something else (a
// nested collection, an anchor, a multi-line value...).
std::optional<std::string> simple_scalar(std::string_view s) {
  s = trim(s);
  if (s.empty()) {
    return std::nullopt;
  }
  if (s.front() == '"' || s.front() == '\'') {
    const char q = s.front();
    std::string out;
    std::size_t i = 1;
    for (; i < s.size(); ++i) {
      if (s[i] == q) {
        if (q == '\'' && i + 1 < s.size() && s[i + 1] == '\'') {
          out += '\'';
          ++i;
          continue;
        }
        break;
      }
      if (q == '"' && s[i] == '\\') {
        return std::nullopt;  // escapes never appear in domain names
      }
      out += s[i];
    }
    if (i >= s.size() || !trim(s.substr(i + 1)).empty()) {
      return std::nullopt;
    }
    return out;
  }
  if (std::string_view("[]{}-|>&*!%@`,?:#").find(s.front()) != std::string_view::npos ||
      s.find(": ") != std::string_view::npos || s.back() == ':') {
    return std::nullopt;
  }
  return std::string(s);
}

// Where and how new domains go into the allow-list.
struct domain_list {
  std::vector<std::string> items;  // as written (quotes removed)
  std::size_t insert_at = 0;       // offset of the insertion
  enum class style { flow, block } kind = style::flow;
  bool empty_flow = false;  // "[]": no separator before the first new item
  std::string item_prefix;  // block style: the text before each item, e.g. "  - "
};

// A flow list on one line: "[a, "b", c]  # comment".
std::variant<domain_list, std::string> flow_list(std::string_view text, std::size_t at,
                                                 std::size_t end) {
  domain_list out;
  out.kind = domain_list::style::flow;
  std::size_t item_start = at + 1;
  char quote = 0;
  for (std::size_t i = at + 1; i < end; ++i) {
    const char c = text[i];
    if (quote != 0) {
      if (c == quote) {
        quote = 0;
      }
      continue;
    }
    if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '[' || c == '{' || c == '#') {
      return std::string("it is not a simple list on one line");
    } else if (c == ',' || c == ']') {
      const std::string_view item = trim(text.substr(item_start, i - item_start));
      if (!item.empty()) {
        const auto value = simple_scalar(item);
        if (!value) {
          return "its item " + std::string(item) + " is not a simple value";
        }
        out.items.push_back(*value);
      }
      item_start = i + 1;
      if (c == ']') {
        std::size_t last = i;  // insert right after the last non-space character before ']'
        while (last > at + 1 && is_space(text[last - 1])) {
          --last;
        }
        out.insert_at = last;
        out.empty_flow = text[last - 1] == '[' || text[last - 1] == ',';
        return out;
      }
    }
  }
  return std::string("it is not a simple list on one line");
}

// A block list: "- a" lines below the key.
std::variant<domain_list, std::string> block_list(std::string_view text,
                                                  const std::vector<line>& lines, std::size_t first,
                                                  std::size_t end) {
  domain_list out;
  out.kind = domain_list::style::block;
  std::optional<std::size_t> column;
  for (std::size_t i = first; i < end; ++i) {
    const std::string_view s = text.substr(lines[i].begin, lines[i].end - lines[i].begin);
    if (blank_or_comment(s)) {
      continue;
    }
    const std::size_t n = indent_of(s);
    std::string_view body = s.substr(n);
    if (!body.starts_with("- ") || (column && *column != n)) {
      return std::string("it is not a simple list of \"- name\" lines");
    }
    column = n;
    body.remove_prefix(2);
    const auto hash = body.find(" #");
    const auto value = simple_scalar(body.substr(0, hash));
    if (!value) {
      return "its item " + std::string(trim(body)) + " is not a simple value";
    }
    out.items.push_back(*value);
    out.insert_at = lines[i].next;
    out.item_prefix = std::string(n, ' ') + "- ";
  }
  if (!column) {
    return std::string("it has no items");
  }
  return out;
}

// The allow-list to extend: the top-level `domains:`, else `domains:` inside `validation:`.
std::variant<domain_list, std::string> find_domain_list(std::string_view text,
                                                        const std::vector<line>& lines) {
  std::optional<std::size_t> key = find_key(text, lines, 0, lines.size(), 0, "domains");
  std::size_t indent = 0;
  if (!key) {
    const auto validation = find_key(text, lines, 0, lines.size(), 0, "validation");
    if (!validation) {
      return std::string("the config has no domains list");
    }
    const line& vl = lines[*validation];
    if (!value_part(*key_rest(text.substr(vl.begin, vl.end - vl.begin), 0, "validation")).empty()) {
      return std::string("validation is not a block mapping");
    }
    const std::size_t end = value_end(text, lines, *validation, 0);
    for (std::size_t i = *validation + 1; i < end; ++i) {
      const std::string_view s = text.substr(lines[i].begin, lines[i].end - lines[i].begin);
      if (!blank_or_comment(s)) {
        indent = indent_of(s);
        break;
      }
    }
    key = find_key(text, lines, *validation + 1, end, indent, "domains");
    if (!key || indent == 0) {
      return std::string("the config has no domains list");
    }
  }
  const line& kl = lines[*key];
  const std::string_view s = text.substr(kl.begin, kl.end - kl.begin);
  const std::string_view rest = *key_rest(s, indent, "domains");
  const std::string_view value = value_part(rest);
  if (value.empty()) {
    return block_list(text, lines, *key + 1, value_end(text, lines, *key, indent));
  }
  if (value.front() == '[') {
    const std::size_t at = kl.begin + static_cast<std::size_t>(value.data() - s.data());
    return flow_list(text, at, kl.end);
  }
  return std::string("it is not a list");
}

struct edit {
  std::size_t at = 0;
  std::size_t length = 0;
  std::string replacement;
};

// ---------------------------------------------------------------------------------------------
// The command line

// The text lives in docs/wkproxy.1.md, with the man page; errors repeat its first line.
constexpr std::string_view usage = wk::cli::help_tokens_import;
constexpr std::string_view usage_line = usage.substr(0, usage.find('\n') + 1);

struct options {
  std::string input;
  std::optional<std::string> write;  // --write CONFIG
  std::string prefix{default_token_prefix};
};

// std::nullopt: exit with `code`.
std::optional<options> parse_args(int argc, char** argv, int& code) {
  options opt;
  bool have_input = false;
  for (int i = 0; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&](std::string_view name, std::string& out) {
      if (a.size() > name.size() && a.starts_with(name) && a[name.size()] == '=') {
        out = std::string(a.substr(name.size() + 1));
        return true;
      }
      if (i + 1 >= argc) {
        std::cerr << "wkproxy: " << name << " needs a value\n" << usage_line;
        code = 2;
        return false;
      }
      out = argv[++i];
      return true;
    };
    if (a == "-h" || a == "--help") {
      std::cout << usage;
      code = 0;
      return std::nullopt;
    }
    if (a == "--write" || a.starts_with("--write=")) {
      std::string path;
      if (!value("--write", path)) {
        return std::nullopt;
      }
      if (path.empty() || path == "-") {
        std::cerr << "wkproxy: --write needs a file name\n" << usage_line;
        code = 2;
        return std::nullopt;
      }
      opt.write = std::move(path);
    } else if (a == "--prefix" || a.starts_with("--prefix=")) {
      if (!value("--prefix", opt.prefix)) {
        return std::nullopt;
      }
    } else if (a.size() > 1 && a.front() == '-') {
      std::cerr << "wkproxy: unknown option " << a << "\n" << usage_line;
      code = 2;
      return std::nullopt;
    } else if (have_input) {
      std::cerr << "wkproxy: only one input file, got " << opt.input << " and " << a << "\n"
                << usage_line;
      code = 2;
      return std::nullopt;
    } else {
      opt.input = std::string(a);
      have_input = true;
    }
  }
  if (!have_input) {
    std::cerr << "wkproxy: tokens import needs a FILE (or - for stdin)\n" << usage_line;
    code = 2;
    return std::nullopt;
  }
  if (!opt.prefix.starts_with("/") || !opt.prefix.ends_with("/")) {
    std::cerr << R"(wkproxy: --prefix must start and end with "/", got ")" << opt.prefix << "\"\n"
              << usage_line;
    code = 2;
    return std::nullopt;
  }
  return opt;
}

// The whole of a file or of stdin ("-"); the reason on failure.
std::variant<std::string, std::string> read_input(const std::string& path) {
  constexpr std::size_t max_bytes = std::size_t{16} * 1024 * 1024;  // far more than any real answer
  std::string text;
  if (path == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      return std::variant<std::string, std::string>(std::in_place_index<1>, "is a directory");
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return std::variant<std::string, std::string>(
          std::in_place_index<1>, std::string("cannot read: ") + std::strerror(errno));
    }
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (in.bad()) {
      return std::variant<std::string, std::string>(std::in_place_index<1>, "read error");
    }
  }
  if (text.size() > max_bytes) {
    return std::variant<std::string, std::string>(std::in_place_index<1>,
                                                  "larger than 16 MiB: not certificate details");
  }
  return std::variant<std::string, std::string>(std::in_place_index<0>, std::move(text));
}

// Replaces `target` with `text` atomically: a temporary file in the same directory, the old
// file's mode (and owner, when allowed), fsync, rename. Symbolic links are followed, so the
// link stays and its target is replaced. The reason on failure (the old file is untouched).
std::optional<std::string> write_atomically(const std::string& path, std::string_view text) {
  std::error_code ec;
  const fs::path target = fs::canonical(path, ec);
  if (ec) {
    return "cannot resolve the path: " + ec.message();
  }
  struct stat st {};
  if (::stat(target.c_str(), &st) != 0) {
    return std::string("cannot stat: ") + std::strerror(errno);
  }
  std::string temp =
      (target.parent_path() / ("." + target.filename().string() + ".wkproxy-XXXXXX")).string();
  const int fd = ::mkstemp(temp.data());
  if (fd < 0) {
    return "cannot create a temporary file next to it: " + std::string(std::strerror(errno));
  }
  auto fail = [&](const std::string& what) {
    const int err = errno;
    ::close(fd);
    ::unlink(temp.c_str());
    return what + ": " + std::strerror(err);
  };
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail("cannot write " + temp);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fchown(fd, st.st_uid, st.st_gid) != 0) {
    // Best effort: only root may give a file away; the mode below is what matters.
  }
  if (::fchmod(fd, st.st_mode & 07777) != 0) {
    return fail("cannot set the mode of " + temp);
  }
  if (::fsync(fd) != 0) {
    return fail("cannot sync " + temp);
  }
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    return "cannot write " + temp + ": " + std::strerror(err);
  }
  if (::rename(temp.c_str(), target.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    return "cannot replace the file: " + std::string(std::strerror(err));
  }
  return std::nullopt;
}

int write_config(const options& opt, const certificate_details& details) {
  const std::string& path = *opt.write;
  auto read = read_input(path);
  if (const auto* reason = std::get_if<1>(&read)) {
    std::cerr << "wkproxy: " << path << ": " << *reason << "\n";
    return 1;
  }
  const std::string& old_text = std::get<0>(read);
  const config::env_lookup env = config::process_env();
  const config_rewrite rewrite = rewrite_config(old_text, details.tokens, env);
  for (const std::string& w : rewrite.warnings) {
    std::cerr << "warning: " << path << ": " << w << "\n";
  }
  const config::load_result loaded = config::load_string(rewrite.text, path, env);
  if (!loaded.errors.empty()) {
    std::cerr << "wkproxy: " << path
              << ": not written: with the imported tokens it would not be a valid config "
                 "(lines below are those of the updated text):\n";
    for (const config::error& e : loaded.errors) {
      std::cerr << e.to_string() << "\n";
    }
    return 1;
  }
  if (rewrite.text == old_text) {
    std::cout << path << ": already up to date (" << count_of(details.tokens.size(), "token")
              << ")\n";
    return 0;
  }
  if (auto problem = write_atomically(path, rewrite.text)) {
    std::cerr << "wkproxy: " << path << ": not written: " << *problem << "\n";
    return 1;
  }
  std::cout << "wrote " << count_of(details.tokens.size(), "token") << " to " << path << " ("
            << (rewrite.replaced ? "replaced the tokens block" : "added a tokens block") << ")";
  if (!rewrite.added_domains.empty()) {
    std::cout << "; added domains: " << join(rewrite.added_domains, ", ");
  }
  std::cout << "\n";
  return 0;
}

// ---------------------------------------------------------------------------------------------
// XML nesting, measured before parsing

// The character classes of RapidXML (the lookup tables of Boost.PropertyTree's copy of it).
bool xml_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

// node_name_pred: anything but white space, '/', '>', '?' and NUL. Quotes, '<' and '=' are name
// characters: <a"b> is an element called a"b.
bool xml_name_char(char c) {
  return c != '\0' && !xml_space(c) && c != '/' && c != '>' && c != '?';
}

// attribute_name_pred: a name character but not '<', '=' or '!'. Quotes are name characters
// here too: in <a b"c='d'> the attribute is b"c, and the value starts at the apostrophe.
bool xml_attribute_name_char(char c) {
  return xml_name_char(c) && c != '<' && c != '=' && c != '!';
}

}  // namespace

// Boost.PropertyTree parses XML with RapidXML, which recurses once per element level (and
// read_xml() once more per level to build the tree), so a few tens of thousands of levels
// overflow the stack. The depth is therefore measured first, by a loop that follows RapidXML's
// grammar as read_xml(..., no_comments) runs it (RapidXML flags 0: declarations, comments,
// DOCTYPEs and processing instructions are skipped, not kept), step for step:
// - text up to the next '<' (an entity never contains one);
// - "<?" ... "?>": the XML declaration or a processing instruction;
// - "<!--" ... "-->" and "<![CDATA[" ... "]]>", whatever they contain;
// - "<!DOCTYPE" + white space ... ">", where a '>' between counted '[' and ']' does not end
//   it; any other "<!" ends at the first '>' (brackets do not count there);
// - "</" name white space ">" closes the open element;
// - "<" name, then attributes (name, '=', a value in "..." or '...' where '>', '/' and '<' are
//   plain data), then ">" opens an element or "/>" closes it at once.
// A simpler scanner that toggled on every quote or skipped every "[...]" would miss elements the
// parser sees (<a b"c='d'>, <!x[>) and so under-count. Where RapidXML throws (a malformed tag,
// the end of the text, a NUL byte: its input ends there), the scan stops too, at the same point,
// no deeper than the parser got. Where RapidXML throws later than the scan could tell (a bad
// character reference), the scan reads on: it can count more levels than the parser builds,
// never fewer. The unit tests parse each tricky case with Boost.PropertyTree and compare, so a
// Boost upgrade that changes the grammar shows there.
std::optional<std::size_t> xml_too_deep(std::string_view text, std::size_t limit) {
  // read_xml() hands RapidXML the text with a NUL after it: the first NUL byte is its end.
  text = text.substr(0, text.find('\0'));
  const std::size_t n = text.size();
  const auto at = [&](std::size_t k) { return k < n ? text[k] : '\0'; };
  const auto rest_starts = [&](std::size_t k, std::string_view s) {
    return k <= n && text.substr(k).starts_with(s);
  };
  std::size_t i = text.starts_with("\xEF\xBB\xBF") ? 3 : 0;  // parse_bom
  // Moves past the next `end`; false when there is none (RapidXML: "unexpected end of data").
  const auto skip_past = [&](std::string_view end) {
    const std::size_t found = text.find(end, i);
    if (found == std::string_view::npos) {
      return false;
    }
    i = found + end.size();
    return true;
  };
  const auto skip_while = [&](bool (*pred)(char)) {
    while (i < n && pred(text[i])) {
      ++i;
    }
  };
  std::size_t depth = 0;  // elements open
  for (;;) {
    if (depth == 0) {
      // The document's top level: white space between nodes; the end; anything but '<' (also
      // "</", an element without a name) is an error.
      skip_while(xml_space);
      if (at(i) != '<') {
        return std::nullopt;
      }
    } else {
      // An element's content: text, then a closing tag or another node.
      while (i < n && text[i] != '<') {
        ++i;
      }
      if (i >= n) {
        return std::nullopt;
      }
      if (at(i + 1) == '/') {
        i += 2;
        skip_while(xml_name_char);
        skip_while(xml_space);
        if (at(i) != '>') {
          return std::nullopt;
        }
        ++i;
        --depth;
        continue;
      }
    }
    const std::size_t open = i;
    ++i;  // '<'
    if (at(i) == '?') {
      ++i;
      if (!skip_past("?>")) {
        return std::nullopt;
      }
      continue;
    }
    if (at(i) == '!') {
      if (rest_starts(i, "!--")) {
        i += 3;
        if (!skip_past("-->")) {
          return std::nullopt;
        }
      } else if (rest_starts(i, "![CDATA[")) {
        i += 8;
        if (!skip_past("]]>")) {
          return std::nullopt;
        }
      } else if (rest_starts(i, "!DOCTYPE") && xml_space(at(i + 8))) {
        i += 9;
        while (at(i) != '>') {
          if (i >= n) {
            return std::nullopt;
          }
          if (text[i++] == '[') {
            for (std::size_t brackets = 1; brackets > 0; ++i) {
              if (i >= n) {
                return std::nullopt;
              }
              brackets += text[i] == '[' ? 1 : 0;
              brackets -= text[i] == ']' ? 1 : 0;
            }
          }
        }
        ++i;
      } else {
        ++i;
        if (!skip_past(">")) {
          return std::nullopt;
        }
      }
      continue;
    }
    // An element: one level deeper, even if it closes itself.
    const std::size_t name = i;
    skip_while(xml_name_char);
    if (i == name) {
      return std::nullopt;
    }
    if (depth + 1 > limit) {
      return open;
    }
    skip_while(xml_space);
    while (i < n && xml_attribute_name_char(text[i])) {
      skip_while(xml_attribute_name_char);
      skip_while(xml_space);
      if (at(i) != '=') {
        return std::nullopt;
      }
      ++i;
      skip_while(xml_space);
      const char quote = at(i);
      if (quote != '"' && quote != '\'') {
        return std::nullopt;
      }
      ++i;
      if (!skip_past(std::string_view(&quote, 1))) {
        return std::nullopt;
      }
      skip_while(xml_space);
    }
    if (at(i) == '>') {
      ++i;
      ++depth;
    } else if (at(i) == '/' && at(i + 1) == '>') {
      i += 2;
    } else {
      return std::nullopt;
    }
  }
}

certificate_details parse_certificate_details(std::string_view text, std::string_view prefix) {
  certificate_details out;
  std::string_view body = text;
  if (body.starts_with("\xEF\xBB\xBF")) {  // a UTF-8 byte order mark, as some editors write
    body.remove_prefix(3);
  }
  body = trim(body);
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

std::string render_tokens_yaml(const certificate_details& details) {
  std::string out = "# from get-managed-certificate-details: status " +
                    (details.status.empty() ? std::string("unknown") : details.status) + ", " +
                    count_of(details.tokens.size(), "token") + "\n";
  out += "domains: [" + join(token_domains(details.tokens), ", ") + "]\n";
  out += tokens_block(details.tokens, "\n");
  return out;
}

config_rewrite rewrite_config(std::string_view config_text,
                              const std::vector<imported_token>& tokens,
                              const config::env_lookup& env) {
  config_rewrite out;
  const std::vector<line> lines = split_lines(config_text);
  const std::string eol =
      (!lines.empty() && lines[0].next - lines[0].end == 2) ? std::string("\r\n") : "\n";
  std::vector<edit> edits;

  // The tokens block: replaced where it is, or appended.
  if (const auto key = find_key(config_text, lines, 0, lines.size(), 0, "tokens")) {
    const std::size_t end = value_end(config_text, lines, *key, 0);
    const line& kl = lines[*key];
    std::string block = tokens_block(tokens, eol);
    // A comment on the key line is kept ("tokens:  # from AWS").
    const std::string_view key_line = config_text.substr(kl.begin, kl.end - kl.begin);
    const std::string_view rest = trim(*key_rest(key_line, 0, "tokens"));
    if (rest.starts_with("#")) {
      block = std::string(key_line) + block.substr(std::string_view("tokens:").size());
    }
    edits.push_back(edit{kl.begin, lines[end - 1].next - kl.begin, std::move(block)});
    out.replaced = true;
  } else {
    std::string block;
    if (!config_text.empty() && !config_text.ends_with("\n")) {
      block += eol;
    }
    if (!config_text.empty()) {
      block += eol;
    }
    block += "# ACM HTTP validation tokens, from get-managed-certificate-details "
             "(wkproxy tokens import)" +
             eol + tokens_block(tokens, eol);
    edits.push_back(edit{config_text.size(), 0, std::move(block)});
  }

  // The allow-list.
  const auto list = find_domain_list(config_text, lines);
  std::vector<std::string> patterns;
  if (const auto* found = std::get_if<domain_list>(&list)) {
    for (const std::string& item : found->items) {
      auto value = config::substitute_env(item, env);
      patterns.push_back(
          lower(std::holds_alternative<std::string>(value) ? std::get<std::string>(value) : item));
    }
  }
  const routing::host_allow_list allowed(patterns);
  std::vector<std::string> missing;
  for (const std::string& domain : token_domains(tokens)) {
    if (!allowed.allows(domain)) {
      missing.push_back(domain);
    }
  }
  if (!missing.empty()) {
    if (const auto* reason = std::get_if<std::string>(&list)) {
      out.warnings.push_back("cannot add domains to the allow-list (" + *reason + "): add " +
                             join(missing, ", ") + " to domains by hand");
    } else {
      const auto& found = std::get<domain_list>(list);
      std::string insert;
      if (found.kind == domain_list::style::flow) {
        insert = (found.empty_flow ? (config_text[found.insert_at - 1] == ',' ? " " : "") : ", ") +
                 join(missing, ", ");
      } else {
        // A last item without a line break (end of file) needs one first.
        if (found.insert_at > 0 && config_text[found.insert_at - 1] != '\n') {
          insert += eol;
        }
        for (const std::string& d : missing) {
          insert += found.item_prefix;
          insert += d;
          insert += eol;
        }
      }
      edits.push_back(edit{found.insert_at, 0, std::move(insert)});
      out.added_domains = missing;
    }
  }

  // Apply from the end so earlier offsets stay valid (the edits never overlap: they are in
  // different top-level keys). At the same offset, the allow-list edit (inserted later) goes
  // first in the text.
  std::stable_sort(edits.begin(), edits.end(),
                   [](const edit& a, const edit& b) { return a.at > b.at; });
  out.text = std::string(config_text);
  for (const edit& e : edits) {
    out.text.replace(e.at, e.length, e.replacement);
  }
  return out;
}

int run_tokens_import(int argc, char** argv) {
  int code = 0;
  const auto opt = parse_args(argc, argv, code);
  if (!opt) {
    return code;
  }
  const std::string name = opt->input == "-" ? "<stdin>" : opt->input;
  auto read = read_input(opt->input);
  if (const auto* reason = std::get_if<1>(&read)) {
    std::cerr << "wkproxy: " << name << ": " << *reason << "\n";
    return 1;
  }
  const certificate_details details = parse_certificate_details(std::get<0>(read), opt->prefix);
  for (const std::string& w : details.warnings) {
    std::cerr << "warning: " << name << ": " << w << "\n";
  }
  if (!details.errors.empty()) {
    for (const std::string& e : details.errors) {
      std::cerr << "wkproxy: " << name << ": " << e << "\n";
    }
    return 1;
  }
  if (opt->write) {
    return write_config(*opt, details);
  }
  std::cout << render_tokens_yaml(details);
  return 0;
}

}  // namespace wk::validation
