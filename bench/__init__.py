"""Benchmarks that compare acprop-tuner's choices against the alternatives in the same run.

Run with ``make bench`` (all) or ``python -m bench NAME``; see ``bench/__main__.py``.
"""

# Benchmark modules, in page order. Each is ``bench.<name>`` with ``run()`` and ``markdown()``.
BENCHMARKS: tuple[str, ...] = (
    "engine",
    "broker",
    "worker",
    "recommendation",
    "recommendation_scale",
)
# Run only when named (``python -m bench engine_gpu``): hardware CI does not have, (warm_start)
# the 26-minute study behind a design choice, (dashboard) a browser and a 5,000-trial job
# against the dashboard of an earlier commit (about 8 minutes), and (recommendation_serving)
# two servers serving that job's recommendation while workers report into it (5 minutes),
# and (rules) the quality benchmark's protocol over 10 sampler seeds per task, both splits
# (about 35 minutes with nothing cached, minutes with bench/rules.py's cache filled).
OPTIONAL: tuple[str, ...] = (
    "engine_gpu", "warm_start", "dashboard", "recommendation_serving", "rules",
)  # fmt: skip
