"""A stand-in for AWS, for wkproxy's integration tests: one HTTPS server on 127.0.0.1 that plays

  CloudFront   GetManagedCertificateDetails, GetDistributionTenant, GetConnectionGroup and
               VerifyDnsConfiguration (REST-XML under /2020-05-31/)
  STS          AssumeRole, AssumeRoleWithWebIdentity, GetCallerIdentity (Query API at /,
               form-encoded POST or GET)
  EC2 IMDSv2   /latest/api/token and /latest/meta-data/iam/security-credentials/...
  containers   /container-credentials (the ECS / EKS Pod Identity credentials endpoint)

with the checks that make a client's mistakes show: every CloudFront and signed STS request must
carry a valid AWS Signature Version 4. The signature is not recomputed by code of our own (that
would share a misreading of the spec with the client under test): the request is rebuilt as a
botocore AWSRequest from exactly what arrived and signed again by botocore's SigV4Auth at the
request's own X-Amz-Date, and the two signatures must be equal. Failures are answered as AWS
answers them (403 SignatureDoesNotMatch, InvalidClientTokenId, ExpiredToken, ...), with the
canonical request botocore expected in the message.

Temporary credentials handed out through STS, IMDS or the container endpoint are remembered
(key, secret, session token, expiry) and accepted for signing until they expire.

Tests drive it through JSON control endpoints under /_stub/ (never signed): state, tenants,
failures on demand, the record of every request. See tests/integration/wkharness/aws.py.

Run with Debian's Python, where python3-botocore imports:
  /usr/bin/python3 stub_aws.py --cert CERT.pem --key KEY.pem --ports-file FILE [--state FILE]
Once listening it writes {"port": N, "pid": P} to FILE (atomically); it exits on SIGTERM.
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import http.server
import json
import os
import re
import secrets
import signal
import ssl
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from unittest import mock
from xml.sax.saxutils import escape

try:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    import botocore.auth
except ImportError as e:  # the harness turns this exit code into "missing botocore"
    print(f"stub_aws: botocore is not importable ({e}); install python3-botocore", file=sys.stderr)
    sys.exit(3)

ACCOUNT = "123456789012"
CF_VERSION = "2020-05-31"
CF_NS = f"http://cloudfront.amazonaws.com/doc/{CF_VERSION}/"
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
ACM_HOST = "validation.us-east-1.acm-validations.aws"
VALIDATION_PREFIX = "/.well-known/pki-validation/"
DEFAULT_KEY_ID = "AKIDSTUBEXAMPLE"
DEFAULT_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYSTUBSECRET"
DEFAULT_ROLE = f"arn:aws:iam::{ACCOUNT}:role/wkproxy-stub"
MAX_SKEW = 300  # seconds between X-Amz-Date and now, as AWS allows
AMZ_DATE = "%Y%m%dT%H%M%SZ"

CERT_STATUSES = {"pending-validation", "issued", "inactive", "expired", "validation-timed-out",
                 "revoked", "failed", None}
DNS_STATUSES = {"valid-configuration", "invalid-configuration", "unknown-configuration"}
DNS_REASONS = {"valid-configuration": "The domain's DNS points to the tenant's routing endpoint.",
               "invalid-configuration": "The domain's DNS does not point to the tenant's "
                                        "routing endpoint.",
               "unknown-configuration": "The domain's DNS configuration could not be determined."}

# botocore signs only what the client signed (we copy exactly those headers), but by default it
# leaves out User-Agent, Expect and X-Amzn-Trace-Id even when asked; AWS verifies whatever the
# client listed in SignedHeaders, so neither may we leave them out.
botocore.auth.SIGNED_HEADERS_BLACKLIST = []
_SIGNING = threading.Lock()  # the clock patch below is process-wide


class AWSError(Exception):
    """An answer in AWS's error shape: status, Code, Message (Type Sender for 4xx)."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def iso(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rand(alphabet, n):
    return "".join(secrets.choice(alphabet) for _ in range(n))


def derived(*parts, n=32):
    """Stable hex from the parts: generated names stay the same across runs."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:n]


def el(tag, value):
    return f"<{tag}>{escape(str(value))}</{tag}>"


def boolean(v):
    return "true" if v else "false"


# ------------------------------------------------------------------------------------------------
# State: keys, roles, issued credentials, tenants, failures on demand, the request record.


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.keys = {DEFAULT_KEY_ID: {"secret": DEFAULT_SECRET, "denied": False}}
            self.roles = [DEFAULT_ROLE]
            self.external_ids = {}
            self.web_identity_token = "stub-web-identity-token"
            self.container_token = None
            self.container_role = DEFAULT_ROLE
            self.imds = True
            self.imds_role = "wkproxy-stub-instance-role"
            self.credentials_lifetime = 3600
            self.sts_region = "us-east-1"
            self.issued = {}  # temporary key id -> {secret, token, expires, role_arn, source}
            self.imds_tokens = {}  # token -> expiry
            self.tenants = {}
            self.failures = []
            self.requests = []

    def snapshot(self):
        with self.lock:
            return {"keys": self.keys, "roles": self.roles, "external_ids": self.external_ids,
                    "web_identity_token": self.web_identity_token,
                    "container_token": self.container_token,
                    "container_role": self.container_role, "imds": self.imds,
                    "imds_role": self.imds_role,
                    "credentials_lifetime": self.credentials_lifetime,
                    "sts_region": self.sts_region}

    def merge(self, d):
        if not isinstance(d, dict):
            raise ValueError("state: expected a JSON object")
        tenants = d.pop("tenants", [])
        with self.lock:
            for akid, k in (d.pop("keys", None) or {}).items():
                entry = dict(self.keys.get(akid, {"denied": False}))
                entry.update(k)
                if not entry.get("secret"):
                    raise ValueError(f"keys.{akid}: a secret is needed")
                self.keys[akid] = entry
            self.external_ids.update(d.pop("external_ids", None) or {})
            for name in ("roles", "web_identity_token", "container_token", "container_role",
                         "imds", "imds_role", "credentials_lifetime", "sts_region"):
                if name in d:
                    setattr(self, name, d.pop(name))
            if d:
                raise ValueError(f"state: unknown fields {sorted(d)}")
            if not isinstance(self.credentials_lifetime, int):
                raise ValueError("credentials_lifetime: an integer number of seconds")
        for t in tenants:
            self.upsert_tenant(t)

    def issue(self, source, role_arn, lifetime=None, session="stub"):
        """New temporary credentials, remembered for signature checks."""
        with self.lock:
            lifetime = self.credentials_lifetime if lifetime is None else lifetime
            akid = "ASIA" + rand("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
            secret = base64.b64encode(secrets.token_bytes(30)).decode()
            token = "FwoGZXIvYXdzE" + base64.b64encode(secrets.token_bytes(120)).decode()
            c = {"access_key_id": akid, "secret": secret, "token": token,
                 "expires": time.time() + lifetime, "role_arn": role_arn, "source": source,
                 "session": session}
            self.issued[akid] = c
            return dict(c, expiration=iso(c["expires"]))

    def secret_of(self, akid):
        """(secret, session token or None, expiry or None, denied) for a key, or None."""
        with self.lock:
            if akid in self.keys:
                k = self.keys[akid]
                return k["secret"], None, None, bool(k.get("denied"))
            if akid in self.issued:
                c = self.issued[akid]
                return c["secret"], c["token"], c["expires"], False
        return None

    # -- tenants
    def upsert_tenant(self, d):
        if not isinstance(d, dict) or not d.get("id"):
            raise ValueError("tenant: a JSON object with an id")
        with self.lock:
            t = dict(self.tenants.get(d["id"], {}))
            t.update(d)
            tid = t["id"]
            t.setdefault("name", tid)
            t.setdefault("arn", f"arn:aws:cloudfront::{ACCOUNT}:distribution-tenant/{tid}")
            t.setdefault("distribution_id", "E" + derived("dist", tid, n=13).upper())
            t.setdefault("domains", [])
            t.setdefault("connection_group", "cg_" + derived("cg", tid, n=27))
            t.setdefault("connection_group_name", t["connection_group"])
            t.setdefault("routing_endpoint", f"d{derived('re', tid, n=13)}.cloudfront.net")
            t.setdefault("certificate_status", "pending-validation")
            t.setdefault("certificate_arn", f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/"
                                            + str(uuid.uuid5(uuid.NAMESPACE_URL, tid)))
            t.setdefault("token_host", "self-hosted")
            t.setdefault("url_form", "bare")
            t.setdefault("redirect_to_host", None)
            t.setdefault("status", "Deployed")
            t.setdefault("enabled", True)
            t["tokens"] = dict(t.get("tokens") or {})
            t["dns"] = dict(t.get("dns") or {})
            t["domain_status"] = dict(t.get("domain_status") or {})
            for dom in t["domains"]:
                t["tokens"].setdefault(dom, [derived(tid, dom, "from") + ".txt",
                                             derived(tid, dom, "to") + ".txt"])
                t["dns"].setdefault(dom, "invalid-configuration")
                t["domain_status"].setdefault(dom, "active")
            if t["certificate_status"] not in CERT_STATUSES:
                raise ValueError(f"certificate_status {t['certificate_status']!r}")
            if t["token_host"] not in ("cloudfront", "self-hosted"):
                raise ValueError(f"token_host {t['token_host']!r}")
            if t["url_form"] not in ("bare", "scheme"):
                raise ValueError(f"url_form {t['url_form']!r}: bare or scheme")
            if not set(t["dns"].values()) <= DNS_STATUSES:
                raise ValueError(f"dns: statuses are {sorted(DNS_STATUSES)}")
            self.tenants[tid] = t
            return dict(t)

    def find_tenant(self, ident):
        with self.lock:
            for t in self.tenants.values():
                if ident in (t["id"], t["name"], t["arn"]):
                    return dict(t)
        raise AWSError(404, "EntityNotFound", f"The distribution tenant {ident} was not found.")

    def find_connection_group(self, ident):
        with self.lock:
            for t in self.tenants.values():
                cg = t["connection_group"]
                arn = f"arn:aws:cloudfront::{ACCOUNT}:connection-group/{cg}"
                if ident in (cg, t["connection_group_name"], arn):
                    return {"id": cg, "name": t["connection_group_name"], "arn": arn,
                            "routing_endpoint": t["routing_endpoint"]}
        raise AWSError(404, "EntityNotFound", f"The connection group {ident} was not found.")

    # -- failures on demand, the record
    def take_failure(self, path):
        with self.lock:
            for f in self.failures:
                if f["count"] > 0 and (not f.get("match") or f["match"] in path):
                    f["count"] -= 1
                    self.failures = [x for x in self.failures if x["count"] > 0]
                    return AWSError(f["status"], f["code"], f["message"])
        return None

    def record(self, entry):
        with self.lock:
            self.requests.append(entry)


# ------------------------------------------------------------------------------------------------
# SigV4, checked by botocore


def parse_authorization(value):
    scheme, _, rest = value.strip().partition(" ")
    if scheme != "AWS4-HMAC-SHA256":
        raise AWSError(400, "IncompleteSignature",
                       f"Unsupported AWS 'algorithm': '{scheme}'; expected AWS4-HMAC-SHA256")
    parts = {}
    for item in rest.split(","):
        name, eq, v = item.strip().partition("=")
        if eq:
            parts[name] = v
    missing = [n for n in ("Credential", "SignedHeaders", "Signature") if not parts.get(n)]
    if missing:
        raise AWSError(400, "IncompleteSignature",
                       f"Authorization header requires {', '.join(missing)}: '{value}'")
    scope = parts["Credential"].split("/")
    if len(scope) != 5:
        raise AWSError(400, "IncompleteSignature",
                       f"Credential must be KEY/DATE/REGION/SERVICE/aws4_request: "
                       f"'{parts['Credential']}'")
    return scope, parts["SignedHeaders"], parts["Signature"]


def verify_sigv4(state, req, service, region):
    """The access key id of a correctly signed request, else AWSError as AWS would answer."""
    auth = req.header("authorization")
    if not auth:
        raise AWSError(403, "MissingAuthenticationToken", "Missing Authentication Token")
    (akid, date, scope_region, scope_service, terminal), signed, signature = \
        parse_authorization(auth)
    req.record["access_key_id"] = akid
    found = state.secret_of(akid)
    if found is None:
        raise AWSError(403, "InvalidClientTokenId",
                       "The security token included in the request is invalid. (The AWS Access "
                       f"Key Id {akid} does not exist in our records.)")
    secret, token, expires, denied = found
    amz_date = req.header("x-amz-date")
    try:
        when = datetime.datetime.strptime(amz_date or "", AMZ_DATE)
    except ValueError:
        raise AWSError(400, "IncompleteSignature",
                       "Authorization header requires existence of a valid 'X-Amz-Date' header "
                       f"in ISO-8601 basic format (YYYYMMDD'T'HHMMSS'Z'), got {amz_date!r}")
    skew = when.replace(tzinfo=datetime.timezone.utc).timestamp() - time.time()
    if abs(skew) > MAX_SKEW:
        raise AWSError(403, "SignatureDoesNotMatch",
                       f"Signature {'expired' if skew < 0 else 'not yet current'}: {amz_date} is "
                       f"{abs(int(skew))} s from now {time.strftime(AMZ_DATE, time.gmtime())} "
                       f"(more than {MAX_SKEW} s)")
    sent_token = req.header("x-amz-security-token")
    if token is None and sent_token is not None:
        raise AWSError(403, "InvalidClientTokenId",
                       f"The security token included in the request is invalid ({akid} is a "
                       "long-term key: it takes no X-Amz-Security-Token).")
    if token is not None:
        if sent_token != token:
            raise AWSError(403, "InvalidClientTokenId",
                           "The security token included in the request is invalid (X-Amz-"
                           f"Security-Token {'is missing' if sent_token is None else 'differs'}"
                           f" for the temporary key {akid}).")
        if time.time() >= expires:
            raise AWSError(403, "ExpiredToken",
                           f"The security token included in the request is expired (at "
                           f"{iso(expires)}).")
    if date != amz_date[:8]:
        raise AWSError(403, "SignatureDoesNotMatch",
                       f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version "
                       f"of date from HTTP: '{date}' != '{amz_date[:8]}'")
    if scope_region != region:
        raise AWSError(403, "SignatureDoesNotMatch",
                       f"Credential should be scoped to a valid region: '{scope_region}' "
                       f"(expected '{region}')")
    if scope_service != service:
        raise AWSError(403, "SignatureDoesNotMatch",
                       f"Credential should be scoped to correct service: '{service}'")
    if terminal != "aws4_request":
        raise AWSError(403, "SignatureDoesNotMatch",
                       "Credential should be scoped with a valid terminator: 'aws4_request'")
    sha = req.header("x-amz-content-sha256")
    if sha not in (None, "UNSIGNED-PAYLOAD") and sha != hashlib.sha256(req.body).hexdigest():
        raise AWSError(400, "XAmzContentSHA256Mismatch",
                       "The provided 'x-amz-content-sha256' header does not match what was "
                       "computed.")

    # The request as botocore would have built it: what arrived, with only the signed headers.
    host = req.header("host")
    if not host:
        raise AWSError(400, "IncompleteSignature", "a Host header is required")
    names = set(signed.split(";"))
    rebuilt = AWSRequest(method=req.command, url="https://" + host + req.target, data=req.body)
    for name, value in req.headers.items():
        if name.lower() in names:
            rebuilt.headers[name] = value
    signer = SigV4Auth(Credentials(akid, secret, token), service, region)
    with _SIGNING, mock.patch("botocore.auth.datetime") as clock:
        clock.datetime.utcnow.return_value = when
        signer.add_auth(rebuilt)
    expected = dict(p.strip().split("=", 1)
                    for p in rebuilt.headers["Authorization"].split(" ", 1)[1].split(","))
    if expected["SignedHeaders"] == signed and signature.isascii() and \
            hmac.compare_digest(expected["Signature"], signature):
        if denied:
            raise AWSError(403, "AccessDenied",
                           f"User: arn:aws:iam::{ACCOUNT}:user/{akid} is not authorized to "
                           f"perform: {service}:{req.operation}")
        return akid
    del rebuilt.headers["Authorization"]
    canonical = signer.canonical_request(rebuilt)
    raise AWSError(403, "SignatureDoesNotMatch",
                   "The request signature we calculated does not match the signature you "
                   "provided. Check your AWS Secret Access Key and signing method. Consult the "
                   f"service documentation for details.\n\nSignedHeaders should have been "
                   f"'{expected['SignedHeaders']}'\n\nThe Canonical String for this request "
                   f"should have been\n'{canonical}'\n\nThe String-to-Sign should have been\n"
                   f"'{signer.string_to_sign(rebuilt, canonical)}'\n")


# ------------------------------------------------------------------------------------------------
# The services


def cf_xml(body):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode()


def managed_certificate_details(t):
    if t["certificate_status"] is None:
        raise AWSError(404, "EntityNotFound",
                       f"The distribution tenant {t['id']} has no managed certificate.")
    entries = []
    for dom in t["domains"]:
        src, dst = t["tokens"][dom]
        frm = f"{dom}{VALIDATION_PREFIX}{src}"
        to = f"{t['redirect_to_host'] or ACM_HOST}/{ACCOUNT}{VALIDATION_PREFIX}{dst}"
        if t["url_form"] == "scheme":
            frm, to = "http://" + frm, "https://" + to
        entries.append("<ValidationTokenDetail>" + el("Domain", dom) + el("RedirectFrom", frm)
                       + el("RedirectTo", to) + "</ValidationTokenDetail>")
    return cf_xml(f'<ManagedCertificateDetails xmlns="{CF_NS}">'
                  + el("CertificateArn", t["certificate_arn"])
                  + el("CertificateStatus", t["certificate_status"])
                  + el("ValidationTokenHost", t["token_host"])
                  + "<ValidationTokenDetails>" + "".join(entries) + "</ValidationTokenDetails>"
                  + "</ManagedCertificateDetails>")


def distribution_tenant(t):
    domains = "".join("<DomainResult>" + el("Domain", d) + el("Status", t["domain_status"][d])
                      + "</DomainResult>" for d in t["domains"])
    return cf_xml(f'<DistributionTenant xmlns="{CF_NS}">' + el("Id", t["id"])
                  + el("DistributionId", t["distribution_id"]) + el("Name", t["name"])
                  + el("Arn", t["arn"]) + "<Domains>" + domains + "</Domains>"
                  + el("ConnectionGroupId", t["connection_group"])
                  + el("Enabled", boolean(t["enabled"])) + el("Status", t["status"])
                  + "</DistributionTenant>")


def connection_group(cg):
    return cf_xml(f'<ConnectionGroup xmlns="{CF_NS}">' + el("Id", cg["id"])
                  + el("Name", cg["name"]) + el("Arn", cg["arn"])
                  + el("RoutingEndpoint", cg["routing_endpoint"]) + el("Status", "Deployed")
                  + el("Enabled", "true") + el("IsDefault", "false") + "</ConnectionGroup>")


def verify_dns_configuration(state, body):
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise AWSError(400, "MalformedXML", f"The XML you provided was not well-formed: {e}")
    if root.tag != f"{{{CF_NS}}}VerifyDnsConfigurationRequest":
        raise AWSError(400, "MalformedXML", f"Expected <VerifyDnsConfigurationRequest "
                                            f'xmlns="{CF_NS}">, got {root.tag}')
    ident = root.findtext(f"{{{CF_NS}}}Identifier")
    domain = root.findtext(f"{{{CF_NS}}}Domain")
    if not ident:
        raise AWSError(400, "InvalidArgument", "Identifier is required.")
    t = state.find_tenant(ident)
    items = []
    for dom in [domain] if domain else t["domains"]:
        status = t["dns"].get(dom, "unknown-configuration")
        items.append("<DnsConfiguration>" + el("Domain", dom) + el("Status", status)
                     + el("Reason", DNS_REASONS[status]) + "</DnsConfiguration>")
    return cf_xml(f'<VerifyDnsConfigurationResult xmlns="{CF_NS}"><DnsConfigurationList>'
                  + "".join(items) + "</DnsConfigurationList></VerifyDnsConfigurationResult>")


CF_ROUTES = [  # (method, path pattern, operation)
    ("GET", r"/managed-certificate/([^/]+)", "GetManagedCertificateDetails"),
    ("GET", r"/distribution-tenant/([^/]+)", "GetDistributionTenant"),
    ("GET", r"/connection-group/([^/]+)", "GetConnectionGroup"),
    ("POST", r"/verify-dns-configuration", "VerifyDnsConfiguration"),
]


def sts_credentials_xml(action, c, request_id, extra=""):
    role = c["role_arn"].rsplit("/", 1)[-1]
    role_id = "AROA" + derived("role", c["role_arn"], n=17).upper()
    return (f'<{action}Response xmlns="{STS_NS}"><{action}Result><Credentials>'
            + el("AccessKeyId", c["access_key_id"]) + el("SecretAccessKey", c["secret"])
            + el("SessionToken", c["token"]) + el("Expiration", c["expiration"])
            + "</Credentials><AssumedRoleUser>"
            + el("AssumedRoleId", f"{role_id}:{c['session']}")
            + el("Arn", f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{c['session']}")
            + f"</AssumedRoleUser>{extra}</{action}Result><ResponseMetadata>"
            + el("RequestId", request_id) + f"</ResponseMetadata></{action}Response>").encode()


def sts_role_request(state, p, action):
    for name in ("RoleArn", "RoleSessionName"):
        if not p.get(name):
            raise AWSError(400, "ValidationError", f"1 validation error detected: Value null at "
                                                   f"'{name[0].lower() + name[1:]}' failed to "
                                                   "satisfy constraint: Member must not be null")
    duration = p.get("DurationSeconds", "3600")
    if not duration.isdigit() or not 900 <= int(duration) <= 43200:
        raise AWSError(400, "ValidationError",
                       f"DurationSeconds {duration!r} must be between 900 and 43200")
    if p["RoleArn"] not in state.snapshot()["roles"]:
        raise AWSError(403, "AccessDenied", f"Not authorized to perform sts:{action} on "
                                            f"resource: {p['RoleArn']}")


# ------------------------------------------------------------------------------------------------
# HTTP


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "stub-aws"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection is closed after this

    def setup(self):
        self.request.settimeout(10)
        self.request.do_handshake()
        super().setup()

    def log_message(self, *args):  # every request is in the record instead
        pass

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_GET

    # -- helpers the services use
    def header(self, name):
        return self.headers.get(name)

    def read_body(self):
        if "chunked" in (self.header("transfer-encoding") or "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        length = self.header("content-length") or "0"
        if not length.isdigit():
            raise ValueError(f"bad Content-Length {length!r}")
        return self.rfile.read(int(length))

    def send(self, status, body, ctype, headers=()):
        if self.record is not None:
            self.record["status"] = status
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", self.request_id)
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status, obj):
        self.send(status, json.dumps(obj, indent=1).encode() + b"\n", "application/json")

    def send_error_shape(self, e, service):
        self.record.update(code=e.code, message=e.message)
        if service in ("cloudfront", "sts"):
            ns = CF_NS if service == "cloudfront" else STS_NS
            kind = "Sender" if e.status < 500 else "Receiver"
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse xmlns="{ns}"><Error>'
                    + el("Type", kind) + el("Code", e.code) + el("Message", e.message)
                    + "</Error>" + el("RequestId", self.request_id) + "</ErrorResponse>")
            self.send(e.status, body.encode(), "text/xml")
        elif service == "container":
            self.send_json(e.status, {"code": e.code, "message": e.message})
        else:
            self.send(e.status, f"{e.code}: {e.message}\n".encode(), "text/plain")

    # -- routing
    def dispatch(self):
        self.request_id = str(uuid.uuid4())
        path, _, query = self.path.partition("?")
        self.target, self.operation, service = self.path, None, None
        self.record = {"method": self.command, "path": path, "query": query,
                       "headers": [[n, v] for n, v in self.headers.items()], "body": "",
                       "service": None, "operation": None, "access_key_id": None,
                       "signature_ok": None, "status": None, "code": None, "message": None,
                       "time": time.time()}
        try:
            try:
                self.body = self.read_body()
            except (ValueError, OSError) as e:
                self.close_connection = True
                raise AWSError(400, "InvalidRequest", f"cannot read the request body: {e}")
            self.record["body"] = self.body.decode("utf-8", "replace")
            if path.startswith("/_stub/"):
                self.record = None  # the record is of AWS requests, not of the tests' calls
                return self.control(path, self.body)
            if path.startswith(f"/{CF_VERSION}/"):
                service = "cloudfront"
            elif path == "/":
                service = "sts"
            elif path == "/latest" or path.startswith("/latest/"):
                service = "imds"
            elif path.startswith("/container-credentials"):
                service = "container"
            else:
                raise AWSError(404, "NotFound", f"nothing is served at {path}")
            self.record["service"] = service
            getattr(self, service)(path[len(CF_VERSION) + 1:] if service == "cloudfront"
                                   else path, query)
        except AWSError as e:
            self.send_error_shape(e, service)
        except Exception as e:  # a bug in the stub: loud, in AWS's shape for a server error
            traceback.print_exc()
            self.send_error_shape(AWSError(500, "InternalError", f"stub_aws: {e!r}"), service)
        finally:
            if self.record is not None:
                self.server.state.record(self.record)

    def signed(self, service, region):
        self.record["operation"] = self.operation
        try:
            verify_sigv4(self.server.state, self, service, region)
        except AWSError:
            self.record["signature_ok"] = False
            raise
        self.record["signature_ok"] = True
        failure = self.server.state.take_failure(self.record["path"])
        if failure:
            raise failure

    def cloudfront(self, rest, query):
        state = self.server.state
        for method, pattern, operation in CF_ROUTES:
            m = re.fullmatch(pattern, rest)
            if m and method == self.command:
                self.operation = operation
                break
        else:
            m = None
        self.signed("cloudfront", "us-east-1")
        if m is None:
            raise AWSError(404, "UnknownOperationException",
                           f"no CloudFront operation {self.command} {rest}")
        ident = urllib.parse.unquote(m.group(1)) if m.groups() else None
        if self.operation == "GetManagedCertificateDetails":
            body, headers = managed_certificate_details(state.find_tenant(ident)), ()
        elif self.operation == "GetDistributionTenant":
            t = state.find_tenant(ident)
            etag = "E" + derived(json.dumps(t, sort_keys=True), n=13).upper()
            body, headers = distribution_tenant(t), [("ETag", etag)]
        elif self.operation == "GetConnectionGroup":
            cg = state.find_connection_group(ident)
            body, headers = connection_group(cg), [("ETag", "E" + derived(cg["id"], n=13).upper())]
        else:
            body, headers = verify_dns_configuration(state, self.body), ()
        self.send(200, body, "text/xml", headers)

    def sts(self, path, query):
        state = self.server.state
        if self.command == "POST":
            ctype = (self.header("content-type") or "").split(";")[0].strip().lower()
            if ctype != "application/x-www-form-urlencoded":
                raise AWSError(400, "InvalidRequest", f"STS takes a form-encoded body "
                                                      f"(Content-Type {ctype or 'missing'})")
            form = self.body.decode("utf-8", "replace")
        elif self.command == "GET":
            form = query
        else:
            raise AWSError(405, "InvalidRequest", f"STS takes GET or POST, not {self.command}")
        p = dict(urllib.parse.parse_qsl(form, keep_blank_values=True))
        action = self.operation = p.get("Action")
        if not action:
            raise AWSError(400, "MissingAction", "Missing Action")
        if action not in ("AssumeRole", "AssumeRoleWithWebIdentity", "GetCallerIdentity") or \
                p.get("Version") != "2011-06-15":
            raise AWSError(400, "InvalidAction", f"Could not find operation {action} for version "
                                                 f"{p.get('Version')}")
        if action == "AssumeRoleWithWebIdentity":  # not signed: the token is the proof
            self.record["operation"] = action
            failure = state.take_failure(self.record["path"])
            if failure:
                raise failure
            if not p.get("WebIdentityToken"):
                raise AWSError(400, "ValidationError", "WebIdentityToken is required")
            sts_role_request(state, p, action)
            if p["WebIdentityToken"] != state.snapshot()["web_identity_token"]:
                raise AWSError(400, "InvalidIdentityToken",
                               "The web identity token that was passed could not be validated "
                               "by AWS. Get a new identity token from the identity provider "
                               "and then retry the request.")
            c = state.issue("web-identity", p["RoleArn"], session=p["RoleSessionName"])
            return self.send(200, sts_credentials_xml(action, c, self.request_id,
                                                      el("Provider", "stub-oidc")), "text/xml")
        self.signed("sts", state.snapshot()["sts_region"])
        akid = self.record["access_key_id"]
        if action == "GetCallerIdentity":
            arn = f"arn:aws:iam::{ACCOUNT}:user/{akid}"
            with state.lock:
                c = state.issued.get(akid)
            if c:
                arn = (f"arn:aws:sts::{ACCOUNT}:assumed-role/{c['role_arn'].rsplit('/', 1)[-1]}"
                       f"/{c['session']}")
            body = (f'<GetCallerIdentityResponse xmlns="{STS_NS}"><GetCallerIdentityResult>'
                    + el("Arn", arn) + el("UserId", akid) + el("Account", ACCOUNT)
                    + "</GetCallerIdentityResult><ResponseMetadata>"
                    + el("RequestId", self.request_id)
                    + "</ResponseMetadata></GetCallerIdentityResponse>")
            return self.send(200, body.encode(), "text/xml")
        sts_role_request(state, p, action)
        wanted = state.snapshot()["external_ids"].get(p["RoleArn"])
        if wanted is not None and p.get("ExternalId") != wanted:
            raise AWSError(403, "AccessDenied", f"Not authorized to perform sts:AssumeRole on "
                                                f"{p['RoleArn']} (ExternalId)")
        c = state.issue("sts", p["RoleArn"], session=p["RoleSessionName"])
        self.send(200, sts_credentials_xml(action, c, self.request_id), "text/xml")

    def imds(self, path, query):
        state = self.server.state
        snap = state.snapshot()
        if not snap["imds"]:
            raise AWSError(404, "NotFound", "no instance metadata here")
        failure = state.take_failure(path)
        if failure:
            raise failure
        if path == "/latest/api/token":
            if self.command != "PUT":
                raise AWSError(405, "MethodNotAllowed", "the token is taken with PUT")
            ttl = self.header("x-aws-ec2-metadata-token-ttl-seconds") or ""
            if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                raise AWSError(400, "BadRequest",
                               f"X-aws-ec2-metadata-token-ttl-seconds {ttl!r}: 1 to 21600")
            token = base64.b64encode(secrets.token_bytes(42)).decode()
            with state.lock:
                state.imds_tokens[token] = time.time() + int(ttl)
            return self.send(200, token.encode(), "text/plain",
                             [("X-aws-ec2-metadata-token-ttl-seconds", ttl)])
        token = self.header("x-aws-ec2-metadata-token")
        with state.lock:
            valid = token is not None and state.imds_tokens.get(token, 0) > time.time()
        if not valid:
            raise AWSError(401, "Unauthorized", "IMDSv2: a valid X-aws-ec2-metadata-token is "
                                                "required")
        if self.command != "GET":
            raise AWSError(405, "MethodNotAllowed", "instance metadata is read with GET")
        base = "/latest/meta-data/iam/security-credentials"
        if path in (base, base + "/"):
            return self.send(200, snap["imds_role"].encode(), "text/plain")
        if path == f"{base}/{snap['imds_role']}":
            c = state.issue("imds", f"arn:aws:iam::{ACCOUNT}:role/{snap['imds_role']}")
            return self.send_json(200, {
                "Code": "Success", "LastUpdated": iso(time.time()), "Type": "AWS-HMAC",
                "AccessKeyId": c["access_key_id"], "SecretAccessKey": c["secret"],
                "Token": c["token"], "Expiration": c["expiration"]})
        raise AWSError(404, "NotFound", f"no instance metadata at {path}")

    def container(self, path, query):
        state = self.server.state
        snap = state.snapshot()
        failure = state.take_failure(path)
        if failure:
            raise failure
        if self.command != "GET":
            raise AWSError(405, "MethodNotAllowed", "container credentials are read with GET")
        wanted, sent = snap["container_token"], self.header("authorization")
        if wanted is not None and sent is None:
            raise AWSError(401, "Unauthorized", "an Authorization token is required")
        if wanted is not None and sent != wanted:
            raise AWSError(403, "AccessDenied", "the Authorization token is not valid")
        c = state.issue("container", snap["container_role"])
        self.send_json(200, {"AccessKeyId": c["access_key_id"], "SecretAccessKey": c["secret"],
                             "Token": c["token"], "Expiration": c["expiration"],
                             "RoleArn": c["role_arn"]})

    # -- control
    def control(self, path, body):
        state = self.server.state
        try:
            arg = json.loads(body) if body.strip() else {}
        except ValueError as e:
            return self.send_json(400, {"error": f"not JSON: {e}"})
        name, method = path[len("/_stub/"):], self.command
        try:
            if (method, name) == ("GET", "state"):
                return self.send_json(200, state.snapshot())
            if (method, name) == ("POST", "state"):
                state.merge(arg)
                return self.send_json(200, state.snapshot())
            if (method, name) == ("POST", "reset"):
                state.reset()
                return self.send_json(200, {})
            if (method, name) == ("POST", "tenant"):
                return self.send_json(200, state.upsert_tenant(arg))
            if name.startswith("tenant/"):
                tid = urllib.parse.unquote(name[len("tenant/"):])
                with state.lock:
                    t = state.tenants.get(tid)
                    if method == "DELETE" and t:
                        del state.tenants[tid]
                if t is None or method not in ("GET", "DELETE"):
                    return self.send_json(404, {"error": f"no tenant {tid}"})
                return self.send_json(200, t)
            if method == "GET" and name.startswith("document/managed-certificate/"):
                # The exact body GetManagedCertificateDetails answers, unsigned, so that a test
                # can save it to a file and compare `tokens import FILE` with the API read.
                tid = urllib.parse.unquote(name[len("document/managed-certificate/"):])
                return self.send(200, managed_certificate_details(state.find_tenant(tid)),
                                 "text/xml")
            if (method, name) == ("POST", "fail"):
                f = {"count": int(arg.get("count", 1)), "status": int(arg.get("status", 400)),
                     "code": arg.get("code", "Throttling"),
                     "message": arg.get("message", "Rate exceeded"), "match": arg.get("match")}
                with state.lock:
                    state.failures.append(f)
                return self.send_json(200, f)
            if (method, name) == ("POST", "fail/reset"):
                with state.lock:
                    state.failures = []
                return self.send_json(200, {})
            if (method, name) == ("GET", "requests"):
                with state.lock:
                    return self.send_json(200, list(state.requests))
            if (method, name) == ("POST", "requests/reset"):
                with state.lock:
                    state.requests = []
                return self.send_json(200, {})
            if (method, name) == ("POST", "credentials"):
                c = state.issue("control", arg.get("role_arn", DEFAULT_ROLE), arg.get("lifetime"))
                return self.send_json(200, c)
            if (method, name) == ("GET", "credentials"):
                with state.lock:
                    return self.send_json(200, [dict(c, expiration=iso(c["expires"]))
                                                for c in state.issued.values()])
        except (ValueError, TypeError, KeyError) as e:
            return self.send_json(400, {"error": str(e)})
        return self.send_json(404, {"error": f"no control endpoint {method} {path}"})


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls, state, port=0):
        self.tls, self.state = tls, state
        super().__init__(("127.0.0.1", port), Handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        # The handshake runs in the connection's thread (Handler.setup), not in the accept loop.
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        pass  # a failed handshake or a reset connection: the client sees it


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--ports-file", required=True)
    ap.add_argument("--state", help="JSON state to start with (as POST /_stub/state, plus "
                                    "\"tenants\": [...])")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free)")
    args = ap.parse_args()
    state = State()
    if args.state:
        with open(args.state) as f:
            state.merge(json.load(f))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(args.cert, args.key)
    server = Server(tls, state, args.port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                               daemon=True)
    serving.start()
    tmp = args.ports_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"port": server.server_address[1], "pid": os.getpid()}, f)
    os.replace(tmp, args.ports_file)
    stop.wait()
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
