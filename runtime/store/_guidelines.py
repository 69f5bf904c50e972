from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, Field
from sqlalchemy import Engine, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import ConflictError, NotFoundError
from ..policy import GuidelineUse
from . import _schema as t
from ._audit import record


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
    """Versioned guideline lists per profile: propose (draft), approve, read the one in use."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.revision = 0

    def propose(self, profile: str, items: list[str], *, source: str, profile_text: str,
                actor: str) -> GuidelineSet:
        for _ in range(20):
            with self._engine.begin() as conn:
                version = (conn.execute(select(func.max(t.profile_guidelines.c.version))
                                        .where(t.profile_guidelines.c.profile == profile)).scalar() or 0) + 1
                values = dict(profile=profile, version=version, status=GuidelineStatus.DRAFT.value,
                              items=list(items), source=source, profile_text=profile_text,
                              created_at=datetime.now(UTC), created_by=actor)
                try:
                    conn.execute(insert(t.profile_guidelines).values(**values))
                except IntegrityError:
                    continue  # another writer took this version number; take the next
                record(conn, actor, "guidelines.propose", f"guidelines:{profile}#v{version}",
                       {"items": list(items), "source": source})
                self.revision += 1
                return GuidelineSet(**values)
        raise ConflictError(f"Could not allocate a guideline version for {profile!r}; retry.")

    def approve(self, profile: str, version: int, *, actor: str) -> GuidelineSet:
        current = self.get(profile, version)
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            conn.execute(update(t.profile_guidelines)
                         .where(and_(t.profile_guidelines.c.profile == profile,
                                     t.profile_guidelines.c.status == GuidelineStatus.APPROVED.value,
                                     t.profile_guidelines.c.version != version))
                         .values(status=GuidelineStatus.RETIRED.value))
            conn.execute(update(t.profile_guidelines).where(_version(profile, version))
                         .values(status=GuidelineStatus.APPROVED.value, approved_at=now, approved_by=actor))
            record(conn, actor, "guidelines.approve", f"guidelines:{profile}#v{version}", {})
        self.revision += 1
        return current.model_copy(update={"status": GuidelineStatus.APPROVED, "approved_at": now,
                                          "approved_by": actor})

    def get(self, profile: str, version: int) -> GuidelineSet:
        with self._engine.connect() as conn:
            row = conn.execute(select(t.profile_guidelines).where(_version(profile, version))).first()
        if row is None:
            raise NotFoundError(f"Profile {profile!r} has no guideline version {version}.",
                                hint=f"See GET /admin/profiles/{profile}/guidelines.")
        return _to_set(row)

    def history(self, profile: str) -> list[GuidelineSet]:
        with self._engine.connect() as conn:
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
        with self._engine.connect() as conn:
            row = conn.execute(query.order_by(t.profile_guidelines.c.version.desc()).limit(1)).first()
        return _to_set(row) if row is not None else None


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
