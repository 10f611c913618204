"""Prompts a policy answers: reading prompt files, rlhfkit's own instruction-following prompt set, grouped splits.

A prompts file is JSONL (optionally .gz), one object per line:
- `prompt`: text or chat messages (required);
- `metadata`: an optional object carried through generation into pairs (the verifier reads IFEval's
  `instruction_id_list` and `kwargs` from it);
- IFEval's own format (`key`, `prompt`, `instruction_id_list`, `kwargs` at the top level, as in
  `input_data.jsonl`) is read as is: those fields move into `metadata`.

`builtin_prompts()` is the project's own prompt set — tasks times IFEval-verifiable constraints, written for rlhfkit —
so that generation, DPO and the main job run without any downloaded data.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from preference.errors import DataError, Issue
from preference.readers import read_jsonl
from preference.schema import Prompt, prompt_key
from preference.validation import RowContext, check_prompt
from reward.ifeval import UnknownInstructionError, VerificationError, check_instructions
from rlhfkit.core.errors import InputError

IFEVAL_FIELDS = ("key", "instruction_id_list", "kwargs")


@dataclasses.dataclass(frozen=True)
class PromptItem:
    prompt: Prompt  # text or chat messages
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)  # instruction_id_list, kwargs, key, ...

    @property
    def key(self) -> str:
        """Stable id: the file's `key` when given, else a hash of the prompt (used to resume and to split)."""
        given = self.metadata.get("key")
        return str(given) if given is not None else prompt_key(self.prompt)

    @property
    def verifiable(self) -> bool:
        return bool(self.metadata.get("instruction_id_list"))

    def to_row(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "metadata": self.metadata}


def _row_issues(row: dict[str, Any], where: tuple[str, int | None]) -> tuple[PromptItem | None, list[Issue]]:
    prompt, issues = check_prompt(row.get("prompt"), RowContext(file=where[0], line=where[1])) \
        if "prompt" in row else (None, [Issue(*where, "prompt", "is missing")])
    metadata = row.get("metadata", {})
    if not isinstance(metadata, dict):
        return None, issues + [Issue(*where, "metadata", "must be an object")]
    metadata = dict(metadata)
    for name in IFEVAL_FIELDS:
        if name in row:
            metadata[name] = row[name]
    ids, kwargs = metadata.get("instruction_id_list"), metadata.get("kwargs")
    if ids is not None:
        if kwargs is None:
            issues.append(Issue(*where, "kwargs", "is missing (instruction_id_list needs one kwargs object each)"))
        else:
            try:
                check_instructions(ids, kwargs)
            except VerificationError as exc:
                field = "instruction_id_list" if isinstance(exc, UnknownInstructionError) else "kwargs"
                issues.append(Issue(*where, field, str(exc)))
    return (None if issues else PromptItem(prompt, metadata)), issues


def read_prompts(path: str | Path) -> list[PromptItem]:
    """Read a prompts file (see module docstring). Raises `DataError` listing every bad line (file, line, field)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    items, issues = [], []
    for raw in read_jsonl(path):  # bad bytes, torn gzip and over-long lines become issues at their line
        if raw.issue is not None or raw.data is None:
            issues += [raw.issue] if raw.issue else []
            continue
        item, row_issues = _row_issues(raw.data, (str(path), raw.line))
        issues += row_issues
        if item is not None:
            items.append(item)
    if issues:
        raise DataError(issues, f"{path}: {len(issues)} problem(s) in the prompts file")
    if not items:
        raise DataError([Issue(str(path), None, None, "holds no prompt")], f"{path}: no prompts")
    return items


def write_prompts(items: Iterable[PromptItem], path: str | Path) -> Path:
    from rlhfkit.core.atomic import write_jsonl

    return write_jsonl((item.to_row() for item in items), path)


def split_prompts(items: Sequence[PromptItem], held_out: float, seed: int = 0
                  ) -> tuple[list[PromptItem], list[PromptItem]]:
    """(train, held-out) with every copy of a prompt on one side (grouped by prompt text, not by key)."""
    if not 0 < held_out < 1:
        raise InputError(f"held_out must be a share between 0 and 1, not {held_out}")
    groups = sorted({prompt_key(item.prompt) for item in items})
    random.Random(seed).shuffle(groups)
    test = set(groups[: max(1, round(len(groups) * held_out))])
    return ([i for i in items if prompt_key(i.prompt) not in test], [i for i in items if prompt_key(i.prompt) in test])


# -- rlhfkit's own instruction-following prompts ---------------------------------------------------------------------
TASKS = [
    "Describe the water cycle",
    "Explain what a reward model is",
    "Give advice for a first job interview",
    "Summarise why sleep matters",
    "Explain how a bicycle stays upright",
    "Describe a healthy breakfast",
    "Explain what recycling achieves",
    "Describe how plants make food",
    "Explain why the sky looks blue",
    "Give tips for learning a language",
    "Describe how a library is organised",
    "Explain why people keep a budget",
    "Describe a good way to start the morning",
    "Explain how vaccines protect people",
    "Give advice for keeping a houseplant alive",
    "Explain what a computer program is",
]

# (instruction text, IFEval instruction id, kwargs with every parameter the checker takes)
CONSTRAINTS: list[tuple[str, str, dict[str, Any]]] = [
    ("Your entire response should be in English, and in all lowercase letters. No capital letters are allowed.",
     "change_case:english_lowercase", {}),
    ("Do not use any commas in your response.", "punctuation:no_comma", {}),
    ("Finish your response with this exact phrase: Is there anything else I can help with?",
     "startend:end_checker", {"end_phrase": "Is there anything else I can help with?"}),
    ("Wrap your entire response with double quotation marks.", "startend:quotation", {}),
    ("Answer with less than 60 words.", "length_constraints:number_words", {"num_words": 60,
                                                                            "relation": "less than"}),
    ("Your answer must contain exactly 3 bullet points. Use the markdown bullet points such as:\n* This is point 1.",
     "detectable_format:number_bullet_lists", {"num_bullets": 3}),
    ("Your answer must contain a title, wrapped in double angular brackets, such as <<poem of joy>>.",
     "detectable_format:title", {}),
    ("At the end of your response, please explicitly add a postscript starting with P.S.",
     "detectable_content:postscript", {"postscript_marker": "P.S."}),
    ("Include the keywords \"simple\" and \"example\" in the response.", "keywords:existence",
     {"keywords": ["simple", "example"]}),
    ("Your response should contain less than 3 sentences.", "length_constraints:number_sentences",
     {"num_sentences": 3, "relation": "less than"}),
    ("Highlight at least 2 sections in your answer with markdown, i.e. *highlighted section*.",
     "detectable_format:number_highlighted_sections", {"num_highlights": 2}),
    ("The response must contain at least 2 placeholders represented by square brackets, such as [address].",
     "detectable_content:number_placeholders", {"num_placeholders": 2}),
    ("Your response must have 2 sections. Mark the beginning of each section with SECTION X, such as: SECTION 1",
     "detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2}),
]
CONSTRAINT_IDS = tuple(instruction_id for _, instruction_id, _ in CONSTRAINTS)
# The constraints the bundled SmolLM2-135M-Instruct follows *sometimes* when sampled (T=1, 64 tokens: between 0.2
# and 0.7 of its answers pass, docs/pipeline.md), so its answers to them differ and make informative pairs. It almost
# never writes all lowercase, ends with a given phrase or quotes its whole answer, and always stays under 60 words:
# pairs on those teach nothing.
SOMETIMES_FOLLOWED = ("detectable_format:number_bullet_lists", "detectable_format:title",
                      "detectable_content:postscript", "punctuation:no_comma", "keywords:existence",
                      "length_constraints:number_sentences", "detectable_format:number_highlighted_sections",
                      "detectable_content:number_placeholders", "detectable_format:multiple_sections")

AUDIENCES = ["", " to a ten-year-old"]
MAX_BUILTIN_PROMPTS = len(TASKS) * len(CONSTRAINTS) * len(AUDIENCES)


def builtin_prompts(n: int | None = None, seed: int = 0, constraints: Sequence[str] | None = None
                    ) -> list[PromptItem]:
    """`n` distinct instruction-following prompts (all of them when None), each verifiable by `reward.ifeval`.

    `constraints` picks IFEval instruction ids from `CONSTRAINT_IDS` (None: all of them). Every task meets every
    constraint; the order is shuffled by `seed`, so any prefix mixes tasks and constraints.
    """
    wanted = CONSTRAINT_IDS if constraints is None else tuple(constraints)
    unknown = sorted(set(wanted) - set(CONSTRAINT_IDS))
    if unknown or not wanted:
        raise InputError(f"built-in constraints are {', '.join(CONSTRAINT_IDS)}; not {', '.join(unknown) or 'none'}")
    chosen = [c for c, instruction_id in enumerate(CONSTRAINT_IDS) if instruction_id in wanted]
    combos = [(t, c, a) for t in range(len(TASKS)) for c in chosen for a in range(len(AUDIENCES))]
    random.Random(seed).shuffle(combos)
    n = len(combos) if n is None else n
    if not 1 <= n <= len(combos):
        raise InputError(f"the built-in prompt set has 1 to {len(combos)} prompts, not {n}")
    items = []
    for task, constraint, audience in combos[:n]:
        text, instruction_id, kwargs = CONSTRAINTS[constraint]
        prompt = f"{TASKS[task]}{AUDIENCES[audience]}. {text}"
        items.append(PromptItem(prompt, {"key": f"rlhfkit-{task}-{constraint}-{audience}",
                                         "instruction_id_list": [instruction_id], "kwargs": [dict(kwargs)],
                                         "source": "rlhfkit:builtin"}))
    return items
