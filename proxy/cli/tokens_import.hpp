#pragma once
// `wkproxy tokens import FILE|- [--write CONFIG] [--prefix PATH]`: turns the output of
// `aws cloudfront get-managed-certificate-details --identifier <tenant>` (JSON, or the XML of the
// GetManagedCertificateDetails API) into the `tokens:` block of a config, printed for pasting or
// written into a config file in place.
//
// The steps are pure functions over text (parse the details, render YAML, rewrite a config), so
// they are unit-tested without files or processes; run_tokens_import() is the thin CLI around them
// (reading files, printing, validating with config::load_string, writing atomically).

#include "config/load.hpp"
#include "config/yaml_rewrite.hpp"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wk::cli {

// The default URL path under which ACM publishes HTTP validation tokens.
inline constexpr std::string_view default_token_prefix = "/.well-known/pki-validation/";

// One ACM HTTP validation token as it goes into the config (config::token's input fields):
// `domain` lower-case and equal to the host of redirect_from; redirect_from and redirect_to as
// given by AWS, checked with config::parse_redirect_from / parse_redirect_to.
using imported_token = config::token_entry;

// The deepest nesting accepted in the input, JSON (values in values) or XML (elements in
// elements); real details nest 4 (JSON) or 6 (XML) deep. It is the JSON parser's own default
// limit; XML is checked against it before parsing, because Boost.PropertyTree's XML parser
// recurses once per level and overflowed the stack (SIGSEGV) at about 50,000 levels.
inline constexpr std::size_t max_input_depth = 32;

// Where XML `text` first opens an element nested deeper than `limit` levels (the byte offset of
// its '<'); std::nullopt when it nests no deeper. Reads the text the way Boost.PropertyTree's
// parser (RapidXML) does, without recursion, so that it never counts fewer levels than the
// parser would build (see tokens_import.cpp); a self-closing element is a level too.
std::optional<std::size_t> xml_too_deep(std::string_view text, std::size_t limit);

// What was read from get-managed-certificate-details output.
struct certificate_details {
  std::string certificate_arn;         // CertificateArn; empty when absent
  std::string tenant;                  // whose tokens these are (see assign_tenant)
  std::string status;                  // CertificateStatus; empty when absent
  std::string token_host;              // ValidationTokenHost; empty when absent
  std::vector<imported_token> tokens;  // the importable tokens, in input order
  std::vector<std::string> warnings;   // hints and skipped entries, e.g. wildcard domains
  // Problems with the input, e.g. "ValidationTokenDetails[1].RedirectTo: must start with
  // https://". When not empty, `tokens` must not be used: the input is wrong somewhere.
  std::vector<std::string> errors;
};

// Parses get-managed-certificate-details output: JSON when the first non-space character is '{',
// XML when it is '<' (root <GetManagedCertificateDetailsResponse>,
// <GetManagedCertificateDetailsResult> or <ManagedCertificateDetails>); nesting deeper than
// max_input_depth is an error, found before XML is parsed. Every RedirectFrom must be
// http://<Domain><prefix><file>
// (`prefix` as validation.prefix: starts and ends with '/'), every RedirectTo an https URL;
// either may come without its scheme, as in the AWS CLI reference's example, and is imported
// with it. The two file names need not be equal (AWS's example has them differ).
// Wildcard domains and entries without RedirectFrom/RedirectTo are skipped with a warning; a
// status other than pending-validation or issued, and ValidationTokenHost "cloudfront", are
// warnings. No importable token left is an error. Never throws for bad input.
certificate_details parse_certificate_details(std::string_view text, std::string_view prefix);

// Records whose tokens these are, in `details.tenant` and in every token: `tenant_id` (the
// distribution tenant's id, name or ARN the details were fetched for) when given, else the
// CertificateArn (one certificate per tenant); empty when neither is known. `tokens import
// --write` then replaces that tenant's tokens and no other's.
void assign_tenant(certificate_details& details, std::string_view tenant_id);

// The tokens' domains, de-duplicated, in input order.
std::vector<std::string> token_domains(const std::vector<imported_token>& tokens);

// The YAML to paste into a config: a comment line naming the status and the token count, a
// flow-style `domains:` list and the `tokens:` block (URLs double-quoted, "$" doubled so that
// ${VAR} substitution leaves them alone). Ends with a newline.
std::string render_tokens_yaml(const certificate_details& details);

// The result of rewrite_config(): the new text, whether a tokens block was replaced, the domains
// added to the allow-list and the warnings.
using config_rewrite = config::yaml_rewrite;

// Puts one tenant's `tokens` into a config text with config::rewrite_tokens, leaving every
// other byte alone:
// - in the top-level `tokens:` block, `tenant`'s items (and items without a tenant on the same
//   domains) are replaced, other tenants' are kept as written; without a block one is appended;
// - token domains not allowed yet by the top-level `domains:` list (or validation.domains) are
//   added in the list's own style (flow `[a, b]` on one line, or block `- a` items). Patterns
//   such as "*.example.com" count (after ${VAR} substitution with `env`). A list in any other
//   shape is left alone with a warning naming the domains to add.
// Line endings follow the text ("\r\n" when its first line has one). The result is not
// validated here: load it with config::load_string before using it.
config_rewrite rewrite_config(std::string_view config_text,
                              const std::vector<imported_token>& tokens,
                              const config::env_lookup& env, std::string_view tenant = {});

// Runs the subcommand with the arguments after "tokens import". Prints the YAML to stdout (or,
// with --write, updates CONFIG after checking that the result loads), warnings and errors to
// stderr. Returns the exit code: 0 done, 1 bad input or config (nothing written), 2 usage.
int run_tokens_import(int argc, char** argv);

// `wkproxy tokens remove --tenant ID --write CONFIG`: takes one tenant's tokens out of CONFIG's
// tokens block, every other byte kept; the result is checked with the loader before it is
// written. Returns the exit code: 0 done (or nothing of that tenant there, with a warning),
// 1 the config cannot be read, edited or would not load, 2 usage.
int run_tokens_remove(int argc, char** argv);

}  // namespace wk::cli
