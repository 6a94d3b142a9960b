"""Command line: `-t` config checks with file:line:col messages, refusing to start on a bad
config before binding, the ports file, and a graceful SIGTERM."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from wkharness import (ProxyTestCase, RawClient, available, build_request, ipv6_available,
                       make_config, request, run_check, wait_until, wkproxy_bin)

DESIGN_MINIMAL = """\
version: 1
listen: ["127.0.0.1:8080"]          # HTTP listeners
origin: http://127.0.0.1:8081         # the customer's existing server
cloudfront: http://d111111abcdef8.cloudfront.net   # routing endpoint (http:// or https://)
domains: [example.com, www.example.com]            # tenant domains allowed on the validation path
"""

GOOD = """\
version: 1
listen: ["127.0.0.1:0"]
origin: http://127.0.0.1:8081
cloudfront: http://127.0.0.1:8082
domains: [tenant.example]
"""


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.strip()]


class ConfigCheckTest(unittest.TestCase):
    def test_good_config_is_valid(self):
        p, _ = run_check(GOOD)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("configuration is valid", p.stdout)

    def test_minimal_config_from_design_is_accepted_as_written(self):
        p, _ = run_check(DESIGN_MINIMAL)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("configuration is valid", p.stdout)

    def test_full_config_with_tls_cloudfront_is_valid(self):
        d = tempfile.mkdtemp(prefix="wkproxy-cli-")
        self.addCleanup(shutil.rmtree, d, True)
        ca = os.path.join(d, "ca.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", os.path.join(d, "k"),
                        "-out", ca, "-subj", "/CN=t", "-days", "1"], check=True,
                       capture_output=True)
        text = make_config("http://127.0.0.1:8081",
                           {"url": "https://localhost:8443", "sni": "cloudfront.test",
                            "ca_file": ca},
                           limits={"header_bytes": "32KiB", "header_count": 100,
                                   "target_bytes": "8KiB", "max_body_bytes": 0},
                           headers={"x_forwarded_for": "append", "x_forwarded_proto": "append"})
        p, _ = run_check(text)
        self.assertEqual(p.returncode, 0, f"{p.stderr}\n--- config:\n{text}")

    def test_bad_origin_scheme_names_file_line_column_and_key(self):
        text = GOOD.replace("origin: http://127.0.0.1:8081", "origin: ftp://127.0.0.1:8081")
        p, path = run_check(text, name="bad.yaml")
        self.assertEqual(p.returncode, 1, p)
        self.assertRegex(p.stderr, rf"(?m)^{re.escape(path)}:3:9: origin: .*scheme")

    def test_unknown_key_is_an_error_with_its_line(self):
        p, path = run_check(GOOD + "colour: blue\n")
        self.assertEqual(p.returncode, 1, p)
        self.assertRegex(p.stderr, rf"(?m)^{re.escape(path)}:6:\d+: colour: .*unknown")

    def test_unknown_nested_key_names_the_key_path(self):
        p, path = run_check(GOOD + "timeouts:\n  connect: 2s\n  bogus: 1s\n")
        self.assertEqual(p.returncode, 1, p)
        self.assertRegex(p.stderr, rf"(?m)^{re.escape(path)}:8:3: timeouts\.bogus: ")

    def test_all_errors_are_reported_at_once(self):
        text = (GOOD.replace("http://127.0.0.1:8082", "not a url")
                .replace("version: 1", "version: 7") + "timeouts: {connect: fast}\n")
        p, path = run_check(text)
        self.assertEqual(p.returncode, 1, p)
        lines = error_lines(p.stderr)
        for line_no, key in ((1, "version"), (4, "cloudfront"), (6, "timeouts.connect")):
            self.assertTrue(any(re.match(rf"{re.escape(path)}:{line_no}:\d+: {re.escape(key)}: ",
                                         line) for line in lines),
                            f"no error for {key} at line {line_no} in:\n{p.stderr}")
        self.assertEqual(p.stdout.strip(), "")

    def test_missing_domains_is_an_error(self):
        text = "\n".join(x for x in GOOD.splitlines() if not x.startswith("domains")) + "\n"
        p, path = run_check(text)
        self.assertEqual(p.returncode, 1, p)
        self.assertIn(path, p.stderr)
        self.assertIn("domains", p.stderr)

    def test_env_substitution(self):
        text = GOOD.replace("http://127.0.0.1:8081", "${WK_IT_ORIGIN}").replace(
            "http://127.0.0.1:8082", "${WK_IT_UNSET_CF:-http://127.0.0.1:8082}")
        env = {"WK_IT_ORIGIN": "http://127.0.0.1:9000"}
        os.environ.pop("WK_IT_UNSET_CF", None)
        p, _ = run_check(text, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        p, path = run_check(text, env={"WK_IT_ORIGIN": "gopher://x"})
        self.assertEqual(p.returncode, 1, p)
        self.assertRegex(p.stderr, rf"(?m)^{re.escape(path)}:3:\d+: origin: ")


class RunTest(ProxyTestCase):
    def test_version(self):
        p = subprocess.run([wkproxy_bin(), "--version"], capture_output=True, text=True,
                           timeout=10)
        self.assertEqual(p.returncode, 0, p)
        self.assertRegex(p.stdout + p.stderr, r"\d+\.\d+")

    def test_bad_config_exits_1_before_binding(self):
        d = tempfile.mkdtemp(prefix="wkproxy-cli-")
        self.addCleanup(shutil.rmtree, d, True)
        # Hold the listen port ourselves: a proxy that bound before validating would complain
        # about the address rather than (only) about the config.
        holder = socket.socket()
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        cfg, ports = os.path.join(d, "bad.yaml"), os.path.join(d, "ports.json")
        with open(cfg, "w") as f:
            f.write(GOOD.replace("127.0.0.1:0", f"127.0.0.1:{port}")
                    .replace("http://127.0.0.1:8081", "ftp://127.0.0.1:8081"))
        p = subprocess.run([wkproxy_bin(), "-c", cfg, "--ports-file", ports],
                           capture_output=True, text=True, timeout=15)
        self.assertEqual(p.returncode, 1, p)
        self.assertRegex(p.stderr, rf"(?m)^{re.escape(cfg)}:3:9: origin: ")
        self.assertFalse(os.path.exists(ports), "no ports file may be written")
        self.assertNotRegex(p.stderr.lower(), r"address already in use|bind")

    def test_ports_file_lists_every_listener_in_config_order(self):
        v6 = available(ipv6_available(), "IPv6 on loopback")
        listen = ["127.0.0.1:0", "127.0.0.1:0"] + (["[::1]:0"] if v6 else [])
        origin, cf, proxy = self.start_all(listen=listen)
        self.assertEqual(len(proxy.addresses), len(listen))
        self.assertEqual(len({p for _, p in proxy.addresses}), len(listen))
        self.assertTrue(all(port > 0 for _, port in proxy.addresses))
        for i, (host, _) in enumerate(proxy.addresses):
            self.assertEqual(host, "::1" if listen[i].startswith("[") else "127.0.0.1")
            c = self.client(proxy, index=i)
            r = c.request("GET", f"/via/{i}")
            self.assertEqual(r.status, 200, r)
        self.assertEqual(len(origin.requests), len(listen))

    def test_sigterm_finishes_in_flight_request_and_exits_0(self):
        origin, cf, proxy = self.start_all(timeouts={"upstream_response": "10s"})
        c = self.client(proxy, timeout=15)
        c.send(build_request("GET", "/stall/1.5"))
        origin.wait_for_requests(1)
        proxy.proc.send_signal(signal.SIGTERM)
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"stalled\n"), r)
        c.close()
        proxy.proc.wait(timeout=15)
        self.assertEqual(proxy.stop(), 0, proxy.stderr())

    def test_sigterm_keeps_an_idle_keepalive_client_until_its_next_request_then_exits(self):
        # Closing an idle keep-alive connection could cut the request its client is sending
        # right now: it is kept, and its next request answered with Connection: close.
        origin, cf, proxy = self.start_all(timeouts={"idle": "60s"},
                                           extra="shutdown: {drain_timeout: 30s}")
        c = self.client(proxy)
        self.assertEqual(c.request("GET", "/x").status, 200)
        proxy.proc.send_signal(signal.SIGTERM)
        self.assertFalse(c.closed_by_peer(timeout=1.0))
        r = c.request("GET", "/y")
        self.assertEqual((r.status, (r.header("connection") or "").lower()), (200, "close"), r)
        t0 = time.monotonic()
        proxy.proc.wait(timeout=15)
        self.assertLess(time.monotonic() - t0, 5, "the process waits only for open connections")
        self.assertEqual(proxy.stop(), 0, proxy.stderr())


if __name__ == "__main__":
    unittest.main()
