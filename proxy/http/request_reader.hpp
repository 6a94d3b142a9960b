#pragma once
// A client's request, its head parsed once. The strict head scanner (wire/request_head.hpp)
// checks every line of the head and notes where its parts are; the reader copies the head into
// storage its worker reuses, names the fields with Beast's table, and applies the framing rules
// of Beast's request parser (RFC 9112 section 6, basic_parser::do_field): Content-Length lists,
// Transfer-Encoding, the two together, and the tokens of Connection. No field node is
// allocated and no head byte is parsed twice.
//
// The body, when there is one, is parsed by Beast's basic_parser, which earns its place there
// (the chunked decoder, chunk extensions, trailers, length framing, the body limit): it is
// started with a head of the framing fields alone, built here (some 40 bytes), so its header
// parse costs little. Body bytes go to a window the session provides (as with buffer_body).
// Trailer fields that may be passed on (header_rules.hpp, trailer_allowed) are kept apart from
// the head as the bytes of a trailer section; the others are dropped.

#include "http/head_field.hpp"
#include "wire/request_head.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/optional.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace wk::http {

// What a request's reader keeps, reused from one request to the next (a worker keeps a few):
// the capacities stay, so a warm worker reads a request without allocating.
struct request_storage {
  std::string bytes;         // the head, from the request line to its final CRLF
  wire::head_layout layout;  // where the scanner found its parts
  std::vector<head_field> fields;
  std::string trailers;  // "Name: value\r\n" per trailer field passed on
  std::size_t trailers_dropped = 0;
};

// One request (a reader is used once).
class request_reader {
public:
  // `storage` is cleared here and must outlive the reader.
  explicit request_reader(request_storage& storage);
  request_reader(const request_reader&) = delete;
  request_reader& operator=(const request_reader&) = delete;

  // Limits for the body: the bytes of a trailer section (as Beast's header_limit), and of the
  // body (none: any). Set before adopt().
  void header_limit(std::uint32_t n) { body_parser_.header_limit(n); }
  void body_limit(boost::optional<std::uint64_t> n) { body_limit_ = n; }

  // The scanner for this request's head: it notes the head's layout in the storage.
  wire::request_head_scanner scanner(wire::head_limits limits) {
    return wire::request_head_scanner{limits, s_->layout};
  }

  // Takes the head that scanner() found complete in `bytes` (the bytes it scanned). Returns the
  // error Beast's parser gives the same head, if any: bad_value (a Connection list),
  // bad_content_length, multiple_content_length, bad_transfer_encoding (framing in conflict),
  // body_limit (a Content-Length over body_limit).
  boost::system::error_code adopt(std::string_view bytes, const wire::head_scan& scan);

  // ---- The head (valid once adopt() succeeded, until the storage is reused).
  boost::beast::http::verb method() const { return verb_; }
  std::string_view method_string() const { return method_; }
  std::string_view target() const { return target_; }
  unsigned version() const { return version_; }
  // HTTP/1.1: no "close" in Connection; HTTP/1.0: "keep-alive" in Connection.
  bool keep_alive() const { return keep_alive_; }
  const std::vector<head_field>& fields() const { return s_->fields; }
  std::vector<head_field>::const_iterator begin() const { return s_->fields.begin(); }
  std::vector<head_field>::const_iterator end() const { return s_->fields.end(); }
  // The first value of `f`, or empty.
  std::string_view operator[](boost::beast::http::field f) const {
    return first_value(s_->fields, f);
  }
  std::size_t count(boost::beast::http::field f) const { return count_of(s_->fields, f); }

  // ---- Framing and the body.
  bool is_header_done() const { return adopted_; }
  bool is_done() const { return adopted_ && (!has_body_ || body_parser_.is_done()); }
  bool chunked() const { return chunked_; }
  boost::optional<std::uint64_t> content_length() const { return content_length_; }
  bool got_some() const { return true; }  // a request whose body is read has a head

  body_window& body() { return body_parser_.window; }
  // Parses body bytes (after adopt(), while !is_done()), as basic_parser::put.
  std::size_t put(boost::asio::const_buffer bytes, boost::system::error_code& ec);
  // The client closed: a body not yet complete is a partial message.
  void put_eof(boost::system::error_code& ec) { body_parser_.put_eof(ec); }

  // The trailer fields passed on, as the bytes of a trailer section (complete once
  // is_done()), and how many were dropped.
  std::string_view trailers() const { return s_->trailers; }
  std::size_t trailers_dropped() const { return s_->trailers_dropped; }

private:
  // Beast's parser for the body alone.
  class body_parser : public boost::beast::http::basic_parser<true> {
  public:
    explicit body_parser(request_reader& owner) : owner_(&owner) {}
    body_window window;

  private:
    void on_request_impl(boost::beast::http::verb, boost::beast::string_view,
                         boost::beast::string_view, int, boost::beast::error_code&) override {}
    void on_response_impl(int, boost::beast::string_view, int, boost::beast::error_code&) override {
    }
    void on_field_impl(boost::beast::http::field name, boost::beast::string_view name_string,
                       boost::beast::string_view value, boost::beast::error_code& ec) override;
    void on_header_impl(boost::beast::error_code&) override {}
    void on_body_init_impl(const boost::optional<std::uint64_t>&,
                           boost::beast::error_code&) override {}
    std::size_t on_body_impl(boost::beast::string_view body, boost::beast::error_code& ec) override;
    void on_chunk_header_impl(std::uint64_t, boost::beast::string_view,
                              boost::beast::error_code&) override {}
    std::size_t on_chunk_body_impl(std::uint64_t, boost::beast::string_view body,
                                   boost::beast::error_code& ec) override;
    void on_finish_impl(boost::beast::error_code&) override {}

    request_reader* owner_;
  };

  // Applies one field's framing rule (basic_parser::do_field).
  boost::system::error_code frame(const head_field& f);

  request_storage* s_;
  body_parser body_parser_;
  boost::optional<std::uint64_t> body_limit_;
  boost::optional<std::uint64_t> content_length_;
  std::string_view method_;
  std::string_view target_;
  boost::beast::http::verb verb_ = boost::beast::http::verb::unknown;
  unsigned version_ = 0;
  bool adopted_ = false;
  bool has_body_ = false;
  bool chunked_ = false;
  bool keep_alive_ = false;
  bool close_ = false;       // "close" in Connection
  bool keep_token_ = false;  // "keep-alive" in Connection
};

}  // namespace wk::http
