"""Clients: raw sockets for exact framing, curl where a real client fits, and the admin
listener probe."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import tempfile
import time

from .common import LOOPBACK, TENANT
from .wire import Headers, PeerClosed, ProtocolError, SocketReader, _body_framing, _parse_head


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
