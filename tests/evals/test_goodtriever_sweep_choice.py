"""How bench/goodtriever_sweep.py chooses Goodtriever's defaults from a sweep's summary: the
lowest EMT within the perplexity budget and the dist-2 budget, and the labels it reads.

The rule is what ships the defaults, so it is tested apart from the (slow) sweep itself."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "goodtriever_sweep.py"


@pytest.fixture(scope="module")
def sweep():
    spec = importlib.util.spec_from_file_location("goodtriever_sweep", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def summary(rows: dict[str, tuple[float, float, float]]) -> dict:
    """label -> (EMT, perplexity, dist-2) as the harness's summary holds them."""
    return {"methods": {label: {"metrics": {
        "expected_maximum_toxicity@toxicity_guard": {"value": emt},
        "perplexity@perplexity": {"value": ppl},
        "dist_2": {"value": d2}}} for label, (emt, ppl, d2) in rows.items()}}


def test_a_repetitive_config_loses_to_a_diverse_one_even_with_a_lower_emt(sweep):
    grid = [("plain", None), sweep.parse_config("a=8 T=400"), sweep.parse_config("a=4 T=1000"),
            sweep.parse_config("a=16 T=1000")]
    s = summary({"plain": (0.63, 68.0, 0.99),
                 "a=8 T=400": (0.25, 62.0, 0.82),      # fluent to the LM, but repeats itself
                 "a=4 T=1000": (0.27, 50.0, 0.93),
                 "a=16 T=1000": (0.19, 102.0, 0.81)})  # over the perplexity budget
    chosen, points = sweep.choose(s, grid, 0.15, 0.10)
    assert chosen == "a=4 T=1000"
    by = {p["label"]: p for p in points}
    assert by["a=8 T=400"]["dist2_ratio"] == pytest.approx(0.82 / 0.99)
    # without the dist-2 bound, the lowest EMT within the perplexity budget wins
    assert sweep.choose(s, grid, 0.15, 1.0)[0] == "a=8 T=400"


def test_when_nothing_keeps_diversity_the_perplexity_budget_alone_decides(sweep):
    grid = [("plain", None), sweep.parse_config("a=8 T=400"), sweep.parse_config("a=4")]
    s = summary({"plain": (0.63, 68.0, 0.99), "a=8 T=400": (0.25, 62.0, 0.82),
                 "a=4": (0.43, 70.0, 0.85)})
    assert sweep.choose(s, grid, 0.15, 0.10)[0] == "a=8 T=400"
    # nothing within the perplexity budget either: the smallest perplexity increase
    assert sweep.choose(s, grid, 0.0, 0.10)[0] == "a=8 T=400"


def test_a_config_label_is_read_as_knobs_over_the_papers_values(sweep):
    assert sweep.parse_config("a=2 (paper)") == (
        "a=2 (paper)", {"alpha": 2.0, "gate": 0.0, "temperature": 100.0, "k": 1024, "top_p": 0.9,
                        "penalize_only": False})
    label, opts = sweep.parse_config(" a=6 T=600 k=256 top-p=1 gate=0.2 pen=1 ")
    assert label == "a=6 T=600 k=256 top-p=1 gate=0.2 pen=1"
    assert opts == {"alpha": 6.0, "gate": 0.2, "temperature": 600.0, "k": 256, "top_p": 1.0,
                    "penalize_only": True}
    # every config is a valid setting of the loops it runs in
    from specguard.decoding import GoodtrieverParams

    assert GoodtrieverParams(**opts).penalize_only is True
    with pytest.raises(SystemExit, match="pen takes 0 or 1"):
        sweep.parse_config("pen=yes")
    with pytest.raises(SystemExit, match="knob=value"):
        sweep.parse_config("alpha=4")
    with pytest.raises(SystemExit, match="knob=value"):
        sweep.parse_config("a4")
