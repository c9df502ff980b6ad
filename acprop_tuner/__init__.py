"""acprop-tuner: find a safe, good initial learning rate for ACProp (optax.contrib.acprop).

Two parts: :mod:`acprop_tuner.cli`, the ``acprop-tuner`` command line (the top layer: it
starts the service, workers and the demo), and :mod:`acprop_tuner.client`, the Python client
of the user API (a leaf: httpx and the standard library only).
"""

from importlib import metadata

try:
    __version__ = metadata.version("acprop-tuner")
except metadata.PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
__all__ = ["__version__"]
