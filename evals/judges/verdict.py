"""The `verdict` judge: takes a guard method's own verdict as the label, so that a classifier
(the guard's tiers, `specguard.evals.guard_methods`) is scored against the dataset's labels with
the same precision, recall, F1 and AUPRC metrics as any judge. It reads the method's report
(`label`: unsafe | safe, `score`: P(unsafe)); a method without one is a configuration error."""

from __future__ import annotations

from ...errors import ConfigError
from ._base import HarmLabel, JudgeCard, JudgeContext, JudgeInput, Judgement, register_judge


class VerdictJudge:
    name = "verdict"
    card = JudgeCard(name="verdict", kind="method verdict",
                     description="the guard method's own verdict, scored against the "
                                 "dataset's labels")

    async def judge(self, inp: JudgeInput) -> Judgement:
        report = inp.report or {}
        label = report.get("label")
        if label not in (HarmLabel.SAFE.value, HarmLabel.UNSAFE.value):
            raise ConfigError(
                "The `verdict` judge reads a guard method's verdict; this method reports none.",
                hint="Use it with the guard methods (plugins: [specguard.evals.guard_methods]).",
            )
        return Judgement(judge=self.name, label=label, score=report.get("score"),
                         raw=",".join(report.get("categories") or []) or None)


def _factory(ctx: JudgeContext) -> VerdictJudge:
    if ctx.options:
        raise ConfigError(f"The `verdict` judge takes no options, got {sorted(ctx.options)}.")
    return VerdictJudge()


register_judge("verdict", _factory)
