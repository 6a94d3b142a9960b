"""wkproxy's AWS Signature Version 4 (proxy/aws/sigv4) against the reference signer, botocore
(Debian's python3-botocore, run with /usr/bin/python3 where Debian's Python packages import):
the same requests, credentials and times, signed by both, must give the same Authorization
header. The requests are shaped like the CloudFront and STS calls wkproxy makes, plus edge
cases (ARN identifiers in the path, query values that need encoding, repeated and spaced
header values, session tokens, a body)."""

import json
import os
import subprocess
import unittest

from wkharness import missing

SIGNER = r'''
import datetime, json, sys
from unittest import mock
from urllib.parse import quote
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
for line in sys.stdin:
    v = json.loads(line)
    query = "&".join(quote(n, safe="") + "=" + quote(x, safe="") for n, x in v["query"])
    url = "https://" + dict((n.lower(), x) for n, x in v["headers"])["host"] + v["path"]
    if query:
        url += "?" + query
    headers = [(n, x) for n, x in v["headers"] if n.lower() != "host"]
    req = AWSRequest(method=v["method"], url=url, data=v["payload"].encode())
    for n, x in headers:
        req.headers[n] = x
    creds = Credentials(v["key"], v["secret"], v["token"] or None)
    auth = SigV4Auth(creds, v["service"], v["region"])
    with mock.patch("botocore.auth.datetime") as dt:
        dt.datetime.utcnow.return_value = datetime.datetime.utcfromtimestamp(v["time"])
        auth.add_auth(req)
    print(req.headers["Authorization"])
'''

BASE = {"key": "AKIDEXAMPLE", "secret": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "token": "",
        "region": "us-east-1", "service": "cloudfront", "payload": "", "query": [],
        "method": "GET", "time": 1764936000}
CF = "cloudfront.amazonaws.com"


def case(**kw):
    c = dict(BASE)
    c.update(kw)
    c.setdefault("headers", [["Host", CF]])
    return c


CASES = [
    case(path="/2020-05-31/managed-certificate/dt_2wjDZi3hD1ivOXf6rpZJOSNE1AB"),
    # An ARN as the identifier: its ':' and '/' are percent-encoded on the wire.
    case(path="/2020-05-31/managed-certificate/arn%3Aaws%3Acloudfront%3A%3A123456789012%3A"
              "distribution-tenant%2Fdt_2wjDZi3hD1ivOXf6rpZJOSNE1AB"),
    case(path="/2020-05-31/distribution-tenant/dt_abc", token="FQoGZXIvYXdzE+/tok=en"),
    case(method="POST", path="/2020-05-31/verify-dns-configuration",
         headers=[["Host", CF], ["Content-Type", "application/xml"]],
         payload='<?xml version="1.0" encoding="UTF-8"?><VerifyDnsConfigurationRequest '
                 'xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/"><Identifier>dt_abc'
                 '</Identifier></VerifyDnsConfigurationRequest>'),
    case(service="sts", host="sts.amazonaws.com", path="/",
         headers=[["Host", "sts.amazonaws.com"]],
         query=[["Action", "AssumeRole"], ["Version", "2011-06-15"],
                ["RoleArn", "arn:aws:iam::123456789012:role/wk proxy"],
                ["RoleSessionName", "wkproxy-1"], ["DurationSeconds", "3600"]]),
    case(path="/", query=[["b", "2"], ["a", "x y&z=~"], ["a", "1"]],
         headers=[["Host", CF], ["X-Custom", "  spaced   value "], ["x-custom", "second"]]),
    case(path="/2020-05-31/connection-group/cg_1", region="eu-west-1", time=1893456000),
]


class SigV4Botocore(unittest.TestCase):
    def test_every_request_signs_as_botocore_signs_it(self):
        signer = os.environ.get("SIGV4_VECTORS_BIN")
        self.assertTrue(signer and os.access(signer, os.X_OK),
                        "SIGV4_VECTORS_BIN (built by the tests) is not set or not executable")
        check = subprocess.run(["/usr/bin/python3", "-c", "import botocore"],
                               capture_output=True, text=True)
        if check.returncode != 0:
            missing("python3-botocore is not installed (tools/deps.sh installs it)")
        lines = "".join(json.dumps({k: v for k, v in c.items() if k != "host"}) + "\n"
                        for c in CASES)
        ours = subprocess.run([signer], input=lines, capture_output=True, text=True, timeout=30)
        self.assertEqual(ours.returncode, 0, ours.stderr)
        ref = subprocess.run(["/usr/bin/python3", "-c", SIGNER], input=lines,
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(ref.returncode, 0, ref.stderr)
        ours_lines = ours.stdout.splitlines()
        ref_lines = ref.stdout.splitlines()
        self.assertEqual(len(ours_lines), len(CASES), ours.stdout)
        for c, mine, theirs in zip(CASES, ours_lines, ref_lines):
            with self.subTest(path=c["path"], service=c["service"]):
                self.assertEqual(mine, theirs)


if __name__ == "__main__":
    unittest.main()
