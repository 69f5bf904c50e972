from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import ConflictError, NotFoundError
from ..spec import GLOBAL_SCOPE, Provenance, Spec, SpecDefinition, SpecSource, SpecStatus, scope_chain
from . import _schema as t
from ._audit import record


class SpecStore:
    """Versioned specs per (name, scope).

    Writes are compare-and-set on the head's revision, so two racing updates can never
    silently overwrite each other: the loser gets a ConflictError and re-reads.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- reading ---------------------------------------------------------------------------

    def active(self, name: str, scope: str = GLOBAL_SCOPE, *, inherit: bool = True) -> Spec:
        """The active version in `scope`; a scope with none inherits from the scopes around it
        (a tenant's profile scope from the tenant, the tenant from global)."""
        with self._engine.connect() as conn:
            spec = None
            for candidate in scope_chain(scope) if inherit else [scope]:
                spec = self._active(conn, name, candidate)
                if spec is not None:
                    break
        if spec is None:
            raise NotFoundError(
                f"No active spec {name!r} in scope {scope!r}.",
                hint="List specs with `specguard spec list`, or load one from a YAML file.",
            )
        return spec

    def head_revision(self, name: str, scope: str) -> int:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(t.spec_heads.c.revision).where(_head(name, scope))
            ).first()
        return row[0] if row else 0

    def get(self, name: str, scope: str, version: int) -> Spec:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(t.specs).where(
                    and_(
                        t.specs.c.name == name,
                        t.specs.c.scope == scope,
                        t.specs.c.version == version,
                    )
                )
            ).first()
        if row is None:
            raise NotFoundError(
                f"Spec {name!r} in scope {scope!r} has no version {version}.",
                hint=f"See `specguard spec history {name} --scope {scope}`.",
            )
        return _to_spec(row)

    def history(self, name: str, scope: str = GLOBAL_SCOPE) -> list[Spec]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(t.specs)
                .where(and_(t.specs.c.name == name, t.specs.c.scope == scope))
                .order_by(t.specs.c.version)
            ).all()
        return [_to_spec(r) for r in rows]

    def list_active(self) -> list[Spec]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                _ACTIVE_ROWS
                .order_by(t.specs.c.scope, t.specs.c.name)
            ).all()
        return [_to_spec(r) for r in rows]

    # -- writing ---------------------------------------------------------------------------

    def seed(self, definitions: dict[str, SpecDefinition], *, actor: str = "system") -> int:
        """Store version 1 of each definition in the global scope unless it exists."""
        added = 0
        for definition in definitions.values():
            if self.history(definition.name, GLOBAL_SCOPE):
                continue
            spec = self.propose(
                definition.name,
                GLOBAL_SCOPE,
                definition.text,
                parent=None,
                title=definition.title,
                categories=definition.categories,
                provenance=Provenance(source=SpecSource.BUILTIN),
                actor=actor,
            )
            try:
                self.activate(definition.name, GLOBAL_SCOPE, spec.version, actor=actor)
            except ConflictError:
                pass  # another process seeded it at the same moment
            added += 1
        return added

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
    ) -> Spec:
        """Store a new version (a candidate by default). Versions are allocated atomically:
        concurrent proposals get distinct numbers, none is lost."""
        if not title or categories is None:
            base = self._inherited_meta(name, scope)
            title = title or base[0]
            categories = categories if categories is not None else base[1]
        for _ in range(20):
            with self._engine.begin() as conn:
                next_version = (
                    conn.execute(
                        select(func.max(t.specs.c.version)).where(
                            and_(t.specs.c.name == name, t.specs.c.scope == scope)
                        )
                    ).scalar()
                    or 0
                ) + 1
                values = dict(
                    name=name,
                    scope=scope,
                    version=next_version,
                    parent=parent,
                    status=status.value,
                    title=title,
                    text=text.strip(),
                    categories=list(categories),
                    provenance=(provenance or Provenance()).model_dump(),
                    metrics=metrics or {},
                    created_at=datetime.now(UTC),
                )
                try:
                    conn.execute(insert(t.specs).values(**values))
                except IntegrityError:
                    continue  # another writer took this number; take the next
                record(conn, actor, "spec.propose", f"{name}@{scope}#v{next_version}", {})
                return _to_spec(values)
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
        spec = self.get(name, scope, version)
        with self._engine.begin() as conn:
            head = conn.execute(select(t.spec_heads).where(_head(name, scope))).first()
            if expected_revision is not None and (head.revision if head else 0) != expected_revision:
                raise ConflictError(
                    f"{name}@{scope} changed since revision {expected_revision}.",
                    hint="Re-read the active spec and decide again.",
                )
            if head is None:
                try:
                    conn.execute(
                        insert(t.spec_heads).values(
                            name=name, scope=scope, active_version=version, revision=1
                        )
                    )
                except IntegrityError as exc:
                    raise ConflictError(f"{name}@{scope} was activated concurrently.") from exc
            else:
                result = conn.execute(
                    update(t.spec_heads)
                    .where(and_(_head(name, scope), t.spec_heads.c.revision == head.revision))
                    .values(active_version=version, revision=head.revision + 1)
                )
                if result.rowcount != 1:
                    raise ConflictError(f"{name}@{scope} was changed concurrently; retry.")
                if head.active_version != version:
                    self._set_status(conn, name, scope, head.active_version, SpecStatus.RETIRED)
            self._set_status(conn, name, scope, version, SpecStatus.ACTIVE)
            record(conn, actor, "spec.activate", spec.ref, {})
        return spec.model_copy(update={"status": SpecStatus.ACTIVE})

    def reject(
        self, name: str, scope: str, version: int, *, reason: str, metrics: dict | None = None,
        actor: str = "system",
    ) -> Spec:
        spec = self.get(name, scope, version)
        merged = {**spec.metrics, **(metrics or {}), "rejected_because": reason}
        with self._engine.begin() as conn:
            conn.execute(
                update(t.specs)
                .where(_version(name, scope, version))
                .values(status=SpecStatus.REJECTED.value, metrics=merged)
            )
            record(conn, actor, "spec.reject", spec.ref, {"reason": reason})
        return spec.model_copy(update={"status": SpecStatus.REJECTED, "metrics": merged})

    def set_metrics(self, name: str, scope: str, version: int, metrics: dict) -> None:
        spec = self.get(name, scope, version)
        with self._engine.begin() as conn:
            conn.execute(
                update(t.specs)
                .where(_version(name, scope, version))
                .values(metrics={**spec.metrics, **metrics})
            )

    def rollback(self, name: str, scope: str = GLOBAL_SCOPE, *, actor: str = "system") -> Spec:
        """Re-activate the parent of the active version."""
        current = self.active(name, scope, inherit=False)
        if current.parent is None:
            raise NotFoundError(
                f"{current.ref} has no parent version to roll back to.",
                hint=f"Activate a version explicitly: see `specguard spec history {name}`.",
            )
        return self.activate(
            name, scope, current.parent, expected_revision=self.head_revision(name, scope),
            actor=actor,
        )

    # -- helpers ---------------------------------------------------------------------------

    def _active(self, conn, name: str, scope: str) -> Spec | None:
        row = conn.execute(
            _ACTIVE_ROWS
            .where(and_(t.specs.c.name == name, t.specs.c.scope == scope))
        ).first()
        return _to_spec(row) if row else None

    def _inherited_meta(self, name: str, scope: str) -> tuple[str, list[str]]:
        try:
            base = self.active(name, scope)
        except NotFoundError:
            return "", []
        return base.title, base.categories

    @staticmethod
    def _set_status(conn, name: str, scope: str, version: int, status: SpecStatus) -> None:
        conn.execute(
            update(t.specs).where(_version(name, scope, version)).values(status=status.value)
        )


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
