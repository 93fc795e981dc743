"""Run folders never lose or corrupt work (issue 17, reliability review findings 9, 10 and section 7).

* lines are split on "\\n" only: records whose strings hold U+2028, U+2029, U+0085, NUL or emoji resume, and a
  line that is not UTF-8 is a "file:line: malformed record" ValueError;
* one run per folder (per shard of it): a second run fails naming the first one's pid, a lock left by a
  killed run is taken over, shards run side by side;
* whole files (config.json, pseudo-label tables, embedding caches) are written atomically and durably, under
  temporary names of their own;
* an ``.ids.txt`` must match its ``.npy`` row for line;
* a real grid killed with SIGKILL at random moments and resumed each time ends with the records of an
  uninterrupted run.
"""
from __future__ import annotations

import gzip
import json
import os
import pathlib
import random
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import crossicl
import crossicl.executors
from crossicl import cli, records
from crossicl import experiment as E
from tolerance import STORIES260K, assert_same_record, model_rel

SAMPLES = cli.SAMPLES
# Line boundaries for str.splitlines(): U+2028, U+2029 and U+0085 (json.dumps(ensure_ascii=False) writes them
# raw) and "\r", "\x0b", "\x0c", "\x1c".."\x1e" (escaped by json.dumps, raw in kept prompts' sources); NUL; an
# emoji (4 UTF-8 bytes: a torn write can end inside it).
ODD = ["\u2028", "\u2029", "\u0085", "\x00", "\U0001F600", "\r", "\x1c", "\x1d", "\x1e", "\x0b", "\x0c"]


# ------------------------------------------------------------------------------------------------ helpers
def _odd_dataset(folder: pathlib.Path) -> pathlib.Path:
    """The bundled sample tasks with odd characters in many texts and in some ids; returns tasks.json."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(SAMPLES / "tasks.json", folder / "tasks.json")
    for f in sorted(SAMPLES.glob("*.jsonl")):
        rows = [json.loads(x) for x in f.read_bytes().decode("utf-8").split("\n") if x]
        for i, row in enumerate(rows):
            if i % 2 == 0:
                a, b = ODD[i % len(ODD)], ODD[(i // 2 + 3) % len(ODD)]
                row["fields"]["sentence"] = f"{a}{row['fields']['sentence']} {b}x{a}"
            if i % 5 == 1:
                row["id"] = f"{row['id']}\u2028{ODD[i % len(ODD)]}"
        (folder / f.name).write_bytes(b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows))
    return folder / "tasks.json"


def _stories(models_dir: pathlib.Path) -> dict:
    s = models_dir / "stories260K"
    return {"name": "stories260K", "path": str(s / "stories260K.bin"), "tokenizer": str(s / "tok512.model"),
            "threads": 1}


def _odd_config(models_dir, data_dir, out, *, big: bool = False) -> dict:
    """A real grid over the odd dataset: zero-shot, cross-task and pseudo-label (so records, pseudo predictions,
    the pseudo-label table and the engine-embedding cache are all written), label scores, kept prompts, 2 prompts
    a batch. Small: 48 records (< 1 s of engine work on stories260K); big: 288 (about 4 s, long enough to kill
    a run in the middle or to overlap two runs)."""
    cfg = {
        "name": "odd", "out": str(out),
        "data": {"tasks": str(_odd_dataset(data_dir)), "items": 6},
        "models": [_stories(models_dir)],
        "grid": {"sources": ["movie_reviews", "news_topics"], "methods": ["zero-shot", "cross-task", "pseudo-label"],
                 "k": {"cross-task": [1], "pseudo-label": [2]}, "seeds": [0]},
        "selection": {"selector": "cosine", "embeddings": "engine"},
        "pseudo": {"pool": 4, "threshold": 0.2},
        "decode": {"max_new_tokens": 4, "batch": 2, "truncation": "left", "label_scores": True, "keep_prompt": True},
    }
    if big:
        cfg["data"]["items"] = 12
        cfg["grid"] = {"sources": ["movie_reviews", "news_topics", "trivia_qa"],
                       "methods": ["zero-shot", "cross-task", "random-cross", "pseudo-label"],
                       "k": {"cross-task": [1], "random-cross": [1], "pseudo-label": [2]}, "seeds": [0, 1]}
        cfg["decode"]["max_new_tokens"] = 8
    return cfg


def _write_config(path: pathlib.Path, cfg: dict) -> pathlib.Path:
    """The experiment file of ``cfg`` (a .yaml: JSON is YAML)."""
    path = path.with_suffix(".yaml")
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return path


def _lines(path: pathlib.Path) -> list[dict]:
    """Every line of a JSON Lines file, split on "\\n" only; each must be a whole JSON object."""
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"{path}: ends in a torn line"
    return [json.loads(x.decode("utf-8")) for x in data.split(b"\n")[:-1]]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def _cli(cfg_path: pathlib.Path, *extra: str, stderr=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "crossicl", "run", str(cfg_path), "--quiet", *extra], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=stderr if stderr is not None else subprocess.PIPE)


def _record(i: int, text: str, **over) -> dict:
    rec = {"target": "t", "method": "zero-shot", "source": None, "k": 0, "seed": None, "model": "m",
           "id": f"{i}\u2028{i}", "gold": "a", "pred": text, "raw": text, "correct_paper_eval": False,
           "correct_paper_compare": False, "correct_clean": False}
    rec.update(over)
    return rec


def _assert_same_records(got: list[dict], ref: list[dict], *, key=E.record_key) -> None:
    """Same keys, and every field equal, but label log-probs, which may differ in the last bits between batch
    shapes: those within the engine's float32 bound (tolerance.py, as test_shards_merge_to_the_unsharded_run)."""
    got = sorted(got, key=key)
    ref = sorted(ref, key=key)
    assert [key(r) for r in got] == [key(r) for r in ref]
    rel = model_rel(STORIES260K, tokens=512, output="logprobs")
    scale = max([abs(v) for r in ref for v in r.get("label_logprobs", {}).values()] + [0.0])
    for a, b in zip(got, ref):
        assert_same_record(a, b, rel, scale)


def _pseudo_key(r: dict) -> tuple:
    return (r["target"], r["source"], r["model"], str(r["id"]))


def _reference(models_dir, tmp: pathlib.Path, big: bool):
    """An uninterrupted in-process run of the odd grid: (records, pseudo predictions, pseudo-label table)."""
    E.Experiment(_odd_config(models_dir, tmp / "data", tmp / "run", big=big)).run(progress=False)
    run = tmp / "run"
    table = json.loads((run / "pseudo_labels.stories260K.json").read_bytes().decode("utf-8"))
    return _lines(run / "records.jsonl"), _lines(run / "pseudo.jsonl"), table


@pytest.fixture(scope="module")
def odd_reference(models_dir, tmp_path_factory):
    return _reference(models_dir, tmp_path_factory.mktemp("odd_ref"), big=False)


@pytest.fixture(scope="module")
def big_reference(models_dir, tmp_path_factory):
    return _reference(models_dir, tmp_path_factory.mktemp("big_ref"), big=True)


# ------------------------------------------------------------------------ 1. lines end at "\n" only
def test_odd_characters_resume_through_the_cli(odd_reference, models_dir, tmp_path, capsys):
    """Finding 9 end to end: texts with U+2028, U+2029, U+0085, NUL and emoji, keep_prompt on, `crossicl run`
    twice. The second run resumes (writes nothing) instead of failing on a "malformed record"."""
    ref, ref_pseudo, _ = odd_reference
    cfg_path = _write_config(tmp_path / "odd", _odd_config(models_dir, tmp_path / "data", tmp_path / "run"))
    assert cli.main(["run", str(cfg_path), "--quiet"]) == 0
    run = tmp_path / "run"
    first = (run / "records.jsonl").read_bytes()
    assert "\u2028".encode() in first and "\u0085".encode() in first and "\U0001F600".encode() in first
    assert len(first.decode("utf-8").splitlines()) > len(ref)  # what splitlines() would have made of it
    assert cli.main(["run", str(cfg_path), "--quiet"]) == 0, capsys.readouterr().err
    assert (run / "records.jsonl").read_bytes() == first
    _assert_same_records(_lines(run / "records.jsonl"), ref)
    _assert_same_records(_lines(run / "pseudo.jsonl"), ref_pseudo, key=_pseudo_key)
    df = crossicl.records.load_records(run)
    assert len(df) == len(ref) and df["id"].str.contains("\u2028").any()


def test_readers_split_on_newline_only(tmp_path):
    texts = [f"a{c}b" for c in ODD] + ["\u2028", "\x85\n\x85", "tail\r\n"]
    recs = [_record(i, t) for i, t in enumerate(texts)]
    blob = b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in recs)
    run = tmp_path / "run"
    run.mkdir()
    (run / "records.jsonl").write_bytes(blob)
    assert [r for _, r in records.read_records(blob, "x")] == recs
    assert [r for _, r in records.read_records(blob.decode("utf-8"), "x")] == recs
    assert records.split_lines(b"a\xe2\x80\xa8b\nc\xc2\x85\r\n\n", "x") == ["a\u2028b", "c\x85\r", ""]
    f = records.RecordFile(run / "records.jsonl", records.record_key)
    assert list(f.records.values()) == recs
    assert crossicl.records.load_records(run)["pred"].tolist() == texts
    gz = tmp_path / "records.jsonl.gz"
    gz.write_bytes(gzip.compress(blob))
    assert crossicl.records.load_records(gz)["pred"].tolist() == texts
    assert records.merge([run], tmp_path / "merged.jsonl") == len(recs)
    assert sorted(_lines(tmp_path / "merged.jsonl"), key=E.record_key) == sorted(recs, key=E.record_key)


def test_invalid_utf8_is_a_malformed_record_naming_the_line(tmp_path):
    good = json.dumps(_record(0, "ok")).encode() + b"\n"
    bad = json.dumps(_record(1, "XX")).encode().replace(b"XX", b"\xff\xfe") + b"\n"
    p = tmp_path / "records.jsonl"
    p.write_bytes(good + bad + json.dumps(_record(2, "ok")).encode() + b"\n")
    with pytest.raises(ValueError, match=r"records\.jsonl:2: malformed record \(invalid UTF-8") as e:
        records.RecordFile(p, records.record_key)
    assert not isinstance(e.value, UnicodeDecodeError)
    with pytest.raises(ValueError, match=r"records\.jsonl:2: malformed record") as e:
        crossicl.records.load_records(p)
    assert not isinstance(e.value, UnicodeDecodeError)
    with pytest.raises(ValueError, match=r"records\.jsonl:2: malformed record"):
        records.merge([p], tmp_path / "m.jsonl")
    # A torn last line may end inside a multi-byte character: the writer drops it, a reader skips it.
    emoji = json.dumps(_record(3, "\U0001F600"), ensure_ascii=False).encode()
    torn = good + emoji[: emoji.index(b"\xf0\x9f") + 2]
    p.write_bytes(torn)
    with pytest.warns(RuntimeWarning, match=r"records\.jsonl:2: skipped an incomplete last line"):
        assert len(crossicl.records.load_records(p)) == 1
    with pytest.raises(ValueError, match=r"records\.jsonl:2: malformed record \(invalid UTF-8"):
        crossicl.records.load_records(p, skip_torn_tail=False)
    f = records.RecordFile(p, records.record_key)
    assert len(f.records) == 1 and p.read_bytes() == good
    # A line of only U+2028 or U+0085 is not blank (JSON whitespace is space, tab, CR, LF): it is malformed.
    p.write_bytes(good + "\u2028\n".encode())
    with pytest.raises(ValueError, match=r"records\.jsonl:2: malformed record"):
        records.RecordFile(p, records.record_key)


def test_merge_only_reads_its_inputs(tmp_path):
    """merge() of a shard file that is still being written skips its unterminated last line and leaves the file
    as it is (it used to cut it off, under the writer's feet)."""
    p = tmp_path / "records.shard-0-of-2.jsonl"
    data = json.dumps(_record(0, "a")).encode() + b"\n" + json.dumps(_record(1, "b")).encode()[:30]
    p.write_bytes(data)
    with pytest.warns(RuntimeWarning, match="incomplete last line"):
        assert records.merge([p], tmp_path / "m.jsonl") == 1
    assert p.read_bytes() == data


# ------------------------------------------------------------------------------------- 5. .ids.txt
def _files_config(models_dir, tmp_path, change: str | None = None) -> tuple[dict, list, list]:
    """A one-cell cross-task grid whose selection reads target.<T>.npy / .ids.txt files written here, item i's
    embedding near pool row 3 i + 1; ``change`` spoils the target's .ids.txt. Returns (config, items, pool)."""
    data = tmp_path / "data"
    _odd_dataset(data)
    target = "product_reviews"
    emb = tmp_path / "emb"
    emb.mkdir()
    rng = np.random.default_rng(0)
    pool = crossicl.load_examples(str(data / "movie_reviews.jsonl"))
    items = crossicl.load_examples(str(data / f"{target}.jsonl"))
    src = rng.standard_normal((len(pool), 8)).astype(np.float32)
    np.save(emb / "source.movie_reviews.npy", src)
    (emb / "source.movie_reviews.ids.txt").write_bytes("".join(r.id + "\n" for r in pool).encode())
    tgt = src[[(3 * i + 1) % len(pool) for i in range(len(items))]] + 0.01 * rng.standard_normal((len(items), 8))
    np.save(emb / f"target.{target}.npy", tgt.astype(np.float32))
    ids = [r.id for r in items]
    ids = {None: ids, "extra": ids + ["spare"], "fewer": ids[:-1], "duplicate": ids[:-1] + [ids[0]]}[change]
    (emb / f"target.{target}.ids.txt").write_bytes("".join(x + "\n" for x in ids).encode())
    cfg = {"name": "files", "out": str(tmp_path / "run"), "data": {"tasks": str(data / "tasks.json"), "items": 4},
           "models": [_stories(models_dir)],
           "grid": {"targets": [target], "sources": ["movie_reviews"], "methods": ["cross-task"]},
           "selection": {"selector": "cosine", "embeddings": "files", "embeddings_dir": str(emb)},
           "decode": {"max_new_tokens": 1}}
    return cfg, items, pool


def test_ids_txt_splits_on_newline_only(models_dir, tmp_path):
    """Ids holding U+2028 (the odd dataset has some) are one line each of the .ids.txt."""
    cfg, items, pool = _files_config(models_dir, tmp_path)
    assert any("\u2028" in r.id for r in items[:4])
    E.Experiment(cfg).run(progress=False)
    recs = {r["id"]: r for r in _lines(pathlib.Path(cfg["out"]) / "records.jsonl")}
    assert len(recs) == 4
    for i, item in enumerate(items[:4]):
        assert recs[item.id]["demo_ids"] == [pool[(3 * i + 1) % len(pool)].id]


@pytest.mark.parametrize("change, message", [
    ("extra", r"target\.product_reviews\.ids\.txt has 25 ids but .*target\.product_reviews\.npy has 24 rows"),
    ("fewer", r"target\.product_reviews\.ids\.txt has 23 ids but .*target\.product_reviews\.npy has 24 rows"),
    ("duplicate", r"target\.product_reviews\.ids\.txt lists id .* twice"),
])
def test_ids_txt_must_match_the_npy(models_dir, tmp_path, change, message):
    cfg, _, _ = _files_config(models_dir, tmp_path, change)
    with pytest.raises(ValueError, match=message) as e:
        E.Experiment(cfg).run(progress=False)
    assert isinstance(e.value, E.ConfigError)


# ------------------------------------------------------------------------------------ 2. the run lock
_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.ftruncate(fd, 0)
os.write(fd, f"{os.getpid()} {os.uname().nodename}\\n".encode())
print("locked", flush=True)
time.sleep(120)
"""


def _hold(lock: pathlib.Path) -> subprocess.Popen:
    """A process holding ``lock`` the way a crossicl run does (flock, pid in the file) until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(lock)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_locked_run_folder_is_refused_then_taken_over_after_sigkill(odd_reference, models_dir, tmp_path,
                                                                        capsys):
    cfg = _odd_config(models_dir, tmp_path / "data", tmp_path / "run")
    run = tmp_path / "run"
    run.mkdir()
    holder = _hold(run / "lock")
    try:
        cfg_path = _write_config(tmp_path / "odd", cfg)
        assert cli.main(["run", str(cfg_path), "--quiet"]) == 1
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "in use by another crossicl run" in err, err
        with pytest.raises(RuntimeError, match=f"pid {holder.pid}") as e:
            E.Experiment(cfg).run(progress=False)
        assert isinstance(e.value, records.RunFolderLocked) and e.value.pid == holder.pid
        assert not (run / "records.jsonl").exists() and not (run / "config.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    # The kernel dropped the dead holder's lock: the next run takes it over and finishes.
    assert cli.main(["run", str(cfg_path), "--quiet"]) == 0, capsys.readouterr().err
    assert (run / "lock").read_text().split()[0] == str(os.getpid())
    _assert_same_records(_lines(run / "records.jsonl"), odd_reference[0])


def test_run_lock_in_process(tmp_path):
    lock = records.RunLock(tmp_path).acquire()
    try:
        with pytest.raises(records.RunFolderLocked, match=f"pid {os.getpid()}") as e:
            records.RunLock(tmp_path).acquire()
        assert isinstance(e.value, RuntimeError) and e.value.path == tmp_path / "lock"
        with records.RunLock(tmp_path, (1, 3)) as shard_lock:  # another shard, another lock
            assert shard_lock.held and (tmp_path / "lock.shard-1-of-3").is_file()
            with pytest.raises(records.RunFolderLocked):
                records.RunLock(tmp_path, (1, 3)).acquire()
        # merge into a run folder's records.jsonl refuses while an unsharded run appends to that file
        (tmp_path / "config.json").write_text("{}")
        src = tmp_path / "in.jsonl"
        src.write_text(json.dumps(_record(0, "a")) + "\n")
        with pytest.raises(records.RunFolderLocked):
            records.merge([src], tmp_path / "records.jsonl")
        assert records.merge([src], tmp_path / "elsewhere.jsonl") == 1
    finally:
        lock.release()
    with records.RunLock(tmp_path):  # released: free again, and the file stays (never unlinked)
        pass
    assert records.merge([src], tmp_path / "records.jsonl") == 1
    assert (tmp_path / "lock").is_file()


def test_two_concurrent_runs_of_one_folder(big_reference, models_dir, tmp_path):
    """Finding 10: two `crossicl run` on one folder used to both exit 0 and write every record twice. Now the
    second fails at once naming the first's pid (or, had the first finished already, resumes and adds
    nothing); never a duplicate."""
    cfg_path = _write_config(tmp_path / "odd", _odd_config(models_dir, tmp_path / "data", tmp_path / "run",
                                                            big=True))
    procs = [_cli(cfg_path) for _ in range(2)]
    outs = [p.communicate(timeout=300)[1].decode() for p in procs]
    rcs = [p.returncode for p in procs]
    assert sorted(rcs) in ([0, 1], [0, 0]), outs
    if 1 in rcs:
        loser = rcs.index(1)
        assert f"pid {procs[1 - loser].pid}" in outs[loser], outs[loser]
    got = _lines(tmp_path / "run" / "records.jsonl")
    assert len({E.record_key(r) for r in got}) == len(got)  # no duplicates
    _assert_same_records(got, big_reference[0])
    pseudo = _lines(tmp_path / "run" / "pseudo.jsonl")
    assert len({_pseudo_key(r) for r in pseudo}) == len(pseudo)


def test_shards_start_together_in_one_folder(odd_reference, models_dir, tmp_path):
    """Shards share the folder's config.json and embedding cache: started at the same moment, all finish
    (no half-written config.json, no clash on a temporary cache name) and merge to the unsharded run."""
    cfg_path = _write_config(tmp_path / "odd", _odd_config(models_dir, tmp_path / "data", tmp_path / "run"))
    procs = [_cli(cfg_path, "--shard", f"{i}/3") for i in range(3)]
    outs = [p.communicate(timeout=300)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    run = tmp_path / "run"
    assert sorted(p.name for p in run.glob("lock*")) == [f"lock.shard-{i}-of-3" for i in range(3)]
    assert json.loads((run / "config.json").read_text(encoding="utf-8"))["name"] == "odd"
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert records.merge([run], tmp_path / "merged.jsonl") == len(odd_reference[0])
    _assert_same_records(_lines(tmp_path / "merged.jsonl"), odd_reference[0])


# --------------------------------------------------------------------------- 3./4. atomic whole files
def _spy(monkeypatch) -> list[tuple]:
    """Records os.fsync (with the path of the descriptor and whether it is a folder) and os.replace / os.link."""
    events: list[tuple] = []
    real_fsync, real_replace, real_link = os.fsync, os.replace, os.link

    def fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        events.append(("fsync_dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync", path))
        return real_fsync(fd)

    def replace(src, dst, **kw):
        events.append(("rename", str(src), str(dst)))
        return real_replace(src, dst, **kw)

    def link(src, dst, **kw):
        events.append(("rename", str(src), str(dst)))
        return real_link(src, dst, **kw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "link", link)
    return events


def test_run_folder_files_are_written_atomically_and_durably(models_dir, tmp_path, monkeypatch):
    cfg = _odd_config(models_dir, tmp_path / "data", tmp_path / "run")
    run = (tmp_path / "run").resolve()
    events = _spy(monkeypatch)
    E.Experiment(cfg).run(progress=False)
    monkeypatch.undo()
    whole = [run / "config.json", run / "pseudo_labels.stories260K.json", *sorted(run.glob("embeddings/*/*.npy"))]
    assert len(whole) >= 5
    for f in whole:
        renames = [i for i, e in enumerate(events) if e[0] == "rename" and e[2] == str(f)]
        assert renames, f"{f.name} was not written through a rename"
        i = renames[-1]
        tmp = pathlib.Path(events[i][1])
        assert tmp.parent == f.parent and tmp.name.startswith(f".{f.name}.") and tmp.name.endswith(".tmp")
        assert ("fsync", str(tmp)) in events[:i], f"{f.name}: data not fsync'ed before the rename"
        assert ("fsync_dir", str(f.parent)) in events[i:], f"{f.name}: folder not fsync'ed after the rename"
    for name in ("records.jsonl", "pseudo.jsonl"):  # appended files: the folder is fsync'ed once they exist
        first = events.index(("fsync", str(run / name)))
        assert ("fsync_dir", str(run)) in events[first:], name
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert stat.S_IMODE((run / "config.json").stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_open_keeps_the_old_file_on_error(tmp_path):
    p = tmp_path / "config.json"
    records.atomic_write_text(p, "old")
    with pytest.raises(ZeroDivisionError):
        with records.atomic_open(p) as f:
            f.write(b"half")
            1 / 0
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["config.json"]
    with pytest.raises(FileExistsError):
        records.atomic_write_text(p, "new", exclusive=True)
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["config.json"]
    records.atomic_write_bytes(p, b"new")
    assert p.read_text() == "new"


_WRITER = """
import json, pathlib, sys
from crossicl.experiment import write_config
out = pathlib.Path(sys.argv[1])
cfg = json.loads(sys.argv[2])
i = 0
while True:  # only `out` differs: every call rewrites config.json
    i += 1
    write_config(out, dict(cfg, out=f"{out}-{i % 2}", pad="x" * 200000))
    print(i, flush=True)
"""


def test_config_json_survives_sigkill_and_concurrent_readers(tmp_path):
    """config.json is never seen half-written: a reader thread compares it while another process rewrites it
    in a loop, and that process is killed with SIGKILL at random moments."""
    out = tmp_path / "run"
    out.mkdir()
    cfg = {"name": "x", "grid": {"k": [1]}}
    rng = random.Random(17)
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(out), json.dumps(cfg)], env=_env(),
                                stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()
        errors = []
        stop = time.monotonic() + rng.uniform(0.05, 0.5)
        while time.monotonic() < stop:
            try:  # the same grid with another `out`: accepted, whatever the writer is doing
                E.write_config(out, dict(cfg, out="reader", pad="x" * 200000))
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        assert not errors, errors[:3]
        assert json.loads((out / "config.json").read_bytes())["pad"] == "x" * 200000
    # A different grid is still refused, naming what differs.
    with pytest.raises(E.ConfigError, match="another configuration .*differs in grid"):
        E.write_config(out, dict(cfg, grid={"k": [2]}, pad="x" * 200000))


def test_concurrent_writers_of_one_cache_key(models_dir, tmp_path):
    """The analysis cache used one temporary name per key ({key}.tmp.npy): two writers of the same key raced on
    it and the second rename failed (FileNotFoundError). Each writer now has a temporary of its own."""
    from crossicl import analysis
    engine = crossicl.Engine(str(models_dir / "stories260K" / "stories260K.bin"),
                             str(models_dir / "stories260K" / "tok512.model"), threads=1)
    caches = [analysis._Cache(tmp_path, engine) for _ in range(4)]
    key = caches[0].key([1, 2, 3], [0], [(0, 3)])
    values = [np.full((64, 64), i, np.float32) for i in range(4)]
    errors = []

    def put(i):
        try:
            for _ in range(150):
                caches[i].put(key, values[i])
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=put, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    got = caches[0].get(key)
    assert any(np.array_equal(got, v) for v in values)
    assert os.listdir(tmp_path) == [f"{key}.npy"]


# ------------------------------------------------------------------------- 6. resume = uninterrupted run
class _Recording(crossicl.executors.LocalExecutor):
    """A LocalExecutor that notes the prompts of every generate call (by the names the runner gives them)."""

    def __init__(self):
        super().__init__()
        self.calls: list[list[str]] = []

    def generate(self, spec, prompts, names, decode):
        self.calls.append(list(names))
        return super().generate(spec, prompts, names, decode)


def test_a_resume_recomputes_the_torn_batch_whole(models_dir, tmp_path):
    """A kill in the middle of a batch's write leaves its first lines: the resumed run recomputes exactly that
    batch, with the same prompts together (the batch shape decides the last bits of a log-prob), then the
    following ones, in the pseudo-labelling stage as in the grid. (The pseudo stage used to cut its batches
    from the missing predictions only, so every batch after a torn one changed shape.)"""
    ref_run = _Recording()
    cfg = _odd_config(models_dir, tmp_path / "data", tmp_path / "ref")
    E.Experiment(cfg).run(progress=False, executor=ref_run)
    ref = tmp_path / "ref"
    pseudo_calls = [c for c in ref_run.calls if c[0].startswith("pseudo ")]
    grid_calls = [c for c in ref_run.calls if not c[0].startswith("pseudo ")]
    assert {len(c) for c in pseudo_calls} == {len(c) for c in grid_calls} == {2}
    for name, keep, calls in (("pseudo.jsonl", 3, pseudo_calls), ("records.jsonl", 5, grid_calls)):
        run = tmp_path / f"torn-{name}"
        run.mkdir()
        shutil.copy(ref / "config.json", run / "config.json")
        data = (ref / name).read_bytes()
        cut = 0
        for _ in range(keep):
            cut = data.index(b"\n", cut) + 1
        (run / name).write_bytes(data[:cut] + data[cut:cut + 17])  # the 3rd (5th) line of a 2-line batch, torn
        if name == "records.jsonl":  # the pseudo stage had finished
            for f in ("pseudo.jsonl", "pseudo_labels.stories260K.json"):
                shutil.copy(ref / f, run / f)
        resumed = _Recording()
        E.Experiment(cfg, out=run).run(progress=False, executor=resumed)
        if name == "pseudo.jsonl":
            assert [c for c in resumed.calls if c[0].startswith("pseudo ")] == calls[keep // 2:]
        assert [c for c in resumed.calls if not c[0].startswith("pseudo ")] == \
               (grid_calls[keep // 2:] if name == "records.jsonl" else grid_calls)
        _assert_same_records(_lines(run / "records.jsonl"), _lines(ref / "records.jsonl"))
        _assert_same_records(_lines(run / "pseudo.jsonl"), _lines(ref / "pseudo.jsonl"), key=_pseudo_key)


# ------------------------------------------------------------------------------------ 6. the kill test
def _tear_tail(path: pathlib.Path, rng: random.Random) -> None:
    """Leaves ``path`` as a short write of its last line would: cut at a random byte inside that line (possibly
    inside a multi-byte character)."""
    data = path.read_bytes()
    start = data.rfind(b"\n", 0, len(data) - 1) + 1
    if len(data) - start > 2:
        with open(path, "r+b") as f:
            f.truncate(rng.randrange(start + 1, len(data) - 1))


def test_sigkill_at_random_moments_resumes_to_the_uninterrupted_records(big_reference, models_dir, tmp_path):
    """A small real grid (stories260K; texts with U+2028, U+2029, U+0085, NUL, emoji; pseudo-labels, engine
    embeddings, label scores, kept prompts) run by `crossicl run` and killed with SIGKILL at seeded random
    moments: during start-up, just after a batch was appended (polling the records files), or anywhere; after
    some kills the last line is also torn as a short write leaves it. Every run resumes; the final records,
    pseudo predictions and pseudo-label table equal an uninterrupted run's, with no duplicate and no
    malformed line."""
    ref, ref_pseudo, ref_table = big_reference
    run = tmp_path / "run"
    cfg_path = _write_config(tmp_path / "odd", _odd_config(models_dir, tmp_path / "data", run, big=True))
    rng = random.Random(20261201)
    files = [run / "records.jsonl", run / "pseudo.jsonl"]
    deadline = time.monotonic() + 40
    kills = torn = 0
    while time.monotonic() < deadline:
        proc = _cli(cfg_path, stderr=subprocess.DEVNULL)
        mode = rng.choice(["anytime", "after-write", "after-write", "after-write"])
        if mode == "anytime":
            try:
                proc.wait(timeout=rng.uniform(0.3, 2.5))
            except subprocess.TimeoutExpired:
                pass
        else:  # wait for the n-th append to one of the files, then kill a few milliseconds later
            sizes = [f.stat().st_size if f.exists() else 0 for f in files]
            target = rng.randint(1, 8)
            while proc.poll() is None and target > 0 and time.monotonic() < deadline + 30:
                now = [f.stat().st_size if f.exists() else 0 for f in files]
                if now != sizes:
                    target -= 1
                    sizes = now
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.02))
        if proc.poll() is not None:
            assert proc.returncode == 0
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        existing = [f for f in files if f.exists() and f.stat().st_size]
        if existing and kills % 2 == 0:  # the last write was a short one
            _tear_tail(max(existing, key=lambda f: f.stat().st_mtime_ns), rng)
            torn += 1
    proc = _cli(cfg_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    print(f"{kills} kills, {torn} torn tails")
    assert kills >= 3 and torn >= 1, (kills, torn)
    got = _lines(run / "records.jsonl")
    assert len({E.record_key(r) for r in got}) == len(got) == len(ref)
    _assert_same_records(got, ref)
    pseudo = _lines(run / "pseudo.jsonl")
    assert len({_pseudo_key(r) for r in pseudo}) == len(pseudo) == len(ref_pseudo)
    _assert_same_records(pseudo, ref_pseudo, key=_pseudo_key)
    table = json.loads((run / "pseudo_labels.stories260K.json").read_bytes().decode("utf-8"))
    assert {t: [(r["id"], r["label"], r["kept"]) for r in rows] for t, rows in table.items()} == \
           {t: [(r["id"], r["label"], r["kept"]) for r in rows] for t, rows in ref_table.items()}
    assert records.load_records(run)["id"].tolist() == [r["id"] for r in got]
