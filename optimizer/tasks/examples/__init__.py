"""Example custom tasks, shown in ``docs/tasks.md`` and run by the tests."""
