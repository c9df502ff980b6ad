"""A job's baselines without JAX (issue #18): the vocabulary and its bounds, the job spec's
default and stored form, the comparison on the same seeds and its one line, and the text the
CLI prints."""

from __future__ import annotations

import math

import pytest

from optimizer.baselines import (
    DEFAULT_BASELINES,
    MAX_BASELINES,
    OPTIMIZERS,
    Baseline,
    BaselineError,
    short_number,
)
from optimizer.job_spec import JobSpec, JobSpecError
from optimizer.recommendation.baselines import SeedRun, compare, comparison_line
from optimizer.recommendation.text import describe


def test_the_default_is_adam_at_1e_3_and_prodigy() -> None:
    assert [b.label for b in DEFAULT_BASELINES] == ["Adam 1e-3", "Prodigy"]
    assert JobSpec.for_task("rosenbrock").baselines == DEFAULT_BASELINES
    assert set(OPTIMIZERS) == {"adam", "adamw", "prodigy", "dadapt_adamw", "schedule_free_adamw"}


def test_settings_are_resolved_bounded_and_labelled() -> None:
    b = Baseline("adamw", {"learning_rate": 3e-4, "weight_decay": 0.01})
    assert dict(b.settings) == {
        "learning_rate": 3e-4,
        "b1": 0.9,
        "b2": 0.999,
        "eps": 1e-8,
        "weight_decay": 0.01,
    }
    assert b.label == "AdamW 3e-4 (weight_decay 0.01)"
    assert Baseline("schedule_free_adamw", {"warmup_steps": 10}).settings["warmup_steps"] == 10
    for optimizer, settings, message in [
        ("sgd", {}, "unknown baseline optimizer 'sgd'"),
        ("adam", {"learning_rate": 0.0}, r"learning_rate must be a finite number in \(0, 10\]"),
        ("adam", {"learning_rate": math.nan}, "learning_rate must be"),
        ("adam", {"b1": 1.0}, r"b1 must be a finite number in \[0, 0.9999\]"),
        ("prodigy", {"learning_rate": math.inf}, "learning_rate must be"),
        ("schedule_free_adamw", {"warmup_steps": 1.5}, "warmup_steps must be a whole number"),
        ("prodigy", {"b1": 0.9}, "prodigy takes learning_rate, weight_decay, not 'b1'"),
        ("adam", {"learning_rate": True}, "learning_rate must be"),
    ]:
        with pytest.raises(BaselineError, match=message):
            Baseline(optimizer, settings)
    assert [short_number(v) for v in (1e-3, 2.5e-4, 0.01, 1.0, 1e5)] == [
        "1e-3",
        "2.5e-4",
        "0.01",
        "1",
        "1e5",
    ]


def test_the_spec_stores_its_baselines_and_reads_them_back() -> None:
    spec = JobSpec.for_task("rosenbrock", baselines=(Baseline("dadapt_adamw"),))
    stored = spec.to_dict()
    assert stored["baselines"] == [
        {"optimizer": "dadapt_adamw", "learning_rate": 1.0, "weight_decay": 0.0}
    ]
    assert JobSpec.from_dict(stored) == spec
    assert JobSpec.from_dict({**stored, "baselines": []}).baselines == ()
    # A job stored before baselines existed had none.
    old = {k: v for k, v in stored.items() if k != "baselines"}
    assert JobSpec.from_dict(old).baselines == ()
    with pytest.raises(JobSpecError, match="unknown baseline optimizer"):
        JobSpec.from_dict({**stored, "baselines": [{"optimizer": "lion"}]})
    with pytest.raises(JobSpecError, match=f"at most {MAX_BASELINES} baselines"):
        JobSpec.for_task("rosenbrock", baselines=(Baseline("adam"),) * (MAX_BASELINES + 1))


def _run(losses: tuple[float | None, ...], diverged: tuple[bool, ...] = (False, False)) -> SeedRun:
    return SeedRun(seeds=(0, 1), losses=losses, diverged=diverged)


def test_the_comparison_is_on_the_same_seeds() -> None:
    adam, prodigy = _run((0.5, 0.7)), _run((0.2, 0.3), (False, True))
    acprop = _run((0.5, 0.4))
    results = compare(
        [("adam", {"learning_rate": 1e-3}, "Adam 1e-3", adam), ("prodigy", {}, "Prodigy", prodigy)],
        acprop,
        "check run",
    )
    a, p = results
    assert a.validation_loss == pytest.approx(0.6) and a.seed_std == pytest.approx(0.1414213)
    assert a.acprop_validation_loss == pytest.approx(0.45)
    assert a.relative_difference == pytest.approx((0.45 - 0.6) / 0.6)
    assert p.diverged_seeds == (1,) and p.relative_difference == pytest.approx((0.45 - 0.25) / 0.25)
    assert comparison_line(results) == (
        "ACProp at the recommendation: 25 % lower loss than Adam 1e-3, "
        "80 % higher than Prodigy (1 of 2 seeds diverged)"
    )
    # ACProp measured on other seeds is no comparison.
    elsewhere = SeedRun(seeds=(2, 3), losses=(0.1, 0.1))
    (b,) = compare([("adam", {}, "Adam 1e-3", adam)], elsewhere, "trial 4")
    assert b.relative_difference is None and b.acprop_validation_loss is None
    # A seed without a loss leaves the mean undefined; a diverged ACProp seed is said.
    partial = compare([("adam", {}, "Adam 1e-3", _run((0.5, None)))], acprop, "trial 2")
    assert partial[0].validation_loss is None and partial[0].relative_difference is None
    diverging = compare(
        [("adam", {}, "Adam 1e-3", adam)], _run((0.6, 0.6), (True, False)), "trial 2"
    )
    assert comparison_line(diverging) == (
        "ACProp at the recommendation: the same loss as Adam 1e-3; ACProp diverged on 1 of 2 seeds"
    )


def test_the_line_says_what_is_missing() -> None:
    waiting = SeedRun(seeds=(0, 1), state="running")
    failed = SeedRun(seeds=(0, 1), state="failed", error="ValueError: no")
    results = compare(
        [
            ("adam", {}, "Adam 1e-3", _run((0.5, 0.7))),
            ("prodigy", {}, "Prodigy", waiting),
            ("adamw", {}, "AdamW 1e-3", failed),
        ],
        None,
        None,
    )
    assert comparison_line(results) == (
        "Baselines: Adam 1e-3 0.6, Prodigy still training, AdamW 1e-3 failed; "
        "ACProp at the recommendation not yet measured on their seeds"
    )
    assert comparison_line(()) is None


def test_the_cli_text_lists_the_baselines_and_the_line() -> None:
    (a,) = compare([("adam", {}, "Adam 1e-3", _run((0.5, 0.7)))], _run((0.5, 0.4)), "trial 3")
    rec = {
        "status": "final",
        "learning_rate": 1e-3,
        **{"b1": 0.9, "b2": 0.999, "eps": 1e-16, "eps_root": 1e-8, "weight_decay": 0.0},
        "expected_loss": {"mean": 0.45, "seed_std": 0.05, "model_std": 0.01},
        "lr_interval": [5e-4, 2e-3],
        "divergence_lr": None,
        "evidence": {
            "n_trials": 12,
            "n_trials_used": 12,
            "n_seeds_used": 24,
            "n_trials_diverged": 0,
            "tuned": ["learning_rate"],
        },
        "margin": 2.0,
        "optax": "optax.contrib.acprop(learning_rate=0.001)",
        "baselines": [a.__dict__],
        "comparison": comparison_line([a]),
    }
    text = describe(rec)
    assert "  baselines (the same 2 seeds and steps, each at its settings):" in text
    assert "    Adam 1e-3              0.6 (seed spread 0.14)" in text
    assert "  ACProp at the recommendation: 25 % lower loss than Adam 1e-3" in text
    assert text.endswith("optax.contrib.acprop(learning_rate=0.001)")
