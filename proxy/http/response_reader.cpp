#include "http/response_reader.hpp"

#include "http/header_rules.hpp"

#include <boost/beast/http/error.hpp>

#include <algorithm>
#include <cstring>

namespace wk::http {

namespace bhttp = boost::beast::http;

response_reader::response_reader(head_storage& storage) : s_(&storage) {
  s_->bytes.clear();
  s_->raw.clear();
  s_->fields.clear();
  s_->trailers.clear();
  s_->trailers_dropped = 0;
}

void response_reader::on_response_impl(int code, boost::beast::string_view reason, int version,
                                       boost::beast::error_code& /*ec*/) {
  status_ = static_cast<unsigned>(code);
  version_ = static_cast<unsigned>(version);
  s_->bytes.assign(reason.data(), reason.size());
  reason_size_ = static_cast<std::uint32_t>(reason.size());
}

void response_reader::on_field_impl(bhttp::field name, boost::beast::string_view name_string,
                                    boost::beast::string_view value,
                                    boost::beast::error_code& /*ec*/) {
  if (is_header_done()) {
    // A trailer field: kept when it may be passed on.
    if (!append_trailer(s_->trailers, name, name_string, value,
                        (*this)[bhttp::field::connection])) {
      ++s_->trailers_dropped;
    }
    return;
  }
  // The header is bounded by header_limit (well under 4 GiB): offsets fit.
  auto& b = s_->bytes;
  const auto name_at = static_cast<std::uint32_t>(b.size());
  b.append(name_string.data(), name_string.size());
  const auto value_at = static_cast<std::uint32_t>(b.size());
  b.append(value.data(), value.size());
  s_->raw.push_back({name, name_at, static_cast<std::uint32_t>(name_string.size()), value_at,
                     static_cast<std::uint32_t>(value.size())});
}

void response_reader::on_header_impl(boost::beast::error_code& /*ec*/) {
  // The bytes no longer move: views are made once.
  const char* base = s_->bytes.data();
  reason_ = std::string_view(base, reason_size_);
  s_->fields.reserve(s_->raw.size());
  for (const auto& r : s_->raw) {
    s_->fields.push_back({r.code, std::string_view(base + r.name_at, r.name_size),
                          std::string_view(base + r.value_at, r.value_size)});
  }
}

std::size_t response_reader::on_body_impl(boost::beast::string_view body,
                                          boost::beast::error_code& ec) {
  return body_.take({body.data(), body.size()}, ec);
}

std::size_t response_reader::on_chunk_body_impl(std::uint64_t /*remain*/,
                                                boost::beast::string_view body,
                                                boost::beast::error_code& ec) {
  return body_.take({body.data(), body.size()}, ec);
}

}  // namespace wk::http
