"""Admin operations on users, profiles, API keys and derived guidelines, shared by the admin
HTTP API and `specguard admin`. Each write is checked against the policy file first (so the
composed view stays valid), then committed with its audit entry in one transaction."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..backends.base import Backend
from ..errors import ConfigError, ConflictError, InvalidRequestError, NotFoundError
from ..policy import ApiKey, Profile, ProfileAttributes, User
from ..store import GuidelineSet
from ._composed import ComposedPolicy, compose
from ._derive import derive_guidelines

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$"
Origin = Literal["file", "store"]


class InvalidReferenceError(InvalidRequestError):
    """The body names a tenant, profile or user that does not exist."""

    status_code = 422
    code = "invalid_value"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProfileIn(_Body):
    id: str = Field(pattern=_ID)
    text: str = Field(min_length=1, max_length=2000)
    attributes: ProfileAttributes = Field(default_factory=ProfileAttributes)
    settings: dict[str, Any] = Field(default_factory=dict)


class ProfilePatch(_Body):
    text: str | None = Field(None, min_length=1, max_length=2000)
    attributes: ProfileAttributes | None = None
    settings: dict[str, Any] | None = None


class UserIn(_Body):
    id: str = Field(pattern=_ID)
    tenant: str
    profile: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)


class UserPatch(_Body):
    tenant: str | None = None
    profile: str | None = None  # send null to unbind the profile
    settings: dict[str, Any] | None = None


class KeyIn(_Body):
    name: str = Field(pattern=_ID)
    tenant: str | None = None  # default: the user's tenant
    user: str | None = None
    admin: bool = False
    trusted_gateway: bool = False


class GuidelinesIn(_Body):
    items: list[str] = Field(max_length=50)

    @field_validator("items")
    @classmethod
    def _clean(cls, items: list[str]) -> list[str]:
        cleaned = [re.sub(r"\s+", " ", i).strip() for i in items]
        if any(not i or len(i) > 300 for i in cleaned):
            raise ValueError("each item must be 1-300 characters")
        return cleaned


class ProfileOut(BaseModel):
    id: str
    origin: Origin
    text: str
    attributes: ProfileAttributes
    settings: dict[str, Any]


class UserOut(BaseModel):
    id: str
    origin: Origin
    tenant: str
    profile: str | None
    settings: dict[str, Any]


class KeyOut(BaseModel):
    name: str
    origin: Origin
    tenant: str
    user: str | None
    admin: bool
    trusted_gateway: bool


class KeyCreated(KeyOut):
    key: str  # shown once; only its SHA-256 is stored


class DirectoryAdmin:
    """The admin's view of the directory the store keeps beside the policy file: users,
    profiles, API keys, derived guidelines and the audit log (every change is audited)."""

    def __init__(self, policy: ComposedPolicy, backend: Backend | None = None) -> None:
        self.policy = policy
        self.store = policy.store
        self.backend = backend

    # -- profiles --------------------------------------------------------------------------

    def profiles(self) -> list[ProfileOut]:
        return [self._profile_out(pid, p) for pid, p in sorted(self.policy.merged().file.profiles.items())]

    def profile(self, profile_id: str) -> ProfileOut:
        p = self.policy.merged().file.profiles.get(profile_id)
        if p is None:
            raise NotFoundError(f"No profile {profile_id!r}.", hint="List profiles with GET /admin/profiles.")
        return self._profile_out(profile_id, p)

    def create_profile(self, body: ProfileIn, actor: str) -> ProfileOut:
        if body.id in self.policy.merged().file.profiles:
            raise ConflictError(f"Profile {body.id!r} exists already.", hint="Update it with PATCH.")
        p = Profile(text=body.text, attributes=body.attributes, settings=body.settings)
        self._validate(profiles={body.id: p.model_dump(mode="json")})
        self.store.users.put_profile(body.id, p, actor=actor, create=True)
        return self.profile(body.id)

    def update_profile(self, profile_id: str, patch: ProfilePatch, actor: str) -> ProfileOut:
        current = self.profile(profile_id)
        p = Profile(text=patch.text or current.text,
                    attributes=patch.attributes if patch.attributes is not None else current.attributes,
                    settings=patch.settings if patch.settings is not None else current.settings)
        self._validate(profiles={profile_id: p.model_dump(mode="json")})
        self.store.users.put_profile(profile_id, p, actor=actor, create=False)
        return self.profile(profile_id)

    def delete_profile(self, profile_id: str, actor: str) -> None:
        """Delete the store's entry (the file's, if any, applies again)."""
        self._deletable("profiles", profile_id)
        if profile_id not in self.policy.base.file.profiles:
            users = self.policy.merged().file.users
            user = next((u for u, v in users.items() if v.profile == profile_id), None)
            if user is not None:
                raise ConflictError(f"Profile {profile_id!r} is still used by user {user!r}.",
                                    hint="Move or delete its users first.")
        self.store.users.delete_profile(profile_id, actor=actor)

    # -- users -----------------------------------------------------------------------------

    def users(self) -> list[UserOut]:
        return [self._user_out(uid, u) for uid, u in sorted(self.policy.merged().file.users.items())]

    def user(self, user_id: str) -> UserOut:
        u = self.policy.merged().file.users.get(user_id)
        if u is None:
            raise NotFoundError(f"No user {user_id!r}.", hint="List users with GET /admin/users.")
        return self._user_out(user_id, u)

    def create_user(self, body: UserIn, actor: str) -> UserOut:
        if body.id in self.policy.merged().file.users:
            raise ConflictError(f"User {body.id!r} exists already.", hint="Update it with PATCH.")
        u = User(tenant=body.tenant, profile=body.profile, settings=body.settings)
        self._validate(users={body.id: u.model_dump(mode="json")})
        self.store.users.put_user(body.id, u, actor=actor, create=True)
        return self.user(body.id)

    def update_user(self, user_id: str, patch: UserPatch, actor: str) -> UserOut:
        current = self.user(user_id)
        u = User(tenant=patch.tenant or current.tenant,
                 profile=patch.profile if "profile" in patch.model_fields_set else current.profile,
                 settings=patch.settings if patch.settings is not None else current.settings)
        self._validate(users={user_id: u.model_dump(mode="json")})
        self.store.users.put_user(user_id, u, actor=actor, create=False)
        return self.user(user_id)

    def delete_user(self, user_id: str, actor: str) -> None:
        self._deletable("users", user_id)
        self.store.users.delete_user(user_id, actor=actor)

    # -- API keys --------------------------------------------------------------------------

    def keys(self) -> list[KeyOut]:
        stored = {k.name for k in self.store.users.api_keys()}
        return [self._key_out(k, "store" if k.name in stored else "file")
                for k in sorted(self.policy.merged().file.api_keys, key=lambda k: k.name)]

    def create_key(self, body: KeyIn, actor: str) -> KeyCreated:
        merged = self.policy.merged().file
        if any(k.name == body.name for k in merged.api_keys):
            raise ConflictError(f"An API key named {body.name!r} exists already.",
                                hint="Pick another name, or delete the old key first.")
        tenant = body.tenant
        if body.user is not None:
            if body.user not in merged.users:
                raise InvalidReferenceError(f"user: unknown user {body.user!r}.", hint="Create the user first.")
            tenant = tenant or merged.users[body.user].tenant
        tenant = tenant or "default"
        if tenant not in merged.tenants:
            raise InvalidReferenceError(f"tenant: unknown tenant {tenant!r}.",
                                        hint="Tenants are declared in the policy file.")
        if body.user is not None and merged.users[body.user].tenant != tenant:
            raise InvalidReferenceError(f"user {body.user!r} is not in tenant {tenant!r}.")
        entry, clear = self.store.users.create_key(body.name, tenant=tenant, user=body.user,
                                                   admin=body.admin, trusted_gateway=body.trusted_gateway,
                                                   actor=actor)
        return KeyCreated(**self._key_out(entry, "store").model_dump(), key=clear)

    def delete_key(self, name: str, actor: str) -> None:
        stored = {k.name for k in self.store.users.api_keys()}
        if name not in stored:
            if any(k.name == name for k in self.policy.base.file.api_keys):
                raise ConflictError(f"API key {name!r} is declared in the policy file.",
                                    hint="Remove it from the file and restart.")
            raise NotFoundError(f"No API key named {name!r}.")
        self.store.users.delete_key(name, actor=actor)

    # -- guidelines ------------------------------------------------------------------------

    def guidelines(self, profile_id: str) -> list[GuidelineSet]:
        self.profile(profile_id)
        return self.store.guidelines.history(profile_id)

    async def derive(self, profile_id: str, actor: str, *, backend: Backend | None = None) -> GuidelineSet:
        """Ask the model for the profile's guidelines; stored as a new draft version."""
        p = self.profile(profile_id)
        model = backend or self.backend
        if model is None:
            raise ConfigError("No model is configured to derive guidelines.",
                              hint="Start the server with a backend, or pass --backend.")
        items = await derive_guidelines(model, Profile(text=p.text, attributes=p.attributes))
        return self.store.guidelines.propose(profile_id, items, source=f"model:{model.name}",
                                             profile_text=p.text, actor=actor)

    def edit(self, profile_id: str, body: GuidelinesIn, actor: str) -> GuidelineSet:
        """An admin's own list, stored as a new draft version."""
        p = self.profile(profile_id)
        return self.store.guidelines.propose(profile_id, body.items, source="admin",
                                             profile_text=p.text, actor=actor)

    def approve(self, profile_id: str, version: int, actor: str) -> GuidelineSet:
        self.profile(profile_id)
        return self.store.guidelines.approve(profile_id, version, actor=actor)

    def audit(self, limit: int = 100) -> list[dict]:
        return self.store.audit(limit)

    # -- helpers ---------------------------------------------------------------------------

    def _validate(self, **overrides: dict) -> None:
        try:
            compose(self.policy.base, self.store, **overrides)
        except ConfigError as exc:
            raise InvalidReferenceError(exc.message, hint=exc.hint) from exc

    def _deletable(self, kind: str, key: str) -> None:
        origin = self.policy.origin(kind, key)
        if origin is None:
            raise NotFoundError(f"No {kind[:-1]} {key!r}.")
        if origin == "file":
            raise ConflictError(f"{kind[:-1].capitalize()} {key!r} is declared in the policy file.",
                                hint="Remove it from the file and restart.")

    def _profile_out(self, pid: str, p: Profile) -> ProfileOut:
        return ProfileOut(id=pid, origin=self.policy.origin("profiles", pid) or "file", text=p.text,
                          attributes=p.attributes, settings=p.settings)

    def _user_out(self, uid: str, u: User) -> UserOut:
        return UserOut(id=uid, origin=self.policy.origin("users", uid) or "file", tenant=u.tenant,
                       profile=u.profile, settings=u.settings)

    @staticmethod
    def _key_out(k: ApiKey, origin: Origin) -> KeyOut:
        return KeyOut(name=k.name, origin=origin, tenant=k.tenant, user=k.user, admin=k.admin,
                      trusted_gateway=k.trusted_gateway)
