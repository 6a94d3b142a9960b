"""Zero added downtime, piece by piece: SIGHUP reload (routes, listeners added and removed, an
invalid config refused), graceful stop (accept grace, in-flight requests finish with
Connection: close), SIGUSR2 binary upgrade with the listening sockets (the admin listener's too)
handed over, systemd socket activation, and the checks on inherited descriptors
(WKPROXY_LISTEN_FDS names the wrong socket, or no socket at all).

Every proxy here runs with the admin listener on, on a fixed port, as the container image and
the Kubernetes manifest configure it: a successor that bound the admin port again instead of
taking the socket over would fail with "Address already in use"."""

import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from wkharness import (read_pid, pid_alive, LOOPBACK, ProxyTestCase, RawClient, admin_config, admin_get,
                       build_request, free_port, make_config, metric_value, pattern_sha256,
                       request, wait_until, wkproxy_bin)






class AdminOnTestCase(ProxyTestCase):
    """Every proxy started by these tests has the admin listener on (one fixed port per test)."""

    def setUp(self):
        super().setUp()
        self.admin_line = admin_config()

    def with_admin(self, extra: str) -> str:
        return "\n".join(x for x in (self.admin_line, extra) if x)

    def config(self, origin, cloudfront, extra="", **cfg) -> str:
        return make_config(origin, cloudfront, extra=self.with_admin(extra), **cfg)

    def start_proxy(self, origin, cloudfront, extra="", **cfg):
        return super().start_proxy(origin, cloudfront, extra=self.with_admin(extra), **cfg)

    def start_time(self, proxy) -> float:
        """process_start_time_seconds of whichever process answers on the admin listener."""
        status, body = admin_get(proxy.admin_address, "/metrics")
        self.assertEqual(status, 200, body)
        return metric_value(body.decode(), "process_start_time_seconds")


class ReloadTest(AdminOnTestCase):
    def rewrite(self, proxy, text):
        with open(proxy.config_path, "w") as f:
            f.write(text)
        os.kill(proxy.pid, signal.SIGHUP)

    def test_changed_route_applies_to_new_requests_while_a_slow_download_finishes(self):
        origin = self.start_backend("origin")
        other = self.start_backend("other-origin")
        cf = self.start_backend("cloudfront", tls=True)
        proxy = self.start_proxy(origin, cf)
        c = self.client(proxy, timeout=30)
        size = 8 << 20
        c.send(build_request("GET", f"/bytes/{size}"))
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        head = c.reader.read_until(b"\r\n\r\n", 65536)
        self.assertIn(b"200", head.split(b"\r\n")[0])
        self.rewrite(proxy, self.config(other.url, self.cloudfront_upstream(cf)))
        wait_until(lambda: "reloaded" in proxy.stderr(), 5, what="the reload")
        r = request(proxy.port, "GET", "/after-reload")
        self.assertEqual(r.json()["backend"], "other-origin", r)
        # The download that started before the reload completes intact from the old origin.
        h = hashlib.sha256()
        for piece in c.reader.iter_exact(size):
            h.update(piece)
        self.assertEqual(h.hexdigest(), pattern_sha256(size))
        self.assertEqual([r.target for r in other.requests], ["/after-reload"])

    def test_invalid_reload_is_refused_and_the_old_config_keeps_serving(self):
        origin, cf, proxy = self.start_all()
        self.rewrite(proxy, "version: 1\nlisten: [nonsense]\n")
        wait_until(lambda: "reload refused" in proxy.stderr(), 5, what="the refusal")
        self.assertEqual(request(proxy.port, "GET", "/still").status, 200)
        proxy.stop()
        self.assertIn("failed; the running config stays", proxy.stderr())

    def test_listeners_are_added_and_removed_by_reload(self):
        origin = self.start_backend("origin")
        cf = self.start_backend("cloudfront", tls=True)
        a, b = free_port(), free_port()
        proxy = self.start_proxy(origin, cf, listen=(f"127.0.0.1:{a}",))
        held = RawClient(a)  # a keep-alive connection on the listener that will be removed
        self.addCleanup(held.close)
        self.assertEqual(held.request("GET", "/on-a").status, 200)
        self.rewrite(proxy, self.config(origin.url, self.cloudfront_upstream(cf),
                                        listen=(f"127.0.0.1:{a}", f"127.0.0.1:{b}")))
        wait_until(lambda: f"listening on 127.0.0.1:{b}" in proxy.stderr(), 5, what="listener b")
        self.assertEqual(request(b, "GET", "/on-b").status, 200)
        self.rewrite(proxy, self.config(origin.url, self.cloudfront_upstream(cf),
                                        listen=(f"127.0.0.1:{b}",)))
        wait_until(lambda: f"stopped listening on 127.0.0.1:{a}" in proxy.stderr(), 5,
                   what="listener a removed")

        def refused():
            try:
                socket.create_connection((LOOPBACK, a), timeout=1).close()
                return False
            except ConnectionRefusedError:
                return True
        wait_until(refused, 5, what="port a closed")
        # The connection accepted on the removed listener still works.
        self.assertEqual(held.request("GET", "/still-on-a").status, 200)
        self.assertEqual(request(b, "GET", "/on-b-again").status, 200)
        with open(proxy.ports_file) as f:
            self.assertEqual(json.load(f)["listen"], [f"127.0.0.1:{b}"])


class GracefulStopTest(AdminOnTestCase):
    def test_accept_grace_keeps_accepting_then_in_flight_finishes_with_connection_close(self):
        origin, cf, proxy = self.start_all(extra="shutdown: {accept_grace: 1s, drain_timeout: 10s}")
        busy = self.client(proxy, timeout=20)
        busy.send(build_request("GET", "/stall/2"))
        origin.wait_for_requests(1)
        t0 = time.monotonic()
        os.kill(proxy.pid, signal.SIGTERM)
        time.sleep(0.3)
        # Still accepting during the grace period, while /readyz says it is going away (load
        # balancers stop sending) and /healthz that it still runs.
        self.assertEqual(request(proxy.port, "GET", "/during-grace").status, 200)
        self.assertEqual(admin_get(proxy.admin_address, "/readyz"), (503, b"draining\n"))
        self.assertEqual(admin_get(proxy.admin_address, "/healthz"), (200, b"ok\n"))
        r = busy.read_response()
        self.assertEqual((r.status, (r.header("connection") or "").lower()), (200, "close"), r)
        proxy.proc.wait(timeout=15)
        self.assertEqual(proxy.proc.returncode, 0)
        self.assertGreaterEqual(time.monotonic() - t0, 1.0)
        self.assertIn("accepting for 1000 ms more", proxy.stderr())


class UpgradeTest(AdminOnTestCase):
    def test_sigusr2_hands_the_sockets_to_a_new_process_and_the_old_one_drains(self):
        origin, cf, proxy = self.start_all()
        old = read_pid(proxy)
        busy = self.client(proxy, timeout=20)
        busy.send(build_request("GET", "/stall/1.5"))
        origin.wait_for_requests(1)
        os.kill(old, signal.SIGUSR2)
        wait_until(lambda: read_pid(proxy) != old, 10, what="the new process")
        new = read_pid(proxy)
        self.addCleanup(lambda: pid_alive(new) and os.kill(new, signal.SIGKILL))
        # The old process finishes its in-flight request, then exits 0.
        r = busy.read_response()
        self.assertEqual(r.status, 200, r)
        proxy.proc.wait(timeout=15)
        self.assertEqual(proxy.proc.returncode, 0)
        # Same port, new process.
        for i in range(5):
            self.assertEqual(request(proxy.port, "GET", f"/after/{i}").status, 200)
        self.assertTrue(pid_alive(new))
        self.assertIn(f"upgrade: pid {new} serves", proxy.stderr())
        self.assertEqual(admin_get(proxy.admin_address, "/readyz"), (200, b"ready\n"))
        os.kill(new, signal.SIGTERM)
        wait_until(lambda: not pid_alive(new), 10, what="the new process to stop")

    def test_the_admin_listener_is_handed_over_and_new_probes_reach_the_new_process(self):
        origin, cf, proxy = self.start_all()
        admin = proxy.admin_address
        old = read_pid(proxy)
        old_start = self.start_time(proxy)
        self.assertEqual(admin_get(admin, "/readyz"), (200, b"ready\n"))
        # An in-flight request keeps the old process draining (alive) for 3 s after the hand-over.
        busy = self.client(proxy, timeout=20)
        busy.send(build_request("GET", "/stall/3"))
        origin.wait_for_requests(1)
        os.kill(old, signal.SIGUSR2)
        try:
            wait_until(lambda: "this process drains and exits" in proxy.stderr(), 10,
                       what="the hand-over")
        except AssertionError as e:
            raise AssertionError(f"{e}; stderr:\n{proxy.stderr()[-3000:]}") from None
        new = read_pid(proxy)
        self.assertNotEqual(new, old)
        self.addCleanup(lambda: pid_alive(new) and os.kill(new, signal.SIGKILL))
        # Both processes run, sharing the admin socket: the draining one no longer accepts on it,
        # so every new probe is answered by the new process (ready, and its own start time).
        for i in range(20):
            self.assertEqual(admin_get(admin, "/healthz"), (200, b"ok\n"), f"probe {i}")
            self.assertEqual(admin_get(admin, "/readyz"), (200, b"ready\n"), f"probe {i}")
            self.assertGreater(self.start_time(proxy), old_start, f"probe {i}")
        self.assertTrue(proxy.alive(), "the old process should still be draining")
        self.assertEqual(busy.read_response().status, 200)
        proxy.proc.wait(timeout=15)
        self.assertEqual(proxy.proc.returncode, 0, proxy.stderr()[-3000:])
        # After the old process is gone: the same admin address, the new process behind it.
        with open(proxy.ports_file) as f:
            ports = json.load(f)
        self.assertEqual(ports["admin"], f"{admin[0]}:{admin[1]}")
        self.assertEqual(admin_get(admin, "/readyz"), (200, b"ready\n"))
        self.assertGreater(self.start_time(proxy), old_start)
        self.assertEqual(request(proxy.port, "GET", "/after").status, 200)
        self.assertNotIn("Address already in use", proxy.stderr())
        os.kill(new, signal.SIGTERM)
        wait_until(lambda: not pid_alive(new), 10, what="the new process to stop")

    def test_listeners_with_the_same_address_text_keep_their_own_sockets(self):
        # Two "127.0.0.1:0" listeners (ports P and Q): the hand-over pairs them by order, so
        # after the upgrade the first still listens on P and the second on Q.
        origin, cf, proxy = self.start_all(listen=("127.0.0.1:0", "127.0.0.1:0"))
        old = read_pid(proxy)
        with open(proxy.ports_file) as f:
            before = json.load(f)["listen"]
        self.assertEqual(len(set(before)), 2, before)
        os.kill(old, signal.SIGUSR2)
        wait_until(lambda: read_pid(proxy) != old, 10, what="the new process")
        new = read_pid(proxy)
        self.addCleanup(lambda: pid_alive(new) and os.kill(new, signal.SIGKILL))
        proxy.proc.wait(timeout=15)
        with open(proxy.ports_file) as f:
            after = json.load(f)["listen"]
        self.assertEqual(after, before)
        for _, port in proxy.addresses:
            self.assertEqual(request(port, "GET", "/both").status, 200)
        os.kill(new, signal.SIGTERM)
        wait_until(lambda: not pid_alive(new), 10, what="the new process to stop")

    def test_a_successor_that_fails_leaves_the_old_process_serving(self):
        origin, cf, proxy = self.start_all()
        old = read_pid(proxy)
        with open(proxy.config_path, "a") as f:
            f.write("broken: [\n")  # the new process cannot load it
        os.kill(old, signal.SIGUSR2)
        wait_until(lambda: "upgrade failed" in proxy.stderr(), 10, what="the failure")
        self.assertIn("exited before it was ready", proxy.stderr())
        self.assertEqual(read_pid(proxy), old)
        self.assertEqual(request(proxy.port, "GET", "/still-old").status, 200)
        # The admin socket went to the failed successor too; the old process still serves it.
        self.assertEqual(admin_get(proxy.admin_address, "/readyz"), (200, b"ready\n"))


class SocketActivationTest(AdminOnTestCase):
    def test_listen_fds_from_systemd_are_used_without_binding(self):
        origin = self.start_backend("origin")
        cf = self.start_backend("cloudfront", tls=True)
        port = free_port()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
        sock.listen(128)
        self.addCleanup(sock.close)
        tmp = tempfile.mkdtemp(prefix="wk-sa-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cfg = os.path.join(tmp, "wkproxy.yaml")
        ports = os.path.join(tmp, "ports.json")
        with open(cfg, "w") as f:
            f.write(self.config(origin.url, self.cloudfront_upstream(cf),
                                listen=(f"127.0.0.1:{port}",)))
        fd = sock.fileno()
        script = (f"exec 3<&{fd} {fd}<&-; export LISTEN_PID=$$ LISTEN_FDS=1; "
                  f"exec {wkproxy_bin()} -c {cfg} --ports-file {ports}")
        p = subprocess.Popen(["sh", "-c", script], pass_fds=(fd,), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        wait_until(lambda: os.path.exists(ports), 10, what="the ports file")
        sock.close()  # only the proxy holds the socket now
        self.assertEqual(request(port, "GET", "/activated").status, 200)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=10)
        self.assertEqual(p.returncode, 0, err)
        self.assertNotIn("bind", err)

    def test_a_socket_from_systemd_on_the_admin_address_is_used_for_the_admin_listener(self):
        origin = self.start_backend("origin")
        cf = self.start_backend("cloudfront", tls=True)
        socks = []
        for _ in range(2):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((LOOPBACK, 0))
            s.listen(16)
            self.addCleanup(s.close)
            socks.append(s)
        port, admin_port = (s.getsockname()[1] for s in socks)
        tmp = tempfile.mkdtemp(prefix="wk-sa-admin-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cfg = os.path.join(tmp, "wkproxy.yaml")
        ports = os.path.join(tmp, "ports.json")
        with open(cfg, "w") as f:
            f.write(make_config(origin.url, self.cloudfront_upstream(cf),
                                listen=(f"127.0.0.1:{port}",), extra=admin_config(admin_port)))
        # Above 3 and 4 first, so moving them to 3 and 4 cannot clobber one with the other.
        a, b = (fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, 10) for s in socks)
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
        for s in socks:
            s.close()  # only the proxy holds them now: answering proves they were taken over
        self.assertEqual(request(port, "GET", "/activated").status, 200)
        self.assertEqual(admin_get((LOOPBACK, admin_port), "/readyz"), (200, b"ready\n"))
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=10)
        self.assertEqual(p.returncode, 0, err)
        self.assertNotIn("bind", err)


class InheritedDescriptorTest(AdminOnTestCase):
    """WKPROXY_LISTEN_FDS ("ADDRESS=FD;...", "admin@ADDRESS=FD" for the admin listener) is
    checked, not trusted: a descriptor that is a listening TCP socket bound elsewhere than its
    listener's address is refused before anything is served (the upgrading parent would keep
    serving), and an entry naming anything but a listening TCP socket is ignored with a warning
    and left open: it is not ours to close."""

    def spawn(self, config_text, listen_fds, pass_fds):
        tmp = tempfile.mkdtemp(prefix="wk-inherit-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cfg = os.path.join(tmp, "wkproxy.yaml")
        ports = os.path.join(tmp, "ports.json")
        with open(cfg, "w") as f:
            f.write(config_text)
        env = dict(os.environ, WKPROXY_LISTEN_FDS=listen_fds)
        p = subprocess.Popen([wkproxy_bin(), "-c", cfg, "--ports-file", ports],
                             pass_fds=pass_fds, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

        def reap():
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
            p.stderr.close()
        self.addCleanup(reap)
        return p, ports

    def listening_socket(self, host, port=0):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(16)
        self.addCleanup(s.close)
        return s

    def assertRefused(self, p, ports, *expected):
        try:
            _, err = p.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate(timeout=10)
            self.fail(f"wkproxy kept running on a mismatched inherited socket; stderr:\n{err}")
        self.assertNotEqual(p.returncode, 0, err)
        self.assertFalse(os.path.exists(ports), "it announced readiness before refusing")
        for text in expected:
            self.assertIn(text, err)
        return err

    def test_a_socket_bound_to_another_address_or_port_is_refused(self):
        origin, cf = self.start_backend("origin"), self.start_backend("cloudfront", tls=True)
        upstream = self.cloudfront_upstream(cf)
        with self.subTest("another address (127.0.0.2) for a 127.0.0.1 listener"):
            other = self.listening_socket("127.0.0.2")
            port = other.getsockname()[1]
            fd = other.fileno()
            p, ports = self.spawn(self.config(origin.url, upstream, listen=(f"127.0.0.1:{port}",)),
                                  f"127.0.0.1:{port}={fd}", (fd,))
            self.assertRefused(p, ports, f"listen: 127.0.0.1:{port}", f"descriptor {fd}",
                               f"127.0.0.2:{port}")
        with self.subTest("another port"):
            other = self.listening_socket(LOOPBACK)
            theirs, ours = other.getsockname()[1], free_port()
            fd = other.fileno()
            p, ports = self.spawn(self.config(origin.url, upstream, listen=(f"127.0.0.1:{ours}",)),
                                  f"127.0.0.1:{ours}={fd}", (fd,))
            self.assertRefused(p, ports, f"listen: 127.0.0.1:{ours}", f"descriptor {fd}",
                               f"127.0.0.1:{theirs}")
        with self.subTest("the admin listener's entry"):
            other = self.listening_socket(LOOPBACK)
            theirs, ours = other.getsockname()[1], free_port()
            fd = other.fileno()
            text = make_config(origin.url, upstream, extra=admin_config(ours))
            p, ports = self.spawn(text, f"admin@127.0.0.1:{ours}={fd}", (fd,))
            self.assertRefused(p, ports, f"admin.listen: 127.0.0.1:{ours}", f"descriptor {fd}",
                               f"127.0.0.1:{theirs}")

    def assertStillOpen(self, pid, fd, path):
        want = os.stat(path)
        try:
            got = os.stat(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            self.fail(f"wkproxy closed descriptor {fd} ({path}), which it was never given to own")
        self.assertEqual((got.st_dev, got.st_ino), (want.st_dev, want.st_ino))

    def run_with_file_entries(self, entries):
        """Starts wkproxy with WKPROXY_LISTEN_FDS naming a regular file's descriptor under each
        of `entries` (keys); returns (process, ports file, [(fd, path)])."""
        origin, cf = self.start_backend("origin"), self.start_backend("cloudfront", tls=True)
        tmp = tempfile.mkdtemp(prefix="wk-inherit-files-")
        self.addCleanup(shutil.rmtree, tmp, True)
        files = []
        for i, _ in enumerate(entries):
            path = os.path.join(tmp, f"file{i}")
            f = open(path, "w")
            self.addCleanup(f.close)
            files.append((f.fileno(), path))
        listen_fds = ";".join(f"{key}={fd}" for key, (fd, _) in zip(entries, files))
        p, ports = self.spawn(self.config(origin.url, self.cloudfront_upstream(cf)), listen_fds,
                              tuple(fd for fd, _ in files))
        try:
            wait_until(lambda: os.path.exists(ports) or p.poll() is not None, 15,
                       what="the ports file")
        except AssertionError:
            p.kill()
        if p.poll() is not None:
            self.fail(f"wkproxy exited with {p.returncode}: {p.communicate(timeout=10)[1]}")
        with open(ports) as f:
            port = int(json.load(f)["listen"][0].rsplit(":", 1)[1])
        self.assertEqual(request(port, "GET", "/serving").status, 200)
        return p, files

    def stop_cleanly(self, p):
        p.terminate()
        _, err = p.communicate(timeout=15)
        self.assertEqual(p.returncode, 0, err)
        return err

    def test_an_entry_for_a_listener_naming_a_file_is_ignored_and_left_open(self):
        p, [(fd, path)] = self.run_with_file_entries(["127.0.0.1:0"])
        self.assertStillOpen(p.pid, fd, path)
        err = self.stop_cleanly(p)
        self.assertIn(f"descriptor {fd}", err)
        self.assertIn("not a listening TCP socket", err)

    def test_an_unused_entry_naming_a_file_is_not_closed(self):
        # No listener has this address: the entry is left over, and only sockets verified as
        # inherited listeners are closed as "unused".
        p, [(fd, path)] = self.run_with_file_entries(["127.0.0.1:1"])
        self.assertStillOpen(p.pid, fd, path)
        err = self.stop_cleanly(p)
        self.assertIn(f"descriptor {fd}", err)


if __name__ == "__main__":
    unittest.main()
