"""python -m crossicl.integrations.lm_eval_tasks PACK OUT [--limit N] [--tasks a,b]: writes the local lm-eval tasks
(data + YAML) to OUT; pass OUT to lm-eval as --include_path."""
from __future__ import annotations

import argparse

from crossicl.integrations.lm_eval_tasks import TASKS, write_tasks

parser = argparse.ArgumentParser(prog="python -m crossicl.integrations.lm_eval_tasks", description=__doc__)
parser.add_argument("pack", help="the paper pack folder (../shared/paper)")
parser.add_argument("out", help="folder to write the tasks to")
parser.add_argument("--limit", type=int, default=None, help="first N items of each target (default: all)")
parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated (default: {','.join(TASKS)})")
args = parser.parse_args()
out = write_tasks(args.pack, args.out, limit=args.limit, tasks=args.tasks.split(","))
print(f"wrote {', '.join(args.tasks.split(','))} to {out} (use --include_path {out})")
