from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import ConflictError, NotFoundError
from ..policy import ApiKey, Profile, User, hash_key
from . import _schema as t
from ._audit import record


class UserStore:
    """Profiles, users and API keys managed at run time (the admin API writes here).

    Every write records an audit entry in the same transaction. `revision` increases on
    every write in this process, so readers in the same process see a change at once
    (other replicas within their cache time).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.revision = 0

    # -- profiles --------------------------------------------------------------------------

    def profiles(self) -> dict[str, Profile]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(t.profiles).order_by(t.profiles.c.id)).all()
        return {r.id: _profile(r) for r in rows}

    def profile(self, profile_id: str) -> Profile:
        with self._engine.connect() as conn:
            row = conn.execute(select(t.profiles).where(t.profiles.c.id == profile_id)).first()
        if row is None:
            raise NotFoundError(f"No profile {profile_id!r} in the store.",
                                hint="List profiles with GET /admin/profiles.")
        return _profile(row)

    def put_profile(self, profile_id: str, profile: Profile, *, actor: str, create: bool) -> Profile:
        """Insert (create=True; 409 if it exists) or replace (create=False; 404 if absent)."""
        now = datetime.now(UTC)
        values = dict(text=profile.text, attributes=profile.attributes.model_dump(mode="json"),
                      settings=profile.settings, updated_at=now)
        with self._engine.begin() as conn:
            if create:
                try:
                    conn.execute(insert(t.profiles).values(id=profile_id, created_at=now, **values))
                except IntegrityError as exc:
                    raise ConflictError(f"Profile {profile_id!r} exists already.",
                                        hint="Update it with PATCH instead.") from exc
            else:
                done = conn.execute(update(t.profiles).where(t.profiles.c.id == profile_id).values(**values))
                if done.rowcount != 1:
                    conn.execute(insert(t.profiles).values(id=profile_id, created_at=now, **values))
            record(conn, actor, "profile.create" if create else "profile.update", f"profile:{profile_id}",
                   {"text": profile.text, "attributes": values["attributes"], "settings": profile.settings})
        self.revision += 1
        return profile

    def delete_profile(self, profile_id: str, *, actor: str) -> None:
        with self._engine.begin() as conn:
            done = conn.execute(delete(t.profiles).where(t.profiles.c.id == profile_id))
            if done.rowcount != 1:
                raise NotFoundError(f"No profile {profile_id!r} in the store.")
            record(conn, actor, "profile.delete", f"profile:{profile_id}", {})
        self.revision += 1

    # -- users -----------------------------------------------------------------------------

    def users(self) -> dict[str, User]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(t.users).order_by(t.users.c.id)).all()
        return {r.id: _user(r) for r in rows}

    def put_user(self, user_id: str, user: User, *, actor: str, create: bool) -> User:
        now = datetime.now(UTC)
        values = dict(tenant=user.tenant, profile=user.profile, settings=user.settings, updated_at=now)
        with self._engine.begin() as conn:
            if create:
                try:
                    conn.execute(insert(t.users).values(id=user_id, created_at=now, **values))
                except IntegrityError as exc:
                    raise ConflictError(f"User {user_id!r} exists already.",
                                        hint="Update it with PATCH instead.") from exc
            else:
                done = conn.execute(update(t.users).where(t.users.c.id == user_id).values(**values))
                if done.rowcount != 1:
                    conn.execute(insert(t.users).values(id=user_id, created_at=now, **values))
            record(conn, actor, "user.create" if create else "user.update", f"user:{user_id}",
                   {"tenant": user.tenant, "profile": user.profile, "settings": user.settings})
        self.revision += 1
        return user

    def delete_user(self, user_id: str, *, actor: str) -> None:
        with self._engine.begin() as conn:
            done = conn.execute(delete(t.users).where(t.users.c.id == user_id))
            if done.rowcount != 1:
                raise NotFoundError(f"No user {user_id!r} in the store.")
            # A key bound to a deleted user would otherwise authenticate as nobody in particular.
            keys = conn.execute(delete(t.api_keys).where(t.api_keys.c.user == user_id)).rowcount
            record(conn, actor, "user.delete", f"user:{user_id}", {"keys_deleted": keys})
        self.revision += 1

    # -- API keys --------------------------------------------------------------------------

    def api_keys(self) -> list[ApiKey]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(t.api_keys).order_by(t.api_keys.c.name)).all()
        return [_key(r) for r in rows]

    def create_key(self, name: str, *, tenant: str, user: str | None, admin: bool = False,
                   trusted_gateway: bool = False, actor: str) -> tuple[ApiKey, str]:
        """A new random key; returns its record and the clear key, which is never stored."""
        clear = "sg-" + secrets.token_urlsafe(24)
        entry = ApiKey(name=name, sha256=hash_key(clear), tenant=tenant, user=user, admin=admin,
                       trusted_gateway=trusted_gateway)
        with self._engine.begin() as conn:
            try:
                conn.execute(insert(t.api_keys).values(**entry.model_dump(), created_at=datetime.now(UTC),
                                                       created_by=actor))
            except IntegrityError as exc:
                raise ConflictError(f"An API key named {name!r} exists already.",
                                    hint="Pick another name, or delete the old key first.") from exc
            record(conn, actor, "api_key.create", f"api_key:{name}",
                   {"tenant": tenant, "user": user, "admin": admin, "trusted_gateway": trusted_gateway})
        self.revision += 1
        return entry, clear

    def delete_key(self, name: str, *, actor: str) -> None:
        with self._engine.begin() as conn:
            done = conn.execute(delete(t.api_keys).where(t.api_keys.c.name == name))
            if done.rowcount != 1:
                raise NotFoundError(f"No API key named {name!r} in the store.")
            record(conn, actor, "api_key.delete", f"api_key:{name}", {})
        self.revision += 1


def _profile(row) -> Profile:
    return Profile(text=row.text, attributes=row.attributes or {}, settings=row.settings or {})


def _user(row) -> User:
    return User(tenant=row.tenant, profile=row.profile, settings=row.settings or {})


def _key(row) -> ApiKey:
    return ApiKey(name=row.name, sha256=row.sha256, tenant=row.tenant, user=row.user,
                  admin=bool(row.admin), trusted_gateway=bool(row.trusted_gateway))
