"""Zero downtime for every client: at a binary upgrade (SIGUSR2) the old process hands its
plain-HTTP client connections to the new one over a Unix socket (SCM_RIGHTS), idle ones at once
and busy ones after their current answer; what cannot move (TLS) and whatever stays in a
draining process is never closed while idle: it is answered once more, with Connection: close.

Every proxy here runs with the admin listener on, as the container image and the Kubernetes
manifest configure it.

How a test knows which process served a request on a kept socket: the old process has exited
(its pid reaped) before the request is sent, so only the new one can answer it; the new
process's wkproxy_upgrade_connections_total{direction="taken_over"} counts it."""

import json
import os
import hashlib
import signal
import socket
import ssl
import struct
import time
import unittest

from wkharness import (read_pid, pid_alive, ProxyTestCase, SocketReader, admin_config, admin_get, build_request,
                       pattern_sha256, wait_until)






def metric(exposition: str, name: str, labels: str) -> float:
    """The value of `name{labels}` in a Prometheus text exposition (0 when absent)."""
    prefix = f"{name}{{{labels}}} "
    for line in exposition.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return 0.0


class HandoffTestCase(ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.admin_line = admin_config()

    def start_all(self, extra="", **cfg):
        extra = "\n".join(x for x in (self.admin_line, extra) if x)
        return super().start_all(extra=extra, **cfg)

    def metrics(self, proxy) -> str:
        status, body = admin_get(proxy.admin_address, "/metrics")
        self.assertEqual(status, 200, body)
        return body.decode()

    def upgrade(self, proxy) -> int:
        """SIGUSR2 to the process serving now; returns the new pid once it serves (its pid in
        the ports file), registered to be killed at cleanup."""
        old = read_pid(proxy)
        os.kill(old, signal.SIGUSR2)
        try:
            wait_until(lambda: read_pid(proxy) != old, 15, what="the new process")
        except AssertionError as e:
            raise AssertionError(f"{e}; stderr:\n{proxy.stderr()[-3000:]}") from None
        new = read_pid(proxy)
        self.addCleanup(lambda: pid_alive(new) and os.kill(new, signal.SIGKILL))
        return new

    def wait_old_exit(self, proxy, within=5.0):
        """The old process (the harness's child) exits 0 well before drain_timeout (30 s): it
        had nothing left after handing its connections over."""
        t0 = time.monotonic()
        try:
            proxy.proc.wait(timeout=within)
        except Exception:
            raise AssertionError(f"the old process still runs {within}s after the upgrade; "
                                 f"stderr:\n{proxy.stderr()[-3000:]}") from None
        self.assertEqual(proxy.proc.returncode, 0, proxy.stderr()[-3000:])
        return time.monotonic() - t0

    def stop_new(self, pid, *clients):
        """SIGTERM to the new process, after closing the test's idle connections (a draining
        process keeps those until drain_timeout)."""
        for c in clients:
            c.close()
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not pid_alive(pid), 15, what="the new process to stop")


class ConnectionHandoffTest(HandoffTestCase):
    def test_an_idle_keepalive_connection_is_served_by_the_new_process_on_the_same_socket(self):
        origin, cf, proxy = self.start_all()
        idle = self.client(proxy)
        first = idle.request("GET", "/before")
        self.assertEqual(first.status, 200)
        self.assertNotEqual((first.header("connection") or "").lower(), "close")
        local = idle.sock.getsockname()
        new = self.upgrade(proxy)
        self.wait_old_exit(proxy)
        self.assertIn("handed 1 connection(s) to the new process", proxy.stderr())
        # The same socket, the old process gone: only the new one can answer.
        r = idle.request("GET", "/after")
        self.assertEqual(r.status, 200, r)
        self.assertNotEqual((r.header("connection") or "").lower(), "close", r)
        self.assertEqual(idle.sock.getsockname(), local)
        self.assertEqual(idle.request("GET", "/and-again").status, 200)
        m = self.metrics(proxy)
        self.assertEqual(metric(m, "wkproxy_upgrade_connections_total",
                                'direction="taken_over"'), 1.0, m)
        self.assertEqual([r.path for r in origin.requests], ["/before", "/after", "/and-again"])
        self.stop_new(new, idle)

    def test_many_idle_connections_all_move_and_a_second_upgrade_moves_them_again(self):
        origin, cf, proxy = self.start_all()
        clients = [self.client(proxy) for _ in range(40)]
        for i, c in enumerate(clients):
            self.assertEqual(c.request("GET", f"/before/{i}").status, 200)
        time.sleep(0.3)  # let some park (the parking lot) and some wait in the event loop
        first = self.upgrade(proxy)
        self.wait_old_exit(proxy)
        for i, c in enumerate(clients):
            r = c.request("GET", f"/after-first/{i}")
            self.assertEqual(r.status, 200, r)
        # The successor hands them on in turn (a connection is moved as often as needed).
        os.kill(first, signal.SIGUSR2)
        wait_until(lambda: read_pid(proxy) != first, 15, what="the second new process")
        second = read_pid(proxy)
        self.addCleanup(lambda: pid_alive(second) and os.kill(second, signal.SIGKILL))
        wait_until(lambda: not pid_alive(first), 10, what="the first successor to exit")
        for i, c in enumerate(clients):
            r = c.request("GET", f"/after-second/{i}")
            self.assertEqual(r.status, 200, r)
            self.assertNotEqual((r.header("connection") or "").lower(), "close", r)
        m = self.metrics(proxy)
        self.assertEqual(metric(m, "wkproxy_upgrade_connections_total",
                                'direction="taken_over"'), 40.0, m)
        self.stop_new(second, *clients)

    def test_a_busy_download_finishes_then_its_next_request_goes_to_the_new_process(self):
        origin, cf, proxy = self.start_all()
        size = 8 << 20
        busy = self.client(proxy, timeout=30)
        busy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        busy.send(build_request("GET", f"/bytes/{size}"))
        head = busy.reader.read_until(b"\r\n\r\n", 1 << 16)
        self.assertIn(b" 200 ", head.split(b"\r\n")[0])
        got = busy.reader.read_exact(1 << 20)  # the download is under way, and held back
        new = self.upgrade(proxy)
        time.sleep(0.3)
        self.assertTrue(proxy.alive(), "the old process must finish the download first")
        rest = b"".join(busy.reader.iter_exact(size - len(got)))
        self.assertEqual(hashlib.sha256(got + rest).hexdigest(), pattern_sha256(size))
        self.assertNotIn(b"connection: close", head.lower())
        # After its answer the connection moved; the old process then has nothing left.
        self.wait_old_exit(proxy)
        r = busy.request("GET", "/next")
        self.assertEqual(r.status, 200, r)
        self.assertNotEqual((r.header("connection") or "").lower(), "close", r)
        self.stop_new(new, busy)

    def test_a_second_upgrade_while_the_first_old_process_still_drains_loses_nothing(self):
        # The first successor is upgraded again before the original process has handed over
        # its busy connection: that successor must stay until the original is gone, then pass
        # the connection on to the newest process.
        origin, cf, proxy = self.start_all()
        busy = self.client(proxy, timeout=30)
        busy.send(build_request("GET", "/stall/3"))
        origin.wait_for_requests(1)
        first = self.upgrade(proxy)
        os.kill(first, signal.SIGUSR2)
        wait_until(lambda: read_pid(proxy) != first, 15, what="the second new process")
        second = read_pid(proxy)
        self.addCleanup(lambda: pid_alive(second) and os.kill(second, signal.SIGKILL))
        time.sleep(0.5)
        self.assertTrue(pid_alive(first), "the first successor left while the original could "
                                          "still hand it a connection")
        r = busy.read_response()
        self.assertEqual(r.status, 200, r)
        self.assertNotEqual((r.header("connection") or "").lower(), "close", r)
        self.wait_old_exit(proxy)
        wait_until(lambda: not pid_alive(first), 10, what="the first successor to exit")
        try:
            r = busy.request("GET", "/next")
        except Exception as e:
            raise AssertionError(f"{e!r}; stderr:\n{proxy.stderr()[-4000:]}") from None
        self.assertEqual(r.status, 200, r)
        self.assertNotEqual((r.header("connection") or "").lower(), "close", r)
        self.stop_new(second, busy)

    def test_pipelined_bytes_already_read_travel_with_the_connection(self):
        origin, cf, proxy = self.start_all()
        c = self.client(proxy, timeout=20)
        # The second request is read by the old process while it serves the first (slow) one.
        c.send(build_request("GET", "/stall/1.5") + build_request("GET", "/second"))
        origin.wait_for_requests(1)
        new = self.upgrade(proxy)
        r1 = c.read_response()
        self.assertEqual(r1.status, 200, r1)
        self.wait_old_exit(proxy)
        r2 = c.read_response()
        self.assertEqual(r2.status, 200, r2)
        self.assertEqual(c.request("GET", "/third").status, 200)
        self.assertEqual([r.path for r in origin.requests], ["/stall/1.5", "/second", "/third"])
        self.stop_new(new, c)

    def test_the_proxy_protocol_client_address_travels_with_the_connection(self):
        origin, cf, proxy = self.start_all(
            listen=({"address": "127.0.0.1:0", "accept_proxy_from": ["127.0.0.1"]},))
        c = self.client(proxy)
        src = socket.inet_aton("203.0.113.7")
        dst = socket.inet_aton("198.51.100.1")
        v2 = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", 12) + src +
              dst + struct.pack("!HH", 40000, 80))
        c.send(v2)
        self.assertEqual(c.request("GET", "/before").status, 200)
        self.assertEqual(origin.requests[-1].header("x-forwarded-for"), "203.0.113.7")
        new = self.upgrade(proxy)
        self.wait_old_exit(proxy)
        self.assertEqual(c.request("GET", "/after").status, 200)
        self.assertEqual(origin.requests[-1].path, "/after")
        self.assertEqual(origin.requests[-1].header("x-forwarded-for"), "203.0.113.7")
        self.stop_new(new, c)

    def test_a_successor_that_fails_leaves_every_connection_with_the_old_process(self):
        origin, cf, proxy = self.start_all()
        idle = [self.client(proxy) for _ in range(5)]
        for c in idle:
            self.assertEqual(c.request("GET", "/before").status, 200)
        old = read_pid(proxy)
        with open(proxy.config_path, "a") as f:
            f.write("broken: [\n")  # the new process cannot load it
        os.kill(old, signal.SIGUSR2)
        wait_until(lambda: "upgrade failed" in proxy.stderr(), 10, what="the failure")
        self.assertEqual(read_pid(proxy), old)
        for c in idle:
            r = c.request("GET", "/still-old")
            self.assertEqual(r.status, 200, r)
            self.assertNotEqual((r.header("connection") or "").lower(), "close", r)
        m = self.metrics(proxy)
        self.assertEqual(metric(m, "wkproxy_upgrade_connections_total",
                                'direction="handed_off"'), 0.0, m)
        self.assertTrue(proxy.alive())


class DrainTest(HandoffTestCase):
    def test_a_graceful_stop_keeps_an_idle_connection_until_its_next_request(self):
        origin, cf, proxy = self.start_all(extra="shutdown: {drain_timeout: 20s}")
        idle = self.client(proxy)
        self.assertEqual(idle.request("GET", "/before").status, 200)
        os.kill(proxy.pid, signal.SIGTERM)
        # Not closed under a client that may be sending: kept, and the process waits for it.
        self.assertFalse(idle.closed_by_peer(timeout=1.5), proxy.stderr()[-3000:])
        self.assertTrue(proxy.alive())
        r = idle.request("GET", "/last")
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.header("connection") or "").lower(), "close", r)
        self.assertTrue(idle.closed_by_peer(timeout=5))
        proxy.proc.wait(timeout=10)
        self.assertEqual(proxy.proc.returncode, 0)

    def test_the_drain_timeout_closes_what_is_still_idle(self):
        origin, cf, proxy = self.start_all(extra="shutdown: {drain_timeout: 1s}")
        idle = self.client(proxy)
        self.assertEqual(idle.request("GET", "/before").status, 200)
        t0 = time.monotonic()
        os.kill(proxy.pid, signal.SIGTERM)
        self.assertTrue(idle.closed_by_peer(timeout=10))
        proxy.proc.wait(timeout=10)
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        self.assertEqual(proxy.proc.returncode, 0)
        self.assertIn("drain_timeout reached with 1 connection(s) open", proxy.stderr())

    def test_a_tls_connection_stays_with_the_old_process_and_is_answered_once_more(self):
        cert, key = self.ca.issue("site", ("a.example.test",))
        origin, cf, proxy = self.start_all(
            listen=("127.0.0.1:0", {"address": "127.0.0.1:0", "mode": "tls",
                                    "certificates": [{"cert": cert, "key": key}]}))
        c = self.client(proxy, index=1)
        ctx = ssl.create_default_context(cafile=self.ca.ca_pem)
        c.sock = ctx.wrap_socket(c.sock, server_hostname="a.example.test")
        c.reader = SocketReader(c.sock)
        self.assertEqual(c.request("GET", "/before").status, 200)
        new = self.upgrade(proxy)
        # Its OpenSSL state cannot move: it keeps the old process draining, and is not closed
        # while idle.
        self.assertFalse(c.closed_by_peer(timeout=1.0))
        self.assertTrue(proxy.alive(), "the TLS connection keeps the old process draining")
        r = c.request("GET", "/after")
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.header("connection") or "").lower(), "close", r)
        self.wait_old_exit(proxy, within=10)
        self.stop_new(new)


if __name__ == "__main__":
    unittest.main()
