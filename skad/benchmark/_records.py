"""Typed benchmark records and their CSV files.

A record is a dataclass whose fields are the columns of its CSV file, in
order; each field's metadata gives its type (``int``, ``float`` or ``str``)
and how a float is written. :class:`BaseRecord` derives the column list, the
key a job is resumed by, and the conversion to and from CSV rows from those
fields, so that no column list is kept anywhere else.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
from pathlib import Path

__all__ = ["BaseRecord", "ResultsCsv", "column", "read_csv"]

logger = logging.getLogger("skad.benchmark")


def column(kind=str, fmt=".6g", default=None):
    """A record field: ``kind`` (int, float or str) and a float format."""
    return dataclasses.field(default=default, metadata={"kind": kind, "fmt": fmt})


class BaseRecord:
    """Columns, key and CSV conversion of a record dataclass.

    Subclasses are dataclasses whose fields are made with :func:`column` and
    set :attr:`KEY`, the columns that identify a job (a resumed run skips a
    job whose key is already in the CSV).
    """

    KEY: tuple[str, ...] = ()

    @classmethod
    def columns(cls) -> list[str]:
        """Names of the CSV columns, in order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def _kinds(cls) -> dict:
        return {f.name: f.metadata.get("kind", str) for f in dataclasses.fields(cls)}

    @classmethod
    def key_of(cls, values) -> tuple:
        """Key of a record or of a row read from the CSV (a dict)."""
        kinds = cls._kinds()
        key = []
        for name in cls.KEY:
            value = values[name] if isinstance(values, dict) else getattr(values, name)
            key.append(None if value in ("", None) else kinds[name](value))
        return tuple(key)

    def key(self) -> tuple:
        """The job this record belongs to."""
        return self.key_of(self)

    def as_dict(self) -> dict:
        """Every column, ``None`` where unset."""
        return dataclasses.asdict(self)

    def to_row(self) -> dict:
        """Column -> text as written to the CSV."""
        row = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float):
                value = format(value, f.metadata.get("fmt", ".6g"))
            row[f.name] = "" if value is None else value
        return row

    @classmethod
    def from_row(cls, row: dict):
        """The record of a CSV row (empty cells become ``None``)."""
        return cls(**parse_row(row, cls._kinds()))


def parse_row(row: dict, kinds: dict) -> dict:
    """Convert the cells of a CSV row: ``""`` -> None, numbers by ``kinds``."""
    out = {}
    for key, value in row.items():
        kind = kinds.get(key, str)
        if value in ("", None):
            out[key] = None
        elif kind is int:
            out[key] = int(float(value))
        elif kind is float:
            out[key] = float(value)
        else:
            out[key] = value
    return out


def read_csv(path, record_type=None):
    """Rows of a results CSV as dicts, numeric columns converted.

    Parameters
    ----------
    path : str or path
        A ``results.csv`` (or ``speed.csv``) written by the benchmark.
    record_type : type, default=None
        Record class whose columns the file holds; None =
        :class:`~skad.benchmark.EvalRecord` (``results.csv``).

    Returns
    -------
    rows : list of dict
        Every column of ``record_type`` (None where the file has no such
        column, as in files of earlier versions), then any other column of
        the file.
    """
    if record_type is None:
        from skad.benchmark._protocol import EvalRecord

        record_type = EvalRecord
    kinds = record_type._kinds()
    empty = dict.fromkeys(record_type.columns())  # columns of later versions
    with open(path, newline="") as fh:
        return [{**empty, **parse_row(row, kinds)} for row in csv.DictReader(fh)]


class ResultsCsv:
    """Appends records to a CSV file, one flushed row per record.

    An existing file must have the columns of ``record_type``; its records
    are available from :meth:`read`. A file of an earlier version, whose
    columns are the first ones of ``record_type`` (columns are only ever added
    at the end), is read as it is (the new columns empty) and rewritten with
    the full header when opened for appending.
    """

    def __init__(self, path, record_type):
        self.path = Path(path)
        self.record_type = record_type
        self.fh = None

    def read(self) -> list:
        """Records already in the file (none when it does not exist)."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return []
        self._check_header()
        with open(self.path, newline="") as fh:
            return [self.record_type.from_row(r) for r in csv.DictReader(fh)]

    def _check_header(self) -> bool:
        """True when the file has every column; False for an older file whose
        columns are the first ones; raises for any other header."""
        with open(self.path, newline="") as fh:
            header = next(csv.reader(fh), [])
        columns = self.record_type.columns()
        if header == columns:
            return True
        if header and header == columns[: len(header)]:
            return False
        raise ValueError(
            f"{str(self.path)!r} has other columns than this version "
            "writes; use another --output (or --no-resume to overwrite it)."
        )

    def _add_columns(self):
        """Rewrite an older file with the full header (new cells empty)."""
        columns = self.record_type.columns()
        with open(self.path, newline="") as fh:
            reader = csv.DictReader(fh, restval="")
            rows = list(reader)
            added = [c for c in columns if c not in (reader.fieldnames or [])]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, columns, restval="")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)
        logger.warning(
            "%s: added the columns %s of this version (empty for its %d rows)",
            self.path,
            ", ".join(added),
            len(rows),
        )

    def open(self):
        """Open for appending (writes the header of a new file, completes the
        header of an older one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        if not new and not self._check_header():
            self._add_columns()
        self.fh = open(self.path, "a", newline="")
        self.writer = csv.DictWriter(self.fh, self.record_type.columns())
        if new:
            self.writer.writeheader()
            self.fh.flush()
        return self

    def write(self, record) -> None:
        self.writer.writerow(record.to_row())
        self.fh.flush()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None
