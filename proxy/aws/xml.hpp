#pragma once
// Reading the XML that AWS APIs answer with (CloudFront's REST-XML, STS's query protocol), with
// Boost.PropertyTree, safely: the nesting depth is measured before parsing (the parser recurses
// once per level), and the helpers below report, rather than throw on, what is not as expected.

#include <boost/property_tree/ptree.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wk::aws {

// The deepest nesting accepted in a document (elements in elements), also used for JSON. Real
// AWS answers nest at most 6 deep. It is Boost.JSON's own default limit; XML is checked against
// it before parsing, because Boost.PropertyTree's XML parser recurses once per level and
// overflowed the stack (SIGSEGV) at about 50,000 levels.
inline constexpr std::size_t max_input_depth = 32;

// Where XML `text` first opens an element nested deeper than `limit` levels (the byte offset of
// its '<'); std::nullopt when it nests no deeper. Reads the text the way Boost.PropertyTree's
// parser (RapidXML) does, without recursion, so that it never counts fewer levels than the
// parser would build (see xml.cpp); a self-closing element is a level too.
std::optional<std::size_t> xml_too_deep(std::string_view text, std::size_t limit);

// "line 3, column 7": the 1-based position of byte `offset` in `text`.
std::string position(std::string_view text, std::size_t offset);

// The document, or std::nullopt with the reason appended to `errors` (too deep, or not XML).
// `what` names the expected content in the too-deep message ("certificate details nest 6 deep").
std::optional<boost::property_tree::ptree> parse_xml(std::string_view text, std::string_view what,
                                                     std::vector<std::string>& errors);

// The first element of a parsed document and its name without namespace prefix; nullptr when
// the document has none.
struct root_element {
  const boost::property_tree::ptree* node = nullptr;
  std::string name;
};
root_element root_of(const boost::property_tree::ptree& doc);

// The element name without a namespace prefix ("ns:Domain" -> "Domain").
std::string_view local_name(std::string_view name);

// property_tree keeps attributes and comments as children named "<xmlattr>", "<xmlcomment>".
bool is_element(const boost::property_tree::ptree::value_type& child);
bool has_elements(const boost::property_tree::ptree& node);

// Empty values count as absent: AWS leaves fields out rather than sending them empty.
std::optional<std::string> non_empty(std::string_view s);

// The only child element called `name`; nullptr when absent. More than one is an error.
// `parent_path` names the parent in messages; when empty, `root` does.
const boost::property_tree::ptree* xml_child(const boost::property_tree::ptree& parent,
                                             std::string_view name, const std::string& parent_path,
                                             std::vector<std::string>& errors,
                                             std::string_view root);

// The text of an optional child element (trimmed; empty counts as absent); an element with
// element children is an error.
std::optional<std::string> xml_text(const boost::property_tree::ptree& parent,
                                    std::string_view name, const std::string& parent_path,
                                    std::vector<std::string>& errors, std::string_view root);

// An AWS error document (<ErrorResponse><Error><Code>..</Code><Message>..</Message></Error>,
// or <Error> at the root as some services answer): its code and message; std::nullopt when
// `root` is not one.
struct error_document {
  std::string code;
  std::string message;
};
std::optional<error_document> as_error(const root_element& root);

}  // namespace wk::aws
