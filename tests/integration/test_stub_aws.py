"""The AWS stand-in (tests/tools/stub_aws.py, driven through wkharness.StubAWS) checked on its
own: a stand-in whose checks cannot fail would let any request wkproxy makes through, so every
check is shown failing as well as passing.

Requests are signed by botocore (Debian's python3-botocore, run with /usr/bin/python3, like
test_sigv4_botocore) and sent exactly as signed with http.client; the same request with one
byte of the signature, the body, a signed header, the date or the path changed must be refused
with 403 SignatureDoesNotMatch. Then the other answers AWS gives (unknown key, expired or
missing session token, denied key, throttling), the credential sources (STS, IMDSv2, the
container endpoint) and a tenant's certificate going from pending-validation to issued."""

import http.client
import json
import ssl
import subprocess
import time
import unittest
import urllib.parse
import xml.etree.ElementTree as ET

from wkharness import LOOPBACK, StubAWS, TestCA, missing

SIGNER = r'''
import datetime, json, sys
from unittest import mock
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
for line in sys.stdin:
    v = json.loads(line)
    req = AWSRequest(method=v["method"], url=v["url"], data=v["body"].encode())
    for n, x in v["headers"]:
        req.headers[n] = x
    auth = SigV4Auth(Credentials(v["key"], v["secret"], v["token"]), v["service"], "us-east-1")
    with mock.patch("botocore.auth.datetime") as dt:
        dt.datetime.utcnow.return_value = datetime.datetime.utcfromtimestamp(v["time"])
        auth.add_auth(req)
    print(json.dumps(list(req.headers.items())))
'''

CF = "/2020-05-31/"
CF_NS = "{http://cloudfront.amazonaws.com/doc/2020-05-31/}"
STS_NS = "{https://sts.amazonaws.com/doc/2011-06-15/}"
VERIFY_BODY = ('<?xml version="1.0" encoding="UTF-8"?>\n<VerifyDnsConfigurationRequest '
               'xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/"><Identifier>dt_1'
               '</Identifier></VerifyDnsConfigurationRequest>')
FORM = "application/x-www-form-urlencoded; charset=utf-8"


def error_of(body: bytes):
    """(Type, Code, Message) of an AWS ErrorResponse."""
    root = ET.fromstring(body)
    return tuple(root.findtext(f"{{*}}Error/{{*}}{n}") for n in ("Type", "Code", "Message"))


def creds_of(body: bytes, action="AssumeRole"):
    c = ET.fromstring(body).find(f"{STS_NS}{action}Result/{STS_NS}Credentials")
    return {n: c.findtext(STS_NS + n) for n in ("AccessKeyId", "SecretAccessKey",
                                               "SessionToken", "Expiration")}


class Answer:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def __repr__(self):
        return f"<{self.status} {self.body[:600]!r}>"


class StubAWSTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ca = TestCA()
        cls.addClassCleanup(cls.ca.cleanup)
        cls.stub = StubAWS(cls.ca)
        cls.addClassCleanup(cls.stub.stop)
        cls.stub.start()  # skips (fails under CI) when python3-botocore is missing
        cls.host = f"{LOOPBACK}:{cls.stub.port}"

    def setUp(self):
        self.stub.reset()
        self.stub.set_tenant("dt_1", name="shop-one", domains=["a.example", "www.a.example"],
                             dns={"a.example": "valid-configuration"})
        # One connection per test, kept alive across its requests.
        self.conn = http.client.HTTPSConnection(
            LOOPBACK, self.stub.port, timeout=10,
            context=ssl.create_default_context(cafile=self.ca.ca_pem))
        self.addCleanup(self.conn.close)

    # -- signing (botocore) and sending (exactly the signed headers, plus Content-Length)
    def sign(self, *specs):
        """Each spec: method, path, headers, body, key, secret, token, service, time (all but
        method and path defaulted). Returns each request's headers after botocore signed it."""
        lines = ""
        for s in specs:
            v = {"body": "", "headers": [], "key": StubAWS.DEFAULT_KEY_ID,
                 "secret": StubAWS.DEFAULT_SECRET, "token": None, "service": "cloudfront",
                 "time": int(time.time())}
            v.update(s)
            v["url"] = f"https://{self.host}{v['path']}"
            v["headers"] = [["Host", self.host]] + list(v["headers"])
            lines += json.dumps(v) + "\n"
        p = subprocess.run(["/usr/bin/python3", "-c", SIGNER], input=lines, capture_output=True,
                           text=True, timeout=60)
        if p.returncode != 0 and "No module named 'botocore'" in p.stderr:
            missing("python3-botocore is not installed (tools/deps.sh installs it)")
        self.assertEqual(p.returncode, 0, p.stderr)
        return [json.loads(line) for line in p.stdout.splitlines()]

    def send(self, method, path, headers=(), body=b""):
        if isinstance(body, str):
            body = body.encode()
        self.conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            self.conn.putheader(name, value)
        if body or method in ("POST", "PUT"):
            self.conn.putheader("Content-Length", str(len(body)))
        self.conn.endheaders(body)
        r = self.conn.getresponse()
        data = r.read()
        self.assertEqual(r.getheader("Content-Length"), str(len(data)), "Content-Length")
        return Answer(r.status, r, data)

    def assertRefused(self, answer, status, code):
        self.assertEqual(answer.status, status, answer)
        kind, got, message = error_of(answer.body)
        self.assertEqual((kind, got), ("Sender", code), answer)
        self.assertTrue(message, answer)
        return message

    # -- the signature check
    def test_signed_request_is_accepted_and_any_changed_byte_refused(self):
        get_path = CF + "managed-certificate/dt_1"
        post_path = CF + "verify-dns-configuration"
        h_get, h_post = self.sign(
            {"method": "GET", "path": get_path},
            {"method": "POST", "path": post_path, "body": VERIFY_BODY,
             "headers": [["Content-Type", "application/xml"]]})
        ok = self.send("POST", post_path, h_post, VERIFY_BODY)
        self.assertEqual(ok.status, 200, ok)
        root = ET.fromstring(ok.body)
        self.assertEqual(root.tag, CF_NS + "VerifyDnsConfigurationResult")
        self.assertEqual({c.findtext(CF_NS + "Domain"): c.findtext(CF_NS + "Status")
                          for c in root.iter(CF_NS + "DnsConfiguration")},
                         {"a.example": "valid-configuration",
                          "www.a.example": "invalid-configuration"})
        self.assertEqual(self.send("GET", get_path, h_get).status, 200)
        # Headers that are not signed may be added, as on the way through any HTTP client.
        extra = h_get + [["User-Agent", "wkproxy/test"], ["X-Unsigned", "1"]]
        self.assertEqual(self.send("GET", get_path, extra).status, 200)

        def changed(headers, name, edit):
            return [[n, edit(v) if n.lower() == name else v] for n, v in headers]

        def last_char(v):
            return v[:-1] + ("0" if v[-1] != "0" else "1")

        def next_second(v):  # 20261206T021015Z: still well within the allowed skew
            return v[:-2] + str((int(v[-2]) + 1) % 10) + "Z"

        cases = {
            "signature": ("POST", post_path, changed(h_post, "authorization", last_char),
                          VERIFY_BODY),
            "body": ("POST", post_path, h_post, VERIFY_BODY.replace(">dt_1<", ">dt_2<")),
            "signed header": ("POST", post_path,
                              changed(h_post, "content-type", lambda v: v[:-1] + "X"),
                              VERIFY_BODY),
            "date": ("POST", post_path, changed(h_post, "x-amz-date", next_second),
                     VERIFY_BODY),
            "path": ("GET", get_path[:-1] + "2", h_get, b""),
        }
        for what, (method, path, headers, body) in cases.items():
            with self.subTest(changed=what):
                message = self.assertRefused(self.send(method, path, headers, body), 403,
                                             "SignatureDoesNotMatch")
                self.assertIn("Canonical String", message)
        recorded = self.stub.requests("cloudfront")
        self.assertEqual([r["signature_ok"] for r in recorded], [True] * 3 + [False] * 5)
        self.assertEqual({r["access_key_id"] for r in recorded}, {StubAWS.DEFAULT_KEY_ID})
        self.assertEqual(recorded[0]["body"], VERIFY_BODY)
        self.assertEqual(recorded[0]["operation"], "VerifyDnsConfiguration")

    def test_keys_tokens_and_clock_are_checked(self):
        path = CF + "distribution-tenant/dt_1"
        live = self.stub.issue_credentials()
        expired = self.stub.issue_credentials(lifetime=-60)
        self.stub.add_key("AKIDDENIEDEXAMPLE", "denied-secret", denied=True)
        temporary = {"key": live["access_key_id"], "secret": live["secret"],
                     "token": live["token"]}
        signed = self.sign(
            {"method": "GET", "path": path, **temporary},
            {"method": "GET", "path": path, "key": "AKIDUNKNOWNEXAMPLE"},
            {"method": "GET", "path": path, "key": expired["access_key_id"],
             "secret": expired["secret"], "token": expired["token"]},
            {"method": "GET", "path": path, "key": "AKIDDENIEDEXAMPLE",
             "secret": "denied-secret"},
            {"method": "GET", "path": path, "time": int(time.time()) - 600},
            {"method": "GET", "path": path, "service": "sts"},
            {"method": "GET", "path": path, "key": StubAWS.DEFAULT_KEY_ID,
             "secret": "not-the-secret"})
        h_live, h_unknown, h_expired, h_denied, h_old, h_sts, h_wrong_secret = signed
        answer = self.send("GET", path, h_live)
        self.assertEqual(answer.status, 200, answer)
        self.assertTrue(answer.headers.getheader("ETag"))
        no_token = [[n, v] for n, v in h_live if n.lower() != "x-amz-security-token"]
        self.assertRefused(self.send("GET", path, no_token), 403, "InvalidClientTokenId")
        self.assertRefused(self.send("GET", path, h_unknown), 403, "InvalidClientTokenId")
        self.assertRefused(self.send("GET", path, h_expired), 403, "ExpiredToken")
        self.assertRefused(self.send("GET", path, h_denied), 403, "AccessDenied")
        self.assertIn("expired", self.assertRefused(self.send("GET", path, h_old), 403,
                                                    "SignatureDoesNotMatch"))
        self.assertIn("service", self.assertRefused(self.send("GET", path, h_sts), 403,
                                                    "SignatureDoesNotMatch"))
        self.assertRefused(self.send("GET", path, h_wrong_secret), 403, "SignatureDoesNotMatch")
        unsigned = [[n, v] for n, v in h_live if n.lower() == "host"]
        self.assertRefused(self.send("GET", path, unsigned), 403, "MissingAuthenticationToken")
        self.assertEqual([r["code"] for r in self.stub.requests("cloudfront")],
                         [None, "InvalidClientTokenId", "InvalidClientTokenId", "ExpiredToken",
                          "AccessDenied", "SignatureDoesNotMatch", "SignatureDoesNotMatch",
                          "SignatureDoesNotMatch", "MissingAuthenticationToken"])

    def test_throttling_and_errors_on_demand(self):
        path = CF + "managed-certificate/dt_1"
        (h,) = self.sign({"method": "GET", "path": path})
        self.stub.fail_next(2, match="managed-certificate")
        self.stub.fail_next(1, 500, "InternalError", "boom", match="connection-group")
        for _ in range(2):
            answer = self.send("GET", path, h)
            self.assertEqual(self.assertRefused(answer, 400, "Throttling"), "Rate exceeded")
            request_id = ET.fromstring(answer.body).findtext("{*}RequestId")
            self.assertEqual(request_id, answer.headers.getheader("x-amzn-RequestId"))
        self.assertEqual(self.send("GET", path, h).status, 200)
        # A failure waits for a request that matches and is correctly signed.
        bad = [[n, v + "0" if n == "Authorization" else v] for n, v in h]
        self.assertRefused(self.send("GET", path, bad), 403, "SignatureDoesNotMatch")
        self.stub.fail_next(1, 403, "AccessDenied", "not today")
        self.assertRefused(self.send("GET", path, bad), 403, "SignatureDoesNotMatch")
        self.assertRefused(self.send("GET", path, h), 403, "AccessDenied")
        self.assertEqual(self.send("GET", path, h).status, 200)

    # -- STS and the other credential sources
    def test_sts_assume_role_hands_out_credentials_that_sign(self):
        role = StubAWS.DEFAULT_ROLE
        form = urllib.parse.urlencode({"Action": "AssumeRole", "Version": "2011-06-15",
                                       "RoleArn": role, "RoleSessionName": "wk-1",
                                       "DurationSeconds": "3600"})
        other = form.replace("wkproxy-stub", "someone-else")
        query = "/?Action=GetCallerIdentity&Version=2011-06-15"
        sts = {"service": "sts", "method": "POST", "path": "/", "headers": [["Content-Type", FORM]]}
        h_assume, h_other, h_caller, h_cf_scope = self.sign(
            dict(sts, body=form), dict(sts, body=other),
            {"service": "sts", "method": "GET", "path": query}, dict(sts, body=form,
                                                                       service="cloudfront"))
        answer = self.send("POST", "/", h_assume, form)
        self.assertEqual(answer.status, 200, answer)
        live = creds_of(answer.body)
        self.assertTrue(live["AccessKeyId"].startswith("ASIA"), live)
        self.stub.set_credentials_lifetime(-60)
        expired = creds_of(self.send("POST", "/", h_assume, form).body)
        self.assertRefused(self.send("POST", "/", h_other, other), 403, "AccessDenied")
        self.assertRefused(self.send("POST", "/", h_cf_scope, form), 403, "SignatureDoesNotMatch")
        caller = self.send("GET", query, h_caller)
        self.assertEqual(caller.status, 200, caller)
        self.assertIn(b"user/" + StubAWS.DEFAULT_KEY_ID.encode(), caller.body)

        path = CF + "managed-certificate/dt_1"
        h_live, h_expired = self.sign(*({"method": "GET", "path": path, "key": c["AccessKeyId"],
                                         "secret": c["SecretAccessKey"],
                                         "token": c["SessionToken"]} for c in (live, expired)))
        self.assertEqual(self.send("GET", path, h_live).status, 200)
        self.assertRefused(self.send("GET", path, h_expired), 403, "ExpiredToken")
        sources = {c["access_key_id"]: c["source"] for c in self.stub.issued_credentials()}
        self.assertEqual(sources[live["AccessKeyId"]], "sts")

    def test_web_identity_is_unsigned_and_checks_the_token(self):
        def assume(token, role=StubAWS.DEFAULT_ROLE):
            body = urllib.parse.urlencode({
                "Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15",
                "RoleArn": role, "RoleSessionName": "pod", "WebIdentityToken": token})
            return self.send("POST", "/", [["Host", self.host], ["Content-Type", FORM]], body)

        token = self.stub.state()["web_identity_token"]
        answer = assume(token)
        self.assertEqual(answer.status, 200, answer)
        c = creds_of(answer.body, "AssumeRoleWithWebIdentity")
        self.assertTrue(c["AccessKeyId"].startswith("ASIA") and c["SessionToken"], c)
        self.assertRefused(assume(token + "x"), 400, "InvalidIdentityToken")
        self.assertRefused(assume(token, role="arn:aws:iam::123456789012:role/nope"), 403,
                           "AccessDenied")

    def test_instance_metadata_wants_a_token(self):
        base = "/latest/meta-data/iam/security-credentials/"
        host = [["Host", self.host]]
        for ttl in ("0", "21601", None):
            with self.subTest(ttl=ttl):
                ttl_header = [] if ttl is None else [["X-aws-ec2-metadata-token-ttl-seconds", ttl]]
                self.assertEqual(self.send("PUT", "/latest/api/token", host + ttl_header).status,
                                 400)
        answer = self.send("PUT", "/latest/api/token",
                           host + [["X-aws-ec2-metadata-token-ttl-seconds", "21600"]])
        self.assertEqual(answer.status, 200, answer)
        token = answer.body.decode()
        self.assertEqual(self.send("GET", base, host).status, 401)
        wrong = host + [["X-aws-ec2-metadata-token", token[:-2] + "xx"]]
        self.assertEqual(self.send("GET", base, wrong).status, 401)
        with_token = host + [["X-aws-ec2-metadata-token", token]]
        role = self.send("GET", base, with_token)
        self.assertEqual(role.status, 200, role)
        creds = json.loads(self.send("GET", base + role.body.decode(), with_token).body)
        self.assertEqual((creds["Code"], creds["Type"]), ("Success", "AWS-HMAC"))
        self.assertTrue(creds["AccessKeyId"].startswith("ASIA") and creds["Token"], creds)
        self.assertTrue(creds["Expiration"].endswith("Z"), creds)
        self.assertEqual(self.send("GET", base + "other-role", with_token).status, 404)
        self.stub.set_state(imds=False)
        self.assertEqual(self.send("PUT", "/latest/api/token",
                                   host + [["X-aws-ec2-metadata-token-ttl-seconds", "60"]]).status,
                         404)

    def test_container_endpoint_checks_authorization(self):
        self.stub.set_state(container_token="pod-identity-token")
        path = "/container-credentials/v1"
        host = [["Host", self.host]]
        self.assertEqual(self.send("GET", path, host).status, 401)
        self.assertEqual(self.send("GET", path, host + [["Authorization", "wrong"]]).status, 403)
        answer = self.send("GET", path, host + [["Authorization", "pod-identity-token"]])
        self.assertEqual(answer.status, 200, answer)
        creds = json.loads(answer.body)
        self.assertEqual(creds["RoleArn"], StubAWS.DEFAULT_ROLE)
        self.assertTrue(creds["AccessKeyId"].startswith("ASIA") and creds["Token"], creds)
        env = self.stub.env("container")
        self.assertEqual(env["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
                         self.stub.url + "/container-credentials")
        self.assertEqual(env["AWS_CONTAINER_AUTHORIZATION_TOKEN"], "pod-identity-token")
        self.assertEqual(env["AWS_ACCESS_KEY_ID"], "")

    # -- CloudFront answers
    def test_tenant_walk_shows_in_managed_certificate_details(self):
        arn = self.stub.tenant("dt_1")["arn"]
        paths = [CF + "managed-certificate/dt_1", CF + "managed-certificate/shop-one",
                 CF + "managed-certificate/" + urllib.parse.quote(arn, safe=""),
                 CF + "managed-certificate/dt_nope", CF + "connection-group/"
                 + self.stub.tenant("dt_1")["connection_group"]]
        h_id, h_name, h_arn, h_unknown, h_cg = self.sign(
            *({"method": "GET", "path": p} for p in paths))

        def details(path, headers):
            answer = self.send("GET", path, headers)
            self.assertEqual(answer.status, 200, answer)
            root = ET.fromstring(answer.body)
            self.assertEqual(root.tag, CF_NS + "ManagedCertificateDetails")
            entries = [{n: e.findtext(CF_NS + n) for n in ("Domain", "RedirectFrom", "RedirectTo")}
                       for e in root.find(CF_NS + "ValidationTokenDetails")]
            return root.findtext(CF_NS + "CertificateStatus"), entries

        tokens = self.stub.tenant("dt_1")["tokens"]
        status, entries = details(paths[0], h_id)
        self.assertEqual(status, "pending-validation")
        self.assertEqual(entries, [
            {"Domain": d,
             "RedirectFrom": f"{d}/.well-known/pki-validation/{tokens[d][0]}",
             "RedirectTo": "validation.us-east-1.acm-validations.aws/123456789012/"
                           f".well-known/pki-validation/{tokens[d][1]}"}
            for d in ("a.example", "www.a.example")])
        self.assertNotEqual(tokens["a.example"][0], tokens["a.example"][1])

        self.stub.set_tenant("dt_1", certificate_status="issued", url_form="scheme",
                             redirect_to_host="localhost:8443")
        for path, headers in ((paths[0], h_id), (paths[1], h_name), (paths[2], h_arn)):
            with self.subTest(path=path):
                status, entries = details(path, headers)
                self.assertEqual(status, "issued")
                self.assertEqual(entries[0]["RedirectFrom"],
                                 f"http://a.example/.well-known/pki-validation/"
                                 f"{tokens['a.example'][0]}")
                self.assertTrue(entries[0]["RedirectTo"].startswith(
                    "https://localhost:8443/123456789012/.well-known/pki-validation/"), entries)
        self.assertRefused(self.send("GET", paths[3], h_unknown), 404, "EntityNotFound")
        cg = self.send("GET", paths[4], h_cg)
        self.assertEqual(cg.status, 200, cg)
        self.assertEqual(ET.fromstring(cg.body).findtext(CF_NS + "RoutingEndpoint"),
                         self.stub.tenant("dt_1")["routing_endpoint"])

    def test_malformed_request_body(self):
        path = CF + "verify-dns-configuration"
        (h,) = self.sign({"method": "POST", "path": path, "body": "<VerifyDns",
                          "headers": [["Content-Type", "application/xml"]]})
        self.assertRefused(self.send("POST", path, h, "<VerifyDns"), 400, "MalformedXML")

    def test_env_points_every_endpoint_at_the_stub(self):
        env = self.stub.env()
        for name in ("AWS_ENDPOINT_URL_CLOUDFRONT", "AWS_ENDPOINT_URL_STS",
                     "AWS_EC2_METADATA_SERVICE_ENDPOINT"):
            self.assertEqual(env[name], self.stub.url)
        self.assertEqual(env["AWS_CA_BUNDLE"], self.ca.ca_pem)
        self.assertEqual((env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]),
                         (StubAWS.DEFAULT_KEY_ID, StubAWS.DEFAULT_SECRET))
        session = self.stub.env("session", AWS_REGION="us-east-1")
        self.assertTrue(session["AWS_SESSION_TOKEN"])
        self.assertEqual(session["AWS_REGION"], "us-east-1")
        with open(self.stub.env("web_identity")["AWS_WEB_IDENTITY_TOKEN_FILE"]) as f:
            self.assertEqual(f.read().strip(), self.stub.state()["web_identity_token"])


if __name__ == "__main__":
    unittest.main()
