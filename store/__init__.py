"""The store: consumes the events stream into SQL (call records, job records, logs) and
answers queries over NATS.

``python -m store`` runs it; :class:`store.app.Store` is the service object.
"""

from store.app import Store
from store.errors import BadRequest, NotFound, StoreError
from store.settings import StoreSettings

__all__ = ["BadRequest", "NotFound", "Store", "StoreError", "StoreSettings"]
