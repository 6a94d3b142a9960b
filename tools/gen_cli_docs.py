#!/usr/bin/env python3
"""Generates `wkproxy --help` (a C++ header) and the man page wkproxy(1) (roff) from one
source, docs/wkproxy.1.md, so the two cannot drift. Run by the build (CMakeLists.txt):

    gen_cli_docs.py SOURCE.md OUT_HEADER OUT_MAN VERSION

The source grammar is described at the top of docs/wkproxy.1.md. Python standard library only.
"""

from __future__ import annotations

import re
import sys
import textwrap
from dataclasses import dataclass, field

WIDTH = 98  # help text columns
TERM_COLUMN = 20  # definitions: the term, then its text from column indent + 22


@dataclass
class Block:
    kind: str  # "verbatim" | "para" | "defs"
    lines: list[str] = field(default_factory=list)  # verbatim lines, or paragraph words
    defs: list[tuple[str, str]] = field(default_factory=list)  # (term, text)


@dataclass
class Section:
    title: str  # "OPTIONS", or "wkproxy check" for a subcommand
    blocks: list[Block] = field(default_factory=list)
    subs: list["Section"] = field(default_factory=list)


def fail(msg: str) -> None:
    sys.exit(f"gen_cli_docs.py: {msg}")


def parse_blocks(lines: list[str]) -> list[Block]:
    blocks: list[Block] = []
    chunk: list[str] = []

    def flush() -> None:
        if not chunk:
            return
        if all(line.startswith("    ") for line in chunk):
            blocks.append(Block("verbatim", [line[4:] for line in chunk]))
        elif len(chunk) >= 2 and chunk[1].startswith(":   "):
            term, text = chunk[0], []
            for line in chunk[1:]:
                if not (line.startswith(":   ") or line.startswith("    ")):
                    fail(f"definition of {term!r}: unexpected line {line!r}")
                text.append(line[4:].strip())
            if blocks and blocks[-1].kind == "defs":
                blocks[-1].defs.append((term, " ".join(text)))
            else:
                blocks.append(Block("defs", defs=[(term, " ".join(text))]))
        else:
            blocks.append(Block("para", [" ".join(line.strip() for line in chunk)]))
        chunk.clear()

    for line in lines:
        if line.strip():
            chunk.append(line.rstrip())
        else:
            flush()
    flush()
    return blocks


def parse(text: str) -> tuple[str, str, list[Section]]:
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    lines = text.splitlines()
    title = next((line for line in lines if line.startswith("# ")), None)
    m = re.fullmatch(r"# (\w+)\((\d)\) -- (.+)", title or "")
    if not m:
        fail("the first heading must read '# NAME(N) -- summary'")
    name, summary = m.group(1), m.group(3)
    sections: list[Section] = []
    current: Section | None = None
    body: list[str] = []

    def close() -> None:
        if current is not None:
            current.blocks = parse_blocks(body)
        body.clear()

    for line in lines:
        if line.startswith("# "):
            continue
        if line.startswith("## ") or line.startswith("### "):
            close()
            sec = Section(line.split(" ", 1)[1].strip())
            if line.startswith("## "):
                sections.append(sec)
            else:
                if not sections:
                    fail(f"subsection {sec.title!r} outside a section")
                sections[-1].subs.append(sec)
            current = sec
        else:
            body.append(line)
    close()
    return name, summary, sections


# ---------------------------------------------------------------------------------------------
# Plain text (--help)


def wrap(text: str, indent: int, first: str = "") -> list[str]:
    pad = " " * indent
    return textwrap.wrap(text, WIDTH, initial_indent=pad + first, subsequent_indent=pad,
                         break_long_words=False, break_on_hyphens=False) or [pad]


def plain_blocks(blocks: list[Block], indent: int, usage: bool) -> list[str]:
    out: list[str] = []
    for i, b in enumerate(blocks):
        if out:
            out.append("")
        if b.kind == "verbatim":
            lines = b.lines
            if usage and i == 0:
                lines = ["usage: " + lines[0]] + ["       " + line for line in lines[1:]]
            out += [" " * indent + line for line in lines]
        elif b.kind == "para":
            out += wrap(b.lines[0], indent)
        else:
            for term, text in b.defs:
                head = " " * (indent + 2) + term
                if len(term) <= TERM_COLUMN:
                    lines = wrap(text, indent + 2 + TERM_COLUMN + 2)
                    lines[0] = head.ljust(indent + 2 + TERM_COLUMN + 2) + lines[0].lstrip()
                    out += lines
                else:
                    out.append(head)
                    out += wrap(text, indent + 2 + TERM_COLUMN + 2)
    return out


def heading(title: str) -> str:
    return title[:1] + title[1:].lower() + ":"


def plain_main(sections: list[Section]) -> str:
    out: list[str] = []
    for sec in sections:
        if sec.title == "SEE ALSO":
            continue
        if out:
            out.append("")
        if sec.title == "SYNOPSIS":
            out += plain_blocks(sec.blocks, 0, usage=True)
        elif sec.title == "DESCRIPTION":
            out += plain_blocks(sec.blocks, 0, usage=False)
        else:
            out.append(heading(sec.title))
            out += plain_blocks(sec.blocks, 0, usage=False)
            for sub in sec.subs:
                out.append("")
                out += plain_blocks(sub.blocks, 2, usage=False)
    return "\n".join(out) + "\n"


def plain_sub(sub: Section) -> str:
    if not sub.blocks or sub.blocks[0].kind != "verbatim":
        fail(f"{sub.title}: the first block must be its usage (indented 4 spaces)")
    return "\n".join(plain_blocks(sub.blocks, 0, usage=True)) + "\n"


# ---------------------------------------------------------------------------------------------
# roff (man page)


def esc(text: str) -> str:
    return text.replace("\\", "\\e").replace("-", "\\-")


def line_safe(text: str) -> str:
    # A roff input line starting with '.' or "'" would be a request.
    return "\\&" + text if text[:1] in (".", "'") else text


def inline(text: str) -> str:
    """Paragraph text: `code` in bold, everything else escaped."""
    parts = re.split(r"`([^`]+)`", text)
    return "".join(esc(p) if i % 2 == 0 else f"\\fB{esc(p)}\\fR" for i, p in enumerate(parts))


def term_roff(term: str) -> str:
    words = []
    for word in term.split(" "):
        core = word.rstrip(",")
        tail = word[len(core):]
        if core.startswith("-") or core.startswith("/") or core.startswith("SIG"):
            words.append(f"\\fB{esc(core)}\\fR{tail}")
        elif re.fullmatch(r"[A-Z][A-Z0-9_:|\-\[\]]*", core):
            words.append(f"\\fI{esc(core)}\\fR{tail}")
        else:
            words.append(esc(word))
    return " ".join(words)


def roff_blocks(blocks: list[Block]) -> list[str]:
    out: list[str] = []
    for b in blocks:
        if b.kind == "verbatim":
            out += [".PP", ".nf", ".RS 4"]
            out += [line_safe(esc(line)) for line in b.lines]
            out += [".RE", ".fi"]
        elif b.kind == "para":
            out += [".PP", line_safe(inline(b.lines[0]))]
        else:
            for term, text in b.defs:
                out += [".TP", line_safe(term_roff(term)), line_safe(inline(text))]
    return out


def roff(name: str, summary: str, version: str, sections: list[Section], source: str) -> str:
    out = [f'.\\" Generated from {source} by tools/gen_cli_docs.py: edit that file instead.',
           f'.TH {name.upper()} 1 "" "{name} {version}" "User Commands"',
           ".nh", ".ad l",  # no hyphenation, no justification: options stay whole words
           ".SH NAME", f"{name} \\- {esc(summary)}"]
    for sec in sections:
        out.append(f'.SH "{sec.title}"')
        if sec.title == "SYNOPSIS":
            out += [".nf"] + [line_safe(esc(line)) for b in sec.blocks for line in b.lines]
            out += [".fi"]
            continue
        out += roff_blocks(sec.blocks)
        for sub in sec.subs:
            out.append(f'.SS "{esc(sub.title)}"')
            out += roff_blocks(sub.blocks)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------


def cxx_string(name: str, text: str) -> str:
    if ")wkdoc\"" in text:
        fail("the text contains the raw-string delimiter )wkdoc\"")
    return f'inline constexpr std::string_view {name} = R"wkdoc({text})wkdoc";\n'


def main() -> None:
    if len(sys.argv) != 5:
        fail("usage: gen_cli_docs.py SOURCE.md OUT_HEADER OUT_MAN VERSION")
    source, out_header, out_man, version = sys.argv[1:]
    with open(source, encoding="utf-8") as f:
        name, summary, sections = parse(f.read())
    titles = [s.title for s in sections]
    for required in ("SYNOPSIS", "DESCRIPTION", "OPTIONS"):
        if required not in titles:
            fail(f"missing section {required}")
    header = ["// Generated from docs/wkproxy.1.md by tools/gen_cli_docs.py: edit that file.",
              "// The same source makes the man page wkproxy(1).", "#pragma once", "",
              "#include <string_view>", "", "namespace wk::cli {", "",
              "// wkproxy --help: the whole manual as plain text.",
              cxx_string("help", plain_main(sections)),
              "// The synopsis alone, for usage errors.",
              cxx_string("usage", "\n".join(plain_blocks(sections[titles.index("SYNOPSIS")].blocks,
                                                          0, usage=True)) + "\n")]
    for sec in sections:
        for sub in sec.subs:
            ident = "help_" + "_".join(sub.title.split()[1:])
            if not re.fullmatch(r"help_[a-z_]+", ident):
                fail(f"subcommand title {sub.title!r} must read 'wkproxy WORD...'")
            header += [f"// {sub.title} --help", cxx_string(ident, plain_sub(sub))]
    header.append("}  // namespace wk::cli\n")
    with open(out_header, "w", encoding="utf-8") as f:
        f.write("\n".join(header))
    with open(out_man, "w", encoding="utf-8") as f:
        f.write(roff(name, summary, version, sections, "docs/wkproxy.1.md"))


if __name__ == "__main__":
    main()
