"""The request schema of a job's ``baselines``: one model per reference optimizer, generated
from the optimizer's vocabulary (optimizer/baselines.py), so each setting's default and range
have one home and the OpenAPI description lists them.

``{"optimizer": "adam", "learning_rate": 0.001}``: the optimizer's name and any of its
settings (the rest take optax's defaults). Strict like every request (service/inbound.py):
unknown settings, non-finite or out-of-range values and a baseline listed twice are a 422
naming the entry, before anything is stored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, create_model
from pydantic_core import PydanticCustomError

from optimizer.baselines import MAX_BASELINES, OPTIMIZERS, Baseline, OptimizerSpec
from service.inbound import InboundModel

__all__ = ["BASELINES_FIELD", "BaselineIn", "to_baselines"]


def _model(name: str, spec: OptimizerSpec) -> type[InboundModel]:
    fields: dict[str, Any] = {
        "optimizer": (Literal[name], Field(description=spec.description)),  # type: ignore[valid-type]
    }
    for setting_name, s in spec.settings.items():
        kind: Any = StrictInt if s.integer else float
        fields[setting_name] = (
            kind,
            Field(
                s.default,
                description=f"{s.description}; default {s.default:g}",
                le=s.high,
                ge=s.low if s.low_inclusive else None,
                gt=None if s.low_inclusive else s.low,
            ),
        )
    title = "".join(part.capitalize() for part in name.split("_")) + "Baseline"
    return create_model(title, __base__=InboundModel, **fields)  # type: ignore[no-any-return]


_MODELS = tuple(_model(name, spec) for name, spec in OPTIMIZERS.items())

#: One baseline of a job's request, told apart by its ``optimizer``.
BaselineIn = Annotated[
    _MODELS[0] | _MODELS[1] | _MODELS[2] | _MODELS[3] | _MODELS[4],  # type: ignore[valid-type]
    Field(discriminator="optimizer"),
]
assert len(_MODELS) == 5, "BaselineIn lists every optimizer of optimizer/baselines.py"

BASELINES_FIELD: Any = Field(
    None,
    max_length=MAX_BASELINES,
    description="reference optimizers trained on the job's task, seeds and steps beside its "
    "trials, shown in the recommendation; absent or null: Adam at 1e-3 and Prodigy; [] for none",
)


def to_baselines(entries: list[Any]) -> tuple[Baseline, ...]:
    """The request's baselines as the optimizer's, each listed once.

    Raises:
        PydanticCustomError: a baseline listed twice (a 422).
    """
    out: list[Baseline] = []
    for entry in entries:
        data = entry.model_dump()
        baseline = Baseline(data.pop("optimizer"), data)
        if baseline in out:
            raise PydanticCustomError(
                "value_error",
                "baseline {label} is listed twice: list each reference optimizer once",
                {"label": baseline.label},
            )
        out.append(baseline)
    return tuple(out)
