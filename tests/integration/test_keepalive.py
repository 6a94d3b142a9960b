"""Keep-alive on both sides, upstream connection reuse, pipelining, and bodiless responses."""

import os
import signal
import socket
import threading
import time
import unittest

from wkharness import (TENANT, ProxyTestCase, build_request, curl, pattern_sha256, request,
                       wait_until)

TOKEN_PATH = "/.well-known/pki-validation/p.txt"


class KeepAliveTest(ProxyTestCase):
    def test_sequential_requests_on_one_client_connection_use_one_upstream_connection(self):
        origin, cf, proxy = self.start_all()
        c = self.client(proxy)
        for i in range(20):
            r = c.request("GET", f"/seq/{i}")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["target"], f"/seq/{i}")
        self.assertEqual(len(origin.requests), 20)
        self.assertEqual(origin.connections, 1,
                         f"20 sequential requests should reuse 1 upstream connection, origin "
                         f"accepted {origin.connections}")
        self.assertEqual({rec.conn_id for rec in origin.requests}, {1})

    def test_separate_client_connections_share_the_upstream_pool(self):
        origin, cf, proxy = self.start_all(workers=1)
        for i in range(10):
            r = curl(proxy.url(f"/curl/{i}"), "-H", f"Host: {TENANT}")
            self.assertEqual(r.status, 200, r)
        self.assertEqual(len(origin.requests), 10)
        self.assertLess(origin.connections, 10, "no upstream connection was reused")
        self.assertLessEqual(origin.connections, 2)

    def test_validation_route_reuses_its_tls_connection(self):
        origin, cf, proxy = self.start_all()
        c = self.client(proxy)
        for i in range(5):
            r = c.request("GET", f"/.well-known/pki-validation/t{i}.txt")
            self.assertEqual((r.status, r.body), (200, f"token-body-for-t{i}.txt".encode()), r)
        self.assertEqual(len(cf.requests), 5)
        self.assertEqual(cf.connections, 1, "the TLS upstream connection should be pooled")

    def test_pipelined_requests_are_answered_in_order_and_routed_each_on_their_own(self):
        origin, cf, proxy = self.start_all()
        c = self.client(proxy)
        c.send(build_request("GET", "/first") + build_request("GET", TOKEN_PATH) +
               build_request("POST", "/upload", body=b"z" * 5000) +
               build_request("GET", "/last", host="www.tenant.example"))
        r1 = c.read_response()
        r2 = c.read_response()
        r3 = c.read_response()
        r4 = c.read_response()
        self.assertEqual((r1.status, r1.header("x-backend"), r1.json()["target"]),
                         (200, "origin", "/first"))
        self.assertEqual((r2.status, r2.header("x-backend"), r2.body),
                         (200, "cloudfront", b"token-body-for-p.txt"))
        self.assertEqual((r3.status, r3.json()["length"]), (200, 5000))
        self.assertEqual((r4.status, r4.json()["target"]), (200, "/last"))
        self.assertEqual([rec.target for rec in origin.requests], ["/first", "/upload", "/last"])
        self.assertEqual([rec.target for rec in cf.requests], [TOKEN_PATH])
        self.assertEqual(origin.requests[2].header("host"), "www.tenant.example")
        # The connection is still usable afterwards.
        r5 = c.request("GET", "/after")
        self.assertEqual(r5.status, 200, r5)

    def test_head_response_has_headers_but_no_body(self):
        origin, cf, proxy = self.start_all()
        c = self.client(proxy)
        r = c.request("HEAD", "/bytes/1000")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("content-length"), "1000")
        self.assertEqual(r.body, b"")
        r = c.request("HEAD", TOKEN_PATH)
        self.assertEqual((r.status, r.body, r.header("x-backend")), (200, b"", "cloudfront"))
        # Framing intact: the next response on the connection parses and is complete.
        r = c.request("GET", "/bytes/1000")
        self.assertEqual((r.status, r.body_sha256), (200, pattern_sha256(1000)))
        self.assertEqual([x.method for x in origin.requests], ["HEAD", "GET"])

    def test_204_and_304_have_no_body_and_keep_the_connection(self):
        origin, cf, proxy = self.start_all()
        c = self.client(proxy)
        c.send(build_request("GET", "/status/204") + build_request("GET", "/status/304") +
               build_request("GET", "/bytes/10"))
        r204, r304, r = c.read_response(), c.read_response(), c.read_response()
        self.assertEqual((r204.status, r204.body), (204, b""))
        self.assertEqual((r304.status, r304.body), (304, b""))
        self.assertIsNone(r204.header("transfer-encoding"))
        self.assertIn(r204.header("content-length"), (None, "0"))
        self.assertEqual((r.status, r.body_sha256), (200, pattern_sha256(10)))
        self.assertEqual(origin.connections, 1)

    def test_connection_close_from_client_closes_after_the_response(self):
        origin, cf, proxy = self.start_all()
        c = self.client(proxy)
        r = c.request("GET", "/bye", headers=[("Connection", "close")])
        self.assertEqual(r.status, 200, r)
        self.assertTrue(c.closed_by_peer(), "the proxy should close after Connection: close")

    def test_http10_client_gets_a_response_and_backend_gets_http11(self):
        origin, cf, proxy = self.start_all()
        c = self.client(proxy)
        c.send(build_request("GET", "/old", version="HTTP/1.0"))
        r = c.read_response()
        self.assertEqual(r.status, 200, r)
        self.assertTrue(c.closed_by_peer(), "an HTTP/1.0 client without keep-alive is closed")
        (rec,) = origin.requests
        self.assertEqual((rec.version, rec.header("host")), ("HTTP/1.1", TENANT))

    def test_backend_closing_its_connection_is_not_reused(self):
        origin, cf, proxy = self.start_all()
        c = self.client(proxy)
        r = c.request("GET", "/close-after")
        self.assertEqual((r.status, r.body), (200, b"closing\n"), r)
        # The backend's Connection: close is hop-by-hop: the client connection stays open.
        r = c.request("GET", "/next")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(origin.connections, 2)

    def test_bytes_past_the_body_keep_a_backend_connection_out_of_the_pool(self):
        origin, cf, proxy = self.start_all()
        c = self.client(proxy)
        r = c.request("GET", "/overlong")
        self.assertEqual((r.status, r.body), (200, b"hello"), r)
        r = c.request("GET", "/next")
        self.assertEqual((r.status, r.json()["target"]), (200, "/next"), r)
        self.assertEqual(origin.connections, 2, "a connection with stray bytes was reused")

    def test_stale_pooled_connection_closed_by_backend_while_idle(self):
        # The backend drops idle connections after 0.3 s, well before upstream_idle (4 s): the
        # proxy must notice the pooled connection is dead and not fail the next request.
        origin, cf, proxy = self.start_all(origin_kw={"idle_timeout": 0.3})
        c = self.client(proxy)
        self.assertEqual(c.request("GET", "/one").status, 200)
        wait_until(lambda: origin.open_connections == 0, 5, what="backend to close idle conn")
        r = c.request("GET", "/two")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(origin.connections, 2)

    def test_a_quiet_connection_parks_and_its_next_requests_are_served_on_it(self):
        # Quiet for a few sweep ticks (0.1 s each), a keep-alive connection is parked: out of
        # the event loop with no buffer. Its next request wakes it; a request split across the
        # wake-up, and pipelined ones, are answered in order on the same connection.
        origin, cf, proxy = self.start_all(workers=1)
        c = self.client(proxy)
        self.assertEqual(c.request("GET", "/before").status, 200)
        for i in range(3):
            time.sleep(0.45)
            r = c.request("GET", f"/after/{i}")
            self.assertEqual((r.status, r.json()["target"]), (200, f"/after/{i}"), r)
        time.sleep(0.45)
        head = build_request("GET", "/split")
        c.send(head[:10])
        time.sleep(0.45)  # parked again between the two halves? it must not matter
        c.send(head[10:] + build_request("GET", "/pipelined"))
        r1, r2 = c.read_response(), c.read_response()
        self.assertEqual((r1.status, r1.json()["target"]), (200, "/split"), r1)
        self.assertEqual((r2.status, r2.json()["target"]), (200, "/pipelined"), r2)
        self.assertEqual(origin.connections, 1)

    def test_a_parked_connection_closes_at_the_idle_timeout(self):
        origin, cf, proxy = self.start_all(timeouts={"idle": "700ms"})
        c = self.client(proxy)
        self.assertEqual(c.request("GET", "/one").status, 200)
        start = time.monotonic()
        self.assertTrue(c.closed_by_peer(timeout=5.0), "parked connection never closed")
        elapsed = time.monotonic() - start
        self.assertGreaterEqual(elapsed, 0.6)
        self.assertLess(elapsed, 2.0)

    def test_a_stop_keeps_parked_connections_until_their_next_request(self):
        origin, cf, proxy = self.start_all(timeouts={"idle": "60s"},
                                           extra="shutdown: {drain_timeout: 30s}")
        clients = [self.client(proxy) for _ in range(5)]
        for c in clients:
            self.assertEqual(c.request("GET", "/x").status, 200)
        time.sleep(0.5)  # all parked
        os.kill(proxy.pid, signal.SIGTERM)
        time.sleep(0.5)
        for i, c in enumerate(clients):
            self.assertFalse(c.closed_by_peer(timeout=0.1), f"client {i} closed while idle")
            r = c.request("GET", f"/last/{i}")
            self.assertEqual((r.status, (r.header("connection") or "").lower()), (200, "close"))
            self.assertTrue(c.closed_by_peer(timeout=5.0))
        start = time.monotonic()
        proxy.proc.wait(timeout=10)
        self.assertLess(time.monotonic() - start, 5.0)
        self.assertEqual(proxy.stop(), 0)

    def test_concurrent_clients_are_all_served(self):
        origin, cf, proxy = self.start_all()
        results, errors = [], []

        def worker(i):
            try:
                with self.client(proxy) as c:
                    for j in range(5):
                        path = TOKEN_PATH if j % 2 else f"/c/{i}/{j}"
                        results.append(c.request("GET", path).status)
            except Exception as e:  # reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        self.assertEqual(errors, [])
        self.assertEqual(results, [200] * 40)
        self.assertLessEqual(origin.connections, 8)
        self.assertEqual(len(origin.requests) + len(cf.requests), 40)


class ConnectionLimitsTest(ProxyTestCase):
    def test_max_requests_per_connection_closes_after_the_last_answer(self):
        origin, cf, proxy = self.start_all(limits={"max_requests_per_connection": 3})
        c = self.client(proxy)
        for i in range(2):
            r = c.request("GET", f"/n/{i}")
            self.assertEqual(r.status, 200, r)
            self.assertNotEqual((r.header("connection") or "").lower(), "close")
        r = c.request("GET", "/n/2")
        self.assertEqual((r.status, (r.header("connection") or "").lower()), (200, "close"), r)
        self.assertTrue(c.closed_by_peer(), "the connection should close after the 3rd answer")
        self.assertEqual(len(origin.requests), 3)
        proxy.stop()
        self.assertIn("requests_per_connection=1", proxy.stderr())

    def test_max_pipelined_answers_that_many_then_closes(self):
        origin, cf, proxy = self.start_all(limits={"max_pipelined": 2})
        c = self.client(proxy)
        c.send(b"".join(build_request("GET", f"/p/{i}") for i in range(4)))
        r1 = c.read_response()
        r2 = c.read_response()
        self.assertEqual((r1.status, r1.json()["target"]), (200, "/p/0"))
        self.assertEqual((r2.status, r2.json()["target"], (r2.header("connection") or "").lower()),
                         (200, "/p/1", "close"))
        self.assertTrue(c.closed_by_peer(), "requests past the limit are not answered")
        self.assertEqual([rec.target for rec in origin.requests], ["/p/0", "/p/1"])
        # Requests that wait for their answer are not pipelined: no limit applies.
        c2 = self.client(proxy)
        for i in range(5):
            self.assertEqual(c2.request("GET", f"/s/{i}").status, 200)
        proxy.stop()
        self.assertIn("pipelined=1", proxy.stderr())

    def test_a_long_pipeline_is_answered_whole_by_default(self):
        """50 requests sent in one burst, as nginx and HAProxy answer them: every one answered,
        in order, on the same connection (the old default cap answered 32 and closed)."""
        origin, cf, proxy = self.start_all()
        c = self.client(proxy)
        c.send(b"".join(build_request("GET", f"/burst/{i}") for i in range(50)))
        for i in range(50):
            r = c.read_response()
            self.assertEqual((r.status, r.json()["target"]), (200, f"/burst/{i}"))
            self.assertNotEqual((r.header("connection") or "").lower(), "close", f"answer {i}")
        self.assertEqual(c.request("GET", "/after").status, 200)
        self.assertEqual([rec.target for rec in origin.requests],
                         [f"/burst/{i}" for i in range(50)] + ["/after"])

    def test_exit_summary_counts_rejected_requests(self):
        origin, cf, proxy = self.start_all()
        c = self.client(proxy)
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n")
        r = c.read_response()
        self.assertLocalError(r, 400, closed=True)
        self.assertIn(b"obsolete line folding", r.body)
        proxy.stop()
        self.assertIn("bad_request=1", proxy.stderr())
        self.assertEqual(origin.connections, 0)


if __name__ == "__main__":
    unittest.main()


def socket_flags(pid: int, local_port: int, remote_port: int) -> int:
    """The file status flags (fdinfo, octal) of process `pid`'s TCP socket from `local_port` to
    `remote_port` on loopback."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], fields[9]
                if (int(local.rsplit(":", 1)[1], 16) == local_port and
                        int(remote.rsplit(":", 1)[1], 16) == remote_port):
                    inodes.add(f"socket:[{inode}]")
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    for line in f:
                        if line.startswith("flags:"):
                            return int(line.split()[1], 8)
        except FileNotFoundError:
            continue
    raise AssertionError(f"no socket {local_port} -> {remote_port} in process {pid}")


class AcceptTest(ProxyTestCase):
    def test_an_accepted_connection_is_non_blocking_and_close_on_exec(self):
        """No client connection may leak into a child process (an upgrade's successor, or
        anything wkproxy ever starts): accepted sockets are born close-on-exec."""
        origin, cf, proxy = self.start_all(workers=1)
        c = self.client(proxy)
        self.assertEqual(c.request("GET", "/fd").status, 200)
        client_port = c.sock.getsockname()[1]
        flags = socket_flags(proxy.pid, proxy.port, client_port)
        self.assertTrue(flags & os.O_CLOEXEC, f"flags {flags:o}: not close-on-exec")
        self.assertTrue(flags & os.O_NONBLOCK, f"flags {flags:o}: blocking")
        self.assertEqual(c.request("GET", "/fd/again").status, 200)

    def test_a_burst_of_connections_opened_at_once_is_served_whole(self):
        """400 clients connect in the same moment, so one wakeup of the accept loop finds many
        queued (more than it takes in a row before letting requests run): every one is
        accepted and answered."""
        origin, cf, proxy = self.start_all(workers=1)
        host, port = proxy.addresses[0]
        socks = []
        try:
            for _ in range(400):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.connect_ex((host, port))
                socks.append(s)
            for i, s in enumerate(socks):
                s.setblocking(True)
                s.settimeout(10)
                s.sendall(build_request("GET", f"/burst-conn/{i}", headers=[("Connection", "close")]))
            for i, s in enumerate(socks):
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                self.assertTrue(data.startswith(b"HTTP/1.1 200 "), f"connection {i}: {data[:80]!r}")
                self.assertIn(f"/burst-conn/{i}".encode(), data)
        finally:
            for s in socks:
                s.close()
        self.assertEqual(len(origin.requests), 400)
