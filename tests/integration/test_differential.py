"""Differential tests: tables of malformed and borderline raw HTTP/1.1 messages pushed through the
real proxy, each row checked against exactly one expected outcome.

Request table: every row is sent in ONE sendall on a fresh connection. The row expects either
  - a status (int): the proxy answers that error itself and NO backend receives a single byte
    (no connection, no bytes, no recorded request), or
  - Fwd(...) (or a list of them for a pipelined row): exactly those requests reach the named
    backend, the other backend receives nothing, and what arrived is re-parsed strictly from the
    raw bytes on the wire: one Host with the expected value, never both Content-Length and
    Transfer-Encoding, Transfer-Encoding only as exactly "chunked", Content-Length equal to the
    body received, the expected body, no hop-by-hop fields, no stray bytes; the client gets the
    backend's status.

Response table: the origin answers GET /raw/NAME with canned bytes; each row expects 502 from
the proxy, a relayed response, or (NO_SPLIT) "whatever happens, the client sees one strictly
well-formed response and no injected field".

One proxy and one pair of backends per TestCase class; the backends are reset between rows.
"""

from __future__ import annotations

import dataclasses
import re
import time
import unittest

from wkharness import Proxy, RawRecordingBackend, exchange_raw, make_config

DOMAINS = ("example.com", "www.example.com")
HOST = "example.com"
VP = b"/.well-known/pki-validation/"  # the validation prefix
READ_TIMEOUT = 3.0   # per row: how long the client waits for the proxy's answer
SETTLE = 0.05        # after the answer, before looking at the backends

ANY = object()  # Fwd.host: any single non-empty Host value


@dataclasses.dataclass(frozen=True)
class Fwd:
    """One request expected at a backend (and the backend's answer expected at the client)."""
    backend: str = "origin"
    method: str = "GET"
    target: str = "/"
    host: object = HOST           # str, or ANY
    body: bytes = b""
    headers: tuple = ()           # ((name, exact value bytes), ...) that must arrive as given
    absent: tuple = ()            # field names that must not arrive
    status: int = 200


def req(*lines: bytes, body: bytes = b"") -> bytes:
    """Request bytes: the lines joined with CRLF, the empty line, then the body."""
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


H = b"Host: example.com"
CHUNKED_ABC = b"3\r\nabc\r\n0\r\n\r\n"
VPATH = "/.well-known/pki-validation/abc.txt"


def post(*fields: bytes, body: bytes = b"", target: bytes = b"/p", version=b"HTTP/1.1") -> bytes:
    return req(b"POST " + target + b" " + version, H, *fields, body=body)


def get_with(*fields: bytes, target: bytes = b"/g") -> bytes:
    return req(b"GET " + target + b" HTTP/1.1", H, *fields)


def many_fields(n: int, size: int = 1) -> list[bytes]:
    return [b"X-F%d: %s" % (i, b"v" * size) for i in range(n)]


# ------------------------------------------------------------------------------------------------
# The request table: (name, raw bytes, expected)

REQUEST_ROWS = [
    # -- Content-Length together with Transfer-Encoding: always 400 --------------------------
    ("cl_then_te", post(b"Content-Length: 3", b"Transfer-Encoding: chunked", body=CHUNKED_ABC),
     400),
    ("te_then_cl", post(b"Transfer-Encoding: chunked", b"Content-Length: 3", body=CHUNKED_ABC),
     400),
    ("smuggle_cl_te", post(b"Content-Length: 13", b"Transfer-Encoding: chunked",
                           body=b"0\r\n\r\nSMUGGLED"), 400),
    ("smuggle_te_cl", post(b"Content-Length: 3", b"Transfer-Encoding: chunked",
                           body=b"8\r\nSMUGGLED\r\n0\r\n\r\n"), 400),
    ("smuggle_cl_te_get_prefix", post(b"Content-Length: 35", b"Transfer-Encoding: chunked",
                                      body=b"0\r\n\r\nGET /admin HTTP/1.1\r\nX-Ignore: x"), 400),
    ("cl_and_te_ows_lowercase_names", post(b"content-length: 3",
                                           b"transfer-encoding:  chunked ", body=CHUNKED_ABC),
     400),
    ("cl_zero_and_te", post(b"Content-Length: 0", b"Transfer-Encoding: chunked",
                            body=b"0\r\n\r\n"), 400),

    # -- Transfer-Encoding ----------------------------------------------------------------------
    ("te_chunked_ok", post(b"Transfer-Encoding: chunked", body=CHUNKED_ABC),
     Fwd(method="POST", target="/p", body=b"abc")),
    ("te_chunked_uppercase_ok", post(b"Transfer-Encoding: CHUNKED", body=CHUNKED_ABC),
     Fwd(method="POST", target="/p", body=b"abc")),
    ("te_chunked_surrounding_ows_ok", post(b"Transfer-Encoding: \t chunked \t",
                                           body=CHUNKED_ABC),
     Fwd(method="POST", target="/p", body=b"abc")),
    ("te_empty_value", post(b"Transfer-Encoding: ", body=CHUNKED_ABC), 400),
    ("te_leading_empty_element", post(b"Transfer-Encoding: ,chunked", body=CHUNKED_ABC), 400),
    ("te_trailing_empty_element", post(b"Transfer-Encoding: chunked,", body=CHUNKED_ABC), 400),
    ("te_parameter", post(b"Transfer-Encoding: chunked;q=1", body=CHUNKED_ABC), 400),
    ("te_non_token_char", post(b"Transfer-Encoding: chunked@", body=CHUNKED_ABC), 400),
    ("te_chunked_twice_one_line", post(b"Transfer-Encoding: chunked, chunked",
                                       body=CHUNKED_ABC), 400),
    ("te_chunked_twice_two_lines", post(b"Transfer-Encoding: chunked",
                                        b"Transfer-Encoding: chunked", body=CHUNKED_ABC), 400),
    ("te_chunked_not_last", post(b"Transfer-Encoding: chunked, identity", body=CHUNKED_ABC),
     400),
    ("te_gzip_chunked_unknown_coding", post(b"Transfer-Encoding: gzip, chunked",
                                            body=CHUNKED_ABC), 501),
    ("te_xchunked_unknown_coding", post(b"Transfer-Encoding: xchunked", body=CHUNKED_ABC), 501),
    ("te_identity_unknown_coding", post(b"Transfer-Encoding: identity", body=b"abc"), 501),
    ("te_in_http10", post(b"Transfer-Encoding: chunked", body=CHUNKED_ABC,
                          version=b"HTTP/1.0"), 400),
    ("te_space_before_colon", post(b"Transfer-Encoding : chunked", body=CHUNKED_ABC), 400),

    # -- Content-Length -------------------------------------------------------------------------
    ("cl_plain_ok", post(b"Content-Length: 3", body=b"abc"),
     Fwd(method="POST", target="/p", body=b"abc")),
    ("cl_zero_ok", post(b"Content-Length: 0"), Fwd(method="POST", target="/p")),
    ("cl_plus_sign", post(b"Content-Length: +3", body=b"abc"), 400),
    ("cl_minus_sign", post(b"Content-Length: -3", body=b"abc"), 400),
    ("cl_hex", post(b"Content-Length: 0x3", body=b"abc"), 400),
    ("cl_inner_space", post(b"Content-Length: 1 2", body=b"abcdefghijkl"), 400),
    ("cl_empty_value", post(b"Content-Length: ", body=b"abc"), 400),
    ("cl_overflow_30_digits", post(b"Content-Length: " + b"9" * 30, body=b"abc"), 400),
    ("cl_list_different", post(b"Content-Length: 3, 4", body=b"abcd"), 400),
    ("cl_two_lines_different", post(b"Content-Length: 3", b"Content-Length: 4", body=b"abcd"),
     400),
    ("cl_list_identical", post(b"Content-Length: 3, 3", body=b"abc"),
     Fwd(method="POST", target="/p", body=b"abc")),
    ("cl_two_lines_identical", post(b"Content-Length: 3", b"Content-Length: 3", body=b"abc"),
     Fwd(method="POST", target="/p", body=b"abc")),

    # -- chunked bodies (the whole body in the same send) ---------------------------------------
    ("chunk_size_not_hex", post(b"Transfer-Encoding: chunked", body=b"zz\r\nabc\r\n0\r\n\r\n"),
     400),
    ("chunk_size_0x_prefix", post(b"Transfer-Encoding: chunked",
                                  body=b"0x3\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk_size_overflow_20_f", post(b"Transfer-Encoding: chunked",
                                      body=b"f" * 20 + b"\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk_size_bare_lf", post(b"Transfer-Encoding: chunked", body=b"3\nabc\r\n0\r\n\r\n"),
     400),
    ("chunk_data_bare_lf", post(b"Transfer-Encoding: chunked", body=b"3\r\nabc\n0\r\n\r\n"),
     400),
    ("chunk_last_chunk_bare_lf", post(b"Transfer-Encoding: chunked",
                                      body=b"3\r\nabc\r\n0\n\n"), 400),
    ("chunk_data_missing_crlf", post(b"Transfer-Encoding: chunked",
                                     body=b"3\r\nabc0\r\n\r\n"), 400),
    ("chunk_data_longer_than_size", post(b"Transfer-Encoding: chunked",
                                         body=b"3\r\nabcdef\r\n0\r\n\r\n"), 400),
    ("chunk_size_trailing_space", post(b"Transfer-Encoding: chunked",
                                       body=b"3 \r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk_extension_ok", post(b"Transfer-Encoding: chunked",
                                body=b"3;a=b\r\nabc\r\n0\r\n\r\n"),
     Fwd(method="POST", target="/p", body=b"abc")),
    ("chunk_several_uppercase_hex_and_trailer_ok",
     post(b"Transfer-Encoding: chunked",
          body=b"A\r\n0123456789\r\n2\r\nab\r\n0\r\nX-Trailer: 1\r\n\r\n"),
     Fwd(method="POST", target="/p", body=b"0123456789ab", absent=("x-trailer",))),
    # Trailer fields never become header fields at the backend (found by fuzz_request: the
    # parser merges trailers into the header it parsed; the upstream header is built before).
    ("chunk_trailers_never_promoted_to_headers",
     post(b"Transfer-Encoding: chunked",
          body=b"3\r\nabc\r\n0\r\nHost: evil.example\r\nAuthorization: Basic eA==\r\n"
               b"X-Injected: 1\r\n\r\n"),
     Fwd(method="POST", target="/p", body=b"abc", absent=("x-injected", "authorization"))),
    ("chunk_trailer_content_length", post(b"Transfer-Encoding: chunked",
                                          body=b"3\r\nabc\r\n0\r\nContent-Length: 9\r\n\r\n"),
     400),

    # -- field syntax ---------------------------------------------------------------------------
    ("obs_fold_sp", get_with(b"X-A: a", b" b"), 400),
    ("obs_fold_htab", get_with(b"X-A: a", b"\tb"), 400),
    ("obs_fold_first_field_line", req(b"GET / HTTP/1.1", b" X-A: a", H), 400),
    ("space_before_colon", get_with(b"X-A : 1"), 400),
    ("htab_before_colon", get_with(b"X-A\t: 1"), 400),
    ("host_space_before_colon", req(b"GET / HTTP/1.1", b"Host : example.com"), 400),
    ("empty_field_name", get_with(b": value"), 400),
    ("field_name_paren", get_with(b"X(A): 1"), 400),
    ("field_name_inner_space", get_with(b"X A: 1"), 400),
    ("field_without_colon", get_with(b"Broken"), 400),
    ("value_nul", get_with(b"X-A: a\x00b"), 400),
    ("value_ctl_0x01", get_with(b"X-A: a\x01b"), 400),
    ("value_del_0x7f", get_with(b"X-A: a\x7fb"), 400),
    ("value_bare_cr", get_with(b"X-A: a\rX-Injected: 1"), 400),
    ("request_line_bare_cr", b"GET / HTTP/1.1\rHost: example.com\r\n\r\n", 400),
    ("field_line_bare_lf", b"GET / HTTP/1.1\r\nX-A: 1\nHost: example.com\r\n\r\n", 400),
    ("request_line_bare_lf", b"GET / HTTP/1.1\nHost: example.com\r\n\r\n", 400),
    ("all_bare_lf", b"GET / HTTP/1.1\nHost: example.com\n\n", 400),
    ("value_obs_text_ok", get_with(b"X-A: caf\xe9 \xff!"),
     Fwd(target="/g", headers=(("x-a", b"caf\xe9 \xff!"),))),
    ("value_inner_htab_ok", get_with(b"X-A: a\tb"),
     Fwd(target="/g", headers=(("x-a", b"a\tb"),))),
    ("hop_by_hop_removed", get_with(b"Connection: keep-alive, X-Hop", b"X-Hop: 1",
                                    b"Keep-Alive: timeout=5", b"TE: trailers",
                                    b"Proxy-Connection: keep-alive", b"X-End: 2"),
     Fwd(target="/g", headers=(("x-end", b"2"),), absent=("x-hop",))),

    # -- Host -----------------------------------------------------------------------------------
    ("host_missing_http11", req(b"GET / HTTP/1.1", b"X-A: 1"), 400),
    ("host_twice_same", req(b"GET / HTTP/1.1", H, H), 400),
    ("host_twice_different", req(b"GET / HTTP/1.1", H, b"Host: evil.example"), 400),
    ("host_inner_space", req(b"GET / HTTP/1.1", b"Host: exa mple.com"), 400),
    ("host_userinfo", req(b"GET / HTTP/1.1", b"Host: a@b"), 400),
    ("host_bad_port", req(b"GET / HTTP/1.1", b"Host: example.com:abc"), 400),
    ("host_empty", req(b"GET / HTTP/1.1", b"Host: "), 400),
    ("host_with_port_ok", req(b"GET /hp HTTP/1.1", b"Host: example.com:8080"),
     Fwd(target="/hp", host="example.com:8080")),
    ("http10_without_host_ok", req(b"GET /old HTTP/1.0", b"X-A: 1"),
     Fwd(target="/old", host=ANY)),
    ("http10_with_host_and_body_ok", post(b"Content-Length: 3", body=b"abc",
                                          version=b"HTTP/1.0"),
     Fwd(method="POST", target="/p", body=b"abc")),

    # -- Connection naming fields the proxy owns: never removes them -----------------------------
    ("connection_names_host", get_with(b"Connection: Host"), Fwd(target="/g")),
    ("connection_names_host_lowercase_list", get_with(b"Connection: keep-alive, host"),
     Fwd(target="/g")),
    ("connection_names_host_validation_route",
     req(b"GET " + VP + b"abc.txt HTTP/1.1", H, b"Connection: Host"),
     Fwd(backend="cloudfront", target=VPATH)),
    ("connection_names_content_length", post(b"Content-Length: 3", b"Connection: Content-Length",
                                             body=b"abc"),
     Fwd(method="POST", target="/p", body=b"abc")),
    ("connection_names_transfer_encoding", post(b"Transfer-Encoding: chunked",
                                                b"Connection: Transfer-Encoding",
                                                body=CHUNKED_ABC),
     Fwd(method="POST", target="/p", body=b"abc")),
    ("connection_names_x_forwarded_for", get_with(b"Connection: X-Forwarded-For",
                                                  b"X-Forwarded-For: 10.6.6.6"),
     Fwd(target="/g", headers=(("x-forwarded-for", b"127.0.0.1"),))),

    # -- request line ---------------------------------------------------------------------------
    ("rl_two_spaces", req(b"GET  / HTTP/1.1", H), 400),
    ("rl_trailing_space", req(b"GET / HTTP/1.1 ", H), 400),
    ("rl_tab_separator", req(b"GET\t/ HTTP/1.1", H), 400),
    ("rl_http09_form", b"GET /\r\n", 400),
    ("rl_version_suffix", req(b"GET / HTTP/1.1x", H), 400),
    ("rl_version_lowercase", req(b"GET / http/1.1", H), 400),
    ("rl_target_ctl", req(b"GET /a\x01b HTTP/1.1", H), 400),
    ("rl_target_high_byte", req(b"GET /caf\xe9 HTTP/1.1", H), 400),
    ("rl_method_non_token", req(b"GE(T / HTTP/1.1", H), 400),
    ("rl_version_1_2", req(b"GET / HTTP/1.2", H), 505),
    ("rl_version_2_0", req(b"GET / HTTP/2.0", H), 505),
    ("rl_version_3_0", req(b"GET / HTTP/3.0", H), 505),
    ("rl_leading_crlf_ok", b"\r\n" + req(b"GET /lead HTTP/1.1", H), Fwd(target="/lead")),
    ("rl_two_leading_crlf_ok", b"\r\n\r\n" + req(b"GET /lead HTTP/1.1", H),
     Fwd(target="/lead")),
    ("rl_connect", req(b"CONNECT example.com:443 HTTP/1.1", b"Host: example.com:443"), 405),
    ("rl_absolute_form_ok", req(b"GET http://www.example.com/x HTTP/1.1", b"Host: other.example"),
     Fwd(target="/x", host="www.example.com")),
    ("rl_options_asterisk_ok", req(b"OPTIONS * HTTP/1.1", H), Fwd(method="OPTIONS", target="*")),
    ("rl_extension_method_ok", req(b"PURGE /m HTTP/1.1", H), Fwd(method="PURGE", target="/m")),

    # -- limits (defaults) ----------------------------------------------------------------------
    ("target_over_8192", req(b"GET /" + b"a" * 8192 + b" HTTP/1.1", H), 414),
    ("target_exactly_8192_ok", req(b"GET /" + b"a" * 8191 + b" HTTP/1.1", H),
     Fwd(target="/" + "a" * 8191)),
    ("header_section_one_40k_field", get_with(b"X-Big: " + b"a" * (40 * 1024)), 431),
    ("header_section_over_32k_many_fields", get_with(*many_fields(40, 900)), 431),
    ("fields_101", get_with(*many_fields(100)), 431),
    ("fields_100_ok", get_with(*many_fields(99)), Fwd(target="/g")),

    # -- the validation route -------------------------------------------------------------------
    ("validation_get_ok", req(b"GET " + VP + b"abc.txt HTTP/1.1", H),
     Fwd(backend="cloudfront", target=VPATH)),
    ("validation_head_ok", req(b"HEAD " + VP + b"abc.txt HTTP/1.1", H),
     Fwd(backend="cloudfront", method="HEAD", target=VPATH)),
    ("validation_www_host_ok", req(b"GET " + VP + b"a-b_c.1 HTTP/1.1", b"Host: www.example.com"),
     Fwd(backend="cloudfront", target=VPATH[:-7] + "a-b_c.1", host="www.example.com")),
    ("validation_escaped_unreserved_canonical", req(b"GET " + VP + b"%61bc.txt HTTP/1.1", H),
     Fwd(backend="cloudfront", target=VPATH)),
    ("validation_absolute_form", req(b"GET http://example.com" + VP + b"abc.txt HTTP/1.1",
                                     b"Host: evil.example"),
     Fwd(backend="cloudfront", target=VPATH)),
    ("validation_encoded_dotdot", req(b"GET " + VP + b"%2e%2e/x HTTP/1.1", H), 400),
    ("validation_encoded_slash", req(b"GET " + VP + b"a%2Fb HTTP/1.1", H), 400),
    ("validation_encoded_slash_in_prefix", req(b"GET /.well-known%2Fpki-validation/x HTTP/1.1",
                                               H), 400),
    ("validation_backslash", req(b"GET " + VP + b"a\\b HTTP/1.1", H), 400),
    ("validation_backslash_in_prefix", req(b"GET /.well-known\\pki-validation/x HTTP/1.1", H),
     400),
    ("validation_post_goes_to_origin", req(b"POST " + VP + b"abc.txt HTTP/1.1", H,
                                           b"Content-Length: 3", body=b"abc"),
     Fwd(method="POST", target=VPATH, body=b"abc")),
    ("validation_foreign_host_goes_to_origin", req(b"GET " + VP + b"abc.txt HTTP/1.1",
                                                   b"Host: evil.example"),
     Fwd(target=VPATH, host="evil.example")),
    ("validation_nested_path_goes_to_origin", req(b"GET " + VP + b"a/b.txt HTTP/1.1", H),
     Fwd(target=VPATH[:-7] + "a/b.txt")),

    # -- pipelining: both requests forwarded in order, each well-formed -------------------------
    ("pipelined_two_gets", req(b"GET /one HTTP/1.1", H) + req(b"GET /two HTTP/1.1", H),
     [Fwd(target="/one"), Fwd(target="/two")]),
    ("pipelined_post_cl_then_get", post(b"Content-Length: 3", body=b"abc")
     + req(b"GET /two HTTP/1.1", H),
     [Fwd(method="POST", target="/p", body=b"abc"), Fwd(target="/two")]),
    ("pipelined_chunked_then_validation", post(b"Transfer-Encoding: chunked", body=CHUNKED_ABC)
     + req(b"GET " + VP + b"abc.txt HTTP/1.1", H),
     [Fwd(method="POST", target="/p", body=b"abc"), Fwd(backend="cloudfront", target=VPATH)]),
]


# ------------------------------------------------------------------------------------------------
# Strict re-parsing of what a backend received on the wire


_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) (HTTP/1\.[01])")
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] [1-5][0-9][0-9] [\t\x20-\x7e\x80-\xff]*")
_FIELD_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*"
                          rb"[\x21-\x7e\x80-\xff])?)?")
_CHUNK_EXT = (rb"(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN
              + rb"|\"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*\"))?)*")
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,15})" + _CHUNK_EXT)
_HOP_BY_HOP = ("keep-alive", "te", "proxy-connection")  # plus every field Connection names


class WireError(Exception):
    pass


@dataclasses.dataclass
class WireRequest:
    method: str
    target: str
    version: str
    fields: list  # [(lower-case name, value bytes)]
    body: bytes
    framing: str

    def values(self, name):
        return [v for n, v in self.fields if n == name]


def _strict_lines(head: bytes, what: str) -> list[bytes]:
    lines = head.split(b"\r\n")
    for line in lines:
        if b"\r" in line or b"\n" in line:
            raise WireError(f"bare CR or LF in {what} line {line!r}")
    return lines


def _strict_fields(lines: list[bytes], what: str) -> list:
    fields = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            raise WireError(f"obs-fold in {what}: {line!r}")
        name, sep, rest = line.partition(b":")
        if not sep or not re.fullmatch(_TOKEN, name):
            raise WireError(f"bad field line in {what}: {line!r}")
        value = rest.strip(b" \t")
        if not _FIELD_VALUE.fullmatch(value):
            raise WireError(f"invalid character in {what} field value: {line!r}")
        fields.append((name.decode("ascii").lower(), value))
    return fields


def _read_line(data: bytes, pos: int, what: str):
    end = data.find(b"\r\n", pos)
    if end < 0:
        raise WireError(f"incomplete {what}: {data[pos:pos + 80]!r}")
    line = data[pos:end]
    if b"\r" in line or b"\n" in line:
        raise WireError(f"bare CR or LF in {what}: {line!r}")
    return line, end + 2


def parse_wire_requests(data: bytes) -> list[WireRequest]:
    """Every request in `data`, parsed strictly (RFC 9112, no leniency at all); WireError on
    anything malformed, ambiguous or incomplete, including trailing stray bytes."""
    out = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            raise WireError(f"stray bytes after {len(out)} request(s): {data[pos:pos + 200]!r}")
        lines = _strict_lines(data[pos:end], "request head")
        pos = end + 4
        m = _REQUEST_LINE.fullmatch(lines[0])
        if not m:
            raise WireError(f"bad request line {lines[0]!r}")
        fields = _strict_fields(lines[1:], "request")
        te = [v for n, v in fields if n == "transfer-encoding"]
        cl = [v for n, v in fields if n == "content-length"]
        if te and cl:
            raise WireError(f"both Transfer-Encoding {te} and Content-Length {cl}")
        if te:
            if [v.lower() for v in te] != [b"chunked"]:
                raise WireError(f"Transfer-Encoding is not exactly 'chunked': {te}")
            framing, body = "chunked", bytearray()
            while True:
                line, pos = _read_line(data, pos, "chunk-size line")
                cm = _CHUNK_LINE.fullmatch(line)
                if not cm:
                    raise WireError(f"bad chunk-size line {line!r}")
                size = int(cm.group(1), 16)
                if size == 0:
                    break
                if pos + size + 2 > len(data):
                    raise WireError("incomplete chunk data")
                body += data[pos:pos + size]
                pos += size
                if data[pos:pos + 2] != b"\r\n":
                    raise WireError(f"chunk data not followed by CRLF: {data[pos:pos + 20]!r}")
                pos += 2
            trailer_lines = []
            while True:
                line, pos = _read_line(data, pos, "trailer section")
                if not line:
                    break
                trailer_lines.append(line)
            _strict_fields(trailer_lines, "trailer")
            body = bytes(body)
        elif cl:
            if len(cl) != 1 or not re.fullmatch(rb"[0-9]{1,15}", cl[0]):
                raise WireError(f"Content-Length is not one plain number: {cl}")
            n = int(cl[0])
            if pos + n > len(data):
                raise WireError(f"Content-Length {n} but only {len(data) - pos} body bytes")
            framing, body = "length", data[pos:pos + n]
            pos += n
        else:
            framing, body = "none", b""
        out.append(WireRequest(m.group(1).decode("latin-1"), m.group(2).decode("latin-1"),
                               m.group(3).decode("ascii"), fields, body, framing))
    return out


def strict_response_head(head: bytes) -> list:
    """The fields of a response head (ending CRLF CRLF), parsed strictly; WireError if not."""
    if not head.endswith(b"\r\n\r\n"):
        raise WireError(f"response head does not end with CRLF CRLF: {head[-20:]!r}")
    lines = _strict_lines(head[:-4], "response head")
    if not _STATUS_LINE.fullmatch(lines[0]):
        raise WireError(f"bad status line {lines[0]!r}")
    return _strict_fields(lines[1:], "response")


# ------------------------------------------------------------------------------------------------


class _DifferentialBase(unittest.TestCase):
    """One proxy and two RawRecordingBackends for the whole class."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.origin = RawRecordingBackend("origin").start()
        cls.addClassCleanup(cls.origin.stop)
        cls.cf = RawRecordingBackend("cloudfront").start()
        cls.addClassCleanup(cls.cf.stop)
        cls.backends = {"origin": cls.origin, "cloudfront": cls.cf}
        cls.proxy = Proxy(make_config(cls.origin.url, cls.cf.url, domains=DOMAINS))
        cls.addClassCleanup(cls.proxy.stop)
        cls.proxy.start()

    def setUp(self):
        self.assertTrue(self.proxy.alive(), "wkproxy is not running")

    def reset_backends(self):
        for b in self.backends.values():
            b.reset()

    def backend_state(self) -> str:
        return "; ".join(f"{n}: {b.connections} new conn, {b.bytes_received} bytes "
                         f"{b.received[:300]!r}, requests {b.requests}, errors {b.errors}"
                         for n, b in self.backends.items())

    def assertNothingReceived(self, backend, why=""):
        self.assertEqual((backend.connections, backend.bytes_received, backend.requests),
                         (0, 0, []),
                         f"backend {backend.name} must receive nothing{why}; "
                         f"{self.backend_state()}")


class RequestTableTest(_DifferentialBase):
    def test_request_rows(self):
        self.assertGreaterEqual(len(REQUEST_ROWS), 70)
        names = [r[0] for r in REQUEST_ROWS]
        self.assertEqual(len(names), len(set(names)), "row names must be unique")
        for name, data, expected in REQUEST_ROWS:
            with self.subTest(name):
                self.run_row(data, expected)
        self.assertTrue(self.proxy.alive(), "wkproxy died during the table")

    def run_row(self, data: bytes, expected):
        self.reset_backends()
        fwds = None if isinstance(expected, int) else (
            list(expected) if isinstance(expected, list) else [expected])
        methods = ["GET"] if fwds is None else [f.method for f in fwds]
        ex = exchange_raw(self.proxy.port, data, responses=len(methods), method=methods,
                          timeout=READ_TIMEOUT)
        time.sleep(SETTLE)
        self.assertEqual(len(ex.responses), len(methods),
                         f"expected {len(methods)} response(s): {ex.problem}; got "
                         f"{ex.raw[:300]!r}; {self.backend_state()}")
        for r in ex.responses:
            try:
                strict_response_head(r.raw_head)
            except WireError as e:
                self.fail(f"the client got a malformed response head: {e}")
        if fwds is None:
            self.check_rejected(ex.responses[0], expected)
        else:
            self.check_forwarded(ex.responses, fwds)

    def check_rejected(self, resp, status):
        self.assertEqual(resp.status, status,
                         f"got {resp.status} {resp.reason!r}, expected {status} from the proxy; "
                         f"{self.backend_state()}")
        self.assertIsNone(resp.header("x-backend"), f"the error came from a backend: {resp}")
        for b in self.backends.values():
            self.assertNothingReceived(b, f" for a {status} row")

    def check_forwarded(self, responses, fwds):
        for resp, f in zip(responses, fwds):
            self.assertEqual((resp.status, resp.header("x-backend")), (f.status, f.backend),
                             f"client got {resp.status} {resp.reason!r} "
                             f"(body {resp.body[:200]!r}), expected the {f.backend}'s {f.status}; "
                             f"{self.backend_state()}")
        for bname, backend in self.backends.items():
            want = [f for f in fwds if f.backend == bname]
            self.assertEqual(backend.errors, [], f"{bname} could not parse what it got")
            if not want:
                self.assertNothingReceived(backend, " (the other backend got the request)")
                continue
            if backend.bytes_received > backend.RAW_KEEP:
                self.fail(f"{bname} got {backend.bytes_received} bytes, more than kept")
            try:
                wire = parse_wire_requests(backend.received)
            except WireError as e:
                self.fail(f"{bname} received a malformed stream: {e}; "
                          f"bytes {backend.received[:500]!r}")
            self.assertEqual(len(wire), len(want),
                             f"{bname} should get exactly {len(want)} request(s): {wire}")
            recs = backend.requests
            self.assertEqual(len(recs), len(want), recs)
            for w, rec, f in zip(wire, recs, want):
                self.check_one(bname, w, f)
                self.assertTrue(rec.complete, f"{bname}'s request body did not complete: {rec}")
                self.assertEqual(rec.body, f.body, rec)

    def check_one(self, bname, w: WireRequest, f: Fwd):
        where = f"request at {bname}: {w}"
        self.assertEqual((w.method, w.target), (f.method, f.target), where)
        hosts = w.values("host")
        if f.host is ANY:
            self.assertEqual(len(hosts), 1, where)
            self.assertNotEqual(hosts[0], b"", where)
        else:
            self.assertEqual(hosts, [f.host.encode("latin-1")], where)
        te, cl = w.values("transfer-encoding"), w.values("content-length")
        self.assertFalse(te and cl, where)
        self.assertIn(te, ([], [b"chunked"]), where)
        if cl:
            self.assertEqual(cl, [str(len(w.body)).encode()], where)
        self.assertEqual(w.body, f.body, where)
        names = [n for n, _ in w.fields]
        connection_named = {t.strip().lower().decode("latin-1")
                            for v in w.values("connection") for t in v.split(b",")} - {""}
        for hop in (set(_HOP_BY_HOP) | connection_named | {a.lower() for a in f.absent}) - {
                "close"}:
            self.assertNotIn(hop, names, f"hop-by-hop field {hop!r} forwarded; {where}")
        for hname, value in f.headers:
            self.assertEqual(w.values(hname), [value], where)


class WireParserSelfTest(unittest.TestCase):
    """The strict checker itself must reject what the rows rely on it to reject."""

    GOOD = b"POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n\r\nabc"

    def test_accepts_well_formed_streams(self):
        (w,) = parse_wire_requests(self.GOOD)
        self.assertEqual((w.method, w.target, w.body, w.framing), ("POST", "/p", b"abc", "length"))
        (w,) = parse_wire_requests(b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                                   b"\r\n\r\n3;x=\"y\"\r\nabc\r\n0\r\nT: 1\r\n\r\n")
        self.assertEqual((w.body, w.framing), (b"abc", "chunked"))
        self.assertEqual(len(parse_wire_requests(self.GOOD + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")),
                         2)
        (w,) = parse_wire_requests(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: caf\xe9\tx\r\n\r\n")
        self.assertEqual(w.values("x-a"), [b"caf\xe9\tx"])

    def test_rejects_malformed_streams(self):
        bad = {
            "CL and TE": b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked"
                         b"\r\n\r\n0\r\n\r\n",
            "TE not chunked": b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                              b"0\r\n\r\n",
            "TE twice": b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "CL twice": b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na",
            "CL list": b"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\na",
            "short body": b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nabc",
            "stray bytes": self.GOOD + b"X",
            "obs-fold": b"GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n",
            "bare LF": b"GET / HTTP/1.1\r\nX-A: a\nX-B: b\r\n\r\n",
            "bare CR": b"GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n",
            "NUL": b"GET / HTTP/1.1\r\nX-A: a\x00b\r\n\r\n",
            "space before colon": b"GET / HTTP/1.1\r\nX-A : a\r\n\r\n",
            "bad request line": b"GET  / HTTP/1.1\r\n\r\n",
            "chunk size space": b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc"
                                b"\r\n0\r\n\r\n",
            "chunk missing CRLF": b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc0"
                                  b"\r\n\r\n",
            "unfinished chunked": b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc"
                                  b"\r\n",
        }
        for name, data in bad.items():
            with self.subTest(name):
                with self.assertRaises(WireError):
                    parse_wire_requests(data)
        with self.assertRaises(WireError):
            strict_response_head(b"HTTP/1.1 200 OK\r\nX-A: a\rX-B: b\r\n\r\n")
        self.assertEqual(strict_response_head(b"HTTP/1.1 200 OK\r\nX-A: a b\r\n\r\n"),
                         [("x-a", b"a b")])


# ------------------------------------------------------------------------------------------------
# The response table: what the origin answers to GET /raw/NAME, and what the client must see.

NO_SPLIT = "no-split"  # 502, or a relayed response without the injected field; never two


@dataclasses.dataclass(frozen=True)
class Relayed:
    status: int = 200
    body: bytes = b"hello"
    fields: tuple = ()  # ((name, regex on the value bytes), ...)


def resp(*lines: bytes, body: bytes = b"hello") -> bytes:
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


OK = b"HTTP/1.1 200 OK"
CL5 = b"Content-Length: 5"
CHUNKED_HELLO = b"5\r\nhello\r\n0\r\n\r\n"

RESPONSE_ROWS = [
    ("resp_plain_ok", resp(OK, CL5), Relayed()),
    ("resp_chunked_ok", resp(OK, b"Transfer-Encoding: chunked", body=CHUNKED_HELLO), Relayed()),
    ("resp_obs_fold_relayed_as_space", resp(OK, b"X-Fold: a", b" b", CL5),
     Relayed(fields=(("x-fold", rb"a +b"),))),
    ("resp_obs_fold_htab_relayed_as_space", resp(OK, b"X-Fold: a", b"\tb", CL5),
     Relayed(fields=(("x-fold", rb"a +b"),))),
    ("resp_cl_and_te", resp(OK, CL5, b"Transfer-Encoding: chunked", body=CHUNKED_HELLO), 502),
    ("resp_te_and_cl", resp(OK, b"Transfer-Encoding: chunked", CL5, body=CHUNKED_HELLO), 502),
    ("resp_two_different_cl", resp(OK, CL5, b"Content-Length: 7", body=b"hello!!"), 502),
    ("resp_cl_list_different", resp(OK, b"Content-Length: 5, 7", body=b"hello!!"), 502),
    ("resp_bare_lf_everywhere", b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello", 502),
    ("resp_bare_lf_one_field", resp(OK, b"X-A: 1\nContent-Length: 5"), 502),
    ("resp_value_nul", resp(OK, b"X-A: a\x00b", CL5), 502),
    ("resp_not_http", b"hello world\r\n\r\n", 502),
    ("resp_status_two_digits", resp(b"HTTP/1.1 20 OK", CL5), 502),
    ("resp_status_not_numeric", resp(b"HTTP/1.1 abc OK", CL5), 502),
    ("resp_bad_version", resp(b"HTTX/1.1 200 OK", CL5), 502),
    ("resp_te_gzip_chunked", resp(OK, b"Transfer-Encoding: gzip, chunked",
                                  body=CHUNKED_HELLO), 502),
    ("resp_te_identity", resp(OK, b"Transfer-Encoding: identity"), 502),
    ("resp_split_bare_cr", resp(OK, b"X-A: a\rX-Injected: 1", CL5), NO_SPLIT),
    ("resp_split_bare_lf", resp(OK, b"X-A: a\nX-Injected: 1", CL5), 502),
    ("resp_split_vt", resp(OK, b"X-A: a\x0bX-Injected: 1", CL5), NO_SPLIT),
    ("resp_split_cr_then_response", resp(OK, b"X-A: a\r\rHTTP/1.1 200 OK\rX-Injected: 1", CL5),
     NO_SPLIT),
]


class ResponseTableTest(_DifferentialBase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.origin.raw_responses.update({name: raw for name, raw, _ in RESPONSE_ROWS})

    def test_response_rows(self):
        for name, _, expected in RESPONSE_ROWS:
            with self.subTest(name):
                self.run_row(name, expected)
        self.assertTrue(self.proxy.alive(), "wkproxy died during the table")

    def run_row(self, name, expected):
        self.reset_backends()
        data = b"GET /raw/%s HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n" % (
            name.encode())
        ex = exchange_raw(self.proxy.port, data, timeout=READ_TIMEOUT, drain=True)
        self.assertEqual(len(ex.responses), 1, f"no complete response: {ex.problem}; "
                                               f"got {ex.raw[:300]!r}")
        r = ex.responses[0]
        try:
            fields = strict_response_head(r.raw_head)
        except WireError as e:
            self.fail(f"the client got a malformed response head: {e}")
        self.assertEqual(ex.leftover, b"", "bytes after the response: the response was split")
        self.assertNotIn("x-injected", [n for n, _ in fields], r.raw_head)
        self.assertEqual([x.target for x in self.origin.requests], [f"/raw/{name}"])
        self.assertNothingReceived(self.cf)
        if expected == NO_SPLIT:
            self.assertIn(r.status, (200, 502), r)
        elif isinstance(expected, int):
            self.assertEqual(r.status, expected, f"got {r.status} {r.raw_head!r}, "
                                                 f"expected {expected}")
        else:
            self.assertEqual((r.status, r.body), (expected.status, expected.body), r)
            for fname, pattern in expected.fields:
                values = [v for n, v in fields if n == fname]
                self.assertEqual(len(values), 1, r.raw_head)
                self.assertRegex(values[0], b"^(?:" + pattern + b")$", r.raw_head)


if __name__ == "__main__":
    unittest.main()
