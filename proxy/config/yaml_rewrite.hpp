#pragma once
// Rewriting the `tokens:` block of a config file in place, as text. The edits are line-based,
// limited to shapes that are unambiguous (a top-level `tokens:` block in block style, a
// `domains:` allow-list in flow `[a, b]` or block `- a` style), every other byte is left alone,
// and the caller validates the result with the real loader (load_string) before using it. Each
// item of the tokens block is read with yaml-cpp only to learn its tenant and domain; the items
// that stay are kept byte for byte (comments, ${VAR} references and all).
// Used by `wkproxy tokens import --write` and `wkproxy tokens remove`.

#include <cstddef>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace wk::config {

// One entry of the `tokens:` block, as written (config::token's input fields).
struct token_entry {
  std::string domain;
  std::string redirect_from;
  std::string redirect_to;
  // Whose token it is: the distribution tenant's id (or name, or ARN) the details were fetched
  // for, else the certificate's ARN; empty when unknown (then not written).
  std::string tenant;
};

// A double-quoted YAML scalar; "$" is doubled because the loader substitutes ${VAR} in values.
std::string yaml_quoted(std::string_view s);

// "tokens:" and one `- domain / tenant / redirect_from / redirect_to` entry per token (values
// quoted with yaml_quoted; `tenant` only when known), each line ending with `eol`.
std::string tokens_block(const std::vector<token_entry>& tokens, std::string_view eol);

// One item of that block ("  - domain: ...", the lines of one token).
std::string token_item(const token_entry& token, std::string_view eol);

// The items of the allow-list that rewrite_tokens() would extend (the top-level `domains:`, else
// `domains:` inside `validation:`), as written with quotes removed; or why it cannot be edited
// safely (e.g. "the config has no domains list", "it is not a list").
std::variant<std::vector<std::string>, std::string> domain_list_items(std::string_view config_text);

// The result of rewrite_tokens().
struct yaml_rewrite {
  std::string text;  // the new config text
  // Why the config cannot be edited (e.g. a tokens block in flow style); `text` is then empty
  // and nothing may be written.
  std::string error;
  bool replaced = false;                     // a tokens block was there (else: appended)
  std::size_t removed_tokens = 0;            // items taken out (the tenant's previous tokens)
  std::size_t kept_tokens = 0;               // items of other tenants, left as they were
  std::vector<std::string> removed_domains;  // the domains of the items taken out (distinct)
  std::vector<std::string> kept_tenants;     // the tenants of the items kept (distinct)
  std::vector<std::string> added_domains;    // added to the allow-list, in the order given
  // E.g. the allow-list could not be edited safely: the message names the domains to add.
  std::vector<std::string> warnings;
};

// Puts one tenant's `tokens` into a config text, leaving every other byte alone:
// - in the top-level `tokens:` block (from its line to the next line that starts a top-level key;
//   comment and blank lines right before that key stay), the items that belong to `tenant` are
//   replaced by `tokens`, where the first of them was (or after the last item). An item
//   belongs to `tenant` when its `tenant:` is `tenant`; an item without `tenant:` (written by
//   hand, or by an older wkproxy) when its domain is one of `tokens`' domains. With `tenant`
//   empty, every item on one of `tokens`' domains is replaced. Other tenants' items stay as
//   they are, byte for byte; an item of another tenant on one of `tokens`' domains stays too,
//   with a warning. Without a block, one is appended. An empty result is written `tokens: []`.
// - `add_domains` are added to the allow-list (see domain_list_items) in the list's own style.
//   A list in any other shape is left alone with a warning naming the domains to add.
// Line endings follow the text ("\r\n" when its first line has one).
yaml_rewrite rewrite_tokens(std::string_view config_text, const std::vector<token_entry>& tokens,
                            const std::vector<std::string>& add_domains,
                            std::string_view tenant = {});

}  // namespace wk::config
