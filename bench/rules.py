"""Rule studies on the development suite: a job of the quality benchmark's protocol run for
every task of a split and many sampler seeds, with every training result cached, so that rules
of the recommendation (and of the job's policy) can be compared on the same trials.

``python -m bench.rules [--split tuning] [--seeds 10-19] [--variant NAME ...] [--tasks A,B]``
prints, per variant and task, the mean and worst regret of our answer over the sampler seeds
(against the stored reference, on the 5 evaluation seeds, as ``bench/recommendation.py``
scores it), plain TPE's mean regret with the same budget, and the diverged evaluation seeds;
then the split's summary (worst task, worst run, share of tasks at least as good as plain
TPE). ``--json FILE`` writes the rows.

Training is cached per (task, configuration, seeds) under ``.cache/bench-rules/`` (each lane
trains independently, so a configuration trained once in any population gives the same
per-seed results, up to floating-point rounding across population sizes): a variant that
changes only the final choice re-trains nothing but its new candidates and answers. Variants
are the named policies in :data:`VARIANTS`; ``current`` is the product's.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import pickle
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from bench.recommendation import (
    BATCH,
    BUDGET_TRIAL_SEEDS,
    EPS_ROOT_HIGH,
    EPS_ROOT_LOW,
    JOB_SEEDS,
    JOB_TRIALS,
    PLAIN_SEED,
    _job_spec,
)
from bench.suite import EVAL_SEEDS, LR_HIGH, LR_LOW, SPLITS, SuiteTask, reference, suite_tasks
from optimizer.config import ACPropConfig
from optimizer.recommendation import NotEnoughEvidence, TrialOutcome, recommend
from optimizer.recommendation._loss_model import Warp as _Warp
from optimizer.tuning.confirmation import candidates, confirmation_seeds, confirmation_trials
from optimizer.tuning.mirror import StudyMirror, TrialSnapshot
from optimizer.tuning.outcome import TrialResult
from optimizer.tuning.policy import LINE_SHARE, LinePlan, line_plan


def replace_line(mirror: StudyMirror, plan: LinePlan | None) -> StudyMirror:
    mirror._line = plan  # a study's variant: the mirror is fresh, nothing asked yet
    return mirror


ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench-rules"
optuna.logging.set_verbosity(optuna.logging.WARNING)

_KEYS = ("learning_rate", "b1", "b2", "eps", "eps_root", "weight_decay")


def _key(config: dict[str, float], seeds: Sequence[int]) -> tuple[Any, ...]:
    full = ACPropConfig(**config)
    return (*(float(getattr(full, k)) for k in _KEYS), tuple(seeds))


@dataclass
class Lane:
    """One configuration's per-seed results."""

    final_loss: list[float]
    validation_loss: list[float]
    last_finite_loss: list[float]
    diverged_at: list[int]
    steps: int

    def judged(self) -> TrialResult:
        def finite(values: list[float]) -> list[float | None]:
            return [v if math.isfinite(v) else None for v in values]

        return TrialResult.judge(
            final_losses=finite(self.final_loss),
            validation_losses=finite(self.validation_loss),
            last_finite_losses=finite(self.last_finite_loss),
            diverged_at_step=[d if d >= 0 else None for d in self.diverged_at],
            steps=self.steps,
        )


@dataclass
class Trainer:
    """A task's trainer with every lane's results cached on disk."""

    suite_task: SuiteTask
    task: Any = None
    lanes: dict[tuple[Any, ...], Lane] = field(default_factory=dict)
    trained: int = 0

    @property
    def path(self) -> Path:
        return CACHE / f"{self.suite_task.name}.pkl"

    def load(self) -> Trainer:
        if self.path.exists():
            stored = _Unpickler(self.path).load()
            self.lanes = {k: v if isinstance(v, Lane) else Lane(*v) for k, v in stored.items()}
        return self

    def save(self) -> None:
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        plain = {
            k: (v.final_loss, v.validation_loss, v.last_finite_loss, v.diverged_at, v.steps)
            for k, v in self.lanes.items()
        }
        tmp.write_bytes(pickle.dumps(plain))
        tmp.replace(self.path)

    def built(self) -> Any:
        if self.task is None:
            self.task = self.suite_task.build()
        return self.task

    def train(self, configs: Sequence[dict[str, float]], seeds: Sequence[int]) -> list[Lane]:
        keys = [_key(c, seeds) for c in configs]
        missing = list(dict.fromkeys(k for k in keys if k not in self.lanes))
        if missing:
            from optimizer.population import PopulationTrainer

            steps = self.built().meta.default_steps
            todo = [ACPropConfig(**dict(zip(_KEYS, k[:6], strict=True))) for k in missing]
            trainer = PopulationTrainer(
                self.task, n_configs=len(todo), n_seeds=len(seeds), chunk_steps=steps
            )
            final = trainer.train(todo, list(seeds), steps)
            for i, k in enumerate(missing):
                self.lanes[k] = Lane(
                    [float(v) for v in final.final_loss[i]],
                    [float(v) for v in final.validation_loss[i]],
                    [float(v) for v in final.last_finite_loss[i]],
                    [int(v) for v in final.diverged_at[i]],
                    int(final.steps),
                )
            self.trained += len(missing)
            self.save()
        return [self.lanes[k] for k in keys]


class _Unpickler(pickle.Unpickler):
    """Reads the cache, also files written when this module ran as ``__main__``."""

    def __init__(self, path: Path) -> None:
        super().__init__(path.open("rb"))

    def find_class(self, module: str, name: str) -> Any:
        if name == "Lane":
            return Lane
        return super().find_class(module, name)


# -- policies ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """What a variant may change: the line refinement's share (None: none), the
    confirmation candidates and the final choice."""

    candidates: Callable[[list[TrialOutcome], int], list[dict[str, float]]]
    choose: Callable[[list[TrialOutcome]], dict[str, float] | None]
    confirm: Callable[[int], int] = confirmation_trials
    line_share: float | None = LINE_SHARE
    #: Fresh seeds each confirmation candidate trains on (the job's seeds per trial as
    #: shipped); ``confirm`` then counts the stage's budget in trials of the job's seeds.
    confirm_seeds: int = len(JOB_SEEDS)
    #: (module, attribute, value) replaced while the job runs: a rule switched off.
    patches: tuple[tuple[str, str, Any], ...] = ()


def _current_choose(records: list[TrialOutcome]) -> dict[str, float] | None:
    try:
        return dict(recommend(records, status="final").config)
    except NotEnoughEvidence:
        return None


CURRENT = Policy(
    candidates=lambda records, n: candidates(records, n, lr_high=LR_HIGH),
    choose=_current_choose,
)


def _pooled_seed_sd(records: list[TrialOutcome]) -> float:
    num = dof = 0.0
    for r in records:
        losses, n_div, _ = r.seed_states()
        if not n_div and len(losses) > 1 and not r.confirmation:
            m = float(np.mean(losses))
            num += sum((v - m) ** 2 for v in losses)
            dof += len(losses) - 1
    return math.sqrt(num / dof) if dof else 0.0


def _paired_sd(records: list[TrialOutcome]) -> float:
    """Robust sd of the seed-to-seed difference of one trial, over the better half of the
    job's complete two-seed trials: the config x seed interaction that a paired comparison on
    shared seeds does not cancel."""
    pairs = []
    for r in records:
        losses, n_div, _ = r.seed_states()
        if not n_div and len(losses) == 2 and not r.confirmation:
            pairs.append((float(np.mean(losses)), losses[0] - losses[1]))
    if len(pairs) < 3:
        return math.inf
    pairs.sort()
    d = np.array([p[1] for p in pairs[: max(3, len(pairs) // 2)]])
    return float(1.4826 * np.median(np.abs(d - np.median(d))))


def evidence_choose(
    z: float, paired: bool = False
) -> Callable[[list[TrialOutcome]], dict[str, float] | None]:
    """The model's answer (the first candidate) stands unless another candidate measured
    better on the fresh seeds by more than ``z`` standard errors of a paired difference."""

    def choose(records: list[TrialOutcome]) -> dict[str, float] | None:
        config = _current_choose(records)
        confirm = sorted((r for r in records if r.confirmation), key=lambda r: r.number)
        if not confirm:
            return config
        by_config: dict[Any, list[TrialOutcome]] = {}
        for r in records:
            by_config.setdefault(tuple(sorted(r.params.items())), []).append(r)
        base = confirm[0]
        members = by_config[tuple(sorted(base.params.items()))]
        if any(any(m.diverged) for m in members):
            return config  # the model's answer diverged somewhere: the measured best stands
        s = _paired_sd(records) / math.sqrt(2.0) if paired else _pooled_seed_sd(records)
        base_losses = base.seed_states()[0]
        best = (float(np.mean(base_losses)), dict(base.params))
        for r in confirm[1:]:
            group = by_config[tuple(sorted(r.params.items()))]
            if any(any(m.diverged) for m in group):
                continue
            losses = r.seed_states()[0]
            diff = float(np.mean(losses)) - float(np.mean(base_losses))
            if diff < -z * s * math.sqrt(2.0 / len(losses)) and float(np.mean(losses)) < best[0]:
                best = (float(np.mean(losses)), dict(r.params))
        full = ACPropConfig(**best[1])
        return {k: float(getattr(full, k)) for k in _KEYS}

    return choose


class LogLossWarp:
    """The loss model's warp applied to ``log(loss)`` where every loss is positive (else the
    product's warp): the fit then models relative differences, the scale regret is judged on,
    and seed noise that multiplies the loss (3-13x between seeds on some tasks) becomes
    additive."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.spread = inner.spread

    @classmethod
    def fit(cls, seed_losses: np.ndarray) -> Any:
        if (np.asarray(seed_losses) <= 0.0).any():
            return _Warp.fit(seed_losses)
        return cls(_Warp.fit(np.log(seed_losses)))

    def forward(self, y: np.ndarray) -> np.ndarray:
        return self.inner.forward(np.log(y))

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return np.exp(self.inner.inverse(z))


def near_candidates(
    factor: float, up_at_loss: bool
) -> Callable[[list[TrialOutcome], int], list[dict[str, float]]]:
    """The confirmation candidates with the step below the answer (and, with
    ``up_at_loss``, a step above an answer the loss set, where it stays a margin below the
    edge) a factor ``factor`` instead of 2 / 2.5: the stage then chooses among near rates,
    where a job's regret on a steep loss comes from."""
    from optimizer.recommendation._rounding import round_sig
    from optimizer.tuning.confirmation import UP

    def pick(records: list[TrialOutcome], n: int) -> list[dict[str, float]]:
        try:
            rec = recommend(records, status="provisional")
        except NotEnoughEvidence:
            return []
        base = dict(rec.config)
        lr = base["learning_rate"]
        out = [base]
        if rec.bounded_by != "loss":
            up = round_sig(min(lr * UP, LR_HIGH), 2)
        elif up_at_loss:
            up = round_sig(lr * factor, 2)
            cap = math.inf if rec.divergence_lr is None else rec.divergence_lr / rec.margin
            up = up if up <= cap else lr
        else:
            up = lr
        if up > lr:
            out.append({**base, "learning_rate": up})
        out.append({**base, "learning_rate": round_sig(lr / factor, 2)})
        return out[:n]

    return pick


_CHOICE = "optimizer.recommendation._choice"
_DIVERGENCE = "optimizer.recommendation._divergence_model"
_LOG_LOSS = ("optimizer.recommendation._loss_model", "Warp", LogLossWarp)
_NO_PAPER = (_CHOICE, "paper_point", lambda *a, **k: None)
_NO_EPS = (_CHOICE, "at_default_eps_root", lambda *a, **k: None)

VARIANTS: dict[str, Policy] = {
    "current": CURRENT,
    "no_line": replace(CURRENT, line_share=None),
    "line_all": replace(CURRENT, line_share=1.0),
    "line_half": replace(CURRENT, line_share=0.5),
    "evidence1": replace(CURRENT, choose=evidence_choose(1.0)),
    "evidence2": replace(CURRENT, choose=evidence_choose(2.0)),
    "paired1": replace(CURRENT, choose=evidence_choose(1.0, paired=True)),
    "half_evidence1": replace(CURRENT, line_share=0.5, choose=evidence_choose(1.0)),
    "no_paper_tie": replace(CURRENT, patches=(_NO_PAPER,)),
    "no_eps_tie": replace(CURRENT, patches=(_NO_EPS,)),
    "no_ties": replace(CURRENT, patches=(_NO_PAPER, _NO_EPS)),
    "paired2": replace(CURRENT, choose=evidence_choose(2.0, paired=True)),
    "log_loss": replace(CURRENT, patches=(_LOG_LOSS,)),
    "edge_z1": replace(CURRENT, patches=((_DIVERGENCE, "EDGE_Z", 1.0),)),
    "edge_z3": replace(CURRENT, patches=((_DIVERGENCE, "EDGE_Z", 3.0),)),
    "pessimism2": replace(CURRENT, patches=((_CHOICE, "PESSIMISM", 2.0),)),
    "pessimism6": replace(CURRENT, patches=((_CHOICE, "PESSIMISM", 6.0),)),
    "confirm4": replace(CURRENT, confirm=lambda n: 2 * confirmation_trials(n), confirm_seeds=4),
    "confirm3": replace(
        CURRENT, confirm=lambda n: 5 * confirmation_trials(n) // 3, confirm_seeds=3
    ),
    "down125": replace(CURRENT, candidates=near_candidates(1.25, False)),
    "down141": replace(CURRENT, candidates=near_candidates(2**0.5, False)),
    "near125": replace(CURRENT, candidates=near_candidates(1.25, True)),
    "log_loss_p2": replace(CURRENT, patches=(_LOG_LOSS, (_CHOICE, "PESSIMISM", 2.0))),
}


def run_job(trainer: Trainer, seed: int, policy: Policy) -> dict[str, Any]:
    """The quality benchmark's job (bench/recommendation.py ``_our_job``) under ``policy``."""
    import importlib

    saved = []
    for module, name, value in policy.patches:
        mod = importlib.import_module(module)
        saved.append((mod, name, getattr(mod, name)))
        setattr(mod, name, value)
    try:
        return _run_job(trainer, seed, policy)
    finally:
        for mod, name, value in saved:
            setattr(mod, name, value)


def _run_job(trainer: Trainer, seed: int, policy: Policy) -> dict[str, Any]:
    spec = _job_spec(trainer.built())
    mirror = StudyMirror.for_job(spec, seed=seed)
    plan = line_plan(spec)
    if policy.line_share is None or plan is None:
        mirror = replace_line(mirror, None)
    else:
        mirror = replace_line(mirror, replace(plan, share=policy.line_share))
    sweep = [dict(c) for c in spec.warm_start_configs]
    mirror.sync([TrialSnapshot(i, "waiting", c) for i, c in enumerate(sweep)])
    share = JOB_TRIALS - policy.confirm(JOB_TRIALS)
    records: list[TrialOutcome] = []
    population: list[tuple[int, dict[str, float]]] = list(enumerate(sweep))
    seeds: Sequence[int] = JOB_SEEDS
    confirming = share < JOB_TRIALS
    while population:
        lanes = trainer.train([c for _, c in population], seeds)
        done = []
        for (number, params), lane in zip(population, lanes, strict=True):
            o = lane.judged()
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
            confirming = False
            confirm = policy.candidates(records, JOB_TRIALS - n)
            if confirm:
                population = [(n + i, c) for i, c in enumerate(confirm)]
                mirror.sync([TrialSnapshot(number, "waiting", c) for number, c in population])
                fresh = confirmation_seeds(len(JOB_SEEDS))
                seeds = tuple(range(fresh[0], fresh[0] + policy.confirm_seeds))
                continue
        spent = sum(len(r.losses) for r in records)  # trial-seeds, the budget's unit
        left = (JOB_TRIALS * len(JOB_SEEDS) - spent) // len(JOB_SEEDS)
        size = max(0, min(BATCH, share - n if confirming else left))
        for asked in mirror.ask(size):
            number = n + len(population)
            mirror.bind(asked, TrialSnapshot(number, "running", asked.config))
            population.append((number, asked.config))
    return {"records": records, "answer": policy.choose(records)}


def plain_tpe(trainer: Trainer, seed: int) -> dict[str, float] | None:
    """bench/recommendation.py's plain TPE, with cached training."""
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    for _ in range(BUDGET_TRIAL_SEEDS // BATCH):
        trials = [study.ask() for _ in range(BATCH)]
        configs = [
            {
                "learning_rate": t.suggest_float("learning_rate", LR_LOW, LR_HIGH, log=True),
                "eps_root": t.suggest_float("eps_root", EPS_ROOT_LOW, EPS_ROOT_HIGH, log=True),
            }
            for t in trials
        ]
        for trial, lane in zip(trials, trainer.train(configs, PLAIN_SEED), strict=True):
            loss = lane.validation_loss[0]
            ok = lane.diverged_at[0] < 0 and math.isfinite(loss)
            study.tell(trial, loss if ok else math.nan)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return dict(study.best_trial.params) if done else None


def evaluate(trainer: Trainer, config: dict[str, float] | None, ref: float) -> dict[str, Any]:
    if config is None:
        return {"regret_pct": None, "diverged": 0}
    lane = trainer.train([config], EVAL_SEEDS)[0]
    losses = np.array(lane.validation_loss)
    loss = float(losses.mean()) if np.isfinite(losses).all() else None
    return {
        "learning_rate": config["learning_rate"],
        "eps_root": config.get("eps_root", 1e-16),
        "regret_pct": None if loss is None else 100.0 * (loss - ref) / abs(ref),
        "diverged": sum(d >= 0 for d in lane.diverged_at),
    }


def _seeds(text: str) -> list[int]:
    a, _, b = text.partition("-")
    return list(range(int(a), int(b or a) + 1))


def _mean(values: list[float | None]) -> float | None:
    return None if not values or None in values else float(np.mean(values))  # type: ignore[arg-type]


def study(
    tasks: Sequence[SuiteTask], seeds: Sequence[int], variants: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per (task, variant): our answer's regret over the sampler ``seeds`` (mean and
    worst), plain TPE's mean regret with the same budget, and the diverged evaluation seeds;
    each row printed as it is done."""
    rows: list[dict[str, Any]] = []
    for suite_task in tasks:
        started = time.perf_counter()
        trainer = Trainer(suite_task).load()
        ref = float(np.mean(reference(suite_task.name)["eval_losses"]))
        tpe = [evaluate(trainer, plain_tpe(trainer, s), ref) for s in seeds]
        for name in variants:
            runs = []
            for s in seeds:
                job = run_job(trainer, s, VARIANTS[name])
                runs.append({"seed": s, **evaluate(trainer, job["answer"], ref)})
            regrets = [r["regret_pct"] for r in runs]
            row = {
                "task": suite_task.name,
                "split": suite_task.split,
                "variant": name,
                "mean": _mean(regrets),
                "worst": None if None in regrets else max(regrets),  # type: ignore[type-var]
                "tpe_mean": _mean([r["regret_pct"] for r in tpe]),
                "diverged": sum(r["diverged"] for r in runs),
                "runs": runs,
                "tpe_runs": tpe,
            }
            rows.append(row)
            fmt = lambda v: "  n/a " if v is None else f"{v:+7.2f}"  # noqa: E731
            print(
                f"{name:18s} {suite_task.name:32s} mean {fmt(row['mean'])} worst "
                f"{fmt(row['worst'])} tpe {fmt(row['tpe_mean'])} div {row['diverged']} "
                "lrs " + " ".join(f"{r.get('learning_rate', 0):.2g}" for r in runs),
                flush=True,
            )
        print(
            f"  ({suite_task.name}: {time.perf_counter() - started:.0f} s, "
            f"{trainer.trained} lanes trained)",
            file=sys.stderr,
            flush=True,
        )
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The split summary of one variant's rows, in bench/recommendation.py's terms."""
    means = [r["mean"] for r in rows if r["mean"] is not None]
    worst = [r["worst"] for r in rows if r["worst"] is not None]
    wins = sum(
        1
        for r in rows
        if r["mean"] is not None and (r["tpe_mean"] is None or r["mean"] <= r["tpe_mean"])
    )
    answered = [r for r in rows if r["mean"] is not None]
    worst_task = max(answered, key=lambda r: r["mean"]) if answered else None
    return {
        "n_tasks": len(rows),
        "max_regret_pct": max(means, default=None),
        "worst_task": worst_task["task"] if worst_task else None,
        "worst_run_regret_pct": max(worst, default=None),
        "share_at_least_as_good_as_tpe": wins / len(rows) if rows else None,
        "at_least_as_good_as_tpe": wins,
        "diverged_seeds_at_recommendation": sum(r["diverged"] for r in rows),
        "no_answer": sum(r["mean"] is None for r in rows),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rules", description=__doc__)
    parser.add_argument("--split", default="tuning")
    parser.add_argument("--tasks", default="")
    parser.add_argument("--seeds", default="10-19")
    parser.add_argument("--variant", nargs="*", default=["current"])
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    tasks = suite_tasks(
        split=args.split or None, names=args.tasks.split(",") if args.tasks else None
    )
    rows = study(tasks, _seeds(args.seeds), args.variant)
    for name in args.variant:
        s = summarise([r for r in rows if r["variant"] == name])
        print(
            f"== {name}: worst task {s['max_regret_pct']} worst run "
            f"{s['worst_run_regret_pct']} >= tpe {s['at_least_as_good_as_tpe']}/{s['n_tasks']} "
            f"diverged {s['diverged_seeds_at_recommendation']} no answer {s['no_answer']}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


# -- as a benchmark (``python -m bench rules``) ---------------------------------------------

NAME = "rules"
TITLE = "The recommendation's rules over 10 sampler seeds per task"
#: The sampler seeds the rules were chosen over on the tuning split.
STUDY_SEEDS = tuple(range(10, 20))


def _study_task(name: str) -> list[dict[str, Any]]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return study(suite_tasks(names=[name]), STUDY_SEEDS, ["current"])


def run() -> dict[str, Any]:
    """The product's rules (``current``) on both splits over :data:`STUDY_SEEDS`: the quality
    benchmark's protocol with 5x its runs per task (its training cached), so a split's worst
    task is a mean over 10 runs rather than 2."""
    started = time.perf_counter()
    rows = []
    # A fresh child process per task, as bench/recommendation.py does: XLA runs out of memory
    # mappings when one process compiles the whole suite.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn, max_tasks_per_child=1) as pool:
        for split in SPLITS:
            for t in suite_tasks(split=split):
                rows += pool.submit(_study_task, t.name).result()
    splits = {s: summarise([r for r in rows if r["split"] == s]) for s in SPLITS}
    summary = {
        "n_tasks": len(rows),
        "runs_per_task": len(STUDY_SEEDS),
        "sampler_seeds": list(STUDY_SEEDS),
        "splits": splits,
        "wall_s": time.perf_counter() - started,
    }
    return {"name": NAME, "summary": summary, "tasks": rows}


def markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    fmt = lambda v: "-" if v is None else f"{v:+.2f} %"  # noqa: E731
    lines = [
        f"## {TITLE}",
        "",
        "The quality benchmark's protocol (a job of 18 trials x 2 seeds, the answer trained on "
        "the 5 evaluation seeds, regret against the stored grid's best) with our rules as "
        f"shipped, over sampler seeds {s['sampler_seeds'][0]}-{s['sampler_seeds'][-1]} "
        f"({s['runs_per_task']} runs per task; the quality section above runs 2, "
        "bench/recommendation.py `DEFAULT_RUNS`); plain TPE's "
        "best trial of the same budget on the same sampler seeds. Training is cached per "
        "configuration and seeds (`python -m bench.rules`, which also compares rule variants; "
        "bench/rules.py).",
        "",
        "| split | tasks | worst task (mean over runs) | worst run | at least as good as plain "
        "TPE | diverged evaluation seeds |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for split, v in s["splits"].items():
        lines.append(
            f"| {split} | {v['n_tasks']} | {fmt(v['max_regret_pct'])} ({v['worst_task']}) | "
            f"{fmt(v['worst_run_regret_pct'])} | {v['at_least_as_good_as_tpe']}/{v['n_tasks']} "
            f"| {v['diverged_seeds_at_recommendation']} |"
        )
    lines += [
        "",
        "| split | task | ours: mean | ours: worst run | plain TPE: mean | diverged |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in result["tasks"]:
        lines.append(
            f"| {r['split']} | {r['task']} | {fmt(r['mean'])} | {fmt(r['worst'])} | "
            f"{fmt(r['tpe_mean'])} | {r['diverged']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
