"""Test support, loaded as pytest plugins (pyproject's ``-p tests.support.<module>``) or
imported: no test imports another test module.

- ``databases``: a fresh migrated database per test module on SQLite and Postgres, an app on
  it, API keys, row counts;
- ``api``: the API driven in process (a tenant's keys, protocol calls, stored state) and a
  synthetic worker with a known optimum and divergence edge;
- ``processes`` and ``stack``: real processes (a fresh Postgres database per test, the API
  server, workers, a supervisor) for the end-to-end tests;
- ``browser``: headless Chromium on a served app;
- ``fake_broker``: the worker protocol in memory, for the worker loop's tests;
- ``light_worker`` and ``broken_tasks``: programs and tasks that workers run in the tests.

Servers are started with the product's own helper (acprop_tuner/cli/local.py), as the demo
and the benchmarks start theirs.
"""
