"""Golden: every published prompt of the two golden targets rebuilt byte for byte from the pack's tasks,
targets and pseudo pools (never from the golden file itself)."""
from __future__ import annotations

import collections
import gzip
import json

import numpy as np
import pytest

import crossicl

GOLDEN_TARGETS = ["ARC-Challenge", "financial_phrasebank"]


@pytest.fixture(scope="module")
def pack(paper_dir):
    return crossicl.paper.Pack(paper_dir)


@pytest.mark.parametrize("target", GOLDEN_TARGETS)
def test_every_golden_prompt_rebuilt(pack, paper_dir, target):
    ok = collections.Counter()
    total = collections.Counter()
    first_bad = {}
    with gzip.open(paper_dir / "golden" / target / "prompts.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            expected = row.pop("prompt")
            got = pack.prompt_for(row, target=target)
            total[row["method"]] += 1
            if got == expected:
                ok[row["method"]] += 1
            else:
                first_bad.setdefault(row["method"], (row, expected, got))
    for method in crossicl.paper.methods:
        print(f"{target} {method}: {ok[method]}/{total[method]} byte-exact")
    assert set(total) == set(crossicl.paper.methods)
    assert ok == total, {m: v[0] for m, v in first_bad.items()}


def test_target_inputs_rerendered(pack):
    """The pack's `input` field equals the as-run template rendering of `fields` for every item of every target."""
    b = pack.tasks
    for target in pack.targets:
        for item in pack.target_items(target):
            assert b.render_input(target, item.fields) == item.extra["input"]


def test_pseudo_positions_match_selection_json(pack, paper_dir):
    sel = json.loads((paper_dir / "pseudo" / "selection.json").read_text())
    for target, entry in sel["by_target"].items():
        n = entry["n"]
        assert len(pack.pseudo_pool(target)) == n
        for seed, ids in entry["ids"].items():
            pos = pack.pseudo_positions(target, int(seed), 4)
            assert list(pos) == sel["positions"][str(n)][seed]
            assert [pack.pseudo_pool(target)[p].id for p in pos] == ids
            np.testing.assert_array_equal(pos, np.random.RandomState(int(seed)).permutation(n)[:4])


def test_clean_style_is_consistent(paper_dir):
    pack = crossicl.paper.Pack(paper_dir, style="clean")
    row = {"target": "ARC-Challenge", "method": "totally-cross-sim", "source": "sst2", "shots": 2, "seed": None,
           "id": "Mercury_7175875", "models": ["llama-2-7b"]}
    p = pack.prompt(row)
    kinds = [s.kind for s in p.spans]
    assert kinds == ["source_definition", "source_demo", "source_demo", "target_definition", "target_input"]
    # Every piece is separated from the next demonstration/block by one blank line.
    assert p.text[p.spans[1].end:p.spans[2].begin] == "\n\n"
    assert p.text[p.spans[2].end:p.spans[3].begin] == "\n\n"
    assert p.piece(1) == pack.demo("ARC-Challenge", "Mercury_7175875", "sst2", 0)
    # The random ablation no longer glues the demo to the next "Definition:".
    r = pack.prompt({**row, "method": "aba-mixed-cross-sim-random", "source": "mnli", "shots": 1, "seed": 0})
    fixed = pack.tasks["mnli"].random_ablation_demos["0"]
    assert f"Label: {fixed.label}\n\nDefinition: " in r.text
    assert f"{fixed.label}Definition" not in r.text
    # Pseudo-label demos get a definition line and a space before the label.
    q = pack.prompt({**row, "method": "psudo:true_label", "source": None, "shots": 4, "seed": 0})
    assert q.text.startswith("Definition: ")
    assert [s.kind for s in q.spans].count("target_demo") == 4


def test_spans_cover_pieces(pack, paper_dir):
    row = {"target": "financial_phrasebank", "method": "aba-mixed-cross-sim", "source": "ag_news,sst2,mnli,qqp",
           "shots": 4, "seed": None, "id": "100", "models": []}
    p = pack.prompt(row)
    data = p.text.encode()
    for s in p.spans:
        piece = data[s.begin:s.end].decode()
        assert piece == p.piece(p.spans.index(s))
    item = pack.target_item("financial_phrasebank", "100")
    assert p.piece(len(p.spans) - 1) == item.extra["input"]
    assert [s.task for s in p.spans if s.kind == "source_definition"] == ["ag_news", "sst2", "mnli", "qqp"]


def test_bad_rows_raise_value_error(pack):
    base = {"target": "ARC-Challenge", "method": "zero-shot", "source": None, "shots": 0, "seed": None,
            "id": "Mercury_7175875", "models": ["llama-2-7b"]}
    with pytest.raises(ValueError, match="unknown method 'cross'"):
        pack.prompt_for({**base, "method": "cross"})
    with pytest.raises(ValueError, match="no item 'nope'"):
        pack.prompt_for({**base, "id": "nope"})
    with pytest.raises(ValueError, match="needs a source"):
        pack.prompt_for({**base, "method": "totally-cross-sim", "shots": 1})
    with pytest.raises(ValueError, match=r"rank must be in \[0, 4\) \(rank=4"):
        pack.prompt_for({**base, "method": "totally-cross-sim", "source": "sst2", "shots": 5})
    with pytest.raises(ValueError, match=r"k must be <= pool size \(k=9, pool=8\)"):
        pack.prompt_for({**base, "method": "psudo:true_label", "shots": 9, "seed": 0})
    with pytest.raises(ValueError, match="unknown task 'nosuch'"):
        pack.prompt_for({**base, "method": "totally-cross-sim", "source": "nosuch", "shots": 1})
    with pytest.raises(ValueError, match="no random_ablation_demos\\['7'\\]"):
        pack.prompt_for({**base, "method": "aba-mixed-cross-sim-random", "source": "mnli", "shots": 1, "seed": 7})
    with pytest.raises(crossicl.LoadError, match="boolq"):
        pack.source_pool("boolq")
