"""Where training diverges: a monotone logistic edge in log learning rate.

A seed at unit-box point ``x = (u, z)`` (``u`` the scaled log10 learning rate, ``z`` the other
tuned settings) diverges with probability

    P(diverge | u, z) = sigmoid(s * (u - g(z))),   s > 0,
    g(z) = c0 + sum_k [c_k z_k + q_k z_k^2 + sum_j h_kj max(0, z_k - knot_j)],

so divergence only ever becomes more likely as the learning rate grows, and ``g(z)`` is the
*edge*: the log learning rate at which half the seeds diverge. The edge moves with the other
settings; for ACProp it moves by decades with ``eps_root`` (facts.md: with ``eps_root=1e-16``
it blows up far below the ``eps_root=1e-8`` edge). Trials contribute binomially (``d_i`` of
``m_i`` seeds diverged), and ``(log s, c0, c, q)`` minimise

    -sum_i [d_i log p_i + (m_i - d_i) log(1 - p_i)] + lam_c |c|^2 + lam_q (|q|^2 + |h|^2)

with ``s`` bounded: when safe and diverged trials separate perfectly the likelihood keeps
rising with ``s``, and the bound leaves the edge in the middle of the gap between the
largest safe and the smallest diverged learning rate.

The recommendation sits on the edge constraint, exactly where an optimistic error in
``g`` does most harm (on synthetic problems the fitted edge was up to 0.4 decades high
where trials were sparse). So the edge used for safety is a lower confidence bound,
``g(z) - EDGE_Z * sd(g(z))``, with ``sd`` from the Laplace approximation of the
coefficients' posterior at the fitted slope: tight where trials straddle the edge, wide
where none do. A vague prior makes that bound too cautious where trials are few (on
Rosenbrock with 18 trials it sat 4x below a learning rate that had trained safely), so the
bound is never taken below what was seen: the largest learning rate that trained without
divergence in a *comparable* trial (other tuned settings within ``radius``, a fraction of the
explored range, and not above the configuration in a ``rising`` setting such as ACProp's
``eps_root``, whose edge can jump just below a safe trial), moved along the fitted edge's
shape to the configuration
(``safe_floor``). Finally it is capped by evidence: never above the smallest learning rate
that diverged in any seed of a comparable trial (``skip_isolated`` leaves out isolated
blow-ups below a learning rate that trained without divergence in every seed of a
comparable trial; the recommendation uses it only when the strict edge leaves no learning
rate tried a margin below it). In short

    edge(z) = min(evidence(z), max(g(z) - EDGE_Z * sd(g(z)), safe_floor(z))).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize

_LOG_SLOPE_BOUNDS = (0.0, np.log(50.0))
_LAMBDA_LINEAR = 1e-2
_LAMBDA_CURVE = 0.1
_KNOTS = (0.25, 0.5, 0.75)
#: The edge used for safety sits this many posterior standard deviations below the fit.
EDGE_Z = 2.0


def edge_basis(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features of ``g`` and their ridge weights: ``1``, then per setting ``z_k`` and the
    curved terms ``z_k^2`` and ``max(0, z_k - knot)`` (edges can bend sharply: ACProp's
    flattens above ``eps_root ~ 1e-8``)."""
    cols = [np.ones((z.shape[0], 1))]
    weights = [0.0]
    for k in range(z.shape[1]):
        zk = z[:, k : k + 1]
        cols += [zk, zk**2] + [np.maximum(zk - t, 0.0) for t in _KNOTS]
        weights += [_LAMBDA_LINEAR] + [_LAMBDA_CURVE] * (1 + len(_KNOTS))
    return np.hstack(cols), np.array(weights)


@dataclass(frozen=True)
class DivergenceModel:
    """A fitted edge; ``any_diverged`` is False when no seed of any trial diverged."""

    any_diverged: bool
    slope: float
    coef: np.ndarray
    cov: np.ndarray
    diverged_points: np.ndarray
    safe_points: np.ndarray
    radius: float
    #: Per other setting, whether the edge can only rise with it (ACProp's ``eps_root``):
    #: a safe trial then vouches only for settings at or above its own.
    rising: np.ndarray | None = None

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        n_seeds: np.ndarray,
        n_diverged: np.ndarray,
        *,
        radius: float,
        rising: np.ndarray | None = None,
    ) -> DivergenceModel:
        """Fits the edge.

        Args:
          x: unit-box points of the trials, shape ``(n, d)``, learning rate first.
          n_seeds: seeds with a known outcome (finite loss or diverged) per trial.
          n_diverged: diverged seeds per trial.
          radius: comparability radius for the evidence cap (max-norm, unit-box units).
          rising: per other setting, whether the edge can only rise with it; a safe trial
            is then comparable only to settings at or above its own in that coordinate.

        Returns:
          The fitted model.
        """
        diverged_points, safe_points = x[n_diverged > 0], x[n_diverged == 0]
        if diverged_points.shape[0] == 0:
            return cls(
                False,
                0.0,
                np.zeros(1),
                np.zeros((1, 1)),
                diverged_points,
                safe_points,
                radius,
                rising,
            )
        u, z = x[:, 0], x[:, 1:]
        design, penalty = edge_basis(z)
        safe = n_diverged < n_seeds
        u_safe = u[safe].max() if safe.any() else u.min()
        u_div = u[n_diverged > 0].min()

        def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
            s, coef = np.exp(theta[0]), theta[1:]
            g = design @ coef
            t = s * (u - g)
            # -log p = log(1 + e^-t), -log(1 - p) = log(1 + e^t), computed stably.
            value = float(
                (n_diverged * np.logaddexp(0.0, -t)).sum()
                + ((n_seeds - n_diverged) * np.logaddexp(0.0, t)).sum()
                + (penalty * coef**2).sum()
            )
            with np.errstate(over="ignore"):  # exp(-t) = inf far below the edge: p = 0 there
                dt = n_seeds / (1.0 + np.exp(-t)) - n_diverged  # d value / d t
            grad = np.empty_like(theta)
            grad[0] = float((dt * t).sum())
            grad[1:] = -s * (design.T @ dt) + 2.0 * penalty * coef
            return value, grad

        theta0 = np.zeros(1 + design.shape[1])
        theta0[0] = np.log(10.0)
        theta0[1] = 0.5 * (u_safe + u_div)
        bounds = [_LOG_SLOPE_BOUNDS] + [(None, None)] * design.shape[1]
        res = optimize.minimize(nll, theta0, jac=True, method="L-BFGS-B", bounds=bounds)
        slope, coef = float(np.exp(res.x[0])), res.x[1:]
        # Laplace approximation of the coefficients' posterior at the fitted slope.
        with np.errstate(over="ignore"):
            p = 1.0 / (1.0 + np.exp(-slope * (u - design @ coef)))
        info = slope**2 * (design.T * (n_seeds * p * (1.0 - p))) @ design
        cov = np.linalg.inv(info + 2.0 * np.diag(np.maximum(penalty, _LAMBDA_LINEAR)))
        return cls(True, slope, coef, cov, diverged_points, safe_points, radius, rising)

    def model_edge(self, z: np.ndarray) -> np.ndarray:
        """The fitted edge ``g(z)`` (unit learning-rate coordinate), shape ``(n,)``."""
        z = np.atleast_2d(z)
        if not self.any_diverged:
            return np.full(z.shape[0], np.inf)
        return edge_basis(z)[0] @ self.coef

    def _near(self, z: np.ndarray, points: np.ndarray) -> np.ndarray:
        dist = np.abs(z[:, None, :] - points[None, :, 1:]).max(axis=-1, initial=0.0)
        return dist <= self.radius

    def _near_safe(self, z: np.ndarray) -> np.ndarray:
        """Safe trials comparable to each ``z``: within the radius and, in a rising
        coordinate, not above ``z`` (an edge that rises with it may jump just below)."""
        near = self._near(z, self.safe_points)
        if self.rising is not None and self.rising.any():
            above = self.safe_points[None, :, 1:] > z[:, None, :] + 1e-12
            near &= ~(above & self.rising[None, None, :]).any(axis=-1)
        return near

    def model_edge_std(self, z: np.ndarray) -> np.ndarray:
        """Posterior standard deviation of ``g(z)`` (Laplace approximation)."""
        z = np.atleast_2d(z)
        if not self.any_diverged:
            return np.zeros(z.shape[0])
        phi = edge_basis(z)[0]
        return np.sqrt(np.einsum("ij,jk,ik->i", phi, self.cov, phi))

    def evidence_edge(self, z: np.ndarray, *, skip_isolated: bool = False) -> np.ndarray:
        """Smallest learning rate that diverged in a comparable trial (``inf`` if none).

        With ``skip_isolated``, a divergence below a learning rate that trained without
        divergence in every seed of a comparable trial does not count: an isolated blow-up
        rather than the edge (it still lowers the fitted edge through the likelihood).
        """
        z = np.atleast_2d(z)
        near = self._near(z, self.diverged_points)
        if skip_isolated:
            near &= self.diverged_points[None, :, 0] > self.safe_support(z)[:, None]
        u = np.where(near, self.diverged_points[None, :, 0], np.inf)
        return u.min(axis=1, initial=np.inf)

    def safe_support(self, z: np.ndarray) -> np.ndarray:
        """Largest learning rate of a comparable trial in which no seed diverged.

        Safety is never extrapolated: where the edge model has no nearby data it can place
        the edge anywhere in a wide gap, so a configuration is only called safe up to a
        learning rate that was seen to train without divergence nearby (``-inf`` if none).
        """
        z = np.atleast_2d(z)
        u = np.where(self._near_safe(z), self.safe_points[None, :, 0], -np.inf)
        return u.max(axis=1, initial=-np.inf)

    def safe_floor(self, z: np.ndarray) -> np.ndarray:
        """Largest comparable safe learning rate, moved along the fitted edge to ``z``.

        A trial that trained without divergence at ``(u_j, z_j)`` shows the edge at ``z_j``
        is above ``u_j``; the fitted edge's shape carries that to ``z`` as
        ``u_j + g(z) - g(z_j)`` (the level from data, only the small shift from the model).
        """
        z = np.atleast_2d(z)
        if not self.any_diverged or self.safe_points.shape[0] == 0:
            return np.full(z.shape[0], -np.inf)
        shift = self.model_edge(z)[:, None] - self.model_edge(self.safe_points[:, 1:])[None, :]
        u = np.where(self._near_safe(z), self.safe_points[None, :, 0] + shift, -np.inf)
        return u.max(axis=1, initial=-np.inf)

    def edge(self, z: np.ndarray, *, skip_isolated: bool = False) -> np.ndarray:
        """The edge used for safety (unit learning-rate coordinate), see the module docstring;
        ``skip_isolated`` as in :meth:`evidence_edge`."""
        lower = self.model_edge(z) - EDGE_Z * self.model_edge_std(z)
        lower = np.maximum(lower, self.safe_floor(z))
        return np.minimum(lower, self.evidence_edge(z, skip_isolated=skip_isolated))

    def probability(self, x: np.ndarray) -> np.ndarray:
        """Fitted probability that a seed diverges at unit-box points ``x``."""
        x = np.atleast_2d(x)
        if not self.any_diverged:
            return np.zeros(x.shape[0])
        t = self.slope * (x[:, 0] - self.model_edge(x[:, 1:]))
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-t))
