"""The library versions that decide a trained result, and what a job's trials say about them.

A learning rate tuned under one optax ``acprop`` is not the same under another (an open optax
pull request changes the centred second moment to use the updated mean, which scales every
step by ``b1``), and jax/jaxlib decide the numerics. Workers send these versions with each
completion (``installed``); the recommendation lists the sets its trials were trained with
(``summarise``) and warns when they differ. jax-free: versions are read from package metadata.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata

__all__ = [
    "TRAINING_PACKAGES",
    "VERSION_PATTERN",
    "TrainedWith",
    "VersionSet",
    "installed",
    "summarise",
]

#: The packages whose versions travel with every result.
TRAINING_PACKAGES = ("jax", "jaxlib", "optax")
#: What a version string may look like on the wire (PEP 440 and local build tags, bounded).
VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z.+!_-]{0,63}$"
_VERSION = re.compile(VERSION_PATTERN)

#: One trial's versions: package -> version (every name of TRAINING_PACKAGES).
VersionSet = Mapping[str, str]


@dataclass(frozen=True)
class TrainedWith:
    """A set of versions some of a job's trials were trained with (None: not reported)."""

    jax: str | None
    jaxlib: str | None
    optax: str | None
    n_trials: int


def installed() -> dict[str, str]:
    """The versions of TRAINING_PACKAGES in this environment (``unknown`` for one missing)."""
    out = {}
    for name in TRAINING_PACKAGES:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "unknown"
        out[name] = version if _VERSION.match(version) else "unknown"
    return out


def summarise(sets: Iterable[VersionSet | None]) -> tuple[tuple[TrainedWith, ...], tuple[str, ...]]:
    """The distinct version sets of a job's trials, most trials first, each with its count
    (a trial without versions is counted under None values), and the warnings for a user:
    one when the trials were trained with more than one set."""
    counts: Counter[tuple[str | None, ...]] = Counter()
    for versions in sets:
        counts[tuple((versions or {}).get(name) for name in TRAINING_PACKAGES)] += 1
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], [v or "" for v in kv[0]]))
    listed = tuple(TrainedWith(key[0], key[1], key[2], n_trials=n) for key, n in ordered)
    known = [key for key, _ in ordered if all(v is not None for v in key)]
    warnings = []
    if len(known) > 1:
        differ = [
            name for i, name in enumerate(TRAINING_PACKAGES) if len({key[i] for key in known}) > 1
        ]
        described = "; ".join(
            ", ".join(f"{name} {key[TRAINING_PACKAGES.index(name)]}" for name in differ)
            + f" ({_trials(counts[key])})"
            for key in known
        )
        warnings.append(
            f"the trials were trained with different versions of {', '.join(differ)}: "
            f"{described}. A learning rate tuned under one optax acprop may not carry over to "
            "another; pin one version on every worker and run the job again for a clean answer"
        )
    if len(known) < len(ordered):
        warnings.append(
            f"{_trials(sum(n for key, n in ordered if key not in known))} came from workers "
            "that did not report their jax/jaxlib/optax versions"
        )
    return listed, tuple(warnings)


def _trials(n: int) -> str:
    return f"{n} trial" if n == 1 else f"{n} trials"
