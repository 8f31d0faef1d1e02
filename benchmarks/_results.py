"""One writer for ``benchmarks/RESULTS.md``: each benchmark replaces its own ``## Section`` and leaves the rest."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def replace_section(text: str, title: str, body: str) -> str:
    """``text`` with the section headed ``## title`` replaced by ``body`` (appended when missing)."""
    heading = f"## {title}"
    section = f"{heading}\n\n{body.strip()}\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        return text.rstrip("\n") + "\n\n" + section
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    tail = "".join(lines[end:])
    return "".join(lines[:start]) + section + ("\n" + tail if tail else "")


def write_section(section: str, path: Path = RESULTS) -> None:
    """Replaces the section that ``section`` heads (its first line, ``## Title``) in RESULTS.md, atomically; the
    other sections stay as they are, and a new file gets a ``# Benchmarks`` title."""
    heading, _, body = section.partition("\n")
    if not heading.startswith("## "):
        raise ValueError(f"a RESULTS.md section starts with '## Title', got {heading!r}")
    if any(line.startswith("## ") for line in body.splitlines()):
        raise ValueError(f"section {heading!r}: a body line starts with '## ', which would read as the next section")
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".RESULTS.", suffix=".md")
    with os.fdopen(fd, "w") as handle:
        handle.write(replace_section(text, heading[3:].strip(), body))
    os.chmod(tmp, mode)  # mkstemp makes 0600; keep the file readable like the rest of the tree
    os.replace(tmp, path)


def sizes_table(label: str, rows: dict[str, list[float]], sizes: list[int], digits: int = 0) -> list[str]:
    """Markdown lines of a table with one row per name and one column per study size: milliseconds per trial."""
    lines = [f"| {label} | " + " | ".join(f"ms per trial at {s:,}" for s in sizes) + " |", "|---|" + "---:|" * len(sizes)]
    return lines + [f"| {name} | " + " | ".join(f"{v:.{digits}f}" for v in values) + " |"
                    for name, values in rows.items()]
