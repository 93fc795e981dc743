"""crossicl: cross-task in-context learning.

The C++ core (task cards, datasets, templates, prompt builders, selectors, scorers, statistics) and the
libtorch engine are exposed from the compiled module ``crossicl._crossicl`` and re-exported here.
"""
from __future__ import annotations

import pkgutil as _pkgutil

# A development build puts the compiled module in <build>/pyext/crossicl; let the package span both folders.
__path__ = _pkgutil.extend_path(__path__, __name__)

from ._build import TORCH_VERSION as _BUILT_TORCH


def _release(version: str) -> str:
    """'2.13.0+cpu' -> '2.13': torch's C++ ABI is kept within a minor release."""
    return ".".join(version.split("+")[0].split(".")[:2])


if _BUILT_TORCH:  # libtorch's shared libraries come from the torch package; load them before the extension.
    try:
        import torch as _torch
    except ImportError as _e:
        raise ImportError(f"crossicl was built against torch {_BUILT_TORCH}, which is not installed; "
                          f"pip install 'torch=={_release(_BUILT_TORCH)}.*'") from _e
    if _release(_torch.__version__) != _release(_BUILT_TORCH):
        raise ImportError(f"crossicl was built against torch {_BUILT_TORCH} but torch {_torch.__version__} is "
                          f"installed; install torch=={_release(_BUILT_TORCH)}.* or rebuild crossicl against this "
                          "torch (pip install --no-build-isolation .)")

from . import _crossicl
from ._crossicl import *  # noqa: F401,F403
from ._crossicl import InvalidArgument, Limits, LoadError, limits, set_limits  # noqa: F401

__version__ = "0.1.0"

from . import paper  # noqa: E402,F401
from . import models  # noqa: E402,F401
from . import experiment  # noqa: E402,F401
from . import analysis  # noqa: E402,F401
from .experiment import Experiment  # noqa: E402,F401
from .records import RunFolderLocked  # noqa: E402,F401
