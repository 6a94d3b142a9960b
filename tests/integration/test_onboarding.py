"""The README's three commands, end to end: `wkproxy tokens import` writes ACM's tokens into the
config, the proxy runs with it, and `wkproxy check` (acting as the CA) passes — in forward mode
(pattern 2) and in redirect mode, against a TLS stand-in for CloudFront and the ACM host."""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

from wkharness import (DOMAINS, VALIDATION_PREFIX, Proxy, ProxyTestCase, free_port, make_config,
                       wkproxy_bin)


class OnboardingTest(ProxyTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="wk-onboard-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def run_cli(self, *args, stdin=None):
        return subprocess.run([wkproxy_bin(), *args], input=stdin, capture_output=True, text=True,
                              timeout=60)

    def details(self, acm_port):
        """What `aws cloudfront get-managed-certificate-details` prints for a two-domain tenant
        (RedirectTo points at the TLS stand-in instead of validation.<region>.acm-...)."""
        entries = []
        for domain, file in zip(DOMAINS, ("0a1b2c3d4e.txt", "5f6a7b8c9d.txt")):
            entries.append({
                "Domain": domain,
                "RedirectFrom": f"http://{domain}{VALIDATION_PREFIX}{file}",
                "RedirectTo": f"https://localhost:{acm_port}{VALIDATION_PREFIX}{file}"})
        return {"ManagedCertificateDetails": {
            "CertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc",
            "CertificateStatus": "pending-validation",
            "ValidationTokenHost": "self-hosted",
            "ValidationTokenDetails": entries}}

    def onboard(self, mode):
        origin = self.start_backend("origin")
        cf = self.start_backend("cloudfront", tls=True)  # also the ACM validation host stand-in
        port = free_port()
        config = os.path.join(self.dir, "wkproxy.yaml")
        extra = f"validation:\n  mode: {mode}\n  event_log: off\n"
        with open(config, "w") as f:
            f.write(make_config(origin.url, self.cloudfront_upstream(cf), listen=(f"127.0.0.1:{port}",),
                                extra=extra))
        details = os.path.join(self.dir, "details.json")
        with open(details, "w") as f:
            json.dump(self.details(cf.port), f, indent=2)

        # 1. tokens import --write
        p = self.run_cli("tokens", "import", details, "--write", config)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("wrote 2 tokens", p.stdout)
        # 2. run the proxy with that config
        with open(config) as f:
            proxy = Proxy(f.read())
        self.addCleanup(proxy.stop)
        proxy.start()
        # 3. check, as the CA would (the proxy's own listener from the config); the redirect
        # mode's hop goes to the stand-in at localhost, not under acm-validations.aws
        p = self.run_cli("check", "-c", config, "--ca-file", self.ca.ca_pem,
                         "--allow", "localhost")
        return p, origin, cf, proxy

    def test_forward_mode_passes_check(self):
        p, origin, cf, proxy = self.onboard("forward")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("2 passed, 0 failed", p.stdout)
        self.assertEqual(origin.requests, [], "validation never reaches the origin")

    def test_redirect_mode_passes_check(self):
        p, origin, cf, proxy = self.onboard("redirect")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("301", p.stdout)
        self.assertIn("2 passed, 0 failed", p.stdout)


if __name__ == "__main__":
    unittest.main()
