"""Property-based API testing from the OpenAPI description (schemathesis), in process, on
SQLite and Postgres: positive and negative data for every operation, authenticated, with a
bounded number of examples. No 5xx and no response that violates the schema.

The operations are driven through Hypothesis directly (``APIOperation.as_strategy``) rather
than schemathesis' pytest plugin, whose lazy fixture loader does not run on pytest 9.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.db.models import KeyScope
from tests.support.databases import Key, KeyFactory

MAX_EXAMPLES = 12
# The worker protocol (#4) and the data sets workers fetch take worker keys.
WORKER_PATHS = ("/api/v1/leases", "/api/v1/worker/")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def key(make_key: KeyFactory) -> Key:
    return make_key()


@pytest.fixture(scope="module")
def worker_key(make_key: KeyFactory) -> Key:
    return make_key(scope=KeyScope.WORKER)


def _runner(
    operation: schemathesis.APIOperation, mode: GenerationMode, headers: dict[str, str]
) -> Callable[[], None]:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    return run


def _has_inputs(operation: schemathesis.APIOperation) -> bool:
    definition = operation.definition.raw
    return bool(definition.get("parameters") or definition.get("requestBody"))


def test_api_conforms_to_its_schema(
    app: FastAPI, client: object, key: Key, worker_key: Key
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9  # every route of the jobs API and health
    failures: list[str] = []
    for operation in operations:
        # Worker routes take worker keys; everything else a user key.
        headers = (worker_key if operation.path.startswith(WORKER_PATHS) else key).headers
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _runner(operation, mode, headers)()
            except Unsatisfiable:
                # No negative data exists for an operation without parameters or body.
                if mode is GenerationMode.NEGATIVE and not _has_inputs(operation):
                    continue
                failures.append(f"{operation.label} [{mode.value}]: no data could be generated")
            except Exception as exc:  # collect every operation's failure, then report
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
    assert not failures, "\n\n".join(failures)


def _poisoned(value: object, draw: Callable[[object], object]) -> object:
    """`value` with each string (keys included) replaced, at random, by a hostile one."""
    if isinstance(value, str):
        return draw(HOSTILE) if draw(st.booleans()) else value
    if isinstance(value, list):
        return [_poisoned(v, draw) for v in value]
    if isinstance(value, dict):
        return {
            (draw(HOSTILE) if draw(st.booleans()) else k): _poisoned(v, draw)
            for k, v in value.items()
        }
    return value


# NUL, lone surrogates (which schemathesis' utf-8 codec never makes), oversize text, deep
# nesting, and arbitrary text drawn from every code point, surrogates included.
HOSTILE = st.one_of(
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfffy", "x" * 20_000]),
    st.text(alphabet=st.characters(codec=None, min_codepoint=0), max_size=40),
)
DEEP = "[" * 300 + '"x"' + "]" * 300


def _hostile_runner(
    client: object, operation: schemathesis.APIOperation, headers: dict[str, str]
) -> Callable[[], None]:
    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE), data=st.data())
    @settings(
        max_examples=MAX_EXAMPLES * 2,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case, data: st.DataObject) -> None:
        raw = (
            DEEP
            if data.draw(st.integers(0, 5)) == 0
            else json.dumps(_poisoned(case.body, data.draw))
        )
        response = client.post(  # type: ignore[attr-defined]
            operation.path,
            content=raw.encode(),
            headers={**headers, "Content-Type": "application/json"},
        )
        assert response.status_code < 500, (raw[:200], response.status_code, response.text)
        if response.status_code >= 400:
            assert set(response.json()) == {"error", "detail"}, response.text

    return run


def test_hostile_strings_in_generated_bodies_never_get_a_5xx(
    app: FastAPI, client: object, key: Key, worker_key: Key
) -> None:
    """Schemathesis' valid bodies for every operation that takes one, each string then
    replaced (at random) by NUL, lone surrogates, oversize or arbitrary text, or a value nested
    300 levels deep: never a 5xx, and the error shape holds."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [r.ok() for r in schema.get_all_operations()]
    with_body = [op for op in operations if op.definition.raw.get("requestBody")]
    assert len(with_body) >= 7  # jobs and every write of the worker protocol
    failures: list[str] = []
    for operation in with_body:
        headers = (worker_key if operation.path.startswith(WORKER_PATHS) else key).headers
        try:
            _hostile_runner(client, operation, headers)()
        except Exception as exc:
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
