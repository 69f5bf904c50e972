"""The Goodtriever combination (Pozzobon et al. 2023), one pure torch function.

Per decoding step, for each row of the batch:

    l'  = log_softmax(base logits), tokens outside the top-p nucleus set to -inf
    p_kNN(v) = sum over retrieved neighbours j with next token v of softmax(-d / T)_j
    s   = log_softmax(l' + alpha * (log p_kNN+ - log p_kNN-))

`+` is the non-toxic datastore, `-` the toxic one. With `penalize_only` the shift is clipped
at zero, min(0, log p_kNN+ - log p_kNN-): a token the toxic store favours over the non-toxic
one is pushed down and nothing is pushed up, so the rest of the nucleus keeps the base model's
proportions instead of leaning toward whatever the non-toxic store holds more of (its
register, its stock phrases). With the toxic store alone the shift already only pushes down;
with the non-toxic store alone there is nothing to push down. Measured on the embedded model,
it keeps dist-2 at plain's level but lowers the guard's toxicity far less than the full shift
(docs/results/detox.md).
With a gate g > 0 the shift applies only to the rows where the two stores disagree about the
tokens the model may sample: the total variation between p_kNN+ and p_kNN- over the row's
nucleus, 0.5 * sum_{v in nucleus} |p+(v) - p-(v)|, is at least g (rows below it keep the
top-p base distribution). Where neither store puts mass on the nucleus, the floors alone would
move the distribution: the gate keeps such rows fluent. A token no neighbour of a row points to
gets that row's smallest retrieved log-probability (the original code took the minimum over the
whole batch, so one sequence's output depended on the others in its batch; here every row is
computed from its own inputs only). Distances are what the datastore returns (FAISS L2:
squared Euclidean distances).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import torch

# GoodtrieverParams' defaults (chosen on choice prompts, docs/results/detox.md), written out rather
# than imported: this file also runs alone, loaded by path, on a GPU machine without specguard
# or pydantic (bench/goodtriever_device.py). A test keeps the two equal.
DEFAULT_ALPHA = 5.0
DEFAULT_TEMPERATURE = 2000.0
DEFAULT_TOP_P = 0.9
DEFAULT_GATE = 0.0
DEFAULT_PENALIZE_ONLY = False


class Neighbours(NamedTuple):
    """What one datastore retrieved for a batch: distances [B, k] and next-token ids [B, k].

    A token id < 0 marks a missing neighbour (a store with fewer than k keys); it is ignored."""

    distances: torch.Tensor
    tokens: torch.Tensor


def top_p_mask(logprobs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Boolean [B, V]: True for tokens inside each row's nucleus (the smallest set of most
    likely tokens whose probability reaches top_p; the most likely token is always kept)."""
    import torch

    if top_p >= 1.0:
        return torch.ones_like(logprobs, dtype=torch.bool)
    sorted_lp, order = torch.sort(logprobs, dim=-1, descending=True)
    cum = sorted_lp.exp().cumsum(dim=-1)
    # drop a token when the mass strictly before it already reaches top_p
    drop_sorted = (cum - sorted_lp.exp()) >= top_p
    drop_sorted[..., 0] = False
    keep = torch.ones_like(logprobs, dtype=torch.bool)
    keep.scatter_(-1, order, ~drop_sorted)
    return keep


def knn_probs(neighbours: Neighbours, vocab_size: int, temperature: float) -> torch.Tensor:
    """p_kNN [B, V]: neighbour weights softmax(-d/T) summed per next token (rows without any
    neighbour are all zero)."""
    import torch

    dist = neighbours.distances.to(torch.float32)
    tok = neighbours.tokens.to(torch.long)
    valid = tok >= 0
    scores = torch.where(valid, -dist / temperature, torch.full_like(dist, float("-inf")))
    weights = torch.softmax(scores, dim=-1)
    weights = torch.nan_to_num(weights, nan=0.0)  # a row with no neighbour at all
    probs = torch.zeros(dist.shape[0], vocab_size, dtype=torch.float32, device=dist.device)
    probs.scatter_add_(-1, tok.clamp(min=0), torch.where(valid, weights, 0.0))
    return probs


def knn_logprobs(neighbours: Neighbours, vocab_size: int, temperature: float,
                 probs: torch.Tensor | None = None) -> torch.Tensor:
    """log p_kNN [B, V]: neighbour weights softmax(-d/T) summed per next token, with each
    row's unretrieved tokens set to that row's smallest retrieved log-probability."""
    import torch

    if probs is None:
        probs = knn_probs(neighbours, vocab_size, temperature)
    retrieved = probs > 0
    logp = torch.where(retrieved, probs.log(), torch.full_like(probs, float("inf")))
    floor = logp.min(dim=-1, keepdim=True).values  # per row
    floor = torch.where(torch.isinf(floor), torch.zeros_like(floor), floor)  # nothing retrieved
    return torch.where(retrieved, logp, floor.expand_as(logp))


def goodtriever_logprobs(
    base_logits: torch.Tensor,
    *,
    toxic: Neighbours | None = None,
    nontoxic: Neighbours | None = None,
    alpha: float = DEFAULT_ALPHA,
    temperature: float = DEFAULT_TEMPERATURE,
    top_p: float = DEFAULT_TOP_P,
    gate: float = DEFAULT_GATE,
    penalize_only: bool = DEFAULT_PENALIZE_ONLY,
) -> torch.Tensor:
    """Next-token log-probs [B, V] from base logits [B, V] and the two datastores' neighbours.

    Either datastore may be absent (its term is then zero): toxic only is the anti-expert
    alone, as in the paper's ablation. alpha = 0 returns the top-p-filtered base distribution.
    `gate` (0: off, the paper) applies the shift only to rows whose stores disagree on the
    nucleus by at least that total variation (needs both stores). `penalize_only` only ever
    pushes tokens down: with both stores the shift is clipped at zero (one store: see above).
    """
    return goodtriever_step(base_logits, toxic=toxic, nontoxic=nontoxic, alpha=alpha,
                            temperature=temperature, top_p=top_p, gate=gate,
                            penalize_only=penalize_only)[0]


def goodtriever_step(
    base_logits: torch.Tensor,
    *,
    toxic: Neighbours | None = None,
    nontoxic: Neighbours | None = None,
    alpha: float = DEFAULT_ALPHA,
    temperature: float = DEFAULT_TEMPERATURE,
    top_p: float = DEFAULT_TOP_P,
    gate: float = DEFAULT_GATE,
    penalize_only: bool = DEFAULT_PENALIZE_ONLY,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`goodtriever_logprobs` and, per row, whether the shift was applied (bool [B])."""
    import torch

    if base_logits.dim() != 2:
        raise ValueError(f"base_logits must be [B, V], got {tuple(base_logits.shape)}")
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    if not 0.0 <= gate <= 1.0:
        raise ValueError("gate must be in [0, 1] (a total variation)")
    base = torch.log_softmax(base_logits.to(torch.float32), dim=-1)
    keep = top_p_mask(base, top_p)
    filtered = torch.where(keep, base, torch.full_like(base, float("-inf")))
    vocab = base.shape[-1]
    rows = base.shape[0]
    shift = torch.zeros_like(base)
    p_plus = p_minus = None
    if nontoxic is not None:
        p_plus = knn_probs(nontoxic, vocab, temperature)
        shift = shift + knn_logprobs(nontoxic, vocab, temperature, p_plus)
    if toxic is not None:
        p_minus = knn_probs(toxic, vocab, temperature)
        shift = shift - knn_logprobs(toxic, vocab, temperature, p_minus)
    applied = torch.full((rows,), alpha > 0 and (p_plus is not None or p_minus is not None),
                         dtype=torch.bool, device=base.device)
    if gate > 0 and p_plus is not None and p_minus is not None:
        tv = 0.5 * torch.where(keep, (p_plus - p_minus).abs(), 0.0).sum(dim=-1)
        applied = applied & (tv >= gate)
        shift = torch.where(applied[:, None], shift, torch.zeros_like(shift))
    if penalize_only:
        if p_plus is not None and p_minus is not None:
            shift = shift.clamp(max=0.0)
        elif p_minus is None:  # the non-toxic store alone: nothing to push down
            shift = torch.zeros_like(shift)
            applied = torch.zeros_like(applied)
        # the toxic store alone: -log p_kNN- already only pushes its tokens down against the
        # ones it never retrieved (a row's constant, which the softmax ignores); left as it is
    return torch.log_softmax(filtered + alpha * shift, dim=-1), applied


__all__ = ["Neighbours", "goodtriever_logprobs", "goodtriever_step", "knn_logprobs", "knn_probs",
           "top_p_mask"]
