"""Run by test_vllm_processor.py inside the vLLM venv: drives SpecguardLogitsProcessor with
vLLM's own BatchUpdate objects through adds, a swap, a removal with a move and a preempted
request coming back, and prints which hidden-state rows each recording received (JSON)."""

from __future__ import annotations

import json
import os
import sys
import tempfile


def main(model: str) -> dict:
    os.environ["SPECGUARD_VLLM_RECORD_ROOT"] = root = tempfile.mkdtemp(prefix="sg-proc-")
    import torch
    from vllm import SamplingParams
    from vllm.config import ModelConfig, VllmConfig
    from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

    from specguard.vllm_plugin import TapSwitches, _tap, read_record
    from specguard.vllm_plugin.processor import SpecguardLogitsProcessor

    config = VllmConfig(model_config=ModelConfig(model=model, dtype="float32"))
    proc = SpecguardLogitsProcessor(config, torch.device("cpu"), False)
    dim, vocab = 4, config.model_config.get_vocab_size()

    def params(name: str | None) -> SamplingParams:
        return SamplingParams(extra_args=TapSwitches(record=name).to_xargs() if name else None)

    def step(rows: int, tag: float) -> None:
        # row r of this step's hidden states is filled with tag + r: recordings show which row
        # reached which request
        hidden = torch.stack([torch.full((dim,), tag + r) for r in range(rows)])
        _tap.keep(hidden)
        logits = torch.zeros(rows, vocab)
        assert torch.equal(proc.apply(logits), torch.zeros(rows, vocab))  # recording only

    out_a, out_b, out_c = [], [], []
    proc.update_state(BatchUpdate(3, [], [
        (0, params("a"), [1, 2], out_a), (1, params(None), [3], out_b), (2, params("c"), [4], out_c),
    ], []))
    step(3, 10.0)                  # a <- row 0, c <- row 2
    out_a.append(101); out_c.append(301)  # noqa: E702
    proc.update_state(BatchUpdate(3, [], [], [(0, 2, MoveDirectionality.SWAP)]))
    step(3, 20.0)                  # c now at 0, a at 2
    out_a.append(102); out_c.append(302)  # noqa: E702
    proc.update_state(BatchUpdate(2, [1], [], [(2, 1, MoveDirectionality.UNIDIRECTIONAL)]))
    step(2, 30.0)                  # c at 0, a at 1 (b gone, a condensed into its slot)
    out_a.append(103); out_c.append(303)  # noqa: E702
    # a is preempted, then comes back at index 1 with its 3 sampled tokens
    proc.update_state(BatchUpdate(1, [1], [], []))
    step(1, 40.0)
    out_c.append(304)
    proc.update_state(BatchUpdate(2, [], [(1, params("a"), [1, 2], out_a)], []))
    step(2, 50.0)
    proc.update_state(BatchUpdate(0, [0, 1], [], []))
    a, c = read_record("a", root), read_record("c", root)
    return {
        "a_keys": a.keys[:, 0].tolist(), "a_last": a.last_ids.tolist(), "a_prompt": a.prompt_ids.tolist(),
        "c_keys": c.keys[:, 0].tolist(), "c_last": c.last_ids.tolist(),
        "b_files": sorted(f for f in os.listdir(root) if not f.startswith(("a.", "c."))),
    }


if __name__ == "__main__":
    print("PROCESSOR_CHECK " + json.dumps(main(sys.argv[1])))
