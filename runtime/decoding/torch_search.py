"""Exact k-nearest-neighbour search with torch: the GPU search of the torch decoding path.

Keys live in one tensor on the search device (CUDA when there is one, else CPU); a query batch
costs one matmul and one top-k: d(q, k) = ||q||^2 - 2 q.k + ||k||^2, the squared L2 distance
FAISS returns too. Large stores are scanned in blocks with a running top-k, so memory stays at
batch x block scores. Pure torch (no FAISS, no pydantic): a machine with only torch can run it
(bench/goodtriever_device.py loads this file on its own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

BLOCK = 1 << 18  # keys scored per block (batch x BLOCK floats of scores at a time)


class TorchKeySearch:
    """Keys [n, dim] and their next tokens [n] on one device; `search` gives the k nearest."""

    def __init__(self, keys: torch.Tensor, tokens: torch.Tensor, *,
                 device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                 ids: torch.Tensor | None = None, block: int = BLOCK) -> None:
        import torch

        self.block = max(1, int(block))
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
        if keys.dim() != 2 or len(keys) != len(tokens):
            raise ValueError(f"keys must be [n, dim] with one token each, got {tuple(keys.shape)}"
                             f" and {tuple(tokens.shape)}")
        self.device = device
        self.keys = keys.to(device=device, dtype=dtype).contiguous()
        self.norms = (keys.to(device=device, dtype=torch.float32) ** 2).sum(-1)
        self.tokens = tokens.to(device=device, dtype=torch.long)
        self.ids = None if ids is None else ids.to(device=device, dtype=torch.long)

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    @property
    def dim(self) -> int:
        return int(self.keys.shape[1])

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor,
                                                             torch.Tensor]:
        """(squared L2 distances [B, k] float32, next tokens [B, k] long, row positions [B, k]
        long) of the k nearest keys, nearest first; -1 tokens and inf distances past the end
        of a store with fewer than k keys. Results stay on the search device."""
        import torch

        q = queries.to(device=self.device, dtype=torch.float32)
        if q.dim() == 1:
            q = q[None, :]
        b, n = q.shape[0], len(self)
        kk = min(k, n)
        best_d = torch.full((b, k), float("inf"), device=self.device)
        best_i = torch.full((b, k), -1, dtype=torch.long, device=self.device)
        if kk > 0:
            qn = (q * q).sum(-1, keepdim=True)
            qc = q.to(self.keys.dtype)
            vals_l, idx_l = [], []
            for start in range(0, n, self.block):
                block = self.keys[start:start + self.block]
                d = qn - 2.0 * (qc @ block.T).float() + self.norms[None, start:start + self.block]
                v, i = torch.topk(d, min(kk, block.shape[0]), dim=-1, largest=False)
                vals_l.append(v)
                idx_l.append(i + start)
            vals, idx = torch.cat(vals_l, -1), torch.cat(idx_l, -1)
            if len(vals_l) > 1:
                vals, pos = torch.topk(vals, kk, dim=-1, largest=False)
                idx = torch.gather(idx, -1, pos)
            best_d[:, :kk] = vals.clamp(min=0.0)
            best_i[:, :kk] = idx
        tok = torch.where(best_i >= 0, self.tokens[best_i.clamp(min=0)], -1)
        rows = best_i if self.ids is None else torch.where(
            best_i >= 0, self.ids[best_i.clamp(min=0)], -1)
        return best_d, tok, rows


__all__ = ["BLOCK", "TorchKeySearch"]
