"""The policy file plus what the admin API changed at run time.

How the two combine:
- the file declares tenants and defaults; only the file can add a tenant or change defaults;
- the store adds profiles, users and API keys; a store entry with the same id as a file entry
  replaces it (the store holds the admin's newer word); deleting the store entry brings the
  file's back (a file entry itself is changed by editing the file);
- a store user belongs to a tenant of the file and points at a profile of either that its
  tenant may use (its own, or a shared one).

The composed view is cached and keyed by the store's directory revision (a counter every write
increases in its own transaction). On a server a background task re-reads the revision every
`ttl_s` and recomposes only when it moved, off the event loop: the request path reads the
cached view and never touches the store. A write made through this process is laid onto the
view at once. A stored entry that is invalid (edited by hand, or made invalid by a changed
policy file) is left out and logged; everyone else is served.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ..errors import SpecguardError
from ..policy import ApiKey, Caller, Policy, PolicyFile, Profile, ResolvedPolicy, User
from ..store import DirectorySnapshot, Store

log = logging.getLogger("specguard.directory")


@dataclass(frozen=True)
class _View:
    policy: Policy
    snapshot: DirectorySnapshot


class ComposedPolicy:
    """Drop-in for `Policy` (authenticate, resolve, explain, file, with_key) that also sees
    store-managed profiles, users and keys. A write through this process's store is visible
    at once; a write by another process or replica within `ttl_s`."""

    def __init__(self, base: Policy, store: Store, *, ttl_s: float = 1.0) -> None:
        self.base = base
        self.store = store
        self._ttl = ttl_s
        self._view: _View | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self._background = False
        self._logged: set[str] = set()

    # -- the Policy interface --------------------------------------------------------------

    @property
    def file(self) -> PolicyFile:
        return self.current().file

    def authenticate(self, key: str | None) -> Caller:
        return self.current().authenticate(key)

    def resolve(self, tenant: str, user: str | None = None) -> ResolvedPolicy:
        return self.current().resolve(tenant, user)

    def explain(self, tenant: str, user: str | None = None) -> list[tuple[str, Any, str]]:
        return self.current().explain(tenant, user)

    def with_key(self, key: str, **kwargs: Any) -> ComposedPolicy:
        return ComposedPolicy(self.base.with_key(key, **kwargs), self.store, ttl_s=self._ttl)

    # -- the cached view -------------------------------------------------------------------

    @property
    def revision(self) -> int:
        """The directory revision the current view is at (-1 before the first read)."""
        return self._view.snapshot.revision if self._view is not None else -1

    @property
    def problems(self) -> list[str]:
        """Stored entries left out of the view, and why."""
        return list(self._view.snapshot.problems) if self._view is not None else []

    def current(self) -> Policy:
        """The composed view. With the background refresher running (a server), never a store
        read; otherwise a read of the revision once per `ttl_s`."""
        view = self._view
        if view is not None and (self._background or time.monotonic() - self._checked < self._ttl):
            return view.policy
        return self.refresh()

    def refresh(self, *, force: bool = False) -> Policy:
        """Re-read the store when its revision moved (always, with force). Blocking: call it
        off the event loop. If the store cannot be read, the last view keeps serving."""
        with self._lock:
            try:
                if force or self._view is None or self.store.users.revision() != self._view.snapshot.revision:
                    self._install(self.store.users.snapshot())
            except (SpecguardError, SQLAlchemyError) as exc:
                if self._view is None:
                    raise
                log.warning("directory refresh failed (%s); serving the last view", type(exc).__name__)
            self._checked = time.monotonic()
            return self._view.policy  # type: ignore[union-attr]

    def apply(self, revision: int | None, changes: list[tuple[str, str, Any]]) -> None:
        """Changes this process just committed ((kind, id, entry or None for a deletion); kind
        profiles, users or keys) at directory `revision`: laid onto the view when they follow
        it directly, else the view is re-read."""
        with self._lock:
            view = self._view
            if view is not None and revision is not None and revision == view.snapshot.revision + 1:
                snap = view.snapshot
                entries = {"profiles": dict(snap.profiles), "users": dict(snap.users),
                           "keys": dict(snap.keys)}
                for kind, key, entry in changes:
                    if entry is None:
                        entries[kind].pop(key, None)
                    else:
                        entries[kind][key] = entry
                self._install(DirectorySnapshot(revision=revision, problems=list(snap.problems),
                                                **entries))
                self._checked = time.monotonic()
                return
        self.refresh(force=True)

    async def keep_fresh(self) -> None:
        """Refresh every `ttl_s` off the event loop, for as long as the task runs (the server's
        lifetime); meanwhile `current()` never reads the store."""
        await self.store.run(self.refresh)
        self._background = True
        try:
            while True:
                await asyncio.sleep(max(self._ttl, 0.05))
                await self.store.run(self.refresh)
        finally:
            self._background = False

    def _install(self, snap: DirectorySnapshot) -> None:
        policy, problems = compose_snapshot(self.base, snap)
        snap.problems = problems
        for line in problems:
            if line not in self._logged:
                self._logged.add(line)
                log.error("%s", line)
        self._view = _View(policy, snap)


def compose_snapshot(base: Policy, snap: DirectorySnapshot) -> tuple[Policy, list[str]]:
    """The file's entries with the store's laid over them, each reference checked; entries that
    fail a check are left out and named in the returned problems."""
    file = base.file
    tenants = file.tenants
    problems = list(dict.fromkeys(p for p in snap.problems if not p.startswith("composed: ")))
    profiles: dict[str, Profile] = dict(file.profiles)
    for pid, p in snap.profiles.items():
        if p.tenant is not None and p.tenant not in tenants:
            problems.append(f"composed: stored profile {pid!r} names unknown tenant {p.tenant!r}; left out")
            continue
        profiles[pid] = p
    users: dict[str, User] = {}
    for uid, u in {**file.users, **snap.users}.items():
        where = "stored" if uid in snap.users else "file"
        if u.tenant not in tenants:
            problems.append(f"composed: {where} user {uid!r} names unknown tenant {u.tenant!r}; left out")
            continue
        if u.profile is not None:
            p = profiles.get(u.profile)
            if p is None or not p.usable_by(u.tenant):
                problems.append(f"composed: {where} user {uid!r} names profile {u.profile!r}, "
                                f"which its tenant cannot use; left out")
                continue
        users[uid] = u
    keys: dict[str, ApiKey] = {k.name: k for k in file.api_keys}
    keys.update(snap.keys)
    for name, k in list(keys.items()):
        bad = None
        if k.tenant not in tenants:
            bad = f"names unknown tenant {k.tenant!r}"
        elif k.user is not None and (k.user not in users or users[k.user].tenant != k.tenant):
            bad = f"is bound to user {k.user!r}, who is not in tenant {k.tenant!r}"
        if bad:
            problems.append(f"composed: API key {name!r} {bad}; left out")
            del keys[name]
    composed = PolicyFile.model_construct(defaults=file.defaults, tenants=tenants,
                                          profiles=profiles, users=users,
                                          api_keys=list(keys.values()))
    return Policy(composed, check=False), problems
