"""Measure the revision gate's topic floor on validation data and write specs/gate/topic_floor.json.

The floor is the encoder cosine (all-MiniLM-L6-v2, the encoder the compliance judge reads)
between a request and an answer below which a revision counts as off topic. It is a choice,
so it is made on the validation parts only (never on held-out data):

- on topic: requests and the answers real models gave them that people labelled complied or
  partial (XSTest completions and refusal-direction completions, validation part);
- off topic: the same requests paired with answers to *other* requests of the same sets.

The floor is the `--keep` quantile of the on-topic similarities (default: keep 95% of real
answers); the file records how many off-topic pairs that floor lets through.

    python scripts/fit_topic_floor.py            # writes specs/gate/topic_floor.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import numpy as np  # noqa: E402

from specguard.data import Part, in_part, load  # noqa: E402
from specguard.encoders import load_encoder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("xstest_completions", "refusal_direction_completions")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=float, default=0.95, help="share of real answers kept")
    ap.add_argument("--out", default=str(ROOT / "specs" / "gate" / "topic_floor.json"))
    args = ap.parse_args()
    pairs = []
    counts = {}
    for name in SOURCES:
        rows = [r for r in in_part(load(name), Part.VALIDATION)
                if r.label in ("complied", "partial") and r.answer and r.answer.strip()]
        counts[name] = len(rows)
        pairs += [(r.text, r.answer) for r in rows]
    enc = load_encoder("minilm")
    q = np.asarray(enc.encode([p for p, _ in pairs]), dtype=np.float32)
    a = np.asarray(enc.encode([x for _, x in pairs]), dtype=np.float32)
    sims = q @ a.T  # [i, j]: request i against answer j
    same = np.array([p for p, _ in pairs])
    on = np.diag(sims)
    off_mask = same[:, None] != same[None, :]  # answers to a different request
    off = sims[off_mask]
    floor = float(np.quantile(on, 1 - args.keep))
    out = {
        "floor": round(floor, 4),
        "encoder": enc.name,
        "chosen_on": {"part": "validation", "sources": counts,
                      "rule": f"the {100 * (1 - args.keep):.0f}th percentile of on-topic "
                              "similarities (real complied/partial answers to their own request)"},
        "on_topic": {"n": int(on.size), "kept": round(float((on >= floor).mean()), 4),
                     "median": round(float(np.median(on)), 4)},
        "off_topic": {"n": int(off.size), "passed": round(float((off >= floor).mean()), 4),
                      "median": round(float(np.median(off)), 4)},
        "script": "scripts/fit_topic_floor.py",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
