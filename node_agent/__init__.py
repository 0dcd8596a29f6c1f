"""Node agent: pulls invocations for the runtimes it serves and runs them in Docker."""
