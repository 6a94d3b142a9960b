"""io_uring or epoll (`io:` and WKPROXY_IO, docs/operations.md#io_uring-or-epoll).

Where io_uring is refused, as Docker's and containerd's default seccomp profiles and systemd's
SystemCallFilter=@system-service refuse it, `io: auto` serves on epoll and says why, and
`io: io_uring` refuses to start. The refusal is real: a seccomp filter installed by
tests/integration/no_io_uring.py (io_uring_setup fails with EPERM) before it execs wkproxy.

The rest of the suite runs on whichever engine `auto` picks here (io_uring on Debian 12's
kernel), and tools/test.sh runs the integration tests a second time with WKPROXY_IO=epoll."""

import os
import subprocess
import sys
import unittest

from wkharness import (TENANT, Proxy, ProxyTestCase, make_config, request, wait_until,
                       wkproxy_bin)

HERE = os.path.dirname(os.path.abspath(__file__))
NO_IO_URING = [sys.executable, os.path.join(HERE, "no_io_uring.py")]
TOKEN_PATH = "/.well-known/pki-validation/0123456789abcdef0123456789abcdef.txt"
CLEAR = {"WKPROXY_IO": ""}  # the suite's second pass sets it; these tests choose for themselves


class IoEngineTest(ProxyTestCase):
    def start(self, extra="", env=None, prefix=()):
        origin = self.start_backend("origin")
        cf = self.start_backend("cloudfront")
        p = Proxy(make_config(origin.url, f"http://127.0.0.1:{cf.port}", extra=extra),
                  env={**CLEAR, **(env or {})}, prefix=prefix)
        self.addCleanup(p.stop)
        p.start()
        return origin, cf, p

    def assert_split(self, proxy, origin, cf):
        r = request(proxy.port, "GET", "/shop", host=TENANT)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(origin.requests[-1].path, "/shop")
        r = request(proxy.port, "GET", TOKEN_PATH, host=TENANT)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(cf.requests[-1].path, TOKEN_PATH)
        self.assertEqual(cf.requests[-1].header("host"), TENANT)

    def io_lines(self, proxy):
        """The "io: ..." lines logged so far (waiting for the first: stderr is read by a
        thread, which may lag behind the ports file under load)."""
        def lines():
            return [l for l in proxy.stderr().splitlines() if " io: " in l]
        wait_until(lambda: lines(), timeout=10)
        return lines()

    def test_auto_falls_back_to_epoll_where_seccomp_refuses_io_uring_and_says_why(self):
        origin, cf, proxy = self.start(prefix=NO_IO_URING)
        self.assertEqual(len(self.io_lines(proxy)), 1, proxy.stderr())
        self.assertIn("io: epoll (io_uring refused: io_uring_setup: Operation not permitted)",
                      self.io_lines(proxy)[0])
        self.assert_split(proxy, origin, cf)

    def test_auto_runs_on_io_uring_where_the_kernel_allows_it(self):
        origin, cf, proxy = self.start()
        self.assertEqual(len(self.io_lines(proxy)), 1, proxy.stderr())
        self.assertTrue(self.io_lines(proxy)[0].endswith("io: io_uring"), proxy.stderr())
        self.assert_split(proxy, origin, cf)

    def test_io_uring_demanded_and_refused_stops_the_start_with_the_reason(self):
        origin = self.start_backend("origin")
        cfg = make_config(origin.url, origin.url, extra="io: io_uring")
        p = Proxy(cfg, env=CLEAR, prefix=NO_IO_URING)
        with open(p.config_path, "w") as f:
            f.write(cfg)
        out = subprocess.run([*NO_IO_URING, wkproxy_bin(), "-c", p.config_path],
                             env={**os.environ, **CLEAR}, capture_output=True, text=True,
                             timeout=30)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn(p.config_path + ": io: io_uring is refused here: io_uring_setup: "
                      "Operation not permitted", out.stderr)

    def test_epoll_by_config_and_by_environment(self):
        origin, cf, proxy = self.start(extra="io: epoll")
        self.assertTrue(self.io_lines(proxy)[0].endswith("io: epoll (io: epoll)"), proxy.stderr())
        self.assert_split(proxy, origin, cf)
        origin, cf, proxy = self.start(extra="io: io_uring", env={"WKPROXY_IO": "epoll"})
        self.assertTrue(self.io_lines(proxy)[0].endswith("io: epoll (WKPROXY_IO: epoll)"),
                        proxy.stderr())
        self.assert_split(proxy, origin, cf)


if __name__ == "__main__":
    unittest.main()
