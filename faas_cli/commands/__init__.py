"""The ``faas`` command groups, one module each (registered in faas_cli/main.py)."""
