"""Fakes of the platform's adapters for unit tests: each implements the same Protocol as the
real adapter (STYLE.md, point 11)."""
