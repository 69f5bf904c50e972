"""How much the fast tier escalates: the share of held-out prompts whose fast-tier score falls
inside the escalation band, for a sweep of bands (SafeRoute sends about 5% to the large
guard). Scores come from the shipped artifact that fits the embedded backend, batched.

    python bench/guard_bands.py [--artifact fast_default]

The tiers' precision, recall, F1 and AUPRC are the harness's suites `guard` and `guard_fast`.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from specguard.guard import CheckRequest, Stage, load_fast_checker
from specguard.guard.corpus import input_examples
from specguard.types import user

BANDS = ((0.2, 0.8), (0.3, 0.7), (0.4, 0.6), (0.45, 0.55))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--artifact", default="fast_default")
    args = ap.parse_args()
    from specguard.backends.embedded import EmbeddedBackend

    backend = EmbeddedBackend()
    await backend.load()
    fast = load_fast_checker(backend, args.artifact)
    texts = [e.text for e in input_examples() if e.split == "test"]
    t0 = time.perf_counter()
    verdicts = await fast.check_many([CheckRequest(stage=Stage.INPUT, messages=[user(t)])
                                      for t in texts])
    ms = (time.perf_counter() - t0) * 1000 / len(texts)
    scores = [v.score for v in verdicts]
    print(f"{args.artifact}: {len(texts)} held-out prompts scored in one batch, {ms:.1f} ms each")
    print("| escalate_band | share escalated |\n|---|---|")
    for lo, hi in BANDS:
        share = sum(lo <= s <= hi for s in scores) / len(scores)
        print(f"| [{lo}, {hi}]{' (default)' if (lo, hi) == BANDS[0] else ''} | {share:.1%} |")


if __name__ == "__main__":
    asyncio.run(main())
