"""Recommendation quality on the development suite (bench/suite.py): our answer against what a
practitioner does instead, per task and per split (tuning: rules may be chosen there;
validation: only reported).

For every suite task, at its default steps and ACProp's other defaults:

- **reference** (stored, ``python -m bench.suite reference``): the best learning rate of a
  48-point log grid over [1e-5, 1] x 3 seeds at ``eps_root`` 1e-8, trained on the 5 fresh
  evaluation seeds every answer is scored on.
- **(a) ours**: a job as the service runs it, spending a quarter of the grid's trial-seed-steps:
  18 trials x the service's 2 seeds over the default space (learning rate log [1e-5, 1],
  ``eps_root`` log [1e-16, 1e-6]): the warm-start sweep, the job's TPE on the study mirror in
  populations of 4 (running trials pending), then the confirmation stage (its candidates on the
  job's fresh seeds, optimizer/tuning/confirmation.py), then the recommendation. The policy is
  the optimizer's own (optimizer/tuning), the one the service runs.
- **(b) plain TPE**: the best trial of an Optuna TPE study over the same space with the same
  budget, the way an Optuna user runs it (36 trials of one seed, a diverged one NaN).
- **(c) range test**: fastai's "valley" from an LR range test (100 steps, ``eps_root`` 1e-8).
- **(d) paper**: learning rate 1e-3 with ``eps_root`` 1e-8. **(e) optax defaults**: 1e-3 with
  optax's ``eps_root`` 1e-16.
- **(f) Prodigy, (g) schedule-free AdamW (at its averaged parameters), (h) D-Adaptation
  AdamW**, at their defaults: the learning-rate-free optimizers a user might pick instead of
  tuning, and **(i) Adam at 1e-3**, the optimizer a user reaches for first
  (optimizer/references.py, the references a job trains beside its trials), on the same
  evaluation seeds.

(a) and (b) run once per sampler seed (``SAMPLER_SEEDS``); every answer is trained on the same
evaluation seeds (common random numbers) and scored by the regret of its mean validation loss,
``100 * (loss - reference) / |reference|``; a diverged seed counts with the validation loss of
its last good parameters. Ours also reports, per run, the risk it gave (the upper bound on the
chance that a fresh seed diverges) against the rate its evaluation seeds showed.
``BENCH_RECOMMENDATION_TASKS`` (comma-separated) or ``BENCH_RECOMMENDATION_SPLIT`` restricts
the tasks for a quick run; ``BENCH_RECOMMENDATION_RUNS`` the sampler seeds per task.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import optuna

from bench.suite import (
    EPS_ROOT_LINES,
    EVAL_SEEDS,
    GRID_POINTS,
    GRID_SEEDS,
    LR_HIGH,
    LR_LOW,
    SPLITS,
    SuiteTask,
    grid_learning_rates,
    reference,
    suite_tasks,
)
from optimizer.config import ACPropConfig
from optimizer.job_spec import JobSpec
from optimizer.lr_range_finder import run_range_test
from optimizer.population import FinalResult, PopulationTrainer
from optimizer.recommendation import NotEnoughEvidence, recommend
from optimizer.references import train_reference
from optimizer.tuning.confirmation import candidates, confirmation_seeds, confirmation_trials
from optimizer.tuning.mirror import StudyMirror, TrialSnapshot
from optimizer.tuning.outcome import TrialResult

NAME = "recommendation"
TITLE = "Recommendation quality on the development suite: regret against a 48-point grid"
EPS_ROOT_LOW, EPS_ROOT_HIGH = 1e-16, 1e-6
SAFE_EPS_ROOT = EPS_ROOT_LINES[0]
JOB_SEEDS, BATCH = (0, 1), 4
BUDGET_TRIAL_SEEDS = GRID_POINTS * len(GRID_SEEDS) // 4
JOB_TRIALS = BUDGET_TRIAL_SEEDS // len(JOB_SEEDS)
PLAIN_SEED = (20,)
#: Our jobs and plain TPE run once per sampler seed. 10-19 chose the confirmation stage's
#: design on the tuning split; on the validation split they chose nothing.
SAMPLER_SEEDS = tuple(range(10, 20))
#: Runs per task by default: two sampler seeds keep the whole suite near an hour on 2 cores
#: (``BENCH_RECOMMENDATION_RUNS`` up to ``len(SAMPLER_SEEDS)`` for more).
DEFAULT_RUNS = 2
ACPROP_FIXED = ("range_test", "paper", "optax_defaults")
REFERENCE_OPTIMIZERS = ("prodigy", "schedule_free_adamw", "dadapt_adamw", "adam")
METHODS = ("ours", "plain_tpe", *ACPROP_FIXED, *REFERENCE_OPTIMIZERS)
LABELS = {
    "plain_tpe": "plain TPE",
    "range_test": "the range test",
    "paper": "the paper's setting",
    "optax_defaults": "optax's defaults",
    "prodigy": "Prodigy",
    "adam": "Adam 1e-3",
    "schedule_free_adamw": "schedule-free AdamW",
    "dadapt_adamw": "D-Adaptation AdamW",
}

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _train(task: Any, configs: Sequence[ACPropConfig], seeds: Sequence[int]) -> FinalResult:
    steps = task.meta.default_steps
    trainer = PopulationTrainer(task, n_configs=len(configs), n_seeds=len(seeds), chunk_steps=steps)
    return trainer.train(configs, seeds, steps)


def _seed_results(final: FinalResult, k: int) -> tuple[list[float | None], list[bool]]:
    """Lane ``k``'s validation loss per seed and which seeds diverged (plain TPE's view)."""
    losses = [float(v) if math.isfinite(v) else None for v in final.validation_loss[k]]
    return losses, [bool(d >= 0) for d in final.diverged_at[k]]


def _judge(final: FinalResult, k: int) -> TrialResult:
    """Lane ``k``'s results as a worker reports them, judged as the service judges them."""

    def finite(values: np.ndarray) -> list[float | None]:
        return [float(v) if math.isfinite(v) else None for v in values]

    return TrialResult.judge(
        final_losses=finite(final.final_loss[k]),
        validation_losses=finite(final.validation_loss[k]),
        last_finite_losses=finite(final.last_finite_loss[k]),
        diverged_at_step=[int(d) if d >= 0 else None for d in final.diverged_at[k]],
        steps=final.steps,
    )


def _job_spec(task: Any) -> JobSpec:
    """The job the service would run for a user asking with our budget (default space)."""
    return JobSpec.for_task(
        task.meta.name,
        n_trials=JOB_TRIALS,
        steps=task.meta.default_steps,
        seeds=len(JOB_SEEDS),
        sampler="tpe",
    )


def _our_job(
    task: Any, seed: int, sweep: list[dict[str, float]] | None = None
) -> tuple[ACPropConfig | None, dict[str, Any]]:
    """A job as the service runs it (the module docstring); ``sweep`` replaces the warm-start
    sweep (``bench/warm_start.py`` compares designs)."""
    spec = _job_spec(task)
    mirror = StudyMirror.for_job(spec, seed=seed)
    if sweep is None:
        sweep = [dict(c) for c in spec.warm_start_configs]
    mirror.sync([TrialSnapshot(i, "waiting", c) for i, c in enumerate(sweep)])
    share = JOB_TRIALS - confirmation_trials(JOB_TRIALS)
    records: list[Any] = []
    population: list[tuple[int, dict[str, float]]] = list(enumerate(sweep))
    seeds: Sequence[int] = JOB_SEEDS
    confirming, n_confirmed = share < JOB_TRIALS, 0
    while population:
        final = _train(task, [ACPropConfig(**c) for _, c in population], seeds)
        done = []
        for k, (number, params) in enumerate(population):
            o = _judge(final, k)
            records.append(o.record(number, params, confirmation=seeds != JOB_SEEDS))
            done.append(
                TrialSnapshot(
                    number, o.state, params, o.value, o.last_finite_loss, o.diverged_at_step
                )
            )
        mirror.sync(done)
        population, seeds = [], JOB_SEEDS
        n = len(records)
        if confirming and n >= share:
            # The confirmation stage, once the sampler's trials have all finished; the slots
            # its candidates leave free are sampled next.
            confirming = False
            confirm = candidates(records, JOB_TRIALS - n, lr_high=LR_HIGH)
            if confirm:
                population = [(n + i, c) for i, c in enumerate(confirm)]
                mirror.sync([TrialSnapshot(number, "waiting", c) for number, c in population])
                seeds, n_confirmed = confirmation_seeds(len(JOB_SEEDS)), len(confirm)
                continue
        size = min(BATCH, (share if confirming else JOB_TRIALS) - n)
        for asked in mirror.ask(max(0, size)):
            number = n + len(population)
            mirror.bind(asked, TrialSnapshot(number, "running", asked.config))
            population.append((number, asked.config))
    info: dict[str, Any] = {
        "trials": len(records),
        "warm_start_trials": len(sweep),
        "confirmation_trials": n_confirmed,
        "seeds_per_trial": len(JOB_SEEDS),
        "trial_seeds_diverged": sum(sum(o.diverged) for o in records),
    }
    try:
        rec = recommend(records, status="final")
    except NotEnoughEvidence as exc:
        info["not_enough_evidence"] = exc.reason
        return None, info
    info["recommendation"] = rec.to_dict()
    return ACPropConfig(**rec.config), info


def _suggest(trial: optuna.Trial) -> ACPropConfig:
    return ACPropConfig(
        learning_rate=trial.suggest_float("learning_rate", LR_LOW, LR_HIGH, log=True),
        eps_root=trial.suggest_float("eps_root", EPS_ROOT_LOW, EPS_ROOT_HIGH, log=True),
    )


def _plain_tpe(task: Any, seed: int) -> tuple[ACPropConfig | None, dict[str, Any]]:
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    for _ in range(BUDGET_TRIAL_SEEDS // BATCH):
        trials = [study.ask() for _ in range(BATCH)]
        configs = [_suggest(t) for t in trials]
        final = _train(task, configs, PLAIN_SEED)
        for k, trial in enumerate(trials):
            losses, diverged = _seed_results(final, k)
            ok = not any(diverged) and losses[0] is not None
            study.tell(trial, losses[0] if ok else math.nan)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        return None, {"trials": len(study.trials), "completed": 0}
    best = study.best_trial.params
    config = ACPropConfig(learning_rate=best["learning_rate"], eps_root=best["eps_root"])
    return config, {"trials": len(study.trials), "completed": len(completed)}


def _grid(task: Any) -> tuple[ACPropConfig, list[dict[str, Any]]]:
    """A fresh 48-point grid at eps_root 1e-8 and its best (bench/warm_start.py's reference
    for the built-in tasks)."""
    configs = [
        ACPropConfig(learning_rate=lr, eps_root=SAFE_EPS_ROOT) for lr in grid_learning_rates()
    ]
    final = _train(task, configs, GRID_SEEDS)
    rows, best = [], (math.inf, configs[0])
    for k, config in enumerate(configs):
        losses, diverged = _seed_results(final, k)
        mean = float(np.mean(losses)) if None not in losses else None  # type: ignore[arg-type]
        rows.append(
            {
                "learning_rate": config.learning_rate,
                "mean_validation_loss": mean,
                "diverged_seeds": sum(diverged),
            }
        )
        if mean is not None and not any(diverged) and mean < best[0]:
            best = (mean, config)
    return best[1], rows


def _score(final: FinalResult, k: int, config: ACPropConfig) -> dict[str, Any]:
    losses = final.validation_loss[k]
    return {
        "learning_rate": config.learning_rate,
        "eps_root": config.eps_root,
        "mean_validation_loss": float(np.mean(losses)) if np.isfinite(losses).all() else None,
        "diverged_seeds": int((final.diverged_at[k] >= 0).sum()),
    }


def _regret(loss: float | None, ref: float | None) -> float | None:
    return None if loss is None or ref is None else 100.0 * (loss - ref) / abs(ref)


def _runs_summary(per_run: list[dict[str, Any]]) -> dict[str, Any]:
    regrets = [r["regret_pct"] for r in per_run]
    complete = bool(regrets) and None not in regrets
    return {
        # A run without an answer has no regret; the method's mean and worst regret are then
        # undefined rather than flattered.
        "regret_pct": float(np.mean(regrets)) if complete else None,
        "median_regret_pct": float(np.median(regrets)) if complete else None,
        "worst_regret_pct": max(regrets) if complete else None,
        "runs_without_regret": sum(r is None for r in regrets),
        "diverged_seeds": sum(r["diverged_seeds"] for r in per_run),
        "evaluated_seeds": len(EVAL_SEEDS)
        * sum(r["mean_validation_loss"] is not None or r["diverged_seeds"] > 0 for r in per_run),
        "runs": per_run,
    }


def _task(suite_task: SuiteTask, n_runs: int) -> dict[str, Any]:
    task = suite_task.build()
    ref = reference(suite_task.name)
    ref_loss = float(np.mean(ref["eval_losses"]))
    started = time.perf_counter()
    seeds = SAMPLER_SEEDS[:n_runs]
    runs = {
        "ours": [(seed, *_our_job(task, seed)) for seed in seeds],
        "plain_tpe": [(seed, *_plain_tpe(task, seed)) for seed in seeds],
    }
    range_test = run_range_test(
        task, start_lr=LR_LOW, end_lr=LR_HIGH, hyperparameters={"eps_root": SAFE_EPS_ROOT}
    )
    fixed = {
        "range_test": ACPropConfig(learning_rate=range_test.suggestion, eps_root=SAFE_EPS_ROOT),
        "paper": ACPropConfig(learning_rate=1e-3, eps_root=SAFE_EPS_ROOT),
        "optax_defaults": ACPropConfig(learning_rate=1e-3),
    }
    given: list[tuple[str, int | None, ACPropConfig]] = [
        (m, seed, c) for m, rs in runs.items() for seed, c, _ in rs if c is not None
    ]
    given += [(m, None, c) for m, c in fixed.items()]
    final = _train(task, [c for _, _, c in given], EVAL_SEEDS)
    evaluated = {(m, seed): _score(final, k, c) for k, (m, seed, c) in enumerate(given)}
    scores: dict[str, dict[str, Any]] = {
        "reference": {
            "learning_rate": ref["best_learning_rate"],
            "mean_validation_loss": ref_loss,
            "diverged_seeds": sum(ref["eval_diverged"]),
        }
    }
    for method in fixed:
        s = evaluated[(method, None)]
        scores[method] = {**s, "regret_pct": _regret(s["mean_validation_loss"], ref_loss)}
    for name in REFERENCE_OPTIMIZERS:
        result = train_reference(task, name, EVAL_SEEDS, task.meta.default_steps)
        loss = float(np.mean(result.validation_loss))
        loss_or_none = loss if math.isfinite(loss) else None
        scores[name] = {
            "mean_validation_loss": loss_or_none,
            "diverged_seeds": int((result.diverged_at >= 0).sum()),
            "regret_pct": _regret(loss_or_none, ref_loss),
        }
    for method, rs in runs.items():
        per_run = []
        for seed, _, info in rs:
            s = evaluated.get((method, seed), {"mean_validation_loss": None, "diverged_seeds": 0})
            row = {
                "sampler_seed": seed,
                **s,
                "regret_pct": _regret(s["mean_validation_loss"], ref_loss),
            }
            risk = (info.get("recommendation") or {}).get("risk")
            if risk:
                row["risk_upper_bound"] = risk["upper_bound"]
                row["risk_probability"] = risk["probability"]
            per_run.append(row)
        scores[method] = _runs_summary(per_run)
    return {
        "task": suite_task.name,
        "split": suite_task.split,
        "what": suite_task.what,
        "steps": task.meta.default_steps,
        "sampler_seeds": list(seeds),
        "scores": scores,
        "ours": [{"sampler_seed": seed, **info} for seed, _, info in runs["ours"]],
        "range_test": {"suggestion": range_test.suggestion},
        "wall_s": time.perf_counter() - started,
    }


def _risk_covered(task: dict[str, Any]) -> bool | None:
    """Whether, at every run of ours whose evaluation seeds diverged, the reported bound
    covered the observed rate; None where no evaluation seed of ours diverged."""
    hits = [r for r in task["scores"]["ours"]["runs"] if r["diverged_seeds"]]
    if not hits:
        return None
    return all(
        r.get("risk_upper_bound", 0.0) >= r["diverged_seeds"] / len(EVAL_SEEDS) for r in hits
    )


def _split_summary(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    ours = [t["scores"]["ours"] for t in tasks]
    regrets = [s["regret_pct"] for s in ours]
    worst = [s["worst_regret_pct"] for s in ours]
    wins = {
        m: sum(
            1
            for t in tasks
            if t["scores"]["ours"]["regret_pct"] is not None
            and (
                t["scores"][m]["regret_pct"] is None
                or t["scores"]["ours"]["regret_pct"] <= t["scores"][m]["regret_pct"]
            )
        )
        for m in METHODS[1:]
    }
    covered = [c for c in (_risk_covered(t) for t in tasks) if c is not None]
    return {
        "n_tasks": len(tasks),
        # Ours, worst task, of the mean regret over the sampler seeds' runs.
        "max_regret_pct": None if None in regrets or not regrets else max(regrets),
        "worst_run_regret_pct": None if None in worst or not worst else max(worst),
        "share_at_least_as_good_as_tpe": wins["plain_tpe"] / len(tasks) if tasks else None,
        "ours_at_least_as_good_as": wins,
        "diverged_seeds_at_recommendation": sum(s["diverged_seeds"] for s in ours),
        # Tasks where the grid's best never diverged on the evaluation seeds but ours did.
        "diverged_where_the_reference_did_not": [
            t["task"]
            for t in tasks
            if t["scores"]["ours"]["diverged_seeds"]
            and not t["scores"]["reference"]["diverged_seeds"]
        ],
        "risk_covered": (sum(covered) / len(covered)) if covered else 1.0,
        "tasks_with_diverged_seeds_at_recommendation": len(covered),
    }


def _task_by_name(name: str, n_runs: int) -> dict[str, Any]:
    """``_task`` for the suite task ``name`` (in a child process)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return _task(suite_tasks(names=[name])[0], n_runs)


def run() -> dict[str, Any]:
    """Runs the suite (or the tasks the environment names) and summarises per split."""
    names = os.environ.get("BENCH_RECOMMENDATION_TASKS")
    split = os.environ.get("BENCH_RECOMMENDATION_SPLIT") or None
    n_runs = int(os.environ.get("BENCH_RECOMMENDATION_RUNS") or DEFAULT_RUNS)
    chosen = suite_tasks(split=split, names=names.split(",") if names else None)
    tasks = []
    # Each task in a fresh child process: in one process the suite's compiled code stays
    # mapped (jax.clear_caches() does not unmap it) and XLA's compiler runs out of memory
    # mappings after about half of the suite (vm.max_map_count 65,530: "LLVM compilation
    # error: Cannot allocate memory", then a segfault).
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn, max_tasks_per_child=1) as pool:
        for t in chosen:
            tasks.append(pool.submit(_task_by_name, t.name, n_runs).result())
            print(f"  {t.name}: {tasks[-1]['wall_s']:.0f} s", file=sys.stderr, flush=True)
    splits = {s: _split_summary([t for t in tasks if t["split"] == s]) for s in SPLITS}
    summary = {
        "n_tasks": len(tasks),
        "runs_per_task": n_runs,
        "sampler_seeds": list(SAMPLER_SEEDS[:n_runs]),
        "splits": {s: v for s, v in splits.items() if v["n_tasks"]},
        "wall_s": sum(t["wall_s"] for t in tasks),
    }
    return {"name": NAME, "summary": summary, "tasks": tasks}


def _fmt(score: dict[str, Any]) -> str:
    if "runs" in score:  # repeated over sampler seeds: mean and worst regret
        runs, missing = score["runs"], score["runs_without_regret"]
        if missing:
            head = f"n/a ({missing}/{len(runs)} runs without an answer)"
        else:
            head = f"{score['regret_pct']:+.1f} % (worst {score['worst_regret_pct']:+.1f})"
        div = score["diverged_seeds"]
        return head + (f", **{div}/{score['evaluated_seeds']} diverged**" if div else "")
    if score.get("regret_pct") is None:
        return "diverged" if score.get("diverged_seeds") else "no answer"
    cell = f"{score['regret_pct']:+.1f} %"
    if "learning_rate" in score and score.get("eps_root") is not None:
        cell += f" (lr {score['learning_rate']:.2g})"
    div = score.get("diverged_seeds", 0)
    return cell + (f", **{div}/{len(EVAL_SEEDS)} diverged**" if div else "")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} %"


def markdown(result: dict[str, Any]) -> str:
    """The benchmark's section of docs/benchmarks.md."""
    s = result["summary"]
    if "splits" not in s:  # a result from before the development suite (six built-in tasks)
        return (
            f"## {TITLE}\n\nThe stored `bench/results/recommendation.json` predates the "
            "development suite; `make bench BENCH_ARGS=recommendation` measures it.\n"
        )
    header = (
        "| task | reference lr | (a) ours | (b) plain TPE | (c) range test | (d) paper | "
        "(e) optax defaults | (f) Prodigy | (g) schedule-free AdamW | (h) D-Adapt AdamW | "
        "(i) Adam 1e-3 |"
    )
    lines = [
        f"## {TITLE}",
        "",
        "Regret of each answer's mean validation loss over 5 fresh seeds against the best "
        "learning rate of a 48-point grid x 3 seeds (eps_root 1e-8) on the same seeds (stored "
        "references: `python -m bench.suite reference`). Ours and plain TPE spend a quarter of "
        f"the grid's trial-seed-steps per run and run once per sampler seed "
        f"({len(s['sampler_seeds'])} seeds); their cells give the mean regret over the runs "
        "and the worst run. (c)-(h) are fixed answers. The tuning split chose the rules; the "
        "validation split only reports them. See `bench/recommendation.py` for the protocol.",
        "",
    ]
    for split, summary in s["splits"].items():
        lines += [f"### {split} split ({summary['n_tasks']} tasks)", "", header, "|" + "---|" * 11]
        for t in (t for t in result["tasks"] if t["split"] == split):
            sc = t["scores"]
            lines.append(
                f"| {t['task']} | {sc['reference']['learning_rate']:.2g} | "
                + " | ".join(_fmt(sc[m]) if m in sc else "-" for m in METHODS)
                + " |"
            )
        wins = summary["ours_at_least_as_good_as"]
        lines += [
            "",
            f"Summary ({split}): max regret of ours (worst task, mean over runs) "
            f"{_pct(summary['max_regret_pct'])}, worst single run "
            f"{_pct(summary['worst_run_regret_pct'])}, at least as good as plain TPE on "
            f"{summary['share_at_least_as_good_as_tpe']:.0%} of the tasks; diverged seeds at "
            f"our recommendation {summary['diverged_seeds_at_recommendation']} "
            f"(where the reference had none: "
            f"{', '.join(summary['diverged_where_the_reference_did_not']) or 'none'}); the "
            f"reported risk bound covered the observed rate on {summary['risk_covered']:.0%} "
            f"of the {summary['tasks_with_diverged_seeds_at_recommendation']} tasks with a "
            "diverged seed; ours at least as good as "
            + ", ".join(f"{LABELS[m]} on {n}/{summary['n_tasks']}" for m, n in wins.items())
            + ".",
            "",
        ]
    lines.append(f"Wall time {s['wall_s']:.0f} s.")
    lines.append("")
    return "\n".join(lines)
