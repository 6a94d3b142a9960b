"""TLS termination listeners (mode: tls): certificates chosen by SNI, TLS 1.2+ only, ALPN
http/1.1, session resumption, OCSP stapling, certificate rotation by SIGHUP without dropping
connections, the same routing as plain HTTP with X-Forwarded-Proto: https, and WebSocket
tunnelling over a terminated connection.

Clients are Python's ssl module, curl and openssl s_client; certificates come from a test CA made
at test time.
"""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import unittest

from test_upgrade import OP_TEXT, WebSocketBackend, WSClient, ws_accept
from wkharness import (LOOPBACK, TENANT, Proxy, ProxyTestCase, RawClient, SocketReader, curl,
                       make_config, wait_until, wkproxy_bin)

SITE_A = ("a.example.test", "www.a.example.test", TENANT)
SITE_B = ("*.b.example.test",)


def tls_client(raw: RawClient, ca_pem: str, sni: str | None, session=None, alpn=None,
               max_version=None, ctx=None) -> ssl.SSLSocket:
    """Turns a RawClient's connection into TLS (the chain verified against ca_pem)."""
    if ctx is None:
        ctx = ssl.create_default_context(cafile=ca_pem)
        ctx.check_hostname = False  # several tests ask for names the default certificate lacks
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if max_version:
        ctx.maximum_version = max_version
    raw.sock = ctx.wrap_socket(raw.sock, server_hostname=sni, session=session)
    raw.reader = SocketReader(raw.sock)
    return raw.sock


def peer_names(sock: ssl.SSLSocket) -> list[str]:
    cert = sock.getpeercert()
    return [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]


class TLSCase(ProxyTestCase):
    def setUp(self):
        self.cert_a, self.key_a = self.ca.issue("site-a", SITE_A)
        self.cert_b, self.key_b = self.ca.issue("site-b", SITE_B)

    def tls_listener(self, certs=None, **extra):
        certs = certs or [(self.cert_a, self.key_a), (self.cert_b, self.key_b)]
        entries = []
        for cert, key, *ocsp in certs:
            entries.append({"cert": cert, "key": key, **({"ocsp": ocsp[0]} if ocsp else {})})
        d = {"address": "127.0.0.1:0", "mode": "tls", "certificates": entries}
        d.update(extra)
        return d

    def start_tls_proxy(self, certs=None, origin=None, **cfg):
        origin = origin or self.start_backend("origin")
        cf = self.start_backend("cloudfront", tls=True)
        listen = ("127.0.0.1:0", self.tls_listener(certs))
        proxy = self.start_proxy(origin, cf, listen=listen, **cfg)
        return origin, cf, proxy

    def connect(self, proxy, sni, **kw) -> RawClient:
        c = self.client(proxy, index=1)
        tls_client(c, self.ca.ca_pem, sni, **kw)
        return c


class CertificateSelectionTest(TLSCase):
    def test_certificate_is_chosen_by_sni_with_the_first_as_default(self):
        _, _, proxy = self.start_tls_proxy()
        cases = {"a.example.test": SITE_A, "www.a.example.test": SITE_A,
                 "x.b.example.test": SITE_B, "unknown.example": SITE_A,
                 "y.x.b.example.test": SITE_A, None: SITE_A}
        for sni, names in cases.items():
            with self.subTest(sni=sni):
                c = self.connect(proxy, sni)
                self.assertEqual(peer_names(c.sock), list(names))
                c.close()

    def test_requests_reach_the_origin_with_forwarded_proto_https(self):
        origin, cf, proxy = self.start_tls_proxy()
        port = proxy.addresses[1][1]
        r = curl(f"https://{TENANT}:{port}/hello?x=1", "--cacert", self.ca.ca_pem,
                 "--resolve", f"{TENANT}:{port}:127.0.0.1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("x-backend"), "origin")
        rec = origin.requests[-1]
        self.assertEqual(rec.target, "/hello?x=1")
        self.assertEqual(rec.header("host"), f"{TENANT}:{port}")
        self.assertEqual(rec.headers.get_all("x-forwarded-proto"), ["https"])
        self.assertEqual(rec.headers.get_all("x-forwarded-for")[-1].split(",")[-1].strip(),
                         "127.0.0.1")
        # the validation route works the same over TLS
        r = curl(f"https://{TENANT}:{port}/.well-known/pki-validation/abc.txt", "--cacert",
                 self.ca.ca_pem, "--resolve", f"{TENANT}:{port}:127.0.0.1")
        self.assertEqual((r.status, r.body), (200, b"token-body-for-abc.txt"), r)
        self.assertEqual(cf.requests[-1].header("host"), f"{TENANT}:{port}")
        log = proxy.wait_for_log(2)
        # Two connections may be served by two workers, each flushing its own log buffer.
        self.assertEqual(sorted(e["route"] for e in log), ["origin", "validation"])

    def test_replace_policy_sets_https(self):
        origin, _, proxy = self.start_tls_proxy(headers={"x_forwarded_proto": "replace"})
        c = self.connect(proxy, "a.example.test")
        resp = c.request("GET", "/p", headers=[("X-Forwarded-Proto", "http")])
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(origin.requests[-1].headers.get_all("x-forwarded-proto"), ["https"])


class ProtocolTest(TLSCase):
    def test_alpn_selects_http11_and_tolerates_h2_only_clients(self):
        _, _, proxy = self.start_tls_proxy()
        c = self.connect(proxy, "a.example.test", alpn=["h2", "http/1.1"])
        self.assertEqual(c.sock.selected_alpn_protocol(), "http/1.1")
        self.assertEqual(c.request("GET", "/").status, 200)
        c2 = self.connect(proxy, "a.example.test", alpn=["h2"])
        self.assertIsNone(c2.sock.selected_alpn_protocol())
        self.assertEqual(c2.request("GET", "/").status, 200)

    def test_tls12_and_13_work_and_tls11_is_refused(self):
        _, _, proxy = self.start_tls_proxy()
        c = self.connect(proxy, "a.example.test", max_version=ssl.TLSVersion.TLSv1_2)
        self.assertEqual(c.sock.version(), "TLSv1.2")
        self.assertEqual(c.request("GET", "/").status, 200)
        c = self.connect(proxy, "a.example.test")
        self.assertEqual(c.sock.version(), "TLSv1.3")
        port = proxy.addresses[1][1]
        p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_1",
                            "-cipher", "DEFAULT@SECLEVEL=0", "-servername", "a.example.test"],
                           input=b"", capture_output=True, timeout=30)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn(b"Cipher is (NONE)", p.stdout)  # no session was established
        wait_until(lambda: "TLS handshake with 127.0.0.1" in proxy.stderr(), 5,
                   what="the refused handshake to be logged")

    def test_session_resumption(self):
        _, _, proxy = self.start_tls_proxy()
        ctx = ssl.create_default_context(cafile=self.ca.ca_pem)  # a session belongs to one
        c = self.connect(proxy, "a.example.test", ctx=ctx)
        self.assertEqual(c.request("GET", "/").status, 200)  # tickets arrive after a read
        session = c.sock.session
        self.assertFalse(c.sock.session_reused)
        c2 = self.connect(proxy, "a.example.test", session=session, ctx=ctx)
        self.assertTrue(c2.sock.session_reused, "the second connection should resume")
        self.assertEqual(c2.request("GET", "/").status, 200)

    def test_failed_handshakes_are_logged_and_never_stop_the_worker(self):
        origin, _, proxy = self.start_tls_proxy(workers=1)
        for _ in range(3):
            c = self.client(proxy, index=1)
            c.send(b"GET / HTTP/1.1\r\nHost: tenant.example\r\n\r\n")
            self.assertTrue(c.closed_by_peer(timeout=5))
            c.close()
        wait_until(lambda: proxy.stderr().count("TLS handshake with 127.0.0.1") >= 3, 5,
                   what="three handshake failures logged")
        self.assertEqual(origin.requests, [])
        c = self.connect(proxy, "a.example.test")
        self.assertEqual(c.request("GET", "/").status, 200)
        proxy.stop()
        self.assertIn("tls_handshake_failed=3", proxy.stderr())


class OCSPStaplingTest(TLSCase):
    def make_ocsp_response(self, cert_pem) -> str:
        d = self.ca.dir
        serial = subprocess.run(["openssl", "x509", "-in", cert_pem, "-noout", "-serial"],
                                capture_output=True, text=True, check=True).stdout
        serial = serial.strip().split("=", 1)[1]
        end = subprocess.run(["openssl", "x509", "-in", cert_pem, "-noout", "-enddate"],
                             capture_output=True, text=True, check=True).stdout
        when = datetime.datetime.strptime(end.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")
        index = os.path.join(d, "index.txt")
        with open(index, "w") as f:
            f.write(f"V\t{when:%y%m%d%H%M%S}Z\t\t{serial}\tunknown\t/CN=a.example.test\n")
        req, resp = os.path.join(d, "ocsp-req.der"), os.path.join(d, "ocsp-resp.der")
        subprocess.run(["openssl", "ocsp", "-issuer", self.ca.ca_pem, "-cert", cert_pem,
                        "-reqout", req, "-no_nonce"], capture_output=True, check=True)
        subprocess.run(["openssl", "ocsp", "-index", index, "-rsigner", self.ca.ca_pem, "-rkey",
                        self.ca._ca_key, "-CA", self.ca.ca_pem, "-reqin", req, "-respout", resp,
                        "-ndays", "1"], capture_output=True, check=True)
        return resp

    def test_staple_is_sent_when_asked(self):
        resp = self.make_ocsp_response(self.cert_a)
        _, _, proxy = self.start_tls_proxy(certs=[(self.cert_a, self.key_a, resp)])
        port = proxy.addresses[1][1]
        p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-status",
                            "-servername", "a.example.test", "-CAfile", self.ca.ca_pem],
                           input=b"", capture_output=True, timeout=30)
        out = p.stdout.decode("utf-8", "replace")
        self.assertIn("OCSP Response Status: successful", out)
        self.assertIn("Cert Status: good", out)


class RotationTest(TLSCase):
    def test_sighup_rotates_certificates_without_dropping_connections(self):
        d = tempfile.mkdtemp(prefix="wkproxy-rotate-")
        self.addCleanup(shutil.rmtree, d, True)
        cert, key = os.path.join(d, "site.pem"), os.path.join(d, "site.key")
        shutil.copy(self.cert_a, cert)
        shutil.copy(self.key_a, key)
        origin = self.start_backend("origin")
        cf = self.start_backend("cloudfront", tls=True)
        proxy = self.start_proxy(origin, cf, listen=("127.0.0.1:0",
                                                     self.tls_listener([(cert, key)])))
        old = self.connect(proxy, "a.example.test")
        old_der = old.sock.getpeercert(binary_form=True)
        self.assertEqual(old.request("GET", "/before").status, 200)

        new_cert, new_key = self.ca.issue("site-a2", SITE_A)
        shutil.copy(new_cert, cert)
        shutil.copy(new_key, key)
        os.kill(proxy.pid, signal.SIGHUP)
        wait_until(lambda: "reloaded" in proxy.stderr(), 10, what="the reload")

        # The connection from before keeps working, with the certificate it was made with ...
        self.assertEqual(old.request("GET", "/after").status, 200)
        self.assertEqual(old.sock.getpeercert(binary_form=True), old_der)
        # ... and new connections get the new certificate.
        new = self.connect(proxy, "a.example.test")
        self.assertNotEqual(new.sock.getpeercert(binary_form=True), old_der)
        with open(new_cert, "rb") as f:
            self.assertEqual(new.sock.getpeercert(binary_form=True),
                             ssl.PEM_cert_to_DER_cert(f.read().decode()))
        self.assertEqual(new.request("GET", "/new").status, 200)

    def test_a_broken_certificate_refuses_the_reload_and_the_old_one_stays(self):
        d = tempfile.mkdtemp(prefix="wkproxy-rotate-")
        self.addCleanup(shutil.rmtree, d, True)
        cert, key = os.path.join(d, "site.pem"), os.path.join(d, "site.key")
        shutil.copy(self.cert_a, cert)
        shutil.copy(self.key_a, key)
        origin = self.start_backend("origin")
        cf = self.start_backend("cloudfront", tls=True)
        proxy = self.start_proxy(origin, cf, listen=("127.0.0.1:0",
                                                     self.tls_listener([(cert, key)])))
        shutil.copy(self.key_b, key)  # no longer matches the certificate
        os.kill(proxy.pid, signal.SIGHUP)
        wait_until(lambda: "reload of" in proxy.stderr(), 10, what="the refused reload")
        self.assertIn(key, proxy.stderr())
        c = self.connect(proxy, "a.example.test")
        self.assertEqual(peer_names(c.sock), list(SITE_A))
        self.assertEqual(c.request("GET", "/").status, 200)


class ConfigCheckTest(TLSCase):
    def test_dash_t_reports_a_key_that_does_not_match(self):
        d = tempfile.mkdtemp(prefix="wkproxy-cfg-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "wkproxy.yaml")
        with open(path, "w") as f:
            f.write(make_config("http://127.0.0.1:1", "http://127.0.0.1:2",
                                listen=(self.tls_listener([(self.cert_a, self.key_b)]),)))
        p = subprocess.run([wkproxy_bin(), "-t", "-c", path], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(self.key_b, p.stderr)
        self.assertIn("listen 127.0.0.1:0", p.stderr)


class WebSocketOverTLSTest(TLSCase):
    def test_websocket_echo_through_a_terminating_listener(self):
        origin = WebSocketBackend().start()
        self.addCleanup(origin.stop)
        cf = self.start_backend("cloudfront", tls=True)
        proxy = self.start_proxy(origin.url, cf, listen=("127.0.0.1:0", self.tls_listener()))
        ws = WSClient(proxy.addresses[1][1])
        self.addCleanup(ws.close)
        tls_client(ws.raw, self.ca.ca_pem, "a.example.test")
        ws.sock, ws.reader = ws.raw.sock, ws.raw.reader
        r = ws.handshake()
        self.assertEqual(r.status, 101, r)
        self.assertEqual(r.header("sec-websocket-accept"), ws_accept(ws.key))
        for msg in (b"hello", b"x" * 70000, "\u00e9t\u00e9".encode()):
            ws.send(OP_TEXT, msg)
            self.assertEqual(ws.recv(), (OP_TEXT, msg))


if __name__ == "__main__":
    unittest.main()
