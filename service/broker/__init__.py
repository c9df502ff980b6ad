"""The broker: hands trials to workers under leases and takes their results back.

It owns the worker protocol's use-cases (lease, heartbeat, report, complete, release), the
per-job in-memory sampler mirror, budget enforcement, fencing by lease token, the writing of
finished trials into each job's Optuna study, and the reaper of expired leases.
"""
