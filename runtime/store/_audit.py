from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, insert, select

from . import _schema as t


def record(conn: Connection, actor: str, action: str, target: str, detail: dict) -> None:
    """Append one audit entry inside the caller's transaction (the change and its record
    commit together or not at all)."""
    conn.execute(
        insert(t.audit_log).values(
            at=datetime.now(UTC), actor=actor, action=action, target=target, detail=detail
        )
    )


def read(conn: Connection, limit: int = 100) -> list[dict]:
    rows = conn.execute(select(t.audit_log).order_by(t.audit_log.c.id.desc()).limit(limit)).all()
    return [dict(r._mapping) for r in rows]
