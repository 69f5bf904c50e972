"""`specguard eval`: run suites, write reports, list datasets and suites.

    specguard eval run refusal --backend embedded --out runs/refusal
    specguard eval report runs/refusal [runs/other ...] --out reports/
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..errors import SpecguardError

app = typer.Typer(no_args_is_help=True, help="Offline evaluation: suites, runs, reports.")
console = Console()
err = Console(stderr=True)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "run"


@app.command("run")
def run_cmd(
    suite: Annotated[str, typer.Argument(help="A built-in suite name or a suite YAML path.")],
    backend: Annotated[str, typer.Option("--backend", "-b",
                                         help="embedded | embedded:/path.gguf | litellm:<model>")
                       ] = "embedded",
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="Datasets folder (default: $SPECGUARD_DATA_DIR or ../shared/data).")
    ] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Run directory (default: runs/<suite>-<backend>[-limitN]). Running "
        "the same command again resumes it.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1,
                                                 help="Evaluate only the first N items.")] = None,
    concurrency: Annotated[int | None, typer.Option(
        "--concurrency", "-c", min=1, help="Requests in flight (helps remote backends).")] = None,
    api_base: Annotated[str | None, typer.Option(
        "--api-base", help="Upstream URL for litellm backends.")] = None,
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, help="llama.cpp threads for the embedded backend (default: "
        "$SPECGUARD_THREADS or all cores; 1 is faster on a busy machine).")] = None,
    plugin: Annotated[list[str] | None, typer.Option(
        "--plugin", help="Module to import first (registers methods/judges); repeatable.")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    publish: Annotated[bool, typer.Option(
        "--publish", help="Also write the run's summary (numbers only) to docs/results/<suite>"
        ".json; then `python -m specguard.evals.scoreboard` regenerates the pages.")] = False,
    results_dir: Annotated[Path, typer.Option(
        "--results-dir", help="Where --publish writes.")] = Path("docs/results"),
    role: Annotated[list[str] | None, typer.Option(
        "--role", help="judge=URI[;api_base=URL][;api_key_env=VAR][;timeout_s=S][;retries=N]: "
        "the model the suite's model judges ask (default: the run's backend).")] = None,
) -> None:
    """Run SUITE and write its run directory (config.json, records.jsonl, summary.json,
    report.html, report.md). Interrupted runs resume without recomputing finished items."""
    from ..backends import load_backend
    from .report import write_report
    from .runner import Runner
    from .suites import import_plugins, load_suite

    import_plugins(list(plugin or []))
    spec = load_suite(suite)
    out_dir = out or Path("runs") / _slug(
        f"{spec.name}-{backend}" + (f"-limit{limit}" if limit else ""))
    be = load_backend(backend, **_backend_options(backend, api_base, threads))
    runner = Runner(spec, be, backend_name=backend, out_dir=out_dir, limit=limit,
                    data_dir=data_dir, concurrency=concurrency, progress=progress, console=err,
                    judge_backend=_judge_role(role))
    err.print(f"suite [bold]{spec.name}[/]: {len(runner.items)} items x "
              f"{len(spec.methods)} methods -> {out_dir}")
    try:
        result = asyncio.run(runner.run())
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted[/]: finished items are saved in {out_dir}; run the same "
                  "command to resume.")
        # Every finished record is already flushed to records.jsonl. Exit now: the embedded
        # backend's worker thread would otherwise finish its in-flight generation first
        # (minutes on a busy CPU), and a second Ctrl-C cannot interrupt that C call.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    html_path, _ = write_report([out_dir], out_dir)
    err.print(f"{result.computed} records computed ({result.done_before} from the cache, "
              f"{result.errors} errors) in {result.seconds:.1f}s")
    _print_summary(out_dir)
    console.print(f"report: {html_path}")
    if publish:
        from .results import run_result, write_result

        prog = "specguard" if Path(sys.argv[0]).name == "specguard" else \
            "python -m specguard.evals.cli"
        cmd = " ".join([prog, *sys.argv[1:]])
        path = write_result(run_result(out_dir, command=cmd), results_dir)
        console.print(f"published: {path}")


def _judge_role(values: list[str] | None):
    """The judge role's backend from `--role judge=...` (specguard.roles); None: the run's."""
    from ..roles import RoleName, load_role_backend, parse_role_options

    roles = parse_role_options(values)
    other = sorted(r.value for r in roles if r is not RoleName.JUDGE)
    if other:
        from ..errors import ConfigError

        raise ConfigError(f"`eval run` takes only the judge role, not {other}.",
                          hint="The methods' own models come from the suite (their options).")
    judge = roles.get(RoleName.JUDGE)
    return None if judge is None or judge.off else load_role_backend(judge)


def _backend_options(backend: str, api_base: str | None, threads: int | None) -> dict:
    if backend.startswith("embedded"):
        threads = threads or int(os.environ.get("SPECGUARD_THREADS", "0")) or None
        return {"n_threads": threads} if threads else {}
    return {"api_base": api_base} if api_base else {}


def _print_summary(out_dir: Path) -> None:
    import json

    from .report import _fmt

    summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))

    table = Table(title=f"{summary['suite']} ({summary.get('backend')})")
    table.add_column("metric")
    for method in summary["methods"]:
        table.add_column(method)
    for metric in summary["metric_order"]:
        table.add_row(metric, *[_fmt(ms["metrics"].get(metric), metric)
                                for ms in summary["methods"].values()])
    console.print(table)


@app.command("report")
def report_cmd(
    runs: Annotated[list[Path], typer.Argument(help="One or more run directories.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.html and "
                                      "report.md.")] = Path("report"),
    title: Annotated[str | None, typer.Option("--title")] = None,
) -> None:
    """Write a self-contained HTML report and a Markdown summary; several runs compare side by
    side."""
    from .report import write_report

    html_path, md_path = write_report(list(runs), out, title)
    console.print(f"{html_path}\n{md_path}")


@app.command("datasets")
def datasets_cmd(
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
) -> None:
    """List the registered datasets, their subsets and whether their files are present."""
    from ..config import data_dir as resolve
    from specguard.data import dataset_names, get_spec

    root = resolve(data_dir)
    table = Table(title=f"datasets in {root}")
    for col in ("name", "subsets", "files present", "licence", "description"):
        table.add_column(col)
    for name in dataset_names():
        spec = get_spec(name)
        present = sum((root / f).is_file() for f in spec.files.values())
        table.add_row(name, ", ".join(spec.subsets), f"{present}/{len(spec.files)}",
                      spec.license + (" (NC)" if spec.non_commercial else ""), spec.description)
    console.print(table)


@app.command("suites")
def suites_cmd() -> None:
    """List the built-in suites."""
    from .suites import builtin_suites, load_suite

    for name in builtin_suites():
        s = load_suite(name)
        console.print(f"[bold]{name}[/]: {s.description}")


judge_app = typer.Typer(no_args_is_help=True, help="The trained answer judges: train, show.")
app.add_typer(judge_app, name="judge")


@judge_app.command("train")
def judge_train_cmd(
    task: Annotated[str, typer.Argument(help="refusal | harm")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Folder for <task>.json + <task>.npz (default: the shipped "
        "specguard/specs/judges).")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
    model_out: Annotated[bool, typer.Option(
        "--model-out/--no-model-out", help="Refusal: also score leave-one-model-out on the "
        "held-out XSTest completions (three more fits).")] = True,
) -> None:
    """Train a judge on the training parts, choose its configuration on validation, score it
    on the held-out parts (the string matcher in the same run), and write its card and weights.
    Encoder vectors are cached in ~/.cache/specguard/embeddings.sqlite."""
    from .judges.corpus import Task
    from .judges.train import save_artifact, train_judge
    from .judges.trained import shipped_dir

    try:
        kind = Task(task)
    except ValueError:
        raise typer.BadParameter("task is 'refusal' or 'harm'") from None
    art, head = train_judge(kind, root=data_dir, model_out=model_out,
                            progress=lambda m: err.print(m),
                            command=f"specguard eval judge train {task}")
    path = save_artifact(art, head, out or shipped_dir())
    h = art.headline
    console.print(f"{path}: {h['metric']}\n  {_pct(h['value'])}; baseline "
                  f"{h['baseline']['name']}: {_pct(h['baseline']['value'])}")


def _pct(est: dict | None) -> str:
    if not est or est.get("value") is None:
        return "—"
    return (f"{100 * est['value']:.1f}% [{100 * est['low']:.1f}%, {100 * est['high']:.1f}%] "
            f"(n={est['n']})")


@judge_app.command("show")
def judge_show_cmd() -> None:
    """The built-in judges and what their cards say about them."""
    from .judges import JudgeContext, build_judge, judge_names

    table = Table(title="judges")
    for col in ("name", "kind", "agreement with people", "description"):
        table.add_column(col)
    for name in judge_names():
        try:
            card = build_judge(name, JudgeContext()).card
        except SpecguardError as exc:
            table.add_row(name, "", "", f"(needs configuration: {exc})")
            continue
        table.add_row(name, card.kind, _pct(card.accuracy), card.description)
    console.print(table)


def main() -> None:
    try:
        app()
    except SpecguardError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
