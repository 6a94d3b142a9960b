"""Split routing: the validation path goes to the CloudFront stand-in (TLS, SNI verified),
everything else to the origin, Host preserved on both sides; ambiguous targets get 400."""

import unittest

from wkharness import (CF_SNI, LOOPBACK, TENANT, ProxyTestCase, build_request, curl, request,
                       send_raw)

TOKEN_PATH = "/.well-known/pki-validation/x.txt"


class SplitRoutingTest(ProxyTestCase):
    def setUp(self):
        self.origin, self.cf, self.proxy = self.start_all()

    def test_validation_path_reaches_cloudfront_over_tls_with_host_and_sni(self):
        r = curl(self.proxy.url(TOKEN_PATH), "-H", f"Host: {TENANT}")
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"token-body-for-x.txt")
        self.assertEqual(r.header("x-backend"), "cloudfront")
        (rec,) = self.cf.requests
        self.assertEqual(rec.method, "GET")
        self.assertEqual(rec.target, TOKEN_PATH)
        self.assertEqual(rec.header("host"), TENANT)
        self.assertEqual(rec.sni, CF_SNI, "the proxy must send the configured SNI")
        self.assertForwardedHeaders(rec)
        self.assertEqual(self.origin.requests, [])

    def test_other_paths_reach_origin_with_host_preserved(self):
        for host, target in ((TENANT, "/"), (TENANT, "/index.html?q=1&r=%41"),
                             ("www.tenant.example", "/.well-known/acme-challenge/abc"),
                             ("unrelated.example:8080", "/a/b/../c")):
            with self.subTest(host=host, target=target):
                self.origin.reset()
                r = request(self.proxy.port, "GET", target, host=host)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.header("x-backend"), "origin")
                (rec,) = self.origin.requests
                self.assertEqual(rec.target, target, "origin traffic must pass untouched")
                self.assertEqual(rec.header("host"), host)
                self.assertForwardedHeaders(rec)
        self.assertEqual(self.cf.requests, [])

    def test_x_forwarded_for_is_appended_to_what_the_client_sent(self):
        r = request(self.proxy.port, "GET", "/xff",
                    headers=[("X-Forwarded-For", "203.0.113.7")])
        self.assertEqual(r.status, 200, r)
        (rec,) = self.origin.requests
        xff = [p.strip() for v in rec.headers.get_all("x-forwarded-for") for p in v.split(",")]
        self.assertEqual(xff, ["203.0.113.7", LOOPBACK])

    def test_validation_route_forwards_no_cookie_or_authorization(self):
        hdrs = [("Cookie", "session=secret"), ("Authorization", "Bearer secret"),
                ("User-Agent", "acme-ca/1.0"), ("Accept", "*/*"), ("X-Custom", "1")]
        r = request(self.proxy.port, "GET", TOKEN_PATH, headers=hdrs)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"token-body-for-x.txt")
        (rec,) = self.cf.requests
        names = rec.headers.names()
        for banned in ("cookie", "authorization", "x-custom"):
            self.assertNotIn(banned, names, f"{banned} leaked to CloudFront: {rec}")
        self.assertEqual(rec.header("user-agent"), "acme-ca/1.0")
        self.assertEqual(rec.header("accept"), "*/*")
        # The origin route is transparent: the same headers arrive untouched.
        r = request(self.proxy.port, "GET", "/app", headers=hdrs)
        self.assertEqual(r.status, 200, r)
        (orec,) = self.origin.requests
        self.assertEqual(orec.header("cookie"), "session=secret")
        self.assertEqual(orec.header("authorization"), "Bearer secret")
        self.assertEqual(orec.header("x-custom"), "1")

    def test_host_outside_allow_list_goes_to_origin(self):
        r = request(self.proxy.port, "GET", TOKEN_PATH, host="evil.example")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("x-backend"), "origin")
        (rec,) = self.origin.requests
        self.assertEqual((rec.target, rec.header("host")), (TOKEN_PATH, "evil.example"))
        self.assertEqual(self.cf.requests, [])

    def test_host_match_is_case_insensitive_and_ignores_port(self):
        for host in ("TENANT.Example", "tenant.example:80", "WWW.tenant.example:8080"):
            with self.subTest(host=host):
                r = request(self.proxy.port, "GET", TOKEN_PATH, host=host)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.header("x-backend"), "cloudfront", r)
        self.assertEqual(self.origin.requests, [])

    def test_head_goes_to_cloudfront_but_other_methods_go_to_origin(self):
        r = request(self.proxy.port, "HEAD", TOKEN_PATH)
        self.assertEqual((r.status, r.body), (200, b""), r)
        self.assertEqual(r.header("x-backend"), "cloudfront")
        for method in ("POST", "PUT", "DELETE", "OPTIONS"):
            with self.subTest(method=method):
                self.origin.reset()
                r = request(self.proxy.port, method, TOKEN_PATH, body=b"payload")
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.header("x-backend"), "origin")
                (rec,) = self.origin.requests
                self.assertEqual((rec.method, rec.target, rec.body), (method, TOKEN_PATH,
                                                                      b"payload"))
        self.assertEqual([x.method for x in self.cf.requests], ["HEAD"])

    def test_paths_under_prefix_that_are_not_one_safe_segment_go_to_origin(self):
        for target in ("/.well-known/pki-validation/a/b.txt", "/.well-known/pki-validation/",
                       "/.well-known/pki-validation/a~b", "/.well-known/pki-validationx/t.txt",
                       "/.well-known/pki-validation"):
            with self.subTest(target=target):
                self.origin.reset()
                r = request(self.proxy.port, "GET", target)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.header("x-backend"), "origin", r)
                self.assertEqual(self.origin.requests[0].target, target)
        self.assertEqual(self.cf.requests, [])

    def test_ambiguous_targets_get_400_and_reach_no_backend(self):
        targets = ["/.well-known/pki-validation/%2e%2e/x",
                   "/.well-known//pki-validation/x.txt",
                   "/.well-known/pki-validation/..%2fx.txt",
                   "/.well-known/pki-validation/a%2Fb.txt",
                   "/.well-known/pki-validation/%2E%2E%2F%2E%2E%2Fetc",
                   "/.well-known/pki-validation/../../x.txt",
                   "/.well-known/pki-validation/%zz.txt"]
        for target in targets:
            with self.subTest(target=target):
                r, closed = send_raw(self.proxy.port, build_request("GET", target))
                self.assertLocalError(r, 400, closed)
        self.assertEqual(self.origin.requests, [])
        self.assertEqual(self.cf.requests, [])

    def test_absolute_form_authority_replaces_host(self):
        r = request(self.proxy.port, "GET", f"http://{TENANT}{TOKEN_PATH}", host="other.example")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("x-backend"), "cloudfront", r)
        (rec,) = self.cf.requests
        self.assertEqual(rec.header("host"), TENANT)
        self.assertEqual(rec.headers.get_all("host"), [TENANT])
        self.assertEqual(rec.target, TOKEN_PATH)

    def test_hop_by_hop_headers_are_removed(self):
        hdrs = [("Connection", "keep-alive, X-Hop"), ("X-Hop", "1"), ("Keep-Alive", "timeout=5"),
                ("Proxy-Connection", "keep-alive"), ("TE", "trailers"), ("X-End", "2")]
        r = request(self.proxy.port, "GET", "/hop", headers=hdrs)
        self.assertEqual(r.status, 200, r)
        (rec,) = self.origin.requests
        names = rec.headers.names()
        for hop in ("x-hop", "keep-alive", "proxy-connection", "te"):
            self.assertNotIn(hop, names, rec)
        self.assertNotIn("x-hop", ",".join(rec.headers.get_all("connection")).lower())
        self.assertEqual(rec.header("x-end"), "2")
        # No protocol switch towards CloudFront: an Upgrade request on the validation path is
        # either sent to CloudFront without Upgrade, or not sent there at all (origin).
        r = request(self.proxy.port, "GET", TOKEN_PATH,
                    headers=[("Connection", "Upgrade"), ("Upgrade", "websocket")])
        self.assertEqual(r.status, 200, r)
        self.assertIn(r.header("x-backend"), ("cloudfront", "origin"))
        for crec in self.cf.requests:
            self.assertNotIn("upgrade", crec.headers.names(), crec)
            self.assertNotIn("upgrade", ",".join(crec.headers.get_all("connection")).lower())

    def test_access_log_has_one_line_per_request(self):
        request(self.proxy.port, "GET", TOKEN_PATH)
        request(self.proxy.port, "GET", "/page", host="www.tenant.example")
        request(self.proxy.port, "GET", "/.well-known/pki-validation/%2e%2e/x")
        lines = self.proxy.wait_for_log(3)
        self.assertEqual(len(lines), 3, lines)
        self.assertEqual(self.proxy.bad_log_lines(), [])
        keys = {"time", "client", "host", "method", "target", "route", "upstream", "status",
                "bytes_in", "bytes_out", "duration_ms", "error"}
        for line in lines:
            self.assertLessEqual(keys, set(line), line)
        by_target = {line["target"]: line for line in lines}
        v = by_target[TOKEN_PATH]
        self.assertEqual((v["route"], v["upstream"], v["status"], v["host"], v["method"]),
                         ("validation", "cloudfront", 200, TENANT, "GET"))
        self.assertEqual(v["error"], "")
        self.assertIn(LOOPBACK, v["client"])
        o = by_target["/page"]
        self.assertEqual((o["route"], o["upstream"], o["status"]), ("origin", "origin", 200))
        self.assertGreater(o["bytes_out"], 0)
        rj = by_target["/.well-known/pki-validation/%2e%2e/x"]
        self.assertEqual((rj["route"], rj["upstream"], rj["status"]), ("reject", "", 400))


class ForwardedHeaderPolicyTest(ProxyTestCase):
    CLIENT = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")]

    def forwarded(self, policy):
        origin, cf, proxy = self.start_all(headers={"x_forwarded_for": policy,
                                                    "x_forwarded_proto": policy})
        r = request(proxy.port, "GET", "/policy", headers=self.CLIENT)
        self.assertEqual(r.status, 200, r)
        (rec,) = origin.requests
        return rec.headers.get_all("x-forwarded-for"), rec.headers.get_all("x-forwarded-proto")

    def test_replace_drops_what_the_client_sent(self):
        self.assertEqual(self.forwarded("replace"), ([LOOPBACK], ["http"]))

    def test_off_leaves_client_values_untouched(self):
        self.assertEqual(self.forwarded("off"), (["203.0.113.7"], ["https"]))


if __name__ == "__main__":
    unittest.main()
