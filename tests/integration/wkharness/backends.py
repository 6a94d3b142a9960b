"""Backends the proxy talks to: the recording origin / CloudFront stand-in, a byte-counting
variant with canned raw answers, a scripted `wkproxy check` target, and a light load-test
origin."""

from __future__ import annotations

import hashlib
import http
import json
import re
import socket
import ssl
import struct
import threading
import time
import urllib.parse

from .common import LOOPBACK, VALIDATION_PREFIX, wait_until
from .payload import pattern_chunks
from .wire import (Headers, PeerClosed, ProtocolError, SocketReader, _body_framing, _parse_head,
                   _sendall, _Stopping, read_proxy_header)


class RecordedRequest:
    """One request as a backend received it."""

    def __init__(self, **kw):
        self.backend = kw["backend"]
        self.conn_id = kw["conn_id"]
        self.sni = kw.get("sni")
        self.peer = kw.get("peer")
        self.method = kw["method"]
        self.target = kw["target"]
        self.version = kw["version"]
        self.headers = Headers(kw["headers"])
        self.raw_head = kw["raw_head"]
        self.framing = kw.get("framing", "none")
        self.body_length = 0
        self.body_sha256 = hashlib.sha256(b"").hexdigest()
        self.body = b""  # kept only when small (<= 1 MiB)
        self.trailers = Headers()
        self.complete = False  # the whole body arrived
        self.proxy = kw.get("proxy")  # the connection's PROXY header (read_proxy_header), if any

    @property
    def path(self):
        return urllib.parse.urlsplit(self.target).path if "://" in self.target else \
            self.target.split("?", 1)[0]

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def __repr__(self):
        return (f"<{self.backend} conn={self.conn_id} {self.method} {self.target} {self.version} "
                f"headers={list(self.headers)} body={self.body_length}>")


class RecordingBackend:
    """A threaded HTTP/1.1 server on 127.0.0.1:0 written over raw sockets so that it sees
    exactly what arrived. Keep-alive and pipelining are supported; every request is recorded.

    Endpoints (by path):
      /bytes/N          N deterministic bytes (pattern_bytes), Content-Length
      /chunked/N        the same N bytes with Transfer-Encoding: chunked
      /stall/SECONDS    sleep, then answer 200
      /upload           consume the body, answer JSON {"sha256", "length", "framing"}
      ?read_delay=S     (any path) wait S seconds before reading the request body
      /status/CODE      answer CODE (no body for 1xx/204/304)
      /close            close the connection without answering
      /garbage          answer bytes that are not HTTP, then close
      /bad-framing      answer with two different Content-Length values, then close
      /close-after      answer 200 with Connection: close, then close
      /.well-known/pki-validation/F   on a backend that serves tokens (the "cloudfront" one):
                        200 "token-body-for-F"
      anything else     200 JSON echo of what was received, header X-Backend: <name>
    Every response carries X-Backend: <name>.
    """

    def __init__(self, name="origin", tls_context: ssl.SSLContext | None = None,
                 serve_tokens: bool | None = None, idle_timeout: float | None = None,
                 expect_proxy: bool = False):
        self.name = name
        self.expect_proxy = expect_proxy  # every connection starts with a PROXY v1/v2 header
        self.tls_context = tls_context
        self.serve_tokens = (name == "cloudfront") if serve_tokens is None else serve_tokens
        self.idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._errors: list[str] = []
        self._conn_count = 0
        self._open: dict[int, socket.socket] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._sni_by_sock: dict[int, str] = {}
        self._listener = None
        self.port = None
        self.proxy_headers: list[dict] = []  # one per connection when expect_proxy

    # -- lifecycle
    def start(self):
        if self.tls_context is not None:
            self.tls_context.sni_callback = self._on_sni
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(128)
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, name=f"{self.name}-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            socks = list(self._open.values())
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in list(self._threads):
            t.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        return f"{'https' if self.tls_context else 'http'}://127.0.0.1:{self.port}"

    # -- observations
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return self._conn_count

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)

    @property
    def errors(self) -> list[str]:
        """Protocol errors seen in what the proxy sent (malformed framing etc.)."""
        with self._lock:
            return list(self._errors)

    def wait_for_requests(self, n, timeout=10.0):
        return wait_until(lambda: len(self.requests) >= n and self.requests, timeout,
                          what=f"{n} request(s) at backend {self.name}")

    def reset(self):
        with self._lock:
            self._requests.clear()
            self._errors.clear()
            self._conn_count = 0

    # -- server
    def _on_sni(self, sslobj, server_name, ctx):
        with self._lock:
            self._sni_by_sock[id(sslobj)] = server_name
        return None

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                sock, peer = self._listener.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            with self._lock:
                self._conn_count += 1
                conn_id = self._conn_count
                self._open[conn_id] = sock
            t = threading.Thread(target=self._serve_connection, args=(sock, peer, conn_id),
                                 name=f"{self.name}-conn{conn_id}", daemon=True)
            self._threads.append(t)
            t.start()

    def _serve_connection(self, sock, peer, conn_id):
        sni = None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            proxy_header = None
            if self.expect_proxy:
                sock.settimeout(5)
                try:
                    proxy_header = read_proxy_header(sock)
                except (ProtocolError, OSError) as e:
                    with self._lock:
                        self._errors.append(f"conn {conn_id}: PROXY header: {e}")
                    return
                with self._lock:
                    self.proxy_headers.append(proxy_header)
                peer = (proxy_header["src"], proxy_header["src_port"])
            if self.tls_context is not None:
                sock.settimeout(5)
                try:
                    tls = self.tls_context.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    with self._lock:
                        self._errors.append(f"conn {conn_id}: TLS handshake failed: {e}")
                    return
                with self._lock:
                    sni = self._sni_by_sock.pop(id(tls), None)
                    self._open[conn_id] = tls
                sock = tls
            sock.settimeout(0.1)
            idle_since = [time.monotonic()]

            def keep_going():
                if self._stopping.is_set():
                    raise _Stopping()
                if (self.idle_timeout is not None and not reader.buf
                        and time.monotonic() - idle_since[0] > self.idle_timeout):
                    raise _Stopping()
                return True

            reader = SocketReader(sock, keep_going)
            while True:
                idle_since[0] = time.monotonic()
                try:
                    if reader.at_eof():
                        return
                except _Stopping:
                    return
                keep_alive = self._serve_one(sock, reader, conn_id, sni, peer, proxy_header)
                if not keep_alive:
                    return
        except (_Stopping, PeerClosed, ConnectionError, ssl.SSLError, OSError):
            return
        except ProtocolError as e:
            with self._lock:
                self._errors.append(f"conn {conn_id}: {e}")
        finally:
            with self._lock:
                self._open.pop(conn_id, None)
            try:
                sock.close()
            except OSError:
                pass

    def _serve_one(self, sock, reader, conn_id, sni, peer, proxy_header=None) -> bool:
        head = reader.read_until(b"\r\n\r\n", 1 << 20)
        start, fields = _parse_head(head)
        parts = start.split(b" ")
        if len(parts) != 3 or not re.fullmatch(rb"HTTP/1\.[01]", parts[2]):
            raise ProtocolError(f"bad request line {start!r}")
        method, target, version = (p.decode("latin-1") for p in parts)
        headers = Headers(fields)
        framing, length = _body_framing(headers)
        rec = RecordedRequest(backend=self.name, conn_id=conn_id, sni=sni, peer=peer,
                              method=method, target=target, version=version, headers=fields,
                              raw_head=head, framing=framing, proxy=proxy_header)
        path = rec.path
        if headers.get("expect", "").lower() == "100-continue":
            _sendall(sock, b"HTTP/1.1 100 Continue\r\n\r\n")
        # Record before reading the body so a test can see a request whose body never finishes.
        with self._lock:
            self._requests.append(rec)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
        m = re.fullmatch(r"/early/(\d{3})", path)
        if m:
            # Answers after reading `after` body bytes, then closes with the rest unread (the
            # kernel resets the connection), as a server refusing an upload halfway does.
            after = int(query.get("after", ["0"])[0])
            rec.body_length = sum(len(piece) for piece in reader.iter_exact(after))
            body = b"refused early\n"
            self._send(sock, int(m.group(1)), "Early", [("Content-Type", "text/plain"),
                                                       ("Content-Length", str(len(body)))],
                       body, keep_alive=False)
            return False
        delay = query.get("read_delay")
        if delay:  # hold the body unread for a while: the proxy must apply backpressure
            self._sleep(float(delay[0]))
        h = hashlib.sha256()
        small = bytearray()
        total = 0
        if framing == "chunked":
            pieces = reader.iter_chunked(rec.trailers)
        elif framing == "length":
            pieces = reader.iter_exact(length)
        else:
            pieces = iter(())
        for piece in pieces:
            h.update(piece)
            total += len(piece)
            if total <= (1 << 20):
                small += piece
            rec.body_length = total  # progress is visible while the body streams
        rec.body_sha256 = h.hexdigest()
        rec.body = bytes(small) if total <= (1 << 20) else None
        rec.complete = True

        conn_tokens = {t.strip().lower() for v in headers.get_all("connection")
                       for t in v.split(",")}
        keep_alive = ("close" not in conn_tokens) and (
            version == "HTTP/1.1" or "keep-alive" in conn_tokens)
        return self._respond(sock, rec, path, keep_alive)

    def _send(self, sock, status, reason, headers, body=b"", *, head_only=False, keep_alive=True):
        lines = [f"HTTP/1.1 {status} {reason}", f"X-Backend: {self.name}"]
        lines += [f"{n}: {v}" for n, v in headers]
        if not keep_alive:
            lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if not head_only:
            data += body
        _sendall(sock, data)

    def _sleep(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._stopping.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
                raise _Stopping()

    def _respond(self, sock, rec, path, keep_alive) -> bool:
        head_only = rec.method == "HEAD"
        segs = path.split("/")
        m = re.fullmatch(r"/(bytes|chunked)/(\d+)", path)
        if m:
            n = int(m.group(2))
            if m.group(1) == "bytes":
                self._send(sock, 200, "OK", [("Content-Type", "application/octet-stream"),
                                             ("Content-Length", str(n))],
                           head_only=True, keep_alive=keep_alive)
                if not head_only:
                    for piece in pattern_chunks(n):
                        _sendall(sock, piece)
            else:
                self._send(sock, 200, "OK", [("Content-Type", "application/octet-stream"),
                                             ("Transfer-Encoding", "chunked")],
                           head_only=True, keep_alive=keep_alive)
                if not head_only:
                    sizes = [1, 100, 8192, 65536, 3, 30000]
                    i = 0
                    for big in pattern_chunks(n):
                        while big:
                            piece, big = big[:sizes[i % len(sizes)]], big[sizes[i % len(sizes)]:]
                            i += 1
                            _sendall(sock, b"%x\r\n" % len(piece) + piece + b"\r\n")
                    _sendall(sock, b"0\r\n\r\n")
            return keep_alive
        m = re.fullmatch(r"/stall/(\d+(?:\.\d+)?)", path)
        if m:
            self._sleep(float(m.group(1)))
            body = b"stalled\n"
            self._send(sock, 200, "OK", [("Content-Type", "text/plain"),
                                         ("Content-Length", str(len(body)))], body,
                       head_only=head_only, keep_alive=keep_alive)
            return keep_alive
        if path == "/upload":
            body = json.dumps({"sha256": rec.body_sha256, "length": rec.body_length,
                               "framing": rec.framing}).encode()
            self._send(sock, 200, "OK", [("Content-Type", "application/json"),
                                         ("Content-Length", str(len(body)))], body,
                       head_only=head_only, keep_alive=keep_alive)
            return keep_alive
        m = re.fullmatch(r"/status/(\d{3})", path)
        if m:
            code = int(m.group(1))
            if code in (204, 304) or 100 <= code < 200:
                self._send(sock, code, "Status", [], head_only=True, keep_alive=keep_alive)
            else:
                body = f"status {code}\n".encode()
                self._send(sock, code, "Status", [("Content-Type", "text/plain"),
                                                  ("Content-Length", str(len(body)))], body,
                           head_only=head_only, keep_alive=keep_alive)
            return keep_alive
        if path == "/trailers":
            # A chunked body with trailer fields, safe and unsafe.
            self._send(sock, 200, "OK", [("Content-Type", "text/plain"),
                                         ("Transfer-Encoding", "chunked")],
                       head_only=True, keep_alive=keep_alive)
            if not head_only:
                _sendall(sock, b"5\r\nhello\r\n0\r\nServer-Timing: db;dur=53\r\n"
                               b"X-Checksum: 5d41402a\r\nSet-Cookie: evil=1\r\n"
                               b"Cache-Control: no-store\r\n\r\n")
            return keep_alive
        if path == "/close":
            return False
        if path == "/overlong":
            # More bytes than Content-Length says: a backend out of step with its framing.
            _sendall(sock, b"HTTP/1.1 200 OK\r\nX-Backend: origin\r\nContent-Length: 5\r\n\r\n"
                           b"helloEXTRA")
            return keep_alive
        if path == "/garbage":
            _sendall(sock, b"THIS IS NOT HTTP AT ALL\r\n\r\n")
            return False
        if path == "/bad-framing":
            _sendall(sock, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n"
                         b"hello!!")
            return False
        if path == "/close-after":
            body = b"closing\n"
            self._send(sock, 200, "OK", [("Content-Type", "text/plain"),
                                         ("Content-Length", str(len(body)))], body,
                       head_only=head_only, keep_alive=False)
            return False
        if self.serve_tokens and path.startswith(VALIDATION_PREFIX) and len(segs) == 4:
            body = f"token-body-for-{segs[3]}".encode()
            self._send(sock, 200, "OK", [("Content-Type", "text/plain"),
                                         ("Content-Length", str(len(body)))], body,
                       head_only=head_only, keep_alive=keep_alive)
            return keep_alive
        echo = {"backend": self.name, "method": rec.method, "target": rec.target,
                "version": rec.version, "headers": list(rec.headers), "conn_id": rec.conn_id,
                "sni": rec.sni, "body_length": rec.body_length, "body_sha256": rec.body_sha256}
        body = json.dumps(echo).encode()
        self._send(sock, 200, "OK", [("Content-Type", "application/json"),
                                     ("Content-Length", str(len(body)))], body,
                   head_only=head_only, keep_alive=keep_alive)
        return keep_alive


# ------------------------------------------------------------------------------------------------
# Differential tests: a backend that also counts the raw bytes it received and can
# answer canned raw responses.


class _CountingSocket:
    """Wraps a plain socket; every byte recv() returns is reported to `on_bytes`."""

    def __init__(self, sock, on_bytes):
        self._sock = sock
        self._on_bytes = on_bytes

    def recv(self, n, *flags):
        data = self._sock.recv(n, *flags)
        if data:
            self._on_bytes(data)
        return data

    def __getattr__(self, name):
        return getattr(self._sock, name)


class RawRecordingBackend(RecordingBackend):
    """A RecordingBackend (plain TCP only) that also counts every byte received on every
    connection (`bytes_received`; `received` keeps the first MiB, for strict re-parsing) and
    serves canned raw responses:

      /raw/NAME     send raw_responses[NAME] exactly as given, then close the connection

    `reset()` clears the byte counters as well as the records."""

    RAW_KEEP = 1 << 20

    def __init__(self, name="origin", raw_responses=None, **kw):
        super().__init__(name, **kw)
        self.raw_responses: dict[str, bytes] = dict(raw_responses or {})
        self._bytes_received = 0
        self._received = bytearray()

    def _note_bytes(self, data: bytes):
        with self._lock:
            self._bytes_received += len(data)
            if len(self._received) < self.RAW_KEEP:
                self._received += data[:self.RAW_KEEP - len(self._received)]

    @property
    def bytes_received(self) -> int:
        with self._lock:
            return self._bytes_received

    @property
    def received(self) -> bytes:
        """The first bytes received since the last reset (all connections, arrival order)."""
        with self._lock:
            return bytes(self._received)

    def reset(self):
        super().reset()
        with self._lock:
            self._bytes_received = 0
            self._received.clear()

    def _serve_connection(self, sock, peer, conn_id):
        if self.tls_context is None:
            sock = _CountingSocket(sock, self._note_bytes)
        return super()._serve_connection(sock, peer, conn_id)

    def _respond(self, sock, rec, path, keep_alive) -> bool:
        if path.startswith("/raw/"):
            data = self.raw_responses.get(path[len("/raw/"):])
            if data is None:
                data = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            _sendall(sock, data)
            return False
        return super()._respond(sock, rec, path, keep_alive)


# ------------------------------------------------------------------------------------------------
# `wkproxy check`: one stand-in for both CloudFront and the ACM validation host, with
# scripted answers (421, redirects, loops) for chosen paths.

ACM_ACCOUNT = "123456789012"


class ValidationBackend(RecordingBackend):
    """A RecordingBackend (plain or TLS) that serves token files both where CloudFront does
    (/.well-known/pki-validation/F) and where ACM's RedirectTo points
    (/<account>/.well-known/pki-validation/F), each with "token-body-for-F".

    `script` maps a path to a canned answer (status, [(name, value), ...], body) or to a
    callable(backend, rec) returning one, or None for the usual answer. Content-Length is added
    unless given. Example: {"/.well-known/pki-validation/x.txt": (421, [], b"misdirected\\n")}."""

    def __init__(self, name="cloudfront", script=None, **kw):
        kw.setdefault("serve_tokens", True)
        super().__init__(name, **kw)
        self.script = dict(script or {})

    def redirect_to(self, file, host="localhost"):
        """The RedirectTo URL of `file` on this backend (https when it has TLS)."""
        scheme = "https" if self.tls_context is not None else "http"
        return f"{scheme}://{host}:{self.port}/{ACM_ACCOUNT}{VALIDATION_PREFIX}{file}"

    def _respond(self, sock, rec, path, keep_alive) -> bool:
        answer = self.script.get(path)
        if callable(answer):
            answer = answer(self, rec)
        if answer is None:
            m = re.fullmatch(r"/[^/]+(" + re.escape(VALIDATION_PREFIX) + r"[^/]+)", path)
            if m and self.serve_tokens:
                path = m.group(1)
            return super()._respond(sock, rec, path, keep_alive)
        status, headers, body = answer
        headers = list(headers)
        if not any(n.lower() == "content-length" for n, _ in headers):
            headers.append(("Content-Length", str(len(body))))
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Status"
        self._send(sock, status, reason, headers, body, head_only=rec.method == "HEAD",
                   keep_alive=keep_alive)
        return keep_alive


# ------------------------------------------------------------------------------------------------
# Zero-downtime: an origin light enough to sit behind a load test.


class _ThreadedOrigin:
    """What LightOrigin and FaultOrigin share: a listener on 127.0.0.1:0, one thread per
    connection running self._serve(sock), and a stop that shuts every open connection.
    Subclasses set self.name and call _init_server() in __init__, and count connections in
    _count_connection()."""

    def _init_server(self):
        self._lock = threading.Lock()
        self._open: set = set()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._listener = None
        self.port = None

    def start(self):
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(1024)
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, name=f"{self.name}-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            socks = list(self._open)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in list(self._threads):
            t.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _count_connection(self):  # called with the lock held
        raise NotImplementedError

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            with self._lock:
                self._count_connection()
                self._open.add(sock)
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True,
                                 name=f"{self.name}-conn")
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
            t.start()


class LightOrigin(_ThreadedOrigin):
    """A threaded HTTP/1.1 origin on 127.0.0.1:0 that records nothing: every request (bodies
    are not expected) gets 200 with a small fixed body, keep-alive unless the request says
    Connection: close. Cheap enough per request that the proxy, not the origin, is what a load
    test measures. `requests` counts what it answered; `connections` what it accepted.
    close_after=N closes each connection silently (no Connection: close) after N responses, as a
    server's idle or max-requests close does."""

    BODY = b"hello from the light origin\n"

    def __init__(self, name="origin", close_after: int | None = None):
        self.name = name
        self.close_after = close_after
        self._response = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend: "
                          + name.encode() + b"\r\nContent-Length: "
                          + str(len(self.BODY)).encode() + b"\r\n\r\n" + self.BODY)
        self._close_response = self._response.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n",
                                                      1)
        self._init_server()
        self._requests = 0
        self._connections = 0

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    def _count_connection(self):
        self._connections += 1

    def _serve(self, sock):
        buf = b""
        answered = 0
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(0.2)
            while not self._stopping.is_set():
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > 65536:
                        return
                    try:
                        data = sock.recv(65536)
                    except (socket.timeout, TimeoutError):
                        continue
                    if not data:
                        return
                    buf += data
                    continue
                head, buf = buf[:end].lower(), buf[end + 4:]
                close = b"connection: close" in head or head.endswith(b"http/1.0")
                with self._lock:
                    self._requests += 1
                sock.sendall(self._close_response if close else self._response)
                answered += 1
                if close or (self.close_after is not None and answered >= self.close_after):
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._open.discard(sock)
            try:
                sock.close()
            except OSError:
                pass


class FaultOrigin(_ThreadedOrigin):
    """A threaded keep-alive HTTP/1.1 server on 127.0.0.1:0 for load under faults (records
    nothing per request beyond counters). Every answer echoes the request's `id_header` (the id
    `wkproxy loadtest --request-id` sends; without that field, the stem of the target's last
    path segment, for `--path /.well-known/pki-validation/{id}.txt`) in that header and in its
    body, so a response given to the wrong request is visible. Faults are chosen by path:

      /reset/N         every Nth request on a /reset path (counted over the whole server; N=1:
                       all) is cut by an RST (SO_LINGER 0 close): alternately after part of
                       its head, and after its head and 2 KiB of a 16 KiB body; the others are
                       answered normally
      /trickle/MS/N    the 200 head at once, then the body 8 bytes at a time every MS ms, N times
      /twice           the answer, then the same answer again (one request answered twice)
      /stale           200 echoing the previous id this connection received (a wrong answer,
                       for checking that loadtest sees one)
      anything else    200 at once, a short body

    Counters: requests, resets, trickles, and `duplicate_ids` (ids that arrived more than once:
    a retry by the proxy; legitimate only before any response byte was sent).
    close_each=True answers every request with Connection: close and closes."""

    RESET_BODY = 16 * 1024
    RESET_SENT = 2 * 1024

    def __init__(self, name="origin", id_header="X-Loadtest-Id", close_each=False):
        self.name = name
        self.close_each = close_each
        self.id_header = id_header.lower().encode()
        self._id_name = id_header.encode()
        self._init_server()
        self._counts = {"requests": 0, "resets": 0, "trickles": 0, "connections": 0}
        self._reset_seq = 0
        self._seen: dict[bytes, int] = {}

    def count(self, what: str) -> int:
        with self._lock:
            return self._counts[what]

    def duplicate_ids(self) -> int:
        with self._lock:
            return sum(1 for n in self._seen.values() if n > 1)

    def _count_connection(self):
        self._counts["connections"] += 1

    def _head(self, rid: bytes, length: int, close: bool) -> bytes:
        return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend: " + self.name.encode()
                + b"\r\n" + self._id_name + b": " + rid + b"\r\nContent-Length: "
                + str(length).encode() + b"\r\n" + (b"Connection: close\r\n" if close else b"")
                + b"\r\n")

    def _answer(self, sock, target: bytes, rid: bytes, close: bool, previous: bytes) -> bool:
        """Answers one request; False when the connection is gone (reset on purpose)."""
        parts = target.split(b"?", 1)[0].split(b"/")
        if parts[1:2] == [b"stale"]:
            rid = previous or b"none"
        elif parts[1:2] == [b"twice"]:
            body = self.name.encode() + b" " + rid + b"\n"
            sock.sendall((self._head(rid, len(body), close) + body) * 2)
            return True
        if len(parts) >= 3 and parts[1] == b"reset":
            with self._lock:
                self._reset_seq += 1
                fire = self._reset_seq % max(1, int(parts[2] or b"1")) == 0
            if fire:
                with self._lock:
                    self._counts["resets"] += 1
                    in_head = self._counts["resets"] % 2 == 1
                body = (self.name.encode() + b" " + rid + b"\n").ljust(self.RESET_BODY, b".")
                head = self._head(rid, len(body), close)
                sock.sendall(head[:20] if in_head else head + body[:self.RESET_SENT])
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return False
        if len(parts) >= 4 and parts[1] == b"trickle":
            interval, pieces = int(parts[2]) / 1000.0, int(parts[3])
            body = (self.name.encode() + b" " + rid + b"\n").ljust(8 * pieces, b".")
            sock.sendall(self._head(rid, len(body), close))
            for i in range(0, len(body), 8):
                if self._stopping.is_set():
                    return False
                time.sleep(interval)
                sock.sendall(body[i:i + 8])
            with self._lock:
                self._counts["trickles"] += 1
            return True
        body = self.name.encode() + b" " + rid + b"\n"
        sock.sendall(self._head(rid, len(body), close) + body)
        return True

    def _serve(self, sock):
        buf = b""
        previous = b""
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(0.2)
            while not self._stopping.is_set():
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > 65536:
                        return
                    try:
                        data = sock.recv(65536)
                    except (socket.timeout, TimeoutError):
                        continue
                    if not data:
                        return
                    buf += data
                    continue
                head, buf = buf[:end], buf[end + 4:]
                lines = head.split(b"\r\n")
                target = lines[0].split(b" ")[1] if len(lines[0].split(b" ")) == 3 else b"/"
                rid = b""
                close = self.close_each or lines[0].endswith(b"HTTP/1.0")
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == self.id_header:
                        rid = value.strip()
                    elif name == b"connection" and b"close" in value.lower():
                        close = True
                if not rid:  # no id field (the validation route drops it): the path's last stem
                    rid = target.split(b"?", 1)[0].rsplit(b"/", 1)[-1].rsplit(b".", 1)[0]
                with self._lock:
                    self._counts["requests"] += 1
                    if rid:
                        self._seen[rid] = self._seen.get(rid, 0) + 1
                if not self._answer(sock, target, rid, close, previous) or close:
                    return
                previous = rid
        except OSError:
            return
        finally:
            with self._lock:
                self._open.discard(sock)
            try:
                sock.close()
            except OSError:
                pass
