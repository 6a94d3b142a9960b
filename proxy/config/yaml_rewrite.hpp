#pragma once
// Rewriting the `tokens:` block of a config file in place, as text. YAML is not parsed here: the
// edits are line-based, limited to shapes that are unambiguous (a top-level `tokens:` block, a
// `domains:` allow-list in flow `[a, b]` or block `- a` style), every other byte is left alone,
// and the caller validates the result with the real loader (load_string) before using it.
// Used by `wkproxy tokens import --write`.

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
};

// A double-quoted YAML scalar; "$" is doubled because the loader substitutes ${VAR} in values.
std::string yaml_quoted(std::string_view s);

// "tokens:" and one `- domain / redirect_from / redirect_to` entry per token (URLs quoted with
// yaml_quoted), each line ending with `eol`.
std::string tokens_block(const std::vector<token_entry>& tokens, std::string_view eol);

// The items of the allow-list that rewrite_tokens() would extend (the top-level `domains:`, else
// `domains:` inside `validation:`), as written with quotes removed; or why it cannot be edited
// safely (e.g. "the config has no domains list", "it is not a list").
std::variant<std::vector<std::string>, std::string> domain_list_items(std::string_view config_text);

// The result of rewrite_tokens().
struct yaml_rewrite {
  std::string text;                        // the new config text
  bool replaced = false;                   // a tokens block was replaced (else: appended)
  std::vector<std::string> added_domains;  // added to the allow-list, in the order given
  // E.g. the allow-list could not be edited safely: the message names the domains to add.
  std::vector<std::string> warnings;
};

// Puts `tokens` into a config text, leaving every other byte alone:
// - the top-level `tokens:` block (from its line to the next line that starts a top-level key;
//   comment and blank lines right before that key stay) is replaced, or a block is appended;
// - `add_domains` are added to the allow-list (see domain_list_items) in the list's own style.
//   A list in any other shape is left alone with a warning naming the domains to add.
// Line endings follow the text ("\r\n" when its first line has one).
yaml_rewrite rewrite_tokens(std::string_view config_text, const std::vector<token_entry>& tokens,
                            const std::vector<std::string>& add_domains);

}  // namespace wk::config
