// Why this file is over 600 lines: it is `wkproxy tokens import` whole, one pipeline over text:
// read the certificate details (JSON or XML, with the XML depth scan that must mirror the
// parser step for step), validate them the same way for both formats, render YAML, and the CLI
// around it. The config text rewriter lives in config/yaml_rewrite.

#include "cli/tokens_import.hpp"

#include "cli_help.hpp"

#include "core/ascii.hpp"

#include "config/env_subst.hpp"
#include "config/upstream_url.hpp"
#include "config/yaml_rewrite.hpp"
#include "routing/host_match.hpp"

#include <boost/algorithm/string/join.hpp>
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

namespace wk::cli {

namespace json = boost::json;
namespace pt = boost::property_tree;
namespace fs = std::filesystem;

namespace {

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
  return non_empty(core::trim(node->data()));
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

// ---------------------------------------------------------------------------------------------
// YAML output

std::string count_of(std::size_t n, std::string_view noun) {
  return std::to_string(n) + " " + std::string(noun) + (n == 1 ? "" : "s");
}

// ---------------------------------------------------------------------------------------------
// The command line

// The text lives in docs/wkproxy.1.md, with the man page; errors repeat its first line.
constexpr std::string_view import_usage = wk::cli::help_tokens_import;
constexpr std::string_view usage_line = import_usage.substr(0, import_usage.find('\n') + 1);

struct options {
  std::string input;
  std::optional<std::string> write;  // --write CONFIG
  std::string prefix{default_token_prefix};
  std::string tenant;                     // --tenant ID
  std::optional<std::string> tokens_dir;  // --tokens-dir DIR
};

// A tenant id as given on the command line: printable ASCII without spaces or quotes (ids,
// names and ARNs of distribution tenants are).
bool valid_tenant(std::string_view id) {
  return !id.empty() && id.size() <= 2048 && std::all_of(id.begin(), id.end(), [](char c) {
    return c > ' ' && c < 0x7f && c != '"' && c != '\\';
  });
}

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
      std::cout << import_usage;
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
    } else if (a == "--tokens-dir" || a.starts_with("--tokens-dir=")) {
      std::string dir;
      if (!value("--tokens-dir", dir)) {
        return std::nullopt;
      }
      if (dir.empty()) {
        std::cerr << "wkproxy: --tokens-dir needs a directory\n" << usage_line;
        code = 2;
        return std::nullopt;
      }
      opt.tokens_dir = std::move(dir);
    } else if (a == "--tenant" || a.starts_with("--tenant=")) {
      if (!value("--tenant", opt.tenant)) {
        return std::nullopt;
      }
      if (!valid_tenant(opt.tenant)) {
        std::cerr << "wkproxy: --tenant needs a tenant id, name or ARN (no spaces or quotes)\n"
                  << usage_line;
        code = 2;
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
  if (opt.write && opt.tokens_dir) {
    std::cerr << "wkproxy: --write and --tokens-dir exclude each other\n" << usage_line;
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

// True when `text` (the updated `path`) loads as a config; else prints why, as the loader found
// it, and that nothing was written ("... `change` it would not be a valid config").
bool loads_as_config(const std::string& path, const std::string& text,
                     const config::env_lookup& env, std::string_view change) {
  const config::load_result loaded = config::load_string(text, path, env);
  if (loaded.errors.empty()) {
    return true;
  }
  std::cerr << "wkproxy: " << path << ": not written: " << change
            << " it would not be a valid config (lines below are those of the updated text):\n";
  for (const config::error& e : loaded.errors) {
    std::cerr << e.to_string() << "\n";
  }
  return false;
}

// The file of `tenant` in a tokens_dir: its id with every character outside [A-Za-z0-9._-]
// (an ARN's ':' and '/') made '_', and no leading '.', + ".yaml".
std::string tenant_file_name(std::string_view tenant) {
  std::string name;
  for (char c : tenant) {
    name += core::is_alpha(c) || core::is_digit(c) || c == '.' || c == '_' || c == '-' ? c : '_';
  }
  if (name.starts_with('.')) {
    name[0] = '_';
  }
  return name + ".yaml";
}

// --tokens-dir: the tenant's whole file, {tenant, domains, tokens}, written atomically after the
// config's own loader accepted it. Another tenant's file under the same name is not replaced.
int write_tenant_file(const options& opt, const certificate_details& details) {
  if (details.tenant.empty()) {
    std::cerr << "wkproxy: --tokens-dir needs --tenant (the details have no CertificateArn)\n";
    return 1;
  }
  const fs::path dir(*opt.tokens_dir);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    std::cerr << "wkproxy: " << dir.string() << ": not a directory\n";
    return 1;
  }
  const std::string path = (dir / tenant_file_name(details.tenant)).string();
  std::string text = "# tenant " + details.tenant + ": " +
                     render_tokens_yaml(details).substr(std::string_view("# ").size());
  text.insert(text.find('\n') + 1, "tenant: " + config::yaml_quoted(details.tenant) + "\n");
  const config::env_lookup env = config::process_env();
  const config::load_result loaded = config::load_tenant_string(text, path, opt.prefix, env);
  if (!loaded.errors.empty()) {
    std::cerr << "wkproxy: " << path << ": not written: it would not load:\n";
    for (const config::error& e : loaded.errors) {
      std::cerr << e.to_string() << "\n";
    }
    return 1;
  }
  const bool exists = fs::exists(path, ec);
  std::string old_text;
  if (exists) {
    auto read = read_input(path);
    if (const auto* reason = std::get_if<1>(&read)) {
      std::cerr << "wkproxy: " << path << ": " << *reason << "\n";
      return 1;
    }
    old_text = std::get<0>(std::move(read));
    const auto before = config::load_tenant_string(old_text, path, opt.prefix, env);
    if (before.cfg && !before.cfg->tokens.empty() &&
        before.cfg->tokens.front().tenant != details.tenant) {
      std::cerr << "wkproxy: " << path << ": not written: it holds tenant "
                << before.cfg->tokens.front().tenant << ", not " << details.tenant << "\n";
      return 1;
    }
    if (old_text == text) {
      std::cout << path << ": already up to date (" << count_of(details.tokens.size(), "token")
                << ")\n";
      return 0;
    }
  } else {
    // write_atomically replaces an existing file, keeping its mode: start one (mode 0644).
    std::ofstream create(path, std::ios::binary);
    if (!create) {
      std::cerr << "wkproxy: " << path << ": cannot create: " << std::strerror(errno) << "\n";
      return 1;
    }
  }
  if (auto problem = write_atomically(path, text)) {
    std::cerr << "wkproxy: " << path << ": not written: " << *problem << "\n";
    if (!exists) {
      fs::remove(path, ec);
    }
    return 1;
  }
  std::cout << "wrote " << count_of(details.tokens.size(), "token") << " of tenant "
            << details.tenant << " to " << path << " (reload wkproxy to serve them)\n";
  return 0;
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
  const config_rewrite rewrite = rewrite_config(old_text, details.tokens, env, details.tenant);
  if (!rewrite.error.empty()) {
    std::cerr << "wkproxy: " << path << ": not written: " << rewrite.error << "\n";
    return 1;
  }
  for (const std::string& w : rewrite.warnings) {
    std::cerr << "warning: " << path << ": " << w << "\n";
  }
  if (!loads_as_config(path, rewrite.text, env, "with the imported tokens")) {
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
  std::cout << "wrote " << count_of(details.tokens.size(), "token");
  if (!details.tenant.empty()) {
    std::cout << " of tenant " << details.tenant;
  }
  std::cout << " to " << path << " (";
  if (!rewrite.replaced) {
    std::cout << "added a tokens block";
  } else {
    std::cout << "replaced " << count_of(rewrite.removed_tokens, "earlier token") << ", kept "
              << count_of(rewrite.kept_tokens, "token") << " of other tenants";
  }
  std::cout << ")";
  if (!rewrite.added_domains.empty()) {
    std::cout << "; added domains: " << boost::algorithm::join(rewrite.added_domains, ", ");
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

std::string render_tokens_yaml(const certificate_details& details) {
  std::string out = "# from get-managed-certificate-details: status " +
                    (details.status.empty() ? std::string("unknown") : details.status) + ", " +
                    count_of(details.tokens.size(), "token") + "\n";
  out += "domains: [" + boost::algorithm::join(token_domains(details.tokens), ", ") + "]\n";
  out += config::tokens_block(details.tokens, "\n");
  return out;
}

void assign_tenant(certificate_details& details, std::string_view tenant_id) {
  details.tenant = tenant_id.empty() ? details.certificate_arn : std::string(tenant_id);
  for (imported_token& t : details.tokens) {
    t.tenant = details.tenant;
  }
}

config_rewrite rewrite_config(std::string_view config_text,
                              const std::vector<imported_token>& tokens,
                              const config::env_lookup& env, std::string_view tenant) {
  // The allow-list as written, with ${VAR} substituted: which token domains it lacks.
  std::vector<std::string> patterns;
  const auto list = config::domain_list_items(config_text);
  if (const auto* items = std::get_if<std::vector<std::string>>(&list)) {
    for (const std::string& item : *items) {
      auto value = config::substitute_env(item, env);
      patterns.push_back(core::to_lower(
          std::holds_alternative<std::string>(value) ? std::get<std::string>(value) : item));
    }
  }
  const routing::host_allow_list allowed(patterns);
  std::vector<std::string> missing;
  for (const std::string& domain : token_domains(tokens)) {
    if (!allowed.allows(domain)) {
      missing.push_back(domain);
    }
  }
  return config::rewrite_tokens(config_text, tokens, missing, tenant);
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
  certificate_details details = parse_certificate_details(std::get<0>(read), opt->prefix);
  assign_tenant(details, opt->tenant);
  if (details.tenant.empty() && details.errors.empty()) {
    details.warnings.emplace_back(
        "no CertificateArn and no --tenant: the tokens carry no tenant, and --write replaces "
        "only earlier tokens on the same domains");
  }
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
  if (opt->tokens_dir) {
    return write_tenant_file(*opt, details);
  }
  std::cout << render_tokens_yaml(details);
  return 0;
}

int run_tokens_remove(int argc, char** argv) {
  constexpr std::string_view remove_usage = wk::cli::help_tokens_remove;
  const std::string_view line = remove_usage.substr(0, remove_usage.find('\n') + 1);
  std::string tenant;
  std::string path;
  std::string dir;
  for (int i = 0; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << remove_usage;
      return 0;
    }
    std::string* out = a == "--tenant" || a.starts_with("--tenant=")           ? &tenant
                       : a == "--write" || a.starts_with("--write=")           ? &path
                       : a == "--tokens-dir" || a.starts_with("--tokens-dir=") ? &dir
                                                                               : nullptr;
    if (out == nullptr) {
      std::cerr << "wkproxy: unexpected argument " << a << "\n" << line;
      return 2;
    }
    if (const auto eq = a.find('='); eq != std::string_view::npos) {
      *out = std::string(a.substr(eq + 1));
    } else if (i + 1 < argc) {
      *out = argv[++i];
    } else {
      std::cerr << "wkproxy: " << a << " needs a value\n" << line;
      return 2;
    }
  }
  if (!valid_tenant(tenant) || (path.empty() == dir.empty()) || path == "-") {
    std::cerr << "wkproxy: tokens remove needs --tenant ID and one of --write CONFIG or "
                 "--tokens-dir DIR\n"
              << line;
    return 2;
  }
  if (!dir.empty()) {
    const std::string file = (fs::path(dir) / tenant_file_name(tenant)).string();
    std::error_code ec;
    if (!fs::exists(file, ec)) {
      std::cerr << "warning: " << file << ": no file of tenant " << tenant << "; nothing changed\n";
      return 0;
    }
    if (!fs::remove(file, ec) || ec) {
      std::cerr << "wkproxy: " << file << ": cannot remove: " << ec.message() << "\n";
      return 1;
    }
    std::cout << "removed " << file << " (tenant " << tenant
              << "); reload wkproxy to stop serving its tokens\n";
    return 0;
  }
  auto read = read_input(path);
  if (const auto* reason = std::get_if<1>(&read)) {
    std::cerr << "wkproxy: " << path << ": " << *reason << "\n";
    return 1;
  }
  const std::string& old_text = std::get<0>(read);
  const config_rewrite rewrite = config::rewrite_tokens(old_text, {}, {}, tenant);
  if (!rewrite.error.empty()) {
    std::cerr << "wkproxy: " << path << ": not written: " << rewrite.error << "\n";
    return 1;
  }
  if (rewrite.removed_tokens == 0) {
    std::cerr << "warning: " << path << ": no tokens of tenant " << tenant;
    if (!rewrite.kept_tenants.empty()) {
      std::cerr << " (tenants there: " << boost::algorithm::join(rewrite.kept_tenants, ", ") << ")";
    }
    std::cerr << "; nothing changed\n";
    return 0;
  }
  const config::env_lookup env = config::process_env();
  if (!loads_as_config(path, rewrite.text, env, "without those tokens")) {
    return 1;
  }
  if (auto problem = write_atomically(path, rewrite.text)) {
    std::cerr << "wkproxy: " << path << ": not written: " << *problem << "\n";
    return 1;
  }
  std::cout << "removed " << count_of(rewrite.removed_tokens, "token") << " of tenant " << tenant
            << " from " << path << "; kept " << count_of(rewrite.kept_tokens, "token")
            << " of other tenants\n";
  // The domains stay allow-listed: say so, since in forward mode an allow-listed domain without
  // tokens still sends any safe file name under the prefix to CloudFront.
  std::cout << "still in the allow-list (remove by hand when the tenant is gone): "
            << boost::algorithm::join(rewrite.removed_domains, ", ") << "\n";
  return 0;
}

}  // namespace wk::cli
