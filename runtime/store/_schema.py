from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

specs = Table(
    "specs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("scope", String(256), nullable=False),
    Column("version", Integer, nullable=False),
    Column("parent", Integer, nullable=True),
    Column("status", String(16), nullable=False),
    Column("title", String(256), nullable=False, default=""),
    Column("text", Text, nullable=False),
    Column("categories", JSON, nullable=False),
    Column("provenance", JSON, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("name", "scope", "version", name="uq_spec_version"),
)

# The active version per (name, scope). `revision` increases on every change so that a
# writer can compare-and-set: the update only applies if nobody changed the head meanwhile.
spec_heads = Table(
    "spec_heads",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("scope", String(256), primary_key=True),
    Column("active_version", Integer, nullable=False),
    Column("revision", Integer, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(512), nullable=False),
    Column("detail", JSON, nullable=False),
)
