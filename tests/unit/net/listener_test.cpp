// The accept loops' pacing after a failed accept (net::accept_backoff). That the loops use it
// under a real descriptor shortage is tests/integration/test_faults_under_load.py.

#include "net/listener.hpp"

#include <doctest/doctest.h>

#include <chrono>

using std::chrono::milliseconds;
using wk::net::accept_backoff;

TEST_CASE("accept failures wait 10 ms, doubling up to 1 s") {
  accept_backoff b;
  CHECK_FALSE(b.in_episode());
  CHECK(b.failed() == milliseconds(10));
  CHECK(b.in_episode());
  CHECK(b.failed() == milliseconds(20));
  CHECK(b.failed() == milliseconds(40));
  CHECK(b.failed() == milliseconds(80));
  CHECK(b.failed() == milliseconds(160));
  CHECK(b.failed() == milliseconds(320));
  CHECK(b.failed() == milliseconds(640));
  CHECK(b.failed() == milliseconds(1'000));
  for (int i = 0; i < 100; ++i) {
    CHECK(b.failed() == milliseconds(1'000));  // never longer, never a busy loop
  }
}

TEST_CASE("a success ends the episode, reports its failures and resets the pace") {
  accept_backoff b;
  CHECK(b.succeeded() == 0);  // no episode: nothing to report
  b.failed();
  b.failed();
  b.failed();
  CHECK(b.succeeded() == 3);
  CHECK_FALSE(b.in_episode());
  CHECK(b.succeeded() == 0);
  CHECK(b.failed() == milliseconds(10));  // a new episode starts from the shortest wait
}

TEST_CASE("no wait is zero, and the longest is at most a second") {
  static_assert(accept_backoff::shortest > milliseconds(0));
  static_assert(accept_backoff::longest <= milliseconds(1'000));
  accept_backoff b;
  milliseconds total{0};
  for (int i = 0; i < 12; ++i) {
    total += b.failed();
  }
  // 10+20+...+640 = 1270 ms, then 5 x 1 s: about 7 accepts a second at worst.
  CHECK(total == milliseconds(1'270 + 5'000));
}
