"""Zero downtime, proven with `wkproxy loadtest` (issue #5): reloads under constant load lose no
request, an invalid reload is refused while the old config keeps serving, and the load
generator does see the failures of a naive restart. The binary-upgrade case (SIGUSR2) runs once
the binary says it supports it.

The proxies run with the admin listener on (a fixed port), as deployed: the upgrade must hand
it over too, and its probes must answer throughout."""

import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from wkharness import (LightOrigin, Proxy, ProxyTestCase, RecordingBackend, admin_config,
                       admin_get, free_port, make_config, metric_value, wait_until, wkproxy_bin)

# The cloudfront upstream is never used here (no validation requests): a port nothing listens on.
UNUSED_CF = "http://127.0.0.1:9"


def run_loadtest(*args, timeout=60) -> tuple[int, dict, str]:
    """`wkproxy loadtest ARGS... --json`; returns (exit code, report, stderr)."""
    p = subprocess.run([wkproxy_bin(), "loadtest", *args, "--json"], capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return p.returncode, _report(p.stdout, p.stderr), p.stderr


def _report(stdout: str, stderr: str) -> dict:
    try:
        return json.loads(stdout)
    except ValueError:
        raise AssertionError(f"loadtest printed no JSON report:\nstdout {stdout[-2000:]!r}\n"
                             f"stderr {stderr[-2000:]!r}") from None


def _summary(report: dict) -> str:
    t = report["total"]
    rows = [f"total: {t}"] + [f"event {e['command']!r}: exit {e['exit_code']} {e['window']}"
                              for e in report["events"]]
    return "\n".join(rows + [f"errors: {report['errors']}"])


def pids_running(config_path: str) -> list[int]:
    """wkproxy processes whose command line names this (unique, temp-dir) config file."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and config_path.encode() in argv:
            found.append(int(entry))
    return found


class AdminProbes:
    """A thread probing /healthz and /readyz on the admin listener, alternately, each on a new
    connection (as kubelet does), until stop(). results: [(path, (status, body))]; errors:
    probes that got no answer (refused, reset, timed out)."""

    def __init__(self, address, interval=0.02):
        self.address = address
        self.interval = interval
        self.results: list = []
        self.errors: list = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="admin-probes", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stopping.set()
        self._thread.join(timeout=10)

    def _run(self):
        while not self._stopping.is_set():
            for path in ("/healthz", "/readyz"):
                try:
                    self.results.append((path, admin_get(self.address, path, timeout=5)))
                except Exception as e:  # reported by the test
                    self.errors.append(f"{time.monotonic():.3f} {path}: {e!r}")
            time.sleep(self.interval)


class ZeroDowntimeTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls):
        # No TLS here: skip the test CA the base class makes.
        super(ProxyTestCase, cls).setUpClass()

    def start_origin(self, **kw) -> LightOrigin:
        o = LightOrigin(**kw).start()
        self.addCleanup(o.stop)
        return o

    def write(self, directory, name, text) -> str:
        path = os.path.join(directory, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_time(self, proxy) -> float:
        """process_start_time_seconds of whichever process answers on the admin listener."""
        status, body = admin_get(proxy.admin_address, "/metrics")
        self.assertEqual(status, 200, body)
        return metric_value(body.decode(), "process_start_time_seconds")

    def assertNoFailures(self, rc, report, stderr):
        self.assertEqual(report["total"]["failed"], 0, _summary(report))
        self.assertTrue(report["pass"], _summary(report))
        self.assertEqual(rc, 0, f"{_summary(report)}\nstderr: {stderr[-2000:]}")

    # -- reloads

    def test_reloads_under_load_lose_no_request_and_an_invalid_one_changes_nothing(self):
        first = self.start_origin(name="first")
        second = self.start_origin(name="second")
        admin = admin_config()
        config_a = make_config(first.url, UNUSED_CF, access_log="off", extra=admin)
        config_b = make_config(second.url, UNUSED_CF, access_log="off", extra=admin,
                               timeouts={"idle": "10s", "upstream_idle": "2s"})
        invalid = make_config(first.url, UNUSED_CF, access_log="off", extra=admin,
                              timeouts={"idle": "forever"})
        proxy = self.start_proxy(first.url, UNUSED_CF, access_log="off", extra=admin)
        d = tempfile.mkdtemp(prefix="wkproxy-zdt-")
        self.addCleanup(shutil.rmtree, d, True)
        paths = {name: self.write(d, name + ".yaml", text)
                 for name, text in (("a", config_a), ("b", config_b), ("invalid", invalid))}

        def swap(name):
            return (f"cp {shlex.quote(paths[name])} {shlex.quote(proxy.config_path)} && "
                    f"kill -HUP {proxy.pid}")

        plan = [("1500ms", "b"), ("3s", "a"), ("4500ms", "invalid"), ("5500ms", "b"),
                ("7s", "a")]
        args = ["--target", f"127.0.0.1:{proxy.port}", "--host", "tenant.example",
                "--duration", "8s", "--keepalive", "8", "--fresh", "2", "--timeout", "5s"]
        for at, name in plan:
            args += ["--event", f"{at}:{swap(name)}"]
        rc, report, stderr = run_loadtest(*args)

        self.assertNoFailures(rc, report, stderr)
        self.assertGreater(report["total"]["sent"], 500, _summary(report))
        self.assertEqual(len(report["events"]), len(plan))
        for e in report["events"]:
            self.assertEqual(e["exit_code"], 0, e)
            self.assertGreater(e["window"]["ok"], 0, f"no request was answered after {e}")
            self.assertEqual(e["window"]["failed"], 0, e)
        # Each valid reload took effect: the origin switched, and the invalid one was refused.
        wait_until(lambda: proxy.stderr().count("info reloaded ") >= 4, 10,
                   what=f"4 reloads logged; stderr:\n{proxy.stderr()}")
        self.assertEqual(proxy.stderr().count("info reloaded "), 4, proxy.stderr())
        self.assertIn("reload refused", proxy.stderr())
        self.assertIn("the running config stays", proxy.stderr())
        self.assertGreater(first.requests, 0)
        self.assertGreater(second.requests, 0, "config b's origin never received a request")
        self.assertTrue(proxy.alive())
        self.assertEqual(admin_get(proxy.admin_address, "/readyz"), (200, b"ready\n"))

    # -- the load generator sees what a user would see

    def test_a_naive_restart_is_detected_as_failures(self):
        origin = self.start_origin()
        port = free_port()
        admin = admin_config()
        config = make_config(origin.url, UNUSED_CF, access_log="off",
                             listen=(f"127.0.0.1:{port}",), extra=admin)
        old = self.start_proxy(origin.url, UNUSED_CF, access_log="off",
                               listen=(f"127.0.0.1:{port}",), extra=admin)
        load = subprocess.Popen(
            [wkproxy_bin(), "loadtest", "--target", f"127.0.0.1:{port}", "--duration", "4s",
             "--timeout", "2s", "--event", f"1500ms:kill -TERM {old.pid}", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL)
        self.addCleanup(lambda: load.poll() is None and load.kill())
        # The restart: once the old process is gone, start a new one on the same port.
        wait_until(lambda: not old.alive(), 10, what="the old proxy to exit after SIGTERM")
        new = Proxy(config)
        self.addCleanup(new.stop)
        new.start()
        out, err = load.communicate(timeout=30)
        report = _report(out, err)

        self.assertEqual(load.returncode, 1, _summary(report))
        self.assertFalse(report["pass"])
        t = report["total"]
        self.assertGreater(t["connect_errors"] + t["resets"], 0, _summary(report))
        self.assertGreater(report["events"][0]["window"]["failed"], 0, _summary(report))
        self.assertGreater(t["ok"], 0, _summary(report))
        self.assertTrue(any(e["error"].startswith("connect:") for e in report["errors"]),
                        report["errors"])

    def test_failures_are_classified(self):
        backend = RecordingBackend("origin").start()
        self.addCleanup(backend.stop)
        target = f"127.0.0.1:{backend.port}"
        common = ["--duration", "600ms", "--keepalive", "1", "--fresh", "1"]
        with self.subTest("closed without an answer: reset, never retried"):
            rc, r, _ = run_loadtest("--target", target, "--path", "/close", *common)
            self.assertEqual(rc, 1)
            self.assertGreater(r["total"]["resets"], 0, _summary(r))
            self.assertEqual(r["total"]["resets"], r["total"]["sent"], _summary(r))
            self.assertEqual(r["total"]["retried"], 0, _summary(r))
        with self.subTest("an error status: non-2xx"):
            rc, r, _ = run_loadtest("--target", target, "--path", "/status/503", *common)
            self.assertEqual(rc, 1)
            self.assertEqual(r["total"]["non_2xx"], r["total"]["sent"], _summary(r))
            self.assertEqual(r["errors"][0]["error"], "status 503")
        with self.subTest("no answer in time: timeout"):
            rc, r, _ = run_loadtest("--target", target, "--path", "/stall/5", "--timeout",
                                    "300ms", *common)
            self.assertEqual(rc, 1)
            self.assertGreater(r["total"]["timeouts"], 0, _summary(r))
            self.assertEqual(r["total"]["timeouts"], r["total"]["sent"], _summary(r))
        with self.subTest("nothing listening: connect error"):
            rc, r, _ = run_loadtest("--target", f"127.0.0.1:{free_port()}", *common)
            self.assertEqual(rc, 1)
            self.assertGreater(r["total"]["connect_errors"], 0, _summary(r))
            self.assertEqual(r["total"]["connect_errors"], r["total"]["sent"], _summary(r))
        with self.subTest("bad arguments: exit 2"):
            p = subprocess.run([wkproxy_bin(), "loadtest", "--target", target, "--duration",
                                "1s", "--event", "2s:true"], capture_output=True, text=True,
                               timeout=10)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn("not within --duration", p.stderr)

    def test_connections_closed_between_requests_are_reconnected_not_failed(self):
        # Every connection is closed silently after 3 responses: the next request on it either
        # sees the close before sending (a reconnect) or races it (retried once, 0 bytes seen).
        origin = self.start_origin(close_after=3)
        rc, r, stderr = run_loadtest("--target", f"127.0.0.1:{origin.port}", "--duration",
                                     "1s", "--keepalive", "4", "--fresh", "1")
        self.assertNoFailures(rc, r, stderr)
        t = r["total"]
        self.assertGreater(t["reconnects"] + t["retried"], t["sent"] // 10, _summary(r))
        self.assertGreater(origin.connections, t["sent"] // 4, _summary(r))

    # -- binary upgrade

    def test_binary_upgrade_under_load_loses_no_request(self):
        origin = self.start_origin()
        proxy = self.start_proxy(origin.url, UNUSED_CF, access_log="off", extra=admin_config())
        old_pid = proxy.pid
        old_start = self.start_time(proxy)

        def stop_successors():
            for pid in pids_running(proxy.config_path):
                if pid != old_pid:
                    os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not [p for p in pids_running(proxy.config_path)
                                    if p != old_pid], 20, what="the upgraded wkproxy to stop")

        self.addCleanup(stop_successors)
        probes = AdminProbes(proxy.admin_address).start()
        self.addCleanup(probes.stop)
        rc, report, stderr = run_loadtest(
            "--target", f"127.0.0.1:{proxy.port}", "--duration", "6s", "--timeout", "5s",
            "--event", f"2s:kill -USR2 {old_pid}")
        probes.stop()

        self.assertNoFailures(rc, report, stderr)
        # The admin listener answered every probe across the upgrade: /healthz always 200,
        # /readyz 200 (or 503 from the old process on a connection it accepted just before it
        # handed over), never a refused or reset connection.
        self.assertGreater(len(probes.results), 50, probes.results[:5])
        self.assertEqual(probes.errors, [], proxy.stderr()[-3000:])
        self.assertEqual({r for p, r in probes.results if p == "/healthz"}, {(200, b"ok\n")})
        self.assertLessEqual({r for p, r in probes.results if p == "/readyz"},
                             {(200, b"ready\n"), (503, b"draining\n")})
        self.assertEqual(report["events"][0]["exit_code"], 0, report["events"][0])
        self.assertGreater(report["events"][0]["window"]["ok"], 0, _summary(report))
        # The old process hands over and exits; a new one serves the same port.
        wait_until(lambda: not proxy.alive(), 30, what="the old wkproxy to exit after SIGUSR2")
        self.assertEqual(proxy.proc.returncode, 0, proxy.stderr()[-2000:])
        successors = [p for p in pids_running(proxy.config_path) if p != old_pid]
        self.assertEqual(len(successors), 1, f"expected one upgraded process: {successors}")
        rc, report, stderr = run_loadtest("--target", f"127.0.0.1:{proxy.port}", "--duration",
                                          "500ms")
        self.assertNoFailures(rc, report, stderr)
        # The same admin address now reaches the new process.
        self.assertEqual(admin_get(proxy.admin_address, "/readyz"), (200, b"ready\n"))
        self.assertGreater(self.start_time(proxy), old_start)


if __name__ == "__main__":
    unittest.main()
