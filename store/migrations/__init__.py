"""Alembic migrations of the store's database (``env.py``, ``versions/``); run by
:mod:`store.migrate` at start."""
