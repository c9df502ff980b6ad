"""ACPropConfig: optax's defaults, validation that names the field and its range, and its
translations (dict, optax transformation, a line of Python)."""

from __future__ import annotations

import inspect
import math
import subprocess
import sys

import numpy as np
import pytest

from optimizer.acprop import HYPERPARAMETERS
from optimizer.config import ACPropConfig, ConfigError


def test_defaults_are_optax_defaults() -> None:
    import optax

    signature = inspect.signature(optax.contrib.acprop)
    config = ACPropConfig(learning_rate=0.01)
    for name in HYPERPARAMETERS[1:]:
        assert getattr(config, name) == signature.parameters[name].default, name


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("learning_rate", 0.0, "> 0"),
        ("learning_rate", -1e-3, "> 0"),
        ("learning_rate", math.inf, "> 0"),
        ("learning_rate", math.nan, "> 0"),
        ("b1", 1.0, "[0, 1)"),
        ("b1", -0.1, "[0, 1)"),
        ("b2", 1.0, "[0, 1)"),
        ("b2", math.nan, "[0, 1)"),
        ("eps", -1e-8, ">= 0"),
        ("eps", math.inf, ">= 0"),
        ("eps_root", -1e-16, ">= 0"),
        ("weight_decay", -0.1, ">= 0"),
        ("weight_decay", True, ">= 0"),
        ("learning_rate", "0.1", "> 0"),
    ],
)
def test_invalid_values_name_the_field_and_range(field: str, value: object, allowed: str) -> None:
    kwargs: dict[str, object] = {"learning_rate": 0.01, field: value}
    with pytest.raises(ConfigError) as raised:
        ACPropConfig(**kwargs)  # type: ignore[arg-type]
    message = str(raised.value)
    assert message.startswith(field), message
    assert allowed in message, message
    assert isinstance(raised.value, ValueError)


def test_boundaries_that_are_allowed() -> None:
    config = ACPropConfig(learning_rate=1e-12, b1=0.0, b2=0.0, eps=0.0, eps_root=0.0)
    assert config.b1 == 0.0 and config.eps_root == 0.0


def test_values_are_normalised_to_python_floats() -> None:
    config = ACPropConfig(learning_rate=np.float32(0.5), b1=np.float64(0.8), weight_decay=0)
    assert all(type(v) is float for v in config.to_dict().values())
    assert config.learning_rate == 0.5 and config.weight_decay == 0.0


def test_dict_round_trip_and_errors() -> None:
    config = ACPropConfig(learning_rate=3e-3, b2=0.99, eps_root=1e-8, weight_decay=1e-4)
    assert ACPropConfig.from_dict(config.to_dict()) == config
    assert ACPropConfig.from_dict({"learning_rate": 0.1}) == ACPropConfig(0.1)
    with pytest.raises(ConfigError, match="unknown ACProp field 'lr'"):
        ACPropConfig.from_dict({"lr": 0.1})
    with pytest.raises(ConfigError, match="learning_rate is required"):
        ACPropConfig.from_dict({"b1": 0.9})
    with pytest.raises(ConfigError, match="b2"):
        config.replace(b2=1.5)


def test_config_is_frozen() -> None:
    config = ACPropConfig(0.1)
    with pytest.raises(AttributeError):
        config.learning_rate = 0.2  # type: ignore[misc]


def test_optax_line_builds_the_same_optimizer() -> None:
    import jax.numpy as jnp
    import optax

    config = ACPropConfig(learning_rate=0.003, eps_root=1e-08)
    line = config.optax_line()
    assert line == (
        "optax.contrib.acprop(learning_rate=0.003, b1=0.9, b2=0.999, eps=1e-16, "
        "eps_root=1e-08, weight_decay=0.0)"
    )
    from_line = eval(line, {"optax": optax})
    params = jnp.array([0.5, -1.0, 2.0])
    grads = jnp.array([0.1, 0.0, -0.3])
    expected, _ = from_line.update(grads, from_line.init(params), params)
    injected = config.transformation()
    actual, state = injected.update(grads, injected.init(params), params)
    np.testing.assert_allclose(actual, expected, rtol=1e-6)
    assert float(state.hyperparams["eps_root"]) == np.float32(1e-8)


def test_importing_the_jax_free_modules_does_not_import_jax() -> None:
    code = (
        "import sys, optimizer.config, optimizer.tasks;"
        "optimizer.tasks.validate_task_options('mlp-digits', {});"
        "optimizer.config.ACPropConfig(0.1).optax_line();"
        "bad = [m for m in ('jax', 'optax', 'jaxlib') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
