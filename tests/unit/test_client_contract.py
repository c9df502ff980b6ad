"""The Python client follows the API's OpenAPI description: each of its result types has a
field for every property the server's schema gives that type (the client is a leaf that
imports nothing of the service, so this test is what keeps the two in step), and the names it
lists (hyperparameters, samplers, pruners) are the optimizer's."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest

from acprop_tuner import client
from acprop_tuner.client import _datasets, _models
from optimizer.acprop import HYPERPARAMETERS
from optimizer.tuning.names import PRUNERS, SAMPLERS
from service.app import create_app
from service.settings import Settings


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data_dir: Path = tmp_path_factory.mktemp("data")
    app = create_app(Settings(data_dir=data_dir), check_schema=False)
    return dict(app.openapi()["components"]["schemas"])


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} - {"raw"}


@pytest.mark.parametrize(
    ("client_type", "schema"),
    [
        (_models.Recommendation, "RecommendationOut"),
        (_models.Freshness, "Freshness"),
        (_models.ExpectedLoss, "ExpectedLoss"),
        (_models.Evidence, "Evidence"),
        (_models.Progress, "Progress"),
        (_models.Budget, "BudgetOut"),
        (_models.Risk, "Risk"),
        (_models.BaselineResult, "BaselineResult"),
        (_models.JobBaseline, "BaselineOut"),
        (_datasets.Dataset, "DatasetOut"),
    ],
)
def test_client_types_have_exactly_the_schemas_properties(
    schemas: dict[str, Any], client_type: type, schema: str
) -> None:
    assert _fields(client_type) == set(schemas[schema]["properties"])


def test_the_client_trial_has_every_property_of_the_server_trial(schemas: dict[str, Any]) -> None:
    server = set(schemas["TrialOut"]["properties"])
    assert server <= _fields(_models.Trial), server - _fields(_models.Trial)


def test_the_client_job_has_every_property_of_the_server_job(schemas: dict[str, Any]) -> None:
    server = set(schemas["JobOut"]["properties"]) - {"task"}  # split into task, task_options
    assert server <= _fields(_models.Job), server - _fields(_models.Job)
    assert {"task", "task_options"} <= _fields(_models.Job)


def test_the_client_names_the_optimizers_vocabulary() -> None:
    assert _models._HYPERPARAMETERS == HYPERPARAMETERS
    assert typing.get_args(client.Sampler) == SAMPLERS
    assert typing.get_args(client.Pruner) == PRUNERS
