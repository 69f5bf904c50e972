"""The fast tier: trained heads over small sentence encoders that ship inside PyPI wheels, so
the same guard serves every backend (embedded, litellm, vLLM, OpenAI-compatible) without the
serving model.

Per unit of text (a window of a turn; see conversation.py) the score is a calibrated
P(unsafe), computed as a cascade: TF-IDF first (about a millisecond); the English encoder
(MiniLM) only when TF-IDF alone is not sure; the multilingual one (e5), alone, for text that
does not read as English (encoders.reads_as_english). The riskiest unit decides, and the
verdict names its turn, role and window.

Artifacts are folders of JSON and NPZ (artifact.py). A legacy `.joblib` artifact from
specguard 0.1 still loads through legacy.py, with a warning: unpickling runs code.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .artifact import GuardArtifact, StageHeads, combo_key, routed_members, tfidf_decides
from .conversation import Unit, pair_text, request_units
from .features import (
    BLOCKS,
    Featurizer,
    clear_windows_cache,
    finetuned_file,
    reads_as_english,
    windows,
)
from .heads import sigmoid
from .verdict import CheckRequest, Label, Stage, Tier, Verdict
from .views import clear_cache as clear_views_cache

DEFAULT_ARTIFACT = "fast_default"  # specs/guard/fast_default/ (card.json + weights.npz)
SHIPPED_ARTIFACTS = (DEFAULT_ARTIFACT,)
CATEGORY_CONFIDENCE = 0.5  # a category is named only when its head is at least this sure
CATEGORY_TOP = 3  # and at most this many, most likely first
CATEGORY_SOURCES = ("exemplars", "head")
# warm(): one English text (MiniLM's route) and one that is not (e5's route).
WARM_TEXTS = ("Hello, how are you?", "Bonjour, comment allez-vous aujourd'hui ?")
# Unit scores kept per checker. A chat resends its system prompt and every earlier turn with
# each request, and the input check scores every turn: without the cache a conversation's
# check cost grows with its length. Scores do not depend on the policy (thresholds apply
# after), so tenants share entries; keys are digests, not the client's text. A deployment
# that must not let one tenant's timing reveal another's texts sets SPECGUARD_GUARD_CACHE=0.
UNIT_CACHE_SIZE = 8192
# At most this many units of one check TF-IDF is unsure of go to an encoder, the ones it finds
# riskiest (see FastChecker._score_within_budget). TF-IDF reads every window of every turn (a
# request in the middle of a 1 MB document is not skipped), and a check's encoder time stays
# bounded: a 1 MB document is thousands of units, minutes of MiniLM on one core.
ENCODER_UNITS = 64
# The encoder reads each turn's ends first: the first and last this many of its windows and of
# its paragraphs (instructions sit at the ends of a pasted document; TF-IDF's rank alone lost
# requests there that it scored low among a 1 MB document's thousands of units).
END_UNITS = 4
# Past the budget, the units TF-IDF scores at or above the check's threshold are still read,
# up to this many times the budget (a crafted document cannot make a check read 4,500).
ENCODER_UNITS_CAP = 4


@dataclass(frozen=True)
class UnitScore:
    """The fast tier's reading of one unit: calibrated P(unsafe), each category's probability
    given unsafe, and which members computed it."""

    p_unsafe: float
    categories: dict[str, float]
    members: str


def shipped_artifact_path(name: str = DEFAULT_ARTIFACT) -> Path | None:
    """The folder of an artifact shipped in specs/guard/, if present."""
    p = resources.files("specguard.specs") / "guard" / name
    path = Path(str(p))
    return path if (path / "card.json").is_file() else None


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int) -> GuardArtifact:
    # Read-only once loaded: every guard in the process shares one copy.
    return GuardArtifact.load(path)


def load_artifact(name_or_path: str | Path) -> GuardArtifact:
    """A shipped artifact by name, or a folder (card.json + weights.npz)."""
    shipped = shipped_artifact_path(str(name_or_path)) if not Path(name_or_path).exists() else None
    path = shipped or Path(name_or_path)
    if not path.exists():
        raise ConfigError(
            f"No fast-tier artifact {name_or_path!r}.",
            hint=f"Name a shipped one ({', '.join(SHIPPED_ARTIFACTS)}), a folder from "
            "`specguard guard train`, or a legacy .joblib file.")
    card = path / "card.json"
    return _load_cached(str(path), card.stat().st_mtime_ns if card.exists() else 0)


class FastChecker:
    """The trained fast tier. Scoring is CPU work: `check` runs it in a worker thread, so the
    event loop keeps serving other requests while a long document is scored."""

    tier = Tier.FAST

    def __init__(self, artifact: GuardArtifact, *, cascade: bool = True,
                 taxonomy: str | None = None, featurizer: Featurizer | None = None,
                 members: Sequence[str] | None = None,
                 cache_size: int | None = None, categories: str | None = None,
                 encoder_units: int | None = None) -> None:
        if cache_size is None:
            cache_size = _env_count("SPECGUARD_GUARD_CACHE", UNIT_CACHE_SIZE,
                                    "0 turns the fast tier's unit-score cache off; the default "
                                    f"is {UNIT_CACHE_SIZE}.")
        if encoder_units is None:
            encoder_units = _env_count("SPECGUARD_GUARD_ENCODER_UNITS", ENCODER_UNITS,
                                       f"the default is {ENCODER_UNITS} units per check.")
        if encoder_units < 1:
            raise ConfigError(f"encoder_units must be >= 1, not {encoder_units}.",
                              hint="It bounds how many units of one check an encoder reads "
                              f"(SPECGUARD_GUARD_ENCODER_UNITS; the default is {ENCODER_UNITS}).")
        self.encoder_units = encoder_units
        # Where a flagged verdict's categories come from: its nearest labelled training texts
        # (an encoder pass per new flagged text) or the TF-IDF head (free, less often right).
        self.categories = categories or os.environ.get("SPECGUARD_GUARD_CATEGORIES",
                                                       "").strip() or "exemplars"
        if self.categories not in CATEGORY_SOURCES:
            raise ConfigError(f"categories must be one of {', '.join(CATEGORY_SOURCES)}, not "
                              f"{self.categories!r} (SPECGUARD_GUARD_CATEGORIES).",
                              hint="'head' names categories with the TF-IDF head alone: no "
                              "encoder pass for a flagged text, at the cost of accuracy "
                              "(docs/results/guard.md).")
        if cache_size < 0:
            raise ConfigError(f"cache_size must be >= 0, not {cache_size}.",
                              hint="0 turns the unit-score cache off.")
        self.artifact = artifact
        self.cascade = cascade
        self.taxonomy = taxonomy or artifact.taxonomy
        # A subset of the members (e.g. ("tfidf",): the TF-IDF baseline of the same artifact).
        self.members = tuple(members) if members else None
        suffix = f"[{'+'.join(self.members)}]" if self.members else ""
        self.name = f"fast:{artifact.name}{suffix}"
        self._featurizers = {
            stage: featurizer or Featurizer(artifact.tfidf[stage],
                                            finetuned=artifact.file(finetuned_file(stage.value)),
                                            row_alone=True)  # a score owes nothing to its batch
            for stage in artifact.stages}
        self.cache_size = cache_size
        self._cache: OrderedDict[bytes, UnitScore] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.cache_hits = 0
        self.cache_misses = 0

    def forget(self) -> None:
        """Drop every score and vector remembered of client texts (this checker's, and the
        process-wide views and windows): after a deletion request, or to measure what a text
        never seen before costs."""
        with self._cache_lock:
            self._cache.clear()
        for feat in self._featurizers.values():
            feat.forget()
        clear_views_cache()
        clear_windows_cache()

    @classmethod
    def from_path(cls, path: str | Path, **kwargs: Any) -> FastChecker:
        return cls(load_artifact(path), **kwargs)

    def heads(self, stage: Stage) -> StageHeads:
        heads = self.artifact.stages.get(stage) or self.artifact.stages.get(Stage.INPUT)
        if heads is None:
            raise ConfigError(f"The artifact {self.artifact.name!r} has no {stage} heads.",
                              hint="Retrain it with `specguard guard train`.")
        return heads

    def threshold(self, stage: Stage, operating_point: str = "balanced") -> float:
        return float(self.heads(stage).thresholds.get(str(operating_point), 0.5))

    # -- scoring ------------------------------------------------------------------------------

    def score_units(self, texts: Sequence[str], stage: Stage = Stage.INPUT, *,
                    cascade: bool | None = None, tfidf_only: bool = False) -> list[UnitScore]:
        """Calibrated scores of unit texts (already windowed), batched. Texts scored before
        (and repeats within the batch) are scored once: see UNIT_CACHE_SIZE. `tfidf_only`:
        TF-IDF's calibrated score alone (what the cascade gives a unit TF-IDF is sure of)."""
        if not texts:
            return []
        cascade = self.cascade if cascade is None else cascade
        if self.cache_size == 0:
            return self._score_fresh(list(texts), stage, cascade, tfidf_only)
        keys = [_unit_key(stage, "tfidf" if tfidf_only else cascade, t) for t in texts]
        found: dict[bytes, UnitScore] = {}
        with self._cache_lock:
            for k in keys:
                hit = self._cache.get(k)
                if hit is not None:
                    self._cache.move_to_end(k)
                    found[k] = hit
        todo: dict[bytes, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in found:
                todo.setdefault(k, t)
        fresh = (self._score_fresh(list(todo.values()), stage, cascade, tfidf_only)
                 if todo else [])
        with self._cache_lock:
            self.cache_hits += len(keys) - len(todo)
            self.cache_misses += len(todo)
            for k, s in zip(todo, fresh, strict=True):
                self._cache[k] = s
                found[k] = s
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return [found[k] for k in keys]

    def _serving_heads(self, stage: Stage) -> StageHeads:
        """The stage's heads, restricted to the members this checker uses."""
        heads = self.heads(stage)
        if self.members:
            heads = replace(heads, members={b: h for b, h in heads.members.items()
                                            if b in self.members})
        return heads

    def _score_fresh(self, texts: list[str], stage: Stage, cascade: bool,
                     tfidf_only: bool = False) -> list[UnitScore]:
        import numpy as np

        heads = self._serving_heads(stage)
        feat = self._featurizers.get(stage) or self._featurizers[Stage.INPUT]
        texts = list(texts)
        n = len(texts)
        x_tfidf = feat.block("tfidf", texts)
        z: dict[str, Any] = {"tfidf": heads.members["tfidf"].score(x_tfidf)}
        have = {"tfidf": np.ones(n, dtype=bool)}
        need = np.ones(n, dtype=bool)
        # The language test only routes units to an encoder, which a TF-IDF-only pass never does
        # (and the budget's path runs it once in _wants_encoder): skipped there.
        english = (np.ones(n, dtype=bool) if tfidf_only else
                   np.array([reads_as_english(t) for t in texts], dtype=bool))
        if tfidf_only:
            need = np.zeros(n, dtype=bool)
        elif cascade and heads.cascade and "tfidf" in heads.combiners:
            p0 = sigmoid(heads.combiners["tfidf"].score(z["tfidf"][:, None]))
            need = ~tfidf_decides(p0, heads.cascade, english, heads.members)
        route = [routed_members(bool(e), heads.members, heads.combiners) for e in english]
        for block in BLOCKS[1:]:
            mask = need & np.array([block in r for r in route], dtype=bool)
            if block not in heads.members or not mask.any():
                continue
            idx = np.flatnonzero(mask)
            logits = heads.members[block].score(feat.block(block, [texts[i] for i in idx],
                                                           remember=self.cache_size > 0))
            full = np.zeros(n)
            full[idx] = logits
            z[block], have[block] = full, mask
        p = np.zeros(n)
        used = [""] * n
        for i in range(n):
            members = tuple(b for b in route[i] if b in z and have[b][i]) or ("tfidf",)
            key = combo_key(members)
            while key not in heads.combiners and len(members) > 1:
                members = members[:-1]  # an artifact without that combination: fewer members
                key = combo_key(members)
            row = np.array([[z[b][i] for b in members]])
            p[i] = float(sigmoid(heads.combiners[key].score(row))[0])
            used[i] = key
        cats = self._categories(heads, stage, x_tfidf)
        return [UnitScore(float(p[i]), cats[i], used[i]) for i in range(n)]

    def _categories(self, heads: StageHeads, stage: Stage, x_tfidf: Any) -> list[dict[str, float]]:
        n = x_tfidf.shape[0]
        if heads.category_head is None or not heads.category_ids:
            return [{} for _ in range(n)]
        q = sigmoid(heads.category_head.logits(x_tfidf))
        return [{c: float(v) for c, v in zip(heads.category_ids, row, strict=True)} for row in q]

    # -- checks --------------------------------------------------------------------------------

    def verdicts(self, requests: Sequence[CheckRequest]) -> list[Verdict]:
        """Verdicts for many requests, every unit of every request scored in one batch per
        stage. Synchronous: `check` / `check_many` run it off the event loop."""
        start = time.perf_counter()
        out: list[Verdict | None] = [None] * len(requests)
        for stage in (Stage.INPUT, Stage.OUTPUT):
            idx = [i for i, r in enumerate(requests) if r.stage is stage]
            if not idx:
                continue
            per: dict[int, list[Unit]] = {i: request_units(stage, requests[i].messages,
                                                           requests[i].response) for i in idx}
            thresholds = {i: self._threshold_for(requests[i], stage) for i in idx}
            scored, over = self._score_within_budget(stage, per, thresholds)
            best: dict[int, tuple[Unit, UnitScore]] = {}
            for i in idx:  # in unit order: the first of equally risky units is named
                for k, u in enumerate(per[i]):
                    s = scored.get((i, k))
                    if s is not None and (i not in best or s.p_unsafe > best[i][1].p_unsafe):
                        best[i] = (u, s)
            for i in idx:
                u, s = best[i]
                out[i] = self._verdict(requests[i], stage, u, s, thresholds[i],
                                       over.get(i, 0), len(per[i]))
            self._name_from_exemplars(stage, [(i, best[i][0]) for i in idx
                                              if out[i].label is Label.UNSAFE], out)
        per_request = (time.perf_counter() - start) * 1000 / max(1, len(requests))
        return [v.model_copy(update={"latency_ms": per_request}) for v in out if v is not None]

    def _score_within_budget(self, stage: Stage, per: dict[int, list[Unit]],
                             thresholds: dict[int, float]
                             ) -> tuple[dict[tuple[int, int], UnitScore], dict[int, int]]:
        """The scores that decide each check ((check, unit index) -> score), and per check how
        many units no encoder read. A check with more units for an encoder than
        `encoder_units` is read by TF-IDF first; the encoder then reads, among the units TF-IDF
        is unsure of (all units, without the cascade), each turn's ends (END_UNITS) and then
        those TF-IDF finds riskiest, and past the
        budget every one TF-IDF scores at or above the check's threshold, up to
        ENCODER_UNITS_CAP times the budget. A unit TF-IDF is unsure of and no encoder read does
        not count: on a long benign document, counting TF-IDF's reading of such units flagged
        the document itself. Past the cap, units TF-IDF scores at or above the threshold count
        with its score (the check fails closed). Remembered full scores cost nothing."""
        import numpy as np

        scored: dict[tuple[int, int], UnitScore] = {}
        over: dict[int, int] = {}
        full: list[tuple[int, int]] = []
        for i, units_i in per.items():
            if len(units_i) <= self.encoder_units:
                full += [(i, k) for k in range(len(units_i))]
                continue
            texts = [u.text for u in units_i]
            light = self.score_units(texts, stage, tfidf_only=True)
            p0 = np.array([s.p_unsafe for s in light])
            wants = self._wants_encoder(stage, texts, p0)
            free = wants & self._remembered(stage, texts)
            ends = _turn_ends(units_i)
            ranked = sorted(np.flatnonzero(wants & ~free), key=lambda k: (not ends[k], -p0[k], k))
            budget, cap = self.encoder_units, self.encoder_units * ENCODER_UNITS_CAP
            # Past the budget, any unit at or above the threshold is read, up to the cap.
            read = ranked[:budget] + [k for k in ranked[budget:cap] if p0[k] >= thresholds[i]]
            unread = sorted(set(ranked) - set(read))
            over[i] = len(unread)
            full += [(i, int(k)) for k in sorted(set(read) | set(np.flatnonzero(free)))]
            for k in np.flatnonzero(~wants):  # TF-IDF is sure of it: the cascade's reading
                scored[(i, int(k))] = light[k]
            for k in unread:
                if p0[k] >= thresholds[i]:  # past the cap: TF-IDF's reading stands
                    scored[(i, int(k))] = light[k]
        scores = self.score_units([per[i][k].text for i, k in full], stage)
        scored.update(zip(full, scores, strict=True))
        return scored, over

    def _wants_encoder(self, stage: Stage, texts: Sequence[str], p_tfidf: Any) -> Any:
        """Which units the checker sends to an encoder, given TF-IDF's calibrated scores."""
        import numpy as np

        heads = self._serving_heads(stage)
        if not any(b in heads.members for b in BLOCKS[1:]):
            return np.zeros(len(texts), dtype=bool)
        if not (self.cascade and heads.cascade and "tfidf" in heads.combiners):
            return np.ones(len(texts), dtype=bool)
        english = [reads_as_english(t) for t in texts]
        return ~tfidf_decides(p_tfidf, heads.cascade, english, heads.members)

    def _remembered(self, stage: Stage, texts: Sequence[str]) -> Any:
        """Which texts have a full score in the unit cache."""
        import numpy as np

        with self._cache_lock:
            return np.array([_unit_key(stage, self.cascade, t) in self._cache for t in texts],
                            dtype=bool)

    def exemplar_categories(self, texts: Sequence[str], stage: Stage = Stage.INPUT
                            ) -> list[dict[str, float]] | None:
        """Per text, the share of its nearest labelled training texts in each category (None
        when the artifact has no category exemplars for the stage)."""
        ex = self.heads(stage).category_exemplars
        if self.categories == "head" or (self.members is not None
                                         and set(self.members) <= {"tfidf"}):
            ex = None  # the head names them (asked for; or the TF-IDF baseline: no encoder)
        if ex is None or not texts:
            return None if ex is None else []
        feat = self._featurizers.get(stage) or self._featurizers[Stage.INPUT]

        def derive(batch: list[str]) -> list[tuple[float, ...]]:
            routes = [ex.encoder_for(t) for t in batch]
            rows: list[tuple[float, ...]] = [() for _ in batch]
            for name in sorted(set(routes)):
                idx = [i for i, r in enumerate(routes) if r == name]
                probs = ex.probabilities(name, feat.block(name, [batch[i] for i in idx],
                                                          remember=self.cache_size > 0))
                for i, row in zip(idx, probs, strict=True):
                    rows[i] = tuple(float(v) for v in row)
            return rows

        # A flagged turn stays in the conversation and every later check names it again: its
        # vector comes from the featurizer's memory (remember=), only the search is repeated.
        return [dict(zip(ex.category_ids, row, strict=True)) for row in derive(list(texts))]

    def _name_from_exemplars(self, stage: Stage, flagged: list[tuple[int, Unit]],
                             out: list[Verdict | None]) -> None:
        """Flagged verdicts name the categories of their riskiest text's nearest exemplars."""
        ex = self.heads(stage).category_exemplars
        probs = self.exemplar_categories([u.text for _, u in flagged], stage) if flagged else None
        if ex is None or not probs:
            return
        for (i, _), q in zip(flagged, probs, strict=True):
            v = out[i]
            top = max(q.values(), default=0.0) or 1.0
            p = v.score or 0.0
            out[i] = v.model_copy(update={
                "categories": ex.named([q[c] for c in ex.category_ids]),
                "category_scores": {c: round(p * x / top, 6) for c, x in q.items()}})

    def _threshold_for(self, request: CheckRequest, stage: Stage) -> float:
        return (request.threshold if request.threshold is not None
                else self.threshold(stage, request.operating_point))

    def _verdict(self, request: CheckRequest, stage: Stage, unit: Unit, s: UnitScore,
                 threshold: float, over_budget: int = 0, n_units: int = 0) -> Verdict:
        p = min(1.0, max(0.0, s.p_unsafe))
        unsafe = p >= threshold
        top = max(s.categories.values(), default=0.0) or 1.0
        # A category's score is P(unsafe) scaled by its head's probability relative to the
        # most likely category; only categories the head is sure of are named.
        cat_scores = {c: round(p * v / top, 6) for c, v in s.categories.items()}
        named = [c for c, v in sorted(s.categories.items(), key=lambda kv: -kv[1])
                 if v >= CATEGORY_CONFIDENCE][:CATEGORY_TOP] if unsafe else []
        return Verdict(
            stage=stage, label=Label.UNSAFE if unsafe else Label.SAFE, score=p,
            categories=named, category_scores=cat_scores, tier=self.tier, checker=self.name,
            turn=unit.segment.turn, role=unit.segment.role,
            window=unit.window if unit.window else None, threshold=threshold,
            over_budget=over_budget,
            explanation=f"riskiest text: {_where(unit)} (scored by {s.members})" + (
                f"; {over_budget} of {n_units} units left unread by the encoder (past its "
                f"budget of {self.encoder_units} per check)" if over_budget else ""),
        )

    def warm(self) -> dict[str, list[str]]:
        """Score one English and one non-English text on every stage with the cascade off, so
        every member the artifact routes to (MiniLM or its fine-tuned classifier, e5) loads its
        encoder and starts its inference engine now, not inside the first request that the
        cascade escalates. Returns, per stage, the member sets that scored."""
        windows(WARM_TEXTS[0])  # the windowing tokenizer loads with its own encoder
        used: dict[str, list[str]] = {}
        for stage in self.artifact.stages:
            texts = [pair_text(WARM_TEXTS[0], t) if stage is Stage.OUTPUT else t
                     for t in WARM_TEXTS]
            used[stage.value] = sorted({s.members for s in self.score_units(texts, stage,
                                                                            cascade=False)})
            if self.exemplar_categories(WARM_TEXTS, stage):  # the encoders a refusal names with
                used[stage.value].append("exemplars")
        return used

    async def check(self, request: CheckRequest) -> Verdict:
        return (await self.check_many([request]))[0]

    async def check_many(self, requests: Sequence[CheckRequest]) -> list[Verdict]:
        return await asyncio.to_thread(self.verdicts, list(requests))


def _env_count(name: str, default: int, hint: str) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}.", hint=hint) from None


def _unit_key(stage: Stage, mode: bool | str, text: str) -> bytes:
    # Keeps stages and modes apart: cascade on, off, or "tfidf" (TF-IDF's score alone).
    person = f"{stage.value}:{mode if isinstance(mode, str) else int(mode)}".encode()
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16,
                           person=person).digest()


def _turn_ends(units: Sequence[Unit], k: int = END_UNITS) -> list[bool]:
    """Which units are a turn's ends: the first and last `k` of its windows, of its
    paragraphs' units and of its lines' units (decoded views are not ends)."""
    groups: dict[tuple[Any, ...], list[tuple[int, int, int]]] = {}
    for i, u in enumerate(units):
        seg = u.segment
        if not seg.view:
            kind, order = (("paragraph", seg.paragraph) if seg.paragraph is not None else
                           ("line", seg.line) if seg.line is not None else ("turn", 0))
            groups.setdefault((seg.turn, seg.role, kind), []).append((order, u.window, i))
    out = [False] * len(units)
    for items in groups.values():
        items.sort()
        for *_, i in items[:k] + items[-k:]:
            out[i] = True
    return out


def _where(unit: Unit) -> str:
    seg = unit.segment
    if seg.turn is None:
        place = "the recent user turns read together"
    elif seg.turn == -1:
        place = "the draft answer"
    else:
        place = f"message {seg.turn} ({seg.role})"
    if seg.paragraph is not None:
        place += f", paragraph {seg.paragraph + 1}"
    if seg.line is not None:
        place += f", line {seg.line + 1}"
    if seg.view:
        place += f", read as {seg.view} decoded"
    return place + (f", window {unit.window + 1}" if unit.window else "")


def load_fast_checker(path: str | Path | None = None, *, taxonomy: str | None = None,
                      cascade: bool = True, members: Sequence[str] | None = None
                      ) -> FastChecker | Any | None:
    """The fast tier from `path` (a shipped artifact's name, an artifact folder, or a legacy
    .joblib), else the shipped default; None when no artifact is installed."""
    if path is not None and str(path).endswith(".joblib"):
        from .legacy import load_legacy_checker

        return load_legacy_checker(path, taxonomy=taxonomy or "beavertails")
    if path is None:
        shipped = shipped_artifact_path(DEFAULT_ARTIFACT)
        if shipped is None:
            return None
        path = shipped
    return FastChecker(load_artifact(path), taxonomy=taxonomy, cascade=cascade, members=members)


def __getattr__(name: str) -> Any:
    # specguard 0.1 pickled its artifact classes as specguard.guard.fast.<name>; unpickling a
    # legacy .joblib looks them up here (legacy.py warns before it does).
    from . import legacy

    if name in legacy.LEGACY_NAMES:
        return getattr(legacy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
