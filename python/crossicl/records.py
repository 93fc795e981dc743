"""The record format of an experiment run, at the bottom of the package's layers.

A run folder holds ``records.jsonl`` (or shard files ``records.shard-<i>-of-<n>.jsonl``): one JSON object per
(cell, item), where a cell is (target, method, source, k, seed, model). This module owns everything about
those files:

* the record key (:func:`record_key`, built here and nowhere else) and the shard a record belongs to
  (:func:`shard_of`);
* the crash-safe writer :class:`RecordFile` (each batch appended with one write and flushed; a torn last line
  left by a kill is cut off on the next start);
* the one reader: :func:`read_records` parses a JSON Lines text, :func:`load_records` turns the records of a
  file or run folder into a checked pandas DataFrame;
* :func:`merge`, which joins the records of shard runs.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import pathlib
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

CELL = ("target", "method", "source", "k", "seed", "model")
"""The columns that name a cell."""

SCORERS = ("paper_eval", "paper_compare", "clean")
"""Scorers every record carries a ``correct_<scorer>`` flag for (the names of crossicl's C++ scorers)."""

REQUIRED_KEYS = CELL + ("id", "gold", "pred") + tuple(f"correct_{s}" for s in SCORERS)
"""Keys every record must have."""

_REQUIRED_SET = frozenset(REQUIRED_KEYS)
_STR_KEYS = ("target", "method", "model", "gold", "pred")


# ---------------------------------------------------------------------------------------------------- keys
def record_key(rec: Mapping[str, Any]) -> tuple:
    """(target, method, source, k, seed, model, id) of a record; source "" and seed -1 when null."""
    seed = rec.get("seed")
    return (rec["target"], rec["method"], rec.get("source") or "", int(rec["k"]), -1 if seed is None else int(seed),
            rec["model"], str(rec["id"]))


def _sort_key(rec: Mapping[str, Any]) -> tuple:
    return record_key(rec)[:6] + (int(rec.get("index", 0)), str(rec["id"]))


def shard_of(rec_key: tuple, n: int) -> int:
    """The shard (0..n-1) a unit of work belongs to: a hash of its key, independent of the grid's order."""
    digest = hashlib.sha256(json.dumps(list(rec_key)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") % n


def records_path(out: pathlib.Path, shard: tuple[int, int] | None = None) -> pathlib.Path:
    """The records file of a run folder, or of one shard (i, n) of it."""
    if shard is None:
        return out / "records.jsonl"
    return out / f"records.shard-{shard[0]}-of-{shard[1]}.jsonl"


# ---------------------------------------------------------------------------------------------------- reading
def read_records(text: str, path: str | os.PathLike, *, torn_tail: str = "error") -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) of every non-blank line of a JSON Lines text read from ``path``.

    A malformed line raises ValueError naming file and line. ``torn_tail``: what to do with a last line that
    has no newline and is not valid JSON (a run killed mid-write, or still running): "error" like any other
    line, or "warn" (skip it with a RuntimeWarning).
    """
    lines = text.split("\n")
    torn = text != "" and not text.endswith("\n")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            where = f"{path}:{n}"
            if torn and n == len(lines) and torn_tail == "warn":
                warnings.warn(f"{where}: skipped an incomplete last line (a run killed mid-write?)",
                              RuntimeWarning, stacklevel=3)
                continue
            raise ValueError(f"{where}: malformed JSON ({e.msg} at column {e.colno})") from None
        yield n, rec


def _record_files(path: pathlib.Path) -> list[pathlib.Path]:
    if path.is_dir():
        files = sorted(path.glob("records*.jsonl")) + sorted(path.glob("records*.jsonl.gz"))
        if not files:
            raise ValueError(f"{path}: no records*.jsonl files in the run folder")
        return files
    if not path.is_file():
        raise ValueError(f"{path}: no such records file or run folder")
    return [path]


def check_record(rec: Any, where: str) -> dict:
    """``rec`` when it has every key of :data:`REQUIRED_KEYS` with the right type, else ValueError at ``where``."""
    # fast path for a well-formed record (this runs once per item: keep it to a few dict lookups)
    if (type(rec) is dict and _REQUIRED_SET <= rec.keys() and type(rec["target"]) is str
            and type(rec["method"]) is str and type(rec["model"]) is str and type(rec["gold"]) is str
            and type(rec["pred"]) is str and (rec["source"] is None or type(rec["source"]) is str)
            and type(rec["k"]) is int and rec["k"] >= 0 and (rec["seed"] is None or type(rec["seed"]) is int)
            and type(rec["id"]) in (str, int) and type(rec["correct_paper_eval"]) is bool
            and type(rec["correct_paper_compare"]) is bool and type(rec["correct_clean"]) is bool):
        return rec
    if not isinstance(rec, dict):
        raise ValueError(f"{where}: a record must be a JSON object (got {type(rec).__name__})")
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise ValueError(f"{where}: record lacks key(s) {', '.join(missing)}")
    for key in _STR_KEYS:
        if not isinstance(rec[key], str):
            raise ValueError(f"{where}: '{key}' must be a string (got {rec[key]!r})")
    if rec["source"] is not None and not isinstance(rec["source"], str):
        raise ValueError(f"{where}: 'source' must be a string or null (got {rec['source']!r})")
    if isinstance(rec["k"], bool) or not isinstance(rec["k"], int) or rec["k"] < 0:
        raise ValueError(f"{where}: 'k' must be an integer >= 0 (got {rec['k']!r})")
    if rec["seed"] is not None and (isinstance(rec["seed"], bool) or not isinstance(rec["seed"], int)):
        raise ValueError(f"{where}: 'seed' must be an integer or null (got {rec['seed']!r})")
    if isinstance(rec["id"], bool) or not isinstance(rec["id"], (str, int)):
        raise ValueError(f"{where}: 'id' must be a string (got {rec['id']!r})")
    for s in SCORERS:
        flag = rec[f"correct_{s}"]
        if flag not in (True, False) or not isinstance(flag, (bool, int)):
            raise ValueError(f"{where}: 'correct_{s}' must be a boolean (got {flag!r})")
    return rec


def load_records(path_or_dir: str | os.PathLike, *, skip_torn_tail: bool = True):
    """Reads a records file (``.jsonl`` or ``.jsonl.gz``) or every ``records*.jsonl`` of a run folder.

    Every record needs the keys of :data:`REQUIRED_KEYS` with the right types; extra keys become extra columns.
    A record that appears twice (same cell and id, e.g. after merging shards) is kept once if both copies are
    identical; copies that differ raise ValueError naming the cell, the id and both places.

    skip_torn_tail: a last line without a newline that is not valid JSON (a run killed mid-write, or still
        running) is skipped with a warning; False makes it an error like any malformed line.

    Returns a pandas DataFrame, one row per record, in file order: ``k`` int64, ``seed`` Int64 (NA when null),
    ``id`` str, the ``correct_*`` flags bool, ``source`` str or NA.

        >>> df = load_records("runs/demo")
        >>> df.groupby("method").correct_paper_eval.mean()
    """
    import pandas as pd

    rows: list[dict] = []
    seen: dict[tuple, tuple[dict, pathlib.Path, int]] = {}
    for f in _record_files(pathlib.Path(path_or_dir)):
        opener = gzip.open if f.suffix == ".gz" else open
        with opener(f, "rt", encoding="utf-8") as fh:
            text = fh.read()
        for n, rec in read_records(text, f, torn_tail="warn" if skip_torn_tail else "error"):
            check_record(rec, f"{f}:{n}")
            key = record_key(rec)
            if key in seen:
                first, first_file, first_line = seen[key]
                if first != rec:
                    cell = dict(zip(CELL, (rec[c] for c in CELL)))
                    raise ValueError(f"{f}:{n}: record for cell {cell} id {rec['id']!r} differs from the one at "
                                     f"{first_file}:{first_line} (a broken merge?)")
                continue
            seen[key] = (rec, f, n)
            rows.append(rec)
    if not rows:
        raise ValueError(f"{path_or_dir}: no records")
    df = pd.DataFrame.from_records(rows)
    df["id"] = df["id"].astype(str)
    df["k"] = df["k"].astype("int64")
    df["seed"] = df["seed"].astype("Int64")
    for s in SCORERS:
        df[f"correct_{s}"] = df[f"correct_{s}"].astype(bool)
    return df


# ---------------------------------------------------------------------------------------------------- writing
class RecordFile:
    """An append-only JSON Lines file of records, safe against kills: a torn last line (no newline) is cut off
    when the file is opened; a malformed complete line is an error naming file and line. ``key`` gives the key
    a record is stored under (:func:`record_key` for run records)."""

    def __init__(self, path: str | os.PathLike, key: Callable[[dict], tuple]):
        self.path = pathlib.Path(path)
        self.key = key
        self.records: dict[tuple, dict] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            data = self.path.read_bytes()
            cut = data.rfind(b"\n") + 1
            if cut < len(data):  # a kill in the middle of a write: drop the partial line
                with open(self.path, "r+b") as f:
                    f.truncate(cut)
            for _, rec in read_records(data[:cut].decode("utf-8"), self.path):
                self.records[self.key(rec)] = rec

    def __contains__(self, key: tuple) -> bool:
        return key in self.records

    def append(self, records: Sequence[dict]) -> None:
        if not records:
            return
        blob = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
        with open(self.path, "ab") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        for r in records:
            self.records[self.key(r)] = r


def merge(inputs: Sequence[str | os.PathLike], out: str | os.PathLike) -> int:
    """Merges the records of shard runs (record files or run folders) into ``out`` (a records file), sorted in
    the grid's canonical order. Identical duplicates collapse; conflicting ones raise ValueError naming the
    record. Returns the number of records written."""
    merged: dict[tuple, dict] = {}
    for item in inputs:
        p = pathlib.Path(item)
        files = sorted(p.glob("records*.jsonl")) if p.is_dir() else [p]
        if not files:
            raise ValueError(f"{p}: no records*.jsonl files")
        for f in files:
            if not f.is_file():
                raise ValueError(f"{f}: not found")
            for rec_key, rec in RecordFile(f, record_key).records.items():
                if rec_key in merged and merged[rec_key] != rec:
                    raise ValueError(f"{f}: record {rec_key} differs from the same record in another input")
                merged[rec_key] = rec
    outp = pathlib.Path(out)
    outp.parent.mkdir(parents=True, exist_ok=True)
    tmp = outp.with_suffix(outp.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for rec in sorted(merged.values(), key=_sort_key):
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    os.replace(tmp, outp)
    return len(merged)


__all__ = ["CELL", "SCORERS", "REQUIRED_KEYS", "record_key", "shard_of", "records_path", "read_records",
           "check_record", "load_records", "RecordFile", "merge"]
