"""The optional warm-start study (bench/warm_start.py): its designs and its summary."""

from __future__ import annotations

import math

import pytest

from bench import warm_start as study
from bench.recommendation import JOB_TRIALS
from optimizer.space import SearchSpace
from optimizer.warm_start import warm_start_configs


def test_every_design_is_a_six_trial_sweep_and_the_chosen_one_is_the_services() -> None:
    assert all(len(sweep) == 6 for sweep in study.DESIGNS.values())
    chosen = [s for name, s in study.DESIGNS.items() if "(chosen)" in name]
    assert chosen == [warm_start_configs(SearchSpace(), JOB_TRIALS)]
    (before,) = [s for name, s in study.DESIGNS.items() if "(before)" in name]
    assert sorted({c["learning_rate"] for c in before}) == pytest.approx([1e-4, 1e-3, 1e-2])
    assert {c["eps_root"] for c in before} == {1e-8, 1e-16}
    assert all(c["b1"] == 0.9 and c["b2"] == 0.999 for s in study.DESIGNS.values() for c in s)


def test_summary_means_per_seed_set_and_a_missing_answer_leaves_the_mean_undefined() -> None:
    designs = list(study.DESIGNS)
    regrets = {d: {str(s): 1.0 for s in range(23)} for d in designs}
    regrets[designs[0]]["0"] = 14.0  # a chosen-on seed
    regrets[designs[1]]["15"] = None  # a held-out run without an answer
    tasks = [{"task": "t", "reference_lr": 1e-3, "regret_pct": regrets}]
    chosen = study._summary(tasks, study.CHOSEN_SEEDS)
    held_out = study._summary(tasks, study.HELD_OUT_SEEDS)
    assert math.isclose(chosen[designs[0]]["mean_regret_pct"]["t"], 2.0)  # (14 + 12) / 13
    assert held_out[designs[0]]["worst_task_mean_regret_pct"] == 1.0
    assert held_out[designs[1]]["mean_regret_pct"]["t"] is None
    assert held_out[designs[1]]["worst_task_mean_regret_pct"] is None
    page = study.markdown(
        {
            "summary": {
                "tasks": ["t"],
                "chosen_on_seeds": chosen,
                "held_out_seeds": held_out,
                "all_seeds": study._summary(tasks, study.CHOSEN_SEEDS + study.HELD_OUT_SEEDS),
                "wall_s": 1.0,
            }
        }
    )
    assert "| +2.00 |" in page and "n/a" in page
