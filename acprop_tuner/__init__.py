"""acprop-tuner: find a safe, good initial learning rate for ACProp (optax.contrib.acprop).

Two parts: :mod:`acprop_tuner.cli`, the ``acprop-tuner`` command line (the top layer: it
starts the service, workers and the demo), and :mod:`acprop_tuner.client`, the Python client
of the user API (a leaf: httpx and the standard library only).

Two names for notebooks and scripts, imported on first use (``import acprop_tuner`` stays
light): :func:`tune`, one tuning job on this machine
(:func:`acprop_tuner.cli.local_tune.tune`), and :func:`task_from_functions`, a task from a
model's ``init``/``apply`` functions and arrays (:mod:`optimizer.tasks.adapter`).
"""

import importlib
from importlib import metadata
from typing import Any

try:
    __version__ = metadata.version("acprop-tuner")
except metadata.PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
__all__ = ["__version__", "task_from_functions", "tune"]

# Resolved by name on first use: the client (a leaf, which imports this package for its
# version) must not pull the command line, the service or JAX in with it.
_LAZY = {
    "tune": "acprop_tuner.cli.local_tune",
    "task_from_functions": "optimizer.tasks.adapter",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'acprop_tuner' has no attribute {name!r}")
