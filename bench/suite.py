"""The development suite: 26 tasks the recommendation's rules are chosen and judged on, with
their references computed once and stored, and a fixed split.

- **tuning** tasks: rules may be chosen on them;
- **validation** tasks: only reported, never used to choose a rule.

The tasks span model families (linear, MLP, CNN, transformer, autoencoder, non-neural
objectives), losses (cross-entropy, logistic, MSE, Huber), depth and width, input and target
scaling, batch sizes and gradient noise; the six built-in tasks are part of it. All data is
offline (optimizer/tasks/builtin/supervised.py, objectives.py).

Each task's reference (``python -m bench.suite reference [NAME ...]``, stored in
``bench/suite_references.json``): a 48-point log grid of learning rates over [1e-5, 1] x 3
seeds at ``eps_root`` 1e-8 and at optax's 1e-16, the grid's best learning rate at 1e-8 (the
lowest mean validation loss where no seed diverged), and that best trained on the 5 fresh
evaluation seeds every answer is scored on.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

REFERENCES = Path(__file__).resolve().parent / "suite_references.json"
GRID_POINTS, GRID_SEEDS = 48, (0, 1, 2)
LR_LOW, LR_HIGH = 1e-5, 1.0
EPS_ROOT_LINES = (1e-8, 1e-16)
EVAL_SEEDS = (100, 101, 102, 103, 104)
SPLITS = ("tuning", "validation")


@dataclass(frozen=True)
class SuiteTask:
    name: str
    split: str
    what: str
    build: Callable[[], Any]


def _builtin(name: str, **options: Any) -> Callable[[], Any]:
    def build() -> Any:
        from optimizer.tasks import load_task

        return load_task(name, options)

    return build


def _supervised(name: str, **options: Any) -> Callable[[], Any]:
    def build() -> Any:
        from optimizer.tasks.builtin.supervised import make_supervised

        return make_supervised(name, **options)

    return build


def _quadratic(name: str, **options: Any) -> Callable[[], Any]:
    def build() -> Any:
        from optimizer.tasks.builtin.objectives import make_noisy_quadratic

        return make_noisy_quadratic(name, **options)

    return build


def _task(name: str, split: str, what: str, build: Callable[[], Any]) -> SuiteTask:
    return SuiteTask(name, split, what, build)


T, V = "tuning", "validation"
SUITE: tuple[SuiteTask, ...] = (
    # -- tuning --------------------------------------------------------------------------
    _task("rosenbrock", T, "2-D Rosenbrock from (0, 0) (built-in)", _builtin("rosenbrock")),
    _task("mlp-digits", T, "ReLU MLP 64-128 on digits (built-in)", _builtin("mlp-digits")),
    _task(
        "logreg-breast-cancer", T, "logistic regression, 30 features (built-in)",
        _builtin("logreg-breast-cancer"),
    ),
    _task("char-lm", T, "tiny causal transformer on text (built-in)", _builtin("char-lm")),
    _task(
        "logreg-iris", T, "linear softmax on iris, batch 16",
        _supervised("logreg-iris", dataset="iris", model="linear", batch_size=16),
    ),
    _task(
        "linreg-diabetes-raw", T, "linear MSE regression, targets in raw units (sd 77)",
        _supervised("linreg-diabetes-raw", dataset="diabetes", model="linear", loss="mse",
                    target_scale=77.0, batch_size=32),
    ),
    _task(
        "mlp-moons", T, "tanh MLP 32-32, logistic loss, 2-D moons, batch 32",
        _supervised("mlp-moons", dataset="moons", widths=(32, 32), activation="tanh",
                    loss="logistic", batch_size=32),
    ),
    _task(
        "autoencoder-digits", T, "MLP autoencoder 32-8-32 on digits, MSE",
        _supervised("autoencoder-digits", dataset="digits", model="autoencoder",
                    widths=(32, 8, 32), loss="mse"),
    ),
    _task(
        "mlp-digits-deep", T, "tanh MLP, six layers of 32, digits",
        _supervised("mlp-digits-deep", dataset="digits", widths=(32,) * 6, activation="tanh"),
    ),
    _task(
        "mlp-synthetic-regression", T, "ReLU MLP 64, MSE, 20 features, batch 32",
        _supervised("mlp-synthetic-regression", dataset="synthetic-regression", widths=(64,),
                    loss="mse", batch_size=32),
    ),
    _task(
        "quadratic-illconditioned", T, "noisy quadratic, 32 dims, condition 1e4",
        _quadratic("quadratic-illconditioned", dim=32, condition=1e4, noise=0.1),
    ),
    _task(
        "mlp-wine-unscaled", T, "ReLU MLP 32 on wine's raw features (up to ~1,700)",
        _supervised("mlp-wine-unscaled", dataset="wine", widths=(32,), standardise_inputs=False,
                    batch_size=32),
    ),
    _task(
        "mlp-digits-label-noise", T, "ReLU MLP 64, 30 % random training labels, batch 32",
        _supervised("mlp-digits-label-noise", dataset="digits", widths=(64,), label_noise=0.3,
                    batch_size=32),
    ),
    # -- validation ----------------------------------------------------------------------
    _task("cnn-digits", V, "3x3 conv net on digits (built-in)", _builtin("cnn-digits")),
    _task("mlp-mnist1d", V, "ReLU MLP 128-128 on MNIST-1D (built-in)", _builtin("mlp-mnist1d")),
    _task(
        "logreg-synthetic-classification", V, "linear softmax, 40 features, 4 classes",
        _supervised("logreg-synthetic-classification", dataset="synthetic-classification",
                    model="linear"),
    ),
    _task(
        "mlp-diabetes-huber", V, "ReLU MLP 64-64, Huber loss, batch 32",
        _supervised("mlp-diabetes-huber", dataset="diabetes", widths=(64, 64), loss="huber",
                    batch_size=32),
    ),
    _task(
        "mlp-circles-gelu", V, "GELU MLP 64-64, logistic loss, circles, batch 16",
        _supervised("mlp-circles-gelu", dataset="circles", widths=(64, 64), activation="gelu",
                    loss="logistic", batch_size=16),
    ),
    _task(
        "autoencoder-mnist1d", V, "MLP autoencoder 64-16-64 on MNIST-1D, MSE",
        _supervised("autoencoder-mnist1d", dataset="mnist1d", model="autoencoder",
                    widths=(64, 16, 64), loss="mse"),
    ),
    _task(
        "mlp-digits-wide", V, "ReLU MLP, one layer of 512, digits, batch 128",
        _supervised("mlp-digits-wide", dataset="digits", widths=(512,), batch_size=128),
    ),
    _task(
        "mlp-digits-batch8", V, "ReLU MLP 64-64, batch 8 (noisy gradients)",
        _supervised("mlp-digits-batch8", dataset="digits", widths=(64, 64), batch_size=8),
    ),
    _task(
        "char-lm-small", V, "causal transformer, width 16, 2 heads, windows of 16",
        _builtin("char-lm", d_model=16, n_heads=2, seq_len=16, batch_size=8),
    ),
    _task("rosenbrock-steep", V, "Rosenbrock with b = 1000", _builtin("rosenbrock", b=1000.0)),
    _task(
        "quadratic-noisy", V, "noisy quadratic, 64 dims, condition 1e2, noise 1",
        _quadratic("quadratic-noisy", dim=64, condition=1e2, noise=1.0),
    ),
    _task(
        "linreg-synthetic-scaled", V, "linear MSE, inputs x10, targets x100",
        _supervised("linreg-synthetic-scaled", dataset="synthetic-regression", model="linear",
                    loss="mse", input_scale=10.0, target_scale=100.0, batch_size=32),
    ),
    _task(
        "mlp-iris-deep", V, "ReLU MLP, four layers of 16, iris, batch 8",
        _supervised("mlp-iris-deep", dataset="iris", widths=(16,) * 4, batch_size=8),
    ),
)  # fmt: skip

BY_NAME = {t.name: t for t in SUITE}


def suite_tasks(split: str | None = None, names: Sequence[str] | None = None) -> list[SuiteTask]:
    """The suite's tasks, of one split and/or with these names, in suite order."""
    unknown = sorted(set(names or ()) - set(BY_NAME))
    if unknown:
        raise KeyError(f"no suite task {unknown[0]!r}; known: {', '.join(BY_NAME)}")
    return [
        t for t in SUITE if (split is None or t.split == split) and (not names or t.name in names)
    ]


@cache
def _stored() -> dict[str, Any]:
    return json.loads(REFERENCES.read_text()) if REFERENCES.exists() else {}


def reference(name: str) -> dict[str, Any]:
    """The stored reference of task ``name``; KeyError when it was never computed."""
    stored = _stored()
    if name not in stored:
        raise KeyError(f"no stored reference for {name!r}: python -m bench.suite reference {name}")
    return dict(stored[name])


def _safe_row(row: dict[str, Any]) -> bool:
    """A grid row the reference's best may be: no seed diverged, every loss finite."""
    return not any(row["diverged"]) and None not in row["losses"]


def resolution(name: str) -> dict[str, Any]:
    """How finely task ``name`` must be tuned, read off its stored reference (``eps_root``
    1e-8): the regret (%, on the grid seeds' mean) one grid step (a factor
    ``GRID_STEP``) below and above the grid's best, the evaluation seeds' coefficient of
    variation at the best (%), and each grid seed's own best learning rate. A task whose
    one-step regrets are far above a regret target, or whose seeds disagree on the best rate,
    cannot be held to that target by a job that places the rate from 2 seeds per trial."""
    ref = reference(name)
    rows = ref["grid"][f"{EPS_ROOT_LINES[0]:g}"]
    means = [float(np.mean(r["losses"])) if _safe_row(r) else math.inf for r in rows]
    best = int(np.argmin(means))
    step = [
        None if not 0 <= j < len(rows) else 100.0 * (means[j] - means[best]) / abs(means[best])
        for j in (best - 1, best + 1)
    ]
    per_seed = []
    for s in range(len(GRID_SEEDS)):
        seed_losses = [
            r["losses"][s] if not r["diverged"][s] and r["losses"][s] is not None else math.inf
            for r in rows
        ]
        per_seed.append(rows[int(np.argmin(seed_losses))]["learning_rate"])
    evaluation = np.array([v for v in ref["eval_losses"] if v is not None])
    cv = float(100.0 * evaluation.std(ddof=1) / abs(evaluation.mean()))
    return {"step_regret_pct": step, "eval_cv_pct": cv, "per_seed_best_lr": per_seed}


#: The grid's step factor in the learning rate (48 log-spaced points over five decades).
GRID_STEP = (LR_HIGH / LR_LOW) ** (1.0 / (GRID_POINTS - 1))


def grid_learning_rates() -> list[float]:
    return [float(v) for v in np.geomspace(LR_LOW, LR_HIGH, GRID_POINTS)]


def _finite(values: Any) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in values]


def compute_reference(task: Any) -> dict[str, Any]:
    """The task's grid at both ``eps_root`` lines (one population), its best learning rate
    at 1e-8, and that best on the evaluation seeds."""
    from optimizer.config import ACPropConfig
    from optimizer.population import PopulationTrainer

    steps = task.meta.default_steps
    lrs = grid_learning_rates()
    configs = [ACPropConfig(learning_rate=lr, eps_root=er) for er in EPS_ROOT_LINES for lr in lrs]
    started = time.perf_counter()
    trainer = PopulationTrainer(
        task, n_configs=len(configs), n_seeds=len(GRID_SEEDS), chunk_steps=steps
    )
    final = trainer.train(configs, GRID_SEEDS, steps)
    grid: dict[str, list[dict[str, Any]]] = {}
    for k, config in enumerate(configs):
        grid.setdefault(f"{config.eps_root:g}", []).append(
            {
                "learning_rate": config.learning_rate,
                "losses": _finite(final.validation_loss[k]),
                "diverged": [bool(d >= 0) for d in final.diverged_at[k]],
            }
        )
    safe = [row for row in grid[f"{EPS_ROOT_LINES[0]:g}"] if _safe_row(row)]
    best = min(safe, key=lambda row: float(np.mean(row["losses"])))
    evaluation = PopulationTrainer(task, n_configs=1, n_seeds=len(EVAL_SEEDS), chunk_steps=steps)
    eval_final = evaluation.train(
        [ACPropConfig(learning_rate=best["learning_rate"], eps_root=EPS_ROOT_LINES[0])],
        EVAL_SEEDS,
        steps,
    )
    return {
        "steps": steps,
        "n_params": task.meta.n_params,
        "grid": grid,
        "best_learning_rate": best["learning_rate"],
        "eval_losses": _finite(eval_final.validation_loss[0]),
        "eval_diverged": [bool(d >= 0) for d in eval_final.diverged_at[0]],
        "wall_s": round(time.perf_counter() - started, 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ref = sub.add_parser("reference", help="compute and store the references")
    ref.add_argument("names", nargs="*", help="tasks (default: every one without a reference)")
    ref.add_argument("--again", action="store_true", help="recompute stored ones too")
    sub.add_parser("list", help="the tasks, their split and their reference's best lr")
    sub.add_parser("resolution", help="per task: regret one grid step off the best, seed spread")
    args = parser.parse_args(argv)
    stored = dict(_stored())
    if args.command == "resolution":
        pct = lambda v: (  # noqa: E731
            "   -   " if v is None else "  div  " if math.isinf(v) else f"{v:+7.1f}"
        )
        print(f"{'split':<10} {'task':<32} step down / up (%)  eval CV (%)  grid seeds' best lr")
        for t in SUITE:
            r = resolution(t.name)
            down, up = r["step_regret_pct"]
            lrs = ", ".join(f"{v:.2g}" for v in r["per_seed_best_lr"])
            print(
                f"{t.split:<10} {t.name:<32} {pct(down)} / {pct(up)}  {r['eval_cv_pct']:11.1f}  {lrs}"
            )
        return 0
    if args.command == "list":
        for t in SUITE:
            best = stored.get(t.name, {}).get("best_learning_rate")
            print(f"{t.split:<10} {t.name:<32} {best if best else '-':<10} {t.what}")
        return 0
    wanted = suite_tasks(names=args.names or None)
    for t in wanted:
        if t.name in stored and not args.again and not args.names:
            continue
        print(f"reference {t.name} ...", file=sys.stderr, flush=True)
        stored[t.name] = compute_reference(t.build())
        REFERENCES.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
        print(
            f"  best lr {stored[t.name]['best_learning_rate']:.3g}, "
            f"{stored[t.name]['wall_s']:.0f} s",
            file=sys.stderr,
        )
    _stored.cache_clear()
    return 0


if __name__ == "__main__":
    sys.exit(main())
