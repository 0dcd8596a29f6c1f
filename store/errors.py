"""The store's exceptions: one root, turned into reply error codes only at the service edge."""


class StoreError(Exception):
    """Root of every error the store raises on purpose."""


class BadRequest(StoreError):
    """A query that is well-formed JSON but cannot be answered as asked (reply code 400)."""


class NotFound(StoreError):
    """No such call (reply code 404)."""
