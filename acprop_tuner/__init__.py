"""acprop-tuner: find a safe, good initial learning rate for ACProp (optax.contrib.acprop)."""

__version__ = "0.1.0"
__all__ = ["__version__"]
