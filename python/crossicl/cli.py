"""The ``crossicl`` command line.

``crossicl demo`` loads the bundled sample task cards and pools, selects cross-task demonstrations for a few
target items with BM25 (no model needed), and prints the prompts with the chosen demonstrations and scores.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

from . import _crossicl

SAMPLES = pathlib.Path(__file__).resolve().parent / "data" / "samples"


def _demo(args: argparse.Namespace) -> int:
    data = pathlib.Path(args.data)
    tasks = _crossicl.load_tasks(str(data / "tasks.json"))
    builder = _crossicl.PromptBuilder(tasks, style=args.style)
    pools = {name: _crossicl.load_examples(str(data / f"{name}.jsonl")) for name in tasks.names}
    targets = [n for n in tasks.names if tasks[n].role == "target"]
    sources = [n for n in tasks.names if tasks[n].role == "source"]
    print(f"crossicl demo: {len(targets)} targets, {len(sources)} sources from {data}")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crossicl", description="Cross-task in-context learning.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="select cross-task demonstrations on the bundled samples and print prompts")
    demo.add_argument("--data", default=str(SAMPLES), help="folder with tasks.json and <task>.jsonl (default: bundled)")
    demo.add_argument("--k", type=int, default=2, help="demonstrations per prompt (default 2)")
    demo.add_argument("--items", type=int, default=2, help="target items shown per target (default 2)")
    demo.add_argument("--style", choices=["clean", "paper"], default="clean", help="prompt style")
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args)
    except (ValueError, RuntimeError) as e:  # crossicl.InvalidArgument / crossicl.LoadError name the culprit
        print(f"crossicl: error: {e}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
