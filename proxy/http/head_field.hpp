#pragma once
// One header field of a parsed head, as views into storage its reader keeps (the request and
// response readers), with the same accessors as a Beast field container's element, so that the
// header rules (header_rules.hpp) read either.

#include <boost/beast/http/field.hpp>

#include <string_view>

namespace wk::http {

struct head_field {
  boost::beast::http::field code = boost::beast::http::field::unknown;
  std::string_view name_text;
  std::string_view value_text;

  boost::beast::http::field name() const { return code; }
  std::string_view name_string() const { return name_text; }
  std::string_view value() const { return value_text; }
};

}  // namespace wk::http
