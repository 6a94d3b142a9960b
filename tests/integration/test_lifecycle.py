"""Zero added downtime, piece by piece: SIGHUP reload (routes, listeners added and removed, an
invalid config refused), graceful stop (accept grace, in-flight requests finish with
Connection: close), SIGUSR2 binary upgrade with the listening sockets handed over, and systemd
socket activation."""

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

from wkharness import (LOOPBACK, ProxyTestCase, RawClient, build_request, free_port, make_config,
                       pattern_sha256, request, wait_until, wkproxy_bin)


def read_pid(proxy):
    with open(proxy.ports_file) as f:
        return json.load(f)["pid"]


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): look at its state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


class ReloadTest(ProxyTestCase):
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
        self.rewrite(proxy, make_config(other.url, self.cloudfront_upstream(cf)))
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
        self.rewrite(proxy, make_config(origin.url, self.cloudfront_upstream(cf),
                                        listen=(f"127.0.0.1:{a}", f"127.0.0.1:{b}")))
        wait_until(lambda: f"listening on 127.0.0.1:{b}" in proxy.stderr(), 5, what="listener b")
        self.assertEqual(request(b, "GET", "/on-b").status, 200)
        self.rewrite(proxy, make_config(origin.url, self.cloudfront_upstream(cf),
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


class GracefulStopTest(ProxyTestCase):
    def test_accept_grace_keeps_accepting_then_in_flight_finishes_with_connection_close(self):
        origin, cf, proxy = self.start_all(extra="shutdown: {accept_grace: 1s, drain_timeout: 10s}")
        busy = self.client(proxy, timeout=20)
        busy.send(build_request("GET", "/stall/2"))
        origin.wait_for_requests(1)
        t0 = time.monotonic()
        os.kill(proxy.pid, signal.SIGTERM)
        time.sleep(0.3)
        # Still accepting during the grace period.
        self.assertEqual(request(proxy.port, "GET", "/during-grace").status, 200)
        r = busy.read_response()
        self.assertEqual((r.status, (r.header("connection") or "").lower()), (200, "close"), r)
        proxy.proc.wait(timeout=15)
        self.assertEqual(proxy.proc.returncode, 0)
        self.assertGreaterEqual(time.monotonic() - t0, 1.0)
        self.assertIn("accepting for 1000 ms more", proxy.stderr())


class UpgradeTest(ProxyTestCase):
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


class SocketActivationTest(ProxyTestCase):
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
            f.write(make_config(origin.url, self.cloudfront_upstream(cf),
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


if __name__ == "__main__":
    unittest.main()
