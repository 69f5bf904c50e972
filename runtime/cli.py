"""The `specguard` command line.

Light commands live here and import what they need when they run: `specguard --help`,
`hash-key` and `policy check` load no model code, LangGraph or web framework. Sub-commands
that live with their feature, or above the runtime (the server with MetaSC's spec updates in
specguard.agents, the eval harness in specguard.evals), are named in `LAZY` and imported only
when invoked: this module is the composition root of the command line and never imports an
upper layer itself. A sub-command whose optional dependencies are missing still shows in
`--help` and, when invoked, says what to install.
"""

from __future__ import annotations

import functools
import importlib
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NamedTuple, Optional

import click
import typer
from typer.core import TyperGroup

from .errors import MissingDependencyError, SpecguardError


class LazyCommand(NamedTuple):
    target: str  # "module:attribute": a Typer app, or a function to wrap as a command
    help: str
    extra: str  # the pip extra that brings its dependencies


LAZY: dict[str, LazyCommand] = {
    "serve": LazyCommand("specguard.agents.cli:serve",
                         "Run the guarded OpenAI-compatible server.", "server"),
    "optimize": LazyCommand("specguard.evals.optimize_cli:optimize_command",
                            "Optimize a safety spec offline (MetaSC: gated, metasc-10, metasc-full).",
                            "eval"),
    "data": LazyCommand("specguard.data.cli:app",
                        "Datasets, their splits and the near-duplicate manifest.", "eval"),
    "eval": LazyCommand("specguard.evals.cli:app", "Offline evaluation: suites, runs, reports.", "eval"),
    "guard": LazyCommand("specguard.guard.cli:app", "Train and inspect the guard's fast tier.", "guard"),
    "datastore": LazyCommand("specguard.decoding.cli:app",
                             "Goodtriever datastores: build, add, remove, stats.", "faiss"),
    "admin": LazyCommand("specguard.admin_cli:app",
                         "Users, profiles, API keys and derived guidelines (audited).", "server"),
}


class _Lazy(click.Command):
    """Stands in for a LAZY sub-command in `--help`; loads the real one when it runs."""

    def __init__(self, name: str, entry: LazyCommand) -> None:
        super().__init__(name=name, help=entry.help, short_help=entry.help)
        self.entry = entry

    def load(self) -> click.Command:
        module, _, attr = self.entry.target.partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            raise MissingDependencyError(
                f"`specguard {self.name}` could not load: {exc}.",
                hint=f"Install its dependencies: pip install 'specguard[{self.entry.extra}]'",
            ) from exc
        if isinstance(obj, typer.Typer):
            return typer.main.get_command(obj)
        sub = typer.Typer()
        sub.command(self.name, help=self.entry.help)(obj)
        return typer.main.get_command(sub)

    def make_context(self, info_name, args, parent=None, **extra: Any) -> click.Context:
        return self.load().make_context(info_name, args, parent=parent, **extra)


class _Group(TyperGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, entry in LAZY.items():
            self.commands.setdefault(name, _Lazy(name, entry))


app = typer.Typer(cls=_Group, no_args_is_help=True,
                  help="specguard: a test-time safety specification runtime.")
spec_app = typer.Typer(no_args_is_help=True, help="Inspect and manage safety specifications.")
policy_app = typer.Typer(no_args_is_help=True, help="Validate and explain policy files.")
app.add_typer(spec_app, name="spec")
app.add_typer(policy_app, name="policy")


@functools.cache
def _console(stderr: bool = False):
    from rich.console import Console  # rich loads only when a command prints

    return Console(stderr=stderr)


def _table(*columns: str):
    from rich.table import Table

    return Table(*columns)


BackendOpt = Annotated[Optional[str], typer.Option("--backend", "-b", help="The serving (generate) model: embedded | embedded:/path.gguf | litellm:<provider>/<model> | openai:<model> (with --api-base) | vllm:<model> | vllm:engine:/hf/folder (default: the policy file's roles.generate, else embedded).")]
RoleOpt = Annotated[Optional[list[str]], typer.Option("--role", help="A model for one role, repeatable: ROLE=URI[;api_base=URL][;api_key_env=VAR][;timeout_s=S][;retries=N][;format=F]. Roles: guard (deliberative tier; format: thinkguard, llama_guard_3, llama_guard_4, gpt_oss_safeguard, qwen3guard, granite_guardian, ...), critic, meta_critic, guidelines, judge, generate. URI 'off' switches a role off, 'generate' uses the serving model.")]
PolicyOpt = Annotated[Optional[Path], typer.Option("--policy", "-p", help="Policy YAML file.")]
StoreOpt = Annotated[Optional[str], typer.Option("--store", help="Store URL or SQLite path (default: $SPECGUARD_STORE or specguard.db).")]
ApiBaseOpt = Annotated[Optional[str], typer.Option("--api-base", help="Upstream URL for litellm, openai and vllm backends.")]
FastGuardOpt = Annotated[Optional[str], typer.Option("--fast-guard", help="The guard's fast tier: a shipped artifact's name (fast_default), an artifact folder from `specguard guard train`, or a legacy .joblib (loading a pickle runs code).")]
UpstreamKeyOpt = Annotated[Optional[str], typer.Option("--upstream-api-key", envvar="SPECGUARD_UPSTREAM_API_KEY", help="API key specguard sends upstream (litellm/openai backends).")]


def build_runtime(backend: str | None, policy: Path | None, store: str | None,
                  api_base: str | None = None, checkpointer: str | None = None,
                  upstream_api_key: str | None = None, fast_guard: str | None = None,
                  api_key: str | None = None, generate_key: bool = False,
                  spec_updater: Any = None, store_busy_timeout_s: float = 30.0,
                  roles: list[str] | None = None):
    """The Runtime the CLI's commands run: the serving model (--backend, else the policy's
    roles.generate, else embedded), a model per role (--role over the policy file's `roles:`,
    specguard.roles), the policy file (the embedded model's defaults when none and the serving
    model is embedded), the store (its busy timeout: how long a write waits for another writer),
    the checkpointer, an optional fast tier, an extra accepted API key (tenant 'default'; with
    generate_key, one is made when the policy has none, written to a file only its owner can
    read, never printed) and an optional spec updater factory `(store, roles) -> SpecUpdates`."""
    from .backends import load_backend
    from .checkpoint import make_checkpointer
    from .config import store_url
    from .core import Runtime
    from .roles import RoleBackends, RoleName
    from .store import Store

    pol, resolved = resolve_cli_roles(backend, policy, roles)
    gen = resolved[RoleName.GENERATE].spec
    options = {"api_base": api_base or gen.api_base} if (api_base or gen.api_base) else {}
    if upstream_api_key:
        options["api_key"] = upstream_api_key
    be = load_backend(gen.model, **options) if options else None
    role_backends = RoleBackends.build(resolved, generate=be)
    be = role_backends.generate
    if api_key is None and generate_key and not pol.file.api_keys:
        import secrets

        api_key = "sg-" + secrets.token_urlsafe(24)
        where = _write_secret(Path(".specguard-api-key"), api_key)
        _console().print(f"No API keys configured; generated one for this run in [bold]{where}[/] "
                         "(readable by you only). Set SPECGUARD_API_KEY to choose your own.")
    if api_key:
        pol = pol.with_key(api_key, name="cli")
    guard = None
    if fast_guard:
        from .guard import build_guard

        guard_model = role_backends.get(RoleName.GUARD)
        guard = build_guard(be, pol.resolve("default").settings if "default" in pol.file.tenants
                            else None, fast_artifact=fast_guard, deliberative_backend=guard_model,
                            deliberative_format=role_backends.guard_format,
                            deliberative=guard_model is not None)
    st = Store(store_url(store), busy_timeout_s=store_busy_timeout_s)
    return Runtime(be, policy=pol, store=st, guard=guard,
                   checkpointer=make_checkpointer(checkpointer), roles=role_backends,
                   spec_updater=spec_updater(st, role_backends) if spec_updater else None)


def resolve_cli_roles(backend: str | None, policy: Path | None, roles: list[str] | None):
    """The policy (the file, else the embedded model's defaults when the serving model is
    embedded, else the built-in one) and each role's model with where it came from."""
    from .policy import Policy
    from .roles import RoleName, is_embedded, parse_role_options, resolve_roles

    overrides = parse_role_options(roles)
    if policy:
        pol, source = Policy.load(policy), f"policy file {Path(policy).name}"
    else:
        generate = (overrides[RoleName.GENERATE].model if RoleName.GENERATE in overrides
                    else backend or "embedded")
        if is_embedded(generate):
            pol, source = _embedded_default_policy(), "embedded_default.yaml"
        else:
            pol, source = Policy.default(), "policy file"
    return pol, resolve_roles(pol.file.roles, overrides, generate=backend, table_source=source)


def _write_secret(path: Path, secret: str) -> Path:
    """Write `secret` to `path` with mode 600 (created that way: never readable by others)."""
    import os

    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret + "\n")
    return path.resolve()


def _embedded_default_policy():
    from importlib import resources

    from .policy import Policy

    path = resources.files("specguard.specs") / "policies" / "embedded_default.yaml"
    return Policy.from_yaml(path.read_text("utf-8"), source="embedded_default.yaml")


def load_with_progress(runtime) -> None:
    with _console().status(f"Loading {runtime.backend.name} ...", spinner="dots"):
        start = time.perf_counter()
        import asyncio

        asyncio.run(runtime.load())
    _console().print(f"[green]Loaded[/] {runtime.backend.name} in {time.perf_counter() - start:.1f} s")


@app.command()
def chat(
    backend: BackendOpt = "embedded",
    policy: PolicyOpt = None,
    store: StoreOpt = None,
    api_base: ApiBaseOpt = None,
    tenant: str = "default",
    user: Optional[str] = None,
    fast_guard: FastGuardOpt = None,
    role: RoleOpt = None,
) -> None:
    """Chat with the guarded model in the terminal (empty line or Ctrl-D to quit)."""
    from .types import Message, Role

    runtime = build_runtime(backend, policy, store, api_base, fast_guard=fast_guard, roles=role)
    print_roles(runtime.roles)
    load_with_progress(runtime)
    history: list[Message] = []

    async def turn(text: str):
        history.append(Message(role=Role.USER, content=text))
        result = await runtime.chat(history, tenant=tenant, user=user)
        history.append(Message(role=Role.ASSISTANT, content=result.answer))
        return result

    while True:
        try:
            text = _console().input("[bold cyan]you> [/]").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not text:
            break
        import asyncio

        result = asyncio.run(turn(text))
        _console().print(f"[bold]assistant>[/] {result.answer}")
        r = result.report
        verdicts = ", ".join(f"{d.stage.value}={d.label}" for d in r.decisions) or "no checks"
        _console().print(f"[dim]{r.action.value} | {verdicts} | {r.model_calls} model calls | {r.total_ms:.0f} ms[/]")
        for fate in r.revisions:
            why = "accepted" if fate.accepted else "rejected: " + "; ".join(fate.reasons)
            _console().print(f"[dim]revision {fate.round} {why}[/]")


def print_roles(roles) -> None:
    """The role table (which model plays each role, and who chose it)."""
    table = _table("role", "model", "from")
    for row in roles.rows():
        table.add_row(*row)
    _console().print(table)


@app.command()
def demo(
    backend: BackendOpt = None,
    api_base: ApiBaseOpt = None,
    port: Annotated[int, typer.Option(help="Port for the demo server; 0 picks a free one.")] = 0,
    role: RoleOpt = None,
) -> None:
    """Start the guarded server, send benign, harmful and profile-specific requests through it
    with an OpenAI-style client, and print what happened."""
    from .demo import run_demo

    try:
        run_demo(backend=backend or "embedded", api_base=api_base, port=port or _free_port(),
                 console=_console(), roles=role)
    except SpecguardError as exc:
        _console(stderr=True).print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- specs -----------------------------------------------------------------------------------


def _store(store: str | None):
    from .config import store_url
    from .store import Store

    return Store(store_url(store))


@spec_app.command("list")
def spec_list(store: StoreOpt = None) -> None:
    """Active specs in every scope."""
    table = _table("name", "scope", "version", "title", "source")
    for s in _store(store).specs.list_active():
        table.add_row(s.name, s.scope, str(s.version), s.title, str(s.provenance))
    _console().print(table)


@spec_app.command("show")
def spec_show(name: str, scope: str = "global", version: Optional[int] = None, store: StoreOpt = None) -> None:
    """Print a spec (the active version unless --version)."""
    specs = _store(store).specs
    s = specs.get(name, scope, version) if version else specs.active(name, scope)
    _console().print(f"[bold]{s.ref}[/] ({s.status.value}) {s.title}")
    typer.echo(s.text)


@spec_app.command("history")
def spec_history(name: str, scope: str = "global", store: StoreOpt = None) -> None:
    """Every version of a spec in a scope, with parents, status and gate results."""
    table = _table("version", "parent", "status", "source", "created", "metrics")
    for s in _store(store).specs.history(name, scope):
        table.add_row(str(s.version), str(s.parent or "-"), s.status.value, str(s.provenance),
                      s.created_at.strftime("%Y-%m-%d %H:%M:%S"), ", ".join(f"{k}={v}" for k, v in s.metrics.items()))
    _console().print(table)


@spec_app.command("candidates")
def spec_candidates(name: str, scope: Annotated[Optional[str], typer.Option(help="One scope (default: every scope with learned versions).")] = None,
                    store: StoreOpt = None) -> None:
    """What the meta-critic proposed, per scope: candidates seen, accepted, rejected and why,
    and those waiting for an admin's approval (`specguard spec activate`)."""
    from .spec import spec_update_report

    st = _store(store)
    scopes = [scope] if scope else sorted({s.scope for s in st.specs.list_active()})
    summary = _table("scope", "seen", "accepted", "rejected", "awaiting approval")
    detail = _table("scope", "version", "status", "why")
    for sc in scopes:
        rep = spec_update_report(st.specs.history(name, sc))
        if not rep.seen:
            continue
        summary.add_row(sc, str(rep.seen), str(rep.accepted), str(rep.rejected), str(rep.awaiting))
        for row in rep.rows:
            detail.add_row(sc, f"v{row.version}", row.status, row.why)
    _console().print(summary)
    _console().print(detail)


@spec_app.command("diff")
def spec_diff(name: str, a: int, b: int, scope: str = "global", store: StoreOpt = None) -> None:
    """Unified diff between two versions."""
    from .spec import diff_specs

    specs = _store(store).specs
    typer.echo(diff_specs(specs.get(name, scope, a), specs.get(name, scope, b)) or "(identical)")


@spec_app.command("activate")
def spec_activate(name: str, version: int, scope: str = "global", store: StoreOpt = None) -> None:
    """Make a version active (approve a learned candidate, or go back to an older version)."""
    s = _store(store).specs.activate(name, scope, version, actor=_cli_actor())
    _console().print(f"Active now: [bold]{s.ref}[/]")


def _cli_actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except OSError:
        return "cli"


@spec_app.command("rollback")
def spec_rollback(name: str, scope: str = "global", store: StoreOpt = None) -> None:
    """Re-activate the parent of the active version."""
    s = _store(store).specs.rollback(name, scope, actor="cli")
    _console().print(f"Active now: [bold]{s.ref}[/]")


# -- policies --------------------------------------------------------------------------------


@policy_app.command("check")
def policy_check(file: Path, backend: BackendOpt = None, role: RoleOpt = None) -> None:
    """Validate a policy file; exit 1 with the field and reason when it is invalid. Warns (exit
    0) when a setting calls on a role its model plays badly (the embedded 135M model as critic,
    meta-critic or deliberative guard) or on a role that is off."""
    from .policy import Policy

    try:
        p = Policy.load(file)
        from .roles import RoleName, parse_role_options, resolve_roles

        roles = resolve_roles(p.file.roles, parse_role_options(role), generate=backend,
                              table_source=f"policy file {file.name}")
        guard = roles[RoleName.GUARD]
        if guard.spec.format and not guard.off:
            from .guard.formats import get_format

            get_format(guard.spec.format)
    except SpecguardError as exc:
        typer.secho(f"invalid: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    f = p.file
    typer.echo(f"{typer.style('ok', fg='green')} {file}: {len(f.tenants)} tenants, "
               f"{len(f.profiles)} profiles, {len(f.users)} users, {len(f.api_keys)} API keys")
    for warning in p.role_warnings(roles):
        typer.secho(f"warning: {warning}", fg="yellow", err=True)
    for line in _policy_notes(p):
        typer.echo(f"{typer.style('note', fg='yellow')} {line}")


def _policy_notes(p) -> list[str]:
    """What a valid policy does that its author should know: ungated online spec updates wait
    for an admin before they serve."""
    from .policy import SpecUpdateMode

    ungated = (SpecUpdateMode.METASC_10, SpecUpdateMode.METASC_FULL)
    where = [f"tenant {t}" for t in p.file.tenants if p.resolve(t).settings.spec_update in ungated]
    where += [f"user {u}" for u, v in p.file.users.items()
              if p.resolve(v.tenant, u).settings.spec_update in ungated]
    if not where:
        return []
    return [f"spec_update metasc-10 / metasc-full is ungated ({', '.join(where)}): online, each "
            "spec version the meta-critic learns waits as a candidate until an admin activates it "
            "(POST /admin/specs/<name>/versions/<v>/activate or `specguard spec activate`); use "
            "'gated' to let the scope's canary gate decide instead."]


@policy_app.command("explain")
def policy_explain(
    file: Path,
    tenant: Annotated[Optional[str], typer.Option(help="Default: the user's tenant, else 'default'.")] = None,
    user: Optional[str] = None,
    store: Annotated[Optional[str], typer.Option("--store", help="Also the users and profiles an admin manages in this store (default: $SPECGUARD_STORE when set).")] = None,
    backend: BackendOpt = None,
    role: RoleOpt = None,
) -> None:
    """Print which model plays each role and where that came from, then the resolved settings
    for a tenant/user and which layer set each one."""
    import os

    from .config import STORE_URL_ENV
    from .errors import NotFoundError
    from .policy import Policy

    p = Policy.load(file)
    store = store or os.environ.get(STORE_URL_ENV)
    if store:
        from .directory import ComposedPolicy
        from .store import Store

        p = ComposedPolicy(p, Store(store))
    if user and user not in p.file.users:
        raise NotFoundError(f"Unknown user {user!r} in {file}" + (f" or {store}" if store else "") + ".",
                            hint="List users with `specguard admin user list`.")
    if tenant is None:
        tenant = p.file.users[user].tenant if user else "default"
    from .roles import parse_role_options, resolve_roles, role_rows

    table = _table("role", "model", "from")
    for row in role_rows(resolve_roles(Policy.load(file).file.roles, parse_role_options(role),
                                       generate=backend, table_source=f"policy file {file.name}")):
        table.add_row(*row)
    _console().print(table)
    resolved = p.resolve(tenant, user)
    _console().print(f"tenant [bold]{tenant}[/], user [bold]{user or '-'}[/], profile [bold]{resolved.profile_id or '-'}[/]")
    table = _table("setting", "value", "from")
    for path, value, source in p.explain(tenant, user):
        table.add_row(path, str(value), source)
    _console().print(table)


@app.command("hash-key")
def hash_key_cmd(key: str) -> None:
    """Print the SHA-256 to store in a policy file's api_keys for KEY."""
    from ._keys import hash_key

    typer.echo(hash_key(key))


@app.command("graph")
def graph_cmd(draw: Annotated[bool, typer.Option("--draw", help="Print the graph as Mermaid text.")] = True) -> None:
    """The guarded chat graph every request runs, streaming or not."""
    from .graph import draw_mermaid

    typer.echo(draw_mermaid())


def main() -> None:
    try:
        app()
    except SpecguardError as exc:
        _console(stderr=True).print(f"[red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
