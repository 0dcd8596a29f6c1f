"""The ``faas`` command: ``faas up`` runs the platform on one host; the rest talk to a gateway."""
