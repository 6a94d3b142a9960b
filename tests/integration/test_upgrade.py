"""Upgrade tunnelling on the origin route: a real WebSocket exchange through the proxy.

WebSocketBackend is a raw-socket origin that performs the RFC 6455 server handshake and then
echoes messages; WSClient is a minimal RFC 6455 client (masked frames) over the same socket that
read the 101. Both are checked against each other directly (SelfCheckTest) before anything is
asserted about the proxy, so a failure in the proxy tests is the proxy's, not the tools'.

WebSocketBackend paths (GET with Upgrade: websocket):
  /half-close    101, then collect messages until EOF (the proxy's FIN), then send one echo per
                 message plus a text "eof after N" and close the socket
  /no-upgrade    200 with a body and Content-Length (the upgrade is declined; HTTP continues)
  /refuse        426 with a body (the upgrade is declined; HTTP continues)
  anything else  101 with the right Sec-WebSocket-Accept, then echo text/binary messages (each
                 reassembled from its fragments and echoed as one frame), pong for ping, and a
                 close frame in reply to a close frame, after which the backend closes
A request without a valid WebSocket handshake gets a plain 200 (JSON of what arrived), and an
Upgrade naming another protocol "x-raw-echo" gets 101 and a raw byte echo until EOF.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import threading
import time
import unittest

from wkharness import (LOOPBACK, TENANT, Headers, PeerClosed, ProtocolError, ProxyTestCase,
                       RawClient, SocketReader, _parse_head, build_request, pattern_bytes,
                       request, wait_until)

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TOKEN_PATH = "/.well-known/pki-validation/x.txt"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def ws_accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode("ascii")).digest()).decode()


def _mask(payload: bytes, key: bytes) -> bytes:
    """XOR payload with the 4-byte key repeated (fast: one big-integer XOR)."""
    if not payload:
        return b""
    n = len(payload)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes = b"", *, mask: bool, fin: bool = True) -> bytes:
    head = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 65536:
        head.append(mbit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        return bytes(head) + key + _mask(payload, key)
    return bytes(head) + payload


def read_frame(reader: SocketReader):
    """(fin, opcode, payload, masked) of the next frame; PeerClosed on EOF."""
    b0, b1 = reader.read_exact(2)
    if b0 & 0x70:
        raise ProtocolError(f"reserved bits set in frame byte 0x{b0:02x}")
    fin, opcode, masked, n = bool(b0 & 0x80), b0 & 0x0F, bool(b1 & 0x80), b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", reader.read_exact(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", reader.read_exact(8))
    if opcode >= 0x8 and (n > 125 or not fin):
        raise ProtocolError(f"bad control frame opcode={opcode} len={n} fin={fin}")
    key = reader.read_exact(4) if masked else None
    payload = reader.read_exact(n)
    if masked:
        payload = _mask(payload, key)
    return fin, opcode, payload, masked


def read_message(reader: SocketReader, expect_masked: bool, on_control=None):
    """(opcode, payload) of the next message, reassembled from its fragments. Control frames
    inside a fragmented message are handed to on_control(opcode, payload) when given; outside
    one they are returned as messages themselves."""
    opcode, parts = None, []
    while True:
        fin, op, payload, masked = read_frame(reader)
        if masked != expect_masked:
            raise ProtocolError(f"frame masked={masked}, expected masked={expect_masked}")
        if op >= 0x8:
            if opcode is None or on_control is None:
                return op, payload
            on_control(op, payload)
            continue
        if opcode is None:
            if op == OP_CONT:
                raise ProtocolError("continuation frame without a message")
            opcode = op
        elif op != OP_CONT:
            raise ProtocolError(f"opcode {op} inside a fragmented message")
        parts.append(payload)
        if fin:
            return opcode, b"".join(parts)


# ------------------------------------------------------------------------------------------------
# Backend


class _Stop(Exception):
    pass


class WebSocketBackend:
    """A threaded origin on 127.0.0.1:0 over raw sockets (see the module docstring)."""

    def __init__(self, name="origin"):
        self.name = name
        self._lock = threading.Lock()
        self._requests: list[tuple[str, str, str, Headers]] = []
        self._errors: list[str] = []
        self._events: list[str] = []
        self._open: dict[int, socket.socket] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._count = 0
        self._listener = None
        self.port = None

    # -- lifecycle
    def start(self):
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, name="ws-accept", daemon=True)
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

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    # -- observations
    @property
    def requests(self):
        """[(method, target, version, Headers)] in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def errors(self):
        with self._lock:
            return list(self._errors)

    @property
    def events(self):
        """Tunnel milestones: "tunnel-open", "close-replied", "eof", "tunnel-closed"."""
        with self._lock:
            return list(self._events)

    @property
    def connections(self):
        with self._lock:
            return self._count

    def _event(self, e):
        with self._lock:
            self._events.append(e)

    def _error(self, e):
        with self._lock:
            self._errors.append(e)

    # -- server
    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            with self._lock:
                self._count += 1
                cid = self._count
                self._open[cid] = sock
            t = threading.Thread(target=self._serve, args=(sock, cid), name=f"ws-conn{cid}",
                                 daemon=True)
            self._threads.append(t)
            t.start()

    def _keep_going(self):
        if self._stopping.is_set():
            raise _Stop()
        return True

    def _send(self, sock, data: bytes):
        old = sock.gettimeout()
        sock.settimeout(30)
        try:
            sock.sendall(data)
        finally:
            sock.settimeout(old)

    def _reply(self, sock, status, reason, body: bytes, extra=()):
        lines = [f"HTTP/1.1 {status} {reason}", f"X-Backend: {self.name}",
                 "Content-Type: text/plain", f"Content-Length: {len(body)}", *extra]
        self._send(sock, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _serve(self, sock, cid):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(0.1)
            reader = SocketReader(sock, self._keep_going)
            while not reader.at_eof():
                if not self._serve_one(sock, reader):
                    return
        except (_Stop, PeerClosed, ConnectionError, OSError):
            return
        except (ProtocolError, ValueError) as e:  # ValueError: bad UTF-8 or request line
            self._error(f"conn {cid}: {e!r}")
        finally:
            with self._lock:
                self._open.pop(cid, None)
            try:
                sock.close()
            except OSError:
                pass

    def _serve_one(self, sock, reader) -> bool:
        """One HTTP request; False when the connection is finished (tunnel over or close)."""
        head = reader.read_until(b"\r\n\r\n", 1 << 20)
        start, fields = _parse_head(head)
        method, target, version = start.decode("latin-1").split(" ")
        headers = Headers(fields)
        with self._lock:
            self._requests.append((method, target, version, headers))
        if headers.has("content-length") or headers.has("transfer-encoding"):
            n = int(headers.get("content-length", "0"))  # no bodies expected in these tests
            reader.read_exact(n)
        path = target.split("?", 1)[0]
        upgrade = {t.strip().lower() for v in headers.get_all("upgrade") for t in v.split(",")}
        conn = {t.strip().lower() for v in headers.get_all("connection") for t in v.split(",")}
        if path == "/no-upgrade":
            self._reply(sock, 200, "OK", b"plain answer to an upgrade request\n")
            return True
        if path == "/refuse":
            self._reply(sock, 426, "Upgrade Required", b"this endpoint does not switch\n")
            return True
        if "upgrade" in conn and "x-raw-echo" in upgrade:
            self._send(sock, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-raw-echo\r\n"
                             b"Connection: Upgrade\r\n\r\n")
            self._event("tunnel-open")
            for piece in reader.iter_to_eof():
                self._send(sock, piece)
            self._event("eof")
            return False
        key = headers.get("sec-websocket-key")
        if "upgrade" in conn and "websocket" in upgrade and key is not None:
            try:
                ok = len(base64.b64decode(key, validate=True)) == 16
            except ValueError:
                ok = False
            if not ok or headers.get("sec-websocket-version") != "13" or method != "GET":
                self._error(f"bad handshake: {method} key={key!r} "
                            f"version={headers.get('sec-websocket-version')!r}")
                self._reply(sock, 400, "Bad Request", b"bad websocket handshake\n",
                            ["Connection: close"])
                return False
            self._send(sock, ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              f"Connection: Upgrade\r\nSec-WebSocket-Accept: {ws_accept(key)}\r\n"
                              f"X-Backend: {self.name}\r\n\r\n").encode("latin-1"))
            self._event("tunnel-open")
            if path == "/half-close":
                self._half_close(sock, reader)
            else:
                self._echo(sock, reader)
            return False
        body = json.dumps({"method": method, "target": target,
                           "headers": list(headers)}).encode()
        self._reply(sock, 200, "OK", body)
        return True

    def _echo(self, sock, reader):
        def control(op, payload):
            if op == OP_PING:
                self._send(sock, encode_frame(OP_PONG, payload, mask=False))

        while True:
            try:
                op, payload = read_message(reader, expect_masked=True, on_control=control)
            except PeerClosed:
                self._event("eof")
                return
            if op in (OP_TEXT, OP_BINARY):
                if op == OP_TEXT:
                    payload.decode("utf-8")  # a text message must be valid UTF-8
                self._send(sock, encode_frame(op, payload, mask=False))
            elif op == OP_PING:
                self._send(sock, encode_frame(OP_PONG, payload, mask=False))
            elif op == OP_CLOSE:
                self._send(sock, encode_frame(OP_CLOSE, payload[:2], mask=False))
                self._event("close-replied")
                return  # the server closes the TCP connection first (RFC 6455 7.1.1)

    def _half_close(self, sock, reader):
        got = []
        while True:
            try:
                got.append(read_message(reader, expect_masked=True))
            except PeerClosed:
                break
        self._event("eof")
        for op, payload in got:
            self._send(sock, encode_frame(op, payload, mask=False))
        self._send(sock, encode_frame(OP_TEXT, f"eof after {len(got)}".encode(), mask=False))


# ------------------------------------------------------------------------------------------------
# Client


class WSClient:
    """A WebSocket client on a RawClient connection: handshake, masked frames, unmasked reads."""

    def __init__(self, port, host=LOOPBACK, timeout=10.0):
        self.raw = RawClient(port, host=host, timeout=timeout)
        self.sock, self.reader = self.raw.sock, self.raw.reader
        self.key = base64.b64encode(os.urandom(16)).decode()
        self.pongs: list[bytes] = []

    def handshake(self, target="/chat", host=TENANT, headers=(), upgrade="websocket",
                  connection="Upgrade"):
        """Send the upgrade request; return the Response (101 or not)."""
        hdrs = [("Upgrade", upgrade), ("Connection", connection),
                ("Sec-WebSocket-Key", self.key), ("Sec-WebSocket-Version", "13"), *headers]
        self.raw.send(build_request("GET", target, host, hdrs))
        return self.raw.read_response("GET")

    def send(self, opcode, payload=b"", fin=True):
        self.sock.sendall(encode_frame(opcode, payload, mask=True, fin=fin))

    def send_text(self, text: str):
        self.send(OP_TEXT, text.encode("utf-8"))

    def send_binary(self, data: bytes):
        self.send(OP_BINARY, data)

    def recv(self):
        """(opcode, payload) of the next data or close message; pongs are collected."""
        while True:
            op, payload = read_message(self.reader, expect_masked=False,
                                       on_control=lambda o, p: self._control(o, p))
            if op == OP_PONG:
                self.pongs.append(payload)
                continue
            if op == OP_PING:
                self.send(OP_PONG, payload)
                continue
            return op, payload

    def _control(self, op, payload):
        if op == OP_PONG:
            self.pongs.append(payload)
        elif op == OP_PING:
            self.send(OP_PONG, payload)

    def recv_pong(self):
        while not self.pongs:
            fin, op, payload, masked = read_frame(self.reader)
            if op != OP_PONG or masked:
                raise ProtocolError(f"expected an unmasked pong, got opcode {op}")
            self.pongs.append(payload)
        return self.pongs.pop(0)

    def closed_by_peer(self, timeout=5.0) -> bool:
        return self.raw.closed_by_peer(timeout)

    def close(self):
        self.raw.close()


def close_payload(code=1000, reason=b"") -> bytes:
    return struct.pack("!H", code) + reason


# ------------------------------------------------------------------------------------------------
# Tests


class WSTestCase(ProxyTestCase):
    def start_ws_backend(self) -> WebSocketBackend:
        b = WebSocketBackend().start()
        self.addCleanup(b.stop)
        return b

    def ws_client(self, port, timeout=10.0) -> WSClient:
        c = WSClient(port, timeout=timeout)
        self.addCleanup(c.close)
        return c

    def start_ws_all(self, **cfg):
        """A WebSocket origin, a TLS cloudfront stand-in that serves tokens, and the proxy."""
        origin = self.start_ws_backend()
        cf = self.start_backend("cloudfront", tls=True)
        proxy = self.start_proxy(origin.url, cf, **cfg)
        return origin, cf, proxy

    def assert101(self, client: WSClient, r):
        self.assertEqual(r.status, 101, r)
        self.assertIn("websocket", (r.header("upgrade") or "").lower(), r)
        self.assertIn("upgrade", (r.header("connection") or "").lower(), r)
        self.assertEqual(r.header("sec-websocket-accept"), ws_accept(client.key), r)
        self.assertEqual(r.body, b"", r)

    def assertEcho(self, client: WSClient, opcode, payload: bytes):
        client.send(opcode, payload)
        op, got = client.recv()
        self.assertEqual(op, opcode)
        self.assertEqual(len(got), len(payload))
        self.assertEqual(hashlib.sha256(got).hexdigest(), hashlib.sha256(payload).hexdigest())

    def close_handshake(self, client: WSClient):
        client.send(OP_CLOSE, close_payload(1000, b"bye"))
        op, payload = client.recv()
        self.assertEqual((op, payload[:2]), (OP_CLOSE, close_payload(1000)))


class SelfCheckTest(WSTestCase):
    """The tools against each other, without the proxy."""

    def test_client_and_backend_directly(self):
        b = self.start_ws_backend()
        c = self.ws_client(b.port)
        r = c.handshake("/chat", headers=[("X-Probe", "1")])
        self.assert101(c, r)
        self.assertEqual(ws_accept("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        self.assertEcho(c, OP_TEXT, "héllo".encode())
        self.assertEcho(c, OP_BINARY, pattern_bytes(200 * 1024))
        c.send(OP_PING, b"p1")
        self.assertEqual(c.recv_pong(), b"p1")
        c.send(OP_TEXT, b"frag-", fin=False)
        c.send(OP_PING, b"p2")
        c.send(OP_CONT, b"mented", fin=True)
        self.assertEqual(c.recv(), (OP_TEXT, b"frag-mented"))
        self.assertEqual(c.pongs, [b"p2"])
        self.close_handshake(c)
        self.assertTrue(c.closed_by_peer(), "the backend closes after the close handshake")
        self.assertEqual(b.requests[0][3].get("x-probe"), "1")
        self.assertEqual(b.errors, [])

        h = self.ws_client(b.port)
        self.assertEqual(h.handshake("/half-close").status, 101)
        h.send_text("one")
        h.send_binary(b"\x00two")
        h.sock.shutdown(socket.SHUT_WR)
        self.assertEqual([h.recv(), h.recv(), h.recv()],
                         [(OP_TEXT, b"one"), (OP_BINARY, b"\x00two"), (OP_TEXT, b"eof after 2")])
        self.assertTrue(h.closed_by_peer())

        n = self.ws_client(b.port)
        r = n.handshake("/no-upgrade")
        self.assertEqual((r.status, r.body), (200, b"plain answer to an upgrade request\n"))
        r = n.raw.request("GET", "/plain")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(b.errors, [])


class UpgradeTunnelTest(WSTestCase):
    def setUp(self):
        super().setUp()
        self.origin, self.cf, self.proxy = self.start_ws_all()

    # (a)
    def test_handshake_is_relayed_with_accept_and_upgrade_headers_forwarded(self):
        c = self.ws_client(self.proxy.port)
        r = c.handshake("/chat?room=1", headers=[
            ("Connection", "keep-alive, X-Hop"), ("X-Hop", "1"), ("Keep-Alive", "timeout=5"),
            ("Sec-WebSocket-Protocol", "chat"), ("Origin", "http://tenant.example")],
            connection="Upgrade")
        self.assert101(c, r)
        (method, target, version, h), = self.origin.requests
        self.assertEqual((method, target, version), ("GET", "/chat?room=1", "HTTP/1.1"))
        self.assertEqual([v.lower() for v in h.get_all("upgrade")], ["websocket"], h)
        conn = ",".join(h.get_all("connection")).lower()
        self.assertIn("upgrade", conn, h)
        self.assertEqual(h.get_all("host"), [TENANT], h)
        self.assertEqual(h.get("sec-websocket-key"), c.key, h)
        self.assertEqual(h.get("sec-websocket-version"), "13", h)
        self.assertEqual(h.get("sec-websocket-protocol"), "chat", h)
        self.assertEqual(h.get("origin"), "http://tenant.example", h)
        xff = ", ".join(h.get_all("x-forwarded-for"))
        self.assertEqual(xff.split(",")[-1].strip(), "127.0.0.1", h)
        for hop in ("x-hop", "keep-alive"):
            self.assertNotIn(hop, h.names(), h)
            self.assertNotIn(hop, conn, h)
        self.assertEcho(c, OP_TEXT, b"after handshake")
        self.assertEqual(self.origin.errors, [])

    # (b)
    def test_text_and_binary_messages_echo_intact(self):
        c = self.ws_client(self.proxy.port)
        self.assert101(c, c.handshake())
        self.assertEcho(c, OP_TEXT, b"hello")
        self.assertEcho(c, OP_TEXT, "ünïcödé ✓ 🚀".encode())
        self.assertEcho(c, OP_BINARY, bytes(range(256)))
        self.assertEcho(c, OP_TEXT, b"")
        self.assertEcho(c, OP_BINARY, pattern_bytes(200 * 1024))  # many TCP segments
        self.assertEcho(c, OP_BINARY, pattern_bytes(70000)[::-1])  # 64-bit length form
        self.assertEcho(c, OP_TEXT, b"x" * 126)  # 16-bit length form boundary
        # A fragmented message, and several frames in one write.
        c.sock.sendall(encode_frame(OP_BINARY, b"ab", mask=True, fin=False) +
                       encode_frame(OP_CONT, b"cd", mask=True, fin=False) +
                       encode_frame(OP_CONT, b"ef", mask=True, fin=True) +
                       encode_frame(OP_TEXT, b"next", mask=True))
        self.assertEqual(c.recv(), (OP_BINARY, b"abcdef"))
        self.assertEqual(c.recv(), (OP_TEXT, b"next"))
        # Many small messages back to back.
        c.sock.sendall(b"".join(encode_frame(OP_TEXT, f"m{i}".encode(), mask=True)
                                for i in range(100)))
        self.assertEqual([c.recv() for _ in range(100)],
                         [(OP_TEXT, f"m{i}".encode()) for i in range(100)])
        self.assertEqual(self.origin.errors, [])
        self.assertEqual(self.origin.connections, 1)

    # (c)
    def test_ping_pong_and_close_handshake_then_proxy_closes_client(self):
        c = self.ws_client(self.proxy.port)
        self.assert101(c, c.handshake())
        c.send(OP_PING, b"are you there")
        self.assertEqual(c.recv_pong(), b"are you there")
        c.send(OP_PING, b"")
        self.assertEqual(c.recv_pong(), b"")
        self.assertEcho(c, OP_TEXT, b"between pings")
        self.close_handshake(c)
        start = time.monotonic()
        self.assertTrue(c.closed_by_peer(timeout=5.0),
                        "the proxy should close the client once the backend closed the tunnel")
        self.assertLess(time.monotonic() - start, 5.0)
        self.assertIn("close-replied", self.origin.events)
        self.assertEqual(self.origin.errors, [])

    # (d)
    def test_non_101_answer_is_relayed_as_a_normal_response(self):
        for path, status, body in (("/no-upgrade", 200, b"plain answer to an upgrade request\n"),
                                   ("/refuse", 426, b"this endpoint does not switch\n")):
            with self.subTest(path=path):
                c = self.ws_client(self.proxy.port)
                r = c.handshake(path)
                self.assertEqual((r.status, r.body), (status, body), r)
                self.assertEqual(r.header("x-backend"), "origin", r)
                self.assertIsNone(r.header("sec-websocket-accept"), r)
                # Still HTTP: unless the proxy announced a close, the connection takes another
                # request; either way it must not have turned into a tunnel.
                if "close" in (r.header("connection") or "").lower():
                    self.assertTrue(c.closed_by_peer(), "Connection: close but left open")
                else:
                    r2 = c.raw.request("GET", "/after")
                    self.assertEqual(r2.status, 200, r2)
                    self.assertEqual(r2.json()["target"], "/after")
        self.assertEqual(self.origin.errors, [])

    # (e)
    def test_upgrade_on_validation_path_goes_to_origin(self):
        c = self.ws_client(self.proxy.port)
        r = c.handshake(TOKEN_PATH)
        self.assert101(c, r)
        self.assertEcho(c, OP_TEXT, b"via origin")
        self.assertEqual([t for _, t, _, _ in self.origin.requests], [TOKEN_PATH])
        self.assertEqual(self.cf.requests, [], "an Upgrade request must never reach cloudfront")
        self.close_handshake(c)
        # Without Upgrade the same path still goes to cloudfront.
        r = request(self.proxy.port, "GET", TOKEN_PATH)
        self.assertEqual((r.status, r.header("x-backend"), r.body),
                         (200, "cloudfront", b"token-body-for-x.txt"), r)

    # (f)
    def test_proxy_healthy_after_tunnel_and_access_log_has_101(self):
        c = self.ws_client(self.proxy.port)
        self.assert101(c, c.handshake("/logged"))
        self.assertEcho(c, OP_BINARY, b"\x01\x02\x03")
        self.close_handshake(c)
        self.assertTrue(c.closed_by_peer())
        # The proxy's FIN only ends backend -> client; the tunnel (and its log line) ends when
        # the client closes its side too, as a WebSocket client does after the server's FIN.
        c.close()
        r = request(self.proxy.port, "GET", "/normal")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["target"], "/normal")
        self.assertTrue(self.proxy.alive())
        def logged():
            return next((x for x in self.proxy.access_log() if x.get("target") == "/logged"),
                        None)

        try:
            line = wait_until(logged, 10, what="an access-log line for /logged")
        except AssertionError as e:
            raise AssertionError(f"{e}; access log now: {self.proxy.access_log()}; "
                                 f"stdout tail: {self.proxy.stdout()[-1000:]!r}") from None
        self.assertEqual(line["status"], 101, line)
        self.assertEqual((line["route"], line["upstream"], line["method"]),
                         ("origin", "origin", "GET"), line)
        self.assertEqual(self.proxy.bad_log_lines(), [])

    # (g)
    def test_half_close_client_still_receives_pending_reply(self):
        c = self.ws_client(self.proxy.port)
        self.assert101(c, c.handshake("/half-close"))
        c.send_text("first")
        c.send_binary(pattern_bytes(5000))
        c.sock.shutdown(socket.SHUT_WR)
        # The backend answers only after it saw EOF: the proxy must pass the FIN on and keep
        # relaying backend -> client.
        self.assertEqual(c.recv(), (OP_TEXT, b"first"))
        self.assertEqual(c.recv(), (OP_BINARY, pattern_bytes(5000)))
        self.assertEqual(c.recv(), (OP_TEXT, b"eof after 2"))
        self.assertTrue(c.closed_by_peer(), "the proxy should close once the backend closed")
        self.assertIn("eof", self.origin.events)
        self.assertEqual(self.origin.errors, [])

    def test_other_protocol_is_tunnelled_as_raw_bytes(self):
        with RawClient(self.proxy.port) as c:
            c.send(build_request("GET", "/raw", headers=[("Upgrade", "x-raw-echo"),
                                                          ("Connection", "Upgrade")]))
            r = c.read_response()
            self.assertEqual(r.status, 101, r)
            self.assertIn("x-raw-echo", (r.header("upgrade") or "").lower(), r)
            (_, _, _, h), = self.origin.requests
            self.assertEqual(h.get("upgrade"), "x-raw-echo", h)
            data = pattern_bytes(100 * 1024)
            c.send(data)
            c.sock.shutdown(socket.SHUT_WR)
            got = b"".join(c.reader.iter_to_eof())
            self.assertEqual(hashlib.sha256(got).hexdigest(), hashlib.sha256(data).hexdigest())

    def test_concurrent_tunnels_are_independent(self):
        errors, done = [], []

        def worker(i):
            c = None
            try:
                c = WSClient(self.proxy.port)
                r = c.handshake(f"/c/{i}")
                if r.status != 101:
                    raise AssertionError(f"client {i}: {r}")
                for j in range(20):
                    msg = f"{i}:{j}:".encode() + os.urandom(j * 50)
                    c.send(OP_BINARY, msg)
                    if c.recv() != (OP_BINARY, msg):
                        raise AssertionError(f"client {i}: message {j} mangled")
                done.append(i)
            except Exception as e:  # reported below
                errors.append(f"{i}: {e!r}")
            finally:
                if c is not None:
                    c.close()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        self.assertEqual(errors, [])
        self.assertEqual(sorted(done), list(range(6)))


class TunnelIdleTimeoutTest(WSTestCase):
    def test_idle_tunnel_is_closed_after_timeouts_tunnel_idle(self):
        # timeouts.idle (keep-alive) is short too: the tunnel must not use it.
        origin, cf, proxy = self.start_ws_all(timeouts={"tunnel_idle": "1s", "idle": "200ms"})
        c = self.ws_client(proxy.port)
        self.assert101(c, c.handshake())
        # Traffic keeps it open well past the idle timeout ...
        for i in range(8):
            self.assertEcho(c, OP_TEXT, f"keepalive {i}".encode())
            time.sleep(0.3)
        # ... and silence closes it.
        start = time.monotonic()
        self.assertTrue(c.closed_by_peer(timeout=6.0), "an idle tunnel should be closed")
        elapsed = time.monotonic() - start
        self.assertGreater(elapsed, 0.5, f"closed after {elapsed:.2f}s, before the idle timeout")
        wait_until(lambda: "eof" in origin.events, 5, what="the backend side to be closed too")


if __name__ == "__main__":
    unittest.main()
