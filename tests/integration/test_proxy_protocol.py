"""PROXY protocol on HTTP: accepted on a listener only from trusted ranges (accept_proxy_from),
with the carried client address used for X-Forwarded-For and the access log; and sent to an
origin (send_proxy_protocol v1/v2), with pooled connections never shared between clients.
"""

from __future__ import annotations

import socket
import ssl
import struct
import unittest

from wkharness import (PROXY_V2_SIGNATURE, TENANT, ProxyTestCase, RawClient, SocketReader,
                       build_request, wait_until)


def v2_header(src: str, dst: str, sport: int, dport: int, local=False) -> bytes:
    if local:
        return PROXY_V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    if ":" in src:
        body = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) +
                struct.pack("!HH", sport, dport))
        fam = 0x21
    else:
        body = (socket.inet_pton(socket.AF_INET, src) + socket.inet_pton(socket.AF_INET, dst) +
                struct.pack("!HH", sport, dport))
        fam = 0x11
    tlv = bytes([0x04, 0x00, 0x03]) + b"abc"  # a NOOP TLV, skipped
    return PROXY_V2_SIGNATURE + bytes([0x21, fam]) + struct.pack("!H", len(body) + len(tlv)) + \
        body + tlv


class AcceptTest(ProxyTestCase):
    def start_behind_balancer(self, ranges=("127.0.0.0/8",), **cfg):
        origin, cf, proxy = self.start_all(
            listen=({"address": "127.0.0.1:0", "accept_proxy_from": list(ranges)},), **cfg)
        return origin, proxy

    def test_v1_from_a_trusted_source_sets_the_client_address(self):
        origin, proxy = self.start_behind_balancer()
        c = self.client(proxy)
        c.send(b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 80\r\n")
        resp = c.request("GET", "/v1")
        self.assertEqual(resp.status, 200, resp)
        rec = origin.requests[-1]
        self.assertEqual(rec.headers.get_all("x-forwarded-for"), ["203.0.113.7"])
        resp = c.request("GET", "/again")  # the header is per connection, not per request
        self.assertEqual(origin.requests[-1].headers.get_all("x-forwarded-for"), ["203.0.113.7"])
        log = proxy.wait_for_log(2)
        self.assertEqual(log[0]["client"], "203.0.113.7:40000")

    def test_v2_with_ipv6_and_a_tlv_in_the_same_packet_as_the_request(self):
        origin, proxy = self.start_behind_balancer()
        c = self.client(proxy)
        c.send(v2_header("2001:db8::7", "2001:db8::1", 50000, 443) +
               build_request("GET", "/v2", TENANT))
        resp = c.read_response()
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(origin.requests[-1].headers.get_all("x-forwarded-for"), ["2001:db8::7"])
        self.assertEqual(proxy.wait_for_log(1)[0]["client"], "[2001:db8::7]:50000")

    def test_local_command_keeps_the_socket_address(self):
        origin, proxy = self.start_behind_balancer()
        c = self.client(proxy)
        c.send(v2_header("", "", 0, 0, local=True) + build_request("GET", "/health", TENANT))
        self.assertEqual(c.read_response().status, 200)
        self.assertEqual(origin.requests[-1].headers.get_all("x-forwarded-for"), ["127.0.0.1"])

    def test_missing_or_bad_header_closes_without_reaching_a_backend(self):
        origin, proxy = self.start_behind_balancer()
        for first in (build_request("GET", "/", TENANT), b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
                      b"PROXY TCP5 x\r\n"):
            with self.subTest(first=first[:20]):
                c = self.client(proxy)
                c.send(first)
                self.assertTrue(c.closed_by_peer(timeout=5))
        self.assertEqual(origin.requests, [])
        proxy.stop()
        self.assertIn("proxy_invalid=3", proxy.stderr())

    def test_untrusted_source_is_refused(self):
        origin, proxy = self.start_behind_balancer(ranges=("10.0.0.0/8", "2001:db8::/32"))
        c = self.client(proxy)
        c.send(b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 80\r\n" + build_request("GET", "/"))
        self.assertTrue(c.closed_by_peer(timeout=5))
        self.assertEqual(origin.requests, [])
        wait_until(lambda: "not in accept_proxy_from" in proxy.stderr(), 5,
                   what="the refusal to be logged")

    def test_tls_listener_behind_a_balancer(self):
        cert, key = self.ca.issue("pp-site", (TENANT,))
        origin, cf, proxy = self.start_all(listen=(
            {"address": "127.0.0.1:0", "mode": "tls", "accept_proxy_from": ["127.0.0.1"],
             "certificates": [{"cert": cert, "key": key}]},))
        c = self.client(proxy)
        c.send(b"PROXY TCP4 198.51.100.9 192.0.2.1 1234 443\r\n")
        ctx = ssl.create_default_context(cafile=self.ca.ca_pem)
        c.sock = ctx.wrap_socket(c.sock, server_hostname=TENANT)
        c.reader = SocketReader(c.sock)
        self.assertEqual(c.request("GET", "/tls").status, 200)
        rec = origin.requests[-1]
        self.assertEqual(rec.headers.get_all("x-forwarded-for"), ["198.51.100.9"])
        self.assertEqual(rec.headers.get_all("x-forwarded-proto"), ["https"])


class SendTest(ProxyTestCase):
    def start_with_pp_origin(self, version, listen=("127.0.0.1:0",)):
        origin = self.start_backend("origin", expect_proxy=True)
        cf = self.start_backend("cloudfront", tls=True)
        proxy = self.start_proxy({"url": origin.url, "send_proxy_protocol": version}, cf,
                                 listen=listen, workers=1)
        return origin, proxy

    def test_origin_receives_the_clients_address(self):
        for version in ("v1", "v2"):
            with self.subTest(version=version):
                origin, proxy = self.start_with_pp_origin(version)
                c = self.client(proxy)
                self.assertEqual(c.request("GET", "/a").status, 200)
                self.assertEqual(c.request("GET", "/b").status, 200)
                h = origin.proxy_headers
                self.assertEqual(len(h), 1, "one connection, one header, for both requests")
                self.assertEqual(h[0]["version"], int(version[1]))
                self.assertEqual((h[0]["src"], h[0]["src_port"]),
                                 ("127.0.0.1", c.sock.getsockname()[1]))
                self.assertEqual(h[0]["dst_port"], proxy.port)
                c.close()
                proxy.stop()

    def test_connections_are_never_shared_between_clients(self):
        origin, proxy = self.start_with_pp_origin("v2")
        ports = []
        for _ in range(3):
            c = RawClient(proxy.port)
            ports.append(c.sock.getsockname()[1])
            self.assertEqual(c.request("GET", "/x").status, 200)
            c.close()
        self.assertEqual([h["src_port"] for h in origin.proxy_headers], ports)
        self.assertEqual(origin.connections, 3)

    def test_the_carried_address_goes_on_to_the_origin(self):
        origin, proxy = self.start_with_pp_origin(
            "v2", listen=({"address": "127.0.0.1:0", "accept_proxy_from": ["127.0.0.1"]},))
        c = self.client(proxy)
        c.send(b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 80\r\n")
        self.assertEqual(c.request("GET", "/chain").status, 200)
        h = origin.proxy_headers[0]
        self.assertEqual((h["src"], h["src_port"], h["dst"], h["dst_port"]),
                         ("203.0.113.7", 40000, "192.0.2.1", 80))


if __name__ == "__main__":
    unittest.main()
