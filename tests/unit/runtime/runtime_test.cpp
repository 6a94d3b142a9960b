#include "runtime/runtime.hpp"

#include <doctest/doctest.h>

#include <string>

namespace {

wk::upstream::target target(std::string key) {
  wk::upstream::target t;
  t.key = std::move(key);
  return t;
}

}  // namespace

TEST_CASE("a passthrough listener picks an exact SNI route, then a one-label wildcard") {
  wk::runtime::listener_runtime l;
  l.passthrough = target("default");
  l.sni_routes.push_back({"*.example.com", target("wildcard")});
  l.sni_routes.push_back({"www.example.com", target("www")});
  l.sni_routes.push_back({"*.b.example.com", target("b-wildcard")});

  CHECK(l.passthrough_for("www.example.com").key == "www");  // exact beats an earlier wildcard
  CHECK(l.passthrough_for("api.example.com").key == "wildcard");
  CHECK(l.passthrough_for("a.b.example.com").key == "b-wildcard");
  CHECK(l.passthrough_for("x.a.example.com").key == "default");  // two more labels
  CHECK(l.passthrough_for("example.com").key == "default");      // no label at all
  CHECK(l.passthrough_for("").key == "default");                 // no SNI
}
