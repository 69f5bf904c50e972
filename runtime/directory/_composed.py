"""The policy file plus what the admin API changed at run time.

How the two combine:
- the file declares tenants and defaults; only the file can add a tenant or change defaults;
- the store adds profiles, users and API keys; a store entry with the same id as a file entry
  replaces it (the store holds the admin's newer word); deleting the store entry brings the
  file's back (a file entry itself is changed by editing the file);
- a store user belongs to a tenant of the file and points at a profile of either.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..errors import ConfigError
from ..policy import Caller, Policy, PolicyFile, ResolvedPolicy
from ..store import Store

log = logging.getLogger("specguard.profiles")


class ComposedPolicy:
    """Drop-in for `Policy` (authenticate, resolve, explain, file, with_key) that also sees
    store-managed profiles, users and keys. A write through this process's store is visible
    at once; a write by another replica within `ttl_s`."""

    def __init__(self, base: Policy, store: Store, *, ttl_s: float = 1.0) -> None:
        self.base = base
        self.store = store
        self._ttl = ttl_s
        self._snapshot: Policy | None = None
        self._stamp: tuple[int, float] = (-1, 0.0)

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

    # -- composition -----------------------------------------------------------------------

    def origin(self, kind: str, key: str) -> str | None:
        """'store', 'file' or None: where the entry `key` of `kind` (profiles, users) lives."""
        if key in getattr(self.store.users, kind)():
            return "store"
        if key in getattr(self.base.file, kind):
            return "file"
        return None

    def current(self) -> Policy:
        revision = self.store.users.revision
        now = time.monotonic()
        if self._snapshot is not None and self._stamp[0] == revision and now - self._stamp[1] < self._ttl:
            return self._snapshot
        try:
            self._snapshot = compose(self.base, self.store)
        except ConfigError:
            if self._snapshot is None:
                raise
            # The admin layer validates every write; this only happens if the database was
            # edited by hand. Keep serving the last good view rather than failing every call.
            log.exception("store entries do not compose with the policy file; keeping the last good view")
        self._stamp = (revision, now)
        return self._snapshot

    def merged(self) -> Policy:
        """A fresh merge, for validating a write before it is committed."""
        return compose(self.base, self.store)


def compose(base: Policy, store: Store, **overrides: Any) -> Policy:
    """The file's data with the store's profiles, users and keys laid over it. `overrides`
    ({'users': {...}} etc.) lay candidate entries on top, to validate a write in advance."""
    data = base.file.model_dump(mode="json")
    data["profiles"].update({k: v.model_dump(mode="json") for k, v in store.users.profiles().items()})
    data["users"].update({k: v.model_dump(mode="json") for k, v in store.users.users().items()})
    keys = {k["name"]: k for k in data["api_keys"]}
    keys.update({k.name: k.model_dump(mode="json") for k in store.users.api_keys()})
    data["api_keys"] = list(keys.values())
    for kind, entries in overrides.items():
        for key, value in entries.items():
            if value is None:
                data[kind].pop(key, None)
            else:
                data[kind][key] = value
    return Policy.from_dict(data, source="policy file + store")
