"""Datasets from CSV files. No Django here.

A dataset CSV has a header row naming every feature of the deployment (in any order)
and, for a labelled set, a `label` column. Errors name the line and column, so the
person who exported the file can find the bad cell.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

LABEL_COLUMN = "label"


class TableError(ValueError):
    """A CSV that cannot become a dataset. The message is user-facing; `line` is 1-based, the header is line 1."""

    def __init__(self, message: str, *, line: int | None = None, column: str = ""):
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


@dataclass(frozen=True)
class Table:
    X: np.ndarray  # float64, n_rows × n_features, columns in the deployment's feature order
    y: np.ndarray | None  # labels as strings, or None without a label column


def _decode(data: bytes) -> str:
    try:
        # utf-8-sig: spreadsheets often write a byte-order mark before the header.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TableError(f"The file is not UTF-8 text (bad byte at offset {exc.start}).") from None


def _header_order(header: list[str], feature_names: list[str]) -> tuple[list[int], int | None]:
    """Column index of each feature in deployment order, and of the label column (or None)."""
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise TableError(f"The header names the column {name!r} twice.", line=1, column=name)
        seen.add(name)
    missing = [name for name in feature_names if name not in seen]
    if missing:
        raise TableError(f"The header lacks feature column(s): {', '.join(missing[:5])}.", line=1, column=missing[0])
    unknown = [name for name in header if name not in set(feature_names) and name != LABEL_COLUMN]
    if unknown:
        raise TableError(
            f"The header has column(s) the deployment does not know: {', '.join(unknown[:5])}.", line=1, column=unknown[0]
        )
    position = {name: i for i, name in enumerate(header)}
    return [position[name] for name in feature_names], position.get(LABEL_COLUMN)


def _first_bad_cell(cells: list[list[str]], lines: list[int], names: list[str]) -> TableError:
    """The slow path, only after numpy refused the block: find the cell to blame."""
    for row, line in zip(cells, lines):
        for value, name in zip(row, names):
            try:
                float(value)
            except ValueError:
                what = "is empty" if not value.strip() else f"{value[:40]!r} is not a number"
                return TableError(f"Line {line}, column {name!r}: {what}.", line=line, column=name)
    return TableError("The file has a value that is not a number.")


def parse_csv(data: bytes, *, feature_names: list[str]) -> Table:
    """Parse a dataset CSV into features (in `feature_names` order) and optional labels.

    Raises TableError naming the line and column of the first problem.
    """
    reader = csv.reader(io.StringIO(_decode(data)))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise TableError("The file is empty.") from None
    except csv.Error as exc:
        raise TableError(f"Line 1 is not valid CSV: {exc}.", line=1) from None
    feature_columns, label_column = _header_order(header, feature_names)

    cells: list[list[str]] = []
    labels: list[str] = []
    lines: list[int] = []
    try:
        for row in reader:
            if not row:  # csv yields [] for a blank line, e.g. a trailing newline
                continue
            if len(row) != len(header):
                raise TableError(
                    f"Line {reader.line_num} has {len(row)} values; the header has {len(header)}.", line=reader.line_num
                )
            cells.append([row[i] for i in feature_columns])
            lines.append(reader.line_num)
            if label_column is not None:
                label = row[label_column].strip()
                if not label:
                    raise TableError(f"Line {reader.line_num}, column 'label': the label is empty.", line=reader.line_num, column=LABEL_COLUMN)
                labels.append(label)
    except csv.Error as exc:
        raise TableError(f"Line {reader.line_num} is not valid CSV: {exc}.", line=reader.line_num) from None
    if not cells:
        raise TableError("The file has a header but no rows.", line=2)

    try:
        X = np.asarray(cells, dtype=np.float64)
    except ValueError:
        raise _first_bad_cell(cells, lines, feature_names) from None
    bad = np.argwhere(~np.isfinite(X))
    if len(bad):
        row, column = (int(i) for i in bad[0])
        name = feature_names[column]
        raise TableError(
            f"Line {lines[row]}, column {name!r}: {cells[row][column]!r} is not finite (NaN and infinity are rejected).",
            line=lines[row],
            column=name,
        )
    return Table(X=X, y=np.asarray(labels, dtype=str) if label_column is not None else None)
