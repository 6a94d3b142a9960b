// The TLS ClientHello reader on arbitrary bytes: bounds-safe, and consistent: "need more" asks
// for more than it has, a hello read whole reads the same from any longer input, and a
// server name is a plausible lower-case DNS name.

#include "fuzz_check.hpp"
#include "wire/client_hello.hpp"

#include <algorithm>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const auto h = wk::wire::parse_client_hello(in);
  switch (h.status) {
  case wk::wire::hello_status::need_more:
    FUZZ_CHECK(h.bytes_needed == 0 || h.bytes_needed > size);
    break;
  case wk::wire::hello_status::ok:
    FUZZ_CHECK(h.sni.size() <= 255);
    FUZZ_CHECK(std::none_of(h.sni.begin(), h.sni.end(), [](char c) {
      return (c >= 'A' && c <= 'Z') || static_cast<unsigned char>(c) < 0x21;
    }));
    for (const auto& p : h.alpn) {
      FUZZ_CHECK(!p.empty() && p.size() <= 255);
    }
    break;
  default:
    FUZZ_CHECK(!h.reason.empty());
    break;
  }
  // Every prefix of an input that parses is "need more" or the same verdict.
  if (h.status == wk::wire::hello_status::ok && size > 1) {
    const auto half = wk::wire::parse_client_hello(in.substr(0, size / 2));
    FUZZ_CHECK(half.status == wk::wire::hello_status::need_more ||
               (half.status == wk::wire::hello_status::ok && half.sni == h.sni));
  }
  return 0;
}
