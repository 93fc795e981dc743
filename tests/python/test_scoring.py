"""Scoring modes of a run (decode.scoring = generate, label, label_calibrated) on a small stories260K grid: label
scores equal engine.score on the label strings, calibrated predictions equal crossicl.calibrate on the record's
own content-free scores, the content-free prompts, decode.order, and the config errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

import crossicl
from crossicl import config as C
from crossicl import experiment as E
from crossicl import planning
from tolerance import STORIES260K, model_rel

MODES = ["generate", "label", "label_calibrated"]


def _config(paper_dir, models_dir, out, **decode):
    stories = models_dir / "stories260K"
    return {
        "name": "scoring", "out": str(out),
        "data": {"pack": str(paper_dir), "items": 6},
        "models": [{"name": "stories260K", "path": str(stories / "stories260K.bin"),
                    "tokenizer": str(stories / "tok512.model"), "threads": 1}],
        "grid": {"targets": ["ARC-Challenge", "financial_phrasebank"], "sources": ["ag_news", "ARC-Easy"],
                 "methods": ["zero-shot", "in-task", "cross-task"]},
        "selection": {"selector": "published"},
        "prompt": {"style": "paper"},
        "decode": {"max_new_tokens": 4, "batch": 4, "truncation": "left", "scoring": MODES, "keep_prompt": True,
                   **decode},
    }


def _lines(out) -> list[str]:
    return sorted(line for line in (out / "records.jsonl").read_text(encoding="utf-8").split("\n") if line)


@pytest.fixture(scope="module")
def run(paper_dir, models_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("scoring")
    exp = E.Experiment(_config(paper_dir, models_dir, out))
    exp.run(progress=False)
    return exp, out, [json.loads(x) for x in _lines(out)]


def test_records_carry_every_mode(run):
    exp, _, recs = run
    assert len(recs) == 2 * (1 + 1 + 2) * 6
    for r in recs:
        labels = list(exp.data.tasks[r["target"]].label_space)
        for prefix, key, cal in (("label", "label_logprobs", "calibrated"),
                                 ("label_first", "label_first_logprobs", "calibrated_first")):
            assert list(r[key]) == labels
            assert r[f"{prefix}_pred"] == max(r[key], key=r[key].get)
            assert r[f"{prefix}_correct_paper_eval"] == crossicl.exact_match(r[f"{prefix}_pred"], r["gold"],
                                                                               "paper_eval")
            cf = np.asarray(r[f"cf_{key}"])
            assert cf.shape == (3, len(labels))  # "N/A", "", "[MASK]"
            q = crossicl.calibrate(np.asarray([list(r[key].values())]), cf)[0]
            # the record keeps 6 decimals; an arg-max within that rounding of a tie may go either way
            top = np.sort(q)[-2:]
            if top[1] - top[0] > 1e-5:
                assert r[f"{cal}_pred"] == labels[int(np.argmax(q))]
            assert r[f"{cal}_correct_clean"] == crossicl.exact_match(r[f"{cal}_pred"], r["gold"], "clean")


def test_label_scores_equal_engine_score(run, models_dir):
    exp, _, recs = run
    stories = models_dir / "stories260K"
    engine = crossicl.Engine(str(stories / "stories260K.bin"), str(stories / "tok512.model"), threads=1)
    rel = model_rel(STORIES260K, tokens=512, output="logprobs")
    for r in recs[::5]:
        labels = list(r["label_logprobs"])
        got = engine.score(r["prompt"], [" " + lab for lab in labels], truncation="left")
        scale = max(abs(s.sum) for s in got)
        for lab, s in zip(labels, got):  # the record rounds to 6 decimals: 5e-7 more
            assert abs(r["label_logprobs"][lab] - s.sum) <= rel * (abs(s.sum) + scale) + 5e-7
            assert abs(r["label_first_logprobs"][lab] - s.first_logprob) <= rel * (abs(s.sum) + scale) + 5e-7


def test_content_free_prompts_replace_only_the_query(run, paper_dir):
    exp, _, recs = run
    pack = crossicl.paper.Pack(paper_dir)
    builder = crossicl.PromptBuilder(pack.tasks, style="paper")
    items = pack.target_items("ARC-Challenge")[:2]
    keys = set()
    for it in items:
        p = builder.zero_shot("ARC-Challenge", it)
        key, texts = planning.content_free_prompts(builder, "ARC-Challenge", it, p, ["N/A", ""])
        keys.add(key)
        q = [s for s in p.spans if s.kind == "target_input"][0]
        head = p.text.encode()[:q.begin].decode()
        # the published ARC template is "Question:<question> \n Answer:"
        assert texts[0] == head + "Question:N/A \n Answer:" and texts[1] == head + "Question: \n Answer:"
    assert len(keys) == 1  # zero-shot: one context for every item
    # cross-task prompts of different items have different demonstrations, hence different contexts
    ps = [builder.cross_task("ARC-Challenge", it, "ag_news", [pack.demo("ARC-Challenge", it.id, "ag_news", 0)])
          for it in items]
    assert len({planning.content_free_prompts(builder, "ARC-Challenge", it, p, ["N/A"])[0]
                for it, p in zip(items, ps)}) == 2


def test_item_order_writes_the_same_records(run, paper_dir, models_dir, tmp_path):
    _, out, _ = run
    E.Experiment(_config(paper_dir, models_dir, tmp_path, order="items")).run(progress=False)
    assert _lines(tmp_path) == _lines(out)
    first = [json.loads(x) for x in (tmp_path / "records.jsonl").read_text().split("\n")[:8] if x]
    assert len({(r["target"], r["method"], r["source"]) for r in first}) == 2  # batch 0 of two cells


def test_label_scores_alias_equals_label_mode(paper_dir, models_dir, tmp_path):
    a = E.Experiment(_config(paper_dir, models_dir, tmp_path / "a", scoring=["generate"], label_scores=True))
    b = E.Experiment(_config(paper_dir, models_dir, tmp_path / "b", scoring=["generate", "label"]))
    a.run(progress=False)
    b.run(progress=False)
    assert _lines(tmp_path / "a") == _lines(tmp_path / "b")


@pytest.mark.parametrize("decode, words", [
    ({"scoring": ["generate", "labels"]}, "decode.scoring[1]: unknown scoring 'labels'"),
    ({"scoring": "label"}, "non-empty list"),
    ({"scoring": ["label"]}, "must include 'generate'"),
    ({"content_free": []}, "decode.content_free"),
    ({"content_free": ["N/A", 3]}, "decode.content_free"),
    ({"order": "random"}, "decode.order"),
    ({"label_scores": "yes"}, "decode.label_scores"),
])
def test_config_errors(paper_dir, models_dir, tmp_path, decode, words):
    with pytest.raises(C.ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        E.Experiment(_config(paper_dir, models_dir, tmp_path, **decode))


def test_cli_run_logs_its_command_and_the_report_lists_it(paper_dir, models_dir, tmp_path):
    from crossicl import cli
    cfg = _config(paper_dir, models_dir, tmp_path / "run")
    cfg["data"]["items"] = 2
    cfg["grid"] = {"targets": ["sciq"], "methods": ["zero-shot"]}
    path = tmp_path / "grid.yaml"  # JSON is YAML
    path.write_text(json.dumps(cfg))
    argv = ["run", str(path), "--quiet", "--out", str(tmp_path / "run")]
    assert cli.main(argv) == 0
    assert cli.main(argv) == 0  # a resumed run logs its command too
    lines = (tmp_path / "run" / "commands.txt").read_text().split("\n")
    assert len(lines) == 3 and lines[2] == "" and all(x.endswith("crossicl " + " ".join(argv)) for x in lines[:2])
    assert cli.main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "rep.md")]) == 0
    text = (tmp_path / "rep.md").read_text()
    assert "## Commands" in text and "crossicl run" in text and "### Accuracy per cell: `calibrated`" in text
    assert (tmp_path / "rep" / "heatmap_label.png").is_file() is False  # no cross-task cells: no heatmaps


def test_the_full_grid_example_validates(paper_dir, tmp_path):
    """examples/smollm2_full_grid.toml (the science run of docs/results/smollm2-135m.md) stays a valid grid: 5
    targets x (zero-shot, in-task, 10 sources, 2 pseudo-label methods) over every test item."""
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / "smollm2_full_grid.toml"
    cfg = C.load_config(path)
    cfg["data"]["pack"] = str(paper_dir)
    exp = E.Experiment(cfg, out=tmp_path)
    assert len(exp.cells) == 70
    assert sum(len(exp.data.items(c.target)) for c in exp.cells) == 35028
    assert C.scoring_modes(exp.config["decode"]) == MODES and exp.config["decode"]["order"] == "items"
