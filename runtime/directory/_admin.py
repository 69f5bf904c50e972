"""Admin operations on users, profiles, API keys and derived guidelines, shared by the admin
HTTP API and `specguard admin`, under one set of rights:

- an admin key administers its own tenant: it reads that tenant's users, keys and audit entries
  and the profiles its users may use (its own and the shared ones); a write to anything of
  another tenant, or to a shared profile, is refused (403); an entry it cannot see is 404;
- an operator (an operator key, or the CLI, which holds the store's credentials) administers
  every tenant and what they share;
- nobody mints a key with more rights than their own (admin <= admin, operator <= operator);
- a profile is owned by a tenant or shared; a user may use its own tenant's profiles and the
  shared ones, so editing a tenant's profile never changes another tenant's requests.

Each write runs in one store transaction: the checks (references, rights, the merged
settings) read what the store holds inside that transaction, then the write and its audit
entry commit together. The policy file is the declarative layer underneath (see ComposedPolicy).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..backends.base import Backend
from ..errors import (
    ConfigError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from ..policy import ApiKey, Caller, Policy, Profile, ProfileAttributes, User
from ..profiles._check import load_profile_check
from ..profiles._derive import derive_guidelines
from ..profiles._library import load_library
from ..store import DirectoryChange, GuidelineSet
from ._composed import ComposedPolicy

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
Origin = Literal["file", "store"]
T = TypeVar("T")
MAX_PAGE = 1000


class InvalidReferenceError(InvalidRequestError):
    """The body names a tenant, profile or user that does not exist (or that the caller's
    tenant cannot use)."""

    status_code = 422
    code = "invalid_value"


class Principal(BaseModel):
    """Who acts on the directory, and with which rights (see the module docstring)."""

    actor: str  # what the audit log records: "key:<name>" or "cli:<login>"
    tenant: str | None = None
    admin: bool = False
    operator: bool = False
    trusted_gateway: bool = False

    @classmethod
    def of(cls, caller: Caller) -> Principal:
        return cls(actor=f"key:{caller.key_name}", tenant=caller.tenant, admin=caller.admin,
                   operator=caller.operator, trusted_gateway=caller.trusted_gateway)

    @classmethod
    def operator_named(cls, actor: str) -> Principal:
        return cls(actor=actor, admin=True, operator=True)

    def administers(self, tenant: str | None) -> bool:
        return self.operator or (self.admin and tenant is not None and tenant == self.tenant)

    def sees(self, tenant: str | None) -> bool:
        """Whether an entry of `tenant` is visible (None: shared, visible to every admin)."""
        return self.operator or tenant is None or tenant == self.tenant


def _who(actor: Principal | str) -> Principal:
    return actor if isinstance(actor, Principal) else Principal.operator_named(actor)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProfileIn(_Body):
    id: str = Field(pattern=_ID)
    text: str = Field(min_length=1, max_length=2000)
    # The owning tenant; omitted: the admin's own tenant (an operator's omission: shared).
    tenant: str | None = Field(None, pattern=_ID)
    attributes: ProfileAttributes = Field(default_factory=ProfileAttributes)
    settings: dict[str, Any] = Field(default_factory=dict)


class ProfilePatch(_Body):
    text: str | None = Field(None, min_length=1, max_length=2000)
    tenant: str | None = Field(None, pattern=_ID)  # a new owner (operators only); null: shared
    attributes: ProfileAttributes | None = None
    settings: dict[str, Any] | None = None


class UserIn(_Body):
    id: str = Field(pattern=_ID)
    tenant: str | None = Field(None, pattern=_ID)  # omitted: the admin's own tenant
    profile: str | None = Field(None, pattern=_ID)
    settings: dict[str, Any] = Field(default_factory=dict)


class UserPatch(_Body):
    tenant: str | None = Field(None, pattern=_ID)
    profile: str | None = Field(None, pattern=_ID)  # send null to unbind the profile
    settings: dict[str, Any] | None = None


class KeyIn(_Body):
    name: str = Field(pattern=_ID)
    tenant: str | None = Field(None, pattern=_ID)  # default: the user's tenant, else the admin's
    user: str | None = Field(None, pattern=_ID)
    admin: bool = False
    operator: bool = False
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


class LibraryDraftIn(_Body):
    """Which guideline-library attributes to draft a profile's guidelines from. None: the
    profile's own attributes (ProfileAttributes, mapped onto the library), and with `suggest`,
    when those name none, the attributes its text suggests (the profile check's encoder)."""

    attributes: list[str] | None = Field(None, max_length=20)
    suggest: bool = True


class LibraryAttributeOut(BaseModel):
    id: str
    kind: str
    name: str
    guidelines: list[str]


class ProfileOut(BaseModel):
    id: str
    origin: Origin
    tenant: str | None  # None: shared by every tenant
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
    operator: bool = False
    trusted_gateway: bool


class KeyCreated(KeyOut):
    key: str  # shown once; only its SHA-256 is stored


class Page(BaseModel, Generic[T]):
    """One page of a listing, in id order (OpenAI's list shape): pass `last_id` as `after` for
    the next page while `has_more`."""

    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool = False
    last_id: str | None = None


class DirectoryAdmin:
    """The admin's view of the directory the store keeps beside the policy file: users,
    profiles, API keys, derived guidelines and the audit log (every change is audited). Every
    method takes who acts (a Principal; a bare string is an operator of that name, as the CLI
    is). Blocking: the server calls it off the event loop."""

    def __init__(self, policy: ComposedPolicy, backend: Backend | None = None) -> None:
        self.policy = policy
        self.store = policy.store
        self.backend = backend

    @property
    def file(self):
        return self.policy.base.file

    # -- profiles --------------------------------------------------------------------------

    def profiles(self, actor: Principal | str = "system", *, after: str | None = None,
                 limit: int = 100) -> Page[ProfileOut]:
        who = _who(actor)
        rows = self.store.users.page_profiles(tenant=who.tenant, everything=who.operator,
                                              after=after, limit=_limit(limit) + 1)
        return self._page("profiles", rows, self.file.profiles, after, limit,
                          lambda p: who.sees(p.tenant), self._profile_out)

    def profile(self, profile_id: str, actor: Principal | str = "system") -> ProfileOut:
        who = _who(actor)
        found = self._find_profile(profile_id)
        if found is None or not who.sees(found[1].tenant):
            raise NotFoundError(f"No profile {profile_id!r}.", hint="List profiles with GET /admin/profiles.")
        return self._profile_out(profile_id, found[1], found[0])

    def create_profile(self, body: ProfileIn, actor: Principal | str) -> ProfileOut:
        who = _who(actor)
        owner = body.tenant if "tenant" in body.model_fields_set else (None if who.operator else who.tenant)
        self._require(who, owner, f"create a profile for {_owner(owner)}")
        self._known_tenant(owner)
        p = Profile(text=body.text, tenant=owner, attributes=body.attributes, settings=body.settings)
        with self.store.users.change(who.actor) as tx:
            if body.id in self.file.profiles or tx.profile(body.id) is not None:
                raise ConflictError(f"Profile {body.id!r} exists already.",
                                    hint="Update it with PATCH, or pick another id.")
            self._check_profile(body.id, p, tx)
            tx.put_profile(body.id, p, create=True)
        self.policy.apply(tx.revision, [("profiles", body.id, p)])
        return self._profile_out(body.id, p, "store")

    def update_profile(self, profile_id: str, patch: ProfilePatch, actor: Principal | str) -> ProfileOut:
        who = _who(actor)
        with self.store.users.change(who.actor) as tx:
            current = tx.profile(profile_id) or self.file.profiles.get(profile_id)
            self._writable(who, "profile", profile_id, current.tenant if current else None,
                           current is not None)
            assert current is not None
            owner = patch.tenant if "tenant" in patch.model_fields_set else current.tenant
            if owner != current.tenant:
                self._require(who, owner, f"give profile {profile_id!r} to {_owner(owner)}")
                self._known_tenant(owner)
            p = Profile(text=patch.text or current.text, tenant=owner,
                        attributes=patch.attributes if patch.attributes is not None else current.attributes,
                        settings=patch.settings if patch.settings is not None else current.settings)
            self._check_profile(profile_id, p, tx)
            tx.put_profile(profile_id, p, create=False)
        self.policy.apply(tx.revision, [("profiles", profile_id, p)])
        return self._profile_out(profile_id, p, "store")

    def delete_profile(self, profile_id: str, actor: Principal | str) -> None:
        """Delete the store's entry (the file's, if any, applies again)."""
        who = _who(actor)
        with self.store.users.change(who.actor) as tx:
            current = tx.profile(profile_id)
            if current is None:
                if profile_id in self.file.profiles and who.sees(self.file.profiles[profile_id].tenant):
                    raise ConflictError(f"Profile {profile_id!r} is declared in the policy file.",
                                        hint="Remove it from the file and restart.")
                raise NotFoundError(f"No profile {profile_id!r}.")
            self._writable(who, "profile", profile_id, current.tenant, True)
            fallback = self.file.profiles.get(profile_id)
            user = tx.user_of_profile(profile_id)
            if user is not None and (fallback is None or not self._still_usable(profile_id, fallback, tx)):
                raise ConflictError(f"Profile {profile_id!r} is still used by user {user!r}.",
                                    hint="Move or delete its users first.")
            tx.delete_profile(profile_id, keep_guidelines=fallback is not None)
        self.policy.apply(tx.revision, [("profiles", profile_id, None)])

    # -- users -----------------------------------------------------------------------------

    def users(self, actor: Principal | str = "system", *, after: str | None = None,
              limit: int = 100) -> Page[UserOut]:
        who = _who(actor)
        rows = self.store.users.page_users(tenant=who.tenant, everything=who.operator,
                                           after=after, limit=_limit(limit) + 1)
        return self._page("users", rows, self.file.users, after, limit,
                          lambda u: who.operator or u.tenant == who.tenant, self._user_out)

    def user(self, user_id: str, actor: Principal | str = "system") -> UserOut:
        who = _who(actor)
        found = self._find_user(user_id)
        if found is None or not (who.operator or found[1].tenant == who.tenant):
            raise NotFoundError(f"No user {user_id!r}.", hint="List users with GET /admin/users.")
        return self._user_out(user_id, found[1], found[0])

    def create_user(self, body: UserIn, actor: Principal | str) -> UserOut:
        who = _who(actor)
        tenant = body.tenant or who.tenant or "default"
        self._require(who, tenant, f"create a user in tenant {tenant!r}")
        self._known_tenant(tenant)
        u = User(tenant=tenant, profile=body.profile, settings=body.settings)
        with self.store.users.change(who.actor) as tx:
            if body.id in self.file.users or tx.user(body.id) is not None:
                raise ConflictError(f"User {body.id!r} exists already.",
                                    hint="Update it with PATCH, or pick another id.")
            self._check_user(body.id, u, tx)
            tx.put_user(body.id, u, create=True, file_profile=u.profile in self.file.profiles)
        self.policy.apply(tx.revision, [("users", body.id, u)])
        return self._user_out(body.id, u, "store")

    def update_user(self, user_id: str, patch: UserPatch, actor: Principal | str) -> UserOut:
        who = _who(actor)
        with self.store.users.change(who.actor) as tx:
            current = tx.user(user_id) or self.file.users.get(user_id)
            self._writable(who, "user", user_id, current.tenant if current else None,
                           current is not None, tenant_scoped=True)
            assert current is not None
            tenant = patch.tenant or current.tenant
            if tenant != current.tenant:
                self._require(who, tenant, f"move user {user_id!r} to tenant {tenant!r}")
                self._known_tenant(tenant)
            u = User(tenant=tenant,
                     profile=patch.profile if "profile" in patch.model_fields_set else current.profile,
                     settings=patch.settings if patch.settings is not None else current.settings)
            self._check_user(user_id, u, tx)
            tx.put_user(user_id, u, create=False, file_profile=u.profile in self.file.profiles)
        self.policy.apply(tx.revision, [("users", user_id, u)])
        return self._user_out(user_id, u, "store")

    def delete_user(self, user_id: str, actor: Principal | str) -> None:
        who = _who(actor)
        with self.store.users.change(who.actor) as tx:
            current = tx.user(user_id)
            if current is None:
                if user_id in self.file.users and (who.operator or self.file.users[user_id].tenant == who.tenant):
                    raise ConflictError(f"User {user_id!r} is declared in the policy file.",
                                        hint="Remove it from the file and restart.")
                raise NotFoundError(f"No user {user_id!r}.")
            self._writable(who, "user", user_id, current.tenant, True, tenant_scoped=True)
            tx.delete_user(user_id)
        self.policy.refresh(force=True)  # its keys went with it

    # -- API keys --------------------------------------------------------------------------

    def keys(self, actor: Principal | str = "system", *, after: str | None = None,
             limit: int = 100) -> Page[KeyOut]:
        who = _who(actor)
        rows = [(k.name, k) for k in self.store.users.page_keys(
            tenant=who.tenant, everything=who.operator, after=after, limit=_limit(limit) + 1)]
        file_keys = {k.name: k for k in self.file.api_keys}
        return self._page("api_keys", rows, file_keys, after, limit,
                          lambda k: who.operator or k.tenant == who.tenant,
                          lambda name, k, origin: self._key_out(k, origin))

    def create_key(self, body: KeyIn, actor: Principal | str) -> KeyCreated:
        who = _who(actor)
        if body.operator and not who.operator:
            raise PermissionDeniedError("Only an operator may create an operator key.",
                                        hint="A key never has more rights than the key that made it.")
        if (body.admin or body.trusted_gateway) and not who.admin:
            raise PermissionDeniedError("Only an admin may create admin or gateway keys.")
        with self.store.users.change(who.actor) as tx:
            if any(k.name == body.name for k in self.file.api_keys) or tx.key(body.name) is not None:
                raise ConflictError(f"An API key named {body.name!r} exists already.",
                                    hint="Pick another name, or delete the old key first.")
            user = None
            if body.user is not None:
                user = tx.user(body.user) or self.file.users.get(body.user)
                if user is None or not (who.operator or user.tenant == who.tenant):
                    raise InvalidReferenceError(f"user: unknown user {body.user!r}.",
                                                hint="Create the user first.")
            tenant = body.tenant or (user.tenant if user else None) or who.tenant or "default"
            self._require(who, tenant, f"create a key for tenant {tenant!r}")
            self._known_tenant(tenant)
            if user is not None and user.tenant != tenant:
                raise InvalidReferenceError(f"user {body.user!r} is not in tenant {tenant!r}.")
            entry, clear = tx.create_key(body.name, tenant=tenant, user=body.user,
                                         file_user=body.user in self.file.users and tx.user(body.user) is None,
                                         admin=body.admin or body.operator, operator=body.operator,
                                         trusted_gateway=body.trusted_gateway)
        self.policy.apply(tx.revision, [("keys", entry.name, entry)])
        return KeyCreated(**self._key_out(entry, "store").model_dump(), key=clear)

    def delete_key(self, name: str, actor: Principal | str) -> None:
        who = _who(actor)
        with self.store.users.change(who.actor) as tx:
            current = tx.key(name)
            if current is None:
                filed = next((k for k in self.file.api_keys if k.name == name), None)
                if filed is not None and (who.operator or filed.tenant == who.tenant):
                    raise ConflictError(f"API key {name!r} is declared in the policy file.",
                                        hint="Remove it from the file and restart.")
                raise NotFoundError(f"No API key named {name!r}.")
            self._writable(who, "API key", name, current.tenant, True, tenant_scoped=True)
            if current.operator and not who.operator:
                raise PermissionDeniedError(f"API key {name!r} is an operator's key.",
                                            hint="Only an operator may delete it.")
            tx.delete_key(name)
        self.policy.apply(tx.revision, [("keys", name, None)])

    # -- guidelines ------------------------------------------------------------------------

    def guidelines(self, profile_id: str, actor: Principal | str = "system") -> list[GuidelineSet]:
        self.profile(profile_id, actor)
        return self.store.guidelines.history(profile_id)

    async def derive(self, profile_id: str, actor: Principal | str, *,
                     backend: Backend | None = None) -> GuidelineSet:
        """Ask the model for the profile's guidelines; stored as a new draft version."""
        p = await self.store.run(self._guideline_target, profile_id, actor)
        model = backend or self.backend
        if model is None:
            raise ConfigError("No model is configured to derive guidelines.",
                              hint="Start the server with a backend, or pass --backend.")
        items = await derive_guidelines(model, Profile(text=p.text, attributes=p.attributes))
        return await self.store.run(
            self.store.guidelines.propose, profile_id, items, source=f"model:{model.name}",
            profile_text=p.text, actor=_who(actor).actor, tenant=p.tenant)

    async def draft_from_library(self, profile_id: str, body: LibraryDraftIn,
                                 actor: Principal | str) -> GuidelineSet:
        """The guideline library's guidelines for the profile's attributes, stored as a new
        draft version (source `library:<attribute ids>`) for an admin to edit and approve."""
        p = await self.store.run(self._guideline_target, profile_id, actor)
        lib = load_library()
        if body.attributes is not None:
            unknown = sorted(set(body.attributes) - set(lib.attributes))
            if unknown:
                raise InvalidReferenceError(
                    f"attributes: unknown guideline-library attributes {unknown}.",
                    hint="List them with GET /admin/guideline-library.")
            ids = list(dict.fromkeys(body.attributes))
        else:
            try:
                ids = lib.attributes_for(p.attributes)
            except ConfigError as exc:
                raise InvalidReferenceError(exc.message, hint=exc.hint) from exc
            if not ids and body.suggest:
                check = await asyncio.to_thread(load_profile_check)
                ids = [a for a, _ in await asyncio.to_thread(check.suggest_attributes, p.text)]
        if not ids:
            raise InvalidRequestError(
                f"No guideline-library attribute applies to profile {profile_id!r}.",
                hint="Name attributes in the body (GET /admin/guideline-library lists them), "
                     "or write the list yourself.")
        return await self.store.run(
            self.store.guidelines.propose, profile_id, lib.draft(ids),
            source="library:" + ",".join(ids), profile_text=p.text, actor=_who(actor).actor,
            tenant=p.tenant)

    @staticmethod
    def guideline_library() -> list[LibraryAttributeOut]:
        """The guideline library's attributes and their guidelines."""
        return [LibraryAttributeOut(id=a.id, kind=a.kind.value, name=a.name,
                                    guidelines=[g.decline for g in a.guidelines])
                for a in load_library().attributes.values()]

    def edit(self, profile_id: str, body: GuidelinesIn, actor: Principal | str) -> GuidelineSet:
        """An admin's own list, stored as a new draft version."""
        p = self._guideline_target(profile_id, actor)
        return self.store.guidelines.propose(profile_id, body.items, source="admin",
                                             profile_text=p.text, actor=_who(actor).actor,
                                             tenant=p.tenant)

    def approve(self, profile_id: str, version: int, actor: Principal | str) -> GuidelineSet:
        p = self._guideline_target(profile_id, actor)
        return self.store.guidelines.approve(profile_id, version, actor=_who(actor).actor,
                                             tenant=p.tenant)

    def audit(self, limit: int = 100, actor: Principal | str = "system", *,
              before: int | None = None) -> list[dict]:
        who = _who(actor)
        return self.store.audit(_limit(limit), tenant=who.tenant, everything=who.operator,
                                before=before)

    # -- helpers ---------------------------------------------------------------------------

    def _find_profile(self, profile_id: str) -> tuple[Origin, Profile] | None:
        stored = self.store.users.profile(profile_id)
        if stored is not None:
            return "store", stored
        filed = self.file.profiles.get(profile_id)
        return ("file", filed) if filed is not None else None

    def _find_user(self, user_id: str) -> tuple[Origin, User] | None:
        stored = self.store.users.user(user_id)
        if stored is not None:
            return "store", stored
        filed = self.file.users.get(user_id)
        return ("file", filed) if filed is not None else None

    def _guideline_target(self, profile_id: str, actor: Principal | str) -> ProfileOut:
        """The profile whose guidelines `actor` changes: 404 when there is none, 403 when it is
        another tenant's or shared (an operator's)."""
        who = _who(actor)
        found = self._find_profile(profile_id)
        self._writable(who, "profile", profile_id, found[1].tenant if found else None,
                       found is not None)
        assert found is not None
        return self._profile_out(profile_id, found[1], found[0])

    def _require(self, who: Principal, tenant: str | None, what: str) -> None:
        if not who.administers(tenant):
            raise PermissionDeniedError(
                f"This key may not {what}.",
                hint=("Only an operator key acts outside its own tenant or on shared profiles."
                      if who.admin else "Use an admin key."))

    def _writable(self, who: Principal, kind: str, key: str, tenant: str | None, exists: bool,
                  *, tenant_scoped: bool = False) -> None:
        """404 for what does not exist; 403 for what exists outside the caller's rights."""
        if not exists:
            raise NotFoundError(f"No {kind} {key!r}.")
        if not who.administers(tenant):
            whose = f"tenant {tenant!r}" if tenant_scoped or tenant else "every tenant (shared)"
            raise PermissionDeniedError(f"The {kind} {key!r} belongs to {whose}; this key may "
                                        "not change it.",
                                        hint="Only an operator key acts outside its own tenant.")

    def _known_tenant(self, tenant: str | None) -> None:
        if tenant is not None and tenant not in self.file.tenants:
            raise InvalidReferenceError(f"tenant: unknown tenant {tenant!r}.",
                                        hint="Tenants are declared in the policy file.")

    def _check_user(self, user_id: str, user: User, tx: DirectoryChange) -> None:
        """Inside the write: the profile exists and the user's tenant may use it, and the
        user's settings merge with its tenant's and profile's into a valid policy."""
        profile = None
        if user.profile is not None:
            profile = tx.profile(user.profile) or self.file.profiles.get(user.profile)
            if profile is None or not profile.usable_by(user.tenant):
                raise InvalidReferenceError(f"profile: unknown profile {user.profile!r}.",
                                            hint="Create the profile in this tenant first.")
        _admin_settings(user.settings, "settings")
        self._resolves(user.tenant, user_id, user, user.profile, profile)

    def _check_profile(self, profile_id: str, profile: Profile, tx: DirectoryChange) -> None:
        """Inside the write: the settings are valid, merged with each tenant that may use the
        profile, and the stored users of the profile can still use it."""
        _admin_settings(profile.settings, "settings")
        tenants = [profile.tenant] if profile.tenant is not None else list(self.file.tenants)
        for tenant in tenants:
            self._resolves(tenant, None, None, profile_id, profile)
        user = tx.user_of_profile(profile_id)
        if user is not None:
            bound = tx.user(user)
            if bound is not None and not profile.usable_by(bound.tenant):
                raise ConflictError(f"Profile {profile_id!r} is used by user {user!r} of tenant "
                                    f"{bound.tenant!r}.", hint="Move its users first.")

    def _still_usable(self, profile_id: str, fallback: Profile, tx: DirectoryChange) -> bool:
        user = tx.user_of_profile(profile_id)
        bound = tx.user(user) if user else None
        return bound is None or fallback.usable_by(bound.tenant)

    def _resolves(self, tenant: str, user_id: str | None, user: User | None,
                  profile_id: str | None, profile: Profile | None) -> None:
        data: dict[str, Any] = {
            "defaults": self.file.defaults,
            "tenants": {tenant: self.file.tenants[tenant].model_dump(mode="json")},
        }
        if profile_id is not None and profile is not None:
            data["profiles"] = {profile_id: profile.model_dump(mode="json")}
        uid = user_id or "_check"
        data["users"] = {uid: (user or User(tenant=tenant, profile=profile_id)).model_dump(mode="json")}
        try:
            Policy.from_dict(data, source="the new entry")
        except ConfigError as exc:
            raise InvalidReferenceError(exc.message, hint=exc.hint) from exc

    def _page(self, kind: str, stored: list[tuple[str, Any]], filed: dict[str, Any],
              after: str | None, limit: int, visible: Callable[[Any], bool],
              out: Callable[[str, Any, Origin], T]) -> Page[T]:
        """Store rows (one page, already filtered) merged in id order with the file's entries
        (a store entry replaces the file's with the same id)."""
        limit = _limit(limit)
        candidates = sorted((k, v) for k, v in filed.items()
                            if (after is None or k > after) and visible(v))[: limit + 1]
        overridden = self.store.users.ids(kind, [k for k, _ in candidates])
        merged: dict[str, tuple[Origin, Any]] = {k: ("file", v) for k, v in candidates
                                                 if k not in overridden}
        merged.update({k: ("store", v) for k, v in stored})
        keys = sorted(merged)[: limit + 1]
        data = [out(k, merged[k][1], merged[k][0]) for k in keys[:limit]]
        return Page(data=data, has_more=len(keys) > limit, last_id=keys[min(limit, len(keys)) - 1]
                    if keys else None)

    @staticmethod
    def _profile_out(pid: str, p: Profile, origin: Origin) -> ProfileOut:
        return ProfileOut(id=pid, origin=origin, tenant=p.tenant, text=p.text,
                          attributes=p.attributes, settings=p.settings)

    @staticmethod
    def _user_out(uid: str, u: User, origin: Origin) -> UserOut:
        return UserOut(id=uid, origin=origin, tenant=u.tenant, profile=u.profile, settings=u.settings)

    @staticmethod
    def _key_out(k: ApiKey, origin: Origin) -> KeyOut:
        return KeyOut(name=k.name, origin=origin, tenant=k.tenant, user=k.user, admin=k.admin,
                      operator=k.operator, trusted_gateway=k.trusted_gateway)


def _owner(tenant: str | None) -> str:
    return f"tenant {tenant!r}" if tenant is not None else "every tenant (a shared profile)"


def _limit(limit: int) -> int:
    return max(1, min(int(limit), MAX_PAGE))


# Settings an admin writes through the API name things; only the policy file (the operator's)
# names files. A name resolves in the places the deployment configured (specs/canaries for
# canary sets, the shipped taxonomies), never anywhere else on the server.
_PATH_SETTINGS = ("taxonomy", "spec_update_canaries")


def _admin_settings(settings: dict[str, Any], where: str) -> None:
    for key in _PATH_SETTINGS:
        value = settings.get(key)
        if value is not None and (not isinstance(value, str) or not _NAME.match(value)):
            raise InvalidReferenceError(
                f"{where}.{key}: must be the name of a configured {key.replace('_', ' ')} "
                "(letters, digits, '_' or '-'), not a path.",
                hint="Files are named in the policy file by the operator.")
    detox = settings.get("detox")
    if isinstance(detox, dict) and ({"toxic", "nontoxic"} & set(detox)):
        raise InvalidReferenceError(
            f"{where}.detox: datastore folders are set in the policy file, not through the admin API.",
            hint="Choose stream_protection 'detox' here; the operator configures the datastores.")
