"""Fast block-wise CSV parsing shared by the trace readers.

A file is read in blocks of about ``block_bytes`` that end on a line break;
each block becomes one list of strings per column. Plain blocks are split
with ``str.split`` (several times faster than the ``csv`` module); a block
with a quote character goes through the ``csv`` module. Every problem raises
:class:`~sliceai.traffic.trace.TraceReadError` with the file and line.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from sliceai.traffic.trace import TraceReadError

DEFAULT_BLOCK_BYTES = 4 << 20


@dataclass
class CsvBlock:
    """Consecutive rows from file line ``first_line`` (1-based) on, as columns of strings."""

    first_line: int
    columns: list[list[str]]
    line_numbers: npt.NDArray[np.int64] | None = None  # set when blank lines were skipped

    @property
    def n_rows(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def tags(self) -> npt.NDArray[np.int64]:
        """The file line of every row, ``(n_rows,)``."""
        if self.line_numbers is not None:
            return self.line_numbers
        return np.arange(self.first_line, self.first_line + self.n_rows, dtype=np.int64)

    def line(self, row: int) -> int:
        """The file line of row ``row`` of this block."""
        if self.line_numbers is not None:
            return int(self.line_numbers[row])
        return self.first_line + row


class CsvBlockReader:
    """Iterate a CSV file as a header plus :class:`CsvBlock` s; blank lines are skipped."""

    def __init__(self, path: Path, *, delimiter: str = ",", block_bytes: int = DEFAULT_BLOCK_BYTES):
        self.path = path
        self.delimiter = delimiter
        self.block_bytes = block_bytes
        self.header: list[str] = []

    def error(self, line: int | None, message: str) -> TraceReadError:
        return TraceReadError(self.path, None if line is None else f"line {line}", message)

    def __iter__(self) -> Iterator[CsvBlock]:
        try:
            handle = self.path.open("rb")
        except OSError as exc:
            raise TraceReadError(self.path, None, f"cannot read file: {exc.strerror}") from None
        with handle:
            yield from self._blocks(handle)

    def _blocks(self, handle: BinaryIO) -> Iterator[CsvBlock]:
        read = handle.read
        offset = 0
        line = 1
        rest = b""
        header_done = False
        while True:
            data = read(self.block_bytes)
            if not data and not rest:
                break
            buf = rest + data
            if data:
                cut = buf.rfind(b"\n")
                if cut < 0:
                    rest = buf
                    continue
                rest = buf[cut + 1 :]
                buf = buf[: cut + 1]
            else:
                rest = b""
            try:
                text = buf.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad_line = line + buf[: exc.start].count(b"\n")
                raise TraceReadError(
                    self.path, f"line {bad_line} (byte {offset + exc.start})", "not UTF-8 text"
                ) from None
            offset += len(buf)
            if "\r" in text:
                text = text.replace("\r", "")
            if not header_done:
                stripped = text.lstrip("\n")
                line += len(text) - len(stripped)
                text = stripped
                cut = text.find("\n")
                if cut < 0:
                    if not text.strip():
                        continue
                    text += "\n"
                    cut = len(text) - 1
                first_line = text[:cut]
                self.header = [
                    h.strip() for h in next(csv.reader([first_line], delimiter=self.delimiter))
                ]
                if self.header and self.header[0].startswith("\ufeff"):
                    self.header[0] = self.header[0][1:]
                text = text[cut + 1 :]
                line += 1
                header_done = True
            if text and not text.endswith("\n"):
                text += "\n"  # the last line of a file without a final line break
            n_lines = text.count("\n")
            if n_lines:
                yield self._split(text, n_lines, line)
                line += n_lines
        if not header_done:
            raise self.error(None, "empty file: no header line")

    def _split(self, text: str, n_lines: int, first_line: int) -> CsvBlock:
        """``n_lines`` complete lines (each ending in a line break) as a block of columns."""
        n_cols = len(self.header)
        d = self.delimiter
        if '"' not in text and "\n\n" not in text and not text.startswith("\n"):
            fields = text[:-1].replace("\n", d).split(d)
            if len(fields) == n_cols * n_lines:
                return CsvBlock(first_line, [fields[c::n_cols] for c in range(n_cols)])
        # slow path: quotes, blank lines (skipped) or a wrong field count somewhere
        columns: list[list[str]] = [[] for _ in range(n_cols)]
        numbers: list[int] = []
        for k, row in enumerate(csv.reader(text[:-1].split("\n"), delimiter=d)):
            if not row:
                continue
            if len(row) != n_cols:
                raise self.error(
                    first_line + k, f"expected {n_cols} fields like the header, found {len(row)}"
                )
            for c, value in enumerate(row):
                columns[c].append(value)
            numbers.append(first_line + k)
        return CsvBlock(first_line, columns, np.asarray(numbers, dtype=np.int64))

    def column(self, name: str) -> int:
        """Position of header column ``name``; a clear error naming the columns there are."""
        try:
            return self.header.index(name)
        except ValueError:
            raise self.error(
                1, f"no column {name!r}; the header has {', '.join(map(repr, self.header))}"
            ) from None

    def floats(
        self, block: CsvBlock, col: int, what: str, *, empty_is_nan: bool = False
    ) -> npt.NDArray[np.float64]:
        """Column ``col`` of ``block`` as float64 ``(n_rows,)``; errors name the first bad line."""
        values = block.columns[col]
        try:
            return np.fromiter(map(float, values), np.float64, count=len(values))
        except ValueError:
            pass
        out = np.empty(len(values))
        for k, text in enumerate(values):
            if not text.strip() and empty_is_nan:
                out[k] = math.nan
                continue
            try:
                out[k] = float(text)
            except ValueError:
                raise self.error(block.line(k), f"{what} {text!r} is not a number") from None
        return out
