"""The four ways to answer the validator (forward, redirect, fetch, static), token lists that
divert only their own files, and the validation event log, end to end through the real binary
with recording backends and a TLS stand-in for the ACM validation host."""

import json
import os
import signal
import subprocess
import tempfile
import time
import unittest

from wkharness import TENANT, ProxyTestCase, request, wait_until, wkproxy_bin

PREFIX = "/.well-known/pki-validation/"
WWW = "www.tenant.example"


def token_yaml(domain, file, redirect_to, content=None):
    lines = [f"  - domain: {domain}",
             f"    redirect_from: \"http://{domain}{PREFIX}{file}\"",
             f"    redirect_to: \"{redirect_to}\""]
    if content is not None:
        lines.append(f"    content: \"{content}\"")
    return "\n".join(lines)


class ValidationModesTest(ProxyTestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="wk-modes-")
        self.addCleanup(lambda: __import__("shutil").rmtree(self.tmp, ignore_errors=True))
        self.events_path = os.path.join(self.tmp, "events.jsonl")

    def events(self, n=1):
        def read():
            try:
                with open(self.events_path) as f:
                    return [json.loads(line) for line in f if line.strip()]
            except FileNotFoundError:
                return []
        wait_until(lambda: len(read()) >= n, 5, what=f"{n} validation events")
        return read()

    def start(self, validation, tokens, acm=None, extra_lines=(), **cfg):
        origin = self.start_backend("origin")
        cf = self.start_backend("cloudfront", tls=True)
        lines = list(extra_lines) + ["validation:"] + [f"  {k}: {v}" for k, v in validation.items()]
        lines.append(f"  event_log: {self.events_path}")
        if acm is not None:
            lines.append(f"  fetch_ca_file: {self.ca.ca_pem}")
        if tokens:
            lines += ["tokens:"] + tokens
        proxy = self.start_proxy(origin, cf, extra="\n".join(lines), **cfg)
        return origin, cf, proxy

    # -- forward ---------------------------------------------------------------------------------

    def test_event_lines_stay_valid_json_with_non_utf8_header_bytes(self):
        origin, cf, proxy = self.start({"mode": "forward"}, [])
        # build_request sends latin-1: "\u00e9" goes out as the single byte 0xE9 (obs-text).
        r = request(proxy.port, "GET", PREFIX + "x.txt", headers=[("User-Agent", "caf\u00e9 CA")])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.events(1)[0]["user_agent"], "caf\u00e9 CA")

    def test_forward_with_tokens_diverts_only_the_token_files(self):
        to = "https://validation.us-east-1.acm-validations.aws/1/.well-known/pki-validation/t1.txt"
        origin, cf, proxy = self.start({"mode": "forward"}, [token_yaml(TENANT, "t1.txt", to)])
        r = request(proxy.port, "GET", PREFIX + "t1.txt", headers=[("User-Agent", "acm-like")])
        self.assertEqual((r.status, r.body, r.header("x-backend")),
                         (200, b"token-body-for-t1.txt", "cloudfront"), r)
        self.assertEqual(cf.requests[0].header("host"), TENANT)
        # Another file under the prefix (another CA's) goes to the origin untouched.
        r = request(proxy.port, "GET", PREFIX + "other-ca.txt?x=1")
        self.assertEqual((r.status, r.header("x-backend")), (200, "origin"), r)
        self.assertEqual(origin.requests[-1].target, PREFIX + "other-ca.txt?x=1")
        self.assertEqual(len(cf.requests), 1)
        # A domain without tokens still forwards any safe file (nothing imported for it).
        r = request(proxy.port, "GET", PREFIX + "w.txt", host=WWW)
        self.assertEqual(r.header("x-backend"), "cloudfront", r)
        # Each request had its own connection, possibly on another worker: an event is
        # recorded after its answer is sent, so the file's order may differ from ours.
        ev = sorted(self.events(3), key=lambda e: e["time"])
        self.assertEqual(sorted((e["domain"], e["file"], e["action"], e["status"]) for e in ev),
                         sorted([(TENANT, "t1.txt", "forward", 200),
                                 (TENANT, "other-ca.txt", "origin", 200),
                                 (WWW, "w.txt", "forward", 200)]))
        first = next(e for e in ev if e["file"] == "t1.txt")
        self.assertEqual(first["user_agent"], "acm-like")
        self.assertEqual(first["upstream"], "cloudfront")
        self.assertEqual(first["mode"], "forward")
        self.assertGreaterEqual(first["latency_ms"], 0)
        # Events are not in the access log stream, and the access log is not in the event log.
        self.assertTrue(all("event" not in line for line in proxy.access_log()))

    def test_unknown_token_not_found(self):
        to = "https://validation.us-east-1.acm-validations.aws/1/.well-known/pki-validation/t1.txt"
        origin, cf, proxy = self.start({"unknown_token": "not_found"},
                                       [token_yaml(TENANT, "t1.txt", to)])
        r = request(proxy.port, "GET", PREFIX + "nope.txt")
        self.assertEqual(r.status, 404, r)
        self.assertEqual(r.header("cache-control"), "no-store")
        self.assertEqual((origin.requests, cf.requests), ([], []))
        self.assertEqual(self.events(1)[0]["action"], "not_found")

    # -- redirect --------------------------------------------------------------------------------

    def test_redirect_answers_with_the_tokens_redirect_to(self):
        to = "https://validation.eu-west-1.acm-validations.aws/42/.well-known/pki-validation/r.txt"
        origin, cf, proxy = self.start({"mode": "redirect"}, [token_yaml(TENANT, "r.txt", to)])
        c = self.client(proxy)
        r = c.request("GET", PREFIX + "r.txt")
        self.assertEqual((r.status, r.header("location"), r.header("content-length")),
                         (301, to, "0"), r)
        self.assertEqual(r.header("cache-control"), "no-store")
        # Keep-alive survives a local answer; HEAD gets the same head.
        r = c.request("HEAD", PREFIX + "r.txt")
        self.assertEqual((r.status, r.header("location"), r.body), (301, to, b""), r)
        r = c.request("GET", "/app")
        self.assertEqual(r.header("x-backend"), "origin")
        # No token for the file: the origin, untouched.
        r = request(proxy.port, "GET", PREFIX + "unknown.txt")
        self.assertEqual(r.header("x-backend"), "origin", r)
        self.assertEqual(cf.requests, [])
        ev = self.events(3)
        self.assertEqual((ev[0]["action"], ev[0]["status"], ev[0]["location"]),
                         ("redirect", 301, to))

    def test_redirect_with_tokens_as_aws_prints_them(self):
        # The AWS CLI reference's example: no schemes, and file names that differ.
        frm = f"{TENANT}{PREFIX}b315c9ae21284e7918bb9f3f422ac3c7.txt"
        to = ("validation.us-east-1.acm-validations.aws/123456789012/.well-known/pki-validation/"
              "b315c9ae21284e7918bb9f3f422ab1c7.txt")
        origin, cf, proxy = self.start(
            {"mode": "redirect"},
            [f"  - domain: {TENANT}\n    redirect_from: {frm}\n    redirect_to: {to}"])
        r = request(proxy.port, "GET", PREFIX + "b315c9ae21284e7918bb9f3f422ac3c7.txt")
        # The Location is absolute: the CA follows it over HTTPS.
        self.assertEqual((r.status, r.header("location")), (301, "https://" + to), r)
        r = request(proxy.port, "GET", PREFIX + "b315c9ae21284e7918bb9f3f422ab1c7.txt")
        self.assertEqual(r.header("x-backend"), "origin", r)  # RedirectTo's name is not a token
        self.assertEqual(cf.requests, [])

    def test_tokens_dir_tenants_come_and_go_with_reloads(self):
        # tokens import --tokens-dir writes one file per tenant; SIGHUP serves it, removal stops.
        d = os.path.join(self.tmp, "tenants")
        os.makedirs(d)
        ref = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "aws",
                           "get-managed-certificate-details.reference.json")
        origin, cf, proxy = self.start({"mode": "redirect"}, [], extra_lines=[f"tokens_dir: {d}"])
        frm = PREFIX + "b315c9ae21284e7918bb9f3f422ac3c7.txt"
        r = request(proxy.port, "GET", frm, host="example.com")
        self.assertEqual(r.header("x-backend"), "origin", r)  # not allow-listed yet

        p = subprocess.run([wkproxy_bin(), "tokens", "import", ref, "--tenant", "dt_ref",
                            "--tokens-dir", d], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(os.listdir(d), ["dt_ref.yaml"])
        os.kill(proxy.pid, signal.SIGHUP)
        wait_until(lambda: request(proxy.port, "GET", frm, host="example.com").status == 301, 5,
                   what="the tenant file's token served after SIGHUP")
        r = request(proxy.port, "GET", frm, host="example.com")
        self.assertEqual(r.header("location"),
                         "https://validation.us-east-1.acm-validations.aws/123456789012/"
                         ".well-known/pki-validation/b315c9ae21284e7918bb9f3f422ab1c7.txt")
        # The config's own tenant keeps working alongside.
        r = request(proxy.port, "GET", "/app")
        self.assertEqual(r.header("x-backend"), "origin", r)

        p = subprocess.run([wkproxy_bin(), "tokens", "remove", "--tenant", "dt_ref",
                            "--tokens-dir", d], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        os.kill(proxy.pid, signal.SIGHUP)
        wait_until(lambda: request(proxy.port, "GET", frm, host="example.com").header(
            "x-backend") == "origin", 5, what="the removed tenant's domain back to the origin")

    def test_redirect_status_and_per_domain_mode(self):
        to = "https://validation.eu-west-1.acm-validations.aws/42/.well-known/pki-validation/r.txt"
        origin, cf, proxy = self.start(
            {"mode": "forward", "redirect_status": 307, "modes": f"{{{WWW}: redirect}}"},
            [token_yaml(WWW, "r.txt", to), token_yaml(TENANT, "f.txt", to)])
        r = request(proxy.port, "GET", PREFIX + "r.txt", host=WWW)
        self.assertEqual((r.status, r.header("location")), (307, to), r)
        r = request(proxy.port, "GET", PREFIX + "f.txt")
        self.assertEqual((r.status, r.header("x-backend")), (200, "cloudfront"), r)

    # -- fetch -----------------------------------------------------------------------------------

    def test_fetch_proxies_to_redirect_to_over_verified_tls(self):
        acm = self.start_backend("acm", tls=True, serve_tokens=True)
        to = f"https://localhost:{acm.port}{PREFIX}acm-token.txt"
        origin, cf, proxy = self.start({"mode": "fetch"},
                                       [token_yaml(TENANT, "f1.txt", to)], acm=acm)
        r = request(proxy.port, "GET", PREFIX + "f1.txt",
                    headers=[("Cookie", "secret=1"), ("User-Agent", "validator")])
        self.assertEqual((r.status, r.body), (200, b"token-body-for-acm-token.txt"), r)
        rec = acm.requests[0]
        self.assertEqual((rec.target, rec.header("host"), rec.sni),
                         (PREFIX + "acm-token.txt", f"localhost:{acm.port}", "localhost"))
        self.assertIsNone(rec.header("cookie"), "credentials never leave for the validation host")
        self.assertEqual((origin.requests, cf.requests), ([], []))
        ev = self.events(1)[0]
        self.assertEqual((ev["action"], ev["status"], ev["upstream"]), ("fetch", 200, "localhost"))

    def test_fetch_refuses_an_unverified_validation_host(self):
        acm = self.start_backend("acm", tls=True, other_ca=True)  # a CA the proxy does not trust
        to = f"https://localhost:{acm.port}{PREFIX}x.txt"
        origin, cf, proxy = self.start({"mode": "fetch"}, [token_yaml(TENANT, "x.txt", to)],
                                       acm=acm)
        r = request(proxy.port, "GET", PREFIX + "x.txt")
        self.assertEqual(r.status, 502, r)
        self.assertEqual(acm.requests, [])
        self.assertEqual(self.events(1)[0]["error"], "upstream_tls")

    # -- static ----------------------------------------------------------------------------------

    def test_static_serves_files_and_inline_content_and_rereads_on_reload(self):
        d = os.path.join(self.tmp, "tokens")
        os.makedirs(os.path.join(d, TENANT))
        with open(os.path.join(d, TENANT, "s1.txt"), "w") as f:
            f.write("from-file-s1")
        with open(os.path.join(d, "shared.txt"), "w") as f:
            f.write("shared-file")
        outside = os.path.join(self.tmp, "secret.txt")
        with open(outside, "w") as f:
            f.write("do-not-serve")
        os.symlink(outside, os.path.join(d, "escape.txt"))
        to = "https://validation.us-east-1.acm-validations.aws/1/.well-known/pki-validation/i.txt"
        origin, cf, proxy = self.start(
            {"mode": "static", "static_dir": d},
            [token_yaml(WWW, "i.txt", to, content="inline-i")])
        r = request(proxy.port, "GET", PREFIX + "s1.txt")
        self.assertEqual((r.status, r.body, r.header("content-type"), r.header("content-length")),
                         (200, b"from-file-s1", "text/plain", "12"), r)
        r = request(proxy.port, "HEAD", PREFIX + "s1.txt")
        self.assertEqual((r.status, r.body, r.header("content-length")), (200, b"", "12"), r)
        r = request(proxy.port, "GET", PREFIX + "i.txt", host=WWW)
        self.assertEqual(r.body, b"inline-i", r)
        # www has tokens: only they are diverted; shared.txt goes to the origin for www...
        self.assertEqual(request(proxy.port, "GET", PREFIX + "shared.txt", host=WWW)
                         .header("x-backend"), "origin")
        # ...and is served for the apex, which has none.
        self.assertEqual(request(proxy.port, "GET", PREFIX + "shared.txt").body, b"shared-file")
        # Never outside the folder, never a listing, never a path.
        self.assertEqual(request(proxy.port, "GET", PREFIX + "escape.txt").header("x-backend"),
                         "origin")
        self.assertEqual(request(proxy.port, "GET", PREFIX).header("x-backend"), "origin")
        self.assertEqual(request(proxy.port, "GET", PREFIX + "..%2Fsecret.txt").status, 400)
        self.assertEqual(request(proxy.port, "GET", PREFIX + "%2e%2e/secret.txt").status, 400)
        self.assertEqual(request(proxy.port, "GET", PREFIX + TENANT + "/s1.txt")
                         .header("x-backend"), "origin")
        self.assertIn("points outside the directory", proxy.stderr())
        self.assertEqual(cf.requests, [])
        # Files are re-read on reload.
        with open(os.path.join(d, TENANT, "s1.txt"), "w") as f:
            f.write("rotated")
        os.kill(proxy.pid, signal.SIGHUP)
        wait_until(lambda: request(proxy.port, "GET", PREFIX + "s1.txt").body == b"rotated", 5,
                   what="the new file content after SIGHUP")

    def test_static_never_serves_dotfiles(self):
        # Issue 18, finding 10: ".hidden" and an editor's swap file ".x.txt.swp" (the content of
        # x.txt while it is edited) were served like token files. They get what an unknown token
        # gets: the origin by default, 404 with unknown_token: not_found.
        d = os.path.join(self.tmp, "tokens")
        os.makedirs(os.path.join(d, TENANT))
        files = {os.path.join(d, "x.txt"): "token-x",
                 os.path.join(d, ".hidden"): "hidden-file",
                 os.path.join(d, ".x.txt.swp"): "swap-file-of-x",
                 os.path.join(d, TENANT, ".y.txt.swp"): "swap-file-of-y"}
        for path, text in files.items():
            with open(path, "w") as f:
                f.write(text)
        for unknown, expected in (("origin", (200, "origin")), ("not_found", (404, None))):
            with self.subTest(unknown_token=unknown):
                origin, cf, proxy = self.start({"mode": "static", "static_dir": d,
                                                "unknown_token": unknown}, [])
                r = request(proxy.port, "GET", PREFIX + "x.txt")
                self.assertEqual((r.status, r.body), (200, b"token-x"), r)
                for name in (".hidden", ".x.txt.swp", ".y.txt.swp"):
                    for method in ("GET", "HEAD"):
                        r = request(proxy.port, method, PREFIX + name)
                        self.assertEqual((r.status, r.header("x-backend")), expected,
                                         f"{method} {name}: {r}")
                        self.assertNotIn(b"hidden-file", r.body)
                        self.assertNotIn(b"swap-file", r.body)
                names = (".hidden", ".x.txt.swp", ".y.txt.swp") if unknown == "origin" else ()
                self.assertEqual([q.target for q in origin.requests],
                                 [PREFIX + n for n in names for _ in ("GET", "HEAD")])
                self.assertEqual(cf.requests, [])


if __name__ == "__main__":
    unittest.main()
