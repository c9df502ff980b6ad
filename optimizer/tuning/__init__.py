"""The tuning policy: how a job's trials are chosen and judged, free of the web, the database
and JAX.

- :mod:`optimizer.tuning.names`: the sampler and pruner names a job may choose;
- :mod:`optimizer.tuning.policy`: a job spec's Optuna sampler, pruner and distributions;
- :mod:`optimizer.tuning.outcome`: one trial's per-seed results, judged once, read both by
  the sampler (the value and divergence penalty it is told) and by the recommendation;
- :mod:`optimizer.tuning.mirror`: the in-memory Optuna study a job is sampled from;
- :mod:`optimizer.tuning.tpe_speedups`: exact speed-ups of Optuna's TPE for those studies.

The service (service/broker/) feeds these from its tables; the quality benchmark
(bench/recommendation.py) feeds them from trainings in process, so both run the same policy.
"""
