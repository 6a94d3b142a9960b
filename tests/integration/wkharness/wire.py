"""HTTP/1.1 and PROXY-protocol wire helpers: buffered socket reading shared by the backends
(requests) and the clients (responses), strict head parsing, body framing."""

from __future__ import annotations

import re
import socket
import ssl
import struct


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
