from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
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

# -- users, profiles, API keys and derived guidelines (managed at run time by the admin API;
# the policy file stays the declarative source, see specguard.profiles.ComposedPolicy) --------

profiles = Table(
    "profiles",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("text", Text, nullable=False),
    Column("attributes", JSON, nullable=False),
    Column("settings", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("profile", String(128), nullable=True),
    Column("settings", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Keys are stored as their SHA-256 only; the clear key is shown once, when it is created.
api_keys = Table(
    "api_keys",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("tenant", String(128), nullable=False),
    Column("user", String(128), nullable=True),
    Column("admin", Boolean, nullable=False, default=False),
    Column("trusted_gateway", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(256), nullable=False),
)

# Derived per-profile guidelines (U-SafeBench remedy), versioned per profile.
profile_guidelines = Table(
    "profile_guidelines",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("profile", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("items", JSON, nullable=False),
    Column("source", String(256), nullable=False),
    Column("profile_text", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("approved_at", DateTime(timezone=True), nullable=True),
    Column("approved_by", String(256), nullable=True),
    UniqueConstraint("profile", "version", name="uq_guideline_version"),
)
