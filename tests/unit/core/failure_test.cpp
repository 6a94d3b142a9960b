#include "core/failure.hpp"

#include <doctest/doctest.h>

using wk::core::failure;

TEST_CASE("each failure maps to the documented status") {
  struct row {
    failure f;
    unsigned status;
  };
  const row rows[] = {
      {failure::bad_request, 400},
      {failure::method_not_allowed, 405},
      {failure::header_timeout, 408},
      {failure::body_too_large, 413},
      {failure::target_too_long, 414},
      {failure::header_too_large, 431},
      {failure::version_not_supported, 505},
      {failure::not_implemented, 501},
      {failure::upstream_unresolved, 502},
      {failure::upstream_refused, 502},
      {failure::upstream_connect_timeout, 504},
      {failure::upstream_tls, 502},
      {failure::upstream_reset, 502},
      {failure::upstream_bad_response, 502},
      {failure::upstream_timeout, 504},
      {failure::client_gone, 0},
      {failure::client_timeout, 0},
      {failure::too_many_connections, 503},
      {failure::internal, 500},
  };
  for (const auto& r : rows) {
    CAPTURE(wk::core::name_of(r.f));
    CHECK(wk::core::status_for(r.f) == r.status);
    CHECK_FALSE(wk::core::describe(r.f).empty());
  }
}
