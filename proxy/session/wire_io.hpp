#pragma once
// The session's reads and writes: whole writes, a head with a piece of body in one
// scatter/gather write (plain or as a chunk), and Beast's parser fed without its detours.
// Templates over the stream type (a timed_stream, a TLS stream over one, or a test stream).

#include "core/asio.hpp"
#include "session/context.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/read_size.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/optional/optional.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <span>
#include <string_view>

namespace wk::session {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

using core::is_timeout;
using core::nothrow;

inline bool is_http_parse_error(const boost::system::error_code& ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::bad_chunk).category();
}

// Beast reads at most the free capacity of the buffer it parses from (512 bytes minimum):
// without room, a large body would move in sub-kilobyte steps, two system calls each. Room for
// up to 64 KiB per read is made when more body is to come; the buffers shrink back when idle.
inline constexpr std::size_t body_read_size = 4 * body_chunk_size;

inline void reserve_for_body(beast::flat_buffer& buf, boost::optional<std::uint64_t> content_length,
                             bool done) {
  if (done) {
    return;
  }
  std::size_t want = body_read_size;
  if (content_length && *content_length < want) {
    want = static_cast<std::size_t>(*content_length);
  }
  const auto target = std::min(buf.size() + want, buf.max_size());
  if (buf.capacity() < target) {
    buf.reserve(target);
  }
}

template <class Stream>
asio::awaitable<boost::system::error_code> write_all(Stream& s, std::string_view bytes) {
  auto [ec, n] = co_await asio::async_write(s, asio::buffer(bytes.data(), bytes.size()), nothrow);
  co_return ec;
}

// A head and a piece of body as one buffer sequence held by value: the write operation keeps
// its own copy, so no coroutine frame has to hold it.
struct head_and_body {
  std::array<asio::const_buffer, 2> parts;
  std::size_t count = 0;
  const asio::const_buffer* begin() const { return parts.data(); }
  const asio::const_buffer* end() const { return parts.data() + count; }
};

// Writes `head` and `size` bytes at `data` (together not empty) as they are, in one
// scatter/gather write. Not a coroutine: the common case costs one operation and nothing else.
template <class Stream>
auto write_plain(Stream& s, std::string_view head, const char* data, std::size_t size) {
  head_and_body seq;
  if (!head.empty()) {
    seq.parts[seq.count++] = asio::buffer(head.data(), head.size());
  }
  if (size > 0) {
    seq.parts[seq.count++] = asio::buffer(data, size);
  }
  return asio::async_write(s, seq, nothrow);
}

// Writes `head` (may be empty) and one piece of a body in one scatter/gather write: the bytes
// as they are, or as one chunk of a chunked body followed, when `last`, by the last chunk with
// `trailers` (complete "Name: value\r\n" lines, may be empty). `written`, when given, gets the
// number of bytes written (also on failure).
template <class Stream>
asio::awaitable<boost::system::error_code>
write_piece(Stream& s, std::string_view head, const char* data, std::size_t size, bool chunked,
            bool last, std::string_view trailers = {}, std::size_t* written = nullptr) {
  if (!chunked) {
    if (head.empty() && size == 0) {
      co_return boost::system::error_code{};
    }
    auto [ec, n] = co_await write_plain(s, head, data, size);
    if (written != nullptr) {
      *written = n;
    }
    co_return ec;
  }
  std::array<asio::const_buffer, 6> bufs;
  std::size_t n = 0;
  char size_line[24];
  if (!head.empty()) {
    bufs[n++] = asio::buffer(head.data(), head.size());
  }
  if (size > 0) {
    auto end = std::to_chars(size_line, size_line + sizeof size_line - 2, size, 16).ptr;
    *end++ = '\r';
    *end++ = '\n';
    bufs[n++] = asio::buffer(size_line, static_cast<std::size_t>(end - size_line));
    bufs[n++] = asio::buffer(data, size);
    bufs[n++] = last ? asio::buffer("\r\n0\r\n", 5) : asio::buffer("\r\n", 2);
  } else if (last) {
    bufs[n++] = asio::buffer("0\r\n", 3);
  }
  if (last) {
    if (!trailers.empty()) {
      bufs[n++] = asio::buffer(trailers.data(), trailers.size());
    }
    bufs[n++] = asio::buffer("\r\n", 2);
  }
  if (n == 0) {
    co_return boost::system::error_code{};
  }
  auto [ec, w] =
      co_await asio::async_write(s, std::span<const asio::const_buffer>(bufs.data(), n), nothrow);
  if (written != nullptr) {
    *written = w;
  }
  co_return ec;
}

// Chunked framing never has a bare LF. When the parser waits for more and leaves bytes
// unconsumed, they start a framing line (a chunk size, the CRLF after data, a trailer); a bare LF
// there means the parser would wait forever (RFC 9112 7.1). Call only in that state.
template <class Parser>
bool bare_lf_in_chunk_framing(const Parser& p, const beast::flat_buffer& buf) {
  if (!p.chunked() || p.is_done()) {
    return false;
  }
  auto data = buf.data();
  std::string_view rest{static_cast<const char*>(data.data()), data.size()};
  for (auto i = rest.find('\n'); i != std::string_view::npos; i = rest.find('\n', i + 1)) {
    if (i == 0 || rest[i - 1] != '\r') {
      return true;
    }
  }
  return false;
}

// Boost 1.81's chunk parser asserts (debug builds only: the code after the assert is right) when
// the last chunk's size line was parsed, the trailer is incomplete and the next put has fewer
// than 5 bytes: "0\r\n" then one more byte, an empty chunked body arriving in pieces
// (boostorg/beast#2861, fixed upstream in 2024). Such bytes are never a whole message (put would
// say need_more), so they wait for the next read instead.
template <class Parser> bool final_chunk_too_short(const Parser& p, const beast::flat_buffer& buf) {
  if (!p.chunked() || !p.is_header_done() || p.is_done() || buf.size() >= 5) {
    return false;
  }
  auto data = buf.data();
  std::string_view rest{static_cast<const char*>(data.data()), data.size()};
  return rest.starts_with("0\r\n") || rest.starts_with("00\r\n");
}

// Beast's async_read_some over a parser, without its detours: bytes already in `buf` are
// parsed first with no I/O (the usual case once a header has arrived), and no completion is
// posted. need_buffer means the body buffer is full.
// `Parser`: a basic_parser (a backend's response), or a request_reader.
template <class Stream, class Parser>
asio::awaitable<boost::system::error_code> read_parsed(Stream& s, beast::flat_buffer& buf,
                                                       Parser& p) {
  boost::system::error_code ec;
  if (buf.size() > 0 && !final_chunk_too_short(p, buf)) {
    buf.consume(p.put(buf.data(), ec));
    if (ec != bhttp::error::need_more) {
      co_return ec;
    }
    if (bare_lf_in_chunk_framing(p, buf)) {
      co_return bhttp::error::bad_chunk;
    }
  }
  for (;;) {
    const auto size = beast::read_size(buf, 65536);
    if (size == 0) {
      co_return bhttp::error::buffer_overflow;
    }
    auto [rec, n] = co_await s.async_read_some(buf.prepare(size), nothrow);
    buf.commit(n);
    if (rec == asio::error::eof) {
      if (!p.got_some()) {
        co_return bhttp::error::end_of_stream;
      }
      rec = {};
      p.put_eof(rec);  // a close-delimited body ends here, anything else is partial
      co_return rec;
    }
    if (rec) {
      co_return rec;
    }
    if (final_chunk_too_short(p, buf)) {
      continue;
    }
    ec = {};
    buf.consume(p.put(buf.data(), ec));
    if (ec != bhttp::error::need_more) {
      co_return ec;
    }
    // Any packet, not only the first: a framing line with a bare LF would wait for body_idle.
    if (bare_lf_in_chunk_framing(p, buf)) {
      co_return bhttp::error::bad_chunk;
    }
  }
}

}  // namespace wk::session
