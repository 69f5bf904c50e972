"""What the fast tier reads, built by one function for training and for serving (a feature
assembled two ways is train/serve skew waiting to happen).

A text is cut into windows the encoders read whole (a long document cannot hide a harmful
sentence past the encoder's limit: every window is scored and the riskiest counts). Each window
becomes up to three feature blocks:

- `tfidf`: word 1-2-grams and character 2-5-grams (sparse), from a vocabulary stored with the
  artifact (as JSON arrays, not a pickle);
- `minilm`: all-MiniLM-L6-v2 (int8 ONNX) mean-pooled sentence vector, English;
- `minilm_ft`: all-MiniLM-L6-v2 fine-tuned as a classifier (int8 ONNX in the artifact
  folder, finetune.py): one column, its logit;
- `e5`: multilingual-e5-small (4-bit) sentence vector, about 100 languages.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..encoders import (  # noqa: F401
    EmbeddingCache,
    SentenceEncoder,
    encoder_threads,
    load_encoder,
    looks_english,
    positive_env,
    reads_as_english,
)
from .textcache import TextCache

BLOCKS = ("tfidf", "minilm", "minilm_ft", "e5")


def finetuned_file(stage: str) -> str:
    """The fine-tuned classifier of a stage, in the artifact folder."""
    return f"minilm_ft.{stage}.onnx"
WINDOW_TOKENS = 256  # the encoders' window (MiniLM's max_seq_length)
WINDOW_OVERLAP = 32


@dataclass(frozen=True)
class Window:
    text: str
    index: int  # which window of its text (0-based)
    of: int  # how many windows the text has


def windows(text: str, encoder: SentenceEncoder | None = None) -> list[Window]:
    """`text` as overlapping windows of WINDOW_TOKENS encoder tokens (one window when it fits),
    every one of them: a request in the middle of a long document is read like one at its
    end. What bounds a check's cost is the checker's encoder budget (fast.ENCODER_UNITS)."""
    if encoder is None:  # the checker's path: remembered
        return list(_windows_cache.get(text, lambda t: tuple(_windows(t, None))))
    return _windows(text, encoder)


def _windows(text: str, encoder: SentenceEncoder | None) -> list[Window]:
    encoder = encoder or load_encoder("minilm")
    parts = encoder.windows(text, max_tokens=WINDOW_TOKENS, overlap=WINDOW_OVERLAP) if text else [""]
    return [Window(p, i, len(parts)) for i, p in enumerate(parts)]


# Tokenizing each turn to window it was most of a check whose unit scores were all remembered.
_windows_cache: TextCache[tuple[Window, ...]] = TextCache()


def clear_windows_cache() -> None:
    _windows_cache.clear()


# --- TF-IDF without pickles ------------------------------------------------------------------


@dataclass
class Tfidf:
    """Word 1-2-grams + char_wb 2-5-grams, sublinear tf, l2-normalised per analyzer, then
    concatenated: scikit-learn's TfidfVectorizer rebuilt from its stored vocabulary and idf."""

    word_vocab: dict[str, int]
    word_idf: Any
    char_vocab: dict[str, int]
    char_idf: Any
    _vec: Any = field(default=None, repr=False)
    _lean: Any = field(default=None, repr=False)

    @staticmethod
    def _make(analyzer: str) -> Any:
        import numpy as np
        from sklearn.feature_extraction.text import TfidfVectorizer

        if analyzer == "word":
            return TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True,
                                   max_features=40000, strip_accents="unicode", lowercase=True,
                                   dtype=np.float32)
        return TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=3,
                               sublinear_tf=True, max_features=60000, lowercase=True,
                               dtype=np.float32)

    @classmethod
    def fit(cls, texts: Sequence[str], sample_weight: Any = None) -> Tfidf:
        w, c = cls._make("word").fit(texts), cls._make("char").fit(texts)
        return cls({k: int(v) for k, v in w.vocabulary_.items()}, w.idf_,
                   {k: int(v) for k, v in c.vocabulary_.items()}, c.idf_)

    def _vectorizers(self):
        if self._vec is None:
            w, c = self._make("word"), self._make("char")
            w.vocabulary_, c.vocabulary_ = self.word_vocab, self.char_vocab
            w.idf_, c.idf_ = self.word_idf, self.char_idf
            self._vec = (w, c)
        return self._vec

    @property
    def dim(self) -> int:
        return len(self.word_vocab) + len(self.char_vocab)

    def transform(self, texts: Sequence[str]):
        """The same matrix as scikit-learn's two TfidfVectorizer.transform calls hstacked
        (a test holds them equal), built directly: scikit-learn's input validation, diagonal
        idf product and stacking cost several times the counting itself on a one-text check
        (bench/guard_heads.py)."""
        import numpy as np
        from scipy import sparse

        texts = list(texts)
        (w_an, w_vocab, w_idf), (c_an, c_vocab, c_idf) = self._analyzers()
        w_ind, w_val, w_ptr = _tfidf_rows(texts, w_an, w_vocab, w_idf)
        c_ind, c_val, c_ptr = _tfidf_rows(texts, c_an, c_vocab, c_idf)
        n, width = len(texts), len(self.word_vocab)
        indptr = w_ptr + c_ptr
        indices = np.empty(len(w_ind) + len(c_ind), dtype=np.int32)
        data = np.empty(len(indices), dtype=np.float32)
        for i in range(n):  # row i: its word columns, then its char columns (offset by width)
            a, b = w_ptr[i], w_ptr[i + 1]
            c0, c1 = c_ptr[i], c_ptr[i + 1]
            start = indptr[i]
            indices[start:start + b - a] = w_ind[a:b]
            data[start:start + b - a] = w_val[a:b]
            indices[start + b - a:indptr[i + 1]] = c_ind[c0:c1] + width
            data[start + b - a:indptr[i + 1]] = c_val[c0:c1]
        return sparse.csr_matrix((data, indices, indptr), shape=(n, self.dim))

    def _analyzers(self):
        if self._lean is None:
            import numpy as np

            w, c = self._vectorizers()
            self._lean = ((w.build_analyzer(), self.word_vocab, np.asarray(self.word_idf, np.float32)),
                          (c.build_analyzer(), self.char_vocab, np.asarray(self.char_idf, np.float32)))
        return self._lean

    def to_arrays(self, prefix: str) -> dict[str, Any]:
        import numpy as np

        def vocab(v: dict[str, int]):
            terms = [""] * len(v)
            for k, i in v.items():
                terms[i] = k
            return np.array(terms, dtype=object).astype(str)

        return {f"{prefix}word_terms": vocab(self.word_vocab), f"{prefix}word_idf": self.word_idf,
                f"{prefix}char_terms": vocab(self.char_vocab), f"{prefix}char_idf": self.char_idf}

    @classmethod
    def from_arrays(cls, arrays: Any, prefix: str) -> Tfidf:
        def vocab(terms) -> dict[str, int]:
            return {str(t): i for i, t in enumerate(terms)}

        return cls(vocab(arrays[f"{prefix}word_terms"]), arrays[f"{prefix}word_idf"],
                   vocab(arrays[f"{prefix}char_terms"]), arrays[f"{prefix}char_idf"])


def _tfidf_rows(texts: Sequence[str], analyze, vocab: dict[str, int], idf):
    """One analyzer's rows as CSR parts (indices, values, indptr): sublinear tf (1 + log tf)
    times idf, each row l2-normalised, indices sorted within a row: scikit-learn's values."""
    import numpy as np

    indices: list[int] = []
    counts: list[int] = []
    indptr = np.zeros(len(texts) + 1, dtype=np.int64)
    get = vocab.get
    for i, text in enumerate(texts):
        found = Counter(map(get, analyze(text)))  # counted in C; None: not in the vocabulary
        found.pop(None, None)
        columns = sorted(found)
        indices.extend(columns)
        counts.extend(map(found.__getitem__, columns))
        indptr[i + 1] = len(indices)
    ind = np.asarray(indices, dtype=np.int32)
    val = np.asarray(counts, dtype=np.float32)
    np.log(val, out=val)
    val += 1
    val *= idf[ind]
    rows = np.repeat(np.arange(len(texts)), np.diff(indptr))
    norms = np.sqrt(np.bincount(rows, weights=val.astype(np.float64) ** 2, minlength=len(texts)))
    norms[norms == 0] = 1.0
    val /= norms[rows].astype(np.float32)
    return ind, val, indptr


# --- rows on every core ------------------------------------------------------------------------


def row_workers() -> int:
    """Threads a served batch's encoder rows are spread over: SPECGUARD_ENCODER_WORKERS, else
    the cores this process may use divided by each encoder session's own threads
    (SPECGUARD_ENCODER_THREADS, default 1: onnxruntime's threads spin while they wait, and two
    rows of two threads each on two cores ran slower than one row at a time). Each row runs
    alone (its score owes nothing to its batch), so one call's rows can run side by side:
    onnxruntime and the e5 engine release the GIL."""
    if os.environ.get("SPECGUARD_ENCODER_WORKERS", "").strip():
        return positive_env("SPECGUARD_ENCODER_WORKERS", 1)  # 1: rows on the calling thread
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, encoder_threads()))


def spread_rows(encode: Callable[[list[str]], Any], texts: list[str], workers: int):
    """`encode(texts)` with the texts dealt, longest first, over `workers` threads (each gets
    about as many tokens), reassembled in order. Only for encoders whose rows never depend on
    their batch mates: the result is what one call over all of them gives."""
    import numpy as np

    workers = min(workers, len(texts))
    if workers <= 1:
        return np.asarray(encode(texts), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    shares = [order[w::workers] for w in range(workers)]
    parts: list[Any] = [None] * workers
    errors: list[BaseException] = []

    def run(w: int) -> None:
        try:
            parts[w] = np.asarray(encode([texts[i] for i in shares[w]]),
                                  dtype=np.float32).reshape(len(shares[w]), -1)
        except BaseException as exc:  # noqa: BLE001 - raised again on the calling thread
            errors.append(exc)

    # Threads per call, not a pool: a row costs milliseconds, a thread tens of microseconds,
    # and nothing is left running when the process ends. The caller runs the first share.
    helpers = [threading.Thread(target=run, args=(w,), daemon=True,
                                name=f"specguard-encoder-{w}") for w in range(1, workers)]
    for t in helpers:
        t.start()
    run(0)
    for t in helpers:
        t.join()
    if errors:
        raise errors[0]
    out = np.zeros((len(texts), parts[0].shape[1]), dtype=np.float32)
    for idx, part in zip(shares, parts, strict=True):
        out[idx] = part
    return out


# --- the feature function ----------------------------------------------------------------------


class FinetunedClassifier:
    """The fine-tuned MiniLM classifier: MiniLM's tokenization and batching, an ONNX graph that
    returns one logit per text. Looks like a one-dimensional encoder to the featurizer."""

    dim = 1
    max_tokens = WINDOW_TOKENS
    batch_invariant = False  # MiniLM's int8 graph: activations quantized per call

    def __init__(self, path: str | Path) -> None:
        import hashlib

        from ..encoders import MiniLMOnnx

        self.path = Path(path)
        self._base = MiniLMOnnx(model_path=self.path, max_tokens=WINDOW_TOKENS)
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()[:12]
        self.name = f"minilm_ft-{digest}"  # the embedding cache keys by name

    def windows(self, text: str, max_tokens: int | None = None, overlap: int = 32) -> list[str]:
        return self._base.windows(text, max_tokens, overlap)

    def encode(self, texts: Sequence[str], batch_size: int = 32):
        return self._base.run_batches(texts, batch_size, pool=False)


class Featurizer:
    """Feature blocks for window texts. One instance serves training (with an EmbeddingCache)
    and serving (without); `block(name, texts)` is the only way features are made."""

    def __init__(self, tfidf: Tfidf | None = None, *, cache: EmbeddingCache | None = None,
                 encoders: dict[str, SentenceEncoder] | None = None,
                 finetuned: str | Path | None = None, row_alone: bool = False) -> None:
        self.tfidf = tfidf
        self.cache = cache
        # The served checker sets row_alone: the int8 MiniLM graphs quantize their activations
        # per call, so a text scored in a batch moved with its batch mates (up to 0.04 in
        # probability). Run alone its score is its own, and on one core no slower
        # (bench/guard_batching.py). Encoders whose rows never mix (e5) keep their batches.
        self.row_alone = row_alone
        # Served rows are their own, so a batch's rows run on every core (row_workers()).
        self.workers = row_workers() if row_alone else 1
        self._vectors: dict[str, TextCache] = {}
        self.finetuned = Path(finetuned) if finetuned else None  # the minilm_ft ONNX file
        self._encoders = dict(encoders or {})

    def forget(self) -> None:
        """Drop the remembered vectors (served rows only; training's EmbeddingCache is a file)."""
        for memo in self._vectors.values():
            memo.clear()

    def encoder(self, name: str) -> SentenceEncoder:
        if name not in self._encoders:
            if name == "minilm_ft":
                if self.finetuned is None or not self.finetuned.is_file():
                    raise ValueError(f"the minilm_ft member needs its ONNX file "
                                     f"({self.finetuned or 'none given'})")
                self._encoders[name] = FinetunedClassifier(self.finetuned)
            else:
                self._encoders[name] = load_encoder(name, max_tokens=WINDOW_TOKENS)
        return self._encoders[name]

    def block(self, name: str, texts: Sequence[str], *, progress=None, remember: bool = True):
        """(n, d) features of block `name` for `texts` (sparse for tfidf, float32 otherwise).
        `remember=False`: encode every text now (a bench measuring the encoders)."""
        import numpy as np

        if name == "tfidf":
            if self.tfidf is None:
                raise ValueError("this featurizer has no TF-IDF vocabulary")
            return self.tfidf.transform(texts)
        if name not in BLOCKS:
            raise ValueError(f"unknown feature block {name!r}; known: {BLOCKS}")
        enc = self.encoder(name)
        if not texts:
            return np.zeros((0, enc.dim), dtype=np.float32)
        if self.cache is not None:
            # Training: each row encoded as the served checker encodes it (alone, for the int8
            # MiniLM graphs), so the thresholds chosen on validation are the served ones.
            return self.cache.encode(enc, list(texts), progress=progress, alone=True)
        size = 1 if self.row_alone and not getattr(enc, "batch_invariant", False) else 32

        def encode(batch: list[str]):
            return spread_rows(lambda part: enc.encode(part, batch_size=size), batch,
                               self.workers)

        if not self.row_alone or not remember:
            return encode(list(texts))
        # Served rows never depend on their batch mates, so a text's vector is remembered: the
        # category exemplars read the e5 vector the e5 member has just computed for a flagged
        # text in another language (20-300 ms) instead of computing it again.
        memo = self._vectors.setdefault(name, TextCache(size=4096))
        return np.vstack(memo.get_many(list(texts), lambda batch: list(encode(batch))))
