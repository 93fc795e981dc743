"""scikit-build-core dynamic-metadata provider (pyproject.toml): the package's dependencies plus a pin on the
torch release the extension is compiled against (`torch==X.Y.*`, read from the installed torch, since the build
runs with --no-build-isolation). libtorch's C++ ABI is kept only within a release, so a wheel must not be
installed beside another torch. Without torch installed the build is core-only and nothing is pinned."""
from __future__ import annotations

from typing import Any


def dynamic_metadata(settings: dict[str, Any], project: dict[str, Any]) -> dict[str, Any]:
    deps = list(settings.get("base", []))
    try:
        import torch
    except ImportError:
        return {"dependencies": deps}
    release = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    return {"dependencies": deps + [f"torch=={release}.*"]}
