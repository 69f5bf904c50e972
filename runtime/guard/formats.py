"""Prompt and answer formats of guard models, so the deliberative tier can run on a general chat
model (the ThinkGuard-style instruction prompt) or on a dedicated guard model served by vLLM
(Llama Guard 3, ThinkGuard, ShieldGemma, WildGuard) in that model's documented format.

Each format builds the messages for a check, parses the answer, knows which answer words are
its labels (so the score can come from the label token's probability) and, where the format is
free to choose, gives a JSON schema for constrained output.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources

from ..errors import ConfigError
from ..types import Message, Role, TokenLogprob
from .taxonomy import Category, Taxonomy
from .verdict import CheckRequest, Label, Stage


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
_TG_CATEGORIES = re.compile(r"^\W*Categories\W*:\s*(.*)$", re.I | re.M)
_TG_EXPLANATION = re.compile(r"^\W*Explanation\W*:\s*(.*)", re.I | re.M | re.S)
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


def _codes_to_ids(cats: list[str], categories: list[Category], taxonomy: Taxonomy) -> list[str]:
    """Map 'S3' (position in the list we sent) or a category name onto taxonomy ids."""
    out: list[str] = []
    for c in cats:
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
            text = llama_guard_prompt(request, categories, with_descriptions=True)
            return [Message(role=Role.USER, content=text)]
        profile_block = ""
        if request.profile is not None:
            profile_block = f'The user describes themself as: "{request.profile.text}"'
            if request.guidelines:
                profile_block += "\nFor this user, decline: " + "; ".join(request.guidelines)
        conversation = "\n".join(f"{r.value.upper()}: {c}" for r, c in _turns(request))
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
        return Parsed(label, _codes_to_ids(cats, categories, taxonomy), expl, True)

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


def llama_guard_prompt(request: CheckRequest, categories: list[Category], *,
                       with_descriptions: bool = False) -> str:
    """The Llama Guard 3 task prompt (the user turn of its chat template), categories numbered
    S1..Sn in the order given; 'User' for input checks, 'Agent' for output checks."""
    agent = "Agent" if request.stage is Stage.OUTPUT else "User"
    cats = "\n".join(
        f"S{i}: {c.name}." + (f"\n{c.description}" if with_descriptions and c.description else "")
        for i, c in enumerate(categories, 1)
    )
    conversation = "\n\n".join(
        f"{'User' if r is Role.USER else 'Agent'}: {c}" for r, c in _turns(request)
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
            return [Message(role=Role.USER, content=llama_guard_prompt(request, categories))]
        return [Message(role=r, content=c) for r, c in _turns(request)]

    def parse(self, text, taxonomy, categories, request, *, json_answer=False):
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
    "shieldgemma": ShieldGemmaFormat,
    "wildguard": WildGuardFormat,
}


def get_format(name: str | GuardFormat) -> GuardFormat:
    """A format by name: 'thinkguard', 'thinkguard:model', 'llama_guard_3',
    'llama_guard_3:rendered', 'shieldgemma' or 'wildguard'."""
    if isinstance(name, GuardFormat):
        return name
    base, _, variant = name.partition(":")
    cls = FORMATS.get(base)
    if cls is None:
        raise ConfigError(f"Unknown guard format {name!r}.", hint=f"Use one of: {', '.join(FORMATS)}.")
    return cls(variant) if variant else cls()
