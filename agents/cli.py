"""`specguard serve`: the guarded server with MetaSC's spec updates. It lives here, above the
runtime, because it composes the two: the runtime serves, and a `SpecUpdater` (idle unless a
policy turns spec updates on) takes each answered request for its scope. `specguard.cli` names
this command in its LAZY table and imports it only when it runs."""

from __future__ import annotations

import copy
import gc
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional, get_args

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


def _env(option, var: str):
    """A shared CLI option that `serve` also reads from the environment variable `var` (a flag
    wins over the variable): containers configure the server by environment."""
    base, info = get_args(option)
    info = copy.copy(info)
    info.envvar = var
    return Annotated[base, info]


def serve(
    backend: _env(BackendOpt, "SPECGUARD_BACKEND") = None,
    policy: _env(PolicyOpt, "SPECGUARD_POLICY") = None,
    store: _env(StoreOpt, "SPECGUARD_STORE") = None,
    api_base: _env(ApiBaseOpt, "SPECGUARD_API_BASE") = None,
    host: Annotated[str, typer.Option(envvar="SPECGUARD_HOST", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="SPECGUARD_PORT", help="Port to listen on.")] = 8000,
    api_key: Annotated[Optional[str], typer.Option(envvar="SPECGUARD_API_KEY", help="Accept this key (tenant 'default'). Prefer the SPECGUARD_API_KEY environment variable: a key on the command line shows in the process list.")] = None,
    rate_limit: Annotated[int, typer.Option(envvar="SPECGUARD_RATE_LIMIT", help="Requests per minute per key; 0 = unlimited.")] = 0,
    max_concurrent: Annotated[int, typer.Option(envvar="SPECGUARD_MAX_CONCURRENT", help="Requests in flight per key (429 past it); 0 = unlimited.")] = 16,
    checkpointer: Annotated[str, typer.Option(envvar="SPECGUARD_CHECKPOINTER", help="Graph state per request: none, memory (the newest 1,000; memory:N) or sqlite:PATH.")] = "none",
    upstream_api_key: UpstreamKeyOpt = None,
    fast_guard: _env(FastGuardOpt, "SPECGUARD_FAST_GUARD") = None,
    role: _env(RoleOpt, "SPECGUARD_ROLES") = None,
    workers: Annotated[int, typer.Option(min=1, envvar="SPECGUARD_WORKERS", help="Server processes sharing the port and the store; each loads its own models (the embedded model once per worker), and per-key limits (--rate-limit, --max-concurrent) apply per worker.")] = 1,
    metrics: Annotated[bool, typer.Option(envvar="SPECGUARD_METRICS", help="Serve Prometheus metrics at GET /metrics.")] = True,
    access_log: Annotated[bool, typer.Option(envvar="SPECGUARD_ACCESS_LOG", help="One JSON line per request on stdout, with the safety report's summary.")] = True,
    otel_exporter: Annotated[str, typer.Option(envvar="SPECGUARD_OTEL_EXPORTER", help="OpenTelemetry traces: none, console, otlp (the OTEL_EXPORTER_OTLP_* variables say where), or auto (otlp when an OTLP endpoint is set). Needs the otel extra.")] = "auto",
    shutdown_grace_s: Annotated[int, typer.Option(min=0, envvar="SPECGUARD_SHUTDOWN_GRACE_S", help="On SIGTERM/SIGINT: stop taking connections, let requests and streams in flight finish for up to this many seconds, then cancel them.")] = 30,
) -> None:
    """Run the guarded OpenAI-compatible server. Each role (guard, critic, meta_critic,
    guidelines) can be its own model: --role, or `roles:` in the policy file. Every option
    can also come from its SPECGUARD_* environment variable (see --help)."""
    import uvicorn
    from rich.console import Console

    from ..errors import ConfigError
    from ..observability import EXPORTERS

    if otel_exporter not in EXPORTERS:  # before anything loads
        raise ConfigError(f"Unknown trace exporter {otel_exporter!r}.",
                          hint=f"Use one of: {', '.join(EXPORTERS)}.")
    options = {"backend": backend, "policy": str(policy) if policy else None, "store": store,
               "api_base": api_base, "rate_limit": rate_limit, "max_concurrent": max_concurrent,
               "checkpointer": checkpointer, "upstream_api_key": upstream_api_key,
               "fast_guard": fast_guard, "role": role, "metrics": metrics,
               "access_log": access_log, "otel_exporter": otel_exporter}
    # CPU work runs on threads (the fast tier, the store); a 1 ms GIL switch interval (5 ms by
    # default) keeps the event loop's turn short while they run.
    sys.setswitchinterval(0.001)
    # Keep-alive longer than the usual load balancer's idle timeout (60 s): the server closing
    # an idle connection just as a client reuses it would fail that client's request. On a
    # signal uvicorn stops accepting, lets in-flight requests and streams finish (up to the
    # grace period), then runs the app's shutdown.
    run = {"host": host, "port": port, "log_level": "warning", "timeout_keep_alive": 75,
           "timeout_graceful_shutdown": shutdown_grace_s}
    if workers > 1:
        # Each worker process builds the same server from these options (`worker_app`); a key
        # generated here is handed to them, so every worker accepts it.
        options["api_key"] = api_key or _worker_key(backend, policy, role)
        # The store's tables and seeds are made once here, not raced by N workers.
        from ..config import store_url
        from ..store import Store

        Store(store_url(store)).close()
        os.environ[_WORKER_OPTIONS] = json.dumps(options)
        # The workers' metrics meet in one folder, so any worker's /metrics reports them all
        # (prometheus_client's multiprocess mode; an operator's own folder is kept).
        metrics_dir = None
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            import tempfile

            metrics_dir = tempfile.mkdtemp(prefix="specguard-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        Console().print(f"Point an OpenAI client at [bold]http://{host}:{port}/v1[/] (model "
                        f"'specguard'), {workers} workers")
        try:
            uvicorn.run("specguard.agents.cli:worker_app", factory=True, workers=workers, **run)
        finally:
            if metrics_dir is not None:
                import shutil

                shutil.rmtree(metrics_dir, ignore_errors=True)
        return
    options["api_key"] = api_key
    fastapi_app = _build_app(options, announce=True)
    Console().print(f"Point an OpenAI client at [bold]http://{host}:{port}/v1[/] (model 'specguard')")
    # What start-up loaded (models, encoders, modules) is frozen out of the garbage collector's
    # full passes, which would otherwise walk it all, holding the interpreter lock for hundreds
    # of milliseconds.
    gc.collect()
    gc.freeze()
    uvicorn.run(fastapi_app, **run)


_WORKER_OPTIONS = "SPECGUARD_SERVE_WORKER_OPTIONS"


def worker_app():
    """The app of one `serve --workers N` process (uvicorn's factory): the options the parent
    resolved, from its environment. The models load in the app's start-up, before the worker
    takes requests."""
    sys.setswitchinterval(0.001)
    return _build_app(json.loads(os.environ[_WORKER_OPTIONS]), announce=False)


def _build_app(o: dict, *, announce: bool):
    from ..observability import configure_tracing
    from ..server import ServerSettings, create_app

    # A short store busy timeout: an admin write that finds the store locked by another
    # process answers 503 (retry later) instead of holding its request for 30 s.
    runtime = build_runtime(o["backend"], Path(o["policy"]) if o["policy"] else None, o["store"],
                            o["api_base"], o["checkpointer"], o["upstream_api_key"],
                            o["fast_guard"], api_key=o["api_key"], generate_key=announce,
                            spec_updater=SpecUpdater.from_roles, store_busy_timeout_s=5.0,
                            roles=o["role"])
    if announce:
        print_roles(runtime.roles)
        load_with_progress(runtime)
    if o["access_log"]:
        _print_access_log()
    configure_tracing(o["otel_exporter"])
    fastapi_app = create_app(runtime, ServerSettings(
        rate_limit_per_minute=o["rate_limit"], max_concurrent_per_key=o["max_concurrent"],
        metrics=o["metrics"], access_log=o["access_log"]))
    guidelines = runtime.roles.get(RoleName.GUIDELINES)
    if guidelines is not None:  # the model the admin routes derive profile guidelines with
        fastapi_app.state.guideline_backend = guidelines
    return fastapi_app


def _worker_key(backend, policy, role) -> str | None:
    """With workers and no key given: one generated key for all of them when the policy has
    none (as a single process does), written to a file only its owner can read."""
    import secrets

    from ..cli import _console, _write_secret, resolve_cli_roles

    pol, _ = resolve_cli_roles(backend, policy, role)
    if pol.file.api_keys:
        return None
    key = "sg-" + secrets.token_urlsafe(24)
    where = _write_secret(Path(".specguard-api-key"), key)
    _console().print(f"No API keys configured; generated one for this run in [bold]{where}[/] "
                     "(readable by you only). Set SPECGUARD_API_KEY to choose your own.")
    return key


def _print_access_log() -> None:
    """The access log's JSON lines on stdout, as they are (the library configures no logging;
    the server command does)."""
    import logging

    log = logging.getLogger("specguard.access")
    if not any(getattr(h, "_specguard", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._specguard = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


__all__ = ["serve"]
