"""Published figures as data: every bench script and every published suite run writes one JSON
summary into docs/results/ (`<name>.json`), and `python -m specguard.evals.scoreboard` renders
the README's "Measured results" table and the tables of docs/results/*.md from them.

A summary holds numbers, counts and the command that produced them, never dataset rows or model
outputs (several sets are non-commercial: their texts are never committed).

    from specguard.evals.results import Result, Table, write_result
    write_result(Result(name="proxy_overhead", title=..., script="bench/proxy_overhead.py",
                        command="python bench/proxy_overhead.py", readme=Readme(...),
                        tables=[Table(id="latency", columns=[...], rows=[[...]])]), out)
"""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

RESULTS_DIR = Path("docs") / "results"
FORMAT = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Table(_Strict):
    id: str  # a page embeds it as <!-- scoreboard:<result name>:<id> -->
    title: str = ""
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""


class Readme(_Strict):
    """The result's row in README.md's "Measured results" table."""

    what: str
    where: str  # the page (or folder) with the details
    headline: str  # one sentence with the numbers, written by the script from its numbers


class Result(_Strict):
    format: int = FORMAT
    name: str  # the file name: docs/results/<name>.json
    title: str
    script: str  # the committed script (or suite) that produced it
    command: str  # the exact command line
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    machine: dict[str, Any] = Field(default_factory=lambda: machine())
    smoke: bool = False  # a tiny CI run: its numbers mean nothing
    readme: Readme | None = None
    tables: list[Table] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)  # the raw numbers behind the tables

    def table(self, table_id: str) -> Table:
        for t in self.tables:
            if t.id == table_id:
                return t
        raise KeyError(f"{self.name} has no table {table_id!r} (it has "
                       f"{[t.id for t in self.tables]})")


def machine() -> dict[str, Any]:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"platform": platform.platform(terse=True), "python": sys.version.split()[0],
            "cpus": os.cpu_count(), "load_1min": round(load, 2) if load is not None else None}


def command_line() -> str:
    """How this process was started, as a reader would retype it."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(Path.cwd())
    except ValueError:
        pass
    return " ".join(["python", str(script), *sys.argv[1:]])


def write_result(result: Result, out: str | os.PathLike | None = None) -> Path:
    """Write `result` to `out` (a file, or a folder for <name>.json; default docs/results/)."""
    path = Path(out) if out else RESULTS_DIR / f"{result.name}.json"
    if path.suffix != ".json":
        path = path / f"{result.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(result.model_dump_json(indent=1) + "\n", encoding="utf-8")
    return path


def read_result(path: str | os.PathLike) -> Result:
    return Result.model_validate_json(Path(path).read_text(encoding="utf-8"))


def pct(est: dict[str, Any] | None, digits: int = 1) -> str:
    """"83.3% [72.1%, 90.6%] (n=48)" from an Estimate-like dict; "—" when undefined."""
    if not est or est.get("value") is None:
        return "—"
    out = f"{100 * est['value']:.{digits}f}%"
    if est.get("low") is not None and est.get("high") is not None:
        out += f" [{100 * est['low']:.{digits}f}%, {100 * est['high']:.{digits}f}%]"
    if est.get("n") is not None:
        out += f" (n={est['n']}"
        out += f", {est['excluded']} unparsed left out)" if est.get("excluded") else ")"
    return out


# --- suite runs -----------------------------------------------------------------------------


def run_result(run_dir: str | os.PathLike, *, name: str | None = None,
               command: str | None = None, readme: Readme | None = None,
               smoke: bool = False) -> Result:
    """A suite run's published summary: its headline metrics per method, per group, what it
    measured (data, methods and policy, judges and their agreement with people)."""
    from .report import _fmt, provenance  # _fmt: rates as percentages, others as numbers
    from .runner import load_run, write_summary

    summary = write_summary(run_dir)
    config, suite, _ = load_run(run_dir)
    methods = list(summary["methods"])
    metrics = summary["metric_order"]
    headline = Table(
        id="headline", title="Headline metrics", columns=["metric", *methods],
        rows=[[m, *[_fmt(summary["methods"][k]["metrics"].get(m), m) for k in methods]]
              for m in metrics],
        note="value [95% interval: Wilson for proportions, bootstrap otherwise] (n)")
    groups = sorted({g for k in methods for g in summary["methods"][k]["groups"]})
    by_group = Table(
        id="groups", title="By group", columns=["group", "metric", *methods],
        rows=[[g, m, *[_fmt(summary["methods"][k]["groups"].get(g, {}).get(m), m)
                       for k in methods]]
              for g in groups for m in metrics
              if any(summary["methods"][k]["groups"].get(g, {}).get(m) for k in methods)])
    categories = sorted({c for k in methods for c in summary["methods"][k].get("categories", {})})
    by_category = Table(
        id="categories", title="By category (the dataset's own categories, e.g. a risk scenario)",
        columns=["category", "metric", *methods],
        rows=[[c, m, *[_fmt(summary["methods"][k].get("categories", {}).get(c, {}).get(m), m)
                       for k in methods]]
              for c in categories for m in metrics
              if any(summary["methods"][k].get("categories", {}).get(c, {}).get(m) for k in methods)])
    prov = provenance([(Path(run_dir).name, summary)])
    from .report import _PROV_HEAD

    cost = Table(
        id="cost", title="Cost", columns=["method", "records", "errors", "model calls",
                                          "tokens", "s / item"],
        rows=[[k, ms["n_records"], ms["errors"], ms["cost"]["model_calls"],
               ms["cost"]["prompt_tokens"] + ms["cost"]["completion_tokens"],
               ms["cost"]["per_item_seconds"]] for k, ms in summary["methods"].items()])

    tables = [headline, by_group, by_category,
              Table(id="data", title="Data", columns=_PROV_HEAD["data"], rows=prov["data"]),
              Table(id="methods", title="Methods", columns=_PROV_HEAD["methods"],
                    rows=prov["methods"]),
              Table(id="judges", title="Judges", columns=_PROV_HEAD["judges"],
                    rows=prov["judges"]),
              cost]
    # A suite whose items carry no categories (or groups) has no such table: an empty one
    # would read as "measured, nothing found".
    tables = [t for t in tables if t.rows]
    keep = {k: summary[k] for k in ("suite", "backend", "created", "n_items", "n_expected",
                                   "n_records", "data", "judges", "metric_order")}
    keep["methods"] = summary["methods"]
    readme = readme or suite_readme(name or suite.name, summary)
    return Result(
        name=name or suite.name, title=f"Suite {suite.name} on {config.backend}",
        script=f"specguard eval run {suite.name}",
        command=command or f"specguard eval run {suite.name} --backend {config.backend}"
        + (f" --limit {config.limit}" if config.limit else "") + " --publish",
        readme=readme, tables=tables, data={"summary": keep}, smoke=smoke)


# Where each built-in suite's page is, and what its README row is called.
SUITE_PAGES = {
    "refusal": ("refusal suite, raw vs guarded (embedded model)", "docs/results/refusal.md"),
    "guard_fast": ("guard fast tier on every held-out item", "docs/results/guard.md"),
    "guard": ("guard: fast tier, deliberative tier, escalation", "docs/results/guard.md"),
    "metasc": ("MetaSC spec optimization", "docs/results/metasc.md"),
    "detox": ("Goodtriever detoxified decoding", "docs/results/detox.md"),
    "detox_confirm": ("Goodtriever, the other held-out prompts",
                      "docs/results/detox.md"),
    "usafebench": ("U-SafeBench, per-user safety", "docs/results/usafebench.md"),
    "usafebench_at_risk": ("U-SafeBench benign requests from at-risk users",
                           "docs/results/usafebench.md"),
}


def suite_readme(name: str, summary: dict[str, Any]) -> Readme:
    """A suite's README row: each method's first two metrics, with intervals."""
    what, where = SUITE_PAGES.get(name, (f"suite {name}", f"docs/results/{name}.md"))
    metrics = summary["metric_order"][:2]
    parts = []
    for label, ms in summary["methods"].items():
        vals = [f"{m.split('@')[0].replace('_', ' ')} {pct(ms['metrics'].get(m))}"
                for m in metrics if ms["metrics"].get(m)]
        parts.append(f"{label}: " + ", ".join(vals))
    return Readme(what=what, where=where, headline="; ".join(parts) + f" ({summary['backend']})")
