#pragma once
// One header field of a parsed head, as views into storage its reader keeps (the request and
// response readers), with the same accessors as a Beast field container's element, so that the
// header rules (header_rules.hpp) read either; and what both readers share: the lookups over
// their fields and the window their body bytes go to.

#include <boost/beast/core/error.hpp>
#include <boost/beast/http/field.hpp>

#include <cstddef>
#include <string_view>
#include <vector>

namespace wk::http {

struct head_field {
  boost::beast::http::field code = boost::beast::http::field::unknown;
  std::string_view name_text;
  std::string_view value_text;

  boost::beast::http::field name() const { return code; }
  std::string_view name_string() const { return name_text; }
  std::string_view value() const { return value_text; }
};

// The first value of `f` in `fields`, or empty; how many fields are `f`.
std::string_view first_value(const std::vector<head_field>& fields, boost::beast::http::field f);
std::size_t count_of(const std::vector<head_field>& fields, boost::beast::http::field f);

// Where a reader's next body bytes go (as with Beast's buffer_body): the session points it at
// its buffer, the parser fills [data, data + size) and advances it.
struct body_window {
  char* data = nullptr;
  std::size_t size = 0;

  // Copies what fits of `body` (a parser's on_body/on_chunk_body) and returns how much; with
  // no room for all of it, `ec` is need_buffer and the parser stops there.
  std::size_t take(std::string_view body, boost::beast::error_code& ec);
};

}  // namespace wk::http
