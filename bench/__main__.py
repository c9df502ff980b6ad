"""``python -m bench [NAME ...]`` (``make bench``): run benchmarks, write their results, and
rewrite ``docs/benchmarks.md`` from every results file present.

Each benchmark is a module ``bench.<name>`` listed in :data:`bench.BENCHMARKS` with
``run() -> dict`` (its figures, including a top-level ``summary`` object) and
``markdown(result) -> str`` (its section of the page). The runner adds the machine's
description to each result and writes ``bench/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from bench import BENCHMARKS, OPTIONAL

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PAGE = ROOT / "docs" / "benchmarks.md"


def machine() -> dict[str, Any]:
    """What the figures were measured on; the machine may be shared, so its load too."""
    import jax

    cpu_model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model,
        "load_average_1m_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "jax_version": jax.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": package_versions(),
    }


#: The installed packages whose versions decide a benchmark's figures (the lock pins them).
MEASURED_PACKAGES = (
    "jax", "jaxlib", "optax", "optuna", "numpy", "scipy", "sqlalchemy", "psycopg", "fastapi",
    "starlette", "pydantic", "uvicorn", "httpx",
)  # fmt: skip


def package_versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in MEASURED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _versions(m: dict[str, Any]) -> str:
    versions = m.get("versions")
    if not versions:
        return "package versions not recorded (measured before the lock)"
    return "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v)


def _load(m: dict[str, Any]) -> str:
    start, end = m.get("load_average_1m_at_start"), m.get("load_average_1m_at_end")
    fmt = lambda v: "?" if v is None else f"{v:.1f}"  # noqa: E731
    return f"{fmt(start)} at start, {fmt(end)} at end"


def write_page() -> None:
    sections = []
    for path in sorted(RESULTS.glob("*.json")):
        result = json.loads(path.read_text())
        try:
            module = importlib.import_module(f"bench.{path.stem}")
            section = module.markdown(result)
        except (ImportError, AttributeError):
            section = (
                f"## {path.stem}\n\n```json\n{json.dumps(result.get('summary'), indent=2)}\n```\n"
            )
        m = result.get("machine", {})
        section += (
            f"\n_Measured {result.get('ran_at', '?')} on {m.get('cpu_count')} CPUs "
            f"({m.get('cpu_model')}), JAX {m.get('jax_version')} on {m.get('jax_backend')}, "
            f"1-minute load average {_load(m)} (the machine may be shared); {_versions(m)}. "
            f"Raw figures: `bench/results/{path.name}`._\n"
        )
        cpus, load = m.get("cpu_count") or 0, m.get("load_average_1m_at_start") or 0
        if cpus and load > cpus:
            section += (
                "\n_The machine was oversubscribed during this run (load above its CPU count): "
                "absolute figures are depressed and noisy. Rerun `make bench` on an idle "
                "machine for clean numbers._\n"
            )
        sections.append(section)
    PAGE.write_text(
        "# Benchmarks\n\n"
        "Written by `make bench` (`python -m bench`) from `bench/results/*.json`; each "
        "benchmark compares the alternatives in the same run on the same machine.\n\n"
        + "\n".join(sections)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default: {' '.join(BENCHMARKS)})"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(BENCHMARKS) - set(OPTIONAL))
    if unknown:
        known = ", ".join((*BENCHMARKS, *OPTIONAL))
        parser.error(f"unknown benchmark {unknown[0]!r}; known: {known}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.names or BENCHMARKS:
        print(f"running bench.{name} ...", file=sys.stderr, flush=True)
        info = machine()
        result = importlib.import_module(f"bench.{name}").run()
        info["load_average_1m_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        result["machine"] = info
        result["ran_at"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({name: result["summary"]}, indent=2))
    write_page()
    return 0


if __name__ == "__main__":
    sys.exit(main())
