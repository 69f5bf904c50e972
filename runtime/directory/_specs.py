"""Admin operations on specs, under the directory's rights: every admin reads the global spec
and its own tenant's scopes ("tenant:<t>", "tenant:<t>/profile:<p>"); it writes only its own
tenant's scopes; the global scope and every other tenant's are an operator's. This is also
where an admin approves a learned (MetaSC) version that waits as a candidate."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..errors import NotFoundError, PermissionDeniedError
from ..spec import GLOBAL_SCOPE, Provenance, Scope, Spec, SpecSource
from ..store import Store
from ._admin import Principal, _who


class SpecIn(BaseModel):
    """A new version written by an admin."""

    model_config = ConfigDict(extra="forbid")

    scope: str = Field(GLOBAL_SCOPE, max_length=256)
    text: str = Field(min_length=1, max_length=20_000)
    parent: int | None = Field(None, ge=1, le=2**31 - 1)
    activate: bool = False
    expected_revision: int | None = Field(None, ge=0, le=2**31 - 1)


class SpecAdmin:
    def __init__(self, store: Store) -> None:
        self.store = store

    def active(self, actor: Principal | str = "system") -> list[Spec]:
        who = _who(actor)
        return [s for s in self.store.specs.list_active() if _visible(who, s.scope)]

    def history(self, name: str, scope: str, actor: Principal | str = "system") -> list[Spec]:
        who = _who(actor)
        if not _visible(who, scope):
            raise NotFoundError(f"No spec {name!r} in scope {scope!r}.")
        versions = self.store.specs.history(name, scope)
        if not versions:
            raise NotFoundError(f"No spec {name!r} in scope {scope!r}.",
                                hint="List the active specs with GET /admin/specs.")
        return versions

    def propose(self, name: str, body: SpecIn, actor: Principal | str) -> Spec:
        who = _who(actor)
        _writable(who, body.scope)
        return self.store.specs.propose(
            name, body.scope, body.text, parent=body.parent, actor=who.actor,
            provenance=Provenance(source=SpecSource.ADMIN, author=who.actor),
            activate=body.activate, expected_revision=body.expected_revision)

    def activate(self, name: str, scope: str, version: int, actor: Principal | str, *,
                 expected_revision: int | None = None) -> Spec:
        who = _who(actor)
        _writable(who, scope)
        return self.store.specs.activate(name, scope, version, expected_revision=expected_revision,
                                         actor=who.actor)

    def rollback(self, name: str, scope: str, actor: Principal | str) -> Spec:
        who = _who(actor)
        _writable(who, scope)
        return self.store.specs.rollback(name, scope, actor=who.actor)


def _tenant(scope: str) -> str | None:
    return Scope.parse(scope).tenant


def _visible(who: Principal, scope: str) -> bool:
    tenant = _tenant(scope)
    if who.operator:
        return True
    return scope == GLOBAL_SCOPE or (tenant is not None and tenant == who.tenant)


def _writable(who: Principal, scope: str) -> None:
    tenant = _tenant(scope)
    if tenant is None and not who.operator:
        raise PermissionDeniedError(f"Only an operator may change specs in scope {scope!r}.",
                                    hint=f"Write them in your tenant's scope: tenant:{who.tenant}.")
    if not who.administers(tenant):
        raise PermissionDeniedError(f"This key may not change specs in scope {scope!r}.",
                                    hint=f"An admin writes in its tenant's scopes (tenant:{who.tenant}).")
