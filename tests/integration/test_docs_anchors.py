"""The troubleshooting guide explains every message, and the documentation's links lead somewhere.

Every reason `wkproxy check` can print (proxy/cli/check.cpp), every state hint of the status page
(proxy/app/status_page.cpp) and every stage sentence of a tenant domain's journey
(proxy/validation/journey.cpp) has a paragraph in docs/onboarding.md, "3. Troubleshooting",
right after an explicit anchor <a id="ts-...">. MESSAGES below pairs the pieces of each message,
exactly as the C++ source spells its string literals (adjacent literals joined), with its
anchor. The test fails when
- a listed piece no longer occurs in the source (a message was reworded or removed);
- the source has a message literal that no entry lists and IGNORED does not excuse (a message
  was added), or an enum value (hint_case, stage) that has no anchor;
- an anchor is missing, duplicated or outside the troubleshooting section, or the paragraph after
  it does not quote the message.
So the list cannot drift from the code silently. A second test checks every relative link and
#anchor in README.md, docs/*.md and bench/README.md.

Standard library only; needs no binary: python3 -m unittest -v test_docs_anchors
"""

import os
import re
import unittest
from typing import NamedTuple

_HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(_HERE, "..", ".."))
ONBOARDING = "docs/onboarding.md"
TROUBLESHOOTING_HEADING = "## 3. Troubleshooting"

CHECK = "proxy/cli/check.cpp"
STATUS = "proxy/app/status_page.cpp"
JOURNEY = "proxy/validation/journey.cpp"

# Where the messages are made: a whole file, or only the named functions of it.
SCOPES = {
    CHECK: None,
    STATUS: ("not_found_hint", "unreachable_hint", "other_hint", "state_hint"),
    JOURNEY: ("journey_of", "dns_record"),
}


class Entry(NamedTuple):
    anchor: str
    source: str
    pieces: tuple  # string literals of the source, exactly (adjacent literals joined)
    quote: tuple = ()  # what the paragraph must contain; default: every piece, trimmed


MESSAGES = [
    # ---- wkproxy check: the reason of a FAIL row (status_failure, next_hop, check_token, ...)
    Entry("ts-check-421", CHECK,
          (": CloudFront refused the Host for this SNI; use plain http:// for cloudfront",)),
    Entry("ts-check-403", CHECK,
          (" (Host rejected? CloudFront answers 403 when no distribution tenant serves this "
           "domain yet)",)),
    Entry("ts-check-400", CHECK,
          (" (Host rejected? the server did not accept the request for this domain; CloudFront "
           "answers 400/403 when no distribution tenant serves the Host)",)),
    Entry("ts-check-404", CHECK,
          (" (no validation file there: is the token still pending, and did the request reach "
           "CloudFront rather than the origin?)",)),
    Entry("ts-check-proxy-error", CHECK, ("wkproxy:",)),
    Entry("ts-check-other-status", CHECK, (" (at ",), ("(at URL)",)),
    Entry("ts-check-redirect-no-location", CHECK, (" without a Location header",)),
    Entry("ts-check-redirect-status", CHECK, (": a CA follows only 301, 302, 307 and 308",)),
    Entry("ts-check-redirect-refused", CHECK,
          ("refused to follow the redirect to ", "--same-host follows redirects only to ",
           " itself and ACM validation hosts (https://*.acm-validations.aws)",
           " itself, ACM validation hosts (https://*.acm-validations.aws) and the --allow hosts",
           "only ", " are followed; pass --allow ", " to follow it")),
    Entry("ts-check-redirect-loop", CHECK,
          ("redirect loop: ", " redirects to ", ", which was already requested")),
    Entry("ts-check-too-many-redirects", CHECK, ("too many redirects: more than ", " (next: ")),
    Entry("ts-check-bad-location", CHECK,
          ("invalid Location ", "cannot resolve Location ", " against ", "redirect to ",
           # why a Location (or a RedirectFrom) is not a URL the check can fetch
           "invalid URL ", "invalid URL \"", "scheme must be http or https, got \"",
           "user info in URLs is not allowed", "the URL has no host",
           "unsupported percent-encoded host \"", "the URL has no usable host", "invalid port \""),
          ("invalid Location", "cannot resolve Location", "against", "redirect to",
           "scheme other than http or https", "user info", "no host", "a bad port")),
    Entry("ts-check-body-differs", CHECK,
          ("body differs from RedirectTo: got ", " bytes, expected ",
           ", first difference at offset ", " (got an empty body)", " (got starts \"")),
    Entry("ts-check-origin-answered", CHECK,
          ("; if that is the origin's answer, the proxy did not take the validation route: is ",
           " in the running proxy's domains: list?")),
    Entry("ts-check-dns-elsewhere", CHECK, ("; does ", " point at the proxy?")),
    Entry("ts-check-redirectto-failed", CHECK, ("RedirectTo fetch failed: ",)),
    Entry("ts-check-bad-redirect-from", CHECK, ("redirect_from: ",)),
    Entry("ts-check-dns-lookup", CHECK,
          ("DNS lookup for ", " failed: ", " returned no IPv4 or IPv6 address",
           " timed out after ")),
    Entry("ts-check-refused", CHECK,
          ("nothing is listening on ", ": connection refused",
           " (is wkproxy running with this config? or pass --via HOST:PORT)")),
    Entry("ts-check-connect-timeout", CHECK, ("timeout: no connection to ", " within ")),
    Entry("ts-check-cannot-connect", CHECK, ("cannot connect to ",)),
    Entry("ts-check-tls", CHECK,
          ("TLS with ", " (name ", "TLS handshake with ", " failed: ", " timed out after ",
           "cannot set up TLS for the name ")),
    Entry("ts-check-send-failed", CHECK,
          ("sending the request to ", " failed: ", " timed out after ")),
    Entry("ts-check-no-answer", CHECK, ("no answer from ", " within ")),
    Entry("ts-check-closed-without-answer", CHECK, (" closed the connection without answering",)),
    Entry("ts-check-invalid-response", CHECK,
          (" sent an invalid HTTP response: ", "reading the response from ", " failed: ")),
    Entry("ts-check-body-too-large", CHECK, (" sent a body larger than ", " bytes")),
    Entry("ts-check-too-many-1xx", CHECK, (" sent too many 1xx interim responses",)),
    # ---- wkproxy check: errors that end the run before any row (stderr)
    Entry("ts-check-no-tokens", CHECK,
          ("wkproxy check: nothing to check: no tokens in config; run wkproxy tokens import\n",)),
    Entry("ts-check-no-listener", CHECK,
          ("the config has no plain-HTTP listener without accept_proxy_from; pass --via HOST:PORT",
           "the first plain-HTTP listener (",
           ") uses port 0, so its port is only known to the running proxy; pass --via HOST:PORT "
           "(the port from --ports-file)")),
    Entry("ts-check-ca-store", CHECK,
          ("cannot load the system CA store: ", "cannot load --ca-file ")),
    # ---- the status page: a domain's state hint (state_hint and its helpers)
    Entry("ts-hint-no-request", STATUS,
          ("no validation request seen yet",
           ", the CA has not reached this domain through wkproxy")),
    Entry("ts-hint-answered", STATUS, ("answered 200 at ", " — the CA got the token")),
    Entry("ts-hint-redirected", STATUS, ("redirected to ACM at ",)),
    Entry("ts-hint-origin", STATUS,
          ("the last request under the prefix was not a known token and went to the origin",)),
    Entry("ts-hint-unreachable", STATUS,
          ("could not reach ", "the RedirectTo host", "the upstream", "status ", " at "),
          ("could not reach", "the RedirectTo host", "the upstream", "status 502")),
    Entry("ts-hint-421", STATUS,
          ("last answer was 421 from CloudFront — check SNI/Host (use plain http:// for "
           "cloudfront, or the right connection group)",)),
    Entry("ts-hint-403", STATUS,
          ("last answer was 403 from CloudFront — the domain is probably not attached to a "
           "distribution tenant yet",)),
    Entry("ts-hint-404-forward", STATUS,
          ("last answer was 404 — CloudFront or the origin does not know this token; check the "
           "tokens / RedirectFrom",)),
    Entry("ts-hint-404-fetch", STATUS,
          ("last answer was 404 from ",
           " — ACM does not know this token; check the tokens / RedirectTo",
           "the RedirectTo host"),
          ("last answer was 404 from",
           "ACM does not know this token; check the tokens / RedirectTo")),
    Entry("ts-hint-404-static", STATUS,
          ("last answer was 404 — wkproxy has no file for this token; check the tokens / "
           "static_dir",)),
    Entry("ts-hint-404-not-found", STATUS,
          ("last answer was 404 from wkproxy — the file is not a token of this domain "
           "(unknown_token: not_found); check the tokens / RedirectFrom",)),
    Entry("ts-hint-no-answer", STATUS, ("last request got no answer", " at ")),
    Entry("ts-hint-other-status", STATUS, ("last answer was ", " at ")),
    # ---- the status page, aws: a tenant domain's stage (journey_of, dns_record)
    Entry("ts-stage-unknown", JOURNEY, ("no answer from the CloudFront API yet",)),
    Entry("ts-stage-waiting-for-ca", JOURNEY,
          ("waiting for the CA to fetch the token (certificate ",)),
    Entry("ts-stage-token-served", JOURNEY,
          ("token served: the CA fetched it at ", " (answer ", "); ACM is issuing")),
    Entry("ts-stage-token-problem", JOURNEY,
          ("the CA's last fetch, at ", ", got ", "no answer", ": check the route and the token")),
    Entry("ts-stage-switch-dns", JOURNEY,
          ("issued: switch DNS now", "CNAME ",
           ": alias record (Route 53), ANAME or CNAME flattening → ")),
    Entry("ts-stage-switch-dns-no-endpoint", JOURNEY, (" (routing endpoint not known yet)",)),
    Entry("ts-stage-dns-invalid", JOURNEY, (" (CloudFront does not see the record yet)",)),
    Entry("ts-stage-dns-unknown", JOURNEY, (" (CloudFront could not check the record)",)),
    Entry("ts-stage-dns-valid", JOURNEY,
          ("DNS valid: clients move to CloudFront as old DNS answers expire (last request here "
           "at ",)),
    Entry("ts-stage-safe-to-remove", JOURNEY,
          ("safe to remove wkproxy for this domain: DNS points at CloudFront and ",
           "no request came here since ")),
    Entry("ts-stage-failed", JOURNEY,
          ("certificate ", ": request it again in CloudFront, then its new token is served here")),
]

# Literals of the scopes that are not diagnoses, each with the reason.
IGNORED = {
    CHECK: {
        # argument errors: exit 2, printed with the usage text
        " needs a value", "--via: ", "--timeout: invalid duration \"",
        "\" (expected e.g. 500ms, 10s, 1m)", "--allow: ", "unknown argument ",
        "--via and --dns cannot be used together",
        "--same-host and --allow cannot be used together",
        "no configuration file (-c FILE)",
        "expected a host name or IP address (no scheme, port or path), got \"",
        # the request it sends and what it parses
        "wkproxy-check (like the ACM validator)", "https://", "http://", "<title>", "</title>",
        "<unknown-status>",
        # the table and the headline around the reasons
        "no answer",  # the CHAIN column for a hop without a response; the reason says why
        "DNS: ", " passed, ", " failed\n", "checking ", " token", " tokens",
        " like the CA: RedirectFrom ", ", redirects followed ", ", body compared with RedirectTo\n",
        "through ", "through the listener ", "to each domain's DNS addresses, port 80",
        "to the domain only (--same-host)", "to the domain and ACM validation hosts",
        "to the domain, ACM validation hosts and the --allow hosts (",
        "wkproxy check: ",  # the prefix of the stderr lines listed above
        "wkproxy check: internal error: ",  # a bug or resource exhaustion, not a diagnosis
        # the pointer to the troubleshooting section after a FAIL row (checked below)
        'What each reason means and what to do: docs/onboarding.md, "3. Troubleshooting"\n',
    },
    STATUS: set(),
    JOURNEY: set(),
}

# Other anchors of the troubleshooting section: symptoms, not messages.
SYMPTOM_ANCHORS = {
    "ts-symptom-no-ca-request", "ts-symptom-pending-validation",
    "ts-symptom-validation-timed-out", "ts-symptom-traffic-after-switch",
}

# Every value of the enums behind the hints, and the anchors that explain it.
HINT_CASES = {
    "origin": {"ts-hint-origin"},
    "unreachable": {"ts-hint-unreachable"},
    "redirected": {"ts-hint-redirected"},
    "answered": {"ts-hint-answered"},
    "cf_421": {"ts-hint-421"},
    "cf_403": {"ts-hint-403"},
    "not_found": {"ts-hint-404-forward", "ts-hint-404-fetch", "ts-hint-404-static",
                  "ts-hint-404-not-found"},
    "other": {"ts-hint-no-answer", "ts-hint-other-status"},
}
STAGES = {
    "unknown": {"ts-stage-unknown"},
    "waiting_for_ca": {"ts-stage-waiting-for-ca"},
    "token_problem": {"ts-stage-token-problem"},
    "token_served": {"ts-stage-token-served"},
    "switch_dns": {"ts-stage-switch-dns", "ts-stage-switch-dns-no-endpoint",
                   "ts-stage-dns-invalid", "ts-stage-dns-unknown"},
    "dns_valid": {"ts-stage-dns-valid"},
    "safe_to_remove": {"ts-stage-safe-to-remove"},
    "failed": {"ts-stage-failed"},
}


def read(rel: str) -> str:
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


# ---- A small C++ lexer: comments, character and string literals (raw ones too)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"'}
_RAW = re.compile(r'(?:u8|u|U|L)?R"([^()\\\s]{0,16})\(')


def scan(src: str):
    """(start, end, text) of every string literal, adjacent literals joined into one; and the
    source with comments and literals blanked out (same length), for matching braces."""
    literals = []
    masked = list(src)
    i, n = 0, len(src)

    def blank(a, b):
        for k in range(a, b):
            if masked[k] != "\n":
                masked[k] = " "

    while i < n:
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
            continue
        if src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            blank(i, j)
            i = j
            continue
        c = src[i]
        raw = _RAW.match(src, i) if c in "uULR" else None
        if raw and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            close = src.index(")" + raw.group(1) + '"', raw.end())
            end = close + len(raw.group(1)) + 2
            literals.append([i, end, src[raw.end():close]])
            blank(i, end)
            i = end
            continue
        if c == "'" and i > 0 and src[i - 1].isalnum():
            i += 1  # a digit separator: 10'000
            continue
        if c == "'":
            j = i + 1
            while src[j] != "'":
                j += 2 if src[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
            continue
        if c == '"':
            j = i + 1
            text = []
            while src[j] != '"':
                if src[j] == "\\":
                    text.append(_ESCAPES.get(src[j + 1], src[j + 1]))
                    j += 2
                else:
                    text.append(src[j])
                    j += 1
            end = j + 1
            blank(i, end)
            if literals and src[literals[-1][1]:i].strip() == "":
                literals[-1][1] = end
                literals[-1][2] += "".join(text)
            else:
                literals.append([i, end, "".join(text)])
            i = end
            continue
        i += 1
    return [tuple(x) for x in literals], "".join(masked)


def function_span(src: str, masked: str, name: str):
    """[start, end) of the body of the function definition `name`."""
    for m in re.finditer(r"\b" + re.escape(name) + r"\s*\(", masked):
        line_start = masked.rfind("\n", 0, m.start()) + 1
        if masked[line_start] in " \t":
            continue  # a call, not a definition at namespace level
        depth = 0
        j = m.end() - 1
        while True:  # the parameter list
            if masked[j] == "(":
                depth += 1
            elif masked[j] == ")":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        k = j + 1
        while masked[k] in " \t\n" or masked.startswith("const", k):
            k += 5 if masked.startswith("const", k) else 1
        if masked[k] != "{":
            continue  # a declaration
        depth = 0
        for e in range(k, len(masked)):
            if masked[e] == "{":
                depth += 1
            elif masked[e] == "}":
                depth -= 1
                if depth == 0:
                    return k, e + 1
    raise AssertionError(f"no definition of {name}() found")


def message_literals(rel: str):
    """The literals of a scope that may be (part of) a message: not an include, not a bare
    identifier or status word such as "forward" or "validation-timed-out"."""
    src = read(rel)
    literals, masked = scan(src)
    names = SCOPES[rel]
    spans = [(0, len(src))] if names is None else [function_span(src, masked, n) for n in names]
    out = []
    for start, _end, text in literals:
        if not any(a <= start < b for a, b in spans):
            continue
        if re.fullmatch(r"[\w./-]+\.(?:hpp|h)", text) or re.fullmatch(r"[\w.-]*", text):
            continue
        if sum(ch.isalpha() for ch in text) < 2:
            continue
        out.append(text)
    return out


def enum_values(rel: str, name: str):
    src = read(rel)
    _, masked = scan(src)
    m = re.search(r"enum\s+class\s+" + re.escape(name) + r"\s*\{([^}]*)\}", masked)
    if not m:
        raise AssertionError(f"no enum class {name} in {rel}")
    return [v.strip().split("=")[0].strip() for v in m.group(1).split(",") if v.strip()]


def normalize(text: str) -> str:
    return " ".join(text.replace("`", "").replace("**", "").split())


def trimmed(piece: str) -> str:
    return piece.strip(" \n:;,()")


def anchor_paragraphs(doc: str):
    """anchor id -> the text that follows its <a id> line, up to the next blank line."""
    out = {}
    lines = doc.split("\n")
    for i, line in enumerate(lines):
        m = re.fullmatch(r'<a id="([^"]+)"></a>', line.strip())
        if not m:
            continue
        para = []
        for nxt in lines[i + 1:]:
            if not nxt.strip():
                break
            para.append(nxt)
        out.setdefault(m.group(1), []).append(normalize(" ".join(para)))
    return out


class TroubleshootingAnchorsTest(unittest.TestCase):
    def test_every_listed_piece_occurs_in_the_source(self):
        for rel in SCOPES:
            found = set(message_literals(rel))
            for e in MESSAGES:
                if e.source != rel:
                    continue
                for piece in e.pieces:
                    with self.subTest(anchor=e.anchor, piece=piece):
                        self.assertTrue(piece in found,
                                        f"{rel} no longer has the literal {piece!r} ({e.anchor}): "
                                        "update docs/onboarding.md and this list")

    def test_every_message_of_the_source_is_listed(self):
        for rel in SCOPES:
            listed = {p for e in MESSAGES if e.source == rel for p in e.pieces}
            for text in message_literals(rel):
                with self.subTest(source=rel, literal=text):
                    self.assertTrue(text in listed or text in IGNORED[rel],
                                    f"{rel} has a message the troubleshooting guide does not "
                                    f"explain: {text!r}; add a paragraph with an anchor to "
                                    "docs/onboarding.md and an entry to MESSAGES (or IGNORED)")

    def test_every_enum_value_has_its_anchors(self):
        anchors = {e.anchor for e in MESSAGES}
        for rel, enum, table in ((STATUS, "hint_case", HINT_CASES),
                                 ("proxy/validation/journey.hpp", "stage", STAGES)):
            values = enum_values(rel, enum)
            self.assertEqual(sorted(values), sorted(table),
                             f"{enum} in {rel} changed: map every value to its anchors here")
            for value, wanted in table.items():
                self.assertTrue(wanted <= anchors, f"{enum}::{value}: {wanted - anchors}")

    def test_every_anchor_is_in_the_guide_before_its_message(self):
        doc = read(ONBOARDING)
        self.assertEqual(doc.count(TROUBLESHOOTING_HEADING + "\n"), 1)
        section = doc[doc.index(TROUBLESHOOTING_HEADING + "\n"):]
        paragraphs = anchor_paragraphs(doc)
        in_section = anchor_paragraphs(section)
        for anchor, texts in paragraphs.items():
            with self.subTest(anchor=anchor):
                self.assertEqual(len(texts), 1, f"{anchor} is defined {len(texts)} times")
        seen = set()
        for e in MESSAGES:
            with self.subTest(anchor=e.anchor):
                self.assertNotIn(e.anchor, seen, "listed twice")
                seen.add(e.anchor)
                self.assertTrue(e.anchor in in_section,
                                f'no <a id="{e.anchor}"></a> in {ONBOARDING}, section '
                                f'"{TROUBLESHOOTING_HEADING[3:]}"')
                text = in_section[e.anchor][0]
                self.assertTrue(text, f"{e.anchor}: no paragraph follows the anchor")
                quotes = e.quote or tuple(trimmed(p) for p in e.pieces if trimmed(p))
                for q in quotes:
                    self.assertIn(normalize(q), text,
                                  f"the paragraph after {e.anchor} does not quote {q!r}")
        ts = {a for a in in_section if a.startswith("ts-")}
        self.assertEqual(ts - seen - SYMPTOM_ANCHORS, set(),
                         "anchors in the troubleshooting section that no entry lists")
        self.assertEqual(SYMPTOM_ANCHORS - ts, set(), "symptom anchors missing from the guide")

    def test_the_pointers_the_program_prints_lead_to_the_guide(self):
        """The status page names the paragraph of each hint (hint_help: "docs/onboarding.md#ts-
        hint-..."), and a failed `check` names the troubleshooting section: both must exist."""
        doc = read(ONBOARDING)
        section = doc[doc.index(TROUBLESHOOTING_HEADING + "\n"):]
        in_section = anchor_paragraphs(section)
        status = read(STATUS)
        body = status[status.index("std::string hint_help("):]
        body = body[:body.index("\n}\n")]
        named = set(re.findall(r'"(ts-[a-z0-9-]+)"', body))
        self.assertGreaterEqual(len(named), 10, "hint_help names fewer anchors than expected")
        for anchor in named:
            with self.subTest(anchor=anchor):
                self.assertIn(anchor, in_section)
        self.assertIn('docs/onboarding.md#', body)
        check = read(CHECK)
        self.assertIn('docs/onboarding.md, \\"' + TROUBLESHOOTING_HEADING[3:] + '\\"', check)


# ---- Links

DOCS = ["README.md", "bench/README.md"] + sorted(
    "docs/" + f for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md"))

_LINK = re.compile(r"(?<!\!)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^()\s]+)\)")


def without_code(text: str) -> str:
    """The markdown without fenced blocks, indented code blocks and code spans."""
    out, fence, prev_blank = [], False, True
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fence = not fence
            out.append("")
            continue
        if fence or (prev_blank and line.startswith("    ") and not line.lstrip().startswith("-")):
            out.append("")
            continue
        prev_blank = not line.strip()
        out.append(line)
    text = "\n".join(out)
    # A code span that holds a link ([`x`](y) was cut at the backtick) stays: it is link text.
    return re.sub(r"`[^`\n]*`",
                  lambda m: m.group(0) if "](" in m.group(0) else "x" * len(m.group(0)), text)


def slug(heading: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors_of(text: str):
    found = set(re.findall(r'<a (?:id|name)="([^"]+)"', text))
    counts = {}
    fence = False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fence = not fence
        m = None if fence else re.match(r"#{1,6} +(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = counts.get(base, 0)
            counts[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


class DocumentationLinksTest(unittest.TestCase):
    def test_relative_links_and_anchors_resolve(self):
        checked = 0
        for rel in DOCS:
            text = read(rel)
            for m in _LINK.finditer(without_code(text)):
                target = m.group(2)
                if re.match(r"[a-z][a-z0-9+.-]*:", target):
                    continue  # https:, mailto: ...
                with self.subTest(doc=rel, link=target):
                    checked += 1
                    path, _, fragment = target.partition("#")
                    dest = rel
                    if path:
                        dest = os.path.normpath(os.path.join(os.path.dirname(rel), path))
                    self.assertFalse(dest.startswith(".."),
                                     f"{rel}: {target} leaves the repository")
                    self.assertTrue(os.path.exists(os.path.join(ROOT, dest)),
                                    f"{rel}: {target}: no such file {dest}")
                    if fragment:
                        self.assertTrue(dest.endswith(".md"),
                                        f"{rel}: {target}: an anchor in a non-markdown file")
                        self.assertTrue(fragment in anchors_of(read(dest)),
                                        f"{rel}: {target}: {dest} has no heading or anchor "
                                        f"#{fragment}")
        self.assertGreater(checked, 50)


if __name__ == "__main__":
    unittest.main()
