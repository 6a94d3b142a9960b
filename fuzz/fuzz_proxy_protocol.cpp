// The PROXY protocol v1/v2 reader on arbitrary bytes: bounds-safe; an accepted header has an
// exact length within the input, and its addresses survive a build -> parse round trip in
// both versions.

#include "fuzz_check.hpp"
#include "wire/proxy_protocol.hpp"

#include <cstdint>
#include <string_view>

namespace {

bool same_address(const wk::wire::pp_address& a, const wk::wire::pp_address& b) {
  return a.family == b.family && a.src_string() == b.src_string() &&
         a.dst_string() == b.dst_string() && a.src_port == b.src_port && a.dst_port == b.dst_port;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const auto r = wk::wire::parse_proxy_header(in);
  if (r.status != wk::wire::pp_status::ok) {
    FUZZ_CHECK(r.status == wk::wire::pp_status::need_more || !r.reason.empty());
    return 0;
  }
  FUZZ_CHECK(r.length > 0 && r.length <= size);
  FUZZ_CHECK(r.version == 1 || r.version == 2);
  // The header alone parses the same as the header followed by anything.
  const auto alone = wk::wire::parse_proxy_header(in.substr(0, r.length));
  FUZZ_CHECK(alone.status == wk::wire::pp_status::ok && alone.length == r.length);
  if (r.local || r.addr.family == wk::wire::pp_family::unknown) {
    return 0;
  }
  for (const auto& built :
       {wk::wire::build_proxy_v1(r.addr), wk::wire::build_proxy_v2(r.addr, false)}) {
    const auto back = wk::wire::parse_proxy_header(built);
    FUZZ_CHECK(back.status == wk::wire::pp_status::ok && back.length == built.size());
    FUZZ_CHECK(same_address(back.addr, r.addr));
  }
  return 0;
}
