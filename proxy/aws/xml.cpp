#include "aws/xml.hpp"

#include "core/ascii.hpp"

#include <boost/property_tree/xml_parser.hpp>

#include <algorithm>
#include <sstream>

namespace wk::aws {

namespace pt = boost::property_tree;

namespace {

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

std::optional<std::string> non_empty(std::string_view s) {
  if (s.empty()) {
    return std::nullopt;
  }
  return std::string(s);
}

std::string_view local_name(std::string_view name) {
  const auto colon = name.find(':');
  return colon == std::string_view::npos ? name : name.substr(colon + 1);
}

bool is_element(const pt::ptree::value_type& child) {
  return !child.first.starts_with("<xml");
}

const pt::ptree* xml_child(const pt::ptree& parent, std::string_view name,
                           const std::string& parent_path, std::vector<std::string>& errors,
                           std::string_view root) {
  const pt::ptree* found = nullptr;
  for (const auto& child : parent) {
    if (is_element(child) && local_name(child.first) == name) {
      if (found != nullptr) {
        errors.push_back((parent_path.empty() ? std::string(root) : parent_path) +
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

std::optional<std::string> xml_text(const pt::ptree& parent, std::string_view name,
                                    const std::string& parent_path,
                                    std::vector<std::string>& errors, std::string_view root) {
  const pt::ptree* node = xml_child(parent, name, parent_path, errors, root);
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

std::optional<pt::ptree> parse_xml(std::string_view text, std::string_view what,
                                   std::vector<std::string>& errors) {
  // Before the parser, which recurses once per level (see xml_too_deep).
  if (const auto at = xml_too_deep(text, max_input_depth)) {
    errors.push_back("XML nested deeper than " + std::to_string(max_input_depth) + " elements (" +
                     position(text, *at) + "): refused before parsing (" + std::string(what) + ")");
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
  return doc;
}

root_element root_of(const pt::ptree& doc) {
  for (const auto& child : doc) {
    if (is_element(child)) {
      return {&child.second, std::string(local_name(child.first))};
    }
  }
  return {};
}

std::optional<error_document> as_error(const root_element& root) {
  if (root.node == nullptr || (root.name != "ErrorResponse" && root.name != "Error")) {
    return std::nullopt;
  }
  std::vector<std::string> ignored;
  const pt::ptree* error =
      root.name == "Error" ? root.node : xml_child(*root.node, "Error", "", ignored, "");
  const pt::ptree& from = error != nullptr ? *error : *root.node;
  error_document out;
  out.code = xml_text(from, "Code", "", ignored, "").value_or("");
  out.message = xml_text(from, "Message", "", ignored, "").value_or("");
  return out;
}

}  // namespace wk::aws
