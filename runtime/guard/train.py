"""Training the fast tier (`specguard guard train` calls `train_artifact`).

1. Units: every example becomes the units the checker scores (conversation.py's windows); a
   long harmful training text contributes its first and last window (where instructions sit),
   a long benign one up to four windows, all labelled as the text.
2. Members, fitted on the TRAIN part: logistic regression over TF-IDF; an MLP (or logistic
   regression) over each encoder's sentence vectors.
3. Combiners and calibration, fitted on the VALIDATION part (members' out-of-sample logits):
   a logistic regression over the logits of each set of members the cascade can compute, so
   every score is a calibrated P(unsafe).
4. Operating points (strict / balanced / permissive) and the cascade band, chosen on
   VALIDATION: each preset is the lowest threshold keeping the validation look-alikes within
   its bound in every placement (placement.py's validation scenes, scored by the served
   checker). The HELD_OUT part is never read here: figures come from the eval suites.

The card records data counts per part and source, licences, the configuration, validation
figures per group, operating points with their validation recall and false-positive rates,
and reliability (calibration) bins.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..data import Part, get_spec
from ..encoders import EmbeddingCache, default_cache_dir, reads_as_english
from ..errors import ConfigError, require
from .artifact import (
    PRESETS,
    GuardArtifact,
    StageHeads,
    combo_key,
    routed_members,
    tfidf_decides,
)
from .conversation import Segment, units
from .corpus import (
    JAILBREAK,
    NON_COMMERCIAL,
    REQUESTS,
    Example,
    category_map,
    input_examples,
    mapped_categories,
    output_examples,
    summary,
)
from .exemplars import EXEMPLAR_ENCODERS, CategoryExemplars, LabelledText, fit_exemplars
from .features import BLOCKS, WINDOW_TOKENS, Featurizer, Tfidf, finetuned_file
from .heads import LinearHead, MLPHead, logit, sigmoid
from .placement import placed_groups
from .verdict import Stage

# Look-alikes: benign requests that share words with harmful ones. The operating points bound
# how many of them (in the validation part) each may flag.
LOOKALIKE_TAGS = ("xstest_safe", "coconot_contrast", "frr", "lookalike")
PRESET_LOOKALIKE_FPR = {"strict": 0.15, "balanced": 0.08, "permissive": 0.03}
# Where a stage has no look-alikes (the output check), the bound is on all benign examples.
PRESET_BENIGN_FPR = {"strict": 0.10, "balanced": 0.05, "permissive": 0.02}
MIN_LOOKALIKES = 20


@dataclass
class TrainConfig:
    """What the fast tier is made of and how it is fitted."""

    members: tuple[str, ...] = ("tfidf", "minilm", "e5")
    tfidf_C: float = 4.0
    encoder_head: str = "mlp"  # mlp | linear
    encoder_C: float = 1.0  # linear encoder heads
    mlp_hidden: int = 256
    mlp_alpha: float = 1e-3
    cascade: bool = True
    cascade_agreement: float = 0.998  # share of validation decisions the cascade must keep
    # Encoders too slow to run over the whole corpus on a CPU train on every non-English unit
    # plus at most this many English requests (the e5 member only ever scores text that is
    # not English; see _member_rows).
    member_budget: dict[str, int] = field(default_factory=lambda: {"e5": 12000})
    output_members: tuple[str, ...] = ("tfidf", "minilm")  # the output check's members
    finetune_epochs: int = 1
    # Tokens of a unit the fine-tune reads (serving reads windows of 256): 4% of training units
    # are longer than the default, mostly toxicity-corpus texts and jailbreak templates.
    finetune_max_tokens: int = 96
    workdir: Path | None = None  # where fine-tuned files are written before the artifact
    # Reuse the fine-tuned classifier in `workdir` even when the training units changed (an
    # hour of CPU saved; the card records that it was fitted on other units).
    reuse_finetune: bool = False
    # Keep the output stage of this artifact folder instead of training one: retrain the input
    # check alone when only its data changed (the output stage's figures then still hold).
    output_from: Path | None = None
    augment: bool = True
    written_weight: float = 1.0  # training weight of the look-alikes and contrasts written here
    # Also train (and choose) on the requests written for specguard (written.py). Off by
    # default: on the datasets' validation part it cost recall at the balanced point
    # (docs/results/guard.md, "Phrasings no dataset here has").
    written_requests: bool = False
    # Also train on benign passages of answers (corpus._benign_passages): what a pasted
    # document is made of, which a classifier of requests and comments reads as harm.
    passages: bool = False
    output_stage: bool = True
    # Bound the presets on the validation look-alikes sent in every placement of a request
    # (placement.py: the last user turn, the system turn, an earlier turn, the end of a long
    # document; among each of the VALIDATION_SCENES' turns, not the held-out suites'), each
    # placement and scene held to the bound, not only the last user turn: the same look-alike
    # at the end of a document was flagged twice as often (docs/results/guard.md, "Where the
    # request sits").
    placed_presets: bool = True
    # Name a flagged text's categories from its nearest labelled training texts (exemplars.py).
    category_exemplars: bool = True
    taxonomy: str = "beavertails"
    seed: int = 0

    def __post_init__(self) -> None:
        for label, blocks in (("members", self.members), ("output members", self.output_members)):
            unknown = [m for m in blocks if m not in BLOCKS]
            if unknown or "tfidf" not in blocks:
                raise ConfigError(f"{label} must include tfidf and come from {BLOCKS}; got "
                                  f"{blocks}" + (f" ({', '.join(unknown)} unknown)." if unknown
                                                 else "."))
        if self.encoder_head not in ("mlp", "linear"):
            raise ConfigError(f"encoder_head is mlp or linear, not {self.encoder_head!r}.")
        if self.finetune_epochs < 1:
            raise ConfigError(f"finetune_epochs is at least 1, not {self.finetune_epochs}.")
        if not 16 <= self.finetune_max_tokens <= 256:
            raise ConfigError(f"finetune_max_tokens is 16-256 (the served window is 256), not "
                              f"{self.finetune_max_tokens}.")


@dataclass
class Units:
    """The scored units of a list of examples: `owner[i]` is the example unit i belongs to."""

    texts: list[str]
    labels: Any  # (n,) int
    weights: Any  # (n,) float
    owner: Any  # (n,) int index into `examples`
    examples: list[Example]


def make_units(examples: Sequence[Example], stage: Stage, *, training: bool) -> Units:
    import numpy as np

    texts: list[str] = []
    labels, weights, owner = [], [], []
    for i, e in enumerate(examples):
        seg = Segment(-1 if stage is Stage.OUTPUT else 0, "assistant" if stage is Stage.OUTPUT
                      else "user", e.text)
        us = units(stage, [seg], e.request)
        if training and len(us) > 1:
            us = [us[0], us[-1]] if e.harmful else us[:4]
        for u in us:
            texts.append(u.text)
            labels.append(int(e.harmful))
            weights.append(e.weight / len(us))
            owner.append(i)
    return Units(texts, np.array(labels), np.array(weights, dtype=np.float64),
                 np.array(owner), list(examples))


def per_example(units_: Units, unit_scores: Any) -> Any:
    """The riskiest unit's score per example (what the checker decides on)."""
    import numpy as np

    out = np.full(len(units_.examples), -np.inf)
    np.maximum.at(out, units_.owner, unit_scores)
    return out


# --- fitting -----------------------------------------------------------------------------------


def _fit_member(block: str, x: Any, y: Any, w: Any, cfg: TrainConfig) -> LinearHead | MLPHead:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    if block == "tfidf" or cfg.encoder_head == "linear":
        c = cfg.tfidf_C if block == "tfidf" else cfg.encoder_C
        model = LogisticRegression(C=c, max_iter=3000, solver="liblinear")
        model.fit(x, y, sample_weight=w)
        return LinearHead.from_sklearn(model)
    model = MLPClassifier(hidden_layer_sizes=(cfg.mlp_hidden,), alpha=cfg.mlp_alpha,
                          max_iter=60, early_stopping=True, validation_fraction=0.1,
                          n_iter_no_change=6, random_state=cfg.seed)
    model.fit(x, y, sample_weight=w)
    return MLPHead.from_sklearn(model)


def _fit_combiner(z: Any, y: Any, w: Any = None) -> LinearHead:
    """Platt-style calibration over member logits (one column per member), weighted like the
    training data so that no large dataset sets the calibration for all the others."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=10.0, max_iter=1000)
    model.fit(z, y, sample_weight=w)
    return LinearHead.from_sklearn(model)


def _combos(members: Sequence[str]) -> list[tuple[str, ...]]:
    """The member sets the checker computes: TF-IDF alone, TF-IDF with each encoder, and e5
    alone (what reads text that does not read as English; routed_members)."""
    out = [("tfidf",)] + [("tfidf", m) for m in BLOCKS if m in members and m != "tfidf"]
    return out + [("e5",)] if "e5" in members else out


def _reads_requests(e: Example) -> bool:
    """Requests to an assistant, and the requests written here (not the toxicity corpora, not
    attack-transformed text): the English rows the e5 member learns from."""
    return e.domain == REQUESTS or e.source.startswith("written:")


def _member_rows(u: Units, english: Any, budget: int | None, rng: Any) -> Any:
    """All rows, or (with a budget: the e5 member) every non-English row plus at most
    `budget` English rows of requests. e5 scores only text that does not read as English, and
    what it must carry into languages no data here covers is what a request asks for: trained
    with random English rows (mostly toxicity corpora) instead, it caught 0-22% of the
    requests in a language left out of training (docs/results/guard.md)."""
    import numpy as np

    rows = np.arange(len(english))
    if not budget:
        return rows
    requests = np.array([_reads_requests(u.examples[o]) for o in u.owner], dtype=bool)
    pool = rows[english & requests]
    if len(pool) > budget:
        pool = rng.choice(pool, size=budget, replace=False)
    return np.sort(np.concatenate([rows[~english], pool]))


@dataclass
class StageFit:
    heads: StageHeads
    figures: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def sidecar(onnx: Path) -> Path:
    return onnx.with_suffix(".json")


def finetune_key(tu: Any, vu: Any, ft_cfg: Any) -> str:
    """What a fine-tuned classifier depends on: its training and validation units (text, label,
    weight) and its settings. An interrupted training run reuses a classifier with this key."""
    import hashlib

    h = hashlib.sha256(json.dumps(asdict(ft_cfg), sort_keys=True).encode())
    for part_units in (tu, vu):
        for text, label, weight in zip(part_units.texts, part_units.labels, part_units.weights,
                                       strict=True):
            h.update(f"{text}\x00{int(label)}\x00{float(weight):.6g}\x01".encode())
    return h.hexdigest()


def _finetune_sidecar(target: Path) -> dict[str, Any] | None:
    """The sidecar of the classifier at `target` ({"key", "record"}), if both are there."""
    try:
        meta = json.loads(sidecar(target).read_text())
    except (OSError, ValueError):
        return None
    return meta if target.is_file() and "record" in meta else None


def reusable_finetune(target: Path, key: str) -> dict[str, Any] | None:
    """The record of the classifier at `target` when it was trained with this key, else None."""
    meta = _finetune_sidecar(target)
    return meta["record"] if meta is not None and meta.get("key") == key else None


def stale_finetune(target: Path) -> dict[str, Any] | None:
    """The record of the classifier at `target` whatever units it was fitted on, marked so."""
    meta = _finetune_sidecar(target)
    if meta is None:
        return None
    return {**meta["record"], "reused_for_other_units": True,
            "note": "reused with --reuse-finetune: fitted on the training units of an earlier "
            "run, not on this run's"}


def fit_stage(stage: Stage, train: list[Example], val: list[Example], cfg: TrainConfig,
              featurizer_for: Callable[[Tfidf], Featurizer], *,
              say: Callable[[str], None] = lambda _m: None) -> tuple[StageFit, Tfidf]:
    import numpy as np

    tu = make_units(train, stage, training=True)
    vu = make_units(val, stage, training=False)
    say(f"{stage.value}: {len(train)} train examples -> {len(tu.texts)} units; "
        f"{len(val)} validation -> {len(vu.texts)}")
    tfidf = Tfidf.fit(tu.texts)
    feat = featurizer_for(tfidf)
    files: dict[str, Path] = {}
    finetune_record = None
    if "minilm_ft" in cfg.members:
        from .finetune import FinetuneConfig, finetune

        target = (cfg.workdir or default_cache_dir() / "guard-train") / finetuned_file(stage.value)
        ft_cfg = FinetuneConfig(epochs=cfg.finetune_epochs, seed=cfg.seed,
                                max_tokens=cfg.finetune_max_tokens)
        key = finetune_key(tu, vu, ft_cfg)
        finetune_record = reusable_finetune(target, key)
        if finetune_record is not None:
            say(f"  reusing the fine-tuned MiniLM in {target} (same units and settings)")
        elif cfg.reuse_finetune:
            finetune_record = stale_finetune(target)
            if finetune_record is None:
                raise ConfigError(f"No fine-tuned classifier to reuse in {target.parent}.",
                                  hint="Drop --reuse-finetune to fine-tune one, or point "
                                  "--workdir at the folder of an earlier run.")
            say(f"  reusing the fine-tuned MiniLM in {target}, fitted on other units "
                "(--reuse-finetune)")
        else:
            say(f"  fine-tuning MiniLM on {len(tu.texts)} units ({cfg.finetune_epochs} epochs)")
            finetune_record = finetune(tu.texts, tu.labels, tu.weights, vu.texts, vu.labels,
                                       target, cfg=ft_cfg, say=say)
            sidecar(target).write_text(json.dumps({"key": key, "record": finetune_record}))
        feat.finetuned = target
        files[finetuned_file(stage.value)] = target
    en_train = np.array([reads_as_english(t) for t in tu.texts])
    en_val = np.array([reads_as_english(t) for t in vu.texts])
    rng = np.random.default_rng(cfg.seed)
    members: dict[str, LinearHead | MLPHead] = {}
    z_val: dict[str, Any] = {}
    have_val: dict[str, Any] = {}
    x_tfidf_train = None
    for block in cfg.members:
        t = time.perf_counter()
        budget = cfg.member_budget.get(block)
        rows_t = _member_rows(tu, en_train, budget, rng)
        rows_v = _member_rows(vu, en_val, budget and budget // 4, rng)
        xv = feat.block(block, [vu.texts[i] for i in rows_v],
                        progress=_progress(say, f"{block} validation"))
        if block == "minilm_ft":
            # Already a classifier: its logit is the member's (the combiner calibrates it).
            members[block] = LinearHead(np.ones((1, 1), dtype=np.float32), np.zeros(1))
        else:
            xt = feat.block(block, [tu.texts[i] for i in rows_t],
                            progress=_progress(say, f"{block} train"))
            if block == "tfidf":
                x_tfidf_train = xt
            members[block] = _fit_member(block, xt, tu.labels[rows_t], tu.weights[rows_t], cfg)
        z_val[block] = np.zeros(len(vu.texts))
        z_val[block][rows_v] = members[block].score(xv)
        have_val[block] = np.zeros(len(vu.texts), dtype=bool)
        have_val[block][rows_v] = True
        say(f"  member {block}: {len(rows_t)} train units, {time.perf_counter() - t:.0f} s")
    combiners = {}
    for combo in _combos(cfg.members):
        rows = np.logical_and.reduce([have_val[b] for b in combo])
        z = np.column_stack([z_val[b][rows] for b in combo])
        combiners[combo_key(combo)] = _fit_combiner(z, vu.labels[rows], vu.weights[rows])
    # What the checker computes per validation unit: the routed combination (fast.py).
    p_full = np.zeros(len(vu.texts))
    for i in range(len(vu.texts)):
        combo = routed_members(bool(en_val[i]), members, combiners)
        z = np.array([[z_val[b][i] for b in combo]])
        p_full[i] = sigmoid(combiners[combo_key(combo)].score(z))[0]
    p_tfidf = sigmoid(combiners["tfidf"].score(z_val["tfidf"][:, None]))
    cat_ids, cat_head = _category_head(tu, x_tfidf_train, cfg)

    def heads_with(cascade: tuple[float, float] | None) -> StageHeads:
        return StageHeads(members, combiners, cat_ids, "tfidf" if cat_head else None, cat_head,
                          {}, cascade)

    look_texts = [e.text for e in vu.examples if _is_lookalike(e)]
    placed_texts = look_texts if (cfg.placed_presets and stage is Stage.INPUT
                                  and len(look_texts) >= MIN_LOOKALIKES) else []

    def placed(heads_: StageHeads) -> dict[str, Any] | None:
        """The look-alikes' served scores in every placement (None: bounded as sent)."""
        if not placed_texts:
            return None
        checker = _probe_checker(stage, tfidf, heads_, files, feat, cfg.taxonomy)
        return {k: np.array(v) for k, v in placed_groups(checker, placed_texts).items()}

    full_heads = heads_with(None)
    thresholds, op_figures = _operating_points(vu, p_full, placed(full_heads))
    cascade = _cascade_band(vu, p_tfidf, p_full, thresholds, cfg, en_val,
                            members) if (cfg.cascade and len(cfg.members) > 1) else None
    p_served = p_full.copy()
    sure = tfidf_decides(p_tfidf, cascade, en_val, members)
    p_served[sure] = p_tfidf[sure]
    heads = heads_with(cascade)
    if cascade is not None:
        # The band was chosen at the ensemble's thresholds; the presets are then chosen again
        # on what the checker serves, so that what the card says of them holds when served.
        thresholds, op_figures = _operating_points(vu, p_served, placed(heads))
    heads.thresholds = thresholds
    figures = {
        "validation": group_figures(vu, p_served, thresholds["balanced"]),
        "operating_points": op_figures,
        "reliability": reliability(per_example(vu, p_served), _example_labels(vu)),
        "cascade": _cascade_figures(sure, cascade),
        "units": {"train": len(tu.texts), "validation": len(vu.texts)},
    }
    if finetune_record:
        figures["finetune"] = finetune_record
    return StageFit(heads, figures, files), tfidf


def _progress(say: Callable[[str], None], label: str):
    state = {"last": 0.0}

    def tick(done: int, total: int) -> None:
        now = time.monotonic()
        if now - state["last"] > 30 or done == total:
            state["last"] = now
            say(f"  encoding {label}: {done}/{total}")

    return tick


def _example_labels(u: Units):
    import numpy as np

    return np.array([int(e.harmful) for e in u.examples])


# --- choices on validation ---------------------------------------------------------------------


def _is_lookalike(e: Example) -> bool:
    return not e.harmful and any(t in LOOKALIKE_TAGS for t in e.tags)


def is_request(e: Example) -> bool:
    """What harmful-request recall counts: requests to an assistant, bare or in a jailbreak
    template, and the requests written for specguard. Attack-transformed ones are the guard's
    own writing (domain `written`) and are not counted."""
    return e.domain in (REQUESTS, JAILBREAK) or e.source.startswith("written")


def _operating_points(vu: Units, p_units: Any, placed: dict[str, Any] | None = None
                      ) -> tuple[dict[str, float], dict[str, Any]]:
    """Per preset, the lowest threshold whose look-alike false-positive rate on validation is
    within the preset's bound (catching the most harm that bound allows); on all benign
    examples where the stage has too few look-alikes. `placed`: the look-alikes' served scores
    in each placement, each placement held to the bound (threshold_everywhere)."""
    import numpy as np

    p = per_example(vu, p_units)
    y = _example_labels(vu)
    look = np.array([_is_lookalike(e) for e in vu.examples])
    bounds = PRESET_LOOKALIKE_FPR
    if look.sum() < MIN_LOOKALIKES:
        look, bounds, placed = y == 0, PRESET_BENIGN_FPR, None
    bounded = list(placed.values()) if placed else [p[look]]
    req = np.array([is_request(e) for e in vu.examples])
    thresholds, figures = {}, {}
    for preset in PRESETS:
        t = threshold_everywhere(bounded, bounds[preset])
        thresholds[preset] = t
        harmful_req = (y == 1) & req
        figures[preset] = {
            "threshold": round(t, 4),
            "lookalike_fpr": max(_rate(s >= t) for s in bounded),  # where it is highest
            "harmful_request_recall": _rate(p[harmful_req] >= t),
            "recall": _rate(p[y == 1] >= t),
            "fpr": _rate(p[y == 0] >= t),
            "n_lookalike": int(look.sum()),
        }
        if placed:
            figures[preset]["lookalike_fpr_by_placement"] = {
                where: _rate(s >= t) for where, s in placed.items()}  # and by scene
    return thresholds, figures


def _probe_checker(stage: Stage, tfidf: Tfidf, heads: StageHeads, files: dict[str, Path],
                   feat: Featurizer, taxonomy: str) -> Any:
    """The served checker of heads still in training (its rows encoded and cached as served),
    to score whole conversations on validation."""
    from .fast import FastChecker

    probe = GuardArtifact("probe", {stage: tfidf}, {stage: heads}, {}, taxonomy, files=files)
    return FastChecker(probe, featurizer=feat, cache_size=0, categories="head")


def threshold_within(p_benign: Any, bound: float) -> float:
    """The lowest threshold (catching the most harm) that flags at most `bound` of these benign
    scores, on a grid of 0.02-0.98 and the scores themselves, kept within [0.05, 0.95]."""
    import numpy as np

    p_benign = np.asarray(p_benign, dtype=float)
    grid = np.unique(np.concatenate([np.linspace(0.02, 0.98, 97), p_benign]))
    ok = [t for t in grid if len(p_benign) == 0 or (p_benign >= t).mean() <= bound]
    t = float(min(ok)) if ok else 0.98
    return round(min(max(t, 0.05), 0.95), 4)


def threshold_everywhere(p_benign_by_place: Sequence[Any], bound: float) -> float:
    """The lowest threshold that keeps each of these groups of benign scores (one per
    placement) within `bound`: a pooled rate would let a placement that flags nothing pay for
    one that flags twice the bound."""
    return max(threshold_within(s, bound) for s in p_benign_by_place)


def _rate(mask: Any) -> float | None:
    return round(float(mask.mean()), 4) if len(mask) else None


def _cascade_band(vu: Units, p_tfidf: Any, p_full: Any, thresholds: dict[str, float],
                  cfg: TrainConfig, english: Any, members: dict[str, Any]
                  ) -> tuple[float, float] | None:
    """The widest (lo, hi) outside which TF-IDF alone decides, changing at most
    1 - cascade_agreement of validation unit decisions at every preset's threshold: of all
    units, of the requests' and of the look-alikes' on their own."""
    import numpy as np

    # Requests (and what the guard wrote) and look-alikes must agree on their own: they are a
    # minority of the validation units, the cases a user checks first, and what the presets
    # are chosen on. Checked at the balanced threshold alone, a band let TF-IDF flag a
    # look-alike at 0.97 that the ensemble scored 0.84, and the permissive preset, bound to one
    # look-alike in 60, lost a sixth of its recall.
    groups = [np.ones(len(vu.owner), dtype=bool),
              np.array([vu.examples[o].domain in (REQUESTS, JAILBREAK, "written")
                        for o in vu.owner]),
              np.array([_is_lookalike(vu.examples[o]) for o in vu.owner])]
    groups = [g for g in groups if g.any()]
    ts = sorted(set(thresholds.values()))
    best, best_skip = None, 0.0
    for lo in (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.15, 0.2):
        for hi in (1.0, 0.999, 0.995, 0.99, 0.98, 0.97, 0.95, 0.9, 0.85, 0.8):
            if lo >= ts[0] or hi <= ts[-1]:
                continue
            sure = tfidf_decides(p_tfidf, (lo, hi), english, members)
            agree = min(
                (np.where(sure, p_tfidf >= t, p_full >= t) == (p_full >= t))[g].mean()
                for t in ts for g in groups)
            if agree >= cfg.cascade_agreement and sure.mean() > best_skip:
                best, best_skip = (lo, hi), float(sure.mean())
    return best


def _cascade_figures(sure: Any, band: tuple[float, float] | None) -> dict[str, Any]:
    if band is None:
        return {"band": None, "decided_by_tfidf": 0.0}
    return {"band": list(band), "decided_by_tfidf": round(float(sure.mean()), 4)}


def reliability(p: Any, y: Any, bins: int = 10) -> list[dict[str, Any]]:
    """Calibration bins: mean predicted P(unsafe) vs the observed unsafe share."""
    import numpy as np

    out = []
    edges = np.linspace(0, 1, bins + 1)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (p >= lo) & ((p < hi) if hi < 1 else (p <= hi))
        if m.sum():
            out.append({"bin": [round(float(lo), 2), round(float(hi), 2)], "n": int(m.sum()),
                        "mean_p": round(float(p[m].mean()), 4),
                        "observed": round(float(y[m].mean()), 4)})
    return out


def expected_calibration_error(bins: list[dict[str, Any]]) -> float:
    n = sum(b["n"] for b in bins) or 1
    return sum(b["n"] * abs(b["mean_p"] - b["observed"]) for b in bins) / n


def group_figures(u: Units, p_units: Any, threshold: float) -> dict[str, Any]:
    """Per evaluation group: n, recall / false-positive rate / F1 / AUPRC at `threshold`."""
    import numpy as np

    p = per_example(u, p_units)
    y = _example_labels(u)
    ex = u.examples
    if ex and ex[0].stage is Stage.OUTPUT:
        groups = {"all": np.ones(len(ex), dtype=bool)}
        for source in sorted({e.source for e in ex}):
            groups[source] = np.array([e.source == source for e in ex])
        return _figures(groups, y, p, threshold)
    groups: dict[str, Any] = {
        "all": np.ones(len(ex), dtype=bool),
        "harmful_requests_vs_benign_requests": np.array(
            [e.domain == REQUESTS and e.source not in ("openai_moderation", "toxicchat")
             and not any(t.startswith("lang:") and t != "lang:en" for t in e.tags)
             for e in ex]),
        "jailbreak_wrapped": np.array(["jailbreak_wrapped" in e.tags for e in ex]),
        "attack_transformed": np.array([any(t.startswith("attack:") for t in e.tags) for e in ex]),
        "lookalikes": np.array([_is_lookalike(e) for e in ex]),
        "openai_moderation": np.array([e.source == "openai_moderation" for e in ex]),
        "toxicchat": np.array([e.source == "toxicchat" for e in ex]),
        "hate": np.array([e.source in ("davidson_hate_offensive", "toxigen_seeds") for e in ex]),
        "abuse_to_chatbots": np.array([e.source == "convabuse" for e in ex]),
    }
    for lang in ("zh", "it", "vi", "ar"):
        groups[f"multijail_{lang}"] = np.array([f"lang:{lang}" in e.tags for e in ex])
    return _figures(groups, y, p, threshold)


def _figures(groups: dict[str, Any], y: Any, p: Any, threshold: float) -> dict[str, Any]:
    from sklearn.metrics import average_precision_score, f1_score

    out: dict[str, Any] = {}
    for name, m in groups.items():
        if not m.any():
            continue
        yy, pp = y[m], p[m]
        pred = pp >= threshold
        row: dict[str, Any] = {"n": int(m.sum()), "harmful": int(yy.sum())}
        if yy.sum():
            row["recall"] = round(float(pred[yy == 1].mean()), 4)
        if (yy == 0).sum():
            row["fpr"] = round(float(pred[yy == 0].mean()), 4)
        if 0 < yy.sum() < len(yy):
            row["f1"] = round(float(f1_score(yy, pred)), 4)
            row["auprc"] = round(float(average_precision_score(yy, pp)), 4)
        out[name] = row
    return out


def _category_head(tu: Units, x_tfidf: Any, cfg: TrainConfig
                   ) -> tuple[list[str], LinearHead | None]:
    """One-vs-rest logistic regressions over TF-IDF: P(category | unsafe), fitted on harmful
    training units whose dataset label maps onto the taxonomy (category_map.yaml)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    mapping = category_map().get(cfg.taxonomy, {})
    rows, cats = [], []
    for i, owner in enumerate(tu.owner):
        e = tu.examples[owner]
        if e.harmful:
            mapped = mapped_categories(e, mapping)
            if mapped:
                rows.append(i)
                cats.append(mapped)
    ids = sorted({c for cs in cats for c in cs})
    if len(ids) < 2:
        return [], None
    x = x_tfidf[rows]
    coef, intercept = [], []
    for cid in ids:
        y = np.array([cid in cs for cs in cats], dtype=int)
        if y.sum() == 0 or y.sum() == len(y):
            coef.append(np.zeros(x.shape[1], dtype=np.float32))
            intercept.append(-10.0 if y.sum() == 0 else 10.0)
            continue
        m = LogisticRegression(C=4.0, max_iter=2000, solver="liblinear", class_weight="balanced")
        m.fit(x, y)
        coef.append(m.coef_[0].astype(np.float32))
        intercept.append(float(m.intercept_[0]))
    return ids, LinearHead(np.vstack(coef), np.array(intercept))


def labelled_category_texts(examples: Sequence[Example], taxonomy: str, *,
                            toxicity_per_category: int = 150, seed: int = 0
                            ) -> tuple[list[LabelledText], list[LabelledText]]:
    """The (train, validation) texts whose dataset label maps onto the taxonomy: every such
    request, and up to `toxicity_per_category` toxicity-corpus texts per category and part (19,000
    hate texts would otherwise surround every request)."""
    import random

    mapping = category_map().get(taxonomy, {})
    rng = random.Random(seed)
    parts: dict[Part, list[LabelledText]] = {Part.TRAIN: [], Part.VALIDATION: []}
    toxic: dict[tuple[Part, str], list[LabelledText]] = {}
    for e in examples:
        if not e.harmful or e.part not in parts or any(
                t.startswith("attack:") or t == "jailbreak_wrapped" for t in e.tags):
            continue  # exemplars are the requests as written, not their attack transforms
        cats = frozenset(mapped_categories(e, mapping))
        if not cats:
            continue
        if e.domain == "toxicity":
            toxic.setdefault((e.part, min(cats)), []).append(
                LabelledText(e.text, cats, "toxicity"))
        else:
            parts[e.part].append(LabelledText(e.text, cats, "requests"))
    for (part, _), items in sorted(toxic.items(), key=lambda kv: (kv[0][0].value, kv[0][1])):
        rng.shuffle(items)
        parts[part] += items[:toxicity_per_category]
    return parts[Part.TRAIN], parts[Part.VALIDATION]


def fit_category_exemplars(artifact: GuardArtifact, examples: Sequence[Example], *,
                           say: Callable[[str], None] = print) -> CategoryExemplars:
    """Category exemplars for the artifact's input stage, from `examples` (train and validation
    parts, as `input_examples` gives them without attack transforms)."""
    from ..encoders import load_encoder

    heads = artifact.stages[Stage.INPUT]
    train, val = labelled_category_texts(examples, artifact.taxonomy)
    ids = heads.category_ids or sorted({c for t in [*train, *val] for c in t.categories})
    encoders = {name: load_encoder(name, max_tokens=WINDOW_TOKENS) for name in EXEMPLAR_ENCODERS}
    ex = fit_exemplars(train, val, ids, encoders, progress=say)
    say(f"category exemplars: k={ex.k}, named at {ex.confidence:.0%}; validation "
        + "; ".join(f"{d}: F1 {f['f1']:.2f}, a right one named {f['right']:.1%}, only wrong "
                    f"{f['wrong']:.1%}"
                    for d, f in ex.record["validation"].items()))
    return ex


# --- the whole artifact -----------------------------------------------------------------------


def train_artifact(cfg: TrainConfig, *, data_root: str | Path | None = None,
                   name: str = "fast_default", cache: EmbeddingCache | None = None,
                   input_data: list[Example] | None = None,
                   output_data: list[Example] | None = None,
                   say: Callable[[str], None] = print) -> GuardArtifact:
    """Train on TRAIN, choose on VALIDATION; never reads HELD_OUT. `input_data` /
    `output_data` replace the built-in corpus (a user's own data, already split)."""
    require("sklearn", "guard")
    cache = cache if cache is not None else EmbeddingCache()
    started = time.time()
    t_parts = (Part.TRAIN, Part.VALIDATION)
    inputs = input_data if input_data is not None else input_examples(
        data_root, seed=cfg.seed, augment=cfg.augment, parts=t_parts,
        written_weight=cfg.written_weight, written_requests=cfg.written_requests,
        passages=cfg.passages)
    stages_data = {Stage.INPUT: inputs}
    kept = _kept_output_stage(cfg.output_from) if cfg.output_from is not None else None
    if cfg.output_stage and kept is None:
        stages_data[Stage.OUTPUT] = output_data if output_data is not None else output_examples(
            data_root, seed=cfg.seed, parts=t_parts)
    tfidfs: dict[Stage, Tfidf] = {}
    heads: dict[Stage, StageHeads] = {}
    figures: dict[str, Any] = {}
    counts: dict[str, Any] = {}
    files: dict[str, Path] = {}
    for stage, examples in stages_data.items():
        train = [e for e in examples if e.part is Part.TRAIN]
        val = [e for e in examples if e.part is Part.VALIDATION]
        if not train or not val or len({e.harmful for e in val}) < 2:
            raise ConfigError(f"{stage.value} stage: training needs both labels in the train and "
                              f"validation parts (got {len(train)} train, {len(val)} validation).",
                              hint="Check the data directory, or give a larger dataset.")
        stage_cfg = cfg if stage is Stage.INPUT else replace(cfg, members=cfg.output_members)
        fit, tfidf = fit_stage(stage, train, val, stage_cfg,
                               lambda t: Featurizer(t, cache=cache), say=say)
        tfidfs[stage], heads[stage] = tfidf, fit.heads
        files.update(fit.files)
        figures[stage.value] = fit.figures
        counts[stage.value] = summary(examples)
    if cfg.category_exemplars and heads[Stage.INPUT].category_ids:
        probe = GuardArtifact(name, tfidfs, heads, {}, cfg.taxonomy, files=files)
        try:
            heads[Stage.INPUT].category_exemplars = fit_category_exemplars(probe, inputs, say=say)
        except ValueError as exc:  # no labelled texts in one of the parts: the head names alone
            say(f"no category exemplars: {exc}")
    sources = sorted({e.source.split(":")[0] for ex in stages_data.values() for e in ex})
    if kept is not None:
        tfidfs[Stage.OUTPUT] = kept.tfidf[Stage.OUTPUT]
        heads[Stage.OUTPUT] = kept.stages[Stage.OUTPUT]
        kept_file = kept.file(finetuned_file(Stage.OUTPUT.value))
        if kept_file is not None:  # an output stage with a fine-tuned member
            files[kept_file.name] = kept_file
        figures["output"] = kept.card.get("validation", {}).get("output")
        counts["output"] = kept.card.get("data", {}).get("output")
        sources = sorted(set(sources) | set(kept.card.get("licences", {})))
    card = {
        "intended_use": ("The fast tier of specguard's input and output checks: a calibrated "
                         "P(unsafe) for each client-written turn (and the draft answer), in "
                         "front of an optional deliberative guard model. Not a substitute for "
                         "human review of high-stakes decisions."),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "training_seconds": round(time.time() - started, 1),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "split": ("specguard.data parts: train fits the members, validation fits calibration, "
                  "operating points and the cascade band; held_out (never read here) gives "
                  "the published figures. Near-duplicates of held-out records are excluded "
                  "from train and validation (runtime/data/near_duplicates.json)."),
        "data": counts,
        "licences": {s: _licence(s) for s in sources},
        "non_commercial_sources": [s for s in sources if s in NON_COMMERCIAL],
        "validation": figures,
        "environment": {"python": platform.python_version(), "machine": platform.machine()},
    }
    if kept is not None:
        earlier = kept.card.get("output_stage_kept") or {}  # kept more than once: its origin
        card["output_stage_kept"] = {
            "from": str(cfg.output_from),
            "trained": earlier.get("trained") or kept.card.get("created"),
            "note": "The output stage is this artifact's, unchanged (--output-from); its "
                    "validation figures and data counts are copied from its card."}
    return GuardArtifact(name, tfidfs, heads, card, cfg.taxonomy, files=files)


def _kept_output_stage(folder: Path) -> GuardArtifact:
    from .fast import load_artifact  # a folder, or a shipped artifact's name

    art = load_artifact(folder)
    if Stage.OUTPUT not in art.stages:
        raise ConfigError(f"{folder} has no output stage to keep.",
                          hint="Name an artifact trained with its output stage, or drop "
                          "--output-from to train one.")
    return art


def _licence(source: str) -> str:
    if source == "written":
        return "written for specguard (Apache-2.0)"
    if source == "moderation_as_answer":
        source = "openai_moderation"
    try:
        return get_spec(source).license
    except ConfigError:
        return "user data"


def logit_safe(p: Any) -> Any:  # re-exported for bench scripts
    return logit(p)
