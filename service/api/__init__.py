"""The HTTP routers; each module is one concept (jobs, health, and the worker leases of #4)."""
