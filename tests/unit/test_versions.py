"""The versions that travel with results (optimizer/versions.py, the worker's completion)."""

from __future__ import annotations

from importlib import metadata

from optimizer import versions
from worker.protocol import Result

A = {"jax": "0.10.2", "jaxlib": "0.10.2", "optax": "0.2.8"}


def test_installed_reads_this_environment_without_importing_jax() -> None:
    got = versions.installed()
    assert got == {name: metadata.version(name) for name in versions.TRAINING_PACKAGES}


def test_one_version_set_lists_it_without_warning() -> None:
    listed, warnings = versions.summarise([A, dict(A), A])
    assert listed == (versions.TrainedWith(**A, n_trials=3),)
    assert warnings == ()


def test_different_versions_are_listed_most_trials_first_and_warned_about() -> None:
    b = {**A, "optax": "0.2.9", "jaxlib": "0.10.3"}
    listed, warnings = versions.summarise([b, A, A, None])
    assert listed == (
        versions.TrainedWith(**A, n_trials=2),
        versions.TrainedWith(None, None, None, n_trials=1),
        versions.TrainedWith(**b, n_trials=1),
    )
    assert len(warnings) == 2
    assert "different versions of jaxlib, optax" in warnings[0]
    assert "jaxlib 0.10.2, optax 0.2.8 (2 trials)" in warnings[0]
    assert "jaxlib 0.10.3, optax 0.2.9 (1 trial)" in warnings[0]
    assert "1 trial came from workers that did not report" in warnings[1]


def test_a_worker_result_carries_its_versions() -> None:
    r = Result("t", (1.0,), (1.0,), (1.0,), (None,), False, 0.5, 0.0)
    assert r.to_json()["versions"] == versions.installed()
