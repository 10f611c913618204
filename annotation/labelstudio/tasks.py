"""Pairs to Label Studio tasks and annotations back to preference records, positions randomised and undone.

Each task shows the pair's two responses in a random (seeded, recorded) order, so position bias can be measured
(`metadata["shown_swapped"]`) and undone: stored records always keep the pair's own order.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from annotation.labelstudio.config import parse_result, result_for
from preference.pairs import Pair
from preference.schema import Label, PreferenceRecord, Prompt, canonical_json


def render_prompt(prompt: Prompt) -> str:
    """What annotators read: the text prompt, or the conversation with speaker names."""
    if isinstance(prompt, str):
        return prompt
    names = {"user": "User", "assistant": "Assistant", "system": "System", "tool": "Tool"}
    return "\n\n".join(f"{names.get(m['role'], m['role'])}: {m['content']}" for m in prompt)


def is_swapped(pair_id: str, seed: int) -> bool:
    """Deterministic coin flip per pair and seed: pushing again shows the same order."""
    return hashlib.sha256(f"{seed}:{pair_id}".encode()).digest()[0] % 2 == 1


def make_task(pair: Pair, seed: int = 0, prediction: PreferenceRecord | None = None) -> dict[str, Any]:
    """A task for `pair`; `prediction` (a machine judgment in the pair's own order) becomes a pre-annotation."""
    swapped = is_swapped(pair.pair_id, seed)
    shown_a, shown_b = (pair.response_b, pair.response_a) if swapped else (pair.response_a, pair.response_b)
    task: dict[str, Any] = {"data": {
        "prompt": render_prompt(pair.prompt), "answer_a": shown_a, "answer_b": shown_b,
        # rlhfkit's own fields (not shown on the page): enough to rebuild the record exactly.
        "pair_id": pair.pair_id, "shown_swapped": swapped, "prompt_json": canonical_json(pair.prompt),
        "pair_metadata": canonical_json(pair.metadata),
    }}
    if prediction is not None:
        label = prediction.label.swapped() if swapped else prediction.label
        task["predictions"] = [{"model_version": prediction.annotator,
                                "result": result_for(label, prediction.strength)}]
    return task


def pair_of_task(task: dict[str, Any]) -> Pair:
    data = task["data"]
    swapped = bool(data.get("shown_swapped"))
    response_a, response_b = (data["answer_b"], data["answer_a"]) if swapped else (data["answer_a"], data["answer_b"])
    return Pair(json.loads(data["prompt_json"]), response_a, response_b, json.loads(data.get("pair_metadata") or "{}"))


def record_of_annotation(task: dict[str, Any], annotation: dict[str, Any], annotator: str, source: str
                         ) -> PreferenceRecord:
    """The judgment in one annotation, in the pair's own order. Raises `ResultError` for a malformed result."""
    judgment = parse_result(annotation.get("result"))
    pair = pair_of_task(task)
    swapped = bool(task["data"].get("shown_swapped"))
    metadata = {**pair.metadata, "shown_swapped": swapped,
                "labelstudio": {"task": task["id"], "annotation": annotation["id"], "project": task.get("project")}}
    if judgment.reason:
        metadata["reason"] = judgment.reason
    label: Label = judgment.label.swapped() if swapped else judgment.label
    return PreferenceRecord(prompt=pair.prompt, response_a=pair.response_a, response_b=pair.response_b,
                            label=label, strength=judgment.strength, annotator=annotator, source=source,
                            timestamp=annotation.get("updated_at") or annotation.get("created_at"),
                            item=str(task["id"]), metadata=metadata)
