"""Applying batches to SQLite: the whole transaction in one hop to a thread of its own.

Through aiosqlite every statement, cursor and commit is a round trip to its thread and back
(about a dozen per batch), and SQLAlchemy's per-statement work comes on top: a batch of
one event costs several times what it does here (docs/benchmarks.md). Here the batch goes to
a dedicated thread once, which runs ``BEGIN IMMEDIATE``, one SELECT of the rows it touches,
the merge, one upsert per table and ``COMMIT`` on a plain ``sqlite3`` connection (autocommit
mode: the transaction is ours).

The connection is the only writer; queries read through the engine's own connections, which
WAL lets run while it writes. ``synchronous=NORMAL`` with WAL fsyncs at checkpoints only: a
power cut may lose the last commits, never corrupt the file, and a lost commit was not acked,
so its events are delivered again.
"""

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Dialect
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError

from store.batch import Batch
from store.sql import IN_CHUNK, Row, TableSQL
from store.tables import call_logs, calls, jobs

# How long a write waits for a lock held by another connection (another store on the file).
_BUSY_TIMEOUT_S = 10.0


class SqliteWriter:
    """Batches into one SQLite file, from a single writer thread."""

    def __init__(self, url: URL, dialect: Dialect) -> None:
        database = url.database
        if not database or database == ":memory:":
            # A second connection would see another, empty database.
            raise ValueError("the store's SQLite database must be a file")
        self._database = database
        self._calls = TableSQL(calls, dialect)
        self._jobs = TableSQL(jobs, dialect)
        self._logs = TableSQL(call_logs, dialect)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="store-sqlite-writer")
        self._db: sqlite3.Connection | None = None

    async def apply(self, batch: Batch) -> int:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._apply, batch)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=True)

    # --- in the writer thread ---------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            uri = self._database.startswith("file:")
            db = sqlite3.connect(
                self._database, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False, uri=uri
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._db = db
        return self._db

    def _close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def _apply(self, batch: Batch) -> int:
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            changed = 0
            if batch.calls:
                rows = batch.calls_to_write(self._select(db, self._calls, batch.call_ids()))
                changed += self._upsert(db, self._calls, rows)
            if batch.jobs:
                rows = batch.jobs_to_write(self._select(db, self._jobs, batch.job_ids()))
                changed += self._upsert(db, self._jobs, rows)
            if batch.chunks:
                rows = batch.chunk_rows()
                changed += db.executemany(self._logs.insert_new, [self._logs.params(r) for r in rows]).rowcount
            db.execute("COMMIT")
        except BaseException as err:
            if db.in_transaction:  # SQLite may have rolled back already (a full disk...)
                db.execute("ROLLBACK")
            if isinstance(err, sqlite3.IntegrityError):
                # A call number taken by another call: the ingest loop looks for the culprit.
                raise IntegrityError("store batch", None, err) from err
            raise
        return changed

    @staticmethod
    def _select(db: sqlite3.Connection, table: TableSQL, ids: list[str]) -> dict[str, Row]:
        stored: dict[str, Row] = {}
        for start in range(0, len(ids), IN_CHUNK):
            chunk = ids[start : start + IN_CHUNK]
            for values in db.execute(table.select_by_ids(len(chunk)), chunk):
                row = table.row(values)
                stored[row["id"]] = row
        return stored

    @staticmethod
    def _upsert(db: sqlite3.Connection, table: TableSQL, rows: list[Row]) -> int:
        if rows:
            db.executemany(table.upsert, [table.params(r) for r in rows])
        return len(rows)
