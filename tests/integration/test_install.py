"""`cmake --install` of the build that made $WKPROXY_BIN puts every file where docs/operations.md
says, the installed binary runs, and `wkproxy --help` and the man page wkproxy(1) (both generated
from docs/wkproxy.1.md) agree: every option --help prints is in the rendered page."""

import glob
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from wkharness import have_tool, missing, wkproxy_bin

_HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.abspath(os.path.join(_HERE, "..", ".."))


def build_dir() -> str:
    return os.path.dirname(wkproxy_bin())


def run(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, **kw)


def options_in(text: str) -> set[str]:
    """Every -x / --long-option written in a text (not the '-' inside words or paths)."""
    return set(re.findall(r"(?<![\w/.:\-])(--?[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*)", text))


class InstallTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(os.path.join(build_dir(), "CMakeCache.txt")):
            missing(f"{build_dir()} is not a CMake build directory")
        cls.prefix = tempfile.mkdtemp(prefix="wkproxy-install-")
        cls.result = run("cmake", "--install", build_dir(), "--prefix", cls.prefix)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.prefix, True)

    def test_install_succeeds(self):
        self.assertEqual(self.result.returncode, 0, self.result.stdout + self.result.stderr)

    def test_every_file_is_where_the_readme_says(self):
        examples = sorted(os.path.basename(p)
                          for p in glob.glob(os.path.join(SOURCE, "config", "*.yaml")))
        self.assertIn("ports-80-443.yaml", examples)
        expected = ["bin/wkproxy", "share/man/man1/wkproxy.1",
                    "lib/systemd/system/wkproxy.service", "lib/systemd/system/wkproxy.socket"]
        expected += [f"share/doc/wkproxy/examples/{e}" for e in examples]
        for rel in expected:
            with self.subTest(file=rel):
                self.assertTrue(os.path.isfile(os.path.join(self.prefix, rel)),
                                f"{rel} not installed:\n{self.result.stdout}")
        self.assertTrue(os.access(os.path.join(self.prefix, "bin/wkproxy"), os.X_OK))

    def test_installed_binary_prints_its_version(self):
        p = run(os.path.join(self.prefix, "bin", "wkproxy"), "--version")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"^wkproxy \d+\.\d+\.\d+ \(([0-9a-f]{7,}|unknown)\)\n$")
        self.assertEqual(p.stdout, run(wkproxy_bin(), "--version").stdout)

    def test_installed_service_runs_the_installed_binary(self):
        with open(os.path.join(self.prefix, "lib/systemd/system/wkproxy.service")) as f:
            unit = f.read()
        binary = os.path.join(self.prefix, "bin", "wkproxy")
        self.assertIn(f"ExecStart={binary} -c /etc/wkproxy/wkproxy.yaml "
                      "--pid-file /run/wkproxy/wkproxy.pid\n", unit)
        self.assertIn(f"ExecReload={binary} -t -c /etc/wkproxy/wkproxy.yaml\n", unit)
        self.assertNotIn("/usr/bin/wkproxy", unit)
        if have_tool("systemd-analyze"):
            unit_dir = os.path.join(self.prefix, "lib/systemd/system")
            p = run("systemd-analyze", "verify", "--man=no",
                    os.path.join(unit_dir, "wkproxy.socket"),
                    os.path.join(unit_dir, "wkproxy.service"))
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertNotIn("wkproxy", p.stdout + p.stderr)


class HelpAndManPageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.page = os.path.join(build_dir(), "man", "man1", "wkproxy.1")
        p = run(wkproxy_bin(), "--help")
        cls.help_rc, cls.help = p.returncode, p.stdout

    def rendered(self) -> str:
        """The page as text: man -l when man-db is there, else the roff source without
        escapes."""
        with open(self.page, encoding="utf-8") as f:
            roff = f.read()
        if have_tool("man"):
            env = dict(os.environ, MANWIDTH="200", LC_ALL="C.UTF-8", MAN_KEEP_FORMATTING="")
            p = run("man", "-l", "-P", "cat", self.page, env=env)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(p.stderr, "")
            return re.sub(r".\x08", "", p.stdout)  # overstrike bold, if any
        return re.sub(r"\\f[BIRP]|\\&", "", roff).replace("\\-", "-").replace("\\e", "\\")

    def test_help_exits_0_and_covers_every_subcommand_signal_and_file(self):
        self.assertEqual(self.help_rc, 0)
        self.assertTrue(self.help.startswith("usage: wkproxy -c FILE"))
        for needle in ("wkproxy demo", "wkproxy -t -c FILE", "wkproxy tokens import",
                       "wkproxy check", "wkproxy loadtest", "--ports-file", "--version", "SIGHUP",
                       "SIGTERM", "SIGUSR1", "SIGUSR2", "LISTEN_FDS", "Files:",
                       "/etc/wkproxy/wkproxy.yaml", "Exit status"):
            with self.subTest(needle=needle):
                self.assertIn(needle, self.help)

    def test_each_subcommand_help_is_part_of_the_main_help(self):
        flat = " ".join(self.help.split())
        for sub in (["demo"], ["tokens", "import"], ["check"], ["loadtest"]):
            with self.subTest(sub=sub):
                p = run(wkproxy_bin(), *sub, "--help")
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertTrue(p.stdout.startswith("usage: wkproxy " + " ".join(sub)))
                body = p.stdout.split("\n\n", 1)[1]  # all but the usage line(s)
                self.assertIn(" ".join(body.split()), flat)
                self.assertLessEqual(options_in(p.stdout), options_in(self.help))

    def test_man_page_has_the_structure_of_a_man_page(self):
        with open(self.page, encoding="utf-8") as f:
            roff = f.read()
        self.assertRegex(roff, r'(?m)^\.TH WKPROXY 1 ')
        sections = re.findall(r'(?m)^\.SH "?([A-Z ]+?)"?$', roff)
        for s in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "SIGNALS", "FILES"):
            self.assertIn(s, sections)
        requests = set(re.findall(r"(?m)^\.(\w+)", roff))
        self.assertLessEqual(requests, {"TH", "SH", "SS", "PP", "TP", "nf", "fi", "RS", "RE",
                                        "nh", "ad"}, "unexpected roff requests")
        if have_tool("groff"):
            p = run("groff", "-man", "-Tutf8", "-ww", "-z", self.page)
            self.assertEqual((p.returncode, p.stderr), (0, ""))

    def test_man_page_renders_and_has_every_option_of_help(self):
        text = self.rendered()
        self.assertIn("wkproxy - HTTP validation split", text)
        help_options = options_in(self.help)
        self.assertGreaterEqual(len(help_options), 20, sorted(help_options))
        self.assertEqual(sorted(help_options - options_in(text)), [],
                         "options in --help but not in the man page")

    def test_man_page_and_help_come_from_the_same_source(self):
        with open(os.path.join(SOURCE, "docs", "wkproxy.1.md"), encoding="utf-8") as f:
            source = f.read()
        self.assertEqual(sorted(options_in(self.help) - options_in(source)), [])


if __name__ == "__main__":
    unittest.main()
