"""Small shared helpers (NATS connection and layout, logging). Not a wire contract."""
