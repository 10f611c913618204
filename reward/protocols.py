"""What the rest of rlhfkit needs from a reward model: `score(prompts, responses) -> list[float]`.

`reward.model.RewardModel` and `reward.model.RewardEnsemble` implement it; annotation (active selection, the
reward annotator), policy (RL rewards) and DSPy metrics accept anything that does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from preference.schema import Prompt


@runtime_checkable
class RewardScorer(Protocol):
    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        """One scalar reward per (prompt, response); higher is better."""
        ...
