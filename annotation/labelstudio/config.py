"""rlhfkit's pairwise labeling config, and the strict reading of the results annotators submit with it.

The server stores whatever a client posts, so every result is checked here against this config before it becomes a
judgment. Values come from `alias` attributes, so renaming what annotators see never changes stored labels.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from typing import Any

from preference.schema import Label, Strength
from rlhfkit.core.errors import InputError

PREFERENCE, STRENGTH, REASON = "preference", "strength", "reason"
DATA_FIELDS = ("prompt", "answer_a", "answer_b")

# Text tags only (never HyperText): answers are shown as plain text, so a model's HTML cannot run in the browser.
LABEL_CONFIG = """<View>
  <Style>.rlhfkit-answers { display: grid; grid-template-columns: 1fr 1fr; column-gap: 1.5em; }</Style>
  <Header value="Prompt"/>
  <Text name="prompt" value="$prompt"/>
  <View className="rlhfkit-answers">
    <View>
      <Header value="Answer A"/>
      <Text name="answer_a" value="$answer_a"/>
    </View>
    <View>
      <Header value="Answer B"/>
      <Text name="answer_b" value="$answer_b"/>
    </View>
  </View>
  <Header value="Which answer follows the instructions better?"/>
  <Choices name="preference" toName="prompt" choice="single-radio" required="true" showInline="true">
    <Choice value="A is better" alias="a" hotkey="1"/>
    <Choice value="B is better" alias="b" hotkey="2"/>
    <Choice value="Tie" alias="tie" hotkey="3"/>
    <Choice value="Both bad" alias="both_bad" hotkey="4"/>
  </Choices>
  <Header value="How much better? (optional)"/>
  <Choices name="strength" toName="prompt" choice="single-radio" showInline="true">
    <Choice value="Slightly" alias="slight"/>
    <Choice value="Clearly" alias="clear"/>
    <Choice value="Strongly" alias="strong"/>
  </Choices>
  <TextArea name="reason" toName="prompt" placeholder="Why? (optional)" rows="2" maxSubmissions="1" editable="true"/>
</View>
"""


class ResultError(InputError):
    """An annotation result that does not match rlhfkit's labeling config."""


@dataclasses.dataclass(frozen=True)
class Judgment:
    label: Label  # as shown on the page (A = left)
    strength: Strength | None
    reason: str | None


def config_problem(label_config: str) -> str | None:
    """Why a project's config is not rlhfkit's pairwise config (None when it is)."""
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError as exc:
        return f"the labeling config is not valid XML ({exc})"
    names = {element.get("name"): element for element in root.iter() if element.get("name")}
    for tag, name in (("Text", "prompt"), ("Text", "answer_a"), ("Text", "answer_b"), ("Choices", PREFERENCE)):
        if name not in names or names[name].tag != tag:
            return f"it has no <{tag} name=\"{name}\"> (not an rlhfkit pairwise project)"
    aliases = {choice.get("alias") for choice in names[PREFERENCE].iter("Choice")}
    if aliases != {label.value for label in Label}:
        return f"its preference choices are {sorted(a or '?' for a in aliases)}, not a / b / tie / both_bad"
    return None


def _choices(item: dict[str, Any]) -> list[Any]:
    value = item.get("value")
    choices = value.get("choices") if isinstance(value, dict) else None
    if not isinstance(choices, list):
        raise ResultError(f"{item.get('from_name')}: value.choices is missing")
    return choices


def parse_result(result: Any) -> Judgment:
    """Read one annotation's `result` list; raises `ResultError` saying what is wrong."""
    if not isinstance(result, list):
        raise ResultError("result is not a list")
    label = strength = reason = None
    for item in result:
        if not isinstance(item, dict):
            raise ResultError("a result item is not an object")
        name = item.get("from_name")
        if name == PREFERENCE:
            choices = _choices(item)
            if len(choices) != 1 or choices[0] not in {label.value for label in Label}:
                raise ResultError(f"preference must be exactly one of a, b, tie, both_bad; got {choices}")
            label = Label(choices[0])
        elif name == STRENGTH:
            choices = _choices(item)
            if len(choices) > 1 or (choices and choices[0] not in {s.value for s in Strength}):
                raise ResultError(f"strength must be one of slight, clear, strong; got {choices}")
            strength = Strength(choices[0]) if choices else None
        elif name == REASON:
            text = item.get("value", {}).get("text")
            if isinstance(text, list):
                text = "\n".join(str(t) for t in text)
            reason = text or None
        else:
            raise ResultError(f"unexpected result field {name!r} (not in rlhfkit's labeling config)")
    if label is None:
        raise ResultError("no preference choice in the result")
    if strength is not None and label not in (Label.A, Label.B):
        strength = None  # "how much better" means nothing for a tie; the page cannot hide it, so drop it here
    return Judgment(label, strength, reason)


def result_for(label: Label, strength: Strength | None = None, reason: str | None = None) -> list[dict[str, Any]]:
    """The result list the labeling page would submit (for pre-annotations and API clients)."""
    items = [{"from_name": PREFERENCE, "to_name": "prompt", "type": "choices", "value": {"choices": [label.value]}}]
    if strength is not None:
        items.append({"from_name": STRENGTH, "to_name": "prompt", "type": "choices",
                      "value": {"choices": [strength.value]}})
    if reason:
        items.append({"from_name": REASON, "to_name": "prompt", "type": "textarea", "value": {"text": [reason]}})
    return items
