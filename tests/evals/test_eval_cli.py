"""`specguard eval` through Typer's test runner, and the runner on the real embedded model."""

from __future__ import annotations

import asyncio
import json

import pytest
from specguard.evals import Runner, Suite
from specguard.evals.cli import app
from toy_harness import write_toy_suite as _write_custom
from typer.testing import CliRunner


def test_cli_run_then_resume_then_report(tmp_path):
    suite = _write_custom(tmp_path)
    out = tmp_path / "run"
    cli = CliRunner()
    # The scripted methods never call the backend; `embedded` loads its model lazily.
    first = cli.invoke(app, ["run", str(suite), "--out", str(out), "--no-progress"])
    assert first.exit_code == 0, first.output
    assert "12 records computed (0 from the cache" in first.output
    assert {p.name for p in out.iterdir()} >= {"config.json", "records.jsonl", "summary.json",
                                                "report.html", "report.md"}
    again = cli.invoke(app, ["run", str(suite), "--out", str(out), "--no-progress"])
    assert again.exit_code == 0 and "0 records computed (12 from the cache" in again.output
    rep = cli.invoke(app, ["report", str(out), str(out), "--out", str(tmp_path / "rep")])
    assert rep.exit_code == 0 and (tmp_path / "rep" / "report.html").exists()


def test_cli_lists_datasets_and_suites(data_root):
    cli = CliRunner()
    listing = cli.invoke(app, ["datasets", "--data-dir", str(data_root)])
    assert listing.exit_code == 0 and "xstest" in listing.output and "2/2" in listing.output
    suites = cli.invoke(app, ["suites"])
    assert suites.exit_code == 0 and "refusal" in suites.output


def test_cli_reports_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndatasets: []\nmethods: [raw]\n")
    result = CliRunner().invoke(app, ["run", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0


@pytest.mark.model
@pytest.mark.slow
def test_raw_and_runtime_methods_on_the_embedded_model(embedded_backend, data_root, tmp_path):
    suite = Suite.model_validate({
        "name": "tiny", "datasets": [{"name": "xstest", "n": 1, "seed": 3}],
        "methods": ["raw", "runtime"], "judges": ["refusal_match"],
        "metrics": ["refusal_rate", "over_refusal_rate", "model_calls_per_item"],
        "generation": {"max_tokens": 12}, "bootstrap": 50,
    })
    result = asyncio.run(Runner(suite, embedded_backend, backend_name="embedded",
                                out_dir=tmp_path / "run", data_dir=data_root,
                                progress=False).run())
    assert result.computed == 2 and result.errors == 0
    recs = {r["method"]: r for r in map(json.loads, (tmp_path / "run" / "records.jsonl")
                                        .read_text().splitlines())}
    raw, guarded = recs["raw"], recs["runtime"]
    assert raw["cost"]["model_calls"] == 1 and raw["cost"]["completion_tokens"] <= 12
    assert raw["messages"][0]["role"] == "system" and raw["report"] is None
    assert guarded["action"] in ("allowed", "revised", "refused")
    assert guarded["report"]["model_calls"] == guarded["cost"]["model_calls"]
    # a request the input check refuses costs no model call; any other one at least the draft
    refused_at_input = guarded["action"] == "refused" and guarded["cost"]["completion_tokens"] == 0
    assert guarded["cost"]["model_calls"] >= (0 if refused_at_input else 1)
    assert guarded["judgements"]["refusal_match"]["label"] in ("refused", "complied")


def test_cli_model_judges_ask_the_judge_roles_model(tmp_path):
    """`eval run --role judge=URI`: the suite's model judges ask that model, not the run's
    backend (the embedded model, which is refused as a judge). The judge role is a scripted
    backend standing in for a hosted judge model: it says every answer complied, so even the
    strict method's refusals are counted as answers, which only the judge role could decide."""
    suite = _write_custom(tmp_path)
    suite.write_text(suite.read_text().replace("judges: [refusal_match]", "judges: [refusal_llm]"))
    cli = CliRunner()
    args = ["run", str(suite), "--no-progress"]
    refused = cli.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert refused.exit_code != 0 and "embedded" in str(refused.exception or refused.output)
    judged = cli.invoke(app, [*args, "--out", str(tmp_path / "b"), "--role", "judge=scripted:COMPLIED"])
    assert judged.exit_code == 0, judged.output
    records = [json.loads(line) for line in (tmp_path / "b" / "records.jsonl").read_text().splitlines()]
    assert len(records) == 12
    labels = {j["label"] for r in records for j in r["judgements"].values()}
    assert labels == {"complied"}, labels
    other = cli.invoke(app, [*args, "--out", str(tmp_path / "c"), "--role", "critic=scripted:x"])
    assert other.exit_code != 0  # eval run takes only the judge role
