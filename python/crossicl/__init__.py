"""crossicl: cross-task in-context learning.

The C++ core (task cards, datasets, templates, prompt builders, selectors, scorers, statistics) and the
libtorch engine are exposed from the compiled module ``crossicl._crossicl`` and re-exported here.
"""
from __future__ import annotations

import pkgutil as _pkgutil

# A development build puts the compiled module in <build>/pyext/crossicl; let the package span both folders.
__path__ = _pkgutil.extend_path(__path__, __name__)

try:  # libtorch's shared libraries come from the torch package; load them before the extension.
    import torch as _torch  # noqa: F401
except ImportError:  # pragma: no cover - core-only installs
    _torch = None

from . import _crossicl
from ._crossicl import *  # noqa: F401,F403
from ._crossicl import InvalidArgument, LoadError  # noqa: F401

__version__ = "0.1.0"

from . import paper  # noqa: E402,F401
from . import models  # noqa: E402,F401
from . import experiment  # noqa: E402,F401
from . import analysis  # noqa: E402,F401
from .experiment import Experiment  # noqa: E402,F401
