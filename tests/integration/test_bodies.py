"""Request and response bodies: streamed intact (sha256) with flat memory, chunked both ways,
Expect: 100-continue answered by the proxy, and the request body cap."""

import json
import os
import tempfile
import time
import unittest

from wkharness import (TENANT, ProxyTestCase, build_request, chunked_body, curl, pattern_bytes,
                       pattern_chunks, pattern_sha256, request)

BIG = 20 * 1024 * 1024
RSS_GROWTH_LIMIT_KB = 10 * 1024  # well below the 20 MiB bodies


class BodiesTest(ProxyTestCase):
    def temp_file(self, data: bytes) -> str:
        fd, path = tempfile.mkstemp(prefix="wkproxy-body-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        self.addCleanup(os.unlink, path)
        return path

    def warm_baseline(self, proxy):
        """RSS after the proxy has served a couple of ordinary requests (buffers allocated)."""
        for path in ("/warm", "/bytes/100000"):
            self.assertEqual(request(proxy.port, "GET", path).status, 200)
        r = request(proxy.port, "POST", "/upload", body=b"w" * 100000)
        self.assertEqual(r.status, 200)
        return proxy.rss_kb()

    def test_20mb_download_is_intact_and_memory_stays_flat(self):
        origin, cf, proxy = self.start_all()
        base = self.warm_baseline(proxy)
        c = self.client(proxy, timeout=60)
        c.send(build_request("GET", f"/bytes/{BIG}"))
        # Read slowly at first: without backpressure the proxy would have to hold most of the
        # body (loopback delivers 20 MiB from the backend in milliseconds).
        time.sleep(0.5)
        r = c.read_response(hash_only=True)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body_length, BIG)
        self.assertEqual(r.body_sha256, pattern_sha256(BIG))
        growth = proxy.peak_rss_kb() - base
        self.assertLess(growth, RSS_GROWTH_LIMIT_KB,
                        f"proxy RSS grew by {growth} KiB (from {base} KiB) relaying a {BIG >> 20} MiB body")

    def test_20mb_upload_is_intact_and_memory_stays_flat(self):
        origin, cf, proxy = self.start_all()
        base = self.warm_baseline(proxy)
        c = self.client(proxy, timeout=60)
        # The backend leaves the body unread for 0.5 s: the proxy must stop reading the client
        # rather than buffer the body.
        c.send(build_request("POST", "/upload?read_delay=0.5",
                             headers=[("Content-Length", str(BIG)),
                                      ("Content-Type", "application/x-test")]))
        for piece in pattern_chunks(BIG):
            c.send(piece)
        r = c.read_response()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"sha256": pattern_sha256(BIG), "length": BIG,
                                    "framing": "length"})
        rec = origin.requests[-1]
        self.assertEqual(rec.header("content-length"), str(BIG))
        growth = proxy.peak_rss_kb() - base
        self.assertLess(growth, RSS_GROWTH_LIMIT_KB,
                        f"proxy RSS grew by {growth} KiB (from {base} KiB) relaying a {BIG >> 20} MiB upload")

    def test_chunked_upload_with_curl(self):
        origin, cf, proxy = self.start_all()
        n = 3_000_001
        path = self.temp_file(pattern_bytes(n))
        r = curl(proxy.url("/upload"), "-H", f"Host: {TENANT}", "-H", "Transfer-Encoding: chunked",
                 "--data-binary", f"@{path}")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(json.loads(r.body)["sha256"], pattern_sha256(n))
        self.assertEqual(json.loads(r.body)["length"], n)

    def test_chunked_upload_raw_with_extensions_and_trailers(self):
        origin, cf, proxy = self.start_all()
        data = pattern_bytes(200_000)
        body = chunked_body(data, sizes=(1, 17, 4096, 65536, 3))
        body = body.replace(b"\r\n", b";ext=1\r\n", 1)  # a chunk extension on the first chunk
        body = body[:-2] + b"X-Trailer: yes\r\n\r\n"  # a trailer field after the last chunk
        c = self.client(proxy)
        c.send(build_request("POST", "/upload", headers=[("Transfer-Encoding", "chunked")]) + body)
        r = c.read_response()
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json()["sha256"], r.json()["length"]),
                         (pattern_sha256(200_000), 200_000))
        self.assertEqual(origin.errors, [])
        # The safe trailer field reaches the origin as a trailer, never as a header field.
        rec = origin.wait_for_requests(1)[0]
        self.assertIn(("X-Trailer", "yes"), rec.trailers)
        self.assertIsNone(rec.header("X-Trailer"))
        # The connection stays usable: the chunked framing was consumed exactly.
        self.assertEqual(c.request("GET", "/after").status, 200)

    def test_request_trailers_pass_when_safe_and_never_as_header_fields(self):
        origin, cf, proxy = self.start_all()
        c = self.client(proxy)
        c.send(build_request("POST", "/upload", headers=[("Transfer-Encoding", "chunked")]) +
               b"5\r\nhello\r\n0\r\nX-Checksum: 5d41402a\r\nHost: evil.example\r\n"
               b"X-Forwarded-For: 203.0.113.9\r\nAuthorization: Basic eA==\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 200, r)
        rec = origin.wait_for_requests(1)[0]
        self.assertEqual(rec.trailers, [("X-Checksum", "5d41402a")])
        self.assertEqual(rec.header("Host"), TENANT)
        self.assertNotIn("203.0.113.9", rec.header("X-Forwarded-For") or "")

    def test_response_trailers_reach_the_client_when_safe(self):
        origin, cf, proxy = self.start_all()
        c = self.client(proxy)
        c.send(build_request("GET", "/trailers"))
        # Read the raw bytes: the trailer section is what this test is about.
        raw = b""
        while not raw.partition(b"\r\n\r\n")[2].endswith(b"\r\n\r\n"):
            piece = c.sock.recv(65536)
            if not piece:
                break
            raw += piece
        head, _, body = raw.partition(b"\r\n\r\n")
        self.assertIn(b"Transfer-Encoding: chunked", head)
        self.assertNotIn(b"Server-Timing", head)
        self.assertTrue(body.endswith(b"0\r\nServer-Timing: db;dur=53\r\n"
                                      b"X-Checksum: 5d41402a\r\n\r\n"), body)
        self.assertNotIn(b"evil", body)
        self.assertNotIn(b"no-store", body)
        # curl decodes the same answer (it reads trailers as headers of the response).
        res = curl(proxy.url("/trailers"), "-H", f"Host: {TENANT}")
        self.assertEqual((res.returncode, res.status, res.body), (0, 200, b"hello"), res)

    def test_early_answer_is_relayed_not_502_and_the_client_reads_it(self):
        # The origin reads 64 KiB of a 32 MiB upload, answers 413 and closes with the rest
        # unread. wkproxy relays the 413 (it used to answer 502), closes the connection after it
        # (the rest is over the 1 MiB drain limit) with a lingering close: the client can send
        # its whole body without a reset and then read the answer.
        origin, cf, proxy = self.start_all()
        size = 32 * 1024 * 1024
        c = self.client(proxy, timeout=20)
        c.send(build_request("POST", "/early/413?after=65536",
                             headers=[("Content-Length", str(size))]))
        block = b"u" * (1 << 20)
        for _ in range(size // len(block)):
            c.sock.sendall(block)  # a reset here fails the test
        r = c.read_response()
        self.assertEqual(r.status, 413, r)
        self.assertEqual(r.body, b"refused early\n")
        self.assertEqual(r.header("Connection"), "close")
        self.assertTrue(c.closed_by_peer())
        line = [x for x in proxy.wait_for_log(1) if x["target"].startswith("/early/")][-1]
        self.assertEqual((line["status"], line["error"], line["early_answer"]),
                         (413, "", "closed"), line)
        # The origin route keeps serving.
        self.assertEqual(request(proxy.port, "GET", "/after").status, 200)

    def test_expect_100_continue_with_curl_is_answered_by_the_proxy(self):
        origin, cf, proxy = self.start_all()
        n = 1_000_000
        path = self.temp_file(pattern_bytes(n))
        r = curl(proxy.url("/upload"), "-v", "-H", f"Host: {TENANT}",
                 "-H", "Expect: 100-continue", "--expect100-timeout", "20",
                 "--data-binary", f"@{path}", timeout=60)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(json.loads(r.body)["sha256"], pattern_sha256(n))
        self.assertRegex(r.stderr, r"< HTTP/1\.1 100", "curl never received 100 Continue")
        rec = origin.requests[-1]
        self.assertIsNone(rec.header("expect"), f"the backend must get no Expect header: {rec}")

    def test_expect_100_continue_raw_interim_before_body(self):
        origin, cf, proxy = self.start_all()
        c = self.client(proxy)
        body = pattern_bytes(50_000)
        c.send(build_request("POST", "/upload", headers=[("Content-Length", str(len(body))),
                                                         ("Expect", "100-continue")]))
        interim = c.reader.read_until(b"\r\n\r\n", 65536)
        self.assertRegex(interim, rb"^HTTP/1\.1 100 ", interim)
        c.send(body)
        r = c.read_response()
        self.assertEqual((r.status, r.json()["sha256"]), (200, pattern_sha256(50_000)), r)
        self.assertIsNone(origin.requests[-1].header("expect"))

    def test_chunked_download_raw_and_with_curl(self):
        origin, cf, proxy = self.start_all()
        n = 5_000_003
        c = self.client(proxy, timeout=30)
        r = c.request("GET", f"/chunked/{n}", hash_only=True)
        self.assertEqual(r.status, 200, r)
        self.assertIn(r.framing, ("chunked", "length"))
        self.assertEqual((r.body_length, r.body_sha256), (n, pattern_sha256(n)))
        self.assertEqual(c.request("GET", "/bytes/7").body, pattern_bytes(7))
        r = curl(proxy.url(f"/chunked/{n}"), "-H", f"Host: {TENANT}")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.body), n)
        self.assertEqual(r.body, pattern_bytes(n))

    def test_body_over_max_body_bytes_gets_413(self):
        origin, cf, proxy = self.start_all(limits={"max_body_bytes": "1KiB"})
        r = request(proxy.port, "POST", "/upload", body=b"a" * 1000)
        self.assertEqual((r.status, r.json()["length"]), (200, 1000), r)
        origin.reset()
        c = self.client(proxy)
        c.send(build_request("POST", "/upload", body=b"b" * 4096))
        r = c.read_response()
        self.assertLocalError(r, 413, c.closed_by_peer())
        self.assertEqual(origin.requests, [], "a body over the cap must not reach the origin")

    def test_413_before_the_body_is_sent_reaches_a_client_still_sending(self):
        # RFC 9112 9.6: the proxy answers 413 from the declared length and closes with a
        # lingering close (its sending side shut, the rest read and discarded), so a client
        # that sends its whole body before reading meets no reset and then reads the 413.
        origin, cf, proxy = self.start_all(limits={"max_body_bytes": "1KiB"})
        size = 8 * 1024 * 1024
        c = self.client(proxy, timeout=20)
        c.send(build_request("POST", "/upload", headers=[("Content-Length", str(size))]))
        block = b"b" * (1 << 20)
        for _ in range(size // len(block)):
            c.sock.sendall(block)  # without the lingering close: ECONNRESET or EPIPE here
        r = c.read_response()
        self.assertLocalError(r, 413, c.closed_by_peer())
        self.assertEqual(origin.requests, [])


if __name__ == "__main__":
    unittest.main()
