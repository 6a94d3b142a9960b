#pragma once
// `wkproxy tokens import FILE|- [--write CONFIG] [--prefix PATH]`: turns the output of
// `aws cloudfront get-managed-certificate-details --identifier <tenant>` (JSON, or the XML of the
// GetManagedCertificateDetails API) into the `tokens:` block of a config, printed for pasting or
// written into a config file in place.
//
// The steps are pure functions over text (parse the details, render YAML, rewrite a config), so
// they are unit-tested without files or processes; run_tokens_import() is the thin CLI around them
// (reading files, printing, validating with config::load_string, writing atomically).

#include "aws/certificate_details.hpp"
#include "aws/xml.hpp"
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

// The pure reading of certificate details lives in aws/certificate_details (the CloudFront API
// client reads the same document); these names are kept here for the CLI and its tests.
using aws::assign_tenant;
using aws::certificate_details;
using aws::imported_token;
using aws::max_input_depth;
using aws::parse_certificate_details;
using aws::token_domains;
using aws::xml_too_deep;

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
