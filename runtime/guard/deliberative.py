"""The deliberative tier (ThinkGuard-style): a model writes a label, categories and a short
critique. Works with any chat backend; uses constrained output when the backend has it, and
otherwise parses the answer with anchored patterns. An unparseable answer is an explicit
UNDECIDED verdict, never a guess."""

from __future__ import annotations

import json
import re
import time
from importlib import resources

from ..backends.base import Backend
from ..types import GenerationParams, Message, Role
from .verdict import CheckRequest, Label, Stage, Tier, Verdict

_LABEL = re.compile(r"^\W*Safety Assessment\W*:\s*\**\s*(safe|unsafe)\b", re.I | re.M)
_CATEGORIES = re.compile(r"^\W*Categories\W*:\s*(.*)$", re.I | re.M)
_EXPLANATION = re.compile(r"^\W*Explanation\W*:\s*(.*)", re.I | re.M | re.S)

# Field order matters: the label comes first, so a caller can stop after it.
VERDICT_SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["safe", "unsafe"]},
        "categories": {"type": "array", "items": {"type": "string"}, "maxItems": 4},
        "explanation": {"type": "string", "maxLength": 300},
    },
    "required": ["label", "categories", "explanation"],
}


def _prompt_template() -> str:
    return (resources.files("specguard") / "prompts" / "guard_deliberative.txt").read_text()


def render_conversation(request: CheckRequest) -> str:
    lines = [f"{m.role.value.upper()}: {m.content}" for m in request.messages if m.role != Role.SYSTEM]
    if request.response is not None:
        lines.append(f"ASSISTANT: {request.response}")
    return "\n".join(lines)


def parse_thinkguard(text: str) -> tuple[Label, list[str], str, bool]:
    """Parse the ThinkGuard answer format. Returns (label, categories, explanation, parsed)."""
    m = _LABEL.search(text)
    if not m:
        return Label.UNDECIDED, [], "", False
    cats: list[str] = []
    c = _CATEGORIES.search(text)
    if c:
        cats = [x.strip() for x in c.group(1).split(",") if x.strip() and x.strip().lower() != "none"]
    e = _EXPLANATION.search(text)
    return Label(m.group(1).lower()), cats, (e.group(1).strip() if e else ""), True


def parse_json_verdict(text: str) -> tuple[Label, list[str], str, bool]:
    try:
        data = json.loads(text)
        label = Label(str(data["label"]).lower())
    except (ValueError, KeyError, TypeError):
        return Label.UNDECIDED, [], "", False
    if label is Label.UNDECIDED:
        return Label.UNDECIDED, [], "", False
    cats = [str(c) for c in data.get("categories", []) if str(c).lower() != "none"]
    return label, cats, str(data.get("explanation", "")), True


class DeliberativeChecker:
    tier = Tier.DELIBERATIVE

    def __init__(
        self,
        backend: Backend,
        *,
        spec_text: str = "Be helpful and harmless.",
        categories: list[str] | None = None,
        max_tokens: int = 160,
        name: str | None = None,
    ) -> None:
        self.backend = backend
        self.spec_text = spec_text
        self.categories = categories or []
        self.max_tokens = max_tokens
        self.name = name or f"deliberative:{backend.name}"
        self._template = _prompt_template()

    def build_prompt(self, request: CheckRequest, spec_text: str | None = None) -> str:
        profile_block = ""
        if request.profile is not None:
            profile_block = f"The user describes themself as: \"{request.profile.text}\""
            if request.guidelines:
                profile_block += "\nFor this user, decline: " + "; ".join(request.guidelines)
        return self._template.format(
            target="assistant's last answer" if request.stage is Stage.OUTPUT else "user's last request",
            spec=spec_text or self.spec_text,
            profile_block=profile_block,
            categories=", ".join(self.categories) or "any serious harm",
            conversation=render_conversation(request),
        )

    async def check(self, request: CheckRequest, *, spec_text: str | None = None) -> Verdict:
        start = time.perf_counter()
        constrained = self.backend.capabilities.constrained_output
        params = GenerationParams(
            max_tokens=self.max_tokens,
            temperature=0.0,
            json_schema=VERDICT_SCHEMA if constrained else None,
        )
        prompt = self.build_prompt(request, spec_text)
        completion = await self.backend.complete([Message(role=Role.USER, content=prompt)], params)
        parse = parse_json_verdict if constrained else parse_thinkguard
        label, cats, explanation, ok = parse(completion.text)
        return Verdict(
            stage=request.stage,
            label=label,
            categories=cats,
            explanation=explanation if ok else "the guard's answer could not be parsed",
            tier=self.tier,
            checker=self.name,
            latency_ms=(time.perf_counter() - start) * 1000,
            tokens=completion.usage.total_tokens,
            model_calls=1,
            raw=completion.text,
            parse_ok=ok,
        )
