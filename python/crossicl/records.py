"""The record format of an experiment run, at the bottom of the package's layers.

A run folder holds ``records.jsonl`` (or shard files ``records.shard-<i>-of-<n>.jsonl``): one JSON object per
(cell, item), where a cell is (target, method, source, k, seed, model). This module owns everything about
those files:

* the record key (:func:`record_key`, built here and nowhere else) and the shard a record belongs to
  (:func:`shard_of`);
* the crash-safe writer :class:`RecordFile` (each batch appended with one write and fsync'ed; a torn last line
  left by a kill is cut off on the next start);
* the one reader: :func:`read_records` parses a JSON Lines text, :func:`load_records` turns the records of a
  file or run folder into a checked pandas DataFrame;
* :func:`merge`, which joins the records of shard runs;
* the run folder's safety: :class:`RunLock` (one run per folder, or per shard of it; a second one raises
  :class:`RunFolderLocked`) and :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_open`,
  the one way whole files (config.json, pseudo-label tables, embedding caches) are written.

Lines are split on "\\n" only, never with ``str.splitlines()``: ``json.dumps(ensure_ascii=False)`` writes U+2028,
U+2029 and U+0085 raw inside strings, and splitlines() would cut a record there.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import hashlib
import json
import os
import pathlib
import secrets
import socket
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO

CELL = ("target", "method", "source", "k", "seed", "model")
"""The columns that name a cell."""

SCORERS = ("paper_eval", "paper_compare", "clean")
"""Scorers every record carries a ``correct_<scorer>`` flag for (the names of crossicl's C++ scorers)."""

SCORING_PREFIXES = {"generate": "", "label": "label_", "label_first": "label_first_", "calibrated": "calibrated_",
                    "calibrated_first": "calibrated_first_"}
"""Where each way of reading a prediction keeps it in a record: ``<prefix>pred`` and ``<prefix>correct_<scorer>``.
"generate": the greedy answer's first line; "label" / "label_first": the arg-max label by the label's summed
log-prob / its first token's (decode.scoring "label"); "calibrated" / "calibrated_first": the same after
contextual calibration (decode.scoring "label_calibrated")."""

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
def _pieces(data: bytes | str) -> Iterator[tuple[int, bytes | str, bool]]:
    """(line number, raw line, is the unterminated last line) of a file's contents, split on "\\n" only."""
    parts = data.split(b"\n" if isinstance(data, bytes) else "\n")
    last = len(parts)
    if not parts[-1]:
        parts.pop()  # the file ends in "\n" (or is empty): there is no unterminated last line
    for n, part in enumerate(parts, 1):
        yield n, part, n == last


def _decode(part: bytes | str, where: str) -> str:
    if isinstance(part, str):
        return part
    try:
        return part.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: malformed record (invalid UTF-8 at byte {e.start + 1} of the line)") from None


def split_lines(data: bytes | str, path: str | os.PathLike) -> list[str]:
    """The lines of a run-folder file's contents (bytes, or text already decoded).

    Lines end at "\\n" only: U+2028, U+2029, U+0085 and "\\r" are ordinary characters inside a line (unlike
    ``str.splitlines()``); the empty piece after a final "\\n" is not a line. Bytes are decoded line by line, so
    invalid UTF-8 is a ValueError "<path>:<line>: malformed record (invalid UTF-8 ...)", not a
    UnicodeDecodeError about the whole file.
    """
    return [_decode(part, f"{path}:{n}") for n, part, _ in _pieces(data)]


_JSON_SPACE = " \t\r"  # the whitespace JSON allows around a value, besides "\n"


def read_records(data: bytes | str, path: str | os.PathLike, *, torn_tail: str = "error") -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) of every non-blank line of a JSON Lines file's contents read from ``path``
    (bytes, or text already decoded), split on "\\n" only as :func:`split_lines` does.

    A malformed line (not JSON, or not UTF-8) raises ValueError "<path>:<line>: malformed record (...)".
    ``torn_tail``: what to do with a last line that has no newline and is malformed (a run killed mid-write,
    possibly inside a multi-byte character, or still running): "error" like any other line, or "warn" (skip it
    with a RuntimeWarning).
    """
    for n, part, torn in _pieces(data):
        where = f"{path}:{n}"
        try:
            line = _decode(part, where)
            if not line.strip(_JSON_SPACE):
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: malformed record ({e.msg} at column {e.colno})") from None
        except ValueError:
            if torn and torn_tail == "warn":
                warnings.warn(f"{where}: skipped an incomplete last line (a run killed mid-write?)",
                              RuntimeWarning, stacklevel=3)
                continue
            raise
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
        with opener(f, "rb") as fh:
            data = fh.read()
        for n, rec in read_records(data, f, torn_tail="warn" if skip_torn_tail else "error"):
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


# ---------------------------------------------------------------------------------------------- whole files
def fsync_dir(path: str | os.PathLike) -> None:
    """Makes a folder's entries durable: a file created or renamed in it survives a power cut. A file system
    that cannot fsync a folder (EINVAL, ENOTSUP) is left as it is."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, *, exclusive: bool = False) -> Iterator[BinaryIO]:
    """A binary file to write the whole of ``path`` through, atomically.

    The block writes to a temporary of its own in the same folder (``.<name>.<pid>.<random>.tmp``, so
    concurrent writers of one path never share it, and ``records*.jsonl`` / ``*.npy`` globs never see it).
    When the block ends the temporary is flushed, fsync'ed, renamed over ``path`` (``os.replace``), and the
    folder fsync'ed; an exception (or a kill) leaves ``path`` as it was. A reader sees the old file or the new
    one, never a part; of concurrent writers the last rename wins. The file gets the usual permissions (0666
    less the umask). ``exclusive``: create ``path`` only if it does not exist (FileExistsError otherwise, even
    when another process creates it meanwhile).

        >>> with atomic_open(out / "emb.npy") as f:
        ...     np.save(f, matrix)
    """
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            _link_new(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def _link_new(tmp: pathlib.Path, path: pathlib.Path) -> None:
    """Renames ``tmp`` to ``path`` unless ``path`` exists (FileExistsError): a hard link fails atomically when
    the name is taken. A file system without hard links falls back to a check then a rename."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        if path.exists():
            raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, exclusive: bool = False) -> None:
    """Writes the whole of ``path`` atomically and durably (see :func:`atomic_open`)."""
    with atomic_open(path, exclusive=exclusive) as f:
        f.write(data)


def append_line(path: pathlib.Path, line: str) -> None:
    """Appends one line (``line`` + "\n", UTF-8) with a single write, fsync'ed (a log of the run folder)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line.replace("\n", " ") + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str, *, exclusive: bool = False) -> None:
    """Writes the whole of ``path`` as UTF-8, atomically and durably (see :func:`atomic_open`)."""
    atomic_write_bytes(path, text.encode("utf-8"), exclusive=exclusive)


# ---------------------------------------------------------------------------------------------- run lock
class RunFolderLocked(RuntimeError):
    """Another process is running in this run folder (or in this shard of it). ``path``: the lock file;
    ``pid``: the holder's process id as it wrote it (None if it had not yet); ``host``: the holder's host."""

    def __init__(self, message: str, *, path: pathlib.Path, pid: int | None, host: str | None):
        super().__init__(message)
        self.path, self.pid, self.host = path, pid, host


def lock_path(out: str | os.PathLike, shard: tuple[int, int] | None = None) -> pathlib.Path:
    """The lock file of a run folder (``lock``), or of one shard (i, n) of it (``lock.shard-i-of-n``)."""
    out = pathlib.Path(out)
    return out / "lock" if shard is None else out / f"lock.shard-{shard[0]}-of-{shard[1]}"


class RunLock:
    """The exclusive lock of a run folder, or of one shard of it, for the length of a run.

    ``fcntl.flock(LOCK_EX | LOCK_NB)`` on :func:`lock_path`, which then holds "<pid> <host>". A second run of
    the same folder (same shard) raises :class:`RunFolderLocked` naming the holder's pid at once instead of
    writing the records twice. Shards lock only their own files, so the shards of a grid run side by side in
    one folder. The kernel releases the lock when its process ends, however it ends (SIGKILL, OOM, node
    reboot for a local disk), so a lock left behind by a killed run is simply taken over; the file stays (removing
    it would let two runs hold locks on two different files). A file system without flock (ENOLCK, ENOSYS,
    EOPNOTSUPP: Lustre mounted without ``flock``) gives a RuntimeWarning and no lock.

        >>> with RunLock("runs/grid", shard=(0, 8)):
        ...     ...                      # the only writer of records.shard-0-of-8.jsonl
    """

    def __init__(self, out: str | os.PathLike, shard: tuple[int, int] | None = None):
        self.path = lock_path(out, shard)
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: already held by this RunLock")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, host = _lock_holder(fd)
            os.close(fd)
            who = "a process that has not written its pid yet" if pid is None else f"pid {pid}"
            if host is not None and host != socket.gethostname():
                who += f" on host {host}"
            raise RunFolderLocked(f"{self.path.parent}: the run folder is in use by another crossicl run ({who}; "
                                  f"lock file {self.path}); wait for it to end or stop it, then run again to "
                                  "resume", path=self.path, pid=pid, host=host) from None
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            warnings.warn(f"{self.path}: the file system cannot lock the run folder ({e.strerror}); make sure no "
                          "other run writes to it at the same time", RuntimeWarning, stacklevel=2)
            return self
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock_holder(fd: int) -> tuple[int | None, str | None]:
    """(pid, host) from a lock file's contents; None where it does not say (yet)."""
    try:
        words = os.pread(fd, 512, 0).decode("utf-8", "replace").split()
    except OSError:
        return None, None
    pid = int(words[0]) if words and words[0].isdigit() else None
    return pid, (words[1] if len(words) > 1 else None)


# ---------------------------------------------------------------------------------------------------- writing
class RecordFile:
    """An append-only JSON Lines file of records, safe against kills: each batch is appended with one write and
    fsync'ed (the folder too when the write created the file); a torn last line (no newline) is cut off when
    the file is opened; a malformed complete line is an error naming file and line. ``key`` gives the key a
    record is stored under (:func:`record_key` for run records). One writer per file: the runner holds the
    file's :class:`RunLock` while it writes."""

    def __init__(self, path: str | os.PathLike, key: Callable[[dict], tuple]):
        self.path = pathlib.Path(path)
        self.key = key
        self.records: dict[tuple, dict] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._entry_durable = self.path.exists()
        if self._entry_durable:
            data = self.path.read_bytes()
            cut = data.rfind(b"\n") + 1
            if cut < len(data):  # a kill in the middle of a write: drop the partial line
                with open(self.path, "r+b") as f:
                    f.truncate(cut)
                    os.fsync(f.fileno())
            for _, rec in read_records(data[:cut], self.path):
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
        if not self._entry_durable:  # the write created the file: make its name durable too
            fsync_dir(self.path.parent)
            self._entry_durable = True
        for r in records:
            self.records[self.key(r)] = r


def _read_only(f: pathlib.Path) -> dict[tuple, dict]:
    """The records of a records file by key, without touching it (a shard may still be appending: its
    unterminated last line is skipped with a warning, not cut off)."""
    recs: dict[tuple, dict] = {}
    for n, rec in read_records(f.read_bytes(), f, torn_tail="warn"):
        check_record(rec, f"{f}:{n}")
        recs[record_key(rec)] = rec
    return recs


def merge(inputs: Sequence[str | os.PathLike], out: str | os.PathLike) -> int:
    """Merges the records of shard runs (record files or run folders) into ``out`` (a records file), sorted in
    the grid's canonical order. Identical duplicates collapse; conflicting ones raise ValueError naming the
    record. Returns the number of records written.

    The inputs are only read. ``out`` is replaced atomically (readers see the old file or the merged one).
    When ``out`` is the ``records.jsonl`` of a run folder (one with a config.json) the folder's
    :class:`RunLock` is held while merging, so an unsharded run appending to that file cannot lose records to
    the merge (RunFolderLocked instead)."""
    outp = pathlib.Path(out)
    outp.parent.mkdir(parents=True, exist_ok=True)
    in_run_folder = outp == records_path(outp.parent) and (outp.parent / "config.json").is_file()
    lock = RunLock(outp.parent) if in_run_folder else contextlib.nullcontext()
    with lock:
        merged: dict[tuple, dict] = {}
        for item in inputs:
            p = pathlib.Path(item)
            files = sorted(p.glob("records*.jsonl")) if p.is_dir() else [p]
            if not files:
                raise ValueError(f"{p}: no records*.jsonl files")
            for f in files:
                if not f.is_file():
                    raise ValueError(f"{f}: not found")
                for rec_key, rec in _read_only(f).items():
                    if rec_key in merged and merged[rec_key] != rec:
                        raise ValueError(f"{f}: record {rec_key} differs from the same record in another input")
                    merged[rec_key] = rec
        with atomic_open(outp) as fh:
            for rec in sorted(merged.values(), key=_sort_key):
                fh.write((json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8"))
    return len(merged)


__all__ = ["CELL", "SCORERS", "SCORING_PREFIXES", "REQUIRED_KEYS", "append_line", "record_key", "shard_of", "records_path", "split_lines",
           "read_records", "check_record", "load_records", "RecordFile", "merge", "fsync_dir", "atomic_open",
           "atomic_write_bytes", "atomic_write_text", "RunFolderLocked", "RunLock", "lock_path"]
