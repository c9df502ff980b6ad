"""The recommendation's input and output records (frozen, JSON-safe, jax-free)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from optimizer.acprop import BOUNDS, HYPERPARAMETERS
from optimizer.recommendation._risk import Risk
from optimizer.recommendation.baselines import BaselineResult
from optimizer.versions import TrainedWith

Status = Literal["provisional", "final"]
BoundedBy = Literal["loss", "edge", "evidence", "range", "confirmation"]


class NotEnoughEvidence(Exception):
    """The trials so far cannot support a recommendation; ``reason`` says what is missing."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TrialOutcome:
    """One finished trial: its ACProp settings and what each seed reached.

    Attributes:
      number: the trial's number in its job (unique); used only to report evidence.
      params: ACProp settings by name (``learning_rate`` required; a missing setting means
        optax's default). Every value must be finite.
      losses: the final (validation) loss per seed; ``None`` where unknown. A non-finite
        loss counts as a diverged seed.
      diverged: per seed, whether training diverged; empty means no seed diverged.
      confirmation: a trial of the job's confirmation stage (optimizer/tuning/confirmation.py):
        a candidate trained again on fresh seeds, so its losses are a fresh measurement.
    """

    number: int
    params: Mapping[str, float]
    losses: tuple[float | None, ...]
    diverged: tuple[bool, ...] = ()
    confirmation: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.params) - set(HYPERPARAMETERS)
        if unknown:
            raise ValueError(f"trial {self.number}: unknown settings {sorted(unknown)}")
        if "learning_rate" not in self.params:
            raise ValueError(f"trial {self.number}: params must include learning_rate")
        for name, value in self.params.items():
            ok = isinstance(value, int | float) and BOUNDS[name].contains(value)
            if name in ("eps", "eps_root"):  # modelled on a log scale: 0 has no place there
                ok = ok and value > 0
            if not ok:
                raise ValueError(f"trial {self.number}: {name}={value!r} is out of range")
        if not self.diverged:
            object.__setattr__(self, "diverged", (False,) * len(self.losses))
        if len(self.diverged) != len(self.losses):
            raise ValueError(
                f"trial {self.number}: {len(self.losses)} losses but {len(self.diverged)} flags"
            )
        object.__setattr__(self, "params", {k: float(v) for k, v in self.params.items()})
        object.__setattr__(self, "losses", tuple(self.losses))
        object.__setattr__(self, "diverged", tuple(bool(d) for d in self.diverged))

    def seed_states(self) -> tuple[list[float], int, int]:
        """Returns ``(finite losses of non-diverged seeds, diverged seeds, missing seeds)``."""
        finite: list[float] = []
        n_diverged = n_missing = 0
        for loss, div in zip(self.losses, self.diverged, strict=True):
            if div or (loss is not None and not math.isfinite(loss)):
                n_diverged += 1
            elif loss is None:
                n_missing += 1
            else:
                finite.append(float(loss))
        return finite, n_diverged, n_missing

    def sort_key(self) -> tuple[Any, ...]:
        """A key that depends on the trial's content, so any input order gives one order."""
        p = tuple(self.params.get(n, math.nan) for n in HYPERPARAMETERS)
        losses = tuple((loss is None, 0.0 if loss is None else loss) for loss in self.losses)
        return (
            tuple((math.isnan(v), 0.0 if math.isnan(v) else v) for v in p),
            losses,
            self.diverged,
            self.confirmation,
            self.number,
        )


@dataclass(frozen=True)
class ExpectedLoss:
    """Predicted loss at the recommendation.

    Attributes:
      mean: the model's mean loss over seeds.
      seed_std: seed-to-seed standard deviation (pooled over the trials).
      model_std: the model's uncertainty about ``mean`` (posterior standard deviation).
    """

    mean: float
    seed_std: float
    model_std: float


@dataclass(frozen=True)
class Evidence:
    """What the recommendation rests on."""

    n_trials: int
    n_trials_used: int
    n_seeds_used: int
    n_trials_diverged: int
    n_seeds_diverged: int
    n_seeds_missing: int
    tuned: tuple[str, ...]
    trials_used: tuple[int, ...] = field(repr=False)
    #: The trials the loss model was fitted on: ``n_trials_used`` up to
    #: ``FULL_FIT_MAX_TRIALS``, a bounded subset of them above (None: not recorded).
    n_trials_fitted: int | None = None


@dataclass(frozen=True)
class Recommendation:
    """A recommended ACProp configuration and the evidence for it.

    Attributes:
      learning_rate, b1, b2, eps, eps_root, weight_decay: the configuration.
      expected_loss: predicted loss there (mean, seed spread, model uncertainty).
      lr_interval: ``(low, high)``: the learning rates (other settings as recommended, and
        never beyond the safe limit) whose predicted loss the evidence cannot tell from the
        best: within ``tolerance * |best|`` of it, or within two of the loss model's
        standard deviations there. Any of them is as good a start as the evidence shows.
      divergence_lr: the estimated divergence edge for this configuration; ``None`` when no
        seed of any trial diverged, or the edge lies above every learning rate tried.
      evidence: trial and seed counts.
      status: ``"provisional"`` while the job runs, ``"final"`` after.
      margin: the factor kept between the learning rate and the edge.
      tolerance: the relative loss tolerance of ``lr_interval``.
      optax: the configuration as a line of Python.
      bounded_by: what set the learning rate: ``loss`` (the predicted loss is best there),
        ``edge`` (a ``margin`` below the divergence edge), ``evidence`` (the largest
        learning rate seen to train without divergence nearby: safety is not extrapolated)
        ``range`` (the highest learning rate the trials explored), or ``confirmation``
        (the confirmation stage's candidate that measured best on fresh seeds).
      risk: the chance that a fresh seed diverges there, with its upper bound.
      baselines: the job's reference optimizers beside ACProp here, on the same seeds
        (optimizer/recommendation/baselines.py; the service fills them in).
      comparison: the same in one line for people (None without baselines).
    """

    learning_rate: float
    b1: float
    b2: float
    eps: float
    eps_root: float
    weight_decay: float
    expected_loss: ExpectedLoss
    lr_interval: tuple[float, float]
    divergence_lr: float | None
    evidence: Evidence
    status: Status
    margin: float
    tolerance: float
    optax: str
    bounded_by: BoundedBy = "loss"
    risk: Risk | None = None
    #: The job it answers for (the service fills it in).
    job_id: str | None = None
    #: The jax/jaxlib/optax versions its trials were trained with (the service fills it in).
    versions: tuple[TrainedWith, ...] = ()
    #: What a user should know before using it (e.g. trials of mixed versions).
    warnings: tuple[str, ...] = ()
    #: The job's baselines beside it, on the same seeds (the service fills them in).
    baselines: tuple[BaselineResult, ...] = ()
    comparison: str | None = None

    def __post_init__(self) -> None:
        floats = [getattr(self, n) for n in HYPERPARAMETERS] + [self.margin, self.tolerance]
        floats += [
            self.expected_loss.mean,
            self.expected_loss.seed_std,
            self.expected_loss.model_std,
        ]
        floats += [*self.lr_interval] + ([] if self.divergence_lr is None else [self.divergence_lr])
        if not all(math.isfinite(v) for v in floats):  # never hand out NaN or infinity
            raise ValueError(f"non-finite value in a recommendation: {floats}")

    @property
    def config(self) -> dict[str, float]:
        """The six ACProp hyperparameters (optax's argument order)."""
        return {name: float(getattr(self, name)) for name in HYPERPARAMETERS}

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (plain floats and ints, lists, ``None``; never NaN): what the API
        answers, described by its OpenAPI schema (this class is the API's response model)."""
        return _jsonable(dataclasses.asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
