"""The validation status page in a real browser: validation traffic is driven through the
proxy, then Debian's Chromium loads /status headless; the rendered DOM must show each tenant
domain with the request the "CA" made and a plain-language hint, an Internet-supplied
User-Agent must stay text, and the browser must log no console message. A screenshot is saved
as a test artefact (WKPROXY_TEST_ARTIFACTS, else a temporary folder).

Skipped, with a message, only when no Chromium is installed; the README's test command and CI
install it (tools/deps.sh browser).
"""

from __future__ import annotations

import html.parser
import os
import shutil
import subprocess
import tempfile
import unittest

from wkharness import TENANT, ProxyTestCase, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EVIL_UA = '<script>document.title="owned"</script><img src=x onerror=alert(1)> CA/1.0'


class DomSections(html.parser.HTMLParser):
    """Collects, per <section class="domain">, its data-domain, hint text and event rows."""

    def __init__(self):
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.scripts = 0
        self.title = ""
        self._section = None
        self._in = None
        self._row = None
        self._tag_stack = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "img"):
            self.scripts += 1
        if tag == "title":
            self._in = "title"
        if tag == "section" and "domain" in (a.get("class") or "").split():
            self._section = self.sections.setdefault(a.get("data-domain"),
                                                     {"hint": "", "rows": []})
        if self._section is not None:
            classes = (a.get("class") or "").split()
            if tag == "p" and "hint" in classes:
                self._in = "hint"
            if tag == "tr" and "event" in classes:
                self._row = []
                self._section["rows"].append(self._row)

    def handle_endtag(self, tag):
        if tag in ("p", "title"):
            self._in = None
        if tag == "tr":
            self._row = None
        if tag == "section":
            self._section = None

    def handle_data(self, data):
        if self._in == "title":
            self.title += data
        elif self._in == "hint" and self._section is not None:
            self._section["hint"] += data
        if self._row is not None:
            self._row.append(data)


@unittest.skipIf(CHROMIUM is None, "Chromium is not installed (tools/deps.sh browser installs it)")
class StatusPageInBrowserTest(ProxyTestCase):
    def chromium(self, *args, url):
        profile = tempfile.mkdtemp(prefix="wkproxy-chromium-")
        self.addCleanup(shutil.rmtree, profile, True)
        p = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                            "--disable-dev-shm-usage", "--no-first-run",
                            f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                            *args, url],
                           capture_output=True, text=True, timeout=120)
        return p

    def test_the_page_shows_what_the_ca_got(self):
        origin, cf, proxy = self.start_all(
            domains=(TENANT, "www.tenant.example"),
            extra='admin: {listen: "127.0.0.1:0"}\n')
        c = self.client(proxy)
        resp = c.request("GET", "/.well-known/pki-validation/token123.txt",
                         headers=[("User-Agent", EVIL_UA)])
        self.assertEqual(resp.status, 200)
        host, port = proxy.admin_address
        url = f"http://{host}:{port}/status"
        wait_until(lambda: b"token123.txt" in __import__("urllib.request").request.urlopen(
            url, timeout=5).read(), 5, what="the event on the page")

        p = self.chromium("--dump-dom", url=url)
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        dom = DomSections()
        dom.feed(p.stdout)
        self.assertEqual(dom.title, "wkproxy status")
        self.assertEqual(dom.scripts, 0, "the User-Agent must never become markup")
        self.assertIn(TENANT, dom.sections)
        tenant = dom.sections[TENANT]
        self.assertIn("answered 200", tenant["hint"])
        self.assertEqual(len(tenant["rows"]), 1)
        row = " ".join(tenant["rows"][0])
        self.assertIn("token123.txt", row)
        self.assertIn("127.0.0.1", row)
        self.assertIn("<script>", row, "the User-Agent is shown as text")
        self.assertIn("no validation request seen yet", dom.sections["www.tenant.example"]["hint"])
        console = [line for line in p.stderr.splitlines() if "CONSOLE" in line]
        self.assertEqual(console, [], "the page must not log anything in the browser console")

        artefacts = os.environ.get("WKPROXY_TEST_ARTIFACTS") or tempfile.mkdtemp(
            prefix="wkproxy-artefacts-")
        os.makedirs(artefacts, exist_ok=True)
        shot = os.path.join(artefacts, "status-page.png")
        p = self.chromium(f"--screenshot={shot}", "--window-size=1280,1000",
                          "--hide-scrollbars", url=url)
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        with open(shot, "rb") as f:
            data = f.read()
        self.assertTrue(data.startswith(b"\x89PNG\r\n\x1a\n"), "a PNG screenshot")
        self.assertGreater(len(data), 10_000)


if __name__ == "__main__":
    unittest.main()
