"""The admin listener: /healthz, /readyz (flips while draining), /metrics (checked against a
strict reader of the Prometheus text format, with exact values after known traffic),
/status.json, /config (secrets redacted), bearer token, and never on a public listener; the
probes still answer while many connections say nothing (issue 18, finding 4).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from wkharness import (TENANT, Proxy, ProxyTestCase, make_config, missing, wait_until,
                       wkproxy_bin)

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class ExpositionError(AssertionError):
    pass


def parse_value(text: str) -> float:
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?", text):
        raise ExpositionError(f"bad sample value {text!r}")
    return float(text)


def parse_exposition(text: str) -> dict:
    """Reads the text format (0.0.4) strictly and checks Prometheus conventions. Returns
    {(name, ((label, value), ...)): value}."""
    if not text.endswith("\n"):
        raise ExpositionError("the exposition must end with a newline")
    types: dict[str, str] = {}
    helps: set[str] = set()
    samples: dict = {}
    family_done: set[str] = set()
    current = None
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            parts = line.split(" ", 3)
            if len(parts) < 4 or not NAME.fullmatch(parts[2]):
                raise ExpositionError(f"line {n}: bad comment {line!r}")
            name = parts[2]
            if parts[1] == "HELP":
                if name in helps:
                    raise ExpositionError(f"line {n}: second HELP for {name}")
                helps.add(name)
            else:
                if name in types:
                    raise ExpositionError(f"line {n}: second TYPE for {name}")
                if parts[3] not in TYPES:
                    raise ExpositionError(f"line {n}: unknown type {parts[3]!r}")
                if name in family_done or name == current:
                    raise ExpositionError(f"line {n}: TYPE after samples of {name}")
                types[name] = parts[3]
                if parts[3] == "counter" and not name.endswith("_total"):
                    raise ExpositionError(f"line {n}: counter {name} should end in _total")
                if parts[3] != "counter" and name.endswith("_total"):
                    raise ExpositionError(f"line {n}: {parts[3]} {name} must not end in _total")
            continue
        if line.startswith("#") or not line:
            raise ExpositionError(f"line {n}: unexpected {line!r}")
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)", line)
        if not m:
            raise ExpositionError(f"line {n}: bad sample {line!r}")
        name, label_text, value = m.group(1), m.group(3), m.group(4)
        labels = []
        if label_text:
            pos = 0
            while pos < len(label_text):
                lm = LABEL.match(label_text, pos)
                if not lm:
                    raise ExpositionError(f"line {n}: bad labels {label_text!r}")
                labels.append((lm.group(1), lm.group(2)))
                pos = lm.end()
                if pos < len(label_text):
                    if label_text[pos] != ",":
                        raise ExpositionError(f"line {n}: bad labels {label_text!r}")
                    pos += 1
        if len({k for k, _ in labels}) != len(labels):
            raise ExpositionError(f"line {n}: repeated label in {line!r}")
        family = name
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[: -len(suffix)]
            if name.endswith(suffix) and types.get(base) == "histogram":
                family = base
        if family not in types:
            raise ExpositionError(f"line {n}: sample {name} without a TYPE")
        if types[family] == "histogram" and family == name:
            raise ExpositionError(f"line {n}: histogram sample without _bucket/_sum/_count")
        if current is not None and family != current:
            family_done.add(current)
        if family in family_done:
            raise ExpositionError(f"line {n}: samples of {family} are not together")
        current = family
        key = (name, tuple(labels))
        if key in samples:
            raise ExpositionError(f"line {n}: duplicate series {line!r}")
        samples[key] = parse_value(value)
        if types[family] == "counter" and samples[key] < 0:
            raise ExpositionError(f"line {n}: negative counter")
    check_histograms(types, samples)
    return samples


def check_histograms(types, samples):
    for family, t in types.items():
        if t != "histogram":
            continue
        series: dict = {}
        for (name, labels), v in samples.items():
            if name == family + "_bucket":
                rest = tuple(x for x in labels if x[0] != "le")
                le = dict(labels)["le"]
                series.setdefault(rest, []).append((parse_value(le), v))
        for rest, buckets in series.items():
            les = [le for le, _ in buckets]
            if les != sorted(les) or les[-1] != math.inf:
                raise ExpositionError(f"{family}{rest}: buckets not ascending to +Inf: {les}")
            counts = [c for _, c in buckets]
            if counts != sorted(counts):
                raise ExpositionError(f"{family}{rest}: buckets not cumulative: {counts}")
            count = samples.get((family + "_count", rest))
            total = samples.get((family + "_sum", rest))
            if count is None or total is None:
                raise ExpositionError(f"{family}{rest}: _count or _sum missing")
            if count != counts[-1]:
                raise ExpositionError(f"{family}{rest}: _count {count} != +Inf bucket {counts[-1]}")


def value(samples, name, **labels) -> float:
    for (n, ls), v in samples.items():
        if n == name and dict(ls) == {k: str(x) for k, x in labels.items()}:
            return v
    return 0.0


def series_sum(samples, name, **labels) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == str(x) for k, x in labels.items()))


class CheckerSelfTest(unittest.TestCase):
    def test_the_checker_refuses_what_prometheus_would(self):
        good = ("# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n"
                "# HELP h_seconds H.\n# TYPE h_seconds histogram\n"
                "h_seconds_bucket{le=\"0.5\"} 1\nh_seconds_bucket{le=\"+Inf\"} 2\n"
                "h_seconds_sum 0.7\nh_seconds_count 2\n")
        self.assertEqual(value(parse_exposition(good), "a_total", x=1), 3)
        bad = [good.replace("a_total{x=\"1\"} 3", "a_total{x=\"1\"} 3\na_total{x=\"1\"} 4"),
               good.replace("# TYPE a_total counter", "# TYPE a_total gauge"),
               good.replace("h_seconds_count 2", "h_seconds_count 3"),
               good.replace("le=\"0.5\"} 1", "le=\"0.5\"} 5"),
               good.replace("{x=\"1\"}", "{x=1}"),
               good.replace("# HELP a_total A.\n# TYPE a_total counter\n", ""),
               good.rstrip("\n"),
               good + "a_total{x=\"2\"} 1\n"]
        for text in bad:
            with self.assertRaises(ExpositionError, msg=text):
                parse_exposition(text)


class AdminCase(ProxyTestCase):
    def start_with_admin(self, token=None, **cfg):
        admin = '{listen: "127.0.0.1:0"' + (f', token: "{token}"' if token else "") + "}"
        extra = cfg.pop("extra", "")
        return self.start_all(extra=f"admin: {admin}\n{extra}", **cfg)

    def admin(self, proxy, path, token=None, method="GET"):
        host, port = proxy.admin_address
        req = urllib.request.Request(f"http://{host}:{port}{path}", method=method)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def scrape(self, proxy, token=None) -> dict:
        status, headers, body = self.admin(proxy, "/metrics", token)
        self.assertEqual(status, 200, body)
        self.assertEqual(headers["Content-Type"], "text/plain; version=0.0.4; charset=utf-8")
        return parse_exposition(body.decode())


class MetricsTest(AdminCase):
    def test_exact_counters_after_known_traffic(self):
        origin, cf, proxy = self.start_with_admin()
        listener = f"127.0.0.1:{proxy.port}"
        c = self.client(proxy)
        for i in range(3):
            self.assertEqual(c.request("GET", f"/ok{i}").status, 200)
        self.assertEqual(c.request("GET", "/status/503").status, 503)
        self.assertEqual(c.request("GET", "/.well-known/pki-validation/abc.txt").status, 200)
        bad = self.client(proxy)
        bad.send(b"GET / HTTP/1.1\r\nHost: tenant.example\r\nBad Header: x\r\n\r\n")
        self.assertEqual(bad.read_response().status, 400)
        wait_until(lambda: series_sum(self.scrape(proxy), "wkproxy_requests_total") == 6, 5,
                   what="six requests counted")
        m = self.scrape(proxy)
        req = "wkproxy_requests_total"
        self.assertEqual(value(m, req, listener=listener, route="origin", code="2xx"), 3)
        self.assertEqual(value(m, req, listener=listener, route="origin", code="5xx"), 1)
        self.assertEqual(value(m, req, listener=listener, route="validation", code="2xx"), 1)
        self.assertEqual(value(m, req, listener=listener, route="reject", code="4xx"), 1)
        hist = "wkproxy_request_duration_seconds"
        self.assertEqual(value(m, hist + "_count", route="origin"), 4)
        self.assertEqual(value(m, hist + "_bucket", route="origin", le="+Inf"), 4)
        self.assertEqual(value(m, hist + "_count", route="validation"), 1)
        self.assertGreater(value(m, hist + "_sum", route="origin"), 0)
        self.assertLess(value(m, hist + "_sum", route="origin"), 10)
        self.assertEqual(value(m, "wkproxy_validation_requests_total", domain=TENANT,
                               action="forward", code=200), 1)
        self.assertEqual(value(m, "wkproxy_request_failures_total", kind="bad_request"), 1)
        pool = (value(m, "wkproxy_upstream_pool_hits_total", upstream="origin") +
                value(m, "wkproxy_upstream_pool_misses_total", upstream="origin"))
        self.assertEqual(pool, 4)
        self.assertEqual(value(m, "wkproxy_upstream_pool_misses_total", upstream="cloudfront"), 1)
        # The keep-alive client is still open; the 400 closed its connection (after a lingering
        # close of at most a second, as its client stays silent).
        wait_until(lambda: value(self.scrape(proxy), "wkproxy_downstream_connections",
                                 listener=listener) == 1, 5, what="the 400's connection closed")
        self.assertGreater(value(m, "wkproxy_sent_bytes_total", route="origin"), 0)
        build = [ls for (n, ls) in m if n == "wkproxy_build_info"]
        self.assertEqual(len(build), 1)
        self.assertRegex(dict(build[0])["version"], r"^\d+\.\d+\.\d+$")
        self.assertGreater(value(m, "process_start_time_seconds"), 1.7e9)

    def test_parked_connections_gauge(self):
        # Three keep-alive clients go quiet: parked within a sweep tick (0.1 s), counted by the
        # gauge (refreshed every 0.25 s); one sends again and leaves the lot, one closes.
        origin, cf, proxy = self.start_with_admin(workers=1)
        clients = [self.client(proxy) for _ in range(3)]
        for c in clients:
            self.assertEqual(c.request("GET", "/x").status, 200)
        wait_until(lambda: value(self.scrape(proxy), "wkproxy_parked_connections") == 3, 5,
                   what="three parked connections")
        self.assertEqual(clients[0].request("GET", "/again").status, 200)
        clients[1].close()
        wait_until(lambda: value(self.scrape(proxy), "wkproxy_parked_connections") == 2, 5,
                   what="the woken one parked again, the closed one gone")
        wait_until(lambda: value(self.scrape(proxy), "wkproxy_downstream_connections",
                                 listener=f"127.0.0.1:{proxy.port}") == 2, 5,
                   what="the closed connection no longer counted")

    def test_upstream_failures_by_kind(self):
        origin, cf, proxy = self.start_with_admin()
        origin.stop()
        c = self.client(proxy)
        self.assertEqual(c.request("GET", "/down").status, 502)
        wait_until(lambda: value(self.scrape(proxy), "wkproxy_upstream_failures_total",
                                 upstream="origin", error="refused") == 1, 5,
                   what="the refused connection counted")

    def test_reloads_are_counted_with_their_result(self):
        origin, cf, proxy = self.start_with_admin()
        os.kill(proxy.pid, signal.SIGHUP)
        wait_until(lambda: value(self.scrape(proxy), "wkproxy_config_reloads_total",
                                 result="ok") == 1, 10, what="the reload counted")
        self.assertEqual(value(self.scrape(proxy), "wkproxy_config_last_reload_successful"), 1)
        with open(proxy.config_path, "a") as f:
            f.write("unknown_key: 1\n")
        os.kill(proxy.pid, signal.SIGHUP)
        wait_until(lambda: value(self.scrape(proxy), "wkproxy_config_reloads_total",
                                 result="failed") == 1, 10, what="the refused reload counted")
        m = self.scrape(proxy)
        self.assertEqual(value(m, "wkproxy_config_last_reload_successful"), 0)
        self.assertGreaterEqual(value(m, "wkproxy_config_last_reload_timestamp_seconds"),
                                value(m, "process_start_time_seconds"))


class EndpointsTest(AdminCase):
    def test_health_and_readiness_and_the_drain(self):
        origin, cf, proxy = self.start_with_admin(extra="shutdown: {accept_grace: 3s}\n")
        self.assertEqual(self.admin(proxy, "/healthz")[:1], (200,))
        self.assertEqual(self.admin(proxy, "/readyz")[2], b"ready\n")
        os.kill(proxy.pid, signal.SIGTERM)
        wait_until(lambda: self.admin(proxy, "/readyz")[0] == 503, 3, what="readyz to flip")
        self.assertEqual(self.admin(proxy, "/healthz")[0], 200)
        # During accept_grace the public listener still takes requests.
        self.assertEqual(self.client(proxy).request("GET", "/still").status, 200)

    def test_bearer_token_guards_everything_but_health(self):
        origin, cf, proxy = self.start_with_admin(token="s3cret-token")
        for path in ("/metrics", "/status", "/status.json", "/config"):
            with self.subTest(path=path):
                status, headers, _ = self.admin(proxy, path)
                self.assertEqual(status, 401)
                self.assertIn("Bearer", headers.get("WWW-Authenticate", ""))
                self.assertEqual(self.admin(proxy, path, token="wrong")[0], 401)
                self.assertEqual(self.admin(proxy, path, token="s3cret-token")[0], 200)
        self.assertEqual(self.admin(proxy, "/healthz")[0], 200)
        self.assertEqual(self.admin(proxy, "/readyz")[0], 200)
        status, _, body = self.admin(proxy, "/config", token="s3cret-token")
        cfg = json.loads(body)
        self.assertEqual(cfg["admin"]["token"], "(redacted)")
        self.assertNotIn(b"s3cret-token", body)
        self.assertEqual(cfg["listen"][0]["mode"], "http")
        self.assertEqual(self.admin(proxy, "/metrics", method="POST", token="s3cret-token")[0], 405)
        self.assertEqual(self.admin(proxy, "/nope", token="s3cret-token")[0], 404)

    def test_admin_endpoints_are_not_on_the_public_listener(self):
        origin, cf, proxy = self.start_with_admin()
        c = self.client(proxy)
        for path in ("/metrics", "/healthz", "/status"):
            resp = c.request("GET", path)
            self.assertEqual(resp.header("x-backend"), "origin", f"{path} must go to the origin")
        self.assertEqual([r.path for r in origin.requests], ["/metrics", "/healthz", "/status"])

    def test_status_json_shows_validation_requests(self):
        origin, cf, proxy = self.start_with_admin()
        c = self.client(proxy)
        self.assertEqual(c.request("GET", "/.well-known/pki-validation/tok.txt",
                                   headers=[("User-Agent", "CA-Validator/1.0")]).status, 200)

        def tenant():
            doc = json.loads(self.admin(proxy, "/status.json")[2])
            return next(d for d in doc["domains"] if d["domain"] == TENANT)

        wait_until(lambda: tenant()["events"], 5, what="the event on the status page")
        d = tenant()
        self.assertEqual(d["events"][0]["user_agent"], "CA-Validator/1.0")
        self.assertEqual(d["events"][0]["status"], 200)
        self.assertIn("answered 200", d["hint"])


class HostCheckTest(AdminCase):
    """DNS rebinding (issue 18, finding 9): a page on evil.example that re-points its name at
    127.0.0.1 reaches a token-less loopback admin listener from the victim's browser, always
    with "Host: evil.example". Without a token only an IP-literal Host or localhost is served;
    with a token, the token decides, whatever the Host."""

    PROTECTED = ("/config", "/status.json", "/status", "/metrics")

    def get(self, proxy, path, host, token=None):
        c = http.client.HTTPConnection(*proxy.admin_address, timeout=10)
        try:
            c.putrequest("GET", path, skip_host=True)
            c.putheader("Host", host)
            if token:
                c.putheader("Authorization", f"Bearer {token}")
            c.endheaders()
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def test_a_foreign_host_is_refused_without_a_token(self):
        origin, cf, proxy = self.start_with_admin()
        port = proxy.admin_address[1]
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.nip.io", "localhost.",
                     "127.0.0.1:80@evil.example", "0x7f000001"):
            for path in self.PROTECTED:
                with self.subTest(host=host, path=path):
                    status, body = self.get(proxy, path, host)
                    self.assertEqual(status, 403)
                    self.assertIn(b"Host not allowed", body)
                    self.assertNotIn(b"origin", body)
        # No Host, or two: refused too (a browser always sends exactly one).
        for raw in (b"GET /config HTTP/1.0\r\n\r\n",
                    b"GET /config HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n"):
            with self.subTest(raw=raw):
                with socket.create_connection(proxy.admin_address, timeout=10) as s:
                    s.sendall(raw)
                    self.assertTrue(s.recv(65536).startswith(b"HTTP/1.1 403 "))
        # The probes reveal nothing: any Host.
        self.assertEqual(self.get(proxy, "/healthz", "evil.example")[0], 200)
        self.assertEqual(self.get(proxy, "/readyz", "evil.example")[0], 200)

    def test_ip_literals_and_localhost_are_served(self):
        origin, cf, proxy = self.start_with_admin()
        port = proxy.admin_address[1]
        for host in (f"127.0.0.1:{port}", "127.0.0.1", "localhost", f"localhost:{port}",
                     "LocalHost", f"[::1]:{port}", "[::1]", "10.1.2.3:9901"):
            with self.subTest(host=host):
                status, body = self.get(proxy, "/config", host)
                self.assertEqual(status, 200, body)
                self.assertEqual(json.loads(body)["admin"]["token"], "")
        self.assertEqual(self.get(proxy, "/status.json", "localhost")[0], 200)

    def test_with_a_token_any_host_is_fine(self):
        origin, cf, proxy = self.start_with_admin(token="s3cret-token")
        self.assertEqual(self.get(proxy, "/config", "wkproxy-admin.prod.svc:9901",
                                  token="s3cret-token")[0], 200)
        self.assertEqual(self.get(proxy, "/config", "evil.example")[0], 401)
        self.assertEqual(self.get(proxy, "/config", "evil.example", token="wrong")[0], 401)


class SilentConnectionsTest(AdminCase):
    """64 connections that sent nothing used to fill the admin listener for its 10 s read
    timeout, and every newcomer (a liveness probe) was closed unanswered. Now, at the cap, the
    connection that has waited longest for a request (with nothing received) makes room."""

    SILENT = 1000

    def setUp(self):
        super().setUp()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = self.SILENT + 200
        if soft < need:
            if hard != resource.RLIM_INFINITY and hard < need:
                missing(f"RLIMIT_NOFILE hard limit {hard} < {need}")
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))

    def silent(self, address, n):
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        for _ in range(n):
            socks.append(socket.create_connection(address, timeout=5))
        return socks

    def probe(self, address, path="/healthz", prefix=b""):
        """(status or the error, seconds taken) of one request on a new connection."""
        start = time.monotonic()
        c = http.client.HTTPConnection(*address, timeout=3)
        try:
            c.connect()
            if prefix:
                c.sock.sendall(prefix)
            c.request("GET", path)
            return c.getresponse().status, time.monotonic() - start
        except (OSError, http.client.HTTPException) as e:
            return repr(e), time.monotonic() - start
        finally:
            c.close()

    def test_probes_answer_while_a_thousand_connections_say_nothing(self):
        origin, cf, proxy = self.start_with_admin(token="s3cret-token")
        address = proxy.admin_address
        self.silent(address, self.SILENT)
        for i in range(5):
            with self.subTest(round=i):
                for path in ("/healthz", "/readyz"):
                    status, took = self.probe(address, path)
                    self.assertEqual(status, 200, f"{path} under {self.SILENT} silent connections")
                    self.assertLess(took, 1.0)
                # More silent ones arrive between the probes.
                self.silent(address, 100)
        # The token still works for the rest, and the listener is still there.
        self.assertEqual(self.admin(proxy, "/metrics", token="s3cret-token")[0], 200)

    def test_connections_that_stall_inside_a_head_make_room_too(self):
        origin, cf, proxy = self.start_with_admin()
        address = proxy.admin_address
        stalled = self.silent(address, 200)
        for s in stalled:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        status, took = self.probe(address)
        self.assertEqual(status, 200)
        self.assertLess(took, 1.0)

    def test_a_silent_connection_is_closed_after_the_head_timeout(self):
        origin, cf, proxy = self.start_with_admin()
        (s,) = self.silent(proxy.admin_address, 1)
        s.settimeout(8)
        start = time.monotonic()
        try:
            self.assertEqual(s.recv(1), b"")
        except ConnectionResetError:
            pass
        self.assertLess(time.monotonic() - start, 5.0, "closed within the 3 s head timeout")


class ConfigTest(unittest.TestCase):
    def check(self, admin: str) -> subprocess.CompletedProcess:
        d = tempfile.mkdtemp(prefix="wkproxy-admin-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "wkproxy.yaml")
        with open(path, "w") as f:
            f.write(make_config("http://127.0.0.1:1", "http://127.0.0.1:2",
                                listen=("127.0.0.1:8080",), extra=f"admin: {admin}\n"))
        return subprocess.run([wkproxy_bin(), "-t", "-c", path], capture_output=True, text=True,
                              timeout=30)

    def test_a_public_admin_address_needs_a_token(self):
        p = self.check('{listen: "0.0.0.0:9901"}')
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, r"wkproxy\.yaml:\d+:\d+: admin\.listen: .*needs admin\.token")
        self.assertEqual(self.check('{listen: "0.0.0.0:9901", token: t}').returncode, 0)

    def test_the_admin_address_differs_from_the_public_ones(self):
        p = self.check('{listen: "127.0.0.1:8080"}')
        self.assertEqual(p.returncode, 1)
        self.assertIn("must differ from the public listener", p.stderr)


if __name__ == "__main__":
    unittest.main()
