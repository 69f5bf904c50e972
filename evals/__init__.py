"""Offline evaluation: datasets, suites, methods, judges, metrics, a resumable runner, reports.

    specguard eval run refusal            # the CLI (evals/cli.py)

    from specguard.evals import load_suite, Runner, write_report
    from specguard.evals.datasets import load
"""

from .methods import Cost, Method, MethodContext, MethodOutput, build_method, register_method
from .report import render_html, render_markdown, write_report
from .runner import RunConfig, Runner, RunResult, load_run, run_suite, write_summary
from .suites import EvalItem, Suite, build_items, builtin_suites, load_suite
from .transforms import register_transform

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
