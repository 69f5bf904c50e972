"""The runner: every (method, item, sample) of a suite, concurrently within a bound, each result
appended to records.jsonl as soon as it is judged, so an interrupted run resumes where it
stopped. A run directory holds config.json, records.jsonl and summary.json."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from .. import __version__
from ..errors import ConfigError, SpecguardError
from ..types import GenerationParams
from .judges import Judge, JudgeContext, JudgeInput, Judgement, build_judge
from .methods import Method, MethodContext, build_method, describe_method
from .scoring import compute_metrics, judge_stats
from .suites import EvalItem, Suite, build_items, import_plugins

CONFIG, RECORDS, SUMMARY = "config.json", "records.jsonl", "summary.json"
META = "meta.json"  # the judges' cards and the methods' descriptions, for reports


def check_metrics(suite: Suite) -> None:
    """Every metric is known and has a judge it can read (raises ConfigError otherwise)."""
    from .scoring import resolve_judge

    names = [j.name for j in suite.judges]
    for mc in suite.metrics:
        resolve_judge(mc, names)


def write_meta(out_dir: Path, judges: list[Judge], methods: dict[str, str]) -> None:
    meta = {"judges": {j.name: j.card.model_dump(mode="json") for j in judges},
            "methods": methods}
    (Path(out_dir) / META).write_text(json.dumps(meta, indent=2), encoding="utf-8")


class RunConfig(BaseModel):
    suite: dict[str, Any]
    suite_name: str
    fingerprint: str  # suite + backend + limit + items + shipped artifacts: a resume must match
    backend: str
    limit: int | None = None
    data_dir: str | None = None
    n_items: int
    specguard_version: str = __version__
    created: str


class RunResult(BaseModel):
    out_dir: str
    done_before: int  # records found in the cache
    computed: int  # records computed by this invocation
    errors: int
    seconds: float

    @property
    def records_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0


def record_key(method: str, item_key: str, sample: int) -> str:
    return f"{method}::{item_key}::{sample}"


def item_seed(suite_seed: int, key: str) -> int:
    digest = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    return (suite_seed * 1_000_003 + digest) % (2**31 - 1)


def read_records(out_dir: Path) -> dict[str, dict[str, Any]]:
    """The cache: finished records by key. A line cut short by an interrupt is dropped (and the
    file rewritten without it); errored records are dropped so that they are retried."""
    path = out_dir / RECORDS
    if not path.exists():
        return {}
    good: dict[str, dict[str, Any]] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    broken = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            broken += 1
            continue
        good[rec["key"]] = rec
    kept = {k: r for k, r in good.items() if not r.get("error")}
    if broken or len(kept) != len(good):
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept.values()), encoding="utf-8")
        os.replace(tmp, path)
    return kept


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} it/s" if speed else "-- it/s", style="progress.data.speed")


def _progress(console: Console | None, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console or Console(stderr=True), disable=not enabled, transient=False,
    )



def shipped_artifacts_fingerprint() -> str:
    """A hash of the trained artifacts shipped in specs/ (fast guard, judges, profile checker):
    a run started before a retraining is not resumed with records the new artifacts did not
    make. Only the weights count, so attaching figures to a card does not change it."""
    from importlib import resources

    root = Path(str(resources.files("specguard.specs")))
    h = hashlib.sha256()
    for path in sorted(root.glob("**/*")):
        if path.suffix in (".npz", ".onnx") and path.is_file():
            h.update(str(path.relative_to(root)).encode())
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


class Runner:
    def __init__(self, suite: Suite, backend: Any, *, backend_name: str, out_dir: str | Path,
                 limit: int | None = None, data_dir: str | os.PathLike | None = None,
                 concurrency: int | None = None, progress: bool = True,
                 console: Console | None = None, judge_backend: Any = None) -> None:
        self.suite = suite
        self.backend = backend
        self.backend_name = backend_name
        self.out_dir = Path(out_dir)
        self.limit = limit
        self.data_dir = data_dir
        self.concurrency = concurrency or suite.concurrency
        self.show_progress = progress
        self.console = console
        import_plugins(suite.plugins)
        # Everything that can fail on configuration fails here, before any model call: a
        # missing dataset, an unknown judge or metric, a judge that cannot run offline.
        self.items = build_items(suite, data_dir=data_dir)
        if limit is not None:
            self.items = self.items[:limit]
        check_metrics(suite)
        # Model judges ask the judge role's model (`--role judge=...`), else the run's backend.
        self.judges = [build_judge(jc.name, JudgeContext(backend=judge_backend or backend,
                                                         options=jc.options))
                       for jc in suite.judges]

    def _config(self) -> RunConfig:
        blob = json.dumps([self.suite.fingerprint(), self.backend_name, self.limit,
                           [i.key for i in self.items], shipped_artifacts_fingerprint()])
        return RunConfig(
            suite=self.suite.model_dump(mode="json"), suite_name=self.suite.name,
            fingerprint=hashlib.sha256(blob.encode()).hexdigest()[:16],
            backend=self.backend_name, limit=self.limit,
            data_dir=str(self.data_dir) if self.data_dir else None, n_items=len(self.items),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    def _prepare_dir(self) -> RunConfig:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        config = self._config()
        path = self.out_dir / CONFIG
        if path.exists():
            old = RunConfig.model_validate_json(path.read_text(encoding="utf-8"))
            if old.fingerprint != config.fingerprint:
                raise ConfigError(
                    f"{self.out_dir} holds a run of another configuration (suite, backend, "
                    f"limit or items differ: {old.suite_name}/{old.backend}/limit={old.limit}).",
                    hint="Resume with the same command, or write to a new --out directory.",
                )
            return old
        path.write_text(config.model_dump_json(indent=2), encoding="utf-8")
        return config

    def _params(self, key: str) -> GenerationParams:
        g = self.suite.generation
        return GenerationParams(max_tokens=g.max_tokens, temperature=g.temperature, top_p=g.top_p,
                                seed=item_seed(self.suite.seed, key), logprobs=g.logprobs)

    async def _one(self, label: str, method: Method, judges: list[Judge], item: EvalItem,
                   sample: int) -> dict[str, Any]:
        key = record_key(label, item.key, sample)
        params = self._params(f"{item.key}::{sample}")
        record: dict[str, Any] = {
            "key": key, "method": label, "sample": sample, "item": item.model_dump(mode="json"),
            "params": params.model_dump(mode="json", exclude_none=True),
        }
        try:
            out = await method.run(item, params)
        except SpecguardError as exc:
            record.update(error=f"{type(exc).__name__}: {exc}", answer=None)
            return record
        judgements: dict[str, Any] = {}
        inp = JudgeInput(prompt=item.prompt, request=item.request, answer=out.answer,
                         report=out.report)
        for judge in judges:
            j: Judgement = await judge.judge(inp)
            judgements[judge.name] = j.model_dump(mode="json")
        record.update(
            messages=[m.model_dump(mode="json") for m in out.messages], answer=out.answer,
            action=out.action, report=out.report, cost=out.cost.model_dump(),
            token_logprobs=out.token_logprobs, judgements=judgements, error=None,
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        return record

    async def run(self) -> RunResult:
        methods: dict[str, Method] = {
            mc.display: build_method(mc.name, MethodContext(backend=self.backend,
                                                            options=mc.options))
            for mc in self.suite.methods
        }
        judges = self.judges
        self.method_descriptions = {label: describe_method(m) for label, m in methods.items()}
        try:  # after methods and judges are built: a config error leaves no folder behind
            self._prepare_dir()
        except ConfigError:
            for method in methods.values():
                await method.aclose()
            raise
        write_meta(self.out_dir, judges, self.method_descriptions)
        done = read_records(self.out_dir)
        samples = self.suite.generation.samples
        if self.suite.order == "method":
            # Method-major: no method reuses the prompt another just left in a shared model's
            # cache, so per-item times are each method's own.
            jobs = [(label, item, s) for label in methods for item in self.items
                    for s in range(samples)]
        else:
            # Item-major: an interrupted run has every method's answer for the same items.
            jobs = [(label, item, s) for item in self.items for s in range(samples)
                    for label in methods]
        sem = asyncio.Semaphore(self.concurrency)
        errors = 0
        computed = 0
        start = time.perf_counter()
        path = self.out_dir / RECORDS
        with _progress(self.console, self.show_progress) as bar, path.open(
                "a", encoding="utf-8") as sink:
            task_ids = {}
            for label in methods:
                total = len(self.items) * samples
                finished = sum(1 for k in done if k.startswith(f"{label}::"))
                task_ids[label] = bar.add_task(label, total=total, completed=finished)

            async def work(label: str, item: EvalItem, sample: int) -> None:
                nonlocal errors, computed
                async with sem:
                    rec = await self._one(label, methods[label], judges, item, sample)
                # One event-loop step from here to flush: lines never interleave.
                sink.write(json.dumps(rec) + "\n")
                sink.flush()
                computed += 1
                if rec.get("error"):
                    errors += 1
                bar.advance(task_ids[label])

            pending = [work(lbl, it, s) for lbl, it, s in jobs
                       if record_key(lbl, it.key, s) not in done]
            try:
                await asyncio.gather(*pending)
            finally:
                for method in methods.values():
                    await method.aclose()
        seconds = time.perf_counter() - start
        write_summary(self.out_dir, self.suite)
        return RunResult(out_dir=str(self.out_dir), done_before=len(done), computed=computed,
                         errors=errors, seconds=seconds)


def _data_description(suite: Suite, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per suite entry: dataset, subset, part, filters and transform, and the items run."""
    items: dict[tuple, set[str]] = {}
    for r in records:
        it = r["item"]
        items.setdefault((it["group"], it["dataset"]), set()).add(it["key"])
    out = []
    for e in suite.datasets:
        n = len(items.get((e.display, e.name), ())) if e.name else len(
            set().union(*[v for (g, _), v in items.items() if g == e.display] or [set()]))
        out.append({"group": e.display, "dataset": e.name or e.custom, "subset": e.subset,
                    "part": e.part, "where": e.where or None,
                    "transform": e.transform.name if e.transform else None,
                    "items_in_group": n})
    return out


def summarize(suite: Suite, records: list[dict[str, Any]], *, config: RunConfig | None = None,
              meta: dict[str, Any] | None = None) -> dict[str, Any]:
    judges = [j.name for j in suite.judges]
    n_boot, seed = suite.bootstrap, suite.seed
    out: dict[str, Any] = {
        "suite": suite.name, "description": suite.description,
        "backend": config.backend if config else None,
        "created": config.created if config else None,
        "n_items": config.n_items if config else None,
        # What a finished run holds: items x samples per method; fewer means a partial run.
        "n_expected": (config.n_items * suite.generation.samples * len(suite.methods)
                       if config else None),
        "n_records": len(records),
        "data": _data_description(suite, records),
        "judges": (meta or {}).get("judges", {}),
        "metric_order": [], "metric_help": {}, "methods": {},
    }
    from .scoring import METRICS, metric_id

    for mc in suite.metrics:
        out["metric_order"].append(metric_id(mc))
        out["metric_help"][metric_id(mc)] = METRICS[mc.name][2]
    for mc in suite.methods:
        label = mc.display
        recs = [r for r in records if r["method"] == label]
        ok = [r for r in recs if not r.get("error")]
        by_group: dict[str, list] = {}
        by_cat: dict[str, list] = {}
        for r in ok:
            by_group.setdefault(r["item"]["group"], []).append(r)
            for c in r["item"].get("categories") or []:
                by_cat.setdefault(c, []).append(r)

        def est(rs):
            return {k: v.model_dump() for k, v in compute_metrics(
                rs, suite.metrics, judges, n_boot=n_boot, seed=seed).items()
                if v.value is not None}

        cost = Counter()
        for r in ok:
            for k, v in (r.get("cost") or {}).items():
                cost[k] += v
        out["methods"][label] = {
            "method": mc.name, "options": mc.options,
            "description": (meta or {}).get("methods", {}).get(label, mc.name),
            "n_records": len(recs), "errors": len(recs) - len(ok),
            "metrics": est(ok),
            "groups": {g: est(rs) for g, rs in sorted(by_group.items())},
            "categories": {c: est(rs) for c, rs in sorted(by_cat.items())},
            "judges": judge_stats(ok, judges),
            "actions": dict(Counter(r["action"] for r in ok if r.get("action"))),
            "cost": {
                "model_calls": int(cost["model_calls"]),
                "prompt_tokens": int(cost["prompt_tokens"]),
                "completion_tokens": int(cost["completion_tokens"]),
                "seconds": round(float(cost["seconds"]), 3),
                "per_item_seconds": round(float(cost["seconds"]) / len(ok), 3) if ok else None,
                "per_item_model_calls": round(cost["model_calls"] / len(ok), 3) if ok else None,
            },
        }
    return out


def load_run(out_dir: str | Path) -> tuple[RunConfig, Suite, list[dict[str, Any]]]:
    folder = Path(out_dir)
    if not (folder / CONFIG).is_file():
        raise ConfigError(f"{folder} is not a run directory (no {CONFIG}).",
                          hint="Pass the folder `specguard eval run` wrote.")
    config = RunConfig.model_validate_json((folder / CONFIG).read_text(encoding="utf-8"))
    suite = Suite.model_validate(config.suite)
    records = []
    if (folder / RECORDS).exists():
        for line in (folder / RECORDS).read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return config, suite, records


def write_summary(out_dir: str | Path, suite: Suite | None = None) -> dict[str, Any]:
    config, stored_suite, records = load_run(out_dir)
    meta_path = Path(out_dir) / META
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else None
    summary = summarize(suite or stored_suite, records, config=config, meta=meta)
    (Path(out_dir) / SUMMARY).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


async def run_suite(suite: Suite, backend: Any, *, backend_name: str, out_dir: str | Path,
                    **kwargs: Any) -> RunResult:
    return await Runner(suite, backend, backend_name=backend_name, out_dir=out_dir,
                        **kwargs).run()
