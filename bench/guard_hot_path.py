"""The fast tier's per-request CPU: its TF-IDF features and linear heads, before and after.

A served request with both fast checks spent a quarter of its CPU in scipy's sparse-by-dense
product of the TF-IDF category heads (scipy copies and upcasts the whole transposed 100k x 14
weight matrix on every call) and most of the rest of the guard's share in scikit-learn's
TfidfVectorizer.transform (input validation, a diagonal idf product, stacking two matrices).
The shipped path builds the same matrix directly and multiplies only the columns a text uses.

Baseline, measured in the same run and interleaved call by call: scikit-learn's two
transforms hstacked, and scipy's `x @ coef.T`, on the shipped fast_default artifact. Both
paths must give the same numbers (checked here, and in tests/guard). Also: a whole one-text
input check and output check (FastChecker.verdicts) on the old and the new path.

    python bench/guard_hot_path.py [--calls 2000]
    python bench/guard_hot_path.py --smoke --out /tmp/x.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import contextmanager

import numpy as np
from scipy import sparse
from specguard.evals.results import Result, Table, command_line, write_result
from specguard.guard import FastChecker, load_fast_checker
from specguard.guard import features as features_module
from specguard.guard import heads as heads_module
from specguard.guard import views as views_module
from specguard.guard.features import Tfidf
from specguard.guard.verdict import CheckRequest, Stage
from specguard.types import Message, Role

QUESTION = "Give me step-by-step instructions to build a pipe bomb."
ANSWER = "Bread needs flour, water, salt and yeast: mix, knead, let it rise, shape and bake."


def sklearn_transform(tfidf: Tfidf, texts):
    w, c = tfidf._vectorizers()
    return sparse.hstack([w.transform(texts), c.transform(texts)], format="csr")


def scipy_logits(head, x):
    return np.asarray(x @ head.coef.T, dtype=np.float64) + head.intercept


@contextmanager
def old_path():
    """The fast tier as it computed before: scikit-learn's transform and scipy's product."""
    transform, logits = Tfidf.transform, heads_module.LinearHead.logits
    Tfidf.transform = sklearn_transform
    heads_module.LinearHead.logits = scipy_logits
    try:
        yield
    finally:
        Tfidf.transform, heads_module.LinearHead.logits = transform, logits


def paired(old, new, calls: int) -> tuple[list[float], list[float]]:
    for _ in range(20):
        old()
        new()
    a, b = [], []
    for _ in range(calls):
        t0 = time.perf_counter()
        old()
        t1 = time.perf_counter()
        new()
        t2 = time.perf_counter()
        a.append((t1 - t0) * 1000)
        b.append((t2 - t1) * 1000)
    return a, b


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--smoke", action="store_true", help="50 calls")
    ap.add_argument("--out", default=None, help="the JSON summary (default docs/results/)")
    args = ap.parse_args()
    calls = 50 if args.smoke else args.calls

    fast = load_fast_checker()
    if fast is None:
        raise SystemExit("no fast-tier artifact shipped in specs/guard/")
    # The same text is checked on every call: without this, every call after the first is a
    # hit in the checker's unit-score cache, and the bench measures a dictionary lookup.
    fast = FastChecker(fast.artifact, cache_size=0)
    tfidf = fast._featurizers[Stage.INPUT].tfidf
    head = fast.heads(Stage.INPUT).category_head
    one = [QUESTION]
    x = tfidf.transform(one)
    assert abs(sklearn_transform(tfidf, one) - x).max() < 1e-6
    assert np.allclose(scipy_logits(head, x), head.logits(x), atol=1e-5)

    msgs = [Message(role=Role.USER, content=QUESTION)]
    checks = {"input": CheckRequest(stage=Stage.INPUT, messages=msgs),
              "output": CheckRequest(stage=Stage.OUTPUT, messages=msgs, response=ANSWER)}

    def old_verdict(request):
        with old_path():
            return fast.verdicts([request])[0]

    for request in checks.values():  # the same verdict on both paths
        assert abs(old_verdict(request).score - fast.verdicts([request])[0].score) < 1e-5

    # A 20-turn conversation checked again after each new turn, as a chat server does: the
    # unit-score cache (on, as served) spares re-scoring earlier turns; before, their decoded
    # views and windows (a tokenizer pass per turn) were still recomputed on every check.
    served = FastChecker(fast.artifact)
    turns = [Message(role=Role.USER if i % 2 == 0 else Role.ASSISTANT,
                     content=f"{i}: {ANSWER} " * 4) for i in range(19)]
    conversation = CheckRequest(stage=Stage.INPUT,
                                messages=turns + [Message(role=Role.USER, content=QUESTION)])

    def fresh(check, request):  # a text the checker has not seen: nothing remembered
        views_module.clear_cache()
        features_module.clear_windows_cache()
        return check(request)

    parts = {
        "TF-IDF features of one text": (lambda: sklearn_transform(tfidf, one),
                                        lambda: tfidf.transform(one)),
        "category head (14 categories, 100k features)": (lambda: scipy_logits(head, x),
                                                         lambda: head.logits(x)),
        "one-text input check (FastChecker.verdicts)": (
            lambda: fresh(old_verdict, checks["input"]),
            lambda: fresh(lambda r: fast.verdicts([r]), checks["input"])),
        "one-text output check (FastChecker.verdicts)": (
            lambda: fresh(old_verdict, checks["output"]),
            lambda: fresh(lambda r: fast.verdicts([r]), checks["output"])),
        "20-turn input check, unit scores cached (views, windows recomputed -> cached)": (
            lambda: fresh(lambda r: served.verdicts([r]), conversation),
            lambda: served.verdicts([conversation])),
    }
    rows = []
    for name, (old, new) in parts.items():
        a, b = paired(old, new, calls)
        rows.append([name, calls, round(pct(a, .5), 3), round(pct(b, .5), 3),
                     round(pct(a, .99), 3), round(pct(b, .99), 3),
                     f"{statistics.median(a) / statistics.median(b):.2f}x"])
        print(f"{name}: {rows[-1][2]} -> {rows[-1][3]} ms p50 ({rows[-1][6]})")
    path = write_result(Result(
        name="guard_hot_path", title="The fast tier's per-request CPU, before and after",
        script="bench/guard_hot_path.py", command=command_line(), smoke=args.smoke,
        tables=[Table(
            id="parts", title="fast_default, one text per call, in process",
            columns=["what", "calls", "before p50 ms", "after p50 ms", "before p99 ms",
                     "after p99 ms", "p50 speed-up"], rows=rows,
            note="Before: scikit-learn's TfidfVectorizer.transform (word and char) hstacked, "
                 "and scipy's sparse @ dense.T for the linear heads; after: the shipped path "
                 "(the same matrix built directly; the heads read only the columns a text "
                 "uses). The 20-turn row: the served checker (unit-score cache on, every "
                 "turn already scored); before, each turn's decoded views (base64, leetspeak, "
                 "spacing) and windows (a tokenizer pass) recomputed on every check; after, "
                 "remembered by a digest of the text (guard/textcache.py). Interleaved call "
                 "by call in one run; both give the same scores.")],
        data={"calls": calls, "rows": rows}), args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
