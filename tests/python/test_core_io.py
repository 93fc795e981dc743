"""Python surface of task cards, datasets, templates and prompt builders: loading, errors, keyword options."""
from __future__ import annotations

import gzip
import json

import pytest

import crossicl


def write(path, text, gz=False):
    data = text.encode("utf-8") if isinstance(text, str) else text
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return str(path)


def test_load_examples_plain_and_gz(tmp_path):
    lines = [{"id": "a", "fields": {"sentence": "x  y\n"}, "label": "pos", "note": [1, 2]},
             {"id": 7, "fields": {"sentence": "é"}, "label": None}]
    text = "\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n"
    for gz in (False, True):
        ex = crossicl.load_examples(write(tmp_path / f"d{gz}.jsonl", text, gz))
        assert [e.id for e in ex] == ["a", "7"]
        assert ex[0].fields == {"sentence": "x  y\n"}
        assert ex[0].label == "pos" and ex[1].label is None
        assert ex[0].extra == {"note": [1, 2]}
        assert ex[0].to_dict()["note"] == [1, 2]


@pytest.mark.parametrize("content, message", [
    ('{"id": "a", "fields": {"s": "x"}}\n{"id": "b", "fields": ', r"bad\.jsonl:2: malformed JSON"),
    ('{"id": "a"}\n', r"bad\.jsonl:1: example 'a' has no \"fields\""),
    ('{"fields": {}}\n', r"bad\.jsonl:1: missing \"id\""),
    ('{"id": "a", "fields": {"s": 3}}\n', r"field \"s\" of example 'a' must be a string, got number"),
    ('{"id": "a", "fields": {}, "label": 1}\n', r"\"label\" of example 'a' must be a string or null"),
    ('[1, 2]\n', r"bad\.jsonl:1: expected a JSON object, got array"),
    ('{"id": "a", "fields": {}}\n{"id": "a", "fields": {}}\n', r"bad\.jsonl:2: duplicate id 'a'"),
    (b'{"id": "a", "fields": {"s": "\xff"}}\n', r"bad\.jsonl:1: invalid UTF-8 at column 30"),
])
def test_load_examples_errors_name_file_and_line(tmp_path, content, message):
    with pytest.raises(crossicl.LoadError, match=message):
        crossicl.load_examples(write(tmp_path / "bad.jsonl", content))


def test_load_examples_missing_file(tmp_path):
    with pytest.raises(crossicl.LoadError, match="cannot open .*nope.jsonl"):
        crossicl.load_examples(str(tmp_path / "nope.jsonl"))
    assert issubclass(crossicl.LoadError, RuntimeError)
    assert issubclass(crossicl.InvalidArgument, ValueError)


def test_load_paper_tasks(paper_dir):
    tasks = crossicl.load_tasks(str(paper_dir / "tasks.json"))
    assert len(tasks) == 15 and "mnli" in tasks
    assert tasks["mnli"].instruction.startswith(" Given")
    assert set(tasks.families) >= {"as_run", "as_run_demo", "head", "head_with_definition", "in_task_demo",
                                   "pseudo_label_demo", "random_ablation_demo", "definition_line"}
    assert tasks.template_for("as_run", "qqp").text == "Question 1: {sentence1} \n Question 2:{sentence2} \n Label:"
    assert tasks["ARC-Challenge"].in_task_demo.label == "D"
    assert tasks["ag_news"].random_ablation_demos["2"].text.startswith("Definition: ")
    assert tasks["sst2"].extra["pool_size"] == 10000
    assert tasks.definition("qqp").startswith("Definition: Given two question pairs")


def test_user_task_cards_and_errors(tmp_path):
    card = {"tasks": {"mine": {"role": "target", "instruction": "Classify.", "label_space": ["a", "b"],
                               "template": "Text: {text}\nLabel:"}}}
    tasks = crossicl.load_tasks(write(tmp_path / "t.json", json.dumps(card)))
    assert tasks["mine"].input_fields == ["text"]
    b = crossicl.PromptBuilder(tasks, style="clean")
    item = crossicl.Example("1", {"text": "hi"})
    assert b.zero_shot("mine", item).text == "Definition: Classify.\nText: hi\nLabel:"
    with pytest.raises(ValueError, match="template 'as_run/mine' needs field 'text', missing in example '2' of mine"):
        b.zero_shot("mine", crossicl.Example("2", {"other": "x"}))
    with pytest.raises(ValueError, match="unknown prompt style 'fancy'"):
        crossicl.PromptBuilder(tasks, style="fancy")
    with pytest.raises(TypeError):
        crossicl.PromptBuilder(tasks, "clean")  # options are keyword-only
    with pytest.raises(ValueError, match="unknown template family 'nope'"):
        tasks.template_for("nope", "mine")
    with pytest.raises(ValueError, match="unknown task 'other' \\(known: mine\\)"):
        b.zero_shot("other", item)
    bad = {"tasks": {"x": {"instruction": 3, "template": "{a}"}}}
    with pytest.raises(crossicl.LoadError, match="task 'x': \"instruction\" must be a string"):
        crossicl.load_tasks(write(tmp_path / "b.json", json.dumps(bad)))
    with pytest.raises(crossicl.LoadError, match="b2.json: malformed JSON"):
        crossicl.load_tasks(write(tmp_path / "b2.json", "{"))
    nofield = {"tasks": {"x": {"instruction": "i", "template": "{a} {b}", "input_fields": ["a"]}}}
    with pytest.raises(crossicl.LoadError, match="uses field 'b' not listed in input_fields"):
        crossicl.load_tasks(write(tmp_path / "b3.json", json.dumps(nofield)))


def test_template_render_is_verbatim():
    t = crossicl.Template("Q:{q} \n {{q}} {\"a\": 1} A:")
    assert t.placeholders == ["q"]
    assert t.render({"q": "  x\n"}) == "Q:  x\n \n {q} {\"a\": 1} A:"
