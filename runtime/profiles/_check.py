"""The profile-aware check: is this request risky for *this* user? A function of (profile,
request), not of the request alone, that works without a capable model and on profiles it
never saw.

Two routes, both by sentence-encoder similarity (MiniLM), never by shared words:

- the scorer reads the profile text through the guideline library: how close the profile is to
  each library attribute (its example self-descriptions and name), and how close the request is
  to each attribute's guidelines (the guideline text and its activity's exemplar requests); a
  small trained head turns the top attributes' pairs of similarities into P(unsafe). It needs
  no approved list, so a profile nobody wrote guidelines for is still protected;
- the matcher compares the request with the profile's approved guidelines (an admin's list, a
  library draft, or a model's derivation); a library guideline brings its activity's exemplars,
  an admin's own text is encoded as written. Its threshold was chosen on validation data.

Everything an artifact needs ships as `card.json` + `weights.npz` (arrays only, loaded with
allow_pickle=False): the head, the feature scaling, the operating points, and the library's
vectors, so loading encodes nothing. Per request the cost is one encoder pass over the request
(profile state is cached per profile text).
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from ..errors import ConfigError
from ._library import GuidelineLibrary, load_library

ARTIFACT_FORMAT = 1
CARD, WEIGHTS = "card.json", "weights.npz"
DEFAULT_ARTIFACT = "checker"  # specs/profiles/checker/
TOP_K = 3  # attributes per profile the scorer reads
SOFT_T = 0.05  # temperature of the soft attribute weighting (profile side)
ACT_T = 0.05  # temperature of the request's soft assignment to activities
BENIGN = "_benign"  # the pseudo-activity of the library's everyday requests
# Per top attribute i: its similarity to the profile (a), the request's similarity to its
# guidelines (m), m minus the request's best activity similarity (d: is another activity a
# better explanation?), and the request's soft probability of being one of its activities (r).
# Products gate the request side by the profile side (risky only when both hold).
FEATURES = (*(f"{k}{i}" for i in (1, 2, 3) for k in ("a", "m", "d", "r", "ar", "am")),
            "general", "a1_minus_general", "margin_r1", "soft_r", "best_activity_similarity",
            "benign")
# The head reads one of these (chosen on validation): everything; or only what a profile must
# support ("gated": the profile side and profile x request products, so that a request alone,
# however risky for someone, cannot make a profile risky); or the products alone.
FEATURE_SETS = {
    "all": FEATURES,
    "gated": tuple(f for f in FEATURES if f.startswith(("a", "ar", "am"))
                   or f in ("general", "margin_r1")),
    "products": tuple(f for f in FEATURES if f.startswith(("ar", "am"))
                      or f in ("general", "a1_minus_general", "margin_r1")),
}


class ProfileMatch(BaseModel):
    """Why the profile check decided as it did: the guideline it matched (an approved item, or
    the library's when no approved item matched), how close, and the library's reasoning and
    safe alternative when the guideline comes from the library. Travels in the verdict's `raw`
    (JSON), so the report and the refusal can name it."""

    route: Literal["scorer", "approved"]
    score: float  # P(unsafe) of the route that decided
    guideline: str | None = None
    similarity: float | None = None  # request vs guideline (cosine)
    attribute: str | None = None  # library attribute id
    attribute_similarity: float | None = None  # profile vs attribute (cosine)
    why: str | None = None
    alternative: str | None = None


# -- the library's vectors ---------------------------------------------------------------------


@dataclass
class LibraryIndex:
    """The library as vectors. Entries: attribute names and example self-descriptions; exemplar
    requests per activity; guideline texts; general-population self-descriptions."""

    encoder: str
    fingerprint: str
    attribute_ids: list[str]
    entry_text: list[str]
    entry_attr: Any  # (n_entries,) int32: the attribute of each entry
    entry_vecs: Any
    activity_ids: list[str]
    ex_text: list[str]
    ex_act: Any  # (n_exemplars,) int32
    ex_vecs: Any
    g_text: list[str]
    g_attr: Any  # (n_guidelines,) int32
    g_act: Any
    g_vecs: Any
    general_text: list[str]
    general_vecs: Any
    # A linear classifier of requests into activities (rows: activity_ids), trained on the
    # exemplars and guideline texts; None: the soft assignment uses exemplar similarity only.
    act_coef: Any = None
    act_intercept: Any = None

    @classmethod
    def build(cls, library: GuidelineLibrary, encode, *, encoder: str,
              keep_profile=lambda t: True, keep_request=lambda t: True) -> LibraryIndex:
        """Vectors for every text of `library` (`encode(texts) -> (n, d)` unit rows); `keep_*`
        leave out example profiles or requests (the trainer drops near-duplicates of
        evaluation items)."""
        import numpy as np

        attrs = list(library.attributes.values())
        entry_text, entry_attr = [], []
        for i, a in enumerate(attrs):
            entry_text.append(a.name)
            entry_attr.append(i)
            for p in a.profiles:
                if keep_profile(p):
                    entry_text.append(p)
                    entry_attr.append(i)
        acts = [*sorted(library.activities), BENIGN]
        ex_text, ex_act = [], []
        for j, act in enumerate(acts):
            texts = library.benign if act == BENIGN else library.activities[act].requests
            for r in texts:
                if keep_request(r):
                    ex_text.append(r)
                    ex_act.append(j)
        g_text, g_attr, g_act = [], [], []
        for i, a in enumerate(attrs):
            for g in a.guidelines:
                g_text.append(g.decline)
                g_attr.append(i)
                g_act.append(acts.index(g.activity))
        general = [t for t in library.general_profiles if keep_profile(t)]
        vec = lambda ts: np.asarray(encode(ts), dtype=np.float32)  # noqa: E731
        return cls(
            encoder=encoder, fingerprint=library.fingerprint(),
            attribute_ids=[a.id for a in attrs], entry_text=entry_text,
            entry_attr=np.asarray(entry_attr, np.int32), entry_vecs=vec(entry_text),
            activity_ids=acts, ex_text=ex_text, ex_act=np.asarray(ex_act, np.int32),
            ex_vecs=vec(ex_text), g_text=g_text, g_attr=np.asarray(g_attr, np.int32),
            g_act=np.asarray(g_act, np.int32), g_vecs=vec(g_text), general_text=general,
            general_vecs=vec(general))

    # -- similarities ----------------------------------------------------------------------

    def profile_side(self, vecs, texts: Sequence[str] | None = None):
        """(A, general): per profile, the cosine to each attribute (its closest entry) and to
        the general-population anchors. An entry identical to the profile text is left out
        (a profile never matches itself: how the trainer scores the library's own examples)."""
        import numpy as np

        s = vecs @ self.entry_vecs.T
        g = vecs @ self.general_vecs.T if len(self.general_text) else np.full((len(vecs), 1), -1.0)
        if texts is not None:
            s = _leave_out(s, texts, self.entry_text)
            if len(self.general_text):
                g = _leave_out(g, texts, self.general_text)
        return _segment_max(s, self.entry_attr, len(self.attribute_ids)), g.max(axis=1)

    def activity_proba(self, vecs):
        """P(activity | request) from the activity classifier."""
        import numpy as np

        z = vecs @ self.act_coef.T + self.act_intercept
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def request_side(self, vecs, texts: Sequence[str] | None = None, *, p_act=None) -> RequestSide:
        """Per request: the similarity to each activity (its closest exemplar; the last
        column is the everyday requests), to each library guideline (the larger of its text's
        and its activity's) and to each attribute (its closest guideline), and the soft
        assignment to activities (the activity classifier's, else from the similarities; the
        trainer passes out-of-fold `p_act` for requests the classifier was fitted on). An
        exemplar identical to the request is left out."""
        import numpy as np

        sx = vecs @ self.ex_vecs.T
        if texts is not None:
            sx = _leave_out(sx, texts, self.ex_text)
        act = _segment_max(sx, self.ex_act, len(self.activity_ids))
        g = np.maximum(vecs @ self.g_vecs.T, act[:, self.g_act])
        m = _segment_max(g, self.g_attr, len(self.attribute_ids))
        if p_act is None and self.act_coef is not None:
            p_act = self.activity_proba(vecs)
        if p_act is None:
            z = np.exp((act - act.max(axis=1, keepdims=True)) / ACT_T)
            p_act = z / z.sum(axis=1, keepdims=True)
        # Per attribute: the request's probability of being one of its activities.
        member = np.zeros((len(self.activity_ids), len(self.attribute_ids)), np.float32)
        member[self.g_act, self.g_attr] = 1.0
        return RequestSide(act=act, g=g, m=m, p_act=p_act, r=p_act @ member)

    # -- storage ---------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        return {"encoder": self.encoder, "fingerprint": self.fingerprint,
                "attribute_ids": self.attribute_ids, "entry_text": self.entry_text,
                "activity_ids": self.activity_ids, "ex_text": self.ex_text,
                "g_text": self.g_text, "general_text": self.general_text}

    def arrays(self) -> dict[str, Any]:
        import numpy as np

        out = {f"index/{k}": getattr(self, k).astype(np.float16)
               for k in ("entry_vecs", "ex_vecs", "g_vecs", "general_vecs")}
        out.update({f"index/{k}": getattr(self, k) for k in ("entry_attr", "ex_act", "g_attr", "g_act")})
        if self.act_coef is not None:
            out["index/act_coef"] = self.act_coef.astype(np.float32)
            out["index/act_intercept"] = self.act_intercept.astype(np.float32)
        return out

    @classmethod
    def from_stored(cls, meta: dict[str, Any], arrays: dict[str, Any]) -> LibraryIndex:
        import numpy as np

        vec = lambda k: np.asarray(arrays[f"index/{k}"], dtype=np.float32)  # noqa: E731
        return cls(encoder=meta["encoder"], fingerprint=meta["fingerprint"],
                   attribute_ids=meta["attribute_ids"], entry_text=meta["entry_text"],
                   entry_attr=arrays["index/entry_attr"], entry_vecs=vec("entry_vecs"),
                   activity_ids=meta["activity_ids"], ex_text=meta["ex_text"],
                   ex_act=arrays["index/ex_act"], ex_vecs=vec("ex_vecs"), g_text=meta["g_text"],
                   g_attr=arrays["index/g_attr"], g_act=arrays["index/g_act"],
                   g_vecs=vec("g_vecs"), general_text=meta["general_text"],
                   general_vecs=vec("general_vecs").reshape(-1, vec("entry_vecs").shape[1]),
                   act_coef=arrays.get("index/act_coef"),
                   act_intercept=arrays.get("index/act_intercept"))


def _segment_max(s, segments, n: int):
    """(rows, n): per row, the max of the columns of each segment (-1 for an empty one)."""
    import numpy as np

    order, starts, present = _segments(np.asarray(segments, np.int32).tobytes(), n)
    out = np.full((s.shape[0], n), -1.0, dtype=np.float32)
    if len(starts):
        out[:, present] = np.maximum.reduceat(s[:, order], starts, axis=1)
    return out


@lru_cache(maxsize=64)
def _segments(key: bytes, n: int):
    """The column order that groups each segment, each group's start, and which segments are
    present (cached per segment array: the index's arrays never change)."""
    import numpy as np

    segments = np.frombuffer(key, dtype=np.int32)
    order = np.argsort(segments, kind="stable")
    present, starts = np.unique(segments[order], return_index=True)
    return order, starts, present


def _leave_out(s, row_texts: Sequence[str], col_texts: Sequence[str]):
    where = {t: i for i, t in enumerate(col_texts)}
    s = s.copy()
    for r, t in enumerate(row_texts):
        j = where.get(t)
        if j is not None:
            s[r, j] = -1.0
    return s


@dataclass
class RequestSide:
    act: Any  # (n, n_activities): similarity to each activity (last: everyday requests)
    g: Any  # (n, n_guidelines)
    m: Any  # (n, n_attributes)
    p_act: Any  # (n, n_activities): soft assignment of the request to activities
    r: Any  # (n, n_attributes): probability that the request is one of the attribute's activities

    def rows(self, idx) -> RequestSide:
        return RequestSide(self.act[idx], self.g[idx], self.m[idx], self.p_act[idx], self.r[idx])


def pair_features(a_row, general: float, req: RequestSide, *, k: int = TOP_K):
    """Features of one profile against many requests (see FEATURES). Returns (features
    (n, len(FEATURES)), the profile's top attribute indices)."""
    import numpy as np

    top = np.argsort(-a_row)[:k]
    n = req.m.shape[0]
    best = req.act.max(axis=1)
    w = np.exp((a_row - a_row.max()) / SOFT_T)
    w /= w.sum()
    cols = []
    for i in top:
        cols += [np.full(n, a_row[i]), req.m[:, i], req.m[:, i] - best, req.r[:, i],
                 a_row[i] * req.r[:, i], a_row[i] * req.m[:, i]]
    margin = a_row[top[0]] - general
    cols += [np.full(n, general), np.full(n, margin), margin * req.r[:, top[0]], req.r @ w, best,
             req.p_act[:, -1]]
    return np.stack(cols, axis=1).astype(np.float32), top


# -- the artifact ------------------------------------------------------------------------------


@dataclass
class ProfileCheckArtifact:
    """A trained profile check on disk: card.json (the model card: data, choices, figures) and
    weights.npz (head, scaling, library vectors)."""

    head: Any  # specguard.guard.heads.LinearHead | MLPHead over standardised FEATURES[columns]
    mean: Any
    scale: Any
    columns: list[int]  # which FEATURES the head reads
    thresholds: dict[str, float]  # operating point -> P(unsafe)
    match_threshold: float  # cosine: request vs an approved guideline (the matcher alone)
    match_activity_threshold: float  # P(a library guideline's activity | request) (alone)
    # (cosine, activity) thresholds when the scorer runs too (its flags OR-ed with the matcher's)
    match_combined: tuple[float, float]
    match_calibration: tuple[float, float]  # P(unsafe) = sigmoid(a * cosine + b)
    suggest_threshold: float  # cosine: profile vs a library attribute, for the admin's draft
    suggest_margin: float  # and within this much of the best attribute
    index: LibraryIndex
    card: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def save(self, folder: str | Path) -> Path:
        import numpy as np

        from ..guard.heads import head_kind

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {"mean": self.mean, "scale": self.scale, **self.index.arrays(),
                  **self.head.arrays("head/")}
        np.savez_compressed(folder / WEIGHTS, **arrays)
        card = {**self.card, "format": ARTIFACT_FORMAT, "features": list(FEATURES),
                "columns": self.columns,
                "head": head_kind(self.head), "thresholds": self.thresholds,
                "match_threshold": self.match_threshold,
                "match_activity_threshold": self.match_activity_threshold,
                "match_combined": list(self.match_combined),
                "match_calibration": list(self.match_calibration),
                "suggest_threshold": self.suggest_threshold,
                "suggest_margin": self.suggest_margin, "index": self.index.meta()}
        (folder / CARD).write_text(json.dumps(card, indent=1, sort_keys=True) + "\n",
                                   encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ProfileCheckArtifact:
        import numpy as np

        from ..guard.heads import HEAD_KINDS

        folder = Path(folder)
        if not (folder / CARD).is_file() or not (folder / WEIGHTS).is_file():
            raise ConfigError(f"{folder} is not a profile-check artifact (it needs {CARD} and "
                              f"{WEIGHTS}).",
                              hint="Train one with `python -m specguard.profiles.train`.")
        card = json.loads((folder / CARD).read_text(encoding="utf-8"))
        if card.get("format") != ARTIFACT_FORMAT or card.get("features") != list(FEATURES):
            raise ConfigError(f"{folder} is a profile-check artifact of another format.",
                              hint="Retrain it with `python -m specguard.profiles.train`.")
        with np.load(folder / WEIGHTS, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        head = HEAD_KINDS[card["head"]].load(arrays, "head/")
        return cls(head=head, mean=arrays["mean"], scale=arrays["scale"],
                   columns=[int(c) for c in card["columns"]],
                   thresholds={k: float(v) for k, v in card["thresholds"].items()},
                   match_threshold=float(card["match_threshold"]),
                   match_activity_threshold=float(card["match_activity_threshold"]),
                   match_combined=tuple(float(x) for x in card["match_combined"]),
                   match_calibration=tuple(card["match_calibration"]),
                   suggest_threshold=float(card["suggest_threshold"]),
                   suggest_margin=float(card["suggest_margin"]),
                   index=LibraryIndex.from_stored(card["index"], arrays), card=card, path=folder)

    def match_thresholds(self, with_scorer: bool) -> tuple[float, float]:
        """(cosine, activity probability) thresholds of the approved-guideline matcher: chosen
        on validation for the matcher alone, or OR-ed with the scorer's flags."""
        if with_scorer:
            return self.match_combined
        return self.match_threshold, self.match_activity_threshold

    def proba(self, x):
        """P(unsafe) for rows of FEATURES."""
        from ..guard.heads import sigmoid

        return sigmoid(self.head.score((x[:, self.columns] - self.mean) / self.scale))


def shipped_artifact_path(name: str = DEFAULT_ARTIFACT) -> Path:
    return Path(str(resources.files("specguard.specs") / "profiles" / name))


# -- serving -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovedScore:
    guideline: str
    cosine: float  # request vs the guideline (text, or its activity's exemplars)
    activity_p: float | None  # P(the guideline's activity | request); library guidelines only

    def fires(self, cosine_threshold: float, activity_threshold: float) -> bool:
        return self.cosine >= cosine_threshold or (
            self.activity_p is not None and self.activity_p >= activity_threshold)


@dataclass
class _ProfileState:
    vec: Any
    a: Any  # (n_attributes,)
    general: float


class _LRU:
    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key, value) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)


class ProfileCheck:
    """The profile check for serving: score (profile, request) pairs, match approved
    guidelines, suggest library attributes for a profile text. Thread-safe; one per process
    (`load_profile_check`)."""

    def __init__(self, artifact: ProfileCheckArtifact, *, library: GuidelineLibrary | None = None,
                 encoder: Any = None) -> None:
        from ..encoders import load_encoder

        self.artifact = artifact
        self.library = library or load_library()
        self.encoder = encoder or load_encoder(artifact.index.encoder)
        self.name = f"profile_check:{artifact.card.get('name', 'checker')}"
        self._profiles = _LRU(4096)
        self._texts = _LRU(8192)
        if artifact.index.fingerprint != self.library.fingerprint():
            # The shipped vectors were computed from another version of the library: the
            # scorer still works on what it was trained with; new entries need a retrain.
            import logging

            logging.getLogger("specguard.profiles").warning(
                "the profile check's library vectors are from another library version; retrain "
                "with `python -m specguard.profiles.train` to include library changes")

    # -- vectors ---------------------------------------------------------------------------

    def encode(self, texts: Sequence[str]):
        """Unit vectors of `texts`, from the in-process cache where possible."""
        import numpy as np

        out = [self._texts.get(t) for t in texts]
        todo = [t for t, v in zip(texts, out) if v is None]
        if todo:
            vecs = np.asarray(self.encoder.encode(list(dict.fromkeys(todo))), dtype=np.float32)
            fresh = dict(zip(dict.fromkeys(todo), vecs))
            for t, v in fresh.items():
                self._texts.put(t, v)
            out = [v if v is not None else fresh[t] for t, v in zip(texts, out)]
        return np.stack(out) if out else np.zeros((0, self.encoder.dim), np.float32)

    def remember(self, texts: Sequence[str], vecs) -> None:
        """Vectors computed elsewhere (a batch job's embedding cache) for these texts."""
        for t, v in zip(texts, vecs):
            self._texts.put(t, v)

    def _profile(self, text: str) -> _ProfileState:
        state = self._profiles.get(text)
        if state is None:
            vec = self.encode([text])
            a, g = self.artifact.index.profile_side(vec)
            state = _ProfileState(vec=vec[0], a=a[0], general=float(g[0]))
            self._profiles.put(text, state)
        return state

    # -- the checks ------------------------------------------------------------------------

    def suggest_attributes(self, profile_text: str) -> list[tuple[str, float]]:
        """Library attributes the profile text suggests (attribute id, cosine), best first:
        above the artifact's threshold, within its margin of the best one, and closer than the
        general-population anchors."""
        st = self._profile(profile_text)
        art = self.artifact
        best = float(st.a.max())
        order = sorted(range(len(st.a)), key=lambda i: -st.a[i])
        return [(art.index.attribute_ids[i], float(st.a[i])) for i in order
                if st.a[i] >= art.suggest_threshold and st.a[i] >= best - art.suggest_margin
                and st.a[i] > st.general]

    def library_draft(self, profile_text: str) -> tuple[list[str], list[str]]:
        """(the attributes the profile text suggests, the library's draft for them)."""
        ids = [a for a, _ in self.suggest_attributes(profile_text)]
        return ids, self.library.draft(ids) if ids else []

    def check(self, profile_text: str, request_text: str, approved: Sequence[str] = (), *,
              threshold: float, match_threshold: float | None = None, library: bool = True
              ) -> tuple[bool, ProfileMatch, ProfileMatch | None]:
        """(unsafe, the deciding match, the approved-guideline match if any were given).
        `threshold` applies to the scorer's P(unsafe); `match_threshold` (default the
        artifact's, ArtifactCheckArtifact.match_thresholds) to the approved guidelines' cosine."""
        import numpy as np

        art, idx = self.artifact, self.artifact.index
        st = self._profile(profile_text)
        r = self.encode([request_text])
        req = idx.request_side(r)
        g, m = req.g, req.m
        scorer = None
        if library:
            x, top = pair_features(st.a, st.general, req)
            p = float(art.proba(x)[0])
            # Name the attribute whose (profile, request) pair is strongest, and its guideline.
            best = max(top, key=lambda i: (st.a[i] * req.r[0, i], m[0, i]))
            gi = np.flatnonzero(idx.g_attr == best)
            gj = int(gi[np.argmax(g[0, gi])])
            scorer = self._match("scorer", p, idx.g_text[gj], float(g[0, gj]),
                                 idx.attribute_ids[best], float(st.a[best]))
        approved_match = None
        if approved:
            scores = self.approved_scores(r[0], req, approved)
            t_cos, t_act = art.match_thresholds(with_scorer=library)
            t_cos = t_cos if match_threshold is None else match_threshold
            fired = [s for s in scores if s.fires(t_cos, t_act)]
            top = max(fired or scores, key=lambda s: (s.cosine >= t_cos, s.cosine))
            a, b = art.match_calibration
            p_match = 1.0 / (1.0 + math.exp(-(a * top.cosine + b)))
            if fired and top.cosine < t_cos:  # fired on its activity's probability
                p_match = float(top.activity_p or 0.0)
            lib = self.library.guideline(top.guideline)
            approved_match = self._match("approved", p_match, top.guideline, top.cosine,
                                         lib[0].id if lib else None, None)
            if fired:
                return True, approved_match, approved_match
        if scorer is not None and scorer.score >= threshold:
            return True, scorer, approved_match
        deciding = scorer if scorer is not None else approved_match
        assert deciding is not None, "check() needs library=True or approved guidelines"
        return False, deciding, approved_match

    def approved_scores(self, r, req: RequestSide, approved: Sequence[str]) -> list[ApprovedScore]:
        """Each approved guideline's cosine to the request (a library guideline's: the larger of
        its text's and its activity's closest exemplar's; an admin's own text: as written) and,
        for a library guideline, the activity classifier's P(its activity | request)."""
        idx = self.artifact.index
        where = {t: j for j, t in enumerate(idx.g_text)}
        out: list[ApprovedScore | None] = []
        own = []
        for text in approved:
            lib = self.library.guideline(text)
            j = where.get(lib[1].decline) if lib else None
            if j is None:
                out.append(None)
                own.append(text)
            else:
                out.append(ApprovedScore(text, float(req.g[0, j]),
                                         float(req.p_act[0, idx.g_act[j]])))
        if own:
            cos = dict(zip(own, (float(c) for c in self.encode(own) @ r)))
            out = [s if s is not None else ApprovedScore(t, cos[t], None)
                   for t, s in zip(approved, out)]
        return out  # type: ignore[return-value]

    def _match(self, route, score, guideline, similarity, attribute, attribute_similarity
               ) -> ProfileMatch:
        lib = self.library.guideline(guideline) if guideline else None
        return ProfileMatch(route=route, score=round(score, 4), guideline=guideline,
                            similarity=round(similarity, 4), attribute=attribute,
                            attribute_similarity=None if attribute_similarity is None
                            else round(attribute_similarity, 4),
                            why=lib[1].why if lib else None,
                            alternative=lib[1].alternative if lib else None)


@lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int) -> ProfileCheck:
    return ProfileCheck(ProfileCheckArtifact.load(path))


def load_profile_check(name_or_path: str | Path | None = None) -> ProfileCheck:
    """The shipped profile check (or an artifact folder), loaded once per process."""
    path = Path(name_or_path) if name_or_path and Path(name_or_path).exists() else \
        shipped_artifact_path(str(name_or_path or DEFAULT_ARTIFACT))
    card = path / CARD
    if not card.is_file():
        raise ConfigError(f"No profile-check artifact at {path}.",
                          hint="Train it with `python -m specguard.profiles.train` (writes "
                               "specs/profiles/checker/).")
    return _load(str(path), card.stat().st_mtime_ns)
