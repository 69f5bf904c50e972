from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationError
from sqlalchemy import Connection, Engine, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import ConflictError, InvalidRequestError, NotFoundError
from ..policy import ApiKey, Profile, User, hash_key
from . import _schema as t
from ._audit import DIRECTORY, bump, counter, record
from ._engine import is_sqlite, reading, writing
from ._guidelines import delete_history

log = logging.getLogger("specguard.store")


@dataclass
class DirectorySnapshot:
    """Every stored profile, user and key, read in one transaction, with the revision they are
    at. Rows that do not parse are left out and named in `problems` (a server keeps serving
    everyone else)."""

    revision: int
    profiles: dict[str, Profile] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    keys: dict[str, ApiKey] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class UserStore:
    """Profiles, users and API keys managed at run time (the admin API and CLI write here).

    Reads are single queries (listings are pages in id order). Writes go through `change()`:
    one transaction in which the caller validates against what the store holds now, then
    writes; every write records its audit entry and increases the directory revision in the
    same transaction, so a replica knows its cached view is stale from one small read.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- reading ---------------------------------------------------------------------------

    def revision(self) -> int:
        with reading(self._engine) as conn:
            return counter(conn, DIRECTORY)

    def snapshot(self) -> DirectorySnapshot:
        with reading(self._engine) as conn:
            snap = DirectorySnapshot(revision=counter(conn, DIRECTORY))
            for row in conn.execute(select(t.profiles).order_by(t.profiles.c.id)).all():
                _parse(snap, "profile", row.id, lambda r=row: _profile(r), snap.profiles)
            for row in conn.execute(select(t.users).order_by(t.users.c.id)).all():
                _parse(snap, "user", row.id, lambda r=row: _user(r), snap.users)
            for row in conn.execute(select(t.api_keys).order_by(t.api_keys.c.name)).all():
                _parse(snap, "API key", row.name, lambda r=row: _key(r), snap.keys)
        return snap

    def profiles(self) -> dict[str, Profile]:
        return self.snapshot().profiles

    def users(self) -> dict[str, User]:
        return self.snapshot().users

    def api_keys(self) -> list[ApiKey]:
        return list(self.snapshot().keys.values())

    def profile(self, profile_id: str) -> Profile | None:
        with reading(self._engine) as conn:
            return _one(conn, t.profiles, t.profiles.c.id == profile_id, _profile)

    def user(self, user_id: str) -> User | None:
        with reading(self._engine) as conn:
            return _one(conn, t.users, t.users.c.id == user_id, _user)

    def key(self, name: str) -> ApiKey | None:
        with reading(self._engine) as conn:
            return _one(conn, t.api_keys, t.api_keys.c.name == name, _key)

    def page_profiles(self, *, tenant: str | None = None, everything: bool = True,
                      after: str | None = None, limit: int = 100) -> list[tuple[str, Profile]]:
        """Profiles in id order after `after`: all (everything=True), or those `tenant` may see
        (its own and the shared ones)."""
        query = select(t.profiles)
        if not everything:
            query = query.where(or_(t.profiles.c.tenant == tenant, t.profiles.c.tenant.is_(None)))
        if after is not None:
            query = query.where(t.profiles.c.id > after)
        with reading(self._engine) as conn:
            rows = conn.execute(query.order_by(t.profiles.c.id).limit(limit)).all()
        return [(r.id, _profile(r)) for r in rows]

    def page_users(self, *, tenant: str | None = None, everything: bool = True,
                   after: str | None = None, limit: int = 100) -> list[tuple[str, User]]:
        c = t.users.c
        query = select(c.id, c.tenant, c.profile, c.file_profile, c.settings)
        if not everything:
            query = query.where(t.users.c.tenant == tenant)
        if after is not None:
            query = query.where(t.users.c.id > after)
        with reading(self._engine) as conn:
            rows = conn.execute(query.order_by(t.users.c.id).limit(limit)).all()
        # A listing shows what is stored as it is (no validation per row: a page of a thousand
        # stays a few milliseconds of work).
        return [(r.id, User.model_construct(tenant=r.tenant, profile=r.profile or r.file_profile,
                                            settings=r.settings or {})) for r in rows]

    def page_keys(self, *, tenant: str | None = None, everything: bool = True,
                  after: str | None = None, limit: int = 100) -> list[ApiKey]:
        query = select(t.api_keys)
        if not everything:
            query = query.where(t.api_keys.c.tenant == tenant)
        if after is not None:
            query = query.where(t.api_keys.c.name > after)
        with reading(self._engine) as conn:
            rows = conn.execute(query.order_by(t.api_keys.c.name).limit(limit)).all()
        return [_key(r) for r in rows]

    def ids(self, kind: str, ids: list[str]) -> set[str]:
        """Which of `ids` the store holds (kind: profiles, users or api_keys)."""
        table = {"profiles": t.profiles, "users": t.users, "api_keys": t.api_keys}[kind]
        column = table.c.name if kind == "api_keys" else table.c.id
        if not ids:
            return set()
        with reading(self._engine) as conn:
            return {r[0] for r in conn.execute(select(column).where(column.in_(ids))).all()}

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def change(self, actor: str) -> Iterator[DirectoryChange]:
        """One write transaction: read, validate and write through the DirectoryChange; it
        commits when the block ends (a raised error rolls everything back)."""
        try:
            with writing(self._engine) as conn:
                yield DirectoryChange(conn, actor)
        except IntegrityError as exc:
            raise _integrity(exc) from exc


class DirectoryChange:
    """The reads and writes of one directory transaction. Reads lock the rows they return on
    PostgreSQL (SQLite's write transaction holds the whole database already)."""

    def __init__(self, conn: Connection, actor: str) -> None:
        self.conn = conn
        self.actor = actor
        self.revision: int | None = None  # the directory revision after this change's writes

    # reads
    def profile(self, profile_id: str) -> Profile | None:
        return _one(self.conn, t.profiles, t.profiles.c.id == profile_id, _profile, lock=True)

    def user(self, user_id: str) -> User | None:
        return _one(self.conn, t.users, t.users.c.id == user_id, _user, lock=True)

    def key(self, name: str) -> ApiKey | None:
        return _one(self.conn, t.api_keys, t.api_keys.c.name == name, _key, lock=True)

    def user_of_profile(self, profile_id: str) -> str | None:
        """A stored user whose profile is `profile_id` (None: no one)."""
        row = self.conn.execute(select(t.users.c.id).where(
            or_(t.users.c.profile == profile_id, t.users.c.file_profile == profile_id)).limit(1)).first()
        return row[0] if row else None

    # writes
    def put_profile(self, profile_id: str, profile: Profile, *, create: bool) -> None:
        now = datetime.now(UTC)
        values = dict(tenant=profile.tenant, text=profile.text,
                      attributes=profile.attributes.model_dump(mode="json"),
                      settings=profile.settings, updated_at=now)
        if create or self.conn.execute(update(t.profiles).where(t.profiles.c.id == profile_id)
                                       .values(**values)).rowcount != 1:
            self.conn.execute(insert(t.profiles).values(id=profile_id, created_at=now, **values))
        self._done("profile.create" if create else "profile.update", f"profile:{profile_id}",
                   {"text": profile.text, "attributes": values["attributes"],
                    "settings": profile.settings, "tenant": profile.tenant}, profile.tenant)

    def delete_profile(self, profile_id: str, *, keep_guidelines: bool) -> None:
        current = self.profile(profile_id)
        if current is None:
            raise NotFoundError(f"No profile {profile_id!r} in the store.")
        self.conn.execute(delete(t.profiles).where(t.profiles.c.id == profile_id))
        removed = 0 if keep_guidelines else delete_history(self.conn, profile_id)
        self._done("profile.delete", f"profile:{profile_id}", {"guideline_versions_deleted": removed},
                   current.tenant)

    def put_user(self, user_id: str, user: User, *, create: bool, file_profile: bool) -> None:
        now = datetime.now(UTC)
        values = dict(tenant=user.tenant, settings=user.settings, updated_at=now,
                      profile=None if file_profile else user.profile,
                      file_profile=user.profile if file_profile else None)
        if create or self.conn.execute(update(t.users).where(t.users.c.id == user_id)
                                       .values(**values)).rowcount != 1:
            self.conn.execute(insert(t.users).values(id=user_id, created_at=now, **values))
        self._done("user.create" if create else "user.update", f"user:{user_id}",
                   {"tenant": user.tenant, "profile": user.profile, "settings": user.settings},
                   user.tenant)

    def delete_user(self, user_id: str) -> int:
        """Delete a stored user and the stored keys bound to it (a key of a deleted user would
        otherwise authenticate as nobody in particular); how many keys went."""
        current = self.user(user_id)
        if current is None:
            raise NotFoundError(f"No user {user_id!r} in the store.")
        keys = self.conn.execute(delete(t.api_keys).where(
            or_(t.api_keys.c.user == user_id, t.api_keys.c.file_user == user_id))).rowcount
        self.conn.execute(delete(t.users).where(t.users.c.id == user_id))
        self._done("user.delete", f"user:{user_id}", {"keys_deleted": keys}, current.tenant)
        return keys

    def create_key(self, name: str, *, tenant: str, user: str | None, file_user: bool,
                   admin: bool, operator: bool, trusted_gateway: bool) -> tuple[ApiKey, str]:
        """A new random key; its record and the clear key, which is never stored."""
        clear = "sg-" + secrets.token_urlsafe(24)
        entry = ApiKey(name=name, sha256=hash_key(clear), tenant=tenant, user=user, admin=admin,
                       operator=operator, trusted_gateway=trusted_gateway)
        self.conn.execute(insert(t.api_keys).values(
            name=name, sha256=entry.sha256, tenant=tenant,
            user=None if file_user else user, file_user=user if file_user else None,
            admin=admin, operator=operator, trusted_gateway=trusted_gateway,
            created_at=datetime.now(UTC), created_by=self.actor))
        self._done("api_key.create", f"api_key:{name}",
                   {"tenant": tenant, "user": user, "admin": admin, "operator": operator,
                    "trusted_gateway": trusted_gateway}, tenant)
        return entry, clear

    def delete_key(self, name: str) -> None:
        current = self.key(name)
        if current is None:
            raise NotFoundError(f"No API key named {name!r} in the store.")
        self.conn.execute(delete(t.api_keys).where(t.api_keys.c.name == name))
        self._done("api_key.delete", f"api_key:{name}", {}, current.tenant)

    def _done(self, action: str, target: str, detail: dict, tenant: str | None) -> None:
        record(self.conn, self.actor, action, target, detail, tenant=tenant)
        self.revision = bump(self.conn, DIRECTORY)


def _integrity(exc: IntegrityError) -> Exception:
    """A constraint the transaction's own checks could not see coming (a concurrent writer):
    a conflict, said in the caller's terms."""
    text = str(exc.orig).lower()
    if "foreign key" in text:
        return ConflictError("A referenced profile or user was changed or deleted meanwhile, or "
                             "is still in use.", hint="Re-read it and try again.")
    if "unique" in text or "duplicate" in text:
        return ConflictError("An entry with this id exists already.",
                             hint="Pick another id, or update the existing entry.")
    return InvalidRequestError("The store refused the change.", hint="Re-read and try again.")


def _one(conn: Connection, table, where, parse, *, lock: bool = False):
    query = select(table).where(where)
    if lock and not is_sqlite(conn):
        query = query.with_for_update()
    row = conn.execute(query).first()
    return parse(row) if row is not None else None


def _parse(snap: DirectorySnapshot, kind: str, key: str, make, into: dict) -> None:
    try:
        into[key] = make()
    except (ValidationError, ValueError, TypeError) as exc:
        snap.problems.append(f"stored {kind} {key!r} is invalid and is not served: "
                             f"{type(exc).__name__}")


def _profile(row) -> Profile:
    return Profile(text=row.text, tenant=row.tenant, attributes=row.attributes or {},
                   settings=row.settings or {})


def _user(row) -> User:
    return User(tenant=row.tenant, profile=row.profile or row.file_profile,
                settings=row.settings or {})


def _key(row) -> ApiKey:
    return ApiKey(name=row.name, sha256=row.sha256, tenant=row.tenant,
                  user=row.user or row.file_user, admin=bool(row.admin),
                  operator=bool(row.operator), trusted_gateway=bool(row.trusted_gateway))


