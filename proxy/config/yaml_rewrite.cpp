#include "config/yaml_rewrite.hpp"

#include "core/ascii.hpp"

#include <boost/algorithm/string/join.hpp>

#include <algorithm>
#include <cstddef>
#include <optional>
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

std::string tokens_block(const std::vector<token_entry>& tokens, std::string_view eol) {
  std::string out = "tokens:";
  out += eol;
  for (const token_entry& t : tokens) {
    out += "  - domain: " + t.domain;
    out += eol;
    out += "    redirect_from: " + yaml_quoted(t.redirect_from);
    out += eol;
    out += "    redirect_to: " + yaml_quoted(t.redirect_to);
    out += eol;
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
                            const std::vector<std::string>& add_domains) {
  yaml_rewrite out;
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
    const std::string_view rest = core::trim(*key_rest(key_line, 0, "tokens"));
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
