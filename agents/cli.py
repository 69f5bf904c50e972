"""`specguard serve`: the guarded server with MetaSC's spec updates. It lives here, above the
runtime, because it composes the two: the runtime serves, and a `SpecUpdater` (idle unless a
policy turns spec updates on) takes each answered request for its scope. `specguard.cli` names
this command in its LAZY table and imports it only when it runs."""

from __future__ import annotations

import gc
import sys
from typing import Annotated, Optional

import typer

from ..cli import (
    ApiBaseOpt,
    BackendOpt,
    FastGuardOpt,
    PolicyOpt,
    RoleOpt,
    StoreOpt,
    UpstreamKeyOpt,
    build_runtime,
    load_with_progress,
    print_roles,
)
from ..roles import RoleName
from .spec_updates import SpecUpdater


def serve(
    backend: BackendOpt = None,
    policy: PolicyOpt = None,
    store: StoreOpt = None,
    api_base: ApiBaseOpt = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: Annotated[Optional[str], typer.Option(envvar="SPECGUARD_API_KEY", help="Accept this key (tenant 'default'). Prefer the SPECGUARD_API_KEY environment variable: a key on the command line shows in the process list.")] = None,
    rate_limit: Annotated[int, typer.Option(help="Requests per minute per key; 0 = unlimited.")] = 0,
    max_concurrent: Annotated[int, typer.Option(help="Requests in flight per key (429 past it); 0 = unlimited.")] = 16,
    checkpointer: Annotated[str, typer.Option(help="Graph state per request: none, memory (the newest 1,000; memory:N) or sqlite:PATH.")] = "none",
    upstream_api_key: UpstreamKeyOpt = None,
    fast_guard: FastGuardOpt = None,
    role: RoleOpt = None,
) -> None:
    """Run the guarded OpenAI-compatible server. Each role (guard, critic, meta_critic,
    guidelines) can be its own model: --role, or `roles:` in the policy file."""
    import uvicorn
    from rich.console import Console

    from ..server import ServerSettings, create_app

    # A short store busy timeout: an admin write that finds the store locked by another
    # process answers 503 (retry later) instead of holding its request for 30 s.
    runtime = build_runtime(backend, policy, store, api_base, checkpointer, upstream_api_key,
                            fast_guard, api_key=api_key, generate_key=True,
                            spec_updater=SpecUpdater.from_roles, store_busy_timeout_s=5.0,
                            roles=role)
    print_roles(runtime.roles)
    load_with_progress(runtime)
    fastapi_app = create_app(runtime, ServerSettings(rate_limit_per_minute=rate_limit,
                                                     max_concurrent_per_key=max_concurrent))
    guidelines = runtime.roles.get(RoleName.GUIDELINES)
    if guidelines is not None:  # the model the admin routes derive profile guidelines with
        fastapi_app.state.guideline_backend = guidelines
    Console().print(f"Point an OpenAI client at [bold]http://{host}:{port}/v1[/] (model 'specguard')")
    # CPU work runs on threads (the fast tier, the store); a 1 ms GIL switch interval (5 ms by
    # default) keeps the event loop's turn short while they run. What start-up loaded (models,
    # encoders, modules) is frozen out of the garbage collector's full passes, which would
    # otherwise walk it all, holding the interpreter lock for hundreds of milliseconds.
    sys.setswitchinterval(0.001)
    gc.collect()
    gc.freeze()
    # Keep-alive longer than the usual load balancer's idle timeout (60 s): the server closing
    # an idle connection just as a client reuses it would fail that client's request.
    uvicorn.run(fastapi_app, host=host, port=port, log_level="warning", timeout_keep_alive=75)


__all__ = ["serve"]
