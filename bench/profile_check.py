"""The profile check (specs/profiles/checker) on U-SafeBench's evaluation profiles, and what it
adds to a request's latency.

Figures (held-out part of specguard.data's split of the developer set, split by profile: no
profile here was trained on or chosen on, and the library was not written from them):
- flagged rate on the safety items (risky for that user), by risk scenario and task domain;
- flagged rate on benign pairs: the helpfulness items (general population), the safety
  instructions sent by the general population (U-SafeBench's own contrast: the same request,
  another user), and benign requests sent by at-risk users (helpfulness instructions never
  marked unsafe, with evaluation profiles round-robin; approximate labels);
- for three configurations: the scorer alone (the library read through the profile text, no
  approved list), the approved-guideline matcher alone (each profile's library draft for the
  attributes its text suggests, approved as drafted), and both (what the runtime does); and the
  profile-blind general fast tier on the same items as the baseline.
Latency: per request, the input check with and without the profile check in front of the
shipped fast tier (deliberative tier off), fresh request texts, in process; the added time is
the paired difference. Wilson intervals for rates; p50/p90 for times.

    python bench/profile_check.py                 # writes docs/results/profile_check.json
    python bench/profile_check.py --smoke --out /tmp/pc.json
    python bench/profile_check.py --attach        # also records the held-out figures in the card
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections import defaultdict

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

NAME = "profile_check"
CONFIGS = ("scorer", "approved", "both")


def items(smoke: bool):
    """(pairs, sets): pairs of (profile, request, risky, set name, scenario, domain)."""
    from specguard.data import Part, in_part, load

    usb = load("u_safebench")
    held = in_part(usb, Part.HELD_OUT)
    safety = [r for r in held if r.subset == "safety"]
    helpful = [r for r in held if r.subset == "helpfulness"]
    general = helpful[0].profile if helpful else "I am an ordinary member of the general population."
    risky_texts = {" ".join(r.instruction.lower().split()) for r in usb if r.subset == "safety"}
    pairs = [(r.profile, r.instruction, True, "safety", r.risk_scenario, r.task_domain) for r in safety]
    pairs += [(r.profile, r.instruction, False, "helpfulness (general population)", None, r.task_domain)
              for r in helpful]
    seen = set()
    for r in safety:
        if r.instruction not in seen:
            seen.add(r.instruction)
            pairs.append((general, r.instruction, False, "safety instructions, general population",
                          None, r.task_domain))
    profiles = sorted({r.profile for r in safety})
    random.Random(0).shuffle(profiles)
    benign = [r for r in helpful if " ".join(r.instruction.lower().split()) not in risky_texts]
    pairs += [(profiles[i % len(profiles)], r.instruction, False, "benign requests, at-risk users",
               None, r.task_domain) for i, r in enumerate(benign)]
    if smoke:
        rng = random.Random(0)
        by_set = defaultdict(list)
        for p in pairs:
            by_set[p[3]].append(p)
        pairs = [p for v in by_set.values() for p in rng.sample(v, min(6, len(v)))]
    return pairs


def classify(pairs):
    """Per pair and configuration: flagged or not; and the general fast tier's flag."""
    from specguard.encoders import EmbeddingCache
    from specguard.guard import CheckRequest, Stage, load_fast_checker
    from specguard.profiles import load_profile_check
    from specguard.types import user

    check = load_profile_check()
    texts = sorted({p[0] for p in pairs} | {p[1] for p in pairs})
    cache = EmbeddingCache()
    check.remember(texts, cache.encode(check.encoder, texts))
    drafts = {prof: check.library_draft(prof)[1] for prof in {p[0] for p in pairs}}
    t = check.artifact.thresholds["balanced"]
    out = []
    for prof, req, *_ in pairs:
        s_unsafe, s_match, _ = check.check(prof, req, (), threshold=t)
        a_unsafe = b_unsafe = False
        if drafts[prof]:
            # The matcher alone (its own thresholds), and as the runtime runs it: with the
            # scorer, whose flags it is OR-ed with (the thresholds chosen for that).
            a_unsafe = check.check(prof, req, drafts[prof], threshold=2.0, library=False)[0]
            b_unsafe = check.check(prof, req, drafts[prof], threshold=2.0)[0]
        out.append({"scorer": s_unsafe, "approved": a_unsafe, "both": s_unsafe or b_unsafe})
    fast = load_fast_checker(None)
    requests = [CheckRequest(stage=Stage.INPUT, messages=[user(p[1])]) for p in pairs]
    verdicts = fast.verdicts(requests)
    thr = fast.threshold(Stage.INPUT, "balanced")
    for row, v in zip(out, verdicts):
        row["general_guard"] = (v.score or 0.0) >= thr
    return out, drafts


def rate_table(pairs, flags, configs):
    from specguard.evals.metrics import proportion
    from specguard.evals.results import pct

    def cell(rows, cfg):
        est = proportion([f[cfg] for f in rows])
        return pct(est.model_dump())

    groups = []
    safety = [i for i, p in enumerate(pairs) if p[3] == "safety"]
    groups.append(("safety items (all)", safety))
    for scen in sorted({pairs[i][4] for i in safety}):
        groups.append((f"safety: {scen}", [i for i in safety if pairs[i][4] == scen]))
    for dom in sorted({pairs[i][5] for i in safety}):
        groups.append((f"safety: {dom}", [i for i in safety if pairs[i][5] == dom]))
    for name in ("helpfulness (general population)", "safety instructions, general population",
                 "benign requests, at-risk users"):
        groups.append((name, [i for i, p in enumerate(pairs) if p[3] == name]))
    rows, data = [], {}
    for name, idx in groups:
        sub = [flags[i] for i in idx]
        rows.append([name, len(idx), *[cell(sub, c) for c in configs]])
        data[name] = {c: sum(f[c] for f in sub) for c in configs} | {"n": len(idx)}
    return rows, data


async def latency(n: int):
    """Paired per-request times of the input check with and without the profile check."""
    from specguard.guard import CheckRequest, Stage, TieredGuard, load_fast_checker
    from specguard.policy import CheckSettings, Profile, ProfileCheckSettings
    from specguard.profiles import ProfileAwareGuard, load_library, load_profile_check
    from specguard.types import user

    check = load_profile_check()
    inner = TieredGuard(fast=load_fast_checker(None))
    guard = ProfileAwareGuard(inner, check, ProfileCheckSettings())
    settings = CheckSettings(deliberative=False)
    lib = load_library()
    # Fresh texts each time (the in-process vector cache would make a repeat free): everyday
    # requests and exemplars with a per-run suffix.
    base = lib.benign + [r for a in lib.activities.values() for r in a.requests]
    rng = random.Random(1)
    profiles = [p for a in lib.attributes.values() for p in a.profiles]
    warm = CheckRequest(stage=Stage.INPUT, messages=[user("warm up")], profile=Profile(text=profiles[0]))
    await guard.check(warm, settings)
    await inner.check(warm, settings)
    with_p, without, alone = [], [], []
    for i in range(n):
        text = f"{rng.choice(base)} (request {i}, {time.time_ns() % 997})"
        prof = Profile(text=rng.choice(profiles))
        r1 = CheckRequest(stage=Stage.INPUT, messages=[user(text)], profile=prof)
        r0 = CheckRequest(stage=Stage.INPUT, messages=[user(text + " ")])
        order = [(r0, without, inner), (r1, with_p, guard)]
        if i % 2:
            order.reverse()  # alternate, so neither side always runs on a warm cache
        for req, sink, g in order:
            t0 = time.perf_counter()
            await g.check(req, settings)
            sink.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        check.check(prof.text, text + "  ", (), threshold=0.5)
        alone.append((time.perf_counter() - t0) * 1000)
    added = [a - b for a, b in zip(with_p, without)]
    q = lambda xs, k: statistics.quantiles(xs, n=10)[k - 1] if len(xs) >= 10 else max(xs)  # noqa: E731
    return {"n": n, "with_ms_p50": statistics.median(with_p), "without_ms_p50": statistics.median(without),
            "added_ms_p50": statistics.median(added), "added_ms_p90": q(added, 9),
            "profile_check_alone_ms_p50": statistics.median(alone),
            "profile_check_alone_ms_p90": q(alone, 9)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="a sliver of the items, 12 timed requests")
    ap.add_argument("--out", default=None, help="summary file (default docs/results/profile_check.json)")
    ap.add_argument("--latency-n", type=int, default=200)
    ap.add_argument("--attach", action="store_true",
                    help="record the held-out figures in specs/profiles/checker/card.json")
    args = ap.parse_args(argv)
    from specguard.evals.results import Readme, Result, Table, command_line, write_result

    start = time.perf_counter()
    pairs = items(args.smoke)
    flags, drafts = classify(pairs)
    configs = (*CONFIGS, "general_guard")
    rows, data = rate_table(pairs, flags, configs)
    lat = asyncio.run(latency(12 if args.smoke else args.latency_n))
    load = os.getloadavg()[0]
    n_drafted = sum(1 for v in drafts.values() if v)
    s_all = data["safety items (all)"]
    h_gen = data["helpfulness (general population)"]
    at_risk = data["benign requests, at-risk users"]
    headline = (
        f"flags {100 * s_all['both'] / max(s_all['n'], 1):.1f}% of {s_all['n']} held-out safety items "
        f"(profile-blind fast tier: {100 * s_all['general_guard'] / max(s_all['n'], 1):.1f}%), "
        f"{100 * h_gen['both'] / max(h_gen['n'], 1):.1f}% of {h_gen['n']} general-population "
        f"helpfulness items, {100 * at_risk['both'] / max(at_risk['n'], 1):.1f}% of {at_risk['n']} "
        f"benign requests of at-risk users; adds {lat['added_ms_p50']:.1f} ms p50 per request "
        f"(load {load:.1f} on {os.cpu_count()} CPUs)")
    tables = [
        Table(id="heldout", title="Flagged rate on U-SafeBench's held-out part (evaluation profiles)",
              columns=["items", "n", "scorer (library via profile text)",
                       "approved library drafts", "both (the runtime)", "general fast tier (profile-blind)"],
              rows=rows,
              note=("95% Wilson intervals. Safety rows: higher is better (recall). The other rows "
                    "are benign pairs: lower is better (false flags). Operating point: balanced. "
                    f"Approved drafts: {n_drafted} of {len(drafts)} profiles got a library draft "
                    "from the attributes their text suggests.")),
        Table(id="latency", title="Added latency per request (input check, in process)",
              columns=["measure", "ms"],
              rows=[["input check without the profile check, p50", round(lat["without_ms_p50"], 2)],
                    ["input check with the profile check, p50", round(lat["with_ms_p50"], 2)],
                    ["added (paired difference), p50", round(lat["added_ms_p50"], 2)],
                    ["added (paired difference), p90", round(lat["added_ms_p90"], 2)],
                    ["profile check alone, p50", round(lat["profile_check_alone_ms_p50"], 2)],
                    ["profile check alone, p90", round(lat["profile_check_alone_ms_p90"], 2)]],
              note=(f"{lat['n']} fresh requests, each with and without a library profile, "
                    f"alternating order; the fast tier is the shipped one with the deliberative "
                    f"tier off; MiniLM with SPECGUARD_ENCODER_THREADS="
                    f"{os.environ.get('SPECGUARD_ENCODER_THREADS', '1')}; 1-minute load average "
                    f"{load:.2f} on {os.cpu_count()} CPUs while measured (other jobs shared them)."))]
    from specguard.profiles import load_profile_check

    card = load_profile_check().artifact.card
    v = card["validation"]["operating_points"]
    tables.append(Table(
        id="validation", title="Choices and figures on validation data (from the model card)",
        columns=["operating point", "threshold", "precision", "recall"],
        rows=[[k, v[k]["threshold"], v[k]["precision"], v[k]["recall"]] for k in ("strict", "balanced", "permissive")],
        note=(f"Validation pairs: {card['data']['validation']['pairs']} "
              f"({card['data']['validation']['risky']} risky): the library's validation attributes "
              "and requests, and U-SafeBench's validation part. Average precision "
              f"{card['validation']['average_precision']}.")))
    result = Result(name=NAME, title="Profile check on U-SafeBench's evaluation profiles",
                    script="bench/profile_check.py", command=command_line(), smoke=args.smoke,
                    readme=Readme(what="profile-aware check (issue 17)", where="docs/results/usafebench.md",
                                  headline=headline),
                    tables=tables, data={"held_out": data, "latency": lat,
                                         "seconds": round(time.perf_counter() - start, 1)})
    path = write_result(result, args.out)
    print(headline)
    print(f"wrote {path}")
    if args.attach and not args.smoke:
        from specguard.profiles import load_profile_check as lpc

        art = lpc().artifact
        card_path = art.path / "card.json"
        stored = json.loads(card_path.read_text())
        stored["held_out"] = {"source": "bench/profile_check.py", "figures": data,
                              "latency_ms": {k: round(v, 3) if isinstance(v, float) else v
                                             for k, v in lat.items()},
                              "note": "U-SafeBench held_out part; counts flagged per configuration"}
        card_path.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
        print(f"attached held-out figures to {card_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
