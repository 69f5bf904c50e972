from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import ConfigError, ConflictError, NotFoundError
from ..spec import (
    GLOBAL_SCOPE,
    Provenance,
    Scope,
    Spec,
    SpecDefinition,
    SpecSource,
    SpecStatus,
    scope_chain,
)
from . import _schema as t
from ._audit import record
from ._engine import is_sqlite, reading, writing

log = logging.getLogger("specguard.store")

_RETRIES = 20  # transactions retried when a concurrent writer took the same version number


class SpecStore:
    """Versioned specs per (name, scope).

    Every write is one transaction: a version and its activation (seeding), a rollback's read of
    the head and its write, a rejection's read-modify-write. Activations are compare-and-set on
    the head's revision, so two racing updates never silently overwrite each other: the loser
    gets a ConflictError and re-reads.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- reading ---------------------------------------------------------------------------

    def active(self, name: str, scope: str = GLOBAL_SCOPE, *, inherit: bool = True) -> Spec:
        """The active version in `scope`; a scope with none inherits from the scopes around it
        (a tenant's profile scope from the tenant, the tenant from global)."""
        with reading(self._engine) as conn:
            spec = None
            for candidate in scope_chain(scope) if inherit else [scope]:
                spec = _active(conn, name, candidate)
                if spec is not None:
                    break
        if spec is None:
            raise NotFoundError(
                f"No active spec {name!r} in scope {scope!r}.",
                hint="List specs with `specguard spec list`, or load one from a YAML file.",
            )
        return spec

    def head_revision(self, name: str, scope: str) -> int:
        with reading(self._engine) as conn:
            row = conn.execute(select(t.spec_heads.c.revision).where(_head(name, scope))).first()
        return row[0] if row else 0

    def get(self, name: str, scope: str, version: int) -> Spec:
        with reading(self._engine) as conn:
            return _get(conn, name, scope, version)

    def history(self, name: str, scope: str = GLOBAL_SCOPE) -> list[Spec]:
        with reading(self._engine) as conn:
            rows = conn.execute(
                select(t.specs)
                .where(and_(t.specs.c.name == name, t.specs.c.scope == scope))
                .order_by(t.specs.c.version)
            ).all()
        return [_to_spec(r) for r in rows]

    def list_active(self, scopes: list[str] | None = None) -> list[Spec]:
        """Every scope's active version (only `scopes`, when given)."""
        query = _ACTIVE_ROWS
        if scopes is not None:
            query = query.where(t.specs.c.scope.in_(scopes))
        with reading(self._engine) as conn:
            rows = conn.execute(query.order_by(t.specs.c.scope, t.specs.c.name)).all()
        return [_to_spec(r) for r in rows]

    # -- writing ---------------------------------------------------------------------------

    def seed(self, definitions: dict[str, SpecDefinition], *, actor: str = "system") -> int:
        """Store version 1 of each definition in the global scope and activate it, in one
        transaction per spec (a process killed half-way leaves a spec whole or absent). A global
        spec that has versions but no head (left by an older, two-step seeding) gets its newest
        usable version back as the head."""
        added = 0
        for definition in definitions.values():
            for _ in range(_RETRIES):
                try:
                    with writing(self._engine) as conn:
                        added += self._seed_one(conn, definition, actor)
                    break
                except IntegrityError:
                    continue  # another process seeded it at the same moment; look again
        return added

    def _seed_one(self, conn: Connection, definition: SpecDefinition, actor: str) -> int:
        name = definition.name
        if conn.execute(select(t.spec_heads.c.revision).where(_head(name, GLOBAL_SCOPE))).first():
            return 0
        repaired = _repair_head(conn, name, GLOBAL_SCOPE, actor)
        if repaired is not None:
            log.warning("store repair: %s restored as the head of %s@%s", repaired.ref, name,
                        GLOBAL_SCOPE)
            return 0
        spec = _insert_version(conn, name, GLOBAL_SCOPE, definition.text, parent=None,
                               title=definition.title, categories=definition.categories,
                               provenance=Provenance(source=SpecSource.BUILTIN), metrics={},
                               status=SpecStatus.CANDIDATE, actor=actor)
        _activate(conn, spec, expected_revision=0, actor=actor)
        return 1

    def propose(
        self,
        name: str,
        scope: str,
        text: str,
        *,
        parent: int | None,
        title: str = "",
        categories: list[str] | None = None,
        provenance: Provenance | None = None,
        metrics: dict | None = None,
        status: SpecStatus = SpecStatus.CANDIDATE,
        actor: str = "system",
        activate: bool = False,
        expected_revision: int | None = None,
    ) -> Spec:
        """Store a new version (a candidate by default). Versions are allocated atomically:
        concurrent proposals get distinct numbers, none is lost. With activate=True the version
        becomes the active one in the same transaction (compare-and-set on expected_revision
        when given)."""
        Scope.parse(scope)  # a malformed scope is an error, not a new row
        if not title or categories is None:
            base = self._inherited_meta(name, scope)
            title = title or base[0]
            categories = categories if categories is not None else base[1]
        for _ in range(_RETRIES):
            try:
                with writing(self._engine) as conn:
                    spec = _insert_version(conn, name, scope, text, parent=parent, title=title,
                                           categories=categories,
                                           provenance=provenance or Provenance(source=SpecSource.ADMIN),
                                           metrics=metrics or {}, status=status, actor=actor)
                    if activate:
                        spec = _activate(conn, spec, expected_revision=expected_revision, actor=actor)
                    return spec
            except IntegrityError:
                continue  # another writer took this number; take the next
        raise ConflictError(f"Could not allocate a version for {name}@{scope}; retry.")

    def activate(
        self,
        name: str,
        scope: str,
        version: int,
        *,
        expected_revision: int | None = None,
        actor: str = "system",
    ) -> Spec:
        """Make `version` the active one. With expected_revision, apply only if the head has
        not changed since the caller read it (compare-and-set)."""
        try:
            with writing(self._engine) as conn:
                spec = _get(conn, name, scope, version, lock=True)
                return _activate(conn, spec, expected_revision=expected_revision, actor=actor)
        except IntegrityError as exc:
            raise ConflictError(f"{name}@{scope} was activated concurrently; retry.") from exc

    def reject(
        self, name: str, scope: str, version: int, *, reason: str, metrics: dict | None = None,
        actor: str = "system",
    ) -> Spec:
        with writing(self._engine) as conn:
            spec = _get(conn, name, scope, version, lock=True)
            head = conn.execute(select(t.spec_heads.c.active_version).where(_head(name, scope))).first()
            if head is not None and head[0] == version:
                raise ConflictError(f"{spec.ref} is the active version; it cannot be rejected.",
                                    hint="Activate another version (or roll back) first.")
            merged = {**spec.metrics, **(metrics or {}), "rejected_because": reason}
            conn.execute(update(t.specs).where(_version(name, scope, version))
                         .values(status=SpecStatus.REJECTED.value, metrics=merged))
            record(conn, actor, "spec.reject", spec.ref, {"reason": reason}, tenant=_tenant(scope))
        return spec.model_copy(update={"status": SpecStatus.REJECTED, "metrics": merged})

    def set_metrics(self, name: str, scope: str, version: int, metrics: dict) -> None:
        with writing(self._engine) as conn:
            spec = _get(conn, name, scope, version, lock=True)
            conn.execute(update(t.specs).where(_version(name, scope, version))
                         .values(metrics={**spec.metrics, **metrics}))

    def rollback(self, name: str, scope: str = GLOBAL_SCOPE, *, actor: str = "system") -> Spec:
        """Re-activate the parent of the active version (one transaction: the head it reads is
        the head it changes)."""
        with writing(self._engine) as conn:
            head = _lock_head(conn, name, scope)
            if head is None:
                raise NotFoundError(f"No active spec {name!r} in scope {scope!r}.",
                                    hint="A scope without its own version inherits; nothing to roll back.")
            current = _get(conn, name, scope, head.active_version)
            if current.parent is None:
                raise NotFoundError(
                    f"{current.ref} has no parent version to roll back to.",
                    hint=f"Activate a version explicitly: see `specguard spec history {name}`.",
                )
            parent = _get(conn, name, scope, current.parent)
            return _activate(conn, parent, expected_revision=head.revision, actor=actor)

    def repair(self, *, actor: str = "system:repair") -> list[str]:
        """Heads lost or left inconsistent by a crash, fixed at start-up: a scope with an
        ACTIVE-marked version but no head gets it back; the global scope of a spec with versions
        but no head gets its newest usable version; versions marked ACTIVE that are not their
        scope's head are marked RETIRED. Returns what it did (for the log)."""
        done: list[str] = []
        with writing(self._engine) as conn:
            headless = conn.execute(
                select(t.specs.c.name, t.specs.c.scope).distinct()
                .where(~select(t.spec_heads.c.name).where(and_(
                    t.spec_heads.c.name == t.specs.c.name,
                    t.spec_heads.c.scope == t.specs.c.scope)).exists())
            ).all()
            for name, scope in headless:
                spec = _repair_head(conn, name, scope, actor)
                if spec is not None:
                    done.append(f"{spec.ref} restored as the head of {name}@{scope}")
            stray = conn.execute(
                select(t.specs.c.name, t.specs.c.scope, t.specs.c.version)
                .select_from(t.specs.outerjoin(t.spec_heads, and_(
                    t.specs.c.name == t.spec_heads.c.name, t.specs.c.scope == t.spec_heads.c.scope)))
                .where(t.specs.c.status == SpecStatus.ACTIVE.value)
                .where((t.spec_heads.c.active_version.is_(None))
                       | (t.spec_heads.c.active_version != t.specs.c.version))
            ).all()
            for name, scope, version in stray:
                _set_status(conn, name, scope, version, SpecStatus.RETIRED)
                done.append(f"{name}@{scope}#v{version} marked retired (not the head)")
        for line in done:
            log.warning("store repair: %s", line)
        return done

    # -- helpers ---------------------------------------------------------------------------

    def _inherited_meta(self, name: str, scope: str) -> tuple[str, list[str]]:
        try:
            base = self.active(name, scope)
        except NotFoundError:
            return "", []
        return base.title, base.categories


def _insert_version(conn: Connection, name: str, scope: str, text: str, *, parent: int | None,
                    title: str, categories: list[str], provenance: Provenance, metrics: dict,
                    status: SpecStatus, actor: str) -> Spec:
    next_version = (conn.execute(
        select(func.max(t.specs.c.version)).where(and_(t.specs.c.name == name, t.specs.c.scope == scope))
    ).scalar() or 0) + 1
    values = dict(name=name, scope=scope, version=next_version, parent=parent, status=status.value,
                  title=title, text=text.strip(), categories=list(categories),
                  provenance=provenance.model_dump(mode="json"), metrics=metrics,
                  created_at=datetime.now(UTC))
    conn.execute(insert(t.specs).values(**values))
    record(conn, actor, "spec.propose", f"{name}@{scope}#v{next_version}", {}, tenant=_tenant(scope))
    return _to_spec(values)


def _activate(conn: Connection, spec: Spec, *, expected_revision: int | None, actor: str) -> Spec:
    name, scope, version = spec.name, spec.scope, spec.version
    head = _lock_head(conn, name, scope)
    if expected_revision is not None and (head.revision if head else 0) != expected_revision:
        raise ConflictError(
            f"{name}@{scope} changed since revision {expected_revision}.",
            hint="Re-read the active spec and decide again.",
        )
    if head is None:
        # A concurrent first activation of this scope fails here with IntegrityError (the
        # primary key), which the caller turns into a ConflictError or a retry.
        conn.execute(insert(t.spec_heads).values(name=name, scope=scope, active_version=version,
                                                 revision=1))
    else:
        done = conn.execute(
            update(t.spec_heads)
            .where(and_(_head(name, scope), t.spec_heads.c.revision == head.revision))
            .values(active_version=version, revision=head.revision + 1)
        )
        if done.rowcount != 1:
            raise ConflictError(f"{name}@{scope} was changed concurrently; retry.")
        if head.active_version != version:
            _set_status(conn, name, scope, head.active_version, SpecStatus.RETIRED)
    _set_status(conn, name, scope, version, SpecStatus.ACTIVE)
    record(conn, actor, "spec.activate", spec.ref, {}, tenant=_tenant(scope))
    return spec.model_copy(update={"status": SpecStatus.ACTIVE})


def _repair_head(conn: Connection, name: str, scope: str, actor: str) -> Spec | None:
    """A head for a scope that has versions but none: the newest version marked ACTIVE; in the
    global scope (nothing to inherit from) the newest builtin one, else the newest that was not
    rejected. None when there is nothing to restore."""
    rows = [_to_spec(r) for r in conn.execute(
        select(t.specs).where(and_(t.specs.c.name == name, t.specs.c.scope == scope))
        .order_by(t.specs.c.version.desc())).all()]
    pick = next((s for s in rows if s.status is SpecStatus.ACTIVE), None)
    if pick is None and scope == GLOBAL_SCOPE:
        pick = next((s for s in rows if s.provenance.source is SpecSource.BUILTIN
                     and s.status is not SpecStatus.REJECTED), None) or next(
            (s for s in rows if s.status is not SpecStatus.REJECTED), None)
    if pick is None:
        return None
    return _activate(conn, pick, expected_revision=0, actor=actor)


def _lock_head(conn: Connection, name: str, scope: str):
    query = select(t.spec_heads).where(_head(name, scope))
    if not is_sqlite(conn):
        query = query.with_for_update()
    return conn.execute(query).first()


def _get(conn: Connection, name: str, scope: str, version: int, *, lock: bool = False) -> Spec:
    query = select(t.specs).where(_version(name, scope, version))
    if lock and not is_sqlite(conn):
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFoundError(
            f"Spec {name!r} in scope {scope!r} has no version {version}.",
            hint=f"See `specguard spec history {name} --scope {scope}`.",
        )
    return _to_spec(row)


def _active(conn: Connection, name: str, scope: str) -> Spec | None:
    row = conn.execute(
        _ACTIVE_ROWS.where(and_(t.specs.c.name == name, t.specs.c.scope == scope))
    ).first()
    return _to_spec(row) if row else None


def _set_status(conn: Connection, name: str, scope: str, version: int, status: SpecStatus) -> None:
    conn.execute(update(t.specs).where(_version(name, scope, version)).values(status=status.value))


def _tenant(scope: str) -> str | None:
    """The tenant a spec scope belongs to (its audit entries are that tenant's)."""
    try:
        return Scope.parse(scope).tenant
    except ConfigError:  # a malformed legacy scope belongs to no tenant
        return None


# Each (name, scope)'s active version: specs joined to their head.
_ACTIVE_ROWS = select(t.specs).join(
    t.spec_heads,
    and_(
        t.specs.c.name == t.spec_heads.c.name,
        t.specs.c.scope == t.spec_heads.c.scope,
        t.specs.c.version == t.spec_heads.c.active_version,
    ),
)


def _head(name: str, scope: str):
    return and_(t.spec_heads.c.name == name, t.spec_heads.c.scope == scope)


def _version(name: str, scope: str, version: int):
    return and_(t.specs.c.name == name, t.specs.c.scope == scope, t.specs.c.version == version)


def _to_spec(row) -> Spec:
    m = row._mapping if hasattr(row, "_mapping") else row
    return Spec(
        name=m["name"],
        scope=m["scope"],
        version=m["version"],
        parent=m["parent"],
        status=SpecStatus(m["status"]),
        title=m["title"],
        text=m["text"],
        categories=list(m["categories"] or []),
        provenance=Provenance.model_validate(m["provenance"] or {}),
        metrics=dict(m["metrics"] or {}),
        created_at=m["created_at"],
    )
