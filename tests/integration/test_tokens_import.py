"""`wkproxy tokens import`: get-managed-certificate-details output (JSON from a file or stdin,
the API's XML) to YAML, and `--write` into a config that `wkproxy -t` then accepts; broken input
exits 1 with a clear message and never touches the config."""

import json
import os
import shutil
import stat
import subprocess
import tempfile
import unittest

from wkharness import wkproxy_bin

_REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

ACM = "https://validation.us-east-1.acm-validations.aws/123456789012/.well-known/pki-validation/"
TOKENS = [
    ("example.com", "http://example.com/.well-known/pki-validation/1a2b3c.txt", ACM + "1a2b3c.txt"),
    ("www.example.com", "http://www.example.com/.well-known/pki-validation/4d5e6f.txt",
     ACM + "4d5e6f.txt"),
]
ARN = "arn:aws:acm:us-east-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"


def details_json(status="pending-validation", host="self-hosted", extra=()):
    entries = [{"Domain": d, "RedirectTo": to, "RedirectFrom": frm} for d, frm, to in TOKENS]
    entries += list(extra)
    return json.dumps({"ManagedCertificateDetails": {
        "CertificateArn": ARN, "CertificateStatus": status, "ValidationTokenHost": host,
        "ValidationTokenDetails": entries}}, indent=4) + "\n"


def details_xml():
    items = "".join(
        f"<ValidationTokenDetail><Domain>{d}</Domain><RedirectTo>{to}</RedirectTo>"
        f"<RedirectFrom>{frm}</RedirectFrom></ValidationTokenDetail>\n" for d, frm, to in TOKENS)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<GetManagedCertificateDetailsResponse '
            'xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/">\n'
            "<GetManagedCertificateDetailsResult><ManagedCertificateDetails>\n"
            f"<CertificateArn>{ARN}</CertificateArn>\n"
            "<CertificateStatus>pending-validation</CertificateStatus>\n"
            "<ValidationTokenHost>self-hosted</ValidationTokenHost>\n"
            f"<ValidationTokenDetails>\n{items}</ValidationTokenDetails>\n"
            "</ManagedCertificateDetails></GetManagedCertificateDetailsResult>\n"
            "</GetManagedCertificateDetailsResponse>\n")


EXPECTED_YAML = (
    "# from get-managed-certificate-details: status pending-validation, 2 tokens\n"
    "domains: [example.com, www.example.com]\n"
    "tokens:\n" + "".join(
        f'  - domain: {d}\n    tenant: "{ARN}"\n    redirect_from: "{frm}"\n'
        f'    redirect_to: "{to}"\n'
        for d, frm, to in TOKENS))

HEAD = """\
version: 1
listen: ["127.0.0.1:8080"]
origin: http://127.0.0.1:8081
cloudfront: http://d111111abcdef8.cloudfront.net
"""


class ImportTestCase(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="wkproxy-import-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def file(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def run_wkproxy(self, *args, stdin=None):
        return subprocess.run([wkproxy_bin(), *args], input=stdin, capture_output=True, text=True,
                              timeout=30)

    def check_config(self, path):
        p = self.run_wkproxy("-t", "-c", path)
        self.assertEqual(p.returncode, 0, f"{p.stderr}\n--- config:\n{self.read(path).decode()}")
        self.assertIn("configuration is valid", p.stdout)

    def loaded_tokens(self, path):
        """The config's tokens as a YAML parser reads them (PyYAML, tools/deps.sh installs it)."""
        import yaml  # noqa: PLC0415
        return yaml.safe_load(self.read(path))["tokens"]

    def read(self, path):
        with open(path, "rb") as f:
            return f.read()

    def assert_no_stray_files(self, *expected):
        self.assertEqual(sorted(os.listdir(self.dir)), sorted(expected))


class PrintTest(ImportTestCase):
    def test_json_file_prints_the_yaml_to_paste(self):
        p = self.run_wkproxy("tokens", "import", self.file("details.json", details_json()))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, EXPECTED_YAML)
        self.assertEqual(p.stderr, "")

    def test_json_from_stdin(self):
        p = self.run_wkproxy("tokens", "import", "-", stdin=details_json())
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, EXPECTED_YAML)

    def test_xml_api_response(self):
        p = self.run_wkproxy("tokens", "import", self.file("details.xml", details_xml()))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, EXPECTED_YAML)

    def test_printed_yaml_completes_a_config(self):
        p = self.run_wkproxy("tokens", "import", "-", stdin=details_json())
        self.assertEqual(p.returncode, 0, p.stderr)
        self.check_config(self.file("wkproxy.yaml", HEAD + p.stdout))

    def test_the_aws_cli_reference_example_imports(self):
        # Exactly as published: RedirectFrom/RedirectTo without a scheme, file names that differ.
        ref = os.path.join(_REPO, "tests", "fixtures", "aws",
                           "get-managed-certificate-details.reference.{}")
        for ext in ("json", "xml"):
            with self.subTest(ext):
                p = self.run_wkproxy("tokens", "import", ref.format(ext))
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(p.stderr, "")
                self.assertIn('redirect_from: "http://example.com/.well-known/pki-validation/'
                              'b315c9ae21284e7918bb9f3f422ac3c7.txt"', p.stdout)
                self.assertIn('redirect_to: "https://validation.us-east-1.acm-validations.aws/'
                              '123456789012/.well-known/pki-validation/'
                              'b315c9ae21284e7918bb9f3f422ab1c7.txt"', p.stdout)
                self.check_config(self.file(f"ref-{ext}.yaml", HEAD + p.stdout))

    def test_entries_without_urls_are_skipped_with_a_warning(self):
        mixed = os.path.join(_REPO, "tests", "fixtures", "aws",
                             "get-managed-certificate-details.mixed.json")
        p = self.run_wkproxy("tokens", "import", mixed)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("api.shop.example.net: no RedirectFrom and RedirectTo", p.stderr)
        self.assertIn("static.shop.example.net: no RedirectTo", p.stderr)
        self.assertIn("2 tokens", p.stdout)
        self.check_config(self.file("mixed.yaml", HEAD + p.stdout))

    def test_wildcards_and_cloudfront_hosted_tokens_are_warnings(self):
        text = details_json(status="issued", host="cloudfront",
                            extra=[{"Domain": "*.example.com"}])
        p = self.run_wkproxy("tokens", "import", "-", stdin=text)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("2 tokens", p.stdout)
        self.assertNotIn("*.example.com", p.stdout)
        self.assertRegex(p.stderr, r"(?m)^warning: <stdin>: ValidationTokenDetails\[2\]: skipped "
                                   r'"\*\.example\.com": HTTP validation does not support')
        self.assertRegex(p.stderr, r"(?m)^warning: <stdin>: .*served by CloudFront itself")

    def test_broken_input_exits_1_with_the_reason(self):
        cases = {
            "not json": ("hello", "not get-managed-certificate-details output"),
            "truncated": (details_json()[:40], "invalid JSON at line"),
            "other output": ('{"DistributionTenant": {}}',
                             "not get-managed-certificate-details output: "
                             "no ManagedCertificateDetails"),
            "http RedirectTo": (details_json().replace('"https://validation', '"http://validation'),
                                "ValidationTokenDetails[0].RedirectTo: must start with https://"),
        }
        for name, (text, reason) in cases.items():
            with self.subTest(name):
                path = self.file("bad.json", text)
                p = self.run_wkproxy("tokens", "import", path)
                self.assertEqual(p.returncode, 1, p)
                self.assertEqual(p.stdout, "")
                self.assertIn(f"wkproxy: {path}: {reason}", p.stderr)

    def test_deeply_nested_xml_is_refused_without_a_crash(self):
        # Issue 18, finding 8: the XML parser recursed once per level and the process died of
        # SIGSEGV at about 50,000 levels. Now nesting deeper than 32 is refused before parsing.
        levels = 100_000
        path = self.file("deep.xml", '<?xml version="1.0"?>\n'
                         + "<ManagedCertificateDetails>" * levels
                         + "</ManagedCertificateDetails>" * levels + "\n")
        for args in ([path], [path, "--write", self.file("wkproxy.yaml", HEAD)]):
            with self.subTest(args=args[1:]):
                p = self.run_wkproxy("tokens", "import", *args)
                self.assertGreaterEqual(p.returncode, 0,
                                        f"killed by signal {-p.returncode}: {p.stderr}")
                self.assertEqual(p.returncode, 1, p)
                self.assertEqual(p.stdout, "")
                self.assertEqual(p.stderr,
                                 f"wkproxy: {path}: XML nested deeper than 32 elements "
                                 "(line 2, column 865): refused before parsing "
                                 "(certificate details nest 6 deep)\n")
        self.assertEqual(self.read(os.path.join(self.dir, "wkproxy.yaml")), HEAD.encode())

    def test_only_wildcards_is_an_error(self):
        text = json.dumps({"ManagedCertificateDetails": {
            "CertificateStatus": "pending-validation",
            "ValidationTokenDetails": [{"Domain": "*.example.com"}]}})
        p = self.run_wkproxy("tokens", "import", "-", stdin=text)
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("wkproxy: <stdin>: no importable token", p.stderr)

    def test_usage_errors_exit_2(self):
        for args in ([], ["a.json", "b.json"], ["--write"], ["-", "--write", "-"],
                     ["--frobnicate", "a.json"], ["--prefix", "nope", "a.json"]):
            with self.subTest(args=args):
                p = self.run_wkproxy("tokens", "import", *args)
                self.assertEqual(p.returncode, 2, p)
                self.assertIn("usage: wkproxy tokens import", p.stderr)


class WriteTest(ImportTestCase):
    def copy_example(self, name):
        path = os.path.join(self.dir, "wkproxy.yaml")
        shutil.copyfile(os.path.join(_REPO, "config", name), path)
        os.chmod(path, 0o640)
        return path

    def test_write_into_a_copy_of_the_minimal_example(self):
        config = self.copy_example("minimal.yaml")
        before = self.read(config)
        p = self.run_wkproxy("tokens", "import", "-", "--write", config, stdin=details_json())
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout,
                         f"wrote 2 tokens of tenant {ARN} to {config} (added a tokens block)\n")
        after = self.read(config)
        self.assertTrue(after.startswith(before), after)  # every byte before stays
        text = after.decode()
        for _, frm, to in TOKENS:
            self.assertIn(f'redirect_from: "{frm}"', text)
            self.assertIn(f'redirect_to: "{to}"', text)
        self.assertEqual(stat.S_IMODE(os.stat(config).st_mode), 0o640)
        self.check_config(config)
        self.assert_no_stray_files("wkproxy.yaml")

        # Importing again replaces the block: the file does not change.
        p = self.run_wkproxy("tokens", "import", "-", "--write", config, stdin=details_json())
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("already up to date", p.stdout)
        self.assertEqual(self.read(config), after)

    def test_write_into_the_full_example_keeps_its_comments(self):
        config = self.copy_example("wkproxy.yaml")
        before = self.read(config).decode()
        p = self.run_wkproxy("tokens", "import", self.file("d.xml", details_xml()),
                             "--write", config)
        self.assertEqual(p.returncode, 0, p.stderr)
        after = self.read(config).decode()
        self.assertTrue(after.startswith(before))
        self.check_config(config)

    def test_write_replaces_old_tokens_and_adds_missing_domains(self):
        old = ("tokens:   # imported by hand\n"
               "  - domain: example.com\n"
               "    redirect_from: http://example.com/.well-known/pki-validation/old.txt\n"
               "    redirect_to: https://validation.us-east-1.acm-validations.aws/1/old.txt\n")
        rest = "\n# tuned for the tenant\ntimeouts:\n  connect: 2s\n"
        config = self.file("wkproxy.yaml",
                           HEAD + "domains: [example.com]  # tenant\n" + old + rest)
        p = self.run_wkproxy("tokens", "import", "-", "--write", config, stdin=details_json())
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, f"wrote 2 tokens of tenant {ARN} to {config} (replaced 1 "
                                   "earlier token, kept 0 tokens of other tenants); "
                                   "added domains: www.example.com\n")
        text = self.read(config).decode()
        self.assertTrue(text.startswith(
            HEAD + "domains: [example.com, www.example.com]  # tenant\n"
                   "tokens:   # imported by hand\n"), text)
        self.assertTrue(text.endswith(rest), text)
        self.assertNotIn("old.txt", text)
        self.check_config(config)

    def test_two_tenants_imported_one_after_another_keep_both(self):
        config = self.copy_example("minimal.yaml")
        p = self.run_wkproxy("tokens", "import", "-", "--tenant", "dt_one", "--write", config,
                             stdin=details_json())
        self.assertEqual(p.returncode, 0, p.stderr)
        two = os.path.join(_REPO, "tests", "fixtures", "aws",
                           "get-managed-certificate-details.mixed.json")
        p = self.run_wkproxy("tokens", "import", two, "--tenant", "dt_two", "--write", config)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("wrote 2 tokens of tenant dt_two", p.stdout)
        self.assertIn("(replaced 0 earlier tokens, kept 2 tokens of other tenants)", p.stdout)
        self.check_config(config)
        tokens = self.loaded_tokens(config)
        self.assertEqual([(t["tenant"], t["domain"]) for t in tokens],
                         [("dt_one", "example.com"), ("dt_one", "www.example.com"),
                          ("dt_two", "shop.example.net"), ("dt_two", "www.shop.example.net")])

        # Tenant one again, with a new token for one domain: only its tokens change.
        renewed = details_json().replace("1a2b3c.txt", "9z8y7x.txt")
        p = self.run_wkproxy("tokens", "import", "-", "--tenant", "dt_one", "--write", config,
                             stdin=renewed)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("replaced 2 earlier tokens, kept 2 tokens of other tenants", p.stdout)
        tokens = self.loaded_tokens(config)
        self.assertEqual([(t["tenant"], t["redirect_from"].rsplit("/", 1)[1]) for t in tokens],
                         [("dt_one", "9z8y7x.txt"), ("dt_one", "4d5e6f.txt"),
                          ("dt_two", "0a1b2c3d4e5f60718293a4b5c6d7e8f0.txt"),
                          ("dt_two", "99887766554433221100ffeeddccbbab.txt")])

        # Removing tenant one leaves tenant two whole.
        p = self.run_wkproxy("tokens", "remove", "--tenant", "dt_one", "--write", config)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout,
                         f"removed 2 tokens of tenant dt_one from {config}; kept 2 tokens of "
                         "other tenants\nstill in the allow-list (remove by hand when the tenant "
                         "is gone): example.com, www.example.com\n")
        self.check_config(config)
        self.assertEqual([t["tenant"] for t in self.loaded_tokens(config)], ["dt_two", "dt_two"])

        # An unknown tenant changes nothing and names the ones there.
        before = self.read(config)
        p = self.run_wkproxy("tokens", "remove", "--tenant", "dt_nobody", "--write", config)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("no tokens of tenant dt_nobody (tenants there: dt_two)", p.stderr)
        self.assertEqual(self.read(config), before)
        self.assert_no_stray_files("wkproxy.yaml")

    def test_tokens_remove_usage_errors_exit_2(self):
        config = self.copy_example("minimal.yaml")
        for args in (["--tenant", "dt_x"], ["--write", config], ["--tenant", "a b", "--write",
                                                                  config], ["--bogus"]):
            with self.subTest(args):
                p = self.run_wkproxy("tokens", "remove", *args)
                self.assertEqual(p.returncode, 2, p)
                self.assertIn("usage: wkproxy tokens remove", p.stderr)

    def test_a_tokens_block_it_cannot_edit_is_left_alone(self):
        config = self.file("wkproxy.yaml", HEAD + "domains: [example.com, www.example.com]\n"
                           "tokens: [{domain: example.com, redirect_from: "
                           "\"http://example.com/.well-known/pki-validation/x.txt\", "
                           "redirect_to: \"https://validation.us-east-1.acm-validations.aws/1/x\"}]\n")
        before = self.read(config)
        p = self.run_wkproxy("tokens", "import", "-", "--write", config, stdin=details_json())
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("the tokens block cannot be edited safely", p.stderr)
        self.assertEqual(self.read(config), before)

    def test_write_through_a_symlink_keeps_the_link(self):
        real = self.copy_example("minimal.yaml")
        link = os.path.join(self.dir, "link.yaml")
        os.symlink("wkproxy.yaml", link)
        p = self.run_wkproxy("tokens", "import", "-", "--write", link, stdin=details_json())
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(os.path.islink(link))
        self.assertIn("tokens:", self.read(real).decode())
        self.assert_no_stray_files("wkproxy.yaml", "link.yaml")

    def test_broken_input_writes_nothing(self):
        config = self.copy_example("minimal.yaml")
        before = self.read(config)
        p = self.run_wkproxy("tokens", "import", "-", "--write", config,
                             stdin=details_json()[:-20])
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("wkproxy: <stdin>: invalid JSON", p.stderr)
        self.assertEqual(p.stdout, "")
        self.assertEqual(self.read(config), before)
        self.assert_no_stray_files("wkproxy.yaml")

    def test_a_result_that_would_not_load_is_not_written(self):
        # The config serves another prefix: the imported RedirectFrom URLs do not fit it.
        config = self.file("wkproxy.yaml", HEAD + "domains: [example.com, www.example.com]\n"
                                                  "validation:\n  prefix: /acme/\n")
        before = self.read(config)
        p = self.run_wkproxy("tokens", "import", "-", "--write", config, stdin=details_json())
        self.assertEqual(p.returncode, 1, p)
        self.assertIn(f"wkproxy: {config}: not written", p.stderr)
        self.assertRegex(p.stderr, r"tokens\[0\]\.redirect_from: the path must start with /acme/")
        self.assertEqual(self.read(config), before)
        self.assert_no_stray_files("wkproxy.yaml")

    def test_missing_config_is_an_error(self):
        config = os.path.join(self.dir, "absent.yaml")
        p = self.run_wkproxy("tokens", "import", "-", "--write", config, stdin=details_json())
        self.assertEqual(p.returncode, 1, p)
        self.assertIn(f"wkproxy: {config}: cannot read", p.stderr)
        self.assertFalse(os.path.exists(config))


if __name__ == "__main__":
    unittest.main()
