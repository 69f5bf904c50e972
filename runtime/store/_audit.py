from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from . import _schema as t


def record(conn: Connection, actor: str, action: str, target: str, detail: dict, *,
           tenant: str | None = None) -> None:
    """Append one audit entry inside the caller's transaction (the change and its record
    commit together or not at all). `tenant`: the tenant the change belongs to (None: none)."""
    conn.execute(
        insert(t.audit_log).values(
            at=datetime.now(UTC), actor=actor, action=action, target=target, detail=detail,
            tenant=tenant,
        )
    )


def read(conn: Connection, limit: int = 100, *, tenant: str | None = None,
         everything: bool = True, before: int | None = None) -> list[dict]:
    """The newest entries first: all of them (everything=True) or one tenant's; `before`: only
    entries older than that id (the next page)."""
    query = select(t.audit_log)
    if not everything:
        query = query.where(t.audit_log.c.tenant == tenant)
    if before is not None:
        query = query.where(t.audit_log.c.id < before)
    rows = conn.execute(query.order_by(t.audit_log.c.id.desc()).limit(limit)).all()
    return [dict(r._mapping) for r in rows]


# -- change counters (store_meta) ----------------------------------------------------------------

DIRECTORY = "directory"
GUIDELINES = "guidelines"


def ensure_counters(conn: Connection) -> None:
    for key in (DIRECTORY, GUIDELINES):
        if conn.execute(select(t.store_meta.c.value).where(t.store_meta.c.key == key)).first() is None:
            try:
                with conn.begin_nested():
                    conn.execute(insert(t.store_meta).values(key=key, value=0))
            except IntegrityError:
                pass  # another process created it at the same moment


def bump(conn: Connection, key: str) -> int:
    """Increase a counter inside the caller's transaction; its new value."""
    conn.execute(update(t.store_meta).where(t.store_meta.c.key == key)
                 .values(value=t.store_meta.c.value + 1))
    return counter(conn, key)


def counter(conn: Connection, key: str) -> int:
    return conn.execute(select(t.store_meta.c.value).where(t.store_meta.c.key == key)).scalar() or 0
