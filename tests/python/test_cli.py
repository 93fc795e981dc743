"""The `crossicl demo` main job on the bundled samples (no model, no ../shared)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import crossicl
from crossicl import cli


def test_demo_prints_selected_cross_task_prompts(capsys):
    assert cli.main(["demo", "--select-only", "--k", "2", "--items", "1"]) == 0
    out = capsys.readouterr().out
    tasks = crossicl.load_tasks(str(cli.SAMPLES / "tasks.json"))
    targets = [n for n in tasks.names if tasks[n].role == "target"]
    assert out.count("cross-task prompt from the most similar source") == len(targets)
    for t in targets:
        assert f"target {t} / item" in out
        assert f"Definition: {tasks[t].instruction}" in out
    # The chosen demonstrations of the printed prompt are real pool rows with their labels.
    b = crossicl.PromptBuilder(tasks)
    sources = [n for n in tasks.names if tasks[n].role == "source"]
    rendered = [b.render_demo(s, ex) for s in sources for ex in crossicl.load_examples(str(cli.SAMPLES / f"{s}.jsonl"))]
    assert sum(r in out for r in rendered) >= 2 * len(targets)


def test_demo_selection_matches_bm25(capsys):
    """The ids printed for a source are BM25's top-k of the rendered target input."""
    cli.main(["demo", "--select-only", "--k", "1", "--items", "1"])
    out = capsys.readouterr().out
    tasks = crossicl.load_tasks(str(cli.SAMPLES / "tasks.json"))
    b = crossicl.PromptBuilder(tasks)
    items = crossicl.load_examples(str(cli.SAMPLES / "product_reviews.jsonl"))
    pool = crossicl.load_examples(str(cli.SAMPLES / "news_topics.jsonl"))
    bm25 = crossicl.BM25TopK([b.render_input("news_topics", ex) for ex in pool])
    ids, scores = bm25.select([b.render_input("product_reviews", items[0])], 1)
    assert f"news_topics: {pool[int(ids[0][0])].id} ({float(scores[0][0]):.2f})" in out


def test_demo_bad_data_dir_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "tasks.json").write_text(json.dumps({"tasks": {"t": {"instruction": "x", "role": "target",
                                                                      "template": "{s}"}}}))
    assert cli.main(["demo", "--select-only", "--data", str(tmp_path)]) == 1
    assert "t.jsonl" in capsys.readouterr().err


def test_module_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "crossicl", "demo", "--select-only", "--items", "1"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "cross-task prompt" in r.stdout


@pytest.mark.parametrize("argv", [["demo", "--select-only", "--k", "0"], ["demo", "--select-only", "--k", "999"]])
def test_demo_rejects_bad_k(argv, capsys):
    assert cli.main(argv) == 1
    assert "k must be" in capsys.readouterr().err
