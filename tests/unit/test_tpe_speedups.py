"""The exact TPE speed-ups of the job mirrors: same densities and same proposals as Optuna."""

from __future__ import annotations

import random

import numpy as np
import optuna
import pytest
from optuna.samplers._tpe import _truncnorm

from optimizer.tuning import tpe_speedups

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "learning_rate": optuna.distributions.FloatDistribution(1e-5, 1.0, log=True),
    "b1": optuna.distributions.FloatDistribution(0.8, 0.99),
    "b2": optuna.distributions.FloatDistribution(0.9, 0.9999),
    "eps_root": optuna.distributions.FloatDistribution(1e-16, 1e-6, log=True),
}


def test_log_gauss_mass_matches_optuna_in_both_tails() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(-40, 40, 20_000)
    b = a + 10 ** rng.uniform(-6, 2, a.size)
    ours, theirs = tpe_speedups.log_gauss_mass(a, b), _truncnorm._log_gauss_mass(a, b)
    finite = np.isfinite(theirs)
    assert finite.mean() > 0.95
    assert np.array_equal(np.isfinite(ours), finite)
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=1e-9, atol=1e-12)
    # The three cases: left tail, right tail, straddling zero.
    np.testing.assert_allclose(
        tpe_speedups.log_gauss_mass(np.array([-30.0, 25.0, -1.0]), np.array([-29.0, 26.0, 2.0])),
        _truncnorm._log_gauss_mass(np.array([-30.0, 25.0, -1.0]), np.array([-29.0, 26.0, 2.0])),
        rtol=1e-12,
    )


def _study(n: int, seed: int, space: dict = SPACE) -> optuna.Study:
    """A study of `n` trials: complete, pruned (with intermediate losses) and running ones."""
    rng = random.Random(seed)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for i in range(n):
        trial = study.ask(space)
        if i % 7 == 3:
            trial.report(rng.random(), 10)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif i % 11 != 5:  # every 11th stays running
            study.tell(trial, rng.random())
    return study


# Narrow ranges far from 0, where an expanded square would cancel most digits.
NARROW = {
    "b2": optuna.distributions.FloatDistribution(0.99999, 0.999999),
    "offset": optuna.distributions.FloatDistribution(1e6, 1e6 + 1),
    "log_narrow": optuna.distributions.FloatDistribution(1e3, 1.01e3, log=True),
    "b1": optuna.distributions.FloatDistribution(0.8, 0.99),
}


@pytest.mark.parametrize(
    ("n_trials", "space"), [(12, SPACE), (300, SPACE), (300, NARROW)], ids=["12", "300", "narrow"]
)
def test_mixture_log_pdf_matches_optuna(n_trials: int, space: dict) -> None:
    """On the below and above estimators TPE builds, at candidates inside and outside the
    bounds: the same log densities as `_ParzenEstimator.log_pdf`."""
    study = _study(n_trials, seed=n_trials, space=space)
    sampler = optuna.samplers.TPESampler(seed=1)
    trials = study.get_trials(deepcopy=False)
    half = len(trials) // 4
    rng = np.random.RandomState(3)
    for group, below in ((trials[:half], True), (trials[half:], False)):
        estimator = sampler._build_parzen_estimator(study, space, group, handle_below=below)
        samples = estimator.sample(rng, 64)
        samples["b1"][:3] = [0.5, 0.995, 0.8]  # two outside the bounds, one on the edge
        ours = tpe_speedups.mixture_log_pdf(estimator, samples)
        theirs = estimator.log_pdf(samples)
        assert ours is not None
        assert np.array_equal(np.isneginf(ours), np.isneginf(theirs))
        assert np.isneginf(ours).sum() == 2
        inside = np.isfinite(theirs)
        np.testing.assert_allclose(ours[inside], theirs[inside], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "space",
    [
        SPACE,
        NARROW,
        # A categorical and a stepped parameter: their estimators fall back to Optuna's code.
        {
            **SPACE,
            "schedule": optuna.distributions.CategoricalDistribution(["cosine", "constant"]),
            "warmup": optuna.distributions.IntDistribution(0, 100, step=10),
        },
    ],
    ids=["continuous", "narrow", "mixed"],
)
def test_sampler_with_speedups_proposes_exactly_what_optuna_does(
    space: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hundreds of asks, pending-aware, with trials finishing in between: identical proposals."""
    fast_calls = []
    fast = tpe_speedups.mixture_log_pdf

    def counted(*args: object) -> object:
        result = fast(*args)  # type: ignore[arg-type]
        fast_calls.append(result is not None)
        return result

    monkeypatch.setattr(tpe_speedups, "mixture_log_pdf", counted)
    proposals = []
    for install in (False, True):
        study = _study(200, seed=5, space=space)
        sampler = optuna.samplers.TPESampler(seed=9)
        study.sampler = sampler
        if install:
            assert tpe_speedups.install(sampler) is not None
            assert isinstance(sampler._sample, tpe_speedups.SplitCachingSample)
        rng = random.Random(1)
        asked = []
        for i in range(150):
            trial = study.ask(space)
            asked.append(trial.params)
            if i % 3 == 0:
                study.tell(trial, rng.random())
        proposals.append(asked)
    assert proposals[0] == proposals[1]
    # The closed form ran where it applies (continuous spaces) and fell back elsewhere.
    assert fast_calls and all(fast_calls) == ("schedule" not in space)


@pytest.mark.parametrize(
    "sampler_kwargs",
    [{"constant_liar": False}, {"n_startup_trials": 3}],
    ids=["no-constant-liar", "few-startup"],
)
def test_fallbacks_and_saturated_gamma_keep_the_proposals(sampler_kwargs: dict) -> None:
    """Without constant liar (Optuna's own `_sample` runs), and on a study of 400 trials
    (gamma saturated at 25 below) with many pruned ones, trials failing while running and
    finishing out of order: identical proposals."""
    proposals = []
    for install in (False, True):
        study = _study(400, seed=11)
        sampler = optuna.samplers.TPESampler(seed=4, **sampler_kwargs)
        study.sampler = sampler
        if install:
            assert tpe_speedups.install(sampler) is not None
        rng = random.Random(2)
        open_trials, asked = [], []
        for i in range(90):
            trial = study.ask(SPACE)
            asked.append(trial.params)
            open_trials.append(trial)
            if i % 4 == 3:  # finish an older one first, then fail or prune another
                study.tell(open_trials.pop(1), rng.random())
                victim = open_trials.pop(0)
                if i % 8 == 3:
                    study.tell(victim, state=optuna.trial.TrialState.FAIL)
                else:
                    victim.report(rng.random() * 0.01, 10)  # pruned, ranked into "below"
                    study.tell(victim, state=optuna.trial.TrialState.PRUNED)
        proposals.append(asked)
    assert proposals[0] == proposals[1]


def test_multi_objective_study_keeps_optunas_sampling() -> None:
    proposals = []
    for install in (False, True):
        study = optuna.create_study(
            directions=["minimize", "minimize"], sampler=optuna.samplers.TPESampler(seed=3)
        )
        if install:
            assert tpe_speedups.install(study.sampler) is not None
        rng = random.Random(0)
        asked = []
        for _ in range(40):
            trial = study.ask(SPACE)
            asked.append(trial.params)
            study.tell(trial, [rng.random(), rng.random()])
        proposals.append(asked)
    assert proposals[0] == proposals[1]


def _fake(number: int) -> optuna.trial.FrozenTrial:
    trial = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING)
    trial.number = number
    return trial


@pytest.mark.parametrize(
    "others",
    [[], [0, 1], [50, 60], [3, 4, 7], [0, 4, 60]],
    ids=["none", "below-all", "above-all", "between", "everywhere"],
)
def test_merge_by_number(others: list[int]) -> None:
    ordered = [_fake(n) for n in (2, 5, 6, 8, 40)]
    extra = [_fake(n) for n in others]
    merged = tpe_speedups._merge_by_number(ordered, [t.number for t in ordered], extra)
    assert [t.number for t in merged] == sorted(t.number for t in ordered + extra)


def test_install_twice_returns_the_first_handle() -> None:
    sampler = optuna.samplers.TPESampler(seed=0)
    first = tpe_speedups.install(sampler)
    assert first is not None and tpe_speedups.install(sampler) is first
    assert isinstance(sampler._sample, tpe_speedups.SplitCachingSample)
    assert sampler._sample._original.__func__ is optuna.samplers.TPESampler._sample


def test_custom_estimator_or_untested_optuna_keeps_optunas_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class MyEstimator(tpe_speedups._ParzenEstimator):  # type: ignore[misc,name-defined]
        pass

    sampler = optuna.samplers.TPESampler(seed=0)
    sampler._parzen_estimator_cls = MyEstimator
    assert tpe_speedups.install(sampler) is not None
    assert "_sample" not in vars(sampler) and "_compute_acquisition_func" not in vars(sampler)
    monkeypatch.setattr(optuna, "__version__", "5.9.0")
    assert tpe_speedups.install(optuna.samplers.TPESampler(seed=0)) is None


def test_mixed_space_estimators_fall_back() -> None:
    space = {**SPACE, "schedule": optuna.distributions.CategoricalDistribution(["a", "b"])}
    study = _study(30, seed=2, space=space)
    sampler = optuna.samplers.TPESampler(seed=1)
    estimator = sampler._build_parzen_estimator(
        study, space, study.get_trials(deepcopy=False), handle_below=True
    )
    assert (
        tpe_speedups.mixture_log_pdf(estimator, estimator.sample(np.random.RandomState(0), 4))
        is None
    )


def test_install_only_on_a_plain_tpe_sampler() -> None:
    assert tpe_speedups.install(optuna.samplers.RandomSampler()) is None

    class MyTPE(optuna.samplers.TPESampler):
        pass

    assert tpe_speedups.install(MyTPE()) is None


def _asked_configs(sampler: optuna.samplers.TPESampler, n: int = 60) -> list[dict]:
    study = _study(120, seed=8)
    study.sampler = sampler
    rng = random.Random(4)
    asked = []
    for i in range(n):
        trial = study.ask(SPACE)
        asked.append(trial.params)
        if i % 2 == 0:
            study.tell(trial, rng.random())
    return asked


def test_the_locked_optuna_is_one_the_speedups_were_checked_against() -> None:
    """The lock (uv.lock) installs an Optuna release the speed-ups were compared on; a lock
    refreshed to another release fails here until the comparison tests are run on it and the
    release is added to TESTED_OPTUNA."""
    assert optuna.__version__ in tpe_speedups.TESTED_OPTUNA
    assert tpe_speedups.install(optuna.samplers.TPESampler(seed=0)) is not None


@pytest.mark.parametrize("version", ["5.2.0", "5.1.1", "6.0.0", "4.9.0"])
def test_an_unlisted_optuna_release_falls_back_to_optunas_own_code(
    version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a release the speed-ups were not checked against (here: the version Optuna reports,
    patched), nothing is installed and the sampler proposes exactly what plain Optuna does."""
    plain = _asked_configs(optuna.samplers.TPESampler(seed=6))
    monkeypatch.setattr(optuna, "__version__", version)
    sampler = optuna.samplers.TPESampler(seed=6)
    assert tpe_speedups.install(sampler) is None
    assert not {"_get_internal_repr", "_sample", "_compute_acquisition_func"} & set(vars(sampler))
    assert _asked_configs(sampler) == plain


@pytest.mark.parametrize("missing", ["_get_internal_repr", "_sample", "_build_parzen_estimator"])
def test_a_release_without_the_private_methods_falls_back(
    missing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listed version whose TPE lacks a private method the speed-ups replace or call (as a
    release that renamed `_get_internal_repr` would): nothing is installed, sampling works."""
    plain = _asked_configs(optuna.samplers.TPESampler(seed=2), n=20)
    original = getattr(optuna.samplers.TPESampler, missing)
    monkeypatch.delattr(optuna.samplers.TPESampler, missing)
    sampler = optuna.samplers.TPESampler(seed=2)
    assert tpe_speedups.install(sampler) is None
    monkeypatch.setattr(optuna.samplers.TPESampler, missing, original, raising=False)
    assert _asked_configs(sampler, n=20) == plain
