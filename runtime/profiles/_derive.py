"""The U-SafeBench remedy, step one: once per profile, ask a model which activities to decline
for that profile, and parse its answer into a list (cached and versioned in the store)."""

from __future__ import annotations

import re
from importlib import resources

from ..backends.base import Backend
from ..policy import Profile
from ..types import GenerationParams, Message, Role

MAX_ITEMS = 10
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d{1,2}[.)])\s*(.+?)\s*$")
_MAX_ITEM_CHARS = 160


def guideline_prompt(profile: Profile, max_items: int = MAX_ITEMS) -> list[Message]:
    template = (resources.files("specguard") / "prompts" / "profile_guidelines.txt").read_text()
    known = profile.attributes.model_dump(mode="json", exclude_defaults=True)
    attributes = ("Known about them: " + "; ".join(f"{k.replace('_', ' ')}: {_show(v)}"
                                                   for k, v in known.items())) if known else ""
    text = template.format(profile=profile.text.strip(), attributes=attributes, max_items=max_items)
    return [Message(role=Role.USER, content=text)]


def parse_guidelines(text: str, max_items: int = MAX_ITEMS) -> list[str]:
    """Bulleted or numbered lines of the answer, cleaned and deduplicated (case-insensitive),
    in order; lines that are not list items are ignored."""
    items: list[str] = []
    seen: set[str] = set()
    for line in text.splitlines():
        m = _BULLET.match(line)
        if not m:
            continue
        item = m.group(1).strip().strip("\"'").rstrip(".;,").strip()
        item = re.sub(r"\s+", " ", item)[:_MAX_ITEM_CHARS]
        key = item.lower()
        if len(item) < 3 or key in seen:
            continue
        seen.add(key)
        items.append(item)
        if len(items) >= max_items:
            break
    return items


def guideline_schema(max_items: int = MAX_ITEMS) -> dict:
    return {
        "type": "object",
        "properties": {"activities": {"type": "array", "maxItems": max_items,
                                      "items": {"type": "string", "maxLength": 80}}},
        "required": ["activities"],
    }


async def derive_guidelines(backend: Backend, profile: Profile, *, max_items: int = MAX_ITEMS,
                            max_tokens: int = 160) -> list[str]:
    """Ask `backend` (any model) for the activities to decline for `profile`. Backends with
    constrained output answer in a JSON schema (a list, always parseable); others answer a
    bulleted list."""
    messages = guideline_prompt(profile, max_items)
    if backend.capabilities.constrained_output:
        out = await backend.complete(messages, GenerationParams(
            max_tokens=max_tokens, temperature=0.0, json_schema=guideline_schema(max_items)))
        return parse_guidelines_json(out.text, max_items)
    text = messages[0].content + '\n\nWrite one activity per line, each starting with "- ", and nothing else.'
    out = await backend.complete([Message(role=Role.USER, content=text)],
                                 GenerationParams(max_tokens=max_tokens, temperature=0.0))
    return parse_guidelines(out.text, max_items)


def parse_guidelines_json(text: str, max_items: int = MAX_ITEMS) -> list[str]:
    """The `activities` of a JSON answer (a truncated answer keeps its complete items)."""
    found = re.search(r'"activities"\s*:\s*\[(.*)', text, re.DOTALL)
    if not found:
        return []
    strings = re.findall(r'"((?:[^"\\]|\\.)*)"', found.group(1))
    return parse_guidelines("\n".join(f"- {s}" for s in strings), max_items)


def remedy_prompt(profile_text: str, guidelines: list[str] | tuple[str, ...]) -> str:
    """Step two, at answer time: "Consider <profile>. You may decline if it raises safety
    concerns, including: <list>"."""
    template = (resources.files("specguard") / "prompts" / "profile_remedy.txt").read_text().strip()
    text = profile_text.strip()
    if text and text[-1] not in ".!?":
        text += "."
    if not guidelines:
        # No list (none derived, none approved): the profile alone.
        return template.split(" including:")[0].rstrip(",").format(profile=text) + "."
    return template.format(profile=text, guidelines="; ".join(guidelines) + ".")


def _show(value) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)
