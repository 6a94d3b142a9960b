#include "session/exchange.hpp"

#include <charconv>

namespace wk::session {

bool idempotent(bhttp::verb v) {
  switch (v) {
  case bhttp::verb::get:
  case bhttp::verb::head:
  case bhttp::verb::options:
  case bhttp::verb::trace:
  case bhttp::verb::put:
  case bhttp::verb::delete_:
    return true;
  default:
    return false;
  }
}

bool may_retry(const request_parser& parser) {
  return idempotent(parser.method()) && !parser.chunked() &&
         parser.content_length().value_or(0) == 0;
}

response_framing build_downstream_response(const response_parser& rp, request_state& st,
                                           std::string& out) {
  const auto& in = rp;
  if (st.stopping != nullptr && *st.stopping) {
    st.client_keep_alive = false;  // a graceful stop began while this request was in flight
  }
  const auto status = in.result_int();
  out.clear();
  char digits[24];
  out.append("HTTP/1.1 ");
  out.append(digits, std::to_chars(digits, digits + sizeof digits, status).ptr);
  out.append(" ", 1);
  const auto reason = in.reason();
  const std::string_view text =
      reason.empty() ? std::string_view(bhttp::obsolete_reason(static_cast<bhttp::status>(status)))
                     : std::string_view(reason);
  out.append(text);
  out.append("\r\n", 2);
  http::head_writer fields(out);
  http::build_downstream_response_fields(in, fields);
  bool bodiless = st.head || status == 204 || status == 304;
  response_framing framing = response_framing::length;
  if (bodiless) {
    // HEAD and 304 answers describe a body they do not carry: keep the length as sent.
    framing = response_framing::none;
    auto cl = in[bhttp::field::content_length];
    if (!cl.empty() && status != 204) {
      fields.insert(bhttp::field::content_length, cl);
    }
  } else if (!rp.chunked() && rp.content_length()) {
    const auto end = std::to_chars(digits, digits + sizeof digits, *rp.content_length()).ptr;
    fields.insert(bhttp::field::content_length, std::string_view(digits, end - digits));
  } else if (st.http11) {
    framing = response_framing::chunked;
    fields.insert(bhttp::field::transfer_encoding, "chunked");
  } else {
    framing = response_framing::close;  // HTTP/1.0 client, no known length: the close ends it
    st.client_keep_alive = false;
  }
  if (!st.client_keep_alive) {
    fields.insert(bhttp::field::connection, "close");
  } else if (!st.http11) {
    fields.insert(bhttp::field::connection, "keep-alive");
  }
  out.append("\r\n", 2);
  return framing;
}

}  // namespace wk::session
