"""The first ten minutes: `wkproxy demo` shows the split with no config and no network, and the
README's first command (tools/run.sh, no arguments) gets a newcomer to a PASS line. The demo's
own stand-ins (origin, CloudFront, ACM with a throwaway CA) run inside the process; these tests
also go through the proxy from outside, with raw sockets and curl, while it serves."""

import os
import re
import signal
import subprocess
import threading
import time
import unittest

from wkharness import admin_get, curl, wkproxy_bin

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Demo(unittest.TestCase):
    def test_demo_once_shows_the_split_and_passes(self):
        p = subprocess.run([wkproxy_bin(), "demo", "--once", "--port", "0"], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        out = p.stdout
        self.assertRegex(out, r"GET / +-> 200 from origin")
        self.assertRegex(out, r"GET /\.well-known/pki-validation/[0-9a-f]{32}\.txt -> 301 from "
                              r"cloudfront, Location: https://localhost:\d+/123456789012/")
        self.assertRegex(out, r"not-a-token\.txt +-> 200 from origin")
        self.assertRegex(out, r"(?m)^PASS +shop\.example\.com")
        self.assertIn("1 passed, 0 failed", out)

    def test_bad_arguments(self):
        p = subprocess.run([wkproxy_bin(), "demo", "--port", "x"], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn("usage: wkproxy demo", p.stderr)

    def test_readme_first_command_without_arguments_reaches_pass_and_serves(self):
        """tools/run.sh with no arguments (WKPROXY_BIN: the binary under test instead of a release
        build): the PASS line, then the proxy keeps serving what the demo printed, until
        SIGTERM."""
        env = dict(os.environ, WKPROXY_BIN=wkproxy_bin())
        proc = subprocess.Popen([os.path.join(ROOT, "tools", "run.sh")], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)
        self.addCleanup(lambda: proc.poll() is None and os.killpg(proc.pid, signal.SIGKILL))
        lines = []
        passed = threading.Event()

        def pump():
            for line in proc.stdout:
                lines.append(line)
                if re.match(r"^PASS +shop\.example\.com", line):
                    passed.set()
        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        self.assertTrue(passed.wait(60), "no PASS line within 60 s:\n" + "".join(lines))
        # Wait for the "Serving until Ctrl-C" line: everything printed by then.
        deadline = time.monotonic() + 10
        while not any("Serving until Ctrl-C" in l for l in lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        text = "".join(lines)
        port = re.search(r"proxy +http://127\.0\.0\.1:(\d+)", text).group(1)
        admin = re.search(r"status +http://127\.0\.0\.1:(\d+)/status", text).group(1)
        token = re.search(r"(/\.well-known/pki-validation/[0-9a-f]{32}\.txt)", text).group(1)
        # From outside, with curl: the origin, the token via CloudFront, a non-token file.
        page = curl(f"http://127.0.0.1:{port}/hello", "-H", "Host: shop.example.com")
        self.assertEqual(page.status, 200)
        self.assertIn(b"Hello from the origin", page.body)
        hop = curl(f"http://127.0.0.1:{port}{token}", "-H", "Host: shop.example.com")
        self.assertEqual(hop.status, 301)
        self.assertEqual(hop.header("x-served-by"), "cloudfront")
        other = curl(f"http://127.0.0.1:{port}/.well-known/pki-validation/x.txt",
                     "-H", "Host: shop.example.com")
        self.assertEqual(other.header("x-served-by"), "origin")
        code, body = admin_get(("127.0.0.1", int(admin)), "/status")
        self.assertEqual(code, 200)
        self.assertIn(b"shop.example.com", body)
        os.killpg(proc.pid, signal.SIGTERM)
        self.assertEqual(proc.wait(30), 0, "".join(lines))


if __name__ == "__main__":
    unittest.main()
