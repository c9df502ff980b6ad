"""Settings shared by every test: JAX on the CPU, a private compilation cache per run."""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
