"""Preference judgments -> the tokenized pairs TRL's RewardTrainer trains on, with every policy reported.

Judgments go through the data layer's export (aggregation, ties, both-bad, flags: `preference.export.to_pairs`),
then each side is encoded by `reward.text.encode`, the same function scoring uses. Passing TRL `chosen_ids` /
`rejected_ids` skips its own tokenisation, which appends an EOS token (MiniLM has none: TRL crashes) and drops
over-long pairs silently.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from typing import Any

from preference.export import ExportPolicy, ExportReport, trainable_pairs
from preference.schema import PreferenceRecord
from reward.config import RewardTrainingConfig
from reward.text import encode


@dataclasses.dataclass
class PreparedData:
    rows: list[dict[str, Any]]  # chosen_ids, rejected_ids (+ margin)
    export: ExportReport  # what aggregation and the policies kept and dropped
    truncated: Counter[str]  # sides cut: "prompt" / "response"
    prompts: list[Any]  # the prompt of each row (for grouped splits)

    def summary(self) -> dict[str, Any]:
        return {"pairs": len(self.rows), "export": self.export.as_dict(), "truncated_sides": dict(self.truncated)}


def _text(value: Any) -> str:
    # to_pairs gives chat-form completions ([{"role": "assistant", ...}]) when prompts are chats.
    return value[0]["content"] if isinstance(value, list) else value


def prepare(records: Iterable[PreferenceRecord], tokenizer: Any, config: RewardTrainingConfig) -> PreparedData:
    """Aggregate, apply the policies and encode. Raises ValueError when nothing is left to learn from."""
    policy = ExportPolicy(ties=config.ties, both_bad=config.both_bad, aggregate=config.aggregate,
                          min_agreement=config.min_agreement)
    pairs, report = trainable_pairs(records, policy, "a reward model")
    truncated: Counter[str] = Counter()
    rows = []
    for pair in pairs:
        row: dict[str, Any] = {}
        for side in ("chosen", "rejected"):
            encoded = encode(tokenizer, pair["prompt"], _text(pair[side]), config.max_length)
            row[f"{side}_ids"] = encoded.input_ids
            if encoded.truncated:
                truncated[encoded.truncated] += 1
        if config.use_margin and "margin" in pair:
            row["margin"] = float(pair["margin"])
        rows.append(row)
    return PreparedData(rows, report, truncated, [pair["prompt"] for pair in pairs])
