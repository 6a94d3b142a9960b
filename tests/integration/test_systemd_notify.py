"""Upgrades and reloads under systemd: the sd_notify messages (a test-owned datagram socket as
NOTIFY_SOCKET, the sender of each message read from SCM_CREDENTIALS), the pid file, and the
`wkproxy reload` / `wkproxy upgrade` commands, which wait for the outcome the process reports
(applied, refused, new process serving, failed upgrade) and never signal a pid that is not a
wkproxy.

Every proxy here runs with the admin listener on, on a fixed port, as deployed."""

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import unittest
import uuid

from wkharness import (pid_alive, ProxyTestCase, Proxy, admin_config, admin_get, make_config, request,
                       wait_until, wkproxy_bin)




def read_pid_file(path):
    with open(path) as f:
        text = f.read()
    assert text.endswith("\n") and text[:-1].isdigit(), repr(text)
    return int(text)


class NotifySocket:
    """systemd's side of NOTIFY_SOCKET: a datagram socket (abstract or a path) that records each
    message with the pid of its sender."""

    def __init__(self, abstract=True, directory=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if abstract:
            name = f"wkproxy-test-notify/{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.address = os.path.join(directory, "notify.sock")
            self.sock.bind(self.address)
        self.messages = []  # (sender pid, text)

    def _receive(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
        except (socket.timeout, BlockingIOError):
            return False
        pid = None
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("3i", payload[:struct.calcsize("3i")])[0]
        self.messages.append((pid, data.decode()))
        return True

    def wait_for(self, predicate, timeout=15.0, what="a notification"):
        """Receives until predicate(text) holds for a message received since the last call."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._receive(max(0.01, deadline - time.monotonic())) and \
                    predicate(self.messages[-1][1]):
                return self.messages[-1]
        raise AssertionError(f"no {what} within {timeout}s; got {self.messages!r}")

    def drain(self, quiet=0.3):
        while self._receive(quiet):
            pass
        return list(self.messages)

    def close(self):
        self.sock.close()


def fields(text):
    return dict(line.split("=", 1) for line in text.splitlines())


class SystemdTestCase(ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="wkproxy-sd-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.pid_file = os.path.join(self.tmp, "wkproxy.pid")
        self.admin_line = admin_config()
        self.origin = self.start_backend("origin")
        self.cf = self.start_backend("cloudfront")
        self.pids = set()
        self.addCleanup(self.kill_leftovers)

    def kill_leftovers(self):
        # Successors are not children of the test: whatever still runs is stopped here.
        for pid in self.pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)

    def config(self, origin=None, extra=""):
        return make_config(origin or self.origin.url, self.cf.url,
                           extra="\n".join(x for x in (self.admin_line,
                                                       f"pid_file: {self.pid_file}", extra) if x))

    def start(self, env=None, **kw) -> Proxy:
        p = Proxy(self.config(**kw), env=env)
        self.addCleanup(p.stop)
        p.start()
        self.pids.add(p.pid)
        return p

    def wkproxy(self, *args, timeout=90):
        return subprocess.run([wkproxy_bin(), *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def stop_pid(self, pid):
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not pid_alive(pid), 15, what=f"pid {pid} to stop")


class NotifyTest(SystemdTestCase):
    def test_ready_reload_upgrade_and_stop_in_order_from_the_right_process(self):
        n = NotifySocket()
        self.addCleanup(n.close)
        proxy = self.start(env={"NOTIFY_SOCKET": n.address})
        old = proxy.pid
        sender, text = n.wait_for(lambda t: "READY=1" in t, what="READY=1 at start")
        self.assertEqual(sender, old)
        self.assertEqual(fields(text)["MAINPID"], str(old))
        self.assertIn("STATUS", fields(text))
        self.assertEqual(read_pid_file(self.pid_file), old)

        os.kill(old, signal.SIGHUP)
        _, reloading = n.wait_for(lambda t: "RELOADING=1" in t, what="RELOADING=1")
        f = fields(reloading)
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.assertLessEqual(int(f["MONOTONIC_USEC"]), now_usec)
        self.assertGreater(int(f["MONOTONIC_USEC"]), now_usec - 15_000_000)
        n.wait_for(lambda t: "READY=1" in t, what="READY=1 after the reload")

        os.kill(old, signal.SIGUSR2)
        sender, text = n.wait_for(lambda t: "MAINPID" in t, what="MAINPID= of the successor")
        new = int(fields(text)["MAINPID"])
        self.pids.add(new)
        self.assertNotEqual(new, old)
        self.assertEqual(sender, old, "the old process names its successor")
        self.assertEqual(fields(text).get("READY"), "1")
        # Sent once the new process serves: it wrote its files before it said ready.
        self.assertEqual(read_pid_file(self.pid_file), new)
        with open(proxy.ports_file) as f:
            self.assertEqual(json.load(f)["pid"], new)
        self.assertEqual(request(proxy.port, "GET", "/after-upgrade").status, 200)
        proxy.proc.wait(timeout=15)
        self.assertEqual(proxy.proc.returncode, 0, proxy.stderr()[-2000:])

        # The successor is the main process now: reloads and the stop are its to announce.
        os.kill(new, signal.SIGHUP)
        n.wait_for(lambda t: "RELOADING=1" in t, what="RELOADING=1 from the successor")
        n.wait_for(lambda t: "READY=1" in t, what="READY=1 from the successor")
        os.kill(new, signal.SIGTERM)
        n.wait_for(lambda t: "STOPPING=1" in t, what="STOPPING=1 from the successor")
        wait_until(lambda: not pid_alive(new), 15, what="the successor to stop")
        got = [(("old" if p == old else "new" if p == new else p), t.splitlines()[0])
               for p, t in n.drain()]
        self.assertEqual(got, [("old", "READY=1"), ("old", "RELOADING=1"), ("old", "READY=1"),
                               ("old", f"MAINPID={new}"),
                               ("new", "RELOADING=1"), ("new", "READY=1"),
                               ("new", "STOPPING=1")])
        self.assertFalse(os.path.exists(self.pid_file), "the pid file outlived the process")

    def test_a_path_notify_socket_and_stopping_on_sigterm(self):
        n = NotifySocket(abstract=False, directory=self.tmp)
        self.addCleanup(n.close)
        proxy = self.start(env={"NOTIFY_SOCKET": n.address})
        n.wait_for(lambda t: t.startswith("READY=1"), what="READY=1")
        proxy.stop()
        self.assertEqual([t for _, t in n.drain()][-1], "STOPPING=1")


class PidFileTest(SystemdTestCase):
    def test_written_once_serving_and_removed_at_exit(self):
        proxy = self.start()
        self.assertEqual(read_pid_file(self.pid_file), proxy.pid)
        self.assertFalse(os.path.exists(self.pid_file + ".tmp"))
        proxy.stop()
        self.assertFalse(os.path.exists(self.pid_file))

    def test_a_pid_file_naming_another_process_is_left_alone_at_exit(self):
        proxy = self.start()
        with open(self.pid_file, "w") as f:
            f.write("4194000\n")
        proxy.stop()
        self.assertEqual(read_pid_file(self.pid_file), 4194000)

    def test_an_unwritable_pid_file_refuses_to_start(self):
        self.pid_file = os.path.join(self.tmp, "missing-dir", "wkproxy.pid")
        p = Proxy(self.config())
        self.addCleanup(p.stop, expect_exit=None)
        with self.assertRaises(AssertionError) as e:
            p.start()
        self.assertIn("pid_file", str(e.exception))


class UpgradeCommandTest(SystemdTestCase):
    def upgrade_once(self, proxy_port, before):
        r = self.wkproxy("upgrade", "--pid-file", self.pid_file)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        new = read_pid_file(self.pid_file)
        self.pids.add(new)
        self.assertNotEqual(new, before)
        self.assertTrue(pid_alive(new))
        self.assertIn(f"pid {new} serves", r.stdout)
        self.assertEqual(request(proxy_port, "GET", f"/served-by/{new}").status, 200)
        return new

    def test_upgrade_twice_in_a_row(self):
        n = NotifySocket()
        self.addCleanup(n.close)
        proxy = self.start(env={"NOTIFY_SOCKET": n.address})
        first = proxy.pid
        second = self.upgrade_once(proxy.port, first)
        proxy.proc.wait(timeout=15)
        self.assertEqual(proxy.proc.returncode, 0)
        # The successor of a successor: same command, same file.
        third = self.upgrade_once(proxy.port, second)
        wait_until(lambda: not pid_alive(second), 15, what="the second process to exit")
        self.assertEqual(admin_get(proxy.admin_address, "/readyz"), (200, b"ready\n"))
        self.stop_pid(third)
        hand_overs = [(p, t) for p, t in n.drain() if t.startswith("MAINPID")]
        self.assertEqual(hand_overs, [(first, f"MAINPID={second}\nREADY=1"),
                                      (second, f"MAINPID={third}\nREADY=1")])
        self.assertFalse(os.path.exists(self.pid_file))

    def test_a_failing_successor_fails_the_command_quickly_and_the_old_process_serves(self):
        proxy = self.start()
        old = proxy.pid
        with open(proxy.config_path, "a") as f:
            f.write("broken: [\n")  # the successor re-reads the config and cannot load it
        started = time.monotonic()
        r = self.wkproxy("upgrade", "--pid-file", self.pid_file, "--timeout", "60s")
        elapsed = time.monotonic() - started
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertLess(elapsed, 15, "the failure must be reported, not found by the timeout")
        self.assertIn("failed", r.stderr)
        self.assertIn("exited before it was ready", r.stderr)
        self.assertIn(f"pid {old} keeps serving", r.stderr)
        self.assertEqual(read_pid_file(self.pid_file), old)
        with open(proxy.ports_file) as f:
            self.assertEqual(json.load(f)["pid"], old)
        self.assertEqual(request(proxy.port, "GET", "/still-old").status, 200)
        self.assertTrue(proxy.alive())

    def test_upgrade_by_ports_file(self):
        proxy = self.start()
        r = self.wkproxy("upgrade", "--ports-file", proxy.ports_file)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(proxy.ports_file) as f:
            new = json.load(f)["pid"]
        self.pids.add(new)
        self.assertNotEqual(new, proxy.pid)
        proxy.proc.wait(timeout=15)
        self.assertEqual(request(proxy.port, "GET", "/new").status, 200)
        self.stop_pid(new)


class ReloadCommandTest(SystemdTestCase):
    def test_a_valid_change_is_applied_and_an_invalid_one_refused(self):
        other = self.start_backend("other-origin")
        proxy = self.start()
        with open(proxy.config_path, "w") as f:
            f.write(self.config(origin=other.url))
        r = self.wkproxy("reload", "-c", proxy.config_path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("applied", r.stdout)
        self.assertEqual(request(proxy.port, "GET", "/x").json()["backend"], "other-origin")

        with open(proxy.config_path, "w") as f:
            f.write(self.config(origin="ftp://nowhere"))
        r = self.wkproxy("reload", "--pid-file", self.pid_file)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("refused", r.stderr)
        self.assertIn("origin", r.stderr)  # the reason, as FILE:LINE:COLUMN: KEY: REASON
        self.assertIn(proxy.config_path, r.stderr)
        self.assertEqual(request(proxy.port, "GET", "/y").json()["backend"], "other-origin")
        self.assertTrue(proxy.alive())
        # -c checks the file itself first: nothing is sent for an invalid one.
        refusals = proxy.stderr().count("reload refused")
        r = self.wkproxy("reload", "-c", proxy.config_path)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("nothing sent", r.stderr)
        time.sleep(0.3)
        self.assertEqual(proxy.stderr().count("reload refused"), refusals)

    def test_pid_file_is_read_at_start_only(self):
        proxy = self.start()
        first = self.pid_file
        self.pid_file = os.path.join(self.tmp, "moved.pid")
        with open(proxy.config_path, "w") as f:
            f.write(self.config())
        r = self.wkproxy("reload", "--pid-file", first)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # Written before the outcome went to `reload`, but read from the proxy's stderr pipe by
        # the harness's own thread: it may not have been collected yet.
        wait_until(lambda: "pid_file is read at start only" in proxy.stderr(), 5,
                   what="the pid_file warning in the log")
        self.assertFalse(os.path.exists(self.pid_file))
        self.assertEqual(read_pid_file(first), proxy.pid)
        proxy.stop()
        self.assertFalse(os.path.exists(first))

    def test_reload_by_ports_file(self):
        proxy = self.start()
        r = self.wkproxy("reload", "--ports-file", proxy.ports_file)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


class StalePidFileTest(SystemdTestCase):
    def test_a_pid_that_is_not_wkproxy_is_never_signalled(self):
        sleeper = subprocess.Popen(["sleep", "60"])
        self.addCleanup(lambda: (sleeper.kill(), sleeper.wait()))
        with open(self.pid_file, "w") as f:
            f.write(f"{sleeper.pid}\n")
        for command in ("reload", "upgrade"):
            with self.subTest(command=command):
                r = self.wkproxy(command, "--pid-file", self.pid_file)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn(f"names pid {sleeper.pid}", r.stderr)
                self.assertIn("not wkproxy", r.stderr)
                self.assertIn("no signal sent", r.stderr)
        time.sleep(0.2)
        self.assertIsNone(sleeper.poll(), "sleep was signalled")  # SIGHUP would have killed it

    def test_a_pid_that_is_gone_or_a_missing_file(self):
        sleeper = subprocess.Popen(["sleep", "0"])
        sleeper.wait()
        with open(self.pid_file, "w") as f:
            f.write(f"{sleeper.pid}\n")
        r = self.wkproxy("reload", "--pid-file", self.pid_file)
        self.assertEqual(r.returncode, 1)
        self.assertIn("not running", r.stderr)
        r = self.wkproxy("upgrade", "--pid-file", os.path.join(self.tmp, "none.pid"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("none.pid", r.stderr)
        r = self.wkproxy("reload")
        self.assertEqual(r.returncode, 2)
        self.assertIn("which process", r.stderr)


if __name__ == "__main__":
    unittest.main()
