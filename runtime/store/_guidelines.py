from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, Field
from sqlalchemy import Connection, Engine, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import ConflictError, NotFoundError
from ..policy import GuidelineUse
from . import _schema as t
from ._audit import GUIDELINES, bump, record
from ._engine import is_sqlite, reading, writing


class GuidelineStatus(StrEnum):
    DRAFT = "draft"  # derived or edited, waiting for an admin
    APPROVED = "approved"  # the version requests use (with GuidelineUse.APPROVED)
    RETIRED = "retired"  # was approved, replaced by a newer approval


class GuidelineSet(BaseModel):
    """One version of a profile's derived guidelines: the activities to decline for it."""

    profile: str
    version: int
    status: GuidelineStatus
    items: list[str] = Field(default_factory=list)
    source: str  # "model:<backend>" when derived, "admin" when edited by hand
    profile_text: str  # the profile text the list was made for
    created_at: datetime
    created_by: str
    approved_at: datetime | None = None
    approved_by: str | None = None


class GuidelineStore:
    """Versioned guideline lists per profile: propose (draft), approve, read the one in use.
    Each write is one transaction with its audit entry; at most one version of a profile is
    approved (a unique index backs the transaction's own check)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.revision = 0  # changes made through this process (its caches see them at once)

    def propose(self, profile: str, items: list[str], *, source: str, profile_text: str,
                actor: str, tenant: str | None = None) -> GuidelineSet:
        for _ in range(20):
            try:
                with writing(self._engine) as conn:
                    version = (conn.execute(select(func.max(t.profile_guidelines.c.version))
                                            .where(t.profile_guidelines.c.profile == profile)).scalar() or 0) + 1
                    values = dict(profile=profile, version=version, status=GuidelineStatus.DRAFT.value,
                                  items=list(items), source=source, profile_text=profile_text,
                                  created_at=datetime.now(UTC), created_by=actor)
                    conn.execute(insert(t.profile_guidelines).values(**values))
                    record(conn, actor, "guidelines.propose", f"guidelines:{profile}#v{version}",
                           {"items": list(items), "source": source}, tenant=tenant)
                    bump(conn, GUIDELINES)
            except IntegrityError:
                continue  # another writer took this version number; take the next
            self.revision += 1
            return GuidelineSet(**values)
        raise ConflictError(f"Could not allocate a guideline version for {profile!r}; retry.")

    def approve(self, profile: str, version: int, *, actor: str,
                tenant: str | None = None) -> GuidelineSet:
        """Approve `version` and retire the one approved before, in one transaction (the rows
        of the profile are locked first, so two approvals run one after the other)."""
        now = datetime.now(UTC)
        try:
            with writing(self._engine) as conn:
                lock = select(t.profile_guidelines.c.version).where(
                    t.profile_guidelines.c.profile == profile)
                if not is_sqlite(conn):
                    lock = lock.with_for_update()
                conn.execute(lock).all()
                current = _get(conn, profile, version)
                conn.execute(update(t.profile_guidelines)
                             .where(and_(t.profile_guidelines.c.profile == profile,
                                         t.profile_guidelines.c.status == GuidelineStatus.APPROVED.value,
                                         t.profile_guidelines.c.version != version))
                             .values(status=GuidelineStatus.RETIRED.value))
                conn.execute(update(t.profile_guidelines).where(_version(profile, version))
                             .values(status=GuidelineStatus.APPROVED.value, approved_at=now,
                                     approved_by=actor))
                record(conn, actor, "guidelines.approve", f"guidelines:{profile}#v{version}", {},
                       tenant=tenant)
                bump(conn, GUIDELINES)
        except IntegrityError as exc:
            raise ConflictError(f"Another approval of {profile!r}'s guidelines ran at the same time.",
                                hint="Re-read the guideline history and approve again.") from exc
        self.revision += 1
        return current.model_copy(update={"status": GuidelineStatus.APPROVED, "approved_at": now,
                                          "approved_by": actor})

    def get(self, profile: str, version: int) -> GuidelineSet:
        with reading(self._engine) as conn:
            return _get(conn, profile, version)

    def history(self, profile: str) -> list[GuidelineSet]:
        with reading(self._engine) as conn:
            rows = conn.execute(select(t.profile_guidelines)
                                .where(t.profile_guidelines.c.profile == profile)
                                .order_by(t.profile_guidelines.c.version)).all()
        return [_to_set(r) for r in rows]

    def current(self, profile: str, use: GuidelineUse = GuidelineUse.APPROVED) -> GuidelineSet | None:
        """The version requests use: the approved one, or the newest with LATEST; None if
        there is none (or with OFF)."""
        if use is GuidelineUse.OFF:
            return None
        query = select(t.profile_guidelines).where(t.profile_guidelines.c.profile == profile)
        if use is GuidelineUse.APPROVED:
            query = query.where(t.profile_guidelines.c.status == GuidelineStatus.APPROVED.value)
        with reading(self._engine) as conn:
            row = conn.execute(query.order_by(t.profile_guidelines.c.version.desc()).limit(1)).first()
        return _to_set(row) if row is not None else None

    def repair(self) -> list[str]:
        """More than one approved version of a profile (a database from before the unique
        index): the newest stays approved, the others are retired."""
        done = []
        with writing(self._engine) as conn:
            rows = conn.execute(select(t.profile_guidelines.c.profile, t.profile_guidelines.c.version)
                                .where(t.profile_guidelines.c.status == GuidelineStatus.APPROVED.value)
                                .order_by(t.profile_guidelines.c.profile,
                                          t.profile_guidelines.c.version.desc())).all()
            seen: set[str] = set()
            for profile, version in rows:
                if profile in seen:
                    conn.execute(update(t.profile_guidelines).where(_version(profile, version))
                                 .values(status=GuidelineStatus.RETIRED.value))
                    done.append(f"guidelines {profile}#v{version} retired (a newer one is approved)")
                seen.add(profile)
        return done


def delete_history(conn: Connection, profile: str) -> int:
    """Remove a profile's guideline versions inside the caller's transaction (the profile is
    being deleted: a later profile with the same id, perhaps another tenant's, starts empty)."""
    done = conn.execute(delete(t.profile_guidelines).where(t.profile_guidelines.c.profile == profile))
    if done.rowcount:
        bump(conn, GUIDELINES)
    return done.rowcount


def _get(conn: Connection, profile: str, version: int) -> GuidelineSet:
    row = conn.execute(select(t.profile_guidelines).where(_version(profile, version))).first()
    if row is None:
        raise NotFoundError(f"Profile {profile!r} has no guideline version {version}.",
                            hint=f"See GET /admin/profiles/{profile}/guidelines.")
    return _to_set(row)


def _version(profile: str, version: int):
    return and_(t.profile_guidelines.c.profile == profile, t.profile_guidelines.c.version == version)


def _to_set(row) -> GuidelineSet:
    m = row._mapping
    return GuidelineSet(
        profile=m["profile"], version=m["version"], status=GuidelineStatus(m["status"]),
        items=list(m["items"] or []), source=m["source"], profile_text=m["profile_text"],
        created_at=m["created_at"], created_by=m["created_by"], approved_at=m["approved_at"],
        approved_by=m["approved_by"],
    )
