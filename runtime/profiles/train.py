"""Train the profile check (specs/profiles/checker/): choices on validation data, never on the
evaluation part.

    python -m specguard.profiles.train                  # writes specs/profiles/checker/
    python -m specguard.profiles.train --out /tmp/pc    # elsewhere

Data (pairs of a profile and a request, labelled risky for that profile or not):
- the guideline library's own examples (specs/profiles/*.yaml, written for specguard): each
  attribute's example self-descriptions paired with the exemplar requests of its activities
  (risky), of other activities and everyday requests (not risky); general-population
  self-descriptions paired with anything (not risky). Attributes and requests are split into
  train and validation by a hash (so validation profiles belong to attributes the head never
  trained on, and validation requests are texts it never saw);
- U-SafeBench's developer split through specguard.data's parts: its TRAIN part (safety rows
  risky; the same instructions with the general-population profile, and the helpfulness rows,
  not risky) for fitting, its VALIDATION part for choices. Its HELD_OUT part (the evaluation
  profiles) is read only to leave out near-duplicates: every library example profile or request
  within the project's near-duplicate cosine (MiniLM >= 0.75) of a held-out U-SafeBench
  profile or instruction is dropped from the training pairs and from the shipped vectors.

Choices made on validation: the head (logistic regression or a small MLP, and its
regularisation) by average precision; the operating points (strict: best F2, balanced: best
F1, permissive: best F0.5); the approved-guideline match threshold (best F1, with each
validation profile's admin-picked library draft as its approved list) and its calibration; the
attribute-suggestion threshold and margin (best F1 of suggested vs true attributes).
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._check import FEATURE_SETS, FEATURES, LibraryIndex, ProfileCheckArtifact, pair_features, shipped_artifact_path
from ._library import GuidelineLibrary, load_library

log = logging.getLogger("specguard.profiles.train")

VALIDATION_SHARE = 0.3
GENERAL_USB = "I am an ordinary member of the general population."


@dataclass(frozen=True)
class Pair:
    profile: str
    request: str
    label: int  # 1: risky for this profile
    source: str  # library | u_safebench
    attribute: str | None = None  # the library attribute of the profile (library pairs)


def _part(kind: str, key: str, share: float) -> str:
    from ..data import part_of

    return part_of(f"profile_library:{kind}", key, share=0.0, validation_share=share).value


def library_pairs(lib: GuidelineLibrary, part: str, *, keep_profile, keep_request, share: float,
                  seed: int) -> list[Pair]:
    rng = random.Random(f"{seed}:{part}")
    acts = lib.activities
    req_part = {r: _part("request", r, share) for a in acts.values() for r in a.requests}
    requests = {k: [r for r in a.requests if req_part[r] == part and keep_request(r)]
                for k, a in acts.items()}
    benign = [b for b in lib.benign if _part("request", b, share) == part and keep_request(b)]
    pairs: list[Pair] = []
    for attr in lib.attributes.values():
        if _part("attribute", attr.id, share) != part:
            continue
        mine = {g.activity for g in attr.guidelines}
        pos = [r for k in sorted(mine) for r in requests[k]]
        others = [r for k in sorted(acts) if k not in mine for r in requests[k]]
        for p in attr.profiles:
            if not keep_profile(p):
                continue
            neg = rng.sample(others, min(len(others), 2 * len(pos) + 10))
            neg += rng.sample(benign, min(len(benign), 10))
            pairs += [Pair(p, r, 1, "library", attr.id) for r in pos]
            pairs += [Pair(p, r, 0, "library", attr.id) for r in neg]
    everything = [r for k in sorted(acts) for r in requests[k]]
    for p in lib.general_profiles:
        if _part("profile", p, share) != part or not keep_profile(p):
            continue
        # Every request with every general-population profile: U-SafeBench's own contrast (the
        # same request is fine for someone else) in full, not a sample.
        pairs += [Pair(p, r, 0, "library", None) for r in everything + benign]
    return pairs


def usb_pairs(records: list[Any], part: str) -> list[Pair]:
    """U-SafeBench rows of one part as pairs: safety rows risky, their instructions with the
    general-population profile and the helpfulness rows not."""
    from ..data import Part, in_part

    rows = in_part(records, Part(part))
    pairs = []
    for r in rows:
        if r.subset == "safety":
            pairs.append(Pair(r.profile, r.instruction, 1, "u_safebench"))
            pairs.append(Pair(GENERAL_USB, r.instruction, 0, "u_safebench"))
        else:
            pairs.append(Pair(r.profile, r.instruction, 0, "u_safebench"))
    return list(dict.fromkeys(pairs))


def featurize(index: LibraryIndex, pairs: list[Pair], embed, oof: dict[str, Any] | None = None):
    """(X, y) for pairs: profile and request similarities with the text itself left out of the
    index (a library example never matches itself), and the activity classifier's out-of-fold
    probabilities (`oof`) for the requests it was fitted on."""
    import numpy as np

    profiles = sorted({p.profile for p in pairs})
    requests = sorted({p.request for p in pairs})
    a, gen = index.profile_side(embed(profiles), profiles)
    rv = embed(requests)
    p_act = index.activity_proba(rv)
    for i, t in enumerate(requests):
        if oof and t in oof:
            p_act[i] = oof[t]
    req = index.request_side(rv, requests, p_act=p_act)
    pi = {t: i for i, t in enumerate(profiles)}
    ri = {t: i for i, t in enumerate(requests)}
    by_profile: dict[str, list[int]] = {}
    for k, p in enumerate(pairs):
        by_profile.setdefault(p.profile, []).append(k)
    x = np.zeros((len(pairs), len(FEATURES)), np.float32)
    for prof, ks in by_profile.items():
        rows = [ri[pairs[k].request] for k in ks]
        x[ks], _ = pair_features(a[pi[prof]], float(gen[pi[prof]]), req.rows(rows))
    return x, np.asarray([p.label for p in pairs], np.int32)


def approved_scores(index: LibraryIndex, lib: GuidelineLibrary, pairs: list[Pair], embed):
    """Per library pair with an attribute, what the matcher sees once an admin approved that
    attribute's library draft: the request's best cosine to a guideline of the draft, and the
    activity classifier's best probability for the draft's activities."""
    import numpy as np

    todo = [p for p in pairs if p.attribute is not None]
    requests = sorted({p.request for p in todo})
    req = index.request_side(embed(requests), requests)
    ri = {t: i for i, t in enumerate(requests)}
    col = {t: j for j, t in enumerate(index.g_text)}
    cos, prob = [], []
    for p in todo:
        cols = [col[t] for t in lib.draft([p.attribute])]
        cos.append(max(req.g[ri[p.request], j] for j in cols))
        prob.append(max(req.p_act[ri[p.request], index.g_act[j]] for j in cols))
    return (np.asarray(cos, np.float32), np.asarray(prob, np.float32),
            np.asarray([p.label for p in todo], np.int32))


def best_threshold(y, score, beta: float = 1.0) -> tuple[float, dict[str, float]]:
    """The score threshold with the best F-beta, and precision/recall/F there."""
    import numpy as np

    order = np.argsort(-score)
    s, t = score[order], y[order].astype(bool)
    tp = np.cumsum(t)
    fp = np.cumsum(~t)
    pos = max(int(t.sum()), 1)
    prec = tp / np.maximum(tp + fp, 1)
    rec = tp / pos
    b2 = beta * beta
    f = (1 + b2) * prec * rec / np.maximum(b2 * prec + rec, 1e-12)
    # Only at the last of equal scores (a threshold takes every tie).
    last = np.r_[s[1:] != s[:-1], True]
    f = np.where(last, f, -1)
    i = int(np.argmax(f))
    return float(s[i]), {"precision": float(prec[i]), "recall": float(rec[i]),
                         f"f{beta:g}": float(f[i])}


def rates(y, flagged) -> dict[str, Any]:
    import numpy as np

    y, f = np.asarray(y, bool), np.asarray(flagged, bool)
    return {"n_risky": int(y.sum()), "n_benign": int((~y).sum()),
            "recall": float(f[y].mean()) if y.any() else None,
            "false_positive_rate": float(f[~y].mean()) if (~y).any() else None}


def fit_activity_classifier(index: LibraryIndex, lib: GuidelineLibrary, embed, *, share: float,
                            keep_request, seed: int):
    """A linear classifier of requests into the index's activities (the everyday requests are
    one more class), fitted on the training part's exemplars and every guideline text; C chosen
    by accuracy on the validation part's exemplars. Sets it on `index`; returns the
    out-of-fold probabilities of the training exemplars (for the head's training features)
    and the choice."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    from ._check import BENIGN

    rows = [(r, k) for k, a in lib.activities.items() for r in a.requests if keep_request(r)]
    rows += [(b, BENIGN) for b in lib.benign if keep_request(b)]
    train = [(r, k) for r, k in rows if _part("request", r, share) == "train"]
    valid = [(r, k) for r, k in rows if _part("request", r, share) == "validation"]
    spec = [(g.decline, g.activity) for a in lib.attributes.values() for g in a.guidelines]
    classes = index.activity_ids
    col = {k: i for i, k in enumerate(classes)}
    x_tr = embed([r for r, _ in train + spec])
    y_tr = np.asarray([col[k] for _, k in train + spec])
    x_va, y_va = embed([r for r, _ in valid]), np.asarray([col[k] for _, k in valid])

    def fit(x, y, c):
        m = LogisticRegression(C=c, max_iter=5000).fit(x, y)
        coef = np.zeros((len(classes), x.shape[1]), np.float32)
        icpt = np.full(len(classes), -30.0, np.float32)  # a class with no example: never
        coef[m.classes_] = m.coef_
        icpt[m.classes_] = m.intercept_
        return coef, icpt

    tried = []
    for c in (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0):
        coef, icpt = fit(x_tr, y_tr, c)
        acc = float(((x_va @ coef.T + icpt).argmax(axis=1) == y_va).mean())
        tried.append({"C": c, "validation_accuracy": round(acc, 4)})
    best = max(tried, key=lambda t: t["validation_accuracy"])
    index.act_coef, index.act_intercept = fit(x_tr, y_tr, best["C"])
    # Out-of-fold probabilities for the training exemplars (each from a classifier that did
    # not see it), so the head learns how far to trust the classifier on new requests.
    oof: dict[str, Any] = {}
    n_ex = len(train)
    counts = np.bincount(y_tr[:n_ex], minlength=len(classes))
    folds = max(2, min(5, int(counts[counts > 0].min())))
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    ex_y = np.where(counts[y_tr[:n_ex]] >= folds, y_tr[:n_ex], -1)  # rare classes: one stratum
    for fit_idx, out_idx in skf.split(np.zeros(n_ex), ex_y):
        keep = np.r_[fit_idx, np.arange(n_ex, len(y_tr))]
        coef, icpt = fit(x_tr[keep], y_tr[keep], best["C"])
        z = x_tr[out_idx] @ coef.T + icpt
        z = np.exp(z - z.max(axis=1, keepdims=True))
        for i, row in zip(out_idx, z / z.sum(axis=1, keepdims=True)):
            oof[train[i][0]] = row
    return oof, {"tried": tried, "chosen_C": best["C"], "train_examples": len(train),
                 "guideline_texts": len(spec), "validation_examples": len(valid),
                 "folds_for_out_of_fold": folds}


def fit_head(kind: str, c: float, x, y, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    from ..guard.heads import LinearHead, MLPHead

    if kind == "linear":
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
        model.fit(x, y)
        return LinearHead.from_sklearn(model)
    model = MLPClassifier(hidden_layer_sizes=(16,), alpha=c, max_iter=2000, random_state=seed,
                          early_stopping=False)
    model.fit(x, y)
    return MLPHead.from_sklearn(model)


def choose_suggestion(index: LibraryIndex, lib: GuidelineLibrary, embed, *, share: float,
                      keep_profile) -> tuple[float, float, dict[str, float]]:
    """The attribute-suggestion threshold and margin with the best F1 of suggested vs true
    attributes over validation profiles (library examples of validation attributes, and
    general-population self-descriptions, which should get none)."""
    import numpy as np

    rows: list[tuple[str, str | None]] = []
    for attr in lib.attributes.values():
        if _part("attribute", attr.id, share) == "validation":
            rows += [(p, attr.id) for p in attr.profiles if keep_profile(p)]
    rows += [(p, None) for p in lib.general_profiles
             if _part("profile", p, share) == "validation" and keep_profile(p)]
    texts = [t for t, _ in rows]
    a, gen = index.profile_side(embed(texts), texts)
    best = (0.5, 0.05, {"f1": -1.0})
    for tau in np.arange(0.30, 0.86, 0.02):
        for margin in (0.0, 0.03, 0.06, 0.1, 0.2):
            tp = fp = fn = 0
            for i, (_, truth) in enumerate(rows):
                top = a[i].max()
                picked = {index.attribute_ids[j] for j in range(a.shape[1])
                          if a[i, j] >= tau and a[i, j] >= top - margin and a[i, j] > gen[i]}
                want = {truth} if truth else set()
                tp += len(picked & want)
                fp += len(picked - want)
                fn += len(want - picked)
            f1 = 2 * tp / max(2 * tp + fp + fn, 1)
            if f1 > best[2]["f1"]:
                best = (float(tau), margin, {"f1": f1, "precision": tp / max(tp + fp, 1),
                                             "recall": tp / max(tp + fn, 1), "n_profiles": len(rows)})
    return best


def train(out: Path, *, share: float = VALIDATION_SHARE, seed: int = 0,
          data_dir: str | None = None) -> ProfileCheckArtifact:
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score

    from ..data import NEAR_DUPLICATE_COSINE, Part, drop_near_duplicates, in_part, load
    from ..encoders import EmbeddingCache, load_encoder

    t0 = time.perf_counter()
    lib = load_library()
    encoder = load_encoder("minilm")
    cache = EmbeddingCache()

    def embed(texts):
        return cache.encode(encoder, list(texts))

    usb = load("u_safebench", data_dir_override=data_dir)
    held = in_part(usb, Part.HELD_OUT)
    held_requests = sorted({r.instruction for r in held})
    held_profiles = sorted({r.profile for r in held})

    # Near-duplicates of evaluation items leave the library's examples (training pairs and the
    # shipped vectors alike).
    my_profiles = sorted({p for a in lib.attributes.values() for p in a.profiles} | set(lib.general_profiles))
    my_requests = sorted({r for a in lib.activities.values() for r in a.requests} | set(lib.benign))
    kept_p, dropped_p = drop_near_duplicates(my_profiles, held_profiles, embed, text=str,
                                             threshold=NEAR_DUPLICATE_COSINE)
    kept_r, dropped_r = drop_near_duplicates(my_requests, held_requests, embed, text=str,
                                             threshold=NEAR_DUPLICATE_COSINE)
    kp, kr = set(kept_p), set(kept_r)
    log.info("near-duplicates of held-out U-SafeBench items dropped: %d of %d profiles, %d of %d "
             "requests", len(dropped_p), len(my_profiles), len(dropped_r), len(my_requests))
    index = LibraryIndex.build(lib, embed, encoder="minilm", keep_profile=kp.__contains__,
                               keep_request=kr.__contains__)

    oof, act_choice = fit_activity_classifier(index, lib, embed, share=share,
                                              keep_request=kr.__contains__, seed=seed)
    log.info("activity classifier: %s", act_choice)
    parts = {}
    for part in ("train", "validation"):
        pairs = library_pairs(lib, part, keep_profile=kp.__contains__, keep_request=kr.__contains__,
                              share=share, seed=seed) + usb_pairs(usb, part)
        x, y = featurize(index, pairs, embed, oof if part == "train" else None)
        parts[part] = (pairs, x, y)
        log.info("%s: %d pairs (%d risky), %d profiles", part, len(pairs), int(y.sum()),
                 len({p.profile for p in pairs}))
    (tr_pairs, xtr, ytr), (va_pairs, xva, yva) = parts["train"], parts["validation"]
    mean = xtr.mean(axis=0)
    scale = np.maximum(xtr.std(axis=0), 1e-6)
    ztr, zva = (xtr - mean) / scale, (xva - mean) / scale

    candidates = [("linear", c) for c in (0.001, 0.01, 0.1, 1.0)] + [("mlp", a) for a in (1e-3, 1e-2, 1e-1)]
    tried = []
    best = None
    for fs, cols in FEATURE_SETS.items():
        ci = [FEATURES.index(f) for f in cols]
        for kind, c in candidates:
            head = fit_head(kind, c, ztr[:, ci], ytr, seed)
            score = head.score(zva[:, ci])
            ap = float(average_precision_score(yva, score))
            tried.append({"features": fs, "head": kind, "regularisation": c,
                          "validation_average_precision": round(ap, 4)})
            if best is None or ap > best[0]:
                best = (ap, kind, c, head, fs)
    assert best is not None
    _, kind, c, head, feature_set = best
    from ..guard.heads import sigmoid

    columns = [FEATURES.index(f) for f in FEATURE_SETS[feature_set]]
    zva = zva[:, columns]
    pva = sigmoid(head.score(zva))
    thresholds, at = {}, {}
    for name, beta in (("strict", 2.0), ("balanced", 1.0), ("permissive", 0.5)):
        thresholds[name], at[name] = best_threshold(yva, pva, beta)

    # The approved-guideline matcher: each validation profile's library draft as its list.
    s, prob, ys = approved_scores(index, lib, [p for p in va_pairs if p.source == "library"], embed)
    match_t, match_at = best_threshold(ys, s)
    cal = LogisticRegression(C=1.0).fit(s.reshape(-1, 1), ys)
    calibration = (float(cal.coef_[0, 0]), float(cal.intercept_[0]))
    # Then the activity-probability threshold that, OR-ed with the cosine's, gives the best F1.
    act_t, act_at = 1.01, {"f1": match_at["f1"]}
    for t in np.arange(0.30, 0.96, 0.05):
        fired = (s >= match_t) | (prob >= t)
        tp, fp = int((fired & (ys == 1)).sum()), int((fired & (ys == 0)).sum())
        fn = int(((~fired) & (ys == 1)).sum())
        f1 = 2 * tp / max(2 * tp + fp + fn, 1)
        if f1 > act_at["f1"]:
            act_t, act_at = float(t), {"f1": f1, "precision": tp / max(tp + fp, 1),
                                       "recall": tp / max(tp + fn, 1)}

    # The matcher's thresholds when the scorer runs too (the default): the pair whose OR with
    # the scorer's balanced flags gives the best F1 on the same validation pairs.
    lib_idx = [k for k, q in enumerate(va_pairs) if q.source == "library" and q.attribute is not None]
    scorer_flags = pva[lib_idx] >= thresholds["balanced"]
    comb, comb_at = (1.01, 1.01), {"f1": -1.0}
    for tc in np.arange(0.30, 0.86, 0.02):
        for ta in np.arange(0.30, 1.06, 0.05):
            fired = scorer_flags | (s >= tc) | (prob >= ta)
            tp, fp = int((fired & (ys == 1)).sum()), int((fired & (ys == 0)).sum())
            fn = int(((~fired) & (ys == 1)).sum())
            f1 = 2 * tp / max(2 * tp + fp + fn, 1)
            if f1 > comb_at["f1"] + 1e-9:
                comb, comb_at = (float(tc), float(ta)), {"f1": f1, "precision": tp / max(tp + fp, 1),
                                                         "recall": tp / max(tp + fn, 1)}
    alone = scorer_flags
    scorer_at = {"f1": 2 * int((alone & (ys == 1)).sum()) / max(2 * int((alone & (ys == 1)).sum())
                                                                + int((alone & (ys == 0)).sum())
                                                                + int(((~alone) & (ys == 1)).sum()), 1)}

    sug_t, sug_m, sug_at = choose_suggestion(index, lib, embed, share=share, keep_profile=kp.__contains__)

    def by_source(pairs, p, t):
        out = {}
        for src in ("library", "u_safebench"):
            ks = [k for k, q in enumerate(pairs) if q.source == src]
            if ks:
                out[src] = rates([pairs[k].label for k in ks], p[ks] >= t)
        return out

    card = {
        "name": "checker",
        "description": ("Profile-aware check: P(the request is risky for this user's profile), "
                        "from MiniLM similarities of the profile to the guideline library's "
                        "attributes and of the request to their guidelines (text and exemplar "
                        "requests); plus the approved-guideline matcher's threshold."),
        "encoder": "minilm",
        "library": {"source": "specs/profiles/library.yaml + activities.yaml",
                    "fingerprint": lib.fingerprint(), "attributes": len(lib.attributes),
                    "guidelines": sum(len(a.guidelines) for a in lib.attributes.values()),
                    "activities": len(lib.activities),
                    "provenance": "written by hand for specguard from general knowledge, not "
                                  "from U-SafeBench items (see the header of library.yaml)"},
        "data": {
            "near_duplicate_cosine": NEAR_DUPLICATE_COSINE,
            "dropped_near_duplicates": {
                "profiles": len(dropped_p), "profiles_of": len(my_profiles),
                "requests": len(dropped_r), "requests_of": len(my_requests),
                "reference": f"U-SafeBench held_out part: {len(held_profiles)} profiles, "
                             f"{len(held_requests)} instructions"},
            "validation_share": share, "seed": seed,
            **{part: {"pairs": len(pp), "risky": int(yy.sum()),
                      "profiles": len({q.profile for q in pp}),
                      "by_source": dict(Counter(q.source for q in pp))}
               for part, (pp, _, yy) in parts.items()},
            "u_safebench_parts": "train part fits, validation part chooses; held_out never read "
                                 "but for the near-duplicate filter",
        },
        "choices": {"tried": tried, "chosen": {"features": feature_set, "head": kind,
                                               "regularisation": c},
                    "chosen_on": "validation average precision",
                    "activity_classifier": act_choice},
        "validation": {
            "average_precision": round(best[0], 4),
            "operating_points": {k: {"threshold": round(thresholds[k], 4),
                                     **{m: round(v, 4) for m, v in at[k].items()},
                                     "by_source": by_source(va_pairs, pva, thresholds[k])}
                                 for k in thresholds},
            "approved_match": {"cosine_threshold": round(match_t, 4),
                               "cosine_alone": {m: round(v, 4) for m, v in match_at.items()},
                               "activity_threshold": round(act_t, 4),
                               "with_activity": {m: round(v, 4) for m, v in act_at.items()},
                               "with_scorer": {"cosine_threshold": round(comb[0], 4),
                                               "activity_threshold": round(comb[1], 4),
                                               **{m: round(v, 4) for m, v in comb_at.items()},
                                               "scorer_alone_f1": round(scorer_at["f1"], 4)},
                               "n": int(len(ys))},
            "attribute_suggestion": {"threshold": round(sug_t, 3), "margin": sug_m,
                                     **{m: round(v, 4) if isinstance(v, float) else v
                                        for m, v in sug_at.items()}},
        },
        "seconds": round(time.perf_counter() - t0, 1),
    }
    art = ProfileCheckArtifact(head=head, mean=mean[columns].astype(np.float32),
                               scale=scale[columns].astype(np.float32), columns=columns,
                               thresholds=thresholds, match_threshold=match_t,
                               match_activity_threshold=act_t, match_combined=comb,
                               match_calibration=calibration, suggest_threshold=sug_t,
                               suggest_margin=sug_m, index=index, card=card)
    art.save(out)
    return art


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None,
                    help="artifact folder (default: the shipped specs/profiles/checker/)")
    ap.add_argument("--validation-share", type=float, default=VALIDATION_SHARE)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = args.out or shipped_artifact_path()
    art = train(out, share=args.validation_share, seed=args.seed, data_dir=args.data_dir)
    import json

    print(json.dumps({k: art.card[k] for k in ("data", "choices", "validation")}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
