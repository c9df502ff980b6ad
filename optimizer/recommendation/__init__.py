"""The recommendation: a safe, evidence-backed ACProp configuration from a job's trials.

Not the argmin of noisy trials. From every finished trial and seed:

1. **Loss model.** The loss of non-diverged trials is modelled as a smooth function of the
   tuned settings in log coordinates (``log10 learning_rate``, ``log10 eps_root``, ...): a
   Gaussian process on trial means with the pooled seed noise (``_loss_model``).
2. **Divergence model.** The probability that a seed diverges is a logistic function that
   rises with ``log10 learning_rate`` and whose edge ``g(z)`` (the 50 % point) moves with the
   other tuned settings (``_divergence_model``), capped by the smallest learning rate that
   diverged in a comparable trial.
3. **Choice.** Among configurations inside the range the non-diverged trials explored, take
   the one with the lowest ``mean + PESSIMISM * sd`` of the predicted loss (a pessimistic
   score: where the loss surface is flat, e.g. in ``eps_root`` above 1e-9, noise alone would
   decide the argmin of the mean; the bound prefers settings the trials actually explored)
   subject to

       learning_rate <= edge(other settings) / margin,

   never a learning rate that diverged in any seed of any trial. Where the choice's
   ``eps_root`` lies half a decade or more from 1e-8, the best safe point at 1e-8 replaces it
   when its predicted loss is within ``EPS_ROOT_TOLERANCE`` (5 %). The paper's setting
   (learning rate 1e-3, ``eps_root`` 1e-8; the warm start trains it) wins a tie: where a
   trial trained it without divergence, it is safe, and its predicted loss is within
   ``tolerance`` of the choice's, it is the answer. The learning rate is then
   rounded to two significant digits (three for the other tuned settings), never upwards
   across the safe limit.

A seed with a non-finite loss counts as diverged and a trial with any diverged seed gives
no loss data, so no non-finite value and no partly diverged trial can become the
recommendation. Trials are sorted by content before anything is fitted and every fit starts
from fixed points, so the answer does not depend on trial order and is deterministic; with
more trials the fits settle, so provisional answers approach the final one.
"""

from optimizer.recommendation._choice import (
    DEFAULT_MARGIN,
    DEFAULT_MIN_TRIALS,
    DEFAULT_TOLERANCE,
    recommend,
)
from optimizer.recommendation._records import (
    Evidence,
    ExpectedLoss,
    NotEnoughEvidence,
    Recommendation,
    Status,
    TrialOutcome,
)
from optimizer.recommendation._subset import FULL_FIT_MAX_TRIALS

__all__ = [
    "DEFAULT_MARGIN",
    "DEFAULT_MIN_TRIALS",
    "DEFAULT_TOLERANCE",
    "FULL_FIT_MAX_TRIALS",
    "Evidence",
    "ExpectedLoss",
    "NotEnoughEvidence",
    "Recommendation",
    "Status",
    "TrialOutcome",
    "recommend",
]
