"""The paper preset: open a directory laid out like the fixture pack (``../shared/paper``) and rebuild the
prompt of any published key.

>>> pack = crossicl.paper.Pack("../shared/paper")
>>> pack.prompt_for({"target": "ARC-Challenge", "method": "zero-shot", "source": None, "shots": 0,
...                  "seed": None, "id": "Mercury_7175875", "models": ["llama-2-7b"]})
'Definition: Given a question answering task ...\\nQuestion:An astronomer ... \\n Answer:'
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import _crossicl

methods: list[str] = list(_crossicl.paper_methods)


class Pack(_crossicl.PaperPack):
    """A paper fixture pack (tasks.json, targets/, sources/, pseudo/, embeddings/).

    Files are read lazily and cached. ``style="paper"`` (the default here) gives the published strings byte
    for byte; ``style="clean"`` builds the same methods with crossicl's consistent separators.
    """

    def __init__(self, path: str | Any, *, style: str = "paper") -> None:
        super().__init__(str(path), style=style)

    def prompt(self, row: Mapping[str, Any], *, target: str | None = None) -> _crossicl.Prompt:
        """The prompt (text and spans) of a row shaped like golden/<T>/prompts.jsonl.gz:
        ``method, source, shots, seed, id, models`` plus ``target`` (or pass ``target=``). Pseudo-label
        rows use the labels of the model named first in ``models``."""
        tgt = row.get("target", target) if target is None else target
        if tgt is None:
            raise ValueError("row has no 'target' (pass target=...)")
        missing = [k for k in ("method", "id") if k not in row]
        if missing:
            raise ValueError(f"row lacks {missing}: {dict(row)}")
        return self._prompt(
            tgt,
            row["method"],
            row.get("source") or "",
            int(row.get("shots") or 0),
            None if row.get("seed") is None else int(row["seed"]),
            str(row["id"]),
            list(row.get("models") or []),
        )

    def prompt_for(self, row: Mapping[str, Any], *, target: str | None = None) -> str:
        """The prompt text of a row (see :meth:`prompt`)."""
        return self.prompt(row, target=target).text


__all__ = ["Pack", "methods"]
