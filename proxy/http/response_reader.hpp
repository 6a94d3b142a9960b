#pragma once
// The parser of a backend's response: Beast's basic_parser (the same strict HTTP/1.1 grammar
// and framing rules as bhttp::response_parser), but the header fields go into one buffer that
// the caller keeps for the next response (a backend connection keeps one) instead of one heap
// node per field, and body bytes go to a window the session provides (as with buffer_body).
// Trailer fields that may be passed on (header_rules.hpp, trailer_allowed) are kept as the
// bytes of a trailer section; the others are dropped.

#include "http/head_field.hpp"

#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/field.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace wk::http {

// Field storage reused from one response to the next (its capacity stays).
struct head_storage {
  struct raw_field {
    boost::beast::http::field code;
    std::uint32_t name_at;
    std::uint32_t name_size;
    std::uint32_t value_at;
    std::uint32_t value_size;
  };
  std::string bytes;  // reason phrase, then each field's name and value
  std::vector<raw_field> raw;
  std::vector<head_field> fields;
  std::string trailers;              // "Name: value\r\n" per trailer field passed on
  std::size_t trailers_dropped = 0;  // trailer fields not passed on
};

// One response (a parser is used once: an interim 1xx and the final answer get one each).
class response_reader : public boost::beast::http::basic_parser<false> {
public:
  // `storage` is cleared here and must outlive the reader.
  explicit response_reader(head_storage& storage);

  body_window& body() { return body_; }

  unsigned result_int() const { return status_; }
  std::string_view reason() const { return reason_; }
  unsigned version() const { return version_; }

  // The header fields in the order received (empty until the header is complete).
  const std::vector<head_field>& fields() const { return s_->fields; }
  std::vector<head_field>::const_iterator begin() const { return s_->fields.begin(); }
  std::vector<head_field>::const_iterator end() const { return s_->fields.end(); }
  // The first value of `f`, or empty.
  std::string_view operator[](boost::beast::http::field f) const {
    return first_value(s_->fields, f);
  }
  std::size_t count(boost::beast::http::field f) const { return count_of(s_->fields, f); }
  // The trailer fields passed on, as the bytes of a trailer section (complete once is_done()),
  // and how many were dropped.
  std::string_view trailers() const { return s_->trailers; }
  std::size_t trailers_dropped() const { return s_->trailers_dropped; }

private:
  void on_request_impl(boost::beast::http::verb, boost::beast::string_view,
                       boost::beast::string_view, int, boost::beast::error_code&) override {}
  void on_response_impl(int code, boost::beast::string_view reason, int version,
                        boost::beast::error_code& ec) override;
  void on_field_impl(boost::beast::http::field name, boost::beast::string_view name_string,
                     boost::beast::string_view value, boost::beast::error_code& ec) override;
  void on_header_impl(boost::beast::error_code& ec) override;
  void on_body_init_impl(const boost::optional<std::uint64_t>&,
                         boost::beast::error_code&) override {}
  std::size_t on_body_impl(boost::beast::string_view body, boost::beast::error_code& ec) override;
  void on_chunk_header_impl(std::uint64_t, boost::beast::string_view,
                            boost::beast::error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, boost::beast::string_view body,
                                 boost::beast::error_code& ec) override;
  void on_finish_impl(boost::beast::error_code&) override {}

  head_storage* s_;
  unsigned status_ = 0;
  unsigned version_ = 0;
  std::uint32_t reason_size_ = 0;
  std::string_view reason_;
  body_window body_;
};

}  // namespace wk::http
