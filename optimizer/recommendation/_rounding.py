"""How the answer is written: two significant digits for the learning rate (three for the
other tuned settings, the horizon ``1 - b`` for the betas), never rounded up across a limit,
and the line of optax a user pastes."""

from __future__ import annotations

import math

from optimizer.acprop import HYPERPARAMETERS

__all__ = ["optax_line", "round_params", "round_sig"]


def round_sig(value: float, digits: int, *, down: bool = False) -> float:
    exponent = math.floor(math.log10(abs(value))) - digits + 1
    scaled = value / 10.0**exponent
    # Down: a hair below a whole number (9.999999999999998) is that number, not one less.
    scaled = math.floor(scaled + 1e-9) if down else round(scaled)
    return float(f"{scaled * 10.0**exponent:.{digits}g}")


def round_params(params: dict[str, float], tuned: tuple[str, ...]) -> dict[str, float]:
    out = dict(params)
    for name in tuned[1:]:
        v = params[name]
        if name in ("b1", "b2"):  # round the horizon 1 - b, not b itself
            out[name] = float(f"{1.0 - round_sig(1.0 - v, 3):.12g}")
        elif v != 0.0:
            out[name] = round_sig(v, 3)
    return out


def optax_line(p: dict[str, float]) -> str:
    args = [f"{n}={p[n]!r}" for n in HYPERPARAMETERS if n != "weight_decay" or p[n] != 0.0]
    return f"optax.contrib.acprop({', '.join(args)})"
