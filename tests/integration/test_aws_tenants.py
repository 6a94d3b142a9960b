"""The CloudFront API client inside wkproxy (`aws:`), end to end against the AWS stand-in
(wkharness.StubAWS: CloudFront, STS, IMDSv2 and container credentials over HTTPS with a test CA,
every signature checked by botocore): tenants followed from pending-validation to "safe to
remove", their tokens served without a reload, failures that keep the last good tokens, every
step of the credential chain, and `tokens import --tenant ID` reading the API."""

import json
import os
import subprocess
import tempfile
import time
import unittest

from wkharness import (Proxy, RecordingBackend, StubAWS, TestCA, admin_get, request,
                       wait_until, wkproxy_bin)
from wkharness.config import admin_config

PREFIX = "/.well-known/pki-validation/"


def config(origin, cloudfront, tenants, *, mode="forward", poll="1s", quiet="1h", extra=""):
    return (f"version: 1\nlisten: [\"127.0.0.1:0\"]\norigin: {origin}\ncloudfront: {cloudfront}\n"
            f"validation: {{mode: {mode}}}\nworkers: 2\naccess_log: off\n{admin_config()}\n"
            f"aws: {{tenants: [{', '.join(tenants)}], poll_interval: {poll}, "
            f"quiet_period: {quiet}, request_timeout: 5s}}\n{extra}")


class AwsTenants(unittest.TestCase):
    def setUp(self):
        self.ca = TestCA()
        self.addCleanup(self.ca.cleanup)
        self.aws = StubAWS(self.ca).start()
        self.addCleanup(self.aws.stop)
        self.origin = RecordingBackend("origin").start()
        self.addCleanup(self.origin.stop)
        self.cloudfront = RecordingBackend("cloudfront").start()
        self.addCleanup(self.cloudfront.stop)

    def proxy(self, tenants, env=None, **kw):
        p = Proxy(config(self.origin.url, self.cloudfront.url, tenants, **kw),
                  env=env if env is not None else self.aws.env()).start()
        self.addCleanup(p.stop)
        return p

    def status(self, p):
        code, body = admin_get(p.admin_address, "/status.json")
        self.assertEqual(code, 200)
        return json.loads(body)

    def tenant_view(self, p, tenant):
        for t in self.status(p).get("tenants", []):
            if t["tenant"] == tenant:
                return t
        return None

    def domain_stage(self, p, tenant, domain):
        t = self.tenant_view(p, tenant)
        for d in (t or {}).get("domains", []):
            if d["domain"] == domain:
                return d
        return None

    def wait_stage(self, p, tenant, domain, stage, timeout=15):
        got = {}

        def reached():
            got["d"] = self.domain_stage(p, tenant, domain)
            return got["d"] is not None and got["d"]["stage"] == stage
        self.assertTrue(wait_until(reached, timeout), f"{domain} never reached {stage}: "
                        f"{got.get('d')}\nwkproxy stderr:\n{p.stderr()}")
        return got["d"]

    def metrics(self, p):
        code, body = admin_get(p.admin_address, "/metrics")
        self.assertEqual(code, 200)
        return body.decode()

    def assert_all_signed(self):
        """Every request the stand-in got was signed as botocore signs it (or needs no
        signature: web identity, metadata, container credentials)."""
        for r in self.aws.requests():
            if r["service"] in ("cloudfront", "sts") and r.get("operation") != \
                    "AssumeRoleWithWebIdentity":
                self.assertTrue(r["signature_ok"], f"not signed as botocore signs: {r}")

    def test_two_tenants_walk_from_pending_to_safe_to_remove(self):
        one = self.aws.set_tenant("dt_one", name="shop-one", domains=["one.example.com"],
                                  routing_endpoint="d111111abcdef8.cloudfront.net",
                                  certificate_status="pending-validation", url_form="bare")
        two = self.aws.set_tenant("dt_two", name="shop-two", domains=["example.net"],
                                  routing_endpoint="d222222abcdef8.cloudfront.net",
                                  certificate_status="pending-validation", url_form="scheme")
        p = self.proxy(["dt_one", "shop-two"], mode="redirect", quiet="3s")
        d1 = self.wait_stage(p, "dt_one", "one.example.com", "waiting_for_ca")
        self.wait_stage(p, "shop-two", "example.net", "waiting_for_ca")
        # The tokens are served at once, without a reload: the redirect goes to RedirectTo.
        from_file, to_file = one["tokens"]["one.example.com"]
        self.assertEqual(d1["tokens"], [from_file])
        r = request(p.port, target=PREFIX + from_file, host="one.example.com")
        self.assertEqual(r.status, 301, r)  # validation.redirect_status's default
        self.assertTrue(r.headers.get("location").startswith("https://validation."), r.headers)
        self.assertTrue(r.headers.get("location").endswith("/" + to_file))
        # Any other file under the prefix, and every other path, go to the origin untouched.
        self.origin.reset()
        self.assertEqual(request(p.port, target=PREFIX + "other.txt",
                                 host="one.example.com").status, 200)
        self.assertEqual(request(p.port, target="/", host="example.net").status, 200)
        self.assertEqual(len(self.origin.requests), 2)
        # The CA's fetch is what moves the domain on.
        self.wait_stage(p, "dt_one", "one.example.com", "token_served")
        # Stages that change without a poll (the CA's fetch, the quiet period) are logged by a
        # check every 5 s.
        self.assertTrue(wait_until(lambda: "one.example.com: token served" in p.stderr(), 10))
        # Issued: the record to create, a CNAME for a subdomain, an alias/ANAME for an apex.
        self.aws.set_tenant("dt_one", certificate_status="issued",
                            dns={"one.example.com": "invalid-configuration"})
        self.aws.set_tenant("dt_two", certificate_status="issued",
                            dns={"example.net": "invalid-configuration"})
        d = self.wait_stage(p, "dt_one", "one.example.com", "switch_dns")
        self.assertEqual(d["dns_record"], "CNAME one.example.com → d111111abcdef8.cloudfront.net")
        self.assertTrue(d["state"].startswith("issued: switch DNS now"), d)
        d = self.wait_stage(p, "shop-two", "example.net", "switch_dns")
        self.assertIn("ANAME", d["dns_record"])
        # DNS valid, then quiet for quiet_period: safe to remove.
        self.aws.set_tenant("dt_one", dns={"one.example.com": "valid-configuration"})
        self.wait_stage(p, "dt_one", "one.example.com", "safe_to_remove", timeout=20)
        view = self.tenant_view(p, "dt_one")
        self.assertEqual(view["certificate_status"], "issued")
        self.assertEqual(view["routing_endpoint"], "d111111abcdef8.cloudfront.net")
        # Each transition is logged once. The view changes at once; a stage reached without a
        # poll (the quiet period) is logged by the check every 5 s, so its line may come later.
        self.assertTrue(wait_until(
            lambda: "one.example.com: safe to remove wkproxy for this domain" in p.stderr(), 10))
        log = p.stderr()
        for stage_text in ("waiting for the CA", "token served", "issued: switch DNS now",
                           "safe to remove wkproxy for this domain"):
            lines = [l for l in log.splitlines()
                     if "tenant dt_one, one.example.com: " + stage_text in l]
            self.assertEqual(len(lines), 1, f"{stage_text!r} logged {len(lines)} times:\n{log}")
        # The same journey on /metrics, and on the HTML page.
        m = self.metrics(p)
        self.assertIn('wkproxy_tenant_domain_stage{tenant="dt_one",domain="one.example.com",'
                      'stage="safe_to_remove"} 1', m)
        self.assertIn('wkproxy_tenant_certificate_issued{tenant="dt_one"} 1', m)
        self.assertIn('wkproxy_tenant_up{tenant="shop-two"} 1', m)
        self.assertRegex(m, r'wkproxy_aws_api_requests_total\{operation="VerifyDnsConfiguration",'
                            r'outcome="ok"\} [1-9]')
        code, page = admin_get(p.admin_address, "/status")
        self.assertEqual(code, 200)
        self.assertIn(b'data-tenant="dt_one" data-domain="one.example.com" '
                      b'data-stage="safe_to_remove"', page)
        self.assert_all_signed()
        self.assertEqual(two["id"], "dt_two")

    def test_failures_keep_the_last_good_tokens_and_are_logged_once(self):
        t = self.aws.set_tenant("dt_f", domains=["f.example.com"])
        p = self.proxy(["dt_f"], mode="redirect")
        self.wait_stage(p, "dt_f", "f.example.com", "waiting_for_ca")
        file = t["tokens"]["f.example.com"][0]
        # Throttling is retried with backoff; a 403 is reported with AWS's code and message.
        self.aws.fail_next(3, status=400, code="Throttling", message="Rate exceeded")
        self.aws.fail_next(50, status=403, code="AccessDenied",
                           message="User is not authorized to perform GetManagedCertificateDetails",
                           match="managed-certificate")
        self.assertTrue(wait_until(lambda: "AccessDenied (HTTP 403): User is not authorized" in
                                   p.stderr(), 20), p.stderr())
        time.sleep(2.5)  # more polls fail the same way
        lines = [l for l in p.stderr().splitlines() if "AccessDenied (HTTP 403)" in l]
        self.assertEqual(len(lines), 1, "\n".join(lines))
        self.assertIn("its last good tokens stay", lines[0])
        self.assertEqual(request(p.port, target=PREFIX + file, host="f.example.com").status, 301)
        m = self.metrics(p)
        self.assertRegex(m, r'wkproxy_aws_api_requests_total\{operation="GetManagedCertificateDetails"'
                            r',outcome="Throttling"\} [1-9]')
        self.assertRegex(m, r'wkproxy_aws_api_requests_total\{operation="GetManagedCertificateDetails"'
                            r',outcome="AccessDenied"\} [1-9]')
        self.assertIn('wkproxy_tenant_up{tenant="dt_f"} 0', m)
        view = self.tenant_view(p, "dt_f")
        self.assertIn("AccessDenied", view["last_error"])
        self.aws.clear_failures()
        self.assertTrue(wait_until(lambda: "the CloudFront API answers again" in p.stderr(), 20))

    def test_tokens_change_under_load_with_zero_failed_requests(self):
        self.aws.set_tenant("dt_l", domains=["l.example.com"],
                            tokens={"l.example.com": ["a" * 32 + ".txt", "b" * 32 + ".txt"]})
        p = self.proxy(["dt_l"], poll="1s")
        self.wait_stage(p, "dt_l", "l.example.com", "waiting_for_ca")
        load = subprocess.Popen(
            [wkproxy_bin(), "loadtest", "--target", f"127.0.0.1:{p.port}", "--host",
             "l.example.com", "--path", "/", "--duration", "6s", "--keepalive", "4", "--fresh",
             "1", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: load.poll() is None and load.kill())
        for i in range(4):
            time.sleep(1.2)
            f = f"{i:x}" * 32 + ".txt"
            self.aws.set_tenant("dt_l", tokens={"l.example.com": [f, f]})
        out, err = load.communicate(timeout=60)
        self.assertEqual(load.returncode, 0, out + err)
        result = json.loads(out)
        self.assertGreater(result["total"]["ok"], 100, result)
        self.assertTrue(wait_until(
            lambda: self.domain_stage(p, "dt_l", "l.example.com")["tokens"] == [f], 10))
        applied = [l for l in p.stderr().splitlines() if "(from the CloudFront API, no reload)" in l]
        self.assertGreaterEqual(len(applied), 3, p.stderr())
        self.assertNotIn("reloaded", p.stderr())

    def test_every_credential_step(self):
        self.aws.set_tenant("dt_c", domains=["c.example.com"])
        d = tempfile.mkdtemp(prefix="wkproxy-aws-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", d]))
        # A profile that assumes a role with its source profile's keys (STS AssumeRole).
        with open(os.path.join(d, "config"), "w") as f:
            f.write(f"[profile deploy]\nrole_arn = {StubAWS.DEFAULT_ROLE}\n"
                    "source_profile = base\n")
        with open(os.path.join(d, "credentials"), "w") as f:
            f.write(f"[base]\naws_access_key_id = {StubAWS.DEFAULT_KEY_ID}\n"
                    f"aws_secret_access_key = {StubAWS.DEFAULT_SECRET}\n")
        cases = {
            "profile": self.aws.env(credentials=None, AWS_PROFILE="deploy",
                                    AWS_CONFIG_FILE=os.path.join(d, "config"),
                                    AWS_SHARED_CREDENTIALS_FILE=os.path.join(d, "credentials"),
                                    AWS_EC2_METADATA_DISABLED="true"),
            "web identity": self.aws.env(credentials="web_identity"),
            "container": self.aws.env(credentials="container"),
            "instance metadata": self.aws.env(credentials="imds"),
        }
        expected_source = {"profile": "profile deploy (AssumeRole " + StubAWS.DEFAULT_ROLE + ")",
                           "web identity": "web identity, role " + StubAWS.DEFAULT_ROLE,
                           "container": "container",
                           "instance metadata": "instance metadata (role"}
        for name, env in cases.items():
            with self.subTest(step=name):
                self.aws.reset_requests()
                p = Proxy(config(self.origin.url, self.cloudfront.url, ["dt_c"]), env=env).start()
                try:
                    self.wait_stage(p, "dt_c", "c.example.com", "waiting_for_ca")
                    self.assertTrue(self.status(p)["credentials"].startswith(
                        expected_source[name]), self.status(p)["credentials"])
                    cf = self.aws.requests("cloudfront")
                    self.assertTrue(cf)
                    # Signed with the temporary key the step gave, session token included.
                    self.assertTrue(all(r["access_key_id"].startswith("ASIA") for r in cf), cf)
                    self.assert_all_signed()
                finally:
                    p.stop()

    def test_temporary_credentials_are_refreshed_before_they_expire(self):
        self.aws.set_tenant("dt_r", domains=["r.example.com"])
        self.aws.set_credentials_lifetime(4)  # refreshed at half-life: every 2 s
        p = self.proxy(["dt_r"], env=self.aws.env(credentials="container"), poll="1s")
        self.wait_stage(p, "dt_r", "r.example.com", "waiting_for_ca")
        self.assertTrue(wait_until(lambda: len({r["access_key_id"]
                                                for r in self.aws.requests("cloudfront")}) >= 3, 20))
        time.sleep(2)
        expired = [r for r in self.aws.requests("cloudfront") if r["code"] == "ExpiredToken"]
        self.assertEqual(expired, [])
        self.assertIn('wkproxy_tenant_up{tenant="dt_r"} 1', self.metrics(p))

    def test_tokens_import_reads_the_api_as_it_reads_a_file(self):
        t = self.aws.set_tenant("dt_i", domains=["i.example.com"], url_form="bare")
        env = dict(os.environ)
        env.update(self.aws.env())
        api = subprocess.run([wkproxy_bin(), "tokens", "import", "--tenant", "dt_i"],
                             capture_output=True, text=True, env=env, timeout=30)
        self.assertEqual(api.returncode, 0, api.stderr)
        self.assertIn("read tenant dt_i from the CloudFront API (credentials: environment)",
                      api.stderr)
        self.assertIn(t["tokens"]["i.example.com"][0], api.stdout)
        # The same answer saved to a file gives the same YAML.
        self.assertEqual(self.aws.requests("cloudfront")[-1]["operation"],
                         "GetManagedCertificateDetails")
        with tempfile.NamedTemporaryFile(suffix=".xml") as f:
            f.write(self.aws.document("dt_i"))
            f.flush()
            from_file = subprocess.run([wkproxy_bin(), "tokens", "import", f.name, "--tenant",
                                        "dt_i"], capture_output=True, text=True, timeout=30)
        self.assertEqual(from_file.returncode, 0, from_file.stderr)
        self.assertEqual(api.stdout, from_file.stdout)
        self.assert_all_signed()
        # And a failure names AWS's code.
        self.aws.fail_next(1, status=403, code="AccessDenied", message="nope")
        bad = subprocess.run([wkproxy_bin(), "tokens", "import", "--tenant", "dt_i"],
                             capture_output=True, text=True, env=env, timeout=30)
        self.assertEqual(bad.returncode, 1)
        self.assertIn("GetManagedCertificateDetails: AccessDenied (HTTP 403): nope", bad.stderr)


if __name__ == "__main__":
    unittest.main()
