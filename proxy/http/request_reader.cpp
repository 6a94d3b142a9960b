#include "http/request_reader.hpp"

#include "http/header_rules.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/rfc7230.hpp>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <iterator>

namespace wk::http {

namespace bhttp = boost::beast::http;

namespace {

// A decimal number as Beast reads Content-Length (digits only, no overflow).
bool parse_decimal(std::string_view s, std::uint64_t& v) {
  if (s.empty()) {
    return false;
  }
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

request_reader::request_reader(request_storage& storage) : s_(&storage), body_parser_(*this) {
  s_->bytes.clear();
  s_->fields.clear();
  s_->trailers.clear();
  s_->trailers_dropped = 0;
}

// The rules of basic_parser::do_field (Boost 1.81), with Beast's own list types, so that the
// verdicts are Beast's by construction (the request fuzzer checks them against Beast's parser).
boost::system::error_code request_reader::frame(const head_field& f) {
  const boost::beast::string_view value(f.value_text.data(), f.value_text.size());
  switch (f.code) {
  case bhttp::field::connection:
  case bhttp::field::proxy_connection: {
    const bhttp::opt_token_list list{value};
    if (!bhttp::validate_list(list)) {
      return bhttp::error::bad_value;
    }
    if (f.code == bhttp::field::connection) {
      for (const auto& t : list) {
        close_ = close_ || boost::beast::iequals(t, "close");
        keep_token_ = keep_token_ || boost::beast::iequals(t, "keep-alive");
      }
    }
    return {};
  }
  case bhttp::field::content_length: {
    if (chunked_) {
      return bhttp::error::bad_content_length;  // after Transfer-Encoding: chunked
    }
    // A list of equal numbers is one length (RFC 9110 section 8.6); any other list is refused.
    auto unprocessed = 1 + std::count(value.begin(), value.end(), ',');
    const bhttp::opt_token_list tokens{value};
    if (tokens.begin() == tokens.end() || !bhttp::validate_list(tokens)) {
      return bhttp::error::bad_content_length;
    }
    for (const auto& t : tokens) {
      std::uint64_t v = 0;
      if (!parse_decimal({t.data(), t.size()}, v)) {
        return bhttp::error::bad_content_length;
      }
      --unprocessed;
      if (content_length_ && *content_length_ != v) {
        return bhttp::error::multiple_content_length;
      }
      content_length_ = v;
    }
    if (unprocessed != 0) {
      return bhttp::error::bad_content_length;  // an empty element
    }
    return {};
  }
  case bhttp::field::transfer_encoding: {
    if (chunked_ || content_length_) {
      return bhttp::error::bad_transfer_encoding;  // repeated, or with Content-Length
    }
    // Chunked when the first "chunked" is the last coding (anything but exactly "chunked" is
    // refused afterwards by check_request).
    const bhttp::token_list codings{value};
    const auto p = std::find_if(codings.begin(), codings.end(),
                                [](const auto& t) { return boost::beast::iequals(t, "chunked"); });
    chunked_ = p != codings.end() && std::next(p) == codings.end();
    return {};
  }
  default:
    return {};
  }
}

boost::system::error_code request_reader::adopt(std::string_view bytes,
                                                const wire::head_scan& scan) {
  const auto& layout = s_->layout;
  const auto skip = static_cast<std::uint32_t>(scan.skip);
  s_->bytes.assign(bytes.data() + scan.skip, scan.length);
  const char* base = s_->bytes.data();
  method_ = std::string_view(base + layout.method_at - skip, layout.method_size);
  target_ = std::string_view(base + layout.target_at - skip, layout.target_size);
  version_ = layout.version;
  verb_ = bhttp::string_to_verb(method_);
  s_->fields.reserve(layout.fields.size());
  for (const auto& span : layout.fields) {
    const std::string_view name(base + span.name_at - skip, span.name_size);
    s_->fields.push_back({bhttp::string_to_field(name), name,
                          std::string_view(base + span.value_at - skip, span.value_size)});
    if (auto ec = frame(s_->fields.back()); ec) {
      return ec;
    }
  }
  keep_alive_ = version_ >= 11 ? !close_ : keep_token_;
  adopted_ = true;
  if (content_length_ && body_limit_ && *content_length_ > *body_limit_) {
    return bhttp::error::body_limit;
  }
  has_body_ = chunked_ || content_length_.value_or(0) > 0;
  if (!has_body_) {
    return {};
  }
  // The body parser starts after a head of the framing alone.
  char head[64] = "POST / HTTP/1.1\r\n";
  std::size_t n = std::strlen(head);
  if (chunked_) {
    constexpr std::string_view te = "Transfer-Encoding: chunked\r\n\r\n";
    std::memcpy(head + n, te.data(), te.size());
    n += te.size();
  } else {
    constexpr std::string_view cl = "Content-Length: ";
    std::memcpy(head + n, cl.data(), cl.size());
    n += cl.size();
    n = static_cast<std::size_t>(std::to_chars(head + n, head + sizeof head, *content_length_).ptr -
                                 head);
    constexpr std::string_view end = "\r\n\r\n";
    std::memcpy(head + n, end.data(), end.size());
    n += end.size();
  }
  body_parser_.body_limit(body_limit_);
  boost::system::error_code ec;
  const auto used = body_parser_.put(boost::asio::const_buffer(head, n), ec);
  if (ec || used != n || !body_parser_.is_header_done()) {
    return ec ? ec : bhttp::error::bad_value;  // not reached: the head above is well-formed
  }
  return {};
}

std::size_t request_reader::put(boost::asio::const_buffer bytes, boost::system::error_code& ec) {
  return body_parser_.put(bytes, ec);
}

void request_reader::body_parser::on_field_impl(bhttp::field name,
                                                boost::beast::string_view name_string,
                                                boost::beast::string_view value,
                                                boost::beast::error_code& /*ec*/) {
  if (!is_header_done()) {
    return;  // the framing head adopt() built
  }
  // A trailer field: kept when it may be passed on.
  auto& s = *owner_->s_;
  if (!append_trailer(s.trailers, name, name_string, value, (*owner_)[bhttp::field::connection])) {
    ++s.trailers_dropped;
  }
}

std::size_t request_reader::body_parser::on_body_impl(boost::beast::string_view body,
                                                      boost::beast::error_code& ec) {
  return window.take({body.data(), body.size()}, ec);
}

std::size_t request_reader::body_parser::on_chunk_body_impl(std::uint64_t /*remain*/,
                                                            boost::beast::string_view body,
                                                            boost::beast::error_code& ec) {
  return window.take({body.data(), body.size()}, ec);
}

}  // namespace wk::http
