"""The guard's eval suite through the harness: the guard methods classify each item's request,
the `verdict` judge reads their verdicts, and precision/recall/F1/AUPRC, the share escalated
and the time per verdict come out of the same summary as any suite. Real parts: the shipped
fast tier and the embedded model as the deliberative tier."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from specguard.errors import ConfigError
from specguard.evals import metrics as M
from specguard.evals.runner import Runner, read_records
from specguard.evals.suites import build_items, load_suite

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evals"))
from toy_harness import write_toy_suite  # noqa: E402


def _suite(tmp_path: Path, methods: str, extra: str = "") -> Path:
    write_toy_suite(tmp_path)  # the toy dataset: 3 harmful and 3 benign prompts
    path = tmp_path / "guard_suite.yaml"
    path.write_text(
        "name: guard_toy\n"
        "plugins: [specguard.evals.guard_methods]\n"
        "datasets:\n"
        "  - {custom: prompts.yaml, group: toy}\n"
        f"methods:\n{methods}"
        "judges: [verdict]\n"
        "metrics: [precision, recall, f1, auprc, false_positive_rate, escalation_rate,\n"
        "          ms_per_item, model_calls_per_item]\n"
        "order: method\n"
        f"bootstrap: 100\n{extra}"
    )
    return path


def _run(suite, backend, out):
    return asyncio.run(Runner(suite, backend, backend_name="embedded", out_dir=out,
                              progress=False).run())


@pytest.mark.model
def test_guard_tiers_through_the_harness(tmp_path, embedded_backend):
    suite = load_suite(_suite(
        tmp_path,
        "  - {name: guard, label: fast, options: {tier: fast}}\n"
        # A band of [0, 1] sends every item to the deliberative tier.
        "  - {name: guard, label: escalated, options: {tier: escalated, escalate_band: [0.0, 1.0]}}\n",
    ))
    result = _run(suite, embedded_backend, tmp_path / "run")
    assert result.errors == 0 and result.computed == 12
    records = list(read_records(tmp_path / "run").values())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())

    fast = [r for r in records if r["method"] == "fast"]
    esc = [r for r in records if r["method"] == "escalated"]
    assert all(r["report"]["decided_by"] == "fast" and not r["report"]["escalated"] for r in fast)
    assert all(r["report"]["decided_by"] == "deliberative" and r["report"]["escalated"] for r in esc)
    assert all(r["cost"]["model_calls"] == 0 for r in fast)
    assert all(r["cost"]["model_calls"] == 1 for r in esc)
    # The judge takes the method's verdict as its label, with the method's score.
    for r in records:
        assert r["judgements"]["verdict"]["label"] == r["answer"] == r["report"]["label"]
        assert r["judgements"]["verdict"]["score"] == r["report"]["score"]

    # The summary's numbers are the metrics of the records' own labels and scores.
    for label, recs in (("fast", fast), ("escalated", esc)):
        m = summary["methods"][label]["metrics"]
        y = [r["item"]["harmful"] for r in recs]
        flagged = [r["report"]["label"] == "unsafe" for r in recs]
        assert m["f1"]["value"] == pytest.approx(M.f1(y, flagged))
        assert m["recall"]["value"] == pytest.approx(M.recall(y, flagged))
        if all(r["report"]["score"] is not None for r in recs):
            assert m["auprc"]["value"] == pytest.approx(M.auprc(y, [r["report"]["score"] for r in recs]))
        assert m["ms_per_item"]["value"] > 0
    assert summary["methods"]["fast"]["metrics"]["escalation_rate"]["value"] == 0.0
    assert summary["methods"]["escalated"]["metrics"]["escalation_rate"]["value"] == 1.0
    # The fast tier separates the toy set's bomb/kill requests from its look-alikes.
    assert summary["methods"]["fast"]["metrics"]["recall"]["value"] >= 2 / 3


def test_verdict_judge_needs_a_guard_method(tmp_path):
    # toy_harness (imported above) registers `scripted`, a method that answers and reports
    # no verdict.
    suite = load_suite(_suite(tmp_path, "  - {name: scripted}\n"))
    with pytest.raises(ConfigError, match="verdict"):
        _run(suite, None, tmp_path / "run")


def test_unknown_guard_option_is_named(tmp_path):
    suite = load_suite(_suite(tmp_path, "  - {name: guard, options: {tier: fast, band: [0, 1]}}\n"))
    with pytest.raises(ConfigError, match="band"):
        _run(suite, None, tmp_path / "run")
    suite = load_suite(_suite(tmp_path, "  - {name: guard, options: {tier: quick}}\n"))
    with pytest.raises(ConfigError, match="tier"):
        _run(suite, None, tmp_path / "run")


def _parts(dataset, root):
    from specguard.data import load, record_part

    return {r.id: record_part(r) for r in load(dataset, subset="all", data_dir_override=root)}


def test_held_out_part_is_the_trainers_held_out_split(data_root, tmp_path):
    from specguard.data import Part

    def items(part):
        path = tmp_path / f"{part}.yaml"
        path.write_text(
            "name: parts\ndatasets:\n"
            f"  - {{name: openai_moderation, part: {part}}}\n"
            "methods: [raw]\n")
        return build_items(load_suite(path), data_dir=data_root)

    held, train, val, every = items("held_out"), items("train"), items("validation"), items("all")
    assert held and train and val
    keys = [{i.key for i in x} for x in (held, train, val)]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    # What train and validation leave out of the rest is the near-duplicate exclusion.
    assert keys[0] | keys[1] | keys[2] <= {i.key for i in every}
    parts = _parts("openai_moderation", data_root)
    assert all(parts[i.record_id] is Part.HELD_OUT for i in held)
    assert all(parts[i.record_id] is Part.TRAIN for i in train)
    # About half of the records are held out.
    assert 0.4 < len(held) / len(every) < 0.6


def test_builtin_guard_suite_is_held_out_and_balanced(data_root):
    from specguard.data import Part

    suite = load_suite("guard")
    items = build_items(suite, data_dir=data_root)
    parts = {d: _parts(d, data_root) for d in {i.dataset for i in items}}
    assert all(parts[i.dataset][i.record_id] is Part.HELD_OUT for i in items)
    by_group: dict[str, list[bool]] = {}
    for i in items:
        by_group.setdefault(i.group, []).append(bool(i.harmful))
    assert set(by_group) == {"openai_moderation", "toxicchat", "xstest", "harmful_vs_benign"}
    for flags in by_group.values():
        assert sum(flags) == len(flags) - sum(flags)  # as many harmful as benign


def test_deliberative_tier_on_another_backend(tmp_path):
    # The deliberative tier on a separately named backend (a served guard model in practice;
    # scripted here: the served model is the outside world). It calls every prompt unsafe.
    suite = load_suite(_suite(
        tmp_path,
        "  - {name: guard, label: served, options: {tier: deliberative,\n"
        "     deliberative_backend: 'scripted:- Safety Assessment: unsafe'}}\n",
    ))
    result = _run(suite, None, tmp_path / "run")
    assert result.errors == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    m = summary["methods"]["served"]["metrics"]
    assert m["recall"]["value"] == 1.0 and m["false_positive_rate"]["value"] == 1.0
    assert m["model_calls_per_item"]["value"] == 1.0
