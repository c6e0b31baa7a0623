"""Read a local labelled file (.tsv, .csv, .jsonl, .json, .parquet) into columns, without `datasets`.

A job reads its split once, so `datasets` (0.6-0.8 s on the 2-core VM to import it and read SST-2 dev through
its Arrow cache, in every process that starts a job) bought nothing for a local file, and wrote that cache
under ~/.cache.
Text files are read as `datasets`' csv builder read them for ela (pandas, `keep_default_na=False`): every
value a string, except a column of integers only, which becomes integers (labels 0/1).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from ela import ElaError

SUFFIXES = (".tsv", ".csv", ".jsonl", ".json", ".parquet")
_INT = re.compile(r"[+-]?\d+")


def read_columns(path: Path) -> dict[str, list]:
    """The file's columns by name, in file order; a clear ElaError for a file that can't be read."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq  # only here: parquet is the one format that needs it

            return pq.read_table(path).to_pydict()
        with open(path, encoding="utf-8", newline="") as f:
            if suffix in (".jsonl", ".json"):
                return _records(_json_rows(f.read()), path)
            return _delimited(f, "\t" if suffix == ".tsv" else ",", path)
    except ElaError:
        raise
    except Exception as err:  # undecodable bytes, bad JSON, pyarrow's own errors (not imported for other files)
        raise ElaError(f"could not read {path}: {type(err).__name__}: {err}") from err


def _json_rows(text: str) -> list:
    """A JSON array of records, or one record per line (JSON Lines)."""
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _records(rows: list, path: Path) -> dict[str, list]:
    """Records (dicts) to columns; every record must have the first one's keys."""
    if not rows:
        return {}
    if not all(isinstance(r, dict) for r in rows):
        raise ElaError(f"could not read {path}: expected one JSON object per record")
    names = list(rows[0])
    for i, r in enumerate(rows):
        if set(r) != set(names):
            raise ElaError(f"could not read {path}: record {i} has keys {sorted(r)}, the first has {sorted(names)}")
    return {n: [r[n] for r in rows] for n in names}


def _delimited(f, sep: str, path: Path) -> dict[str, list]:
    """A header and rows; a tab file is read unquoted (GLUE's TSVs hold bare quote marks), a csv quoted."""
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    rows = [r for r in csv.reader(f, delimiter=sep, quoting=quoting) if r]  # blank lines skipped, as pandas does
    if not rows:
        return {}
    header, body = rows[0], rows[1:]
    for i, r in enumerate(body, start=1):
        if len(r) != len(header):
            raise ElaError(f"could not read {path}: row {i} has {len(r)} fields, the header has {len(header)}")
    return {name: _typed([r[j] for r in body]) for j, name in enumerate(header)}


def _typed(values: list[str]) -> list:
    """Integers where every value of the column is one (as pandas reads them), else the strings."""
    if values and all(_INT.fullmatch(v.strip()) for v in values):
        return [int(v) for v in values]
    return values
