"""One CPU thread for small per-step work.

A decoding step for one or a few sequences (a log-softmax, a sort and a k-NN search over one
query) is too small to split across threads, and on a loaded machine OpenMP's thread
barriers make it far slower: measured on the 2-core dev box under load, the combination took
1300-1700 ms per step with torch's 2 threads against 60 ms with one, and a 1024-NN FAISS
search 230-300 ms against 50-56 ms. Steps of up to SMALL_BATCH rows therefore run with torch
and FAISS limited to one thread (restored afterwards).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

SMALL_BATCH = 4


@contextmanager
def one_thread_if_small(batch: int, on_cpu: bool = True) -> Iterator[None]:
    if batch > SMALL_BATCH or not on_cpu:
        yield
        return
    import torch

    faiss = sys.modules.get("faiss")  # only if the datastores already loaded it
    t_prev = torch.get_num_threads()
    f_prev = faiss.omp_get_max_threads() if faiss is not None else None
    torch.set_num_threads(1)
    if faiss is not None:
        faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(t_prev)
        if faiss is not None and f_prev is not None:
            faiss.omp_set_num_threads(f_prev)
