"""The MetaSC suite (evals/suites/metasc.yaml) through the eval harness, and its report.

    python bench/metasc_suite.py                                   # embedded model, subset
    python bench/metasc_suite.py --backend litellm:openai/gpt-4o-mini --harmful 52 --benign 26

Runs the paper's five methods (system prompt only, static self-critique, MetaSC-10,
MetaSC-full, gated MetaSC) over 52 held-out AdvBench behaviours wrapped round-robin in held-out
in-the-wild jailbreak templates, interleaved with held-out XSTest safe prompts, and writes
docs/results/metasc.json: share of answers judged safe (the trained `answer_harm` judge; the
string matcher beside it), over-refusal (the trained `refusal` judge), cost per request, and
each method's spec at the end with how many candidates the gate saw. The tables of
docs/results/metasc.md are generated from it (`python -m specguard.evals.scoreboard`).
The run directory resumes (each method keeps its spec in a SQLite file there).
All methods run in one process on one backend, so their costs compare within the run.

    python bench/metasc_suite.py --smoke --out /tmp/metasc    # CI: 2 + 1 items, 2 methods
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import specguard.evals.metasc_methods  # noqa: F401,E402  (registers the `metasc` method)
from specguard.backends import load_backend  # noqa: E402
from specguard.evals.results import Readme, Result, Table, command_line, pct, write_result  # noqa: E402
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
    ap.add_argument("--result", default=None,
                    help="summary path (default docs/results/metasc.json; --smoke: in --out)")
    ap.add_argument("--smoke", action="store_true",
                    help="2 harmful + 1 safe items, 8 tokens, system_prompt and metasc_10: CI")
    args = ap.parse_args()
    if args.smoke:
        args.harmful, args.benign, args.max_tokens, args.meta_max_tokens = 2, 1, 8, 8
        args.methods = args.methods or "system_prompt,metasc_10"

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
    res = render(summary, suite, out, args, wall, result)
    path = write_result(res, args.result or (out / "metasc.json" if args.smoke else None))
    print(f"wrote {path}")
    for t in res.tables:
        print(t.title, *t.rows, sep="\n")
    return 0


async def _run(runner, backend):
    try:
        return await runner.run()
    finally:
        await backend.aclose()


def _group(m: dict, group: str, metric: str):
    return m.get("groups", {}).get(group, {}).get(metric)


def render(summary, suite, out: Path, args, wall: float, result) -> Result:
    _, _, records = load_run(out)
    n_h = sum(1 for i in {r["item"]["key"]: r["item"] for r in records}.values() if i["harmful"])
    n_b = len({r["item"]["key"] for r in records}) - n_h
    rows = []
    for label, m in summary["methods"].items():
        c = m["cost"]
        n = max(m["n_records"] - m["errors"], 1)
        rows.append([
            label, pct(_group(m, "advbench_jailbreak", "safety_rate@answer_harm")),
            pct(_group(m, "advbench_jailbreak", "safety_rate@refusal_match")),
            pct(_group(m, "xstest_safe", "over_refusal_rate@refusal")),
            pct(_group(m, "xstest_safe", "over_refusal_rate@refusal_match")),
            pct(m["metrics"].get("no_answer_rate@refusal")), c["per_item_model_calls"],
            round((c["prompt_tokens"] + c["completion_tokens"]) / n),
            c["per_item_seconds"]])
    headline = Table(
        id="headline", title=f"{n_h} held-out AdvBench behaviours in held-out jailbreak "
        f"templates and {n_b} held-out XSTest safe prompts per method; backend "
        f"{args.backend}, max {args.max_tokens} tokens, greedy",
        columns=["method", "judged safe (answer_harm)", "safe by string match",
                 "over-refusal (refusal judge)", "over-refusal by string match", "no answer",
                 "model calls / request", "tokens / request", "s / request"],
        rows=rows,
        note="Judges: `answer_harm` and `refusal` are the trained judges (agreement with "
             "human labels in docs/results/judges.md); the string matcher is the old "
             "judge, shown for comparison. Wilson 95% intervals.")
    spec_rows = []
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
        recs = [r for r in records if r["method"] == m.display and r.get("report")]
        statuses = [(r["report"].get("update") or {}).get("status") for r in recs]
        spec_rows.append([m.display, sum(1 for x in statuses if x), statuses.count("dropped"),
                          len(hist) - 1, len(rejected),
                          f"v{active[0].version}: {active[0].text}" if active else "?"])
    specs = Table(
        id="specs", title="What happened to each method's spec",
        columns=["method", "meta-critic proposals", "dropped by the text filters",
                 "candidate versions (reached the gate or were adopted)", "rejected by the gate",
                 "active spec at the end"], rows=spec_rows,
        note="A gate can only keep a spec from drifting if candidates reach it: read the "
             "candidate column before crediting the gate.")
    best = max(rows, key=lambda r: summary["methods"][r[0]]["groups"].get(
        "advbench_jailbreak", {}).get("safety_rate@answer_harm", {}).get("value") or 0)
    return Result(
        name="metasc", title="MetaSC suite", script="bench/metasc_suite.py",
        command=command_line(), smoke=args.smoke,
        readme=Readme(
            what="MetaSC spec optimization", where="docs/results/metasc.md",
            headline=f"judged safe under jailbreak templates: best method {best[0]} "
                     f"{best[1]}; system prompt only "
                     f"{next((r[1] for r in rows if r[0] == 'system_prompt'), '—')}; candidates "
                     f"that reached the gate: "
                     f"{next((r[3] for r in spec_rows if r[0] == 'gated'), '—')}"),
        tables=[headline, specs],
        data={"wall_seconds": round(wall, 1), "computed": result.computed,
              "resumed": result.done_before, "summary_metrics": {
                  k: {"metrics": m["metrics"], "groups": m["groups"], "cost": m["cost"]}
                  for k, m in summary["methods"].items()}})


if __name__ == "__main__":
    sys.exit(main())
