"""Failures stay contained: a dead or stalled or untrusted upstream gives 502/504 on its own route
while the other route works; bad client input gets 4xx and reaches no backend; clients that
vanish mid-body leave the proxy healthy."""

import select
import socket
import time
import unittest

from wkharness import (RawClient, TENANT, ProxyTestCase, build_request, free_port,
                       pattern_chunks, pattern_sha256, request, send_raw)

TOKEN_PATH = "/.well-known/pki-validation/f.txt"


class UpstreamFailureTest(ProxyTestCase):
    def assertValidationWorks(self, proxy):
        r = request(proxy.port, "GET", TOKEN_PATH)
        self.assertEqual((r.status, r.body), (200, b"token-body-for-f.txt"), r)

    def assertOriginWorks(self, proxy):
        r = request(proxy.port, "GET", "/healthy")
        self.assertEqual((r.status, r.header("x-backend")), (200, "origin"), r)

    def test_origin_down_gives_502_while_validation_route_works(self):
        cf = self.start_backend("cloudfront", tls=True)
        proxy = self.start_proxy(f"http://127.0.0.1:{free_port()}", cf)
        r, closed = send_raw(proxy.port, build_request("GET", "/app"))
        self.assertLocalError(r, 502, closed)
        self.assertValidationWorks(proxy)
        log = proxy.wait_for_log(2)
        failed = [x for x in log if x["target"] == "/app"][0]
        self.assertEqual((failed["status"], failed["upstream"]), (502, "origin"))
        self.assertNotEqual(failed["error"], "")

    def test_cloudfront_down_gives_502_while_origin_works(self):
        origin = self.start_backend("origin")
        proxy = self.start_proxy(origin, {"url": f"https://localhost:{free_port()}",
                                          "sni": "cloudfront.test", "ca_file": self.ca.ca_pem})
        r, closed = send_raw(proxy.port, build_request("GET", TOKEN_PATH))
        self.assertLocalError(r, 502, closed)
        self.assertOriginWorks(proxy)
        self.assertEqual([x.target for x in origin.requests], ["/healthy"])

    def test_upstream_stall_gives_504_after_upstream_response_timeout(self):
        origin, cf, proxy = self.start_all(timeouts={"upstream_response": "1s"})
        t0 = time.monotonic()
        r, closed = send_raw(proxy.port, build_request("GET", "/stall/8"), timeout=15)
        elapsed = time.monotonic() - t0
        self.assertLocalError(r, 504, closed)
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 5, "the 504 should come about upstream_response after the request")
        self.assertOriginWorks(proxy)
        self.assertValidationWorks(proxy)

    def test_cloudfront_cert_from_unrelated_ca_gives_502_origin_still_fine(self):
        origin = self.start_backend("origin")
        cf = self.start_backend("cloudfront", tls=True, other_ca=True)
        proxy = self.start_proxy(origin, cf)
        r, closed = send_raw(proxy.port, build_request("GET", TOKEN_PATH))
        self.assertLocalError(r, 502, closed)
        self.assertEqual(cf.requests, [], "no request may be sent over an unverified connection")
        self.assertOriginWorks(proxy)

    def test_cloudfront_cert_for_another_name_gives_502(self):
        # Trusted CA, but the certificate does not cover the configured SNI name.
        origin = self.start_backend("origin")
        cf = self.start_backend("cloudfront", tls=True)
        proxy = self.start_proxy(origin, self.cloudfront_upstream(cf, sni="not-cloudfront.test"))
        r, closed = send_raw(proxy.port, build_request("GET", TOKEN_PATH))
        self.assertLocalError(r, 502, closed)
        self.assertEqual(cf.requests, [])
        self.assertOriginWorks(proxy)

    def test_invalid_upstream_responses_give_502(self):
        origin, cf, proxy = self.start_all()
        for path in ("/garbage", "/bad-framing", "/close"):
            with self.subTest(path=path):
                r, closed = send_raw(proxy.port, build_request("GET", path))
                self.assertLocalError(r, 502, closed)
        self.assertOriginWorks(proxy)


class ClientFailureTest(ProxyTestCase):
    def setUp(self):
        self.origin, self.cf, self.proxy = self.start_all(
            limits={"header_bytes": "32KiB", "header_count": 100, "target_bytes": "8KiB"})

    def assertNothingReachedBackends(self):
        self.assertEqual(self.origin.requests, [])
        self.assertEqual(self.cf.requests, [])

    def test_client_disconnect_mid_upload_leaves_proxy_healthy(self):
        c = RawClient(self.proxy.port)
        c.send(build_request("POST", "/upload", headers=[("Content-Length", str(10 << 20))]))
        sent = 0
        for piece in pattern_chunks(1 << 20):
            c.send(piece)
            sent += len(piece)
        self.origin.wait_for_requests(1)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()  # reset, with 9 MiB of the body never sent
        r = request(self.proxy.port, "POST", "/upload", body=b"ok" * 1000)
        self.assertEqual((r.status, r.json()["length"]), (200, 2000), r)
        self.assertTrue(self.proxy.alive())

    def test_client_disconnect_mid_download_leaves_proxy_healthy(self):
        for how in ("close", "reset"):
            with self.subTest(how=how):
                c = RawClient(self.proxy.port)
                c.send(build_request("GET", f"/bytes/{50 << 20}"))
                c.reader.read_until(b"\r\n\r\n", 65536)
                got = 0
                for piece in c.reader.iter_exact(1 << 20):
                    got += len(piece)
                if how == "reset":
                    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                      b"\x01\x00\x00\x00\x00\x00\x00\x00")
                c.close()
                r = request(self.proxy.port, "GET", "/bytes/100000", hash_only=True)
                self.assertEqual((r.status, r.body_sha256), (200, pattern_sha256(100000)))
        self.assertTrue(self.proxy.alive())

    def test_malformed_requests_get_400_and_reach_no_backend(self):
        bad = {
            "garbage request line": b"THIS IS NOT HTTP\r\n\r\n",
            "missing version": b"GET /\r\nHost: tenant.example\r\n\r\n",
            "header without colon": b"GET / HTTP/1.1\r\nHost: tenant.example\r\nBroken\r\n\r\n",
            "space before colon": b"GET / HTTP/1.1\r\nHost : tenant.example\r\n\r\n",
            "conflicting Content-Length": b"POST /upload HTTP/1.1\r\nHost: tenant.example\r\n"
                                          b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            "Content-Length and chunked": b"POST /upload HTTP/1.1\r\nHost: tenant.example\r\n"
                                          b"Content-Length: 5\r\nTransfer-Encoding: chunked"
                                          b"\r\n\r\n0\r\n\r\n",
            "bad chunk size": b"POST /upload HTTP/1.1\r\nHost: tenant.example\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            "no Host in HTTP/1.1": b"GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n",
        }
        for name, data in bad.items():
            with self.subTest(name):
                r, closed = send_raw(self.proxy.port, data)
                self.assertLocalError(r, 400, closed)
        # "bad chunk size" may have started streaming upstream; the rest must never get there.
        self.assertEqual([x.target for x in self.cf.requests], [])
        self.assertTrue(all(x.target == "/upload" and not x.complete
                            for x in self.origin.requests), self.origin.requests)

    def test_connect_gets_405(self):
        r, closed = send_raw(self.proxy.port,
                             b"CONNECT tenant.example:443 HTTP/1.1\r\nHost: tenant.example:443"
                             b"\r\n\r\n")
        self.assertLocalError(r, 405, closed)
        self.assertNothingReachedBackends()

    def test_oversized_header_gets_431(self):
        cases = {"one 40 KiB field": [("X-Big", "a" * (40 * 1024))],
                 "150 fields": [(f"X-H{i}", "v") for i in range(150)]}
        for name, headers in cases.items():
            with self.subTest(name):
                r, closed = send_raw(self.proxy.port, build_request("GET", "/", headers=headers))
                self.assertLocalError(r, 431, closed)
        self.assertNothingReachedBackends()
        r = request(self.proxy.port, "GET", "/", headers=[("X-Big", "a" * (16 * 1024))])
        self.assertEqual(r.status, 200, "a header within the limits must pass")

    def test_long_target_gets_414(self):
        r, closed = send_raw(self.proxy.port, build_request("GET", "/" + "a" * (9 * 1024)))
        self.assertLocalError(r, 414, closed)
        self.assertNothingReachedBackends()
        r = request(self.proxy.port, "GET", "/" + "b" * 4000)
        self.assertEqual(r.status, 200, "a target within the limit must pass")

    def test_slow_header_gets_closed_after_header_read_timeout(self):
        origin, cf, proxy = self.start_all(timeouts={"header_read": "1s"})
        c = self.client(proxy, timeout=10)
        c.send(b"GET / HTTP/1.1\r\nHost: tenant.example\r\n")  # never finished
        t0 = time.monotonic()
        data = b""
        try:
            while True:
                piece = c.sock.recv(65536)
                if not piece:
                    break
                data += piece
        except ConnectionError:
            pass
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 5, "the unfinished header should be cut off by header_read")
        # 408 with Connection: close, then the close: the client learns why (it used to be a
        # bare close, because the deadline closed the socket before the answer was written).
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), data[:200])
        self.assertIn(b"\r\nConnection: close", head)
        self.assertEqual(body, b"wkproxy: request header not received in time\n")
        self.assertEqual(origin.requests, [])


class LimitsAndTimeoutsTest(ProxyTestCase):
    """Slow clients: one deadline for the whole header (slowloris), an idle deadline for bodies
    that lets slow-but-alive uploads finish, and a connection cap with a fast 503."""

    def test_header_trickled_a_byte_at_a_time_is_cut_at_header_read(self):
        origin, cf, proxy = self.start_all(timeouts={"header_read": "1s", "idle": "30s"})
        c = self.client(proxy, timeout=10)
        head = b"GET / HTTP/1.1\r\nHost: tenant.example\r\nX-Slow: " + b"a" * 200
        t0 = time.monotonic()
        reply = b""
        # Keep trickling until the answer arrives: the proxy answers 408 at header_read and
        # closes with a lingering close, so the bytes still sent meet no reset and the client
        # reads the 408.
        for b in head:
            c.sock.sendall(bytes([b]))  # a reset here fails the test
            time.sleep(0.05)
            if select.select([c.sock], [], [], 0)[0]:
                break
            if time.monotonic() - t0 > 4:
                break
        reply = c.sock.recv(65536)
        self.assertLess(time.monotonic() - t0, 4, "each byte arrived in time, the head did not")
        self.assertTrue(reply.startswith(b"HTTP/1.1 408 "), reply[:100])
        self.assertIn(b"\r\nConnection: close\r\n", reply)
        self.assertTrue(c.closed_by_peer(timeout=8))
        self.assertEqual(origin.connections, 0)
        log = proxy.wait_for_log(1)
        self.assertEqual((log[-1]["status"], log[-1]["error"]), (408, "header_timeout"))

    def test_bare_lf_in_chunk_framing_after_the_first_packet_is_a_prompt_400(self):
        """The same 400 as in the first packet, not a stall until body_idle: a framing line that
        ends in a bare LF can never complete (RFC 9112 7.1)."""
        origin, cf, proxy = self.start_all(timeouts={"body_idle": "10s"})
        for second in (b"5\nworld\r\n0\r\n\r\n",      # chunk size line
                       b"5\r\nworld\n0\r\n\r\n",      # the CRLF after the data
                       b"0\r\nX-T: 1\n\r\n"):          # a trailer line
            with self.subTest(second=second):
                c = self.client(proxy, timeout=15)
                c.send(build_request("POST", "/upload",
                                     headers=[("Transfer-Encoding", "chunked")]) +
                       b"5\r\nhello\r\n")
                time.sleep(0.3)  # the first packet is handled before the rest arrives
                t0 = time.monotonic()
                c.send(second)
                r = c.read_response()
                self.assertLess(time.monotonic() - t0, 3, "waited for body_idle")
                self.assertEqual(r.status, 400, r)
                self.assertTrue(c.closed_by_peer())

    def test_slow_but_alive_upload_completes_and_a_stalled_one_is_cut_off(self):
        origin, cf, proxy = self.start_all(timeouts={"body_idle": "1s"})
        c = self.client(proxy, timeout=15)
        c.send(build_request("POST", "/upload", headers=[("Content-Length", "6000")]))
        for _ in range(6):  # 3 s in all, never idle for 1 s
            time.sleep(0.5)
            c.send(b"x" * 1000)
        r = c.read_response()
        self.assertEqual((r.status, r.json()["length"]), (200, 6000), r)

        c2 = self.client(proxy, timeout=15)
        c2.send(build_request("POST", "/upload", headers=[("Content-Length", "6000")]) +
                b"y" * 1000)
        t0 = time.monotonic()
        self.assertTrue(c2.closed_by_peer(timeout=5), "a body idle for body_idle is cut off")
        self.assertLess(time.monotonic() - t0, 5)
        proxy.stop()
        self.assertIn("client_timeout=1", proxy.stderr())

    def test_connections_over_max_connections_get_a_fast_503(self):
        # Both held connections are busy (a request in flight), so none can give way.
        origin, cf, proxy = self.start_all(limits={"max_connections": 2}, workers=1)
        held = [self.client(proxy), self.client(proxy)]
        for c in held:
            c.send(build_request("GET", "/stall/1.5"))
        origin.wait_for_requests(2)
        r, closed = send_raw(proxy.port, build_request("GET", "/third"))
        self.assertLocalError(r, 503, closed)
        self.assertEqual(len(origin.requests), 2, "the refused request reached no backend")
        for c in held:
            self.assertEqual(c.read_response().status, 200)
        held[0].close()
        held[1].close()
        r = request(proxy.port, "GET", "/after")
        deadline = time.monotonic() + 5
        while r.status == 503 and time.monotonic() < deadline:  # the close is seen asynchronously
            time.sleep(0.05)
            r = request(proxy.port, "GET", "/after")
        self.assertEqual(r.status, 200, r)
        proxy.stop()
        self.assertRegex(proxy.stderr(), r"connections=[1-9]")

    def test_an_idle_keepalive_connection_gives_way_to_a_new_one_at_max_connections(self):
        origin, cf, proxy = self.start_all(limits={"max_connections": 2}, workers=1)
        oldest, newer = self.client(proxy), self.client(proxy)
        self.assertEqual(oldest.request("GET", "/first").status, 200)
        time.sleep(0.3)  # parked a tick or more before the other
        self.assertEqual(newer.request("GET", "/second").status, 200)
        # Both wait between requests; a newcomer gets in instead of a 503, and the connection
        # that has waited longest is the one closed.
        r = request(proxy.port, "GET", "/third")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(oldest.closed_by_peer(timeout=3), "the oldest idle connection stays open")
        self.assertEqual(newer.request("GET", "/again").status, 200)
        proxy.stop()
        self.assertRegex(proxy.stderr(), r"idle_evicted=1\b")
        self.assertNotRegex(proxy.stderr(), r"limits hit:[^\n]* connections=")

    def test_silent_connections_hold_a_slot_only_for_header_read(self):
        # With max_connections 3, three sockets that never send a byte once locked every client
        # out for timeouts.idle (a minute by default); the first byte is due within header_read.
        origin, cf, proxy = self.start_all(limits={"max_connections": 3}, workers=1,
                                           timeouts={"header_read": "1s", "idle": "30s"})
        silent = [self.client(proxy) for _ in range(3)]
        time.sleep(0.2)
        r, closed = send_raw(proxy.port, build_request("GET", "/early"))
        self.assertLocalError(r, 503, closed)  # silent newcomers never give way to each other
        t0 = time.monotonic()
        for c in silent:
            self.assertTrue(c.closed_by_peer(timeout=5), "a silent connection outlived header_read")
        self.assertLess(time.monotonic() - t0, 3)
        r = request(proxy.port, "GET", "/later")
        deadline = time.monotonic() + 5
        while r.status == 503 and time.monotonic() < deadline:
            time.sleep(0.05)
            r = request(proxy.port, "GET", "/later")
        self.assertEqual(r.status, 200, r)
        self.assertEqual([x.target for x in origin.requests], ["/later"])

if __name__ == "__main__":
    unittest.main()
