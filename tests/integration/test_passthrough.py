"""TLS passthrough listeners (mode: passthrough): the ClientHello is read for SNI, the upstream
is chosen by SNI, and bytes are relayed untouched, so the client sees the origin's own
certificate and wkproxy needs no key. Also: no SNI (default upstream or reject), non-TLS bytes
(closed, never forwarded), a ClientHello split over several writes, large transfers both ways,
PROXY protocol v1/v2 towards the origin, and a dead upstream.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import time
import unittest

from wkharness import (CF_SNI, LOOPBACK, TENANT, ProxyTestCase, RawClient, RecordingBackend,
                       SocketReader, build_request, curl, pattern_sha256, wait_until)


class PassthroughCase(ProxyTestCase):
    def setUp(self):
        # The origin's own HTTPS server: its certificate (for CF_SNI and localhost) is what
        # clients must see through the proxy.
        self.origin_tls = self.start_backend("origin-tls", tls=True)
        api_cert, api_key = self.ca.issue("api", ("api.example.test",))
        self.api = RecordingBackend("api", tls_context=self.ca.server_context(api_cert, api_key))
        self.api.start()
        self.addCleanup(self.api.stop)
        self.http_origin = self.start_backend("origin")

    def passthrough(self, **extra):
        d = {"address": "127.0.0.1:0", "mode": "passthrough",
             "upstream": f"127.0.0.1:{self.origin_tls.port}",
             "sni_routes": {"api.example.test": f"127.0.0.1:{self.api.port}",
                            "*.wild.example.test": f"localhost:{self.api.port}"}}
        d.update(extra)
        return d

    def start(self, listener=None, **cfg):
        cf = self.start_backend("cloudfront", tls=True)
        return self.start_proxy(self.http_origin, cf,
                                listen=("127.0.0.1:0", listener or self.passthrough()), **cfg)

    def tls(self, proxy, sni, verify_name=None) -> RawClient:
        c = self.client(proxy, index=1)
        ctx = ssl.create_default_context(cafile=self.ca.ca_pem)
        if verify_name is None:
            ctx.check_hostname = False
        c.sock = ctx.wrap_socket(c.sock, server_hostname=sni)
        c.reader = SocketReader(c.sock)
        return c


class RoutingTest(PassthroughCase):
    def test_client_sees_the_origins_certificate_and_the_origin_sees_the_sni(self):
        proxy = self.start()
        c = self.tls(proxy, CF_SNI, verify_name=CF_SNI)  # verified: chain and name
        with open(self.ca.cert_pem) as f:
            self.assertEqual(c.sock.getpeercert(binary_form=True),
                             ssl.PEM_cert_to_DER_cert(f.read()))
        resp = c.request("GET", "/through", host=CF_SNI)
        self.assertEqual((resp.status, resp.header("x-backend")), (200, "origin-tls"), resp)
        rec = self.origin_tls.requests[-1]
        self.assertEqual(rec.sni, CF_SNI)
        self.assertIsNone(rec.header("x-forwarded-for"), "passthrough never touches HTTP")
        c.close()
        log = proxy.wait_for_log(1)
        self.assertEqual(log[-1]["route"], "passthrough")
        self.assertEqual(log[-1]["host"], CF_SNI)
        self.assertEqual(log[-1]["upstream"], "passthrough")
        self.assertGreater(log[-1]["bytes_in"], 200)  # the ClientHello at least
        self.assertGreater(log[-1]["bytes_out"], 500)  # the origin's certificate at least

    def test_curl_through_passthrough(self):
        proxy = self.start()
        port = proxy.addresses[1][1]
        r = curl(f"https://{CF_SNI}:{port}/curl", "--cacert", self.ca.ca_pem,
                 "--resolve", f"{CF_SNI}:{port}:127.0.0.1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual((r.status, r.header("x-backend")), (200, "origin-tls"), r)

    def test_sni_routes_exact_wildcard_and_default(self):
        proxy = self.start()
        cases = [("api.example.test", "api"), ("x.wild.example.test", "api"),
                 ("a.b.wild.example.test", "origin-tls"), ("other.example", "origin-tls"),
                 (None, "origin-tls")]
        for sni, backend in cases:
            with self.subTest(sni=sni):
                c = self.tls(proxy, sni)
                resp = c.request("GET", "/r")
                self.assertEqual(resp.header("x-backend"), backend, resp)
                c.close()

    def test_no_sni_is_refused_when_configured(self):
        proxy = self.start(self.passthrough(on_no_sni="reject"))
        c = self.client(proxy, index=1)
        ctx = ssl.create_default_context(cafile=self.ca.ca_pem)
        ctx.check_hostname = False
        with self.assertRaises((ssl.SSLError, OSError)):
            ctx.wrap_socket(c.sock, server_hostname=None)
        self.assertEqual(self.origin_tls.connections, 0)
        c2 = self.tls(proxy, CF_SNI)  # with SNI it still works
        self.assertEqual(c2.request("GET", "/").status, 200)
        c2.close()  # a tunnel is busy: a graceful stop would wait for it
        proxy.stop()
        self.assertIn("passthrough_no_sni=1", proxy.stderr())


class BadInputTest(PassthroughCase):
    def test_plain_http_is_closed_and_never_forwarded(self):
        proxy = self.start()
        c = self.client(proxy, index=1)
        c.send(build_request("GET", "/", TENANT))
        self.assertTrue(c.closed_by_peer(timeout=5))
        self.assertEqual(self.origin_tls.connections, 0)
        self.assertEqual(self.api.connections, 0)
        log = proxy.wait_for_log(1)
        self.assertEqual((log[-1]["route"], log[-1]["error"]), ("passthrough", "not_tls"))

    def test_truncated_hello_times_out(self):
        proxy = self.start(timeouts={"header_read": "500ms"})
        c = self.client(proxy, index=1)
        c.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a hello that never ends
        self.assertTrue(c.closed_by_peer(timeout=5))
        self.assertEqual(self.origin_tls.connections, 0)
        log = proxy.wait_for_log(1)
        self.assertEqual(log[-1]["error"], "client_hello_timeout")

    def test_client_hello_split_over_several_writes(self):
        proxy = self.start()
        sock = socket.create_connection((LOOPBACK, proxy.addresses[1][1]), timeout=10)
        self.addCleanup(sock.close)
        ctx = ssl.create_default_context(cafile=self.ca.ca_pem)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_hostname="api.example.test")
        first = True
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                data = outgoing.read()
                if first:
                    # The ClientHello in pieces: 1 byte, the rest of the record header, then
                    # the body in two parts, with pauses so they arrive as separate reads.
                    first = False
                    for piece in (data[:1], data[1:5], data[5:60], data[60:]):
                        sock.sendall(piece)
                        time.sleep(0.05)
                elif data:
                    sock.sendall(data)
                got = sock.recv(65536)
                if not got:
                    self.fail("closed during the handshake")
                incoming.write(got)
        sock.sendall(outgoing.read())  # the client's Finished
        tls.write(build_request("GET", "/split", "api.example.test"))
        sock.sendall(outgoing.read())
        reply = b""
        while b"\r\n\r\n" not in reply:
            got = sock.recv(65536)
            self.assertTrue(got, "closed before the response")
            incoming.write(got)
            try:
                while True:
                    reply += tls.read(65536)
            except ssl.SSLWantReadError:
                pass
        self.assertIn(b"X-Backend: api", reply)
        self.assertEqual(self.api.requests[-1].sni, "api.example.test")

    def test_dead_upstream_closes_the_connection_and_http_still_works(self):
        dead = socket.socket()
        dead.bind((LOOPBACK, 0))
        dead_port = dead.getsockname()[1]
        dead.close()
        proxy = self.start(self.passthrough(upstream=f"127.0.0.1:{dead_port}"))
        c = self.client(proxy, index=1)
        ctx = ssl.create_default_context(cafile=self.ca.ca_pem)
        with self.assertRaises((ssl.SSLError, OSError)):
            ctx.wrap_socket(c.sock, server_hostname=CF_SNI)
        log = proxy.wait_for_log(1)
        self.assertEqual(log[-1]["error"], "upstream_refused")
        wait_until(lambda: "passthrough from 127.0.0.1" in proxy.stderr(), 5,
                   what="the failure to be logged")
        resp = self.client(proxy, index=0).request("GET", "/plain")
        self.assertEqual(resp.status, 200)


class TransferTest(PassthroughCase):
    def test_large_download_and_upload_are_byte_exact(self):
        proxy = self.start()
        n = 8 * 1024 * 1024
        c = self.tls(proxy, CF_SNI)
        resp = c.request("GET", f"/bytes/{n}", hash_only=True)
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.body_sha256, pattern_sha256(n))
        body = bytes(range(256)) * (n // 256)
        resp = c.request("POST", "/upload", body=body)
        self.assertEqual(resp.json()["sha256"], hashlib.sha256(body).hexdigest())
        c.close()
        log = proxy.wait_for_log(1)
        self.assertGreater(log[-1]["bytes_out"], n)
        self.assertGreater(log[-1]["bytes_in"], n)


class ProxyProtocolTowardsOriginTest(PassthroughCase):
    def test_v2_then_v1_header_carries_the_client_address(self):
        for version in ("v2", "v1"):
            with self.subTest(version=version):
                origin = self.start_backend("pp-origin", tls=True, expect_proxy=True)
                proxy = self.start(self.passthrough(upstream=f"127.0.0.1:{origin.port}",
                                                    send_proxy_protocol=version))
                c = self.tls(proxy, CF_SNI)
                local_port = c.sock.getsockname()[1]
                self.assertEqual(c.request("GET", "/pp").status, 200)
                h = origin.proxy_headers[0]
                self.assertEqual(h["version"], int(version[1]))
                self.assertEqual((h["src"], h["src_port"]), ("127.0.0.1", local_port))
                self.assertEqual((h["dst"], h["dst_port"]), ("127.0.0.1", proxy.addresses[1][1]))
                self.assertEqual(origin.requests[-1].sni, CF_SNI)
                c.close()
                proxy.stop()


if __name__ == "__main__":
    unittest.main()
