"""Rendering benchmark figures as a table and keeping BENCHMARKS.md up to date.

BENCHMARKS.md holds one section per benchmark between HTML comment markers,
so running one benchmark rewrites its own section and leaves the others.
Each section records the command, the machine (CPU model, cores) and the date.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
from collections.abc import Sequence
from pathlib import Path

from tabulate import tabulate

from sliceai.bench import Figure

HEADER = """# Benchmarks

Written by `make bench` (`sliceai bench --markdown BENCHMARKS.md`); each section
is rewritten when its benchmark runs. `ratio = value / peer_value`: for times,
below 1 is faster than the peer; for throughputs, above 1 is more than the peer.
Targets come from the issues; numbers are medians unless the metric says otherwise.
"""


def _fmt(x: float | None) -> str:
    if x is None:
        return ""
    return f"{x:.4g}"


def render_table(figures: Sequence[Figure], tablefmt: str = "simple") -> str:
    rows = [
        [
            f.bench,
            f.case,
            f.metric,
            _fmt(f.value),
            f.unit,
            f.peer or "",
            _fmt(f.peer_value),
            _fmt(f.ratio),
            f.note or "",
        ]
        for f in figures
    ]
    return tabulate(
        rows,
        headers=["bench", "case", "metric", "value", "unit", "peer", "peer value", "ratio", "note"],
        tablefmt=tablefmt,
        disable_numparse=True,
    )


def machine_description() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = os.cpu_count() or 0
    system = f"{platform.system()} {platform.release()}"
    return f"{model}, {cores} cores, {system}, Python {platform.python_version()}"


def section(name: str, figures: Sequence[Figure], command: str) -> str:
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = render_table([f for f in figures if f.bench == name], tablefmt="github")
    return (
        f"<!-- bench:{name}:start -->\n## {name}\n\n"
        f"- command: `{command}`\n- machine: {machine_description()}\n- date: {today}\n\n"
        f"{body}\n<!-- bench:{name}:end -->\n"
    )


def update_markdown(
    path: Path, names: Sequence[str], figures: Sequence[Figure], command: str
) -> None:
    replace_sections(path, {name: section(name, figures, command) for name in names})


def replace_sections(path: Path, sections: dict[str, str]) -> None:
    """Put each ``sections[name]`` (marked ``<!-- bench:NAME:start/end -->``) into ``path``
    in place of the section of that name, or append it; other sections stay as they are."""
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    for name, new in sections.items():
        pattern = re.compile(
            rf"<!-- bench:{re.escape(name)}:start -->.*?<!-- bench:{re.escape(name)}:end -->\n?",
            re.S,
        )
        match = pattern.search(text)
        if match is not None:
            text = text[: match.start()] + new + text[match.end() :]
        else:
            text = text.rstrip("\n") + "\n\n" + new
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
