from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Engine, inspect, select
from sqlalchemy.schema import CreateColumn

from ..spec import builtin_specs
from . import _audit
from . import _schema as t
from ._engine import DEFAULT_BUSY_TIMEOUT_S, make_engine, reading, writing
from ._guidelines import GuidelineStore
from ._schema import metadata
from ._specs import SpecStore
from ._users import UserStore

log = logging.getLogger("specguard.store")
T = TypeVar("T")


class Store:
    """All persistent state of one deployment. Create once per process and share.

    Opening a store creates missing tables and columns, seeds the built-in specs (one
    transaction per spec) and repairs what a crash can leave behind (a spec without a head,
    two approved guideline versions), logging each repair. `busy_timeout_s`: how long a write
    waits for another writer's lock before it fails with StoreBusyError (the server uses a
    short one). The store is synchronous; async code calls it through `run` (its own threads,
    so a stalled store never holds the event loop or the threads other work needs).
    """

    def __init__(self, url: str = "specguard.db", *, seed_builtin: bool = True,
                 busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        self.url = url
        self.engine: Engine = make_engine(url, busy_timeout_s=busy_timeout_s)
        metadata.create_all(self.engine)
        self.specs = SpecStore(self.engine)
        self.users = UserStore(self.engine)
        self.guidelines = GuidelineStore(self.engine)
        self.repairs = _upgrade(self.engine) + self.guidelines.repair()
        _create_indexes(self.engine)
        with writing(self.engine) as conn:
            _audit.ensure_counters(conn)
        if seed_builtin:
            self.specs.seed(builtin_specs())
        self.repairs += self.specs.repair()
        for line in self.repairs:
            log.warning("store %s: %s", _safe_url(url), line)
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` (a store call) on the store's threads, awaited."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="specguard-store")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def audit(self, limit: int = 100, *, tenant: str | None = None, everything: bool = True,
              before: int | None = None) -> list[dict]:
        with reading(self.engine) as conn:
            return _audit.read(conn, limit, tenant=tenant, everything=everything, before=before)

    def record(self, actor: str, action: str, target: str, detail: dict, *,
               tenant: str | None = None) -> None:
        """Append one audit entry on its own: an event that changes nothing else in the store
        (an asynchronous review's verdict, specguard.review)."""
        with writing(self.engine) as conn:
            _audit.record(conn, actor, action, target, detail, tenant=tenant)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()


def _upgrade(engine: Engine) -> list[str]:
    """Columns added since a database was created (nullable or with a default), and the data
    they need: a user's profile or a key's user that the store does not hold moves to the
    file_* column. Foreign keys are created with new databases only."""
    done: list[str] = []
    insp = inspect(engine)
    have = {table.name: {c["name"] for c in insp.get_columns(table.name)}
            for table in metadata.sorted_tables if insp.has_table(table.name)}
    added: set[tuple[str, str]] = set()
    with writing(engine) as conn:
        for table in metadata.sorted_tables:
            for column in table.columns if table.name in have else ():
                if column.name in have[table.name]:
                    continue
                ddl = CreateColumn(column).compile(dialect=engine.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {ddl}")
                added.add((table.name, column.name))
                done.append(f"added column {table.name}.{column.name}")
        if ("users", "file_profile") in added:
            stored = select(t.profiles.c.id)
            conn.execute(t.users.update().where(t.users.c.profile.is_not(None))
                         .where(t.users.c.profile.not_in(stored))
                         .values(file_profile=t.users.c.profile, profile=None))
        if ("api_keys", "file_user") in added:
            stored = select(t.users.c.id)
            conn.execute(t.api_keys.update().where(t.api_keys.c.user.is_not(None))
                         .where(t.api_keys.c.user.not_in(stored))
                         .values(file_user=t.api_keys.c.user, user=None))
    if added:
        done.append("this database predates the store's foreign keys; recreate it to get them")
    return done


def _create_indexes(engine: Engine) -> None:
    with writing(engine) as conn:
        for table in metadata.sorted_tables:
            for index in table.indexes:
                index.create(conn, checkfirst=True)


def _safe_url(url: str) -> str:
    """The URL without its password (for logs)."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
