"""Hostile inputs through the Python surface: crossicl.Limits, exceptions that keep the file name whatever bytes
the message quotes, and JSON nesting on the way in (Example(extra=...)) and out (Example.extra).

The parsing logic itself (depth scan, caps, id checks) is tested in tests/cpp/test_limits.cpp and
tests/cpp/engine/test_parsers_hardening.cpp. Before these fixes several cases here crashed the interpreter
(SIGSEGV by recursion) or hung it (a FIFO); each now raises in-process.
"""
from __future__ import annotations

import gzip
import json
import os
import pathlib
import threading

import pytest

import crossicl

DEEP = 200_000


@pytest.fixture(autouse=True)
def restore_limits():
    saved = crossicl.limits()
    yield
    crossicl.set_limits(saved)


def deep_list(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def call_with_timeout(fn, timeout: float = 20.0):
    """fn() in a daemon thread; a call that blocks (a FIFO read) fails the test instead of hanging the run."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            outcome["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "call blocked"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


# ------------------------------------------------------------------------------------------------ Limits

def test_limits_defaults_repr_and_round_trip() -> None:
    d = crossicl.Limits()
    assert (d.max_json_depth, d.max_file_bytes, d.max_vocab_size) == (256, 4 << 30, 1 << 21)
    assert repr(d) == "Limits(max_json_depth=256, max_file_bytes=4294967296, max_vocab_size=2097152)"
    assert crossicl.limits() == d
    with pytest.raises(TypeError):
        crossicl.Limits(10)  # keyword-only
    mine = crossicl.Limits(max_json_depth=32, max_vocab_size=1000)
    assert mine.max_file_bytes == d.max_file_bytes
    mine.max_file_bytes = 12345
    crossicl.set_limits(mine)
    got = crossicl.limits()
    assert got == mine and got is not mine
    got.max_json_depth = 3  # a copy: the limits in force do not change until set_limits
    assert crossicl.limits().max_json_depth == 32


@pytest.mark.parametrize("field, value", [("max_json_depth", 0), ("max_json_depth", 10_001),
                                          ("max_file_bytes", -1), ("max_vocab_size", 2**31)])
def test_set_limits_rejects_out_of_range(field: str, value: int) -> None:
    before = crossicl.limits()
    bad = crossicl.Limits(**{field: value})
    with pytest.raises(ValueError, match=rf"Limits\.{field} must be in \[1, \d+\] \(got {value}\)") as err:
        crossicl.set_limits(bad)
    assert isinstance(err.value, crossicl.InvalidArgument)
    assert crossicl.limits() == before


# ------------------------------------------------------------------------------------------------ error messages

def test_raw_bytes_in_messages_keep_the_exception_and_file(tmp_path: pathlib.Path) -> None:
    """A message quoting a 0xFF byte of the file used to surface as UnicodeDecodeError, without the file name."""
    tasks = tmp_path / "tasks.json"
    tasks.write_bytes(b'{"tasks": \xff\xfe}')
    with pytest.raises(crossicl.LoadError, match="tasks.json: malformed JSON") as err:
        crossicl.load_tasks(str(tasks))
    assert "\ufffd" in str(err.value)  # the byte, replaced
    if crossicl.has_engine:
        tok = tmp_path / "tokenizer.json"
        tok.write_bytes(b'{"model": \xff}')
        with pytest.raises(crossicl.LoadError, match="tokenizer.json"):
            crossicl.Tokenizer(str(tok))


# ------------------------------------------------------------------------------------------------ JSON nesting

def test_example_extra_nested_too_deep_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"nested deeper than 256 levels \(Limits\.max_json_depth\)"):
        crossicl.Example("1", {}, None, {"x": deep_list(DEEP)})
    looped: list = []
    looped.append(looped)
    with pytest.raises(crossicl.InvalidArgument, match="Limits.max_json_depth"):
        crossicl.Example("1", {}, None, {"x": looped})
    ex = crossicl.Example("1", {}, None, {"x": deep_list(255)})  # the dict is the 256th level
    assert ex.extra["x"] == deep_list(255)
    with pytest.raises(ValueError, match="Limits.max_json_depth"):
        ex.extra = {"x": deep_list(256)}
    crossicl.set_limits(crossicl.Limits(max_json_depth=600))
    ex.extra = {"x": deep_list(599)}
    assert ex.to_dict()["x"] == deep_list(599)


def test_jsonl_nested_too_deep_fails_at_load(tmp_path: pathlib.Path) -> None:
    """Loading used to succeed and reading Example.extra then crashed (json_to_py recursion)."""
    path = tmp_path / "deep.jsonl"
    path.write_text('{"id": "a", "fields": {}}\n{"id": "b", "fields": {}, "x": ' + "[" * DEEP + "]" * DEEP + "}\n")
    with pytest.raises(crossicl.LoadError, match=r"deep\.jsonl:2: JSON nested deeper than 256 levels"):
        crossicl.load_examples(str(path))


def test_task_card_nested_too_deep(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "tasks.json"
    card = {"instruction": "i", "template": "{x}", "notes": "@"}
    path.write_text(json.dumps({"tasks": {"t": card}}).replace('"@"', "[" * DEEP + "]" * DEEP))
    with pytest.raises(crossicl.LoadError, match=r"tasks\.json.*Limits\.max_json_depth"):
        crossicl.load_tasks(str(path))


# ------------------------------------------------------------------------------------------------ files

def test_gzip_bomb_stops_at_max_file_bytes(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bomb.jsonl.gz"
    with gzip.open(path, "wb") as f:
        f.write(b" " * (8 << 20))
    assert path.stat().st_size < 100_000
    crossicl.set_limits(crossicl.Limits(max_file_bytes=1 << 20))
    with pytest.raises(crossicl.LoadError, match=r"bomb\.jsonl\.gz' decompresses to more than "
                                                 r"Limits\.max_file_bytes \(1048576\) bytes"):
        crossicl.load_examples(str(path))


def test_fifo_is_refused_not_waited_on(tmp_path: pathlib.Path) -> None:
    fifo = tmp_path / "data.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(crossicl.LoadError, match="data.jsonl': not a regular file"):
        call_with_timeout(lambda: crossicl.load_examples(str(fifo)))
    if crossicl.has_engine:
        with pytest.raises(crossicl.LoadError, match="not a regular file"):
            call_with_timeout(lambda: crossicl.Tokenizer(str(fifo)))


@pytest.mark.skipif(not crossicl.has_engine, reason="needs the engine")
def test_tokenizer_huge_id_is_refused_quickly(tmp_path: pathlib.Path) -> None:
    """A 100-byte file naming id 10**8 used to take seconds and gigabytes."""
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps({"model": {"type": "BPE", "vocab": {"a": 10**8}, "merges": []}}))
    with pytest.raises(crossicl.LoadError, match=r"vocab id 100000000 of 'a' is out of range \[0, 2097152\) "
                                                 r"\(Limits\.max_vocab_size\)"):
        crossicl.Tokenizer(str(path))
    path.write_text(json.dumps({"model": {"type": "BPE", "vocab": {"a": 3_000_000}, "merges": []}}))
    with pytest.raises(crossicl.LoadError, match="3000000"):
        crossicl.Tokenizer(str(path))
    crossicl.set_limits(crossicl.Limits(max_vocab_size=3_000_001))  # raised on purpose: it loads
    assert crossicl.Tokenizer(str(path)).vocab_size == 3_000_001


def test_pack_values_of_the_wrong_type_name_the_file(tmp_path: pathlib.Path) -> None:
    """A demonstration or pseudo-label that is not a string used to escape as nlohmann's bare type_error."""
    cards = {"T": {"role": "target", "instruction": "i", "template": "{x}"},
             "S": {"role": "source", "instruction": "s", "template": "{x}"},
             "U": {"role": "source", "instruction": "u", "template": "{x}"}}
    (tmp_path / "tasks.json").write_text(json.dumps({"tasks": cards}))
    target = {"id": "1", "fields": {"x": "a"}, "demos_top4": {"S": [5], "U": "x"}}
    pseudo = {"id": "p", "fields": {"x": "b"}, "label": "L", "models": {"m": {"pseudo_label": 7}}}
    for sub, row in [("targets", target), ("pseudo", pseudo)]:
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "T.jsonl").write_text(json.dumps(row) + "\n")
    pack = crossicl.PaperPack(str(tmp_path))
    with pytest.raises(crossicl.LoadError, match=r"targets/T: item '1': demos_top4\.S\[0\] must be a string, "
                                                 r"got number 5"):
        pack.demo("T", "1", "S", 0)
    with pytest.raises(crossicl.LoadError, match=r"item '1': demos_top4\.U must be a list, got string"):
        pack.demo("T", "1", "U", 0)
    with pytest.raises(crossicl.LoadError, match=r"pseudo/T: item 'p': models\.m\.pseudo_label must be a string"):
        pack._prompt("T", "psudo:psudo-label", "", 1, 0, "1", ["m"])
