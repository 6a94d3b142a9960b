"""`wkproxy check`: acting like the CA against a running proxy. A TLS stand-in plays both
CloudFront (behind the proxy, forward mode) and the ACM validation host (RedirectTo); the check
requests each RedirectFrom URL through the proxy, follows redirects (only to the domain, ACM
validation hosts over https and --allow hosts), fetches RedirectTo and compares the bodies.
Failures must name their precise reason."""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

from wkharness import (ACM_ACCOUNT, CF_SNI, DOMAINS, TENANT, VALIDATION_PREFIX, Proxy,
                       RecordingBackend, TestCA, ValidationBackend, free_port, make_config,
                       run_wkproxy_check, wkproxy_bin)


ACM_HOST = "validation.us-east-1.acm-validations.aws"


def run_with_hosts(hosts, *args):
    """`wkproxy check ARGS...` with /etc/hosts replaced by `hosts` ({name: address}, plus
    localhost) in a private user and mount namespace; None when namespaces are not available
    (then nothing was run)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    fd, path = tempfile.mkstemp(prefix="wkproxy-hosts-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write("127.0.0.1 localhost\n::1 localhost\n")
            f.write("".join(f"{address} {name}\n" for name, address in hosts.items()))
        script = 'mount --bind "$0" /etc/hosts || exit 97; exec "$@"'
        base = [unshare, "--user", "--map-root-user", "--mount", "sh", "-c", script, path]
        probe = subprocess.run([*base, "getent", "hosts", *hosts], capture_output=True,
                               text=True, timeout=30, stdin=subprocess.DEVNULL)
        if probe.returncode != 0 or len(probe.stdout.splitlines()) != len(hosts):
            return None
        return subprocess.run([*base, wkproxy_bin(), "check", *args], capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)
    finally:
        os.unlink(path)


def token_yaml(tokens):
    """tokens: [(domain, file, redirect_to)] -> the `tokens:` block."""
    lines = ["tokens:"]
    for domain, file, redirect_to in tokens:
        lines.append(f"  - domain: {json.dumps(domain)}")
        redirect_from = f"http://{domain}{VALIDATION_PREFIX}{file}"
        lines.append(f"    redirect_from: {json.dumps(redirect_from)}")
        lines.append(f"    redirect_to: {json.dumps(redirect_to)}")
    return "\n".join(lines) + "\n"


def rows(stdout):
    """Table rows as {file: (result, line)}."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] in ("PASS", "FAIL"):
            out[parts[2]] = (parts[0], line)
    return out


class CheckTest(unittest.TestCase):
    """One origin, one TLS CloudFront/ACM stand-in and one proxy for the whole class; each test
    writes the config the check reads (a subset of the proxy's tokens, or other domains)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ca = TestCA()
        cls.addClassCleanup(cls.ca.cleanup)
        cls.dir = tempfile.mkdtemp(prefix="wkproxy-check-test-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)
        cls.origin = RecordingBackend("origin").start()
        cls.addClassCleanup(cls.origin.stop)
        cls.cf = ValidationBackend("cloudfront", tls_context=cls.ca.server_context()).start()
        cls.addClassCleanup(cls.cf.stop)
        port = cls.cf.port
        here = f"https://localhost:{port}"
        cls.cf.script = {
            # what a `redirect` mode answer looks like: 301 to RedirectTo
            VALIDATION_PREFIX + "redirected.txt": (
                301, [("Location", cls.cf.redirect_to("redirected.txt"))], b""),
            VALIDATION_PREFIX + "misdirected.txt": (421, [], b"status 421\n"),
            # through the proxy to the stand-in, then the stand-in redirects to itself for ever
            VALIDATION_PREFIX + "loop.txt": (
                302, [("Location", f"{here}{VALIDATION_PREFIX}loop.txt")], b""),
            VALIDATION_PREFIX + "many.txt": (302, [("Location", f"{here}/hop/1")], b""),
            VALIDATION_PREFIX + "slow.txt": lambda b, rec: b._sleep(3),
        }
        for i in range(1, 10):
            cls.cf.script[f"/hop/{i}"] = (302, [("Location", f"/hop/{i + 1}")], b"")
        # Redirects off the domain: to another loopback server (an "internal service" that
        # serves the token), and to the ACM validation host name over http and https.
        cls.internal = ValidationBackend("internal").start()
        cls.addClassCleanup(cls.internal.stop)
        cls.acm = ValidationBackend("acm", tls_context=cls.ca.server_context(
            *cls.ca.issue("acm", (ACM_HOST,)))).start()
        cls.addClassCleanup(cls.acm.stop)
        cls.internal_url = f"http://127.0.0.1:{cls.internal.port}{VALIDATION_PREFIX}elsewhere.txt"
        cls.cf.script[VALIDATION_PREFIX + "elsewhere.txt"] = (
            302, [("Location", cls.internal_url)], b"")
        cls.cf.script[VALIDATION_PREFIX + "acm.txt"] = (
            301, [("Location", cls.acm.redirect_to("acm.txt", host=ACM_HOST))], b"")
        cls.cf.script[VALIDATION_PREFIX + "acm-http.txt"] = (
            301, [("Location", f"http://{ACM_HOST}:{cls.internal.port}/{ACM_ACCOUNT}"
                               f"{VALIDATION_PREFIX}acm-http.txt")], b"")
        cls.tokens = {
            "good.txt": (TENANT, "good.txt", cls.cf.redirect_to("good.txt")),
            "www.txt": (DOMAINS[1], "www.txt", cls.cf.redirect_to("www.txt")),
            "redirected.txt": (TENANT, "redirected.txt", cls.cf.redirect_to("redirected.txt")),
            "wrong.txt": (TENANT, "wrong.txt", cls.cf.redirect_to("other.txt")),
            "misdirected.txt": (TENANT, "misdirected.txt", cls.cf.redirect_to("misdirected.txt")),
            "loop.txt": (TENANT, "loop.txt", cls.cf.redirect_to("loop.txt")),
            "many.txt": (TENANT, "many.txt", cls.cf.redirect_to("many.txt")),
            "slow.txt": (TENANT, "slow.txt", cls.cf.redirect_to("slow.txt")),
            "elsewhere.txt": (TENANT, "elsewhere.txt", cls.cf.redirect_to("elsewhere.txt")),
            "acm.txt": (TENANT, "acm.txt", cls.acm.redirect_to("acm.txt", host=ACM_HOST)),
            "acm-http.txt": (TENANT, "acm-http.txt", cls.cf.redirect_to("acm-http.txt")),
        }
        cls.cf_block = {"url": f"https://localhost:{port}", "sni": CF_SNI,
                        "ca_file": cls.ca.ca_pem}
        cls.proxy = Proxy(make_config(cls.origin.url, cls.cf_block,
                                      extra=token_yaml(cls.tokens.values())))
        cls.addClassCleanup(cls.proxy.stop)
        cls.proxy.start()

    def setUp(self):
        for backend in (self.cf, self.origin, self.internal, self.acm):
            backend.reset()

    # -- helpers
    def write_config(self, tokens, domains=DOMAINS, listen=("127.0.0.1:0",), cloudfront=None):
        text = make_config(self.origin.url, cloudfront or self.cf_block, domains=domains,
                           listen=listen, extra=token_yaml(tokens) if tokens else "")
        fd, path = tempfile.mkstemp(suffix=".yaml", dir=self.dir)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path

    def check(self, files=None, *args, config=None, via=True, ca=True, proxy=None,
              allow=("localhost",)):
        """`allow`: the stand-in plays the ACM validation host at https://localhost:PORT, which
        is not under acm-validations.aws, so redirects to it need --allow localhost."""
        if config is None:
            config = self.write_config([self.tokens[f] for f in files])
        cmd = ["-c", config, "--timeout", "5s"]
        if via:
            cmd += ["--via", f"127.0.0.1:{(proxy or self.proxy).port}"]
        if ca:
            cmd += ["--ca-file", self.ca.ca_pem]
        for host in allow:
            cmd += ["--allow", host]
        return run_wkproxy_check(*cmd, *args)

    def assertFails(self, p, file, *reasons):
        self.assertEqual(p.returncode, 1, f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
        result, line = rows(p.stdout).get(file, (None, None))
        self.assertEqual(result, "FAIL", p.stdout)
        for r in reasons:
            self.assertIn(r, line)
        return line

    # -- passing
    def test_tokens_served_through_the_proxy_pass(self):
        p = self.check(["good.txt", "www.txt", "redirected.txt"])
        self.assertEqual(p.returncode, 0, f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
        r = rows(p.stdout)
        self.assertEqual({f: v[0] for f, v in r.items()},
                         {"good.txt": "PASS", "www.txt": "PASS", "redirected.txt": "PASS"})
        self.assertRegex(r["good.txt"][1], r"PASS\s+tenant\.example\s+good\.txt\s+200$")
        self.assertIn("301 -> 200", r["redirected.txt"][1])
        self.assertEqual(p.stdout.splitlines()[-1], "3 passed, 0 failed")
        # The CA's request went through the proxy to CloudFront with the tenant's Host, and
        # RedirectTo was fetched directly (SNI = its host).
        via_proxy = [q for q in self.cf.requests if q.path == VALIDATION_PREFIX + "good.txt"]
        self.assertEqual(len(via_proxy), 1, self.cf.requests)
        self.assertEqual(via_proxy[0].header("host"), TENANT)
        self.assertIn("wkproxy-check", via_proxy[0].header("user-agent"))
        direct = [q for q in self.cf.requests
                  if q.path == f"/{ACM_ACCOUNT}{VALIDATION_PREFIX}good.txt"]
        self.assertEqual(len(direct), 1, self.cf.requests)
        self.assertEqual(direct[0].sni, "localhost")
        self.assertEqual(direct[0].header("host"), f"localhost:{self.cf.port}")
        self.assertEqual(self.origin.requests, [])

    def test_json_document(self):
        p = self.check(["good.txt", "redirected.txt", "misdirected.txt"], "--json")
        self.assertEqual(p.returncode, 1, p.stderr)
        doc = json.loads(p.stdout)
        self.assertEqual(set(doc), {"results", "passed", "failed"})
        self.assertEqual((doc["passed"], doc["failed"]), (2, 1))
        by_file = {r["file"]: r for r in doc["results"]}
        good = by_file["good.txt"]
        self.assertEqual(set(good), {"domain", "file", "redirect_from", "redirect_to", "pass",
                                     "chain", "reason"})
        self.assertEqual(good["domain"], TENANT)
        self.assertEqual(good["redirect_from"], f"http://{TENANT}{VALIDATION_PREFIX}good.txt")
        self.assertEqual(good["redirect_to"], self.cf.redirect_to("good.txt"))
        self.assertIs(good["pass"], True)
        self.assertEqual(good["chain"], [{"url": good["redirect_from"], "status": 200}])
        self.assertEqual(good["reason"], "")
        redirected = by_file["redirected.txt"]
        self.assertEqual([h["status"] for h in redirected["chain"]], [301, 200])
        self.assertEqual(redirected["chain"][1]["url"], self.cf.redirect_to("redirected.txt"))
        bad = by_file["misdirected.txt"]
        self.assertIs(bad["pass"], False)
        self.assertIn("421 Misdirected Request", bad["reason"])

    def test_default_first_hop_is_the_configs_listener(self):
        port = free_port()
        with Proxy(make_config(self.origin.url, self.cf_block, listen=(f"127.0.0.1:{port}",),
                               extra=token_yaml([self.tokens["good.txt"]]))) as proxy:
            p = self.check(config=proxy.config_path, via=False)
        self.assertEqual(p.returncode, 0, f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
        self.assertIn(f"through the listener 127.0.0.1:{port}", p.stdout)
        self.assertEqual(rows(p.stdout)["good.txt"][0], "PASS")

    # -- failing, each with its reason
    def test_wrong_body_is_a_mismatch_with_lengths_and_offset(self):
        p = self.check(["good.txt", "wrong.txt"])
        line = self.assertFails(p, "wrong.txt", "body differs from RedirectTo",
                                "got 24 bytes, expected 24", "first difference at offset 15")
        self.assertIn("token-body-for-wrong.txt", line)
        self.assertEqual(rows(p.stdout)["good.txt"][0], "PASS")
        self.assertEqual(p.stdout.splitlines()[-1], "1 passed, 1 failed")

    def test_cloudfront_421_is_explained(self):
        p = self.check(["misdirected.txt"])
        self.assertFails(p, "misdirected.txt",
                         "421 Misdirected Request: CloudFront refused the Host for this SNI; "
                         "use plain http:// for cloudfront")

    def test_host_not_allow_listed_at_the_proxy_reaches_the_origin(self):
        # The check's config has the domain; the running proxy's allow-list does not, so the
        # proxy sends the request to the origin, whose answer is not the token.
        stray = "stray.example"
        config = self.write_config([(stray, "stray.txt", self.cf.redirect_to("stray.txt"))],
                                   domains=(stray,))
        p = self.check(config=config)
        self.assertFails(p, "stray.txt", "body differs from RedirectTo", "backend",
                         f"is {stray} in the running proxy's domains: list?")
        self.assertEqual(len(self.origin.requests), 1)
        self.assertEqual(self.origin.requests[0].header("host"), stray)

    def test_redirect_loop(self):
        p = self.check(["loop.txt"])
        self.assertFails(p, "loop.txt", "redirect loop", "302 -> 302")

    def test_more_than_five_redirects(self):
        p = self.check(["many.txt"], "--json")
        self.assertEqual(p.returncode, 1, p.stderr)
        result = json.loads(p.stdout)["results"][0]
        self.assertIn("too many redirects: more than 5", result["reason"])
        self.assertEqual([h["status"] for h in result["chain"]], [302] * 6)

    # -- where redirects may lead (issue 18, finding 12)
    def test_redirect_to_another_host_is_refused_by_default(self):
        # The stand-in behind the proxy redirects to another loopback server: a CA would follow
        # it, but from inside the operator's network it could be any internal service (or
        # 169.254.169.254), so the check refuses it and says how to allow it.
        p = self.check(["elsewhere.txt"], allow=())
        line = self.assertFails(p, "elsewhere.txt", "302 ",
                                f"refused to follow the redirect to {self.internal_url}: only "
                                f"{TENANT} itself and ACM validation hosts "
                                "(https://*.acm-validations.aws) are followed; pass --allow "
                                "127.0.0.1 to follow it")
        self.assertNotIn("302 -> ", line)
        self.assertEqual(self.internal.requests, [])

    def test_redirect_to_another_host_is_followed_with_allow(self):
        p = self.check(["elsewhere.txt"], "--json", allow=("127.0.0.1",))
        self.assertEqual(p.returncode, 0, f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
        result = json.loads(p.stdout)["results"][0]
        self.assertEqual([(h["url"], h["status"]) for h in result["chain"]],
                         [(result["redirect_from"], 302), (self.internal_url, 200)])
        self.assertEqual([q.path for q in self.internal.requests],
                         [VALIDATION_PREFIX + "elsewhere.txt"])
        # --allow names hosts: another one does not allow this one.
        p = self.check(["elsewhere.txt"], allow=("localhost", "192.0.2.1"))
        self.assertFails(p, "elsewhere.txt", "pass --allow 127.0.0.1 to follow it")
        self.assertEqual(len(self.internal.requests), 1)

    def test_acm_validation_host_only_over_https(self):
        # Refused before any lookup: plain http to the ACM host name is not a validation hop.
        p = self.check(["acm-http.txt"], allow=())
        self.assertFails(p, "acm-http.txt",
                         f"refused to follow the redirect to http://{ACM_HOST}:"
                         f"{self.internal.port}/", f"pass --allow {ACM_HOST} to follow it")
        self.assertEqual(self.internal.requests, [])

    def test_same_host_refuses_even_the_acm_validation_host(self):
        p = self.check(["acm.txt"], "--same-host", allow=())
        self.assertFails(p, "acm.txt", "refused to follow the redirect to "
                         f"{self.acm.redirect_to('acm.txt', host=ACM_HOST)}: --same-host follows "
                         f"redirects only to {TENANT}")
        self.assertEqual(self.acm.requests, [])

    def test_acm_validation_host_over_https_is_followed_by_default(self):
        # The ACM host name must lead to the stand-in: the check runs in a mount namespace where
        # /etc/hosts maps it to 127.0.0.1 (nothing outside loopback is asked).
        p = run_with_hosts(
            {ACM_HOST: "127.0.0.1"},
            "-c", self.write_config([self.tokens["acm.txt"]]), "--timeout", "5s",
            "--via", f"127.0.0.1:{self.proxy.port}", "--ca-file", self.ca.ca_pem, "--json")
        # The default rule for ACM hosts is what this test is for: a machine without user and
        # mount namespaces (util-linux unshare, as root) fails it rather than skipping it.
        self.assertIsNotNone(p, "no user and mount namespaces here to map the ACM host to "
                                "loopback (unshare --user --map-root-user --mount)")
        self.assertEqual(p.returncode, 0, f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
        result = json.loads(p.stdout)["results"][0]
        self.assertEqual([(h["url"], h["status"]) for h in result["chain"]],
                         [(result["redirect_from"], 301),
                          (self.acm.redirect_to("acm.txt", host=ACM_HOST), 200)])
        # The hop and the direct RedirectTo fetch, both with the ACM name as SNI and Host.
        self.assertEqual([(q.path, q.sni) for q in self.acm.requests],
                         [(f"/{ACM_ACCOUNT}{VALIDATION_PREFIX}acm.txt", ACM_HOST)] * 2)

    def test_nothing_listening_on_via(self):
        port = free_port()
        p = run_wkproxy_check("-c", self.write_config([self.tokens["good.txt"]]),
                              "--via", f"127.0.0.1:{port}")
        self.assertFails(p, "good.txt", f"nothing is listening on 127.0.0.1:{port}",
                         "no answer")

    def test_nothing_listening_on_the_configs_listener(self):
        port = free_port()
        config = self.write_config([self.tokens["good.txt"]], listen=(f"0.0.0.0:{port}",))
        p = self.check(config=config, via=False)
        self.assertFails(p, "good.txt", f"nothing is listening on 127.0.0.1:{port}",
                         "is wkproxy running")

    def test_proxy_error_text_is_quoted(self):
        down = f"http://127.0.0.1:{free_port()}"
        with Proxy(make_config(self.origin.url, down,
                               extra=token_yaml([self.tokens["good.txt"]]))) as proxy:
            p = self.check(["good.txt"], proxy=proxy)
        self.assertFails(p, "good.txt", "502 Bad Gateway: wkproxy: upstream refused the connection")

    def test_timeout_waiting_for_the_answer(self):
        p = self.check(["slow.txt"], "--timeout", "1s")
        self.assertFails(p, "slow.txt", f"no answer from 127.0.0.1:{self.proxy.port} within 1s")

    def test_tls_verification_failure_of_redirect_to(self):
        p = self.check(["good.txt"], ca=False)
        self.assertFails(p, "good.txt", "RedirectTo fetch failed",
                         "certificate verification failed")

    # -- usage
    def test_no_tokens_is_an_error(self):
        p = self.check(config=self.write_config([]))
        self.assertEqual(p.returncode, 1)
        self.assertIn("nothing to check: no tokens in config; run wkproxy tokens import",
                      p.stderr)

    def test_listener_on_port_0_needs_via(self):
        p = self.check(config=self.proxy.config_path, via=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--via", p.stderr)

    def test_bad_arguments(self):
        p = run_wkproxy_check("-c", "x.yaml", "--via", "127.0.0.1:1", "--dns")
        self.assertEqual(p.returncode, 2)
        self.assertIn("cannot be used together", p.stderr)
        p = run_wkproxy_check("-c", "x.yaml", "--same-host", "--allow", "localhost")
        self.assertEqual(p.returncode, 2)
        self.assertIn("--same-host and --allow cannot be used together", p.stderr)
        p = run_wkproxy_check("-c", "x.yaml", "--allow", "localhost:8443")
        self.assertEqual(p.returncode, 2)
        self.assertIn("--allow: expected a host name or IP address", p.stderr)
        p = run_wkproxy_check("--help")
        self.assertEqual(p.returncode, 0)
        self.assertIn("usage: wkproxy check", p.stdout)


if __name__ == "__main__":
    unittest.main()
