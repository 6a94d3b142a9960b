#include "session/read_request.hpp"

#include <limits>
#include <string_view>

namespace wk::session {

using core::failure;

boost::optional<std::uint64_t> body_limit_for(const config::limits& l) {
  if (l.max_body_bytes == 0) {
    return std::numeric_limits<std::uint64_t>::max();
  }
  return l.max_body_bytes;
}

failure failure_for(wire::head_status s) {
  using wire::head_status;
  switch (s) {
  case head_status::invalid:
    return failure::bad_request;
  case head_status::bad_version:
    return failure::version_not_supported;
  case head_status::target_too_long:
    return failure::target_too_long;
  case head_status::too_large:
    return failure::header_too_large;
  case head_status::incomplete:
  case head_status::complete:
    break;
  }
  return failure::internal;
}

fault prefetch_body(request_parser& parser, beast::flat_buffer& cbuf, body_buffer& chunk,
                    request_state& st) {
  std::size_t filled = 0;
  bool stuck = false;  // the parser waits for more and leaves bytes unconsumed: a framing line
  while (!parser.is_done() && cbuf.size() > 0 && filled < chunk.size()) {
    auto room = chunk.size() - filled;
    parser.body().data = chunk.data() + filled;
    parser.body().size = room;
    boost::system::error_code ec;
    auto used = parser.put(cbuf.data(), ec);
    cbuf.consume(used);
    filled += room - parser.body().size;
    if (ec == bhttp::error::need_more || ec == bhttp::error::need_buffer) {
      if (used == 0) {
        stuck = ec == bhttp::error::need_more;
        break;
      }
      continue;
    }
    if (ec) {
      st.prefetched = 0;
      return fault{ec == bhttp::error::body_limit ? failure::body_too_large : failure::bad_request,
                   "request body: " + ec.message()};
    }
  }
  st.prefetched = filled;
  st.bytes_in += filled;
  if (stuck && bare_lf_in_chunk_framing(parser, cbuf)) {
    return fault{failure::bad_request, "request body: bare LF in chunked framing"};
  }
  return fault{};
}

fault check_body_limit(const request_parser& parser, const config::limits& limits) {
  if (auto cl = parser.content_length();
      cl && limits.max_body_bytes != 0 && *cl > limits.max_body_bytes) {
    return fault{failure::body_too_large,
                 "limit is " + std::to_string(limits.max_body_bytes) + " bytes"};
  }
  return fault{};
}

}  // namespace wk::session
