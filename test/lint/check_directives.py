#!/usr/bin/env python3
"""Fails when a lit/FileCheck directive in a test lacks its colon.

FileCheck silently ignores `// CHECK-NOT foo` or `// RUN foo`, so such a line
checks nothing. Usage: check_directives.py TEST_DIR
"""
import pathlib
import re
import sys

DIRECTIVE = re.compile(
    r"^\s*(//|#|;)\s*(RUN|REQUIRES|UNSUPPORTED|XFAIL|"
    r"[A-Z][A-Z0-9_]*(-(NEXT|NOT|SAME|DAG|LABEL|EMPTY|COUNT-\d+))?)(?![\w:-])(\s|$)")
KNOWN_PREFIXES = ("RUN", "REQUIRES", "UNSUPPORTED", "XFAIL", "CHECK")


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    bad = []
    for path in sorted(root.rglob("*")):
        if path.suffix not in (".mlir", ".test", ".in"):
            continue
        if root.name != "Inputs" and "Inputs" in path.parts and "lint" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = DIRECTIVE.match(line)
            if not match:
                continue
            word = match.group(2)
            if word.startswith(KNOWN_PREFIXES) or "-" in word:
                bad.append(f"{path}:{number}: directive '{word}' lacks its colon: {line.strip()}")
    for message in bad:
        print(message)
    if bad:
        print(f"{len(bad)} FileCheck/lit directive(s) without a colon")
        return 1
    print(f"checked {root}: all directives have their colon")
    return 0


if __name__ == "__main__":
    sys.exit(main())
