"""Loss as a smooth function of the tuned settings: a Gaussian process on trial means.

Each non-diverged trial ``i`` at unit-box point ``x_i`` has ``m_i`` seed losses
``y_ij = f(x_i) + e_ij`` with seed noise ``e_ij ~ N(0, s^2)``. The seed losses enter only
through their mean: ``ybar_i ~ N(f(x_i), s^2 / m_i)`` is the part of the likelihood that
depends on ``f``, and the within-trial scatter gives the pooled estimate

    s^2 = sum_ij (y_ij - ybar_i)^2 / sum_i (m_i - 1).

So the model is exact for seed-level data while its size is the number of trials, not
trials x seeds. ``f`` is a trend ``h(x)^T beta`` (a parabola in log learning rate, linear in
the other settings; ``beta`` integrated out under a flat prior) plus a Matern-5/2 ARD
Gaussian process (twice differentiable, the usual choice for hyperparameter response
surfaces); a fitted nugget absorbs what the seed noise does not explain. Length scales,
amplitude and nugget maximise the restricted (REML) log likelihood

    -1/2 ybar^T P ybar - 1/2 log|K| - 1/2 log|H^T K^-1 H|,
    K = k(X, X) + diag(s^2 / m_i + nugget),  P = K^-1 - K^-1 H (H^T K^-1 H)^-1 H^T K^-1,

from a few fixed starting points (deterministic; analytic gradients); predictions follow
Rasmussen & Williams (2006), section 2.7.

Losses near a divergence edge can be orders of magnitude above the rest without being
flagged as diverged. They are compressed before fitting (``warp``): values above the median
``t`` become ``t + c * log1p((y - t) / c)``, monotone and the identity below ``t``, so such
trials still say "bad here" without dragging the fit of the good region.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize

_SQRT5 = np.sqrt(5.0)
# Length scales below 5 % of the explored range would let the fit chase seed noise.
_LOG_LENGTH_BOUNDS = (np.log(0.05), np.log(20.0))
_LOG_AMPLITUDE_BOUNDS = (np.log(1e-2), np.log(1e2))
_LOG_NUGGET_BOUNDS = (np.log(1e-8), np.log(2.0))
_JITTER = 1e-9
_PREDICT_BATCH = 4096


def _matern52(a: np.ndarray, b: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
    """Returns ``k / amplitude`` and the per-dimension scaled squared distances."""
    d2 = ((a[:, None, :] - b[None, :, :]) / lengths) ** 2
    r = np.sqrt(d2.sum(axis=-1))
    e = np.exp(-_SQRT5 * r)
    return (1.0 + _SQRT5 * r + 5.0 / 3.0 * r**2) * e, d2, (1.0 + _SQRT5 * r) * e


def basis(x: np.ndarray) -> np.ndarray:
    """The trend: ``1, u, u^2`` in the learning rate and linear in the other settings.

    Loss against log learning rate is close to a parabola around its minimum, so a fitted
    quadratic trend carries the shape where data are noisy or sparse and the Gaussian
    process only has to explain what departs from it.
    """
    u = x[:, :1]
    return np.hstack([np.ones_like(u), u, u**2, x[:, 1:]])


def independent_columns(h: np.ndarray) -> np.ndarray:
    """Indices of a maximal set of linearly independent columns of ``h``, in order.

    A tuned setting can be constant over the trials the loss is fitted on (every trial at
    another ``eps_root`` diverged, say); its trend column is then the intercept again and
    ``H^T K^-1 H`` is singular. Such columns carry nothing for the fit and are left out.
    """
    keep: list[int] = []
    for j in range(h.shape[1]):
        trial = h[:, [*keep, j]]
        if np.linalg.matrix_rank(trial, tol=1e-9 * max(1.0, float(np.abs(trial).max()))) > len(
            keep
        ):
            keep.append(j)
    return np.array(keep, dtype=int)


@dataclass(frozen=True)
class Warp:
    """The output compression, its inverse, and the standardisation after it."""

    threshold: float
    scale: float
    center: float
    spread: float

    @classmethod
    def fit(cls, seed_losses: np.ndarray) -> Warp:
        t = float(np.median(seed_losses))
        mad = float(np.median(np.abs(seed_losses - t)))
        scale = max(mad, 1e-12 * max(abs(t), 1.0))
        w = cls(t, scale, 0.0, 1.0)
        z = w._compress(seed_losses)
        spread = float(np.std(z))
        return cls(t, scale, float(np.mean(z)), spread if spread > 0.0 else 1.0)

    def _compress(self, y: np.ndarray) -> np.ndarray:
        over = np.maximum(y - self.threshold, 0.0)
        return np.where(
            y > self.threshold, self.threshold + self.scale * np.log1p(over / self.scale), y
        )

    def forward(self, y: np.ndarray) -> np.ndarray:
        return (self._compress(y) - self.center) / self.spread

    def inverse(self, z: np.ndarray) -> np.ndarray:
        y = np.asarray(z) * self.spread + self.center
        over = np.maximum(y - self.threshold, 0.0)
        return np.where(
            y > self.threshold, self.threshold + self.scale * np.expm1(over / self.scale), y
        )


def _pooled_variance(seed_losses: list[np.ndarray], warp: Warp) -> float:
    """The pooled within-trial variance of the warped seed losses (vectorised: many trials)."""
    sizes = np.array([s.size for s in seed_losses])
    z = warp.forward(np.concatenate(seed_losses))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    means = np.add.reduceat(z, starts) / sizes
    dof = float((sizes - 1).sum())
    return float(((z - np.repeat(means, sizes)) ** 2).sum() / dof) if dof > 0 else 0.0


@dataclass(frozen=True)
class LossModel:
    """A fitted Gaussian process over the unit box; see the module docstring."""

    x: np.ndarray
    alpha: np.ndarray
    chol: np.ndarray
    lengths: np.ndarray
    amplitude: float
    nugget: float
    seed_var: float
    warp: Warp
    beta: np.ndarray
    a_inv: np.ndarray
    kh: np.ndarray
    columns: np.ndarray

    @classmethod
    def fit(
        cls, x: np.ndarray, seed_losses: list[np.ndarray], *, pooled: list[np.ndarray] | None = None
    ) -> LossModel:
        """Fits the model.

        Args:
          x: unit-box points of the trials, shape ``(n, d)``, learning rate first.
          seed_losses: for each trial, its finite seed losses (at least one).
          pooled: where ``x`` is a subset of a job's trials (``_subset``), the seed losses
            of all of them: the warp and the pooled seed variance are taken from all.

        Returns:
          The fitted model.
        """
        warp = Warp.fit(np.concatenate(seed_losses if pooled is None else pooled))
        z = [warp.forward(s) for s in seed_losses]
        ybar = np.array([v.mean() for v in z])
        m = np.array([v.size for v in z], dtype=float)
        if pooled is None:
            dof = float((m - 1.0).sum())
            seed_var = float(sum(((v - v.mean()) ** 2).sum() for v in z) / dof) if dof > 0 else 0.0
        else:
            seed_var = _pooled_variance(pooled, warp)
        noise = seed_var / m
        n, d = x.shape
        columns = independent_columns(basis(x)) if n >= basis(x).shape[1] + 3 else np.zeros(1, int)
        h = basis(x)[:, columns]

        def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
            lengths, amp, nug = np.exp(theta[:d]), np.exp(theta[d]), np.exp(theta[d + 1])
            k0, d2, dk = _matern52(x, x, lengths)
            kern = amp * k0 + np.diag(noise + nug + _JITTER)
            try:
                c = linalg.cho_factor(kern, lower=True)
                kinv = linalg.cho_solve(c, np.eye(n))
                kh = kinv @ h
                a = linalg.cho_factor(h.T @ kh, lower=True)
            except linalg.LinAlgError:
                return 1e25, np.zeros_like(theta)
            # REML: P = K^-1 - K^-1 H (H^T K^-1 H)^-1 H^T K^-1 integrates the trend out.
            p = kinv - kh @ linalg.cho_solve(a, kh.T)
            py = p @ ybar
            value = 0.5 * ybar @ py + np.log(np.diag(c[0])).sum() + np.log(np.diag(a[0])).sum()
            w = p - np.outer(py, py)
            grad = np.empty_like(theta)
            # d k / d log(length_j) = amp * 5/3 * (1 + sqrt5 r) exp(-sqrt5 r) * d2_j.
            for j in range(d):
                grad[j] = 0.5 * np.sum(w * (amp * 5.0 / 3.0 * dk * d2[..., j]))
            grad[d] = 0.5 * np.sum(w * (amp * k0))
            grad[d + 1] = 0.5 * np.trace(w) * nug
            return float(value), grad

        bounds = [_LOG_LENGTH_BOUNDS] * d + [_LOG_AMPLITUDE_BOUNDS, _LOG_NUGGET_BOUNDS]
        best: tuple[float, np.ndarray] | None = None
        for length0, nug0 in ((0.3, 1e-2), (1.0, 1e-1), (0.1, 1e-3)):
            theta0 = np.array([np.log(length0)] * d + [0.0, np.log(nug0)])
            res = optimize.minimize(nll, theta0, jac=True, method="L-BFGS-B", bounds=bounds)
            value = float(res.fun)
            if np.isfinite(value) and (best is None or value < best[0]):
                best = (value, res.x)
        assert best is not None  # a failed factorisation scores 1e25, so every start scores
        theta = best[1]
        lengths, amp, nug = np.exp(theta[:d]), float(np.exp(theta[d])), float(np.exp(theta[d + 1]))
        kern = amp * _matern52(x, x, lengths)[0] + np.diag(noise + nug + _JITTER)
        chol = linalg.cholesky(kern, lower=True)
        kh = linalg.cho_solve((chol, True), h)
        a_inv = np.linalg.inv(h.T @ kh)
        beta = a_inv @ (kh.T @ ybar)
        alpha = linalg.cho_solve((chol, True), ybar - h @ beta)
        return cls(x, alpha, chol, lengths, amp, nug, seed_var, warp, beta, a_inv, kh, columns)

    def _basis(self, x: np.ndarray) -> np.ndarray:
        return basis(x)[:, self.columns]

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of ``f`` in warped, standardised units."""
        if x.shape[0] > _PREDICT_BATCH:  # bounds the (points x trials x dims) temporaries
            parts = [
                self.predict(x[i : i + _PREDICT_BATCH])
                for i in range(0, x.shape[0], _PREDICT_BATCH)
            ]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        ks = self.amplitude * _matern52(x, self.x, self.lengths)[0]
        hs = self._basis(x)
        mean = hs @ self.beta + ks @ self.alpha
        v = linalg.solve_triangular(self.chol, ks.T, lower=True)
        r = hs - ks @ self.kh  # the trend's own uncertainty (Rasmussen & Williams eq. 2.42)
        var = self.amplitude - (v**2).sum(axis=0) + np.einsum("ij,jk,ik->i", r, self.a_inv, r)
        return mean, np.sqrt(np.maximum(var, 0.0))

    def predict_loss(self, x: np.ndarray) -> np.ndarray:
        """Posterior mean of the loss in the loss's own units."""
        return self.warp.inverse(self.predict(x)[0])

    def seed_std(self) -> float:
        """Seed-to-seed standard deviation of the loss, in the loss's units (near the median)."""
        var = self.seed_var if self.seed_var > 0.0 else self.nugget
        return float(np.sqrt(var) * self.warp.spread)

    def model_std(self, x: np.ndarray) -> np.ndarray:
        """Posterior standard deviation of the mean loss, in the loss's units (near the median)."""
        return self.predict(x)[1] * self.warp.spread
