"""The in-memory sampler mirror of one job's study.

Asking Optuna's RDB storage for K configurations costs K x its per-call commits and grows as
K^2 (facts.md). Instead each API process keeps, per job, an `optuna.Study` on
`InMemoryStorage` that mirrors our `trials` table: waiting and running trials are RUNNING (so
the sampler is pending-aware: TPE's constant liar penalises them), finished ones carry their
outcome. Asking then costs only the sampler's time.

The table is the truth; the mirror is a cache rebuilt from it at any time. `sync` is called
with the rows that changed since the mirror last saw them (the lease path does it under the
job's row lock, so every lease decision sees all finished trials of every process).

Outcomes as the sampler sees them:
  complete -> COMPLETE with its value
  diverged -> COMPLETE with a finite penalty worse than every finished loss (optimizer/tuning/outcome.py)
  pruned   -> PRUNED with its intermediate losses (TPE ranks it by how far it got)
  failed   -> FAIL (ignored by the samplers)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.storages import InMemoryStorage
from optuna.trial import FrozenTrial, TrialState, create_trial

from optimizer.job_spec import JobSpec
from optimizer.tuning import line_search, tpe_speedups
from optimizer.tuning.outcome import divergence_penalty
from optimizer.tuning.policy import (
    LinePlan,
    StudySpace,
    build_pruner,
    build_sampler,
    line_plan,
    search_space,
)

__all__ = ["ACTIVE_STATES", "TERMINAL_STATES", "AskedTrial", "StudyMirror", "TrialSnapshot"]

ACTIVE_STATES = frozenset({"waiting", "running"})
TERMINAL_STATES = frozenset({"complete", "pruned", "diverged", "failed"})

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True, slots=True)
class TrialSnapshot:
    """What the mirror needs to know of one row of `trials`."""

    trial_id: int
    state: str
    params: Mapping[str, float]
    value: float | None = None
    last_finite_loss: float | None = None
    diverged_at_step: int | None = None
    intermediate: Mapping[int, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AskedTrial:
    """A configuration the sampler proposed, not yet bound to a row of `trials`."""

    mirror_id: int
    config: dict[str, float]


def _contains(dist: BaseDistribution, value: float) -> bool:
    if isinstance(dist, FloatDistribution):
        return dist.low <= value <= dist.high
    return True


class StudyMirror:
    """An in-memory Optuna study kept in step with one job's trials.

    Not thread-safe by itself: callers hold `lock` around every call, and never make a
    database call while holding it outside the lease path (which already holds the job's row
    lock, so there is a single lock order: job row, then mirror).
    """

    def __init__(
        self,
        space: StudySpace,
        sampler: optuna.samplers.BaseSampler,
        pruner: optuna.pruners.BasePruner,
        *,
        steps: int,
        line: LinePlan | None = None,
    ) -> None:
        self.space = space
        self._line = line
        self.lock = threading.Lock()
        self._sampler = sampler
        self._speedups = tpe_speedups.install(sampler)
        self._pruner = pruner
        self._steps = steps
        self._snapshots: dict[int, TrialSnapshot] = {}
        self._line_member: dict[int, bool] = {}  # trial id -> on the line (see _line_trials)
        self._reset()

    @classmethod
    def for_job(cls, spec: JobSpec, *, seed: int | None = None) -> StudyMirror:
        """The mirror of a job's study with the job's sampling policy (policy.py); ``seed``
        stands in for the spec's own (e.g. from the job id), so a rebuilt mirror of one job
        samples the same way."""
        return cls(
            search_space(spec),
            build_sampler(spec, seed=seed),
            build_pruner(spec),
            steps=spec.budget.steps,
            line=line_plan(spec),
        )

    # -- reading ---------------------------------------------------------------------------

    def known_states(self) -> dict[int, str]:
        """Our state of every trial the mirror holds, by trial id."""
        return {tid: snap.state for tid, snap in self._snapshots.items()}

    def __len__(self) -> int:
        return len(self._snapshots)

    @property
    def study(self) -> optuna.Study:
        return self._study

    @property
    def uses_pruner(self) -> bool:
        return not isinstance(self._pruner, optuna.pruners.NopPruner)

    # -- keeping in step -------------------------------------------------------------------

    def sync(self, snapshots: Iterable[TrialSnapshot]) -> None:
        """Bring the mirror up to date with these rows (new or changed ones)."""
        rebuild = False
        for snap in snapshots:
            old = self._snapshots.get(snap.trial_id)
            self._snapshots[snap.trial_id] = snap
            if old is None:
                self._add(snap)
            elif old.state in TERMINAL_STATES:
                # A finished trial never changes; if it did, the table was edited by hand.
                rebuild = rebuild or old != snap
            elif snap.state in TERMINAL_STATES:
                self._finish(snap)
            if snap.state == "complete" and snap.value is not None:
                rebuild = rebuild or snap.value >= self._penalty_floor
        if rebuild:
            self._reset()

    def bind(self, asked: AskedTrial, snapshot: TrialSnapshot) -> None:
        """Record that `asked` became the row `snapshot` (a running trial)."""
        self._snapshots[snapshot.trial_id] = snapshot
        self._mirror_ids[snapshot.trial_id] = asked.mirror_id

    # -- sampling and pruning --------------------------------------------------------------

    def ask(self, n: int) -> list[AskedTrial]:
        """Propose `n` configurations; each is RUNNING in the mirror until told otherwise.

        With a line plan, the line refinement proposes while the line holds less than its
        share of the trials and is not yet refined; the sampler asks the rest. The caller
        must `bind` every one, or drop the whole mirror if its transaction fails.
        """
        asked: list[AskedTrial] = []
        on_line: list[float] = []  # log10 learning rates the line proposed in this call
        line = self._line_trials()  # the rows do not change during the call
        for _ in range(n):
            u = self._line_next(line, on_line, len(asked))
            if u is None:
                trial = self._study.ask(self.space.distributions)
                asked.append(AskedTrial(trial._trial_id, self.space.config(trial.params)))
                continue
            assert self._line is not None
            params = {**self._line.anchor, "learning_rate": 10.0**u}
            sampled = {name: params[name] for name in self.space.distributions}
            template = create_trial(
                state=TrialState.RUNNING, params=sampled, distributions=self.space.distributions
            )
            mirror_id = self._storage.create_new_trial(self._study_id, template)
            asked.append(AskedTrial(mirror_id, self.space.config(sampled)))
            on_line.append(u)
        return asked

    def _line_trials(self) -> list[TrialSnapshot]:
        """The rows on the line refinement's line (none without a line plan). Whether a
        trial lies on it is decided once per trial: its settings never change."""
        plan = self._line
        if plan is None:
            return []
        known = self._line_member
        for tid, snap in self._snapshots.items():
            if tid not in known:
                known[tid] = plan.on_line(snap.params)
        return [snap for tid, snap in self._snapshots.items() if known[tid]]

    def _line_next(
        self, line: list[TrialSnapshot], proposed: list[float], n_asked: int
    ) -> float | None:
        """The line refinement's next ``log10`` learning rate, or None (the sampler asks);
        ``line``: the rows on the line (:meth:`_line_trials`), ``proposed``: the rates this
        call proposed so far, ``n_asked``: the trials this call asked so far."""
        plan = self._line
        if plan is None:
            return None
        n_line = len(line) + len(proposed)
        if n_line >= plan.share * (len(self._snapshots) + n_asked + 1) - 1e-9:
            return None
        done: list[tuple[float, float | None]] = []
        pending = list(proposed)
        for snap in line:
            u = math.log10(float(snap.params["learning_rate"]))
            if snap.state == "complete" and snap.value is not None:
                done.append((u, float(snap.value)))
            elif snap.state == "diverged":
                done.append((u, None))
            elif snap.state != "failed":  # waiting, running, pruned: taken, not measured
                pending.append(u)
        found = line_search.propose(done, pending, 1, low=plan.low, high=plan.high)
        return found[0] if found else None

    def should_prune(self, trial_id: int, intermediate: Mapping[int, float]) -> bool:
        """Record a running trial's intermediate losses and ask the job's pruner."""
        if not self.uses_pruner:
            return False
        mirror_id = self._mirror_ids.get(trial_id)
        if mirror_id is None:
            return False
        frozen = self._storage.get_trial(mirror_id)
        if frozen.state != TrialState.RUNNING:
            return False
        for step, value in intermediate.items():
            if math.isfinite(value):
                self._storage.set_trial_intermediate_value(mirror_id, step, value)
        return self._pruner.prune(self._study, self._storage.get_trial(mirror_id))

    # -- internals -------------------------------------------------------------------------

    def _reset(self) -> None:
        """(Re)build the in-memory study from the snapshots: finished trials first, so that
        every divergence penalty is computed against all finished losses."""
        self._storage = InMemoryStorage()
        if self._speedups is not None:
            self._speedups.clear()  # keyed by this storage's trial ids
        self._study = optuna.create_study(
            storage=self._storage, sampler=self._sampler, pruner=self._pruner
        )
        self._study_id = self._storage.get_study_id_from_name(self._study.study_name)
        self._mirror_ids: dict[int, int] = {}
        self._complete_values: list[float] = []
        self._penalty_floor = math.inf
        snaps = sorted(self._snapshots.values(), key=lambda s: (s.state != "complete", s.trial_id))
        for snap in snaps:
            self._add(snap)

    def _params(self, snap: TrialSnapshot) -> tuple[dict[str, float], dict[str, BaseDistribution]]:
        # Warm-start rows may carry values outside the searched range; the sampler just does
        # not learn from those parameters.
        params: dict[str, float] = {}
        dists: dict[str, BaseDistribution] = {}
        for name, dist in self.space.distributions.items():
            value = snap.params.get(name)
            if value is not None and _contains(dist, float(value)):
                params[name] = float(value)
                dists[name] = dist
        return params, dists

    def _penalty(self, snap: TrialSnapshot) -> float:
        penalty = divergence_penalty(
            self._complete_values,
            diverged_at_step=snap.diverged_at_step,
            steps=self._steps,
            last_finite_loss=snap.last_finite_loss,
        )
        self._penalty_floor = min(self._penalty_floor, penalty)
        return penalty

    def _template(self, snap: TrialSnapshot) -> FrozenTrial:
        params, dists = self._params(snap)
        state, value = TrialState.RUNNING, None
        # Pruners compare a running trial with the finished trials' intermediate losses.
        intermediate = {int(k): float(v) for k, v in snap.intermediate.items()}
        if snap.state == "complete" and snap.value is not None:
            state, value = TrialState.COMPLETE, float(snap.value)
            self._complete_values.append(value)
        elif snap.state == "diverged":
            state, value = TrialState.COMPLETE, self._penalty(snap)
        elif snap.state == "pruned":
            state = TrialState.PRUNED
        elif snap.state in TERMINAL_STATES:
            state = TrialState.FAIL
        return create_trial(
            state=state,
            value=value,
            params=params,
            distributions=dists,
            intermediate_values=intermediate,
        )

    def _add(self, snap: TrialSnapshot) -> None:
        mirror_id = self._storage.create_new_trial(self._study_id, self._template(snap))
        self._mirror_ids[snap.trial_id] = mirror_id

    def _finish(self, snap: TrialSnapshot) -> None:
        mirror_id = self._mirror_ids[snap.trial_id]
        template = self._template(snap)
        for step, value in template.intermediate_values.items():
            self._storage.set_trial_intermediate_value(mirror_id, step, value)
        values = None if template.value is None else [template.value]
        self._storage.set_trial_state_values(mirror_id, template.state, values)
