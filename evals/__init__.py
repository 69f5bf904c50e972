"""Offline evaluation: suites, methods, judges, metrics, a resumable runner, reports.

    specguard eval run refusal            # the CLI (evals/cli.py)

    from specguard.evals import load_suite, Runner, write_report
    from specguard.data import load

Names load on first use: `import specguard.evals` needs no numpy (the `eval` extra brings it
for the metrics).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Cost": "methods",
    "Method": "methods",
    "MethodContext": "methods",
    "MethodOutput": "methods",
    "build_method": "methods",
    "register_method": "methods",
    "render_html": "report",
    "render_markdown": "report",
    "write_report": "report",
    "RunConfig": "runner",
    "RunResult": "runner",
    "Runner": "runner",
    "load_run": "runner",
    "run_suite": "runner",
    "write_summary": "runner",
    "EvalItem": "suites",
    "Suite": "suites",
    "build_items": "suites",
    "builtin_suites": "suites",
    "load_suite": "suites",
    "register_transform": "transforms",
}

__all__ = [
    "Cost",
    "EvalItem",
    "Method",
    "MethodContext",
    "MethodOutput",
    "RunConfig",
    "RunResult",
    "Runner",
    "Suite",
    "build_items",
    "build_method",
    "builtin_suites",
    "load_run",
    "load_suite",
    "register_method",
    "register_transform",
    "render_html",
    "render_markdown",
    "run_suite",
    "write_report",
    "write_summary",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'specguard.evals' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
