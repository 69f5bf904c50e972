from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator):
    """A timestamp that comes back as an aware UTC datetime on every database (SQLite stores
    no zone: values are written as UTC and read back as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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
    Column("created_at", UTCDateTime, nullable=False),
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
    ForeignKeyConstraint(["name", "scope", "active_version"],
                         ["specs.name", "specs.scope", "specs.version"],
                         name="fk_head_version", ondelete="RESTRICT"),
)

# Who did what, when, and in which tenant (NULL: a change outside any tenant, such as a shared
# profile or a global spec); a tenant's admins read their tenant's entries only.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(512), nullable=False),
    Column("detail", JSON, nullable=False),
    Column("tenant", String(128), nullable=True, index=True),
)

# Counters that increase with every change of a kind ("directory": users, profiles and keys),
# so a replica can tell whether its cached view is current with one small read.
store_meta = Table(
    "store_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Integer, nullable=False),
)

# -- users, profiles, API keys and derived guidelines (managed at run time by the admin API;
# the policy file stays the declarative source, see specguard.directory.ComposedPolicy) -------

# A profile is owned by a tenant (only that tenant's users use it, only its admins change it)
# or shared (tenant NULL: every tenant's users may use it; only an operator changes it).
profiles = Table(
    "profiles",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("tenant", String(128), nullable=True, index=True),
    Column("text", Text, nullable=False),
    Column("attributes", JSON, nullable=False),
    Column("settings", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# A user's profile is a store profile (`profile`, a foreign key: the profile cannot be deleted
# while a user uses it) or one the policy file declares (`file_profile`, checked against the
# file when the user is written and when the directory is composed).
users = Table(
    "users",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("tenant", String(128), nullable=False, index=True),
    Column("profile", String(128), ForeignKey("profiles.id", ondelete="RESTRICT"), nullable=True),
    Column("file_profile", String(128), nullable=True),
    Column("settings", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Keys are stored as their SHA-256 only; the clear key is shown once, when it is created. A key
# bound to a store user names it in `user` (a foreign key), to a file user in `file_user`.
api_keys = Table(
    "api_keys",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("tenant", String(128), nullable=False, index=True),
    Column("user", String(128), ForeignKey("users.id", ondelete="RESTRICT"), nullable=True),
    Column("file_user", String(128), nullable=True),
    Column("admin", Boolean, nullable=False, default=False),
    Column("operator", Boolean, nullable=False, default=False, server_default=text("false")),
    Column("trusted_gateway", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(256), nullable=False),
)

# Derived per-profile guidelines (U-SafeBench remedy), versioned per profile. At most one
# version of a profile is approved (a partial unique index).
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
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("approved_at", UTCDateTime, nullable=True),
    Column("approved_by", String(256), nullable=True),
    UniqueConstraint("profile", "version", name="uq_guideline_version"),
)
Index("uq_one_approved_guideline", profile_guidelines.c.profile, unique=True,
      sqlite_where=profile_guidelines.c.status == "approved",
      postgresql_where=profile_guidelines.c.status == "approved")
