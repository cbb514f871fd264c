"""Write one benchmark's section into docs/benchmarks.md between markers, so
each benchmark script owns its section and reruns replace it in place."""

from __future__ import annotations

import datetime
import platform
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Each section is written by the script it names, measured in one run side by
side with its peers on the same machine (2 cores, 24 GiB, ext4). Rerun the
command to reproduce; the script replaces its own section.
"""


def write_section(key: str, title: str, command: str, body: str) -> None:
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    stamp = datetime.date.today().isoformat()
    section = (f"{begin}\n## {title}\n\nReproduce: `{command}` ({stamp}, "
               f"{platform.python_implementation()} {platform.python_version()})\n\n{body.strip()}\n{end}")
    text = DOC.read_text() if DOC.exists() else HEADER
    if begin in text and end in text:
        before = text.split(begin)[0]
        after = text.split(end, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
