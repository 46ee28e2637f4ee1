"""CSV that a spreadsheet reads as data: a text cell that starts like a formula is neutralized.

OWASP's guidance on CSV injection: a cell starting with =, +, -, @, a tab or a carriage return
may be run as a formula by Excel or LibreOffice (`=cmd|' /C calc'!A0` as a scheme name). Such
a cell gets a leading single quote, which spreadsheets show as text and never evaluate. Only
text columns are touched: numbers (a negative mean) stay numbers.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _neutral(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def neutralized(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` whose text cells can't be read as formulas."""
    text = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if not text:
        return frame
    return frame.assign(**{c: frame[c].map(_neutral) for c in text})


# Every text cell quoted: a carriage return inside a cell (a layer named "\r=3" in a custom
# model) is not quoted by the minimal rule and would start a new row whose first cell is live.
QUOTING = csv.QUOTE_NONNUMERIC


def csv_text(frame: pd.DataFrame) -> str:
    return neutralized(frame).to_csv(index=False, quoting=QUOTING)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    # An open file, not the path: pandas would expand "~" and read "http:..." as a URL.
    with open(path, "w", encoding="utf-8", newline="") as stream:
        neutralized(frame).to_csv(stream, index=False, quoting=QUOTING)


def write_tables(folder: str | Path, tables: dict[str, pd.DataFrame]) -> list[Path]:
    """Each table as `folder/<name>.csv` (the folder made if needed); the paths, in order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in tables.items():
        path = folder / f"{name}.csv"
        write_csv(frame, path)
        paths.append(path)
    return paths
