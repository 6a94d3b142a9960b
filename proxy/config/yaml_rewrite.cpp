#include "config/yaml_rewrite.hpp"

#include "core/ascii.hpp"

#include <boost/algorithm/string/join.hpp>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstddef>
#include <optional>
#include <set>
#include <utility>

namespace wk::config {

namespace {

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
  const std::string_view t = core::trim(s);
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
  rest = core::trim(rest);
  if (rest.starts_with("#")) {
    return {};
  }
  const auto hash = rest.find(" #");
  return core::trim(rest.substr(0, hash));
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
  s = core::trim(s);
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
    if (i >= s.size() || !core::trim(s.substr(i + 1)).empty()) {
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
      const std::string_view item = core::trim(text.substr(item_start, i - item_start));
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
        while (last > at + 1 && core::is_space(text[last - 1])) {
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
      return "its item " + std::string(core::trim(body)) + " is not a simple value";
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

// One item of the tokens block: its lines [first, end): the comment and blank lines right
// before it (they usually describe it), its own lines, and, for the last item, the comment lines
// after it up to the block's end. `tenant` and `domain` are what it names ("" when absent or not
// a plain value).
struct block_item {
  std::size_t first = 0;
  std::size_t end = 0;
  std::string tenant;
  std::string domain;
};

std::string scalar_of(const YAML::Node& map, const char* key) {
  const YAML::Node n = map[key];
  return n && n.IsScalar() ? n.Scalar() : std::string();
}

// The items of the block-style list on lines [from, to); the reason when it is not such a list.
std::variant<std::vector<block_item>, std::string> block_items(std::string_view text,
                                                               const std::vector<line>& lines,
                                                               std::size_t from, std::size_t to) {
  std::vector<block_item> items;
  std::optional<std::size_t> column;
  std::size_t last_content = from;  // one past the last non-comment line seen
  for (std::size_t i = from; i < to; ++i) {
    const std::string_view s = text.substr(lines[i].begin, lines[i].end - lines[i].begin);
    if (blank_or_comment(s)) {
      continue;
    }
    const std::size_t n = indent_of(s);
    const std::string_view body = s.substr(n);
    const bool starts_item = body == "-" || body.starts_with("- ");
    if (!column) {
      if (!starts_item) {
        return std::string("it is not a list of \"- domain: ...\" items");
      }
      column = n;
    }
    if (n == *column && starts_item) {
      const std::size_t first = items.empty() ? from : last_content;
      if (!items.empty()) {
        items.back().end = first;
      }
      items.push_back(block_item{first, to, {}, {}});
    } else if (n <= *column) {
      return std::string("it is not a list of \"- domain: ...\" items");
    }
    last_content = i + 1;
  }
  for (block_item& item : items) {
    const std::size_t begin = lines[item.first].begin;
    const std::string_view item_text = text.substr(begin, lines[item.end - 1].next - begin);
    try {
      const YAML::Node node = YAML::Load(std::string(item_text));
      if (!node.IsSequence() || node.size() != 1 || !node[0].IsMap()) {
        return "its item on line " + std::to_string(item.first + 1) + " is not a mapping";
      }
      item.tenant = scalar_of(node[0], "tenant");
      item.domain = core::to_lower(scalar_of(node[0], "domain"));
    } catch (const YAML::Exception& e) {
      return "its item on line " + std::to_string(item.first + 1) + " cannot be read: " + e.msg;
    }
  }
  return items;
}

// The new tokens block for rewrite_tokens(): kept items verbatim, the tenant's new items where
// its first old one was. The reason when the block cannot be edited safely.
std::variant<std::string, std::string>
rebuild_block(std::string_view text, const std::vector<line>& lines, std::size_t key,
              std::size_t end, const std::vector<token_entry>& tokens, std::string_view tenant,
              std::string_view eol, yaml_rewrite& out) {
  using result = std::variant<std::string, std::string>;
  const line& kl = lines[key];
  const std::string_view key_line = text.substr(kl.begin, kl.end - kl.begin);
  const std::string_view rest = core::trim(*key_rest(key_line, 0, "tokens"));
  const std::string_view value = value_part(rest);
  const auto hash = rest.find('#');
  const std::string comment =
      hash == std::string_view::npos ? std::string() : "  " + std::string(rest.substr(hash));
  std::vector<block_item> items;
  if (value.empty()) {
    auto found = block_items(text, lines, key + 1, end);
    if (auto* reason = std::get_if<std::string>(&found)) {
      return result(std::in_place_index<1>,
                    "the tokens block cannot be edited safely (" + *reason + "): fix it by hand");
    }
    items = std::get<std::vector<block_item>>(std::move(found));
  } else if (value != "[]") {
    return result(std::in_place_index<1>,
                  "the tokens block cannot be edited safely (it is not a block list of "
                  "\"- domain: ...\" items): write it in that style first");
  }

  std::set<std::string, std::less<>> new_domains;
  for (const token_entry& t : tokens) {
    new_domains.insert(t.domain);
  }
  std::string new_items;
  for (const token_entry& t : tokens) {
    new_items += token_item(t, eol);
  }
  const auto verbatim = [&](std::size_t first, std::size_t last) {
    std::string s(text.substr(lines[first].begin, lines[last - 1].next - lines[first].begin));
    if (!s.ends_with('\n')) {
      s += eol;  // the file's last line had no line break
    }
    return s;
  };
  std::string body;
  if (items.empty() && key + 1 < end) {
    body += verbatim(key + 1, end);  // comment lines only ("tokens: []" and a note)
  }
  bool inserted = false;
  std::set<std::string, std::less<>> warned;
  for (const block_item& item : items) {
    const bool on_new_domain = new_domains.contains(item.domain);
    const bool mine = tenant.empty()
                          ? on_new_domain
                          : item.tenant == tenant || (item.tenant.empty() && on_new_domain);
    if (mine) {
      ++out.removed_tokens;
      if (std::find(out.removed_domains.begin(), out.removed_domains.end(), item.domain) ==
          out.removed_domains.end()) {
        out.removed_domains.push_back(item.domain);
      }
      if (!inserted) {
        body += new_items;
        inserted = true;
      }
      continue;
    }
    ++out.kept_tokens;
    if (std::find(out.kept_tenants.begin(), out.kept_tenants.end(), item.tenant) ==
        out.kept_tenants.end()) {
      out.kept_tenants.push_back(item.tenant);
    }
    if (on_new_domain && warned.insert(item.tenant + " " + item.domain).second) {
      out.warnings.push_back("tokens of tenant \"" + item.tenant + "\" for " + item.domain +
                             " are kept: in CloudFront a domain belongs to one tenant; if they "
                             "are stale, remove them with wkproxy tokens remove --tenant " +
                             item.tenant);
    }
    body += verbatim(item.first, item.end);
  }
  if (!inserted) {
    body += new_items;
  }
  if (out.kept_tokens + tokens.size() == 0) {
    return result(std::in_place_index<0>, "tokens: []" + comment + std::string(eol) + body);
  }
  std::string head = value.empty() ? std::string(key_line) : "tokens:" + comment;
  return result(std::in_place_index<0>, head + std::string(eol) + body);
}

}  // namespace

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

std::string token_item(const token_entry& t, std::string_view eol) {
  std::string out = "  - domain: " + t.domain;
  out += eol;
  if (!t.tenant.empty()) {
    out += "    tenant: " + yaml_quoted(t.tenant);
    out += eol;
  }
  out += "    redirect_from: " + yaml_quoted(t.redirect_from);
  out += eol;
  out += "    redirect_to: " + yaml_quoted(t.redirect_to);
  out += eol;
  return out;
}

std::string tokens_block(const std::vector<token_entry>& tokens, std::string_view eol) {
  std::string out = tokens.empty() ? "tokens: []" : "tokens:";
  out += eol;
  for (const token_entry& t : tokens) {
    out += token_item(t, eol);
  }
  return out;
}

std::variant<std::vector<std::string>, std::string>
domain_list_items(std::string_view config_text) {
  auto list = find_domain_list(config_text, split_lines(config_text));
  if (auto* found = std::get_if<domain_list>(&list)) {
    return std::move(found->items);
  }
  return std::get<std::string>(std::move(list));
}

yaml_rewrite rewrite_tokens(std::string_view config_text, const std::vector<token_entry>& tokens,
                            const std::vector<std::string>& add_domains, std::string_view tenant) {
  yaml_rewrite out;
  const std::vector<line> lines = split_lines(config_text);
  const std::string eol =
      (!lines.empty() && lines[0].next - lines[0].end == 2) ? std::string("\r\n") : "\n";
  std::vector<edit> edits;

  // The tokens block: the tenant's items replaced where they are, or a block appended.
  if (const auto key = find_key(config_text, lines, 0, lines.size(), 0, "tokens")) {
    const std::size_t end = value_end(config_text, lines, *key, 0);
    auto block = rebuild_block(config_text, lines, *key, end, tokens, tenant, eol, out);
    if (auto* reason = std::get_if<1>(&block)) {
      out.error = std::move(*reason);
      return out;
    }
    const line& kl = lines[*key];
    edits.push_back(edit{kl.begin, lines[end - 1].next - kl.begin, std::get<0>(std::move(block))});
    out.replaced = true;
  } else if (tokens.empty()) {
    // Nothing to add and nothing to take out.
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
  if (!add_domains.empty()) {
    if (const auto* reason = std::get_if<std::string>(&list)) {
      out.warnings.push_back("cannot add domains to the allow-list (" + *reason + "): add " +
                             boost::algorithm::join(add_domains, ", ") + " to domains by hand");
    } else {
      const auto& found = std::get<domain_list>(list);
      std::string insert;
      if (found.kind == domain_list::style::flow) {
        insert = (found.empty_flow ? (config_text[found.insert_at - 1] == ',' ? " " : "") : ", ") +
                 boost::algorithm::join(add_domains, ", ");
      } else {
        // A last item without a line break (end of file) needs one first.
        if (found.insert_at > 0 && config_text[found.insert_at - 1] != '\n') {
          insert += eol;
        }
        for (const std::string& d : add_domains) {
          insert += found.item_prefix;
          insert += d;
          insert += eol;
        }
      }
      edits.push_back(edit{found.insert_at, 0, std::move(insert)});
      out.added_domains = add_domains;
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

}  // namespace wk::config
