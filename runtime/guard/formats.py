"""Prompt and answer formats of guard models, so the deliberative tier can run on a general chat
model (the ThinkGuard-style instruction prompt) or on a dedicated guard model (Llama Guard 3/4,
ThinkGuard, gpt-oss-safeguard, Qwen3Guard, Granite Guardian, ShieldGemma, WildGuard) in that
model's documented format.

The scope's active spec is the guard's policy (specguard.guard.policy_doc): each format renders
it, with the tenant's taxonomy, the way its model takes a policy: ThinkGuard's instruction
prompt quotes it; Llama Guard 3/4 (rendered) get it as one more unsafe-content category;
gpt-oss-safeguard gets the whole policy document as its system message (INSTRUCTIONS /
DEFINITIONS / VIOLATES / SAFE / EXAMPLES, fitted to 400-600 tokens, its guide's range);
Granite Guardian gets it as the risk definition (bring-your-own criteria). Qwen3Guard's policy
is fixed in its weights: only its Controversial label is the tenant's to map (`controversial:
refuse | allow`).

Each format builds the messages for a check, parses the answer with its own anchored patterns
or schema (an answer that does not fit is an UNDECIDED verdict, which the policy's
`on_undecided` handles: never a crash, never a silent "safe"), knows which answer words are its
labels (so the score can come from the label token's probability) and, where the format is free
to choose, gives a JSON schema for constrained output.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources

from pydantic import BaseModel, ConfigDict, ValidationError

from .._prompts import prompt as _prompt
from ..errors import ConfigError
from ..policy import Controversial
from ..types import Message, Role, TokenLogprob
from .policy_doc import PolicyDoc, fit, guard_policy, parse_policy
from .taxonomy import Category, Taxonomy
from .verdict import CheckRequest, Label, Stage

# The category a verdict names when the scope's own spec (not a taxonomy category) was violated.
POLICY = Category(id="policy", name="Deployment policy",
                  description="The rules of this deployment's safety specification.")


@dataclass
class Parsed:
    label: Label
    categories: list[str] = field(default_factory=list)
    explanation: str = ""
    ok: bool = True

    @classmethod
    def failed(cls) -> Parsed:
        return cls(Label.UNDECIDED, [], "", False)


def _turns(request: CheckRequest) -> list[tuple[Role, str]]:
    turns = [(m.role, m.content) for m in request.messages if m.role != Role.SYSTEM]
    if request.response is not None:
        turns.append((Role.ASSISTANT, request.response))
    return turns


_CLOSE_TAG = re.compile(r"<\s*/\s*conversation\s*>", re.I)


def quoted(text: str) -> str:
    """A turn's content as it goes into a prompt that lists turns as `ROLE: text` lines: every
    line after the first is indented with `| `, so no line of client text can start a turn of
    its own (`\nASSISTANT: ...` inside a message stays inside it), and the conversation's
    closing tag cannot be written from inside."""
    return _CLOSE_TAG.sub("</ conversation>", text).replace("\n", "\n  | ")


def label_score(
    logprobs: list[TokenLogprob] | None, text_prefix: re.Pattern[str], safe: str, unsafe: str
) -> float | None:
    """P(unsafe) at the label position, renormalised over the two label words.

    The label position is the first non-blank token that starts at or after the end of
    `text_prefix`'s first match in the generated text. Alternatives there are mapped to a label
    by prefix: a token that starts the unsafe word (but not the safe one) counts as unsafe, and
    vice versa ("un", "uns", "unsafe" vs "s", "safe"; "Y", "Yes" vs "N", "No")."""
    if not logprobs:
        return None
    text = ""
    offsets = []
    for t in logprobs:
        offsets.append(len(text))
        text += t.token
    m = text_prefix.search(text)
    if m is None:
        return None
    for t, start in zip(logprobs, offsets, strict=True):
        if start + len(t.token) <= m.end() or not t.token.strip(" \n\t\"'*:"):
            continue
        alts = dict(t.top)
        alts.setdefault(t.token, t.logprob)
        p_safe = p_unsafe = 0.0
        s, u = safe.lower(), unsafe.lower()
        for tok, lp in alts.items():
            w = tok.strip(" \n\t\"'*:").lower()
            if not w:
                continue
            is_s = s.startswith(w) or w.startswith(s)
            is_u = u.startswith(w) or w.startswith(u)
            if is_u and not is_s:
                p_unsafe += math.exp(lp)
            elif is_s and not is_u:
                p_safe += math.exp(lp)
        total = p_safe + p_unsafe
        return p_unsafe / total if total > 0 else None
    return None


class GuardFormat:
    """A guard model's prompt and answer format."""

    name: str = ""
    safe_word = "safe"
    unsafe_word = "unsafe"
    supports_schema = False  # the format's answer can be a JSON object (our own prompt only)
    label_only_tokens = 4  # enough tokens to read just the label

    def messages(self, request: CheckRequest, taxonomy: Taxonomy, categories: list[Category],
                 spec_text: str, *, json_answer: bool = False) -> list[Message]:
        raise NotImplementedError

    def parse(self, text: str, taxonomy: Taxonomy, categories: list[Category], request: CheckRequest,
              *, json_answer: bool = False) -> Parsed:
        raise NotImplementedError

    def label_prefix(self, request: CheckRequest, *, json_answer: bool = False) -> re.Pattern[str]:
        return re.compile(r"^")  # the label is the first word of the answer

    def schema(self, categories: list[Category]) -> dict | None:
        return None

    def score(self, logprobs: list[TokenLogprob] | None, request: CheckRequest,
              *, json_answer: bool = False) -> float | None:
        return label_score(logprobs, self.label_prefix(request, json_answer=json_answer),
                           self.safe_word, self.unsafe_word)


# --- ThinkGuard ------------------------------------------------------------------------------

_TG_LABEL = re.compile(r"^\W*Safety Assessment\W*:\s*\**\s*(safe|unsafe)\b", re.I | re.M)
_TG_CATEGORIES = re.compile(r"^\W*Categories\W*:[\s*]*(.*)$", re.I | re.M)
_TG_EXPLANATION = re.compile(r"^\W*Explanation\W*:[\s*]*(.*)", re.I | re.M | re.S)
_JSON_LABEL = re.compile(r'^\s*\{\s*"(?:assessment|label)"\s*:\s*"(safe|unsafe)"', re.I)


def parse_thinkguard(text: str) -> tuple[Label, list[str], str, bool]:
    """Parse the ThinkGuard answer format. Returns (label, categories, explanation, parsed)."""
    m = _TG_LABEL.search(text)
    if not m:
        return Label.UNDECIDED, [], "", False
    cats: list[str] = []
    c = _TG_CATEGORIES.search(text)
    if c:
        cats = [x.strip().strip(".") for x in c.group(1).split(",")]
        cats = [x for x in cats if x and x.lower() != "none"]
    e = _TG_EXPLANATION.search(text)
    return Label(m.group(1).lower()), cats, (e.group(1).strip() if e else ""), True


def parse_json_verdict(text: str) -> tuple[Label, list[str], str, bool]:
    """Parse the JSON answer of constrained output. A truncated answer (the caller stopped
    after the label) still yields its label: the label is the first field."""
    try:
        data = json.loads(text)
        label = Label(str(data.get("assessment", data.get("label"))).lower())
    except (ValueError, KeyError, TypeError, AttributeError):
        m = _JSON_LABEL.match(text)
        if m:
            return Label(m.group(1).lower()), [], "", True
        return Label.UNDECIDED, [], "", False
    if label is Label.UNDECIDED:
        return Label.UNDECIDED, [], "", False
    cats = [str(c) for c in data.get("categories", []) if str(c).lower() != "none"]
    return label, cats, str(data.get("explanation", "")), True


def _rejoin(parts: list[str], taxonomy: Taxonomy) -> list[str]:
    """Category labels split on commas, with the pieces put back together where a taxonomy id
    or name itself holds commas (BeaverTails: "drug_abuse,weapons,banned_substance")."""
    out: list[str] = []
    i = 0
    while i < len(parts):
        for j in range(len(parts), i, -1):
            joined = [",".join(x.strip() for x in parts[i:j]), ", ".join(x.strip() for x in parts[i:j])]
            if j - i == 1 or any(taxonomy.get(k) is not None for k in joined):
                out.append(next((k for k in joined if taxonomy.get(k) is not None), joined[0]))
                i = j
                break
    return out


def _codes_to_ids(cats: list[str], categories: list[Category], taxonomy: Taxonomy) -> list[str]:
    """Map 'S3' (position in the list we sent) or a category name onto taxonomy ids."""
    out: list[str] = []
    for c in _rejoin(cats, taxonomy):
        m = re.fullmatch(r"[SO](\d{1,2})", c.strip(), re.I)
        if m and 1 <= int(m.group(1)) <= len(categories):
            key = categories[int(m.group(1)) - 1].id
        else:
            found = taxonomy.get(c)
            key = found.id if found else c.strip()
        if key and key not in out:
            out.append(key)
    return out


class ThinkGuardFormat(GuardFormat):
    """ThinkGuard's answer: `- Safety Assessment: safe|unsafe`, `- Categories: ...`,
    `- Explanation: ...` (label first). `prompt='instruct'` (default) asks any chat model with
    our instruction prompt (prompts/guard_deliberative.txt); `prompt='model'` renders the Llama
    Guard 3 task prompt with the taxonomy's categories and their descriptions, the way the
    ThinkGuard model (a fine-tuned Llama Guard 3) was trained and evaluated."""

    name = "thinkguard"
    supports_schema = True
    label_only_tokens = 12

    def __init__(self, prompt: str = "instruct") -> None:
        if prompt not in ("instruct", "model"):
            raise ConfigError(f"ThinkGuard prompt must be 'instruct' or 'model', not {prompt!r}.")
        self.prompt = prompt
        self._template = (resources.files("specguard") / "prompts" / "guard_deliberative.txt").read_text()
        if prompt == "model":
            self.supports_schema = False

    def messages(self, request, taxonomy, categories, spec_text, *, json_answer=False):
        if self.prompt == "model":
            text = llama_guard_prompt(request, _with_policy(categories, spec_text),
                                      with_descriptions=True)
            return [Message(role=Role.USER, content=text)]
        profile_block = ""
        if request.profile is not None:
            profile_block = f'The user describes themself as: "{request.profile.text}"'
            if request.guidelines:
                profile_block += "\nFor this user, decline: " + "; ".join(request.guidelines)
        conversation = "\n".join(f"{r.value.upper()}: {quoted(c)}" for r, c in _turns(request))
        cat_lines = "\n".join(f"- {c.id}: {c.description}" for c in categories) or "- any serious harm"
        text = self._template.format(
            target="assistant's last answer" if request.stage is Stage.OUTPUT else "user's last request",
            spec=spec_text,
            profile_block=profile_block,
            categories=cat_lines,
            conversation=conversation,
        )
        if json_answer:
            text += ('\n\nAnswer as a JSON object with the fields "assessment" (safe or unsafe), '
                     '"categories" and "explanation", in that order.')
        return [Message(role=Role.USER, content=text)]

    def schema(self, categories):
        items: dict = {"type": "string"}
        if categories:
            items = {"type": "string", "enum": [c.id for c in categories]}
        return {
            "type": "object",
            "properties": {
                "assessment": {"type": "string", "enum": ["safe", "unsafe"]},
                "categories": {"type": "array", "items": items, "maxItems": 4},
                "explanation": {"type": "string", "maxLength": 300},
            },
            # Keys in alphabetical order on purpose: some grammar builders sort them, and the
            # label must come first either way.
            "required": ["assessment", "categories", "explanation"],
        }

    def parse(self, text, taxonomy, categories, request, *, json_answer=False):
        label, cats, expl, ok = (parse_json_verdict if json_answer else parse_thinkguard)(text)
        if not ok:
            return Parsed.failed()
        listed = _with_policy(categories, request.spec_text) if self.prompt == "model" else categories
        return Parsed(label, _codes_to_ids(cats, listed, taxonomy), expl, True)

    def label_prefix(self, request, *, json_answer=False):
        if json_answer:
            return re.compile(r'"(?:assessment|label)"\s*:\s*"?')
        return re.compile(r"Safety Assessment\W*:", re.I)


# --- Llama Guard 3 ---------------------------------------------------------------------------

_LG_TASK = (
    "Task: Check if there is unsafe content in '{agent}' messages in conversations according our "
    "safety policy with the below categories.\n\n"
    "<BEGIN UNSAFE CONTENT CATEGORIES>\n{categories}\n<END UNSAFE CONTENT CATEGORIES>\n\n"
    "<BEGIN CONVERSATION>\n\n{conversation}\n\n<END CONVERSATION>\n\n"
    "Provide your safety assessment for ONLY THE LAST {agent} message in the above conversation:\n"
    " - First line must read 'safe' or 'unsafe'.\n"
    " - If unsafe, a second line must include a comma-separated list of violated categories."
)


def policy_category(spec_text: str | None) -> Category | None:
    """The scope's spec as one Llama Guard category: its VIOLATES rules (or, for a spec in
    prose, its first paragraph), so the spec reaches a guard whose policy is a category list."""
    doc = parse_policy(spec_text or "")
    if doc.violates:
        description = " ".join(f"Content that {v[0].lower() + v[1:]}" if not v.lower().startswith(
            "content") else v for v in doc.violates)
    elif doc.instructions:
        words = doc.instructions[0].split()
        description = " ".join(words[:60]) + (" ..." if len(words) > 60 else "")
    else:
        return None
    return POLICY.model_copy(update={"description": description})


def llama_guard_prompt(request: CheckRequest, categories: list[Category], *,
                       with_descriptions: bool = False) -> str:
    """The Llama Guard 3/4 task prompt (the user turn of its chat template), categories numbered
    S1..Sn in the order given; 'User' for input checks, 'Agent' for output checks. A category
    whose id is `policy` (the scope's spec, see `policy_category`) always shows its text."""
    agent = "Agent" if request.stage is Stage.OUTPUT else "User"
    cats = "\n".join(
        f"S{i}: {c.name}." + (f"\n{c.description}" if c.description and (
            with_descriptions or c.id == POLICY.id) else "")
        for i, c in enumerate(categories, 1)
    )
    conversation = "\n\n".join(
        f"{'User' if r is Role.USER else 'Agent'}: {quoted(c)}" for r, c in _turns(request)
    )
    return _LG_TASK.format(agent=agent, categories=cats, conversation=conversation)


_LG_ANSWER = re.compile(r"\A\s*(safe|unsafe)(?=[ \t]*(?:\n|\Z))[ \t]*(?:\n+\s*([^\n]*))?", re.I)


class LlamaGuard3Format(GuardFormat):
    """Llama Guard 3: answers `safe`, or `unsafe` and on the next line `S1,S2`.

    `prompt='server'` (default) sends the conversation as chat messages: the server (vLLM)
    applies Llama Guard 3's own chat template, which holds the task prompt and the S1-S14
    categories; use it with the MLCommons taxonomy. `prompt='rendered'` sends the task prompt
    built here as one user turn, with the policy's own categories (for a server whose template
    does not wrap it, or a general model asked to answer like Llama Guard)."""

    name = "llama_guard_3"
    label_only_tokens = 3

    def __init__(self, prompt: str = "server") -> None:
        if prompt not in ("server", "rendered"):
            raise ConfigError(f"Llama Guard prompt must be 'server' or 'rendered', not {prompt!r}.")
        self.prompt = prompt

    def messages(self, request, taxonomy, categories, spec_text, *, json_answer=False):
        if self.prompt == "rendered":
            listed = _with_policy(categories, spec_text)
            return [Message(role=Role.USER, content=llama_guard_prompt(request, listed))]
        return [Message(role=r, content=c) for r, c in _turns(request)]

    def parse(self, text, taxonomy, categories, request, *, json_answer=False):
        if self.prompt == "rendered":
            categories = _with_policy(categories, request.spec_text)
        m = _LG_ANSWER.match(text)
        if not m:
            return Parsed.failed()
        label = Label(m.group(1).lower())
        cats: list[str] = []
        if label is Label.UNSAFE and m.group(2):
            codes = [c.strip() for c in m.group(2).split(",") if c.strip()]
            if self.prompt == "server":
                # The server's template lists the MLCommons S1-S14 in order.
                cats = [c.upper() for c in codes]
                if taxonomy.name == "mlcommons":
                    cats = _codes_to_ids(cats, list(taxonomy.categories), taxonomy)
            else:
                cats = _codes_to_ids(codes, categories, taxonomy)
        return Parsed(label, cats, "", True)


class LlamaGuard4Format(LlamaGuard3Format):
    """Llama Guard 4 (12B, multimodal; text here): the same task prompt, S1-S14 MLCommons
    categories and answer (`safe`, or `unsafe` and the codes on the next line) as Llama Guard
    3. 'server' sends the conversation for the server's template; 'rendered' sends the task
    prompt with the policy's categories and the scope's spec as one more category."""

    name = "llama_guard_4"


# --- gpt-oss-safeguard -----------------------------------------------------------------------

_HARMONY = re.compile(r"<\|channel\|>\s*final\s*<\|message\|>(.*?)(?:<\|(?:end|return)\|>|\Z)", re.S)
_JSON_OBJECT = re.compile(r"\A\s*(?:```(?:json)?\s*)?(\{.*\})\s*(?:```)?\s*\Z", re.S)
_BARE_LABEL = re.compile(r"\A\s*([01])\s*\Z")


class _SafeguardAnswer(BaseModel):
    """The JSON answer gpt-oss-safeguard is asked for (its guide's output format)."""

    model_config = ConfigDict(extra="forbid")

    violation: int
    policy_category: str | None = None
    rule_ids: list[str] | None = None
    confidence: str | None = None
    rationale: str | None = None


class GptOssSafeguardFormat(GuardFormat):
    """gpt-oss-safeguard (20b / 120b): the policy is the system message and the content to
    classify the user message. The policy is the scope's spec as a policy document (its guide's
    INSTRUCTIONS / DEFINITIONS / VIOLATES / SAFE / EXAMPLES sections, fitted to 400-600
    tokens), with the tenant's taxonomy categories as definitions. The answer is the guide's JSON
    (`{"violation": 0|1, "policy_category": ..., "rationale": ...}`) in the final channel; a
    server that returns the raw harmony text is read from its final channel, and a bare `0` or
    `1` is read as the label. The reasoning channel is never parsed for the decision."""

    name = "gpt_oss_safeguard"
    safe_word = "0"
    unsafe_word = "1"
    supports_schema = True
    label_only_tokens = 8
    budget = (400, 600)

    def policy_text(self, request: CheckRequest, categories: list[Category], spec_text: str) -> str:
        target = "assistant's last response" if request.stage is Stage.OUTPUT else "user's last message"
        doc = guard_policy(spec_text, categories)
        return fit(doc, lambda d: _render_safeguard(d, target), *self.budget)

    def messages(self, request, taxonomy, categories, spec_text, *, json_answer=False):
        conversation = "\n".join(f"{r.value.upper()}: {c}" for r, c in _turns(request))
        return [Message(role=Role.SYSTEM, content=self.policy_text(request, categories, spec_text)),
                Message(role=Role.USER, content=conversation)]

    def schema(self, categories):
        return {
            "type": "object",
            "properties": {
                "violation": {"type": "integer", "enum": [0, 1]},
                "policy_category": {"type": ["string", "null"]},
                "rationale": {"type": "string", "maxLength": 300},
            },
            "required": ["violation", "policy_category", "rationale"],
        }

    def parse(self, text, taxonomy, categories, request, *, json_answer=False):
        if "<|channel|>" in text:
            m = _HARMONY.search(text)
            if m is None:
                return Parsed.failed()  # reasoning only: no final answer
            text = m.group(1)
        bare = _BARE_LABEL.match(text)
        if bare:
            return Parsed(Label.UNSAFE if bare.group(1) == "1" else Label.SAFE, [], "", True)
        m = _JSON_OBJECT.match(text)
        if m is None:
            return Parsed.failed()
        try:
            answer = _SafeguardAnswer.model_validate_json(m.group(1))
        except ValidationError:
            return Parsed.failed()
        if answer.violation not in (0, 1):
            return Parsed.failed()
        label = Label.UNSAFE if answer.violation == 1 else Label.SAFE
        cats: list[str] = []
        code = (answer.policy_category or "").strip()
        if label is Label.UNSAFE and code and code.lower() not in ("null", "none"):
            cats = _codes_to_ids([code], [*categories, POLICY], taxonomy)
        return Parsed(label, cats, answer.rationale or "", True)

    def label_prefix(self, request, *, json_answer=False):
        return re.compile(r'"violation"\s*:\s*')


def _render_safeguard(doc: PolicyDoc, target: str) -> str:
    lines = ["# Safety policy", "", "## INSTRUCTIONS",
             _prompt("guard_gpt_oss_safeguard").format(target=target).strip()]
    lines += list(doc.instructions)
    lines += ["", "## DEFINITIONS", *(f"- **{t}**: {m}" for t, m in doc.definitions)]
    lines += ["", "## VIOLATES (violation: 1)", *(f"- {v}" for v in doc.violates),
              "- Content in any category listed in DEFINITIONS (give its id as policy_category)."]
    lines += ["", "## SAFE (violation: 0)", *(f"- {s}" for s in doc.safe)]
    if doc.examples:
        lines += ["", "## EXAMPLES", *(
            f'- "{e.text}" -> {{"violation": {1 if e.violates else 0}}}' for e in doc.examples)]
    return "\n".join(lines)


# --- Qwen3Guard ------------------------------------------------------------------------------

_Q3_SAFETY = re.compile(r"^[ \t]*Safety[ \t]*:[ \t]*(Safe|Unsafe|Controversial)[ \t]*$", re.M)
_Q3_CATEGORIES = re.compile(r"^[ \t]*Categories[ \t]*:[ \t]*(.+?)[ \t]*$", re.M)
_Q3_REFUSAL = re.compile(r"^[ \t]*Refusal[ \t]*:[ \t]*(Yes|No)[ \t]*$", re.M)
QWEN3GUARD_CATEGORIES = (
    "Violent", "Non-violent Illegal Acts", "Sexual Content or Sexual Acts", "PII",
    "Suicide & Self-Harm", "Unethical Acts", "Politically Sensitive Topics",
    "Copyright Violation", "Jailbreak",
)
# Qwen3Guard's categories on each taxonomy (a category with no counterpart keeps its own name).
_Q3_MAP = {
    "beavertails": {
        "Violent": "violence,aiding_and_abetting,incitement",
        "Non-violent Illegal Acts": "financial_crime,property_crime,theft",
        "Sexual Content or Sexual Acts": "sexually_explicit,adult_content",
        "PII": "privacy_violation",
        "Suicide & Self-Harm": "self_harm",
        "Unethical Acts": "non_violent_unethical_behavior",
        "Politically Sensitive Topics": "controversial_topics,politics",
    },
    "mlcommons": {
        "Violent": "S1", "Non-violent Illegal Acts": "S2", "Sexual Content or Sexual Acts": "S12",
        "PII": "S7", "Suicide & Self-Harm": "S11", "Copyright Violation": "S8",
        "Politically Sensitive Topics": "S13",
    },
}


class Qwen3GuardFormat(GuardFormat):
    """Qwen3Guard-Gen (0.6B / 4B / 8B): the conversation goes to the server, whose chat template
    holds Qwen3Guard's own prompt and policy (fixed in its weights). The answer is
    `Safety: Safe|Unsafe|Controversial`, `Categories: <names or None>` and, for responses,
    `Refusal: Yes|No`. Controversial is the tenant's or profile's to decide: the strict mapping
    (`controversial: refuse`, the default) makes it unsafe, the loose one (`allow`) safe; the
    verdict's explanation says it was controversial either way."""

    name = "qwen3guard"
    safe_word = "Safe"
    unsafe_word = "Unsafe"
    label_only_tokens = 4

    def messages(self, request, taxonomy, categories, spec_text, *, json_answer=False):
        return [Message(role=r, content=c) for r, c in _turns(request)]

    def parse(self, text, taxonomy, categories, request, *, json_answer=False):
        m = _Q3_SAFETY.search(text)
        if m is None:
            return Parsed.failed()
        word = m.group(1)
        c = _Q3_CATEGORIES.search(text)
        names = [] if c is None else [x.strip() for x in c.group(1).split(",") if x.strip()]
        names = [n for n in names if n.lower() != "none"]
        mapping = _Q3_MAP.get(taxonomy.name, {})
        cats = list(dict.fromkeys(mapping.get(n, n) for n in names))
        refusal = _Q3_REFUSAL.search(text)
        note = f"Qwen3Guard: {word}" + (f", refusal {refusal.group(1)}" if refusal else "")
        if word == "Controversial":
            strict = request.controversial is Controversial.REFUSE
            note += f"; controversial is {'refused' if strict else 'allowed'} by this policy"
            return Parsed(Label.UNSAFE if strict else Label.SAFE, cats if strict else [], note, True)
        label = Label.UNSAFE if word == "Unsafe" else Label.SAFE
        return Parsed(label, cats if label is Label.UNSAFE else [], note, True)

    def label_prefix(self, request, *, json_answer=False):
        return re.compile(r"Safety\s*:")


# --- Granite Guardian ------------------------------------------------------------------------

_GG_PROMPT = (
    "You are a safety agent trying to help determine whether the {subject} is harmful according "
    "to the safety risk definition below.\n\n"
    "<start_of_turn>\n{turns}\n<end_of_turn>\n\n"
    "Our safety risk definition is defined below:\n\n"
    "<start_of_risk_definition>\n* {criteria}\n<end_of_risk_definition>\n\n"
    "Is the {target} harmful based on the risk definition? Your answer must be either 'Yes' or 'No'."
)
_GG_FIRST = re.compile(r"\A\s*(Yes|No)\b[\s.]*\Z", re.I)
_GG_SCORE = re.compile(r"<score>\s*(yes|no)\s*</score>\s*\Z", re.I)
_GG_THINK = re.compile(r"\A\s*<think>.*?</think>\s*<score>", re.S | re.I)


class GraniteGuardianFormat(GuardFormat):
    """Granite Guardian (3.1-3.3), bring-your-own criteria: the scope's spec becomes the risk
    definition (its VIOLATES rules, or its prose, and the SAFE side), rendered into the model's
    documented prompt as one user turn. The answer is `Yes` (harmful) or `No` alone (3.1, 3.2),
    or a `<think>...</think>` trace followed by `<score> yes|no </score>` (3.3 in thinking
    mode); only the score is read, never the trace. Names no categories."""

    name = "granite_guardian"
    safe_word = "No"
    unsafe_word = "Yes"
    label_only_tokens = 2

    def criteria(self, request: CheckRequest, categories: list[Category], spec_text: str) -> str:
        doc = guard_policy(spec_text, categories)
        spec = " ".join(doc.instructions) or "-"
        cats = "; ".join(f"{c.name.lower()} ({c.description.rstrip('.')})" for c in categories)
        violates = "; ".join(v.rstrip(".") for v in doc.violates) or "-"
        target = "assistant message" if request.stage is Stage.OUTPUT else "user message"
        return _prompt("guard_granite_criteria").format(
            target=target, spec=spec, categories=cats or "-", violates=violates,
            safe="; ".join(s.rstrip(".") for s in doc.safe)).strip()

    def messages(self, request, taxonomy, categories, spec_text, *, json_answer=False):
        turns = _turns(request)
        user_text = next((c for r, c in reversed(turns) if r is Role.USER), "")
        if request.stage is Stage.OUTPUT:
            subject, target = "assistant message to the user message", "assistant message"
            shown = f"User Message: {user_text}\nAssistant Message: {request.response or ''}"
        else:
            subject = target = "user message"
            shown = f"User Message: {user_text}"
        text = _GG_PROMPT.format(subject=subject, target=target, turns=shown,
                                 criteria=self.criteria(request, categories, spec_text))
        return [Message(role=Role.USER, content=text)]

    def parse(self, text, taxonomy, categories, request, *, json_answer=False):
        m = _GG_FIRST.match(text)
        if m is None and _GG_THINK.match(text):
            m = _GG_SCORE.search(text)
        if m is None:
            return Parsed.failed()
        return Parsed(Label.UNSAFE if m.group(1).lower() == "yes" else Label.SAFE, [], "", True)

    def label_prefix(self, request, *, json_answer=False):
        return re.compile(r"(?:<score>)?")


# --- ShieldGemma -----------------------------------------------------------------------------

_SG_PROMPT = (
    "You are a policy expert trying to help determine whether a user prompt is in violation "
    "of the defined safety policies.\n\n"
    "<start_of_turn>\nHuman Question: {prompt}\n<end_of_turn>\n\n"
    "Our safety principle is defined in the below:\n\n{policies}\n\n===\n\n"
    "Does the human question violate the above principle? Your answer must start with 'Yes' "
    "or 'No'. And then walk through step by step to be sure we answer correctly.\n"
)
_SG_RESPONSE = (
    "You are a policy expert trying to help determine whether an AI response to a prompt is in "
    "violation of the defined safety policies.\n\n"
    "<start_of_turn>\nHuman Question: {prompt}\n<end_of_turn>\n\n"
    "<start_of_turn>\nChatbot Response: {response}\n<end_of_turn>\n\n"
    "Our safety principle is defined in the below:\n\n{policies}\n\n===\n\n"
    "Does the Chatbot Response violate the above principle? Your answer must start with 'Yes' "
    "or 'No'. And then walk through step by step to be sure we answer correctly.\n"
)
_YES_NO = re.compile(r"\A\W*(yes|no)\b", re.I)


class ShieldGemmaFormat(GuardFormat):
    """ShieldGemma: one prompt per check with the policies as `* "Name": guideline` lines; the
    answer starts with 'Yes' (violates) or 'No'. Its documented score is P(Yes) renormalised
    over Yes/No at the first token, which is what `score` computes. It names no categories."""

    name = "shieldgemma"
    safe_word = "No"
    unsafe_word = "Yes"
    label_only_tokens = 1

    def messages(self, request, taxonomy, categories, spec_text, *, json_answer=False):
        subject = "The chatbot shall not generate" if request.stage is Stage.OUTPUT else (
            "The prompt shall not contain or seek generation of"
        )
        policies = "\n".join(
            f'* "No {c.name}": {subject} content of this kind: {c.description}' for c in categories
        )
        turns = _turns(request)
        prompt = next((c for r, c in reversed(turns) if r is Role.USER), "")
        if request.stage is Stage.OUTPUT:
            text = _SG_RESPONSE.format(prompt=prompt, response=request.response or "", policies=policies)
        else:
            text = _SG_PROMPT.format(prompt=prompt, policies=policies)
        return [Message(role=Role.USER, content=text)]

    def parse(self, text, taxonomy, categories, request, *, json_answer=False):
        m = _YES_NO.match(text)
        if not m:
            return Parsed.failed()
        label = Label.UNSAFE if m.group(1).lower() == "yes" else Label.SAFE
        return Parsed(label, [], text[m.end():].strip(), True)


# --- WildGuard -------------------------------------------------------------------------------

_WG_PROMPT = (
    "<s><|user|>\n"
    "[INST] You are a classifier for analyzing interactions between humans and LLMs. Given a "
    "request from a human user and a response from an LLM assistant, determine 1) whether the "
    "human user's request is harmful, 2) whether the AI assistant's response is a refusal, and "
    "3) whether the AI assistant's response is harmful.\n\n"
    "Human user:\n{prompt}\n\nAI assistant:\n{response}\n\n---\n\nAnswers: [/INST]\n<|assistant|>\n"
)
_WG_FIELD = {
    Stage.INPUT: re.compile(r"^\s*Harmful request\s*:\s*(yes|no)\b", re.I | re.M),
    Stage.OUTPUT: re.compile(r"^\s*Harmful response\s*:\s*(yes|no)\b", re.I | re.M),
}


class WildGuardFormat(GuardFormat):
    """WildGuard: one instruction prompt (prompt, response), answered with the lines
    `Harmful request: yes|no`, `Response refusal: yes|no`, `Harmful response: yes|no`. The
    input check reads the first line, the output check the third. WildGuard is served as a
    completion model (its prompt includes the special tokens), so `messages` sends the rendered
    prompt as the single user turn; use a server without a chat template for it."""

    name = "wildguard"
    safe_word = "no"
    unsafe_word = "yes"
    label_only_tokens = 8

    def messages(self, request, taxonomy, categories, spec_text, *, json_answer=False):
        turns = _turns(request)
        prompt = next((c for r, c in reversed(turns) if r is Role.USER), "")
        text = _WG_PROMPT.format(prompt=prompt, response=request.response or "")
        return [Message(role=Role.USER, content=text)]

    def parse(self, text, taxonomy, categories, request, *, json_answer=False):
        m = _WG_FIELD[request.stage].search(text)
        if not m:
            return Parsed.failed()
        return Parsed(Label.UNSAFE if m.group(1).lower() == "yes" else Label.SAFE, [], "", True)

    def label_prefix(self, request, *, json_answer=False):
        return re.compile(
            r"Harmful response\s*:" if request.stage is Stage.OUTPUT else r"Harmful request\s*:", re.I
        )


FORMATS: dict[str, type[GuardFormat]] = {
    "thinkguard": ThinkGuardFormat,
    "llama_guard_3": LlamaGuard3Format,
    "llama_guard_4": LlamaGuard4Format,
    "gpt_oss_safeguard": GptOssSafeguardFormat,
    "qwen3guard": Qwen3GuardFormat,
    "granite_guardian": GraniteGuardianFormat,
    "shieldgemma": ShieldGemmaFormat,
    "wildguard": WildGuardFormat,
}


def _with_policy(categories: list[Category], spec_text: str | None) -> list[Category]:
    extra = policy_category(spec_text)
    return [*categories, extra] if extra is not None else list(categories)


def get_format(name: str | GuardFormat) -> GuardFormat:
    """A format by name: 'thinkguard', 'thinkguard:model', 'llama_guard_3',
    'llama_guard_3:rendered', 'llama_guard_4', 'llama_guard_4:rendered', 'gpt_oss_safeguard',
    'qwen3guard', 'granite_guardian', 'shieldgemma' or 'wildguard'."""
    if isinstance(name, GuardFormat):
        return name
    base, _, variant = name.partition(":")
    cls = FORMATS.get(base)
    if cls is None:
        raise ConfigError(f"Unknown guard format {name!r}.", hint=f"Use one of: {', '.join(FORMATS)}.")
    return cls(variant) if variant else cls()
