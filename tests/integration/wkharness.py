"""Integration-test harness for wkproxy (Python standard library only).

Pieces:
  TestCA            a throw-away CA (and a second, unrelated one) made with the openssl CLI
  RecordingBackend  a threaded HTTP/1.1 server over raw sockets (optionally TLS) that records
                    every request it receives exactly as it arrived
  Proxy             the real wkproxy binary on loopback port 0, with its access log and RSS
  RawClient / curl  clients: raw sockets for exact framing, curl where a real client fits
  ProxyTestCase     a unittest base class wiring the above together with cleanups

Everything binds 127.0.0.1 (or ::1) on port 0, and everything started is stopped again by
cleanups even when a test fails. Readiness is polled with a deadline, never slept for.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import struct
import time
import unittest
import urllib.parse

LOOPBACK = "127.0.0.1"
TENANT = "tenant.example"
DOMAINS = ("tenant.example", "www.tenant.example")
CF_SNI = "cloudfront.test"
VALIDATION_PREFIX = "/.well-known/pki-validation/"

_HERE = os.path.dirname(os.path.abspath(__file__))


def wkproxy_bin() -> str:
    """Path of the binary under test: $WKPROXY_BIN, else the dev build of this tree."""
    path = os.environ.get("WKPROXY_BIN") or os.path.join(_HERE, "..", "..", "build", "dev",
                                                         "wkproxy")
    path = os.path.abspath(path)
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"wkproxy binary not found or not executable: {path} "
                           "(set WKPROXY_BIN)")
    return path


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on right now (bound then released): an 'upstream down' address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def wait_until(predicate, timeout: float, interval: float = 0.02, what: str = "condition"):
    """Poll predicate() until it returns a truthy value or the deadline passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------------------
# Deterministic payloads: 64 KiB blocks, each stamped with its index so that a dropped, repeated
# or reordered block changes the hash.

_BLOCK_SIZE = 64 * 1024
_BASE_BLOCK = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest()
                       for i in range(_BLOCK_SIZE // 32))


def pattern_chunks(n: int, piece: int = _BLOCK_SIZE):
    """Yield the first n bytes of the deterministic payload in pieces of at most `piece` bytes."""
    offset = 0
    while offset < n:
        index, within = divmod(offset, _BLOCK_SIZE)
        block = index.to_bytes(8, "big") + _BASE_BLOCK[8:]
        take = min(n - offset, _BLOCK_SIZE - within, piece)
        yield block[within:within + take]
        offset += take


def pattern_bytes(n: int) -> bytes:
    return b"".join(pattern_chunks(n))


_SHA_CACHE: dict[int, str] = {}


def pattern_sha256(n: int) -> str:
    if n not in _SHA_CACHE:
        h = hashlib.sha256()
        for c in pattern_chunks(n):
            h.update(c)
        _SHA_CACHE[n] = h.hexdigest()
    return _SHA_CACHE[n]


# ------------------------------------------------------------------------------------------------
# Test CA


class TestCA:
    """A CA and a server certificate made at test time with the openssl CLI, plus a second,
    unrelated CA that signs a certificate for the same names (for verification failures).

    Attributes: ca_pem, cert_pem, key_pem (trusted chain); other_ca_pem, other_cert_pem,
    other_key_pem (the unrelated CA's). issue() makes more leaf certificates.
    """

    __test__ = False  # not a unittest class

    def __init__(self, dns_names=(CF_SNI, "localhost"), ips=("127.0.0.1", "::1")):
        self.dir = tempfile.mkdtemp(prefix="wkproxy-ca-")
        try:
            self.ca_pem, self._ca_key = self._make_ca("ca", "wkproxy test CA")
            self.other_ca_pem, self._other_ca_key = self._make_ca("other-ca", "unrelated test CA")
            self.cert_pem, self.key_pem = self.issue("server", dns_names, ips)
            self.other_cert_pem, self.other_key_pem = self.issue(
                "other-server", dns_names, ips, ca=(self.other_ca_pem, self._other_ca_key))
        except Exception:
            self.cleanup()
            raise

    def _run(self, *args):
        p = subprocess.run(["openssl", *args], cwd=self.dir, capture_output=True, text=True,
                           timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)} failed:\n{p.stderr}")

    def _make_ca(self, stem, common_name):
        key, pem = os.path.join(self.dir, stem + ".key"), os.path.join(self.dir, stem + ".pem")
        self._run("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-keyout", key, "-out", pem, "-days", "2", "-subj",
                  f"/CN={common_name}", "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return pem, key

    def issue(self, stem, dns_names=(), ips=(), ca=None):
        """A leaf certificate (PEM paths cert, key) with the given SAN names and IPs."""
        ca_pem, ca_key = ca or (self.ca_pem, self._ca_key)
        key = os.path.join(self.dir, stem + ".key")
        csr = os.path.join(self.dir, stem + ".csr")
        pem = os.path.join(self.dir, stem + ".pem")
        ext = os.path.join(self.dir, stem + ".ext")
        san = [f"DNS:{n}" for n in dns_names] + [f"IP:{i}" for i in ips]
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n")
            if san:
                f.write("subjectAltName=" + ",".join(san) + "\n")
        cn = dns_names[0] if dns_names else "wkproxy test server"
        self._run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", key, "-out", csr, "-subj", f"/CN={cn}")
        self._run("x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key, "-CAcreateserial",
                  "-out", pem, "-days", "2", "-extfile", ext)
        return pem, key

    def server_context(self, cert_pem=None, key_pem=None) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_pem or self.cert_pem, key_pem or self.key_pem)
        return ctx

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# Buffered socket reading shared by the backend (requests) and the clients (responses).


class ProtocolError(Exception):
    pass


class PeerClosed(Exception):
    """The peer closed the connection (EOF) before a complete message arrived."""


class _Stopping(Exception):
    pass


class SocketReader:
    """Buffered reads over a socket. `keep_going()`, when given, is asked after every socket
    timeout whether to keep waiting (the backend uses it to notice stop() and idle limits)."""

    def __init__(self, sock, keep_going=None, recv_size=65536):
        self.sock = sock
        self.buf = bytearray()
        self.keep_going = keep_going
        self.recv_size = recv_size

    def _fill(self) -> bool:
        while True:
            try:
                data = self.sock.recv(self.recv_size)
            except (socket.timeout, TimeoutError):
                if self.keep_going is not None and self.keep_going():
                    continue
                raise
            except ssl.SSLWantReadError:
                continue
            if not data:
                return False
            self.buf += data
            return True

    def at_eof(self) -> bool:
        """True when nothing is buffered and the peer has closed (blocks until one is known)."""
        if self.buf:
            return False
        return not self._fill()

    def read_until(self, delim: bytes, limit: int) -> bytes:
        start = 0
        while True:
            i = self.buf.find(delim, start)
            if i >= 0:
                end = i + len(delim)
                out = bytes(self.buf[:end])
                del self.buf[:end]
                return out
            if len(self.buf) > limit:
                raise ProtocolError(f"no {delim!r} within {limit} bytes")
            start = max(0, len(self.buf) - len(delim) + 1)
            if not self._fill():
                raise PeerClosed(f"EOF after {len(self.buf)} bytes while waiting for {delim!r}")

    def read_line(self, limit=65536) -> bytes:
        return self.read_until(b"\r\n", limit)[:-2]

    def iter_exact(self, n: int):
        """Yield exactly n bytes in pieces (PeerClosed on an early EOF)."""
        while n > 0:
            if not self.buf and not self._fill():
                raise PeerClosed(f"EOF with {n} body bytes still expected")
            take = min(n, len(self.buf))
            piece = bytes(self.buf[:take])
            del self.buf[:take]
            n -= take
            yield piece

    def read_exact(self, n: int) -> bytes:
        return b"".join(self.iter_exact(n))

    def iter_to_eof(self):
        while True:
            if self.buf:
                piece = bytes(self.buf)
                self.buf.clear()
                yield piece
            if not self._fill():
                return

    def iter_chunked(self, trailers: list):
        """Decode a chunked body, yielding data; trailer fields are appended to `trailers`."""
        while True:
            line = self.read_line()
            size_text = line.split(b";", 1)[0].strip()
            if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size_text):
                raise ProtocolError(f"bad chunk size line {line!r}")
            size = int(size_text, 16)
            if size == 0:
                break
            yield from self.iter_exact(size)
            if self.read_exact(2) != b"\r\n":
                raise ProtocolError("chunk data not followed by CRLF")
        while True:
            line = self.read_line()
            if not line:
                return
            trailers.append(_parse_field(line))


_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _parse_field(line: bytes):
    name, sep, value = line.partition(b":")
    if not sep or not _TOKEN.fullmatch(name):
        raise ProtocolError(f"bad header line {line!r}")
    return name.decode("latin-1"), value.strip(b" \t").decode("latin-1")


def _parse_head(head: bytes):
    """Split a message head (ending CRLF CRLF) into its start line and header fields."""
    lines = head[:-4].split(b"\r\n")
    fields = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise ProtocolError("obsolete line folding")
        fields.append(_parse_field(line))
    return lines[0], fields


class Headers(list):
    """A list of (name, value) in arrival order with case-insensitive lookups."""

    def get(self, name, default=None):
        for n, v in self:
            if n.lower() == name.lower():
                return v
        return default

    def get_all(self, name):
        return [v for n, v in self if n.lower() == name.lower()]

    def has(self, name):
        return any(n.lower() == name.lower() for n, _ in self)

    def names(self):
        return [n.lower() for n, _ in self]


def _body_framing(headers: Headers):
    """('chunked', None) | ('length', n) | ('none', None); ProtocolError when ambiguous."""
    te = headers.get_all("transfer-encoding")
    cl = headers.get_all("content-length")
    if te and cl:
        raise ProtocolError("both Transfer-Encoding and Content-Length")
    if te:
        codings = [c.strip().lower() for v in te for c in v.split(",") if c.strip()]
        if not codings or codings[-1] != "chunked":
            raise ProtocolError(f"Transfer-Encoding without final chunked: {te}")
        return "chunked", None
    if cl:
        values = {v.strip() for v in cl}
        if len(values) != 1 or not re.fullmatch(r"[0-9]{1,18}", next(iter(values))):
            raise ProtocolError(f"bad Content-Length {cl}")
        return "length", int(next(iter(values)))
    return "none", None


# ------------------------------------------------------------------------------------------------
# Recording backend


def _sendall(sock, data: bytes, timeout=60.0):
    """sendall with a generous deadline: the backend's sockets poll reads with a short timeout,
    which must not turn the proxy's backpressure on a response body into a failed send."""
    old = sock.gettimeout()
    sock.settimeout(timeout)
    try:
        sock.sendall(data)
    finally:
        sock.settimeout(old)


PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def _recv_exact(sock, n: int) -> bytes:
    out = b""
    while len(out) < n:
        got = sock.recv(n - len(out))
        if not got:
            raise ProtocolError(f"EOF after {len(out)} of {n} bytes")
        out += got
    return out


def read_proxy_header(sock) -> dict:
    """Reads exactly one PROXY protocol header (v1 or v2) from a plain socket, never a byte
    more, and returns {"version", "command", "family", "src", "dst", "src_port", "dst_port",
    "raw"}. Strict: anything else raises ProtocolError."""
    first = _recv_exact(sock, 5)
    if first == b"PROXY":
        line = first
        while not line.endswith(b"\r\n"):
            if len(line) > 107:
                raise ProtocolError(f"v1 line too long: {line!r}")
            line += _recv_exact(sock, 1)
        parts = line[:-2].decode("ascii").split(" ")
        if parts[1] == "UNKNOWN":
            return {"version": 1, "command": "proxy", "family": "unknown", "src": None,
                    "dst": None, "src_port": None, "dst_port": None, "raw": line}
        if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
            raise ProtocolError(f"bad v1 line {line!r}")
        family = socket.AF_INET if parts[1] == "TCP4" else socket.AF_INET6
        for a in parts[2:4]:
            socket.inet_pton(family, a)
        return {"version": 1, "command": "proxy", "family": parts[1].lower(), "src": parts[2],
                "dst": parts[3], "src_port": int(parts[4]), "dst_port": int(parts[5]),
                "raw": line}
    head = first + _recv_exact(sock, 7)
    if head != PROXY_V2_SIGNATURE:
        raise ProtocolError(f"no PROXY header: {head!r}")
    rest = _recv_exact(sock, 4)
    ver_cmd, fam, length = rest[0], rest[1], struct.unpack("!H", rest[2:4])[0]
    body = _recv_exact(sock, length)
    if ver_cmd >> 4 != 2 or ver_cmd & 0xF not in (0, 1):
        raise ProtocolError(f"bad v2 version/command {ver_cmd:#x}")
    out = {"version": 2, "command": "local" if ver_cmd & 0xF == 0 else "proxy",
           "family": "unknown", "src": None, "dst": None, "src_port": None, "dst_port": None,
           "raw": head + rest + body}
    if fam == 0x11 and length >= 12:
        out.update(family="tcp4", src=socket.inet_ntop(socket.AF_INET, body[0:4]),
                   dst=socket.inet_ntop(socket.AF_INET, body[4:8]),
                   src_port=struct.unpack("!H", body[8:10])[0],
                   dst_port=struct.unpack("!H", body[10:12])[0])
    elif fam == 0x21 and length >= 36:
        out.update(family="tcp6", src=socket.inet_ntop(socket.AF_INET6, body[0:16]),
                   dst=socket.inet_ntop(socket.AF_INET6, body[16:32]),
                   src_port=struct.unpack("!H", body[32:34])[0],
                   dst_port=struct.unpack("!H", body[34:36])[0])
    elif fam != 0x00:
        raise ProtocolError(f"unexpected v2 family {fam:#x} with length {length}")
    return out


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
        delay = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query).get("read_delay")
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
# Clients


class Response:
    def __init__(self):
        self.version = None
        self.status = None
        self.reason = ""
        self.headers = Headers()
        self.interim = []  # [(status, Headers)] for 1xx responses before this one
        self.body = b""  # None when hash_only
        self.body_length = 0
        self.body_sha256 = None
        self.framing = "none"  # "length" | "chunked" | "eof" | "none"
        self.trailers = Headers()
        self.raw_head = b""

    def header(self, name, default=None):
        return self.headers.get(name, default)

    @property
    def text(self):
        return (self.body or b"").decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        body = self.body[:200] if self.body is not None else f"<{self.body_length} bytes>"
        return f"<Response {self.status} {list(self.headers)} {body!r}>"


def build_request(method="GET", target="/", host=TENANT, headers=(), body=None,
                  version="HTTP/1.1", content_length=True) -> bytes:
    """Serialize a request. headers: iterable of (name, value); host None: no Host header.
    A bytes body gets a Content-Length unless one is given or content_length is False."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    headers = list(headers.items() if isinstance(headers, dict) else headers)
    lines += [f"{n}: {v}" for n, v in headers]
    names = {n.lower() for n, _ in headers}
    if (body is not None and content_length and "content-length" not in names
            and "transfer-encoding" not in names):
        lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return data + (body or b"")


def chunked_body(data: bytes, sizes=(7, 1000, 1, 65536)) -> bytes:
    out, i, off = [], 0, 0
    while off < len(data):
        n = sizes[i % len(sizes)]
        piece = data[off:off + n]
        out.append(b"%x\r\n" % len(piece) + piece + b"\r\n")
        off += n
        i += 1
    out.append(b"0\r\n\r\n")
    return b"".join(out)


class RawClient:
    """One client TCP connection to the proxy with exact control over the bytes sent."""

    def __init__(self, port, host=LOOPBACK, timeout=10.0):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = SocketReader(self.sock)

    def send(self, data: bytes):
        self.sock.sendall(data)

    def read_response(self, method="GET", hash_only=False, interim_ok=True) -> Response:
        """Read one response (skipping and recording 1xx interim responses)."""
        r = Response()
        while True:
            head = self.reader.read_until(b"\r\n\r\n", 1 << 20)
            start, fields = _parse_head(head)
            m = re.fullmatch(rb"(HTTP/\d\.\d) (\d{3})(?: (.*))?", start)
            if not m:
                raise ProtocolError(f"bad status line {start!r}")
            status = int(m.group(2))
            if 100 <= status < 200 and status != 101 and interim_ok:
                r.interim.append((status, Headers(fields)))
                continue
            break
        r.raw_head = head
        r.version = m.group(1).decode()
        r.status = status
        r.reason = (m.group(3) or b"").decode("latin-1")
        r.headers = Headers(fields)
        h = hashlib.sha256()
        body = bytearray()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            pieces = iter(())
        else:
            framing, length = _body_framing(r.headers)
            if framing == "chunked":
                r.framing = "chunked"
                pieces = self.reader.iter_chunked(r.trailers)
            elif framing == "length":
                r.framing = "length"
                pieces = self.reader.iter_exact(length)
            else:
                r.framing = "eof"
                pieces = self.reader.iter_to_eof()
        for piece in pieces:
            h.update(piece)
            r.body_length += len(piece)
            if not hash_only:
                body += piece
        r.body_sha256 = h.hexdigest()
        r.body = None if hash_only else bytes(body)
        return r

    def request(self, method="GET", target="/", host=TENANT, headers=(), body=None,
                hash_only=False) -> Response:
        self.send(build_request(method, target, host, headers, body))
        return self.read_response(method, hash_only=hash_only)

    def closed_by_peer(self, timeout=3.0) -> bool:
        """True when the proxy closes the connection (EOF or reset) within timeout with nothing
        more sent; False if it stays open. Unread bytes count as 'not closed'."""
        if self.reader.buf:
            return False
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionError:
            return True
        finally:
            self.sock.settimeout(old)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def request(port, method="GET", target="/", host=TENANT, headers=(), body=None,
            hash_only=False, timeout=10.0) -> Response:
    """One request on a fresh connection."""
    with RawClient(port, timeout=timeout) as c:
        return c.request(method, target, host, headers, body, hash_only=hash_only)


def send_raw(port, data: bytes, method="GET", timeout=10.0):
    """Send raw bytes on a fresh connection; return (Response, closed_after) where the response
    is the first one the proxy sent back."""
    with RawClient(port, timeout=timeout) as c:
        c.send(data)
        r = c.read_response(method)
        return r, c.closed_by_peer()


class CurlResult:
    def __init__(self, returncode, status, headers, body, stderr, all_heads):
        self.returncode = returncode
        self.status = status
        self.headers = headers  # Headers of the final response
        self.body = body
        self.stderr = stderr
        self.all_heads = all_heads  # every response head curl saw (1xx included), raw text

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def __repr__(self):
        return (f"<curl rc={self.returncode} status={self.status} body={self.body[:200]!r} "
                f"stderr={self.stderr[-500:]!r}>")


def curl(url, *args, timeout=60) -> CurlResult:
    """Run curl on url with extra args; collect the final status, headers and body."""
    with tempfile.TemporaryDirectory(prefix="wkproxy-curl-") as d:
        out, hdr = os.path.join(d, "body"), os.path.join(d, "headers")
        cmd = ["curl", "-sS", "--noproxy", "*", "-o", out, "-D", hdr, "-w", "%{http_code}",
               *args, url]
        p = subprocess.run(cmd, capture_output=True, timeout=timeout)
        body, raw = b"", ""
        if os.path.exists(out):
            with open(out, "rb") as f:
                body = f.read()
        if os.path.exists(hdr):
            with open(hdr, "rb") as f:
                raw = f.read().decode("latin-1")
    heads = [b for b in raw.replace("\r\n", "\n").split("\n\n") if b.strip()]
    headers = Headers()
    if heads:
        for line in heads[-1].split("\n")[1:]:
            if ":" in line:
                n, v = line.split(":", 1)
                headers.append((n.strip(), v.strip()))
    try:
        status = int(p.stdout.decode().strip() or 0)
    except ValueError:
        status = 0
    return CurlResult(p.returncode, status, headers, body, p.stderr.decode("utf-8", "replace"),
                      heads)


# ------------------------------------------------------------------------------------------------
# Config and the proxy process


def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str) and re.fullmatch(r"[0-9]+(ms|s|m|h|KiB|MiB|GiB|B|)", v):
        return v
    return json.dumps(v)  # a JSON string is a valid YAML double-quoted scalar


def _yaml_flow(d: dict):
    return "{" + ", ".join(f"{k}: {_yaml_scalar(v)}" for k, v in d.items()) + "}"


DEFAULT_TIMEOUTS = {"connect": "2s", "header_read": "5s", "idle": "30s",
                    "upstream_response": "5s", "upstream_idle": "4s"}


def make_config(origin, cloudfront, *, domains=DOMAINS, listen=("127.0.0.1:0",), timeouts=None,
                limits=None, headers=None, workers=2, access_log="stdout", extra="") -> str:
    """YAML text of a wkproxy config. cloudfront: a URL string or a dict with url, sni,
    ca_file, verify. timeouts are merged over DEFAULT_TIMEOUTS; None values drop a key."""
    lines = ["version: 1",
             "listen: [" + ", ".join(json.dumps(x) for x in listen) + "]",
             f"origin: {_yaml_scalar(origin)}"]
    if isinstance(cloudfront, dict):
        lines.append("cloudfront:")
        lines += [f"  {k}: {_yaml_scalar(v)}" for k, v in cloudfront.items()]
    else:
        lines.append(f"cloudfront: {_yaml_scalar(cloudfront)}")
    lines.append("domains: [" + ", ".join(json.dumps(d) for d in domains) + "]")
    t = {k: v for k, v in {**DEFAULT_TIMEOUTS, **(timeouts or {})}.items() if v is not None}
    if t:
        lines.append(f"timeouts: {_yaml_flow(t)}")
    if limits:
        lines.append(f"limits: {_yaml_flow(limits)}")
    if headers:
        lines.append(f"headers: {_yaml_flow(headers)}")
    if workers is not None:
        lines.append(f"workers: {workers}")
    if access_log is not None:
        lines.append(f"access_log: {access_log}")
    if extra:
        lines.append(extra.rstrip("\n"))
    return "\n".join(lines) + "\n"


def _parse_addr(a: str):
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:]+):(\d+)", a)
    if not m:
        raise AssertionError(f"bad address in ports file: {a!r}")
    return (m.group(1), int(m.group(2))) if m.group(1) else (m.group(3), int(m.group(4)))


class Proxy:
    """The wkproxy binary running on a config, in the foreground, with its logs captured.

    Proxy(config_text).start() waits (with a deadline) for the ports file. .port is the first
    listener's port, .addresses all of them as (host, port). .stop() sends SIGTERM and checks
    the exit code. Usable as a context manager."""

    def __init__(self, config_text: str, *, args=(), env=None, ready_timeout=15.0):
        self.config_text = config_text
        self.args = list(args)
        self.env = env
        self.ready_timeout = ready_timeout
        self.dir = tempfile.mkdtemp(prefix="wkproxy-test-")
        self.config_path = os.path.join(self.dir, "wkproxy.yaml")
        self.ports_file = os.path.join(self.dir, "ports.json")
        with open(self.config_path, "w") as f:
            f.write(config_text)
        self.proc = None
        self.returncode = None
        self.addresses = []
        self.port = None
        self.admin_address = None  # (host, port) of the admin listener, when configured
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._log: list[dict] = []
        self._bad_log_lines: list[str] = []
        self._lock = threading.Lock()
        self._readers = []

    def _pump(self, stream, sink, parse):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                sink.append(line)
                if parse and line.strip():
                    try:
                        obj = json.loads(line)
                        if isinstance(obj, dict):
                            self._log.append(obj)
                        else:
                            self._bad_log_lines.append(line)
                    except ValueError:
                        self._bad_log_lines.append(line)
        stream.close()

    def start(self):
        env = dict(os.environ)
        env.update(self.env or {})
        self.proc = subprocess.Popen(
            [wkproxy_bin(), "-c", self.config_path, "--ports-file", self.ports_file, *self.args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        for stream, sink, parse in ((self.proc.stdout, self._stdout, True),
                                    (self.proc.stderr, self._stderr, False)):
            t = threading.Thread(target=self._pump, args=(stream, sink, parse), daemon=True)
            t.start()
            self._readers.append(t)
        deadline = time.monotonic() + self.ready_timeout
        try:
            while True:
                data = self._read_ports_file()
                if data is not None:
                    break
                if self.proc.poll() is not None:
                    self._join_readers()
                    raise AssertionError(f"wkproxy exited with {self.proc.returncode} before it "
                                         f"was ready; stderr:\n{self.stderr()}")
                if time.monotonic() >= deadline:
                    raise AssertionError(f"wkproxy did not write {self.ports_file} within "
                                         f"{self.ready_timeout}s; stderr:\n{self.stderr()}")
                time.sleep(0.02)
            listen = data.get("listen") if isinstance(data, dict) else None
            if not isinstance(listen, list) or not listen:
                raise AssertionError(f"ports file has no 'listen' list: {data!r}")
            self.addresses = [_parse_addr(a) for a in listen]
            self.port = self.addresses[0][1]
            admin = data.get("admin")
            self.admin_address = _parse_addr(admin) if admin else None
        except BaseException:
            self.stop(expect_exit=None)
            raise
        return self

    def _read_ports_file(self):
        try:
            with open(self.ports_file) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        # The file is written atomically, so a complete JSON document is expected at once; a
        # partial one is reported by the deadline above rather than accepted.
        try:
            return json.loads(text)
        except ValueError:
            return None

    @property
    def pid(self):
        return self.proc.pid

    def url(self, path="/", index=0):
        host, port = self.addresses[index]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}{path}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- observations
    def access_log(self) -> list[dict]:
        with self._lock:
            return list(self._log)

    def wait_for_log(self, n, timeout=10.0) -> list[dict]:
        """Wait until at least n access-log lines have arrived; return them all."""
        return wait_until(lambda: len(self.access_log()) >= n and self.access_log(), timeout,
                          what=f"{n} access-log line(s); have {len(self.access_log())}, "
                               f"stdout tail {self.stdout()[-500:]!r}")

    def bad_log_lines(self) -> list[str]:
        with self._lock:
            return list(self._bad_log_lines)

    def stdout(self) -> str:
        with self._lock:
            return "\n".join(self._stdout)

    def stderr(self) -> str:
        with self._lock:
            return "\n".join(self._stderr)

    def _status_field(self, key) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise AssertionError(f"{key} not in /proc/{self.proc.pid}/status")

    def rss_kb(self) -> int:
        return self._status_field("VmRSS")

    def peak_rss_kb(self) -> int:
        return self._status_field("VmHWM")

    # -- lifecycle
    def _join_readers(self):
        for t in self._readers:
            t.join(timeout=5)

    def stop(self, expect_exit=0, timeout=15.0):
        """SIGTERM, wait, and (unless expect_exit is None) assert the exit code. Always leaves
        the process dead and the temp dir removed."""
        problem = None
        try:
            if self.proc is not None and self.returncode is None:
                if self.proc.poll() is None:
                    self.proc.send_signal(signal.SIGTERM)
                    try:
                        self.proc.wait(timeout=timeout)
                    except subprocess.TimeoutExpired:
                        self.proc.kill()
                        self.proc.wait(timeout=10)
                        problem = f"wkproxy did not exit within {timeout}s of SIGTERM (killed)"
                self.returncode = self.proc.returncode
                self._join_readers()
                if problem is None and expect_exit is not None and self.returncode != expect_exit:
                    problem = (f"wkproxy exited with {self.returncode}, expected {expect_exit}; "
                               f"stderr:\n{self.stderr()[-3000:]}")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
        if problem and expect_exit is not None:
            raise AssertionError(problem)
        return self.returncode

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop(expect_exit=0 if exc_type is None else None)


def run_check(config_text: str, *, env=None, name="wkproxy.yaml", timeout=30):
    """`wkproxy -t -c FILE` on the given text; returns (CompletedProcess, path). The temp dir is
    removed afterwards, so use path only in messages."""
    d = tempfile.mkdtemp(prefix="wkproxy-check-")
    try:
        path = os.path.join(d, name)
        with open(path, "w") as f:
            f.write(config_text)
        e = dict(os.environ)
        e.update(env or {})
        p = subprocess.run([wkproxy_bin(), "-t", "-c", path], capture_output=True, text=True,
                           timeout=timeout, env=e)
        return p, path
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# unittest glue


class ProxyTestCase(unittest.TestCase):
    """Base class: one TestCA per class; helpers that start backends and proxies and register
    their cleanup (cleanups run in reverse order, so clients close before the proxy stops and
    the proxy stops before its backends)."""

    ca: TestCA = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ca = TestCA()
        cls.addClassCleanup(cls.ca.cleanup)

    def start_backend(self, name="origin", tls=False, other_ca=False, **kw) -> RecordingBackend:
        ctx = None
        if tls:
            ctx = (self.ca.server_context(self.ca.other_cert_pem, self.ca.other_key_pem)
                   if other_ca else self.ca.server_context())
        b = RecordingBackend(name, tls_context=ctx, **kw).start()
        self.addCleanup(b.stop)
        return b

    def cloudfront_upstream(self, backend: RecordingBackend, sni=CF_SNI, host="localhost",
                            **extra):
        """The `cloudfront:` config block for a TLS stand-in (trust anchor = the test CA)."""
        if backend.tls_context is None:
            return f"http://127.0.0.1:{backend.port}"
        d = {"url": f"https://{host}:{backend.port}", "sni": sni, "ca_file": self.ca.ca_pem}
        d.update(extra)
        return d

    def start_proxy(self, origin, cloudfront, **cfg) -> Proxy:
        """origin/cloudfront: a RecordingBackend, a URL string, or (cloudfront) a dict block."""
        if isinstance(origin, RecordingBackend):
            origin = origin.url
        if isinstance(cloudfront, RecordingBackend):
            cloudfront = self.cloudfront_upstream(cloudfront)
        p = Proxy(make_config(origin, cloudfront, **cfg))
        self.addCleanup(p.stop)
        p.start()
        return p

    def start_all(self, cf_tls=True, origin_kw=None, cf_kw=None, **cfg):
        """A plain origin, a cloudfront stand-in (TLS by default) and a proxy in front."""
        origin = self.start_backend("origin", **(origin_kw or {}))
        cf = self.start_backend("cloudfront", tls=cf_tls, **(cf_kw or {}))
        proxy = self.start_proxy(origin, cf, **cfg)
        return origin, cf, proxy

    def client(self, proxy: Proxy, index=0, timeout=10.0) -> RawClient:
        host, port = proxy.addresses[index]
        c = RawClient(port, host=host, timeout=timeout)
        self.addCleanup(c.close)
        return c

    # -- assertions
    def assertLocalError(self, resp, status, closed=None):
        """A proxy-generated error: the status, text/plain, a short non-empty one-line body."""
        self.assertEqual(resp.status, status, resp)
        ctype = (resp.header("content-type") or "").lower()
        self.assertTrue(ctype.startswith("text/plain"), f"Content-Type {ctype!r}: {resp}")
        text = (resp.body or b"").decode("utf-8", "replace").strip()
        self.assertTrue(text, f"empty error body: {resp}")
        self.assertNotIn("\n", text, f"error body should be one line: {text!r}")
        self.assertLess(len(text), 300, f"error body should be short: {text!r}")
        self.assertIsNone(resp.header("x-backend"), f"error reply came from a backend: {resp}")
        if closed is not None:
            self.assertTrue(closed, "the proxy should close the connection after an error reply")

    def assertForwardedHeaders(self, rec: RecordedRequest, client_ip="127.0.0.1"):
        xff = ", ".join(rec.headers.get_all("x-forwarded-for"))
        self.assertTrue(xff.split(",")[-1].strip() == client_ip,
                        f"X-Forwarded-For {xff!r} should end with {client_ip}: {rec}")
        self.assertEqual(rec.headers.get_all("x-forwarded-proto"), ["http"], rec)
        self.assertEqual(rec.version, "HTTP/1.1", rec)


# ------------------------------------------------------------------------------------------------
# Differential-test additions (append-only): a backend that also counts the raw bytes it received
# and can answer canned raw responses.


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


class RawExchange:
    """What exchange_raw saw: the parsed responses, why reading stopped early (or None), every
    byte received, and the bytes that arrived after the last parsed response (when drained)."""

    def __init__(self):
        self.responses: list[Response] = []
        self.problem: str | None = None
        self.raw = b""
        self.leftover = b""
        self.closed = False  # the proxy closed the connection (seen while draining)

    def __repr__(self):
        return (f"<RawExchange responses={self.responses} problem={self.problem!r} "
                f"raw={self.raw[:300]!r} leftover={self.leftover[:200]!r}>")


def exchange_raw(port, data: bytes, responses=1, method="GET", timeout=3.0, drain=False,
                 host=LOOPBACK) -> RawExchange:
    """Send `data` in one sendall on a fresh connection and read up to `responses` responses
    (stopping early when the proxy closes, sends something unparsable or `timeout` passes).
    method: one method or a list (one per response; HEAD responses have no body). With
    drain=True, keep reading until the proxy closes (or the timeout) and keep what arrived after
    the last response in .leftover."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    out = RawExchange()
    raw = bytearray()
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        class _Tee:
            def recv(self, n):
                piece = s.recv(n)
                raw.extend(piece)
                return piece

        c = RawClient.__new__(RawClient)
        c.sock = s
        c.reader = SocketReader(_Tee())
        try:
            s.sendall(data)
        except OSError as e:  # the proxy may answer and close before reading everything
            out.problem = f"send failed: {e!r}"
        deadline = time.monotonic() + timeout
        methods = list(method) if isinstance(method, (list, tuple)) else [method] * responses
        for i in range(responses):
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                out.responses.append(c.read_response(methods[i]))
            except (socket.timeout, TimeoutError):
                out.problem = f"timed out after {timeout}s waiting for response {i + 1}"
                break
            except (PeerClosed, ConnectionError) as e:
                out.problem = f"connection closed before response {i + 1} was complete: {e!r}"
                break
            except ProtocolError as e:
                out.problem = f"unparsable response {i + 1}: {e}"
                break
        if drain and out.problem is None:
            extra = bytearray(c.reader.buf)
            c.reader.buf.clear()
            try:
                while time.monotonic() < deadline:
                    s.settimeout(max(0.05, deadline - time.monotonic()))
                    piece = s.recv(65536)
                    if not piece:
                        out.closed = True
                        break
                    raw.extend(piece)
                    extra += piece
            except (socket.timeout, TimeoutError):
                pass
            except ConnectionError:
                out.closed = True
            out.leftover = bytes(extra)
    out.raw = bytes(raw)
    return out


# ------------------------------------------------------------------------------------------------
# `wkproxy check` additions (append-only): one stand-in for both CloudFront and the ACM validation
# host, with scripted answers (421, redirects, loops) for chosen paths.

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
        import http as _http  # local: the module name `http` is not used elsewhere here
        status, headers, body = answer
        headers = list(headers)
        if not any(n.lower() == "content-length" for n, _ in headers):
            headers.append(("Content-Length", str(len(body))))
        try:
            reason = _http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Status"
        self._send(sock, status, reason, headers, body, head_only=rec.method == "HEAD",
                   keep_alive=keep_alive)
        return keep_alive


def run_wkproxy_check(*args, timeout=120) -> subprocess.CompletedProcess:
    """`wkproxy check ARGS...`; returns the CompletedProcess (text stdout/stderr)."""
    return subprocess.run([wkproxy_bin(), "check", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


# ------------------------------------------------------------------------------------------------
# Zero-downtime additions (append-only): an origin light enough to sit behind a load test.


class LightOrigin:
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
        self._lock = threading.Lock()
        self._requests = 0
        self._connections = 0
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

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            with self._lock:
                self._connections += 1
                self._open.add(sock)
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True,
                                 name=f"{self.name}-conn")
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
            t.start()

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


# ------------------------------------------------------------------------------------------------
# Admin-listener additions (append-only): the lifecycle tests run with the admin listener on, as
# the container image and the Kubernetes manifest do.


def admin_config(port: int | None = None) -> str:
    """The `admin:` line of a config (for make_config's `extra`) on 127.0.0.1 at a fixed port, a
    free one by default. Fixed rather than 0 on purpose: a process that binds the admin port
    again instead of taking the socket over fails with "Address already in use", as in
    production."""
    return f'admin: {{listen: "127.0.0.1:{port or free_port()}"}}'


def admin_get(address, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of GET `path` on the admin listener at `address` ((host, port), e.g.
    Proxy.admin_address), on a new connection that asks to be closed. Connection errors
    propagate (a refused or reset probe is a failure, not an answer)."""
    host, port = address
    with socket.create_connection((host, port), timeout=timeout) as s:
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
                  .encode())
        reader = SocketReader(s)
        head = reader.read_until(b"\r\n\r\n", 65536)
        start, fields = _parse_head(head)
        status = int(start.split(b" ")[1])
        headers = Headers(fields)
        kind, n = _body_framing(headers)
        if kind == "length":
            body = reader.read_exact(n)
        elif kind == "chunked":
            body = b"".join(reader.iter_chunked([]))
        else:
            body = b"".join(reader.iter_to_eof())
        return status, body


def metric_value(exposition: str, name: str) -> float:
    """The value of the unlabelled sample `name` in a Prometheus text exposition."""
    for line in exposition.splitlines():
        parts = line.split(" ")
        if len(parts) == 2 and parts[0] == name:
            return float(parts[1])
    raise AssertionError(f"no sample {name} in the exposition")
