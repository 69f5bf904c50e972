"""`specguard optimize`: MetaSC over a suite's prompts, offline. It lives in the eval harness
because it composes a suite (its prompts are the training stream) with the agents' optimizer;
`specguard.cli` names it in its LAZY table."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ..policy import SpecUpdateMode

console = Console()


def optimize_command(
    suite: Annotated[str, typer.Option("--suite", "-s", help="Eval suite name or YAML path: its prompts are the training stream.")] = "metasc",
    policy: Annotated[Optional[Path], typer.Option("--policy", "-p", help="Policy YAML (system prompt, rounds, spec, canaries, tolerances).")] = None,
    method: Annotated[SpecUpdateMode, typer.Option("--method", "-m", help="gated | metasc-10 | metasc-full")] = SpecUpdateMode.GATED,
    backend: Annotated[str, typer.Option("--backend", "-b", help="embedded | litellm:<model>")] = "embedded",
    api_base: Annotated[Optional[str], typer.Option("--api-base")] = None,
    store: Annotated[Optional[str], typer.Option("--store", help="Store URL or SQLite path: the versions are written here.")] = None,
    tenant: str = "default",
    profile: Annotated[Optional[str], typer.Option(help="Optimize the profile's scope instead of the tenant's.")] = None,
    canaries: Annotated[Optional[str], typer.Option(help="Valset/canaries (default: the policy's spec_update_canaries).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N prompts.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Tokens per draft, critique and revision.")] = 128,
    out: Annotated[Path, typer.Option("--out", "-o", help="Result JSON (a Markdown trajectory is written next to it).")] = Path("optimize-result.json"),
    role: Annotated[Optional[list[str]], typer.Option("--role", help="critic=URI or meta_critic=URI[;api_base=URL][;api_key_env=VAR][;timeout_s=S][;retries=N] (default: the policy file's roles, else --backend).")] = None,
) -> None:
    """Run the spec loop and the meta-critic over a suite's prompts and write the resulting
    spec version (in the store and as JSON) with its trajectory (Markdown)."""
    from ..agents import load_canaries, optimize
    from ..backends import load_backend
    from ..config import store_url
    from ..policy import Policy
    from ..spec import scope_for
    from ..store import Store
    from ..types import GenerationParams
    from .suites import build_items, load_suite

    if method is SpecUpdateMode.OFF:
        raise typer.BadParameter("--method must be gated, metasc-10 or metasc-full")
    items = build_items(load_suite(suite))[: limit or None]
    pol = Policy.load(policy) if policy else Policy.default()
    settings = pol.resolve(tenant).settings
    valset = load_canaries(canaries or settings.spec_update_canaries)
    st = Store(store_url(store))
    scope = scope_for(tenant=tenant, profile=profile)
    name = settings.specs[0]
    be = load_backend(backend, **({"api_base": api_base} if api_base else {}))
    from ..roles import RoleBackends, RoleName, parse_role_options, resolve_roles

    roles = RoleBackends.build(resolve_roles(pol.file.roles, parse_role_options(role),
                                             generate=backend), generate=be)
    if roles.get(RoleName.META_CRITIC) is None:
        raise typer.BadParameter("the meta_critic role is off: nothing would propose a spec")
    for row in roles.rows():
        console.print(f"{row[0]}: {row[1]} ({row[2]})")

    def show(p) -> None:
        score = "" if p.safety is None else f" safety {p.safety:.2f} over-refusal {p.over_refusal:.2f}"
        console.print(f"[{p.step}/{len(items)}] {p.status.value} v{p.version}{score}")

    async def main():
        try:
            return await optimize(
                be, trainset=[i.request for i in items], valset=valset, method=method, store=st,
                spec_name=name, scope=scope, initial_spec=st.specs.active(name, scope).text,
                settings=settings, params=GenerationParams(max_tokens=max_tokens), on_step=show,
                meta_backend=roles.get(RoleName.META_CRITIC),
                critic=roles.get(RoleName.CRITIC) or be)
        finally:
            await roles.aclose()

    result = asyncio.run(main())
    result.save(out)
    md = out.with_suffix(".md")
    md.write_text(result.markdown(), encoding="utf-8")
    console.print(f"Active now: [bold]{result.spec.ref}[/] ({len(result.trajectory)} steps); "
                  f"wrote {out} and {md}. Undo with `specguard spec rollback {name} --scope {scope}`.")

