"""Exact speed-ups of Optuna's TPE for the job mirrors (mirror.py).

A lease call asks the job's TPE sampler for K configurations, one after another (constant
liar makes each see the ones before as running). At a study of a thousand trials each ask
costs 9-10 ms, nearly all of it in work that is the same for every ask or more than the
answer needs:

- converting the parameters of every trial to arrays, twice per ask (the below and the
  above group), although a finished trial's parameters never change (`InternalReprCache`);
- splitting every trial into the below and the above group, although between the K asks of
  one lease call only the running trials change (`SplitCachingSample` keeps the split of
  the finished ones, and the below estimator built from them alone);
- the acquisition function: the log density of the below and above Parzen mixtures at the
  24 candidates. Optuna evaluates the truncated-normal log density element by element over
  (candidates x components x parameters), recomputing every component's normalising mass for
  every candidate; for the continuous parameters this sampler searches, the masses depend
  only on the components, so `fast_acquisition` computes them once per component and the
  per-candidate part is one squared distance (`mixture_log_pdf`).

Together they bring an ask to about 4 ms (bench/broker.py measures both) and give the same
proposals as Optuna's own methods (tests/unit/test_tpe_speedups.py asks hundreds of
configurations both ways and compares them; the log densities agree to 1e-9, narrow ranges
far from 0 included). `install` puts them only on a plain `TPESampler` of an Optuna version
they were checked against (`TESTED_OPTUNA`); the split and the acquisition also need
Optuna's own Parzen estimator, and fall back to Optuna's code for anything else
(categorical or stepped parameters, several objectives, no constant liar).
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from optimizer.tuning._tpe_density import CONTINUOUS, log_gauss_mass, mixture_log_pdf

__all__ = [
    "TESTED_OPTUNA",
    "Installed",
    "InternalReprCache",
    "SplitCachingSample",
    "fast_acquisition",
    "install",
    "log_gauss_mass",
    "mixture_log_pdf",
]

#: Optuna releases whose TPE internals these were checked against (tests compare proposals):
#: 5.1.0 is the lock's (uv.lock); 5.0.0 was checked before it (its TPE module differs from
#: 5.1.0's only in a comment and a docstring). Any other release keeps Optuna's own code.
TESTED_OPTUNA = ("5.0.0", "5.1.0")

try:  # Optuna's private TPE internals; without them the sampler runs unchanged.
    from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator
    from optuna.samplers._tpe.sampler import _split_trials, default_gamma
except ImportError:  # pragma: no cover - another Optuna version
    _split_trials = default_gamma = _ParzenEstimator = None  # type: ignore[assignment,misc]


class InternalReprCache:
    """TPE's `_get_internal_repr` with each finished trial's converted parameters kept.

    TPE converts the parameters of every trial of the study into arrays twice per ask (for
    the below and the above group): at a thousand trials that is thousands of
    `to_internal_repr` calls per ask, the same for every ask, since a finished trial's
    parameters never change. This does the same conversion once per (trial, search space)
    and builds the same arrays from the kept values. Trials not yet finished are converted
    on every call, as Optuna does. Keyed by the in-memory storage's trial ids: `clear` on
    every new storage.
    """

    def __init__(self, sampler: optuna.samplers.TPESampler) -> None:
        self._sampler = sampler
        # search space -> trial id -> converted parameters (None: the trial lacks some)
        self._kept: dict[tuple[tuple[str, BaseDistribution], ...], dict[int, tuple | None]] = {}

    def clear(self) -> None:
        self._kept.clear()

    def __call__(
        self,
        trials: list[FrozenTrial],
        search_space: dict[str, BaseDistribution],
        study: optuna.Study,
    ) -> dict[str, np.ndarray]:
        space = tuple(search_space.items())
        kept = self._kept.setdefault(space, {})
        rows = []
        for trial in trials:
            tid = trial._trial_id
            if tid in kept:
                row = kept[tid]
            else:
                row = self._convert(trial, space, study)
                if trial.state.is_finished():
                    kept[tid] = row
            if row is not None:
                rows.append(row)
        return {name: np.asarray([row[i] for row in rows]) for i, (name, _) in enumerate(space)}

    def _convert(
        self, trial: FrozenTrial, space: tuple[tuple[str, BaseDistribution], ...], study: Any
    ) -> tuple | None:
        # As TPESampler._get_internal_repr: a trial lacking a parameter of the space is left out.
        params = self._sampler._get_params(trial, study)
        if not all(name in params for name, _ in space):
            return None
        return tuple(dist.to_internal_repr(params[name]) for name, dist in space)


def fast_acquisition(samples: dict[str, np.ndarray], mpe_below: Any, mpe_above: Any) -> np.ndarray:
    """TPE's acquisition, log l(x) - log g(x), with `mixture_log_pdf` where it applies."""
    below = mixture_log_pdf(mpe_below, samples)
    if below is None:
        below = mpe_below.log_pdf(samples)
    above = mixture_log_pdf(mpe_above, samples)
    if above is None:
        above = mpe_above.log_pdf(samples)
    return below - above


class SplitCachingSample:
    """TPESampler._sample for a single-objective, constant-liar TPE, with the part that
    depends only on finished trials kept between asks.

    Optuna splits every trial of the study into a below and an above group on every ask:
    finished trials by their values, running ones always above. Between the K asks of one
    lease call the finished trials do not change, only the running ones grow; so the split of
    the finished trials (and the below estimator, built from them alone) is kept, keyed by
    the finished trials' ids, and the running trials are merged into the above group in
    number order, as Optuna's split would place them. Everything else is Optuna's own code
    (estimators, candidates, acquisition, comparison), called in Optuna's order with the same
    random state, so the proposals are the same. `clear` on every new storage.
    """

    def __init__(self, sampler: optuna.samplers.TPESampler) -> None:
        self._sampler = sampler
        self._original = sampler._sample
        self._key: tuple | None = None
        self._split: tuple[list[FrozenTrial], list[FrozenTrial]] = ([], [])
        self._below: dict[tuple, Any] = {}
        self._above_numbers: list[int] = []

    def clear(self) -> None:
        self._key, self._split, self._below, self._above_numbers = None, ([], []), {}, []

    def __call__(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        sampler = self._sampler
        if study._is_multi_objective() or not sampler._constant_liar:
            return self._original(study, trial, search_space)
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        trials = study._get_trials(deepcopy=False, states=states, use_cache=False)
        running_state = TrialState.RUNNING
        finished = [t for t in trials if t.state is not running_state]
        running = [t for t in trials if t.state is running_state and t.number != trial.number]
        if sampler._gamma is None:
            sampler._gamma = default_gamma
        n_below = sampler._gamma(len(finished))
        # Within one storage (`clear` comes with every new one) trials only ever finish, so
        # the number of finished trials names the set.
        key = (id(study._storage), n_below, len(finished))
        if key != self._key:
            self._key, self._below = key, {}
            self._split = _split_trials(study, finished, n_below)
            self._above_numbers = [t.number for t in self._split[1]]
        below, above_finished = self._split
        above = _merge_by_number(above_finished, self._above_numbers, running)

        space_key = tuple(search_space.items())
        mpe_below = self._below.get(space_key)
        if mpe_below is None:
            mpe_below = sampler._build_parzen_estimator(
                study, search_space, below, handle_below=True
            )
            self._below[space_key] = mpe_below
        mpe_above = sampler._build_parzen_estimator(study, search_space, above, handle_below=False)
        samples_below = mpe_below.sample(sampler._rng.rng, sampler._n_ei_candidates)
        acquisition = sampler._compute_acquisition_func(samples_below, mpe_below, mpe_above)
        ret = sampler._compare(samples_below, acquisition)
        for name, dist in search_space.items():
            ret[name] = dist.to_external_repr(ret[name])
        return ret


def _merge_by_number(
    ordered: list[FrozenTrial], numbers: list[int], others: list[FrozenTrial]
) -> list[FrozenTrial]:
    """`ordered` (sorted by trial number, `numbers` theirs) with the few `others` (sorted by
    number, none in `ordered`) put in their places: sorted(ordered + others) by number."""
    out: list[FrozenTrial] = []
    start = 0
    for t in others:
        at = bisect.bisect_left(numbers, t.number, lo=start)
        out += ordered[start:at]
        out.append(t)
        start = at
    out += ordered[start:]
    return out


class Installed:
    """What `install` put on a sampler; `clear` with every new storage."""

    def __init__(self, *parts: Any) -> None:
        self._parts = parts

    def clear(self) -> None:
        for part in self._parts:
            part.clear()


def install(sampler: optuna.samplers.BaseSampler) -> Installed | None:
    """Install the speed-ups on a plain TPE sampler of an Optuna version they were checked
    against (`TESTED_OPTUNA`); returns a handle to `clear` with each new storage, or None:
    then the sampler runs Optuna's own code, slower and otherwise the same. Installing twice
    on one sampler returns the first handle."""
    installed = getattr(sampler, "_acprop_tuner_speedups", None)
    if isinstance(installed, Installed):
        return installed
    wanted = (
        "_get_internal_repr",
        "_get_params",
        "_compute_acquisition_func",
        "_sample",
        "_build_parzen_estimator",
        "_compare",
    )
    if (
        type(sampler) is not optuna.samplers.TPESampler
        or optuna.__version__ not in TESTED_OPTUNA
        or not all(callable(getattr(sampler, name, None)) for name in wanted)
        or not all(
            hasattr(sampler, a) for a in ("_constant_liar", "_gamma", "_rng", "_n_ei_candidates")
        )
    ):
        return None
    cache = InternalReprCache(sampler)
    sampler._get_internal_repr = cache  # type: ignore[method-assign]
    parts: list[Any] = [cache]
    # The acquisition reads Optuna's own estimator's internals; a custom estimator class
    # (the sampler's documented extension point) keeps Optuna's code.
    if CONTINUOUS and getattr(sampler, "_parzen_estimator_cls", None) is _ParzenEstimator:
        sampler._compute_acquisition_func = fast_acquisition  # type: ignore[method-assign,assignment]
        split = SplitCachingSample(sampler)
        sampler._sample = split  # type: ignore[method-assign]
        parts.append(split)
    handle = Installed(*parts)
    sampler._acprop_tuner_speedups = handle  # type: ignore[attr-defined]
    return handle
