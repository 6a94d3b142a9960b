"""unittest glue: the base class that wires CA, backends, proxies and clients together."""

from __future__ import annotations

import unittest

from .backends import RecordedRequest, RecordingBackend
from .clients import RawClient
from .common import CF_SNI
from .config import make_config
from .process import Proxy
from .tls import TestCA


class ProxyTestCase(unittest.TestCase):
    """Base class: one TestCA per class; helpers that start backends and proxies and register
    their cleanup (cleanups run in reverse order, so clients close before the proxy stops and
    the proxy stops before its backends)."""

    ca: TestCA = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ca = TestCA()
        cls.addClassCleanup(cls.ca.cleanup)

    def start_backend(self, name="origin", tls=False, other_ca=False, **kw) -> RecordingBackend:
        ctx = None
        if tls:
            ctx = (self.ca.server_context(self.ca.other_cert_pem, self.ca.other_key_pem)
                   if other_ca else self.ca.server_context())
        b = RecordingBackend(name, tls_context=ctx, **kw).start()
        self.addCleanup(b.stop)
        return b

    def cloudfront_upstream(self, backend: RecordingBackend, sni=CF_SNI, host="localhost",
                            **extra):
        """The `cloudfront:` config block for a TLS stand-in (trust anchor = the test CA)."""
        if backend.tls_context is None:
            return f"http://127.0.0.1:{backend.port}"
        d = {"url": f"https://{host}:{backend.port}", "sni": sni, "ca_file": self.ca.ca_pem}
        d.update(extra)
        return d

    def start_proxy(self, origin, cloudfront, **cfg) -> Proxy:
        """origin/cloudfront: a RecordingBackend, a URL string, or (cloudfront) a dict block."""
        if isinstance(origin, RecordingBackend):
            origin = origin.url
        if isinstance(cloudfront, RecordingBackend):
            cloudfront = self.cloudfront_upstream(cloudfront)
        p = Proxy(make_config(origin, cloudfront, **cfg))
        self.addCleanup(p.stop)
        p.start()
        return p

    def start_all(self, cf_tls=True, origin_kw=None, cf_kw=None, **cfg):
        """A plain origin, a cloudfront stand-in (TLS by default) and a proxy in front."""
        origin = self.start_backend("origin", **(origin_kw or {}))
        cf = self.start_backend("cloudfront", tls=cf_tls, **(cf_kw or {}))
        proxy = self.start_proxy(origin, cf, **cfg)
        return origin, cf, proxy

    def client(self, proxy: Proxy, index=0, timeout=10.0) -> RawClient:
        host, port = proxy.addresses[index]
        c = RawClient(port, host=host, timeout=timeout)
        self.addCleanup(c.close)
        return c

    # -- assertions
    def assertLocalError(self, resp, status, closed=None):
        """A proxy-generated error: the status, text/plain, a short non-empty one-line body."""
        self.assertEqual(resp.status, status, resp)
        ctype = (resp.header("content-type") or "").lower()
        self.assertTrue(ctype.startswith("text/plain"), f"Content-Type {ctype!r}: {resp}")
        text = (resp.body or b"").decode("utf-8", "replace").strip()
        self.assertTrue(text, f"empty error body: {resp}")
        self.assertNotIn("\n", text, f"error body should be one line: {text!r}")
        self.assertLess(len(text), 300, f"error body should be short: {text!r}")
        self.assertIsNone(resp.header("x-backend"), f"error reply came from a backend: {resp}")
        if closed is not None:
            self.assertTrue(closed, "the proxy should close the connection after an error reply")

    def assertForwardedHeaders(self, rec: RecordedRequest, client_ip="127.0.0.1"):
        xff = ", ".join(rec.headers.get_all("x-forwarded-for"))
        self.assertTrue(xff.split(",")[-1].strip() == client_ip,
                        f"X-Forwarded-For {xff!r} should end with {client_ip}: {rec}")
        self.assertEqual(rec.headers.get_all("x-forwarded-proto"), ["http"], rec)
        self.assertEqual(rec.version, "HTTP/1.1", rec)
