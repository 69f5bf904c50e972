"""The guard's eval suite on held-out data: precision, recall, F1 and AUPRC per evaluation set
for the fast tier alone, the deliberative tier alone (the embedded model; it is a poor judge)
and the escalated combination (SafeRoute's band on the fast tier's score), with ms per verdict
and the share escalated. Metrics come from specguard.evals.metrics.

    python bench/guard_eval.py [--per-group 24] [--out docs/results/guard.md]

The deliberative tier is slow on a shared 2-core CPU, so it runs on a hash-chosen, label-
balanced subsample of each held-out set (--per-group items); the fast tier is reported on the
whole held-out set and on the same subsample. Other processes may load the CPU while this
measures: the ms columns are this run's, not the machine's best.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import time
from pathlib import Path

from specguard.guard import CheckRequest, DeliberativeChecker, Stage, load_fast_checker
from specguard.guard.corpus import input_examples
from specguard.guard.tiered import confident, decide
from specguard.guard.train import eval_groups, group_metrics
from specguard.policy import CheckSettings
from specguard.types import user


def _h(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def subsample(examples, idx, n):
    pos = sorted((i for i in idx if examples[i].harmful), key=lambda i: _h(examples[i].text))
    neg = sorted((i for i in idx if not examples[i].harmful), key=lambda i: _h(examples[i].text))
    k = n // 2
    take = pos[:k] + neg[: n - min(k, len(pos))]
    return sorted(take)


def _score(decision_or_verdict, label_unsafe: bool) -> float:
    s = decision_or_verdict.score
    return float(s) if s is not None else (1.0 if label_unsafe else 0.0)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-group", type=int, default=24)
    ap.add_argument("--out", default="docs/results/guard.md")
    ap.add_argument("--json", default="runs/guard_eval.json")
    args = ap.parse_args()
    settings = CheckSettings()  # default policy: threshold 0.5, band (0.2, 0.8), fail closed

    from specguard.backends.embedded import EmbeddedBackend

    backend = EmbeddedBackend()
    await backend.load()
    fast = load_fast_checker(backend)
    if fast is None:
        raise SystemExit("no fast-tier artifact shipped in specs/guard/")
    delib = DeliberativeChecker(backend)  # ThinkGuard format, JSON schema, label-token score

    examples = input_examples()
    groups = eval_groups(examples)
    test_idx = sorted({i for idx in groups.values() for i in idx})
    reqs = {i: CheckRequest(stage=Stage.INPUT, messages=[user(examples[i].text)]) for i in test_idx}

    # Fast tier on every held-out item, batched; then one at a time on a slice for latency.
    t0 = time.perf_counter()
    fv = dict(zip(test_idx, await fast.check_many([reqs[i] for i in test_idx]), strict=True))
    fast_batched_ms = (time.perf_counter() - t0) * 1000 / len(test_idx)
    single = []
    for i in test_idx[:100]:
        t = time.perf_counter()
        await fast.check(reqs[i])
        single.append((time.perf_counter() - t) * 1000)
    fast_single_ms = statistics.median(single)
    print(f"fast tier: {len(test_idx)} held-out prompts, {fast_batched_ms:.2f} ms/verdict batched, "
          f"{fast_single_ms:.2f} ms single", flush=True)

    # Deliberative tier on a balanced subsample of each group (label only: the score is the
    # label token's probability; categories and explanation are not needed for the metrics).
    sub = {g: subsample(examples, idx, args.per_group) for g, idx in groups.items()}
    dv: dict[int, object] = {}
    d_ms = []
    for i in sorted({i for idx in sub.values() for i in idx}):
        v = await delib.check(reqs[i], label_only=True)
        dv[i] = v
        d_ms.append(v.latency_ms)
        print(f"  deliberative {len(dv)}: {v.label.value} score={v.score} {v.latency_ms:.0f} ms", flush=True)
    full_ms = []
    for i in sorted(dv)[:3]:
        full_ms.append((await delib.check(reqs[i])).latency_ms)

    rows = []
    for g, idx in groups.items():
        y = [examples[i].harmful for i in idx]
        fd = [decide(fv[i], [fv[i]], settings, escalated=False) for i in idx]
        rows.append(_row(g, "fast (all held-out)", y, fd, fv, idx,
                         escalated=sum(not confident(fv[i], settings) for i in idx) / len(idx)))
        s = sub[g]
        ys = [examples[i].harmful for i in s]
        rows.append(_row(g, "fast (subsample)", ys,
                         [decide(fv[i], [fv[i]], settings, escalated=False) for i in s], fv, s))
        dd = [decide(dv[i], [dv[i]], settings, escalated=False) for i in s]
        rows.append(_row(g, "deliberative (subsample)", ys, dd, dv, s, undecided=sum(d.undecided for d in dd)))
        comb, esc = [], 0
        for i in s:
            if confident(fv[i], settings):
                comb.append(decide(fv[i], [fv[i]], settings, escalated=False))
            else:
                esc += 1
                comb.append(decide(dv[i], [fv[i], dv[i]], settings, escalated=True))
        rows.append(_row(g, "escalated (subsample)", ys, comb, None, s, escalated=esc / len(s)))

    latency = {
        "fast_ms_per_verdict_batched": round(fast_batched_ms, 2),
        "fast_ms_per_verdict_single_median": round(fast_single_ms, 2),
        "deliberative_label_only_ms_median": round(statistics.median(d_ms), 1),
        "deliberative_full_ms_median": round(statistics.median(full_ms), 1),
        "n_fast": len(test_idx),
        "n_deliberative": len(dv),
    }
    escalated_all = sum(not confident(fv[i], settings) for i in test_idx) / len(test_idx)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"rows": rows, "latency": latency,
                                           "escalated_all": escalated_all}, indent=2))
    md = _markdown(rows, latency, escalated_all, fast.artifact.record, args.per_group)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(md)
    print(md)


def _row(group, tier, y, decisions, verdicts, idx, escalated=None, undecided=None):
    pred_scores = []
    for d, i in zip(decisions, idx, strict=True):
        src = verdicts[i] if verdicts is not None else d
        pred_scores.append(_score(src, d.blocked))
    m = group_metrics(y, pred_scores)
    # F1 etc. from the policy's decisions (they apply threshold and on_undecided), AUPRC from scores.
    from specguard.evals import metrics as M

    pred = [d.blocked for d in decisions]
    m.update(precision=M.precision(y, pred), recall=M.recall(y, pred), f1=M.f1(y, pred))
    benign = [p for p, t in zip(pred, y, strict=True) if not t]
    m["benign_flagged_rate"] = M.over_refusal_rate(benign) if benign else float("nan")
    m.update(group=group, tier=tier, escalated=escalated, undecided=undecided)
    return m


def _f(x, pct=False):
    if x is None:
        return "-"
    if isinstance(x, float) and x != x:
        return "n/a"
    return f"{x:.0%}" if pct else f"{x:.3f}"


def _markdown(rows, latency, escalated_all, record, per_group) -> str:
    lines = [
        "# Guard: held-out results",
        "",
        "Generated by `python bench/guard_eval.py` (default policy: threshold 0.5, escalation band "
        "[0.2, 0.8], fail closed). Held-out = the test half of each evaluation set "
        "(deterministic hash split, see runtime/guard/corpus.py); nothing here was trained on. "
        f"Fast tier: the shipped `{record.get('label')}` artifact. Deliberative tier: the "
        "embedded SmolLM2-135M with the ThinkGuard-format prompt, JSON-schema constrained, score = "
        "label-token probability; it runs on a label-balanced subsample "
        f"({per_group} per set) because it is slow on this 2-core CPU. `benign flagged` = share "
        "of benign items flagged (for XSTest: its safe look-alike prompts, i.e. over-refusal).",
        "",
        "| set | tier | n | P | R | F1 | AUPRC | benign flagged | escalated |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['group']} | {r['tier']} | {r['n']} | {_f(r['precision'])} | {_f(r['recall'])} | "
            f"{_f(r['f1'])} | {_f(r['auprc'])} | {_f(r['benign_flagged_rate'], True)} | "
            f"{_f(r['escalated'], True)} |"
        )
    lines += [
        "",
        f"Share escalated over all {latency['n_fast']} held-out prompts at the default band: "
        f"{escalated_all:.1%}.",
        "",
        "| latency | ms per verdict |",
        "|---|---|",
        f"| fast tier, batched ({latency['n_fast']} prompts in one call) | {latency['fast_ms_per_verdict_batched']} |",
        f"| fast tier, one prompt at a time (median) | {latency['fast_ms_per_verdict_single_median']} |",
        f"| deliberative, label only (median of {latency['n_deliberative']}) | {latency['deliberative_label_only_ms_median']} |",
        f"| deliberative, label + categories + explanation (median of 3) | {latency['deliberative_full_ms_median']} |",
        "",
        "Measured on a shared 2-core machine while other jobs ran; compare rows within this run only.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    asyncio.run(main())
