#include "http/head_field.hpp"

#include <boost/beast/http/error.hpp>

#include <algorithm>
#include <cstring>

namespace wk::http {

std::string_view first_value(const std::vector<head_field>& fields, boost::beast::http::field f) {
  for (const auto& x : fields) {
    if (x.code == f) {
      return x.value_text;
    }
  }
  return {};
}

std::size_t count_of(const std::vector<head_field>& fields, boost::beast::http::field f) {
  return static_cast<std::size_t>(std::count_if(fields.begin(), fields.end(),
                                                [f](const head_field& x) { return x.code == f; }));
}

std::size_t body_window::take(std::string_view body, boost::beast::error_code& ec) {
  if (data == nullptr) {
    ec = boost::beast::http::error::need_buffer;
    return 0;
  }
  const auto n = std::min(body.size(), size);
  if (n > 0) {
    std::memcpy(data, body.data(), n);
  }
  data += n;
  size -= n;
  if (n != body.size()) {
    ec = boost::beast::http::error::need_buffer;
  }
  return n;
}

}  // namespace wk::http
