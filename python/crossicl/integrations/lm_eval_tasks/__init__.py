"""Local lm-eval tasks built from the paper pack (no dataset download): the YAMLs beside this file and
``write_tasks``, which writes their data files.

    write_tasks("../shared/paper", "lm-eval-tasks", limit=None)   # or: python -m crossicl.integrations.lm_eval_tasks
    # then: lm_eval ... --include_path lm-eval-tasks --tasks crossicl_arc_challenge,crossicl_financial_phrasebank

Tasks (docs/lm-eval.md): ``crossicl_arc_challenge`` (multiple choice over the option letters after the paper's
zero-shot prompt), ``crossicl_arc_challenge_text`` (lm-eval's arc_challenge format: the options' texts after
"Question: ...\\nAnswer:") and ``crossicl_financial_phrasebank`` (generation after the paper's zero-shot prompt).
Imports neither lm-eval nor the engine.
"""
from __future__ import annotations

import json
import os
import pathlib
import re

import yaml

HERE = pathlib.Path(__file__).resolve().parent
# task -> (the pack's target, the data file its YAML names)
TASKS = {
    "crossicl_arc_challenge": ("ARC-Challenge", "crossicl_arc_challenge.jsonl"),
    "crossicl_arc_challenge_text": ("ARC-Challenge", "crossicl_arc_challenge.jsonl"),
    "crossicl_financial_phrasebank": ("financial_phrasebank", "crossicl_financial_phrasebank.jsonl"),
}
LETTERS = "ABCD"
_OPTION = re.compile(r"\n(?=[A-D]\. )")


def arc_options(sentence: str) -> tuple[str, list[str]]:
    """(question, option texts) of an ARC `sentence` field, built by the pack as question + "\\nA. " + c0 + ... +
    "\\nD. " + c3. Raises ValueError for any other shape."""
    parts = _OPTION.split(sentence)
    if len(parts) != 5 or [p[:3] for p in parts[1:]] != [f"{c}. " for c in LETTERS]:
        raise ValueError(f"not a question with options A. to D.: {sentence[:80]!r}")
    return parts[0], [p[3:] for p in parts[1:]]


def _docs(pack, target: str, limit: int | None) -> list[dict]:
    docs = []
    for item in pack.target_items(target)[:limit]:
        row = {"target": target, "method": "zero-shot", "source": None, "shots": 0, "seed": None, "id": item.id,
               "models": ["llama-2-7b"]}
        doc = {"id": item.id, "prompt": pack.prompt_for(row), "label": item.label}
        if target == "ARC-Challenge":
            doc["question"], doc["options"] = arc_options(item.fields["sentence"])
            doc["gold"] = LETTERS.index(item.label)
        docs.append(doc)
    return docs


def write_tasks(pack_dir: str | os.PathLike, out_dir: str | os.PathLike, *, limit: int | None = None,
                tasks: list[str] | None = None) -> pathlib.Path:
    """Writes each task's data (JSON Lines, the first `limit` items of its target in the pack's order; all when
    None) and its YAML, with the data file's path made absolute, to out_dir; returns out_dir, the folder to pass
    as lm-eval's include_path."""
    from crossicl.paper import Pack

    names = list(TASKS) if tasks is None else tasks
    unknown = sorted(set(names) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown task {unknown[0]!r} (known: {', '.join(TASKS)})")
    pack = Pack(str(pack_dir))
    out = pathlib.Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        target, data_file = TASKS[name]
        data = out / data_file
        with open(data, "w", encoding="utf-8") as f:
            for doc in _docs(pack, target, limit):
                f.write(json.dumps(doc, ensure_ascii=False) + "\n")
        config = yaml.safe_load((HERE / f"{name}.yaml").read_text(encoding="utf-8"))
        config["dataset_kwargs"]["data_files"] = {"test": str(data)}
        (out / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
                                          encoding="utf-8")
    return out


__all__ = ["TASKS", "arc_options", "write_tasks"]
