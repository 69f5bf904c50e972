"""Typed records: one common base, one subclass per dataset with the dataset's own fields.

`harmful` is the dataset's own verdict on the item (None where the dataset has none), `label`
the dataset's own label string, `categories` its own category names, never remapped.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Record(BaseModel):
    """One item of a dataset. `text` is what a method is asked (or what a classifier reads)."""

    model_config = ConfigDict(frozen=True)

    id: str
    text: str
    source: str  # the dataset's registry name
    subset: str | None = None  # file, split or config inside the dataset
    harmful: bool | None = None
    label: str | None = None
    categories: list[str] = Field(default_factory=list)
    # Records of one group land on the same side of every split (specguard.data.part_of):
    # XSTest's safe prompt and its unsafe contrast, one U-SafeBench profile. None: the id.
    group: str | None = None


class AdvBenchRecord(Record):
    # harmful_behaviors: the affirmative answer the attack aims for; harmful_strings: the string.
    target: str


class HarmBenchRecord(Record):
    behavior: str
    behavior_id: str
    functional_category: str  # standard | copyright | contextual
    semantic_category: str
    tags: list[str] = Field(default_factory=list)
    context: str | None = None  # contextual behaviours: the text the behaviour refers to


class JBBRecord(Record):
    goal: str
    behavior: str
    category: str


class SimpleSafetyRecord(Record):
    harm_area: str
    prompt_category: str  # "Information and advice seeking" | "Instructions and actions"
    counter: int


class XSTestRecord(Record):
    type: str  # e.g. homonyms, contrast_homonyms
    focus: str | None = None
    note: str | None = None

    @property
    def contrast(self) -> bool:
        """XSTest's unsafe contrast prompts carry a `contrast_` type prefix."""
        return self.type.startswith("contrast_")


class ModerationRecord(Record):
    # OpenAI moderation taxonomy: S, H, V, HR, SH, S3, H2, V2. None: the sample was not
    # labelled for that category (upstream README: "if it does not include in the JSON, it
    # means we do not know the label"). `harmful` is True when any category is 1.
    flags: dict[str, bool | None]


class ToxicChatRecord(Record):
    toxicity: int  # majority human label, 0/1
    jailbreaking: int  # majority human label, 0/1


class BeaverTailsRecord(Record):
    prompt: str
    response: str  # `text` is the prompt; the (unsafe) response is the pair's answer


class RealToxicityRecord(Record):
    attribute: str  # the Perspective attribute the prompt was most successful at, from the file


class JailbreakTemplate(Record):
    slot: str | None = None  # the prompt placeholder in the template, None when absent


class JigsawRecord(Record):
    # The six Jigsaw labels; None where the Kaggle test split has no label (-1).
    toxic: bool | None
    severe_toxic: bool | None
    obscene: bool | None
    threat: bool | None
    insult: bool | None
    identity_hate: bool | None


class USafeBenchRecord(Record):
    instruction: str
    profile: str  # the user's self-description ("I have hepatitis.")
    task_domain: str  # QA | autonomous
    risk_scenario: str | None = None  # safety split only

    def prompt_with_profile(self) -> str:
        """The user turn as U-SafeBench's base setting sends it: "Consider <profile>", a rule
        of dashes, then the instruction."""
        return f"Consider {self.profile}\n\n{'-' * 40}\n\n{self.instruction}"


class CustomRecord(Record):
    extra: dict[str, str] = Field(default_factory=dict)


class Turn(BaseModel):
    """One turn of a conversation a dataset ships (role: system | user | assistant)."""

    model_config = ConfigDict(frozen=True)

    role: str
    content: str


class CoconotRecord(Record):
    category: str
    subcategory: str
    # preference subset: a compliant answer and an over-refusal of the same prompt
    chosen: str | None = None
    rejected: str | None = None
    chosen_model: str | None = None
    rejected_model: str | None = None


class HarmfulQARecord(Record):
    origin: str  # harmfulqa | dangerousqa
    category: str  # academic topic ("" for DangerousQA)
    subcategory: str


class DavidsonRecord(Record):
    votes: dict[str, int]  # annotator votes per class


class ToxiGenRecord(Record):
    target_group: str


class ConvAbuseRecord(Record):
    bot: str
    upstream_split: str  # the dataset's own train / valid / test
    context: list[Turn] = Field(default_factory=list)  # the turns before the user's


class ToxicSpansRecord(Record):
    spans: list[int]  # character offsets of the toxic span(s)


class CyberSecEvalRecord(Record):
    system: str | None = None  # prompt injection: the instruction the injection attacks
    injection_type: str | None = None
    judge_question: str | None = None


class MultiJailRecord(Record):
    language: str
    origin: str


class SafetyTunedRecord(Record):
    set_name: str
    safe_response: str | None = None  # training subset: the safe reference answer


class HHRLHFRecord(Record):
    chosen: list[Turn]
    rejected: list[Turn]


class AnswerRecord(Record):
    """A model's answer to a prompt (`text`), with the dataset's label of the answer: `label`
    a refusal label (complied | refused | partial) or the dataset's own, `answer_harmful`
    whether the answer is harmful (None where the dataset does not say)."""

    answer: str
    model: str  # which model wrote the answer
    answer_harmful: bool | None = None
    human: bool = True  # labels by people (False: automatic, e.g. substring or a guard model)
    prompt_id: str | None = None
    split_source: str | None = None  # the prompt-level dataset whose split the record follows
