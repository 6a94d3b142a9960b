"""Reusing backend connections safely: what a backend sends on an idle pooled connection never
reaches a client, and a request is sent again on another connection only when that cannot
change its outcome (RFC 9110 section 9.2.2).

The backends here are scripted over raw sockets and record every byte they receive, so a
request that arrives twice, or a response nobody asked for, is seen as it happened.
"""

from __future__ import annotations

import socket
import threading
import time
import unittest

from wkharness import CF_SNI, ProxyTestCase, build_request

LOOPBACK = "127.0.0.1"


def read_request(sock: socket.socket, buf: bytearray):
    """Reads one request (head and Content-Length body) from `sock`; returns (head, body) or
    None at end of stream."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return None
        buf += data
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end])
    del buf[:end]
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(buf) < length:
        data = sock.recv(65536)
        if not data:
            return None
        buf += data
    body = bytes(buf[:length])
    del buf[:length]
    return head, body


class ScriptedBackend:
    """Accepts connections on loopback; `script(conn_no, request_no, head, body, sock)` answers
    each request and returns False to close the connection. Every request is recorded as
    (conn_no, request_no, head, body)."""

    def __init__(self, script, tls_context=None):
        self.script = script
        self.tls_context = tls_context
        self.requests: list[tuple[int, int, bytes, bytes]] = []
        self.lock = threading.Lock()
        self.conns = 0
        self.stopping = threading.Event()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((LOOPBACK, 0))
        self.listener.listen(64)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.socks: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    @property
    def url(self):
        return f"http://{LOOPBACK}:{self.port}"

    def _accept(self):
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            with self.lock:
                self.conns += 1
                n = self.conns
                self.socks.append(sock)
            t = threading.Thread(target=self._serve, args=(sock, n), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, sock, conn_no):
        buf = bytearray()
        try:
            if self.tls_context is not None:
                sock.settimeout(5)
                sock = self.tls_context.wrap_socket(sock, server_side=True)
                sock.settimeout(None)
            for request_no in range(1, 1000):
                got = read_request(sock, buf)
                if got is None:
                    return
                head, body = got
                with self.lock:
                    self.requests.append((conn_no, request_no, head, body))
                if not self.script(conn_no, request_no, head, body, sock):
                    return
        except OSError:
            return
        finally:
            sock.close()

    def targets(self):
        with self.lock:
            return [r[2].split(b" ")[1].decode() for r in self.requests]

    def stop(self):
        self.stopping.set()
        self.listener.close()
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self.threads:
            t.join(timeout=5)


def ok(sock, body: bytes, extra=b""):
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s"
                 % (len(body), extra, body))


def path_of(head: bytes) -> str:
    return head.split(b" ")[1].decode()


class RetryTest(ProxyTestCase):
    """A reused connection that the backend closes without answering."""

    def start(self, script):
        backend = ScriptedBackend(script)
        self.addCleanup(backend.stop)
        cf = self.start_backend("cloudfront", tls=True)
        proxy = self.start_proxy(backend.url, cf, workers=1)
        return backend, proxy

    def warm(self, proxy, n=3):
        """n pooled connections, each of which has answered one request: n GETs at once."""
        clients = [self.client(proxy) for _ in range(n)]
        for i, c in enumerate(clients):
            c.send(build_request("GET", f"/warm/{i}"))
        for c in clients:
            r = c.read_response()
            self.assertEqual(r.status, 200, r)

    @staticmethod
    def answer_first_only(conn_no, request_no, head, body, sock):
        if request_no == 1:
            if path_of(head).startswith("/warm/"):
                time.sleep(0.3)  # the warm-up requests overlap: one connection each
            ok(sock, b"first on this connection\n")
            return True
        return False  # read the request in full, then close without a byte

    def test_a_post_is_never_sent_twice(self):
        backend, proxy = self.start(self.answer_first_only)
        self.warm(proxy)
        self.assertEqual(backend.conns, 3)
        c = self.client(proxy)
        r = c.request("POST", "/charge-card", body=b"amount=1000",
                      headers=[("Content-Type", "application/x-www-form-urlencoded")])
        self.assertEqual(r.status, 502, r)
        self.assertEqual(backend.targets().count("/charge-card"), 1,
                         f"the POST reached the backend more than once: {backend.targets()}")

    def test_a_put_with_a_body_is_never_sent_twice(self):
        # Idempotent by method, but its body has been read by a backend that then failed: the
        # proxy does not resend bodies.
        backend, proxy = self.start(self.answer_first_only)
        self.warm(proxy)
        c = self.client(proxy)
        r = c.request("PUT", "/profile", body=b"name=x")
        self.assertEqual(r.status, 502, r)
        self.assertEqual(backend.targets().count("/profile"), 1, backend.targets())

    def test_a_bodyless_get_is_retried_on_a_fresh_connection(self):
        backend, proxy = self.start(self.answer_first_only)
        self.warm(proxy)
        c = self.client(proxy)
        r = c.request("GET", "/page")
        self.assertEqual((r.status, r.body), (200, b"first on this connection\n"), r)
        # Two pooled connections failed, then a new one answered.
        self.assertEqual(backend.targets().count("/page"), 3, backend.targets())
        self.assertEqual(backend.conns, 4)


class LateBytesTest(ProxyTestCase):
    """A backend out of step sends bytes on an idle pooled connection; the next request, from
    another client, must get its own answer."""

    ATTACK = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: session=attacker\r\n"
              b"Content-Length: 6\r\n\r\nPWNED!")

    def run_attack(self, first_method, first_path, first_answer, late):
        def script(conn_no, request_no, head, body, sock):
            if path_of(head) == first_path:
                sock.sendall(first_answer)
                time.sleep(0.03)
                sock.sendall(late)
                return True
            ok(sock, b"your own account page\n", b"X-For: %s\r\n" % path_of(head).encode())
            return True

        backend = ScriptedBackend(script)
        self.addCleanup(backend.stop)
        cf = self.start_backend("cloudfront", tls=True)
        proxy = self.start_proxy(backend.url, cf, workers=1)
        attacker = self.client(proxy)
        r = attacker.request(first_method, first_path)
        self.assertIn(r.status, (200, 304), r)
        time.sleep(0.15)  # the late bytes have arrived on the pooled connection
        victim = self.client(proxy)
        r = victim.request("GET", "/account", headers=[("Cookie", "session=victim")])
        self.assertEqual(r.status, 200, r)
        self.assertIsNone(r.header("set-cookie"), f"the victim got another response: {r}")
        self.assertEqual(r.body, b"your own account page\n", r)
        self.assertEqual(r.header("x-for"), "/account", r)
        self.assertEqual(backend.targets().count("/account"), 1)

    def test_a_body_after_a_head_answer_never_reaches_the_next_client(self):
        self.run_attack("HEAD", "/probe",
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 75\r\n\r\n",
                        self.ATTACK)

    def test_a_body_after_a_304_never_reaches_the_next_client(self):
        self.run_attack("GET", "/cached", b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
                        self.ATTACK)

    def test_an_overlong_body_tail_in_a_later_segment_never_reaches_the_next_client(self):
        self.run_attack("GET", "/short",
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
                        b"hello", self.ATTACK)


    def test_bytes_left_inside_the_tls_layer_never_reach_the_next_client(self):
        # The first answer and a forged second one travel in ONE TLS record, the first exactly
        # filling the proxy's first 512-byte read: the rest stays decrypted inside OpenSSL, where
        # a socket peek cannot see it.
        def script(conn_no, request_no, head, body, sock):
            name = path_of(head).rsplit("/", 1)[1]
            if name == "first.txt":
                start = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nX-Pad: "
                end = b"\r\n\r\nfirst"
                answer = start + b"p" * (512 - len(start) - len(end)) + end
                assert len(answer) == 512
                sock.sendall(answer + self.ATTACK)
                return True
            ok(sock, b"token for " + name.encode() + b"\n")
            return True

        cf = ScriptedBackend(script, tls_context=self.ca.server_context())
        self.addCleanup(cf.stop)
        origin = self.start_backend("origin")
        proxy = self.start_proxy(origin, {"url": f"https://localhost:{cf.port}", "sni": CF_SNI,
                                          "ca_file": self.ca.ca_pem}, workers=1)
        r = self.client(proxy).request("GET", "/.well-known/pki-validation/first.txt")
        self.assertEqual((r.status, r.body), (200, b"first"), r)
        time.sleep(0.1)
        r = self.client(proxy).request("GET", "/.well-known/pki-validation/second.txt")
        self.assertEqual((r.status, r.body), (200, b"token for second.txt\n"), r)
        self.assertIsNone(r.header("set-cookie"), r)


if __name__ == "__main__":
    unittest.main()
