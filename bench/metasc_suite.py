"""The MetaSC suite (evals/suites/metasc.yaml) through the eval harness, and its report.

    python bench/metasc_suite.py                                   # embedded model, subset
    python bench/metasc_suite.py --backend litellm:openai/gpt-4o-mini --harmful 52 --benign 26

Runs the paper's five methods (system prompt only, static self-critique, MetaSC-10,
MetaSC-full, gated MetaSC) over the AdvBench 10% split (seed 0) wrapped round-robin in
in-the-wild jailbreak templates, interleaved with XSTest safe prompts, and writes a Markdown
report: share of safe answers, over-refusal, cost per request, and each method's spec at the
end. The run directory resumes (each method keeps its spec in a SQLite file there).
All methods run in one process on one backend, so their costs compare within the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import specguard.agents.metasc_methods  # noqa: F401,E402  (registers the `metasc` method)
from specguard.backends import load_backend  # noqa: E402
from specguard.evals.runner import Runner, load_run, write_summary  # noqa: E402
from specguard.evals.suites import load_suite  # noqa: E402
from specguard.spec import SpecStatus  # noqa: E402
from specguard.store import Store  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def pick(items, harmful: int, benign: int):
    adv = [i for i in items if i.group == "advbench_jailbreak"][:harmful]
    safe = [i for i in items if i.group == "xstest_safe"][:benign]
    out, a, b = [], iter(adv), iter(safe)
    ratio = max(1, round(len(adv) / max(len(safe), 1)))
    while True:  # keep the stream mixed: `ratio` harmful items, then one safe item
        chunk = [x for x in (next(a, None) for _ in range(ratio)) if x is not None]
        s = next(b, None)
        if not chunk and s is None:
            return out
        out.extend(chunk + ([s] if s is not None else []))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="embedded")
    ap.add_argument("--api-base", default=None)
    ap.add_argument("--threads", type=int, default=1,
                    help="llama.cpp threads for the embedded model (1 is fastest on a busy CPU)")
    ap.add_argument("--harmful", type=int, default=52, help="AdvBench items (of 52)")
    ap.add_argument("--benign", type=int, default=26, help="XSTest safe items (of 26)")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--meta-max-tokens", type=int, default=64, help="tokens for the meta-critic")
    ap.add_argument("--methods", default="", help="comma-separated labels (default: all five)")
    ap.add_argument("--out", default=None, help="run directory (default runs/metasc-<backend>)")
    ap.add_argument("--report", default=str(ROOT / "docs/results/metasc.md"))
    ap.add_argument("--note", default="", help="a paragraph added to the report (conditions)")
    args = ap.parse_args()

    suite = load_suite("metasc")
    suite.generation.max_tokens = args.max_tokens
    if args.methods:
        keep = set(args.methods.split(","))
        suite.methods = [m for m in suite.methods if m.display in keep]
    slug = args.backend.replace("/", "_").replace(":", "_")
    out = Path(args.out or ROOT / "runs" / f"metasc-{slug}")
    out.mkdir(parents=True, exist_ok=True)
    for m in suite.methods:
        m.options = {**m.options, "store": str(out / f"spec-{m.display}.db")}
        if m.options.get("mode") not in ("system_prompt", "static"):
            m.options["meta_max_tokens"] = args.meta_max_tokens
    options = {"api_base": args.api_base} if args.api_base else {}
    if args.backend.startswith("embedded"):
        options["n_threads"] = args.threads
    backend = load_backend(args.backend, **options)
    runner = Runner(suite, backend, backend_name=args.backend, out_dir=out)
    runner.items = pick(runner.items, args.harmful, args.benign)
    start = time.perf_counter()
    result = asyncio.run(_run(runner, backend))
    wall = time.perf_counter() - start
    summary = write_summary(out, suite)
    report = render(summary, suite, out, args, wall, result)
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(report, encoding="utf-8")
    print(report)
    return 0


async def _run(runner, backend):
    try:
        return await runner.run()
    finally:
        await backend.aclose()


def _pct(est) -> str:
    if not est or est.get("value") is None:
        return "-"
    lo, hi = est.get("low"), est.get("high")
    ci = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
    return f"{est['value']:.2f}{ci}"


def render(summary, suite, out: Path, args, wall: float, result) -> str:
    _, _, records = load_run(out)
    argv, skip = [], False
    for a in sys.argv[1:]:  # the reproduce line leaves out where the report goes and its note
        if skip or a in ("--note", "--report"):
            skip = not skip
            continue
        argv.append(a)
    cmd = "python bench/metasc_suite.py " + " ".join(shlex.quote(a) for a in argv)
    n_h = sum(1 for i in {r["item"]["key"]: r["item"] for r in records}.values() if i["harmful"])
    n_b = len({r["item"]["key"] for r in records}) - n_h
    lines = [
        "# MetaSC suite: results",
        "",
        f"Backend `{args.backend}`; {n_h} AdvBench jailbreak prompts and {n_b} XSTest safe "
        f"prompts per method (the suite has 52 + 26), max {args.max_tokens} tokens per "
        f"generation, greedy. Judge: `refusal_match` (string match; a refused harmful prompt "
        f"counts as safe, a refused safe prompt as over-refusal). 95% bootstrap intervals. "
        f"Wall time of this run: {wall / 60:.1f} min ({result.computed} items computed, "
        f"{result.done_before} resumed).",
        "",
        f"Reproduce: `{cmd}`",
        "",
        "| method | safe share (AdvBench+jailbreak) | over-refusal (XSTest safe) | model calls / request | tokens / request | seconds / request |",
        "|---|---|---|---|---|---|",
    ]
    for label, m in summary["methods"].items():
        met = m["metrics"]
        g = m.get("groups", {})
        safety = g.get("advbench_jailbreak", {}).get("safety_rate@refusal_match") or met.get("safety_rate@refusal_match")
        over = g.get("xstest_safe", {}).get("over_refusal_rate@refusal_match") or met.get("over_refusal_rate@refusal_match")
        c = m["cost"]
        n = max(m["n_records"] - m["errors"], 1)
        tokens = (c["prompt_tokens"] + c["completion_tokens"]) / n
        lines.append(f"| {label} | {_pct(safety)} | {_pct(over)} | {c['per_item_model_calls']} | "
                     f"{tokens:.0f} | {c['per_item_seconds']} |")
    lines += ["", "## The spec each method ended with", ""]
    for m in suite.methods:
        db = out / f"spec-{m.display}.db"
        if m.options.get("mode") == "system_prompt" or not db.exists():
            continue
        store = Store(str(db), seed_builtin=False)
        hist = [s for s in store.specs.history("metasc", f"tenant:metasc-{m.options['mode']}")]
        store.close()
        if not hist:
            continue
        active = [s for s in hist if s.status is SpecStatus.ACTIVE]
        rejected = [s for s in hist if s.status is SpecStatus.REJECTED]
        learned = len(hist) - 1
        recs = [r for r in records if r["method"] == m.display and r.get("report")]
        dropped = sum(1 for r in recs if (r["report"].get("update") or {}).get("status") == "dropped")
        lines.append(f"**{m.display}**: {learned} candidate versions ({len(rejected)} rejected by "
                     f"the gate), {dropped} proposals dropped by the meta-critic's filters; "
                     f"active v{active[0].version if active else '?'}:")
        lines += ["", "```", active[0].text if active else "", "```", ""]
        for s in rejected[:3]:
            lines.append(f"- rejected v{s.version}: {s.metrics.get('rejected_because', '')}")
        if rejected:
            lines.append("")
    if args.note:
        lines += ["## Conditions and limits", "", args.note, ""]
    lines.append(f"Raw records: `{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}/records.jsonl` (not committed).")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
