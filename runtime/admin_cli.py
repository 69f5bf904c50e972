"""`specguard admin`: manage users, profiles, API keys and derived guidelines in the store
(the same operations and checks as the /admin HTTP API, each change audited as `cli:<login>`).
The CLI holds the store's credentials, so it acts as an operator: across tenants, and on shared
profiles (a profile created without --tenant is shared by every tenant).

    specguard admin --policy policy.yaml profile create hepatitis "I have hepatitis." --health hepatitis
    specguard admin user create alice --tenant default --profile hepatitis
    specguard admin key create alice-key --user alice          # prints the key once
    specguard admin guidelines derive hepatitis --backend embedded
    specguard admin guidelines approve hepatitis 1
"""

from __future__ import annotations

import asyncio
import getpass
import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True, help="Manage users, profiles, API keys and guidelines.")
profile_app = typer.Typer(no_args_is_help=True, help="Profiles: first-person text + attributes.")
user_app = typer.Typer(no_args_is_help=True, help="Users: bound to a tenant and a profile.")
key_app = typer.Typer(no_args_is_help=True, help="API keys (stored hashed, shown once).")
guidelines_app = typer.Typer(no_args_is_help=True, help="Derived per-profile guidelines.")
app.add_typer(profile_app, name="profile")
app.add_typer(user_app, name="user")
app.add_typer(key_app, name="key")
app.add_typer(guidelines_app, name="guidelines")
console = Console()

_state: dict = {}


@app.callback()
def _options(
    policy: Annotated[Path | None, typer.Option("--policy", "-p", help="Policy YAML file.")] = None,
    store: Annotated[str | None, typer.Option("--store", help="Store URL or SQLite path (default: $SPECGUARD_STORE or specguard.db).")] = None,
) -> None:
    _state.update(policy=policy, store=store)


def _admin(backend=None):
    from .config import store_url
    from .directory import ComposedPolicy, DirectoryAdmin
    from .policy import Policy
    from .store import Store

    p = _state.get("policy")
    base = Policy.load(p) if p else Policy.default()
    return DirectoryAdmin(ComposedPolicy(base, Store(store_url(_state.get("store")))), backend)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except OSError:
        return "cli"


def _settings(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--settings must be a JSON object: {exc}") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter("--settings must be a JSON object")
    return value


def _print(model) -> None:
    console.print_json(model.model_dump_json())


def _all(listing):
    """Every entry of a paged listing (`listing(after=...)` returns a Page)."""
    after = None
    while True:
        page = listing(after=after, limit=1000)
        yield from page.data
        if not page.has_more:
            return
        after = page.last_id


# -- profiles ----------------------------------------------------------------------------------


@profile_app.command("list")
def profile_list() -> None:
    table = Table("id", "from", "tenant", "text", "attributes")
    admin = _admin()
    for p in _all(lambda **kw: admin.profiles(_actor(), **kw)):
        table.add_row(p.id, p.origin, p.tenant or "(shared)", p.text,
                      p.attributes.model_dump_json(exclude_defaults=True))
    console.print(table)


@profile_app.command("create")
def profile_create(
    profile_id: str,
    text: str,
    tenant: Annotated[str | None, typer.Option(help="The owning tenant (default: shared by every tenant).")] = None,
    age_band: Annotated[str | None, typer.Option(help="under-13 | 13-17 | 18-64 | 65+")] = None,
    health: Annotated[list[str] | None, typer.Option(help="A health condition (repeat).")] = None,
    jurisdiction: str | None = None,
    role: str | None = None,
    settings: Annotated[str | None, typer.Option(help="Policy settings as JSON.")] = None,
) -> None:
    from .directory import ProfileIn

    attributes = {k: v for k, v in {"age_band": age_band, "health_conditions": health or [],
                                         "jurisdiction": jurisdiction, "role": role}.items() if v}
    fields = {"tenant": tenant} if tenant else {}
    _print(_admin().create_profile(ProfileIn(id=profile_id, text=text, attributes=attributes,
                                             settings=_settings(settings) or {}, **fields), _actor()))


@profile_app.command("update")
def profile_update(profile_id: str, text: str | None = None,
                   settings: Annotated[str | None, typer.Option(help="Policy settings as JSON.")] = None) -> None:
    from .directory import ProfilePatch

    _print(_admin().update_profile(profile_id, ProfilePatch(text=text, settings=_settings(settings)), _actor()))


@profile_app.command("delete")
def profile_delete(profile_id: str) -> None:
    _admin().delete_profile(profile_id, _actor())
    console.print(f"deleted profile {profile_id}")


# -- users -------------------------------------------------------------------------------------


@user_app.command("list")
def user_list() -> None:
    table = Table("id", "from", "tenant", "profile")
    admin = _admin()
    for u in _all(lambda **kw: admin.users(_actor(), **kw)):
        table.add_row(u.id, u.origin, u.tenant, u.profile or "-")
    console.print(table)


@user_app.command("create")
def user_create(user_id: str, tenant: str = "default", profile: str | None = None,
                settings: Annotated[str | None, typer.Option(help="Policy settings as JSON.")] = None) -> None:
    from .directory import UserIn

    _print(_admin().create_user(UserIn(id=user_id, tenant=tenant, profile=profile,
                                       settings=_settings(settings) or {}), _actor()))


@user_app.command("update")
def user_update(user_id: str, tenant: str | None = None, profile: str | None = None,
                no_profile: Annotated[bool, typer.Option("--no-profile", help="Unbind the profile.")] = False,
                settings: Annotated[str | None, typer.Option(help="Policy settings as JSON.")] = None) -> None:
    from .directory import UserPatch

    fields: dict = {"tenant": tenant, "settings": _settings(settings)}
    if no_profile or profile is not None:
        fields["profile"] = None if no_profile else profile
    _print(_admin().update_user(user_id, UserPatch(**fields), _actor()))


@user_app.command("delete")
def user_delete(user_id: str) -> None:
    _admin().delete_user(user_id, _actor())
    console.print(f"deleted user {user_id} (and its store API keys)")


# -- keys --------------------------------------------------------------------------------------


@key_app.command("list")
def key_list() -> None:
    table = Table("name", "from", "tenant", "user", "admin", "operator", "trusted gateway")
    admin = _admin()
    for k in _all(lambda **kw: admin.keys(_actor(), **kw)):
        table.add_row(k.name, k.origin, k.tenant, k.user or "-", str(k.admin), str(k.operator),
                      str(k.trusted_gateway))
    console.print(table)


@key_app.command("create")
def key_create(name: str, tenant: str | None = None, user: str | None = None,
               admin: bool = False, operator: bool = False, trusted_gateway: bool = False) -> None:
    """Create a key; it is printed once (on stdout, never to a log) and only its SHA-256 is
    stored. --admin: administers its tenant; --operator: every tenant."""
    from .directory import KeyIn

    created = _admin().create_key(KeyIn(name=name, tenant=tenant, user=user, admin=admin,
                                        operator=operator, trusted_gateway=trusted_gateway), _actor())
    console.print(f"key [bold]{created.name}[/] (tenant {created.tenant}, user {created.user or '-'}): "
                  "shown once, store it now:")
    print(created.key)


@key_app.command("delete")
def key_delete(name: str) -> None:
    _admin().delete_key(name, _actor())
    console.print(f"deleted key {name}")


# -- guidelines --------------------------------------------------------------------------------


@guidelines_app.command("list")
def guidelines_list(profile_id: str) -> None:
    table = Table("version", "status", "source", "created", "approved by", "items")
    for g in _admin().guidelines(profile_id, _actor()):
        table.add_row(str(g.version), g.status.value, g.source, g.created_at.strftime("%Y-%m-%d %H:%M"),
                      g.approved_by or "-", "; ".join(g.items))
    console.print(table)


@guidelines_app.command("derive")
def guidelines_derive(profile_id: str,
                      backend: Annotated[str, typer.Option("--backend", "-b", help="embedded | litellm:<model>")] = "embedded",
                      api_base: str | None = None,
                      role: Annotated[Optional[list[str]], typer.Option("--role", help="guidelines=URI[;api_base=URL][;api_key_env=VAR][;timeout_s=S][;retries=N]: the guidelines role's model (wins over --backend).")] = None) -> None:
    """Ask the guidelines role's model for the profile's guidelines (--role, else the policy
    file's roles table, else --backend); stored as a draft (approve it to use it)."""
    from .backends import load_backend
    from .errors import ConfigError
    from .policy import Policy
    from .roles import RoleName, load_role_backend, parse_role_options, resolve_roles

    p = _state.get("policy")
    table = Policy.load(p).file.roles if p else None
    resolved = resolve_roles(table, parse_role_options(role), generate=backend)[RoleName.GUIDELINES]
    if resolved.off:
        raise ConfigError(f"The guidelines role is off ({resolved.source}): no model to derive with.",
                          hint="Pass --role guidelines=URI, or draft from the library: specguard "
                               f"admin guidelines library {profile_id}.")
    if resolved.spec.model == backend:  # the serving model (--backend)
        be = load_backend(backend, **({"api_base": api_base} if api_base else {}))
    else:
        be = load_role_backend(resolved.spec)
    _print(asyncio.run(_admin(be).derive(profile_id, _actor())))


@guidelines_app.command("library")
def guidelines_library(
    profile_id: str,
    attribute: Annotated[list[str] | None, typer.Option(
        "--attribute", "-a", help="A guideline-library attribute id (repeatable); default: the "
        "profile's own attributes, else those its text suggests.")] = None,
    suggest: Annotated[bool, typer.Option(help="Suggest attributes from the profile text when "
                                          "none is named or set on the profile.")] = True,
) -> None:
    """Draft the profile's guidelines from the curated guideline library (approve it to use it).
    `specguard admin guidelines library-list` shows the attributes."""
    from .directory import LibraryDraftIn

    body = LibraryDraftIn(attributes=attribute or None, suggest=suggest)
    _print(asyncio.run(_admin().draft_from_library(profile_id, body, _actor())))


@guidelines_app.command("library-list")
def guidelines_library_list() -> None:
    """The guideline library's attributes and their guidelines."""
    from .directory import DirectoryAdmin

    table = Table("attribute", "kind", "name", "guidelines")
    for a in DirectoryAdmin.guideline_library():
        table.add_row(a.id, a.kind, a.name, "; ".join(a.guidelines))
    console.print(table)


@guidelines_app.command("set")
def guidelines_set(profile_id: str, items: list[str]) -> None:
    """Store an admin's own list as a new draft version."""
    from .directory import GuidelinesIn

    _print(_admin().edit(profile_id, GuidelinesIn(items=items), _actor()))


@guidelines_app.command("approve")
def guidelines_approve(profile_id: str, version: int) -> None:
    _print(_admin().approve(profile_id, version, _actor()))


@app.command("audit")
def audit(limit: int = 20) -> None:
    """The newest audit entries: who changed what, when."""
    table = Table("at", "actor", "action", "target")
    for r in _admin().audit(limit, _actor()):
        table.add_row(r["at"].strftime("%Y-%m-%d %H:%M:%S"), r["actor"], r["action"], r["target"])
    console.print(table)
