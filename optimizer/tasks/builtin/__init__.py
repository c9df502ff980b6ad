"""The built-in tasks' JAX implementations (loaded by :func:`optimizer.tasks.load_task`)."""
