#!/usr/bin/env python3
"""Copies each file named by `<!-- snippet: PATH -->` into the ```rust block
that follows it in README.md (the file minus its leading `//!` lines).
`tests/readme.rs` fails until they match; run this after editing a file."""
import pathlib
import re

root = pathlib.Path(__file__).resolve().parent.parent
readme = root / "README.md"


def code_of(path):
    lines = (root / path).read_text().splitlines()
    while lines and lines[0].startswith("//!"):
        lines.pop(0)
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines) + "\n"


pattern = re.compile(r"(<!-- snippet: (\S+) -->\n```rust[^\n]*\n)(.*?)(```)", re.S)
text = pattern.sub(lambda m: m.group(1) + code_of(m.group(2)) + m.group(4), readme.read_text())
readme.write_text(text)
