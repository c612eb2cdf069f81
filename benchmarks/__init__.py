"""jaxnn's benchmark suite: each module is a runnable workload."""
