"""``acprop-tuner demo`` (interim): a learning-rate sweep of ACProp on a built-in task.

Trains a log-spaced grid of learning rates, with optax's default ``eps_root=1e-16`` and with
``eps_root=1e-8``, over a few seeds, as one population in one compiled program, and prints
learning rate against final and validation loss and divergence. It shows the problem the
tuner exists for: with the default ``eps_root`` ACProp blows up within the first steps at
learning rates that train fine with ``eps_root=1e-8``.

(This becomes the full service demo, server and workers on the embedded database, once those
exist; the sweep itself lives in :mod:`optimizer.sweep`.)
"""

from __future__ import annotations

import argparse
import time

DEFAULT_STEPS = 300
SEEDS = (0, 1, 2)
EPS_ROOTS = (1e-16, 1e-8)


def main(args: argparse.Namespace) -> int:
    from optimizer.sweep import format_table, grid, log_spaced, run_sweep
    from optimizer.tasks import load_task

    task_name = getattr(args, "task", None) or "mlp-digits"
    n_lrs = max(2, (getattr(args, "trials", None) or 16) // len(EPS_ROOTS))
    task = load_task(task_name, {})
    steps = min(task.meta.default_steps, DEFAULT_STEPS)
    configs = grid(log_spaced(1e-4, 1e-1, n_lrs), EPS_ROOTS)
    print(
        f"ACProp learning-rate sweep on {task_name} ({task.meta.n_params:,} parameters): "
        f"{len(configs)} configurations x {len(SEEDS)} seeds, {steps} steps, "
        "trained as one population"
    )
    started = time.perf_counter()
    rows, _, trainer = run_sweep(task, configs, SEEDS, steps)
    wall = time.perf_counter() - started
    print(format_table(rows))
    print(
        f"\n{len(configs) * len(SEEDS)} runs in {wall:.1f} s "
        f"(compile {trainer.compile_s:.1f} s). Losses are medians over seeds; '*' marks the "
        "best validation loss per eps_root among configurations where no seed diverged."
    )
    safe = [r for r in rows if r.n_diverged == 0 and r.validation_loss is not None]
    if safe:
        best = min(safe, key=lambda r: r.validation_loss or float("inf"))
        print(f"Best of this sweep: {best.config.optax_line()}")
    return 0
