"""examples/quickstart.ipynb runs top to bottom (nbclient) on stories260K, so it stays true."""
from __future__ import annotations

import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_quickstart_notebook_executes(shared, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    monkeypatch.setenv("CROSSICL_QUICKSTART_MODEL", "stories260K")
    monkeypatch.setenv("CROSSICL_TEST_DATA", str(shared))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = {i: c.get("outputs", []) for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    errors = [o for outs in outputs.values() for o in outs if o.get("output_type") == "error"]
    assert not errors
    text = "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for outs in outputs.values()
                   for o in outs)
    assert "Definition:" in text and "target_input" in text
    assert "cross-task" in text and "zero-shot" in text
    assert any("image/png" in o.get("data", {}) for outs in outputs.values() for o in outs)
    assert (tmp_path / "runs" / "quickstart" / "records.jsonl").is_file()
