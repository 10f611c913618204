"""A small, self-made preference sample: instruction-following prompts (tasks x verifiable constraints), answers that
do or do not follow the constraint, and simulated annotators who are right most of the time.

It lets the toolkit run end to end without any downloaded data, and gives tests a sample with a known truth: the
answer that follows the constraint is better; two that both follow it tie; two that both fail are both bad.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from preference.schema import Label, PreferenceRecord, Strength
from rlhfkit.core.errors import InputError

TASKS = [
    ("Describe the water cycle", "water evaporates from seas and lakes, condenses into clouds and falls back as rain"),
    ("Explain what a reward model is", "a reward model scores answers so that better answers get higher numbers"),
    ("Give advice for a first job interview", "prepare examples of your work, arrive early and ask good questions"),
    ("Summarise why sleep matters", "sleep restores the body, consolidates memory and keeps mood stable"),
    ("Explain how a bicycle stays upright", "steering and forward motion keep the wheels under the rider"),
    ("Describe a healthy breakfast", "whole grains, fruit and some protein give steady energy for the morning"),
    ("Explain what recycling achieves", "recycling turns used materials into new products and saves raw resources"),
    ("Describe how plants make food", "plants use sunlight, water and carbon dioxide to make sugar and oxygen"),
    ("Explain why the sky looks blue", "air scatters short blue wavelengths of sunlight more than red ones"),
    ("Give tips for learning a language", "practise a little every day, speak early and read things you enjoy"),
]

# (instruction appended to the task, make an answer follow it, make an answer break it)
Constraint = tuple[str, Callable[[str], str], Callable[[str], str]]
CONSTRAINTS: list[Constraint] = [
    ("Answer in all lowercase letters.", str.lower, lambda s: s.upper()),
    ("Do not use any commas.", lambda s: s.replace(",", ""), lambda s: s.replace(" and ", ", and ", 1) + ", indeed"),
    ("End your answer with the exact phrase 'Is there anything else?'",
     lambda s: s.capitalize() + ". Is there anything else?", lambda s: s.capitalize() + "."),
    ("Wrap your whole answer in double quotation marks.", lambda s: f'"{s.capitalize()}."', lambda s: s.capitalize()),
]

# Audiences multiply the distinct prompts: 10 tasks x 4 constraints x 3 audiences = 120 before any repeats.
AUDIENCES = ["", " to a ten-year-old", " to a busy expert"]
MAX_DISTINCT_PROMPTS = len(TASKS) * len(CONSTRAINTS) * len(AUDIENCES)

ANNOTATORS = {"sim:careful": 0.95, "sim:average": 0.85, "sim:hasty": 0.7}


def _answer(rng: random.Random, core: str, follows: bool, constraint: Constraint) -> str:
    _, good, bad = constraint
    opener = rng.choice(["", "In short, ", "Simply put, ", "Here is the idea: "])
    return good(opener + core) if follows else bad(opener + core)


def synthetic_preferences(n_prompts: int = 40, seed: int = 0, source: str = "synthetic") -> list[PreferenceRecord]:
    """Judgments of `n_prompts` pairs by three simulated annotators (accuracy 0.95 / 0.85 / 0.70).

    Truth per pair: exactly one answer follows the constraint -> that one wins (strength clear or strong); both
    follow -> tie; neither -> both_bad. A wrong judgment picks uniformly among the other labels. Positions are
    randomised per pair and recorded in metadata["shown_swapped"], as Label Studio pushes will do.
    """
    if not 1 <= n_prompts <= MAX_DISTINCT_PROMPTS:
        raise InputError(f"the generated sample has 1 to {MAX_DISTINCT_PROMPTS} distinct prompts, not {n_prompts}")
    rng = random.Random(seed)
    records = []
    for index in range(n_prompts):
        task, core = TASKS[index % len(TASKS)]
        constraint = CONSTRAINTS[(index // len(TASKS)) % len(CONSTRAINTS)]
        audience = AUDIENCES[index // (len(TASKS) * len(CONSTRAINTS))]
        prompt = f"{task}{audience}. {constraint[0]}"
        follows_a, follows_b = rng.choice([(True, False), (False, True), (True, False), (True, True), (False, False)])
        response_a = _answer(rng, core, follows_a, constraint)
        response_b = _answer(rng, core, follows_b, constraint)
        if response_a == response_b:
            response_b = _answer(rng, core + " as a rule", follows_b, constraint)
        truth = (Label.TIE if follows_a and follows_b else Label.BOTH_BAD if not (follows_a or follows_b)
                 else Label.A if follows_a else Label.B)
        swapped = rng.random() < 0.5
        for annotator, accuracy in ANNOTATORS.items():
            correct = rng.random() < accuracy
            label = truth if correct else rng.choice([x for x in Label if x != truth])
            strength = (rng.choice([Strength.CLEAR, Strength.STRONG]) if label in (Label.A, Label.B) and correct
                        else Strength.SLIGHT if label in (Label.A, Label.B) else None)
            records.append(PreferenceRecord(
                prompt=prompt, response_a=response_a, response_b=response_b, label=label, strength=strength,
                annotator=annotator, source=source, item=str(index),
                metadata={"constraint": constraint[0], "truth": truth.value, "shown_swapped": swapped},
            ))
    return records
