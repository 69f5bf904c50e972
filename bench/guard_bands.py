"""How much the fast tier escalates: the share of held-out prompts whose calibrated score falls
inside the escalation band, for a sweep of bands (SafeRoute sends about 5% of inputs to the
large guard). Scores come from the shipped artifact, batched.

    python bench/guard_bands.py            # every held-out prompt: ~5 min on 2 cores
    python bench/guard_bands.py --smoke    # CI

Writes docs/results/guard_bands.json. The tiers' precision, recall, F1 and AUPRC are the
harness's suites `guard` and `guard_fast`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("SPECGUARD_ENCODER_THREADS", "2")
BANDS = ((0.2, 0.8), (0.3, 0.7), (0.4, 0.6), (0.45, 0.55))


def main() -> int:
    from specguard.data import Part
    from specguard.evals.results import Result, Table, command_line, write_result
    from specguard.guard import CheckRequest, Stage, load_fast_checker
    from specguard.guard.corpus import input_examples
    from specguard.types import user

    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    fast = load_fast_checker()
    if fast is None:
        raise SystemExit("no shipped fast-tier artifact")
    texts = [e.text for e in input_examples(parts=(Part.HELD_OUT,), augment=False)]
    if args.smoke:
        texts = texts[::200]
    t0 = time.perf_counter()
    verdicts = fast.verdicts([CheckRequest(stage=Stage.INPUT, messages=[user(t)]) for t in texts])
    ms = (time.perf_counter() - t0) * 1000 / len(texts)
    scores = [v.score for v in verdicts]
    rows = []
    for lo, hi in BANDS:
        share = sum(lo <= s <= hi for s in scores) / len(scores)
        rows.append([f"[{lo}, {hi}]" + (" (default)" if (lo, hi) == BANDS[0] else ""),
                     f"{share:.1%}"])
    result = Result(
        name="guard_bands", title="Share of held-out prompts the fast tier escalates",
        script="bench/guard_bands.py", command=command_line(), smoke=args.smoke,
        tables=[Table(id="bands", columns=["escalate_band", "share escalated"], rows=rows,
                      note=f"{len(texts)} held-out prompts, scored in batches ({ms:.1f} ms each)")],
        data={"n": len(texts), "ms_per_prompt": ms,
              "shares": {f"{lo}-{hi}": r[1] for (lo, hi), r in zip(BANDS, rows, strict=True)}})
    print(f"wrote {write_result(result, args.out)}")
    for r in rows:
        print(" | ".join(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
