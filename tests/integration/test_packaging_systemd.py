"""systemd units (packaging/systemd): `systemd-analyze verify` finds nothing to say about them,
the service has the settings docs/operations.md promises, and the socket unit listens exactly
where the example config it documents does (socket activation matches inherited sockets to
listeners by address, so any difference would silently bind instead)."""

import fcntl
import os
import re
import shutil
import socket
import subprocess
import tempfile
import unittest

from wkharness import have_tool, missing, wait_until, wkproxy_bin

_HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.abspath(os.path.join(_HERE, "..", ".."))
UNITS = os.path.join(SOURCE, "packaging", "systemd")
UNIT_NAMES = ("wkproxy.socket", "wkproxy.service")


def read_unit(name: str) -> str:
    with open(os.path.join(UNITS, name), encoding="utf-8") as f:
        return f.read()


def settings(text: str) -> dict[str, list[str]]:
    """KEY -> values in order (comments and section headers skipped; an empty value resets)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        if value == "":
            out[key] = []
        else:
            out.setdefault(key, []).append(value)
    return out


def seconds(value: str) -> float:
    """systemd time spans as the units use them: 45s, 1min 30s, 2m, 500ms, bare seconds."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit or "s"]
    return total


def config_durations() -> dict[str, float]:
    """shutdown.* defaults as config/wkproxy.yaml documents them (that file is loaded by a test
    and sets every key to its default)."""
    with open(os.path.join(SOURCE, "config", "wkproxy.yaml"), encoding="utf-8") as f:
        text = f.read()
    block = re.search(r"^shutdown:\n((?:[ #].*\n|\n)+)", text, re.M)
    assert block, "config/wkproxy.yaml has no shutdown: block"
    out = {}
    for key in ("accept_grace", "drain_timeout"):
        m = re.search(rf"^\s+{key}:\s*(\S+)", block.group(1), re.M)
        assert m, f"config/wkproxy.yaml: shutdown.{key} not found"
        out[key] = seconds(m.group(1))
    return out


def listen_addresses(config_path: str) -> list[str]:
    """The listen: entries of a simple example config ("IP:PORT" strings and address: keys),
    written as systemd writes them: ":80" (all IPv4) is 0.0.0.0:80."""
    with open(config_path, encoding="utf-8") as f:
        text = f.read()
    block = re.search(r"^listen:\n((?:[ #].*\n)+)", text, re.M)
    assert block, f"{config_path}: no block-style listen: list"
    found = re.findall(r'^\s+-\s+(?:address:\s*)?"([^"]+)"', block.group(1), re.M)
    return ["0.0.0.0" + a if a.startswith(":") else a for a in found]


def man_available(bin_path: str) -> str | None:
    """MANPATH under which `man wkproxy` finds the built page, if man is installed."""
    page = os.path.join(os.path.dirname(bin_path), "man", "man1", "wkproxy.1")
    if have_tool("man") and os.path.exists(page):
        return os.path.dirname(os.path.dirname(page))
    return None


def verify(unit_dir: str, names=UNIT_NAMES, manpath: str | None = None):
    """Runs systemd-analyze verify; returns (exit code, lines naming these units)."""
    env = dict(os.environ, SYSTEMD_LOG_COLOR="0", SYSTEMD_PAGER="")
    args = ["systemd-analyze", "verify"]
    if manpath:
        env["MANPATH"] = manpath
        args.append("--man=yes")
    else:
        args.append("--man=no")
    p = subprocess.run(args + [os.path.join(unit_dir, n) for n in names], capture_output=True,
                       text=True, env=env, timeout=60)
    lines = [line for line in (p.stdout + p.stderr).splitlines() if line.strip()]
    about_us = [line for line in lines
                if unit_dir in line or any(n in line for n in names)]
    return p.returncode, about_us, lines


def copy_units(dest: str, binary: str) -> None:
    """The units with /usr/bin/wkproxy replaced by the binary under test (verify checks that
    every Exec path exists)."""
    for name in UNIT_NAMES:
        text = read_unit(name).replace("/usr/bin/wkproxy ", binary + " ")
        with open(os.path.join(dest, name), "w", encoding="utf-8") as f:
            f.write(text)


class SystemdAnalyzeTest(unittest.TestCase):
    def setUp(self):
        if not shutil.which("systemd-analyze"):
            missing("systemd-analyze is not installed (Debian package systemd; tools/deps.sh "
                    "installs it): the units are not verified")
        self.dir = tempfile.mkdtemp(prefix="wkproxy-units-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_units_verify_without_a_single_message(self):
        copy_units(self.dir, wkproxy_bin())
        rc, about_us, lines = verify(self.dir, manpath=man_available(wkproxy_bin()))
        self.assertEqual(about_us, [], "\n".join(lines))
        self.assertEqual(rc, 0, "\n".join(lines))

    def test_verify_does_report_a_broken_unit(self):
        # The check above is only worth something if verify speaks up about these units.
        copy_units(self.dir, wkproxy_bin())
        path = os.path.join(self.dir, "wkproxy.service")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace("[Service]\n", "[Service]\nNoSuchSetting=yes\n", 1)
                        .replace(wkproxy_bin() + " -c", "/nonexistent/wkproxy -c"))
        _, about_us, lines = verify(self.dir)
        text = "\n".join(about_us)
        self.assertIn("NoSuchSetting", text, "\n".join(lines))
        self.assertIn("/nonexistent/wkproxy", text, "\n".join(lines))


class ServiceSettingsTest(unittest.TestCase):
    def setUp(self):
        self.s = settings(read_unit("wkproxy.service"))

    def one(self, key):
        self.assertIn(key, self.s, f"wkproxy.service has no {key}=")
        return self.s[key][-1]

    def test_runs_the_installed_binary_with_the_etc_config_in_the_foreground(self):
        self.assertEqual(self.one("ExecStart"), "/usr/bin/wkproxy -c /etc/wkproxy/wkproxy.yaml "
                                                "--pid-file /run/wkproxy/wkproxy.pid")

    def test_notify_type_follows_the_main_process_across_binary_upgrades(self):
        # wkproxy sends READY=1 itself; after SIGUSR2 the old process sends MAINPID= for its
        # successor, and the successor speaks from then on: both must be heard
        # (test_systemd_notify.py checks the messages and their senders).
        self.assertEqual(self.one("Type"), "notify")
        self.assertEqual(self.one("NotifyAccess"), "all")
        # The pid file of `wkproxy reload/upgrade --pid-file` lives in the runtime directory.
        self.assertEqual(self.one("RuntimeDirectory"), "wkproxy")
        self.assertIn("/run/wkproxy/", self.one("ExecStart"))
        self.assertNotIn("PIDFile", self.s)
        # Upgrades are documented, not forbidden.
        text = read_unit("wkproxy.service")
        self.assertIn("wkproxy upgrade --pid-file /run/wkproxy/wkproxy.pid", text)
        self.assertIn("systemctl kill -s USR2 --kill-whom=main wkproxy", text)
        self.assertNotIn("Do not send SIGUSR2", text)

    def test_reload_checks_the_config_then_sends_sighup(self):
        self.assertEqual(self.s["ExecReload"], ["/usr/bin/wkproxy -t -c /etc/wkproxy/wkproxy.yaml",
                                                "/bin/kill -HUP $MAINPID"])

    def test_stop_is_graceful_and_outlasts_the_drain(self):
        self.assertEqual(self.one("KillSignal"), "SIGTERM")
        d = config_durations()
        self.assertGreater(seconds(self.one("TimeoutStopSec")),
                           d["accept_grace"] + d["drain_timeout"])
        self.assertEqual(self.one("Restart"), "on-failure")

    def test_hardening(self):
        expected = {
            "DynamicUser": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
            "PrivateTmp": "yes", "NoNewPrivileges": "yes",
            "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
            "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
            "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
            "LogsDirectory": "wkproxy", "LimitNOFILE": "65536",
        }
        for key, value in expected.items():
            with self.subTest(key=key):
                self.assertEqual(self.one(key), value)
        self.assertEqual(self.s["SystemCallFilter"][0], "@system-service")

    def test_hardening_keeps_what_wkproxy_needs(self):
        # SIGUSR2 and the check subcommand exec; splice(2) relays passthrough bytes; sd_notify
        # and the reload/upgrade answers are unix sockets; the workers' loop is io_uring
        # (@system-service has it through @aio).
        if not shutil.which("systemd-analyze"):
            missing("systemd-analyze is not installed")
        allowed = subprocess.run(["systemd-analyze", "syscall-filter", "@system-service"],
                                 capture_output=True, text=True)
        self.assertEqual(allowed.returncode, 0, allowed.stderr)
        names = set(allowed.stdout.split())
        expanded = set()
        for group in [n for n in names if n.startswith("@")]:
            p = subprocess.run(["systemd-analyze", "syscall-filter", group], capture_output=True,
                               text=True)
            expanded |= set(p.stdout.split())
        for call in ("splice", "pipe2", "close_range", "execve", "accept4", "epoll_wait",
                     "sendto", "connect", "getsockopt", "io_uring_setup", "io_uring_enter",
                     "io_uring_register"):
            with self.subTest(call=call):
                self.assertIn(call, names | expanded)


class SocketUnitTest(unittest.TestCase):
    def test_listen_streams_match_the_example_config_it_documents(self):
        text = read_unit("wkproxy.socket")
        documented = re.search(r"config/([\w.-]+\.yaml)", text)
        self.assertIsNotNone(documented, "wkproxy.socket should name the example config")
        config = os.path.join(SOURCE, "config", documented.group(1))
        s = settings(text)
        self.assertEqual(sorted(s["ListenStream"]), sorted(listen_addresses(config)))

    def test_ipv6_sockets_are_ipv6_only_like_wkproxys_own(self):
        # wkproxy binds "[::]:P" with IPV6_V6ONLY next to "0.0.0.0:P"; a dual-stack [::]:P from
        # systemd would make the IPv4 socket unbindable.
        s = settings(read_unit("wkproxy.socket"))
        self.assertEqual(s["BindIPv6Only"], ["ipv6-only"])

    def test_wkproxy_adopts_both_families_as_the_socket_unit_passes_them(self):
        # The socket unit's pair of sockets for one port, made as systemd makes them, handed to
        # the binary with LISTEN_FDS: both are taken over (nothing bound again, none closed).
        try:
            v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        except OSError:
            missing("no IPv6")
        v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(v4.close)
        self.addCleanup(v6.close)
        v4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        v4.bind(("0.0.0.0", 0))
        port = v4.getsockname()[1]
        v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        v6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            v6.bind(("::", port))
        except OSError as e:
            missing(f"cannot bind [::]:{port}: {e}")
        v4.listen(16)
        v6.listen(16)
        tmp = tempfile.mkdtemp(prefix="wkproxy-activation-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cfg = os.path.join(tmp, "wkproxy.yaml")
        ports = os.path.join(tmp, "ports.json")
        with open(cfg, "w", encoding="utf-8") as f:
            f.write(f'version: 1\nlisten: [":{port}", "[::]:{port}"]\n'
                    "origin: http://127.0.0.1:9\ncloudfront: http://127.0.0.1:9\n"
                    "domains: [example.com]\naccess_log: off\n")
        # Above 3 and 4 first, so moving them to 3 and 4 cannot clobber one with the other.
        a, b = (fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, 10) for s in (v4, v6))
        self.addCleanup(os.close, a)
        self.addCleanup(os.close, b)
        script = (f"exec 3<&{a} 4<&{b} {a}<&- {b}<&-; export LISTEN_PID=$$ LISTEN_FDS=2; "
                  f"exec {wkproxy_bin()} -c {cfg} --ports-file {ports}")
        p = subprocess.Popen(["bash", "-c", script], pass_fds=(a, b), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        self.addCleanup(p.stderr.close)
        wait_until(lambda: os.path.exists(ports) or p.poll() is not None, 10,
                   what="the ports file")
        if p.poll() is not None:
            self.fail(f"wkproxy exited with {p.returncode}: {p.stderr.read()}")
        v4.close()
        v6.close()  # only wkproxy holds them now: answering proves they were taken over
        for host in ("127.0.0.1", "::1"):
            with socket.create_connection((host, port), timeout=5) as c:
                c.sendall(b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
                self.assertTrue(c.recv(64).startswith(b"HTTP/1.1 502"), host)
        p.terminate()
        _, err = p.communicate(timeout=10)
        self.assertEqual(p.returncode, 0, err)
        self.assertNotIn("bind", err)


if __name__ == "__main__":
    unittest.main()
