"""Engines and transactions.

Every write is one transaction that takes the write lock at its start: `BEGIN IMMEDIATE` on
SQLite (a deferred transaction that reads and then writes can fail to upgrade its lock), and
`SELECT ... FOR UPDATE` on the rows it reads-then-writes on PostgreSQL. Validation of a write
runs inside that transaction, so a check and the write it guards see the same data.

A store that stays locked longer than its busy timeout (another process holding SQLite's write
lock, a PostgreSQL row lock) raises `StoreBusyError` (503, retry later) instead of waiting: the
server's request path uses a short timeout, the CLI a long one.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError

from ..errors import StoreBusyError

DEFAULT_BUSY_TIMEOUT_S = 30.0
_WRITE = "specguard_write"


def make_engine(url: str, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> Engine:
    """An engine for `url`; a bare path means a SQLite file, ":memory:" a private throwaway
    database: a SQLite file in a temporary folder of its own, removed when the engine is
    disposed or the process ends. It runs exactly as a file store does (a connection per
    thread, SQLite's own locking). A true in-memory database would be one connection shared by
    every thread, serialised by a lock taken at pool checkout and released at checkin; that
    lock is lost for good when a connection is checked in from another thread than took it,
    and every later store call then waits forever."""
    busy_ms = max(1, int(busy_timeout_s * 1000))
    if url in (":memory:", "sqlite://"):
        folder = tempfile.mkdtemp(prefix="specguard-store-")
        engine = make_engine(str(Path(folder) / "store.db"), busy_timeout_s=busy_timeout_s)
        weakref.finalize(engine, shutil.rmtree, folder, True)
        return engine
    if "://" not in url:
        path = Path(url).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{path}"
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False,
                                                  "timeout": busy_timeout_s})
        _sqlite_events(engine, busy_ms)
        return engine
    connect_args = {}
    if url.startswith("postgresql"):
        # Row locks and lock waits give up after the busy timeout instead of hanging a request.
        connect_args["options"] = f"-c lock_timeout={busy_ms}"
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def _sqlite_events(engine: Engine, busy_ms: int) -> None:
    def on_connect(dbapi_conn, _record) -> None:
        # pysqlite's own transaction handling is off; the "begin" listener below starts each
        # transaction (deferred for reads, immediate for writes).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # WAL lets readers run while one writer commits; busy_timeout makes a writer wait for
        # the lock (up to the engine's timeout) instead of failing at once.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    def on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """One write transaction: committed when the block ends, rolled back if it raises."""
    with _busy_as_error():
        with engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """One read transaction (a consistent view of the store)."""
    with _busy_as_error():
        with engine.connect() as conn:
            yield conn


def is_sqlite(conn_or_engine) -> bool:
    return conn_or_engine.dialect.name == "sqlite"


@contextmanager
def _busy_as_error() -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
        if "locked" in text or "busy" in text or "lock timeout" in text or "lock_timeout" in text:
            raise StoreBusyError(
                "The store is busy (another writer holds its lock).",
                hint="Retry in a few seconds.",
            ) from exc
        raise
